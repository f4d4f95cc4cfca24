/* ftsvm-run --netns: every node in a network namespace of its own, so that a
 * node can be cut off the network (--cut) while it keeps running.
 *
 *   hub namespace  ftsvm-<pid>-hub   bridge ftsvmbr 10.213.X.254/24, ports hub<k>
 *   node namespace ftsvm-<pid>-<k>   lo, and ftsvm<k> 10.213.X.<k+1>/24, the
 *                                    other end of hub<k>
 *
 * with X from the launcher's pid. The launcher's rendezvous listens on the
 * bridge, so the nodes reach it, and each other, through their veths only.
 * Nothing is added to the launcher's own namespace: a job's network is all
 * its own and can reach nothing else (no route leaves the subnet), and two
 * jobs never share one.
 *
 * The namespaces are made with iproute2's `ip`, run in a process group of
 * its own (a ^C to the launcher's group does not cut a command short), and
 * deleted by run_netns_destroy: the launcher calls it on every way out that
 * it controls (the end of the job, an error, SIGINT or SIGTERM). */
#ifndef FTSVM_RUN_NETNS_H
#define FTSVM_RUN_NETNS_H

#include <signal.h>
#include <stddef.h>

#define RUN_NETNS_MAX_NODES 253   /* .1 to .253 of the subnet; .254 is the bridge */

typedef struct run_netns run_netns_t;

/* Create the hub and the namespaces of `nodes` nodes. `child_mask` is the
 * signal mask the `ip` commands get. Logs and returns FTSVM_ESYS when not
 * root, when `ip` is missing or a command fails (having deleted what it had
 * made), FTSVM_ENOMEM. */
int  run_netns_create(int nodes, const sigset_t *child_mask, run_netns_t **netns_p);

/* Delete every namespace created (their links go with them); NULL is fine. */
void run_netns_destroy(run_netns_t *netns);

/* The bridge's address, where the rendezvous listens ("10.213.X.254"). */
const char *run_netns_hub_address(const run_netns_t *netns);

/* The job's namespace names start with this ("ftsvm-<pid>-"). */
const char *run_netns_prefix(const run_netns_t *netns);

/* Call fn(arg) with the launcher in the hub namespace, then come back: a
 * socket made meanwhile stays in the hub. Returns fn's result, or
 * FTSVM_ESYS if the namespace could not be entered (logged). */
int  run_netns_in_hub(run_netns_t *netns, int (*fn)(void *arg), void *arg);

/* In a new node process, before exec: enter node's namespace, with a /sys
 * of its own that shows that namespace's devices (UCX lists them there).
 * Returns 0 or an errno value. */
int  run_netns_join(const run_netns_t *netns, int node);

/* The name of node's device in its namespace, for UCX_NET_DEVICES. */
void run_netns_device(int node, char *name, size_t size);

/* Take node's link down at both ends: whatever it sends goes nowhere, and
 * nothing reaches it. Logs and returns FTSVM_ESYS on failure. */
int  run_netns_cut(run_netns_t *netns, int node);

#endif

/*
 * lib/failure: failure detection, membership views, fencing and the
 * orchestration of recovery (DESIGN.md section 7).
 *
 * Detection: the transport's peer-failure signal (a dead process: ~1 ms over
 * TCP, a keepalive round over shared memory), and heartbeats read with
 * one-sided gets for hung or unreachable nodes, scored so that a loaded
 * machine gives no false suspicion (FTSVM_HB_INTERVAL, FTSVM_HB_TIMEOUT).
 *
 * Views: the set of removed nodes only grows, so a view is named by it and
 * numbered by its size; two announcements merge by union, and every
 * survivor adopts the same sequence of views. A node that learns it was
 * removed, or that has lost contact with most of the view, stops at once
 * (exit status FAILURE_EXIT_FENCED) without touching shared memory again.
 * One that cannot learn it (stopped, and continued later) but could write a
 * survivor's memory directly (shared memory: same host) is killed by every
 * survivor on its host, which waits for it to be gone before it adopts the
 * view (fence.c); over the network the closed endpoint is the fence.
 *
 * Recovery: at each view change the recovery thread runs the steps that the
 * modules above registered (lowest order first); a step may exchange data
 * with the other members (failure_gather). Then the view is announced to the
 * application's callbacks.
 */
#ifndef FTSVM_FAILURE_H
#define FTSVM_FAILURE_H

#include "runtime/config.h"
#include "rdma/rdma.h"

#include <stddef.h>
#include <stdint.h>

/* transport regions of the module: per node, its heartbeat counter */
#define FAILURE_NREGIONS 1

/* exit status of a node that fenced itself */
#define FAILURE_EXIT_FENCED 75

/* An event line a launcher can read (ftsvm-run sums them up): printed on
 * stderr by every survivor when a view's recovery ends, e.g.
 *   [ftsvm-event view=1 removed=2 cause=transport detected_ns=... recovered_ns=...]
 * and by a fenced node:  [ftsvm-event fenced=3 ns=...]
 * (ns: CLOCK_MONOTONIC nanoseconds). */
#define FAILURE_EVENT_TAG "[ftsvm-event "

void failure_region_sizes(int nodes, size_t sizes[FAILURE_NREGIONS]);
/* after the transport is up, with the module's regions from `region` on */
int  failure_init(const ftsvm_config_t *config, rdma_ctx_t *rdma, unsigned region);
/* once every node is up: the recovery thread and heartbeats start. The
 * nodes flagged in `absent` (NULL: none) are out of the job from the start:
 * they are removed, and that view recovered, before this returns. */
int  failure_start(const uint8_t *absent);
/* shutdown: stop suspecting (peers leave), then tear down */
void failure_quiesce(void);
/* On the lowest node still in the view: one line on stderr naming the
 * nodes that failed, their cause, the view that removed each and how long
 * recovery took after the news (where no launcher of ftsvm's own reports
 * it: under srun or mpirun). */
void failure_print_summary(void);
void failure_fini(void);

/* The current view: its number (removed nodes) and membership. */
uint64_t failure_view(void);
/* Odd while a view is being adopted (the placement may change under a
 * reader); a reader that saw it even and unchanged around its reads read
 * one placement. */
uint64_t failure_adoption_seq(void);
int      failure_member(int node);
int      failure_members(void);
/* the lowest member (who reports for the job, e.g. an app's verification) */
int      failure_first_member(void);
/* 1 while a view change's recovery runs (from adoption to its end) */
int      failure_recovering(void);

/* Wait until the view number exceeds `view` and its recovery has ended, or
 * `timeout_ns` passes (FTSVM_ETIMEDOUT). A thread whose operation failed with
 * FTSVM_EPEER calls this with the view it started under, then retries. */
int failure_wait_view(uint64_t view, uint64_t timeout_ns);

/* Wait until a view newer than `view` is adopted: the transport has dropped
 * the removed nodes and the placement no longer names them (the adoption
 * steps ran), though the rest of recovery may still be running. */
int failure_wait_adopted(uint64_t view, uint64_t timeout_ns);

/* Suspect `node` (e.g. an operation to it timed out): a view without it is
 * announced if this node still reaches most of the view. */
void failure_suspect(int node, const char *why);

/* Eviction: the node asks every member whether it may go
 * (failure_leave_ask: FTSVM_OK; FTSVM_ESTATE, another node with a lower id
 * is leaving now, ask again later; FTSVM_ERANGE, no application node would
 * be left). Every member then knows that it will leave (its removal is
 * cause "evicted", and a survivor on its host gives it time to exit before
 * fencing it); failure_leave_cancel takes the intent back. Once it has
 * handed everything over, the node asks the others to remove it
 * (failure_leave) and then exits. failure_expect_leave marks a node that
 * a barrier said leaves (hlrc's hand-over). */
int  failure_leave_ask(void);
void failure_leave_cancel(void);
void failure_expect_leave(int node, int leaving);
void failure_leave(void);

/* ---- recovery steps, run on the recovery thread at every view change ---- */

typedef struct failure_change {
    uint64_t    view;          /* the new view's number */
    const int  *removed_now;   /* nodes removed by this change, -1 terminated */
    uint64_t    detected_ns;   /* CLOCK_MONOTONIC when this node learned of it */
} failure_change_t;

/* A step returns FTSVM_OK, or FTSVM_EPEER when another member failed under
 * it (the next view's recovery runs it again), or another error (logged;
 * recovery goes on with the next step). */
typedef int (*failure_step_t)(void *arg, const failure_change_t *change);

#define FAILURE_MAX_STEPS 8
/* order: lower runs first; the same order is used on every node. Steps of
 * order <= 0 are adoption steps: they run before the new view number is
 * published (failure_wait_adopted returns after them) and must neither
 * gather nor wait for other threads. */
int failure_on_recovery(int order, failure_step_t step, void *arg);

/* Inside a step: every member of `change->view` contributes `len` bytes (any
 * length, each node its own); returns, in member order, an array of
 * `nodes` pointers (NULL for non-members) and their lengths, in one block
 * the caller frees. FTSVM_EPEER when the view changed meanwhile. */
int failure_gather(const failure_change_t *change, unsigned round, const void *mine,
                   size_t len, void ***all_p, size_t **lens_p);

/* A function the heartbeat thread runs at every beat (one; tests' fault
 * points that watch memory, like a backup's markers). */
void failure_on_beat(void (*fn)(void));

/* ---- the application's view-change callbacks (ftsvm_on_view_change) ---- */
typedef void (*failure_app_cb_t)(unsigned view, int removed_node, void *arg);
int failure_on_view_change(failure_app_cb_t cb, void *arg);

#endif

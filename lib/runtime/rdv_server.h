/* The server side of the built-in rendezvous (lib/runtime/rdv_wire.h). Two
 * run it: ftsvm-run, and under a PMIx launcher (srun, mpirun) a process that
 * node 0 starts for the length of the start-up (rdv_serve.c).
 *
 * The server owns its sockets and nothing else: it never starts, waits for or
 * kills a process. ftsvm-run drives it from its poll loop and tells it when a
 * node process has exited. One round of a loop iteration:
 *
 *     n = rdv_server_fill_pollfds(server, fds);   before poll()
 *     poll(fds, n, <up to rdv_server_next_timer()>);
 *     rdv_server_handle_pollfds(server, fds, n);
 *     rdv_server_run_timers(server, clock_now_ns());
 *
 * rdv_server_on_node_exit may be called at any point between those calls. */
#ifndef FTSVM_RDV_SERVER_H
#define FTSVM_RDV_SERVER_H

#include <poll.h>
#include <stddef.h>
#include <stdint.h>

typedef struct rdv_server rdv_server_t;

/* A job key: RDV_KEY_BYTES random bytes as hex digits, NUL-terminated, into
 * hex[2 * RDV_KEY_BYTES + 1]. FTSVM_ESYS (logged) if no randomness. */
#define RDV_KEY_BYTES 32
int rdv_make_key(char *hex);

/* Listen on `addr` (a host name or address; the port is ephemeral) for the
 * `nodes` nodes of a job whose HELLO must carry `key`. The start-up deadline,
 * `boot_timeout` seconds, counts from this call. Logs and returns
 * FTSVM_EINVAL when `addr` cannot be used, FTSVM_ESYS or FTSVM_ENOMEM on a
 * local failure. */
int rdv_server_create(const char *addr, int nodes, const char *key,
                      double boot_timeout, rdv_server_t **server_p);

/* Close every connection and the listening socket. */
void rdv_server_destroy(rdv_server_t *server);

/* "host:port" for FTSVM_RDV ("[addr]:port" for IPv6). */
const char *rdv_server_address(const rdv_server_t *server);

/* How many pollfd slots rdv_server_fill_pollfds may use at most. */
size_t rdv_server_max_pollfds(const rdv_server_t *server);

/* Fill fds with what the server waits for; returns how many slots it used. */
size_t rdv_server_fill_pollfds(rdv_server_t *server, struct pollfd *fds);

/* Act on the revents of the slots of the last rdv_server_fill_pollfds. */
void rdv_server_handle_pollfds(rdv_server_t *server, const struct pollfd *fds,
                               size_t nfds);

/* CLOCK_MONOTONIC time (ns) of the server's next timer, UINT64_MAX if none:
 * the start-up deadline, HELLO deadlines, closing connections. */
uint64_t rdv_server_next_timer(const rdv_server_t *server);

/* Fire every timer due at now_ns. */
void rdv_server_run_timers(rdv_server_t *server, uint64_t now_ns);

/* Node `node`'s process has ended with waitpid() status `wait_status`:
 * before every node has joined this fails the start-up for all, after that
 * the node is absent from the pending and later rounds. */
void rdv_server_on_node_exit(rdv_server_t *server, int node, int wait_status);

/* The start-up is over (every node joined or was left out, or it failed)
 * and no connection is open any more: nothing is left to serve. */
int rdv_server_idle(const rdv_server_t *server);

/* The start-up failed (every node got the error). */
int rdv_server_failed(const rdv_server_t *server);

/* The listening socket (to keep it open across a fork). */
int rdv_server_listen_fd(const rdv_server_t *server);

/* Connections refused so far (bad HELLO, no HELLO in time, too many). */
unsigned rdv_server_refused(const rdv_server_t *server);

#endif

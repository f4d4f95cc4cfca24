/*
 * Transport contract (DESIGN.md section 10): registered memory and remote
 * keys exchanged at start, put / get / 64-bit fetch-add and compare-swap,
 * fence, flush, small active messages handled on the protocol thread, and a
 * per-peer failure signal. The module knows nothing above it: it is given its
 * parameters and an exchange function, and reports upward through callbacks.
 *
 * Memory is named by (region, offset): regions are allocated by the
 * transport at rdma_create (so that shared-memory transports can map them
 * directly) and their keys exchanged with every peer before it returns.
 *
 * Ordering: a completed put only frees the local buffer. Remote visibility
 * needs rdma_flush; "data then flag" needs rdma_fence between the two puts.
 * Nothing else is ordered.
 */
#ifndef FTSVM_RDMA_H
#define FTSVM_RDMA_H

#include <stddef.h>
#include <stdint.h>

typedef struct rdma_ctx rdma_ctx_t;

/* Allgather of `len` bytes per node into `all` (nodes x len, node order). */
typedef int (*rdma_exchange_fn_t)(void *arg, const void *mine, size_t len, void *all);

/* rdma_params_t.transport */
enum { RDMA_TRANSPORT_UCX = 0, RDMA_TRANSPORT_VERBS = 1 };

typedef struct rdma_params {
    int                 node;
    int                 nodes;
    int                 transport;    /* RDMA_TRANSPORT_*; 0 (zeroed params): UCX */
    const char         *tls;          /* UCX transports (UCX_TLS syntax); NULL: UCX's choice */
    const char         *device;       /* verbs: RDMA device; NULL or "": the first one */
    const char         *local_addr;   /* verbs: IPv4 to listen on; NULL or "": the device's */
    unsigned            spin_us;      /* protocol thread polls this long before it sleeps */
    double              keepalive;    /* seconds between keepalives (peer death over shm) */
    size_t              nregions;
    const size_t       *region_sizes; /* bytes, each > 0 */
    rdma_exchange_fn_t  exchange;
    void               *exchange_arg;
    /* NULL, or nodes bytes that the exchange keeps: 1 for a node that is
     * not in the job (missing from a start-up round). The transport makes
     * no connection to it and counts it failed from the start. */
    const uint8_t      *absent;
} rdma_params_t;

#define RDMA_ALL_PEERS      (-1)
#define RDMA_AM_TYPES       64     /* message types 0..63 */
#define RDMA_AM_MAX_PAYLOAD 8192   /* bytes; larger messages are refused */

/* Runs on the protocol thread, never inside the transport's own callbacks,
 * so it may send messages and wait for one-sided operations. `len` is within
 * the bounds given at registration. */
typedef void (*rdma_am_handler_t)(void *arg, int src, const void *payload, size_t len);

/* Runs on the protocol thread once per failed peer. */
typedef void (*rdma_peer_failed_t)(void *arg, int peer);

int   rdma_create(const rdma_params_t *params, rdma_ctx_t **ctx_p);
/* Stop reporting peer failures as news (peers are shutting down too). */
void  rdma_quiesce(rdma_ctx_t *ctx);
void  rdma_destroy(rdma_ctx_t *ctx);

int    rdma_node(const rdma_ctx_t *ctx);
int    rdma_nodes(const rdma_ctx_t *ctx);
void  *rdma_region_addr(const rdma_ctx_t *ctx, unsigned region);
size_t rdma_region_size(const rdma_ctx_t *ctx, unsigned region);
/* The transports the backend uses for one-sided operations to `peer`, e.g.
 * "posix/memory" or "tcp/lo" (UCX), "verbs/rxe0" (for logs and benchmarks). */
int    rdma_describe_peer(rdma_ctx_t *ctx, int peer, char *buf, size_t size);

/* One-sided operations. Each blocks until its local part is done: put until
 * `buf` may be reused, get and the atomics until the result is in place.
 * Atomic offsets must be 8-byte aligned. A failed peer gives FTSVM_EPEER. */
int rdma_put(rdma_ctx_t *ctx, int peer, unsigned region, uint64_t offset,
             const void *buf, size_t len);
int rdma_get(rdma_ctx_t *ctx, int peer, unsigned region, uint64_t offset,
             void *buf, size_t len);
int rdma_fetch_add(rdma_ctx_t *ctx, int peer, unsigned region, uint64_t offset,
                   uint64_t add, uint64_t *old_p);
int rdma_cswap(rdma_ctx_t *ctx, int peer, unsigned region, uint64_t offset,
               uint64_t expected, uint64_t desired, uint64_t *old_p);
/* A hint before writing [offset, offset+len) of the peer's region for the
 * first time: where the peer's memory is mapped into this process (UCX over
 * shared memory) the mapping's page tables are filled in one call, so the
 * puts that follow take no page fault each. Other transports: nothing to do.
 * Errors as a put's; a range the kernel will not populate is FTSVM_OK (the
 * puts then fault as they would have). */
int rdma_prefault(rdma_ctx_t *ctx, int peer, unsigned region, uint64_t offset, size_t len);
/* Later operations are performed after earlier ones (all peers). */
int rdma_fence(rdma_ctx_t *ctx);
/* Earlier operations to `peer` (or RDMA_ALL_PEERS) are complete at the
 * target. RDMA_ALL_PEERS skips removed peers (rdma_peer_remove): a caller
 * that wrote to one must notice the view change itself. */
int rdma_flush(rdma_ctx_t *ctx, int peer);

/* Active messages. Register before peers may send (i.e. before the first
 * barrier after rdma_create). A message that does not parse (unknown type,
 * length out of bounds, bad sender id) is rejected, logged and counted. */
int rdma_am_register(rdma_ctx_t *ctx, unsigned type, size_t min_len, size_t max_len,
                     rdma_am_handler_t handler, void *arg);
int rdma_am_send(rdma_ctx_t *ctx, int peer, unsigned type, const void *payload,
                 size_t len);

/* Failure signal: at most RDMA_MAX_FAILURE_CBS callbacks. */
#define RDMA_MAX_FAILURE_CBS 8
int rdma_on_peer_failure(rdma_ctx_t *ctx, rdma_peer_failed_t cb, void *arg);
/* 1 while the transport has seen no error from `peer`, else 0. A successful
 * read is no proof of life (a dead peer's shared memory stays readable). */
/* 0 for a peer that failed, or that rdma_create skipped (absent) or could
 * not connect to (perhaps dead: the caller removes it in its first view) */
int rdma_peer_alive(const rdma_ctx_t *ctx, int peer);

/* Remove a peer for good (it left the view): later operations to it fail
 * with FTSVM_EPEER at once, and operations in flight to it (a hung or cut-off
 * node never answers) end with FTSVM_EPEER. No failure callback runs. */
void rdma_peer_remove(rdma_ctx_t *ctx, int peer);
/* A peer that will be removed (the caller has decided so, not yet done it):
 * it is reported failed (`why`) unless it was, and operations to it, in
 * flight or later, end with FTSVM_EPEER as after rdma_peer_remove. */
void rdma_peer_doom(rdma_ctx_t *ctx, int peer, const char *why);

/* A get that does not wait, for heartbeats: start it, then poll. `buf` must
 * stay valid until a poll returns non-zero. Over UCX it goes over a
 * liveness channel (a worker and a thread of its own at each end), so that
 * the answer does not wait for the peer's protocol thread or application
 * threads: it shows that the peer process runs and is reachable. */
typedef struct rdma_req rdma_req_t;
int rdma_get_start(rdma_ctx_t *ctx, int peer, unsigned region, uint64_t offset, void *buf,
                   size_t len, rdma_req_t **req_p);
/* 1: done, 0: in flight, negative: failed (done either way unless 0) */
int rdma_req_poll(rdma_ctx_t *ctx, rdma_req_t *req);

/* Raise the scheduling priority of the calling thread, one that keeps a
 * node's liveness (the heartbeat, the liveness channel), to nice -10 where
 * that is allowed (root, CAP_SYS_NICE or RLIMIT_NICE), else leave it. Such a
 * thread sleeps nearly always and runs for microseconds; at the default
 * priority a loaded machine left it unscheduled past the heartbeat timeout
 * and a live node was removed. Not a real-time class: a real-time thread
 * spinning on one of UCX's spinlocks held by a preempted normal thread
 * waited for the kernel's real-time throttling (up to 1 s, measured at
 * start-up). */
void rdma_liveness_priority(const char *name);

/* For tests of the message validation only: send a raw transport message
 * with an arbitrary header. */
int rdma_am_send_raw(rdma_ctx_t *ctx, int peer, const void *hdr, size_t hdr_len,
                     const void *payload, size_t len);

#endif

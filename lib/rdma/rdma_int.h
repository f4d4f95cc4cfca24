/* What the files of lib/rdma share: the backend-neutral context, the backend
 * operations table, and the protocol thread's event queue. Not for use
 * outside lib/rdma. Each backend keeps its own state behind ctx->backend_ctx
 * (ucx.c, verbs*.c); nothing here names UCX or verbs types. */
#ifndef FTSVM_RDMA_INT_H
#define FTSVM_RDMA_INT_H

#include "rdma.h"
#include "common/stats.h"

#include <pthread.h>
#include <stdatomic.h>

/* Header of every ftsvm message (the UCX AM header; the first bytes of a
 * verbs SEND after its framing). */
typedef struct rdma_am_hdr {
    uint16_t type;
    uint16_t version;
    uint32_t src;
    uint32_t len;       /* payload bytes */
} rdma_am_hdr_t;

#define RDMA_AM_VERSION 1

typedef struct rdma_region {
    void      *addr;
    size_t     size;
} rdma_region_t;

typedef struct rdma_peer {
    _Atomic int   failed;
    _Atomic int   removed;     /* rdma_peer_remove: out of the job for good */
    uint64_t     *bases;       /* the peer's address of each region */
    size_t       *sizes;
} rdma_peer_t;

typedef struct rdma_am_slot {
    rdma_am_handler_t handler;
    void             *arg;
    size_t            min_len;
    size_t            max_len;
} rdma_am_slot_t;

/* A queued event for the protocol thread: a message or a peer failure. */
typedef struct rdma_event {
    struct rdma_event *next;
    int                kind;      /* RDMA_EVENT_* */
    int                src;
    unsigned           type;
    size_t             len;
    uint8_t            payload[];
} rdma_event_t;

enum { RDMA_EVENT_AM, RDMA_EVENT_PEER_FAILED };

typedef struct rdma_failure_cb {
    rdma_peer_failed_t cb;
    void              *arg;
} rdma_failure_cb_t;

enum { RDMA_ATOMIC_FETCH_ADD, RDMA_ATOMIC_CSWAP };

/* A backend. rdma.c validates arguments (peer and region in range, peer not
 * failed) and counts before it calls one of these; `addr` is then the
 * peer's address of (region, offset). Every operation may run on any thread
 * at once. */
typedef struct rdma_backend {
    const char *name;
    /* Allocate ctx->regions, exchange with every peer (filling each
     * peer's bases and sizes) and connect; set ctx->efd. The protocol thread
     * starts after it returns. */
    int      (*create)(rdma_ctx_t *ctx, const rdma_params_t *params);
    /* After the protocol thread has stopped; also after a failed create. */
    void     (*destroy)(rdma_ctx_t *ctx);
    /* Protocol thread: make progress, return how much work was done. */
    unsigned (*progress)(rdma_ctx_t *ctx);
    /* Protocol thread: arm ctx->efd before a sleep; FTSVM_OK when armed, 1
     * when events arrived meanwhile (progress again), negative on error. */
    int      (*arm)(rdma_ctx_t *ctx);
    int      (*put)(rdma_ctx_t *ctx, int peer, unsigned region, uint64_t addr,
                    const void *buf, size_t len);
    int      (*get)(rdma_ctx_t *ctx, int peer, unsigned region, uint64_t addr,
                    void *buf, size_t len);
    /* *req_p NULL: done already */
    int      (*get_start)(rdma_ctx_t *ctx, int peer, unsigned region, uint64_t addr,
                          void *buf, size_t len, rdma_req_t **req_p);
    int      (*req_poll)(rdma_ctx_t *ctx, rdma_req_t *req);
    /* RDMA_ATOMIC_FETCH_ADD: add `operand`; RDMA_ATOMIC_CSWAP: swap in
     * `swap` if the word is `operand` */
    int      (*atomic)(rdma_ctx_t *ctx, int op, int peer, unsigned region, uint64_t addr,
                       uint64_t operand, uint64_t swap, uint64_t *old_p);
    int      (*fence)(rdma_ctx_t *ctx);
    int      (*flush)(rdma_ctx_t *ctx, int peer);
    int      (*am_send)(rdma_ctx_t *ctx, int peer, const void *hdr, size_t hdr_len,
                        const void *payload, size_t len);
    /* The peer is marked failed and removed already: end what is in flight
     * to it with FTSVM_EPEER and release what the backend holds for it. */
    void     (*peer_remove)(rdma_ctx_t *ctx, int peer);
    int      (*describe_peer)(rdma_ctx_t *ctx, int peer, char *buf, size_t size);
    /* Optional (NULL: nothing to do): make later writes to [addr, addr+len)
     * of the peer's region take no page fault here. */
    int      (*prefault)(rdma_ctx_t *ctx, int peer, unsigned region, uint64_t addr,
                         size_t len);
} rdma_backend_t;

extern const rdma_backend_t rdma_ucx_backend;
extern const rdma_backend_t rdma_verbs_backend;

struct rdma_ctx {
    int                   node;
    int                   nodes;
    rdma_backend_t        backend;       /* a copy: one load less per operation */
    void                 *backend_ctx;
    int                   efd;           /* the backend's event fd, -1: none */
    int                   wake_fd;       /* eventfd: queue not empty, or stop */
    rdma_region_t        *regions;
    size_t                nregions;
    rdma_peer_t          *peers;

    /* protocol thread */
    pthread_t          thread;
    int                thread_started;
    _Atomic int        stop;
    _Atomic int        waiters;       /* application threads progressing the backend */
    uint64_t           spin_ns;
    int                idle_timeout_ms;

    pthread_mutex_t    queue_lock;
    rdma_event_t      *queue_head;
    rdma_event_t     **queue_tail;

    rdma_am_slot_t     am[RDMA_AM_TYPES];
    rdma_failure_cb_t  failure_cbs[RDMA_MAX_FAILURE_CBS];
    _Atomic int        nfailure_cbs;
    _Atomic int        quiescing;

    stats_group_t      stats;
};

/* counters of the "rdma" stats group */
enum {
    RDMA_STAT_PUTS, RDMA_STAT_PUT_BYTES, RDMA_STAT_GETS, RDMA_STAT_GET_BYTES,
    RDMA_STAT_ATOMICS, RDMA_STAT_FENCES, RDMA_STAT_FLUSHES, RDMA_STAT_AM_SENT,
    RDMA_STAT_AM_RECEIVED, RDMA_STAT_AM_REJECTED, RDMA_STAT_PEER_FAILURES,
    RDMA_STAT_SLEEPS, RDMA_STAT_COUNT
};

/* rdma.c: allgather blobs of different lengths (first the lengths, then
 * every blob padded to the longest); *all_p holds nodes x *stride_p bytes */
int  rdma_exchange_blobs(rdma_ctx_t *ctx, const rdma_params_t *params, const void *blob,
                         size_t len, uint8_t **all_p, size_t *stride_p);

/* progress.c: the protocol thread */
int  rdma_progress_start(rdma_ctx_t *ctx);
void rdma_progress_stop(rdma_ctx_t *ctx);
/* 1 on the protocol thread; inline: every UCX wait asks (shared-memory
 * operations take ~50 ns, a call is measurable) */
extern __thread int rdma_progress_thread_flag;
static inline int rdma_on_progress_thread(void)
{
    return rdma_progress_thread_flag;
}
void rdma_wake(rdma_ctx_t *ctx);
void rdma_queue_push(rdma_ctx_t *ctx, rdma_event_t *event);
unsigned rdma_queue_dispatch(rdma_ctx_t *ctx);

/* am.c */
int  rdma_am_init(rdma_ctx_t *ctx);
/* Validate a message as it came off the wire and queue it for its handler
 * (any thread). Rejections are logged and counted. */
void rdma_am_deliver(rdma_ctx_t *ctx, const void *header, size_t header_len,
                     const void *data, size_t len);
/* Count one rejection and say whether to log it (the first ones, then one
 * in every 1000). */
int  rdma_am_reject_counted(rdma_ctx_t *ctx);
void rdma_am_dispatch(rdma_ctx_t *ctx, rdma_event_t *event);
/* Report `peer` failed once (any thread); `why` for the log. */
void rdma_peer_failed(rdma_ctx_t *ctx, int peer, const char *why);
void rdma_peer_unreached(rdma_ctx_t *ctx, int peer, const char *why);
void rdma_failure_dispatch(rdma_ctx_t *ctx, int peer);

#endif

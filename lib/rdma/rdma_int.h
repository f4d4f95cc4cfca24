/* What the files of lib/rdma share: the context and the protocol thread's
 * event queue. Not for use outside lib/rdma. */
#ifndef FTSVM_RDMA_INT_H
#define FTSVM_RDMA_INT_H

#include "rdma.h"
#include "common/stats.h"

#include <pthread.h>
#include <stdatomic.h>
#include <ucp/api/ucp.h>

/* UCX active-message id that carries every ftsvm message. */
#define RDMA_UCX_AM_ID 7

/* Header of every ftsvm message, sent as the UCX AM header. */
typedef struct rdma_am_hdr {
    uint16_t type;
    uint16_t version;
    uint32_t src;
    uint32_t len;       /* payload bytes */
} rdma_am_hdr_t;

#define RDMA_AM_VERSION 1

typedef struct rdma_region {
    ucp_mem_h  memh;
    void      *addr;
    size_t     size;
} rdma_region_t;

typedef struct rdma_peer {
    ucp_ep_h      ep;          /* NULL once removed (rdma_peer_remove) */
    /* held shared while an operation is posted on ep, exclusively while
     * rdma_peer_remove closes it */
    pthread_rwlock_t ep_lock;
    _Atomic int   failed;
    _Atomic int   removed;     /* rdma_peer_remove: out of the job for good */
    ucp_rkey_h   *rkeys;       /* one per region */
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

struct rdma_ctx {
    int                node;
    int                nodes;
    ucp_context_h      context;
    ucp_worker_h       worker;
    int                efd;           /* the worker's event fd */
    int                wake_fd;       /* eventfd: queue not empty, or stop */
    rdma_region_t     *regions;
    size_t             nregions;
    rdma_peer_t       *peers;

    /* protocol thread */
    pthread_t          thread;
    int                thread_started;
    _Atomic int        stop;
    _Atomic int        waiters;       /* application threads progressing the worker */
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

/* ucx.c */
int  rdma_status_from_ucs(ucs_status_t status);
/* the peer's endpoint with ep_lock held shared, or NULL (FTSVM_EPEER) when
 * it failed; rdma_ep_put drops the lock once the operation is posted */
ucp_ep_h rdma_ep_get(rdma_ctx_t *ctx, int peer);
void     rdma_ep_put(rdma_ctx_t *ctx, int peer);

/* progress.c: the protocol thread, and waiting for a UCX request */
int  rdma_progress_start(rdma_ctx_t *ctx);
void rdma_progress_stop(rdma_ctx_t *ctx);
int  rdma_progress_wait(rdma_ctx_t *ctx, ucs_status_ptr_t request, const char *what, int peer);
int  rdma_on_progress_thread(void);
void rdma_wake(rdma_ctx_t *ctx);
void rdma_queue_push(rdma_ctx_t *ctx, rdma_event_t *event);
unsigned rdma_queue_dispatch(rdma_ctx_t *ctx);

/* am.c */
int  rdma_am_init(rdma_ctx_t *ctx);
int  rdma_am_listen(rdma_ctx_t *ctx);
void rdma_am_dispatch(rdma_ctx_t *ctx, rdma_event_t *event);
void rdma_peer_failed(rdma_ctx_t *ctx, int peer, ucs_status_t status);
void rdma_failure_dispatch(rdma_ctx_t *ctx, int peer);

#endif

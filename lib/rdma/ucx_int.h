/* What ucx.c, ucx_start.c and ucx_live.c share: the UCX backend's state.
 * Not for use outside lib/rdma. */
#ifndef FTSVM_UCX_INT_H
#define FTSVM_UCX_INT_H

#include "rdma_int.h"

#include <pthread.h>
#include <stdatomic.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <ucp/api/ucp.h>

/* UCX active-message id that carries every ftsvm message. */
#define RDMA_UCX_AM_ID 7

typedef struct rdma_ucx_peer {
    ucp_ep_h      ep;          /* NULL once closed (failed or removed) */
    ucp_ep_h      live_ep;     /* the liveness channel's; NULL once closed */
    int           live_used;   /* heartbeats go over live_ep (both ends have the channel) */
    /* held shared while an operation is posted on ep or live_ep, exclusively
     * while one of them is closed */
    pthread_rwlock_t ep_lock;
    ucp_rkey_h   *rkeys;       /* one per region, for ep */
    ucp_rkey_h   *live_rkeys;  /* one per region, for live_ep */
    /* the error callback could not close the endpoints at once: the
     * protocol thread does it */
    _Atomic int   close_pending;
    /* messages over the peer's ring (ucx_ring.c); ring_base NULL: over
     * UCX's active messages */
    pthread_mutex_t    ring_lock;
    uint8_t           *ring_base;   /* the peer's ring region, mapped here */
    ucp_rkey_h         ring_rkey;
    uint64_t           ring_sent;   /* messages written to it */
    struct sockaddr_un wake_addr;   /* its wake-up socket */
    socklen_t          wake_len;
} rdma_ucx_peer_t;

/* slots of each (sender, receiver) ring */
#define RDMA_RING_SLOTS 32

/* This node's receiving side of the rings (ucx_ring.c). */
typedef struct rdma_ucx_ring {
    ucp_mem_h          memh;
    uint8_t           *base;        /* NULL: no rings (none allocated yet) */
    size_t             size;
    _Atomic uint64_t  *expected;    /* per sender: the next message number */
    pthread_mutex_t    poll_lock;
    int                wake_sock;
    struct sockaddr_un wake_addr;
    socklen_t          wake_len;
    int                epfd;        /* ctx->efd: UCX's event fd and wake_sock */
} rdma_ucx_ring_t;

/* The liveness channel (ucx_live.c): a worker of its own, progressed by a
 * thread of its own, for the heartbeat's gets (rdma_get_start). */
typedef struct rdma_ucx_live {
    int           enabled;     /* rdma_ucx_live_wanted said so at start-up */
    ucp_worker_h  worker;
    int           efd;
    pthread_t     thread;
    int           started;
    _Atomic int   stop;
    int           idle_ms;
} rdma_ucx_live_t;

typedef struct rdma_ucx {
    ucp_context_h    context;
    ucp_worker_h     worker;
    ucp_mem_h       *memhs;    /* one per region */
    rdma_ucx_peer_t *peers;
    rdma_ucx_live_t  live;
    rdma_ucx_ring_t  ring;
    _Atomic int      close_pending;   /* some peer's close_pending is set */
} rdma_ucx_t;

int  rdma_status_from_ucs(ucs_status_t status);
/* a worker in multi-thread mode with an event fd */
int  rdma_ucx_worker_create(rdma_ucx_t *ucx, ucp_worker_h *worker_p, int *efd_p);
/* force-close the peer's endpoint of the main worker (live 0) or of the
 * liveness worker (live 1); `wait` 0 in an error callback */
void rdma_ucx_close_ep(rdma_ctx_t *ctx, int peer, int live, int wait);

/* ucx.c, for ucx_start.c */
int  rdma_ucx_am_listen(rdma_ctx_t *ctx, rdma_ucx_t *ucx);
void rdma_ucx_ep_error(void *arg, ucp_ep_h ep, ucs_status_t status);
void rdma_ucx_live_ep_error(void *arg, ucp_ep_h ep, ucs_status_t status);

/* ucx_start.c, for the backend table */
int  rdma_ucx_create(rdma_ctx_t *ctx, const rdma_params_t *params);
void rdma_ucx_destroy(rdma_ctx_t *ctx);

/* ucx_live.c */
/* 1: this context's transports need the liveness channel */
int  rdma_ucx_live_wanted(ucp_context_h context);
int  rdma_ucx_live_create(rdma_ucx_t *ucx, int idle_ms);
int  rdma_ucx_live_start(rdma_ctx_t *ctx);
void rdma_ucx_live_stop(rdma_ucx_t *ucx);
void rdma_ucx_live_destroy(rdma_ucx_t *ucx);
int  rdma_ucx_live_get_start(rdma_ctx_t *ctx, int peer, unsigned region, uint64_t addr,
                             void *buf, size_t len, rdma_req_t **req_p);

/* ucx_proc.c: a node's process, in its start-up blob, so that a peer on the
 * same machine can tell that it has exited before it maps its memory */
typedef struct rdma_ucx_proc {
    char     boot_id[40];   /* /proc/sys/kernel/random/boot_id */
    uint64_t pid_ns;        /* inode of /proc/self/ns/pid */
    uint32_t pid;
    uint32_t pad;
} rdma_ucx_proc_t;

void rdma_ucx_proc_self(rdma_ucx_proc_t *proc);
/* 1 when the process a peer's blob names runs on this machine, in this pid
 * namespace, and has exited (gone, or a zombie); 0 when it runs or is
 * elsewhere */
int  rdma_ucx_proc_exited(const void *blob_proc);

/* ucx_ring.c: messages over rings in shared memory */
size_t   rdma_ucx_ring_region_size(int nodes);
/* after the worker exists: the wake-up socket; ctx->efd becomes an event fd
 * for both */
int      rdma_ucx_ring_init(rdma_ctx_t *ctx, rdma_ucx_t *ucx);
void     rdma_ucx_ring_fini(rdma_ucx_t *ucx);
unsigned rdma_ucx_ring_poll(rdma_ctx_t *ctx);
int      rdma_ucx_ring_arm(rdma_ctx_t *ctx);
void     rdma_ucx_ring_disarm(rdma_ctx_t *ctx);
void     rdma_ucx_ring_connect(rdma_ctx_t *ctx, int peer, void *base, const void *wake,
                               size_t wake_len);
int      rdma_ucx_ring_used(rdma_ctx_t *ctx, int peer);
int      rdma_ucx_ring_send(rdma_ctx_t *ctx, int peer, const void *hdr, size_t hdr_len,
                            const void *payload, size_t len);

#endif

/* What the files of the verbs backend share: verbs.c (operations),
 * verbs_setup.c (start-up, teardown), verbs_progress.c (the protocol
 * thread's part) and verbs_cm.c (connections with librdmacm). Not for use
 * outside lib/rdma. */
#ifndef FTSVM_RDMA_VERBS_INT_H
#define FTSVM_RDMA_VERBS_INT_H

#include "rdma_int.h"

#include <infiniband/verbs.h>
#include <netinet/in.h>
#include <rdma/rdma_cma.h>

/* Receive buffers pre-posted on each queue pair. A sender whose message
 * finds none waits in RNR retries (infinite: rnr_retry 7) until the
 * protocol thread reposts; 64 covers the bursts of the lock and barrier
 * protocols without that wait. */
#define RDMA_VERBS_RECVS       64
/* Send work requests in flight on one queue pair: one per waiting thread
 * and per started heartbeat get. */
#define RDMA_VERBS_SQ_DEPTH    256
/* A message on the wire: rdma_verbs_frame_t, the header, the payload. */
#define RDMA_VERBS_HDR_MAX     64
#define RDMA_VERBS_MSG_MAX     (8 + RDMA_VERBS_HDR_MAX + RDMA_AM_MAX_PAYLOAD)
/* Registered bounce buffers for operations on unregistered memory (and
 * messages, atomics' results); larger operations go in pieces. */
#define RDMA_VERBS_SLOT_SIZE   (64u * 1024)
#define RDMA_VERBS_SLOTS       64
/* QP local ACK timeout, 4.096 us * 2^14 = 67 ms, and 7 retries: a dead peer
 * is reported after about half a second, and soft-RoCE's emulated stalls
 * (several ms) are not mistaken for death. */
#define RDMA_VERBS_ACK_TIMEOUT 14
#define RDMA_VERBS_RETRY_COUNT 7
#define RDMA_VERBS_RNR_RETRY   7       /* 7: retry forever (a slow receiver is alive) */
/* Completions taken from a CQ at a time. */
#define RDMA_VERBS_POLL_BATCH  16

typedef struct rdma_verbs_frame {
    uint32_t hdr_len;
    uint32_t payload_len;
} rdma_verbs_frame_t;

/* One end of a connection (rdma_cm id with its RC queue pair). */
typedef struct rdma_verbs_conn {
    struct rdma_cm_id *id;
    int                peer;
    unsigned           index;         /* in rdma_verbs_t.conns: its receive buffers */
    int                established;
} rdma_verbs_conn_t;

typedef struct rdma_verbs_peer {
    /* held shared while a work request is posted to the peer, exclusively
     * while rdma_peer_remove moves its queue pair to the error state */
    pthread_rwlock_t   lock;
    uint32_t          *rkeys;         /* one per region */
    _Atomic int        qp_error;      /* its queue pair was moved to the error state */
    uint32_t           ip;            /* network order */
    uint16_t           port;          /* network order */
} rdma_verbs_peer_t;

typedef struct rdma_verbs {
    char                        device[64];
    struct sockaddr_in          local;           /* where this node listens */
    struct rdma_event_channel  *cm_channel;
    struct rdma_cm_id          *listen_id;
    struct ibv_context         *verbs;           /* the listen id's device */
    struct ibv_pd              *pd;
    struct ibv_comp_channel    *comp_channel;    /* the receive CQ's */
    struct ibv_cq              *send_cq;
    struct ibv_cq              *recv_cq;
    struct ibv_mr             **region_mrs;
    uint8_t                    *recv_bufs;
    size_t                      recv_bufs_size;
    struct ibv_mr              *recv_mr;
    uint8_t                    *slots;
    struct ibv_mr              *slots_mr;
    pthread_mutex_t             slots_lock;
    unsigned                    slots_free[RDMA_VERBS_SLOTS];
    unsigned                    nslots_free;
    rdma_verbs_peer_t          *peers;
    /* conns[peer]: the end this node posts to `peer` on; conns[nodes]: the
     * accepting end of the connection to itself */
    rdma_verbs_conn_t          *conns;
    uint8_t                     responder_resources;
    uint8_t                     initiator_depth;
} rdma_verbs_t;

static inline rdma_verbs_t *rdma_verbs_of(rdma_ctx_t *ctx)
{
    return ctx->backend_ctx;
}

/* verbs.c */
void rdma_verbs_conn_failed(rdma_ctx_t *ctx, rdma_verbs_conn_t *conn, const char *why);

/* verbs_setup.c */
int  rdma_verbs_create(rdma_ctx_t *ctx, const rdma_params_t *params);
void rdma_verbs_destroy(rdma_ctx_t *ctx);

/* verbs_progress.c */
int  rdma_verbs_post_recvs(rdma_verbs_t *v, rdma_verbs_conn_t *conn);
/* Take in received messages; also called by a protocol thread that waits. */
unsigned rdma_verbs_poll_recv(rdma_ctx_t *ctx, rdma_verbs_t *v);
unsigned rdma_verbs_progress(rdma_ctx_t *ctx);
int  rdma_verbs_arm(rdma_ctx_t *ctx);

/* verbs_cm.c */
/* Pick the device and address, listen (before the start-up exchange). */
int  rdma_verbs_listen(rdma_ctx_t *ctx, rdma_verbs_t *v, const rdma_params_t *params);
int  rdma_verbs_connect_all(rdma_ctx_t *ctx, rdma_verbs_t *v);
/* Protocol thread: handle what rdma_cm reports (a peer disconnected). */
unsigned rdma_verbs_cm_progress(rdma_ctx_t *ctx, rdma_verbs_t *v);
void rdma_verbs_disconnect_all(rdma_ctx_t *ctx, rdma_verbs_t *v);

#endif

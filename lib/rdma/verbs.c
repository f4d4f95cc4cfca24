/*
 * Transport over libibverbs (DESIGN.md section 10), one RC queue pair to
 * every node. This file: the operations (put, get, atomics, messages) and
 * the backend's table; verbs_setup.c starts and tears it down,
 * verbs_progress.c is the protocol thread's part (receives, device events),
 * verbs_cm.c sets up the connections with librdmacm.
 *
 * Every operation is one signaled work request (or several in turn, for an
 * unregistered buffer larger than a bounce slot) that the posting thread
 * waits for. On RC a completion means the responder acknowledged the
 * request, i.e. performed it: when an operation returns it is complete at
 * the target. That is what makes fence and flush free here: there is never
 * an earlier operation still in flight for them to order or wait for.
 *
 * Completions: all send queues share one CQ, polled by whichever thread
 * waits (verbs calls are thread-safe; a completion names its operation
 * through wr_id and whoever polls it marks it done).
 *
 * Failure: a completion in error (retry count exceeded, flushed), a receive
 * flushed, an rdma_cm DISCONNECTED or a fatal queue pair event report the
 * peer failed once (rdma_peer_failed) and move its queue pair to the error
 * state, so that whatever else is in flight to it ends now with
 * FTSVM_EPEER; rdma_peer_remove does the same without the report.
 */
#include "verbs_int.h"
#include "common/log.h"
#include "ftsvm.h"

#include <errno.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* One posted work request and who waits for it. */
typedef struct rdma_verbs_op {
    _Atomic int done;
    int         status;
    int         peer;
    int         slot;          /* bounce slot, -1: none */
    void       *copy_to;       /* a get into unregistered memory: the user's buffer */
    size_t      len;
} rdma_verbs_op_t;

/* ---- failure ---------------------------------------------------------------- */

/* Move the queue pair of `peer` to the error state once: every work request
 * on it completes now, flushed. */
static void rdma_verbs_qp_error(rdma_verbs_t *v, int peer)
{
    rdma_verbs_peer_t *p = &v->peers[peer];
    struct ibv_qp_attr attr = { .qp_state = IBV_QPS_ERR };

    if (atomic_exchange(&p->qp_error, 1)) {
        return;
    }
    /* exclusively: no post is half-way through */
    pthread_rwlock_wrlock(&p->lock);
    if (v->conns[peer].id != NULL && v->conns[peer].id->qp != NULL &&
        ibv_modify_qp(v->conns[peer].id->qp, &attr, IBV_QP_STATE) != 0) {
        ftsvm_warn("cannot move the queue pair to node %d to the error state: %m", peer);
    }
    pthread_rwlock_unlock(&p->lock);
}

void rdma_verbs_conn_failed(rdma_ctx_t *ctx, rdma_verbs_conn_t *conn, const char *why)
{
    if (conn->peer == ctx->node) {
        /* our own loop-back connection: only at teardown */
        ftsvm_debug("verbs: connection to self: %s", why);
        return;
    }
    rdma_peer_failed(ctx, conn->peer, why);
    rdma_verbs_qp_error(rdma_verbs_of(ctx), conn->peer);
}

static void rdma_verbs_peer_remove(rdma_ctx_t *ctx, int peer)
{
    rdma_verbs_qp_error(rdma_verbs_of(ctx), peer);
}

/* ---- completions -------------------------------------------------------- */

static unsigned rdma_verbs_poll_send(rdma_ctx_t *ctx, rdma_verbs_t *v)
{
    struct ibv_wc wc[RDMA_VERBS_POLL_BATCH];
    rdma_verbs_op_t *op;
    int n, i;

    n = ibv_poll_cq(v->send_cq, RDMA_VERBS_POLL_BATCH, wc);
    if (n < 0) {
        ftsvm_error("ibv_poll_cq failed on the send queue");
        return 0;
    }
    for (i = 0; i < n; i++) {
        op = (rdma_verbs_op_t *)(uintptr_t)wc[i].wr_id;
        if (wc[i].status == IBV_WC_SUCCESS) {
            op->status = FTSVM_OK;
        } else {
            op->status = FTSVM_EPEER;
            if (wc[i].status != IBV_WC_WR_FLUSH_ERR) {
                ftsvm_debug("verbs: work request to node %d failed: %s", op->peer,
                            ibv_wc_status_str(wc[i].status));
            }
            rdma_verbs_conn_failed(ctx, &v->conns[op->peer], ibv_wc_status_str(wc[i].status));
        }
        atomic_store_explicit(&op->done, 1, memory_order_release);
    }
    return (unsigned)n;
}

/* Wait for an operation this thread posted. The protocol thread also takes
 * in messages meanwhile: a handler that waits for a peer whose own handler
 * waits for us must not leave both receive queues full. */
static int rdma_verbs_wait(rdma_ctx_t *ctx, rdma_verbs_op_t *op)
{
    rdma_verbs_t *v = rdma_verbs_of(ctx);
    int on_progress_thread = rdma_on_progress_thread();
    unsigned idle = 0;

    while (!atomic_load_explicit(&op->done, memory_order_acquire)) {
        if (rdma_verbs_poll_send(ctx, v) != 0) {
            idle = 0;
            continue;
        }
        if (on_progress_thread) {
            (void)rdma_verbs_poll_recv(ctx, v);
        }
        /* soft-RoCE runs in the kernel of this machine: let it have the core */
        if (++idle > 64) {
            sched_yield();
        }
    }
    return op->status;
}

/* ---- bounce slots --------------------------------------------------------- */

static int rdma_verbs_slot_get(rdma_ctx_t *ctx, rdma_verbs_t *v)
{
    int slot = -1;

    for (;;) {
        pthread_mutex_lock(&v->slots_lock);
        if (v->nslots_free > 0) {
            slot = (int)v->slots_free[--v->nslots_free];
        }
        pthread_mutex_unlock(&v->slots_lock);
        if (slot >= 0) {
            return slot;
        }
        /* all in use by operations in flight: help them complete */
        if (rdma_verbs_poll_send(ctx, v) == 0) {
            sched_yield();
        }
    }
}

static void rdma_verbs_slot_put(rdma_verbs_t *v, int slot)
{
    pthread_mutex_lock(&v->slots_lock);
    v->slots_free[v->nslots_free++] = (unsigned)slot;
    pthread_mutex_unlock(&v->slots_lock);
}

static uint8_t *rdma_verbs_slot_addr(rdma_verbs_t *v, int slot)
{
    return v->slots + (size_t)slot * RDMA_VERBS_SLOT_SIZE;
}

/* The lkey of [buf, buf + len) when it lies in one of our regions, else 0
 * (the operation then goes through a bounce slot). */
static int rdma_verbs_lkey(rdma_ctx_t *ctx, rdma_verbs_t *v, const void *buf, size_t len,
                           uint32_t *lkey_p)
{
    uintptr_t start = (uintptr_t)buf, base;
    size_t i;

    for (i = 0; i < ctx->nregions; i++) {
        base = (uintptr_t)ctx->regions[i].addr;
        if (start >= base && len <= ctx->regions[i].size &&
            start - base <= ctx->regions[i].size - len) {
            *lkey_p = v->region_mrs[i]->lkey;
            return 1;
        }
    }
    return 0;
}

/* ---- posting -------------------------------------------------------------- */

static int rdma_verbs_post(rdma_ctx_t *ctx, int peer, struct ibv_send_wr *wr,
                           rdma_verbs_op_t *op, const char *what)
{
    rdma_verbs_t *v = rdma_verbs_of(ctx);
    rdma_verbs_peer_t *p = &v->peers[peer];
    struct ibv_send_wr *bad;
    int ret;

    op->peer = peer;
    atomic_init(&op->done, 0);
    wr->wr_id      = (uintptr_t)op;
    wr->send_flags |= IBV_SEND_SIGNALED;
    pthread_rwlock_rdlock(&p->lock);
    if (atomic_load(&ctx->peers[peer].failed)) {
        pthread_rwlock_unlock(&p->lock);
        return FTSVM_EPEER;
    }
    ret = ibv_post_send(v->conns[peer].id->qp, wr, &bad);
    pthread_rwlock_unlock(&p->lock);
    if (ret != 0) {
        if (atomic_load(&ctx->peers[peer].failed)) {
            return FTSVM_EPEER;
        }
        errno = ret;
        ftsvm_error("%s to node %d: ibv_post_send failed: %m", what, peer);
        return FTSVM_ETRANSPORT;
    }
    return FTSVM_OK;
}

/* One RDMA WRITE or READ of at most a slot (or any size from registered
 * memory); with a slot, op->copy_to gets a READ's data on completion. */
static int rdma_verbs_rw_post(rdma_ctx_t *ctx, int peer, unsigned region, uint64_t addr,
                              void *buf, size_t len, int write, rdma_verbs_op_t *op)
{
    rdma_verbs_t *v = rdma_verbs_of(ctx);
    struct ibv_sge sge = { .addr = (uintptr_t)buf, .length = (uint32_t)len };
    struct ibv_send_wr wr = {
        .sg_list = &sge, .num_sge = 1,
        .opcode  = write ? IBV_WR_RDMA_WRITE : IBV_WR_RDMA_READ,
    };
    int status;

    op->slot    = -1;
    op->copy_to = NULL;
    op->len     = len;
    if (!rdma_verbs_lkey(ctx, v, buf, len, &sge.lkey)) {
        op->slot   = rdma_verbs_slot_get(ctx, v);
        sge.addr   = (uintptr_t)rdma_verbs_slot_addr(v, op->slot);
        sge.lkey   = v->slots_mr->lkey;
        if (write) {
            memcpy(rdma_verbs_slot_addr(v, op->slot), buf, len);
        } else {
            op->copy_to = buf;
        }
    }
    wr.wr.rdma.remote_addr = addr;
    wr.wr.rdma.rkey        = v->peers[peer].rkeys[region];
    status = rdma_verbs_post(ctx, peer, &wr, op, write ? "put" : "get");
    if (status != FTSVM_OK && op->slot >= 0) {
        rdma_verbs_slot_put(v, op->slot);
        op->slot = -1;
    }
    return status;
}

/* A completed operation: copy out of its slot, release it. */
static int rdma_verbs_op_finish(rdma_verbs_t *v, rdma_verbs_op_t *op)
{
    if (op->slot >= 0) {
        if (op->copy_to != NULL && op->status == FTSVM_OK) {
            memcpy(op->copy_to, rdma_verbs_slot_addr(v, op->slot), op->len);
        }
        rdma_verbs_slot_put(v, op->slot);
        op->slot = -1;
    }
    return op->status;
}

static int rdma_verbs_rw(rdma_ctx_t *ctx, int peer, unsigned region, uint64_t addr,
                         void *buf, size_t len, int write)
{
    rdma_verbs_t *v = rdma_verbs_of(ctx);
    rdma_verbs_op_t op;
    uint32_t lkey;
    size_t done = 0, piece;
    int status;

    if (len == 0) {
        return FTSVM_OK;
    }
    do {
        piece = len - done;
        if (piece > RDMA_VERBS_SLOT_SIZE && !rdma_verbs_lkey(ctx, v, buf, len, &lkey)) {
            piece = RDMA_VERBS_SLOT_SIZE;
        }
        status = rdma_verbs_rw_post(ctx, peer, region, addr + done, (uint8_t *)buf + done,
                                    piece, write, &op);
        if (status != FTSVM_OK) {
            return status;
        }
        (void)rdma_verbs_wait(ctx, &op);
        status = rdma_verbs_op_finish(v, &op);
        done += piece;
    } while (status == FTSVM_OK && done < len);
    return status;
}

static int rdma_verbs_put(rdma_ctx_t *ctx, int peer, unsigned region, uint64_t addr,
                          const void *buf, size_t len)
{
    return rdma_verbs_rw(ctx, peer, region, addr, (void *)buf, len, 1);
}

static int rdma_verbs_get(rdma_ctx_t *ctx, int peer, unsigned region, uint64_t addr,
                          void *buf, size_t len)
{
    return rdma_verbs_rw(ctx, peer, region, addr, buf, len, 0);
}

static int rdma_verbs_get_start(rdma_ctx_t *ctx, int peer, unsigned region, uint64_t addr,
                                void *buf, size_t len, rdma_req_t **req_p)
{
    rdma_verbs_op_t *op;
    int status;

    if (len == 0) {
        *req_p = NULL;
        return FTSVM_OK;
    }
    if (len > RDMA_VERBS_SLOT_SIZE) {
        ftsvm_error("get_start: %zu bytes, at most %u", len, RDMA_VERBS_SLOT_SIZE);
        return FTSVM_EINVAL;
    }
    op = calloc(1, sizeof(*op));
    if (op == NULL) {
        ftsvm_error("cannot allocate a get request");
        return FTSVM_ENOMEM;
    }
    status = rdma_verbs_rw_post(ctx, peer, region, addr, buf, len, 0, op);
    if (status != FTSVM_OK) {
        free(op);
        return status;
    }
    *req_p = (rdma_req_t *)op;
    return FTSVM_OK;
}

static int rdma_verbs_req_poll(rdma_ctx_t *ctx, rdma_req_t *req)
{
    rdma_verbs_op_t *op = (rdma_verbs_op_t *)req;
    int status;

    if (!atomic_load_explicit(&op->done, memory_order_acquire)) {
        (void)rdma_verbs_poll_send(ctx, rdma_verbs_of(ctx));
        if (!atomic_load_explicit(&op->done, memory_order_acquire)) {
            return 0;
        }
    }
    status = rdma_verbs_op_finish(rdma_verbs_of(ctx), op);
    free(op);
    return (status == FTSVM_OK) ? 1 : status;
}

static int rdma_verbs_atomic(rdma_ctx_t *ctx, int op_kind, int peer, unsigned region,
                             uint64_t addr, uint64_t operand, uint64_t swap, uint64_t *old_p)
{
    rdma_verbs_t *v = rdma_verbs_of(ctx);
    rdma_verbs_op_t op = { .slot = -1 };
    struct ibv_sge sge = { .length = 8, .lkey = v->slots_mr->lkey };
    struct ibv_send_wr wr = { .sg_list = &sge, .num_sge = 1 };
    int status, slot;

    slot = rdma_verbs_slot_get(ctx, v);
    sge.addr = (uintptr_t)rdma_verbs_slot_addr(v, slot);
    if (op_kind == RDMA_ATOMIC_CSWAP) {
        wr.opcode = IBV_WR_ATOMIC_CMP_AND_SWP;
        wr.wr.atomic.compare_add = operand;
        wr.wr.atomic.swap        = swap;
    } else {
        wr.opcode = IBV_WR_ATOMIC_FETCH_AND_ADD;
        wr.wr.atomic.compare_add = operand;
    }
    wr.wr.atomic.remote_addr = addr;
    wr.wr.atomic.rkey        = v->peers[peer].rkeys[region];
    status = rdma_verbs_post(ctx, peer, &wr, &op,
                             (op_kind == RDMA_ATOMIC_CSWAP) ? "compare-swap" : "fetch-add");
    if (status == FTSVM_OK) {
        status = rdma_verbs_wait(ctx, &op);
    }
    if (status == FTSVM_OK) {
        memcpy(old_p, rdma_verbs_slot_addr(v, slot), 8);
    }
    rdma_verbs_slot_put(v, slot);
    return status;
}

/* Every operation waited for its completion, i.e. for the responder's
 * acknowledgement (see the top of the file): nothing is left to order. */
static int rdma_verbs_fence(rdma_ctx_t *ctx)
{
    (void)ctx;
    return FTSVM_OK;
}

/* As for fence: what was posted to the peer is complete there already; only
 * a failed peer is owed an error. */
static int rdma_verbs_flush(rdma_ctx_t *ctx, int peer)
{
    return atomic_load(&ctx->peers[peer].failed) ? FTSVM_EPEER : FTSVM_OK;
}

static int rdma_verbs_am_send(rdma_ctx_t *ctx, int peer, const void *hdr, size_t hdr_len,
                              const void *payload, size_t len)
{
    rdma_verbs_t *v = rdma_verbs_of(ctx);
    rdma_verbs_frame_t frame = { .hdr_len = (uint32_t)hdr_len, .payload_len = (uint32_t)len };
    rdma_verbs_op_t op = { .slot = -1 };
    struct ibv_sge sge = { .lkey = v->slots_mr->lkey };
    struct ibv_send_wr wr = { .sg_list = &sge, .num_sge = 1, .opcode = IBV_WR_SEND };
    uint8_t *buf;
    int status, slot;

    if (hdr_len > RDMA_VERBS_HDR_MAX || len > RDMA_AM_MAX_PAYLOAD) {
        ftsvm_error("message to node %d: header of %zu or payload of %zu bytes too large",
                    peer, hdr_len, len);
        return FTSVM_EINVAL;
    }
    slot = rdma_verbs_slot_get(ctx, v);
    buf  = rdma_verbs_slot_addr(v, slot);
    memcpy(buf, &frame, sizeof(frame));
    memcpy(buf + sizeof(frame), hdr, hdr_len);
    if (len > 0) {
        memcpy(buf + sizeof(frame) + hdr_len, payload, len);
    }
    sge.addr   = (uintptr_t)buf;
    sge.length = (uint32_t)(sizeof(frame) + hdr_len + len);
    status = rdma_verbs_post(ctx, peer, &wr, &op, "message");
    if (status == FTSVM_OK) {
        status = rdma_verbs_wait(ctx, &op);
    }
    rdma_verbs_slot_put(v, slot);
    return status;
}

static int rdma_verbs_describe_peer(rdma_ctx_t *ctx, int peer, char *buf, size_t size)
{
    if (atomic_load(&ctx->peers[peer].failed)) {
        return FTSVM_EPEER;
    }
    snprintf(buf, size, "verbs/%s", rdma_verbs_of(ctx)->device);
    return FTSVM_OK;
}

const rdma_backend_t rdma_verbs_backend = {
    .name          = "verbs",
    .create        = rdma_verbs_create,
    .destroy       = rdma_verbs_destroy,
    .progress      = rdma_verbs_progress,
    .arm           = rdma_verbs_arm,
    .put           = rdma_verbs_put,
    .get           = rdma_verbs_get,
    .get_start     = rdma_verbs_get_start,
    .req_poll      = rdma_verbs_req_poll,
    .atomic        = rdma_verbs_atomic,
    .fence         = rdma_verbs_fence,
    .flush         = rdma_verbs_flush,
    .am_send       = rdma_verbs_am_send,
    .peer_remove   = rdma_verbs_peer_remove,
    .describe_peer = rdma_verbs_describe_peer,
};

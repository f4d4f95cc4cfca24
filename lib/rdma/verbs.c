/*
 * Transport over libibverbs (DESIGN.md section 10): one RC queue pair to
 * every node (verbs_cm.c sets them up with librdmacm), regions allocated
 * here and registered for remote read, write and atomics, their keys
 * exchanged at start-up.
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
 * through wr_id and whoever polls it marks it done). Receives share another
 * CQ with a completion channel, polled by the protocol thread (progress.c),
 * which sleeps on it, on the rdma_cm event channel and on the device's
 * async events through one epoll fd.
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
#include <fcntl.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/mman.h>
#include <unistd.h>

/* One posted work request and who waits for it. */
typedef struct rdma_verbs_op {
    _Atomic int done;
    int         status;
    int         peer;
    int         slot;          /* bounce slot, -1: none */
    void       *copy_to;       /* a get into unregistered memory: the user's buffer */
    size_t      len;
} rdma_verbs_op_t;

/* Entry of the start-up exchange, then one rdma_verbs_blob_region_t per region. */
typedef struct rdma_verbs_blob {
    uint32_t ip;               /* network order */
    uint16_t port;             /* network order */
    uint16_t pad;
} rdma_verbs_blob_t;

typedef struct rdma_verbs_blob_region {
    uint64_t base;
    uint64_t size;
    uint32_t rkey;
    uint32_t pad;
} rdma_verbs_blob_region_t;

#define RDMA_VERBS_POLL_BATCH 16

static rdma_verbs_t *rdma_verbs_of(rdma_ctx_t *ctx)
{
    return ctx->backend_ctx;
}

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

static uint8_t *rdma_verbs_recv_buf(rdma_verbs_t *v, unsigned conn, unsigned slot)
{
    return v->recv_bufs + ((size_t)conn * RDMA_VERBS_RECVS + slot) * RDMA_VERBS_MSG_MAX;
}

static int rdma_verbs_post_recv(rdma_verbs_t *v, rdma_verbs_conn_t *conn, unsigned slot)
{
    struct ibv_sge sge = {
        .addr   = (uintptr_t)rdma_verbs_recv_buf(v, conn->index, slot),
        .length = RDMA_VERBS_MSG_MAX,
        .lkey   = v->recv_mr->lkey,
    };
    struct ibv_recv_wr wr = {
        .wr_id   = ((uint64_t)conn->index << 32) | slot,
        .sg_list = &sge,
        .num_sge = 1,
    }, *bad;

    return ibv_post_recv(conn->id->qp, &wr, &bad);
}

int rdma_verbs_post_recvs(rdma_verbs_t *v, rdma_verbs_conn_t *conn)
{
    unsigned slot;
    int ret;

    for (slot = 0; slot < RDMA_VERBS_RECVS; slot++) {
        ret = rdma_verbs_post_recv(v, conn, slot);
        if (ret != 0) {
            errno = ret;
            ftsvm_error("cannot post the receive buffers for node %d: %m", conn->peer);
            return FTSVM_ETRANSPORT;
        }
    }
    return FTSVM_OK;
}

/* A received message: frame, header, payload. The frame is checked here,
 * the rest by rdma_am_deliver like any backend's message. */
static void rdma_verbs_receive(rdma_ctx_t *ctx, const uint8_t *buf, size_t len, int peer)
{
    rdma_verbs_frame_t frame;

    if (len >= sizeof(frame)) {
        memcpy(&frame, buf, sizeof(frame));
    }
    if (len < sizeof(frame) || frame.hdr_len > RDMA_VERBS_HDR_MAX ||
        frame.payload_len > RDMA_AM_MAX_PAYLOAD ||
        sizeof(frame) + frame.hdr_len + frame.payload_len != len) {
        if (rdma_am_reject_counted(ctx)) {
            ftsvm_warn("rejected a message of %zu bytes from the connection of node %d: "
                       "bad frame", len, peer);
        }
        return;
    }
    rdma_am_deliver(ctx, buf + sizeof(frame), frame.hdr_len,
                    buf + sizeof(frame) + frame.hdr_len, frame.payload_len);
}

static unsigned rdma_verbs_poll_recv(rdma_ctx_t *ctx, rdma_verbs_t *v)
{
    struct ibv_wc wc[RDMA_VERBS_POLL_BATCH];
    rdma_verbs_conn_t *conn;
    unsigned slot;
    int n, i;

    n = ibv_poll_cq(v->recv_cq, RDMA_VERBS_POLL_BATCH, wc);
    if (n < 0) {
        ftsvm_error("ibv_poll_cq failed on the receive queue");
        return 0;
    }
    for (i = 0; i < n; i++) {
        conn = &v->conns[wc[i].wr_id >> 32];
        slot = (unsigned)(wc[i].wr_id & 0xffffffffu);
        if (wc[i].status != IBV_WC_SUCCESS) {
            rdma_verbs_conn_failed(ctx, conn, ibv_wc_status_str(wc[i].status));
            continue;
        }
        rdma_verbs_receive(ctx, rdma_verbs_recv_buf(v, conn->index, slot), wc[i].byte_len,
                           conn->peer);
        /* fails only once the queue pair is in error, which the flushed
         * receives report */
        (void)rdma_verbs_post_recv(v, conn, slot);
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

/* ---- protocol thread ------------------------------------------------------ */

static unsigned rdma_verbs_async_progress(rdma_ctx_t *ctx, rdma_verbs_t *v)
{
    struct ibv_async_event event;
    unsigned count = 0;
    int i;

    while (ibv_get_async_event(v->verbs, &event) == 0) {
        count++;
        switch (event.event_type) {
        case IBV_EVENT_QP_FATAL:
        case IBV_EVENT_QP_REQ_ERR:
        case IBV_EVENT_QP_ACCESS_ERR:
            for (i = 0; i <= ctx->nodes; i++) {
                if (v->conns[i].id != NULL && v->conns[i].id->qp == event.element.qp) {
                    rdma_verbs_conn_failed(ctx, &v->conns[i],
                                           ibv_event_type_str(event.event_type));
                }
            }
            break;
        case IBV_EVENT_DEVICE_FATAL:
            ftsvm_error("verbs: device %s failed", v->device);
            break;
        default:
            break;
        }
        ibv_ack_async_event(&event);
    }
    return count;
}

static unsigned rdma_verbs_progress(rdma_ctx_t *ctx)
{
    rdma_verbs_t *v = rdma_verbs_of(ctx);
    struct ibv_cq *cq;
    void *cq_context;
    unsigned count = 0;

    /* consume the completion channel's notifications (re-armed before a
     * sleep) */
    while (ibv_get_cq_event(v->comp_channel, &cq, &cq_context) == 0) {
        ibv_ack_cq_events(cq, 1);
    }
    count += rdma_verbs_poll_recv(ctx, v);
    count += rdma_verbs_cm_progress(ctx, v);
    count += rdma_verbs_async_progress(ctx, v);
    return count;
}

static int rdma_verbs_arm(rdma_ctx_t *ctx)
{
    rdma_verbs_t *v = rdma_verbs_of(ctx);
    int ret;

    ret = ibv_req_notify_cq(v->recv_cq, 0);
    if (ret != 0) {
        errno = ret;
        ftsvm_warn("protocol thread: ibv_req_notify_cq failed: %m");
        return FTSVM_ETRANSPORT;
    }
    /* what arrived before the CQ was armed raises no notification */
    return (rdma_verbs_poll_recv(ctx, v) != 0) ? 1 : FTSVM_OK;
}

/* ---- create / destroy ------------------------------------------------------ */

static void *rdma_verbs_mmap(size_t size)
{
    void *addr = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

    return (addr == MAP_FAILED) ? NULL : addr;
}

static size_t rdma_verbs_page_round(size_t size)
{
    size_t page = (size_t)sysconf(_SC_PAGESIZE);

    return (size + page - 1) / page * page;
}

static int rdma_verbs_reg(rdma_verbs_t *v, void *addr, size_t size, int access,
                          struct ibv_mr **mr_p, const char *what)
{
    *mr_p = ibv_reg_mr(v->pd, addr, size, access);
    if (*mr_p == NULL) {
        ftsvm_error("cannot register %s (%zu bytes) with %s: %m", what, size, v->device);
        return FTSVM_ENOMEM;
    }
    return FTSVM_OK;
}

static int rdma_verbs_memory(rdma_ctx_t *ctx, rdma_verbs_t *v)
{
    const int remote = IBV_ACCESS_LOCAL_WRITE | IBV_ACCESS_REMOTE_WRITE |
                       IBV_ACCESS_REMOTE_READ | IBV_ACCESS_REMOTE_ATOMIC;
    size_t i;
    int status;

    for (i = 0; i < ctx->nregions; i++) {
        ctx->regions[i].addr = rdma_verbs_mmap(rdma_verbs_page_round(ctx->regions[i].size));
        if (ctx->regions[i].addr == NULL) {
            ftsvm_error("cannot allocate region %zu of %zu bytes: %m", i,
                        ctx->regions[i].size);
            return FTSVM_ENOMEM;
        }
        status = rdma_verbs_reg(v, ctx->regions[i].addr, ctx->regions[i].size, remote,
                                &v->region_mrs[i], "a region");
        if (status != FTSVM_OK) {
            return status;
        }
    }
    v->slots = rdma_verbs_mmap((size_t)RDMA_VERBS_SLOTS * RDMA_VERBS_SLOT_SIZE);
    v->recv_bufs_size = rdma_verbs_page_round((size_t)(ctx->nodes + 1) * RDMA_VERBS_RECVS *
                                              RDMA_VERBS_MSG_MAX);
    v->recv_bufs = rdma_verbs_mmap(v->recv_bufs_size);
    if (v->slots == NULL || v->recv_bufs == NULL) {
        ftsvm_error("cannot allocate the message buffers: %m");
        return FTSVM_ENOMEM;
    }
    status = rdma_verbs_reg(v, v->slots, (size_t)RDMA_VERBS_SLOTS * RDMA_VERBS_SLOT_SIZE,
                            IBV_ACCESS_LOCAL_WRITE, &v->slots_mr, "the bounce buffers");
    if (status == FTSVM_OK) {
        status = rdma_verbs_reg(v, v->recv_bufs, v->recv_bufs_size, IBV_ACCESS_LOCAL_WRITE,
                                &v->recv_mr, "the receive buffers");
    }
    for (i = 0; i < RDMA_VERBS_SLOTS; i++) {
        v->slots_free[i] = (unsigned)i;
    }
    v->nslots_free = RDMA_VERBS_SLOTS;
    return status;
}

static int rdma_verbs_queues(rdma_ctx_t *ctx, rdma_verbs_t *v)
{
    struct ibv_device_attr attr;
    int send_cqe, recv_cqe;

    if (ibv_query_device(v->verbs, &attr) != 0) {
        ftsvm_error("cannot query RDMA device %s: %m", v->device);
        return FTSVM_ETRANSPORT;
    }
    /* READs and atomics in flight per queue pair, both ways */
    v->responder_resources = (uint8_t)(attr.max_qp_rd_atom < 16 ? attr.max_qp_rd_atom : 16);
    v->initiator_depth = (uint8_t)(attr.max_qp_init_rd_atom < 16 ? attr.max_qp_init_rd_atom :
                                   16);
    send_cqe = (ctx->nodes + 1) * RDMA_VERBS_SQ_DEPTH;
    recv_cqe = (ctx->nodes + 1) * RDMA_VERBS_RECVS;
    if (send_cqe > attr.max_cqe || recv_cqe > attr.max_cqe) {
        ftsvm_error("verbs: %d nodes need %d completion queue entries, %s has %d",
                    ctx->nodes, send_cqe, v->device, attr.max_cqe);
        return FTSVM_ERANGE;
    }
    v->pd = ibv_alloc_pd(v->verbs);
    if (v->pd == NULL) {
        ftsvm_error("ibv_alloc_pd failed on %s: %m", v->device);
        return FTSVM_ETRANSPORT;
    }
    v->comp_channel = ibv_create_comp_channel(v->verbs);
    if (v->comp_channel == NULL) {
        ftsvm_error("ibv_create_comp_channel failed: %m");
        return FTSVM_ETRANSPORT;
    }
    v->send_cq = ibv_create_cq(v->verbs, send_cqe, NULL, NULL, 0);
    v->recv_cq = ibv_create_cq(v->verbs, recv_cqe, NULL, v->comp_channel, 0);
    if (v->send_cq == NULL || v->recv_cq == NULL) {
        ftsvm_error("ibv_create_cq failed: %m");
        return FTSVM_ETRANSPORT;
    }
    return FTSVM_OK;
}

static int rdma_verbs_exchange(rdma_ctx_t *ctx, rdma_verbs_t *v, const rdma_params_t *params)
{
    size_t len = sizeof(rdma_verbs_blob_t) + ctx->nregions * sizeof(rdma_verbs_blob_region_t);
    rdma_verbs_blob_t head = { .ip = v->local.sin_addr.s_addr, .port = v->local.sin_port };
    rdma_verbs_blob_region_t region;
    uint8_t *blob, *all = NULL;
    size_t stride = 0, i;
    int status, node;

    blob = calloc(1, len);
    if (blob == NULL) {
        ftsvm_error("cannot allocate the address exchange");
        return FTSVM_ENOMEM;
    }
    memcpy(blob, &head, sizeof(head));
    for (i = 0; i < ctx->nregions; i++) {
        region.base = (uint64_t)(uintptr_t)ctx->regions[i].addr;
        region.size = ctx->regions[i].size;
        region.rkey = v->region_mrs[i]->rkey;
        region.pad  = 0;
        memcpy(blob + sizeof(head) + i * sizeof(region), &region, sizeof(region));
    }
    status = rdma_exchange_blobs(ctx, params, blob, len, &all, &stride);
    free(blob);
    if (status != FTSVM_OK) {
        return status;
    }
    if (stride != len) {
        ftsvm_error("verbs: the nodes disagree on the regions (%zu-byte addresses, ours %zu)",
                    stride, len);
        free(all);
        return FTSVM_EPROTO;
    }
    for (node = 0; node < ctx->nodes; node++) {
        memcpy(&head, all + (size_t)node * stride, sizeof(head));
        v->peers[node].ip   = head.ip;
        v->peers[node].port = head.port;
        for (i = 0; i < ctx->nregions; i++) {
            memcpy(&region, all + (size_t)node * stride + sizeof(head) + i * sizeof(region),
                   sizeof(region));
            ctx->peers[node].bases[i] = region.base;
            ctx->peers[node].sizes[i] = region.size;
            v->peers[node].rkeys[i]   = region.rkey;
        }
    }
    free(all);
    return FTSVM_OK;
}

/* One fd for the protocol thread to sleep on: receive completions, rdma_cm
 * events, device events. */
static int rdma_verbs_epoll(rdma_ctx_t *ctx, rdma_verbs_t *v)
{
    int fds[3] = { v->comp_channel->fd, v->cm_channel->fd, v->verbs->async_fd };
    struct epoll_event event = { .events = EPOLLIN };
    int i, flags;

    ctx->efd = epoll_create1(EPOLL_CLOEXEC);
    if (ctx->efd < 0) {
        ftsvm_error("epoll_create1 failed: %m");
        return FTSVM_ESYS;
    }
    for (i = 0; i < 3; i++) {
        flags = fcntl(fds[i], F_GETFL);
        event.data.fd = fds[i];
        if (flags < 0 || fcntl(fds[i], F_SETFL, flags | O_NONBLOCK) < 0 ||
            epoll_ctl(ctx->efd, EPOLL_CTL_ADD, fds[i], &event) < 0) {
            ftsvm_error("cannot watch the verbs event fds: %m");
            return FTSVM_ESYS;
        }
    }
    return FTSVM_OK;
}

static void rdma_verbs_destroy(rdma_ctx_t *ctx)
{
    rdma_verbs_t *v = rdma_verbs_of(ctx);
    size_t i;
    int node;

    if (ctx->efd >= 0) {
        close(ctx->efd);
        ctx->efd = -1;
    }
    rdma_verbs_disconnect_all(ctx, v);
    if (v->send_cq != NULL) {
        ibv_destroy_cq(v->send_cq);
    }
    if (v->recv_cq != NULL) {
        ibv_destroy_cq(v->recv_cq);
    }
    if (v->comp_channel != NULL) {
        ibv_destroy_comp_channel(v->comp_channel);
    }
    for (i = 0; v->region_mrs != NULL && i < ctx->nregions; i++) {
        if (v->region_mrs[i] != NULL) {
            ibv_dereg_mr(v->region_mrs[i]);
        }
    }
    if (v->slots_mr != NULL) {
        ibv_dereg_mr(v->slots_mr);
    }
    if (v->recv_mr != NULL) {
        ibv_dereg_mr(v->recv_mr);
    }
    if (v->pd != NULL) {
        ibv_dealloc_pd(v->pd);
    }
    if (v->cm_channel != NULL) {
        rdma_destroy_event_channel(v->cm_channel);
    }
    for (i = 0; i < ctx->nregions; i++) {
        if (ctx->regions[i].addr != NULL) {
            munmap(ctx->regions[i].addr, rdma_verbs_page_round(ctx->regions[i].size));
            ctx->regions[i].addr = NULL;
        }
    }
    if (v->slots != NULL) {
        munmap(v->slots, (size_t)RDMA_VERBS_SLOTS * RDMA_VERBS_SLOT_SIZE);
    }
    if (v->recv_bufs != NULL) {
        munmap(v->recv_bufs, v->recv_bufs_size);
    }
    for (node = 0; v->peers != NULL && node < ctx->nodes; node++) {
        pthread_rwlock_destroy(&v->peers[node].lock);
        free(v->peers[node].rkeys);
    }
    pthread_mutex_destroy(&v->slots_lock);
    free(v->peers);
    free(v->conns);
    free(v->region_mrs);
    free(v);
    ctx->backend_ctx = NULL;
}

static int rdma_verbs_create(rdma_ctx_t *ctx, const rdma_params_t *params)
{
    rdma_verbs_t *v;
    uint32_t ready = 1, *all_ready;
    size_t i;
    int status, node;

    v = calloc(1, sizeof(*v));
    if (v == NULL) {
        ftsvm_error("cannot allocate the verbs context");
        return FTSVM_ENOMEM;
    }
    ctx->backend_ctx = v;
    pthread_mutex_init(&v->slots_lock, NULL);
    v->peers      = calloc((size_t)ctx->nodes, sizeof(*v->peers));
    v->conns      = calloc((size_t)ctx->nodes + 1, sizeof(*v->conns));
    v->region_mrs = calloc(ctx->nregions + 1, sizeof(*v->region_mrs));
    if (v->peers == NULL || v->conns == NULL || v->region_mrs == NULL) {
        ftsvm_error("cannot allocate the verbs peer table");
        return FTSVM_ENOMEM;   /* rdma_create destroys what was made */
    }
    for (node = 0; node < ctx->nodes; node++) {
        pthread_rwlock_init(&v->peers[node].lock, NULL);
        v->peers[node].rkeys = calloc(ctx->nregions + 1, sizeof(uint32_t));
        if (v->peers[node].rkeys == NULL) {
            ftsvm_error("cannot allocate the verbs peer table");
            return FTSVM_ENOMEM;
        }
    }
    for (node = 0; node <= ctx->nodes; node++) {
        v->conns[node].peer  = (node == ctx->nodes) ? ctx->node : node;
        v->conns[node].index = (unsigned)node;
    }
    for (i = 0; i < ctx->nregions; i++) {
        ctx->regions[i].size = params->region_sizes[i];
    }
    /* listen before the exchange: a peer may connect as soon as it has our
     * address */
    status = rdma_verbs_listen(ctx, v, params);
    if (status == FTSVM_OK) {
        status = rdma_verbs_queues(ctx, v);
    }
    if (status == FTSVM_OK) {
        status = rdma_verbs_memory(ctx, v);
    }
    if (status == FTSVM_OK) {
        status = rdma_verbs_exchange(ctx, v, params);
    }
    if (status == FTSVM_OK) {
        status = rdma_verbs_connect_all(ctx, v);
    }
    if (status != FTSVM_OK) {
        return status;
    }
    /* everyone connected everywhere before anyone sends */
    all_ready = calloc((size_t)ctx->nodes, sizeof(*all_ready));
    if (all_ready == NULL) {
        ftsvm_error("cannot allocate the connection barrier");
        return FTSVM_ENOMEM;
    }
    status = params->exchange(params->exchange_arg, &ready, sizeof(ready), all_ready);
    free(all_ready);
    if (status != FTSVM_OK) {
        return status;
    }
    return rdma_verbs_epoll(ctx, v);
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

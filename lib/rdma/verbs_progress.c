/*
 * The verbs backend's part of the protocol thread (DESIGN.md section 10;
 * progress.c drives it). Receives share one CQ with a completion channel,
 * polled by the protocol thread, which sleeps on it, on the rdma_cm event
 * channel and on the device's async events through one epoll fd (made in
 * verbs_setup.c). While the protocol thread waits for an operation of its
 * own, rdma_verbs_wait (verbs.c) polls the receive CQ too.
 *
 * A received message has its frame checked here and goes to
 * rdma_am_deliver; its buffer is posted again at once.
 */
#include "verbs_int.h"
#include "common/log.h"
#include "ftsvm.h"

#include <errno.h>
#include <string.h>

/* ---- receives ------------------------------------------------------------- */

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

unsigned rdma_verbs_poll_recv(rdma_ctx_t *ctx, rdma_verbs_t *v)
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

unsigned rdma_verbs_progress(rdma_ctx_t *ctx)
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

int rdma_verbs_arm(rdma_ctx_t *ctx)
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

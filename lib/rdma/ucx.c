/*
 * Transport over UCX (UCP), its data path (DESIGN.md section 10): one
 * context and one worker per node, in multi-thread mode so that application
 * threads post their own operations; the worker is driven by the protocol
 * thread (progress.c). Start-up and teardown are in ucx_start.c.
 *
 * An application thread that waits for one of its own requests progresses
 * the worker itself; while any does (ctx->waiters > 0), the protocol thread
 * does not progress, so that the two do not contend for the worker lock and
 * a core.
 *
 * Messages go over rings in shared memory to every peer whose memory is
 * mapped here (ucx_ring.c: a sender killed mid-message cannot deafen the
 * receiver as it can in UCX's shared-memory queue), else as UCX active
 * messages.
 *
 * Where a get needs the target's progress (TCP), the heartbeat's gets go
 * over a second worker with a thread of its own (ucx_live.c), so that how
 * busy the protocol is does not decide liveness. A failed endpoint is closed
 * in its error callback (rdma_ucx_close_ep).
 */
#include "ucx_int.h"
#include "common/log.h"
#include "ftsvm.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <ucp/api/ucp.h>
#include <unistd.h>

int rdma_status_from_ucs(ucs_status_t status)
{
    switch (status) {
    case UCS_OK:
        return FTSVM_OK;
    case UCS_ERR_CONNECTION_RESET:
    case UCS_ERR_ENDPOINT_TIMEOUT:
    case UCS_ERR_UNREACHABLE:
    case UCS_ERR_CANCELED:
    case UCS_ERR_REJECTED:
    case UCS_ERR_NOT_CONNECTED:
        return FTSVM_EPEER;
    case UCS_ERR_NO_MEMORY:
        return FTSVM_ENOMEM;
    case UCS_ERR_TIMED_OUT:
        return FTSVM_ETIMEDOUT;
    default:
        return FTSVM_ETRANSPORT;
    }
}

/* the peer's endpoint with ep_lock held shared, or NULL (FTSVM_EPEER) when
 * it failed; rdma_ep_put drops the lock once the operation is posted */
static ucp_ep_h rdma_ep_get(rdma_ctx_t *ctx, int peer)
{
    rdma_ucx_peer_t *p = &((rdma_ucx_t *)ctx->backend_ctx)->peers[peer];

    pthread_rwlock_rdlock(&p->ep_lock);
    if (p->ep == NULL || atomic_load(&ctx->peers[peer].failed)) {
        pthread_rwlock_unlock(&p->ep_lock);
        return NULL;
    }
    return p->ep;
}

static void rdma_ep_put(rdma_ctx_t *ctx, int peer)
{
    pthread_rwlock_unlock(&((rdma_ucx_t *)ctx->backend_ctx)->peers[peer].ep_lock);
}

/* Wait for a request posted by this thread. Application threads progress the
 * worker themselves (the protocol thread stands aside meanwhile); the
 * protocol thread, when a handler waits, progresses inline. */
static int rdma_ucx_wait(rdma_ctx_t *ctx, ucs_status_ptr_t request, const char *what,
                         int peer)
{
    rdma_ucx_t *ucx = ctx->backend_ctx;
    ucs_status_t status;
    int ret, on_progress_thread;

    if (request == NULL) {
        return FTSVM_OK;   /* done at once (shared memory): nothing else to pay */
    }
    if (UCS_PTR_IS_ERR(request)) {
        status = UCS_PTR_STATUS(request);
    } else {
        on_progress_thread = rdma_on_progress_thread();
        if (!on_progress_thread) {
            atomic_fetch_add_explicit(&ctx->waiters, 1, memory_order_acq_rel);
        }
        while ((status = ucp_request_check_status(request)) == UCS_INPROGRESS) {
            ucp_worker_progress(ucx->worker);
            /* a peer whose ring to this node is full waits for it to be
             * drained (ucx_ring.c), perhaps before it answers */
            (void)rdma_ucx_ring_poll(ctx);
        }
        if (!on_progress_thread) {
            atomic_fetch_sub_explicit(&ctx->waiters, 1, memory_order_acq_rel);
        }
        ucp_request_free(request);
    }
    ret = rdma_status_from_ucs(status);
    if (ret == FTSVM_EPEER) {
        ftsvm_debug("%s to node %d failed: %s", what, peer, ucs_status_string(status));
    } else if (ret != FTSVM_OK) {
        ftsvm_error("%s to node %d failed: %s", what, peer, ucs_status_string(status));
    }
    return ret;
}

/* Force-close: operations in flight end now with an error, whatever the peer
 * does (a cut-off node never answers), and UCX forgets the endpoint, so that
 * what still comes from the peer finds none and is dropped. While a failed
 * endpoint stays open, UCX 1.13 aborts the process when it answers the
 * peer's emulated get or put on it ("unexpected error: Endpoint timeout" in
 * ucp_get_req_handler): hence the close from the error callback itself. */
void rdma_ucx_close_ep(rdma_ctx_t *ctx, int peer, int live, int wait)
{
    rdma_ucx_t *ucx = ctx->backend_ctx;
    rdma_ucx_peer_t *p = &ucx->peers[peer];
    ucp_request_param_t param = {0};
    ucs_status_ptr_t request;
    ucp_ep_h *slot = live ? &p->live_ep : &p->ep;
    ucp_ep_h ep;

    if (wait) {
        pthread_rwlock_wrlock(&p->ep_lock);
    } else if (pthread_rwlock_trywrlock(&p->ep_lock) != 0) {
        /* an operation is being posted on it (perhaps by this very
         * thread, inside UCX): the protocol thread closes it next */
        atomic_fetch_or(&p->close_pending, live ? 2 : 1);
        atomic_store(&ucx->close_pending, 1);
        rdma_wake(ctx);
        return;
    }
    ep = *slot;
    *slot = NULL;
    pthread_rwlock_unlock(&p->ep_lock);
    if (ep == NULL) {
        return;
    }
    param.op_attr_mask = UCP_OP_ATTR_FIELD_FLAGS;
    param.flags        = UCP_EP_CLOSE_FLAG_FORCE;
    request = ucp_ep_close_nbx(ep, &param);
    if (wait && !live) {
        (void)rdma_ucx_wait(ctx, request, "close", peer);
    } else if (wait && UCS_PTR_IS_PTR(request)) {
        /* the liveness worker is progressed by its own thread too (it is
         * made thread-safe): wait here until UCX has let the endpoint go,
         * so that none of its lanes outlives the peer's removal */
        while (ucp_request_check_status(request) == UCS_INPROGRESS) {
            ucp_worker_progress(ucx->live.worker);
        }
        ucp_request_free(request);
    } else if (UCS_PTR_IS_PTR(request)) {
        ucp_request_free(request);   /* released when it completes */
    }
}

static void rdma_ucx_peer_remove(rdma_ctx_t *ctx, int peer)
{
    rdma_ucx_close_ep(ctx, peer, 0, 1);
    rdma_ucx_close_ep(ctx, peer, 1, 1);
}

/* endpoints whose error callback could not close them */
static void rdma_ucx_close_pending(rdma_ctx_t *ctx, rdma_ucx_t *ucx)
{
    int peer, which;

    atomic_store(&ucx->close_pending, 0);
    for (peer = 0; peer < ctx->nodes; peer++) {
        which = atomic_exchange(&ucx->peers[peer].close_pending, 0);
        if (which & 1) {
            rdma_ucx_close_ep(ctx, peer, 0, 1);
        }
        if (which & 2) {
            rdma_ucx_close_ep(ctx, peer, 1, 1);
        }
    }
}

/* ---- protocol thread ------------------------------------------------------ */

static unsigned rdma_ucx_progress(rdma_ctx_t *ctx)
{
    rdma_ucx_t *ucx = ctx->backend_ctx;

    if (atomic_load_explicit(&ucx->close_pending, memory_order_relaxed)) {
        rdma_ucx_close_pending(ctx, ucx);
    }
    rdma_ucx_ring_disarm(ctx);
    return rdma_ucx_ring_poll(ctx) + ucp_worker_progress(ucx->worker);
}

static int rdma_ucx_arm(rdma_ctx_t *ctx)
{
    ucs_status_t status;

    if (rdma_ucx_ring_arm(ctx)) {
        return 1;   /* a message came to a ring meanwhile */
    }
    status = ucp_worker_arm(((rdma_ucx_t *)ctx->backend_ctx)->worker);
    if (status == UCS_ERR_BUSY) {
        return 1;   /* events arrived meanwhile: progress them */
    }
    if (status != UCS_OK) {
        ftsvm_warn("protocol thread: ucp_worker_arm failed: %s", ucs_status_string(status));
        return rdma_status_from_ucs(status);
    }
    return FTSVM_OK;
}

/* ---- active messages ------------------------------------------------------ */

/* May fire on any thread that progresses the worker: rdma_am_deliver only
 * validates and queues. */
static ucs_status_t rdma_ucx_am_receive(void *arg, const void *header, size_t header_length,
                                        void *data, size_t length,
                                        const ucp_am_recv_param_t *param)
{
    rdma_ctx_t *ctx = arg;

    if (param->recv_attr & UCP_AM_RECV_ATTR_FLAG_RNDV) {
        /* ftsvm sends eager only: a rendezvous message is not ours */
        if (rdma_am_reject_counted(ctx)) {
            ftsvm_warn("rejected a message of %zu bytes sent by rendezvous", length);
        }
        return UCS_OK;
    }
    rdma_am_deliver(ctx, header, header_length, data, length);
    return UCS_OK;
}

/* Registers the one UCX handler that carries every type; called before any
 * peer knows our address, so no message can find it missing. */
int rdma_ucx_am_listen(rdma_ctx_t *ctx, rdma_ucx_t *ucx)
{
    ucp_am_handler_param_t param = {0};
    ucs_status_t status;

    param.field_mask = UCP_AM_HANDLER_PARAM_FIELD_ID | UCP_AM_HANDLER_PARAM_FIELD_FLAGS |
                       UCP_AM_HANDLER_PARAM_FIELD_CB | UCP_AM_HANDLER_PARAM_FIELD_ARG;
    param.id    = RDMA_UCX_AM_ID;
    param.flags = UCP_AM_FLAG_WHOLE_MSG;
    param.cb    = rdma_ucx_am_receive;
    param.arg   = ctx;
    status = ucp_worker_set_am_recv_handler(ucx->worker, &param);
    if (status != UCS_OK) {
        ftsvm_error("cannot register the active-message handler: %s",
                    ucs_status_string(status));
        return FTSVM_ETRANSPORT;
    }
    return FTSVM_OK;
}

static int rdma_ucx_am_send(rdma_ctx_t *ctx, int peer, const void *hdr, size_t hdr_len,
                            const void *payload, size_t len)
{
    ucp_request_param_t param = {0};
    ucs_status_ptr_t request;
    ucp_ep_h ep;
    int status;

    if (rdma_ucx_ring_used(ctx, peer)) {
        return rdma_ucx_ring_send(ctx, peer, hdr, hdr_len, payload, len);
    }
    if ((ep = rdma_ep_get(ctx, peer)) == NULL) {
        return FTSVM_EPEER;
    }
    param.op_attr_mask = UCP_OP_ATTR_FIELD_FLAGS;
    param.flags        = UCP_AM_SEND_FLAG_EAGER;
    request = ucp_am_send_nbx(ep, RDMA_UCX_AM_ID, hdr, hdr_len, payload, len, &param);
    rdma_ep_put(ctx, peer);
    status = rdma_ucx_wait(ctx, request, "message", peer);
    /* UCX may hold the bytes until the worker is progressed again; an
     * application thread that sent a message usually goes on to sleep, and
     * a sleeping protocol thread is not woken by data waiting to go out
     * (measured: lock requests stalled 5-8 ms over TCP). Wake it. */
    if (!rdma_on_progress_thread()) {
        rdma_wake(ctx);
    }
    return status;
}

/* ---- failure ------------------------------------------------------------ */

/* Runs inside the progress of the endpoint's worker, with its lock held:
 * report the peer, then close that endpoint at once (rdma_ucx_close_ep). The
 * endpoint of the other worker is not closed here (that would take the other
 * worker's lock inside this one's); it fails on its own or goes with
 * rdma_peer_remove. */
static void rdma_ucx_ep_failed(rdma_ctx_t *ctx, ucp_ep_h ep, ucs_status_t status, int live)
{
    rdma_ucx_t *ucx = ctx->backend_ctx;
    char why[96];
    int peer;

    for (peer = 0; peer < ctx->nodes; peer++) {
        if ((live ? ucx->peers[peer].live_ep : ucx->peers[peer].ep) == ep) {
            snprintf(why, sizeof(why), "%s%s", ucs_status_string(status),
                     live ? " (liveness channel)" : "");
            rdma_peer_failed(ctx, peer, why);
            rdma_ucx_close_ep(ctx, peer, live, 0);
            return;
        }
    }
}

void rdma_ucx_ep_error(void *arg, ucp_ep_h ep, ucs_status_t status)
{
    rdma_ucx_ep_failed(arg, ep, status, 0);
}

void rdma_ucx_live_ep_error(void *arg, ucp_ep_h ep, ucs_status_t status)
{
    rdma_ucx_ep_failed(arg, ep, status, 1);
}

/* The transports UCX picked for one-sided operations, from its own report. */
static int rdma_ucx_describe_peer(rdma_ctx_t *ctx, int peer, char *buf, size_t size)
{
    FILE *out;
    char *text = NULL, *line, *save = NULL, *name, *end;
    ucp_ep_h ep;
    size_t text_len = 0, used = 0;
    int n, has_rma = 0;

    if ((ep = rdma_ep_get(ctx, peer)) == NULL) {
        return FTSVM_EPEER;
    }
    out = open_memstream(&text, &text_len);
    if (out == NULL) {
        rdma_ep_put(ctx, peer);
        return FTSVM_ENOMEM;
    }
    ucp_ep_print_info(ep, out);
    rdma_ep_put(ctx, peer);
    fclose(out);
    /* lane lines read "lane[0]:  3:sysv/memory.0 md[2] -> ...": keep each
     * lane's transport/device; "put[i]:" lines exist only when one-sided
     * operations have a lane of their own */
    for (line = strtok_r(text, "\n", &save); line != NULL; line = strtok_r(NULL, "\n", &save)) {
        if (strstr(line, "put[") != NULL) {
            has_rma = 1;
        }
        if (strstr(line, "lane[") == NULL || (name = strchr(strchr(line, ']'), ':')) == NULL ||
            (name = strchr(name + 1, ':')) == NULL) {
            continue;
        }
        name++;
        end = name + strcspn(name, " .");
        *end = '\0';
        if (strstr(buf, name) != NULL) {
            continue;
        }
        n = snprintf(buf + used, size - used, "%s%s", used ? " " : "", name);
        if (n < 0 || (size_t)n >= size - used) {
            break;
        }
        used += (size_t)n;
    }
    if (!has_rma && used + 40 < size) {
        snprintf(buf + used, size - used, " (one-sided emulated by messages)");
    }
    free(text);
    return FTSVM_OK;
}

/* ---- one-sided operations ------------------------------------------------ */

static int rdma_ucx_put(rdma_ctx_t *ctx, int peer, unsigned region, uint64_t addr,
                        const void *buf, size_t len)
{
    rdma_ucx_t *ucx = ctx->backend_ctx;
    ucp_request_param_t param = {0};
    ucs_status_ptr_t request;
    ucp_ep_h ep;

    if ((ep = rdma_ep_get(ctx, peer)) == NULL) {
        return FTSVM_EPEER;
    }
    request = ucp_put_nbx(ep, buf, len, addr, ucx->peers[peer].rkeys[region], &param);
    rdma_ep_put(ctx, peer);
    return rdma_ucx_wait(ctx, request, "put", peer);
}

/* Over shared memory the peer's region is mapped here (ucp_rkey_ptr) and a
 * put is a copy into that mapping: populate the mapping's page tables for
 * the range (MADV_POPULATE_WRITE, Linux 5.14), a kernel loop far cheaper
 * than a fault per page. Not mapped (TCP, IB): nothing to do. */
static int rdma_ucx_prefault(rdma_ctx_t *ctx, int peer, unsigned region, uint64_t addr,
                             size_t len)
{
    rdma_ucx_t *ucx = ctx->backend_ctx;
    uintptr_t page = (uintptr_t)sysconf(_SC_PAGESIZE), lo, hi;
    void *mapped;
    ucs_status_t status;

    if (rdma_ep_get(ctx, peer) == NULL) {   /* holds the peer's keys while they are read */
        return FTSVM_EPEER;
    }
    status = ucp_rkey_ptr(ucx->peers[peer].rkeys[region], addr, &mapped);
    rdma_ep_put(ctx, peer);
    if (status != UCS_OK) {
        return FTSVM_OK;
    }
    lo = (uintptr_t)mapped & ~(page - 1);
    hi = ((uintptr_t)mapped + len + page - 1) & ~(page - 1);
    if (madvise((void *)lo, hi - lo, MADV_POPULATE_WRITE) != 0) {
        ftsvm_debug("prefault of %zu bytes of node %d's region %u: %s", len, peer, region,
                    strerror(errno));
    }
    return FTSVM_OK;
}

static int rdma_ucx_get(rdma_ctx_t *ctx, int peer, unsigned region, uint64_t addr,
                        void *buf, size_t len)
{
    rdma_ucx_t *ucx = ctx->backend_ctx;
    ucp_request_param_t param = {0};
    ucs_status_ptr_t request;
    ucp_ep_h ep;

    if ((ep = rdma_ep_get(ctx, peer)) == NULL) {
        return FTSVM_EPEER;
    }
    request = ucp_get_nbx(ep, buf, len, addr, ucx->peers[peer].rkeys[region], &param);
    rdma_ep_put(ctx, peer);
    return rdma_ucx_wait(ctx, request, "get", peer);
}

/* A get that does not wait (heartbeats): over the liveness channel where
 * this peer has one, else over the main worker, whose progress the
 * protocol thread drives. */
static int rdma_ucx_get_start(rdma_ctx_t *ctx, int peer, unsigned region, uint64_t addr,
                              void *buf, size_t len, rdma_req_t **req_p)
{
    rdma_ucx_t *ucx = ctx->backend_ctx;
    ucp_request_param_t param = {0};
    ucs_status_ptr_t request;
    ucp_ep_h ep;

    if (ucx->peers[peer].live_used) {
        return rdma_ucx_live_get_start(ctx, peer, region, addr, buf, len, req_p);
    }
    if ((ep = rdma_ep_get(ctx, peer)) == NULL) {
        return FTSVM_EPEER;
    }
    request = ucp_get_nbx(ep, buf, len, addr, ucx->peers[peer].rkeys[region], &param);
    rdma_ep_put(ctx, peer);
    if (UCS_PTR_IS_ERR(request)) {
        return rdma_status_from_ucs(UCS_PTR_STATUS(request));
    }
    /* NULL: done already; the poll then says so */
    *req_p = (rdma_req_t *)request;
    return FTSVM_OK;
}

/* either worker's request */
static int rdma_ucx_req_poll(rdma_ctx_t *ctx, rdma_req_t *req)
{
    ucs_status_t status;

    (void)ctx;
    status = ucp_request_check_status(req);
    if (status == UCS_INPROGRESS) {
        return 0;
    }
    ucp_request_free(req);
    return (status == UCS_OK) ? 1 : rdma_status_from_ucs(status);
}

static int rdma_ucx_atomic(rdma_ctx_t *ctx, int op, int peer, unsigned region, uint64_t addr,
                           uint64_t operand, uint64_t swap, uint64_t *old_p)
{
    rdma_ucx_t *ucx = ctx->backend_ctx;
    ucp_request_param_t param = {0};
    ucs_status_ptr_t request;
    ucp_ep_h ep;
    int status;

    /* UCX: `buffer` holds the operand (the compare value of a compare-swap);
     * the reply buffer holds the value to swap in, and receives the old
     * remote value */
    *old_p = swap;
    param.op_attr_mask = UCP_OP_ATTR_FIELD_DATATYPE | UCP_OP_ATTR_FIELD_REPLY_BUFFER;
    param.datatype     = ucp_dt_make_contig(8);
    param.reply_buffer = old_p;
    if ((ep = rdma_ep_get(ctx, peer)) == NULL) {
        return FTSVM_EPEER;
    }
    request = ucp_atomic_op_nbx(ep, (op == RDMA_ATOMIC_CSWAP) ? UCP_ATOMIC_OP_CSWAP :
                                UCP_ATOMIC_OP_ADD, &operand, 1, addr,
                                ucx->peers[peer].rkeys[region], &param);
    rdma_ep_put(ctx, peer);
    status = rdma_ucx_wait(ctx, request, (op == RDMA_ATOMIC_CSWAP) ? "compare-swap" :
                           "fetch-add", peer);
    return status;
}

static int rdma_ucx_fence(rdma_ctx_t *ctx)
{
    ucs_status_t status;

    status = ucp_worker_fence(((rdma_ucx_t *)ctx->backend_ctx)->worker);
    if (status != UCS_OK) {
        ftsvm_error("ucp_worker_fence failed: %s", ucs_status_string(status));
        return rdma_status_from_ucs(status);
    }
    return FTSVM_OK;
}

/* per endpoint rather than the worker, so that one failed peer does not
 * hide whether the others completed */
static int rdma_ucx_flush(rdma_ctx_t *ctx, int peer)
{
    ucp_request_param_t param = {0};
    ucs_status_ptr_t request;
    ucp_ep_h ep;

    if ((ep = rdma_ep_get(ctx, peer)) == NULL) {
        return FTSVM_EPEER;
    }
    request = ucp_ep_flush_nbx(ep, &param);
    rdma_ep_put(ctx, peer);
    return rdma_ucx_wait(ctx, request, "flush", peer);
}

const rdma_backend_t rdma_ucx_backend = {
    .name          = "ucx",
    .create        = rdma_ucx_create,
    .destroy       = rdma_ucx_destroy,
    .progress      = rdma_ucx_progress,
    .arm           = rdma_ucx_arm,
    .put           = rdma_ucx_put,
    .get           = rdma_ucx_get,
    .get_start     = rdma_ucx_get_start,
    .req_poll      = rdma_ucx_req_poll,
    .atomic        = rdma_ucx_atomic,
    .fence         = rdma_ucx_fence,
    .flush         = rdma_ucx_flush,
    .am_send       = rdma_ucx_am_send,
    .peer_remove   = rdma_ucx_peer_remove,
    .describe_peer = rdma_ucx_describe_peer,
    .prefault      = rdma_ucx_prefault,
};

/*
 * Transport over UCX (UCP): one context and one worker per node, in
 * multi-thread mode so that application threads post their own operations;
 * the worker is driven by the protocol thread (progress.c).
 *
 * Regions are allocated by UCX itself (UCP_MEM_MAP_ALLOCATE): over shared
 * memory only UCX-allocated memory is reachable directly (~0.1 us), user
 * memory would fall back to an emulated path (~3 us).
 *
 * Start-up: map the regions, pack their keys, allgather (worker address,
 * region bases, keys) through the caller's exchange function, create an
 * endpoint with peer error handling to every node and unpack the keys
 * (rdma.c then starts the protocol thread and flushes every endpoint).
 *
 * An application thread that waits for one of its own requests progresses
 * the worker itself; while any does (ctx->waiters > 0), the protocol thread
 * does not progress, so that the two do not contend for the worker lock and
 * a core.
 *
 * The heartbeat's gets go over a second worker with a thread of its own
 * (ucx_live.c), so that how busy the protocol is does not decide liveness.
 * A failed endpoint is closed in its error callback (rdma_ucx_close_ep).
 */
#include "ucx_int.h"
#include "common/log.h"
#include "ftsvm.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
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
    return ucp_worker_progress(ucx->worker);
}

static int rdma_ucx_arm(rdma_ctx_t *ctx)
{
    ucs_status_t status = ucp_worker_arm(((rdma_ucx_t *)ctx->backend_ctx)->worker);

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
static int rdma_ucx_am_listen(rdma_ctx_t *ctx, rdma_ucx_t *ucx)
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

/* ---- start-up ---------------------------------------------------------- */

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

static void rdma_ep_error(void *arg, ucp_ep_h ep, ucs_status_t status)
{
    rdma_ucx_ep_failed(arg, ep, status, 0);
}

static void rdma_live_ep_error(void *arg, ucp_ep_h ep, ucs_status_t status)
{
    rdma_ucx_ep_failed(arg, ep, status, 1);
}

/* Set a UCX variable unless the user set it in the environment. */
static int rdma_ucx_default(ucp_config_t *config, const char *name, const char *value)
{
    char envname[64];
    ucs_status_t status;

    snprintf(envname, sizeof(envname), "UCX_%s", name);
    if (getenv(envname) != NULL) {
        return FTSVM_OK;
    }
    status = ucp_config_modify(config, name, value);
    if (status != UCS_OK) {
        ftsvm_error("UCX rejects %s=%s: %s", envname, value, ucs_status_string(status));
        return FTSVM_EINVAL;
    }
    return FTSVM_OK;
}

/* Shared-memory transports support peer error handling (which ftsvm needs
 * on every endpoint) only with UCX_{POSIX,SYSV}_ERROR_HANDLING=y. These
 * reach the memory domains only through the environment (ucp_config_modify
 * does not), so set them there, unless the user did, and only when the
 * transport list may include shared memory: otherwise UCX warns that they
 * are unused. */
static void rdma_ucx_shm_error_handling(const char *tls)
{
    if (tls == NULL) {
        tls = getenv("UCX_TLS");
    }
    if (tls != NULL && tls[0] != '^' && strstr(tls, "all") == NULL &&
        strstr(tls, "sm") == NULL && strstr(tls, "posix") == NULL &&
        strstr(tls, "sysv") == NULL) {
        return;
    }
    setenv("UCX_POSIX_ERROR_HANDLING", "y", 0);
    setenv("UCX_SYSV_ERROR_HANDLING", "y", 0);
}

static int rdma_ucx_context(rdma_ucx_t *ucx, const rdma_params_t *params)
{
    ucp_params_t ucp_params = {0};
    ucp_config_t *config;
    ucs_status_t status;
    char keepalive[32];
    int ret;

    rdma_ucx_shm_error_handling(params->tls);
    status = ucp_config_read(NULL, NULL, &config);
    if (status != UCS_OK) {
        ftsvm_error("cannot read the UCX configuration: %s", ucs_status_string(status));
        return FTSVM_ETRANSPORT;
    }
    /* A dead peer is reported only after a keepalive round: make the round
     * fit a fault-tolerant runtime unless the user chose otherwise. */
    snprintf(keepalive, sizeof(keepalive), "%.0fus", params->keepalive * 1e6);
    ret = rdma_ucx_default(config, "KEEPALIVE_INTERVAL", keepalive);
    if (ret == FTSVM_OK && params->tls != NULL) {
        status = ucp_config_modify(config, "TLS", params->tls);
        if (status != UCS_OK) {
            ftsvm_error("UCX rejects transport list '%s': %s", params->tls,
                        ucs_status_string(status));
            ret = FTSVM_EINVAL;
        }
    }
    if (ret != FTSVM_OK) {
        ucp_config_release(config);
        return ret;
    }
    ucp_params.field_mask = UCP_PARAM_FIELD_FEATURES | UCP_PARAM_FIELD_MT_WORKERS_SHARED;
    ucp_params.features   = UCP_FEATURE_RMA | UCP_FEATURE_AMO64 | UCP_FEATURE_AM |
                            UCP_FEATURE_WAKEUP;
    /* two workers (the main one and the liveness one), each driven by its own
     * threads, share the context */
    ucp_params.mt_workers_shared = 1;
    status = ucp_init(&ucp_params, config, &ucx->context);
    ucp_config_release(config);
    if (status != UCS_OK) {
        ftsvm_error("ucp_init failed: %s", ucs_status_string(status));
        return FTSVM_ETRANSPORT;
    }
    return FTSVM_OK;
}

int rdma_ucx_worker_create(rdma_ucx_t *ucx, ucp_worker_h *worker_p, int *efd_p)
{
    ucp_worker_params_t params = {0};
    ucp_worker_attr_t attr = {0};
    ucs_status_t status;

    params.field_mask  = UCP_WORKER_PARAM_FIELD_THREAD_MODE;
    params.thread_mode = UCS_THREAD_MODE_MULTI;
    status = ucp_worker_create(ucx->context, &params, worker_p);
    if (status != UCS_OK) {
        ftsvm_error("ucp_worker_create failed: %s", ucs_status_string(status));
        return FTSVM_ETRANSPORT;
    }
    attr.field_mask = UCP_WORKER_ATTR_FIELD_THREAD_MODE;
    status = ucp_worker_query(*worker_p, &attr);
    if (status != UCS_OK || attr.thread_mode != UCS_THREAD_MODE_MULTI) {
        /* application threads and the protocol thread share the worker */
        ftsvm_error("this UCX build has no multi-thread support (configure --enable-mt)");
        return FTSVM_ETRANSPORT;
    }
    status = ucp_worker_get_efd(*worker_p, efd_p);
    if (status != UCS_OK) {
        ftsvm_error("ucp_worker_get_efd failed: %s", ucs_status_string(status));
        return FTSVM_ETRANSPORT;
    }
    return FTSVM_OK;
}

static int rdma_map_regions(rdma_ctx_t *ctx, rdma_ucx_t *ucx,
                            const rdma_params_t *params)
{
    ucp_mem_map_params_t map = {0};
    ucp_mem_attr_t attr = {0};
    ucs_status_t status;
    size_t i;

    for (i = 0; i < ctx->nregions; i++) {
        map.field_mask = UCP_MEM_MAP_PARAM_FIELD_ADDRESS | UCP_MEM_MAP_PARAM_FIELD_LENGTH |
                         UCP_MEM_MAP_PARAM_FIELD_FLAGS;
        map.address    = NULL;
        map.length     = params->region_sizes[i];
        map.flags      = UCP_MEM_MAP_ALLOCATE;
        status = ucp_mem_map(ucx->context, &map, &ucx->memhs[i]);
        if (status != UCS_OK) {
            ftsvm_error("cannot allocate region %zu of %zu bytes: %s", i,
                        params->region_sizes[i], ucs_status_string(status));
            return FTSVM_ENOMEM;
        }
        attr.field_mask = UCP_MEM_ATTR_FIELD_ADDRESS | UCP_MEM_ATTR_FIELD_LENGTH;
        status = ucp_mem_query(ucx->memhs[i], &attr);
        if (status != UCS_OK) {
            ftsvm_error("ucp_mem_query failed: %s", ucs_status_string(status));
            return FTSVM_ETRANSPORT;
        }
        ctx->regions[i].addr = attr.address;
        ctx->regions[i].size = params->region_sizes[i];
        memset(attr.address, 0, params->region_sizes[i]);
    }
    return FTSVM_OK;
}

/* Blob layout: u32 address length, address, the same for the liveness
 * worker, then per region u64 base, u64 size, u32 key length, key. */
static int rdma_pack_blob(rdma_ctx_t *ctx, rdma_ucx_t *ucx, void **blob_p,
                          size_t *len_p)
{
    ucp_address_t *address, *live_address;
    size_t address_len, live_address_len, len, i;
    void **keys;
    size_t *key_lens;
    ucs_status_t status;
    uint8_t *blob, *p;
    uint32_t u32;
    uint64_t u64;
    int ret = FTSVM_ETRANSPORT;

    keys     = calloc(ctx->nregions + 1, sizeof(*keys));
    key_lens = calloc(ctx->nregions + 1, sizeof(*key_lens));
    if (keys == NULL || key_lens == NULL) {
        ftsvm_error("cannot allocate the key table");
        free(keys);
        free(key_lens);
        return FTSVM_ENOMEM;
    }
    status = ucp_worker_get_address(ucx->worker, &address, &address_len);
    if (status != UCS_OK) {
        ftsvm_error("ucp_worker_get_address failed: %s", ucs_status_string(status));
        free(keys);
        free(key_lens);
        return FTSVM_ETRANSPORT;
    }
    status = ucp_worker_get_address(ucx->live.worker, &live_address, &live_address_len);
    if (status != UCS_OK) {
        ftsvm_error("ucp_worker_get_address failed: %s", ucs_status_string(status));
        ucp_worker_release_address(ucx->worker, address);
        free(keys);
        free(key_lens);
        return FTSVM_ETRANSPORT;
    }
    len = 4 + address_len + 4 + live_address_len;
    for (i = 0; i < ctx->nregions; i++) {
        status = ucp_rkey_pack(ucx->context, ucx->memhs[i], &keys[i], &key_lens[i]);
        if (status != UCS_OK) {
            ftsvm_error("ucp_rkey_pack failed: %s", ucs_status_string(status));
            goto out_keys;
        }
        len += 8 + 8 + 4 + key_lens[i];
    }
    blob = malloc(len);
    if (blob == NULL) {
        ftsvm_error("cannot allocate %zu bytes for the transport address", len);
        ret = FTSVM_ENOMEM;
        goto out_keys;
    }
    p = blob;
    u32 = (uint32_t)address_len;
    memcpy(p, &u32, 4);                      p += 4;
    memcpy(p, address, address_len);         p += address_len;
    u32 = (uint32_t)live_address_len;
    memcpy(p, &u32, 4);                      p += 4;
    memcpy(p, live_address, live_address_len); p += live_address_len;
    for (i = 0; i < ctx->nregions; i++) {
        u64 = (uint64_t)(uintptr_t)ctx->regions[i].addr;
        memcpy(p, &u64, 8);                  p += 8;
        u64 = ctx->regions[i].size;
        memcpy(p, &u64, 8);                  p += 8;
        u32 = (uint32_t)key_lens[i];
        memcpy(p, &u32, 4);                  p += 4;
        memcpy(p, keys[i], key_lens[i]);     p += key_lens[i];
    }
    *blob_p = blob;
    *len_p  = len;
    ret = FTSVM_OK;
out_keys:
    for (i = 0; i < ctx->nregions; i++) {
        if (keys[i] != NULL) {
            ucp_rkey_buffer_release(keys[i]);
        }
    }
    free(keys);
    free(key_lens);
    ucp_worker_release_address(ucx->worker, address);
    ucp_worker_release_address(ucx->live.worker, live_address);
    return ret;
}

/* An endpoint with peer error handling (which a forced close needs). */
static int rdma_ucx_ep_create(rdma_ctx_t *ctx, ucp_worker_h worker, const void *address,
                              ucp_err_handler_cb_t on_error, int node, ucp_ep_h *ep_p)
{
    ucp_ep_params_t ep_params = {0};
    ucs_status_t status;

    ep_params.field_mask = UCP_EP_PARAM_FIELD_REMOTE_ADDRESS |
                           UCP_EP_PARAM_FIELD_ERR_HANDLING_MODE |
                           UCP_EP_PARAM_FIELD_ERR_HANDLER;
    ep_params.address         = address;
    ep_params.err_mode        = UCP_ERR_HANDLING_MODE_PEER;
    ep_params.err_handler.cb  = on_error;
    ep_params.err_handler.arg = ctx;
    status = ucp_ep_create(worker, &ep_params, ep_p);
    if (status != UCS_OK) {
        ftsvm_error("cannot create an endpoint to node %d: %s", node,
                    ucs_status_string(status));
        return FTSVM_ETRANSPORT;
    }
    return FTSVM_OK;
}

static int rdma_connect_peer(rdma_ctx_t *ctx, int node, const uint8_t *blob, size_t len)
{
    rdma_peer_t *peer = &ctx->peers[node];
    rdma_ucx_t *ucx = ctx->backend_ctx;
    rdma_ucx_peer_t *up = &ucx->peers[node];
    const uint8_t *p = blob, *end = blob + len, *address, *live_address;
    ucs_status_t status;
    uint32_t address_len, key_len;
    size_t i;
    int ret;

    if (end - p < 4) {
        goto bad_blob;
    }
    memcpy(&address_len, p, 4);
    p += 4;
    if ((size_t)(end - p) < address_len) {
        goto bad_blob;
    }
    address = p;
    p += address_len;
    if (end - p < 4) {
        goto bad_blob;
    }
    memcpy(&address_len, p, 4);
    p += 4;
    if ((size_t)(end - p) < address_len) {
        goto bad_blob;
    }
    live_address = p;
    p += address_len;
    ret = rdma_ucx_ep_create(ctx, ucx->worker, address, rdma_ep_error, node, &up->ep);
    if (ret == FTSVM_OK) {
        ret = rdma_ucx_ep_create(ctx, ucx->live.worker, live_address, rdma_live_ep_error, node,
                                 &up->live_ep);
    }
    if (ret != FTSVM_OK) {
        return ret;
    }
    for (i = 0; i < ctx->nregions; i++) {
        if (end - p < 20) {
            goto bad_blob;
        }
        memcpy(&peer->bases[i], p, 8);
        memcpy(&peer->sizes[i], p + 8, 8);
        memcpy(&key_len, p + 16, 4);
        p += 20;
        if ((size_t)(end - p) < key_len) {
            goto bad_blob;
        }
        status = ucp_ep_rkey_unpack(up->ep, p, &up->rkeys[i]);
        if (status == UCS_OK) {
            status = ucp_ep_rkey_unpack(up->live_ep, p, &up->live_rkeys[i]);
        }
        if (status != UCS_OK) {
            ftsvm_error("cannot unpack region %zu key of node %d: %s", i, node,
                        ucs_status_string(status));
            return FTSVM_ETRANSPORT;
        }
        p += key_len;
    }
    return FTSVM_OK;

bad_blob:
    ftsvm_error("the transport address of node %d does not parse (%zu bytes)", node, len);
    return FTSVM_EPROTO;
}

/* The endpoints of one worker (live 0: the main one; 1: the liveness one),
 * after every thread that progresses it has stopped. */
static void rdma_close_endpoints(rdma_ctx_t *ctx, rdma_ucx_t *ucx, int live)
{
    ucp_worker_h worker = live ? ucx->live.worker : ucx->worker;
    ucp_request_param_t param = {0};
    ucs_status_ptr_t *requests;
    ucp_ep_h *slot;
    int node, pending;

    requests = calloc((size_t)ctx->nodes, sizeof(*requests));
    if (requests == NULL) {
        ftsvm_error("cannot allocate the endpoint close table; endpoints leak");
        return;
    }
    /* Force-close: a flush-close would wait for a handshake with peers that
     * may be gone or closing themselves; callers flush and agree (a barrier)
     * before they destroy the transport. */
    param.op_attr_mask = UCP_OP_ATTR_FIELD_FLAGS;
    param.flags        = UCP_EP_CLOSE_FLAG_FORCE;
    for (node = 0; node < ctx->nodes; node++) {
        slot = live ? &ucx->peers[node].live_ep : &ucx->peers[node].ep;
        requests[node] = NULL;
        if (*slot != NULL) {
            requests[node] = ucp_ep_close_nbx(*slot, &param);
            *slot = NULL;
        }
    }
    do {
        ucp_worker_progress(worker);
        pending = 0;
        for (node = 0; node < ctx->nodes; node++) {
            if (UCS_PTR_IS_PTR(requests[node])) {
                if (ucp_request_check_status(requests[node]) == UCS_INPROGRESS) {
                    pending = 1;
                } else {
                    ucp_request_free(requests[node]);
                    requests[node] = NULL;
                }
            }
        }
    } while (pending);
    free(requests);
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

/* ---- create / destroy ------------------------------------------------------ */

static void rdma_ucx_destroy_rkeys(rdma_ctx_t *ctx, ucp_rkey_h *rkeys)
{
    size_t i;

    for (i = 0; rkeys != NULL && i < ctx->nregions; i++) {
        if (rkeys[i] != NULL) {
            ucp_rkey_destroy(rkeys[i]);
        }
    }
}

static void rdma_ucx_destroy(rdma_ctx_t *ctx)
{
    rdma_ucx_t *ucx = ctx->backend_ctx;
    size_t i;
    int node;

    rdma_ucx_live_stop(ucx);
    for (node = 0; ucx->peers != NULL && node < ctx->nodes; node++) {
        rdma_ucx_destroy_rkeys(ctx, ucx->peers[node].rkeys);
        rdma_ucx_destroy_rkeys(ctx, ucx->peers[node].live_rkeys);
    }
    if (ucx->worker != NULL && ucx->peers != NULL) {
        rdma_close_endpoints(ctx, ucx, 0);
    }
    if (ucx->live.worker != NULL && ucx->peers != NULL) {
        rdma_close_endpoints(ctx, ucx, 1);
    }
    for (i = 0; ucx->memhs != NULL && i < ctx->nregions; i++) {
        if (ucx->memhs[i] != NULL) {
            ucp_mem_unmap(ucx->context, ucx->memhs[i]);
        }
    }
    rdma_ucx_live_destroy(ucx);
    if (ucx->worker != NULL) {
        ucp_worker_destroy(ucx->worker);
    }
    if (ucx->context != NULL) {
        ucp_cleanup(ucx->context);
    }
    for (node = 0; ucx->peers != NULL && node < ctx->nodes; node++) {
        pthread_rwlock_destroy(&ucx->peers[node].ep_lock);
        free(ucx->peers[node].rkeys);
        free(ucx->peers[node].live_rkeys);
    }
    free(ucx->peers);
    free(ucx->memhs);
    free(ucx);
    ctx->backend_ctx = NULL;
}

static int rdma_ucx_create(rdma_ctx_t *ctx, const rdma_params_t *params)
{
    rdma_ucx_t *ucx;
    uint8_t *all = NULL;
    void *blob = NULL;
    size_t blob_len = 0, stride = 0;
    int status, node;

    ucx = calloc(1, sizeof(*ucx));
    if (ucx == NULL) {
        ftsvm_error("cannot allocate the UCX context");
        return FTSVM_ENOMEM;
    }
    ctx->backend_ctx = ucx;
    ucx->memhs = calloc(ctx->nregions + 1, sizeof(*ucx->memhs));
    ucx->peers = calloc((size_t)ctx->nodes, sizeof(*ucx->peers));
    if (ucx->memhs == NULL || ucx->peers == NULL) {
        ftsvm_error("cannot allocate the UCX peer table");
        return FTSVM_ENOMEM;   /* rdma_create destroys what was made */
    }
    for (node = 0; node < ctx->nodes; node++) {
        pthread_rwlock_init(&ucx->peers[node].ep_lock, NULL);
        ucx->peers[node].rkeys      = calloc(ctx->nregions + 1, sizeof(ucp_rkey_h));
        ucx->peers[node].live_rkeys = calloc(ctx->nregions + 1, sizeof(ucp_rkey_h));
        if (ucx->peers[node].rkeys == NULL || ucx->peers[node].live_rkeys == NULL) {
            ftsvm_error("cannot allocate the UCX peer table");
            return FTSVM_ENOMEM;
        }
    }
    status = rdma_ucx_context(ucx, params);
    if (status != FTSVM_OK) {
        return status;
    }
    status = rdma_ucx_worker_create(ucx, &ucx->worker, &ctx->efd);
    if (status == FTSVM_OK) {
        status = rdma_ucx_live_create(ucx, ctx->idle_timeout_ms);
    }
    if (status != FTSVM_OK) {
        return status;
    }
    status = rdma_ucx_am_listen(ctx, ucx);
    if (status != FTSVM_OK) {
        return status;
    }
    status = rdma_map_regions(ctx, ucx, params);
    if (status != FTSVM_OK) {
        return status;
    }
    status = rdma_pack_blob(ctx, ucx, &blob, &blob_len);
    if (status != FTSVM_OK) {
        return status;
    }
    status = rdma_exchange_blobs(ctx, params, blob, blob_len, &all, &stride);
    free(blob);
    if (status != FTSVM_OK) {
        return status;
    }
    for (node = 0; node < ctx->nodes && status == FTSVM_OK; node++) {
        status = rdma_connect_peer(ctx, node, all + (size_t)node * stride, stride);
    }
    free(all);
    if (status != FTSVM_OK) {
        return status;
    }
    return rdma_ucx_live_start(ctx);
}

const rdma_backend_t rdma_ucx_backend = {
    .name          = "ucx",
    .create        = rdma_ucx_create,
    .destroy       = rdma_ucx_destroy,
    .progress      = rdma_ucx_progress,
    .arm           = rdma_ucx_arm,
    .put           = rdma_ucx_put,
    .get           = rdma_ucx_get,
    .get_start     = rdma_ucx_live_get_start,   /* heartbeats: ucx_live.c */
    .req_poll      = rdma_ucx_live_req_poll,
    .atomic        = rdma_ucx_atomic,
    .fence         = rdma_ucx_fence,
    .flush         = rdma_ucx_flush,
    .am_send       = rdma_ucx_am_send,
    .peer_remove   = rdma_ucx_peer_remove,
    .describe_peer = rdma_ucx_describe_peer,
};

/*
 * Start-up and teardown of the UCX backend (DESIGN.md section 10): the
 * context, the workers, the regions and the endpoints.
 *
 * Regions are allocated by UCX itself (UCP_MEM_MAP_ALLOCATE): over shared
 * memory only UCX-allocated memory is reachable directly (~0.1 us), user
 * memory would fall back to an emulated path (~3 us).
 *
 * Start-up: map the regions and the message rings (ucx_ring.c), pack their
 * keys, allgather (worker addresses, region bases, keys, wake-up socket
 * addresses) through the caller's exchange function, create an
 * endpoint with peer error handling to every node and unpack the keys
 * (rdma.c then starts the protocol thread and flushes every endpoint).
 *
 * The liveness channel (ucx_live.c) is set up only where a get needs the
 * target's progress (rdma_ucx_live_wanted); the context is then made again
 * for two workers driven by different threads.
 */
#include "ucx_int.h"
#include "common/log.h"
#include "ftsvm.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <ucp/api/ucp.h>

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

/* `workers_shared`: more than one worker, driven by different threads */
static int rdma_ucx_context(rdma_ucx_t *ucx, const rdma_params_t *params, int workers_shared)
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
    ucp_params.mt_workers_shared = workers_shared;
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

/* Memory UCX allocates and registers, zeroed. */
static int rdma_map_one(rdma_ucx_t *ucx, size_t size, const char *what, size_t index,
                        ucp_mem_h *memh_p, void **addr_p)
{
    ucp_mem_map_params_t map = {0};
    ucp_mem_attr_t attr = {0};
    ucs_status_t status;

    map.field_mask = UCP_MEM_MAP_PARAM_FIELD_ADDRESS | UCP_MEM_MAP_PARAM_FIELD_LENGTH |
                     UCP_MEM_MAP_PARAM_FIELD_FLAGS;
    map.address    = NULL;
    map.length     = size;
    map.flags      = UCP_MEM_MAP_ALLOCATE;
    status = ucp_mem_map(ucx->context, &map, memh_p);
    if (status != UCS_OK) {
        ftsvm_error("cannot allocate %s %zu of %zu bytes: %s", what, index, size,
                    ucs_status_string(status));
        return FTSVM_ENOMEM;
    }
    attr.field_mask = UCP_MEM_ATTR_FIELD_ADDRESS | UCP_MEM_ATTR_FIELD_LENGTH;
    status = ucp_mem_query(*memh_p, &attr);
    if (status != UCS_OK) {
        ftsvm_error("ucp_mem_query failed: %s", ucs_status_string(status));
        return FTSVM_ETRANSPORT;
    }
    memset(attr.address, 0, size);
    *addr_p = attr.address;
    return FTSVM_OK;
}

/* The caller's regions, then the message rings (ucx_ring.c). */
static int rdma_map_regions(rdma_ctx_t *ctx, rdma_ucx_t *ucx,
                            const rdma_params_t *params)
{
    void *addr;
    size_t i;
    int status;

    for (i = 0; i < ctx->nregions; i++) {
        status = rdma_map_one(ucx, params->region_sizes[i], "region", i, &ucx->memhs[i],
                              &ctx->regions[i].addr);
        if (status != FTSVM_OK) {
            return status;
        }
        ctx->regions[i].size = params->region_sizes[i];
    }
    ucx->ring.size = rdma_ucx_ring_region_size(ctx->nodes);
    status = rdma_map_one(ucx, ucx->ring.size, "message ring region", 0, &ucx->ring.memh,
                          &addr);
    ucx->ring.base = addr;
    return status;
}

/* A length-prefixed field of the blob: u32 length, then the bytes. */
static uint8_t *rdma_blob_field(uint8_t *p, const void *data, size_t len)
{
    uint32_t u32 = (uint32_t)len;

    memcpy(p, &u32, 4);
    if (len > 0) {
        memcpy(p + 4, data, len);
    }
    return p + 4 + len;
}

/* Read a field that rdma_blob_field wrote, from [*p, end): -1 when the blob
 * ends before it does. */
static int rdma_blob_take(const uint8_t **p, const uint8_t *end, const uint8_t **data_p,
                          uint32_t *len_p)
{
    uint32_t len;

    if (end - *p < 4) {
        return -1;
    }
    memcpy(&len, *p, 4);
    if ((size_t)(end - *p - 4) < len) {
        return -1;
    }
    *data_p = *p + 4;
    *len_p  = len;
    *p += 4 + (size_t)len;
    return 0;
}

/* The blob from the worker addresses and the packed keys: per region
 * u64 base, u64 size, then the key as a field. */
static int rdma_blob_build(rdma_ctx_t *ctx, const void *address, size_t address_len,
                           const void *live_address, size_t live_address_len,
                           void *const *keys, const size_t *key_lens, void **blob_p,
                           size_t *len_p)
{
    rdma_ucx_ring_t *ring = &((rdma_ucx_t *)ctx->backend_ctx)->ring;
    rdma_ucx_proc_t proc;
    size_t len = 4 + sizeof(proc) + 4 + address_len + 4 + live_address_len, i;
    uint8_t *blob, *p;
    uint64_t u64;

    rdma_ucx_proc_self(&proc);
    for (i = 0; i <= ctx->nregions; i++) {
        len += 8 + 8 + 4 + key_lens[i];
    }
    len += 4 + ring->wake_len;
    blob = malloc(len);
    if (blob == NULL) {
        ftsvm_error("cannot allocate %zu bytes for the transport address", len);
        return FTSVM_ENOMEM;
    }
    p = rdma_blob_field(blob, &proc, sizeof(proc));
    p = rdma_blob_field(p, address, address_len);
    p = rdma_blob_field(p, live_address, live_address_len);
    for (i = 0; i <= ctx->nregions; i++) {
        u64 = (uint64_t)(uintptr_t)(i < ctx->nregions ? ctx->regions[i].addr : ring->base);
        memcpy(p, &u64, 8);
        u64 = i < ctx->nregions ? ctx->regions[i].size : ring->size;
        memcpy(p + 8, &u64, 8);
        p = rdma_blob_field(p + 16, keys[i], key_lens[i]);
    }
    (void)rdma_blob_field(p, &ring->wake_addr, ring->wake_len);
    *blob_p = blob;
    *len_p  = len;
    return FTSVM_OK;
}

/* Blob layout: the process (rdma_ucx_proc_t, as a field), u32 address
 * length, address, the same for the liveness
 * worker (length 0: this node has no liveness channel), then per region
 * and for the message rings (last) u64 base, u64 size, u32 key length,
 * key; then u32 length and the wake-up socket's address. */
static int rdma_pack_blob(rdma_ctx_t *ctx, rdma_ucx_t *ucx, void **blob_p,
                          size_t *len_p)
{
    ucp_address_t *address = NULL, *live_address = NULL;
    size_t address_len, live_address_len = 0, i;
    void **keys;
    size_t *key_lens;
    ucs_status_t status;
    int ret = FTSVM_ETRANSPORT;

    keys     = calloc(ctx->nregions + 1, sizeof(*keys));
    key_lens = calloc(ctx->nregions + 1, sizeof(*key_lens));
    if (keys == NULL || key_lens == NULL) {
        ftsvm_error("cannot allocate the key table");
        ret = FTSVM_ENOMEM;
        goto out;
    }
    status = ucp_worker_get_address(ucx->worker, &address, &address_len);
    if (status == UCS_OK && ucx->live.enabled) {
        status = ucp_worker_get_address(ucx->live.worker, &live_address, &live_address_len);
    }
    if (status != UCS_OK) {
        ftsvm_error("ucp_worker_get_address failed: %s", ucs_status_string(status));
        goto out;
    }
    for (i = 0; i <= ctx->nregions; i++) {
        status = ucp_rkey_pack(ucx->context, i < ctx->nregions ? ucx->memhs[i] : ucx->ring.memh,
                               &keys[i], &key_lens[i]);
        if (status != UCS_OK) {
            ftsvm_error("ucp_rkey_pack failed: %s", ucs_status_string(status));
            goto out;
        }
    }
    ret = rdma_blob_build(ctx, address, address_len, live_address, live_address_len, keys,
                          key_lens, blob_p, len_p);
out:
    for (i = 0; keys != NULL && i <= ctx->nregions; i++) {
        if (keys[i] != NULL) {
            ucp_rkey_buffer_release(keys[i]);
        }
    }
    free(keys);
    free(key_lens);
    if (address != NULL) {
        ucp_worker_release_address(ucx->worker, address);
    }
    if (live_address != NULL) {
        ucp_worker_release_address(ucx->live.worker, live_address);
    }
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
        /* over shared memory a peer that died has no segments left to map */
        *ep_p = NULL;
        rdma_peer_unreached(ctx, node, ucs_status_string(status));
    }
    return FTSVM_OK;
}

/* The tail of a peer's blob: its message rings and wake-up socket. Where
 * UCX can map the rings here (shared memory), messages to the peer go over
 * them; else over UCX's active messages, whose transports (TCP, InfiniBand)
 * have no shared queue. FTSVM_EPROTO (not logged) when the blob does not
 * parse. */
static int rdma_connect_ring(rdma_ctx_t *ctx, int node, const uint8_t *p, const uint8_t *end)
{
    rdma_ucx_peer_t *up = &((rdma_ucx_t *)ctx->backend_ctx)->peers[node];
    const uint8_t *key, *wake;
    uint32_t key_len, wake_len;
    uint64_t base, size;
    void *mapped;
    ucs_status_t status;

    if (end - p < 16) {
        return FTSVM_EPROTO;
    }
    memcpy(&base, p, 8);
    memcpy(&size, p + 8, 8);
    p += 16;
    if (rdma_blob_take(&p, end, &key, &key_len) != 0 ||
        rdma_blob_take(&p, end, &wake, &wake_len) != 0 ||
        size != rdma_ucx_ring_region_size(ctx->nodes) ||
        wake_len > sizeof(struct sockaddr_un)) {
        return FTSVM_EPROTO;
    }
    if (node == ctx->node) {
        return FTSVM_OK;   /* messages to self are queued directly (am.c) */
    }
    status = ucp_ep_rkey_unpack(up->ep, key, &up->ring_rkey);
    if (status != UCS_OK) {
        up->ring_rkey = NULL;
        ftsvm_error("cannot unpack the message ring key of node %d: %s", node,
                    ucs_status_string(status));
        return FTSVM_ETRANSPORT;
    }
    if (ucp_rkey_ptr(up->ring_rkey, base, &mapped) == UCS_OK) {
        rdma_ucx_ring_connect(ctx, node, mapped, wake, wake_len);
    }
    return FTSVM_OK;
}

static int rdma_connect_peer(rdma_ctx_t *ctx, int node, const uint8_t *blob, size_t len)
{
    rdma_peer_t *peer = &ctx->peers[node];
    rdma_ucx_t *ucx = ctx->backend_ctx;
    rdma_ucx_peer_t *up = &ucx->peers[node];
    const uint8_t *p = blob, *end = blob + len, *address, *live_address, *key, *proc;
    ucs_status_t status;
    uint32_t address_len, live_address_len, key_len, proc_len;
    size_t i;
    int ret;

    if (rdma_blob_take(&p, end, &proc, &proc_len) != 0 ||
        proc_len != sizeof(rdma_ucx_proc_t) ||
        rdma_blob_take(&p, end, &address, &address_len) != 0 ||
        rdma_blob_take(&p, end, &live_address, &live_address_len) != 0) {
        goto bad_blob;
    }
    ret = rdma_ucx_ep_create(ctx, ucx->worker, address, rdma_ucx_ep_error, node, &up->ep);
    if (up->ep == NULL) {
        return FTSVM_OK;   /* unreached: no keys to unpack */
    }
    /* Just before the keys: unpacking the key of a dead peer's shared
     * memory fails in shmat and UCX 1.13 then crashes (SIGSEGV in
     * uct_rkey_release). The endpoint stays until the first view removes
     * the peer; its keys stay NULL and no operation reaches them. (This
     * narrows the window to the time between the check and the unpack.) */
    if (node != ctx->node && rdma_ucx_proc_exited(proc)) {
        rdma_peer_unreached(ctx, node, "its process has exited");
        return FTSVM_OK;
    }
    /* the channel only where both ends have it; else heartbeats go over ep */
    up->live_used = ucx->live.enabled && live_address_len > 0;
    if (ret == FTSVM_OK && up->live_used) {
        ret = rdma_ucx_ep_create(ctx, ucx->live.worker, live_address, rdma_ucx_live_ep_error, node,
                                 &up->live_ep);
        up->live_used = (up->live_ep != NULL);
    }
    if (ret != FTSVM_OK) {
        return ret;
    }
    for (i = 0; i < ctx->nregions; i++) {
        if (end - p < 16) {
            goto bad_blob;
        }
        memcpy(&peer->bases[i], p, 8);
        memcpy(&peer->sizes[i], p + 8, 8);
        p += 16;
        if (rdma_blob_take(&p, end, &key, &key_len) != 0) {
            goto bad_blob;
        }
        status = ucp_ep_rkey_unpack(up->ep, key, &up->rkeys[i]);
        if (status == UCS_OK && up->live_used) {
            status = ucp_ep_rkey_unpack(up->live_ep, key, &up->live_rkeys[i]);
        }
        if (status != UCS_OK) {
            ftsvm_error("cannot unpack region %zu key of node %d: %s", i, node,
                        ucs_status_string(status));
            return FTSVM_ETRANSPORT;
        }
    }
    ret = rdma_connect_ring(ctx, node, p, end);
    if (ret == FTSVM_EPROTO) {
        goto bad_blob;
    }
    return ret;

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

static void rdma_ucx_destroy_rkeys(rdma_ctx_t *ctx, ucp_rkey_h *rkeys)
{
    size_t i;

    for (i = 0; rkeys != NULL && i < ctx->nregions; i++) {
        if (rkeys[i] != NULL) {
            ucp_rkey_destroy(rkeys[i]);
        }
    }
}

void rdma_ucx_destroy(rdma_ctx_t *ctx)
{
    rdma_ucx_t *ucx = ctx->backend_ctx;
    size_t i;
    int node;

    rdma_ucx_live_stop(ucx);
    for (node = 0; ucx->peers != NULL && node < ctx->nodes; node++) {
        rdma_ucx_destroy_rkeys(ctx, ucx->peers[node].rkeys);
        rdma_ucx_destroy_rkeys(ctx, ucx->peers[node].live_rkeys);
        if (ucx->peers[node].ring_rkey != NULL) {
            ucp_rkey_destroy(ucx->peers[node].ring_rkey);
        }
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
    if (ucx->ring.memh != NULL) {
        ucp_mem_unmap(ucx->context, ucx->ring.memh);
    }
    rdma_ucx_ring_fini(ucx);
    ctx->efd = -1;
    rdma_ucx_live_destroy(ucx);
    if (ucx->worker != NULL) {
        ucp_worker_destroy(ucx->worker);
    }
    if (ucx->context != NULL) {
        ucp_cleanup(ucx->context);
    }
    for (node = 0; ucx->peers != NULL && node < ctx->nodes; node++) {
        pthread_rwlock_destroy(&ucx->peers[node].ep_lock);
        pthread_mutex_destroy(&ucx->peers[node].ring_lock);
        free(ucx->peers[node].rkeys);
        free(ucx->peers[node].live_rkeys);
    }
    free(ucx->peers);
    free(ucx->memhs);
    free(ucx);
    ctx->backend_ctx = NULL;
}

int rdma_ucx_create(rdma_ctx_t *ctx, const rdma_params_t *params)
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
        pthread_mutex_init(&ucx->peers[node].ring_lock, NULL);
        ucx->peers[node].rkeys      = calloc(ctx->nregions + 1, sizeof(ucp_rkey_h));
        ucx->peers[node].live_rkeys = calloc(ctx->nregions + 1, sizeof(ucp_rkey_h));
        if (ucx->peers[node].rkeys == NULL || ucx->peers[node].live_rkeys == NULL) {
            ftsvm_error("cannot allocate the UCX peer table");
            return FTSVM_ENOMEM;
        }
    }
    status = rdma_ucx_context(ucx, params, 0);
    if (status == FTSVM_OK && rdma_ucx_live_wanted(ucx->context)) {
        /* two workers (the main one and the liveness one), each driven by
         * its own threads, share the context: made again to be thread-safe.
         * Only then: with one worker the context needs no lock of its own */
        ucp_cleanup(ucx->context);
        ucx->context = NULL;
        ucx->live.enabled = 1;
        status = rdma_ucx_context(ucx, params, 1);
    }
    if (status != FTSVM_OK) {
        return status;
    }
    status = rdma_ucx_worker_create(ucx, &ucx->worker, &ctx->efd);
    if (status == FTSVM_OK) {
        status = rdma_ucx_ring_init(ctx, ucx);
    }
    if (status == FTSVM_OK && ucx->live.enabled) {
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
        if (rdma_peer_alive(ctx, node) || node == ctx->node) {
            /* Held for writing while the peer's endpoints are made and its
             * keys unpacked: making an endpoint progresses the worker, and
             * an error callback for this peer (it died after the exchange)
             * would close the endpoint under the unpack (a SIGSEGV in
             * ucp_ep_rkey_unpack). The callback finds the lock taken and
             * leaves the close to the protocol thread (rdma_ucx_close_ep). */
            pthread_rwlock_wrlock(&ucx->peers[node].ep_lock);
            status = rdma_connect_peer(ctx, node, all + (size_t)node * stride, stride);
            pthread_rwlock_unlock(&ucx->peers[node].ep_lock);
        }
    }
    free(all);
    if (status != FTSVM_OK) {
        return status;
    }
    if (!ucx->live.enabled) {
        return FTSVM_OK;
    }
    ftsvm_debug("heartbeats go over the liveness channel (gets over TCP need the peer's progress)");
    return rdma_ucx_live_start(ctx);
}

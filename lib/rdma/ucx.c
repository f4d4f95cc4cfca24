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
 * endpoint with peer error handling to every node, unpack the keys, start the
 * protocol thread, then flush every endpoint so that wire-up is finished
 * before the first real operation.
 */
#include "rdma_int.h"
#include "common/log.h"
#include "ftsvm.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
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

int rdma_node(const rdma_ctx_t *ctx)
{
    return ctx->node;
}

int rdma_nodes(const rdma_ctx_t *ctx)
{
    return ctx->nodes;
}

void *rdma_region_addr(const rdma_ctx_t *ctx, unsigned region)
{
    return (region < ctx->nregions) ? ctx->regions[region].addr : NULL;
}

size_t rdma_region_size(const rdma_ctx_t *ctx, unsigned region)
{
    return (region < ctx->nregions) ? ctx->regions[region].size : 0;
}

int rdma_peer_alive(const rdma_ctx_t *ctx, int peer)
{
    if (peer < 0 || peer >= ctx->nodes) {
        return 0;
    }
    return !atomic_load(&ctx->peers[peer].failed);
}

ucp_ep_h rdma_ep_get(rdma_ctx_t *ctx, int peer)
{
    rdma_peer_t *p = &ctx->peers[peer];

    pthread_rwlock_rdlock(&p->ep_lock);
    if (p->ep == NULL || atomic_load(&p->failed)) {
        pthread_rwlock_unlock(&p->ep_lock);
        return NULL;
    }
    return p->ep;
}

void rdma_ep_put(rdma_ctx_t *ctx, int peer)
{
    pthread_rwlock_unlock(&ctx->peers[peer].ep_lock);
}

void rdma_peer_remove(rdma_ctx_t *ctx, int peer)
{
    ucp_request_param_t param = {0};
    rdma_peer_t *p;
    ucp_ep_h ep;

    if (peer < 0 || peer >= ctx->nodes || peer == ctx->node) {
        return;
    }
    p = &ctx->peers[peer];
    if (!atomic_exchange(&p->failed, 1)) {
        stats_add(&ctx->stats, RDMA_STAT_PEER_FAILURES, 1);
    }
    atomic_store(&p->removed, 1);
    pthread_rwlock_wrlock(&p->ep_lock);
    ep = p->ep;
    p->ep = NULL;
    pthread_rwlock_unlock(&p->ep_lock);
    if (ep == NULL) {
        return;
    }
    /* force: operations in flight end now with an error, whatever the peer
     * does (a cut-off node never answers) */
    param.op_attr_mask = UCP_OP_ATTR_FIELD_FLAGS;
    param.flags        = UCP_EP_CLOSE_FLAG_FORCE;
    (void)rdma_progress_wait(ctx, ucp_ep_close_nbx(ep, &param), "close", peer);
}

/* ---- start-up ---------------------------------------------------------- */

static void rdma_ep_error(void *arg, ucp_ep_h ep, ucs_status_t status)
{
    rdma_ctx_t *ctx = arg;
    int peer;

    for (peer = 0; peer < ctx->nodes; peer++) {
        if (ctx->peers[peer].ep == ep) {
            rdma_peer_failed(ctx, peer, status);
            return;
        }
    }
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

static int rdma_ucx_context(rdma_ctx_t *ctx, const rdma_params_t *params)
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
    ucp_params.mt_workers_shared = 0;
    status = ucp_init(&ucp_params, config, &ctx->context);
    ucp_config_release(config);
    if (status != UCS_OK) {
        ftsvm_error("ucp_init failed: %s", ucs_status_string(status));
        return FTSVM_ETRANSPORT;
    }
    return FTSVM_OK;
}

static int rdma_ucx_worker(rdma_ctx_t *ctx)
{
    ucp_worker_params_t params = {0};
    ucp_worker_attr_t attr = {0};
    ucs_status_t status;

    params.field_mask  = UCP_WORKER_PARAM_FIELD_THREAD_MODE;
    params.thread_mode = UCS_THREAD_MODE_MULTI;
    status = ucp_worker_create(ctx->context, &params, &ctx->worker);
    if (status != UCS_OK) {
        ftsvm_error("ucp_worker_create failed: %s", ucs_status_string(status));
        return FTSVM_ETRANSPORT;
    }
    attr.field_mask = UCP_WORKER_ATTR_FIELD_THREAD_MODE;
    status = ucp_worker_query(ctx->worker, &attr);
    if (status != UCS_OK || attr.thread_mode != UCS_THREAD_MODE_MULTI) {
        /* application threads and the protocol thread share the worker */
        ftsvm_error("this UCX build has no multi-thread support (configure --enable-mt)");
        return FTSVM_ETRANSPORT;
    }
    status = ucp_worker_get_efd(ctx->worker, &ctx->efd);
    if (status != UCS_OK) {
        ftsvm_error("ucp_worker_get_efd failed: %s", ucs_status_string(status));
        return FTSVM_ETRANSPORT;
    }
    return FTSVM_OK;
}

static int rdma_map_regions(rdma_ctx_t *ctx, const rdma_params_t *params)
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
        status = ucp_mem_map(ctx->context, &map, &ctx->regions[i].memh);
        if (status != UCS_OK) {
            ftsvm_error("cannot allocate region %zu of %zu bytes: %s", i,
                        params->region_sizes[i], ucs_status_string(status));
            return FTSVM_ENOMEM;
        }
        attr.field_mask = UCP_MEM_ATTR_FIELD_ADDRESS | UCP_MEM_ATTR_FIELD_LENGTH;
        status = ucp_mem_query(ctx->regions[i].memh, &attr);
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

/* Blob layout: u32 address length, address, then per region
 * u64 base, u64 size, u32 key length, key. */
static int rdma_pack_blob(rdma_ctx_t *ctx, void **blob_p, size_t *len_p)
{
    ucp_address_t *address;
    size_t address_len, len, i;
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
    status = ucp_worker_get_address(ctx->worker, &address, &address_len);
    if (status != UCS_OK) {
        ftsvm_error("ucp_worker_get_address failed: %s", ucs_status_string(status));
        free(keys);
        free(key_lens);
        return FTSVM_ETRANSPORT;
    }
    len = 4 + address_len;
    for (i = 0; i < ctx->nregions; i++) {
        status = ucp_rkey_pack(ctx->context, ctx->regions[i].memh, &keys[i], &key_lens[i]);
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
    ucp_worker_release_address(ctx->worker, address);
    return ret;
}

/* Exchange blobs of different lengths: first the lengths, then every blob
 * padded to the longest. */
static int rdma_exchange(rdma_ctx_t *ctx, const rdma_params_t *params,
                         const void *blob, size_t len, uint8_t **all_p, size_t *stride_p)
{
    uint64_t *lens, mine = len, max = 0;
    uint8_t *padded, *all;
    int status, i;

    lens = calloc((size_t)ctx->nodes, sizeof(*lens));
    if (lens == NULL) {
        ftsvm_error("cannot allocate the address exchange");
        return FTSVM_ENOMEM;
    }
    status = params->exchange(params->exchange_arg, &mine, sizeof(mine), lens);
    for (i = 0; status == FTSVM_OK && i < ctx->nodes; i++) {
        max = (lens[i] > max) ? lens[i] : max;
    }
    free(lens);
    if (status != FTSVM_OK) {
        return status;
    }
    padded = calloc(1, max);
    all    = calloc(ctx->nodes, max);
    if (padded == NULL || all == NULL) {
        ftsvm_error("cannot allocate %d x %llu bytes for the address exchange",
                    ctx->nodes, (unsigned long long)max);
        free(padded);
        free(all);
        return FTSVM_ENOMEM;
    }
    memcpy(padded, blob, len);
    status = params->exchange(params->exchange_arg, padded, max, all);
    free(padded);
    if (status != FTSVM_OK) {
        free(all);
        return status;
    }
    *all_p    = all;
    *stride_p = max;
    return FTSVM_OK;
}

static int rdma_connect_peer(rdma_ctx_t *ctx, int node, const uint8_t *blob, size_t len)
{
    rdma_peer_t *peer = &ctx->peers[node];
    ucp_ep_params_t ep_params = {0};
    const uint8_t *p = blob, *end = blob + len;
    ucs_status_t status;
    uint32_t address_len, key_len;
    size_t i;

    if (end - p < 4) {
        goto bad_blob;
    }
    memcpy(&address_len, p, 4);
    p += 4;
    if ((size_t)(end - p) < address_len) {
        goto bad_blob;
    }
    ep_params.field_mask = UCP_EP_PARAM_FIELD_REMOTE_ADDRESS |
                           UCP_EP_PARAM_FIELD_ERR_HANDLING_MODE |
                           UCP_EP_PARAM_FIELD_ERR_HANDLER;
    ep_params.address         = (const ucp_address_t *)p;
    ep_params.err_mode        = UCP_ERR_HANDLING_MODE_PEER;
    ep_params.err_handler.cb  = rdma_ep_error;
    ep_params.err_handler.arg = ctx;
    status = ucp_ep_create(ctx->worker, &ep_params, &peer->ep);
    if (status != UCS_OK) {
        ftsvm_error("cannot create an endpoint to node %d: %s", node,
                    ucs_status_string(status));
        return FTSVM_ETRANSPORT;
    }
    p += address_len;
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
        status = ucp_ep_rkey_unpack(peer->ep, p, &peer->rkeys[i]);
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

int rdma_create(const rdma_params_t *params, rdma_ctx_t **ctx_p)
{
    rdma_ctx_t *ctx;
    uint8_t *all = NULL;
    void *blob = NULL;
    size_t blob_len = 0, stride = 0, i;
    int status, node;

    if (params->nodes <= 0 || params->node < 0 || params->node >= params->nodes ||
        params->exchange == NULL || (params->nregions > 0 && params->region_sizes == NULL)) {
        ftsvm_error("rdma_create: bad parameters (node %d of %d)", params->node,
                    params->nodes);
        return FTSVM_EINVAL;
    }
    for (i = 0; i < params->nregions; i++) {
        if (params->region_sizes[i] == 0) {
            ftsvm_error("rdma_create: region %zu has size 0", i);
            return FTSVM_EINVAL;
        }
    }
    ctx = calloc(1, sizeof(*ctx));
    if (ctx == NULL) {
        ftsvm_error("cannot allocate the transport context");
        return FTSVM_ENOMEM;
    }
    ctx->node            = params->node;
    ctx->nodes           = params->nodes;
    ctx->nregions        = params->nregions;
    ctx->efd             = -1;
    ctx->wake_fd         = -1;
    ctx->spin_ns         = (uint64_t)params->spin_us * 1000;
    /* the worker must be progressed at least once per keepalive interval
     * for peer death over shared memory to be noticed */
    ctx->idle_timeout_ms = (int)(params->keepalive * 1000);
    if (ctx->idle_timeout_ms < 1) {
        ctx->idle_timeout_ms = 1;
    } else if (ctx->idle_timeout_ms > 100) {
        ctx->idle_timeout_ms = 100;
    }
    pthread_mutex_init(&ctx->queue_lock, NULL);
    ctx->queue_tail = &ctx->queue_head;
    ctx->regions = calloc(ctx->nregions ? ctx->nregions : 1, sizeof(*ctx->regions));
    ctx->peers   = calloc((size_t)ctx->nodes, sizeof(*ctx->peers));
    if (ctx->regions == NULL || ctx->peers == NULL) {
        ftsvm_error("cannot allocate the transport context");
        status = FTSVM_ENOMEM;
        goto err;
    }
    for (node = 0; node < ctx->nodes; node++) {
        pthread_rwlock_init(&ctx->peers[node].ep_lock, NULL);
        ctx->peers[node].rkeys = calloc(ctx->nregions + 1, sizeof(ucp_rkey_h));
        ctx->peers[node].bases = calloc(ctx->nregions + 1, sizeof(uint64_t));
        ctx->peers[node].sizes = calloc(ctx->nregions + 1, sizeof(size_t));
        if (!ctx->peers[node].rkeys || !ctx->peers[node].bases || !ctx->peers[node].sizes) {
            ftsvm_error("cannot allocate the transport peer table");
            status = FTSVM_ENOMEM;
            goto err;
        }
    }
    status = rdma_am_init(ctx);
    if (status != FTSVM_OK) {
        goto err;
    }
    status = rdma_ucx_context(ctx, params);
    if (status != FTSVM_OK) {
        goto err;
    }
    status = rdma_ucx_worker(ctx);
    if (status != FTSVM_OK) {
        goto err;
    }
    status = rdma_am_listen(ctx);
    if (status != FTSVM_OK) {
        goto err;
    }
    status = rdma_map_regions(ctx, params);
    if (status != FTSVM_OK) {
        goto err;
    }
    status = rdma_pack_blob(ctx, &blob, &blob_len);
    if (status != FTSVM_OK) {
        goto err;
    }
    status = rdma_exchange(ctx, params, blob, blob_len, &all, &stride);
    free(blob);
    if (status != FTSVM_OK) {
        goto err;
    }
    for (node = 0; node < ctx->nodes; node++) {
        status = rdma_connect_peer(ctx, node, all + (size_t)node * stride, stride);
        if (status != FTSVM_OK) {
            free(all);
            goto err;
        }
    }
    free(all);
    status = rdma_progress_start(ctx);
    if (status != FTSVM_OK) {
        goto err;
    }
    /* finish wire-up now, while every peer is progressing its worker */
    status = rdma_flush(ctx, RDMA_ALL_PEERS);
    if (status != FTSVM_OK) {
        ftsvm_error("could not connect to every node: %s", ftsvm_strerror(status));
        goto err;
    }
    ctx->stats.module = "rdma";
    ctx->stats.count  = RDMA_STAT_COUNT;
    stats_register(&ctx->stats);
    *ctx_p = ctx;
    return FTSVM_OK;

err:
    rdma_destroy(ctx);
    return status;
}

void rdma_quiesce(rdma_ctx_t *ctx)
{
    atomic_store(&ctx->quiescing, 1);
}

static void rdma_close_endpoints(rdma_ctx_t *ctx)
{
    ucp_request_param_t param = {0};
    ucs_status_ptr_t *requests;
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
        requests[node] = NULL;
        if (ctx->peers[node].ep != NULL) {
            requests[node] = ucp_ep_close_nbx(ctx->peers[node].ep, &param);
        }
    }
    do {
        ucp_worker_progress(ctx->worker);
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

void rdma_destroy(rdma_ctx_t *ctx)
{
    rdma_event_t *event;
    size_t i;
    int node;

    if (ctx == NULL) {
        return;
    }
    atomic_store(&ctx->quiescing, 1);
    if (ctx->stats.module != NULL) {
        stats_unregister(&ctx->stats);
    }
    rdma_progress_stop(ctx);
    for (node = 0; ctx->peers != NULL && node < ctx->nodes; node++) {
        for (i = 0; ctx->peers[node].rkeys != NULL && i < ctx->nregions; i++) {
            if (ctx->peers[node].rkeys[i] != NULL) {
                ucp_rkey_destroy(ctx->peers[node].rkeys[i]);
            }
        }
    }
    if (ctx->worker != NULL && ctx->peers != NULL) {
        rdma_close_endpoints(ctx);
    }
    for (i = 0; ctx->regions != NULL && i < ctx->nregions; i++) {
        if (ctx->regions[i].memh != NULL) {
            ucp_mem_unmap(ctx->context, ctx->regions[i].memh);
        }
    }
    if (ctx->worker != NULL) {
        ucp_worker_destroy(ctx->worker);
    }
    if (ctx->context != NULL) {
        ucp_cleanup(ctx->context);
    }
    while ((event = ctx->queue_head) != NULL) {
        ctx->queue_head = event->next;
        free(event);
    }
    if (ctx->wake_fd >= 0) {
        close(ctx->wake_fd);
    }
    for (node = 0; ctx->peers != NULL && node < ctx->nodes; node++) {
        free(ctx->peers[node].rkeys);
        free(ctx->peers[node].bases);
        free(ctx->peers[node].sizes);
    }
    pthread_mutex_destroy(&ctx->queue_lock);
    free(ctx->peers);
    free(ctx->regions);
    free(ctx);
}

int rdma_describe_peer(rdma_ctx_t *ctx, int peer, char *buf, size_t size)
{
    FILE *out;
    char *text = NULL, *line, *save = NULL, *name, *end;
    size_t text_len = 0, used = 0;
    int n, has_rma = 0;

    if (peer < 0 || peer >= ctx->nodes || size == 0) {
        return FTSVM_ERANGE;
    }
    buf[0] = '\0';
    if (rdma_ep_get(ctx, peer) == NULL) {
        return FTSVM_EPEER;
    }
    out = open_memstream(&text, &text_len);
    if (out == NULL) {
        rdma_ep_put(ctx, peer);
        return FTSVM_ENOMEM;
    }
    ucp_ep_print_info(ctx->peers[peer].ep, out);
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

static int rdma_target(rdma_ctx_t *ctx, int peer, unsigned region, uint64_t offset,
                       size_t len, const char *what, uint64_t *addr_p, ucp_rkey_h *rkey_p)
{
    if (peer < 0 || peer >= ctx->nodes) {
        ftsvm_error("%s: node %d out of range (job of %d nodes)", what, peer, ctx->nodes);
        return FTSVM_ERANGE;
    }
    if (region >= ctx->nregions || offset > ctx->peers[peer].sizes[region] ||
        len > ctx->peers[peer].sizes[region] - offset) {
        ftsvm_error("%s: region %u offset 0x%llx length %zu out of range", what, region,
                    (unsigned long long)offset, len);
        return FTSVM_ERANGE;
    }
    if (atomic_load(&ctx->peers[peer].failed)) {
        return FTSVM_EPEER;
    }
    *addr_p = ctx->peers[peer].bases[region] + offset;
    *rkey_p = ctx->peers[peer].rkeys[region];
    return FTSVM_OK;
}

int rdma_put(rdma_ctx_t *ctx, int peer, unsigned region, uint64_t offset,
             const void *buf, size_t len)
{
    ucp_request_param_t param = {0};
    ucs_status_ptr_t request;
    ucp_ep_h ep;
    ucp_rkey_h rkey;
    uint64_t addr;
    int status;

    status = rdma_target(ctx, peer, region, offset, len, "put", &addr, &rkey);
    if (status != FTSVM_OK) {
        return status;
    }
    stats_add(&ctx->stats, RDMA_STAT_PUTS, 1);
    stats_add(&ctx->stats, RDMA_STAT_PUT_BYTES, len);
    if ((ep = rdma_ep_get(ctx, peer)) == NULL) {
        return FTSVM_EPEER;
    }
    request = ucp_put_nbx(ep, buf, len, addr, rkey, &param);
    rdma_ep_put(ctx, peer);
    return rdma_progress_wait(ctx, request, "put", peer);
}

int rdma_get(rdma_ctx_t *ctx, int peer, unsigned region, uint64_t offset,
             void *buf, size_t len)
{
    ucp_request_param_t param = {0};
    ucs_status_ptr_t request;
    ucp_ep_h ep;
    ucp_rkey_h rkey;
    uint64_t addr;
    int status;

    status = rdma_target(ctx, peer, region, offset, len, "get", &addr, &rkey);
    if (status != FTSVM_OK) {
        return status;
    }
    stats_add(&ctx->stats, RDMA_STAT_GETS, 1);
    stats_add(&ctx->stats, RDMA_STAT_GET_BYTES, len);
    if ((ep = rdma_ep_get(ctx, peer)) == NULL) {
        return FTSVM_EPEER;
    }
    request = ucp_get_nbx(ep, buf, len, addr, rkey, &param);
    rdma_ep_put(ctx, peer);
    return rdma_progress_wait(ctx, request, "get", peer);
}

int rdma_get_start(rdma_ctx_t *ctx, int peer, unsigned region, uint64_t offset, void *buf,
                   size_t len, rdma_req_t **req_p)
{
    ucp_request_param_t param = {0};
    ucs_status_ptr_t request;
    ucp_rkey_h rkey;
    uint64_t addr;
    ucp_ep_h ep;
    int status;

    status = rdma_target(ctx, peer, region, offset, len, "get", &addr, &rkey);
    if (status != FTSVM_OK) {
        return status;
    }
    if ((ep = rdma_ep_get(ctx, peer)) == NULL) {
        return FTSVM_EPEER;
    }
    stats_add(&ctx->stats, RDMA_STAT_GETS, 1);
    request = ucp_get_nbx(ep, buf, len, addr, rkey, &param);
    rdma_ep_put(ctx, peer);
    if (UCS_PTR_IS_ERR(request)) {
        return rdma_status_from_ucs(UCS_PTR_STATUS(request));
    }
    /* NULL: done already; the poll then says so */
    *req_p = (rdma_req_t *)request;
    return FTSVM_OK;
}

int rdma_req_poll(rdma_ctx_t *ctx, rdma_req_t *req)
{
    ucs_status_t status;

    (void)ctx;
    if (req == NULL) {
        return 1;
    }
    status = ucp_request_check_status(req);
    if (status == UCS_INPROGRESS) {
        return 0;
    }
    ucp_request_free(req);
    return (status == UCS_OK) ? 1 : rdma_status_from_ucs(status);
}

static int rdma_atomic(rdma_ctx_t *ctx, ucp_atomic_op_t op, int peer, unsigned region,
                       uint64_t offset, uint64_t operand, uint64_t *reply, const char *what)
{
    ucp_request_param_t param = {0};
    ucs_status_ptr_t request;
    ucp_ep_h ep;
    ucp_rkey_h rkey;
    uint64_t addr;
    int status;

    if (offset % 8 != 0) {
        ftsvm_error("%s: offset 0x%llx is not 8-byte aligned", what,
                    (unsigned long long)offset);
        return FTSVM_EINVAL;
    }
    status = rdma_target(ctx, peer, region, offset, 8, what, &addr, &rkey);
    if (status != FTSVM_OK) {
        return status;
    }
    param.op_attr_mask = UCP_OP_ATTR_FIELD_DATATYPE | UCP_OP_ATTR_FIELD_REPLY_BUFFER;
    param.datatype     = ucp_dt_make_contig(8);
    param.reply_buffer = reply;
    stats_add(&ctx->stats, RDMA_STAT_ATOMICS, 1);
    if ((ep = rdma_ep_get(ctx, peer)) == NULL) {
        return FTSVM_EPEER;
    }
    request = ucp_atomic_op_nbx(ep, op, &operand, 1, addr, rkey, &param);
    rdma_ep_put(ctx, peer);
    return rdma_progress_wait(ctx, request, what, peer);
}

int rdma_fetch_add(rdma_ctx_t *ctx, int peer, unsigned region, uint64_t offset,
                   uint64_t add, uint64_t *old_p)
{
    uint64_t old = 0;
    int status;

    status = rdma_atomic(ctx, UCP_ATOMIC_OP_ADD, peer, region, offset, add, &old,
                         "fetch-add");
    if (status == FTSVM_OK && old_p != NULL) {
        *old_p = old;
    }
    return status;
}

int rdma_cswap(rdma_ctx_t *ctx, int peer, unsigned region, uint64_t offset,
               uint64_t expected, uint64_t desired, uint64_t *old_p)
{
    /* UCX: `buffer` holds the compare value; the reply buffer holds the
     * value to swap in, and receives the old remote value */
    uint64_t swap = desired;
    int status;

    status = rdma_atomic(ctx, UCP_ATOMIC_OP_CSWAP, peer, region, offset, expected, &swap,
                         "compare-swap");
    if (status == FTSVM_OK && old_p != NULL) {
        *old_p = swap;
    }
    return status;
}

int rdma_fence(rdma_ctx_t *ctx)
{
    ucs_status_t status;

    stats_add(&ctx->stats, RDMA_STAT_FENCES, 1);
    status = ucp_worker_fence(ctx->worker);
    if (status != UCS_OK) {
        ftsvm_error("ucp_worker_fence failed: %s", ucs_status_string(status));
        return rdma_status_from_ucs(status);
    }
    return FTSVM_OK;
}

static int rdma_flush_peer(rdma_ctx_t *ctx, int peer)
{
    ucp_request_param_t param = {0};
    ucs_status_ptr_t request;
    ucp_ep_h ep;

    if ((ep = rdma_ep_get(ctx, peer)) == NULL) {
        return FTSVM_EPEER;
    }
    request = ucp_ep_flush_nbx(ep, &param);
    rdma_ep_put(ctx, peer);
    return rdma_progress_wait(ctx, request, "flush", peer);
}

int rdma_flush(rdma_ctx_t *ctx, int peer)
{
    int node, status, first = FTSVM_OK;

    stats_add(&ctx->stats, RDMA_STAT_FLUSHES, 1);
    if (peer != RDMA_ALL_PEERS) {
        if (peer < 0 || peer >= ctx->nodes) {
            ftsvm_error("flush: node %d out of range (job of %d nodes)", peer, ctx->nodes);
            return FTSVM_ERANGE;
        }
        return rdma_flush_peer(ctx, peer);
    }
    /* per endpoint rather than the worker, so that one failed peer does not
     * hide whether the others completed */
    for (node = 0; node < ctx->nodes; node++) {
        if (atomic_load(&ctx->peers[node].removed)) {
            continue;   /* out of the job: nothing of ours is owed to it */
        }
        status = rdma_flush_peer(ctx, node);
        if (status != FTSVM_OK && first == FTSVM_OK) {
            first = status;
        }
    }
    return first;
}

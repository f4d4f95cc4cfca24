/*
 * The transport's public functions (rdma.h), the same over every backend:
 * arguments are checked, a failed or removed peer is refused, and the
 * counters kept here; the operation itself goes to the backend chosen by
 * rdma_params_t.transport (ucx.c, verbs.c).
 *
 * Start-up: the backend maps the regions, exchanges keys and connects; then
 * the protocol thread starts and every peer is flushed, so that wire-up is
 * finished before the first real operation.
 */
#include "rdma_int.h"
#include "common/log.h"
#include "ftsvm.h"

#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static const rdma_backend_t *rdma_backend_of(int transport)
{
    switch (transport) {
    case RDMA_TRANSPORT_UCX:
        return &rdma_ucx_backend;
    case RDMA_TRANSPORT_VERBS:
        return &rdma_verbs_backend;
    default:
        return NULL;
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

/* start-up: no connection could be made to `peer` (it may have died): it
 * is failed from the start, and its errors are no news (the caller's first
 * view removes every peer that is not alive then) */
void rdma_peer_unreached(rdma_ctx_t *ctx, int peer, const char *why)
{
    ftsvm_info("node %d could not be connected (%s)", peer, why);
    atomic_store(&ctx->peers[peer].failed, 1);
}

void rdma_peer_remove(rdma_ctx_t *ctx, int peer)
{
    rdma_peer_t *p;

    if (peer < 0 || peer >= ctx->nodes || peer == ctx->node) {
        return;
    }
    p = &ctx->peers[peer];
    /* failed first: the errors of what the backend now cuts short are not
     * news, no failure callback runs for them */
    if (!atomic_exchange(&p->failed, 1)) {
        stats_add(&ctx->stats, RDMA_STAT_PEER_FAILURES, 1);
    }
    atomic_store(&p->removed, 1);
    ctx->backend.peer_remove(ctx, peer);
}

void rdma_peer_doom(rdma_ctx_t *ctx, int peer, const char *why)
{
    if (peer < 0 || peer >= ctx->nodes || peer == ctx->node) {
        return;
    }
    rdma_peer_failed(ctx, peer, why);   /* the report, once, as for a transport error */
    ctx->backend.peer_remove(ctx, peer);
}

int rdma_describe_peer(rdma_ctx_t *ctx, int peer, char *buf, size_t size)
{
    if (peer < 0 || peer >= ctx->nodes || size == 0) {
        return FTSVM_ERANGE;
    }
    buf[0] = '\0';
    return ctx->backend.describe_peer(ctx, peer, buf, size);
}

/* ---- start-up ---------------------------------------------------------- */

int rdma_exchange_blobs(rdma_ctx_t *ctx, const rdma_params_t *params, const void *blob,
                        size_t len, uint8_t **all_p, size_t *stride_p)
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
    /* a node missing from either round is out of the job: no connection,
     * failed from the start (its errors are no news; view 0's recovery
     * removes it, lib/failure) */
    for (i = 0; params->absent != NULL && i < ctx->nodes; i++) {
        if (params->absent[i] && i != ctx->node) {
            atomic_store(&ctx->peers[i].failed, 1);
        }
    }
    *all_p    = all;
    *stride_p = max;
    return FTSVM_OK;
}

static int rdma_check_params(const rdma_params_t *params)
{
    size_t i;

    if (params->nodes <= 0 || params->node < 0 || params->node >= params->nodes ||
        params->exchange == NULL || (params->nregions > 0 && params->region_sizes == NULL)) {
        ftsvm_error("rdma_create: bad parameters (node %d of %d)", params->node,
                    params->nodes);
        return FTSVM_EINVAL;
    }
    if (rdma_backend_of(params->transport) == NULL) {
        ftsvm_error("rdma_create: unknown transport %d", params->transport);
        return FTSVM_EINVAL;
    }
    for (i = 0; i < params->nregions; i++) {
        if (params->region_sizes[i] == 0) {
            ftsvm_error("rdma_create: region %zu has size 0", i);
            return FTSVM_EINVAL;
        }
    }
    return FTSVM_OK;
}

int rdma_create(const rdma_params_t *params, rdma_ctx_t **ctx_p)
{
    rdma_ctx_t *ctx;
    int status, node;

    status = rdma_check_params(params);
    if (status != FTSVM_OK) {
        return status;
    }
    ctx = calloc(1, sizeof(*ctx));
    if (ctx == NULL) {
        ftsvm_error("cannot allocate the transport context");
        return FTSVM_ENOMEM;
    }
    ctx->node            = params->node;
    ctx->nodes           = params->nodes;
    ctx->nregions        = params->nregions;
    ctx->backend         = *rdma_backend_of(params->transport);
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
        ctx->peers[node].bases = calloc(ctx->nregions + 1, sizeof(uint64_t));
        ctx->peers[node].sizes = calloc(ctx->nregions + 1, sizeof(size_t));
        if (!ctx->peers[node].bases || !ctx->peers[node].sizes) {
            ftsvm_error("cannot allocate the transport peer table");
            status = FTSVM_ENOMEM;
            goto err;
        }
    }
    status = rdma_am_init(ctx);
    if (status != FTSVM_OK) {
        goto err;
    }
    status = ctx->backend.create(ctx, params);
    if (status != FTSVM_OK) {
        goto err;
    }
    status = rdma_progress_start(ctx);
    if (status != FTSVM_OK) {
        goto err;
    }
    /* finish wire-up now, while every peer is progressing; a peer that
     * fails it is unreached (it may have died during start-up) */
    for (node = 0; node < ctx->nodes; node++) {
        if (node == ctx->node || !rdma_peer_alive(ctx, node)) {
            continue;
        }
        status = ctx->backend.flush(ctx, node);
        if (status == FTSVM_EPEER) {
            rdma_peer_unreached(ctx, node, "wire-up failed");
        } else if (status != FTSVM_OK) {
            ftsvm_error("could not connect to node %d: %s", node, ftsvm_strerror(status));
            goto err;
        }
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

void rdma_destroy(rdma_ctx_t *ctx)
{
    rdma_event_t *event;
    int node;

    if (ctx == NULL) {
        return;
    }
    atomic_store(&ctx->quiescing, 1);
    if (ctx->stats.module != NULL) {
        stats_unregister(&ctx->stats);
    }
    rdma_progress_stop(ctx);
    if (ctx->backend_ctx != NULL) {
        ctx->backend.destroy(ctx);
    }
    while ((event = ctx->queue_head) != NULL) {
        ctx->queue_head = event->next;
        free(event);
    }
    if (ctx->wake_fd >= 0) {
        close(ctx->wake_fd);
    }
    for (node = 0; ctx->peers != NULL && node < ctx->nodes; node++) {
        free(ctx->peers[node].bases);
        free(ctx->peers[node].sizes);
    }
    pthread_mutex_destroy(&ctx->queue_lock);
    free(ctx->peers);
    free(ctx->regions);
    free(ctx);
}

/* ---- one-sided operations ------------------------------------------------ */

static int rdma_target(rdma_ctx_t *ctx, int peer, unsigned region, uint64_t offset,
                       size_t len, const char *what, uint64_t *addr_p)
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
    return FTSVM_OK;
}

/* put and get: the same checks and counters */
static int rdma_rw(rdma_ctx_t *ctx, int peer, unsigned region, uint64_t offset, void *buf,
                   size_t len, int put)
{
    uint64_t addr;
    int status;

    status = rdma_target(ctx, peer, region, offset, len, put ? "put" : "get", &addr);
    if (status != FTSVM_OK) {
        return status;
    }
    stats_add(&ctx->stats, put ? RDMA_STAT_PUTS : RDMA_STAT_GETS, 1);
    stats_add(&ctx->stats, put ? RDMA_STAT_PUT_BYTES : RDMA_STAT_GET_BYTES, len);
    return put ? ctx->backend.put(ctx, peer, region, addr, buf, len) :
                 ctx->backend.get(ctx, peer, region, addr, buf, len);
}

int rdma_put(rdma_ctx_t *ctx, int peer, unsigned region, uint64_t offset,
             const void *buf, size_t len)
{
    return rdma_rw(ctx, peer, region, offset, (void *)buf, len, 1);
}

int rdma_prefault(rdma_ctx_t *ctx, int peer, unsigned region, uint64_t offset, size_t len)
{
    uint64_t addr;
    int status;

    status = rdma_target(ctx, peer, region, offset, len, "prefault", &addr);
    if (status != FTSVM_OK || ctx->backend.prefault == NULL || len == 0) {
        return status;
    }
    return ctx->backend.prefault(ctx, peer, region, addr, len);
}

int rdma_get(rdma_ctx_t *ctx, int peer, unsigned region, uint64_t offset,
             void *buf, size_t len)
{
    return rdma_rw(ctx, peer, region, offset, buf, len, 0);
}

int rdma_get_start(rdma_ctx_t *ctx, int peer, unsigned region, uint64_t offset, void *buf,
                   size_t len, rdma_req_t **req_p)
{
    uint64_t addr;
    int status;

    status = rdma_target(ctx, peer, region, offset, len, "get", &addr);
    if (status != FTSVM_OK) {
        return status;
    }
    stats_add(&ctx->stats, RDMA_STAT_GETS, 1);
    return ctx->backend.get_start(ctx, peer, region, addr, buf, len, req_p);
}

int rdma_req_poll(rdma_ctx_t *ctx, rdma_req_t *req)
{
    if (req == NULL) {
        return 1;
    }
    return ctx->backend.req_poll(ctx, req);
}

static int rdma_atomic(rdma_ctx_t *ctx, int op, int peer, unsigned region, uint64_t offset,
                       uint64_t operand, uint64_t swap, uint64_t *old_p, const char *what)
{
    uint64_t addr, old = 0;
    int status;

    if (offset % 8 != 0) {
        ftsvm_error("%s: offset 0x%llx is not 8-byte aligned", what,
                    (unsigned long long)offset);
        return FTSVM_EINVAL;
    }
    status = rdma_target(ctx, peer, region, offset, 8, what, &addr);
    if (status != FTSVM_OK) {
        return status;
    }
    stats_add(&ctx->stats, RDMA_STAT_ATOMICS, 1);
    status = ctx->backend.atomic(ctx, op, peer, region, addr, operand, swap, &old);
    if (status == FTSVM_OK && old_p != NULL) {
        *old_p = old;
    }
    return status;
}

int rdma_fetch_add(rdma_ctx_t *ctx, int peer, unsigned region, uint64_t offset,
                   uint64_t add, uint64_t *old_p)
{
    return rdma_atomic(ctx, RDMA_ATOMIC_FETCH_ADD, peer, region, offset, add, 0, old_p,
                       "fetch-add");
}

int rdma_cswap(rdma_ctx_t *ctx, int peer, unsigned region, uint64_t offset,
               uint64_t expected, uint64_t desired, uint64_t *old_p)
{
    return rdma_atomic(ctx, RDMA_ATOMIC_CSWAP, peer, region, offset, expected, desired,
                       old_p, "compare-swap");
}

int rdma_fence(rdma_ctx_t *ctx)
{
    stats_add(&ctx->stats, RDMA_STAT_FENCES, 1);
    return ctx->backend.fence(ctx);
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
        return ctx->backend.flush(ctx, peer);
    }
    /* peer by peer, so that one failed peer does not hide whether the
     * others completed */
    for (node = 0; node < ctx->nodes; node++) {
        if (atomic_load(&ctx->peers[node].removed)) {
            continue;   /* out of the job: nothing of ours is owed to it */
        }
        status = ctx->backend.flush(ctx, node);
        if (status != FTSVM_OK && first == FTSVM_OK) {
            first = status;
        }
    }
    return first;
}

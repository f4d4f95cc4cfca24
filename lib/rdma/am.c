/*
 * Active messages and peer-failure events.
 *
 * Every ftsvm message carries a header rdma_am_hdr_t (as the UCX AM header,
 * or framed in a verbs SEND). The backend's receive path, which may run on
 * any thread, hands it to rdma_am_deliver, which validates it and queues a
 * copy; the protocol thread runs the handler (progress.c). A message that
 * does not parse — wrong header size, unknown version or type, sender id out
 * of range, length not what the header says or outside the type's bounds —
 * is rejected, logged and counted; it never reaches a handler.
 */
#include "rdma_int.h"
#include "common/log.h"
#include "ftsvm.h"

#include <stdlib.h>
#include <string.h>

/* log the first rejections in full, then one in every 1000 */
int rdma_am_reject_counted(rdma_ctx_t *ctx)
{
    uint64_t rejected;

    stats_add(&ctx->stats, RDMA_STAT_AM_REJECTED, 1);
    rejected = stats_read(&ctx->stats, RDMA_STAT_AM_REJECTED);
    return rejected <= 10 || rejected % 1000 == 0;
}

#define rdma_am_reject(_ctx, ...)                     \
    do {                                              \
        if (rdma_am_reject_counted(_ctx)) {           \
            ftsvm_warn(__VA_ARGS__);                  \
        }                                             \
    } while (0)

void rdma_am_deliver(rdma_ctx_t *ctx, const void *header, size_t header_length,
                     const void *data, size_t length)
{
    const rdma_am_slot_t *slot;
    rdma_am_hdr_t hdr;
    rdma_event_t *event;

    if (header_length != sizeof(hdr)) {
        rdma_am_reject(ctx, "rejected a message with a %zu-byte header (expected %zu)",
                       header_length, sizeof(hdr));
        return;
    }
    memcpy(&hdr, header, sizeof(hdr));
    if (hdr.version != RDMA_AM_VERSION) {
        rdma_am_reject(ctx, "rejected a message of version %u (expected %u)", hdr.version,
                       RDMA_AM_VERSION);
        return;
    }
    if (hdr.src >= (uint32_t)ctx->nodes) {
        rdma_am_reject(ctx, "rejected a message from node %u (job of %d nodes)", hdr.src,
                       ctx->nodes);
        return;
    }
    if (hdr.type >= RDMA_AM_TYPES || ctx->am[hdr.type].handler == NULL) {
        rdma_am_reject(ctx, "rejected a message of unknown type %u from node %u", hdr.type,
                       hdr.src);
        return;
    }
    slot = &ctx->am[hdr.type];
    if (hdr.len != length || length < slot->min_len || length > slot->max_len) {
        rdma_am_reject(ctx, "rejected a message of type %u from node %u: %zu bytes "
                       "(header says %u, allowed %zu..%zu)", hdr.type, hdr.src, length,
                       hdr.len, slot->min_len, slot->max_len);
        return;
    }
    event = malloc(sizeof(*event) + length);
    if (event == NULL) {
        rdma_am_reject(ctx, "dropped a message of type %u from node %u: out of memory",
                       hdr.type, hdr.src);
        return;
    }
    event->kind = RDMA_EVENT_AM;
    event->src  = (int)hdr.src;
    event->type = hdr.type;
    event->len  = length;
    memcpy(event->payload, data, length);
    stats_add(&ctx->stats, RDMA_STAT_AM_RECEIVED, 1);
    rdma_queue_push(ctx, event);
}

int rdma_am_init(rdma_ctx_t *ctx)
{
    static const char *const names[RDMA_STAT_COUNT] = {
        [RDMA_STAT_PUTS] = "puts",                 [RDMA_STAT_PUT_BYTES] = "put_bytes",
        [RDMA_STAT_GETS] = "gets",                 [RDMA_STAT_GET_BYTES] = "get_bytes",
        [RDMA_STAT_ATOMICS] = "atomics",           [RDMA_STAT_FENCES] = "fences",
        [RDMA_STAT_FLUSHES] = "flushes",           [RDMA_STAT_AM_SENT] = "am_sent",
        [RDMA_STAT_AM_RECEIVED] = "am_received",   [RDMA_STAT_AM_REJECTED] = "am_rejected",
        [RDMA_STAT_PEER_FAILURES] = "peer_failures", [RDMA_STAT_SLEEPS] = "sleeps",
    };

    memcpy(ctx->stats.names, names, sizeof(names));
    return FTSVM_OK;
}

int rdma_am_register(rdma_ctx_t *ctx, unsigned type, size_t min_len, size_t max_len,
                     rdma_am_handler_t handler, void *arg)
{
    if (type >= RDMA_AM_TYPES || handler == NULL || min_len > max_len ||
        max_len > RDMA_AM_MAX_PAYLOAD) {
        ftsvm_error("rdma_am_register: bad type %u or bounds %zu..%zu", type, min_len,
                    max_len);
        return FTSVM_EINVAL;
    }
    if (ctx->am[type].handler != NULL) {
        ftsvm_error("rdma_am_register: type %u is already registered", type);
        return FTSVM_EINVAL;
    }
    ctx->am[type].min_len = min_len;
    ctx->am[type].max_len = max_len;
    ctx->am[type].arg     = arg;
    ctx->am[type].handler = handler;
    return FTSVM_OK;
}

void rdma_am_dispatch(rdma_ctx_t *ctx, rdma_event_t *event)
{
    const rdma_am_slot_t *slot = &ctx->am[event->type];

    slot->handler(slot->arg, event->src, event->payload, event->len);
}

int rdma_am_send_raw(rdma_ctx_t *ctx, int peer, const void *hdr, size_t hdr_len,
                     const void *payload, size_t len)
{
    if (peer < 0 || peer >= ctx->nodes) {
        ftsvm_error("message to node %d out of range (job of %d nodes)", peer, ctx->nodes);
        return FTSVM_ERANGE;
    }
    if (atomic_load(&ctx->peers[peer].failed)) {
        return FTSVM_EPEER;
    }
    stats_add(&ctx->stats, RDMA_STAT_AM_SENT, 1);
    return ctx->backend.am_send(ctx, peer, hdr, hdr_len, payload, len);
}

/* A message to this node never goes through the backend: UCX's self
 * transport has no file descriptor, so it would not wake a sleeping protocol
 * thread (a lock home forwarding to itself waited for the next timeout,
 * ~10 ms). */
static int rdma_am_send_self(rdma_ctx_t *ctx, unsigned type, const void *payload, size_t len)
{
    const rdma_am_slot_t *slot = &ctx->am[type];
    rdma_event_t *event;

    if (slot->handler == NULL || len < slot->min_len || len > slot->max_len) {
        ftsvm_error("message to self of type %u and %zu bytes has no handler that takes it",
                    type, len);
        return FTSVM_EINVAL;
    }
    event = malloc(sizeof(*event) + len);
    if (event == NULL) {
        ftsvm_error("cannot queue a message to self: out of memory");
        return FTSVM_ENOMEM;
    }
    event->kind = RDMA_EVENT_AM;
    event->src  = ctx->node;
    event->type = type;
    event->len  = len;
    if (len > 0) {
        memcpy(event->payload, payload, len);
    }
    stats_add(&ctx->stats, RDMA_STAT_AM_SENT, 1);
    stats_add(&ctx->stats, RDMA_STAT_AM_RECEIVED, 1);
    rdma_queue_push(ctx, event);
    return FTSVM_OK;
}

int rdma_am_send(rdma_ctx_t *ctx, int peer, unsigned type, const void *payload, size_t len)
{
    rdma_am_hdr_t hdr = {
        .type = (uint16_t)type, .version = RDMA_AM_VERSION,
        .src = (uint32_t)ctx->node, .len = (uint32_t)len,
    };

    if (type >= RDMA_AM_TYPES || len > RDMA_AM_MAX_PAYLOAD) {
        ftsvm_error("rdma_am_send: bad type %u or length %zu", type, len);
        return FTSVM_EINVAL;
    }
    if (peer == ctx->node) {
        return rdma_am_send_self(ctx, type, payload, len);
    }
    return rdma_am_send_raw(ctx, peer, &hdr, sizeof(hdr), payload, len);
}

/* ---- peer failure ------------------------------------------------------- */

void rdma_peer_failed(rdma_ctx_t *ctx, int peer, const char *why)
{
    rdma_event_t *event;

    if (atomic_exchange(&ctx->peers[peer].failed, 1)) {
        return;
    }
    stats_add(&ctx->stats, RDMA_STAT_PEER_FAILURES, 1);
    if (atomic_load(&ctx->quiescing)) {
        ftsvm_debug("node %d closed its connection: %s", peer, why);
        return;
    }
    ftsvm_info("transport reports node %d failed: %s", peer, why);
    event = calloc(1, sizeof(*event));
    if (event == NULL) {
        ftsvm_error("cannot queue the failure of node %d: out of memory", peer);
        return;
    }
    event->kind = RDMA_EVENT_PEER_FAILED;
    event->src  = peer;
    rdma_queue_push(ctx, event);
}

void rdma_failure_dispatch(rdma_ctx_t *ctx, int peer)
{
    int i, n = atomic_load(&ctx->nfailure_cbs);

    for (i = 0; i < n; i++) {
        ctx->failure_cbs[i].cb(ctx->failure_cbs[i].arg, peer);
    }
}

int rdma_on_peer_failure(rdma_ctx_t *ctx, rdma_peer_failed_t cb, void *arg)
{
    int n = atomic_load(&ctx->nfailure_cbs);

    if (cb == NULL || n >= RDMA_MAX_FAILURE_CBS) {
        ftsvm_error("rdma_on_peer_failure: no room for another callback");
        return FTSVM_EINVAL;
    }
    ctx->failure_cbs[n].cb  = cb;
    ctx->failure_cbs[n].arg = arg;
    atomic_store(&ctx->nfailure_cbs, n + 1);
    return FTSVM_OK;
}

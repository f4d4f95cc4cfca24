/*
 * Start-up and teardown of the verbs backend (DESIGN.md section 10): the
 * regions are allocated here and registered for remote read, write and
 * atomics, their keys exchanged at start-up with every node's listening
 * address; then the queue pairs are connected (verbs_cm.c) and the event
 * fds gathered into the one epoll fd the protocol thread sleeps on.
 */
#include "verbs_int.h"
#include "common/log.h"
#include "ftsvm.h"

#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/mman.h>
#include <unistd.h>

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

void rdma_verbs_destroy(rdma_ctx_t *ctx)
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

int rdma_verbs_create(rdma_ctx_t *ctx, const rdma_params_t *params)
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

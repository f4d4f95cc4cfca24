/*
 * rma_lat: latency of the transport's operations between 2 nodes, each beside
 * the same operation done by a minimal raw UCX loop in the same run.
 *
 *   ftsvm-run -n 2 build/bench/rma_lat [iterations] [blocks] [UCX_TLS list]...
 *
 * For each transport list (by default shared memory, then TCP; or those
 * given, e.g. rc_verbs,self on soft-RoCE; with FTSVM_TRANSPORT=verbs, ftsvm
 * over verbs beside raw UCX over the first list given, else TCP) and each
 * operation, blocks of
 * `iterations` samples alternate between ftsvm and the raw loop, so that both
 * see the same machine load; p50 and p99 are taken over all samples of a
 * side, and the ratio is ftsvm p50 / raw p50.
 *
 * Node 0 measures, node 1 is the target. In an ftsvm block node 1's
 * application thread sleeps in a barrier and its protocol thread serves; in
 * a raw block node 1's application thread busy-progresses the raw worker
 * (what a minimal UCX target does) until node 0 says stop.
 */
#include "common/clock.h"
#include "ftsvm.h"
#include "runtime/runtime.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <ucp/api/ucp.h>

#define REGION   (1u << 20)
#define OFF_DATA 4096          /* where the operations go */
#define AM_PING  1
#define AM_PONG  2

enum { OP_PUT8, OP_GET8, OP_GET4K, OP_FADD, OP_AM, OP_COUNT };
static const char *const op_names[OP_COUNT] = {
    "put+flush 8 B", "get 8 B", "get 4 KB", "fetch-add 8 B", "am round trip",
};

static int node;
static bootstrap_t *boot;
static long iterations = 2000, blocks = 5;

/* ---- ftsvm side ----------------------------------------------------------- */

static rdma_ctx_t *ctx;
static uint64_t pongs;
static pthread_mutex_t pong_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t pong_cond = PTHREAD_COND_INITIALIZER;

static void on_ping(void *arg, int src, const void *payload, size_t len)
{
    rdma_am_send(ctx, src, AM_PONG, payload, len);
}

static void on_pong(void *arg, int src, const void *payload, size_t len)
{
    pthread_mutex_lock(&pong_lock);
    pongs++;
    pthread_cond_signal(&pong_cond);
    pthread_mutex_unlock(&pong_lock);
}

static int ftsvm_op(int op, uint8_t *buf)
{
    uint64_t old, want;

    switch (op) {
    case OP_PUT8:
        if (rdma_put(ctx, 1, 0, OFF_DATA, buf, 8) != FTSVM_OK) {
            return -1;
        }
        return rdma_flush(ctx, 1);
    case OP_GET8:
        return rdma_get(ctx, 1, 0, OFF_DATA, buf, 8);
    case OP_GET4K:
        return rdma_get(ctx, 1, 0, OFF_DATA, buf, 4096);
    case OP_FADD:
        return rdma_fetch_add(ctx, 1, 0, OFF_DATA, 1, &old);
    case OP_AM:
        pthread_mutex_lock(&pong_lock);
        want = pongs + 1;
        pthread_mutex_unlock(&pong_lock);
        if (rdma_am_send(ctx, 1, AM_PING, buf, 8) != FTSVM_OK) {
            return -1;
        }
        /* the pong is handled on our protocol thread, which wakes us: an
         * application thread waiting for a message sleeps, as lock and
         * barrier waits will */
        pthread_mutex_lock(&pong_lock);
        while (pongs < want) {
            pthread_cond_wait(&pong_cond, &pong_lock);
        }
        pthread_mutex_unlock(&pong_lock);
        return 0;
    }
    return -1;
}

/* ---- raw UCX side: as little as a UCX user writes ------------------------ */

typedef struct {
    ucp_context_h context;
    ucp_worker_h  worker;
    ucp_mem_h     memh;
    void         *mem;
    ucp_ep_h      ep;
    ucp_rkey_h    rkey;
    uint64_t      remote;
    volatile int  pong;
    volatile uint64_t stop;
} raw_t;

static raw_t raw;

static ucs_status_t raw_on_stop(void *arg, const void *header, size_t header_length,
                                void *data, size_t length, const ucp_am_recv_param_t *param);

static ucs_status_t raw_on_am(void *arg, const void *header, size_t header_length,
                              void *data, size_t length, const ucp_am_recv_param_t *param)
{
    ucp_request_param_t rp = {0};
    ucs_status_ptr_t req;

    if (node == 1) {
        /* reply from the callback, as a minimal server does */
        rp.op_attr_mask = UCP_OP_ATTR_FIELD_FLAGS;
        rp.flags        = UCP_AM_SEND_FLAG_EAGER;
        req = ucp_am_send_nbx(raw.ep, 0, NULL, 0, data, length, &rp);
        if (UCS_PTR_IS_PTR(req)) {
            ucp_request_free(req);
        }
    } else {
        raw.pong = 1;
    }
    return UCS_OK;
}

static void raw_wait(ucs_status_ptr_t req)
{
    if (UCS_PTR_IS_PTR(req)) {
        while (ucp_request_check_status(req) == UCS_INPROGRESS) {
            ucp_worker_progress(raw.worker);
        }
        ucp_request_free(req);
    }
}

static int raw_setup(const char *tls)
{
    ucp_params_t params = {0};
    ucp_worker_params_t wparams = {0};
    ucp_mem_map_params_t map = {0};
    ucp_mem_attr_t attr = {0};
    ucp_am_handler_param_t am = {0};
    ucp_ep_params_t ep_params = {0};
    ucp_config_t *config;
    ucp_address_t *addr;
    size_t addr_len, key_len;
    void *key;
    uint8_t blob[2][1024], *peer;
    uint64_t base;

    ucp_config_read(NULL, NULL, &config);
    ucp_config_modify(config, "TLS", tls);
    params.field_mask = UCP_PARAM_FIELD_FEATURES;
    params.features   = UCP_FEATURE_RMA | UCP_FEATURE_AMO64 | UCP_FEATURE_AM;
    if (ucp_init(&params, config, &raw.context) != UCS_OK) {
        return -1;
    }
    ucp_config_release(config);
    wparams.field_mask  = UCP_WORKER_PARAM_FIELD_THREAD_MODE;
    wparams.thread_mode = UCS_THREAD_MODE_SINGLE;
    ucp_worker_create(raw.context, &wparams, &raw.worker);
    map.field_mask = UCP_MEM_MAP_PARAM_FIELD_ADDRESS | UCP_MEM_MAP_PARAM_FIELD_LENGTH |
                     UCP_MEM_MAP_PARAM_FIELD_FLAGS;
    map.length = REGION;
    map.flags  = UCP_MEM_MAP_ALLOCATE;
    ucp_mem_map(raw.context, &map, &raw.memh);
    attr.field_mask = UCP_MEM_ATTR_FIELD_ADDRESS;
    ucp_mem_query(raw.memh, &attr);
    raw.mem = attr.address;
    memset(raw.mem, 0, REGION);
    am.field_mask = UCP_AM_HANDLER_PARAM_FIELD_ID | UCP_AM_HANDLER_PARAM_FIELD_CB;
    am.id = 0;
    am.cb = raw_on_am;
    ucp_worker_set_am_recv_handler(raw.worker, &am);
    am.id = 1;
    am.cb = raw_on_stop;
    ucp_worker_set_am_recv_handler(raw.worker, &am);

    /* blob: u32 address length, address, u64 base, u32 key length, key */
    ucp_worker_get_address(raw.worker, &addr, &addr_len);
    ucp_rkey_pack(raw.context, raw.memh, &key, &key_len);
    if (4 + addr_len + 8 + 4 + key_len > sizeof(blob[0])) {
        fprintf(stderr, "raw address too long\n");
        return -1;
    }
    memset(blob, 0, sizeof(blob));
    base = (uint64_t)(uintptr_t)raw.mem;
    memcpy(blob[0], &(uint32_t){(uint32_t)addr_len}, 4);
    memcpy(blob[0] + 4, addr, addr_len);
    memcpy(blob[0] + 4 + addr_len, &base, 8);
    memcpy(blob[0] + 12 + addr_len, &(uint32_t){(uint32_t)key_len}, 4);
    memcpy(blob[0] + 16 + addr_len, key, key_len);
    ucp_rkey_buffer_release(key);
    ucp_worker_release_address(raw.worker, addr);
    {
        uint8_t all[2][1024];

        if (bootstrap_allgather(boot, blob[0], sizeof(blob[0]), all, NULL) != FTSVM_OK) {
            return -1;
        }
        memcpy(blob[1], all[1 - node], sizeof(blob[1]));
    }
    peer = blob[1];
    addr_len = *(uint32_t *)peer;
    ep_params.field_mask = UCP_EP_PARAM_FIELD_REMOTE_ADDRESS;
    ep_params.address    = (const ucp_address_t *)(peer + 4);
    ucp_ep_create(raw.worker, &ep_params, &raw.ep);
    memcpy(&raw.remote, peer + 4 + addr_len, 8);
    ucp_ep_rkey_unpack(raw.ep, peer + 16 + addr_len, &raw.rkey);
    return 0;
}

static void raw_teardown(void)
{
    ucp_request_param_t param = {0};

    ucp_rkey_destroy(raw.rkey);
    param.op_attr_mask = UCP_OP_ATTR_FIELD_FLAGS;
    param.flags        = UCP_EP_CLOSE_FLAG_FORCE;
    raw_wait(ucp_ep_close_nbx(raw.ep, &param));
    ucp_mem_unmap(raw.context, raw.memh);
    ucp_worker_destroy(raw.worker);
    ucp_cleanup(raw.context);
    memset(&raw, 0, sizeof(raw));
}

static void raw_op(int op, uint8_t *buf)
{
    ucp_request_param_t param = {0};
    uint64_t one = 1, old;

    switch (op) {
    case OP_PUT8:
        raw_wait(ucp_put_nbx(raw.ep, buf, 8, raw.remote + OFF_DATA, raw.rkey, &param));
        raw_wait(ucp_ep_flush_nbx(raw.ep, &param));
        break;
    case OP_GET8:
        raw_wait(ucp_get_nbx(raw.ep, buf, 8, raw.remote + OFF_DATA, raw.rkey, &param));
        break;
    case OP_GET4K:
        raw_wait(ucp_get_nbx(raw.ep, buf, 4096, raw.remote + OFF_DATA, raw.rkey, &param));
        break;
    case OP_FADD:
        param.op_attr_mask = UCP_OP_ATTR_FIELD_DATATYPE | UCP_OP_ATTR_FIELD_REPLY_BUFFER;
        param.datatype     = ucp_dt_make_contig(8);
        param.reply_buffer = &old;
        raw_wait(ucp_atomic_op_nbx(raw.ep, UCP_ATOMIC_OP_ADD, &one, 1,
                                   raw.remote + OFF_DATA, raw.rkey, &param));
        break;
    case OP_AM:
        raw.pong = 0;
        param.op_attr_mask = UCP_OP_ATTR_FIELD_FLAGS;
        param.flags        = UCP_AM_SEND_FLAG_EAGER;
        raw_wait(ucp_am_send_nbx(raw.ep, 0, NULL, 0, buf, 8, &param));
        while (!raw.pong) {
            ucp_worker_progress(raw.worker);
        }
        break;
    }
}

static ucs_status_t raw_on_stop(void *arg, const void *header, size_t header_length,
                                void *data, size_t length, const ucp_am_recv_param_t *param)
{
    memcpy((void *)&raw.stop, data, sizeof(raw.stop));
    return UCS_OK;
}

/* the raw target: progress until node 0 says stop */
static void raw_serve(uint64_t until)
{
    while (raw.stop < until) {
        ucp_worker_progress(raw.worker);
    }
}

/* A message, not a put: over TCP a put is complete only when the target
 * acks it, and the target stops progressing as soon as it sees the value. */
static void raw_stop(uint64_t value)
{
    ucp_request_param_t param = {0};

    param.op_attr_mask = UCP_OP_ATTR_FIELD_FLAGS;
    param.flags        = UCP_AM_SEND_FLAG_EAGER;
    raw_wait(ucp_am_send_nbx(raw.ep, 1, NULL, 0, &value, sizeof(value), &param));
}

/* ---- measurement ----------------------------------------------------------- */

static int compare(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

    return (x > y) - (x < y);
}

static double pct(uint64_t *s, size_t n, double p)
{
    return (double)s[(size_t)(p * (double)(n - 1))] / 1e3;
}

static int run_transport(const char *label, const char *tls)
{
    ftsvm_runtime_t *rt = ftsvm_runtime();
    size_t size = REGION, n = (size_t)(iterations * blocks);
    rdma_params_t params;
    uint64_t *ours = malloc(n * sizeof(uint64_t)), *theirs = malloc(n * sizeof(uint64_t));
    uint64_t t0, stop = 0;
    uint8_t buf[4096] = {1};
    char lanes[2][256] = {"", ""};
    long b, i;
    int op;

    runtime_rdma_params(rt, &params);
    params.tls          = tls;
    params.nregions     = 1;
    params.region_sizes = &size;
    if (ours == NULL || theirs == NULL || rdma_create(&params, &ctx) != FTSVM_OK ||
        raw_setup(tls) != 0) {
        fprintf(stderr, "rma_lat: cannot set up the %s transports\n", label);
        return 1;
    }
    rdma_am_register(ctx, AM_PING, 8, 8, on_ping, NULL);
    rdma_am_register(ctx, AM_PONG, 8, 8, on_pong, NULL);
    bootstrap_barrier(boot);
    if (node == 0) {
        rdma_describe_peer(ctx, 1, lanes[0], sizeof(lanes[0]));
        printf("\n%s: ftsvm over %s\n", label, lanes[0]);
        printf("%-16s %10s %10s %10s %10s %8s\n", "operation", "ftsvm p50", "p99",
               "raw p50", "p99", "ratio");
    }
    for (op = 0; op < OP_COUNT; op++) {
        for (b = 0; b < blocks; b++) {
            /* ftsvm block: node 1 waits in the barrier, its protocol thread serves */
            if (node == 0) {
                for (i = 0; i < iterations / 10; i++) {
                    ftsvm_op(op, buf);    /* warm-up */
                }
                for (i = 0; i < iterations; i++) {
                    t0 = clock_now_ns();
                    if (ftsvm_op(op, buf) != 0) {
                        fprintf(stderr, "rma_lat: %s failed\n", op_names[op]);
                        return 1;
                    }
                    ours[b * iterations + i] = clock_now_ns() - t0;
                }
            }
            bootstrap_barrier(boot);
            /* raw block: node 1 busy-progresses the raw worker */
            stop++;
            if (node == 0) {
                for (i = 0; i < iterations / 10; i++) {
                    raw_op(op, buf);
                }
                for (i = 0; i < iterations; i++) {
                    t0 = clock_now_ns();
                    raw_op(op, buf);
                    theirs[b * iterations + i] = clock_now_ns() - t0;
                }
                raw_stop(stop);
            } else {
                raw_serve(stop);
            }
            bootstrap_barrier(boot);
        }
        if (node == 0) {
            qsort(ours, n, sizeof(uint64_t), compare);
            qsort(theirs, n, sizeof(uint64_t), compare);
            printf("%-16s %8.2fus %8.2fus %8.2fus %8.2fus %7.2fx\n", op_names[op],
                   pct(ours, n, 0.5), pct(ours, n, 0.99), pct(theirs, n, 0.5),
                   pct(theirs, n, 0.99), pct(ours, n, 0.5) / pct(theirs, n, 0.5));
            fflush(stdout);
        }
    }
    rdma_quiesce(ctx);
    bootstrap_barrier(boot);
    rdma_destroy(ctx);
    raw_teardown();
    free(ours);
    free(theirs);
    return 0;
}

int main(int argc, char **argv)
{
    int status;

    status = ftsvm_init(&argc, &argv);
    if (status != FTSVM_OK) {
        fprintf(stderr, "ftsvm_init: %s\n", ftsvm_strerror(status));
        return 1;
    }
    if (ftsvm_nodes() != 2) {
        fprintf(stderr, "rma_lat runs on exactly 2 nodes (ftsvm-run -n 2)\n");
        ftsvm_finalize();
        return 2;
    }
    if (argc > 1) {
        iterations = strtol(argv[1], NULL, 10);
    }
    if (argc > 2) {
        blocks = strtol(argv[2], NULL, 10);
    }
    if (iterations < 10 || blocks < 1) {
        fprintf(stderr, "usage: rma_lat [iterations >= 10] [blocks >= 1] [UCX_TLS list]...\n");
        return 2;
    }
    node = ftsvm_node();
    boot = ftsvm_runtime()->boot;
    if (node == 0) {
        printf("rma_lat: 2 nodes, %ld blocks of %ld samples per side and operation, "
               "blocks interleaved\n", blocks, iterations);
    }
    if (ftsvm_runtime()->config.transport == FTSVM_TRANSPORT_VERBS) {
        /* ftsvm over verbs; the raw column stays a UCX loop, over the list
         * given (rc_verbs on soft-RoCE) or TCP */
        status = run_transport("verbs", argc > 3 ? argv[3] : "tcp");
    } else if (argc > 3) {
        /* the UCX transport lists to measure, e.g. rc_verbs,self on soft-RoCE */
        status = 0;
        for (int i = 3; i < argc; i++) {
            status |= run_transport(argv[i], argv[i]);
        }
    } else {
        status  = run_transport("shared memory", "sm,self");
        status |= run_transport("tcp", "tcp");
    }
    ftsvm_finalize();
    return status;
}

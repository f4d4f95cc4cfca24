/*
 * ring: a multi-node demo of the transport under ftsvm, below the shared
 * memory (soft-RoCE's stage runs it to check the verbs backend end to end).
 * It boots the runtime alone (no shared memory) and keeps the launcher's
 * start-up service for its own exchange and barriers.
 *
 *   ftsvm-run -n 4 build/examples/ring [rounds]
 *
 * Each node draws tickets from a counter on node 0 with remote fetch-add,
 * writes a token into its right neighbour's mailbox with put + fence + flag,
 * and a message travels the ring `rounds` times, each node adding its id.
 * Every node checks what it received; node 0 checks the totals, prints what
 * it measured and the transports UCX picked, and the job exits 0 only if
 * every check held.
 */
#include "common/clock.h"
#include "ftsvm.h"
#include "runtime/runtime.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { MSG_TOKEN = 1 };
enum { WORD_TICKETS = 0, WORD_FLAG = 1, WORD_MAILBOX = 2 };

static rdma_ctx_t *ctx;
static int node, nodes;
static long rounds = 100;

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cond = PTHREAD_COND_INITIALIZER;
static long laps;            /* times the token passed through node 0 */
static uint64_t last_sum;

static void on_token(void *arg, int src, const void *payload, size_t len)
{
    uint64_t token[2];   /* lap, running sum */

    memcpy(token, payload, sizeof(token));
    if (node == 0) {
        pthread_mutex_lock(&lock);
        laps++;
        last_sum = token[1];
        pthread_cond_signal(&cond);
        pthread_mutex_unlock(&lock);
        if ((long)token[0] + 1 >= rounds) {
            return;
        }
        token[0]++;
        token[1] = 0;
    }
    token[1] += (uint64_t)node;
    if (rdma_am_send(ctx, (node + 1) % nodes, MSG_TOKEN, token, sizeof(token)) != FTSVM_OK) {
        fprintf(stderr, "node %d: cannot pass the token on\n", node);
    }
}

static int compare(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

    return (x > y) - (x < y);
}

int main(int argc, char **argv)
{
    const ftsvm_runtime_t *rt;
    size_t size = 1 << 16;
    rdma_params_t params;
    volatile uint64_t *mem;
    uint64_t ticket, token[2] = {0, 0}, lat[200], t0;
    uint8_t page[4096];
    char transports[256];
    int status, i, ok = 1, right, left;
    long expect_sum;

    status = runtime_boot();
    if (status != FTSVM_OK) {
        fprintf(stderr, "ring: start-up failed: %s\n", ftsvm_strerror(status));
        return 1;
    }
    if (argc > 1) {
        rounds = strtol(argv[1], NULL, 10);
        if (rounds < 1 || rounds > 1000000) {
            fprintf(stderr, "usage: ring [rounds 1..1000000]\n");
            return 2;
        }
    }
    rt    = runtime_booting();
    node  = rt->config.node;
    nodes = rt->config.nodes;
    right = (node + 1) % nodes;
    left  = (node + nodes - 1) % nodes;

    runtime_rdma_params(rt, &params);
    params.nregions = 1;
    params.region_sizes = &size;
    status = rdma_create(&params, &ctx);
    if (status != FTSVM_OK) {
        return 1;
    }
    mem = rdma_region_addr(ctx, 0);
    rdma_am_register(ctx, MSG_TOKEN, sizeof(token), sizeof(token), on_token, NULL);
    bootstrap_barrier(rt->boot);

    /* tickets: remote fetch-add on node 0, 100 each */
    for (i = 0; i < 100; i++) {
        status = rdma_fetch_add(ctx, 0, 0, WORD_TICKETS * 8, 1, &ticket);
        ok &= (status == FTSVM_OK && ticket < (uint64_t)nodes * 100);
    }
    /* mailbox: data, fence, flag into the right neighbour */
    ticket = 1000 + (uint64_t)node;
    status  = rdma_put(ctx, right, 0, WORD_MAILBOX * 8, &ticket, 8);
    status |= rdma_fence(ctx);
    ticket = 1;
    status |= rdma_put(ctx, right, 0, WORD_FLAG * 8, &ticket, 8);
    status |= rdma_flush(ctx, right);
    ok &= (status == FTSVM_OK);
    bootstrap_barrier(rt->boot);
    if (mem[WORD_FLAG] != 1 || mem[WORD_MAILBOX] != 1000 + (uint64_t)left) {
        fprintf(stderr, "node %d: mailbox holds %llu, expected %d\n", node,
                (unsigned long long)mem[WORD_MAILBOX], 1000 + left);
        ok = 0;
    }

    /* the token travels the ring */
    if (node == 0) {
        t0 = clock_now_ns();
        token[1] = 0;
        rdma_am_send(ctx, right, MSG_TOKEN, token, sizeof(token));
        pthread_mutex_lock(&lock);
        while (laps < rounds) {
            pthread_cond_wait(&cond, &lock);
        }
        pthread_mutex_unlock(&lock);
        expect_sum = (long)nodes * (nodes - 1) / 2;
        if (mem[WORD_TICKETS] != (uint64_t)nodes * 100 || (long)last_sum != expect_sum) {
            fprintf(stderr, "tickets %llu (expected %d), ring sum %llu (expected %ld)\n",
                    (unsigned long long)mem[WORD_TICKETS], nodes * 100,
                    (unsigned long long)last_sum, expect_sum);
            ok = 0;
        }
        printf("%d nodes: %d tickets drawn, token went %ld times round the ring "
               "(%.1f us per hop)\n", nodes, nodes * 100, rounds,
               (double)(clock_now_ns() - t0) / 1e3 / (double)(rounds * nodes));
        for (i = 0; i < 200; i++) {
            t0 = clock_now_ns();
            ok &= (rdma_get(ctx, right, 0, 0, page, sizeof(page)) == FTSVM_OK);
            lat[i] = clock_now_ns() - t0;
        }
        qsort(lat, 200, sizeof(lat[0]), compare);
        rdma_describe_peer(ctx, right, transports, sizeof(transports));
        printf("get of 4 KiB from node %d: p50 %.1f us (transports: %s)\n", right,
               (double)lat[100] / 1e3, transports[0] ? transports : "?");
    }
    bootstrap_barrier(rt->boot);
    rdma_quiesce(ctx);
    bootstrap_barrier(rt->boot);
    rdma_destroy(ctx);
    runtime_abort();
    printf("node %d: %s\n", node, ok ? "verified" : "FAILED");
    return ok ? 0 : 1;
}

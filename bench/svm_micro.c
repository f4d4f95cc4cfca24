/*
 * svm_micro: the shared virtual memory's own costs, each beside the transport
 * operation underneath it, measured in the same run.
 *
 *   ftsvm-run -n 3 build/bench/svm_micro [reps=200]      (2 nodes or more)
 *
 * - read fault of a 4 KB page homed at another node, beside a raw 4 KB get
 *   from that node plus a fault on a page homed here (the fault's own cost);
 * - lock release (closing the interval, diffs, notices, propagation) with 1
 *   and 64 dirty pages;
 * - remote lock acquire: the lock is homed at the last node and held last by
 *   node 1; node 0 acquires it. Messages on the critical path are counted
 *   from the locks counters of every node.
 */
#include "common/clock.h"
#include "common/stats.h"
#include "ftsvm.h"
#include "hlrc/hlrc_int.h"
#include "runtime/runtime.h"

#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define PAGE 4096

static int node, nodes;
static long reps = 200;

static int compare(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

    return (x > y) - (x < y);
}

static double p50_us(uint64_t *s, long n)
{
    qsort(s, (size_t)n, sizeof(uint64_t), compare);
    return (double)s[n / 2] / 1e3;
}

static void barrier(void)
{
    if (ftsvm_barrier() != FTSVM_OK) {
        fprintf(stderr, "svm_micro: barrier failed\n");
        exit(1);
    }
}

/* With two homes and two nodes, node 0 holds a copy of every page: a fault
 * then reads its own copy, and there is no remote fault to measure. */
static int remote_fault_possible(void)
{
    return replica_count() == 1 || nodes > 2;
}

/* The k-th page of `area` whose primary home is `home` and, when a remote
 * fault is possible, that has no home on this node unless `home` is this
 * node (so that a fault on it reads from `home`, whatever FTSVM_REPLICAS
 * is). */
static volatile uint8_t *page_homed_at(uint8_t *area, int home, long k)
{
    size_t first = (size_t)(area - hlrc.base) / PAGE;
    long i, found = -1;

    for (i = 0;; i++) {
        size_t block = (first + (size_t)i) / hlrc.home_block;

        if (replica_home(block, REPLICA_PRIMARY) == home &&
            (home == node || !remote_fault_possible() ||
             replica_home(block, REPLICA_SECONDARY) != node) && ++found == k) {
            return area + (size_t)i * PAGE;
        }
    }
}

static void fault_costs(uint8_t *area)
{
    uint64_t *remote = calloc((size_t)reps, 8), *local = calloc((size_t)reps, 8);
    uint64_t *get = calloc((size_t)reps, 8), t0;
    uint8_t buf[PAGE];
    volatile uint8_t *p;
    long k;
    uint8_t sink = 0;

    /* node 1 writes every page; after the barrier node 0's copies are stale */
    if (node == 1) {
        for (k = 0; k < reps; k++) {
            *page_homed_at(area, 1, k) = 1;
            *page_homed_at(area, 0, k) = 1;
        }
    }
    barrier();
    if (node == 0) {
        for (k = 0; k < reps; k++) {
            p = page_homed_at(area, 1, k);
            t0 = clock_now_ns();
            sink += *p;                         /* fault, fetch from node 1 */
            remote[k] = clock_now_ns() - t0;
            p = page_homed_at(area, 0, k);
            t0 = clock_now_ns();
            sink += *p;                         /* fault, copy from our home store */
            local[k] = clock_now_ns() - t0;
            t0 = clock_now_ns();
            rdma_get(ftsvm_runtime()->rdma, 1, 0, 0, buf, PAGE);
            get[k] = clock_now_ns() - t0;
        }
        double r = p50_us(remote, reps), l = p50_us(local, reps), g = p50_us(get, reps);

        printf("read fault, page homed at node 1     p50 %8.2f us%s\n", r,
               remote_fault_possible() ? "" : " (node 0 holds the second copy: read here)");
        printf("  raw get 4 KB from node 1           p50 %8.2f us\n", g);
        printf("  read fault, page homed here        p50 %8.2f us\n", l);
        printf("  ratio fault / (get + local fault)      %8.2fx%s\n", r / (g + l),
               sink == 255 ? " " : "");
    }
    barrier();
    free(remote);
    free(local);
    free(get);
}

static void release_costs(uint8_t *area)
{
    static const long dirty[] = { 1, 64 };
    uint64_t *t = calloc((size_t)reps, 8), t0;
    long d, k, i;

    for (d = 0; d < 2; d++) {
        if (node == 0) {
            for (k = 0; k < reps; k++) {
                ftsvm_lock_acquire(0);           /* homed here: local after the first */
                for (i = 0; i < dirty[d]; i++) {
                    area[(size_t)(i + 512) * PAGE + (size_t)(k % 512)] = (uint8_t)k;
                }
                t0 = clock_now_ns();
                ftsvm_lock_release(0);
                t[k] = clock_now_ns() - t0;
            }
            printf("release with %2ld dirty pages          p50 %8.2f us\n", dirty[d],
                   p50_us(t, reps));
        }
        barrier();
    }
    free(t);
}

static void lock_costs(void)
{
    uint64_t *t = calloc((size_t)reps, 8), t0, before[3], mine[3];
    uint64_t *all = calloc((size_t)nodes * 3, 8);
    unsigned lock = (unsigned)(nodes - 1);       /* homed at the last node */
    long k;
    int n, c;
    static const char *const names[3] = { "requests_sent", "forwards_sent", "grants_sent" };

    for (c = 0; c < 3; c++) {
        before[c] = stats_lookup("locks", names[c]);
    }
    for (k = 0; k < reps; k++) {
        if (node == 1) {
            ftsvm_lock_acquire(lock);
            ftsvm_lock_release(lock);
        }
        barrier();
        if (node == 0) {
            t0 = clock_now_ns();
            ftsvm_lock_acquire(lock);
            t[k] = clock_now_ns() - t0;
            ftsvm_lock_release(lock);
        }
        barrier();
    }
    for (c = 0; c < 3; c++) {
        mine[c] = stats_lookup("locks", names[c]) - before[c];
    }
    runtime_exchange(ftsvm_runtime()->boot, mine, sizeof(mine), all);
    if (node == 0) {
        double total[3] = {0};

        /* every round has two remote acquisitions: node 1's and node 0's */
        for (n = 0; n < nodes; n++) {
            for (c = 0; c < 3; c++) {
                total[c] += (double)all[n * 3 + c] / (double)(2 * reps);
            }
        }
        printf("remote lock acquire (home %d, held by 1) p50 %8.2f us\n", nodes - 1,
               p50_us(t, reps));
        printf("  messages per remote acquire: %.2f request, %.2f forward, %.2f grant (%s)\n",
               total[0], total[1], total[2],
               nodes > 2 ? "critical path requester -> home -> holder -> requester"
                         : "the home is the holder: its forward is local");
    }
    barrier();
    free(t);
    free(all);
}

/* Every node takes one lock `reps` times, yielding the CPU between: the
 * time per handoff between nodes (elapsed / handoffs; the lock passes inside
 * a node with no message, and the remote handoffs are counted from the
 * grants). */
static void contended_lock(void)
{
    uint64_t t0, grants, all_grants = 0, *all = calloc((size_t)nodes, 8);
    unsigned lock = (unsigned)(nodes - 1);
    double elapsed;
    long k;
    int n;

    barrier();
    grants = stats_lookup("locks", "grants_sent");
    t0 = clock_now_ns();
    for (k = 0; k < reps; k++) {
        ftsvm_lock_acquire(lock);
        ftsvm_lock_release(lock);
        sched_yield();   /* let a forward in before we take it again */
    }
    barrier();
    elapsed = (double)(clock_now_ns() - t0) / 1e3;
    grants = stats_lookup("locks", "grants_sent") - grants;
    runtime_exchange(ftsvm_runtime()->boot, &grants, sizeof(grants), all);
    for (n = 0; n < nodes; n++) {
        all_grants += all[n];
    }
    if (node == 0) {
        printf("contended lock, %d nodes x %ld acquires: %llu handoffs between nodes, "
               "%8.2f us per handoff\n", nodes, reps, (unsigned long long)all_grants,
               elapsed / (double)(all_grants ? all_grants : 1));
    }
    barrier();
    free(all);
}

int main(int argc, char **argv)
{
    uint8_t *area;

    if (ftsvm_init(&argc, &argv) != FTSVM_OK) {
        return 1;
    }
    node  = ftsvm_node();
    nodes = ftsvm_nodes();
    reps  = (argc > 1) ? strtol(argv[1], NULL, 10) : 200;
    if (nodes < 2 || reps < 10 || reps > 100000) {
        fprintf(stderr, "usage: ftsvm-run -n N>=2 svm_micro [reps 10..100000]\n");
        return 2;
    }
    area = ftsvm_alloc((size_t)(2 * reps * nodes + 1024) * PAGE);
    if (area == NULL) {
        return 1;
    }
    if (node == 0) {
        printf("svm_micro: %d nodes, %ld samples each, p50\n", nodes, reps);
    }
    fault_costs(area);
    release_costs(area);
    lock_costs();
    contended_lock();
    ftsvm_finalize();
    return 0;
}

/*
 * Node program of the shared-memory tests (test/multi/test_svm.c). Uses only
 * include/ftsvm.h.   svm_node TEST [spread]
 *
 * With "spread" the variables of a test sit on separate pages, otherwise on
 * one page. Every test asserts its forbidden outcome over many iterations;
 * exit 0 when it never happened, 10 with a message when it did.
 *
 *   slots      each thread writes its slot; after a barrier all see all
 *   mp_lock    message passing through a lock: a reader's critical section
 *              sees data and flag of the same round, and readers go on until
 *              they have seen the last round
 *   mp_barrier message passing through a barrier
 *   chain      causality through two locks: x (lock 1) -> y (lock 2)
 *   writers    two writers under one lock: the final value is in lock order
 *   coherence  repeated reads of a counter under a lock never go back, and
 *              reach the last value
 *   false      threads of different nodes write disjoint bytes of one page;
 *              after a barrier every byte is right
 *   counter    N nodes x T threads x K increments under one lock
 *   local      only node 0's threads take lock 6 (homed at node 0): after the
 *              first acquire the lock passes among them with no message (the
 *              test reads the FTSVM_STATS counters)
 *   bad        bad input gives clear error codes
 *   fair       one thread per node takes lock 3 FAIR_ROUNDS times and logs its
 *              node in shared memory; node 0 prints the order in which the
 *              lock came to the nodes (the test compares it with the queue
 *              order that the lock's primary home logs)
 *   handoff    lock 0 (primary node 0, secondary node 1 with 3 nodes) is
 *              held last by node 2; node 0 acquires it and prints how long
 *              that took (the test sets FTSVM_LOCK_ACK_DELAY_MS and reads the
 *              counters)
 */
#define NODE_NAME "svm_node"
#include "api_check.h"
#include "ftsvm.h"

#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define PAGE 4096


static int node, nodes, threads_per_node, spread;
static uint8_t *area;

/* the address of variable v: same page, or page v */
static volatile uint64_t *var(int v)
{
    return (volatile uint64_t *)(area + (spread ? (size_t)v * PAGE : (size_t)v * 64));
}

typedef void (*thread_fn)(int tid);

typedef struct {
    thread_fn fn;
    int       tid;
} start_t;

static void *trampoline(void *arg)
{
    start_t *s = arg;

    s->fn(s->tid);
    return NULL;
}

/* run fn on every thread of this node (main thread included) */
static void run_threads(thread_fn fn)
{
    pthread_t t[64];
    start_t s[64];
    int i;

    expect(threads_per_node <= 64, "too many threads");
    for (i = 1; i < threads_per_node; i++) {
        s[i].fn = fn;
        s[i].tid = node * threads_per_node + i;
        ok(ftsvm_thread_create(&t[i], trampoline, &s[i]));
    }
    fn(node * threads_per_node);
    for (i = 1; i < threads_per_node; i++) {
        pthread_join(t[i], NULL);
    }
}

#define ROUNDS 200

static void t_slots(int tid)
{
    int r, k, all = ftsvm_threads();

    for (r = 1; r <= ROUNDS / 4; r++) {
        *var(tid) = (uint64_t)r * 1000 + (uint64_t)tid;
        ok(ftsvm_barrier());
        for (k = 0; k < all; k++) {
            expect(*var(k) == (uint64_t)r * 1000 + (uint64_t)k, "round %d slot %d is %llu", r,
                   k, (unsigned long long)*var(k));
        }
        ok(ftsvm_barrier());
    }
}

/* Readers of the message-passing tests keep reading until they have seen the
 * writer's last message: a reader that never saw an update (no invalidation,
 * no propagation) fails here instead of passing on consistent zeros. */
#define READ_DEADLINE_S 60

static time_t read_deadline(void)
{
    return time(NULL) + READ_DEADLINE_S;
}

static void test_mp_lock(void)
{
    time_t deadline = read_deadline();
    uint64_t flag = 0, data;
    int r;

    /* node 0 writes data then flag in one critical section of lock 1; a
     * reader's critical section sees both from the same one of them */
    if (node == 0) {
        for (r = 1; r <= ROUNDS; r++) {
            ok(ftsvm_lock_acquire(1));
            *var(0) = (uint64_t)r;   /* data */
            *var(1) = (uint64_t)r;   /* flag */
            ok(ftsvm_lock_release(1));
        }
        return;
    }
    while (flag != ROUNDS) {
        ok(ftsvm_lock_acquire(1));
        flag = *var(1);
        data = *var(0);
        ok(ftsvm_lock_release(1));
        expect(data == flag, "flag %llu but data %llu", (unsigned long long)flag,
               (unsigned long long)data);
        expect(time(NULL) < deadline, "the last message (%d) never arrived: flag %llu",
               ROUNDS, (unsigned long long)flag);
    }
}

static void test_mp_barrier(void)
{
    int r;

    for (r = 1; r <= ROUNDS; r++) {
        if (node == r % nodes) {
            *var(0) = (uint64_t)r;
            *var(1) = (uint64_t)r * 3;
        }
        ok(ftsvm_barrier());
        expect(*var(0) == (uint64_t)r && *var(1) == (uint64_t)r * 3,
               "round %d after the barrier: %llu %llu", r, (unsigned long long)*var(0),
               (unsigned long long)*var(1));
        ok(ftsvm_barrier());
    }
}

static void test_chain(void)
{
    time_t deadline = read_deadline();
    uint64_t x = 0, y = 0;
    int r;

    /* node 0: x = r under lock 1. node 1: under lock 1 read x, then under
     * lock 2 write y = x, until it has passed on the last x. others: under
     * lock 2 read y, then x: seeing y == v means x >= v (causality through
     * lock 1 then lock 2), until y shows the last x */
    if (node == 0) {
        for (r = 1; r <= ROUNDS; r++) {
            ok(ftsvm_lock_acquire(1));
            *var(0) = (uint64_t)r;
            ok(ftsvm_lock_release(1));
        }
        return;
    }
    while (y != ROUNDS) {
        if (node == 1) {
            ok(ftsvm_lock_acquire(1));
            x = *var(0);
            ok(ftsvm_lock_release(1));
            ok(ftsvm_lock_acquire(2));
            *var(1) = y = x;
            ok(ftsvm_lock_release(2));
        } else {
            ok(ftsvm_lock_acquire(2));
            y = *var(1);
            x = *var(0);
            ok(ftsvm_lock_release(2));
            expect(x >= y, "saw y %llu but x %llu", (unsigned long long)y,
                   (unsigned long long)x);
        }
        expect(time(NULL) < deadline, "the chain never carried x = %d (y %llu)", ROUNDS,
               (unsigned long long)y);
    }
}

static void test_writers(void)
{
    int r, total = 0;
    uint64_t *log = (uint64_t *)(area + 8 * PAGE);

    /* every node appends its id under lock 3; the log holds every append
     * once, in one order, and its length is the count */
    for (r = 0; r < ROUNDS / 2; r++) {
        ok(ftsvm_lock_acquire(3));
        uint64_t n = *var(0);
        log[n] = (uint64_t)node + 1;
        *var(0) = n + 1;
        ok(ftsvm_lock_release(3));
    }
    ok(ftsvm_barrier());
    expect(*var(0) == (uint64_t)(ROUNDS / 2) * (uint64_t)nodes, "count %llu",
           (unsigned long long)*var(0));
    for (r = 0; r < (ROUNDS / 2) * nodes; r++) {
        expect(log[r] >= 1 && log[r] <= (uint64_t)nodes, "entry %d is %llu", r,
               (unsigned long long)log[r]);
        total += (log[r] == (uint64_t)node + 1);
    }
    expect(total == ROUNDS / 2, "%d of my appends are in the log", total);
}

static void test_coherence(void)
{
    time_t deadline = read_deadline();
    uint64_t last = 0, v = 0;
    int r;

    /* node 0 counts up under lock 4; the others read under lock 4 until they
     * see the last count, and a read never goes back */
    if (node == 0) {
        for (r = 0; r < ROUNDS; r++) {
            ok(ftsvm_lock_acquire(4));
            *var(0) += 1;
            ok(ftsvm_lock_release(4));
        }
        return;
    }
    while (v != ROUNDS) {
        ok(ftsvm_lock_acquire(4));
        v = *var(0);
        ok(ftsvm_lock_release(4));
        expect(v >= last, "read %llu after %llu", (unsigned long long)v,
               (unsigned long long)last);
        expect(time(NULL) < deadline, "the last count (%d) never arrived: %llu", ROUNDS,
               (unsigned long long)v);
        last = v;
    }
}

static void t_false(int tid)
{
    volatile uint8_t *page = area;   /* one page */
    int all = ftsvm_threads(), r, i;

    /* byte i belongs to thread i % all: neighbours share words */
    for (r = 1; r <= 20; r++) {
        for (i = tid; i < PAGE; i += all) {
            page[i] = (uint8_t)(r * 7 + i);
        }
        ok(ftsvm_barrier());
        for (i = 0; i < PAGE; i++) {
            expect(page[i] == (uint8_t)(r * 7 + i), "round %d byte %d is %u", r, i, page[i]);
        }
        ok(ftsvm_barrier());
    }
}

#define INCREMENTS 200

static void t_counter(int tid)
{
    int k;

    (void)tid;
    for (k = 0; k < INCREMENTS; k++) {
        ok(ftsvm_lock_acquire(5));
        *var(0) += 1;
        ok(ftsvm_lock_release(5));
    }
}

static void t_local(int tid)
{
    int k;

    (void)tid;
    for (k = 0; k < INCREMENTS; k++) {
        ok(ftsvm_lock_acquire(6));
        *var(1) += 1;
        ok(ftsvm_lock_release(6));
    }
}

static void test_bad(void)
{
    int x;

    errno = 0;
    expect(ftsvm_alloc(0) == NULL && errno == EINVAL, "alloc 0");
    expect(ftsvm_alloc((size_t)1 << 50) == NULL && errno == ENOMEM, "alloc too much");
    expect(ftsvm_malloc(0) == NULL, "malloc 0");
    expect(ftsvm_lock_acquire(1u << 30) == FTSVM_ERANGE, "lock out of range");
    expect(ftsvm_lock_release(1u << 30) == FTSVM_ERANGE, "lock out of range");
    expect(ftsvm_lock_release(77) == FTSVM_ESTATE, "release of a lock not held");
    ftsvm_free(&x);                  /* not shared: logged, no crash */
    ftsvm_free(area);                /* from ftsvm_alloc, not ftsvm_malloc */
}

static void test_malloc(void)
{
    uint64_t **slots = (uint64_t **)(void *)area, *mine;
    int r, k;

    /* every node mallocs a block, publishes it, others read and free it */
    for (r = 1; r <= 20; r++) {
        mine = ftsvm_malloc(100 + (size_t)r * 40);
        expect(mine != NULL, "malloc");
        mine[0] = (uint64_t)r * 100 + (uint64_t)node;
        slots[node * 8] = mine;
        ok(ftsvm_barrier());
        k = (node + 1) % nodes;
        expect(slots[k * 8][0] == (uint64_t)r * 100 + (uint64_t)k, "block of node %d", k);
        ok(ftsvm_barrier());
        ftsvm_free(slots[k * 8]);    /* another node's block */
        ok(ftsvm_barrier());
    }
}

#define FAIR_ROUNDS 60

static void test_fair(void)
{
    volatile uint64_t *count = var(0);
    volatile uint8_t *log = area + 2 * PAGE;
    struct timespec think = { 0, 200000 };
    int r, i;

    expect((uint64_t)nodes * FAIR_ROUNDS <= PAGE * 4, "too many nodes");
    for (r = 0; r < FAIR_ROUNDS; r++) {
        ok(ftsvm_lock_acquire(3));
        log[*count] = (uint8_t)node;
        *count = *count + 1;
        ok(ftsvm_lock_release(3));
        nanosleep(&think, NULL);   /* the others queue meanwhile */
    }
    ok(ftsvm_barrier());
    if (node != 0) {
        return;
    }
    expect(*count == (uint64_t)nodes * FAIR_ROUNDS, "%llu turns", (unsigned long long)*count);
    /* the nodes in the order the lock came to them (a node's local turns
     * count once): the test compares it with the queue at the lock's home */
    printf("node 0: holders");
    for (i = 0; i < (int)*count; i++) {
        if (i == 0 || log[i] != log[i - 1]) {
            printf(" %d", log[i]);
        }
    }
    printf("\n");
}

static void test_handoff(void)
{
    uint64_t t0, t1;
    struct timespec ts;

    expect(nodes == 3, "3 nodes");
    if (node == 2) {
        ok(ftsvm_lock_acquire(0));   /* the lock is free: granted by its primary */
        ok(ftsvm_lock_release(0));   /* node 2 keeps it */
    }
    ok(ftsvm_barrier());
    if (node == 0) {
        clock_gettime(CLOCK_MONOTONIC, &ts);
        t0 = (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
        ok(ftsvm_lock_acquire(0));
        clock_gettime(CLOCK_MONOTONIC, &ts);
        t1 = (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
        ok(ftsvm_lock_release(0));
        printf("node 0: remote acquire took %.3f ms\n", (double)(t1 - t0) / 1e6);
    }
}

int main(int argc, char **argv)
{
    const char *test = (argc > 1) ? argv[1] : "";

    spread = (argc > 2 && !strcmp(argv[2], "spread"));
    ok(ftsvm_init(&argc, &argv));
    node  = ftsvm_node();
    nodes = ftsvm_nodes();
    threads_per_node = ftsvm_threads() / nodes;
    area = ftsvm_alloc(64 * PAGE);
    expect(area != NULL, "ftsvm_alloc");

    if (!strcmp(test, "slots")) {
        run_threads(t_slots);
    } else if (!strcmp(test, "mp_lock")) {
        test_mp_lock();
    } else if (!strcmp(test, "mp_barrier")) {
        test_mp_barrier();
    } else if (!strcmp(test, "chain")) {
        test_chain();
    } else if (!strcmp(test, "writers")) {
        test_writers();
    } else if (!strcmp(test, "coherence")) {
        test_coherence();
    } else if (!strcmp(test, "false")) {
        run_threads(t_false);
    } else if (!strcmp(test, "counter")) {
        run_threads(t_counter);
        ok(ftsvm_barrier());
        expect(*var(0) == (uint64_t)ftsvm_threads() * INCREMENTS, "counter %llu, expected %llu",
               (unsigned long long)*var(0), (unsigned long long)ftsvm_threads() * INCREMENTS);
    } else if (!strcmp(test, "local")) {
        if (node == 0) {
            run_threads(t_local);
        }
    } else if (!strcmp(test, "bad")) {
        test_bad();
    } else if (!strcmp(test, "malloc")) {
        test_malloc();
    } else if (!strcmp(test, "fair")) {
        test_fair();
    } else if (!strcmp(test, "handoff")) {
        test_handoff();
    } else {
        fprintf(stderr, "svm_node: unknown test '%s'\n", test);
        return 2;
    }
    ok(ftsvm_barrier());
    ok(ftsvm_finalize());
    printf("node %d: %s%s passed\n", node, test, spread ? " (spread)" : "");
    return 0;
}

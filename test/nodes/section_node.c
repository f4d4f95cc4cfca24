/*
 * Node program of the partial-critical-section tests (test/multi/
 * test_failure.c): what a node's death leaves of a bank transfer, done with
 * locks and done in ftsvm_for (DESIGN.md section 1: an interval belongs to
 * the node). Uses only include/ftsvm.h and libftsvm.so. Run on 3 nodes with
 * 2 threads each; node 1 dies.
 *
 *   section_node lock      (with FTSVM_FAULT=lock-held:3@1)
 *       account A (100) and B (0), one lock each. Node 1's main thread takes
 *       A's lock and debits A by 10; then its sibling thread takes a lock of
 *       its own, writes a note and releases it, which publishes the node's
 *       interval, the debit included; then the main thread takes B's lock to
 *       credit B, and dies there (the third lock taken on node 1). The
 *       survivors take the sibling's lock (the note must be there), then A's
 *       and B's, and must find the half-done transfer durable: A 90, B 0.
 *       Prints "half-done transfer is durable".
 *   section_node for       (with ftsvm-run --kill 1@SECONDS)
 *       the same transfer between K pairs of accounts, one pair per chunk of
 *       an ftsvm_for. The first chunk node 1 runs debits its A and waits
 *       until a sibling thread's chunk of the node has finished whole, then
 *       stops before the credit until it is killed. The survivors must find
 *       every transfer made exactly once: every A 90, every B 10, every
 *       chunk run once. Prints "every transfer exactly once".
 *
 * Exit 0 when every check held, 10 with a message otherwise.
 */
#define NODE_NAME "section_node"
#include "api_check.h"
#include "ftsvm.h"

#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define VICTIM     1
#define LOCK_A     10
#define LOCK_B     11
#define LOCK_OWN   12
#define PAIRS      60
#define PAGE       4096

static void nap_ms(long ms)
{
    struct timespec ts = { ms / 1000, (ms % 1000) * 1000000L };

    nanosleep(&ts, NULL);
}

/* the survivors go on once the victim is out of the view */
static void wait_for_victims_death(void)
{
    int i;

    for (i = 0; i < 3000 && ftsvm_alive(VICTIM) != 0; i++) {
        nap_ms(10);
    }
    expect(ftsvm_alive(VICTIM) == 0, "node %d is still alive after 30 s", VICTIM);
}

/* ---- with locks: the sibling's release publishes the half-done section ---- */

static struct {
    int64_t *a, *b, *note;   /* on pages of their own */
    pthread_mutex_t mutex;
    pthread_cond_t  cond;
    int             debited, published;
} bank = { .mutex = PTHREAD_MUTEX_INITIALIZER, .cond = PTHREAD_COND_INITIALIZER };

static void wait_flag(int *flag)
{
    pthread_mutex_lock(&bank.mutex);
    while (!*flag) {
        pthread_cond_wait(&bank.cond, &bank.mutex);
    }
    pthread_mutex_unlock(&bank.mutex);
}

static void set_flag(int *flag)
{
    pthread_mutex_lock(&bank.mutex);
    *flag = 1;
    pthread_cond_broadcast(&bank.cond);
    pthread_mutex_unlock(&bank.mutex);
}

static void *sibling(void *arg)
{
    (void)arg;
    wait_flag(&bank.debited);
    ok(ftsvm_lock_acquire(LOCK_OWN));   /* its own critical section, nothing of A's */
    *bank.note = 1;
    ok(ftsvm_lock_release(LOCK_OWN));   /* publishes the node's interval: the debit too */
    set_flag(&bank.published);
    return NULL;
}

static void test_lock(void)
{
    uint8_t *page = ftsvm_alloc(3 * PAGE);
    pthread_t t;
    int64_t a, b;

    expect(page != NULL, "ftsvm_alloc");
    bank.a = (int64_t *)page;
    bank.b = (int64_t *)(page + PAGE);
    bank.note = (int64_t *)(page + 2 * PAGE);
    if (ftsvm_node() == 0) {
        *bank.a = 100;
    }
    ok(ftsvm_barrier());
    if (ftsvm_node() == VICTIM) {
        ok(ftsvm_thread_create(&t, sibling, NULL));
        ok(ftsvm_lock_acquire(LOCK_A));
        *bank.a -= 10;                   /* the debit */
        set_flag(&bank.debited);
        wait_flag(&bank.published);
        pthread_join(t, NULL);
        ok(ftsvm_lock_acquire(LOCK_B));  /* FTSVM_FAULT=lock-held:3@1 kills it here */
        *bank.b += 10;                   /* the credit, never made */
        ok(ftsvm_lock_release(LOCK_B));
        ok(ftsvm_lock_release(LOCK_A));
        expect(0, "node %d was to die at its third lock (FTSVM_FAULT=lock-held:3@%d)", VICTIM,
               VICTIM);
    }
    wait_for_victims_death();
    ok(ftsvm_lock_acquire(LOCK_OWN));
    expect(*bank.note == 1, "the sibling's release is not there: the note is %lld",
           (long long)*bank.note);
    ok(ftsvm_lock_release(LOCK_OWN));
    ok(ftsvm_lock_acquire(LOCK_A));
    ok(ftsvm_lock_acquire(LOCK_B));
    a = *bank.a;
    b = *bank.b;
    ok(ftsvm_lock_release(LOCK_B));
    ok(ftsvm_lock_release(LOCK_A));
    expect(a == 90 && b == 0, "A %lld, B %lld: the half-done transfer should be durable "
           "(A 90, B 0)", (long long)a, (long long)b);
    printf("section_node: half-done transfer is durable on node %d: A %lld + B %lld = %lld "
           "of 100\n", ftsvm_node(), (long long)a, (long long)b, (long long)(a + b));
    ok(ftsvm_barrier());
}

/* ---- in ftsvm_for: a chunk's writes count whole or not at all ---- */

static struct {
    int64_t  *a, *b;         /* PAIRS accounts each, on pages of their own */
    uint64_t *hits;          /* per chunk: its runs */
    int       victim_taken;  /* node 1: its first chunk is the one that stops */
    int       others_done;   /* node 1: chunks finished whole */
} pairs;

static void transfer(size_t first, size_t count, void *arg)
{
    size_t k = first;
    int i;

    (void)count;
    (void)arg;
    pairs.a[k] -= 10;                      /* the debit */
    if (ftsvm_node() == VICTIM && !__atomic_exchange_n(&pairs.victim_taken, 1,
                                                       __ATOMIC_SEQ_CST)) {
        for (i = 0; i < 500 && !__atomic_load_n(&pairs.others_done, __ATOMIC_SEQ_CST); i++) {
            nap_ms(10);
        }
        printf("section_node: node %d debited account %zu in a chunk, a sibling's chunk "
               "finished %s, and stops before the credit\n", VICTIM, k,
               __atomic_load_n(&pairs.others_done, __ATOMIC_SEQ_CST) ? "whole" : "(none)");
        fflush(stdout);
        nap_ms(60000);                     /* killed meanwhile (ftsvm-run --kill) */
        expect(0, "node %d was to be killed mid-chunk (ftsvm-run --kill %d@...)", VICTIM,
               VICTIM);
    }
    pairs.b[k] += 10;                      /* the credit */
    pairs.hits[k]++;
    nap_ms(20);
    __atomic_fetch_add(&pairs.others_done, 1, __ATOMIC_SEQ_CST);
}

static void test_for(void)
{
    size_t bytes = (PAIRS * sizeof(int64_t) + PAGE - 1) / PAGE * PAGE, k;
    uint8_t *mem = ftsvm_alloc(3 * bytes);
    int64_t total = 0;

    expect(mem != NULL, "ftsvm_alloc");
    pairs.a = (int64_t *)mem;
    pairs.b = (int64_t *)(mem + bytes);
    pairs.hits = (uint64_t *)(mem + 2 * bytes);
    if (ftsvm_node() == 0) {
        for (k = 0; k < PAIRS; k++) {
            pairs.a[k] = 100;
        }
    }
    ok(ftsvm_barrier());
    ok(ftsvm_for(PAIRS, 1, transfer, NULL));
    for (k = 0; k < PAIRS; k++) {
        expect(pairs.a[k] == 90 && pairs.b[k] == 10 && pairs.hits[k] == 1,
               "pair %zu: A %lld, B %lld, %llu runs: not exactly once", k,
               (long long)pairs.a[k], (long long)pairs.b[k],
               (unsigned long long)pairs.hits[k]);
        total += pairs.a[k] + pairs.b[k];
    }
    printf("section_node: every transfer exactly once on node %d: %d pairs, total %lld of "
           "%d\n", ftsvm_node(), PAIRS, (long long)total, 100 * PAIRS);
    ok(ftsvm_barrier());
}

int main(int argc, char **argv)
{
    ok(ftsvm_init(&argc, &argv));
    expect(argc >= 2, "usage: section_node lock|for");
    expect(ftsvm_nodes() >= 3 && ftsvm_threads() / ftsvm_nodes() >= 2,
           "3 nodes or more, 2 threads each");
    if (strcmp(argv[1], "lock") == 0) {
        test_lock();
    } else if (strcmp(argv[1], "for") == 0) {
        test_for();
    } else {
        expect(0, "unknown test '%s'", argv[1]);
    }
    ok(ftsvm_finalize());
    return 0;
}

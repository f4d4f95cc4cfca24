/*
 * Node program of the ftsvm_for tests (test/multi/test_for.c). Uses only
 * include/ftsvm.h and libftsvm.so, as a user's program does.
 *
 *   for_node items N CHUNK[,CHUNK...] [SLEEP_US [barriers]]
 *       one ftsvm_for over [0, N) per CHUNK size, in that order (each call is
 *       a new generation of the task table). Each item i does mine[i] += i + 1
 *       on a zeroed shared array of the call and all[i] += i + 1 on one
 *       shared by the calls, each chunk c does hits[c] += 1 (an array per
 *       call), and fn checks that it gets whole chunks of the loop. After
 *       each call every node checks that call's arrays (it must see every
 *       chunk's effects once ftsvm_for returned; a faster node may already
 *       be in the next call, hence an array per call); after a barrier, the
 *       lowest live node checks all[i] == calls * (i + 1) and that the chunk
 *       sizes sum to N per call, and prints "for_node: items verified". With
 *       SLEEP_US each chunk sleeps that long (failure tests kill a node
 *       mid-loop; then only the survivors check); with "barriers" an
 *       ftsvm_barrier follows every call (eviction at a barrier). Every view
 *       change the application hears of is printed.
 *   for_node args
 *       bad arguments: chunk 0, fn NULL, ftsvm_for before ftsvm_init, an
 *       ftsvm_for inside a chunk; the library's lock ids are refused; n = 0
 *       runs nothing; ftsvm_for_reduce's bad arguments.
 *   for_node misuse N [SLEEP_US]
 *       every chunk of an ftsvm_for over N items (chunks of 1) calls what
 *       releases or is collective: lock acquire and release, barrier, a
 *       nested ftsvm_for and ftsvm_for_reduce, ftsvm_finalize (each must
 *       give FTSVM_ESTATE) and ftsvm_alloc (NULL); a reduction's fn and
 *       combine try a lock too. Each chunk records what was refused in its
 *       own word and counts its run; every node checks all of them after the
 *       loop ("misuse refused in every chunk"). Another thread of the node,
 *       holding a lock taken before the loop, tries the same calls while the
 *       first chunk of the node runs (all FTSVM_ESTATE), and releases the
 *       lock after the loop ("another thread refused"); it takes a thread
 *       slot, so the loop runs on one thread fewer. With SLEEP_US the chunks
 *       sleep (each node gets chunks; a test can kill a node mid-loop).
 *
 * Exit 0 when every check held, 10 with a message otherwise.
 */
#define NODE_NAME "for_node"
#include "api_check.h"
#include "ftsvm.h"

#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define MAX_CALLS 8
/* the first lock id the library keeps for itself (lib/api/tasks.h) */
#define LIBRARY_LOCK_FIRST ((1u << 24) - 16)


typedef struct loop {
    size_t    n, chunk;
    uint64_t *mine;      /* n items, shared, this call's */
    uint64_t *all;       /* n items, shared by every call */
    uint64_t *hits;      /* one word per chunk, shared */
    long      sleep_us;
} loop_t;

static void item_chunk(size_t first, size_t count, void *arg)
{
    loop_t *loop = arg;
    size_t i, want = loop->n - first < loop->chunk ? loop->n - first : loop->chunk;

    expect(first % loop->chunk == 0 && first < loop->n && count == want,
           "fn got [%zu, +%zu) of a loop of %zu in chunks of %zu", first, count, loop->n,
           loop->chunk);
    for (i = first; i < first + count; i++) {
        loop->mine[i] += i + 1;
        loop->all[i] += i + 1;
    }
    loop->hits[first / loop->chunk]++;
    if (loop->sleep_us > 0) {
        struct timespec ts = { loop->sleep_us / 1000000, (loop->sleep_us % 1000000) * 1000 };

        nanosleep(&ts, NULL);
    }
}

static int lowest_live_node(void)
{
    int j;

    for (j = 0; j < ftsvm_nodes(); j++) {
        if (ftsvm_alive(j) == 1) {
            return j;
        }
    }
    return -1;
}

static void *shared(size_t bytes)
{
    void *p = ftsvm_alloc(bytes);

    expect(p != NULL, "ftsvm_alloc of %zu bytes", bytes);
    return p;   /* fresh collective memory reads as zeros */
}

static void test_items(int argc, char **argv)
{
    loop_t loops[MAX_CALLS];
    size_t n, nchunks, i, c, sum;
    int calls = 0, k, barriers;
    long sleep_us;
    uint64_t *all;
    char *list, *tok, *save = NULL;

    expect(argc >= 4, "usage: for_node items N CHUNK[,CHUNK...] [SLEEP_US [barriers]]");
    n = strtoull(argv[2], NULL, 10);
    sleep_us = argc > 4 ? atol(argv[4]) : 0;
    barriers = argc > 5 && strcmp(argv[5], "barriers") == 0;   /* one after each call */
    all = n > 0 ? shared(n * sizeof(uint64_t)) : NULL;
    list = strdup(argv[3]);
    for (tok = strtok_r(list, ",", &save); tok != NULL; tok = strtok_r(NULL, ",", &save)) {
        expect(calls < MAX_CALLS, "at most %d calls", MAX_CALLS);
        loops[calls].n = n;
        loops[calls].chunk = strtoull(tok, NULL, 10);
        loops[calls].mine = n > 0 ? shared(n * sizeof(uint64_t)) : NULL;
        loops[calls].all = all;
        loops[calls].sleep_us = sleep_us;
        nchunks = n / loops[calls].chunk + (n % loops[calls].chunk != 0);
        loops[calls].hits = shared((nchunks + 1) * sizeof(uint64_t));
        calls++;
    }
    free(list);
    ok(ftsvm_barrier());   /* nobody writes before everyone allocated */

    for (k = 0; k < calls; k++) {
        loop_t *loop = &loops[k];

        ok(ftsvm_for(loop->n, loop->chunk, item_chunk, loop));
        if (barriers) {
            ok(ftsvm_barrier());
        }
        /* ftsvm_for returned: every chunk's writes are visible here */
        nchunks = n / loop->chunk + (n % loop->chunk != 0);
        for (c = 0; c < nchunks; c++) {
            expect(loop->hits[c] == 1, "call %d: chunk %zu ran %llu times", k, c,
                   (unsigned long long)loop->hits[c]);
        }
        for (i = 0; i < n; i++) {
            expect(loop->mine[i] == i + 1, "call %d: item %zu is %llu, not %zu", k, i,
                   (unsigned long long)loop->mine[i], i + 1);
        }
    }
    ok(ftsvm_barrier());
    if (ftsvm_node() == lowest_live_node()) {
        for (i = 0; i < n; i++) {
            expect(all[i] == (uint64_t)calls * (i + 1), "item %zu is %llu after %d calls", i,
                   (unsigned long long)all[i], calls);
        }
        for (k = 0; k < calls; k++) {
            nchunks = n / loops[k].chunk + (n % loops[k].chunk != 0);
            for (c = 0, sum = 0; c < nchunks; c++) {
                sum += loops[k].hits[c] * (c + 1 < nchunks ? loops[k].chunk
                                                           : n - c * loops[k].chunk);
            }
            expect(sum == n, "call %d: chunks cover %zu items, not %zu", k, sum, n);
        }
        printf("for_node: items verified on node %d (%zu items, %d calls, %d nodes x %d "
               "threads)\n", ftsvm_node(), n, calls, ftsvm_nodes(),
               ftsvm_threads() / ftsvm_nodes());
    }
}

static int runs_of_empty;

static void count_runs(size_t first, size_t count, void *arg)
{
    (void)first;
    (void)count;
    (void)arg;
    runs_of_empty++;
}

static int nested_wrong;

/* fn must not nest an ftsvm_for: it is refused */
static void nest(size_t first, size_t count, void *arg)
{
    int status = ftsvm_for(1, 1, count_runs, NULL);

    (void)first;
    (void)count;
    (void)arg;
    if (status != FTSVM_ESTATE) {
        __atomic_store_n(&nested_wrong, status == FTSVM_OK ? 1 : status, __ATOMIC_RELAXED);
    }
}

static void no_partial(size_t first, size_t count, void *arg, void *partial)
{
    (void)first;
    (void)count;
    (void)arg;
    (void)partial;
}

static void test_args(void)
{
    int64_t sum = 0;

    unsigned last_user_lock = LIBRARY_LOCK_FIRST - 1;

    expect(ftsvm_for(10, 1, NULL, NULL) == FTSVM_EINVAL, "fn NULL");
    expect(ftsvm_for(10, 0, count_runs, NULL) == FTSVM_EINVAL, "chunk 0");
    expect(ftsvm_for(0, 0, count_runs, NULL) == FTSVM_EINVAL, "chunk 0 of nothing");
    ok(ftsvm_for(0, 4, count_runs, NULL));
    expect(runs_of_empty == 0, "fn ran %d times over nothing", runs_of_empty);
    expect(ftsvm_lock_acquire(LIBRARY_LOCK_FIRST) == FTSVM_ERANGE, "library lock taken");
    expect(ftsvm_lock_release(LIBRARY_LOCK_FIRST) == FTSVM_ERANGE, "library lock released");
    expect(ftsvm_lock_acquire(LIBRARY_LOCK_FIRST + 15) == FTSVM_ERANGE, "library lock taken");
    ok(ftsvm_lock_acquire(last_user_lock));
    ok(ftsvm_lock_release(last_user_lock));
    ok(ftsvm_for(4, 1, nest, NULL));
    expect(nested_wrong == 0, "a nested ftsvm_for gave %d, not FTSVM_ESTATE", nested_wrong);
    expect(ftsvm_for_reduce(4, 1, NULL, NULL, &sum, 8, ftsvm_sum_int64) == FTSVM_EINVAL,
           "reduce: fn NULL");
    expect(ftsvm_for_reduce(4, 0, no_partial, NULL, &sum, 8, ftsvm_sum_int64) == FTSVM_EINVAL,
           "reduce: chunk 0");
    expect(ftsvm_for_reduce(4, 1, no_partial, NULL, NULL, 8, ftsvm_sum_int64) == FTSVM_EINVAL,
           "reduce: result NULL");
    expect(ftsvm_for_reduce(4, 1, no_partial, NULL, &sum, 8, NULL) == FTSVM_EINVAL,
           "reduce: combine NULL");
    expect(ftsvm_for_reduce(4, 1, no_partial, NULL, &sum, 0, ftsvm_sum_int64) == FTSVM_EINVAL,
           "reduce: size 0");
    expect(ftsvm_for_reduce(4, 1, no_partial, NULL, &sum, 16 * 1024 + 1, ftsvm_sum_int64) ==
           FTSVM_EINVAL, "reduce: size over 16 KiB");
    sum = 42;
    ok(ftsvm_for_reduce(0, 1, no_partial, NULL, &sum, 8, ftsvm_sum_int64));
    expect(sum == 42, "a reduction over nothing left %lld, not the identity", (long long)sum);
    /* a loop still works after the refusals */
    ok(ftsvm_for(5, 2, count_runs, NULL));
    ok(ftsvm_barrier());
    printf("for_node %d: bad arguments refused\n", ftsvm_node());
}

/* ---- misuse: what a chunk, or another thread during a loop, may not call ---- */

enum { REFUSED_ACQUIRE = 1, REFUSED_RELEASE = 2, REFUSED_BARRIER = 4, REFUSED_FOR = 8,
       REFUSED_REDUCE = 16, REFUSED_FINALIZE = 32, REFUSED_ALLOC = 64, REFUSED_ALL = 127 };

typedef struct misuse {
    uint64_t *refused;    /* per chunk: the REFUSED_* bits it saw */
    uint64_t *hits;       /* per chunk: its runs */
    long      sleep_us;
    /* the other thread's turn: posted by the first chunk run on this node */
    pthread_mutex_t mutex;
    pthread_cond_t  cond;
    int             holding, go, done, first_taken, loop_over;
    unsigned        other_refused;
} misuse_t;

static misuse_t misuse = { .mutex = PTHREAD_MUTEX_INITIALIZER, .cond = PTHREAD_COND_INITIALIZER };

static void refuse_partial(size_t first, size_t count, void *arg, void *partial)
{
    (void)first;
    (void)count;
    (void)arg;
    *(uint64_t *)partial = ftsvm_lock_acquire(3) == FTSVM_ESTATE;
}

static void refuse_combine(void *into, const void *from, size_t size, void *arg)
{
    (void)size;
    (void)arg;
    *(uint64_t *)into += *(const uint64_t *)from + (ftsvm_lock_acquire(3) == FTSVM_ESTATE);
}

static unsigned refused_in_reduce(void)
{
    uint64_t both = 0;
    int status = ftsvm_for_reduce(2, 1, refuse_partial, NULL, &both, sizeof(both),
                                  refuse_combine);

    return status == FTSVM_ESTATE ? REFUSED_REDUCE : 0;
}

/* the calls a chunk or a sibling thread must not make, as REFUSED_* bits */
static unsigned try_releasing_calls(void)
{
    unsigned bits = 0;

    bits |= ftsvm_lock_acquire(1) == FTSVM_ESTATE ? REFUSED_ACQUIRE : 0;
    bits |= ftsvm_lock_release(1) == FTSVM_ESTATE ? REFUSED_RELEASE : 0;
    bits |= ftsvm_barrier() == FTSVM_ESTATE ? REFUSED_BARRIER : 0;
    bits |= ftsvm_for(1, 1, count_runs, NULL) == FTSVM_ESTATE ? REFUSED_FOR : 0;
    bits |= refused_in_reduce();
    bits |= ftsvm_finalize() == FTSVM_ESTATE ? REFUSED_FINALIZE : 0;
    return bits;
}

/* the lock the other thread holds across the loop, one per node */
static unsigned held_lock(void)
{
    return 100u + (unsigned)ftsvm_node();
}

static void *other_thread(void *arg)
{
    (void)arg;
    ok(ftsvm_lock_acquire(held_lock()));   /* held across the loop */
    pthread_mutex_lock(&misuse.mutex);
    misuse.holding = 1;
    pthread_cond_broadcast(&misuse.cond);
    while (!misuse.go) {
        pthread_cond_wait(&misuse.cond, &misuse.mutex);
    }
    pthread_mutex_unlock(&misuse.mutex);
    if (!misuse.loop_over) {
        /* the loop runs on this node now */
        pthread_mutex_unlock(&misuse.mutex);
        misuse.other_refused = try_releasing_calls() & ~REFUSED_RELEASE;
        misuse.other_refused |= ftsvm_lock_release(held_lock()) == FTSVM_ESTATE ?
                                REFUSED_RELEASE : 0;
        pthread_mutex_lock(&misuse.mutex);
        misuse.done = 1;
        pthread_cond_broadcast(&misuse.cond);
        while (!misuse.loop_over) {
            pthread_cond_wait(&misuse.cond, &misuse.mutex);
        }
    }
    pthread_mutex_unlock(&misuse.mutex);
    ok(ftsvm_lock_release(held_lock()));   /* the lock it kept: released after the loop */
    return NULL;
}

/* while the first chunk of this node runs, the other thread tries its calls */
static void let_other_thread_try(void)
{
    pthread_mutex_lock(&misuse.mutex);
    if (!misuse.first_taken && misuse.holding) {
        misuse.first_taken = 1;
        misuse.go = 1;
        pthread_cond_broadcast(&misuse.cond);
        while (!misuse.done) {
            pthread_cond_wait(&misuse.cond, &misuse.mutex);
        }
    }
    pthread_mutex_unlock(&misuse.mutex);
}

static void misuse_chunk(size_t first, size_t count, void *arg)
{
    unsigned bits = try_releasing_calls();

    (void)count;
    (void)arg;
    bits |= ftsvm_alloc(64) == NULL ? REFUSED_ALLOC : 0;
    misuse.refused[first] = bits;
    misuse.hits[first]++;
    let_other_thread_try();
    if (misuse.sleep_us > 0) {
        struct timespec ts = { misuse.sleep_us / 1000000, (misuse.sleep_us % 1000000) * 1000 };

        nanosleep(&ts, NULL);
    }
}

static void test_misuse(int argc, char **argv)
{
    pthread_t other;
    uint64_t refusals = 0;
    unsigned want;
    size_t n, c;

    expect(argc >= 3, "usage: for_node misuse N [SLEEP_US]");
    n = strtoull(argv[2], NULL, 10);
    misuse.sleep_us = argc > 3 ? atol(argv[3]) : 0;
    misuse.refused = shared(n * sizeof(uint64_t));
    misuse.hits = shared(n * sizeof(uint64_t));
    ok(ftsvm_barrier());
    ok(ftsvm_thread_create(&other, other_thread, NULL));
    pthread_mutex_lock(&misuse.mutex);
    while (!misuse.holding) {
        pthread_cond_wait(&misuse.cond, &misuse.mutex);
    }
    pthread_mutex_unlock(&misuse.mutex);
    ok(ftsvm_for(n, 1, misuse_chunk, NULL));
    for (c = 0; c < n; c++) {
        expect(misuse.hits[c] == 1, "chunk %zu ran %llu times", c,
               (unsigned long long)misuse.hits[c]);
        expect(misuse.refused[c] == REFUSED_ALL, "chunk %zu: refused 0x%llx of 0x%x", c,
               (unsigned long long)misuse.refused[c], REFUSED_ALL);
    }
    pthread_mutex_lock(&misuse.mutex);
    misuse.loop_over = 1;   /* if no chunk ran here, the other thread tries nothing */
    misuse.go = 1;
    pthread_cond_broadcast(&misuse.cond);
    pthread_mutex_unlock(&misuse.mutex);
    pthread_join(other, NULL);
    if (misuse.first_taken) {
        want = REFUSED_ALL & ~REFUSED_ALLOC;
        expect(misuse.other_refused == want, "the other thread: refused 0x%x of 0x%x",
               misuse.other_refused, want);
        printf("for_node %d: another thread refused\n", ftsvm_node());
    }
    /* the lock it kept across the loop was released after it: it is free */
    ok(ftsvm_lock_acquire(held_lock()));
    ok(ftsvm_lock_release(held_lock()));
    /* a reduction's fn and combine are refused too: each partial is 1 when
     * its fn was, and each combine adds 1 when it was */
    ok(ftsvm_for_reduce(n, 1, refuse_partial, NULL, &refusals, sizeof(refusals),
                        refuse_combine));
    expect(refusals == 2 * n, "a reduction's fn and combine: %llu refusals of %zu",
           (unsigned long long)refusals, 2 * n);
    printf("for_node %d: misuse refused in every chunk\n", ftsvm_node());
    ok(ftsvm_barrier());
}

/* what the application hears of view changes (spares never come up here) */
static void on_view(unsigned view, int removed_node, void *arg)
{
    (void)arg;
    printf("for_node %d: view %u: the application lost node %d\n", ftsvm_node(), view,
           removed_node);
}

int main(int argc, char **argv)
{
    expect(argc >= 2, "usage: for_node items|args|misuse ...");
    expect(ftsvm_for(4, 1, count_runs, NULL) == FTSVM_ESTATE, "ftsvm_for before ftsvm_init");
    ok(ftsvm_init(&argc, &argv));
    ok(ftsvm_on_view_change(on_view, NULL));
    if (strcmp(argv[1], "items") == 0) {
        test_items(argc, argv);
    } else if (strcmp(argv[1], "args") == 0) {
        test_args();
    } else if (strcmp(argv[1], "misuse") == 0) {
        test_misuse(argc, argv);
    } else {
        expect(0, "unknown test '%s'", argv[1]);
    }
    ok(ftsvm_finalize());
    return 0;
}

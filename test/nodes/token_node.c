/*
 * Node program of the token tests (test/multi/test_tokens.c): guarantees 2
 * and 3 of DESIGN.md section 1 checked at the homes themselves.
 *
 *   token_node INTERVALS PAGES [private|fill]
 *
 * Every thread of every node runs INTERVALS intervals. In interval k thread
 * t acquires a lock (they rotate, so that each acquire brings other
 * threads' write notices and pages are fetched again; with "private" each
 * thread takes its own, so a node learns of another's writes only at
 * barriers), writes its token
 * (t + 1) << 32 | k into its own word of each of PAGES consecutive pages
 * (with "fill", into every word of its own band of 4096 / threads bytes, so
 * that an interval is as large as its pages: megabytes)
 * (whose homes are spread over every node pair) and of its node's own
 * page, which no other node writes but every other node reads in each
 * interval (so that it stays cached there), and releases. Around the
 * release it logs, with one write(2) each so that a line is out before the
 * next step (the lines of one node keep their order):
 *
 *   tok writing T K     before the first token of interval K is written
 *   tok calling T K     before the release of interval K is called
 *   tok released T K    after it returned
 *   tok barrier T K     before the barrier that ends every eighth interval
 *   tok passed T K      after it
 *
 * An interval belongs to the node, not to a thread (DESIGN.md section 4): a
 * release or barrier of T's sibling publishes whatever T has written by
 * then, so T's token K may reach the homes before T calls its own release,
 * and on some of the pages only. After the last interval the survivors
 * meet in a barrier, and the lowest live node reads each token page from
 * every live home of it, below the API (hlrc_home_read), and prints
 *
 *   tok seen T HI LO    the pages hold interval HI or LO of T (LO <= HI <= LO + 1)
 *
 * or fails if the two homes of a page disagree in any word (a release that
 * reached one home and not the other), if what it reads through shared
 * memory is not what the homes hold (a stale copy: a completed release of
 * the failed node never acquired), or if the pages span more than two
 * intervals of a thread. The test compares HI and LO with the logs of a
 * failed node (test_tokens.c). A live thread must show INTERVALS everywhere.
 *
 * Exit 0 when every check held, 10 with a message otherwise.
 */
#define NODE_NAME "token_node"
#include "api_check.h"
#include "hlrc/hlrc_int.h"

#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define BARRIER_EVERY 8
#define MAX_THREADS   64

static long      intervals;
static long      npages;      /* pages every thread writes */
static long      nall;        /* and then one page per node, which only its threads write */
static int       per_node;
static int       private_locks;   /* each thread its own lock: nobody acquires another node's */
static size_t    band;        /* words of a page that each thread writes */
static uint64_t *tokens;      /* nall pages; thread t's word at t * 8 of each */

/* does thread t write page p? */
static int writes_page(int thread, long p)
{
    return p < npages || p - npages == thread / per_node;
}

static uint64_t token_of(int thread, long k)
{
    return ((uint64_t)(thread + 1) << 32) | (uint64_t)k;
}

/* one line, out before the caller goes on (the node may be killed next) */
static void token_log(const char *what, int thread, long k)
{
    char line[64];
    int len = snprintf(line, sizeof(line), "tok %s %d %ld\n", what, thread, k);

    expect(write(STDERR_FILENO, line, (size_t)len) == len, "write to stderr: %m");
}

static void run_intervals(void)
{
    int thread = ftsvm_thread_id(), threads = ftsvm_threads();
    size_t words = HLRC_PAGE_SIZE / sizeof(uint64_t);
    volatile uint64_t sum = 0;
    long k, p;

    for (k = 1; k <= intervals; k++) {
        unsigned lock = private_locks ? (unsigned)thread : (unsigned)((thread + k) % threads);

        ok(ftsvm_lock_acquire(lock));
        token_log("writing", thread, k);
        for (p = 0; p < nall; p++) {
            if (writes_page(thread, p)) {
                size_t w;

                for (w = 0; w < band; w++) {
                    tokens[(size_t)p * words + (size_t)thread * band + w] = token_of(thread, k);
                }
            } else {
                sum += tokens[(size_t)p * words];   /* other nodes' pages stay cached here */
            }
        }
        token_log("calling", thread, k);
        ok(ftsvm_lock_release(lock));
        token_log("released", thread, k);
        if (k % BARRIER_EVERY == 0) {
            token_log("barrier", thread, k);
            ok(ftsvm_barrier());
            token_log("passed", thread, k);
        }
    }
    (void)sum;
}

static void *worker(void *arg)
{
    (void)arg;
    run_intervals();
    return NULL;
}

/* thread t's interval in the copy, or -1 when a word of its band is no
 * token of t or the band holds more than one interval (a torn page) */
static long interval_in(const uint8_t *copy, int thread)
{
    uint64_t first, word;
    size_t w;

    memcpy(&first, copy + (size_t)thread * band * sizeof(first), sizeof(first));
    for (w = 1; w < band; w++) {
        memcpy(&word, copy + ((size_t)thread * band + w) * sizeof(word), sizeof(word));
        if (word != first) {
            return -1;
        }
    }
    if (first == 0) {
        return 0;
    }
    return (first >> 32) == (uint64_t)(thread + 1) ? (long)(first & 0xffffffffu) : -1;
}

/* every live home of every token page: the two homes of a page must agree
 * word for word (prev_copy: the copy read before, at prev_home); hi[t] and
 * lo[t] are the highest and lowest interval of t on the pages */
static void check_homes(long *hi, long *lo)
{
    static uint64_t meta[2 * 64];
    static uint8_t copy[HLRC_PAGE_SIZE], prev_copy[HLRC_PAGE_SIZE];
    int threads = ftsvm_threads(), which, t, copies = 0, prev_home;
    size_t first = (size_t)((uint8_t *)tokens - hlrc.base) / HLRC_PAGE_SIZE;
    long p;

    for (t = 0; t < threads; t++) {
        hi[t] = -1;
        lo[t] = 1L << 40;
    }
    for (p = 0; p < nall; p++) {
        prev_home = -1;
        for (which = REPLICA_PRIMARY; which <= REPLICA_SECONDARY; which++) {
            int home = hlrc_home(first + (size_t)p, which);

            if (home < 0 || ftsvm_alive(home) != 1) {
                continue;
            }
            ok(hlrc_home_read(first + (size_t)p, which, meta, copy));
            copies++;
            for (t = 0; t < threads; t++) {
                long k = interval_in(copy, t);

                expect(k >= 0 && (k == 0 || writes_page(t, p)),
                       "page %ld at node %d: thread %d's words are no token of it, or not "
                       "all of one interval", p, home, t);
                expect(prev_home < 0 || k == interval_in(prev_copy, t),
                       "thread %d torn: interval %ld in page %ld at node %d, %ld at node %d",
                       t, k, p, home, interval_in(prev_copy, t), prev_home);
                if (writes_page(t, p)) {
                    hi[t] = k > hi[t] ? k : hi[t];
                    lo[t] = k < lo[t] ? k : lo[t];
                }
            }
            memcpy(prev_copy, copy, HLRC_PAGE_SIZE);
            prev_home = home;
        }
        /* what this node reads through shared memory is the homes' */
        for (t = 0; t < threads && prev_home >= 0; t++) {
            long mine = interval_in((const uint8_t *)tokens + (size_t)p * HLRC_PAGE_SIZE, t);

            expect(mine == interval_in(prev_copy, t),
                   "node %d reads interval %ld of thread %d in page %ld, the homes hold %ld",
                   ftsvm_node(), mine, t, p, interval_in(prev_copy, t));
        }
    }
    expect(copies >= nall, "%d home copies of %ld pages", copies, nall);
    for (t = 0; t < threads; t++) {
        expect(hi[t] - lo[t] <= 1, "thread %d: the pages hold intervals %ld to %ld", t,
               lo[t], hi[t]);
    }
}

int main(int argc, char **argv)
{
    pthread_t extra[MAX_THREADS];
    long hi[MAX_THREADS], lo[MAX_THREADS];
    int i, t, lowest;

    ok(ftsvm_init(&argc, &argv));
    expect(argc == 3 || (argc == 4 && (strcmp(argv[3], "private") == 0 ||
                                       strcmp(argv[3], "fill") == 0)),
           "usage: token_node INTERVALS PAGES [private|fill]");
    private_locks = (argc == 4 && strcmp(argv[3], "private") == 0);
    intervals = strtol(argv[1], NULL, 10);
    npages = strtol(argv[2], NULL, 10);
    expect(intervals > 0 && intervals < (1L << 31) && npages > 0, "bad arguments");
    expect(ftsvm_threads() <= MAX_THREADS && (size_t)ftsvm_threads() * 8 <= HLRC_PAGE_SIZE,
           "too many threads");
    per_node = ftsvm_threads() / ftsvm_nodes();
    band = (argc == 4 && strcmp(argv[3], "fill") == 0)
               ? HLRC_PAGE_SIZE / sizeof(uint64_t) / (size_t)ftsvm_threads()
               : 1;
    nall = npages + ftsvm_nodes();
    tokens = ftsvm_alloc((size_t)nall * HLRC_PAGE_SIZE);
    expect(tokens != NULL && ((uint8_t *)tokens - hlrc.base) % HLRC_PAGE_SIZE == 0,
           "ftsvm_alloc of %ld pages", nall);
    ok(ftsvm_barrier());

    for (i = 0; i < per_node - 1; i++) {
        ok(ftsvm_thread_create(&extra[i], worker, NULL));
    }
    run_intervals();
    for (i = 0; i < per_node - 1; i++) {
        expect(pthread_join(extra[i], NULL) == 0, "pthread_join");
    }
    ok(ftsvm_barrier());

    for (lowest = 0; lowest < ftsvm_nodes() && ftsvm_alive(lowest) != 1; lowest++) {
    }
    if (lowest == ftsvm_node()) {
        check_homes(hi, lo);
        for (t = 0; t < ftsvm_threads(); t++) {
            printf("tok seen %d %ld %ld\n", t, hi[t], lo[t]);
            expect(ftsvm_alive(t / per_node) != 1 || (hi[t] == intervals && lo[t] == intervals),
                   "live thread %d: intervals %ld to %ld at the homes, %ld released", t, lo[t],
                   hi[t], intervals);
        }
        fflush(stdout);
    }
    ok(ftsvm_barrier());
    ok(ftsvm_finalize());
    return 0;
}

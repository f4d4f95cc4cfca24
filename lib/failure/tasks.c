/*
 * ftsvm_for (DESIGN.md section 8): a parallel loop whose chunks are claimed
 * and committed in a task table in shared memory, under the library's own
 * lock TASKS_LOCK_FIRST, so that every chunk takes effect exactly once even
 * when a node dies in the middle (guarantee 3 of section 1).
 *
 * The table. One collective ftsvm_alloc at the first call, reused by every
 * later call: a header (the generation it describes, the cursor of the next
 * never-claimed chunk, how many chunks are committed) and TASKS_TABLE_CHUNKS
 * chunk words  generation << 32 | state << 24 | owner node.  A loop of more
 * chunks runs as consecutive windows of TASKS_TABLE_CHUNKS chunks. Each
 * window has a generation of its own: every node counts the windows of
 * every call, and since every live node makes the same calls, they agree
 * on the numbers with no message. A word or a header of an older generation
 * means "free", so the table is never reset and no barrier is needed. A
 * header of a newer generation means that someone saw this window complete.
 *
 * Exactly once. A node claims a batch of up to T chunks (T threads per
 * node) inside one critical section of the lock, runs the batch on its T
 * threads, and commits it in the next critical section, which also claims
 * the following batch. Nothing on this node releases between the two (fn
 * must not take locks or barriers; the caller runs no other releasing
 * thread meanwhile), so the chunks' writes and their commit marks are in
 * the same interval of the node: after a failure of the node, either both
 * are visible (the chunk is done) or neither (the chunk is still "claimed"
 * by a node that is no longer alive, which is as good as free, and a
 * survivor runs it again on the memory as it was before).
 *
 * The node returns when it sees, under the lock, every chunk of the last
 * window committed; by release consistency it then sees every chunk's
 * writes too.
 */
#include "tasks.h"
#include "common/log.h"
#include "common/stats.h"
#include "ftsvm.h"
#include "locks/locks.h"
#include "replica/replica.h"
#include "runtime.h"

#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* chunks per window: 32 KiB of chunk words */
#define TASKS_TABLE_CHUNKS 4096u
#define TASKS_HEADER_WORDS 8u     /* generation, cursor, committed, spare (one line) */
#define TASKS_MAX_THREADS  256

enum { HDR_GENERATION, HDR_CURSOR, HDR_COMMITTED };

enum { CHUNK_CLAIMED = 1, CHUNK_COMMITTED = 2 };

#define WORD(_gen, _state, _owner) \
    (((uint64_t)(_gen) << 32) | ((uint64_t)(_state) << 24) | (uint64_t)(_owner))
#define WORD_GEN(_w)   ((uint32_t)((_w) >> 32))
#define WORD_STATE(_w) ((unsigned)(((_w) >> 24) & 0xffu))
#define WORD_OWNER(_w) ((int)((_w) & 0xffffffu))

/* backoff while the chunks left are claimed by live nodes */
#define BACKOFF_FIRST_NS  20000L
#define BACKOFF_MAX_NS    1000000L

enum { TASKS_STAT_CALLS, TASKS_STAT_WINDOWS, TASKS_STAT_CHUNKS, TASKS_STAT_RERUNS,
       TASKS_STAT_SECTIONS, TASKS_STAT_WAITS, TASKS_STAT_STALE, TASKS_STAT_COUNT };

/* set on the threads that run an ftsvm_for's chunks (fn must not nest one) */
static __thread int in_loop;

static struct {
    pthread_mutex_t    mutex;        /* one ftsvm_for at a time on this node */
    volatile uint64_t *table;        /* shared: header, then the chunk words */
    uint32_t           generation;   /* of the last window this node ran */
    stats_group_t      stats;
    int                registered;
} tasks = { .mutex = PTHREAD_MUTEX_INITIALIZER };

/* ---- one call: the loop, the window being worked on, the node's batch ---- */

typedef struct tasks_batch {
    size_t   index[TASKS_MAX_THREADS];   /* chunk index in the window */
    unsigned count;
    uint32_t generation;                 /* of the window the batch came from */
    size_t   window_first;               /* its first chunk in the loop */
} tasks_batch_t;

typedef struct tasks_call {
    size_t   n, chunk, nchunks;
    void   (*fn)(size_t first, size_t count, void *arg);
    void    *arg;
    int      node, threads;

    /* the batch the node's threads run now; under `mutex` */
    pthread_mutex_t mutex;
    pthread_cond_t  work_cond;    /* helpers: a batch is posted, or quit */
    pthread_cond_t  done_cond;    /* the caller: the batch has run */
    tasks_batch_t   batch;
    unsigned        round;        /* bumped for each posted batch */
    unsigned        next;         /* next chunk of the batch to hand out */
    unsigned        finished;     /* chunks of the batch that have run */
    int             quit;
} tasks_call_t;

static void run_chunk(tasks_call_t *call, size_t in_window)
{
    size_t index = call->batch.window_first + in_window;
    size_t first = index * call->chunk;
    size_t count = (call->n - first < call->chunk) ? call->n - first : call->chunk;

    call->fn(first, count, call->arg);
}

/* Hand out the posted batch's chunks until none is left; the calling thread
 * holds call->mutex and holds it again on return. */
static void run_posted(tasks_call_t *call)
{
    while (call->next < call->batch.count) {
        size_t in_window = call->batch.index[call->next++];

        pthread_mutex_unlock(&call->mutex);
        run_chunk(call, in_window);
        pthread_mutex_lock(&call->mutex);
        if (++call->finished == call->batch.count) {
            pthread_cond_signal(&call->done_cond);
        }
    }
}

static void *helper_main(void *arg)
{
    tasks_call_t *call = arg;
    unsigned seen = 0;

    in_loop = 1;
    pthread_mutex_lock(&call->mutex);
    for (;;) {
        while (!call->quit && call->round == seen) {
            pthread_cond_wait(&call->work_cond, &call->mutex);
        }
        if (call->quit) {
            break;
        }
        seen = call->round;
        run_posted(call);
    }
    pthread_mutex_unlock(&call->mutex);
    return NULL;
}

/* The batch runs on every thread of the node, the caller's included;
 * returns when every chunk of it has run. */
static void run_batch(tasks_call_t *call)
{
    pthread_mutex_lock(&call->mutex);
    call->round++;
    call->next = 0;
    call->finished = 0;
    pthread_cond_broadcast(&call->work_cond);
    run_posted(call);
    while (call->finished < call->batch.count) {
        pthread_cond_wait(&call->done_cond, &call->mutex);
    }
    pthread_mutex_unlock(&call->mutex);
    stats_add(&tasks.stats, TASKS_STAT_CHUNKS, call->batch.count);
}

/* ---- the table, always under the lock ---- */

static volatile uint64_t *chunk_word(size_t in_window)
{
    return tasks.table + TASKS_HEADER_WORDS + in_window;
}

/* Mark the batch committed. A word that no longer names this node as the
 * claimer means that another node took this node for failed and ran the
 * chunk again: this node's effects are then doubled, which only a fenced
 * node (that never gets here) avoids; logged and counted. */
static void commit_batch(tasks_call_t *call)
{
    tasks_batch_t *b = &call->batch;
    volatile uint64_t *hdr = tasks.table;
    uint64_t mine = WORD(b->generation, CHUNK_CLAIMED, call->node);
    unsigned i, committed = 0;

    for (i = 0; i < b->count; i++) {
        volatile uint64_t *w = chunk_word(b->index[i]);

        if (*w != mine) {
            ftsvm_error("ftsvm_for: chunk %zu was taken from this node meanwhile (word "
                        "0x%llx): was this node thought failed?", b->window_first + b->index[i],
                        (unsigned long long)*w);
            stats_add(&tasks.stats, TASKS_STAT_STALE, 1);
            continue;
        }
        *w = WORD(b->generation, CHUNK_COMMITTED, call->node);
        committed++;
    }
    if (hdr[HDR_GENERATION] == b->generation) {
        hdr[HDR_COMMITTED] += committed;
    }
    b->count = 0;
}

/* 1 when a node other than this one is known to have failed */
static int some_node_failed(int node)
{
    int j, nodes = ftsvm_nodes();

    for (j = 0; j < nodes; j++) {
        if (j != node && ftsvm_alive(j) == 0) {
            return 1;
        }
    }
    return 0;
}

typedef enum { CLAIM_GOT, CLAIM_WAIT, CLAIM_DONE } claim_t;

/* Claim up to call->threads chunks of the window of `generation` (its first
 * chunk is `window_first`, it has `count` chunks) into the batch. */
static claim_t claim_batch(tasks_call_t *call, uint32_t generation, size_t window_first,
                           size_t count)
{
    volatile uint64_t *hdr = tasks.table;
    tasks_batch_t *b = &call->batch;
    uint64_t cursor, w;
    size_t i;

    if (hdr[HDR_GENERATION] > generation) {
        return CLAIM_DONE;        /* someone saw it complete and went on */
    }
    if (hdr[HDR_GENERATION] < generation) {
        /* the first node at this window; the previous one is complete */
        hdr[HDR_GENERATION] = generation;
        hdr[HDR_CURSOR]     = 0;
        hdr[HDR_COMMITTED]  = 0;
    }
    if (hdr[HDR_COMMITTED] >= count) {
        return CLAIM_DONE;
    }
    b->count        = 0;
    b->generation   = generation;
    b->window_first = window_first;
    cursor = hdr[HDR_CURSOR];
    while (cursor < count && b->count < (unsigned)call->threads) {
        *chunk_word(cursor) = WORD(generation, CHUNK_CLAIMED, call->node);
        b->index[b->count++] = cursor++;
    }
    hdr[HDR_CURSOR] = cursor;
    if (b->count == 0 && some_node_failed(call->node)) {
        /* every chunk was handed out: take back those of failed nodes */
        for (i = 0; i < cursor && b->count < (unsigned)call->threads; i++) {
            w = *chunk_word(i);
            if (WORD_GEN(w) == generation && WORD_STATE(w) == CHUNK_CLAIMED &&
                WORD_OWNER(w) != call->node && ftsvm_alive(WORD_OWNER(w)) == 0) {
                ftsvm_info("ftsvm_for: chunk %zu, claimed by failed node %d, runs again here",
                           window_first + i, WORD_OWNER(w));
                *chunk_word(i) = WORD(generation, CHUNK_CLAIMED, call->node);
                b->index[b->count++] = i;
                stats_add(&tasks.stats, TASKS_STAT_RERUNS, 1);
            }
        }
    }
    return b->count > 0 ? CLAIM_GOT : CLAIM_WAIT;
}

/* ---- the loop ---- */

static void backoff(long *ns)
{
    struct timespec ts = { .tv_sec = 0, .tv_nsec = *ns };

    stats_add(&tasks.stats, TASKS_STAT_WAITS, 1);
    nanosleep(&ts, NULL);
    *ns = (*ns * 2 > BACKOFF_MAX_NS) ? BACKOFF_MAX_NS : *ns * 2;
}

/* A peer that failed under the request (FTSVM_EPEER) is retried for a while:
 * recovery repairs the lock's queue and homes. */
#define LOCK_RETRIES 200

static int tasks_lock(void)
{
    long wait_ns = BACKOFF_FIRST_NS;
    int status, tries = 0;

    while ((status = locks_acquire(TASKS_LOCK_FIRST)) == FTSVM_EPEER && ++tries < LOCK_RETRIES) {
        ftsvm_debug("ftsvm_for: the task lock met a failed node, trying again");
        backoff(&wait_ns);
    }
    if (status != FTSVM_OK) {
        ftsvm_error("ftsvm_for: cannot take the task lock: %s", ftsvm_strerror(status));
    }
    return status;
}

static int tasks_unlock(void)
{
    int status = locks_release(TASKS_LOCK_FIRST);

    if (status != FTSVM_OK) {
        ftsvm_error("ftsvm_for: cannot release the task lock: %s", ftsvm_strerror(status));
    }
    return status;
}

/* Windows from `base` + 1 on: claim, run, commit (with the next claim) until
 * every window is seen complete. */
static int run_windows(tasks_call_t *call, uint32_t base)
{
    size_t nwindows = (call->nchunks + TASKS_TABLE_CHUNKS - 1) / TASKS_TABLE_CHUNKS;
    size_t window = 0, first, count;
    long wait_ns = BACKOFF_FIRST_NS;
    claim_t claim = CLAIM_WAIT;
    int status;

    call->batch.count = 0;
    while (window < nwindows) {
        status = tasks_lock();
        if (status != FTSVM_OK) {
            return status;
        }
        stats_add(&tasks.stats, TASKS_STAT_SECTIONS, 1);
        if (call->batch.count > 0) {
            commit_batch(call);
        }
        while (window < nwindows) {
            first = window * TASKS_TABLE_CHUNKS;
            count = call->nchunks - first;
            count = (count < TASKS_TABLE_CHUNKS) ? count : TASKS_TABLE_CHUNKS;
            claim = claim_batch(call, base + 1 + (uint32_t)window, first, count);
            if (claim != CLAIM_DONE) {
                break;
            }
            window++;
            stats_add(&tasks.stats, TASKS_STAT_WINDOWS, 1);
        }
        /* the commit marks leave with the writes of the chunks they mark */
        status = tasks_unlock();
        if (status != FTSVM_OK) {
            return status;
        }
        if (claim == CLAIM_GOT) {
            wait_ns = BACKOFF_FIRST_NS;
            run_batch(call);
            /* FTSVM_FAULT=for-chunk: dying here must leave no trace of the batch */
            replica_fault_point(REPLICA_FAULT_FOR_CHUNK);
            claim = CLAIM_WAIT;
        } else if (window < nwindows) {
            backoff(&wait_ns);   /* the rest is running elsewhere (or its node is dying) */
        }
    }
    return FTSVM_OK;
}

static int tasks_table(void)
{
    static const char *const names[TASKS_STAT_COUNT] = {
        [TASKS_STAT_CALLS] = "calls",       [TASKS_STAT_WINDOWS] = "windows",
        [TASKS_STAT_CHUNKS] = "chunks_run", [TASKS_STAT_RERUNS] = "chunks_taken_over",
        [TASKS_STAT_SECTIONS] = "critical_sections", [TASKS_STAT_WAITS] = "waits",
        [TASKS_STAT_STALE] = "stale_commits",
    };
    size_t i;

    if (tasks.table != NULL) {
        return FTSVM_OK;
    }
    /* collective: every live node gets here at its first ftsvm_for */
    tasks.table = ftsvm_alloc((TASKS_HEADER_WORDS + TASKS_TABLE_CHUNKS) * sizeof(uint64_t));
    if (tasks.table == NULL) {
        ftsvm_error("ftsvm_for: cannot allocate the task table (FTSVM_SHARED_SIZE?)");
        return FTSVM_ENOMEM;
    }
    if (!tasks.registered) {
        tasks.stats.module = "tasks";
        tasks.stats.count  = TASKS_STAT_COUNT;
        for (i = 0; i < TASKS_STAT_COUNT; i++) {
            tasks.stats.names[i] = names[i];
        }
        stats_register(&tasks.stats);
        tasks.registered = 1;
    }
    return FTSVM_OK;
}

int tasks_for(size_t n, size_t chunk, void (*fn)(size_t first, size_t count, void *arg),
              void *arg)
{
    pthread_t helpers[TASKS_MAX_THREADS];
    tasks_call_t *call;
    uint32_t base;
    int status, nhelpers = 0, i, per_node;

    if (ftsvm_runtime() == NULL) {
        ftsvm_error("ftsvm_for before ftsvm_init or after ftsvm_finalize");
        return FTSVM_ESTATE;
    }
    if (fn == NULL || chunk == 0) {
        ftsvm_error("ftsvm_for: %s", fn == NULL ? "fn is NULL" : "chunk is 0");
        return FTSVM_EINVAL;
    }
    if (in_loop) {
        ftsvm_error("ftsvm_for called from a chunk of another ftsvm_for");
        return FTSVM_ESTATE;
    }
    if (n == 0) {
        return FTSVM_OK;   /* every node returns at once: no window, no generation */
    }
    call = calloc(1, sizeof(*call));
    if (call == NULL) {
        ftsvm_error("ftsvm_for: out of memory");
        return FTSVM_ENOMEM;
    }
    pthread_mutex_lock(&tasks.mutex);
    status = tasks_table();
    if (status != FTSVM_OK) {
        goto out;
    }
    per_node = ftsvm_threads() / ftsvm_nodes();
    call->n       = n;
    call->chunk   = chunk;
    call->nchunks = n / chunk + (n % chunk != 0);
    call->fn      = fn;
    call->arg     = arg;
    call->node    = ftsvm_node();
    call->threads = (per_node < 1) ? 1 : (per_node > TASKS_MAX_THREADS) ? TASKS_MAX_THREADS
                                                                        : per_node;
    pthread_mutex_init(&call->mutex, NULL);
    pthread_cond_init(&call->work_cond, NULL);
    pthread_cond_init(&call->done_cond, NULL);
    for (i = 1; i < call->threads; i++) {
        if (ftsvm_thread_create(&helpers[nhelpers], helper_main, call) != FTSVM_OK) {
            /* logged; the chunks run on the threads there are */
            ftsvm_warn("ftsvm_for: runs on %d of %d threads", nhelpers + 1, call->threads);
            break;
        }
        nhelpers++;
    }
    /* generations are counted by windows, the same on every live node */
    base = tasks.generation;
    tasks.generation += (uint32_t)((call->nchunks + TASKS_TABLE_CHUNKS - 1) /
                                   TASKS_TABLE_CHUNKS);
    stats_add(&tasks.stats, TASKS_STAT_CALLS, 1);
    in_loop = 1;
    status = run_windows(call, base);
    in_loop = 0;

    pthread_mutex_lock(&call->mutex);
    call->quit = 1;
    pthread_cond_broadcast(&call->work_cond);
    pthread_mutex_unlock(&call->mutex);
    for (i = 0; i < nhelpers; i++) {
        pthread_join(helpers[i], NULL);
    }
    pthread_cond_destroy(&call->done_cond);
    pthread_cond_destroy(&call->work_cond);
    pthread_mutex_destroy(&call->mutex);
out:
    pthread_mutex_unlock(&tasks.mutex);
    free(call);
    return status;
}

/*
 * include/ftsvm.h for one process of plain pthreads: what the apps link with
 * -DAPP_PTHREADS, to measure the same source without the shared virtual
 * memory. Node 0 of 1; FTSVM_THREADS threads; memory from the heap; locks
 * are pthread mutexes; the barrier counts the registered threads;
 * ftsvm_for is a parallel loop whose threads take chunks from a counter.
 */
#include "ftsvm.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#define SHIM_LOCKS 65536

static int threads_per_node = 1, running = 1, arrived, generation;
static pthread_mutex_t shim_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t shim_cond = PTHREAD_COND_INITIALIZER;
static pthread_mutex_t locks[SHIM_LOCKS];
static __thread int my_id = 0;
static int next_id = 1;

int ftsvm_init(int *argc, char ***argv)
{
    const char *t = getenv("FTSVM_THREADS");
    int i;

    (void)argc;
    (void)argv;
    threads_per_node = t ? atoi(t) : 1;
    if (threads_per_node < 1) {
        threads_per_node = 1;
    }
    for (i = 0; i < SHIM_LOCKS; i++) {
        pthread_mutex_init(&locks[i], NULL);
    }
    return FTSVM_OK;
}

int ftsvm_finalize(void) { return FTSVM_OK; }
const char *ftsvm_strerror(int err) { return err ? "error" : "success"; }
int ftsvm_node(void) { return 0; }
int ftsvm_nodes(void) { return 1; }
int ftsvm_alive(int node) { return node == 0; }
int ftsvm_threads(void) { return threads_per_node; }
int ftsvm_thread_id(void) { return my_id; }

void *ftsvm_alloc(size_t bytes)
{
    void *p = NULL;

    if (bytes == 0 || posix_memalign(&p, 4096, bytes) != 0) {
        errno = bytes ? ENOMEM : EINVAL;
        return NULL;
    }
    memset(p, 0, bytes);
    return p;
}

void *ftsvm_malloc(size_t bytes) { return malloc(bytes); }
void ftsvm_free(void *p) { free(p); }

int ftsvm_lock_acquire(unsigned lock)
{
    return lock < SHIM_LOCKS ? pthread_mutex_lock(&locks[lock]) : FTSVM_ERANGE;
}

int ftsvm_lock_release(unsigned lock)
{
    return lock < SHIM_LOCKS ? pthread_mutex_unlock(&locks[lock]) : FTSVM_ERANGE;
}

int ftsvm_barrier(void)
{
    int gen;

    pthread_mutex_lock(&shim_lock);
    gen = generation;
    if (++arrived >= running) {
        arrived = 0;
        generation++;
        pthread_cond_broadcast(&shim_cond);
    } else {
        while (gen == generation) {
            pthread_cond_wait(&shim_cond, &shim_lock);
        }
    }
    pthread_mutex_unlock(&shim_lock);
    return FTSVM_OK;
}

typedef struct {
    void *(*fn)(void *);
    void *arg;
    int id;
} shim_start_t;

static void *shim_trampoline(void *arg)
{
    shim_start_t s = *(shim_start_t *)arg;
    void *ret;

    free(arg);
    my_id = s.id;
    ret = s.fn(s.arg);
    pthread_mutex_lock(&shim_lock);
    running--;
    if (arrived >= running && arrived > 0) {
        arrived = 0;
        generation++;
        pthread_cond_broadcast(&shim_cond);
    }
    pthread_mutex_unlock(&shim_lock);
    return ret;
}

int ftsvm_thread_create(pthread_t *t, void *(*fn)(void *), void *arg)
{
    shim_start_t *s = malloc(sizeof(*s));

    if (s == NULL) {
        return FTSVM_ENOMEM;
    }
    pthread_mutex_lock(&shim_lock);
    s->id = next_id++;
    running++;
    pthread_mutex_unlock(&shim_lock);
    s->fn = fn;
    s->arg = arg;
    return pthread_create(t, NULL, shim_trampoline, s) ? FTSVM_ESYS : FTSVM_OK;
}

typedef struct {
    size_t n, chunk, nchunks;
    void (*fn)(size_t, size_t, void *);
    void *arg;
    size_t next;           /* next chunk, taken with an atomic add */
} shim_loop_t;

typedef struct {
    shim_loop_t *loop;
    int          id;
} shim_runner_t;

static void shim_loop_run(shim_loop_t *loop)
{
    size_t c, first;

    while ((c = __atomic_fetch_add(&loop->next, 1, __ATOMIC_RELAXED)) < loop->nchunks) {
        first = c * loop->chunk;
        loop->fn(first, loop->n - first < loop->chunk ? loop->n - first : loop->chunk,
                 loop->arg);
    }
}

static void *shim_loop_thread(void *arg)
{
    shim_runner_t *runner = arg;

    my_id = runner->id;   /* the ids of a node's threads, as ftsvm_for's helpers have */
    shim_loop_run(runner->loop);
    return NULL;
}

int ftsvm_for(size_t n, size_t chunk, void (*fn)(size_t, size_t, void *), void *arg)
{
    shim_loop_t loop = { n, chunk, 0, fn, arg, 0 };
    shim_runner_t runners[256];
    pthread_t threads[256];
    int i, started = 0;

    if (fn == NULL || chunk == 0) {
        return FTSVM_EINVAL;
    }
    loop.nchunks = n / chunk + (n % chunk != 0);
    for (i = 1; i < threads_per_node && i < 256; i++) {
        runners[started].loop = &loop;
        runners[started].id = i;
        if (pthread_create(&threads[started], NULL, shim_loop_thread, &runners[started]) != 0) {
            break;   /* the threads there are run the loop */
        }
        started++;
    }
    shim_loop_run(&loop);
    for (i = 0; i < started; i++) {
        pthread_join(threads[i], NULL);
    }
    return FTSVM_OK;
}

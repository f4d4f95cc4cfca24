/*
 * What the application benchmarks share. An app is written against
 * include/ftsvm.h only; built with -DAPP_PTHREADS it links pthreads_shim.c
 * instead of libftsvm and runs as plain pthreads in one process, so that the
 * cost of the shared virtual memory shows against the same source.
 *
 * Work is divided by the global thread id (ftsvm_thread_id) over
 * ftsvm_threads(); app_run runs a function on every thread of the node.
 */
#ifndef FTSVM_BENCH_APP_H
#define FTSVM_BENCH_APP_H

#include "ftsvm.h"

#include <math.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define app_check(_cond, ...)                                                 \
    do {                                                                      \
        if (!(_cond)) {                                                       \
            fprintf(stderr, "%s: check failed: %s: ", app_name, #_cond);     \
            fprintf(stderr, __VA_ARGS__);                                     \
            fputc('\n', stderr);                                              \
            exit(1);                                                          \
        }                                                                     \
    } while (0)

#define app_ok(_call)                                                         \
    do {                                                                      \
        int _s = (_call);                                                     \
        app_check(_s == FTSVM_OK, "%s: %s", #_call, ftsvm_strerror(_s));      \
    } while (0)

static const char *app_name = "app";

static inline double app_now(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static inline void *app_alloc(size_t bytes)
{
    void *p = ftsvm_alloc(bytes);

    app_check(p != NULL, "ftsvm_alloc of %zu bytes failed (FTSVM_SHARED_SIZE?)", bytes);
    return p;
}

typedef struct {
    void (*fn)(int tid, int nthreads);
} app_start_t;

static inline void *app_trampoline(void *arg)
{
    app_start_t *start = arg;

    start->fn(ftsvm_thread_id(), ftsvm_threads());
    return NULL;
}

/* fn on every thread of this node, the main thread included */
static inline void app_run(void (*fn)(int tid, int nthreads))
{
    int per_node = ftsvm_threads() / ftsvm_nodes(), i;
    pthread_t threads[256];
    app_start_t start = { fn };

    app_check(per_node <= 256, "at most 256 threads per node");
    for (i = 1; i < per_node; i++) {
        app_ok(ftsvm_thread_create(&threads[i], app_trampoline, &start));
    }
    fn(ftsvm_thread_id(), ftsvm_threads());
    for (i = 1; i < per_node; i++) {
        pthread_join(threads[i], NULL);
    }
}

/* the first and one-past-last of n items for thread tid of nthreads */
static inline void app_share(size_t n, int tid, int nthreads, size_t *first, size_t *end)
{
    *first = n * (size_t)tid / (size_t)nthreads;
    *end   = n * (size_t)(tid + 1) / (size_t)nthreads;
}

static inline long app_arg(int argc, char **argv, int i, long dflt, long min, long max)
{
    long v = (argc > i) ? strtol(argv[i], NULL, 10) : dflt;

    app_check(v >= min && v <= max, "argument %d must be in [%ld, %ld]", i, min, max);
    return v;
}

/* one line on node 0: what ran, how long the timed part took, verified */
static inline void app_report(const char *size, double seconds, int verified)
{
    if (ftsvm_node() == 0) {
        printf("app %s size %s nodes %d threads %d time %.4f s verified %s\n", app_name, size,
               ftsvm_nodes(), ftsvm_threads(), seconds, verified ? "yes" : "NO");
        fflush(stdout);
    }
}

/* report, wait for every node, finalize; the exit status of main */
static inline int app_finish(const char *size, double seconds, int verified)
{
    app_report(size, seconds, verified);
    app_ok(ftsvm_barrier());
    app_ok(ftsvm_finalize());
    return verified ? 0 : 1;
}

#endif

/*
 * What the application benchmarks share. An app is written against
 * include/ftsvm.h only; built with -DAPP_PTHREADS it links pthreads_shim.c
 * instead of libftsvm and runs as plain pthreads in one process, so that the
 * cost of the shared virtual memory shows against the same source.
 *
 * Work is divided with ftsvm_for wherever it splits into independent
 * chunks: a node that dies leaves its uncommitted chunks to the survivors,
 * so the run still completes and verifies (DESIGN.md section 8). Every node
 * verifies the result; the lowest live node reports it.
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

/* APP_STEP_LOG=y: the lowest live node writes "app step K T0 T1" to stderr
 * for each step of the app's main loop (CLOCK_MONOTONIC seconds, the clock
 * of ftsvm's events), for bench/redundancy.sh's slowdown during a copy */
static inline void app_step_log(long k, double t0, double t1)
{
    static int on = -1;

    if (on < 0) {
        const char *v = getenv("APP_STEP_LOG");

        on = (v != NULL && (v[0] == 'y' || v[0] == '1'));
    }
    if (on) {
        int node;

        for (node = 0; node < ftsvm_nodes() && ftsvm_alive(node) != 1; node++) {
        }
        if (node == ftsvm_node()) {
            fprintf(stderr, "app step %ld %.6f %.6f\n", k, t0, t1);
        }
    }
}

static inline void *app_alloc(size_t bytes)
{
    void *p = ftsvm_alloc(bytes);

    app_check(p != NULL, "ftsvm_alloc of %zu bytes failed (FTSVM_SHARED_SIZE?)", bytes);
    return p;
}

/* how many chunks a loop of n items is cut into: a few per thread, so that
 * the nodes balance the load and a failed node leaves little to redo */
static inline size_t app_chunk(size_t n, int per_thread)
{
    size_t chunks = (size_t)ftsvm_threads() * (size_t)per_thread;
    size_t chunk = (n + chunks - 1) / chunks;

    return chunk > 0 ? chunk : 1;
}

static inline long app_arg(int argc, char **argv, int i, long dflt, long min, long max)
{
    long v = (argc > i) ? strtol(argv[i], NULL, 10) : dflt;

    app_check(v >= min && v <= max, "argument %d must be in [%ld, %ld]", i, min, max);
    return v;
}

/* The lowest node alive by this node's view. */
static inline int app_lowest_alive(void)
{
    int node;

    for (node = 0; node < ftsvm_nodes() && ftsvm_alive(node) != 1; node++) {
    }
    return node;
}

static inline void app_report(const char *size, double seconds, int verified)
{
    printf("app %s size %s nodes %d threads %d time %.4f s verified %s\n", app_name, size,
           ftsvm_nodes(), ftsvm_threads(), seconds, verified ? "yes" : "NO");
    fflush(stdout);
}

/* Every node verified the result itself; one reports it, and a node that
 * failed before reporting does not leave the run without a verdict. After
 * a barrier (the verdicts are final) the lowest live node prints and marks
 * the report in shared memory; after a second barrier a node that finds no
 * mark (the reporter died before its release) and is now the lowest prints
 * instead. Then finalize; the exit status of main. */
static inline int app_finish(const char *size, double seconds, int verified)
{
    volatile long *reported = app_alloc(sizeof(*reported));

    app_ok(ftsvm_barrier());
    if (app_lowest_alive() == ftsvm_node()) {
        app_report(size, seconds, verified);
        *reported = 1;
    }
    app_ok(ftsvm_barrier());
    if (*reported == 0 && app_lowest_alive() == ftsvm_node()) {
        app_report(size, seconds, verified);
    }
    app_ok(ftsvm_finalize());
    return verified ? 0 : 1;
}

#endif

/*
 * What the application benchmarks share. An app is written against
 * include/ftsvm.h only; built with -DAPP_PTHREADS it links pthreads_shim.c
 * instead of libftsvm and runs as plain pthreads in one process, so that the
 * cost of the shared virtual memory shows against the same source.
 *
 * Work is divided with ftsvm_for wherever it splits into independent
 * chunks: a node that dies leaves its uncommitted chunks to the survivors,
 * so the run still completes and verifies (DESIGN.md section 8). The lowest
 * live node verifies the result and reports.
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

/* -1 not yet known, else whether this node verifies and reports */
static int app_reporter = -1;

/* 1 on the node that verifies the result and reports it: the lowest live
 * node (node 0 unless it failed). Decided once, so that the node that
 * reports is the one that verified. */
static inline int app_is_reporter(void)
{
    int node;

    if (app_reporter < 0) {
        for (node = 0; node < ftsvm_nodes() && ftsvm_alive(node) != 1; node++) {
        }
        app_reporter = (node == ftsvm_node());
    }
    return app_reporter;
}

/* one line from the reporting node: what ran, how long the timed part took,
 * verified */
static inline void app_report(const char *size, double seconds, int verified)
{
    if (app_is_reporter()) {
        printf("app %s size %s nodes %d threads %d time %.4f s verified %s\n", app_name, size,
               ftsvm_nodes(), ftsvm_threads(), seconds, verified ? "yes" : "NO");
        fflush(stdout);
    }
}

/* report, wait for every live node, finalize; the exit status of main */
static inline int app_finish(const char *size, double seconds, int verified)
{
    app_report(size, seconds, verified);
    app_ok(ftsvm_barrier());
    app_ok(ftsvm_finalize());
    return verified ? 0 : 1;
}

#endif

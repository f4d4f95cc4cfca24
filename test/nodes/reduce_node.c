/*
 * Node program of the ftsvm_for_reduce tests (test/multi/test_for.c,
 * test/multi/test_failure.c). Uses only include/ftsvm.h and libftsvm.so,
 * as a user's program does.
 *
 *   reduce_node N CHUNK[,CHUNK...] [SLEEP_US]
 *       per CHUNK size, over [0, N):
 *       1. an int64 sum of f(i) (ftsvm_sum_int64) and 2. a double sum of
 *          1 / (i + 1) (ftsvm_sum_double), each chunk counting its run in
 *          its own shared word;
 *       3. a struct {count, min, max} with a combine of the program's own;
 *       4. a plain ftsvm_for between reductions (a window of another kind
 *          follows a reduction's);
 *       5. a histogram of 1024 int64 bins (8 KiB partials: windows of 128
 *          chunks).
 *       Every node checks every result against what it computes alone: the
 *       integers exactly, the double sum bitwise equal to the fold of the
 *       chunks' sums in chunk order; and that each chunk ran once. With
 *       SLEEP_US every chunk sleeps (a test kills a node mid-loop; the
 *       survivors check). Each node that checked prints "reduce_node:
 *       reductions exact on node N".
 *
 * Exit 0 when every check held, 10 with a message otherwise.
 */
#define NODE_NAME "reduce_node"
#include "api_check.h"
#include "ftsvm.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define MAX_CALLS 4
#define BINS      1024

typedef struct loop {
    size_t    n, chunk, nchunks;
    uint64_t *hits;      /* per chunk: runs of the sums (1), of the plain loop (2) */
    long      sleep_us;
} loop_t;

typedef struct span {
    int64_t count, min, max;
} span_t;

static int64_t item(size_t i)
{
    return (int64_t)((i * 2654435761u) % 1000003u) - 500000;
}

static void nap(const loop_t *loop)
{
    if (loop->sleep_us > 0) {
        struct timespec ts = { loop->sleep_us / 1000000, (loop->sleep_us % 1000000) * 1000 };

        nanosleep(&ts, NULL);
    }
}

static void sum_items(size_t first, size_t count, void *arg, void *partial)
{
    loop_t *loop = arg;
    int64_t *sum = partial;
    size_t i;

    expect(*sum == 0, "the partial of chunk %zu starts at %lld, not the identity",
           first / loop->chunk, (long long)*sum);
    for (i = first; i < first + count; i++) {
        *sum += item(i);
    }
    loop->hits[first / loop->chunk] += 1;
    nap(loop);
}

static void sum_inverses(size_t first, size_t count, void *arg, void *partial)
{
    double *sum = partial;
    size_t i;

    for (i = first; i < first + count; i++) {
        *sum += 1.0 / (double)(i + 1);
    }
    nap(arg);
}

static void span_items(size_t first, size_t count, void *arg, void *partial)
{
    span_t *s = partial;
    size_t i;

    for (i = first; i < first + count; i++) {
        s->count++;
        s->min = item(i) < s->min ? item(i) : s->min;
        s->max = item(i) > s->max ? item(i) : s->max;
    }
    nap(arg);
}

static void span_combine(void *into, const void *from, size_t size, void *arg)
{
    span_t *a = into;
    const span_t *b = from;

    (void)arg;
    expect(size == sizeof(span_t), "combine got %zu bytes", size);
    a->count += b->count;
    a->min = b->min < a->min ? b->min : a->min;
    a->max = b->max > a->max ? b->max : a->max;
}

static void plain_chunk(size_t first, size_t count, void *arg)
{
    loop_t *loop = arg;

    (void)count;
    loop->hits[first / loop->chunk] += 2;
    nap(loop);
}

static void histogram(size_t first, size_t count, void *arg, void *partial)
{
    int64_t *bins = partial;
    size_t i;

    for (i = first; i < first + count; i++) {
        bins[i % BINS] += 1 + (int64_t)(i % 3);
    }
    nap(arg);
}

static void check_call(loop_t *loop, int k)
{
    static int64_t bins[BINS], want_bins[BINS];
    int64_t sum = 0, want_sum = 0;
    double inv = 0.0, want_inv = 0.0, part;
    span_t span = { 0, INT64_MAX, INT64_MIN }, want_span = { 0, INT64_MAX, INT64_MIN };
    size_t i, c, end;

    ok(ftsvm_for_reduce(loop->n, loop->chunk, sum_items, loop, &sum, sizeof(sum),
                        ftsvm_sum_int64));
    ok(ftsvm_for_reduce(loop->n, loop->chunk, sum_inverses, loop, &inv, sizeof(inv),
                        ftsvm_sum_double));
    ok(ftsvm_for_reduce(loop->n, loop->chunk, span_items, loop, &span, sizeof(span),
                        span_combine));
    ok(ftsvm_for(loop->n, loop->chunk, plain_chunk, loop));
    memset(bins, 0, sizeof(bins));
    ok(ftsvm_for_reduce(loop->n, loop->chunk, histogram, loop, bins, sizeof(bins),
                        ftsvm_sum_int64));

    memset(want_bins, 0, sizeof(want_bins));
    for (c = 0; c < loop->nchunks; c++) {
        end = (c + 1) * loop->chunk < loop->n ? (c + 1) * loop->chunk : loop->n;
        for (i = c * loop->chunk, part = 0.0; i < end; i++) {
            want_sum += item(i);
            part += 1.0 / (double)(i + 1);
            want_span.count++;
            want_span.min = item(i) < want_span.min ? item(i) : want_span.min;
            want_span.max = item(i) > want_span.max ? item(i) : want_span.max;
            want_bins[i % BINS] += 1 + (int64_t)(i % 3);
        }
        want_inv += part;   /* the chunks' sums, folded in chunk order */
        expect(loop->hits[c] == 3, "call %d: chunk %zu ran %llu (1 per sum, 2 per plain run)",
               k, c, (unsigned long long)loop->hits[c]);
    }
    expect(sum == want_sum, "call %d: int64 sum %lld, not %lld", k, (long long)sum,
           (long long)want_sum);
    expect(memcmp(&inv, &want_inv, sizeof(inv)) == 0, "call %d: double sum %.17g, not %.17g",
           k, inv, want_inv);
    expect(span.count == want_span.count && span.min == want_span.min &&
           span.max == want_span.max, "call %d: span %lld [%lld, %lld], not %lld [%lld, %lld]",
           k, (long long)span.count, (long long)span.min, (long long)span.max,
           (long long)want_span.count, (long long)want_span.min, (long long)want_span.max);
    for (i = 0; i < BINS; i++) {
        expect(bins[i] == want_bins[i], "call %d: bin %zu is %lld, not %lld", k, i,
               (long long)bins[i], (long long)want_bins[i]);
    }
}

int main(int argc, char **argv)
{
    loop_t loops[MAX_CALLS];
    char *list, *tok, *save = NULL;
    int calls = 0, k;
    size_t n;

    ok(ftsvm_init(&argc, &argv));
    expect(argc >= 3, "usage: reduce_node N CHUNK[,CHUNK...] [SLEEP_US]");
    n = strtoull(argv[1], NULL, 10);
    list = strdup(argv[2]);
    for (tok = strtok_r(list, ",", &save); tok != NULL; tok = strtok_r(NULL, ",", &save)) {
        expect(calls < MAX_CALLS, "at most %d chunk sizes", MAX_CALLS);
        loops[calls].n = n;
        loops[calls].chunk = strtoull(tok, NULL, 10);
        loops[calls].nchunks = n / loops[calls].chunk + (n % loops[calls].chunk != 0);
        loops[calls].sleep_us = argc > 3 ? atol(argv[3]) : 0;
        loops[calls].hits = ftsvm_alloc((loops[calls].nchunks + 1) * sizeof(uint64_t));
        expect(loops[calls].hits != NULL, "ftsvm_alloc");
        calls++;
    }
    free(list);
    ok(ftsvm_barrier());
    for (k = 0; k < calls; k++) {
        check_call(&loops[k], k);
    }
    printf("reduce_node: reductions exact on node %d (%zu items, %d chunk sizes, %d nodes x "
           "%d threads)\n", ftsvm_node(), n, calls, ftsvm_nodes(),
           ftsvm_threads() / ftsvm_nodes());
    ok(ftsvm_barrier());
    ok(ftsvm_finalize());
    return 0;
}

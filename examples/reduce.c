/*
 * reduce: what to use instead of a lock in an ftsvm_for chunk. A shared
 * vector x lives in ftsvm memory; one ftsvm_for_reduce computes its sum, its
 * dot product with itself and its largest element (a struct with a combine
 * of its own), another a 64-bin histogram of it. Each chunk leaves its
 * partial result in `partial`; ftsvm combines the partials in chunk order,
 * exactly once even when a node dies mid-loop, and every node gets the same
 * bytes. Node 0 checks the results against a sequential computation and
 * prints them; the job exits 0 only if they match.
 *
 *   ftsvm-run -n 4 --threads 2 build/examples/reduce [n=4000000] [chunk=20000]
 *   FTSVM_SHARED_SIZE=256M ftsvm-run -n 4 --threads 2 --kill 2@2.5 \
 *       build/examples/reduce 12000000
 */
#include "ftsvm.h"

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define BINS 64

static double *x;   /* shared: n elements */

typedef struct moments {
    double sum, dot, max;
} moments_t;

static double element(size_t i)
{
    return sin((double)i * 0.001) + 1.0 / (double)(i + 1);
}

static void fill(size_t first, size_t count, void *arg)
{
    size_t i;

    (void)arg;
    for (i = first; i < first + count; i++) {
        x[i] = element(i);   /* each chunk writes only its own items */
    }
}

/* partial arrives as a copy of the identity: {0, 0, -INFINITY} */
static void chunk_moments(size_t first, size_t count, void *arg, void *partial)
{
    moments_t *m = partial;
    size_t i;

    (void)arg;
    for (i = first; i < first + count; i++) {
        m->sum += x[i];
        m->dot += x[i] * x[i];
        m->max = x[i] > m->max ? x[i] : m->max;
    }
}

static void combine_moments(void *into, const void *from, size_t size, void *arg)
{
    moments_t *a = into;
    const moments_t *b = from;

    (void)size;
    (void)arg;
    a->sum += b->sum;
    a->dot += b->dot;
    a->max = b->max > a->max ? b->max : a->max;
}

static int bin_of(double v)
{
    int b = (int)((v + 1.0) / 3.0 * BINS);   /* elements lie in (-1, 2] */

    return b < 0 ? 0 : b >= BINS ? BINS - 1 : b;
}

static void chunk_histogram(size_t first, size_t count, void *arg, void *partial)
{
    int64_t *bins = partial;   /* BINS zeros on entry */
    size_t i;

    (void)arg;
    for (i = first; i < first + count; i++) {
        bins[bin_of(x[i])]++;
    }
}

int main(int argc, char **argv)
{
    moments_t m = { 0.0, 0.0, -INFINITY }, want = { 0.0, 0.0, -INFINITY }, part;
    int64_t bins[BINS] = { 0 }, want_bins[BINS] = { 0 };
    size_t n, chunk, c, i, end;
    int status, ok = 1, b;

    status = ftsvm_init(&argc, &argv);
    if (status != FTSVM_OK) {
        fprintf(stderr, "reduce: ftsvm_init: %s\n", ftsvm_strerror(status));
        return 1;
    }
    n = argc > 1 ? strtoull(argv[1], NULL, 10) : 4000000;
    chunk = argc > 2 ? strtoull(argv[2], NULL, 10) : 20000;
    x = ftsvm_alloc(n * sizeof(double));   /* collective: same call on every node */
    if (x == NULL || chunk == 0) {
        fprintf(stderr, "reduce: cannot allocate %zu elements (FTSVM_SHARED_SIZE?)\n", n);
        return 1;
    }
    status = ftsvm_for(n, chunk, fill, NULL);
    if (status == FTSVM_OK) {
        status = ftsvm_for_reduce(n, chunk, chunk_moments, NULL, &m, sizeof(m),
                                  combine_moments);
    }
    if (status == FTSVM_OK) {
        status = ftsvm_for_reduce(n, chunk, chunk_histogram, NULL, bins, sizeof(bins),
                                  ftsvm_sum_int64);
    }
    if (status != FTSVM_OK) {
        fprintf(stderr, "reduce: node %d: %s\n", ftsvm_node(), ftsvm_strerror(status));
        return 1;
    }
    if (ftsvm_node() == 0 || ftsvm_alive(0) != 1) {
        /* the same sums, chunk by chunk in chunk order: equal to the last bit */
        for (c = 0; c * chunk < n; c++) {
            part = (moments_t){ 0.0, 0.0, -INFINITY };
            end = (c + 1) * chunk < n ? (c + 1) * chunk : n;
            for (i = c * chunk; i < end; i++) {
                part.sum += element(i);
                part.dot += element(i) * element(i);
                part.max = element(i) > part.max ? element(i) : part.max;
                want_bins[bin_of(element(i))]++;
            }
            combine_moments(&want, &part, sizeof(part), NULL);
        }
        ok = memcmp(&m, &want, sizeof(m)) == 0 && memcmp(bins, want_bins, sizeof(bins)) == 0;
        printf("reduce: node %d: %zu elements in chunks of %zu: sum %.17g, dot %.17g, "
               "max %.17g; histogram", ftsvm_node(), n, chunk, m.sum, m.dot, m.max);
        for (b = 0; b < BINS; b += 8) {
            printf(" %lld", (long long)bins[b]);
        }
        printf(" ...: %s\n", ok ? "verified" : "WRONG");
    }
    status = ftsvm_barrier();
    if (status == FTSVM_OK) {
        status = ftsvm_finalize();
    }
    return ok && status == FTSVM_OK ? 0 : 1;
}

/*
 * put_bw: bandwidth of a plain loop of one-sided writes between 2 nodes: for
 * each page a put of the page and a put of its applied/pending words (the
 * pattern of re-replication's copy before it wrote a row as runs,
 * lib/hlrc/home_copy.c), a flush at the end. bench/redundancy.sh runs it beside a job's copy of the same
 * bytes, to put the copy's MB/s beside the transport's.
 *
 *   ftsvm-run -n 2 build/bench/put_bw BYTES [PAGE [WORDS [REPS]]]
 *
 *   BYTES  what one loop writes in all (pages and words), e.g. 8388608
 *   PAGE   bytes of a page's put (default 4096)
 *   WORDS  bytes of its words' put (default 80: 2 words x 5 nodes x 8 B)
 *   REPS   loops timed (default 7); the first loop is a warm-up
 *
 * Over its own transport context (lib/rdma, as ftsvm's), made like the
 * runtime's; node 1's application thread waits in a barrier while its
 * protocol thread serves. The warm-up loop is reported too: it writes
 * memory of node 1 not yet written from here, as re-replication's copy into
 * a new secondary's fresh slots does. Over shared memory each of its pages
 * takes a page fault in this process's mapping of node 1's memory (the
 * later loops take none). Node 0 prints the p50, min and max MB/s (MB:
 * 10^6 bytes) and "put_bw mbps=X first=Y", the p50 and the warm-up loop,
 * for scripts.
 */
#include "common/clock.h"
#include "ftsvm.h"
#include "runtime/runtime.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int compare(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;

    return (x > y) - (x < y);
}

static int parse_size(const char *text, const char *what, size_t lo, size_t *out)
{
    char *end;
    unsigned long long v = strtoull(text, &end, 10);

    if (end == text || *end != '\0' || v < lo) {
        fprintf(stderr, "put_bw: %s '%s': need a number >= %zu\n", what, text, lo);
        return -1;
    }
    *out = (size_t)v;
    return 0;
}

/* one loop: the pages and their words, a flush; its MB/s */
static int put_loop(rdma_ctx_t *ctx, const uint8_t *buf, size_t pages, size_t page,
                    size_t words, double *mbps)
{
    uint64_t t0 = clock_now_ns(), ns;
    size_t i;
    int status = FTSVM_OK;

    for (i = 0; i < pages && status == FTSVM_OK; i++) {
        status = rdma_put(ctx, 1, 0, i * page, buf + i * page, page);
        if (status == FTSVM_OK) {
            status = rdma_put(ctx, 1, 1, i * words, buf, words);
        }
    }
    if (status == FTSVM_OK) {
        status = rdma_flush(ctx, 1);
    }
    ns = clock_now_ns() - t0;
    *mbps = (double)(pages * (page + words)) * 1e3 / (double)(ns ? ns : 1);
    return status;
}

static int run(size_t bytes, size_t page, size_t words, size_t reps)
{
    ftsvm_runtime_t *rt = ftsvm_runtime();
    size_t pages = bytes / (page + words), sizes[2], r;
    double *mbps = calloc(reps + 1, sizeof(double));
    uint8_t *buf;
    rdma_params_t params;
    rdma_ctx_t *ctx = NULL;
    int status = FTSVM_OK, node = ftsvm_node();

    pages = pages ? pages : 1;
    sizes[0] = pages * page;
    sizes[1] = pages * words;
    buf = malloc(pages * page);
    if (mbps == NULL || buf == NULL) {
        fprintf(stderr, "put_bw: out of memory\n");
        return 1;
    }
    memset(buf, 0x5a, pages * page);
    runtime_rdma_params(rt, &params);
    params.nregions = 2;
    params.region_sizes = sizes;
    if (rdma_create(&params, &ctx) != FTSVM_OK) {
        fprintf(stderr, "put_bw: cannot set up the transport\n");
        return 1;
    }
    bootstrap_barrier(rt->boot);
    if (node == 0) {
        char lanes[256] = "";

        rdma_describe_peer(ctx, 1, lanes, sizeof(lanes));
        for (r = 0; r <= reps && status == FTSVM_OK; r++) {
            status = put_loop(ctx, buf, pages, page, words, &mbps[r]);
        }
        if (status != FTSVM_OK) {
            fprintf(stderr, "put_bw: a put failed: %s\n", ftsvm_strerror(status));
        } else {
            qsort(mbps + 1, reps, sizeof(double), compare);   /* [0]: the warm-up */
            printf("put_bw: %zu pages of %zu + %zu B (%zu bytes) over %s, then a flush, "
                   "%zu loops: p50 %.0f MB/s, min %.0f, max %.0f; the first loop (the "
                   "target's memory not yet written from here) %.0f MB/s\n"
                   "put_bw mbps=%.1f first=%.1f\n",
                   pages, page, words, pages * (page + words), lanes, reps,
                   mbps[1 + reps / 2], mbps[1], mbps[reps], mbps[0], mbps[1 + reps / 2],
                   mbps[0]);
        }
    }
    bootstrap_barrier(rt->boot);
    rdma_quiesce(ctx);
    bootstrap_barrier(rt->boot);
    rdma_destroy(ctx);
    free(buf);
    free(mbps);
    return status == FTSVM_OK ? 0 : 1;
}

int main(int argc, char **argv)
{
    size_t bytes, page = 4096, words = 80, reps = 7;
    int status;

    status = ftsvm_init(&argc, &argv);
    if (status != FTSVM_OK) {
        fprintf(stderr, "ftsvm_init: %s\n", ftsvm_strerror(status));
        return 1;
    }
    if (argc < 2 || argc > 5 || parse_size(argv[1], "BYTES", 1, &bytes) != 0 ||
        (argc > 2 && parse_size(argv[2], "PAGE", 8, &page) != 0) ||
        (argc > 3 && parse_size(argv[3], "WORDS", 8, &words) != 0) ||
        (argc > 4 && parse_size(argv[4], "REPS", 1, &reps) != 0)) {
        fprintf(stderr, "usage: put_bw BYTES [PAGE [WORDS [REPS]]]\n");
        ftsvm_finalize();
        return 2;
    }
    if (ftsvm_nodes() != 2) {
        fprintf(stderr, "put_bw runs on exactly 2 nodes (ftsvm-run -n 2)\n");
        ftsvm_finalize();
        return 2;
    }
    status = run(bytes, page, words, reps);
    ftsvm_finalize();
    return status;
}

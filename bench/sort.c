/* Radix sort of N 32-bit keys, 8 bits a pass: each thread counts the digits
 * of its share into a shared histogram; barrier; each computes where its keys
 * go from all histograms and scatters them; barrier. Verified: sorted, and
 * the same multiset (sum and xor).   sort [N=262144] */
#include "app.h"

#define RADIX 256

static long n;
static uint32_t *keys[2];
static uint64_t *hist;   /* [threads][RADIX] */

static uint32_t key_of(long i)
{
    uint64_t x = (uint64_t)i * 0x9e3779b97f4a7c15ull + 12345;

    x ^= x >> 29;
    x *= 0xbf58476d1ce4e5b9ull;
    return (uint32_t)(x >> 32);
}

static void worker(int tid, int nthreads)
{
    size_t first, end, i;
    uint64_t offset[RADIX], total;
    int pass, d, t;
    const uint32_t *src;
    uint32_t *dst;

    app_share((size_t)n, tid, nthreads, &first, &end);
    for (i = first; i < end; i++) {
        keys[0][i] = key_of((long)i);
    }
    app_ok(ftsvm_barrier());
    for (pass = 0; pass < 4; pass++) {
        src = keys[pass % 2];
        dst = keys[(pass + 1) % 2];
        memset(offset, 0, sizeof(offset));
        for (i = first; i < end; i++) {
            offset[(src[i] >> (8 * pass)) & 0xff]++;
        }
        memcpy(hist + (size_t)tid * RADIX, offset, sizeof(offset));
        app_ok(ftsvm_barrier());
        /* offset[d] = keys with smaller digits + this digit's keys of the
         * threads before me */
        total = 0;
        for (d = 0; d < RADIX; d++) {
            uint64_t before = 0;

            for (t = 0; t < tid; t++) {
                before += hist[(size_t)t * RADIX + d];
            }
            offset[d] = total + before;
            for (t = 0; t < nthreads; t++) {
                total += hist[(size_t)t * RADIX + d];
            }
        }
        for (i = first; i < end; i++) {
            dst[offset[(src[i] >> (8 * pass)) & 0xff]++] = src[i];
        }
        app_ok(ftsvm_barrier());
    }
}

int main(int argc, char **argv)
{
    double start, seconds;
    uint64_t sum = 0, want_sum = 0;
    uint32_t x = 0, want_x = 0;
    char size[32];
    int verified = 1;
    long i;

    app_name = "sort";
    app_ok(ftsvm_init(&argc, &argv));
    n = app_arg(argc, argv, 1, 262144, 1, 1 << 26);
    keys[0] = app_alloc((size_t)n * sizeof(uint32_t));
    keys[1] = app_alloc((size_t)n * sizeof(uint32_t));
    hist = app_alloc((size_t)ftsvm_threads() * RADIX * sizeof(uint64_t));
    app_ok(ftsvm_barrier());
    start = app_now();
    app_run(worker);
    seconds = app_now() - start;
    if (ftsvm_node() == 0) {
        for (i = 0; i < n; i++) {
            want_sum += key_of(i);
            want_x ^= key_of(i);
            sum += keys[0][i];
            x ^= keys[0][i];
            if (i > 0 && keys[0][i - 1] > keys[0][i]) {
                verified = 0;
            }
        }
        verified = verified && sum == want_sum && x == want_x;
    }
    snprintf(size, sizeof(size), "%ld", n);
    return app_finish(size, seconds, verified);
}

/* Radix sort of N 32-bit keys, 8 bits a pass. The keys are cut into one
 * block per thread; a pass is two ftsvm_for loops over the blocks: count
 * the digits of a block into its histogram, then compute from all
 * histograms where the block's keys go and scatter them. Both write only
 * what their inputs determine, into the other buffer, so a block done again
 * after a failure writes the same. Verified: sorted, and the same multiset
 * (sum and xor).   sort [N=262144] */
#include "app.h"

#define RADIX 256

static long n;
static uint32_t *keys[2];
static size_t nblocks;
static uint64_t *hist;   /* [nblocks][RADIX] */

static uint32_t key_of(long i)
{
    uint64_t x = (uint64_t)i * 0x9e3779b97f4a7c15ull + 12345;

    x ^= x >> 29;
    x *= 0xbf58476d1ce4e5b9ull;
    return (uint32_t)(x >> 32);
}

/* the keys of block b: [first, end) */
static void block_keys(size_t b, size_t *first, size_t *end)
{
    *first = (size_t)n * b / nblocks;
    *end   = (size_t)n * (b + 1) / nblocks;
}

static void make_keys(size_t first_block, size_t count, void *arg)
{
    size_t b, i, first, end;

    (void)arg;
    for (b = first_block; b < first_block + count; b++) {
        block_keys(b, &first, &end);
        for (i = first; i < end; i++) {
            keys[0][i] = key_of((long)i);
        }
    }
}

static void count_digits(size_t first_block, size_t count, void *arg)
{
    int pass = *(const int *)arg;
    const uint32_t *src = keys[pass % 2];
    uint64_t digits[RADIX];
    size_t b, i, first, end;

    for (b = first_block; b < first_block + count; b++) {
        block_keys(b, &first, &end);
        memset(digits, 0, sizeof(digits));
        for (i = first; i < end; i++) {
            digits[(src[i] >> (8 * pass)) & 0xff]++;
        }
        memcpy(hist + b * RADIX, digits, sizeof(digits));
    }
}

static void scatter(size_t first_block, size_t count, void *arg)
{
    int pass = *(const int *)arg, d;
    const uint32_t *src = keys[pass % 2];
    uint32_t *dst = keys[(pass + 1) % 2];
    uint64_t offset[RADIX], total;
    size_t b, t, i, first, end;

    for (b = first_block; b < first_block + count; b++) {
        /* offset[d] = keys with smaller digits + this digit's keys of the
         * blocks before b */
        total = 0;
        for (d = 0; d < RADIX; d++) {
            uint64_t before = 0;

            for (t = 0; t < b; t++) {
                before += hist[t * RADIX + (size_t)d];
            }
            offset[d] = total + before;
            for (t = 0; t < nblocks; t++) {
                total += hist[t * RADIX + (size_t)d];
            }
        }
        block_keys(b, &first, &end);
        for (i = first; i < end; i++) {
            dst[offset[(src[i] >> (8 * pass)) & 0xff]++] = src[i];
        }
    }
}

int main(int argc, char **argv)
{
    double start, seconds;
    uint64_t sum = 0, want_sum = 0;
    uint32_t x = 0, want_x = 0;
    char size[32];
    int verified = 1, pass;
    long i;

    app_name = "sort";
    app_ok(ftsvm_init(&argc, &argv));
    n = app_arg(argc, argv, 1, 262144, 1, 1 << 26);
    keys[0] = app_alloc((size_t)n * sizeof(uint32_t));
    keys[1] = app_alloc((size_t)n * sizeof(uint32_t));
    /* one block per thread: a scatter dirties pages all over the array, and
     * each commit of a batch merges those that other nodes wrote meanwhile,
     * so fewer, larger chunks cost less here */
    nblocks = (size_t)ftsvm_threads();
    nblocks = nblocks < (size_t)n ? nblocks : (size_t)n;
    hist = app_alloc(nblocks * RADIX * sizeof(uint64_t));
    app_ok(ftsvm_barrier());
    start = app_now();
    app_ok(ftsvm_for(nblocks, 1, make_keys, NULL));
    for (pass = 0; pass < 4; pass++) {
        app_ok(ftsvm_for(nblocks, 1, count_digits, &pass));
        app_ok(ftsvm_for(nblocks, 1, scatter, &pass));
    }
    seconds = app_now() - start;
    { /* every node verifies (app_finish) */
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

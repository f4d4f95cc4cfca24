/* Blocked right-looking LU factorisation without pivoting of a diagonally
 * dominant N x N matrix, blocks of BS. Step k is two ftsvm_for loops over
 * blocks: the panel (blocks below and right of the diagonal block), then the
 * trailing update. The diagonal block k+1 is factored by the chunk that
 * makes its last update (in step k), block 0 by the chunk that fills it, so
 * no loop of its own waits for one block. The blocks are updated in place:
 * ftsvm_for commits each chunk exactly once, failures included. Verified by
 * max |L*U - A| on the lowest live node.   lu [N=256] [BS=32] */
#include "app.h"

static long n, bs, nb;
static double *M;

static double a_of(long i, long j)
{
    return 1.0 / (double)(i + j + 1) + (i == j ? (double)n : 0.0);
}

#define AT(i, j) M[(i) * n + (j)]

static void factor_diag(long k)
{
    long o = k * bs, i, j, p;

    for (p = o; p < o + bs; p++) {
        for (i = p + 1; i < o + bs; i++) {
            AT(i, p) /= AT(p, p);
            for (j = p + 1; j < o + bs; j++) {
                AT(i, j) -= AT(i, p) * AT(p, j);
            }
        }
    }
}

/* block (bi, k) below the diagonal: L = A * U_kk^-1 */
static void solve_below(long bi, long k)
{
    long o = k * bs, r0 = bi * bs, i, j, p;

    for (i = r0; i < r0 + bs; i++) {
        for (p = o; p < o + bs; p++) {
            AT(i, p) /= AT(p, p);
            for (j = p + 1; j < o + bs; j++) {
                AT(i, j) -= AT(i, p) * AT(p, j);
            }
        }
    }
}

/* block (k, bj) right of the diagonal: U = L_kk^-1 * A */
static void solve_right(long k, long bj)
{
    long o = k * bs, c0 = bj * bs, i, j, p;

    for (p = o; p < o + bs; p++) {
        for (i = p + 1; i < o + bs; i++) {
            for (j = c0; j < c0 + bs; j++) {
                AT(i, j) -= AT(i, p) * AT(p, j);
            }
        }
    }
}

static void update(long bi, long bj, long k)
{
    long r0 = bi * bs, c0 = bj * bs, o = k * bs, i, j, p;

    for (i = r0; i < r0 + bs; i++) {
        for (p = o; p < o + bs; p++) {
            double l = AT(i, p);

            for (j = c0; j < c0 + bs; j++) {
                AT(i, j) -= l * AT(p, j);
            }
        }
    }
}

/* block rows [first, first + count): the matrix, then the first diagonal block */
static void fill_block_rows(size_t first, size_t count, void *arg)
{
    long b, i, j;

    (void)arg;
    for (b = (long)first; b < (long)(first + count); b++) {
        for (i = b * bs; i < (b + 1) * bs; i++) {
            for (j = 0; j < n; j++) {
                AT(i, j) = a_of(i, j);
            }
        }
        if (b == 0) {
            factor_diag(0);
        }
    }
}

/* panel of step k: item 2t is block (k+1+t, k), item 2t+1 block (k, k+1+t) */
static void panel(size_t first, size_t count, void *arg)
{
    long k = *(const long *)arg;
    size_t t;

    for (t = first; t < first + count; t++) {
        if (t % 2 == 0) {
            solve_below(k + 1 + (long)(t / 2), k);
        } else {
            solve_right(k, k + 1 + (long)(t / 2));
        }
    }
}

/* trailing update of step k: item t is block (k+1 + t / m, k+1 + t % m) */
static void trailing(size_t first, size_t count, void *arg)
{
    long k = *(const long *)arg, m = nb - k - 1, i, j;
    size_t t;

    for (t = first; t < first + count; t++) {
        i = k + 1 + (long)t / m;
        j = k + 1 + (long)t % m;
        update(i, j, k);
        if (i == k + 1 && j == k + 1) {
            factor_diag(k + 1);   /* its last update was this one */
        }
    }
}

int main(int argc, char **argv)
{
    double start, seconds, err = 0, sum;
    char size[32];
    int verified = 1;
    long i, j, p, k;
    size_t items;

    app_name = "lu";
    app_ok(ftsvm_init(&argc, &argv));
    n  = app_arg(argc, argv, 1, 256, 8, 4096);
    bs = app_arg(argc, argv, 2, 32, 1, 1024);
    app_check(n % bs == 0, "N must be a multiple of the block size");
    nb = n / bs;
    M = app_alloc((size_t)(n * n) * sizeof(double));
    app_ok(ftsvm_barrier());
    start = app_now();
    app_ok(ftsvm_for((size_t)nb, app_chunk((size_t)nb, 1), fill_block_rows, NULL));
    for (k = 0; k < nb - 1; k++) {
        items = 2 * (size_t)(nb - k - 1);
        app_ok(ftsvm_for(items, app_chunk(items, 1), panel, &k));
        items = (size_t)(nb - k - 1) * (size_t)(nb - k - 1);
        app_ok(ftsvm_for(items, app_chunk(items, 2), trailing, &k));
    }
    seconds = app_now() - start;
    { /* every node verifies (app_finish) */
        for (i = 0; i < n; i++) {
            for (j = 0; j < n; j++) {
                sum = 0;
                for (p = 0; p <= (i < j ? i : j); p++) {
                    sum += (p == i ? 1.0 : AT(i, p)) * AT(p, j);
                }
                err = fmax(err, fabs(sum - a_of(i, j)));
            }
        }
        verified = err < 1e-9 * (double)n;
    }
    snprintf(size, sizeof(size), "%ld/%ld", n, bs);
    return app_finish(size, seconds, verified);
}

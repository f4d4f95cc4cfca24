/* Blocked right-looking LU factorisation without pivoting of a diagonally
 * dominant N x N matrix, blocks of BS: the diagonal block, then the panel,
 * then the trailing update, with barriers between; blocks dealt round-robin.
 * Verified by max |L*U - A| on node 0.   lu [N=256] [BS=32] */
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

static void worker(int tid, int nthreads)
{
    size_t first, end;
    long i, j, k, t;

    app_share((size_t)n, tid, nthreads, &first, &end);
    for (i = (long)first; i < (long)end; i++) {
        for (j = 0; j < n; j++) {
            AT(i, j) = a_of(i, j);
        }
    }
    app_ok(ftsvm_barrier());
    for (k = 0; k < nb; k++) {
        if (k % nthreads == tid) {
            factor_diag(k);
        }
        app_ok(ftsvm_barrier());
        for (t = 0, i = k + 1; i < nb; i++, t += 2) {
            if (t % nthreads == tid) {
                solve_below(i, k);
            }
            if ((t + 1) % nthreads == tid) {
                solve_right(k, i);
            }
        }
        app_ok(ftsvm_barrier());
        for (i = k + 1; i < nb; i++) {
            for (j = k + 1; j < nb; j++) {
                if ((i * nb + j) % nthreads == tid) {
                    update(i, j, k);
                }
            }
        }
        app_ok(ftsvm_barrier());
    }
}

int main(int argc, char **argv)
{
    double start, seconds, err = 0, sum;
    char size[32];
    int verified = 1;
    long i, j, p;

    app_name = "lu";
    app_ok(ftsvm_init(&argc, &argv));
    n  = app_arg(argc, argv, 1, 256, 8, 4096);
    bs = app_arg(argc, argv, 2, 32, 1, 1024);
    app_check(n % bs == 0, "N must be a multiple of the block size");
    nb = n / bs;
    M = app_alloc((size_t)(n * n) * sizeof(double));
    app_ok(ftsvm_barrier());
    start = app_now();
    app_run(worker);
    seconds = app_now() - start;
    if (ftsvm_node() == 0) {
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

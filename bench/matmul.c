/* Dense matrix multiply C = A x B (N x N doubles). Rows are the chunks of
 * two ftsvm_for loops: fill A and B, then compute C (a row computed again
 * after a failure writes the same values). Verified exactly against a
 * sequential product (small integers).
 *   matmul [N=256] */
#include "app.h"

static long n;
static double *A, *B, *C;

static double a_of(long i, long k) { return (double)((i * 7 + k * 3) % 11) - 5.0; }
static double b_of(long k, long j) { return (double)((k * 5 + j * 2) % 13) - 6.0; }

static void fill_rows(size_t first, size_t count, void *arg)
{
    long i, k;

    (void)arg;
    for (i = (long)first; i < (long)(first + count); i++) {
        for (k = 0; k < n; k++) {
            A[i * n + k] = a_of(i, k);
            B[i * n + k] = b_of(i, k);
        }
    }
}

static void multiply_rows(size_t first, size_t count, void *arg)
{
    long i, j, k;
    double sum;

    (void)arg;
    for (i = (long)first; i < (long)(first + count); i++) {
        for (j = 0; j < n; j++) {
            sum = 0;
            for (k = 0; k < n; k++) {
                sum += A[i * n + k] * B[k * n + j];
            }
            C[i * n + j] = sum;
        }
    }
}

int main(int argc, char **argv)
{
    double start, seconds, sum;
    char size[32];
    int verified = 1;
    long i, j, k;

    app_name = "matmul";
    app_ok(ftsvm_init(&argc, &argv));
    n = app_arg(argc, argv, 1, 256, 4, 4096);
    A = app_alloc((size_t)(n * n) * sizeof(double));
    B = app_alloc((size_t)(n * n) * sizeof(double));
    C = app_alloc((size_t)(n * n) * sizeof(double));
    app_ok(ftsvm_barrier());
    start = app_now();
    app_ok(ftsvm_for((size_t)n, app_chunk((size_t)n, 2), fill_rows, NULL));
    app_ok(ftsvm_for((size_t)n, app_chunk((size_t)n, 4), multiply_rows, NULL));
    seconds = app_now() - start;
    { /* every node verifies (app_finish) */
        for (i = 0; i < n && verified; i++) {
            for (j = 0; j < n; j++) {
                sum = 0;
                for (k = 0; k < n; k++) {
                    sum += a_of(i, k) * b_of(k, j);
                }
                if (C[i * n + j] != sum) {
                    verified = 0;
                    break;
                }
            }
        }
    }
    snprintf(size, sizeof(size), "%ld", n);
    return app_finish(size, seconds, verified);
}

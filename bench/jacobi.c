/* Jacobi stencil on an N x N grid: one ftsvm_for per sweep whose chunks are
 * bands of rows, read from one grid and written to the other (a band
 * computed again after a failure writes the same values). Verified bit for
 * bit against a sequential run.   jacobi [N=512] [sweeps=50] */
#include "app.h"

static long n, sweeps;
static double *grid[2];

static void init_grid(double *g)
{
    long j;

    for (j = 0; j < n; j++) {
        g[j] = 1.0;   /* hot top row, the rest cold */
    }
}

static void sweep_rows(const double *a, double *b, long first, long end)
{
    long i, j;

    for (i = first; i < end; i++) {
        if (i == 0 || i == n - 1) {
            memcpy(b + i * n, a + i * n, (size_t)n * sizeof(double));
            continue;
        }
        b[i * n] = a[i * n];
        b[i * n + n - 1] = a[i * n + n - 1];
        for (j = 1; j < n - 1; j++) {
            b[i * n + j] = 0.25 * (a[(i - 1) * n + j] + a[(i + 1) * n + j] +
                                   a[i * n + j - 1] + a[i * n + j + 1]);
        }
    }
}

static void init_grids(size_t first, size_t count, void *arg)
{
    (void)first;
    (void)count;
    (void)arg;
    init_grid(grid[0]);
    init_grid(grid[1]);
}

static void sweep_band(size_t first, size_t count, void *arg)
{
    long s = *(const long *)arg;

    sweep_rows(grid[s % 2], grid[(s + 1) % 2], (long)first, (long)(first + count));
}

int main(int argc, char **argv)
{
    double start, seconds, *a, *b;
    char size[64];
    int verified = 1;
    long s;

    app_name = "jacobi";
    app_ok(ftsvm_init(&argc, &argv));
    n      = app_arg(argc, argv, 1, 512, 8, 8192);
    sweeps = app_arg(argc, argv, 2, 50, 1, 100000);
    grid[0] = app_alloc((size_t)(n * n) * sizeof(double));
    grid[1] = app_alloc((size_t)(n * n) * sizeof(double));
    app_ok(ftsvm_barrier());
    start = app_now();
    app_ok(ftsvm_for(1, 1, init_grids, NULL));
    for (s = 0; s < sweeps; s++) {
        double t0 = app_now();

        /* ftsvm_for returns once every band of the sweep is visible here */
        app_ok(ftsvm_for((size_t)n, app_chunk((size_t)n, 1), sweep_band, &s));
        app_step_log(s, t0, app_now());
    }
    seconds = app_now() - start;
    { /* every node verifies (app_finish) */
        a = calloc((size_t)(n * n), sizeof(double));
        b = calloc((size_t)(n * n), sizeof(double));
        app_check(a && b, "out of memory");
        init_grid(a);
        init_grid(b);
        for (s = 0; s < sweeps; s++) {
            sweep_rows(s % 2 ? b : a, s % 2 ? a : b, 0, n);
        }
        verified = !memcmp(sweeps % 2 ? b : a, grid[sweeps % 2], (size_t)(n * n) * sizeof(double));
        free(a);
        free(b);
    }
    snprintf(size, sizeof(size), "%ldx%ld/%ld", n, n, sweeps);
    return app_finish(size, seconds, verified);
}

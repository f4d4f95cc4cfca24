/* Modified Gram-Schmidt: orthonormalise N column vectors of length M. Step k
 * is one ftsvm_for over the columns j > k: orthogonalise column j against
 * column k (already normalised); the chunk of column k+1 then normalises it
 * for the next step (column 0 is normalised by the chunk that fills it).
 * Columns are updated in place: ftsvm_for commits each chunk exactly once,
 * failures included. Verified by max |Q^T Q - I| on the lowest live node.
 *   mgs [M=256] [N=128] */
#include "app.h"

static long m, ncols;
static double *V;   /* column j at V + j*m */

static void normalise(double *v)
{
    double norm = 0;
    long i;

    for (i = 0; i < m; i++) {
        norm += v[i] * v[i];
    }
    norm = sqrt(norm);
    for (i = 0; i < m; i++) {
        v[i] /= norm;
    }
}

static void fill_columns(size_t first, size_t count, void *arg)
{
    long i, j;

    (void)arg;
    for (j = (long)first; j < (long)(first + count); j++) {
        for (i = 0; i < m; i++) {
            V[j * m + i] = (i == j ? 2.0 : 0.0) + 1.0 / (double)(i + j + 1);
        }
        if (j == 0) {
            normalise(V);
        }
    }
}

/* step k: item t is column k + 1 + t */
static void orthogonalise(size_t first, size_t count, void *arg)
{
    long k = *(const long *)arg, i, j;
    const double *vk = V + k * m;
    double r, *vj;
    size_t t;

    for (t = first; t < first + count; t++) {
        j = k + 1 + (long)t;
        vj = V + j * m;
        r = 0;
        for (i = 0; i < m; i++) {
            r += vk[i] * vj[i];
        }
        for (i = 0; i < m; i++) {
            vj[i] -= r * vk[i];
        }
        if (j == k + 1) {
            normalise(vj);   /* no later step of this column before it pivots */
        }
    }
}

int main(int argc, char **argv)
{
    double start, seconds, err = 0, dot;
    char size[32];
    int verified = 1;
    long i, j, k;
    size_t items;

    app_name = "mgs";
    app_ok(ftsvm_init(&argc, &argv));
    m     = app_arg(argc, argv, 1, 256, 2, 1 << 16);
    ncols = app_arg(argc, argv, 2, 128, 1, 4096);
    app_check(ncols <= m, "N must not exceed M");
    V = app_alloc((size_t)(m * ncols) * sizeof(double));
    app_ok(ftsvm_barrier());
    start = app_now();
    app_ok(ftsvm_for((size_t)ncols, app_chunk((size_t)ncols, 1), fill_columns, NULL));
    for (k = 0; k < ncols - 1; k++) {
        double t0 = app_now();

        items = (size_t)(ncols - k - 1);
        app_ok(ftsvm_for(items, app_chunk(items, 1), orthogonalise, &k));
        app_step_log(k, t0, app_now());
    }
    seconds = app_now() - start;
    { /* every node verifies (app_finish) */
        for (j = 0; j < ncols; j++) {
            for (k = 0; k <= j; k++) {
                dot = 0;
                for (i = 0; i < m; i++) {
                    dot += V[j * m + i] * V[k * m + i];
                }
                err = fmax(err, fabs(dot - (j == k ? 1.0 : 0.0)));
            }
        }
        verified = err < 1e-8;
    }
    snprintf(size, sizeof(size), "%ldx%ld", m, ncols);
    return app_finish(size, seconds, verified);
}

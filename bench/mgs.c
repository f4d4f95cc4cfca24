/* Modified Gram-Schmidt: orthonormalise N column vectors of length M. Step k:
 * the owner of column k normalises it; barrier; every thread orthogonalises
 * its columns j > k against it; barrier. Verified by max |Q^T Q - I|.
 *   mgs [M=256] [N=128] */
#include "app.h"

static long m, ncols;
static double *V;   /* column j at V + j*m */

static void worker(int tid, int nthreads)
{
    long i, j, k;
    double norm, r, *vk, *vj;

    for (j = tid; j < ncols; j += nthreads) {
        for (i = 0; i < m; i++) {
            V[j * m + i] = (i == j ? 2.0 : 0.0) + 1.0 / (double)(i + j + 1);
        }
    }
    app_ok(ftsvm_barrier());
    for (k = 0; k < ncols; k++) {
        vk = V + k * m;
        if (k % nthreads == tid) {
            norm = 0;
            for (i = 0; i < m; i++) {
                norm += vk[i] * vk[i];
            }
            norm = sqrt(norm);
            for (i = 0; i < m; i++) {
                vk[i] /= norm;
            }
        }
        app_ok(ftsvm_barrier());
        for (j = k + 1; j < ncols; j++) {
            if (j % nthreads != tid) {
                continue;
            }
            vj = V + j * m;
            r = 0;
            for (i = 0; i < m; i++) {
                r += vk[i] * vj[i];
            }
            for (i = 0; i < m; i++) {
                vj[i] -= r * vk[i];
            }
        }
        app_ok(ftsvm_barrier());
    }
}

int main(int argc, char **argv)
{
    double start, seconds, err = 0, dot;
    char size[32];
    int verified = 1;
    long i, j, k;

    app_name = "mgs";
    app_ok(ftsvm_init(&argc, &argv));
    m     = app_arg(argc, argv, 1, 256, 2, 1 << 16);
    ncols = app_arg(argc, argv, 2, 128, 1, 4096);
    app_check(ncols <= m, "N must not exceed M");
    V = app_alloc((size_t)(m * ncols) * sizeof(double));
    app_ok(ftsvm_barrier());
    start = app_now();
    app_run(worker);
    seconds = app_now() - start;
    if (ftsvm_node() == 0) {
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

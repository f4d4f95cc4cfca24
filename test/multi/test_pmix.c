/*
 * The same binaries started by a real launcher through PMIx: Open MPI's
 * mpirun (Debian 12's openmpi-bin), with no ftsvm-run involved.
 */
#include "run_util.h"

#include <criterion/criterion.h>

static run_result_t mpirun(const char *nodes, char *const app[])
{
    char *argv[16] = { "mpirun", "--oversubscribe", "-n", (char *)nodes, "-x", "FTSVM_THREADS",
                       NULL };
    char *const env[] = { "OMPI_ALLOW_RUN_AS_ROOT=1", "OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1",
                          "FTSVM_THREADS=2", "FTSVM_RDV=", NULL };
    int i, n = 6;
    run_result_t r;

    for (i = 0; app[i] != NULL && n < 15; i++) {
        argv[n++] = app[i];
    }
    argv[n] = NULL;
    r = run_cmd(argv, env, 110);
    cr_log_info("%s", r.output);
    return r;
}

Test(pmix, transport_starts_under_mpirun, .timeout = 120) {
    char *const app[] = { NODE_DIR "/rma_node", "putget", NULL };
    run_result_t r = mpirun("3", app);

    cr_assert(!r.timed_out && r.exited && r.code == 0, "exit %d:\n%s", r.code, r.output);
    cr_assert_eq(run_count(r.output, "putget passed"), 3, "%s", r.output);
}

Test(pmix, public_api_identity_under_mpirun, .timeout = 120) {
    char *const app[] = { NODE_DIR "/api_node", "ids", NULL };
    run_result_t r = mpirun("3", app);

    cr_assert(!r.timed_out && r.exited && r.code == 0, "exit %d:\n%s", r.code, r.output);
    cr_assert_eq(run_count(r.output, "ids ok"), 3, "%s", r.output);
    cr_assert(strstr(r.output, "node 2 of 3: ids ok") != NULL, "%s", r.output);
}

/*
 * The same binaries started by a real launcher through PMIx: Open MPI's
 * mpirun (Debian 12's openmpi-bin), with no ftsvm-run involved.
 */
#include "run_util.h"

#include <criterion/criterion.h>

/* mpirun with FTSVM_THREADS=2; `fault` (or NULL) is passed as FTSVM_FAULT,
 * `spares` (or NULL) as FTSVM_SPARES, and `recovery` adds
 * --enable-recovery (mpirun keeps the others running when one process
 * dies). */
static run_result_t mpirun_spares(const char *nodes, char *const app[], const char *fault,
                                  int recovery, const char *spares)
{
    char *argv[24] = { "mpirun", "--oversubscribe", "-n", (char *)nodes, "-x", "FTSVM_THREADS",
                       NULL };
    char fault_var[128], spares_var[64];
    char *env[] = { "OMPI_ALLOW_RUN_AS_ROOT=1", "OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1",
                    "FTSVM_THREADS=2", "FTSVM_RDV=", "FTSVM_SHARED_SIZE=16M", NULL, NULL, NULL };
    int i, n = 6, e = 5;
    run_result_t r;

    if (fault != NULL) {
        snprintf(fault_var, sizeof(fault_var), "FTSVM_FAULT=%s", fault);
        env[e++] = fault_var;
        argv[n++] = "-x";
        argv[n++] = "FTSVM_FAULT";
    }
    if (spares != NULL) {
        snprintf(spares_var, sizeof(spares_var), "FTSVM_SPARES=%s", spares);
        env[e++] = spares_var;
        argv[n++] = "-x";
        argv[n++] = "FTSVM_SPARES";
    }
    if (recovery) {
        argv[n++] = "--enable-recovery";
    }
    for (i = 0; app[i] != NULL && n < 23; i++) {
        argv[n++] = app[i];
    }
    argv[n] = NULL;
    r = run_cmd(argv, env, 110);
    cr_log_info("%s", r.output);
    return r;
}

static run_result_t mpirun_with(const char *nodes, char *const app[], const char *fault,
                                int recovery)
{
    return mpirun_spares(nodes, app, fault, recovery, NULL);
}

static run_result_t mpirun(const char *nodes, char *const app[])
{
    return mpirun_with(nodes, app, NULL, 0);
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

/* A rank SIGKILLs itself in the middle of an ftsvm_for loop (FTSVM_FAULT):
 * under mpirun --enable-recovery the survivors run its chunks again, every
 * item exactly once, and mpirun exits 0 (it reports the killed rank only
 * in its own messages). Without that option mpirun ends every rank. */
Test(pmix, survivors_verify_after_a_kill_under_mpirun, .timeout = 120) {
    char *const app[] = { NODE_DIR "/for_node", "items", "600", "5,7", "20000", NULL };
    run_result_t r = mpirun_with("3", app, "for-chunk:8@1", 1);

    cr_assert(!r.timed_out, "timed out:\n%s", r.output);
    cr_assert(r.exited && r.code == 0, "exit %d:\n%s", r.code, r.output);
    cr_assert(strstr(r.output, "removed=1") != NULL, "node 1 was not removed:\n%s", r.output);
    cr_assert_eq(run_count(r.output, "for_node: items verified on node 0"), 1, "%s", r.output);
}

/* A rank dies during start-up (after the key exchange, FTSVM_FAULT
 * boot-keys): the start-up rounds go through node 0's rendezvous, not
 * PMIx_Fence (lib/runtime/rdv_serve.c), so the others start without it,
 * with the rank absent from the first view, and every item is processed
 * once by the survivors. Rank 0 serves the rendezvous: it is the victim of
 * the second case, killed in the first barrier, and the others go on. */
Test(pmix, a_rank_lost_in_start_up_is_left_out_under_mpirun, .timeout = 120) {
    char *const app[] = { NODE_DIR "/for_node", "items", "600", "5,7", "2000", NULL };
    static const char *const faults[] = { "boot-keys@2", "boot-barrier@0" };
    static const char *const removed[] = { "removed=2 cause=start-up",
                                           "removed=0 cause=start-up" };
    int i;

    for (i = 0; i < 2; i++) {
        run_result_t r = mpirun_with("4", app, faults[i], 1);

        cr_assert(!r.timed_out, "%s: timed out:\n%s", faults[i], r.output);
        cr_assert(r.exited && r.code == 0, "%s: exit %d:\n%s", faults[i], r.code, r.output);
        cr_assert(strstr(r.output, removed[i]) != NULL, "%s: not left out at start-up:\n%s",
                  faults[i], r.output);
        cr_assert_eq(run_count(r.output, "for_node: items verified on node"), 1, "%s: %s",
                     faults[i], r.output);
    }
}

/* Spares through PMIx: the last FTSVM_SPARES ranks. 3 application ranks
 * and a spare; rank 1 SIGKILLs itself in the loop: the spare takes its
 * rows (its redundancy event says it homes rank 1's share), the
 * application saw 3 nodes, and the spare learns the end of the job from
 * the application ranks (the bootstrap is detached) and exits 0. */
Test(pmix, a_spare_takes_over_under_mpirun, .timeout = 120) {
    char *const app[] = { NODE_DIR "/for_node", "items", "600", "5,7", "20000", NULL };
    run_result_t r = mpirun_spares("4", app, "for-chunk:8@1", 1, "1");
    unsigned long long bytes, homes, landed;

    cr_assert(!r.timed_out, "timed out:\n%s", r.output);
    cr_assert(r.exited && r.code == 0, "exit %d:\n%s", r.code, r.output);
    cr_assert(strstr(r.output, "removed=1") != NULL, "rank 1 was not removed:\n%s", r.output);
    /* 3 application nodes: a period of 3 x 2 rows, 4 homed by each */
    cr_assert(run_redundancy_event(r.output, 3, 1, &bytes, &homes, &landed) && homes == 4 &&
              bytes > 0 && landed == bytes, "the spare did not take rank 1's rows:\n%s",
              r.output);
    cr_assert(strstr(r.output, "(600 items, 2 calls, 3 nodes x 2 threads)") != NULL,
              "the application saw the spare:\n%s", r.output);
}

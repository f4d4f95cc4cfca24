/*
 * Page replication across real nodes (replica_node): at every step of the
 * two-phase propagation a node stops itself (FTSVM_STOP_AT) and another node
 * reads every home and the markers and asserts that step's invariant and
 * what a failure there would decide; the debug check of both homes finds a
 * difference made behind the protocol's back; the HLRC litmus tests pass
 * with one home and with two.
 */
#include "run_util.h"

#include <criterion/criterion.h>

static run_result_t replica(const char *nodes, char *const args[], const char *env1,
                            const char *env2)
{
    char *argv[12] = { FTSVM_RUN, "-n", (char *)nodes, "--timeout", "100",
                       NODE_DIR "/replica_node" };
    char *env[5] = { "FTSVM_SHARED_SIZE=16M", "FTSVM_LOG_LEVEL=info", (char *)env1,
                     (char *)env2, NULL };
    int i, n = 6;

    for (i = 0; args[i] != NULL && n < 11; i++) {
        argv[n++] = args[i];
    }
    argv[n] = NULL;
    run_result_t r = run_cmd(argv, env, 110);
    cr_log_info("%s", r.output);
    return r;
}

static void stop_at(const char *point, const char *k)
{
    char spec[96], want[96];
    char *const args[] = { "stop", (char *)point, (char *)k, NULL };
    run_result_t r;

    snprintf(spec, sizeof(spec), "FTSVM_STOP_AT=%s%s%s@1#3", point, k ? ":" : "",
             k ? k : "");
    r = replica("3", args, spec, NULL);
    cr_assert(!r.timed_out, "%s timed out:\n%s", spec, r.output);
    cr_assert(r.exited && r.code == 0, "%s: exit %d\n%s", spec, r.code, r.output);
    snprintf(want, sizeof(want), "stopping at %s%s%s of interval 3", point, k ? ":" : "",
             k ? k : "");
    cr_assert(strstr(r.output, want) != NULL, "node 1 never stopped:\n%s", r.output);
    snprintf(want, sizeof(want), "invariant of %s%s%s holds", point, k ? ":" : "",
             k ? k : "");
    cr_assert(strstr(r.output, want) != NULL, "%s", r.output);
    cr_assert(strstr(r.output, "both homes hold round B") != NULL, "%s", r.output);
}

/* One test per stop point, in protocol order. */
#define STOP_TEST(_name, _point, _k)                          \
    Test(stop_point, _name, .timeout = 120) {                 \
        stop_at(_point, _k);                                  \
    }

STOP_TEST(before_phase1_nothing_is_written, "before-phase1", NULL)
STOP_TEST(phase1_pending_every_primary_is_pending, "phase1-pending", NULL)
STOP_TEST(phase1_diffs_1_of_8_pages_at_their_primaries, "phase1-diffs", "1")
STOP_TEST(phase1_diffs_5_of_8_pages_at_their_primaries, "phase1-diffs", "5")
STOP_TEST(next_release_every_primary_holds_the_diffs_still_pending, "next-release", NULL)
STOP_TEST(phase1_applied_primaries_applied_no_secondary_has_it, "phase1-applied", NULL)
STOP_TEST(phase2_pending_every_secondary_is_pending, "phase2-pending", NULL)
STOP_TEST(phase2_diffs_3_of_8_pages_at_their_secondaries, "phase2-diffs", "3")
STOP_TEST(phase2_applied_secondaries_applied_last_behind_next, "phase2-applied", NULL)
STOP_TEST(last_release_both_homes_identical, "last-release", NULL)

Test(replication, home_check_finds_a_difference_between_the_two_homes, .timeout = 120) {
    char *const args[] = { "corrupt", NULL };
    run_result_t r = replica("3", args, "FTSVM_CHECK_HOMES=y", NULL);

    cr_assert(r.exited && r.code == 0, "exit %d\n%s", r.code, r.output);
    cr_assert(strstr(r.output, "the home check found the difference") != NULL, "%s",
              r.output);
    cr_assert(strstr(r.output, "byte 100 is 0x00 at primary node") != NULL, "%s", r.output);
}

Test(replication, lock_check_finds_a_secondary_record_that_differs, .timeout = 120) {
    char *const args[] = { "corrupt-lock", NULL };
    run_result_t r = replica("3", args, "FTSVM_CHECK_HOMES=y", NULL);

    cr_assert(r.exited && r.code == 0, "exit %d\n%s", r.code, r.output);
    cr_assert(strstr(r.output, "the lock check found the difference") != NULL, "%s", r.output);
    /* which of nodes 0 and 1 queued last varies; the planted tail does not */
    cr_assert(strstr(r.output, "lock 0: the primary (node 0) records tail ") != NULL, "%s",
              r.output);
    cr_assert(strstr(r.output, "the secondary (node 1) tail 2 and") != NULL, "%s", r.output);
}

Test(replication, stop_at_with_a_bad_point_is_refused_at_start, .timeout = 60) {
    char *const args[] = { "stop", "next-release", NULL };
    run_result_t r = replica("2", args, "FTSVM_STOP_AT=next-relase@1", NULL);

    cr_assert(r.exited && r.code != 0, "exit %d\n%s", r.code, r.output);
    cr_assert(strstr(r.output, "FTSVM_STOP_AT: 'next-relase@1': unknown point") != NULL,
              "%s", r.output);
}

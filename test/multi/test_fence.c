/*
 * Fencing (DESIGN.md section 7, fail-stop enforced): a node stopped in the
 * middle of a release (FTSVM_STOP_AT, after the first page's runs of phase
 * 1) is removed by the others (its heartbeat stands still), then continued
 * (SIGCONT). Had it kept its way into the survivors' memory, it would write
 * the rest of its runs into homes that recovery has just rolled back
 * (guarantee 3). fence_node checks at each survivor that not one byte of its
 * home store changed after the removal and that no home holds the stopped
 * node's unfinished interval.
 *
 * Over shared memory its writes are its own stores into its mapping of the
 * survivors' segments: the survivors, on its host, kill it before they
 * adopt the view. Over TCP they reach a survivor only through its
 * endpoint, which the removal closes.
 */
#include "run_util.h"

#include <criterion/criterion.h>

/* node 1 stops at `point` of its interval 3 (before it is durable) */
static run_result_t stopped_writer(const char *point, const char *tls)
{
    char stop_at[64], want[96];
    char *const env[] = { "FTSVM_SHARED_SIZE=16M", "FTSVM_REPLICAS=2", "FTSVM_LOG_LEVEL=info",
                          stop_at, "FTSVM_HB_TIMEOUT=0.5",
                          "FTSVM_HB_INTERVAL=0.02", (char *)tls,
                          /* LeakSanitizer's exit-time tracer may wait forever on a
                           * process that was stopped and continued */
                          "ASAN_OPTIONS=abort_on_error=0:detect_leaks=0", NULL };
    char *const argv[] = { FTSVM_RUN, "-n", "3", "--timeout", "100",
                           NODE_DIR "/fence_node", "stopped-writer", NULL };
    run_result_t r;

    snprintf(stop_at, sizeof(stop_at), "FTSVM_STOP_AT=%s@1#3", point);
    snprintf(want, sizeof(want), "stopping at %s of interval 3", point);
    r = run_cmd(argv, env, 110);
    cr_log_info("%s", r.output);
    cr_assert(!r.timed_out, "timed out:\n%s", r.output);
    cr_assert(strstr(r.output, want) != NULL, "node 1 never stopped:\n%s", r.output);
    cr_assert(strstr(r.output, "node 0: node 1 stopped in the middle of phase 1") != NULL,
              "node 0 never saw node 1 stopped:\n%s", r.output);
    cr_assert(strstr(r.output, "node 0: continued node 1 after its removal") != NULL,
              "%s", r.output);
    /* each survivor: nothing changed; both end well */
    cr_assert(strstr(r.output, "node 0: no home byte changed after node 1's removal") != NULL,
              "node 0's home store changed:\n%s", r.output);
    cr_assert(strstr(r.output, "node 2: no home byte changed after node 1's removal") != NULL,
              "node 2's home store changed:\n%s", r.output);
    cr_assert(strstr(r.output, "| node 0: exit 0 |") != NULL, "%s", r.output);
    cr_assert(strstr(r.output, "| node 2: exit 0 |") != NULL, "%s", r.output);
    return r;
}

/* over shared memory the survivors on its host shoot it before they adopt
 * the view */
static void shot(const char *point)
{
    run_result_t r = stopped_writer(point, "UCX_TLS=");

    cr_assert(run_count(r.output, "node 1 removed while alive on this host: killed it "
                                  "(fencing)") >= 1, "no survivor fenced node 1:\n%s",
              r.output);
    cr_assert(strstr(r.output, "| node 1: signal 9") != NULL, "%s", r.output);
    cr_assert(strstr(r.output, "still running after its removal") == NULL, "%s", r.output);
}

/* after the first page's runs: 7 pages' runs still to go */
Test(fence, stopped_mid_phase1_removed_then_continued_changes_no_home_over_shared_memory,
     .timeout = 150) {
    shot("phase1-diffs:1");
}

/* pending entries set, every run still to go */
Test(fence, stopped_phase1_pending_removed_then_continued_changes_no_home_over_shared_memory,
     .timeout = 150) {
    shot("phase1-pending");
}

Test(fence, stopped_mid_phase1_removed_then_continued_changes_no_home_over_tcp,
     .timeout = 150) {
    run_result_t r = stopped_writer("phase1-diffs:1", "UCX_TLS=tcp,self");

    /* not shot: the closed endpoints are the fence */
    cr_assert(strstr(r.output, "killed it (fencing)") == NULL, "%s", r.output);
}

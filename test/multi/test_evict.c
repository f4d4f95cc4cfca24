/*
 * Planned eviction (ftsvm-run --evict, SIGUSR2; lib/api/api.c, the barrier
 * of lib/hlrc/barrier.c, the hand-over of lib/replica/rereplicate.c): a
 * node asked to leave goes at its next ftsvm_for batch boundary or barrier,
 * exits 0, and is removed as "evicted", not as a failure. Real nodes
 * through ftsvm-run; the request is a real SIGUSR2.
 *
 * - during an ftsvm_for loop: it leaves at a batch boundary, every item
 *   runs exactly once, both homes of every page agree (FTSVM_CHECK_HOMES);
 * - with FTSVM_EVICT_AT=barrier: it hands its homes over first (every
 *   member says so), so its removal leaves no row with one home (no
 *   re-replication after it);
 * - a failure after an eviction is survived;
 * - the last application node does not leave; a spare asked to leave just
 *   leaves.
 */
#include "run_util.h"

#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* node `node` left on purpose, and nothing in the run was a failure */
static void expect_evicted(const run_result_t *r, int node, int survivors)
{
    char text[96];

    snprintf(text, sizeof(text), "node %d: exit 0, asked to leave at ", node);
    cr_assert(strstr(r->output, text) != NULL, "node %d did not leave with exit 0:\n%s", node,
              run_text(r->output));
    snprintf(text, sizeof(text), "removed=%d cause=evicted ", node);
    cr_assert_eq(run_count(r->output, text), survivors,
                 "not every survivor removed node %d as evicted:\n%s", node,
                 run_text(r->output));
    snprintf(text, sizeof(text), "failure of node %d", node);
    cr_assert(strstr(r->output, text) == NULL, "the summary calls it a failure:\n%s",
              run_text(r->output));
    snprintf(text, sizeof(text), "ftsvm: node %d: evicted: it leaves the job", node);
    cr_assert(strstr(r->output, text) != NULL, "node %d did not say it leaves:\n%s", node,
              run_text(r->output));
}

/* FTSVM_CHECK_HOMES found no difference, and the loop verified once */
static void expect_homes_agree_and_verified(const run_result_t *r)
{
    cr_assert(strstr(r->output, "differ between their two homes") == NULL &&
              strstr(r->output, "home check") == NULL, "the homes differ:\n%s",
              run_text(r->output));
    cr_assert_eq(run_count(r->output, "for_node: items verified on node"), 1,
                 "no survivor verified:\n%s", run_text(r->output));
}

Test(evict, evicted_during_a_loop_it_leaves_at_a_batch_boundary_loop_exactly_once,
     .timeout = 120) {
    char *const env[] = { "FTSVM_SHARED_SIZE=16M", "FTSVM_CHECK_HOMES=y", NULL };
    char *const argv[] = { FTSVM_RUN, "-n", "4", "--threads", "2", "--evict", "2@1.5",
                           "--timeout", "100", NODE_DIR "/for_node", "items", "20000",
                           "50,70", "40000", NULL };
    run_result_t r = run_cmd(argv, env, 120);

    run_expect_survived(r, "4", "--evict 2@1.5");
    expect_evicted(&r, 2, 3);
    cr_assert(strstr(r.output, "failures injected: 0") != NULL, "%s", run_text(r.output));
    /* at a batch boundary nothing is handed over: the rows are copied after */
    cr_assert_geq(run_count(r.output, "[ftsvm-event redundancy view=1 "), 3,
                  "the survivors did not restore two homes after it left:\n%s",
                  run_text(r.output));
    cr_assert(strstr(r.output, "runs again here") == NULL,
              "a chunk of the evicted node ran again:\n%s", run_text(r.output));
    expect_homes_agree_and_verified(&r);
}

Test(evict, evicted_at_a_barrier_it_hands_its_homes_over_before_it_leaves, .timeout = 120) {
    char *const env[] = { "FTSVM_SHARED_SIZE=16M", "FTSVM_CHECK_HOMES=y",
                          "FTSVM_EVICT_AT=barrier", NULL };
    char *const argv[] = { FTSVM_RUN, "-n", "4", "--threads", "2", "--evict", "2@1.5",
                           "--timeout", "100", NODE_DIR "/for_node", "items", "20000",
                           "50,70", "40000", "barriers", NULL };
    run_result_t r = run_cmd(argv, env, 120);

    run_expect_survived(r, "4", "--evict 2@1.5 at a barrier");
    expect_evicted(&r, 2, 3);
    /* every member, the leaving node included, names the new homes */
    cr_assert_eq(run_count(r.output, "[ftsvm-event handover node=2 rows=6 "), 4,
                 "not every member finished the hand-over:\n%s", run_text(r.output));
    cr_assert(strstr(r.output, "homes=0 landed=0]") != NULL,
              "the leaving node still homes rows:\n%s", run_text(r.output));
    /* so its removal left every row with two homes: nothing to copy after */
    cr_assert(strstr(r.output, "[ftsvm-event redundancy view=1 ") == NULL,
              "rows lost a home when it left:\n%s", run_text(r.output));
    expect_homes_agree_and_verified(&r);
}

Test(evict, a_failure_after_an_eviction_is_survived, .timeout = 150) {
    char *const env[] = { "FTSVM_SHARED_SIZE=16M", "FTSVM_CHECK_HOMES=y",
                          "FTSVM_EVICT_AT=barrier", NULL };
    char *const argv[] = { FTSVM_RUN, "-n", "5", "--threads", "2", "--evict", "2@1.5",
                           "--kill", "1@4", "--timeout", "130", NODE_DIR "/for_node",
                           "items", "40000", "50,70", "40000", "barriers", NULL };
    run_result_t r = run_cmd(argv, env, 150);

    run_expect_survived(r, "5", "--evict 2@1.5 --kill 1@4");
    expect_evicted(&r, 2, 4);
    cr_assert(strstr(r.output, "node 1: signal 9, injected at 4.00 s") != NULL,
              "node 1 was not killed:\n%s", run_text(r.output));
    cr_assert_geq(run_count(r.output, "[ftsvm-event redundancy view=2 "), 3,
                  "redundancy did not come back after the failure:\n%s", run_text(r.output));
    expect_homes_agree_and_verified(&r);
}

Test(evict, the_last_application_node_stays, .timeout = 120) {
    char *const env[] = { "FTSVM_SHARED_SIZE=16M", NULL };
    char *const argv[] = { FTSVM_RUN, "-n", "2", "--threads", "2", "--evict", "0@1.5",
                           "--evict", "1@1.5", "--timeout", "100", NODE_DIR "/for_node",
                           "items", "20000", "50,70", "40000", NULL };
    run_result_t r = run_cmd(argv, env, 120);

    run_expect_survived(r, "2", "--evict 0@1.5 --evict 1@1.5");
    cr_assert_eq(run_count(r.output, "evicted: it leaves the job"), 1,
                 "not exactly one node left:\n%s", run_text(r.output));
    cr_assert(strstr(r.output, "it is the last application node: it stays") != NULL,
              "the last node did not say it stays:\n%s", run_text(r.output));
    cr_assert_eq(run_count(r.output, "for_node: items verified on node"), 1,
                 "the last node did not verify:\n%s", run_text(r.output));
}

Test(evict, a_spare_asked_to_leave_just_leaves, .timeout = 120) {
    char *const env[] = { "FTSVM_SHARED_SIZE=16M", NULL };
    char *const argv[] = { FTSVM_RUN, "-n", "3", "--spares", "1", "--threads", "2",
                           "--evict", "3@1.5", "--timeout", "100", NODE_DIR "/for_node",
                           "items", "20000", "50", "40000", NULL };
    run_result_t r = run_cmd(argv, env, 120);

    run_expect_survived(r, "3+1", "--evict 3@1.5");
    expect_evicted(&r, 3, 3);
    cr_assert(strstr(r.output, "the application lost node") == NULL,
              "the application heard of the spare:\n%s", run_text(r.output));
    cr_assert_eq(run_count(r.output, "for_node: items verified on node"), 1,
                 "no survivor verified:\n%s", run_text(r.output));
}

/*
 * Failures (DESIGN.md sections 1, 7, 8): a node SIGKILLs itself at a named
 * point (FTSVM_FAULT) in the middle of an ftsvm_for loop on 3 and 4 nodes;
 * the survivors must finish, and every item must have been processed
 * exactly once (for_node "items" checks out[i] == calls x (i + 1) and one
 * run per chunk on every survivor). Exactly-once after a failure is
 * guarantees 2 and 3 at work: a chunk's writes and its commit travel in one
 * release, so the dead node's unfinished chunk left nothing behind.
 */
#include "run_util.h"

#include <criterion/criterion.h>
#include <criterion/parameterized.h>
#include <stdio.h>

static void survive(const char *nodes, const char *fault)
{
    char env_fault[96];
    char *const env[] = { "FTSVM_SHARED_SIZE=16M", env_fault, NULL };
    char *const argv[] = { FTSVM_RUN, "-n", (char *)nodes, "--threads", "2", "--timeout",
                           "100", NODE_DIR "/for_node", "items", "400", "5,7", "3000",
                           NULL };

    snprintf(env_fault, sizeof(env_fault), "FTSVM_FAULT=%s", fault);
    run_result_t r = run_cmd(argv, env, 110);
    run_expect_survived(r, nodes, fault);
    cr_assert_eq(run_count(r.output, "for_node: items verified on node"), 1,
                 "%s nodes, %s: no survivor verified\n%s", nodes, fault, r.output);
}

#define FAULT_TEST(_name, _fault)                                   \
    Test(failure, _name##_on_3_nodes, .timeout = 120) {             \
        survive("3", _fault);                                       \
    }                                                               \
    Test(failure, _name##_on_4_nodes, .timeout = 120) {             \
        survive("4", _fault);                                       \
    }

/* the propagation points of a release */
FAULT_TEST(killed_before_phase1, "before-phase1:3@1")
FAULT_TEST(killed_with_phase1_pending, "phase1-pending:3@1")
FAULT_TEST(killed_mid_phase2_diffs, "phase2-diffs:1@1")
FAULT_TEST(killed_mid_phase1_diffs, "phase1-diffs:1@1")
FAULT_TEST(killed_after_next_release, "next-release:3@1")
FAULT_TEST(killed_after_last_release, "last-release:3@1")
/* locks, a lock's home, the markers' backup, barriers, fetches, chunks */
FAULT_TEST(killed_holding_a_lock, "lock-held:3@1")
FAULT_TEST(killed_waiting_for_a_lock, "lock-wait:3@1")
FAULT_TEST(killed_as_the_lock_primary_home, "lock-home:3@0")
FAULT_TEST(killed_holding_markers, "backup:5@1")
FAULT_TEST(killed_mid_fetch, "fetch:20@2")
FAULT_TEST(killed_mid_chunk, "for-chunk:2@1")

/*
 * A node cut off the network (ftsvm-run --netns puts every node in a
 * network namespace of its own; --cut takes one node's link down): it is
 * alive but unreachable. It must see that it lost most of the view and
 * fence itself (exit 75, which the launcher counts as expected for a cut
 * node), and the others must remove it and finish the loop exactly once.
 * Its chunks sleep, so the job outlasts the cut whatever the machine's
 * speed; the cut comes well after start-up (which takes some 0.3 s here).
 */
Test(failure, cut_off_node_fences_itself_and_the_survivors_verify, .timeout = 200) {
    char *const env[] = { "FTSVM_SHARED_SIZE=16M", NULL };
    char *const argv[] = { FTSVM_RUN, "-n", "4", "--threads", "2", "--netns", "--cut",
                           "2@1.5", "--timeout", "150", NODE_DIR "/for_node", "items",
                           "1200", "5,7", "40000", NULL };

    if (geteuid() != 0) {
        cr_skip_test("--netns needs root");
    }
    run_result_t r = run_cmd(argv, env, 180);
    run_expect_survived(r, "4", "--cut 2@1.5");
    cr_assert(strstr(r.output, "node 2: exit 75, fenced, cut off at 1.50 s") != NULL,
              "node 2 did not fence itself:\n%s", r.output);
    cr_assert(strstr(r.output, "failure of node 2: detection ") != NULL,
              "no survivor reported node 2's removal:\n%s", r.output);
    cr_assert_eq(run_count(r.output, "for_node: items verified on node"), 1,
                 "no survivor verified:\n%s", r.output);
}

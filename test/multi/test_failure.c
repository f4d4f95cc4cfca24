/*
 * Failures (DESIGN.md sections 1, 7, 8): a node SIGKILLs itself at a named
 * point (FTSVM_FAULT) in the middle of an ftsvm_for loop on 3 and 4 nodes;
 * the survivors must finish, and every item must have been processed
 * exactly once (for_node "items" checks out[i] == calls x (i + 1) and one
 * run per chunk on every survivor). Exactly-once after a failure is
 * guarantees 2 and 3 at work: a chunk's writes and its commit travel in one
 * release, so the dead node's unfinished chunk left nothing behind. The
 * same holds for ftsvm_for_reduce: the survivors' results are exact
 * (reduce_node). And what is not exactly once (section_node): a sibling
 * thread's release makes a half-done critical section of the dead node
 * durable, while the same update in ftsvm_for is made exactly once.
 */
#include "run_util.h"

#include <criterion/criterion.h>
#include <criterion/parameterized.h>
#include <stdio.h>
#include <stdlib.h>

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

static void survive_reduce(const char *nodes, const char *fault)
{
    char env_fault[96];
    char *const env[] = { "FTSVM_SHARED_SIZE=16M", env_fault, NULL };
    char *const argv[] = { FTSVM_RUN, "-n", (char *)nodes, "--threads", "2", "--timeout",
                           "100", NODE_DIR "/reduce_node", "400", "5,7", "1000", NULL };

    snprintf(env_fault, sizeof(env_fault), "FTSVM_FAULT=%s", fault);
    run_result_t r = run_cmd(argv, env, 110);
    run_expect_survived(r, nodes, fault);
    cr_assert(strstr(r.output, "injected by FTSVM_FAULT") != NULL, "%s nodes, %s: no node "
              "died at the point\n%s", nodes, fault, r.output);
    cr_assert_eq(run_count(r.output, "reduce_node: reductions exact on node"),
                 atoi(nodes) - 1, "%s nodes, %s: not every survivor exact\n%s", nodes, fault,
                 r.output);
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

/* ftsvm_for_reduce: node 1 dies with chunks run, their partials written and
 * not committed; the survivors' sums, span and histogram are exact */
Test(failure, reduction_exact_when_killed_mid_chunk_on_3_nodes, .timeout = 150) {
    survive_reduce("3", "for-chunk:2@1");
}
Test(failure, reduction_exact_when_killed_mid_chunk_on_4_nodes, .timeout = 150) {
    survive_reduce("4", "for-chunk:3@2");
}

/* the same with a SIGKILL from outside at a moment nobody chose: node 1 dies
 * in the first reductions (chunks of 20 ms, 120 a loop on 6 threads: five
 * loops of ~0.4 s after a start-up of 0.3 to 0.8 s here) */
Test(failure, reduction_exact_when_a_node_is_killed_mid_loop, .timeout = 200) {
    char *const env[] = { "FTSVM_SHARED_SIZE=16M", NULL };
    char *const argv[] = { FTSVM_RUN, "-n", "3", "--threads", "2", "--kill", "1@1.0",
                           "--timeout", "150", NODE_DIR "/reduce_node", "600", "5", "20000",
                           NULL };
    run_result_t r = run_cmd(argv, env, 180);

    run_expect_survived(r, "3", "--kill 1@1.0");
    cr_assert(strstr(r.output, "node 1: signal 9, injected at 1.00 s") != NULL,
              "node 1 was not killed:\n%s", r.output);
    cr_assert_eq(run_count(r.output, "reduce_node: reductions exact on node"), 2,
                 "not every survivor exact:\n%s", r.output);
}

/*
 * Partial critical sections with SMP nodes (DESIGN.md section 1). Node 1
 * debits account A under A's lock; a sibling thread then releases a lock of
 * its own, which publishes the node's interval, the debit included; node 1
 * dies (FTSVM_FAULT=lock-held:3@1) as it takes B's lock to credit B. The
 * survivors must see A 90 and B 0: locks are not atomic under failures.
 */
Test(failure, a_siblings_release_makes_a_half_done_critical_section_durable,
     .timeout = 120) {
    char *const env[] = { "FTSVM_SHARED_SIZE=16M", "FTSVM_FAULT=lock-held:3@1", NULL };
    char *const argv[] = { FTSVM_RUN, "-n", "3", "--threads", "2", "--timeout", "100",
                           NODE_DIR "/section_node", "lock", NULL };
    run_result_t r = run_cmd(argv, env, 110);

    run_expect_survived(r, "3", "lock-held:3@1");
    cr_assert(strstr(r.output, "node 1: signal 9, injected by FTSVM_FAULT") != NULL,
              "node 1 did not die at its third lock:\n%s", r.output);
    cr_assert_eq(run_count(r.output, "section_node: half-done transfer is durable"), 2,
                 "the survivors did not both find A 90, B 0:\n%s", r.output);
}

/* The same transfer as ftsvm_for chunks: node 1 stops inside a chunk between
 * debit and credit, after a sibling thread's chunk finished whole, and is
 * killed (--kill 1@1.5); the survivors find every transfer made once. */
Test(failure, the_same_transfer_in_ftsvm_for_is_exactly_once, .timeout = 120) {
    char *const env[] = { "FTSVM_SHARED_SIZE=16M", NULL };
    char *const argv[] = { FTSVM_RUN, "-n", "3", "--threads", "2", "--kill", "1@1.5",
                           "--timeout", "100", NODE_DIR "/section_node", "for", NULL };
    run_result_t r = run_cmd(argv, env, 110);

    run_expect_survived(r, "3", "--kill 1@1.5");
    cr_assert(strstr(r.output, "node 1 debited account") != NULL &&
              strstr(r.output, "finished whole, and stops before the credit") != NULL,
              "node 1 was not stopped mid-chunk after a sibling's chunk:\n%s", r.output);
    cr_assert(strstr(r.output, "node 1: signal 9, injected at 1.50 s") != NULL,
              "node 1 was not killed:\n%s", r.output);
    cr_assert_eq(run_count(r.output, "section_node: every transfer exactly once"), 2,
                 "the survivors did not both verify:\n%s", r.output);
}

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

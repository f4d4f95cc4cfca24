/*
 * Release consistency across nodes (svm_node): litmus tests with their
 * forbidden outcome asserted over many iterations, on one page and spread
 * over pages; false sharing; a lock-protected counter; in-node lock passing
 * without messages; bad input.
 */
#include "run_util.h"

#include <criterion/criterion.h>

static run_result_t svm(const char *nodes, const char *threads, const char *test,
                        const char *layout, char *const extra_env[])
{
    char *const argv[] = { FTSVM_RUN, "-n", (char *)nodes, "--threads", (char *)threads,
                           "--timeout", "100", NODE_DIR "/svm_node", (char *)test,
                           (char *)layout, NULL };
    char *env[8] = { "FTSVM_SHARED_SIZE=16M", NULL };
    int i;

    for (i = 0; extra_env != NULL && extra_env[i] != NULL && i < 6; i++) {
        env[i + 1] = extra_env[i];
    }
    run_result_t r = run_cmd(argv, env, 110);
    cr_log_info("%s", r.output);
    return r;
}

static void expect_pass(const char *nodes, const char *threads, const char *test,
                        const char *layout)
{
    run_result_t r = svm(nodes, threads, test, layout, NULL);
    char want[64];
    int n = atoi(nodes);

    cr_assert(!r.timed_out, "%s timed out:\n%s", test, r.output);
    cr_assert(r.exited && r.code == 0, "%s on %s nodes x %s threads (%s): exit %d\n%s", test,
              nodes, threads, layout, r.code, r.output);
    snprintf(want, sizeof(want), ": %s%s passed", test, layout[0] ? " (spread)" : "");
    cr_assert_eq(run_count(r.output, want), n, "%s", r.output);
}

/* each litmus test on one page and on separate pages */
#define LITMUS(_test, _nodes, _threads)                                              \
    Test(svm, _test##_one_page, .timeout = 120) {                                    \
        expect_pass(_nodes, _threads, #_test, "");                                    \
    }                                                                                \
    Test(svm, _test##_separate_pages, .timeout = 120) {                              \
        expect_pass(_nodes, _threads, #_test, "spread");                              \
    }

LITMUS(mp_lock, "3", "1")        /* message passing through a lock */
LITMUS(mp_barrier, "3", "1")     /* message passing through a barrier */
LITMUS(chain, "3", "1")          /* causality chain through two locks */
LITMUS(writers, "3", "1")        /* two (three) writers under one lock, lock order */
LITMUS(coherence, "3", "1")      /* repeated reads under a lock never go back */
LITMUS(slots, "3", "2")          /* every thread's write seen by all after a barrier */

Test(svm, false_sharing_of_bytes_across_nodes, .timeout = 120) {
    expect_pass("3", "2", "false", "");
}

Test(svm, lock_counter_is_exact_over_nodes_and_threads, .timeout = 120) {
    expect_pass("4", "2", "counter", "");
    expect_pass("2", "1", "counter", "spread");
}

Test(svm, lock_passed_inside_a_node_sends_no_message, .timeout = 120) {
    char *const env[] = { "FTSVM_STATS=y", NULL };
    run_result_t r = svm("2", "4", "local", "", env);

    cr_assert(r.exited && r.code == 0, "exit %d:\n%s", r.code, r.output);
    /* 4 threads x 200 acquisitions: one request for the first, then the
     * lock stays on node 0 and passes among its threads */
    cr_assert(strstr(r.output, "[0] ftsvm[0] info: stats locks: remote_acquires 1, "
                     "local_acquires 799, requests_sent 1, forwards_sent 0") != NULL,
              "%s", r.output);
}

Test(svm, shared_malloc_and_free_across_nodes, .timeout = 120) {
    expect_pass("3", "1", "malloc", "");
}

Test(svm, bad_input_gives_clear_errors, .timeout = 120) {
    run_result_t r = svm("2", "1", "bad", "", NULL);

    cr_assert(r.exited && r.code == 0, "exit %d:\n%s", r.code, r.output);
    cr_assert(strstr(r.output, "ftsvm_alloc: 0 bytes is empty") != NULL, "%s", r.output);
    cr_assert(strstr(r.output, "does not come from ftsvm_malloc") != NULL, "%s", r.output);
    cr_assert(strstr(r.output, "is not held by this node") != NULL, "%s", r.output);
}

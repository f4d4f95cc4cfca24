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

/* Nobody waits behind more than the queue ahead of it: the lock reaches the
 * nodes exactly in the order its primary home (node 0 for lock 3) queued
 * their requests. */
Test(svm, lock_grants_follow_the_queue_order, .timeout = 120) {
    char *const env[] = { "FTSVM_LOG_LEVEL=debug", NULL };
    run_result_t r = svm("3", "1", "fair", "", env);
    char queue[4096] = "", *at, *line;
    const char *needle = "[0] ftsvm[0] debug: lock 3: node ";
    size_t len = 0;

    cr_assert(r.exited && r.code == 0, "exit %d:\n%s", r.code, r.output);
    for (at = strstr(r.output, needle); at != NULL; at = strstr(at + 1, needle)) {
        int requester = atoi(at + strlen(needle));

        if (strncmp(strchr(at + strlen(needle), ' '), " queued", 7) == 0 &&
            len + 8 < sizeof(queue)) {
            len += (size_t)snprintf(queue + len, sizeof(queue) - len, " %d", requester);
        }
    }
    line = strstr(r.output, "node 0: holders");
    cr_assert(line != NULL, "%s", r.output);
    line += strlen("node 0: holders");
    cr_assert(len > 0 && strncmp(line, queue, len) == 0 && line[len] == '\n',
              "the lock went to%.*s\nthe queue was%s", (int)(strchr(line, '\n') - line), line,
              queue);
}

static int replicated(void)
{
    const char *r = getenv("FTSVM_REPLICAS");

    return r == NULL || strcmp(r, "1") != 0;
}

/* the value of counter `name` in node `node`'s "stats locks" line */
static long lock_counter(const char *output, int node, const char *name)
{
    char prefix[64];
    const char *line, *at;

    snprintf(prefix, sizeof(prefix), "[%d] ftsvm[%d] info: stats locks:", node, node);
    line = strstr(output, prefix);
    if (line == NULL) {
        return -1;
    }
    at = strstr(line, name);
    return (at != NULL && at < strchr(line, '\n')) ? atol(at + strlen(name) + 1) : -1;
}

Test(svm, remote_acquire_takes_request_forward_grant_with_the_ack_beside, .timeout = 120) {
    char *const env[] = { "FTSVM_STATS=y", NULL };
    run_result_t r = svm("3", "1", "handoff", "", env);

    cr_assert(r.exited && r.code == 0, "exit %d:\n%s", r.code, r.output);
    /* lock 0: primary node 0, secondary node 1; node 2 held it, node 0 takes it.
     * Critical path: request (0 -> 0), forward (0 -> 2), grant (2 -> 0). */
    cr_assert_eq(lock_counter(r.output, 0, "requests_sent"), 1, "%s", r.output);
    cr_assert_eq(lock_counter(r.output, 0, "forwards_sent"), 1, "%s", r.output);
    cr_assert_eq(lock_counter(r.output, 2, "grants_sent"), 1, "%s", r.output);
    if (replicated()) {
        /* two queueings, each mirrored to the secondary and acked by it (to
         * the primary for the free lock, to node 2 for node 0) */
        cr_assert_eq(lock_counter(r.output, 0, "mirrors_sent"), 2, "%s", r.output);
        cr_assert_eq(lock_counter(r.output, 1, "acks_sent"), 2, "%s", r.output);
        cr_assert_eq(lock_counter(r.output, 0, "grants_sent"), 1, "free lock: %s", r.output);
        cr_assert_eq(lock_counter(r.output, 2, "vt_saves"), 1, "%s", r.output);
    } else {
        cr_assert_eq(lock_counter(r.output, 0, "mirrors_sent"), 0, "%s", r.output);
        cr_assert_eq(lock_counter(r.output, 1, "acks_sent"), 0, "%s", r.output);
        cr_assert_eq(lock_counter(r.output, 2, "vt_saves"), 0, "%s", r.output);
    }
}

Test(svm, holder_hands_on_only_after_the_secondarys_ack, .timeout = 120) {
    char *const env[] = { "FTSVM_STATS=y", "FTSVM_LOCK_ACK_DELAY_MS=300", NULL };
    run_result_t r = svm("3", "1", "handoff", "", env);
    const char *at;
    double ms;

    cr_assert(r.exited && r.code == 0, "exit %d:\n%s", r.code, r.output);
    at = strstr(r.output, "remote acquire took ");
    cr_assert(at != NULL, "%s", r.output);
    ms = atof(at + strlen("remote acquire took "));
    if (replicated()) {
        /* node 2 had the forward at once, the ack 300 ms later */
        cr_assert_geq(ms, 300.0, "the holder handed on before the ack:\n%s", r.output);
        cr_assert_geq(lock_counter(r.output, 2, "held_for_ack"), 1, "%s", r.output);
    } else {
        cr_assert_lt(ms, 300.0, "one home: no ack to wait for\n%s", r.output);
    }
}

/*
 * Failures one after another (re-replication, lib/replica/rereplicate.c):
 * after a failure every placement row that lost a home gets a new one, and
 * a later failure is survived like the first. Real nodes through ftsvm-run,
 * real SIGKILLs: node 1 at 1.5 s (start-up takes 0.3 to 0.8 s here, over 1 s under load), then
 * `--kill N@redundancy` once a survivor has said that redundancy is back.
 *
 * - two failures on 5 nodes, in an ftsvm_for loop, with FTSVM_CHECK_HOMES
 *   (both homes of every page and lock compared at the barrier after the
 *   loop and at finalize): every item exactly once, homes alike;
 * - the same with token_node: guarantees 2 and 3 at the homes themselves
 *   for the threads of both failed nodes, both homes of every token page
 *   alike;
 * - three failures on 6 nodes, each after redundancy is back: the job
 *   finishes on 3 and verifies;
 * - the second failure during the copy, of a node holding the only copy of
 *   rows: a clear error naming a row, no hang, every survivor non-zero.
 */
#include "run_util.h"

#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define EVENT "[ftsvm-event redundancy view="

/* every survivor said "redundancy is back" in `view` */
static void expect_redundancy(const run_result_t *r, int view, int survivors)
{
    char tag[64];

    snprintf(tag, sizeof(tag), EVENT "%d ", view);
    cr_assert_geq(run_count(r->output, tag), survivors,
                  "fewer than %d survivors said redundancy is back in view %d:\n%s",
                  survivors, view, run_text(r->output));
}

/* the summary's figures of the failure of `node` end with its restore time */
static void expect_summary_redundancy(const run_result_t *r, int node)
{
    char text[64];
    const char *at, *end, *restored;

    snprintf(text, sizeof(text), "failure of node %d: detection ", node);
    at = strstr(r->output, text);
    cr_assert(at != NULL, "the summary has no figures for node %d:\n%s", node, run_text(r->output));
    end = strstr(at, " | ");
    restored = strstr(at, ", redundancy restored in ");
    cr_assert(restored != NULL && (end == NULL || restored < end),
              "the summary has no restore time for node %d:\n%s", node, run_text(r->output));
}

Test(rereplicate, two_failures_one_after_another_on_5_nodes_loop_exactly_once,
     .timeout = 200) {
    char *const env[] = { "FTSVM_SHARED_SIZE=16M", "FTSVM_CHECK_HOMES=y", NULL };
    char *const argv[] = { FTSVM_RUN, "-n", "5", "--threads", "2", "--kill", "1@1.5",
                           "--kill", "3@redundancy", "--timeout", "150",
                           NODE_DIR "/for_node", "items", "2000", "5,7", "40000", NULL };
    run_result_t r = run_cmd(argv, env, 180);

    run_expect_survived(r, "5", "--kill 1@1.5 --kill 3@redundancy");
    cr_assert(strstr(r.output, "node 1: signal 9, injected at 1.50 s") != NULL &&
              strstr(r.output, "node 3: signal 9, injected at ") != NULL,
              "nodes 1 and 3 were not both killed:\n%s", run_text(r.output));
    expect_redundancy(&r, 1, 3);
    expect_redundancy(&r, 2, 3);
    expect_summary_redundancy(&r, 1);
    expect_summary_redundancy(&r, 3);
    cr_assert(strstr(r.output, "differ between their two homes") == NULL &&
              strstr(r.output, "home check") == NULL,
              "the homes differ after the copy:\n%s", run_text(r.output));
    cr_assert_eq(run_count(r.output, "for_node: items verified on node"), 1,
                 "no survivor verified:\n%s", run_text(r.output));
}

/* token_node's log of 10 threads (test_tokens.c): per thread the last
 * release returned and called, and the intervals the homes hold (-1: not
 * reported). One pass; sscanf on a copy of the line (on the whole output
 * it would measure the rest of it at every call). */
typedef struct token_log {
    long released[10], calling[10], hi[10], lo[10];
} token_log_t;

static void token_parse(const char *output, token_log_t *log)
{
    const char *at;
    int t;

    for (t = 0; t < 10; t++) {
        log->released[t] = log->calling[t] = 0;
        log->hi[t] = log->lo[t] = -1;
    }
    for (at = output; (at = strstr(at, "tok ")) != NULL; at += 4) {
        char line[80], what[16];
        const char *end = strchr(at, '\n');
        size_t len = (end != NULL) ? (size_t)(end - at) : strlen(at);
        long k, k2;
        int thread, n;

        snprintf(line, sizeof(line), "%.*s", (int)(len < 79 ? len : 79), at);
        n = sscanf(line, "tok %15s %d %ld %ld", what, &thread, &k, &k2);
        if (n < 3 || thread < 0 || thread >= 10) {
            continue;
        }
        if (!strcmp(what, "released") && k > log->released[thread]) {
            log->released[thread] = k;
        } else if (!strcmp(what, "calling") && k > log->calling[thread]) {
            log->calling[thread] = k;
        } else if (!strcmp(what, "seen") && n == 4) {
            log->hi[thread] = k;
            log->lo[thread] = k2;
        }
    }
}

#define TOKEN_INTERVALS 6000

/* token_node's checks for every thread of the failed nodes: a release that
 * returned is at the homes, nothing written after the last release called
 * is anywhere (a sibling's release may publish one more). Its output is
 * megabytes: only its tail goes into Criterion's messages (run_text). */
Test(rereplicate, two_failures_one_after_another_on_5_nodes_guarantees_2_and_3,
     .timeout = 200) {
    char *const env[] = { "FTSVM_SHARED_SIZE=16M", "FTSVM_CHECK_HOMES=y", NULL };
    char *const argv[] = { FTSVM_RUN, "-n", "5", "--threads", "2", "--kill", "1@1.5",
                           "--kill", "3@redundancy", "--timeout", "150",
                           NODE_DIR "/token_node", "6000", "12", NULL };
    run_result_t r = run_cmd(argv, env, 180);
    token_log_t log;
    int t, failed, cut = 0;

    run_expect_survived(r, "5", "--kill 1@1.5 --kill 3@redundancy");
    expect_redundancy(&r, 1, 3);
    expect_redundancy(&r, 2, 3);
    token_parse(r.output, &log);
    for (t = 0; t < 10; t++) {
        cr_assert(log.hi[t] >= 0, "no survivor reported thread %d:\n%s", t,
                  run_text(r.output));
        failed = (t / 2 == 1 || t / 2 == 3);
        cr_assert_leq(log.released[t], log.lo[t], "thread %d: release %ld returned, a home "
                      "holds %ld:\n%s", t, log.released[t], log.lo[t], run_text(r.output));
        cr_assert_leq(log.hi[t], log.calling[t] + 1, "thread %d: interval %ld at the homes, "
                      "its last release called was %ld:\n%s", t, log.hi[t], log.calling[t],
                      run_text(r.output));
        if (!failed) {
            cr_assert_eq(log.lo[t], TOKEN_INTERVALS, "live thread %d: %ld at the homes:\n%s",
                         t, log.lo[t], run_text(r.output));
        } else {
            cut += (log.released[t] < TOKEN_INTERVALS);
        }
    }
    cr_assert_eq(cut, 4, "not every thread of nodes 1 and 3 was cut short:\n%s",
                 run_text(r.output));
}

Test(rereplicate, three_failures_on_6_nodes_each_after_redundancy_finish_on_3,
     .timeout = 300) {
    char *const env[] = { "FTSVM_SHARED_SIZE=16M", "FTSVM_CHECK_HOMES=y", NULL };
    char *const argv[] = { FTSVM_RUN, "-n", "6", "--threads", "2", "--kill", "1@1.5",
                           "--kill", "3@redundancy", "--kill", "5@redundancy", "--timeout",
                           "250", NODE_DIR "/for_node", "items", "3000", "5,7", "40000",
                           NULL };
    run_result_t r = run_cmd(argv, env, 280);

    run_expect_survived(r, "6", "--kill 1@1.5 --kill 3@redundancy --kill 5@redundancy");
    cr_assert(strstr(r.output, "node 5: signal 9, injected at ") != NULL,
              "node 5 was not killed:\n%s", run_text(r.output));
    expect_redundancy(&r, 1, 3);
    expect_redundancy(&r, 2, 3);
    expect_redundancy(&r, 3, 3);
    expect_summary_redundancy(&r, 5);
    cr_assert(strstr(r.output, "home check") == NULL, "the homes differ:\n%s", run_text(r.output));
    cr_assert_eq(run_count(r.output, "for_node: items verified on node"), 1,
                 "no survivor verified:\n%s", run_text(r.output));
}

/* node 2 dies as it copies its first row to a new home (FTSVM_FAULT=copy):
 * the rows whose homes were nodes 1 and 2 have no copy left. Every survivor
 * says so at once, naming the rows; whoever touches one ends with the error
 * naming its row. The job ends well within ftsvm-run's --timeout (a wait
 * for a home that no view brings back would end only there): the bound is
 * the launcher's own verdict, not a measured time. */
Test(rereplicate, second_failure_during_the_copy_of_the_only_copy_is_a_clear_error,
     .timeout = 200) {
    char *const env[] = { "FTSVM_SHARED_SIZE=16M", "FTSVM_FAULT=copy@2", NULL };
    char *const argv[] = { FTSVM_RUN, "-n", "5", "--threads", "2", "--kill", "1@1.5",
                           "--timeout", "100", NODE_DIR "/for_node", "items", "2000", "5,7",
                           "40000", NULL };
    run_result_t r = run_cmd(argv, env, 180);
    int node;

    cr_assert(!r.timed_out && strstr(r.output, "timed out after") == NULL,
              "the job did not end by itself (%.1f s):\n%s", r.seconds, run_text(r.output));
    cr_assert_lt(r.seconds, 50.0, "the job took %.1f s to end, half its --timeout:\n%s",
                 r.seconds, run_text(r.output));
    cr_assert(strstr(r.output, "node 2: signal 9, injected by FTSVM_FAULT") != NULL,
              "node 2 did not die in its copy:\n%s", run_text(r.output));
    cr_assert(strstr(r.output, "placement rows have no home left, their data is lost") != NULL,
              "no survivor said which rows were lost:\n%s", run_text(r.output));
    cr_assert(strstr(r.output, "both of its homes failed") != NULL ||
              strstr(r.output, "every home of the page failed") != NULL,
              "no clear error:\n%s", run_text(r.output));
    cr_assert(strstr(r.output, "(placement row ") != NULL,
              "the error names no row:\n%s", run_text(r.output));
    for (node = 0; node < 5; node++) {
        char text[32];

        snprintf(text, sizeof(text), "node %d: exit 0", node);
        cr_assert(strstr(r.output, text) == NULL, "node %d exited 0:\n%s", node,
                  run_text(r.output));
    }
    cr_assert(r.exited && r.code != 0, "the job exited 0:\n%s", run_text(r.output));
}

/* At a size users run: 8 application nodes and a spare, a 1 GB region of
 * which the loop writes 192 MB (two calls over 8 Mi items: an array per
 * call and one shared), and three failures one after another: node 3 dies
 * in its 100th chunk (FTSVM_FAULT, so the first failure falls inside the
 * loop however long start-up takes at this size), then 6 and 1, each once
 * a survivor said redundancy is back. Membership (issue 15, point 4): each
 * failure is a view of its own, the view numbers rise 1, 2, 3, and no
 * removed node comes back: the application hears of exactly these three.
 * The first copy moves tens of MB (node 3's share of what was written, to
 * the spare and the others), and both homes of every page agree after each
 * copy (FTSVM_CHECK_HOMES at the barriers and at finalize). */
Test(rereplicate, eight_nodes_and_a_spare_a_gigabyte_region_three_failures_one_after_another,
     .timeout = 900) {
    /* 9 node processes of 3 threads and more on 2 cores, copying 50-60
     * MB each time: heartbeats get a far longer leash than the default
     * 0.6 s. At 0.6 s and at 3 s a live node was removed by heartbeat in 1
     * of 3 runs here, after the three failures (a stall of seconds whose
     * cause is open, see issue 15's notes); that is not what this test is
     * about, and test_failure's no-false-suspicion test covers detection.
     * The later kills come 0.3 s after redundancy is back, not at once:
     * that moment is a burst of messages, and over UCX shared memory a
     * node killed while it writes one can leave its receiver deaf for good
     * (README, "Limit of UCX over shared memory"; bench/shm_jam). Once in
     * CI every survivor then fenced itself 100 s into view 3's recovery. */
    char *const env[] = { "FTSVM_SHARED_SIZE=1G", "FTSVM_CHECK_HOMES=y",
                          "FTSVM_FAULT=for-chunk:100@3", "FTSVM_HB_TIMEOUT=10", NULL };
    char *const argv[] = { FTSVM_RUN, "-n", "8", "--spares", "1", "--threads", "2",
                           "--kill", "6@redundancy+0.3", "--kill", "1@redundancy+0.3",
                           "--timeout", "700", NODE_DIR "/for_node", "items", "8388608",
                           "4096,8192", "40000", NULL };
    run_result_t r = run_cmd(argv, env, 800);
    unsigned long long bytes, homes, landed;

    run_expect_survived(r, "8+1", "FTSVM_FAULT=for-chunk:100@3 --kill 6@redundancy+0.3 "
                        "--kill 1@redundancy+0.3, 1 GB");
    cr_assert(strstr(r.output, "node 3: signal 9, injected by FTSVM_FAULT") != NULL &&
              strstr(r.output, "node 6: signal 9, injected at ") != NULL &&
              strstr(r.output, "node 1: signal 9, injected at ") != NULL,
              "nodes 3, 6 and 1 were not all killed:\n%s", run_text(r.output));
    cr_assert(strstr(r.output, "node 8: exit 0") != NULL, "the spare did not exit 0:\n%s",
              run_text(r.output));
    /* the survivors of each view, the spare among them, said so (but the
     * next victim, killed as soon as the first of them said it) */
    expect_redundancy(&r, 1, 7);
    expect_redundancy(&r, 2, 6);
    expect_redundancy(&r, 3, 6);
    cr_assert(run_redundancy_event(r.output, 0, 1, &bytes, &homes, &landed),
              "node 0 said nothing of view 1's redundancy:\n%s", run_text(r.output));
    cr_assert_geq(bytes, 16ull << 20, "the first copy moved only %llu bytes:\n%s", bytes,
                  run_text(r.output));
    cr_assert(strstr(r.output, "differ between their two homes") == NULL &&
              strstr(r.output, "home check") == NULL,
              "the homes differ after a copy:\n%s", run_text(r.output));
    cr_assert(strstr(r.output, ": view 1: the application lost node 3\n") != NULL &&
              strstr(r.output, ": view 2: the application lost node 6\n") != NULL &&
              strstr(r.output, ": view 3: the application lost node 1\n") != NULL,
              "the views are not 1, 2, 3 for nodes 3, 6, 1:\n%s", run_text(r.output));
    cr_assert(strstr(r.output, ": view 4: ") == NULL && strstr(r.output, ": view 0: ") == NULL,
              "a view other than the three failures':\n%s", run_text(r.output));
    cr_assert_eq(run_count(r.output, "for_node: items verified on node"), 1,
                 "no survivor verified:\n%s", run_text(r.output));
    cr_assert(strstr(r.output, "(8388608 items, 2 calls, 8 nodes x 2 threads)") != NULL,
              "the application saw the spare:\n%s", run_text(r.output));
}

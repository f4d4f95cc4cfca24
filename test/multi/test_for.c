/*
 * ftsvm_for across nodes (for_node): every item of a loop is processed
 * exactly once over 1, 2 and 3 nodes with several threads per node, with
 * chunk sizes that do not divide the loop, a loop longer than one window of
 * the task table, consecutive loops (generations of the table), an empty
 * loop and bad arguments; and, once failures are survivable, a node killed
 * in the middle of a loop. What would break exactly once is refused every
 * time: a lock, barrier, loop or finalize call from a chunk, or from another
 * thread of the node while a loop runs (FTSVM_ESTATE and a message that
 * says why). ftsvm_for_reduce (reduce_node) gives exact, bitwise
 * reproducible results over 1 to 3 nodes, in windows and between plain loops.
 */
#include "run_util.h"

#include <criterion/criterion.h>

/* NODE_DIR/program on `nodes` x `threads` through ftsvm-run, optionally
 * with --kill */
static run_result_t node_run(const char *program, const char *nodes, const char *threads,
                             char *const args[], char *const env[], const char *kill)
{
    char *argv[16] = { FTSVM_RUN, "-n", (char *)nodes, "--threads", (char *)threads,
                       "--timeout", "100" };
    char path[256];
    int argc = 7, i;

    if (kill != NULL) {
        argv[argc++] = "--kill";
        argv[argc++] = (char *)kill;
    }
    snprintf(path, sizeof(path), "%s/%s", NODE_DIR, program);
    argv[argc++] = path;
    for (i = 0; args[i] != NULL && argc < 15; i++) {
        argv[argc++] = args[i];
    }
    argv[argc] = NULL;
    run_result_t r = run_cmd(argv, env, 110);
    cr_log_info("%s", r.output);
    return r;
}

static run_result_t for_node(const char *nodes, const char *threads, char *const args[],
                             char *const env[], const char *kill)
{
    return node_run("for_node", nodes, threads, args, env, kill);
}

/* out[i] == calls * (i + 1) and one run per chunk, checked by every node */
static void expect_items(const char *nodes, const char *threads, const char *n,
                         const char *chunks)
{
    char *const args[] = { "items", (char *)n, (char *)chunks, NULL };
    char *const env[] = { "FTSVM_SHARED_SIZE=16M", NULL };
    run_result_t r = for_node(nodes, threads, args, env, NULL);

    cr_assert(!r.timed_out, "timed out:\n%s", r.output);
    cr_assert(r.exited && r.code == 0, "%s nodes x %s threads, n %s, chunks %s: exit %d\n%s",
              nodes, threads, n, chunks, r.code, r.output);
    cr_assert_eq(run_count(r.output, "for_node: items verified on node 0"), 1, "%s", r.output);
}

Test(ftsvm_for, every_item_once_on_one_node, .timeout = 120) {
    expect_items("1", "1", "1000", "7");
    expect_items("1", "3", "1000", "7,1000,64");
}

Test(ftsvm_for, every_item_once_on_two_nodes, .timeout = 120) {
    expect_items("2", "2", "1000", "7");
    expect_items("2", "1", "999", "10");
}

Test(ftsvm_for, every_item_once_on_three_nodes_with_threads, .timeout = 120) {
    expect_items("3", "2", "2000", "13");
    expect_items("3", "3", "1024", "1");
}

/* the last chunk is shorter; one chunk larger than the loop */
Test(ftsvm_for, chunks_that_do_not_divide_the_loop, .timeout = 120) {
    expect_items("3", "2", "1001", "3,1000,2000");
}

/* consecutive loops reuse the table: a new generation each, no reset */
Test(ftsvm_for, consecutive_loops_are_generations_of_one_table, .timeout = 120) {
    expect_items("2", "2", "500", "1,2,3,5,8,13,21");
}

/* more chunks than the table holds: the loop runs in windows */
Test(ftsvm_for, a_loop_longer_than_the_table_runs_in_windows, .timeout = 200) {
    expect_items("2", "2", "9000", "1,4000");
}

Test(ftsvm_for, an_empty_loop_runs_nothing, .timeout = 120) {
    expect_items("2", "2", "0", "1,5");
}

Test(ftsvm_for, bad_arguments_give_clear_errors, .timeout = 120) {
    char *const args[] = { "args", NULL };
    run_result_t r = for_node("2", "2", args, NULL, NULL);

    cr_assert(r.exited && r.code == 0, "exit %d:\n%s", r.code, r.output);
    cr_assert_eq(run_count(r.output, "bad arguments refused"), 2, "%s", r.output);
    cr_assert(strstr(r.output, "ftsvm_for before ftsvm_init") != NULL, "%s", r.output);
    cr_assert(strstr(r.output, "ftsvm_for: fn is NULL") != NULL, "%s", r.output);
    cr_assert(strstr(r.output, "ftsvm_for: chunk is 0") != NULL, "%s", r.output);
    cr_assert(strstr(r.output, "ftsvm_for: refused inside an ftsvm_for chunk") != NULL,
              "%s", r.output);
    cr_assert(strstr(r.output, "ftsvm_for_reduce: fn is NULL") != NULL, "%s", r.output);
    cr_assert(strstr(r.output, "ftsvm_for_reduce: chunk is 0") != NULL, "%s", r.output);
    cr_assert(strstr(r.output, "ftsvm_for_reduce: result is NULL") != NULL, "%s", r.output);
    cr_assert(strstr(r.output, "ftsvm_for_reduce: combine is NULL") != NULL, "%s", r.output);
    cr_assert(strstr(r.output, "ftsvm_for_reduce: a partial result of 0 bytes") != NULL,
              "%s", r.output);
    cr_assert(strstr(r.output, "ftsvm_for_reduce: a partial result of 16385 bytes") != NULL,
              "%s", r.output);
    cr_assert(strstr(r.output, "ftsvm_lock_acquire: lock 16777200 is reserved for the "
                     "library") != NULL, "%s", r.output);
    cr_assert(strstr(r.output, "ftsvm_lock_release: lock 16777200 is reserved for the "
                     "library") != NULL, "%s", r.output);
}

/* A node killed while it runs chunks: the survivors run its uncommitted
 * chunks again and every item is still processed exactly once (checked on
 * the survivors, the lowest one reports). Needs failure recovery (lib/failure);
 * run with TEST_FAILURES_SURVIVABLE=y once it is built. */
Test(ftsvm_for, chunks_of_a_killed_node_run_again_exactly_once, .timeout = 200) {
    char *const args[] = { "items", "600", "5,7", "20000", NULL };
    char *const env[] = { "FTSVM_SHARED_SIZE=16M", NULL };
    const char *enabled = getenv("TEST_FAILURES_SURVIVABLE");

    if (enabled == NULL || strcmp(enabled, "y") != 0) {
        cr_skip_test("failures are not survivable yet (set TEST_FAILURES_SURVIVABLE=y)");
    }
    /* 2 x (120 + 86) chunks of 20 ms on 6 threads: ~1.4 s; node 1 dies at 0.6 s */
    run_result_t r = for_node("3", "2", args, env, "1@0.6");

    cr_assert(!r.timed_out, "timed out:\n%s", r.output);
    cr_assert(r.exited && r.code == 0, "exit %d:\n%s", r.code, r.output);
    cr_assert_eq(run_count(r.output, "for_node: items verified on node 0"), 1, "%s", r.output);
}

/* the message of each refusal; `where` is "inside an ftsvm_for chunk" or
 * "while ftsvm_for runs on this node" */
static void expect_refused(const run_result_t *r, const char *const calls[], const char *where)
{
    char text[160];
    int i;

    for (i = 0; calls[i] != NULL; i++) {
        snprintf(text, sizeof(text), "%s: refused %s", calls[i], where);
        cr_assert(strstr(r->output, text) != NULL, "no \"%s\":\n%s", text, r->output);
    }
}

/* a chunk that adds to a counter under a lock (the obvious first try): the lock is refused
 * in every chunk, with everything else that releases or is collective, and
 * so is a sibling thread's lock, barrier or loop call while the loop runs */
Test(ftsvm_for, a_release_from_a_chunk_or_a_sibling_thread_is_refused, .timeout = 120) {
    static const char *const in_chunk[] = { "ftsvm_lock_acquire", "ftsvm_lock_release",
                                            "ftsvm_barrier", "ftsvm_for", "ftsvm_for_reduce",
                                            "ftsvm_finalize", "ftsvm_alloc", NULL };
    static const char *const beside[] = { "ftsvm_lock_acquire", "ftsvm_lock_release",
                                          "ftsvm_barrier", "ftsvm_for", "ftsvm_for_reduce",
                                          "ftsvm_finalize", NULL };
    char *const args[] = { "misuse", "40", "5000", NULL };
    char *const env[] = { "FTSVM_SHARED_SIZE=16M", NULL };
    run_result_t r = for_node("2", "2", args, env, NULL);

    cr_assert(!r.timed_out, "timed out:\n%s", r.output);
    cr_assert(r.exited && r.code == 0, "exit %d:\n%s", r.code, r.output);
    cr_assert_eq(run_count(r.output, "misuse refused in every chunk"), 2, "%s", r.output);
    cr_assert_eq(run_count(r.output, "another thread refused"), 2, "%s", r.output);
    expect_refused(&r, in_chunk, "inside an ftsvm_for chunk");
    expect_refused(&r, beside, "while ftsvm_for runs on this node");
    cr_assert(strstr(r.output, "applied twice if a failure made it run again") != NULL,
              "the message does not say why:\n%s", r.output);
}

/* failure or not: with node 1 killed mid-loop, every chunk, the re-run ones
 * included, was refused everything and ran once */
Test(ftsvm_for, a_release_from_a_chunk_is_refused_when_a_node_dies_too, .timeout = 200) {
    /* 200 chunks of 20 ms on 3 x 1 thread (the other thread takes a slot): ~1.3 s */
    char *const args[] = { "misuse", "200", "20000", NULL };
    char *const env[] = { "FTSVM_SHARED_SIZE=16M", NULL };
    run_result_t r = for_node("3", "2", args, env, "1@0.9");

    cr_assert(!r.timed_out, "timed out:\n%s", r.output);
    cr_assert(r.exited && r.code == 0, "exit %d:\n%s", r.code, r.output);
    cr_assert(strstr(r.output, "node 1: signal 9, injected") != NULL,
              "node 1 was not killed:\n%s", r.output);
    cr_assert_eq(run_count(r.output, "misuse refused in every chunk"), 2, "%s", r.output);
}

static run_result_t reduce_node(const char *nodes, const char *threads, char *const args[],
                                const char *kill)
{
    char *const env[] = { "FTSVM_SHARED_SIZE=16M", NULL };

    return node_run("reduce_node", nodes, threads, args, env, kill);
}

static void expect_reduced(const char *nodes, const char *threads, const char *n,
                           const char *chunks)
{
    char *const args[] = { (char *)n, (char *)chunks, NULL };
    run_result_t r = reduce_node(nodes, threads, args, NULL);
    int want = atoi(nodes);

    cr_assert(!r.timed_out, "timed out:\n%s", r.output);
    cr_assert(r.exited && r.code == 0, "%s nodes x %s threads, n %s, chunks %s: exit %d\n%s",
              nodes, threads, n, chunks, r.code, r.output);
    cr_assert_eq(run_count(r.output, "reduce_node: reductions exact on node"), want, "%s",
                 r.output);
}

/* sums of int64 and double, a custom combine of a struct, a 8 KiB histogram
 * (windows of 128 chunks), with plain loops between: exact on every node,
 * the double sum bitwise the chunk-order fold */
Test(ftsvm_for_reduce, results_are_exact_on_every_node, .timeout = 200) {
    expect_reduced("1", "2", "1000", "7");
    expect_reduced("2", "2", "2001", "13,1");
    expect_reduced("3", "2", "1500", "1,4000");
}

/* more chunks than the task table holds: windows of 4096 chunks */
Test(ftsvm_for_reduce, a_reduction_longer_than_the_table_runs_in_windows, .timeout = 200) {
    expect_reduced("2", "1", "9000", "1");
}

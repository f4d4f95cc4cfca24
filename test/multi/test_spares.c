/*
 * Spare nodes (FTSVM_SPARES, ftsvm-run --spares; lib/api/api.c and
 * lib/replica/placement.c): the job's last nodes run no application code
 * and take a failed node's place as a home. Real nodes through ftsvm-run,
 * real SIGKILLs.
 *
 * - 4 nodes + 1 spare in an ftsvm_for loop, with FTSVM_CHECK_HOMES: kill 2,
 *   and the spare's redundancy event says it now homes exactly node 2's
 *   share of the placement and that every byte the copy wrote landed on
 *   it; then kill 1, survived like the first; every item exactly once, the
 *   application saw 4 nodes, the spare exits 0;
 * - a spare that fails before it was needed is just removed: the
 *   application's view-change callback never hears of it;
 * - bad counts are refused with a clear error.
 */
#include "run_util.h"

#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

Test(spares, a_spare_takes_the_failed_nodes_rows_then_a_second_failure_is_survived,
     .timeout = 200) {
    char *const env[] = { "FTSVM_SHARED_SIZE=16M", "FTSVM_CHECK_HOMES=y", NULL };
    char *const argv[] = { FTSVM_RUN, "-n", "4", "--spares", "1", "--threads", "2",
                           "--kill", "2@1.5", "--kill", "1@redundancy", "--timeout", "150",
                           NODE_DIR "/for_node", "items", "20000", "50,70", "40000", NULL };
    run_result_t r = run_cmd(argv, env, 180);
    unsigned long long bytes, homes, landed;

    run_expect_survived(r, "4+1", "--kill 2@1.5 --kill 1@redundancy");
    cr_assert(strstr(r.output, "node 2: signal 9, injected at 1.50 s") != NULL &&
              strstr(r.output, "node 1: signal 9, injected at ") != NULL,
              "nodes 2 and 1 were not both killed:\n%s", run_text(r.output));
    cr_assert(strstr(r.output, "node 4: exit 0") != NULL, "the spare did not exit 0:\n%s",
              run_text(r.output));
    /* 4 application nodes: a period of 4 x 3 rows, 6 homed by each node */
    cr_assert(run_redundancy_event(r.output, 4, 1, &bytes, &homes, &landed),
              "the spare said nothing of view 1's redundancy:\n%s", run_text(r.output));
    cr_assert_eq(homes, 6, "the spare homes %llu rows, not node 2's 6:\n%s", homes,
                 run_text(r.output));
    cr_assert(bytes > 0 && landed == bytes,
              "%llu of the %llu bytes copied landed on the spare:\n%s", landed, bytes,
              run_text(r.output));
    cr_assert_geq(run_count(r.output, "[ftsvm-event redundancy view=2 "), 3,
                  "fewer than 3 survivors said redundancy is back after the second "
                  "failure:\n%s", run_text(r.output));
    cr_assert(strstr(r.output, "differ between their two homes") == NULL &&
              strstr(r.output, "home check") == NULL,
              "the homes differ after the copy:\n%s", run_text(r.output));
    /* the application's view of the job is 4 nodes of 2 threads */
    cr_assert_eq(run_count(r.output, "for_node: items verified on node"), 1,
                 "no survivor verified:\n%s", run_text(r.output));
    cr_assert(strstr(r.output, "(20000 items, 2 calls, 4 nodes x 2 threads)") != NULL,
              "the application saw the spare:\n%s", run_text(r.output));
    cr_assert(strstr(r.output, ": view 1: the application lost node 2") != NULL &&
              strstr(r.output, ": view 2: the application lost node 1") != NULL,
              "the application did not hear of both failures:\n%s", run_text(r.output));
}

Test(spares, a_spare_that_fails_before_it_was_needed_is_just_removed, .timeout = 120) {
    char *const env[] = { "FTSVM_SHARED_SIZE=16M", NULL };
    char *const argv[] = { FTSVM_RUN, "-n", "3", "--spares", "1", "--threads", "2",
                           "--kill", "3@1.5", "--timeout", "100",
                           NODE_DIR "/for_node", "items", "20000", "50", "40000", NULL };
    run_result_t r = run_cmd(argv, env, 120);

    run_expect_survived(r, "3+1", "--kill 3@1.5");
    cr_assert(strstr(r.output, "node 3: signal 9, injected at 1.50 s") != NULL,
              "the spare was not killed:\n%s", run_text(r.output));
    cr_assert(strstr(r.output, "view 1: node 3 removed") != NULL,
              "the survivors did not remove the spare:\n%s", run_text(r.output));
    cr_assert(strstr(r.output, "the application lost node") == NULL,
              "the application heard of the spare's failure:\n%s", run_text(r.output));
    cr_assert_eq(run_count(r.output, "for_node: items verified on node"), 1,
                 "no survivor verified:\n%s", run_text(r.output));
    cr_assert(strstr(r.output, "(20000 items, 1 calls, 3 nodes x 2 threads)") != NULL,
              "the application saw the spare:\n%s", run_text(r.output));
}

Test(spares, bad_counts_are_refused) {
    char *const one[] = { FTSVM_RUN, "-n", "1", "--spares", "1", NODE_DIR "/for_node",
                          "items", "10", "1", NULL };
    char *const neg[] = { FTSVM_RUN, "-n", "2", "--spares", "-1", NODE_DIR "/for_node",
                          "items", "10", "1", NULL };
    char *const single[] = { FTSVM_RUN, "-n", "2", "--spares", "1", "--timeout", "60",
                             NODE_DIR "/for_node", "items", "10", "1", NULL };
    char *const env_single[] = { "FTSVM_REPLICAS=1", NULL };
    run_result_t r;

    r = run_cmd(one, NULL, 30);
    cr_assert(r.exited && r.code == 2 && strstr(r.output, "at least 2 application nodes"),
              "-n 1 --spares 1: exit %d\n%s", r.code, run_text(r.output));
    r = run_cmd(neg, NULL, 30);
    cr_assert(r.exited && r.code == 2 && strstr(r.output, "--spares: '-1'"),
              "--spares -1: exit %d\n%s", r.code, run_text(r.output));
    r = run_cmd(single, env_single, 60);
    cr_assert(r.exited && r.code != 0 && strstr(r.output, "FTSVM_SPARES=1 with FTSVM_REPLICAS=1"),
              "spares with one home: exit %d\n%s", r.code, run_text(r.output));
}

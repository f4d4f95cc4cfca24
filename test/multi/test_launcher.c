/*
 * ftsvm-run itself: exit codes, output, failure injection, timeouts, usage
 * errors, and the rendezvous (timeouts, early exits, a wrong key, bad
 * configuration). Node programs: exit_node (plain) and api_node (ftsvm).
 */
#include "run_util.h"

#include <criterion/criterion.h>

#define EXIT_NODE NODE_DIR "/exit_node"
#define API_NODE  NODE_DIR "/api_node"

static run_result_t launch(char *const argv[], char *const env[])
{
    run_result_t r = run_cmd(argv, env, 60);

    cr_log_info("%s", r.output);
    cr_assert(!r.timed_out, "timed out:\n%s", r.output);
    cr_assert(r.exited, "ftsvm-run was killed by signal %d", r.code);
    return r;
}

Test(launcher, exit_code_is_the_highest_node_exit_code, .timeout = 60) {
    char *const argv[] = { FTSVM_RUN, "-n", "3", EXIT_NODE, "codes", "0", "3", "1", NULL };
    run_result_t r = launch(argv, NULL);

    cr_assert_eq(r.code, 3);
    cr_assert(strstr(r.output, "ftsvm-run: 3 nodes | node 0: exit 0 | node 1: exit 3 | "
                     "node 2: exit 1 | failures injected: 0 | exit 3") != NULL, "%s", r.output);
}

Test(launcher, node_killed_by_a_signal_gives_128_plus_signal, .timeout = 60) {
    char *const argv[] = { FTSVM_RUN, "-n", "2", EXIT_NODE, "raise", "15", NULL };
    run_result_t r = launch(argv, NULL);

    cr_assert_eq(r.code, 128 + 15);
    cr_assert(strstr(r.output, "node 1: signal 15") != NULL, "%s", r.output);
}

Test(launcher, every_output_line_carries_its_node_id, .timeout = 60) {
    char *const argv[] = { FTSVM_RUN, "-n", "2", EXIT_NODE, "print", NULL };
    run_result_t r = launch(argv, NULL);

    cr_assert_eq(r.code, 0);
    cr_assert(strstr(r.output, "[0] hello from 0\n") != NULL, "%s", r.output);
    cr_assert(strstr(r.output, "[1] hello from 1\n") != NULL, "%s", r.output);
    cr_assert(strstr(r.output, "[1] to stderr from 1\n") != NULL, "%s", r.output);
    /* an unterminated last line is still printed whole, as a line */
    cr_assert(strstr(r.output, "[0] unterminated from 0\n") != NULL, "%s", r.output);
}

Test(launcher, nodes_get_id_job_size_threads_and_rendezvous, .timeout = 60) {
    char *const argv[] = { FTSVM_RUN, "-n", "2", "--threads", "3", EXIT_NODE, "env", NULL };
    run_result_t r = launch(argv, NULL);

    cr_assert_eq(r.code, 0);
    cr_assert(strstr(r.output, "[1] node 1 nodes 2 threads 3 rdv set key set") != NULL,
              "%s", r.output);
}

Test(launcher, kill_injects_a_failure_that_does_not_fail_the_job, .timeout = 60) {
    char *const argv[] = { FTSVM_RUN, "-n", "3", "--kill", "1@0.3", EXIT_NODE, "sleep", "2",
                           NULL };
    run_result_t r = launch(argv, NULL);

    /* survivors decide the job's exit status: an injected kill is expected */
    cr_assert_eq(r.code, 0, "%s", r.output);
    cr_assert(strstr(r.output, "node 1: signal 9, injected at 0.30 s") != NULL, "%s", r.output);
    cr_assert(strstr(r.output, "node 0: exit 0") && strstr(r.output, "node 2: exit 0"),
              "%s", r.output);
    cr_assert(strstr(r.output, "failures injected: 1") != NULL, "%s", r.output);
}

Test(launcher, a_failing_node_does_not_stop_the_others, .timeout = 60) {
    char *const argv[] = { FTSVM_RUN, "-n", "3", EXIT_NODE, "sleep", "1", "2", NULL };
    /* nodes 0 and 1 exit at once, node 2 sleeps 1 s and must not be killed */
    run_result_t r = launch(argv, NULL);

    cr_assert_eq(r.code, 0, "%s", r.output);
    cr_assert(strstr(r.output, "node 2: exit 0") != NULL, "%s", r.output);
    cr_assert(r.seconds >= 0.9, "node 2 ended after %.2f s", r.seconds);
}

Test(launcher, timeout_kills_hung_nodes, .timeout = 60) {
    char *const argv[] = { FTSVM_RUN, "-n", "2", "--timeout", "0.5", EXIT_NODE, "sleep", "30",
                           NULL };
    run_result_t r = launch(argv, NULL);

    cr_assert_eq(r.code, 128 + 9, "%s", r.output);
    cr_assert(strstr(r.output, "node 0: signal 9, timed out") != NULL, "%s", r.output);
    cr_assert(strstr(r.output, "timed out after 0.5 s") != NULL, "%s", r.output);
    cr_assert(r.seconds < 10, "took %.1f s", r.seconds);
}

Test(launcher, bad_arguments_are_refused_with_usage, .timeout = 60) {
    static char *const cases[][8] = {
        { FTSVM_RUN, "-n", "0", EXIT_NODE, NULL },
        { FTSVM_RUN, "-n", "two", EXIT_NODE, NULL },
        { FTSVM_RUN, "-n", "2", NULL },
        { FTSVM_RUN, "-n", "2", "--kill", "5@1", EXIT_NODE, NULL },
        { FTSVM_RUN, "-n", "2", "--kill", "1@soon", EXIT_NODE, NULL },
        { FTSVM_RUN, "-n", "2", "--threads", "0", EXIT_NODE, NULL },
        { FTSVM_RUN, "-n", "2", "--timeout", "-1", EXIT_NODE, NULL },
        { FTSVM_RUN, "-n", "2", "--bogus", EXIT_NODE, NULL },
    };
    size_t i;

    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        run_result_t r = launch(cases[i], NULL);

        cr_assert_eq(r.code, 2, "case %zu exit %d:\n%s", i, r.code, r.output);
        cr_assert(strstr(r.output, "usage") != NULL, "case %zu:\n%s", i, r.output);
    }
}

Test(launcher, app_that_cannot_run_exits_127, .timeout = 60) {
    char *const argv[] = { FTSVM_RUN, "-n", "2", "/nonexistent/app", NULL };
    run_result_t r = launch(argv, NULL);

    cr_assert_eq(r.code, 127, "%s", r.output);
    cr_assert(strstr(r.output, "cannot run /nonexistent/app") != NULL, "%s", r.output);
}

Test(rendezvous, node_that_never_joins_fails_startup_after_boot_timeout, .timeout = 60) {
    char *const argv[] = { FTSVM_RUN, "-n", "3", API_NODE, "late", "1", NULL };
    char *const env[] = { "FTSVM_BOOT_TIMEOUT=1", NULL };
    run_result_t r = launch(argv, env);

    cr_assert_neq(r.code, 0);
    cr_assert(strstr(r.output, "node 1 did not join") != NULL, "%s", r.output);
    cr_assert(strstr(r.output, "[0] api_node: ftsvm_init failed") != NULL, "%s", r.output);
    cr_assert(strstr(r.output, "[2] api_node: ftsvm_init failed") != NULL, "%s", r.output);
    /* the others gave up after about 1 s, not after the late node's 10 s;
     * the job still lasts as long as that node sleeps */
    cr_assert(strstr(r.output, "node 0: exit 20") != NULL, "%s", r.output);
}

Test(rendezvous, node_exiting_before_it_joins_fails_startup_clearly, .timeout = 60) {
    char *const argv[] = { FTSVM_RUN, "-n", "3", API_NODE, "early", "2", NULL };
    run_result_t r = launch(argv, NULL);

    cr_assert_eq(r.code, 20, "%s", r.output);
    cr_assert(strstr(r.output, "node 2 exited (exit code 3) before joining") != NULL,
              "%s", r.output);
    cr_assert(r.seconds < 20, "took %.1f s", r.seconds);
}

Test(rendezvous, connection_with_a_wrong_key_is_refused_and_logged, .timeout = 60) {
    char *const argv[] = { FTSVM_RUN, "-n", "2", API_NODE, "intruder", NULL };
    run_result_t r = launch(argv, NULL);

    cr_assert_eq(r.code, 0, "%s", r.output);
    cr_assert(strstr(r.output, "[0] intruder turned away") != NULL, "%s", r.output);
    cr_assert(strstr(r.output, "refused rendezvous connection") != NULL, "%s", r.output);
    cr_assert(strstr(r.output, "refused connections: 1") != NULL, "%s", r.output);
}

Test(config, bad_value_fails_init_with_a_clear_message, .timeout = 60) {
    char *const argv[] = { FTSVM_RUN, "-n", "2", API_NODE, "ids", NULL };
    char *const env[] = { "FTSVM_SPIN_US=lots", "FTSVM_THREADS=2", NULL };
    run_result_t r = launch(argv, env);

    cr_assert_neq(r.code, 0, "%s", r.output);
    cr_assert(strstr(r.output, "FTSVM_SPIN_US: 'lots' is not an integer") != NULL,
              "%s", r.output);
}

Test(config, unknown_variable_is_warned_about, .timeout = 60) {
    char *const argv[] = { FTSVM_RUN, "-n", "2", "--threads", "2", API_NODE, "ids", NULL };
    char *const env[] = { "FTSVM_SPINUS=5", NULL };
    run_result_t r = launch(argv, env);

    cr_assert_eq(r.code, 0, "%s", r.output);
    cr_assert(strstr(r.output, "[1] ftsvm[?] warn: unknown variable FTSVM_SPINUS") != NULL,
              "%s", r.output);
}

Test(config, ftsvm_info_lists_every_variable_and_refuses_bad_values, .timeout = 60) {
    char *const argv[] = { FTSVM_INFO, "-c", NULL };
    char *const bad[] = { "FTSVM_LOG_LEVEL=loud", NULL };
    run_result_t r = launch(argv, NULL);

    cr_assert_eq(r.code, 0);
    cr_assert(strstr(r.output, "FTSVM_LOG_LEVEL=warn") && strstr(r.output, "FTSVM_BOOT_TIMEOUT=30")
              && strstr(r.output, "FTSVM_KEEPALIVE=0.01") && strstr(r.output, "FTSVM_STATS=n"),
              "%s", r.output);
    r = launch(argv, bad);
    cr_assert_eq(r.code, 1);
    cr_assert(strstr(r.output, "FTSVM_LOG_LEVEL: 'loud'") != NULL, "%s", r.output);
}

/* A real ftsvm job: the launcher kills node 2 after start-up, the survivors
 * hear of it from the transport, and the job succeeds. */
Test(launcher, injected_kill_is_detected_by_the_surviving_nodes, .timeout = 60) {
    char *const argv[] = { FTSVM_RUN, "-n", "3", "--kill", "2@2", NODE_DIR "/rma_node", "death",
                           NULL };
    char *const env[] = { "RMA_NODE_AWAIT_KILL=1", "UCX_TLS=tcp", NULL };
    run_result_t r = launch(argv, env);

    cr_assert_eq(r.code, 0, "%s", r.output);
    cr_assert(strstr(r.output, "node 2: signal 9, injected at 2.00 s") != NULL, "%s", r.output);
    cr_assert(strstr(r.output, "[0] node 0: failure of node 2 reported") != NULL, "%s", r.output);
    cr_assert(strstr(r.output, "[1] node 1: failure of node 2 reported") != NULL, "%s", r.output);
}

/*
 * ftsvm-run itself: exit codes, output, failure injection, timeouts, usage
 * errors, the summary of the nodes' failure events and --report, network
 * namespaces (--netns, --cut), and the rendezvous (timeouts, early exits, a
 * wrong key, bad configuration). Node programs: exit_node and event_node
 * (plain) and api_node (ftsvm).
 */
#include "run_util.h"

#include <criterion/criterion.h>
#include <dirent.h>

#define EXIT_NODE  NODE_DIR "/exit_node"
#define EVENT_NODE NODE_DIR "/event_node"
#define API_NODE   NODE_DIR "/api_node"

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

Test(rendezvous, node_that_never_joins_is_left_out_after_boot_timeout, .timeout = 60) {
    char *const argv[] = { FTSVM_RUN, "-n", "3", API_NODE, "late", "1", NULL };
    char *const env[] = { "FTSVM_BOOT_TIMEOUT=1", NULL };
    run_result_t r = launch(argv, env);

    /* nodes 0 and 2 start without it and finish; it exits 0 after 10 s */
    cr_assert_eq(r.code, 0, "%s", r.output);
    cr_assert(strstr(r.output, "node 1 did not join the rendezvous within 1 s: the job "
                     "starts without it") != NULL, "%s", r.output);
    cr_assert(strstr(r.output, "removed=1 cause=start-up") != NULL, "%s", r.output);
    cr_assert(strstr(r.output, "ftsvm_init failed") == NULL, "%s", r.output);
}

Test(rendezvous, two_node_job_whose_other_node_never_joins_fails_startup, .timeout = 60) {
    char *const argv[] = { FTSVM_RUN, "-n", "2", API_NODE, "late", "1", NULL };
    char *const env[] = { "FTSVM_BOOT_TIMEOUT=1", NULL };
    run_result_t r = launch(argv, env);

    cr_assert_eq(r.code, 20, "%s", r.output);
    cr_assert(strstr(r.output, "node 1 did not join the rendezvous within 1 s") != NULL,
              "%s", r.output);
    cr_assert(strstr(r.output, "[0] api_node: ftsvm_init failed") != NULL, "%s", r.output);
}

Test(rendezvous, node_exiting_before_it_joins_is_left_out, .timeout = 60) {
    char *const argv[] = { FTSVM_RUN, "-n", "3", API_NODE, "early", "2", NULL };
    run_result_t r = launch(argv, NULL);

    /* the launcher's code is node 2's own exit code; nodes 0 and 1 ran */
    cr_assert_eq(r.code, 3, "%s", r.output);
    cr_assert(strstr(r.output, "node 2 exited (exit code 3) before joining the rendezvous: "
                     "the job starts without it") != NULL, "%s", r.output);
    cr_assert(strstr(r.output, "node 0: exit 0 | node 1: exit 0") != NULL, "%s", r.output);
    cr_assert(r.seconds < 20, "took %.1f s", r.seconds);
}

/* A node SIGKILLed at a step of start-up (FTSVM_FAULT), in jobs of 3, 4 and
 * 8 nodes (the victim differs by size, node 0 among them): the others start
 * without it, see it not alive, and run (barrier, lock) to the end. */
static void startup_kill(const char *point, const int who[3])
{
    static const int sizes[3] = { 3, 4, 8 };
    char fault[64], nodes[8], victim[8], want[64];
    char *const argv[] = { FTSVM_RUN, "-n", nodes, API_NODE, "absent", victim, NULL };
    char *const env[] = { fault, NULL };
    run_result_t r;
    int i;

    for (i = 0; i < 3; i++) {
        snprintf(nodes, sizeof(nodes), "%d", sizes[i]);
        snprintf(victim, sizeof(victim), "%d", who[i]);
        snprintf(fault, sizeof(fault), "FTSVM_FAULT=%s@%d", point, who[i]);
        r = launch(argv, env);
        cr_assert_eq(r.code, 0, "%s on %s nodes:\n%s", fault, nodes, r.output);
        snprintf(want, sizeof(want), "node %d: signal 9, injected by FTSVM_FAULT", who[i]);
        cr_assert(strstr(r.output, want) != NULL, "%s on %s nodes:\n%s", fault, nodes,
                  r.output);
        snprintf(want, sizeof(want), "started without node %d", who[i]);
        cr_assert_eq(run_count(r.output, want), sizes[i] - 1, "%s on %s nodes:\n%s", fault,
                     nodes, r.output);
        cr_assert(strstr(r.output, "ftsvm_init failed") == NULL, "%s:\n%s", fault, r.output);
    }
}

Test(startup, node_killed_before_the_rendezvous_is_left_out, .timeout = 180) {
    startup_kill("boot-rendezvous", (const int[3]){ 1, 0, 7 });
}

Test(startup, node_killed_after_the_address_exchange_is_left_out, .timeout = 180) {
    startup_kill("boot-addresses", (const int[3]){ 2, 1, 0 });
}

Test(startup, node_killed_after_the_key_exchange_is_left_out, .timeout = 180) {
    startup_kill("boot-keys", (const int[3]){ 0, 3, 5 });
}

Test(startup, node_killed_in_the_first_barrier_is_left_out, .timeout = 180) {
    startup_kill("boot-barrier", (const int[3]){ 1, 2, 4 });
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
 * hear of it from the transport, and the job succeeds. At 5 s: a start-up
 * of 3 nodes over TCP takes 0.2 s here, but up to 2.5 s on a loaded or cold
 * machine, and a kill that lands in it leaves node 2 out of the job, so the
 * test's own transport never connects to it and never reports it. */
Test(launcher, injected_kill_is_detected_by_the_surviving_nodes, .timeout = 60) {
    char *const argv[] = { FTSVM_RUN, "-n", "3", "--kill", "2@5", NODE_DIR "/rma_node", "death",
                           NULL };
    char *const env[] = { "RMA_NODE_AWAIT_KILL=1", "UCX_TLS=tcp", NULL };
    run_result_t r = launch(argv, env);

    cr_assert_eq(r.code, 0, "%s", r.output);
    cr_assert(strstr(r.output, "node 2: signal 9, injected at 5.00 s") != NULL, "%s", r.output);
    cr_assert(strstr(r.output, "[0] node 0: failure of node 2 reported") != NULL, "%s", r.output);
    cr_assert(strstr(r.output, "[1] node 1: failure of node 2 reported") != NULL, "%s", r.output);
}

/* ---- the summary of failure events, --report ---- */

/* the whole file, NUL-terminated (the caller frees it) */
static char *read_text(const char *path)
{
    FILE *f = fopen(path, "r");
    char *text = calloc(1, 65536);
    size_t n = 0;

    cr_assert(f != NULL && text != NULL, "cannot read %s", path);
    n = fread(text, 1, 65535, f);
    text[n] = '\0';
    fclose(f);
    return text;
}

/* the value of `key` in a --report file, "" if absent */
static const char *report_value(const char *report, const char *key)
{
    static char value[64];
    size_t len = strlen(key);
    const char *line;

    value[0] = '\0';
    for (line = report; line != NULL && *line != '\0'; line = strchr(line, '\n')) {
        line += (*line == '\n');
        if (strncmp(line, key, len) == 0 && line[len] == '=') {
            sscanf(line + len + 1, "%63s", value);
            break;
        }
    }
    return value;
}

static void temp_path(char *path, size_t size, const char *what)
{
    snprintf(path, size, "/tmp/ftsvm-test-%s-%d", what, (int)getpid());
    unlink(path);
}

Test(launcher, summary_gives_detection_failover_and_verdict_from_event_lines, .timeout = 60) {
    char died[128], report_path[128];
    char *report;

    temp_path(died, sizeof(died), "died");
    temp_path(report_path, sizeof(report_path), "report");
    {
        /* node 1 SIGKILLs itself at its FTSVM_FAULT point (played); the others
         * say they detected it 100 and 200 ms later, recovered 200 and 400 ms
         * later; the launcher reaps node 1 a moment after it died */
        char *const argv[] = { FTSVM_RUN, "-n", "3", "--report", report_path, EVENT_NODE,
                               "fail", died, "100", "400", NULL };
        char *const env[] = { "FTSVM_FAULT=barrier@1", NULL };
        run_result_t r = launch(argv, env);
        double detection = -1, failover = -1;
        const char *figures = strstr(r.output, "failure of node 1: detection ");

        cr_assert_eq(r.code, 0, "%s", r.output);
        cr_assert(strstr(r.output, "node 1: signal 9, injected by FTSVM_FAULT") != NULL, "%s",
                  r.output);
        cr_assert(figures != NULL && sscanf(figures, "failure of node 1: detection %lf ms, "
                                            "failover %lf ms", &detection, &failover) == 2,
                  "%s", r.output);
        cr_assert(detection > 50 && detection <= 100.05, "detection %.1f ms", detection);
        cr_assert(failover > 350 && failover <= 400.05, "failover %.1f ms", failover);
        cr_assert(strstr(r.output, "| result verified |") != NULL, "%s", r.output);
        /* a line that only looks like an event is relayed, and warned about */
        cr_assert(strstr(r.output, "[2] [ftsvm-event view=one removed=1]") != NULL, "%s",
                  r.output);
        cr_assert(strstr(r.output, "cannot be read") != NULL, "%s", r.output);
    }
    report = read_text(report_path);
    cr_log_info("%s", report);
    cr_assert_str_eq(report_value(report, "killed_node"), "1");
    cr_assert_str_eq(report_value(report, "kill_how"), "fault");
    cr_assert_str_eq(report_value(report, "survivors"), "2");
    cr_assert_str_eq(report_value(report, "reported"), "2");
    cr_assert_str_eq(report_value(report, "survived"), "1");
    cr_assert_str_eq(report_value(report, "verified"), "yes");
    cr_assert_str_eq(report_value(report, "exit"), "0");
    cr_assert(atof(report_value(report, "detected_ms")) > 50 &&
              atof(report_value(report, "failover_ms")) > 350, "%s", report);
    free(report);
    unlink(died);
    unlink(report_path);
}

Test(launcher, fenced_node_fails_the_job_unless_it_was_cut_off, .timeout = 60) {
    char died[128], report_path[128];
    char *report;

    temp_path(died, sizeof(died), "died");
    temp_path(report_path, sizeof(report_path), "report");
    {
        /* node 1 dies of SIGKILL that nobody asked for, node 3 fences itself */
        char *const argv[] = { FTSVM_RUN, "-n", "4", "--report", report_path, EVENT_NODE,
                               "fail", died, "1", "2", NULL };
        run_result_t r = launch(argv, NULL);

        cr_assert_eq(r.code, 128 + 9, "%s", r.output);
        cr_assert(strstr(r.output, "node 1: signal 9 |") != NULL, "%s", r.output);
        cr_assert(strstr(r.output, "node 3: exit 75, fenced |") != NULL, "%s", r.output);
        cr_assert(strstr(r.output, "failure of node 1: detection ") != NULL, "%s", r.output);
    }
    report = read_text(report_path);
    cr_assert_str_eq(report_value(report, "kill_how"), "signal");
    cr_assert_str_eq(report_value(report, "fenced"), "1");
    cr_assert_str_eq(report_value(report, "survivors"), "3");
    cr_assert_str_eq(report_value(report, "survived"), "0", "%s", report);
    free(report);
    unlink(died);
    unlink(report_path);
    {
        char *const argv[] = { FTSVM_RUN, "-n", "2", EXIT_NODE, "codes", "0", "75", NULL };
        run_result_t r = launch(argv, NULL);

        cr_assert_eq(r.code, 75, "%s", r.output);
        cr_assert(strstr(r.output, "node 1: exit 75, fenced | failures injected: 0") != NULL,
                  "%s", r.output);
    }
}

Test(launcher, report_file_of_a_killed_node_without_events, .timeout = 60) {
    char report_path[128];
    char *report;

    temp_path(report_path, sizeof(report_path), "report");
    {
        char *const argv[] = { FTSVM_RUN, "-n", "3", "--kill", "1@0.3", "--report",
                               report_path, EXIT_NODE, "sleep", "1", NULL };
        run_result_t r = launch(argv, NULL);

        cr_assert_eq(r.code, 0, "%s", r.output);
        cr_assert(strstr(r.output, "detection") == NULL && strstr(r.output, "result") == NULL,
                  "%s", r.output);
    }
    report = read_text(report_path);
    cr_log_info("%s", report);
    cr_assert_str_eq(report_value(report, "nodes"), "3");
    cr_assert_str_eq(report_value(report, "killed_node"), "1");
    cr_assert_str_eq(report_value(report, "kill_how"), "kill");
    cr_assert(atoll(report_value(report, "kill_ns")) > 0, "%s", report);
    cr_assert_str_eq(report_value(report, "detected_ms"), "none");
    cr_assert_str_eq(report_value(report, "failover_ms"), "none");
    cr_assert_str_eq(report_value(report, "survivors"), "2");
    cr_assert_str_eq(report_value(report, "survived"), "1");
    cr_assert_str_eq(report_value(report, "verified"), "none");
    cr_assert_str_eq(report_value(report, "timed_out"), "0");
    free(report);
    unlink(report_path);
    {
        char *const argv[] = { FTSVM_RUN, "-n", "2", "--report", "/nonexistent/dir/report",
                               EXIT_NODE, "env", NULL };
        run_result_t r = launch(argv, NULL);

        cr_assert_eq(r.code, 2, "%s", r.output);
        cr_assert(strstr(r.output, "--report: cannot open /nonexistent/dir/report") != NULL,
                  "%s", r.output);
        cr_assert(strstr(r.output, "[0]") == NULL, "a node ran:\n%s", r.output);
    }
}

/* ---- --netns, --cut ---- */

Test(netns, cut_is_refused_without_netns_or_for_a_node_out_of_range, .timeout = 60) {
    static char *const cases[][10] = {
        { FTSVM_RUN, "-n", "2", "--cut", "1@1", EXIT_NODE, "env", NULL },
        { FTSVM_RUN, "-n", "2", "--netns", "--cut", "2@1", EXIT_NODE, "env", NULL },
        { FTSVM_RUN, "-n", "2", "--netns", "--cut", "1", EXIT_NODE, "env", NULL },
        { FTSVM_RUN, "-n", "2", "--netns", "--listen", "0.0.0.0", EXIT_NODE, "env", NULL },
        { FTSVM_RUN, "-n", "2", "--netns=yes", EXIT_NODE, "env", NULL },
        { FTSVM_RUN, "-n", "254", "--netns", EXIT_NODE, "env", NULL },
    };
    static const char *const messages[] = {
        "--cut needs --netns",
        "--cut 2@1: there is no node 2 in a job of 2 nodes",
        "--cut '1': expected NODE@SECONDS",
        "--listen cannot go with --netns",
        "option '--netns' takes no value",
        "--netns: at most 253 nodes",
    };
    size_t i;

    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        run_result_t r = launch(cases[i], NULL);

        cr_assert_eq(r.code, 2, "case %zu exit %d:\n%s", i, r.code, r.output);
        cr_assert(strstr(r.output, messages[i]) != NULL, "case %zu:\n%s", i, r.output);
        cr_assert(strstr(r.output, "usage") != NULL, "case %zu:\n%s", i, r.output);
    }
}

Test(netns, needs_root_and_says_so, .timeout = 60) {
    char *const argv[] = { "setpriv", "--reuid", "65534", "--regid", "65534", "--clear-groups",
                           FTSVM_RUN, "-n", "2", "--netns", EXIT_NODE, "env", NULL };
    run_result_t r;

    if (geteuid() != 0 || access("/usr/bin/setpriv", X_OK) != 0) {
        cr_skip_test("needs root and setpriv to run ftsvm-run as another user");
    }
    r = launch(argv, NULL);
    cr_assert_eq(r.code, 1, "%s", r.output);
    cr_assert(strstr(r.output, "--netns needs root") != NULL, "%s", r.output);
}

static void skip_unless_root(void)
{
    if (geteuid() != 0) {
        cr_skip_test("--netns needs root");
    }
}

/* The namespaces of the job whose info log is `output` ("nodes in
 * namespaces ftsvm-<pid>-0..") that still exist. */
static int namespaces_left(const char *output)
{
    const char *info = strstr(output, "nodes in namespaces ");
    char prefix[64];
    struct dirent *entry;
    int left = 0;
    DIR *dir;

    cr_assert(info != NULL && sscanf(info, "nodes in namespaces %63[^.]", prefix) == 1,
              "no namespaces named in:\n%s", output);
    prefix[strlen(prefix) - 1] = '\0';   /* "ftsvm-<pid>-0" -> "ftsvm-<pid>-" */
    cr_assert(strlen(prefix) > strlen("ftsvm-"), "%s", prefix);
    dir = opendir("/run/netns");
    if (dir == NULL) {
        return 0;
    }
    while ((entry = readdir(dir)) != NULL) {
        left += (strncmp(entry->d_name, prefix, strlen(prefix)) == 0);
    }
    closedir(dir);
    return left;
}

Test(netns, nodes_run_in_namespaces_of_their_own_over_their_veth, .timeout = 60) {
    char *const argv[] = { FTSVM_RUN, "-n", "3", "--netns", EXIT_NODE, "netns", NULL };
    char *const env[] = { "UCX_TLS=", "FTSVM_LOG_LEVEL=info", NULL };
    char nets[3][64], own[64] = "";
    ssize_t own_len;
    run_result_t r;
    int node, other;

    skip_unless_root();
    r = launch(argv, env);
    cr_assert_eq(r.code, 0, "%s", r.output);
    for (node = 0; node < 3; node++) {
        char line_start[16], dev[32], tls[32], rdv[64], sys[8], expect_dev[32];
        const char *line;

        snprintf(line_start, sizeof(line_start), "[%d] node %d net ", node, node);
        line = strstr(r.output, line_start);
        cr_assert(line != NULL && sscanf(line + strlen(line_start), "%63s dev %31s tls %31s "
                                         "rdv %63s sys %7s", nets[node], dev, tls, rdv,
                                         sys) == 5, "%s", r.output);
        snprintf(expect_dev, sizeof(expect_dev), "ftsvm%d", node);
        cr_assert_str_eq(dev, expect_dev, "%s", r.output);
        cr_assert_str_eq(tls, "tcp,self", "%s", r.output);
        /* the rendezvous is on the bridge */
        cr_assert(strncmp(rdv, "10.213.", 7) == 0 && strstr(rdv, ".254:") != NULL, "%s", rdv);
        /* its /sys lists the device: UCX finds it there */
        cr_assert_str_eq(sys, "yes", "%s", r.output);
    }
    own_len = readlink("/proc/self/ns/net", own, sizeof(own) - 1);
    cr_assert(own_len > 0);
    own[own_len] = '\0';
    for (node = 0; node < 3; node++) {
        cr_assert_str_neq(nets[node], own, "node %d runs in the launcher's namespace", node);
        for (other = node + 1; other < 3; other++) {
            cr_assert_str_neq(nets[node], nets[other], "nodes %d and %d share %s", node, other,
                              nets[node]);
        }
    }
    cr_assert_eq(namespaces_left(r.output), 0, "namespaces left behind");
    {
        /* a UCX_TLS of the user's own is kept */
        char *const env_tls[] = { "UCX_TLS=tcp", NULL };

        r = launch(argv, env_tls);
        cr_assert(strstr(r.output, "[1] node 1 net ") && strstr(r.output, " tls tcp rdv "),
                  "%s", r.output);
    }
}

Test(netns, ftsvm_job_starts_and_runs_through_the_bridge, .timeout = 120) {
    char *const argv[] = { FTSVM_RUN, "-n", "3", "--threads", "2", "--netns", "--timeout", "100",
                           API_NODE, "ids", NULL };
    char *const env[] = { "FTSVM_LOG_LEVEL=info", NULL };
    run_result_t r;

    skip_unless_root();
    r = launch(argv, env);
    cr_assert_eq(r.code, 0, "%s", r.output);
    cr_assert(strstr(r.output, "rendezvous on 10.213.") != NULL, "%s", r.output);
    cr_assert_eq(run_count(r.output, "ids ok"), 3, "%s", r.output);
    cr_assert_eq(namespaces_left(r.output), 0, "namespaces left behind");
}

Test(netns, namespaces_are_deleted_after_sigterm, .timeout = 60) {
    /* the launcher gets SIGTERM while its nodes sleep */
    char script[512];
    char *const argv[] = { "/bin/sh", "-c", script, NULL };
    char *const env[] = { "FTSVM_LOG_LEVEL=info", NULL };
    run_result_t r;

    skip_unless_root();
    snprintf(script, sizeof(script), "%s -n 2 --netns %s sleep 30 & pid=$!; sleep 1; "
             "ls /run/netns | grep -c \"^ftsvm-$pid-\"; kill -TERM $pid; wait $pid; "
             "echo launcher exit $?", FTSVM_RUN, EXIT_NODE);
    r = launch(argv, env);
    cr_assert(strstr(r.output, "\n3\n") != NULL || strncmp(r.output, "3\n", 2) == 0,
              "not 3 namespaces while running:\n%s", r.output);
    cr_assert(strstr(r.output, "launcher exit 143") != NULL, "%s", r.output);
    cr_assert_eq(namespaces_left(r.output), 0, "namespaces left behind");
}

Test(netns, cut_off_node_fences_itself_and_the_job_succeeds, .timeout = 60) {
    char report_path[128];
    char *report;

    skip_unless_root();
    temp_path(report_path, sizeof(report_path), "report");
    {
        /* node 2 exits 75 once it sees its link down; the others go on */
        char *const argv[] = { FTSVM_RUN, "-n", "3", "--netns", "--cut", "2@0.5", "--timeout",
                               "30", "--report", report_path, EVENT_NODE, "cut", "2", "1.5",
                               NULL };
        char *const env[] = { "FTSVM_LOG_LEVEL=info", NULL };
        run_result_t r = launch(argv, env);

        cr_assert_eq(r.code, 0, "%s", r.output);
        cr_assert(strstr(r.output, "node 2: exit 75, fenced, cut off at 0.50 s") != NULL, "%s",
                  r.output);
        cr_assert(strstr(r.output, "node 0: exit 0") && strstr(r.output, "node 1: exit 0"),
                  "%s", r.output);
        cr_assert(strstr(r.output, "failures injected: 1") != NULL, "%s", r.output);
        cr_assert(strstr(r.output, "failure of node 2: detection ") != NULL, "%s", r.output);
        cr_assert_eq(namespaces_left(r.output), 0, "namespaces left behind");
    }
    report = read_text(report_path);
    cr_assert_str_eq(report_value(report, "killed_node"), "2");
    cr_assert_str_eq(report_value(report, "kill_how"), "cut");
    cr_assert_str_eq(report_value(report, "fenced"), "1");
    cr_assert_str_eq(report_value(report, "survived"), "1");
    cr_assert_str_eq(report_value(report, "exit"), "0");
    free(report);
    unlink(report_path);
}

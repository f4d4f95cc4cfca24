/* Run a command (ftsvm-run, mpirun, a tool) from a Criterion test: capture
 * its stdout and stderr together, bound it in time, report how it ended.
 * The command runs in its own process group, which is killed on timeout;
 * ftsvm-run's nodes die with it (they are started with PDEATHSIG).
 * With TEST_NODE_OUTPUT_LOG set, every run's output is appended to that
 * file too, so that ci/check-log.sh can read what every node of the suite
 * said, passing tests included. */
#ifndef FTSVM_TEST_RUN_UTIL_H
#define FTSVM_TEST_RUN_UTIL_H

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

typedef struct run_result {
    int    exited;        /* 1: exit code in code; 0: killed, signal in code */
    int    code;
    int    timed_out;
    double seconds;
    char  *output;        /* stdout and stderr, interleaved */
} run_result_t;

static inline double run_now(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* one write with O_APPEND: the runs of tests that run side by side do not
 * interleave inside a run */
static inline void run_log_output(const char *output, size_t len)
{
    const char *path = getenv("TEST_NODE_OUTPUT_LOG");
    int fd;

    if (path == NULL || *path == '\0') {
        return;
    }
    fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
    if (fd >= 0) {
        if (write(fd, output, len) != (ssize_t)len) {
            fprintf(stderr, "run_util: short write to %s\n", path);
        }
        close(fd);
    }
}

/* argv is NULL-terminated; env is a NULL-terminated list of "NAME=value"
 * (or "NAME=" to unset) applied on top of this environment. */
static inline run_result_t run_cmd(char *const argv[], char *const env[], double timeout)
{
    static char *previous_output;   /* a test reads r.output until its next run */
    run_result_t r = { 0 };
    size_t len = 0, cap = 65536;
    int pipefd[2], status, i;
    double start = run_now();
    pid_t pid;

    free(previous_output);
    r.output = previous_output = malloc(cap);
    if (r.output == NULL || pipe(pipefd) != 0) {
        r.code = -1;
        return r;
    }
    pid = fork();
    if (pid == 0) {
        setpgid(0, 0);
        dup2(pipefd[1], STDOUT_FILENO);
        dup2(pipefd[1], STDERR_FILENO);
        close(pipefd[0]);
        close(pipefd[1]);
        for (i = 0; env != NULL && env[i] != NULL; i++) {
            char *eq = strchr(env[i], '='), name[128];

            snprintf(name, sizeof(name), "%.*s", (int)(eq - env[i]), env[i]);
            if (eq[1] == '\0') {
                unsetenv(name);
            } else {
                setenv(name, eq + 1, 1);
            }
        }
        execvp(argv[0], argv);
        fprintf(stderr, "cannot run %s: %s\n", argv[0], strerror(errno));
        _exit(127);
    }
    close(pipefd[1]);
    for (;;) {
        struct pollfd pfd = { .fd = pipefd[0], .events = POLLIN };
        double left = timeout - (run_now() - start);
        ssize_t n;

        if (left <= 0 && !r.timed_out) {
            r.timed_out = 1;
            kill(-pid, SIGKILL);
        }
        if (poll(&pfd, 1, left > 0 ? (int)(left * 1000) + 1 : 100) <= 0) {
            continue;
        }
        if (len + 4096 > cap) {
            cap *= 2;
            r.output = previous_output = realloc(r.output, cap);
        }
        n = read(pipefd[0], r.output + len, cap - len - 1);
        if (n <= 0) {
            break;
        }
        len += (size_t)n;
    }
    close(pipefd[0]);
    r.output[len] = '\0';
    run_log_output(r.output, len);
    waitpid(pid, &status, 0);
    r.seconds = run_now() - start;
    if (WIFEXITED(status)) {
        r.exited = 1;
        r.code   = WEXITSTATUS(status);
    } else {
        r.code = WTERMSIG(status);
    }
    return r;
}

/* number of times `needle` occurs in `haystack` */
static inline int run_count(const char *haystack, const char *needle)
{
    int n = 0;

    while ((haystack = strstr(haystack, needle)) != NULL) {
        n++;
        haystack += strlen(needle);
    }
    return n;
}

/* Criterion drops a message past 1 MiB (its transport's receive limit), and
 * the test that sent it then hangs until its .timeout: what a test logs or
 * asserts with is the output's last RUN_TEXT_MAX bytes (TEST_NODE_OUTPUT_LOG
 * keeps the whole). */
#define RUN_TEXT_MAX (256u * 1024u)

static inline const char *run_text(const char *output)
{
    size_t len = strlen(output);
    const char *from, *line;

    if (len <= RUN_TEXT_MAX) {
        return output;
    }
    from = output + len - RUN_TEXT_MAX;
    line = strchr(from, '\n');   /* from a line's start */
    return (line != NULL && line[1] != '\0') ? line + 1 : from;
}

/* A job whose node `fault` (FTSVM_FAULT) makes fail must end by itself, with
 * every survivor exiting 0. For Criterion tests (cr_assert at the caller). */
#define run_expect_survived(_r, _nodes, _fault)                                       \
    do {                                                                              \
        cr_log_info("%s", run_text((_r).output));                                     \
        cr_assert(!(_r).timed_out, "%s nodes, %s: timed out:\n%s", _nodes, _fault,   \
                  run_text((_r).output));                                             \
        cr_assert((_r).exited && (_r).code == 0, "%s nodes, %s: exit %d\n%s", _nodes,  \
                  _fault, (_r).code, run_text((_r).output));                          \
    } while (0)

/* what node `node`'s redundancy event of `view` says: the bytes the copy
 * wrote, the placement rows the node homes now, the bytes that landed on it */
static inline int run_redundancy_event(const char *output, int node, int view,
                                       unsigned long long *bytes_p,
                                       unsigned long long *homes_p,
                                       unsigned long long *landed_p)
{
    char tag[96];
    const char *at;

    snprintf(tag, sizeof(tag), "ftsvm: node %d: view %d: redundancy restored", node, view);
    at = strstr(output, tag);
    if (at == NULL || (at = strstr(at, "[ftsvm-event redundancy ")) == NULL) {
        return 0;
    }
    return sscanf(at, "[ftsvm-event redundancy view=%*d rows=%*d bytes=%llu ms=%*f "
                  "homes=%llu landed=%llu]", bytes_p, homes_p, landed_p) == 3;
}

#endif

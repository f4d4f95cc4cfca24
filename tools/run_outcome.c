/* How the job ended: how each node ended, which failures were expected,
 * the detection and failover times the survivors reported, the summary
 * line on stderr, the --report file and the launcher's exit status. */
#include "run.h"
#include "common/log.h"
#include "ftsvm.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

static void run_appendf(char *buf, size_t size, size_t *used, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static void run_appendf(char *buf, size_t size, size_t *used, const char *fmt, ...)
{
    va_list ap;
    int n;

    va_start(ap, fmt);
    n = vsnprintf(buf + *used, size - *used, fmt, ap);
    va_end(ap);
    if (n > 0) {
        *used += ((size_t)n < size - *used) ? (size_t)n : size - *used - 1;
    }
}

/* How a node ended, as the summary and the exit status see it. */
typedef enum {
    RUN_END_EXIT,        /* exited: its code counts */
    RUN_END_CUT_FENCED,  /* fenced itself (exit 75) once --cut cut it off: expected */
    RUN_END_INJECTED,    /* SIGKILL from --kill: expected */
    RUN_END_FAULT,       /* SIGKILL at its FTSVM_FAULT point: expected */
    RUN_END_SIGNAL,      /* any other signal, --timeout's SIGKILL included: counts */
} run_end_t;

static run_end_t run_node_end(const run_job_t *job, int node)
{
    const run_node_t *n = &job->nodes[node];
    int st = n->wait_status;

    if (!WIFSIGNALED(st)) {
        return (n->cut_ns != 0 && WEXITSTATUS(st) == FTSVM_EXIT_FENCED) ? RUN_END_CUT_FENCED :
                                                                          RUN_END_EXIT;
    }
    if (WTERMSIG(st) == SIGKILL && n->cause == RUN_CAUSE_INJECTED) {
        return RUN_END_INJECTED;
    }
    if (WTERMSIG(st) == SIGKILL && n->cause == RUN_CAUSE_NONE && node == job->fault_node) {
        return RUN_END_FAULT;
    }
    return RUN_END_SIGNAL;
}

/* When a node failed (CLOCK_MONOTONIC ns), 0 if it did not. A node the
 * launcher cut off or killed failed then; one that died of a signal nobody
 * sent from here failed at the latest when it was reaped (a moment after).
 * A node ended by the timeout, or by signals passed on from the user, did
 * not fail on its own. */
static uint64_t run_node_failed_ns(const run_job_t *job, int node, const char **how_p)
{
    const run_node_t *n = &job->nodes[node];

    if (n->cut_ns != 0) {
        *how_p = "cut";
        return n->cut_ns;
    }
    switch (run_node_end(job, node)) {
    case RUN_END_INJECTED:
        *how_p = "kill";
        return n->injected_ns;
    case RUN_END_FAULT:
        *how_p = "fault";
        return (job->events.fault_ns[node] != 0 && job->events.fault_ns[node] < n->reaped_ns) ?
               job->events.fault_ns[node] : n->reaped_ns;
    case RUN_END_SIGNAL:
        if (n->cause != RUN_CAUSE_NONE || job->interrupts > 0) {
            return 0;
        }
        *how_p = "signal";
        return n->reaped_ns;
    default:
        return 0;
    }
}

/* What the summary line and the --report file say. */
typedef struct run_outcome {
    int           failed;          /* nodes that failed */
    int           first_failed;    /* the one that failed first, -1 if none */
    uint64_t      failed_ns;       /* its time of failure */
    const char   *how;             /* how it failed (--report's kill_how) */
    int           have_figures;    /* a survivor reported its removal */
    run_figures_t figures;
    int           survivors;       /* nodes that did not fail */
    int           survived;        /* there are survivors and each exited 0 */
    int           fenced;          /* nodes that exited with FTSVM_EXIT_FENCED */
    int           injected;        /* expected failures */
    int           exit_status;
} run_outcome_t;

static void run_outcome(const run_job_t *job, char *survivor, run_outcome_t *o)
{
    const char *how = NULL;
    uint64_t failed_ns;
    int node, code;

    memset(o, 0, sizeof(*o));
    o->first_failed = -1;
    o->how = "none";
    o->survived = 1;
    for (node = 0; node < job->opts.nodes; node++) {
        const run_node_t *n = &job->nodes[node];
        run_end_t end = run_node_end(job, node);

        failed_ns = run_node_failed_ns(job, node, &how);
        survivor[node] = (failed_ns == 0);
        if (failed_ns != 0) {
            o->failed++;
            if (o->first_failed < 0 || failed_ns < o->failed_ns) {
                o->first_failed = node;
                o->failed_ns = failed_ns;
                o->how = how;
            }
        } else {
            o->survivors++;
            if (end != RUN_END_EXIT || WEXITSTATUS(n->wait_status) != 0) {
                o->survived = 0;
            }
        }
        if (n->cut_ns != 0 || end == RUN_END_INJECTED || end == RUN_END_FAULT) {
            o->injected++;
        }
        if (end == RUN_END_CUT_FENCED) {
            o->fenced++;
        }
        if (end == RUN_END_INJECTED || end == RUN_END_FAULT || end == RUN_END_CUT_FENCED) {
            continue;   /* an expected failure: the job succeeded if the others did */
        }
        if (end == RUN_END_EXIT) {
            code = WEXITSTATUS(n->wait_status);
            o->fenced += (code == FTSVM_EXIT_FENCED);
        } else {
            code = 128 + WTERMSIG(n->wait_status);
        }
        o->exit_status = (code > o->exit_status) ? code : o->exit_status;
    }
    if (o->survivors == 0) {
        o->survived = 0;
    }
    if (o->first_failed >= 0) {
        o->have_figures = run_events_figures(&job->events, o->first_failed, survivor,
                                             &o->figures);
    }
}

/* milliseconds from `from_ns` to `to_ns`, negative if `to_ns` is earlier */
static double run_ms_between(uint64_t from_ns, uint64_t to_ns)
{
    return (to_ns >= from_ns) ? (double)(to_ns - from_ns) / 1e6 :
                                -(double)(from_ns - to_ns) / 1e6;
}

/* ", redundancy restored in T ms" after a failure's figures, when the
 * survivors said so for the view that removed it */
static void run_append_redundancy(const run_job_t *job, int failed, const char *survivor,
                                  char *line, size_t size, size_t *used)
{
    uint64_t view = run_events_view_of(&job->events, failed, survivor), bytes;
    double ms;

    if (run_events_redundancy(&job->events, view, survivor, &ms, &bytes)) {
        run_appendf(line, size, used, ", redundancy restored in %.1f ms", ms);
    }
}

/* The figures of every failure after the first, in the order they failed. */
static void run_append_later_failures(const run_job_t *job, const run_outcome_t *o,
                                      const char *survivor, char *line, size_t size,
                                      size_t *used)
{
    uint64_t after = o->failed_ns, next_ns, ns;
    int after_node = o->first_failed, node, next;
    run_figures_t figures;
    const char *how;

    /* in (time of failure, node) order after the first */
    for (;;) {
        next = -1;
        next_ns = UINT64_MAX;
        for (node = 0; node < job->opts.nodes; node++) {
            ns = run_node_failed_ns(job, node, &how);
            if (ns == 0 || ns < after || (ns == after && node <= after_node)) {
                continue;
            }
            if (ns < next_ns || (ns == next_ns && node < next)) {
                next = node;
                next_ns = ns;
            }
        }
        if (next < 0) {
            return;
        }
        after = next_ns;
        after_node = next;
        if (run_events_figures(&job->events, next, survivor, &figures)) {
            run_appendf(line, size, used, " | failure of node %d: detection %.1f ms, "
                        "failover %.1f ms", next,
                        run_ms_between(next_ns, figures.first_detected_ns),
                        run_ms_between(next_ns, figures.last_recovered_ns));
            run_append_redundancy(job, next, survivor, line, size, used);
        }
    }
}

/* One line on stderr, written at once. */
static void run_summary(const run_job_t *job, const run_outcome_t *o, const char *survivor)
{
    size_t size = 512 + (size_t)job->opts.nodes * 160, used = 0;
    char *line = malloc(size);
    unsigned refused = rdv_server_refused(job->rdv);
    int node;

    if (line == NULL) {
        ftsvm_error("out of memory for the summary");
        return;
    }
    run_appendf(line, size, &used, "ftsvm-run: %d node%s", job->opts.nodes,
                (job->opts.nodes == 1) ? "" : "s");
    for (node = 0; node < job->opts.nodes; node++) {
        const run_node_t *n = &job->nodes[node];
        int st = n->wait_status;

        switch (run_node_end(job, node)) {
        case RUN_END_EXIT:
        case RUN_END_CUT_FENCED:
            run_appendf(line, size, &used, " | node %d: exit %d%s", node, WEXITSTATUS(st),
                        (WEXITSTATUS(st) == FTSVM_EXIT_FENCED) ? ", fenced" : "");
            break;
        case RUN_END_INJECTED:
            run_appendf(line, size, &used, " | node %d: signal %d, injected at %.2f s", node,
                        SIGKILL, n->injected_at);
            break;
        case RUN_END_FAULT:
            run_appendf(line, size, &used, " | node %d: signal %d, injected by FTSVM_FAULT",
                        node, SIGKILL);
            break;
        case RUN_END_SIGNAL:
            run_appendf(line, size, &used, " | node %d: signal %d%s", node, WTERMSIG(st),
                        (WTERMSIG(st) == SIGKILL && n->cause == RUN_CAUSE_TIMEOUT) ?
                        ", timed out" : "");
            break;
        }
        if (n->cut_ns != 0) {
            run_appendf(line, size, &used, ", cut off at %.2f s", n->cut_at);
        }
        if (n->evict_at > 0) {
            run_appendf(line, size, &used, ", asked to leave at %.2f s", n->evict_at);
        }
    }
    run_appendf(line, size, &used, " | failures injected: %d", o->injected);
    if (o->have_figures) {
        run_appendf(line, size, &used, " | failure of node %d: detection %.1f ms, failover "
                    "%.1f ms", o->first_failed,
                    run_ms_between(o->failed_ns, o->figures.first_detected_ns),
                    run_ms_between(o->failed_ns, o->figures.last_recovered_ns));
        run_append_redundancy(job, o->first_failed, survivor, line, size, &used);
        run_append_later_failures(job, o, survivor, line, size, &used);
    } else if (o->first_failed >= 0 && job->events.count > 0) {
        run_appendf(line, size, &used, " | failure of node %d: no survivor reported it",
                    o->first_failed);
    }
    if (job->events.verified != RUN_VERIFIED_NONE) {
        run_appendf(line, size, &used, " | result %s",
                    (job->events.verified == RUN_VERIFIED_YES) ? "verified" : "NOT verified");
    }
    if (job->timed_out) {
        run_appendf(line, size, &used, " | timed out after %g s", job->opts.timeout);
    }
    if (refused > 0) {
        run_appendf(line, size, &used, " | refused connections: %u", refused);
    }
    run_appendf(line, size, &used, " | exit %d\n", o->exit_status);
    if (write(STDERR_FILENO, line, used) < 0) {
        /* stderr is gone; the exit status still tells */
    }
    free(line);
}

/* --report: re-replication after the first failure */
static void run_report_redundancy(FILE *f, const run_job_t *job, const run_outcome_t *o,
                                  const char *survivor)
{
    uint64_t view = 0, bytes;
    double ms;

    if (o->first_failed >= 0) {
        view = run_events_view_of(&job->events, o->first_failed, survivor);
    }
    if (run_events_redundancy(&job->events, view, survivor, &ms, &bytes)) {
        fprintf(f, "redundancy_ms=%.1f\nredundancy_bytes=%llu\n", ms, (unsigned long long)bytes);
    } else {
        fputs("redundancy_ms=none\nredundancy_bytes=none\n", f);
    }
    fprintf(f, "redundancy_views=%llu\n", (unsigned long long)job->events.redundancy_view);
}

/* --report: key=value lines for scripts (the keys are listed in --help). */
static void run_write_report(run_job_t *job, const run_outcome_t *o, const char *survivor)
{
    FILE *f = job->report;

    if (f == NULL) {
        return;
    }
    job->report = NULL;
    fprintf(f, "nodes=%d\n", job->opts.nodes);
    fprintf(f, "killed_node=%d\n", o->first_failed);
    fprintf(f, "kill_how=%s\n", o->how);
    fprintf(f, "kill_ns=%llu\n", (unsigned long long)o->failed_ns);
    fprintf(f, "failed_nodes=%d\n", o->failed);
    if (o->have_figures) {
        fprintf(f, "detected_ms=%.1f\n",
                run_ms_between(o->failed_ns, o->figures.first_detected_ns));
        fprintf(f, "failover_ms=%.1f\n",
                run_ms_between(o->failed_ns, o->figures.last_recovered_ns));
    } else {
        fputs("detected_ms=none\nfailover_ms=none\n", f);
    }
    fprintf(f, "reported=%d\n", o->have_figures ? o->figures.reporters : 0);
    run_report_redundancy(f, job, o, survivor);
    fprintf(f, "survivors=%d\n", o->survivors);
    fprintf(f, "survived=%d\n", o->survived);
    fprintf(f, "fenced=%d\n", o->fenced);
    fprintf(f, "verified=%s\n", (job->events.verified == RUN_VERIFIED_YES) ? "yes" :
            (job->events.verified == RUN_VERIFIED_NO) ? "no" : "none");
    fprintf(f, "timed_out=%d\n", job->timed_out);
    fprintf(f, "exit=%d\n", o->exit_status);
    if (ferror(f) | (fclose(f) != 0)) {
        ftsvm_error("cannot write the report to %s: %m", job->opts.report);
    }
}

/* Sum the job up; returns its exit status. */
int run_finish(run_job_t *job)
{
    run_outcome_t outcome;
    char *survivor = calloc((size_t)job->opts.nodes, 1);

    if (survivor == NULL) {
        ftsvm_error("out of memory for the summary");
        return RUN_EXIT_FAILURE;
    }
    run_outcome(job, survivor, &outcome);
    run_summary(job, &outcome, survivor);
    run_write_report(job, &outcome, survivor);
    free(survivor);
    return outcome.exit_status;
}

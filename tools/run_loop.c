/* The launcher's one loop around one ppoll(): signals arrive through a
 * signalfd, so a SIGCHLD can never slip in between a check and the wait;
 * node output, rendezvous sockets and timers (--kill, --cut, --timeout) are
 * handled in turn. */
#include "run.h"
#include "common/clock.h"
#include "common/log.h"
#include "ftsvm.h"

#include <errno.h>
#include <math.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <time.h>
#include <unistd.h>

static uint64_t run_seconds_to_ns(double seconds)
{
    return (uint64_t)llround(seconds * RUN_NS_PER_S);
}

static const char *run_signal_name(int signo)
{
    switch (signo) {
    case SIGINT:  return "SIGINT";
    case SIGTERM: return "SIGTERM";
    case SIGKILL: return "SIGKILL";
    default:      return "a signal";
    }
}


static void run_on_signals(run_job_t *job)
{
    struct signalfd_siginfo si;

    while (read(job->sig_fd, &si, sizeof(si)) == (ssize_t)sizeof(si)) {
        if (si.ssi_signo == SIGCHLD) {
            continue;   /* run_reap below, for every child that has ended */
        }
        job->interrupts++;
        if (job->interrupts == 1) {
            ftsvm_warn("got %s: passing it on to the nodes (send it again to kill them)",
                       run_signal_name((int)si.ssi_signo));
            run_signal_nodes(job, (int)si.ssi_signo);
        } else {
            ftsvm_warn("got %s while the nodes are still ending: killing them",
                       run_signal_name((int)si.ssi_signo));
            run_signal_nodes(job, SIGKILL);
        }
    }
    /* SIGCHLDs coalesce: always reap all there is */
    run_reap(job);
}

static void run_on_timeout(run_job_t *job)
{
    int node, killed = 0;

    job->timeout_fired = 1;
    for (node = 0; node < job->opts.nodes; node++) {
        run_node_t *n = &job->nodes[node];

        if (n->reaped || n->cause != RUN_CAUSE_NONE) {
            continue;   /* ended, or already on its way out from --kill */
        }
        run_signal_node(job, node, SIGKILL);
        n->cause = RUN_CAUSE_TIMEOUT;
        killed++;
    }
    if (killed > 0) {
        job->timed_out = 1;
        ftsvm_warn("timed out after %g s: killing the %d node%s still running",
                   job->opts.timeout, killed, (killed == 1) ? "" : "s");
    }
}

/* A node still running that has not said redundancy is back in `view`. */
static int run_redundancy_awaited(const run_job_t *job, uint64_t view)
{
    int node;

    for (node = 0; node < job->opts.nodes; node++) {
        const run_node_t *n = &job->nodes[node];

        if (!n->reaped && n->injected_ns == 0 && job->events.fault_ns[node] == 0 &&
            !run_events_redundancy_said(&job->events, node, view)) {
            return 1;
        }
    }
    return 0;
}

/* The longest a NODE@redundancy kill waits, after the first survivor said
 * redundancy is back, for the others to say it too. */
#define RUN_REDUNDANCY_GRACE_NS 2000000000ull

/* Is the next --kill due? A NODE@redundancy one once there was a failure
 * and every survivor still running has said redundancy is back in the view
 * of every earlier one, the earlier kills and the nodes that killed
 * themselves at an FTSVM_FAULT point (views are numbered by the nodes
 * removed). Each survivor says it when it has every member's word that all
 * rows are done; killing a node as soon as the first one says it could take
 * that node's word from the others while it was on its way. A survivor that
 * has not said it RUN_REDUNDANCY_GRACE_NS after the first is not waited
 * for (the kill then shows what that costs). */
static int run_kill_due(run_job_t *job, uint64_t now)
{
    run_kill_t *k = &job->opts.kills[job->next_kill];
    uint64_t failed = (uint64_t)job->next_kill, view;
    int node;

    if (k->after_redundancy) {
        if (k->ready_ns == 0) {
            for (node = 0; node < job->opts.nodes; node++) {
                failed += (job->events.fault_ns[node] != 0);
            }
            view = failed > 0 ? failed : 1;
            if (job->events.redundancy_view < view) {
                return 0;
            }
            if (k->first_said_ns == 0) {
                k->first_said_ns = now;
            }
            if (run_redundancy_awaited(job, view) &&
                now < k->first_said_ns + RUN_REDUNDANCY_GRACE_NS) {
                return 0;
            }
            k->ready_ns = now;
        }
        return now >= k->ready_ns + run_seconds_to_ns(k->at);
    }
    return now >= job->start_ns + run_seconds_to_ns(k->at);
}

static void run_timers(run_job_t *job, uint64_t now)
{
    int node, i;

    while (job->next_kill < job->opts.kill_count && run_kill_due(job, now)) {
        run_inject(job, &job->opts.kills[job->next_kill++]);
    }
    if (job->opts.timeout > 0 && !job->timeout_fired &&
        now >= job->start_ns + run_seconds_to_ns(job->opts.timeout)) {
        run_on_timeout(job);
    }
    for (node = 0; node < job->opts.nodes; node++) {
        run_node_t *n = &job->nodes[node];

        if (n->drain_deadline == 0 || now < n->drain_deadline) {
            continue;
        }
        n->drain_deadline = 0;
        for (i = 0; i < 2; i++) {
            if (n->streams[i].fd >= 0) {
                run_stream_abandon(job, node, &n->streams[i]);
            }
        }
    }
    rdv_server_run_timers(job->rdv, now);
}

static uint64_t run_next_timer(const run_job_t *job)
{
    uint64_t next = rdv_server_next_timer(job->rdv), t;
    int node;

    if (job->next_kill < job->opts.kill_count) {
        const run_kill_t *k = &job->opts.kills[job->next_kill];

        /* one after redundancy waits for output, then for its delay */
        if (!k->after_redundancy || k->ready_ns != 0) {
            t = (k->after_redundancy ? k->ready_ns : job->start_ns) + run_seconds_to_ns(k->at);
            next = (t < next) ? t : next;
        } else if (k->first_said_ns != 0) {   /* the grace for the other survivors */
            t = k->first_said_ns + RUN_REDUNDANCY_GRACE_NS;
            next = (t < next) ? t : next;
        }
    }
    if (job->opts.timeout > 0 && !job->timeout_fired) {
        t = job->start_ns + run_seconds_to_ns(job->opts.timeout);
        next = (t < next) ? t : next;
    }
    for (node = 0; node < job->opts.nodes; node++) {
        t = job->nodes[node].drain_deadline;
        if (t != 0 && t < next) {
            next = t;
        }
    }
    return next;
}

/* Runs until every node has exited and its output has been passed on. */
int run_loop(run_job_t *job)
{
    size_t max_fds = 1 + 2 * (size_t)job->opts.nodes + rdv_server_max_pollfds(job->rdv);
    struct pollfd *fds = calloc(max_fds, sizeof(*fds));
    int *slot_stream = calloc(max_fds, sizeof(*slot_stream));   /* node * 2 + stream */
    struct timespec ts, *timeout;
    size_t nfds, rdv_first, i;
    uint64_t now, next;
    int node, k, status = FTSVM_OK;

    if (fds == NULL || slot_stream == NULL) {
        ftsvm_error("out of memory for the poll set of %d nodes", job->opts.nodes);
        status = FTSVM_ENOMEM;
        goto out;
    }
    for (;;) {
        now = clock_now_ns();
        run_timers(job, now);
        if (job->live == 0 && job->open_streams == 0) {
            break;
        }

        nfds = 0;
        fds[nfds].fd = job->sig_fd;
        fds[nfds].events = POLLIN;
        nfds++;
        for (node = 0; node < job->opts.nodes; node++) {
            for (k = 0; k < 2; k++) {
                if (job->nodes[node].streams[k].fd >= 0) {
                    fds[nfds].fd = job->nodes[node].streams[k].fd;
                    fds[nfds].events = POLLIN;
                    slot_stream[nfds] = node * 2 + k;
                    nfds++;
                }
            }
        }
        rdv_first = nfds;
        nfds += rdv_server_fill_pollfds(job->rdv, fds + nfds);

        next = run_next_timer(job);
        timeout = NULL;
        if (next != UINT64_MAX) {
            uint64_t wait_ns = (next > now) ? next - now : 0;

            ts.tv_sec = (time_t)(wait_ns / 1000000000ull);
            ts.tv_nsec = (long)(wait_ns % 1000000000ull);
            timeout = &ts;
        }
        for (i = 0; i < nfds; i++) {
            fds[i].revents = 0;
        }
        if (ppoll(fds, nfds, timeout, NULL) < 0) {
            if (errno == EINTR) {
                continue;
            }
            ftsvm_error("ppoll: %m");
            status = FTSVM_ESYS;
            goto out;
        }
        /* Exits first: a node's socket usually closes in the same iteration,
         * and its exit status makes the better rendezvous error message. */
        if (fds[0].revents != 0) {
            run_on_signals(job);
        }
        for (i = 1; i < rdv_first; i++) {
            if (fds[i].revents != 0) {
                node = slot_stream[i] / 2;
                run_stream_read(job, node, &job->nodes[node].streams[slot_stream[i] % 2]);
            }
        }
        rdv_server_handle_pollfds(job->rdv, fds + rdv_first, nfds - rdv_first);
    }
out:
    free(slot_stream);
    free(fds);
    return status;
}

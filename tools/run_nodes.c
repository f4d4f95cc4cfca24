/* The node processes: spawn each as a process group of its own with its
 * FTSVM_* environment and piped output, signal and reap them, inject the
 * failures of --kill and --cut. */
#include "run.h"
#include "common/clock.h"
#include "common/log.h"
#include "ftsvm.h"

#include <errno.h>
#include <fcntl.h>
#include <net/if.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

static void run_child_fail(const char *what, const char *app, int err)
    __attribute__((noreturn));

static void run_child_fail(const char *what, const char *app, int err)
{
    char msg[512];
    int len;

    len = snprintf(msg, sizeof(msg), "ftsvm-run: %s %s: %s\n", what, app, strerror(err));
    if (len > 0 && write(STDERR_FILENO, msg, (size_t)len) < 0) {
        /* nowhere left to say it */
    }
    _exit(127);
}

/* In the new process: become node `node` and exec the program. */
static void run_child(const run_job_t *job, int node, int out_fd, int err_fd)
    __attribute__((noreturn));

static void run_child(const run_job_t *job, int node, int out_fd, int err_fd)
{
    const char *app = job->opts.argv[0];
    char value[32];

    /* A node must never outlive the launcher. The launcher may already have
     * died between fork() and prctl(), in which case no signal will come. */
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (getppid() != job->launcher_pid) {
        _exit(127);
    }
    /* Its own process group, so that a kill reaches what the node started
     * too (a node may well be "sh -c ./app"); see also run_spawn. */
    setpgid(0, 0);
    /* an exec keeps the signal mask and ignored signals: hand back the
     * launcher's own */
    sigprocmask(SIG_SETMASK, &job->old_mask, NULL);
    sigaction(SIGPIPE, &job->old_sigpipe, NULL);
    setrlimit(RLIMIT_NOFILE, &job->old_nofile);

    if (dup2(out_fd, STDOUT_FILENO) < 0 || dup2(err_fd, STDERR_FILENO) < 0) {
        _exit(127);
    }
    /* Node 0 reads our stdin, unless it is a terminal: from a process group
     * of its own a read there would stop the node (SIGTTIN) for good. */
    if ((node != 0 || job->stdin_is_tty) && dup2(job->devnull_fd, STDIN_FILENO) < 0) {
        run_child_fail("cannot set up stdin for", app, errno);
    }
    if (job->netns != NULL) {
        char dev[IFNAMSIZ];
        int err = run_netns_join(job->netns, node);

        if (err != 0) {
            run_child_fail("cannot enter the network namespace of", app, err);
        }
        /* shared memory would bypass the veths, which --cut takes down */
        run_netns_device(node, dev, sizeof(dev));
        if ((getenv("UCX_TLS") == NULL && setenv("UCX_TLS", "tcp,self", 1) < 0) ||
            setenv("UCX_NET_DEVICES", dev, 1) < 0) {
            run_child_fail("cannot set up the environment of", app, errno);
        }
    }
    snprintf(value, sizeof(value), "%d", node);
    if (setenv("FTSVM_NODE", value, 1) < 0) {
        run_child_fail("cannot set up the environment of", app, errno);
    }
    snprintf(value, sizeof(value), "%d", job->opts.spares);
    if (job->opts.spares > 0 && setenv("FTSVM_SPARES", value, 1) < 0) {
        run_child_fail("cannot set up the environment of", app, errno);
    }
    snprintf(value, sizeof(value), "%d", job->opts.nodes);
    if (setenv("FTSVM_NODES", value, 1) < 0 ||
        setenv("FTSVM_RDV", rdv_server_address(job->rdv), 1) < 0 ||
        setenv("FTSVM_JOB_KEY", job->key, 1) < 0) {
        run_child_fail("cannot set up the environment of", app, errno);
    }
    execvp(app, job->opts.argv);
    run_child_fail("cannot run", app, errno);
}

int run_spawn(run_job_t *job, int node)
{
    run_node_t *n = &job->nodes[node];
    int out_pipe[2], err_pipe[2], i;
    pid_t pid;

    /* O_CLOEXEC: no node may inherit another node's pipe, or that pipe
     * would not reach its end before both nodes have exited. */
    if (pipe2(out_pipe, O_CLOEXEC) < 0) {
        ftsvm_error("cannot start node %d: pipe: %m", node);
        return FTSVM_ESYS;
    }
    if (pipe2(err_pipe, O_CLOEXEC) < 0) {
        ftsvm_error("cannot start node %d: pipe: %m", node);
        goto err_close_out;
    }
    pid = fork();
    if (pid < 0) {
        ftsvm_error("cannot start node %d: fork: %m", node);
        goto err_close_err;
    }
    if (pid == 0) {
        run_child(job, node, out_pipe[1], err_pipe[1]);
    }
    /* also here, against the race with the child's own setpgid: a signal to
     * the group before it exists would be lost */
    setpgid(pid, pid);
    close(out_pipe[1]);
    close(err_pipe[1]);
    n->pid = pid;
    n->streams[0].fd = out_pipe[0];
    n->streams[0].out_fd = STDOUT_FILENO;
    n->streams[1].fd = err_pipe[0];
    n->streams[1].out_fd = STDERR_FILENO;
    for (i = 0; i < 2; i++) {
        /* only our end: the node's end stays blocking */
        fcntl(n->streams[i].fd, F_SETFL, fcntl(n->streams[i].fd, F_GETFL) | O_NONBLOCK);
    }
    job->live++;
    job->open_streams += 2;
    return FTSVM_OK;

err_close_err:
    close(err_pipe[0]);
    close(err_pipe[1]);
err_close_out:
    close(out_pipe[0]);
    close(out_pipe[1]);
    return FTSVM_ESYS;
}

/* A node is signalled as a process group (run_child), and only until it
 * has been reaped: after that its pid may belong to someone else. */
void run_signal_node(run_job_t *job, int node, int signo)
{
    const run_node_t *n = &job->nodes[node];

    if (n->pid > 0 && !n->reaped && kill(-n->pid, signo) < 0) {
        kill(n->pid, signo);   /* its group is not set up yet or already gone */
    }
}

void run_signal_nodes(run_job_t *job, int signo)
{
    int node;

    for (node = 0; node < job->opts.nodes; node++) {
        run_signal_node(job, node, signo);
    }
}

void run_reap(run_job_t *job)
{
    run_node_t *n;
    int status, node;
    pid_t pid;

    for (;;) {
        pid = waitpid(-1, &status, WNOHANG);
        if (pid < 0 && errno == EINTR) {
            continue;
        }
        if (pid <= 0) {
            return;
        }
        for (node = 0; node < job->opts.nodes; node++) {
            if (job->nodes[node].pid == pid && !job->nodes[node].reaped) {
                break;
            }
        }
        if (node == job->opts.nodes) {
            continue;
        }
        n = &job->nodes[node];
        n->reaped = 1;
        n->reaped_ns = clock_now_ns();
        n->wait_status = status;
        job->live--;
        if (WIFSIGNALED(status)) {
            ftsvm_info("node %d ended by signal %d", node, WTERMSIG(status));
        } else {
            ftsvm_info("node %d exited with code %d", node, WEXITSTATUS(status));
        }
        if (n->streams[0].fd >= 0 || n->streams[1].fd >= 0) {
            n->drain_deadline = clock_now_ns() + RUN_DRAIN_GRACE_NS;
        }
        rdv_server_on_node_exit(job->rdv, node, status);
    }
}

void run_inject(run_job_t *job, const run_kill_t *kill_at)
{
    run_node_t *n = &job->nodes[kill_at->node];

    if (n->reaped || n->cause != RUN_CAUSE_NONE || (kill_at->cut && n->cut_ns != 0)) {
        ftsvm_info("%s %d@%g%s: node %d has already ended or was cut off; nothing injected",
                   kill_at->cut ? "--cut" : kill_at->evict ? "--evict" : "--kill",
                   kill_at->node, kill_at->at,
                   kill_at->after_redundancy ? " (after redundancy)" : "", kill_at->node);
        return;
    }
    if (kill_at->cut) {
        if (run_netns_cut(job->netns, kill_at->node) != FTSVM_OK) {
            return;   /* logged; the node runs on, and the summary shows no cut */
        }
        n->cut_ns = clock_now_ns();
        n->cut_at = (double)(n->cut_ns - job->start_ns) / RUN_NS_PER_S;
        ftsvm_info("injected a failure: cut node %d off at %.2f s", kill_at->node,
                   (double)(n->cut_ns - job->start_ns) / RUN_NS_PER_S);
        return;
    }
    if (kill_at->evict) {
        run_signal_node(job, kill_at->node, SIGUSR2);
        n->evict_at = (double)(clock_now_ns() - job->start_ns) / RUN_NS_PER_S;
        ftsvm_info("asked node %d to leave (SIGUSR2) at %.2f s", kill_at->node, n->evict_at);
        return;
    }
    run_signal_node(job, kill_at->node, SIGKILL);
    n->cause = RUN_CAUSE_INJECTED;
    n->injected_at = kill_at->after_redundancy ?
                     (double)(clock_now_ns() - job->start_ns) / RUN_NS_PER_S : kill_at->at;
    n->injected_ns = clock_now_ns();
    ftsvm_info("injected a failure: killed node %d at %.2f s", kill_at->node,
               (double)(clock_now_ns() - job->start_ns) / RUN_NS_PER_S);
}

/* A launcher failure with nodes already running: they must not go on alone. */
void run_abort_nodes(run_job_t *job)
{
    int node, status;

    run_signal_nodes(job, SIGKILL);
    for (node = 0; node < job->opts.nodes; node++) {
        if (job->nodes[node].pid > 0 && !job->nodes[node].reaped) {
            while (waitpid(job->nodes[node].pid, &status, 0) < 0 && errno == EINTR) {
            }
            job->nodes[node].reaped = 1;
        }
    }
}

void run_free_nodes(run_job_t *job)
{
    int node, k;

    for (node = 0; node < job->opts.nodes; node++) {
        for (k = 0; k < 2; k++) {
            if (job->nodes[node].streams[k].fd >= 0) {
                close(job->nodes[node].streams[k].fd);
            }
            free(job->nodes[node].streams[k].partial);
        }
    }
    free(job->nodes);
}

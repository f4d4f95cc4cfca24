/* ftsvm-run: start the N node processes of a job on this machine, serve their
 * rendezvous (rdv_server.c), prefix their output with the node id, inject
 * failures (--kill, and --cut in network namespaces of their own:
 * run_netns.c), and sum up how every node ended: exit codes, and the failure
 * detection and failover times that the survivors report (run_events.c).
 *
 *   ftsvm-run -n N [--threads T] [--timeout S] [--kill NODE@SEC]...
 *             [--netns [--cut NODE@SEC]...] [--report FILE] [--listen ADDR]
 *             [--] ./app [args...]
 *
 * Everything runs in one thread around one ppoll(). Signals arrive through a
 * signalfd, so a SIGCHLD can never slip in between a check and the wait; node
 * output, rendezvous sockets and timers are handled in turn. A failing node
 * never makes the launcher stop the others: the job ends when every node has
 * exited and its output has been read to the end.
 */
#include "run.h"
#include "common/clock.h"
#include "common/log.h"
#include "runtime/config.h"
#include "ftsvm.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <unistd.h>

/* The node that FTSVM_FAULT ("<point>[:<n>]@<node>[#<interval>]") names, -1
 * if none (the nodes themselves reject a bad value). */
static int run_fault_node(const char *spec, int nodes)
{
    const char *at = strrchr(spec, '@');
    char *end;
    long node;

    if (at == NULL) {
        return -1;
    }
    errno = 0;
    node = strtol(at + 1, &end, 10);
    if (errno != 0 || end == at + 1 || (*end != '\0' && *end != '#') || node < 0 ||
        node >= nodes) {
        return -1;
    }
    return (int)node;
}

/* The launcher's fds 0-2 must exist: a pipe created while one is closed
 * would land on it and be clobbered by a node's dup2(). */
static int run_open_std_fds(void)
{
    int fd;

    for (fd = 0; fd <= 2; fd++) {
        if (fcntl(fd, F_GETFD) >= 0 || errno != EBADF) {
            continue;
        }
        if (open("/dev/null", O_RDWR) != fd) {
            return -1;
        }
    }
    return 0;
}

/* Each node needs two pipes and a socket here (and its namespace with
 * --netns); raise the soft limit as far as that takes (the nodes get the old
 * one back). */
static int run_raise_fd_limit(run_job_t *job)
{
    rlim_t needed = (rlim_t)job->opts.nodes * (job->opts.netns ? 4 : 3) + 256;
    struct rlimit lim;

    if (getrlimit(RLIMIT_NOFILE, &job->old_nofile) < 0) {
        ftsvm_error("getrlimit(RLIMIT_NOFILE): %m");
        return FTSVM_ESYS;
    }
    lim = job->old_nofile;
    if (lim.rlim_cur != RLIM_INFINITY && lim.rlim_cur >= needed) {
        return FTSVM_OK;
    }
    if (lim.rlim_max != RLIM_INFINITY && lim.rlim_max < needed) {
        ftsvm_error("%d nodes need about %llu file descriptors here, but the limit is %llu "
                    "(ulimit -Hn)", job->opts.nodes, (unsigned long long)needed,
                    (unsigned long long)lim.rlim_max);
        return FTSVM_ESYS;
    }
    lim.rlim_cur = needed;
    if (setrlimit(RLIMIT_NOFILE, &lim) < 0) {
        ftsvm_error("cannot raise the file descriptor limit to %llu: %m",
                    (unsigned long long)needed);
        return FTSVM_ESYS;
    }
    return FTSVM_OK;
}

/* rdv_server_create's arguments, for run_netns_in_hub */
typedef struct run_rdv_args {
    const char     *listen;
    int             nodes;
    const char     *key;
    double          boot_timeout;
    rdv_server_t  **rdv_p;
} run_rdv_args_t;

static int run_rdv_create(void *arg)
{
    run_rdv_args_t *a = arg;

    return rdv_server_create(a->listen, a->nodes, a->key, a->boot_timeout, a->rdv_p);
}

/* The command line, the configuration, and what must be right before any
 * node runs. On an error, *exit_p is the launcher's exit status (0 after
 * --help). */
static int run_setup_options(run_job_t *job, int argc, char **argv, ftsvm_config_t *config,
                             int *exit_p)
{
    int rc = run_parse_args(argc, argv, &job->opts);

    if (rc != 0) {
        *exit_p = (rc < 0) ? 0 : rc;
        return FTSVM_EINVAL;
    }
    /* before the configuration is read, so that it is checked like any
     * other FTSVM_THREADS, and every node inherits it */
    if (job->opts.threads != NULL && setenv("FTSVM_THREADS", job->opts.threads, 1) < 0) {
        ftsvm_error("cannot set FTSVM_THREADS: %m");
        return FTSVM_ESYS;
    }
    if (ftsvm_config_load(config) != FTSVM_OK) {
        *exit_p = RUN_EXIT_USAGE;   /* the bad FTSVM_* values were logged */
        return FTSVM_EINVAL;
    }
    ftsvm_log_level = (ftsvm_log_level_t)config->log_level;
    job->fault_node = run_fault_node(config->fault, job->opts.nodes);

    if (run_open_std_fds() < 0) {
        return FTSVM_ESYS;   /* with fds 0-2 closed there is nobody to tell */
    }
    if (run_raise_fd_limit(job) != FTSVM_OK || rdv_make_key(job->key) != FTSVM_OK) {
        return FTSVM_ESYS;
    }
    if (job->opts.report != NULL) {
        /* now, so that a path we cannot write is an error before any node runs */
        job->report = fopen(job->opts.report, "we");
        if (job->report == NULL) {
            ftsvm_error("--report: cannot open %s: %m", job->opts.report);
            *exit_p = RUN_EXIT_USAGE;
            return FTSVM_EINVAL;
        }
    }
    return FTSVM_OK;
}

/* The event table, the output buffers, the nodes' table and /dev/null. On
 * an error the caller frees what was allocated (run_free_buffers). */
static int run_setup_buffers(run_job_t *job)
{
    int node, k;

    if (run_events_init(&job->events, job->opts.nodes) != 0) {
        ftsvm_error("out of memory for %d nodes", job->opts.nodes);
        return FTSVM_ENOMEM;
    }
    job->launcher_pid = getpid();
    job->scratch = malloc(RUN_LINE_MAX + 1);
    job->out = malloc(RUN_OUT_CAP);
    job->nodes = calloc((size_t)job->opts.nodes, sizeof(*job->nodes));
    if (job->scratch == NULL || job->out == NULL || job->nodes == NULL) {
        ftsvm_error("out of memory for %d nodes", job->opts.nodes);
        return FTSVM_ENOMEM;
    }
    for (node = 0; node < job->opts.nodes; node++) {
        for (k = 0; k < 2; k++) {
            job->nodes[node].streams[k].fd = -1;
        }
    }
    job->stdin_is_tty = isatty(STDIN_FILENO);
    job->devnull_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
    if (job->devnull_fd < 0) {
        ftsvm_error("cannot open /dev/null: %m");
        return FTSVM_ESYS;
    }
    return FTSVM_OK;
}

static void run_free_buffers(run_job_t *job)
{
    if (job->devnull_fd >= 0) {
        close(job->devnull_fd);
    }
    if (job->nodes != NULL) {
        run_free_nodes(job);
    }
    free(job->out);
    free(job->scratch);
    run_events_fini(&job->events);
}

/* Signals go through the signalfd only: blocked before the first fork, so
 * that no SIGCHLD or SIGINT can be lost. */
static int run_setup_signals(run_job_t *job)
{
    struct sigaction ignore;
    sigset_t mask;

    sigemptyset(&mask);
    sigaddset(&mask, SIGCHLD);
    sigaddset(&mask, SIGINT);
    sigaddset(&mask, SIGTERM);
    if (sigprocmask(SIG_BLOCK, &mask, &job->old_mask) < 0) {
        ftsvm_error("sigprocmask: %m");
        return FTSVM_ESYS;
    }
    job->sig_fd = signalfd(-1, &mask, SFD_NONBLOCK | SFD_CLOEXEC);
    if (job->sig_fd < 0) {
        ftsvm_error("signalfd: %m");
        sigprocmask(SIG_SETMASK, &job->old_mask, NULL);
        return FTSVM_ESYS;
    }
    /* a node's socket or our stdout may close under us: get EPIPE instead */
    memset(&ignore, 0, sizeof(ignore));
    ignore.sa_handler = SIG_IGN;
    sigaction(SIGPIPE, &ignore, &job->old_sigpipe);
    return FTSVM_OK;
}

static void run_restore_signals(run_job_t *job)
{
    close(job->sig_fd);
    sigprocmask(SIG_SETMASK, &job->old_mask, NULL);
}

/* The rendezvous server, in the hub namespace with --netns. On an error
 * *exit_p is the launcher's exit status, and no namespace is left. */
static int run_setup_rendezvous(run_job_t *job, const ftsvm_config_t *config, int *exit_p)
{
    run_rdv_args_t rdv_args;
    int status;

    rdv_args.listen = job->opts.listen;
    rdv_args.nodes = job->opts.nodes;
    rdv_args.key = job->key;
    rdv_args.boot_timeout = config->boot_timeout;
    rdv_args.rdv_p = &job->rdv;
    if (job->opts.netns) {
        /* after the signalfd: a SIGINT or SIGTERM meanwhile waits for the
         * loop, and every way out from here deletes the namespaces */
        if (run_netns_create(job->opts.nodes, &job->old_mask, &job->netns) != FTSVM_OK) {
            return FTSVM_ESYS;   /* logged */
        }
        rdv_args.listen = run_netns_hub_address(job->netns);
        status = run_netns_in_hub(job->netns, run_rdv_create, &rdv_args);
    } else {
        status = run_rdv_create(&rdv_args);
    }
    if (status != FTSVM_OK) {
        *exit_p = (status == FTSVM_EINVAL) ? RUN_EXIT_USAGE : RUN_EXIT_FAILURE;
        run_netns_destroy(job->netns);   /* rdv_server_create logged it */
        return status;
    }
    ftsvm_info("%d nodes, rendezvous on %s", job->opts.nodes, rdv_server_address(job->rdv));
    return FTSVM_OK;
}

int main(int argc, char **argv)
{
    ftsvm_config_t config;
    run_job_t job;
    int node, exit_status = RUN_EXIT_FAILURE;

    ftsvm_log_set_name("ftsvm-run");
    memset(&job, 0, sizeof(job));
    job.sig_fd = -1;
    job.devnull_fd = -1;
    if (run_setup_options(&job, argc, argv, &config, &exit_status) != FTSVM_OK) {
        goto err_close_report;
    }
    if (run_setup_buffers(&job) != FTSVM_OK) {
        goto err_free_buffers;
    }
    if (run_setup_signals(&job) != FTSVM_OK) {
        goto err_free_buffers;
    }
    if (run_setup_rendezvous(&job, &config, &exit_status) != FTSVM_OK) {
        goto err_restore_signals;
    }

    /* the --kill and --timeout clocks start here */
    job.start_ns = clock_now_ns();
    for (node = 0; node < job.opts.nodes; node++) {
        if (run_spawn(&job, node) != FTSVM_OK) {
            goto err_abort_nodes;   /* run_spawn logged it */
        }
    }
    if (run_loop(&job) != FTSVM_OK) {
        goto err_abort_nodes;
    }
    run_netns_destroy(job.netns);   /* every node has been reaped */
    exit_status = run_finish(&job);

    rdv_server_destroy(job.rdv);
    run_restore_signals(&job);
    run_free_buffers(&job);
    free(job.opts.kills);
    return exit_status;

err_abort_nodes:
    run_abort_nodes(&job);
    rdv_server_destroy(job.rdv);
    run_netns_destroy(job.netns);
err_restore_signals:
    run_restore_signals(&job);
err_free_buffers:
    run_free_buffers(&job);
err_close_report:
    if (job.report != NULL) {
        fclose(job.report);
    }
    free(job.opts.kills);
    return exit_status;
}

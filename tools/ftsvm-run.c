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
#include "common/clock.h"
#include "common/log.h"
#include "config.h"
#include "ftsvm.h"
#include "rdv_server.h"
#include "run_events.h"
#include "run_netns.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <net/if.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/random.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define RUN_MAX_NODES     4096
#define RUN_MAX_THREADS   1024
#define RUN_MAX_SECONDS   1e9          /* keeps every deadline inside uint64_t ns */
#define RUN_KEY_BYTES     32
#define RUN_LINE_MAX      (64u << 10)  /* a longer line is split */
#define RUN_OUT_CAP       (4 * RUN_LINE_MAX)
/* After a node has exited, how long a process it left behind (which holds
 * the other end of its output pipes) may keep them open before the launcher
 * stops waiting for the end of its output. */
#define RUN_DRAIN_GRACE_NS (1000 * 1000000ull)
#define RUN_NS_PER_S      1e9

#define RUN_USAGE \
    "usage: ftsvm-run -n N [--threads T] [--timeout S] [--kill NODE@SEC]... " \
    "[--netns [--cut NODE@SEC]...] [--report FILE] [--listen ADDR] [--] ./app [args...]\n"

/* exit statuses of the launcher itself */
enum {
    RUN_EXIT_FAILURE = 1,   /* a system call failed */
    RUN_EXIT_USAGE   = 2,   /* bad arguments or configuration */
};

/* an injected failure: --kill, or --cut when `cut` */
typedef struct run_kill {
    int         node;
    double      at;       /* seconds since launch */
    size_t      order;    /* position on the command line, to keep ties stable */
    int         cut;
} run_kill_t;

typedef struct run_opts {
    int         nodes;       /* 0: not given */
    const char *threads;     /* validated text for FTSVM_THREADS; NULL: not given */
    double      timeout;     /* seconds; 0: none */
    run_kill_t *kills;       /* sorted by time once parsed */
    size_t      kill_count;
    const char *listen;      /* NULL: not given */
    const char *report;      /* --report FILE; NULL: not given */
    int         netns;       /* --netns */
    int         cuts;        /* how many of kills are --cut */
    char      **argv;        /* the program and its arguments */
} run_opts_t;

typedef enum {
    RUN_CAUSE_NONE,
    RUN_CAUSE_INJECTED,      /* SIGKILL from --kill */
    RUN_CAUSE_TIMEOUT,       /* SIGKILL from --timeout */
} run_cause_t;

/* One of a node's output pipes. */
typedef struct run_stream {
    int    fd;               /* read end, -1 once at its end */
    int    out_fd;           /* where its lines go: STDOUT_FILENO or STDERR_FILENO */
    char  *partial;          /* RUN_LINE_MAX + 1 bytes once a line was left open */
    size_t partial_len;
    int    split;            /* a too long line was just cut: a newline next ends it */
} run_stream_t;

typedef struct run_node {
    pid_t        pid;
    int          reaped;
    int          wait_status;
    run_cause_t  cause;
    double       injected_at;    /* seconds, for RUN_CAUSE_INJECTED */
    uint64_t     injected_ns;    /* CLOCK_MONOTONIC of the SIGKILL, for RUN_CAUSE_INJECTED */
    uint64_t     reaped_ns;
    double       cut_at;         /* seconds; --cut took its link down then */
    uint64_t     cut_ns;         /* 0: not cut */
    uint64_t     drain_deadline; /* 0: none */
    run_stream_t streams[2];
} run_node_t;

typedef struct run_job {
    run_opts_t    opts;
    run_node_t   *nodes;
    rdv_server_t *rdv;
    run_netns_t  *netns;            /* --netns */
    char          key[2 * RUN_KEY_BYTES + 1];
    pid_t         launcher_pid;
    uint64_t      start_ns;
    int           sig_fd;
    int           devnull_fd;
    int           stdin_is_tty;
    sigset_t      old_mask;         /* restored in the nodes */
    struct sigaction old_sigpipe;   /* restored in the nodes */
    struct rlimit old_nofile;       /* restored in the nodes */
    int           live;             /* nodes not yet reaped */
    int           open_streams;
    size_t        next_kill;
    int           timeout_fired;
    int           timed_out;        /* the timeout killed at least one node */
    int           interrupts;       /* SIGINT / SIGTERM received */
    char         *scratch;          /* RUN_LINE_MAX + 1: reads of streams with no open line */
    char         *out;              /* RUN_OUT_CAP: prefixed lines on their way out */
    size_t        out_len;
    int           out_broken[3];    /* writing to fd 1 or 2 failed: drop its lines */
    run_events_t  events;           /* what the nodes said about failures and results */
    int           fault_node;       /* the node FTSVM_FAULT names, -1 if none */
    FILE         *report;           /* --report */
} run_job_t;

/* ---- command line ---- */

static void run_print_help(void)
{
    printf(RUN_USAGE
           "\n"
           "Start N processes of ./app on this machine as the nodes of one ftsvm job.\n"
           "\n"
           "  -n, --nodes N        number of nodes, 1..%d\n"
           "      --threads T      threads per node, 1..%d (sets FTSVM_THREADS)\n"
           "      --timeout S      SIGKILL every node still running after S seconds\n"
           "      --kill NODE@SEC  SIGKILL node NODE at SEC seconds after launch, as an\n"
           "                       injected failure; repeatable\n"
           "      --netns          run each node in a network namespace of its own (needs\n"
           "                       root; see below)\n"
           "      --cut NODE@SEC   with --netns: take node NODE's link down at SEC seconds\n"
           "                       after launch; the node should fence itself (exit %d)\n"
           "                       and the others go on; repeatable\n"
           "      --report FILE    write the job's outcome to FILE as key=value lines\n"
           "                       (see below)\n"
           "      --listen ADDR    address of the rendezvous socket (default 127.0.0.1)\n"
           "  -h, --help           print this help and exit\n"
           "      --version        print the version and exit\n"
           "Options may also be written --option=value.\n"
           "\n"
           "Every line a node writes comes out as \"[node] line\" on the same stream.\n"
           "Node 0 reads ftsvm-run's stdin unless that is a terminal; the other nodes\n"
           "read /dev/null. Each node runs in a process group of its own: --kill,\n"
           "--timeout and signals reach what it started too. SIGINT or SIGTERM is\n"
           "passed on to the nodes; a second one kills them.\n"
           "Each node gets FTSVM_NODE, FTSVM_NODES, FTSVM_RDV and FTSVM_JOB_KEY;\n"
           "FTSVM_BOOT_TIMEOUT bounds how long the nodes may take to join at start-up.\n"
           "\n"
           "With --netns, node K runs in the network namespace ftsvm-<pid>-K, whose only\n"
           "link, ftsvmK (10.213.X.K+1/24, X from the launcher's pid), is one end of a\n"
           "veth pair; the other end is a port of a bridge in the namespace\n"
           "ftsvm-<pid>-hub (10.213.X.254), where the rendezvous listens. The nodes get\n"
           "UCX_NET_DEVICES=ftsvmK and, unless UCX_TLS is set, UCX_TLS=tcp,self: all\n"
           "their traffic goes through the veths, which --cut can take down. The\n"
           "namespaces are deleted when the job ends (also on an error, SIGINT or\n"
           "SIGTERM). A node that was cut off and exits with %d is reported as fenced\n"
           "and does not fail the job.\n"
           "\n"
           "At the end one summary line goes to stderr: how each node ended and, when\n"
           "a node failed (--kill, --cut, a SIGKILL at its FTSVM_FAULT point, a signal)\n"
           "and the survivors printed \"[ftsvm-event ...]\" lines about it, the detection\n"
           "time (earliest detected_ns of a survivor minus the time of the failure) and\n"
           "the failover time (latest recovered_ns minus the same), in ms; then\n"
           "\"result verified\" or \"result NOT verified\" if a node printed \"verified\n"
           "yes\" or \"verified NO\". A node's time of failure is when the launcher\n"
           "killed it or cut it off, or else when it reaped it.\n"
           "The exit status is the highest over the nodes of their exit code (128 +\n"
           "signal number for a signal). Expected failures do not count: nodes killed\n"
           "by --kill, the node FTSVM_FAULT names when it ends by SIGKILL, and nodes\n"
           "cut off by --cut that exit with %d.\n"
           "\n"
           "--report FILE gets one key=value per line:\n"
           "  nodes         the job's size\n"
           "  killed_node   the node that failed first, -1 if none did\n"
           "  kill_how      kill (--kill), fault (FTSVM_FAULT), cut (--cut), signal,\n"
           "                or none\n"
           "  kill_ns       its time of failure (CLOCK_MONOTONIC ns), 0 if none\n"
           "  failed_nodes  how many nodes failed\n"
           "  detected_ms   detection time, \"none\" if no survivor reported the failure\n"
           "  failover_ms   failover time, likewise\n"
           "  reported      survivors that reported the failure\n"
           "  survivors     nodes that did not fail\n"
           "  survived      1 if there is a survivor and every survivor exited 0, else 0\n"
           "  fenced        nodes that exited with %d (fenced themselves)\n"
           "  verified      yes, no, or none (no node printed a verdict)\n"
           "  timed_out     1 if --timeout killed a node\n"
           "  exit          the launcher's exit status\n",
           RUN_MAX_NODES, RUN_MAX_THREADS, FTSVM_EXIT_FENCED, FTSVM_EXIT_FENCED,
           FTSVM_EXIT_FENCED, FTSVM_EXIT_FENCED);
}

static int run_usage_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static int run_usage_error(const char *fmt, ...)
{
    char msg[512];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    ftsvm_error("%s", msg);
    fputs(RUN_USAGE, stderr);
    return RUN_EXIT_USAGE;
}

static int run_parse_long(const char *text, long min, long max, long *value_p)
{
    char *end;
    long value;

    errno = 0;
    value = strtol(text, &end, 10);
    if (errno != 0 || end == text || *end != '\0' || value < min || value > max) {
        return -1;
    }
    *value_p = value;
    return 0;
}

/* Seconds: a finite number, above 0 (or at 0 when allow_zero), at most
 * RUN_MAX_SECONDS. */
static int run_parse_seconds(const char *text, int allow_zero, double *value_p)
{
    char *end;
    double value;

    errno = 0;
    value = strtod(text, &end);
    if (errno != 0 || end == text || *end != '\0' || !isfinite(value) ||
        value < 0.0 || (value == 0.0 && !allow_zero) || value > RUN_MAX_SECONDS) {
        return -1;
    }
    *value_p = value;
    return 0;
}

/* NODE@SEC of --kill or --cut (`option`); NODE is checked against -n once
 * every option is known. */
static int run_parse_kill(const char *option, const char *text, run_opts_t *opts)
{
    int cut = !strcmp(option, "--cut");
    const char *at = strchr(text, '@');
    char node_text[16];
    run_kill_t *kills;
    long node;
    double when;
    size_t len;

    if (at == NULL) {
        return run_usage_error("%s '%s': expected NODE@SECONDS, e.g. %s 1@0.5", option,
                               text, option);
    }
    len = (size_t)(at - text);
    if (len == 0) {
        return run_usage_error("%s '%s': the node id before '@' is missing", option, text);
    }
    if (at[1] == '\0') {
        return run_usage_error("%s '%s': the time in seconds after '@' is missing", option, text);
    }
    if (len >= sizeof(node_text)) {
        return run_usage_error("%s '%s': '%.*s' is not a node id", option, text, (int)len, text);
    }
    memcpy(node_text, text, len);
    node_text[len] = '\0';
    if (run_parse_long(node_text, 0, RUN_MAX_NODES - 1, &node) != 0) {
        return run_usage_error("%s '%s': '%s' is not a node id", option, text, node_text);
    }
    if (run_parse_seconds(at + 1, 1, &when) != 0) {
        return run_usage_error("%s '%s': '%s' is not a time in seconds (a number, 0 or "
                               "more)", option, text, at + 1);
    }
    kills = realloc(opts->kills, (opts->kill_count + 1) * sizeof(*kills));
    if (kills == NULL) {
        ftsvm_error("out of memory for %s", option);
        return RUN_EXIT_FAILURE;
    }
    opts->kills = kills;
    kills[opts->kill_count].node = (int)node;
    kills[opts->kill_count].at = when;
    kills[opts->kill_count].order = opts->kill_count;
    kills[opts->kill_count].cut = cut;
    opts->cuts += cut;
    opts->kill_count++;
    return 0;
}

static int run_kill_compare(const void *a, const void *b)
{
    const run_kill_t *ka = a, *kb = b;

    if (ka->at != kb->at) {
        return (ka->at < kb->at) ? -1 : 1;
    }
    return (ka->order < kb->order) ? -1 : (ka->order > kb->order);
}

/* The value of an option with one: "--opt=value", "-nVALUE", or the next
 * argument. */
static int run_option_value(int argc, char **argv, int *i, const char *name,
                            const char *inline_value, const char **value_p)
{
    if (inline_value != NULL) {
        *value_p = inline_value;
        return 0;
    }
    if (*i + 1 >= argc) {
        return run_usage_error("option '%s' needs a value", name);
    }
    *value_p = argv[++*i];
    return 0;
}

/* Returns 0 to go on, -1 when --help or --version was printed, or the exit
 * status of a usage error (which it logged). */
static int run_parse_args(int argc, char **argv, run_opts_t *opts)
{
    const char *value = NULL;
    char name[32];
    long number;
    int i, rc;

    memset(opts, 0, sizeof(*opts));
    for (i = 1; i < argc; i++) {
        const char *arg = argv[i];
        const char *inline_value = NULL;

        if (strcmp(arg, "--") == 0) {
            i++;
            break;
        }
        if (arg[0] != '-' || arg[1] == '\0') {
            break;   /* the program: everything from here on is its own */
        }
        if (arg[1] == '-') {
            const char *eq = strchr(arg, '=');
            size_t len = (eq != NULL) ? (size_t)(eq - arg) : strlen(arg);

            if (len >= sizeof(name)) {
                return run_usage_error("unknown option '%.*s'", (int)len, arg);
            }
            memcpy(name, arg, len);
            name[len] = '\0';
            inline_value = (eq != NULL) ? eq + 1 : NULL;
        } else {
            /* a short option, its value possibly attached: -n4 */
            name[0] = '-';
            name[1] = arg[1];
            name[2] = '\0';
            inline_value = (arg[2] != '\0') ? arg + 2 : NULL;
        }

        if (!strcmp(name, "--netns")) {
            if (inline_value != NULL) {
                return run_usage_error("option '%s' takes no value", name);
            }
            opts->netns = 1;
            continue;
        }
        if (!strcmp(name, "-h") || !strcmp(name, "--help") || !strcmp(name, "--version")) {
            if (inline_value != NULL) {
                return run_usage_error("option '%s' takes no value", name);
            }
            if (!strcmp(name, "--version")) {
                printf("ftsvm-run (ftsvm) %d.%d.%d\n", FTSVM_VERSION_MAJOR,
                       FTSVM_VERSION_MINOR, FTSVM_VERSION_PATCH);
            } else {
                run_print_help();
            }
            return -1;
        }
        if (strcmp(name, "-n") && strcmp(name, "--nodes") && strcmp(name, "--threads") &&
            strcmp(name, "--timeout") && strcmp(name, "--kill") && strcmp(name, "--listen") &&
            strcmp(name, "--report") && strcmp(name, "--cut")) {
            return run_usage_error("unknown option '%s'", name);
        }
        rc = run_option_value(argc, argv, &i, name, inline_value, &value);
        if (rc != 0) {
            return rc;
        }
        if (!strcmp(name, "-n") || !strcmp(name, "--nodes")) {
            if (run_parse_long(value, 1, RUN_MAX_NODES, &number) != 0) {
                return run_usage_error("%s: '%s' is not a number of nodes from 1 to %d", name,
                                       value, RUN_MAX_NODES);
            }
            opts->nodes = (int)number;
        } else if (!strcmp(name, "--threads")) {
            if (run_parse_long(value, 1, RUN_MAX_THREADS, &number) != 0) {
                return run_usage_error("--threads: '%s' is not a number of threads from 1 to %d",
                                       value, RUN_MAX_THREADS);
            }
            opts->threads = value;
        } else if (!strcmp(name, "--timeout")) {
            if (run_parse_seconds(value, 0, &opts->timeout) != 0) {
                return run_usage_error("--timeout: '%s' is not a positive number of seconds",
                                       value);
            }
        } else if (!strcmp(name, "--kill") || !strcmp(name, "--cut")) {
            rc = run_parse_kill(name, value, opts);
            if (rc != 0) {
                return rc;
            }
        } else if (!strcmp(name, "--report")) {
            if (value[0] == '\0') {
                return run_usage_error("--report: the file name is empty");
            }
            opts->report = value;
        } else {
            if (value[0] == '\0') {
                return run_usage_error("--listen: the address is empty");
            }
            opts->listen = value;
        }
    }

    if (opts->nodes == 0) {
        return run_usage_error("missing -n N, the number of nodes");
    }
    if (i >= argc) {
        return run_usage_error("missing the program to run");
    }
    opts->argv = argv + i;
    for (i = 0; (size_t)i < opts->kill_count; i++) {
        if (opts->kills[i].node >= opts->nodes) {
            return run_usage_error("%s %d@%g: there is no node %d in a job of %d node%s "
                                   "(ids start at 0)", opts->kills[i].cut ? "--cut" : "--kill",
                                   opts->kills[i].node, opts->kills[i].at,
                                   opts->kills[i].node, opts->nodes,
                                   (opts->nodes == 1) ? "" : "s");
        }
    }
    if (opts->cuts > 0 && !opts->netns) {
        return run_usage_error("--cut needs --netns: only a node with a network namespace of "
                               "its own can be cut off");
    }
    if (opts->netns && opts->listen != NULL) {
        return run_usage_error("--listen cannot go with --netns: the rendezvous listens on "
                               "the bridge of the job's namespaces");
    }
    if (opts->netns && opts->nodes > RUN_NETNS_MAX_NODES) {
        return run_usage_error("--netns: at most %d nodes (one /24 subnet)",
                               RUN_NETNS_MAX_NODES);
    }
    if (opts->listen == NULL) {
        opts->listen = "127.0.0.1";
    }
    if (opts->kill_count > 1) {
        qsort(opts->kills, opts->kill_count, sizeof(*opts->kills), run_kill_compare);
    }
    return 0;
}

/* ---- helpers ---- */

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

static int run_make_key(char *hex)
{
    static const char digits[] = "0123456789abcdef";
    uint8_t raw[RUN_KEY_BYTES];
    size_t got = 0, i;
    ssize_t n;

    while (got < sizeof(raw)) {
        n = getrandom(raw + got, sizeof(raw) - got, 0);
        if (n < 0) {
            if (errno == EINTR) {
                continue;
            }
            ftsvm_error("cannot make the job key: getrandom: %m");
            return FTSVM_ESYS;
        }
        got += (size_t)n;
    }
    for (i = 0; i < sizeof(raw); i++) {
        hex[2 * i] = digits[raw[i] >> 4];
        hex[2 * i + 1] = digits[raw[i] & 0xf];
    }
    hex[2 * sizeof(raw)] = '\0';
    explicit_bzero(raw, sizeof(raw));
    return FTSVM_OK;
}

/* ---- output ---- */

static void run_out_flush(run_job_t *job, int fd)
{
    size_t done = 0;
    ssize_t n;

    if (job->out_broken[fd]) {
        job->out_len = 0;
        return;
    }
    /* A blocking write: a slow reader of our stdout slows the job down
     * rather than making us hold an unbounded backlog. */
    while (done < job->out_len) {
        n = write(fd, job->out + done, job->out_len - done);
        if (n >= 0) {
            done += (size_t)n;
            continue;
        }
        if (errno == EINTR) {
            continue;
        }
        if (errno == EAGAIN || errno == EWOULDBLOCK) {
            struct pollfd pfd = { .fd = fd, .events = POLLOUT };

            poll(&pfd, 1, -1);   /* someone made our stdout non-blocking */
            continue;
        }
        job->out_broken[fd] = 1;
        ftsvm_warn("cannot write the nodes' output to %s: %m; dropping it from now on",
                   (fd == STDOUT_FILENO) ? "stdout" : "stderr");
        break;
    }
    job->out_len = 0;
}

/* Queue "[node] line\n"; lines leave in whole, one write for many. */
static void run_out_line(run_job_t *job, int node, int fd, const char *line, size_t len)
{
    char prefix[16];
    int prefix_len = snprintf(prefix, sizeof(prefix), "[%d] ", node);

    run_events_scan(&job->events, node, line, len);
    if (job->out_len + (size_t)prefix_len + len + 1 > RUN_OUT_CAP) {
        run_out_flush(job, fd);
    }
    memcpy(job->out + job->out_len, prefix, (size_t)prefix_len);
    job->out_len += (size_t)prefix_len;
    memcpy(job->out + job->out_len, line, len);
    job->out_len += len;
    job->out[job->out_len++] = '\n';
}

static void run_stream_close(run_job_t *job, int node, run_stream_t *stream)
{
    if (stream->partial_len > 0) {
        /* the last line had no newline: give it one */
        run_out_line(job, node, stream->out_fd, stream->partial, stream->partial_len);
        run_out_flush(job, stream->out_fd);
    }
    free(stream->partial);
    stream->partial = NULL;
    stream->partial_len = 0;
    close(stream->fd);
    stream->fd = -1;
    job->open_streams--;
}

/* Read what the pipe has (once) and pass on every complete line. Returns 1
 * when the pipe is at its end, and closes it then. */
static int run_stream_read(run_job_t *job, int node, run_stream_t *stream)
{
    char *base = (stream->partial != NULL) ? stream->partial : job->scratch;
    size_t have = stream->partial_len, start = 0, total, rest;
    char *newline;
    ssize_t n;

    n = read(stream->fd, base + have, RUN_LINE_MAX + 1 - have);
    if (n < 0 && (errno == EINTR || errno == EAGAIN || errno == EWOULDBLOCK)) {
        return 0;
    }
    if (n <= 0) {
        if (n < 0) {
            ftsvm_warn("cannot read the output of node %d: %m", node);
        }
        run_stream_close(job, node, stream);
        return 1;
    }
    total = have + (size_t)n;
    if (stream->split && have == 0 && base[0] == '\n') {
        start = 1;   /* the end of the line that was cut before */
    }
    stream->split = 0;
    while (start < total &&
           (newline = memchr(base + start, '\n', total - start)) != NULL) {
        run_out_line(job, node, stream->out_fd, base + start, (size_t)(newline - (base + start)));
        start = (size_t)(newline - base) + 1;
    }
    rest = total - start;
    if (rest == RUN_LINE_MAX + 1) {
        /* over 64 KiB without a newline: pass it on as a line of its own */
        run_out_line(job, node, stream->out_fd, base, rest);
        stream->split = 1;
        rest = 0;
    }
    if (rest > 0 && stream->partial == NULL) {
        stream->partial = malloc(RUN_LINE_MAX + 1);
        if (stream->partial == NULL) {
            /* better a line cut in two than a line lost */
            run_out_line(job, node, stream->out_fd, base + start, rest);
            rest = 0;
        } else {
            memcpy(stream->partial, base + start, rest);
        }
    } else if (rest > 0 && start > 0) {
        memmove(stream->partial, base + start, rest);
    }
    stream->partial_len = rest;
    run_out_flush(job, stream->out_fd);
    return 0;
}

/* The node is gone but something it started still holds its pipes: take
 * what is there and stop waiting. */
static void run_stream_abandon(run_job_t *job, int node, run_stream_t *stream)
{
    int i;

    for (i = 0; i < 64 && stream->fd >= 0; i++) {
        struct pollfd pfd = { .fd = stream->fd, .events = POLLIN };

        if (poll(&pfd, 1, 0) <= 0 || run_stream_read(job, node, stream)) {
            break;
        }
    }
    if (stream->fd >= 0) {
        ftsvm_warn("node %d has exited but a process it started still holds its %s open; "
                   "not waiting for it", node, (stream->out_fd == STDOUT_FILENO) ? "stdout" :
                   "stderr");
        run_stream_close(job, node, stream);
    }
}

/* ---- nodes ---- */

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
    snprintf(value, sizeof(value), "%d", job->opts.nodes);
    if (setenv("FTSVM_NODES", value, 1) < 0 ||
        setenv("FTSVM_RDV", rdv_server_address(job->rdv), 1) < 0 ||
        setenv("FTSVM_JOB_KEY", job->key, 1) < 0) {
        run_child_fail("cannot set up the environment of", app, errno);
    }
    execvp(app, job->opts.argv);
    run_child_fail("cannot run", app, errno);
}

static int run_spawn(run_job_t *job, int node)
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
static void run_signal_node(run_job_t *job, int node, int signo)
{
    const run_node_t *n = &job->nodes[node];

    if (n->pid > 0 && !n->reaped && kill(-n->pid, signo) < 0) {
        kill(n->pid, signo);   /* its group is not set up yet or already gone */
    }
}

static void run_signal_nodes(run_job_t *job, int signo)
{
    int node;

    for (node = 0; node < job->opts.nodes; node++) {
        run_signal_node(job, node, signo);
    }
}

static void run_reap(run_job_t *job)
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

static void run_inject(run_job_t *job, const run_kill_t *kill_at)
{
    run_node_t *n = &job->nodes[kill_at->node];

    if (n->reaped || n->cause != RUN_CAUSE_NONE || (kill_at->cut && n->cut_ns != 0)) {
        ftsvm_info("%s %d@%g: node %d has already ended or was cut off; nothing injected",
                   kill_at->cut ? "--cut" : "--kill", kill_at->node, kill_at->at,
                   kill_at->node);
        return;
    }
    if (kill_at->cut) {
        if (run_netns_cut(job->netns, kill_at->node) != FTSVM_OK) {
            return;   /* logged; the node runs on, and the summary shows no cut */
        }
        n->cut_ns = clock_now_ns();
        n->cut_at = kill_at->at;
        ftsvm_info("injected a failure: cut node %d off at %.2f s", kill_at->node,
                   (double)(n->cut_ns - job->start_ns) / RUN_NS_PER_S);
        return;
    }
    run_signal_node(job, kill_at->node, SIGKILL);
    n->cause = RUN_CAUSE_INJECTED;
    n->injected_at = kill_at->at;
    n->injected_ns = clock_now_ns();
    ftsvm_info("injected a failure: killed node %d at %.2f s", kill_at->node,
               (double)(clock_now_ns() - job->start_ns) / RUN_NS_PER_S);
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

static void run_timers(run_job_t *job, uint64_t now)
{
    int node, i;

    while (job->next_kill < job->opts.kill_count &&
           now >= job->start_ns + run_seconds_to_ns(job->opts.kills[job->next_kill].at)) {
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
        t = job->start_ns + run_seconds_to_ns(job->opts.kills[job->next_kill].at);
        next = (t < next) ? t : next;
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
static int run_loop(run_job_t *job)
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

/* ---- the end ---- */

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
        return n->reaped_ns;
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

/* One line on stderr, written at once. */
static void run_summary(const run_job_t *job, const run_outcome_t *o)
{
    size_t size = 512 + (size_t)job->opts.nodes * 64, used = 0;
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
    }
    run_appendf(line, size, &used, " | failures injected: %d", o->injected);
    if (o->have_figures) {
        run_appendf(line, size, &used, " | failure of node %d: detection %.1f ms, failover "
                    "%.1f ms", o->first_failed,
                    run_ms_between(o->failed_ns, o->figures.first_detected_ns),
                    run_ms_between(o->failed_ns, o->figures.last_recovered_ns));
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

/* --report: key=value lines for scripts (the keys are listed in --help). */
static void run_write_report(run_job_t *job, const run_outcome_t *o)
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
static int run_finish(run_job_t *job)
{
    run_outcome_t outcome;
    char *survivor = calloc((size_t)job->opts.nodes, 1);

    if (survivor == NULL) {
        ftsvm_error("out of memory for the summary");
        return RUN_EXIT_FAILURE;
    }
    run_outcome(job, survivor, &outcome);
    run_summary(job, &outcome);
    run_write_report(job, &outcome);
    free(survivor);
    return outcome.exit_status;
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

/* A launcher failure with nodes already running: they must not go on alone. */
static void run_abort_nodes(run_job_t *job)
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

static void run_free_nodes(run_job_t *job)
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

int main(int argc, char **argv)
{
    ftsvm_config_t config;
    struct sigaction ignore;
    sigset_t mask;
    run_rdv_args_t rdv_args;
    run_job_t job;
    int rc, node, k, status, exit_status = RUN_EXIT_FAILURE;

    ftsvm_log_set_name("ftsvm-run");
    memset(&job, 0, sizeof(job));
    job.sig_fd = -1;
    job.devnull_fd = -1;
    rc = run_parse_args(argc, argv, &job.opts);
    if (rc != 0) {
        free(job.opts.kills);
        return (rc < 0) ? 0 : rc;
    }
    /* before the configuration is read, so that it is checked like any
     * other FTSVM_THREADS, and every node inherits it */
    if (job.opts.threads != NULL && setenv("FTSVM_THREADS", job.opts.threads, 1) < 0) {
        ftsvm_error("cannot set FTSVM_THREADS: %m");
        goto err_free_opts;
    }
    if (ftsvm_config_load(&config) != FTSVM_OK) {
        exit_status = RUN_EXIT_USAGE;   /* the bad FTSVM_* values were logged */
        goto err_free_opts;
    }
    ftsvm_log_level = (ftsvm_log_level_t)config.log_level;
    job.fault_node = run_fault_node(config.fault, job.opts.nodes);

    if (run_open_std_fds() < 0) {
        goto err_free_opts;   /* with fds 0-2 closed there is nobody to tell */
    }
    if (run_raise_fd_limit(&job) != FTSVM_OK || run_make_key(job.key) != FTSVM_OK) {
        goto err_free_opts;
    }
    if (job.opts.report != NULL) {
        /* now, so that a path we cannot write is an error before any node runs */
        job.report = fopen(job.opts.report, "we");
        if (job.report == NULL) {
            ftsvm_error("--report: cannot open %s: %m", job.opts.report);
            exit_status = RUN_EXIT_USAGE;
            goto err_free_opts;
        }
    }
    if (run_events_init(&job.events, job.opts.nodes) != 0) {
        ftsvm_error("out of memory for %d nodes", job.opts.nodes);
        goto err_close_report;
    }
    job.launcher_pid = getpid();
    job.scratch = malloc(RUN_LINE_MAX + 1);
    job.out = malloc(RUN_OUT_CAP);
    job.nodes = calloc((size_t)job.opts.nodes, sizeof(*job.nodes));
    if (job.scratch == NULL || job.out == NULL || job.nodes == NULL) {
        ftsvm_error("out of memory for %d nodes", job.opts.nodes);
        goto err_free_buffers;
    }
    for (node = 0; node < job.opts.nodes; node++) {
        for (k = 0; k < 2; k++) {
            job.nodes[node].streams[k].fd = -1;
        }
    }
    job.stdin_is_tty = isatty(STDIN_FILENO);
    job.devnull_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
    if (job.devnull_fd < 0) {
        ftsvm_error("cannot open /dev/null: %m");
        goto err_free_buffers;
    }

    /* Signals go through the signalfd only: blocked before the first fork,
     * so that no SIGCHLD or SIGINT can be lost. */
    sigemptyset(&mask);
    sigaddset(&mask, SIGCHLD);
    sigaddset(&mask, SIGINT);
    sigaddset(&mask, SIGTERM);
    if (sigprocmask(SIG_BLOCK, &mask, &job.old_mask) < 0) {
        ftsvm_error("sigprocmask: %m");
        goto err_close_devnull;
    }
    job.sig_fd = signalfd(-1, &mask, SFD_NONBLOCK | SFD_CLOEXEC);
    if (job.sig_fd < 0) {
        ftsvm_error("signalfd: %m");
        goto err_restore_mask;
    }
    /* a node's socket or our stdout may close under us: get EPIPE instead */
    memset(&ignore, 0, sizeof(ignore));
    ignore.sa_handler = SIG_IGN;
    sigaction(SIGPIPE, &ignore, &job.old_sigpipe);

    rdv_args.listen = job.opts.listen;
    rdv_args.nodes = job.opts.nodes;
    rdv_args.key = job.key;
    rdv_args.boot_timeout = config.boot_timeout;
    rdv_args.rdv_p = &job.rdv;
    if (job.opts.netns) {
        /* after the signalfd: a SIGINT or SIGTERM meanwhile waits for the
         * loop, and every way out from here deletes the namespaces */
        if (run_netns_create(job.opts.nodes, &job.old_mask, &job.netns) != FTSVM_OK) {
            goto err_close_sigfd;   /* logged */
        }
        rdv_args.listen = run_netns_hub_address(job.netns);
        status = run_netns_in_hub(job.netns, run_rdv_create, &rdv_args);
    } else {
        status = run_rdv_create(&rdv_args);
    }
    if (status != FTSVM_OK) {
        exit_status = (status == FTSVM_EINVAL) ? RUN_EXIT_USAGE : RUN_EXIT_FAILURE;
        goto err_destroy_netns;   /* rdv_server_create logged it */
    }
    ftsvm_info("%d nodes, rendezvous on %s", job.opts.nodes, rdv_server_address(job.rdv));

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
    close(job.sig_fd);
    sigprocmask(SIG_SETMASK, &job.old_mask, NULL);
    close(job.devnull_fd);
    run_free_nodes(&job);
    free(job.out);
    free(job.scratch);
    run_events_fini(&job.events);
    free(job.opts.kills);
    return exit_status;

err_abort_nodes:
    run_abort_nodes(&job);
    rdv_server_destroy(job.rdv);
err_destroy_netns:
    run_netns_destroy(job.netns);
err_close_sigfd:
    close(job.sig_fd);
err_restore_mask:
    sigprocmask(SIG_SETMASK, &job.old_mask, NULL);
err_close_devnull:
    close(job.devnull_fd);
err_free_buffers:
    if (job.nodes != NULL) {
        run_free_nodes(&job);
    }
    free(job.out);
    free(job.scratch);
    run_events_fini(&job.events);
err_close_report:
    if (job.report != NULL) {
        fclose(job.report);
    }
err_free_opts:
    free(job.opts.kills);
    return exit_status;
}

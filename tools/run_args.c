/* ftsvm-run's command line: options, their values and checks, --help. */
#include "run.h"
#include "common/log.h"
#include "ftsvm.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define RUN_MAX_NODES     4096
#define RUN_MAX_THREADS   1024
#define RUN_MAX_SECONDS   1e9          /* keeps every deadline inside uint64_t ns */

#define RUN_USAGE \
    "usage: ftsvm-run -n N [--spares K] [--threads T] [--timeout S] [--kill NODE@SEC]... " \
    "[--evict NODE@SEC]... [--netns [--cut NODE@SEC]...] [--report FILE] [--listen ADDR] " \
    "[--] ./app [args...]\n"

/* ---- command line ---- */

static void run_print_help(void)
{
    printf(RUN_USAGE
           "\n"
           "Start N processes of ./app on this machine as the nodes of one ftsvm job.\n"
           "\n"
           "  -n, --nodes N        number of nodes, 1..%d\n"
           "      --spares K       start K more nodes, ids N..N+K-1, as spares: they run\n"
           "                       no application code (ftsvm_init does not return in\n"
           "                       them), take a failed node's place as a home, and exit\n"
           "                       0 when the job ends (sets FTSVM_SPARES; N >= 2)\n"
           "      --threads T      threads per node, 1..%d (sets FTSVM_THREADS)\n"
           "      --timeout S      SIGKILL every node still running after S seconds\n"
           "      --kill NODE@SEC  SIGKILL node NODE at SEC seconds after launch, as an\n"
           "                       injected failure; repeatable. NODE@redundancy[+SEC]:\n"
           "                       (SEC seconds) after a node failed and the survivors\n"
           "                       have said that redundancy is back after every earlier\n"
           "                       failure, --kill or FTSVM_FAULT (these come after the\n"
           "                       timed ones, in the order given)\n"
           "      --evict NODE@SEC send node NODE SIGUSR2 at SEC seconds after launch (or\n"
           "                       NODE@redundancy[+SEC], as for --kill): it hands its\n"
           "                       homes over and leaves the job at its next barrier,\n"
           "                       then exits 0 (no failure); repeatable\n"
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
           "  redundancy_ms    after the first failure: ms from a survivor's news of it\n"
           "                   until every row had two homes again (the latest\n"
           "                   survivor), \"none\" if none said so\n"
           "  redundancy_bytes what re-replication copied then, likewise\n"
           "  redundancy_views the highest view in which redundancy came back, 0: none\n"
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
    int cut = !strcmp(option, "--cut"), evict = !strcmp(option, "--evict");
    const char *at = strchr(text, '@');
    char node_text[16];
    run_kill_t *kills;
    long node;
    double when;
    int after;
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
    after = !strncmp(at + 1, "redundancy", 10) && (at[11] == '\0' || at[11] == '+');
    if (after && at[11] == '\0') {
        when = 0;
    } else if (after) {
        if (run_parse_seconds(at + 12, 1, &when) != 0) {
            return run_usage_error("%s '%s': '%s' is not a delay in seconds after "
                                   "'redundancy+' (a number, 0 or more)", option, text, at + 12);
        }
    } else if (run_parse_seconds(at + 1, 1, &when) != 0) {
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
    kills[opts->kill_count].evict = evict;
    kills[opts->kill_count].after_redundancy = after;
    kills[opts->kill_count].ready_ns = 0;
    opts->cuts += cut;
    opts->kill_count++;
    return 0;
}

static int run_kill_compare(const void *a, const void *b)
{
    const run_kill_t *ka = a, *kb = b;

    if (ka->after_redundancy != kb->after_redundancy) {
        return ka->after_redundancy ? 1 : -1;   /* after every timed one */
    }
    if (!ka->after_redundancy && ka->at != kb->at) {   /* those: in their order */
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

/* The option's name in `name` ("--opt" of "--opt=value", "-n" of "-n4") and
 * its value when attached to it (NULL: none). */
static int run_option_name(const char *arg, char name[32], const char **inline_value_p)
{
    if (arg[1] == '-') {
        const char *eq = strchr(arg, '=');
        size_t len = (eq != NULL) ? (size_t)(eq - arg) : strlen(arg);

        if (len >= 32) {
            return run_usage_error("unknown option '%.*s'", (int)len, arg);
        }
        memcpy(name, arg, len);
        name[len] = '\0';
        *inline_value_p = (eq != NULL) ? eq + 1 : NULL;
    } else {
        /* a short option, its value possibly attached: -n4 */
        name[0] = '-';
        name[1] = arg[1];
        name[2] = '\0';
        *inline_value_p = (arg[2] != '\0') ? arg + 2 : NULL;
    }
    return 0;
}

/* An option without a value: 1 if `name` is one (and was done, -1 in *rc_p
 * when it printed --help or --version), else 0. */
static int run_parse_flag(const char *name, const char *inline_value, run_opts_t *opts,
                          int *rc_p)
{
    int help = !strcmp(name, "-h") || !strcmp(name, "--help");

    if (strcmp(name, "--netns") && !help && strcmp(name, "--version")) {
        return 0;
    }
    if (inline_value != NULL) {
        *rc_p = run_usage_error("option '%s' takes no value", name);
        return 1;
    }
    *rc_p = 0;
    if (!strcmp(name, "--netns")) {
        opts->netns = 1;
    } else {
        if (help) {
            run_print_help();
        } else {
            printf("ftsvm-run (ftsvm) %d.%d.%d\n", FTSVM_VERSION_MAJOR, FTSVM_VERSION_MINOR,
                   FTSVM_VERSION_PATCH);
        }
        *rc_p = -1;
    }
    return 1;
}

static int run_is_valued_option(const char *name)
{
    static const char *const valued[] = { "-n", "--nodes", "--threads", "--timeout", "--kill",
                                          "--listen", "--report", "--cut", "--spares",
                                          "--evict" };
    size_t k;

    for (k = 0; k < sizeof(valued) / sizeof(valued[0]); k++) {
        if (!strcmp(name, valued[k])) {
            return 1;
        }
    }
    return 0;
}

/* An option with a value (run_is_valued_option). */
static int run_parse_valued(const char *name, const char *value, run_opts_t *opts)
{
    long number;

    if (!strcmp(name, "-n") || !strcmp(name, "--nodes")) {
        if (run_parse_long(value, 1, RUN_MAX_NODES, &number) != 0) {
            return run_usage_error("%s: '%s' is not a number of nodes from 1 to %d", name,
                                   value, RUN_MAX_NODES);
        }
        opts->nodes = (int)number;
    } else if (!strcmp(name, "--spares")) {
        if (run_parse_long(value, 0, RUN_MAX_NODES - 2, &number) != 0) {
            return run_usage_error("--spares: '%s' is not a number of spare nodes from 0 to %d",
                                   value, RUN_MAX_NODES - 2);
        }
        opts->spares = (int)number;
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
    } else if (!strcmp(name, "--kill") || !strcmp(name, "--cut") || !strcmp(name, "--evict")) {
        return run_parse_kill(name, value, opts);
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
    return 0;
}

/* What only the whole command line can tell; then the defaults. */
static int run_check_opts(run_opts_t *opts)
{
    size_t k;

    for (k = 0; k < opts->kill_count; k++) {
        if (opts->kills[k].node >= opts->nodes) {
            return run_usage_error("%s %d@%g: there is no node %d in a job of %d node%s "
                                   "(ids start at 0)", opts->kills[k].cut ? "--cut" :
                                   opts->kills[k].evict ? "--evict" : "--kill",
                                   opts->kills[k].node, opts->kills[k].at,
                                   opts->kills[k].node, opts->nodes,
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

int run_parse_args(int argc, char **argv, run_opts_t *opts)
{
    const char *value = NULL, *inline_value = NULL;
    char name[32];
    int i, rc = 0;

    memset(opts, 0, sizeof(*opts));
    for (i = 1; i < argc; i++) {
        const char *arg = argv[i];

        if (strcmp(arg, "--") == 0) {
            i++;
            break;
        }
        if (arg[0] != '-' || arg[1] == '\0') {
            break;   /* the program: everything from here on is its own */
        }
        if ((rc = run_option_name(arg, name, &inline_value)) != 0) {
            return rc;
        }
        if (run_parse_flag(name, inline_value, opts, &rc)) {
            if (rc != 0) {
                return rc;
            }
            continue;
        }
        if (!run_is_valued_option(name)) {
            return run_usage_error("unknown option '%s'", name);
        }
        if ((rc = run_option_value(argc, argv, &i, name, inline_value, &value)) != 0 ||
            (rc = run_parse_valued(name, value, opts)) != 0) {
            return rc;
        }
    }

    if (opts->nodes == 0) {
        return run_usage_error("missing -n N, the number of nodes");
    }
    if (opts->spares > 0 && opts->nodes < 2) {
        return run_usage_error("--spares: the job needs at least 2 application nodes (-n 2) "
                               "for a spare to take the place of one");
    }
    if (opts->nodes + opts->spares > RUN_MAX_NODES) {
        return run_usage_error("-n %d with --spares %d: at most %d nodes in all", opts->nodes,
                               opts->spares, RUN_MAX_NODES);
    }
    opts->nodes += opts->spares;   /* from here: every node process, the spares last */
    if (i >= argc) {
        return run_usage_error("missing the program to run");
    }
    opts->argv = argv + i;
    return run_check_opts(opts);
}

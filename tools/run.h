/* What the files of ftsvm-run share: the job, its nodes and their output
 * streams, and each file's entry points.
 *
 *   run_args.c     the command line and --help
 *   run_output.c   nodes' output, line by line, prefixed with the node id
 *   run_nodes.c    spawning, signalling, reaping and injecting into the nodes
 *   run_loop.c     the one ppoll() loop: signals, output, rendezvous, timers
 *   run_outcome.c  how every node ended: the summary line, --report, the exit status
 *   ftsvm-run.c    main: set-up, run, tear-down
 */
#ifndef FTSVM_RUN_H
#define FTSVM_RUN_H

#include "runtime/rdv_server.h"
#include "run_events.h"
#include "run_netns.h"

#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/resource.h>
#include <sys/types.h>

#define RUN_LINE_MAX      (64u << 10)  /* a longer line is split */
#define RUN_OUT_CAP       (4 * RUN_LINE_MAX)
/* After a node has exited, how long a process it left behind (which holds
 * the other end of its output pipes) may keep them open before the launcher
 * stops waiting for the end of its output. */
#define RUN_DRAIN_GRACE_NS (1000 * 1000000ull)
#define RUN_NS_PER_S      1e9


/* exit statuses of the launcher itself */
enum {
    RUN_EXIT_FAILURE = 1,   /* a system call failed */
    RUN_EXIT_USAGE   = 2,   /* bad arguments or configuration */
};

/* an injected failure: --kill, or --cut when `cut`; or --evict (no failure) */
typedef struct run_kill {
    int         node;
    double      at;       /* seconds since launch */
    size_t      order;    /* position on the command line, to keep ties stable */
    int         cut;
    int         evict;    /* --evict: SIGUSR2, the node leaves at its next barrier */
    int         after_redundancy;   /* NODE@redundancy[+SEC]: `at` seconds after the
                                     * survivors said that redundancy is back after
                                     * every earlier failure */
    uint64_t    ready_ns;           /* when they had said it; 0: not yet */
    uint64_t    first_said_ns;      /* when the first of them said it; 0: not yet */
} run_kill_t;

typedef struct run_opts {
    int         nodes;       /* every node process, spares included; 0: not given */
    int         spares;      /* --spares: the last `spares` of them */
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
    double       evict_at;       /* seconds; --evict asked it to leave then (0: never) */
    uint64_t     cut_ns;         /* 0: not cut */
    uint64_t     drain_deadline; /* 0: none */
    run_stream_t streams[2];
} run_node_t;

typedef struct run_job {
    run_opts_t    opts;
    run_node_t   *nodes;
    rdv_server_t *rdv;
    run_netns_t  *netns;            /* --netns */
    char          key[2 * RDV_KEY_BYTES + 1];
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

/* run_args.c: returns 0 to go on, -1 when --help or --version was printed,
 * or the exit status of a usage error (which it logged). */
int  run_parse_args(int argc, char **argv, run_opts_t *opts);

/* run_output.c: read what the pipe has (once) and pass on every complete
 * line; 1 while it stays open. abandon: the node is gone but something it
 * started still holds the pipe. */
int  run_stream_read(run_job_t *job, int node, run_stream_t *stream);
void run_stream_abandon(run_job_t *job, int node, run_stream_t *stream);

/* run_nodes.c */
int  run_spawn(run_job_t *job, int node);
void run_signal_node(run_job_t *job, int node, int signo);
void run_signal_nodes(run_job_t *job, int signo);
void run_reap(run_job_t *job);
void run_inject(run_job_t *job, const run_kill_t *kill_at);
/* a launcher failure with nodes already running: they must not go on alone */
void run_abort_nodes(run_job_t *job);
void run_free_nodes(run_job_t *job);

/* run_loop.c: runs until every node has exited and its output has been
 * passed on */
int  run_loop(run_job_t *job);

/* run_outcome.c: sum the job up (summary line, --report); returns its exit
 * status */
int  run_finish(run_job_t *job);

#endif

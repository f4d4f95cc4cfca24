/* What ftsvm-run learns from the lines its nodes print: the failure events of
 * lib/failure (FAILURE_EVENT_TAG) and an application's verdict (bench/app.h).
 *
 *   [ftsvm-event view=V removed=F cause=C detected_ns=D recovered_ns=R]
 *       a survivor adopted view V without node F (F may be a comma-separated
 *       list) because of C; it learned of the failure at D and ran again at R
 *       (CLOCK_MONOTONIC ns, the launcher's clock as well: one machine)
 *   [ftsvm-event fenced=N ns=T]
 *       node N fenced itself at T and is about to exit with FTSVM_EXIT_FENCED
 *   [ftsvm-event redundancy view=V rows=R bytes=B ms=T]
 *       a survivor has every placement row of view V on two homes again: it
 *       copied or got R rows (B bytes) to new homes, T ms after it learned
 *       of the failure that made view V
 *   ... verified yes / ... verified NO
 *       an application checked its result
 *
 * The tag may come anywhere in a line (after a log prefix, say). A line that
 * carries the tag but cannot be read is counted and otherwise ignored: a
 * node's output never makes the launcher fail. */
#ifndef FTSVM_RUN_EVENTS_H
#define FTSVM_RUN_EVENTS_H

#include <stddef.h>
#include <stdint.h>

#define RUN_EVENT_TAG        "[ftsvm-event "
/* the line a node writes as it SIGKILLs itself at its FTSVM_FAULT point */
#define RUN_FAULT_TAG        "FTSVM_FAULT: killing itself"
#define RUN_EVENT_CAUSE_MAX  16
#define RUN_EVENTS_MAX       65536   /* more are counted as dropped */

typedef enum {
    RUN_VERIFIED_NONE,   /* no node printed a verdict */
    RUN_VERIFIED_YES,
    RUN_VERIFIED_NO,     /* wins over yes: one wrong result is enough */
} run_verified_t;

/* One survivor's recovery from the removal of one node. */
typedef struct run_event {
    int      reporter;
    int      removed;
    uint64_t view;
    uint64_t detected_ns;
    uint64_t recovered_ns;
    char     cause[RUN_EVENT_CAUSE_MAX];
} run_event_t;

/* One survivor's "redundancy is back" in one view. */
typedef struct run_redundancy {
    int      reporter;
    uint64_t view;
    uint64_t rows;
    uint64_t bytes;
    double   ms;
} run_redundancy_t;

typedef struct run_events {
    int             nodes;
    run_event_t    *events;
    size_t          count;
    size_t          cap;
    run_redundancy_t *redundancy;
    size_t          redundancy_count;
    size_t          redundancy_cap;
    uint64_t        redundancy_view;   /* the highest view any node said it of, 0: none */
    uint64_t       *fenced_ns;     /* per node, 0: it did not say it fenced itself */
    uint64_t       *fault_ns;      /* per node, when its FTSVM_FAULT line was read; 0: none */
    run_verified_t  verified;
    unsigned        malformed;     /* tagged lines that could not be read */
    unsigned        dropped;       /* events beyond RUN_EVENTS_MAX */
} run_events_t;

/* The failure figures of one removed node, from the events of the nodes
 * that `survivor` marks. */
typedef struct run_figures {
    int      reporters;          /* survivors that reported its removal */
    uint64_t first_detected_ns;  /* earliest detected_ns among them */
    uint64_t last_recovered_ns;  /* latest recovered_ns among them */
} run_figures_t;

int  run_events_init(run_events_t *events, int nodes);
void run_events_fini(run_events_t *events);

/* Look at one line of node `node`'s output (len bytes, no newline). */
void run_events_scan(run_events_t *events, int node, const char *line, size_t len);

/* Returns 1 and fills *figures_p when at least one survivor reported the
 * removal of `removed`, else 0. */
int  run_events_figures(const run_events_t *events, int removed, const char *survivor,
                        run_figures_t *figures_p);

/* 1 when `node` has said that redundancy is back in view `view` or a later
 * one. */
int  run_events_redundancy_said(const run_events_t *events, int node, uint64_t view);
/* The view that removed `removed`, as its survivors reported it; 0: none. */
uint64_t run_events_view_of(const run_events_t *events, int removed, const char *survivor);

/* Returns 1 and the latest ms among the survivors that said redundancy is
 * back in `view` (and the bytes one of them copied), else 0. */
int  run_events_redundancy(const run_events_t *events, uint64_t view, const char *survivor,
                           double *ms_p, uint64_t *bytes_p);

#endif

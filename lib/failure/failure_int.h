/* What the files of lib/failure share: membership, heartbeats, recovery. */
#ifndef FTSVM_FAILURE_INT_H
#define FTSVM_FAILURE_INT_H

#include "failure.h"
#include "common/stats.h"

#include <pthread.h>
#include <stdatomic.h>
#include <time.h>

/* active-message types of the module (hlrc uses 1..15, locks 16..31) */
enum {
    FAILURE_AM_VIEW   = 40,   /* "these nodes are removed" (a mask) */
    FAILURE_AM_GATHER = 41,   /* a piece of a recovery step's contribution */
    FAILURE_AM_LEAVE  = 42,   /* "remove me": the sender leaves on purpose */
};

/* why a node was removed (first cause seen here) */
enum {
    FAILURE_CAUSE_TRANSPORT, FAILURE_CAUSE_HEARTBEAT, FAILURE_CAUSE_ANNOUNCED,
    FAILURE_CAUSE_STARTUP,   /* missing from a start-up round (failure_start) */
    FAILURE_CAUSE_EVICTED,   /* it left on purpose (failure_leave): no failure */
    FAILURE_CAUSE_COUNT
};

enum {
    FAILURE_STAT_HEARTBEATS, FAILURE_STAT_MISSED_BEATS, FAILURE_STAT_SUSPICIONS,
    FAILURE_STAT_VIEW_CHANGES, FAILURE_STAT_VIEWS_SENT, FAILURE_STAT_RECOVERY_US,
    FAILURE_STAT_COUNT
};

typedef struct failure_step_slot {
    int             order;
    failure_step_t  step;
    void           *arg;
} failure_step_slot_t;

typedef struct failure_gather_buf failure_gather_buf_t;

typedef struct failure {
    rdma_ctx_t        *rdma;
    unsigned           region;
    int                node, nodes;
    int                app_nodes;     /* the rest are spares: the application never sees them */
    uint64_t           hb_interval_ns, hb_timeout_ns;
    int                quorum;

    pthread_mutex_t    lock;
    pthread_cond_t     cond;          /* views, gathers, the recovery thread */
    uint8_t           *target;        /* nodes: removed by some announcement */
    uint8_t           *removed;       /* nodes: removed in the adopted view */
    int               *cause;         /* nodes: FAILURE_CAUSE_* of the removal */
    _Atomic uint8_t   *leaving;       /* nodes: said it leaves (failure_expect_leave) */
    uint8_t           *leave_answer;  /* nodes: their answer to this node's intent (view.c) */
    int                leaving_self;  /* this node asked to leave and has not taken it back */
    uint64_t          *removed_in;    /* nodes: the view that removed it (0: none) */
    uint64_t          *recovery_ns;   /* nodes: from the news to the end of recovery */
    _Atomic uint64_t   view;          /* adopted view: the number of removed nodes */
    _Atomic uint64_t   adoption_seq;  /* odd while an adoption changes the placement */
    uint64_t           target_view;
    uint64_t           recovered;     /* the last view whose recovery ended */
    _Atomic int        recovering;
    uint64_t           detected_ns;   /* first news of the change being recovered */
    _Atomic int        quiescing;     /* shutdown: peers leave, nothing is news */
    _Atomic int        started;       /* failure_start's start-up view is done */
    int                stop;

    /* recovery (recovery.c) */
    pthread_t          rec_thread;
    int                rec_started;
    failure_step_slot_t steps[FAILURE_MAX_STEPS];
    int                nsteps;
    failure_gather_buf_t *gathers;    /* pieces received, by (view, round, node) */
    struct { failure_app_cb_t cb; void *arg; } app[FAILURE_MAX_STEPS];
    int                napp;

    /* heartbeats (heartbeat.c) */
    pthread_t          hb_thread;
    int                hb_started;

    stats_group_t      stats;
} failure_t;

extern failure_t failure;

/* the realtime clock `ns` from now, for pthread_cond_timedwait */
static inline void failure_timespec_in(struct timespec *ts, uint64_t ns)
{
    clock_gettime(CLOCK_REALTIME, ts);
    ts->tv_sec  += (time_t)(ns / 1000000000ull);
    ts->tv_nsec += (long)(ns % 1000000000ull);
    if (ts->tv_nsec >= 1000000000L) {
        ts->tv_sec++;
        ts->tv_nsec -= 1000000000L;
    }
}

/* view.c */
const char *failure_cause_name(int cause);
void failure_report(uint64_t view, int node, int cause, uint64_t detected_ns,
                    uint64_t recovered_ns);
void failure_announce(const uint8_t *remove, int cause);
void failure_fence(const char *why) __attribute__((noreturn));
int  failure_view_init(void);
/* on the recovery thread: adopt the announced view; 1 when it changed */
int  failure_view_adopt(int *removed_now);

/* fence.c: a removed peer that could still write this node's memory
 * directly is killed, and gone, before the view without it is adopted */
int  failure_fence_setup(void);
void failure_fence_removed(const int *removed_now);
void failure_fence_teardown(void);

/* heartbeat.c */
int  failure_heartbeat_start(void);
void failure_heartbeat_stop(void);

/* recovery.c */
void failure_adoption_steps(const int *removed_now);
int  failure_recovery_init(void);
int  failure_recovery_start(void);
void failure_recovery_stop(void);
/* under failure.lock: 1, and the reason in `why`, when this node's recovery
 * has run so long after the news that it will not end */
int  failure_recovery_stalled(uint64_t now, char *why, size_t size);

#endif

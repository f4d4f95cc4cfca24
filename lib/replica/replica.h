/*
 * lib/replica: the two homes of every page (DESIGN.md section 5): placement,
 * the lastRelease / nextRelease markers, the decision that resolves a failed
 * writer's pending entry, and the stop points of the propagation tests.
 * The two-phase propagation itself is a step of the release (lib/hlrc,
 * propagate.c); it asks this module where the homes are and writes the
 * markers through it.
 */
#ifndef FTSVM_REPLICA_H
#define FTSVM_REPLICA_H

#include "runtime/config.h"
#include "failure/failure.h"
#include "rdma/rdma.h"

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

/* transport regions of the module: the markers of the nodes this node backs up */
#define REPLICA_NREGIONS 1

enum { REPLICA_PRIMARY = 0, REPLICA_SECONDARY = 1 };

/* ---- placement (placement.c) ----
 * Blocks (FTSVM_HOME_BLOCK pages) are placed by a table of `period` rows
 * that repeats over the region: row r has a primary and a secondary home and
 * the slot of the block in each home's store. Every node has the table; it
 * changes at a view change (a home leaves) and when a row gets a new
 * secondary after one (rereplicate.c). A row is one 64-bit word, read and
 * written whole, so that a reader never pairs a home with another's slot. */
typedef struct replica_row {
    _Alignas(8) int16_t home[2];   /* node, or -1 when the block has no such home */
    uint16_t slot[2];          /* the block's index among that home's blocks of the period */
} replica_row_t;
_Static_assert(sizeof(replica_row_t) == 8, "a placement row is one 64-bit word");

#define REPLICA_MAX_NODES 32767

typedef struct replica_placement {
    int            replicas;   /* 1 or 2 (2 needs 2 nodes) */
    int            nodes;      /* the job's, spares included */
    int            app_nodes;  /* nodes 0..app_nodes-1 home the rows at start */
    size_t         period;     /* rows */
    size_t         periods;    /* periods over the region, the last one maybe partial */
    size_t         period_slots;   /* blocks each node homes per period at start */
    size_t         period_stride;  /* slots per period in a home store: period_slots
                                    * and the headroom for new secondaries */
    size_t         slots_max;      /* blocks the busiest node homes over the region */
    size_t         slots_cap;      /* slots of every home store (headroom included) */
    replica_row_t *rows;
    int           *backup;     /* per node: the node holding its markers, -1 when none */
} replica_placement_t;

extern replica_placement_t replica_placement;

/* Build the table for `nblocks` blocks over nodes 0..nodes-spares-1 with
 * the configured FTSVM_REPLICAS (the spares, the last nodes, home nothing
 * at start); before the transport is up (it sizes the home store). No
 * headroom: period_stride = period_slots. */
int  replica_placement_build(replica_placement_t *placement, int replicas, int nodes,
                             int spares, size_t nblocks);
/* Give every home store `percent` more slots per period, for the secondaries
 * a view change moves onto the survivors (FTSVM_HOME_HEADROOM). */
void replica_placement_headroom(replica_placement_t *placement, unsigned percent);
void replica_placement_free(replica_placement_t *placement);

/* Nodes removed by a view change (set by the replica's recovery step): a
 * row whose primary is gone names its secondary as primary (with that
 * home's slot) and has no secondary; a row whose secondary is gone has
 * none, until re-replication gives it a new one (rereplicate.c). */
extern _Atomic int replica_any_gone;
extern uint8_t    *replica_gone;

/* one reading of row r */
static inline replica_row_t replica_row_read(const replica_placement_t *p, size_t r)
{
    replica_row_t row;

    __atomic_load(&p->rows[r], &row, __ATOMIC_ACQUIRE);
    return row;
}

/* the row's home index (0 or 1) that serves as `which` now; -1: none */
static inline int replica_role(const replica_row_t *row, int which, int replicas)
{
    int first = 0;

    if (which >= replicas) {
        return -1;
    }
    if (__builtin_expect(replica_any_gone, 0)) {
        if (__atomic_load_n(&replica_gone[row->home[0]], __ATOMIC_ACQUIRE)) {
            first = 1;   /* the primary is gone: the secondary serves */
            if (replicas < 2 || row->home[1] < 0 ||
                __atomic_load_n(&replica_gone[row->home[1]], __ATOMIC_ACQUIRE)) {
                return -1;
            }
        } else if (which == 1 && (row->home[1] < 0 ||
                                  __atomic_load_n(&replica_gone[row->home[1]],
                                                  __ATOMIC_ACQUIRE))) {
            return -1;
        }
        if (first + which > 1) {
            return -1;
        }
    } else if (row->home[which] < 0) {
        return -1;
    }
    return first + which;
}

/* the slot index in a home store of `block` at slot `slot` of its period:
 * slot-major, so that the blocks of one row are consecutive in each of its
 * homes' stores (re-replication copies a row as one run, home_copy.c) */
static inline size_t replica_slot_index(size_t block, unsigned slot)
{
    return (size_t)slot * replica_placement.periods + block / replica_placement.period;
}

static inline int replica_home(size_t block, int which)
{
    const replica_placement_t *p = &replica_placement;
    replica_row_t row = replica_row_read(p, block % p->period);
    int role = replica_role(&row, which, p->replicas);

    return (role < 0) ? -1 : row.home[role];
}

static inline size_t replica_slot(size_t block, int which)
{
    const replica_placement_t *p = &replica_placement;
    replica_row_t row = replica_row_read(p, block % p->period);
    int role = replica_role(&row, which, p->replicas);

    return replica_slot_index(block, row.slot[role < 0 ? 0 : role]);
}

/* The home serving as `which` now and the block's slot in its store, from
 * one reading of the placement (-1: none). Two separate readings may fall
 * on both sides of an adoption and pair one home with another's slot. */
static inline int replica_locate(size_t block, int which, size_t *slot_p)
{
    const replica_placement_t *p = &replica_placement;
    replica_row_t row = replica_row_read(p, block % p->period);
    int role = replica_role(&row, which, p->replicas);

    if (role < 0) {
        return -1;
    }
    *slot_p = replica_slot_index(block, row.slot[role]);
    return row.home[role];
}

/* 1 when `node` is a home of the block in its row now (either role, gone or
 * not) */
static inline int replica_was_home(size_t block, int node, int *which_p)
{
    replica_row_t row = replica_row_read(&replica_placement, block % replica_placement.period);
    int w;

    for (w = 0; w < replica_placement.replicas; w++) {
        if (row.home[w] == node) {
            *which_p = w;
            return 1;
        }
    }
    return 0;
}

static inline int replica_count(void)
{
    return replica_placement.replicas;
}

/* ---- re-replication after a view change (rereplicate.c) ----
 * A row left with one live home gets a new secondary on another live node,
 * in a headroom slot of its store; the surviving home copies the row there
 * in the background (the modules' copy functions below), and then every
 * node puts the new home in the row. While a row is being copied, releases
 * and lock requests on it wait (replica_copy_wait): see rereplicate.c. */
typedef struct replica_copy {
    uint32_t row;
    int16_t  from, to;         /* the surviving home (the row's primary), the new secondary */
    uint16_t from_slot, to_slot;
} replica_copy_t;

/* A module's part of copying one row, on the copier thread of `from`:
 * one-sided writes to `to`, not flushed; adds the bytes it wrote. */
typedef int (*replica_copy_fn_t)(const replica_copy_t *copy, uint64_t *bytes_p);
/* On every node, once the row names its new secondary (copy) or once the
 * copies of a view were abandoned (copy NULL: a view change). */
typedef void (*replica_rows_fn_t)(const replica_copy_t *copy);
#define REPLICA_MAX_COPIERS 4
int replica_on_copy(replica_copy_fn_t copy, replica_rows_fn_t changed);

/* Plan the new secondaries of view change->view. Only where no release or
 * lock request is in flight anywhere (hlrc's recovery, with its gate closed
 * after every survivor drained): from here until its copy ends, a release
 * or lock request on a planned row waits. */
int replica_rereplicate_plan(const failure_change_t *change);

/* Eviction (rereplicate.c): at the barrier round `round` where node
 * `leaving` says it leaves, every member plans the rows it homes onto the
 * others and their copy begins, while L is still a member and a home.
 * FTSVM_ENOMEM (the same on every member): some row would keep one copy;
 * nothing is copied and L stays. replica_evict_wait returns once every
 * member names the new homes of a hand-over under way (FTSVM_OK; at once
 * when there is none), or a view change abandoned the copy (FTSVM_EPEER):
 * L waits for it before it leaves, every node at finalize before it stops
 * the copies. replica_evict_ready: no copy is under way here
 * and every member has the rows of the last plan (L may ask to leave). */
int replica_evict_plan(int leaving, uint64_t round);
int replica_evict_wait(void);
int replica_evict_ready(void);

/* Agreement on the rows after a view change (rows_agree.c), in the first
 * exchange of hlrc's recovery, where every survivor has drained: this
 * node's rows and slots (NULL, 0 when there is nothing to agree on), and
 * the verdict over every member's, the same on every survivor, applied
 * before anything reads a row for the repair or the next plan. */
int replica_rows_vote(void **vote_p, size_t *len_p);
int replica_rows_settle(const failure_change_t *change, void **all, const size_t *lens);

extern _Atomic int replica_any_copying;
extern _Atomic uint8_t *replica_copying_rows;

/* 1 while the row of `block` is being copied to its new secondary */
static inline int replica_copying(size_t block)
{
    if (__builtin_expect(!atomic_load_explicit(&replica_any_copying, memory_order_acquire),
                         1)) {
        return 0;
    }
    return atomic_load_explicit(&replica_copying_rows[block % replica_placement.period],
                                memory_order_acquire) != 0;
}

/* Wait until the row of `block` has its new secondary, or its copy was
 * abandoned by a view change (the row then keeps its one home: a caller
 * reads the placement again, and sees the view change as it always does). */
void replica_copy_wait(size_t block);

/* The node that the copy under way makes the new secondary of the row of
 * `block`, while this node still has the row in its copying state; -1 if
 * none. A lock home's ack may come from it before this node has the row's
 * commit (the messages of the copier and of the new home are not ordered). */
int replica_copy_target(size_t block);

/* Tests: wait until the copy planned in the current view is over here (the
 * redundancy event logged, or nothing to copy, or the plan abandoned);
 * FTSVM_ETIMEDOUT after `timeout_ns`. Nothing writes this node's home store
 * for re-replication after it. */
int replica_copies_wait(uint64_t timeout_ns);

/* ---- start and stop (replica.c) ---- */
int  replica_init(const ftsvm_config_t *config, int node, int nodes, size_t nblocks);
void replica_region_sizes(int nodes, size_t sizes[REPLICA_NREGIONS]);
/* once the transport is up, with the module's regions from `region` on */
int  replica_start(rdma_ctx_t *rdma, unsigned region);
/* shutdown: a copy to new homes under way stops (before the modules whose
 * copy functions it runs go) */
void replica_stop_copies(void);
void replica_fini(void);

/* ---- markers (markers.c) ----
 * lastRelease(P) and nextRelease(P) live at P's backup node. */
enum { REPLICA_LAST_RELEASE = 0, REPLICA_NEXT_RELEASE = 1 };
/* Write one of this node's markers at its backup (not flushed). */
int replica_marker_put(int which, uint64_t interval);
/* Read node P's markers from its backup. */
int replica_markers_read(int node, uint64_t *last_p, uint64_t *next_p);
/* After a view change moved this node's backup: write both markers there
 * again (no marker write may run meanwhile), and flush. */
int replica_markers_resave(uint64_t last, uint64_t next);
/* the node holding `node`'s markers now (-1: none) */
int replica_backup(int node);

/* ---- resolving a writer's entries on one page (resolve.c, DESIGN.md 5.4) ---- */
typedef struct replica_words {
    uint64_t applied;          /* applied[W] at that home */
    uint64_t pending;          /* pending[W] at that home, 0 when none */
} replica_words_t;

typedef enum replica_verdict {
    REPLICA_NOTHING,           /* both homes agree on W: nothing to do */
    REPLICA_WAIT,              /* W is alive and in the middle of a release: read again */
    REPLICA_ROLL_BACK,         /* case 1: W's interval never happened; the secondary
                                * holds the page without it: copy it to the primary */
    REPLICA_COMPLETE,          /* case 2: W's interval is whole at the primary: mark it
                                * applied there, then copy the primary to the secondary */
    REPLICA_COPY_FROM_PRIMARY, /* phase 2 interrupted: copy the primary to the secondary */
    REPLICA_INCONSISTENT,      /* no run of the protocol leaves these words */
} replica_verdict_t;

replica_verdict_t replica_resolve(int writer_alive, const replica_words_t *primary,
                                  const replica_words_t *secondary, uint64_t last_release,
                                  uint64_t next_release);
const char *replica_verdict_name(replica_verdict_t verdict);

/* ---- stop and fault points (inject.c): FTSVM_STOP_AT, FTSVM_FAULT (tests) ---- */
typedef enum replica_stop_point {
    REPLICA_STOP_NONE,
    REPLICA_STOP_BEFORE_PHASE1,    /* the release's diffs are made, nothing written */
    REPLICA_STOP_PHASE1_PENDING,   /* pending set at every primary */
    REPLICA_STOP_PHASE1_DIFFS,     /* the diffs of the first k pages at their primaries */
    REPLICA_STOP_NEXT_RELEASE,     /* nextRelease = the interval */
    REPLICA_STOP_PHASE1_APPLIED,   /* primaries' applied set, pending cleared */
    REPLICA_STOP_PHASE2_PENDING,
    REPLICA_STOP_PHASE2_DIFFS,
    REPLICA_STOP_PHASE2_APPLIED,
    REPLICA_STOP_LAST_RELEASE,     /* lastRelease = the interval */
    /* FTSVM_FAULT only (SIGKILL at the n-th time the node gets there) */
    REPLICA_FAULT_LOCK_HELD,       /* a thread just acquired a lock */
    REPLICA_FAULT_LOCK_WAIT,       /* a thread waits for a lock it requested */
    REPLICA_FAULT_LOCK_HOME,       /* a lock's primary home got a request, has not served it */
    REPLICA_FAULT_BACKUP,          /* a marker this node holds for another node changed */
    REPLICA_FAULT_BARRIER,         /* inside a barrier, its slots partly written */
    REPLICA_FAULT_FETCH,           /* mid page fetch: meta read, page not yet */
    REPLICA_FAULT_FOR_CHUNK,       /* an ftsvm_for chunk ran, its commit not yet made */
    /* start-up steps, fired by lib/runtime (runtime_boot_fault), named here
     * so that one FTSVM_FAULT syntax covers them */
    REPLICA_FAULT_BOOT_RENDEZVOUS, /* before joining the start-up exchange */
    REPLICA_FAULT_BOOT_ADDRESSES,  /* the transport's address lengths exchanged */
    REPLICA_FAULT_BOOT_KEYS,       /* addresses and keys exchanged, not connected */
    REPLICA_FAULT_BOOT_BARRIER,    /* at the first barrier, not yet arrived */
    REPLICA_FAULT_REDUNDANCY,      /* this node logged that redundancy is back */
    REPLICA_FAULT_COPY,            /* this node copied a row to its new home, unannounced */
    REPLICA_STOP_COUNT
} replica_stop_point_t;

typedef struct replica_stop {
    replica_stop_point_t point;
    unsigned             pages;      /* k, for the *_DIFFS points */
    int                  node;
    uint64_t             interval;   /* 0: the first release that reaches the point */
} replica_stop_t;

/* "<point>[:<k>]@<node>[#<interval>]", e.g. "phase1-diffs:2@1#3"; "" is none. */
int  replica_stop_parse(const char *spec, int nodes, replica_stop_t *stop_p);
const char *replica_stop_name(replica_stop_point_t point);
/* Called by the release at each point: when it is the configured one, flush
 * everything written so far and stop this process (SIGSTOP). `pages` is the
 * number of pages done for the *_DIFFS points. */
void replica_stop_check(replica_stop_point_t point, uint64_t interval, size_t pages);
/* 1 when a *_DIFFS point may fire in this release (the caller then checks
 * after every page). */
int  replica_stop_armed(replica_stop_point_t point, uint64_t interval);

/* FTSVM_FAULT="<point>[:<n>]@<node>[#<interval>]": the node SIGKILLs itself
 * at the point (the propagation points above, where :n is the page count of
 * the *-diffs points, and the REPLICA_FAULT_* points, where :n means the
 * n-th time, default 1). replica_stop_check fires it at the propagation
 * points; the other modules call replica_fault_point. */
int  replica_fault_parse(const char *spec, int nodes, replica_stop_t *fault_p);
void replica_fault_point(replica_stop_point_t point);
/* 1 when FTSVM_FAULT names this point on this node (cheap) */
int  replica_fault_armed(replica_stop_point_t point);

#endif

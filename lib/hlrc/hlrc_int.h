/*
 * What the files of lib/hlrc share: one node's shared-memory state.
 *
 * Memory (DESIGN.md section 3):
 * - the shared region: one memfd mapped twice, at the fixed shared address
 *   (the application's view, protected page by page: none / read / read-write)
 *   and at a private address always read-write (the "backdoor" through which
 *   the library fills and reads working copies without opening them to the
 *   application);
 * - twins: one page-sized slot per shared page, touched only when used;
 * - the home store, in transport regions: the home copies of the pages this
 *   node is primary or secondary home of, and per page and writer the
 *   applied / pending words.
 *
 * Placement: a primary and a secondary home per block of pages, from the
 * table of lib/replica (hlrc_home, hlrc_home_index); FTSVM_REPLICAS=1 keeps
 * the primary only.
 */
#ifndef FTSVM_HLRC_INT_H
#define FTSVM_HLRC_INT_H

#include "diff.h"
#include "hlrc.h"
#include "common/stats.h"
#include "rdma/rdma.h"
#include "replica/replica.h"
#include "runtime/runtime.h"

#include <pthread.h>
#include <sched.h>
#include <time.h>
#include <stdatomic.h>
#include <stdint.h>

/* transport regions of the module */
enum {
    HLRC_REGION_HOME,      /* home copies, HLRC_PAGE_SIZE each */
    HLRC_REGION_META,      /* per home page and writer j: applied[j], pending[j] */
    HLRC_REGION_NOTICES,   /* write-notice rings, one per writer, and their tails */
    HLRC_REGION_BARRIER,   /* per node: epoch, vt[nodes] */
    HLRC_REGION_UNDO,      /* per home copy: the undo of its other home's phase 1 (undo.c) */
    HLRC_REGION_COUNT
};
_Static_assert(HLRC_REGION_COUNT == HLRC_NREGIONS, "hlrc.h and hlrc_int.h disagree on regions");

/* active-message types of the module (lib/locks uses 16..31) */
enum {
    HLRC_AM_DRAIN = 1,     /* "consume your write notices of mine": flow control */
    HLRC_AM_FREE  = 2,     /* ftsvm_free of a block from another node's arena */
};

/* page states (one byte per page) */
enum {
    PAGE_INVALID = 0,      /* PROT_NONE, no valid copy here */
    PAGE_READ,             /* valid, PROT_READ */
    PAGE_WRITE,            /* valid, twinned, PROT_READ|PROT_WRITE, in the update list */
    PAGE_BUSY,             /* a thread is changing it; others wait */
};

/* one release's write notices from one writer */
typedef struct hlrc_notice {
    uint64_t  interval;
    uint32_t  npages;
    uint32_t *pages;
} hlrc_notice_t;

typedef struct hlrc_notice_list {
    hlrc_notice_t *items;
    size_t         count, cap, first;   /* items[first..count) not yet acted on */
    uint64_t       head;                /* bytes of the ring consumed */
} hlrc_notice_list_t;

enum {
    HLRC_STAT_READ_FAULTS, HLRC_STAT_WRITE_FAULTS, HLRC_STAT_FETCHES, HLRC_STAT_FETCH_RETRIES,
    HLRC_STAT_ZERO_FILLS, HLRC_STAT_RELEASES, HLRC_STAT_DIFFS, HLRC_STAT_DIFF_BYTES,
    HLRC_STAT_NOTICES_SENT, HLRC_STAT_INVALIDATIONS, HLRC_STAT_MERGES, HLRC_STAT_BARRIERS,
    HLRC_STAT_SECONDARY_DIFFS, HLRC_STAT_HOME_CHECKS,
    HLRC_STAT_COUNT
};

typedef struct hlrc {
    rdma_ctx_t        *rdma;
    int                node, nodes;
    int                app_nodes;     /* 0..app_nodes-1 run the application (the rest: spares) */

    /* shared region */
    uint8_t           *base;          /* application view */
    uint8_t           *backdoor;      /* library view, always read-write */
    size_t             size;
    size_t             npages;
    _Atomic uint8_t   *state;         /* npages */
    uint8_t           *twins;         /* npages x page, lazily touched */
    uint64_t          *required;      /* npages x nodes: intervals a copy must include */

    /* home store */
    unsigned           home_block;    /* consecutive pages with the same home */
    size_t             home_pages;    /* pages homed per node (the largest share) */

    /* intervals (node-wide: all threads of a node share them) */
    pthread_mutex_t    close_lock;    /* intervals close (and announce) in order */
    atomic_flag        update_lock;
    uint32_t          *updates;       /* pages written in the open interval */
    size_t             nupdates;
    uint64_t           interval;      /* the open interval, from 1 */
    pthread_mutex_t    vt_lock;
    uint64_t          *vt;            /* nodes: last interval of j seen here */

    /* propagation (propagate.c): releases of one node run concurrently;
     * their markers and their ends are taken in interval order */
    pthread_mutex_t    prop_lock;
    pthread_cond_t     prop_cond;
    uint64_t           phase_done[2]; /* every interval up to it has ended phase 1 / both */
    int                prop_status;   /* the first failure of a propagation */
    unsigned           prop_active;   /* propagations under way (retries included) */
    int                replicated;    /* two homes per page */
    int                check_homes;   /* FTSVM_CHECK_HOMES */
    int              (*check_above)(void);   /* the locks' check, run with ours */

    /* write notices */
    size_t             ring_bytes;    /* per writer, in every node's region */
    uint64_t           ring_tail;     /* bytes this node has written to its rings */
    pthread_mutex_t    notice_lock;
    hlrc_notice_list_t *notices;      /* nodes: what each writer announced */

    stats_group_t      stats;
} hlrc_t;

extern hlrc_t hlrc;

/* placement: which = REPLICA_PRIMARY or REPLICA_SECONDARY */
static inline int hlrc_home(size_t page, int which)
{
    return replica_home(page / hlrc.home_block, which);
}

/* the page's index in that home's store */
static inline size_t hlrc_home_index(size_t page, int which)
{
    return replica_slot(page / hlrc.home_block, which) * hlrc.home_block +
           page % hlrc.home_block;
}

/* The home of `page` serving as `which` now and the page's index in its
 * store, both from one reading of the placement (-1: none). Every write to
 * a home takes them together: an adoption between two readings would pair
 * the surviving home with the failed one's index, another page's there. */
static inline int hlrc_home_locate(size_t page, int which, size_t *index_p)
{
    size_t slot = 0;
    int home = replica_locate(page / hlrc.home_block, which, &slot);

    *index_p = slot * hlrc.home_block + page % hlrc.home_block;
    return home;
}

/* this node's meta words and copy at an index of its store */
static inline uint64_t *hlrc_meta_at(size_t index)
{
    return (uint64_t *)((uint8_t *)rdma_region_addr(hlrc.rdma, HLRC_REGION_META) +
                        index * 2u * (size_t)hlrc.nodes * 8u);
}

static inline uint8_t *hlrc_copy_at(size_t index)
{
    return (uint8_t *)rdma_region_addr(hlrc.rdma, HLRC_REGION_HOME) + index * HLRC_PAGE_SIZE;
}

/* meta words of a home page: applied[j] at 2j, pending[j] at 2j + 1, so that
 * one 16-byte write marks an interval applied and clears its pending entry */
static inline uint64_t hlrc_meta_offset(size_t page, int which)
{
    return hlrc_home_index(page, which) * 2u * (uint64_t)hlrc.nodes * 8u;
}

/* this node's own meta words and copy of a page it is a home of */
static inline uint64_t *hlrc_local_meta(size_t page, int which)
{
    return (uint64_t *)((uint8_t *)rdma_region_addr(hlrc.rdma, HLRC_REGION_META) +
                        hlrc_meta_offset(page, which));
}

static inline uint8_t *hlrc_local_copy(size_t page, int which)
{
    return (uint8_t *)rdma_region_addr(hlrc.rdma, HLRC_REGION_HOME) +
           hlrc_home_index(page, which) * HLRC_PAGE_SIZE;
}

static inline void hlrc_update_lock(void)
{
    while (atomic_flag_test_and_set_explicit(&hlrc.update_lock, memory_order_acquire)) {
    }
}

static inline void hlrc_update_unlock(void)
{
    atomic_flag_clear_explicit(&hlrc.update_lock, memory_order_release);
}

/* Waiting for another node (a barrier slot, a page version, ring space) or
 * for another thread (a busy page): yield for a while, then sleep in growing
 * steps up to 200 us. A waiter that only yields keeps a core from the
 * protocol threads that must carry what it waits for (2-core machines run
 * several nodes). nanosleep is async-signal-safe: usable in the fault
 * handler. */
static inline void hlrc_backoff(unsigned *round)
{
    struct timespec ts = { 0, 0 };
    unsigned r = (*round)++;

    if (r < 64) {
        sched_yield();
        return;
    }
    ts.tv_nsec = (r < 70) ? (2000L << (r - 64)) : 200000L;
    nanosleep(&ts, NULL);
}

/* region.c */
int  hlrc_region_map(const ftsvm_config_t *config);
void hlrc_region_unmap(void);
int  hlrc_protect(size_t page, int prot);
int  hlrc_region_open_all(void);   /* a one-node job: no faults at all */

/* fault.c */
int  hlrc_fault_install(void);
void hlrc_fault_remove(void);
/* wait until the page is not busy and take it (state PAGE_BUSY); returns
 * the state it had */
uint8_t hlrc_page_take(size_t page);
void hlrc_page_put(size_t page, uint8_t state);

/* fetch.c: a copy that holds every interval this node requires (5.4) */
int  hlrc_fetch(size_t page, uint8_t *dst);
/* the meta words (2 x nodes) and the copy of one home, read once */
int  hlrc_home_read(size_t page, int which, uint64_t *meta, uint8_t *copy);

/* home.c */
int  hlrc_home_set_pending(size_t page, int which, uint64_t interval);
int  hlrc_home_write_runs(size_t page, int which, const uint8_t *diff, size_t size);
int  hlrc_home_mark_applied(size_t page, int which, uint64_t interval);

/* propagate.c: one release's diffs, kept until both phases end */
typedef struct page_diff {
    uint32_t page;
    uint32_t size;
    uint8_t *bytes;
} page_diff_t;

int  hlrc_propagate(uint64_t interval, const page_diff_t *diffs, size_t npages);

/* undo.c: one slot per home copy (a header, a byte mask and a page) */
#define HLRC_UNDO_SLOT_BYTES (16u + HLRC_PAGE_SIZE / 8u + HLRC_PAGE_SIZE)
/* Before phase 1 writes a page's other home in place (this node being one
 * of its homes): the bytes it will overwrite, there, then fenced. */
int  hlrc_undo_write(uint64_t interval, const page_diff_t *diffs, size_t npages);
/* Recovery at the surviving home, whose pending entry of `writer` names
 * `interval`: put back in `copy` (this node's copy of page, now its
 * primary) what that interval's runs overwrote. FTSVM_EPROTO (logged) when
 * the slot holds no undo of it, which the write order rules out. */
int  hlrc_undo_apply(int writer, size_t page, uint64_t interval, uint8_t *copy);
/* wait until every interval of this node up to `interval` has ended both
 * phases (or a propagation failed: its status) */
int  hlrc_propagation_wait(uint64_t interval);
void hlrc_propagation_fail(int status);
/* wait until no propagation of this node is under way (a retry on a new
 * placement included: phase_done may already name its interval) */
int  hlrc_propagation_idle(void);

/* notices.c */
int  hlrc_notices_init(void);
void hlrc_notices_fini(void);
int  hlrc_notices_publish(uint64_t interval, const uint32_t *pages, size_t npages);
void hlrc_notices_drain(int writer);

/* interval.c */
int  hlrc_release(void);
int  hlrc_acquire(const uint64_t *vt);

/* home_copy.c: a placement row's copies to its new secondary (re-replication) */
int  hlrc_home_copy_row(const replica_copy_t *copy, uint64_t *bytes_p);

/* recover.c */
int  hlrc_recover_init(void);
/* wait until no view change is being recovered, and take close_lock */
void hlrc_gate_pass(void);

/* notices.c: the pages of `writer`'s intervals after `after` that this node
 * holds notices of (not yet acted on); the caller frees *pages_p */
int  hlrc_notices_pages_after(int writer, uint64_t after, uint32_t **pages_p, size_t *n_p);

/* barrier.c */
int  hlrc_barrier_init(void);
void hlrc_thread_left(void);

/* alloc.c */
int  hlrc_alloc_init(void);
void hlrc_alloc_fini(void);

#endif

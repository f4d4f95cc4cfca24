/*
 * Two-phase diff propagation (DESIGN.md 5.2, seed 002 section 4): the diffs
 * of interval k of this node P go to the primary homes of its pages, then
 * to the secondary homes, each phase as one batch:
 *
 *   phase 1: pending[P] = k at every primary; fence; the diff runs; flush;
 *            nextRelease(P) = k at P's backup; flush      <- k is durable
 *            applied[P] = k, pending[P] = 0 at every primary; flush
 *   phase 2: the same at every secondary, lastRelease(P) = k last (after a
 *            flush of the applied words, not flushed itself).
 * Where the next write goes to the same home as the previous ones (a page's
 * runs, then its applied word) a fence is enough; a flush is needed only
 * where the order spans nodes (runs at every primary before the marker, the
 * marker before any pending entry is cleared, phase 1 before phase 2).
 *
 * nextRelease sits between "every primary has k's runs" and "their words
 * say so", so a failure of P is classified by the markers alone: before it,
 * k is void (case 1) and the primaries' pending entries say which pages to
 * roll back; after it, k is complete (cases 2 and 3).
 *
 * Releases of one node run concurrently (their pages are disjoint: page
 * locking), but each marker is written in interval order: k's marker waits
 * until every earlier interval has written its own, and k's primaries keep
 * their pending entries until then. So a marker never names an interval
 * whose predecessor is unfinished, and a later interval never looks complete
 * while an earlier one can still be void.
 *
 * A page whose primary is this node itself gets both homes in phase 1 (and
 * none in phase 2): the writer's own copy dies with it, and nextRelease
 * must vouch only for copies on other nodes. Where this node is a home, the
 * other home is thus written in place before k is durable, and is the only
 * copy left if this node dies: it first gets an undo of the runs (undo.c),
 * whatever the interval's size.
 *
 * FTSVM_REPLICAS=1 is the single-home protocol: runs, flush, applied, flush;
 * no pending entries and no markers.
 */
#include "hlrc_int.h"
#include "common/log.h"
#include "failure/failure.h"
#include "ftsvm.h"

enum { PHASE_1 = 0, PHASE_BOTH = 1 };

static const replica_stop_point_t stop_points[2][4] = {
    /* pending, diffs, applied, marker */
    { REPLICA_STOP_PHASE1_PENDING, REPLICA_STOP_PHASE1_DIFFS, REPLICA_STOP_PHASE1_APPLIED,
      REPLICA_STOP_NEXT_RELEASE },
    { REPLICA_STOP_PHASE2_PENDING, REPLICA_STOP_PHASE2_DIFFS, REPLICA_STOP_PHASE2_APPLIED,
      REPLICA_STOP_LAST_RELEASE },
};

/* Wait until every interval before `interval` has passed `step`. */
static int turn_wait(int step, uint64_t interval)
{
    int status;

    pthread_mutex_lock(&hlrc.prop_lock);
    while (hlrc.phase_done[step] + 1 < interval && hlrc.prop_status == FTSVM_OK) {
        pthread_cond_wait(&hlrc.prop_cond, &hlrc.prop_lock);
    }
    status = hlrc.prop_status;
    pthread_mutex_unlock(&hlrc.prop_lock);
    return status;
}

static void turn_end(int step, uint64_t interval)
{
    pthread_mutex_lock(&hlrc.prop_lock);
    if (interval > hlrc.phase_done[step]) {   /* a retry may end a turn again */
        hlrc.phase_done[step] = interval;
    }
    pthread_cond_broadcast(&hlrc.prop_cond);
    pthread_mutex_unlock(&hlrc.prop_lock);
}

void hlrc_propagation_fail(int status)
{
    pthread_mutex_lock(&hlrc.prop_lock);
    if (hlrc.prop_status == FTSVM_OK) {
        hlrc.prop_status = status;
    }
    pthread_cond_broadcast(&hlrc.prop_cond);
    pthread_mutex_unlock(&hlrc.prop_lock);
}

int hlrc_propagation_wait(uint64_t interval)
{
    int status;

    pthread_mutex_lock(&hlrc.prop_lock);
    while (hlrc.phase_done[PHASE_BOTH] < interval && hlrc.prop_status == FTSVM_OK) {
        pthread_cond_wait(&hlrc.prop_cond, &hlrc.prop_lock);
    }
    status = hlrc.prop_status;
    pthread_mutex_unlock(&hlrc.prop_lock);
    return status;
}

int hlrc_propagation_idle(void)
{
    int status;

    pthread_mutex_lock(&hlrc.prop_lock);
    while (hlrc.prop_active > 0 && hlrc.prop_status == FTSVM_OK) {
        pthread_cond_wait(&hlrc.prop_cond, &hlrc.prop_lock);
    }
    status = hlrc.prop_status;
    pthread_mutex_unlock(&hlrc.prop_lock);
    return status;
}

static void propagation_active(int delta)
{
    pthread_mutex_lock(&hlrc.prop_lock);
    hlrc.prop_active += (unsigned)delta;
    pthread_cond_broadcast(&hlrc.prop_cond);
    pthread_mutex_unlock(&hlrc.prop_lock);
}

/* The homes of `page` that phase `which` writes (REPLICA_* values into
 * homes[], their count). Normally the primary in phase 1 and the secondary
 * in phase 2. But when this node is itself the page's primary, its own copy
 * would die with it: then phase 1 writes the secondary too, so that every
 * interval nextRelease vouches for is on a node other than the writer. */
static int phase_homes(uint32_t page, int which, int homes[2])
{
    int primary = hlrc_home(page, REPLICA_PRIMARY);
    int secondary = hlrc_home(page, REPLICA_SECONDARY);
    int n = 0;

    if (which == REPLICA_PRIMARY) {
        if (primary >= 0) {
            homes[n++] = REPLICA_PRIMARY;
        }
        if (hlrc.replicated && primary == hlrc.node && secondary >= 0) {
            homes[n++] = REPLICA_SECONDARY;
        }
    } else if (secondary >= 0 && primary != hlrc.node) {
        homes[n++] = REPLICA_SECONDARY;
    }
    return n;
}

/* Before phase 1: every page still has a home to write. */
static int phase_check_homes(uint64_t k, const page_diff_t *diffs, size_t npages)
{
    size_t i;

    for (i = 0; i < npages; i++) {
        if (hlrc_home(diffs[i].page, REPLICA_PRIMARY) < 0) {
            ftsvm_error("page 0x%x (placement row %zu) has no home left (%s): interval %llu "
                        "cannot be written", diffs[i].page,
                        (diffs[i].page / hlrc.home_block) % replica_placement.period,
                        hlrc.replicated ? "both of its homes failed" : "FTSVM_REPLICAS=1 "
                        "keeps one copy", (unsigned long long)k);
            return FTSVM_EPEER;
        }
    }
    return FTSVM_OK;
}

/* Step 1 (two homes only): pending[P] = k on every page of the phase. */
static int phase_pending(uint64_t k, const page_diff_t *diffs, size_t npages, int which)
{
    int status = FTSVM_OK, homes[2], n, h;
    size_t i;

    /* a page's other home, written in place in phase 1 when this node
     * is a home too, first gets what the runs overwrite (undo.c),
     * fenced before the pending entry that points at it */
    if (which == REPLICA_PRIMARY) {
        status = hlrc_undo_write(k, diffs, npages);
    }
    for (i = 0; i < npages && status == FTSVM_OK; i++) {
        n = phase_homes(diffs[i].page, which, homes);
        for (h = 0; h < n && status == FTSVM_OK; h++) {
            status = hlrc_home_set_pending(diffs[i].page, homes[h], k);
        }
    }
    /* every pending entry lands before any run: a home never holds part
     * of k without saying so */
    if (status == FTSVM_OK) {
        status = rdma_fence(hlrc.rdma);
    }
    replica_stop_check(stop_points[which][0], k, 0);
    return status;
}

/* Step 2: the diff runs, straight into the home copies. */
static int phase_runs(uint64_t k, const page_diff_t *diffs, size_t npages, int which)
{
    const replica_stop_point_t point = stop_points[which][1];
    int status = FTSVM_OK, armed, homes[2], n, h;
    size_t i;

    armed = replica_stop_armed(point, k) || replica_fault_armed(point);
    for (i = 0; i < npages && status == FTSVM_OK; i++) {
        n = phase_homes(diffs[i].page, which, homes);
        for (h = 0; h < n && status == FTSVM_OK; h++) {
            status = hlrc_home_write_runs(diffs[i].page, homes[h], diffs[i].bytes,
                                          diffs[i].size);
        }
        if (armed) {
            replica_stop_check(point, k, i + 1);
        }
    }
    /* Phase 1: every run at every primary before nextRelease (other
     * endpoints: a flush). Otherwise a page's applied word goes to the home
     * its runs went to, and a fence orders them there. */
    if (status == FTSVM_OK) {
        status = (hlrc.replicated && which == REPLICA_PRIMARY)
                     ? rdma_flush(hlrc.rdma, RDMA_ALL_PEERS) : rdma_fence(hlrc.rdma);
    }
    return status;
}

/* Step 3 of phase 1 (two homes only): nextRelease(P) = k at the backup, in
 * interval order. */
static int phase_next_release(uint64_t k)
{
    int status = turn_wait(PHASE_1, k);

    if (status == FTSVM_OK) {
        status = replica_marker_put(REPLICA_NEXT_RELEASE, k);
    }
    /* k is durable at the backup before any primary drops its pending
     * entry (else a failure here would leave k half-visible) */
    if (status == FTSVM_OK) {
        status = rdma_flush(hlrc.rdma, RDMA_ALL_PEERS);
    }
    if (status == FTSVM_OK) {
        turn_end(PHASE_1, k);
        replica_stop_check(stop_points[REPLICA_PRIMARY][3], k, 0);
    }
    return status;
}

/* Step 4: applied[P] = k, pending[P] = 0 on every page of the phase. */
static int phase_applied(uint64_t k, const page_diff_t *diffs, size_t npages, int which)
{
    int status = FTSVM_OK, homes[2], n, h;
    size_t i;

    for (i = 0; i < npages && status == FTSVM_OK; i++) {
        n = phase_homes(diffs[i].page, which, homes);
        for (h = 0; h < n && status == FTSVM_OK; h++) {
            status = hlrc_home_mark_applied(diffs[i].page, homes[h], k);
        }
    }
    if (status == FTSVM_OK) {
        status = rdma_flush(hlrc.rdma, RDMA_ALL_PEERS);
        replica_stop_check(stop_points[which][2], k, 0);
    }
    return status;
}

/* The end of phase 2 (or of the single-home protocol): lastRelease(P) = k
 * in interval order, and k has ended both phases. */
static int phase_last_release(uint64_t k, int which)
{
    int status = turn_wait(PHASE_BOTH, k);

    /* not flushed: until it lands, recovery finishes phase 2 from the
     * primaries, which is what phase 2 wrote anyway */
    if (status == FTSVM_OK && hlrc.replicated) {
        status = replica_marker_put(REPLICA_LAST_RELEASE, k);
        replica_stop_check(stop_points[which][3], k, 0);
    }
    if (status == FTSVM_OK) {
        turn_end(PHASE_BOTH, k);
    }
    return status;
}

/* One phase: `which` names the homes it writes (phase_homes). Phase 1 is
 * pending, runs, nextRelease, applied; phase 2 pending, runs, applied,
 * lastRelease; one home only: runs, applied. */
static int phase(uint64_t k, const page_diff_t *diffs, size_t npages, int which)
{
    int replicated = hlrc.replicated, status = FTSVM_OK;

    if (which == REPLICA_PRIMARY) {
        status = phase_check_homes(k, diffs, npages);
    }
    if (status == FTSVM_OK && replicated) {
        status = phase_pending(k, diffs, npages, which);
    }
    if (status == FTSVM_OK) {
        status = phase_runs(k, diffs, npages, which);
    }
    if (status == FTSVM_OK && replicated && which == REPLICA_PRIMARY) {
        status = phase_next_release(k);
    }
    if (status == FTSVM_OK) {
        status = phase_applied(k, diffs, npages, which);
    }
    if (status == FTSVM_OK && (which == REPLICA_SECONDARY || !replicated)) {
        status = phase_last_release(k, which);
    }
    return status;
}

/* How long a release waits for the view that removes a home it could not
 * write (detection by heartbeat takes FTSVM_HB_TIMEOUT). */
#define PROPAGATE_VIEW_WAIT_NS (60ull * 1000000000ull)

/* A page whose row is being copied to its new secondary: wait until the
 * row names it (rereplicate.c: releases on a row being copied wait). */
static void wait_for_copies(const page_diff_t *diffs, size_t npages)
{
    size_t i;

    for (i = 0; i < npages; i++) {
        if (replica_copying(diffs[i].page / hlrc.home_block)) {
            replica_copy_wait(diffs[i].page / hlrc.home_block);
        }
    }
}

static int no_home_left(const page_diff_t *diffs, size_t npages)
{
    size_t i;

    for (i = 0; i < npages; i++) {
        if (hlrc_home(diffs[i].page, REPLICA_PRIMARY) < 0) {
            return 1;
        }
    }
    return 0;
}

int hlrc_propagate(uint64_t interval, const page_diff_t *diffs, size_t npages)
{
    uint64_t view, seq;
    int status;

    replica_stop_check(REPLICA_STOP_BEFORE_PHASE1, interval, 0);
    /* a retry rewrites homes after its first attempt ended both phases:
     * recovery waits for it too (hlrc_propagation_idle) */
    propagation_active(1);
    for (;;) {
        view = failure_view();
        seq = failure_adoption_seq();
        if (seq & 1) {
            /* the placement is changing now: start on the new one */
            if (failure_wait_adopted(view, PROPAGATE_VIEW_WAIT_NS) != FTSVM_OK) {
                ftsvm_error("release of interval %llu: a view change did not end",
                            (unsigned long long)interval);
                status = FTSVM_EPEER;
                break;
            }
            continue;
        }
        wait_for_copies(diffs, npages);
        if (failure_adoption_seq() != seq || failure_view() != view) {
            continue;   /* a view change ended the wait: start on the new placement */
        }
        status = phase(interval, diffs, npages, REPLICA_PRIMARY);
        if (status == FTSVM_OK && hlrc.replicated) {
            stats_add(&hlrc.stats, HLRC_STAT_SECONDARY_DIFFS, npages);
            status = phase(interval, diffs, npages, REPLICA_SECONDARY);
        }
        /* A home may have left between a write and its flush; and the
         * placement changes before the new view is published, so the view
         * number alone can miss a phase that ran across the change (one
         * that set a pending entry at a secondary, then skipped its applied
         * word because that home had become the primary). */
        if (status == FTSVM_OK && (failure_view() != view || failure_adoption_seq() != seq)) {
            status = FTSVM_EPEER;
        }
        if (status != FTSVM_EPEER || no_home_left(diffs, npages)) {
            break;   /* a page whose homes both failed: no view can bring it back */
        }
        /* A home or the backup failed under us. Once the view without it is
         * adopted, both phases run again on the new placement: the surviving
         * home of a page whose primary failed becomes its primary and gets
         * pending, runs and applied again (the same bytes), and the markers
         * go to the new backup. */
        if (failure_view() == view &&
            failure_wait_adopted(view, PROPAGATE_VIEW_WAIT_NS) != FTSVM_OK) {
            ftsvm_error("release of interval %llu: a home failed and no new view came",
                        (unsigned long long)interval);
            break;
        }
        ftsvm_info("release of interval %llu: a home failed; writing it again in view %llu",
                   (unsigned long long)interval, (unsigned long long)failure_view());
    }
    if (status != FTSVM_OK) {
        hlrc_propagation_fail(status);
    }
    propagation_active(-1);
    return status;
}

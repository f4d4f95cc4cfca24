/*
 * The home side of a page (DESIGN.md sections 3, 5.2 and 5.4): fetching a
 * copy, and writing pending words, diff runs and applied words into a home
 * store with one-sided operations (no work by the home's CPU). A node that
 * is itself a home of the page writes its own store with plain stores, in
 * the same order.
 *
 * Per home page, the meta region holds for each writer j applied[j] (last
 * interval of j fully applied here) and pending[j] (interval of j being
 * written now, 0 when none).
 *
 * A fetched copy is accepted only when (1) it includes every interval the
 * reader requires (applied[j] >= required[j]), (2) no pending entry is set,
 * and (3) the meta words read before and after the page are identical, so
 * that no writer's interval started or ended while the page was read. A
 * pending entry of a live writer means it is in the middle of a release
 * (microseconds): read again. A copy with a pending entry is never used,
 * even of a live writer: a void interval's partial writes must reach no node
 * but its writer (guarantee 3).
 */
#include "hlrc_int.h"
#include "common/clock.h"
#include "common/log.h"
#include "failure/failure.h"
#include "ftsvm.h"

#include <sched.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#define HLRC_FETCH_TIMEOUT_NS (60ull * 1000000000ull)

static __thread uint64_t *fetch_meta;   /* 2 x 2 x nodes words, this thread's */

static int hlrc_read_meta(size_t page, int which, uint64_t *meta)
{
    size_t words = 2u * (size_t)hlrc.nodes, i, index;
    int home = hlrc_home_locate(page, which, &index);
    const uint64_t *local;

    if (home < 0) {
        return FTSVM_EPEER;   /* the placement changed under the fetch */
    }
    if (home != hlrc.node) {
        return rdma_get(hlrc.rdma, home, HLRC_REGION_META,
                        index * 2u * (uint64_t)hlrc.nodes * 8u, meta, words * 8u);
    }
    local = hlrc_meta_at(index);
    for (i = 0; i < words; i++) {
        meta[i] = __atomic_load_n(&local[i], __ATOMIC_ACQUIRE);
    }
    return FTSVM_OK;
}

static int hlrc_read_page(size_t page, int which, uint8_t *dst)
{
    size_t index;
    int home = hlrc_home_locate(page, which, &index);

    if (home < 0) {
        return FTSVM_EPEER;
    }
    if (home != hlrc.node) {
        return rdma_get(hlrc.rdma, home, HLRC_REGION_HOME, index * HLRC_PAGE_SIZE, dst,
                        HLRC_PAGE_SIZE);
    }
    memcpy(dst, hlrc_copy_at(index), HLRC_PAGE_SIZE);
    /* the meta words read after the page are read after it */
    __atomic_thread_fence(__ATOMIC_ACQUIRE);
    return FTSVM_OK;
}

int hlrc_home_read(size_t page, int which, uint64_t *meta, uint8_t *copy)
{
    int status = hlrc_read_meta(page, which, meta);

    return (status == FTSVM_OK && copy != NULL) ? hlrc_read_page(page, which, copy) : status;
}

/* 1: acceptable; 0: read again; 2: a failed writer's pending entry is set
 * here (DESIGN.md 5.4): read the other home, which holds the page without
 * that unfinished interval, while recovery repairs this one */
static int hlrc_meta_acceptable(size_t page, const uint64_t *meta)
{
    const uint64_t *required = hlrc.required + page * (size_t)hlrc.nodes;
    int j, ok = 1;

    for (j = 0; j < hlrc.nodes; j++) {
        uint64_t applied = meta[2 * j], pending = meta[2 * j + 1];

        if (pending != 0 && j != hlrc.node && !rdma_peer_alive(hlrc.rdma, j)) {
            return 2;
        }
        if (applied < required[j] || pending != 0) {
            ok = 0;
        }
    }
    return ok;
}

/* Which home to read: our own store when we are a home (no transfer), else
 * the primary, else (it failed) the secondary. */
static int hlrc_fetch_source(size_t page)
{
    int primary = hlrc_home(page, REPLICA_PRIMARY);
    int secondary = hlrc_home(page, REPLICA_SECONDARY);

    if (primary == hlrc.node) {
        return REPLICA_PRIMARY;
    }
    if (secondary >= 0 && (secondary == hlrc.node || !rdma_peer_alive(hlrc.rdma, primary))) {
        return REPLICA_SECONDARY;
    }
    return REPLICA_PRIMARY;
}

/* The fetch gave up: say which writer's interval the copy lacks. */
static void fetch_report_lag(size_t page, int home, const uint64_t *meta)
{
    const uint64_t *required = hlrc.required + page * (size_t)hlrc.nodes;
    int j;

    for (j = 0; j < hlrc.nodes; j++) {
        if (meta[2 * j] < required[j] || meta[2 * j + 1] != 0) {
            ftsvm_error("page 0x%zx at node %d never reached the required version: node %d's "
                        "interval %llu is required, the copy has %llu applied and %llu "
                        "pending", page, home, j, (unsigned long long)required[j],
                        (unsigned long long)meta[2 * j], (unsigned long long)meta[2 * j + 1]);
            return;
        }
    }
    ftsvm_error("page 0x%zx at node %d never reached the required version", page, home);
}

int hlrc_fetch(size_t page, uint8_t *dst)
{
    size_t words = 2u * (size_t)hlrc.nodes;
    int which = hlrc_fetch_source(page), home, status, ok;
    uint64_t deadline = 0, *before, *after, view = failure_view(), seq;
    unsigned round = 0;

    if (fetch_meta == NULL) {
        /* mmap, not malloc: this may run in the fault handler */
        void *p = mmap(NULL, 2 * words * 8u, PROT_READ | PROT_WRITE,
                       MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (p == MAP_FAILED) {
            ftsvm_error("cannot map a fetch buffer: %m");
            return FTSVM_ENOMEM;
        }
        fetch_meta = p;
    }
    before = fetch_meta;
    after  = fetch_meta + words;
    for (;;) {
        seq = failure_adoption_seq();
        home = hlrc_home(page, which);
        ok = 0;
        status = (home < 0) ? FTSVM_EPEER : hlrc_read_meta(page, which, before);
        if (status == FTSVM_OK) {
            ok = hlrc_meta_acceptable(page, before);
            if (ok == 1) {
                replica_fault_point(REPLICA_FAULT_FETCH);
            }
        }
        if (ok == 1) {
            status = hlrc_read_page(page, which, dst);
            if (status == FTSVM_OK) {
                status = hlrc_read_meta(page, which, after);
            }
            /* one copy throughout: the same words around the page, and no
             * adoption moved the placement meanwhile (the meta and the page
             * could come from different homes) */
            if (status == FTSVM_OK && memcmp(before, after, words * 8u) == 0 &&
                (seq & 1) == 0 && failure_adoption_seq() == seq) {
                return FTSVM_OK;
            }
            if (status == FTSVM_OK && failure_adoption_seq() != seq) {
                which = hlrc_fetch_source(page);
                hlrc_backoff(&round);
                continue;
            }
        }
        if (status == FTSVM_EPEER) {
            /* the home failed: once the view without it is adopted, the
             * placement names the surviving home */
            if (failure_wait_adopted(view, HLRC_FETCH_TIMEOUT_NS) != FTSVM_OK ||
                hlrc_home(page, REPLICA_PRIMARY) < 0) {
                ftsvm_error("fetch of page 0x%zx: %s", page,
                            hlrc_home(page, REPLICA_PRIMARY) < 0 ?
                            "every home of the page failed" : "its home failed and no new "
                            "view came");
                return FTSVM_EPEER;
            }
            view  = failure_view();
            which = hlrc_fetch_source(page);
            continue;
        }
        if (status != FTSVM_OK) {
            ftsvm_error("fetch of page 0x%zx from node %d failed: %s", page, home,
                        ftsvm_strerror(status));
            return status;
        }
        stats_add(&hlrc.stats, HLRC_STAT_FETCH_RETRIES, 1);
        if (ok == 2 && hlrc_home(page, !which) >= 0) {
            which = !which;   /* the other home has the page without the void part */
        } else if (which == REPLICA_SECONDARY && home == hlrc.node &&
                   rdma_peer_alive(hlrc.rdma, hlrc_home(page, REPLICA_PRIMARY))) {
            /* our own secondary copy lags (a phase 2 is running): the
             * primary is ahead of it, never behind */
            which = REPLICA_PRIMARY;
            continue;
        }
        if (deadline == 0) {
            deadline = clock_now_ns() + HLRC_FETCH_TIMEOUT_NS;
        } else if (clock_now_ns() > deadline) {
            fetch_report_lag(page, home, before);
            return FTSVM_ETIMEDOUT;
        }
        hlrc_backoff(&round);
    }
}

int hlrc_home_set_pending(size_t page, int which, uint64_t interval)
{
    size_t index;
    int home = hlrc_home_locate(page, which, &index);
    uint64_t offset = index * 2u * (uint64_t)hlrc.nodes * 8u +
                      ((uint64_t)hlrc.node * 2u + 1u) * 8u;

    if (home < 0) {
        return FTSVM_EPEER;   /* an adoption removed it meanwhile: the release retries */
    }
    if (home != hlrc.node) {
        return rdma_put(hlrc.rdma, home, HLRC_REGION_META, offset, &interval, 8);
    }
    __atomic_store_n(&hlrc_meta_at(index)[2 * hlrc.node + 1], interval, __ATOMIC_RELAXED);
    /* the entry is visible before any run written after it (a local reader
     * then sees the meta change across its read of the page) */
    __atomic_thread_fence(__ATOMIC_SEQ_CST);
    return FTSVM_OK;
}

/* The runs go straight into the home copy. Ordering: the caller flushes
 * before it marks the interval applied, so that a reader who sees applied[j]
 * also sees every run of that interval. */
int hlrc_home_write_runs(size_t page, int which, const uint8_t *diff, size_t size)
{
    size_t index;
    int home = hlrc_home_locate(page, which, &index), ret, status = FTSVM_OK;
    uint64_t offset = index * HLRC_PAGE_SIZE;
    uint8_t *local = (home == hlrc.node) ? hlrc_copy_at(index) : NULL;
    hlrc_run_t run = {0};
    size_t pos = 0;

    if (home < 0) {
        return FTSVM_EPEER;
    }
    while ((ret = hlrc_diff_next(diff, size, &pos, &run)) == 1) {
        if (local != NULL) {
            memcpy(local + run.offset, run.bytes, run.length);
        } else {
            status = rdma_put(hlrc.rdma, home, HLRC_REGION_HOME, offset + run.offset,
                              run.bytes, run.length);
            if (status != FTSVM_OK) {
                return status;
            }
        }
    }
    return (ret < 0) ? ret : FTSVM_OK;
}

/* applied[me] = interval and pending[me] = 0 in one write */
int hlrc_home_mark_applied(size_t page, int which, uint64_t interval)
{
    size_t index;
    int home = hlrc_home_locate(page, which, &index);
    uint64_t offset = index * 2u * (uint64_t)hlrc.nodes * 8u + (uint64_t)hlrc.node * 2u * 8u;
    uint64_t words[2] = { interval, 0 }, *local;

    if (home < 0) {
        return FTSVM_EPEER;
    }
    if (home != hlrc.node) {
        return rdma_put(hlrc.rdma, home, HLRC_REGION_META, offset, words, sizeof(words));
    }
    /* release: the runs written above are visible before the words */
    local = hlrc_meta_at(index) + 2 * hlrc.node;
    __atomic_store_n(&local[0], interval, __ATOMIC_RELEASE);
    __atomic_store_n(&local[1], 0, __ATOMIC_RELEASE);
    return FTSVM_OK;
}

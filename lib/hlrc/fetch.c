/*
 * Fetch (DESIGN.md 5.4): a reader's copy of a page from one of its homes,
 * read with one-sided gets (a node that is itself a home reads its own store).
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

/* each read takes the home and the page's index in its store together
 * (hlrc_home_locate): read apart, an adoption in between could pair them
 * wrongly */
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

/* What a reader does with the meta words of one home (DESIGN.md 5.4). */
typedef enum {
    HLRC_COPY_ACCEPT,        /* every required interval applied, nothing pending */
    HLRC_COPY_READ_AGAIN,    /* behind, or a live writer is in the middle of a release */
    HLRC_COPY_DEAD_WRITER,   /* a failed writer's pending entry is set here: read the
                                other home, which holds the page without that unfinished
                                interval, while recovery (recover.c) repairs this one */
} hlrc_copy_verdict_t;

static hlrc_copy_verdict_t hlrc_meta_verdict(size_t page, const uint64_t *meta)
{
    const uint64_t *required = hlrc.required + page * (size_t)hlrc.nodes;
    hlrc_copy_verdict_t verdict = HLRC_COPY_ACCEPT;
    int j;

    for (j = 0; j < hlrc.nodes; j++) {
        uint64_t applied = meta[2 * j], pending = meta[2 * j + 1];

        if (pending != 0 && j != hlrc.node && !rdma_peer_alive(hlrc.rdma, j)) {
            return HLRC_COPY_DEAD_WRITER;
        }
        if (applied < required[j] || pending != 0) {
            verdict = HLRC_COPY_READ_AGAIN;
        }
    }
    return verdict;
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

/* This thread's before/after meta buffers, 2 x 2 x nodes words. */
static uint64_t *fetch_buffers(void)
{
    if (fetch_meta == NULL) {
        /* mmap, not malloc: this may run in the fault handler */
        void *p = mmap(NULL, 4u * (size_t)hlrc.nodes * 8u, PROT_READ | PROT_WRITE,
                       MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (p == MAP_FAILED) {
            ftsvm_error("cannot map a fetch buffer: %m");
            return NULL;
        }
        fetch_meta = p;
    }
    return fetch_meta;
}

/* The home failed: once the view without it is adopted, the placement names
 * the surviving home. *view_p: the view the fetch waits past, then the new.
 * A page whose homes are both gone has none in any later view (a removed
 * node never comes back, and a new secondary is only ever a copy of a live
 * home): that is an error at once, not after a wait for a view that would
 * change nothing (inside recovery, nothing else would end that wait). */
static int fetch_wait_new_home(size_t page, uint64_t *view_p)
{
    if (hlrc_home(page, REPLICA_PRIMARY) < 0) {
        ftsvm_error("fetch of page 0x%zx (placement row %zu): every home of the page failed",
                    page, (page / hlrc.home_block) % replica_placement.period);
        return FTSVM_EPEER;
    }
    if (failure_wait_adopted(*view_p, HLRC_FETCH_TIMEOUT_NS) != FTSVM_OK ||
        hlrc_home(page, REPLICA_PRIMARY) < 0) {
        ftsvm_error("fetch of page 0x%zx (placement row %zu): %s", page,
                    (page / hlrc.home_block) % replica_placement.period,
                    hlrc_home(page, REPLICA_PRIMARY) < 0 ?
                    "every home of the page failed" : "its home failed and no new "
                    "view came");
        return FTSVM_EPEER;
    }
    *view_p = failure_view();
    return FTSVM_OK;
}

int hlrc_fetch(size_t page, uint8_t *dst)
{
    size_t words = 2u * (size_t)hlrc.nodes;
    int which = hlrc_fetch_source(page), home, status;
    uint64_t deadline = 0, *before, *after, view = failure_view(), seq;
    hlrc_copy_verdict_t verdict;
    unsigned round = 0;

    before = fetch_buffers();
    if (before == NULL) {
        return FTSVM_ENOMEM;
    }
    after = before + words;
    for (;;) {
        seq = failure_adoption_seq();
        home = hlrc_home(page, which);
        verdict = HLRC_COPY_READ_AGAIN;
        status = (home < 0) ? FTSVM_EPEER : hlrc_read_meta(page, which, before);
        if (status == FTSVM_OK) {
            verdict = hlrc_meta_verdict(page, before);
            if (verdict == HLRC_COPY_ACCEPT) {
                replica_fault_point(REPLICA_FAULT_FETCH);
            }
        }
        if (verdict == HLRC_COPY_ACCEPT) {
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
            if (fetch_wait_new_home(page, &view) != FTSVM_OK) {
                return FTSVM_EPEER;
            }
            which = hlrc_fetch_source(page);
            continue;
        }
        if (status != FTSVM_OK) {
            ftsvm_error("fetch of page 0x%zx from node %d failed: %s", page, home,
                        ftsvm_strerror(status));
            return status;
        }
        stats_add(&hlrc.stats, HLRC_STAT_FETCH_RETRIES, 1);
        if (verdict == HLRC_COPY_DEAD_WRITER && hlrc_home(page, !which) >= 0) {
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

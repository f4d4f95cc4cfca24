/*
 * The home side of a page (DESIGN.md sections 3, 4 and 5.4): fetching a
 * copy, and writing diff runs and applied words into the home store with
 * one-sided operations (no work by the home's CPU).
 *
 * Per home page, the meta region holds applied[j] (last interval of writer j
 * fully applied here) then pending[j] (interval of j being written now; 0
 * when none, and always 0 until replication uses it).
 *
 * A fetched copy is accepted only when (1) it includes every interval the
 * reader requires (applied[j] >= required[j]), (2) no pending entry is set,
 * and (3) the meta words read before and after the page are identical, so
 * that no writer's interval started or ended while the page was read. A
 * copy that fails is read again: the writer is in the middle of a release,
 * which takes microseconds.
 */
#include "hlrc_int.h"
#include "common/clock.h"
#include "common/log.h"
#include "ftsvm.h"

#include <sched.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#define HLRC_FETCH_TIMEOUT_NS (60ull * 1000000000ull)

static __thread uint64_t *fetch_meta;   /* 2 x 2 x nodes words, this thread's */

static int hlrc_read_meta(int home, size_t page, uint64_t *meta)
{
    size_t words = 2u * (size_t)hlrc.nodes, i;
    const uint64_t *local;

    if (home != hlrc.node) {
        return rdma_get(hlrc.rdma, home, HLRC_REGION_META, hlrc_meta_offset(page), meta,
                        words * 8u);
    }
    local = (const uint64_t *)((const uint8_t *)rdma_region_addr(hlrc.rdma, HLRC_REGION_META) +
                               hlrc_meta_offset(page));
    for (i = 0; i < words; i++) {
        meta[i] = __atomic_load_n(&local[i], __ATOMIC_ACQUIRE);
    }
    return FTSVM_OK;
}

static int hlrc_read_page(int home, size_t page, uint8_t *dst)
{
    uint64_t offset = hlrc_home_index(page) * HLRC_PAGE_SIZE;

    if (home != hlrc.node) {
        return rdma_get(hlrc.rdma, home, HLRC_REGION_HOME, offset, dst, HLRC_PAGE_SIZE);
    }
    memcpy(dst, (const uint8_t *)rdma_region_addr(hlrc.rdma, HLRC_REGION_HOME) + offset,
           HLRC_PAGE_SIZE);
    __atomic_thread_fence(__ATOMIC_ACQUIRE);
    return FTSVM_OK;
}

static int hlrc_meta_acceptable(size_t page, const uint64_t *meta)
{
    const uint64_t *required = hlrc.required + page * (size_t)hlrc.nodes;
    int j;

    for (j = 0; j < hlrc.nodes; j++) {
        if (meta[j] < required[j] || meta[hlrc.nodes + j] != 0) {
            return 0;
        }
    }
    return 1;
}

int hlrc_fetch(size_t page, uint8_t *dst)
{
    size_t words = 2u * (size_t)hlrc.nodes;
    int home = hlrc_home_of(page), status;
    uint64_t deadline = 0, *before, *after;
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
        status = hlrc_read_meta(home, page, before);
        if (status == FTSVM_OK && hlrc_meta_acceptable(page, before)) {
            status = hlrc_read_page(home, page, dst);
            if (status == FTSVM_OK) {
                status = hlrc_read_meta(home, page, after);
            }
            if (status == FTSVM_OK && memcmp(before, after, words * 8u) == 0) {
                return FTSVM_OK;
            }
        }
        if (status != FTSVM_OK) {
            ftsvm_error("fetch of page 0x%zx from node %d failed: %s", page, home,
                        ftsvm_strerror(status));
            return status;
        }
        stats_add(&hlrc.stats, HLRC_STAT_FETCH_RETRIES, 1);
        if (deadline == 0) {
            deadline = clock_now_ns() + HLRC_FETCH_TIMEOUT_NS;
        } else if (clock_now_ns() > deadline) {
            ftsvm_error("page 0x%zx at node %d never reached the required version",
                        page, home);
            return FTSVM_ETIMEDOUT;
        }
        hlrc_backoff(&round);
    }
}

/* The runs go straight into the home copy. Ordering: the caller flushes
 * before it marks the interval applied, so that a reader who sees applied[j]
 * also sees every run of that interval. */
int hlrc_home_write_runs(size_t page, const uint8_t *diff, size_t size)
{
    int home = hlrc_home_of(page), ret, status = FTSVM_OK;
    uint64_t offset = hlrc_home_index(page) * HLRC_PAGE_SIZE;
    uint8_t *local = (uint8_t *)rdma_region_addr(hlrc.rdma, HLRC_REGION_HOME) + offset;
    hlrc_run_t run = {0};
    size_t pos = 0;

    while ((ret = hlrc_diff_next(diff, size, &pos, &run)) == 1) {
        if (home == hlrc.node) {
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

int hlrc_home_mark_applied(size_t page, uint64_t interval)
{
    int home = hlrc_home_of(page);
    uint64_t offset = hlrc_meta_offset(page) + (uint64_t)hlrc.node * 8u;
    uint64_t *local;

    if (home != hlrc.node) {
        return rdma_put(hlrc.rdma, home, HLRC_REGION_META, offset, &interval, 8);
    }
    /* release: the runs written above are visible before the word */
    local = (uint64_t *)((uint8_t *)rdma_region_addr(hlrc.rdma, HLRC_REGION_META) + offset);
    __atomic_store_n(local, interval, __ATOMIC_RELEASE);
    return FTSVM_OK;
}

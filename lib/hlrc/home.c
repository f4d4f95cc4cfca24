/*
 * The home side of a page (DESIGN.md sections 3 and 5.2): writing pending
 * words, diff runs and applied words into a home store with one-sided
 * operations (no work by the home's CPU). A node that is itself a home of the
 * page writes its own store with plain stores, in the same order. Per home
 * page, the meta region holds for each writer j applied[j] and pending[j];
 * reading them and the copy is fetch.c's.
 */
#include "hlrc_int.h"
#include "ftsvm.h"

#include <string.h>

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

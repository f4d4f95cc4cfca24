/*
 * Intervals, release and acquire (DESIGN.md section 4).
 *
 * Release of interval k (all threads of a node share the open interval):
 *   1. close k: take the update list, open k+1 (close_lock: intervals close
 *      and are announced in order);
 *   2. page locking: every page of k goes busy and read-only, so a write made
 *      after the close waits (fault.c) instead of slipping into k's diffs or
 *      into nothing;
 *   3. broadcast k's write notices to every node, flushed;
 *   4. diff each page against its twin (computed once, kept until both
 *      phases end);
 *   5. two-phase propagation to the primary, then the secondary homes
 *      (propagate.c);
 *   6. the pages become read-only valid copies; vt[me] rises to the last
 *      interval that, with every earlier one, has ended both phases.
 * Threads of one node release concurrently from step 4 on; a release
 * returns only when every interval of the node up to its own has ended both
 * phases (an empty release waits for those in flight, too).
 *
 * Acquire with a vector timestamp V (from a lock or a barrier): for every
 * writer j with V[j] > vt[j], the notices of j's intervals in (vt[j], V[j]]
 * raise required[page][j] and invalidate the page; a page this node is
 * writing in its open interval is merged instead (fresh home copy + our
 * diff), so that no local write is lost.
 */
#include "hlrc_int.h"
#include "common/log.h"
#include "ftsvm.h"

#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

static void release_pages(const uint32_t *pages, size_t npages)
{
    size_t i;

    for (i = 0; i < npages; i++) {
        hlrc_page_put(pages[i], PAGE_READ);
    }
}

/* Step 4: each page's diff against its twin, into diffs[] (npages entries,
 * zeroed); on FTSVM_ENOMEM the entries from the failed one on stay empty. */
static int release_diffs(const uint32_t *pages, size_t npages, page_diff_t *diffs)
{
    uint8_t scratch[HLRC_DIFF_MAX];
    size_t i;

    for (i = 0; i < npages; i++) {
        diffs[i].page  = pages[i];
        diffs[i].size  = (uint32_t)hlrc_diff_encode(
            hlrc.backdoor + (size_t)pages[i] * HLRC_PAGE_SIZE,
            hlrc.twins + (size_t)pages[i] * HLRC_PAGE_SIZE, scratch);
        diffs[i].bytes = malloc(diffs[i].size);
        if (diffs[i].bytes == NULL) {
            return FTSVM_ENOMEM;
        }
        memcpy(diffs[i].bytes, scratch, diffs[i].size);
        stats_add(&hlrc.stats, HLRC_STAT_DIFFS, 1);
        stats_add(&hlrc.stats, HLRC_STAT_DIFF_BYTES, diffs[i].size);
    }
    return FTSVM_OK;
}

/* Step 6: vt[me] rises to the last interval that, with every earlier one,
 * has ended both phases. */
static void raise_own_vt(void)
{
    uint64_t ended;

    pthread_mutex_lock(&hlrc.prop_lock);
    ended = hlrc.phase_done[1];
    pthread_mutex_unlock(&hlrc.prop_lock);
    pthread_mutex_lock(&hlrc.vt_lock);
    if (hlrc.vt[hlrc.node] < ended) {
        hlrc.vt[hlrc.node] = ended;
    }
    pthread_mutex_unlock(&hlrc.vt_lock);
}

int hlrc_release(void)
{
    page_diff_t *diffs = NULL;
    uint32_t *pages = NULL;
    uint64_t interval;
    size_t npages, i;
    int status = FTSVM_OK;

    hlrc_gate_pass();   /* no release begins while a failure is recovered */
    hlrc_update_lock();
    npages = hlrc.nupdates;
    interval = hlrc.interval;
    if (npages > 0) {
        pages = malloc(npages * sizeof(uint32_t));
        if (pages != NULL) {
            memcpy(pages, hlrc.updates, npages * sizeof(uint32_t));
            hlrc.nupdates = 0;
            hlrc.interval++;
        }
    }
    hlrc_update_unlock();
    if (npages == 0 || pages == NULL) {
        pthread_mutex_unlock(&hlrc.close_lock);
        if (npages > 0) {
            ftsvm_error("cannot allocate a release of %zu pages", npages);
            return FTSVM_ENOMEM;   /* the interval stays open */
        }
        /* nothing of ours to write, but earlier intervals of the node (other
         * threads') must be at both homes before this release counts */
        status = hlrc_propagation_wait(interval - 1);
        goto out_vt;
    }
    stats_add(&hlrc.stats, HLRC_STAT_RELEASES, 1);
    for (i = 0; i < npages; i++) {
        /* page locking: later writes wait until propagation ends */
        hlrc_page_take(pages[i]);
        hlrc_protect(pages[i], PROT_READ);
    }
    status = hlrc_notices_publish(interval, pages, npages);
    pthread_mutex_unlock(&hlrc.close_lock);

    diffs = calloc(npages, sizeof(*diffs));
    if (diffs == NULL) {
        status = FTSVM_ENOMEM;
    } else if (status == FTSVM_OK) {
        status = release_diffs(pages, npages, diffs);
    }
    if (status == FTSVM_OK) {
        status = hlrc_propagate(interval, diffs, npages);
    } else {
        hlrc_propagation_fail(status);   /* later intervals must not wait for this one */
    }
    /* pages first, vt after: an acquire holding vt_lock may be waiting for
     * one of these pages */
    release_pages(pages, npages);
    for (i = 0; diffs != NULL && i < npages; i++) {
        free(diffs[i].bytes);
    }
    free(diffs);
    free(pages);
    if (status != FTSVM_OK) {
        ftsvm_error("release of interval %llu failed: %s", (unsigned long long)interval,
                    ftsvm_strerror(status));
        return status;
    }
out_vt:
    if (status == FTSVM_OK) {
        raise_own_vt();
    }
    return status;
}

/* A page this node writes in its open interval, made stale by another
 * writer: fresh home copy, plus our own changes so far; the fresh copy is the
 * new twin, so the next diff carries only our changes. */
static int hlrc_merge(size_t page)
{
    uint8_t diff[HLRC_DIFF_MAX], fresh[HLRC_PAGE_SIZE];
    uint8_t *work = hlrc.backdoor + page * HLRC_PAGE_SIZE;
    uint8_t *twin = hlrc.twins + page * HLRC_PAGE_SIZE;
    size_t size;
    int status;

    status = hlrc_fetch(page, fresh);
    if (status != FTSVM_OK) {
        return status;
    }
    size = hlrc_diff_encode(work, twin, diff);
    memcpy(twin, fresh, HLRC_PAGE_SIZE);
    status = hlrc_diff_apply(fresh, diff, size);
    memcpy(work, fresh, HLRC_PAGE_SIZE);
    stats_add(&hlrc.stats, HLRC_STAT_MERGES, 1);
    return status;
}

static int hlrc_invalidate(size_t page)
{
    uint8_t state = hlrc_page_take(page);
    int status = FTSVM_OK;

    switch (state) {
    case PAGE_READ:
        status = hlrc_protect(page, PROT_NONE);
        state = PAGE_INVALID;
        stats_add(&hlrc.stats, HLRC_STAT_INVALIDATIONS, 1);
        break;
    case PAGE_WRITE:
        /* writers of this node wait while we merge */
        status = hlrc_protect(page, PROT_READ);
        if (status == FTSVM_OK) {
            status = hlrc_merge(page);
        }
        if (status == FTSVM_OK) {
            status = hlrc_protect(page, PROT_READ | PROT_WRITE);
        }
        break;
    default:
        break;
    }
    hlrc_page_put(page, state);
    return status;
}

int hlrc_acquire(const uint64_t *vt)
{
    hlrc_notice_list_t *list;
    hlrc_notice_t notice;
    uint64_t *required;
    uint32_t i;
    int j, status = FTSVM_OK;

    pthread_mutex_lock(&hlrc.vt_lock);
    for (j = 0; j < hlrc.nodes; j++) {
        if (j == hlrc.node || vt[j] <= hlrc.vt[j]) {
            continue;
        }
        hlrc_notices_drain(j);
        list = &hlrc.notices[j];
        for (;;) {
            pthread_mutex_lock(&hlrc.notice_lock);
            if (list->first >= list->count || list->items[list->first].interval > vt[j]) {
                pthread_mutex_unlock(&hlrc.notice_lock);
                break;
            }
            notice = list->items[list->first++];
            if (list->first == list->count) {
                list->first = list->count = 0;
            }
            pthread_mutex_unlock(&hlrc.notice_lock);
            if (notice.interval > hlrc.vt[j]) {
                for (i = 0; i < notice.npages; i++) {
                    required = &hlrc.required[(size_t)notice.pages[i] * (size_t)hlrc.nodes + j];
                    if (*required < notice.interval) {
                        *required = notice.interval;
                    }
                    if (hlrc_invalidate(notice.pages[i]) != FTSVM_OK) {
                        status = FTSVM_ESYS;
                    }
                }
            }
            free(notice.pages);
        }
        hlrc.vt[j] = vt[j];
    }
    pthread_mutex_unlock(&hlrc.vt_lock);
    return status;
}

void hlrc_vt_copy(uint64_t *vt)
{
    pthread_mutex_lock(&hlrc.vt_lock);
    memcpy(vt, hlrc.vt, (size_t)hlrc.nodes * sizeof(uint64_t));
    pthread_mutex_unlock(&hlrc.vt_lock);
}

/*
 * Recovery of the pages of a failed writer F (DESIGN.md 5.4 and section 7).
 *
 * At adoption of the view without F (the placement already names the
 * surviving home of F's pages as their primary):
 *   - pages with one home left (F was the other): a pending entry of F there
 *     is settled with F's markers at once — k <= nextRelease(F): k is
 *     complete, mark it applied; else k never happened: undo it and clear it. Nothing
 *     else can repair such a page, and a reader of it waits only this long.
 * Then, as a recovery step run by every survivor:
 *   1. the gate closes: no release begins; releases in flight end (they
 *      rewrite what they had written on the new placement);
 *   2. this node's markers go to its backup again (it may have changed);
 *   3. exchange: every survivor has drained, so no live writer's interval is
 *      half written anywhere;
 *   4. each survivor repairs the pages it is primary of that F's intervals
 *      after lastRelease(F) touched (from F's write notices, which reach
 *      every application node before any diff; the members' lists are
 *      gathered, since a spare gets none, repair_pages): replica_resolve decides between rolling
 *      the primary back to the secondary's copy (case 1), completing the
 *      interval at the primary and copying it to the secondary (case 2), and
 *      copying the primary to the secondary (phase 2 interrupted);
 *   5. exchange;
 *   6. each survivor acquires F's intervals up to nextRelease(F), which its
 *      vt may not name (F died before its vt went out);
 *   7. the rows left with one home get a new secondary in the plan of
 *      lib/replica (rereplicate.c), copied there in the background later,
 *      and the gate opens.
 * Meanwhile readers never wait for this: a copy with F's pending entry is
 * refused and the other home read instead (home.c).
 *
 * When F was itself a home of a page it wrote, the surviving copy got F's
 * phase 1 in place: a durable interval is whole there, and one that never
 * became durable (k > nextRelease(F)) is undone with the undo F put there
 * first (undo.c), whatever its size. A survivor that finds no undo where
 * the write order puts one stops: it would keep part of a void interval.
 */
#include "hlrc_int.h"
#include "common/clock.h"
#include "common/log.h"
#include "failure/failure.h"
#include "ftsvm.h"

#include <stdlib.h>
#include <string.h>

/* while a view change is recovered no release begins, so that the homes can
 * be repaired with nobody writing */
static struct {
    pthread_mutex_t lock;
    pthread_cond_t  cond;
    int             closed;
} gate;

void hlrc_gate_pass(void)
{
    int closed;

    for (;;) {
        pthread_mutex_lock(&gate.lock);
        while (gate.closed) {
            pthread_cond_wait(&gate.cond, &gate.lock);
        }
        pthread_mutex_unlock(&gate.lock);
        /* drain reads the last closed interval under close_lock after the
         * gate closed: a release that finds the gate open under it closes
         * its interval before drain reads, and so is waited for */
        pthread_mutex_lock(&hlrc.close_lock);
        pthread_mutex_lock(&gate.lock);
        closed = gate.closed;
        pthread_mutex_unlock(&gate.lock);
        if (!closed) {
            return;
        }
        pthread_mutex_unlock(&hlrc.close_lock);
    }
}

static void gate_set(int closed)
{
    pthread_mutex_lock(&gate.lock);
    gate.closed = closed;
    pthread_cond_broadcast(&gate.cond);
    pthread_mutex_unlock(&gate.lock);
}

/* adoption: pages left with one home, here (F was the other) */
static int settle_single_home(void *arg, const failure_change_t *change)
{
    uint64_t last, next, *meta;
    size_t page;
    int i, f, was;

    (void)arg;
    if (!hlrc.replicated) {
        return FTSVM_OK;
    }
    for (i = 0; (f = change->removed_now[i]) >= 0; i++) {
        if (replica_markers_read(f, &last, &next) != FTSVM_OK) {
            ftsvm_error("the markers of node %d cannot be read: its unfinished interval "
                        "is treated as void", f);
            last = next = 0;
        }
        for (page = 0; page < hlrc.npages; page++) {
            uint64_t k;

            if (hlrc_home(page, REPLICA_PRIMARY) != hlrc.node ||
                hlrc_home(page, REPLICA_SECONDARY) >= 0 ||
                !replica_was_home(page / hlrc.home_block, f, &was)) {
                continue;
            }
            meta = hlrc_local_meta(page, REPLICA_PRIMARY);
            k = __atomic_load_n(&meta[2 * f + 1], __ATOMIC_ACQUIRE);
            if (k == 0) {
                continue;
            }
            if (k <= next) {
                __atomic_store_n(&meta[2 * f], k, __ATOMIC_RELEASE);   /* durable: whole here */
            } else if (hlrc_undo_apply(f, page, k, hlrc_local_copy(page, REPLICA_PRIMARY)) !=
                       FTSVM_OK) {
                /* guarantee 3 cannot hold for this page: no survivor may go on */
                ftsvm_error("page 0x%zx: node %d's void interval %llu cannot be undone at "
                            "its only copy left; stopping", page, f, (unsigned long long)k);
                abort();
            }
            __atomic_store_n(&meta[2 * f + 1], 0, __ATOMIC_RELEASE);
        }
    }
    return FTSVM_OK;
}

/* copy our primary copy and its words to the secondary: page, then words
 * (each home with its index, read together: hlrc_home_locate) */
static int push_to_secondary(size_t page)
{
    size_t words = 2u * (size_t)hlrc.nodes, pindex, sindex;
    int primary = hlrc_home_locate(page, REPLICA_PRIMARY, &pindex);
    int secondary = hlrc_home_locate(page, REPLICA_SECONDARY, &sindex);
    int status;

    if (primary != hlrc.node || secondary < 0) {
        return FTSVM_EPEER;   /* a later view moved it: its recovery runs again */
    }
    status = rdma_put(hlrc.rdma, secondary, HLRC_REGION_HOME, sindex * HLRC_PAGE_SIZE,
                      hlrc_copy_at(pindex), HLRC_PAGE_SIZE);
    /* the page before the words that vouch for it */
    if (status == FTSVM_OK) {
        status = rdma_fence(hlrc.rdma);
    }
    if (status == FTSVM_OK) {
        status = rdma_put(hlrc.rdma, secondary, HLRC_REGION_META,
                          sindex * words * 8u, hlrc_meta_at(pindex), words * 8u);
    }
    return status;
}

static int resolve_page(size_t page, int f, uint64_t last, uint64_t next, uint64_t *smeta,
                        uint8_t *scopy)
{
    size_t words = 2u * (size_t)hlrc.nodes, j;
    int status;
    uint64_t *meta = hlrc_local_meta(page, REPLICA_PRIMARY);
    replica_words_t pw, sw;
    replica_verdict_t verdict;

    status = hlrc_home_read(page, REPLICA_SECONDARY, smeta, NULL);
    if (status != FTSVM_OK) {
        return status;
    }
    pw.applied = __atomic_load_n(&meta[2 * f], __ATOMIC_ACQUIRE);
    pw.pending = __atomic_load_n(&meta[2 * f + 1], __ATOMIC_ACQUIRE);
    sw.applied = smeta[2 * f];
    sw.pending = smeta[2 * f + 1];
    verdict = replica_resolve(0, &pw, &sw, last, next);
    if (verdict != REPLICA_NOTHING) {
        ftsvm_info("page 0x%zx: node %d's interval: %s (primary %llu/%llu, secondary "
                   "%llu/%llu, markers %llu/%llu)", page, f, replica_verdict_name(verdict),
                   (unsigned long long)pw.applied, (unsigned long long)pw.pending,
                   (unsigned long long)sw.applied, (unsigned long long)sw.pending,
                   (unsigned long long)last, (unsigned long long)next);
    }
    switch (verdict) {
    case REPLICA_NOTHING:
    case REPLICA_WAIT:
        return FTSVM_OK;
    case REPLICA_ROLL_BACK:
        /* case 1: the secondary holds the page without the void interval,
         * and every live writer has caught up there (all drained) */
        status = hlrc_home_read(page, REPLICA_SECONDARY, smeta, scopy);
        if (status != FTSVM_OK) {
            return status;
        }
        memcpy(hlrc_local_copy(page, REPLICA_PRIMARY), scopy, HLRC_PAGE_SIZE);
        __atomic_thread_fence(__ATOMIC_RELEASE);
        for (j = 0; j < words; j++) {
            __atomic_store_n(&meta[j], smeta[j], __ATOMIC_RELEASE);
        }
        return FTSVM_OK;
    case REPLICA_COMPLETE:
        /* case 2: complete at the primary; then as phase 2 would */
        __atomic_store_n(&meta[2 * f], pw.pending, __ATOMIC_RELEASE);
        __atomic_store_n(&meta[2 * f + 1], 0, __ATOMIC_RELEASE);
        return push_to_secondary(page);
    case REPLICA_COPY_FROM_PRIMARY:
        return push_to_secondary(page);
    case REPLICA_INCONSISTENT:
    default:
        ftsvm_error("page 0x%zx: the homes' words for node %d fit no run of the protocol; "
                    "left as they are", page, f);
        return FTSVM_OK;
    }
}

/* With the gate closed: wait for every interval this node has closed, and
 * for every propagation to end, retries on the new placement included (a
 * first attempt may have ended both phases before the view change made it
 * write again). No propagation of this node may run under the repair: a
 * roll-back copy from a secondary it is writing would leave its pending
 * entry at the primary for good. A release that passed the gate before it
 * closed holds close_lock until its interval is closed (hlrc_gate_pass),
 * so it is counted here. */
static int drain(void)
{
    uint64_t closed;
    int status;

    pthread_mutex_lock(&hlrc.close_lock);
    hlrc_update_lock();
    closed = hlrc.interval - 1;
    hlrc_update_unlock();
    pthread_mutex_unlock(&hlrc.close_lock);
    status = hlrc_propagation_wait(closed);
    return (status == FTSVM_OK) ? hlrc_propagation_idle() : status;
}

/* F's intervals up to nextRelease(F) are whole at both homes now, but a
 * survivor acquires them only from a vt that names them, and F may have
 * died before its vt went anywhere (after its last release, before the
 * lock moved on or its barrier arrival was out): a copy cached here would
 * stay stale. Acquire them now, from the notices F broadcast before its
 * diffs; its void intervals (after nextRelease) are never acquired. */
static int acquire_durable(const failure_change_t *change)
{
    uint64_t last, next, *vt;
    int k, f, status = FTSVM_OK;

    vt = malloc((size_t)hlrc.nodes * sizeof(uint64_t));
    if (vt == NULL) {
        return FTSVM_ENOMEM;
    }
    hlrc_vt_copy(vt);
    for (k = 0; (f = change->removed_now[k]) >= 0; k++) {
        if (replica_markers_read(f, &last, &next) == FTSVM_OK && next > vt[f]) {
            vt[f] = next;
        }
    }
    status = hlrc_acquire(vt);
    free(vt);
    return status;
}

/* The first exchange: every survivor has drained, and each sends its
 * placement rows, so that all repair and plan on the same rows (a view
 * change while a row's new secondary was announced leaves them apart:
 * lib/replica/rows_agree.c). */
static int agree_on_rows(const failure_change_t *change)
{
    void *vote, **all = NULL;
    size_t len, *lens;
    int status;

    status = replica_rows_vote(&vote, &len);
    if (status == FTSVM_OK) {
        status = failure_gather(change, 1, vote, len, &all, &lens);
    }
    if (status == FTSVM_OK) {
        status = replica_rows_settle(change, all, lens);
    }
    free(all);
    free(vote);
    return status;
}

/* The pages that F's intervals after lastRelease(F) touched, from this
 * node's write notices: per removed node, in removed_now order, a count and
 * the pages (a gather piece; *len_p its bytes). */
static int touched_pages(const failure_change_t *change, const uint64_t *lasts, uint32_t **blob_p,
                         size_t *len_p)
{
    uint32_t *blob = NULL, *grown, *pages;
    size_t used = 0, n;
    int f, k, status = FTSVM_OK;

    for (k = 0; (f = change->removed_now[k]) >= 0 && status == FTSVM_OK; k++) {
        pages = NULL;
        n = 0;
        if (lasts[k] != UINT64_MAX) {
            status = hlrc_notices_pages_after(f, lasts[k], &pages, &n);
        }
        grown = (status == FTSVM_OK) ? realloc(blob, (used + 1 + n) * 4u) : NULL;
        if (grown == NULL) {
            free(pages);
            status = (status == FTSVM_OK) ? FTSVM_ENOMEM : status;
            break;
        }
        blob = grown;
        blob[used++] = (uint32_t)n;
        if (n > 0) {
            memcpy(blob + used, pages, n * 4u);
        }
        used += n;
        free(pages);
    }
    if (status != FTSVM_OK) {
        free(blob);
        return status;
    }
    *blob_p = blob;
    *len_p = used * 4u;
    return FTSVM_OK;
}

/* Step 4: each survivor repairs the pages it is primary of that the failed
 * writers touched after their last release. The pages come from every
 * member's write notices (gathered), not only this node's: a spare gets no
 * write notices (they go to the application nodes, which acquire them), yet
 * it may have become the primary of such a page (a failed node's place).
 * Without the others' lists it would keep the writer's pending entry there
 * for good while the secondary had moved on. */
static int repair_pages(const failure_change_t *change, uint64_t *smeta, uint8_t *scopy,
                        uint8_t *seen)
{
    uint64_t *lasts, *nexts;
    uint32_t *blob = NULL;
    void **all = NULL;
    size_t *lens, len = 0, at, n, i, words;
    int f, k, j, node, count, status = FTSVM_OK;

    for (count = 0; change->removed_now[count] >= 0; count++) {
    }
    lasts = calloc((size_t)count + 1, 8);
    nexts = calloc((size_t)count + 1, 8);
    if (lasts == NULL || nexts == NULL) {
        free(lasts);
        free(nexts);
        return FTSVM_ENOMEM;
    }
    for (k = 0; k < count && status == FTSVM_OK; k++) {
        f = change->removed_now[k];
        status = replica_markers_read(f, &lasts[k], &nexts[k]);
        if (status != FTSVM_OK) {
            ftsvm_error("the markers of node %d cannot be read: its pages are not repaired", f);
            lasts[k] = UINT64_MAX;
            status = (status == FTSVM_EPEER) ? status : FTSVM_OK;   /* EPEER: the next view */
        }
    }
    if (status == FTSVM_OK) {
        status = touched_pages(change, lasts, &blob, &len);
    }
    if (status == FTSVM_OK) {
        status = failure_gather(change, 3, blob, len, &all, &lens);
    }
    free(blob);
    for (k = 0; k < count && status == FTSVM_OK; k++) {
        f = change->removed_now[k];
        if (lasts[k] == UINT64_MAX) {
            continue;
        }
        memset(seen, 0, hlrc.npages);
        for (node = 0; node < hlrc.nodes && status == FTSVM_OK; node++) {
            const uint32_t *piece = all[node];

            words = (piece != NULL) ? lens[node] / 4u : 0;
            for (j = 0, at = 0; j < k && at < words; j++) {
                at += 1 + piece[at];   /* the sections of the nodes before f */
            }
            n = (at < words) ? piece[at++] : 0;
            for (i = 0; i < n && at + i < words && status == FTSVM_OK; i++) {
                size_t page = piece[at + i];

                if (page >= hlrc.npages || seen[page] ||
                    hlrc_home(page, REPLICA_PRIMARY) != hlrc.node ||
                    hlrc_home(page, REPLICA_SECONDARY) < 0) {
                    continue;
                }
                seen[page] = 1;
                status = resolve_page(page, f, lasts[k], nexts[k], smeta, scopy);
            }
        }
    }
    free(all);
    free(lasts);
    free(nexts);
    return status;
}

static int recover_pages(void *arg, const failure_change_t *change)
{
    uint64_t last, next, *smeta = NULL;
    uint8_t *scopy = NULL, *seen = NULL;
    void **all = NULL;
    size_t *lens;
    int status;

    (void)arg;
    gate_set(1);
    status = drain();
    if (status != FTSVM_OK) {
        ftsvm_error("recovery: a release of this node failed (%s)", ftsvm_strerror(status));
    }
    if (hlrc.replicated) {
        pthread_mutex_lock(&hlrc.prop_lock);
        last = hlrc.phase_done[1];
        next = hlrc.phase_done[0];
        pthread_mutex_unlock(&hlrc.prop_lock);
        status = replica_markers_resave(last, next);
        if (status == FTSVM_EPEER) {
            goto out;
        }
    }
    status = agree_on_rows(change);   /* everyone drained */
    if (status != FTSVM_OK || !hlrc.replicated) {
        goto out;
    }
    smeta = malloc(2u * (size_t)hlrc.nodes * 8u);
    scopy = malloc(HLRC_PAGE_SIZE);
    seen  = calloc(hlrc.npages, 1);
    if (smeta == NULL || scopy == NULL || seen == NULL) {
        status = FTSVM_ENOMEM;
        goto out;
    }
    status = repair_pages(change, smeta, scopy, seen);
    if (status == FTSVM_OK) {
        status = rdma_flush(hlrc.rdma, RDMA_ALL_PEERS);
    }
    if (status == FTSVM_OK) {
        status = failure_gather(change, 2, NULL, 0, &all, &lens);   /* everyone repaired */
        free(all);
    }
    if (status == FTSVM_OK) {
        status = acquire_durable(change);
    }
    /* every survivor drained and repaired, the gate still closed: no
     * release runs anywhere, so the rows that lost a home can be planned
     * (and wait for their copy) from here */
    if (status == FTSVM_OK) {
        status = replica_rereplicate_plan(change);
    }
out:
    free(smeta);
    free(scopy);
    free(seen);
    if (status != FTSVM_EPEER) {
        gate_set(0);   /* on EPEER the next view's recovery opens it */
    }
    return status;
}

int hlrc_recover_init(void)
{
    int status;

    pthread_mutex_init(&gate.lock, NULL);
    pthread_cond_init(&gate.cond, NULL);
    gate.closed = 0;
    status = failure_on_recovery(0, settle_single_home, NULL);
    if (status == FTSVM_OK) {
        status = failure_on_recovery(10, recover_pages, NULL);
    }
    return status;
}

/*
 * Agreement on the placement after a view change (DESIGN.md section 7 and
 * rereplicate.c): every survivor ends the recovery with the same rows and
 * the same next fresh headroom slot of every node.
 *
 * Why they can differ: a row gets its new secondary node by node, as the
 * "row done" messages of its copier arrive (rereplicate.c). A view change
 * while they go out freezes the copy (at adoption), and some survivors
 * then name the new secondary in the row while others do not. Likewise a
 * plan is made only by the survivors whose recovery got that far, so the
 * slots handed out so far may differ.
 *
 * How they agree: in the first exchange of hlrc's recovery (every survivor
 * has drained, nothing writes a home; recover.c) each survivor sends its
 * rows and slots (replica_rows_vote), and every survivor applies the same
 * verdict to the same votes (replica_rows_settle), before anything reads a
 * row for the repair or the next plan:
 *   - slots: the highest of every vote, so that no slot a copy may have
 *     written is handed out again (a fresh slot must be zero);
 *   - a row whose votes differ: the vote with the fewest live homes (ties:
 *     the lowest word). A survivor that does not name the new secondary may
 *     have written the row's single home only, after its adoption: the new
 *     secondary can lack those writes, so it is dropped, and the next plan
 *     copies the row again from the home that has every write. If that home
 *     is gone too, the row has no home left on every survivor alike, and
 *     each says so (its data is lost: a second failure before redundancy
 *     was back, as in rereplicate.c).
 * The exchange itself is failure_gather's: a survivor that fails to get
 * every vote applies none and votes again in the next view; its rows are
 * then one of the votes the others settled on, or the same as theirs, and
 * the verdict over any subset of the same votes keeps a dropped secondary
 * dropped.
 *
 * Left open: a survivor settles on a row that names the new secondary only
 * when every survivor names it; if a node that did not name it wrote the
 * single home after an adoption and then failed too (three failures within
 * one copy), its write is not at the new secondary.
 */
#include "replica_int.h"
#include "common/log.h"
#include "ftsvm.h"

#include <stdlib.h>
#include <string.h>

typedef struct rows_vote_hdr {
    uint32_t nodes;
    uint32_t period;
} rows_vote_hdr_t;

static size_t vote_size(void)
{
    const replica_placement_t *p = &replica_placement;

    return sizeof(rows_vote_hdr_t) + p->period * sizeof(replica_row_t) +
           (size_t)p->nodes * sizeof(uint16_t);
}

int replica_rows_vote(void **vote_p, size_t *len_p)
{
    const replica_placement_t *p = &replica_placement;
    rows_vote_hdr_t hdr = { (uint32_t)p->nodes, (uint32_t)p->period };
    uint8_t *vote, *at;
    size_t r;

    *vote_p = NULL;
    *len_p = 0;
    if (p->replicas < 2) {
        return FTSVM_OK;   /* one home: rows change only at adoption, alike everywhere */
    }
    vote = malloc(vote_size());
    if (vote == NULL) {
        return FTSVM_ENOMEM;
    }
    memcpy(vote, &hdr, sizeof(hdr));
    at = vote + sizeof(hdr);
    for (r = 0; r < p->period; r++, at += sizeof(replica_row_t)) {
        replica_row_t row = replica_row_read(p, r);

        memcpy(at, &row, sizeof(row));
    }
    memcpy(at, replica_next_slot, (size_t)p->nodes * sizeof(uint16_t));
    *vote_p = vote;
    *len_p = vote_size();
    return FTSVM_OK;
}

static int live_homes(const replica_row_t *row)
{
    int w, n = 0;

    for (w = 0; w < 2; w++) {
        n += row->home[w] >= 0 && !replica_gone[row->home[w]] && failure_member(row->home[w]);
    }
    return n;
}

static uint64_t row_word(const replica_row_t *row)
{
    uint64_t word;

    memcpy(&word, row, sizeof(word));
    return word;
}

/* the vote every survivor settles row r on; 1 when the votes differed */
static int row_verdict(size_t r, void **all, int nodes, replica_row_t *row_p)
{
    replica_row_t best, row;
    int node, differ = 0, have = 0;

    for (node = 0; node < nodes; node++) {
        if (all[node] == NULL) {
            continue;
        }
        memcpy(&row, (const uint8_t *)all[node] + sizeof(rows_vote_hdr_t) +
               r * sizeof(replica_row_t), sizeof(row));
        if (!have) {
            best = row;
            have = 1;
            continue;
        }
        differ |= (row_word(&row) != row_word(&best));
        if (live_homes(&row) < live_homes(&best) ||
            (live_homes(&row) == live_homes(&best) && row_word(&row) < row_word(&best))) {
            best = row;
        }
    }
    *row_p = best;
    return differ;
}

static void settle_row(const failure_change_t *change, size_t r, const replica_row_t *row)
{
    replica_row_t mine = replica_row_read(&replica_placement, r);

    if (live_homes(row) == 0) {
        ftsvm_error("view %llu: placement row %zu: the survivors disagreed on its homes (a "
                    "view change while its new secondary was announced) and none of them "
                    "is live: its data is lost", (unsigned long long)change->view, r);
    } else {
        ftsvm_info("view %llu: placement row %zu: the survivors disagreed on its homes (a "
                   "view change while its new secondary was announced); settled on nodes "
                   "%d and %d", (unsigned long long)change->view, r, row->home[0],
                   row->home[1]);
    }
    if (row_word(&mine) != row_word(row)) {
        __atomic_store(&replica_placement.rows[r], (replica_row_t *)row, __ATOMIC_RELEASE);
    }
}

int replica_rows_settle(const failure_change_t *change, void **all, const size_t *lens)
{
    const replica_placement_t *p = &replica_placement;
    void **votes;
    size_t r;
    int node, n = 0;

    if (p->replicas < 2) {
        return FTSVM_OK;
    }
    votes = calloc((size_t)p->nodes, sizeof(void *));
    if (votes == NULL) {
        return FTSVM_ENOMEM;
    }
    for (node = 0; node < p->nodes; node++) {
        if (all[node] == NULL || !failure_member(node)) {
            continue;
        }
        if (lens[node] != vote_size()) {
            /* every member runs this code: a vote of another size is a bug */
            ftsvm_error("view %llu: node %d's placement vote has %zu bytes, not %zu",
                        (unsigned long long)change->view, node, lens[node], vote_size());
            free(votes);
            return FTSVM_EPROTO;
        }
        votes[node] = all[node];
        n++;
    }
    for (r = 0; r < p->period && n > 1; r++) {
        replica_row_t row;

        if (row_verdict(r, votes, p->nodes, &row)) {
            settle_row(change, r, &row);
        }
    }
    for (node = 0; node < p->nodes; node++) {
        const uint8_t *slots = (const uint8_t *)votes[node] + sizeof(rows_vote_hdr_t) +
                               p->period * sizeof(replica_row_t);
        int k;

        for (k = 0; votes[node] != NULL && k < p->nodes; k++) {
            uint16_t slot;

            memcpy(&slot, slots + (size_t)k * sizeof(slot), sizeof(slot));
            replica_next_slot[k] = (slot > replica_next_slot[k]) ? slot : replica_next_slot[k];
        }
    }
    free(votes);
    return FTSVM_OK;
}

/*
 * The undo of a writer that is itself a home (DESIGN.md 5.2 and 5.4).
 *
 * When writer P is one of a page's two homes, phase 1 of its interval k
 * writes the other home O in place (propagate.c, phase_homes): O must hold
 * every interval nextRelease(P) vouches for, since P's own copy dies with P.
 * But if P dies before nextRelease(P) = k, k never happened, and O is the
 * only copy left: there is no second copy to roll O back from. So before
 * any run of k reaches O, P puts there the bytes its runs will overwrite
 * (the twin's, under the same runs: the pre-image, as no other writer may
 * write those bytes in a race-free program), and recovery puts them back.
 *
 * Where the undo lives: one slot per home copy, beside it (HLRC_REGION_UNDO
 * is indexed like HLRC_REGION_HOME), big enough for the undo of a whole
 * page. So every interval has its undo, whatever its size, and no interval
 * waits for another's slot. One slot per copy is enough: only the page's
 * other home writes it, and that node's next interval of the page waits
 * until this one has ended both phases (page locking, interval.c), long
 * after its undo stopped mattering (at nextRelease).
 *
 * The price is memory: the undo region is 1.13x the home store, registered
 * like it (pages are touched only when an undo lands on them, except where
 * the transport pins its registrations). Two other designs were weighed:
 * - a bounded log per writer with an interval split into pieces: a piece's
 *   undo is needed until nextRelease covers the whole interval, so pieces
 *   cannot free each other's space, and a log that bounds the in-flight
 *   undo bounds the interval; splitting the release into intervals of its
 *   own would make part of an unfinished release durable (guarantee 3);
 * - a redo log at O (stage k's runs there, apply them after nextRelease):
 *   the same space, plus a second copy of every run on the release path
 *   and work for O's CPU after it.
 * The undo costs the writer one put per page of this kind, made of bytes
 * it has anyway (the twin), and nothing at all on the path of any other
 * page; recovery, the rare path, does the work.
 *
 * Order at O: the undo; fence; pending[P] = k; fence; the runs. So a copy
 * whose pending entry names k has k's undo in its slot (the slot says so:
 * writer and interval), and a copy whose pending entry does not has no run
 * of k.
 *
 * A slot: { u16 form, u16 bytes, u32 writer, u64 interval }
 * then the body in one of two forms (diff.h, hlrc_undo_encode): the diff's
 * runs holding the twin's bytes, or for a diff of many short runs, a mask
 * of the bytes they cover and the twin's whole page.
 */
#include "hlrc_int.h"
#include "common/log.h"
#include "ftsvm.h"

#include <stdlib.h>
#include <string.h>

typedef struct undo_header {
    uint16_t form, bytes;
    uint32_t writer;
    uint64_t interval;
} undo_header_t;

_Static_assert(sizeof(undo_header_t) + HLRC_UNDO_BODY_MAX == HLRC_UNDO_SLOT_BYTES,
               "an undo slot holds a header and the largest body");

/* The node holding the other copy of `page` when this node is one of its
 * homes, else -1; *index_p: the page's index in that node's store (read
 * with it, hlrc_home_locate). */
static int undo_other_home(uint32_t page, size_t *index_p)
{
    size_t pindex, sindex;
    int primary = hlrc_home_locate(page, REPLICA_PRIMARY, &pindex);
    int secondary = hlrc_home_locate(page, REPLICA_SECONDARY, &sindex);

    if (primary == hlrc.node && secondary >= 0) {
        *index_p = sindex;
        return secondary;
    }
    if (secondary == hlrc.node && primary >= 0) {
        *index_p = pindex;
        return primary;
    }
    return -1;
}

/* The undo of one page's diff into slot, header first; its length. */
static size_t undo_slot_fill(uint64_t k, const page_diff_t *diff, uint8_t *slot)
{
    undo_header_t header = { .writer = (uint32_t)hlrc.node, .interval = k };
    size_t bytes;

    header.form = (uint16_t)hlrc_undo_encode(diff->bytes, diff->size,
                                             hlrc.twins + (size_t)diff->page * HLRC_PAGE_SIZE,
                                             slot + sizeof(header), &bytes);
    header.bytes = (uint16_t)bytes;
    memcpy(slot, &header, sizeof(header));
    return sizeof(header) + bytes;
}

int hlrc_undo_write(uint64_t k, const page_diff_t *diffs, size_t npages)
{
    uint8_t slot[HLRC_UNDO_SLOT_BYTES];
    int other, status = FTSVM_OK, any = 0;
    size_t i, len, index;

    if (!hlrc.replicated) {
        return FTSVM_OK;
    }
    for (i = 0; i < npages && status == FTSVM_OK; i++) {
        other = undo_other_home(diffs[i].page, &index);
        if (other < 0) {
            continue;
        }
        len = undo_slot_fill(k, &diffs[i], slot);
        /* rdma_put is done with `slot` when it returns */
        status = rdma_put(hlrc.rdma, other, HLRC_REGION_UNDO,
                          index * (uint64_t)HLRC_UNDO_SLOT_BYTES,
                          slot, len);
        any = 1;
    }
    /* every undo at its copy before the pending entry that points at it */
    if (status == FTSVM_OK && any) {
        status = rdma_fence(hlrc.rdma);
    }
    return status;
}

int hlrc_undo_apply(int writer, size_t page, uint64_t k, uint8_t *copy)
{
    const uint8_t *slot = (const uint8_t *)rdma_region_addr(hlrc.rdma, HLRC_REGION_UNDO) +
                          hlrc_home_index(page, REPLICA_PRIMARY) * HLRC_UNDO_SLOT_BYTES;
    const uint8_t *body = slot + sizeof(undo_header_t);
    undo_header_t header;

    memcpy(&header, slot, sizeof(header));
    if (header.writer != (uint32_t)writer || header.interval != k) {
        ftsvm_error("page 0x%zx: node %d's pending interval %llu has no undo here (the slot "
                    "holds node %u's interval %llu)", page, writer, (unsigned long long)k,
                    header.writer, (unsigned long long)header.interval);
        return FTSVM_EPROTO;
    }
    if (hlrc_undo_decode(copy, header.form, body, header.bytes) == FTSVM_OK) {
        return FTSVM_OK;
    }
    ftsvm_error("page 0x%zx: the undo of node %d's interval %llu does not parse (form %u, "
                "%u bytes)", page, writer, (unsigned long long)k, header.form, header.bytes);
    return FTSVM_EPROTO;
}

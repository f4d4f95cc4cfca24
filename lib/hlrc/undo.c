/*
 * The undo log of a writer that is itself a home (DESIGN.md 5.2 and 5.4).
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
 * Each writer has an area in every node's HLRC_REGION_UNDO, in
 * HLRC_UNDO_SLOTS slots; interval k uses slot k mod HLRC_UNDO_SLOTS, once
 * interval k - HLRC_UNDO_SLOTS has passed nextRelease (then nothing can
 * need its undo any more). A slot is a header { interval, body bytes }
 * and a body of entries { u32 page, u32 size, undo diff, padding to 8 }.
 * Order at O: pending entries; fence; the body; fence; the header; fence;
 * the runs. So a header naming k means "every undo entry of k is here";
 * a header naming anything else means no run of k reached O.
 *
 * An interval whose undo does not fit a slot (FTSVM_UNDO_LOG) is written
 * without one: its header says so, and a failure in its phase 1 is logged
 * as leaving part of it at O.
 */
#include "hlrc_int.h"
#include "common/log.h"
#include "ftsvm.h"

#include <stdlib.h>
#include <string.h>

#define UNDO_HEADER   16u
#define UNDO_ENTRY    8u
#define UNDO_NONE     UINT64_MAX   /* header bytes: this interval has no undo here */

static size_t undo_slot_bytes(void)
{
    return (hlrc.undo_bytes / HLRC_UNDO_SLOTS) & ~(size_t)7;
}

/* offset of writer's slot for interval k in a node's undo region */
static uint64_t undo_slot_offset(int writer, uint64_t k)
{
    return (uint64_t)writer * hlrc.undo_bytes + (k % HLRC_UNDO_SLOTS) * undo_slot_bytes();
}

static size_t undo_align(size_t n)
{
    return (n + 7u) & ~(size_t)7;
}

/* The node holding the other copy of `page` when this node is one of its
 * homes, else -1. */
static int undo_other_home(uint32_t page)
{
    int primary = hlrc_home(page, REPLICA_PRIMARY);
    int secondary = hlrc_home(page, REPLICA_SECONDARY);

    if (primary == hlrc.node) {
        return secondary;
    }
    return (secondary == hlrc.node) ? primary : -1;
}

/* The undo of one page's diff: the same runs, holding the twin's bytes. */
static void undo_encode(const page_diff_t *diff, uint8_t *out)
{
    const uint8_t *twin = hlrc.twins + (size_t)diff->page * HLRC_PAGE_SIZE;
    hlrc_run_t run = {0};
    size_t pos = 0;

    memcpy(out, diff->bytes, diff->size);
    while (hlrc_diff_next(out, diff->size, &pos, &run) == 1) {
        memcpy((uint8_t *)run.bytes, twin + run.offset, run.length);
    }
}

/* Build the body for node `other` in body[]; its size, or 0 when it does
 * not fit a slot. */
static size_t undo_body(uint64_t k, const page_diff_t *diffs, size_t npages, int other,
                        uint8_t *body)
{
    size_t i, used = 0, room = undo_slot_bytes() - UNDO_HEADER;
    uint32_t entry[2];

    for (i = 0; i < npages; i++) {
        if (undo_other_home(diffs[i].page) != other) {
            continue;
        }
        if (used + UNDO_ENTRY + undo_align(diffs[i].size) > room) {
            ftsvm_warn("interval %llu: its undo for node %d exceeds a slot of "
                       "FTSVM_UNDO_LOG (%zu bytes); a failure of this node in its phase 1 "
                       "would leave part of it there", (unsigned long long)k, other,
                       undo_slot_bytes());
            return 0;
        }
        entry[0] = diffs[i].page;
        entry[1] = diffs[i].size;
        memcpy(body + used, entry, sizeof(entry));
        undo_encode(&diffs[i], body + used + UNDO_ENTRY);
        used += UNDO_ENTRY + undo_align(diffs[i].size);
    }
    return used;
}

int hlrc_undo_write(uint64_t k, const page_diff_t *diffs, size_t npages)
{
    uint8_t *body = NULL;
    uint64_t *headers = NULL;
    int other, status = FTSVM_OK, any = 0;
    size_t i, used;

    if (!hlrc.replicated) {
        return FTSVM_OK;
    }
    headers = calloc((size_t)hlrc.nodes, 2u * sizeof(uint64_t));
    body = malloc(undo_slot_bytes());
    if (headers == NULL || body == NULL) {
        free(headers);
        free(body);
        ftsvm_error("cannot allocate the undo of interval %llu", (unsigned long long)k);
        return FTSVM_ENOMEM;
    }
    for (i = 0; i < npages; i++) {
        other = undo_other_home(diffs[i].page);
        if (other >= 0 && other != hlrc.node && headers[2 * other] == 0) {
            headers[2 * other] = k;   /* this node needs a slot there */
        }
    }
    for (other = 0; other < hlrc.nodes && status == FTSVM_OK; other++) {
        if (headers[2 * other] == 0) {
            continue;
        }
        any = 1;
        used = undo_body(k, diffs, npages, other, body);
        headers[2 * other + 1] = (used > 0) ? used : UNDO_NONE;
        if (used > 0) {
            status = rdma_put(hlrc.rdma, other, HLRC_REGION_UNDO,
                              undo_slot_offset(hlrc.node, k) + UNDO_HEADER, body, used);
        }
    }
    /* the whole body before the header that vouches for it */
    if (status == FTSVM_OK && any) {
        status = rdma_fence(hlrc.rdma);
    }
    for (other = 0; other < hlrc.nodes && status == FTSVM_OK; other++) {
        if (headers[2 * other] != 0) {
            status = rdma_put(hlrc.rdma, other, HLRC_REGION_UNDO, undo_slot_offset(hlrc.node, k),
                              &headers[2 * other], UNDO_HEADER);
        }
    }
    /* the header before any run it protects */
    if (status == FTSVM_OK && any) {
        status = rdma_fence(hlrc.rdma);
    }
    free(body);
    free(headers);
    return status;
}

int hlrc_undo_apply(int writer, size_t page, uint64_t k, uint8_t *copy)
{
    const uint8_t *slot = (const uint8_t *)rdma_region_addr(hlrc.rdma, HLRC_REGION_UNDO) +
                          undo_slot_offset(writer, k);
    size_t room = undo_slot_bytes() - UNDO_HEADER, pos = 0, size;
    uint64_t header[2];
    uint32_t entry[2];

    memcpy(header, slot, sizeof(header));
    if (header[0] != k) {
        return HLRC_UNDO_UNTOUCHED;
    }
    if (header[1] == UNDO_NONE || header[1] > room) {
        return HLRC_UNDO_MISSING;
    }
    while (pos + UNDO_ENTRY <= header[1]) {
        memcpy(entry, slot + UNDO_HEADER + pos, sizeof(entry));
        size = entry[1];
        if (pos + UNDO_ENTRY + size > header[1]) {
            break;
        }
        if (entry[0] == page) {
            return hlrc_diff_apply(copy, slot + UNDO_HEADER + pos + UNDO_ENTRY, size) == FTSVM_OK
                       ? HLRC_UNDO_DONE
                       : HLRC_UNDO_MISSING;
        }
        pos += UNDO_ENTRY + undo_align(size);
    }
    return HLRC_UNDO_MISSING;
}

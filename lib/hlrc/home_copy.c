/*
 * The pages' part of re-replication (lib/replica/rereplicate.c): the
 * surviving home of a placement row copies its home copies of the row, with
 * their applied / pending words, into the new secondary's store, at the
 * slot the plan gave it there, with one-sided writes.
 *
 * The copy runs while releases on the row wait (rereplicate.c), so this
 * node's copies of the row do not change under it: no writer writes them
 * and no pending entry is set. A block whose words are all zero was never
 * written: the new slot is fresh (zero) too, so it is skipped. The caller
 * flushes before the row names its new home.
 */
#include "hlrc_int.h"
#include "common/log.h"
#include "ftsvm.h"

static int block_written(const uint64_t *meta, size_t words)
{
    size_t i;

    for (i = 0; i < words; i++) {
        if (__atomic_load_n(&meta[i], __ATOMIC_ACQUIRE) != 0) {
            return 1;
        }
    }
    return 0;
}

/* one run of consecutive slots: the writer's mapping of the target made in
 * one call, then the pages and their words each in one write */
static int copy_run(const replica_copy_t *copy, size_t from, size_t to, size_t pages)
{
    size_t words = 2u * (size_t)hlrc.nodes;   /* a page's words */
    uint64_t page_off = to * HLRC_PAGE_SIZE, meta_off = to * words * 8u;
    int status;

    status = rdma_prefault(hlrc.rdma, copy->to, HLRC_REGION_HOME, page_off,
                           pages * HLRC_PAGE_SIZE);
    if (status == FTSVM_OK) {
        status = rdma_prefault(hlrc.rdma, copy->to, HLRC_REGION_META, meta_off,
                               pages * words * 8u);
    }
    /* page and words in any order: nobody reads the new home's copy before
     * the row names it, after the caller's flush */
    if (status == FTSVM_OK) {
        status = rdma_put(hlrc.rdma, copy->to, HLRC_REGION_HOME, page_off, hlrc_copy_at(from),
                          pages * HLRC_PAGE_SIZE);
    }
    if (status == FTSVM_OK) {
        status = rdma_put(hlrc.rdma, copy->to, HLRC_REGION_META, meta_off, hlrc_meta_at(from),
                          pages * words * 8u);
    }
    return status;
}

/* A row's blocks are consecutive in both stores (replica_slot_index): the
 * written ones are copied as runs of at most HOME_COPY_RUN bytes of pages,
 * so the copy is a few large writes rather than two per page. */
#define HOME_COPY_RUN (4u << 20)

int hlrc_home_copy_row(const replica_copy_t *copy, uint64_t *bytes_p)
{
    size_t words = 2u * (size_t)hlrc.nodes * hlrc.home_block;   /* a block's words */
    size_t nblocks = (hlrc.npages + hlrc.home_block - 1) / hlrc.home_block, block;
    size_t run_max = HOME_COPY_RUN / ((size_t)hlrc.home_block * HLRC_PAGE_SIZE);
    size_t run = 0, first = 0;   /* the run: `run` written blocks from block `first` */
    uint64_t bytes = 0;
    int status = FTSVM_OK;

    run_max = run_max ? run_max : 1;
    for (block = copy->row; status == FTSVM_OK; block += replica_placement.period) {
        int written = block < nblocks &&
            block_written(hlrc_meta_at(replica_slot_index(block, copy->from_slot) *
                                       hlrc.home_block), words);

        if (run > 0 && (!written || run == run_max)) {   /* the run ends */
            status = copy_run(copy, replica_slot_index(first, copy->from_slot) * hlrc.home_block,
                              replica_slot_index(first, copy->to_slot) * hlrc.home_block,
                              run * hlrc.home_block);
            bytes += run * ((size_t)hlrc.home_block * HLRC_PAGE_SIZE + words * 8u);
            run = 0;
        }
        if (block >= nblocks) {
            break;
        }
        if (written) {
            first = run ? first : block;
            run++;
        }
    }
    *bytes_p += bytes;
    return status;
}

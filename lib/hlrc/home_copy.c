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

int hlrc_home_copy_row(const replica_copy_t *copy, uint64_t *bytes_p)
{
    size_t words = 2u * (size_t)hlrc.nodes * hlrc.home_block;   /* a block's words */
    size_t nblocks = (hlrc.npages + hlrc.home_block - 1) / hlrc.home_block, block;
    size_t from, to;
    uint64_t bytes = 0;
    int status = FTSVM_OK;

    for (block = copy->row; block < nblocks && status == FTSVM_OK;
         block += replica_placement.period) {
        from = replica_slot_index(block, copy->from_slot) * hlrc.home_block;
        to   = replica_slot_index(block, copy->to_slot) * hlrc.home_block;
        if (!block_written(hlrc_meta_at(from), words)) {
            continue;
        }
        /* page and words in any order: nobody reads the new home's copy
         * before the row names it, after the caller's flush */
        status = rdma_put(hlrc.rdma, copy->to, HLRC_REGION_HOME, to * HLRC_PAGE_SIZE,
                          hlrc_copy_at(from), (size_t)hlrc.home_block * HLRC_PAGE_SIZE);
        if (status == FTSVM_OK) {
            status = rdma_put(hlrc.rdma, copy->to, HLRC_REGION_META, to * 2u *
                              (uint64_t)hlrc.nodes * 8u, hlrc_meta_at(from), words * 8u);
        }
        bytes += (size_t)hlrc.home_block * HLRC_PAGE_SIZE + words * 8u;
    }
    *bytes_p += bytes;
    return status;
}

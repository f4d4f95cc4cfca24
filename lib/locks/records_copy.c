/*
 * The locks' part of re-replication (lib/replica/rereplicate.c): the
 * surviving home of a placement row copies the queue records of the row's
 * locks (tail and second-to-last) and the vts releasers saved there to the
 * row's new secondary, with one-sided writes; when the row names its new
 * home, that node takes the records into its lock states, as if it had
 * mirrored every request so far, so that it reports the lock as a home at
 * the next view change and a lock check finds both homes alike.
 *
 * No request of a lock of the row is served during the copy: requesters
 * wait (locks_acquire) until the row has its new secondary, and the queue
 * rebuild of the view change that planned the copy ran before it began.
 * So the records do not change under the copy. A saved vt may (a holder's
 * local release saves it): then the new home holds an older one, which is
 * never more than the truth, and the next save goes to a home as always.
 */
#include "locks_int.h"
#include "common/log.h"
#include "ftsvm.h"

#include <stdlib.h>
#include <string.h>

static uint64_t *region_words(uint64_t offset)
{
    return (uint64_t *)((uint8_t *)rdma_region_addr(locks.rdma, locks.region) + offset);
}

int locks_copy_records(const replica_copy_t *copy, uint64_t *bytes_p)
{
    size_t vt_words = 2u + (size_t)locks.nodes, slot;
    uint64_t rec[RECORD_WORDS], *vt, tag;
    int status = FTSVM_OK, has_vt;
    uint32_t id;

    vt = malloc(vt_words * sizeof(uint64_t));
    if (vt == NULL) {
        return FTSVM_ENOMEM;
    }
    for (slot = 0; slot < LOCKS_SLOTS && status == FTSVM_OK; slot++) {
        pthread_mutex_lock(&locks.mutex);
        memcpy(rec, region_words(locks_record_offset((uint32_t)slot)), sizeof(rec));
        pthread_mutex_unlock(&locks.mutex);
        tag = rec[0];
        id = (uint32_t)(tag - 1u);
        if (tag == 0 || id > LOCKS_MAX_ID || id % replica_placement.period != copy->row) {
            continue;
        }
        memcpy(vt, region_words(locks_vt_offset(id)), vt_words * sizeof(uint64_t));
        has_vt = (vt[0] == tag);
        /* out of the mutex: a put may wait for the protocol thread */
        status = rdma_put(locks.rdma, copy->to, locks.region, locks_record_offset(id), rec,
                          sizeof(rec));
        if (status == FTSVM_OK && has_vt) {
            status = rdma_put(locks.rdma, copy->to, locks.region, locks_vt_offset(id), vt,
                              vt_words * sizeof(uint64_t));
        }
        *bytes_p += sizeof(rec) + (has_vt ? vt_words * sizeof(uint64_t) : 0);
    }
    free(vt);
    return status;
}

void locks_rows_changed(const replica_copy_t *copy)
{
    const uint64_t *rec;
    lock_state_t *st;
    size_t slot;
    uint32_t id;

    pthread_mutex_lock(&locks.mutex);
    for (slot = 0; copy != NULL && copy->to == locks.node && slot < LOCKS_SLOTS; slot++) {
        rec = region_words(locks_record_offset((uint32_t)slot));
        id = (uint32_t)(rec[0] - 1u);
        if (rec[0] == 0 || id > LOCKS_MAX_ID || id % replica_placement.period != copy->row) {
            continue;
        }
        st = locks_state(id);
        if (st == NULL) {
            ftsvm_error("out of memory for lock %u", id);
            break;
        }
        st->home_tail   = (int)rec[1] - 1;
        st->home_second = (int)rec[2] - 1;
    }
    /* requesters that waited for the copy (or for a copy now abandoned) */
    pthread_cond_broadcast(&locks.thaw);
    pthread_mutex_unlock(&locks.mutex);
}

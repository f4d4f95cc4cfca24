/*
 * The release markers (DESIGN.md 5.3): lastRelease(P) and nextRelease(P) at
 * P's backup node. nextRelease = k says every interval of P up to k has its
 * diffs at every primary (k is durable); lastRelease = k says they are at
 * every secondary too. The release writes them in interval order (the
 * caller orders concurrent releases), so a marker never names an interval
 * whose predecessor is still running.
 */
#include "replica_int.h"
#include "common/log.h"
#include "ftsvm.h"

#include <pthread.h>

static uint64_t marker_offset(int node, int which)
{
    return ((uint64_t)node * 2u + (uint64_t)which) * sizeof(uint64_t);
}

int replica_backup(int node)
{
    int b, i;

    if (node < 0 || node >= replica.nodes) {
        return -1;
    }
    b = replica_placement.backup[node];
    /* the next node after it still in the view */
    for (i = 0; b >= 0 && i < replica.nodes && replica_any_gone &&
                replica_gone[b]; i++) {
        b = (b + 1) % replica.nodes;
    }
    return (b == node) ? -1 : b;
}

int replica_marker_put(int which, uint64_t interval)
{
    int backup = replica_backup(replica.node), status;

    if (backup < 0) {
        return FTSVM_OK;   /* one node: nobody to back it up */
    }
    pthread_mutex_lock(&replica.marker_lock);
    status = rdma_put(replica.rdma, backup, replica.markers_region,
                      marker_offset(replica.node, which), &interval, sizeof(interval));
    if (status == FTSVM_OK && interval > replica.marker[which]) {
        replica.marker[which] = interval;
    }
    pthread_mutex_unlock(&replica.marker_lock);
    return status;
}

int replica_markers_resave(uint64_t last, uint64_t next)
{
    int backup = replica_backup(replica.node), status;
    uint64_t words[2];

    if (backup < 0) {
        return FTSVM_OK;
    }
    pthread_mutex_lock(&replica.marker_lock);
    words[REPLICA_LAST_RELEASE] = (last > replica.marker[0]) ? last : replica.marker[0];
    words[REPLICA_NEXT_RELEASE] = (next > replica.marker[1]) ? next : replica.marker[1];
    status = rdma_put(replica.rdma, backup, replica.markers_region,
                      marker_offset(replica.node, REPLICA_LAST_RELEASE), words, sizeof(words));
    if (status == FTSVM_OK) {
        status = rdma_flush(replica.rdma, backup);
    }
    pthread_mutex_unlock(&replica.marker_lock);
    return status;
}

int replica_markers_read(int node, uint64_t *last_p, uint64_t *next_p)
{
    int backup = replica_backup(node);
    uint64_t words[2] = { 0, 0 };
    const uint64_t *local;
    int status = FTSVM_OK;

    if (node < 0 || node >= replica.nodes || backup < 0) {
        return FTSVM_EINVAL;
    }
    if (backup == replica.node) {
        local = (const uint64_t *)((const uint8_t *)rdma_region_addr(replica.rdma,
                                                                     replica.markers_region) +
                                   marker_offset(node, REPLICA_LAST_RELEASE));
        words[0] = __atomic_load_n(&local[0], __ATOMIC_ACQUIRE);
        words[1] = __atomic_load_n(&local[1], __ATOMIC_ACQUIRE);
    } else {
        status = rdma_get(replica.rdma, backup, replica.markers_region,
                          marker_offset(node, REPLICA_LAST_RELEASE), words, sizeof(words));
    }
    if (status == FTSVM_OK) {
        *last_p = words[REPLICA_LAST_RELEASE];
        *next_p = words[REPLICA_NEXT_RELEASE];
    }
    return status;
}

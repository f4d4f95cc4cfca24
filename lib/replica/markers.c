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

static uint64_t marker_offset(int node, int which)
{
    return ((uint64_t)node * 2u + (uint64_t)which) * sizeof(uint64_t);
}

int replica_marker_put(int which, uint64_t interval)
{
    int backup = replica_placement.backup[replica.node];

    if (backup < 0) {
        return FTSVM_OK;   /* one node: nobody to back it up */
    }
    return rdma_put(replica.rdma, backup, replica.markers_region,
                    marker_offset(replica.node, which), &interval, sizeof(interval));
}

int replica_markers_read(int node, uint64_t *last_p, uint64_t *next_p)
{
    int backup = replica_placement.backup[node];
    uint64_t words[2] = { 0, 0 };
    int status;

    if (node < 0 || node >= replica.nodes || backup < 0) {
        return FTSVM_EINVAL;
    }
    status = rdma_get(replica.rdma, backup, replica.markers_region,
                      marker_offset(node, REPLICA_LAST_RELEASE), words, sizeof(words));
    if (status == FTSVM_OK) {
        *last_p = words[REPLICA_LAST_RELEASE];
        *next_p = words[REPLICA_NEXT_RELEASE];
    }
    return status;
}

/* Start and stop of the replica module. */
#include "replica_int.h"
#include "common/log.h"
#include "ftsvm.h"

#include <string.h>

replica_t replica;

int replica_init(const ftsvm_config_t *config, int node, int nodes, size_t nblocks)
{
    int status;

    memset(&replica, 0, sizeof(replica));
    replica.node  = node;
    replica.nodes = nodes;
    status = replica_stop_parse(config->stop_at, nodes, &replica.stop);
    if (status != FTSVM_OK) {
        return status;
    }
    status = replica_placement_build(&replica_placement, (int)config->replicas, nodes,
                                     nblocks);
    if (status != FTSVM_OK) {
        return status;
    }
    if (replica_placement.replicas < (int)config->replicas) {
        ftsvm_info("a 1-node job keeps one home per page and lock (FTSVM_REPLICAS=%u needs "
                   "%u nodes)", config->replicas, config->replicas);
    }
    return FTSVM_OK;
}

/* markers: per node P, lastRelease then nextRelease, at P's backup */
void replica_region_sizes(int nodes, size_t sizes[REPLICA_NREGIONS])
{
    sizes[0] = (size_t)nodes * 2u * sizeof(uint64_t);
}

int replica_start(rdma_ctx_t *rdma, unsigned region)
{
    replica.rdma = rdma;
    replica.markers_region = region;
    return FTSVM_OK;
}

void replica_fini(void)
{
    replica_placement_free(&replica_placement);
    memset(&replica, 0, sizeof(replica));
}

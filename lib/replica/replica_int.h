/* What the files of lib/replica share. */
#ifndef FTSVM_REPLICA_INT_H
#define FTSVM_REPLICA_INT_H

#include "replica.h"

typedef struct replica {
    rdma_ctx_t     *rdma;
    unsigned        markers_region;
    int             node, nodes;
    replica_stop_t  stop;
    int             stopped;     /* the stop point fired (it fires once) */
} replica_t;

extern replica_t replica;

#endif

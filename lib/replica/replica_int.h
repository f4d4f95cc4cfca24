/* What the files of lib/replica share. */
#ifndef FTSVM_REPLICA_INT_H
#define FTSVM_REPLICA_INT_H

#include "replica.h"

#include <pthread.h>

typedef struct replica {
    rdma_ctx_t     *rdma;
    unsigned        markers_region;
    int             node, nodes;
    replica_stop_t  stop;
    int             stopped;     /* the stop point fired (it fires once) */
    replica_stop_t  fault;       /* FTSVM_FAULT */
    _Atomic unsigned fault_hits; /* times this node reached the fault point */
    pthread_mutex_t marker_lock; /* marker writes, and their move to a new backup */
    uint64_t        marker[2];   /* the highest value written of each marker */
    uint64_t       *backup_seen; /* nodes x 2: markers held here, last looked at */
} replica_t;

extern replica_t replica;

/* rereplicate.c */
int  replica_rereplicate_init(void);
void replica_rereplicate_abandon(void);
void replica_rereplicate_fini(void);
/* per node: its next fresh headroom slot of a period (plans hand them out in
 * order, rows_agree.c makes every survivor's the same) */
extern uint16_t *replica_next_slot;

#endif

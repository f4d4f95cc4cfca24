/* Start and stop of the replica module. */
#include "replica_int.h"
#include "common/log.h"
#include "failure/failure.h"
#include "ftsvm.h"

#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

replica_t replica;
_Atomic int replica_any_gone;
uint8_t    *replica_gone;

static int removed_now(const failure_change_t *change, int node)
{
    int i;

    for (i = 0; change->removed_now[i] >= 0; i++) {
        if (change->removed_now[i] == node) {
            return 1;
        }
    }
    return 0;
}

/* The rows this view change left with no home: a second failure that came
 * before their new secondary (rereplicate.c). Their pages and locks are
 * lost; said once here by every survivor, naming the rows, and again by
 * each release, fetch or lock request that touches one. */
static void report_lost_rows(const failure_change_t *change)
{
    const replica_placement_t *p = &replica_placement;
    char list[160];
    size_t r, lost = 0, len = 0;

    for (r = 0; r < p->period && p->replicas == 2; r++) {
        replica_row_t row = replica_row_read(p, r);

        if (row.home[0] < 0 || row.home[1] < 0 || !replica_gone[row.home[0]] ||
            !replica_gone[row.home[1]] || (!removed_now(change, row.home[0]) &&
                                           !removed_now(change, row.home[1]))) {
            continue;   /* a home left, or lost before this view */
        }
        if (lost++ < 8 && len < sizeof(list)) {
            len += (size_t)snprintf(list + len, sizeof(list) - len, "%s%zu (nodes %d and %d)",
                                    lost > 1 ? ", " : "", r, row.home[0], row.home[1]);
        }
    }
    if (lost > 0) {
        ftsvm_error("view %llu: %zu placement rows have no home left, their data is lost "
                    "(a failure before redundancy was restored): row %s%s",
                    (unsigned long long)change->view, lost, list, lost > 8 ? ", ..." : "");
    }
}

/* Recovery step 0: the placement forgets the removed nodes (a block whose
 * primary left is served by its secondary, in its own slot). */
static int replica_recover(void *arg, const failure_change_t *change)
{
    int i;

    (void)arg;
    for (i = 0; change->removed_now[i] >= 0; i++) {
        __atomic_store_n(&replica_gone[change->removed_now[i]], 1, __ATOMIC_RELEASE);
        atomic_store(&replica_any_gone, 1);
    }
    replica_rereplicate_abandon();   /* the next view's plan starts it again */
    report_lost_rows(change);
    return FTSVM_OK;
}

int replica_init(const ftsvm_config_t *config, int node, int nodes, size_t nblocks)
{
    int status;

    memset(&replica, 0, sizeof(replica));
    replica.node  = node;
    replica.nodes = nodes;
    status = replica_stop_parse(config->stop_at, nodes, &replica.stop);
    if (status == FTSVM_OK) {
        status = replica_fault_parse(config->fault, nodes, &replica.fault);
    }
    if (status != FTSVM_OK) {
        return status;
    }
    pthread_mutex_init(&replica.marker_lock, NULL);
    replica_gone = calloc((size_t)nodes, 1);
    if (replica_gone == NULL) {
        ftsvm_error("cannot allocate the placement's membership table");
        return FTSVM_ENOMEM;
    }
    atomic_store(&replica_any_gone, 0);
    status = replica_placement_build(&replica_placement, (int)config->replicas, nodes,
                                     (int)config->spares, nblocks);
    if (status != FTSVM_OK) {
        return status;
    }
    replica_placement_headroom(&replica_placement, config->home_headroom);
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

/* FTSVM_FAULT=backup: die when a marker held here for another node moves */
static void replica_watch_markers(void)
{
    const uint64_t *words = rdma_region_addr(replica.rdma, replica.markers_region);
    size_t i, n = 2u * (size_t)replica.nodes;
    int moved = 0;

    for (i = 0; i < n; i++) {
        uint64_t v = __atomic_load_n(&words[i], __ATOMIC_ACQUIRE);

        moved |= (v != replica.backup_seen[i]);
        replica.backup_seen[i] = v;
    }
    if (moved) {
        replica_fault_point(REPLICA_FAULT_BACKUP);
    }
}

int replica_start(rdma_ctx_t *rdma, unsigned region)
{
    int status;

    replica.rdma = rdma;
    replica.markers_region = region;
    if (replica_fault_armed(REPLICA_FAULT_BACKUP)) {
        replica.backup_seen = calloc(2u * (size_t)replica.nodes, sizeof(uint64_t));
        if (replica.backup_seen != NULL) {
            failure_on_beat(replica_watch_markers);
        }
    }
    status = failure_on_recovery(0, replica_recover, NULL);
    return (status == FTSVM_OK) ? replica_rereplicate_init() : status;
}

void replica_fini(void)
{
    replica_rereplicate_fini();
    replica_placement_free(&replica_placement);
    atomic_store(&replica_any_gone, 0);
    free(replica_gone);
    replica_gone = NULL;
    free(replica.backup_seen);
    memset(&replica, 0, sizeof(replica));
}

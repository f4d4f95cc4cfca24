/*
 * Placement of the two homes (DESIGN.md 5.1).
 *
 * Primary of block b: b mod n. Secondary: the primary plus an offset d in
 * [1, D] that steps with b / n, D = min(n - 1, 64). Over a period of n x D
 * blocks every node is primary of D blocks and secondary of D blocks, so
 * both the pages and the diff traffic of the second copy are spread evenly,
 * and the table stays small (n x D rows) however large the region is.
 * FTSVM_REPLICAS=1 (or a 1-node job) keeps one home, b mod n, exactly the
 * placement of the single-home protocol.
 *
 * The markers of node P live at its backup, the next node after P.
 *
 * Spares (FTSVM_SPARES, the last nodes of the job) home nothing at start:
 * the table above is built over the application nodes 0..A-1 alone, and a
 * spare's store is all headroom (period_stride free slots, at least the
 * period_slots a failed node homed per period). Re-replication gives a new
 * secondary to the member that homes the fewest rows, so after a failure
 * the spare, homing none, takes the failed node's rows (its share, not
 * more: the survivors' loads are equal and the spare's reaches theirs with
 * the last of them). A spare replaces the failed node as a home, which is
 * the directory migration of seed 001 done by the copy rather than by a
 * hand-over: the rows it takes still have their surviving home as the
 * primary, so memory and diff traffic per node are as before the failure
 * (both homes of a row take every diff), and the primaries' fetches are
 * spread over the survivors the way the failed node's were over it and
 * them.
 *
 * Headroom (FTSVM_HOME_HEADROOM): every home store has period_stride slots
 * per period, period_slots of them used at start; the rest take the new
 * secondaries re-replication puts on a node after a view change
 * (rereplicate.c). A store is laid out slot-major (replica_slot_index):
 * slot s of every period, then slot s+1, so the blocks of one row are one
 * run in the store and a copy of the row is one write, into memory the
 * writer can map in one call (rdma_prefault), where a period-major layout
 * would scatter them a stride apart and make each page a fault of its own. The store is sized once, before the transport registers
 * it, because the transport hands out its keys only at start: growing it
 * would mean registering new memory and sending its keys at runtime, which
 * lib/rdma does not offer. Untouched slots cost address space, not memory
 * (they are touched only where a copy lands), except where the transport
 * pins its registrations (verbs).
 */
#include "replica.h"
#include "common/log.h"
#include "ftsvm.h"

#include <stdlib.h>
#include <string.h>

#define REPLICA_MAX_OFFSETS 64

replica_placement_t replica_placement;

int replica_placement_build(replica_placement_t *placement, int replicas, int nodes,
                            int spares, size_t nblocks)
{
    size_t n = (size_t)(nodes - spares), spread, r, full, tail, *count = NULL, most = 0;
    replica_placement_t p = { 0 };
    int which, node, apps = nodes - spares;

    if (nodes < 1 || nodes > REPLICA_MAX_NODES || replicas < 1 || replicas > 2 ||
        spares < 0 || apps < 1 || (spares > 0 && (apps < 2 || replicas < 2)) || nblocks == 0) {
        ftsvm_error("placement of %zu blocks with %d replicas over %d nodes (%d of them "
                    "spares) is not possible", nblocks, replicas, nodes, spares);
        return FTSVM_EINVAL;
    }
    p.replicas = (apps == 1) ? 1 : replicas;
    p.nodes    = nodes;
    p.app_nodes = apps;
    spread     = (p.replicas == 1) ? 1 : ((n - 1 < REPLICA_MAX_OFFSETS) ? n - 1
                                                                        : REPLICA_MAX_OFFSETS);
    p.period   = n * spread;
    p.period_slots = (size_t)p.replicas * spread;
    p.period_stride = p.period_slots;
    p.periods  = (nblocks + p.period - 1) / p.period;
    p.rows   = calloc(p.period, sizeof(*p.rows));
    p.backup = calloc((size_t)nodes, sizeof(int));
    count    = calloc(n, sizeof(size_t));
    if (p.rows == NULL || p.backup == NULL || count == NULL) {
        ftsvm_error("cannot allocate a placement table of %zu rows", p.period);
        free(count);
        replica_placement_free(&p);
        return FTSVM_ENOMEM;
    }
    /* slots are numbered per node in row order, so the blocks a node homes
     * in the last, partial period are numbered first */
    full = nblocks / p.period;
    tail = nblocks % p.period;
    for (r = 0; r < p.period; r++) {
        replica_row_t *row = &p.rows[r];

        row->home[REPLICA_PRIMARY]   = (int16_t)(r % n);
        row->home[REPLICA_SECONDARY] = (p.replicas == 1) ? -1 :
            (int16_t)((r % n + 1 + (r / n) % spread) % n);
        for (which = 0; which < p.replicas; which++) {
            node = row->home[which];
            row->slot[which] = (uint16_t)count[node]++;
        }
        if (r + 1 == tail) {   /* the busiest node's share of the partial period */
            for (node = 0; node < apps; node++) {
                most = (count[node] > most) ? count[node] : most;
            }
        }
    }
    p.slots_max = full * p.period_slots + most;
    p.slots_cap = p.periods * p.period_slots;   /* slot-major: whole periods */
    for (node = 0; node < nodes; node++) {   /* a spare has no markers to keep */
        p.backup[node] = (apps == 1 || node >= apps) ? -1 : (node + 1) % apps;
    }
    free(count);
    *placement = p;
    return FTSVM_OK;
}

void replica_placement_headroom(replica_placement_t *placement, unsigned percent)
{
    size_t extra = (placement->period_slots * percent + 99u) / 100u;

    if (placement->replicas < 2 || placement->period_slots + extra > UINT16_MAX) {
        return;   /* one home: nothing is re-replicated */
    }
    placement->period_stride = placement->period_slots + extra;
    /* every period has the whole stride, the last partial one included (a
     * new secondary of one of its rows may take any slot) */
    placement->slots_cap = placement->periods * placement->period_stride;
}

void replica_placement_free(replica_placement_t *placement)
{
    free(placement->rows);
    free(placement->backup);
    memset(placement, 0, sizeof(*placement));
}

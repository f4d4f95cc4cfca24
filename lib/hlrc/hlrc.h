/*
 * lib/hlrc: home-based lazy release consistency (DESIGN.md sections 3, 4):
 * pages, access faults, twins, diffs, intervals, write notices, vector
 * timestamps, acquire/release, barriers and shared allocation.
 */
#ifndef FTSVM_HLRC_H
#define FTSVM_HLRC_H

#include "runtime/config.h"

#include <stddef.h>
#include <stdint.h>

/* Transport regions the module needs, known once the job size is. */
#define HLRC_NREGIONS 5
/* After replica_init (the placement sizes the home store). */
int  hlrc_region_sizes(const ftsvm_config_t *config, int nodes, size_t sizes[HLRC_NREGIONS]);
/* nblocks for replica_init: blocks of FTSVM_HOME_BLOCK pages in the region */
size_t hlrc_blocks(const ftsvm_config_t *config);

/* After the transport is up with those regions as regions 0..3. */
int  hlrc_init(void);
void hlrc_fini(void);

void *hlrc_alloc(size_t bytes);
void *hlrc_malloc(size_t bytes);
int   hlrc_free(void *p);
int   hlrc_barrier(void);
/* Eviction at a barrier (lib/api): `wants` (on the node's leader, before
 * it writes its slot in the barrier's last round) says whether this node
 * leaves after this barrier; every node then learns it, before it returns
 * from the barrier, through `seen` (the leaving node itself too); on the
 * leaving node the leader calls `go`, which returns only if the node
 * stays after all. */
void  hlrc_barrier_on_leave(int (*wants)(void), void (*seen)(int node, uint64_t round),
                            void (*go)(void));

/* For the locks: close the node's interval and propagate its diffs (returns
 * when every earlier interval of the node is at the homes); merge a lock's
 * vector timestamp into the node's, invalidating what it makes stale; copy
 * the node's vector timestamp (nodes entries). */
int  hlrc_release(void);
int  hlrc_acquire(const uint64_t *vt);
void hlrc_vt_copy(uint64_t *vt);

/* FTSVM_CHECK_HOMES: compare both homes of every page this node is primary
 * of; call only when no node is releasing (between two barriers).
 * FTSVM_EPROTO when they differ (logged per page). */
int  hlrc_check_homes(void);
int  hlrc_checking_homes(void);
/* A module above (the locks) checks its own homes at the same points. */
void hlrc_on_check_homes(int (*check)(void));

#endif

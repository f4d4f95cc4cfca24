/*
 * lib/locks: replicated queue locks (DESIGN.md section 6). Each lock has a
 * primary and a secondary home (the placement of lib/replica, lock id as the
 * block); FTSVM_REPLICAS=1 keeps the single-home queue lock.
 */
#ifndef FTSVM_LOCKS_H
#define FTSVM_LOCKS_H

#include <stddef.h>
#include <stdint.h>

#define LOCKS_MAX_ID ((1u << 24) - 1)

/* transport regions of the module: per node, the queue records of the locks
 * it is a home of and the vector timestamps saved there by releasers */
#define LOCKS_NREGIONS 1
void locks_region_sizes(int nodes, size_t sizes[LOCKS_NREGIONS]);

/* after the transport is up, with the module's regions from `region` on */
int  locks_init(unsigned region);
void locks_fini(void);
int  locks_acquire(unsigned lock);
int  locks_release(unsigned lock);
/* 1 while a thread of this node holds a lock other than `except`, or waits
 * for one */
int  locks_held_here(unsigned except);

/* FTSVM_CHECK_HOMES: every lock this node is primary home of has the same
 * queue record at its secondary. Call where no lock request is in flight
 * (between the rounds of a checked barrier). FTSVM_EPROTO on a difference. */
int  locks_check_homes(void);

#endif

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

/* FTSVM_CHECK_HOMES: every lock this node is primary home of has the same
 * queue record at its secondary. Call where no lock request is in flight
 * (between the rounds of a checked barrier). FTSVM_EPROTO on a difference. */
int  locks_check_homes(void);

/* ---- recovery steps (recovery.c): pure functions on recorded state, for
 * the failure issue to call; unit-tested on recorded states ---- */

/* Where a request for a lock goes: its primary home, or the secondary when
 * the primary failed (the secondary then serves as primary). -1: both gone. */
int locks_request_target(int primary, int secondary, int primary_alive, int secondary_alive);

typedef enum locks_waiter_action {
    LOCKS_KEEP_WAITING,        /* the predecessor is alive: it will hand the lock on */
    LOCKS_ASK_SECOND_TO_LAST,  /* it failed: ask the node before it to forward to us */
    LOCKS_TAKE_LOCK,           /* it failed and was first in the queue: the lock is ours */
    LOCKS_UNRECOVERABLE,       /* both predecessors failed: beyond one failure */
} locks_waiter_action_t;

/* A waiter whose predecessor (pred1, the former tail when it queued) may have
 * failed; pred2 is the node queued before pred1 (-1: pred1 was first). */
locks_waiter_action_t locks_on_predecessor_lost(int pred1, int pred2, int pred1_alive,
                                                int pred2_alive);

/* The vector timestamp a new holder uses when the last holder F failed:
 * the one F saved at its last release (tag must name the lock), with F's own
 * entry raised to nextRelease(F) (every interval of F up to it is durable,
 * and later ones, if any, only invalidate more). FTSVM_ESTATE when the
 * slot holds another lock's vt (slots are shared by lock id modulo their
 * number). */
int locks_recovered_vt(uint32_t lock, uint64_t saved_tag, const uint64_t *saved_vt, int nodes,
                       int failed, uint64_t next_release, uint64_t *vt_p);

#endif

/*
 * lib/locks: queue locks (DESIGN.md section 6), with one home per lock for
 * now; the replication issue adds the secondary home.
 */
#ifndef FTSVM_LOCKS_H
#define FTSVM_LOCKS_H

#define LOCKS_MAX_ID ((1u << 24) - 1)

int  locks_init(void);
void locks_fini(void);
int  locks_acquire(unsigned lock);
int  locks_release(unsigned lock);

#endif

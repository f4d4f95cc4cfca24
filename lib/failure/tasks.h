/* ftsvm_for (DESIGN.md section 8): a fault-tolerant parallel loop whose
 * chunks are claimed and committed inside release-consistent intervals. */
#ifndef FTSVM_TASKS_H
#define FTSVM_TASKS_H

#include <stddef.h>

/* the lock id ftsvm_for uses; user lock ids stop below it */
#define TASKS_LOCK_FIRST  ((1u << 24) - 16)

/* ftsvm_for (include/ftsvm.h). Collective: every live node calls it, from one
 * thread, in the same sequence of calls (a task table is allocated with
 * ftsvm_alloc at the first call). The chunks run on the caller and on
 * ftsvm_threads()/ftsvm_nodes() - 1 helper threads made with
 * ftsvm_thread_create and joined before the return, so the node's thread
 * slots must be free. Exactly once holds only when nothing on the node
 * releases while chunks run: fn must not take locks, enter barriers or call
 * ftsvm_for (FTSVM_ESTATE), and no other thread of the node may release
 * meanwhile. FTSVM_EINVAL: chunk 0 or fn NULL; FTSVM_ESTATE: before
 * ftsvm_init; n == 0 returns at once. */
int tasks_for(size_t n, size_t chunk, void (*fn)(size_t first, size_t count, void *arg),
              void *arg);

#endif

/* ftsvm_for and ftsvm_for_reduce (DESIGN.md section 8): fault-tolerant
 * parallel loops whose chunks are claimed and committed inside
 * release-consistent intervals, and the guard that keeps every release of
 * the node out of a running loop. */
#ifndef FTSVM_TASKS_H
#define FTSVM_TASKS_H

#include <stddef.h>

/* the lock id ftsvm_for uses; user lock ids stop below it */
#define TASKS_LOCK_FIRST  ((1u << 24) - 16)

/* largest partial result of ftsvm_for_reduce, in bytes */
#define TASKS_REDUCE_MAX  (16u * 1024)

/* ftsvm_for (include/ftsvm.h). Collective: every live node calls it, from one
 * thread, in the same sequence of calls (a task table is allocated with
 * ftsvm_alloc at the first call). The chunks run on the caller and on
 * ftsvm_threads()/ftsvm_nodes() - 1 helper threads made with
 * ftsvm_thread_create and joined before the return, so the node's thread
 * slots must be free. Exactly once holds only when nothing on the node
 * releases while chunks run, which the guard below enforces.
 * FTSVM_EINVAL: chunk 0 or fn NULL; FTSVM_ESTATE: before ftsvm_init, from a
 * chunk, or while another thread of the node runs an ftsvm_for; n == 0
 * returns at once. */
int tasks_for(size_t n, size_t chunk, void (*fn)(size_t first, size_t count, void *arg),
              void *arg);

/* ftsvm_for_reduce (include/ftsvm.h): the same loop, each chunk leaving a
 * partial result of `size` bytes in a shared slot that is committed with the
 * chunk; every node folds the slots in chunk order into `result` (which
 * holds combine's identity on entry). A slot area is allocated with
 * ftsvm_alloc at the first call. FTSVM_EINVAL also for result or combine
 * NULL, size 0 or above TASKS_REDUCE_MAX. */
int tasks_for_reduce(size_t n, size_t chunk,
                     void (*fn)(size_t first, size_t count, void *arg, void *partial),
                     void *arg, void *result, size_t size,
                     void (*combine)(void *into, const void *from, size_t size, void *arg));

/* The guard of the public calls that release, or lead to a release (lock
 * acquire and release, barrier, ftsvm_finalize). FTSVM_ESTATE, logged with
 * `call` and the reason, when the calling thread runs an ftsvm_for chunk or
 * another thread of the node runs ftsvm_for; FTSVM_OK otherwise. A call
 * entered with `releases` set counts as in flight until tasks_guard_leave:
 * an ftsvm_for lets it end before its chunks start. */
int  tasks_guard_enter(const char *call, int releases);
void tasks_guard_leave(int releases);
/* Eviction (api.c): in the loop's critical section, 1 when this node should
 * leave at this batch boundary (it then claims nothing more); after the
 * section, evict_leave_now hands over and ends the process. */
int  evict_at_batch(void);
void evict_leave_now(void) __attribute__((noreturn));
/* 1 on a thread that runs an ftsvm_for chunk (fn or combine) now */
int  tasks_in_chunk(void);

#endif

/* ftsvm_for (DESIGN.md section 8): a fault-tolerant parallel loop whose
 * chunks are claimed and committed inside release-consistent intervals. */
#ifndef FTSVM_TASKS_H
#define FTSVM_TASKS_H

#include <stddef.h>

/* the lock id ftsvm_for uses; user lock ids stop below it */
#define TASKS_LOCK_FIRST  ((1u << 24) - 16)

int tasks_for(size_t n, size_t chunk, void (*fn)(size_t first, size_t count, void *arg),
              void *arg);

#endif

/* Per-module counters, printed at finalize when FTSVM_STATS asks. A module
 * declares a static stats_group_t with its counter names and registers it
 * once; counters are plain atomics so that any thread may bump them. */
#ifndef FTSVM_COMMON_STATS_H
#define FTSVM_COMMON_STATS_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#define STATS_MAX_COUNTERS 32

typedef struct stats_group {
    const char          *module;
    size_t               count;
    const char          *names[STATS_MAX_COUNTERS];
    _Atomic uint64_t     values[STATS_MAX_COUNTERS];
    struct stats_group  *next;
} stats_group_t;

void stats_register(stats_group_t *group);
void stats_unregister(stats_group_t *group);

static inline void stats_add(stats_group_t *group, size_t counter, uint64_t n)
{
    atomic_fetch_add_explicit(&group->values[counter], n, memory_order_relaxed);
}

static inline uint64_t stats_read(const stats_group_t *group, size_t counter)
{
    return atomic_load_explicit(&group->values[counter], memory_order_relaxed);
}

/* Value of module.name over the registered groups; 0 when unknown. */
uint64_t stats_lookup(const char *module, const char *name);

/* One line per registered group, through the log at info level or above. */
void stats_print(void);

#endif

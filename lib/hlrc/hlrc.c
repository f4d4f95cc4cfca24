/* Start and stop of the hlrc module, and its counters. */
#include "hlrc_int.h"
#include "common/log.h"
#include "ftsvm.h"

#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

static const char *const stat_names[HLRC_STAT_COUNT] = {
    [HLRC_STAT_READ_FAULTS] = "read_faults",     [HLRC_STAT_WRITE_FAULTS] = "write_faults",
    [HLRC_STAT_FETCHES] = "fetches",             [HLRC_STAT_FETCH_RETRIES] = "fetch_retries",
    [HLRC_STAT_ZERO_FILLS] = "zero_fills",       [HLRC_STAT_RELEASES] = "releases",
    [HLRC_STAT_DIFFS] = "diffs",                 [HLRC_STAT_DIFF_BYTES] = "diff_bytes",
    [HLRC_STAT_NOTICES_SENT] = "notices_sent",   [HLRC_STAT_INVALIDATIONS] = "invalidations",
    [HLRC_STAT_MERGES] = "merges",               [HLRC_STAT_BARRIERS] = "barriers",
    [HLRC_STAT_SECONDARY_DIFFS] = "secondary_diffs",
    [HLRC_STAT_HOME_CHECKS] = "home_checks",
};

int hlrc_init(void)
{
    const ftsvm_runtime_t *rt = runtime_booting();
    int status;

    memset(&hlrc, 0, sizeof(hlrc));
    hlrc.rdma       = rt->rdma;
    hlrc.node       = rt->config.node;
    hlrc.nodes      = rt->config.nodes;
    hlrc.app_nodes  = runtime_app_nodes(&rt->config);
    hlrc.ring_bytes = rt->config.notice_log;
    hlrc.interval   = 1;
    hlrc.replicated  = (replica_count() == 2);
    hlrc.check_homes = rt->config.check_homes;
    pthread_mutex_init(&hlrc.close_lock, NULL);
    pthread_mutex_init(&hlrc.prop_lock, NULL);
    pthread_cond_init(&hlrc.prop_cond, NULL);
    pthread_mutex_init(&hlrc.vt_lock, NULL);
    atomic_flag_clear(&hlrc.update_lock);

    status = hlrc_region_map(&rt->config);
    if (status != FTSVM_OK) {
        return status;
    }
    hlrc.vt = calloc((size_t)hlrc.nodes, sizeof(uint64_t));
    hlrc.updates = mmap(NULL, hlrc.npages * sizeof(uint32_t), PROT_READ | PROT_WRITE,
                        MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (hlrc.vt == NULL || hlrc.updates == MAP_FAILED) {
        hlrc.updates = NULL;
        ftsvm_error("cannot allocate the interval tables");
        status = FTSVM_ENOMEM;
        goto err;
    }
    status = hlrc_notices_init();
    if (status == FTSVM_OK) {
        status = hlrc_alloc_init();
    }
    if (status == FTSVM_OK) {
        status = hlrc_barrier_init();
    }
    if (status == FTSVM_OK) {
        status = hlrc_recover_init();
    }
    if (status == FTSVM_OK && hlrc.replicated) {
        status = replica_on_copy(hlrc_home_copy_row, NULL);
    }
    if (status == FTSVM_OK) {
        status = hlrc_fault_install();
    }
    if (status == FTSVM_OK && hlrc.nodes == 1) {
        status = hlrc_region_open_all();
    }
    if (status != FTSVM_OK) {
        goto err;
    }
    hlrc.stats.module = "hlrc";
    hlrc.stats.count  = HLRC_STAT_COUNT;
    memcpy(hlrc.stats.names, stat_names, sizeof(stat_names));
    stats_register(&hlrc.stats);
    return FTSVM_OK;

err:
    hlrc_fini();
    return status;
}

void hlrc_fini(void)
{
    hlrc_fault_remove();
    if (hlrc.stats.module != NULL) {
        stats_unregister(&hlrc.stats);
        hlrc.stats.module = NULL;
    }
    runtime_on_thread_exit(NULL);
    if (hlrc.notices != NULL) {
        hlrc_notices_fini();
    }
    hlrc_alloc_fini();
    if (hlrc.updates != NULL) {
        munmap(hlrc.updates, hlrc.npages * sizeof(uint32_t));
    }
    free(hlrc.vt);
    hlrc_region_unmap();
    memset(&hlrc, 0, sizeof(hlrc));
}

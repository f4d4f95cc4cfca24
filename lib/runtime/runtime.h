/* The runtime of one node: configuration, bootstrap and transport, set up
 * by ftsvm_init. For the library's upper modules, tests and benchmarks. */
#ifndef FTSVM_RUNTIME_H
#define FTSVM_RUNTIME_H

#include "bootstrap.h"
#include "config.h"
#include "rdma/rdma.h"

#include <stdint.h>

/* Where a node's process runs, exchanged at start-up so that a survivor can
 * tell a removed peer on its own host and pid namespace, and stop it for
 * good (lib/failure/fence.c). Fields it could not read are 0 / "". */
typedef struct runtime_process {
    char     boot_id[40];   /* /proc/sys/kernel/random/boot_id: this boot of this host */
    uint64_t pid_ns;        /* inode of /proc/self/ns/pid */
    uint64_t start_time;    /* /proc/self/stat field 22: clock ticks after boot */
    int32_t  pid;           /* in that pid namespace */
    int32_t  pad;
} runtime_process_t;

typedef struct ftsvm_runtime {
    ftsvm_config_t     config;
    bootstrap_t       *boot;
    rdma_ctx_t        *rdma;
    runtime_process_t *processes;   /* per node, from runtime_boot on */
    unsigned           exchanges;   /* the transport's start-up exchanges so far (FTSVM_FAULT) */
} ftsvm_runtime_t;

/* NULL before ftsvm_init and after ftsvm_finalize. */
ftsvm_runtime_t *ftsvm_runtime(void);

/* Spares (FTSVM_SPARES) are the job's last nodes: ids app_nodes..nodes-1.
 * They are homes like any node but run no application code, so whatever
 * the application's threads take part in (barriers, write notices, arenas,
 * loops, ids) spans the application nodes 0..app_nodes-1 only. */
static inline int runtime_app_nodes(const ftsvm_config_t *config)
{
    return config->nodes - (int)config->spares;
}

static inline int runtime_is_spare(const ftsvm_config_t *config)
{
    return config->node >= runtime_app_nodes(config);
}

/* rdma_exchange_fn_t over the bootstrap (arg: bootstrap_t *). */
int runtime_exchange(void *arg, const void *mine, size_t len, void *all);
/* FTSVM_FAULT at a start-up step: this node SIGKILLs itself if named */
void runtime_boot_fault(const char *point);
/* the same before the node knows its id from the configuration (PMIx:
 * bootstrap_pmix.c, as it joins the rendezvous) */
void runtime_boot_fault_as(const char *point, int node);

/* Transport parameters from the configuration and bootstrap of `rt`: all
 * but the regions and the UCX transport list, which the caller adds. */
void runtime_rdma_params(const ftsvm_runtime_t *rt, rdma_params_t *params_p);

/* What /proc/<pid>/stat of this pid namespace says now: the state letter
 * (R, S, D, T, Z, X...) and the start time (runtime_process_t.start_time).
 * FTSVM_ESYS when there is no such process. */
int runtime_process_stat(int pid, char *state_p, uint64_t *start_time_p);

/* Start-up in steps (lib/api/api.c drives them): boot reads the configuration,
 * meets the other nodes and learns where each runs (processes); while
 * booting, runtime_booting() gives the configuration with node and nodes
 * known; connect creates the transport with the modules' regions; up makes
 * ftsvm_runtime() non-NULL. */
int  runtime_boot(void);
const ftsvm_runtime_t *runtime_booting(void);
int  runtime_connect(size_t nregions, const size_t *region_sizes);
void runtime_up(void);
/* For programs below the shared memory that exchange or meet through the
 * bootstrap after ftsvm_init (the transport tests): called before it, it
 * keeps ftsvm_init from leaving the launcher's service. */
void runtime_keep_bootstrap(void);
int  runtime_keeps_bootstrap(void);
void runtime_abort(void);
/* Shutdown: begin (refuses a second finalize), then the upper modules stop,
 * then runtime_shutdown flushes, meets the other nodes and tears down. */
int  runtime_begin_shutdown(void);
int  runtime_shutdown(void);

/* Registered threads of this node that have not returned (the barrier
 * waits for these), and a callback run when one returns. */
unsigned runtime_threads_running(void);
void     runtime_on_thread_exit(void (*cb)(void));

#endif

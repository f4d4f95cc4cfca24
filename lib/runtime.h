/* The runtime of one node: configuration, bootstrap and transport, set up
 * by ftsvm_init. For the library's upper modules, tests and benchmarks. */
#ifndef FTSVM_RUNTIME_H
#define FTSVM_RUNTIME_H

#include "bootstrap.h"
#include "config.h"
#include "rdma/rdma.h"

typedef struct ftsvm_runtime {
    ftsvm_config_t  config;
    bootstrap_t    *boot;
    rdma_ctx_t     *rdma;
} ftsvm_runtime_t;

/* NULL before ftsvm_init and after ftsvm_finalize. */
ftsvm_runtime_t *ftsvm_runtime(void);

/* rdma_exchange_fn_t over the bootstrap (arg: bootstrap_t *). */
int runtime_exchange(void *arg, const void *mine, size_t len, void *all);

/* Transport parameters from the configuration and bootstrap of `rt`: all
 * but the regions and the UCX transport list, which the caller adds. */
void runtime_rdma_params(const ftsvm_runtime_t *rt, rdma_params_t *params_p);

/* Start-up in steps (lib/api.c drives them): boot reads the configuration
 * and meets the other nodes; while booting, runtime_booting() gives the
 * configuration with node and nodes known; connect creates the transport
 * with the modules' regions; up makes ftsvm_runtime() non-NULL. */
int  runtime_boot(void);
const ftsvm_runtime_t *runtime_booting(void);
int  runtime_connect(size_t nregions, const size_t *region_sizes);
void runtime_up(void);
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

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

#endif

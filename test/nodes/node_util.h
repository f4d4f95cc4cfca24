/* Helpers for the node programs of multi-node tests. A node program never
 * uses Criterion: it prints what went wrong and exits with a code that the
 * test in test/multi checks (STYLE.md "Tests"). */
#ifndef FTSVM_TEST_NODE_UTIL_H
#define FTSVM_TEST_NODE_UTIL_H

#include "ftsvm.h"
#include "runtime/runtime.h"

#include <stdio.h>
#include <stdlib.h>

#define NODE_FAIL_EXIT 10

#define node_check(_cond, ...)                                                 \
    do {                                                                       \
        if (!(_cond)) {                                                        \
            fprintf(stderr, "check failed at %s:%d: %s: ", __FILE__, __LINE__, \
                    #_cond);                                                   \
            fprintf(stderr, __VA_ARGS__);                                      \
            fputc('\n', stderr);                                               \
            exit(NODE_FAIL_EXIT);                                              \
        }                                                                      \
    } while (0)

#define node_ok(_call)                                                         \
    do {                                                                       \
        int _status = (_call);                                                 \
        node_check(_status == FTSVM_OK, "%s returned %d (%s)", #_call, _status, \
                   ftsvm_strerror(_status));                                   \
    } while (0)

/* A transport of the test's own, with `nregions` regions of `size` bytes,
 * exchanged through the runtime's bootstrap (ftsvm_init must have run). */
static inline rdma_ctx_t *node_transport(size_t nregions, size_t size, const char *tls)
{
    ftsvm_runtime_t *rt = ftsvm_runtime();
    size_t sizes[4] = { size, size, size, size };
    rdma_params_t params;
    rdma_ctx_t *ctx = NULL;

    node_check(nregions <= 4, "at most 4 regions");
    runtime_rdma_params(rt, &params);
    params.tls          = tls;
    params.nregions     = nregions;
    params.region_sizes = sizes;
    node_ok(rdma_create(&params, &ctx));
    return ctx;
}

static inline void node_barrier(void)
{
    node_ok(bootstrap_barrier(ftsvm_runtime()->boot));
}

#endif

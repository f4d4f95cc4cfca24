/*
 * ftsvm_for_reduce (DESIGN.md section 8): the loop of tasks.c whose chunks
 * each leave a partial result in a shared slot committed with the chunk;
 * every node folds the slots in chunk order (tasks.c, "Reductions"), so the
 * result is the same on every node and in every run.
 */
#include "tasks_int.h"
#include "common/log.h"
#include "ftsvm.h"
#include "runtime/runtime.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

int tasks_for_reduce(size_t n, size_t chunk,
                     void (*fn)(size_t first, size_t count, void *arg, void *partial),
                     void *arg, void *result, size_t size,
                     void (*combine)(void *into, const void *from, size_t size, void *arg))
{
    tasks_call_t *call;
    tasks_reduce_t *r;
    int status;

    if (ftsvm_runtime() == NULL) {
        ftsvm_error("ftsvm_for_reduce before ftsvm_init or after ftsvm_finalize");
        return FTSVM_ESTATE;
    }
    if (fn == NULL || chunk == 0 || result == NULL || combine == NULL) {
        ftsvm_error("ftsvm_for_reduce: %s is %s", fn == NULL ? "fn" : chunk == 0 ? "chunk" :
                    result == NULL ? "result" : "combine", chunk == 0 && fn != NULL ? "0" :
                    "NULL");
        return FTSVM_EINVAL;
    }
    if (size == 0 || size > TASKS_REDUCE_MAX) {
        ftsvm_error("ftsvm_for_reduce: a partial result of %zu bytes (1..%u)", size,
                    TASKS_REDUCE_MAX);
        return FTSVM_EINVAL;
    }
    status = tasks_loop_begin("ftsvm_for_reduce");
    if (status != FTSVM_OK) {
        return status;
    }
    if (n == 0) {
        goto out_loop;   /* result keeps the identity */
    }
    call = calloc(1, sizeof(*call));
    if (call == NULL) {
        status = FTSVM_ENOMEM;
        goto err_loop;
    }
    r = &call->reduce;
    r->stride   = (size + TASKS_SLOT_ALIGN - 1) / TASKS_SLOT_ALIGN * TASKS_SLOT_ALIGN;
    /* the identity, the folded result, a scratch partial per thread */
    r->identity = malloc(r->stride * (2u + (size_t)tasks_node_threads()));
    if (r->identity == NULL) {
        status = FTSVM_ENOMEM;
        goto err_call;
    }
    r->acc     = r->identity + r->stride;
    r->scratch = r->acc + r->stride;
    memcpy(r->identity, result, size);
    memcpy(r->acc, result, size);
    r->fn      = fn;
    r->combine = combine;
    r->size    = size;
    call->n     = n;
    call->chunk = chunk;
    call->arg   = arg;
    status = tasks_run(call);
    if (status == FTSVM_OK) {
        memcpy(result, r->acc, size);
    }
    free(r->identity);
    free(call);
    goto out_loop;

err_call:
    free(call);
err_loop:
    ftsvm_error("ftsvm_for_reduce: out of memory");
out_loop:
    tasks_loop_end();
    return status;
}

/* Bootstrap through PMIx, for a real launcher (srun, mpirun): the node id is
 * the PMIx rank, the job size PMIX_JOB_SIZE, and an allgather is a Put /
 * Commit / Fence(collect) / Get per rank, one key per round.
 * PMIx tells survivors nothing about a failed rank: failure reporting stays
 * ftsvm's own job (lib/failure). */
#include "bootstrap.h"
#include "common/log.h"
#include "ftsvm.h"

#include <pmix.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct bootstrap_pmix {
    bootstrap_t super;
    pmix_proc_t self;
    unsigned    round;
} bootstrap_pmix_t;

static int pmix_fence_all(bootstrap_pmix_t *pmix, bool collect)
{
    pmix_proc_t all;
    pmix_info_t info;
    pmix_status_t rc;

    PMIX_PROC_CONSTRUCT(&all);
    PMIX_LOAD_PROCID(&all, pmix->self.nspace, PMIX_RANK_WILDCARD);
    PMIX_INFO_CONSTRUCT(&info);
    PMIX_INFO_LOAD(&info, PMIX_COLLECT_DATA, &collect, PMIX_BOOL);
    rc = PMIx_Fence(&all, 1, &info, 1);
    PMIX_INFO_DESTRUCT(&info);
    if (rc == PMIX_ERR_PARTIAL_SUCCESS) {
        /* Seen with Open MPI 4.1 when a rank that already left this fence
         * exits before the server released the others: every rank arrived,
         * and a contribution that is really missing fails its PMIx_Get. */
        ftsvm_debug("PMIx_Fence: partial success (a rank has already exited)");
        rc = PMIX_SUCCESS;
    }
    if (rc != PMIX_SUCCESS) {
        ftsvm_error("PMIx_Fence failed: %s", PMIx_Error_string(rc));
        return FTSVM_EBOOT;
    }
    return FTSVM_OK;
}

static int pmix_allgather(bootstrap_t *boot, const void *mine, size_t len,
                          void *all, uint8_t *present)
{
    bootstrap_pmix_t *pmix = (bootstrap_pmix_t *)boot;
    char key[PMIX_MAX_KEYLEN];
    pmix_value_t value, *got;
    pmix_proc_t peer;
    pmix_status_t rc;
    int status, node;

    if (present != NULL) {
        memset(present, 1, (size_t)boot->nodes);
    }
    if (len == 0) {
        return pmix_fence_all(pmix, false);
    }
    snprintf(key, sizeof(key), "ftsvm.round.%u", pmix->round++);
    PMIX_VALUE_CONSTRUCT(&value);
    value.type          = PMIX_BYTE_OBJECT;
    value.data.bo.bytes = (char *)mine;
    value.data.bo.size  = len;
    rc = PMIx_Put(PMIX_GLOBAL, key, &value);
    if (rc != PMIX_SUCCESS) {
        ftsvm_error("PMIx_Put of %s failed: %s", key, PMIx_Error_string(rc));
        return FTSVM_EBOOT;
    }
    rc = PMIx_Commit();
    if (rc != PMIX_SUCCESS) {
        ftsvm_error("PMIx_Commit failed: %s", PMIx_Error_string(rc));
        return FTSVM_EBOOT;
    }
    status = pmix_fence_all(pmix, true);
    if (status != FTSVM_OK) {
        return status;
    }
    for (node = 0; node < boot->nodes; node++) {
        PMIX_PROC_CONSTRUCT(&peer);
        PMIX_LOAD_PROCID(&peer, pmix->self.nspace, (pmix_rank_t)node);
        rc = PMIx_Get(&peer, key, NULL, 0, &got);
        if (rc != PMIX_SUCCESS) {
            ftsvm_error("PMIx_Get of %s from rank %d failed: %s", key, node,
                        PMIx_Error_string(rc));
            return FTSVM_EBOOT;
        }
        if (got->type != PMIX_BYTE_OBJECT || got->data.bo.size != len) {
            ftsvm_error("rank %d published %s with the wrong type or size", node, key);
            PMIX_VALUE_RELEASE(got);
            return FTSVM_EPROTO;
        }
        memcpy((char *)all + (size_t)node * len, got->data.bo.bytes, len);
        PMIX_VALUE_RELEASE(got);
    }
    return FTSVM_OK;
}

/* Slurm's PMIx plugin (22.05, mpi/pmix_v4) registers one event handler in
 * slurmstepd for every event and cancels the whole step from it; the PMIx
 * server raises such an event when a client it still counts as connected
 * goes away without PMIx_Finalize. So a node that is SIGKILLed while
 * connected takes every survivor with it. A client that finalized is no
 * longer counted: its death is a plain task exit, which srun -K0 lets the
 * step survive. Hence finalize as soon as the job is up: after start-up
 * nothing of PMIx is needed (the job's barriers go over its own memory). */
static int pmix_detach(bootstrap_t *boot)
{
    pmix_status_t rc = PMIx_Finalize(NULL, 0);

    (void)boot;
    if (rc != PMIX_SUCCESS) {
        /* connected, a later death of this node would end the step */
        ftsvm_error("PMIx_Finalize after start-up failed: %s", PMIx_Error_string(rc));
        return FTSVM_EBOOT;
    }
    return FTSVM_OK;
}

static void pmix_destroy(bootstrap_t *boot)
{
    if (!boot->detached) {
        PMIx_Finalize(NULL, 0);
    }
    free(boot);
}

static const bootstrap_ops_t pmix_ops = {
    .name      = "pmix",
    .allgather = pmix_allgather,
    .detach    = pmix_detach,
    .destroy   = pmix_destroy,
};

int bootstrap_pmix_create(const ftsvm_config_t *config, bootstrap_t **boot_p)
{
    bootstrap_pmix_t *pmix;
    pmix_proc_t wildcard;
    pmix_value_t *value;
    pmix_status_t rc;
    int status;

    (void)config;
    pmix = calloc(1, sizeof(*pmix));
    if (pmix == NULL) {
        ftsvm_error("cannot allocate the PMIx bootstrap");
        return FTSVM_ENOMEM;
    }
    rc = PMIx_Init(&pmix->self, NULL, 0);
    if (rc != PMIX_SUCCESS) {
        ftsvm_error("PMIx_Init failed: %s", PMIx_Error_string(rc));
        status = FTSVM_EBOOT;
        goto err_free;
    }
    PMIX_PROC_CONSTRUCT(&wildcard);
    PMIX_LOAD_PROCID(&wildcard, pmix->self.nspace, PMIX_RANK_WILDCARD);
    rc = PMIx_Get(&wildcard, PMIX_JOB_SIZE, NULL, 0, &value);
    if (rc != PMIX_SUCCESS) {
        ftsvm_error("PMIx_Get of the job size failed: %s", PMIx_Error_string(rc));
        status = FTSVM_EBOOT;
        goto err_finalize;
    }
    pmix->super.ops   = &pmix_ops;
    pmix->super.node  = (int)pmix->self.rank;
    pmix->super.nodes = (int)value->data.uint32;
    PMIX_VALUE_RELEASE(value);
    *boot_p = &pmix->super;
    return FTSVM_OK;

err_finalize:
    PMIx_Finalize(NULL, 0);
err_free:
    free(pmix);
    return status;
}

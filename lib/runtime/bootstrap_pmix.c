/* Bootstrap under a PMIx launcher (srun, mpirun): the node id is the PMIx
 * rank and the job size PMIX_JOB_SIZE; the start-up rounds go through a
 * rendezvous that node 0 serves (rdv_serve.c, which says why not through
 * PMIx_Fence), whose address and key node 0 publishes as one PMIx value.
 *
 * PMIx is left (PMIx_Finalize) as soon as that value is read, before the
 * first round. Slurm's PMIx plugin (22.05, mpi/pmix_v4) registers one event
 * handler in slurmstepd for every event and cancels the whole step from it;
 * the PMIx server raises such an event when a client it still counts as
 * connected goes away without PMIx_Finalize. So a node that dies while
 * connected takes every other node with it; a finalized client's death is a
 * plain task exit, which the step survives (srun -K0, Slurm's default). The
 * window left is ftsvm_init's first milliseconds, from PMIx_Init to the
 * read. PMIx tells survivors nothing about a failed rank either: failure
 * reporting is ftsvm's own (lib/failure). */
#include "bootstrap.h"
#include "rdv_serve.h"
#include "rdv_server.h"
#include "runtime.h"
#include "common/clock.h"
#include "common/log.h"
#include "ftsvm.h"

#include <math.h>
#include <pmix.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define PMIX_RDV_KEY "ftsvm.rdv"

/* What node 0 publishes: "<host:port> <key>", or "! <why>" when it could
 * not serve the rendezvous (so that the others fail at once, not at their
 * timeout). */
static int pmix_publish(const char *text)
{
    pmix_value_t value;
    pmix_status_t rc;

    PMIX_VALUE_CONSTRUCT(&value);
    value.type        = PMIX_STRING;
    value.data.string = (char *)text;
    rc = PMIx_Put(PMIX_GLOBAL, PMIX_RDV_KEY, &value);
    if (rc == PMIX_SUCCESS) {
        rc = PMIx_Commit();
    }
    if (rc != PMIX_SUCCESS) {
        ftsvm_error("cannot publish the start-up rendezvous through PMIx: %s",
                    PMIx_Error_string(rc));
        return FTSVM_EBOOT;
    }
    return FTSVM_OK;
}

/* Node 0's value, waiting for it at most boot_timeout. */
static int pmix_read_rdv(const pmix_proc_t *self, double boot_timeout, char *address,
                         size_t size, char *key, size_t key_size)
{
    pmix_proc_t zero;
    pmix_info_t info;
    pmix_value_t *got = NULL;
    pmix_status_t rc;
    int timeout = (int)ceil(boot_timeout), status = FTSVM_OK;
    uint64_t deadline = clock_now_ns() + (uint64_t)(boot_timeout * 1e9);
    struct timespec nap = { 0, 20 * 1000 * 1000 };
    const char *text, *space;

    PMIX_PROC_CONSTRUCT(&zero);
    PMIX_LOAD_PROCID(&zero, self->nspace, 0);
    PMIX_INFO_CONSTRUCT(&info);
    PMIX_INFO_LOAD(&info, PMIX_TIMEOUT, &timeout, PMIX_INT);
    /* The server waits for a value that node 0 has yet to commit, but
     * Slurm's says NOT-FOUND at once while node 0 has not connected to it
     * yet (seen with 8 tasks): ask again until the deadline. */
    do {
        rc = PMIx_Get(&zero, PMIX_RDV_KEY, &info, 1, &got);
        if (rc == PMIX_ERR_NOT_FOUND && clock_now_ns() < deadline) {
            nanosleep(&nap, NULL);
        }
    } while (rc == PMIX_ERR_NOT_FOUND && clock_now_ns() < deadline);
    PMIX_INFO_DESTRUCT(&info);
    if (rc != PMIX_SUCCESS) {
        ftsvm_error("node 0 did not publish the start-up rendezvous within %g s "
                    "(FTSVM_BOOT_TIMEOUT): %s; node 0 serves it, so without node 0 "
                    "the job cannot start", boot_timeout, PMIx_Error_string(rc));
        return (rc == PMIX_ERR_TIMEOUT) ? FTSVM_ETIMEDOUT : FTSVM_EBOOT;
    }
    text = (got->type == PMIX_STRING) ? got->data.string : NULL;
    space = (text != NULL) ? strchr(text, ' ') : NULL;
    if (text != NULL && text[0] == '!') {
        ftsvm_error("node 0 could not serve the start-up rendezvous:%s", text + 1);
        status = FTSVM_EBOOT;
    } else if (space == NULL || (size_t)(space - text) >= size ||
               strlen(space + 1) >= key_size) {
        ftsvm_error("node 0 published a malformed start-up rendezvous value");
        status = FTSVM_EPROTO;
    } else {
        memcpy(address, text, (size_t)(space - text));
        address[space - text] = '\0';
        snprintf(key, key_size, "%s", space + 1);
    }
    PMIX_VALUE_RELEASE(got);
    return status;
}

/* The rank and the job size; then node 0 serves the rendezvous and
 * publishes it, and everyone reads it. */
static int pmix_start(const ftsvm_config_t *config, const pmix_proc_t *self, int *node_p,
                      int *nodes_p, char *address, size_t size, char *key, size_t key_size)
{
    pmix_proc_t wildcard;
    pmix_value_t *value;
    pmix_status_t rc;
    char text[384];
    int status;

    PMIX_PROC_CONSTRUCT(&wildcard);
    PMIX_LOAD_PROCID(&wildcard, self->nspace, PMIX_RANK_WILDCARD);
    rc = PMIx_Get(&wildcard, PMIX_JOB_SIZE, NULL, 0, &value);
    if (rc != PMIX_SUCCESS) {
        ftsvm_error("PMIx_Get of the job size failed: %s", PMIx_Error_string(rc));
        return FTSVM_EBOOT;
    }
    *node_p  = (int)self->rank;
    *nodes_p = (int)value->data.uint32;
    PMIX_VALUE_RELEASE(value);
    if (self->rank == 0) {
        status = rdv_serve_start(config->boot_addr, *nodes_p, config->boot_timeout,
                                 address, size, key);
        if (status == FTSVM_OK) {
            snprintf(text, sizeof(text), "%s %s", address, key);
        } else {
            snprintf(text, sizeof(text), "! %s (see node 0's log)", ftsvm_strerror(status));
        }
        if (pmix_publish(text) != FTSVM_OK || status != FTSVM_OK) {
            return (status != FTSVM_OK) ? status : FTSVM_EBOOT;
        }
        return FTSVM_OK;
    }
    return pmix_read_rdv(self, config->boot_timeout, address, size, key, key_size);
}

int bootstrap_pmix_create(const ftsvm_config_t *config, bootstrap_t **boot_p)
{
    char address[160], key[2 * RDV_KEY_BYTES + 1];
    int node = -1, nodes = 0, status;
    pmix_proc_t self;
    pmix_status_t rc;

    rc = PMIx_Init(&self, NULL, 0);
    if (rc != PMIX_SUCCESS) {
        ftsvm_error("PMIx_Init failed: %s", PMIx_Error_string(rc));
        return FTSVM_EBOOT;
    }
    status = pmix_start(config, &self, &node, &nodes, address, sizeof(address), key,
                        sizeof(key));
    /* leave PMIx before anything else can happen to this node (above) */
    rc = PMIx_Finalize(NULL, 0);
    if (status == FTSVM_OK && rc != PMIX_SUCCESS) {
        /* connected, a later death of this node would end the step */
        ftsvm_error("PMIx_Finalize after start-up failed: %s", PMIx_Error_string(rc));
        status = FTSVM_EBOOT;
    }
    if (status != FTSVM_OK) {
        return status;
    }
    ftsvm_log_set_node(node);
    runtime_boot_fault_as("boot-rendezvous", node);   /* before it joins, as under ftsvm-run */
    return bootstrap_rdv_join(address, key, node, nodes, config->boot_timeout, 1, boot_p);
}

/* Bootstrap selection: the built-in rendezvous when ftsvm-run started us,
 * PMIx when a PMIx launcher (srun, mpirun) did. */
#include "bootstrap.h"
#include "common/log.h"
#include "ftsvm.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int bootstrap_under_pmix(void)
{
    return getenv("PMIX_RANK") != NULL && getenv("PMIX_NAMESPACE") != NULL;
}

int bootstrap_create(const ftsvm_config_t *config, bootstrap_t **boot_p)
{
    int status;

    if (config->rdv[0] != '\0') {
        status = bootstrap_rdv_create(config, boot_p);
    } else if (bootstrap_under_pmix()) {
        status = bootstrap_pmix_create(config, boot_p);
    } else {
        ftsvm_error("no launcher found: start the program with ftsvm-run -n N ./app, "
                    "or under a PMIx launcher (srun, mpirun)");
        return FTSVM_EBOOT;
    }
    if (status != FTSVM_OK) {
        return status;
    }
    (*boot_p)->absent = calloc((size_t)(*boot_p)->nodes, 1);
    if ((*boot_p)->absent == NULL) {
        ftsvm_error("cannot allocate the start-up presence table");
        bootstrap_destroy(*boot_p);
        return FTSVM_ENOMEM;
    }
    (*boot_p)->starting = 1;
    return FTSVM_OK;
}

/* Fold a round's presence into boot->absent; zero what the absent sent. */
static int bootstrap_note_absent(bootstrap_t *boot, const uint8_t *present, size_t len,
                                 void *all)
{
    char missing[160];
    int node, left = 0, used = 0;

    missing[0] = '\0';
    for (node = 0; node < boot->nodes; node++) {
        if (!present[node] && !boot->absent[node]) {
            boot->absent[node] = 1;
            used += snprintf(missing + used, sizeof(missing) - (size_t)used, "%s%d",
                             used ? ", " : "", node);
            used = (used < (int)sizeof(missing)) ? used : (int)sizeof(missing) - 1;
        }
        if (boot->absent[node] && len > 0) {
            memset((char *)all + (size_t)node * len, 0, len);
        }
        left += !boot->absent[node];
    }
    if (left < 2 && boot->nodes > 1) {
        ftsvm_error("start-up: only %d of %d nodes are left (a job needs two); "
                    "the others died or did not join", left, boot->nodes);
        return FTSVM_EBOOT;
    }
    if (missing[0] != '\0') {
        ftsvm_info("start-up: node(s) %s left out of the job (died or did not join)",
                   missing);
    }
    return FTSVM_OK;
}

int bootstrap_startup_gather(bootstrap_t *boot, const void *mine, size_t len, void *all)
{
    uint8_t *present = malloc((size_t)boot->nodes);
    int status;

    if (present == NULL) {
        ftsvm_error("cannot allocate %d bytes for a start-up round", boot->nodes);
        return FTSVM_ENOMEM;
    }
    status = bootstrap_allgather(boot, mine, len, all, present);
    if (status == FTSVM_OK) {
        status = bootstrap_note_absent(boot, present, len, all);
    }
    free(present);
    return status;
}

int bootstrap_detach(bootstrap_t *boot)
{
    int status = FTSVM_OK;

    if (boot->ops->detach != NULL && !boot->detached) {
        status = boot->ops->detach(boot);
        boot->detached = (status == FTSVM_OK);
    }
    return status;
}

int bootstrap_barrier(bootstrap_t *boot)
{
    uint8_t *present;
    int status;

    if (boot->detached) {
        ftsvm_error("bootstrap barrier after the launcher's service was left");
        return FTSVM_ESTATE;
    }
    present = malloc((size_t)boot->nodes);

    if (present == NULL) {
        ftsvm_error("cannot allocate %d bytes for a barrier", boot->nodes);
        return FTSVM_ENOMEM;
    }
    status = bootstrap_allgather(boot, NULL, 0, NULL, present);
    if (status == FTSVM_OK && boot->starting) {
        status = bootstrap_note_absent(boot, present, 0, NULL);
    }
    free(present);
    return status;
}

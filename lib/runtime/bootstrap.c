/* Bootstrap selection: the built-in rendezvous when ftsvm-run started us,
 * PMIx when a PMIx launcher (srun, mpirun) did. */
#include "bootstrap.h"
#include "common/log.h"
#include "ftsvm.h"

#include <stdlib.h>

static int bootstrap_under_pmix(void)
{
    return getenv("PMIX_RANK") != NULL && getenv("PMIX_NAMESPACE") != NULL;
}

int bootstrap_create(const ftsvm_config_t *config, bootstrap_t **boot_p)
{
    if (config->rdv[0] != '\0') {
        return bootstrap_rdv_create(config, boot_p);
    }
    if (bootstrap_under_pmix()) {
        return bootstrap_pmix_create(config, boot_p);
    }
    ftsvm_error("no launcher found: start the program with ftsvm-run -n N ./app, "
                "or under a PMIx launcher (srun, mpirun)");
    return FTSVM_EBOOT;
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
    free(present);
    return status;
}

/* Bootstrap: how a node learns its id, the job size, and exchanges the
 * blobs (worker addresses, remote keys) that the transport needs. Two
 * implementations behind one interface: the built-in rendezvous of ftsvm-run
 * (bootstrap_rdv.c) and PMIx (bootstrap_pmix.c) for srun / mpirun. */
#ifndef FTSVM_BOOTSTRAP_H
#define FTSVM_BOOTSTRAP_H

#include "config.h"

#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

typedef struct bootstrap bootstrap_t;

typedef struct bootstrap_ops {
    const char *name;
    /* all = nodes x len bytes; present (may be NULL) = nodes bytes, 1 for
     * each node that contributed. With present == NULL an absent node is an
     * error (FTSVM_EBOOT). */
    int  (*allgather)(bootstrap_t *boot, const void *mine, size_t len,
                      void *all, uint8_t *present);
    /* leave the launcher's start-up service once the job is up (NULL: the
     * bootstrap stays until destroy); no allgather after it */
    int  (*detach)(bootstrap_t *boot);
    void (*destroy)(bootstrap_t *boot);
} bootstrap_ops_t;

struct bootstrap {
    const bootstrap_ops_t *ops;
    int                    node;
    int                    nodes;
    int                    detached;   /* bootstrap_detach ran: no more barriers */
    /* nodes bytes, 1 for each node missing from a start-up round: it never
     * joined (died first, or not within FTSVM_BOOT_TIMEOUT) or left since.
     * The same on every node, the rounds being the same for all. */
    uint8_t               *absent;
    int                    starting;   /* 1 until the job is up (runtime_up) */
};

/* Pick PMIx when the environment comes from a PMIx launcher and FTSVM_RDV is
 * not set, the built-in rendezvous when FTSVM_RDV is set, and fail with a
 * clear message otherwise. */
int  bootstrap_create(const ftsvm_config_t *config, bootstrap_t **boot_p);
int  bootstrap_rdv_create(const ftsvm_config_t *config, bootstrap_t **boot_p);
int  bootstrap_pmix_create(const ftsvm_config_t *config, bootstrap_t **boot_p);
/* Join the rendezvous at addr ("host:port") with the job key as node `node`
 * of `nodes`; detachable: the connection closes at bootstrap_detach (the
 * rendezvous serves the start-up only, rdv_serve.c). */
int  bootstrap_rdv_join(const char *addr, const char *key, int node, int nodes,
                        double boot_timeout, int detachable, bootstrap_t **boot_p);

static inline int bootstrap_allgather(bootstrap_t *boot, const void *mine, size_t len,
                                      void *all, uint8_t *present)
{
    return boot->ops->allgather(boot, mine, len, all, present);
}

/* A round of start-up: an allgather in which a node that is missing, or
 * was missing from an earlier round, is recorded in boot->absent and its
 * slot of `all` zeroed. Fewer than two nodes left: FTSVM_EBOOT, with the
 * reason. */
int  bootstrap_startup_gather(bootstrap_t *boot, const void *mine, size_t len, void *all);

/* All live nodes have arrived; nodes that exited are skipped (and, before
 * the job is up, recorded as absent). Refused (FTSVM_ESTATE) once
 * detached. */
int  bootstrap_barrier(bootstrap_t *boot);

/* Leave the launcher's start-up service where the bootstrap has one to
 * leave (PMIx: see bootstrap_pmix.c); the job's barriers then go over the
 * shared memory (the caller's). */
int  bootstrap_detach(bootstrap_t *boot);

static inline void bootstrap_destroy(bootstrap_t *boot)
{
    free(boot->absent);
    boot->absent = NULL;
    boot->ops->destroy(boot);
}

#endif

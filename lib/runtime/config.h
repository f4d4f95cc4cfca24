/* Configuration: one table of FTSVM_* variables, parsed once. Each entry has
 * a name, a default, a one-line doc, a type and an offset into
 * ftsvm_config_t; `ftsvm-info -c` prints them all. */
#ifndef FTSVM_CONFIG_H
#define FTSVM_CONFIG_H

#include <stddef.h>
#include <stdio.h>

typedef enum {
    FTSVM_TRANSPORT_UCX,
    FTSVM_TRANSPORT_VERBS,
} ftsvm_transport_t;

typedef enum {
    FTSVM_EVICT_AT_BATCH,      /* the first barrier or ftsvm_for batch boundary */
    FTSVM_EVICT_AT_BARRIER,    /* barriers only: homes handed over before it leaves */
} ftsvm_evict_at_t;

typedef struct ftsvm_config {
    int      log_level;        /* ftsvm_log_level_t */
    int      stats;            /* bool */
    int      transport;        /* ftsvm_transport_t */
    char     verbs_device[64]; /* verbs: RDMA device, "": the first */
    char     verbs_addr[64];   /* verbs: IPv4 to listen on, "": the device's */
    unsigned threads;          /* threads per node, main thread included */
    double   boot_timeout;     /* seconds */
    unsigned spin_us;          /* protocol thread spin before it sleeps */
    double   keepalive;        /* seconds, UCX keepalive (peer death over shm) */
    size_t   shared_size;      /* bytes of the shared region */
    unsigned home_block;       /* consecutive pages with the same home */
    size_t   notice_log;       /* bytes of each writer's write-notice ring */
    unsigned replicas;         /* homes per page: 1 or 2 */
    int      check_homes;      /* bool: compare both homes at every barrier */
    unsigned home_headroom;    /* percent more home-store slots, for new secondaries */
    unsigned spares;           /* the job's last `spares` nodes are spare homes */
    int      evict_at;         /* ftsvm_evict_at_t: where a node asked to leave does */
    unsigned lock_ack_delay_ms;   /* a lock's secondary waits before its ack (tests) */
    char     stop_at[64];      /* a release step at which a node stops itself (tests) */
    char     fault[64];        /* a point at which a node SIGKILLs itself (tests) */
    double   hb_interval;      /* seconds between heartbeat reads of every peer */
    double   hb_timeout;       /* seconds of a stopped heartbeat before suspicion */
    int      quorum;           /* bool: a node cut off from most of the view fences itself */
    char     boot_addr[128];   /* under PMIx: where node 0's rendezvous listens ("": its host) */
    /* set by ftsvm-run for each node */
    int      node;             /* -1: not set */
    int      nodes;            /* -1: not set */
    char     rdv[128];         /* host:port of the launcher's rendezvous */
    char     job_key[72];      /* per-job secret for the rendezvous */
} ftsvm_config_t;

/* Fill *config from the defaults and the FTSVM_* environment. Unknown FTSVM_*
 * names are warned about; a bad value is logged with its variable name and
 * FTSVM_EINVAL returned (config untouched). */
int ftsvm_config_load(ftsvm_config_t *config);

/* Parse one value of entry `name` (without the FTSVM_ prefix) into *config.
 * Exposed for tests. */
int ftsvm_config_set(ftsvm_config_t *config, const char *name, const char *value);

/* Every entry: "FTSVM_NAME=value" and its doc, value as in *config. */
void ftsvm_config_print(const ftsvm_config_t *config, FILE *out);

#endif

/* The start-up rendezvous under a PMIx launcher, served by a process that
 * node 0 starts (rdv_serve.c). */
#ifndef FTSVM_RDV_SERVE_H
#define FTSVM_RDV_SERVE_H

#include <stddef.h>

/* Make a job key (key[2 * RDV_KEY_BYTES + 1]), listen on `addr` (a host
 * name or address; NULL or empty: this host's name) for a job of `nodes`
 * nodes, and serve its start-up in a process of its own until it is over
 * and every node has closed its connection. Its "host:port" goes to
 * address[size]. FTSVM_OK, or a logged error. */
int rdv_serve_start(const char *addr, int nodes, double boot_timeout, char *address,
                    size_t size, char *key);

#endif

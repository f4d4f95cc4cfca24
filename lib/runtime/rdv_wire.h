/* Wire format of the built-in rendezvous between ftsvm-run and its nodes.
 *
 * One TCP connection per node to the launcher (FTSVM_RDV, loopback by
 * default). Every message is a rdv_hdr_t followed by `len` payload bytes.
 * Both ends run on one machine, so integers are in host byte order.
 *
 *   node -> launcher  RDV_HELLO     node = id, payload = FTSVM_JOB_KEY text
 *   launcher -> node  RDV_WELCOME   payload empty; or RDV_ERROR and close
 *   node -> launcher  RDV_GATHER    payload = this node's contribution; every
 *                                   node of a round sends the same len
 *   launcher -> node  RDV_GATHERED  payload = `nodes` present bytes (1 when
 *                                   the node contributed, 0 when it had exited)
 *                                   then nodes x len contributions in node
 *                                   order (zeros for absent nodes)
 *   launcher -> node  RDV_ERROR     status = FTSVM_E* code, payload = text
 *
 * A round completes when every node that has not exited has contributed.
 * Before every node has said HELLO, a node that exits or does not join within
 * FTSVM_BOOT_TIMEOUT fails the round for all with RDV_ERROR (start-up cannot
 * go on without it). After that, exited nodes are only marked absent: later
 * rounds (e.g. the barrier in ftsvm_finalize) go on without them.
 * A connection whose HELLO carries a wrong key, a node id out of range or
 * already taken is refused (RDV_ERROR, close) and logged by the launcher.
 */
#ifndef FTSVM_RDV_WIRE_H
#define FTSVM_RDV_WIRE_H

#include <stdint.h>

#define RDV_MAGIC        0x46545356u   /* "FTSV" */
#define RDV_MAX_PAYLOAD  (16u << 20)   /* a larger len is a protocol error */

enum {
    RDV_HELLO    = 1,
    RDV_WELCOME  = 2,
    RDV_GATHER   = 3,
    RDV_GATHERED = 4,
    RDV_ERROR    = 5,
};

typedef struct rdv_hdr {
    uint32_t magic;
    uint16_t type;
    int16_t  status;   /* FTSVM_E* with RDV_ERROR, else 0 */
    uint32_t node;
    uint32_t len;      /* payload bytes that follow */
} rdv_hdr_t;

#endif

/* lib/failure: heartbeats, membership views, fencing, recovery
 * orchestration and the task space of ftsvm_for (DESIGN.md sections 7, 8).
 * Not built yet; today a peer's death is reported by the transport
 * (rdma_on_peer_failure) and visible through ftsvm_alive(). */
#ifndef FTSVM_FAILURE_H
#define FTSVM_FAILURE_H
#endif

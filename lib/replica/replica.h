/* lib/replica: placement of the primary and secondary homes, two-phase diff
 * propagation, lastRelease/nextRelease markers, recovery of page state
 * (DESIGN.md section 5). Not built yet. */
#ifndef FTSVM_REPLICA_H
#define FTSVM_REPLICA_H
#endif

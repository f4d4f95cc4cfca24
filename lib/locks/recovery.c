/*
 * Recovery steps of the replicated queue lock (DESIGN.md section 6,
 * "Recovery"; seed 002 section 5), as pure functions of what the protocol
 * records during failure-free runs: the homes of each lock, each waiter's
 * two predecessors, and the vector timestamp every releaser saves at a home.
 * The failure issue calls them when a failure is detected.
 */
#include "locks.h"
#include "ftsvm.h"

#include <string.h>

int locks_request_target(int primary, int secondary, int primary_alive, int secondary_alive)
{
    if (primary >= 0 && primary_alive) {
        return primary;
    }
    /* the secondary mirrors tail and second-to-last: it serves as primary */
    if (secondary >= 0 && secondary_alive) {
        return secondary;
    }
    return -1;
}

locks_waiter_action_t locks_on_predecessor_lost(int pred1, int pred2, int pred1_alive,
                                                int pred2_alive)
{
    if (pred1 < 0 || pred1_alive) {
        /* no predecessor (the home grants), or a live one hands it on */
        return LOCKS_KEEP_WAITING;
    }
    if (pred2 < 0) {
        return LOCKS_TAKE_LOCK;       /* the failed node was first: nobody else has it */
    }
    /* the node before the failed one forwards to us, now if it has
     * released, else when it does */
    return pred2_alive ? LOCKS_ASK_SECOND_TO_LAST : LOCKS_UNRECOVERABLE;
}

int locks_recovered_vt(uint32_t lock, uint64_t saved_tag, const uint64_t *saved_vt, int nodes,
                       int failed, uint64_t next_release, uint64_t *vt_p)
{
    if (saved_tag != (uint64_t)lock + 1u || nodes <= 0 || failed < 0 || failed >= nodes) {
        return FTSVM_ESTATE;
    }
    memcpy(vt_p, saved_vt, (size_t)nodes * sizeof(uint64_t));
    if (vt_p[failed] < next_release) {
        vt_p[failed] = next_release;
    }
    return FTSVM_OK;
}

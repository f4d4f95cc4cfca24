/*
 * The recovery steps of the replicated queue lock (lib/locks/recovery.c) on
 * recorded states: the tail/second-to-last the homes keep, each waiter's two
 * predecessors, and the vt saved by the last releaser.
 */
#include "locks/locks.h"
#include "ftsvm.h"

#include <criterion/criterion.h>

Test(lock_recovery, primary_home_lost_the_secondary_serves) {
    cr_assert_eq(locks_request_target(2, 0, 1, 1), 2);
    cr_assert_eq(locks_request_target(2, 0, 0, 1), 0);
    cr_assert_eq(locks_request_target(2, 0, 0, 0), -1, "both homes gone: beyond one failure");
    cr_assert_eq(locks_request_target(1, -1, 1, 0), 1, "one home (FTSVM_REPLICAS=1)");
    cr_assert_eq(locks_request_target(1, -1, 0, 0), -1);
}

Test(lock_recovery, predecessor_lost_ask_the_second_to_last) {
    /* queue 3 -> 1 -> 2 (we are 2): predecessors 1 and 3 */
    cr_assert_eq(locks_on_predecessor_lost(1, 3, 1, 1), LOCKS_KEEP_WAITING);
    cr_assert_eq(locks_on_predecessor_lost(1, 3, 0, 1), LOCKS_ASK_SECOND_TO_LAST);
    cr_assert_eq(locks_on_predecessor_lost(1, 3, 0, 0), LOCKS_UNRECOVERABLE);
}

Test(lock_recovery, first_in_queue_lost_the_next_takes_the_lock) {
    /* queue 1 -> 2: node 1 was first (no second-to-last) */
    cr_assert_eq(locks_on_predecessor_lost(1, -1, 0, 0), LOCKS_TAKE_LOCK);
    cr_assert_eq(locks_on_predecessor_lost(1, -1, 1, 0), LOCKS_KEEP_WAITING);
    /* we are first: the home grants, nothing was lost */
    cr_assert_eq(locks_on_predecessor_lost(-1, -1, 0, 0), LOCKS_KEEP_WAITING);
}

Test(lock_recovery, vt_comes_from_the_saved_copy_with_the_failed_nodes_durable_intervals) {
    const uint64_t saved[4] = { 5, 7, 2, 9 };
    uint64_t vt[4] = { 0 };

    /* the last holder, node 1, failed with nextRelease 11 */
    cr_assert_eq(locks_recovered_vt(42, 43, saved, 4, 1, 11, vt), FTSVM_OK);
    cr_assert(vt[0] == 5 && vt[1] == 11 && vt[2] == 2 && vt[3] == 9);
    /* a marker behind the saved entry never lowers it */
    cr_assert_eq(locks_recovered_vt(42, 43, saved, 4, 3, 4, vt), FTSVM_OK);
    cr_assert_eq(vt[3], 9);
    /* the slot holds another lock's vt: no answer rather than a wrong one */
    vt[0] = 77;
    cr_assert_eq(locks_recovered_vt(42, 16384 + 43, saved, 4, 1, 11, vt), FTSVM_ESTATE);
    cr_assert_eq(locks_recovered_vt(42, 0, saved, 4, 1, 11, vt), FTSVM_ESTATE);
    cr_assert_eq(vt[0], 77, "untouched on error");
    cr_assert_eq(locks_recovered_vt(42, 43, saved, 4, 4, 11, vt), FTSVM_ESTATE);
}

/*
 * The queue a view change rebuilds for one lock (lib/locks/rebuild.c,
 * locks_plan_lock), from survivors' reports: who holds the token, who waits,
 * the vts they saw and the vt the last releaser saved at a home.
 */
#include "locks/locks_int.h"
#include "ftsvm.h"

#include <criterion/criterion.h>
#include <string.h>

#define NODES 4
#define LOCK  42u

typedef struct {
    uint8_t bytes[4][sizeof(lock_report_t) + 2 * NODES * sizeof(uint64_t)];
    size_t  len;
} node_reports_t;

static void report(node_reports_t *to, uint32_t lock, uint32_t flags, const uint64_t *vt,
                   const uint64_t *saved)
{
    lock_report_t r = { lock, flags };
    uint8_t *at = to->bytes[to->len / locks_report_size(NODES)];

    memcpy(at, &r, sizeof(r));
    memset(at + sizeof(r), 0, 2 * NODES * sizeof(uint64_t));
    if (vt != NULL) {
        memcpy(at + sizeof(r), vt, NODES * sizeof(uint64_t));
    }
    if (saved != NULL) {
        memcpy(at + sizeof(r) + NODES * sizeof(uint64_t), saved, NODES * sizeof(uint64_t));
    }
    to->len += locks_report_size(NODES);
}

typedef struct {
    node_reports_t reports[NODES];
    void          *all[NODES];
    size_t         lens[NODES];
    uint64_t       next[NODES];
    int            chain[NODES];
    uint64_t       vt[NODES];
    lock_plan_t    plan;
} world_t;

static void plan(world_t *w, int primary)
{
    int node;

    for (node = 0; node < NODES; node++) {
        w->all[node]  = (w->reports[node].len > 0) ? w->reports[node].bytes : NULL;
        w->lens[node] = w->reports[node].len;
    }
    w->plan.chain = w->chain;
    w->plan.vt    = w->vt;
    locks_plan_lock(LOCK, NODES, w->all, w->lens, w->next, primary, &w->plan);
}

Test(lock_rebuild, the_holder_first_then_the_waiters_in_node_order) {
    world_t w = { 0 };

    report(&w.reports[3], LOCK, REPORT_WAITING, NULL, NULL);
    report(&w.reports[2], LOCK, REPORT_TOKEN, NULL, NULL);
    report(&w.reports[0], LOCK, REPORT_WAITING, NULL, NULL);
    plan(&w, 1);
    cr_assert_eq(w.plan.holder, 2);
    cr_assert_eq(w.plan.len, 3);
    cr_assert(w.chain[0] == 2 && w.chain[1] == 0 && w.chain[2] == 3);
}

Test(lock_rebuild, a_lost_token_goes_to_the_first_waiter_with_a_new_one) {
    world_t w = { 0 };

    /* node 1 held the token and failed: nobody reports it */
    report(&w.reports[3], LOCK, REPORT_WAITING, NULL, NULL);
    report(&w.reports[2], LOCK, REPORT_WAITING, NULL, NULL);
    plan(&w, 0);
    cr_assert_eq(w.plan.holder, -1, "a new token");
    cr_assert_eq(w.plan.len, 2);
    cr_assert(w.chain[0] == 2 && w.chain[1] == 3);
}

Test(lock_rebuild, a_lost_token_nobody_waits_for_waits_at_the_primary_home) {
    world_t w = { 0 };
    const uint64_t saved[NODES] = { 1, 2, 3, 4 };

    report(&w.reports[0], LOCK, REPORT_HOME | REPORT_SAVED, NULL, saved);
    plan(&w, 3);
    cr_assert_eq(w.plan.holder, -1);
    cr_assert_eq(w.plan.len, 1);
    cr_assert_eq(w.chain[0], 3);
}

Test(lock_rebuild, the_new_vt_holds_every_vt_reported_and_the_failed_nodes_durable_intervals) {
    world_t w = { 0 };
    const uint64_t saved[NODES]   = { 5, 7, 2, 9 };
    const uint64_t seen_0[NODES]  = { 6, 3, 2, 1 };
    const uint64_t seen_2[NODES]  = { 1, 1, 8, 1 };

    /* node 1, the last holder, failed with nextRelease 11; node 3 with 4,
     * behind the saved entry 9, which a marker never lowers */
    w.next[1] = 11;
    w.next[3] = 4;
    report(&w.reports[0], LOCK, REPORT_HOME | REPORT_SAVED | REPORT_WAITING, seen_0, saved);
    report(&w.reports[2], LOCK, REPORT_WAITING, seen_2, NULL);
    plan(&w, 0);
    cr_assert_eq(w.plan.holder, -1);
    cr_assert(w.vt[0] == 6 && w.vt[1] == 11 && w.vt[2] == 8 && w.vt[3] == 9,
              "vt %lu %lu %lu %lu", (unsigned long)w.vt[0], (unsigned long)w.vt[1],
              (unsigned long)w.vt[2], (unsigned long)w.vt[3]);
}

Test(lock_rebuild, reports_of_other_locks_are_not_mixed_in) {
    world_t w = { 0 };
    const uint64_t other[NODES] = { 99, 99, 99, 99 };

    report(&w.reports[1], LOCK + 1, REPORT_TOKEN | REPORT_SAVED, other, other);
    report(&w.reports[1], LOCK, REPORT_WAITING, NULL, NULL);
    report(&w.reports[2], LOCK + 1, REPORT_WAITING, other, NULL);
    plan(&w, 0);
    cr_assert_eq(w.plan.holder, -1);
    cr_assert_eq(w.plan.len, 1);
    cr_assert_eq(w.chain[0], 1);
    cr_assert(w.vt[0] == 0 && w.vt[3] == 0);
}

Test(lock_rebuild, a_lock_no_survivor_knows_gets_no_queue) {
    world_t w = { 0 };

    report(&w.reports[1], LOCK + 1, REPORT_TOKEN, NULL, NULL);
    plan(&w, 0);
    cr_assert_eq(w.plan.len, 0);
}

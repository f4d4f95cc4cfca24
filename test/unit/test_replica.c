/*
 * lib/replica without a transport: the placement table, the marker decision
 * (replica_resolve) over every combination of its inputs, and the
 * FTSVM_STOP_AT syntax.
 *
 * The decision is checked against a model of the propagation, not against a
 * second copy of its rules: every state a writer W can leave a page and its
 * markers in when it dies (any interleaving of up to 4 concurrent releases,
 * any subset of them writing the page) is generated, and for each such
 * state the verdict must leave the page holding exactly W's last durable
 * interval (nextRelease reached it); every combination the model never
 * reaches must be called INCONSISTENT.
 */
#include "replica/replica.h"
#include "ftsvm.h"

#include <criterion/criterion.h>
#include <string.h>

/* ---- placement ---- */

static void check_placement(int replicas, int nodes, size_t nblocks)
{
    replica_placement_t p;
    size_t b, *as_primary, *as_secondary, lo, hi;
    uint8_t *used;
    int which, n;

    cr_assert_eq(replica_placement_build(&p, replicas, nodes, 0, nblocks), FTSVM_OK);
    cr_assert_eq(p.replicas, nodes == 1 ? 1 : replicas);
    as_primary = calloc((size_t)nodes, sizeof(size_t));
    as_secondary = calloc((size_t)nodes, sizeof(size_t));
    used = calloc((size_t)nodes * p.slots_cap, 1);
    replica_placement = p;
    for (b = 0; b < nblocks; b++) {
        int primary = replica_home(b, REPLICA_PRIMARY);
        int secondary = replica_home(b, REPLICA_SECONDARY);

        cr_assert(primary >= 0 && primary < nodes);
        if (p.replicas == 1) {
            cr_assert_eq(secondary, -1);
            /* the single-home placement of the previous protocol */
            cr_assert_eq(primary, (int)(b % (size_t)nodes));
            cr_assert_eq(replica_slot(b, REPLICA_PRIMARY), b / (size_t)nodes);
        } else {
            cr_assert(secondary >= 0 && secondary < nodes && secondary != primary,
                      "block %zu: homes %d and %d", b, primary, secondary);
            as_secondary[secondary]++;
        }
        as_primary[primary]++;
        for (which = 0; which < p.replicas; which++) {
            int home = replica_home(b, which);
            size_t slot = replica_slot(b, which);

            cr_assert_lt(slot, p.slots_cap, "block %zu slot %zu of %zu", b, slot, p.slots_cap);
            cr_assert_eq(used[(size_t)home * p.slots_cap + slot], 0,
                         "two blocks in slot %zu of node %d", slot, home);
            used[(size_t)home * p.slots_cap + slot] = 1;
        }
    }
    /* balanced: shares differ by at most one period's worth of one node */
    for (which = 0; which < p.replicas; which++) {
        size_t *count = which ? as_secondary : as_primary;

        lo = hi = count[0];
        for (n = 1; n < nodes; n++) {
            lo = count[n] < lo ? count[n] : lo;
            hi = count[n] > hi ? count[n] : hi;
        }
        cr_assert_leq(hi - lo, p.period_slots, "%d nodes, %zu blocks: %zu..%zu", nodes,
                      nblocks, lo, hi);
    }
    for (n = 0; n < nodes; n++) {
        cr_assert(nodes == 1 ? p.backup[n] == -1 : (p.backup[n] >= 0 && p.backup[n] != n));
    }
    free(as_primary);
    free(as_secondary);
    free(used);
    memset(&replica_placement, 0, sizeof(replica_placement));
    replica_placement_free(&p);
}

Test(placement, every_block_has_two_distinct_balanced_homes_and_its_own_slots) {
    static const size_t sizes[] = { 1, 5, 64, 1000, 4096 };
    int nodes, replicas;
    size_t i;

    for (nodes = 1; nodes <= 9; nodes++) {
        for (replicas = 1; replicas <= 2; replicas++) {
            for (i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
                check_placement(replicas, nodes, sizes[i]);
            }
        }
    }
    check_placement(2, 100, 100000);   /* more nodes than offsets: the table stays small */
}

Test(placement, a_rows_blocks_are_consecutive_in_each_home_store) {
    replica_placement_t p;
    size_t nblocks = 1000, b;
    int which;

    /* re-replication copies a row as runs (lib/hlrc/home_copy.c) */
    cr_assert_eq(replica_placement_build(&p, 2, 5, 0, nblocks), FTSVM_OK);
    replica_placement_headroom(&p, 50);
    replica_placement = p;
    for (b = p.period; b < nblocks; b++) {
        for (which = 0; which < 2; which++) {
            cr_assert_eq(replica_home(b, which), replica_home(b - p.period, which));
            cr_assert_eq(replica_slot(b, which), replica_slot(b - p.period, which) + 1,
                         "block %zu", b);
            cr_assert_lt(replica_slot(b, which), p.slots_cap);
        }
    }
    /* a headroom slot's run fits in the store too */
    cr_assert_eq(replica_slot_index(nblocks - 1, (unsigned)p.period_stride - 1),
                 p.slots_cap - 1);
    memset(&replica_placement, 0, sizeof(replica_placement));
    replica_placement_free(&p);
}

Test(placement, each_node_stores_about_two_shares_with_two_replicas) {
    replica_placement_t p;

    cr_assert_eq(replica_placement_build(&p, 2, 4, 0, 65536), FTSVM_OK);
    cr_assert_eq(p.slots_max, 65536 / 2);
    replica_placement_free(&p);
    cr_assert_eq(replica_placement_build(&p, 1, 4, 0, 65536), FTSVM_OK);
    cr_assert_eq(p.slots_max, 65536 / 4);
    replica_placement_free(&p);
    cr_assert_eq(replica_placement_build(&p, 3, 4, 0, 10), FTSVM_EINVAL);
    cr_assert_eq(replica_placement_build(&p, 2, 0, 0, 10), FTSVM_EINVAL);
}

Test(placement, spares_home_nothing_at_start_and_keep_no_markers) {
    replica_placement_t p, q;
    size_t r;
    int n;

    /* 4 application nodes and 2 spares: the rows are those of 4 nodes */
    cr_assert_eq(replica_placement_build(&p, 2, 6, 2, 65536), FTSVM_OK);
    cr_assert_eq(replica_placement_build(&q, 2, 4, 0, 65536), FTSVM_OK);
    cr_assert_eq(p.nodes, 6);
    cr_assert_eq(p.app_nodes, 4);
    cr_assert_eq(p.period, q.period);
    cr_assert_eq(p.slots_max, q.slots_max);
    for (r = 0; r < p.period; r++) {
        cr_assert_eq(memcmp(&p.rows[r], &q.rows[r], sizeof(p.rows[r])), 0, "row %zu", r);
        cr_assert(p.rows[r].home[0] < 4 && p.rows[r].home[1] < 4, "row %zu", r);
    }
    for (n = 0; n < 6; n++) {
        cr_assert_eq(p.backup[n], n < 4 ? (n + 1) % 4 : -1, "node %d", n);
    }
    replica_placement_free(&p);
    replica_placement_free(&q);
    /* spares need two application nodes and two homes per page */
    cr_assert_eq(replica_placement_build(&p, 2, 2, 1, 10), FTSVM_EINVAL);
    cr_assert_eq(replica_placement_build(&p, 1, 4, 1, 10), FTSVM_EINVAL);
    cr_assert_eq(replica_placement_build(&p, 2, 4, 4, 10), FTSVM_EINVAL);
}

/* ---- the marker decision against a model of the propagation ---- */

#define N 4              /* intervals of W */
#define V (N + 1)        /* word values 0..N */

/* Steps of one interval k of W (DESIGN.md 5.2); the page's words and the
 * markers are functions of where every interval is. */
enum {
    S_CLOSED, S_PENDING_P, S_DIFFS_P, S_NEXT, S_APPLIED_P,
    S_PENDING_S, S_DIFFS_S, S_APPLIED_S, S_LAST
};

typedef struct tuple {
    uint64_t ap, pp, as, ps, last, next;
} tuple_t;

typedef struct model {
    uint8_t touches;     /* bit k-1: interval k writes the page */
    uint8_t stage[N + 1];
} model_t;

static int touches(const model_t *m, int k)
{
    return (m->touches >> (k - 1)) & 1;
}

static tuple_t words_of(const model_t *m, uint64_t *durable_p)
{
    tuple_t t = { 0, 0, 0, 0, 0, 0 };
    int k;

    *durable_p = 0;
    for (k = 1; k <= N; k++) {
        int s = m->stage[k];

        if (s >= S_NEXT) {
            t.next = (uint64_t)k;
        }
        if (s >= S_LAST) {
            t.last = (uint64_t)k;
        }
        if (!touches(m, k)) {
            continue;
        }
        if (s >= S_NEXT) {
            *durable_p = (uint64_t)k;   /* the page must end with it */
        }
        if (s >= S_APPLIED_P) {
            t.ap = (uint64_t)k;
        }
        if (s >= S_PENDING_P && s < S_APPLIED_P) {
            t.pp = (uint64_t)k;
        }
        if (s >= S_APPLIED_S) {
            t.as = (uint64_t)k;
        }
        if (s >= S_PENDING_S && s < S_APPLIED_S) {
            t.ps = (uint64_t)k;
        }
    }
    return t;
}

static int can_step(const model_t *m, int k)
{
    int s = m->stage[k], j;

    if (s == S_LAST) {
        return 0;
    }
    if (s == S_CLOSED && touches(m, k)) {
        /* page locking: the page's previous interval of W has ended phase 2 */
        for (j = k - 1; j >= 1; j--) {
            if (touches(m, j)) {
                return m->stage[j] >= S_APPLIED_S;
            }
        }
    }
    /* markers in interval order */
    if (s == S_DIFFS_P && k > 1) {
        return m->stage[k - 1] >= S_NEXT;
    }
    if (s == S_APPLIED_S && k > 1) {
        return m->stage[k - 1] >= S_LAST;
    }
    return 1;
}

static size_t index_of(const tuple_t *t)
{
    return ((((t->ap * V + t->pp) * V + t->as) * V + t->ps) * V + t->last) * V + t->next;
}

#define STATES (V * V * V * V * V * V)

/* reachable[i]: 0 never; else 1 + the durable interval of that state */
static void explore(const model_t *m, uint8_t *reachable, uint8_t *seen, size_t *count)
{
    uint64_t durable;
    tuple_t t = words_of(m, &durable);
    size_t i = index_of(&t), key = 0;
    model_t next;
    int k;

    for (k = 1; k <= N; k++) {
        key = key * 9 + m->stage[k];
    }
    key = key * 16 + m->touches;
    if (seen[key]) {
        return;
    }
    seen[key] = 1;
    cr_assert(reachable[i] == 0 || reachable[i] == 1 + durable,
              "the same words with two different outcomes");
    if (reachable[i] == 0) {
        (*count)++;
    }
    reachable[i] = (uint8_t)(1 + durable);
    for (k = 1; k <= N; k++) {
        if (can_step(m, k)) {
            next = *m;
            next.stage[k]++;
            explore(&next, reachable, seen, count);
        }
    }
}

Test(resolve, every_combination_of_applied_pending_last_and_next) {
    uint8_t *reachable = calloc(STATES, 1), *seen = calloc((size_t)9 * 9 * 9 * 9 * 16, 1);
    size_t count = 0, i, inconsistent = 0;
    model_t m;
    tuple_t t;

    for (m.touches = 0; m.touches < 16; m.touches++) {
        memset(m.stage, 0, sizeof(m.stage));
        explore(&m, reachable, seen, &count);
    }
    cr_assert_gt(count, 100, "the model reaches %zu states", count);
    for (i = 0; i < STATES; i++) {
        size_t r = i;
        replica_words_t primary, secondary;
        replica_verdict_t alive, failed;
        uint64_t result = 0;

        t.next = r % V; r /= V;
        t.last = r % V; r /= V;
        t.ps = r % V;   r /= V;
        t.as = r % V;   r /= V;
        t.pp = r % V;   r /= V;
        t.ap = r % V;
        primary = (replica_words_t){ t.ap, t.pp };
        secondary = (replica_words_t){ t.as, t.ps };
        alive  = replica_resolve(1, &primary, &secondary, t.last, t.next);
        failed = replica_resolve(0, &primary, &secondary, t.last, t.next);
        if (reachable[i] == 0) {
            cr_assert(alive == REPLICA_INCONSISTENT && failed == REPLICA_INCONSISTENT,
                      "unreachable: applied %lu/%lu pending %lu/%lu last %lu next %lu "
                      "gave %s / %s", t.ap, t.as, t.pp, t.ps, t.last, t.next,
                      replica_verdict_name(alive), replica_verdict_name(failed));
            inconsistent++;
            continue;
        }
        /* a live writer finishes its own release */
        cr_assert_eq(alive, (t.pp || t.ps) ? REPLICA_WAIT : REPLICA_NOTHING,
                     "alive: applied %lu/%lu pending %lu/%lu last %lu next %lu gave %s",
                     t.ap, t.as, t.pp, t.ps, t.last, t.next, replica_verdict_name(alive));
        /* a failed one: what the page holds after the verdict is carried out */
        switch (failed) {
        case REPLICA_ROLL_BACK:         result = t.as; break;
        case REPLICA_COMPLETE:          result = t.pp; break;
        case REPLICA_COPY_FROM_PRIMARY: result = t.ap; break;
        case REPLICA_NOTHING:
            cr_assert_eq(t.ap, t.as);
            result = t.ap;
            break;
        default:
            cr_assert_fail("failed writer: applied %lu/%lu pending %lu/%lu last %lu next %lu "
                           "gave %s", t.ap, t.as, t.pp, t.ps, t.last, t.next,
                           replica_verdict_name(failed));
        }
        cr_assert_eq(result, (uint64_t)reachable[i] - 1,
                     "applied %lu/%lu pending %lu/%lu last %lu next %lu: %s leaves interval "
                     "%lu, the last durable one is %u", t.ap, t.as, t.pp, t.ps, t.last, t.next,
                     replica_verdict_name(failed), result, reachable[i] - 1);
    }
    cr_log_info("%zu reachable combinations, %zu inconsistent", count, inconsistent);
    free(reachable);
    free(seen);
}

/* ---- FTSVM_STOP_AT ---- */

Test(stop, points_parse_with_node_page_count_and_interval) {
    replica_stop_t s;

    cr_assert_eq(replica_stop_parse("", 3, &s), FTSVM_OK);
    cr_assert_eq(s.point, REPLICA_STOP_NONE);
    cr_assert_eq(replica_stop_parse("next-release@1", 3, &s), FTSVM_OK);
    cr_assert(s.point == REPLICA_STOP_NEXT_RELEASE && s.node == 1 && s.interval == 0);
    cr_assert_eq(replica_stop_parse("phase2-diffs:3@2#7", 3, &s), FTSVM_OK);
    cr_assert(s.point == REPLICA_STOP_PHASE2_DIFFS && s.pages == 3 && s.node == 2 &&
              s.interval == 7);
    cr_assert_eq(replica_stop_parse("before-phase1@0#1", 3, &s), FTSVM_OK);
    cr_assert(s.point == REPLICA_STOP_BEFORE_PHASE1 && s.interval == 1);
}

Test(stop, bad_points_are_refused) {
    static const char *const bad[] = {
        "next-release", "nowhere@1", "phase1-diffs@1", "next-release:2@1", "phase1-diffs:0@1",
        "last-release@3", "last-release@-1", "last-release@1#0", "last-release@1#x",
        "phase1-diffs:2x@1", "@1",
    };
    replica_stop_t s = { REPLICA_STOP_LAST_RELEASE, 0, 2, 9 };
    size_t i;

    for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        cr_assert_eq(replica_stop_parse(bad[i], 3, &s), FTSVM_EINVAL, "%s", bad[i]);
    }
    cr_assert(s.point == REPLICA_STOP_LAST_RELEASE && s.node == 2, "untouched on error");
}

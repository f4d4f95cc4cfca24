/*
 * What a reader does about a writer W's entries on one page, given the two
 * homes' applied/pending words for W and W's markers (DESIGN.md 5.4, the
 * seed's three failure cases). A pure function, so that every combination
 * can be tested (test/unit/test_replica.c, suite "resolve"); page recovery
 * (lib/hlrc/recover.c) applies its verdict to the homes of a failed writer.
 *
 * What the protocol allows, per page (page locking: one interval of W at a
 * time is in flight on a page, and it finishes both phases before W's next
 * interval on that page begins):
 *   - a pending entry is newer than what that home applied;
 *   - the secondary is never ahead of the primary; while W's interval k is
 *     in phase 1 on the page, the secondary holds exactly the primary's
 *     previous version; in phase 2 the primary holds k itself;
 *   - both homes are never pending at once (W not being a home of the page:
 *     a writer that is the primary writes both in phase 1, but then its own
 *     failure leaves one home and this decision is not asked);
 *   - applied at a primary (pending cleared) comes after nextRelease >= k;
 *     pending at a secondary too; lastRelease >= k only after the
 *     secondary applied k; lastRelease <= nextRelease.
 * Words outside these rules are INCONSISTENT: a reader must not act on them.
 */
#include "replica.h"

replica_verdict_t replica_resolve(int writer_alive, const replica_words_t *primary,
                                  const replica_words_t *secondary, uint64_t last_release,
                                  uint64_t next_release)
{
    uint64_t ap = primary->applied, pp = primary->pending;
    uint64_t as = secondary->applied, ps = secondary->pending;

    if (last_release > next_release || as > ap || ap > next_release ||
        (pp != 0 && ps != 0)) {
        return REPLICA_INCONSISTENT;
    }
    if (pp != 0) {
        /* phase 1 of pp: the secondary still has the previous version, and
         * phase 2 of pp has not ended */
        if (pp <= ap || as != ap || pp <= last_release) {
            return REPLICA_INCONSISTENT;
        }
        if (writer_alive) {
            return REPLICA_WAIT;
        }
        return (pp > next_release) ? REPLICA_ROLL_BACK : REPLICA_COMPLETE;
    }
    if (ps != 0) {
        /* phase 2 of ps: the primary has it applied, lastRelease is behind */
        if (ps != ap || ps <= as || ps <= last_release) {
            return REPLICA_INCONSISTENT;
        }
        return writer_alive ? REPLICA_WAIT : REPLICA_COPY_FROM_PRIMARY;
    }
    if (ap > as) {
        /* phase 1 of ap ended, phase 2 not begun on this page (or its
         * pending word not written yet): lastRelease cannot cover it */
        if (ap <= last_release) {
            return REPLICA_INCONSISTENT;
        }
        return writer_alive ? REPLICA_NOTHING : REPLICA_COPY_FROM_PRIMARY;
    }
    return REPLICA_NOTHING;
}

const char *replica_verdict_name(replica_verdict_t verdict)
{
    static const char *const names[] = {
        [REPLICA_NOTHING] = "nothing",           [REPLICA_WAIT] = "wait",
        [REPLICA_ROLL_BACK] = "roll back",       [REPLICA_COMPLETE] = "complete",
        [REPLICA_COPY_FROM_PRIMARY] = "copy from primary",
        [REPLICA_INCONSISTENT] = "inconsistent",
    };

    return ((unsigned)verdict < sizeof(names) / sizeof(names[0])) ? names[verdict] : "?";
}

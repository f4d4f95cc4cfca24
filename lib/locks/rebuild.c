/*
 * Lock queues across a view change (DESIGN.md section 6, "Recovery").
 *
 * At adoption the queues stop: messages of the old view are void from then
 * on (the epoch), no request leaves, and handoffs promised by the old queues
 * are forgotten. Then every survivor reports, for every lock it knows, what
 * it has (the token, a thread inside), whether it waits, the lock's vt as it
 * last saw it and, at a home, the vt the last releaser saved there. From the
 * same reports every survivor computes the same new queue per lock: the
 * holder first (or, when the failed node had the token or it was in flight,
 * a new token with the highest vt reported, the failed node's entry raised
 * to its nextRelease), then the waiters in node order. Each node applies its
 * own part — its place in the queue, the homes' records — and after one more
 * exchange the queues run again.
 */
#include "locks_int.h"
#include "common/log.h"
#include "ftsvm.h"
#include "replica/replica.h"

#include <stdlib.h>
#include <string.h>

size_t locks_report_size(int nodes)
{
    return sizeof(lock_report_t) + 2u * (size_t)nodes * sizeof(uint64_t);
}

static size_t report_size(void)
{
    return locks_report_size(locks.nodes);
}

int locks_freeze(void *arg, const failure_change_t *change)
{
    lock_state_t *st;
    size_t b;

    (void)arg;
    pthread_mutex_lock(&locks.mutex);
    locks.epoch  = change->view;
    locks.frozen = 1;
    for (b = 0; b < BUCKETS; b++) {
        for (st = locks.buckets[b]; st != NULL; st = st->next) {
            st->forward_to = -1;
            st->acked      = -1;
            st->free_grant = -1;
        }
    }
    pthread_mutex_unlock(&locks.mutex);
    return FTSVM_OK;
}

static uint8_t *build_report(size_t *len_p)
{
    size_t size = report_size(), n = 0, cap = 0, b;
    const uint64_t *slot;
    uint8_t *buf = NULL, *grown, *at;
    lock_state_t *st;
    lock_report_t r;
    int was;

    pthread_mutex_lock(&locks.mutex);
    for (b = 0; b < BUCKETS; b++) {
        for (st = locks.buckets[b]; st != NULL; st = st->next) {
            int home = replica_was_home(st->id, locks.node, &was);

            r.lock  = st->id;
            r.flags = (st->token ? REPORT_TOKEN : 0) |
                      ((st->requested || (st->waiters > 0 && !st->token)) ? REPORT_WAITING : 0) |
                      ((home && st->home_tail >= 0) ? REPORT_HOME : 0);
            slot = (const uint64_t *)((uint8_t *)rdma_region_addr(locks.rdma, locks.region) +
                                      locks_vt_offset(st->id));
            if (home && slot[0] == (uint64_t)st->id + 1u) {
                r.flags |= REPORT_SAVED;
            }
            if (r.flags == 0) {
                continue;
            }
            if (n == cap) {
                cap = cap ? 2 * cap : 64;
                grown = realloc(buf, cap * size);
                if (grown == NULL) {
                    pthread_mutex_unlock(&locks.mutex);
                    free(buf);
                    return NULL;
                }
                buf = grown;
            }
            at = buf + n * size;
            memcpy(at, &r, sizeof(r));
            memcpy(at + sizeof(r), st->vt, (size_t)locks.nodes * sizeof(uint64_t));
            memset(at + sizeof(r) + (size_t)locks.nodes * 8u, 0, (size_t)locks.nodes * 8u);
            if (r.flags & REPORT_SAVED) {
                memcpy(at + sizeof(r) + (size_t)locks.nodes * 8u, slot + 2,
                       (size_t)locks.nodes * 8u);
            }
            n++;
        }
    }
    pthread_mutex_unlock(&locks.mutex);
    *len_p = n * size;
    return (buf != NULL) ? buf : malloc(1);
}

void locks_plan_lock(uint32_t id, int nodes, void **all, const size_t *lens,
                     const uint64_t *next, int primary, lock_plan_t *plan)
{
    size_t size = locks_report_size(nodes), i;
    int node, j, known = 0;

    plan->holder = -1;
    plan->len = 0;
    memset(plan->vt, 0, (size_t)nodes * 8u);
    for (node = 0; node < nodes; node++) {
        const uint8_t *at;

        for (i = 0; all[node] != NULL && i + size <= lens[node]; i += size) {
            lock_report_t r;
            const uint64_t *vt, *saved;

            at = (const uint8_t *)all[node] + i;
            memcpy(&r, at, sizeof(r));
            if (r.lock != id) {
                continue;
            }
            known = 1;
            vt = (const uint64_t *)(at + sizeof(r));
            saved = vt + nodes;
            for (j = 0; j < nodes; j++) {
                plan->vt[j] = (vt[j] > plan->vt[j]) ? vt[j] : plan->vt[j];
                if ((r.flags & REPORT_SAVED) && saved[j] > plan->vt[j]) {
                    plan->vt[j] = saved[j];
                }
            }
            if ((r.flags & REPORT_TOKEN) && plan->holder < 0) {
                plan->holder = node;
            }
        }
    }
    if (!known) {
        return;
    }
    for (j = 0; j < nodes; j++) {
        if (next[j] > plan->vt[j]) {
            plan->vt[j] = next[j];   /* every interval of it up to nextRelease is durable */
        }
    }
    if (plan->holder >= 0) {
        plan->chain[plan->len++] = plan->holder;
    }
    for (node = 0; node < nodes; node++) {
        for (i = 0; node != plan->holder && all[node] != NULL && i + size <= lens[node];
             i += size) {
            lock_report_t r;

            memcpy(&r, (const uint8_t *)all[node] + i, sizeof(r));
            if (r.lock == id && (r.flags & REPORT_WAITING)) {
                plan->chain[plan->len++] = node;
                break;
            }
        }
    }
    if (plan->len == 0) {
        /* the token was with the failed node, or on its way: a new one waits,
         * idle, at the lock's primary home */
        plan->chain[plan->len++] = primary;
    }
}

/* under the mutex: this node's part of the plan */
static void apply_plan(uint32_t id, const lock_plan_t *plan)
{
    lock_state_t *st = locks_state(id);
    int i, me = -1;

    if (st == NULL) {
        return;
    }
    for (i = 0; i < plan->len; i++) {
        me = (plan->chain[i] == locks.node) ? i : me;
    }
    if (locks_home(id, REPLICA_PRIMARY) == locks.node ||
        locks_home(id, REPLICA_SECONDARY) == locks.node) {
        st->home_tail   = plan->chain[plan->len - 1];
        st->home_second = (plan->len > 1) ? plan->chain[plan->len - 2] : -1;
        st->free_grant  = -1;
        if (locks.replicated) {
            locks_record_store(st);
        }
    }
    if (me < 0) {
        return;
    }
    st->pred[0] = (me > 0) ? plan->chain[me - 1] : -1;
    st->pred[1] = (me > 1) ? plan->chain[me - 2] : -1;
    if (me + 1 < plan->len) {
        st->forward_to = plan->chain[me + 1];
        st->acked      = st->forward_to;   /* both homes have the rebuilt queue */
    }
    if (me == 0 && plan->holder < 0) {
        memcpy(st->vt, plan->vt, (size_t)locks.nodes * sizeof(uint64_t));
        st->token     = 1;
        st->requested = 0;
        pthread_cond_broadcast(&st->cond);
        ftsvm_info("lock %u: its token was lost with a failed node; a new one is here", id);
    } else if (me > 0 && !st->token) {
        st->requested = 1;   /* its predecessor in the new queue hands it on */
    }
    /* the token moves only once every node has its part (thaw) */
}

/* Every lock id the reports name, once each, into ids[]; returns how many. */
static size_t report_ids(void **all, const size_t *lens, uint32_t *ids)
{
    size_t size = report_size(), nids = 0, i;
    int node;

    for (node = 0; node < locks.nodes; node++) {
        for (i = 0; all[node] != NULL && i + size <= lens[node]; i += size) {
            lock_report_t r;
            size_t k;

            memcpy(&r, (const uint8_t *)all[node] + i, sizeof(r));
            for (k = 0; k < nids && ids[k] != r.lock; k++) {
            }
            if (k == nids) {
                ids[nids++] = r.lock;
            }
        }
    }
    return nids;
}

/* Every node has its part: the queues run again, and an idle holder hands
 * its lock on in `view`. handoffs[]: nids entries of scratch. */
static void thaw(const uint32_t *ids, size_t nids, int *handoffs, uint64_t view)
{
    size_t i;
    int to;

    pthread_mutex_lock(&locks.mutex);
    locks.frozen = 0;
    pthread_cond_broadcast(&locks.thaw);
    for (i = 0; i < nids; i++) {
        lock_state_t *st = locks_state(ids[i]);

        handoffs[i] = (st != NULL) ? locks_handoff_target(st) : -1;   /* idle holders */
    }
    pthread_mutex_unlock(&locks.mutex);
    for (i = 0; i < nids; i++) {
        if ((to = handoffs[i]) >= 0) {
            locks_hand_on(locks_state(ids[i]), to, view);
        }
    }
}

int locks_rebuild(void *arg, const failure_change_t *change)
{
    size_t len = 0, *lens, size = report_size(), i;
    uint64_t *next = NULL, last;
    uint8_t *mine;
    lock_plan_t plan = { -1, NULL, 0, NULL };
    void **all = NULL, **acks = NULL;
    int node, status, *handoffs = NULL;
    uint32_t *ids = NULL;
    size_t nids = 0;

    (void)arg;
    mine = build_report(&len);
    if (mine == NULL) {
        return FTSVM_ENOMEM;
    }
    status = failure_gather(change, 11, mine, len, &all, &lens);
    free(mine);
    if (status != FTSVM_OK) {
        return status;
    }
    next = calloc((size_t)locks.nodes, sizeof(uint64_t));
    plan.chain = calloc((size_t)locks.nodes, sizeof(int));
    plan.vt = calloc((size_t)locks.nodes, sizeof(uint64_t));
    for (node = 0; node < locks.nodes; node++) {
        if (all[node] != NULL) {
            nids += lens[node] / size;
        }
    }
    ids = calloc(nids + 1, sizeof(uint32_t));
    handoffs = calloc(nids + 1, sizeof(int));
    if (next == NULL || plan.chain == NULL || plan.vt == NULL || ids == NULL ||
        handoffs == NULL) {
        status = FTSVM_ENOMEM;
        goto out;
    }
    for (node = 0; node < locks.nodes; node++) {
        if (!failure_member(node) && locks.replicated &&
            replica_markers_read(node, &last, &next[node]) != FTSVM_OK) {
            next[node] = 0;
        }
    }
    nids = report_ids(all, lens, ids);
    pthread_mutex_lock(&locks.mutex);
    for (i = 0; i < nids; i++) {
        locks_plan_lock(ids[i], locks.nodes, all, lens, next,
                        locks_home(ids[i], REPLICA_PRIMARY), &plan);
        if (plan.len > 0) {
            apply_plan(ids[i], &plan);
        }
    }
    pthread_mutex_unlock(&locks.mutex);
    /* every node has its part before any lock moves again */
    status = failure_gather(change, 12, NULL, 0, &acks, &lens);
    free(acks);
    if (status != FTSVM_OK) {
        goto out;
    }
    thaw(ids, nids, handoffs, change->view);
out:
    free(all);
    free(next);
    free(plan.chain);
    free(plan.vt);
    free(ids);
    free(handoffs);
    return status;
}

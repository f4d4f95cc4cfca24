/*
 * Replicated queue locks (DESIGN.md section 6, seed 002 section 5 and its
 * Figure 1).
 *
 * The primary home of lock l records the tail of the requester queue and the
 * second-to-last; the secondary mirrors both. A request from R goes to the
 * primary, which updates both records and sends:
 *   - to R: QUEUED with R's two predecessors (recorded for recovery);
 *   - to the former tail T: FORWARD "hand the lock to R";
 *   - to the secondary: MIRROR "R queued after T"; the secondary updates its
 *     copy and sends ACK to T (or to the primary when the lock was free).
 * T hands the lock on only when it has both the forward and the ack, so the
 * two homes agree on the queue whenever the lock moves. The critical path is
 * unchanged (request, forward, grant); the ack travels beside the forward.
 *
 * Before the lock leaves a release, the releaser saves the lock's vector
 * timestamp at the lock's primary home (at the secondary when it is the
 * primary) with one-sided writes: the vt a new holder needs if this one
 * fails. It is saved at every release, local ones too, because a local
 * release also orders writes before the next holder.
 *
 * A node that has the token keeps it after its threads release the lock:
 * its threads pass it among themselves with no message, and the node gives
 * it up only when a forward (and its ack) arrived and no local thread waits.
 *
 * FTSVM_REPLICAS=1: one home, no QUEUED, MIRROR, ACK or saved vt: the
 * single-home queue lock.
 */
#include "locks_int.h"
#include "common/log.h"
#include "common/stats.h"
#include "failure/failure.h"
#include "ftsvm.h"
#include "hlrc/hlrc.h"
#include "replica/replica.h"
#include "runtime/runtime.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

locks_t locks;

int locks_home(uint32_t id, int which)
{
    return replica_home(id, which);
}

int locks_held_here(unsigned except)
{
    lock_state_t *st;
    int b, held = 0;

    pthread_mutex_lock(&locks.mutex);
    for (b = 0; b < BUCKETS && !held; b++) {
        for (st = locks.buckets[b]; st != NULL && !held; st = st->next) {
            held = st->id != except && (st->held || st->waiters > 0 || st->requested);
        }
    }
    pthread_mutex_unlock(&locks.mutex);
    return held;
}

/* ---- the region: queue records of the locks homed here, saved vts ---- */

void locks_region_sizes(int nodes, size_t sizes[LOCKS_NREGIONS])
{
    sizes[0] = (size_t)LOCKS_SLOTS * (RECORD_WORDS + 2u + (size_t)nodes) * sizeof(uint64_t);
}

uint64_t locks_record_offset(uint32_t id)
{
    return (uint64_t)(id % LOCKS_SLOTS) * RECORD_WORDS * sizeof(uint64_t);
}

uint64_t locks_vt_offset(uint32_t id)
{
    return (uint64_t)LOCKS_SLOTS * RECORD_WORDS * sizeof(uint64_t) +
           (uint64_t)(id % LOCKS_SLOTS) * (2u + (uint64_t)locks.nodes) * sizeof(uint64_t);
}

/* at a home, under the mutex: its record as one-sided readers see it */
void locks_record_store(const lock_state_t *st)
{
    uint64_t *rec = (uint64_t *)((uint8_t *)rdma_region_addr(locks.rdma, locks.region) +
                                 locks_record_offset(st->id));

    __atomic_store_n(&rec[1], (uint64_t)(st->home_tail + 1), __ATOMIC_RELAXED);
    __atomic_store_n(&rec[2], (uint64_t)(st->home_second + 1), __ATOMIC_RELAXED);
    __atomic_store_n(&rec[3], rec[3] + 1, __ATOMIC_RELAXED);
    __atomic_store_n(&rec[0], (uint64_t)st->id + 1u, __ATOMIC_RELEASE);
}

/* Save the lock's vt at the home that is not us (primary, else secondary):
 * the words, then the tag that names them, then complete at that node. */
static int vt_save(lock_state_t *st, const uint64_t *vt)
{
    int home = locks_home(st->id, REPLICA_PRIMARY), status;
    uint64_t head[2] = { (uint64_t)st->id + 1u, ++st->saves };

    if (home == locks.node) {
        home = locks_home(st->id, REPLICA_SECONDARY);
    }
    if (home < 0 || !rdma_peer_alive(locks.rdma, home)) {
        return FTSVM_OK;   /* the home left: the view change's rebuild takes the vt
                              from the survivors' reports (rebuild.c) */
    }
    status = rdma_put(locks.rdma, home, locks.region, locks_vt_offset(st->id) + 16u, vt,
                      (size_t)locks.nodes * sizeof(uint64_t));
    /* the vt before the tag that says whose it is (same node: a fence) */
    if (status == FTSVM_OK) {
        status = rdma_fence(locks.rdma);
    }
    if (status == FTSVM_OK) {
        status = rdma_put(locks.rdma, home, locks.region, locks_vt_offset(st->id), head,
                          sizeof(head));
    }
    /* saved before the lock can move on */
    if (status == FTSVM_OK) {
        status = rdma_flush(locks.rdma, home);
    }
    stats_add(&locks.stats, LOCKS_STAT_VT_SAVES, 1);
    /* a home that failed under the save: the queue rebuild after the view
     * change takes the vt from the holders' reports instead */
    return (status == FTSVM_EPEER) ? FTSVM_OK : status;
}

/* ---- lock states ---- */

lock_state_t *locks_state(uint32_t id)
{
    lock_state_t **chain = &locks.buckets[id % BUCKETS], *st;

    for (st = *chain; st != NULL; st = st->next) {
        if (st->id == id) {
            return st;
        }
    }
    st = calloc(1, sizeof(*st) + (size_t)locks.nodes * sizeof(uint64_t));
    if (st == NULL) {
        return NULL;
    }
    st->id          = id;
    st->forward_to  = -1;
    st->acked       = -1;
    st->pred[0]     = st->pred[1] = -1;
    st->home_tail   = -1;
    st->home_second = -1;
    st->free_grant  = -1;
    pthread_cond_init(&st->cond, NULL);
    st->next = *chain;
    *chain   = st;
    return st;
}

/* `epoch`: the view the sender's decision was made in, read under the
 * mutex with the state it decided from (a view change may come between the
 * decision and the send; the message must then be void) */
static int send_msg(unsigned type, int to, uint32_t id, int node, int pred0, int pred1,
                    uint64_t epoch)
{
    lock_msg_t msg = { .lock = id, .node = (uint32_t)node, .pred = { pred0, pred1 },
                       .epoch = epoch };

    return rdma_am_send(locks.rdma, to, type, &msg, sizeof(msg));
}

static int send_grant(uint32_t id, int to, const uint64_t *vt, uint64_t epoch)
{
    size_t len = sizeof(lock_msg_t) + (size_t)locks.nodes * sizeof(uint64_t);
    uint8_t *msg = malloc(len);
    lock_msg_t hdr = { .lock = id, .node = (uint32_t)locks.node, .pred = { -1, -1 },
                       .epoch = epoch };
    int status;

    if (msg == NULL) {
        return FTSVM_ENOMEM;
    }
    memcpy(msg, &hdr, sizeof(hdr));
    memcpy(msg + sizeof(hdr), vt, (size_t)locks.nodes * sizeof(uint64_t));
    stats_add(&locks.stats, LOCKS_STAT_GRANTS, 1);
    status = rdma_am_send(locks.rdma, to, LOCK_AM_GRANT, msg, len);
    free(msg);
    return status;
}

/* Under the mutex: may the token leave now, and to whom? (-1: not yet) */
int locks_handoff_target(lock_state_t *st)
{
    int to;

    if (!st->token || st->held || st->waiters > 0 || st->forward_to < 0 || locks.frozen) {
        return -1;   /* (frozen: a view change is rebuilding the queues) */
    }
    if (locks.replicated && st->acked != st->forward_to &&
        locks_home(st->id, REPLICA_SECONDARY) >= 0) {
        stats_add(&locks.stats, LOCKS_STAT_HELD_FOR_ACK, 1);
        return -1;   /* the secondary has not recorded the requester yet */
    }
    to = st->forward_to;
    st->forward_to = -1;
    st->acked = -1;
    st->token = 0;
    return to;
}

/* A message from a peer: ids in range; `here` (if >= 0) names the home this
 * node must be of the lock, `from` (if >= 0) the home the sender must be. */
static int valid_msg(const char *what, const lock_msg_t *msg, int src, int here, int from)
{
    const char *why = NULL;

    if (msg->epoch != locks.epoch) {
        /* sent before a view change (its queue was rebuilt since) or after
         * one this node has not recovered yet */
        ftsvm_debug("dropped a lock %s for lock %u from node %d of view %llu (now %llu)", what,
                    msg->lock, src, (unsigned long long)msg->epoch,
                    (unsigned long long)locks.epoch);
        return 0;
    }
    if (msg->lock > LOCKS_MAX_ID || msg->node >= (uint32_t)locks.nodes ||
        msg->pred[0] < -1 || msg->pred[0] >= locks.nodes || msg->pred[1] < -1 ||
        msg->pred[1] >= locks.nodes) {
        why = "an id is out of range";
    } else if (here >= 0 && locks_home(msg->lock, here) != locks.node) {
        why = (here == REPLICA_PRIMARY) ? "this node is not its primary home"
                                        : "this node is not its secondary home";
    } else if (from >= 0 && locks_home(msg->lock, from) != src &&
               !(from == REPLICA_SECONDARY && replica_copy_target(msg->lock) == src)) {
        /* (the new secondary of a row being copied may ack before this
         * node has the row's commit: rereplicate.c) */
        why = (from == REPLICA_PRIMARY) ? "the sender is not its primary home"
                                        : "the sender is not its secondary home";
    }
    if (why != NULL) {
        ftsvm_warn("rejected a lock %s for lock %u from node %d: %s", what, msg->lock, src, why);
        return 0;
    }
    return 1;
}

/* ---- handlers (protocol thread) ---- */

/* Under the mutex: valid_msg checked the epoch without it; a view change may
 * have come since (it freezes the queues under the mutex). */
static int still_current(const lock_msg_t *msg)
{
    return msg->epoch == locks.epoch;
}

/* at the primary */
static void on_request(void *arg, int src, const void *payload, size_t len)
{
    int secondary, prev, prev2, requester;
    lock_state_t *st;
    lock_msg_t msg;
    uint64_t epoch;

    memcpy(&msg, payload, sizeof(msg));
    if (!valid_msg("request", &msg, src, REPLICA_PRIMARY, -1)) {
        return;
    }
    requester = (int)msg.node;
    replica_fault_point(REPLICA_FAULT_LOCK_HOME);
    secondary = locks.replicated ? locks_home(msg.lock, REPLICA_SECONDARY) : -1;
    pthread_mutex_lock(&locks.mutex);
    st = still_current(&msg) ? locks_state(msg.lock) : NULL;
    if (st == NULL) {
        pthread_mutex_unlock(&locks.mutex);
        if (still_current(&msg)) {
            ftsvm_error("out of memory for lock %u", msg.lock);
        }
        return;
    }
    epoch = locks.epoch;
    prev  = st->home_tail;
    prev2 = st->home_second;
    st->home_second = prev;
    st->home_tail   = requester;
    if (prev < 0 && secondary >= 0) {
        st->free_grant = requester;   /* granted when the secondary has recorded it */
    }
    if (locks.replicated) {
        locks_record_store(st);
    }
    pthread_mutex_unlock(&locks.mutex);
    ftsvm_debug("lock %u: node %d queued after node %d", msg.lock, requester, prev);
    if (secondary >= 0) {
        send_msg(LOCK_AM_QUEUED, requester, msg.lock, requester, prev, prev2, epoch);
        stats_add(&locks.stats, LOCKS_STAT_MIRRORS, 1);
        send_msg(LOCK_AM_MIRROR, secondary, msg.lock, requester, prev, prev2, epoch);
    }
    if (prev >= 0) {
        stats_add(&locks.stats, LOCKS_STAT_FORWARDS, 1);
        send_msg(LOCK_AM_FORWARD, prev, msg.lock, requester, -1, -1, epoch);
    } else if (secondary < 0) {
        /* nobody ever had it: free, with an empty history */
        uint64_t *zero = calloc((size_t)locks.nodes, sizeof(uint64_t));

        if (zero != NULL) {
            send_grant(msg.lock, requester, zero, epoch);
            free(zero);
        }
    }
}

/* at the secondary */
static void on_mirror(void *arg, int src, const void *payload, size_t len)
{
    lock_state_t *st;
    lock_msg_t msg;
    int to;

    memcpy(&msg, payload, sizeof(msg));
    if (!valid_msg("mirror", &msg, src, REPLICA_SECONDARY, REPLICA_PRIMARY)) {
        return;
    }
    pthread_mutex_lock(&locks.mutex);
    if (!still_current(&msg)) {
        pthread_mutex_unlock(&locks.mutex);
        return;
    }
    st = locks_state(msg.lock);
    if (st != NULL) {
        st->home_second = msg.pred[0];
        st->home_tail   = (int)msg.node;
        locks_record_store(st);
    }
    pthread_mutex_unlock(&locks.mutex);
    if (st == NULL) {
        ftsvm_error("out of memory for lock %u", msg.lock);
        return;
    }
    if (locks.ack_delay_ms > 0) {
        /* tests: the holder must not forward before this ack */
        struct timespec ts = { (time_t)(locks.ack_delay_ms / 1000),
                               (long)(locks.ack_delay_ms % 1000) * 1000000L };
        nanosleep(&ts, NULL);
    }
    /* the former tail may now hand the lock on; a free lock is granted by
     * the primary */
    to = (msg.pred[0] >= 0) ? msg.pred[0] : src;
    stats_add(&locks.stats, LOCKS_STAT_ACKS, 1);
    send_msg(LOCK_AM_ACK, to, msg.lock, (int)msg.node, -1, -1, msg.epoch);
}

void locks_hand_on(lock_state_t *st, int to, uint64_t epoch)
{
    uint64_t *vt = malloc((size_t)locks.nodes * sizeof(uint64_t));

    if (vt == NULL) {
        ftsvm_error("out of memory handing lock %u to node %d", st->id, to);
        return;
    }
    pthread_mutex_lock(&locks.mutex);
    memcpy(vt, st->vt, (size_t)locks.nodes * sizeof(uint64_t));
    pthread_mutex_unlock(&locks.mutex);
    send_grant(st->id, to, vt, epoch);
    free(vt);
}

/* at the former tail: "hand the lock to R" from the primary */
static void on_forward(void *arg, int src, const void *payload, size_t len)
{
    lock_state_t *st;
    lock_msg_t msg;
    int to = -1;

    memcpy(&msg, payload, sizeof(msg));
    if (!valid_msg("forward", &msg, src, -1, REPLICA_PRIMARY)) {
        return;
    }
    pthread_mutex_lock(&locks.mutex);
    st = still_current(&msg) ? locks_state(msg.lock) : NULL;
    if (st != NULL) {
        st->forward_to = (int)msg.node;   /* now, or at the next release */
        to = locks_handoff_target(st);
    }
    pthread_mutex_unlock(&locks.mutex);
    if (to >= 0) {
        locks_hand_on(st, to, msg.epoch);
    }
}

/* at the former tail (or the primary of a free lock): the secondary has R */
static void on_ack(void *arg, int src, const void *payload, size_t len)
{
    uint64_t *zero = NULL;
    lock_state_t *st;
    lock_msg_t msg;
    int to = -1;

    memcpy(&msg, payload, sizeof(msg));
    if (!valid_msg("ack", &msg, src, -1, REPLICA_SECONDARY)) {
        return;
    }
    pthread_mutex_lock(&locks.mutex);
    st = still_current(&msg) ? locks_state(msg.lock) : NULL;
    if (st != NULL && st->free_grant == (int)msg.node &&
        locks_home(msg.lock, REPLICA_PRIMARY) == locks.node) {
        st->free_grant = -1;
        zero = calloc((size_t)locks.nodes, sizeof(uint64_t));
    } else if (st != NULL) {
        st->acked = (int)msg.node;
        to = locks_handoff_target(st);
    }
    pthread_mutex_unlock(&locks.mutex);
    if (zero != NULL) {
        send_grant(msg.lock, (int)msg.node, zero, msg.epoch);   /* nobody ever had it */
        free(zero);
    } else if (to >= 0) {
        locks_hand_on(st, to, msg.epoch);
    }
}

/* at the requester: its two predecessors, for recovery */
static void on_queued(void *arg, int src, const void *payload, size_t len)
{
    lock_state_t *st;
    lock_msg_t msg;

    memcpy(&msg, payload, sizeof(msg));
    if (!valid_msg("queued", &msg, src, -1, REPLICA_PRIMARY)) {
        return;
    }
    pthread_mutex_lock(&locks.mutex);
    st = still_current(&msg) ? locks_state(msg.lock) : NULL;
    if (st != NULL) {
        st->pred[0] = msg.pred[0];
        st->pred[1] = msg.pred[1];
    }
    pthread_mutex_unlock(&locks.mutex);
}

/* at the requester */
static void on_grant(void *arg, int src, const void *payload, size_t len)
{
    lock_state_t *st;
    lock_msg_t msg;

    memcpy(&msg, payload, sizeof(msg));
    if (msg.epoch != locks.epoch) {
        ftsvm_debug("dropped a grant of lock %u from node %d of view %llu", msg.lock, src,
                    (unsigned long long)msg.epoch);
        return;
    }
    if (msg.lock > LOCKS_MAX_ID) {
        ftsvm_warn("rejected a lock grant for lock %u from node %d", msg.lock, src);
        return;
    }
    ftsvm_debug("lock %u: granted to node %d by node %d", msg.lock, locks.node, src);
    pthread_mutex_lock(&locks.mutex);
    st = still_current(&msg) ? locks_state(msg.lock) : NULL;
    if (st != NULL) {
        memcpy(st->vt, (const uint8_t *)payload + sizeof(msg),
               (size_t)locks.nodes * sizeof(uint64_t));
        st->token     = 1;
        st->requested = 0;
        pthread_cond_broadcast(&st->cond);
    }
    pthread_mutex_unlock(&locks.mutex);
}

/* ---- the API ---- */

int locks_acquire(unsigned lock)
{
    uint64_t *vt;
    lock_state_t *st;
    int status = FTSVM_OK, local = 1;

    if (lock > LOCKS_MAX_ID) {
        ftsvm_error("ftsvm_lock_acquire: lock %u out of range (0..%u)", lock, LOCKS_MAX_ID);
        return FTSVM_ERANGE;
    }
    vt = malloc((size_t)locks.nodes * sizeof(uint64_t));
    if (vt == NULL) {
        return FTSVM_ENOMEM;
    }
    pthread_mutex_lock(&locks.mutex);
    st = locks_state(lock);
    if (st == NULL) {
        pthread_mutex_unlock(&locks.mutex);
        free(vt);
        return FTSVM_ENOMEM;
    }
    st->waiters++;
    while (!st->token || st->held) {
        if (!st->token && !st->requested && (locks.frozen || replica_copying(lock))) {
            /* queues are being rebuilt, or the lock's homes are being
             * copied to a new secondary (records_copy.c) */
            pthread_cond_wait(&locks.thaw, &locks.mutex);
            continue;
        }
        if (!st->token && !st->requested && locks_home(lock, REPLICA_PRIMARY) < 0) {
            /* no view brings a home back: the request would wait for good */
            st->waiters--;
            pthread_mutex_unlock(&locks.mutex);
            free(vt);
            ftsvm_error("lock %u (placement row %zu) has no home left (%s)", lock,
                        (size_t)lock % replica_placement.period, locks.replicated ?
                        "both of its homes failed" : "FTSVM_REPLICAS=1 keeps one copy");
            return FTSVM_EPEER;
        }
        if (!st->token && !st->requested) {
            uint64_t epoch = locks.epoch;

            st->requested = 1;
            local = 0;
            pthread_mutex_unlock(&locks.mutex);
            stats_add(&locks.stats, LOCKS_STAT_REQUESTS, 1);
            status = send_msg(LOCK_AM_REQUEST, locks_home(lock, REPLICA_PRIMARY), lock,
                              locks.node, -1, -1, epoch);
            if (status == FTSVM_EPEER) {
                /* the primary failed: the view change that removes it
                 * rebuilds the queue, with us in it (we stay requested) */
                status = FTSVM_OK;
            }
            replica_fault_point(REPLICA_FAULT_LOCK_WAIT);
            pthread_mutex_lock(&locks.mutex);
            if (status != FTSVM_OK) {
                st->requested = 0;
                st->waiters--;
                pthread_mutex_unlock(&locks.mutex);
                free(vt);
                return status;
            }
            continue;
        }
        pthread_cond_wait(&st->cond, &locks.mutex);
    }
    st->waiters--;
    st->held = 1;
    memcpy(vt, st->vt, (size_t)locks.nodes * sizeof(uint64_t));
    pthread_mutex_unlock(&locks.mutex);
    replica_fault_point(REPLICA_FAULT_LOCK_HELD);
    stats_add(&locks.stats, local ? LOCKS_STAT_LOCAL_HANDOFFS : LOCKS_STAT_ACQUIRES, 1);
    status = hlrc_acquire(vt);
    free(vt);
    return status;
}

int locks_release(unsigned lock)
{
    uint64_t *vt = NULL, epoch = 0;
    lock_state_t *st;
    int status, to = -1, j;

    if (lock > LOCKS_MAX_ID) {
        ftsvm_error("ftsvm_lock_release: lock %u out of range (0..%u)", lock, LOCKS_MAX_ID);
        return FTSVM_ERANGE;
    }
    /* this node's writes reach both homes before the lock moves on */
    status = hlrc_release();
    if (status != FTSVM_OK) {
        return status;
    }
    vt = malloc((size_t)locks.nodes * sizeof(uint64_t));
    if (vt == NULL) {
        return FTSVM_ENOMEM;
    }
    pthread_mutex_lock(&locks.mutex);
    st = locks_state(lock);
    if (st == NULL || !st->held) {
        pthread_mutex_unlock(&locks.mutex);
        free(vt);
        ftsvm_error("ftsvm_lock_release: lock %u is not held by this node", lock);
        return FTSVM_ESTATE;
    }
    hlrc_vt_copy(vt);
    for (j = 0; j < locks.nodes; j++) {
        if (vt[j] > st->vt[j]) {
            st->vt[j] = vt[j];
        }
    }
    memcpy(vt, st->vt, (size_t)locks.nodes * sizeof(uint64_t));
    if (locks.replicated) {
        /* still held: nobody hands it on before the vt is saved */
        pthread_mutex_unlock(&locks.mutex);
        status = vt_save(st, vt);
        pthread_mutex_lock(&locks.mutex);
    }
    st->held = 0;
    if (st->waiters > 0) {
        pthread_cond_broadcast(&st->cond);   /* a thread of ours takes it: no message */
    } else {
        to = locks_handoff_target(st);
        epoch = locks.epoch;   /* the handoff belongs to this view */
    }
    pthread_mutex_unlock(&locks.mutex);
    if (to >= 0) {
        int sent = send_grant(lock, to, vt, epoch);

        sent = (sent == FTSVM_EPEER) ? FTSVM_OK : sent;   /* it failed: the rebuild repairs */
        status = (status == FTSVM_OK) ? sent : status;
    }
    free(vt);
    return status;
}

int locks_check_homes(void)
{
    uint64_t mine[RECORD_WORDS], theirs[RECORD_WORDS];
    const uint64_t *rec;
    lock_state_t *st;
    size_t b, bad = 0;
    int status = FTSVM_OK;

    if (!locks.replicated) {
        return FTSVM_OK;
    }
    for (b = 0; b < BUCKETS && status == FTSVM_OK; b++) {
        pthread_mutex_lock(&locks.mutex);
        for (st = locks.buckets[b]; st != NULL && status == FTSVM_OK; st = st->next) {
            int secondary = locks_home(st->id, REPLICA_SECONDARY);

            if (locks_home(st->id, REPLICA_PRIMARY) != locks.node || secondary < 0) {
                continue;
            }
            rec = (const uint64_t *)((uint8_t *)rdma_region_addr(locks.rdma, locks.region) +
                                     locks_record_offset(st->id));
            memcpy(mine, rec, sizeof(mine));
            if (mine[0] != (uint64_t)st->id + 1u) {
                continue;   /* the slot now records another lock */
            }
            status = rdma_get(locks.rdma, secondary, locks.region, locks_record_offset(st->id),
                              theirs, sizeof(theirs));
            if (status == FTSVM_EPEER) {
                status = FTSVM_OK;   /* the secondary failed: a view change is coming */
                continue;
            }
            if (status == FTSVM_OK && (theirs[0] != mine[0] || theirs[1] != mine[1] ||
                                       theirs[2] != mine[2])) {
                ftsvm_error("lock %u: the primary (node %d) records tail %d and second-to-last "
                            "%d, the secondary (node %d) tail %d and second-to-last %d", st->id,
                            locks.node, (int)mine[1] - 1, (int)mine[2] - 1, secondary,
                            (int)theirs[1] - 1, (int)theirs[2] - 1);
                bad++;
            }
        }
        pthread_mutex_unlock(&locks.mutex);
    }
    return (status == FTSVM_OK && bad > 0) ? FTSVM_EPROTO : status;
}

int locks_init(unsigned region)
{
    const ftsvm_runtime_t *rt = runtime_booting();
    static const char *const names[LOCKS_STAT_COUNT] = {
        [LOCKS_STAT_ACQUIRES] = "remote_acquires", [LOCKS_STAT_LOCAL_HANDOFFS] = "local_acquires",
        [LOCKS_STAT_REQUESTS] = "requests_sent",   [LOCKS_STAT_FORWARDS] = "forwards_sent",
        [LOCKS_STAT_GRANTS] = "grants_sent",       [LOCKS_STAT_MIRRORS] = "mirrors_sent",
        [LOCKS_STAT_ACKS] = "acks_sent",           [LOCKS_STAT_HELD_FOR_ACK] = "held_for_ack",
        [LOCKS_STAT_VT_SAVES] = "vt_saves",
    };
    static const struct { unsigned type; rdma_am_handler_t fn; } handlers[] = {
        { LOCK_AM_REQUEST, on_request }, { LOCK_AM_FORWARD, on_forward },
        { LOCK_AM_QUEUED, on_queued },   { LOCK_AM_MIRROR, on_mirror },
        { LOCK_AM_ACK, on_ack },
    };
    size_t grant = sizeof(lock_msg_t) + (size_t)rt->config.nodes * sizeof(uint64_t), i;
    int status = FTSVM_OK;

    memset(&locks, 0, sizeof(locks));
    locks.rdma       = rt->rdma;
    locks.region     = region;
    locks.node       = rt->config.node;
    locks.nodes      = rt->config.nodes;
    locks.replicated = (replica_count() == 2);
    locks.ack_delay_ms = rt->config.lock_ack_delay_ms;
    pthread_mutex_init(&locks.mutex, NULL);
    pthread_cond_init(&locks.thaw, NULL);
    if (grant > RDMA_AM_MAX_PAYLOAD) {
        ftsvm_error("locks: %d nodes do not fit a lock grant message", locks.nodes);
        return FTSVM_ERANGE;
    }
    for (i = 0; i < sizeof(handlers) / sizeof(handlers[0]) && status == FTSVM_OK; i++) {
        status = rdma_am_register(locks.rdma, handlers[i].type, sizeof(lock_msg_t),
                                  sizeof(lock_msg_t), handlers[i].fn, NULL);
    }
    if (status == FTSVM_OK) {
        status = rdma_am_register(locks.rdma, LOCK_AM_GRANT, grant, grant, on_grant, NULL);
    }
    if (status != FTSVM_OK) {
        return status;
    }
    locks.stats.module = "locks";
    locks.stats.count  = LOCKS_STAT_COUNT;
    memcpy(locks.stats.names, names, sizeof(names));
    stats_register(&locks.stats);
    hlrc_on_check_homes(locks_check_homes);
    status = failure_on_recovery(0, locks_freeze, NULL);
    if (status == FTSVM_OK) {
        status = failure_on_recovery(20, locks_rebuild, NULL);
    }
    if (status == FTSVM_OK && locks.replicated) {
        status = replica_on_copy(locks_copy_records, locks_rows_changed);
    }
    return status;
}

void locks_fini(void)
{
    lock_state_t *st, *next;
    size_t b;

    if (locks.stats.module != NULL) {
        stats_unregister(&locks.stats);
        hlrc_on_check_homes(NULL);
    }
    for (b = 0; b < BUCKETS; b++) {
        for (st = locks.buckets[b]; st != NULL; st = next) {
            next = st->next;
            pthread_cond_destroy(&st->cond);
            free(st);
        }
    }
    pthread_mutex_destroy(&locks.mutex);
    memset(&locks, 0, sizeof(locks));
}

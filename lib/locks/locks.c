/*
 * Queue locks with one home (DESIGN.md section 6, without the secondary).
 *
 * The home of lock l (l mod nodes) records the tail of the requester queue.
 * A request goes to the home, which makes the requester the tail and sends
 * "forward to R" to the former tail, or grants the lock itself when nobody
 * ever had it. The token travels with the lock's vector timestamp.
 *
 * A node that has the token keeps it after its threads release the lock:
 * its threads pass it among themselves with no message, and the node gives
 * it up only when a forward arrives and no local thread waits.
 * Critical path of a remote acquire: request to the home, forward to the
 * holder, grant to the requester.
 */
#include "locks.h"
#include "common/log.h"
#include "common/stats.h"
#include "ftsvm.h"
#include "hlrc/hlrc.h"
#include "runtime.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

enum { LOCK_AM_REQUEST = 16, LOCK_AM_FORWARD = 17, LOCK_AM_GRANT = 18 };

typedef struct lock_state {
    struct lock_state *next;          /* hash chain */
    uint32_t           id;
    int                token;         /* this node has the lock */
    int                held;          /* a thread of this node is inside */
    int                requested;     /* our request is on its way */
    int                waiters;       /* threads of this node waiting */
    int                forward_to;    /* node to hand the lock to, -1 none */
    int                home_tail;     /* at the home: last requester, -1 none */
    pthread_cond_t     cond;
    uint64_t           vt[];          /* nodes entries */
} lock_state_t;

typedef struct {
    uint32_t lock;
    uint32_t node;
} lock_msg_t;

enum { LOCKS_STAT_ACQUIRES, LOCKS_STAT_LOCAL_HANDOFFS, LOCKS_STAT_REQUESTS,
       LOCKS_STAT_FORWARDS, LOCKS_STAT_GRANTS, LOCKS_STAT_COUNT };

#define BUCKETS 4096

static struct {
    rdma_ctx_t     *rdma;
    int             node, nodes;
    pthread_mutex_t mutex;
    lock_state_t   *buckets[BUCKETS];
    stats_group_t   stats;
} locks;

static lock_state_t *lock_get(uint32_t id)
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
    st->id         = id;
    st->forward_to = -1;
    st->home_tail  = -1;
    pthread_cond_init(&st->cond, NULL);
    st->next = *chain;
    *chain   = st;
    return st;
}

static int send_grant(uint32_t id, int to, const uint64_t *vt)
{
    size_t len = sizeof(lock_msg_t) + (size_t)locks.nodes * sizeof(uint64_t);
    uint8_t *msg = malloc(len);
    lock_msg_t hdr = { .lock = id, .node = (uint32_t)locks.node };
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

/* at the home */
static void on_request(void *arg, int src, const void *payload, size_t len)
{
    lock_msg_t msg;
    lock_state_t *st;
    int prev;
    uint64_t *zero;

    memcpy(&msg, payload, sizeof(msg));
    if (msg.lock > LOCKS_MAX_ID || msg.node >= (uint32_t)locks.nodes ||
        msg.lock % (uint32_t)locks.nodes != (uint32_t)locks.node) {
        ftsvm_warn("rejected a lock request for lock %u from node %d", msg.lock, src);
        return;
    }
    pthread_mutex_lock(&locks.mutex);
    st = lock_get(msg.lock);
    if (st == NULL) {
        pthread_mutex_unlock(&locks.mutex);
        ftsvm_error("out of memory for lock %u", msg.lock);
        return;
    }
    prev = st->home_tail;
    st->home_tail = (int)msg.node;
    pthread_mutex_unlock(&locks.mutex);
    if (prev < 0) {
        /* nobody ever had it: the lock is free, with an empty history */
        zero = calloc((size_t)locks.nodes, sizeof(uint64_t));
        if (zero != NULL) {
            send_grant(msg.lock, (int)msg.node, zero);
            free(zero);
        }
        return;
    }
    stats_add(&locks.stats, LOCKS_STAT_FORWARDS, 1);
    rdma_am_send(locks.rdma, prev, LOCK_AM_FORWARD, &msg, sizeof(msg));
}

/* at the former tail */
static void on_forward(void *arg, int src, const void *payload, size_t len)
{
    uint64_t *vt = NULL;
    lock_msg_t msg;
    lock_state_t *st;

    memcpy(&msg, payload, sizeof(msg));
    if (msg.lock > LOCKS_MAX_ID || msg.node >= (uint32_t)locks.nodes) {
        ftsvm_warn("rejected a lock forward for lock %u from node %d", msg.lock, src);
        return;
    }
    pthread_mutex_lock(&locks.mutex);
    st = lock_get(msg.lock);
    if (st != NULL && st->token && !st->held && st->waiters == 0) {
        st->token = 0;
        vt = malloc((size_t)locks.nodes * sizeof(uint64_t));
        if (vt != NULL) {
            memcpy(vt, st->vt, (size_t)locks.nodes * sizeof(uint64_t));
        }
    } else if (st != NULL) {
        st->forward_to = (int)msg.node;   /* handed on at the next release */
    }
    pthread_mutex_unlock(&locks.mutex);
    if (vt != NULL) {
        send_grant(msg.lock, (int)msg.node, vt);
        free(vt);
    }
}

/* at the requester */
static void on_grant(void *arg, int src, const void *payload, size_t len)
{
    lock_msg_t msg;
    lock_state_t *st;

    memcpy(&msg, payload, sizeof(msg));
    if (msg.lock > LOCKS_MAX_ID) {
        ftsvm_warn("rejected a lock grant for lock %u from node %d", msg.lock, src);
        return;
    }
    pthread_mutex_lock(&locks.mutex);
    st = lock_get(msg.lock);
    if (st != NULL) {
        memcpy(st->vt, (const uint8_t *)payload + sizeof(msg),
               (size_t)locks.nodes * sizeof(uint64_t));
        st->token     = 1;
        st->requested = 0;
        pthread_cond_broadcast(&st->cond);
    }
    pthread_mutex_unlock(&locks.mutex);
}

int locks_acquire(unsigned lock)
{
    uint64_t *vt;
    lock_state_t *st;
    lock_msg_t msg = { .lock = lock, .node = (uint32_t)locks.node };
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
    st = lock_get(lock);
    if (st == NULL) {
        pthread_mutex_unlock(&locks.mutex);
        free(vt);
        return FTSVM_ENOMEM;
    }
    st->waiters++;
    while (!st->token || st->held) {
        if (!st->token && !st->requested) {
            st->requested = 1;
            local = 0;
            pthread_mutex_unlock(&locks.mutex);
            stats_add(&locks.stats, LOCKS_STAT_REQUESTS, 1);
            status = rdma_am_send(locks.rdma, (int)(lock % (unsigned)locks.nodes),
                                  LOCK_AM_REQUEST, &msg, sizeof(msg));
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
    stats_add(&locks.stats, local ? LOCKS_STAT_LOCAL_HANDOFFS : LOCKS_STAT_ACQUIRES, 1);
    status = hlrc_acquire(vt);
    free(vt);
    return status;
}

int locks_release(unsigned lock)
{
    uint64_t *vt = NULL;
    lock_state_t *st;
    int status, to = -1, j;

    if (lock > LOCKS_MAX_ID) {
        ftsvm_error("ftsvm_lock_release: lock %u out of range (0..%u)", lock, LOCKS_MAX_ID);
        return FTSVM_ERANGE;
    }
    /* this node's writes reach the homes before the lock moves on */
    status = hlrc_release();
    if (status != FTSVM_OK) {
        return status;
    }
    pthread_mutex_lock(&locks.mutex);
    st = lock_get(lock);
    if (st == NULL || !st->held) {
        pthread_mutex_unlock(&locks.mutex);
        ftsvm_error("ftsvm_lock_release: lock %u is not held by this node", lock);
        return FTSVM_ESTATE;
    }
    vt = malloc((size_t)locks.nodes * sizeof(uint64_t));
    if (vt == NULL) {
        pthread_mutex_unlock(&locks.mutex);
        return FTSVM_ENOMEM;
    }
    hlrc_vt_copy(vt);
    for (j = 0; j < locks.nodes; j++) {
        if (vt[j] > st->vt[j]) {
            st->vt[j] = vt[j];
        }
    }
    st->held = 0;
    if (st->waiters > 0) {
        pthread_cond_broadcast(&st->cond);   /* a thread of ours takes it: no message */
    } else if (st->forward_to >= 0) {
        to = st->forward_to;
        st->forward_to = -1;
        st->token = 0;
        memcpy(vt, st->vt, (size_t)locks.nodes * sizeof(uint64_t));
    }
    pthread_mutex_unlock(&locks.mutex);
    if (to >= 0) {
        status = send_grant(lock, to, vt);
    }
    free(vt);
    return status;
}

int locks_init(void)
{
    const ftsvm_runtime_t *rt = runtime_booting();
    static const char *const names[LOCKS_STAT_COUNT] = {
        [LOCKS_STAT_ACQUIRES] = "remote_acquires", [LOCKS_STAT_LOCAL_HANDOFFS] = "local_acquires",
        [LOCKS_STAT_REQUESTS] = "requests_sent",   [LOCKS_STAT_FORWARDS] = "forwards_sent",
        [LOCKS_STAT_GRANTS] = "grants_sent",
    };
    size_t grant = sizeof(lock_msg_t) + (size_t)rt->config.nodes * sizeof(uint64_t);
    int status;

    memset(&locks, 0, sizeof(locks));
    locks.rdma  = rt->rdma;
    locks.node  = rt->config.node;
    locks.nodes = rt->config.nodes;
    pthread_mutex_init(&locks.mutex, NULL);
    if (grant > RDMA_AM_MAX_PAYLOAD) {
        ftsvm_error("locks: %d nodes do not fit a lock grant message", locks.nodes);
        return FTSVM_ERANGE;
    }
    status = rdma_am_register(locks.rdma, LOCK_AM_REQUEST, sizeof(lock_msg_t),
                              sizeof(lock_msg_t), on_request, NULL);
    if (status == FTSVM_OK) {
        status = rdma_am_register(locks.rdma, LOCK_AM_FORWARD, sizeof(lock_msg_t),
                                  sizeof(lock_msg_t), on_forward, NULL);
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
    return FTSVM_OK;
}

void locks_fini(void)
{
    lock_state_t *st, *next;
    size_t b;

    if (locks.stats.module != NULL) {
        stats_unregister(&locks.stats);
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

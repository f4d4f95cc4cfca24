/* What the files of lib/locks share: lock states, messages, the module's
 * state, and the steps of the protocol the view-change rebuild reuses. */
#ifndef FTSVM_LOCKS_INT_H
#define FTSVM_LOCKS_INT_H

#include "locks.h"
#include "common/stats.h"
#include "failure/failure.h"
#include "rdma/rdma.h"
#include "replica/replica.h"

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>

enum {
    LOCK_AM_REQUEST = 16, LOCK_AM_FORWARD = 17, LOCK_AM_GRANT = 18,
    LOCK_AM_QUEUED = 19, LOCK_AM_MIRROR = 20, LOCK_AM_ACK = 21,
};

typedef struct lock_state {
    struct lock_state *next;          /* hash chain */
    uint32_t           id;
    int                token;         /* this node has the lock */
    int                held;          /* a thread of this node is inside */
    int                requested;     /* our request is on its way */
    int                waiters;       /* threads of this node waiting */
    int                forward_to;    /* node to hand the lock to (primary said), -1 none */
    int                acked;         /* requester the secondary acked to us, -1 none */
    int                pred[2];       /* our predecessors when we last queued */
    int                home_tail;     /* at a home: last requester, -1 none */
    int                home_second;   /* at a home: the one before it, -1 none */
    int                free_grant;    /* at the primary: first requester, granted on the ack */
    uint64_t           saves;         /* vt saves made by this node */
    pthread_cond_t     cond;
    uint64_t           vt[];          /* nodes entries */
} lock_state_t;

typedef struct {
    uint32_t lock;
    uint32_t node;                    /* the requester */
    int32_t  pred[2];                 /* QUEUED, MIRROR: predecessors of `node` */
    uint64_t epoch;                   /* the sender's view: older ones are void */
} lock_msg_t;

enum { LOCKS_STAT_ACQUIRES, LOCKS_STAT_LOCAL_HANDOFFS, LOCKS_STAT_REQUESTS,
       LOCKS_STAT_FORWARDS, LOCKS_STAT_GRANTS, LOCKS_STAT_MIRRORS, LOCKS_STAT_ACKS,
       LOCKS_STAT_HELD_FOR_ACK, LOCKS_STAT_VT_SAVES, LOCKS_STAT_COUNT };

#define BUCKETS 4096
/* slots of the locks region, shared by lock id modulo LOCKS_SLOTS */
#define LOCKS_SLOTS 16384
#define RECORD_WORDS 4                /* tag (id + 1), tail + 1, second + 1, updates */

typedef struct locks {
    rdma_ctx_t     *rdma;
    unsigned        region;
    int             node, nodes;
    int             replicated;
    unsigned        ack_delay_ms;     /* FTSVM_LOCK_ACK_DELAY_MS (tests) */
    uint64_t        epoch;            /* the view whose queues are in force */
    int             frozen;           /* a view change is being recovered: no request */
    pthread_cond_t  thaw;
    pthread_mutex_t mutex;
    lock_state_t   *buckets[BUCKETS];
    stats_group_t   stats;
} locks_t;

extern locks_t locks;


/* locks.c */
int           locks_home(uint32_t id, int which);
uint64_t      locks_vt_offset(uint32_t id);
uint64_t      locks_record_offset(uint32_t id);
/* at a home, under the mutex: its queue record as one-sided readers see it */
void          locks_record_store(const lock_state_t *st);
/* under the mutex: the lock's state, created on first use (NULL: no memory) */
lock_state_t *locks_state(uint32_t id);
/* under the mutex: may the token leave now, and to whom? (-1: not yet) */
int           locks_handoff_target(lock_state_t *st);
/* send the token to `to` in view `epoch` (the one its handoff was decided in) */
void          locks_hand_on(lock_state_t *st, int to, uint64_t epoch);

/* records_copy.c: a placement row's lock records to its new secondary */
int  locks_copy_records(const replica_copy_t *copy, uint64_t *bytes_p);
void locks_rows_changed(const replica_copy_t *copy);

/* rebuild.c: the steps run at a view change */
int locks_freeze(void *arg, const failure_change_t *change);
int locks_rebuild(void *arg, const failure_change_t *change);

/* What one survivor reports of one lock at a view change. */
enum { REPORT_TOKEN = 1, REPORT_WAITING = 2, REPORT_HOME = 4, REPORT_SAVED = 8 };
typedef struct {
    uint32_t lock;
    uint32_t flags;
    /* then vt[nodes], saved[nodes] */
} lock_report_t;
size_t locks_report_size(int nodes);

/* the new queue of one lock, from every survivor's report of it */
typedef struct {
    int       holder;        /* has the token now, -1 none */
    int      *chain;         /* nodes: the queue, holder (or new token) first */
    int       len;
    uint64_t *vt;            /* for a new token */
} lock_plan_t;

/* The same plan on every survivor, a pure function of the reports:
 * all[node] holds lens[node] bytes of node's reports (NULL: none), next[node]
 * is nextRelease of a failed node (0 for a member), `primary` the lock's
 * primary home, where a new token waits when the old one was lost. chain and
 * vt hold `nodes` entries. len 0: no survivor knows the lock. */
void locks_plan_lock(uint32_t id, int nodes, void **all, const size_t *lens,
                     const uint64_t *next, int primary, lock_plan_t *plan);

#endif

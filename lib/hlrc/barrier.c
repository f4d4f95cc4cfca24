/*
 * Barrier (DESIGN.md section 4): over every registered thread of every live
 * node. The threads of a node gather first; the last to arrive does the
 * node's part:
 *   release; write (vt, then epoch e) into every live node's barrier slot for
 *   this node, with a fence between so that a slot showing e shows its vt;
 *   wait until every live node's slot here shows e; merge the vts; acquire.
 * A node can be at most one barrier ahead of another (it waits for everyone
 * at each), so a slot read for e shows e or e+1, and a vt of e+1 only
 * invalidates more, which is safe.
 *
 * With FTSVM_CHECK_HOMES a barrier takes two rounds, and between them,
 * with every release of every node complete, each node compares both homes
 * of its primary pages (check.c).
 *
 * A thread that returns while the others wait is no longer waited for
 * (hlrc_thread_left wakes them to count again).
 *
 * Eviction: a node that leaves after this barrier sets BARRIER_LEAVING in
 * the epoch it writes in the barrier's last round. Every node sees it when
 * it sees that slot's epoch, and tells lib/api before it returns (the
 * plan of the hand-over must be made before anyone issues anything after
 * the barrier). The flag makes that slot larger than any later epoch, so
 * later barriers do not wait for the node that left.
 */
#include "hlrc_int.h"
#include "common/log.h"
#include "ftsvm.h"

#include <sched.h>
#include <stdlib.h>
#include <string.h>

/* this node's barrier: the threads that arrived, and the leader among them
 * that runs the node's part */
#define BARRIER_LEAVING (1ull << 63)

static struct {
    int  (*wants)(void);
    void (*seen)(int node, uint64_t round);
    void (*go)(void);
} leave_hooks;

static struct {
    pthread_mutex_t lock;
    pthread_cond_t  cond;
    unsigned        arrived;
    int             leader;
    uint64_t        epoch;     /* barriers completed by this node */
    uint64_t        round;     /* rounds of the slots (a checked barrier takes two) */
    int             status;
    int             leaving;   /* this node said it leaves after this barrier */
} bar;

void hlrc_barrier_on_leave(int (*wants)(void), void (*seen)(int node, uint64_t round),
                           void (*go)(void))
{
    leave_hooks.wants = wants;
    leave_hooks.seen  = seen;
    leave_hooks.go    = go;
}

static uint64_t *slot_here(int writer)
{
    return (uint64_t *)rdma_region_addr(hlrc.rdma, HLRC_REGION_BARRIER) +
           (size_t)writer * (1u + (size_t)hlrc.nodes);
}

static int barrier_node(uint64_t epoch, int last)
{
    size_t words = 1u + (size_t)hlrc.nodes;
    uint64_t offset = (uint64_t)hlrc.node * words * 8u, *slot, *merged, word;
    int node, status, waiting;
    unsigned round = 0;

    status = hlrc_release();
    if (status != FTSVM_OK) {
        return status;
    }
    merged = calloc(words, sizeof(uint64_t));
    if (merged == NULL) {
        return FTSVM_ENOMEM;
    }
    hlrc_vt_copy(merged + 1);
    merged[0] = epoch;
    bar.leaving = last && leave_hooks.wants != NULL && leave_hooks.wants();
    word = epoch | (bar.leaving ? BARRIER_LEAVING : 0);
    for (node = 0; node < hlrc.app_nodes && status == FTSVM_OK; node++) {
        if (node == hlrc.node) {
            slot = slot_here(node);
            memcpy(slot + 1, merged + 1, (size_t)hlrc.nodes * 8u);
            __atomic_store_n(slot, word, __ATOMIC_RELEASE);
        } else if (rdma_peer_alive(hlrc.rdma, node)) {
            status = rdma_put(hlrc.rdma, node, HLRC_REGION_BARRIER, offset + 8u, merged + 1,
                              (size_t)hlrc.nodes * 8u);
            status = (status == FTSVM_EPEER) ? FTSVM_OK : status;   /* it left: skip it */
        }
    }
    /* vt before epoch at every node */
    if (status == FTSVM_OK) {
        status = rdma_fence(hlrc.rdma);
    }
    for (node = 0; node < hlrc.app_nodes && status == FTSVM_OK; node++) {
        if (node != hlrc.node && rdma_peer_alive(hlrc.rdma, node)) {
            status = rdma_put(hlrc.rdma, node, HLRC_REGION_BARRIER, offset, &word, 8);
            status = (status == FTSVM_EPEER) ? FTSVM_OK : status;
        }
    }
    replica_fault_point(REPLICA_FAULT_BARRIER);
    if (status == FTSVM_OK) {
        status = rdma_flush(hlrc.rdma, RDMA_ALL_PEERS);
        status = (status == FTSVM_EPEER) ? FTSVM_OK : status;   /* a failed node's flush */
    }
    do {
        waiting = 0;
        for (node = 0; node < hlrc.app_nodes && status == FTSVM_OK; node++) {
            if (rdma_peer_alive(hlrc.rdma, node) &&
                __atomic_load_n(slot_here(node), __ATOMIC_ACQUIRE) < epoch) {
                waiting = 1;
                break;
            }
        }
        if (waiting) {
            hlrc_backoff(&round);
        }
    } while (waiting && status == FTSVM_OK);
    for (node = 0; node < hlrc.app_nodes && status == FTSVM_OK; node++) {
        int j;

        if (node == hlrc.node || !rdma_peer_alive(hlrc.rdma, node)) {
            continue;
        }
        slot = slot_here(node);
        for (j = 0; j < hlrc.nodes; j++) {
            uint64_t v = __atomic_load_n(&slot[1 + j], __ATOMIC_RELAXED);

            if (v > merged[1 + j]) {
                merged[1 + j] = v;
            }
        }
    }
    if (status == FTSVM_OK) {
        status = hlrc_acquire(merged + 1);
    }
    for (node = 0; node < hlrc.app_nodes && status == FTSVM_OK && last; node++) {
        word = __atomic_load_n(slot_here(node), __ATOMIC_ACQUIRE);
        if ((word & BARRIER_LEAVING) && (word & ~BARRIER_LEAVING) == epoch &&
            leave_hooks.seen != NULL) {
            leave_hooks.seen(node, epoch);
        }
    }
    free(merged);
    stats_add(&hlrc.stats, HLRC_STAT_BARRIERS, 1);
    return status;
}

int hlrc_barrier(void)
{
    uint64_t epoch;
    int status;

    pthread_mutex_lock(&bar.lock);
    epoch = bar.epoch;
    bar.arrived++;
    while (bar.epoch == epoch) {
        if (!bar.leader && bar.arrived >= runtime_threads_running()) {
            bar.leader = 1;
            pthread_mutex_unlock(&bar.lock);
            status = barrier_node(++bar.round, !hlrc_checking_homes());
            if (status == FTSVM_OK && hlrc_checking_homes()) {
                int ret;

                status = hlrc_check_homes();
                ret = barrier_node(++bar.round, 1);   /* nobody writes while others check */
                status = (status == FTSVM_OK) ? ret : status;
            }
            if (status == FTSVM_OK && bar.leaving && leave_hooks.go != NULL) {
                leave_hooks.go();   /* returns only if this node stays after all */
                bar.leaving = 0;
            }
            pthread_mutex_lock(&bar.lock);
            bar.status  = status;
            bar.arrived = 0;
            bar.leader  = 0;
            bar.epoch++;
            pthread_cond_broadcast(&bar.cond);
            break;
        }
        pthread_cond_wait(&bar.cond, &bar.lock);
    }
    status = bar.status;
    pthread_mutex_unlock(&bar.lock);
    return status;
}

void hlrc_thread_left(void)
{
    pthread_mutex_lock(&bar.lock);
    pthread_cond_broadcast(&bar.cond);
    pthread_mutex_unlock(&bar.lock);
}

int hlrc_barrier_init(void)
{
    memset(&bar, 0, sizeof(bar));
    pthread_mutex_init(&bar.lock, NULL);
    pthread_cond_init(&bar.cond, NULL);
    runtime_on_thread_exit(hlrc_thread_left);
    return FTSVM_OK;
}

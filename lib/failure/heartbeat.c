/*
 * Heartbeats (DESIGN.md section 7): for hung or unreachable nodes; a dead
 * process is reported faster by the transport.
 *
 * Every FTSVM_HB_INTERVAL the heartbeat thread bumps this node's counter
 * (in its region) and reads every member's counter with a get that does not
 * wait. The get goes over the transport's liveness channel (rdma_get_start):
 * over TCP the peer answers from a thread that does nothing else, so a
 * counter that stands still means the peer's process stopped or cannot be
 * reached, not that its protocol thread is busy; this thread and that one
 * run at a raised priority where allowed (rdma_liveness_priority), so that
 * neither does the load of the machine. Each peer has a score, full at start (FTSVM_HB_TIMEOUT / interval):
 * +3 when its counter moved, -1 when it did not or the read has not come
 * back. One late beat costs little, so a loaded machine (gaps of 100 ms and
 * more on 2 cores) gives no false suspicion; a counter that stands still
 * for about FTSVM_HB_TIMEOUT empties the score and the peer is suspected.
 *
 * A node that finds most of the view silent at once is the one cut off: it
 * fences itself (FTSVM_QUORUM) rather than removing the others. "Silent"
 * means no beat seen for half the timeout.
 *
 * Each tick also asks recovery.c whether this node's recovery is stuck
 * (failure_recovery_stalled): the recovery thread cannot tell, it is the
 * one that waits, and this thread runs on its own clock.
 */
#include "failure_int.h"
#include "common/clock.h"
#include "common/log.h"
#include "ftsvm.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

typedef struct hb_peer {
    rdma_req_t *req;
    int         in_flight;
    uint64_t    value;       /* the get's landing place */
    uint64_t    last;        /* the last value seen */
    uint64_t    seen_ns;     /* when it last moved */
    long        score;
} hb_peer_t;

static hb_peer_t *peers;
static void (*beat_fn)(void);

void failure_on_beat(void (*fn)(void))
{
    beat_fn = fn;
}
static int hb_leak;          /* a get never came back: keep its buffer */

static uint64_t *my_counter(void)
{
    return rdma_region_addr(failure.rdma, failure.region);
}

/* Most of the view silent: this node is the one cut off. */
static int hb_cut_off(uint64_t now)
{
    int node, members = 0, heard = 0;
    uint64_t silent = failure.hb_timeout_ns / 2;

    for (node = 0; node < failure.nodes; node++) {
        if (!failure_member(node)) {
            continue;
        }
        members++;
        if (node == failure.node || now - peers[node].seen_ns < silent) {
            heard++;
        }
    }
    /* a tie keeps the half with the lowest member */
    if (2 * heard != members) {
        return 2 * heard < members;
    }
    node = failure_first_member();
    return !(node == failure.node || now - peers[node].seen_ns < silent);
}

static void hb_tick(long max_score)
{
    uint64_t now = clock_now_ns();
    char why[96];
    int node, ret;

    __atomic_add_fetch(my_counter(), 1, __ATOMIC_RELAXED);
    if (beat_fn != NULL) {
        beat_fn();
    }
    for (node = 0; node < failure.nodes; node++) {
        hb_peer_t *p = &peers[node];

        if (node == failure.node || !failure_member(node)) {
            continue;
        }
        if (p->in_flight) {
            ret = rdma_req_poll(failure.rdma, p->req);
            if (ret == 0) {
                p->score--;   /* no answer yet */
                stats_add(&failure.stats, FAILURE_STAT_MISSED_BEATS, 1);
            } else {
                p->in_flight = 0;
                if (ret == 1) {
                    stats_add(&failure.stats, FAILURE_STAT_HEARTBEATS, 1);
                    if (p->value != p->last) {
                        p->last = p->value;
                        p->seen_ns = now;
                        p->score = (p->score + 3 > max_score) ? max_score : p->score + 3;
                    } else {
                        p->score--;
                        stats_add(&failure.stats, FAILURE_STAT_MISSED_BEATS, 1);
                    }
                }
                /* an error is the transport's news, reported through it */
            }
        }
        if (!p->in_flight && failure_member(node)) {
            p->req = NULL;
            if (rdma_get_start(failure.rdma, node, failure.region, 0, &p->value,
                               sizeof(p->value), &p->req) == FTSVM_OK) {
                p->in_flight = 1;
            }
        }
    }
    for (node = 0; node < failure.nodes; node++) {
        if (node == failure.node || !failure_member(node) || peers[node].score > 0) {
            continue;
        }
        if (failure.quorum && hb_cut_off(now)) {
            failure_fence("it has lost contact with most of the view (cut off)");
        }
        snprintf(why, sizeof(why), "its heartbeat stood still for %.0f ms",
                 (double)(now - peers[node].seen_ns) / 1e6);
        failure_suspect(node, why);
        peers[node].score = max_score;   /* one announcement is enough */
    }
}

static void *hb_main(void *arg)
{
    long max_score = (long)(failure.hb_timeout_ns / failure.hb_interval_ns);
    uint64_t now = clock_now_ns(), next = now;
    char why[256];
    int node;

    (void)arg;
    rdma_liveness_priority("heartbeat");
    for (node = 0; node < failure.nodes; node++) {
        peers[node].score   = max_score;
        peers[node].seen_ns = now;
    }
    pthread_mutex_lock(&failure.lock);
    while (!failure.stop && !atomic_load(&failure.quiescing)) {
        struct timespec ts;
        uint64_t wait_ns;

        now = clock_now_ns();
        if (now < next) {
            wait_ns = next - now;
            failure_timespec_in(&ts, wait_ns);
            pthread_cond_timedwait(&failure.cond, &failure.lock, &ts);
            continue;
        }
        if (failure_recovery_stalled(now, why, sizeof(why))) {
            pthread_mutex_unlock(&failure.lock);
            failure_fence(why);
        }
        pthread_mutex_unlock(&failure.lock);
        hb_tick(max_score);
        pthread_mutex_lock(&failure.lock);
        next = clock_now_ns() + failure.hb_interval_ns;
    }
    pthread_mutex_unlock(&failure.lock);
    return NULL;
}

int failure_heartbeat_start(void)
{
    int ret;

    if (failure.hb_timeout_ns == 0 || failure.nodes < 2) {
        return FTSVM_OK;   /* FTSVM_HB_TIMEOUT=0: the transport alone detects */
    }
    peers = calloc((size_t)failure.nodes, sizeof(*peers));
    if (peers == NULL) {
        ftsvm_error("cannot allocate the heartbeat table");
        return FTSVM_ENOMEM;
    }
    ret = pthread_create(&failure.hb_thread, NULL, hb_main, NULL);
    if (ret != 0) {
        ftsvm_error("cannot start the heartbeat thread");
        free(peers);
        peers = NULL;
        return FTSVM_ESYS;
    }
    failure.hb_started = 1;
    return FTSVM_OK;
}

void failure_heartbeat_stop(void)
{
    int node, waiting = 1;
    uint64_t deadline;

    if (!failure.hb_started) {
        return;
    }
    pthread_mutex_lock(&failure.lock);
    atomic_store(&failure.quiescing, 1);
    pthread_cond_broadcast(&failure.cond);
    pthread_mutex_unlock(&failure.lock);
    pthread_join(failure.hb_thread, NULL);
    failure.hb_started = 0;
    /* the gets still out land in `peers`: let them, or keep it */
    deadline = clock_now_ns() + 200000000ull;
    while (waiting && clock_now_ns() < deadline) {
        waiting = 0;
        for (node = 0; node < failure.nodes; node++) {
            if (peers[node].in_flight && rdma_req_poll(failure.rdma, peers[node].req) == 0) {
                waiting = 1;
            } else {
                peers[node].in_flight = 0;
            }
        }
        if (waiting) {
            struct timespec ts = { 0, 1000000 };

            nanosleep(&ts, NULL);
        }
    }
    if (waiting) {
        hb_leak = 1;   /* a hung peer's get: its buffer must outlive us */
        return;
    }
    free(peers);
    peers = NULL;
}

/*
 * Recovery orchestration (DESIGN.md section 7): the recovery thread adopts
 * each new view and runs the modules' recovery steps in their order; each
 * step is written so that any survivor can finish it, and may exchange data
 * with the other members (failure_gather) — the exchange doubles as the
 * barrier between steps. A step that fails because another member failed
 * under it is run again in the next view.
 *
 * Gather: each member sends its contribution in pieces (FAILURE_AM_GATHER)
 * to every member; the pieces land in buffers keyed by (view, round,
 * sender), so a member may be ahead of another by a round, or by a view.
 *
 * Stalls. A recovery that has not ended 10 x FTSVM_HB_TIMEOUT (30 s at
 * least) after the news will not end: the node fences itself with the
 * reason rather than hang the job (the heartbeat thread asks,
 * failure_recovery_stalled). The cause known to come here: over UCX shared
 * memory, a node killed while it wrote a message into another's receive
 * queue leaves that queue blocked for good (UCX's mm transport has one
 * queue per receiver, and the dead sender's slot is never completed), so
 * the receiver hears nobody again (bench/shm_jam.c shows it). Every member
 * whose recovery waits on that node stalls too and fences as well: the job
 * ends with that error instead of a hang; telling the deaf node from those
 * waiting on it is open (issue 15's notes).
 */
#include "failure_int.h"
#include "common/clock.h"
#include "common/log.h"
#include "ftsvm.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct gather_hdr {
    uint64_t view;
    uint32_t round;
    uint32_t total;      /* bytes of the whole contribution */
    uint32_t offset;     /* of this piece */
    uint32_t len;        /* of this piece */
} gather_hdr_t;

#define GATHER_PIECE (RDMA_AM_MAX_PAYLOAD - sizeof(gather_hdr_t))

#define STALL_MIN_NS 30000000000ull

struct failure_gather_buf {
    failure_gather_buf_t *next;
    uint64_t  view;
    uint32_t  round;
    int       node;
    uint32_t  total, got;
    uint8_t  *bytes;
};

static failure_gather_buf_t *gather_find(uint64_t view, uint32_t round, int node, int create)
{
    failure_gather_buf_t *b;

    for (b = failure.gathers; b != NULL; b = b->next) {
        if (b->view == view && b->round == round && b->node == node) {
            return b;
        }
    }
    if (!create || (b = calloc(1, sizeof(*b))) == NULL) {
        return NULL;
    }
    b->view  = view;
    b->round = round;
    b->node  = node;
    b->next  = failure.gathers;
    failure.gathers = b;
    return b;
}

/* protocol thread */
static void on_gather(void *arg, int src, const void *payload, size_t len)
{
    gather_hdr_t hdr;
    failure_gather_buf_t *b;

    (void)arg;
    memcpy(&hdr, payload, sizeof(hdr));
    if (hdr.len != len - sizeof(hdr) || hdr.offset > hdr.total ||
        hdr.len > hdr.total - hdr.offset || hdr.total > (64u << 20)) {
        ftsvm_warn("rejected a recovery message from node %d: its lengths do not add up", src);
        return;
    }
    pthread_mutex_lock(&failure.lock);
    if (!failure.stop && hdr.view >= failure_view()) {
        b = gather_find(hdr.view, hdr.round, src, 1);
        if (b != NULL && b->bytes == NULL && (b->total = hdr.total) > 0) {
            b->bytes = malloc(hdr.total);
        }
        if (b != NULL && (b->bytes != NULL || hdr.total == 0) && b->total == hdr.total) {
            if (hdr.len > 0) {
                memcpy(b->bytes + hdr.offset, (const uint8_t *)payload + sizeof(hdr), hdr.len);
            }
            b->got += hdr.len + (hdr.total == 0);
            pthread_cond_broadcast(&failure.cond);
        }
    }
    pthread_mutex_unlock(&failure.lock);
}

static int gather_complete(const failure_gather_buf_t *b)
{
    return b != NULL && b->got >= (b->total ? b->total : 1);
}

static void gather_drop_before(uint64_t view)
{
    failure_gather_buf_t **pp = &failure.gathers, *b;

    while ((b = *pp) != NULL) {
        if (b->view < view) {
            *pp = b->next;
            free(b->bytes);
            free(b);
        } else {
            pp = &b->next;
        }
    }
}

/* This node's contribution to every other member, in pieces. */
static void gather_send(const failure_change_t *change, unsigned round, const void *mine,
                        size_t len)
{
    uint8_t piece[RDMA_AM_MAX_PAYLOAD];
    gather_hdr_t hdr = { change->view, round, (uint32_t)len, 0, 0 };
    size_t off;
    int node;

    for (node = 0; node < failure.nodes; node++) {
        if (!failure_member(node) || node == failure.node) {
            continue;
        }
        off = 0;
        do {
            hdr.offset = (uint32_t)off;
            hdr.len    = (uint32_t)((len - off < GATHER_PIECE) ? len - off : GATHER_PIECE);
            memcpy(piece, &hdr, sizeof(hdr));
            if (hdr.len > 0) {   /* an empty contribution: `mine` may be NULL */
                memcpy(piece + sizeof(hdr), (const uint8_t *)mine + off, hdr.len);
            }
            (void)rdma_am_send(failure.rdma, node, FAILURE_AM_GATHER, piece,
                               sizeof(hdr) + hdr.len);   /* a failure shows as a view */
            off += hdr.len;
        } while (off < len);
    }
}

int failure_gather(const failure_change_t *change, unsigned round, const void *mine,
                   size_t len, void ***all_p, size_t **lens_p)
{
    size_t nodes = (size_t)failure.nodes, total = 0;
    failure_gather_buf_t *b;
    void **all;
    size_t *lens;
    uint8_t *at;
    int node, done, status = FTSVM_OK;

    if (len > (64u << 20)) {
        return FTSVM_ERANGE;
    }
    gather_send(change, round, mine, len);
    pthread_mutex_lock(&failure.lock);
    for (;;) {
        done = 1;
        for (node = 0; node < failure.nodes; node++) {
            if (failure_member(node) && node != failure.node &&
                !gather_complete(gather_find(change->view, round, node, 0))) {
                done = 0;
            }
        }
        if (done || failure.target_view > change->view || failure.stop) {
            break;
        }
        pthread_cond_wait(&failure.cond, &failure.lock);
    }
    if (!done) {
        pthread_mutex_unlock(&failure.lock);
        return FTSVM_EPEER;   /* another node failed: the next view runs it again */
    }
    for (node = 0; node < failure.nodes; node++) {
        b = gather_find(change->view, round, node, 0);
        total += (node == failure.node) ? len : (b != NULL ? b->total : 0);
    }
    all = calloc(1, nodes * (sizeof(void *) + sizeof(size_t)) + total + 1);
    if (all == NULL) {
        pthread_mutex_unlock(&failure.lock);
        return FTSVM_ENOMEM;
    }
    lens = (size_t *)(all + nodes);
    at = (uint8_t *)(lens + nodes);
    for (node = 0; node < failure.nodes; node++) {
        const void *src = NULL;

        if (node == failure.node) {
            src = mine;
            lens[node] = len;
        } else if (failure_member(node) &&
                   (b = gather_find(change->view, round, node, 0)) != NULL) {
            src = b->bytes;
            lens[node] = b->total;
        } else {
            continue;
        }
        all[node] = at;
        if (lens[node] > 0) {
            memcpy(at, src, lens[node]);
        }
        at += lens[node];
    }
    pthread_mutex_unlock(&failure.lock);
    *all_p  = all;
    *lens_p = lens;
    return status;
}

int failure_on_recovery(int order, failure_step_t step, void *arg)
{
    int i;

    if (failure.nsteps >= FAILURE_MAX_STEPS || step == NULL) {
        ftsvm_error("failure_on_recovery: no room for another step");
        return FTSVM_EINVAL;
    }
    for (i = failure.nsteps; i > 0 && failure.steps[i - 1].order > order; i--) {
        failure.steps[i] = failure.steps[i - 1];
    }
    failure.steps[i].order = order;
    failure.steps[i].step  = step;
    failure.steps[i].arg   = arg;
    failure.nsteps++;
    return FTSVM_OK;
}

int failure_on_view_change(failure_app_cb_t cb, void *arg)
{
    if (cb == NULL || failure.napp >= FAILURE_MAX_STEPS) {
        ftsvm_error("ftsvm_on_view_change: %s", cb == NULL ? "the callback is NULL"
                                                            : "no room for another callback");
        return FTSVM_EINVAL;
    }
    failure.app[failure.napp].arg = arg;
    failure.app[failure.napp].cb  = cb;
    failure.napp++;
    return FTSVM_OK;
}

void failure_adoption_steps(const int *removed_now)
{
    failure_change_t change = { failure_view() + 1, removed_now, clock_now_ns() };
    int i;

    for (i = 0; removed_now[i] >= 0; i++) {
    }
    change.view = failure_view() + (uint64_t)i;
    for (i = 0; i < failure.nsteps && failure.steps[i].order <= 0; i++) {
        (void)failure.steps[i].step(failure.steps[i].arg, &change);
    }
}

int failure_recovery_stalled(uint64_t now, char *why, size_t size)
{
    uint64_t limit = 10u * failure.hb_timeout_ns;

    limit = (limit < STALL_MIN_NS) ? STALL_MIN_NS : limit;
    if (!atomic_load(&failure.recovering) || failure.detected_ns == 0 ||
        now <= failure.detected_ns || now - failure.detected_ns <= limit) {
        return 0;
    }
    snprintf(why, size, "the recovery of view %llu has not ended %.0f s after the news of "
             "the failure (a known cause over UCX shared memory: a node killed while it sent "
             "a message leaves its receiver unable to receive any)",
             (unsigned long long)failure.target_view, (double)limit / 1e9);
    return 1;
}

/* Wait a while for the news of a failure a step saw. 0: recovery keeps
 * failing, or the node stops: it was ended anyway. */
static int await_news(int *rounds_p)
{
    uint64_t until;

    pthread_mutex_lock(&failure.lock);
    until = clock_now_ns() + 2 * failure.hb_timeout_ns + 1000000000ull;
    while (failure.target_view <= failure_view() && !failure.stop && clock_now_ns() < until) {
        struct timespec ts;

        failure_timespec_in(&ts, 1000000000ull);
        pthread_cond_timedwait(&failure.cond, &failure.lock, &ts);
    }
    pthread_mutex_unlock(&failure.lock);
    if (++*rounds_p > 100 || failure.stop) {
        /* end it anyway: threads waiting for recovery must not hang (at
         * shutdown the others are leaving: no news) */
        if (!failure.stop) {
            ftsvm_error("view %llu: recovery keeps failing; giving up",
                        (unsigned long long)failure_view());
        }
        pthread_mutex_lock(&failure.lock);
        failure.recovered = failure_view();
        failure.detected_ns = 0;
        atomic_store(&failure.recovering, 0);
        pthread_cond_broadcast(&failure.cond);
        pthread_mutex_unlock(&failure.lock);
        return 0;
    }
    return 1;
}

/* The recovered view: its events for ftsvm-run, and the application's
 * callbacks, per removed node. */
static void announce(const failure_change_t *change, uint64_t detected, uint64_t now)
{
    int i, j;

    for (i = 0; change->removed_now[i] >= 0; i++) {
        int node = change->removed_now[i];

        failure_report(change->view, node, failure.cause[node], detected, now);
        for (j = 0; j < failure.napp && node < failure.app_nodes; j++) {
            failure.app[j].cb((unsigned)change->view, node, failure.app[j].arg);
        }
    }
}

/* One view change: adopt, run every step, announce. */
static void recover(int *removed_now, int *all_removed)
{
    failure_change_t change;
    uint64_t detected, now;
    int i, n = 0, status, rounds = 0;

again:
    if (!failure_view_adopt(removed_now)) {
        if (n == 0) {
            return;
        }
        /* a step saw a member fail before the news of it came: wait for the
         * news a while, then run the steps again in any case */
        if (!await_news(&rounds)) {
            return;
        }
        (void)failure_view_adopt(removed_now);
    }
    for (i = 0; removed_now[i] >= 0; i++) {
        all_removed[n++] = removed_now[i];
    }
    all_removed[n] = -1;
    pthread_mutex_lock(&failure.lock);
    detected = failure.detected_ns;
    pthread_mutex_unlock(&failure.lock);
    change.view        = failure_view();
    change.removed_now = all_removed;
    change.detected_ns = detected;
    for (i = 0; i < failure.nsteps; i++) {
        if (failure.steps[i].order <= 0) {
            continue;   /* ran at adoption */
        }
        status = failure.steps[i].step(failure.steps[i].arg, &change);
        if (status == FTSVM_EPEER) {
            ftsvm_info("view %llu: a node failed during recovery; recovering again",
                       (unsigned long long)change.view);
            goto again;
        }
        if (status != FTSVM_OK) {
            ftsvm_error("view %llu: recovery step %d failed: %s", (unsigned long long)change.view,
                        i, ftsvm_strerror(status));
        }
    }
    now = clock_now_ns();
    pthread_mutex_lock(&failure.lock);
    if (failure.target_view > change.view) {
        pthread_mutex_unlock(&failure.lock);
        goto again;   /* news came during the steps: recover that too */
    }
    failure.recovered = change.view;
    failure.detected_ns = 0;
    atomic_store(&failure.recovering, 0);
    gather_drop_before(change.view + 1);
    pthread_cond_broadcast(&failure.cond);
    pthread_mutex_unlock(&failure.lock);
    stats_add(&failure.stats, FAILURE_STAT_RECOVERY_US, (now - detected) / 1000u);
    announce(&change, detected, now);
}

static void *rec_main(void *arg)
{
    int *removed_now = malloc(((size_t)failure.nodes + 1) * sizeof(int));
    int *all_removed = malloc(((size_t)failure.nodes + 1) * sizeof(int));

    (void)arg;
    if (removed_now == NULL || all_removed == NULL) {
        ftsvm_error("cannot allocate the recovery tables: failures cannot be recovered");
        free(removed_now);
        free(all_removed);
        return NULL;
    }
    pthread_mutex_lock(&failure.lock);
    while (!failure.stop) {
        if (failure.target_view > failure_view()) {
            pthread_mutex_unlock(&failure.lock);
            recover(removed_now, all_removed);
            pthread_mutex_lock(&failure.lock);
            continue;
        }
        pthread_cond_wait(&failure.cond, &failure.lock);
    }
    pthread_mutex_unlock(&failure.lock);
    free(removed_now);
    free(all_removed);
    return NULL;
}

int failure_recovery_init(void)
{
    return rdma_am_register(failure.rdma, FAILURE_AM_GATHER, sizeof(gather_hdr_t),
                            RDMA_AM_MAX_PAYLOAD, on_gather, NULL);
}

int failure_recovery_start(void)
{
    if (pthread_create(&failure.rec_thread, NULL, rec_main, NULL) != 0) {
        ftsvm_error("cannot start the recovery thread");
        return FTSVM_ESYS;
    }
    failure.rec_started = 1;
    return FTSVM_OK;
}

void failure_recovery_stop(void)
{
    failure_gather_buf_t *b, *next;

    /* stop is set even when the thread never started: a piece the
     * protocol thread delivers after this is dropped, not kept in a buffer
     * that nobody frees (LeakSanitizer saw one in CI) */
    pthread_mutex_lock(&failure.lock);
    failure.stop = 1;
    pthread_cond_broadcast(&failure.cond);
    pthread_mutex_unlock(&failure.lock);
    if (failure.rec_started) {
        pthread_join(failure.rec_thread, NULL);
        failure.rec_started = 0;
    }
    pthread_mutex_lock(&failure.lock);
    for (b = failure.gathers; b != NULL; b = next) {
        next = b->next;
        free(b->bytes);
        free(b);
    }
    failure.gathers = NULL;
    pthread_mutex_unlock(&failure.lock);
}

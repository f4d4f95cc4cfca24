/*
 * Membership views (DESIGN.md section 7).
 *
 * The set of removed nodes only grows. A view is that set; its number is its
 * size. A node that suspects F announces "F removed" (the whole set it
 * knows) to every node; a receiver takes the union, and announces it again
 * when that added something (so the news spreads if the first announcer dies
 * half way). Concurrent suspicions of the same node therefore make one view,
 * and suspicions of different nodes merge: every survivor adopts the same
 * sequence of sets.
 *
 * Fail-stop is enforced: a node that finds itself in the set, or that has
 * lost contact with most of the view (heartbeat.c), stops at once with
 * FAILURE_EXIT_FENCED and touches no shared memory after that.
 *
 * Adoption (the recovery thread, recovery.c): a removed node that could
 * still write this node's memory directly is killed, and gone (fence.c);
 * the transport drops the removed nodes (operations in flight to them end),
 * then the recovery steps run; while they run failure_recovering() is 1.
 */
#include "failure_int.h"
#include "common/clock.h"
#include "common/log.h"
#include "ftsvm.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

failure_t failure;

#define FAILURE_START_TIMEOUT_NS (120ull * 1000000000ull)

static const char *const cause_names[FAILURE_CAUSE_COUNT] = {
    [FAILURE_CAUSE_TRANSPORT] = "transport", [FAILURE_CAUSE_HEARTBEAT] = "heartbeat",
    [FAILURE_CAUSE_ANNOUNCED] = "announced", [FAILURE_CAUSE_STARTUP] = "start-up",
    [FAILURE_CAUSE_EVICTED] = "evicted",
};

const char *failure_cause_name(int cause)
{
    return (cause >= 0 && cause < FAILURE_CAUSE_COUNT) ? cause_names[cause] : "?";
}

uint64_t failure_view(void)
{
    return atomic_load(&failure.view);
}

uint64_t failure_adoption_seq(void)
{
    return atomic_load(&failure.adoption_seq);
}

int failure_member(int node)
{
    if (failure.removed == NULL) {
        return 1;   /* not started: everybody */
    }
    return node >= 0 && node < failure.nodes &&
           !__atomic_load_n(&failure.removed[node], __ATOMIC_ACQUIRE);
}

int failure_members(void)
{
    int node, n = 0;

    for (node = 0; node < failure.nodes; node++) {
        n += failure_member(node);
    }
    return n;
}

int failure_first_member(void)
{
    int node;

    for (node = 0; node < failure.nodes; node++) {
        if (failure_member(node)) {
            return node;
        }
    }
    return -1;
}

int failure_recovering(void)
{
    return atomic_load(&failure.recovering);
}

static int view_adopted_after(uint64_t view)
{
    return failure_view() > view;
}

static int view_recovered_after(uint64_t view)
{
    return failure.recovered > view && !atomic_load(&failure.recovering);
}

/* Wait (under failure.lock) until done(view) holds, the module stops, or
 * the time runs out. Waking every 10 ms at least keeps the deadline honest
 * whatever the realtime clock does. */
static int view_wait(int (*done)(uint64_t), uint64_t view, uint64_t timeout_ns)
{
    uint64_t deadline = clock_now_ns() + timeout_ns;
    struct timespec ts;
    int status = FTSVM_OK;

    pthread_mutex_lock(&failure.lock);
    while (!done(view) && !failure.stop) {
        if (clock_now_ns() >= deadline) {
            status = FTSVM_ETIMEDOUT;
            break;
        }
        failure_timespec_in(&ts, 10000000ull);
        pthread_cond_timedwait(&failure.cond, &failure.lock, &ts);
    }
    pthread_mutex_unlock(&failure.lock);
    return status;
}

int failure_wait_adopted(uint64_t view, uint64_t timeout_ns)
{
    return view_wait(view_adopted_after, view, timeout_ns);
}

int failure_wait_view(uint64_t view, uint64_t timeout_ns)
{
    return view_wait(view_recovered_after, view, timeout_ns);
}

/* A line for the log and one for whoever sums the run up (ftsvm-run), both
 * on stderr whatever the log level: a failure is always news. */
static void failure_event(const char *text)
{
    ssize_t ignored = write(STDERR_FILENO, text, strlen(text));

    (void)ignored;
}

void failure_fence(const char *why)
{
    char line[512];

    snprintf(line, sizeof(line),
             "ftsvm: node %d: fenced: %s; stopping now, touching no shared memory "
             FAILURE_EVENT_TAG "fenced=%d ns=%llu]\n", failure.node, why, failure.node,
             (unsigned long long)clock_now_ns());
    failure_event(line);
    _exit(FAILURE_EXIT_FENCED);
}

void failure_report(uint64_t view, int node, int cause, uint64_t detected_ns,
                    uint64_t recovered_ns)
{
    char line[512];

    snprintf(line, sizeof(line),
             "ftsvm: node %d: view %llu: node %d removed (%s); recovered %.1f ms after the "
             "news " FAILURE_EVENT_TAG "view=%llu removed=%d cause=%s detected_ns=%llu "
             "recovered_ns=%llu]\n", failure.node, (unsigned long long)view, node,
             failure_cause_name(cause), (double)(recovered_ns - detected_ns) / 1e6,
             (unsigned long long)view, node, failure_cause_name(cause),
             (unsigned long long)detected_ns, (unsigned long long)recovered_ns);
    failure_event(line);
    if (node >= 0 && node < failure.nodes) {
        failure.removed_in[node]  = view;
        failure.recovery_ns[node] = recovered_ns - detected_ns;
    }
}

void failure_print_summary(void)
{
    char line[1024];
    size_t used;
    int node, lowest = -1, failed = 0, n;

    for (node = 0; node < failure.nodes; node++) {
        if (!failure.removed[node] && lowest < 0) {
            lowest = node;
        }
        failed += failure.removed[node] != 0;
    }
    if (lowest != failure.node) {
        return;   /* the lowest node still in the view says it, once */
    }
    used = (size_t)snprintf(line, sizeof(line), "ftsvm: job of %d nodes: %d finished",
                            failure.nodes, failure.nodes - failed);
    for (node = 0; node < failure.nodes && used < sizeof(line); node++) {
        if (!failure.removed[node]) {
            continue;
        }
        if (failure.cause[node] == FAILURE_CAUSE_EVICTED) {
            n = snprintf(line + used, sizeof(line) - used, "; node %d left (evicted) in view "
                         "%llu", node, (unsigned long long)failure.removed_in[node]);
        } else if (failure.removed_in[node] != 0) {
            n = snprintf(line + used, sizeof(line) - used,
                         "; node %d failed (%s), removed in view %llu, recovered %.1f ms "
                         "after the news", node, failure_cause_name(failure.cause[node]),
                         (unsigned long long)failure.removed_in[node],
                         (double)failure.recovery_ns[node] / 1e6);
        } else {
            n = snprintf(line + used, sizeof(line) - used, "; node %d failed (%s)", node,
                         failure_cause_name(failure.cause[node]));
        }
        used += (n > 0) ? (size_t)n : 0;
    }
    if (failed == 0 && used < sizeof(line)) {
        snprintf(line + used, sizeof(line) - used, "; no failure");
    }
    fprintf(stderr, "%s\n", line);
}

static void failure_send_view(const uint8_t *target)
{
    int node;

    for (node = 0; node < failure.nodes; node++) {
        if (node == failure.node || (target[node] && failure.removed[node])) {
            continue;
        }
        /* the removed nodes hear it too, when they still can: they fence */
        stats_add(&failure.stats, FAILURE_STAT_VIEWS_SENT, 1);
        (void)rdma_am_send(failure.rdma, node, FAILURE_AM_VIEW, target,
                           (size_t)failure.nodes);
    }
}

void failure_announce(const uint8_t *remove, int cause)
{
    uint8_t *send = NULL, *doomed = calloc((size_t)failure.nodes, 1);
    int node, added = 0;

    if (atomic_load(&failure.quiescing)) {
        free(doomed);
        return;
    }
    if (remove[failure.node]) {
        failure_fence("the other nodes removed it from the view");
    }
    pthread_mutex_lock(&failure.lock);
    for (node = 0; node < failure.nodes; node++) {
        if (remove[node] && !failure.target[node]) {
            failure.target[node] = 1;
            failure.cause[node]  = atomic_load(&failure.leaving[node]) ? FAILURE_CAUSE_EVICTED
                                                                       : cause;
            failure.target_view++;
            added = 1;
            if (doomed != NULL) {
                doomed[node] = 1;
            }
        }
    }
    if (added) {
        if (failure.detected_ns == 0) {
            failure.detected_ns = clock_now_ns();
        }
        send = malloc((size_t)failure.nodes);
        if (send != NULL) {
            memcpy(send, failure.target, (size_t)failure.nodes);
        }
        pthread_cond_broadcast(&failure.cond);
    }
    pthread_mutex_unlock(&failure.lock);
    /* A node in the target view is out for good: what is in flight to it
     * ends now, not at the adoption. The thread that adopts is the one
     * that runs recovery, and a recovery step blocked in a send to the dead
     * node (its endpoint not yet failed by the transport: a node killed
     * during the start-up view's recovery) would never get there. */
    for (node = 0; doomed != NULL && node < failure.nodes; node++) {
        if (doomed[node]) {
            rdma_peer_doom(failure.rdma, node, "removed from the view");
        }
    }
    free(doomed);
    if (send != NULL) {
        failure_send_view(send);
        free(send);
    }
}

void failure_expect_leave(int node, int leaving)
{
    if (node >= 0 && node < failure.nodes) {
        atomic_store(&failure.leaving[node], leaving != 0);
    }
}

/* Leaving on purpose. First the node asks every member (LEAVE_INTENT) and
 * waits for each one's answer; then, if it may go, it asks to be removed
 * like any announcement (failure_leave), and its removal is "evicted"
 * everywhere (and no survivor on its host shoots it before it exits:
 * fence.c).
 *
 * The answers keep one application node in the job however many ask at
 * once. A member that is not leaving itself answers STAYING if it is an
 * application node (a spare does not count: the application must keep a
 * node), ACK otherwise; a member that is leaving itself answers NACK to a
 * higher id (the lower id goes first) and ACK to a lower one. The node may
 * go only with no NACK and at least one STAYING. That a member Y answered
 * STAYING to X means Y took X's intent before Y set its own `leaving_self`
 * (both under failure.lock), so X marked as leaving at Y is older than
 * Y's own intent: if Y asks later, X answers it ACK or NACK, never
 * STAYING. Following the STAYING answers of the nodes that go thus leads
 * from each to a later asker or to one that never leaves, and the chain
 * ends at a node that stays. A node refused sends LEAVE_CANCEL, and
 * the members forget its intent. */
enum { LEAVE_INTENT = 1, LEAVE_ACK = 2, LEAVE_STAYING = 3, LEAVE_NACK = 4, LEAVE_CANCEL = 5 };

static void leave_send(uint8_t word)
{
    int node;

    for (node = 0; node < failure.nodes; node++) {
        if (node != failure.node && failure_member(node)) {
            (void)rdma_am_send(failure.rdma, node, FAILURE_AM_LEAVE, &word, 1);
        }
    }
}

int failure_leave_ask(void)
{
    uint64_t deadline = clock_now_ns() + 2000000000ull;
    struct timespec ts;
    int node, missing = 1, staying = 0, refused = 0;

    pthread_mutex_lock(&failure.lock);
    failure.leaving_self = 1;
    memset(failure.leave_answer, 0, (size_t)failure.nodes);
    pthread_mutex_unlock(&failure.lock);
    leave_send(LEAVE_INTENT);
    pthread_mutex_lock(&failure.lock);
    while (missing && clock_now_ns() < deadline) {
        missing = 0;
        for (node = 0; node < failure.nodes; node++) {
            missing |= node != failure.node && failure_member(node) &&
                       failure.leave_answer[node] == 0;
        }
        if (missing) {
            failure_timespec_in(&ts, 10000000ull);
            pthread_cond_timedwait(&failure.cond, &failure.lock, &ts);
        }
    }
    for (node = 0; node < failure.nodes; node++) {
        staying |= failure.leave_answer[node] == LEAVE_STAYING;
        refused |= failure.leave_answer[node] == LEAVE_NACK;
    }
    if (refused || !staying) {
        failure.leaving_self = 0;
    }
    pthread_mutex_unlock(&failure.lock);
    if (refused || !staying) {
        leave_send(LEAVE_CANCEL);
        return refused ? FTSVM_ESTATE : FTSVM_ERANGE;
    }
    return FTSVM_OK;
}

void failure_leave_cancel(void)
{
    pthread_mutex_lock(&failure.lock);
    failure.leaving_self = 0;
    pthread_mutex_unlock(&failure.lock);
    leave_send(LEAVE_CANCEL);
}

void failure_leave(void)
{
    uint8_t *target = calloc((size_t)failure.nodes, 1);
    int node;

    pthread_mutex_lock(&failure.lock);
    if (target != NULL) {
        memcpy(target, failure.target, (size_t)failure.nodes);
    }
    pthread_mutex_unlock(&failure.lock);
    /* from here nothing is news here: the others' word that this node is
     * removed is what it asked for, not a reason to fence */
    atomic_store(&failure.quiescing, 1);
    failure_heartbeat_stop();
    if (target == NULL) {
        return;   /* the others find it gone when it exits */
    }
    target[failure.node] = 1;
    for (node = 0; node < failure.nodes; node++) {
        if (node != failure.node && failure_member(node)) {
            (void)rdma_am_send(failure.rdma, node, FAILURE_AM_VIEW, target,
                               (size_t)failure.nodes);
        }
    }
    (void)rdma_flush(failure.rdma, RDMA_ALL_PEERS);
    free(target);
}

/* protocol thread: node src asks to leave, takes its intent back, or
 * answers this node's intent */
static void on_leave(void *arg, int src, const void *payload, size_t len)
{
    uint8_t word, answer = 0;

    (void)arg;
    (void)len;
    memcpy(&word, payload, 1);
    if (!failure_member(src)) {
        return;
    }
    pthread_mutex_lock(&failure.lock);
    if (word == LEAVE_CANCEL) {
        atomic_store(&failure.leaving[src], 0);
    } else if (word != LEAVE_INTENT) {
        failure.leave_answer[src] = word;
        pthread_cond_broadcast(&failure.cond);
    } else if (failure.leaving_self && failure.node < src) {
        answer = LEAVE_NACK;
    } else {
        atomic_store(&failure.leaving[src], 1);
        answer = (!failure.leaving_self && failure.node < failure.app_nodes) ? LEAVE_STAYING
                                                                            : LEAVE_ACK;
    }
    pthread_mutex_unlock(&failure.lock);
    if (answer != 0) {
        if (answer != LEAVE_NACK) {
            ftsvm_info("node %d asks to leave the job", src);
        }
        (void)rdma_am_send(failure.rdma, src, FAILURE_AM_LEAVE, &answer, 1);
    }
}

void failure_suspect(int node, const char *why)
{
    uint8_t *remove;

    if (node < 0 || node >= failure.nodes || node == failure.node || !failure_member(node)) {
        return;
    }
    remove = calloc((size_t)failure.nodes, 1);
    if (remove == NULL) {
        return;
    }
    ftsvm_info("suspecting node %d: %s", node, why);
    stats_add(&failure.stats, FAILURE_STAT_SUSPICIONS, 1);
    remove[node] = 1;
    failure_announce(remove, FAILURE_CAUSE_HEARTBEAT);
    free(remove);
}

/* protocol thread: the transport saw the peer die */
static void on_peer_failed(void *arg, int peer)
{
    uint8_t *remove = calloc((size_t)failure.nodes, 1);

    (void)arg;
    if (remove == NULL) {
        return;
    }
    remove[peer] = 1;
    /* a node that the transport loses before the start-up view is done
     * (it died between the key exchange and the first barrier, after this
     * node had connected to it) failed in start-up, as one missing from a
     * round did */
    failure_announce(remove, atomic_load(&failure.started) ? FAILURE_CAUSE_TRANSPORT :
                     FAILURE_CAUSE_STARTUP);
    free(remove);
}

/* protocol thread: another node's announcement */
static void on_view(void *arg, int src, const void *payload, size_t len)
{
    (void)arg;
    (void)len;
    if (!failure_member(src)) {
        return;   /* a removed node's word counts for nothing */
    }
    failure_announce(payload, FAILURE_CAUSE_ANNOUNCED);
}

int failure_view_adopt(int *removed_now)
{
    int node, n = 0;

    pthread_mutex_lock(&failure.lock);
    for (node = 0; node < failure.nodes; node++) {
        if (failure.target[node] && !failure.removed[node]) {
            removed_now[n++] = node;
        }
    }
    removed_now[n] = -1;
    if (n > 0) {
        atomic_store(&failure.recovering, 1);
    }
    pthread_mutex_unlock(&failure.lock);
    if (n == 0) {
        return 0;
    }
    /* a removed peer that reaches our memory directly is gone before any
     * recovery step, or a fetch in the new view, touches a home (fence.c) */
    failure_fence_removed(removed_now);
    atomic_fetch_add(&failure.adoption_seq, 1);
    for (node = 0; node < n; node++) {
        /* operations in flight to it end before anything reads the new view */
        rdma_peer_remove(failure.rdma, removed_now[node]);
    }
    failure_adoption_steps(removed_now);
    pthread_mutex_lock(&failure.lock);
    for (node = 0; node < n; node++) {
        __atomic_store_n(&failure.removed[removed_now[node]], 1, __ATOMIC_RELEASE);
        atomic_fetch_add(&failure.view, 1);
    }
    atomic_fetch_add(&failure.adoption_seq, 1);
    pthread_cond_broadcast(&failure.cond);
    pthread_mutex_unlock(&failure.lock);
    stats_add(&failure.stats, FAILURE_STAT_VIEW_CHANGES, 1);
    ftsvm_info("view %llu adopted", (unsigned long long)failure_view());
    return 1;
}

void failure_region_sizes(int nodes, size_t sizes[FAILURE_NREGIONS])
{
    (void)nodes;
    sizes[0] = 64;   /* the heartbeat counter, alone on its line */
}

int failure_init(const ftsvm_config_t *config, rdma_ctx_t *rdma, unsigned region)
{
    static const char *const names[FAILURE_STAT_COUNT] = {
        [FAILURE_STAT_HEARTBEATS] = "heartbeats_read", [FAILURE_STAT_MISSED_BEATS] = "beats_missed",
        [FAILURE_STAT_SUSPICIONS] = "suspicions", [FAILURE_STAT_VIEW_CHANGES] = "view_changes",
        [FAILURE_STAT_VIEWS_SENT] = "views_sent", [FAILURE_STAT_RECOVERY_US] = "recovery_us",
    };
    int status;

    memset(&failure, 0, sizeof(failure));
    failure.rdma   = rdma;
    failure.region = region;
    failure.node   = rdma_node(rdma);
    failure.nodes  = rdma_nodes(rdma);
    failure.app_nodes = failure.nodes - (int)config->spares;
    failure.hb_interval_ns = (uint64_t)(config->hb_interval * 1e9);
    failure.hb_timeout_ns  = (uint64_t)(config->hb_timeout * 1e9);
    failure.quorum = config->quorum;
    if (failure.hb_timeout_ns > 0 && failure.hb_interval_ns == 0) {
        ftsvm_error("FTSVM_HB_INTERVAL must be above 0 when FTSVM_HB_TIMEOUT is");
        return FTSVM_EINVAL;
    }
    if (failure.hb_timeout_ns > 0 && failure.hb_timeout_ns < 3 * failure.hb_interval_ns) {
        ftsvm_error("FTSVM_HB_TIMEOUT (%g s) must be at least 3 x FTSVM_HB_INTERVAL (%g s)",
                    config->hb_timeout, config->hb_interval);
        return FTSVM_EINVAL;
    }
    pthread_mutex_init(&failure.lock, NULL);
    pthread_cond_init(&failure.cond, NULL);
    /* the tables of an earlier run: failure_fini keeps them (see there) */
    free(failure.target);
    free(failure.removed);
    free(failure.cause);
    free(failure.removed_in);
    free(failure.recovery_ns);
    free((void *)failure.leaving);
    free(failure.leave_answer);
    failure.leaving     = calloc((size_t)failure.nodes, 1);
    failure.leave_answer = calloc((size_t)failure.nodes, 1);
    failure.leaving_self = 0;
    failure.target      = calloc((size_t)failure.nodes, 1);
    failure.removed     = calloc((size_t)failure.nodes, 1);
    failure.cause       = calloc((size_t)failure.nodes, sizeof(int));
    failure.removed_in  = calloc((size_t)failure.nodes, sizeof(uint64_t));
    failure.recovery_ns = calloc((size_t)failure.nodes, sizeof(uint64_t));
    if (failure.target == NULL || failure.removed == NULL || failure.cause == NULL ||
        failure.leaving == NULL || failure.leave_answer == NULL ||
        failure.removed_in == NULL || failure.recovery_ns == NULL) {
        ftsvm_error("cannot allocate the membership tables");
        failure_fini();
        return FTSVM_ENOMEM;
    }
    status = rdma_am_register(rdma, FAILURE_AM_VIEW, (size_t)failure.nodes,
                              (size_t)failure.nodes, on_view, NULL);
    if (status == FTSVM_OK) {
        status = rdma_am_register(rdma, FAILURE_AM_LEAVE, 1, 1, on_leave, NULL);
    }
    if (status == FTSVM_OK) {
        status = rdma_on_peer_failure(rdma, on_peer_failed, NULL);
    }
    if (status == FTSVM_OK) {
        status = failure_recovery_init();
    }
    if (status == FTSVM_OK) {
        status = failure_fence_setup();
    }
    if (status != FTSVM_OK) {
        failure_fini();
        return status;
    }
    failure.stats.module = "failure";
    failure.stats.count  = FAILURE_STAT_COUNT;
    memcpy(failure.stats.names, names, sizeof(names));
    stats_register(&failure.stats);
    return FTSVM_OK;
}

/* Nodes out of the job from its start are removed before the application
 * runs: every node announces the same set (the start-up rounds are the same
 * for all) and waits for that view's recovery, in which their rows and
 * locks go to their other homes as after any failure; only then do the
 * heartbeats start, so that an absent node never counts in a majority. */
static int failure_start_without(const uint8_t *absent)
{
    uint8_t *remove;
    int node, count = 0, status;

    remove = calloc((size_t)failure.nodes, 1);
    if (remove == NULL) {
        ftsvm_error("cannot allocate the start-up view");
        return FTSVM_ENOMEM;
    }
    for (node = 0; absent != NULL && node < failure.nodes; node++) {
        if (absent[node] && node != failure.node) {
            remove[node] = 1;
            count++;
        }
    }
    if (count == 0) {
        free(remove);
        return FTSVM_OK;
    }
    failure_announce(remove, FAILURE_CAUSE_STARTUP);
    free(remove);
    status = failure_wait_view((uint64_t)count - 1, FAILURE_START_TIMEOUT_NS);
    if (status != FTSVM_OK) {
        ftsvm_error("start-up: the view without the %d missing node(s) was not recovered "
                    "within %llu s", count,
                    (unsigned long long)(FAILURE_START_TIMEOUT_NS / 1000000000ull));
    }
    return status;
}

int failure_start(const uint8_t *absent)
{
    int status = failure_recovery_start();

    if (status == FTSVM_OK) {
        status = failure_start_without(absent);
    }
    if (status == FTSVM_OK) {
        atomic_store(&failure.started, 1);
        status = failure_heartbeat_start();
    }
    return status;
}

void failure_quiesce(void)
{
    atomic_store(&failure.quiescing, 1);
    failure_heartbeat_stop();
}

void failure_fini(void)
{
    atomic_store(&failure.quiescing, 1);
    failure_heartbeat_stop();
    failure_recovery_stop();
    failure_fence_teardown();
    if (failure.stats.module != NULL) {
        stats_unregister(&failure.stats);
    }
    /* The membership tables stay: the transport's progress thread runs
     * until the runtime shuts down after this, and a peer that leaves
     * meanwhile is still reported (on_peer_failed, failure_member). A later
     * failure_init frees them. */
}

/*
 * The public API (include/ftsvm.h, DESIGN.md section 9) over the modules:
 * start-up and shutdown in order, the entry points of shared memory, locks,
 * barriers and loops, and the reduction operators. The node and thread
 * identity calls live in init.c. Every call that releases goes through the
 * loops' guard (tasks.h): none may run inside an ftsvm_for chunk or
 * beside a running ftsvm_for.
 */
#include "common/log.h"
#include "common/stats.h"
#include "failure/failure.h"
#include "tasks.h"
#include "ftsvm.h"
#include "hlrc/hlrc.h"
#include "locks/locks.h"
#include "replica/replica.h"
#include "runtime/runtime.h"

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* active-message types of the API (hlrc 1..15, locks 16..31, failure
 * 40..47, replica 48..50) */
enum { API_AM_JOB_END = 56 };

/* ---- spares ----
 * A spare (FTSVM_SPARES: the job's last nodes) runs no application code:
 * ftsvm_init does not return in it. Its protocol, heartbeat, recovery and
 * copier threads do its work as a home; its main thread waits for the end
 * of the job and then shuts the modules down and exits 0.
 *
 * The end. While the launcher's bootstrap is attached (ftsvm-run), the
 * barriers of ftsvm_finalize are the launcher's and take every node, so
 * the spare calls ftsvm_finalize (on a thread, the main thread answering
 * an eviction meanwhile): its first barrier returns when
 * the application nodes reach theirs, and the spare checks its primary
 * pages with them (FTSVM_CHECK_HOMES). Once detached (PMIx), those
 * barriers are the shared memory's, over the application nodes: then
 * every application node, once its ftsvm_finalize has passed its last
 * barrier, tells every spare (API_AM_JOB_END). That barrier is passed only
 * when every live application node has done all its releases and home
 * checks, so after the first such word nobody reads or writes a spare's
 * memory: the spare may go at once. If every application node is removed
 * before one says so, the job is lost and the spare exits 1. */
static struct {
    pthread_mutex_t lock;
    pthread_cond_t  cond;
    int             ended;     /* 1: an application node said so; 2: finalize returned */
    int             status;    /* of the spare's own finalize (attached bootstrap) */
} spare = { PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, 0, 0 };

/* protocol thread */
static void on_job_end(void *arg, int src, const void *payload, size_t len)
{
    (void)arg;
    (void)payload;
    (void)len;
    pthread_mutex_lock(&spare.lock);
    if (!spare.ended) {
        ftsvm_debug("spare: node %d says the job has ended", src);
    }
    spare.ended = 1;
    pthread_cond_broadcast(&spare.cond);
    pthread_mutex_unlock(&spare.lock);
}

static int app_nodes_left(const ftsvm_runtime_t *rt)
{
    int node, n = 0;

    for (node = 0; node < runtime_app_nodes(&rt->config); node++) {
        n += failure_member(node);
    }
    return n;
}

static int finalize_modules(ftsvm_runtime_t *rt, int status);
static _Atomic int evict_requested;
static int evict_allowed(unsigned except, int spare_node);
static int evict_ask(void);
static void evict_setup(void);

static void spare_serve(ftsvm_runtime_t *rt) __attribute__((noreturn));

/* attached bootstrap: the spare's ftsvm_finalize, on a thread of its own
 * (the main thread still answers an eviction) */
static void *spare_finalizer(void *arg)
{
    int status = ftsvm_finalize();

    (void)arg;
    pthread_mutex_lock(&spare.lock);
    spare.status = status;
    spare.ended = 2;
    pthread_cond_broadcast(&spare.cond);
    pthread_mutex_unlock(&spare.lock);
    return NULL;
}

static void spare_serve(ftsvm_runtime_t *rt)
{
    struct timespec until;
    pthread_t finalizer;
    int status = FTSVM_OK, attached = !rt->boot->detached;

    ftsvm_info("node %d is a spare: it serves as a home until the job ends", rt->config.node);
    evict_setup();
    if (attached && pthread_create(&finalizer, NULL, spare_finalizer, NULL) != 0) {
        ftsvm_error("spare: cannot start its finalize thread");
        _exit(1);
    }
    pthread_mutex_lock(&spare.lock);
    while (!spare.ended) {
        if (atomic_load(&evict_requested) && evict_allowed(~0u, 1)) {
            /* a spare has no barrier: it leaves when asked, and the rows
             * it took are copied again after it, as after a failure (the
             * protocol thread takes spare.lock: not held while asking) */
            pthread_mutex_unlock(&spare.lock);
            if (evict_ask()) {
                evict_leave_now();
            }
            pthread_mutex_lock(&spare.lock);   /* not now: wait as below */
        }
        if (app_nodes_left(rt) == 0) {
            ftsvm_error("spare: every application node was removed before the job ended");
            status = FTSVM_EPEER;
            break;
        }
        clock_gettime(CLOCK_REALTIME, &until);
        until.tv_nsec += 100 * 1000000L;
        until.tv_sec  += until.tv_nsec / 1000000000L;
        until.tv_nsec %= 1000000000L;
        pthread_cond_timedwait(&spare.cond, &spare.lock, &until);
    }
    pthread_mutex_unlock(&spare.lock);
    if (attached) {
        if (status != FTSVM_OK) {
            fflush(NULL);
            _exit(1);   /* its finalize waits for nodes that are gone */
        }
        pthread_join(finalizer, NULL);
        exit(spare.status == FTSVM_OK ? 0 : 1);
    }
    /* nobody accesses this node's memory any more: its going is no failure */
    failure_quiesce();
    replica_stop_copies();
    status = finalize_modules(rt, status);
    exit(status == FTSVM_OK ? 0 : 1);
}

/* ---- eviction ----
 * SIGUSR2 (ftsvm-run --evict, or a batch system's drain) asks this node to
 * leave the job. The point where leaving is safe is the node's next
 * barrier (ftsvm_barrier, or the first of ftsvm_finalize): there
 * every thread of the node is inside, every release of every node before
 * it is complete, and the node's chunks of the loops before it are done.
 * In that barrier's last round the node says it leaves (hlrc's barrier);
 * every node plans the hand-over of its rows before returning
 * (replica_evict_plan); the leaving node waits in the barrier until every
 * member names the new homes, then asks to be removed (failure_leave) and
 * exits 0. Its threads never return from the barrier: what the application
 * would do after it on that node, the others do (the loops give them the
 * chunks).
 *
 * A loop (ftsvm_for) has no barrier, and a program may be one loop after
 * another: there the node leaves at its next batch boundary instead, in
 * the loop's critical section where it commits its batch (tasks.c): it
 * claims no more chunks, releases the task lock (its commits go out with
 * their chunks' writes), and asks to be removed. No chunk runs again, but
 * nothing is handed over first (every node is in the middle of the loop,
 * with releases in flight: there is no point where all could plan): its
 * rows are copied again after its removal as after a failure, so for the
 * milliseconds of that copy they have one home.
 *
 * A node that holds or waits for a lock, or sees a recovery or a copy to
 * new homes still under way, stays for the next barrier or batch; the last
 * application node does not leave. */
/* why the hand-over this node asked for at this barrier is not done */
enum { EVICT_LATER = 1,      /* another node leaves at this barrier: ask at the next */
       EVICT_NEVER = 2 };    /* no free slot for its rows: it stays (logged) */
static int evict_refused;
static _Atomic int finalizing;

static void on_sigusr2(int signo)
{
    (void)signo;
    atomic_store(&evict_requested, 1);
}

/* may this node leave now? `except`: a lock the caller holds itself; a
 * spare (whose own finalize may be under way: it waits there for the
 * others) may leave until the end */
static int evict_allowed(unsigned except, int spare_node)
{
    ftsvm_runtime_t *rt = ftsvm_runtime();
    int node, others = 0;

    if (!atomic_load(&evict_requested) || (atomic_load(&finalizing) && !spare_node) ||
        rt == NULL) {
        return 0;
    }
    for (node = 0; node < runtime_app_nodes(&rt->config); node++) {
        others += node != rt->config.node && failure_member(node);
    }
    if (others == 0) {
        ftsvm_error("asked to leave (SIGUSR2), but it is the last application node: it stays");
        atomic_store(&evict_requested, 0);
        return 0;
    }
    if (locks_held_here(except) || failure_recovering() || !replica_evict_ready()) {
        ftsvm_debug("asked to leave: a lock is held or awaited here, or a recovery or copy "
                    "is under way; trying at the next barrier or batch");
        return 0;
    }
    return 1;
}

/* Having got this far, ask the others (failure_leave_ask): with several
 * nodes asked at once, one application node always stays. */
static int evict_ask(void)
{
    int status = failure_leave_ask();

    if (status == FTSVM_ERANGE) {
        ftsvm_error("asked to leave (SIGUSR2), but it is the last application node: it stays "
                    "(every other one is leaving or gone)");
        atomic_store(&evict_requested, 0);
    } else if (status != FTSVM_OK) {
        ftsvm_debug("asked to leave: a node with a lower id is leaving now; trying at the "
                    "next barrier or batch");
    }
    return status == FTSVM_OK;
}

/* this node's barrier leader, before its slot */
static int evict_wants(void)
{
    return evict_allowed(~0u, 0) && evict_ask();
}

/* in ftsvm_for's critical section (tasks.c): 1, and this node leaves once
 * it has committed its batch */
int evict_at_batch(void)
{
    ftsvm_runtime_t *rt = ftsvm_runtime();

    return rt != NULL && rt->config.evict_at == FTSVM_EVICT_AT_BATCH &&
           evict_allowed(TASKS_LOCK_FIRST, 0) && evict_ask();
}

/* every node, in the barrier where `node` says it leaves, in the order of
 * the nodes' ids (the same everywhere): one node leaves per barrier, the
 * first whose hand-over can be planned; any other stays for the next */
static uint64_t evict_round_planned;

static void evict_seen(int node, uint64_t round)
{
    ftsvm_runtime_t *rt = ftsvm_runtime();
    int self = rt != NULL && node == rt->config.node;
    int status;

    if (evict_round_planned == round) {
        evict_refused = self ? EVICT_LATER : evict_refused;
        return;
    }
    failure_expect_leave(node, 1);
    status = replica_evict_plan(node, round);
    if (status != FTSVM_OK) {
        failure_expect_leave(node, 0);   /* logged; the same on every member */
        evict_refused = self ? EVICT_NEVER : evict_refused;
        return;
    }
    evict_round_planned = round;
    ftsvm_info("node %d leaves the job after this barrier: its homes are being handed over",
               node);
}

void evict_leave_now(void)
{
    ftsvm_runtime_t *rt = ftsvm_runtime();
    char line[256];
    int n;

    failure_leave();
    n = snprintf(line, sizeof(line), "ftsvm: node %d: evicted: it leaves the job\n",
                 rt != NULL ? rt->config.node : -1);
    if (n > 0 && write(STDERR_FILENO, line, (size_t)n) < 0) {
        /* it leaves anyway */
    }
    /* no thread of the node runs application code on: the process ends
     * here, without the teardown of a finalize (the others removed it) */
    fflush(NULL);
    _exit(0);
}

/* the leaving node's barrier leader */
static void evict_go(void)
{
    if (evict_refused != 0) {
        failure_leave_cancel();
        if (evict_refused == EVICT_NEVER) {
            atomic_store(&evict_requested, 0);
        }
        evict_refused = 0;
        return;
    }
    if (replica_evict_wait() != FTSVM_OK) {
        /* leaving now would leave the rows not yet handed over with one
         * copy: it stays, a home as before, and asks at its next barrier */
        ftsvm_info("a view change stopped the hand-over of this node's homes: it stays and "
                   "asks to leave again at its next barrier");
        failure_leave_cancel();
        return;
    }
    evict_leave_now();
}

static void evict_setup(void)
{
    struct sigaction old, sa;

    hlrc_barrier_on_leave(evict_wants, evict_seen, evict_go);
    if (sigaction(SIGUSR2, NULL, &old) != 0 || old.sa_handler != SIG_DFL) {
        ftsvm_info("SIGUSR2 has a handler of the application's: no eviction by signal");
        return;
    }
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_sigusr2;
    sa.sa_flags = SA_RESTART;
    sigemptyset(&sa.sa_mask);
    (void)sigaction(SIGUSR2, &sa, NULL);
}

/* every application node says it, so that the word survives any of them */
static void tell_spares_the_end(const ftsvm_runtime_t *rt)
{
    int node;

    for (node = runtime_app_nodes(&rt->config); node < rt->config.nodes; node++) {
        if (failure_member(node) && rdma_peer_alive(rt->rdma, node)) {
            (void)rdma_am_send(rt->rdma, node, API_AM_JOB_END, NULL, 0);   /* gone: no matter */
        }
    }
}

/* The nodes the job starts without: those missing from a start-up round,
 * and those the transport could not connect to or saw fail. The latter may
 * have died after their last round (a fast node killed while a slow one
 * still connects), or be alive but unreachable from here: either way they
 * are removed in the first view (a live one learns it and fences itself),
 * as a failure then would be. */
static void startup_left_out(const ftsvm_runtime_t *rt, uint8_t *out)
{
    int node;

    for (node = 0; node < rt->config.nodes; node++) {
        out[node] = rt->boot->absent[node];
        if (node != rt->config.node && !rdma_peer_alive(rt->rdma, node) && !out[node]) {
            ftsvm_warn("start-up: node %d took part in every round but could not be "
                       "connected from here, or failed since (see above): it is removed",
                       node);
            out[node] = 1;
        }
    }
}

int ftsvm_init(int *argc, char ***argv)
{
    enum { FAILURE_REGION = HLRC_NREGIONS + REPLICA_NREGIONS + LOCKS_NREGIONS };
    size_t sizes[FAILURE_REGION + FAILURE_NREGIONS];
    const ftsvm_runtime_t *rt;
    uint8_t *left_out;
    int status;

    (void)argc;
    (void)argv;
    status = runtime_boot();
    if (status != FTSVM_OK) {
        return status;
    }
    rt = runtime_booting();
    /* regions: hlrc's, then replica's, the locks', the failure module's */
    status = replica_init(&rt->config, rt->config.node, rt->config.nodes,
                          hlrc_blocks(&rt->config));
    if (status != FTSVM_OK) {
        goto err_runtime;
    }
    status = hlrc_region_sizes(&rt->config, rt->config.nodes, sizes);
    if (status == FTSVM_OK) {
        replica_region_sizes(rt->config.nodes, sizes + HLRC_NREGIONS);
        locks_region_sizes(rt->config.nodes, sizes + HLRC_NREGIONS + REPLICA_NREGIONS);
        failure_region_sizes(rt->config.nodes, sizes + FAILURE_REGION);
        status = runtime_connect(FAILURE_REGION + FAILURE_NREGIONS, sizes);
    }
    if (status == FTSVM_OK) {
        status = failure_init(&rt->config, rt->rdma, FAILURE_REGION);
    }
    if (status == FTSVM_OK) {
        status = replica_start(rt->rdma, HLRC_NREGIONS);
    }
    if (status != FTSVM_OK) {
        goto err_replica;
    }
    status = hlrc_init();
    if (status != FTSVM_OK) {
        goto err_replica;
    }
    status = locks_init(HLRC_NREGIONS + REPLICA_NREGIONS);
    if (status != FTSVM_OK) {
        goto err_hlrc;
    }
    if (runtime_is_spare(&rt->config)) {
        status = rdma_am_register(rt->rdma, API_AM_JOB_END, 0, 0, on_job_end, NULL);
        if (status != FTSVM_OK) {
            goto err_locks;   /* logged */
        }
    }
    /* every node's handlers and regions are in place before anyone sends */
    runtime_boot_fault("boot-barrier");
    status = bootstrap_barrier(rt->boot);
    if (status == FTSVM_OK && !runtime_keeps_bootstrap()) {
        /* leave the launcher's service: a node's death later is then only
         * a task's exit to the launcher (bootstrap_pmix.c) */
        status = bootstrap_detach(rt->boot);
    }
    if (status == FTSVM_OK) {
        left_out = calloc((size_t)rt->config.nodes, 1);
        if (left_out == NULL) {
            ftsvm_error("cannot allocate the start-up view");
            status = FTSVM_ENOMEM;
        } else {
            startup_left_out(rt, left_out);
            status = failure_start(left_out);
            free(left_out);
        }
    }
    if (status != FTSVM_OK) {
        goto err_locks;
    }
    runtime_up();
    if (runtime_is_spare(&rt->config)) {
        spare_serve(ftsvm_runtime());
    }
    evict_setup();
    return FTSVM_OK;

err_locks:
    replica_stop_copies();
    locks_fini();
err_hlrc:
    hlrc_fini();
err_replica:
    failure_fini();
    replica_fini();
err_runtime:
    runtime_abort();
    return status;
}

/* The barriers of ftsvm_finalize: the launcher's while the bootstrap is
 * attached, else the shared memory's (live nodes only, as every barrier). */
static int finalize_barrier(ftsvm_runtime_t *rt)
{
    return rt->boot->detached ? hlrc_barrier() : bootstrap_barrier(rt->boot);
}

int ftsvm_finalize(void)
{
    ftsvm_runtime_t *rt = ftsvm_runtime();
    int status, ret;

    if (rt == NULL) {
        ftsvm_error("ftsvm_finalize without a successful ftsvm_init");
        return FTSVM_ESTATE;
    }
    status = tasks_guard_enter("ftsvm_finalize", 0);
    if (status != FTSVM_OK) {
        return status;
    }
    atomic_store(&finalizing, 1);   /* the job ends: nobody leaves it now */
    /* what this node wrote reaches the homes; then nobody sends us protocol
     * messages any more, and the modules may go */
    status = hlrc_release();
    ret = finalize_barrier(rt);
    if (status == FTSVM_OK) {
        status = ret;
    }
    /* a node that left at the last barrier is owed the end of its hand-over */
    (void)replica_evict_wait();
    /* from here nodes leave: their going is no failure */
    failure_quiesce();
    replica_stop_copies();
    if (status == FTSVM_OK && hlrc_checking_homes()) {
        /* every release of every node is done: the homes must agree */
        status = hlrc_check_homes();
        ret = finalize_barrier(rt);
        status = (status == FTSVM_OK) ? ret : status;
    }
    if (rt->boot->detached) {
        /* runtime_shutdown has no barrier of its own then: nobody destroys
         * its memory while a peer may still access it */
        ret = finalize_barrier(rt);
        status = (status == FTSVM_OK) ? ret : status;
    }
    tell_spares_the_end(rt);
    return finalize_modules(rt, status);
}

/* the modules go, top first; then the runtime */
static int finalize_modules(ftsvm_runtime_t *rt, int status)
{
    int ret = runtime_begin_shutdown();

    if (ret != FTSVM_OK) {
        return ret;
    }
    if (rt->config.stats) {
        stats_print();   /* while every module's counters are registered */
    }
    if (rt->boot->detached) {
        failure_print_summary();   /* ftsvm-run prints its own */
    }
    failure_fini();
    locks_fini();
    hlrc_fini();
    replica_fini();
    ret = runtime_shutdown();
    return (status == FTSVM_OK) ? ret : status;
}

void *ftsvm_alloc(size_t bytes)
{
    if (ftsvm_runtime() == NULL) {
        errno = EPERM;
        return NULL;
    }
    if (tasks_in_chunk()) {
        /* collective: every node in the same order, which chunks are not */
        ftsvm_error("ftsvm_alloc: refused inside an ftsvm_for chunk: it is collective, and "
                    "each chunk runs on one node (allocate before the loop)");
        errno = EPERM;
        return NULL;
    }
    return hlrc_alloc(bytes);
}

void *ftsvm_malloc(size_t bytes)
{
    if (ftsvm_runtime() == NULL) {
        errno = EPERM;
        return NULL;
    }
    return hlrc_malloc(bytes);
}

void ftsvm_free(void *p)
{
    if (ftsvm_runtime() == NULL) {
        if (p != NULL) {
            ftsvm_error("ftsvm_free before ftsvm_init");
        }
        return;
    }
    hlrc_free(p);
}

/* lock ids from TASKS_LOCK_FIRST up are the library's own (ftsvm_for) */
static int user_lock(const char *call, unsigned lock)
{
    if (lock >= TASKS_LOCK_FIRST) {
        ftsvm_error("%s: lock %u is %s (user locks are 0..%u)", call, lock,
                    lock <= LOCKS_MAX_ID ? "reserved for the library" : "out of range",
                    TASKS_LOCK_FIRST - 1);
        return 0;
    }
    return 1;
}

int ftsvm_lock_acquire(unsigned lock)
{
    int status;

    if (!user_lock("ftsvm_lock_acquire", lock)) {
        return FTSVM_ERANGE;
    }
    if (ftsvm_runtime() == NULL) {
        return FTSVM_ESTATE;
    }
    /* no release itself, but it opens a critical section that must end in one */
    status = tasks_guard_enter("ftsvm_lock_acquire", 0);
    return (status == FTSVM_OK) ? locks_acquire(lock) : status;
}

int ftsvm_lock_release(unsigned lock)
{
    int status;

    if (!user_lock("ftsvm_lock_release", lock)) {
        return FTSVM_ERANGE;
    }
    if (ftsvm_runtime() == NULL) {
        return FTSVM_ESTATE;
    }
    status = tasks_guard_enter("ftsvm_lock_release", 1);
    if (status != FTSVM_OK) {
        return status;   /* the lock stays held */
    }
    status = locks_release(lock);
    tasks_guard_leave(1);
    return status;
}

int ftsvm_barrier(void)
{
    int status;

    if (ftsvm_runtime() == NULL) {
        return FTSVM_ESTATE;
    }
    status = tasks_guard_enter("ftsvm_barrier", 0);
    return (status == FTSVM_OK) ? hlrc_barrier() : status;
}

int ftsvm_for(size_t n, size_t chunk, void (*fn)(size_t, size_t, void *), void *arg)
{
    return tasks_for(n, chunk, fn, arg);   /* it refuses a call before init, logged */
}

int ftsvm_for_reduce(size_t n, size_t chunk, void (*fn)(size_t, size_t, void *, void *),
                     void *arg, void *result, size_t size, ftsvm_combine_t combine)
{
    return tasks_for_reduce(n, chunk, fn, arg, result, size, combine);
}

int ftsvm_alive(int node)
{
    ftsvm_runtime_t *rt = ftsvm_runtime();

    if (rt == NULL) {
        return FTSVM_ESTATE;
    }
    if (node < 0 || node >= runtime_app_nodes(&rt->config)) {
        return FTSVM_ERANGE;   /* spares are not the application's */
    }
    return failure_member(node) && rdma_peer_alive(rt->rdma, node);
}

int ftsvm_view(void)
{
    return ftsvm_runtime() ? (int)failure_view() : FTSVM_ESTATE;
}

int ftsvm_on_view_change(ftsvm_view_cb_t cb, void *arg)
{
    return ftsvm_runtime() ? failure_on_view_change(cb, arg) : FTSVM_ESTATE;
}

/* ---- reduction operators: element-wise over the partial ---- */

void ftsvm_sum_double(void *into, const void *from, size_t size, void *arg)
{
    double *a = into;
    const double *b = from;
    size_t i;

    (void)arg;
    for (i = 0; i < size / sizeof(double); i++) {
        a[i] += b[i];
    }
}

void ftsvm_sum_int64(void *into, const void *from, size_t size, void *arg)
{
    int64_t *a = into;
    const int64_t *b = from;
    size_t i;

    (void)arg;
    for (i = 0; i < size / sizeof(int64_t); i++) {
        a[i] = (int64_t)((uint64_t)a[i] + (uint64_t)b[i]);   /* wraps, as unsigned does */
    }
}

void ftsvm_min_double(void *into, const void *from, size_t size, void *arg)
{
    double *a = into;
    const double *b = from;
    size_t i;

    (void)arg;
    for (i = 0; i < size / sizeof(double); i++) {
        a[i] = (b[i] < a[i]) ? b[i] : a[i];
    }
}

void ftsvm_max_double(void *into, const void *from, size_t size, void *arg)
{
    double *a = into;
    const double *b = from;
    size_t i;

    (void)arg;
    for (i = 0; i < size / sizeof(double); i++) {
        a[i] = (b[i] > a[i]) ? b[i] : a[i];
    }
}

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
#include <stdint.h>
#include <stdlib.h>

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
    /* what this node wrote reaches the homes; then nobody sends us protocol
     * messages any more, and the modules may go */
    status = hlrc_release();
    ret = finalize_barrier(rt);
    if (status == FTSVM_OK) {
        status = ret;
    }
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
    ret = runtime_begin_shutdown();
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
    if (node < 0 || node >= rt->config.nodes) {
        return FTSVM_ERANGE;
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

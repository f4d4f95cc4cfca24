/* The runtime of a node, started in steps by ftsvm_init (lib/api.c):
 * runtime_boot (configuration, bootstrap, thread table), runtime_connect
 * (the transport, with the regions the modules above asked for),
 * runtime_up; and the node and thread identity calls of the public API. */
#include "runtime.h"
#include "common/log.h"
#include "common/stats.h"
#include "ftsvm.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

static ftsvm_runtime_t runtime;
static _Atomic int runtime_state;   /* 0 down, 1 starting, 2 up, 3 stopping */

/* Threads of this node: slot 0 is the main thread, slots 1..T-1 are taken
 * by ftsvm_thread_create and given back when the thread returns. */
static pthread_mutex_t thread_lock = PTHREAD_MUTEX_INITIALIZER;
static uint8_t *thread_slots;
static unsigned threads_running;          /* registered threads that have not returned */
static void (*thread_exit_cb)(void);      /* barrier: a thread left */
static __thread int thread_slot = -1;

ftsvm_runtime_t *ftsvm_runtime(void)
{
    return atomic_load(&runtime_state) == 2 ? &runtime : NULL;
}

int runtime_exchange(void *arg, const void *mine, size_t len, void *all)
{
    return bootstrap_allgather(arg, mine, len, all, NULL);
}

void runtime_rdma_params(const ftsvm_runtime_t *rt, rdma_params_t *params_p)
{
    memset(params_p, 0, sizeof(*params_p));
    params_p->node         = rt->config.node;
    params_p->nodes        = rt->config.nodes;
    params_p->transport    = (rt->config.transport == FTSVM_TRANSPORT_VERBS) ?
                             RDMA_TRANSPORT_VERBS : RDMA_TRANSPORT_UCX;
    params_p->device       = rt->config.verbs_device;
    params_p->local_addr   = rt->config.verbs_addr;
    params_p->spin_us      = rt->config.spin_us;
    params_p->keepalive    = rt->config.keepalive;
    params_p->exchange     = runtime_exchange;
    params_p->exchange_arg = rt->boot;
}

int runtime_boot(void)
{
    int expected = 0, status;

    if (!atomic_compare_exchange_strong(&runtime_state, &expected, 1)) {
        ftsvm_error("ftsvm_init called twice");
        return FTSVM_ESTATE;
    }
    status = ftsvm_config_load(&runtime.config);
    if (status != FTSVM_OK) {
        goto err_state;   /* the bad variable was logged */
    }
    ftsvm_log_level = (ftsvm_log_level_t)runtime.config.log_level;
    ftsvm_log_set_node(runtime.config.node);
    status = bootstrap_create(&runtime.config, &runtime.boot);
    if (status != FTSVM_OK) {
        goto err_state;
    }
    runtime.config.node  = runtime.boot->node;
    runtime.config.nodes = runtime.boot->nodes;
    ftsvm_log_set_node(runtime.config.node);

    thread_slots = calloc(runtime.config.threads, 1);
    if (thread_slots == NULL) {
        ftsvm_error("cannot allocate the thread table");
        status = FTSVM_ENOMEM;
        goto err_boot;
    }
    thread_slots[0]   = 1;
    thread_slot       = 0;
    threads_running   = 1;
    return FTSVM_OK;

err_boot:
    bootstrap_destroy(runtime.boot);
    runtime.boot = NULL;
err_state:
    atomic_store(&runtime_state, 0);
    return status;
}

const ftsvm_runtime_t *runtime_booting(void)
{
    return atomic_load(&runtime_state) == 1 ? &runtime : NULL;
}

int runtime_connect(size_t nregions, const size_t *region_sizes)
{
    rdma_params_t params;

    runtime_rdma_params(&runtime, &params);
    params.nregions     = nregions;
    params.region_sizes = region_sizes;
    return rdma_create(&params, &runtime.rdma);
}

void runtime_up(void)
{
    ftsvm_info("node %d of %d up (bootstrap %s, %u threads per node)", runtime.config.node,
               runtime.config.nodes, runtime.boot->ops->name, runtime.config.threads);
    atomic_store(&runtime_state, 2);
}

void runtime_abort(void)
{
    if (runtime.rdma != NULL) {
        rdma_destroy(runtime.rdma);
    }
    if (runtime.boot != NULL) {
        bootstrap_destroy(runtime.boot);
    }
    free(thread_slots);
    thread_slots = NULL;
    memset(&runtime, 0, sizeof(runtime));
    atomic_store(&runtime_state, 0);
}

int runtime_begin_shutdown(void)
{
    int expected = 2;

    if (!atomic_compare_exchange_strong(&runtime_state, &expected, 3)) {
        ftsvm_error("ftsvm_finalize without a successful ftsvm_init");
        return FTSVM_ESTATE;
    }
    return FTSVM_OK;
}

int runtime_shutdown(void)
{
    int status;

    /* peers close their endpoints from here on: not news, not failures */
    rdma_quiesce(runtime.rdma);
    status = rdma_flush(runtime.rdma, RDMA_ALL_PEERS);
    if (status == FTSVM_EPEER) {
        status = FTSVM_OK;   /* failed peers were reported when they failed */
    }
    /* nobody destroys its memory while a peer may still access it */
    if (bootstrap_barrier(runtime.boot) != FTSVM_OK && status == FTSVM_OK) {
        status = FTSVM_EBOOT;
    }
    runtime_abort();
    return status;
}

unsigned runtime_threads_running(void)
{
    unsigned n;

    pthread_mutex_lock(&thread_lock);
    n = threads_running;
    pthread_mutex_unlock(&thread_lock);
    return n;
}

void runtime_on_thread_exit(void (*cb)(void))
{
    thread_exit_cb = cb;
}

int ftsvm_node(void)
{
    return ftsvm_runtime() ? runtime.config.node : FTSVM_ESTATE;
}

int ftsvm_nodes(void)
{
    return ftsvm_runtime() ? runtime.config.nodes : FTSVM_ESTATE;
}

int ftsvm_threads(void)
{
    if (ftsvm_runtime() == NULL) {
        return FTSVM_ESTATE;
    }
    return runtime.config.nodes * (int)runtime.config.threads;
}

int ftsvm_thread_id(void)
{
    if (ftsvm_runtime() == NULL) {
        return FTSVM_ESTATE;
    }
    if (thread_slot < 0) {
        return FTSVM_ESTATE;   /* not a thread ftsvm knows */
    }
    return runtime.config.node * (int)runtime.config.threads + thread_slot;
}

typedef struct thread_start {
    void *(*fn)(void *);
    void  *arg;
    int    slot;
} thread_start_t;

static void *thread_trampoline(void *arg)
{
    thread_start_t start = *(thread_start_t *)arg;
    void *ret;

    free(arg);
    thread_slot = start.slot;
    ret = start.fn(start.arg);
    pthread_mutex_lock(&thread_lock);
    if (thread_slots != NULL) {
        thread_slots[start.slot] = 0;
        threads_running--;
    }
    pthread_mutex_unlock(&thread_lock);
    if (thread_exit_cb != NULL) {
        thread_exit_cb();
    }
    return ret;
}

int ftsvm_thread_create(pthread_t *t, void *(*fn)(void *), void *arg)
{
    thread_start_t *start;
    unsigned slot;
    int ret;

    if (ftsvm_runtime() == NULL) {
        return FTSVM_ESTATE;
    }
    if (t == NULL || fn == NULL) {
        return FTSVM_EINVAL;
    }
    start = malloc(sizeof(*start));
    if (start == NULL) {
        return FTSVM_ENOMEM;
    }
    pthread_mutex_lock(&thread_lock);
    for (slot = 1; slot < runtime.config.threads && thread_slots[slot]; slot++) {
    }
    if (slot >= runtime.config.threads) {
        pthread_mutex_unlock(&thread_lock);
        free(start);
        ftsvm_error("ftsvm_thread_create: this node already runs %u threads "
                    "(raise ftsvm-run --threads / FTSVM_THREADS)", runtime.config.threads);
        return FTSVM_ERANGE;
    }
    thread_slots[slot] = 1;
    threads_running++;
    pthread_mutex_unlock(&thread_lock);
    start->fn   = fn;
    start->arg  = arg;
    start->slot = (int)slot;
    ret = pthread_create(t, NULL, thread_trampoline, start);
    if (ret != 0) {
        errno = ret;
        ftsvm_error("ftsvm_thread_create: pthread_create failed: %m");
        pthread_mutex_lock(&thread_lock);
        thread_slots[slot] = 0;
        threads_running--;
        pthread_mutex_unlock(&thread_lock);
        free(start);
        return FTSVM_ESYS;
    }
    return FTSVM_OK;
}

/* The runtime of a node, started in steps by ftsvm_init (lib/api/api.c):
 * runtime_boot (configuration, bootstrap, where every node's process runs,
 * thread table), runtime_connect (the transport, with the regions the
 * modules above asked for), runtime_up; and the node and thread identity
 * calls of the public API. */
#include "runtime.h"
#include "common/log.h"
#include "common/stats.h"
#include "ftsvm.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

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

/* FTSVM_FAULT at a start-up step (tests): "<point>@<node>", the point one
 * of boot-rendezvous, boot-addresses, boot-keys, boot-barrier (the syntax
 * is checked with the other points, lib/replica/inject.c). SIGKILL, as a
 * real failure. */
void runtime_boot_fault(const char *point)
{
    runtime_boot_fault_as(point, runtime.config.node);
}

void runtime_boot_fault_as(const char *point, int node)
{
    const char *spec = runtime.config.fault;
    size_t len = strlen(point);
    char line[128];
    int n;

    if (strncmp(spec, point, len) != 0 || spec[len] != '@' ||
        atoi(spec + len + 1) != node || node < 0) {
        return;
    }
    n = snprintf(line, sizeof(line), "ftsvm: node %d: FTSVM_FAULT: killing itself at %s\n",
                 node, point);
    if (n > 0 && write(STDERR_FILENO, line, (size_t)n) < 0) {
        /* it dies anyway */
    }
    kill(getpid(), SIGKILL);
}

/* The transport's exchanges: its address lengths, then its addresses and
 * keys (rdma_exchange_blobs), then whatever it needs more. */
int runtime_exchange(void *arg, const void *mine, size_t len, void *all)
{
    static const char *const after[] = { "boot-addresses", "boot-keys" };
    int status = bootstrap_startup_gather(arg, mine, len, all);

    if (status == FTSVM_OK && runtime.exchanges < 2) {
        runtime_boot_fault(after[runtime.exchanges++]);
    }
    return status;
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
    params_p->absent       = rt->boot->absent;
}

int runtime_process_stat(int pid, char *state_p, uint64_t *start_time_p)
{
    char path[64], buf[1024], *p;
    unsigned long long start;
    ssize_t n;
    int fd, field;

    snprintf(path, sizeof(path), "/proc/%d/stat", pid);
    fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        return FTSVM_ESYS;
    }
    n = read(fd, buf, sizeof(buf) - 1);
    close(fd);
    if (n <= 0) {
        return FTSVM_ESYS;
    }
    buf[n] = '\0';
    /* "pid (comm) S ppid ...": comm may hold anything, ')' included; field
     * 3 (the state) follows the last ')', the start time is field 22 */
    p = strrchr(buf, ')');
    if (p == NULL || p[1] != ' ' || p[2] == '\0') {
        return FTSVM_ESYS;
    }
    *state_p = p[2];
    for (field = 2; field < 22 && p != NULL; field++) {
        p = strchr(p + 1, ' ');
    }
    if (p == NULL || sscanf(p, " %llu", &start) != 1) {
        return FTSVM_ESYS;
    }
    *start_time_p = start;
    return FTSVM_OK;
}

/* This process: see runtime_process_t. What cannot be read stays 0 / "",
 * which no peer takes for "the same host" (nobody is shot on a guess). */
static void runtime_process_self(runtime_process_t *self_p)
{
    struct stat st;
    char state, link[32];
    ssize_t n;
    int fd;

    memset(self_p, 0, sizeof(*self_p));
    self_p->pid = (int32_t)getpid();
    fd = open("/proc/sys/kernel/random/boot_id", O_RDONLY | O_CLOEXEC);
    if (fd >= 0) {
        n = read(fd, self_p->boot_id, sizeof(self_p->boot_id) - 1);
        close(fd);
        self_p->boot_id[n > 0 ? strcspn(self_p->boot_id, "\n") : 0] = '\0';
    }
    if (stat("/proc/self/ns/pid", &st) == 0) {
        self_p->pid_ns = (uint64_t)st.st_ino;
    }
    /* a /proc mounted from another pid namespace names processes by other
     * pids: then peers must not act on pids through it */
    n = readlink("/proc/self", link, sizeof(link) - 1);
    link[n > 0 ? n : 0] = '\0';
    if (atoi(link) != self_p->pid ||
        runtime_process_stat(self_p->pid, &state, &self_p->start_time) != FTSVM_OK) {
        self_p->pid_ns = 0;
    }
}

/* FTSVM_SPARES against the job the bootstrap found */
static int runtime_check_spares(const ftsvm_config_t *config)
{
    if (config->spares == 0) {
        return FTSVM_OK;
    }
    if (runtime_app_nodes(config) < 2) {
        ftsvm_error("FTSVM_SPARES=%u in a job of %d nodes: spares need at least 2 "
                    "application nodes besides them (start N+%u nodes, N >= 2)",
                    config->spares, config->nodes, config->spares);
        return FTSVM_EINVAL;
    }
    if (config->replicas < 2) {
        ftsvm_error("FTSVM_SPARES=%u with FTSVM_REPLICAS=1: a spare takes a failed node's "
                    "place as a second home, and one home per page has none to restore",
                    config->spares);
        return FTSVM_EINVAL;
    }
    return FTSVM_OK;
}

int runtime_boot(void)
{
    runtime_process_t self;
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
    runtime_boot_fault("boot-rendezvous");
    status = bootstrap_create(&runtime.config, &runtime.boot);
    if (status != FTSVM_OK) {
        goto err_state;
    }
    runtime.config.node  = runtime.boot->node;
    runtime.config.nodes = runtime.boot->nodes;
    ftsvm_log_set_node(runtime.config.node);
    status = runtime_check_spares(&runtime.config);
    if (status != FTSVM_OK) {
        goto err_boot;
    }

    runtime.processes = calloc((size_t)runtime.config.nodes, sizeof(*runtime.processes));
    if (runtime.processes == NULL) {
        ftsvm_error("cannot allocate the process table");
        status = FTSVM_ENOMEM;
        goto err_boot;
    }
    runtime_process_self(&self);
    status = bootstrap_startup_gather(runtime.boot, &self, sizeof(self), runtime.processes);
    if (status != FTSVM_OK) {
        goto err_processes;   /* the bootstrap logged it */
    }

    thread_slots = calloc(runtime.config.threads, 1);
    if (thread_slots == NULL) {
        ftsvm_error("cannot allocate the thread table");
        status = FTSVM_ENOMEM;
        goto err_processes;
    }
    thread_slots[0]   = 1;
    thread_slot       = 0;
    threads_running   = 1;
    return FTSVM_OK;

err_processes:
    free(runtime.processes);
    runtime.processes = NULL;
err_boot:
    bootstrap_destroy(runtime.boot);
    runtime.boot = NULL;
err_state:
    atomic_store(&runtime_state, 0);
    return status;
}

static int keep_bootstrap;

void runtime_keep_bootstrap(void)
{
    keep_bootstrap = 1;
}

int runtime_keeps_bootstrap(void)
{
    return keep_bootstrap;
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
    ftsvm_info("node %d of %d up (bootstrap %s, %u threads per node%s)", runtime.config.node,
               runtime.config.nodes, runtime.boot->ops->name, runtime.config.threads,
               runtime_is_spare(&runtime.config) ? ", a spare" : "");
    runtime.boot->starting = 0;
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
    free(runtime.processes);
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
    /* nobody destroys its memory while a peer may still access it (once
     * detached, ftsvm_finalize's last barrier said so) */
    if (!runtime.boot->detached && bootstrap_barrier(runtime.boot) != FTSVM_OK &&
        status == FTSVM_OK) {
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
    return ftsvm_runtime() ? runtime_app_nodes(&runtime.config) : FTSVM_ESTATE;
}

int ftsvm_threads(void)
{
    if (ftsvm_runtime() == NULL) {
        return FTSVM_ESTATE;
    }
    return runtime_app_nodes(&runtime.config) * (int)runtime.config.threads;
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

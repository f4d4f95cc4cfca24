/*
 * Fencing a removed peer (DESIGN.md section 7: fail-stop is enforced, never
 * assumed).
 *
 * A node learns it was removed and stops itself (failure_fence), but only
 * when it runs: one that was stopped (SIGSTOP, a debugger, a long page-out)
 * while the others removed it goes on, when continued, from where it was,
 * e.g. in the middle of phase 1 with its runs about to go to a home that
 * recovery has just rolled back. Whether those writes land is up to the
 * transport path they take:
 * - through the network (TCP, verbs): every byte enters this node through
 *   its own endpoint or queue pair, which rdma_peer_remove closes / moves to
 *   the error state at adoption; nothing the peer sends later is applied.
 *   That is the fence.
 * - through shared memory (UCX posix, sysv, xpmem, cma, knem): the peer's
 *   puts are stores (or its own process_vm_writev) through its own mapping
 *   of this node's segments. This node cannot refuse them (no code of ours
 *   runs on that path, so no epoch check can), unmapping its own side takes
 *   nothing from the peer's mapping, and moving every region to fresh memory
 *   (re-keying) would need a new exchange of keys while nodes fail. A check
 *   of the view by the peer before each write leaves the window open (it
 *   can be stopped between check and store). What does close it: such a
 *   peer is on this host by definition, so the survivor kills it (SIGKILL)
 *   and waits until it is really gone, every thread of it, before the new
 *   view is adopted, i.e. before any recovery step reads or writes a home
 *   and before any fetch resolves the peer's pending entries.
 *
 * Shooting the right process: at start-up every node publishes its pid, its
 * start time, the host's boot id and its pid namespace (runtime_process_t).
 * A peer that reaches this node's memory directly is shot only if it shares
 * the boot id and the pid namespace; its pidfd is opened then, and the
 * start time checked after the open, so that the pidfd names that very
 * process (a pid is reused only after its process is gone, and a pidfd never
 * follows a reused pid). pidfd_send_signal then cannot hit another process,
 * and poll on the pidfd reports when the whole thread group has exited (all
 * its threads have left the address space). Without pidfds (Linux < 5.3)
 * the pid is signaled after the start time is checked, and /proc is polled.
 *
 * A peer that reaches this memory directly but cannot be shot from here
 * (another pid namespace, no permission) is named at start-up; its removal
 * is logged as unfenced.
 */
#include "failure_int.h"
#include "common/clock.h"
#include "common/log.h"
#include "ftsvm.h"
#include "runtime/runtime.h"

#include <dirent.h>
#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

enum {
    FENCE_TRANSPORT,   /* the transport path is the fence (rdma_peer_remove) */
    FENCE_KILL,        /* on this host, in this pid namespace: kill it */
    FENCE_UNABLE,      /* reaches this memory directly; cannot be killed from here */
};

typedef struct fence_peer {
    int      how;           /* FENCE_* */
    int      pidfd;         /* -1: none (no pidfds here, or not FENCE_KILL) */
    int      pid;
    uint64_t start_time;
    int      done;
} fence_peer_t;

static fence_peer_t *fence_peers;

/* UCX transport names (and the verbs backend's) whose bytes enter this node
 * only through its own endpoint: the network ones. Anything else, an unknown
 * name included, is taken to reach the memory directly. */
static int fence_network_transport(const char *name, size_t len)
{
    static const char *const exact[] = { "tcp", "verbs" };
    static const char *const prefix[] = { "rc", "ud", "dc" };
    size_t i;

    for (i = 0; i < sizeof(exact) / sizeof(exact[0]); i++) {
        if (len == strlen(exact[i]) && strncmp(name, exact[i], len) == 0) {
            return 1;
        }
    }
    for (i = 0; i < sizeof(prefix) / sizeof(prefix[0]); i++) {
        if (len >= 2 && strncmp(name, prefix[i], 2) == 0) {
            return 1;
        }
    }
    return 0;
}

/* 1 when some transport to `peer` reaches this node's memory without this
 * node's own endpoint: rdma_describe_peer lists them as "name/device ...". */
static int fence_peer_direct(int peer, char *lanes, size_t size)
{
    const char *at;
    size_t len;

    if (rdma_describe_peer(failure.rdma, peer, lanes, size) != FTSVM_OK || lanes[0] == '\0') {
        snprintf(lanes, size, "unknown transports");
        return 1;
    }
    for (at = lanes; *at != '\0' && *at != '(';) {
        len = strcspn(at, "/ ");
        if (len > 0 && !fence_network_transport(at, len)) {
            return 1;
        }
        at += strcspn(at, " ");
        at += strspn(at, " ");
    }
    return 0;
}

static int fence_pidfd_open(int pid)
{
#ifdef SYS_pidfd_open
    return (int)syscall(SYS_pidfd_open, pid, 0);
#else
    (void)pid;
    errno = ENOSYS;
    return -1;
#endif
}

static int fence_pidfd_kill(int pidfd, int sig)
{
#ifdef SYS_pidfd_send_signal
    return (int)syscall(SYS_pidfd_send_signal, pidfd, sig, NULL, 0);
#else
    (void)pidfd;
    (void)sig;
    errno = ENOSYS;
    return -1;
#endif
}

/* Without a pidfd: is the process that was `p` still there, any thread of
 * it still running? A zombie leader may outlive its last threads by a
 * moment only while they exit: wait for every task to be a zombie too. */
static int fence_proc_alive(const fence_peer_t *p)
{
    char path[64], state, *end;
    struct dirent *d;
    uint64_t start;
    DIR *dir;
    long tid;
    int alive = 0;

    if (runtime_process_stat(p->pid, &state, &start) != FTSVM_OK || start != p->start_time) {
        return 0;   /* gone, or its pid already names another process */
    }
    if (state != 'Z' && state != 'X') {
        return 1;
    }
    snprintf(path, sizeof(path), "/proc/%d/task", p->pid);
    dir = opendir(path);
    if (dir == NULL) {
        return 0;
    }
    while (!alive && (d = readdir(dir)) != NULL) {
        tid = strtol(d->d_name, &end, 10);
        if (*end != '\0' || tid <= 0) {
            continue;
        }
        alive = runtime_process_stat((int)tid, &state, &start) == FTSVM_OK &&
                state != 'Z' && state != 'X';
    }
    closedir(dir);
    return alive;
}

/* How to fence `node`, and what it needs for that (a pidfd). */
static void fence_peer_setup(int node, const runtime_process_t *mine,
                             const runtime_process_t *its, fence_peer_t *p)
{
    char lanes[256], state;
    uint64_t start = 0;
    const char *why = NULL;

    p->how   = FENCE_TRANSPORT;
    p->pidfd = -1;
    if (its->pid == 0) {
        /* missing from the first start-up round: it never had an address
         * or a key of ours (the later rounds went without it) */
        return;
    }
    if (!fence_peer_direct(node, lanes, sizeof(lanes))) {
        return;
    }
    p->how        = FENCE_UNABLE;
    p->pid        = its->pid;
    p->start_time = its->start_time;
    if (its->boot_id[0] == '\0' || strncmp(its->boot_id, mine->boot_id,
                                           sizeof(its->boot_id)) != 0) {
        why = "it runs on another host, or its host is unknown";
    } else if (its->pid_ns == 0 || its->pid_ns != mine->pid_ns) {
        why = "it runs in another pid namespace";
    } else {
        p->pidfd = fence_pidfd_open(p->pid);
        if (p->pidfd < 0 && errno == ESRCH) {
            /* no process has its pid: it died (during start-up), and a dead
             * process writes nothing */
            p->how = FENCE_TRANSPORT;
            ftsvm_debug("node %d (pid %d) is gone already", node, p->pid);
            return;
        }
        if (p->pidfd < 0 && errno != ENOSYS) {
            why = "its process is gone";
        } else if (runtime_process_stat(p->pid, &state, &start) != FTSVM_OK ||
                   start != p->start_time) {
            /* after the open: the pidfd names the peer if the pid does now */
            why = "its pid names another process";
        } else if ((p->pidfd >= 0 ? fence_pidfd_kill(p->pidfd, 0) : kill(p->pid, 0)) != 0) {
            why = (errno == EPERM) ? "this node may not signal it" : "it cannot be signaled";
        } else {
            p->how = FENCE_KILL;
            ftsvm_debug("node %d (pid %d) reaches this node's memory directly (%s): it is "
                        "killed if it is removed", node, p->pid, lanes);
            return;
        }
        if (p->pidfd >= 0) {
            close(p->pidfd);
            p->pidfd = -1;
        }
    }
    ftsvm_warn("node %d reaches this node's memory directly (%s) but cannot be fenced from "
               "here: %s; if it is removed while it still runs, nothing stops its writes",
               node, lanes, why);
}

int failure_fence_setup(void)
{
    const ftsvm_runtime_t *rt = runtime_booting();
    static const runtime_process_t unknown;
    int node;

    fence_peers = calloc((size_t)failure.nodes, sizeof(*fence_peers));
    if (fence_peers == NULL) {
        ftsvm_error("cannot allocate the fencing table");
        return FTSVM_ENOMEM;
    }
    for (node = 0; node < failure.nodes; node++) {
        fence_peers[node].pidfd = -1;
        if (node != failure.node) {
            fence_peer_setup(node, rt != NULL ? &rt->processes[failure.node] : &unknown,
                             rt != NULL ? &rt->processes[node] : &unknown, &fence_peers[node]);
        }
    }
    return FTSVM_OK;
}

/* Kill `p` and wait until every thread of it has exited. Returns the time
 * waited, or 0 when it was gone already. */
/* an evicted node exits by itself right after it asked to be removed */
#define FENCE_LEAVE_GRACE_MS 3000

static uint64_t fence_kill(int node, fence_peer_t *p, unsigned grace_ms)
{
    struct pollfd pfd = { .fd = p->pidfd, .events = POLLIN };
    struct timespec nap = { 0, 1000000 };
    uint64_t start = clock_now_ns(), next_word = start + 1000000000ull;
    uint64_t grace_end = start + (uint64_t)grace_ms * 1000000ull;
    int dead, signaled = 0;

    for (;;) {
        if (p->pidfd >= 0) {
            dead = poll(&pfd, 1, (signaled || grace_ms > 0) ? 10 : 0) > 0;
        } else {
            dead = !fence_proc_alive(p);
        }
        if (dead) {
            return signaled ? clock_now_ns() - start : 0;
        }
        if (!signaled && clock_now_ns() < grace_end) {
            if (p->pidfd < 0) {
                nanosleep(&nap, NULL);
            }
            continue;
        }
        if (!signaled) {
            /* SIGKILL reaches a stopped process too: it dies without
             * running another instruction of its own */
            if ((p->pidfd >= 0 ? fence_pidfd_kill(p->pidfd, SIGKILL)
                               : kill(p->pid, SIGKILL)) != 0 && errno != ESRCH) {
                ftsvm_error("cannot kill node %d (pid %d) to fence it: %m; recovery waits "
                            "until it is gone", node, p->pid);
            }
            signaled = 1;
        }
        if (p->pidfd < 0) {
            nanosleep(&nap, NULL);
        }
        if (clock_now_ns() >= next_word) {
            /* e.g. in uninterruptible sleep: it may still finish a write of
             * the kernel's (process_vm_writev) into our memory */
            ftsvm_warn("node %d (pid %d) still runs %.0f s after SIGKILL; recovery waits "
                       "for it to be gone", node, p->pid,
                       (double)(clock_now_ns() - start) / 1e9);
            next_word += 1000000000ull;
        }
    }
}

void failure_fence_removed(const int *removed_now)
{
    fence_peer_t *p;
    uint64_t waited;
    int i, node;

    for (i = 0; fence_peers != NULL && removed_now[i] >= 0; i++) {
        node = removed_now[i];
        p = &fence_peers[node];
        if (p->done) {
            continue;
        }
        p->done = 1;
        switch (p->how) {
        case FENCE_KILL:
            waited = fence_kill(node, p,
                                atomic_load(&failure.leaving[node]) ? FENCE_LEAVE_GRACE_MS : 0);
            if (waited > 0) {
                ftsvm_warn("node %d removed while alive on this host: killed it (fencing); "
                           "pid %d gone after %.1f ms", node, p->pid, (double)waited / 1e6);
            } else {
                ftsvm_info("node %d removed: its process (pid %d) is gone", node, p->pid);
            }
            break;
        case FENCE_UNABLE:
            ftsvm_error("node %d removed: it reaches this node's memory directly and cannot "
                        "be fenced from here; if it still runs, its writes may land", node);
            break;
        default:
            break;   /* rdma_peer_remove closes the path */
        }
    }
}

void failure_fence_teardown(void)
{
    int node;

    for (node = 0; fence_peers != NULL && node < failure.nodes; node++) {
        if (fence_peers[node].pidfd >= 0) {
            close(fence_peers[node].pidfd);
        }
    }
    free(fence_peers);
    fence_peers = NULL;
}

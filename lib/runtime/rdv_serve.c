/*
 * The start-up rendezvous under a PMIx launcher (srun, mpirun), in a process
 * of its own that node 0 starts (bootstrap_pmix.c).
 *
 * Why not PMIx's own exchange for the start-up rounds: PMIx_Fence does not
 * complete without every rank, so one rank that dies or never comes stops
 * the others, and under Slurm a task that dies while it is a connected PMIx
 * client makes slurmstepd cancel the whole step. So the job uses PMIx for
 * as little as it can: its rank, the job size, and one value that node 0
 * publishes (this rendezvous's address and the job key), which the others
 * read with PMIx_Get (no fence: the PMIx server answers once node 0 has
 * committed it). Then every node leaves PMIx and the rounds go through the
 * same rendezvous server as under ftsvm-run (rdv_server.c), which leaves a
 * node out when it dies or does not join within FTSVM_BOOT_TIMEOUT.
 *
 * The server runs in a grandchild of node 0's process (two forks): it is
 * nobody's child to reap, and it outlives node 0, so that node 0's death
 * during start-up is one more left-out node. It keeps only its listening
 * socket and stderr (its log lines, "ftsvm-rendezvous ..."), and it ends
 * once the start-up is over and no node is connected any more: the nodes
 * close their connections when the job is up (bootstrap_rdv.c, detach) or
 * die, so it never outlives the job. Nothing of node 0's state is used in
 * it but the server's own tables, made before the fork.
 */
#include "rdv_serve.h"
#include "rdv_server.h"
#include "common/clock.h"
#include "common/log.h"
#include "ftsvm.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

/* Only the listening socket and stderr stay open; stdin and stdout are
 * /dev/null, so that the launcher's pipes of node 0 see their end when node
 * 0 ends. */
static void serve_keep_only(int listen_fd)
{
    int null_fd = open("/dev/null", O_RDWR | O_CLOEXEC);

    if (null_fd >= 0) {
        dup2(null_fd, STDIN_FILENO);
        dup2(null_fd, STDOUT_FILENO);
    }
    if (listen_fd > STDERR_FILENO + 1) {
        close_range(STDERR_FILENO + 1, (unsigned)listen_fd - 1, 0);
    }
    close_range((unsigned)listen_fd + 1, ~0u, 0);
}

static void __attribute__((noreturn)) serve(rdv_server_t *server)
{
    size_t max = rdv_server_max_pollfds(server), n;
    struct pollfd *fds = calloc(max, sizeof(*fds));
    struct sigaction ignore = { .sa_handler = SIG_IGN };
    uint64_t next, now;
    int timeout_ms;

    ftsvm_log_set_name("ftsvm-rendezvous");
    prctl(PR_SET_NAME, "ftsvm-rdv");   /* for ps and pgrep */
    sigaction(SIGPIPE, &ignore, NULL);
    serve_keep_only(rdv_server_listen_fd(server));
    if (fds == NULL) {
        ftsvm_error("cannot allocate %zu poll slots", max);
        _exit(1);
    }
    while (!rdv_server_idle(server)) {
        n = rdv_server_fill_pollfds(server, fds);
        next = rdv_server_next_timer(server);
        now = clock_now_ns();
        timeout_ms = -1;
        if (next != UINT64_MAX) {
            timeout_ms = (next <= now) ? 0 : (int)((next - now) / 1000000u + 1);
        }
        if (poll(fds, n, timeout_ms) < 0 && errno != EINTR) {
            ftsvm_error("poll: %m");
            _exit(1);
        }
        rdv_server_handle_pollfds(server, fds, n);
        rdv_server_run_timers(server, clock_now_ns());
    }
    _exit(rdv_server_failed(server) ? 1 : 0);
}

int rdv_serve_start(const char *addr, int nodes, double boot_timeout, char *address,
                    size_t size, char *key)
{
    char host[256];
    rdv_server_t *server;
    pid_t child, grandchild;
    int status, wstatus;

    status = rdv_make_key(key);
    if (status != FTSVM_OK) {
        return status;
    }
    if (addr == NULL || addr[0] == '\0') {
        if (gethostname(host, sizeof(host)) < 0) {
            ftsvm_error("gethostname: %m (set FTSVM_BOOT_ADDR)");
            return FTSVM_ESYS;
        }
        host[sizeof(host) - 1] = '\0';
        addr = host;
    }
    status = rdv_server_create(addr, nodes, key, boot_timeout, &server);
    if (status != FTSVM_OK) {
        ftsvm_error("node 0 cannot serve the start-up rendezvous on '%s' (FTSVM_BOOT_ADDR "
                    "says where)", addr);
        return status;
    }
    if ((size_t)snprintf(address, size, "%s", rdv_server_address(server)) >= size) {
        ftsvm_error("the rendezvous address %s is too long", rdv_server_address(server));
        rdv_server_destroy(server);
        return FTSVM_EINVAL;
    }
    child = fork();
    if (child < 0) {
        ftsvm_error("cannot start the start-up rendezvous: fork: %m");
        rdv_server_destroy(server);
        return FTSVM_ESYS;
    }
    if (child == 0) {
        grandchild = fork();
        if (grandchild == 0) {
            serve(server);
        }
        _exit(grandchild < 0 ? 1 : 0);
    }
    rdv_server_destroy(server);   /* this process's copy: the grandchild has its own */
    while (waitpid(child, &wstatus, 0) < 0) {
        if (errno != EINTR) {
            ftsvm_error("waitpid for the rendezvous' first fork: %m");
            return FTSVM_ESYS;
        }
    }
    if (!WIFEXITED(wstatus) || WEXITSTATUS(wstatus) != 0) {
        ftsvm_error("cannot start the start-up rendezvous: its second fork failed");
        return FTSVM_ESYS;
    }
    ftsvm_debug("the start-up rendezvous of %d nodes listens on %s", nodes, address);
    return FTSVM_OK;
}

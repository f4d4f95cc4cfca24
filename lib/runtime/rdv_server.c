/* The server side of the built-in rendezvous (lib/runtime/rdv_wire.h), run by
 * ftsvm-run and, under PMIx, by node 0's rendezvous process (rdv_serve.c): one TCP
 * connection per node, a HELLO checked against the job key, then allgather
 * rounds until the nodes are done.
 *
 * Invariants:
 * - Rounds are strictly sequential. A node that has contributed to the round
 *   being collected is not read from until that round completes, so every
 *   GATHER that is read belongs to the current round, and a message is read
 *   exactly up to its end (never into the next one).
 * - Before every node has joined, losing any node fails the start-up for all:
 *   nothing could complete without it. After that a node that is gone is only
 *   absent: rounds complete without it.
 * - A failure is final: every node still connected, and every later valid
 *   HELLO, gets the same RDV_ERROR. It is logged once, when it first reaches
 *   a node, so that a job of programs that never use ftsvm (/bin/true) logs
 *   nothing.
 * - Connections are closed (fd -1) at once but freed only by a sweep at the
 *   start of rdv_server_fill_pollfds or of rdv_accept (after every slot has
 *   been handled), so that no pointer kept across one poll() iteration
 *   dangles.
 */
#include "rdv_server_int.h"
#include "common/clock.h"
#include "common/log.h"
#include "ftsvm.h"
#include "rdv_wire.h"

#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/random.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <unistd.h>

/* ---- the interface ---- */

int rdv_make_key(char *hex)
{
    static const char digits[] = "0123456789abcdef";
    uint8_t raw[RDV_KEY_BYTES];
    size_t got = 0, i;
    ssize_t n;

    while (got < sizeof(raw)) {
        n = getrandom(raw + got, sizeof(raw) - got, 0);
        if (n < 0) {
            if (errno == EINTR) {
                continue;
            }
            ftsvm_error("cannot make the job key: getrandom: %m");
            return FTSVM_ESYS;
        }
        got += (size_t)n;
    }
    for (i = 0; i < sizeof(raw); i++) {
        hex[2 * i] = digits[raw[i] >> 4];
        hex[2 * i + 1] = digits[raw[i] & 0xf];
    }
    hex[2 * sizeof(raw)] = '\0';
    explicit_bzero(raw, sizeof(raw));
    return FTSVM_OK;
}

static int rdv_listen(rdv_server_t *server, const char *addr)
{
    struct addrinfo hints, *res, *ai;
    struct sockaddr_storage ss;
    socklen_t sslen = sizeof(ss);
    int rc, fd = -1, err = 0;

    memset(&hints, 0, sizeof(hints));
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
    rc = getaddrinfo(addr, "0", &hints, &res);
    if (rc != 0) {
        ftsvm_error("cannot listen on '%s': %s", addr,
                    (rc == EAI_SYSTEM) ? strerror(errno) : gai_strerror(rc));
        return FTSVM_EINVAL;
    }
    for (ai = res; ai != NULL; ai = ai->ai_next) {
        fd = socket(ai->ai_family, ai->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC,
                    ai->ai_protocol);
        if (fd < 0) {
            err = errno;
            continue;
        }
        if (bind(fd, ai->ai_addr, ai->ai_addrlen) == 0 && listen(fd, SOMAXCONN) == 0) {
            break;
        }
        err = errno;
        close(fd);
        fd = -1;
    }
    freeaddrinfo(res);
    if (fd < 0) {
        errno = err;
        ftsvm_error("cannot listen on '%s': %m", addr);
        return (err == EADDRNOTAVAIL || err == EAFNOSUPPORT) ? FTSVM_EINVAL : FTSVM_ESYS;
    }
    if (getsockname(fd, (struct sockaddr *)&ss, &sslen) < 0) {
        ftsvm_error("getsockname on the rendezvous socket: %m");
        close(fd);
        return FTSVM_ESYS;
    }
    rdv_format_peer((struct sockaddr *)&ss, sslen, server->address, sizeof(server->address));
    server->listen_fd = fd;
    return FTSVM_OK;
}

/* The server's tables and the server itself (not its sockets). */
static void rdv_server_free(rdv_server_t *server)
{
    free(server->contributed);
    free(server->absent);
    free(server->joined);
    free(server->node_conn);
    free(server->polled);
    free(server->conns);
    free(server);
}

int rdv_server_create(const char *addr, int nodes, const char *key, double boot_timeout,
                      rdv_server_t **server_p)
{
    rdv_server_t *server;
    int status;

    if (nodes < 1 || strlen(key) >= sizeof(server->key)) {
        ftsvm_error("bad rendezvous parameters (%d nodes, key of %zu characters)", nodes,
                    strlen(key));
        return FTSVM_EINVAL;
    }
    server = calloc(1, sizeof(*server));
    if (server == NULL) {
        ftsvm_error("out of memory for the rendezvous of %d nodes", nodes);
        return FTSVM_ENOMEM;
    }
    server->listen_fd = -1;
    server->nodes = nodes;
    server->key_len = strlen(key);
    memcpy(server->key, key, server->key_len + 1);
    server->boot_timeout = boot_timeout;
    server->lost_node = -1;
    server->round = 1;
    /* Each node joins once: joined conns + the bound on the others in
     * rdv_accept come to at most nodes + RDV_MAX_STRAY open conns. */
    server->conn_max = (size_t)nodes + RDV_MAX_STRAY;
    server->conns = calloc(server->conn_max, sizeof(*server->conns));
    server->polled = calloc(server->conn_max, sizeof(*server->polled));
    server->node_conn = calloc((size_t)nodes, sizeof(*server->node_conn));
    server->joined = calloc((size_t)nodes, 1);
    server->absent = calloc((size_t)nodes, 1);
    server->contributed = calloc((size_t)nodes, 1);
    if (server->conns == NULL || server->polled == NULL || server->node_conn == NULL ||
        server->joined == NULL || server->absent == NULL || server->contributed == NULL) {
        ftsvm_error("out of memory for the rendezvous of %d nodes", nodes);
        status = FTSVM_ENOMEM;
        goto err_free;
    }
    status = rdv_listen(server, addr);
    if (status != FTSVM_OK) {
        goto err_free;   /* rdv_listen logged it */
    }
    server->boot_deadline = clock_now_ns() + (uint64_t)(boot_timeout * 1e9);
    *server_p = server;
    return FTSVM_OK;

err_free:
    rdv_server_free(server);
    return status;
}

void rdv_server_destroy(rdv_server_t *server)
{
    size_t i;

    if (server == NULL) {
        return;
    }
    for (i = 0; i < server->conn_count; i++) {
        rdv_conn_close(server, server->conns[i]);
    }
    rdv_sweep(server);
    rdv_blob_unref(server->gathered);
    close(server->listen_fd);
    rdv_server_free(server);
}

const char *rdv_server_address(const rdv_server_t *server)
{
    return server->address;
}

size_t rdv_server_max_pollfds(const rdv_server_t *server)
{
    return 1 + server->conn_max;
}

size_t rdv_server_fill_pollfds(rdv_server_t *server, struct pollfd *fds)
{
    size_t i, n = 0;

    rdv_sweep(server);
    /* slot 0 is always the listening socket; fd -1 makes poll() skip it */
    fds[n].fd = server->accept_paused ? -1 : server->listen_fd;
    fds[n].events = POLLIN;
    fds[n].revents = 0;
    n++;
    server->polled_count = 0;
    for (i = 0; i < server->conn_count; i++) {
        rdv_conn_t *conn = server->conns[i];
        short events = 0;

        /* A node waiting for its round is not read from; poll() still
         * reports POLLERR and POLLHUP for it. */
        if (conn->state != RDV_CONN_NODE || !server->contributed[conn->node]) {
            events |= POLLIN;
        }
        if (conn->out_head != NULL) {
            events |= POLLOUT;
        }
        fds[n].fd = conn->fd;
        fds[n].events = events;
        fds[n].revents = 0;
        n++;
        server->polled[server->polled_count++] = conn;
    }
    return n;
}

void rdv_server_handle_pollfds(rdv_server_t *server, const struct pollfd *fds, size_t nfds)
{
    size_t i;

    for (i = 1; i < nfds && i - 1 < server->polled_count; i++) {
        rdv_conn_t *conn = server->polled[i - 1];
        short revents = fds[i].revents;

        /* closed since the fill by something else handled in this iteration */
        if (revents == 0 || conn->fd < 0 || conn->fd != fds[i].fd) {
            continue;
        }
        if (revents & POLLOUT) {
            rdv_conn_on_writable(server, conn);
        }
        if (conn->fd < 0 || !(revents & (POLLIN | POLLHUP | POLLERR))) {
            continue;
        }
        if (conn->state == RDV_CONN_NODE && server->contributed[conn->node]) {
            if (revents & (POLLHUP | POLLERR)) {
                rdv_conn_drop(server, conn, "lost its rendezvous connection");
            }
            continue;
        }
        rdv_conn_on_readable(server, conn);
    }
    /* Accept last: a new connection must not take the place of one that was
     * closed above while its slot is still being looked at. */
    if (nfds > 0 && (fds[0].revents & POLLIN)) {
        rdv_accept(server);
    }
}

uint64_t rdv_server_next_timer(const rdv_server_t *server)
{
    uint64_t next = UINT64_MAX;
    size_t i;

    if (server->accept_paused && server->accept_resume < next) {
        next = server->accept_resume;
    }
    if (!server->failed && !server->booted) {
        if (server->boot_deadline < next) {
            next = server->boot_deadline;
        }
        if (server->lost_node >= 0 && server->lost_deadline < next) {
            next = server->lost_deadline;
        }
    }
    for (i = 0; i < server->conn_count; i++) {
        const rdv_conn_t *conn = server->conns[i];

        if (conn->fd >= 0 && conn->state != RDV_CONN_NODE && conn->deadline < next) {
            next = conn->deadline;
        }
    }
    return next;
}

/* FTSVM_BOOT_TIMEOUT: the nodes that have not joined are left out, if two
 * that did are left; else the start-up fails as it always did. */
static void rdv_boot_deadline(rdv_server_t *server, char *missing, size_t size)
{
    int node, joined = 0;

    for (node = 0; node < server->nodes; node++) {
        joined += server->joined[node] && !server->absent[node];
    }
    if (joined < 2) {
        rdv_format_missing(server->joined, server->nodes, missing, size);
        rdv_fail(server, FTSVM_ETIMEDOUT, "%s did not join the rendezvous within %g s",
                 missing, server->boot_timeout);
        return;
    }
    for (node = 0; node < server->nodes && !server->failed && !server->booted; node++) {
        if (!server->joined[node]) {
            rdv_leave_out(server, node, "did not join the rendezvous within %g s",
                          server->boot_timeout);
        }
    }
}

void rdv_server_run_timers(rdv_server_t *server, uint64_t now_ns)
{
    char missing[RDV_TEXT_MAX - 64];
    size_t i;
    int node;

    if (server->accept_paused && now_ns >= server->accept_resume) {
        server->accept_paused = 0;
    }
    if (!server->failed && !server->booted && server->lost_node >= 0 &&
        now_ns >= server->lost_deadline) {
        node = server->lost_node;
        server->lost_node = -1;
        rdv_leave_out(server, node, "%s before every node had joined", server->lost_what);
    }
    if (!server->failed && !server->booted && now_ns >= server->boot_deadline) {
        rdv_boot_deadline(server, missing, sizeof(missing));
    }
    /* conn_count may grow only in rdv_accept, never from here */
    for (i = 0; i < server->conn_count; i++) {
        rdv_conn_t *conn = server->conns[i];

        if (conn->fd < 0 || conn->state == RDV_CONN_NODE || now_ns < conn->deadline) {
            continue;
        }
        if (conn->state == RDV_CONN_HELLO) {
            rdv_refuse(server, conn, FTSVM_ETIMEDOUT, "no hello within " RDV_HELLO_TIMEOUT_TEXT);
        } else {
            rdv_conn_close(server, conn);   /* the peer did not close after our error */
        }
    }
}

void rdv_server_on_node_exit(rdv_server_t *server, int node, int wait_status)
{
    char how[64];

    if (node < 0 || node >= server->nodes || server->failed) {
        return;
    }
    rdv_describe_exit(wait_status, how, sizeof(how));
    if (!server->booted) {
        rdv_leave_out(server, node, server->joined[node] ?
                      "exited (%s) before every node joined the rendezvous" :
                      "exited (%s) before joining the rendezvous", how);
        return;
    }
    if (server->node_conn[node] != NULL) {
        rdv_conn_close(server, server->node_conn[node]);   /* nobody is left to read it */
    }
    if (!server->absent[node]) {
        server->absent[node] = 1;
        /* the launcher has logged the exit itself */
        ftsvm_debug("node %d exited (%s): absent from rendezvous round %llu on", node, how,
                    (unsigned long long)server->round);
    }
    rdv_round_try_complete(server);
}

int rdv_server_idle(const rdv_server_t *server)
{
    size_t i;

    if (!server->booted && !server->failed) {
        return 0;
    }
    for (i = 0; i < server->conn_count; i++) {
        if (server->conns[i]->fd >= 0) {
            return 0;
        }
    }
    return 1;
}

int rdv_server_failed(const rdv_server_t *server)
{
    return server->failed != 0;
}

int rdv_server_listen_fd(const rdv_server_t *server)
{
    return server->listen_fd;
}

unsigned rdv_server_refused(const rdv_server_t *server)
{
    return server->refused;
}

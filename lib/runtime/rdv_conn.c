/* The rendezvous server's connections: accept them (a bounded number of
 * strays), read each message exactly to its end, queue and write answers,
 * close with a linger after an error so that the peer can read it, and free
 * closed ones only at a sweep (no pointer kept across a poll() dangles). */
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
#include <sys/uio.h>
#include <sys/wait.h>
#include <unistd.h>

rdv_blob_t *rdv_blob_new(size_t len)
{
    rdv_blob_t *blob = calloc(1, sizeof(*blob) + len);

    if (blob != NULL) {
        blob->refs = 1;
        blob->len = len;
    }
    return blob;
}

void rdv_blob_unref(rdv_blob_t *blob)
{
    if (blob != NULL && --blob->refs == 0) {
        free(blob);
    }
}

/* ---- connections ---- */

void rdv_conn_close(rdv_server_t *server, rdv_conn_t *conn)
{
    rdv_msg_t *msg;

    if (conn->fd < 0) {
        return;
    }
    close(conn->fd);
    conn->fd = -1;
    if (conn->node < 0) {
        server->unjoined--;
    } else if (server->node_conn[conn->node] == conn) {
        server->node_conn[conn->node] = NULL;
    }
    while ((msg = conn->out_head) != NULL) {
        conn->out_head = msg->next;
        rdv_blob_unref(msg->payload);
        free(msg);
    }
    conn->out_tail = NULL;
    free(conn->in);
    conn->in = NULL;
    conn->in_len = conn->in_cap = 0;
}

/* Close a connection that failed under us; a node's is lost with it. */
void rdv_conn_drop(rdv_server_t *server, rdv_conn_t *conn, const char *what)
{
    int node = (conn->state == RDV_CONN_NODE) ? conn->node : -1;

    rdv_conn_close(server, conn);
    if (node >= 0) {
        rdv_node_lost(server, node, what);
    }
}

/* Queue a message; it is sent when poll() says the socket is writable. */
int rdv_conn_queue(rdv_server_t *server, rdv_conn_t *conn, uint16_t type,
                   int status, rdv_blob_t *payload)
{
    rdv_msg_t *msg = calloc(1, sizeof(*msg));

    if (msg == NULL) {
        ftsvm_error("out of memory for a rendezvous message to %s; closing it", conn->peer);
        rdv_conn_drop(server, conn, "lost its rendezvous connection");
        return FTSVM_ENOMEM;
    }
    msg->hdr.magic = RDV_MAGIC;
    msg->hdr.type = type;
    msg->hdr.status = (int16_t)status;
    msg->hdr.node = conn->peer_node;
    msg->hdr.len = (payload != NULL) ? (uint32_t)payload->len : 0;
    if (payload != NULL) {
        payload->refs++;
        msg->payload = payload;
    }
    if (conn->out_tail != NULL) {
        conn->out_tail->next = msg;
    } else {
        conn->out_head = msg;
    }
    conn->out_tail = msg;
    return FTSVM_OK;
}

/* Send RDV_ERROR and close: no more input is taken from this connection. */
void rdv_conn_error_close(rdv_server_t *server, rdv_conn_t *conn, int status,
                          const char *text)
{
    size_t len = strlen(text);
    rdv_blob_t *blob;

    if (conn->state == RDV_CONN_NODE) {
        server->node_conn[conn->node] = NULL;
    }
    conn->state = RDV_CONN_CLOSING;
    conn->deadline = clock_now_ns() + RDV_LINGER_NS;
    conn->in_len = 0;
    blob = rdv_blob_new(len);
    if (blob == NULL) {
        rdv_conn_close(server, conn);   /* the peer sees the close, without the reason */
        return;
    }
    memcpy(blob->data, text, len);   /* the text is sent without a terminating NUL */
    rdv_conn_queue(server, conn, RDV_ERROR, status, blob);
    rdv_blob_unref(blob);
}


void rdv_refuse(rdv_server_t *server, rdv_conn_t *conn, int status,
                const char *fmt, ...)
{
    char reason[RDV_TEXT_MAX];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(reason, sizeof(reason), fmt, ap);
    va_end(ap);
    ftsvm_warn("refused rendezvous connection from %s: %s", conn->peer, reason);
    server->refused++;
    rdv_conn_error_close(server, conn, status, reason);
}

static void rdv_conn_on_eof(rdv_server_t *server, rdv_conn_t *conn, int err)
{
    switch (conn->state) {
    case RDV_CONN_HELLO:
        if (err != 0) {
            ftsvm_info("rendezvous connection from %s failed before its hello: %s",
                       conn->peer, strerror(err));
        } else {
            ftsvm_info("rendezvous connection from %s closed before its hello", conn->peer);
        }
        rdv_conn_close(server, conn);
        break;
    case RDV_CONN_NODE:
        if (err != 0) {
            ftsvm_info("rendezvous connection of node %d failed: %s", conn->node, strerror(err));
        }
        rdv_conn_drop(server, conn, (err != 0) ? "lost its rendezvous connection"
                                               : "closed its rendezvous connection");
        break;
    case RDV_CONN_CLOSING:
        rdv_conn_close(server, conn);
        break;
    }
}

/* Read and throw away whatever a closing peer still sends, until it closes.
 * Bounded per call so that a peer that keeps sending cannot hold the loop. */
static void rdv_conn_discard(rdv_server_t *server, rdv_conn_t *conn)
{
    char sink[4096];
    ssize_t n;
    int i;

    for (i = 0; i < 16; i++) {
        n = recv(conn->fd, sink, sizeof(sink), 0);
        if (n > 0) {
            continue;
        }
        if (n < 0 && (errno == EINTR)) {
            continue;
        }
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            return;
        }
        rdv_conn_close(server, conn);
        return;
    }
}

void rdv_conn_on_readable(rdv_server_t *server, rdv_conn_t *conn)
{
    const size_t hdr_size = sizeof(rdv_hdr_t);
    rdv_hdr_t hdr;
    size_t want;
    ssize_t n;

    for (;;) {
        if (conn->fd < 0) {
            return;
        }
        if (conn->state == RDV_CONN_CLOSING) {
            rdv_conn_discard(server, conn);
            return;
        }
        if (conn->state == RDV_CONN_NODE && server->contributed[conn->node]) {
            return;   /* waits for the round to complete (see the top of the file) */
        }
        if (conn->in_len < hdr_size) {
            want = hdr_size;
        } else {
            memcpy(&hdr, conn->in, hdr_size);
            want = hdr_size + hdr.len;
        }
        if (conn->in_cap < want) {
            uint8_t *in = realloc(conn->in, want);

            if (in == NULL) {
                ftsvm_error("out of memory for a rendezvous message of %zu bytes from %s",
                            want, conn->peer);
                rdv_conn_drop(server, conn, "lost its rendezvous connection");
                return;
            }
            conn->in = in;
            conn->in_cap = want;
        }
        n = recv(conn->fd, conn->in + conn->in_len, want - conn->in_len, 0);
        if (n == 0) {
            rdv_conn_on_eof(server, conn, 0);
            return;
        }
        if (n < 0) {
            if (errno == EINTR) {
                continue;
            }
            if (errno != EAGAIN && errno != EWOULDBLOCK) {
                rdv_conn_on_eof(server, conn, errno);
            }
            return;
        }
        conn->in_len += (size_t)n;
        if (conn->in_len < hdr_size) {
            continue;
        }
        memcpy(&hdr, conn->in, hdr_size);
        if (conn->in_len == hdr_size && rdv_check_header(server, conn, &hdr) != FTSVM_OK) {
            return;
        }
        if (conn->in_len < hdr_size + hdr.len) {
            continue;
        }
        conn->in_len = 0;   /* the message is complete; the buffer is reused */
        if (hdr.type == RDV_HELLO) {
            rdv_on_hello(server, conn, &hdr, conn->in + hdr_size);
        } else {
            rdv_on_gather(server, conn, conn->in + hdr_size, hdr.len);
        }
        if (conn->fd >= 0 && conn->in_cap > RDV_IN_KEEP) {
            free(conn->in);
            conn->in = NULL;
            conn->in_cap = 0;
        }
    }
}

void rdv_conn_on_writable(rdv_server_t *server, rdv_conn_t *conn)
{
    const size_t hdr_size = sizeof(rdv_hdr_t);
    struct msghdr mh;
    struct iovec iov[2];
    rdv_msg_t *msg;
    size_t total;
    ssize_t n;

    while ((msg = conn->out_head) != NULL) {
        total = hdr_size + msg->hdr.len;
        memset(&mh, 0, sizeof(mh));
        mh.msg_iov = iov;
        if (msg->sent < hdr_size) {
            iov[0].iov_base = (uint8_t *)&msg->hdr + msg->sent;
            iov[0].iov_len = hdr_size - msg->sent;
            iov[1].iov_base = (msg->payload != NULL) ? msg->payload->data : NULL;
            iov[1].iov_len = msg->hdr.len;
            mh.msg_iovlen = (msg->hdr.len > 0) ? 2 : 1;
        } else {
            iov[0].iov_base = msg->payload->data + (msg->sent - hdr_size);
            iov[0].iov_len = total - msg->sent;
            mh.msg_iovlen = 1;
        }
        n = sendmsg(conn->fd, &mh, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (n < 0) {
            if (errno == EINTR) {
                continue;
            }
            if (errno == EAGAIN || errno == EWOULDBLOCK) {
                return;
            }
            if (conn->state == RDV_CONN_NODE) {
                ftsvm_info("cannot send to node %d over the rendezvous: %m", conn->node);
            }
            rdv_conn_drop(server, conn, "lost its rendezvous connection");
            return;
        }
        msg->sent += (size_t)n;
        if (msg->sent < total) {
            continue;
        }
        conn->out_head = msg->next;
        if (conn->out_head == NULL) {
            conn->out_tail = NULL;
        }
        rdv_blob_unref(msg->payload);
        free(msg);
    }
    if (conn->state == RDV_CONN_CLOSING && !conn->shut_wr) {
        /* Our RDV_ERROR is out: tell the peer we are done, then wait for its close. */
        shutdown(conn->fd, SHUT_WR);
        conn->shut_wr = 1;
    }
}

void rdv_format_peer(const struct sockaddr *sa, socklen_t salen, char *buf, size_t size)
{
    char host[64], port[8];   /* numeric: an IPv6 address with a scope fits */

    if (getnameinfo(sa, salen, host, sizeof(host), port, sizeof(port),
                    NI_NUMERICHOST | NI_NUMERICSERV) != 0) {
        snprintf(buf, size, "an unknown address");
    } else if (sa->sa_family == AF_INET6) {
        snprintf(buf, size, "[%s]:%s", host, port);
    } else {
        snprintf(buf, size, "%s:%s", host, port);
    }
}

/* Free the connections closed since the last sweep. */
void rdv_sweep(rdv_server_t *server)
{
    size_t i = 0;

    while (i < server->conn_count) {
        if (server->conns[i]->fd < 0) {
            free(server->conns[i]);
            server->conns[i] = server->conns[--server->conn_count];
        } else {
            i++;
        }
    }
}

void rdv_accept(rdv_server_t *server)
{
    struct sockaddr_storage ss;
    socklen_t sslen;
    rdv_conn_t *conn;
    char peer[80];
    int fd, one = 1;

    /* Every slot of this poll iteration has been looked at (rdv_accept runs
     * last), so the closed connections can go now and leave their places. */
    rdv_sweep(server);
    for (;;) {
        sslen = sizeof(ss);
        fd = accept4(server->listen_fd, (struct sockaddr *)&ss, &sslen,
                     SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno == EINTR || errno == ECONNABORTED) {
                continue;
            }
            if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM) {
                /* The pending connection keeps the socket readable: without a
                 * pause this would spin until a descriptor frees up. */
                ftsvm_warn("cannot accept rendezvous connections for now: %m");
                server->accept_paused = 1;
                server->accept_resume = clock_now_ns() + RDV_ACCEPT_PAUSE_NS;
            }
            return;
        }
        rdv_format_peer((struct sockaddr *)&ss, sslen, peer, sizeof(peer));
        /* Bounded so that stray connections cannot use up the descriptors
         * that the nodes' connections need: room for every node still to
         * join (they may all connect before any HELLO is read) and a few. */
        if (server->unjoined >= (size_t)(server->nodes - server->joined_count) + RDV_MAX_STRAY ||
            server->conn_count >= server->conn_max) {
            ftsvm_warn("refused rendezvous connection from %s: too many connections "
                       "waiting for a hello", peer);
            server->refused++;
            close(fd);
            continue;
        }
        conn = calloc(1, sizeof(*conn));
        if (conn == NULL) {
            ftsvm_error("out of memory for the rendezvous connection from %s", peer);
            close(fd);
            continue;
        }
        /* Small request/answer messages: do not let Nagle hold them back. */
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
        conn->fd = fd;
        conn->state = RDV_CONN_HELLO;
        conn->node = -1;
        conn->deadline = clock_now_ns() + RDV_HELLO_TIMEOUT_NS;
        snprintf(conn->peer, sizeof(conn->peer), "%s", peer);
        server->conns[server->conn_count++] = conn;
        server->unjoined++;
        ftsvm_debug("rendezvous connection from %s", peer);
    }
}

/* The launcher side of the built-in rendezvous (lib/rdv_wire.h): one TCP
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
#include "rdv_server.h"

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

#define RDV_MS                   1000000ull            /* ns */
#define RDV_HELLO_TIMEOUT_NS     (5000 * RDV_MS)       /* from accept to a valid HELLO */
#define RDV_HELLO_TIMEOUT_TEXT   "5 s"
/* After our last RDV_ERROR and a shutdown(SHUT_WR), how long the peer has to
 * read it and close. Closing at once could make the kernel answer the peer's
 * unread data with a reset, which may destroy the error text before the peer
 * has read it. */
#define RDV_LINGER_NS            (2000 * RDV_MS)
/* A node's connection closes a moment before its exit status reaches us;
 * wait that long before failing the start-up so that the message can say
 * how the node ended. */
#define RDV_LOST_GRACE_NS        (250 * RDV_MS)
#define RDV_ACCEPT_PAUSE_NS      (100 * RDV_MS)        /* after accept ran out of fds */
#define RDV_MAX_STRAY            64          /* connections beyond the nodes still to join */
#define RDV_HELLO_MAX            1024        /* the key is 64 characters */
#define RDV_GATHER_MAX_TOTAL     (1ull << 30)  /* bytes of one round's result */
#define RDV_IN_KEEP              (64u << 10) /* input buffers above this are freed */
#define RDV_TEXT_MAX             512

/* A payload shared by the messages that carry it (one round's result goes to
 * every contributor). */
typedef struct rdv_blob {
    size_t  refs;
    size_t  len;
    uint8_t data[];
} rdv_blob_t;

typedef struct rdv_msg {
    struct rdv_msg *next;
    rdv_hdr_t       hdr;
    rdv_blob_t     *payload;   /* NULL for an empty payload */
    size_t          sent;      /* header and payload bytes already sent */
} rdv_msg_t;

typedef enum {
    RDV_CONN_HELLO,    /* accepted, waiting for a valid HELLO */
    RDV_CONN_NODE,     /* welcomed: carries its node's rounds */
    RDV_CONN_CLOSING,  /* sending a last RDV_ERROR, then waiting for the close */
} rdv_conn_state_t;

typedef struct rdv_conn {
    int              fd;        /* -1 once closed */
    rdv_conn_state_t state;
    int              node;      /* >= 0 once its HELLO was accepted */
    uint32_t         peer_node; /* node id claimed by its HELLO, echoed in replies */
    char             peer[80];  /* "addr:port" for the log */
    uint64_t         deadline;  /* RDV_CONN_HELLO: HELLO; RDV_CONN_CLOSING: linger */
    int              shut_wr;
    uint8_t         *in;        /* the message being received, header first */
    size_t           in_len;
    size_t           in_cap;
    rdv_msg_t       *out_head;
    rdv_msg_t       *out_tail;
} rdv_conn_t;

struct rdv_server {
    int          listen_fd;
    int          nodes;
    char         key[128];
    size_t       key_len;
    char         address[128];
    double       boot_timeout;      /* seconds, for messages */
    uint64_t     boot_deadline;
    int          accept_paused;
    uint64_t     accept_resume;

    rdv_conn_t **conns;             /* open and recently closed connections */
    size_t       conn_count;
    size_t       conn_max;
    rdv_conn_t **polled;            /* conns behind the slots of the last fill */
    size_t       polled_count;
    size_t       unjoined;          /* open conns with node < 0 */

    rdv_conn_t **node_conn;         /* [nodes] the node's open RDV_CONN_NODE conn */
    uint8_t     *joined;            /* [nodes] its HELLO was accepted */
    uint8_t     *absent;            /* [nodes] gone after start-up */
    int          joined_count;
    int          booted;            /* every node has joined */
    int          lost_node;         /* joined, lost its connection before boot; -1 */
    char         lost_what[128];
    uint64_t     lost_deadline;

    /* the round being collected */
    uint64_t     round;             /* counted from 1 */
    uint8_t     *contributed;       /* [nodes] */
    rdv_blob_t  *gathered;          /* NULL until the first contribution */
    uint32_t     round_len;
    int          round_first;       /* the node whose contribution set round_len */

    int          failed;            /* FTSVM_E* once the rendezvous failed, else 0 */
    char         failure[RDV_TEXT_MAX];
    int          failure_logged;
    unsigned     refused;
};

static void rdv_node_lost(rdv_server_t *server, int node, const char *what);

static rdv_blob_t *rdv_blob_new(size_t len)
{
    rdv_blob_t *blob = calloc(1, sizeof(*blob) + len);

    if (blob != NULL) {
        blob->refs = 1;
        blob->len = len;
    }
    return blob;
}

static void rdv_blob_unref(rdv_blob_t *blob)
{
    if (blob != NULL && --blob->refs == 0) {
        free(blob);
    }
}

static void rdv_describe_exit(int wait_status, char *buf, size_t size)
{
    if (WIFEXITED(wait_status)) {
        snprintf(buf, size, "exit code %d", WEXITSTATUS(wait_status));
    } else if (WIFSIGNALED(wait_status)) {
        snprintf(buf, size, "signal %d", WTERMSIG(wait_status));
    } else {
        snprintf(buf, size, "wait status 0x%x", (unsigned)wait_status);
    }
}

/* "node 3" or "nodes 1, 2, 5-9": the nodes whose flag is zero. Long lists
 * are cut short so that the text fits one log line and one RDV_ERROR. */
static void rdv_format_missing(const uint8_t *flags, int nodes, char *buf, size_t size)
{
    size_t used;
    int first, last, count = 0, shown = 0;

    for (first = 0; first < nodes; first++) {
        count += !flags[first];
    }
    used = (size_t)snprintf(buf, size, "%s", (count == 1) ? "node " : "nodes ");
    for (first = 0; first < nodes; first = last + 1) {
        last = first;
        if (flags[first]) {
            continue;
        }
        while (last + 1 < nodes && !flags[last + 1]) {
            last++;
        }
        if (used + 48 > size) {
            snprintf(buf + used, size - used, ", ... (%d in all)", count);
            return;
        }
        if (last == first) {
            used += (size_t)snprintf(buf + used, size - used, "%s%d", shown ? ", " : "", first);
        } else {
            used += (size_t)snprintf(buf + used, size - used, "%s%d%s%d", shown ? ", " : "",
                                     first, (last == first + 1) ? ", " : "-", last);
        }
        shown = 1;
    }
}

/* Constant time in the contents: the key's length (64) is no secret. */
static int rdv_key_matches(const rdv_server_t *server, const uint8_t *text, size_t len)
{
    volatile uint8_t diff = 0;
    size_t i;

    /* rdv_wire.h says "payload = FTSVM_JOB_KEY text" without saying whether a
     * terminating NUL is sent; take both. */
    if (len == server->key_len + 1 && text[len - 1] == '\0') {
        len--;
    }
    if (len != server->key_len) {
        return 0;
    }
    for (i = 0; i < len; i++) {
        diff |= (uint8_t)(text[i] ^ (uint8_t)server->key[i]);
    }
    return diff == 0;
}

/* ---- connections ---- */

static void rdv_conn_close(rdv_server_t *server, rdv_conn_t *conn)
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
static void rdv_conn_drop(rdv_server_t *server, rdv_conn_t *conn, const char *what)
{
    int node = (conn->state == RDV_CONN_NODE) ? conn->node : -1;

    rdv_conn_close(server, conn);
    if (node >= 0) {
        rdv_node_lost(server, node, what);
    }
}

/* Queue a message; it is sent when poll() says the socket is writable. */
static int rdv_conn_queue(rdv_server_t *server, rdv_conn_t *conn, uint16_t type,
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
static void rdv_conn_error_close(rdv_server_t *server, rdv_conn_t *conn, int status,
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

static void rdv_refuse(rdv_server_t *server, rdv_conn_t *conn, int status,
                       const char *fmt, ...) __attribute__((format(printf, 4, 5)));

static void rdv_refuse(rdv_server_t *server, rdv_conn_t *conn, int status,
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

/* ---- failure and rounds ---- */

static void rdv_log_failure(rdv_server_t *server)
{
    if (!server->failure_logged) {
        ftsvm_error("%s: %s", server->booted ? "rendezvous failed" : "start-up failed",
                    server->failure);
        server->failure_logged = 1;
    }
}

static void rdv_fail(rdv_server_t *server, int status, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void rdv_fail(rdv_server_t *server, int status, const char *fmt, ...)
{
    size_t i, delivered = 0;
    va_list ap;

    if (server->failed) {
        return;
    }
    va_start(ap, fmt);
    vsnprintf(server->failure, sizeof(server->failure), fmt, ap);
    va_end(ap);
    server->failed = status;
    for (i = 0; i < server->conn_count; i++) {
        rdv_conn_t *conn = server->conns[i];

        if (conn->fd >= 0 && conn->state == RDV_CONN_NODE) {
            rdv_conn_error_close(server, conn, status, server->failure);
            delivered++;
        }
    }
    rdv_blob_unref(server->gathered);
    server->gathered = NULL;
    if (delivered > 0) {
        rdv_log_failure(server);
    }
}

/* Complete the round if every node that is still there has contributed. */
static void rdv_round_try_complete(rdv_server_t *server)
{
    rdv_blob_t *blob = server->gathered;
    int node;

    if (server->failed || !server->booted || blob == NULL) {
        return;
    }
    for (node = 0; node < server->nodes; node++) {
        if (!server->contributed[node] && !server->absent[node]) {
            return;
        }
    }
    memcpy(blob->data, server->contributed, (size_t)server->nodes);   /* present bytes */
    /* Reset the round before queueing: a failing queue loses its node, which
     * looks at the round again and must find a new, empty one. */
    server->gathered = NULL;
    ftsvm_debug("rendezvous round %llu complete, %u bytes per node",
                (unsigned long long)server->round, server->round_len);
    server->round++;
    for (node = 0; node < server->nodes; node++) {
        rdv_conn_t *conn = server->node_conn[node];

        if (server->contributed[node] && conn != NULL) {
            rdv_conn_queue(server, conn, RDV_GATHERED, 0, blob);
        }
    }
    memset(server->contributed, 0, (size_t)server->nodes);   /* resumes their input */
    rdv_blob_unref(blob);
}

static void rdv_on_gather(rdv_server_t *server, rdv_conn_t *conn, const uint8_t *payload,
                          uint32_t len)
{
    int node = conn->node;
    uint64_t total;

    if (server->gathered == NULL) {
        total = (uint64_t)server->nodes * ((uint64_t)len + 1);
        if (total > RDV_GATHER_MAX_TOTAL) {
            rdv_fail(server, FTSVM_ENOMEM, "rendezvous round %llu would gather %d x %u bytes, "
                     "more than the launcher's limit of %llu MiB",
                     (unsigned long long)server->round, server->nodes, len,
                     RDV_GATHER_MAX_TOTAL >> 20);
            return;
        }
        server->gathered = rdv_blob_new((size_t)total);
        if (server->gathered == NULL) {
            rdv_fail(server, FTSVM_ENOMEM, "out of memory for rendezvous round %llu "
                     "(%llu bytes)", (unsigned long long)server->round,
                     (unsigned long long)total);
            return;
        }
        server->round_len = len;
        server->round_first = node;
    } else if (len != server->round_len) {
        rdv_fail(server, FTSVM_EPROTO, "nodes disagree on the size of rendezvous round %llu "
                 "(node %d sent %u bytes, node %d sent %u)", (unsigned long long)server->round,
                 server->round_first, server->round_len, node, len);
        return;
    }
    memcpy(server->gathered->data + server->nodes + (size_t)node * len, payload, len);
    server->contributed[node] = 1;
    rdv_round_try_complete(server);
}

/* A joined node's connection is gone while its process may still run. */
static void rdv_node_lost(rdv_server_t *server, int node, const char *what)
{
    if (server->failed) {
        return;
    }
    if (!server->booted) {
        /* Fails the start-up, but only after RDV_LOST_GRACE_NS, in case the
         * node's exit status comes and gives a better reason. */
        if (server->lost_node < 0) {
            server->lost_node = node;
            snprintf(server->lost_what, sizeof(server->lost_what), "%s", what);
            server->lost_deadline = clock_now_ns() + RDV_LOST_GRACE_NS;
        }
        return;
    }
    if (!server->absent[node]) {
        server->absent[node] = 1;
        ftsvm_info("node %d %s; later rendezvous rounds go on without it", node, what);
    }
    rdv_round_try_complete(server);
}

static void rdv_on_hello(rdv_server_t *server, rdv_conn_t *conn, const rdv_hdr_t *hdr,
                         const uint8_t *payload)
{
    uint32_t id = hdr->node;

    conn->peer_node = id;
    /* The key first: an unauthenticated peer learns nothing about the job. */
    if (!rdv_key_matches(server, payload, hdr->len)) {
        rdv_refuse(server, conn, FTSVM_EBOOT, "wrong job key");
        return;
    }
    if (id >= (uint32_t)server->nodes) {
        rdv_refuse(server, conn, FTSVM_EBOOT, "node id %u is out of range (the job has %d node%s)",
                   id, server->nodes, (server->nodes == 1) ? "" : "s");
        return;
    }
    if (server->joined[id]) {
        /* A node joins once: letting it back in would hand it a round in the
         * middle of the others' sequence. */
        rdv_refuse(server, conn, FTSVM_EBOOT, (server->node_conn[id] != NULL) ?
                   "node %u is already connected" : "node %u has already joined and left", id);
        return;
    }
    if (server->failed) {
        rdv_conn_error_close(server, conn, server->failed, server->failure);
        rdv_log_failure(server);
        return;
    }
    server->joined[id] = 1;
    server->joined_count++;
    server->unjoined--;
    conn->node = (int)id;
    conn->state = RDV_CONN_NODE;
    server->node_conn[id] = conn;
    ftsvm_debug("node %u joined the rendezvous from %s", id, conn->peer);
    if (rdv_conn_queue(server, conn, RDV_WELCOME, 0, NULL) != FTSVM_OK) {
        return;   /* the node is lost; it logged */
    }
    if (server->joined_count == server->nodes) {
        if (server->lost_node >= 0) {
            rdv_fail(server, FTSVM_EBOOT, "node %d %s before every node had joined",
                     server->lost_node, server->lost_what);
            return;
        }
        server->booted = 1;
        ftsvm_debug("every node joined the rendezvous");
        rdv_round_try_complete(server);
    }
}

/* The header has just arrived: refuse what cannot be a valid message before
 * buffering its payload. */
static int rdv_check_header(rdv_server_t *server, rdv_conn_t *conn, const rdv_hdr_t *hdr)
{
    char why[128];

    why[0] = '\0';
    if (hdr->magic != RDV_MAGIC) {
        snprintf(why, sizeof(why), "bad magic 0x%08x", hdr->magic);
    } else if (hdr->len > RDV_MAX_PAYLOAD) {
        snprintf(why, sizeof(why), "message of %u bytes is over the %u-byte limit", hdr->len,
                 RDV_MAX_PAYLOAD);
    } else if (conn->state == RDV_CONN_HELLO && hdr->type != RDV_HELLO) {
        snprintf(why, sizeof(why), "expected a hello, got message type %u", hdr->type);
    } else if (conn->state == RDV_CONN_HELLO && hdr->len > RDV_HELLO_MAX) {
        snprintf(why, sizeof(why), "hello of %u bytes is too long", hdr->len);
    } else if (conn->state == RDV_CONN_NODE && hdr->type != RDV_GATHER) {
        snprintf(why, sizeof(why), "unexpected message type %u", hdr->type);
    }
    if (why[0] == '\0') {
        return FTSVM_OK;
    }
    if (conn->state == RDV_CONN_HELLO) {
        rdv_refuse(server, conn, FTSVM_EPROTO, "%s", why);
    } else {
        int node = conn->node;

        ftsvm_error("closing the rendezvous connection of node %d (%s): %s", node,
                    conn->peer, why);
        rdv_conn_error_close(server, conn, FTSVM_EPROTO, why);
        rdv_node_lost(server, node, "sent a malformed rendezvous message");
    }
    return FTSVM_EPROTO;
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

static void rdv_conn_on_readable(rdv_server_t *server, rdv_conn_t *conn)
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

static void rdv_conn_on_writable(rdv_server_t *server, rdv_conn_t *conn)
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

static void rdv_format_peer(const struct sockaddr *sa, socklen_t salen, char *buf, size_t size)
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
static void rdv_sweep(rdv_server_t *server)
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

static void rdv_accept(rdv_server_t *server)
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

/* ---- the interface ---- */

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

void rdv_server_run_timers(rdv_server_t *server, uint64_t now_ns)
{
    char missing[RDV_TEXT_MAX - 64];
    size_t i;

    if (server->accept_paused && now_ns >= server->accept_resume) {
        server->accept_paused = 0;
    }
    if (!server->failed && !server->booted && server->lost_node >= 0 &&
        now_ns >= server->lost_deadline) {
        rdv_fail(server, FTSVM_EBOOT, "node %d %s before every node had joined",
                 server->lost_node, server->lost_what);
    }
    if (!server->failed && !server->booted && now_ns >= server->boot_deadline) {
        rdv_format_missing(server->joined, server->nodes, missing, sizeof(missing));
        rdv_fail(server, FTSVM_ETIMEDOUT, "%s did not join the rendezvous within %g s",
                 missing, server->boot_timeout);
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
        rdv_fail(server, FTSVM_EBOOT, server->joined[node] ?
                 "node %d exited (%s) before every node joined the rendezvous" :
                 "node %d exited (%s) before joining the rendezvous", node, how);
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

unsigned rdv_server_refused(const rdv_server_t *server)
{
    return server->refused;
}

/* The rendezvous of one job over its connections: a HELLO checked against
 * the job key, then allgather rounds, strictly one after the other, until
 * the nodes are done. Before every node has joined, losing one fails the
 * start-up for all; after that a lost node is only absent from the rounds.
 * A failure is final and every node gets the same RDV_ERROR. */
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

void rdv_describe_exit(int wait_status, char *buf, size_t size)
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
void rdv_format_missing(const uint8_t *flags, int nodes, char *buf, size_t size)
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

/* ---- failure and rounds ---- */

static void rdv_log_failure(rdv_server_t *server)
{
    if (!server->failure_logged) {
        ftsvm_error("%s: %s", server->booted ? "rendezvous failed" : "start-up failed",
                    server->failure);
        server->failure_logged = 1;
    }
}


void rdv_fail(rdv_server_t *server, int status, const char *fmt, ...)
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

/* Every node has joined or was left out: the rounds may complete. */
static void rdv_boot_check(rdv_server_t *server)
{
    int node;

    if (server->booted || server->failed) {
        return;
    }
    for (node = 0; node < server->nodes; node++) {
        if (!server->joined[node] && !server->absent[node]) {
            return;
        }
    }
    if (server->lost_node >= 0 && !server->absent[server->lost_node]) {
        node = server->lost_node;
        server->lost_node = -1;
        rdv_leave_out(server, node, "%s", server->lost_what);   /* boots, or fails */
        return;
    }
    server->booted = 1;
    ftsvm_debug("every node joined the rendezvous or was left out");
    rdv_round_try_complete(server);
}

/* Before the job is up: a node that exited, lost its connection or did not
 * join in time is left out, and the others start without it (its id stays
 * unused: a later hello with it is refused), as long as two nodes are left;
 * with fewer the start-up fails for all. */
void rdv_leave_out(rdv_server_t *server, int node, const char *fmt, ...)
{
    char why[RDV_TEXT_MAX - 96];
    va_list ap;
    int n, left = 0;

    if (server->failed || server->absent[node]) {
        return;
    }
    va_start(ap, fmt);
    vsnprintf(why, sizeof(why), fmt, ap);
    va_end(ap);
    for (n = 0; n < server->nodes; n++) {
        left += !server->absent[n] && n != node;
    }
    if (left < 2) {
        rdv_fail(server, FTSVM_EBOOT, "node %d %s; fewer than two nodes are left to start",
                 node, why);
        return;
    }
    server->absent[node] = 1;
    if (server->node_conn[node] != NULL) {
        rdv_conn_close(server, server->node_conn[node]);
    }
    ftsvm_warn("node %d %s: the job starts without it", node, why);
    rdv_boot_check(server);
}

/* Complete the round if every node that is still there has contributed. */
void rdv_round_try_complete(rdv_server_t *server)
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

void rdv_on_gather(rdv_server_t *server, rdv_conn_t *conn, const uint8_t *payload,
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
void rdv_node_lost(rdv_server_t *server, int node, const char *what)
{
    if (server->failed) {
        return;
    }
    if (!server->booted) {
        /* Leaves it out, but only after RDV_LOST_GRACE_NS, in case the
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

void rdv_on_hello(rdv_server_t *server, rdv_conn_t *conn, const rdv_hdr_t *hdr,
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
    if (server->absent[id] && !server->joined[id]) {
        rdv_refuse(server, conn, FTSVM_EBOOT, "node %u was left out of the job at start-up "
                   "(it did not join in time)", id);
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
    rdv_boot_check(server);
}

/* The header has just arrived: refuse what cannot be a valid message before
 * buffering its payload. */
int rdv_check_header(rdv_server_t *server, rdv_conn_t *conn, const rdv_hdr_t *hdr)
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

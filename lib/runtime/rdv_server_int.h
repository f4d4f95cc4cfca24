/* What the files of the rendezvous server share (rdv_server.h is its
 * interface): the server, its connections and the messages they queue.
 *
 *   rdv_conn.c    connections: accept, read and check messages, write queued
 *                 ones, close, refuse
 *   rdv_rounds.c  the job's side: HELLOs, allgather rounds, lost nodes and
 *                 the failure every node gets
 *   rdv_server.c  the poll-integration interface of rdv_server.h
 */
#ifndef FTSVM_RDV_SERVER_INT_H
#define FTSVM_RDV_SERVER_INT_H

#include "rdv_server.h"
#include "rdv_wire.h"

#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

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
    uint8_t     *absent;            /* [nodes] gone, or left out of the start-up */
    int          joined_count;
    int          booted;            /* every node has joined or was left out */
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

/* rdv_conn.c */
void rdv_accept(rdv_server_t *server);
rdv_blob_t *rdv_blob_new(size_t len);
void rdv_blob_unref(rdv_blob_t *blob);
void rdv_conn_close(rdv_server_t *server, rdv_conn_t *conn);
void rdv_conn_drop(rdv_server_t *server, rdv_conn_t *conn, const char *what);
void rdv_conn_error_close(rdv_server_t *server, rdv_conn_t *conn, int status,
                          const char *text);
void rdv_conn_on_readable(rdv_server_t *server, rdv_conn_t *conn);
void rdv_conn_on_writable(rdv_server_t *server, rdv_conn_t *conn);
int rdv_conn_queue(rdv_server_t *server, rdv_conn_t *conn, uint16_t type,
                   int status, rdv_blob_t *payload);
void rdv_format_peer(const struct sockaddr *sa, socklen_t salen, char *buf, size_t size);
void rdv_refuse(rdv_server_t *server, rdv_conn_t *conn, int status,
                const char *fmt, ...) __attribute__((format(printf, 4, 5)));
void rdv_sweep(rdv_server_t *server);

/* rdv_rounds.c */
int rdv_check_header(rdv_server_t *server, rdv_conn_t *conn, const rdv_hdr_t *hdr);
void rdv_describe_exit(int wait_status, char *buf, size_t size);
void rdv_fail(rdv_server_t *server, int status, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
void rdv_format_missing(const uint8_t *flags, int nodes, char *buf, size_t size);
void rdv_node_lost(rdv_server_t *server, int node, const char *what);
void rdv_leave_out(rdv_server_t *server, int node, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
void rdv_on_gather(rdv_server_t *server, rdv_conn_t *conn, const uint8_t *payload,
                   uint32_t len);
void rdv_on_hello(rdv_server_t *server, rdv_conn_t *conn, const rdv_hdr_t *hdr,
                  const uint8_t *payload);
void rdv_round_try_complete(rdv_server_t *server);

#endif

/*
 * Connections of the verbs backend, with librdmacm: every node listens on
 * its address (FTSVM_VERBS_ADDR, or the IPv4 address of the device's port)
 * with an ephemeral port, which the start-up exchange tells every peer
 * before anyone connects; then node i connects to every node j >= i (itself
 * included: one-sided operations to itself go through the device too, so
 * that its atomics are atomic with the peers') and accepts the connections
 * of the nodes below it. Each connection is one RC queue pair.
 *
 * After start-up rdma_cm keeps reporting on the event channel: a peer whose
 * process dies has its connection torn down by its kernel, which arrives
 * here as DISCONNECTED (faster than the queue pair's retry timeout).
 */
#include "verbs_int.h"
#include "common/clock.h"
#include "common/log.h"
#include "ftsvm.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* What the connecting side tells the listener. */
typedef struct rdma_verbs_hello {
    uint32_t magic;
    uint32_t node;
} rdma_verbs_hello_t;

#define RDMA_VERBS_MAGIC          0x46545356u   /* "FTSV" */
#define RDMA_VERBS_RESOLVE_MS     5000
#define RDMA_VERBS_CONNECT_SECS   60

/* The first IPv4 address among the GIDs of the device's port 1 (RoCE v2
 * lists each IPv4 address of the netdev as an IPv4-mapped GID). */
static int rdma_verbs_device_ipv4(struct ibv_device *dev, struct in_addr *addr_p)
{
    struct ibv_context *verbs;
    struct ibv_port_attr port;
    union ibv_gid gid;
    static const uint8_t mapped[12] = { 0,0,0,0, 0,0,0,0, 0,0,0xff,0xff };
    int i, found = 0;

    verbs = ibv_open_device(dev);
    if (verbs == NULL) {
        ftsvm_error("cannot open RDMA device %s: %m", ibv_get_device_name(dev));
        return FTSVM_ETRANSPORT;
    }
    if (ibv_query_port(verbs, 1, &port) != 0) {
        ftsvm_error("cannot query port 1 of RDMA device %s: %m", ibv_get_device_name(dev));
        ibv_close_device(verbs);
        return FTSVM_ETRANSPORT;
    }
    for (i = 0; i < port.gid_tbl_len && !found; i++) {
        if (ibv_query_gid(verbs, 1, i, &gid) == 0 && !memcmp(gid.raw, mapped, 12)) {
            memcpy(&addr_p->s_addr, gid.raw + 12, 4);
            found = 1;
        }
    }
    ibv_close_device(verbs);
    if (!found) {
        ftsvm_error("RDMA device %s has no IPv4 address (no IPv4-mapped GID on port 1); "
                    "set FTSVM_VERBS_ADDR", ibv_get_device_name(dev));
        return FTSVM_ETRANSPORT;
    }
    return FTSVM_OK;
}

/* Pick the device (params->device or the first) and the address to listen
 * on (params->local_addr or the device's). */
static int rdma_verbs_local_addr(rdma_verbs_t *v, const rdma_params_t *params)
{
    struct ibv_device **list, *dev = NULL;
    int n = 0, i, status = FTSVM_OK;

    list = ibv_get_device_list(&n);
    if (list == NULL || n == 0) {
        ftsvm_error("FTSVM_TRANSPORT=verbs: no RDMA device (ibv_get_device_list found none)");
        if (list != NULL) {
            ibv_free_device_list(list);
        }
        return FTSVM_ETRANSPORT;
    }
    for (i = 0; i < n && dev == NULL; i++) {
        if (params->device == NULL || params->device[0] == '\0' ||
            !strcmp(params->device, ibv_get_device_name(list[i]))) {
            dev = list[i];
        }
    }
    if (dev == NULL) {
        ftsvm_error("FTSVM_VERBS_DEVICE=%s: no such RDMA device (the first is %s)",
                    params->device, ibv_get_device_name(list[0]));
        ibv_free_device_list(list);
        return FTSVM_EINVAL;
    }
    snprintf(v->device, sizeof(v->device), "%s", ibv_get_device_name(dev));
    v->local.sin_family = AF_INET;
    v->local.sin_port   = 0;       /* ephemeral: the exchange tells the peers */
    if (params->local_addr != NULL && params->local_addr[0] != '\0') {
        if (inet_pton(AF_INET, params->local_addr, &v->local.sin_addr) != 1) {
            ftsvm_error("FTSVM_VERBS_ADDR=%s is not an IPv4 address", params->local_addr);
            status = FTSVM_EINVAL;
        }
    } else {
        status = rdma_verbs_device_ipv4(dev, &v->local.sin_addr);
    }
    ibv_free_device_list(list);
    return status;
}

static int rdma_verbs_nonblocking(int fd, const char *what)
{
    int flags = fcntl(fd, F_GETFL);

    if (flags < 0 || fcntl(fd, F_SETFL, flags | O_NONBLOCK) < 0) {
        ftsvm_error("cannot make the %s non-blocking: %m", what);
        return FTSVM_ESYS;
    }
    return FTSVM_OK;
}

int rdma_verbs_listen(rdma_ctx_t *ctx, rdma_verbs_t *v, const rdma_params_t *params)
{
    char ip[INET_ADDRSTRLEN];
    const char *bound;
    int status;

    status = rdma_verbs_local_addr(v, params);
    if (status != FTSVM_OK) {
        return status;
    }
    inet_ntop(AF_INET, &v->local.sin_addr, ip, sizeof(ip));
    v->cm_channel = rdma_create_event_channel();
    if (v->cm_channel == NULL) {
        ftsvm_error("rdma_create_event_channel failed: %m");
        return FTSVM_ETRANSPORT;
    }
    status = rdma_verbs_nonblocking(v->cm_channel->fd, "rdma_cm event channel");
    if (status != FTSVM_OK) {
        return status;
    }
    if (rdma_create_id(v->cm_channel, &v->listen_id, NULL, RDMA_PS_TCP) != 0) {
        ftsvm_error("rdma_create_id failed: %m");
        return FTSVM_ETRANSPORT;
    }
    if (rdma_bind_addr(v->listen_id, (struct sockaddr *)&v->local) != 0) {
        ftsvm_error("cannot bind rdma_cm to %s: %m", ip);
        return FTSVM_ETRANSPORT;
    }
    if (v->listen_id->verbs == NULL) {
        ftsvm_error("address %s is not on an RDMA device (FTSVM_VERBS_ADDR)", ip);
        return FTSVM_ETRANSPORT;
    }
    bound = ibv_get_device_name(v->listen_id->verbs->device);
    if (strcmp(bound, v->device) != 0) {
        ftsvm_error("address %s belongs to RDMA device %s, not %s", ip, bound, v->device);
        return FTSVM_EINVAL;
    }
    if (rdma_listen(v->listen_id, ctx->nodes + 4) != 0) {
        ftsvm_error("rdma_listen on %s failed: %m", ip);
        return FTSVM_ETRANSPORT;
    }
    v->local.sin_port = rdma_get_src_port(v->listen_id);
    v->verbs = v->listen_id->verbs;
    ftsvm_debug("verbs: listening on %s port %u of %s", ip, ntohs(v->local.sin_port),
                v->device);
    return FTSVM_OK;
}

static void rdma_verbs_conn_param(rdma_ctx_t *ctx, rdma_verbs_t *v,
                                  struct rdma_conn_param *param, rdma_verbs_hello_t *hello)
{
    memset(param, 0, sizeof(*param));
    hello->magic = RDMA_VERBS_MAGIC;
    hello->node  = (uint32_t)ctx->node;
    param->private_data        = hello;
    param->private_data_len    = sizeof(*hello);
    param->responder_resources = v->responder_resources;
    param->initiator_depth     = v->initiator_depth;
    param->retry_count         = RDMA_VERBS_RETRY_COUNT;
    param->rnr_retry_count     = RDMA_VERBS_RNR_RETRY;
}

/* Queue pair on `conn->id`, with its receive buffers posted: messages may
 * arrive as soon as the peer sees the connection established. */
static int rdma_verbs_conn_qp(rdma_verbs_t *v, rdma_verbs_conn_t *conn)
{
    struct ibv_qp_init_attr attr;
    uint8_t timeout = RDMA_VERBS_ACK_TIMEOUT;

    if (rdma_set_option(conn->id, RDMA_OPTION_ID, RDMA_OPTION_ID_ACK_TIMEOUT, &timeout,
                        sizeof(timeout)) != 0) {
        ftsvm_warn("cannot set the ACK timeout of the connection to node %d: %m",
                   conn->peer);
    }
    memset(&attr, 0, sizeof(attr));
    attr.qp_type          = IBV_QPT_RC;
    attr.send_cq          = v->send_cq;
    attr.recv_cq          = v->recv_cq;
    attr.cap.max_send_wr  = RDMA_VERBS_SQ_DEPTH;
    attr.cap.max_recv_wr  = RDMA_VERBS_RECVS;
    attr.cap.max_send_sge = 1;
    attr.cap.max_recv_sge = 1;
    attr.sq_sig_all       = 1;
    if (rdma_create_qp(conn->id, v->pd, &attr) != 0) {
        ftsvm_error("cannot create the queue pair to node %d: %m", conn->peer);
        return FTSVM_ETRANSPORT;
    }
    return rdma_verbs_post_recvs(v, conn);
}

static rdma_verbs_conn_t *rdma_verbs_accept_conn(rdma_ctx_t *ctx, rdma_verbs_t *v,
                                                 struct rdma_cm_event *event)
{
    rdma_verbs_hello_t hello;
    rdma_verbs_conn_t *conn;

    if (event->param.conn.private_data_len < sizeof(hello)) {
        ftsvm_warn("rejected an rdma_cm connection without an ftsvm hello");
        return NULL;
    }
    memcpy(&hello, event->param.conn.private_data, sizeof(hello));
    if (hello.magic != RDMA_VERBS_MAGIC || hello.node > (uint32_t)ctx->node) {
        ftsvm_warn("rejected an rdma_cm connection from node %u (magic 0x%x)", hello.node,
                   hello.magic);
        return NULL;
    }
    /* the lower node connects; the connection to itself lands in the
     * extra slot */
    conn = &v->conns[(hello.node == (uint32_t)ctx->node) ? ctx->nodes : (int)hello.node];
    if (conn->id != NULL) {
        ftsvm_warn("rejected a second rdma_cm connection from node %u", hello.node);
        return NULL;
    }
    if (event->id->verbs != v->verbs) {
        ftsvm_warn("rejected a connection from node %u on another device", hello.node);
        return NULL;
    }
    conn->id = event->id;
    conn->id->context = conn;
    return conn;
}

/* Queue pair and receives on the connection's id, then connect (the active
 * end) or accept. */
static int rdma_verbs_conn_start(rdma_ctx_t *ctx, rdma_verbs_t *v, rdma_verbs_conn_t *conn,
                                 int active)
{
    struct rdma_conn_param param;
    rdma_verbs_hello_t hello;
    int status;

    status = rdma_verbs_conn_qp(v, conn);
    if (status != FTSVM_OK) {
        return status;
    }
    rdma_verbs_conn_param(ctx, v, &param, &hello);
    if ((active ? rdma_connect(conn->id, &param) : rdma_accept(conn->id, &param)) != 0) {
        ftsvm_error("%s of node %d failed: %m", active ? "rdma_connect" : "rdma_accept",
                    conn->peer);
        return FTSVM_EPEER;
    }
    return FTSVM_OK;
}

static const char *rdma_verbs_conn_what(int active)
{
    return active ? "connection to" : "connection from";
}

/* One rdma_cm event during start-up; *done_p counts established ends. */
static int rdma_verbs_setup_event(rdma_ctx_t *ctx, rdma_verbs_t *v,
                                  struct rdma_cm_event *event, int *done_p)
{
    rdma_verbs_conn_t *conn = event->id->context;

    switch (event->event) {
    case RDMA_CM_EVENT_ADDR_RESOLVED:
        if (rdma_resolve_route(event->id, RDMA_VERBS_RESOLVE_MS) != 0) {
            ftsvm_error("cannot resolve the route to node %d: %m", conn->peer);
            return FTSVM_EPEER;
        }
        return FTSVM_OK;
    case RDMA_CM_EVENT_ROUTE_RESOLVED:
        return rdma_verbs_conn_start(ctx, v, conn, 1);
    case RDMA_CM_EVENT_CONNECT_REQUEST:
        conn = rdma_verbs_accept_conn(ctx, v, event);
        if (conn == NULL) {
            rdma_reject(event->id, NULL, 0);
            return FTSVM_OK;
        }
        return rdma_verbs_conn_start(ctx, v, conn, 0);
    case RDMA_CM_EVENT_ESTABLISHED:
        if (conn != NULL && !conn->established) {
            conn->established = 1;
            (*done_p)++;
        }
        return FTSVM_OK;
    default:
        ftsvm_error("%s node %d: %s (status %d)",
                    rdma_verbs_conn_what(conn != NULL && conn->peer > ctx->node),
                    conn != NULL ? conn->peer : -1, rdma_event_str(event->event),
                    event->status);
        return FTSVM_EPEER;
    }
}

int rdma_verbs_connect_all(rdma_ctx_t *ctx, rdma_verbs_t *v)
{
    struct sockaddr_in src = v->local, dst;
    struct rdma_cm_event *event;
    struct pollfd pfd = { .fd = v->cm_channel->fd, .events = POLLIN };
    uint64_t deadline = clock_now_ns() + RDMA_VERBS_CONNECT_SECS * 1000000000ull;
    /* ends to see established: ours to nodes >= us, theirs from nodes <= us */
    int expected = 0, done = 0, node, status;
    rdma_verbs_conn_t *conn;

    /* none to or from a node that is out of the job (rdma_exchange_blobs) */
    for (node = 0; node < ctx->nodes; node++) {
        if (node == ctx->node || rdma_peer_alive(ctx, node)) {
            expected += (node >= ctx->node) + (node <= ctx->node);
        }
    }
    src.sin_port = 0;   /* the listener has ours */
    for (node = ctx->node; node < ctx->nodes; node++) {
        if (node != ctx->node && !rdma_peer_alive(ctx, node)) {
            continue;
        }
        conn = &v->conns[node];
        if (rdma_create_id(v->cm_channel, &conn->id, conn, RDMA_PS_TCP) != 0) {
            ftsvm_error("rdma_create_id failed: %m");
            return FTSVM_ETRANSPORT;
        }
        memset(&dst, 0, sizeof(dst));
        dst.sin_family      = AF_INET;
        dst.sin_addr.s_addr = v->peers[node].ip;
        dst.sin_port        = v->peers[node].port;
        if (rdma_resolve_addr(conn->id, (struct sockaddr *)&src, (struct sockaddr *)&dst,
                              RDMA_VERBS_RESOLVE_MS) != 0) {
            ftsvm_error("cannot resolve the address of node %d: %m", node);
            return FTSVM_EPEER;
        }
    }
    while (done < expected) {
        if (rdma_get_cm_event(v->cm_channel, &event) != 0) {
            if (errno != EAGAIN) {
                ftsvm_error("rdma_get_cm_event failed: %m");
                return FTSVM_ETRANSPORT;
            }
            if (clock_now_ns() > deadline) {
                ftsvm_error("verbs: %d of %d connections established after %d s", done,
                            expected, RDMA_VERBS_CONNECT_SECS);
                return FTSVM_ETIMEDOUT;
            }
            (void)poll(&pfd, 1, 100);
            continue;
        }
        status = rdma_verbs_setup_event(ctx, v, event, &done);
        rdma_ack_cm_event(event);
        if (status != FTSVM_OK) {
            return status;
        }
    }
    return FTSVM_OK;
}

unsigned rdma_verbs_cm_progress(rdma_ctx_t *ctx, rdma_verbs_t *v)
{
    struct rdma_cm_event *event;
    rdma_verbs_conn_t *conn;
    unsigned count = 0;
    char why[96];

    while (rdma_get_cm_event(v->cm_channel, &event) == 0) {
        conn = event->id->context;
        switch (event->event) {
        case RDMA_CM_EVENT_CONNECT_REQUEST:
            /* start-up is over: nobody has a reason to connect */
            ftsvm_warn("rejected an rdma_cm connection after start-up");
            rdma_reject(event->id, NULL, 0);
            break;
        case RDMA_CM_EVENT_DISCONNECTED:
        case RDMA_CM_EVENT_DEVICE_REMOVAL:
        case RDMA_CM_EVENT_UNREACHABLE:
        case RDMA_CM_EVENT_CONNECT_ERROR:
            if (conn != NULL) {
                snprintf(why, sizeof(why), "rdma_cm %s", rdma_event_str(event->event));
                rdma_verbs_conn_failed(ctx, conn, why);
            }
            break;
        default:
            break;   /* TIMEWAIT_EXIT and the like: nothing to do */
        }
        rdma_ack_cm_event(event);
        count++;
    }
    return count;
}

void rdma_verbs_disconnect_all(rdma_ctx_t *ctx, rdma_verbs_t *v)
{
    int i;

    for (i = 0; v->conns != NULL && i <= ctx->nodes; i++) {
        if (v->conns[i].id == NULL) {
            continue;
        }
        if (v->conns[i].id->qp != NULL) {
            rdma_destroy_qp(v->conns[i].id);
        }
        rdma_destroy_id(v->conns[i].id);
        v->conns[i].id = NULL;
    }
    if (v->listen_id != NULL) {
        rdma_destroy_id(v->listen_id);
        v->listen_id = NULL;
    }
}

/*
 * The liveness channel over UCX (DESIGN.md sections 7 and 10): a second
 * worker with an endpoint to every peer's second worker, progressed by a
 * thread that does nothing else. The heartbeat's gets (rdma_get_start) go
 * over it.
 *
 * Why: over TCP, UCX emulates a get by messages, and the target answers only
 * while its worker is progressed. On the main worker that waits for the
 * protocol thread (asleep until woken, or running a handler) or for an
 * application thread that waits for a request of its own, all of them
 * sharing the worker lock and two cores with the application: with jacobi
 * 512 x 512 on 4 nodes over TCP a live node's heartbeat stood still for
 * more than the 0.6 s timeout and the node was removed. Here a get is
 * answered as soon as the liveness thread is scheduled, whatever the rest
 * of the node does, so a heartbeat that stands still means the process is
 * stopped or cut off, not that its protocol is busy.
 *
 * The thread runs at a raised priority where allowed
 * (rdma_liveness_priority), so that the load of the machine does not decide
 * either. It sleeps in poll on the worker's event fd, at most for the
 * keepalive interval (as the protocol thread).
 * A thread that posts on the worker signals it, since UCX may hold the bytes
 * until the next progress.
 */
#include "ucx_int.h"
#include "common/log.h"
#include "ftsvm.h"

#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* how long the thread sleeps when UCX refuses to arm (wire-up under way):
 * it runs at a raised priority and must not spin */
#define RDMA_UCX_LIVE_BUSY_MS 1

/* Transports whose gets the target's NIC (or kernel) serves without the
 * target process: with one of them a heartbeat get shows that the peer's
 * memory is reachable, whatever its threads do. */
static const char *const rdma_ucx_native_rma[] = {
    "rc_verbs", "rc_mlx5", "dc_mlx5", "rc_x", "dc_x", NULL
};

/* Transport names of the context's resources, from UCX's own report: lines
 * read "#      resource 1  :  md 1  dev 1  flags -- tcp/eth0". The channel
 * is wanted when TCP is among them and no transport with native one-sided
 * operations is: then gets between nodes are emulated by messages that
 * only the target's progress answers. Over shared memory (on one host) a
 * get needs no progress of the peer either, and the channel costs only a
 * worker and a sleeping thread. */
int rdma_ucx_live_wanted(ucp_context_h context)
{
    FILE *out;
    char *text = NULL, *line, *save = NULL, *name;
    size_t text_len = 0, i;
    int tcp = 0, native = 0;

    out = open_memstream(&text, &text_len);
    if (out == NULL) {
        return 1;   /* cannot tell: the channel is the safe side */
    }
    ucp_context_print_info(context, out);
    fclose(out);
    for (line = strtok_r(text, "\n", &save); line != NULL; line = strtok_r(NULL, "\n", &save)) {
        if (strstr(line, "resource") == NULL || (name = strstr(line, "-- ")) == NULL) {
            continue;
        }
        name += 3;
        name[strcspn(name, "/ ")] = '\0';
        tcp |= strcmp(name, "tcp") == 0;
        for (i = 0; rdma_ucx_native_rma[i] != NULL; i++) {
            native |= strcmp(name, rdma_ucx_native_rma[i]) == 0;
        }
    }
    free(text);
    return tcp && !native;
}

int rdma_ucx_live_create(rdma_ucx_t *ucx, int idle_ms)
{
    /* as the protocol thread's: UCX runs keepalive rounds only from
     * progress, and no file descriptor asks for them */
    ucx->live.idle_ms = idle_ms;
    return rdma_ucx_worker_create(ucx, &ucx->live.worker, &ucx->live.efd);
}

static void *rdma_ucx_live_main(void *arg)
{
    rdma_ucx_live_t *live = arg;
    struct pollfd pfd = { .fd = live->efd, .events = POLLIN };
    ucs_status_t status;
    int timeout_ms;

    rdma_liveness_priority("liveness");
    while (!atomic_load_explicit(&live->stop, memory_order_acquire)) {
        while (ucp_worker_progress(live->worker) != 0) {
        }
        status = ucp_worker_arm(live->worker);
        if (status == UCS_OK) {
            timeout_ms = live->idle_ms;
        } else {
            if (status != UCS_ERR_BUSY) {
                ftsvm_warn("liveness thread: ucp_worker_arm failed: %s",
                           ucs_status_string(status));
            }
            timeout_ms = RDMA_UCX_LIVE_BUSY_MS;
        }
        if (poll(&pfd, 1, timeout_ms) < 0 && errno != EINTR) {
            ftsvm_warn("liveness thread: poll failed: %m");
        }
    }
    return NULL;
}

/* Wait for a request of the liveness worker at start-up: the liveness
 * thread progresses it. */
static ucs_status_t rdma_ucx_live_wait(ucs_status_ptr_t request)
{
    struct timespec nap = { 0, 100000 };
    ucs_status_t status;

    if (request == NULL) {
        return UCS_OK;
    }
    if (UCS_PTR_IS_ERR(request)) {
        return UCS_PTR_STATUS(request);
    }
    while ((status = ucp_request_check_status(request)) == UCS_INPROGRESS) {
        nanosleep(&nap, NULL);
    }
    ucp_request_free(request);
    return status;
}

/* Start the thread, then finish wire-up with every peer (whose thread starts
 * at about the same time), so that the first heartbeats need no handshake. */
int rdma_ucx_live_start(rdma_ctx_t *ctx)
{
    rdma_ucx_t *ucx = ctx->backend_ctx;
    ucp_request_param_t param = {0};
    ucs_status_t status;
    int ret, node;

    ret = pthread_create(&ucx->live.thread, NULL, rdma_ucx_live_main, &ucx->live);
    if (ret != 0) {
        errno = ret;
        ftsvm_error("cannot start the liveness thread: %m");
        return FTSVM_ESYS;
    }
    ucx->live.started = 1;
    pthread_setname_np(ucx->live.thread, "ftsvm-live");   /* for top -H and /proc */
    for (node = 0; node < ctx->nodes; node++) {
        rdma_ucx_peer_t *p = &ucx->peers[node];
        ucs_status_ptr_t request;

        if (!p->live_used) {
            continue;
        }
        /* the liveness thread's error callback closes the endpoint of a
         * peer that died meanwhile (and sets it NULL) under the write lock */
        pthread_rwlock_rdlock(&p->ep_lock);
        request = (p->live_ep != NULL) ? ucp_ep_flush_nbx(p->live_ep, &param)
                                       : UCS_STATUS_PTR(UCS_ERR_ENDPOINT_TIMEOUT);
        pthread_rwlock_unlock(&p->ep_lock);
        status = rdma_ucx_live_wait(request);
        if (rdma_status_from_ucs(status) == FTSVM_EPEER) {
            /* it died during start-up: the next start-up round finds it
             * missing, and the job starts without it */
            rdma_peer_failed(ctx, node, "liveness channel not connected");
        } else if (status != UCS_OK) {
            ftsvm_error("cannot connect the liveness channel to node %d: %s", node,
                        ucs_status_string(status));
            return rdma_status_from_ucs(status);
        }
    }
    return FTSVM_OK;
}

void rdma_ucx_live_stop(rdma_ucx_t *ucx)
{
    if (!ucx->live.started) {
        return;
    }
    atomic_store_explicit(&ucx->live.stop, 1, memory_order_release);
    ucp_worker_signal(ucx->live.worker);
    pthread_join(ucx->live.thread, NULL);
    ucx->live.started = 0;
}

/* After rdma_ucx_live_stop; the endpoints are closed already. */
void rdma_ucx_live_destroy(rdma_ucx_t *ucx)
{
    if (ucx->live.worker != NULL) {
        ucp_worker_destroy(ucx->live.worker);
        ucx->live.worker = NULL;
    }
}

int rdma_ucx_live_get_start(rdma_ctx_t *ctx, int peer, unsigned region, uint64_t addr,
                            void *buf, size_t len, rdma_req_t **req_p)
{
    rdma_ucx_t *ucx = ctx->backend_ctx;
    rdma_ucx_peer_t *p = &ucx->peers[peer];
    ucp_request_param_t param = {0};
    ucs_status_ptr_t request;

    pthread_rwlock_rdlock(&p->ep_lock);
    if (p->live_ep == NULL || atomic_load(&ctx->peers[peer].failed)) {
        pthread_rwlock_unlock(&p->ep_lock);
        return FTSVM_EPEER;
    }
    request = ucp_get_nbx(p->live_ep, buf, len, addr, p->live_rkeys[region], &param);
    pthread_rwlock_unlock(&p->ep_lock);
    if (UCS_PTR_IS_ERR(request)) {
        return rdma_status_from_ucs(UCS_PTR_STATUS(request));
    }
    /* the request may wait for the next progress to go out */
    ucp_worker_signal(ucx->live.worker);
    /* NULL: done already; the poll then says so */
    *req_p = (rdma_req_t *)request;
    return FTSVM_OK;
}

/*
 * Active messages over shared memory, without UCX's message queue (the UCX
 * backend's message path to every peer whose memory this node can map).
 *
 * Why: UCX's shared-memory transports (mm: posix, sysv) give each receiver
 * ONE receive FIFO that every sender writes into. A sender reserves a slot
 * (compare-and-swap on the FIFO head), fills it, then sets its owner flag.
 * A sender SIGKILLed between the reserve and the flag leaves that slot
 * incomplete for good, and the receiver, which reads the FIFO in order,
 * never receives a message from anyone again (bench/shm_jam shows it with
 * plain UCX: 4-5 of 40-60 rounds). One-sided operations still work, so the
 * heartbeat sees the node alive while its recovery waits for messages that
 * never come. A fault-tolerant runtime cannot let one dead sender deafen a
 * live node.
 *
 * So every (sender, receiver) pair has a ring of its own, in memory the
 * receiver allocated through UCX and the sender maps (ucp_rkey_ptr), and the
 * sender writes a message with plain stores:
 *   1. wait until the slot is free: the receiver's `consumed` count for this
 *      sender is within RDMA_RING_SLOTS of the messages sent;
 *   2. copy the header and payload into the slot;
 *   3. store the slot's round number (message number / slots + 1) with
 *      release order: the receiver takes a slot only when its round is the
 *      one it expects, so a slot half written by a sender that died is never
 *      taken, and only that sender's own ring stops.
 * Rings are read in order, one message at a time; per-pair order is the
 * order of sending, as over UCX's queue. The receiver hands each message to
 * rdma_am_deliver (validation and the protocol thread's queue) and then
 * publishes its `consumed` count.
 *
 * Wake-up: a protocol thread that sleeps (progress.c) must be woken by a new
 * message. Before it sleeps, rdma_ucx_ring_arm sets the node's `armed` word,
 * then looks at every ring once more; a sender, after step 3, reads `armed`
 * and, if set, sends one byte to the receiver's wake-up socket (a Unix
 * datagram socket in the backend's event fd). Both sides put a full fence
 * between their store and their load, so either the receiver sees the
 * message or the sender sees `armed`. A kernel socket cannot be left
 * half-written by a killed sender. A wake-up that does not arrive (its
 * socket buffer full) costs at most the protocol thread's sleep bound.
 *
 * Peers whose memory is not mappable (UCX over TCP or InfiniBand) keep
 * UCX's active messages: the jam is a property of mm's shared FIFO only.
 *
 * Deadlock: a sender waiting for a slot drains this node's own rings (any
 * thread may; a trylock keeps it to one at a time) so that two nodes whose
 * rings to each other are full still make progress; handlers run on the
 * protocol thread only, as before.
 */
#include "ucx_int.h"
#include "common/log.h"
#include "ftsvm.h"

#include <errno.h>
#include <sched.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#define RDMA_RING_LINE     64
#define RDMA_RING_HDR_MAX  16    /* header bytes a slot holds (rdma_am_hdr_t: 12) */

/* A slot: `round` last, as the flag of "data then flag"; the payload at a
 * 64-byte offset. */
typedef struct rdma_ring_slot {
    _Atomic uint64_t round;
    uint32_t         hdr_len;
    uint32_t         len;
    uint8_t          hdr[RDMA_RING_HDR_MAX];
    uint8_t          pad[RDMA_RING_LINE - 8 - 8 - RDMA_RING_HDR_MAX];
    uint8_t          payload[RDMA_AM_MAX_PAYLOAD];
} rdma_ring_slot_t;

/* The receiver's region: the armed word, one line per sender with its
 * consumed count, then RDMA_RING_SLOTS slots per sender. */
typedef struct rdma_ring_line {
    _Atomic uint64_t word;
    uint8_t          pad[RDMA_RING_LINE - 8];
} rdma_ring_line_t;

static size_t rdma_ring_slots_offset(int nodes)
{
    return RDMA_RING_LINE + (size_t)nodes * RDMA_RING_LINE;
}

size_t rdma_ucx_ring_region_size(int nodes)
{
    return rdma_ring_slots_offset(nodes) +
           (size_t)nodes * RDMA_RING_SLOTS * sizeof(rdma_ring_slot_t);
}

static rdma_ring_line_t *rdma_ring_armed(uint8_t *base)
{
    return (rdma_ring_line_t *)base;
}

static rdma_ring_line_t *rdma_ring_consumed(uint8_t *base, int sender)
{
    return (rdma_ring_line_t *)(base + RDMA_RING_LINE + (size_t)sender * RDMA_RING_LINE);
}

static rdma_ring_slot_t *rdma_ring_slot(uint8_t *base, int nodes, int sender, uint64_t seq)
{
    rdma_ring_slot_t *ring = (rdma_ring_slot_t *)(base + rdma_ring_slots_offset(nodes));

    return &ring[(size_t)sender * RDMA_RING_SLOTS + seq % RDMA_RING_SLOTS];
}

/* ---- receiving ------------------------------------------------------------ */

int rdma_ucx_ring_init(rdma_ctx_t *ctx, rdma_ucx_t *ucx)
{
    rdma_ucx_ring_t *ring = &ucx->ring;
    struct epoll_event event = { .events = EPOLLIN };
    struct sockaddr_un unnamed = { .sun_family = AF_UNIX };
    int i;

    ring->wake_sock = -1;
    ring->epfd      = -1;
    ring->expected  = calloc((size_t)ctx->nodes, sizeof(*ring->expected));
    if (ring->expected == NULL) {
        ftsvm_error("cannot allocate the message ring table");
        return FTSVM_ENOMEM;
    }
    pthread_mutex_init(&ring->poll_lock, NULL);
    ring->wake_sock = socket(AF_UNIX, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (ring->wake_sock < 0) {
        ftsvm_error("cannot make the wake-up socket: %m");
        return FTSVM_ESYS;
    }
    /* autobind (an address of the family alone): the kernel names it in
     * the abstract namespace */
    if (bind(ring->wake_sock, (struct sockaddr *)&unnamed, sizeof(sa_family_t)) < 0) {
        ftsvm_error("cannot bind the wake-up socket: %m");
        return FTSVM_ESYS;
    }
    ring->wake_len = sizeof(ring->wake_addr);
    if (getsockname(ring->wake_sock, (struct sockaddr *)&ring->wake_addr,
                    &ring->wake_len) < 0) {
        ftsvm_error("cannot name the wake-up socket: %m");
        return FTSVM_ESYS;
    }
    /* the protocol thread sleeps on one fd: UCX's and the socket in it */
    ring->epfd = epoll_create1(EPOLL_CLOEXEC);
    if (ring->epfd < 0) {
        ftsvm_error("epoll_create1 failed: %m");
        return FTSVM_ESYS;
    }
    for (i = 0; i < 2; i++) {
        event.data.fd = i ? ring->wake_sock : ctx->efd;
        if (epoll_ctl(ring->epfd, EPOLL_CTL_ADD, event.data.fd, &event) < 0) {
            ftsvm_error("epoll_ctl failed: %m");
            return FTSVM_ESYS;
        }
    }
    ctx->efd = ring->epfd;
    return FTSVM_OK;
}

void rdma_ucx_ring_fini(rdma_ucx_t *ucx)
{
    rdma_ucx_ring_t *ring = &ucx->ring;

    if (ring->expected == NULL) {
        return;   /* rdma_ucx_ring_init did not run: its fds are not set */
    }
    if (ring->epfd >= 0) {
        close(ring->epfd);
    }
    if (ring->wake_sock >= 0) {
        close(ring->wake_sock);
    }
    pthread_mutex_destroy(&ring->poll_lock);
    free(ring->expected);
    ring->expected = NULL;
}

/* 1 when sender's next message is in its slot */
static int rdma_ring_ready(rdma_ctx_t *ctx, rdma_ucx_ring_t *ring, int sender,
                           uint64_t *seq_p)
{
    uint64_t seq = atomic_load_explicit(&ring->expected[sender], memory_order_relaxed);
    rdma_ring_slot_t *slot = rdma_ring_slot(ring->base, ctx->nodes, sender, seq);

    *seq_p = seq;
    return atomic_load_explicit(&slot->round, memory_order_acquire) ==
           seq / RDMA_RING_SLOTS + 1;
}

/* The slot's lengths fit it and its header, if it is one, names the ring's
 * sender; else the rejection is logged and counted. (rdma_am_deliver checks
 * the rest, as for any message.) */
static int rdma_ring_slot_valid(rdma_ctx_t *ctx, const rdma_ring_slot_t *slot, int sender)
{
    rdma_am_hdr_t hdr;

    if (slot->hdr_len > RDMA_RING_HDR_MAX || slot->len > RDMA_AM_MAX_PAYLOAD) {
        if (rdma_am_reject_counted(ctx)) {
            ftsvm_warn("rejected a message from node %d: a %u-byte header and %u bytes in "
                       "its ring slot", sender, slot->hdr_len, slot->len);
        }
        return 0;
    }
    if (slot->hdr_len != sizeof(hdr)) {
        return 1;   /* rdma_am_deliver rejects it */
    }
    memcpy(&hdr, slot->hdr, sizeof(hdr));
    if (hdr.src != (uint32_t)sender) {
        if (rdma_am_reject_counted(ctx)) {
            ftsvm_warn("rejected a message from node %d that says it is from node %u",
                       sender, hdr.src);
        }
        return 0;
    }
    return 1;
}

/* Take sender's next message: validate, queue, free the slot. */
static void rdma_ring_take(rdma_ctx_t *ctx, rdma_ucx_ring_t *ring, int sender, uint64_t seq)
{
    rdma_ring_slot_t *slot = rdma_ring_slot(ring->base, ctx->nodes, sender, seq);

    if (rdma_ring_slot_valid(ctx, slot, sender)) {
        rdma_am_deliver(ctx, slot->hdr, slot->hdr_len, slot->payload, slot->len);
    }
    atomic_store_explicit(&ring->expected[sender], seq + 1, memory_order_relaxed);
    /* the copy out is done before the sender may write the slot again */
    atomic_store_explicit(&rdma_ring_consumed(ring->base, sender)->word, seq + 1,
                          memory_order_release);
}

/* Any thread: take what the rings hold; the number taken. */
unsigned rdma_ucx_ring_poll(rdma_ctx_t *ctx)
{
    rdma_ucx_ring_t *ring = &((rdma_ucx_t *)ctx->backend_ctx)->ring;
    unsigned taken = 0, n;
    uint64_t seq;
    int sender;

    if (ring->base == NULL || pthread_mutex_trylock(&ring->poll_lock) != 0) {
        return 0;   /* no rings, or another thread is taking them */
    }
    for (sender = 0; sender < ctx->nodes; sender++) {
        /* what a failed peer wrote is dropped, as UCX drops what comes on
         * a closed endpoint; at most a ring's worth per sender, so that one
         * that refills its ring as fast as it is taken does not hold the
         * others up */
        for (n = 0; n < RDMA_RING_SLOTS &&
                    !atomic_load_explicit(&ctx->peers[sender].failed, memory_order_relaxed) &&
                    rdma_ring_ready(ctx, ring, sender, &seq); n++) {
            rdma_ring_take(ctx, ring, sender, seq);
            taken++;
        }
    }
    pthread_mutex_unlock(&ring->poll_lock);
    return taken;
}

/* Protocol thread, before it sleeps: 1 when a message came meanwhile. */
int rdma_ucx_ring_arm(rdma_ctx_t *ctx)
{
    rdma_ucx_ring_t *ring = &((rdma_ucx_t *)ctx->backend_ctx)->ring;
    _Atomic uint64_t *armed;
    char drain[64];
    uint64_t seq;
    int sender;

    if (ring->base == NULL) {
        return 0;
    }
    /* the socket is level-triggered in the event fd: empty it first */
    while (recv(ring->wake_sock, drain, sizeof(drain), 0) > 0) {
    }
    armed = &rdma_ring_armed(ring->base)->word;
    atomic_store_explicit(armed, 1, memory_order_seq_cst);
    atomic_thread_fence(memory_order_seq_cst);
    for (sender = 0; sender < ctx->nodes; sender++) {
        if (!atomic_load_explicit(&ctx->peers[sender].failed, memory_order_relaxed) &&
            rdma_ring_ready(ctx, ring, sender, &seq)) {
            atomic_store_explicit(armed, 0, memory_order_relaxed);
            return 1;
        }
    }
    return 0;
}

/* Protocol thread, awake: senders need not send wake-ups. */
void rdma_ucx_ring_disarm(rdma_ctx_t *ctx)
{
    rdma_ucx_ring_t *ring = &((rdma_ucx_t *)ctx->backend_ctx)->ring;
    _Atomic uint64_t *armed;

    if (ring->base == NULL) {
        return;
    }
    armed = &rdma_ring_armed(ring->base)->word;
    if (atomic_load_explicit(armed, memory_order_relaxed) != 0) {
        atomic_store_explicit(armed, 0, memory_order_relaxed);
    }
}

/* ---- sending -------------------------------------------------------------- */

/* The peer's ring region is mapped here (ucp_rkey_ptr): messages to it go
 * over its ring. `wake` is its wake-up socket's address (at most a
 * struct sockaddr_un: the caller checked). */
void rdma_ucx_ring_connect(rdma_ctx_t *ctx, int peer, void *base, const void *wake,
                           size_t wake_len)
{
    rdma_ucx_peer_t *p = &((rdma_ucx_t *)ctx->backend_ctx)->peers[peer];

    memcpy(&p->wake_addr, wake, wake_len);
    p->wake_len  = (socklen_t)wake_len;
    p->ring_sent = 0;
    p->ring_base = base;
    ftsvm_debug("messages to node %d go over its ring in shared memory", peer);
}

int rdma_ucx_ring_used(rdma_ctx_t *ctx, int peer)
{
    return ((rdma_ucx_t *)ctx->backend_ctx)->peers[peer].ring_base != NULL;
}

static void rdma_ring_wake(rdma_ucx_t *ucx, rdma_ucx_peer_t *p)
{
    char one = 1;

    /* EAGAIN: its buffer is full of wake-ups already; ECONNREFUSED: it is
     * gone (its failure is news for the heartbeat, not for this send) */
    (void)sendto(ucx->ring.wake_sock, &one, 1, MSG_DONTWAIT | MSG_NOSIGNAL,
                 (struct sockaddr *)&p->wake_addr, p->wake_len);
}

int rdma_ucx_ring_send(rdma_ctx_t *ctx, int peer, const void *hdr, size_t hdr_len,
                       const void *payload, size_t len)
{
    rdma_ucx_t *ucx = ctx->backend_ctx;
    rdma_ucx_peer_t *p = &ucx->peers[peer];
    _Atomic uint64_t *consumed = &rdma_ring_consumed(p->ring_base, ctx->node)->word;
    rdma_ring_slot_t *slot;
    uint64_t seq;

    if (hdr_len > RDMA_RING_HDR_MAX || len > RDMA_AM_MAX_PAYLOAD) {
        ftsvm_error("message to node %d: a %zu-byte header and %zu bytes do not fit a "
                    "ring slot", peer, hdr_len, len);
        return FTSVM_EINVAL;
    }
    pthread_mutex_lock(&p->ring_lock);
    seq = p->ring_sent;
    while (seq - atomic_load_explicit(consumed, memory_order_acquire) >= RDMA_RING_SLOTS) {
        /* full: the peer is slow, or dead (then the heartbeat says so) */
        if (atomic_load_explicit(&ctx->peers[peer].failed, memory_order_relaxed)) {
            pthread_mutex_unlock(&p->ring_lock);
            return FTSVM_EPEER;
        }
        rdma_ring_wake(ucx, p);
        (void)rdma_ucx_ring_poll(ctx);
        sched_yield();
    }
    slot = rdma_ring_slot(p->ring_base, ctx->nodes, ctx->node, seq);
    slot->hdr_len = (uint32_t)hdr_len;
    slot->len     = (uint32_t)len;
    memcpy(slot->hdr, hdr, hdr_len);
    if (len > 0) {
        memcpy(slot->payload, payload, len);
    }
    /* data then flag: the receiver reads the slot only after this store */
    atomic_store_explicit(&slot->round, seq / RDMA_RING_SLOTS + 1, memory_order_release);
    p->ring_sent = seq + 1;
    pthread_mutex_unlock(&p->ring_lock);
    /* against rdma_ucx_ring_arm's store and re-check: one of the two sees
     * the other */
    atomic_thread_fence(memory_order_seq_cst);
    if (atomic_load_explicit(&rdma_ring_armed(p->ring_base)->word, memory_order_relaxed)) {
        rdma_ring_wake(ucx, p);
    }
    return FTSVM_OK;
}

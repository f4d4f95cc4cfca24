/*
 * Node program of the transport tests (test/multi/test_transport.c), run on
 * every node by ftsvm-run or mpirun:  rma_node CHECK
 *
 *   putget     every node puts a pattern into every node, then gets it back
 *   atomics    fetch-add from all nodes on one word sums exactly, and the
 *              old values are a permutation; one compare-swap wins
 *   ordering   data then fence then flag, 100000 times: the receiver never
 *              sees a flag ahead of its data
 *   am         message round trip with every node, handlers on the protocol thread
 *   reject     malformed messages are rejected and counted, never handled
 *   death      the last node SIGKILLs itself (or, with RMA_NODE_AWAIT_KILL
 *              set, waits for ftsvm-run --kill); the others hear of it
 *              through the failure callback (prints the detection time)
 *
 * Exit 0 when the property holds, NODE_FAIL_EXIT with a message otherwise.
 */
#include "common/clock.h"
#include "common/stats.h"
#include "node_util.h"
#include "rdma/rdma.h"

#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define REGION_SIZE (1u << 20)
#define SLOT_SIZE   8192          /* per-writer slot in the putget check */

static int node, nodes;

static void fill(uint8_t *buf, size_t len, int writer, int target)
{
    size_t i;

    for (i = 0; i < len; i++) {
        buf[i] = (uint8_t)(i * 7 + (size_t)writer * 31 + (size_t)target * 13 + 1);
    }
}

static void check_putget(rdma_ctx_t *ctx)
{
    static const size_t lens[] = { 1, 3, 8, 64, 4096, 4097, SLOT_SIZE };
    uint8_t want[SLOT_SIZE], got[SLOT_SIZE];
    const uint8_t *mem = rdma_region_addr(ctx, 0);
    size_t l;
    int peer;

    for (l = 0; l < sizeof(lens) / sizeof(lens[0]); l++) {
        for (peer = 0; peer < nodes; peer++) {
            fill(want, lens[l], node, peer);
            node_ok(rdma_put(ctx, peer, 0, (uint64_t)node * SLOT_SIZE, want, lens[l]));
        }
        node_ok(rdma_flush(ctx, RDMA_ALL_PEERS));
        node_barrier();
        /* what every writer put here is here */
        for (peer = 0; peer < nodes; peer++) {
            fill(want, lens[l], peer, node);
            node_check(!memcmp(mem + (size_t)peer * SLOT_SIZE, want, lens[l]),
                       "%zu bytes put by node %d differ", lens[l], peer);
        }
        /* and reads back from every node */
        for (peer = 0; peer < nodes; peer++) {
            memset(got, 0, sizeof(got));
            node_ok(rdma_get(ctx, peer, 0, (uint64_t)node * SLOT_SIZE, got, lens[l]));
            fill(want, lens[l], node, peer);
            node_check(!memcmp(got, want, lens[l]), "%zu bytes got from node %d differ",
                       lens[l], peer);
        }
        node_barrier();
    }
    /* out-of-range requests are refused, not performed */
    node_check(rdma_put(ctx, nodes, 0, 0, want, 8) == FTSVM_ERANGE, "peer out of range");
    node_check(rdma_get(ctx, 0, 1, 0, got, 8) == FTSVM_ERANGE, "region out of range");
    node_check(rdma_get(ctx, 0, 0, REGION_SIZE - 4, got, 8) == FTSVM_ERANGE,
               "read past the region");
    node_check(rdma_fetch_add(ctx, 0, 0, 4, 1, NULL) == FTSVM_EINVAL, "misaligned atomic");
}

#define ADDS 2000

static void check_atomics(rdma_ctx_t *ctx)
{
    volatile uint64_t *mem = rdma_region_addr(ctx, 0);
    uint64_t old, sum = 0, max = 0, total = (uint64_t)nodes * ADDS;
    uint64_t *sums = calloc((size_t)nodes * 2, sizeof(uint64_t));
    uint64_t mine[2];
    int i, winners = 0;

    node_check(sums != NULL, "out of memory");
    for (i = 0; i < ADDS; i++) {
        node_ok(rdma_fetch_add(ctx, 0, 0, 0, 1, &old));
        node_check(old < total, "fetch-add returned %llu, above %llu",
                   (unsigned long long)old, (unsigned long long)total);
        sum += old;
        max = (old > max) ? old : max;
    }
    /* compare-swap: exactly one node moves word 1 from 0 to its id + 1 */
    node_ok(rdma_cswap(ctx, 0, 0, 8, 0, (uint64_t)node + 1, &old));
    mine[0] = sum;
    mine[1] = (old == 0);
    node_ok(runtime_exchange(ftsvm_runtime()->boot, mine, sizeof(mine), sums));
    node_barrier();
    if (node == 0) {
        node_check(mem[0] == total, "counter %llu after %d nodes x %d adds",
                   (unsigned long long)mem[0], nodes, ADDS);
        node_check(mem[1] >= 1 && mem[1] <= (uint64_t)nodes, "compare-swap word %llu",
                   (unsigned long long)mem[1]);
    }
    /* the old values are 0..total-1, each once: their sum says so given
     * that each was below total and the final count is exact */
    sum = 0;
    for (i = 0; i < nodes; i++) {
        sum += sums[2 * i];
        winners += (int)sums[2 * i + 1];
    }
    node_check(sum == total * (total - 1) / 2, "old values sum to %llu, not %llu",
               (unsigned long long)sum, (unsigned long long)(total * (total - 1) / 2));
    node_check(winners == 1, "%d nodes won the compare-swap", winners);
    free(sums);
}

#define TRIALS 100000
#define DATA_WORDS 8

typedef struct {
    volatile uint64_t *mem;
    int violations;
    uint64_t seen;
} reader_t;

static void *ordering_reader(void *arg)
{
    reader_t *r = arg;
    uint64_t flag, data;
    int w;

    do {
        flag = __atomic_load_n(&r->mem[0], __ATOMIC_ACQUIRE);
        for (w = 0; w < DATA_WORDS; w++) {
            data = __atomic_load_n(&r->mem[8 + w], __ATOMIC_RELAXED);
            if (data < flag) {
                r->violations++;
            }
        }
        if (flag != r->seen) {
            r->seen = flag;
        }
    } while (flag != TRIALS);
    return NULL;
}

static void check_ordering(rdma_ctx_t *ctx)
{
    reader_t reader = { .mem = rdma_region_addr(ctx, 0) };
    uint64_t data[DATA_WORDS], t;
    int target = (node + 1) % nodes, w;
    pthread_t thread;

    node_check(pthread_create(&thread, NULL, ordering_reader, &reader) == 0, "thread");
    node_barrier();
    for (t = 1; t <= TRIALS; t++) {
        for (w = 0; w < DATA_WORDS; w++) {
            data[w] = t;
        }
        node_ok(rdma_put(ctx, target, 0, 64, data, sizeof(data)));
        node_ok(rdma_fence(ctx));
        node_ok(rdma_put(ctx, target, 0, 0, &t, sizeof(t)));
    }
    node_ok(rdma_flush(ctx, target));
    pthread_join(thread, NULL);
    node_check(reader.violations == 0, "%d reads saw a flag ahead of its data",
               reader.violations);
    node_barrier();
}

enum { MSG_PING = 1, MSG_PONG = 2, MSG_VALID = 3 };

typedef struct {
    rdma_ctx_t     *ctx;
    pthread_mutex_t lock;
    pthread_cond_t  cond;
    int             pongs;
    int             valid;
    int             wrong_thread;
} am_state_t;

static am_state_t am = { .lock = PTHREAD_MUTEX_INITIALIZER, .cond = PTHREAD_COND_INITIALIZER };
static pthread_t main_thread;

static void on_ping(void *arg, int src, const void *payload, size_t len)
{
    uint64_t reply[2];

    memcpy(reply, payload, sizeof(reply));
    reply[1] += 1000;
    if (pthread_equal(pthread_self(), main_thread)) {
        am.wrong_thread++;
    }
    /* a handler may send: it runs on the protocol thread, outside UCX */
    if (rdma_am_send(am.ctx, src, MSG_PONG, reply, sizeof(reply)) != FTSVM_OK) {
        fprintf(stderr, "pong to node %d failed\n", src);
    }
}

static void on_pong(void *arg, int src, const void *payload, size_t len)
{
    uint64_t reply[2];

    memcpy(reply, payload, sizeof(reply));
    pthread_mutex_lock(&am.lock);
    if (reply[0] == (uint64_t)node && reply[1] == (uint64_t)src + 1000) {
        am.pongs++;
    }
    pthread_cond_signal(&am.cond);
    pthread_mutex_unlock(&am.lock);
}

static void on_valid(void *arg, int src, const void *payload, size_t len)
{
    pthread_mutex_lock(&am.lock);
    am.valid++;
    pthread_cond_signal(&am.cond);
    pthread_mutex_unlock(&am.lock);
}

static void am_setup(rdma_ctx_t *ctx)
{
    am.ctx = ctx;
    main_thread = pthread_self();
    node_ok(rdma_am_register(ctx, MSG_PING, 16, 16, on_ping, NULL));
    node_ok(rdma_am_register(ctx, MSG_PONG, 16, 16, on_pong, NULL));
    node_ok(rdma_am_register(ctx, MSG_VALID, 0, 64, on_valid, NULL));
    node_barrier();   /* handlers are in place everywhere */
}

static void check_am(rdma_ctx_t *ctx)
{
    uint64_t ping[2];
    int peer, round;

    am_setup(ctx);
    for (round = 0; round < 50; round++) {
        for (peer = 0; peer < nodes; peer++) {
            ping[0] = (uint64_t)node;
            ping[1] = (uint64_t)peer;
            node_ok(rdma_am_send(ctx, peer, MSG_PING, ping, sizeof(ping)));
        }
        pthread_mutex_lock(&am.lock);
        while (am.pongs < (round + 1) * nodes) {
            pthread_cond_wait(&am.cond, &am.lock);
        }
        pthread_mutex_unlock(&am.lock);
    }
    node_check(am.wrong_thread == 0, "a handler ran on the application thread");
    node_check(rdma_am_send(ctx, 0, RDMA_AM_TYPES, ping, 8) == FTSVM_EINVAL, "bad type");
    node_check(rdma_am_send(ctx, 0, MSG_PING, ping, RDMA_AM_MAX_PAYLOAD + 1) ==
               FTSVM_EINVAL, "oversized message");
    node_barrier();
}

static void check_reject(rdma_ctx_t *ctx)
{
    struct {
        uint16_t type, version;
        uint32_t src, len;
    } hdr;
    uint8_t payload[128] = {0};
    uint64_t rejected_before = stats_lookup("rdma", "am_rejected");
    int target = (node + 1) % nodes, sent = 0;

    am_setup(ctx);

#define SEND_BAD(_type, _version, _src, _len, _hdrlen, _paylen)                      \
    do {                                                                             \
        hdr.type = (_type); hdr.version = (_version); hdr.src = (_src);              \
        hdr.len = (_len);                                                            \
        node_ok(rdma_am_send_raw(ctx, target, &hdr, (_hdrlen), payload, (_paylen))); \
        sent++;                                                                      \
    } while (0)

    SEND_BAD(MSG_VALID, 1, node, 8, sizeof(hdr) - 4, 8);    /* short header */
    SEND_BAD(MSG_VALID, 9, node, 8, sizeof(hdr), 8);        /* unknown version */
    SEND_BAD(MSG_VALID, 1, 1000000, 8, sizeof(hdr), 8);     /* sender out of range */
    SEND_BAD(40, 1, node, 8, sizeof(hdr), 8);               /* unregistered type */
    SEND_BAD(60000, 1, node, 8, sizeof(hdr), 8);            /* type out of range */
    SEND_BAD(MSG_VALID, 1, node, 99, sizeof(hdr), 8);       /* length lies */
    SEND_BAD(MSG_VALID, 1, node, 100, sizeof(hdr), 100);    /* above the type's bound */
    SEND_BAD(MSG_PING, 1, node, 4, sizeof(hdr), 4);         /* below the type's bound */
    /* then one good message: when it is handled, the bad ones were seen */
    node_ok(rdma_am_send(ctx, target, MSG_VALID, payload, 8));
    pthread_mutex_lock(&am.lock);
    while (am.valid < 1) {
        pthread_cond_wait(&am.cond, &am.lock);
    }
    pthread_mutex_unlock(&am.lock);
    node_check(am.valid == 1 && am.pongs == 0, "a malformed message reached a handler "
               "(valid %d, pongs %d)", am.valid, am.pongs);
    node_check(stats_lookup("rdma", "am_rejected") - rejected_before == (uint64_t)sent,
               "rejected %llu of %d malformed messages",
               (unsigned long long)(stats_lookup("rdma", "am_rejected") - rejected_before),
               sent);
    printf("node %d rejected %d malformed messages and lives\n", node, sent);
    node_barrier();
}

static _Atomic int failed_peer = -1;
static _Atomic uint64_t failed_at;

static void on_failure(void *arg, int peer)
{
    atomic_store(&failed_at, clock_now_ns());
    atomic_store(&failed_peer, peer);
}

static void check_death(rdma_ctx_t *ctx)
{
    int victim = nodes - 1;
    uint64_t start, deadline;
    uint8_t buf[8];

    node_ok(rdma_on_peer_failure(ctx, on_failure, NULL));
    node_barrier();
    if (node == victim) {
        if (getenv("RMA_NODE_AWAIT_KILL") != NULL) {
            sleep(60);   /* ftsvm-run --kill ends us */
        }
        raise(SIGKILL);
    }
    /* the kill happens right after the barrier: time from here */
    start    = clock_now_ns();
    deadline = start + 20ull * 1000000000ull;
    while (atomic_load(&failed_peer) < 0 && clock_now_ns() < deadline) {
        /* keep talking to the victim, as a node waiting on it would */
        (void)rdma_get(ctx, victim, 0, 0, buf, sizeof(buf));
        usleep(1000);
    }
    node_check(atomic_load(&failed_peer) == victim, "no failure reported for node %d "
               "within 20 s (got %d)", victim, atomic_load(&failed_peer));
    printf("node %d: failure of node %d reported after %.1f ms\n", node, victim,
           (double)(atomic_load(&failed_at) - start) / 1e6);
    node_check(!rdma_peer_alive(ctx, victim), "victim still alive for the transport");
    node_check(rdma_peer_alive(ctx, node), "a survivor thinks itself dead");
    node_check(rdma_put(ctx, victim, 0, 0, buf, 8) == FTSVM_EPEER,
               "a put to the dead node did not fail with FTSVM_EPEER");
}

/* A sender killed mid-message must not leave its receiver deaf to the
 * others (over UCX's shared-memory queue it could: ucx_ring.c). Node 0
 * receives, node 1 is the witness, the last (nodes - 2) / 2 nodes flood node
 * 0 with messages until a thread of their own SIGKILLs them at a random
 * moment; the nodes between only wait. The survivors stay a majority of
 * the view, so the failure module does not fence them as cut off. */
enum { MSG_FLOOD = 4, JAM_WITNESS_MSGS = 10000 };

static _Atomic uint64_t flood_received[64];

static void on_flood(void *arg, int src, const void *payload, size_t len)
{
    if (src >= 0 && src < 64) {
        atomic_fetch_add(&flood_received[src], 1);
    }
}

static void *jam_killer(void *arg)
{
    unsigned seed = (unsigned)getpid() ^ (unsigned)clock_now_ns();

    usleep(5000 + (useconds_t)(rand_r(&seed) % 100000));
    raise(SIGKILL);
    return NULL;
}

static void check_jam(rdma_ctx_t *ctx)
{
    static uint8_t payload[4000];
    uint64_t deadline, victims_heard = 0;
    pthread_t killer;
    unsigned i;
    int peer, victims = (nodes - 2) / 2;

    node_check(nodes >= 4 && nodes <= 64, "jam needs 4 to 64 nodes");
    node_ok(rdma_am_register(ctx, MSG_FLOOD, 0, sizeof(payload), on_flood, NULL));
    node_barrier();   /* handlers are in place everywhere */
    if (node >= nodes - victims) {
        node_check(pthread_create(&killer, NULL, jam_killer, NULL) == 0, "thread");
        for (i = 0;; i++) {
            (void)rdma_am_send(ctx, 0, MSG_FLOOD, payload, (i & 1) ? 4000 : 48);
        }
    }
    /* every victim is dead long before this */
    sleep(1);
    if (node >= 2) {
        return;   /* a bystander */
    }
    if (node == 1) {
        for (i = 0; i < JAM_WITNESS_MSGS; i++) {
            node_ok(rdma_am_send(ctx, 0, MSG_FLOOD, payload, 48));
        }
    } else {
        deadline = clock_now_ns() + 20ull * 1000000000ull;
        while (atomic_load(&flood_received[1]) < JAM_WITNESS_MSGS &&
               clock_now_ns() < deadline) {
            usleep(1000);
        }
        for (peer = nodes - victims; peer < nodes; peer++) {
            victims_heard += atomic_load(&flood_received[peer]);
        }
        node_check(atomic_load(&flood_received[1]) == JAM_WITNESS_MSGS,
                   "node 0 heard %llu of node 1's %d messages within 20 s after %d "
                   "senders were killed mid-message",
                   (unsigned long long)atomic_load(&flood_received[1]), JAM_WITNESS_MSGS,
                   victims);
        printf("node 0 heard all %d messages of node 1 after %d senders were killed "
               "mid-message (%llu of theirs heard)\n", JAM_WITNESS_MSGS, victims,
               (unsigned long long)victims_heard);
    }
}

int main(int argc, char **argv)
{
    const char *check = (argc > 1) ? argv[1] : "";
    rdma_ctx_t *ctx;

    runtime_keep_bootstrap();   /* node_transport and node_barrier use it */
    node_ok(ftsvm_init(&argc, &argv));
    node  = ftsvm_node();
    nodes = ftsvm_nodes();
    ctx   = node_transport(1, REGION_SIZE, getenv("RMA_NODE_TLS"));
    node_barrier();

    if (!strcmp(check, "putget")) {
        check_putget(ctx);
    } else if (!strcmp(check, "atomics")) {
        check_atomics(ctx);
    } else if (!strcmp(check, "ordering")) {
        check_ordering(ctx);
    } else if (!strcmp(check, "am")) {
        check_am(ctx);
    } else if (!strcmp(check, "reject")) {
        check_reject(ctx);
    } else if (!strcmp(check, "death")) {
        check_death(ctx);
    } else if (!strcmp(check, "jam")) {
        check_jam(ctx);
    } else {
        fprintf(stderr, "usage: rma_node putget|atomics|ordering|am|reject|death|jam\n");
        return 2;
    }
    rdma_quiesce(ctx);
    node_barrier();
    rdma_destroy(ctx);
    node_ok(ftsvm_finalize());
    printf("node %d: %s passed\n", node, check);
    return 0;
}

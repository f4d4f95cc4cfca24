/*
 * Node program of the replication tests (test/multi/test_replica.c). Reads
 * the home stores below the public API, so it links the library's objects.
 *
 *   replica_node stop POINT [K]
 *       3 nodes; FTSVM_STOP_AT=POINT[:K]@1#3 is set by the test. Node 1 (the
 *       writer) writes 8 pages (round A, its interval 2), then again under a
 *       lock (round B, interval 3), whose release stops at POINT. Node 0
 *       waits until node 1 is stopped, reads every home and node 1's
 *       markers, asserts the invariant of POINT and that the marker decision
 *       would leave each page at its last durable version (A before
 *       nextRelease, B after), then lets node 1 go on (SIGCONT). After the
 *       next barrier both homes hold B everywhere and lastRelease =
 *       nextRelease = 3.
 *   replica_node corrupt
 *       FTSVM_CHECK_HOMES=y: after a barrier, node 0 changes one byte of a
 *       secondary home copy behind the protocol's back; the next barrier's
 *       check must find it.
 *   replica_node corrupt-lock
 *       FTSVM_CHECK_HOMES=y: every node takes lock 0 (primary node 0,
 *       secondary node 1); the checked barrier finds the records equal; then
 *       node 0 changes the secondary's record of the tail, and the next
 *       check must find it.
 *
 * Pages of the test: 8 consecutive pages, so that with 3 nodes every pair
 * (primary, secondary) occurs, the writer being primary, secondary or
 * neither.
 */
#include "ftsvm.h"
#include "hlrc/hlrc_int.h"
#include "node_util.h"
#include "locks/locks.h"
#include "replica/replica.h"

#include <signal.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define NPAGES  8
#define WRITER  1
#define OBSERVER 0
#define MARK    64          /* bytes written per page per round */
#define K_B     3           /* the writer's interval of round B */

static uint8_t *pages;
static pid_t writer_pid;   /* the observer's: let the writer go on, whatever happens */

static void release_writer(void)
{
    if (writer_pid > 0) {
        kill(writer_pid, SIGCONT);
    }
}

static uint8_t pattern(int round, int page)
{
    return (uint8_t)(round * 16 + page + 1);
}

static void write_round(int round)
{
    int p;

    for (p = 0; p < NPAGES; p++) {
        memset(pages + (size_t)p * HLRC_PAGE_SIZE, pattern(round, p), MARK);
    }
}

static size_t page_index(int p)
{
    return (size_t)(pages + (size_t)p * HLRC_PAGE_SIZE - hlrc.base) / HLRC_PAGE_SIZE;
}

/* 'A', 'B' or '?' (a mix or something else) */
static char content(const uint8_t *copy, int p)
{
    int round, i;

    for (round = 0; round < 2; round++) {
        for (i = 0; i < MARK && copy[i] == pattern(round, p); i++) {
        }
        if (i == MARK) {
            return (char)('A' + round);
        }
    }
    return '?';
}

static int process_stopped(pid_t pid)
{
    char path[64], buf[512], *close_paren;
    FILE *f;
    size_t n;

    snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
    f = fopen(path, "r");
    if (f == NULL) {
        return 0;
    }
    n = fread(buf, 1, sizeof(buf) - 1, f);
    fclose(f);
    buf[n] = '\0';
    close_paren = strrchr(buf, ')');
    return close_paren != NULL && close_paren[1] == ' ' && close_paren[2] == 'T';
}

typedef struct home_view {
    uint64_t applied, pending;
    char     content;
} home_view_t;

static void read_home(int p, int which, home_view_t *v)
{
    uint64_t meta[2 * 64];
    uint8_t copy[HLRC_PAGE_SIZE];

    node_check(hlrc.nodes <= 64, "too many nodes");
    node_ok(hlrc_home_read(page_index(p), which, meta, copy));
    v->applied = meta[2 * WRITER];
    v->pending = meta[2 * WRITER + 1];
    v->content = content(copy, p);
}

static void expect_home(int p, const char *which, const home_view_t *v, uint64_t applied,
                        uint64_t pending, char data, const char *point)
{
    node_check(v->applied == applied && v->pending == pending && v->content == data,
               "at %s, page %d %s home: applied %llu pending %llu content %c; expected "
               "applied %llu pending %llu content %c", point, p, which,
               (unsigned long long)v->applied, (unsigned long long)v->pending, v->content,
               (unsigned long long)applied, (unsigned long long)pending, data);
}

/* The state node 1 leaves at `point` (k pages done for the *-diffs points). */
static void check_point(replica_stop_point_t point, unsigned k, const char *name)
{
    uint64_t last, next, want_next, want_last;
    int p, durable;

    node_ok(replica_markers_read(WRITER, &last, &next));
    want_next = (point >= REPLICA_STOP_NEXT_RELEASE) ? K_B : K_B - 1;
    want_last = (point >= REPLICA_STOP_LAST_RELEASE) ? K_B : K_B - 1;
    node_check(next == want_next && last == want_last,
               "at %s: lastRelease %llu nextRelease %llu, expected %llu and %llu", name,
               (unsigned long long)last, (unsigned long long)next,
               (unsigned long long)want_last, (unsigned long long)want_next);
    durable = (point >= REPLICA_STOP_NEXT_RELEASE);
    for (p = 0; p < NPAGES; p++) {
        home_view_t pv, sv;
        replica_words_t pw, sw;
        replica_verdict_t verdict;
        char after;
        /* what each home holds at this point */
        uint64_t pa = (point >= REPLICA_STOP_PHASE1_APPLIED) ? K_B : K_B - 1;
        uint64_t pp = (point >= REPLICA_STOP_PHASE1_PENDING &&
                       point < REPLICA_STOP_PHASE1_APPLIED) ? K_B : 0;
        char pc = (point > REPLICA_STOP_PHASE1_DIFFS ||
                   (point == REPLICA_STOP_PHASE1_DIFFS && (unsigned)p < k)) ? 'B' : 'A';
        uint64_t sa = (point >= REPLICA_STOP_PHASE2_APPLIED) ? K_B : K_B - 1;
        uint64_t sp = (point >= REPLICA_STOP_PHASE2_PENDING &&
                       point < REPLICA_STOP_PHASE2_APPLIED) ? K_B : 0;
        char sc = (point > REPLICA_STOP_PHASE2_DIFFS ||
                   (point == REPLICA_STOP_PHASE2_DIFFS && (unsigned)p < k)) ? 'B' : 'A';

        read_home(p, REPLICA_PRIMARY, &pv);
        read_home(p, REPLICA_SECONDARY, &sv);
        if (hlrc_home(page_index(p), REPLICA_PRIMARY) == WRITER) {
            /* the writer's own copy dies with it: its other home is written
             * in phase 1 along with it (propagate.c, phase_homes) */
            expect_home(p, "primary", &pv, pa, pp, pc, name);
            expect_home(p, "secondary", &sv, pa, pp, pc, name);
            /* a failure leaves the secondary alone: whole at a durable point;
             * untouched before any run (partly written in the runs: the
             * known limit of recover.c) */
            if (durable || point < REPLICA_STOP_PHASE1_DIFFS) {
                node_check(sv.content == (durable ? 'B' : 'A'),
                           "at %s, page %d (the writer its primary): the secondary, left "
                           "alone, holds %c", name, p, sv.content);
            }
            continue;
        }
        expect_home(p, "primary", &pv, pa, pp, pc, name);
        expect_home(p, "secondary", &sv, sa, sp, sc, name);
        /* if node 1 had failed here: the markers alone decide, and the page
         * ends at its last durable version */
        pw = (replica_words_t){ pv.applied, pv.pending };
        sw = (replica_words_t){ sv.applied, sv.pending };
        verdict = replica_resolve(0, &pw, &sw, last, next);
        switch (verdict) {
        case REPLICA_ROLL_BACK:         after = sv.content; break;
        case REPLICA_COMPLETE:
        case REPLICA_COPY_FROM_PRIMARY: after = pv.content; break;
        case REPLICA_NOTHING:           after = (pv.content == sv.content) ? pv.content : '?';
                                        break;
        default:                        after = '?'; break;
        }
        node_check(after == (durable ? 'B' : 'A'),
                   "at %s, page %d: the decision is '%s', which leaves %c; interval %d is %s",
                   name, p, replica_verdict_name(verdict), after, K_B,
                   durable ? "durable" : "void");
    }
}

static void test_stop(int argc, char **argv)
{
    replica_stop_point_t point = REPLICA_STOP_NONE;
    unsigned k = (argc > 3) ? (unsigned)atoi(argv[3]) : 0;
    int node = ftsvm_node(), p;
    volatile int *pids;
    struct timespec nap = { 0, 1000000 };
    uint64_t last = 0, next = 0;
    int waited;

    for (p = REPLICA_STOP_BEFORE_PHASE1; p < REPLICA_STOP_COUNT; p++) {
        if (strcmp(argv[2], replica_stop_name((replica_stop_point_t)p)) == 0) {
            point = (replica_stop_point_t)p;
        }
    }
    node_check(point != REPLICA_STOP_NONE, "unknown point %s", argv[2]);
    node_check(ftsvm_nodes() == 3, "3 nodes");
    node_check(hlrc.replicated, "FTSVM_REPLICAS=2");
    pages = ftsvm_alloc((NPAGES + 1) * HLRC_PAGE_SIZE);
    pids = ftsvm_alloc(HLRC_PAGE_SIZE);
    node_check(pages != NULL && pids != NULL, "ftsvm_alloc");
    pages = (uint8_t *)(((uintptr_t)pages + HLRC_PAGE_SIZE - 1) & ~(uintptr_t)(HLRC_PAGE_SIZE - 1));
    pids[node] = (int)getpid();                 /* every node's interval 1 */
    node_ok(ftsvm_barrier());
    if (node == WRITER) {
        write_round(0);                         /* interval 2 */
    }
    node_ok(ftsvm_barrier());
    if (node == OBSERVER) {
        node_ok(replica_markers_read(WRITER, &last, &next));
        node_check(last == K_B - 1 && next == K_B - 1, "after round A: last %llu next %llu",
                   (unsigned long long)last, (unsigned long long)next);
    }
    node_ok(ftsvm_barrier());
    if (node == WRITER) {
        node_ok(ftsvm_lock_acquire(1));
        write_round(1);
        node_ok(ftsvm_lock_release(1));         /* interval 3: stops at the point */
    } else if (node == OBSERVER) {
        writer_pid = pids[WRITER];
        atexit(release_writer);   /* a failed check must not leave it stopped */
        for (waited = 0; !process_stopped(pids[WRITER]); waited++) {
            node_check(waited < 30000, "node %d never stopped at %s", WRITER, argv[2]);
            nanosleep(&nap, NULL);
        }
        check_point(point, k, argv[2]);
        printf("node %d: invariant of %s%s%s holds\n", node, argv[2], k ? ":" : "",
               k ? argv[3] : "");
        fflush(stdout);
        node_check(kill(pids[WRITER], SIGCONT) == 0, "SIGCONT: %m");
    }
    node_ok(ftsvm_barrier());
    if (node == OBSERVER) {
        check_point(REPLICA_STOP_LAST_RELEASE, 0, "the end");
        printf("node %d: both homes hold round B\n", node);
    }
    node_ok(ftsvm_barrier());
}

static void test_corrupt(void)
{
    int node = ftsvm_node(), status, secondary;
    size_t page;
    uint8_t byte = 0x5a;

    node_check(hlrc_checking_homes(), "FTSVM_CHECK_HOMES=y and 2 replicas");
    pages = ftsvm_alloc((NPAGES + 1) * HLRC_PAGE_SIZE);
    node_check(pages != NULL, "ftsvm_alloc");
    pages = (uint8_t *)(((uintptr_t)pages + HLRC_PAGE_SIZE - 1) & ~(uintptr_t)(HLRC_PAGE_SIZE - 1));
    if (node == WRITER) {
        write_round(0);
    }
    node_ok(ftsvm_barrier());                   /* checked: the homes agree */
    if (node == OBSERVER) {
        page = page_index(2);
        secondary = hlrc_home(page, REPLICA_SECONDARY);
        node_ok(rdma_put(hlrc.rdma, secondary, HLRC_REGION_HOME,
                         hlrc_home_index(page, REPLICA_SECONDARY) * HLRC_PAGE_SIZE + 100,
                         &byte, 1));
        node_ok(rdma_flush(hlrc.rdma, RDMA_ALL_PEERS));
        printf("node %d: changed byte 100 of page 0x%zx at its secondary, node %d\n", node,
               page, secondary);
    }
    node_ok(bootstrap_barrier(ftsvm_runtime()->boot));
    status = ftsvm_barrier();
    if (hlrc_home(page_index(2), REPLICA_PRIMARY) == node) {
        node_check(status == FTSVM_EPROTO, "the check missed it: %s", ftsvm_strerror(status));
        printf("node %d: the home check found the difference\n", node);
    } else {
        node_check(status == FTSVM_OK, "barrier: %s", ftsvm_strerror(status));
    }
    fflush(stdout);
    ftsvm_finalize();   /* its check finds the page again; the run is over */
    exit(0);
}

static void test_corrupt_lock(void)
{
    uint64_t wrong = 3;   /* "tail is node 2" (stored + 1); the last requester is node 1 */
    int node = ftsvm_node(), status;

    node_check(hlrc_checking_homes() && ftsvm_nodes() == 3, "3 nodes, FTSVM_CHECK_HOMES=y");
    if (node != 2) {
        node_ok(ftsvm_lock_acquire(0));
        node_ok(ftsvm_lock_release(0));
    }
    node_ok(ftsvm_barrier());                   /* checked: the records agree */
    if (node == OBSERVER) {
        /* the locks region follows hlrc's and replica's; lock 0's record is
         * its slot's second word (tail + 1) */
        node_ok(rdma_put(hlrc.rdma, 1, HLRC_NREGIONS + REPLICA_NREGIONS, 8, &wrong, 8));
        node_ok(rdma_flush(hlrc.rdma, RDMA_ALL_PEERS));
        printf("node %d: changed the tail of lock 0 at its secondary\n", node);
    }
    node_ok(bootstrap_barrier(ftsvm_runtime()->boot));
    status = ftsvm_barrier();
    if (node == 0) {
        node_check(status == FTSVM_EPROTO, "the check missed it: %s", ftsvm_strerror(status));
        printf("node %d: the lock check found the difference\n", node);
    } else {
        node_check(status == FTSVM_OK, "barrier: %s", ftsvm_strerror(status));
    }
    fflush(stdout);
    ftsvm_finalize();   /* its check finds it again; the run is over */
    exit(0);
}

int main(int argc, char **argv)
{
    node_check(argc >= 2, "usage: replica_node stop POINT [K] | corrupt | corrupt-lock");
    runtime_keep_bootstrap();   /* node_transport and node_barrier use it */
    node_ok(ftsvm_init(&argc, &argv));
    if (strcmp(argv[1], "stop") == 0 && argc >= 3) {
        test_stop(argc, argv);
    } else if (strcmp(argv[1], "corrupt") == 0) {
        test_corrupt();
    } else if (strcmp(argv[1], "corrupt-lock") == 0) {
        test_corrupt_lock();
    } else {
        node_check(0, "unknown test %s", argv[1]);
    }
    node_ok(ftsvm_finalize());
    return 0;
}

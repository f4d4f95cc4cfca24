/*
 * Node program of the fencing test (test/multi/test_fence.c). Reads the
 * home stores below the public API, so it links the library's objects.
 *
 *   fence_node stopped-writer
 *       3 nodes, two homes, a short FTSVM_HB_TIMEOUT, and FTSVM_STOP_AT at
 *       a step of phase 1 of node 1's interval 3 set by the test (e.g.
 *       phase1-diffs:1@1#3). Node 1 (the writer) writes 8 pages (round A, its
 *       interval 2), then again under a lock (round B, interval 3), whose
 *       release stops itself (SIGSTOP) there: runs are still to go to their
 *       homes, and interval 3 is not durable. Nodes 0 and 2 remove it (its heartbeat stands still) and
 *       recover: every home they keep holds round A. Each then takes a copy
 *       of its whole home store (the home copies, their applied / pending
 *       words, the undo slots); node 0 lets node 1 go on (SIGCONT); each
 *       survivor waits until node 1's process is gone (or 5 s), then
 *       checks that not one byte of its home store changed and that no home
 *       copy holds a page of round B. Exit 0 when every check holds.
 *
 * Between the copy and the check the survivors only wait: nothing of
 * theirs writes a home store, so any change is node 1's.
 */
#include "ftsvm.h"
#include "failure/failure.h"
#include "hlrc/hlrc_int.h"
#include "node_util.h"

#include <signal.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define NPAGES   8
#define WRITER   1
#define MARK     64          /* bytes written per page per round */
#define EXIT_CHANGED 20      /* a survivor's home store changed after the removal */

static const unsigned store_regions[] = { HLRC_REGION_HOME, HLRC_REGION_META,
                                          HLRC_REGION_UNDO };
#define NSTORE (sizeof(store_regions) / sizeof(store_regions[0]))

static uint8_t *pages;
static pid_t writer_pid;

static void release_writer(void)
{
    if (writer_pid > 0) {
        kill(writer_pid, SIGCONT);   /* a failed check must not leave it stopped */
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

/* 'T' stopped, 'Z' / 'X' / 0 (gone) ... as /proc/<pid>/stat says */
static char process_state(pid_t pid)
{
    uint64_t start;
    char state;

    return runtime_process_stat((int)pid, &state, &start) == FTSVM_OK ? state : 0;
}

static int process_gone(pid_t pid)
{
    char state = process_state(pid);

    return state == 0 || state == 'Z' || state == 'X';
}

/* Home copies in this node's store that begin with a page of round B. */
static int round_b_copies(void)
{
    const uint8_t *store = rdma_region_addr(hlrc.rdma, HLRC_REGION_HOME);
    size_t slots = rdma_region_size(hlrc.rdma, HLRC_REGION_HOME) / HLRC_PAGE_SIZE, s;
    int p, i, found = 0;

    for (s = 0; s < slots; s++) {
        const uint8_t *copy = store + s * HLRC_PAGE_SIZE;

        for (p = 0; p < NPAGES; p++) {
            for (i = 0; i < MARK && copy[i] == pattern(1, p); i++) {
            }
            if (i == MARK) {
                fprintf(stderr, "node %d: home slot %zu holds page %d of round B\n",
                        ftsvm_node(), s, p);
                found++;
            }
        }
    }
    return found;
}

static uint8_t *store_copy(unsigned region)
{
    size_t size = rdma_region_size(hlrc.rdma, region);
    uint8_t *copy = malloc(size);

    node_check(copy != NULL, "cannot copy region %u", region);
    memcpy(copy, rdma_region_addr(hlrc.rdma, region), size);
    return copy;
}

/* Bytes of `region` that differ from `copy`; the first few are named. */
static size_t store_changes(unsigned region, const uint8_t *copy)
{
    const uint8_t *now = rdma_region_addr(hlrc.rdma, region);
    size_t size = rdma_region_size(hlrc.rdma, region), i, changed = 0;

    for (i = 0; i < size; i++) {
        if (now[i] != copy[i]) {
            if (changed++ < 4) {
                fprintf(stderr, "node %d: region %u byte %zu changed after node %d's "
                        "removal: 0x%02x, was 0x%02x\n", ftsvm_node(), region, i, WRITER,
                        now[i], copy[i]);
            }
        }
    }
    return changed;
}

static void survivor(void)
{
    struct timespec nap = { 0, 1000000 };
    uint8_t *copies[NSTORE];
    size_t changed = 0, i;
    int node = ftsvm_node(), waited;

    if (node == 0) {
        atexit(release_writer);
        for (waited = 0; process_state(writer_pid) != 'T'; waited++) {
            /* with the fix it may be shot already: then it has stopped */
            node_check(waited < 30000 && ftsvm_view() == 0,
                       "node %d never stopped (view %d)", WRITER, ftsvm_view());
            nanosleep(&nap, NULL);
        }
        printf("node %d: node %d stopped in the middle of phase 1\n", node, WRITER);
        fflush(stdout);
    }
    node_ok(failure_wait_view(0, 60ull * 1000000000ull));
    node_check(!failure_member(WRITER) && failure_members() == 2,
               "view %llu: node %d %s, %d members", (unsigned long long)failure_view(),
               WRITER, failure_member(WRITER) ? "a member" : "removed", failure_members());
    node_ok(ftsvm_barrier());   /* both survivors have recovered */
    /* re-replication writes the rows node 1 left single into the other
     * survivor's store: legitimately, and before the copies are taken */
    node_ok(replica_copies_wait(60ull * 1000000000ull));
    node_ok(ftsvm_barrier());
    node_check(round_b_copies() == 0, "recovery left round B in a home");
    for (i = 0; i < NSTORE; i++) {
        copies[i] = store_copy(store_regions[i]);
    }
    node_ok(ftsvm_barrier());   /* both have their copy */
    if (node == 0) {
        /* without fencing it goes on with its runs now */
        kill(writer_pid, SIGCONT);
        printf("node %d: continued node %d after its removal\n", node, WRITER);
        fflush(stdout);
    }
    for (waited = 0; !process_gone(writer_pid) && waited < 5000; waited++) {
        nanosleep(&nap, NULL);
    }
    for (i = 0; i < NSTORE; i++) {
        changed += store_changes(store_regions[i], copies[i]);
        free(copies[i]);
    }
    if (changed > 0 || round_b_copies() > 0) {
        fprintf(stderr, "node %d: %zu bytes of its home store changed after node %d's "
                "removal\n", node, changed, WRITER);
        exit(EXIT_CHANGED);
    }
    printf("node %d: no home byte changed after node %d's removal (node %d %s)\n", node,
           WRITER, WRITER, process_gone(writer_pid) ? "is gone" : "still runs");
    fflush(stdout);
}

static void test_stopped_writer(void)
{
    int node = ftsvm_node();
    volatile int *pids;

    node_check(ftsvm_nodes() == 3, "3 nodes");
    node_check(hlrc.replicated, "FTSVM_REPLICAS=2");
    pages = ftsvm_alloc((NPAGES + 1) * HLRC_PAGE_SIZE);
    pids = ftsvm_alloc(HLRC_PAGE_SIZE);
    node_check(pages != NULL && pids != NULL, "ftsvm_alloc");
    pages = (uint8_t *)(((uintptr_t)pages + HLRC_PAGE_SIZE - 1) &
                        ~(uintptr_t)(HLRC_PAGE_SIZE - 1));
    pids[node] = (int)getpid();                 /* every node's interval 1 */
    node_ok(ftsvm_barrier());
    writer_pid = pids[WRITER];
    if (node == WRITER) {
        write_round(0);                         /* interval 2 */
    }
    node_ok(ftsvm_barrier());
    if (node == WRITER) {
        node_ok(ftsvm_lock_acquire(1));
        write_round(1);
        /* interval 3: stops after the first page's runs; continued, it
         * would write the others' runs into homes that dropped it */
        (void)ftsvm_lock_release(1);
        fprintf(stderr, "node %d: still running after its removal\n", node);
        exit(0);
    }
    survivor();
}

int main(int argc, char **argv)
{
    node_check(argc >= 2, "usage: fence_node stopped-writer");
    runtime_keep_bootstrap();   /* node_transport and node_barrier use it */
    node_ok(ftsvm_init(&argc, &argv));
    if (strcmp(argv[1], "stopped-writer") == 0) {
        test_stopped_writer();
    } else {
        node_check(0, "unknown test %s", argv[1]);
    }
    node_ok(ftsvm_finalize());
    return 0;
}

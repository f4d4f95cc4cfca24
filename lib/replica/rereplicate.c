/*
 * Re-replication after a view change (DESIGN.md 5.1 and section 7, "beyond
 * the seed"): every placement row that a failure left with one live home
 * gets a new secondary, so that a later failure is survived like the first.
 *
 * Plan. At the end of the recovery of view V, where hlrc's gate is closed
 * and every survivor has drained (no release, no lock request in flight
 * anywhere), every survivor computes the same plan from the same placement
 * and membership: for each row with one live home h, in row order, the live
 * node other than h that homes the fewest rows (ties: the nearest after h)
 * and has a fresh headroom slot left. Slots are handed out in order and
 * never reused, so a slot a plan gives is zero (never written) and a copy
 * needs to write only what the surviving home holds.
 *
 * Copy. h copies its rows to their new secondaries with one-sided writes,
 * in the background on a thread of its own, while the application runs
 * (the modules' copy functions: hlrc the pages with their applied/pending
 * words, locks the queue records and saved vts), flushes every new
 * secondary once, and then each row gets its s as its secondary: first at
 * s itself (s acks), then everywhere else. The "row done" messages of all
 * of h's rows go out together and h waits once for all the acks, not once
 * a row: each round trip goes through protocol threads that share the
 * cores with the application. (The puts themselves are the larger cost of
 * a large copy. Over shared memory each is a copy into this process's
 * mapping of s's memory, and the first write to each page of that mapping
 * takes a page fault here: bench/put_bw's first loop, a put per page into
 * fresh memory, runs at 1.3-1.7 GB/s here against 9-13 GB/s for its later
 * loops. So a row's blocks are consecutive in both stores (the slot-major
 * layout of placement.c) and hlrc copies a row as a few runs of up to
 * 4 MiB, each mapped in one call (rdma_prefault: MADV_POPULATE_WRITE) and
 * written in one put: 27 MB copied in 11 ms, 3x the copy made of a put per
 * page. Pulling instead, s reading h's memory into its own, takes read
 * faults in its place: put_bw's loop made of gets ran its first loop at
 * 1.6-2.1 GB/s, no better than pushing.)
 *
 * Redundancy is back, and every survivor logs one event, only when every
 * member names every new secondary: a node that has all the rows of the
 * plan done tells every member so (REPLICA_AM_ALL_DONE), and a node logs the
 * event when it has that word for the plan's view from every member,
 * itself included. Logging it sooner (when this node's rows are done) would
 * be wrong: a member still without a row's "row done" may write that row's
 * single home after the next adoption, so recovery's agreement
 * (rows_agree.c) must drop the new secondary, and a failure of the old home
 * right after the event would lose the row.
 *
 * Releases during the copy: a release, or a lock request, that touches a
 * row being copied waits until that row has its new secondary (here, on
 * every node, the row has left the copying state only after s has it). The
 * alternative, letting phase 2 write both the old single home and the new
 * one while the copy runs, would race the copy itself: the copier reads
 * the page at h and writes it to s, phase 2 of a concurrent release writes
 * its runs to s, and nothing orders the two writes at s (two writers, two
 * endpoints), so the copy could land after the runs and undo them; a fix
 * needs a per-page handshake on every release. Waiting costs a release on
 * a copied row at most that row's copy (milliseconds over shared memory: a
 * row is 1/period of the region, and only its written pages are copied) and
 * nothing at all for the other rows, and it keeps the copy's source
 * frozen: h's copy of the row does not change while it is read, so the
 * copy is exactly the row as of the plan, and every release after it
 * writes both homes.
 *
 * A view change during the copy abandons it (at adoption: the waiting
 * releases go on at once with the row's single home, as before
 * re-replication, and drain like any other); the next view's plan starts
 * again with the rows still single. If the failure took the only copy of a
 * row, the row has no home and its next release or fetch ends with the
 * existing error ("both of its homes failed").
 *
 * The release markers need no copy here: a node whose backup failed writes
 * its markers to its next backup during recovery (replica_markers_resave),
 * before the gate opens.
 */
#include "replica_int.h"
#include "common/clock.h"
#include "common/log.h"
#include "ftsvm.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* active-message types of the module (hlrc 1..15, locks 16..31, failure 40..47) */
enum { REPLICA_AM_ROW_DONE = 48, REPLICA_AM_ROW_ACK = 49, REPLICA_AM_ALL_DONE = 50,
       REPLICA_AM_PLANNED = 51 };

typedef struct row_done_msg {
    uint64_t view;
    uint32_t entry;       /* index in the plan */
    uint32_t commit;      /* 0: to the new secondary, before its ack; 1: the row is in force */
    uint64_t bytes;       /* what the copy of the row wrote */
} row_done_msg_t;

_Atomic int      replica_any_copying;
uint16_t        *replica_next_slot;
_Atomic uint8_t *replica_copying_rows;

static struct {
    pthread_mutex_t  lock;
    pthread_cond_t   cond;
    uint64_t         id;          /* the plan in force (PLAN_ID), 0: none */
    int              leaving;     /* the node an eviction plan takes out of every row, -1 */
    replica_copy_t  *plan;
    uint8_t         *done;        /* per plan entry */
    size_t           nplan, ndone, unplaced, lost;
    uint64_t         bytes;
    uint64_t         landed;      /* of bytes: what the copies wrote to this node */
    uint64_t         detected_ns, start_ns;
    uint8_t         *acked;       /* per plan entry: its new secondary acked */
    size_t           nacked;
    uint64_t        *entry_bytes; /* per plan entry: what its copy wrote */
    uint64_t        *all_done;    /* per node: the highest plan it has every row of */
    uint64_t        *planned;     /* per node: the highest eviction plan it has made */
    int              reported;    /* the event of the plan is logged */
    int              stopped;     /* finalize: handlers do nothing any more */
    int              busy;        /* handlers of the module running now */
    pthread_t        thread;
    int              thread_started;
    struct { replica_copy_fn_t copy; replica_rows_fn_t changed; } fns[REPLICA_MAX_COPIERS];
    int              nfns;
} rerep;

int replica_on_copy(replica_copy_fn_t copy, replica_rows_fn_t changed)
{
    if (rerep.nfns >= REPLICA_MAX_COPIERS) {
        ftsvm_error("replica_on_copy: no room for another module");
        return FTSVM_EINVAL;
    }
    rerep.fns[rerep.nfns].copy = copy;
    rerep.fns[rerep.nfns].changed = changed;
    rerep.nfns++;
    return FTSVM_OK;
}

static void rows_changed(const replica_copy_t *copy)
{
    int i;

    for (i = 0; i < rerep.nfns; i++) {
        if (rerep.fns[i].changed != NULL) {
            rerep.fns[i].changed(copy);
        }
    }
}

static void copier_join(void);

/* ---- the plan ---- */

/* A plan's id: the view it was made in, and 0 for the plan of the view
 * change itself or the barrier round of an eviction in that view. Ids rise
 * with both; messages and "all done" words carry them. */
#define PLAN_ID(view, round) (((uint64_t)(view) << 32) | ((uint64_t)(round) & 0xffffffffu))
#define PLAN_VIEW(id)        ((id) >> 32)

/* a home a row keeps: a member, and not the node an eviction takes out */
static int live(int node)
{
    return node >= 0 && !__atomic_load_n(&replica_gone[node], __ATOMIC_ACQUIRE) &&
           failure_member(node) && node != rerep.leaving;
}

/* The new secondary of a row whose one live home is h: the member that
 * homes the fewest rows and has a fresh slot left; -1 if none. */
static int choose_secondary(int h, const size_t *load)
{
    const replica_placement_t *p = &replica_placement;
    int k, node, best = -1;

    for (k = 1; k < p->nodes; k++) {
        node = (h + k) % p->nodes;
        if (!live(node) || replica_next_slot[node] >= p->period_stride) {
            continue;
        }
        if (best < 0 || load[node] < load[best]) {
            best = node;
        }
    }
    return best;
}

/* under rerep.lock */
static void plan_rows(size_t *load)
{
    const replica_placement_t *p = &replica_placement;
    size_t r;
    int w, h, s;

    for (r = 0; r < p->period; r++) {
        replica_row_t row = replica_row_read(p, r);

        for (w = 0; w < 2; w++) {
            load[row.home[w] >= 0 ? row.home[w] : 0] += live(row.home[w]);
        }
    }
    for (r = 0; r < p->period; r++) {
        replica_row_t row = replica_row_read(p, r);
        int l0 = live(row.home[0]), l1 = live(row.home[1]);
        replica_copy_t *c;

        if (l0 == l1) {
            rerep.lost += !l0;   /* none left: replica.c said so at adoption */
            continue;
        }
        w = l0 ? 0 : 1;
        h = row.home[w];
        s = choose_secondary(h, load);
        if (s < 0) {
            rerep.unplaced++;
            continue;
        }
        c = &rerep.plan[rerep.nplan++];
        c->row       = (uint32_t)r;
        c->from      = (int16_t)h;
        c->to        = (int16_t)s;
        c->from_slot = row.slot[w];
        c->to_slot   = replica_next_slot[s]++;
        load[s]++;
    }
}

/* Make plan `id` (every member makes the same one from the same placement
 * and membership) and put its rows in the copying state. */
static int plan_make(uint64_t id, uint64_t detected_ns)
{
    const replica_placement_t *p = &replica_placement;
    size_t *load, i;

    load = calloc((size_t)p->nodes, sizeof(size_t));
    if (load == NULL) {
        return FTSVM_ENOMEM;
    }
    copier_join();   /* an abandoned copy has seen the view change: it reads no plan */
    pthread_mutex_lock(&rerep.lock);
    rerep.nplan = rerep.ndone = rerep.unplaced = rerep.lost = 0;
    rerep.bytes = rerep.landed = 0;
    rerep.nacked = 0;
    memset(rerep.acked, 0, p->period);
    rerep.reported = 0;
    memset(rerep.done, 0, p->period);
    plan_rows(load);
    for (i = 0; i < rerep.nplan; i++) {
        atomic_store(&replica_copying_rows[rerep.plan[i].row], 1);
    }
    rerep.id = id;
    rerep.detected_ns = detected_ns;
    atomic_store(&replica_any_copying, rerep.nplan > 0);
    pthread_mutex_unlock(&rerep.lock);
    free(load);
    return FTSVM_OK;
}

int replica_rereplicate_plan(const failure_change_t *change)
{
    const replica_placement_t *p = &replica_placement;
    int status;

    if (p->replicas < 2 || failure_members() < 2) {
        return FTSVM_OK;
    }
    rerep.leaving = -1;
    status = plan_make(PLAN_ID(change->view, 0), change->detected_ns);
    if (status != FTSVM_OK) {
        return status;
    }
    if (rerep.unplaced > 0) {
        ftsvm_error("view %llu: %zu placement rows keep one copy: no live node has a free "
                    "slot for a second (FTSVM_HOME_HEADROOM); a failure of their home loses "
                    "them", (unsigned long long)change->view, rerep.unplaced);
    }
    ftsvm_debug("view %llu: %zu placement rows get a new secondary", (unsigned long long)
                change->view, rerep.nplan);
    return FTSVM_OK;
}

/* ---- the end of a row's copy, on every node ---- */

/* under rerep.lock: redundancy is back when every row of the plan is */
static void report_redundancy(void)
{
    const replica_placement_t *p = &replica_placement;
    uint64_t now = clock_now_ns(), since = rerep.detected_ns ? rerep.detected_ns
                                                             : rerep.start_ns;
    size_t r, homes = 0;
    char line[640];
    ssize_t ignored;

    for (r = 0; r < p->period; r++) {   /* the rows this node homes now */
        replica_row_t row = replica_row_read(p, r);

        homes += (row.home[0] == replica.node && live(row.home[0])) +
                 (row.home[1] == replica.node && live(row.home[1]));
    }
    /* homes= and landed= say where the copies went: the rows of the period
     * this node homes now, and the bytes the copies wrote here */
    if (rerep.leaving >= 0) {
        snprintf(line, sizeof(line),
                 "ftsvm: node %d: node %d handed its homes over: %zu placement rows copied to "
                 "new homes, %llu bytes in %.1f ms [ftsvm-event handover node=%d rows=%zu "
                 "bytes=%llu ms=%.1f homes=%zu landed=%llu]\n", replica.node, rerep.leaving,
                 rerep.nplan, (unsigned long long)rerep.bytes, (double)(now - since) / 1e6,
                 rerep.leaving, rerep.nplan, (unsigned long long)rerep.bytes,
                 (double)(now - since) / 1e6, homes, (unsigned long long)rerep.landed);
        ignored = write(STDERR_FILENO, line, strlen(line));
        (void)ignored;
        return;
    }
    snprintf(line, sizeof(line),
             "ftsvm: node %d: view %llu: redundancy restored: %zu placement rows copied to new "
             "homes, %llu bytes in %.1f ms, %.1f ms after the news [ftsvm-event redundancy "
             "view=%llu rows=%zu bytes=%llu ms=%.1f homes=%zu landed=%llu]\n", replica.node,
             (unsigned long long)PLAN_VIEW(rerep.id), rerep.nplan,
             (unsigned long long)rerep.bytes,
             (double)(now - (rerep.start_ns ? rerep.start_ns : since)) / 1e6,
             (double)(now - since) / 1e6, (unsigned long long)PLAN_VIEW(rerep.id), rerep.nplan,
             (unsigned long long)rerep.bytes, (double)(now - since) / 1e6, homes,
             (unsigned long long)rerep.landed);
    ignored = write(STDERR_FILENO, line, strlen(line));
    (void)ignored;
}

/* The row of plan entry `e` names its new secondary; under rerep.lock. */
static void row_place_locked(size_t e)
{
    const replica_copy_t *c = &rerep.plan[e];
    replica_row_t row;

    row.home[0] = c->from;
    row.slot[0] = c->from_slot;
    row.home[1] = c->to;
    row.slot[1] = c->to_slot;
    __atomic_store(&replica_placement.rows[c->row], &row, __ATOMIC_RELEASE);
}

static void row_done_locked(size_t e, uint64_t bytes)
{
    const replica_copy_t *c = &rerep.plan[e];

    row_place_locked(e);
    atomic_store(&replica_copying_rows[c->row], 0);
    rerep.done[e] = 1;
    rerep.ndone++;
    rerep.bytes += bytes;
    rerep.landed += (c->to == replica.node) ? bytes : 0;
    pthread_cond_broadcast(&rerep.cond);
}

/* Entry e of the plan of `view` is done here; 1 when that made redundancy
 * whole again (the caller then passes the fault point of the tests, after
 * it has said what it must). A plan abandoned meanwhile changes nothing. */
static void redundancy_fault_point(int all)
{
    if (all && replica_fault_armed(REPLICA_FAULT_REDUNDANCY)) {
        replica_fault_point(REPLICA_FAULT_REDUNDANCY);
    }
}

/* under rerep.lock: 1 when the event of the plan in force is due here now
 * (every member has every row of it; the plan restores every row). */
static int redundancy_due_locked(void)
{
    int node;

    if (rerep.id == 0 || rerep.reported || rerep.ndone != rerep.nplan ||
        rerep.nplan == 0 || rerep.unplaced != 0 || rerep.lost != 0) {
        return 0;
    }
    for (node = 0; node < replica.nodes; node++) {
        if (failure_member(node) && rerep.all_done[node] < rerep.id) {
            return 0;
        }
    }
    rerep.reported = 1;
    report_redundancy();
    return 1;
}

/* A handler runs only while the module stands: finalize takes the module
 * down (replica_stop_copies) while the progress thread still delivers what
 * was in flight, such as a copier's last "row done". */
static int handler_enter(void)
{
    int ok;

    pthread_mutex_lock(&rerep.lock);
    ok = !rerep.stopped;
    rerep.busy += ok;
    pthread_mutex_unlock(&rerep.lock);
    return ok;
}

static void handler_leave(void)
{
    pthread_mutex_lock(&rerep.lock);
    if (--rerep.busy == 0) {
        pthread_cond_broadcast(&rerep.cond);
    }
    pthread_mutex_unlock(&rerep.lock);
}

/* This node has every row of the plan of `view`: every member hears it. */
static void tell_all_done(uint64_t view)
{
    int node;

    for (node = 0; node < replica.nodes; node++) {
        if (node != replica.node && failure_member(node)) {
            (void)rdma_am_send(replica.rdma, node, REPLICA_AM_ALL_DONE, &view, sizeof(view));
        }
    }
}

/* Entry e of the plan of `view` is done here. A plan abandoned meanwhile
 * changes nothing. When it was the last row here, every member hears it,
 * and the event may be due (the caller then passes the fault point of the
 * tests, after it has said what it must: it returns 1). */
static int row_done(uint64_t view, size_t e, uint64_t bytes)
{
    replica_copy_t copy;
    int last = 0, now = 0, due = 0;

    pthread_mutex_lock(&rerep.lock);
    if (rerep.id == view && e < rerep.nplan && !rerep.done[e]) {
        now = 1;
        copy = rerep.plan[e];
        row_done_locked(e, bytes);
        if (rerep.ndone == rerep.nplan) {
            atomic_store(&replica_any_copying, 0);
            last = 1;
            if (rerep.all_done[replica.node] < view) {
                rerep.all_done[replica.node] = view;
            }
        }
    }
    pthread_mutex_unlock(&rerep.lock);
    if (now) {
        rows_changed(&copy);
    }
    if (last) {
        tell_all_done(view);
        pthread_mutex_lock(&rerep.lock);
        due = redundancy_due_locked();
        pthread_mutex_unlock(&rerep.lock);
    }
    return due;
}

/* protocol thread: node src has every row of the plan of a view. It may
 * come before this node has made that plan; the view is kept. */
static void on_all_done(void *arg, int src, const void *payload, size_t len)
{
    uint64_t view;
    int due;

    (void)arg;
    (void)len;
    memcpy(&view, payload, sizeof(view));
    if (!handler_enter()) {
        return;
    }
    pthread_mutex_lock(&rerep.lock);
    if (src >= 0 && src < replica.nodes && rerep.all_done[src] < view) {
        rerep.all_done[src] = view;
    }
    due = redundancy_due_locked();
    pthread_mutex_unlock(&rerep.lock);
    redundancy_fault_point(due);
    handler_leave();
}

/* protocol thread: node src has made the eviction plan `id` (it may come
 * before this node has) */
static void on_planned(void *arg, int src, const void *payload, size_t len)
{
    uint64_t id;

    (void)arg;
    (void)len;
    memcpy(&id, payload, sizeof(id));
    pthread_mutex_lock(&rerep.lock);
    if (src >= 0 && src < replica.nodes && rerep.planned[src] < id) {
        rerep.planned[src] = id;
        pthread_cond_broadcast(&rerep.cond);
    }
    pthread_mutex_unlock(&rerep.lock);
}

/* under rerep.lock: every member has made plan `id` (an eviction's: the
 * members make it each in its barrier, not in one recovery step) */
static int all_planned_locked(uint64_t id)
{
    int node;

    for (node = 0; rerep.leaving >= 0 && node < replica.nodes; node++) {
        if (node != replica.node && failure_member(node) && rerep.planned[node] < id) {
            return 0;
        }
    }
    return 1;
}

/* protocol thread: "row of entry e is copied" from its copier. At the new
 * secondary first (commit 0): it takes the row as a home (its lock records)
 * and acks, but its own releases and lock requests on the row still wait;
 * then everywhere (commit 1, the copier having taken the row itself), and
 * the row is in force. In that order a request or a release on the row
 * reaches only homes that know the row: the copier (the row's primary
 * now) must not serve a lock request while it still names the failed node
 * as the secondary that mirrors it. */
static void on_row_done(void *arg, int src, const void *payload, size_t len)
{
    row_done_msg_t msg;
    replica_copy_t copy;
    int valid, all = 0;

    (void)arg;
    (void)len;
    memcpy(&msg, payload, sizeof(msg));
    if (!handler_enter()) {
        return;
    }
    pthread_mutex_lock(&rerep.lock);
    valid = (msg.view == rerep.id && msg.entry < rerep.nplan &&
             rerep.plan[msg.entry].from == src &&
             (msg.commit || rerep.plan[msg.entry].to == replica.node));
    if (valid && !msg.commit) {
        copy = rerep.plan[msg.entry];
        row_place_locked(msg.entry);
    }
    pthread_mutex_unlock(&rerep.lock);
    if (!valid) {
        ftsvm_debug("dropped a row-done of view %llu from node %d",
                    (unsigned long long)PLAN_VIEW(msg.view), src);
        handler_leave();
        return;
    }
    if (!msg.commit) {
        rows_changed(&copy);   /* the records, before the ack lets anyone mirror to us */
        (void)rdma_am_send(replica.rdma, src, REPLICA_AM_ROW_ACK, &msg, sizeof(msg));
    } else {
        all = row_done(msg.view, msg.entry, msg.bytes);
    }
    redundancy_fault_point(all);
    handler_leave();
}

static void on_row_ack(void *arg, int src, const void *payload, size_t len)
{
    row_done_msg_t msg;

    (void)arg;
    (void)len;
    memcpy(&msg, payload, sizeof(msg));
    pthread_mutex_lock(&rerep.lock);
    if (msg.view == rerep.id && msg.entry < rerep.nplan && rerep.plan[msg.entry].to == src &&
        !rerep.acked[msg.entry]) {
        rerep.acked[msg.entry] = 1;
        rerep.nacked++;
        pthread_cond_broadcast(&rerep.cond);
    }
    pthread_mutex_unlock(&rerep.lock);
}

/* ---- the copier ---- */

/* under rerep.lock: 10 ms on rerep.cond (a view change does not signal it:
 * the caller looks again) */
static void wait_a_while(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_nsec += 10000000L;
    if (ts.tv_nsec >= 1000000000L) {
        ts.tv_sec++;
        ts.tv_nsec -= 1000000000L;
    }
    pthread_cond_timedwait(&rerep.cond, &rerep.lock, &ts);
}

static int plan_current(uint64_t view)
{
    return rerep.id == view && failure_view() == PLAN_VIEW(view);
}

/* This node's rows of the plan (`mine` of them) are at their new
 * secondaries: tell each secondary first and wait for all their acks (so
 * that nobody sends one a write or a lock mirror of a row before it knows
 * the row), then every other member and this node. */
static int announce_rows(uint64_t view, size_t mine)
{
    size_t e;
    int node, status = FTSVM_OK, due = 0;

    /* nobody hears of a row before it has the plan (an eviction's plan is
     * made in each member's barrier, at its own moment) */
    pthread_mutex_lock(&rerep.lock);
    while (!all_planned_locked(view) && plan_current(view)) {
        wait_a_while();
    }
    status = plan_current(view) ? FTSVM_OK : FTSVM_EPEER;
    pthread_mutex_unlock(&rerep.lock);
    for (e = 0; e < rerep.nplan && status == FTSVM_OK; e++) {
        const replica_copy_t *c = &rerep.plan[e];
        row_done_msg_t msg = { view, (uint32_t)e, 0, rerep.entry_bytes[e] };

        if (c->from == replica.node) {   /* commit 0: prepare */
            status = rdma_am_send(replica.rdma, c->to, REPLICA_AM_ROW_DONE, &msg, sizeof(msg));
        }
    }
    pthread_mutex_lock(&rerep.lock);
    while (status == FTSVM_OK && rerep.nacked < mine && plan_current(view)) {
        wait_a_while();
    }
    status = (status == FTSVM_OK && !plan_current(view)) ? FTSVM_EPEER : status;
    pthread_mutex_unlock(&rerep.lock);
    if (status != FTSVM_OK) {
        return status;
    }
    /* the copier takes its rows first: it is their primary, and serves
     * what the others send once they have the rows */
    for (e = 0; e < rerep.nplan; e++) {
        if (rerep.plan[e].from == replica.node) {
            due |= row_done(view, e, rerep.entry_bytes[e]);
        }
    }
    for (e = 0; e < rerep.nplan; e++) {
        const replica_copy_t *c = &rerep.plan[e];
        row_done_msg_t msg = { view, (uint32_t)e, 1, rerep.entry_bytes[e] };

        if (c->from != replica.node) {
            continue;
        }
        for (node = 0; node < replica.nodes; node++) {
            if (node != replica.node && failure_member(node)) {
                (void)rdma_am_send(replica.rdma, node, REPLICA_AM_ROW_DONE, &msg, sizeof(msg));
            }
        }
    }
    redundancy_fault_point(due);
    return FTSVM_OK;
}

/* this thread's time on a cpu, for the copy's debug line */
static uint64_t thread_cpu_ns(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static void *copier_main(void *arg)
{
    uint64_t view = (uint64_t)(uintptr_t)arg;
    uint8_t *targets = calloc((size_t)replica.nodes, 1);
    uint64_t t0 = clock_now_ns(), t1, t2, copied = 0, cpu0 = thread_cpu_ns(), cpu1;
    size_t e, mine = 0;
    int i, node, status = (targets != NULL) ? FTSVM_OK : FTSVM_ENOMEM;

    for (e = 0; e < rerep.nplan && status == FTSVM_OK; e++) {
        const replica_copy_t *c = &rerep.plan[e];

        if (c->from != replica.node) {
            continue;
        }
        if (!plan_current(view)) {
            status = FTSVM_EPEER;
            break;
        }
        rerep.entry_bytes[e] = 0;
        for (i = 0; i < rerep.nfns && status == FTSVM_OK; i++) {
            status = rerep.fns[i].copy(c, &rerep.entry_bytes[e]);
        }
        replica_fault_point(REPLICA_FAULT_COPY);
        targets[c->to] = 1;
        copied += rerep.entry_bytes[e];
        mine++;
    }
    t1 = clock_now_ns();
    cpu1 = thread_cpu_ns();
    /* every row is whole at its new secondary before any node names it */
    for (node = 0; node < replica.nodes && status == FTSVM_OK; node++) {
        if (targets[node]) {
            status = rdma_flush(replica.rdma, node);
        }
    }
    t2 = clock_now_ns();
    if (status == FTSVM_OK && mine > 0) {
        status = announce_rows(view, mine);
    }
    ftsvm_debug("view %llu: copied %zu rows, %llu bytes: puts %.2f ms (on the cpu %.2f ms), "
                "flush %.2f ms, announced after %.2f ms", (unsigned long long)PLAN_VIEW(view),
                mine, (unsigned long long)copied, (double)(t1 - t0) / 1e6,
                (double)(cpu1 - cpu0) / 1e6, (double)(t2 - t1) / 1e6,
                (double)(clock_now_ns() - t2) / 1e6);
    free(targets);
    if (status != FTSVM_OK && status != FTSVM_EPEER) {
        ftsvm_error("view %llu: copying placement rows to their new homes failed: %s",
                    (unsigned long long)PLAN_VIEW(view), ftsvm_strerror(status));
    } else if (status == FTSVM_EPEER) {
        ftsvm_info("view %llu: a view change stopped the copy to new homes; the next view "
                   "plans it again", (unsigned long long)PLAN_VIEW(view));
    }
    return NULL;
}

static void copier_join(void)
{
    if (rerep.thread_started) {
        pthread_join(rerep.thread, NULL);
        rerep.thread_started = 0;
    }
}

/* The copy of this node's rows of plan `id` begins. */
static int copier_start(uint64_t id)
{
    copier_join();
    pthread_mutex_lock(&rerep.lock);
    if (rerep.id != id || rerep.nplan == 0) {
        pthread_mutex_unlock(&rerep.lock);
        return FTSVM_OK;
    }
    rerep.start_ns = clock_now_ns();
    pthread_mutex_unlock(&rerep.lock);
    if (pthread_create(&rerep.thread, NULL, copier_main, (void *)(uintptr_t)id) != 0) {
        ftsvm_error("cannot start the thread that copies rows to their new homes");
        return FTSVM_ESYS;
    }
    pthread_setname_np(rerep.thread, "ftsvm-copy");   /* for top -H and perf */
    rerep.thread_started = 1;
    return FTSVM_OK;
}

/* Recovery step, after the locks' rebuild (their records are final). */
static int copy_start(void *arg, const failure_change_t *change)
{
    (void)arg;
    return copier_start(PLAN_ID(change->view, 0));
}

/* ---- eviction: a node hands its rows over before it leaves ----
 *
 * At the barrier round where node L says it leaves (hlrc's barrier), every
 * member, before it returns from that barrier, makes the same plan as
 * after a failure of L, with L still a member: every row L homes gets a new
 * home in its place (L does not count as a home the row keeps), the row's
 * other home copies it there, and the row leaves L only with its commit.
 * The conditions of a plan made in recovery hold there too: every release
 * and lock request issued before the barrier is complete (each node
 * released before it wrote its barrier slot, and every thread is in the
 * barrier), and a node issues nothing after it before it has made the
 * plan, so a release or lock request on a planned row waits for its copy
 * as during re-replication. L's copy of the rows stays untouched, and it
 * still serves as a home until the commit, so no row has one copy at any
 * time. Once every member names every new home (the event), L leaves by a
 * view change that removes it, in which no row names it any more. */

int replica_evict_plan(int leaving, uint64_t round)
{
    const replica_placement_t *p = &replica_placement;
    uint16_t *slots;
    uint64_t id = PLAN_ID(failure_view(), round);
    int node, status;

    if (p->replicas < 2) {
        return FTSVM_OK;   /* one home: nothing to hand over but the view change */
    }
    slots = malloc((size_t)p->nodes * sizeof(uint16_t));
    if (slots == NULL) {
        return FTSVM_ENOMEM;
    }
    memcpy(slots, replica_next_slot, (size_t)p->nodes * sizeof(uint16_t));
    rerep.leaving = leaving;
    status = plan_make(id, clock_now_ns());
    if (status == FTSVM_OK && (rerep.unplaced > 0 || rerep.lost > 0)) {
        /* every member finds the same: nobody copies, L stays */
        pthread_mutex_lock(&rerep.lock);
        ftsvm_error("node %d cannot leave: %zu placement rows would keep one copy (no member "
                    "has a free slot for them, FTSVM_HOME_HEADROOM)", leaving,
                    rerep.unplaced + rerep.lost);
        while (rerep.nplan > 0) {
            atomic_store(&replica_copying_rows[rerep.plan[--rerep.nplan].row], 0);
        }
        atomic_store(&replica_any_copying, 0);
        rerep.id = 0;
        rerep.leaving = -1;
        memcpy(replica_next_slot, slots, (size_t)p->nodes * sizeof(uint16_t));
        pthread_cond_broadcast(&rerep.cond);
        pthread_mutex_unlock(&rerep.lock);
        status = FTSVM_ENOMEM;
    }
    free(slots);
    if (status != FTSVM_OK) {
        return status;
    }
    for (node = 0; node < replica.nodes; node++) {
        if (node != replica.node && failure_member(node)) {
            (void)rdma_am_send(replica.rdma, node, REPLICA_AM_PLANNED, &id, sizeof(id));
        }
    }
    return copier_start(id);
}

int replica_evict_wait(void)
{
    uint64_t id;
    int status;

    pthread_mutex_lock(&rerep.lock);
    id = rerep.id;
    while (rerep.leaving >= 0 && rerep.id == id && rerep.nplan > 0 && !rerep.reported &&
           PLAN_VIEW(id) == failure_view()) {
        wait_a_while();
    }
    /* EPEER: a view change abandoned it */
    status = (rerep.id == id && (rerep.nplan == 0 || rerep.reported)) ? FTSVM_OK : FTSVM_EPEER;
    pthread_mutex_unlock(&rerep.lock);
    return status;
}

int replica_evict_ready(void)
{
    int ready;

    pthread_mutex_lock(&rerep.lock);
    ready = !atomic_load(&replica_any_copying) && rerep.leaving < 0 &&
            (rerep.id == 0 || rerep.nplan == 0 || rerep.reported);
    pthread_mutex_unlock(&rerep.lock);
    return ready;
}

/* Adoption of a new view: a copy under way is abandoned, and what waits for
 * it goes on with the rows as they are (a row not yet copied has one home). */
void replica_rereplicate_abandon(void)
{
    size_t r;
    int was;

    pthread_mutex_lock(&rerep.lock);
    was = atomic_load(&replica_any_copying);
    for (r = 0; r < replica_placement.period; r++) {
        atomic_store(&replica_copying_rows[r], 0);
    }
    atomic_store(&replica_any_copying, 0);
    rerep.id = 0;
    rerep.leaving = -1;
    pthread_cond_broadcast(&rerep.cond);
    pthread_mutex_unlock(&rerep.lock);
    if (was) {
        rows_changed(NULL);
    }
}

void replica_copy_wait(size_t block)
{
    size_t r = block % replica_placement.period;

    pthread_mutex_lock(&rerep.lock);
    while (atomic_load(&replica_copying_rows[r])) {
        pthread_cond_wait(&rerep.cond, &rerep.lock);
    }
    pthread_mutex_unlock(&rerep.lock);
}

int replica_copy_target(size_t block)
{
    size_t r = block % replica_placement.period, e;
    int to = -1;

    pthread_mutex_lock(&rerep.lock);
    if (rerep.id != 0 && replica_copying_rows != NULL && atomic_load(&replica_copying_rows[r])) {
        for (e = 0; e < rerep.nplan && to < 0; e++) {
            if (rerep.plan[e].row == r) {
                to = rerep.plan[e].to;
            }
        }
    }
    pthread_mutex_unlock(&rerep.lock);
    return to;
}

int replica_copies_wait(uint64_t timeout_ns)
{
    uint64_t deadline = clock_now_ns() + timeout_ns;
    int status = FTSVM_OK;

    pthread_mutex_lock(&rerep.lock);
    while (rerep.id != 0 && rerep.nplan > 0 && !rerep.reported && rerep.unplaced == 0 &&
           rerep.lost == 0 && PLAN_VIEW(rerep.id) == failure_view()) {
        if (clock_now_ns() >= deadline) {
            status = FTSVM_ETIMEDOUT;
            break;
        }
        wait_a_while();
    }
    pthread_mutex_unlock(&rerep.lock);
    return status;
}

int replica_rereplicate_init(void)
{
    const replica_placement_t *p = &replica_placement;
    int node, status;

    pthread_mutex_init(&rerep.lock, NULL);
    rerep.stopped = 0;
    rerep.busy = 0;
    rerep.leaving = -1;
    pthread_cond_init(&rerep.cond, NULL);
    rerep.plan = calloc(p->period, sizeof(*rerep.plan));
    rerep.done = calloc(p->period, 1);
    replica_next_slot = calloc((size_t)p->nodes, sizeof(uint16_t));
    replica_copying_rows = calloc(p->period, 1);
    rerep.all_done = calloc((size_t)p->nodes, sizeof(uint64_t));
    rerep.planned = calloc((size_t)p->nodes, sizeof(uint64_t));
    rerep.acked = calloc(p->period, 1);
    rerep.entry_bytes = calloc(p->period, sizeof(uint64_t));
    if (rerep.plan == NULL || rerep.done == NULL || replica_next_slot == NULL ||
        replica_copying_rows == NULL || rerep.all_done == NULL || rerep.planned == NULL ||
        rerep.acked == NULL ||
        rerep.entry_bytes == NULL) {
        ftsvm_error("cannot allocate the re-replication tables");
        return FTSVM_ENOMEM;
    }
    for (node = 0; node < p->nodes; node++) {   /* a spare's store is all fresh */
        replica_next_slot[node] = (uint16_t)(node < p->app_nodes ? p->period_slots : 0);
    }
    status = rdma_am_register(replica.rdma, REPLICA_AM_ROW_DONE, sizeof(row_done_msg_t),
                              sizeof(row_done_msg_t), on_row_done, NULL);
    if (status == FTSVM_OK) {
        status = rdma_am_register(replica.rdma, REPLICA_AM_ROW_ACK, sizeof(row_done_msg_t),
                                  sizeof(row_done_msg_t), on_row_ack, NULL);
    }
    if (status == FTSVM_OK) {
        status = rdma_am_register(replica.rdma, REPLICA_AM_ALL_DONE, sizeof(uint64_t),
                                  sizeof(uint64_t), on_all_done, NULL);
    }
    if (status == FTSVM_OK) {
        status = rdma_am_register(replica.rdma, REPLICA_AM_PLANNED, sizeof(uint64_t),
                                  sizeof(uint64_t), on_planned, NULL);
    }
    if (status == FTSVM_OK) {
        status = failure_on_recovery(30, copy_start, NULL);
    }
    return status;
}

void replica_stop_copies(void)
{
    pthread_mutex_lock(&rerep.lock);
    rerep.id = 0;
    rerep.stopped = 1;
    pthread_cond_broadcast(&rerep.cond);
    while (rerep.busy > 0) {
        pthread_cond_wait(&rerep.cond, &rerep.lock);
    }
    pthread_mutex_unlock(&rerep.lock);
    copier_join();
}

void replica_rereplicate_fini(void)
{
    replica_stop_copies();
    free(rerep.plan);
    free(rerep.done);
    free(rerep.all_done);
    free(rerep.planned);
    free(rerep.acked);
    free(rerep.entry_bytes);
    rerep.all_done = NULL;
    rerep.acked = NULL;
    rerep.entry_bytes = NULL;
    free(replica_next_slot);
    free((void *)replica_copying_rows);
    replica_copying_rows = NULL;
    atomic_store(&replica_any_copying, 0);
    memset(rerep.fns, 0, sizeof(rerep.fns));
    rerep.nfns = 0;
    rerep.plan = NULL;
    rerep.done = NULL;
    replica_next_slot = NULL;
    rerep.nplan = rerep.ndone = 0;
}

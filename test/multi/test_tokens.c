/*
 * Guarantees 2 and 3 of DESIGN.md section 1, checked directly: token_node's
 * threads write one unique token per interval into pages homed on every
 * node pair, and a node SIGKILLs itself at a named point (FTSVM_FAULT) on 3
 * and 4 nodes. The survivors read every live home copy of every token page
 * (token_node): the two homes of a page must agree word for word, and they
 * report for each thread t the highest and lowest interval HI and LO of t
 * on the pages. For each thread of the failed node F:
 *
 *   last "released" <= LO         every completed release is at the homes
 *   HI <= last "calling", or      nothing written after F's last release
 *   HI is one more and a release  is anywhere
 *     of F overlapped its writing
 *   HI > LO only if a release of  a release is all there or not at all
 *     F overlapped the writing
 *     of HI
 *
 * An interval belongs to the node (DESIGN.md section 4): a sibling's release
 * or barrier publishes whatever t had written by then, so t's token can be
 * out before t's own release, on some pages. "Overlapped" means a release or
 * barrier of another thread of F that had not returned when t logged
 * "writing t HI" (its lines and t's are in the order F wrote them). The live
 * threads must show every interval.
 */
#include "run_util.h"

#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define PAGES       "12"
#define MAX_THREADS 16
#define MAX_EVENTS  65536

typedef enum { EV_WRITING, EV_CALLING, EV_RELEASED, EV_BARRIER, EV_PASSED, EV_SEEN } ev_kind_t;

typedef struct token_event {
    ev_kind_t kind;
    int       thread;
    long      k;
} token_event_t;

/* the "tok WHAT T K" lines in order; a node's lines keep its order */
typedef struct token_log {
    token_event_t ev[MAX_EVENTS];
    int           n;
    long          calling[MAX_THREADS], released[MAX_THREADS];
    long          hi[MAX_THREADS], lo[MAX_THREADS];
} token_log_t;

static void token_parse(const char *output, token_log_t *log)
{
    static const char *const names[] = { "writing", "calling", "released", "barrier",
                                         "passed", "seen" };
    const char *at = output;
    char what[16];
    int thread, kind;
    long k, lo;

    log->n = 0;
    for (thread = 0; thread < MAX_THREADS; thread++) {
        log->calling[thread] = log->released[thread] = 0;
        log->hi[thread] = log->lo[thread] = -1;
    }
    while ((at = strstr(at, "tok ")) != NULL) {
        lo = -1;
        if (sscanf(at, "tok %15s %d %ld %ld", what, &thread, &k, &lo) >= 3 && thread >= 0 &&
            thread < MAX_THREADS) {
            for (kind = 0; kind <= EV_SEEN && strcmp(what, names[kind]) != 0; kind++) {
            }
            if (kind == EV_SEEN) {
                log->hi[thread] = k;
                log->lo[thread] = lo;
            } else if (kind < EV_SEEN) {
                cr_assert(log->n < MAX_EVENTS, "more than %d tok lines", MAX_EVENTS);
                log->ev[log->n++] = (token_event_t){ (ev_kind_t)kind, thread, k };
                if (kind == EV_CALLING && k > log->calling[thread]) {
                    log->calling[thread] = k;
                } else if (kind == EV_RELEASED && k > log->released[thread]) {
                    log->released[thread] = k;
                }
            }
        }
        at += 4;
    }
}

/* did a release or barrier of a sibling of t (same node) overlap t's
 * writing of interval k: not returned when "writing t k" was logged? */
static int sibling_overlapped(const token_log_t *log, int per_node, int t, long k)
{
    int w, i, s;

    for (w = 0; w < log->n; w++) {
        if (log->ev[w].kind == EV_WRITING && log->ev[w].thread == t && log->ev[w].k == k) {
            break;
        }
    }
    if (w == log->n) {
        return 0;
    }
    for (s = (t / per_node) * per_node; s < (t / per_node + 1) * per_node; s++) {
        long call = -1;
        int open = 0;

        if (s == t) {
            continue;
        }
        /* s's window open at w, or one opened after it */
        for (i = 0; i < log->n; i++) {
            const token_event_t *e = &log->ev[i];

            if (e->thread != s) {
                continue;
            }
            if (e->kind == EV_CALLING || e->kind == EV_BARRIER) {
                if (i > w) {
                    return 1;
                }
                call = e->k;
                open = 1;
            } else if ((e->kind == EV_RELEASED || e->kind == EV_PASSED) && e->k == call) {
                if (i > w) {
                    return 1;   /* it returned after the writing began */
                }
                open = 0;
            }
        }
        if (open) {
            return 1;   /* never returned: F died in it */
        }
    }
    return 0;
}

/* token_node on `nodes` nodes x `threads` threads, `pages` token pages,
 * `mode` its third argument (NULL, "private" or "fill"), a shared region of
 * `shared` */
static void tokens_run(const char *nodes, const char *threads_per_node, const char *fault,
                       const char *intervals, const char *pages, const char *mode,
                       const char *shared)
{
    static token_log_t log;
    char env_fault[96], env_shared[64];
    char *const env[] = { env_shared, env_fault, NULL };
    char *const argv[] = { FTSVM_RUN, "-n", (char *)nodes, "--threads",
                           (char *)threads_per_node, "--timeout",
                           "100", NODE_DIR "/token_node", (char *)intervals, (char *)pages,
                           (char *)mode, NULL };
    int per_node = atoi(threads_per_node), threads = per_node * atoi(nodes), t;
    int failed_threads = 0;

    snprintf(env_fault, sizeof(env_fault), "FTSVM_FAULT=%s", fault);
    snprintf(env_shared, sizeof(env_shared), "FTSVM_SHARED_SIZE=%s", shared);
    run_result_t r = run_cmd(argv, env, 110);
    run_expect_survived(r, nodes, fault);
    token_parse(r.output, &log);
    for (t = 0; t < threads; t++) {
        long hi = log.hi[t], lo = log.lo[t];

        cr_assert(hi >= 0 && lo >= 0, "%s nodes, %s: no survivor reported thread %d\n%s",
                  nodes, fault, t, r.output);
        cr_assert(log.released[t] <= lo,
                  "%s nodes, %s: thread %d's release %ld returned, a home holds %ld\n%s",
                  nodes, fault, t, log.released[t], lo, r.output);
        cr_assert(hi <= log.calling[t] ||
                      (hi == log.calling[t] + 1 && sibling_overlapped(&log, per_node, t, hi)),
                  "%s nodes, %s: the homes hold interval %ld of thread %d, whose last "
                  "release called was %ld, and no release of its node overlapped its "
                  "writing\n%s",
                  nodes, fault, hi, t, log.calling[t], r.output);
        cr_assert(hi == lo || sibling_overlapped(&log, per_node, t, hi),
                  "%s nodes, %s: thread %d's interval %ld is on some pages only (%ld on "
                  "others), and no release of its node overlapped its writing\n%s",
                  nodes, fault, t, hi, lo, r.output);
        failed_threads += (log.released[t] < atol(intervals));
    }
    /* the fault did fire: some thread never finished */
    cr_assert(failed_threads > 0, "%s nodes, %s: no node failed\n%s", nodes, fault,
              r.output);
}


#ifndef TOKENS_LARGE
static void tokens_hold(const char *nodes, const char *fault, const char *intervals,
                        const char *locks)
{
    tokens_run(nodes, "2", fault, intervals, PAGES, locks, "16M");
}

/* 48 intervals per thread; the backup's point is seen by heartbeats
 * (every 20 ms), so that run is longer */
#define TOKEN_TEST_OF(_name, _fault, _intervals, _locks)            \
    Test(tokens, _name##_on_3_nodes, .timeout = 120) {              \
        tokens_hold("3", _fault, _intervals, _locks);               \
    }                                                               \
    Test(tokens, _name##_on_4_nodes, .timeout = 120) {              \
        tokens_hold("4", _fault, _intervals, _locks);               \
    }
#define TOKEN_TEST(_name, _fault) TOKEN_TEST_OF(_name, _fault, "48", NULL)

/* the propagation points of a release */
TOKEN_TEST(killed_before_phase1, "before-phase1:5@1")
TOKEN_TEST(killed_with_phase1_pending, "phase1-pending:5@1")
TOKEN_TEST(killed_mid_phase1_diffs, "phase1-diffs:6@1#9")
TOKEN_TEST(killed_after_next_release, "next-release:5@1")
TOKEN_TEST(killed_mid_phase2_diffs, "phase2-diffs:6@1#9")
TOKEN_TEST(killed_after_last_release, "last-release:5@1")
/* locks, a lock's home, the markers' backup, barriers, fetches */
TOKEN_TEST(killed_holding_a_lock, "lock-held:5@1")
TOKEN_TEST(killed_waiting_for_a_lock, "lock-wait:5@1")
TOKEN_TEST(killed_as_the_lock_primary_home, "lock-home:5@0")
TOKEN_TEST_OF(killed_holding_markers, "backup:2@1", "800", NULL)
TOKEN_TEST(killed_in_a_barrier, "barrier:2@2")
TOKEN_TEST(killed_mid_fetch, "fetch:20@2")
/*
 * Each thread its own lock: the survivors hear of the failed node's
 * intervals only at barriers, and read its page (cached since the last
 * barrier) after it died a few releases later. Recovery must make them
 * acquire every release of it that completed: no vt that names them ever
 * left the failed node (token_node checks the survivor's view against the
 * homes).
 */
TOKEN_TEST_OF(survivors_read_the_completed_releases_after_phase1, "next-release:22@1", "48",
              "private")
TOKEN_TEST_OF(survivors_read_the_completed_releases_after_phase2, "last-release:22@1", "48",
              "private")
TOKEN_TEST_OF(survivors_read_the_completed_releases_of_a_holder, "lock-held:20@1", "48",
              "private")

#endif

/*
 * Intervals of megabytes: every thread fills its band of each of 1024 pages
 * (4 MiB) or 8192 pages (32 MiB) in each interval, so that a node's
 * interval writes hundreds of pages it is itself a home of; killed in the
 * middle of phase 1 (the other homes of those pages hold part of the
 * interval and their undo) and after nextRelease (the interval is whole).
 * One thread per node, so that no sibling's release can publish a token
 * early: an interval is then at the homes on all of its pages or on none.
 */
#ifdef TOKENS_LARGE
#define TOKEN_TEST_LARGE(_name, _fault, _intervals, _pages, _shared, _timeout)        \
    Test(tokens, _name##_on_3_nodes, .timeout = _timeout) {                          \
        tokens_run("3", "1", _fault, _intervals, _pages, "fill", _shared);           \
    }                                                                                 \
    Test(tokens, _name##_on_4_nodes, .timeout = _timeout) {                          \
        tokens_run("4", "1", _fault, _intervals, _pages, "fill", _shared);           \
    }

TOKEN_TEST_LARGE(killed_mid_phase1_diffs_in_4_MiB_intervals, "phase1-diffs:400@1#7", "12",
                 "1024", "32M", 120)
TOKEN_TEST_LARGE(killed_after_next_release_in_4_MiB_intervals, "next-release:7@1", "12",
                 "1024", "32M", 120)
TOKEN_TEST_LARGE(killed_mid_phase1_diffs_in_32_MiB_intervals, "phase1-diffs:3000@1#5", "8",
                 "8192", "128M", 240)
TOKEN_TEST_LARGE(killed_after_next_release_in_32_MiB_intervals, "next-release:5@1", "8",
                 "8192", "128M", 240)
#endif

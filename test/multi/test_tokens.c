/*
 * Guarantees 2 and 3 of DESIGN.md section 1, checked directly: token_node's
 * threads write one unique token per interval into pages homed on every
 * node pair, and a node SIGKILLs itself at a named point (FTSVM_FAULT) on 3
 * and 4 nodes. The survivors read every live home copy of every token page
 * (token_node). For each thread of the failed node the interval M they all
 * hold must satisfy
 *
 *   last "released" <= M          every completed release is at the homes
 *   M <= last "calling"           nothing written after the last release
 *                                 that was called is anywhere
 *
 * and token_node has already failed if any two copies disagree (a release
 * only partly there). The live threads must show every interval.
 */
#include "run_util.h"

#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define PAGES       "12"
#define MAX_THREADS 16

typedef struct token_log {
    long calling[MAX_THREADS], released[MAX_THREADS], seen[MAX_THREADS];
} token_log_t;

/* the largest K of the "tok WHAT T K" lines (seen: the one reported) */
static void token_parse(const char *output, token_log_t *log)
{
    const char *at = output;
    char what[16];
    int thread;
    long k;

    for (thread = 0; thread < MAX_THREADS; thread++) {
        log->calling[thread] = log->released[thread] = 0;
        log->seen[thread] = -1;
    }
    while ((at = strstr(at, "tok ")) != NULL) {
        if (sscanf(at, "tok %15s %d %ld", what, &thread, &k) == 3 && thread >= 0 &&
            thread < MAX_THREADS) {
            if (strcmp(what, "calling") == 0 && k > log->calling[thread]) {
                log->calling[thread] = k;
            } else if (strcmp(what, "released") == 0 && k > log->released[thread]) {
                log->released[thread] = k;
            } else if (strcmp(what, "seen") == 0) {
                log->seen[thread] = k;
            }
        }
        at += 4;
    }
}

static void tokens_hold(const char *nodes, const char *fault, const char *intervals)
{
    char env_fault[96];
    char *const env[] = { "FTSVM_SHARED_SIZE=16M", env_fault, NULL };
    char *const argv[] = { FTSVM_RUN, "-n", (char *)nodes, "--threads", "2", "--timeout",
                           "100", NODE_DIR "/token_node", (char *)intervals, PAGES, NULL };
    int threads = 2 * atoi(nodes), t, failed_threads = 0;
    token_log_t log;

    snprintf(env_fault, sizeof(env_fault), "FTSVM_FAULT=%s", fault);
    run_result_t r = run_cmd(argv, env, 110);
    run_expect_survived(r, nodes, fault);
    token_parse(r.output, &log);
    for (t = 0; t < threads; t++) {
        cr_assert(log.seen[t] >= 0, "%s nodes, %s: no survivor reported thread %d\n%s",
                  nodes, fault, t, r.output);
        cr_assert(log.released[t] <= log.seen[t],
                  "%s nodes, %s: thread %d's release %ld returned, the homes hold %ld\n%s",
                  nodes, fault, t, log.released[t], log.seen[t], r.output);
        cr_assert(log.seen[t] <= log.calling[t],
                  "%s nodes, %s: the homes hold interval %ld of thread %d, whose last "
                  "release called was %ld\n%s",
                  nodes, fault, log.seen[t], t, log.calling[t], r.output);
        failed_threads += (log.released[t] < atol(intervals));
    }
    /* the fault did fire: some thread never finished */
    cr_assert(failed_threads > 0, "%s nodes, %s: no node failed\n%s", nodes, fault,
              r.output);
}

/* 48 intervals per thread; the backup's point is seen by heartbeats
 * (every 20 ms), so that run is longer */
#define TOKEN_TEST_OF(_name, _fault, _intervals)                    \
    Test(tokens, _name##_on_3_nodes, .timeout = 120) {              \
        tokens_hold("3", _fault, _intervals);                       \
    }                                                               \
    Test(tokens, _name##_on_4_nodes, .timeout = 120) {              \
        tokens_hold("4", _fault, _intervals);                       \
    }
#define TOKEN_TEST(_name, _fault) TOKEN_TEST_OF(_name, _fault, "48")

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
TOKEN_TEST_OF(killed_holding_markers, "backup:2@1", "800")
TOKEN_TEST(killed_in_a_barrier, "barrier:2@2")
TOKEN_TEST(killed_mid_fetch, "fetch:20@2")

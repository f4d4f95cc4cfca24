/*
 * Injected stops and failures, for tests. Unset, a check costs one
 * comparison.
 * - FTSVM_STOP_AT: the configured node stops itself (SIGSTOP) at a named step
 *   of a release, after flushing what it wrote, so that a test can read the
 *   homes and markers exactly as a failure at that step would leave them,
 *   then let it go on (SIGCONT).
 * - FTSVM_FAULT: the node SIGKILLs itself, unflushed, at one of the same
 *   steps or at a point of the locks, barriers, fetches, a backup's markers
 *   or an ftsvm_for chunk.
 */
#include "replica_int.h"
#include "common/log.h"
#include "ftsvm.h"

#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static const char *const point_names[REPLICA_STOP_COUNT] = {
    [REPLICA_STOP_NONE]           = "none",
    [REPLICA_STOP_BEFORE_PHASE1]  = "before-phase1",
    [REPLICA_STOP_PHASE1_PENDING] = "phase1-pending",
    [REPLICA_STOP_PHASE1_DIFFS]   = "phase1-diffs",
    [REPLICA_STOP_NEXT_RELEASE]   = "next-release",
    [REPLICA_STOP_PHASE1_APPLIED] = "phase1-applied",
    [REPLICA_STOP_PHASE2_PENDING] = "phase2-pending",
    [REPLICA_STOP_PHASE2_DIFFS]   = "phase2-diffs",
    [REPLICA_STOP_PHASE2_APPLIED] = "phase2-applied",
    [REPLICA_STOP_LAST_RELEASE]   = "last-release",
    [REPLICA_FAULT_LOCK_HELD]     = "lock-held",
    [REPLICA_FAULT_LOCK_WAIT]     = "lock-wait",
    [REPLICA_FAULT_LOCK_HOME]     = "lock-home",
    [REPLICA_FAULT_BACKUP]        = "backup",
    [REPLICA_FAULT_BARRIER]       = "barrier",
    [REPLICA_FAULT_FETCH]         = "fetch",
    [REPLICA_FAULT_FOR_CHUNK]     = "for-chunk",
    [REPLICA_FAULT_BOOT_RENDEZVOUS] = "boot-rendezvous",
    [REPLICA_FAULT_BOOT_ADDRESSES]  = "boot-addresses",
    [REPLICA_FAULT_BOOT_KEYS]       = "boot-keys",
    [REPLICA_FAULT_BOOT_BARRIER]    = "boot-barrier",
    [REPLICA_FAULT_REDUNDANCY]    = "redundancy",
    [REPLICA_FAULT_COPY]          = "copy",
};

const char *replica_stop_name(replica_stop_point_t point)
{
    return ((unsigned)point < REPLICA_STOP_COUNT) ? point_names[point] : "?";
}

static int stop_takes_pages(replica_stop_point_t point)
{
    return point == REPLICA_STOP_PHASE1_DIFFS || point == REPLICA_STOP_PHASE2_DIFFS;
}

static int stop_number(const char *var, const char *spec, const char *what, const char *text,
                       char stop_at, long long min, long long max, long long *value_p)
{
    char *end;
    long long v;

    errno = 0;
    v = strtoll(text, &end, 10);
    if (errno != 0 || end == text || *end != stop_at || v < min || v > max) {
        ftsvm_error("FTSVM_%s: '%s': %s must be a number in [%lld, %lld]", var, spec, what,
                    min, max);
        return FTSVM_EINVAL;
    }
    *value_p = v;
    return FTSVM_OK;
}

/* FTSVM_STOP_AT and FTSVM_FAULT share a syntax; the fault takes more
 * points, and :n on a point without pages (the n-th time there). */
static int stop_parse(const char *var, int fault, const char *spec, int nodes,
                      replica_stop_t *stop_p)
{
    replica_stop_t stop = { REPLICA_STOP_NONE, 0, -1, 0 };
    int last = fault ? REPLICA_STOP_COUNT : REPLICA_FAULT_LOCK_HELD;
    const char *at, *hash, *colon;
    long long v;
    size_t len;
    int p;

    if (spec == NULL || spec[0] == '\0') {
        *stop_p = stop;
        return FTSVM_OK;
    }
    at = strchr(spec, '@');
    if (at == NULL) {
        ftsvm_error("FTSVM_%s: '%s' names no node (<point>[:<%s>]@<node>[#<interval>])", var,
                    spec, fault ? "n" : "k");
        return FTSVM_EINVAL;
    }
    colon = memchr(spec, ':', (size_t)(at - spec));
    len = (size_t)((colon != NULL ? colon : at) - spec);
    for (p = REPLICA_STOP_BEFORE_PHASE1; p < last; p++) {
        if (strlen(point_names[p]) == len && strncmp(spec, point_names[p], len) == 0) {
            stop.point = (replica_stop_point_t)p;
        }
    }
    if (stop.point == REPLICA_STOP_NONE) {
        ftsvm_error("FTSVM_%s: '%s': unknown point (before-phase1, phase1-pending, "
                    "phase1-diffs:<k>, next-release, phase1-applied, phase2-pending, "
                    "phase2-diffs:<k>, phase2-applied, last-release%s)", var, spec,
                    fault ? ", lock-held, lock-wait, lock-home, backup, barrier, fetch, "
                            "for-chunk, boot-rendezvous, boot-addresses, boot-keys, "
                            "boot-barrier, redundancy, copy" : "");
        return FTSVM_EINVAL;
    }
    if (stop_takes_pages(stop.point) ? colon == NULL : (colon != NULL && !fault)) {
        ftsvm_error("FTSVM_%s: '%s': %s", var, spec, colon != NULL ?
                    "only the *-diffs points take a page count" :
                    "a *-diffs point needs a page count (e.g. phase1-diffs:2)");
        return FTSVM_EINVAL;
    }
    if (colon != NULL) {
        if (stop_number(var, spec, stop_takes_pages(stop.point) ? "the page count" :
                        "the count", colon + 1, '@', 1, 1 << 30, &v) != FTSVM_OK) {
            return FTSVM_EINVAL;
        }
        stop.pages = (unsigned)v;
    }
    hash = strchr(at, '#');
    if (stop_number(var, spec, "the node", at + 1, hash != NULL ? '#' : '\0', 0, nodes - 1,
                    &v) != FTSVM_OK) {
        return FTSVM_EINVAL;
    }
    stop.node = (int)v;
    if (hash != NULL) {
        if (stop_number(var, spec, "the interval", hash + 1, '\0', 1, 1ll << 62, &v) !=
            FTSVM_OK) {
            return FTSVM_EINVAL;
        }
        stop.interval = (uint64_t)v;
    }
    *stop_p = stop;
    return FTSVM_OK;
}

int replica_stop_parse(const char *spec, int nodes, replica_stop_t *stop_p)
{
    return stop_parse("STOP_AT", 0, spec, nodes, stop_p);
}

int replica_fault_parse(const char *spec, int nodes, replica_stop_t *fault_p)
{
    return stop_parse("FAULT", 1, spec, nodes, fault_p);
}

/* SIGKILL, as a real failure: no flush, no goodbye */
static void fault_fire(replica_stop_point_t point)
{
    char line[160];
    int n;

    n = snprintf(line, sizeof(line), "ftsvm: node %d: FTSVM_FAULT: killing itself at %s\n",
                 replica.node, replica_stop_name(point));
    if (n > 0 && write(STDERR_FILENO, line, (size_t)n) < 0) {
        /* nothing to do: it dies anyway */
    }
    kill(getpid(), SIGKILL);
}

int replica_fault_armed(replica_stop_point_t point)
{
    return replica.fault.point == point && replica.fault.node == replica.node;
}

void replica_fault_point(replica_stop_point_t point)
{
    unsigned want = replica.fault.pages ? replica.fault.pages : 1;

    if (replica_fault_armed(point) && atomic_fetch_add(&replica.fault_hits, 1) + 1 == want) {
        fault_fire(point);
    }
}

int replica_stop_armed(replica_stop_point_t point, uint64_t interval)
{
    const replica_stop_t *stop = &replica.stop;

    return stop->point == point && !replica.stopped && stop->node == replica.node &&
           (stop->interval == 0 || stop->interval == interval);
}

void replica_stop_check(replica_stop_point_t point, uint64_t interval, size_t pages)
{
    if (replica_fault_armed(point) &&
        (replica.fault.interval == 0 || replica.fault.interval == interval)) {
        if (stop_takes_pages(point) ? pages == replica.fault.pages
                                    : (pages == 0 && (replica.fault.pages <= 1 ||
                                       atomic_fetch_add(&replica.fault_hits, 1) + 1 ==
                                       replica.fault.pages))) {
            fault_fire(point);
        }
    }
    if (!replica_stop_armed(point, interval) ||
        (stop_takes_pages(point) && pages != replica.stop.pages)) {
        return;
    }
    replica.stopped = 1;
    /* the test reads the homes as a failure here would leave them */
    rdma_flush(replica.rdma, RDMA_ALL_PEERS);
    if (stop_takes_pages(point)) {
        ftsvm_info("stopping at %s:%zu of interval %llu (FTSVM_STOP_AT)",
                   replica_stop_name(point), pages, (unsigned long long)interval);
    } else {
        ftsvm_info("stopping at %s of interval %llu (FTSVM_STOP_AT)",
                   replica_stop_name(point), (unsigned long long)interval);
    }
    raise(SIGSTOP);
}

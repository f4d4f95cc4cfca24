/* Reading the event and verdict lines of ftsvm-run's nodes (run_events.h).
 * Only what the nodes print goes in: no field is trusted to be well formed,
 * in range, or to come from the node it names. */
#include "run_events.h"

#include "common/clock.h"
#include "common/log.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#define RUN_EVENT_TEXT_MAX  512   /* a longer event is malformed */
#define RUN_EVENT_REMOVED_MAX 64  /* node ids named in one removed= list */

int run_events_init(run_events_t *events, int nodes)
{
    memset(events, 0, sizeof(*events));
    events->fenced_ns = calloc((size_t)nodes, sizeof(*events->fenced_ns));
    events->fault_ns  = calloc((size_t)nodes, sizeof(*events->fault_ns));
    if (events->fenced_ns == NULL || events->fault_ns == NULL) {
        free(events->fenced_ns);
        free(events->fault_ns);
        return -1;
    }
    events->nodes = nodes;
    return 0;
}

void run_events_fini(run_events_t *events)
{
    free(events->redundancy);
    free(events->events);
    free(events->fenced_ns);
    free(events->fault_ns);
    memset(events, 0, sizeof(*events));
}

static int run_events_u64(const char *text, uint64_t *value_p)
{
    unsigned long long value;
    char *end;

    if (text[0] < '0' || text[0] > '9') {
        return -1;   /* strtoull would take a sign or spaces */
    }
    errno = 0;
    value = strtoull(text, &end, 10);
    if (errno != 0 || *end != '\0') {
        return -1;
    }
    *value_p = value;
    return 0;
}

static int run_events_node_id(const run_events_t *events, const char *text, int *node_p)
{
    uint64_t value;

    if (run_events_u64(text, &value) != 0 || value >= (uint64_t)events->nodes) {
        return -1;
    }
    *node_p = (int)value;
    return 0;
}

/* "2" or "2,3": at most RUN_EVENT_REMOVED_MAX ids; returns how many, -1 if bad */
static int run_events_node_list(const run_events_t *events, char *text, int *ids)
{
    char *save = NULL, *id;
    int count = 0;

    if (text[0] == '\0' || text[strlen(text) - 1] == ',') {
        return -1;
    }
    for (id = strtok_r(text, ",", &save); id != NULL; id = strtok_r(NULL, ",", &save)) {
        if (count == RUN_EVENT_REMOVED_MAX || run_events_node_id(events, id, &ids[count]) != 0) {
            return -1;
        }
        count++;
    }
    return count;
}

static void run_events_add(run_events_t *events, const run_event_t *event)
{
    run_event_t *grown;
    size_t cap;

    if (events->count == RUN_EVENTS_MAX) {
        events->dropped++;
        return;
    }
    if (events->count == events->cap) {
        cap = (events->cap == 0) ? 16 : 2 * events->cap;
        grown = realloc(events->events, cap * sizeof(*grown));
        if (grown == NULL) {
            events->dropped++;
            return;
        }
        events->events = grown;
        events->cap = cap;
    }
    events->events[events->count++] = *event;
}

static int run_events_ms(const char *text, double *ms_p)
{
    char *end;
    double ms;

    if (text[0] < '0' || text[0] > '9') {
        return -1;
    }
    errno = 0;
    ms = strtod(text, &end);
    if (errno != 0 || *end != '\0' || ms > 1e12) {
        return -1;
    }
    *ms_p = ms;
    return 0;
}

/* "redundancy view=V rows=R bytes=B ms=T homes=H landed=L" after the tag
 * (homes and landed, the reporter's own, are not kept); save: strtok_r's */
static int run_events_parse_redundancy(run_events_t *events, int node, char **save)
{
    enum { HAVE_VIEW = 1, HAVE_ROWS = 2, HAVE_BYTES = 4, HAVE_MS = 8 };
    run_redundancy_t r = { .reporter = node };
    run_redundancy_t *grown;
    char *field, *value;
    uint64_t mine;
    int have = 0;
    size_t cap;

    for (field = strtok_r(NULL, " ", save); field != NULL; field = strtok_r(NULL, " ", save)) {
        value = strchr(field, '=');
        if (value == NULL) {
            return -1;
        }
        *value++ = '\0';
        if (!strcmp(field, "view") && run_events_u64(value, &r.view) == 0) {
            have |= HAVE_VIEW;
        } else if (!strcmp(field, "rows") && run_events_u64(value, &r.rows) == 0) {
            have |= HAVE_ROWS;
        } else if (!strcmp(field, "bytes") && run_events_u64(value, &r.bytes) == 0) {
            have |= HAVE_BYTES;
        } else if (!strcmp(field, "ms") && run_events_ms(value, &r.ms) == 0) {
            have |= HAVE_MS;
        } else if ((!strcmp(field, "homes") || !strcmp(field, "landed")) &&
                   run_events_u64(value, &mine) == 0) {
            continue;
        } else {
            return -1;
        }
    }
    if (have != (HAVE_VIEW | HAVE_ROWS | HAVE_BYTES | HAVE_MS) ||
        r.view > (uint64_t)events->nodes) {
        return -1;
    }
    if (events->redundancy_count == RUN_EVENTS_MAX) {
        events->dropped++;
        return 0;
    }
    if (events->redundancy_count == events->redundancy_cap) {
        cap = events->redundancy_cap ? 2 * events->redundancy_cap : 16;
        grown = realloc(events->redundancy, cap * sizeof(*grown));
        if (grown == NULL) {
            events->dropped++;
            return 0;
        }
        events->redundancy = grown;
        events->redundancy_cap = cap;
    }
    events->redundancy[events->redundancy_count++] = r;
    if (r.view > events->redundancy_view) {
        events->redundancy_view = r.view;
    }
    return 0;
}

/* text: what follows the tag, up to (not including) the closing bracket */
static int run_events_parse(run_events_t *events, int node, char *text)
{
    enum { HAVE_VIEW = 1, HAVE_REMOVED = 2, HAVE_CAUSE = 4, HAVE_DETECTED = 8,
           HAVE_RECOVERED = 16, HAVE_FENCED = 32, HAVE_NS = 64 };
    int removed[RUN_EVENT_REMOVED_MAX], nremoved = 0, fenced = -1, have = 0, i;
    run_event_t event;
    uint64_t fenced_ns = 0;
    char *save = NULL, *field, *value;

    memset(&event, 0, sizeof(event));
    event.reporter = node;
    field = strtok_r(text, " ", &save);
    if (field != NULL && !strcmp(field, "redundancy")) {
        return run_events_parse_redundancy(events, node, &save);
    }
    if (field != NULL && !strcmp(field, "handover")) {
        return 0;   /* an evicted node's homes moved (planned: no failure's figures) */
    }
    for (; field != NULL; field = strtok_r(NULL, " ", &save)) {
        value = strchr(field, '=');
        if (value == NULL) {
            return -1;
        }
        *value++ = '\0';
        if (!strcmp(field, "view") && run_events_u64(value, &event.view) == 0) {
            have |= HAVE_VIEW;
        } else if (!strcmp(field, "removed") &&
                   (nremoved = run_events_node_list(events, value, removed)) > 0) {
            have |= HAVE_REMOVED;
        } else if (!strcmp(field, "cause") && value[0] != '\0' &&
                   strlen(value) < sizeof(event.cause)) {
            strcpy(event.cause, value);
            have |= HAVE_CAUSE;
        } else if (!strcmp(field, "detected_ns") &&
                   run_events_u64(value, &event.detected_ns) == 0) {
            have |= HAVE_DETECTED;
        } else if (!strcmp(field, "recovered_ns") &&
                   run_events_u64(value, &event.recovered_ns) == 0) {
            have |= HAVE_RECOVERED;
        } else if (!strcmp(field, "fenced") && run_events_node_id(events, value, &fenced) == 0) {
            have |= HAVE_FENCED;
        } else if (!strcmp(field, "ns") && run_events_u64(value, &fenced_ns) == 0) {
            have |= HAVE_NS;
        } else {
            return -1;   /* unknown field, or a bad value */
        }
    }
    if (have == (HAVE_FENCED | HAVE_NS)) {
        /* a node speaks for itself only */
        if (fenced != node) {
            return -1;
        }
        events->fenced_ns[node] = (fenced_ns != 0) ? fenced_ns : 1;
        return 0;
    }
    if (have != (HAVE_VIEW | HAVE_REMOVED | HAVE_CAUSE | HAVE_DETECTED | HAVE_RECOVERED)) {
        return -1;
    }
    for (i = 0; i < nremoved; i++) {
        event.removed = removed[i];
        run_events_add(events, &event);
    }
    return 0;
}

void run_events_scan(run_events_t *events, int node, const char *line, size_t len)
{
    static const char tag[] = RUN_EVENT_TAG;
    char text[RUN_EVENT_TEXT_MAX];
    const char *start, *end;
    size_t text_len;

    if (memmem(line, len, "verified NO", 11) != NULL) {
        events->verified = RUN_VERIFIED_NO;
    } else if (memmem(line, len, "verified yes", 12) != NULL &&
               events->verified == RUN_VERIFIED_NONE) {
        events->verified = RUN_VERIFIED_YES;
    }

    /* lib/replica/inject.c and runtime_boot_fault write it just before the
     * SIGKILL: a closer time of death than the reap, which may come after
     * the others have recovered (a node killed in start-up) */
    if (node >= 0 && node < events->nodes && events->fault_ns[node] == 0 &&
        memmem(line, len, RUN_FAULT_TAG, sizeof(RUN_FAULT_TAG) - 1) != NULL) {
        events->fault_ns[node] = clock_now_ns();
    }
    start = memmem(line, len, tag, sizeof(tag) - 1);
    if (start == NULL) {
        return;
    }
    start += sizeof(tag) - 1;
    end = memchr(start, ']', len - (size_t)(start - line));
    text_len = (end != NULL) ? (size_t)(end - start) : 0;
    if (end == NULL || text_len >= sizeof(text) || memchr(start, '\0', text_len) != NULL) {
        goto malformed;
    }
    memcpy(text, start, text_len);
    text[text_len] = '\0';
    if (run_events_parse(events, node, text) == 0) {
        return;
    }
malformed:
    if (events->malformed++ == 0) {
        ftsvm_warn("node %d printed an event line that cannot be read; ignoring it (and any "
                   "more such lines)", node);
    }
}

int run_events_figures(const run_events_t *events, int removed, const char *survivor,
                       run_figures_t *figures_p)
{
    run_figures_t figures = { .first_detected_ns = UINT64_MAX };
    char *reported;   /* per node: counted among the reporters */
    size_t i;

    reported = calloc((size_t)events->nodes, 1);
    if (reported == NULL) {
        return 0;
    }
    for (i = 0; i < events->count; i++) {
        const run_event_t *event = &events->events[i];

        if (event->removed != removed || !survivor[event->reporter]) {
            continue;
        }
        if (!reported[event->reporter]) {
            reported[event->reporter] = 1;
            figures.reporters++;
        }
        if (event->detected_ns < figures.first_detected_ns) {
            figures.first_detected_ns = event->detected_ns;
        }
        if (event->recovered_ns > figures.last_recovered_ns) {
            figures.last_recovered_ns = event->recovered_ns;
        }
    }
    free(reported);
    if (figures.reporters == 0) {
        return 0;
    }
    *figures_p = figures;
    return 1;
}

uint64_t run_events_view_of(const run_events_t *events, int removed, const char *survivor)
{
    uint64_t view = 0;
    size_t i;

    for (i = 0; i < events->count; i++) {
        const run_event_t *event = &events->events[i];

        if (event->removed == removed && survivor[event->reporter] && event->view > view) {
            view = event->view;
        }
    }
    return view;
}

int run_events_redundancy_said(const run_events_t *events, int node, uint64_t view)
{
    size_t i;

    for (i = 0; i < events->redundancy_count; i++) {
        if (events->redundancy[i].reporter == node && events->redundancy[i].view >= view) {
            return 1;
        }
    }
    return 0;
}

int run_events_redundancy(const run_events_t *events, uint64_t view, const char *survivor,
                          double *ms_p, uint64_t *bytes_p)
{
    double ms = -1;
    uint64_t bytes = 0;
    size_t i;

    for (i = 0; i < events->redundancy_count; i++) {
        const run_redundancy_t *r = &events->redundancy[i];

        if (r->view == view && view != 0 && survivor[r->reporter] && r->ms > ms) {
            ms = r->ms;
            bytes = r->bytes;
        }
    }
    if (ms < 0) {
        return 0;
    }
    *ms_p = ms;
    *bytes_p = bytes;
    return 1;
}

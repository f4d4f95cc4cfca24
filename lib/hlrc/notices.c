/*
 * Write notices (DESIGN.md section 4): at a release, the writer broadcasts
 * "interval k of node P wrote these pages" into every node's ring for P,
 * before any diff of k is written and before P's vector timestamp says k.
 * So whoever learns of k (through a lock or a barrier) finds its notices
 * already in its own ring.
 *
 * The NOTICES region of every node holds one ring per writer, then the tail
 * of each writer's ring (written by the writer after the records, with a
 * fence between), then how far each reader has consumed this node's ring
 * (written by the readers). A writer whose ring is full at some reader asks
 * that reader to drain it (HLRC_AM_DRAIN) and waits: readers move records
 * into local lists whenever they acquire, and on request.
 *
 * Record: u64 interval, u32 page count, u32 zero, u32 pages[count], padded
 * to 8 bytes. One release may take several records with the same interval.
 */
#include "hlrc_int.h"
#include "common/clock.h"
#include "common/log.h"
#include "ftsvm.h"

#include <sched.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define NOTICE_HDR      16u
#define NOTICE_WAIT_NS  (60ull * 1000000000ull)

static uint8_t *ring_base(void)
{
    return rdma_region_addr(hlrc.rdma, HLRC_REGION_NOTICES);
}

static uint64_t tails_offset(int writer)
{
    return (uint64_t)hlrc.nodes * hlrc.ring_bytes + (uint64_t)writer * 8u;
}

static uint64_t heads_offset(int reader)
{
    return (uint64_t)hlrc.nodes * hlrc.ring_bytes + (uint64_t)hlrc.nodes * 8u +
           (uint64_t)reader * 8u;
}

static uint64_t *local_word(uint64_t offset)
{
    return (uint64_t *)(ring_base() + offset);
}

/* ---- reader side ---------------------------------------------------------- */

static void ring_copy_out(int writer, uint64_t pos, void *dst, size_t len)
{
    const uint8_t *ring = ring_base() + (size_t)writer * hlrc.ring_bytes;
    size_t at = (size_t)(pos % hlrc.ring_bytes), first = hlrc.ring_bytes - at;

    if (first >= len) {
        memcpy(dst, ring + at, len);
    } else {
        memcpy(dst, ring + at, first);
        memcpy((uint8_t *)dst + first, ring, len - first);
    }
}

static int notice_push(hlrc_notice_list_t *list, uint64_t interval, uint32_t *pages,
                       uint32_t npages)
{
    hlrc_notice_t *last = list->count ? &list->items[list->count - 1] : NULL;
    uint32_t *merged;

    if (last != NULL && last->interval == interval) {
        merged = realloc(last->pages, ((size_t)last->npages + npages) * sizeof(uint32_t));
        if (merged == NULL) {
            return FTSVM_ENOMEM;
        }
        memcpy(merged + last->npages, pages, npages * sizeof(uint32_t));
        last->pages = merged;
        last->npages += npages;
        free(pages);
        return FTSVM_OK;
    }
    if (list->count == list->cap) {
        size_t cap = list->cap ? 2 * list->cap : 64;
        hlrc_notice_t *items = realloc(list->items, cap * sizeof(*items));

        if (items == NULL) {
            return FTSVM_ENOMEM;
        }
        list->items = items;
        list->cap = cap;
    }
    list->items[list->count].interval = interval;
    list->items[list->count].npages   = npages;
    list->items[list->count].pages    = pages;
    list->count++;
    return FTSVM_OK;
}

void hlrc_notices_drain(int writer)
{
    hlrc_notice_list_t *list = &hlrc.notices[writer];
    uint64_t tail, head, interval;
    uint32_t header[4], npages, *pages;
    size_t i;

    if (writer == hlrc.node) {
        return;   /* a node never invalidates its own writes */
    }
    pthread_mutex_lock(&hlrc.notice_lock);
    tail = __atomic_load_n(local_word(tails_offset(writer)), __ATOMIC_ACQUIRE);
    head = list->head;
    while (head < tail) {
        ring_copy_out(writer, head, header, NOTICE_HDR);
        memcpy(&interval, header, 8);
        npages = header[2];
        pages = malloc((size_t)npages * sizeof(uint32_t) + 1);
        if (pages == NULL || (uint64_t)npages * 4u + NOTICE_HDR > hlrc.ring_bytes) {
            ftsvm_error("bad or unstorable write notice of node %d (%u pages)", writer, npages);
            free(pages);
            break;
        }
        ring_copy_out(writer, head + NOTICE_HDR, pages, (size_t)npages * 4u);
        for (i = 0; i < npages; i++) {
            if (pages[i] >= hlrc.npages) {
                ftsvm_error("write notice of node %d names page 0x%x outside the region",
                            writer, pages[i]);
                npages = 0;
            }
        }
        if (notice_push(list, interval, pages, npages) != FTSVM_OK) {
            ftsvm_error("out of memory for the write notices of node %d", writer);
            free(pages);
            break;
        }
        head += (NOTICE_HDR + (uint64_t)npages * 4u + 7u) & ~7ull;
    }
    if (head != list->head) {
        list->head = head;
        /* tell the writer it may reuse the space (no flush needed: it only
         * ever waits for this word to grow) */
        if (rdma_put(hlrc.rdma, writer, HLRC_REGION_NOTICES, heads_offset(hlrc.node), &head,
                     8) != FTSVM_OK) {
            ftsvm_debug("could not return ring space to node %d", writer);
        }
    }
    pthread_mutex_unlock(&hlrc.notice_lock);
}

int hlrc_notices_pages_after(int writer, uint64_t after, uint32_t **pages_p, size_t *n_p)
{
    hlrc_notice_list_t *list = &hlrc.notices[writer];
    uint32_t *pages = NULL, *grown;
    size_t n = 0, cap = 0, i, k;

    hlrc_notices_drain(writer);
    pthread_mutex_lock(&hlrc.notice_lock);
    for (i = list->first; i < list->count; i++) {
        const hlrc_notice_t *notice = &list->items[i];

        if (notice->interval <= after) {
            continue;
        }
        if (n + notice->npages > cap) {
            cap = 2 * (n + notice->npages) + 16;
            grown = realloc(pages, cap * sizeof(uint32_t));
            if (grown == NULL) {
                pthread_mutex_unlock(&hlrc.notice_lock);
                free(pages);
                return FTSVM_ENOMEM;
            }
            pages = grown;
        }
        for (k = 0; k < notice->npages; k++) {
            pages[n++] = notice->pages[k];
        }
    }
    pthread_mutex_unlock(&hlrc.notice_lock);
    *pages_p = pages;
    *n_p = n;
    return FTSVM_OK;
}

static void hlrc_on_drain(void *arg, int src, const void *payload, size_t len)
{
    hlrc_notices_drain(src);
}

/* ---- writer side ---------------------------------------------------------- */

static int ring_wait_for_space(uint64_t need)
{
    uint64_t deadline = clock_now_ns() + NOTICE_WAIT_NS, head;
    int reader, asked = 0, full;
    unsigned round = 0;

    for (;;) {
        full = 0;
        for (reader = 0; reader < hlrc.app_nodes; reader++) {
            if (reader == hlrc.node || !rdma_peer_alive(hlrc.rdma, reader)) {
                continue;
            }
            head = __atomic_load_n(local_word(heads_offset(reader)), __ATOMIC_ACQUIRE);
            if (hlrc.ring_tail + need - head > hlrc.ring_bytes) {
                full = 1;
                if (!asked) {
                    rdma_am_send(hlrc.rdma, reader, HLRC_AM_DRAIN, NULL, 0);
                }
            }
        }
        if (!full) {
            return FTSVM_OK;
        }
        asked = 1;
        if (clock_now_ns() > deadline) {
            ftsvm_error("write-notice ring full for %llu s: a node does not drain it",
                        (unsigned long long)(NOTICE_WAIT_NS / 1000000000ull));
            return FTSVM_ETIMEDOUT;
        }
        hlrc_backoff(&round);
    }
}

static int ring_put(int reader, uint64_t pos, const uint8_t *src, size_t len)
{
    uint64_t ring = (uint64_t)hlrc.node * hlrc.ring_bytes;
    size_t at = (size_t)(pos % hlrc.ring_bytes), first = hlrc.ring_bytes - at;
    int status;

    if (first >= len) {
        return rdma_put(hlrc.rdma, reader, HLRC_REGION_NOTICES, ring + at, src, len);
    }
    status = rdma_put(hlrc.rdma, reader, HLRC_REGION_NOTICES, ring + at, src, first);
    if (status == FTSVM_OK) {
        status = rdma_put(hlrc.rdma, reader, HLRC_REGION_NOTICES, ring, src + first,
                          len - first);
    }
    return status;
}

int hlrc_notices_publish(uint64_t interval, const uint32_t *pages, size_t npages)
{
    size_t per_record = (hlrc.ring_bytes / 4u - NOTICE_HDR) / 4u, done, n, len;
    uint8_t *record;
    uint32_t count;
    int reader, status = FTSVM_OK;

    record = malloc(NOTICE_HDR + per_record * 4u + 8u);
    if (record == NULL) {
        ftsvm_error("cannot allocate a write-notice record");
        return FTSVM_ENOMEM;
    }
    for (done = 0; done < npages && status == FTSVM_OK; done += n) {
        n = (npages - done < per_record) ? npages - done : per_record;
        len = (NOTICE_HDR + n * 4u + 7u) & ~(size_t)7u;
        memset(record, 0, len);
        count = (uint32_t)n;
        memcpy(record, &interval, 8);
        memcpy(record + 8, &count, 4);
        memcpy(record + NOTICE_HDR, pages + done, n * 4u);
        status = ring_wait_for_space(len);
        for (reader = 0; status == FTSVM_OK && reader < hlrc.app_nodes; reader++) {
            if (reader != hlrc.node && rdma_peer_alive(hlrc.rdma, reader)) {
                status = ring_put(reader, hlrc.ring_tail, record, len);
                status = (status == FTSVM_EPEER) ? FTSVM_OK : status;   /* it left */
            }
        }
        hlrc.ring_tail += len;
    }
    free(record);
    if (status != FTSVM_OK) {
        return status;
    }
    /* records before tails: a reader that sees a tail sees its records */
    status = rdma_fence(hlrc.rdma);
    for (reader = 0; status == FTSVM_OK && reader < hlrc.app_nodes; reader++) {
        if (reader != hlrc.node && rdma_peer_alive(hlrc.rdma, reader)) {
            status = rdma_put(hlrc.rdma, reader, HLRC_REGION_NOTICES, tails_offset(hlrc.node),
                              &hlrc.ring_tail, 8);
            status = (status == FTSVM_EPEER) ? FTSVM_OK : status;
        }
    }
    /* every node has the notices before any diff of this interval is written
     * (a reader that failed needs none) */
    if (status == FTSVM_OK) {
        status = rdma_flush(hlrc.rdma, RDMA_ALL_PEERS);
        status = (status == FTSVM_EPEER) ? FTSVM_OK : status;
    }
    stats_add(&hlrc.stats, HLRC_STAT_NOTICES_SENT, npages);
    return status;
}

int hlrc_notices_init(void)
{
    hlrc.notices = calloc((size_t)hlrc.nodes, sizeof(*hlrc.notices));
    if (hlrc.notices == NULL) {
        ftsvm_error("cannot allocate the write-notice lists");
        return FTSVM_ENOMEM;
    }
    pthread_mutex_init(&hlrc.notice_lock, NULL);
    return rdma_am_register(hlrc.rdma, HLRC_AM_DRAIN, 0, 0, hlrc_on_drain, NULL);
}

void hlrc_notices_fini(void)
{
    size_t i;
    int w;

    for (w = 0; hlrc.notices != NULL && w < hlrc.nodes; w++) {
        /* items before `first` were acted on: their pages are freed already
         * (notices of a failed writer's void interval stay unconsumed) */
        for (i = hlrc.notices[w].first; i < hlrc.notices[w].count; i++) {
            free(hlrc.notices[w].items[i].pages);
        }
        free(hlrc.notices[w].items);
    }
    free(hlrc.notices);
    hlrc.notices = NULL;
    pthread_mutex_destroy(&hlrc.notice_lock);
}

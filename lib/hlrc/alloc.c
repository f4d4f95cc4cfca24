/*
 * Shared allocation (DESIGN.md section 9).
 *
 * The lower half of the shared region serves ftsvm_alloc: collective, so
 * every node runs the same bump allocation in the same order and gets the
 * same address, with no message. The upper half is cut into one arena per
 * node for ftsvm_malloc, which any node calls at any time: it allocates from
 * its own arena (addresses are global, so the block is usable everywhere);
 * ftsvm_free of another node's block is sent to that node (HLRC_AM_FREE).
 *
 * Arena blocks are 64-byte granules rounded up to a power of two, with one
 * free list per size; block starts are recorded in a side table, so a free
 * of anything that is not a live block start is refused and logged.
 */
#include "hlrc_int.h"
#include "common/log.h"
#include "ftsvm.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#define GRANULE       64u
#define CLASSES       32

static unsigned size_class(size_t bytes)
{
    size_t granules = (bytes + GRANULE - 1) / GRANULE;
    unsigned c = 0;

    while (((size_t)1 << c) < granules) {
        c++;
    }
    return c;
}

static uint8_t *arena_base(int node)
{
    return hlrc.base + hlrc.collective_size + (size_t)node * hlrc.arena_size;
}

void *hlrc_alloc(size_t bytes)
{
    size_t align = (bytes >= HLRC_PAGE_SIZE) ? HLRC_PAGE_SIZE : GRANULE, start;

    if (bytes == 0 || bytes > hlrc.collective_size) {
        ftsvm_error("ftsvm_alloc: %zu bytes is %s (the collective area holds %zu bytes; "
                    "FTSVM_SHARED_SIZE sets the region)", bytes, bytes ? "too large" : "empty",
                    hlrc.collective_size);
        errno = bytes ? ENOMEM : EINVAL;
        return NULL;
    }
    pthread_mutex_lock(&hlrc.alloc_lock);
    start = (hlrc.collective_top + align - 1) & ~(align - 1);
    if (start + bytes > hlrc.collective_size) {
        pthread_mutex_unlock(&hlrc.alloc_lock);
        ftsvm_error("ftsvm_alloc: out of shared memory (%zu of %zu bytes used, %zu asked)",
                    hlrc.collective_top, hlrc.collective_size, bytes);
        errno = ENOMEM;
        return NULL;
    }
    hlrc.collective_top = start + bytes;
    pthread_mutex_unlock(&hlrc.alloc_lock);
    return hlrc.base + start;
}

void *hlrc_malloc(size_t bytes)
{
    unsigned c;
    size_t granule, block, align;
    uint32_t g;

    if (bytes == 0 || bytes > hlrc.arena_size) {
        ftsvm_error("ftsvm_malloc: %zu bytes is %s (a node's arena holds %zu bytes)", bytes,
                    bytes ? "too large" : "empty", hlrc.arena_size);
        errno = bytes ? ENOMEM : EINVAL;
        return NULL;
    }
    c = size_class(bytes);
    block = (size_t)GRANULE << c;
    pthread_mutex_lock(&hlrc.alloc_lock);
    if (hlrc.arena_free_len[c] > 0) {
        g = hlrc.arena_free[c][--hlrc.arena_free_len[c]];
    } else {
        align = (block >= HLRC_PAGE_SIZE) ? HLRC_PAGE_SIZE : GRANULE;
        granule = ((hlrc.arena_top + align - 1) & ~(align - 1));
        if (granule + block > hlrc.arena_size) {
            pthread_mutex_unlock(&hlrc.alloc_lock);
            ftsvm_error("ftsvm_malloc: this node's arena is full (%zu bytes)", hlrc.arena_size);
            errno = ENOMEM;
            return NULL;
        }
        hlrc.arena_top = granule + block;
        g = (uint32_t)(granule / GRANULE);
    }
    hlrc.arena_blocks[g] = c + 1;
    pthread_mutex_unlock(&hlrc.alloc_lock);
    return arena_base(hlrc.node) + (size_t)g * GRANULE;
}

/* Free a block of this node's arena, given its offset in the arena. */
static int arena_free(uint64_t offset)
{
    uint32_t g = (uint32_t)(offset / GRANULE), c;
    uint32_t *list;
    int status = FTSVM_OK;

    pthread_mutex_lock(&hlrc.alloc_lock);
    if (offset % GRANULE != 0 || offset >= hlrc.arena_size || hlrc.arena_blocks[g] == 0) {
        status = FTSVM_EINVAL;
        goto out;
    }
    c = hlrc.arena_blocks[g] - 1;
    if (hlrc.arena_free_len[c] == hlrc.arena_free_cap[c]) {
        size_t cap = hlrc.arena_free_cap[c] ? 2 * hlrc.arena_free_cap[c] : 64;

        list = realloc(hlrc.arena_free[c], cap * sizeof(uint32_t));
        if (list == NULL) {
            status = FTSVM_ENOMEM;   /* the block leaks; nothing is corrupted */
            goto out;
        }
        hlrc.arena_free[c] = list;
        hlrc.arena_free_cap[c] = cap;
    }
    hlrc.arena_blocks[g] = 0;
    hlrc.arena_free[c][hlrc.arena_free_len[c]++] = g;
out:
    pthread_mutex_unlock(&hlrc.alloc_lock);
    return status;
}

static void hlrc_on_free(void *arg, int src, const void *payload, size_t len)
{
    uint64_t offset;

    memcpy(&offset, payload, sizeof(offset));
    if (arena_free(offset) != FTSVM_OK) {
        ftsvm_error("node %d freed 0x%llx of this node's arena, which is not a live block",
                    src, (unsigned long long)offset);
    }
}

int hlrc_free(void *p)
{
    uint8_t *arenas = hlrc.base + hlrc.collective_size;
    uint64_t offset;
    size_t owner;
    int status;

    if (p == NULL) {
        return FTSVM_OK;
    }
    if ((uint8_t *)p < arenas || (uint8_t *)p >= arenas + (size_t)hlrc.nodes * hlrc.arena_size) {
        ftsvm_error("ftsvm_free: %p does not come from ftsvm_malloc", p);
        return FTSVM_EINVAL;
    }
    owner  = (size_t)((uint8_t *)p - arenas) / hlrc.arena_size;
    offset = (uint64_t)((uint8_t *)p - arena_base((int)owner));
    if ((int)owner != hlrc.node) {
        /* the owner checks it and logs a bad one */
        return rdma_am_send(hlrc.rdma, (int)owner, HLRC_AM_FREE, &offset, sizeof(offset));
    }
    status = arena_free(offset);
    if (status == FTSVM_EINVAL) {
        ftsvm_error("ftsvm_free: %p is not a live block from ftsvm_malloc", p);
    }
    return status;
}

int hlrc_alloc_init(void)
{
    hlrc.collective_size = (hlrc.size / 2) & ~((size_t)HLRC_PAGE_SIZE - 1);
    hlrc.arena_size = ((hlrc.size - hlrc.collective_size) / (size_t)hlrc.nodes) &
                      ~((size_t)HLRC_PAGE_SIZE - 1);
    hlrc.arena_blocks = mmap(NULL, (hlrc.arena_size / GRANULE) * sizeof(uint32_t),
                             PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE,
                             -1, 0);
    if (hlrc.arena_blocks == MAP_FAILED) {
        hlrc.arena_blocks = NULL;
        ftsvm_error("cannot map the arena table: %m");
        return FTSVM_ENOMEM;
    }
    pthread_mutex_init(&hlrc.alloc_lock, NULL);
    return rdma_am_register(hlrc.rdma, HLRC_AM_FREE, 8, 8, hlrc_on_free, NULL);
}

void hlrc_alloc_fini(void)
{
    int c;

    if (hlrc.arena_blocks != NULL) {
        munmap(hlrc.arena_blocks, (hlrc.arena_size / GRANULE) * sizeof(uint32_t));
    }
    for (c = 0; c < CLASSES; c++) {
        free(hlrc.arena_free[c]);
    }
    pthread_mutex_destroy(&hlrc.alloc_lock);
}

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

/* shared allocation: collective area from the bottom, then one malloc
 * arena per node */
static struct {
    pthread_mutex_t lock;
    size_t          collective_top;   /* bytes of the collective area used */
    size_t          collective_size;
    size_t          arena_size;
    size_t          arena_top;        /* bytes of this node's arena used */
    uint32_t       *arena_blocks;     /* per 64-byte granule: size in granules at a block start */
    uint32_t       *arena_free[32];   /* free lists by size class (granule offsets) */
    size_t          arena_free_len[32], arena_free_cap[32];
} alloc;

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
    return hlrc.base + alloc.collective_size + (size_t)node * alloc.arena_size;
}

void *hlrc_alloc(size_t bytes)
{
    size_t align = (bytes >= HLRC_PAGE_SIZE) ? HLRC_PAGE_SIZE : GRANULE, start;

    if (bytes == 0 || bytes > alloc.collective_size) {
        ftsvm_error("ftsvm_alloc: %zu bytes is %s (the collective area holds %zu bytes; "
                    "FTSVM_SHARED_SIZE sets the region)", bytes, bytes ? "too large" : "empty",
                    alloc.collective_size);
        errno = bytes ? ENOMEM : EINVAL;
        return NULL;
    }
    pthread_mutex_lock(&alloc.lock);
    start = (alloc.collective_top + align - 1) & ~(align - 1);
    if (start + bytes > alloc.collective_size) {
        pthread_mutex_unlock(&alloc.lock);
        ftsvm_error("ftsvm_alloc: out of shared memory (%zu of %zu bytes used, %zu asked)",
                    alloc.collective_top, alloc.collective_size, bytes);
        errno = ENOMEM;
        return NULL;
    }
    alloc.collective_top = start + bytes;
    pthread_mutex_unlock(&alloc.lock);
    return hlrc.base + start;
}

void *hlrc_malloc(size_t bytes)
{
    unsigned c;
    size_t granule, block, align;
    uint32_t g;

    if (bytes == 0 || bytes > alloc.arena_size) {
        ftsvm_error("ftsvm_malloc: %zu bytes is %s (a node's arena holds %zu bytes)", bytes,
                    bytes ? "too large" : "empty", alloc.arena_size);
        errno = bytes ? ENOMEM : EINVAL;
        return NULL;
    }
    c = size_class(bytes);
    block = (size_t)GRANULE << c;
    pthread_mutex_lock(&alloc.lock);
    if (alloc.arena_free_len[c] > 0) {
        g = alloc.arena_free[c][--alloc.arena_free_len[c]];
    } else {
        align = (block >= HLRC_PAGE_SIZE) ? HLRC_PAGE_SIZE : GRANULE;
        granule = ((alloc.arena_top + align - 1) & ~(align - 1));
        if (granule + block > alloc.arena_size) {
            pthread_mutex_unlock(&alloc.lock);
            ftsvm_error("ftsvm_malloc: this node's arena is full (%zu bytes)", alloc.arena_size);
            errno = ENOMEM;
            return NULL;
        }
        alloc.arena_top = granule + block;
        g = (uint32_t)(granule / GRANULE);
    }
    alloc.arena_blocks[g] = c + 1;
    pthread_mutex_unlock(&alloc.lock);
    return arena_base(hlrc.node) + (size_t)g * GRANULE;
}

/* Free a block of this node's arena, given its offset in the arena. */
static int arena_free(uint64_t offset)
{
    uint32_t g = (uint32_t)(offset / GRANULE), c;
    uint32_t *list;
    int status = FTSVM_OK;

    pthread_mutex_lock(&alloc.lock);
    if (offset % GRANULE != 0 || offset >= alloc.arena_size || alloc.arena_blocks[g] == 0) {
        status = FTSVM_EINVAL;
        goto out;
    }
    c = alloc.arena_blocks[g] - 1;
    if (alloc.arena_free_len[c] == alloc.arena_free_cap[c]) {
        size_t cap = alloc.arena_free_cap[c] ? 2 * alloc.arena_free_cap[c] : 64;

        list = realloc(alloc.arena_free[c], cap * sizeof(uint32_t));
        if (list == NULL) {
            status = FTSVM_ENOMEM;   /* the block leaks; nothing is corrupted */
            goto out;
        }
        alloc.arena_free[c] = list;
        alloc.arena_free_cap[c] = cap;
    }
    alloc.arena_blocks[g] = 0;
    alloc.arena_free[c][alloc.arena_free_len[c]++] = g;
out:
    pthread_mutex_unlock(&alloc.lock);
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
    uint8_t *arenas = hlrc.base + alloc.collective_size;
    uint64_t offset;
    size_t owner;
    int status;

    if (p == NULL) {
        return FTSVM_OK;
    }
    if ((uint8_t *)p < arenas ||
        (uint8_t *)p >= arenas + (size_t)hlrc.app_nodes * alloc.arena_size) {
        ftsvm_error("ftsvm_free: %p does not come from ftsvm_malloc", p);
        return FTSVM_EINVAL;
    }
    owner  = (size_t)((uint8_t *)p - arenas) / alloc.arena_size;
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
    memset(&alloc, 0, sizeof(alloc));
    alloc.collective_size = (hlrc.size / 2) & ~((size_t)HLRC_PAGE_SIZE - 1);
    alloc.arena_size = ((hlrc.size - alloc.collective_size) / (size_t)hlrc.app_nodes) &
                      ~((size_t)HLRC_PAGE_SIZE - 1);
    alloc.arena_blocks = mmap(NULL, (alloc.arena_size / GRANULE) * sizeof(uint32_t),
                             PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE,
                             -1, 0);
    if (alloc.arena_blocks == MAP_FAILED) {
        alloc.arena_blocks = NULL;
        ftsvm_error("cannot map the arena table: %m");
        return FTSVM_ENOMEM;
    }
    pthread_mutex_init(&alloc.lock, NULL);
    return rdma_am_register(hlrc.rdma, HLRC_AM_FREE, 8, 8, hlrc_on_free, NULL);
}

void hlrc_alloc_fini(void)
{
    int c;

    if (alloc.arena_size == 0) {
        return;   /* hlrc_alloc_init did not get this far */
    }
    if (alloc.arena_blocks != NULL) {
        munmap(alloc.arena_blocks, (alloc.arena_size / GRANULE) * sizeof(uint32_t));
    }
    for (c = 0; c < CLASSES; c++) {
        free(alloc.arena_free[c]);
    }
    pthread_mutex_destroy(&alloc.lock);
    memset(&alloc, 0, sizeof(alloc));
}

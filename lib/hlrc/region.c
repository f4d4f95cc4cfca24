/*
 * The shared region and the per-page tables (DESIGN.md section 3).
 *
 * The region is a memfd mapped twice: at a fixed address, the same on every
 * node (MAP_FIXED_NOREPLACE, so nothing of the process is ever overwritten),
 * where the application sees it with per-page protection; and at an address
 * of the kernel's choice, always read-write, where the library fills a page
 * before it opens it to the application. Filling through the application's
 * view would have to open the page first, and another thread could then read
 * a half-filled page or write without faulting (and so without a twin).
 */
#include "hlrc_int.h"
#include "common/log.h"
#include "ftsvm.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

/* Far from the heap, the stacks and the libraries of a typical x86-64
 * process; the same on every node of a job (same binary, same machine type). */
#define HLRC_BASE ((uintptr_t)0x5a0000000000ull)

hlrc_t hlrc;

int hlrc_region_sizes(const ftsvm_config_t *config, int nodes, size_t sizes[HLRC_NREGIONS])
{
    /* the busiest node's share of the blocks, as primary or secondary, and
     * the headroom for the secondaries it may take after failures
     * (replica_init has built the placement) */
    size_t home_pages = replica_placement.slots_cap * config->home_block;

    sizes[HLRC_REGION_HOME]    = home_pages * HLRC_PAGE_SIZE;
    sizes[HLRC_REGION_META]    = home_pages * 2u * (size_t)nodes * 8u;
    /* rings, then the tail of each writer's ring here, then how far each
     * reader consumed this node's ring */
    sizes[HLRC_REGION_NOTICES] = (size_t)nodes * config->notice_log + 2u * (size_t)nodes * 8u;
    sizes[HLRC_REGION_BARRIER] = (size_t)nodes * (1u + (size_t)nodes) * 8u;
    /* an undo slot beside every home copy (undo.c); one home needs none */
    sizes[HLRC_REGION_UNDO]    = (replica_count() == 2) ? home_pages * HLRC_UNDO_SLOT_BYTES : 8u;
    return FTSVM_OK;
}

static void *hlrc_map_anon(size_t size)
{
    void *p = mmap(NULL, size, PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);

    return (p == MAP_FAILED) ? NULL : p;
}

int hlrc_region_map(const ftsvm_config_t *config)
{
    int fd, status = FTSVM_ESYS;
    void *view;

    hlrc.size       = config->shared_size;
    hlrc.npages     = hlrc.size / HLRC_PAGE_SIZE;
    hlrc.home_block = config->home_block;

    fd = memfd_create("ftsvm-shared", MFD_CLOEXEC);
    if (fd < 0) {
        ftsvm_error("memfd_create failed: %m");
        return FTSVM_ESYS;
    }
    if (ftruncate(fd, (off_t)hlrc.size) != 0) {
        ftsvm_error("cannot size the shared region to %zu bytes: %m", hlrc.size);
        goto out_fd;
    }
    view = mmap((void *)HLRC_BASE, hlrc.size, PROT_NONE,
                MAP_SHARED | MAP_FIXED_NOREPLACE | MAP_NORESERVE, fd, 0);
    if (view == MAP_FAILED || view != (void *)HLRC_BASE) {
        ftsvm_error("cannot reserve the shared region at %p (%zu bytes): %m",
                    (void *)HLRC_BASE, hlrc.size);
        if (view != MAP_FAILED) {
            munmap(view, hlrc.size);   /* an old kernel ignored NOREPLACE */
        }
        goto out_fd;
    }
    hlrc.base = view;
    hlrc.backdoor = mmap(NULL, hlrc.size, PROT_READ | PROT_WRITE,
                         MAP_SHARED | MAP_NORESERVE, fd, 0);
    if (hlrc.backdoor == MAP_FAILED) {
        hlrc.backdoor = NULL;
        ftsvm_error("cannot map the library's view of the shared region: %m");
        goto err_unmap;
    }
    hlrc.state    = hlrc_map_anon(hlrc.npages);
    hlrc.twins    = hlrc_map_anon(hlrc.size);
    hlrc.required = hlrc_map_anon(hlrc.npages * (size_t)hlrc.nodes * sizeof(uint64_t));
    if (hlrc.state == NULL || hlrc.twins == NULL || hlrc.required == NULL) {
        ftsvm_error("cannot map the page tables of a %zu-byte region: %m", hlrc.size);
        goto err_unmap;
    }
    status = FTSVM_OK;
    goto out_fd;

err_unmap:
    hlrc_region_unmap();
    status = FTSVM_ENOMEM;
out_fd:
    close(fd);   /* the mappings keep the memory */
    return status;
}

void hlrc_region_unmap(void)
{
    if (hlrc.base != NULL) {
        munmap(hlrc.base, hlrc.size);
    }
    if (hlrc.backdoor != NULL) {
        munmap(hlrc.backdoor, hlrc.size);
    }
    if (hlrc.state != NULL) {
        munmap((void *)hlrc.state, hlrc.npages);
    }
    if (hlrc.twins != NULL) {
        munmap(hlrc.twins, hlrc.size);
    }
    if (hlrc.required != NULL) {
        munmap(hlrc.required, hlrc.npages * (size_t)hlrc.nodes * sizeof(uint64_t));
    }
    hlrc.base = hlrc.backdoor = hlrc.twins = NULL;
    hlrc.state = NULL;
    hlrc.required = NULL;
}

/* A job of one node has no other writer, reader or home: the whole region
 * opens for reading and writing at once, and then no access faults, no page
 * is twinned or diffed and a release has nothing to write (PAGE_WRITE here
 * means only "open"; the update list stays empty). */
int hlrc_region_open_all(void)
{
    if (mprotect(hlrc.base, hlrc.size, PROT_READ | PROT_WRITE) != 0) {
        ftsvm_error("cannot open the shared region of a one-node job: %m");
        return FTSVM_ESYS;
    }
    memset((void *)hlrc.state, PAGE_WRITE, hlrc.npages);
    return FTSVM_OK;
}

int hlrc_protect(size_t page, int prot)
{
    if (mprotect(hlrc.base + page * HLRC_PAGE_SIZE, HLRC_PAGE_SIZE, prot) != 0) {
        ftsvm_error("mprotect of page 0x%zx failed: %m", page);
        return FTSVM_ESYS;
    }
    return FTSVM_OK;
}

size_t hlrc_blocks(const ftsvm_config_t *config)
{
    size_t npages = config->shared_size / HLRC_PAGE_SIZE;

    return (npages + config->home_block - 1) / config->home_block;
}

/*
 * Access faults (DESIGN.md sections 3 and 4): a read of an invalid page
 * fetches it; a write to a valid page twins it, records it in the node's
 * update list and opens it for writing.
 *
 * Page states move through PAGE_BUSY: the thread that takes a page changes
 * its copy and its protection, and the others wait (the handler of a
 * synchronous fault may wait). A write to a page whose interval is being
 * propagated finds it busy and waits until propagation ends: the seed's
 * page locking, which keeps writes made after a release's close out of that
 * release's diffs.
 *
 * Faults are synchronous, so the handler runs where the application made
 * the access; it fetches with the transport like any thread would. Passing a
 * shared address to a system call that writes there (read(2) into shared
 * memory) gives EFAULT instead of a fault: touch the page first.
 */
#include "hlrc_int.h"
#include "common/log.h"
#include "ftsvm.h"

#include <errno.h>
#include <sched.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <ucontext.h>

static struct sigaction previous;
static _Atomic int installed;

uint8_t hlrc_page_take(size_t page)
{
    unsigned round = 0;
    uint8_t s;

    for (;;) {
        s = atomic_load_explicit(&hlrc.state[page], memory_order_acquire);
        if (s == PAGE_BUSY) {
            hlrc_backoff(&round);
            continue;
        }
        if (atomic_compare_exchange_weak_explicit(&hlrc.state[page], &s, PAGE_BUSY,
                                                  memory_order_acq_rel,
                                                  memory_order_relaxed)) {
            return s;
        }
    }
}

void hlrc_page_put(size_t page, uint8_t state)
{
    atomic_store_explicit(&hlrc.state[page], state, memory_order_release);
}

/* Fill the library's view of an invalid page. A page no write notice has
 * named is still all zeros everywhere: no fetch. */
static int hlrc_bring_in(size_t page)
{
    const uint64_t *required = hlrc.required + page * (size_t)hlrc.nodes;
    uint8_t *copy = hlrc.backdoor + page * HLRC_PAGE_SIZE;
    int j;

    for (j = 0; j < hlrc.nodes; j++) {
        if (required[j] != 0) {
            stats_add(&hlrc.stats, HLRC_STAT_FETCHES, 1);
            return hlrc_fetch(page, copy);
        }
    }
    stats_add(&hlrc.stats, HLRC_STAT_ZERO_FILLS, 1);
    memset(copy, 0, HLRC_PAGE_SIZE);
    return FTSVM_OK;
}

/* Twin a valid page and open it for writing; the caller holds it busy. */
static int hlrc_open_for_write(size_t page)
{
    memcpy(hlrc.twins + page * HLRC_PAGE_SIZE, hlrc.backdoor + page * HLRC_PAGE_SIZE,
           HLRC_PAGE_SIZE);
    hlrc_update_lock();
    hlrc.updates[hlrc.nupdates++] = (uint32_t)page;
    hlrc_update_unlock();
    return hlrc_protect(page, PROT_READ | PROT_WRITE);
}

/* is_write < 0: unknown; a fault on a readable page is then a write */
static int hlrc_page_fault(size_t page, int is_write)
{
    unsigned round = 0;
    uint8_t s;
    int status;

    for (;;) {
        s = atomic_load_explicit(&hlrc.state[page], memory_order_acquire);
        switch (s) {
        case PAGE_BUSY:
            hlrc_backoff(&round);
            continue;
        case PAGE_WRITE:
            return FTSVM_OK;   /* another thread opened it meanwhile */
        case PAGE_READ:
            if (is_write == 0) {
                return FTSVM_OK;
            }
            if (!atomic_compare_exchange_weak(&hlrc.state[page], &s, PAGE_BUSY)) {
                continue;
            }
            stats_add(&hlrc.stats, HLRC_STAT_WRITE_FAULTS, 1);
            status = hlrc_open_for_write(page);
            hlrc_page_put(page, (status == FTSVM_OK) ? PAGE_WRITE : PAGE_READ);
            return status;
        case PAGE_INVALID:
            if (!atomic_compare_exchange_weak(&hlrc.state[page], &s, PAGE_BUSY)) {
                continue;
            }
            stats_add(&hlrc.stats, HLRC_STAT_READ_FAULTS, 1);
            status = hlrc_bring_in(page);
            if (status != FTSVM_OK) {
                hlrc_page_put(page, PAGE_INVALID);
                return status;
            }
            if (is_write > 0) {
                stats_add(&hlrc.stats, HLRC_STAT_WRITE_FAULTS, 1);
                status = hlrc_open_for_write(page);
                hlrc_page_put(page, (status == FTSVM_OK) ? PAGE_WRITE : PAGE_INVALID);
                return status;
            }
            status = hlrc_protect(page, PROT_READ);
            hlrc_page_put(page, (status == FTSVM_OK) ? PAGE_READ : PAGE_INVALID);
            return status;
        }
    }
}

static int hlrc_fault_is_write(void *context)
{
#if defined(__x86_64__)
    ucontext_t *uc = context;

    return (uc->uc_mcontext.gregs[REG_ERR] & 0x2) ? 1 : 0;
#else
    (void)context;
    return -1;
#endif
}

static void hlrc_fault_handler(int sig, siginfo_t *info, void *context)
{
    uint8_t *addr = info->si_addr;
    int saved_errno = errno, status;

    if (!atomic_load(&installed) || addr < hlrc.base || addr >= hlrc.base + hlrc.size) {
        /* not ours: behave as if we were not here */
        if (previous.sa_flags & SA_SIGINFO) {
            previous.sa_sigaction(sig, info, context);
        } else if (previous.sa_handler != SIG_IGN && previous.sa_handler != SIG_DFL) {
            previous.sa_handler(sig);
        } else {
            signal(sig, SIG_DFL);   /* re-executing the access ends the process */
        }
        return;
    }
    status = hlrc_page_fault((size_t)(addr - hlrc.base) / HLRC_PAGE_SIZE,
                             hlrc_fault_is_write(context));
    if (status != FTSVM_OK) {
        ftsvm_error("cannot make shared address %p accessible: %s", (void *)addr,
                    ftsvm_strerror(status));
        abort();
    }
    errno = saved_errno;
}

int hlrc_fault_install(void)
{
    struct sigaction action;

    memset(&action, 0, sizeof(action));
    action.sa_sigaction = hlrc_fault_handler;
    action.sa_flags     = SA_SIGINFO | SA_RESTART;
    sigemptyset(&action.sa_mask);
    if (sigaction(SIGSEGV, &action, &previous) != 0) {
        ftsvm_error("cannot install the SIGSEGV handler: %m");
        return FTSVM_ESYS;
    }
    atomic_store(&installed, 1);
    return FTSVM_OK;
}

void hlrc_fault_remove(void)
{
    if (atomic_exchange(&installed, 0)) {
        sigaction(SIGSEGV, &previous, NULL);
    }
}

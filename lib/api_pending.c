/* Entry points of the API contract whose modules are not built yet: shared
 * memory, locks and barriers (lib/hlrc, lib/locks) and ftsvm_for
 * (lib/failure). They fail with FTSVM_ENOSYS and say so once, so that
 * programs written against the whole contract compile and link today. */
#include "common/log.h"
#include "ftsvm.h"

#include <errno.h>
#include <stdatomic.h>

static _Atomic int said;

static int pending(const char *what)
{
    if (!atomic_exchange(&said, 1)) {
        ftsvm_error("%s: shared memory, locks, barriers and ftsvm_for are not "
                    "implemented in this version of ftsvm", what);
    }
    return FTSVM_ENOSYS;
}

void *ftsvm_alloc(size_t bytes)
{
    (void)bytes;
    pending("ftsvm_alloc");
    errno = ENOSYS;
    return NULL;
}

void *ftsvm_malloc(size_t bytes)
{
    (void)bytes;
    pending("ftsvm_malloc");
    errno = ENOSYS;
    return NULL;
}

void ftsvm_free(void *p)
{
    if (p != NULL) {
        pending("ftsvm_free");
    }
}

int ftsvm_lock_acquire(unsigned lock)
{
    (void)lock;
    return pending("ftsvm_lock_acquire");
}

int ftsvm_lock_release(unsigned lock)
{
    (void)lock;
    return pending("ftsvm_lock_release");
}

int ftsvm_barrier(void)
{
    return pending("ftsvm_barrier");
}

int ftsvm_for(size_t n, size_t chunk, void (*fn)(size_t, size_t, void *), void *arg)
{
    (void)n;
    (void)chunk;
    (void)fn;
    (void)arg;
    return pending("ftsvm_for");
}

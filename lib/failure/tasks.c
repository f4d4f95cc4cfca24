/* ftsvm_for: see tasks.h. */
#include "tasks.h"
#include "common/log.h"
#include "ftsvm.h"

int tasks_for(size_t n, size_t chunk, void (*fn)(size_t first, size_t count, void *arg),
              void *arg)
{
    (void)n;
    (void)chunk;
    (void)fn;
    (void)arg;
    ftsvm_error("ftsvm_for is not implemented yet");
    return FTSVM_ENOSYS;
}

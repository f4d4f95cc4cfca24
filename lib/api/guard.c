/*
 * The guard of ftsvm_for and ftsvm_for_reduce: nothing on the node releases
 * while chunks run.
 *
 * A release publishes every write of the node's open interval, those of a
 * running or finished but uncommitted chunk included, ahead of the chunk's
 * commit mark: if the node died then, a survivor would run the chunk again
 * on top of its published writes (a lock taken in a chunk to add to a
 * counter counts items twice). So while an ftsvm_for runs on a node, the
 * public calls that release or lead to a release (lock acquire and release,
 * barrier, ftsvm_for, ftsvm_finalize) fail with FTSVM_ESTATE, in every run,
 * failure or not: from a chunk (tasks_running_chunk, per thread: the
 * threads that run chunks are the caller and its helpers) and from any
 * other thread of the node (guard.loops).
 *
 * Refused, not made safe. Holding another thread's release back until the
 * loop returns would keep exactly once, but that thread would stall for a
 * whole loop with no word, and a barrier held back so would deadlock with a
 * caller whose next ftsvm_for waited for it; a release let through at a
 * point between batches would still publish the last batch's writes ahead
 * of their commit. A clear error, the same in every run, is what a user can
 * act on. A lock release already under way when ftsvm_for starts ends first
 * (it takes bounded time; guard.releasing); an acquire under way is no
 * release. A barrier entered before the loop cannot release during it: its
 * node's part starts when every registered thread arrived, the loop's
 * caller and helpers included.
 */
#include "tasks_int.h"
#include "common/log.h"
#include "ftsvm.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

__thread int tasks_running_chunk;

static struct {
    pthread_mutex_t mutex;
    pthread_cond_t  cond;        /* releasing fell to 0 */
    int             loops;       /* an ftsvm_for runs on this node */
    unsigned        releasing;   /* guarded lock releases in flight */
} guard = { PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, 0, 0 };

static int refuse_in_chunk(const char *call)
{
    ftsvm_error("%s: refused inside an ftsvm_for chunk: a chunk takes no lock, barrier or "
                "loop (what it wrote would be published before its commit mark, and applied "
                "twice if a failure made it run again); for a result, use ftsvm_for_reduce",
                call);
    tasks_count_refused();
    return FTSVM_ESTATE;
}

static int refuse_in_loop(const char *call)
{
    ftsvm_error("%s: refused while ftsvm_for runs on this node: a release by another thread "
                "would publish the running chunks' writes before their commit marks, and "
                "break exactly once if this node failed; call it after ftsvm_for returns",
                call);
    tasks_count_refused();
    return FTSVM_ESTATE;
}

int tasks_in_chunk(void)
{
    return tasks_running_chunk;
}

int tasks_guard_enter(const char *call, int releases)
{
    int loops;

    if (tasks_running_chunk) {
        return refuse_in_chunk(call);
    }
    pthread_mutex_lock(&guard.mutex);
    loops = guard.loops;
    if (!loops && releases) {
        guard.releasing++;
    }
    pthread_mutex_unlock(&guard.mutex);
    return loops ? refuse_in_loop(call) : FTSVM_OK;
}

void tasks_guard_leave(int releases)
{
    if (!releases) {
        return;
    }
    pthread_mutex_lock(&guard.mutex);
    if (--guard.releasing == 0) {
        pthread_cond_broadcast(&guard.cond);
    }
    pthread_mutex_unlock(&guard.mutex);
}

int tasks_loop_begin(const char *call)
{
    if (tasks_running_chunk) {
        return refuse_in_chunk(call);
    }
    pthread_mutex_lock(&guard.mutex);
    if (guard.loops) {
        pthread_mutex_unlock(&guard.mutex);
        return refuse_in_loop(call);
    }
    guard.loops = 1;
    while (guard.releasing > 0) {
        pthread_cond_wait(&guard.cond, &guard.mutex);
    }
    pthread_mutex_unlock(&guard.mutex);
    return FTSVM_OK;
}

void tasks_loop_end(void)
{
    pthread_mutex_lock(&guard.mutex);
    guard.loops = 0;
    pthread_mutex_unlock(&guard.mutex);
}

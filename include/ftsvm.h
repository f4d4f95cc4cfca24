/*
 * ftsvm — fault-tolerant shared virtual memory for SMP-threaded programs.
 *
 * The one installed header: the API contract of DESIGN.md section 9.
 * Every function returns 0 or a negative FTSVM_E* code unless documented
 * otherwise; ftsvm_strerror() describes a code.
 *
 * Programs are SPMD: every node runs the same program. Start them with
 * `ftsvm-run -n N ./app` on one machine, or under a PMIx launcher
 * (srun, mpirun) on a cluster.
 */
#ifndef FTSVM_H
#define FTSVM_H

#include <pthread.h>
#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

#define FTSVM_VERSION_MAJOR 0
#define FTSVM_VERSION_MINOR 1
#define FTSVM_VERSION_PATCH 0

/* Status codes, grouped by how far a failure reaches. */
enum {
    FTSVM_OK          = 0,
    /* the caller's own mistake */
    FTSVM_EINVAL      = -1,   /* bad argument or configuration value */
    FTSVM_ESTATE      = -2,   /* call not allowed now (e.g. before ftsvm_init) */
    FTSVM_ERANGE      = -3,   /* id or size out of range */
    FTSVM_ENOSYS      = -4,   /* not implemented in this version */
    /* local resources */
    FTSVM_ENOMEM      = -10,  /* out of memory or shared space */
    FTSVM_ESYS        = -11,  /* a system call failed (see the log) */
    FTSVM_ETRANSPORT  = -12,  /* the transport failed locally */
    FTSVM_ETIMEDOUT   = -13,  /* a wait ran out of time */
    FTSVM_EBOOT       = -14,  /* start-up (rendezvous, PMIx) failed */
    /* another node */
    FTSVM_EPEER       = -20,  /* the peer failed or is unreachable */
    FTSVM_EPROTO      = -21,  /* a peer sent a message that does not parse */
    /* this node */
    FTSVM_EFENCED     = -30,  /* this node was removed from the view */
};

/* ftsvm_init does not return in a spare node (FTSVM_SPARES): it serves as
 * a home and exits 0 at the end of the job. Unless the program has a
 * SIGUSR2 handler of its own, ftsvm_init installs one: SIGUSR2 asks the
 * node to leave the job at its next barrier or ftsvm_for batch boundary
 * (planned eviction; README). */
int         ftsvm_init(int *argc, char ***argv);
int         ftsvm_finalize(void);
const char *ftsvm_strerror(int err);

int ftsvm_node(void);            /* this node's id, 0..ftsvm_nodes()-1 (negative before init) */
int ftsvm_nodes(void);           /* number of application nodes the job started with (no spares) */
int ftsvm_alive(int node);       /* 1 alive, 0 failed, negative error */

/* Membership views: view 0 has every node; each view change removes failed
 * nodes for good. A callback registered here runs once per view change on
 * every survivor, after recovery, on a library thread (keep it short; it
 * may call ftsvm_alive and ftsvm_view but not lock or barrier calls). */
typedef void (*ftsvm_view_cb_t)(unsigned view, int removed_node, void *arg);
int ftsvm_on_view_change(ftsvm_view_cb_t cb, void *arg);
int ftsvm_view(void);            /* the current view number, negative error */

/* Exit status of a node that stopped itself because it was removed from
 * the view (fail-stop is enforced: it touches no shared memory after that). */
#define FTSVM_EXIT_FENCED 75

/* Shared memory. ftsvm_alloc is collective: same call order on every node;
 * it returns the same address on every node, NULL on error. */
void *ftsvm_alloc(size_t bytes);
void *ftsvm_malloc(size_t bytes);   /* any node, any time */
void  ftsvm_free(void *p);

int ftsvm_lock_acquire(unsigned lock);
int ftsvm_lock_release(unsigned lock);

/* Every registered thread of every live node: each node's main thread plus
 * threads from ftsvm_thread_create that have not yet returned. */
int ftsvm_barrier(void);

int ftsvm_thread_create(pthread_t *t, void *(*fn)(void *), void *arg);
int ftsvm_thread_id(void);  /* global id of the calling thread, 0..ftsvm_threads()-1 */
int ftsvm_threads(void);    /* nodes x threads per node; the main thread counts as one */

/* Fault-tolerant parallel loop: collective, called once per live node (by
 * one thread; the node runs chunks on its ftsvm_threads()/ftsvm_nodes()
 * threads: the caller and helpers made with ftsvm_thread_create, so the
 * node's other thread slots should be free). fn(first, count, arg) runs on
 * chunks of `chunk` items of [0, n); ftsvm_for returns when every chunk has
 * been committed exactly once, re-runs after a failure included, and then
 * every chunk's writes are visible to the caller. A chunk's writes and its
 * commit are in one release, so a chunk a failed node was running left no
 * trace and is run again by a survivor.
 *
 * Nothing on the node may release while chunks run, or a chunk's writes
 * would be published before its commit and applied twice after a failure.
 * So, every time, failure or not:
 * - from inside fn, ftsvm_lock_acquire, ftsvm_lock_release, ftsvm_barrier,
 *   ftsvm_for, ftsvm_for_reduce and ftsvm_finalize fail with FTSVM_ESTATE
 *   (and ftsvm_alloc, which is collective, returns NULL), each with an error
 *   in the log that says why;
 * - while ftsvm_for runs on a node, the same calls from any other thread of
 *   that node fail with FTSVM_ESTATE (a lock it holds stays held; release
 *   it after ftsvm_for returns).
 * A chunk that needs a combined result (a sum, a count, a maximum) instead
 * of a lock uses ftsvm_for_reduce. fn must write only what is its own chunk's
 * (its items, its slots): with no lock, two chunks that update the same
 * word race, as pthreads would. */
int ftsvm_for(size_t n, size_t chunk,
              void (*fn)(size_t first, size_t count, void *arg), void *arg);

/* Combines the partial result `from` into `into` (both `size` bytes), like
 * an MPI_Op or an OpenMP reduction operator. ftsvm applies it in a fixed
 * order (chunk order), so it need not be commutative. It runs inside
 * ftsvm_for_reduce and may not call lock, barrier or loop functions. */
typedef void (*ftsvm_combine_t)(void *into, const void *from, size_t size, void *arg);

/* Element-wise operators over arrays of double or int64_t (size / 8 of them). */
void ftsvm_sum_double(void *into, const void *from, size_t size, void *arg);
void ftsvm_sum_int64(void *into, const void *from, size_t size, void *arg);
void ftsvm_min_double(void *into, const void *from, size_t size, void *arg);
void ftsvm_max_double(void *into, const void *from, size_t size, void *arg);

/* A reduction over a fault-tolerant loop, the exactly-once replacement for
 * a lock in a chunk: collective like ftsvm_for, with the same chunks and
 * rules. `result` (size bytes, the caller's private memory, up to 16 KiB)
 * holds the identity of combine on entry (0 for a sum, -INFINITY for a
 * maximum), the same on every node. Each chunk gets `partial`, a private
 * copy of that identity, and leaves its chunk's result in it:
 * fn(first, count, arg, partial). The partial is committed with the chunk,
 * so a chunk run again after a failure counts once. On return, result holds
 * identity (+) partial[0] (+) partial[1] (+) ... in chunk order, with (+)
 * combine(into, from, size, arg), on every node: the same bytes everywhere
 * and in every run, whatever the number of nodes, threads or failures
 * (a floating-point sum is reproducible). On an error result is unchanged.
 * FTSVM_EINVAL: fn, result or combine NULL, chunk 0, size 0 or over 16 KiB.
 *
 *     static void dot(size_t first, size_t count, void *arg, void *partial)
 *     {
 *         double *sum = partial;
 *         for (size_t i = first; i < first + count; i++)
 *             *sum += x[i] * y[i];
 *     }
 *     double sum = 0.0;
 *     ftsvm_for_reduce(n, 1000, dot, NULL, &sum, sizeof(sum), ftsvm_sum_double);
 */
int ftsvm_for_reduce(size_t n, size_t chunk,
                     void (*fn)(size_t first, size_t count, void *arg, void *partial),
                     void *arg, void *result, size_t size, ftsvm_combine_t combine);

/* Threads of one node share its intervals: a release by any thread (a lock
 * release, a barrier) publishes everything the node's threads wrote so far,
 * also what a sibling thread wrote inside its own critical section that it
 * has not left yet. If the node then fails, that half-done critical section
 * is durable: the next holder of its lock sees it as it was (a bank transfer
 * with only the debit written). Locks give mutual exclusion and visibility,
 * not atomicity under failures. Exactly once under failures is what
 * ftsvm_for and ftsvm_for_reduce give: a chunk's writes to shared memory
 * take effect whole or not at all, and its partial result counts once. What
 * a chunk does outside shared memory (output, files) happens again when a
 * survivor runs the chunk of a failed node again. */

#ifdef __cplusplus
}
#endif

#endif /* FTSVM_H */

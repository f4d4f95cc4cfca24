/* What the files of ftsvm_for share: tasks.c (the task table and the
 * loop), reduce.c (ftsvm_for_reduce) and guard.c (no release on the node
 * while chunks run). */
#ifndef FTSVM_TASKS_INT_H
#define FTSVM_TASKS_INT_H

#include "tasks.h"

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>

#define TASKS_MAX_THREADS  256
#define TASKS_SLOT_ALIGN   16u

/* ---- one call: the loop, the window being worked on, the node's batch ---- */

typedef struct tasks_batch {
    size_t   index[TASKS_MAX_THREADS];   /* chunk index in the window */
    unsigned count;
    uint32_t generation;                 /* of the window the batch came from */
    size_t   window_first;               /* its first chunk in the loop */
} tasks_batch_t;

/* what ftsvm_for_reduce adds to a loop */
typedef struct tasks_reduce {
    void   (*fn)(size_t first, size_t count, void *arg, void *partial);
    void   (*combine)(void *into, const void *from, size_t size, void *arg);
    size_t   size, stride;   /* of a partial; of its slot */
    uint8_t *identity;       /* the caller's result on entry */
    uint8_t *acc;            /* the folded partials, in chunk order */
    uint8_t *scratch;        /* a partial per chunk of the batch, private */
} tasks_reduce_t;

typedef struct tasks_call {
    size_t   n, chunk, nchunks;
    size_t   window;          /* chunks per window */
    void   (*fn)(size_t first, size_t count, void *arg);
    void    *arg;
    tasks_reduce_t reduce;    /* reduce.fn NULL: a plain loop */
    int      node, threads;

    /* the batch the node's threads run now; under `mutex` */
    pthread_mutex_t mutex;
    pthread_cond_t  work_cond;    /* helpers: a batch is posted, or quit */
    pthread_cond_t  done_cond;    /* the caller: the batch has run */
    tasks_batch_t   batch;
    unsigned        round;        /* bumped for each posted batch */
    unsigned        next;         /* next chunk of the batch to hand out */
    unsigned        finished;     /* chunks of the batch that have run */
    int             quit;
} tasks_call_t;

/* tasks.c */
/* The loop of either call, on this node's threads; the guard is set. */
int  tasks_run(tasks_call_t *call);
/* the threads a loop runs on here: ftsvm_threads() / ftsvm_nodes(), 1..TASKS_MAX_THREADS */
int  tasks_node_threads(void);
void tasks_count_refused(void);

/* guard.c */
/* 1 while this thread runs user code of a loop (a chunk's fn, combine) */
extern __thread int tasks_running_chunk;
/* From here until tasks_loop_end no other releasing call starts on this
 * node, and none is under way; FTSVM_ESTATE (logged) from a chunk or beside
 * another loop. */
int  tasks_loop_begin(const char *call);
void tasks_loop_end(void);

#endif

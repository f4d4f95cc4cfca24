/*
 * The protocol thread: it drives the backend (over UCX/TCP a target answers
 * one-sided operations only while its worker is progressed; over verbs it
 * takes in messages), runs the handlers of active messages and the
 * peer-failure callbacks.
 *
 * It must not burn a core while idle (2-core machines run several nodes):
 * after the last activity it polls for FTSVM_SPIN_US, then arms the backend
 * and sleeps in ppoll on the backend's event fd and a wake-up eventfd. The sleep is
 * bounded by the keepalive interval, because UCX runs keepalive rounds (how a
 * dead peer is noticed over shared memory) only from worker progress.
 *
 * An application thread that waits for one of its own requests may progress
 * the backend itself (UCX); while any does (ctx->waiters > 0), the protocol
 * thread does not progress and does not spin, so that the two do not
 * contend for the worker lock and a core. Callbacks that fire on an
 * application thread only queue their event; the protocol thread runs the
 * handler.
 */
#include "rdma_int.h"
#include "common/clock.h"
#include "common/log.h"
#include "ftsvm.h"

#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <stdlib.h>
#include <sys/eventfd.h>
#include <sys/resource.h>
#include <unistd.h>

/* the nice value of a liveness thread (rdma_liveness_priority) */
#define RDMA_LIVENESS_NICE (-10)

/* how long the protocol thread sleeps while application threads progress */
#define RDMA_WAITER_NAP_NS 200000

__thread int rdma_progress_thread_flag;

void rdma_liveness_priority(const char *name)
{
    /* a nice value of its own for this thread (Linux: the tid) */
    if (setpriority(PRIO_PROCESS, (id_t)gettid(), RDMA_LIVENESS_NICE) != 0) {
        ftsvm_debug("%s thread keeps the process's scheduling priority: %m", name);
    }
}

void rdma_wake(rdma_ctx_t *ctx)
{
    uint64_t one = 1;

    if (write(ctx->wake_fd, &one, sizeof(one)) < 0 && errno != EAGAIN) {
        ftsvm_warn("cannot wake the protocol thread: %m");
    }
}

void rdma_queue_push(rdma_ctx_t *ctx, rdma_event_t *event)
{
    event->next = NULL;
    pthread_mutex_lock(&ctx->queue_lock);
    *ctx->queue_tail = event;
    ctx->queue_tail  = &event->next;
    pthread_mutex_unlock(&ctx->queue_lock);
    if (!rdma_progress_thread_flag) {
        rdma_wake(ctx);
    }
}

unsigned rdma_queue_dispatch(rdma_ctx_t *ctx)
{
    rdma_event_t *event;
    unsigned count = 0;

    for (;;) {
        pthread_mutex_lock(&ctx->queue_lock);
        event = ctx->queue_head;
        if (event != NULL) {
            ctx->queue_head = event->next;
            if (ctx->queue_head == NULL) {
                ctx->queue_tail = &ctx->queue_head;
            }
        }
        pthread_mutex_unlock(&ctx->queue_lock);
        if (event == NULL) {
            return count;
        }
        if (event->kind == RDMA_EVENT_AM) {
            rdma_am_dispatch(ctx, event);
        } else {
            rdma_failure_dispatch(ctx, event->src);
        }
        free(event);
        count++;
    }
}

static void rdma_drain_wake_fd(rdma_ctx_t *ctx)
{
    uint64_t value;

    while (read(ctx->wake_fd, &value, sizeof(value)) > 0) {
    }
}

static void rdma_sleep(rdma_ctx_t *ctx, int with_backend, uint64_t timeout_ns)
{
    struct pollfd fds[2] = {
        { .fd = ctx->wake_fd, .events = POLLIN },
        { .fd = ctx->efd,     .events = POLLIN },
    };
    struct timespec timeout = {
        .tv_sec  = (time_t)(timeout_ns / 1000000000ull),
        .tv_nsec = (long)(timeout_ns % 1000000000ull),
    };

    if (ppoll(fds, (with_backend && ctx->efd >= 0) ? 2 : 1, &timeout, NULL) < 0 && errno != EINTR) {
        ftsvm_warn("protocol thread: ppoll failed: %m");
    }
    if (fds[0].revents & POLLIN) {
        rdma_drain_wake_fd(ctx);
    }
}

static void *rdma_progress_main(void *arg)
{
    rdma_ctx_t *ctx = arg;
    uint64_t last_active = clock_now_ns();
    uint64_t idle_ns = (uint64_t)ctx->idle_timeout_ms * 1000000ull;
    unsigned work;
    int status;

    rdma_progress_thread_flag = 1;
    while (!atomic_load_explicit(&ctx->stop, memory_order_acquire)) {
        work = 0;
        if (atomic_load_explicit(&ctx->waiters, memory_order_acquire) == 0) {
            work = ctx->backend.progress(ctx);
        }
        work += rdma_queue_dispatch(ctx);
        if (work != 0) {
            last_active = clock_now_ns();
            continue;
        }
        if (atomic_load_explicit(&ctx->waiters, memory_order_acquire) != 0) {
            /* an application thread is progressing: stand aside */
            rdma_sleep(ctx, 0, RDMA_WAITER_NAP_NS);
            continue;
        }
        if (clock_now_ns() - last_active < ctx->spin_ns) {
            /* on a loaded machine a woken application thread may be waiting
             * for this core: give it up while there is nothing to do */
            sched_yield();
            continue;
        }
        status = ctx->backend.arm(ctx);
        if (status > 0) {
            continue;   /* events arrived meanwhile: progress them */
        }
        stats_add(&ctx->stats, RDMA_STAT_SLEEPS, 1);
        rdma_sleep(ctx, 1, idle_ns);
        last_active = clock_now_ns();
    }
    return NULL;
}

int rdma_progress_start(rdma_ctx_t *ctx)
{
    int ret;

    ctx->wake_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (ctx->wake_fd < 0) {
        ftsvm_error("eventfd failed: %m");
        return FTSVM_ESYS;
    }
    ret = pthread_create(&ctx->thread, NULL, rdma_progress_main, ctx);
    if (ret != 0) {
        errno = ret;
        ftsvm_error("cannot start the protocol thread: %m");
        return FTSVM_ESYS;
    }
    ctx->thread_started = 1;
    return FTSVM_OK;
}

void rdma_progress_stop(rdma_ctx_t *ctx)
{
    if (!ctx->thread_started) {
        return;
    }
    atomic_store_explicit(&ctx->stop, 1, memory_order_release);
    rdma_wake(ctx);
    pthread_join(ctx->thread, NULL);
    ctx->thread_started = 0;
}

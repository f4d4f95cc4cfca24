/* The nodes' output: every line a node writes leaves on the same stream as
 * "[node] line", whole, and many lines in one write. A line longer than
 * RUN_LINE_MAX is split; a stream that cannot be written is dropped. */
#include "run.h"
#include "common/log.h"
#include "ftsvm.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static void run_out_flush(run_job_t *job, int fd)
{
    size_t done = 0;
    ssize_t n;

    if (job->out_broken[fd]) {
        job->out_len = 0;
        return;
    }
    /* A blocking write: a slow reader of our stdout slows the job down
     * rather than making us hold an unbounded backlog. */
    while (done < job->out_len) {
        n = write(fd, job->out + done, job->out_len - done);
        if (n >= 0) {
            done += (size_t)n;
            continue;
        }
        if (errno == EINTR) {
            continue;
        }
        if (errno == EAGAIN || errno == EWOULDBLOCK) {
            struct pollfd pfd = { .fd = fd, .events = POLLOUT };

            poll(&pfd, 1, -1);   /* someone made our stdout non-blocking */
            continue;
        }
        job->out_broken[fd] = 1;
        ftsvm_warn("cannot write the nodes' output to %s: %m; dropping it from now on",
                   (fd == STDOUT_FILENO) ? "stdout" : "stderr");
        break;
    }
    job->out_len = 0;
}

/* Queue "[node] line\n"; lines leave in whole, one write for many. */
static void run_out_line(run_job_t *job, int node, int fd, const char *line, size_t len)
{
    char prefix[16];
    int prefix_len = snprintf(prefix, sizeof(prefix), "[%d] ", node);

    run_events_scan(&job->events, node, line, len);
    if (job->out_len + (size_t)prefix_len + len + 1 > RUN_OUT_CAP) {
        run_out_flush(job, fd);
    }
    memcpy(job->out + job->out_len, prefix, (size_t)prefix_len);
    job->out_len += (size_t)prefix_len;
    memcpy(job->out + job->out_len, line, len);
    job->out_len += len;
    job->out[job->out_len++] = '\n';
}

static void run_stream_close(run_job_t *job, int node, run_stream_t *stream)
{
    if (stream->partial_len > 0) {
        /* the last line had no newline: give it one */
        run_out_line(job, node, stream->out_fd, stream->partial, stream->partial_len);
        run_out_flush(job, stream->out_fd);
    }
    free(stream->partial);
    stream->partial = NULL;
    stream->partial_len = 0;
    close(stream->fd);
    stream->fd = -1;
    job->open_streams--;
}

/* Read what the pipe has (once) and pass on every complete line. Returns 1
 * when the pipe is at its end, and closes it then. */
int run_stream_read(run_job_t *job, int node, run_stream_t *stream)
{
    char *base = (stream->partial != NULL) ? stream->partial : job->scratch;
    size_t have = stream->partial_len, start = 0, total, rest;
    char *newline;
    ssize_t n;

    n = read(stream->fd, base + have, RUN_LINE_MAX + 1 - have);
    if (n < 0 && (errno == EINTR || errno == EAGAIN || errno == EWOULDBLOCK)) {
        return 0;
    }
    if (n <= 0) {
        if (n < 0) {
            ftsvm_warn("cannot read the output of node %d: %m", node);
        }
        run_stream_close(job, node, stream);
        return 1;
    }
    total = have + (size_t)n;
    if (stream->split && have == 0 && base[0] == '\n') {
        start = 1;   /* the end of the line that was cut before */
    }
    stream->split = 0;
    while (start < total &&
           (newline = memchr(base + start, '\n', total - start)) != NULL) {
        run_out_line(job, node, stream->out_fd, base + start, (size_t)(newline - (base + start)));
        start = (size_t)(newline - base) + 1;
    }
    rest = total - start;
    if (rest == RUN_LINE_MAX + 1) {
        /* over 64 KiB without a newline: pass it on as a line of its own */
        run_out_line(job, node, stream->out_fd, base, rest);
        stream->split = 1;
        rest = 0;
    }
    if (rest > 0 && stream->partial == NULL) {
        stream->partial = malloc(RUN_LINE_MAX + 1);
        if (stream->partial == NULL) {
            /* better a line cut in two than a line lost */
            run_out_line(job, node, stream->out_fd, base + start, rest);
            rest = 0;
        } else {
            memcpy(stream->partial, base + start, rest);
        }
    } else if (rest > 0 && start > 0) {
        memmove(stream->partial, base + start, rest);
    }
    stream->partial_len = rest;
    run_out_flush(job, stream->out_fd);
    return 0;
}

/* The node is gone but something it started still holds its pipes: take
 * what is there and stop waiting. */
void run_stream_abandon(run_job_t *job, int node, run_stream_t *stream)
{
    int i;

    for (i = 0; i < 64 && stream->fd >= 0; i++) {
        struct pollfd pfd = { .fd = stream->fd, .events = POLLIN };

        if (poll(&pfd, 1, 0) <= 0 || run_stream_read(job, node, stream)) {
            break;
        }
    }
    if (stream->fd >= 0) {
        ftsvm_warn("node %d has exited but a process it started still holds its %s open; "
                   "not waiting for it", node, (stream->out_fd == STDOUT_FILENO) ? "stdout" :
                   "stderr");
        run_stream_close(job, node, stream);
    }
}

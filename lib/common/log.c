/* Logging. A line is formatted whole and written with one write(2) so that
 * lines of several threads never interleave; errno is preserved so that
 * callers may log with %m. */
#include "log.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

ftsvm_log_level_t ftsvm_log_level = FTSVM_LOG_WARN;

static int log_node = -1;
static const char *log_name;

static const char *const level_names[] = {
    [FTSVM_LOG_ERROR] = "error", [FTSVM_LOG_WARN] = "warn",
    [FTSVM_LOG_INFO] = "info",   [FTSVM_LOG_DEBUG] = "debug",
    [FTSVM_LOG_TRACE] = "trace",
};

void ftsvm_log_set_node(int node)
{
    log_node = node;
}

void ftsvm_log_set_name(const char *name)
{
    log_name = name;
}

void ftsvm_log(ftsvm_log_level_t level, const char *file, int line,
               const char *fmt, ...)
{
    int saved_errno = errno;
    char buf[1024];
    size_t used;
    int n;
    va_list ap;

    if (log_name != NULL) {
        n = snprintf(buf, sizeof(buf), "%s %s: ", log_name, level_names[level]);
    } else if (log_node >= 0) {
        n = snprintf(buf, sizeof(buf), "ftsvm[%d] %s: ", log_node, level_names[level]);
    } else {
        n = snprintf(buf, sizeof(buf), "ftsvm[?] %s: ", level_names[level]);
    }
    used = (n > 0) ? (size_t)n : 0;

    va_start(ap, fmt);
    errno = saved_errno;
    n = vsnprintf(buf + used, sizeof(buf) - used, fmt, ap);
    va_end(ap);
    used += (n > 0) ? (size_t)n : 0;
    if (used > sizeof(buf) - 2) {
        used = sizeof(buf) - 2;
    }
    if (ftsvm_log_level >= FTSVM_LOG_DEBUG) {
        const char *base = strrchr(file, '/');
        n = snprintf(buf + used, sizeof(buf) - used, " (%s:%d)",
                     base ? base + 1 : file, line);
        used += (n > 0) ? (size_t)n : 0;
        if (used > sizeof(buf) - 2) {
            used = sizeof(buf) - 2;
        }
    }
    buf[used++] = '\n';
    if (write(STDERR_FILENO, buf, used) < 0) {
        /* nothing sensible to do when stderr is gone */
    }
    errno = saved_errno;
}

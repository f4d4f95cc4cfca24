/* Logging: every line carries the node id; level from FTSVM_LOG_LEVEL. */
#ifndef FTSVM_COMMON_LOG_H
#define FTSVM_COMMON_LOG_H

#include <stdarg.h>

typedef enum {
    FTSVM_LOG_ERROR,
    FTSVM_LOG_WARN,
    FTSVM_LOG_INFO,
    FTSVM_LOG_DEBUG,
    FTSVM_LOG_TRACE,
} ftsvm_log_level_t;

extern ftsvm_log_level_t ftsvm_log_level;

/* The id printed on every line; -1 before it is known ("?"). */
void ftsvm_log_set_node(int node);
/* A name printed instead of the node id, for tools ("ftsvm-run"). */
void ftsvm_log_set_name(const char *name);

void ftsvm_log(ftsvm_log_level_t level, const char *file, int line,
               const char *fmt, ...) __attribute__((format(printf, 4, 5)));

#define ftsvm_log_at(_level, ...)                                      \
    do {                                                               \
        if ((_level) <= ftsvm_log_level) {                             \
            ftsvm_log((_level), __FILE__, __LINE__, __VA_ARGS__);      \
        }                                                              \
    } while (0)

#define ftsvm_error(...) ftsvm_log_at(FTSVM_LOG_ERROR, __VA_ARGS__)
#define ftsvm_warn(...)  ftsvm_log_at(FTSVM_LOG_WARN, __VA_ARGS__)
#define ftsvm_info(...)  ftsvm_log_at(FTSVM_LOG_INFO, __VA_ARGS__)
#define ftsvm_debug(...) ftsvm_log_at(FTSVM_LOG_DEBUG, __VA_ARGS__)
#define ftsvm_trace(...) ftsvm_log_at(FTSVM_LOG_TRACE, __VA_ARGS__)

#endif

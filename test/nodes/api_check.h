/* Checks for node programs that see only the public API (they link the
 * shared library, as a user's program does): a failed check prints
 * NODE_NAME, the node and the condition, and exits with FAIL, a code the
 * test that started the node tells from a crash or a library error. */
#ifndef FTSVM_TEST_API_CHECK_H
#define FTSVM_TEST_API_CHECK_H

#include "ftsvm.h"

#include <stdio.h>
#include <stdlib.h>

#ifndef NODE_NAME
#error "define NODE_NAME before including api_check.h"
#endif

#define FAIL 10

#define expect(_cond, ...)                                                        \
    do {                                                                          \
        if (!(_cond)) {                                                           \
            fprintf(stderr, NODE_NAME " %d: check failed: %s: ", ftsvm_node(),    \
                    #_cond);                                                      \
            fprintf(stderr, __VA_ARGS__);                                         \
            fputc('\n', stderr);                                                  \
            exit(FAIL);                                                           \
        }                                                                         \
    } while (0)

#define ok(_call)                                                                 \
    do {                                                                          \
        int _s = (_call);                                                         \
        expect(_s == FTSVM_OK, "%s: %s", #_call, ftsvm_strerror(_s));             \
    } while (0)

#endif

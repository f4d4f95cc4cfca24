/*
 * libFuzzer target for the diff decoder (lib/hlrc/diff.c): any input either
 * is refused without touching the page, or applies within the page; and a
 * page it produced re-encodes to a diff that reproduces it.
 *   ci/fuzz.sh builds it with clang and runs it.
 */
#include "ftsvm.h"
#include "hlrc/diff.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static uint8_t base[HLRC_PAGE_SIZE], page[HLRC_PAGE_SIZE], again[HLRC_PAGE_SIZE];
    static uint8_t diff[HLRC_DIFF_MAX];
    size_t i, encoded;

    for (i = 0; i < HLRC_PAGE_SIZE; i++) {
        base[i] = (uint8_t)(i * 131 + 7);
    }
    memcpy(page, base, sizeof(page));
    if (hlrc_diff_apply(page, data, size) != FTSVM_OK) {
        if (memcmp(page, base, sizeof(page)) != 0) {
            abort();   /* a refused diff must leave the page alone */
        }
        return 0;
    }
    encoded = hlrc_diff_encode(page, base, diff);
    if (encoded > HLRC_DIFF_MAX || hlrc_diff_validate(diff, encoded) != FTSVM_OK) {
        abort();
    }
    memcpy(again, base, sizeof(again));
    if (hlrc_diff_apply(again, diff, encoded) != FTSVM_OK ||
        memcmp(again, page, sizeof(page)) != 0) {
        abort();
    }
    return 0;
}

/* Encoding, walking and applying diffs (diff.h). */
#include "diff.h"
#include "ftsvm.h"

#include <string.h>

static inline uint64_t load64(const uint8_t *p)
{
    uint64_t v;

    memcpy(&v, p, sizeof(v));
    return v;
}

static inline void store16(uint8_t *p, uint16_t v)
{
    memcpy(p, &v, sizeof(v));
}

static inline uint16_t load16(const uint8_t *p)
{
    uint16_t v;

    memcpy(&v, p, sizeof(v));
    return v;
}

size_t hlrc_diff_encode(const uint8_t *work, const uint8_t *twin, uint8_t *out)
{
    size_t pos = 2, i = 0, start;
    uint16_t runs = 0;

    while (i < HLRC_PAGE_SIZE) {
        /* skip equal bytes, a word at a time where aligned */
        if ((i % 8) == 0 && load64(work + i) == load64(twin + i)) {
            i += 8;
            continue;
        }
        if (work[i] == twin[i]) {
            i++;
            continue;
        }
        start = i;
        while (i < HLRC_PAGE_SIZE && work[i] != twin[i]) {
            i++;
        }
        store16(out + pos, (uint16_t)start);
        store16(out + pos + 2, (uint16_t)(i - start));
        memcpy(out + pos + 4, work + start, i - start);
        pos += 4 + (i - start);
        runs++;
    }
    store16(out, runs);
    return pos;
}

int hlrc_diff_next(const uint8_t *diff, size_t size, size_t *pos, hlrc_run_t *run)
{
    size_t p = *pos, prev_end = 0;

    if (p == 0) {
        if (size < 2 || load16(diff) > HLRC_PAGE_SIZE / 2) {
            return FTSVM_EPROTO;
        }
        p = 2;
    } else {
        prev_end = (size_t)run->offset + run->length;
    }
    if (p == size) {
        return 0;
    }
    if (size - p < 4) {
        return FTSVM_EPROTO;
    }
    run->offset = load16(diff + p);
    run->length = load16(diff + p + 2);
    if (run->length == 0 || (size_t)run->offset + run->length > HLRC_PAGE_SIZE ||
        size - p - 4 < run->length ||
        (p > 2 && run->offset <= prev_end)) {   /* runs never touch: offset > prev end */
        return FTSVM_EPROTO;
    }
    run->bytes = diff + p + 4;
    *pos = p + 4 + run->length;
    return 1;
}

int hlrc_diff_validate(const uint8_t *diff, size_t size)
{
    hlrc_run_t run = {0};
    size_t pos = 0, count = 0;
    int ret;

    while ((ret = hlrc_diff_next(diff, size, &pos, &run)) == 1) {
        count++;
    }
    if (ret < 0 || count != load16(diff)) {
        return FTSVM_EPROTO;
    }
    return FTSVM_OK;
}

int hlrc_diff_apply(uint8_t *page, const uint8_t *diff, size_t size)
{
    hlrc_run_t run = {0};
    size_t pos = 0;

    if (hlrc_diff_validate(diff, size) != FTSVM_OK) {
        return FTSVM_EPROTO;
    }
    while (hlrc_diff_next(diff, size, &pos, &run) == 1) {
        memcpy(page + run.offset, run.bytes, run.length);
    }
    return FTSVM_OK;
}

int hlrc_undo_encode(const uint8_t *diff, size_t size, const uint8_t *twin, uint8_t *body,
                     size_t *size_p)
{
    hlrc_run_t run = {0};
    size_t pos = 0, i;

    if (size <= HLRC_UNDO_BODY_MAX) {
        memcpy(body, diff, size);
        while (hlrc_diff_next(body, size, &pos, &run) == 1) {
            memcpy((uint8_t *)run.bytes, twin + run.offset, run.length);
        }
        *size_p = size;
        return HLRC_UNDO_RUNS;
    }
    /* many short runs: their encoding outgrows a page and a mask */
    memset(body, 0, HLRC_UNDO_MASK_BYTES);
    while (hlrc_diff_next(diff, size, &pos, &run) == 1) {
        for (i = run.offset; i < (size_t)run.offset + run.length; i++) {
            body[i / 8u] |= (uint8_t)(1u << (i % 8u));
        }
    }
    memcpy(body + HLRC_UNDO_MASK_BYTES, twin, HLRC_PAGE_SIZE);
    *size_p = HLRC_UNDO_BODY_MAX;
    return HLRC_UNDO_MASK;
}

int hlrc_undo_decode(uint8_t *page, int form, const uint8_t *body, size_t size)
{
    const uint8_t *image = body + HLRC_UNDO_MASK_BYTES;
    size_t i;

    if (form == HLRC_UNDO_RUNS && size <= HLRC_UNDO_BODY_MAX) {
        return hlrc_diff_apply(page, body, size);
    }
    if (form != HLRC_UNDO_MASK || size != HLRC_UNDO_BODY_MAX) {
        return FTSVM_EPROTO;
    }
    for (i = 0; i < HLRC_PAGE_SIZE; i++) {
        if (body[i / 8u] & (1u << (i % 8u))) {
            page[i] = image[i];
        }
    }
    return FTSVM_OK;
}

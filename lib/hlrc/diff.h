/*
 * Diffs (DESIGN.md section 4): the bytes of a working copy that differ from
 * its twin, as runs. Runs are byte-exact: threads of different nodes may write
 * different bytes of one word (distinct C objects), and a run that carried an
 * unchanged byte would overwrite the other writer's byte with our stale twin
 * value at the home. Equal words are skipped 8 bytes at a time, so the common
 * case costs a word compare.
 *
 * Encoded form: u16 run count, then per run u16 offset, u16 length, and the
 * run's bytes. Runs are in increasing offset order and never touch.
 */
#ifndef FTSVM_HLRC_DIFF_H
#define FTSVM_HLRC_DIFF_H

#include <stddef.h>
#include <stdint.h>

#define HLRC_PAGE_SIZE 4096u
/* worst case: every other byte differs, 2048 runs of 1 byte */
#define HLRC_DIFF_MAX  (2u + (HLRC_PAGE_SIZE / 2u) * 5u)

typedef struct hlrc_run {
    uint16_t       offset;
    uint16_t       length;
    const uint8_t *bytes;   /* inside the encoded diff */
} hlrc_run_t;

/* Encode work against twin into out (HLRC_DIFF_MAX bytes); returns the
 * encoded size. No runs (2 bytes) when nothing changed. */
size_t hlrc_diff_encode(const uint8_t *work, const uint8_t *twin, uint8_t *out);

/* Walk an encoded diff: *pos starts at 0; returns 1 and fills *run while
 * runs remain, 0 at the end, and a negative FTSVM_E* code when the encoding
 * is malformed (truncated, out of the page, out of order, overlapping). */
int hlrc_diff_next(const uint8_t *diff, size_t size, size_t *pos, hlrc_run_t *run);

/* Check a whole encoded diff; FTSVM_OK or FTSVM_EPROTO. */
int hlrc_diff_validate(const uint8_t *diff, size_t size);

/* Apply a valid encoded diff to a page; FTSVM_EPROTO (page untouched) when
 * the encoding is malformed. */
int hlrc_diff_apply(uint8_t *page, const uint8_t *diff, size_t size);

/* The undo of a diff (undo.c): what its runs overwrite, taken from the twin.
 * Two forms, whichever fits HLRC_UNDO_BODY_MAX: RUNS, the diff's own runs
 * holding the twin's bytes (as long as the diff); MASK, a bit per byte of
 * the page that a run covers, then the whole twin. */
enum { HLRC_UNDO_RUNS = 1, HLRC_UNDO_MASK = 2 };
#define HLRC_UNDO_MASK_BYTES (HLRC_PAGE_SIZE / 8u)
#define HLRC_UNDO_BODY_MAX   (HLRC_UNDO_MASK_BYTES + HLRC_PAGE_SIZE)

/* Encode the undo of a valid diff into body (HLRC_UNDO_BODY_MAX bytes);
 * returns its form, and its size in *size_p. */
int hlrc_undo_encode(const uint8_t *diff, size_t size, const uint8_t *twin, uint8_t *body,
                     size_t *size_p);
/* Put back into page the bytes the undo holds; FTSVM_EPROTO (page
 * untouched) when it does not parse. */
int hlrc_undo_decode(uint8_t *page, int form, const uint8_t *body, size_t size);

#endif

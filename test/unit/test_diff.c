/*
 * Diff encode/apply as a property test against a plain byte compare: for
 * random pages and random writes, applying the diff of (work, twin) to the
 * twin gives work, and the encoding holds exactly the bytes that differ.
 */
#include "ftsvm.h"
#include "hlrc/diff.h"

#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>

#define PAGE HLRC_PAGE_SIZE

static uint64_t rng_state = 0x9e3779b97f4a7c15ull;

static uint64_t rng(void)
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return rng_state;
}

/* the property, checked against a byte-by-byte compare */
static void check_roundtrip(const uint8_t *work, const uint8_t *twin)
{
    static uint8_t diff[HLRC_DIFF_MAX], page[PAGE];
    size_t size = hlrc_diff_encode(work, twin, diff), pos = 0, covered = 0, i;
    hlrc_run_t run = {0};
    int ret;

    cr_assert(size <= HLRC_DIFF_MAX);
    cr_assert_eq(hlrc_diff_validate(diff, size), FTSVM_OK);
    while ((ret = hlrc_diff_next(diff, size, &pos, &run)) == 1) {
        for (i = run.offset; i < (size_t)run.offset + run.length; i++) {
            cr_assert_neq(work[i], twin[i], "byte %zu is equal but in a run", i);
        }
        covered += run.length;
    }
    cr_assert_eq(ret, 0);
    for (i = 0; i < PAGE; i++) {
        covered -= (work[i] != twin[i]);
    }
    cr_assert_eq(covered, 0, "runs do not cover exactly the changed bytes");
    memcpy(page, twin, PAGE);
    cr_assert_eq(hlrc_diff_apply(page, diff, size), FTSVM_OK);
    cr_assert(memcmp(page, work, PAGE) == 0, "twin + diff != work");
}

static void random_page(uint8_t *p)
{
    size_t i;

    for (i = 0; i < PAGE; i += 8) {
        uint64_t v = rng();
        memcpy(p + i, &v, 8);
    }
}

Test(diff, random_word_writes_roundtrip) {
    uint8_t twin[PAGE], work[PAGE];
    int trial, n, k;

    for (trial = 0; trial < 2000; trial++) {
        random_page(twin);
        memcpy(work, twin, PAGE);
        n = (int)(rng() % 64);
        for (k = 0; k < n; k++) {
            uint64_t v = rng();
            memcpy(work + (rng() % (PAGE / 8)) * 8, &v, 8);
        }
        check_roundtrip(work, twin);
    }
}

Test(diff, random_byte_writes_roundtrip) {
    uint8_t twin[PAGE], work[PAGE];
    int trial, n, k;

    for (trial = 0; trial < 2000; trial++) {
        random_page(twin);
        memcpy(work, twin, PAGE);
        n = (int)(rng() % 300);
        for (k = 0; k < n; k++) {
            work[rng() % PAGE] ^= (uint8_t)(1 + rng() % 255);
        }
        check_roundtrip(work, twin);
    }
}

Test(diff, none_changed_is_empty) {
    uint8_t twin[PAGE], diff[HLRC_DIFF_MAX];

    random_page(twin);
    cr_assert_eq(hlrc_diff_encode(twin, twin, diff), 2);
    check_roundtrip(twin, twin);
}

Test(diff, all_changed_is_one_run) {
    uint8_t twin[PAGE], work[PAGE], diff[HLRC_DIFF_MAX];
    size_t i;

    random_page(twin);
    for (i = 0; i < PAGE; i++) {
        work[i] = (uint8_t)~twin[i];
    }
    cr_assert_eq(hlrc_diff_encode(work, twin, diff), 2 + 4 + PAGE);
    check_roundtrip(work, twin);
}

Test(diff, every_other_byte_is_the_worst_case) {
    uint8_t twin[PAGE], work[PAGE], diff[HLRC_DIFF_MAX];
    size_t i;

    random_page(twin);
    memcpy(work, twin, PAGE);
    for (i = 0; i < PAGE; i += 2) {
        work[i] = (uint8_t)~twin[i];
    }
    cr_assert_eq(hlrc_diff_encode(work, twin, diff), HLRC_DIFF_MAX);
    check_roundtrip(work, twin);
}

/* Two writers change disjoint bytes, some inside the same word: applying
 * both diffs at the home keeps both (false sharing is legal). */
Test(diff, disjoint_writers_of_one_word_both_survive) {
    uint8_t twin[PAGE], a[PAGE], b[PAGE], home[PAGE], want[PAGE];
    uint8_t da[HLRC_DIFF_MAX], db[HLRC_DIFF_MAX];
    size_t i, sa, sb;
    int trial;

    for (trial = 0; trial < 500; trial++) {
        random_page(twin);
        memcpy(a, twin, PAGE);
        memcpy(b, twin, PAGE);
        memcpy(want, twin, PAGE);
        for (i = 0; i < PAGE; i++) {
            if (rng() % 3 == 0) {
                /* even bytes belong to a, odd bytes to b */
                uint8_t v = (uint8_t)(twin[i] + 1 + rng() % 200);
                (i % 2 ? b : a)[i] = v;
                want[i] = v;
            }
        }
        sa = hlrc_diff_encode(a, twin, da);
        sb = hlrc_diff_encode(b, twin, db);
        memcpy(home, twin, PAGE);
        cr_assert_eq(hlrc_diff_apply(home, db, sb), FTSVM_OK);
        cr_assert_eq(hlrc_diff_apply(home, da, sa), FTSVM_OK);
        cr_assert(memcmp(home, want, PAGE) == 0, "a writer's bytes were lost");
    }
}

Test(diff, malformed_encodings_are_refused_and_leave_the_page) {
    static const uint8_t cases[][16] = {
        {1, 0},                                /* one run announced, none there */
        {1, 0, 0, 0, 0, 0},                    /* zero-length run */
        {1, 0, 0xff, 0x0f, 2, 0, 1, 2},        /* run past the page end */
        {1, 0, 0, 0, 4, 0, 1},                 /* truncated data */
        {2, 0, 4, 0, 1, 0, 9, 2, 0, 1, 0, 9},  /* out of order */
        {2, 0, 0, 0, 2, 0, 1, 2, 2, 0, 1, 0, 9}, /* touching runs */
        {0xff, 0xff},                          /* too many runs */
    };
    static const size_t sizes[] = {2, 6, 8, 7, 12, 13, 2};
    uint8_t page[PAGE] = {0}, zero[PAGE] = {0};
    size_t i;

    for (i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
        cr_assert_eq(hlrc_diff_apply(page, cases[i], sizes[i]), FTSVM_EPROTO, "case %zu", i);
        cr_assert(memcmp(page, zero, PAGE) == 0, "case %zu changed the page", i);
    }
    cr_assert_eq(hlrc_diff_apply(page, cases[0], 1), FTSVM_EPROTO, "shorter than a header");
}

/*
 * The undo of a diff (hlrc_undo_encode/decode): at a home copy that got the
 * diff's runs and, elsewhere in the page, another writer's bytes, decoding
 * the undo gives back the twin's bytes under the runs and keeps the other
 * writer's. `changes` bytes of writer A, then B's at the bytes A left alone.
 */
static int check_undo(size_t changes)
{
    static uint8_t twin[PAGE], work[PAGE], other[PAGE], home[PAGE];
    static uint8_t diff[HLRC_DIFF_MAX], body[HLRC_UNDO_BODY_MAX];
    size_t size, body_size, i, at;
    int form;

    random_page(twin);
    memcpy(work, twin, PAGE);
    for (i = 0; i < changes; i++) {
        at = rng() % PAGE;
        work[at] = (uint8_t)(twin[at] ^ (1 + rng() % 255));
    }
    size = hlrc_diff_encode(work, twin, diff);
    form = hlrc_undo_encode(diff, size, twin, body, &body_size);
    cr_assert(body_size <= HLRC_UNDO_BODY_MAX, "an undo of %zu bytes", body_size);
    cr_assert_eq(form, size <= HLRC_UNDO_BODY_MAX ? HLRC_UNDO_RUNS : HLRC_UNDO_MASK);
    /* the home: A's runs, and B's writes where A wrote nothing */
    memcpy(home, twin, PAGE);
    cr_assert_eq(hlrc_diff_apply(home, diff, size), FTSVM_OK);
    for (i = 0; i < PAGE; i++) {
        other[i] = (work[i] == twin[i] && rng() % 4 == 0) ? (uint8_t)~twin[i] : twin[i];
        if (work[i] == twin[i]) {
            home[i] = other[i];
        }
    }
    cr_assert_eq(hlrc_undo_decode(home, form, body, body_size), FTSVM_OK);
    for (i = 0; i < PAGE; i++) {
        cr_assert_eq(home[i], other[i], "byte %zu: 0x%x after the undo, want 0x%x (%s)", i,
                     home[i], other[i], work[i] != twin[i] ? "A's" : "B's");
    }
    return form;
}

Test(undo, restores_the_runs_and_keeps_other_writers_bytes_in_either_form) {
    int trial, forms = 0;

    for (trial = 0; trial < 400; trial++) {
        forms |= check_undo((size_t)(rng() % 3000));
    }
    /* a page of every other byte written is the largest diff: its undo is a mask */
    forms |= check_undo(PAGE);
    cr_assert_eq(forms, HLRC_UNDO_RUNS | HLRC_UNDO_MASK, "both forms were made: 0x%x", forms);
}

Test(undo, a_malformed_undo_is_refused_and_leaves_the_page) {
    uint8_t page[PAGE], before[PAGE], body[HLRC_UNDO_BODY_MAX] = {0xff, 0xff};

    random_page(page);
    memcpy(before, page, PAGE);
    cr_assert_eq(hlrc_undo_decode(page, HLRC_UNDO_RUNS, body, 6), FTSVM_EPROTO);
    cr_assert_eq(hlrc_undo_decode(page, HLRC_UNDO_MASK, body, 100), FTSVM_EPROTO);
    cr_assert_eq(hlrc_undo_decode(page, 7, body, 100), FTSVM_EPROTO);
    cr_assert(memcmp(page, before, PAGE) == 0);
}

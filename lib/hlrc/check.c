/*
 * FTSVM_CHECK_HOMES, a debug check of DESIGN.md 5.2's outcome: after every
 * completed release both homes of a page hold byte-identical copies and the
 * same applied words, with no pending entry. Run where no release is in
 * flight anywhere (between the two rounds of a checked barrier, and at
 * finalize); each node checks the blocks it is primary of against their
 * secondaries.
 */
#include "hlrc_int.h"
#include "common/log.h"
#include "ftsvm.h"

#include <stdlib.h>
#include <string.h>

#define CHECK_REPORTS 8   /* pages reported in full; the rest are counted */

void hlrc_on_check_homes(int (*check)(void))
{
    hlrc.check_above = check;
}

int hlrc_checking_homes(void)
{
    return hlrc.check_homes && hlrc.replicated;
}

static size_t first_difference(const uint8_t *a, const uint8_t *b, size_t len)
{
    size_t i;

    for (i = 0; i < len && a[i] == b[i]; i++) {
    }
    return i;
}

static int check_page(size_t page, uint64_t *meta, uint8_t *copy, size_t *bad)
{
    size_t words = 2u * (size_t)hlrc.nodes, at;
    uint64_t *pmeta = meta, *smeta = meta + words;
    uint8_t *pcopy = copy, *scopy = copy + HLRC_PAGE_SIZE;
    int status, j, written = 0;
    const char *what = NULL;

    status = hlrc_home_read(page, REPLICA_PRIMARY, pmeta, NULL);
    if (status == FTSVM_OK) {
        status = hlrc_home_read(page, REPLICA_SECONDARY, smeta, NULL);
    }
    if (status != FTSVM_OK) {
        return status;
    }
    for (j = 0; j < hlrc.nodes; j++) {
        written |= (pmeta[2 * j] != 0);
        if (pmeta[2 * j + 1] != 0 || smeta[2 * j + 1] != 0) {
            what = "a pending entry is set";
        } else if (pmeta[2 * j] != smeta[2 * j]) {
            what = "the applied words differ";
        }
    }
    if (what == NULL && written) {
        status = hlrc_home_read(page, REPLICA_PRIMARY, pmeta, pcopy);
        if (status == FTSVM_OK) {
            status = hlrc_home_read(page, REPLICA_SECONDARY, smeta, scopy);
        }
        if (status != FTSVM_OK) {
            return status;
        }
        at = first_difference(pcopy, scopy, HLRC_PAGE_SIZE);
        if (at < HLRC_PAGE_SIZE) {
            what = "the copies differ";
            if (*bad < CHECK_REPORTS) {
                ftsvm_error("homes of page 0x%zx: byte %zu is 0x%02x at primary node %d, "
                            "0x%02x at secondary node %d", page, at, pcopy[at],
                            hlrc_home(page, REPLICA_PRIMARY), scopy[at],
                            hlrc_home(page, REPLICA_SECONDARY));
            }
        }
    }
    if (what != NULL) {
        if (*bad < CHECK_REPORTS) {
            for (j = 0; j < hlrc.nodes; j++) {
                if (pmeta[2 * j] != smeta[2 * j] || pmeta[2 * j + 1] || smeta[2 * j + 1]) {
                    ftsvm_error("homes of page 0x%zx: %s; writer %d: applied %llu pending "
                                "%llu at primary node %d, applied %llu pending %llu at "
                                "secondary node %d", page, what, j,
                                (unsigned long long)pmeta[2 * j],
                                (unsigned long long)pmeta[2 * j + 1],
                                hlrc_home(page, REPLICA_PRIMARY),
                                (unsigned long long)smeta[2 * j],
                                (unsigned long long)smeta[2 * j + 1],
                                hlrc_home(page, REPLICA_SECONDARY));
                }
            }
        }
        (*bad)++;
    }
    return FTSVM_OK;
}

int hlrc_check_homes(void)
{
    size_t words = 2u * (size_t)hlrc.nodes, page, bad = 0, checked = 0;
    int status = FTSVM_OK;
    uint64_t *meta;
    uint8_t *copy;

    if (!hlrc_checking_homes()) {
        return FTSVM_OK;
    }
    meta = malloc(2 * words * sizeof(uint64_t));
    copy = malloc(2 * HLRC_PAGE_SIZE);
    if (meta == NULL || copy == NULL) {
        free(meta);
        free(copy);
        return FTSVM_ENOMEM;
    }
    for (page = 0; page < hlrc.npages && status == FTSVM_OK; page++) {
        if (hlrc_home(page, REPLICA_PRIMARY) == hlrc.node &&
            hlrc_home(page, REPLICA_SECONDARY) >= 0) {   /* one home left: nothing to compare */
            status = check_page(page, meta, copy, &bad);
            /* a home that failed under the check (it is out of the target
             * view, not yet of the placement): nothing to compare, as after
             * the view change */
            checked += (status == FTSVM_OK);
            status = (status == FTSVM_EPEER) ? FTSVM_OK : status;
        }
    }
    free(meta);
    free(copy);
    stats_add(&hlrc.stats, HLRC_STAT_HOME_CHECKS, 1);
    if (status == FTSVM_OK && bad > 0) {
        ftsvm_error("home check: %zu of %zu pages differ between their two homes", bad,
                    checked);
        status = FTSVM_EPROTO;
    }
    if (hlrc.check_above != NULL) {
        int above = hlrc.check_above();

        status = (status == FTSVM_OK) ? above : status;
    }
    return status;
}

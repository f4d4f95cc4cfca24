/*
 * The public API, through a program that uses only include/ftsvm.h and
 * libftsvm.so (api_node), and calls made outside a job.
 */
#include "ftsvm.h"
#include "run_util.h"

#include <criterion/criterion.h>

Test(api, node_and_thread_identity_across_nodes, .timeout = 60) {
    char *const argv[] = { FTSVM_RUN, "-n", "3", "--threads", "2", NODE_DIR "/api_node", "ids",
                           NULL };
    run_result_t r = run_cmd(argv, NULL, 50);

    cr_assert(r.exited && r.code == 0, "exit %d:\n%s", r.code, r.output);
    cr_assert_eq(run_count(r.output, ": ids ok"), 3, "%s", r.output);
}

Test(api, stats_are_printed_at_finalize_when_asked, .timeout = 60) {
    char *const argv[] = { FTSVM_RUN, "-n", "2", NODE_DIR "/api_node", "none", NULL };
    char *const env[] = { "FTSVM_STATS=y", NULL };
    run_result_t r = run_cmd(argv, env, 50);

    cr_assert(r.exited && r.code == 0, "exit %d:\n%s", r.code, r.output);
    cr_assert(strstr(r.output, "[0] ftsvm[0] info: stats rdma: puts") != NULL, "%s", r.output);
    cr_assert(strstr(r.output, "[1] ftsvm[1] info: stats rdma: puts") != NULL, "%s", r.output);
    cr_assert(strstr(r.output, "[1] ftsvm[1] info: stats hlrc: read_faults") != NULL, "%s",
              r.output);
    cr_assert(strstr(r.output, "[1] ftsvm[1] info: stats locks: remote_acquires") != NULL, "%s",
              r.output);
}

/* 2-core machines run several nodes: an idle node's protocol thread must
 * sleep, not poll. A polling one would use ~1000 ms of CPU per second. */
Test(api, idle_node_does_not_burn_a_core, .timeout = 60) {
    char *const argv[] = { FTSVM_RUN, "-n", "3", NODE_DIR "/api_node", "idle", NULL };
    run_result_t r = run_cmd(argv, NULL, 50);
    const char *p = r.output;
    int node, found = 0;
    double ms;

    cr_assert(r.exited && r.code == 0, "exit %d:\n%s", r.code, r.output);
    while ((p = strstr(p, ": idle cpu ")) != NULL) {
        cr_assert_eq(sscanf(p - 1, "%d: idle cpu %lf", &node, &ms), 2, "%s", r.output);
        cr_assert(ms < 250, "node %d used %.0f ms of CPU per idle second", node, ms);
        found++;
        p++;
    }
    cr_assert_eq(found, 3, "%s", r.output);
}

Test(api, calls_before_init_fail_with_a_state_error) {
    cr_assert_eq(ftsvm_node(), FTSVM_ESTATE);
    cr_assert_eq(ftsvm_nodes(), FTSVM_ESTATE);
    cr_assert_eq(ftsvm_threads(), FTSVM_ESTATE);
    cr_assert_eq(ftsvm_thread_id(), FTSVM_ESTATE);
    cr_assert_eq(ftsvm_alive(0), FTSVM_ESTATE);
    cr_assert_eq(ftsvm_finalize(), FTSVM_ESTATE);
    cr_assert_null(ftsvm_alloc(64));
    cr_assert_null(ftsvm_malloc(64));
    cr_assert_eq(ftsvm_lock_acquire(0), FTSVM_ESTATE);
    cr_assert_eq(ftsvm_lock_release(0), FTSVM_ESTATE);
    cr_assert_eq(ftsvm_barrier(), FTSVM_ESTATE);
    ftsvm_free((void *)16);   /* logged, no crash */
}

Test(api, init_without_a_launcher_fails_with_a_boot_error) {
    unsetenv("FTSVM_RDV");
    unsetenv("PMIX_RANK");
    cr_assert_eq(ftsvm_init(NULL, NULL), FTSVM_EBOOT);
    /* and a later attempt is allowed again */
    cr_assert_eq(ftsvm_init(NULL, NULL), FTSVM_EBOOT);
}

Test(api, every_status_code_has_its_own_description) {
    static const int codes[] = {
        FTSVM_OK, FTSVM_EINVAL, FTSVM_ESTATE, FTSVM_ERANGE, FTSVM_ENOSYS, FTSVM_ENOMEM,
        FTSVM_ESYS, FTSVM_ETRANSPORT, FTSVM_ETIMEDOUT, FTSVM_EBOOT, FTSVM_EPEER,
        FTSVM_EPROTO, FTSVM_EFENCED,
    };
    const char *unknown = ftsvm_strerror(-999);
    size_t i, j;

    for (i = 0; i < sizeof(codes) / sizeof(codes[0]); i++) {
        cr_assert_str_neq(ftsvm_strerror(codes[i]), unknown, "code %d", codes[i]);
        for (j = 0; j < i; j++) {
            cr_assert_str_neq(ftsvm_strerror(codes[i]), ftsvm_strerror(codes[j]));
        }
    }
}

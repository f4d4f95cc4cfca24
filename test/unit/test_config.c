/* The FTSVM_* configuration table: defaults, parsing of each type, and a
 * clear refusal of every bad value. */
#include "runtime/config.h"
#include "ftsvm.h"

#include <criterion/criterion.h>
#include <criterion/redirect.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

extern char **environ;

/* The table's defaults: without any FTSVM_* variable of the caller's (a run
 * under FTSVM_TRANSPORT=verbs, say); each test is a process of its own. */
static ftsvm_config_t defaults(void)
{
    ftsvm_config_t config;
    char name[128];
    size_t i = 0;

    while (environ[i] != NULL) {
        if (!strncmp(environ[i], "FTSVM_", 6) && strchr(environ[i], '=') != NULL) {
            snprintf(name, sizeof(name), "%.*s", (int)(strchr(environ[i], '=') - environ[i]),
                     environ[i]);
            unsetenv(name);
            continue;   /* environ shifted down */
        }
        i++;
    }
    cr_assert_eq(ftsvm_config_load(&config), FTSVM_OK);
    return config;
}

Test(config, defaults_hold_without_environment) {
    ftsvm_config_t c = defaults();

    cr_assert_eq(c.log_level, 1);          /* warn */
    cr_assert_eq(c.stats, 0);
    cr_assert_eq(c.transport, FTSVM_TRANSPORT_UCX);
    cr_assert_str_empty(c.verbs_device);
    cr_assert_str_empty(c.verbs_addr);
    cr_assert_eq(c.threads, 1);
    cr_assert_float_eq(c.boot_timeout, 30.0, 1e-9);
    cr_assert_float_eq(c.keepalive, 0.01, 1e-9);
    cr_assert_eq(c.node, -1);
    cr_assert_str_empty(c.rdv);
}

Test(config, each_type_parses_its_accepted_forms) {
    ftsvm_config_t c = defaults();

    cr_assert_eq(ftsvm_config_set(&c, "STATS", "yes"), FTSVM_OK);
    cr_assert_eq(c.stats, 1);
    cr_assert_eq(ftsvm_config_set(&c, "STATS", "OFF"), FTSVM_OK);
    cr_assert_eq(c.stats, 0);
    cr_assert_eq(ftsvm_config_set(&c, "THREADS", "16"), FTSVM_OK);
    cr_assert_eq(c.threads, 16);
    cr_assert_eq(ftsvm_config_set(&c, "BOOT_TIMEOUT", "250ms"), FTSVM_OK);
    cr_assert_float_eq(c.boot_timeout, 0.25, 1e-12);
    cr_assert_eq(ftsvm_config_set(&c, "KEEPALIVE", "500us"), FTSVM_OK);
    cr_assert_float_eq(c.keepalive, 0.0005, 1e-12);
    cr_assert_eq(ftsvm_config_set(&c, "BOOT_TIMEOUT", "2.5s"), FTSVM_OK);
    cr_assert_float_eq(c.boot_timeout, 2.5, 1e-12);
    cr_assert_eq(ftsvm_config_set(&c, "LOG_LEVEL", "DEBUG"), FTSVM_OK);
    cr_assert_eq(c.log_level, 3);
    cr_assert_eq(ftsvm_config_set(&c, "RDV", "127.0.0.1:4000"), FTSVM_OK);
    cr_assert_str_eq(c.rdv, "127.0.0.1:4000");
    cr_assert_eq(ftsvm_config_set(&c, "TRANSPORT", "verbs"), FTSVM_OK);
    cr_assert_eq(c.transport, FTSVM_TRANSPORT_VERBS);
    cr_assert_eq(ftsvm_config_set(&c, "VERBS_DEVICE", "rxe0"), FTSVM_OK);
    cr_assert_str_eq(c.verbs_device, "rxe0");
    cr_assert_eq(ftsvm_config_set(&c, "VERBS_ADDR", "10.0.0.1"), FTSVM_OK);
    cr_assert_str_eq(c.verbs_addr, "10.0.0.1");
}

Test(config, bad_values_are_refused_and_leave_the_field, .init = cr_redirect_stderr) {
    static const char *const bad[][2] = {
        {"STATS", "maybe"}, {"THREADS", "0"}, {"THREADS", "1025"}, {"THREADS", "4x"},
        {"THREADS", ""}, {"THREADS", "99999999999999999999"}, {"BOOT_TIMEOUT", "-1"},
        {"BOOT_TIMEOUT", "0"}, {"BOOT_TIMEOUT", "10 min"}, {"BOOT_TIMEOUT", "nan"},
        {"BOOT_TIMEOUT", "inf"}, {"LOG_LEVEL", "loud"}, {"TRANSPORT", "carrier-pigeon"},
        {"NODE", "-2"}, {"SPIN_US", "1e3"},
    };
    ftsvm_config_t c = defaults(), before;
    size_t i;

    for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        before = c;
        cr_assert_eq(ftsvm_config_set(&c, bad[i][0], bad[i][1]), FTSVM_EINVAL,
                     "FTSVM_%s=%s accepted", bad[i][0], bad[i][1]);
        cr_assert(memcmp(&before, &c, sizeof(c)) == 0, "FTSVM_%s changed", bad[i][0]);
    }
    cr_assert_eq(ftsvm_config_set(&c, "NO_SUCH_THING", "1"), FTSVM_EINVAL);
}

Test(config, overlong_string_is_refused) {
    ftsvm_config_t c = defaults();
    char long_value[300];

    memset(long_value, 'a', sizeof(long_value) - 1);
    long_value[sizeof(long_value) - 1] = '\0';
    cr_assert_eq(ftsvm_config_set(&c, "RDV", long_value), FTSVM_EINVAL);
}

Test(config, load_reports_every_bad_variable, .init = cr_redirect_stderr) {
    ftsvm_config_t c;

    setenv("FTSVM_THREADS", "zero", 1);
    setenv("FTSVM_LOG_LEVEL", "loud", 1);
    cr_assert_eq(ftsvm_config_load(&c), FTSVM_EINVAL);
    fflush(stderr);
    cr_assert_stderr_neq_str("");
}

Test(config, load_reads_the_environment) {
    ftsvm_config_t c;

    setenv("FTSVM_THREADS", "4", 1);
    setenv("FTSVM_STATS", "y", 1);
    cr_assert_eq(ftsvm_config_load(&c), FTSVM_OK);
    cr_assert_eq(c.threads, 4);
    cr_assert_eq(c.stats, 1);
}

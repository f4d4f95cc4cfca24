/* ftsvm-info: what this ftsvm is and how it is configured.
 *   ftsvm-info -c    every FTSVM_* variable with its value and doc
 *   ftsvm-info -v    the version */
#include "common/log.h"
#include "runtime/config.h"
#include "ftsvm.h"

#include <stdio.h>
#include <string.h>

static void usage(FILE *out)
{
    fprintf(out, "usage: ftsvm-info [-c | --config] [-v | --version] [-h | --help]\n"
                 "  -c  print every FTSVM_* variable with its current value and doc\n"
                 "  -v  print the version\n");
}

int main(int argc, char **argv)
{
    ftsvm_config_t config;
    int i, show_config = 0, show_version = 0;

    ftsvm_log_set_name("ftsvm-info");
    for (i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "-c") || !strcmp(argv[i], "--config")) {
            show_config = 1;
        } else if (!strcmp(argv[i], "-v") || !strcmp(argv[i], "--version")) {
            show_version = 1;
        } else if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
            usage(stdout);
            return 0;
        } else {
            fprintf(stderr, "ftsvm-info: unknown option '%s'\n", argv[i]);
            usage(stderr);
            return 2;
        }
    }
    if (!show_config && !show_version) {
        show_config = show_version = 1;
    }
    if (show_version) {
        printf("# ftsvm %d.%d.%d\n", FTSVM_VERSION_MAJOR, FTSVM_VERSION_MINOR,
               FTSVM_VERSION_PATCH);
    }
    if (show_config) {
        if (ftsvm_config_load(&config) != FTSVM_OK) {
            fprintf(stderr, "ftsvm-info: the configuration has bad values (see above)\n");
            return 1;
        }
        ftsvm_config_print(&config, stdout);
    }
    return 0;
}

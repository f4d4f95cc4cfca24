/* The FTSVM_* configuration table (STYLE.md "Configuration and logs") and
 * the table of its value types: how each parses a value and prints it. */
#include "config.h"
#include "common/log.h"
#include "ftsvm.h"

#include <errno.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

extern char **environ;

typedef enum {
    CONFIG_BOOL,
    CONFIG_UINT,
    CONFIG_INT,
    CONFIG_SECONDS,
    CONFIG_SIZE,
    CONFIG_ENUM,
    CONFIG_STRING,
} config_type_t;

typedef struct config_entry {
    const char         *name;      /* without the FTSVM_ prefix */
    const char         *dflt;
    const char         *doc;
    size_t              offset;
    config_type_t       type;
    long long           min, max;  /* CONFIG_UINT, CONFIG_INT */
    const char *const  *choices;   /* CONFIG_ENUM, NULL-terminated */
    size_t              size;      /* CONFIG_STRING buffer size */
} config_entry_t;

static const char *const log_level_choices[] = {
    "error", "warn", "info", "debug", "trace", NULL
};
static const char *const transport_choices[] = { "ucx", "verbs", NULL };
static const char *const evict_at_choices[] = { "batch", "barrier", NULL };

#define FIELD(_f) offsetof(ftsvm_config_t, _f)

#define ENTRY(_name, _dflt, _doc, _field, _type) \
    .name = (_name), .dflt = (_dflt), .doc = (_doc), .offset = FIELD(_field), .type = (_type)

static const config_entry_t config_table[] = {
    {ENTRY("LOG_LEVEL", "warn", "log level: error, warn, info, debug or trace",
           log_level, CONFIG_ENUM), .choices = log_level_choices},
    {ENTRY("STATS", "n", "print the per-module counters at ftsvm_finalize (y/n)",
           stats, CONFIG_BOOL)},
    {ENTRY("TRANSPORT", "ucx", "transport backend: ucx (UCP: shared memory, TCP, "
           "InfiniBand/RoCE) or verbs (libibverbs RC queue pairs set up with librdmacm)",
           transport, CONFIG_ENUM), .choices = transport_choices},
    {ENTRY("VERBS_DEVICE", "", "verbs: the RDMA device to use (e.g. rxe0); empty: the first "
           "one ibv_get_device_list finds", verbs_device, CONFIG_STRING),
     .size = sizeof(((ftsvm_config_t *)0)->verbs_device)},
    {ENTRY("VERBS_ADDR", "", "verbs: the IPv4 address this node listens on for connections; "
           "empty: the first IPv4 address of the device's port 1 (its IPv4-mapped GID)",
           verbs_addr, CONFIG_STRING), .size = sizeof(((ftsvm_config_t *)0)->verbs_addr)},
    {ENTRY("THREADS", "1", "threads per node, the main thread included (ftsvm-run --threads)",
           threads, CONFIG_UINT), .min = 1, .max = 1024},
    {ENTRY("BOOT_TIMEOUT", "30", "seconds to wait for every node at start-up before failing",
           boot_timeout, CONFIG_SECONDS)},
    {ENTRY("SPIN_US", "50", "microseconds the protocol thread polls after activity "
           "before it sleeps", spin_us, CONFIG_UINT), .min = 0, .max = 1000000},
    {ENTRY("KEEPALIVE", "0.01", "seconds between transport keepalives; bounds peer-death "
           "detection over shared memory (sets UCX_KEEPALIVE_INTERVAL unless that is set)",
           keepalive, CONFIG_SECONDS)},
    {ENTRY("SHARED_SIZE", "256M", "bytes of the shared region (K, M, G suffixes; a multiple "
           "of 4K)", shared_size, CONFIG_SIZE), .min = 1 << 16, .max = 1ll << 40},
    {ENTRY("HOME_BLOCK", "1", "consecutive pages that have the same home node",
           home_block, CONFIG_UINT), .min = 1, .max = 65536},
    {ENTRY("NOTICE_LOG", "1M", "bytes of each writer's write-notice ring at every node",
           notice_log, CONFIG_SIZE), .min = 1 << 16, .max = 1ll << 32},
    {ENTRY("REPLICAS", "2", "homes per page: 2 keeps a second copy of every page for recovery, 1 is the "
           "single-home protocol (to measure what fault tolerance costs)",
           replicas, CONFIG_UINT), .min = 1, .max = 2},
    {ENTRY("CHECK_HOMES", "n", "debug: at every barrier and at finalize, check that both "
           "homes of every page hold identical copies (y/n)", check_homes, CONFIG_BOOL)},
    {ENTRY("HOME_HEADROOM", "100", "percent more room in every node's home store than its "
           "share at start, for the second copies it takes after failures (re-replication; "
           "address space, touched only where a copy lands)", home_headroom, CONFIG_UINT),
     .min = 0, .max = 10000},
    {ENTRY("SPARES", "0", "the job's last K nodes are spares: they run no application code "
           "(ftsvm_init does not return in them) and take the place of failed nodes as homes "
           "(set by ftsvm-run --spares; under srun or mpirun, start N+K tasks)", spares,
           CONFIG_UINT), .min = 0, .max = 65535},
    {ENTRY("EVICT_AT", "batch", "where a node asked to leave (SIGUSR2, ftsvm-run --evict) "
           "does: batch, at its next barrier or ftsvm_for batch boundary (its rows are copied "
           "again after it left, as after a failure), or barrier, at its next barrier only "
           "(its homes are handed over first: no row ever has one copy)", evict_at,
           CONFIG_ENUM), .choices = evict_at_choices},
    {ENTRY("LOCK_ACK_DELAY_MS", "0", "tests: milliseconds a lock's secondary home waits before "
           "it acks a new requester to the holder", lock_ack_delay_ms, CONFIG_UINT),
     .min = 0, .max = 60000},
    {ENTRY("STOP_AT", "", "tests: <point>[:<k>]@<node>[#<interval>], the release step at "
           "which that node stops itself with SIGSTOP", stop_at, CONFIG_STRING),
     .size = sizeof(((ftsvm_config_t *)0)->stop_at)},
    {ENTRY("FAULT", "", "tests: <point>[:<n>]@<node>[#<interval>], the point at which that "
           "node SIGKILLs itself (`ftsvm-info -c` lists the points in the README)", fault,
           CONFIG_STRING), .size = sizeof(((ftsvm_config_t *)0)->fault)},
    {ENTRY("HB_INTERVAL", "0.02", "seconds between heartbeat reads of every peer (detects "
           "hung or unreachable nodes; dead ones come from the transport)", hb_interval,
           CONFIG_SECONDS)},
    {ENTRY("HB_TIMEOUT", "0.6", "seconds a peer's heartbeat may stand still before it is "
           "suspected (a score: +3 per beat seen, -1 per read without one)", hb_timeout,
           CONFIG_SECONDS)},
    {ENTRY("QUORUM", "y", "a node that loses contact with most of the view fences itself "
           "instead of removing the others (y/n)", quorum, CONFIG_BOOL)},
    {ENTRY("NODE", "-1", "this node's id (set by ftsvm-run)", node, CONFIG_INT),
     .min = -1, .max = 65535},
    {ENTRY("NODES", "-1", "number of nodes in the job (set by ftsvm-run)", nodes, CONFIG_INT),
     .min = -1, .max = 65536},
    {ENTRY("BOOT_ADDR", "", "under srun / mpirun: the address (host name or IP) on which "
           "node 0 serves the start-up rendezvous; empty: its host name",
           boot_addr, CONFIG_STRING), .size = sizeof(((ftsvm_config_t *)0)->boot_addr)},
    {ENTRY("RDV", "", "host:port of the job's rendezvous (set by ftsvm-run)", rdv,
           CONFIG_STRING), .size = sizeof(((ftsvm_config_t *)0)->rdv)},
    {ENTRY("JOB_KEY", "", "the job's rendezvous key (set by ftsvm-run; never printed)",
           job_key, CONFIG_STRING), .size = sizeof(((ftsvm_config_t *)0)->job_key)},
};

#define CONFIG_COUNT (sizeof(config_table) / sizeof(config_table[0]))

static const config_entry_t *config_find(const char *name)
{
    size_t i;

    for (i = 0; i < CONFIG_COUNT; i++) {
        if (strcmp(config_table[i].name, name) == 0) {
            return &config_table[i];
        }
    }
    return NULL;
}

/* ---- the types: how a value is parsed into its field, and printed ---- */

static int parse_bool(const config_entry_t *entry, const char *value, void *field)
{
    if (!strcasecmp(value, "y") || !strcasecmp(value, "yes") ||
        !strcasecmp(value, "1") || !strcasecmp(value, "on") ||
        !strcasecmp(value, "true")) {
        *(int *)field = 1;
        return FTSVM_OK;
    }
    if (!strcasecmp(value, "n") || !strcasecmp(value, "no") ||
        !strcasecmp(value, "0") || !strcasecmp(value, "off") ||
        !strcasecmp(value, "false")) {
        *(int *)field = 0;
        return FTSVM_OK;
    }
    ftsvm_error("FTSVM_%s: '%s' is not a boolean (use y or n)", entry->name, value);
    return FTSVM_EINVAL;
}

static void print_bool(const config_entry_t *entry, const void *field, FILE *out)
{
    fprintf(out, "%s\n", *(const int *)field ? "y" : "n");
}

/* CONFIG_INT and CONFIG_UINT: a decimal integer within [min, max] */
static int parse_integer(const config_entry_t *entry, const char *value, long long *v_p)
{
    char *end;
    long long v;

    errno = 0;
    v = strtoll(value, &end, 10);
    if (errno != 0 || end == value || *end != '\0') {
        ftsvm_error("FTSVM_%s: '%s' is not an integer", entry->name, value);
        return FTSVM_EINVAL;
    }
    if (v < entry->min || v > entry->max) {
        ftsvm_error("FTSVM_%s: %lld is out of range [%lld, %lld]", entry->name, v,
                    entry->min, entry->max);
        return FTSVM_EINVAL;
    }
    *v_p = v;
    return FTSVM_OK;
}

static int parse_uint(const config_entry_t *entry, const char *value, void *field)
{
    long long v;
    int status = parse_integer(entry, value, &v);

    if (status == FTSVM_OK) {
        *(unsigned *)field = (unsigned)v;
    }
    return status;
}

static void print_uint(const config_entry_t *entry, const void *field, FILE *out)
{
    fprintf(out, "%u\n", *(const unsigned *)field);
}

static int parse_int(const config_entry_t *entry, const char *value, void *field)
{
    long long v;
    int status = parse_integer(entry, value, &v);

    if (status == FTSVM_OK) {
        *(int *)field = (int)v;
    }
    return status;
}

static void print_int(const config_entry_t *entry, const void *field, FILE *out)
{
    fprintf(out, "%d\n", *(const int *)field);
}

static int parse_seconds(const config_entry_t *entry, const char *value, void *field)
{
    double v, scale = 1.0;
    char *end;

    errno = 0;
    v = strtod(value, &end);
    if (errno != 0 || end == value) {
        ftsvm_error("FTSVM_%s: '%s' is not a duration (e.g. 2.5, 100ms, 50us)",
                    entry->name, value);
        return FTSVM_EINVAL;
    }
    if (!strcmp(end, "") || !strcmp(end, "s")) {
        scale = 1.0;
    } else if (!strcmp(end, "ms")) {
        scale = 1e-3;
    } else if (!strcmp(end, "us")) {
        scale = 1e-6;
    } else {
        ftsvm_error("FTSVM_%s: '%s' has an unknown unit (use s, ms or us)",
                    entry->name, value);
        return FTSVM_EINVAL;
    }
    if (!isfinite(v) || v <= 0.0 || v * scale > 1e6) {
        ftsvm_error("FTSVM_%s: %s must be above 0 and at most 1000000 s",
                    entry->name, value);
        return FTSVM_EINVAL;
    }
    *(double *)field = v * scale;
    return FTSVM_OK;
}

static void print_seconds(const config_entry_t *entry, const void *field, FILE *out)
{
    fprintf(out, "%g\n", *(const double *)field);
}

static int parse_size(const config_entry_t *entry, const char *value, void *field)
{
    unsigned long long v, scale = 1;
    char *end;

    errno = 0;
    v = strtoull(value, &end, 10);
    if (errno != 0 || end == value || value[0] == '-') {
        ftsvm_error("FTSVM_%s: '%s' is not a size (e.g. 4096, 64K, 256M, 2G)",
                    entry->name, value);
        return FTSVM_EINVAL;
    }
    if (!strcasecmp(end, "k")) {
        scale = 1ull << 10;
    } else if (!strcasecmp(end, "m")) {
        scale = 1ull << 20;
    } else if (!strcasecmp(end, "g")) {
        scale = 1ull << 30;
    } else if (*end != '\0') {
        ftsvm_error("FTSVM_%s: '%s' has an unknown unit (use K, M or G)", entry->name,
                    value);
        return FTSVM_EINVAL;
    }
    if (v > (unsigned long long)entry->max / scale || v * scale < (unsigned long long)entry->min ||
        (v * scale) % 4096 != 0) {
        ftsvm_error("FTSVM_%s: %s must be a multiple of 4K within [%lld, %lld] bytes",
                    entry->name, value, entry->min, entry->max);
        return FTSVM_EINVAL;
    }
    *(size_t *)field = (size_t)(v * scale);
    return FTSVM_OK;
}

static void print_size(const config_entry_t *entry, const void *field, FILE *out)
{
    fprintf(out, "%zu\n", *(const size_t *)field);
}

static int parse_enum(const config_entry_t *entry, const char *value, void *field)
{
    size_t i;

    for (i = 0; entry->choices[i] != NULL; i++) {
        if (!strcasecmp(value, entry->choices[i])) {
            *(int *)field = (int)i;
            return FTSVM_OK;
        }
    }
    ftsvm_error("FTSVM_%s: '%s' is not one of the allowed values (see ftsvm-info -c)",
                entry->name, value);
    return FTSVM_EINVAL;
}

static void print_enum(const config_entry_t *entry, const void *field, FILE *out)
{
    fprintf(out, "%s\n", entry->choices[*(const int *)field]);
}

static int parse_string(const config_entry_t *entry, const char *value, void *field)
{
    size_t len = strlen(value);

    if (len >= entry->size) {
        ftsvm_error("FTSVM_%s: value is %zu characters, at most %zu allowed",
                    entry->name, len, entry->size - 1);
        return FTSVM_EINVAL;
    }
    memcpy(field, value, len + 1);
    return FTSVM_OK;
}

static void print_string(const config_entry_t *entry, const void *field, FILE *out)
{
    if (strcmp(entry->name, "JOB_KEY") == 0 && *(const char *)field) {
        fprintf(out, "(hidden)\n");
    } else {
        fprintf(out, "%s\n", (const char *)field);
    }
}

static const struct {
    int  (*parse)(const config_entry_t *entry, const char *value, void *field);
    void (*print)(const config_entry_t *entry, const void *field, FILE *out);
} config_types[] = {
    [CONFIG_BOOL]    = { parse_bool, print_bool },
    [CONFIG_UINT]    = { parse_uint, print_uint },
    [CONFIG_INT]     = { parse_int, print_int },
    [CONFIG_SECONDS] = { parse_seconds, print_seconds },
    [CONFIG_SIZE]    = { parse_size, print_size },
    [CONFIG_ENUM]    = { parse_enum, print_enum },
    [CONFIG_STRING]  = { parse_string, print_string },
};

static int config_parse(const config_entry_t *entry, const char *value, void *field)
{
    return config_types[entry->type].parse(entry, value, field);
}

int ftsvm_config_set(ftsvm_config_t *config, const char *name, const char *value)
{
    const config_entry_t *entry = config_find(name);

    if (entry == NULL) {
        ftsvm_error("FTSVM_%s: unknown configuration variable", name);
        return FTSVM_EINVAL;
    }
    return config_parse(entry, value, (char *)config + entry->offset);
}

static void config_warn_unknown(void)
{
    char name[128];
    const char *eq;
    char **env;
    size_t len;

    for (env = environ; env != NULL && *env != NULL; env++) {
        if (strncmp(*env, "FTSVM_", 6) != 0) {
            continue;
        }
        eq = strchr(*env, '=');
        len = (eq != NULL) ? (size_t)(eq - *env) : strlen(*env);
        if (len - 6 >= sizeof(name)) {
            ftsvm_warn("ignoring an unknown FTSVM_ variable with a very long name");
            continue;
        }
        memcpy(name, *env + 6, len - 6);
        name[len - 6] = '\0';
        if (config_find(name) == NULL) {
            ftsvm_warn("unknown variable FTSVM_%s ignored (ftsvm-info -c lists the known ones)",
                       name);
        }
    }
}

int ftsvm_config_load(ftsvm_config_t *config_p)
{
    ftsvm_config_t config;
    const char *value;
    char envname[64];
    size_t i;
    int status, failed = 0;

    memset(&config, 0, sizeof(config));
    for (i = 0; i < CONFIG_COUNT; i++) {
        status = config_parse(&config_table[i], config_table[i].dflt,
                              (char *)&config + config_table[i].offset);
        if (status != FTSVM_OK) {
            return status;  /* a bad default is a bug; config_parse logged it */
        }
    }
    for (i = 0; i < CONFIG_COUNT; i++) {
        snprintf(envname, sizeof(envname), "FTSVM_%s", config_table[i].name);
        value = getenv(envname);
        if (value == NULL) {
            continue;
        }
        /* every bad value is reported, not only the first */
        if (config_parse(&config_table[i], value,
                         (char *)&config + config_table[i].offset) != FTSVM_OK) {
            failed = 1;
        }
    }
    config_warn_unknown();
    if (failed) {
        return FTSVM_EINVAL;
    }
    *config_p = config;
    return FTSVM_OK;
}

void ftsvm_config_print(const ftsvm_config_t *config, FILE *out)
{
    const config_entry_t *entry;
    const void *field;
    size_t i;

    for (i = 0; i < CONFIG_COUNT; i++) {
        entry = &config_table[i];
        field = (const char *)config + entry->offset;
        fprintf(out, "# %s (default: %s)\n", entry->doc,
                entry->dflt[0] ? entry->dflt : "empty");
        fprintf(out, "FTSVM_%s=", entry->name);
        config_types[entry->type].print(entry, field, out);
    }
}

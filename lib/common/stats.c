#include "stats.h"
#include "log.h"

#include <pthread.h>
#include <stdio.h>
#include <string.h>

static pthread_mutex_t stats_lock = PTHREAD_MUTEX_INITIALIZER;
static stats_group_t *stats_groups;

void stats_register(stats_group_t *group)
{
    pthread_mutex_lock(&stats_lock);
    group->next = stats_groups;
    stats_groups = group;
    pthread_mutex_unlock(&stats_lock);
}

void stats_unregister(stats_group_t *group)
{
    stats_group_t **link;

    pthread_mutex_lock(&stats_lock);
    for (link = &stats_groups; *link != NULL; link = &(*link)->next) {
        if (*link == group) {
            *link = group->next;
            break;
        }
    }
    pthread_mutex_unlock(&stats_lock);
}

uint64_t stats_lookup(const char *module, const char *name)
{
    uint64_t value = 0;
    stats_group_t *group;
    size_t i;

    pthread_mutex_lock(&stats_lock);
    for (group = stats_groups; group != NULL; group = group->next) {
        if (strcmp(group->module, module) != 0) {
            continue;
        }
        for (i = 0; i < group->count; i++) {
            if (strcmp(group->names[i], name) == 0) {
                value += stats_read(group, i);
            }
        }
    }
    pthread_mutex_unlock(&stats_lock);
    return value;
}

void stats_print(void)
{
    stats_group_t *group;
    char line[900];
    size_t used, i;
    int n;

    pthread_mutex_lock(&stats_lock);
    for (group = stats_groups; group != NULL; group = group->next) {
        used = 0;
        for (i = 0; i < group->count && used < sizeof(line); i++) {
            n = snprintf(line + used, sizeof(line) - used, "%s%s %llu",
                         i ? ", " : "", group->names[i],
                         (unsigned long long)stats_read(group, i));
            used += (n > 0) ? (size_t)n : 0;
        }
        /* printed whatever the log level: the user asked for it */
        ftsvm_log(FTSVM_LOG_INFO, __FILE__, __LINE__, "stats %s: %s",
                  group->module, line);
    }
    pthread_mutex_unlock(&stats_lock);
}

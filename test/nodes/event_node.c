/*
 * A plain program (no ftsvm) that plays a job surviving a failure, printing
 * the lines lib/failure and the apps print, for the launcher's summary of
 * them.   event_node MODE ARGS
 *
 *   fail FILE DET_MS REC_MS
 *       node 1 writes its CLOCK_MONOTONIC time T to FILE and SIGKILLs
 *       itself; node 3 (when there is one) says it fenced itself and exits
 *       75. The others wait for FILE and report node 1's removal: node 0
 *       detected it at T + DET_MS and recovered at T + REC_MS / 2, node 2 at
 *       T + 2 DET_MS and T + REC_MS, and node 2 also prints an event line
 *       that cannot be read. Node 0 prints "verified yes".
 *   cut NODE SECONDS
 *       node NODE waits until its network device (UCX_NET_DEVICES, under
 *       ftsvm-run --netns) is down, says it fenced itself and exits 75; the
 *       others sleep SECONDS, report NODE's removal, and exit 0.
 */
#include <errno.h>
#include <net/if.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define EXIT_FENCED 75
#define MS          1000000ull

static uint64_t now_ns(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static int fence(int node)
{
    fprintf(stderr, "event_node: [ftsvm-event fenced=%d ns=%llu]\n", node,
            (unsigned long long)now_ns());
    return EXIT_FENCED;
}

static void report(int removed, uint64_t detected_ns, uint64_t recovered_ns)
{
    fprintf(stderr, "[ftsvm-event view=1 removed=%d cause=transport detected_ns=%llu "
            "recovered_ns=%llu]\n", removed, (unsigned long long)detected_ns,
            (unsigned long long)recovered_ns);
}

static int play_fail(int node, const char *file, uint64_t det_ms, uint64_t rec_ms)
{
    unsigned long long died = 0;
    char tmp[4096];
    FILE *f;
    int i;

    if (node == 1) {
        snprintf(tmp, sizeof(tmp), "%s.tmp", file);
        f = fopen(tmp, "w");
        if (f == NULL || fprintf(f, "%llu\n", (unsigned long long)now_ns()) < 0 ||
            fclose(f) != 0 || rename(tmp, file) != 0) {
            perror("event_node: cannot write the time of death");
            return 1;
        }
        raise(SIGKILL);
    }
    if (node == 3) {
        return fence(node);
    }
    for (i = 0; i < 10000; i++) {   /* up to 10 s */
        f = fopen(file, "r");
        if (f != NULL) {
            break;
        }
        usleep(1000);
    }
    if (f == NULL || fscanf(f, "%llu", &died) != 1) {
        fprintf(stderr, "event_node: node 1 did not die\n");
        return 1;
    }
    fclose(f);
    if (node == 0) {
        report(1, died + det_ms * MS, died + rec_ms * MS / 2);
        printf("app event_node size 0 nodes 0 threads 1 time 0.0 s verified yes\n");
    } else {
        report(1, died + 2 * det_ms * MS, died + rec_ms * MS);
        fprintf(stderr, "[ftsvm-event view=one removed=1]\n");
    }
    return 0;
}

/* IFF_UP of the device, 1 or 0; -1 if it cannot be read */
static int device_up(const char *dev)
{
    struct ifreq ifr;
    int fd = socket(AF_INET, SOCK_DGRAM, 0), up = -1;

    memset(&ifr, 0, sizeof(ifr));
    snprintf(ifr.ifr_name, sizeof(ifr.ifr_name), "%s", dev);
    if (fd >= 0 && ioctl(fd, SIOCGIFFLAGS, &ifr) == 0) {
        up = (ifr.ifr_flags & IFF_UP) != 0;
    }
    if (fd >= 0) {
        close(fd);
    }
    return up;
}

static int play_cut(int node, int cut, double seconds)
{
    const char *dev = getenv("UCX_NET_DEVICES");
    int up;

    if (node == cut) {
        if (dev == NULL) {
            fprintf(stderr, "event_node: UCX_NET_DEVICES is not set\n");
            return 1;
        }
        while ((up = device_up(dev)) == 1) {
            usleep(1000);
        }
        if (up < 0) {
            fprintf(stderr, "event_node: cannot read the flags of %s: %s\n", dev,
                    strerror(errno));
            return 1;
        }
        return fence(node);
    }
    usleep((useconds_t)(seconds * 1e6));
    report(cut, now_ns(), now_ns());
    if (node == 0) {
        printf("verified yes\n");
    }
    return 0;
}

int main(int argc, char **argv)
{
    const char *mode = (argc > 1) ? argv[1] : "";
    const char *env = getenv("FTSVM_NODE");
    int node = env ? atoi(env) : -1;

    if (!strcmp(mode, "fail") && argc == 5) {
        return play_fail(node, argv[2], strtoull(argv[3], NULL, 10),
                         strtoull(argv[4], NULL, 10));
    }
    if (!strcmp(mode, "cut") && argc == 4) {
        return play_cut(node, atoi(argv[2]), atof(argv[3]));
    }
    fprintf(stderr, "usage: event_node fail FILE DET_MS REC_MS | cut NODE SECONDS\n");
    return 2;
}

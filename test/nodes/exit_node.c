/*
 * A plain program (no ftsvm) for the launcher's own tests.   exit_node MODE ARGS
 *
 *   codes C0 C1 ...   node k exits with code Ck
 *   raise S           node 1 raises signal S, the others exit 0
 *   print             each node prints two lines and an unterminated one
 *   sleep S [N]       sleep S seconds (only node N if given; the others exit 0)
 *   env               print FTSVM_NODE FTSVM_NODES FTSVM_THREADS and whether
 *                     FTSVM_RDV and FTSVM_JOB_KEY are set
 *   netns             print the node's network namespace, UCX_NET_DEVICES,
 *                     UCX_TLS, FTSVM_RDV and whether /sys/class/net lists the
 *                     device (ftsvm-run --netns)
 */
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int main(int argc, char **argv)
{
    const char *mode = (argc > 1) ? argv[1] : "";
    const char *env = getenv("FTSVM_NODE");
    int node = env ? atoi(env) : -1;

    if (!strcmp(mode, "codes")) {
        return (node + 2 < argc) ? atoi(argv[node + 2]) : 0;
    }
    if (!strcmp(mode, "raise") && argc > 2) {
        if (node == 1) {
            raise(atoi(argv[2]));
        }
        return 0;
    }
    if (!strcmp(mode, "print")) {
        printf("hello from %d\n", node);
        fflush(stdout);
        fprintf(stderr, "to stderr from %d\n", node);
        printf("unterminated from %d", node);
        return 0;
    }
    if (!strcmp(mode, "sleep") && argc > 2) {
        if (argc > 3 && atoi(argv[3]) != node) {
            return 0;
        }
        usleep((useconds_t)(atof(argv[2]) * 1e6));
        return 0;
    }
    if (!strcmp(mode, "env")) {
        printf("node %s nodes %s threads %s rdv %s key %s\n", getenv("FTSVM_NODE"),
               getenv("FTSVM_NODES"), getenv("FTSVM_THREADS") ? getenv("FTSVM_THREADS") : "-",
               getenv("FTSVM_RDV") ? "set" : "unset", getenv("FTSVM_JOB_KEY") ? "set" : "unset");
        return 0;
    }
    if (!strcmp(mode, "netns")) {
        const char *dev = getenv("UCX_NET_DEVICES");
        char ns[PATH_MAX] = "?", sys[PATH_MAX];
        ssize_t len = readlink("/proc/self/ns/net", ns, sizeof(ns) - 1);

        ns[(len > 0) ? len : 1] = '\0';
        snprintf(sys, sizeof(sys), "/sys/class/net/%s", dev ? dev : "-");
        printf("node %d net %s dev %s tls %s rdv %s sys %s\n", node, ns, dev ? dev : "-",
               getenv("UCX_TLS") ? getenv("UCX_TLS") : "-",
               getenv("FTSVM_RDV") ? getenv("FTSVM_RDV") : "-",
               (access(sys, F_OK) == 0) ? "yes" : "no");
        return 0;
    }
    fprintf(stderr, "usage: exit_node codes|raise|print|sleep|env|netns ...\n");
    return 2;
}

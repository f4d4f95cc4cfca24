/* ftsvm-run --netns (run_netns.h): the job's namespaces, made and removed
 * with iproute2's `ip`, entered with setns(2), and a node's link taken down
 * with SIOCSIFFLAGS from a socket of that link's namespace. */
#include "run_netns.h"

#include "common/log.h"
#include "ftsvm.h"

#include <errno.h>
#include <fcntl.h>
#include <net/if.h>
#include <sched.h>
#include <spawn.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#define RUN_NETNS_DIR      "/run/netns"   /* where `ip netns add` names them */
#define RUN_NETNS_BRIDGE   "ftsvmbr"
#define RUN_NETNS_HUB_HOST 254
#define RUN_NETNS_PREFIX_MAX 32
#define RUN_NETNS_NAME_MAX 64   /* a prefix and a node id or "hub" */
#define RUN_NETNS_ARGS_MAX 24
#define RUN_NETNS_CMD_MAX  512

extern char **environ;

struct run_netns {
    int      nodes;
    int      subnet;          /* X of 10.213.X.0/24 */
    sigset_t child_mask;
    char     prefix[RUN_NETNS_PREFIX_MAX];   /* "ftsvm-<pid>-" */
    char     hub_address[32];
    int      self_fd;         /* the launcher's own namespace */
    int      hub_fd;
    int     *node_fds;
    int      hub_made;        /* the hub namespace exists */
    int      nodes_made;      /* namespaces 0..nodes_made-1 exist */
};

static void run_netns_name(const run_netns_t *netns, int node, char *name, size_t size)
{
    if (node < 0) {
        snprintf(name, size, "%shub", netns->prefix);
    } else {
        snprintf(name, size, "%s%d", netns->prefix, node);
    }
}

void run_netns_device(int node, char *name, size_t size)
{
    snprintf(name, size, "ftsvm%d", node);
}

const char *run_netns_hub_address(const run_netns_t *netns)
{
    return netns->hub_address;
}

const char *run_netns_prefix(const run_netns_t *netns)
{
    return netns->prefix;
}

/* Run `ip` with the words of the formatted command line (no word has a
 * space). quiet: its stderr goes to /dev/null too. Returns 0 when it exited
 * 0, else -1 (logged unless quiet). */
static int run_netns_ip(const run_netns_t *netns, int quiet, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int run_netns_ip(const run_netns_t *netns, int quiet, const char *fmt, ...)
{
    static const char *const paths[] = { "/usr/sbin/ip", "/sbin/ip", "/usr/bin/ip", "/bin/ip" };
    char line[RUN_NETNS_CMD_MAX], *args[RUN_NETNS_ARGS_MAX], *save = NULL, *word;
    posix_spawn_file_actions_t actions;
    posix_spawnattr_t attr;
    sigset_t defaults;
    const char *path = "ip";
    int argc = 0, status, rc;
    size_t i;
    va_list ap;
    pid_t pid;

    va_start(ap, fmt);
    vsnprintf(line, sizeof(line), fmt, ap);
    va_end(ap);
    args[argc++] = "ip";
    for (word = strtok_r(line, " ", &save); word != NULL && argc < RUN_NETNS_ARGS_MAX - 1;
         word = strtok_r(NULL, " ", &save)) {
        args[argc++] = word;
    }
    args[argc] = NULL;
    for (i = 0; i < sizeof(paths) / sizeof(paths[0]); i++) {
        if (access(paths[i], X_OK) == 0) {
            path = paths[i];
            break;
        }
    }

    /* its own process group, the launcher's signal mask before it blocked
     * what its signalfd reads, and default dispositions */
    sigemptyset(&defaults);
    sigaddset(&defaults, SIGPIPE);
    sigaddset(&defaults, SIGINT);
    sigaddset(&defaults, SIGTERM);
    posix_spawnattr_init(&attr);
    posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETPGROUP | POSIX_SPAWN_SETSIGMASK |
                                    POSIX_SPAWN_SETSIGDEF);
    posix_spawnattr_setpgroup(&attr, 0);
    posix_spawnattr_setsigmask(&attr, &netns->child_mask);
    posix_spawnattr_setsigdefault(&attr, &defaults);
    posix_spawn_file_actions_init(&actions);
    posix_spawn_file_actions_addopen(&actions, STDIN_FILENO, "/dev/null", O_RDONLY, 0);
    posix_spawn_file_actions_addopen(&actions, STDOUT_FILENO, "/dev/null", O_WRONLY, 0);
    if (quiet) {
        posix_spawn_file_actions_addopen(&actions, STDERR_FILENO, "/dev/null", O_WRONLY, 0);
    }
    rc = posix_spawnp(&pid, path, &actions, &attr, args, environ);
    posix_spawn_file_actions_destroy(&actions);
    posix_spawnattr_destroy(&attr);
    if (rc != 0) {
        if (!quiet) {
            ftsvm_error("--netns: cannot run ip: %s%s", strerror(rc),
                        (rc == ENOENT) ? " (install iproute2)" : "");
        }
        return -1;
    }
    while (waitpid(pid, &status, 0) < 0) {
        if (errno != EINTR) {
            ftsvm_error("--netns: waitpid for ip: %m");
            return -1;
        }
    }
    if (WIFEXITED(status) && WEXITSTATUS(status) == 0) {
        return 0;
    }
    if (!quiet) {
        /* the words were split in place: join them again for the message */
        for (i = 1; i < (size_t)argc - 1; i++) {
            args[i][strlen(args[i])] = ' ';
        }
        ftsvm_error("--netns: 'ip %s' failed (%s %d)", args[1],
                    WIFEXITED(status) ? "exit" : "signal",
                    WIFEXITED(status) ? WEXITSTATUS(status) : WTERMSIG(status));
    }
    return -1;
}

static int run_netns_open(const char *name)
{
    char path[RUN_NETNS_NAME_MAX + sizeof(RUN_NETNS_DIR) + 1];
    int fd;

    snprintf(path, sizeof(path), "%s/%s", RUN_NETNS_DIR, name);
    fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        ftsvm_error("--netns: cannot open %s: %m", path);
    }
    return fd;
}

/* `ip netns add`, after deleting a namespace of the same name: one left by
 * a launcher that had our pid and was killed before it could clean up. */
static int run_netns_add(const run_netns_t *netns, const char *name)
{
    char path[RUN_NETNS_NAME_MAX + sizeof(RUN_NETNS_DIR) + 1];

    snprintf(path, sizeof(path), "%s/%s", RUN_NETNS_DIR, name);
    if (access(path, F_OK) == 0) {
        ftsvm_warn("--netns: deleting the namespace %s left by an earlier job", name);
        run_netns_ip(netns, 1, "netns del %s", name);
    }
    return run_netns_ip(netns, 0, "netns add %s", name);
}

static int run_netns_make_hub(run_netns_t *netns)
{
    char hub[RUN_NETNS_NAME_MAX];

    run_netns_name(netns, -1, hub, sizeof(hub));
    if (run_netns_add(netns, hub) != 0) {
        return -1;
    }
    netns->hub_made = 1;
    netns->hub_fd = run_netns_open(hub);
    if (netns->hub_fd < 0 ||
        run_netns_ip(netns, 0, "-n %s link set lo up", hub) != 0 ||
        run_netns_ip(netns, 0, "-n %s link add %s type bridge", hub, RUN_NETNS_BRIDGE) != 0 ||
        run_netns_ip(netns, 0, "-n %s addr add %s/24 dev %s", hub, netns->hub_address,
                     RUN_NETNS_BRIDGE) != 0 ||
        run_netns_ip(netns, 0, "-n %s link set %s up", hub, RUN_NETNS_BRIDGE) != 0) {
        return -1;
    }
    return 0;
}

static int run_netns_make_node(run_netns_t *netns, int node)
{
    char hub[RUN_NETNS_NAME_MAX], name[RUN_NETNS_NAME_MAX], dev[IFNAMSIZ];

    run_netns_name(netns, -1, hub, sizeof(hub));
    run_netns_name(netns, node, name, sizeof(name));
    run_netns_device(node, dev, sizeof(dev));
    if (run_netns_add(netns, name) != 0) {
        return -1;
    }
    netns->nodes_made = node + 1;
    netns->node_fds[node] = run_netns_open(name);
    if (netns->node_fds[node] < 0 ||
        run_netns_ip(netns, 0, "-n %s link set lo up", name) != 0 ||
        run_netns_ip(netns, 0, "-n %s link add hub%d type veth peer name %s netns %s", hub,
                     node, dev, name) != 0 ||
        run_netns_ip(netns, 0, "-n %s link set hub%d master %s up", hub, node,
                     RUN_NETNS_BRIDGE) != 0 ||
        run_netns_ip(netns, 0, "-n %s addr add 10.213.%d.%d/24 dev %s", name, netns->subnet,
                     node + 1, dev) != 0 ||
        run_netns_ip(netns, 0, "-n %s link set %s up", name, dev) != 0) {
        return -1;
    }
    return 0;
}

int run_netns_create(int nodes, const sigset_t *child_mask, run_netns_t **netns_p)
{
    run_netns_t *netns;
    int node;

    if (geteuid() != 0) {
        ftsvm_error("--netns needs root: it creates network namespaces and links (run "
                    "ftsvm-run as root, or with sudo)");
        return FTSVM_ESYS;
    }
    netns = calloc(1, sizeof(*netns));
    if (netns == NULL || (netns->node_fds = calloc((size_t)nodes, sizeof(int))) == NULL) {
        free(netns);
        ftsvm_error("out of memory for the namespaces of %d nodes", nodes);
        return FTSVM_ENOMEM;
    }
    netns->nodes = nodes;
    netns->child_mask = *child_mask;
    netns->self_fd = -1;
    netns->hub_fd = -1;
    for (node = 0; node < nodes; node++) {
        netns->node_fds[node] = -1;
    }
    /* the subnet only tells jobs apart in ip's output: each job's network
     * is separate anyway */
    netns->subnet = (int)(getpid() % 256);
    snprintf(netns->prefix, sizeof(netns->prefix), "ftsvm-%d-", (int)getpid());
    snprintf(netns->hub_address, sizeof(netns->hub_address), "10.213.%d.%d", netns->subnet,
             RUN_NETNS_HUB_HOST);

    netns->self_fd = open("/proc/self/ns/net", O_RDONLY | O_CLOEXEC);
    if (netns->self_fd < 0) {
        ftsvm_error("--netns: cannot open /proc/self/ns/net: %m");
        goto err;
    }
    if (run_netns_make_hub(netns) != 0) {
        goto err;
    }
    for (node = 0; node < nodes; node++) {
        if (run_netns_make_node(netns, node) != 0) {
            goto err;
        }
    }
    ftsvm_info("--netns: nodes in namespaces %s0..%d, bridge %s/24 in %shub", netns->prefix,
               nodes - 1, netns->hub_address, netns->prefix);
    *netns_p = netns;
    return FTSVM_OK;

err:
    run_netns_destroy(netns);
    return FTSVM_ESYS;
}

void run_netns_destroy(run_netns_t *netns)
{
    char name[RUN_NETNS_NAME_MAX];
    int node;

    if (netns == NULL) {
        return;
    }
    /* a node's veth pair goes with its namespace, the bridge with the hub */
    for (node = 0; node < netns->nodes_made; node++) {
        if (netns->node_fds[node] >= 0) {
            close(netns->node_fds[node]);
        }
        run_netns_name(netns, node, name, sizeof(name));
        run_netns_ip(netns, 0, "netns del %s", name);
    }
    if (netns->hub_fd >= 0) {
        close(netns->hub_fd);
    }
    if (netns->hub_made) {
        run_netns_name(netns, -1, name, sizeof(name));
        run_netns_ip(netns, 0, "netns del %s", name);
    }
    if (netns->self_fd >= 0) {
        close(netns->self_fd);
    }
    free(netns->node_fds);
    free(netns);
}

/* Into `fd`'s namespace; back with fd = self_fd. Coming back cannot be
 * allowed to fail quietly: the launcher would go on in the wrong namespace. */
static int run_netns_enter(const run_netns_t *netns, int fd)
{
    if (setns(fd, CLONE_NEWNET) < 0) {
        ftsvm_error("--netns: setns: %m");
        if (fd == netns->self_fd) {
            abort();
        }
        return FTSVM_ESYS;
    }
    return FTSVM_OK;
}

int run_netns_in_hub(run_netns_t *netns, int (*fn)(void *arg), void *arg)
{
    int rc;

    if (run_netns_enter(netns, netns->hub_fd) != FTSVM_OK) {
        return FTSVM_ESYS;
    }
    rc = fn(arg);
    run_netns_enter(netns, netns->self_fd);
    return rc;
}

int run_netns_join(const run_netns_t *netns, int node)
{
    if (setns(netns->node_fds[node], CLONE_NEWNET) < 0) {
        return errno;
    }
    /* What `ip netns exec` does: a mount namespace of our own, whose changes
     * do not propagate back, and in it a sysfs mounted from the new network
     * namespace, which lists its devices only. */
    if (unshare(CLONE_NEWNS) < 0 || mount(NULL, "/", NULL, MS_SLAVE | MS_REC, NULL) < 0) {
        return errno;
    }
    if (umount2("/sys", MNT_DETACH) < 0 && errno != EINVAL && errno != ENOENT) {
        return errno;
    }
    if (mount("sysfs", "/sys", "sysfs", 0, NULL) < 0) {
        return errno;
    }
    return 0;
}

static int run_netns_link_down(run_netns_t *netns, int ns_fd, const char *ns_name,
                               const char *dev)
{
    struct ifreq ifr;
    int fd, err;

    if (run_netns_enter(netns, ns_fd) != FTSVM_OK) {
        return FTSVM_ESYS;
    }
    fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    err = errno;
    run_netns_enter(netns, netns->self_fd);
    if (fd < 0) {
        ftsvm_error("--cut: cannot make a socket in %s: %s", ns_name, strerror(err));
        return FTSVM_ESYS;
    }
    memset(&ifr, 0, sizeof(ifr));
    snprintf(ifr.ifr_name, sizeof(ifr.ifr_name), "%s", dev);
    if (ioctl(fd, SIOCGIFFLAGS, &ifr) < 0) {
        ftsvm_error("--cut: cannot read the flags of %s in %s: %m", dev, ns_name);
        close(fd);
        return FTSVM_ESYS;
    }
    ifr.ifr_flags &= ~IFF_UP;
    if (ioctl(fd, SIOCSIFFLAGS, &ifr) < 0) {
        ftsvm_error("--cut: cannot take %s in %s down: %m", dev, ns_name);
        close(fd);
        return FTSVM_ESYS;
    }
    close(fd);
    return FTSVM_OK;
}

int run_netns_cut(run_netns_t *netns, int node)
{
    char hub[RUN_NETNS_NAME_MAX], name[RUN_NETNS_NAME_MAX], dev[IFNAMSIZ], port[IFNAMSIZ];

    run_netns_name(netns, -1, hub, sizeof(hub));
    run_netns_name(netns, node, name, sizeof(name));
    run_netns_device(node, dev, sizeof(dev));
    snprintf(port, sizeof(port), "hub%d", node);
    /* the hub's end first: from then on nothing reaches the node, nor
     * leaves it, even before its own end is down */
    if (run_netns_link_down(netns, netns->hub_fd, hub, port) != FTSVM_OK ||
        run_netns_link_down(netns, netns->node_fds[node], name, dev) != FTSVM_OK) {
        return FTSVM_ESYS;
    }
    return FTSVM_OK;
}

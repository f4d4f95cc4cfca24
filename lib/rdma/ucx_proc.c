/*
 * A node's process, as its peers on the same machine see it (UCX backend,
 * start-up): each node puts rdma_ucx_proc_t in its start-up blob, and a
 * peer that finds the process gone or a zombie leaves the node out before
 * it maps that node's shared memory (ucx_start.c says why).
 */
#include "ucx_int.h"

#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static void rdma_read_line(const char *path, char *buf, size_t size)
{
    FILE *f = fopen(path, "re");

    if (f == NULL || fgets(buf, (int)size, f) == NULL) {
        buf[0] = '\0';
    }
    buf[strcspn(buf, "\n")] = '\0';
    if (f != NULL) {
        fclose(f);
    }
}

void rdma_ucx_proc_self(rdma_ucx_proc_t *proc)
{
    struct stat st;

    memset(proc, 0, sizeof(*proc));
    rdma_read_line("/proc/sys/kernel/random/boot_id", proc->boot_id, sizeof(proc->boot_id));
    if (stat("/proc/self/ns/pid", &st) == 0) {
        proc->pid_ns = (uint64_t)st.st_ino;
    }
    proc->pid = (uint32_t)getpid();
}

int rdma_ucx_proc_exited(const void *blob_proc)
{
    rdma_ucx_proc_t peer, self;
    char path[64], stat_line[512], *state;

    memcpy(&peer, blob_proc, sizeof(peer));
    rdma_ucx_proc_self(&self);
    if (self.boot_id[0] == '\0' || self.pid_ns == 0 ||
        strncmp(peer.boot_id, self.boot_id, sizeof(self.boot_id)) != 0 ||
        peer.pid_ns != self.pid_ns) {
        return 0;   /* another machine, or no way to tell */
    }
    snprintf(path, sizeof(path), "/proc/%u/stat", peer.pid);
    rdma_read_line(path, stat_line, sizeof(stat_line));
    /* "pid (comm) S ...": the state follows the last ')' */
    state = strrchr(stat_line, ')');
    if (stat_line[0] == '\0' || state == NULL) {
        return 1;
    }
    return state[1] == ' ' && (state[2] == 'Z' || state[2] == 'X');
}

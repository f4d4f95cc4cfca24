/*
 * Node program of the API tests: uses nothing but include/ftsvm.h and
 * libftsvm.so, as a user's program does.   api_node MODE
 *
 *   ids        node, nodes, threads, thread ids (run with --threads 2),
 *              ftsvm_alive, the thread limit, init twice
 *   late N     node N does not call ftsvm_init (sleeps 10 s, then exits 0);
 *              the others start without it after FTSVM_BOOT_TIMEOUT (with
 *              two nodes, they fail start-up with a clear error)
 *   early N    node N exits with code 3 before ftsvm_init
 *   absent N   after start-up: node N is not alive (it died or did not join
 *              during start-up), every other node is, ids keep their
 *              numbers; then a barrier and a lock over the others
 *   intruder   node 0 first connects to the rendezvous with a wrong key and
 *              must be turned away, then starts normally
 *   idle       after start-up, sleep 1 s and print the CPU the whole node
 *              process used meanwhile (protocol thread included)
 */
#include "ftsvm.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define FAIL 10

#define expect(_cond, ...)                                                  \
    do {                                                                    \
        if (!(_cond)) {                                                     \
            fprintf(stderr, "api_node: check failed: %s: ", #_cond);       \
            fprintf(stderr, __VA_ARGS__);                                   \
            fputc('\n', stderr);                                            \
            exit(FAIL);                                                     \
        }                                                                   \
    } while (0)

static int worker_id = -1;
static pthread_mutex_t hold_lock = PTHREAD_MUTEX_INITIALIZER;

/* holds its thread slot until the main thread releases hold_lock */
static void *worker(void *arg)
{
    worker_id = ftsvm_thread_id();
    pthread_mutex_lock(&hold_lock);
    pthread_mutex_unlock(&hold_lock);
    return arg;
}

static void check_ids(void)
{
    int node = ftsvm_node(), nodes = ftsvm_nodes(), i;
    pthread_t t, t2;
    void *ret;

    expect(nodes >= 1 && node >= 0 && node < nodes, "node %d of %d", node, nodes);
    expect(ftsvm_threads() == nodes * 2, "ftsvm_threads %d with 2 per node", ftsvm_threads());
    expect(ftsvm_thread_id() == node * 2, "main thread id %d", ftsvm_thread_id());
    for (i = 0; i < nodes; i++) {
        expect(ftsvm_alive(i) == 1, "node %d not alive", i);
    }
    expect(ftsvm_alive(nodes) == FTSVM_ERANGE, "alive(nodes) %d", ftsvm_alive(nodes));
    expect(ftsvm_alive(-1) == FTSVM_ERANGE, "alive(-1)");
    pthread_mutex_lock(&hold_lock);
    expect(ftsvm_thread_create(&t, worker, &t) == FTSVM_OK, "first thread");
    /* 2 threads per node: main + one; a third is refused while it runs */
    expect(ftsvm_thread_create(&t2, worker, NULL) == FTSVM_ERANGE, "thread over the limit");
    pthread_mutex_unlock(&hold_lock);
    expect(pthread_join(t, &ret) == 0 && ret == &t, "join");
    expect(worker_id == node * 2 + 1, "worker thread id %d", worker_id);
    /* its slot is free again once it returned */
    expect(ftsvm_thread_create(&t, worker, &t) == FTSVM_OK, "thread after the first returned");
    pthread_join(t, NULL);
    expect(ftsvm_thread_create(NULL, worker, NULL) == FTSVM_EINVAL, "NULL thread");
    expect(ftsvm_init(NULL, NULL) == FTSVM_ESTATE, "second ftsvm_init");
    printf("node %d of %d: ids ok\n", node, nodes);
}

static double cpu_seconds(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void check_idle(void)
{
    double before = cpu_seconds();

    sleep(1);
    printf("node %d: idle cpu %.0f ms per s\n", ftsvm_node(), (cpu_seconds() - before) * 1e3);
}

/* Connect to the job's rendezvous and say HELLO with a wrong key (the
 * layout of lib/runtime/rdv_wire.h: magic, type, status, node, len, payload). */
static void intrude(void)
{
    const char *rdv = getenv("FTSVM_RDV");
    const char *colon = rdv ? strrchr(rdv, ':') : NULL;
    struct sockaddr_in addr = { .sin_family = AF_INET };
    struct { uint32_t magic; uint16_t type; int16_t status; uint32_t node, len; } hdr = {
        0x46545356u, 1, 0, 0, 8 };
    char reply[512];
    int fd;
    ssize_t n, total = 0;

    expect(colon != NULL, "FTSVM_RDV not set");
    addr.sin_port = htons((uint16_t)atoi(colon + 1));
    inet_pton(AF_INET, "127.0.0.1", &addr.sin_addr);
    fd = socket(AF_INET, SOCK_STREAM, 0);
    expect(connect(fd, (struct sockaddr *)&addr, sizeof(addr)) == 0, "connect");
    expect(write(fd, &hdr, sizeof(hdr)) == sizeof(hdr) && write(fd, "wrongkey", 8) == 8,
           "send");
    /* the launcher answers with an error and closes */
    while ((n = read(fd, reply + total, sizeof(reply) - (size_t)total)) > 0) {
        total += n;
    }
    close(fd);
    expect(total >= 16 && ((uint16_t *)reply)[2] == 5, "no error reply (%zd bytes)", total);
    printf("intruder turned away\n");
}

static void check_absent(int who)
{
    int node, nodes = ftsvm_nodes(), status;

    for (node = 0; node < nodes; node++) {
        expect(ftsvm_alive(node) == (node != who), "ftsvm_alive(%d) = %d", node,
               ftsvm_alive(node));
    }
    status = ftsvm_barrier();
    expect(status == FTSVM_OK, "barrier: %s", ftsvm_strerror(status));
    status = ftsvm_lock_acquire(0);
    expect(status == FTSVM_OK, "lock: %s", ftsvm_strerror(status));
    status = ftsvm_lock_release(0);
    expect(status == FTSVM_OK, "unlock: %s", ftsvm_strerror(status));
    printf("node %d of %d: started without node %d\n", ftsvm_node(), nodes, who);
}

int main(int argc, char **argv)
{
    const char *mode = (argc > 1) ? argv[1] : "";
    int who = (argc > 2) ? atoi(argv[2]) : -1;
    const char *node_env = getenv("FTSVM_NODE");
    int me = node_env ? atoi(node_env) : -1;
    int status;

    if (!strcmp(mode, "late") && me == who) {
        sleep(10);
        return 0;
    }
    if (!strcmp(mode, "early") && me == who) {
        return 3;
    }
    if (!strcmp(mode, "intruder") && me == 0) {
        intrude();
    }
    status = ftsvm_init(&argc, &argv);
    if (status != FTSVM_OK) {
        fprintf(stderr, "api_node: ftsvm_init failed: %s\n", ftsvm_strerror(status));
        return 20;
    }
    if (!strcmp(mode, "ids")) {
        check_ids();
    } else if (!strcmp(mode, "idle")) {
        check_idle();
    } else if (!strcmp(mode, "absent")) {
        check_absent(who);
    }
    status = ftsvm_finalize();
    expect(status == FTSVM_OK, "ftsvm_finalize: %s", ftsvm_strerror(status));
    expect(ftsvm_node() == FTSVM_ESTATE, "ftsvm_node after finalize");
    return 0;
}

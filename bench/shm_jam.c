/*
 * shm_jam: does a sender SIGKILLed while it sends UCX active messages leave
 * the receiver unable to receive from anyone? Plain UCX, no ftsvm.
 *
 *   shm_jam [ROUNDS]     (default 40; the transports are UCX_TLS's)
 *
 * Each round: a receiver process forks a victim that sends active messages
 * (48 and 4000 bytes in turn) to it as fast as it can, kills it with
 * SIGKILL after a random 5-105 ms, then forks a witness that sends 10000
 * messages. The round is "jammed" when the witness's messages do not all
 * arrive within 2 s. Prints the jammed rounds and the count; exits 1 if any.
 *
 * Over shared memory (UCX's mm transports: posix, sysv) rounds jam: mm has
 * one receive queue per receiver that every sender writes into, a sender
 * reserves its slot before it writes it, and a slot reserved by a process
 * that died is never completed, so the receiver waits on it for good. Here
 * (UCX 1.13) 5 rounds of 60 jammed over shared memory, none of 30 with
 * UCX_TLS=tcp. lib/failure/heartbeat.c turns the hang that this causes in
 * a job into a fenced node.
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>
#include <ucp/api/ucp.h>
#include <unistd.h>

#define AM_ID     1
#define WITNESSED 10000L

static ucp_context_h context;
static ucp_worker_h  worker;
static volatile long received[3];   /* per sender: 1 the victim, 2 the witness */

static ucs_status_t on_message(void *arg, const void *header, size_t header_len, void *data,
                               size_t len, const ucp_am_recv_param_t *param)
{
    (void)arg; (void)header_len; (void)data; (void)len; (void)param;
    received[*(const int *)header]++;
    return UCS_OK;
}

static void ucx_start(void)
{
    ucp_params_t params = { .field_mask = UCP_PARAM_FIELD_FEATURES, .features = UCP_FEATURE_AM };
    ucp_worker_params_t wparams = { .field_mask  = UCP_WORKER_PARAM_FIELD_THREAD_MODE,
                                    .thread_mode = UCS_THREAD_MODE_SINGLE };
    ucp_config_t *config;

    if (ucp_config_read(NULL, NULL, &config) != UCS_OK ||
        ucp_init(&params, config, &context) != UCS_OK ||
        ucp_worker_create(context, &wparams, &worker) != UCS_OK) {
        fprintf(stderr, "shm_jam: cannot start UCX\n");
        exit(2);
    }
    ucp_config_release(config);
}

static void wait_request(ucs_status_ptr_t request)
{
    if (UCS_PTR_IS_PTR(request)) {
        while (ucp_request_check_status(request) == UCS_INPROGRESS) {
            ucp_worker_progress(worker);
        }
        ucp_request_free(request);
    }
}

/* in a child: connect, say so on `ready`, send `count` messages (< 0: until killed) */
static void sender(const ucp_address_t *address, int who, long count, int ready)
{
    static char payload[4000];
    ucp_ep_params_t eparams = { .field_mask = UCP_EP_PARAM_FIELD_REMOTE_ADDRESS |
                                              UCP_EP_PARAM_FIELD_ERR_HANDLING_MODE,
                                .address = address, .err_mode = UCP_ERR_HANDLING_MODE_PEER };
    ucp_request_param_t rparams = {0};
    ucp_ep_h ep;
    long i;
    char byte = 1;

    prctl(PR_SET_PDEATHSIG, SIGKILL);   /* never outlives its round */
    ucx_start();
    if (ucp_ep_create(worker, &eparams, &ep) != UCS_OK || write(ready, &byte, 1) != 1) {
        _exit(2);
    }
    for (i = 0; count < 0 || i < count; i++) {
        wait_request(ucp_am_send_nbx(ep, AM_ID, &who, sizeof(who), payload,
                                     (i & 1) ? sizeof(payload) : 48, &rparams));
        ucp_worker_progress(worker);
    }
    wait_request(ucp_ep_flush_nbx(ep, &rparams));
    sleep(3);   /* the receiver kills it */
    _exit(0);
}

static double now_s(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void progress_for(double seconds, volatile long *until_count, long want)
{
    double end = now_s() + seconds;

    while (now_s() < end && (until_count == NULL || *until_count < want)) {
        ucp_worker_progress(worker);
    }
}

static pid_t spawn(const ucp_address_t *address, int who, long count)
{
    int fds[2];
    pid_t pid;
    char byte;

    if (pipe(fds) != 0 || (pid = fork()) < 0) {
        perror("shm_jam");
        exit(2);
    }
    if (pid == 0) {
        sender(address, who, count, fds[1]);
    }
    close(fds[1]);
    if (read(fds[0], &byte, 1) != 1) {
        fprintf(stderr, "shm_jam: a sender could not connect\n");
    }
    close(fds[0]);
    return pid;
}

/* one round in a process of its own: 0 ok, 1 jammed */
static int round_main(void)
{
    ucp_am_handler_param_t handler = { .field_mask = UCP_AM_HANDLER_PARAM_FIELD_ID |
                                                     UCP_AM_HANDLER_PARAM_FIELD_CB,
                                       .id = AM_ID, .cb = on_message };
    ucp_address_t *address;
    size_t address_len;
    pid_t victim, witness;

    ucx_start();
    if (ucp_worker_set_am_recv_handler(worker, &handler) != UCS_OK ||
        ucp_worker_get_address(worker, &address, &address_len) != UCS_OK) {
        return 2;
    }
    victim = spawn(address, 1, -1);
    progress_for(0.005 + (double)(rand() % 100) / 1000.0, NULL, 0);
    kill(victim, SIGKILL);
    waitpid(victim, NULL, 0);
    witness = spawn(address, 2, WITNESSED);
    progress_for(2.0, &received[2], WITNESSED);
    kill(witness, SIGKILL);
    waitpid(witness, NULL, 0);
    printf("victim's messages received %ld, witness's %ld of %ld: %s\n", received[1],
           received[2], WITNESSED, received[2] < WITNESSED ? "jammed" : "ok");
    return received[2] < WITNESSED;
}

int main(int argc, char **argv)
{
    int rounds = (argc > 1) ? atoi(argv[1]) : 40, r, jammed = 0, status;
    pid_t pid;

    if (rounds < 1) {
        fprintf(stderr, "usage: shm_jam [ROUNDS]\n");
        return 2;
    }
    /* as ftsvm runs UCX over shared memory: peer failures reported */
    setenv("UCX_POSIX_ERROR_HANDLING", "y", 0);
    setenv("UCX_SYSV_ERROR_HANDLING", "y", 0);
    setenv("UCX_KEEPALIVE_INTERVAL", "10ms", 0);
    for (r = 0; r < rounds; r++) {
        fflush(stdout);
        if ((pid = fork()) == 0) {
            srand((unsigned)getpid());
            alarm(30);   /* a round that hangs counts as jammed */
            _exit(round_main());
        }
        if (pid < 0 || waitpid(pid, &status, 0) != pid) {
            perror("shm_jam");
            return 2;
        }
        if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
            printf("round %d jammed\n", r + 1);
            jammed++;
        }
    }
    printf("shm_jam: %d of %d rounds jammed (UCX_TLS=%s)\n", jammed, rounds,
           getenv("UCX_TLS") != NULL ? getenv("UCX_TLS") : "UCX's choice");
    return jammed > 0;
}

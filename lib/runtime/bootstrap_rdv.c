/* Client of the built-in rendezvous (wire format in rdv_wire.h): ftsvm-run's,
 * or under a PMIx launcher node 0's (rdv_serve.c, bootstrap_pmix.c).
 * Every wait is bounded by FTSVM_BOOT_TIMEOUT during start-up; a barrier
 * after start-up waits as long as the slowest live node. */
#include "bootstrap.h"
#include "common/clock.h"
#include "common/log.h"
#include "ftsvm.h"
#include "rdv_wire.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

/* The rendezvous leaves out who has not joined at FTSVM_BOOT_TIMEOUT,
 * counted from its own start, which can be only a moment before this
 * node's wait began (under PMIx node 0 starts it just before it joins): a
 * node waits that long and a margin more, so that the rendezvous' decision
 * reaches it before its own timeout does. */
#define RDV_DEADLINE_MARGIN_S 5.0

typedef struct bootstrap_rdv {
    bootstrap_t super;
    int         fd;
    double      boot_timeout;
    int         started;      /* first round done: later waits are unbounded */
} bootstrap_rdv_t;

/* deadline_ns == 0: no deadline */
static int rdv_io(bootstrap_rdv_t *rdv, int out, void *buf, size_t len,
                  uint64_t deadline_ns)
{
    struct pollfd pfd = { .fd = rdv->fd, .events = out ? POLLOUT : POLLIN };
    char *p = buf;
    ssize_t n;
    int timeout_ms, ret;
    uint64_t now;

    while (len > 0) {
        timeout_ms = -1;
        if (deadline_ns != 0) {
            now = clock_now_ns();
            if (now >= deadline_ns) {
                ftsvm_error("rendezvous timed out after %.1f s (FTSVM_BOOT_TIMEOUT and "
                            "a margin): not every node joined, and the rendezvous did not "
                            "answer", rdv->boot_timeout + RDV_DEADLINE_MARGIN_S);
                return FTSVM_ETIMEDOUT;
            }
            timeout_ms = (int)((deadline_ns - now) / 1000000 + 1);
        }
        ret = poll(&pfd, 1, timeout_ms);
        if (ret < 0) {
            if (errno == EINTR) {
                continue;
            }
            ftsvm_error("poll on the rendezvous socket failed: %m");
            return FTSVM_ESYS;
        }
        if (ret == 0) {
            continue;
        }
        n = out ? send(rdv->fd, p, len, MSG_NOSIGNAL) : recv(rdv->fd, p, len, 0);
        if (n < 0) {
            if (errno == EINTR || errno == EAGAIN) {
                continue;
            }
            ftsvm_error("rendezvous connection failed: %m");
            return FTSVM_EBOOT;
        }
        if (n == 0) {
            ftsvm_error("the rendezvous server closed the connection");
            return FTSVM_EBOOT;
        }
        p += n;
        len -= (size_t)n;
    }
    return FTSVM_OK;
}

static uint64_t rdv_deadline(bootstrap_rdv_t *rdv)
{
    if (rdv->started) {
        return 0;
    }
    return clock_now_ns() + (uint64_t)((rdv->boot_timeout + RDV_DEADLINE_MARGIN_S) * 1e9);
}

static int rdv_send(bootstrap_rdv_t *rdv, uint16_t type, const void *payload,
                    uint32_t len, uint64_t deadline)
{
    rdv_hdr_t hdr = { .magic = RDV_MAGIC, .type = type, .status = 0,
                      .node = (uint32_t)rdv->super.node, .len = len };
    int status;

    status = rdv_io(rdv, 1, &hdr, sizeof(hdr), deadline);
    if (status == FTSVM_OK && len > 0) {
        status = rdv_io(rdv, 1, (void *)payload, len, deadline);
    }
    return status;
}

/* Receive one message; an RDV_ERROR is logged with the launcher's text and
 * turned into its status. *payload_p is malloc'ed (NULL when len is 0). */
static int rdv_recv(bootstrap_rdv_t *rdv, uint16_t want, rdv_hdr_t *hdr_p,
                    void **payload_p, uint64_t deadline)
{
    rdv_hdr_t hdr;
    char *payload = NULL;
    int status;

    status = rdv_io(rdv, 0, &hdr, sizeof(hdr), deadline);
    if (status != FTSVM_OK) {
        return status;
    }
    if (hdr.magic != RDV_MAGIC || hdr.len > RDV_MAX_PAYLOAD) {
        ftsvm_error("malformed message from the launcher (magic 0x%x, length %u)",
                    hdr.magic, hdr.len);
        return FTSVM_EPROTO;
    }
    if (hdr.len > 0) {
        payload = malloc((size_t)hdr.len + 1);
        if (payload == NULL) {
            ftsvm_error("cannot allocate %u bytes for a rendezvous message", hdr.len);
            return FTSVM_ENOMEM;
        }
        status = rdv_io(rdv, 0, payload, hdr.len, deadline);
        if (status != FTSVM_OK) {
            free(payload);
            return status;
        }
        payload[hdr.len] = '\0';
    }
    if (hdr.type == RDV_ERROR) {
        ftsvm_error("rendezvous failed: %s", payload ? payload : "no reason given");
        free(payload);
        return (hdr.status < 0) ? hdr.status : FTSVM_EBOOT;
    }
    if (hdr.type != want) {
        ftsvm_error("unexpected message type %u from the launcher (wanted %u)",
                    hdr.type, want);
        free(payload);
        return FTSVM_EPROTO;
    }
    *hdr_p = hdr;
    *payload_p = payload;
    return FTSVM_OK;
}

static int rdv_allgather(bootstrap_t *boot, const void *mine, size_t len,
                         void *all, uint8_t *present)
{
    bootstrap_rdv_t *rdv = (bootstrap_rdv_t *)boot;
    size_t nodes = (size_t)boot->nodes, i;
    uint64_t deadline = rdv_deadline(rdv);
    rdv_hdr_t hdr;
    uint8_t *reply = NULL;
    int status;

    if (len > RDV_MAX_PAYLOAD / nodes) {
        ftsvm_error("rendezvous contribution of %zu bytes is too large", len);
        return FTSVM_EINVAL;
    }
    status = rdv_send(rdv, RDV_GATHER, mine, (uint32_t)len, deadline);
    if (status != FTSVM_OK) {
        return status;
    }
    status = rdv_recv(rdv, RDV_GATHERED, &hdr, (void **)&reply, deadline);
    if (status != FTSVM_OK) {
        return status;
    }
    if (hdr.len != nodes + nodes * len) {
        ftsvm_error("rendezvous reply has %u bytes, expected %zu", hdr.len,
                    nodes + nodes * len);
        status = FTSVM_EPROTO;
        goto out;
    }
    for (i = 0; i < nodes; i++) {
        if (!reply[i] && present == NULL) {
            ftsvm_error("node %zu left the job during start-up", i);
            status = FTSVM_EBOOT;
            goto out;
        }
    }
    if (present != NULL) {
        memcpy(present, reply, nodes);
    }
    if (len > 0) {
        memcpy(all, reply + nodes, nodes * len);
    }
    rdv->started = 1;
out:
    free(reply);
    return status;
}

static void rdv_destroy(bootstrap_t *boot)
{
    bootstrap_rdv_t *rdv = (bootstrap_rdv_t *)boot;

    if (rdv->fd >= 0) {
        close(rdv->fd);
    }
    free(rdv);
}

/* Under PMIx the rendezvous is node 0's, for the start-up only
 * (rdv_serve.c): the node closes its connection once the job is up. */
static int rdv_detach(bootstrap_t *boot)
{
    bootstrap_rdv_t *rdv = (bootstrap_rdv_t *)boot;

    close(rdv->fd);
    rdv->fd = -1;
    return FTSVM_OK;
}

static const bootstrap_ops_t rdv_ops = {
    .name      = "ftsvm-run",
    .allgather = rdv_allgather,
    .destroy   = rdv_destroy,
};

static const bootstrap_ops_t rdv_pmix_ops = {
    .name      = "pmix",
    .allgather = rdv_allgather,
    .detach    = rdv_detach,
    .destroy   = rdv_destroy,
};

static int rdv_connect(const char *addr, int *fd_p)
{
    char host[128];
    const char *colon = strrchr(addr, ':');
    struct addrinfo hints = { .ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM };
    struct addrinfo *res, *ai;
    int fd = -1, ret, one = 1;

    if (colon == NULL || colon == addr || (size_t)(colon - addr) >= sizeof(host) ||
        colon[1] == '\0') {
        ftsvm_error("FTSVM_RDV: '%s' is not host:port", addr);
        return FTSVM_EINVAL;
    }
    memcpy(host, addr, (size_t)(colon - addr));
    host[colon - addr] = '\0';
    /* ftsvm-run writes an IPv6 address as [addr]:port */
    if (host[0] == '[' && colon[-1] == ']') {
        memmove(host, host + 1, strlen(host));
        host[strlen(host) - 1] = '\0';
    }
    ret = getaddrinfo(host, colon + 1, &hints, &res);
    if (ret != 0) {
        ftsvm_error("FTSVM_RDV: cannot resolve '%s': %s", addr, gai_strerror(ret));
        return FTSVM_EINVAL;
    }
    for (ai = res; ai != NULL; ai = ai->ai_next) {
        fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC, ai->ai_protocol);
        if (fd < 0) {
            continue;
        }
        if (connect(fd, ai->ai_addr, ai->ai_addrlen) == 0) {
            break;
        }
        close(fd);
        fd = -1;
    }
    freeaddrinfo(res);
    if (fd < 0) {
        ftsvm_error("cannot connect to the rendezvous at %s: %m", addr);
        return FTSVM_EBOOT;
    }
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    *fd_p = fd;
    return FTSVM_OK;
}

int bootstrap_rdv_join(const char *addr, const char *key, int node, int nodes,
                       double boot_timeout, int detachable, bootstrap_t **boot_p)
{
    bootstrap_rdv_t *rdv;
    rdv_hdr_t hdr;
    void *payload = NULL;
    int status;

    rdv = calloc(1, sizeof(*rdv));
    if (rdv == NULL) {
        ftsvm_error("cannot allocate the rendezvous client");
        return FTSVM_ENOMEM;
    }
    rdv->super.ops    = detachable ? &rdv_pmix_ops : &rdv_ops;
    rdv->super.node   = node;
    rdv->super.nodes  = nodes;
    rdv->boot_timeout = boot_timeout;

    status = rdv_connect(addr, &rdv->fd);
    if (status != FTSVM_OK) {
        goto err_free;
    }
    status = rdv_send(rdv, RDV_HELLO, key, (uint32_t)strlen(key), rdv_deadline(rdv));
    if (status != FTSVM_OK) {
        goto err_close;
    }
    status = rdv_recv(rdv, RDV_WELCOME, &hdr, &payload, rdv_deadline(rdv));
    if (status != FTSVM_OK) {
        goto err_close;
    }
    free(payload);
    *boot_p = &rdv->super;
    return FTSVM_OK;

err_close:
    close(rdv->fd);
err_free:
    free(rdv);
    return status;
}

int bootstrap_rdv_create(const ftsvm_config_t *config, bootstrap_t **boot_p)
{
    if (config->node < 0 || config->nodes <= 0 || config->node >= config->nodes) {
        ftsvm_error("FTSVM_RDV is set but FTSVM_NODE %d / FTSVM_NODES %d are not a "
                    "valid id and job size (start the program with ftsvm-run)",
                    config->node, config->nodes);
        return FTSVM_EBOOT;
    }
    if (config->job_key[0] == '\0') {
        ftsvm_error("FTSVM_RDV is set but FTSVM_JOB_KEY is not (start the program "
                    "with ftsvm-run)");
        return FTSVM_EBOOT;
    }
    return bootstrap_rdv_join(config->rdv, config->job_key, config->node, config->nodes,
                              config->boot_timeout, 0, boot_p);
}

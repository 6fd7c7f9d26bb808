/*
 * benchmarks/net/paired_client.c -- one-connection echo latency, servers compared request by
 * request.
 *
 * A one-connection echo is bounded by round-trip latency, and on a shared machine the
 * latency drifts by tens of percent from one second to the next: two servers measured one
 * after the other (even interleaved every few seconds) differ by more than the few percent a
 * loop can change. This client holds one connection to each of K echo servers and visits
 * them in turn, one request each, so consecutive requests to different servers are
 * microseconds apart and see the same machine. Round r starts with server r % K, so no server
 * always follows the same one.
 *
 * Each request sends SIZE bytes and waits (blocking recv) for the whole echo, which is
 * compared with what was sent; consecutive requests carry different bytes. With --conns N
 * (N > 1) the client holds N connections to each server and a server's turn is a batch: one
 * request on each of its N connections at once, done when every echo is back (poll), so the
 * server has N requests to serve together, as in a closed-loop N-connection run.
 *
 *   paired_client --ports P1,P2,... [--host 127.0.0.1] [--size BYTES] [--conns N]
 *                 [--duration S] [--warmup S] --raw FILE
 *
 * Writes each timed round's latencies (nanoseconds of one request or batch, uint32, K per
 * round, in --ports order) to FILE and prints one JSON line: {"rounds": N, "servers": K, "seconds": S}. On failure
 * prints {"error": "..."} and exits with status 1. Statistics are paired.py's job.
 *
 * Build: cc -O2 -o paired_client paired_client.c
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <getopt.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdarg.h>
#include <stdint.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "client_common.h"

#define MAX_SERVERS 8
#define MAX_CONNS 64

static struct {
    const char *host;
    int ports[MAX_SERVERS];
    int count;
    int conns;
    size_t size;
    double duration, warmup;
    const char *raw;
} opt = {"127.0.0.1", {0}, 0, 1, 1024, 2.0, 0.3, NULL};

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static int connect_to(int port)
{
    struct sockaddr_in address = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    if (inet_pton(AF_INET, opt.host, &address.sin_addr) != 1)
        fail("bad --host %s", opt.host);
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0)
        fail("socket: %s", strerror(errno));
    if (connect(fd, (struct sockaddr *)&address, sizeof address) < 0)
        fail("connect to port %d: %s", port, strerror(errno));
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    return fd;
}

/* One request: send the message, read the whole echo, check it. */
static void request(int fd, int port, const unsigned char *message, unsigned char *echo)
{
    size_t sent = 0;
    while (sent < opt.size) {
        ssize_t n = send(fd, message + sent, opt.size - sent, MSG_NOSIGNAL);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            fail("send to port %d: %s", port, n < 0 ? strerror(errno) : "no progress");
        sent += (size_t)n;
    }
    size_t received = 0;
    while (received < opt.size) {
        ssize_t n = recv(fd, echo + received, opt.size - received, 0);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            fail("recv from port %d: %s", port, strerror(errno));
        if (n == 0)
            fail("port %d closed the connection", port);
        received += (size_t)n;
    }
    if (memcmp(message, echo, opt.size) != 0)
        fail("port %d echoed different bytes", port);
}

/* One connection of a batch: its message and how far it got. */
struct conn {
    int fd;
    const unsigned char *message;
    unsigned char *echo;
    size_t sent, received;
};

static int send_some(struct conn *c, int port)
{
    ssize_t n = send(c->fd, c->message + c->sent, opt.size - c->sent, MSG_NOSIGNAL);
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
        return 0;
    if (n <= 0)
        fail("send to port %d: %s", port, n < 0 ? strerror(errno) : "no progress");
    c->sent += (size_t)n;
    return 1;
}

/* Returns 1 when this connection's echo is complete (and checked). */
static int receive_some(struct conn *c, int port)
{
    ssize_t n = recv(c->fd, c->echo + c->received, opt.size - c->received, 0);
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
        return 0;
    if (n < 0)
        fail("recv from port %d: %s", port, strerror(errno));
    if (n == 0)
        fail("port %d closed the connection", port);
    c->received += (size_t)n;
    if (c->received < opt.size)
        return 0;
    if (memcmp(c->message, c->echo, opt.size) != 0)
        fail("port %d echoed different bytes", port);
    return 1;
}

/* A batch: one request on each of the n (non-blocking) connections, until all are echoed. */
static void batch(struct conn *conns, int n, int port)
{
    struct pollfd polled[MAX_CONNS];
    int which[MAX_CONNS];
    int left = n;
    for (int i = 0; i < n; i++) {
        conns[i].sent = conns[i].received = 0;
        send_some(&conns[i], port);
    }
    while (left > 0) {
        int m = 0;
        for (int i = 0; i < n; i++) {
            if (conns[i].received == opt.size)
                continue;
            polled[m].fd = conns[i].fd;
            polled[m].events = POLLIN | (conns[i].sent < opt.size ? POLLOUT : 0);
            polled[m].revents = 0;
            which[m++] = i;
        }
        int ready = poll(polled, (nfds_t)m, 10000);
        if (ready < 0 && errno == EINTR)
            continue;
        if (ready <= 0)
            fail("port %d: no progress for 10 s (%s)", port, ready < 0 ? strerror(errno) : "timeout");
        for (int j = 0; j < m; j++) {
            struct conn *c = &conns[which[j]];
            if ((polled[j].revents & POLLOUT) && c->sent < opt.size)
                send_some(c, port);
            if (polled[j].revents & (POLLIN | POLLHUP | POLLERR))
                left -= receive_some(c, port);
        }
    }
}

static void parse_ports(const char *text)
{
    char *copy = strdup(text);
    for (char *part = strtok(copy, ","); part; part = strtok(NULL, ",")) {
        if (opt.count == MAX_SERVERS)
            fail("at most %d servers", MAX_SERVERS);
        opt.ports[opt.count++] = atoi(part);
    }
    free(copy);
}

int main(int argc, char **argv)
{
    static const struct option options[] = {
        {"host", required_argument, 0, 'h'},     {"ports", required_argument, 0, 'p'},
        {"size", required_argument, 0, 's'},     {"duration", required_argument, 0, 'd'},
        {"warmup", required_argument, 0, 'w'},   {"raw", required_argument, 0, 'r'},
        {"conns", required_argument, 0, 'c'},    {0, 0, 0, 0}};
    int c;
    while ((c = getopt_long(argc, argv, "", options, NULL)) != -1) {
        switch (c) {
        case 'h': opt.host = optarg; break;
        case 'p': parse_ports(optarg); break;
        case 's': opt.size = (size_t)strtoull(optarg, NULL, 10); break;
        case 'd': opt.duration = atof(optarg); break;
        case 'w': opt.warmup = atof(optarg); break;
        case 'r': opt.raw = optarg; break;
        case 'c': opt.conns = atoi(optarg); break;
        default: fail("usage: paired_client --ports P1,P2,... --raw FILE [--size B] "
                      "[--conns N] [--duration S] [--warmup S] [--host H]");
        }
    }
    if (opt.count < 1 || !opt.raw || opt.size < 1 || opt.duration <= 0)
        fail("need --ports, --raw, a positive --size and --duration");
    if (opt.conns < 1 || opt.conns > MAX_CONNS)
        fail("--conns must be 1 to %d", MAX_CONNS);

    unsigned char *pattern = make_pattern(opt.size);
    unsigned char *echo = malloc(opt.size * (size_t)opt.conns);
    if (!echo)
        fail("out of memory");
    static struct conn conns[MAX_SERVERS][MAX_CONNS];
    for (int i = 0; i < opt.count; i++) {
        for (int j = 0; j < opt.conns; j++) {
            conns[i][j].fd = connect_to(opt.ports[i]);
            conns[i][j].echo = echo + (size_t)j * opt.size;
            if (opt.conns > 1 && fcntl(conns[i][j].fd, F_SETFL, O_NONBLOCK) < 0)
                fail("fcntl: %s", strerror(errno));
        }
    }

    FILE *raw = fopen(opt.raw, "wb");
    if (!raw)
        fail("open %s: %s", opt.raw, strerror(errno));
    uint64_t start = now_ns();
    uint64_t timed_from = start + (uint64_t)(opt.warmup * 1e9);
    uint64_t stop = timed_from + (uint64_t)(opt.duration * 1e9);
    uint64_t rounds = 0, seq = 0;
    uint32_t latencies[MAX_SERVERS];
    for (;;) {
        uint64_t round_start = now_ns();
        if (round_start >= stop)
            break;
        for (int k = 0; k < opt.count; k++) {
            int i = (int)((seq + (uint64_t)k) % (uint64_t)opt.count);
            for (int j = 0; j < opt.conns; j++)
                conns[i][j].message =
                    pattern + (seq * 97u + (uint64_t)i * 31u + (uint64_t)j * 7u) % PATTERN_SLACK;
            uint64_t t0 = now_ns();
            if (opt.conns == 1)
                request(conns[i][0].fd, opt.ports[i], conns[i][0].message, echo);
            else
                batch(conns[i], opt.conns, opt.ports[i]);
            uint64_t elapsed = now_ns() - t0;
            latencies[i] = elapsed > UINT32_MAX ? UINT32_MAX : (uint32_t)elapsed;
        }
        ++seq;
        if (round_start >= timed_from) {
            if (fwrite(latencies, sizeof latencies[0], (size_t)opt.count, raw) != (size_t)opt.count)
                fail("write %s: %s", opt.raw, strerror(errno));
            ++rounds;
        }
    }
    if (fclose(raw) != 0)
        fail("close %s: %s", opt.raw, strerror(errno));
    for (int i = 0; i < opt.count; i++)
        for (int j = 0; j < opt.conns; j++)
            close(conns[i][j].fd);
    printf("{\"rounds\": %llu, \"servers\": %d, \"seconds\": %.3f}\n", (unsigned long long)rounds,
           opt.count, (double)(now_ns() - timed_from) / 1e9);
    return 0;
}

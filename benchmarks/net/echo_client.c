/*
 * benchmarks/net/echo_client.c -- closed-loop TCP echo load generator.
 *
 * Opens N connections to an echo server; on each, sends one message of SIZE bytes and waits
 * for the complete echo before sending the next (one request in flight per connection).
 * Runs a warm-up (not counted), then counts the requests completed during DURATION seconds,
 * then lets the requests in flight finish and closes cleanly (no reset seen by the server).
 * Every echoed byte is compared with what was sent, and consecutive messages differ, so a
 * corrupted, stale, lost or repeated echo is caught, not counted (--no-verify skips the
 * compare).
 *
 * Single-threaded, non-blocking, epoll: one core for the client, whatever the N.
 * It does not depend on Python or on the event loop under test.
 *
 *   echo_client --port P [--host 127.0.0.1] [--conns N] [--size BYTES] [--duration S]
 *               [--warmup S] [--max-requests K] [--stall S] [--no-verify]
 *
 * Prints one JSON line on stdout:
 *   {"requests": ..., "seconds": ..., "rps": ..., "mib_per_s": ..., ...}
 * where mib_per_s counts the payload echoed back (one direction) in MiB (2^20 bytes).
 * On failure prints {"error": "..."} and exits with status 1.
 *
 * Build: cc -O2 -o echo_client echo_client.c
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "client_common.h"

#define SCRATCH_SIZE (256 * 1024)

struct conn {
    int fd;
    unsigned id;          /* index of the connection */
    const unsigned char *msg; /* this connection's current message (a window of pattern) */
    size_t sent;          /* bytes of msg written so far */
    size_t received;      /* bytes of the echo read and checked so far */
    uint64_t seq;         /* request number on this connection */
    int busy;             /* a request is in flight */
    int want_out;         /* registered for EPOLLOUT */
};

static struct {
    const char *host;
    int port;
    int conns;
    size_t size;
    double duration, warmup, stall;
    uint64_t max_requests;
    int verify;
} opt = {"127.0.0.1", 0, 1, 1024, 1.0, 0.2, 5.0, 100000000ULL, 1};

static int epfd = -1;

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/*
 * The bytes sent: request k on connection j sends the window of the pattern
 * (client_common.h) starting at (k * 97 + j * 31) % PATTERN_SLACK; the check costs one
 * memcmp of what was received.
 */
static unsigned char *pattern;

static void pick_message(struct conn *c)
{
    c->msg = pattern + (size_t)((c->seq * 97u + c->id * 31u) % PATTERN_SLACK);
}

static void set_events(struct conn *c, int want_out)
{
    if (c->want_out == want_out)
        return;
    struct epoll_event ev = {.events = EPOLLIN | (want_out ? EPOLLOUT : 0), .data.ptr = c};
    if (epoll_ctl(epfd, EPOLL_CTL_MOD, c->fd, &ev) < 0)
        fail("epoll_ctl: %s", strerror(errno));
    c->want_out = want_out;
}

/* Write as much of the message as the socket takes now. */
static void pump_send(struct conn *c)
{
    while (c->sent < opt.size) {
        ssize_t n = send(c->fd, c->msg + c->sent, opt.size - c->sent, MSG_NOSIGNAL);
        if (n > 0) {
            c->sent += (size_t)n;
        } else if (n < 0 && errno == EINTR) {
            continue;
        } else if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            set_events(c, 1);
            return;
        } else {
            fail("send: %s", n < 0 ? strerror(errno) : "wrote nothing");
        }
    }
    set_events(c, 0);
}

static void start_request(struct conn *c)
{
    c->seq++;
    pick_message(c);
    c->sent = 0;
    c->received = 0;
    c->busy = 1;
    pump_send(c);
}

static int connect_one(void)
{
    struct sockaddr_in addr = {.sin_family = AF_INET, .sin_port = htons((uint16_t)opt.port)};
    if (inet_pton(AF_INET, opt.host, &addr.sin_addr) != 1)
        fail("bad IPv4 address %s", opt.host);
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        fail("socket: %s", strerror(errno));
    if (connect(fd, (struct sockaddr *)&addr, sizeof addr) < 0)
        fail("connect to %s:%d: %s", opt.host, opt.port, strerror(errno));
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    int flags = fcntl(fd, F_GETFL);
    if (flags < 0 || fcntl(fd, F_SETFL, flags | O_NONBLOCK) < 0)
        fail("fcntl: %s", strerror(errno));
    return fd;
}

static void usage(int status)
{
    fprintf(status ? stderr : stdout,
            "usage: echo_client --port P [--host 127.0.0.1] [--conns N] [--size BYTES]\n"
            "                   [--duration S] [--warmup S] [--max-requests K] [--stall S]\n"
            "                   [--no-verify]\n");
    exit(status);
}

static void parse(int argc, char **argv)
{
    static const struct option longs[] = {
        {"host", required_argument, 0, 'h'},     {"port", required_argument, 0, 'p'},
        {"conns", required_argument, 0, 'c'},    {"size", required_argument, 0, 's'},
        {"duration", required_argument, 0, 'd'}, {"warmup", required_argument, 0, 'w'},
        {"max-requests", required_argument, 0, 'm'}, {"stall", required_argument, 0, 't'},
        {"no-verify", no_argument, 0, 'n'},      {"help", no_argument, 0, 'H'},
        {0, 0, 0, 0}};
    int ch;
    while ((ch = getopt_long(argc, argv, "", longs, NULL)) != -1) {
        switch (ch) {
        case 'h': opt.host = optarg; break;
        case 'p': opt.port = atoi(optarg); break;
        case 'c': opt.conns = atoi(optarg); break;
        case 's': opt.size = (size_t)strtoull(optarg, NULL, 10); break;
        case 'd': opt.duration = atof(optarg); break;
        case 'w': opt.warmup = atof(optarg); break;
        case 'm': opt.max_requests = strtoull(optarg, NULL, 10); break;
        case 't': opt.stall = atof(optarg); break;
        case 'n': opt.verify = 0; break;
        case 'H': usage(0); break;
        default: usage(2);
        }
    }
    if (optind != argc || opt.port <= 0 || opt.port > 65535 || opt.conns < 1 ||
        opt.conns > 10000 || opt.size < 1 || opt.duration <= 0 || opt.warmup < 0 ||
        opt.stall <= 0 || opt.max_requests < 1)
        usage(2);
}

int main(int argc, char **argv)
{
    parse(argc, argv);
    signal(SIGPIPE, SIG_IGN);

    epfd = epoll_create1(EPOLL_CLOEXEC);
    if (epfd < 0)
        fail("epoll_create1: %s", strerror(errno));
    unsigned char *scratch = malloc(SCRATCH_SIZE);
    struct conn *conns = calloc((size_t)opt.conns, sizeof *conns);
    if (!scratch || !conns)
        fail("out of memory");
    pattern = make_pattern(opt.size);
    for (int i = 0; i < opt.conns; i++) {
        struct conn *c = &conns[i];
        c->fd = connect_one();
        c->id = (unsigned)i;
        struct epoll_event ev = {.events = EPOLLIN, .data.ptr = c};
        if (epoll_ctl(epfd, EPOLL_CTL_ADD, c->fd, &ev) < 0)
            fail("epoll_ctl: %s", strerror(errno));
    }

    const double started = now();
    const double count_from = started + opt.warmup;
    const double count_until = count_from + opt.duration;
    /* No completion for opt.stall seconds, warm-up and drain included, is a failure. */
    double last_progress = started;
    int counting = 0, stopping = 0, in_flight = 0;
    double t_begin = count_from, t_end = count_until;
    uint64_t counted = 0, total = 0;

    for (int i = 0; i < opt.conns; i++) {
        start_request(&conns[i]);
        in_flight++;
    }

    struct epoll_event events[256];
    while (in_flight > 0) {
        int n = epoll_wait(epfd, events, 256, 50);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            fail("epoll_wait: %s", strerror(errno));
        }
        double t = now();
        if (!counting && !stopping && t >= count_from) {
            counting = 1;
            t_begin = t;
        }
        if (!stopping && (t >= count_until || counted >= opt.max_requests)) {
            if (counting)
                t_end = t;
            counting = 0;
            stopping = 1;
        }
        for (int e = 0; e < n; e++) {
            struct conn *c = events[e].data.ptr;
            uint32_t what = events[e].events;
            if ((what & EPOLLOUT) && c->sent < opt.size)
                pump_send(c);
            if (what & (EPOLLIN | EPOLLERR | EPOLLHUP)) {
                for (;;) {
                    size_t want = opt.size - c->received;
                    if (want > SCRATCH_SIZE)
                        want = SCRATCH_SIZE;
                    if (want == 0) {
                        /* Nothing expected, yet readable: extra bytes or EOF. */
                        ssize_t extra = recv(c->fd, scratch, 1, MSG_DONTWAIT);
                        if (extra > 0)
                            fail("server echoed more bytes than were sent");
                        if (extra == 0 && c->busy)
                            fail("server closed the connection");
                        break;
                    }
                    ssize_t r = recv(c->fd, scratch, want, 0);
                    if (r < 0 && errno == EINTR)
                        continue;
                    if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
                        break;
                    if (r < 0)
                        fail("recv: %s", strerror(errno));
                    if (r == 0)
                        fail("server closed the connection mid-request");
                    if (c->received + (size_t)r > c->sent)
                        fail("server echoed bytes not yet sent");
                    if (opt.verify && memcmp(scratch, c->msg + c->received, (size_t)r) != 0)
                        fail("echo differs from the message sent (request %llu, offset %zu)",
                             (unsigned long long)c->seq, c->received);
                    c->received += (size_t)r;
                    if (c->received < opt.size)
                        continue;
                    /* One request complete. */
                    total++;
                    last_progress = t;
                    if (counting)
                        counted++;
                    c->busy = 0;
                    if (stopping) {
                        in_flight--;
                        epoll_ctl(epfd, EPOLL_CTL_DEL, c->fd, NULL);
                        break;
                    }
                    start_request(c);
                }
            }
        }
        if (t - last_progress > opt.stall)
            fail("no echo completed for %.1f s (%d requests in flight, %llu done)", opt.stall,
                 in_flight, (unsigned long long)total);
    }

    /* Clean close: the server reads EOF, not a reset. */
    for (int i = 0; i < opt.conns; i++) {
        shutdown(conns[i].fd, SHUT_WR);
        close(conns[i].fd);
    }
    double seconds = t_end - t_begin;
    if (counted == 0 || seconds <= 0)
        fail("no request completed in the timed window (%llu in total)",
             (unsigned long long)total);
    double rps = (double)counted / seconds;
    printf("{\"requests\": %llu, \"seconds\": %.6f, \"rps\": %.3f, \"mib_per_s\": %.3f, "
           "\"conns\": %d, \"size\": %zu, \"total_requests\": %llu, \"verified\": %s}\n",
           (unsigned long long)counted, seconds, rps, rps * (double)opt.size / 1048576.0,
           opt.conns, opt.size, (unsigned long long)total, opt.verify ? "true" : "false");
    return 0;
}

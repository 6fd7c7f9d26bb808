/*
 * benchmarks/net/echo_client.c -- closed-loop echo load generator: TCP, UDP, or TLS.
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
 * --udp: each "connection" is a connected UDP socket and each message one datagram, so N is
 * the window of datagrams in flight (one per socket) and the server sees N peers. A lost
 * datagram stalls its socket: on loopback with a small window that is a server fault, and the
 * stall limit turns it into a failure.
 *
 * Built with -DECHO_TLS (and -lssl -lcrypto) it is tls_echo_client: every connection does a
 * TLS handshake (blocking, before the warm-up, so it is not timed), then the same echo runs
 * over TLS (OpenSSL, non-blocking); --ca FILE verifies the server's certificate chain against
 * FILE. Closing sends close_notify.
 *
 *   echo_client --port P [--host 127.0.0.1] [--conns N] [--size BYTES] [--duration S]
 *               [--warmup S] [--max-requests K] [--stall S] [--no-verify] [--udp]
 *   tls_echo_client ... [--ca FILE]   (no --udp)
 *
 * Prints {"connected": N} on stdout once every connection is made (and its TLS handshake
 * done), so a harness can start measuring the server then, and at the end one JSON line:
 *   {"requests": ..., "seconds": ..., "rps": ..., "mib_per_s": ..., ...}
 * where mib_per_s counts the payload echoed back (one direction) in MiB (2^20 bytes).
 * On failure prints {"error": "..."} and exits with status 1.
 *
 * Build: cc -O2 -o echo_client echo_client.c
 *        cc -O2 -DECHO_TLS -o tls_echo_client echo_client.c -lssl -lcrypto
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

#ifdef ECHO_TLS
#include <openssl/err.h>
#include <openssl/ssl.h>
#endif

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
#ifdef ECHO_TLS
    SSL *ssl;             /* the TLS session over fd */
#endif
};

static struct {
    const char *host;
    int port;
    int conns;
    size_t size;
    double duration, warmup, stall;
    uint64_t max_requests;
    int verify;
    int udp;              /* datagrams on connected UDP sockets instead of TCP streams */
    const char *ca;       /* TLS: the certificate file that verifies the server (or none) */
} opt = {"127.0.0.1", 0, 1, 1024, 1.0, 0.2, 5.0, 100000000ULL, 1, 0, NULL};

static int epfd = -1;

#ifdef ECHO_TLS
static SSL_CTX *tls_ctx;

/* What a failed SSL_read/SSL_write means, in the terms of send/recv: -1 with errno EAGAIN
 * (retry when the socket is ready), 0 (the peer closed: close_notify), or -1 with errno. */
static ssize_t tls_result(struct conn *c, int n)
{
    switch (SSL_get_error(c->ssl, n)) {
    case SSL_ERROR_WANT_READ:
    case SSL_ERROR_WANT_WRITE:
        errno = EAGAIN;
        return -1;
    case SSL_ERROR_ZERO_RETURN:
        return 0;
    case SSL_ERROR_SYSCALL:
        if (errno == 0)
            errno = ECONNRESET;
        return -1;
    default:
        fail("TLS: %s", ERR_error_string(ERR_get_error(), NULL));
    }
    return -1;
}
#endif

/* send() on the connection (through TLS in tls_echo_client). */
static ssize_t conn_send(struct conn *c, const void *data, size_t len)
{
#ifdef ECHO_TLS
    errno = 0;
    ERR_clear_error();
    int n = SSL_write(c->ssl, data, len > INT32_MAX ? INT32_MAX : (int)len);
    return n > 0 ? n : tls_result(c, n);
#else
    return send(c->fd, data, len, MSG_NOSIGNAL);
#endif
}

/* recv() on the connection (through TLS in tls_echo_client). */
static ssize_t conn_recv(struct conn *c, void *data, size_t len)
{
#ifdef ECHO_TLS
    errno = 0;
    ERR_clear_error();
    int n = SSL_read(c->ssl, data, len > INT32_MAX ? INT32_MAX : (int)len);
    return n > 0 ? n : tls_result(c, n);
#else
    return recv(c->fd, data, len, 0);
#endif
}

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
        ssize_t n = conn_send(c, c->msg + c->sent, opt.size - c->sent);
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

/* Connect c (a TCP connection, a connected UDP socket, or a TLS session after its handshake)
 * and make it non-blocking. */
static void connect_one(struct conn *c)
{
    struct sockaddr_in addr = {.sin_family = AF_INET, .sin_port = htons((uint16_t)opt.port)};
    if (inet_pton(AF_INET, opt.host, &addr.sin_addr) != 1)
        fail("bad IPv4 address %s", opt.host);
    int fd = socket(AF_INET, (opt.udp ? SOCK_DGRAM : SOCK_STREAM) | SOCK_CLOEXEC, 0);
    if (fd < 0)
        fail("socket: %s", strerror(errno));
    if (connect(fd, (struct sockaddr *)&addr, sizeof addr) < 0)
        fail("connect to %s:%d: %s", opt.host, opt.port, strerror(errno));
    int one = 1;
    if (!opt.udp)
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
#ifdef ECHO_TLS
    c->ssl = SSL_new(tls_ctx);
    if (!c->ssl || SSL_set_fd(c->ssl, fd) != 1)
        fail("SSL_new: %s", ERR_error_string(ERR_get_error(), NULL));
    if (SSL_connect(c->ssl) != 1)
        fail("TLS handshake with %s:%d: %s", opt.host, opt.port,
             ERR_error_string(ERR_get_error(), NULL));
#endif
    int flags = fcntl(fd, F_GETFL);
    if (flags < 0 || fcntl(fd, F_SETFL, flags | O_NONBLOCK) < 0)
        fail("fcntl: %s", strerror(errno));
    c->fd = fd;
}

/* Close c cleanly: the server reads EOF (or close_notify), not a reset. */
static void close_one(struct conn *c)
{
#ifdef ECHO_TLS
    SSL_shutdown(c->ssl); /* sends close_notify; the server's answer is not awaited */
    SSL_free(c->ssl);
#endif
    if (!opt.udp)
        shutdown(c->fd, SHUT_WR);
    close(c->fd);
}

#ifdef ECHO_TLS
static void tls_setup(void)
{
    tls_ctx = SSL_CTX_new(TLS_client_method());
    if (!tls_ctx)
        fail("SSL_CTX_new: %s", ERR_error_string(ERR_get_error(), NULL));
    /* Writes return what fit, and a retried write may come from the same bytes at any
     * address: pump_send's contract, as with send(). */
    SSL_CTX_set_mode(tls_ctx, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
    if (opt.ca) {
        if (SSL_CTX_load_verify_locations(tls_ctx, opt.ca, NULL) != 1)
            fail("loading %s: %s", opt.ca, ERR_error_string(ERR_get_error(), NULL));
        SSL_CTX_set_verify(tls_ctx, SSL_VERIFY_PEER, NULL);
    }
}
#endif

static void usage(int status)
{
    fprintf(status ? stderr : stdout,
            "usage: echo_client --port P [--host 127.0.0.1] [--conns N] [--size BYTES]\n"
            "                   [--duration S] [--warmup S] [--max-requests K] [--stall S]\n"
            "                   [--no-verify] [--udp] [--ca FILE (TLS build)]\n");
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
        {"udp", no_argument, 0, 'u'},            {"ca", required_argument, 0, 'a'},
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
        case 'u': opt.udp = 1; break;
        case 'a': opt.ca = optarg; break;
        case 'H': usage(0); break;
        default: usage(2);
        }
    }
    if (optind != argc || opt.port <= 0 || opt.port > 65535 || opt.conns < 1 ||
        opt.conns > 10000 || opt.size < 1 || opt.duration <= 0 || opt.warmup < 0 ||
        opt.stall <= 0 || opt.max_requests < 1)
        usage(2);
#ifdef ECHO_TLS
    if (opt.udp)
        usage(2); /* no DTLS */
#else
    if (opt.ca)
        usage(2); /* --ca belongs to the TLS build */
#endif
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
#ifdef ECHO_TLS
    tls_setup();
#endif
    for (int i = 0; i < opt.conns; i++) {
        struct conn *c = &conns[i];
        connect_one(c);
        c->id = (unsigned)i;
        struct epoll_event ev = {.events = EPOLLIN, .data.ptr = c};
        if (epoll_ctl(epfd, EPOLL_CTL_ADD, c->fd, &ev) < 0)
            fail("epoll_ctl: %s", strerror(errno));
    }
    printf("{\"connected\": %d}\n", opt.conns);
    fflush(stdout);

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
                        ssize_t extra = conn_recv(c, scratch, 1);
                        if (extra > 0)
                            fail("server echoed more bytes than were sent");
                        if (extra == 0 && c->busy)
                            fail("server closed the connection");
                        break;
                    }
                    ssize_t r = conn_recv(c, scratch, want);
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

    for (int i = 0; i < opt.conns; i++)
        close_one(&conns[i]);
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

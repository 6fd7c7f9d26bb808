/*
 * benchmarks/net/epoll_echo_server.c -- the machine's floor for the echo benchmarks.
 *
 * A bare single-threaded epoll echo server with no event loop library and no Python: what
 * one core can echo on this machine once the kernel and the client have taken their share.
 * It does what a loop's Protocol server does at minimum: level-triggered epoll, one read per
 * readiness event into a 256 KiB buffer, write straight back, and on a partial write keep
 * the rest, stop reading and wait for the socket to drain. TCP_NODELAY on accepted sockets,
 * as asyncio sets it on its transports.
 *
 *   epoll_echo_server PORT [HOST]        (HOST defaults to 127.0.0.1)
 *
 * Prints "READY <port>" once listening; runs until killed (SIGTERM or SIGINT).
 *
 * Build: cc -O2 -o epoll_echo_server epoll_echo_server.c
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#define BUFFER_SIZE (256 * 1024)

struct conn {
    int fd;
    size_t start, end;     /* unsent bytes are buf[start:end] */
    unsigned char buf[BUFFER_SIZE];
};

static int epfd;

static void die(const char *what)
{
    fprintf(stderr, "epoll_echo_server: %s: %s\n", what, strerror(errno));
    exit(1);
}

static void drop(struct conn *c)
{
    epoll_ctl(epfd, EPOLL_CTL_DEL, c->fd, NULL);
    close(c->fd);
    free(c);
}

static void watch(struct conn *c, uint32_t events)
{
    struct epoll_event ev = {.events = events, .data.ptr = c};
    if (epoll_ctl(epfd, EPOLL_CTL_MOD, c->fd, &ev) < 0)
        die("epoll_ctl");
}

/* Send buf[start:end]; return 1 when all sent, 0 when the socket is full, -1 on error. */
static int flush(struct conn *c)
{
    while (c->start < c->end) {
        ssize_t n = send(c->fd, c->buf + c->start, c->end - c->start, MSG_NOSIGNAL);
        if (n > 0)
            c->start += (size_t)n;
        else if (n < 0 && errno == EINTR)
            continue;
        else if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            return 0;
        else
            return -1;
    }
    c->start = c->end = 0;
    return 1;
}

static void on_readable(struct conn *c)
{
    ssize_t n = recv(c->fd, c->buf, BUFFER_SIZE, 0);
    if (n == 0) {
        drop(c);
        return;
    }
    if (n < 0) {
        if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)
            drop(c);
        return;
    }
    c->start = 0;
    c->end = (size_t)n;
    int sent = flush(c);
    if (sent < 0)
        drop(c);
    else if (sent == 0)
        watch(c, EPOLLOUT); /* stop reading until the echo has drained */
}

static void on_writable(struct conn *c)
{
    int sent = flush(c);
    if (sent < 0)
        drop(c);
    else if (sent == 1)
        watch(c, EPOLLIN);
}

int main(int argc, char **argv)
{
    if (argc < 2 || argc > 3) {
        fprintf(stderr, "usage: epoll_echo_server PORT [HOST]\n");
        return 2;
    }
    int port = atoi(argv[1]);
    const char *host = argc == 3 ? argv[2] : "127.0.0.1";
    signal(SIGPIPE, SIG_IGN);

    struct sockaddr_in addr = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    if (inet_pton(AF_INET, host, &addr.sin_addr) != 1) {
        fprintf(stderr, "epoll_echo_server: bad IPv4 address %s\n", host);
        return 2;
    }
    int lfd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (lfd < 0)
        die("socket");
    int one = 1;
    setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (bind(lfd, (struct sockaddr *)&addr, sizeof addr) < 0)
        die("bind");
    if (listen(lfd, 128) < 0)
        die("listen");
    socklen_t len = sizeof addr;
    getsockname(lfd, (struct sockaddr *)&addr, &len);

    epfd = epoll_create1(EPOLL_CLOEXEC);
    if (epfd < 0)
        die("epoll_create1");
    struct epoll_event lev = {.events = EPOLLIN, .data.ptr = NULL};
    if (epoll_ctl(epfd, EPOLL_CTL_ADD, lfd, &lev) < 0)
        die("epoll_ctl");
    printf("READY %d\n", ntohs(addr.sin_port));
    fflush(stdout);

    struct epoll_event events[128];
    for (;;) {
        int n = epoll_wait(epfd, events, 128, -1);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            die("epoll_wait");
        }
        for (int i = 0; i < n; i++) {
            struct conn *c = events[i].data.ptr;
            if (c == NULL) {
                for (;;) {
                    int fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
                    if (fd < 0)
                        break; /* EAGAIN, or a transient error: try at the next event */
                    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
                    struct conn *nc = malloc(sizeof *nc);
                    if (!nc) {
                        close(fd);
                        continue;
                    }
                    nc->fd = fd;
                    nc->start = nc->end = 0;
                    struct epoll_event ev = {.events = EPOLLIN, .data.ptr = nc};
                    if (epoll_ctl(epfd, EPOLL_CTL_ADD, fd, &ev) < 0) {
                        close(fd);
                        free(nc);
                    }
                }
                continue;
            }
            uint32_t what = events[i].events;
            if (c->end > c->start) {
                if (what & (EPOLLOUT | EPOLLERR | EPOLLHUP))
                    on_writable(c);
            } else if (what & (EPOLLIN | EPOLLERR | EPOLLHUP)) {
                on_readable(c);
            }
        }
    }
}

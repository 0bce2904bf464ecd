/*
 * xs_floor: a zero-work xenstore responder, the ceiling for single-client and
 * transaction throughput that any daemon can reach with libxenstore's clients on
 * this machine.
 *
 *   xs_floor --socket PATH [--poll-us N]
 *
 * It keeps no store: READ is answered with 32 bytes, TRANSACTION_START with
 * transaction id 1, every other request with "OK" (so transactions never conflict and
 * watches never fire: only xs_bench --only rw,tx makes sense against it).  Its event
 * loop does what xstored's does on the request path: epoll, one peeking recv per
 * readable connection, replies sent at once, the request bytes consumed after them,
 * and the same yielding busy-poll window (default 50 us, as xstored) after input.
 * tests/bench/run-xenstore prints its figures beside xstored's and C xenstored's.
 * Runs until killed.
 */
#include <errno.h>
#include <sched.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#define MAX_FD 4096
#define BUF 8192

struct hdr {
    uint32_t type, req_id, tx_id, len;
};

struct client {
    char buf[BUF];
    size_t have;
};

static struct client *clients[MAX_FD];

static long now_ns(void)
{
    struct timespec t;

    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec * 1000000000L + t.tv_nsec;
}

static void drop(int ep, int fd)
{
    epoll_ctl(ep, EPOLL_CTL_DEL, fd, NULL);
    close(fd);
    free(clients[fd]);
    clients[fd] = NULL;
}

/* Answers every whole message in the buffer; returns 0 or -errno. */
static int answer(int fd, struct client *c)
{
    size_t off = 0;

    while (c->have - off >= sizeof(struct hdr)) {
        struct hdr h, r;
        const char *p;
        char out[sizeof(struct hdr) + 64];
        size_t plen;

        memcpy(&h, c->buf + off, sizeof(h));
        if (h.len > BUF - sizeof(h))
            return -EPROTO;
        if (c->have - off < sizeof(h) + h.len)
            break;
        if (h.type == 2) {              /* XS_READ */
            p = "0123456789abcdef0123456789abcdef";
            plen = 32;
        } else if (h.type == 6) {       /* XS_TRANSACTION_START */
            p = "1";
            plen = 2;
        } else {
            p = "OK";
            plen = 3;
        }
        r = (struct hdr){ .type = h.type, .req_id = h.req_id, .tx_id = h.tx_id,
                          .len = (uint32_t)plen };
        memcpy(out, &r, sizeof(r));
        memcpy(out + sizeof(r), p, plen);
        if (send(fd, out, sizeof(r) + plen, MSG_NOSIGNAL | MSG_DONTWAIT) !=
            (ssize_t)(sizeof(r) + plen))
            return -EIO;                /* tiny replies: a full socket is a dead client */
        off += sizeof(h) + h.len;
    }
    memmove(c->buf, c->buf + off, c->have - off);
    c->have -= off;
    return 0;
}

int main(int argc, char **argv)
{
    struct sockaddr_un sa = { .sun_family = AF_UNIX };
    struct epoll_event ev = { .events = EPOLLIN };
    const char *path = NULL;
    long poll_ns = 50000;
    bool active = false;
    int lfd, ep;

    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--socket") && i + 1 < argc)
            path = argv[++i];
        else if (!strcmp(argv[i], "--poll-us") && i + 1 < argc)
            poll_ns = atol(argv[++i]) * 1000L;
        else {
            path = NULL;
            break;
        }
    }
    if (!path || strlen(path) >= sizeof(sa.sun_path)) {
        fprintf(stderr, "usage: xs_floor --socket PATH [--poll-us N]\n");
        return 2;
    }
    strcpy(sa.sun_path, path);
    unlink(path);
    lfd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    ep = epoll_create1(EPOLL_CLOEXEC);
    if (lfd < 0 || ep < 0 || bind(lfd, (struct sockaddr *)&sa, sizeof(sa)) < 0 ||
        listen(lfd, 4096) < 0) {
        fprintf(stderr, "xs_floor: %s: %s\n", path, strerror(errno));
        return 1;
    }
    ev.data.fd = lfd;
    if (epoll_ctl(ep, EPOLL_CTL_ADD, lfd, &ev) < 0) {
        fprintf(stderr, "xs_floor: epoll_ctl: %s\n", strerror(errno));
        return 1;
    }
    for (;;) {
        static char sink[BUF];
        struct epoll_event evs[64];
        int n = 0;

        if (active && poll_ns > 0) {
            long t0 = now_ns();

            do {
                n = epoll_wait(ep, evs, 64, 0);
                if (n)
                    break;
                sched_yield();
            } while (now_ns() - t0 < poll_ns);
        }
        active = false;
        if (n == 0)
            n = epoll_wait(ep, evs, 64, -1);
        if (n < 0 && errno != EINTR) {
            fprintf(stderr, "xs_floor: epoll_wait: %s\n", strerror(errno));
            return 1;
        }
        for (int i = 0; i < n; i++) {
            int fd = evs[i].data.fd;
            struct client *c;
            ssize_t got;

            if (fd == lfd) {
                int cfd;

                while ((cfd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC)) >= 0) {
                    struct epoll_event cev = { .events = EPOLLIN, .data.fd = cfd };

                    if (cfd >= MAX_FD || !(clients[cfd] = calloc(1, sizeof(struct client))) ||
                        epoll_ctl(ep, EPOLL_CTL_ADD, cfd, &cev) < 0) {
                        if (cfd < MAX_FD) {
                            free(clients[cfd]);
                            clients[cfd] = NULL;
                        }
                        close(cfd);
                    }
                }
                continue;
            }
            c = clients[fd];
            /* Peek, answer, then consume, as xstored does (store/socket.c): the
             * client is woken once, by the reply, not also by the freed request. */
            got = recv(fd, c->buf + c->have, BUF - c->have, MSG_DONTWAIT | MSG_PEEK);
            if (got < 0 && (errno == EAGAIN || errno == EINTR))
                continue;
            if (got <= 0) {
                drop(ep, fd);
                continue;
            }
            active = true;
            c->have += (size_t)got;
            if (answer(fd, c) < 0 ||
                recv(fd, sink, (size_t)got, MSG_DONTWAIT) != got)
                drop(ep, fd);
        }
    }
}

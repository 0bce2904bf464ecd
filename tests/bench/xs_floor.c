/*
 * xs_floor: a zero-work xenstore responder, the ceiling for the throughput (and the
 * floor for the latency) that any daemon can reach with libxenstore's clients on
 * this machine.
 *
 *   xs_floor --socket PATH [--poll-us N]
 *
 * It keeps no store: READ is answered with 32 bytes, TRANSACTION_START with
 * transaction id 1, DIRECTORY with E2BIG and DIRECTORY_PART from a virtual node of
 * 10,000 children named as xs_bench's dir10k ones, WATCH with OK and the initial
 * event, WRITE with OK after a WATCH_EVENT of the written path to every watcher (no
 * matching, no permissions), everything else with "OK" (so transactions never
 * conflict: only xs_bench --only rw,dir,tx,fanout makes sense against it).  Its event
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
    char token[64];             /* its watch's token; "" while it has none */
};

static struct client *clients[MAX_FD];

/* Connections holding a watch, in registration order. */
static int watchers[MAX_FD];
static int nwatchers;

#define DIR_CHILDREN 10000      /* xs_bench's dir10k node: child00000 .. child09999 */
#define DIR_NAME 11             /* "child%05d" and its NUL */

static long now_ns(void)
{
    struct timespec t;

    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec * 1000000000L + t.tv_nsec;
}

static void unwatch(int fd)
{
    for (int i = 0; i < nwatchers; i++)
        if (watchers[i] == fd) {
            memmove(watchers + i, watchers + i + 1, (size_t)(nwatchers - i - 1) * sizeof(int));
            nwatchers--;
            return;
        }
}

static void drop(int ep, int fd)
{
    epoll_ctl(ep, EPOLL_CTL_DEL, fd, NULL);
    close(fd);
    unwatch(fd);
    free(clients[fd]);
    clients[fd] = NULL;
}

/* One message; its payload is small or a watcher's socket was made big enough, so
 * a short send means a dead client. */
static int put(int fd, uint32_t type, uint32_t req_id, uint32_t tx_id, const void *p,
               size_t plen)
{
    char out[sizeof(struct hdr) + 4096];
    struct hdr r = { .type = type, .req_id = req_id, .tx_id = tx_id, .len = (uint32_t)plen };

    memcpy(out, &r, sizeof(r));
    memcpy(out + sizeof(r), p, plen);
    if (send(fd, out, sizeof(r) + plen, MSG_NOSIGNAL | MSG_DONTWAIT) !=
        (ssize_t)(sizeof(r) + plen))
        return -EIO;
    return 0;
}

/* The virtual node's children, "child00000\0child00001\0...", built once. */
static char dir_names[DIR_CHILDREN * DIR_NAME];

/* DIRECTORY_PART of the virtual 10,000-child node from byte offset `off`: the
 * generation, then as many whole names as fit, and an empty name after the last. */
static size_t dir_part(char *p, unsigned long off)
{
    size_t n = 2, len;

    if (!dir_names[0])
        for (int i = 0; i < DIR_CHILDREN; i++)
            sprintf(dir_names + i * DIR_NAME, "child%05d", i);
    off -= off % DIR_NAME;
    if (off > sizeof(dir_names))
        off = sizeof(dir_names);
    len = sizeof(dir_names) - off;
    if (len > 4096 - n - 1)
        len = (4096 - n - 1) / DIR_NAME * DIR_NAME;
    memcpy(p, "1", 2);
    memcpy(p + n, dir_names + off, len);
    n += len;
    if (off + len == sizeof(dir_names))
        p[n++] = '\0';
    return n;
}

/* WATCH_EVENT "path\0token\0" for every watcher: no matching, no permissions. */
static int fire(const char *path, size_t plen)
{
    for (int i = 0; i < nwatchers; i++) {
        struct client *w = clients[watchers[i]];
        char ev[512];
        size_t tl = strlen(w->token) + 1;

        if (plen + tl > sizeof(ev))
            continue;
        memcpy(ev, path, plen);
        memcpy(ev + plen, w->token, tl);
        put(watchers[i], 15, 0, 0, ev, plen + tl); /* a dead watcher is dropped on its EOF */
    }
    return 0;
}

/* Answers every whole message in the buffer; returns 0 or -errno. */
static int answer(int fd, struct client *c)
{
    size_t off = 0;

    while (c->have - off >= sizeof(struct hdr)) {
        struct hdr h;
        const char *body = c->buf + off + sizeof(h);
        char part[4096];
        int err;

        memcpy(&h, c->buf + off, sizeof(h));
        if (h.len > BUF - sizeof(h))
            return -EPROTO;
        if (c->have - off < sizeof(h) + h.len)
            break;
        switch (h.type) {
        case 1:                         /* XS_DIRECTORY: too big, as for the dir10k node */
            err = put(fd, 16, h.req_id, h.tx_id, "E2BIG", 6);
            break;
        case 2:                         /* XS_READ */
            err = put(fd, h.type, h.req_id, h.tx_id, "0123456789abcdef0123456789abcdef", 32);
            break;
        case 4: {                       /* XS_WATCH "path\0token\0" */
            size_t pl = strnlen(body, h.len) + 1;
            size_t tl = pl < h.len ? strnlen(body + pl, h.len - pl) : 0;
            int big = 8 << 20;

            if (pl >= h.len || tl >= sizeof(c->token) || c->token[0] || nwatchers >= MAX_FD)
                return -EPROTO;         /* one watch per connection, as xs_bench's */
            memcpy(c->token, body + pl, tl);
            c->token[tl] = '\0';
            /* no output queue here: room for every event the run can leave unread */
            if (setsockopt(fd, SOL_SOCKET, SO_SNDBUFFORCE, &big, sizeof(big)) < 0)
                setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &big, sizeof(big));
            watchers[nwatchers++] = fd;
            err = put(fd, h.type, h.req_id, h.tx_id, "OK", 3);
            if (!err)
                err = put(fd, 15, 0, 0, body, h.len);   /* the initial event */
            break;
        }
        case 6:                         /* XS_TRANSACTION_START */
            err = put(fd, h.type, h.req_id, h.tx_id, "1", 2);
            break;
        case 11:                        /* XS_WRITE "path\0value" */
            fire(body, strnlen(body, h.len) + 1 <= h.len ? strnlen(body, h.len) + 1 : h.len);
            err = put(fd, h.type, h.req_id, h.tx_id, "OK", 3);
            break;
        case 22: {                      /* XS_DIRECTORY_PART "path\0offset\0" */
            size_t pl = strnlen(body, h.len) + 1;

            if (pl >= h.len)
                return -EPROTO;
            err = put(fd, h.type, h.req_id, h.tx_id, part, dir_part(part, strtoul(body + pl, NULL, 10)));
            break;
        }
        default:
            err = put(fd, h.type, h.req_id, h.tx_id, "OK", 3);
            break;
        }
        if (err)
            return err;
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

/* Unix socket transport: the listening socket and its (privileged) connections.
 *
 * Reads use recvmsg so that SCM_RIGHTS fds (the ring handoff, see
 * docs/xenstore-ring-transport.md) are collected on the connection; dispatch hands
 * them to the next INTRODUCE.  Polling is level-triggered: EPOLLIN while the
 * connection may read (conn_can_read), EPOLLOUT while output is queued. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <talloc.h>
#include <unistd.h>

#include "store/lu_stream.h"
#include "store/xstored.h"

struct sock_conn_state {
	uint32_t events; /* currently registered */
	int fd;		 /* closed with the connection */
	size_t peeked;	 /* bytes read with MSG_PEEK and handled, still queued */
};

/* Requests are read with MSG_PEEK and consumed only after their replies are sent.
 * Freeing a request's bytes wakes the client's socket wait queue (the kernel's
 * write-space callback), and a client blocked in read() for its reply sleeps on
 * that queue: consuming first woke it for nothing, and on a virtual machine a
 * wakeup of an idle vCPU costs tens of microseconds.  Consumed after the reply,
 * the client is already awake and nothing more happens (single-client reads went
 * from ~55 to ~38 us a round trip on the test machine; docs/xstored.md).
 * sock_consume() runs before the next peek and at the end of every socket event,
 * so no handled byte is still queued when the loop iteration ends (live update
 * hands the socket over between iterations). */
static int sock_consume(struct sock_conn_state *s)
{
	static char sink[65536];

	while (s->peeked > 0) {
		ssize_t n = recv(s->fd, sink, s->peeked, MSG_DONTWAIT);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return n < 0 ? -errno : -ECONNRESET;
		s->peeked -= (size_t)n;
	}
	return 0;
}

/* The SCM_RIGHTS descriptors of msg: handed to c, or closed when c is NULL. */
static void sock_fds(struct msghdr *msg, struct conn *c)
{
	for (struct cmsghdr *cm = CMSG_FIRSTHDR(msg); cm; cm = CMSG_NXTHDR(msg, cm)) {
		if (cm->cmsg_level == SOL_SOCKET && cm->cmsg_type == SCM_RIGHTS) {
			unsigned int nfd = (cm->cmsg_len - CMSG_LEN(0)) / sizeof(int);
			int fds[CONN_MAX_FDS];
			if (nfd > CONN_MAX_FDS)
				nfd = CONN_MAX_FDS;
			memcpy(fds, CMSG_DATA(cm), nfd * sizeof(int));
			if (c)
				conn_take_fds(c, fds, nfd);
			else
				for (unsigned int i = 0; i < nfd; i++)
					close(fds[i]);
		}
	}
}

static ssize_t sock_read(struct conn *c, void *buf, size_t len)
{
	union {
		char buf[CMSG_SPACE(sizeof(int) * CONN_MAX_FDS)];
		struct cmsghdr align;
	} cbuf;
	struct iovec iov = {.iov_base = buf, .iov_len = len};
	struct msghdr msg = {.msg_iov = &iov,
			     .msg_iovlen = 1,
			     .msg_control = cbuf.buf,
			     .msg_controllen = sizeof(cbuf.buf)};
	struct sock_conn_state *s = c->transport;
	int err = sock_consume(s);
	ssize_t n;

	if (err < 0)
		return err;
	do {
		n = recvmsg(c->src.fd, &msg, MSG_DONTWAIT | MSG_CMSG_CLOEXEC | MSG_PEEK);
	} while (n < 0 && errno == EINTR);
	if (n < 0)
		return errno == EAGAIN || errno == EWOULDBLOCK ? 0 : -errno;
	if (n == 0)
		return -ECONNRESET;
	if (msg.msg_controllen == 0) {
		s->peeked = (size_t)n;
		return n;
	}
	/* Descriptors come with these bytes (the ring handoff, rare): close the peeked
	 * copies and read for real. */
	sock_fds(&msg, NULL);
	msg.msg_controllen = sizeof(cbuf.buf);
	do {
		n = recvmsg(c->src.fd, &msg, MSG_DONTWAIT | MSG_CMSG_CLOEXEC);
	} while (n < 0 && errno == EINTR);
	if (n < 0)
		return errno == EAGAIN || errno == EWOULDBLOCK ? 0 : -errno;
	sock_fds(&msg, c);
	if (n == 0)
		return -ECONNRESET;
	return n;
}

static ssize_t sock_write(struct conn *c, const void *buf, size_t len)
{
	ssize_t n;

	do {
		n = send(c->src.fd, buf, len, MSG_DONTWAIT | MSG_NOSIGNAL);
	} while (n < 0 && errno == EINTR);
	if (n < 0)
		return errno == EAGAIN || errno == EWOULDBLOCK ? 0 : -errno;
	return n;
}

static void sock_done(struct conn *c)
{
	struct sock_conn_state *s = c->transport;
	uint32_t want = (conn_can_read(c) ? EPOLLIN : 0) | (c->out_head ? EPOLLOUT : 0);

	if (want != s->events) {
		s->events = want;
		loop_mod(&c->src, want);
	}
}

static const struct conn_ops sock_ops = {
    .name = "socket",
    .read = sock_read,
    .write = sock_write,
    .done = sock_done,
};

static int sock_conn_destroy(struct sock_conn_state *s)
{
	struct ev_source src = {.fd = s->fd};

	loop_del(&src); /* explicit: a dup of the fd elsewhere would keep it polled */
	close(s->fd);
	return 0;
}

static void sock_event(struct ev_source *src, uint32_t events)
{
	struct conn *c = (struct conn *)src;

	if (c->dead)
		return;
	if (events & (EPOLLERR | EPOLLHUP) && !(events & EPOLLIN)) {
		conn_kill(c);
		return;
	}
	if ((events & EPOLLIN) && !(events & EPOLLOUT))
		conn_read_some(c);
	/* Send replies at once: polling for EPOLLOUT only when the socket is full keeps
	 * the request path short.  Everything the requests queued goes out in the order
	 * it was queued: the watch events a write fired reach their watchers before the
	 * writer has its reply and can send the next write. */
	conn_flush_dirty();
	if (!c->dead)
		conn_flush(c);
	if ((events & EPOLLIN) && (events & EPOLLOUT) && !c->dead) {
		conn_read_some(c);
		if (!c->dead)
			conn_flush(c);
	}
	if (!c->dead && sock_consume(c->transport) < 0)
		conn_kill(c);
}

struct listener {
	struct ev_source src;
};

static void listen_event(struct ev_source *src, uint32_t events)
{
	for (int i = 0; i < 64; i++) {
		int fd = accept4(src->fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
		struct conn *c;
		struct sock_conn_state *s;

		if (fd < 0) {
			if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)
				log_err("accept: %s", strerror(errno));
			return;
		}
		c = conn_new(xsd_ctx, &sock_ops, fd);
		s = c ? talloc_zero(c, struct sock_conn_state) : NULL;
		if (!s) {
			talloc_free(c);
			close(fd);
			continue;
		}
		s->fd = fd;
		talloc_set_destructor(s, sock_conn_destroy);
		c->transport = s;
		c->privileged = true;
		c->domid = 0;
		c->src.fn = sock_event;
		s->events = EPOLLIN;
		if (loop_add(&c->src, EPOLLIN) < 0)
			talloc_free(c); /* closes fd */
	}
}

static int listener_destroy(struct listener *l)
{
	loop_del(&l->src);
	close(l->src.fd);
	return 0;
}

int socket_listen(const char *path, struct ev_source **out)
{
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	struct listener *l;
	int fd, n;

	/* Bind and listen under a temporary name, then rename into place, so a client
	 * that sees the path can connect at once. */
	if (strlen(path) >= sizeof(sa.sun_path))
		return -ENAMETOOLONG;
	n = snprintf(sa.sun_path, sizeof(sa.sun_path), "%s.%ld", path, (long)getpid());
	if (n < 0 || (size_t)n >= sizeof(sa.sun_path))
		strcpy(sa.sun_path, path); /* no room for a temporary name: bind in place */
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	unlink(sa.sun_path);
	if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 || chmod(sa.sun_path, 0600) < 0 ||
	    listen(fd, 4096) < 0 ||
	    (strcmp(sa.sun_path, path) != 0 && rename(sa.sun_path, path) < 0)) {
		int err = -errno;
		unlink(sa.sun_path);
		close(fd);
		return err;
	}
	l = talloc_zero(xsd_ctx, struct listener);
	if (!l) {
		close(fd);
		return -ENOMEM;
	}
	l->src.fd = fd;
	l->src.fn = listen_event;
	talloc_set_destructor(l, listener_destroy);
	if (loop_add(&l->src, EPOLLIN) < 0) {
		talloc_free(l);
		return -errno;
	}
	*out = &l->src;
	return 0;
}

/* Live update: a listening socket inherited across exec. */
int socket_adopt_listener(int fd)
{
	struct listener *l = talloc_zero(xsd_ctx, struct listener);

	if (!l)
		return -ENOMEM;
	l->src.fd = fd;
	l->src.fn = listen_event;
	talloc_set_destructor(l, listener_destroy);
	if (loop_add(&l->src, EPOLLIN) < 0) {
		talloc_free(l);
		return -errno;
	}
	return 0;
}

/* Live update: an accepted connection inherited across exec. */
int socket_adopt(int fd, struct conn **out)
{
	struct conn *c = conn_new(xsd_ctx, &sock_ops, fd);
	struct sock_conn_state *s = c ? talloc_zero(c, struct sock_conn_state) : NULL;

	if (!s) {
		talloc_free(c);
		return -ENOMEM;
	}
	s->fd = fd;
	talloc_set_destructor(s, sock_conn_destroy);
	c->transport = s;
	c->privileged = true;
	c->domid = 0;
	c->src.fn = sock_event;
	s->events = EPOLLIN;
	if (loop_add(&c->src, EPOLLIN) < 0) {
		talloc_free(c);
		return -errno;
	}
	*out = c;
	return 0;
}

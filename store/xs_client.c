/* Blocking xenstore client over a unix socket; see xs_client.h. */
#include "store/xs_client.h"

#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <talloc.h>
#include <time.h>
#include <unistd.h>

#include "store/xs_proto.h"

struct xs_event {
	struct xs_event *next;
	char *path;
	char *token;
};

struct xs_client {
	int fd;
	struct xs_event *ev_head, *ev_tail;
};

static int client_destroy(struct xs_client *c)
{
	if (c->fd >= 0)
		close(c->fd);
	return 0;
}

int xs_client_open(void *ctx, const char *socket_path, struct xs_client **out)
{
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	struct xs_client *c;

	if (strlen(socket_path) >= sizeof(sa.sun_path))
		return -ENAMETOOLONG;
	strcpy(sa.sun_path, socket_path);
	c = talloc_zero(ctx, struct xs_client);
	if (!c)
		return -ENOMEM;
	c->fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (c->fd < 0) {
		int err = -errno;
		talloc_free(c);
		return err;
	}
	talloc_set_destructor(c, client_destroy);
	if (connect(c->fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		int err = -errno;
		talloc_free(c);
		return err;
	}
	*out = c;
	return 0;
}

int xs_client_fd(struct xs_client *c)
{
	return c->fd;
}

static int write_all(struct xs_client *c, const void *buf, size_t len, const int *fds,
		     unsigned int nfds)
{
	const char *p = buf;
	union {
		char buf[CMSG_SPACE(sizeof(int) * 8)];
		struct cmsghdr align;
	} cbuf;

	if (nfds > 8)
		return -EINVAL;
	while (len > 0) {
		struct iovec iov = {.iov_base = (void *)p, .iov_len = len};
		struct msghdr msg = {.msg_iov = &iov, .msg_iovlen = 1};
		ssize_t n;

		if (nfds > 0) {
			struct cmsghdr *cm;

			memset(&cbuf, 0, sizeof(cbuf));
			msg.msg_control = cbuf.buf;
			msg.msg_controllen = CMSG_SPACE(sizeof(int) * nfds);
			cm = CMSG_FIRSTHDR(&msg);
			cm->cmsg_level = SOL_SOCKET;
			cm->cmsg_type = SCM_RIGHTS;
			cm->cmsg_len = CMSG_LEN(sizeof(int) * nfds);
			memcpy(CMSG_DATA(cm), fds, sizeof(int) * nfds);
		}
		n = sendmsg(c->fd, &msg, MSG_NOSIGNAL);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		nfds = 0;
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

/* Reads exactly len bytes, waiting at most until deadline (ms since epoch of
 * CLOCK_MONOTONIC; <0 = forever).  -ETIMEDOUT only if nothing was read yet. */
static int read_exact(struct xs_client *c, void *buf, size_t len, int64_t deadline)
{
	char *p = buf;
	size_t got = 0;

	while (got < len) {
		ssize_t n;

		if (deadline >= 0 && got == 0) {
			struct timespec ts;
			struct pollfd pfd = {.fd = c->fd, .events = POLLIN};
			int64_t now, wait;
			int r;

			clock_gettime(CLOCK_MONOTONIC, &ts);
			now = (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
			wait = deadline > now ? deadline - now : 0;
			r = poll(&pfd, 1, (int)wait);
			if (r < 0) {
				if (errno == EINTR)
					continue;
				return -errno;
			}
			if (r == 0)
				return -ETIMEDOUT;
		}
		n = read(c->fd, p + got, len - got);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		if (n == 0)
			return -ECONNRESET;
		got += (size_t)n;
	}
	return 0;
}

/* Reads one message; payload gets a NUL appended (not counted in hdr->len). */
static int read_msg(struct xs_client *c, void *ctx, struct xs_hdr *hdr, char **body,
		    int64_t deadline)
{
	char *b;
	int ret;

	ret = read_exact(c, hdr, sizeof(*hdr), deadline);
	if (ret < 0)
		return ret;
	if (hdr->len > XS_PAYLOAD_MAX)
		return -EPROTO;
	b = talloc_size(ctx, hdr->len + 1);
	if (!b)
		return -ENOMEM;
	ret = read_exact(c, b, hdr->len, -1);
	if (ret < 0) {
		talloc_free(b);
		return ret;
	}
	b[hdr->len] = '\0';
	*body = b;
	return 0;
}

static int queue_event(struct xs_client *c, char *body, size_t len)
{
	struct xs_event *ev;
	size_t plen = strnlen(body, len);

	if (plen >= len) {
		talloc_free(body);
		return -EPROTO;
	}
	ev = talloc_zero(c, struct xs_event);
	if (!ev) {
		talloc_free(body);
		return -ENOMEM;
	}
	ev->path = talloc_steal(ev, body);
	ev->token = body + plen + 1;
	if (c->ev_tail)
		c->ev_tail->next = ev;
	else
		c->ev_head = ev;
	c->ev_tail = ev;
	return 0;
}

int xs_client_request(struct xs_client *c, uint32_t type, uint32_t tx, const void *payload,
		      size_t len, const int *fds, unsigned int nfds, void *ctx, char **reply,
		      size_t *reply_len)
{
	struct xs_hdr hdr = {.type = type, .req_id = 0, .tx_id = tx, .len = (uint32_t)len};
	char *body;
	int ret;

	if (len > XS_PAYLOAD_MAX)
		return -E2BIG;
	/* Header and payload in one send so SCM_RIGHTS rides with the request's bytes. */
	{
		char buf[sizeof(hdr) + XS_PAYLOAD_MAX];

		memcpy(buf, &hdr, sizeof(hdr));
		if (len)
			memcpy(buf + sizeof(hdr), payload, len);
		ret = write_all(c, buf, sizeof(hdr) + len, fds, nfds);
	}
	if (ret < 0)
		return ret;
	for (;;) {
		struct xs_hdr rh;

		ret = read_msg(c, c, &rh, &body, -1);
		if (ret < 0)
			return ret;
		if (rh.type == XS_WATCH_EVENT) {
			ret = queue_event(c, body, rh.len);
			if (ret < 0)
				return ret;
			continue;
		}
		if (rh.type == XS_ERROR) {
			ret = -xs_error_parse(body, rh.len);
			talloc_free(body);
			return ret;
		}
		if (rh.type != type) {
			talloc_free(body);
			return -EPROTO;
		}
		if (reply) {
			*reply = talloc_steal(ctx, body);
			if (reply_len)
				*reply_len = rh.len;
		} else {
			talloc_free(body);
		}
		return 0;
	}
}

int xs_client_batch(struct xs_client *c, struct xs_batch_op *ops, unsigned int n, void *ctx)
{
	size_t total = 0, off = 0;
	unsigned int i, got = 0;
	char *buf;
	int ret;

	if (n > XS_BATCH_MAX)
		return -E2BIG;
	for (i = 0; i < n; i++) {
		if (ops[i].len > XS_PAYLOAD_MAX)
			return -E2BIG;
		total += sizeof(struct xs_hdr) + ops[i].len;
	}
	if (!n)
		return 0;
	buf = talloc_size(c, total);
	if (!buf)
		return -ENOMEM;
	for (i = 0; i < n; i++) {
		struct xs_hdr hdr = {.type = ops[i].type, .req_id = i + 1, .tx_id = ops[i].tx,
				     .len = (uint32_t)ops[i].len};

		memcpy(buf + off, &hdr, sizeof(hdr));
		if (ops[i].len)
			memcpy(buf + off + sizeof(hdr), ops[i].payload, ops[i].len);
		off += sizeof(hdr) + ops[i].len;
		ops[i].err = -EINPROGRESS;
		ops[i].reply = NULL;
		ops[i].reply_len = 0;
	}
	ret = write_all(c, buf, total, NULL, 0);
	talloc_free(buf);
	while (ret == 0 && got < n) {
		struct xs_hdr rh;
		char *body;

		ret = read_msg(c, c, &rh, &body, -1);
		if (ret < 0)
			break;
		if (rh.type == XS_WATCH_EVENT) {
			ret = queue_event(c, body, rh.len);
			continue;
		}
		if (rh.req_id < 1 || rh.req_id > n || ops[rh.req_id - 1].err != -EINPROGRESS) {
			talloc_free(body);
			ret = -EPROTO;
			break;
		}
		i = rh.req_id - 1;
		got++;
		if (rh.type == XS_ERROR) {
			ops[i].err = -xs_error_parse(body, rh.len);
			talloc_free(body);
		} else if (rh.type != ops[i].type) {
			ops[i].err = -EPROTO;
			talloc_free(body);
		} else {
			ops[i].err = 0;
			ops[i].reply = talloc_steal(ctx, body);
			ops[i].reply_len = rh.len;
		}
	}
	return ret;
}

/* Builds "s1\0s2\0..." on ctx. */
static char *join(void *ctx, const char *const *args, unsigned int n, size_t *len)
{
	size_t total = 0;
	char *buf, *p;

	for (unsigned int i = 0; i < n; i++)
		total += strlen(args[i]) + 1;
	buf = talloc_size(ctx, total ? total : 1);
	if (!buf)
		return NULL;
	p = buf;
	for (unsigned int i = 0; i < n; i++) {
		size_t l = strlen(args[i]) + 1;
		memcpy(p, args[i], l);
		p += l;
	}
	*len = total;
	return buf;
}

static int simple(struct xs_client *c, uint32_t type, uint32_t tx, const char *const *args,
		  unsigned int n)
{
	size_t len;
	char *buf = join(c, args, n, &len);
	int ret;

	if (!buf)
		return -ENOMEM;
	ret = xs_client_request(c, type, tx, buf, len, NULL, 0, NULL, NULL, NULL);
	talloc_free(buf);
	return ret;
}

int xs_client_read(struct xs_client *c, uint32_t tx, const char *path, void *ctx, char **val,
		   size_t *len)
{
	return xs_client_request(c, XS_READ, tx, path, strlen(path) + 1, NULL, 0, ctx, val, len);
}

int xs_client_write(struct xs_client *c, uint32_t tx, const char *path, const void *val, size_t len)
{
	size_t plen = strlen(path) + 1;
	char *buf;
	int ret;

	if (plen + len > XS_PAYLOAD_MAX)
		return -E2BIG;
	buf = talloc_size(c, plen + len);
	if (!buf)
		return -ENOMEM;
	memcpy(buf, path, plen);
	if (len)
		memcpy(buf + plen, val, len);
	ret = xs_client_request(c, XS_WRITE, tx, buf, plen + len, NULL, 0, NULL, NULL, NULL);
	talloc_free(buf);
	return ret;
}

int xs_client_mkdir(struct xs_client *c, uint32_t tx, const char *path)
{
	return simple(c, XS_MKDIR, tx, &path, 1);
}

int xs_client_rm(struct xs_client *c, uint32_t tx, const char *path)
{
	return simple(c, XS_RM, tx, &path, 1);
}

/* Splits a NUL-separated list into a talloc'd array of strings (children of it). */
static int split(void *ctx, char *body, size_t len, char ***out, unsigned int *n)
{
	unsigned int cnt = 0, i = 0;
	char **arr;

	for (size_t k = 0; k < len; k++)
		if (body[k] == '\0')
			cnt++;
	arr = talloc_array(ctx, char *, cnt + 1);
	if (!arr)
		return -ENOMEM;
	talloc_steal(arr, body);
	for (size_t k = 0; k < len && i < cnt; i++) {
		arr[i] = body + k;
		k += strlen(body + k) + 1;
	}
	arr[cnt] = NULL;
	*out = arr;
	*n = cnt;
	return 0;
}

int xs_client_directory(struct xs_client *c, uint32_t tx, const char *path, void *ctx,
			char ***names, unsigned int *n)
{
	char *body;
	size_t len;
	int ret;

	ret = xs_client_request(c, XS_DIRECTORY, tx, path, strlen(path) + 1, NULL, 0, ctx, &body,
				&len);
	if (ret == -E2BIG) {
		/* Long list: fetch it in DIRECTORY_PART chunks, restarting if it changes. */
		char *acc = NULL, *gen = NULL;
		size_t acc_len = 0;

		for (;;) {
			char req[XS_PAYLOAD_MAX];
			size_t plen = strlen(path) + 1, rlen;
			int l;

			if (plen + 24 > sizeof(req))
				return -EINVAL;
			memcpy(req, path, plen);
			l = snprintf(req + plen, sizeof(req) - plen, "%zu", acc_len);
			ret = xs_client_request(c, XS_DIRECTORY_PART, tx, req, plen + l + 1, NULL,
						0, c, &body, &rlen);
			if (ret < 0) {
				talloc_free(acc);
				talloc_free(gen);
				return ret;
			}
			size_t glen = strnlen(body, rlen);
			if (glen >= rlen) {
				talloc_free(body);
				talloc_free(acc);
				talloc_free(gen);
				return -EPROTO;
			}
			if (gen && strcmp(gen, body) != 0) {
				talloc_free(acc);
				talloc_free(gen);
				acc = NULL;
				gen = NULL;
				acc_len = 0;
				talloc_free(body);
				continue;
			}
			if (!gen)
				gen = talloc_strdup(c, body);
			size_t clen = rlen - glen - 1;
			char *chunk = body + glen + 1;
			bool done =
			    clen == 0 ||
			    (clen >= 2 && chunk[clen - 1] == '\0' && chunk[clen - 2] == '\0') ||
			    (clen == 1 && chunk[0] == '\0');
			if (done)
				clen--; /* drop the list terminator */
			acc = talloc_realloc_size(c, acc, acc_len + clen + 1);
			if (!acc || !gen) {
				talloc_free(body);
				talloc_free(gen);
				return -ENOMEM;
			}
			memcpy(acc + acc_len, chunk, clen);
			acc_len += clen;
			talloc_free(body);
			if (done)
				break;
		}
		talloc_free(gen);
		talloc_steal(ctx, acc);
		return split(ctx, acc, acc_len, names, n);
	}
	if (ret < 0)
		return ret;
	return split(ctx, body, len, names, n);
}

int xs_client_get_perms(struct xs_client *c, uint32_t tx, const char *path, void *ctx,
			char ***perms, unsigned int *n)
{
	char *body;
	size_t len;
	int ret;

	ret = xs_client_request(c, XS_GET_PERMS, tx, path, strlen(path) + 1, NULL, 0, ctx, &body,
				&len);
	if (ret < 0)
		return ret;
	return split(ctx, body, len, perms, n);
}

int xs_client_set_perms(struct xs_client *c, uint32_t tx, const char *path,
			const char *const *perms, unsigned int n)
{
	const char **args = talloc_array(c, const char *, n + 1);
	int ret;

	if (!args)
		return -ENOMEM;
	args[0] = path;
	for (unsigned int i = 0; i < n; i++)
		args[i + 1] = perms[i];
	ret = simple(c, XS_SET_PERMS, tx, args, n + 1);
	talloc_free(args);
	return ret;
}

int xs_client_txn_start(struct xs_client *c, uint32_t *tx_out)
{
	char *body;
	int ret;

	ret = xs_client_request(c, XS_TRANSACTION_START, 0, "", 1, NULL, 0, c, &body, NULL);
	if (ret < 0)
		return ret;
	*tx_out = (uint32_t)strtoul(body, NULL, 10);
	talloc_free(body);
	return *tx_out ? 0 : -EPROTO; /* 0 is no transaction */
}

int xs_client_txn_end(struct xs_client *c, uint32_t tx, bool commit)
{
	return xs_client_request(c, XS_TRANSACTION_END, tx, commit ? "T" : "F", 2, NULL, 0, NULL,
				 NULL, NULL);
}

int xs_client_watch(struct xs_client *c, const char *path, const char *token)
{
	const char *args[2] = {path, token};
	return simple(c, XS_WATCH, 0, args, 2);
}

int xs_client_unwatch(struct xs_client *c, const char *path, const char *token)
{
	const char *args[2] = {path, token};
	return simple(c, XS_UNWATCH, 0, args, 2);
}

int xs_client_next_event(struct xs_client *c, int timeout_ms, void *ctx, char **path, char **token)
{
	int64_t deadline = -1;
	int ret;

	while (!c->ev_head) {
		struct xs_hdr rh;
		char *body;

		if (timeout_ms >= 0 && deadline < 0) {
			struct timespec ts;
			clock_gettime(CLOCK_MONOTONIC, &ts);
			deadline = (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000 + timeout_ms;
		}
		ret = read_msg(c, c, &rh, &body, deadline);
		if (ret < 0)
			return ret;
		if (rh.type != XS_WATCH_EVENT) {
			talloc_free(body);
			return -EPROTO;
		}
		ret = queue_event(c, body, rh.len);
		if (ret < 0)
			return ret;
	}
	struct xs_event *ev = c->ev_head;
	c->ev_head = ev->next;
	if (!c->ev_head)
		c->ev_tail = NULL;
	*path = talloc_steal(ctx, ev->path);
	*token = ev->token;
	talloc_free(ev);
	return 0;
}

int xs_client_introduce(struct xs_client *c, uint32_t domid, uint64_t gfn, uint32_t evtchn,
			const int fds[3])
{
	char buf[64];
	int l = snprintf(buf, sizeof(buf), "%u%c%llu%c%u", domid, '\0', (unsigned long long)gfn,
			 '\0', evtchn);

	return xs_client_request(c, XS_INTRODUCE, 0, buf, (size_t)l + 1, fds, fds ? 3 : 0, NULL,
				 NULL, NULL);
}

int xs_client_release(struct xs_client *c, uint32_t domid)
{
	char buf[16];
	int l = snprintf(buf, sizeof(buf), "%u", domid);

	return xs_client_request(c, XS_RELEASE, 0, buf, (size_t)l + 1, NULL, 0, NULL, NULL, NULL);
}

int xs_client_control(struct xs_client *c, const char *const *args, unsigned int n, void *ctx,
		      char **reply)
{
	size_t len;
	char *buf = join(c, args, n, &len);
	int ret;

	if (!buf)
		return -ENOMEM;
	ret = xs_client_request(c, XS_CONTROL, 0, buf, len, NULL, 0, ctx, reply, NULL);
	talloc_free(buf);
	return ret;
}

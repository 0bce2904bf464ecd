/* In-process connection: requests are fed with conn_input(), replies and events
 * accumulate in a buffer.  Used by the unit tests and the libFuzzer target so the
 * real parser and dispatcher run without sockets. */
#include <errno.h>
#include <string.h>
#include <talloc.h>

#include "store/xstored.h"

struct memconn {
	char *out;
	size_t len;
	char *last; /* handed out by memconn_output */
};

static ssize_t mem_read(struct conn *c, void *buf, size_t len)
{
	return 0;
}

static ssize_t mem_write(struct conn *c, const void *buf, size_t len)
{
	struct memconn *m = c->transport;
	char *n = talloc_realloc_size(m, m->out, m->len + len);

	if (!n)
		return -ENOMEM;
	memcpy(n + m->len, buf, len);
	m->out = n;
	m->len += len;
	return (ssize_t)len;
}

static void mem_done(struct conn *c)
{
}

static const struct conn_ops mem_ops = {
    .name = "memory",
    .read = mem_read,
    .write = mem_write,
    .done = mem_done,
};

struct conn *memconn_new(void *ctx, bool privileged, uint16_t domid)
{
	struct conn *c = conn_new(ctx, &mem_ops, -1);
	struct memconn *m;

	if (!c)
		return NULL;
	m = talloc_zero(c, struct memconn);
	if (!m) {
		talloc_free(c);
		return NULL;
	}
	c->transport = m;
	c->privileged = privileged;
	c->domid = domid;
	return c;
}

const char *memconn_output(struct conn *c, size_t *len)
{
	struct memconn *m = c->transport;

	conn_flush_dirty();
	talloc_free(m->last);
	m->last = m->out;
	*len = m->len;
	m->out = NULL;
	m->len = 0;
	return m->last ? m->last : "";
}

/* Connections: framing of the input byte stream, the output queue, lifetime.
 *
 * A connection is transport-neutral: conn_ops supplies read/write (socket.c, ring.c).
 * Input: bytes arrive in chunks; whole messages found in a chunk are dispatched
 * straight from it, a trailing partial message is kept in c->in (header + payload,
 * at most 16 + 4096 bytes) until completed.  A header announcing more than 4096
 * payload bytes cannot be resynchronised: the connection is dropped (spec §1.3).
 * Output: a FIFO of whole messages (header + payload) with a send offset for the
 * partially written first one.  Both are plain fields so a later live-update can
 * serialise them.  Killing a connection drops its watches and transactions at once
 * (no more events reach it) and frees it at the end of the loop iteration, so a
 * handler never sees its connection vanish. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <talloc.h>
#include <time.h>
#include <unistd.h>

#include "store/xstored.h"

struct conn *conn_list;
static struct conn *dead_list;
static struct conn *dirty_list, *dirty_tail;
static uint32_t next_conn_id = 1;
static unsigned long nconns;

/* Socket connections stop reading while this much output is unsent. */
#define OUT_HIGH_WATER (1u << 20)

unsigned long conn_total(void)
{
	return nconns;
}

static int conn_destroy(struct conn *c)
{
	watch_remove_all(c);
	while (c->txns)
		talloc_free(c->txns);
	conn_close_fds(c);
	if (!c->dead) {
		if (c->prev)
			c->prev->next = c->next;
		else
			conn_list = c->next;
		if (c->next)
			c->next->prev = c->prev;
		nconns--;
	}
	if (c->is_ring)
		domain_conn_gone(c);
	return 0;
}

struct conn *conn_new(void *ctx, const struct conn_ops *ops, int fd)
{
	struct conn *c = talloc_zero(ctx, struct conn);

	if (!c)
		return NULL;
	c->ops = ops;
	c->src.fd = fd;
	c->id = next_conn_id++;
	c->target = -1;
	c->next_txid = 1;
	c->next = conn_list;
	if (conn_list)
		conn_list->prev = c;
	conn_list = c;
	nconns++;
	talloc_set_destructor(c, conn_destroy);
	if (trace_on())
		trace_printf("CREATE %s connection %u\n", ops->name, c->id);
	return c;
}

void conn_kill(struct conn *c)
{
	if (c->dead)
		return;
	if (trace_on())
		trace_printf("DESTROY connection %u\n", c->id);
	watch_remove_all(c);
	while (c->txns)
		talloc_free(c->txns);
	if (c->prev)
		c->prev->next = c->next;
	else
		conn_list = c->next;
	if (c->next)
		c->next->prev = c->prev;
	nconns--;
	c->dead = true;
	c->next = dead_list;
	c->prev = NULL;
	dead_list = c;
}

void conn_reap(void)
{
	while (dead_list) {
		struct conn *c = dead_list;
		dead_list = c->next;
		talloc_free(c);
	}
}

void conn_take_fds(struct conn *c, const int *fds, unsigned int n)
{
	for (unsigned int i = 0; i < n; i++) {
		if (c->nfds < CONN_MAX_FDS)
			c->fds[c->nfds++] = fds[i];
		else
			close(fds[i]);
	}
}

void conn_close_fds(struct conn *c)
{
	for (unsigned int i = 0; i < c->nfds; i++)
		close(c->fds[i]);
	c->nfds = 0;
}

/* Drops watches, transactions and queued output (INTRODUCE of a known domain). */
void conn_reset(struct conn *c)
{
	watch_remove_all(c);
	while (c->txns)
		talloc_free(c->txns);
	while (c->out_head) {
		struct outmsg *m = c->out_head;
		c->out_head = m->next;
		talloc_free(m);
	}
	c->out_tail = NULL;
	c->out_count = 0;
	c->out_bytes = 0;
	talloc_free(c->in);
	c->in = NULL;
	c->in_len = 0;
}

const char *conn_home(const struct conn *c, char *buf, size_t cap)
{
	snprintf(buf, cap, "/local/domain/%u", c ? c->domid : 0);
	return buf;
}

int conn_queue(struct conn *c, uint32_t type, uint32_t req_id, uint32_t tx_id, const void *payload,
	       size_t len, bool is_event)
{
	struct outmsg *m;
	struct xs_hdr h = {.type = type, .req_id = req_id, .tx_id = tx_id, .len = (uint32_t)len};

	if (c->dead)
		return 0;
	m = talloc_size(c, sizeof(*m) + sizeof(h) + len);
	if (!m)
		return -ENOMEM;
	talloc_set_name_const(m, "struct outmsg");
	m->next = NULL;
	m->len = (uint32_t)(sizeof(h) + len);
	m->off = 0;
	m->is_event = is_event;
	m->queued_s = is_event ? mono_seconds() : 0;
	memcpy(m->data, &h, sizeof(h));
	if (len)
		memcpy(m->data + sizeof(h), payload, len);
	if (c->out_tail)
		c->out_tail->next = m;
	else
		c->out_head = m;
	c->out_tail = m;
	c->out_count++;
	c->out_bytes += m->len;
	if (trace_on())
		trace_msg(is_event ? "OUT" : "OUT", c, &h, m->data + sizeof(h));
	if (!c->dirty) { /* in the order output was queued: see conn_flush_dirty() */
		c->dirty = true;
		c->dnext = NULL;
		if (dirty_tail)
			dirty_tail->dnext = c;
		else
			dirty_list = c;
		dirty_tail = c;
	}
	return 0;
}

void conn_flush(struct conn *c)
{
	while (c->out_head && !c->dead) {
		struct outmsg *m = c->out_head;
		ssize_t n = c->ops->write(c, m->data + m->off, m->len - m->off);

		if (n < 0) {
			conn_kill(c);
			return;
		}
		if (n == 0)
			break;
		m->off += (uint32_t)n;
		c->out_bytes -= (size_t)n;
		if (m->off < m->len)
			break;
		c->out_head = m->next;
		if (!c->out_head)
			c->out_tail = NULL;
		c->out_count--;
		talloc_free(m);
	}
	if (!c->dead)
		c->ops->done(c);
}

uint32_t mono_seconds(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint32_t)ts.tv_sec;
}

void conn_expire_events(void)
{
	uint32_t now = mono_seconds();

	if (opts.watch_event_timeout <= 0)
		return;
	for (struct conn *c = conn_list; c; c = c->next) {
		struct outmsg **pp = &c->out_head, *prev = NULL;

		if (c->privileged)
			continue;
		while (*pp) {
			struct outmsg *m = *pp;
			if (m->is_event && m->off == 0 &&
			    now - m->queued_s >= (uint32_t)opts.watch_event_timeout) {
				if (trace_on())
					trace_printf("connection %u: watch event timed out\n",
						     c->id);
				*pp = m->next;
				c->out_count--;
				c->out_bytes -= m->len;
				talloc_free(m);
				continue;
			}
			prev = m;
			pp = &m->next;
		}
		c->out_tail = prev;
	}
}

void conn_flush_dirty(void)
{
	while (dirty_list) {
		struct conn *c = dirty_list;
		dirty_list = c->dnext;
		if (!dirty_list)
			dirty_tail = NULL;
		c->dirty = false;
		if (!c->dead)
			conn_flush(c);
	}
}

bool conn_can_read(const struct conn *c)
{
	if (c->dead || c->stalled)
		return false;
	if (c->privileged)
		return c->out_bytes < OUT_HIGH_WATER;
	return c->out_count < (unsigned int)quotas[Q_OUTSTANDING].hard &&
	       c->out_bytes < OUT_HIGH_WATER;
}

/* Protocol violation that cannot be resynchronised. */
static void conn_bad_stream(struct conn *c)
{
	log_err("connection %u: payload length over %d, dropping it", c->id, XS_PAYLOAD_MAX);
	if (c->is_ring) {
		c->stalled = true;
		ring_reset(c); /* sets the error field; see ring.c */
		return;
	}
	conn_kill(c);
}

void conn_input(struct conn *c, const char *data, size_t len)
{
	while (len > 0 && !c->dead && !c->stalled) {
		struct xs_hdr h;

		if (c->in_len == 0 && len >= sizeof(h)) {
			memcpy(&h, data, sizeof(h));
			if (h.len > XS_PAYLOAD_MAX) {
				conn_bad_stream(c);
				return;
			}
			if (len >= sizeof(h) + h.len) {
				dispatch(c, &h, data + sizeof(h));
				data += sizeof(h) + h.len;
				len -= sizeof(h) + h.len;
				continue;
			}
		}
		/* Partial message: accumulate in c->in. */
		if (!c->in) {
			c->in = talloc_size(c, sizeof(h) + XS_PAYLOAD_MAX);
			if (!c->in) {
				conn_kill(c);
				return;
			}
		}
		size_t need = sizeof(h);
		if (c->in_len >= sizeof(h)) {
			memcpy(&h, c->in, sizeof(h));
			need += h.len;
		}
		size_t take = need - c->in_len < len ? need - c->in_len : len;
		memcpy(c->in + c->in_len, data, take);
		c->in_len += (uint32_t)take;
		data += take;
		len -= take;
		if (c->in_len == sizeof(h)) {
			memcpy(&h, c->in, sizeof(h));
			if (h.len > XS_PAYLOAD_MAX) {
				conn_bad_stream(c);
				return;
			}
		}
		if (c->in_len >= sizeof(h)) {
			memcpy(&h, c->in, sizeof(h));
			if (c->in_len == sizeof(h) + h.len) {
				c->in_len = 0;
				dispatch(c, &h, c->in + sizeof(h));
				if (!c->dead && c->in_len == 0) {
					talloc_free(c->in);
					c->in = NULL;
				}
			}
		}
	}
}

/* Bytes still missing from the message being assembled in c->in. */
static size_t conn_need(const struct conn *c)
{
	struct xs_hdr h;

	if (c->in_len < sizeof(h))
		return sizeof(h) - c->in_len;
	memcpy(&h, c->in, sizeof(h));
	return sizeof(h) + h.len - c->in_len;
}

void conn_read_some(struct conn *c)
{
	static char buf[65536];

	while (conn_can_read(c)) {
		/* Rings are read one message at a time so the outstanding-requests quota
		 * stops consumption exactly; sockets (privileged) in big chunks. */
		size_t want = c->is_ring ? conn_need(c) : sizeof(buf);
		ssize_t n = c->ops->read(c, buf, want);

		if (n < 0) {
			conn_kill(c);
			return;
		}
		if (n == 0)
			break;
		loop_activity();
		conn_input(c, buf, (size_t)n);
		if (!c->is_ring && (size_t)n < sizeof(buf))
			break;
	}
}

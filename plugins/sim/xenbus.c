/*
 * The sim guest's xenbus client: xenstore requests over the shared ring page
 * (struct xenstore_domain_interface, docs spec 8.1) and the two eventfds.
 *
 * A linear state machine driven by vcpu 0's loop, never blocking:
 *   WAIT_CONNECT  the page's `connection` field is 1 (RECONNECT) from vm_create until
 *                 xstored's INTRODUCE resets the ring and sets it to 0;
 *   READ_NAME     READ name            (relative: /local/domain/<domid>/name)
 *   WRITE_STATUS  WRITE data/status = running
 *   WATCH         WATCH control/shutdown, token "shutdown"
 *   IDLE          each watch event -> READ control/shutdown; "poweroff"/"halt",
 *                 "reboot", "crash", "suspend" -> WRITE control/shutdown = "" (the
 *                 acknowledgement Linux guests give) -> DONE: the guest shuts down.
 * Failed requests (the toolstack may not have written the nodes yet) are retried
 * after 200 ms, doubling up to 5 s; the `connection` field is re-checked on the same
 * schedule in case a notification was missed.  If xstored resets the ring under us (a new INTRODUCE), the page's
 * req_prod no longer matches ours: the pending request is sent again.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "plugins/sim/sim.h"

/* Wire constants (xs_wire.h). */
enum {
	XS_READ = 2,
	XS_WATCH = 4,
	XS_WRITE = 11,
	XS_WATCH_EVENT = 15,
	XS_ERROR = 16,
};
#define RING_SIZE 1024u
#define HDR_SIZE 16u
#define PAYLOAD_MAX 4096u
#define RETRY_NS 200000000ull     /* first retry after a failed request */
#define BACKOFF_MAX_NS 5000000000ull /* a thousand idle guests must stay cheap */

struct ring_page {
	char req[RING_SIZE];
	char rsp[RING_SIZE];
	uint32_t req_cons, req_prod, rsp_cons, rsp_prod;
	uint32_t server_features, connection, error;
};

struct xs_hdr {
	uint32_t type, req_id, tx_id, len;
};

static struct ring_page *ring(struct sim_vm *s)
{
	return (struct ring_page *)(s->ram + s->ring_gfn * XST_PAGE_SIZE);
}

static void kick(struct sim_vm *s)
{
	uint64_t one = 1;

	sim_guest_touch(s, s->ring_gfn);
	if (write(s->kick_fd, &one, sizeof(one)) < 0) {
		/* counter saturated or fd gone: xstored will poll again anyway */
	}
}

void xenbus_reset(struct sim_vm *s)
{
	struct ring_page *r = ring(s);
	struct xenbus *xb = &s->xb;

	memset(xb, 0, sizeof(*xb));
	xb->stage = XB_WAIT_CONNECT;
	xb->shutdown_reason = -1;
	/* Ask for a (re)connection: xstored's INTRODUCE resets the indexes and sets 0. */
	__atomic_store_n(&r->connection, 1, __ATOMIC_RELEASE);
	sim_guest_touch(s, s->ring_gfn);
}

static int ring_send(struct sim_vm *s, uint32_t type, const char *a, size_t alen, const char *b,
		     size_t blen)
{
	struct ring_page *r = ring(s);
	struct xs_hdr h = {.type = type, .req_id = ++s->xb.req_id, .len = alen + blen};
	uint32_t cons = __atomic_load_n(&r->req_cons, __ATOMIC_ACQUIRE);
	uint32_t prod = s->xb.req_prod;
	const char *parts[3] = {(const char *)&h, a, b};
	size_t lens[3] = {sizeof(h), alen, blen};
	unsigned int i;
	size_t j;

	if (prod - cons > RING_SIZE)
		return -EPROTO;
	if (RING_SIZE - (prod - cons) < sizeof(h) + alen + blen)
		return -EAGAIN;
	for (i = 0; i < 3; i++)
		for (j = 0; j < lens[i]; j++)
			r->req[(prod++) % RING_SIZE] = parts[i][j];
	__atomic_store_n(&r->req_prod, prod, __ATOMIC_RELEASE);
	s->xb.req_prod = prod;
	s->xb.sent_type = type;
	s->xb.waiting = true;
	kick(s);
	return 0;
}

/* Copy one complete message out of the response ring into xb->msg.  1 if one was
 * read, 0 if none is complete yet, -EPROTO on a broken ring. */
static int ring_recv(struct sim_vm *s)
{
	struct ring_page *r = ring(s);
	uint32_t prod = __atomic_load_n(&r->rsp_prod, __ATOMIC_ACQUIRE);
	uint32_t cons = r->rsp_cons;
	struct xs_hdr h;
	uint32_t i, total;

	if (prod - cons > RING_SIZE)
		return -EPROTO;
	if (prod - cons < HDR_SIZE)
		return 0;
	for (i = 0; i < HDR_SIZE; i++)
		((char *)&h)[i] = r->rsp[(cons + i) % RING_SIZE];
	if (h.len > PAYLOAD_MAX)
		return -EPROTO;
	total = HDR_SIZE + h.len;
	/* A message longer than the ring arrives in pieces; ours never are. */
	if (total > RING_SIZE)
		return -EPROTO;
	if (prod - cons < total)
		return 0;
	for (i = 0; i < total; i++)
		s->xb.msg[i] = r->rsp[(cons + i) % RING_SIZE];
	s->xb.msg[total] = '\0';
	__atomic_store_n(&r->rsp_cons, cons + total, __ATOMIC_RELEASE);
	kick(s);
	return 1;
}

static void say(struct sim_vm *s, const char *what)
{
	char line[256];
	int n = snprintf(line, sizeof(line), "xenbus: %s\n", what);

	sim_console_out(s, line, n < (int)sizeof(line) ? (size_t)n : sizeof(line) - 1);
}

static int reason_of(const char *v)
{
	if (!strcmp(v, "poweroff") || !strcmp(v, "halt"))
		return XST_SHUTDOWN_POWEROFF;
	if (!strcmp(v, "reboot"))
		return XST_SHUTDOWN_REBOOT;
	if (!strcmp(v, "crash"))
		return XST_SHUTDOWN_CRASH;
	if (!strcmp(v, "suspend"))
		return XST_SHUTDOWN_SUSPEND;
	return -1;
}

static void backoff(struct xenbus *xb)
{
	xb->backoff_ns = xb->backoff_ns ? xb->backoff_ns * 2 : RETRY_NS;
	if (xb->backoff_ns > BACKOFF_MAX_NS)
		xb->backoff_ns = BACKOFF_MAX_NS;
	xb->retry_at_ns = sim_now_ns() + xb->backoff_ns;
}

/* A reply to our pending request arrived. */
static void on_reply(struct sim_vm *s, const struct xs_hdr *h, const char *payload)
{
	struct xenbus *xb = &s->xb;
	bool err = h->type == XS_ERROR;
	char line[200];

	xb->waiting = false;
	/* After a migration or restore the toolstack carried the watch over already. */
	if (err && xb->stage == XB_WATCH && h->len >= 6 && !memcmp(payload, "EEXIST", 6))
		err = false;
	if (err && xb->stage != XB_READ_SHUTDOWN && xb->stage != XB_ACK_SHUTDOWN) {
		backoff(xb);
		return;
	}
	xb->backoff_ns = 0;
	switch (xb->stage) {
	case XB_READ_NAME:
		snprintf(xb->name, sizeof(xb->name), "%s", payload);
		snprintf(line, sizeof(line), "name is \"%s\"", xb->name);
		say(s, line);
		xb->stage = XB_WRITE_STATUS;
		break;
	case XB_WRITE_STATUS:
		say(s, "data/status = running");
		xb->stage = XB_WATCH;
		break;
	case XB_WATCH:
		say(s, "watching control/shutdown");
		xb->stage = XB_IDLE;
		break;
	case XB_READ_SHUTDOWN:
		xb->shutdown_reason = err ? -1 : reason_of(payload);
		if (xb->shutdown_reason < 0) {
			xb->stage = XB_IDLE;
			break;
		}
		snprintf(line, sizeof(line), "control/shutdown = %s", payload);
		say(s, line);
		xb->stage = XB_ACK_SHUTDOWN;
		break;
	case XB_ACK_SHUTDOWN:
		xb->stage = XB_DONE;
		break;
	default:
		break;
	}
}

static void on_message(struct sim_vm *s)
{
	struct xs_hdr h;
	const char *payload = (const char *)s->xb.msg + HDR_SIZE;

	memcpy(&h, s->xb.msg, sizeof(h));
	if (h.type == XS_WATCH_EVENT) {
		/* "path\0token\0" */
		size_t plen = strnlen(payload, h.len);
		if (plen + 1 < h.len && !strcmp(payload + plen + 1, "shutdown"))
			s->xb.event_pending = true;
		return;
	}
	if (s->xb.waiting && h.req_id == s->xb.req_id)
		on_reply(s, &h, payload);
}

static int send_for_stage(struct sim_vm *s)
{
	struct xenbus *xb = &s->xb;
	static const char status[] = "data/status";
	static const char shutdown[] = "control/shutdown";
	static const char watch[] = "control/shutdown\0shutdown";

	switch (xb->stage) {
	case XB_READ_NAME:
		return ring_send(s, XS_READ, "name", 5, NULL, 0);
	case XB_WRITE_STATUS:
		return ring_send(s, XS_WRITE, status, sizeof(status), "running", 7);
	case XB_WATCH:
		return ring_send(s, XS_WATCH, watch, sizeof(watch), NULL, 0);
	case XB_IDLE:
		if (!xb->event_pending)
			return 0;
		xb->event_pending = false;
		xb->stage = XB_READ_SHUTDOWN;
		/* fall through */
	case XB_READ_SHUTDOWN:
		return ring_send(s, XS_READ, shutdown, sizeof(shutdown), NULL, 0);
	case XB_ACK_SHUTDOWN:
		return ring_send(s, XS_WRITE, shutdown, sizeof(shutdown), NULL, 0);
	default:
		return 0;
	}
}

int xenbus_step(struct sim_vm *s)
{
	struct xenbus *xb = &s->xb;
	struct ring_page *r = ring(s);
	uint64_t drain;
	int ret;

	if (read(s->notify_fd, &drain, sizeof(drain)) < 0) {
		/* EAGAIN: nothing signalled */
	}
	if (xb->stage == XB_DONE)
		return xb->shutdown_reason;
	if (xb->stage == XB_WAIT_CONNECT) {
		if (__atomic_load_n(&r->connection, __ATOMIC_ACQUIRE) != 0) {
			if (sim_now_ns() >= xb->retry_at_ns)
				backoff(xb);
			return -1;
		}
		xb->backoff_ns = 0;
		xb->retry_at_ns = 0;
		xb->req_prod = __atomic_load_n(&r->req_prod, __ATOMIC_ACQUIRE);
		xb->stage = XB_READ_NAME;
		say(s, "connected");
	}
	if (__atomic_load_n(&r->error, __ATOMIC_ACQUIRE) != 0)
		return -1; /* xstored gave up on this ring; wait for a reset */
	if (__atomic_load_n(&r->req_prod, __ATOMIC_ACQUIRE) != xb->req_prod) {
		/* xstored reset the ring (re-INTRODUCE): start the request again. */
		xb->req_prod = __atomic_load_n(&r->req_prod, __ATOMIC_ACQUIRE);
		xb->waiting = false;
		if (xb->stage == XB_IDLE)
			xb->stage = XB_WATCH; /* watches were dropped by the reset */
	}
	while ((ret = ring_recv(s)) > 0) {
		on_message(s);
		if (xb->stage == XB_DONE)
			return xb->shutdown_reason;
	}
	if (ret < 0)
		return -1;
	if (!xb->waiting && sim_now_ns() >= xb->retry_at_ns) {
		ret = send_for_stage(s);
		if (ret == -EAGAIN)
			xb->retry_at_ns = sim_now_ns() + RETRY_NS / 10;
	}
	return -1;
}

uint64_t xenbus_deadline_ns(struct sim_vm *s)
{
	struct xenbus *xb = &s->xb;

	if (xb->stage == XB_WAIT_CONNECT)
		return xb->retry_at_ns;
	if (xb->stage == XB_DONE)
		return UINT64_MAX;
	if (xb->waiting)
		return sim_now_ns() + 1000000000ull; /* re-check for a ring reset */
	if (xb->stage == XB_IDLE && !xb->event_pending)
		return UINT64_MAX;
	return xb->retry_at_ns;
}

/*
 * xstguest: xenstore client over the shared ring page (struct xenstore_domain_interface),
 * user mode.  Kicks go to the kick port (the host wires it to an ioeventfd); replies
 * are awaited by sleeping, which the notification interrupt (irqfd) cuts short.
 */
#include "tests/guests/user.h"

#define XS_RING 1024
#define XS_READ 2
#define XS_WATCH 4
#define XS_WRITE 11
#define XS_WATCH_EVENT 15
#define XS_ERROR 16

struct xs_iface {
	char req[XS_RING];
	char rsp[XS_RING];
	volatile uint32_t req_cons, req_prod, rsp_cons, rsp_prod;
	volatile uint32_t server_features, connection, error;
};

struct xs_hdr {
	uint32_t type, req_id, tx_id, len;
};

static struct xs_iface *ring;
static uint32_t next_id = 1;
static int pending_event;
static char msgbuf[4096 + 1];
static uint64_t timeout_ns = 20000000; /* until connected: do not stall the workload */

#define mb() __asm__ volatile("mfence" ::: "memory")

void xs_connected(void)
{
	timeout_ns = 1000000000ull;
}

void xs_init_page(void *page)
{
	ring = page;
}

void xs_init(uint64_t gfn)
{
	xs_init_page((void *)(gfn << 12)); /* identity mapped */
}

static void kick(void)
{
	port_out(PORT_XST_XS_KICK, 1);
}

/* -1 if the server does not make room in time (not serving us yet). */
static int ring_put(const void *data, uint32_t len)
{
	const char *p = data;
	uint64_t deadline = now_ns() + timeout_ns;
	while (len) {
		if (now_ns() > deadline)
			return -1;
		uint32_t prod = ring->req_prod, cons = ring->req_cons;
		mb();
		uint32_t space = XS_RING - (prod - cons);
		if (space == 0) {
			kick();
			sleep_ns(1000000);
			continue;
		}
		uint32_t n = len < space ? len : space;
		for (uint32_t i = 0; i < n; i++)
			ring->req[(prod + i) % XS_RING] = p[i];
		mb();
		ring->req_prod = prod + n;
		p += n;
		len -= n;
		kick();
	}
	return 0;
}

static void ring_get(void *data, uint32_t len)
{
	char *p = data;
	uint64_t deadline = now_ns() + 1000000000ull;
	while (len && now_ns() < deadline) {
		uint32_t prod = ring->rsp_prod, cons = ring->rsp_cons;
		mb();
		uint32_t avail = prod - cons;
		if (avail == 0) {
			sleep_ns(1000000);
			continue;
		}
		uint32_t n = len < avail ? len : avail;
		for (uint32_t i = 0; i < n; i++)
			p[i] = ring->rsp[(cons + i) % XS_RING];
		mb();
		ring->rsp_cons = cons + n;
		p += n;
		len -= n;
		kick();
	}
}

/* Reads one whole message into msgbuf (NUL-terminated); -1 if it stalls or is bad. */
static int recv_msg(struct xs_hdr *h)
{
	memset(h, 0, sizeof(*h));
	ring_get(h, sizeof(*h));
	if (h->len > 4096 || (!h->type && !h->len))
		return -1;
	ring_get(msgbuf, h->len);
	msgbuf[h->len] = 0;
	return 0;
}

static int send_req(const struct xs_hdr *h, const char *a, size_t alen, const char *b,
		    size_t blen)
{
	if (ring_put(h, sizeof(*h)) < 0 || ring_put(a, (uint32_t)alen) < 0)
		return -1;
	return blen ? ring_put(b, (uint32_t)blen) : 0;
}

/*
 * One request/reply.  xstored may not know this domain yet (the host introduces the ring
 * after the guest started): then nothing answers, and the introduction resets all ring
 * indexes to 0, dropping what we wrote.  So: resend when req_prod was reset under us,
 * give up after the timeout (20 ms until connected, then 1 s) (-2), and skip replies to requests we gave up on (stale req_id).
 */
static int request(uint32_t type, const char *a, size_t alen, const char *b, size_t blen)
{
	struct xs_hdr h = { type, next_id++, 0, (uint32_t)(alen + blen) };
	if (send_req(&h, a, alen, b, blen) < 0)
		return -2;
	uint32_t sent = ring->req_prod;
	uint64_t deadline = now_ns() + timeout_ns;
	for (;;) {
		if (ring->rsp_prod == ring->rsp_cons) {
			if (ring->req_prod != sent) { /* reset by an introduction */
				if (send_req(&h, a, alen, b, blen) < 0)
					return -2;
				sent = ring->req_prod;
			}
			if (now_ns() > deadline)
				return -2;
			sleep_ns(1000000);
			continue;
		}
		struct xs_hdr r;
		if (recv_msg(&r) < 0)
			return -1;
		if (r.type == XS_WATCH_EVENT) {
			pending_event = 1;
			continue;
		}
		if (r.req_id != h.req_id)
			continue; /* stale */
		if (r.type == XS_ERROR)
			return -1;
		return (int)r.len;
	}
}

int xs_read(const char *path, char *val, size_t len)
{
	int n = request(XS_READ, path, strlen(path) + 1, 0, 0);
	if (n < 0 || len == 0)
		return -1;
	size_t c = (size_t)n < len - 1 ? (size_t)n : len - 1;
	memcpy(val, msgbuf, c);
	val[c] = 0;
	return (int)c;
}

int xs_write(const char *path, const char *val)
{
	return request(XS_WRITE, path, strlen(path) + 1, val, strlen(val)) < 0 ? -1 : 0;
}

int xs_watch(const char *path, const char *token)
{
	char buf[256];
	size_t a = strlen(path), b = strlen(token);
	if (a + b + 2 > sizeof(buf))
		return -1;
	memcpy(buf, path, a + 1);
	memcpy(buf + a + 1, token, b + 1);
	return request(XS_WATCH, buf, a + b + 2, 0, 0) < 0 ? -1 : 0;
}

int xs_poll_event(void)
{
	while (ring->rsp_prod != ring->rsp_cons) {
		struct xs_hdr r;
		if (recv_msg(&r) < 0)
			return -1;
		if (r.type == XS_WATCH_EVENT)
			pending_event = 1;
	}
	int ev = pending_event;
	pending_event = 0;
	return ev;
}

/* Ring transport: a domain's xenstore page + two eventfds (spec §8,
 * docs/xenstore-ring-transport.md).
 *
 * The page (struct xenstore_domain_interface) is mmap()ed from mem_fd at gfn*4096.
 * kick_fd (guest -> us) is polled; notify_fd (us -> guest) is written after we move
 * req_cons or rsp_prod.  Indexes are free-running u32; a producer/consumer gap over
 * the ring size is a broken ring: error = 2 (RINGIDX) and the connection is ignored.
 * A request announcing more than 4096 payload bytes sets error = 3 (PROTO).
 * Ring connections are unprivileged (unless dom0 or --priv-domid) with
 * domid = the domain. */
#include <errno.h>
#include <stdint.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/mman.h>
#include <talloc.h>
#include <unistd.h>

#include "store/lu_stream.h"
#include "store/xstored.h"

#define XS_RING_ERR_RINGIDX 2
#define XS_RING_ERR_PROTO 3

struct ring_state {
	struct xs_ring *page;
	uint64_t gfn; /* for a live update to map the page again */
	int mem_fd, kick_fd, notify_fd;
	bool notify;
};

static void ring_notify(struct ring_state *r)
{
	uint64_t one = 1;
	ssize_t n = write(r->notify_fd, &one, sizeof(one));
	(void)n;
}

static ssize_t ring_read(struct conn *c, void *buf, size_t len)
{
	struct ring_state *r = c->transport;
	uint32_t cons = r->page->req_cons, prod = r->page->req_prod;
	uint32_t avail, off, first;

	__atomic_thread_fence(__ATOMIC_ACQUIRE);
	avail = prod - cons;
	if (avail > XS_RING_SIZE) {
		r->page->error = XS_RING_ERR_RINGIDX;
		c->stalled = true;
		return 0;
	}
	if (avail > len)
		avail = (uint32_t)len;
	if (avail == 0)
		return 0;
	off = cons % XS_RING_SIZE;
	first = XS_RING_SIZE - off < avail ? XS_RING_SIZE - off : avail;
	memcpy(buf, r->page->req + off, first);
	memcpy((char *)buf + first, r->page->req, avail - first);
	__atomic_thread_fence(__ATOMIC_RELEASE);
	r->page->req_cons = cons + avail;
	r->notify = true;
	return avail;
}

static ssize_t ring_write(struct conn *c, const void *buf, size_t len)
{
	struct ring_state *r = c->transport;
	uint32_t cons = r->page->rsp_cons, prod = r->page->rsp_prod;
	uint32_t space, off, first;

	__atomic_thread_fence(__ATOMIC_ACQUIRE);
	if (prod - cons > XS_RING_SIZE) {
		r->page->error = XS_RING_ERR_RINGIDX;
		c->stalled = true;
		return 0;
	}
	space = XS_RING_SIZE - (prod - cons);
	if (space > len)
		space = (uint32_t)len;
	if (space == 0)
		return 0;
	off = prod % XS_RING_SIZE;
	first = XS_RING_SIZE - off < space ? XS_RING_SIZE - off : space;
	memcpy(r->page->rsp + off, buf, first);
	memcpy(r->page->rsp, (const char *)buf + first, space - first);
	__atomic_thread_fence(__ATOMIC_RELEASE);
	r->page->rsp_prod = prod + space;
	r->notify = true;
	return space;
}

static void ring_done(struct conn *c)
{
	struct ring_state *r = c->transport;

	if (r->notify) {
		r->notify = false;
		ring_notify(r);
	}
}

static const struct conn_ops ring_ops = {
    .name = "ring",
    .read = ring_read,
    .write = ring_write,
    .done = ring_done,
};

static void ring_event(struct ev_source *src, uint32_t events)
{
	struct conn *c = (struct conn *)src;
	struct ring_state *r = c->transport;
	uint64_t v;
	ssize_t n;

	if (c->dead)
		return;
	n = read(r->kick_fd, &v, sizeof(v));
	(void)n;
	if (c->stalled)
		return;
	/* The guest may have consumed replies (room to write) and/or produced requests.
	 * Alternate until neither side moves. */
	for (int round = 0; round < 64 && !c->dead && !c->stalled; round++) {
		uint32_t before_req = r->page->req_cons, before_rsp = r->page->rsp_prod;
		conn_flush(c);
		if (c->dead)
			return;
		conn_read_some(c);
		conn_flush(c);
		if (c->dead)
			return;
		if (r->page->req_cons == before_req && r->page->rsp_prod == before_rsp)
			break;
	}
	if (!c->dead)
		ring_done(c);
}

static int ring_destroy(struct ring_state *r)
{
	if (r->page)
		munmap(r->page, 4096);
	if (r->kick_fd >= 0) {
		/* The guest side holds the same eventfd: closing ours does not drop it
		 * from the epoll set, so remove it explicitly. */
		struct ev_source src = {.fd = r->kick_fd};
		loop_del(&src);
		close(r->kick_fd);
	}
	if (r->notify_fd >= 0)
		close(r->notify_fd);
	if (r->mem_fd >= 0)
		close(r->mem_fd);
	return 0;
}

/* Resets the ring indexes (INTRODUCE of a known domain) or, for a stalled
 * connection, records the protocol error for the guest to see. */
void ring_reset(struct conn *c)
{
	struct ring_state *r = c->transport;

	if (!c->is_ring || !r)
		return;
	if (c->stalled) {
		r->page->error = XS_RING_ERR_PROTO;
		ring_notify(r);
		return;
	}
	r->page->req_cons = r->page->req_prod = 0;
	r->page->rsp_cons = r->page->rsp_prod = 0;
	if (r->page->connection == 1)
		r->page->connection = 0;
	ring_notify(r);
}

int ring_attach(struct conn **out, unsigned int domid, uint64_t gfn, const int fds[3])
{
	struct conn *c = conn_new(xsd_ctx, &ring_ops, fds[1]);
	struct ring_state *r;
	void *page;

	if (!c)
		return -ENOMEM;
	r = talloc_zero(c, struct ring_state);
	if (!r) {
		talloc_free(c);
		return -ENOMEM;
	}
	r->mem_fd = r->kick_fd = r->notify_fd = -1;
	talloc_set_destructor(r, ring_destroy);
	page = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, fds[0], (off_t)(gfn * 4096));
	if (page == MAP_FAILED) {
		int err = errno;
		log_err("introduce domain %u: mmap of gfn %llu: %s", domid, (unsigned long long)gfn,
			strerror(err));
		talloc_free(c);
		return -EINVAL;
	}
	r->page = page;
	r->gfn = gfn;
	r->mem_fd = fds[0];
	r->kick_fd = fds[1];
	r->notify_fd = fds[2];
	c->transport = r;
	c->is_ring = true;
	c->domid = (uint16_t)domid;
	c->privileged = domid == 0 || (opts.priv_domid >= 0 && (int)domid == opts.priv_domid);
	c->src.fn = ring_event;
	if (loop_add(&c->src, EPOLLIN) < 0) {
		int err = -errno;
		r->mem_fd = r->kick_fd = r->notify_fd = -1; /* caller still owns them */
		talloc_free(c);
		return err;
	}
	r->page->req_cons = r->page->req_prod = 0;
	r->page->rsp_cons = r->page->rsp_prod = 0;
	r->page->connection = 0;
	r->page->error = 0;
	ring_notify(r);
	*out = c;
	return 0;
}

/* Live update (lu_stream.c): the ring's fds and page offset. */
int ring_export(const struct conn *c, int fds[3], uint64_t *gfn)
{
	const struct ring_state *r = c->transport;

	if (!c->is_ring || !r)
		return -EINVAL;
	fds[0] = r->mem_fd;
	fds[1] = r->kick_fd;
	fds[2] = r->notify_fd;
	*gfn = r->gfn;
	return 0;
}

/* Live update: a ring inherited across exec.  Unlike ring_attach() the page is
 * taken as it is: indexes, connection state and unread bytes stay. */
int ring_adopt(struct conn **out, unsigned int domid, uint64_t gfn, const int fds[3])
{
	struct conn *c = conn_new(xsd_ctx, &ring_ops, fds[1]);
	struct ring_state *r;
	void *page;

	if (!c)
		return -ENOMEM;
	r = talloc_zero(c, struct ring_state);
	if (!r) {
		talloc_free(c);
		return -ENOMEM;
	}
	r->mem_fd = r->kick_fd = r->notify_fd = -1;
	talloc_set_destructor(r, ring_destroy);
	page = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, fds[0], (off_t)(gfn * 4096));
	if (page == MAP_FAILED) {
		talloc_free(c);
		return -errno;
	}
	r->page = page;
	r->gfn = gfn;
	r->mem_fd = fds[0];
	r->kick_fd = fds[1];
	r->notify_fd = fds[2];
	c->transport = r;
	c->is_ring = true;
	c->domid = (uint16_t)domid;
	c->privileged = domid == 0 || (opts.priv_domid >= 0 && (int)domid == opts.priv_domid);
	c->src.fn = ring_event;
	if (loop_add(&c->src, EPOLLIN) < 0) {
		int err = -errno;
		talloc_free(c);
		return err;
	}
	*out = c;
	return 0;
}

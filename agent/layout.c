/*
 * The xenstore layout of a domain, as libxl writes it (see docs/agent.md):
 *
 *   /local/domain/D            n0 rD   (owned by dom0, readable by the domain)
 *     name, domid, vm = /vm/U
 *     memory/{target,static-max}           KiB
 *     cpu/N/availability                   online | offline
 *     control/shutdown                     nD (the guest may write: its ack)
 *     control/feature-{poweroff,reboot,suspend}, control/sysrq      nD
 *     control/platform-feature-{multiprocessor-suspend,xs_reset_watches} = 1
 *     data, device, drivers, feature, attr, error, device/suspend/event-channel  nD
 *     console/{type,tty,limit}
 *     store/{port,ring-ref}                after the ring is introduced
 *   /vm/U                      n0 rD   name, uuid, start_time
 *   /libxl/D                   n0      toolstack private: type, pool, on_*, sched/,
 *                                      vcpu/N/affinity
 *
 * Nodes created by dom0 inherit their parent's permissions; "nD" means owner D, no
 * access for others (dom0 is privileged).
 */
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include <talloc.h>

#include "agent/agent.h"
#include "store/xs_client.h"
#include "store/xs_proto.h"

int agent_xs_reconnect(struct agent *a)
{
	struct xs_client *xs;
	int rv = xs_client_open(a, a->xenstored, &xs);

	if (rv < 0) {
		agent_log(a, "reconnecting to xenstored at %s: %s", a->xenstored, strerror(-rv));
		return rv;
	}
	talloc_free(a->xs);
	a->xs = xs;
	agent_log(a, "reconnected to xenstored at %s", a->xenstored);
	return 0;
}

static bool conn_lost(int rv)
{
	return rv == -EPIPE || rv == -ECONNRESET || rv == -ENOTCONN || rv == -EBADF;
}

int layout_xs_write(struct agent *a, const char *path, const char *val)
{
	int rv = xs_client_write(a->xs, 0, path, val, strlen(val));

	if (conn_lost(rv) && agent_xs_reconnect(a) == 0)
		rv = xs_client_write(a->xs, 0, path, val, strlen(val));
	return rv;
}

int layout_xs_read(struct agent *a, void *ctx, const char *path, char **val)
{
	size_t len;
	int rv = xs_client_read(a->xs, 0, path, ctx, val, &len);

	if (conn_lost(rv) && agent_xs_reconnect(a) == 0)
		rv = xs_client_read(a->xs, 0, path, ctx, val, &len);
	return rv;
}

/*
 * Layout writes are queued and go to xstored in pipelined batches (xs_client_batch): a
 * domain's layout costs a round trip or two, not one per node.  xstored handles a
 * connection's requests in order, so a MKDIR and its SET_PERMS come before the nodes
 * that inherit those perms.
 */
struct lw {
	struct agent *a;
	void *ctx;
	int err;
	struct xs_batch_op ops[XS_BATCH_MAX];
	unsigned int n;
};

static void lw_flush(struct lw *l)
{
	unsigned int i;
	int rv;

	if (!l->n || l->err) {
		l->n = 0;
		return;
	}
	rv = xs_client_batch(l->a->xs, l->ops, l->n, l->ctx);
	if (conn_lost(rv) && agent_xs_reconnect(l->a) == 0)
		rv = xs_client_batch(l->a->xs, l->ops, l->n, l->ctx); /* all idempotent */
	if (rv < 0) {
		agent_log(l->a, "xenstore: %s", strerror(-rv));
		l->err = rv;
	}
	for (i = 0; rv == 0 && i < l->n; i++) {
		if (l->ops[i].err < 0) {
			agent_log(l->a, "xenstore %s %s: %s",
				  l->ops[i].type == XS_WRITE ? "write" :
				  l->ops[i].type == XS_MKDIR ? "mkdir" : "set perms",
				  (const char *)l->ops[i].payload, strerror(-l->ops[i].err));
			l->err = l->ops[i].err;
			break;
		}
	}
	l->n = 0;
}

/* Queue a request whose payload is the strings a, b, c (NULL ends), each with its NUL but
 * the last when `raw_last` (a WRITE's value). */
static void lw_op(struct lw *l, uint32_t type, const char *a, const char *b, const char *c,
		  bool raw_last)
{
	const char *s[3] = { a, b, c };
	size_t len = 0, k;
	char *buf;
	unsigned int i, n = 0;

	if (l->err)
		return;
	for (i = 0; i < 3 && s[i]; i++)
		n++;
	for (i = 0; i < n; i++)
		len += strlen(s[i]) + (raw_last && i == n - 1 ? 0 : 1);
	buf = talloc_size(l->ctx, len ? len : 1);
	if (!buf || !a) {
		l->err = -ENOMEM;
		return;
	}
	for (i = 0, k = 0; i < n; i++) {
		size_t sl = strlen(s[i]) + (raw_last && i == n - 1 ? 0 : 1);

		memcpy(buf + k, s[i], sl);
		k += sl;
	}
	l->ops[l->n++] = (struct xs_batch_op){ .type = type, .payload = buf, .len = len };
	if (l->n == XS_BATCH_MAX)
		lw_flush(l);
}

static void w(struct lw *l, const char *path, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void w(struct lw *l, const char *path, const char *fmt, ...)
{
	va_list ap;
	char *v;

	if (l->err)
		return;
	va_start(ap, fmt);
	v = talloc_vasprintf(l->ctx, fmt, ap);
	va_end(ap);
	if (!v || !path) {
		l->err = -ENOMEM;
		return;
	}
	lw_op(l, XS_WRITE, path, v, NULL, true);
}

static void mk(struct lw *l, const char *path, const char *p0, const char *p1)
{
	lw_op(l, XS_MKDIR, path, NULL, NULL, false);
	if (p0)
		lw_op(l, XS_SET_PERMS, path, p0, p1, false);
}

/* A half-written layout is removed by the caller. */
int layout_write(struct agent *a, struct adom *d)
{
	struct lw l = {.a = a, .ctx = talloc_new(a)};
	const Xstagent__DomainConfig *c = d->cfg;
	char *dom, *vm, *lx, *rw;
	static const char *const rw_nodes[] = {
	    "data",
	    "device",
	    "drivers",
	    "feature",
	    "attr",
	    "error",
	    "device/suspend/event-channel",
	    "control/shutdown",
	    "control/feature-poweroff",
	    "control/feature-reboot",
	    "control/feature-suspend",
	    "control/sysrq",
	};
	unsigned int i;

	if (!l.ctx)
		return -ENOMEM;
	dom = talloc_asprintf(l.ctx, "/local/domain/%u", d->domid);
	vm = talloc_asprintf(l.ctx, "/vm/%s", d->uuid_str);
	lx = talloc_asprintf(l.ctx, "/libxl/%u", d->domid);
	rw = talloc_asprintf(l.ctx, "n%u", d->domid);
	if (!dom || !vm || !lx || !rw) {
		talloc_free(l.ctx);
		return -ENOMEM;
	}
	{
		char *r = talloc_asprintf(l.ctx, "r%u", d->domid);

		mk(&l, dom, "n0", r);
		mk(&l, vm, "n0", r);
	}
	mk(&l, lx, "n0", NULL);
#define P(sub) talloc_asprintf(l.ctx, "%s/%s", dom, sub)
	w(&l, P("name"), "%s", d->name);
	w(&l, P("domid"), "%u", d->domid);
	w(&l, P("vm"), "%s", vm);
	w(&l, P("memory/static-max"), "%" PRIu64, c->maxmem_mib * 1024);
	w(&l, P("memory/target"), "%" PRIu64, c->memory_mib * 1024);
	for (i = 0; i < c->maxvcpus; i++) {
		char *p = talloc_asprintf(l.ctx, "%s/cpu/%u/availability", dom, i);

		w(&l, p, "%s", i < c->vcpus ? "online" : "offline");
	}
	mk(&l, P("control"), NULL, NULL);
	for (i = 0; i < sizeof(rw_nodes) / sizeof(rw_nodes[0]); i++)
		mk(&l, P(rw_nodes[i]), rw, NULL);
	w(&l, P("control/platform-feature-multiprocessor-suspend"), "1");
	w(&l, P("control/platform-feature-xs_reset_watches"), "1");
	w(&l, P("console/type"), "xst");
	w(&l, P("console/tty"), "%s", d->console_path ? d->console_path : "");
	w(&l, P("console/limit"), "%u", 1048576);
#undef P
	w(&l, talloc_asprintf(l.ctx, "%s/name", vm), "%s", d->name);
	w(&l, talloc_asprintf(l.ctx, "%s/uuid", vm), "%s", d->uuid_str);
	w(&l, talloc_asprintf(l.ctx, "%s/start_time", vm), "%lld", (long long)time(NULL));
	w(&l, talloc_asprintf(l.ctx, "%s/type", lx), "%s", c->type);
	w(&l, talloc_asprintf(l.ctx, "%s/pool", lx), "%s", c->pool);
	w(&l, talloc_asprintf(l.ctx, "%s/on_poweroff", lx), "%s", c->on_poweroff);
	w(&l, talloc_asprintf(l.ctx, "%s/on_reboot", lx), "%s", c->on_reboot);
	w(&l, talloc_asprintf(l.ctx, "%s/on_crash", lx), "%s", c->on_crash);
	w(&l, talloc_asprintf(l.ctx, "%s/on_soft_reset", lx), "%s", c->on_soft_reset);
	w(&l, talloc_asprintf(l.ctx, "%s/sched/weight", lx), "%u", d->weight);
	w(&l, talloc_asprintf(l.ctx, "%s/sched/cap", lx), "%u", d->cap);
	for (i = 0; i < c->maxvcpus; i++)
		w(&l, talloc_asprintf(l.ctx, "%s/vcpu/%u/affinity", lx, i), "%s", d->affinity[i]);
	lw_flush(&l);
	talloc_free(l.ctx);
	return l.err;
}

int layout_set_ring(struct agent *a, struct adom *d)
{
	struct lw l = {.a = a, .ctx = talloc_new(a)};

	if (!l.ctx)
		return -ENOMEM;
	w(&l, talloc_asprintf(l.ctx, "/local/domain/%u/store/port", d->domid), "%u", 1);
	w(&l, talloc_asprintf(l.ctx, "/local/domain/%u/store/ring-ref", d->domid), "%" PRIu64,
	  d->ring_gfn);
	lw_flush(&l);
	talloc_free(l.ctx);
	return l.err;
}

void layout_remove(struct agent *a, uint32_t domid, const char *uuid_str)
{
	char path[128];
	int rv;

	snprintf(path, sizeof(path), "/local/domain/%u", domid);
	rv = xs_client_rm(a->xs, 0, path);
	if (conn_lost(rv) && agent_xs_reconnect(a) == 0)
		rv = xs_client_rm(a->xs, 0, path);
	if (rv < 0 && rv != -ENOENT)
		agent_log(a, "xenstore rm %s: %s", path, strerror(-rv));
	if (uuid_str) {
		snprintf(path, sizeof(path), "/vm/%s", uuid_str);
		rv = xs_client_rm(a->xs, 0, path);
		if (rv < 0 && rv != -ENOENT)
			agent_log(a, "xenstore rm %s: %s", path, strerror(-rv));
	}
	snprintf(path, sizeof(path), "/libxl/%u", domid);
	rv = xs_client_rm(a->xs, 0, path);
	if (rv < 0 && rv != -ENOENT)
		agent_log(a, "xenstore rm %s: %s", path, strerror(-rv));
}

/* What xen-init-dom0 does: name and id of the control domain. */
int layout_dom0(struct agent *a)
{
	int rv = layout_xs_write(a, "/local/domain/0/name", "Domain-0");

	if (rv == 0)
		rv = layout_xs_write(a, "/local/domain/0/domid", "0");
	/* The parents of every domain's /vm/<uuid> and /libxl/<domid> stay, as with libxl. */
	if (rv == 0)
		rv = xs_client_mkdir(a->xs, 0, "/vm");
	if (rv == 0)
		rv = xs_client_mkdir(a->xs, 0, "/libxl");
	return rv;
}

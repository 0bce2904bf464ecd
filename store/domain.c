/* Domain bookkeeping (spec §8.2) and the domain messages: INTRODUCE, RELEASE,
 * IS_DOMAIN_INTRODUCED, GET_DOMAIN_PATH, RESUME, SET_TARGET.
 *
 * Domains live in a lazily filled table indexed by domid.  dom0 always exists.  An
 * INTRODUCE carrying three fds (mem, kick, notify; see docs/xenstore-ring-transport.md)
 * also creates the domain's ring connection (ring.c); without fds only the
 * bookkeeping is done, as C xenstored does in socket-only mode. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <talloc.h>

#include "store/lu_stream.h"
#include "store/xstored.h"

#define DOMID_MAX 65536

static struct domain **domains;
static void *domain_ctx;

int domain_init(void)
{
	/* calloc: untouched zero pages cost no RSS (talloc_zero would write them). */
	domains = calloc(DOMID_MAX, sizeof(*domains));
	domain_ctx = talloc_named_const(NULL, 0, "domains"); /* freed last */
	if (!domains || !domain_ctx)
		return -ENOMEM;
	struct domain *d0 = talloc_zero(domain_ctx, struct domain);
	if (!d0)
		return -ENOMEM;
	d0->target = -1;
	domains[0] = d0;
	return 0;
}

void domain_free_all(void)
{
	talloc_free(domain_ctx);
	domain_ctx = NULL;
	free(domains);
	domains = NULL;
}

struct domain *domain_get(unsigned int domid)
{
	return domid < DOMID_MAX && domains ? domains[domid] : NULL;
}

/* A domain "record" used only for accounting, created on demand. */
static struct domain *domain_acct(unsigned int domid)
{
	struct domain *d;

	if (domid >= DOMID_MAX || !domains)
		return NULL;
	d = domains[domid];
	if (!d) {
		d = talloc_zero(domain_ctx, struct domain);
		if (!d)
			return NULL;
		d->domid = (uint16_t)domid;
		d->target = -1;
		domains[domid] = d;
	}
	return d;
}

bool domain_exists(unsigned int domid, uint64_t node_gen)
{
	struct domain *d = domain_get(domid);

	if (domid == 0)
		return true;
	return d && d->introduced && d->gen <= node_gen;
}

void domain_charge(unsigned int domid, int nodes, long bytes)
{
	struct domain *d = domain_acct(domid);

	if (d) {
		d->nodes += nodes;
		d->memory += bytes;
	}
}

void domain_conn_gone(struct conn *c)
{
	struct domain *d = domain_get(c->domid);

	if (d && d->conn == c)
		d->conn = NULL;
}

static bool parse_domid(const char *s, unsigned int *out)
{
	*out = (unsigned int)atoi(s);
	return true;
}

int do_introduce(struct req *r)
{
	const char *v[3];
	unsigned int domid, port;
	unsigned long long gfn;
	struct domain *d;
	bool fresh;
	int ret;

	if (req_strings(r, v, 3) < 3)
		return -EINVAL;
	parse_domid(v[0], &domid);
	gfn = strtoull(v[1], NULL, 10);
	port = (unsigned int)atoi(v[2]);
	if (port == 0 || domid >= DOMID_MAX)
		return -EINVAL;
	d = domain_acct(domid);
	if (!d)
		return -ENOMEM;
	fresh = !d->introduced;
	if (r->conn->nfds == 3) {
		struct conn *rc;
		int fds[3] = {r->conn->fds[0], r->conn->fds[1], r->conn->fds[2]};

		ret = ring_attach(&rc, domid, gfn, fds);
		if (ret < 0)
			return ret;
		r->conn->nfds = 0; /* the ring owns them now */
		if (d->conn)
			conn_kill(d->conn);
		d->conn = rc;
	} else if (d->conn) {
		conn_reset(d->conn);
		ring_reset(d->conn);
	}
	if (fresh) {
		d->introduced = true;
		d->shutdown_reported = false;
		d->gen = ++store_gen;
	}
	if (d->conn)
		d->conn->target = d->target;
	ret = reply_ok(r);
	if (fresh && domid != 0)
		watch_fire_special("@introduceDomain");
	return ret;
}

/* Deletes every subtree owned by domid (pre-order), firing events as RM would. */
static void remove_owned(struct node *n, unsigned int domid)
{
	for (uint32_t i = 0; i < n->nkids;) {
		struct node *k = n->kids[i];

		if (k->nperms && node_perms(k)[0].domid == domid) {
			char *path = node_path(NULL, k);
			if (path && db_remove(NULL, NULL, path) == 0) {
				talloc_free(path);
				continue; /* k is gone; the same index holds the next child */
			}
			talloc_free(path);
		} else {
			remove_owned(k, domid);
		}
		i++;
	}
}

static void change_owner(struct node *n, unsigned int domid)
{
	for (uint32_t i = 0; i < n->nkids; i++) {
		struct node *k = n->kids[i];
		if (k->nperms && node_perms(k)[0].domid == domid) { /* k may move: */
			struct xs_perm *p =
			    talloc_memdup(NULL, node_perms(k), k->nperms * sizeof(*p));
			if (p) {
				p[0].domid = (uint16_t)(opts.priv_domid >= 0 ? opts.priv_domid : 0);
				node_set(&k, NULL, 0, p, k->nperms);
				talloc_free(p);
			}
		}
		change_owner(k, domid);
	}
}

static int one_domid(struct req *r, unsigned int *domid)
{
	const char *a = req_onearg(r);

	if (!a)
		return -EINVAL;
	*domid = (unsigned int)atoi(a);
	return 0;
}

int do_release(struct req *r)
{
	unsigned int domid;
	struct domain *d;
	int ret = one_domid(r, &domid);

	if (ret < 0)
		return ret;
	if (domid == 0)
		return -EINVAL;
	d = domain_get(domid);
	if (!d || !d->introduced)
		return -ENOENT;
	if (d->conn) {
		if (d->conn == r->conn)
			return -EINVAL;
		conn_kill(d->conn);
		d->conn = NULL;
	}
	d->introduced = false;
	if (opts.keep_orphans)
		change_owner(node_root(), domid);
	else
		remove_owned(node_root(), domid);
	special_drop_domain((uint16_t)domid);
	for (unsigned int i = 0; i < DOMID_MAX; i++)
		if (domains[i] && domains[i]->target == (int)domid)
			domains[i]->target = -1;
	d->target = -1;
	ret = reply_ok(r);
	watch_fire_special("@releaseDomain");
	return ret;
}

int do_is_domain_introduced(struct req *r)
{
	unsigned int domid;
	struct domain *d;
	int ret = one_domid(r, &domid);

	if (ret < 0)
		return ret;
	d = domain_get(domid);
	return reply_str(r,
			 domid == XS_DOMID_SELF || domid == 0 || (d && d->introduced) ? "T" : "F");
}

int do_get_domain_path(struct req *r)
{
	const char *a = req_onearg(r);
	char buf[40];

	if (!a)
		return -EINVAL;
	snprintf(buf, sizeof(buf), "/local/domain/%u", (unsigned int)atoi(a));
	return reply_str(r, buf);
}

int do_resume(struct req *r)
{
	unsigned int domid;
	struct domain *d;
	int ret = one_domid(r, &domid);

	if (ret < 0)
		return ret;
	if (domid == 0)
		return -EINVAL;
	d = domain_get(domid);
	if (!d || !d->introduced)
		return -ENOENT;
	d->shutdown_reported = false;
	return reply_ok(r);
}

int do_set_target(struct req *r)
{
	const char *v[2];
	unsigned int domid, tdomid;
	struct domain *d, *t;

	if (req_strings(r, v, 2) < 2)
		return -EINVAL;
	domid = (unsigned int)atoi(v[0]);
	tdomid = (unsigned int)atoi(v[1]);
	d = domain_get(domid);
	t = domain_get(tdomid);
	if (!d || !d->introduced || !t || (!t->introduced && tdomid != 0))
		return -ENOENT;
	d->target = (int)tdomid;
	if (d->conn)
		d->conn->target = (int)tdomid;
	return reply_ok(r);
}

/* Live update (lu_stream.c): a domain as it was, its ring connection (or NULL) and
 * a fresh introduction generation (older than every restored node). */
int domain_restore(unsigned int domid, bool introduced, bool shutdown_reported, int target,
		   struct conn *c)
{
	struct domain *d = domain_acct(domid);

	if (!d)
		return -ENOMEM;
	d->introduced = introduced;
	d->shutdown_reported = shutdown_reported;
	d->target = target;
	if (introduced)
		d->gen = ++store_gen;
	if (c) {
		d->conn = c;
		c->target = target;
	}
	return 0;
}

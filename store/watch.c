/* Watches (spec §7).
 *
 * Every watch is a talloc child of its connection and sits in two lists: the
 * connection's (for RESET_WATCHES/close) and one chain of a global hash keyed by its
 * canonical path.  A change of path P looks up P and each of its ancestors ("/",
 * "/a", "/a/b", ...) in the hash, so firing costs O(depth), not O(all watches).
 * Special names (@introduceDomain, @releaseDomain) match by exact string only and
 * are filtered by their own ACL. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <talloc.h>

#include "store/lu_stream.h"
#include "store/xstored.h"

struct watch {
	struct watch *cnext, **cpprev;
	struct watch *hnext, **hpprev;
	struct conn *conn;
	char *path; /* canonical */
	char *orig; /* as the client sent it */
	char *token;
	size_t strip; /* bytes of home prefix to strip from events (relative watches) */
	uint64_t seq; /* registration order: events fire in it, as in C xenstored */
};

static uint64_t watch_seq;

#define MAX_QUEUED_EVENTS 1024

static struct watch **wtable;
static size_t wsize = 4096;

static struct xs_perm *acl_intro, *acl_release;
static unsigned int nacl_intro = 1, nacl_release = 1;

static size_t whash(const char *p, size_t len)
{
	uint64_t h = 1469598103934665603ULL;
	for (size_t i = 0; i < len; i++) {
		h ^= (unsigned char)p[i];
		h *= 1099511628211ULL;
	}
	return (size_t)(h ^ (h >> 31)) & (wsize - 1);
}

int watch_init(void)
{
	wtable = talloc_zero_array(xsd_ctx, struct watch *, wsize);
	acl_intro = talloc_zero(xsd_ctx, struct xs_perm);
	acl_release = talloc_zero(xsd_ctx, struct xs_perm);
	nacl_intro = nacl_release = 1;
	if (!wtable || !acl_intro || !acl_release)
		return -ENOMEM;
	return 0;
}

static int watch_destroy(struct watch *w)
{
	*w->cpprev = w->cnext;
	if (w->cnext)
		w->cnext->cpprev = w->cpprev;
	*w->hpprev = w->hnext;
	if (w->hnext)
		w->hnext->hpprev = w->hpprev;
	w->conn->nwatches--;
	return 0;
}

unsigned int watch_count(const struct conn *c)
{
	return c->nwatches;
}

int watch_add(struct conn *c, const char *path, const char *orig, const char *token)
{
	struct watch *w;
	size_t h = whash(path, strlen(path));

	for (w = c->watches; w; w = w->cnext)
		if (strcmp(w->path, path) == 0 && strcmp(w->token, token) == 0)
			return -EEXIST;
	if (!c->privileged && c->nwatches > (unsigned int)quotas[Q_WATCHES].hard)
		return -E2BIG;
	w = talloc_zero(c, struct watch);
	if (!w)
		return -ENOMEM;
	w->path = talloc_strdup(w, path);
	w->orig = talloc_strdup(w, orig);
	w->token = talloc_strdup(w, token);
	if (!w->path || !w->orig || !w->token) {
		talloc_free(w);
		return -ENOMEM;
	}
	if (orig[0] != '/' && orig[0] != '@') {
		char home[40];
		w->strip = strlen(conn_home(c, home, sizeof(home))) + 1;
	}
	w->conn = c;
	w->seq = ++watch_seq;
	w->cnext = c->watches;
	if (w->cnext)
		w->cnext->cpprev = &w->cnext;
	w->cpprev = &c->watches;
	c->watches = w;
	w->hnext = wtable[h];
	if (w->hnext)
		w->hnext->hpprev = &w->hnext;
	w->hpprev = &wtable[h];
	wtable[h] = w;
	c->nwatches++;
	talloc_set_destructor(w, watch_destroy);
	return 0;
}

int watch_remove(struct conn *c, const char *path, const char *token)
{
	for (struct watch *w = c->watches; w; w = w->cnext) {
		if (strcmp(w->path, path) == 0 && strcmp(w->token, token) == 0) {
			talloc_free(w);
			return 0;
		}
	}
	return -ENOENT;
}

void watch_remove_all(struct conn *c)
{
	while (c->watches)
		talloc_free(c->watches);
}

/* Is an identical event still queued, unsent, on c? */
static bool event_queued(const struct conn *c, const char *payload, size_t len)
{
	for (const struct outmsg *m = c->out_head; m; m = m->next) {
		if (!m->is_event || m->off != 0 || m->len != sizeof(struct xs_hdr) + len)
			continue;
		if (memcmp(m->data + sizeof(struct xs_hdr), payload, len) == 0)
			return true;
	}
	return false;
}

static void deliver(struct watch *w, const char *epath)
{
	char buf[XS_PAYLOAD_MAX + 1];
	size_t pl, tl;

	if (w->strip) {
		if (strlen(epath) < w->strip)
			return;
		epath += w->strip;
	}
	pl = strlen(epath) + 1;
	tl = strlen(w->token) + 1;
	if (pl + tl > XS_PAYLOAD_MAX)
		return;
	memcpy(buf, epath, pl);
	memcpy(buf + pl, w->token, tl);
	if (epath[0] != '@' && event_queued(w->conn, buf, pl + tl))
		return;
	/* A guest that does not drain its ring cannot make us queue without bound
	 * (C xenstored times such events out after 20 s; oxenstored caps at 1024). */
	if (!w->conn->privileged && w->conn->out_count >= MAX_QUEUED_EVENTS) {
		if (trace_on())
			trace_printf("connection %u: event queue full, %s dropped\n", w->conn->id,
				     epath);
		return;
	}
	conn_queue(w->conn, XS_WATCH_EVENT, 0, 0, buf, pl + tl, true);
}

static bool may_see(struct conn *c, const char *path, const struct xs_perm *perms,
		    unsigned int nperms, uint64_t gen)
{
	struct node *p;
	const char *s;

	if (c->privileged)
		return true;
	if (perm_for_conn(c, perms, nperms, gen) & XS_PERM_READ)
		return true;
	s = strrchr(path, '/');
	if (!s)
		return false;
	if (s == path) {
		p = node_root();
	} else {
		char buf[XS_ABS_PATH_MAX + 1];
		size_t l = (size_t)(s - path);
		if (l > XS_ABS_PATH_MAX)
			return false;
		memcpy(buf, path, l);
		buf[l] = '\0';
		p = node_lookup(buf);
	}
	return p && (perm_for_conn(c, node_perms(p), p->nperms, p->gen) & XS_PERM_READ);
}

/* Watches matching one change, collected so they fire in registration order. */
struct matches {
	struct watch *small[32];
	struct watch **w;
	size_t n, cap;
};

static void collect(struct matches *m, const char *key, size_t klen)
{
	for (struct watch *w = wtable[whash(key, klen)]; w; w = w->hnext) {
		if (strlen(w->path) != klen || memcmp(w->path, key, klen) != 0 || w->conn->dead)
			continue;
		if (m->n == m->cap) {
			size_t ncap = m->cap * 2;
			struct watch **nw = talloc_array(NULL, struct watch *, ncap);
			if (!nw)
				return; /* out of memory: this event is lost for the rest */
			memcpy(nw, m->w, m->n * sizeof(*nw));
			if (m->w != m->small)
				talloc_free(m->w);
			m->w = nw;
			m->cap = ncap;
		}
		m->w[m->n++] = w;
	}
}

static int by_seq(const void *a, const void *b)
{
	const struct watch *x = *(struct watch *const *)a, *y = *(struct watch *const *)b;
	return x->seq < y->seq ? -1 : x->seq > y->seq;
}

/* SET_PERMS: readers under the old ACL see the event too (spec §5.3). */
static const struct xs_perm *old_perms;
static unsigned int old_nperms;

static void fire_matches(struct matches *m, const char *path, const struct xs_perm *perms,
			 unsigned int nperms, uint64_t gen)
{
	if (m->n > 1)
		qsort(m->w, m->n, sizeof(*m->w), by_seq);
	for (size_t i = 0; i < m->n; i++)
		if (may_see(m->w[i]->conn, path, perms, nperms, gen) ||
		    (old_perms && may_see(m->w[i]->conn, path, old_perms, old_nperms, gen)))
			deliver(m->w[i], path);
	if (m->w != m->small)
		talloc_free(m->w);
}

void watch_fire(const char *path, bool exact, const struct xs_perm *perms, unsigned int nperms,
		uint64_t gen)
{
	struct matches m = {.n = 0, .cap = 32};
	size_t len = strlen(path);

	m.w = m.small;
	if (exact || path[0] == '@') {
		collect(&m, path, len);
	} else {
		collect(&m, "/", 1);
		for (size_t i = 1; i <= len; i++)
			if (path[i] == '/' || path[i] == '\0')
				collect(&m, path, i);
	}
	fire_matches(&m, path, perms, nperms, gen);
}

void watch_fire_acl_change(const char *path, const struct xs_perm *perms, unsigned int nperms,
			   const struct xs_perm *oldp, unsigned int nold, uint64_t gen)
{
	old_perms = oldp;
	old_nperms = nold;
	watch_fire(path, false, perms, nperms, gen);
	old_perms = NULL;
	old_nperms = 0;
}

void watch_fire_special(const char *name)
{
	const struct xs_perm *p;
	unsigned int n;

	if (special_get_perms(name, &p, &n) < 0)
		return;
	watch_fire(name, true, p, n, store_gen);
}

int special_get_perms(const char *name, const struct xs_perm **p, unsigned int *n)
{
	if (strcmp(name, "@introduceDomain") == 0) {
		*p = acl_intro;
		*n = nacl_intro;
	} else if (strcmp(name, "@releaseDomain") == 0) {
		*p = acl_release;
		*n = nacl_release;
	} else {
		return -EINVAL;
	}
	return 0;
}

int special_set_perms(const char *name, const struct xs_perm *p, unsigned int n)
{
	struct xs_perm *np = talloc_memdup(xsd_ctx, p, n * sizeof(*p));

	if (!np)
		return -ENOMEM;
	if (strcmp(name, "@introduceDomain") == 0) {
		talloc_free(acl_intro);
		acl_intro = np;
		nacl_intro = n;
	} else if (strcmp(name, "@releaseDomain") == 0) {
		talloc_free(acl_release);
		acl_release = np;
		nacl_release = n;
	} else {
		talloc_free(np);
		return -EINVAL;
	}
	return 0;
}

static void drop(struct xs_perm *p, unsigned int *n, uint16_t domid)
{
	unsigned int j = 1;

	for (unsigned int i = 1; i < *n; i++)
		if (p[i].domid != domid)
			p[j++] = p[i];
	*n = j;
}

void special_drop_domain(uint16_t domid)
{
	drop(acl_intro, &nacl_intro, domid);
	drop(acl_release, &nacl_release, domid);
}

/* Live update (lu_stream.c): c's watches oldest first, as the client sent them. */
int watch_visit(const struct conn *c, int (*fn)(void *arg, const char *orig, const char *token),
		void *arg)
{
	const struct watch **v = talloc_array(NULL, const struct watch *, c->nwatches + 1);
	unsigned int n = 0;
	int ret = 0;

	if (!v)
		return -ENOMEM;
	for (const struct watch *w = c->watches; w && n < c->nwatches; w = w->cnext)
		v[n++] = w;
	while (n-- > 0 && ret == 0)
		ret = fn(arg, v[n]->orig, v[n]->token);
	talloc_free(v);
	return ret;
}

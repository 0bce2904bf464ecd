/* Node messages: READ, WRITE, MKDIR, RM, DIRECTORY, DIRECTORY_PART, GET_PERMS,
 * SET_PERMS, WATCH, UNWATCH, RESET_WATCHES, TRANSACTION_START/END (spec §4-§7).
 * All store access goes through the db_* view (transaction.c), so each handler is
 * written once for both committed and transactional requests. */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <talloc.h>

#include "store/xstored.h"

/* Error hiding (spec §5.4): ENOENT/EACCES become EACCES unless the caller has
 * `mode` access on the nearest existing ancestor. */
static int hide(struct req *r, const char *path, int err, unsigned int mode)
{
	char *p = talloc_strdup(r->ctx, path);

	if (!p)
		return -ENOMEM;
	while (strcmp(p, "/") != 0) {
		struct nview v;
		int ret;

		p = path_parent(r->ctx, p);
		if (!p)
			return -ENOMEM;
		ret = db_get(r->conn, r->txn, p, &v);
		if (ret < 0)
			return ret;
		if (v.exists)
			return (perm_for_conn(r->conn, v.perms, v.nperms, v.gen) & mode) ? err
											 : -EACCES;
	}
	return err;
}

/* Canonical path + view, with the access check and error hiding. */
static int get_node(struct req *r, const char *in, unsigned int mode, char **path, struct nview *v)
{
	int ret = path_canon(r->conn, in, false, r->ctx, path);

	if (ret < 0)
		return ret;
	ret = db_get(r->conn, r->txn, *path, v);
	if (ret < 0)
		return ret;
	if (!v->exists)
		return hide(r, *path, -ENOENT, mode);
	if ((perm_for_conn(r->conn, v->perms, v->nperms, v->gen) & mode) != mode)
		return hide(r, *path, -EACCES, mode);
	return 0;
}

int do_read(struct req *r)
{
	const char *a = req_onearg(r);
	char *path;
	struct nview v;
	int ret;

	if (!a)
		return -EINVAL;
	ret = get_node(r, a, XS_PERM_READ, &path, &v);
	if (ret < 0)
		return ret;
	return reply(r, v.value, v.vlen);
}

static size_t kids_len(const struct nview *v)
{
	size_t len = 0;
	unsigned int n = db_nkids(v);

	for (unsigned int i = 0; i < n; i++)
		len += db_kid_len(v, i) + 1;
	return len;
}

/* Creates path and its missing ancestors (spec §4.3).  val is the target's value. */
static int create_path(struct req *r, const char *path, const void *val, uint32_t vlen)
{
	struct conn *c = r->conn;
	const char *missing[XS_ABS_PATH_MAX / 2 + 2];
	unsigned int nmissing = 0;
	char *p = talloc_strdup(r->ctx, path);
	struct nview v;
	struct xs_perm *perms;
	int ret;

	if (!p)
		return -ENOMEM;
	missing[nmissing++] = p;
	for (;;) {
		p = path_parent(r->ctx, p);
		if (!p)
			return -ENOMEM;
		ret = db_get(c, r->txn, p, &v);
		if (ret < 0)
			return ret;
		if (v.exists)
			break;
		if (nmissing >= sizeof(missing) / sizeof(missing[0]))
			return -EINVAL;
		missing[nmissing++] = p;
	}
	if (!(perm_for_conn(c, v.perms, v.nperms, v.gen) & XS_PERM_WRITE))
		return -EACCES;
	perms = talloc_memdup(r->ctx, v.perms, v.nperms * sizeof(*perms));
	if (!perms)
		return -ENOMEM;
	if (!c->privileged) {
		perms[0].domid = c->domid;
		if (node_record_size(v.nperms, vlen, 0) >= (size_t)quotas[Q_NODE_SIZE].hard)
			return -ENOSPC;
	}
	while (nmissing > 0) {
		const char *np = missing[--nmissing];
		if (!c->privileged) {
			struct domain *d = domain_get(c->domid);
			int have = (d ? d->nodes : 0) + txn_nodes_delta(r->txn);
			if (have >= quotas[Q_NODES].hard)
				return -ENOSPC;
			if (d && d->memory + (long)vlen > quotas[Q_MEMORY].hard)
				return -ENOMEM;
		}
		ret = db_create(c, r->txn, np, perms, v.nperms, nmissing == 0 ? val : "",
				nmissing == 0 ? vlen : 0);
		if (ret < 0)
			return ret;
	}
	return 0;
}

int do_write(struct req *r)
{
	const char *z = memchr(r->data, '\0', r->len);
	const char *val;
	uint32_t vlen;
	char *path;
	struct nview v;
	int ret;

	if (!z)
		return -EINVAL;
	val = z + 1;
	vlen = (uint32_t)(r->data + r->len - val);
	ret = path_canon(r->conn, r->data, false, r->ctx, &path);
	if (ret < 0)
		return ret;
	ret = db_get(r->conn, r->txn, path, &v);
	if (ret < 0)
		return ret;
	if (v.exists) {
		if (!(perm_for_conn(r->conn, v.perms, v.nperms, v.gen) & XS_PERM_WRITE))
			return hide(r, path, -EACCES, XS_PERM_WRITE);
		if (!r->conn->privileged && node_record_size(v.nperms, vlen, kids_len(&v)) >=
						(size_t)quotas[Q_NODE_SIZE].hard)
			return -ENOSPC;
		ret = db_update(r->conn, r->txn, path, val, vlen, NULL, 0);
	} else {
		ret = create_path(r, path, val, vlen);
	}
	if (ret < 0)
		return ret;
	ret = db_get(r->conn, r->txn, path, &v);
	if (ret == 0 && v.exists)
		db_event(r->conn, r->txn, path, false, v.perms, v.nperms, v.gen);
	return reply_ok(r);
}

int do_mkdir(struct req *r)
{
	const char *a = req_onearg(r);
	char *path;
	struct nview v;
	int ret;

	if (!a)
		return -EINVAL;
	ret = get_node(r, a, XS_PERM_WRITE, &path, &v);
	if (ret == 0)
		return reply_ok(r);
	if (ret != -ENOENT)
		return ret;
	ret = create_path(r, path, "", 0);
	if (ret < 0)
		return ret;
	ret = db_get(r->conn, r->txn, path, &v);
	if (ret == 0 && v.exists)
		db_event(r->conn, r->txn, path, false, v.perms, v.nperms, v.gen);
	return reply_ok(r);
}

int do_rm(struct req *r)
{
	const char *a = req_onearg(r);
	char *path;
	struct nview v;
	int ret;

	if (!a)
		return -EINVAL;
	ret = get_node(r, a, XS_PERM_WRITE, &path, &v);
	if (ret == -ENOENT) {
		char *pp = path_parent(r->ctx, path);
		struct nview pv;
		if (!pp)
			return -ENOMEM;
		ret = db_get(r->conn, r->txn, pp, &pv);
		if (ret < 0)
			return ret;
		return pv.exists ? reply_ok(r) : -ENOENT;
	}
	if (ret < 0)
		return ret;
	if (strcmp(path, "/") == 0)
		return -EINVAL;
	ret = db_remove(r->conn, r->txn, path);
	if (ret < 0)
		return ret;
	return reply_ok(r);
}

static char *kid_list(struct req *r, const struct nview *v, size_t *len)
{
	size_t total = kids_len(v), off = 0;
	unsigned int n = db_nkids(v);
	char *buf = talloc_size(r->ctx, total + 1);

	if (!buf)
		return NULL;
	for (unsigned int i = 0; i < n; i++) {
		const char *k = db_kid(v, i);
		size_t l = db_kid_len(v, i) + 1;
		memcpy(buf + off, k, l);
		off += l;
	}
	*len = total;
	return buf;
}

/* The NUL-separated child list of one committed node, packed once and reused by
 * DIRECTORY and DIRECTORY_PART until the store changes (any modification bumps
 * store_gen: a child created, deleted or reordered, or a record moved or freed). */
static struct {
	const struct node *node;
	uint64_t store_gen;
	char *buf;
	size_t len;
} kl_cache;

static const char *kid_list_cached(const struct nview *v, size_t *len)
{
	unsigned int n = db_nkids(v);
	size_t total = 0, off = 0;
	char *buf;

	if (!v->g)
		return NULL;
	if (kl_cache.buf && kl_cache.node == v->g && kl_cache.store_gen == store_gen) {
		*len = kl_cache.len;
		return kl_cache.buf;
	}
	for (unsigned int i = 0; i < n; i++)
		total += v->g->kids[i]->namelen + 1;
	buf = realloc(kl_cache.buf, total + 1); /* process lifetime, apart from any context */
	if (!buf)
		return NULL;
	kl_cache.buf = buf;
	kl_cache.node = NULL;
	for (unsigned int i = 0; i < n; i++) {
		const struct node *k = v->g->kids[i];
		memcpy(buf + off, node_name(k), k->namelen + 1u);
		off += k->namelen + 1u;
	}
	buf[total] = '\0';
	kl_cache.node = v->g;
	kl_cache.store_gen = store_gen;
	kl_cache.len = total;
	*len = total;
	return buf;
}

void ops_free(void)
{
	free(kl_cache.buf);
	memset(&kl_cache, 0, sizeof(kl_cache));
}

int do_directory(struct req *r)
{
	const char *a = req_onearg(r);
	const char *cached;
	char *path, *list;
	struct nview v;
	size_t len;
	int ret;

	if (!a)
		return -EINVAL;
	ret = get_node(r, a, XS_PERM_READ, &path, &v);
	if (ret < 0)
		return ret;
	cached = kid_list_cached(&v, &len);
	if (cached)
		return len > XS_PAYLOAD_MAX ? -E2BIG : reply(r, cached, len);
	if (kids_len(&v) > XS_PAYLOAD_MAX)
		return -E2BIG; /* without building a list that cannot be sent */
	list = kid_list(r, &v, &len);
	if (!list)
		return -ENOMEM;
	return reply(r, list, len);
}

/* DIRECTORY_PART from the packed list: off is a byte offset into it (it may point
 * into a name, as C xenstored allows); the pieces up to each following NUL are
 * taken while they fit.  They are contiguous in the list, so the reply is the bytes
 * from off up to the last NUL that fits, found with one memrchr and copied at once. */
static int directory_part_packed(struct req *r, char *out, size_t glen, const char *list,
				 size_t total, size_t off)
{
	size_t maxlen = XS_PAYLOAD_MAX - glen - 2, clen = 0;
	const char *e;

	if (off >= total) {
		out[glen + 1] = '\0';
		return reply(r, out, glen + 2);
	}
	/* a piece fits while its NUL lies before off + maxlen */
	e = memrchr(list + off, '\0', (total - off < maxlen ? total - off : maxlen));
	if (e) {
		clen = (size_t)(e - (list + off)) + 1;
		memcpy(out + glen + 1, list + off, clen);
	}
	if (off + clen >= total)
		out[glen + 1 + clen++] = '\0';
	return reply(r, out, glen + 1 + clen);
}

static struct {
	const struct node *node;
	uint64_t gen;
	size_t off;
	unsigned int index;
} dp_cache;

int do_directory_part(struct req *r)
{
	const char *s[3];
	const char *list;
	char *path, *out;
	struct nview v;
	size_t off, pos = 0, skip, glen, maxlen, clen = 0, total;
	unsigned int i = 0, n;
	char gen[24];
	int ret;

	if (req_strings(r, s, 3) != 2 || r->data[r->len - 1] != '\0')
		return -EINVAL;
	ret = get_node(r, s[0], XS_PERM_READ, &path, &v);
	if (ret < 0)
		return ret;
	glen = (size_t)snprintf(gen, sizeof(gen), "%" PRIu64, v.gen);
	off = (size_t)strtoul(s[1], NULL, 10);
	out = talloc_size(r->ctx, XS_PAYLOAD_MAX + 1);
	if (!out)
		return -ENOMEM;
	memcpy(out, gen, glen + 1);
	list = kid_list_cached(&v, &total);
	if (list)
		return directory_part_packed(r, out, glen, list, total, off);
	/* Byte offset `off` into the NUL-separated child list, found without building
	 * the list (a chunk of a 10,000-child directory costs O(children) additions). */
	n = db_nkids(&v);
	/* Clients walk a big directory chunk by chunk: resume where the last chunk of
	 * this same node generation ended instead of re-walking from the start. */
	if (v.g && v.g == dp_cache.node && v.gen == dp_cache.gen && off >= dp_cache.off &&
	    dp_cache.index <= n) {
		i = dp_cache.index;
		pos = dp_cache.off;
	}
	while (i < n && pos + db_kid_len(&v, i) + 1 <= off) {
		pos += db_kid_len(&v, i) + 1;
		i++;
	}
	if (i >= n) {
		out[glen + 1] = '\0';
		return reply(r, out, glen + 2);
	}
	skip = off - pos; /* off may point into a name, as C xenstored allows */
	maxlen = XS_PAYLOAD_MAX - glen - 2;
	for (; i < n; i++, skip = 0) {
		size_t l = db_kid_len(&v, i) - skip;
		if (clen + l >= maxlen)
			break;
		memcpy(out + glen + 1 + clen, db_kid(&v, i) + skip, l + 1);
		clen += l + 1;
	}
	if (v.g && skip == 0) {
		dp_cache.node = v.g;
		dp_cache.gen = v.gen;
		dp_cache.off = off + clen;
		dp_cache.index = i;
	}
	if (i >= n)
		out[glen + 1 + clen++] = '\0';
	return reply(r, out, glen + 1 + clen);
}

int do_get_perms(struct req *r)
{
	const char *a = req_onearg(r);
	char *path, buf[XS_PAYLOAD_MAX + 1];
	struct nview v;
	int ret, len;

	if (!a)
		return -EINVAL;
	ret = get_node(r, a, XS_PERM_READ, &path, &v);
	if (ret < 0)
		return ret;
	len = perms_format(v.perms, v.nperms, buf, sizeof(buf));
	if (len < 0)
		return len;
	return reply(r, buf, (size_t)len);
}

int do_set_perms(struct req *r)
{
	const char *s[1];
	unsigned int count = req_strings(r, s, 1), nperms;
	struct xs_perm *perms;
	char *path;
	size_t plen;
	struct nview v;
	int ret;

	if (count < 2)
		return -EINVAL;
	nperms = count - 1;
	if (!r->conn->privileged && nperms > (unsigned int)quotas[Q_PERMISSIONS].hard)
		return -ENOSPC;
	plen = strlen(r->data) + 1;
	ret = perms_parse(r->ctx, r->data + plen, r->len - plen, nperms, &perms);
	if (ret < 0)
		return ret;
	if (!domain_exists(perms[0].domid, UINT64_MAX))
		return -ENOENT;
	for (unsigned int i = 1; i < nperms; i++)
		if (!domain_exists(perms[i].domid, UINT64_MAX))
			perms[i].bits |= XS_PERM_IGNORE;
	ret = path_canon(r->conn, r->data, true, r->ctx, &path);
	if (ret < 0)
		return ret;
	if (path_is_special(path)) {
		const struct xs_perm *old;
		unsigned int nold;
		ret = special_get_perms(path, &old, &nold);
		if (ret < 0)
			return ret;
		if ((perm_for_conn(r->conn, old, nold, store_gen) &
		     (XS_PERM_WRITE | XS_PERM_OWNER)) != (XS_PERM_WRITE | XS_PERM_OWNER))
			return -EACCES;
		ret = special_set_perms(path, perms, nperms);
		return ret < 0 ? ret : reply_ok(r);
	}
	ret = db_get(r->conn, r->txn, path, &v);
	if (ret < 0)
		return ret;
	if (!v.exists)
		return hide(r, path, -ENOENT, XS_PERM_WRITE);
	if ((perm_for_conn(r->conn, v.perms, v.nperms, v.gen) & (XS_PERM_WRITE | XS_PERM_OWNER)) !=
	    (XS_PERM_WRITE | XS_PERM_OWNER))
		return hide(r, path, -EACCES, XS_PERM_WRITE);
	if (!r->conn->privileged) {
		if (perms[0].domid != v.perms[0].domid)
			return -EPERM;
		if (node_record_size(nperms, v.vlen, kids_len(&v)) >=
		    (size_t)quotas[Q_NODE_SIZE].hard)
			return -ENOSPC;
	}
	struct xs_perm *oldp = talloc_memdup(r->ctx, v.perms, v.nperms * sizeof(*oldp));
	unsigned int nold = v.nperms;
	if (!oldp)
		return -ENOMEM;
	ret = db_update(r->conn, r->txn, path, NULL, 0, perms, nperms);
	if (ret < 0)
		return ret;
	ret = db_get(r->conn, r->txn, path, &v);
	if (ret == 0 && v.exists) {
		if (r->txn)
			db_event(r->conn, r->txn, path, false, v.perms, v.nperms, v.gen);
		else
			watch_fire_acl_change(path, v.perms, v.nperms, oldp, nold, v.gen);
	}
	return reply_ok(r);
}

int do_watch(struct req *r)
{
	const char *s[2];
	char *path;
	int ret;

	if (req_strings(r, s, 2) != 2 || r->data[r->len - 1] != '\0')
		return -EINVAL;
	ret = path_canon(r->conn, s[0], true, r->ctx, &path);
	if (ret < 0)
		return ret;
	ret = watch_add(r->conn, path, s[0], s[1]);
	if (ret < 0)
		return ret;
	ret = reply_ok(r);
	if (ret < 0)
		return ret;
	/* The initial event, after the OK. */
	return conn_queue(r->conn, XS_WATCH_EVENT, 0, 0, r->data, r->len, true);
}

int do_unwatch(struct req *r)
{
	const char *s[2];
	char *path;
	int ret;

	if (req_strings(r, s, 2) != 2 || r->data[r->len - 1] != '\0')
		return -EINVAL;
	ret = path_canon(r->conn, s[0], true, r->ctx, &path);
	if (ret == -EINVAL)
		return -ENOENT; /* no watch can have an invalid path (C answers ENOENT) */
	if (ret < 0)
		return ret;
	ret = watch_remove(r->conn, path, s[1]);
	return ret < 0 ? ret : reply_ok(r);
}

int do_reset_watches(struct req *r)
{
	watch_remove_all(r->conn);
	while (r->conn->txns)
		talloc_free(r->conn->txns);
	return reply_ok(r);
}

int do_txn_start(struct req *r)
{
	uint32_t id;
	char buf[16];
	int ret;

	if (r->txn)
		return -EBUSY;
	ret = txn_start(r->conn, &id);
	if (ret < 0)
		return ret;
	snprintf(buf, sizeof(buf), "%u", id);
	return reply_str(r, buf);
}

int do_txn_end(struct req *r)
{
	const char *a = req_onearg(r);
	int ret;

	if (!a || (strcmp(a, "T") != 0 && strcmp(a, "F") != 0))
		return -EINVAL;
	if (!r->txn)
		return -ENOENT;
	ret = txn_end(r->conn, r->txn, a[0] == 'T');
	r->txn = NULL;
	return ret < 0 ? ret : reply_ok(r);
}

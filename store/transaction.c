/* Transactions and the store as one request sees it (spec §6).
 *
 * Design note.  A request outside a transaction reads and writes the committed tree
 * (node.c) directly.  Inside transaction T, the first access to a path copies the
 * committed node (or records that it is absent) into a private "tnode" together with
 * its generation at that moment; every later access to that path in T is served from
 * the copy, so reads in T are repeatable per node while untouched nodes show the
 * current committed state (C xenstored's model).  Writes, creations and deletions
 * change only copies.  Commit checks every copy's recorded state against the
 * committed tree: any difference (node changed => new generation; created; deleted)
 * means another writer interfered and the commit fails with EAGAIN.  Otherwise the
 * modified copies are applied: creations/updates shallow-first, then deletions, then
 * child order; finally the watch events queued in T fire.
 *
 * Worked example (test-xenstore "ta err"): B/a = "a".  T reads B/a (copy, gen 7).
 * Outside T, B/a = "b" (committed gen 9).  T reads B/a again: copy, still "a".  T
 * writes "c" to its copy.  END T: copy recorded gen 7, committed gen 9 -> EAGAIN;
 * committed value stays "b".
 *
 * Implicit accesses count too: creating B/x/y in T copies B (gen recorded, child
 * list extended), records B/x and B/x/y as absent.  Another client creating B/z
 * changes B's generation, so T's commit fails, as in C xenstored. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <talloc.h>

#include "store/lu_stream.h"
#include "store/xstored.h"

#define TX_HASH 64

struct tnode {
	struct tnode *hnext, *onext;
	char *path;
	bool rec_exists, exists, modified;
	uint64_t rec_gen, gen;
	struct xs_perm *perms;
	unsigned int nperms;
	char *value;
	uint32_t vlen;
	char **kids;
	unsigned int nkids;
};

struct tevent {
	struct tevent *next;
	char *path;
	bool exact;
	struct xs_perm *perms;
	unsigned int nperms;
	uint64_t gen;
};

struct txn {
	struct txn *next;
	struct conn *conn;
	uint32_t id;
	bool failed;
	struct tnode *hash[TX_HASH];
	struct tnode *ohead, *otail;
	unsigned int count;
	struct tevent *ehead, *etail;
	int nodes_delta;
};

/* talloc_memdup that also works for size 0. */
static void *memdup0(const void *ctx, const void *p, size_t size)
{
	void *d = talloc_size(ctx, size ? size : 1);

	if (d && size)
		memcpy(d, p, size);
	return d;
}

static unsigned int thash(const char *p)
{
	unsigned int h = 5381;
	for (; *p; p++)
		h = h * 33 + (unsigned char)*p;
	return h % TX_HASH;
}

static struct tnode *tfind(struct txn *t, const char *path)
{
	for (struct tnode *n = t->hash[thash(path)]; n; n = n->hnext)
		if (strcmp(n->path, path) == 0)
			return n;
	return NULL;
}

/* The transaction's copy of path, made on first access. */
static int tget(struct conn *c, struct txn *t, const char *path, struct tnode **out)
{
	struct tnode *tn = tfind(t, path);
	struct node *g;

	if (tn) {
		*out = tn;
		return 0;
	}
	if (!c->privileged && t->count >= (unsigned int)quotas[Q_TRANSACTION_NODES].hard) {
		t->failed = true;
		return -ENOSPC;
	}
	tn = talloc_zero(t, struct tnode);
	if (!tn)
		goto nomem;
	tn->path = talloc_strdup(tn, path);
	if (!tn->path)
		goto nomem;
	g = node_lookup(path);
	if (g) {
		tn->rec_exists = tn->exists = true;
		tn->rec_gen = tn->gen = g->gen;
		tn->nperms = g->nperms;
		tn->perms = talloc_memdup(tn, node_perms(g), g->nperms * sizeof(struct xs_perm));
		tn->vlen = g->vlen;
		tn->value = memdup0(tn, node_value(g), g->vlen);
		tn->kids = talloc_array(tn, char *, g->nkids ? g->nkids : 1);
		if (!tn->perms || !tn->value || !tn->kids)
			goto nomem;
		for (uint32_t i = 0; i < g->nkids; i++) {
			tn->kids[i] =
			    talloc_strndup(tn->kids, node_name(g->kids[i]), g->kids[i]->namelen);
			if (!tn->kids[i])
				goto nomem;
		}
		tn->nkids = g->nkids;
	}
	unsigned int h = thash(path);
	tn->hnext = t->hash[h];
	t->hash[h] = tn;
	if (t->otail)
		t->otail->onext = tn;
	else
		t->ohead = tn;
	t->otail = tn;
	t->count++;
	*out = tn;
	return 0;
nomem:
	talloc_free(tn);
	t->failed = true;
	return -ENOMEM;
}

int db_get(struct conn *c, struct txn *t, const char *path, struct nview *v)
{
	memset(v, 0, sizeof(*v));
	if (!t) {
		struct node *g = node_lookup(path);
		if (!g)
			return 0;
		v->exists = true;
		v->perms = node_perms(g);
		v->nperms = g->nperms;
		v->value = node_value(g);
		v->vlen = g->vlen;
		v->gen = g->gen;
		v->g = g;
		return 0;
	}
	struct tnode *tn;
	int ret = tget(c, t, path, &tn);
	if (ret < 0)
		return ret;
	v->t = tn;
	if (!tn->exists)
		return 0;
	v->exists = true;
	v->perms = tn->perms;
	v->nperms = tn->nperms;
	v->value = tn->value;
	v->vlen = tn->vlen;
	v->gen = tn->gen;
	return 0;
}

unsigned int db_nkids(const struct nview *v)
{
	if (!v->exists)
		return 0;
	return v->g ? v->g->nkids : v->t->nkids;
}

const char *db_kid(const struct nview *v, unsigned int i)
{
	return v->g ? node_name(v->g->kids[i]) : v->t->kids[i];
}

size_t db_kid_len(const struct nview *v, unsigned int i)
{
	return v->g ? v->g->kids[i]->namelen : strlen(v->t->kids[i]);
}

void db_event(struct conn *c, struct txn *t, const char *path, bool exact,
	      const struct xs_perm *perms, unsigned int nperms, uint64_t gen)
{
	struct tevent *e;

	if (!t) {
		watch_fire(path, exact, perms, nperms, gen);
		return;
	}
	for (e = t->ehead; e; e = e->next) {
		if (strcmp(e->path, path) == 0) {
			if (!exact)
				e->exact = false;
			return;
		}
	}
	e = talloc_zero(t, struct tevent);
	if (!e || !(e->path = talloc_strdup(e, path)) ||
	    !(e->perms = memdup0(e, perms, nperms * sizeof(*perms)))) {
		talloc_free(e);
		t->failed = true;
		return;
	}
	e->exact = exact;
	e->nperms = nperms;
	e->gen = gen;
	if (t->etail)
		t->etail->next = e;
	else
		t->ehead = e;
	t->etail = e;
}

static int tset(struct tnode *tn, const void *val, uint32_t vlen, const struct xs_perm *perms,
		unsigned int nperms)
{
	if (val) {
		char *nv = memdup0(tn, val, vlen);
		if (!nv)
			return -ENOMEM;
		talloc_free(tn->value);
		tn->value = nv;
		tn->vlen = vlen;
	}
	if (perms) {
		struct xs_perm *np = talloc_memdup(tn, perms, nperms * sizeof(*perms));
		if (!np)
			return -ENOMEM;
		talloc_free(tn->perms);
		tn->perms = np;
		tn->nperms = nperms;
	}
	tn->modified = true;
	tn->gen = store_gen + 1;
	return 0;
}

int db_create(struct conn *c, struct txn *t, const char *path, const struct xs_perm *perms,
	      unsigned int nperms, const void *val, uint32_t vlen)
{
	void *tmp = talloc_new(NULL);
	char *ppath = path_parent(tmp, path);
	const char *name = path_basename(path);
	int ret = -ENOMEM;

	if (!ppath)
		goto out;
	if (!t) {
		struct node *parent = node_lookup(ppath);
		ret = parent
			  ? node_create(parent, name, strlen(name), perms, nperms, val, vlen, NULL)
			  : -ENOENT;
		goto out;
	}
	struct tnode *ptn, *tn;
	ret = tget(c, t, ppath, &ptn);
	if (ret < 0)
		goto out;
	ret = tget(c, t, path, &tn);
	if (ret < 0)
		goto out;
	ret = -ENOENT;
	if (!ptn->exists)
		goto out;
	ret = -ENOMEM;
	char **nk = talloc_realloc(ptn, ptn->kids, char *, ptn->nkids + 1);
	if (!nk)
		goto fail;
	ptn->kids = nk;
	nk[ptn->nkids] = talloc_strdup(nk, name);
	if (!nk[ptn->nkids])
		goto fail;
	ptn->nkids++;
	ptn->modified = true;
	ptn->gen = store_gen + 1;
	tn->exists = true;
	tn->nkids = 0;
	ret = tset(tn, val, vlen, perms, nperms);
	if (ret < 0)
		goto fail;
	t->nodes_delta++;
	ret = 0;
	goto out;
fail:
	t->failed = true;
out:
	talloc_free(tmp);
	return ret;
}

int db_update(struct conn *c, struct txn *t, const char *path, const void *val, uint32_t vlen,
	      const struct xs_perm *perms, unsigned int nperms)
{
	if (!t) {
		struct node *g = node_lookup(path);
		return g ? node_set(&g, val, vlen, perms, nperms) : -ENOENT;
	}
	struct tnode *tn;
	int ret = tget(c, t, path, &tn);
	if (ret < 0)
		return ret;
	if (!tn->exists)
		return -ENOENT;
	ret = tset(tn, val, vlen, perms, nperms);
	if (ret < 0)
		t->failed = true;
	return ret;
}

/* Committed rm: exact events for descendants (post-order), caller fires the root's. */
static void fire_subtree(struct node *n, char *buf, size_t len, size_t cap)
{
	for (uint32_t i = 0; i < n->nkids; i++) {
		struct node *k = n->kids[i];
		if (len + 1 + k->namelen + 1 > cap)
			continue;
		buf[len] = '/';
		memcpy(buf + len + 1, node_name(k), k->namelen + 1);
		fire_subtree(k, buf, len + 1 + k->namelen, cap);
		watch_fire(buf, true, node_perms(k), k->nperms, k->gen);
	}
	buf[len] = '\0';
}

static int trm(struct conn *c, struct txn *t, struct tnode *tn, bool top)
{
	for (unsigned int i = 0; i < tn->nkids; i++) {
		char *cp = talloc_asprintf(NULL, "%s/%s", strcmp(tn->path, "/") ? tn->path : "",
					   tn->kids[i]);
		struct tnode *kn;
		int ret = cp ? tget(c, t, cp, &kn) : -ENOMEM;

		talloc_free(cp);
		if (ret < 0)
			return ret;
		if (!kn->exists)
			continue;
		ret = trm(c, t, kn, false);
		if (ret < 0)
			return ret;
	}
	if (!top)
		db_event(c, t, tn->path, true, tn->perms, tn->nperms, tn->gen);
	tn->exists = false;
	tn->modified = true;
	tn->nkids = 0;
	t->nodes_delta--;
	return 0;
}

int db_remove(struct conn *c, struct txn *t, const char *path)
{
	if (!t) {
		struct node *g = node_lookup(path);
		char *buf;
		struct xs_perm *perms;
		uint64_t gen;

		if (!g || !g->parent)
			return -EINVAL;
		buf = talloc_size(NULL, XS_ABS_PATH_MAX + 2);
		perms = talloc_memdup(buf, node_perms(g), g->nperms * sizeof(*perms));
		if (!buf || !perms) {
			talloc_free(buf);
			return -ENOMEM;
		}
		strcpy(buf, path);
		fire_subtree(g, buf, strlen(buf), XS_ABS_PATH_MAX + 2);
		gen = g->gen;
		unsigned int np = g->nperms;
		watch_fire(path, false, perms, np, gen);
		node_delete(g);
		talloc_free(buf);
		return 0;
	}
	struct tnode *tn, *ptn;
	char *ppath = path_parent(NULL, path);
	int ret = ppath ? tget(c, t, ppath, &ptn) : -ENOMEM;

	talloc_free(ppath);
	if (ret < 0)
		return ret;
	ret = tget(c, t, path, &tn);
	if (ret < 0)
		return ret;
	if (!tn->exists)
		return -ENOENT;
	struct xs_perm *perms = memdup0(NULL, tn->perms, tn->nperms * sizeof(*perms));
	unsigned int np = tn->nperms;
	uint64_t gen = tn->gen;
	if (!perms)
		return -ENOMEM;
	/* In a transaction C xenstored queues the removed node's own event before its
	 * descendants' (outside one, descendants fire first; see db_remove above). */
	db_event(c, t, path, false, perms, np, gen);
	ret = trm(c, t, tn, true);
	if (ret == 0) {
		const char *name = path_basename(path);
		for (unsigned int i = 0; i < ptn->nkids; i++) {
			if (strcmp(ptn->kids[i], name) == 0) {
				talloc_free(ptn->kids[i]);
				memmove(&ptn->kids[i], &ptn->kids[i + 1],
					(ptn->nkids - i - 1) * sizeof(char *));
				ptn->nkids--;
				break;
			}
		}
		ptn->modified = true;
		ptn->gen = store_gen + 1;
	} else {
		t->failed = true;
	}
	talloc_free(perms);
	return ret;
}

/* ---- transaction objects ---- */

static int txn_destroy(struct txn *t)
{
	struct conn *c = t->conn;

	for (struct txn **pp = &c->txns; *pp; pp = &(*pp)->next) {
		if (*pp == t) {
			*pp = t->next;
			break;
		}
	}
	c->ntxns--;
	return 0;
}

struct txn *txn_find(struct conn *c, uint32_t id)
{
	for (struct txn *t = c->txns; t; t = t->next)
		if (t->id == id)
			return t;
	return NULL;
}

unsigned int txn_count(const struct conn *c)
{
	return c->ntxns;
}

int txn_start(struct conn *c, uint32_t *id_out)
{
	struct txn *t;

	if (!c->privileged && c->ntxns > (unsigned int)quotas[Q_TRANSACTIONS].hard)
		return -ENOSPC;
	t = talloc_zero(c, struct txn);
	if (!t)
		return -ENOMEM;
	do {
		t->id = c->next_txid++;
	} while (t->id == 0 || txn_find(c, t->id));
	t->conn = c;
	t->next = c->txns;
	c->txns = t;
	c->ntxns++;
	talloc_set_destructor(t, txn_destroy);
	*id_out = t->id;
	return 0;
}

static int cmp_depth(const void *a, const void *b)
{
	const struct tnode *x = *(struct tnode *const *)a, *y = *(struct tnode *const *)b;
	size_t dx = path_depth(x->path), dy = path_depth(y->path);

	return dx < dy ? -1 : dx > dy ? 1 : 0;
}

static int txn_commit(struct conn *c, struct txn *t)
{
	struct tnode **mod;
	unsigned int nmod = 0;
	int ret = 0;

	if (t->failed)
		return -ENOMEM;
	for (struct tnode *tn = t->ohead; tn; tn = tn->onext) {
		struct node *g = node_lookup(tn->path);
		if (tn->rec_exists != (g != NULL) || (g && g->gen != tn->rec_gen))
			return -EAGAIN;
		if (tn->modified)
			nmod++;
	}
	if (!c->privileged && t->nodes_delta > 0) {
		struct domain *d = domain_get(c->domid);
		if (d && d->nodes + t->nodes_delta > quotas[Q_NODES].hard)
			return -ENOSPC;
	}
	if (nmod == 0)
		goto events;
	mod = talloc_array(t, struct tnode *, nmod);
	if (!mod)
		return -ENOMEM;
	nmod = 0;
	for (struct tnode *tn = t->ohead; tn; tn = tn->onext)
		if (tn->modified)
			mod[nmod++] = tn;
	/* stable by access order within a depth: qsort is not stable, so break ties */
	qsort(mod, nmod, sizeof(*mod), cmp_depth);
	for (unsigned int i = 0; i < nmod; i++) {
		struct tnode *tn = mod[i];
		struct node *g;

		if (!tn->exists)
			continue;
		g = node_lookup(tn->path);
		if (g) {
			ret = node_set(&g, tn->value, tn->vlen, tn->perms, tn->nperms);
		} else {
			void *tmp = talloc_new(NULL);
			char *pp = path_parent(tmp, tn->path);
			struct node *p = pp ? node_lookup(pp) : NULL;
			const char *name = path_basename(tn->path);
			ret = p ? node_create(p, name, strlen(name), tn->perms, tn->nperms,
					      tn->value, tn->vlen, NULL)
				: -EIO;
			talloc_free(tmp);
		}
		if (ret < 0)
			log_err("transaction commit: %s: error %d", tn->path, ret);
	}
	for (unsigned int i = nmod; i-- > 0;) {
		struct tnode *tn = mod[i];
		struct node *g;

		if (tn->exists)
			continue;
		g = node_lookup(tn->path);
		if (g)
			node_delete(g);
	}
	for (unsigned int i = 0; i < nmod; i++) {
		struct tnode *tn = mod[i];
		struct node *g;

		if (!tn->exists || !(g = node_lookup(tn->path)))
			continue;
		node_reorder(g, tn->kids, tn->nkids);
	}
	talloc_free(mod);
events:
	for (struct tevent *e = t->ehead; e; e = e->next) {
		struct tnode *tn = tfind(t, e->path);
		struct node *g;

		/* created and deleted again inside the transaction: no change to report */
		if (tn && !tn->rec_exists && !tn->exists)
			continue;
		g = node_lookup(e->path);
		if (g)
			watch_fire(e->path, e->exact, node_perms(g), g->nperms, g->gen);
		else
			watch_fire(e->path, e->exact, e->perms, e->nperms, e->gen);
	}
	return 0;
}

int txn_end(struct conn *c, struct txn *t, bool commit)
{
	int ret = commit ? txn_commit(c, t) : 0;

	talloc_free(t);
	return ret;
}

int txn_nodes_delta(const struct txn *t)
{
	return t ? t->nodes_delta : 0;
}

/* ---- live update (lu_stream.c, docs/liveupdate.md) ---- */

/* Each open transaction of c: its flags (a commit that can only fail is marked so
 * the new daemon fails it the same way), its copies in access order, its queued
 * events in order. */
int txn_export(const struct conn *c, const struct txn_export_ops *ops, void *arg)
{
	for (const struct txn *t = c->txns; t; t = t->next) {
		uint32_t flags = t->failed ? LU_TXN_FAILED : 0;
		int ret;

		for (const struct tnode *tn = t->ohead; tn; tn = tn->onext) {
			struct node *g = node_lookup(tn->path);
			if (tn->rec_exists != (g != NULL) || (g && g->gen != tn->rec_gen))
				flags |= LU_TXN_CONFLICT;
		}
		ret = ops->txn(arg, t->id, flags);
		for (const struct tnode *tn = t->ohead; tn && ret == 0; tn = tn->onext) {
			unsigned int access =
			    tn->exists ? (tn->rec_exists ? 1u : 0u) | (tn->modified ? 2u : 0u) : 0u;
			if (tn->exists)
				ret = ops->node(arg, t->id, tn->path, access, tn->perms, tn->nperms,
						tn->value, tn->vlen);
			else
				ret = ops->node(arg, t->id, tn->path, 0, NULL, 0, "", 0);
		}
		for (const struct tevent *e = t->ehead; e && ret == 0; e = e->next)
			ret = ops->event(arg, t->id, e->path, e->exact, e->perms, e->nperms);
		if (ret < 0)
			return ret;
	}
	return 0;
}

int txn_restore(struct conn *c, uint32_t id, struct txn **out)
{
	struct txn *t;

	if (id == 0 || txn_find(c, id))
		return -EINVAL;
	t = talloc_zero(c, struct txn);
	if (!t)
		return -ENOMEM;
	t->id = id;
	t->conn = c;
	t->next = c->txns;
	c->txns = t;
	c->ntxns++;
	if (c->next_txid <= id)
		c->next_txid = id + 1;
	talloc_set_destructor(t, txn_destroy);
	*out = t;
	return 0;
}

/* The copy starts as the committed node (the stream was checked conflict-free for
 * transactions not flagged LU_TXN_CONFLICT); then the transaction's own state. */
int txn_restore_node(struct conn *c, struct txn *t, const char *path, unsigned int access,
		     const struct xs_perm *p, unsigned int np, const char *val, uint32_t vlen)
{
	struct tnode *tn;
	int ret = tget(c, t, path, &tn);

	if (ret < 0)
		return ret;
	if (np == 0) {
		if (tn->exists) {
			tn->exists = false;
			tn->modified = true;
			tn->nkids = 0;
		}
		return 0;
	}
	if (access & 2) {
		ret = tset(tn, val, vlen, p, np);
		tn->exists = true;
		return ret;
	}
	return tn->exists ? 0 : -EINVAL;
}

static bool is_kid(const char *parent, const char *path)
{
	size_t pl = strcmp(parent, "/") ? strlen(parent) : 0;

	return strncmp(path, parent, pl) == 0 && path[pl] == '/' && path[pl + 1] &&
	       !strchr(path + pl + 1, '/');
}

/* Child lists of modified copies: the committed children minus those the
 * transaction deleted, then those it created, in access order. */
int txn_restore_done(struct txn *t, uint32_t flags)
{
	t->nodes_delta = 0;
	for (struct tnode *tn = t->ohead; tn; tn = tn->onext) {
		t->nodes_delta += (tn->exists && !tn->rec_exists) - (!tn->exists && tn->rec_exists);
		if (!tn->exists || !tn->modified)
			continue;
		unsigned int n = 0;
		for (unsigned int i = 0; i < tn->nkids; i++) {
			char *cp = talloc_asprintf(
			    NULL, "%s/%s", strcmp(tn->path, "/") ? tn->path : "", tn->kids[i]);
			struct tnode *k = cp ? tfind(t, cp) : NULL;
			talloc_free(cp);
			if (k && !k->exists)
				talloc_free(tn->kids[i]);
			else
				tn->kids[n++] = tn->kids[i];
		}
		tn->nkids = n;
		for (struct tnode *k = t->ohead; k; k = k->onext) {
			if (!k->exists || k->rec_exists || !is_kid(tn->path, k->path))
				continue;
			char **nk = talloc_realloc(tn, tn->kids, char *, tn->nkids + 1);
			if (!nk)
				return -ENOMEM;
			tn->kids = nk;
			nk[tn->nkids] = talloc_strdup(nk, path_basename(k->path));
			if (!nk[tn->nkids])
				return -ENOMEM;
			tn->nkids++;
		}
	}
	if (flags & LU_TXN_FAILED)
		t->failed = true;
	if ((flags & LU_TXN_CONFLICT) && t->ohead) {
		/* a recorded state no committed node can match: commit fails EAGAIN */
		t->ohead->rec_exists = true;
		t->ohead->rec_gen = 0;
	}
	return 0;
}

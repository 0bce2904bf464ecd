/* The committed tree.
 *
 * Design: the store is held compactly (target: 100k nodes of 32-byte values in less
 * RSS than C xenstored).  A node is ONE malloc'd record: a 40-byte header, its
 * permissions, its NUL-terminated name and its value.  Children are an ordered
 * pointer array (creation order, as DIRECTORY returns them) whose capacity is the
 * next power of two, so no capacity field is stored.  Lookup by (parent, name) uses
 * one global open-addressing hash table (linear probing, backward-shift deletion,
 * load <= 0.8) keyed on the parent's stable id, so paths resolve in O(depth) and a
 * directory of 10,000 children costs nothing extra.
 *
 * A record is rewritten in place when the new data fits its allocation, else it
 * moves (realloc): node_set() then fixes the parent's child slot, the hash slot and
 * the children's parent pointers and hands back the new address.  talloc is not
 * used per node: its ~100 byte chunk header would double the footprint; the tree is
 * owned by this module and freed by node_tree_free().
 *
 * Every modification sets the node's generation to ++store_gen; transactions compare
 * generations to detect conflicts (transaction.c).  Node ownership (perms[0].domid)
 * is charged to that domain's node and memory counters (domain_charge). */
#include <errno.h>
#include <malloc.h>
#include <stdlib.h>
#include <string.h>
#include <talloc.h>

#include "store/xstored.h"

uint64_t store_gen;

static struct node *root;
static struct node **table;
static size_t table_size; /* power of two */
static size_t table_used;
static uint32_t next_id;
/* node_bulk_begin(): created nodes whose hash insertion is deferred, with their
 * hash (computed at creation, while the record is in the cache) */
struct pending {
	struct node *n;
	size_t hash;
};
static struct pending *pending;
static size_t npending, pending_cap;

static size_t hash_of(uint32_t parent_id, const char *name, size_t len)
{
	uint64_t h = 1469598103934665603ULL ^ ((uint64_t)parent_id * 0x9E3779B97F4A7C15ULL);

	for (size_t i = 0; i < len; i++) {
		h ^= (unsigned char)name[i];
		h *= 1099511628211ULL;
	}
	h ^= h >> 29;
	return (size_t)h;
}

static size_t node_hash(const struct node *n)
{
	return hash_of(n->parent->id, node_name(n), n->namelen);
}

static void table_insert_raw(struct node **t, size_t size, struct node *n)
{
	size_t i = node_hash(n) & (size - 1);

	while (t[i])
		i = (i + 1) & (size - 1);
	t[i] = n;
}

/* Rehashes into a table of nsize slots (a power of two, larger than used). */
static int table_resize(size_t nsize)
{
	struct node **nt = calloc(nsize, sizeof(*nt));

	if (!nt)
		return -ENOMEM;
	for (size_t i = 0; i < table_size; i++)
		if (table[i])
			table_insert_raw(nt, nsize, table[i]);
	free(table);
	table = nt;
	table_size = nsize;
	return 0;
}

static int table_grow(void)
{
	return table_resize(table_size ? table_size * 2 : 1024);
}

static int table_add(struct node *n)
{
	if ((table_used + 1) * 5 > table_size * 4) {
		int ret = table_grow();
		if (ret < 0)
			return ret;
	}
	table_insert_raw(table, table_size, n);
	table_used++;
	return 0;
}

static size_t table_slot(const struct node *n)
{
	size_t mask = table_size - 1;
	size_t i = node_hash(n) & mask;

	while (table[i] != n) {
		if (!table[i])
			return SIZE_MAX;
		i = (i + 1) & mask;
	}
	return i;
}

static void table_del(struct node *n)
{
	size_t mask = table_size - 1;
	size_t i = table_slot(n);

	if (i == SIZE_MAX)
		return;
	/* Backward-shift deletion keeps probe chains intact. */
	size_t j = i;
	for (;;) {
		j = (j + 1) & mask;
		if (!table[j])
			break;
		size_t k = node_hash(table[j]) & mask;
		if ((j > i && (k <= i || k > j)) || (j < i && (k <= i && k > j))) {
			table[i] = table[j];
			i = j;
		}
	}
	table[i] = NULL;
	table_used--;
}

/* Inserts the deferred nodes.  One slot lookup is a cache miss in a table of
 * 100k nodes; computing the slots AHEAD nodes in advance and prefetching them lets
 * those misses overlap instead of being paid one after another. */
static void pending_flush(void)
{
	enum { AHEAD = 32 };
	size_t slot[AHEAD], mask, n = npending;

	if (!n)
		return;
	npending = 0;
	if ((table_used + n + 1) * 5 > table_size * 4 && node_reserve(n) < 0) {
		/* no bigger table: insert one by one, growing as far as memory allows */
		for (size_t i = 0; i < n; i++)
			if (table_add(pending[i].n) < 0)
				log_err("node table: out of memory, %zu nodes unreachable", n - i);
		return;
	}
	mask = table_size - 1;
	for (size_t i = 0; i < n + AHEAD; i++) {
		/* slot[i % AHEAD] holds node i - AHEAD's slot until it is inserted */
		if (i >= AHEAD) {
			size_t j = i - AHEAD, k = slot[j % AHEAD];
			while (table[k])
				k = (k + 1) & mask;
			table[k] = pending[j].n;
		}
		if (i < n) {
			slot[i % AHEAD] = pending[i].hash & mask;
			__builtin_prefetch(&table[slot[i % AHEAD]]);
		}
	}
	table_used += n;
}

struct node *node_child(const struct node *parent, const char *name, size_t len)
{
	if (npending)
		pending_flush();
	size_t mask = table_size - 1;
	size_t i = hash_of(parent->id, name, len) & mask;

	while (table[i]) {
		struct node *n = table[i];
		if (n->parent == parent && n->namelen == len &&
		    memcmp(node_name(n), name, len) == 0)
			return n;
		i = (i + 1) & mask;
	}
	return NULL;
}

struct node *node_root(void)
{
	return root;
}

struct node *node_lookup(const char *path)
{
	struct node *n = root;
	const char *p = path;

	if (*p != '/')
		return NULL;
	p++;
	while (*p && n) {
		const char *e = strchr(p, '/');
		size_t len = e ? (size_t)(e - p) : strlen(p);

		n = node_child(n, p, len);
		p += len;
		if (*p == '/')
			p++;
	}
	return n;
}

size_t node_mem(const struct node *n)
{
	/* What a domain is charged: record header, perms, value and name. */
	return 24 + n->nperms * sizeof(struct xs_perm) + n->vlen + n->namelen + 1;
}

size_t node_record_size(unsigned int nperms, size_t vlen, size_t childlen)
{
	return 24 + 8 * nperms + vlen + childlen;
}

static void charge(const struct node *n, int sign)
{
	if (n->nperms)
		domain_charge(node_perms(n)[0].domid, sign, sign * (long)node_mem(n));
}

static size_t record_size(unsigned int nperms, size_t namelen, size_t vlen)
{
	return sizeof(struct node) + nperms * sizeof(struct xs_perm) + namelen + 1 + vlen;
}

/* Lays out perms, name, value in n->data (name may alias the old layout: memmove). */
static void fill(struct node *n, const struct xs_perm *perms, unsigned int nperms, const char *name,
		 size_t namelen, const void *val, uint32_t vlen)
{
	char *d = n->data;

	memmove(d + nperms * sizeof(*perms), name, namelen);
	d[nperms * sizeof(*perms) + namelen] = '\0';
	memmove(d, perms, nperms * sizeof(*perms));
	if (vlen)
		memmove(d + nperms * sizeof(*perms) + namelen + 1, val, vlen);
	n->nperms = (uint16_t)nperms;
	n->namelen = (uint16_t)namelen;
	n->vlen = vlen;
}

static uint32_t kids_cap(uint32_t n)
{
	uint32_t c = 2;
	while (c < n)
		c *= 2;
	return n ? c : 0;
}

int node_create(struct node *parent, const char *name, size_t namelen, const struct xs_perm *perms,
		unsigned int nperms, const void *val, uint32_t vlen, struct node **out)
{
	struct node *n;

	if (namelen > UINT16_MAX || nperms == 0 || nperms > UINT16_MAX)
		return -EINVAL;
	/* full: capacity is 0 for none, else the next power of two >= 2 */
	if (parent->nkids == 0 || (parent->nkids >= 2 && !(parent->nkids & (parent->nkids - 1)))) {
		struct node **nk = realloc(parent->kids, kids_cap(parent->nkids + 1) * sizeof(*nk));
		if (!nk)
			return -ENOMEM;
		parent->kids = nk;
	}
	n = malloc(record_size(nperms, namelen, vlen));
	if (!n)
		return -ENOMEM;
	memset(n, 0, sizeof(*n));
	n->parent = parent;
	n->id = ++next_id;
	fill(n, perms, nperms, name, namelen, val, vlen);
	n->gen = ++store_gen;
	if (npending < pending_cap) {
		pending[npending++] = (struct pending){n, node_hash(n)};
	} else if (table_add(n) < 0) {
		free(n);
		return -ENOMEM;
	}
	parent->kids[parent->nkids++] = n;
	parent->gen = ++store_gen;
	charge(n, 1);
	if (out)
		*out = n;
	return 0;
}

/* After a record moved from old to n: repoint everything that referenced it. */
static void relink(struct node *old, struct node *n)
{
	if (n->parent) {
		for (uint32_t i = 0; i < n->parent->nkids; i++) {
			if (n->parent->kids[i] == old) {
				n->parent->kids[i] = n;
				break;
			}
		}
		size_t mask = table_size - 1;
		for (size_t i = node_hash(n) & mask; table[i]; i = (i + 1) & mask) {
			if (table[i] == old) {
				table[i] = n;
				break;
			}
		}
	} else {
		root = n;
	}
	for (uint32_t i = 0; i < n->nkids; i++)
		n->kids[i]->parent = n;
}

int node_set(struct node **np, const void *val, uint32_t vlen, const struct xs_perm *perms,
	     unsigned int nperms)
{
	struct node *n = *np;
	size_t need, have = malloc_usable_size(n);
	char *tmp = NULL;

	if (npending)
		pending_flush(); /* a move (relink) repoints the node's hash slot */

	if (!val) {
		val = node_value(n);
		vlen = n->vlen;
	}
	if (!perms) {
		perms = node_perms(n);
		nperms = n->nperms;
	}
	if (nperms == 0 || nperms > UINT16_MAX)
		return -EINVAL;
	need = record_size(nperms, n->namelen, vlen);
	/* New data may point into the record itself (keep-value/keep-perms cases):
	 * stage it when the layout moves. */
	if ((const char *)val >= n->data && (const char *)val < (const char *)n + have) {
		tmp = malloc(vlen ? vlen : 1);
		if (!tmp)
			return -ENOMEM;
		memcpy(tmp, val, vlen);
		val = tmp;
	}
	struct xs_perm pbuf[8], *pcopy = NULL;
	if ((const char *)perms >= n->data && (const char *)perms < (const char *)n + have) {
		pcopy = nperms <= 8 ? pbuf : malloc(nperms * sizeof(*pcopy));
		if (!pcopy) {
			free(tmp);
			return -ENOMEM;
		}
		memcpy(pcopy, perms, nperms * sizeof(*pcopy));
		perms = pcopy;
	}
	charge(n, -1);
	if (need > have || need + 64 < have) {
		struct node *m = malloc(need);
		if (!m) {
			charge(n, 1);
			if (pcopy != pbuf)
				free(pcopy);
			free(tmp);
			return -ENOMEM;
		}
		memcpy(m, n, sizeof(*n));
		memcpy(m->data + nperms * sizeof(struct xs_perm), node_name(n), n->namelen);
		fill(m, perms, nperms, m->data + nperms * sizeof(struct xs_perm), n->namelen, val,
		     vlen);
		relink(n, m);
		free(n);
		n = m;
	} else {
		fill(n, perms, nperms, node_name(n), n->namelen, val, vlen);
	}
	if (pcopy != pbuf)
		free(pcopy);
	free(tmp);
	n->gen = ++store_gen;
	charge(n, 1);
	*np = n;
	return 0;
}

static void free_subtree(struct node *n)
{
	for (uint32_t i = 0; i < n->nkids; i++)
		free_subtree(n->kids[i]);
	charge(n, -1);
	table_del(n);
	free(n->kids);
	free(n);
}

void node_delete(struct node *n)
{
	struct node *p = n->parent;

	if (!p)
		return; /* the root is never deleted */
	if (npending)
		pending_flush(); /* free_subtree() clears hash slots */
	for (uint32_t i = 0; i < p->nkids; i++) {
		if (p->kids[i] == n) {
			memmove(&p->kids[i], &p->kids[i + 1], (p->nkids - i - 1) * sizeof(n));
			p->nkids--;
			break;
		}
	}
	if (p->nkids == 0) {
		free(p->kids);
		p->kids = NULL;
	} else if (kids_cap(p->nkids) < kids_cap(p->nkids + 1)) {
		struct node **nk = realloc(p->kids, kids_cap(p->nkids) * sizeof(*nk));
		if (nk)
			p->kids = nk;
	}
	p->gen = ++store_gen;
	free_subtree(n);
}

void node_reorder(struct node *n, char *const *names, unsigned int count)
{
	struct node **nk;
	unsigned int j = 0;

	if (count != n->nkids || count == 0)
		return;
	nk = malloc(count * sizeof(*nk));
	if (!nk)
		return;
	for (unsigned int i = 0; i < count; i++) {
		struct node *k = node_child(n, names[i], strlen(names[i]));
		if (!k) {
			free(nk);
			return;
		}
		nk[j++] = k;
	}
	memcpy(n->kids, nk, count * sizeof(*nk));
	free(nk);
}

char *node_path(void *ctx, const struct node *n)
{
	size_t len = 0;
	char *buf, *p;

	if (!n->parent)
		return talloc_strdup(ctx, "/");
	for (const struct node *m = n; m->parent; m = m->parent)
		len += m->namelen + 1;
	buf = talloc_size(ctx, len + 1);
	if (!buf)
		return NULL;
	p = buf + len;
	*p = '\0';
	for (const struct node *m = n; m->parent; m = m->parent) {
		p -= m->namelen;
		memcpy(p, node_name(m), m->namelen);
		*--p = '/';
	}
	return buf;
}

int node_reserve(unsigned long more)
{
	size_t nsize = table_size ? table_size : 1024;

	while ((table_used + more + 1) * 5 > nsize * 4)
		nsize *= 2;
	return nsize == table_size ? 0 : table_resize(nsize);
}

int node_bulk_begin(unsigned long more)
{
	int ret = node_reserve(more);

	if (ret < 0 || more == 0)
		return ret;
	pending_flush();
	free(pending);
	pending = malloc(more * sizeof(*pending));
	pending_cap = pending ? more : 0; /* none: immediate insertion, only slower */
	return 0;
}

void node_bulk_end(void)
{
	pending_flush();
	free(pending);
	pending = NULL;
	pending_cap = 0;
}

unsigned long node_count(void)
{
	return table_used + npending + (root ? 1 : 0);
}

int node_tree_init(void)
{
	static const struct xs_perm n0 = {.domid = 0, .bits = XS_PERM_NONE};
	struct node *tool;
	int ret;

	if (table_grow() < 0)
		return -ENOMEM;
	root = malloc(record_size(1, 0, 0));
	if (!root)
		return -ENOMEM;
	memset(root, 0, sizeof(*root));
	root->id = ++next_id;
	fill(root, &n0, 1, "", 0, "", 0);
	root->gen = ++store_gen;
	charge(root, 1);
	ret = node_create(root, "tool", 4, &n0, 1, "", 0, &tool);
	if (ret == 0)
		ret = node_create(tool, "xenstored", 9, &n0, 1, "", 0, NULL);
	return ret;
}

void node_tree_free(void)
{
	node_bulk_end();
	if (root) {
		for (uint32_t i = 0; i < root->nkids; i++)
			free_subtree(root->kids[i]);
		free(root->kids);
		free(root);
		root = NULL;
	}
	free(table);
	table = NULL;
	table_size = table_used = 0;
}

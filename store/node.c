/* The committed tree.
 *
 * Design: the store is held compactly because xstored is expected to keep ~100k
 * nodes in well under the C daemon's RSS.  A node is one malloc'd record (struct +
 * name) plus one malloc'd "data" block holding its permissions followed by its value;
 * children are an ordered pointer array (creation order, as DIRECTORY must return).
 * Lookup by (parent, name) goes through one global open-addressing hash table
 * (linear probing, backward-shift deletion) so paths resolve in O(depth) and a
 * directory of 10,000 children costs nothing extra.  talloc is not used per node:
 * its ~100 byte header per chunk would double the footprint; the tree as a whole is
 * owned by this module and freed by node_tree_free().
 *
 * Every modification sets the node's generation to ++store_gen; transactions compare
 * generations to detect conflicts (transaction.c). Node ownership (perms[0].domid)
 * is charged to that domain's node and memory counters (domain_charge). */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <talloc.h>

#include "store/xstored.h"

uint64_t store_gen;

static struct node *root;
static struct node **table;
static size_t table_size; /* power of two */
static size_t table_used;

static size_t hash_of(const struct node *parent, const char *name, size_t len)
{
	uint64_t h = 1469598103934665603ULL ^ (uint64_t)(uintptr_t)parent;

	for (size_t i = 0; i < len; i++) {
		h ^= (unsigned char)name[i];
		h *= 1099511628211ULL;
	}
	h ^= h >> 29;
	return (size_t)h;
}

static int table_insert_raw(struct node **t, size_t size, struct node *n)
{
	size_t i = hash_of(n->parent, n->name, n->namelen) & (size - 1);

	while (t[i])
		i = (i + 1) & (size - 1);
	t[i] = n;
	return 0;
}

static int table_grow(void)
{
	size_t nsize = table_size ? table_size * 2 : 1024;
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

static int table_add(struct node *n)
{
	if ((table_used + 1) * 2 > table_size) {
		int ret = table_grow();
		if (ret < 0)
			return ret;
	}
	table_insert_raw(table, table_size, n);
	table_used++;
	return 0;
}

static void table_del(struct node *n)
{
	size_t mask = table_size - 1;
	size_t i = hash_of(n->parent, n->name, n->namelen) & mask;

	while (table[i] != n) {
		if (!table[i])
			return;
		i = (i + 1) & mask;
	}
	/* Backward-shift deletion keeps probe chains intact. */
	size_t j = i;
	for (;;) {
		j = (j + 1) & mask;
		if (!table[j])
			break;
		size_t k = hash_of(table[j]->parent, table[j]->name, table[j]->namelen) & mask;
		if ((j > i && (k <= i || k > j)) || (j < i && (k <= i && k > j))) {
			table[i] = table[j];
			i = j;
		}
	}
	table[i] = NULL;
	table_used--;
}

struct node *node_child(const struct node *parent, const char *name, size_t len)
{
	size_t mask = table_size - 1;
	size_t i = hash_of(parent, name, len) & mask;

	while (table[i]) {
		struct node *n = table[i];
		if (n->parent == parent && n->namelen == len && memcmp(n->name, name, len) == 0)
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

static char *data_new(const struct xs_perm *perms, unsigned int nperms, const void *val,
		      uint32_t vlen)
{
	size_t plen = nperms * sizeof(struct xs_perm);
	char *d = malloc(plen + vlen ? plen + vlen : 1);

	if (!d)
		return NULL;
	memcpy(d, perms, plen);
	if (vlen)
		memcpy(d + plen, val, vlen);
	return d;
}

static struct node *node_alloc(struct node *parent, const char *name, size_t namelen,
			       const struct xs_perm *perms, unsigned int nperms, const void *val,
			       uint32_t vlen)
{
	struct node *n = calloc(1, sizeof(*n) + namelen + 1);

	if (!n)
		return NULL;
	n->data = data_new(perms, nperms, val, vlen);
	if (!n->data) {
		free(n);
		return NULL;
	}
	n->parent = parent;
	n->nperms = (uint16_t)nperms;
	n->vlen = vlen;
	n->namelen = (uint16_t)namelen;
	memcpy(n->name, name, namelen);
	n->gen = ++store_gen;
	return n;
}

int node_create(struct node *parent, const char *name, size_t namelen,
		const struct xs_perm *perms, unsigned int nperms, const void *val, uint32_t vlen,
		struct node **out)
{
	struct node *n;

	if (namelen > UINT16_MAX || nperms == 0)
		return -EINVAL;
	if (parent->nkids == parent->kcap) {
		uint32_t ncap = parent->kcap ? parent->kcap * 2 : 2;
		struct node **nk = realloc(parent->kids, ncap * sizeof(*nk));
		if (!nk)
			return -ENOMEM;
		parent->kids = nk;
		parent->kcap = ncap;
	}
	n = node_alloc(parent, name, namelen, perms, nperms, val, vlen);
	if (!n)
		return -ENOMEM;
	if (table_add(n) < 0) {
		free(n->data);
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

int node_set(struct node *n, const void *val, uint32_t vlen, const struct xs_perm *perms,
	     unsigned int nperms)
{
	char *d;

	if (!val) {
		val = node_value(n);
		vlen = n->vlen;
	}
	if (!perms) {
		perms = node_perms(n);
		nperms = n->nperms;
	}
	d = data_new(perms, nperms, val, vlen);
	if (!d)
		return -ENOMEM;
	charge(n, -1);
	free(n->data);
	n->data = d;
	n->vlen = vlen;
	n->nperms = (uint16_t)nperms;
	n->gen = ++store_gen;
	charge(n, 1);
	return 0;
}

static void free_subtree(struct node *n)
{
	for (uint32_t i = 0; i < n->nkids; i++)
		free_subtree(n->kids[i]);
	charge(n, -1);
	table_del(n);
	free(n->kids);
	free(n->data);
	free(n);
}

void node_delete(struct node *n)
{
	struct node *p = n->parent;

	if (!p)
		return; /* the root is never deleted */
	for (uint32_t i = 0; i < p->nkids; i++) {
		if (p->kids[i] == n) {
			memmove(&p->kids[i], &p->kids[i + 1], (p->nkids - i - 1) * sizeof(n));
			p->nkids--;
			break;
		}
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
		memcpy(p, m->name, m->namelen);
		*--p = '/';
	}
	return buf;
}

unsigned long node_count(void)
{
	return table_used + (root ? 1 : 0);
}

int node_tree_init(void)
{
	static const struct xs_perm n0 = {.domid = 0, .bits = XS_PERM_NONE};
	struct node *tool;
	int ret;

	if (table_grow() < 0)
		return -ENOMEM;
	root = node_alloc(NULL, "", 0, &n0, 1, "", 0);
	if (!root)
		return -ENOMEM;
	charge(root, 1);
	ret = node_create(root, "tool", 4, &n0, 1, "", 0, &tool);
	if (ret == 0)
		ret = node_create(tool, "xenstored", 9, &n0, 1, "", 0, NULL);
	return ret;
}

void node_tree_free(void)
{
	if (root) {
		for (uint32_t i = 0; i < root->nkids; i++)
			free_subtree(root->kids[i]);
		free(root->kids);
		free(root->data);
		free(root);
		root = NULL;
	}
	free(table);
	table = NULL;
	table_size = table_used = 0;
}

/* Permission strings and access decisions (spec §5).
 *
 * A list p0 p1 .. pn: p0.domid owns the node and p0's letter is the access of every
 * domain not listed.  Entries flagged IGNORE, or naming a domain that does not exist
 * or was introduced after the node was last written, are skipped. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <talloc.h>

#include "store/xstored.h"

int perms_parse(void *ctx, const char *s, size_t len, unsigned int count, struct xs_perm **out)
{
	struct xs_perm *p = talloc_array(ctx, struct xs_perm, count ? count : 1);
	const char *end = s + len;

	if (!p)
		return -ENOMEM;
	for (unsigned int i = 0; i < count; i++) {
		size_t l = strnlen(s, (size_t)(end - s));
		char *e;
		long d;

		if (l == (size_t)(end - s) || l < 2)
			goto inval;
		switch (s[0]) {
		case 'n':
			p[i].bits = XS_PERM_NONE;
			break;
		case 'r':
			p[i].bits = XS_PERM_READ;
			break;
		case 'w':
			p[i].bits = XS_PERM_WRITE;
			break;
		case 'b':
			p[i].bits = XS_PERM_READ | XS_PERM_WRITE;
			break;
		default:
			goto inval;
		}
		d = strtol(s + 1, &e, 0);
		if (*e != '\0' || e == s + 1)
			goto inval;
		p[i].domid = (uint32_t)d; /* as C xenstored: truncated to unsigned int */
		s += l + 1;
	}
	*out = p;
	return 0;
inval:
	talloc_free(p);
	return -EINVAL;
}

int perms_format(const struct xs_perm *p, unsigned int n, char *buf, size_t cap)
{
	static const char letters[4] = {'n', 'r', 'w', 'b'};
	size_t off = 0;

	for (unsigned int i = 0; i < n; i++) {
		int l =
		    snprintf(buf + off, cap - off, "%c%d",
			     letters[p[i].bits & (XS_PERM_READ | XS_PERM_WRITE)], (int)p[i].domid);
		if (l < 0 || (size_t)l + 1 > cap - off)
			return -E2BIG;
		off += (size_t)l + 1; /* keep the NUL */
	}
	return (int)off;
}

unsigned int perm_for_conn(const struct conn *c, const struct xs_perm *p, unsigned int n,
			   uint64_t gen)
{
	unsigned int all = XS_PERM_READ | XS_PERM_WRITE | XS_PERM_OWNER;

	if (c->privileged)
		return all;
	if (n == 0)
		return 0;
	if (c->domid == p[0].domid || (c->target >= 0 && (uint32_t)c->target == p[0].domid))
		return all;
	for (unsigned int i = 1; i < n; i++) {
		if (p[i].bits & XS_PERM_IGNORE)
			continue;
		if (p[i].domid != c->domid && (c->target < 0 || p[i].domid != (uint32_t)c->target))
			continue;
		if (!domain_exists(p[i].domid, gen))
			continue;
		return p[i].bits & (XS_PERM_READ | XS_PERM_WRITE);
	}
	return p[0].bits & (XS_PERM_READ | XS_PERM_WRITE);
}

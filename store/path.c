/* Path canonicalisation and validation (spec §4.1).
 *
 * Relative paths are prefixed with the connection's home, /local/domain/<domid>
 * (socket connections: /local/domain/0).  Allowed characters A-Za-z0-9-/_@, no
 * "//", no trailing '/' except the root.  The path-max quota counts only the part
 * after /local/domain/<id>/ when present, and applies to every caller. */
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <talloc.h>

#include "store/xstored.h"

bool path_is_special(const char *p)
{
	return p[0] == '@';
}

static bool valid_chars(const char *p)
{
	for (; *p; p++) {
		unsigned char ch = (unsigned char)*p;
		if (!isalnum(ch) && ch != '-' && ch != '/' && ch != '_' && ch != '@')
			return false;
		if (ch >= 0x80)
			return false;
	}
	return true;
}

/* Length that counts against path-max. */
static size_t counted_len(const char *p)
{
	static const char pre[] = "/local/domain/";
	size_t n = strlen(p);

	if (strncmp(p, pre, sizeof(pre) - 1) == 0) {
		const char *d = p + sizeof(pre) - 1;
		size_t digits = 0;
		while (isdigit((unsigned char)d[digits]))
			digits++;
		if (digits >= 1 && digits <= 5 && d[digits] == '/')
			return n - (size_t)(d + digits + 1 - p);
	}
	return n;
}

int path_canon(const struct conn *c, const char *in, bool allow_special, void *ctx, char **out)
{
	char *p;

	if (in[0] == '@') {
		if (!allow_special)
			return -EINVAL;
		if (strlen(in) > XS_REL_PATH_MAX)
			return -EINVAL;
		p = talloc_strdup(ctx, in);
	} else if (in[0] == '/') {
		p = talloc_strdup(ctx, in);
	} else {
		char home[40];
		p = talloc_asprintf(ctx, "%s/%s", conn_home(c, home, sizeof(home)), in);
	}
	if (!p)
		return -ENOMEM;
	if (p[0] != '@') {
		size_t n = strlen(p);
		if (!valid_chars(p) || strstr(p, "//") || (n > 1 && p[n - 1] == '/') ||
		    n > XS_ABS_PATH_MAX || counted_len(p) > (size_t)quotas[Q_PATH_MAX].hard) {
			talloc_free(p);
			return -EINVAL;
		}
	}
	*out = p;
	return 0;
}

char *path_parent(void *ctx, const char *p)
{
	const char *s = strrchr(p, '/');

	if (!s || s == p)
		return talloc_strdup(ctx, "/");
	return talloc_strndup(ctx, p, (size_t)(s - p));
}

const char *path_basename(const char *p)
{
	const char *s = strrchr(p, '/');
	return s ? s + 1 : p;
}

size_t path_depth(const char *p)
{
	size_t d = 0;

	if (strcmp(p, "/") == 0)
		return 0;
	for (; *p; p++)
		if (*p == '/')
			d++;
	return d;
}

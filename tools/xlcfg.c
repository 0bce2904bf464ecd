/*
 * xl.cfg parser (see xlcfg.h and docs/xl-cfg.md).  A hand-written scanner over the
 * whole text: settings are `KEY = VALUE` ended by a newline, ';' or a comment; a value
 * is a string, a number or a list of them, and newlines inside [ ] are ignored.
 */
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <talloc.h>

#include "tools/xlcfg.h"

#define XLCFG_MAX_FILE (1u << 20)
#define XLCFG_MAX_ITEMS 1024
#define XLCFG_MAX_VCPUS 128
#define XLCFG_MAX_NAME 64

struct scan {
	void *ctx;
	const char *file;
	const char *p;
	unsigned int line;
	char *err;
	size_t errlen;
	bool bare; /* command-line override: an unquoted word is a string */
};

static int fail_at(char *err, size_t errlen, const char *file, unsigned int line, const char *fmt,
		   ...) __attribute__((format(printf, 5, 6)));
static int fail_at(char *err, size_t errlen, const char *file, unsigned int line, const char *fmt,
		   ...)
{
	va_list ap;
	int n;

	if (!errlen)
		return -EINVAL;
	if (line)
		n = snprintf(err, errlen, "%s:%u: ", file, line);
	else
		n = snprintf(err, errlen, "%s: ", file);
	if (n < 0 || (size_t)n >= errlen)
		return -EINVAL;
	va_start(ap, fmt);
	vsnprintf(err + n, errlen - n, fmt, ap);
	va_end(ap);
	return -EINVAL;
}

#define SFAIL(s, ...) fail_at((s)->err, (s)->errlen, (s)->file, (s)->line, __VA_ARGS__)

/* Skip blanks and comments; newlines too when `nl` is set. */
static void skip_space(struct scan *s, bool nl)
{
	for (;;) {
		char c = *s->p;

		if (c == ' ' || c == '\t' || c == '\r') {
			s->p++;
		} else if (c == '#') {
			while (*s->p && *s->p != '\n')
				s->p++;
		} else if (c == '\\' && s->p[1] == '\n') {
			/* An escaped newline continues the line. */
			s->p += 2;
			s->line++;
		} else if (nl && c == '\n') {
			s->p++;
			s->line++;
		} else {
			return;
		}
	}
}

static const char *show_char(char c, char buf[8])
{
	if (c == '\0')
		return "end of file";
	if (c == '\n')
		return "end of line";
	if (isprint((unsigned char)c))
		snprintf(buf, 8, "'%c'", c);
	else
		snprintf(buf, 8, "0x%02x", (unsigned char)c);
	return buf;
}

static int scan_string(struct scan *s, struct xlcfg_value *v)
{
	char quote = *s->p++;
	char *out = talloc_strdup(s->ctx, "");
	unsigned int start = s->line;

	if (!out)
		return -ENOMEM;
	while (*s->p != quote) {
		char c = *s->p;
		char buf[2] = {0, 0};

		if (c == '\0' || c == '\n') {
			s->line = start;
			return SFAIL(s, "syntax error: unterminated string");
		}
		if (c == '\\' && quote == '"') {
			s->p++;
			switch (*s->p) {
			case 'n':
				c = '\n';
				break;
			case 't':
				c = '\t';
				break;
			case 'r':
				c = '\r';
				break;
			case '\\':
				c = '\\';
				break;
			case '"':
				c = '"';
				break;
			case '\'':
				c = '\'';
				break;
			default:
				return SFAIL(s, "syntax error: unknown escape '\\%c' in string",
					     *s->p ? *s->p : ' ');
			}
		}
		if (c == '\0')
			return SFAIL(s, "syntax error: NUL in string");
		buf[0] = c;
		out = talloc_strdup_append_buffer(out, buf);
		if (!out)
			return -ENOMEM;
		s->p++;
	}
	s->p++;
	v->type = XLCFG_STRING;
	v->s = out;
	return 0;
}

static int scan_number(struct scan *s, struct xlcfg_value *v)
{
	const char *start = s->p;
	char *end;
	unsigned long long n;

	errno = 0;
	n = strtoull(start, &end, 0);
	if (end == start)
		return SFAIL(s, "syntax error: bad number");
	if (errno == ERANGE)
		return SFAIL(s, "number too large");
	if (isalnum((unsigned char)*end) || *end == '_' || *end == '.')
		return SFAIL(s, "syntax error: bad number \"%.*s\"", (int)(end - start + 1), start);
	v->type = XLCFG_NUMBER;
	v->n = n;
	v->s = talloc_strndup(s->ctx, start, end - start);
	if (!v->s)
		return -ENOMEM;
	s->p = end;
	return 0;
}

static int scan_scalar(struct scan *s, const char *key, struct xlcfg_value *v)
{
	char cb[8];

	if (*s->p == '"' || *s->p == '\'')
		return scan_string(s, v);
	if (isdigit((unsigned char)*s->p))
		return scan_number(s, v);
	if (*s->p == '[')
		return SFAIL(s, "syntax error: nested lists are not supported (\"%s\")", key);
	if (s->bare && *s->p && *s->p != '\n' && *s->p != ';' && *s->p != ',' && *s->p != ']') {
		const char *start = s->p;

		while (*s->p && *s->p != '\n' && *s->p != ';' && *s->p != ',' && *s->p != ']')
			s->p++;
		v->type = XLCFG_STRING;
		v->s = talloc_strndup(s->ctx, start, s->p - start);
		return v->s ? 0 : -ENOMEM;
	}
	return SFAIL(s, "syntax error: expected a value for \"%s\", got %s", key,
		     show_char(*s->p, cb));
}

static int scan_list(struct scan *s, const char *key, struct xlcfg_value *v)
{
	unsigned int start = s->line;
	char cb[8];
	int rv;

	s->p++; /* [ */
	v->type = XLCFG_LIST;
	v->nitems = 0;
	v->items = talloc_array(s->ctx, struct xlcfg_value, 0);
	if (!v->items)
		return -ENOMEM;
	for (;;) {
		skip_space(s, true);
		if (*s->p == ']') {
			s->p++;
			return 0;
		}
		if (*s->p == '\0') {
			s->line = start;
			return SFAIL(s, "syntax error: unterminated list for \"%s\"", key);
		}
		if (v->nitems >= XLCFG_MAX_ITEMS)
			return SFAIL(s, "too many items in \"%s\"", key);
		v->items = talloc_realloc(s->ctx, v->items, struct xlcfg_value, v->nitems + 1);
		if (!v->items)
			return -ENOMEM;
		memset(&v->items[v->nitems], 0, sizeof(v->items[0]));
		rv = scan_scalar(s, key, &v->items[v->nitems]);
		if (rv < 0)
			return rv;
		v->nitems++;
		skip_space(s, true);
		if (*s->p == ',') {
			s->p++;
		} else if (*s->p != ']') {
			if (*s->p == '\0') {
				s->line = start;
				return SFAIL(s, "syntax error: unterminated list for \"%s\"", key);
			}
			return SFAIL(s, "syntax error: expected ',' or ']' in \"%s\", got %s", key,
				     show_char(*s->p, cb));
		}
	}
}

static struct xlcfg_setting *cfg_find(struct xlcfg *cfg, const char *key)
{
	unsigned int i;

	for (i = 0; i < cfg->n; i++)
		if (strcmp(cfg->settings[i].key, key) == 0)
			return &cfg->settings[i];
	return NULL;
}

int xlcfg_parse(void *ctx, const char *file, const char *text, bool override, struct xlcfg **cfgp,
		char *err, size_t errlen)
{
	/* A command-line override is one argument: its messages carry no line number. */
	struct scan s = {.file = file,
			 .p = text,
			 .line = override ? 0 : 1,
			 .err = err,
			 .errlen = errlen,
			 .bare = override};
	struct xlcfg *cfg = *cfgp;
	char cb[8];
	int rv;

	if (errlen)
		err[0] = '\0';
	if (!cfg) {
		cfg = talloc_zero(ctx, struct xlcfg);
		if (!cfg)
			return -ENOMEM;
		*cfgp = cfg;
	}
	s.ctx = cfg;
	for (;;) {
		struct xlcfg_setting set = {.file = file}, *old;
		const char *kstart;

		skip_space(&s, true);
		if (*s.p == ';') {
			s.p++;
			continue;
		}
		if (*s.p == '\0')
			return 0;
		if (!isalpha((unsigned char)*s.p) && *s.p != '_')
			return SFAIL(&s, "syntax error: expected a key, got %s",
				     show_char(*s.p, cb));
		kstart = s.p;
		while (isalnum((unsigned char)*s.p) || *s.p == '_')
			s.p++;
		set.key = talloc_strndup(cfg, kstart, s.p - kstart);
		if (!set.key)
			return -ENOMEM;
		set.line = s.line;
		skip_space(&s, false);
		if (*s.p != '=')
			return SFAIL(&s, "syntax error: expected '=' after \"%s\", got %s", set.key,
				     show_char(*s.p, cb));
		s.p++;
		skip_space(&s, false);
		if (*s.p == '[')
			rv = scan_list(&s, set.key, &set.value);
		else
			rv = scan_scalar(&s, set.key, &set.value);
		if (rv < 0)
			return rv;
		skip_space(&s, false);
		if (*s.p != '\n' && *s.p != ';' && *s.p != '\0')
			return SFAIL(&s, "syntax error: unexpected %s after the value of \"%s\"",
				     show_char(*s.p, cb), set.key);
		old = cfg_find(cfg, set.key);
		if (old && !override) {
			s.line = set.line;
			if (old->file == file)
				return SFAIL(&s, "duplicate key \"%s\" (first set on line %u)",
					     set.key, old->line);
			return SFAIL(&s, "duplicate key \"%s\"", set.key);
		}
		if (old) {
			*old = set;
			continue;
		}
		cfg->settings =
		    talloc_realloc(cfg, cfg->settings, struct xlcfg_setting, cfg->n + 1);
		if (!cfg->settings)
			return -ENOMEM;
		cfg->settings[cfg->n++] = set;
	}
}

int xlcfg_parse_file(void *ctx, const char *path, struct xlcfg **cfg, char *err, size_t errlen)
{
	char *text = NULL;
	size_t len = 0;
	ssize_t n;
	int fd, rv;

	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		rv = -errno;
		fail_at(err, errlen, path, 0, "%s", strerror(-rv));
		return rv;
	}
	text = talloc_size(ctx, XLCFG_MAX_FILE + 1);
	if (!text) {
		close(fd);
		return -ENOMEM;
	}
	while ((n = read(fd, text + len, XLCFG_MAX_FILE + 1 - len)) > 0) {
		len += n;
		if (len > XLCFG_MAX_FILE)
			break;
	}
	rv = n < 0 ? -errno : 0;
	close(fd);
	if (rv < 0) {
		fail_at(err, errlen, path, 0, "%s", strerror(-rv));
		goto out;
	}
	if (len > XLCFG_MAX_FILE) {
		rv =
		    fail_at(err, errlen, path, 0, "file too large (over %u bytes)", XLCFG_MAX_FILE);
		goto out;
	}
	text[len] = '\0';
	if (strlen(text) != len) {
		rv = fail_at(err, errlen, path, 0, "file contains a NUL byte");
		goto out;
	}
	rv = xlcfg_parse(ctx, path, text, false, cfg, err, errlen);
out:
	talloc_free(text);
	return rv;
}

/* ---- resolution ---- */

enum kind { K_STRING, K_NUMBER, K_CPUS };

static const struct key {
	const char *name;
	enum kind kind;
} keys[] = {
    {"name", K_STRING},	       {"uuid", K_STRING},
    {"type", K_STRING},	       {"memory", K_NUMBER},
    {"maxmem", K_NUMBER},      {"vcpus", K_NUMBER},
    {"maxvcpus", K_NUMBER},    {"cpus", K_CPUS},
    {"cpu_weight", K_NUMBER},  {"cpu_cap", K_NUMBER},
    {"pool", K_STRING},	       {"kernel", K_STRING},
    {"ramdisk", K_STRING},     {"cmdline", K_STRING},
    {"extra", K_STRING},       {"root", K_STRING},
    {"on_poweroff", K_STRING}, {"on_reboot", K_STRING},
    {"on_crash", K_STRING},    {"on_soft_reset", K_STRING},
    {"workload", K_STRING},    {"core", K_STRING},
};

static const char *const actions[] = {"destroy",	   "restart",	      "rename-restart",
				      "preserve",	   "soft-reset",      "coredump-destroy",
				      "coredump-restart", NULL};

bool xlcfg_action_valid(const char *a)
{
	unsigned int i;

	for (i = 0; actions[i]; i++)
		if (strcmp(a, actions[i]) == 0)
			return true;
	return false;
}

int xlcfg_cpulist_parse(const char *s, uint64_t map[16], unsigned int *highest)
{
	const char *p = s;

	memset(map, 0, 16 * sizeof(uint64_t));
	*highest = 0;
	if (strcmp(s, "all") == 0) {
		memset(map, 0xff, 16 * sizeof(uint64_t));
		*highest = 1023;
		return 0;
	}
	for (;;) {
		unsigned long a, b, i;
		char *end;

		if (!isdigit((unsigned char)*p))
			return -EINVAL;
		a = strtoul(p, &end, 10);
		p = end;
		b = a;
		if (*p == '-') {
			p++;
			if (!isdigit((unsigned char)*p))
				return -EINVAL;
			b = strtoul(p, &end, 10);
			p = end;
		}
		if (a > b || b >= 1024)
			return -EINVAL;
		for (i = a; i <= b; i++)
			map[i / 64] |= 1ull << (i % 64);
		if (b > *highest)
			*highest = b;
		if (*p == '\0')
			return 0;
		if (*p != ',')
			return -EINVAL;
		p++;
	}
}

int xlcfg_uuid_parse(const char *s, uint8_t uuid[16])
{
	unsigned int i, j = 0;

	if (strlen(s) != 36)
		return -EINVAL;
	for (i = 0; i < 36;) {
		if (i == 8 || i == 13 || i == 18 || i == 23) {
			if (s[i] != '-')
				return -EINVAL;
			i++;
			continue;
		}
		if (!isxdigit((unsigned char)s[i]) || !isxdigit((unsigned char)s[i + 1]))
			return -EINVAL;
		char hex[3] = {s[i], s[i + 1], 0};
		uuid[j++] = (uint8_t)strtoul(hex, NULL, 16);
		i += 2;
	}
	return 0;
}

void xlcfg_uuid_format(const uint8_t u[16], char out[37])
{
	snprintf(out, 37, "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x",
		 u[0], u[1], u[2], u[3], u[4], u[5], u[6], u[7], u[8], u[9], u[10], u[11], u[12],
		 u[13], u[14], u[15]);
}

struct res {
	const struct xlcfg *cfg;
	const char *file;
	char *err;
	size_t errlen;
};

static const struct xlcfg_setting *res_get(const struct res *r, const char *key)
{
	unsigned int i;

	for (i = 0; i < r->cfg->n; i++)
		if (strcmp(r->cfg->settings[i].key, key) == 0)
			return &r->cfg->settings[i];
	return NULL;
}

#define RFAIL(r, set, ...)                                                                         \
	fail_at((r)->err, (r)->errlen, (set) ? (set)->file : (r)->file, (set) ? (set)->line : 0,   \
		__VA_ARGS__)

static int res_string(const struct res *r, const char *key, const char *def, const char **out)
{
	const struct xlcfg_setting *set = res_get(r, key);

	*out = def;
	if (!set)
		return 0;
	if (set->value.type == XLCFG_LIST)
		return RFAIL(r, set, "\"%s\" must be a string, not a list", key);
	*out = set->value.s;
	return 0;
}

static int res_number(const struct res *r, const char *key, uint64_t def, uint64_t min,
		      uint64_t max, uint64_t *out)
{
	const struct xlcfg_setting *set = res_get(r, key);
	const struct xlcfg_value *v;
	char *end;

	*out = def;
	if (!set)
		return 0;
	v = &set->value;
	if (v->type == XLCFG_LIST)
		return RFAIL(r, set, "\"%s\" must be a number, not a list", key);
	if (v->type == XLCFG_STRING) {
		/* xl accepts a quoted number. */
		errno = 0;
		if (!isdigit((unsigned char)v->s[0]))
			return RFAIL(r, set, "\"%s\" must be a number, got \"%s\"", key, v->s);
		*out = strtoull(v->s, &end, 0);
		if (*end || errno)
			return RFAIL(r, set, "\"%s\" must be a number, got \"%s\"", key, v->s);
	} else {
		*out = v->n;
	}
	if (*out < min || *out > max)
		return RFAIL(r, set,
			     "\"%s\" must be between %" PRIu64 " and %" PRIu64 ", got %" PRIu64,
			     key, min, max, *out);
	return 0;
}

static int res_oneof(const struct res *r, const char *key, const char *def,
		     const char *const *allowed, const char *what, const char **out)
{
	const struct xlcfg_setting *set = res_get(r, key);
	unsigned int i;
	int rv;

	rv = res_string(r, key, def, out);
	if (rv < 0 || !set)
		return rv;
	for (i = 0; allowed[i]; i++)
		if (strcmp(*out, allowed[i]) == 0)
			return 0;
	return RFAIL(r, set, "\"%s\": unknown %s \"%s\"", key, what, *out);
}

static int res_cpus(void *ctx, const struct res *r, const char **out)
{
	const struct xlcfg_setting *set = res_get(r, "cpus");
	uint64_t map[16];
	unsigned int hi, i;
	char *s;

	*out = NULL;
	if (!set)
		return 0;
	if (set->value.type != XLCFG_LIST) {
		s = talloc_strdup(ctx, set->value.s);
	} else {
		s = talloc_strdup(ctx, "");
		for (i = 0; s && i < set->value.nitems; i++)
			s = talloc_asprintf_append(s, "%s%s", i ? "," : "", set->value.items[i].s);
	}
	if (!s)
		return -ENOMEM;
	if (xlcfg_cpulist_parse(s, map, &hi) < 0)
		return RFAIL(r, set, "\"cpus\": invalid cpu list \"%s\"", s);
	*out = s;
	return 0;
}

int xlcfg_resolve(void *ctx, const struct xlcfg *cfg, const char *file, struct xlcfg_domain *d,
		  char *err, size_t errlen)
{
	static const char *const types[] = {"pvh", "hvm", "pv", NULL};
	static const char *const cores[] = {"auto", "sim", "kvm", NULL};
	struct res r = {.cfg = cfg, .file = file, .err = err, .errlen = errlen};
	const struct xlcfg_setting *set;
	const char *uuid, *extra, *root;
	const char **acts[4] = {&d->on_poweroff, &d->on_reboot, &d->on_crash, &d->on_soft_reset};
	static const char *const act_keys[4] = {"on_poweroff", "on_reboot", "on_crash",
						"on_soft_reset"};
	static const char *const act_defs[4] = {"destroy", "restart", "destroy", "soft-reset"};
	uint64_t v;
	unsigned int i, k;
	int rv;

	if (errlen)
		err[0] = '\0';
	memset(d, 0, sizeof(*d));
	for (i = 0; i < cfg->n; i++) {
		for (k = 0; k < sizeof(keys) / sizeof(keys[0]); k++)
			if (strcmp(cfg->settings[i].key, keys[k].name) == 0)
				break;
		if (k == sizeof(keys) / sizeof(keys[0]))
			return RFAIL(&r, &cfg->settings[i], "unknown key \"%s\"",
				     cfg->settings[i].key);
	}

	set = res_get(&r, "name");
	if (!set)
		return fail_at(err, errlen, file, 0, "missing key \"name\"");
	if ((rv = res_string(&r, "name", NULL, &d->name)) < 0)
		return rv;
	if (!d->name[0] || strlen(d->name) > XLCFG_MAX_NAME || strchr(d->name, '/') ||
	    isdigit((unsigned char)d->name[0]))
		return RFAIL(&r, set,
			     "\"name\": invalid domain name \"%s\" (1..%d characters, "
			     "no '/', not starting with a digit)",
			     d->name, XLCFG_MAX_NAME);
	for (i = 0; d->name[i]; i++)
		if (!isprint((unsigned char)d->name[i]) || isspace((unsigned char)d->name[i]))
			return RFAIL(&r, set,
				     "\"name\": invalid domain name \"%s\" (no spaces or "
				     "control characters)",
				     d->name);

	if ((rv = res_string(&r, "uuid", NULL, &uuid)) < 0)
		return rv;
	if (uuid) {
		if (xlcfg_uuid_parse(uuid, d->uuid) < 0)
			return RFAIL(&r, res_get(&r, "uuid"), "\"uuid\": invalid uuid \"%s\"",
				     uuid);
		d->has_uuid = true;
	}
	if ((rv = res_oneof(&r, "type", "pvh", types, "type", &d->type)) < 0)
		return rv;
	if ((rv = res_oneof(&r, "core", "auto", cores, "core", &d->core)) < 0)
		return rv;

	if ((rv = res_number(&r, "memory", 128, 1, 1ull << 24, &d->memory_mib)) < 0)
		return rv;
	if ((rv = res_number(&r, "maxmem", d->memory_mib, 1, 1ull << 24, &d->maxmem_mib)) < 0)
		return rv;
	if (d->maxmem_mib < d->memory_mib)
		return RFAIL(&r, res_get(&r, "maxmem"),
			     "\"maxmem\" (%" PRIu64 ") is below \"memory\" (%" PRIu64 ")",
			     d->maxmem_mib, d->memory_mib);
	if ((rv = res_number(&r, "vcpus", 1, 1, XLCFG_MAX_VCPUS, &v)) < 0)
		return rv;
	d->vcpus = (unsigned int)v;
	if ((rv = res_number(&r, "maxvcpus", d->vcpus, 1, XLCFG_MAX_VCPUS, &v)) < 0)
		return rv;
	d->maxvcpus = (unsigned int)v;
	if (d->maxvcpus < d->vcpus)
		return RFAIL(&r, res_get(&r, "maxvcpus"),
			     "\"maxvcpus\" (%u) is below \"vcpus\" (%u)", d->maxvcpus, d->vcpus);
	if ((rv = res_cpus(ctx, &r, &d->cpus)) < 0)
		return rv;
	if ((rv = res_number(&r, "cpu_weight", 256, 1, 65535, &v)) < 0)
		return rv;
	d->cpu_weight = (unsigned int)v;
	if ((rv = res_number(&r, "cpu_cap", 0, 0, 100ull * d->maxvcpus, &v)) < 0)
		return rv;
	d->cpu_cap = (unsigned int)v;
	if ((rv = res_string(&r, "pool", "Pool-0", &d->pool)) < 0)
		return rv;
	if (!d->pool[0])
		return RFAIL(&r, res_get(&r, "pool"), "\"pool\" must not be empty");

	if ((rv = res_string(&r, "kernel", NULL, &d->kernel)) < 0 ||
	    (rv = res_string(&r, "ramdisk", NULL, &d->ramdisk)) < 0 ||
	    (rv = res_string(&r, "cmdline", NULL, &d->cmdline)) < 0 ||
	    (rv = res_string(&r, "extra", NULL, &extra)) < 0 ||
	    (rv = res_string(&r, "root", NULL, &root)) < 0 ||
	    (rv = res_string(&r, "workload", NULL, &d->workload)) < 0)
		return rv;
	/* xl: cmdline wins; otherwise "root=ROOT EXTRA". */
	if (!d->cmdline && (extra || root)) {
		d->cmdline = talloc_asprintf(ctx, "%s%s%s%s", root ? "root=" : "", root ? root : "",
					     root && extra ? " " : "", extra ? extra : "");
		if (!d->cmdline)
			return -ENOMEM;
	}
	for (i = 0; i < 4; i++) {
		if ((rv = res_string(&r, act_keys[i], act_defs[i], acts[i])) < 0)
			return rv;
		if (!xlcfg_action_valid(*acts[i]))
			return RFAIL(&r, res_get(&r, act_keys[i]), "\"%s\": unknown action \"%s\"",
				     act_keys[i], *acts[i]);
	}
	/* Keep strings alive on ctx, independent of cfg. */
	{
		const char **strs[] = {&d->name,      &d->type,	    &d->core,
				       &d->pool,      &d->kernel,   &d->ramdisk,
				       &d->cmdline,   &d->workload, &d->on_poweroff,
				       &d->on_reboot, &d->on_crash, &d->on_soft_reset};
		for (i = 0; i < sizeof(strs) / sizeof(strs[0]); i++) {
			if (*strs[i]) {
				*strs[i] = talloc_strdup(ctx, *strs[i]);
				if (!*strs[i])
					return -ENOMEM;
			}
		}
	}
	return 0;
}

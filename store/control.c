/* XS_CONTROL (spec §9): check, log, logfile, memreport, print, quota, quota-soft,
 * help; live-update is lu.c's (docs/liveupdate.md).  xst's own: dump-state, and
 * domain-watches / domain-watch, with which the agent carries a guest's watches to
 * another xstored when the guest migrates or is restored (docs/xstored.md). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <talloc.h>

#include "store/lu_stream.h"
#include "store/xstored.h"

#define MAX_ARGS 5

static const char help_text[] = "check\t\n"
				"log\ton|off\n"
				"live-update\t[-c <cmdline>] [-F] [-t <timeout>] <file>\n"
				"    Default timeout is 60 seconds.\n"
				"logfile\t<file>\n"
				"memreport\t[<file>]\n"
				"print\t<string>\n"
				"quota\t[set <name> <val>|<domid>]\n"
				"quota-soft\t[set <name> <val>]\n"
				"help\t\n"; /* exactly Xen 4.17's: xst's own are not listed */

static int ctl_check(struct req *r, const char **a, unsigned int n)
{
	if (n != 0)
		return -EINVAL;
	return reply_str(r, "OK");
}

static int ctl_log(struct req *r, const char **a, unsigned int n)
{
	if (n != 1)
		return -EINVAL;
	if (strcmp(a[0], "on") == 0) {
		if (!trace_on() && opts.trace_file)
			trace_open(opts.trace_file);
	} else if (strcmp(a[0], "off") == 0) {
		trace_close();
	} else {
		return -EINVAL;
	}
	return reply_str(r, "OK");
}

static int ctl_logfile(struct req *r, const char **a, unsigned int n)
{
	char *f;
	int ret;

	if (n != 1)
		return -EINVAL;
	f = talloc_strdup(xsd_ctx, a[0]);
	if (!f)
		return -ENOMEM;
	ret = trace_open(f);
	if (ret < 0) {
		talloc_free(f);
		return ret;
	}
	opts.trace_file = f;
	return reply_str(r, "OK");
}

static int ctl_memreport(struct req *r, const char **a, unsigned int n)
{
	FILE *f;

	if (n > 1)
		return -EINVAL;
	if (n == 1) {
		f = fopen(a[0], "a");
		if (!f)
			return -errno;
	} else {
		if (!opts.trace_file)
			return -EBADF;
		f = fopen(opts.trace_file, "a");
		if (!f)
			return -errno;
	}
	fprintf(f, "xstored memory report: %lu nodes, %lu connections\n", node_count(),
		conn_total());
	talloc_report_full(xsd_ctx, f);
	fclose(f);
	return reply_str(r, "OK");
}

static int ctl_print(struct req *r, const char **a, unsigned int n)
{
	if (n != 1)
		return -EINVAL;
	trace_printf("control: %s\n", a[0]);
	return reply_str(r, "OK");
}

static int quota_report(struct req *r, bool soft)
{
	char *s = talloc_strdup(r->ctx, "Quota settings:\n");

	for (int i = 0; i < Q_COUNT && s; i++) {
		if (soft && !quotas[i].soft)
			continue;
		const char *lvl =
		    i == Q_MEMORY ? (soft ? " (warning level)" : " (error level)") : "";
		s = talloc_asprintf_append(s, "%-17s: %8d %s%s\n", quotas[i].name,
					   soft ? quotas[i].soft : quotas[i].hard, quotas[i].descr,
					   lvl);
	}
	return s ? reply_str(r, s) : -ENOMEM;
}

static int quota_set(const char **a, unsigned int n, bool soft)
{
	int q, val;

	if (n != 3 || strcmp(a[0], "set") != 0)
		return -EINVAL;
	q = quota_by_name(a[1]);
	val = atoi(a[2]);
	if (q < 0 || val < 1 || (soft && !quotas[q].soft))
		return -EINVAL;
	if (soft)
		quotas[q].soft = val;
	else
		quotas[q].hard = val;
	return 0;
}

static int ctl_quota(struct req *r, const char **a, unsigned int n)
{
	int ret;

	if (n == 0)
		return quota_report(r, false);
	if (n == 1) {
		unsigned int domid = (unsigned int)atoi(a[0]);
		struct domain *d = domain_get(domid);
		struct conn *c;
		char *s;

		if (!d || (domid != 0 && !d->introduced))
			return -ENOENT;
		c = d->conn;
		s = talloc_asprintf(r->ctx,
				    "Domain %u:\n%-16s: %8d\n%-16s: %8u\n%-16s: %8u\n%-16s: %8u\n"
				    "%-16s: %8ld\n",
				    domid, "nodes", d->nodes, "watches", c ? c->nwatches : 0,
				    "transactions", c ? c->ntxns : 0, "outstanding",
				    c ? c->out_count : 0, "memory", d->memory);
		return s ? reply_str(r, s) : -ENOMEM;
	}
	ret = quota_set(a, n, false);
	return ret < 0 ? ret : reply_str(r, "OK");
}

static int ctl_quota_soft(struct req *r, const char **a, unsigned int n)
{
	int ret;

	if (n == 0)
		return quota_report(r, true);
	ret = quota_set(a, n, true);
	return ret < 0 ? ret : reply_str(r, "OK");
}

static int ctl_help(struct req *r, const char **a, unsigned int n)
{
	if (n != 0)
		return -EINVAL;
	return reply_str(r, help_text);
}

static int parse_domid(const char *s, struct domain **out)
{
	char *end;
	unsigned long v;

	errno = 0;
	v = strtoul(s, &end, 10);
	if (errno || end == s || *end || v > 0xffff)
		return -EINVAL;
	*out = domain_get((unsigned int)v);
	if (!*out || !(*out)->introduced || !(*out)->conn)
		return -ENOENT;
	return 0;
}

struct watch_list {
	char *buf;
	size_t len;
	unsigned int skip, listed;
	bool full;
};

static int list_one(void *arg, const char *orig, const char *token)
{
	struct watch_list *l = arg;
	size_t pl = strlen(orig) + 1, tl = strlen(token) + 1;

	if (l->skip) {
		l->skip--;
		return 0;
	}
	if (l->full || l->len + pl + tl > XS_PAYLOAD_MAX) {
		l->full = true;
		return 0;
	}
	memcpy(l->buf + l->len, orig, pl);
	memcpy(l->buf + l->len + pl, token, tl);
	l->len += pl + tl;
	l->listed++;
	return 0;
}

/* domain-watches DOMID [START]: the domain connection's watches, oldest first, as
 * "path\0token\0" pairs (paths as the guest registered them), from the START-th on, as
 * many as fit one reply; an empty path ("\0", never a watch's) ends the list, in the
 * reply that holds its last watch when there is room, else alone in the next one. */
static int ctl_domain_watches(struct req *r, const char **a, unsigned int n)
{
	struct watch_list l = { 0 };
	struct domain *d;
	char *end;
	int ret;

	if (n != 1 && n != 2)
		return -EINVAL;
	ret = parse_domid(a[0], &d);
	if (ret < 0)
		return ret;
	if (n == 2) {
		errno = 0;
		l.skip = (unsigned int)strtoul(a[1], &end, 10);
		if (errno || end == a[1] || *end)
			return -EINVAL;
	}
	l.buf = talloc_size(r->ctx, XS_PAYLOAD_MAX);
	if (!l.buf)
		return -ENOMEM;
	ret = watch_visit(d->conn, list_one, &l);
	if (ret < 0)
		return ret;
	if (l.full && l.listed == 0)
		return -E2BIG;
	if (!l.full && l.len < XS_PAYLOAD_MAX)
		l.buf[l.len++] = '\0';
	return reply(r, l.buf, l.len);
}

/* domain-watch DOMID PATH TOKEN: registers a watch on the domain's connection exactly
 * as if the guest had sent XS_WATCH (its quota, its relative paths, the initial event
 * queued to it). */
static int ctl_domain_watch(struct req *r, const char **a, unsigned int n)
{
	struct domain *d;
	char *path, *ev;
	size_t pl, tl;
	int ret;

	if (n != 3)
		return -EINVAL;
	ret = parse_domid(a[0], &d);
	if (ret < 0)
		return ret;
	ret = path_canon(d->conn, a[1], true, r->ctx, &path);
	if (ret < 0)
		return ret;
	ret = watch_add(d->conn, path, a[1], a[2]);
	if (ret < 0)
		return ret;
	pl = strlen(a[1]) + 1;
	tl = strlen(a[2]) + 1;
	ev = talloc_size(r->ctx, pl + tl);
	if (!ev)
		return -ENOMEM;
	memcpy(ev, a[1], pl);
	memcpy(ev + pl, a[2], tl);
	ret = conn_queue(d->conn, XS_WATCH_EVENT, 0, 0, ev, pl + tl, true);
	if (ret < 0)
		return ret;
	return reply_ok(r);
}

static const struct {
	const char *name;
	int (*fn)(struct req *r, const char **a, unsigned int n);
} ctls[] = {
    {"check", ctl_check},
    {"log", ctl_log},
    {"live-update", lu_control},
    {"logfile", ctl_logfile},
    {"memreport", ctl_memreport},
    {"print", ctl_print},
    {"quota", ctl_quota},
    {"quota-soft", ctl_quota_soft},
    {"help", ctl_help},
    {"dump-state", lu_dump_control}, /* xst: write the live-update stream to a file */
    {"domain-watches", ctl_domain_watches}, /* xst: a guest's watches (migration) */
    {"domain-watch", ctl_domain_watch},     /* xst: register one for a guest */
};

int do_control(struct req *r)
{
	const char *v[MAX_ARGS + 1];
	unsigned int n = req_strings(r, v, MAX_ARGS + 1);

	if (n == 0)
		return -EINVAL;
	if (n > MAX_ARGS + 1)
		n = MAX_ARGS + 1;
	for (unsigned int i = 0; i < sizeof(ctls) / sizeof(ctls[0]); i++)
		if (strcmp(ctls[i].name, v[0]) == 0)
			return ctls[i].fn(r, v + 1, n - 1);
	return -EINVAL;
}

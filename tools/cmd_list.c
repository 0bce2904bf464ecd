/* Queries: list, vcpu-list, info, uptime, top, dmesg, debug-keys. */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <talloc.h>

#include "tools/xst.h"

static int list_domains(void *ctx, const char *dom, Xstagent__DomainList **out)
{
	Xstagent__Request req = XSTAGENT__REQUEST__INIT;
	Xstagent__ListReq lr = XSTAGENT__LIST_REQ__INIT;
	Xstagent__Reply *rep;

	lr.dom = (char *)dom;
	req.body_case = XSTAGENT__REQUEST__BODY_LIST;
	req.list = &lr;
	if (xst_call(ctx, &req, &rep) < 0)
		return -1;
	if (rep->body_case != XSTAGENT__REPLY__BODY_DOMAINS)
		return -EPROTO;
	*out = rep->domains;
	return 0;
}

/* All domains, or those named on the command line, in order. */
static int collect(void *ctx, int argc, char **argv, int first, Xstagent__Domain ***doms, size_t *n)
{
	Xstagent__DomainList *l;
	int i;

	if (first >= argc) {
		if (list_domains(ctx, NULL, &l) < 0)
			return -1;
		*doms = l->domain;
		*n = l->n_domain;
		return 0;
	}
	*doms = talloc_array(ctx, Xstagent__Domain *, argc - first);
	*n = 0;
	if (!*doms)
		return -ENOMEM;
	for (i = first; i < argc; i++) {
		if (list_domains(ctx, argv[i], &l) < 0)
			return -1;
		(*doms)[(*n)++] = l->domain[0];
	}
	return 0;
}

static void json_domain(struct xst_json *j, const Xstagent__Domain *d)
{
	xst_json_map_open(j);
	xst_json_kv_uint(j, "domid", d->domid);
	xst_json_kv_string(j, "name", d->name);
	xst_json_kv_string(j, "uuid", d->uuid);
	xst_json_kv_uint(j, "mem_kib", d->mem_kib);
	xst_json_kv_uint(j, "target_kib", d->target_kib);
	xst_json_kv_uint(j, "maxmem_kib", d->maxmem_kib);
	xst_json_kv_uint(j, "vcpus", d->vcpus_online);
	xst_json_kv_uint(j, "maxvcpus", d->vcpus_max);
	xst_json_kv_string(j, "state", d->state);
	if (d->has_shutdown_reason)
		xst_json_kv_uint(j, "shutdown_reason", d->shutdown_reason);
	xst_json_kv_double(j, "cpu_time", d->cpu_time);
	xst_json_kv_uint(j, "start_time", d->start_time);
	xst_json_kv_string(j, "pool", d->pool);
	xst_json_kv_uint(j, "weight", d->weight);
	xst_json_kv_uint(j, "cap", d->cap);
	xst_json_kv_string(j, "core", d->core);
	xst_json_kv_uint(j, "pid", d->pid);
	xst_json_key(j, "config");
	xst_json_config(j, d->config);
	xst_json_map_close(j);
}

int cmd_list(void *ctx, int argc, char **argv)
{
	Xstagent__Domain **doms;
	bool lng = false;
	size_t n, i;
	int opt;

	optind = 1;
	opterr = 0;
	while ((opt = getopt(argc, argv, "+lv")) != -1) {
		switch (opt) {
		case 'l':
			lng = true;
			break;
		case 'v':
			break;
		default:
			return xst_usage("unknown option \"%s\"", argv[optind - 1]);
		}
	}
	if (collect(ctx, argc, argv, optind, &doms, &n) < 0)
		return 1;
	if (xst_json || lng) {
		struct xst_json *j;

		if (xst_json_new(ctx, true, &j) < 0)
			return xst_err("out of memory");
		xst_json_array_open(j);
		for (i = 0; i < n; i++)
			json_domain(j, doms[i]);
		xst_json_array_close(j);
		return xst_json_print(j);
	}
	printf("Name                                        ID   Mem VCPUs\tState\tTime(s)\n");
	for (i = 0; i < n; i++)
		printf("%-40s %5u %5lu %5u     %s  %8.1f\n", doms[i]->name, doms[i]->domid,
		       (unsigned long)(doms[i]->mem_kib / 1024), doms[i]->vcpus_online,
		       doms[i]->state, doms[i]->cpu_time);
	return 0;
}

int cmd_vcpu_list(void *ctx, int argc, char **argv)
{
	Xstagent__Domain **doms;
	struct xst_json *j = NULL;
	size_t n, i, k;

	if (collect(ctx, argc, argv, 1, &doms, &n) < 0)
		return 1;
	if (xst_json) {
		if (xst_json_new(ctx, true, &j) < 0)
			return xst_err("out of memory");
		xst_json_array_open(j);
	} else {
		printf("Name                                ID  VCPU   CPU State   Time(s) "
		       "Affinity (Hard / Soft)\n");
	}
	for (i = 0; i < n; i++) {
		Xstagent__Reply *rep;
		char id[16];

		if (doms[i]->domid == 0)
			continue; /* the host's cpus are not vcpus of a domain */
		snprintf(id, sizeof(id), "%u", doms[i]->domid);
		if (xst_call_dom(ctx, XSTAGENT__REQUEST__BODY_VCPU_LIST, id, &rep) < 0)
			return 1;
		for (k = 0; k < rep->vcpus->n_vcpu; k++) {
			Xstagent__Vcpu *v = rep->vcpus->vcpu[k];
			const char *st = !v->online ? "--p" : v->running ? "r--" : "-b-";

			if (j) {
				xst_json_map_open(j);
				xst_json_kv_string(j, "name", v->name);
				xst_json_kv_uint(j, "domid", v->domid);
				xst_json_kv_uint(j, "vcpu", v->id);
				xst_json_kv_bool(j, "online", v->online);
				xst_json_kv_bool(j, "running", v->running);
				xst_json_kv_double(j, "cpu_time", v->cpu_time);
				xst_json_kv_string(j, "affinity", v->affinity);
				if (v->effective)
					xst_json_kv_string(j, "effective", v->effective);
				xst_json_map_close(j);
			} else {
				printf("%-32s %5u %5u %5s %-5s %9.1f  %s / all\n", v->name,
				       v->domid, v->id, "-", st, v->cpu_time, v->affinity);
			}
		}
	}
	if (j) {
		xst_json_array_close(j);
		return xst_json_print(j);
	}
	return 0;
}

int cmd_info(void *ctx, int argc, char **argv)
{
	Xstagent__Request req = XSTAGENT__REQUEST__INIT;
	Xstagent__Empty e = XSTAGENT__EMPTY__INIT;
	Xstagent__Reply *rep;
	Xstagent__HostInfo *h;

	if (argc != 1)
		return xst_usage("unexpected argument \"%s\"", argv[1]);
	req.body_case = XSTAGENT__REQUEST__BODY_INFO;
	req.info = &e;
	if (xst_call(ctx, &req, &rep) < 0)
		return 1;
	h = rep->info;
	if (xst_json) {
		struct xst_json *j;

		if (xst_json_new(ctx, true, &j) < 0)
			return xst_err("out of memory");
		xst_json_map_open(j);
		xst_json_kv_string(j, "host", h->host);
		xst_json_kv_string(j, "release", h->release);
		xst_json_kv_string(j, "machine", h->machine);
		xst_json_kv_uint(j, "nr_cpus", h->nr_cpus);
		xst_json_kv_uint(j, "total_memory", h->total_memory_mib);
		xst_json_kv_uint(j, "free_memory", h->free_memory_mib);
		xst_json_kv_string(j, "core", h->core);
		xst_json_kv_string(j, "scheduler", h->scheduler);
		xst_json_kv_uint(j, "nr_domains", h->nr_domains);
		xst_json_kv_uint(j, "agent_start_time", h->agent_start_time);
		xst_json_kv_string(j, "version", h->version);
		xst_json_map_close(j);
		return xst_json_print(j);
	}
	printf("host                   : %s\n", h->host);
	printf("release                : %s\n", h->release);
	printf("machine                : %s\n", h->machine);
	printf("nr_cpus                : %u\n", h->nr_cpus);
	printf("total_memory           : %llu\n", (unsigned long long)h->total_memory_mib);
	printf("free_memory            : %llu\n", (unsigned long long)h->free_memory_mib);
	printf("xst_core               : %s\n", h->core);
	printf("xen_scheduler          : %s\n", h->scheduler);
	printf("nr_domains             : %u\n", h->nr_domains);
	printf("xst_version            : %s\n", h->version);
	return 0;
}

static void fmt_uptime(uint64_t secs, char *buf, size_t len)
{
	uint64_t days = secs / 86400;

	secs %= 86400;
	if (days)
		snprintf(buf, len, "%llu day%s, %2llu:%02llu:%02llu", (unsigned long long)days,
			 days == 1 ? "" : "s", (unsigned long long)(secs / 3600),
			 (unsigned long long)(secs / 60 % 60), (unsigned long long)(secs % 60));
	else
		snprintf(buf, len, "%llu:%02llu:%02llu", (unsigned long long)(secs / 3600),
			 (unsigned long long)(secs / 60 % 60), (unsigned long long)(secs % 60));
}

int cmd_uptime(void *ctx, int argc, char **argv)
{
	Xstagent__Domain **doms;
	struct xst_json *j = NULL;
	uint64_t now = (uint64_t)time(NULL);
	size_t n, i;

	if (collect(ctx, argc, argv, 1, &doms, &n) < 0)
		return 1;
	if (xst_json) {
		if (xst_json_new(ctx, true, &j) < 0)
			return xst_err("out of memory");
		xst_json_array_open(j);
	} else {
		printf("Name                                ID Uptime\n");
	}
	for (i = 0; i < n; i++) {
		uint64_t up = now > doms[i]->start_time ? now - doms[i]->start_time : 0;
		char buf[64];

		if (j) {
			xst_json_map_open(j);
			xst_json_kv_string(j, "name", doms[i]->name);
			xst_json_kv_uint(j, "domid", doms[i]->domid);
			xst_json_kv_uint(j, "uptime", up);
			xst_json_map_close(j);
		} else {
			fmt_uptime(up, buf, sizeof(buf));
			printf("%-33s %4u %s\n", doms[i]->name, doms[i]->domid, buf);
		}
	}
	if (j) {
		xst_json_array_close(j);
		return xst_json_print(j);
	}
	return 0;
}

/* One `top` sample: the domains and when they were read. */
struct top_sample {
	Xstagent__Domain **doms;
	size_t n;
	double when; /* CLOCK_MONOTONIC seconds */
};

static double mono_now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int top_sample(void *ctx, int argc, char **argv, struct top_sample *s)
{
	if (collect(ctx, argc, argv, argc, &s->doms, &s->n) < 0)
		return -1;
	s->when = mono_now();
	return 0;
}

/* CPU% of d over the interval since `prev` (0 when d is new: no earlier sample). */
static double top_cpu_pct(const Xstagent__Domain *d, const struct top_sample *prev, double now)
{
	double dt = now - prev->when;
	size_t i;

	for (i = 0; i < prev->n; i++) {
		const Xstagent__Domain *p = prev->doms[i];

		if (p->domid != d->domid || dt <= 0 || d->cpu_time < p->cpu_time)
			continue;
		return (d->cpu_time - p->cpu_time) / dt * 100.0;
	}
	return 0.0;
}

static int top_print(void *ctx, const struct top_sample *cur, const struct top_sample *prev,
		     uint64_t host_kib)
{
	size_t i;

	if (xst_json) {
		struct xst_json *j;

		if (xst_json_new(ctx, true, &j) < 0)
			return xst_err("out of memory");
		xst_json_array_open(j);
		for (i = 0; i < cur->n; i++) {
			const Xstagent__Domain *d = cur->doms[i];

			xst_json_map_open(j);
			xst_json_kv_string(j, "name", d->name);
			xst_json_kv_uint(j, "domid", d->domid);
			xst_json_kv_string(j, "state", d->state);
			xst_json_kv_double(j, "cpu_sec", d->cpu_time);
			xst_json_kv_double(j, "cpu_pct", top_cpu_pct(d, prev, cur->when));
			xst_json_kv_uint(j, "mem_kib", d->mem_kib);
			xst_json_kv_uint(j, "maxmem_kib", d->maxmem_kib);
			xst_json_kv_uint(j, "vcpus", d->vcpus_online);
			xst_json_map_close(j);
		}
		xst_json_array_close(j);
		return xst_json_print(j) ? -1 : 0;
	}
	printf("      NAME  STATE   CPU(sec) CPU(%%)     MEM(k) MEM(%%)  MAXMEM(k) MAXMEM(%%) "
	       "VCPUS\n");
	for (i = 0; i < cur->n; i++) {
		const Xstagent__Domain *d = cur->doms[i];
		double mem_pct = host_kib ? (double)d->mem_kib * 100.0 / (double)host_kib : 0.0;
		double max_pct = host_kib ? (double)d->maxmem_kib * 100.0 / (double)host_kib : 0.0;

		printf("%10.10s %6s %10.0f %6.1f %10llu %6.1f %10llu %9.1f %5u\n", d->name,
		       d->state, d->cpu_time, top_cpu_pct(d, prev, cur->when),
		       (unsigned long long)d->mem_kib, mem_pct, (unsigned long long)d->maxmem_kib,
		       max_pct, d->vcpus_online);
	}
	fflush(stdout);
	return 0;
}

/* xentop's batch mode: every DELAY seconds print the domains with CPU% over that interval. */
int cmd_top(void *ctx, int argc, char **argv)
{
	Xstagent__Request req = XSTAGENT__REQUEST__INIT;
	Xstagent__Empty e = XSTAGENT__EMPTY__INIT;
	Xstagent__Reply *rep;
	struct top_sample prev, cur;
	void *pctx, *cctx;
	uint64_t iters = 1, host_kib = 0, k;
	double delay = 3.0;
	bool batch = false;
	char *end;
	int opt;

	optind = 1;
	opterr = 0;
	while ((opt = getopt(argc, argv, "+bi:d:")) != -1) {
		switch (opt) {
		case 'b':
			batch = true;
			break;
		case 'i':
			if (xst_parse_uint(optarg, 1000000, &iters) < 0 || iters == 0)
				return xst_usage("bad iteration count \"%s\"", optarg);
			break;
		case 'd':
			errno = 0;
			delay = strtod(optarg, &end);
			if (errno || end == optarg || *end || !(delay > 0) || delay > 86400)
				return xst_usage("bad delay \"%s\"", optarg);
			break;
		default:
			return xst_usage("unknown option \"%s\"", argv[optind - 1]);
		}
	}
	if (!batch)
		return xst_usage("only batch mode (-b) is supported");
	if (optind != argc)
		return xst_usage("unexpected argument \"%s\"", argv[optind]);
	req.body_case = XSTAGENT__REQUEST__BODY_INFO;
	req.info = &e;
	if (xst_call(ctx, &req, &rep) < 0)
		return 1;
	if (rep->body_case == XSTAGENT__REPLY__BODY_INFO)
		host_kib = rep->info->total_memory_mib * 1024;
	pctx = talloc_new(ctx);
	if (!pctx || top_sample(pctx, argc, argv, &prev) < 0)
		return 1;
	for (k = 0; k < iters; k++) {
		struct timespec ts;

		ts.tv_sec = (time_t)delay;
		ts.tv_nsec = (long)((delay - (double)ts.tv_sec) * 1e9);
		while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
			;
		cctx = talloc_new(ctx);
		if (!cctx || top_sample(cctx, argc, argv, &cur) < 0)
			return 1;
		if (top_print(cctx, &cur, &prev, host_kib) < 0)
			return 1;
		talloc_free(pctx);
		pctx = cctx;
		prev = cur;
	}
	return 0;
}

static int text_query(void *ctx, int argc, char **argv, Xstagent__Request__BodyCase body)
{
	Xstagent__Request req = XSTAGENT__REQUEST__INIT;
	Xstagent__Empty e = XSTAGENT__EMPTY__INIT;
	Xstagent__Reply *rep;

	req.body_case = body;
	if (body == XSTAGENT__REQUEST__BODY_DMESG)
		req.dmesg = &e;
	else
		req.debug_keys = &e;
	if (xst_call(ctx, &req, &rep) < 0)
		return 1;
	if (xst_json) {
		struct xst_json *j;

		if (xst_json_new(ctx, true, &j) < 0)
			return xst_err("out of memory");
		xst_json_map_open(j);
		xst_json_kv_string(j, "text", rep->text);
		xst_json_map_close(j);
		return xst_json_print(j);
	}
	fputs(rep->text, stdout);
	return 0;
}

int cmd_dmesg(void *ctx, int argc, char **argv)
{
	if (argc > 2 || (argc == 2 && strcmp(argv[1], "-c") != 0))
		return xst_usage("unexpected argument \"%s\"", argv[1]);
	return text_query(ctx, argc, argv, XSTAGENT__REQUEST__BODY_DMESG);
}

int cmd_debug_keys(void *ctx, int argc, char **argv)
{
	return text_query(ctx, argc, argv, XSTAGENT__REQUEST__BODY_DEBUG_KEYS);
}

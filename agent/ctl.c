/*
 * The CLI protocol (proto/agent.proto): one dispatch table indexed by the Request
 * oneof case.  Each handler fills the Reply body; on failure it returns -errno and sets
 * a one-line message.  Everything a handler allocates hangs off the per-request
 * context, freed after the reply is sent.
 */
#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/utsname.h>
#include <time.h>
#include <unistd.h>

#include <talloc.h>

#include "agent/agent.h"
#include "proto/rpc.h"
#include "store/xs_client.h"
#include "tools/xlcfg.h"

struct call {
	struct agent *a;
	const Xstagent__Request *req;
	Xstagent__Reply *rep;
	void *ctx;
};

static int fail(struct call *c, int err, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int fail(struct call *c, int err, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	c->rep->message = talloc_vasprintf(c->ctx, fmt, ap);
	va_end(ap);
	return err;
}

static struct adom *lookup(struct call *c, const char *ref, int *err)
{
	struct adom *d = adom_find(c->a, ref);

	*err = 0;
	if (!d) {
		if (strcmp(ref, "0") == 0 || strcmp(ref, "Domain-0") == 0)
			*err = fail(c, -EPERM, "domain 0 (Domain-0) is the host: not supported");
		else
			*err = fail(c, -ENOENT, "domain \"%s\" does not exist", ref);
	}
	return d;
}

#define LOOKUP(c, ref)                                                                        \
	struct adom *d;                                                                       \
	int rv;                                                                               \
	d = lookup(c, ref, &rv);                                                              \
	if (!d)                                                                               \
		return rv;

static bool name_valid(const char *n)
{
	size_t i;

	if (!n[0] || strlen(n) > 64 || isdigit((unsigned char)n[0]) || strchr(n, '/'))
		return false;
	for (i = 0; n[i]; i++)
		if (!isprint((unsigned char)n[i]) || isspace((unsigned char)n[i]))
			return false;
	return true;
}

static uint64_t meminfo_mib(const char *key)
{
	char line[256];
	unsigned long long kb = 0;
	FILE *f = fopen("/proc/meminfo", "re");
	size_t kl = strlen(key);

	if (!f)
		return 0;
	while (fgets(line, sizeof(line), f))
		if (strncmp(line, key, kl) == 0 && line[kl] == ':') {
			sscanf(line + kl + 1, "%llu", &kb);
			break;
		}
	fclose(f);
	return kb / 1024;
}

static Xstagent__DomainConfig *dom0_config(void *ctx)
{
	Xstagent__DomainConfig *c = talloc_zero(ctx, Xstagent__DomainConfig);

	if (!c)
		return NULL;
	xstagent__domain_config__init(c);
	c->name = "Domain-0";
	c->type = "pv";
	c->pool = "Pool-0";
	c->on_poweroff = c->on_reboot = c->on_crash = "destroy";
	c->on_soft_reset = "soft-reset";
	c->core = "host";
	c->cpu_weight = 256;
	return c;
}

/* Domain-0: the host itself, shown like xl shows dom0. */
static Xstagent__Domain *dom0_entry(struct agent *a, void *ctx)
{
	Xstagent__Domain *m = talloc_zero(ctx, Xstagent__Domain);

	if (!m)
		return NULL;
	xstagent__domain__init(m);
	m->domid = 0;
	m->name = "Domain-0";
	m->uuid = "00000000-0000-0000-0000-000000000000";
	m->mem_kib = m->target_kib = m->maxmem_kib = meminfo_mib("MemTotal") * 1024;
	m->vcpus_online = m->vcpus_max = a->nr_cpus;
	m->state = "r-----";
	m->cpu_time = 0;
	m->start_time = a->start_time;
	m->pool = "Pool-0";
	m->weight = 256;
	m->core = "host";
	m->pid = (uint32_t)getpid();
	m->config = dom0_config(ctx);
	m->config->vcpus = m->config->maxvcpus = a->nr_cpus;
	m->config->memory_mib = m->config->maxmem_mib = m->mem_kib / 1024;
	return m;
}

static Xstagent__Domain *dom_entry(struct adom *d, void *ctx)
{
	Xstagent__Domain *m = talloc_zero(ctx, Xstagent__Domain);
	Xstdom__Info *info = NULL;
	char *letters = talloc_size(ctx, 8);

	if (!m || !letters)
		return NULL;
	xstagent__domain__init(m);
	if (adom_info(d, ctx, &info) < 0)
		info = NULL;
	m->domid = d->domid;
	m->name = d->name;
	m->uuid = d->uuid_str;
	m->state = (char *)adom_state_letters(d, info, letters);
	if (info) {
		m->mem_kib = info->mem_kib;
		m->target_kib = info->mem_target_kib;
		m->maxmem_kib = info->mem_max_kib;
		m->vcpus_online = info->vcpus_online;
		m->vcpus_max = info->vcpus_max;
		m->cpu_time = (double)info->cpu_time_ns / 1e9;
		m->start_time = info->start_time_ns / 1000000000ull;
		m->core = info->core;
		if (info->state == XSTDOM__VM_STATE__SHUTDOWN && info->has_shutdown_reason) {
			m->has_shutdown_reason = true;
			m->shutdown_reason = info->shutdown_reason;
		}
	} else {
		m->core = "";
	}
	m->pool = d->cfg->pool;
	m->weight = d->weight;
	m->cap = d->cap;
	m->pid = d->pid > 0 ? (uint32_t)d->pid : 0;
	m->config = d->cfg;
	m->console_path = d->console_path;
	return m;
}

static int reply_domains(struct call *c, Xstagent__Domain **doms, size_t n)
{
	Xstagent__DomainList *l = talloc_zero(c->ctx, Xstagent__DomainList);

	if (!l)
		return -ENOMEM;
	xstagent__domain_list__init(l);
	l->domain = doms;
	l->n_domain = n;
	c->rep->body_case = XSTAGENT__REPLY__BODY_DOMAINS;
	c->rep->domains = l;
	return 0;
}

/* The remembered domains destroyed on a guest shutdown, oldest first. */
static int reply_gone(struct call *c, Xstagent__DomainList *l)
{
	struct agent *a = c->a;
	unsigned int i, k;

	l->gone = talloc_array(c->ctx, Xstagent__GoneDomain *, AGENT_GONE_KEEP);
	if (!l->gone)
		return -ENOMEM;
	for (i = 0; i < AGENT_GONE_KEEP; i++) {
		Xstagent__GoneDomain *g;

		k = (a->gone_next + i) % AGENT_GONE_KEEP;
		if (a->gone[k].domid == 0)
			continue;
		g = talloc(c->ctx, Xstagent__GoneDomain);
		if (!g)
			return -ENOMEM;
		xstagent__gone_domain__init(g);
		g->domid = a->gone[k].domid;
		g->reason = (uint32_t)a->gone[k].reason;
		l->gone[l->n_gone++] = g;
	}
	return 0;
}

/* The CLI checks configs (tools/xlcfg.c), but any client may send one: check again
 * everything that sizes an allocation or reaches the domain process. */
static int config_check(struct call *c, const Xstagent__DomainConfig *cf)
{
	static const char *const types[] = { "pvh", "hvm", "pv" };
	static const char *const cores[] = { "auto", "sim", "kvm" };
	const char *acts[4] = { cf->on_poweroff, cf->on_reboot, cf->on_crash, cf->on_soft_reset };
	uint64_t map[16];
	unsigned int hi, i;
	bool ok;

	if (cf->maxvcpus < 1 || cf->maxvcpus > 128 || cf->vcpus < 1 || cf->vcpus > cf->maxvcpus)
		return fail(c, -EINVAL, "vcpus %u / maxvcpus %u out of range (1 <= vcpus <= "
					"maxvcpus <= 128)", cf->vcpus, cf->maxvcpus);
	if (cf->memory_mib < 1 || cf->maxmem_mib > (1ull << 24) || cf->memory_mib > cf->maxmem_mib)
		return fail(c, -EINVAL, "memory %llu / maxmem %llu MiB out of range",
			    (unsigned long long)cf->memory_mib, (unsigned long long)cf->maxmem_mib);
	if (cf->cpu_weight < 1 || cf->cpu_weight > 65535 || cf->cpu_cap > 100 * cf->maxvcpus)
		return fail(c, -EINVAL, "cpu_weight %u / cpu_cap %u out of range", cf->cpu_weight,
			    cf->cpu_cap);
	if (cf->cpus && xlcfg_cpulist_parse(cf->cpus, map, &hi) < 0)
		return fail(c, -EINVAL, "invalid cpu list \"%s\"", cf->cpus);
	for (i = 0; i < 4; i++)
		if (!xlcfg_action_valid(acts[i]))
			return fail(c, -EINVAL, "unknown action \"%s\"", acts[i]);
	for (ok = false, i = 0; i < 3; i++)
		ok |= strcmp(cf->type, types[i]) == 0;
	if (!ok)
		return fail(c, -EINVAL, "unknown type \"%s\"", cf->type);
	for (ok = false, i = 0; i < 3; i++)
		ok |= strcmp(cf->core, cores[i]) == 0;
	if (!ok)
		return fail(c, -EINVAL, "unknown core \"%s\"", cf->core);
	return 0;
}

static int h_create(struct call *c)
{
	const Xstagent__Create *cr = c->req->create;
	Xstagent__Domain **one;
	struct adom *d;
	char *msg = NULL;
	int rv;

	if (!name_valid(cr->config->name))
		return fail(c, -EINVAL, "invalid domain name \"%s\"", cr->config->name);
	if (cr->config->has_uuid && cr->config->uuid.len != 16)
		return fail(c, -EINVAL, "uuid must be 16 bytes");
	rv = config_check(c, cr->config);
	if (rv < 0)
		return rv;
	rv = adom_create(c->a, cr->config, cr->has_paused && cr->paused ? ADOM_PAUSED : 0, &d, &msg,
			 c->ctx);
	if (rv < 0)
		return fail(c, rv, "%s", msg ? msg : strerror(-rv));
	one = talloc_array(c->ctx, Xstagent__Domain *, 1);
	if (!one || !(one[0] = dom_entry(d, c->ctx)))
		return -ENOMEM;
	return reply_domains(c, one, 1);
}

static int h_destroy(struct call *c)
{
	char *msg = NULL;
	LOOKUP(c, c->req->destroy->dom);
	return adom_destroy(d, &msg, c->ctx);
}

static int h_shutdown(struct call *c)
{
	const Xstagent__Shutdown *s = c->req->shutdown;
	bool reboot = s->has_reboot && s->reboot;
	char *path, *msg = NULL;
	LOOKUP(c, s->dom);
	if (d->state == ADOM_PRESERVED)
		return fail(c, -EINVAL, "domain %u (%s) is already shut down", d->domid, d->name);
	if (s->has_force && s->force) {
		Xstdom__Request req = XSTDOM__REQUEST__INIT;
		Xstdom__Shutdown sd = XSTDOM__SHUTDOWN__INIT;
		Xstdom__Reply *rep;

		sd.reason = reboot ? XSTDOM__SHUTDOWN_REASON__REBOOT
				   : XSTDOM__SHUTDOWN_REASON__POWEROFF;
		req.body_case = XSTDOM__REQUEST__BODY_SHUTDOWN;
		req.shutdown = &sd;
		rv = adom_call(d, &req, AGENT_CALL_MS, c->ctx, &rep, &msg);
		if (rv < 0)
			return fail(c, rv, "%s", msg);
		agent_log(c->a, "domain %u (%s): hard %s", d->domid, d->name,
			  reboot ? "reboot" : "shutdown");
		return 0;
	}
	/* Ask the guest, as libxl does for PV-aware guests. */
	path = talloc_asprintf(c->ctx, "/local/domain/%u/control/shutdown", d->domid);
	if (!path)
		return -ENOMEM;
	rv = layout_xs_write(c->a, path, reboot ? "reboot" : "poweroff");
	if (rv < 0)
		return fail(c, rv, "writing %s: %s", path, strerror(-rv));
	agent_log(c->a, "domain %u (%s): %s requested", d->domid, d->name,
		  reboot ? "reboot" : "shutdown");
	return 0;
}

static int simple_call(struct call *c, struct adom *d, Xstdom__Request *req)
{
	Xstdom__Reply *rep;
	char *msg = NULL;
	int rv = adom_call(d, req, AGENT_CALL_MS, c->ctx, &rep, &msg);

	if (rv < 0)
		return fail(c, rv, "%s", msg ? msg : strerror(-rv));
	return 0;
}

static int h_pause(struct call *c, bool pause)
{
	Xstdom__Request req = XSTDOM__REQUEST__INIT;
	Xstdom__Empty e = XSTDOM__EMPTY__INIT;
	LOOKUP(c, pause ? c->req->pause->dom : c->req->unpause->dom);
	if (pause) {
		req.body_case = XSTDOM__REQUEST__BODY_PAUSE;
		req.pause = &e;
	} else {
		req.body_case = XSTDOM__REQUEST__BODY_UNPAUSE;
		req.unpause = &e;
	}
	return simple_call(c, d, &req);
}

static int h_pause_on(struct call *c)
{
	return h_pause(c, true);
}

static int h_unpause(struct call *c)
{
	return h_pause(c, false);
}

static int h_rename(struct call *c)
{
	const Xstagent__Rename *r = c->req->rename;
	struct adom *other;
	char *old, *nn;
	LOOKUP(c, r->dom);
	if (!name_valid(r->new_name))
		return fail(c, -EINVAL, "invalid domain name \"%s\"", r->new_name);
	other = adom_find(c->a, r->new_name);
	if (other && other != d)
		return fail(c, -EEXIST, "domain name \"%s\" is already in use (domain %u)",
			    r->new_name, other->domid);
	nn = talloc_strdup(d, r->new_name);
	if (!nn)
		return -ENOMEM;
	old = d->name;
	d->name = nn;
	d->cfg->name = nn;
	rv = layout_xs_write(c->a, talloc_asprintf(c->ctx, "/local/domain/%u/name", d->domid), nn);
	if (rv == 0)
		rv = layout_xs_write(c->a, talloc_asprintf(c->ctx, "/vm/%s/name", d->uuid_str), nn);
	if (rv == 0)
		rv = adom_save_config(d);
	agent_log(c->a, "domain %u renamed %s -> %s", d->domid, old, nn);
	if (rv < 0)
		return fail(c, rv, "renamed, but recording it failed: %s", strerror(-rv));
	return 0;
}

static int h_list(struct call *c)
{
	const Xstagent__ListReq *l = c->req->list;
	Xstagent__Domain **doms;
	struct adom *d;
	size_t n = 0;
	int rv;

	doms = talloc_array(c->ctx, Xstagent__Domain *, c->a->ndoms + 1);
	if (!doms)
		return -ENOMEM;
	if (l->dom) {
		if (strcmp(l->dom, "0") == 0 || strcmp(l->dom, "Domain-0") == 0) {
			doms[n++] = dom0_entry(c->a, c->ctx);
		} else {
			d = lookup(c, l->dom, &rv);
			if (!d)
				return rv;
			doms[n++] = dom_entry(d, c->ctx);
		}
	} else {
		doms[n++] = dom0_entry(c->a, c->ctx);
		for (d = c->a->doms; d; d = d->next)
			doms[n++] = dom_entry(d, c->ctx);
	}
	for (size_t i = 0; i < n; i++)
		if (!doms[i])
			return -ENOMEM;
	rv = reply_domains(c, doms, n);
	if (rv < 0 || l->dom)
		return rv;
	return reply_gone(c, c->rep->domains);
}

static int h_mem(struct call *c, bool max)
{
	const Xstagent__MemSet *m = max ? c->req->mem_max : c->req->mem_set;
	Xstdom__Request req = XSTDOM__REQUEST__INIT;
	Xstdom__MemSet ms = XSTDOM__MEM_SET__INIT;
	char val[32];
	LOOKUP(c, m->dom);
	ms.kib = m->kib;
	if (max) {
		req.body_case = XSTDOM__REQUEST__BODY_MEM_MAX;
		req.mem_max = &ms;
	} else {
		req.body_case = XSTDOM__REQUEST__BODY_MEM_TARGET;
		req.mem_target = &ms;
	}
	rv = simple_call(c, d, &req);
	if (rv < 0)
		return rv;
	snprintf(val, sizeof(val), "%" PRIu64, m->kib);
	rv = layout_xs_write(c->a, talloc_asprintf(c->ctx, "/local/domain/%u/memory/%s", d->domid,
						   max ? "static-max" : "target"), val);
	if (rv < 0)
		return fail(c, rv, "writing memory/%s: %s", max ? "static-max" : "target",
			    strerror(-rv));
	agent_log(c->a, "domain %u: memory %s %" PRIu64 " KiB", d->domid, max ? "max" : "target",
		  m->kib);
	return 0;
}

static int h_mem_set(struct call *c)
{
	return h_mem(c, false);
}

static int h_mem_max(struct call *c)
{
	return h_mem(c, true);
}

static int h_vcpu_set(struct call *c)
{
	const Xstagent__VcpuSet *v = c->req->vcpu_set;
	Xstdom__Request req = XSTDOM__REQUEST__INIT;
	Xstdom__VcpusOnline vo = XSTDOM__VCPUS_ONLINE__INIT;
	unsigned int i;
	LOOKUP(c, v->dom);
	if (v->count == 0 || v->count > d->cfg->maxvcpus)
		return fail(c, -EINVAL, "domain %u has %u vcpus at most (maxvcpus); asked for %u",
			    d->domid, d->cfg->maxvcpus, v->count);
	vo.count = v->count;
	req.body_case = XSTDOM__REQUEST__BODY_VCPUS_ONLINE;
	req.vcpus_online = &vo;
	rv = simple_call(c, d, &req);
	if (rv < 0)
		return rv;
	for (i = 0; i < d->cfg->maxvcpus && rv == 0; i++)
		rv = layout_xs_write(c->a,
				     talloc_asprintf(c->ctx, "/local/domain/%u/cpu/%u/availability",
						     d->domid, i),
				     i < v->count ? "online" : "offline");
	if (rv < 0)
		return fail(c, rv, "writing cpu availability: %s", strerror(-rv));
	return 0;
}

static int h_vcpu_list(struct call *c)
{
	const char *ref = c->req->vcpu_list->dom;
	Xstdom__Reply *rep;
	Xstagent__VcpuList *l;
	char *msg = NULL;
	size_t i;
	LOOKUP(c, ref);
	rv = adom_call_empty(d, XSTDOM__REQUEST__BODY_VCPU_INFO, c->ctx, &rep, &msg);
	if (rv < 0)
		return fail(c, rv, "%s", msg);
	if (rep->body_case != XSTDOM__REPLY__BODY_VCPUS)
		return -EPROTO;
	l = talloc_zero(c->ctx, Xstagent__VcpuList);
	if (!l)
		return -ENOMEM;
	xstagent__vcpu_list__init(l);
	l->vcpu = talloc_array(c->ctx, Xstagent__Vcpu *, rep->vcpus->n_vcpu + 1);
	if (!l->vcpu)
		return -ENOMEM;
	for (i = 0; i < rep->vcpus->n_vcpu; i++) {
		Xstdom__VcpuInfo *vi = rep->vcpus->vcpu[i];
		Xstagent__Vcpu *v = talloc_zero(c->ctx, Xstagent__Vcpu);

		if (!v)
			return -ENOMEM;
		xstagent__vcpu__init(v);
		v->domid = d->domid;
		v->name = d->name;
		v->id = vi->id;
		v->online = vi->online;
		v->running = vi->running;
		v->cpu_time = (double)vi->cpu_time_ns / 1e9;
		/* The hard affinity as set (like xl); the kernel's list for the thread, the
		 * affinity within the cpupool, as `effective`. */
		v->affinity = vi->id < d->cfg->maxvcpus ? d->affinity[vi->id] : "all";
		v->effective = vi->affinity;
		l->vcpu[l->n_vcpu++] = v;
	}
	c->rep->body_case = XSTAGENT__REPLY__BODY_VCPUS;
	c->rep->vcpus = l;
	return 0;
}

static int h_vcpu_pin(struct call *c)
{
	const Xstagent__VcpuPin *p = c->req->vcpu_pin;
	uint64_t map[16];
	unsigned int hi, i, first, last;
	char *msg = NULL;
	LOOKUP(c, p->dom);
	if (xlcfg_cpulist_parse(p->cpus, map, &hi) < 0)
		return fail(c, -EINVAL, "invalid cpu list \"%s\"", p->cpus);
	if (strcmp(p->cpus, "all") != 0 && hi >= c->a->nr_cpus)
		return fail(c, -EINVAL, "cpu %u does not exist (the host has %u)", hi,
			    c->a->nr_cpus);
	if (!p->has_vcpu || p->vcpu < 0) {
		first = 0;
		last = d->cfg->maxvcpus - 1;
	} else if ((unsigned int)p->vcpu >= d->cfg->maxvcpus) {
		return fail(c, -EINVAL, "domain %u has no vcpu %d", d->domid, p->vcpu);
	} else {
		first = last = (unsigned int)p->vcpu;
	}
	{
		struct pool *pl = pool_find(c->a, d->cfg->pool);
		char *eff;

		rv = pool_effective(c->a, pl, p->cpus, c->ctx, &eff);
		if (rv == -ENOENT)
			return fail(c, -EINVAL, "cpus %s: none is in cpupool %s", p->cpus, pl->name);
		if (rv < 0)
			return fail(c, rv, "%s", strerror(-rv));
		rv = adom_pin(d, first == last ? (int)first : -1, eff, c->ctx, &msg);
	}
	if (rv < 0)
		return fail(c, rv, "%s", msg);
	for (i = first; i <= last; i++) {
		char *s = talloc_strdup(d->affinity, p->cpus);

		if (!s)
			return -ENOMEM;
		talloc_free(d->affinity[i]);
		d->affinity[i] = s;
		rv = layout_xs_write(c->a,
				     talloc_asprintf(c->ctx, "/libxl/%u/vcpu/%u/affinity", d->domid, i),
				     s);
		if (rv < 0)
			return fail(c, rv, "recording affinity: %s", strerror(-rv));
	}
	return 0;
}

static int h_sched_credit(struct call *c)
{
	const Xstagent__SchedCredit *s = c->req->sched_credit;
	Xstagent__Domain **doms;
	struct adom *d;
	size_t n = 0;
	int rv;

	if (!s->dom) {
		doms = talloc_array(c->ctx, Xstagent__Domain *, c->a->ndoms + 1);
		if (!doms)
			return -ENOMEM;
		if (!(doms[n++] = dom0_entry(c->a, c->ctx)))
			return -ENOMEM;
		for (d = c->a->doms; d; d = d->next) {
			Xstagent__Domain *m = talloc_zero(c->ctx, Xstagent__Domain);

			if (!m)
				return -ENOMEM;
			xstagent__domain__init(m);
			m->domid = d->domid;
			m->name = d->name;
			m->uuid = d->uuid_str;
			m->state = "";
			m->pool = d->cfg->pool;
			m->core = "";
			m->weight = d->weight;
			m->cap = d->cap;
			m->config = d->cfg;
			doms[n++] = m;
		}
		return reply_domains(c, doms, n);
	}
	d = lookup(c, s->dom, &rv);
	if (!d)
		return rv;
	if (s->has_weight || s->has_cap) {
		Xstdom__Request req = XSTDOM__REQUEST__INIT;
		Xstdom__Sched sc = XSTDOM__SCHED__INIT;
		uint32_t w = s->has_weight ? s->weight : d->weight;
		uint32_t cap = s->has_cap ? s->cap : d->cap;

		if (w < 1 || w > 65535)
			return fail(c, -EINVAL, "weight %u out of range 1..65535", w);
		if (cap > 100 * d->cfg->maxvcpus)
			return fail(c, -EINVAL, "cap %u out of range 0..%u", cap,
				    100 * d->cfg->maxvcpus);
		sc.has_weight = true;
		sc.weight = w;
		sc.has_cap = true;
		sc.cap = cap;
		req.body_case = XSTDOM__REQUEST__BODY_SCHED;
		req.sched = &sc;
		rv = simple_call(c, d, &req);
		if (rv < 0)
			return rv;
		d->weight = w;
		d->cap = cap;
		rv = layout_xs_write(c->a, talloc_asprintf(c->ctx, "/libxl/%u/sched/weight", d->domid),
				     talloc_asprintf(c->ctx, "%u", w));
		if (rv == 0)
			rv = layout_xs_write(c->a,
					     talloc_asprintf(c->ctx, "/libxl/%u/sched/cap", d->domid),
					     talloc_asprintf(c->ctx, "%u", cap));
		if (rv < 0)
			return fail(c, rv, "recording sched params: %s", strerror(-rv));
		agent_log(c->a, "domain %u: credit weight %u cap %u", d->domid, w, cap);
	}
	doms = talloc_array(c->ctx, Xstagent__Domain *, 1);
	if (!doms || !(doms[0] = dom_entry(d, c->ctx)))
		return -ENOMEM;
	return reply_domains(c, doms, 1);
}

static int h_cpupool_list(struct call *c)
{
	Xstagent__PoolList *l = talloc_zero(c->ctx, Xstagent__PoolList);
	struct pool *p;
	size_t n = 0;

	if (!l)
		return -ENOMEM;
	xstagent__pool_list__init(l);
	for (p = c->a->pools; p; p = p->next)
		n++;
	l->pool = talloc_array(c->ctx, Xstagent__Pool *, n + 1);
	if (!l->pool)
		return -ENOMEM;
	for (p = c->a->pools; p; p = p->next) {
		Xstagent__Pool *m = talloc_zero(c->ctx, Xstagent__Pool);

		if (!m || pool_cpus_text(p->cpus, c->ctx, &m->cpus) < 0)
			return -ENOMEM;
		xstagent__pool__init(m);
		pool_cpus_text(p->cpus, c->ctx, &m->cpus);
		m->name = p->name;
		m->id = p->id;
		m->sched = p->sched;
		m->ncpus = pool_ncpus(p->cpus);
		m->ndomains = pool_ndomains(c->a, p) + (p->id == 0 ? 1 : 0); /* + Domain-0 */
		l->pool[l->n_pool++] = m;
	}
	c->rep->body_case = XSTAGENT__REPLY__BODY_POOLS;
	c->rep->pools = l;
	return 0;
}

/* Is every cpu of `map` free (in no pool)? */
static int cpus_free(struct call *c, const uint64_t map[16])
{
	struct pool *p;
	unsigned int i;

	for (i = 0; i < 1024; i++) {
		if (!((map[i / 64] >> (i % 64)) & 1))
			continue;
		if (i >= c->a->nr_cpus)
			return fail(c, -EINVAL, "cpu %u does not exist (the host has %u)", i,
				    c->a->nr_cpus);
		for (p = c->a->pools; p; p = p->next)
			if ((p->cpus[i / 64] >> (i % 64)) & 1)
				return fail(c, -EBUSY, "cpu %u is in cpupool %s", i, p->name);
	}
	return 0;
}

static int h_cpupool_create(struct call *c)
{
	const Xstagent__PoolCreate *pc = c->req->cpupool_create;
	struct pool *p, **pp;
	uint64_t map[16] = { 0 };
	unsigned int hi, n = 0;
	int rv;

	if (!name_valid(pc->name))
		return fail(c, -EINVAL, "invalid cpupool name \"%s\"", pc->name);
	if (pool_find(c->a, pc->name))
		return fail(c, -EEXIST, "cpupool \"%s\" already exists", pc->name);
	if (pc->sched && strcmp(pc->sched, "credit") != 0)
		return fail(c, -EINVAL, "unsupported scheduler \"%s\" (only credit)", pc->sched);
	if (pc->cpus && pc->cpus[0] && xlcfg_cpulist_parse(pc->cpus, map, &hi) < 0)
		return fail(c, -EINVAL, "invalid cpu list \"%s\"", pc->cpus);
	rv = cpus_free(c, map);
	if (rv < 0)
		return rv;
	for (p = c->a->pools; p; p = p->next)
		n++;
	if (n >= AGENT_MAX_POOLS)
		return fail(c, -ENOSPC, "too many cpupools (%d)", AGENT_MAX_POOLS);
	p = talloc_zero(c->a, struct pool);
	if (!p)
		return -ENOMEM;
	p->id = c->a->next_pool_id++;
	p->name = talloc_strdup(p, pc->name);
	p->sched = talloc_strdup(p, "credit");
	memcpy(p->cpus, map, sizeof(map));
	for (pp = &c->a->pools; *pp; pp = &(*pp)->next)
		;
	*pp = p;
	agent_log(c->a, "cpupool %s (id %u) created", p->name, p->id);
	return pool_save(c->a);
}

static struct pool *pool_lookup(struct call *c, const char *name, int *err)
{
	struct pool *p = pool_find(c->a, name);

	*err = p ? 0 : fail(c, -ENOENT, "cpupool \"%s\" does not exist", name);
	return p;
}

static int h_cpupool_destroy(struct call *c)
{
	struct pool *p, **pp;
	int rv;

	p = pool_lookup(c, c->req->cpupool_destroy->pool, &rv);
	if (!p)
		return rv;
	if (p->id == 0)
		return fail(c, -EPERM, "Pool-0 cannot be destroyed");
	if (pool_ndomains(c->a, p))
		return fail(c, -EBUSY, "cpupool %s still has %u domains", p->name,
			    pool_ndomains(c->a, p));
	for (pp = &c->a->pools; *pp != p; pp = &(*pp)->next)
		;
	*pp = p->next;
	agent_log(c->a, "cpupool %s destroyed", p->name);
	talloc_free(p);
	return pool_save(c->a);
}

static int h_cpupool_cpu(struct call *c, bool add)
{
	const Xstagent__PoolCpu *pc = add ? c->req->cpupool_cpu_add : c->req->cpupool_cpu_remove;
	uint64_t map[16];
	unsigned int hi, i;
	struct pool *p;
	int rv;

	p = pool_lookup(c, pc->pool, &rv);
	if (!p)
		return rv;
	if (xlcfg_cpulist_parse(pc->cpus, map, &hi) < 0)
		return fail(c, -EINVAL, "invalid cpu list \"%s\"", pc->cpus);
	if (add) {
		rv = cpus_free(c, map);
		if (rv < 0)
			return rv;
		for (i = 0; i < 16; i++)
			p->cpus[i] |= map[i];
	} else {
		for (i = 0; i < 16; i++)
			if (map[i] & ~p->cpus[i])
				return fail(c, -EINVAL, "cpu %u is not in cpupool %s",
					    i * 64 + __builtin_ctzll(map[i] & ~p->cpus[i]), p->name);
		for (i = 0; i < 16; i++)
			p->cpus[i] &= ~map[i];
		if (pool_ncpus(p->cpus) == 0 && pool_ndomains(c->a, p)) {
			for (i = 0; i < 16; i++)
				p->cpus[i] |= map[i];
			return fail(c, -EBUSY, "cpupool %s would have no cpu for its domains", p->name);
		}
	}
	agent_log(c->a, "cpupool %s: cpus %s %s", p->name, pc->cpus, add ? "added" : "removed");
	rv = pool_save(c->a);
	if (rv < 0)
		return rv;
	rv = pool_apply_all(c->a, p);
	return rv < 0 ? fail(c, rv, "re-pinning the domains of cpupool %s: %s (see dmesg)", p->name,
			     strerror(-rv)) : 0;
}

static int h_cpupool_cpu_add(struct call *c)
{
	return h_cpupool_cpu(c, true);
}

static int h_cpupool_cpu_remove(struct call *c)
{
	return h_cpupool_cpu(c, false);
}

static int h_cpupool_migrate(struct call *c)
{
	const Xstagent__PoolMigrate *pm = c->req->cpupool_migrate;
	struct pool *p;
	char *old;
	LOOKUP(c, pm->dom);
	p = pool_lookup(c, pm->pool, &rv);
	if (!p)
		return rv;
	if (pool_ncpus(p->cpus) == 0)
		return fail(c, -EINVAL, "cpupool %s has no cpus", p->name);
	old = d->cfg->pool;
	d->cfg->pool = talloc_strdup(d->cfg, p->name);
	if (!d->cfg->pool) {
		d->cfg->pool = old;
		return -ENOMEM;
	}
	rv = layout_xs_write(c->a, talloc_asprintf(c->ctx, "/libxl/%u/pool", d->domid), p->name);
	if (rv == 0)
		rv = adom_save_config(d);
	agent_log(c->a, "domain %u moved from cpupool %s to %s", d->domid, old, p->name);
	if (rv < 0)
		return fail(c, rv, "recording the move: %s", strerror(-rv));
	{
		char *msg = NULL;

		rv = pool_apply(c->a, d, c->ctx, &msg);
		if (rv < 0)
			return fail(c, rv, "pinning to cpupool %s: %s", p->name, msg ? msg : "");
	}
	return 0;
}

static int h_info(struct call *c)
{
	Xstagent__HostInfo *h = talloc_zero(c->ctx, Xstagent__HostInfo);
	struct utsname u;

	if (!h || uname(&u) < 0)
		return -ENOMEM;
	xstagent__host_info__init(h);
	h->host = talloc_strdup(c->ctx, u.nodename);
	h->release = talloc_strdup(c->ctx, u.release);
	h->machine = talloc_strdup(c->ctx, u.machine);
	h->nr_cpus = c->a->nr_cpus;
	h->total_memory_mib = meminfo_mib("MemTotal");
	h->free_memory_mib = meminfo_mib("MemAvailable");
	h->core = (char *)c->a->core;
	h->scheduler = "credit";
	h->nr_domains = c->a->ndoms;
	h->agent_start_time = c->a->start_time;
	h->version = "xst 0.1";
	c->rep->body_case = XSTAGENT__REPLY__BODY_INFO;
	c->rep->info = h;
	return 0;
}

static int h_dmesg(struct call *c)
{
	c->rep->text = agent_log_text(c->a, c->ctx);
	if (!c->rep->text)
		return -ENOMEM;
	c->rep->body_case = XSTAGENT__REPLY__BODY_TEXT;
	return 0;
}

static int h_debug_keys(struct call *c)
{
	struct agent *a = c->a;
	struct adom *d;
	struct pool *p;
	char *s;

	s = talloc_asprintf(c->ctx, "xst-agent state: rundir %s, xenstored %s, core %s, pid %d\n"
				    "domains: %u, next domid %u, talloc blocks %zu bytes %zu\n",
			    a->rundir, a->xenstored, a->core, (int)getpid(), a->ndoms, a->next_domid,
			    talloc_total_blocks(a), talloc_total_size(a));
	for (d = a->doms; d && s; d = d->next)
		s = talloc_asprintf_append(s, "  domain %u %s uuid %s pid %d %s pool %s weight %u "
					      "cap %u events-seq %" PRIu64 " ring-gfn %" PRIu64 "\n",
					   d->domid, d->name, d->uuid_str, (int)d->pid,
					   d->state == ADOM_PRESERVED ? "preserved" : "live",
					   d->cfg->pool, d->weight, d->cap, d->last_seq, d->ring_gfn);
	for (p = a->pools; p && s; p = p->next) {
		char *cpus = NULL;

		pool_cpus_text(p->cpus, c->ctx, &cpus);
		s = talloc_asprintf_append(s, "  cpupool %u %s sched %s cpus %s\n", p->id, p->name,
					   p->sched, cpus ? cpus : "?");
	}
	if (s && a->spare)
		s = talloc_asprintf_append(s, "  spare pid %d, %llu MiB, %s\n", (int)a->spare->pid,
					   (unsigned long long)a->spare->mib,
					   a->spare->ready ? "ready" : "starting");
	else if (s)
		s = talloc_asprintf_append(s, "  spare: none (%s, %llu MiB wanted, %u failures)\n",
					   a->spare_cfg == AGENT_SPARE_AUTO ? "auto"
					   : a->spare_cfg ? "fixed" : "off",
					   (unsigned long long)a->spare_mib, a->spare_failures);
	if (!s)
		return -ENOMEM;
	agent_log(a, "debug-keys: state dump follows\n%s", s);
	c->rep->text = s;
	c->rep->body_case = XSTAGENT__REPLY__BODY_TEXT;
	return 0;
}

static int h_domid(struct call *c)
{
	const char *ref = c->req->domid->dom;

	if (strcmp(ref, "Domain-0") == 0) {
		c->rep->domid = 0;
	} else {
		LOOKUP(c, ref);
		if (strcmp(d->name, ref) != 0)
			return fail(c, -ENOENT, "no domain named \"%s\"", ref);
		c->rep->domid = d->domid;
	}
	c->rep->body_case = XSTAGENT__REPLY__BODY_DOMID;
	return 0;
}

static int h_domname(struct call *c)
{
	const char *ref = c->req->domname->dom;

	if (strcmp(ref, "0") == 0) {
		c->rep->name = "Domain-0";
	} else {
		LOOKUP(c, ref);
		c->rep->name = d->name;
	}
	c->rep->body_case = XSTAGENT__REPLY__BODY_NAME;
	return 0;
}

static int h_save(struct call *c)
{
	return save_save(c->a, c->req->save, c->rep, c->ctx);
}

static int h_restore(struct call *c)
{
	return save_restore(c->a, c->req->restore, c->rep, c->ctx);
}

static int h_migrate(struct call *c)
{
	return migrate_send(c->a, c->req->migrate, c->rep, c->ctx);
}

static int h_mig_data(struct call *c)
{
	return migrate_recv(c->a, c->req->mig_data, c->rep, c->ctx);
}

static const struct {
	const char *name;
	int (*fn)(struct call *c);
} handlers[] = {
	[XSTAGENT__REQUEST__BODY_CREATE] = { "create", h_create },
	[XSTAGENT__REQUEST__BODY_DESTROY] = { "destroy", h_destroy },
	[XSTAGENT__REQUEST__BODY_SHUTDOWN] = { "shutdown", h_shutdown },
	[XSTAGENT__REQUEST__BODY_PAUSE] = { "pause", h_pause_on },
	[XSTAGENT__REQUEST__BODY_UNPAUSE] = { "unpause", h_unpause },
	[XSTAGENT__REQUEST__BODY_RENAME] = { "rename", h_rename },
	[XSTAGENT__REQUEST__BODY_LIST] = { "list", h_list },
	[XSTAGENT__REQUEST__BODY_MEM_SET] = { "mem-set", h_mem_set },
	[XSTAGENT__REQUEST__BODY_MEM_MAX] = { "mem-max", h_mem_max },
	[XSTAGENT__REQUEST__BODY_VCPU_SET] = { "vcpu-set", h_vcpu_set },
	[XSTAGENT__REQUEST__BODY_VCPU_LIST] = { "vcpu-list", h_vcpu_list },
	[XSTAGENT__REQUEST__BODY_VCPU_PIN] = { "vcpu-pin", h_vcpu_pin },
	[XSTAGENT__REQUEST__BODY_SCHED_CREDIT] = { "sched-credit", h_sched_credit },
	[XSTAGENT__REQUEST__BODY_CPUPOOL_LIST] = { "cpupool-list", h_cpupool_list },
	[XSTAGENT__REQUEST__BODY_CPUPOOL_CREATE] = { "cpupool-create", h_cpupool_create },
	[XSTAGENT__REQUEST__BODY_CPUPOOL_DESTROY] = { "cpupool-destroy", h_cpupool_destroy },
	[XSTAGENT__REQUEST__BODY_CPUPOOL_CPU_ADD] = { "cpupool-cpu-add", h_cpupool_cpu_add },
	[XSTAGENT__REQUEST__BODY_CPUPOOL_CPU_REMOVE] = { "cpupool-cpu-remove", h_cpupool_cpu_remove },
	[XSTAGENT__REQUEST__BODY_CPUPOOL_MIGRATE] = { "cpupool-migrate", h_cpupool_migrate },
	[XSTAGENT__REQUEST__BODY_INFO] = { "info", h_info },
	[XSTAGENT__REQUEST__BODY_DMESG] = { "dmesg", h_dmesg },
	[XSTAGENT__REQUEST__BODY_DEBUG_KEYS] = { "debug-keys", h_debug_keys },
	[XSTAGENT__REQUEST__BODY_DOMID] = { "domid", h_domid },
	[XSTAGENT__REQUEST__BODY_DOMNAME] = { "domname", h_domname },
	[XSTAGENT__REQUEST__BODY_SAVE] = { "save", h_save },
	[XSTAGENT__REQUEST__BODY_RESTORE] = { "restore", h_restore },
	[XSTAGENT__REQUEST__BODY_MIGRATE] = { "migrate", h_migrate },
	[XSTAGENT__REQUEST__BODY_MIG_DATA] = { "mig-data", h_mig_data },
};

void ctl_serve(struct agent *a, struct xst_rpc *srv)
{
	void *ctx = talloc_new(a);
	Xstagent__Reply rep = XSTAGENT__REPLY__INIT;
	ProtobufCMessage *m;
	struct call c = { .a = a, .rep = &rep, .ctx = ctx };
	unsigned int bc;
	int rv;

	if (!ctx)
		return;
	rv = xst_rpc_recv_msg(srv, 0, &xstagent__request__descriptor, ctx, &m);
	if (rv == -ETIMEDOUT) {
		talloc_free(ctx);
		return;
	}
	if (rv < 0) {
		rep.error = rv;
		rep.message = rv == -EPROTO ? "malformed request" : strerror(-rv);
		if (rv != -EPROTO) {
			agent_log(a, "receive: %s", strerror(-rv));
			talloc_free(ctx);
			return;
		}
	} else {
		c.req = (const Xstagent__Request *)m;
		bc = c.req->body_case;
		if (bc >= sizeof(handlers) / sizeof(handlers[0]) || !handlers[bc].fn) {
			rep.error = -EOPNOTSUPP;
			rep.message = "unknown request";
		} else {
			rv = handlers[bc].fn(&c);
			if (rv < 0) {
				rep.error = rv;
				if (!rep.message)
					rep.message = talloc_asprintf(ctx, "%s: %s", handlers[bc].name,
								      strerror(-rv));
				/* A failed reply must not carry a half-built body. */
				rep.body_case = XSTAGENT__REPLY__BODY__NOT_SET;
			}
		}
	}
	rv = xst_rpc_reply_msg(srv, &rep.base);
	if (rv < 0)
		agent_log(a, "reply: %s", strerror(-rv));
	if (a->spare_after_reply) {
		/* the next spare, now that the create's reply is out */
		a->spare_after_reply = false;
		spare_start(a);
	}
	if (a->save_config_after_reply) {
		struct adom *d = adom_by_id(a, a->save_config_after_reply);

		a->save_config_after_reply = 0;
		if (d)
			adom_save_config(d); /* logs its own failure */
	}
	if (a->destroy_after_reply) {
		struct adom *d = a->destroy_after_reply;
		uint32_t domid = d->domid;
		char *msg = NULL;
		double t0 = agent_mono_s();

		a->destroy_after_reply = NULL;
		rv = adom_destroy(d, &msg, ctx);
		if (rv < 0)
			agent_log(a, "domain %u: destroying it after the reply: %s", domid,
				  msg ? msg : strerror(-rv));
		else
			agent_log(a, "domain %u: destroyed after the reply (saved or migrated) in "
				  "%.1f ms", domid, (agent_mono_s() - t0) * 1e3);
	}
	talloc_free(ctx);
}

/*
 * cpupools: named sets of host cpus, each with a scheduler (credit only).  Pool-0
 * (id 0) starts with every cpu; a cpu belongs to at most one pool.  Pools live in
 * the agent and in xenstore under /libxl/cpupool/<id>/{name,sched,cpus}, from where a
 * restarted agent reads them back.  A pool is real: its domains' vcpu threads run
 * only on its cpus (their hard affinity intersected with the pool's, pinned by the
 * domain process; pool_apply), on both cores.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <talloc.h>

#include "agent/agent.h"
#include "store/xs_client.h"
#include "tools/xlcfg.h"

unsigned int pool_ncpus(const uint64_t map[16])
{
	unsigned int i, n = 0;

	for (i = 0; i < 16; i++)
		n += __builtin_popcountll(map[i]);
	return n;
}

int pool_cpus_text(const uint64_t map[16], void *ctx, char **out)
{
	char *s = talloc_strdup(ctx, "");
	int i, start = -1;

	for (i = 0; s && i <= 1024; i++) {
		bool set = i < 1024 && (map[i / 64] >> (i % 64)) & 1;

		if (set && start < 0)
			start = i;
		if (!set && start >= 0) {
			if (start == i - 1)
				s = talloc_asprintf_append(s, "%s%d", s[0] ? "," : "", start);
			else
				s = talloc_asprintf_append(s, "%s%d-%d", s[0] ? "," : "", start,
							   i - 1);
			start = -1;
		}
	}
	if (!s)
		return -ENOMEM;
	*out = s;
	return 0;
}

struct pool *pool_find(struct agent *a, const char *name)
{
	struct pool *p;

	for (p = a->pools; p; p = p->next)
		if (strcmp(p->name, name) == 0)
			return p;
	return NULL;
}

unsigned int pool_ndomains(struct agent *a, const struct pool *p)
{
	struct adom *d;
	unsigned int n = 0;

	for (d = a->doms; d; d = d->next)
		if (strcmp(d->cfg->pool, p->name) == 0)
			n++;
	return n;
}

static struct pool *pool_add(struct agent *a, uint32_t id, const char *name, const char *sched)
{
	struct pool *p = talloc_zero(a, struct pool), **pp;

	if (!p)
		return NULL;
	p->id = id;
	p->name = talloc_strdup(p, name);
	p->sched = talloc_strdup(p, sched);
	if (!p->name || !p->sched) {
		talloc_free(p);
		return NULL;
	}
	for (pp = &a->pools; *pp && (*pp)->id < id; pp = &(*pp)->next)
		;
	p->next = *pp;
	*pp = p;
	if (id >= a->next_pool_id)
		a->next_pool_id = id + 1;
	return p;
}

int pool_save(struct agent *a)
{
	void *tmp = talloc_new(a);
	struct pool *p;
	int rv;

	if (!tmp)
		return -ENOMEM;
	rv = xs_client_rm(a->xs, 0, "/libxl/cpupool");
	if (rv == -ENOENT)
		rv = 0;
	for (p = a->pools; p && rv == 0; p = p->next) {
		char *cpus;

		rv = pool_cpus_text(p->cpus, tmp, &cpus);
		if (rv == 0)
			rv = layout_xs_write(
			    a, talloc_asprintf(tmp, "/libxl/cpupool/%u/name", p->id), p->name);
		if (rv == 0)
			rv = layout_xs_write(
			    a, talloc_asprintf(tmp, "/libxl/cpupool/%u/sched", p->id), p->sched);
		if (rv == 0)
			rv = layout_xs_write(
			    a, talloc_asprintf(tmp, "/libxl/cpupool/%u/cpus", p->id), cpus);
	}
	if (rv < 0)
		agent_log(a, "saving cpupools to xenstore: %s", strerror(-rv));
	talloc_free(tmp);
	return rv;
}

/* Pools from xenstore (a previous agent), else Pool-0 with every cpu. */
int pool_init(struct agent *a)
{
	void *tmp = talloc_new(a);
	char **ids;
	unsigned int n, i, hi;
	struct pool *p;
	int rv;

	if (!tmp)
		return -ENOMEM;
	rv = xs_client_directory(a->xs, 0, "/libxl/cpupool", tmp, &ids, &n);
	for (i = 0; rv == 0 && i < n; i++) {
		char *name, *sched, *cpus, *end;
		unsigned long id = strtoul(ids[i], &end, 10);

		if (*end || id > 1000000)
			continue;
		if (layout_xs_read(a, tmp, talloc_asprintf(tmp, "/libxl/cpupool/%lu/name", id),
				   &name) < 0 ||
		    layout_xs_read(a, tmp, talloc_asprintf(tmp, "/libxl/cpupool/%lu/sched", id),
				   &sched) < 0 ||
		    layout_xs_read(a, tmp, talloc_asprintf(tmp, "/libxl/cpupool/%lu/cpus", id),
				   &cpus) < 0)
			continue;
		p = pool_add(a, (uint32_t)id, name, sched);
		if (p && cpus[0])
			xlcfg_cpulist_parse(cpus, p->cpus, &hi);
	}
	if (!pool_find(a, "Pool-0")) {
		p = pool_add(a, 0, "Pool-0", "credit");
		if (!p) {
			talloc_free(tmp);
			return -ENOMEM;
		}
		for (i = 0; i < a->nr_cpus; i++)
			p->cpus[i / 64] |= 1ull << (i % 64);
		rv = pool_save(a);
	} else {
		agent_log(a, "restored %u cpupools from xenstore", n);
		rv = 0;
	}
	talloc_free(tmp);
	return rv;
}

/* Does p hold every cpu of the host? */
static bool pool_has_all(struct agent *a, const struct pool *p)
{
	unsigned int i;

	for (i = 0; i < a->nr_cpus; i++)
		if (!((p->cpus[i / 64] >> (i % 64)) & 1))
			return false;
	return true;
}

int pool_effective(struct agent *a, const struct pool *p, const char *affinity, void *ctx,
		   char **out)
{
	uint64_t map[16];
	unsigned int hi, i;
	bool any = false;

	if (!p || pool_has_all(a, p)) {
		*out = talloc_strdup(ctx, affinity);
		return *out ? 0 : -ENOMEM;
	}
	if (xlcfg_cpulist_parse(affinity, map, &hi) < 0)
		return -EINVAL;
	for (i = 0; i < 16; i++) {
		map[i] &= p->cpus[i];
		any |= map[i] != 0;
	}
	if (!any)
		return -ENOENT;
	return pool_cpus_text(map, ctx, out);
}

int pool_apply(struct agent *a, struct adom *d, void *ctx, char **msg)
{
	struct pool *p = pool_find(a, d->cfg->pool);
	unsigned int i;
	char *eff;
	int rv;

	for (i = 0; i < d->cfg->maxvcpus; i++) {
		rv = pool_effective(a, p, d->affinity[i], ctx, &eff);
		if (rv == -ENOENT && p) {
			/* none of its cpus is in the pool: the pool's cpus, as Xen breaks
			 * such an affinity when a domain moves */
			agent_log(a, "domain %u: vcpu %u affinity %s has no cpu in cpupool %s: "
				  "it runs on the pool's cpus", d->domid, i, d->affinity[i], p->name);
			rv = pool_cpus_text(p->cpus, ctx, &eff);
		}
		if (rv < 0) {
			*msg = talloc_asprintf(ctx, "vcpu %u: %s", i, strerror(-rv));
			return rv;
		}
		rv = adom_pin(d, (int)i, eff, ctx, msg);
		if (rv < 0)
			return rv;
	}
	return 0;
}

int pool_apply_all(struct agent *a, const struct pool *p)
{
	struct adom *d;
	void *tmp;
	char *msg = NULL;
	int rv, ret = 0;

	for (d = a->doms; d; d = d->next) {
		if (d->state != ADOM_LIVE || strcmp(d->cfg->pool, p->name) != 0)
			continue;
		tmp = talloc_new(a);
		if (!tmp)
			return -ENOMEM;
		rv = pool_apply(a, d, tmp, &msg);
		if (rv < 0) {
			agent_log(a, "domain %u: cpupool %s: %s", d->domid, p->name, msg ? msg : "");
			ret = rv;
		}
		talloc_free(tmp);
	}
	return ret;
}

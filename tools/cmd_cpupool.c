/* cpupool-list, -create, -destroy, -cpu-add, -cpu-remove, -migrate. */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include <talloc.h>

#include "tools/xlcfg.h"
#include "tools/xst.h"

int cmd_cpupool_list(void *ctx, int argc, char **argv)
{
	Xstagent__Request req = XSTAGENT__REQUEST__INIT;
	Xstagent__Empty e = XSTAGENT__EMPTY__INIT;
	Xstagent__Reply *rep;
	bool cpus = false;
	size_t i;

	if (argc == 2 && strcmp(argv[1], "-c") == 0)
		cpus = true;
	else if (argc != 1)
		return xst_usage("unexpected argument \"%s\"", argv[1]);
	req.body_case = XSTAGENT__REQUEST__BODY_CPUPOOL_LIST;
	req.cpupool_list = &e;
	if (xst_call(ctx, &req, &rep) < 0)
		return 1;
	if (xst_json) {
		struct xst_json *j;

		if (xst_json_new(ctx, true, &j) < 0)
			return xst_err("out of memory");
		xst_json_array_open(j);
		for (i = 0; i < rep->pools->n_pool; i++) {
			Xstagent__Pool *p = rep->pools->pool[i];

			xst_json_map_open(j);
			xst_json_kv_string(j, "name", p->name);
			xst_json_kv_uint(j, "id", p->id);
			xst_json_kv_string(j, "sched", p->sched);
			xst_json_kv_string(j, "cpus", p->cpus);
			xst_json_kv_uint(j, "ncpus", p->ncpus);
			xst_json_kv_uint(j, "ndomains", p->ndomains);
			xst_json_map_close(j);
		}
		xst_json_array_close(j);
		return xst_json_print(j);
	}
	if (cpus)
		printf("Name               CPU list\n");
	else
		printf("Name               CPUs   Sched     Active   Domain count\n");
	for (i = 0; i < rep->pools->n_pool; i++) {
		Xstagent__Pool *p = rep->pools->pool[i];

		if (cpus)
			printf("%-19s%s\n", p->name, p->cpus);
		else
			printf("%-19s%4u %9s       %c     %5u\n", p->name, p->ncpus, p->sched, 'y',
			       p->ndomains);
	}
	return 0;
}

int cmd_cpupool_create(void *ctx, int argc, char **argv)
{
	Xstagent__Request req = XSTAGENT__REQUEST__INIT;
	Xstagent__PoolCreate pc = XSTAGENT__POOL_CREATE__INIT;
	Xstagent__Reply *rep;
	uint64_t map[16];
	unsigned int hi;
	int i;

	for (i = 1; i < argc; i++) {
		char *eq = strchr(argv[i], '=');
		char *val;
		size_t vl;

		if (!eq) {
			if (pc.name)
				return xst_usage("unexpected argument \"%s\"", argv[i]);
			pc.name = argv[i];
			continue;
		}
		val = eq + 1;
		vl = strlen(val);
		/* Accept xl's quoting: name="p1" cpus=["1","2"] (quotes and brackets dropped). */
		val = talloc_strdup(ctx, val);
		{
			char *w = val, *r;
			for (r = val; *r; r++)
				if (*r != '"' && *r != '\'' && *r != '[' && *r != ']' && *r != ' ')
					*w++ = *r;
			*w = '\0';
		}
		(void)vl;
		if (strncmp(argv[i], "name=", 5) == 0)
			pc.name = val;
		else if (strncmp(argv[i], "sched=", 6) == 0)
			pc.sched = val;
		else if (strncmp(argv[i], "cpus=", 5) == 0)
			pc.cpus = val;
		else
			return xst_err("unknown key \"%.*s\"", (int)(eq - argv[i]), argv[i]);
	}
	if (!pc.name || !pc.name[0])
		return xst_usage("no pool name given");
	if (pc.sched && strcmp(pc.sched, "credit") != 0)
		return xst_err("unsupported scheduler \"%s\" (only credit)", pc.sched);
	if (pc.cpus && pc.cpus[0] && xlcfg_cpulist_parse(pc.cpus, map, &hi) < 0)
		return xst_err("invalid cpu list \"%s\"", pc.cpus);
	req.body_case = XSTAGENT__REQUEST__BODY_CPUPOOL_CREATE;
	req.cpupool_create = &pc;
	return xst_call(ctx, &req, &rep) < 0 ? 1 : 0;
}

int cmd_cpupool_destroy(void *ctx, int argc, char **argv)
{
	Xstagent__Request req = XSTAGENT__REQUEST__INIT;
	Xstagent__PoolRef pr = XSTAGENT__POOL_REF__INIT;
	Xstagent__Reply *rep;

	if (argc != 2)
		return xst_usage("expected one POOL");
	pr.pool = argv[1];
	req.body_case = XSTAGENT__REQUEST__BODY_CPUPOOL_DESTROY;
	req.cpupool_destroy = &pr;
	return xst_call(ctx, &req, &rep) < 0 ? 1 : 0;
}

static int pool_cpu(void *ctx, int argc, char **argv, bool add)
{
	Xstagent__Request req = XSTAGENT__REQUEST__INIT;
	Xstagent__PoolCpu pc = XSTAGENT__POOL_CPU__INIT;
	Xstagent__Reply *rep;
	uint64_t map[16];
	unsigned int hi;

	if (argc != 3)
		return xst_usage("expected POOL CPUS");
	if (xlcfg_cpulist_parse(argv[2], map, &hi) < 0)
		return xst_err("invalid cpu list \"%s\"", argv[2]);
	pc.pool = argv[1];
	pc.cpus = argv[2];
	if (add) {
		req.body_case = XSTAGENT__REQUEST__BODY_CPUPOOL_CPU_ADD;
		req.cpupool_cpu_add = &pc;
	} else {
		req.body_case = XSTAGENT__REQUEST__BODY_CPUPOOL_CPU_REMOVE;
		req.cpupool_cpu_remove = &pc;
	}
	return xst_call(ctx, &req, &rep) < 0 ? 1 : 0;
}

int cmd_cpupool_cpu_add(void *ctx, int argc, char **argv)
{
	return pool_cpu(ctx, argc, argv, true);
}

int cmd_cpupool_cpu_remove(void *ctx, int argc, char **argv)
{
	return pool_cpu(ctx, argc, argv, false);
}

int cmd_cpupool_migrate(void *ctx, int argc, char **argv)
{
	Xstagent__Request req = XSTAGENT__REQUEST__INIT;
	Xstagent__PoolMigrate pm = XSTAGENT__POOL_MIGRATE__INIT;
	Xstagent__Reply *rep;

	if (argc != 3)
		return xst_usage("expected DOMAIN POOL");
	pm.dom = argv[1];
	pm.pool = argv[2];
	req.body_case = XSTAGENT__REQUEST__BODY_CPUPOOL_MIGRATE;
	req.cpupool_migrate = &pm;
	return xst_call(ctx, &req, &rep) < 0 ? 1 : 0;
}

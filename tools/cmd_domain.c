/* Domain control commands: destroy, shutdown, reboot, pause, unpause, rename, domid,
 * domname, mem-set, mem-max, vcpu-set, vcpu-pin, sched-credit. */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include <talloc.h>

#include "tools/xlcfg.h"
#include "tools/xst.h"

static int one_dom(void *ctx, int argc, char **argv, Xstagent__Request__BodyCase body)
{
	Xstagent__Reply *rep;

	if (argc != 2)
		return xst_usage("expected one DOMAIN");
	return xst_call_dom(ctx, body, argv[1], &rep) < 0 ? 1 : 0;
}

int cmd_destroy(void *ctx, int argc, char **argv)
{
	return one_dom(ctx, argc, argv, XSTAGENT__REQUEST__BODY_DESTROY);
}

int cmd_pause(void *ctx, int argc, char **argv)
{
	return one_dom(ctx, argc, argv, XSTAGENT__REQUEST__BODY_PAUSE);
}

int cmd_unpause(void *ctx, int argc, char **argv)
{
	return one_dom(ctx, argc, argv, XSTAGENT__REQUEST__BODY_UNPAUSE);
}

/* Is the domain still listed with this domid?  1 yes, 0 no, <0 error.  When it is gone,
 * *reason is its Xen SHUTDOWN_* code, or -1 when the agent does not know it (destroyed). */
static int dom_present(void *ctx, uint32_t domid, int *reason)
{
	Xstagent__Request req = XSTAGENT__REQUEST__INIT;
	Xstagent__ListReq lr = XSTAGENT__LIST_REQ__INIT;
	Xstagent__Reply *rep;
	size_t i;
	int rv;

	req.body_case = XSTAGENT__REQUEST__BODY_LIST;
	req.list = &lr;
	rv = xst_call(ctx, &req, &rep);
	if (rv < 0)
		return rv;
	for (i = 0; i < rep->domains->n_domain; i++) {
		Xstagent__Domain *d = rep->domains->domain[i];

		/* A preserved domain that stays shut down counts as gone for -w. */
		if (d->domid == domid) {
			if (d->state[3] != 's')
				return 1;
			*reason = d->has_shutdown_reason ? (int)d->shutdown_reason : -1;
			return 0;
		}
	}
	*reason = -1;
	for (i = 0; i < rep->domains->n_gone; i++)
		if (rep->domains->gone[i]->domid == domid)
			*reason = (int)rep->domains->gone[i]->reason;
	return 0;
}

static int shutdown_common(void *ctx, int argc, char **argv, bool reboot)
{
	Xstagent__Request req = XSTAGENT__REQUEST__INIT;
	Xstagent__Shutdown sd = XSTAGENT__SHUTDOWN__INIT;
	Xstagent__Request lreq = XSTAGENT__REQUEST__INIT;
	Xstagent__ListReq lr = XSTAGENT__LIST_REQ__INIT;
	Xstagent__Reply *rep;
	bool wait = false, force = false;
	uint32_t domid;
	int opt;

	optind = 1;
	opterr = 0;
	while ((opt = getopt(argc, argv, reboot ? "+F" : "+wF")) != -1) {
		switch (opt) {
		case 'w':
			wait = true;
			break;
		case 'F':
			force = true;
			break;
		default:
			return xst_usage("unknown option \"%s\"", argv[optind - 1]);
		}
	}
	if (optind != argc - 1)
		return xst_usage("expected one DOMAIN");
	/* Resolve the domid first so -w follows this domain, not a successor. */
	lr.dom = argv[optind];
	lreq.body_case = XSTAGENT__REQUEST__BODY_LIST;
	lreq.list = &lr;
	if (xst_call(ctx, &lreq, &rep) < 0)
		return 1;
	domid = rep->domains->domain[0]->domid;
	sd.dom = argv[optind];
	sd.has_reboot = true;
	sd.reboot = reboot;
	sd.has_force = true;
	sd.force = force;
	req.body_case = XSTAGENT__REQUEST__BODY_SHUTDOWN;
	req.shutdown = &sd;
	if (xst_call(ctx, &req, &rep) < 0)
		return 1;
	if (wait) {
		struct timespec ts = {0, 100 * 1000 * 1000};
		int present, why = -1;

		fprintf(stderr, "Waiting for 1 domains\n");
		while ((present = dom_present(ctx, domid, &why)) == 1)
			nanosleep(&ts, NULL);
		if (present < 0)
			return 1;
		if (why < 0)
			fprintf(stderr, "Domain %u has been destroyed.\n", domid);
		else
			fprintf(stderr, "Domain %u has been shut down, reason code %d\n", domid, why);
		fprintf(stderr, "All domains have been shut down\n");
	}
	return 0;
}

int cmd_shutdown(void *ctx, int argc, char **argv)
{
	return shutdown_common(ctx, argc, argv, false);
}

int cmd_reboot(void *ctx, int argc, char **argv)
{
	return shutdown_common(ctx, argc, argv, true);
}

int cmd_rename(void *ctx, int argc, char **argv)
{
	Xstagent__Request req = XSTAGENT__REQUEST__INIT;
	Xstagent__Rename rn = XSTAGENT__RENAME__INIT;
	Xstagent__Reply *rep;

	if (argc != 3)
		return xst_usage("expected DOMAIN NEW_NAME");
	rn.dom = argv[1];
	rn.new_name = argv[2];
	req.body_case = XSTAGENT__REQUEST__BODY_RENAME;
	req.rename = &rn;
	return xst_call(ctx, &req, &rep) < 0 ? 1 : 0;
}

int cmd_domid(void *ctx, int argc, char **argv)
{
	Xstagent__Reply *rep;

	if (argc != 2)
		return xst_usage("expected one NAME");
	if (xst_call_dom(ctx, XSTAGENT__REQUEST__BODY_DOMID, argv[1], &rep) < 0)
		return 1;
	printf("%u\n", rep->domid);
	return 0;
}

int cmd_domname(void *ctx, int argc, char **argv)
{
	Xstagent__Reply *rep;
	uint64_t id;

	if (argc != 2)
		return xst_usage("expected one ID");
	if (xst_parse_uint(argv[1], UINT32_MAX, &id) < 0)
		return xst_err("invalid domain id \"%s\"", argv[1]);
	if (xst_call_dom(ctx, XSTAGENT__REQUEST__BODY_DOMNAME, argv[1], &rep) < 0)
		return 1;
	printf("%s\n", rep->name);
	return 0;
}

static int mem_common(void *ctx, int argc, char **argv, bool max)
{
	Xstagent__Request req = XSTAGENT__REQUEST__INIT;
	Xstagent__MemSet ms = XSTAGENT__MEM_SET__INIT;
	Xstagent__Reply *rep;
	uint64_t kib;

	if (argc != 3)
		return xst_usage("expected DOMAIN MEM");
	if (xst_parse_mem_kib(argv[2], &kib) < 0 || kib == 0)
		return xst_err("invalid memory size \"%s\"", argv[2]);
	ms.dom = argv[1];
	ms.kib = kib;
	if (max) {
		req.body_case = XSTAGENT__REQUEST__BODY_MEM_MAX;
		req.mem_max = &ms;
	} else {
		req.body_case = XSTAGENT__REQUEST__BODY_MEM_SET;
		req.mem_set = &ms;
	}
	return xst_call(ctx, &req, &rep) < 0 ? 1 : 0;
}

int cmd_mem_set(void *ctx, int argc, char **argv)
{
	return mem_common(ctx, argc, argv, false);
}

int cmd_mem_max(void *ctx, int argc, char **argv)
{
	return mem_common(ctx, argc, argv, true);
}

int cmd_vcpu_set(void *ctx, int argc, char **argv)
{
	Xstagent__Request req = XSTAGENT__REQUEST__INIT;
	Xstagent__VcpuSet vs = XSTAGENT__VCPU_SET__INIT;
	Xstagent__Reply *rep;
	uint64_t n;

	if (argc != 3)
		return xst_usage("expected DOMAIN COUNT");
	if (xst_parse_uint(argv[2], 4096, &n) < 0 || n == 0)
		return xst_err("invalid vcpu count \"%s\"", argv[2]);
	vs.dom = argv[1];
	vs.count = (uint32_t)n;
	req.body_case = XSTAGENT__REQUEST__BODY_VCPU_SET;
	req.vcpu_set = &vs;
	return xst_call(ctx, &req, &rep) < 0 ? 1 : 0;
}

int cmd_vcpu_pin(void *ctx, int argc, char **argv)
{
	Xstagent__Request req = XSTAGENT__REQUEST__INIT;
	Xstagent__VcpuPin vp = XSTAGENT__VCPU_PIN__INIT;
	Xstagent__Reply *rep;
	uint64_t map[16], v;
	unsigned int hi;

	if (argc != 4)
		return xst_usage("expected DOMAIN VCPU CPUS");
	vp.dom = argv[1];
	vp.has_vcpu = true;
	if (strcmp(argv[2], "all") == 0) {
		vp.vcpu = -1;
	} else if (xst_parse_uint(argv[2], 4095, &v) == 0) {
		vp.vcpu = (int32_t)v;
	} else {
		return xst_err("invalid vcpu \"%s\"", argv[2]);
	}
	if (xlcfg_cpulist_parse(argv[3], map, &hi) < 0)
		return xst_err("invalid cpu list \"%s\"", argv[3]);
	vp.cpus = argv[3];
	req.body_case = XSTAGENT__REQUEST__BODY_VCPU_PIN;
	req.vcpu_pin = &vp;
	return xst_call(ctx, &req, &rep) < 0 ? 1 : 0;
}

int cmd_sched_credit(void *ctx, int argc, char **argv)
{
	Xstagent__Request req = XSTAGENT__REQUEST__INIT;
	Xstagent__SchedCredit sc = XSTAGENT__SCHED_CREDIT__INIT;
	Xstagent__Reply *rep;
	const char *dom = NULL;
	uint64_t v;
	size_t i;
	int opt;

	optind = 1;
	opterr = 0;
	while ((opt = getopt(argc, argv, "+d:w:c:p:")) != -1) {
		switch (opt) {
		case 'd':
			dom = optarg;
			break;
		case 'w':
			if (xst_parse_uint(optarg, 65535, &v) < 0 || v == 0)
				return xst_err("invalid weight \"%s\" (1..65535)", optarg);
			sc.has_weight = true;
			sc.weight = (uint32_t)v;
			break;
		case 'c':
			if (xst_parse_uint(optarg, UINT32_MAX, &v) < 0)
				return xst_err("invalid cap \"%s\"", optarg);
			sc.has_cap = true;
			sc.cap = (uint32_t)v;
			break;
		case 'p':
			break; /* a cpupool filter: every pool runs credit */
		default:
			return xst_usage("unknown option or missing argument \"%s\"",
					 argv[optind - 1]);
		}
	}
	if (optind != argc)
		return xst_usage("unexpected argument \"%s\"", argv[optind]);
	if ((sc.has_weight || sc.has_cap) && !dom)
		return xst_usage("-w and -c need -d DOMAIN");
	sc.dom = (char *)dom;
	req.body_case = XSTAGENT__REQUEST__BODY_SCHED_CREDIT;
	req.sched_credit = &sc;
	if (xst_call(ctx, &req, &rep) < 0)
		return 1;
	if (sc.has_weight || sc.has_cap)
		return 0;
	if (xst_json) {
		struct xst_json *j;

		if (xst_json_new(ctx, true, &j) < 0)
			return xst_err("out of memory");
		xst_json_array_open(j);
		for (i = 0; i < rep->domains->n_domain; i++) {
			Xstagent__Domain *d = rep->domains->domain[i];

			xst_json_map_open(j);
			xst_json_kv_string(j, "name", d->name);
			xst_json_kv_uint(j, "domid", d->domid);
			xst_json_kv_uint(j, "weight", d->weight);
			xst_json_kv_uint(j, "cap", d->cap);
			xst_json_kv_string(j, "pool", d->pool);
			xst_json_map_close(j);
		}
		xst_json_array_close(j);
		return xst_json_print(j);
	}
	printf("Cpupool %s: tslice=30ms ratelimit=1000us migration-delay=0us\n",
	       rep->domains->n_domain ? rep->domains->domain[0]->pool : "Pool-0");
	printf("Name                                ID Weight  Cap\n");
	for (i = 0; i < rep->domains->n_domain; i++) {
		Xstagent__Domain *d = rep->domains->domain[i];

		printf("%-33s %4u %6u %4u\n", d->name, d->domid, d->weight, d->cap);
	}
	return 0;
}

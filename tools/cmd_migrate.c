/* migrate, migrate-cancel (docs/migration.md). */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <talloc.h>

#include "proto/rpc.h"
#include "tools/xst.h"

/* tools/cmd_save.c */
int xst_call_progress(void *ctx, Xstagent__Request *req, Xstagent__Reply **rep,
		      const char *label, const char *file, void (*on_int)(void *), void *arg);

#define MIG_DEFAULT_PORT "8003"

static char *dest_url(void *ctx, const char *host)
{
	if (strstr(host, "://"))
		return talloc_strdup(ctx, host);
	if (strchr(host, ':'))
		return talloc_asprintf(ctx, "tcp://%s", host);
	return talloc_asprintf(ctx, "tcp://%s:" MIG_DEFAULT_PORT, host);
}

/* Ask the destination agent to drop the incoming domain: the source then fails its
 * next chunk and resumes the guest.  Once the destination runs it, this is too late
 * and the migration completes. */
static int cancel_at(void *ctx, const char *url)
{
	Xstagent__Request req = XSTAGENT__REQUEST__INIT;
	Xstagent__MigData md = XSTAGENT__MIG_DATA__INIT;
	struct xst_rpc *rpc;
	ProtobufCMessage *m;
	int rv;

	md.session = 0;
	md.has_abort = md.abort = true;
	req.body_case = XSTAGENT__REQUEST__BODY_MIG_DATA;
	req.mig_data = &md;
	rv = xst_rpc_dial(ctx, url, &rpc);
	if (rv == 0)
		rv = xst_rpc_call_msg(rpc, &req.base, 10000, &xstagent__reply__descriptor, ctx, &m);
	return rv;
}

static void on_int(void *arg)
{
	const char *url = arg;
	void *tmp = talloc_new(NULL);
	int rv = cancel_at(tmp, url);

	if (rv < 0)
		fprintf(stderr, "\nxst: migrate: cancel at %s: %s\n", url, strerror(-rv));
	talloc_free(tmp);
}

int cmd_migrate(void *ctx, int argc, char **argv)
{
	static const struct option opts[] = {
		{ "downtime", required_argument, NULL, 'd' },
		{ "max-rounds", required_argument, NULL, 'r' },
		{ "bandwidth", required_argument, NULL, 'b' },
		{ NULL, 0, NULL, 0 },
	};
	Xstagent__Request req = XSTAGENT__REQUEST__INIT;
	Xstagent__Migrate mg = XSTAGENT__MIGRATE__INIT;
	Xstagent__Reply *rep;
	uint64_t v;
	int opt;

	optind = 1;
	while ((opt = getopt_long(argc, argv, "+", opts, NULL)) != -1) {
		switch (opt) {
		case 'd':
			if (xst_parse_uint(optarg, 60000, &v) < 0)
				return xst_usage("--downtime: expected milliseconds, got \"%s\"", optarg);
			mg.has_downtime_ms = true;
			mg.downtime_ms = v;
			break;
		case 'r':
			if (xst_parse_uint(optarg, 1000, &v) < 0 || v == 0)
				return xst_usage("--max-rounds: expected 1..1000, got \"%s\"", optarg);
			mg.has_max_rounds = true;
			mg.max_rounds = v;
			break;
		case 'b':
			if (xst_parse_uint(optarg, 1000000, &v) < 0 || v == 0)
				return xst_usage("--bandwidth: expected MiB/s (1..1000000), got \"%s\"",
						 optarg);
			mg.has_bandwidth_mib = true;
			mg.bandwidth_mib = v;
			break;
		default: return xst_usage("unknown option \"%s\"", argv[optind - 1]);
		}
	}
	if (argc - optind != 2)
		return xst_usage("expected DOMAIN and HOST");
	mg.dom = argv[optind];
	mg.url = dest_url(ctx, argv[optind + 1]);
	if (!mg.url)
		return xst_err("%s", strerror(ENOMEM));
	req.body_case = XSTAGENT__REQUEST__BODY_MIGRATE;
	req.migrate = &mg;
	if (xst_call_progress(ctx, &req, &rep, "migrating", NULL, on_int, mg.url) < 0)
		return 1;
	printf("%s\n", rep->text ? rep->text : "migrated");
	return 0;
}

/* Needs the agent's run directory: the default or an ipc://DIR/agent.ipc agent URL. */
int cmd_migrate_cancel(void *ctx, int argc, char **argv)
{
	char *url = NULL, *path, *dir, line[1024];
	FILE *f;
	int rv;

	if (argc == 3) {
		url = dest_url(ctx, argv[2]);
	} else if (argc == 2) {
		if (strncmp(xst_agent_url, "ipc://", 6) != 0)
			return xst_err("the agent is not local (%s): give the destination HOST too",
				       xst_agent_url);
		dir = talloc_strdup(ctx, xst_agent_url + 6);
		if (!dir || !strrchr(dir, '/'))
			return xst_err("cannot tell the agent's run directory from %s", xst_agent_url);
		*strrchr(dir, '/') = 0;
		path = talloc_asprintf(ctx, "%s/migrate-%s", dir, argv[1]);
		f = path ? fopen(path, "re") : NULL;
		if (!f || !fgets(line, sizeof(line), f)) {
			if (f)
				fclose(f);
			return xst_err("domain \"%s\" is not being migrated", argv[1]);
		}
		fclose(f);
		line[strcspn(line, "\n")] = 0;
		url = talloc_strdup(ctx, line);
	} else {
		return xst_usage("expected DOMAIN [HOST]");
	}
	rv = url ? cancel_at(ctx, url) : -ENOMEM;
	if (rv < 0)
		return xst_err("%s: %s", url ? url : argv[2], strerror(-rv));
	printf("migration of %s cancelled at %s\n", argv[1], url);
	return 0;
}

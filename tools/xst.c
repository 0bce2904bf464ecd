/* xst main: global options, the command table, help, and shared helpers. */
#include <ctype.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <talloc.h>

#include "proto/rpc.h"
#include "tools/xlcfg.h"
#include "tools/xst.h"

const char *xst_agent_url = XST_DEFAULT_AGENT;
bool xst_json;
const char *xst_cmd_name = "xst";

/* tools/cmd_save.c, tools/cmd_migrate.c */
int cmd_save(void *ctx, int argc, char **argv);
int cmd_restore(void *ctx, int argc, char **argv);
int cmd_migrate(void *ctx, int argc, char **argv);
int cmd_migrate_cancel(void *ctx, int argc, char **argv);

static const struct xst_cmd cmds[] = {
	{ "create", cmd_create, "Create a domain from a config file",
	  "[-p] [-c] [-n|--dry-run] CONFIG_FILE [KEY=VALUE ...]\n"
	  "  -p          leave the domain paused after it is created\n"
	  "  -c          attach to the console after creation\n"
	  "  -n          dry run: print the resolved config as JSON, contact no agent" },
	{ "list", cmd_list, "List information about all/some domains",
	  "[-l] [--json] [DOMAIN ...]\n  -l  long output (JSON, with each domain's config)" },
	{ "destroy", cmd_destroy, "Terminate a domain immediately", "DOMAIN" },
	{ "shutdown", cmd_shutdown, "Issue a shutdown signal to a domain",
	  "[-w] [-F] DOMAIN\n  -w  wait until the domain is gone\n"
	  "  -F  hard shutdown (no guest cooperation)" },
	{ "reboot", cmd_reboot, "Issue a reboot signal to a domain",
	  "[-F] DOMAIN\n  -F  hard reboot (no guest cooperation)" },
	{ "pause", cmd_pause, "Pause execution of a domain", "DOMAIN" },
	{ "unpause", cmd_unpause, "Unpause a paused domain", "DOMAIN" },
	{ "rename", cmd_rename, "Rename a domain", "DOMAIN NEW_NAME" },
	{ "console", cmd_console, "Attach to a domain's console (Ctrl-] detaches)", "DOMAIN" },
	{ "mem-set", cmd_mem_set, "Set the current memory usage for a domain",
	  "DOMAIN MEM  (MEM: number with suffix b/k/m/g/t, default m)" },
	{ "mem-max", cmd_mem_max, "Set the maximum amount reservation for a domain",
	  "DOMAIN MEM  (MEM: number with suffix b/k/m/g/t, default m)" },
	{ "vcpu-set", cmd_vcpu_set, "Set the number of active VCPUs allowed for the domain",
	  "DOMAIN COUNT" },
	{ "vcpu-list", cmd_vcpu_list, "List the VCPUs for all/some domains",
	  "[--json] [DOMAIN ...]" },
	{ "vcpu-pin", cmd_vcpu_pin, "Set which CPUs a VCPU can use", "DOMAIN VCPU|all CPUS|all" },
	{ "sched-credit", cmd_sched_credit, "Get/set credit scheduler parameters",
	  "[-d DOMAIN [-w WEIGHT] [-c CAP]] [--json]" },
	{ "cpupool-list", cmd_cpupool_list, "List cpupools", "[-c] [--json]" },
	{ "cpupool-create", cmd_cpupool_create, "Create a new CPU pool",
	  "NAME [cpus=CPULIST] [sched=credit]  (or name=NAME ...)" },
	{ "cpupool-destroy", cmd_cpupool_destroy, "Deactivate a CPU pool", "POOL" },
	{ "cpupool-cpu-add", cmd_cpupool_cpu_add, "Adds a CPU to a CPU pool", "POOL CPUS" },
	{ "cpupool-cpu-remove", cmd_cpupool_cpu_remove, "Removes a CPU from a CPU pool",
	  "POOL CPUS" },
	{ "cpupool-migrate", cmd_cpupool_migrate, "Moves a domain into a CPU pool", "DOMAIN POOL" },
	{ "info", cmd_info, "Get information about the host", "[--json]" },
	{ "uptime", cmd_uptime, "Print uptime for all/some domains", "[--json] [DOMAIN ...]" },
	{ "domid", cmd_domid, "Convert a domain name to domain id", "NAME" },
	{ "domname", cmd_domname, "Convert a domain id to domain name", "ID" },
	{ "dmesg", cmd_dmesg, "Read the agent's log", "" },
	{ "debug-keys", cmd_debug_keys, "Dump the agent's state (into its log, and printed)",
	  "[KEYS]" },
	{ "top", cmd_top, "Monitor host and domains (batch mode only)",
	  "-b [-d DELAY] [-i ITERATIONS] [--json]\n"
	  "  -d DELAY       seconds between samples; CPU(%) covers that interval (default 3)\n"
	  "  -i ITERATIONS  samples to print (default 1)" },
	{ "save", cmd_save, "Save a domain state to restore later",
	  "[-c] [-p] DOMAIN FILE\n  -c  leave the domain running after saving (checkpoint)\n"
	  "  -p  with -c: leave it paused" },
	{ "restore", cmd_restore, "Restore a domain from a saved state",
	  "[-p] [-e] [-c] FILE\n  -p  leave the domain paused\n"
	  "  -e  do not wait for the domain (xst never waits)\n  -c  attach to the console" },
	{ "migrate", cmd_migrate, "Migrate a domain to another host (its xst-agent)",
	  "[--downtime MS] [--max-rounds N] [--bandwidth MIB] DOMAIN HOST\n"
	  "  HOST           ADDR[:PORT] (port 8003) or tcp://ADDR:PORT of the agent there\n"
	  "  --downtime MS  stop-and-copy budget (default 30)\n"
	  "  --max-rounds N pre-copy rounds at most (default 30)\n"
	  "  --bandwidth MIB cap the stream at MIB MiB/s (default: none)\n"
	  "  Ctrl-C cancels (the domain keeps running here)" },
	{ "migrate-cancel", cmd_migrate_cancel, "Cancel a running migration",
	  "DOMAIN [HOST]" },
	{ "help", cmd_help, "Print help for a command", "[COMMAND]" },
};
#define NCMDS (sizeof(cmds) / sizeof(cmds[0]))

static const struct xst_cmd *cmd_find(const char *name)
{
	unsigned int i;

	for (i = 0; i < NCMDS; i++)
		if (strcmp(cmds[i].name, name) == 0)
			return &cmds[i];
	return NULL;
}

int xst_err(const char *fmt, ...)
{
	va_list ap;

	fprintf(stderr, "xst: %s: ", xst_cmd_name);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	return 1;
}

int xst_usage(const char *fmt, ...)
{
	const struct xst_cmd *c = cmd_find(xst_cmd_name);
	va_list ap;

	fprintf(stderr, "xst: %s: ", xst_cmd_name);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	if (c) {
		const char *nl = strchr(c->usage, '\n');
		fprintf(stderr, "usage: xst %s %.*s\n", c->name,
			nl ? (int)(nl - c->usage) : (int)strlen(c->usage), c->usage);
	}
	return 2;
}

static void usage_all(FILE *f)
{
	unsigned int i;

	fprintf(f, "Usage: xst [-a AGENT_URL] [--json] <subcommand> [args]\n\n"
		   "AGENT_URL defaults to $XST_AGENT, else " XST_DEFAULT_AGENT ".\n\n"
		   "Subcommands:\n");
	for (i = 0; i < NCMDS; i++)
		fprintf(f, " %-20s %s\n", cmds[i].name, cmds[i].help);
}

int cmd_help(void *ctx, int argc, char **argv)
{
	const struct xst_cmd *c;

	if (argc < 2) {
		usage_all(stdout);
		return 0;
	}
	c = cmd_find(argv[1]);
	if (!c)
		return xst_err("unknown command \"%s\"", argv[1]);
	printf("Usage: xst %s %s\n\n%s.\n", c->name, c->usage, c->help);
	return 0;
}

int xst_call(void *ctx, Xstagent__Request *req, Xstagent__Reply **rep)
{
	struct xst_rpc *rpc;
	ProtobufCMessage *m;
	int rv;

	*rep = NULL;
	rv = xst_rpc_dial(ctx, xst_agent_url, &rpc);
	if (rv < 0) {
		xst_err("cannot reach the agent at %s: %s", xst_agent_url, strerror(-rv));
		return rv;
	}
	/* Creating a domain spawns a process and may take a while on a loaded host. */
	rv = xst_rpc_call_msg(rpc, &req->base, 120000, &xstagent__reply__descriptor, ctx, &m);
	talloc_free(rpc);
	if (rv < 0) {
		xst_err("no answer from the agent at %s: %s", xst_agent_url, strerror(-rv));
		return rv;
	}
	*rep = (Xstagent__Reply *)m;
	if ((*rep)->error) {
		xst_err("%s", (*rep)->message ? (*rep)->message : strerror(-(*rep)->error));
		return (*rep)->error < 0 ? (*rep)->error : -EIO;
	}
	return 0;
}

int xst_call_dom(void *ctx, Xstagent__Request__BodyCase body, const char *dom,
		 Xstagent__Reply **rep)
{
	Xstagent__Request req = XSTAGENT__REQUEST__INIT;
	Xstagent__DomRef ref = XSTAGENT__DOM_REF__INIT;

	ref.dom = (char *)dom;
	req.body_case = body;
	switch (body) {
	case XSTAGENT__REQUEST__BODY_DESTROY: req.destroy = &ref; break;
	case XSTAGENT__REQUEST__BODY_PAUSE: req.pause = &ref; break;
	case XSTAGENT__REQUEST__BODY_UNPAUSE: req.unpause = &ref; break;
	case XSTAGENT__REQUEST__BODY_VCPU_LIST: req.vcpu_list = &ref; break;
	case XSTAGENT__REQUEST__BODY_DOMID: req.domid = &ref; break;
	case XSTAGENT__REQUEST__BODY_DOMNAME: req.domname = &ref; break;
	default:
		return -EINVAL;
	}
	return xst_call(ctx, &req, rep);
}

int xst_json_print(struct xst_json *j)
{
	const char *text;
	size_t len;
	int rv = xst_json_finish(j, &text, &len);

	if (rv < 0)
		return xst_err("cannot format JSON: %s", strerror(-rv));
	fwrite(text, 1, len, stdout);
	if (len && text[len - 1] != '\n')
		fputc('\n', stdout);
	return 0;
}

void xst_json_config(struct xst_json *j, const Xstagent__DomainConfig *c)
{
	char uuid[37];

	xst_json_map_open(j);
	xst_json_kv_string(j, "name", c->name);
	if (c->has_uuid && c->uuid.len == 16) {
		xlcfg_uuid_format(c->uuid.data, uuid);
		xst_json_kv_string(j, "uuid", uuid);
	} else {
		xst_json_kv_string(j, "uuid", NULL);
	}
	xst_json_kv_string(j, "type", c->type);
	xst_json_kv_uint(j, "memory", c->memory_mib);
	xst_json_kv_uint(j, "maxmem", c->maxmem_mib);
	xst_json_kv_uint(j, "vcpus", c->vcpus);
	xst_json_kv_uint(j, "maxvcpus", c->maxvcpus);
	xst_json_kv_string(j, "cpus", c->cpus);
	xst_json_kv_uint(j, "cpu_weight", c->cpu_weight);
	xst_json_kv_uint(j, "cpu_cap", c->cpu_cap);
	xst_json_kv_string(j, "pool", c->pool);
	xst_json_kv_string(j, "kernel", c->kernel);
	xst_json_kv_string(j, "ramdisk", c->ramdisk);
	xst_json_kv_string(j, "cmdline", c->cmdline);
	xst_json_kv_string(j, "on_poweroff", c->on_poweroff);
	xst_json_kv_string(j, "on_reboot", c->on_reboot);
	xst_json_kv_string(j, "on_crash", c->on_crash);
	xst_json_kv_string(j, "on_soft_reset", c->on_soft_reset);
	xst_json_kv_string(j, "workload", c->workload);
	xst_json_kv_string(j, "core", c->core);
	xst_json_map_close(j);
}

int xst_parse_uint(const char *s, uint64_t max, uint64_t *out)
{
	char *end;

	if (!isdigit((unsigned char)s[0]))
		return -EINVAL;
	errno = 0;
	*out = strtoull(s, &end, 10);
	if (*end || errno || *out > max)
		return -EINVAL;
	return 0;
}

int xst_parse_mem_kib(const char *s, uint64_t *kib)
{
	unsigned long long v;
	char *end;
	int shift;

	if (!isdigit((unsigned char)s[0]))
		return -EINVAL;
	errno = 0;
	v = strtoull(s, &end, 10);
	if (errno || strlen(end) > 1)
		return -EINVAL;
	switch (tolower((unsigned char)*end)) {
	case 'b': *kib = v / 1024; return 0;
	case 'k': shift = 0; break;
	case '\0':
	case 'm': shift = 10; break;
	case 'g': shift = 20; break;
	case 't': shift = 30; break;
	default: return -EINVAL;
	}
	if (v > (UINT64_MAX >> shift))
		return -ERANGE;
	*kib = (uint64_t)v << shift;
	return 0;
}

int main(int argc, char **argv)
{
	const struct xst_cmd *c;
	const char *env = getenv("XST_AGENT");
	char **args;
	void *ctx;
	int i, n = 0, rv;

	if (env && env[0])
		xst_agent_url = env;
	/* Global options before the subcommand. */
	for (i = 1; i < argc; i++) {
		if (strcmp(argv[i], "-a") == 0 && i + 1 < argc) {
			xst_agent_url = argv[++i];
		} else if (strcmp(argv[i], "--json") == 0) {
			xst_json = true;
		} else if (strcmp(argv[i], "-h") == 0 || strcmp(argv[i], "--help") == 0) {
			usage_all(stdout);
			return 0;
		} else if (argv[i][0] == '-') {
			fprintf(stderr, "xst: unknown option \"%s\"\n", argv[i]);
			usage_all(stderr);
			return 2;
		} else {
			break;
		}
	}
	if (i >= argc) {
		usage_all(stderr);
		return 2;
	}
	c = cmd_find(argv[i]);
	if (!c) {
		fprintf(stderr, "xst: unknown command \"%s\" (try `xst help`)\n", argv[i]);
		return 2;
	}
	xst_cmd_name = c->name;
	ctx = talloc_new(NULL);
	if (!ctx) {
		fprintf(stderr, "xst: out of memory\n");
		return 1;
	}
	/* --json anywhere among the command's arguments, and -h/--help. */
	args = talloc_array(ctx, char *, argc - i + 1);
	if (!args) {
		fprintf(stderr, "xst: out of memory\n");
		return 1;
	}
	for (; i < argc; i++) {
		if (strcmp(argv[i], "--json") == 0) {
			xst_json = true;
			continue;
		}
		if (n > 0 && (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0)) {
			char *hargv[] = { "help", (char *)c->name, NULL };
			rv = cmd_help(ctx, 2, hargv);
			talloc_free(ctx);
			return rv;
		}
		args[n++] = argv[i];
	}
	args[n] = NULL;
	rv = c->fn(ctx, n, args);
	talloc_free(ctx);
	fflush(stdout);
	return rv;
}

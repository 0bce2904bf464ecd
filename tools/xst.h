/*
 * xst: the xl-shaped command-line tool.  A command table (xst.c) maps each subcommand
 * to a function in one of the cmd_*.c files; every command prints one clear error line
 * `xst: CMD: what went wrong` and returns non-zero on failure.  Queries print through
 * proto/json when --json is given.
 */
#ifndef XST_TOOLS_XST_H
#define XST_TOOLS_XST_H

#include <stdbool.h>
#include <stdint.h>

#include "proto/agent.pb-c.h"
#include "proto/json.h"

struct xst_cmd {
	const char *name;
	int (*fn)(void *ctx, int argc, char **argv);
	const char *help;  /* one line */
	const char *usage; /* options and arguments, may span lines */
};

/* Global options (xst.c). */
extern const char *xst_agent_url; /* -a URL, $XST_AGENT, default below */
extern bool xst_json;             /* --json */
extern const char *xst_cmd_name;  /* the running subcommand, for messages */
#define XST_DEFAULT_AGENT "ipc:///var/run/xst/agent.ipc"

/* Print `xst: CMD: message` on stderr; returns 1 (the exit status). */
int xst_err(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* Usage error: the message and the command's usage line; returns 2. */
int xst_usage(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* Send `req` to the agent and wait for the reply (on ctx).  Transport failures and
 * error replies are printed (xst_err) and give a negative errno. */
int xst_call(void *ctx, Xstagent__Request *req, Xstagent__Reply **rep);
/* Shorthand: request with one DomRef body; case = the Request oneof case. */
int xst_call_dom(void *ctx, Xstagent__Request__BodyCase body, const char *dom,
		 Xstagent__Reply **rep);

/* Print a finished JSON generator to stdout; returns 0 or 1. */
int xst_json_print(struct xst_json *j);
/* Generate the JSON object of a DomainConfig (the dry-run / list -l format). */
void xst_json_config(struct xst_json *j, const Xstagent__DomainConfig *c);

/* Parse a memory size: number with optional suffix b/k/m/g/t, default MiB -> KiB. */
int xst_parse_mem_kib(const char *s, uint64_t *kib);
/* Parse an unsigned decimal; -EINVAL unless all of s is a number <= max. */
int xst_parse_uint(const char *s, uint64_t max, uint64_t *out);

/* Commands. */
int cmd_create(void *ctx, int argc, char **argv);
int cmd_console(void *ctx, int argc, char **argv);
int cmd_console_connect(const char *path, const char *name);
int cmd_destroy(void *ctx, int argc, char **argv);
int cmd_shutdown(void *ctx, int argc, char **argv);
int cmd_reboot(void *ctx, int argc, char **argv);
int cmd_pause(void *ctx, int argc, char **argv);
int cmd_unpause(void *ctx, int argc, char **argv);
int cmd_rename(void *ctx, int argc, char **argv);
int cmd_domid(void *ctx, int argc, char **argv);
int cmd_domname(void *ctx, int argc, char **argv);
int cmd_list(void *ctx, int argc, char **argv);
int cmd_info(void *ctx, int argc, char **argv);
int cmd_uptime(void *ctx, int argc, char **argv);
int cmd_top(void *ctx, int argc, char **argv);
int cmd_dmesg(void *ctx, int argc, char **argv);
int cmd_debug_keys(void *ctx, int argc, char **argv);
int cmd_mem_set(void *ctx, int argc, char **argv);
int cmd_mem_max(void *ctx, int argc, char **argv);
int cmd_vcpu_set(void *ctx, int argc, char **argv);
int cmd_vcpu_list(void *ctx, int argc, char **argv);
int cmd_vcpu_pin(void *ctx, int argc, char **argv);
int cmd_sched_credit(void *ctx, int argc, char **argv);
int cmd_cpupool_list(void *ctx, int argc, char **argv);
int cmd_cpupool_create(void *ctx, int argc, char **argv);
int cmd_cpupool_destroy(void *ctx, int argc, char **argv);
int cmd_cpupool_cpu_add(void *ctx, int argc, char **argv);
int cmd_cpupool_cpu_remove(void *ctx, int argc, char **argv);
int cmd_cpupool_migrate(void *ctx, int argc, char **argv);
int cmd_help(void *ctx, int argc, char **argv);

#endif

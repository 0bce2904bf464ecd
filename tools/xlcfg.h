/*
 * xl.cfg parser: Xen's domain configuration syntax (see docs/xl-cfg.md).
 *
 *   # comment
 *   name = "vm1"            strings in "..." or '...'
 *   memory = 512            numbers (decimal or 0x hex)
 *   cpus = ["0-1", "3"]     lists, which may continue over several lines
 *   vcpus = 2; maxvcpus = 4 ';' also ends a setting
 *
 * xlcfg_parse() reads the syntax into settings; xlcfg_resolve() checks keys and types
 * and fills a struct xlcfg_domain with defaults applied.  Errors are one line in
 * err[errlen] of the form `FILE:LINE: what` and the functions return -EINVAL.
 */
#ifndef XST_TOOLS_XLCFG_H
#define XST_TOOLS_XLCFG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum xlcfg_type { XLCFG_STRING, XLCFG_NUMBER, XLCFG_LIST };

struct xlcfg_value {
	enum xlcfg_type type;
	const char *s;		   /* STRING; NUMBER: its text */
	uint64_t n;		   /* NUMBER */
	unsigned int nitems;	   /* LIST */
	struct xlcfg_value *items; /* LIST: strings or numbers */
};

struct xlcfg_setting {
	const char *key;
	const char *file; /* where it was set, for messages */
	unsigned int line;
	struct xlcfg_value value;
};

struct xlcfg {
	unsigned int n;
	struct xlcfg_setting *settings;
};

/* The resolved domain configuration. */
struct xlcfg_domain {
	const char *name;
	bool has_uuid;
	uint8_t uuid[16];
	const char *type;	 /* "pvh" (default), "hvm", "pv" */
	uint64_t memory_mib;	 /* default 128 */
	uint64_t maxmem_mib;	 /* default = memory */
	unsigned int vcpus;	 /* default 1 */
	unsigned int maxvcpus;	 /* default = vcpus */
	const char *cpus;	 /* affinity as a cpu list "0-3,5", NULL = all */
	unsigned int cpu_weight; /* default 256 */
	unsigned int cpu_cap;	 /* default 0 (none) */
	const char *pool;	 /* default "Pool-0" */
	const char *kernel, *ramdisk, *cmdline;
	const char *on_poweroff, *on_reboot, *on_crash, *on_soft_reset;
	const char *workload; /* sim core */
	const char *core;     /* "auto" (default), "sim", "kvm" */
};

/* Parse `text` (from `file`, used in messages) appending to *cfg (allocated on ctx
 * when *cfg is NULL).  A later setting of the same key replaces an earlier one only
 * when `override` is set (command-line key=value); otherwise it is an error. */
int xlcfg_parse(void *ctx, const char *file, const char *text, bool override, struct xlcfg **cfg,
		char *err, size_t errlen);
/* Read and parse a file. */
int xlcfg_parse_file(void *ctx, const char *path, struct xlcfg **cfg, char *err, size_t errlen);
/* Check and resolve: unknown keys, wrong types, ranges, defaults.  Strings in *out
 * are allocated on ctx. */
int xlcfg_resolve(void *ctx, const struct xlcfg *cfg, const char *file, struct xlcfg_domain *out,
		  char *err, size_t errlen);

/* "0-3,5" -> bitmap of up to 1024 cpus; -EINVAL on bad syntax. */
int xlcfg_cpulist_parse(const char *s, uint64_t map[16], unsigned int *highest);
/* uuid text <-> bytes. */
int xlcfg_uuid_parse(const char *s, uint8_t uuid[16]);
void xlcfg_uuid_format(const uint8_t uuid[16], char out[37]);
/* Is `a` an action name on_* accepts? */
bool xlcfg_action_valid(const char *a);

#endif

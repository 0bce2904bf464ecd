/*
 * Plugin loader: dlopen a core, check its ops table, allocate the hv.
 */
#include <dlfcn.h>
#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <talloc.h>

#include "core/core.h"

static void why_set(char *why, size_t len, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
static void why_set(char *why, size_t len, const char *fmt, ...)
{
	va_list ap;

	if (!why || !len)
		return;
	va_start(ap, fmt);
	vsnprintf(why, len, fmt, ap);
	va_end(ap);
}

/* vms go first (they call into the plugin), then fini, then the code is unmapped. */
static int hv_destructor(struct xst_hv *hv)
{
	talloc_free(hv->vms);
	hv->vms = NULL;
	/* ops is set only once init succeeded (or there is none). */
	if (hv->ops && hv->ops->fini)
		hv->ops->fini(hv);
	if (hv->handle)
		dlclose(hv->handle);
	return 0;
}

/* The checks every plugin must pass before anything of it is called but probe. */
static int ops_check(const struct xst_hv_ops *ops, char *why, size_t len)
{
	static const struct {
		const char *name;
		size_t off;
	} mandatory[] = {
		{"probe", offsetof(struct xst_hv_ops, probe)},
		{"vm_create", offsetof(struct xst_hv_ops, vm_create)},
		{"vm_destroy", offsetof(struct xst_hv_ops, vm_destroy)},
		{"vm_info", offsetof(struct xst_hv_ops, vm_info)},
		{"vcpu_create", offsetof(struct xst_hv_ops, vcpu_create)},
		{"vcpu_run", offsetof(struct xst_hv_ops, vcpu_run)},
		{"vcpu_kick", offsetof(struct xst_hv_ops, vcpu_kick)},
	};
	unsigned int i;

	if (ops->abi_version != XST_HV_ABI_VERSION) {
		why_set(why, len, "ABI version %u, expected %u", ops->abi_version,
			XST_HV_ABI_VERSION);
		return -EPROTO;
	}
	if (!ops->name || !ops->name[0]) {
		why_set(why, len, "ops table has no name");
		return -EINVAL;
	}
	for (i = 0; i < sizeof(mandatory) / sizeof(mandatory[0]); i++) {
		void *const *fn = (void *const *)((const char *)ops + mandatory[i].off);
		if (!*fn) {
			why_set(why, len, "mandatory op %s missing", mandatory[i].name);
			return -EINVAL;
		}
	}
	return 0;
}

int xst_hv_open_path(void *ctx, const char *path, struct xst_hv **out, char *why, size_t len)
{
	struct xst_hv *hv;
	xst_hv_plugin_fn fn;
	const struct xst_hv_ops *ops;
	char reason[256] = "";
	int ret;

	*out = NULL;
	if (access(path, R_OK) != 0) {
		ret = -errno;
		why_set(why, len, "%s: %s", path, strerror(errno));
		return ret;
	}
	hv = talloc_zero(ctx, struct xst_hv);
	if (!hv)
		return -ENOMEM;
	talloc_set_destructor(hv, hv_destructor);
	hv->vms = talloc_named_const(hv, 0, "vms");
	if (!hv->vms) {
		talloc_free(hv);
		return -ENOMEM;
	}
	hv->handle = dlopen(path, RTLD_NOW | RTLD_LOCAL);
	if (!hv->handle) {
		why_set(why, len, "%s", dlerror());
		ret = -ENOEXEC;
		goto out;
	}
	fn = (xst_hv_plugin_fn)dlsym(hv->handle, XST_HV_PLUGIN_SYMBOL);
	if (!fn) {
		why_set(why, len, "%s: no symbol %s", path, XST_HV_PLUGIN_SYMBOL);
		ret = -ENOEXEC;
		goto out;
	}
	ops = fn();
	if (!ops) {
		why_set(why, len, "%s: %s returned NULL", path, XST_HV_PLUGIN_SYMBOL);
		ret = -ENOEXEC;
		goto out;
	}
	ret = ops_check(ops, reason, sizeof(reason));
	if (ret < 0) {
		why_set(why, len, "%s: %s", path, reason);
		goto out;
	}
	ret = ops->probe(reason, sizeof(reason));
	if (ret < 0) {
		why_set(why, len, "%s: %s", ops->name, reason[0] ? reason : strerror(-ret));
		goto out;
	}
	if (ops->hv_priv_size) {
		hv->priv = talloc_zero_size(hv, ops->hv_priv_size);
		if (!hv->priv) {
			ret = -ENOMEM;
			goto out;
		}
	}
	if (ops->init) {
		ret = ops->init(hv);
		if (ret < 0) {
			why_set(why, len, "%s: init: %s", ops->name, strerror(-ret));
			goto out;
		}
	}
	hv->ops = ops;
	*out = hv;
	return 0;
out:
	talloc_free(hv);
	return ret;
}

/* Directory holding the plugins: $XST_PLUGIN_DIR or <exe dir>/../plugins. */
static int plugin_dir(char *buf, size_t len)
{
	const char *env = getenv("XST_PLUGIN_DIR");
	char exe[PATH_MAX];
	ssize_t n;
	char *slash;

	if (env && env[0]) {
		if ((size_t)snprintf(buf, len, "%s", env) >= len)
			return -ENAMETOOLONG;
		return 0;
	}
	n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
	if (n < 0)
		return -errno;
	exe[n] = '\0';
	slash = strrchr(exe, '/');
	if (!slash)
		return -ENOENT;
	*slash = '\0';
	if ((size_t)snprintf(buf, len, "%s/../plugins", exe) >= len)
		return -ENAMETOOLONG;
	return 0;
}

static int open_named(void *ctx, const char *name, struct xst_hv **out, char *why, size_t len)
{
	char dir[PATH_MAX], path[PATH_MAX + 64];
	int ret;

	if (!name[0] || strchr(name, '/') || strlen(name) > 32) {
		why_set(why, len, "bad core name \"%s\"", name);
		return -EINVAL;
	}
	ret = plugin_dir(dir, sizeof(dir));
	if (ret < 0) {
		why_set(why, len, "cannot find the plugin directory: %s", strerror(-ret));
		return ret;
	}
	snprintf(path, sizeof(path), "%s/%s/xst-hv-%s.so", dir, name, name);
	return xst_hv_open_path(ctx, path, out, why, len);
}

int xst_hv_open(void *ctx, const char *name, struct xst_hv **out, char *why, size_t len)
{
	int ret;

	*out = NULL;
	if (!name || strcmp(name, "auto") != 0)
		return open_named(ctx, name ? name : "", out, why, len);
	ret = open_named(ctx, "kvm", out, why, len);
	if (ret == 0)
		return 0;
	return open_named(ctx, "sim", out, why, len);
}

const char *xst_hv_name(const struct xst_hv *hv)
{
	return hv->ops->name;
}

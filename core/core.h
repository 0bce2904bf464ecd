/*
 * libxstcore: load a hypervisor core (plugin) and drive its objects.
 *
 * xst_hv_open() finds the plugin, checks its ABI version and mandatory ops, and
 * allocates the hv with its private state.  vm and vcpu objects are owned by their
 * parent (vm by hv, vcpu by vm) and freed before it; freeing one calls the plugin's
 * destroy op through a destructor, so talloc_free() is the one way to release them.  The wrappers below
 * return -EOPNOTSUPP for optional ops the plugin leaves NULL.  Threading rules are those
 * of core/hv.h.
 */
#ifndef XST_CORE_CORE_H
#define XST_CORE_CORE_H

#include "core/hv.h"

/* Plugin search: $XST_PLUGIN_DIR/<name>/xst-hv-<name>.so, else
 * <dir of /proc/self/exe>/../plugins/<name>/xst-hv-<name>.so.  `name` "auto" tries kvm
 * (only if its probe succeeds), then sim.  On failure returns -errno and, if why is not
 * NULL, a one-line reason in why[len]. */
int xst_hv_open(void *ctx, const char *name, struct xst_hv **out, char *why, size_t len);
/* Load a plugin from an explicit path (tests). */
int xst_hv_open_path(void *ctx, const char *path, struct xst_hv **out, char *why, size_t len);
const char *xst_hv_name(const struct xst_hv *hv);

/* Create a vm on hv (owned by hv: talloc_free it, or hv frees it first); the strings
 * of cfg are copied. */
int xst_vm_create(struct xst_hv *hv, const struct xst_vm_config *cfg, struct xst_vm **out);
/* A vm with its memory size and platform ready but no domain in it yet (a spare
 * domain process, docs/domain-process.md): the plugin's vm_prepare.  -EOPNOTSUPP if the
 * core has none.  Owned by hv like a created vm; talloc_free releases it. */
int xst_vm_prepare(struct xst_hv *hv, uint64_t mem_max_kib, struct xst_vm **out);
/* Create the domain in a prepared vm.  -EINVAL if cfg->mem_max_kib is not the prepared
 * size.  On failure the vm must be freed (it may be half-loaded). */
int xst_vm_create_prepared(struct xst_vm *vm, const struct xst_vm_config *cfg);
/* Create vcpu `id` (owned by the vm; talloc_free it, or the vm frees it first). */
int xst_vcpu_create(struct xst_vm *vm, unsigned int id, struct xst_vcpu **out);

int xst_vm_info(struct xst_vm *vm, struct xst_vm_info *info);
int xst_vm_set_mem_target(struct xst_vm *vm, uint64_t kib);
int xst_vm_set_mem_max(struct xst_vm *vm, uint64_t kib);
int xst_vm_dirty_log_enable(struct xst_vm *vm, bool on);
int xst_vm_dirty_log_fetch(struct xst_vm *vm, uint64_t *bitmap, uint64_t npages);
int xst_vm_read_page(struct xst_vm *vm, uint64_t gfn, void *buf);
int xst_vm_write_page(struct xst_vm *vm, uint64_t gfn, const void *buf);
uint64_t xst_vm_npages(struct xst_vm *vm);
int xst_vm_state_save(struct xst_vm *vm, void *ctx, uint8_t **blob, size_t *len);
int xst_vm_state_load(struct xst_vm *vm, const uint8_t *blob, size_t len);
int xst_vm_soft_reset(struct xst_vm *vm);
int xst_vm_mem_fd(struct xst_vm *vm, int *fd);
int xst_vm_cpu_features(struct xst_vm *vm, void *ctx, uint8_t **blob, size_t *len);
int xst_vm_cpu_check(struct xst_vm *vm, const uint8_t *blob, size_t len, char *why,
		     size_t whylen);
int xst_vm_console_attach(struct xst_vm *vm, xst_console_fn fn, void *opaque);
int xst_vm_console_write(struct xst_vm *vm, const char *buf, size_t len);
int xst_vm_xs_ring(struct xst_vm *vm, struct xst_xs_ring *ring);
int xst_vm_sched_set(struct xst_vm *vm, unsigned int weight, unsigned int cap);

int xst_vcpu_run(struct xst_vcpu *vcpu, struct xst_vcpu_exit *exit);
void xst_vcpu_kick(struct xst_vcpu *vcpu);
int xst_vcpu_info(struct xst_vcpu *vcpu, struct xst_vcpu_info *info);
int xst_vcpu_state_save(struct xst_vcpu *vcpu, void *ctx, uint8_t **blob, size_t *len);
int xst_vcpu_state_load(struct xst_vcpu *vcpu, const uint8_t *blob, size_t len);

const char *xst_shutdown_reason_name(enum xst_shutdown_reason r);
const char *xst_vm_state_name(enum xst_vm_state s);

#endif

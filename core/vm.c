/*
 * vm and vcpu objects: allocation of plugin-private state, destructors, and thin
 * wrappers that turn a missing optional op into -EOPNOTSUPP.
 */
#include <errno.h>
#include <string.h>

#include <talloc.h>

#include "core/core.h"

/* vcpus hang below vm->vcpus, a holder the vm's destructor frees first: the plugin's
 * vm_destroy expects no vcpus left, and a talloc destructor runs before children go. */
static int vcpu_destructor(struct xst_vcpu *vcpu)
{
	const struct xst_hv_ops *ops = vcpu->vm->hv->ops;

	if (ops->vcpu_destroy)
		ops->vcpu_destroy(vcpu);
	return 0;
}


static int vm_destructor(struct xst_vm *vm)
{
	talloc_free(vm->vcpus);
	vm->vcpus = NULL;
	vm->hv->ops->vm_destroy(vm);
	return 0;
}

static char *dup_or_null(void *ctx, const char *s)
{
	return s ? talloc_strdup(ctx, s) : NULL;
}

/* Copy cfg into vm->cfg, the strings onto the vm. */
static int vm_config_set(struct xst_vm *vm, const struct xst_vm_config *cfg)
{
	if (!cfg->name || !cfg->vcpus_max || cfg->vcpus_online > cfg->vcpus_max ||
	    !cfg->mem_max_kib || cfg->mem_target_kib > cfg->mem_max_kib)
		return -EINVAL;
	vm->cfg = *cfg;
	vm->cfg.name = talloc_strdup(vm, cfg->name);
	vm->cfg.kernel = dup_or_null(vm, cfg->kernel);
	vm->cfg.ramdisk = dup_or_null(vm, cfg->ramdisk);
	vm->cfg.cmdline = dup_or_null(vm, cfg->cmdline);
	vm->cfg.workload = dup_or_null(vm, cfg->workload);
	if (!vm->cfg.name || (cfg->kernel && !vm->cfg.kernel) ||
	    (cfg->ramdisk && !vm->cfg.ramdisk) || (cfg->cmdline && !vm->cfg.cmdline) ||
	    (cfg->workload && !vm->cfg.workload))
		return -ENOMEM;
	return 0;
}

/* A vm object with its private state, no plugin call yet (no destructor). */
static struct xst_vm *vm_alloc(struct xst_hv *hv)
{
	struct xst_vm *vm = talloc_zero(hv->vms, struct xst_vm);

	if (!vm)
		return NULL;
	vm->hv = hv;
	vm->vcpus = talloc_named_const(vm, 0, "vcpus");
	if (hv->ops->vm_priv_size)
		vm->priv = talloc_zero_size(vm, hv->ops->vm_priv_size);
	if (!vm->vcpus || (hv->ops->vm_priv_size && !vm->priv)) {
		talloc_free(vm);
		return NULL;
	}
	return vm;
}

int xst_vm_create(struct xst_hv *hv, const struct xst_vm_config *cfg, struct xst_vm **out)
{
	struct xst_vm *vm;
	int ret;

	*out = NULL;
	vm = vm_alloc(hv);
	if (!vm)
		return -ENOMEM;
	ret = vm_config_set(vm, cfg);
	if (ret < 0)
		goto out;
	ret = hv->ops->vm_create(vm, &vm->cfg);
	if (ret < 0)
		goto out;
	talloc_set_destructor(vm, vm_destructor);
	*out = vm;
	return 0;
out:
	talloc_free(vm);
	return ret;
}

int xst_vm_prepare(struct xst_hv *hv, uint64_t mem_max_kib, struct xst_vm **out)
{
	struct xst_vm *vm;
	int ret;

	*out = NULL;
	if (!hv->ops->vm_prepare)
		return -EOPNOTSUPP;
	if (!mem_max_kib)
		return -EINVAL;
	vm = vm_alloc(hv);
	if (!vm)
		return -ENOMEM;
	ret = hv->ops->vm_prepare(vm, mem_max_kib);
	if (ret < 0) {
		talloc_free(vm);
		return ret;
	}
	vm->prepared_kib = mem_max_kib;
	talloc_set_destructor(vm, vm_destructor);
	*out = vm;
	return 0;
}

int xst_vm_create_prepared(struct xst_vm *vm, const struct xst_vm_config *cfg)
{
	int ret;

	if (!vm->prepared_kib || cfg->mem_max_kib != vm->prepared_kib)
		return -EINVAL;
	ret = vm_config_set(vm, cfg);
	if (ret < 0)
		return ret;
	vm->prepared_kib = 0;
	return vm->hv->ops->vm_create(vm, &vm->cfg);
}

int xst_vcpu_create(struct xst_vm *vm, unsigned int id, struct xst_vcpu **out)
{
	const struct xst_hv_ops *ops = vm->hv->ops;
	struct xst_vcpu *vcpu;
	int ret;

	*out = NULL;
	if (id >= vm->cfg.vcpus_max)
		return -EINVAL;
	vcpu = talloc_zero(vm->vcpus, struct xst_vcpu);
	if (!vcpu)
		return -ENOMEM;
	vcpu->vm = vm;
	vcpu->id = id;
	if (ops->vcpu_priv_size) {
		vcpu->priv = talloc_zero_size(vcpu, ops->vcpu_priv_size);
		if (!vcpu->priv) {
			talloc_free(vcpu);
			return -ENOMEM;
		}
	}
	ret = ops->vcpu_create(vcpu, id);
	if (ret < 0) {
		talloc_free(vcpu);
		return ret;
	}
	talloc_set_destructor(vcpu, vcpu_destructor);
	*out = vcpu;
	return 0;
}

#define VM_OP(vm, op, ...) \
	((vm)->hv->ops->op ? (vm)->hv->ops->op((vm), ##__VA_ARGS__) : -EOPNOTSUPP)
#define VCPU_OP(vcpu, op, ...) \
	((vcpu)->vm->hv->ops->op ? (vcpu)->vm->hv->ops->op((vcpu), ##__VA_ARGS__) : -EOPNOTSUPP)

int xst_vm_info(struct xst_vm *vm, struct xst_vm_info *info)
{
	memset(info, 0, sizeof(*info));
	return vm->hv->ops->vm_info(vm, info);
}

int xst_vm_set_mem_target(struct xst_vm *vm, uint64_t kib)
{
	return VM_OP(vm, vm_set_mem_target, kib);
}

int xst_vm_set_mem_max(struct xst_vm *vm, uint64_t kib)
{
	return VM_OP(vm, vm_set_mem_max, kib);
}

int xst_vm_dirty_log_enable(struct xst_vm *vm, bool on)
{
	return VM_OP(vm, vm_dirty_log_enable, on);
}

int xst_vm_dirty_log_fetch(struct xst_vm *vm, uint64_t *bitmap, uint64_t npages)
{
	return VM_OP(vm, vm_dirty_log_fetch, bitmap, npages);
}

int xst_vm_read_page(struct xst_vm *vm, uint64_t gfn, void *buf)
{
	return VM_OP(vm, vm_read_page, gfn, buf);
}

int xst_vm_write_page(struct xst_vm *vm, uint64_t gfn, const void *buf)
{
	return VM_OP(vm, vm_write_page, gfn, buf);
}

uint64_t xst_vm_npages(struct xst_vm *vm)
{
	return vm->hv->ops->vm_npages ? vm->hv->ops->vm_npages(vm) : 0;
}

int xst_vm_state_save(struct xst_vm *vm, void *ctx, uint8_t **blob, size_t *len)
{
	return VM_OP(vm, vm_state_save, ctx, blob, len);
}

int xst_vm_state_load(struct xst_vm *vm, const uint8_t *blob, size_t len)
{
	return VM_OP(vm, vm_state_load, blob, len);
}

int xst_vm_soft_reset(struct xst_vm *vm)
{
	return VM_OP(vm, vm_soft_reset);
}

int xst_vm_mem_fd(struct xst_vm *vm, int *fd)
{
	return VM_OP(vm, vm_mem_fd, fd);
}

int xst_vm_cpu_features(struct xst_vm *vm, void *ctx, uint8_t **blob, size_t *len)
{
	return VM_OP(vm, vm_cpu_features, ctx, blob, len);
}

int xst_vm_cpu_check(struct xst_vm *vm, const uint8_t *blob, size_t len, char *why,
		     size_t whylen)
{
	return VM_OP(vm, vm_cpu_check, blob, len, why, whylen);
}

int xst_vm_console_attach(struct xst_vm *vm, xst_console_fn fn, void *opaque)
{
	return VM_OP(vm, vm_console_attach, fn, opaque);
}

int xst_vm_console_write(struct xst_vm *vm, const char *buf, size_t len)
{
	return VM_OP(vm, vm_console_write, buf, len);
}

int xst_vm_xs_ring(struct xst_vm *vm, struct xst_xs_ring *ring)
{
	ring->mem_fd = ring->kick_fd = ring->notify_fd = -1;
	ring->offset = 0;
	return VM_OP(vm, vm_xs_ring, ring);
}

int xst_vm_sched_set(struct xst_vm *vm, unsigned int weight, unsigned int cap)
{
	if (weight < 1 || weight > 65535 || cap > 100 * vm->cfg.vcpus_max)
		return -EINVAL;
	return VM_OP(vm, vm_sched_set, weight, cap);
}

int xst_vcpu_run(struct xst_vcpu *vcpu, struct xst_vcpu_exit *exit)
{
	memset(exit, 0, sizeof(*exit));
	return vcpu->vm->hv->ops->vcpu_run(vcpu, exit);
}

void xst_vcpu_kick(struct xst_vcpu *vcpu)
{
	vcpu->vm->hv->ops->vcpu_kick(vcpu);
}

int xst_vcpu_info(struct xst_vcpu *vcpu, struct xst_vcpu_info *info)
{
	memset(info, 0, sizeof(*info));
	info->id = vcpu->id;
	return VCPU_OP(vcpu, vcpu_info, info);
}

int xst_vcpu_state_save(struct xst_vcpu *vcpu, void *ctx, uint8_t **blob, size_t *len)
{
	return VCPU_OP(vcpu, vcpu_state_save, ctx, blob, len);
}

int xst_vcpu_state_load(struct xst_vcpu *vcpu, const uint8_t *blob, size_t len)
{
	return VCPU_OP(vcpu, vcpu_state_load, blob, len);
}

const char *xst_shutdown_reason_name(enum xst_shutdown_reason r)
{
	switch (r) {
	case XST_SHUTDOWN_POWEROFF: return "poweroff";
	case XST_SHUTDOWN_REBOOT: return "reboot";
	case XST_SHUTDOWN_SUSPEND: return "suspend";
	case XST_SHUTDOWN_CRASH: return "crash";
	case XST_SHUTDOWN_WATCHDOG: return "watchdog";
	case XST_SHUTDOWN_SOFT_RESET: return "soft_reset";
	}
	return "unknown";
}

const char *xst_vm_state_name(enum xst_vm_state s)
{
	switch (s) {
	case XST_VM_RUNNING: return "running";
	case XST_VM_PAUSED: return "paused";
	case XST_VM_SHUTDOWN: return "shutdown";
	case XST_VM_DYING: return "dying";
	}
	return "unknown";
}

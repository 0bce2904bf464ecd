/* Deliberately broken plugins for hv_test: built once per -D variant. */
#include <errno.h>
#include <stddef.h>

#include "core/hv.h"

__attribute__((unused)) static int probe_ok(char *why, size_t len) { return 0; }
__attribute__((unused)) static int probe_no(char *why, size_t len)
{
	if (len)
		why[0] = 'x', why[len > 1] = '\0';
	return -ENODEV;
}
static int vm_create(struct xst_vm *vm, const struct xst_vm_config *cfg) { return 0; }
static void vm_destroy(struct xst_vm *vm) {}
static int vm_info(struct xst_vm *vm, struct xst_vm_info *info) { return 0; }
static int vcpu_create(struct xst_vcpu *vcpu, unsigned int id) { return 0; }
__attribute__((unused)) static int vcpu_run(struct xst_vcpu *vcpu, struct xst_vcpu_exit *exit) { return 0; }
static void vcpu_kick(struct xst_vcpu *vcpu) {}

static const struct xst_hv_ops ops = {
#ifdef BAD_ABI
	.abi_version = XST_HV_ABI_VERSION + 1,
#else
	.abi_version = XST_HV_ABI_VERSION,
#endif
	.name = "broken",
#ifdef NO_PROBE
	.probe = probe_no,
#else
	.probe = probe_ok,
#endif
	.vm_create = vm_create,
	.vm_destroy = vm_destroy,
	.vm_info = vm_info,
	.vcpu_create = vcpu_create,
#ifndef NO_RUN
	.vcpu_run = vcpu_run,
#endif
	.vcpu_kick = vcpu_kick,
};

const struct xst_hv_ops *xst_hv_plugin_ops(void);
const struct xst_hv_ops *xst_hv_plugin_ops(void)
{
	return &ops;
}

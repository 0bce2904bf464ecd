/* Unit tests of the plugin loader and the vm/vcpu wrappers (libxstcore). */
#include <errno.h>
#include <limits.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>
#include <talloc.h>

#include "core/core.h"

/* Path of a test plugin built beside this program. */
static const char *beside(void *ctx, const char *file)
{
	char exe[PATH_MAX];
	ssize_t n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);

	assert_true(n > 0);
	exe[n] = '\0';
	*strrchr(exe, '/') = '\0';
	return talloc_asprintf(ctx, "%s/%s", exe, file);
}

static void test_open_sim_by_name(void **state)
{
	void *ctx = talloc_new(NULL);
	struct xst_hv *hv;
	char why[256] = "";

	unsetenv("XST_PLUGIN_DIR");
	assert_int_equal(xst_hv_open(ctx, "sim", &hv, why, sizeof(why)), 0);
	assert_string_equal(xst_hv_name(hv), "sim");
	talloc_free(ctx);
}

static void test_open_auto_falls_back(void **state)
{
	void *ctx = talloc_new(NULL);
	struct xst_hv *hv;
	char why[256] = "";

	/* auto is kvm when usable, else sim: either way it loads one of the two */
	assert_int_equal(xst_hv_open(ctx, "auto", &hv, why, sizeof(why)), 0);
	assert_true(!strcmp(xst_hv_name(hv), "sim") || !strcmp(xst_hv_name(hv), "kvm"));
	talloc_free(ctx);
}

static void test_open_unknown(void **state)
{
	void *ctx = talloc_new(NULL);
	struct xst_hv *hv = (void *)1;
	char why[256] = "";

	assert_int_equal(xst_hv_open(ctx, "nosuchcore", &hv, why, sizeof(why)), -ENOENT);
	assert_null(hv);
	assert_non_null(strstr(why, "xst-hv-nosuchcore.so"));
	assert_int_equal(xst_hv_open(ctx, "../sim", &hv, why, sizeof(why)), -EINVAL);
	talloc_free(ctx);
}

static void test_plugin_dir_env(void **state)
{
	void *ctx = talloc_new(NULL);
	struct xst_hv *hv;
	char why[256] = "";

	setenv("XST_PLUGIN_DIR", "/nonexistent", 1);
	assert_int_equal(xst_hv_open(ctx, "sim", &hv, why, sizeof(why)), -ENOENT);
	assert_non_null(strstr(why, "/nonexistent/sim/xst-hv-sim.so"));
	unsetenv("XST_PLUGIN_DIR");
	talloc_free(ctx);
}

static void test_bad_abi(void **state)
{
	void *ctx = talloc_new(NULL);
	struct xst_hv *hv;
	char why[256] = "";

	assert_int_equal(xst_hv_open_path(ctx, beside(ctx, "hv-test-badabi.so"), &hv, why,
					  sizeof(why)), -EPROTO);
	assert_non_null(strstr(why, "ABI version"));
	talloc_free(ctx);
}

static void test_missing_mandatory(void **state)
{
	void *ctx = talloc_new(NULL);
	struct xst_hv *hv;
	char why[256] = "";

	assert_int_equal(xst_hv_open_path(ctx, beside(ctx, "hv-test-norun.so"), &hv, why,
					  sizeof(why)), -EINVAL);
	assert_non_null(strstr(why, "vcpu_run"));
	talloc_free(ctx);
}

static void test_probe_fails(void **state)
{
	void *ctx = talloc_new(NULL);
	struct xst_hv *hv;
	char why[256] = "";

	assert_int_equal(xst_hv_open_path(ctx, beside(ctx, "hv-test-noprobe.so"), &hv, why,
					  sizeof(why)), -ENODEV);
	talloc_free(ctx);
}

static void test_minimal_plugin_optional_ops(void **state)
{
	void *ctx = talloc_new(NULL);
	struct xst_vm_config cfg = {.domid = 1, .name = "t", .mem_max_kib = 1024,
				    .mem_target_kib = 1024, .vcpus_max = 2, .vcpus_online = 1};
	struct xst_hv *hv;
	struct xst_vm *vm, *vm2 = (struct xst_vm *)&cfg;
	struct xst_vcpu *vcpu;
	struct xst_xs_ring ring;
	char why[256] = "", page[XST_PAGE_SIZE];

	assert_int_equal(xst_hv_open_path(ctx, beside(ctx, "hv-test-minimal.so"), &hv, why,
					  sizeof(why)), 0);
	assert_int_equal(xst_vm_create(hv, &cfg, &vm), 0);
	assert_string_equal(vm->cfg.name, "t");
	assert_ptr_not_equal(vm->cfg.name, cfg.name); /* copied */
	assert_int_equal(xst_vcpu_create(vm, 2, &vcpu), -EINVAL);
	assert_int_equal(xst_vcpu_create(vm, 1, &vcpu), 0);
	/* optional ops left NULL answer -EOPNOTSUPP */
	assert_int_equal(xst_vm_set_mem_target(vm, 512), -EOPNOTSUPP);
	assert_int_equal(xst_vm_read_page(vm, 0, page), -EOPNOTSUPP);
	assert_int_equal(xst_vm_xs_ring(vm, &ring), -EOPNOTSUPP);
	assert_int_equal(ring.mem_fd, -1);
	assert_int_equal(xst_vm_sched_set(vm, 0, 0), -EINVAL);
	assert_int_equal(xst_vm_sched_set(vm, 256, 0), -EOPNOTSUPP);
	assert_int_equal(xst_vm_sched_set(vm, 256, 201), -EINVAL);
	assert_int_equal(xst_vm_npages(vm), 0);
	/* no vm_prepare: a spare has nothing prepared; a vm not from it cannot be used so */
	assert_int_equal(xst_vm_prepare(hv, 1024, &vm2), -EOPNOTSUPP);
	assert_null(vm2);
	assert_int_equal(xst_vm_create_prepared(vm, &cfg), -EINVAL);
	cfg.mem_target_kib = 2048; /* above max */
	assert_int_equal(xst_vm_create(hv, &cfg, &vm), -EINVAL);
	talloc_free(ctx); /* vm with a vcpu left: the destructors handle the order */
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_open_sim_by_name),
		cmocka_unit_test(test_open_auto_falls_back),
		cmocka_unit_test(test_open_unknown),
		cmocka_unit_test(test_plugin_dir_env),
		cmocka_unit_test(test_bad_abi),
		cmocka_unit_test(test_missing_mandatory),
		cmocka_unit_test(test_probe_fails),
		cmocka_unit_test(test_minimal_plugin_optional_ops),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}

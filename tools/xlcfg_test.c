/* Unit tests for the xl.cfg parser: syntax, resolution, exact error messages. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>
#include <talloc.h>

#include "tools/xlcfg.h"

static int resolve(void *ctx, const char *text, struct xlcfg_domain *d, char *err, size_t len)
{
	struct xlcfg *cfg = NULL;
	int rv = xlcfg_parse(ctx, "vm.cfg", text, false, &cfg, err, len);

	if (rv < 0)
		return rv;
	return xlcfg_resolve(ctx, cfg, "vm.cfg", d, err, len);
}

static void full_config(void **state)
{
	void *ctx = talloc_new(NULL);
	struct xlcfg_domain d;
	char err[256];

	assert_int_equal(resolve(ctx,
				 "# a guest\n"
				 "name = \"vm1\"\n"
				 "uuid='0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0'\n"
				 "type = 'pvh'; memory = 512\n"
				 "maxmem = 0x400  # hex\n"
				 "vcpus = 2\n"
				 "maxvcpus = \"4\"\n"
				 "cpus = [ \"0-1\",\n"
				 "         \"3\", ]\n"
				 "cpu_weight = 512\n"
				 "cpu_cap = 150\n"
				 "pool = \"fast\"\n"
				 "kernel = \"/boot/vmlinuz\"\n"
				 "root = \"/dev/xvda1\"\n"
				 "extra = \"console=hvc0 \\\"q\\\"\"\n"
				 "on_reboot = 'rename-restart'\n"
				 "on_crash = \"preserve\"\n"
				 "workload = \"dirty=1M/s\"\n"
				 "core = \"sim\"\n",
				 &d, err, sizeof(err)),
			 0);
	assert_string_equal(d.name, "vm1");
	assert_true(d.has_uuid);
	assert_int_equal(d.uuid[0], 0x0f);
	assert_int_equal(d.uuid[15], 0xf0);
	assert_int_equal(d.memory_mib, 512);
	assert_int_equal(d.maxmem_mib, 1024);
	assert_int_equal(d.vcpus, 2);
	assert_int_equal(d.maxvcpus, 4);
	assert_string_equal(d.cpus, "0-1,3");
	assert_int_equal(d.cpu_weight, 512);
	assert_int_equal(d.cpu_cap, 150);
	assert_string_equal(d.pool, "fast");
	assert_string_equal(d.cmdline, "root=/dev/xvda1 console=hvc0 \"q\"");
	assert_string_equal(d.on_poweroff, "destroy");
	assert_string_equal(d.on_reboot, "rename-restart");
	assert_string_equal(d.on_crash, "preserve");
	assert_string_equal(d.on_soft_reset, "soft-reset");
	assert_string_equal(d.workload, "dirty=1M/s");
	assert_string_equal(d.core, "sim");
	talloc_free(ctx);
}

static void defaults(void **state)
{
	void *ctx = talloc_new(NULL);
	struct xlcfg_domain d;
	char err[256];

	assert_int_equal(resolve(ctx, "name='a'", &d, err, sizeof(err)), 0);
	assert_false(d.has_uuid);
	assert_string_equal(d.type, "pvh");
	assert_int_equal(d.memory_mib, 128);
	assert_int_equal(d.maxmem_mib, 128);
	assert_int_equal(d.vcpus, 1);
	assert_int_equal(d.maxvcpus, 1);
	assert_null(d.cpus);
	assert_int_equal(d.cpu_weight, 256);
	assert_int_equal(d.cpu_cap, 0);
	assert_string_equal(d.pool, "Pool-0");
	assert_null(d.cmdline);
	assert_string_equal(d.core, "auto");
	talloc_free(ctx);
}

static void overrides(void **state)
{
	void *ctx = talloc_new(NULL);
	struct xlcfg *cfg = NULL;
	struct xlcfg_domain d;
	char err[256];

	assert_int_equal(
	    xlcfg_parse(ctx, "vm.cfg", "name='a'\nmemory=64\n", false, &cfg, err, sizeof(err)), 0);
	assert_int_equal(
	    xlcfg_parse(ctx, "command line", "memory=256", true, &cfg, err, sizeof(err)), 0);
	assert_int_equal(xlcfg_parse(ctx, "command line", "vcpus=2", true, &cfg, err, sizeof(err)),
			 0);
	assert_int_equal(xlcfg_resolve(ctx, cfg, "vm.cfg", &d, err, sizeof(err)), 0);
	assert_int_equal(d.memory_mib, 256);
	assert_int_equal(d.vcpus, 2);
	talloc_free(ctx);
}

static const struct {
	const char *text;
	const char *msg;
} bad[] = {
    {"name='a'\nmemory=1\nmemroy=2\n", "vm.cfg:3: unknown key \"memroy\""},
    {"memory=1\n", "vm.cfg: missing key \"name\""},
    {"name='a'\nmemory=\"lots\"\n", "vm.cfg:2: \"memory\" must be a number, got \"lots\""},
    {"name='a'\nmemory=[1]\n", "vm.cfg:2: \"memory\" must be a number, not a list"},
    {"name=['a']\n", "vm.cfg:1: \"name\" must be a string, not a list"},
    {"name='a'\nmemory=0\n", "vm.cfg:2: \"memory\" must be between 1 and 16777216, got 0"},
    {"name='a'\nmemory=512\nmaxmem=256\n", "vm.cfg:3: \"maxmem\" (256) is below \"memory\" (512)"},
    {"name='a'\nvcpus=4\nmaxvcpus=2\n", "vm.cfg:3: \"maxvcpus\" (2) is below \"vcpus\" (4)"},
    {"name='a'\nvcpus=0\n", "vm.cfg:2: \"vcpus\" must be between 1 and 128, got 0"},
    {"name='a'\ncpu_weight=70000\n",
     "vm.cfg:2: \"cpu_weight\" must be between 1 and 65535, got 70000"},
    {"name='a'\ncpu_cap=101\n", "vm.cfg:2: \"cpu_cap\" must be between 0 and 100, got 101"},
    {"name='a'\non_crash='explode'\n", "vm.cfg:2: \"on_crash\": unknown action \"explode\""},
    {"name='a'\ntype='bogus'\n", "vm.cfg:2: \"type\": unknown type \"bogus\""},
    {"name='a'\ncore='xen'\n", "vm.cfg:2: \"core\": unknown core \"xen\""},
    {"name='a'\nuuid='1234'\n", "vm.cfg:2: \"uuid\": invalid uuid \"1234\""},
    {"name='a'\ncpus='3-1'\n", "vm.cfg:2: \"cpus\": invalid cpu list \"3-1\""},
    {"name='a/b'\n", "vm.cfg:1: \"name\": invalid domain name \"a/b\" (1..64 characters, no '/', "
		     "not starting with a digit)"},
    {"name='a'\nname='b'\n", "vm.cfg:2: duplicate key \"name\" (first set on line 1)"},
    {"name='a\n", "vm.cfg:1: syntax error: unterminated string"},
    {"name 'a'\n", "vm.cfg:1: syntax error: expected '=' after \"name\", got '''"},
    {"name=\n", "vm.cfg:1: syntax error: expected a value for \"name\", got end of line"},
    {"name='a' 'b'\n", "vm.cfg:1: syntax error: unexpected ''' after the value of \"name\""},
    {"name='a'\ncpus=['1',\n'2'\n", "vm.cfg:2: syntax error: unterminated list for \"cpus\""},
    {"name='a'\ncpus=['1' '2']\n",
     "vm.cfg:2: syntax error: expected ',' or ']' in \"cpus\", got '''"},
    {"name='a'\ncpus=[['1']]\n",
     "vm.cfg:2: syntax error: nested lists are not supported (\"cpus\")"},
    {"=1\n", "vm.cfg:1: syntax error: expected a key, got '='"},
    {"name='a'\nmemory=12abc\n", "vm.cfg:2: syntax error: bad number \"12a\""},
    {"name='a'\nmemory=99999999999999999999999\n", "vm.cfg:2: number too large"},
    {"name=\"a\\q\"\n", "vm.cfg:1: syntax error: unknown escape '\\q' in string"},
};

static void errors(void **state)
{
	unsigned int i;

	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		void *ctx = talloc_new(NULL);
		struct xlcfg_domain d;
		char err[256];

		assert_int_equal(resolve(ctx, bad[i].text, &d, err, sizeof(err)), -EINVAL);
		if (strcmp(err, bad[i].msg) != 0)
			fail_msg("case %u: got <%s> want <%s>", i, err, bad[i].msg);
		talloc_free(ctx);
	}
}

static void helpers(void **state)
{
	uint64_t map[16];
	unsigned int hi;
	uint8_t u[16];
	char s[37];

	assert_int_equal(xlcfg_cpulist_parse("0-2,5", map, &hi), 0);
	assert_int_equal(map[0], 0x27);
	assert_int_equal(hi, 5);
	assert_int_equal(xlcfg_cpulist_parse("1,", map, &hi), -EINVAL);
	assert_int_equal(xlcfg_cpulist_parse("1024", map, &hi), -EINVAL);
	assert_int_equal(xlcfg_cpulist_parse("", map, &hi), -EINVAL);
	assert_int_equal(xlcfg_uuid_parse("0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0", u), 0);
	xlcfg_uuid_format(u, s);
	assert_string_equal(s, "0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0");
	assert_int_equal(xlcfg_uuid_parse("0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1fg", u), -EINVAL);
	assert_true(xlcfg_action_valid("rename-restart"));
	assert_true(xlcfg_action_valid("coredump-destroy"));
	assert_true(xlcfg_action_valid("coredump-restart"));
	assert_false(xlcfg_action_valid("coredump"));
}

static void missing_file(void **state)
{
	struct xlcfg *cfg = NULL;
	char err[256];

	assert_int_equal(xlcfg_parse_file(NULL, "/nonexistent/vm.cfg", &cfg, err, sizeof(err)),
			 -ENOENT);
	assert_string_equal(err, "/nonexistent/vm.cfg: No such file or directory");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(full_config), cmocka_unit_test(defaults),
	    cmocka_unit_test(overrides),   cmocka_unit_test(errors),
	    cmocka_unit_test(helpers),	   cmocka_unit_test(missing_file),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}

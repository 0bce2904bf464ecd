/* Unit tests of permission parsing, formatting and access decisions (perms.c). */
#include "store/test_util.h"

static void test_parse_format(void **state)
{
	static const char in[] = "n0\0r5\0w0x10\0b010\0";
	struct xs_perm *p;
	char buf[64];
	int len;

	assert_int_equal(perms_parse(NULL, in, sizeof(in) - 1, 4, &p), 0);
	assert_int_equal(p[0].bits, XS_PERM_NONE);
	assert_int_equal(p[1].domid, 5);
	assert_int_equal(p[2].domid, 16);
	assert_int_equal(p[3].domid, 8);
	len = perms_format(p, 4, buf, sizeof(buf));
	assert_int_equal(len, (int)sizeof("n0\0r5\0w16\0b8\0") - 1);
	assert_memory_equal(buf, "n0\0r5\0w16\0b8\0", (size_t)len);
	talloc_free(p);
	assert_int_equal(perms_parse(NULL, "x0", 3, 1, &p), -EINVAL);
	assert_int_equal(perms_parse(NULL, "r", 2, 1, &p), -EINVAL);
	assert_int_equal(perms_parse(NULL, "r5z", 4, 1, &p), -EINVAL);
	assert_int_equal(perms_parse(NULL, "r5", 2, 1, &p), -EINVAL); /* no NUL */
	assert_int_equal(perms_parse(NULL, "r-1", 4, 1, &p), 0);      /* kept as C does */
	len = perms_format(p, 1, buf, sizeof(buf));
	assert_memory_equal(buf, "r-1", 4);
	talloc_free(p);
}

static void test_perm_for_conn(void **state)
{
	struct conn *priv = memconn_new(xsd_ctx, true, 0);
	struct conn *d5 = memconn_new(xsd_ctx, false, 5);
	struct conn *d6 = memconn_new(xsd_ctx, false, 6);
	struct xs_perm p[3] = {{.domid = 5, .bits = XS_PERM_NONE},
			       {.domid = 6, .bits = XS_PERM_READ},
			       {.domid = 7, .bits = XS_PERM_WRITE}};
	unsigned int all = XS_PERM_READ | XS_PERM_WRITE | XS_PERM_OWNER;

	domain_get(0); /* dom0 exists */
	struct domain *dd6 = domain_get(6);
	assert_null(dd6);
	assert_int_equal(perm_for_conn(priv, p, 3, 100), all);
	assert_int_equal(perm_for_conn(d5, p, 3, 100), all); /* owner */
	/* domain 6 is not introduced: its entry is ignored, the default applies */
	assert_int_equal(perm_for_conn(d6, p, 3, 100), XS_PERM_NONE);
	/* introduce 6 via the dispatcher */
	struct reply r;
	XREQ(priv, XS_INTRODUCE, 0, "6\0001\0001\0", &r);
	assert_ok(&r, XS_INTRODUCE);
	uint64_t g = domain_get(6)->gen;
	assert_int_equal(perm_for_conn(d6, p, 3, g + 1), XS_PERM_READ);
	/* node written before the domain was (re)introduced: entry ignored */
	assert_int_equal(perm_for_conn(d6, p, 3, g - 1), XS_PERM_NONE);
	p[1].bits |= XS_PERM_IGNORE;
	assert_int_equal(perm_for_conn(d6, p, 3, g + 1), XS_PERM_NONE);
	/* SET_TARGET: 6 acts for 5 and owns its nodes */
	d6->target = 5;
	assert_int_equal(perm_for_conn(d6, p, 3, g + 1), all);
	talloc_free(priv);
	talloc_free(d5);
	talloc_free(d6);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_parse_format),
	    cmocka_unit_test_setup_teardown(test_perm_for_conn, store_setup, store_teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}

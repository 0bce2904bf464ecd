/* Unit tests of path canonicalisation and validation (path.c). */
#include "store/test_util.h"

static void check(struct conn *c, const char *in, bool special, const char *want)
{
	char *out = NULL;
	int ret = path_canon(c, in, special, NULL, &out);

	if (!want) {
		assert_int_equal(ret, -EINVAL);
		return;
	}
	assert_int_equal(ret, 0);
	assert_string_equal(out, want);
	talloc_free(out);
}

static void test_canon(void **state)
{
	struct conn *sock = memconn_new(xsd_ctx, true, 0);
	struct conn *guest = memconn_new(xsd_ctx, false, 7);
	char big[3000];

	check(sock, "/", false, "/");
	check(sock, "/a/b-c_d@e", false, "/a/b-c_d@e");
	check(sock, "rel/x", false, "/local/domain/0/rel/x");
	check(guest, "rel", false, "/local/domain/7/rel");
	check(sock, "", false, NULL); /* becomes home + "/" */
	check(sock, "/a//b", false, NULL);
	check(sock, "/a/", false, NULL);
	check(sock, "/a b", false, NULL);
	check(sock, "/a\xc3\xa9", false, NULL);
	check(sock, "@releaseDomain", false, NULL);
	check(sock, "@releaseDomain", true, "@releaseDomain");
	check(sock, "@any thing", true, "@any thing");
	/* path-max counts only the part below /local/domain/<id>/ */
	memset(big, 'x', sizeof(big));
	big[0] = '/';
	big[2049] = '\0';
	check(sock, big, false, NULL); /* 2049 > 2048 */
	big[2048] = '\0';
	check(sock, big, false, big);
	char rel[2100];
	memset(rel, 'y', sizeof(rel));
	rel[2048] = '\0';
	char want[2200];
	snprintf(want, sizeof(want), "/local/domain/7/%s", rel);
	check(guest, rel, false, want);
	talloc_free(sock);
	talloc_free(guest);
}

static void test_parent_basename_depth(void **state)
{
	char *p = path_parent(NULL, "/a/b/c");
	assert_string_equal(p, "/a/b");
	talloc_free(p);
	p = path_parent(NULL, "/a");
	assert_string_equal(p, "/");
	talloc_free(p);
	assert_string_equal(path_basename("/a/b"), "b");
	assert_int_equal(path_depth("/"), 0);
	assert_int_equal(path_depth("/a"), 1);
	assert_int_equal(path_depth("/a/b/c"), 3);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(test_canon, store_setup, store_teardown),
	    cmocka_unit_test(test_parent_basename_depth),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}

/* Unit tests for proto/json.c (generator and parser round trips). */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>
#include <talloc.h>

#include "proto/json.h"

static void gen_compact(void **state)
{
	void *ctx = talloc_new(NULL);
	struct xst_json *j;
	const char *text;
	size_t len;

	assert_int_equal(xst_json_new(ctx, false, &j), 0);
	xst_json_map_open(j);
	xst_json_kv_string(j, "name", "vm\"1\n");
	xst_json_kv_int(j, "domid", -3);
	xst_json_kv_uint(j, "big", UINT64_MAX);
	xst_json_kv_bool(j, "paused", true);
	xst_json_key(j, "cpus");
	xst_json_array_open(j);
	xst_json_int(j, 0);
	xst_json_null(j);
	xst_json_array_close(j);
	xst_json_kv_string(j, "none", NULL);
	xst_json_map_close(j);
	assert_int_equal(xst_json_finish(j, &text, &len), 0);
	assert_string_equal(text,
			    "{\"name\":\"vm\\\"1\\n\",\"domid\":-3,\"big\":18446744073709551615,"
			    "\"paused\":true,\"cpus\":[0,null],\"none\":null}");
	assert_int_equal(len, strlen(text));
	talloc_free(ctx);
}

static void gen_error_sticky(void **state)
{
	void *ctx = talloc_new(NULL);
	struct xst_json *j;
	const char *text;
	size_t len;

	assert_int_equal(xst_json_new(ctx, false, &j), 0);
	xst_json_map_open(j);
	xst_json_int(j, 1); /* a key must be a string */
	xst_json_map_close(j);
	assert_int_equal(xst_json_finish(j, &text, &len), -EINVAL);
	assert_null(text);

	assert_int_equal(xst_json_new(ctx, false, &j), 0);
	xst_json_array_close(j); /* unbalanced */
	assert_int_not_equal(xst_json_finish(j, &text, &len), 0);
	talloc_free(ctx);
}

static void gen_pretty(void **state)
{
	void *ctx = talloc_new(NULL);
	struct xst_json *j;
	const char *text;
	size_t len;

	assert_int_equal(xst_json_new(ctx, true, &j), 0);
	xst_json_map_open(j);
	xst_json_kv_int(j, "a", 1);
	xst_json_map_close(j);
	assert_int_equal(xst_json_finish(j, &text, &len), 0);
	assert_string_equal(text, "{\n    \"a\": 1\n}\n");
	talloc_free(ctx);
}

static void parse_round_trip(void **state)
{
	void *ctx = talloc_new(NULL);
	struct xst_json_value *v;
	const struct xst_json_value *m;
	char err[128];

	assert_int_equal(xst_json_parse(ctx,
					"{\"name\":\"vm1\",\"mem\":512,\"r\":1.5,"
					"\"ok\":false,\"l\":[1,\"x\",null],\"o\":{}}",
					&v, err, sizeof(err)),
			 0);
	assert_int_equal(v->type, XST_JSON_OBJECT);
	assert_int_equal(v->n, 6);
	m = xst_json_get(v, "name");
	assert_non_null(m);
	assert_int_equal(m->type, XST_JSON_STRING);
	assert_string_equal(m->s, "vm1");
	m = xst_json_get(v, "mem");
	assert_true(m->is_int);
	assert_int_equal(m->i, 512);
	m = xst_json_get(v, "r");
	assert_false(m->is_int);
	assert_true(m->d > 1.49 && m->d < 1.51);
	m = xst_json_get(v, "ok");
	assert_int_equal(m->type, XST_JSON_BOOL);
	assert_false(m->b);
	m = xst_json_get(v, "l");
	assert_int_equal(m->type, XST_JSON_ARRAY);
	assert_int_equal(m->n, 3);
	assert_int_equal(m->items[2]->type, XST_JSON_NULL);
	assert_string_equal(m->items[1]->s, "x");
	assert_int_equal(xst_json_get(v, "o")->n, 0);
	assert_null(xst_json_get(v, "missing"));
	assert_null(xst_json_get(m, "name")); /* not an object */
	talloc_free(ctx);
}

static void parse_errors(void **state)
{
	void *ctx = talloc_new(NULL);
	struct xst_json_value *v;
	char err[128];

	assert_int_equal(xst_json_parse(ctx, "{\"a\":", &v, err, sizeof(err)), -EINVAL);
	assert_null(v);
	assert_true(strlen(err) > 0);
	assert_int_equal(xst_json_parse(ctx, "[1,]", &v, err, sizeof(err)), -EINVAL);
	assert_int_equal(xst_json_parse(ctx, "", &v, err, sizeof(err)), -EINVAL);
	talloc_free(ctx);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(gen_compact),  cmocka_unit_test(gen_error_sticky),
	    cmocka_unit_test(gen_pretty),   cmocka_unit_test(parse_round_trip),
	    cmocka_unit_test(parse_errors),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}

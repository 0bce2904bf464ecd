/*
 * JSON through yajl (see json.h).  The generator keeps yajl's handle behind a talloc
 * destructor; the parser uses yajl_tree and copies the result into a talloc tree so no
 * yajl type leaves this file.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include <talloc.h>
#include <yajl/yajl_gen.h>
#include <yajl/yajl_tree.h>

#include "proto/json.h"

struct xst_json {
	yajl_gen g;
	int err;
	char *text;
};

static int json_destroy(struct xst_json *j)
{
	if (j->g)
		yajl_gen_free(j->g);
	return 0;
}

int xst_json_new(void *ctx, bool pretty, struct xst_json **out)
{
	struct xst_json *j;

	*out = NULL;
	j = talloc_zero(ctx, struct xst_json);
	if (!j)
		return -ENOMEM;
	j->g = yajl_gen_alloc(NULL);
	if (!j->g) {
		talloc_free(j);
		return -ENOMEM;
	}
	talloc_set_destructor(j, json_destroy);
	if (pretty) {
		yajl_gen_config(j->g, yajl_gen_beautify, 1);
		yajl_gen_config(j->g, yajl_gen_indent_string, "    ");
	}
	*out = j;
	return 0;
}

static void json_check(struct xst_json *j, yajl_gen_status st)
{
	if (j->err || st == yajl_gen_status_ok)
		return;
	switch (st) {
	case yajl_gen_in_error_state:
	case yajl_gen_keys_must_be_strings:
	case yajl_gen_generation_complete:
		j->err = -EINVAL;
		break;
	case yajl_gen_invalid_number:
		j->err = -ERANGE;
		break;
	case yajl_gen_invalid_string:
		j->err = -EILSEQ;
		break;
	default:
		j->err = -EIO;
		break;
	}
}

void xst_json_map_open(struct xst_json *j)
{
	if (!j->err)
		json_check(j, yajl_gen_map_open(j->g));
}

void xst_json_map_close(struct xst_json *j)
{
	if (!j->err)
		json_check(j, yajl_gen_map_close(j->g));
}

void xst_json_array_open(struct xst_json *j)
{
	if (!j->err)
		json_check(j, yajl_gen_array_open(j->g));
}

void xst_json_array_close(struct xst_json *j)
{
	if (!j->err)
		json_check(j, yajl_gen_array_close(j->g));
}

void xst_json_key(struct xst_json *j, const char *key)
{
	xst_json_string(j, key);
}

void xst_json_string(struct xst_json *j, const char *s)
{
	if (j->err)
		return;
	if (!s)
		json_check(j, yajl_gen_null(j->g));
	else
		json_check(j, yajl_gen_string(j->g, (const unsigned char *)s, strlen(s)));
}

void xst_json_int(struct xst_json *j, int64_t v)
{
	if (!j->err)
		json_check(j, yajl_gen_integer(j->g, (long long)v));
}

void xst_json_uint(struct xst_json *j, uint64_t v)
{
	char buf[32];
	int n;

	if (j->err)
		return;
	/* yajl_gen_integer is signed; print unsigned values as a number ourselves. */
	n = snprintf(buf, sizeof(buf), "%llu", (unsigned long long)v);
	json_check(j, yajl_gen_number(j->g, buf, (size_t)n));
}

void xst_json_double(struct xst_json *j, double v)
{
	if (!j->err)
		json_check(j, yajl_gen_double(j->g, v));
}

void xst_json_bool(struct xst_json *j, bool v)
{
	if (!j->err)
		json_check(j, yajl_gen_bool(j->g, v));
}

void xst_json_null(struct xst_json *j)
{
	if (!j->err)
		json_check(j, yajl_gen_null(j->g));
}

void xst_json_kv_string(struct xst_json *j, const char *key, const char *s)
{
	xst_json_key(j, key);
	xst_json_string(j, s);
}

void xst_json_kv_int(struct xst_json *j, const char *key, int64_t v)
{
	xst_json_key(j, key);
	xst_json_int(j, v);
}

void xst_json_kv_uint(struct xst_json *j, const char *key, uint64_t v)
{
	xst_json_key(j, key);
	xst_json_uint(j, v);
}

void xst_json_kv_bool(struct xst_json *j, const char *key, bool v)
{
	xst_json_key(j, key);
	xst_json_bool(j, v);
}

void xst_json_kv_double(struct xst_json *j, const char *key, double v)
{
	xst_json_key(j, key);
	xst_json_double(j, v);
}

int xst_json_finish(struct xst_json *j, const char **text, size_t *len)
{
	const unsigned char *buf;
	size_t sz;

	*text = NULL;
	*len = 0;
	if (j->err)
		return j->err;
	if (yajl_gen_get_buf(j->g, &buf, &sz) != yajl_gen_status_ok)
		return -EIO;
	talloc_free(j->text);
	j->text = talloc_strndup(j, (const char *)buf, sz);
	if (!j->text)
		return -ENOMEM;
	*text = j->text;
	*len = sz;
	return 0;
}

static struct xst_json_value *json_copy(void *ctx, yajl_val y, int depth)
{
	struct xst_json_value *v;
	size_t i;

	if (depth > 64)
		return NULL;
	v = talloc_zero(ctx, struct xst_json_value);
	if (!v)
		return NULL;
	if (!y || YAJL_IS_NULL(y)) {
		v->type = XST_JSON_NULL;
	} else if (YAJL_IS_TRUE(y) || YAJL_IS_FALSE(y)) {
		v->type = XST_JSON_BOOL;
		v->b = YAJL_IS_TRUE(y);
	} else if (YAJL_IS_NUMBER(y)) {
		v->type = XST_JSON_NUMBER;
		v->is_int = YAJL_IS_INTEGER(y);
		v->i = v->is_int ? YAJL_GET_INTEGER(y) : 0;
		v->d = YAJL_IS_DOUBLE(y) ? YAJL_GET_DOUBLE(y) : (double)v->i;
	} else if (YAJL_IS_STRING(y)) {
		v->type = XST_JSON_STRING;
		v->s = talloc_strdup(v, YAJL_GET_STRING(y));
		if (!v->s)
			goto fail;
	} else if (YAJL_IS_ARRAY(y)) {
		v->type = XST_JSON_ARRAY;
		v->n = y->u.array.len;
		v->items = talloc_zero_array(v, struct xst_json_value *, v->n + 1);
		if (!v->items)
			goto fail;
		for (i = 0; i < v->n; i++) {
			v->items[i] = json_copy(v, y->u.array.values[i], depth + 1);
			if (!v->items[i])
				goto fail;
		}
	} else if (YAJL_IS_OBJECT(y)) {
		v->type = XST_JSON_OBJECT;
		v->n = y->u.object.len;
		v->items = talloc_zero_array(v, struct xst_json_value *, v->n + 1);
		v->keys = talloc_zero_array(v, const char *, v->n + 1);
		if (!v->items || !v->keys)
			goto fail;
		for (i = 0; i < v->n; i++) {
			v->keys[i] = talloc_strdup(v, y->u.object.keys[i]);
			v->items[i] = json_copy(v, y->u.object.values[i], depth + 1);
			if (!v->keys[i] || !v->items[i])
				goto fail;
		}
	}
	return v;
fail:
	talloc_free(v);
	return NULL;
}

int xst_json_parse(void *ctx, const char *text, struct xst_json_value **out, char *err,
		   size_t errlen)
{
	char ebuf[256] = "";
	yajl_val y;

	*out = NULL;
	if (errlen)
		err[0] = '\0';
	y = yajl_tree_parse(text, ebuf, sizeof(ebuf));
	if (!y) {
		if (errlen)
			snprintf(err, errlen, "%s", ebuf[0] ? ebuf : "malformed JSON");
		return -EINVAL;
	}
	*out = json_copy(ctx, y, 0);
	yajl_tree_free(y);
	if (!*out) {
		if (errlen)
			snprintf(err, errlen, "out of memory or nested too deeply");
		return -ENOMEM;
	}
	return 0;
}

const struct xst_json_value *xst_json_get(const struct xst_json_value *v, const char *key)
{
	size_t i;

	if (!v || v->type != XST_JSON_OBJECT)
		return NULL;
	for (i = 0; i < v->n; i++)
		if (strcmp(v->keys[i], key) == 0)
			return v->items[i];
	return NULL;
}

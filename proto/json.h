/*
 * JSON for xst: the one module that calls yajl.
 *
 * Generator: build a document with the xst_json_* calls below and take the text with
 * xst_json_finish().  Generator calls do not return errors one by one: the first failure
 * (out of memory, a key outside a map, unbalanced close) is remembered and returned by
 * xst_json_finish(), after which further calls are ignored.
 *
 * Parser: xst_json_parse() turns text into a talloc tree of struct xst_json_value.
 */
#ifndef XST_PROTO_JSON_H
#define XST_PROTO_JSON_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct xst_json;

/* A generator on ctx; pretty = indented output with a trailing newline. */
int xst_json_new(void *ctx, bool pretty, struct xst_json **out);
void xst_json_map_open(struct xst_json *j);
void xst_json_map_close(struct xst_json *j);
void xst_json_array_open(struct xst_json *j);
void xst_json_array_close(struct xst_json *j);
/* A map key; the next value call gives its value. */
void xst_json_key(struct xst_json *j, const char *key);
void xst_json_string(struct xst_json *j, const char *s); /* NULL gives null */
void xst_json_int(struct xst_json *j, int64_t v);
void xst_json_uint(struct xst_json *j, uint64_t v);
void xst_json_double(struct xst_json *j, double v);
void xst_json_bool(struct xst_json *j, bool v);
void xst_json_null(struct xst_json *j);
/* Shorthands for key + value. */
void xst_json_kv_string(struct xst_json *j, const char *key, const char *s);
void xst_json_kv_int(struct xst_json *j, const char *key, int64_t v);
void xst_json_kv_uint(struct xst_json *j, const char *key, uint64_t v);
void xst_json_kv_bool(struct xst_json *j, const char *key, bool v);
void xst_json_kv_double(struct xst_json *j, const char *key, double v);
/* The finished document (NUL-terminated, owned by j), or the first error. */
int xst_json_finish(struct xst_json *j, const char **text, size_t *len);

enum xst_json_type {
	XST_JSON_NULL,
	XST_JSON_BOOL,
	XST_JSON_NUMBER,
	XST_JSON_STRING,
	XST_JSON_ARRAY,
	XST_JSON_OBJECT,
};

struct xst_json_value {
	enum xst_json_type type;
	bool b;			       /* BOOL */
	bool is_int;		       /* NUMBER that is an integer (i valid) */
	int64_t i;		       /* NUMBER */
	double d;		       /* NUMBER */
	const char *s;		       /* STRING */
	size_t n;		       /* ARRAY / OBJECT: element count */
	const char **keys;	       /* OBJECT */
	struct xst_json_value **items; /* ARRAY / OBJECT */
};

/* Parse `text`; the tree is allocated on ctx.  -EINVAL with a message in err[errlen]
 * for malformed text. */
int xst_json_parse(void *ctx, const char *text, struct xst_json_value **out, char *err,
		   size_t errlen);
/* Member `key` of an object, or NULL (also when v is not an object). */
const struct xst_json_value *xst_json_get(const struct xst_json_value *v, const char *key);

#endif

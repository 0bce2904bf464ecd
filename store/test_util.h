/* Helpers shared by xstored's cmocka unit tests: a fresh store and a request
 * round-trip through the real parser and dispatcher on an in-process connection. */
#ifndef XST_STORE_TEST_UTIL_H
#define XST_STORE_TEST_UTIL_H

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <talloc.h>

/* cmocka.h needs the headers above first */
#include <cmocka.h>

#include "store/xstored.h"

static inline int store_setup(void **state)
{
	xsd_ctx = talloc_named_const(NULL, 0, "test");
	assert_non_null(xsd_ctx);
	assert_int_equal(domain_init(), 0);
	assert_int_equal(node_tree_init(), 0);
	assert_int_equal(watch_init(), 0);
	return 0;
}

static inline int store_teardown(void **state)
{
	conn_reap();
	talloc_free(xsd_ctx);
	conn_reap();
	node_tree_free();
	ops_free();
	domain_free_all();
	xsd_ctx = NULL;
	return 0;
}

struct reply {
	uint32_t type, tx;
	uint32_t len;
	char body[XS_PAYLOAD_MAX + 1];
};

/* Sends one request on c; fills r with the first non-event message of the output.
 * Returns the number of watch events seen before it. */
static inline int xreq(struct conn *c, uint32_t type, uint32_t tx, const void *payload, size_t len,
		       struct reply *r)
{
	char buf[sizeof(struct xs_hdr) + XS_PAYLOAD_MAX];
	struct xs_hdr h = {.type = type, .req_id = 7, .tx_id = tx, .len = (uint32_t)len};
	const char *out;
	size_t olen, off = 0;
	int events = 0;

	memcpy(buf, &h, sizeof(h));
	memcpy(buf + sizeof(h), payload, len);
	conn_input(c, buf, sizeof(h) + len);
	out = memconn_output(c, &olen);
	memset(r, 0, sizeof(*r));
	r->type = UINT32_MAX;
	while (off + sizeof(h) <= olen) {
		struct xs_hdr rh;
		memcpy(&rh, out + off, sizeof(rh));
		if (rh.type == XS_WATCH_EVENT) {
			events++;
		} else if (r->type == UINT32_MAX) {
			r->type = rh.type;
			r->tx = rh.tx_id;
			r->len = rh.len;
			memcpy(r->body, out + off + sizeof(rh), rh.len);
			r->body[rh.len] = '\0';
		}
		off += sizeof(rh) + rh.len;
	}
	return events;
}

/* Request with a payload given as a string including embedded NULs (sizeof-1). */
#define XREQ(c, type, tx, lit, r) xreq((c), (type), (tx), (lit), sizeof(lit) - 1, (r))

static inline void assert_error(const struct reply *r, const char *name)
{
	assert_int_equal(r->type, XS_ERROR);
	assert_string_equal(r->body, name);
}

static inline void assert_ok(const struct reply *r, uint32_t type)
{
	if (r->type == XS_ERROR)
		fail_msg("got error %s", r->body);
	assert_int_equal(r->type, type);
}

#endif

/* Live-update stream (lu_stream.c): format details, round trip, and rejection of
 * damaged streams. */
#include "store/lu_stream.h"
#include "store/test_util.h"

static void setup_tree(void)
{
	struct conn *c = memconn_new(xsd_ctx, true, 0);
	struct reply r;

	XREQ(c, XS_WRITE, 0, "/a/b\0hello", &r);
	assert_ok(&r, XS_WRITE);
	XREQ(c, XS_WRITE, 0, "/a/bin\0x\0y\0z", &r);
	assert_ok(&r, XS_WRITE);
	XREQ(c, XS_MKDIR, 0, "/local/domain/3\0", &r);
	assert_ok(&r, XS_MKDIR);
	XREQ(c, XS_SET_PERMS, 0, "/a/b\0n0\0r3\0b5\0", &r);
	assert_ok(&r, XS_SET_PERMS);
	XREQ(c, XS_SET_PERMS, 0, "@releaseDomain\0n0\0r7\0", &r);
	assert_ok(&r, XS_SET_PERMS);
	talloc_free(c);
}

static uint32_t u32_at(const char *p)
{
	uint32_t v;
	memcpy(&v, p, 4);
	return v;
}

static void test_format(void **state)
{
	char *buf;
	size_t len, pos = 16;
	unsigned int nodes = 0;
	bool end = false;

	setup_tree();
	assert_int_equal(lu_stream_build(xsd_ctx, -1, NULL, &buf, &len), 0);
	assert_memory_equal(buf, "xenstore\0\0\0\1\0\0\0\0", 16);
	while (pos < len) {
		uint32_t type = u32_at(buf + pos), rlen = u32_at(buf + pos + 4);
		assert_int_equal(rlen % 8, 0); /* padded length, as C xenstored */
		if (type == LU_REC_NODE)
			nodes++;
		if (type == LU_REC_END) {
			assert_int_equal(rlen, 0);
			assert_int_equal(pos + 8, len);
			end = true;
		}
		pos += 8 + rlen;
	}
	assert_true(end);
	/* 2 special + / /tool /tool/xenstored /a /a/b /a/bin /local /local/domain .../3 */
	assert_int_equal(nodes, 11);
	talloc_free(buf);
}

static void test_roundtrip(void **state)
{
	char *a, *b, err[200];
	size_t alen, blen;
	struct lu_summary sum;
	const struct xs_perm *p;
	unsigned int np;

	setup_tree();
	assert_int_equal(lu_stream_build(NULL, -1, NULL, &a, &alen), 0);
	assert_int_equal(lu_stream_check(a, alen, &sum, err, sizeof(err)), 0);
	assert_int_equal(sum.nodes, 9);
	int nodes0 = domain_get(0)->nodes;
	long mem0 = domain_get(0)->memory;
	store_teardown(state);
	store_setup(state);
	assert_int_equal(lu_stream_restore(a, alen, false, 0, err, sizeof(err)), 0);
	struct node *n = node_lookup("/a/bin");
	assert_non_null(n);
	assert_int_equal(n->vlen, 5);
	assert_memory_equal(node_value(n), "x\0y\0z", 5);
	n = node_lookup("/a/b");
	assert_int_equal(n->nperms, 3);
	assert_int_equal(node_perms(n)[1].domid, 3);
	assert_int_equal(node_perms(n)[2].bits & 3, XS_PERM_READ | XS_PERM_WRITE);
	assert_int_equal(special_get_perms("@releaseDomain", &p, &np), 0);
	assert_int_equal(np, 2);
	assert_int_equal(p[1].domid, 7);
	/* quota accounting is rebuilt */
	assert_int_equal(domain_get(0)->nodes, nodes0);
	assert_int_equal(domain_get(0)->memory, mem0);
	assert_int_equal(lu_stream_build(NULL, -1, NULL, &b, &blen), 0);
	assert_int_equal(alen, blen);
	assert_memory_equal(a, b, alen);
	talloc_free(a);
	talloc_free(b);
}

/* A hand-made stream: preamble, GLOBAL, the given NODE records, END. */
static size_t mk(char *out, const char *const *paths, unsigned int n, char perm)
{
	size_t pos = 0;
	uint32_t v;

	memcpy(out, "xenstore\0\0\0\1\0\0\0\0", 16);
	pos = 16;
	v = LU_REC_GLOBAL;
	memcpy(out + pos, &v, 4);
	v = 8;
	memcpy(out + pos + 4, &v, 4);
	memset(out + pos + 8, 0xff, 8);
	pos += 16;
	for (unsigned int i = 0; i < n; i++) {
		size_t pl = strlen(paths[i]) + 1, body = 16 + 4 + pl, padded = (body + 7) & ~7u;
		char *b = out + pos + 8;
		uint16_t s;
		v = LU_REC_NODE;
		memcpy(out + pos, &v, 4);
		v = (uint32_t)padded;
		memcpy(out + pos + 4, &v, 4);
		memset(b, 0, padded);
		s = (uint16_t)pl;
		memcpy(b + 8, &s, 2);
		s = 1;
		memcpy(b + 14, &s, 2);
		b[16] = perm;
		memcpy(b + 20, paths[i], pl);
		pos += 8 + padded;
	}
	memset(out + pos, 0, 8);
	return pos + 8;
}

static void test_reject(void **state)
{
	static const char *const good[] = {"/", "/a", "/a/b", "/c"};
	static const char *const orphan[] = {"/", "/a/b"};
	static const char *const noroot[] = {"/a"};
	char buf[1024], err[200];
	size_t len;

	len = mk(buf, good, 4, 'n');
	assert_int_equal(lu_stream_check(buf, len, NULL, err, sizeof(err)), 0);
	assert_int_equal(lu_stream_check(buf, len - 8, NULL, err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "no END"));
	buf[0] = 'X';
	assert_int_equal(lu_stream_check(buf, len, NULL, err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "ident"));
	len = mk(buf, good, 4, 'n');
	buf[11] = 2; /* version 2: not 4.17's */
	assert_int_equal(lu_stream_check(buf, len, NULL, err, sizeof(err)), -EINVAL);
	len = mk(buf, good, 4, 'x');
	assert_int_equal(lu_stream_check(buf, len, NULL, err, sizeof(err)), -EINVAL);
	len = mk(buf, orphan, 2, 'n');
	assert_int_equal(lu_stream_check(buf, len, NULL, err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "parent"));
	len = mk(buf, noroot, 1, 'n');
	assert_int_equal(lu_stream_check(buf, len, NULL, err, sizeof(err)), -EINVAL);
	len = mk(buf, good, 4, 'n');
	buf[39] = 0x7f; /* first record's length beyond the stream */
	assert_int_equal(lu_stream_check(buf, len, NULL, err, sizeof(err)), -EINVAL);
	/* a restore of a damaged stream changes nothing */
	assert_int_equal(lu_stream_restore(buf, len, false, 0, err, sizeof(err)), -EINVAL);
	assert_non_null(node_lookup("/tool/xenstored"));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(test_format, store_setup, store_teardown),
	    cmocka_unit_test_setup_teardown(test_roundtrip, store_setup, store_teardown),
	    cmocka_unit_test_setup_teardown(test_reject, store_setup, store_teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}

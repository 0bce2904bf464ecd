/* Unit tests of transactions, watches and quotas through the real dispatcher on
 * in-process connections (transaction.c, watch.c, ops.c, dispatch.c). */
#include <stdio.h>
#include <stdlib.h>

#include "store/test_util.h"

static uint32_t start(struct conn *c)
{
	struct reply r;
	XREQ(c, XS_TRANSACTION_START, 0, "\0", &r);
	assert_ok(&r, XS_TRANSACTION_START);
	return (uint32_t)atoi(r.body);
}

static void test_commit_and_conflict(void **state)
{
	struct conn *a = memconn_new(xsd_ctx, true, 0), *b = memconn_new(xsd_ctx, true, 0);
	struct reply r;
	uint32_t tx;

	XREQ(a, XS_WRITE, 0, "/k\0v1", &r);
	assert_ok(&r, XS_WRITE);
	tx = start(a);
	XREQ(a, XS_WRITE, tx, "/k\0v2", &r);
	assert_ok(&r, XS_WRITE);
	assert_int_equal(r.tx, tx);
	XREQ(b, XS_READ, 0, "/k\0", &r);
	assert_string_equal(r.body, "v1");
	XREQ(a, XS_TRANSACTION_END, tx, "T\0", &r);
	assert_ok(&r, XS_TRANSACTION_END);
	XREQ(b, XS_READ, 0, "/k\0", &r);
	assert_string_equal(r.body, "v2");

	/* conflict on a node only read in the transaction */
	tx = start(a);
	XREQ(a, XS_READ, tx, "/k\0", &r);
	XREQ(a, XS_WRITE, tx, "/other\0x", &r);
	XREQ(b, XS_WRITE, 0, "/k\0v3", &r);
	XREQ(a, XS_TRANSACTION_END, tx, "T\0", &r);
	assert_error(&r, "EAGAIN");
	XREQ(b, XS_READ, 0, "/other\0", &r);
	assert_error(&r, "ENOENT");

	/* a node created concurrently where the transaction saw none */
	tx = start(a);
	XREQ(a, XS_READ, tx, "/late\0", &r);
	assert_error(&r, "ENOENT");
	XREQ(b, XS_WRITE, 0, "/late\0x", &r);
	XREQ(a, XS_TRANSACTION_END, tx, "T\0", &r);
	assert_error(&r, "EAGAIN");

	/* unrelated concurrent writes do not conflict */
	tx = start(a);
	XREQ(a, XS_WRITE, tx, "/k/sub\0s", &r);
	XREQ(b, XS_WRITE, 0, "/unrelated\0u", &r);
	XREQ(a, XS_TRANSACTION_END, tx, "T\0", &r);
	assert_ok(&r, XS_TRANSACTION_END);
	talloc_free(a);
	talloc_free(b);
}

static void test_transaction_ids_and_errors(void **state)
{
	struct conn *a = memconn_new(xsd_ctx, true, 0);
	struct reply r;
	uint32_t t1 = start(a), t2 = start(a);

	assert_int_not_equal(t1, 0);
	assert_int_not_equal(t1, t2);
	XREQ(a, XS_TRANSACTION_START, t1, "\0", &r);
	assert_error(&r, "EBUSY");
	XREQ(a, XS_TRANSACTION_END, 0, "T\0", &r);
	assert_error(&r, "ENOENT");
	XREQ(a, XS_TRANSACTION_END, t1, "X\0", &r);
	assert_error(&r, "EINVAL");
	XREQ(a, XS_TRANSACTION_END, t1, "F\0", &r);
	assert_ok(&r, XS_TRANSACTION_END);
	XREQ(a, XS_READ, t1, "/\0", &r);
	assert_error(&r, "ENOENT");
	talloc_free(a); /* frees t2 with the connection */
}

static void test_watch_events(void **state)
{
	struct conn *a = memconn_new(xsd_ctx, true, 0), *w = memconn_new(xsd_ctx, true, 0);
	struct reply r;
	size_t len;
	const char *out;
	uint32_t tx;

	XREQ(w, XS_WATCH, 0, "/w\0tok\0", &r);
	assert_ok(&r, XS_WATCH);
	XREQ(a, XS_WRITE, 0, "/w/x\0v", &r);
	out = memconn_output(w, &len);
	assert_int_equal(len, 16 + sizeof("/w/x\0tok"));
	assert_memory_equal(out + 16, "/w/x\0tok\0", sizeof("/w/x\0tok"));
	/* events of a transaction only on commit */
	tx = start(a);
	XREQ(a, XS_WRITE, tx, "/w/y\0v", &r);
	out = memconn_output(w, &len);
	assert_int_equal(len, 0);
	XREQ(a, XS_TRANSACTION_END, tx, "T\0", &r);
	out = memconn_output(w, &len);
	assert_int_equal(len, 16 + sizeof("/w/y\0tok"));
	/* an aborted transaction fires nothing */
	tx = start(a);
	XREQ(a, XS_WRITE, tx, "/w/z\0v", &r);
	XREQ(a, XS_TRANSACTION_END, tx, "F\0", &r);
	out = memconn_output(w, &len);
	assert_int_equal(len, 0);
	talloc_free(a);
	talloc_free(w);
}

static void test_unprivileged_quotas(void **state)
{
	struct conn *p = memconn_new(xsd_ctx, true, 0), *g;
	struct reply r;
	uint32_t tx;
	int save = quotas[Q_NODES].hard, save_tn = quotas[Q_TRANSACTION_NODES].hard;

	XREQ(p, XS_INTRODUCE, 0, "3\0001\0001\0", &r);
	assert_ok(&r, XS_INTRODUCE);
	XREQ(p, XS_WRITE, 0, "/local/domain/3\0", &r);
	XREQ(p, XS_SET_PERMS, 0, "/local/domain/3\0n3\0", &r);
	assert_ok(&r, XS_SET_PERMS);
	g = memconn_new(xsd_ctx, false, 3);
	quotas[Q_NODES].hard = 3;
	XREQ(g, XS_WRITE, 0, "a\0", &r);
	assert_ok(&r, XS_WRITE);
	XREQ(g, XS_WRITE, 0, "b\0", &r);
	assert_ok(&r, XS_WRITE);
	XREQ(g, XS_WRITE, 0, "c\0", &r);
	assert_error(&r, "ENOSPC");
	/* in a transaction the pending creations count too */
	XREQ(g, XS_RM, 0, "b\0", &r);
	tx = start(g);
	XREQ(g, XS_WRITE, tx, "b\0", &r);
	assert_ok(&r, XS_WRITE);
	XREQ(g, XS_WRITE, tx, "c\0", &r);
	assert_error(&r, "ENOSPC");
	XREQ(g, XS_TRANSACTION_END, tx, "F\0", &r);
	/* transaction-nodes: too many touched nodes fail the transaction */
	quotas[Q_TRANSACTION_NODES].hard = 2;
	tx = start(g);
	XREQ(g, XS_READ, tx, "a\0", &r);
	XREQ(g, XS_READ, tx, "/local/domain/3\0", &r);
	XREQ(g, XS_READ, tx, "/local\0", &r);
	assert_error(&r, "ENOSPC");
	XREQ(g, XS_TRANSACTION_END, tx, "T\0", &r);
	assert_error(&r, "ENOMEM"); /* a failed transaction's commit */
	quotas[Q_NODES].hard = save;
	quotas[Q_TRANSACTION_NODES].hard = save_tn;
	talloc_free(g);
	talloc_free(p);
}

static void test_garbage_never_crashes(void **state)
{
	struct conn *g = memconn_new(xsd_ctx, false, 9);
	char buf[600];
	struct reply r;

	srand(1);
	for (int i = 0; i < 3000; i++) {
		size_t len = (size_t)(rand() % (int)sizeof(buf));
		for (size_t k = 0; k < len; k++)
			buf[k] = (char)("/a\0bT0@-"[rand() % 8]);
		xreq(g, (uint32_t)(rand() % 25), (uint32_t)(rand() % 3), buf, len, &r);
		assert_true(r.type < XS_TYPE_COUNT);
	}
	talloc_free(g);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(test_commit_and_conflict, store_setup, store_teardown),
	    cmocka_unit_test_setup_teardown(test_transaction_ids_and_errors, store_setup,
					    store_teardown),
	    cmocka_unit_test_setup_teardown(test_watch_events, store_setup, store_teardown),
	    cmocka_unit_test_setup_teardown(test_unprivileged_quotas, store_setup, store_teardown),
	    cmocka_unit_test_setup_teardown(test_garbage_never_crashes, store_setup,
					    store_teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}

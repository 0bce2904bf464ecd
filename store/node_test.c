/* Unit tests of the committed tree (node.c): hash lookup, order, deletion,
 * generations, ownership accounting. */
#include "store/test_util.h"

static const struct xs_perm p0 = {.domid = 0, .bits = XS_PERM_NONE};

static void test_initial_tree(void **state)
{
	struct node *n = node_lookup("/tool/xenstored");

	assert_non_null(node_lookup("/"));
	assert_non_null(n);
	assert_int_equal(node_count(), 3);
	assert_null(node_lookup("/tool/none"));
	assert_null(node_lookup("relative"));
	assert_int_equal(domain_get(0)->nodes, 3);
}

static void test_many_children_order_and_delete(void **state)
{
	struct node *root = node_root(), *dir, *k;
	char name[32];

	assert_int_equal(node_create(root, "dir", 3, &p0, 1, "", 0, &dir), 0);
	for (int i = 0; i < 10000; i++) {
		int l = snprintf(name, sizeof(name), "c%d", i);
		assert_int_equal(node_create(dir, name, (size_t)l, &p0, 1, "v", 1, NULL), 0);
	}
	assert_int_equal(dir->nkids, 10000);
	/* delete every even child; odd ones stay findable and in order */
	for (int i = 0; i < 10000; i += 2) {
		int l = snprintf(name, sizeof(name), "c%d", i);
		k = node_child(dir, name, (size_t)l);
		assert_non_null(k);
		node_delete(k);
	}
	assert_int_equal(dir->nkids, 5000);
	for (int i = 1; i < 10000; i += 2) {
		int l = snprintf(name, sizeof(name), "c%d", i);
		k = node_child(dir, name, (size_t)l);
		assert_non_null(k);
		assert_ptr_equal(dir->kids[i / 2], k);
	}
	assert_null(node_lookup("/dir/c0"));
	assert_non_null(node_lookup("/dir/c9999"));
	node_delete(dir);
	assert_null(node_lookup("/dir/c1"));
	assert_int_equal(node_count(), 3);
	assert_int_equal(domain_get(0)->nodes, 3);
}

static void test_generation_and_set(void **state)
{
	struct node *a;
	uint64_t g0, gp;

	assert_int_equal(node_create(node_root(), "a", 1, &p0, 1, "x", 1, &a), 0);
	g0 = a->gen;
	gp = node_root()->gen;
	assert_true(gp > g0 - 1);
	assert_int_equal(node_set(&a, "yy", 2, NULL, 0), 0);
	assert_true(a->gen > g0);
	assert_int_equal(a->vlen, 2);
	assert_memory_equal(node_value(a), "yy", 2);
	/* perms change moves the accounting to the new owner */
	struct xs_perm p5 = {.domid = 5, .bits = XS_PERM_READ};
	assert_int_equal(node_set(&a, NULL, 0, &p5, 1), 0);
	assert_int_equal(domain_get(5)->nodes, 1);
	assert_memory_equal(node_value(a), "yy", 2);
	node_delete(a);
	assert_int_equal(domain_get(5)->nodes, 0);
	assert_int_equal(domain_get(5)->memory, 0);
}

static void test_path_and_reorder(void **state)
{
	struct node *x, *y;
	char *names[2] = {"y2", "y1"};
	char *p;

	assert_int_equal(node_create(node_root(), "x", 1, &p0, 1, "", 0, &x), 0);
	assert_int_equal(node_create(x, "y1", 2, &p0, 1, "", 0, &y), 0);
	assert_int_equal(node_create(x, "y2", 2, &p0, 1, "", 0, NULL), 0);
	p = node_path(NULL, y);
	assert_string_equal(p, "/x/y1");
	talloc_free(p);
	node_reorder(x, names, 2);
	assert_string_equal(node_name(x->kids[0]), "y2");
	assert_string_equal(node_name(x->kids[1]), "y1");
	node_delete(x);
}

/* node_bulk_begin(): the hash insertion of created nodes is deferred and batched;
 * lookups, node_set() and node_delete() in between see every node all the same. */
static void test_bulk_restore(void **state)
{
	struct node *root = node_root(), *d[20], *k;
	char name[32];
	int l;

	assert_int_equal(node_bulk_begin(20 + 20 * 500), 0);
	for (int i = 0; i < 20; i++) {
		l = snprintf(name, sizeof(name), "d%d", i);
		assert_int_equal(node_create(root, name, (size_t)l, &p0, 1, "", 0, &d[i]), 0);
		for (int j = 0; j < 500; j++) {
			l = snprintf(name, sizeof(name), "n%d", j);
			assert_int_equal(node_create(d[i], name, (size_t)l, &p0, 1, "v", 1, NULL),
					 0);
		}
		if (i == 10) { /* a lookup in the middle inserts what was deferred so far */
			assert_non_null(node_lookup("/d10/n499"));
			assert_non_null(node_lookup("/d3/n0"));
		}
	}
	assert_int_equal(node_count(), 3 + 20 + 20 * 500);
	/* a deferred node that moves (bigger value) stays reachable */
	k = d[19]->kids[7];
	assert_int_equal(
	    node_set(&k, "a longer value than before, so the record moves", 48, NULL, 0), 0);
	node_bulk_end();
	for (int i = 0; i < 20; i++) {
		for (int j = 0; j < 500; j++) {
			l = snprintf(name, sizeof(name), "n%d", j);
			k = node_child(d[i], name, (size_t)l);
			assert_non_null(k);
			assert_ptr_equal(d[i]->kids[j], k);
			assert_ptr_equal(k->parent, d[i]);
		}
	}
	assert_int_equal(node_lookup("/d19/n7")->vlen, 48);
	assert_null(node_lookup("/d19/n500"));
	node_delete(d[5]);
	assert_null(node_lookup("/d5/n1"));
	assert_non_null(node_lookup("/d6/n1"));
	assert_int_equal(node_count(), 3 + 19 + 19 * 500);
	assert_int_equal(domain_get(0)->nodes, 3 + 19 + 19 * 500);
	for (int i = 0; i < 20; i++)
		if (i != 5)
			node_delete(d[i]);
	assert_int_equal(node_count(), 3);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(test_initial_tree, store_setup, store_teardown),
	    cmocka_unit_test_setup_teardown(test_many_children_order_and_delete, store_setup,
					    store_teardown),
	    cmocka_unit_test_setup_teardown(test_generation_and_set, store_setup, store_teardown),
	    cmocka_unit_test_setup_teardown(test_path_and_reorder, store_setup, store_teardown),
	    cmocka_unit_test_setup_teardown(test_bulk_restore, store_setup, store_teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}

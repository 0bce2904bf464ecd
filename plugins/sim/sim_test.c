/* Unit tests of the sim core, loaded through libxstcore like the domain process does. */
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>
#include <talloc.h>

#include "core/core.h"

struct fixture {
	void *ctx;
	struct xst_hv *hv;
	struct xst_vm *vm;
	struct xst_vcpu *vcpu;
	pthread_mutex_t lock;
	char con[8192];
	size_t con_len;
};

static void con_cb(void *opaque, const char *buf, size_t len)
{
	struct fixture *f = opaque;

	pthread_mutex_lock(&f->lock);
	if (len > sizeof(f->con) - 1 - f->con_len)
		len = sizeof(f->con) - 1 - f->con_len;
	memcpy(f->con + f->con_len, buf, len);
	f->con_len += len;
	f->con[f->con_len] = '\0';
	pthread_mutex_unlock(&f->lock);
}

static struct fixture *fixture_new(const char *workload, uint64_t kib)
{
	struct fixture *f = talloc_zero(NULL, struct fixture);
	struct xst_vm_config cfg = {.domid = 7, .name = "simtest", .mem_max_kib = kib,
				    .mem_target_kib = kib, .vcpus_max = 2, .vcpus_online = 2,
				    .workload = workload};
	char why[256] = "";

	pthread_mutex_init(&f->lock, NULL);
	f->ctx = f;
	assert_int_equal(xst_hv_open(f, "sim", &f->hv, why, sizeof(why)), 0);
	assert_int_equal(xst_vm_create(f->hv, &cfg, &f->vm), 0);
	assert_int_equal(xst_vm_console_attach(f->vm, con_cb, f), 0);
	assert_int_equal(xst_vcpu_create(f->vm, 0, &f->vcpu), 0);
	return f;
}

struct runner {
	struct xst_vcpu *vcpu;
	struct xst_vcpu_exit exit;
	int ret;
	pthread_t t;
};

static void *run_thread(void *arg)
{
	struct runner *r = arg;

	r->ret = xst_vcpu_run(r->vcpu, &r->exit);
	return NULL;
}

static void run_start(struct runner *r, struct xst_vcpu *vcpu)
{
	r->vcpu = vcpu;
	assert_int_equal(pthread_create(&r->t, NULL, run_thread, r), 0);
}

static void run_stop(struct runner *r)
{
	xst_vcpu_kick(r->vcpu);
	pthread_join(r->t, NULL);
	assert_int_equal(r->ret, 0);
}

static void test_workload_parse_errors(void **state)
{
	static const char *bad[] = {"memroy=1", "dirty=8M", "dirty=x/s", "console=5x",
				    "console", "ws=12Q"};
	void *ctx = talloc_new(NULL);
	struct xst_vm_config cfg = {.domid = 1, .name = "bad", .mem_max_kib = 1024,
				    .mem_target_kib = 1024, .vcpus_max = 1, .vcpus_online = 1};
	struct xst_hv *hv;
	struct xst_vm *vm;
	char why[256];
	unsigned int i;

	assert_int_equal(xst_hv_open(ctx, "sim", &hv, why, sizeof(why)), 0);
	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		cfg.workload = bad[i];
		assert_int_equal(xst_vm_create(hv, &cfg, &vm), -EINVAL);
	}
	cfg.workload = "dirty=8M/s,console=1s,ws=1M";
	assert_int_equal(xst_vm_create(hv, &cfg, &vm), 0);
	cfg.workload = NULL;
	cfg.mem_max_kib = cfg.mem_target_kib = 4; /* one page: no room for the ring */
	assert_int_equal(xst_vm_create(hv, &cfg, &vm), -EINVAL);
	talloc_free(ctx);
}

static void test_pages_and_memory(void **state)
{
	struct fixture *f = fixture_new(NULL, 8192);
	uint8_t in[XST_PAGE_SIZE], out[XST_PAGE_SIZE];
	struct xst_vm_info info;

	assert_int_equal(xst_vm_npages(f->vm), 2048);
	memset(in, 0xa5, sizeof(in));
	assert_int_equal(xst_vm_write_page(f->vm, 100, in), 0);
	assert_int_equal(xst_vm_read_page(f->vm, 100, out), 0);
	assert_memory_equal(in, out, sizeof(in));
	assert_int_equal(xst_vm_read_page(f->vm, 0, out), 0); /* untouched: zero */
	assert_int_equal(out[0], 0);
	assert_int_equal(xst_vm_read_page(f->vm, 2048, out), -EFAULT);
	assert_int_equal(xst_vm_write_page(f->vm, 1ull << 40, in), -EFAULT);

	assert_int_equal(xst_vm_set_mem_target(f->vm, 4096), 0);
	assert_int_equal(xst_vm_set_mem_target(f->vm, 8193), -EINVAL);
	assert_int_equal(xst_vm_set_mem_max(f->vm, 2048), -EINVAL); /* below target */
	assert_int_equal(xst_vm_set_mem_max(f->vm, 6000), 0);
	assert_int_equal(xst_vm_set_mem_max(f->vm, 9000), -EINVAL); /* beyond RAM */
	assert_int_equal(xst_vm_info(f->vm, &info), 0);
	assert_int_equal(info.mem_target_kib, 4096);
	assert_int_equal(info.mem_max_kib, 6000);
	assert_int_equal(info.vcpus_max, 2);
	assert_int_equal(xst_vm_sched_set(f->vm, 512, 50), 0);
	assert_int_equal(xst_vm_sched_set(f->vm, 70000, 0), -EINVAL);
	talloc_free(f);
}

static bool wait_console(struct fixture *f, const char *what, int ms)
{
	bool found = false;

	for (; ms > 0 && !found; ms -= 10) {
		pthread_mutex_lock(&f->lock);
		found = strstr(f->con, what) != NULL;
		pthread_mutex_unlock(&f->lock);
		if (!found)
			usleep(10000);
	}
	return found;
}

static void test_workload_dirty_and_console(void **state)
{
	struct fixture *f = fixture_new("dirty=8M/s,console=50ms,ws=256K", 4096);
	uint64_t npages = xst_vm_npages(f->vm), bitmap[16] = {0}, w;
	uint64_t page[XST_PAGE_SIZE / 8];
	struct xst_vcpu_info vi;
	struct runner r = {0};
	unsigned int i, set = 0;

	assert_int_equal(xst_vm_dirty_log_enable(f->vm, true), 0);
	run_start(&r, f->vcpu);
	assert_true(wait_console(f, "sim: simtest (domid 7) booting", 2000));
	assert_true(wait_console(f, "sim: simtest tick 2", 2000));
	run_stop(&r);
	assert_int_equal(r.exit.reason, XST_EXIT_NONE);

	assert_int_equal(xst_vm_dirty_log_fetch(f->vm, bitmap, npages), 0);
	for (i = 0; i < 64; i++) /* ws=256K: pages 0..63 only */
		set += (bitmap[0] >> i) & 1;
	assert_true(set > 0);
	for (i = 1; i < npages / 64; i++)
		assert_int_equal(bitmap[i], 0);
	/* the pattern: every word of a dirtied page is gen << 32 | gfn */
	assert_int_equal(xst_vm_read_page(f->vm, 0, page), 0);
	assert_int_equal(page[0] & 0xffffffff, 0);
	assert_true(page[0] >> 32 >= 1);
	for (w = 1; w < XST_PAGE_SIZE / 8; w++)
		assert_int_equal(page[w], page[0]);
	/* fetch cleared it */
	assert_int_equal(xst_vm_dirty_log_fetch(f->vm, bitmap, npages), 0);
	assert_int_equal(bitmap[0], 0);
	assert_int_equal(xst_vm_dirty_log_fetch(f->vm, bitmap, 10), -ENOSPC);
	assert_int_equal(xst_vcpu_info(f->vcpu, &vi), 0);
	assert_false(vi.running);
	talloc_free(f);
}

static void test_kick_is_sticky(void **state)
{
	struct fixture *f = fixture_new(NULL, 1024);
	struct xst_vcpu_exit exit;
	struct timespec a, b;

	/* a kick before vcpu_run makes the next run return at once */
	xst_vcpu_kick(f->vcpu);
	clock_gettime(CLOCK_MONOTONIC, &a);
	assert_int_equal(xst_vcpu_run(f->vcpu, &exit), 0);
	clock_gettime(CLOCK_MONOTONIC, &b);
	assert_int_equal(exit.reason, XST_EXIT_NONE);
	assert_true(b.tv_sec - a.tv_sec < 2);
	talloc_free(f);
}

static void test_state_save_load(void **state)
{
	struct fixture *f = fixture_new("console=10ms", 1024);
	struct runner r = {0};
	uint8_t *blob, *vblob, bad[256];
	size_t len, vlen;

	run_start(&r, f->vcpu);
	assert_true(wait_console(f, "tick 3", 2000));
	run_stop(&r);
	assert_int_equal(xst_vm_state_save(f->vm, f, &blob, &len), 0);
	assert_int_equal(xst_vcpu_state_save(f->vcpu, f, &vblob, &vlen), 0);
	/* corrupted or truncated blobs are refused */
	assert_int_equal(xst_vm_state_load(f->vm, blob, len - 1), -EINVAL);
	memcpy(bad, blob, len);
	bad[0] ^= 0xff;
	assert_int_equal(xst_vm_state_load(f->vm, bad, len), -EINVAL);
	memcpy(bad, vblob, vlen);
	bad[8] = 9; /* vcpu id */
	assert_int_equal(xst_vcpu_state_load(f->vcpu, bad, vlen), -EINVAL);
	/* a good blob loads into a fresh vm of the same config; the guest continues */
	{
		struct fixture *g = fixture_new("console=10ms", 1024);
		char *tick;
		unsigned long n;

		assert_int_equal(xst_vm_state_load(g->vm, blob, len), 0);
		assert_int_equal(xst_vcpu_state_load(g->vcpu, vblob, vlen), 0);
		run_start(&r, g->vcpu);
		assert_true(wait_console(g, "tick", 2000));
		run_stop(&r);
		tick = strstr(g->con, "tick ");
		n = strtoul(tick + 5, NULL, 10);
		assert_true(n > 3); /* continued, not restarted at 1 */
		assert_null(strstr(g->con, "booting"));
		talloc_free(g);
	}
	talloc_free(f);
}

/* ---- the xenbus client, against a scripted server on the ring ------------------ */

struct ring_page {
	char req[1024];
	char rsp[1024];
	uint32_t req_cons, req_prod, rsp_cons, rsp_prod;
	uint32_t server_features, connection, error;
};

struct hdr {
	uint32_t type, req_id, tx_id, len;
};

struct server {
	struct ring_page *r;
	int kick_fd, notify_fd;
};

static void srv_notify(struct server *s)
{
	uint64_t one = 1;

	assert_int_equal(write(s->notify_fd, &one, 8), 8);
}

/* Wait for one request; returns its type, payload copied into buf (NUL-terminated). */
static uint32_t srv_recv(struct server *s, char *buf, uint32_t *len, uint32_t *req_id)
{
	struct hdr h;
	uint32_t i, cons;
	int ms;

	for (ms = 0; ms < 5000; ms += 5) {
		uint32_t prod = __atomic_load_n(&s->r->req_prod, __ATOMIC_ACQUIRE);
		cons = s->r->req_cons;
		if (prod - cons >= sizeof(h)) {
			for (i = 0; i < sizeof(h); i++)
				((char *)&h)[i] = s->r->req[(cons + i) % 1024];
			if (prod - cons >= sizeof(h) + h.len)
				break;
		}
		usleep(5000);
	}
	assert_true(ms < 5000);
	for (i = 0; i < h.len; i++)
		buf[i] = s->r->req[(cons + sizeof(h) + i) % 1024];
	buf[h.len] = '\0';
	__atomic_store_n(&s->r->req_cons, cons + sizeof(h) + h.len, __ATOMIC_RELEASE);
	*len = h.len;
	*req_id = h.req_id;
	return h.type;
}

static void srv_send(struct server *s, uint32_t type, uint32_t req_id, const char *p, uint32_t len)
{
	struct hdr h = {.type = type, .req_id = req_id, .len = len};
	uint32_t prod = s->r->rsp_prod, i;

	for (i = 0; i < sizeof(h); i++)
		s->r->rsp[(prod++) % 1024] = ((char *)&h)[i];
	for (i = 0; i < len; i++)
		s->r->rsp[(prod++) % 1024] = p[i];
	__atomic_store_n(&s->r->rsp_prod, prod, __ATOMIC_RELEASE);
	srv_notify(s);
}

static void test_xenbus_shutdown_flow(void **state)
{
	struct fixture *f = fixture_new(NULL, 1024);
	struct xst_xs_ring ring;
	struct server s;
	struct runner r = {0};
	char buf[4200];
	uint32_t len, id;
	void *map;

	assert_int_equal(xst_vm_xs_ring(f->vm, &ring), 0);
	assert_int_equal(ring.offset, (1024 / 4 - 1) * XST_PAGE_SIZE); /* last page */
	map = mmap(NULL, XST_PAGE_SIZE, PROT_READ | PROT_WRITE, MAP_SHARED, ring.mem_fd,
		   ring.offset);
	assert_true(map != MAP_FAILED);
	s.r = map;
	s.kick_fd = ring.kick_fd;
	s.notify_fd = ring.notify_fd;
	assert_int_equal(s.r->connection, 1); /* waiting for xstored */

	run_start(&r, f->vcpu);
	usleep(150000);
	assert_int_equal(s.r->req_prod, 0); /* nothing sent before the server connects */
	/* what INTRODUCE does: reset indexes, connection = 0, notify */
	s.r->req_cons = s.r->req_prod = s.r->rsp_cons = s.r->rsp_prod = 0;
	__atomic_store_n(&s.r->connection, 0, __ATOMIC_RELEASE);
	srv_notify(&s);

	assert_int_equal(srv_recv(&s, buf, &len, &id), 2 /* READ */);
	assert_string_equal(buf, "name");
	srv_send(&s, 16 /* ERROR */, id, "ENOENT", 7); /* toolstack not there yet: retry */
	assert_int_equal(srv_recv(&s, buf, &len, &id), 2);
	srv_send(&s, 2, id, "vm-seven", 8);
	assert_int_equal(srv_recv(&s, buf, &len, &id), 11 /* WRITE */);
	assert_string_equal(buf, "data/status");
	assert_int_equal(len, 12 + 7);
	assert_memory_equal(buf + 12, "running", 7);
	srv_send(&s, 11, id, "OK", 3);
	assert_int_equal(srv_recv(&s, buf, &len, &id), 4 /* WATCH */);
	assert_string_equal(buf, "control/shutdown");
	assert_string_equal(buf + 17, "shutdown");
	srv_send(&s, 4, id, "OK", 3);
	/* the initial watch event: node empty -> back to idle */
	srv_send(&s, 15, 0, "control/shutdown\0shutdown", 26);
	assert_int_equal(srv_recv(&s, buf, &len, &id), 2);
	assert_string_equal(buf, "control/shutdown");
	srv_send(&s, 2, id, "", 0);
	/* the toolstack asks for a poweroff */
	srv_send(&s, 15, 0, "control/shutdown\0shutdown", 26);
	assert_int_equal(srv_recv(&s, buf, &len, &id), 2);
	srv_send(&s, 2, id, "poweroff", 8);
	assert_int_equal(srv_recv(&s, buf, &len, &id), 11); /* acknowledge: write "" */
	assert_string_equal(buf, "control/shutdown");
	assert_int_equal(len, 17);
	srv_send(&s, 11, id, "OK", 3);
	pthread_join(r.t, NULL);
	assert_int_equal(r.ret, 0);
	assert_int_equal(r.exit.reason, XST_EXIT_SHUTDOWN);
	assert_int_equal(r.exit.shutdown, XST_SHUTDOWN_POWEROFF);
	assert_non_null(strstr(f->con, "xenbus: name is \"vm-seven\""));
	munmap(map, XST_PAGE_SIZE);
	talloc_free(f);
}

static void test_soft_reset_reconnects(void **state)
{
	struct fixture *f = fixture_new(NULL, 1024);
	struct xst_xs_ring ring;
	struct ring_page *p;

	assert_int_equal(xst_vm_xs_ring(f->vm, &ring), 0);
	p = mmap(NULL, XST_PAGE_SIZE, PROT_READ | PROT_WRITE, MAP_SHARED, ring.mem_fd,
		 ring.offset);
	assert_true(p != MAP_FAILED);
	p->connection = 0;
	assert_int_equal(xst_vm_soft_reset(f->vm), 0);
	assert_int_equal(p->connection, 1);
	munmap(p, XST_PAGE_SIZE);
	talloc_free(f);
}

int main(void)
{
	char exe[4096];
	ssize_t n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);

	/* this program lives in <build>/plugins/sim/: the plugins are one level up */
	if (n > 0) {
		exe[n] = '\0';
		*strrchr(exe, '/') = '\0';
		strcat(exe, "/..");
		setenv("XST_PLUGIN_DIR", exe, 1);
	}
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_workload_parse_errors),
		cmocka_unit_test(test_pages_and_memory),
		cmocka_unit_test(test_workload_dirty_and_console),
		cmocka_unit_test(test_kick_is_sticky),
		cmocka_unit_test(test_state_save_load),
		cmocka_unit_test(test_xenbus_shutdown_flow),
		cmocka_unit_test(test_soft_reset_reconnects),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}

/* Unit tests for proto/rpc.c over real nng sockets in a private directory. */
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
#include <sys/eventfd.h>
#include <unistd.h>

#include <cmocka.h>
#include <talloc.h>

#include "proto/domain.pb-c.h"
#include "proto/rpc.h"

static char dir[64];
static char url[128];
static int seq;

static int setup(void **state)
{
	snprintf(dir, sizeof(dir), "/tmp/rpc_test.XXXXXX");
	if (!mkdtemp(dir))
		return -1;
	return 0;
}

static int teardown(void **state)
{
	char cmd[128];

	snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
	return system(cmd) == 0 ? 0 : -1;
}

static void next_url(void)
{
	snprintf(url, sizeof(url), "ipc://%s/s%d.ipc", dir, seq++);
}

/* Server thread: answers `n` requests with the request reversed (one request it does
 * not answer when `n` is negative). */
struct server_arg {
	struct xst_rpc *srv;
	int n;
};

static void *echo_server(void *p)
{
	struct server_arg *a = p;
	int i;

	for (i = 0; i < a->n; i++) {
		uint8_t *req, *rep;
		size_t len, k;

		if (xst_rpc_recv(a->srv, 5000, NULL, &req, &len) < 0)
			return NULL;
		rep = talloc_size(NULL, len ? len : 1);
		for (k = 0; k < len; k++)
			rep[k] = req[len - 1 - k];
		if (xst_rpc_reply(a->srv, rep, len) < 0)
			return NULL;
		talloc_free(req);
		talloc_free(rep);
	}
	return NULL;
}

static void call_round_trip(void **state)
{
	void *ctx = talloc_new(NULL);
	struct xst_rpc *srv, *cli;
	struct server_arg a;
	pthread_t t;
	uint8_t *rep;
	size_t len;

	next_url();
	assert_int_equal(xst_rpc_listen(ctx, url, &srv), 0);
	assert_string_equal(xst_rpc_url(srv), url);
	assert_int_equal(xst_rpc_dial(ctx, url, &cli), 0);
	a.srv = srv;
	a.n = 2;
	assert_int_equal(pthread_create(&t, NULL, echo_server, &a), 0);
	assert_int_equal(xst_rpc_call(cli, "abc", 3, 5000, ctx, &rep, &len), 0);
	assert_int_equal(len, 3);
	assert_memory_equal(rep, "cba", 3);
	assert_int_equal(xst_rpc_call(cli, "", 0, 5000, ctx, &rep, &len), 0);
	assert_int_equal(len, 0);
	assert_non_null(rep);
	pthread_join(t, NULL);
	/* Roles are enforced. */
	assert_int_equal(xst_rpc_reply(cli, "x", 1), -EINVAL);
	assert_int_equal(xst_rpc_call(srv, "x", 1, 10, ctx, &rep, &len), -EINVAL);
	talloc_free(ctx);
}

static void dial_nobody(void **state)
{
	struct xst_rpc *cli;
	int rv;

	next_url();
	rv = xst_rpc_dial(NULL, url, &cli);
	assert_true(rv == -ECONNREFUSED || rv == -ENOENT);
	assert_null(cli);
	assert_int_equal(xst_rpc_dial(NULL, "bogus://x", &cli), -EINVAL);
}

static void listen_twice(void **state)
{
	void *ctx = talloc_new(NULL);
	struct xst_rpc *a, *b;

	next_url();
	assert_int_equal(xst_rpc_listen(ctx, url, &a), 0);
	assert_int_equal(xst_rpc_listen(ctx, url, &b), -EADDRINUSE);
	/* Freeing closes the socket; the address can be listened on again. */
	talloc_free(a);
	assert_int_equal(xst_rpc_listen(ctx, url, &b), 0);
	talloc_free(ctx);
}

static void timeouts(void **state)
{
	void *ctx = talloc_new(NULL);
	struct xst_rpc *srv, *cli;
	uint8_t *buf;
	size_t len;
	struct pollfd pfd;
	int fd;

	next_url();
	assert_int_equal(xst_rpc_listen(ctx, url, &srv), 0);
	assert_int_equal(xst_rpc_recv(srv, 0, ctx, &buf, &len), -ETIMEDOUT);
	assert_int_equal(xst_rpc_recv(srv, 50, ctx, &buf, &len), -ETIMEDOUT);
	fd = xst_rpc_poll_fd(srv);
	assert_true(fd >= 0);
	pfd.fd = fd;
	pfd.events = POLLIN;
	assert_int_equal(poll(&pfd, 1, 0), 0);
	assert_int_equal(xst_rpc_dial(ctx, url, &cli), 0);
	/* Nobody answers: the call times out, but the request did arrive. */
	assert_int_equal(xst_rpc_call(cli, "q", 1, 100, ctx, &buf, &len), -ETIMEDOUT);
	assert_int_equal(poll(&pfd, 1, 2000), 1);
	assert_int_equal(xst_rpc_recv(srv, 0, ctx, &buf, &len), 0);
	assert_int_equal(len, 1);
	assert_int_equal(xst_rpc_poll_fd(cli), -EINVAL);
	talloc_free(ctx);
}

static void messages(void **state)
{
	void *ctx = talloc_new(NULL);
	Xstdom__Reply r = XSTDOM__REPLY__INIT, *back;
	Xstdom__Info info = XSTDOM__INFO__INIT;
	ProtobufCMessage *m;
	uint8_t *buf;
	size_t len;

	r.error = -22;
	r.message = "bad thing";
	info.core = "sim";
	info.name = "vm1";
	info.domid = 7;
	r.body_case = XSTDOM__REPLY__BODY_INFO;
	r.info = &info;
	assert_int_equal(xst_rpc_pack(&r.base, ctx, &buf, &len), 0);
	assert_int_equal(xst_rpc_unpack(&xstdom__reply__descriptor, buf, len, ctx, &m), 0);
	back = (Xstdom__Reply *)m;
	assert_int_equal(back->error, -22);
	assert_string_equal(back->message, "bad thing");
	assert_int_equal(back->body_case, XSTDOM__REPLY__BODY_INFO);
	assert_string_equal(back->info->name, "vm1");
	assert_int_equal(back->info->domid, 7);
	/* The whole tree hangs below the message. */
	talloc_free(m);
	/* Garbage and truncation are refused, not crashed on. */
	assert_int_equal(
	    xst_rpc_unpack(&xstdom__reply__descriptor, (const uint8_t *)"\xff\xff\xff", 3, ctx, &m),
	    -EPROTO);
	assert_int_equal(xst_rpc_unpack(&xstdom__reply__descriptor, buf, len - 2, ctx, &m),
			 -EPROTO);
	assert_null(m);
	talloc_free(ctx);
}

struct msg_server_arg {
	struct xst_rpc *srv;
};

static void *msg_server(void *p)
{
	struct msg_server_arg *a = p;
	Xstdom__Reply rep = XSTDOM__REPLY__INIT;
	ProtobufCMessage *m;
	Xstdom__Request *req;

	if (xst_rpc_recv_msg(a->srv, 5000, &xstdom__request__descriptor, NULL, &m) < 0)
		return NULL;
	req = (Xstdom__Request *)m;
	rep.error =
	    req->body_case == XSTDOM__REQUEST__BODY_MEM_TARGET ? (int)req->mem_target->kib : -1;
	xst_rpc_reply_msg(a->srv, &rep.base);
	talloc_free(m);
	return NULL;
}

static void message_call(void **state)
{
	void *ctx = talloc_new(NULL);
	Xstdom__Request req = XSTDOM__REQUEST__INIT;
	Xstdom__MemSet ms = XSTDOM__MEM_SET__INIT;
	struct msg_server_arg a;
	struct xst_rpc *cli;
	ProtobufCMessage *m;
	pthread_t t;

	next_url();
	assert_int_equal(xst_rpc_listen(ctx, url, &a.srv), 0);
	assert_int_equal(xst_rpc_dial(ctx, url, &cli), 0);
	assert_int_equal(pthread_create(&t, NULL, msg_server, &a), 0);
	ms.kib = 4242;
	req.body_case = XSTDOM__REQUEST__BODY_MEM_TARGET;
	req.mem_target = &ms;
	assert_int_equal(
	    xst_rpc_call_msg(cli, &req.base, 5000, &xstdom__reply__descriptor, ctx, &m), 0);
	assert_int_equal(((Xstdom__Reply *)m)->error, 4242);
	pthread_join(t, NULL);
	talloc_free(ctx);
}

static void async_calls(void **state)
{
	void *ctx = talloc_new(NULL);
	struct xst_rpc *srv, *cli;
	struct xst_rpc_async *a1, *a2, *a3;
	struct server_arg sa;
	struct pollfd pfd;
	pthread_t t;
	uint8_t *rep;
	size_t len;
	uint64_t cnt;
	int efd, rounds = 0;

	efd = eventfd(0, EFD_CLOEXEC);
	assert_true(efd >= 0);
	next_url();
	assert_int_equal(xst_rpc_listen(ctx, url, &srv), 0);
	assert_int_equal(xst_rpc_dial(ctx, url, &cli), 0);
	assert_int_equal(xst_rpc_async_start(cli, ctx, "12", 2, 5000, efd, &a1), 0);
	assert_int_equal(xst_rpc_async_start(cli, ctx, "34", 2, 5000, efd, &a2), 0);
	assert_false(xst_rpc_async_done(a1));
	assert_int_equal(xst_rpc_async_result(a1, ctx, &rep, &len), -EINPROGRESS);
	/* A synchronous call on the same client while both are outstanding. */
	sa.srv = srv;
	sa.n = 3;
	assert_int_equal(pthread_create(&t, NULL, echo_server, &sa), 0);
	assert_int_equal(xst_rpc_call(cli, "56", 2, 5000, ctx, &rep, &len), 0);
	assert_memory_equal(rep, "65", 2);
	pfd.fd = efd;
	pfd.events = POLLIN;
	while (!(xst_rpc_async_done(a1) && xst_rpc_async_done(a2)) && rounds++ < 50) {
		assert_int_equal(poll(&pfd, 1, 100) >= 0, 1);
		if (pfd.revents & POLLIN)
			assert_int_equal(read(efd, &cnt, sizeof(cnt)), sizeof(cnt));
	}
	pthread_join(t, NULL);
	assert_int_equal(xst_rpc_async_result(a1, ctx, &rep, &len), 0);
	assert_memory_equal(rep, "21", 2);
	assert_int_equal(xst_rpc_async_result(a2, ctx, &rep, &len), 0);
	assert_memory_equal(rep, "43", 2);
	talloc_free(a1);
	talloc_free(a2);
	/* A call nobody answers times out; one freed while pending is cancelled. */
	assert_int_equal(xst_rpc_async_start(cli, ctx, "x", 1, 100, efd, &a1), 0);
	assert_int_equal(xst_rpc_async_start(cli, ctx, "y", 1, -1, efd, &a3), 0);
	rounds = 0;
	while (!xst_rpc_async_done(a1) && rounds++ < 50) {
		assert_int_equal(poll(&pfd, 1, 100) >= 0, 1);
		if (pfd.revents & POLLIN)
			assert_int_equal(read(efd, &cnt, sizeof(cnt)), sizeof(cnt));
	}
	assert_int_equal(xst_rpc_async_result(a1, ctx, &rep, &len), -ETIMEDOUT);
	talloc_free(a3);
	close(efd);
	talloc_free(ctx);
}

static void events(void **state)
{
	void *ctx = talloc_new(NULL);
	struct xst_rpc *pub, *sub;
	uint8_t *buf;
	size_t len;
	int i, rv = -1;

	next_url();
	/* The subscriber may come first: it connects in the background. */
	assert_int_equal(xst_rpc_subscribe(ctx, url, &sub), 0);
	assert_int_equal(xst_rpc_publish(ctx, url, &pub), 0);
	assert_true(xst_rpc_poll_fd(sub) >= 0);
	for (i = 0; i < 100 && rv != 0; i++) {
		assert_int_equal(xst_rpc_event_send(pub, "ev", 2), 0);
		rv = xst_rpc_event_recv(sub, 50, ctx, &buf, &len);
	}
	assert_int_equal(rv, 0);
	assert_int_equal(len, 2);
	assert_memory_equal(buf, "ev", 2);
	assert_int_equal(xst_rpc_event_send(sub, "x", 1), -EINVAL);
	talloc_free(ctx);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(call_round_trip), cmocka_unit_test(dial_nobody),
	    cmocka_unit_test(listen_twice),    cmocka_unit_test(timeouts),
	    cmocka_unit_test(messages),	       cmocka_unit_test(message_call),
	    cmocka_unit_test(async_calls),     cmocka_unit_test(events),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}

/*
 * The nng transport (see rpc.h).  Each struct xst_rpc owns one nng socket of the
 * protocol its role needs: rep0 (server), req0 (client), pub0/sub0 (events).  Timeouts
 * are applied per operation through the socket's send/receive timeout options, so a
 * single object must not be used from two threads at once.
 */
#include <errno.h>
#include <string.h>
#include <unistd.h>

#include <nng/nng.h>
#include <nng/protocol/pubsub0/pub.h>
#include <nng/protocol/pubsub0/sub.h>
#include <nng/protocol/reqrep0/rep.h>
#include <nng/protocol/reqrep0/req.h>
#include <talloc.h>

#include "proto/rpc.h"

enum rpc_role { RPC_SERVER, RPC_CLIENT, RPC_PUB, RPC_SUB };

struct xst_rpc {
	nng_socket sock;
	bool open;
	enum rpc_role role;
	char *url;
};

static int rpc_errno(int nerr)
{
	if (nerr == 0)
		return 0;
	if (nerr & NNG_ESYSERR)
		return -(nerr & ~NNG_ESYSERR);
	switch (nerr) {
	case NNG_ETIMEDOUT:
	case NNG_EAGAIN:
		return -ETIMEDOUT;
	case NNG_ECONNREFUSED:
		return -ECONNREFUSED;
	case NNG_ECONNRESET:
	case NNG_ECONNSHUT:
		return -ECONNRESET;
	case NNG_EADDRINUSE:
		return -EADDRINUSE;
	case NNG_ENOENT:
		return -ENOENT;
	case NNG_ENOMEM:
		return -ENOMEM;
	case NNG_EINVAL:
	case NNG_EADDRINVAL:
	case NNG_ENOTSUP:
		return -EINVAL;
	case NNG_EPERM:
		return -EACCES;
	case NNG_ECLOSED:
		return -EBADF;
	case NNG_ESTATE:
		return -EPROTO;
	case NNG_EMSGSIZE:
		return -EMSGSIZE;
	default:
		return -EIO;
	}
}

static int rpc_destroy(struct xst_rpc *r)
{
	if (r->open)
		nng_close(r->sock);
	r->open = false;
	return 0;
}

static int rpc_new(void *ctx, const char *url, enum rpc_role role, struct xst_rpc **out)
{
	struct xst_rpc *r;
	int rv;

	*out = NULL;
	r = talloc_zero(ctx, struct xst_rpc);
	if (!r)
		return -ENOMEM;
	r->role = role;
	r->url = talloc_strdup(r, url);
	if (!r->url) {
		talloc_free(r);
		return -ENOMEM;
	}
	switch (role) {
	case RPC_SERVER:
		rv = nng_rep0_open(&r->sock);
		break;
	case RPC_CLIENT:
		rv = nng_req0_open(&r->sock);
		break;
	case RPC_PUB:
		rv = nng_pub0_open(&r->sock);
		break;
	default:
		rv = nng_sub0_open(&r->sock);
		break;
	}
	if (rv != 0) {
		talloc_free(r);
		return rpc_errno(rv);
	}
	r->open = true;
	talloc_set_destructor(r, rpc_destroy);
	rv = nng_socket_set_size(r->sock, NNG_OPT_RECVMAXSZ, XST_RPC_MAX_MSG);
	if (rv == 0 && role == RPC_CLIENT)
		/* Requests are not idempotent (create, destroy): never resend one. */
		rv = nng_socket_set_ms(r->sock, NNG_OPT_REQ_RESENDTIME, NNG_DURATION_INFINITE);
	if (rv == 0 && role == RPC_SUB)
		rv = nng_socket_set(r->sock, NNG_OPT_SUB_SUBSCRIBE, "", 0);
	if (rv == 0) {
		if (role == RPC_SERVER || role == RPC_PUB)
			rv = nng_listen(r->sock, url, NULL, 0);
		else
			rv = nng_dial(r->sock, url, NULL, role == RPC_SUB ? NNG_FLAG_NONBLOCK : 0);
	}
	if (rv != 0) {
		talloc_free(r);
		return rpc_errno(rv);
	}
	*out = r;
	return 0;
}

int xst_rpc_listen(void *ctx, const char *url, struct xst_rpc **out)
{
	return rpc_new(ctx, url, RPC_SERVER, out);
}

int xst_rpc_dial(void *ctx, const char *url, struct xst_rpc **out)
{
	return rpc_new(ctx, url, RPC_CLIENT, out);
}

int xst_rpc_publish(void *ctx, const char *url, struct xst_rpc **out)
{
	return rpc_new(ctx, url, RPC_PUB, out);
}

int xst_rpc_subscribe(void *ctx, const char *url, struct xst_rpc **out)
{
	return rpc_new(ctx, url, RPC_SUB, out);
}

const char *xst_rpc_url(const struct xst_rpc *r)
{
	return r->url;
}

static int rpc_send(struct xst_rpc *r, const void *buf, size_t len, int timeout_ms)
{
	int rv;

	rv = nng_socket_set_ms(r->sock, NNG_OPT_SENDTIMEO,
			       timeout_ms < 0 ? NNG_DURATION_INFINITE : timeout_ms);
	if (rv != 0)
		return rpc_errno(rv);
	/* nng_send copies the buffer when NNG_FLAG_ALLOC is not given. */
	return rpc_errno(nng_send(r->sock, (void *)buf, len, 0));
}

static int rpc_recv(struct xst_rpc *r, int timeout_ms, void *ctx, uint8_t **buf, size_t *len)
{
	void *data = NULL;
	size_t sz = 0;
	uint8_t *copy;
	int rv, flags = 0;

	*buf = NULL;
	*len = 0;
	if (timeout_ms == 0) {
		flags = NNG_FLAG_NONBLOCK;
	} else {
		rv = nng_socket_set_ms(r->sock, NNG_OPT_RECVTIMEO,
				       timeout_ms < 0 ? NNG_DURATION_INFINITE : timeout_ms);
		if (rv != 0)
			return rpc_errno(rv);
	}
	rv = nng_recv(r->sock, &data, &sz, flags | NNG_FLAG_ALLOC);
	if (rv != 0)
		return rpc_errno(rv);
	/* Always allocate at least one byte so an empty message is not NULL. */
	copy = talloc_size(ctx, sz ? sz : 1);
	if (!copy) {
		nng_free(data, sz);
		return -ENOMEM;
	}
	if (sz)
		memcpy(copy, data, sz);
	nng_free(data, sz);
	*buf = copy;
	*len = sz;
	return 0;
}

int xst_rpc_call(struct xst_rpc *r, const void *req, size_t len, int timeout_ms, void *ctx,
		 uint8_t **rep, size_t *rep_len)
{
	int rv;

	*rep = NULL;
	*rep_len = 0;
	if (r->role != RPC_CLIENT)
		return -EINVAL;
	rv = rpc_send(r, req, len, timeout_ms);
	if (rv < 0)
		return rv;
	return rpc_recv(r, timeout_ms, ctx, rep, rep_len);
}

int xst_rpc_recv(struct xst_rpc *r, int timeout_ms, void *ctx, uint8_t **req, size_t *len)
{
	*req = NULL;
	*len = 0;
	if (r->role != RPC_SERVER)
		return -EINVAL;
	return rpc_recv(r, timeout_ms, ctx, req, len);
}

int xst_rpc_reply(struct xst_rpc *r, const void *rep, size_t len)
{
	if (r->role != RPC_SERVER)
		return -EINVAL;
	return rpc_send(r, rep, len, XST_RPC_TIMEOUT_MS);
}

int xst_rpc_poll_fd(struct xst_rpc *r)
{
	int fd = -1, rv;

	if (r->role != RPC_SERVER && r->role != RPC_SUB)
		return -EINVAL;
	rv = nng_socket_get_int(r->sock, NNG_OPT_RECVFD, &fd);
	if (rv != 0)
		return rpc_errno(rv);
	return fd;
}

int xst_rpc_event_send(struct xst_rpc *r, const void *buf, size_t len)
{
	if (r->role != RPC_PUB)
		return -EINVAL;
	return rpc_send(r, buf, len, XST_RPC_TIMEOUT_MS);
}

int xst_rpc_event_recv(struct xst_rpc *r, int timeout_ms, void *ctx, uint8_t **buf, size_t *len)
{
	*buf = NULL;
	*len = 0;
	if (r->role != RPC_SUB)
		return -EINVAL;
	return rpc_recv(r, timeout_ms, ctx, buf, len);
}

/*
 * protobuf-c allocator on talloc: the first allocation of an unpack is the message
 * itself (protobuf-c allocates it before anything else), and every later allocation
 * hangs below it, so talloc_free(message) releases the whole tree.
 */
struct pb_talloc {
	void *parent;
	void *root;
};

static void *pb_alloc(void *data, size_t size)
{
	struct pb_talloc *a = data;
	void *p;

	p = talloc_size(a->root ? a->root : a->parent, size ? size : 1);
	if (p && !a->root)
		a->root = p;
	return p;
}

static void pb_free(void *data, void *p)
{
	struct pb_talloc *a = data;

	if (p == a->root)
		a->root = NULL;
	talloc_free(p);
}

int xst_rpc_unpack(const ProtobufCMessageDescriptor *desc, const uint8_t *buf, size_t len,
		   void *ctx, ProtobufCMessage **out)
{
	struct pb_talloc a = {.parent = ctx, .root = NULL};
	ProtobufCAllocator alloc = {.alloc = pb_alloc, .free = pb_free, .allocator_data = &a};

	*out = protobuf_c_message_unpack(desc, &alloc, len, buf);
	if (!*out) {
		/* Either malformed or out of memory; protobuf-c does not say which. */
		return -EPROTO;
	}
	return 0;
}

int xst_rpc_pack(const ProtobufCMessage *msg, void *ctx, uint8_t **buf, size_t *len)
{
	size_t sz = protobuf_c_message_get_packed_size(msg);
	uint8_t *b;

	*buf = NULL;
	*len = 0;
	b = talloc_size(ctx, sz ? sz : 1);
	if (!b)
		return -ENOMEM;
	*len = protobuf_c_message_pack(msg, b);
	*buf = b;
	return 0;
}

int xst_rpc_call_msg(struct xst_rpc *r, const ProtobufCMessage *req, int timeout_ms,
		     const ProtobufCMessageDescriptor *desc, void *ctx, ProtobufCMessage **rep)
{
	void *tmp = talloc_new(ctx);
	uint8_t *out, *in;
	size_t olen, ilen;
	int rv;

	*rep = NULL;
	if (!tmp)
		return -ENOMEM;
	rv = xst_rpc_pack(req, tmp, &out, &olen);
	if (rv < 0)
		goto out;
	rv = xst_rpc_call(r, out, olen, timeout_ms, tmp, &in, &ilen);
	if (rv < 0)
		goto out;
	rv = xst_rpc_unpack(desc, in, ilen, ctx, rep);
out:
	talloc_free(tmp);
	return rv;
}

int xst_rpc_recv_msg(struct xst_rpc *r, int timeout_ms, const ProtobufCMessageDescriptor *desc,
		     void *ctx, ProtobufCMessage **req)
{
	uint8_t *in;
	size_t ilen;
	int rv;

	*req = NULL;
	rv = xst_rpc_recv(r, timeout_ms, ctx, &in, &ilen);
	if (rv < 0)
		return rv;
	rv = xst_rpc_unpack(desc, in, ilen, ctx, req);
	talloc_free(in);
	return rv;
}

int xst_rpc_reply_msg(struct xst_rpc *r, const ProtobufCMessage *rep)
{
	uint8_t *out;
	size_t olen;
	int rv;

	rv = xst_rpc_pack(rep, NULL, &out, &olen);
	if (rv < 0)
		return rv;
	rv = xst_rpc_reply(r, out, olen);
	talloc_free(out);
	return rv;
}

/*
 * Asynchronous calls.  State machine of one call, driven by nng's aio callback on an
 * nng thread: SEND -> RECV -> DONE.  The callback only touches the async object and the
 * eventfd; the owner reads the result after `done` is seen (acquire/release ordering).
 */
enum async_state { ASYNC_SEND, ASYNC_RECV, ASYNC_DONE };

struct xst_rpc_async {
	nng_ctx nctx;
	nng_aio *aio;
	bool ctx_open;
	enum async_state state;
	int notify_fd;
	int result;
	nng_msg *reply;
	int done; /* atomic */
};

static void async_finish(struct xst_rpc_async *a, int rv)
{
	uint64_t one = 1;
	ssize_t n;

	a->result = rv;
	a->state = ASYNC_DONE;
	__atomic_store_n(&a->done, 1, __ATOMIC_RELEASE);
	n = write(a->notify_fd, &one, sizeof(one));
	(void)n; /* an eventfd write only fails on overflow, which still wakes the poller */
}

static void async_cb(void *arg)
{
	struct xst_rpc_async *a = arg;
	int rv = nng_aio_result(a->aio);

	if (a->state == ASYNC_SEND) {
		if (rv != 0) {
			nng_msg_free(nng_aio_get_msg(a->aio));
			nng_aio_set_msg(a->aio, NULL);
			async_finish(a, rpc_errno(rv));
			return;
		}
		a->state = ASYNC_RECV;
		nng_ctx_recv(a->nctx, a->aio);
		return;
	}
	if (a->state == ASYNC_RECV) {
		if (rv == 0) {
			a->reply = nng_aio_get_msg(a->aio);
			nng_aio_set_msg(a->aio, NULL);
		}
		async_finish(a, rpc_errno(rv));
	}
}

static int async_destroy(struct xst_rpc_async *a)
{
	if (a->aio) {
		nng_aio_stop(a->aio);
		nng_aio_free(a->aio);
	}
	if (a->ctx_open)
		nng_ctx_close(a->nctx);
	if (a->reply)
		nng_msg_free(a->reply);
	return 0;
}

int xst_rpc_async_start(struct xst_rpc *r, void *ctx, const void *req, size_t len, int timeout_ms,
			int notify_fd, struct xst_rpc_async **out)
{
	struct xst_rpc_async *a;
	nng_msg *msg = NULL;
	int rv;

	*out = NULL;
	if (r->role != RPC_CLIENT)
		return -EINVAL;
	a = talloc_zero(ctx, struct xst_rpc_async);
	if (!a)
		return -ENOMEM;
	a->notify_fd = notify_fd;
	talloc_set_destructor(a, async_destroy);
	rv = nng_ctx_open(&a->nctx, r->sock);
	if (rv != 0)
		goto fail;
	a->ctx_open = true;
	rv = nng_aio_alloc(&a->aio, async_cb, a);
	if (rv != 0)
		goto fail;
	rv = nng_msg_alloc(&msg, 0);
	if (rv != 0)
		goto fail;
	rv = nng_msg_append(msg, req, len);
	if (rv != 0) {
		nng_msg_free(msg);
		goto fail;
	}
	nng_aio_set_timeout(a->aio, timeout_ms < 0 ? NNG_DURATION_INFINITE : timeout_ms);
	nng_aio_set_msg(a->aio, msg);
	a->state = ASYNC_SEND;
	nng_ctx_send(a->nctx, a->aio);
	*out = a;
	return 0;
fail:
	talloc_free(a);
	return rpc_errno(rv);
}

bool xst_rpc_async_done(struct xst_rpc_async *a)
{
	return __atomic_load_n(&a->done, __ATOMIC_ACQUIRE) != 0;
}

int xst_rpc_async_result(struct xst_rpc_async *a, void *ctx, uint8_t **rep, size_t *len)
{
	size_t sz;
	uint8_t *b;

	*rep = NULL;
	*len = 0;
	if (!xst_rpc_async_done(a))
		return -EINPROGRESS;
	if (a->result < 0)
		return a->result;
	sz = nng_msg_len(a->reply);
	b = talloc_size(ctx, sz ? sz : 1);
	if (!b)
		return -ENOMEM;
	if (sz)
		memcpy(b, nng_msg_body(a->reply), sz);
	*rep = b;
	*len = sz;
	return 0;
}

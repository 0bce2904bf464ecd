/*
 * xst message transport: the one module that calls nng.
 *
 * Request/reply between xst processes over nng URLs (ipc:///path, tcp://host:port),
 * each message one protobuf-c packed buffer.  A server (`xst_rpc_listen`) receives one
 * request at a time and must reply to it before receiving the next; a client
 * (`xst_rpc_dial`) sends a request and waits for the reply with a timeout.  An optional
 * one-way event channel (`xst_rpc_publish` / `xst_rpc_subscribe`) carries notifications
 * from a server to any number of listeners; events are dropped when nobody listens.
 *
 * Objects are talloc contexts: freeing one closes its nng socket.  Every function
 * returns 0 or a negative errno (nng errors are mapped: -ETIMEDOUT, -ECONNREFUSED,
 * -EADDRINUSE, -ENOENT, -EINVAL, -EBADF for a closed socket, -EIO otherwise).
 * nng is not fork-safe: spawn children with posix_spawn, never fork() without exec.
 */
#ifndef XST_PROTO_RPC_H
#define XST_PROTO_RPC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <protobuf-c/protobuf-c.h>

struct xst_rpc;

/* Default timeout for a call, in milliseconds. */
#define XST_RPC_TIMEOUT_MS 10000
/* Largest message accepted from a peer. */
#define XST_RPC_MAX_MSG (16u << 20)

/* Server side: listen on `url` (for ipc:// a stale socket file is replaced). */
int xst_rpc_listen(void *ctx, const char *url, struct xst_rpc **out);
/* Client side: connect to `url`; -ECONNREFUSED / -ENOENT if nobody listens. */
int xst_rpc_dial(void *ctx, const char *url, struct xst_rpc **out);

/* Client: send `req` and wait up to timeout_ms (< 0: forever) for the reply, which is
 * allocated on `ctx`.  -ETIMEDOUT when no reply came. */
int xst_rpc_call(struct xst_rpc *r, const void *req, size_t len, int timeout_ms, void *ctx,
		 uint8_t **rep, size_t *rep_len);

/* Server: wait up to timeout_ms (< 0: forever, 0: poll) for a request, allocated on
 * `ctx`.  -ETIMEDOUT when none came. */
int xst_rpc_recv(struct xst_rpc *r, int timeout_ms, void *ctx, uint8_t **req, size_t *len);
/* Server: answer the request last received. */
int xst_rpc_reply(struct xst_rpc *r, const void *rep, size_t len);

/* A file descriptor that polls readable while a request (server) or event (subscriber)
 * is waiting; for poll() only, never read it.  -errno on failure. */
int xst_rpc_poll_fd(struct xst_rpc *r);

/* protobuf-c helpers: pack `msg`, call/reply, unpack the answer with `desc` into a
 * message allocated on `ctx` (talloc_free(msg) frees all of it).  -EPROTO when the
 * answer does not unpack. */
int xst_rpc_call_msg(struct xst_rpc *r, const ProtobufCMessage *req, int timeout_ms,
		     const ProtobufCMessageDescriptor *desc, void *ctx, ProtobufCMessage **rep);
int xst_rpc_recv_msg(struct xst_rpc *r, int timeout_ms, const ProtobufCMessageDescriptor *desc,
		     void *ctx, ProtobufCMessage **req);
int xst_rpc_reply_msg(struct xst_rpc *r, const ProtobufCMessage *rep);

/* Unpack `len` bytes of `buf` as `desc` onto ctx (the same allocator as above). */
int xst_rpc_unpack(const ProtobufCMessageDescriptor *desc, const uint8_t *buf, size_t len,
		   void *ctx, ProtobufCMessage **out);
/* Pack `msg` into a buffer allocated on ctx. */
int xst_rpc_pack(const ProtobufCMessage *msg, void *ctx, uint8_t **buf, size_t *len);

/* Event channel.  publish: listen on url and send events to every subscriber;
 * subscribe: dial url (retrying in the background until the publisher is up). */
int xst_rpc_publish(void *ctx, const char *url, struct xst_rpc **out);
int xst_rpc_subscribe(void *ctx, const char *url, struct xst_rpc **out);
int xst_rpc_event_send(struct xst_rpc *r, const void *buf, size_t len);
int xst_rpc_event_recv(struct xst_rpc *r, int timeout_ms, void *ctx, uint8_t **buf, size_t *len);

/*
 * Asynchronous call on a client, for long polls: several may be outstanding on one
 * client (each on its own nng context).  When the reply (or an error) arrives, the
 * transport adds 1 to the eventfd `notify_fd` (any thread), and xst_rpc_async_done()
 * becomes true; xst_rpc_async_result() then gives the reply on ctx.  Freeing the async
 * object (talloc_free) cancels the call and waits for nng to let go of it.
 */
struct xst_rpc_async;
int xst_rpc_async_start(struct xst_rpc *r, void *ctx, const void *req, size_t len, int timeout_ms,
			int notify_fd, struct xst_rpc_async **out);
bool xst_rpc_async_done(struct xst_rpc_async *a);
int xst_rpc_async_result(struct xst_rpc_async *a, void *ctx, uint8_t **rep, size_t *len);

/* The URL this object listens on or dials (for logs). */
const char *xst_rpc_url(const struct xst_rpc *r);

#endif

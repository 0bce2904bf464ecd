/* xs_client: the project's own blocking xenstore client over xstored's unix socket.
 *
 * Used by xst-agent and tests.  Every function returns 0 or a negative errno; an
 * ERROR reply from the daemon maps to the negative errno of its name (EACCES ->
 * -EACCES, ...).  Results are allocated on the talloc context the caller passes.
 * Watch events that arrive while waiting for a reply are queued and handed out by
 * xs_client_next_event() in arrival order.  A client is one talloc context; freeing
 * it closes the socket.  Not thread-safe: one request at a time per client. */
#ifndef XST_STORE_XS_CLIENT_H
#define XST_STORE_XS_CLIENT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct xs_client;

int xs_client_open(void *ctx, const char *socket_path, struct xs_client **out);
int xs_client_fd(struct xs_client *c);
int xs_client_read(struct xs_client *c, uint32_t tx, const char *path, void *ctx, char **val,
		   size_t *len);
int xs_client_write(struct xs_client *c, uint32_t tx, const char *path, const void *val,
		    size_t len);
int xs_client_mkdir(struct xs_client *c, uint32_t tx, const char *path);
int xs_client_rm(struct xs_client *c, uint32_t tx, const char *path);
int xs_client_directory(struct xs_client *c, uint32_t tx, const char *path, void *ctx,
			char ***names, unsigned int *n);
int xs_client_get_perms(struct xs_client *c, uint32_t tx, const char *path, void *ctx,
			char ***perms, unsigned int *n);
int xs_client_set_perms(struct xs_client *c, uint32_t tx, const char *path,
			const char *const *perms, unsigned int n);
int xs_client_txn_start(struct xs_client *c, uint32_t *tx_out);
/* -EAGAIN on conflict. */
int xs_client_txn_end(struct xs_client *c, uint32_t tx, bool commit);
int xs_client_watch(struct xs_client *c, const char *path, const char *token);
int xs_client_unwatch(struct xs_client *c, const char *path, const char *token);
/* Waits up to timeout_ms (-1 forever) for a watch event; -ETIMEDOUT if none came. */
int xs_client_next_event(struct xs_client *c, int timeout_ms, void *ctx, char **path, char **token);
/* fds: NULL, or {mem_fd, kick_fd, notify_fd} passed with SCM_RIGHTS (ring transport). */
int xs_client_introduce(struct xs_client *c, uint32_t domid, uint64_t gfn, uint32_t evtchn,
			const int fds[3]);
int xs_client_release(struct xs_client *c, uint32_t domid);
/* XS_CONTROL args[0..n-1]; *reply is the reply text (NUL-terminated). */
int xs_client_control(struct xs_client *c, const char *const *args, unsigned int n, void *ctx,
		      char **reply);

/* Pipelined requests: all n are sent at once (req_id = index + 1), then the n replies
 * are read (xenstored answers a connection's requests in order); each op gets its own
 * result in err (0 or -errno) and, on success, reply/reply_len (NUL appended) on ctx.
 * Returns 0, or -errno when the connection failed (then no op's result is valid).
 * At most XS_BATCH_MAX ops. */
#define XS_BATCH_MAX 256
struct xs_batch_op {
	uint32_t type, tx;
	const void *payload;
	size_t len;
	int err;
	char *reply;
	size_t reply_len;
};
int xs_client_batch(struct xs_client *c, struct xs_batch_op *ops, unsigned int n, void *ctx);

/* Raw request: type, tx, payload; reply payload (NUL appended, not counted) on ctx. */
int xs_client_request(struct xs_client *c, uint32_t type, uint32_t tx, const void *payload,
		      size_t len, const int *fds, unsigned int nfds, void *ctx, char **reply,
		      size_t *reply_len);

#endif

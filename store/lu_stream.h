/* Live update (docs/liveupdate.md): Xen's xenstore migration stream (spec §10) and
 * the hooks xstored's modules export for it.
 *
 * Writer: lu_stream_build() serialises the whole daemon state into one talloc
 * buffer (lu_stream_build_memfd(): appended to a memfd in 256 KiB steps, then
 * sealed): preamble, GLOBAL_DATA, per socket connection CONNECTION_DATA (held and
 * partial input, pending output) followed by its WATCH_DATA, the two special ACL
 * nodes, every committed node (pre-order), then each open transaction as
 * TRANSACTION_DATA + its NODE_DATA records (+ xst's private TXN_EVENT records),
 * END.  Reader: lu_stream_check() validates a buffer without touching the daemon;
 * lu_stream_restore() rebuilds a freshly initialised daemon from a checked one. */
#ifndef XST_STORE_LU_STREAM_H
#define XST_STORE_LU_STREAM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "store/xstored.h"

enum lu_rec_type {
	LU_REC_END = 0,
	LU_REC_GLOBAL = 1,
	LU_REC_CONN = 2,
	LU_REC_WATCH = 3,
	LU_REC_TXN = 4,
	LU_REC_NODE = 5,
	/* xst extension, skipped by other readers: a watch event queued inside an open
	 * transaction (fires at commit).  Body: conn_id u32, tx_id u32, exact u16,
	 * perm_count u16, perms (NODE_DATA form), path with NUL. */
	LU_REC_XST_TXN_EVENT = 0x78737401,
	/* xst extension: right after a ring CONNECTION_DATA, its fds and page.
	 * Body: conn_id u32, mem_fd i32, kick_fd i32, notify_fd i32, gfn u64. */
	LU_REC_XST_RING = 0x78737402,
	/* xst extension: a domain's bookkeeping, before any connection.  Body: domid
	 * u16, flags u16 (1 introduced, 2 shutdown reported), target i32 (-1 none). */
	LU_REC_XST_DOMAIN = 0x78737403,
};

/* TRANSACTION_DATA flags word (xst extension at body offset 8). */
#define LU_TXN_CONFLICT 0x1 /* commit must fail with EAGAIN */
#define LU_TXN_FAILED 0x2   /* commit must fail with ENOMEM */

/* Bytes appended to one connection's pending output (the live-update OK reply). */
struct lu_extra {
	const struct conn *conn;
	const void *data;
	size_t len;
};

struct lu_summary {
	int listen_fd;
	unsigned long nodes, conns, watches, txns, txn_nodes, txn_events;
	unsigned long in_bytes, out_bytes;
};

int lu_stream_build(void *ctx, int listen_fd, const struct lu_extra *extra, char **buf_out,
		    size_t *len_out);
/* A new empty memfd for the stream (FD_CLOEXEC, sealable): its fd or -errno. */
int lu_memfd_create(void);
/* The stream written straight into fd (from lu_memfd_create), which is then sealed
 * against writing, growing and shrinking.  progress_fd (or -1): a non-blocking pipe
 * that gets a u64 watermark (bytes written for good) every 256 KiB of nodes, for
 * lu_stream_check_follow().  0 or -errno (fd then unusable). */
int lu_stream_build_memfd(int fd, int listen_fd, const struct lu_extra *extra, int progress_fd,
			  size_t *len_out);
/* 0 or -EINVAL with a one-line reason in err. */
int lu_stream_check(const char *buf, size_t len, struct lu_summary *sum, char *err, size_t errlen);
/* lu_stream_check() of the memfd at path while lu_stream_build_memfd() writes it:
 * follows the watermarks read from gate and, at its EOF, requires the memfd sealed
 * and finishes the check.  0, -EINVAL (bad stream) or -errno (e.g. -EPERM: the
 * stream was never sealed), with a one-line reason in err; *followed: how many
 * watermarks were taken before the end. */
int lu_stream_check_follow(const char *path, int gate, struct lu_summary *sum,
			   unsigned long *followed, char *err, size_t errlen);
/* Human-readable listing of a stream (checked first). */
int lu_stream_print(FILE *f, const char *buf, size_t len);
/* Rebuilds state into a daemon fresh from node_tree_init(); adopts the fds named in
 * the stream.  Connections' held/partial input is fed after everything is in place.
 * checked: this binary's lu_stream_check() already accepted exactly these bytes (a
 * sealed stream the pre-flight passed), so it is not run again.  nodes_hint: the
 * writer's node count (sizes the node table without a pass over the stream to count
 * its NODE_DATA records), 0 if unknown; only a size, never trusted beyond that. */
int lu_stream_restore(const char *buf, size_t len, bool checked, unsigned long nodes_hint,
		      char *err, size_t errlen);
int lu_file_read(void *ctx, const char *path, char **buf, size_t *len);
int lu_file_write(const char *path, const char *buf, size_t len);
/* Maps path read-only; the mapping belongs to ctx (unmapped when ctx is freed).
 * *sealed (if not NULL): the file is a memfd that can no longer change. */
int lu_file_map(void *ctx, const char *path, const char **buf, size_t *len, bool *sealed);


/* ---- hooks in the daemon's modules ---- */
/* watch.c: c's watches, oldest first, as registered (orig path, token). */
int watch_visit(const struct conn *c, int (*fn)(void *arg, const char *orig, const char *token),
		void *arg);

/* transaction.c */
struct txn_export_ops {
	int (*txn)(void *arg, uint32_t tx_id, uint32_t flags);
	/* access: NODE_DATA's (1 read, 2 written, 0 deleted/absent; np 0 when absent) */
	int (*node)(void *arg, uint32_t tx_id, const char *path, unsigned int access,
		    const struct xs_perm *p, unsigned int np, const char *val, uint32_t vlen);
	int (*event)(void *arg, uint32_t tx_id, const char *path, bool exact,
		     const struct xs_perm *p, unsigned int np);
};
int txn_export(const struct conn *c, const struct txn_export_ops *ops, void *arg);
int txn_restore(struct conn *c, uint32_t id, struct txn **out);
int txn_restore_node(struct conn *c, struct txn *t, const char *path, unsigned int access,
		     const struct xs_perm *p, unsigned int np, const char *val, uint32_t vlen);
int txn_restore_done(struct txn *t, uint32_t flags);

/* ring.c */
int ring_export(const struct conn *c, int fds[3], uint64_t *gfn);
int ring_adopt(struct conn **out, unsigned int domid, uint64_t gfn, const int fds[3]);

/* domain.c */
int domain_restore(unsigned int domid, bool introduced, bool shutdown_reported, int target,
		   struct conn *c);

/* socket.c: take over inherited fds (no CLOEXEC change). */
int socket_adopt_listener(int fd);
int socket_adopt(int fd, struct conn **out);

/* ---- lu.c: the live-update control flow ---- */
void lu_init(int argc, char **argv, int listen_fd);
void lu_set_listener(int fd);
int lu_control(struct req *r, const char **a, unsigned int n);
int lu_dump_control(struct req *r, const char **a, unsigned int n);
/* dispatch.c: true if the request was held (live-update pending) */
bool lu_hold(struct conn *c, const struct xs_hdr *h, const char *payload);
/* Held input of c (written before its partial input). */
void lu_held_input(const struct conn *c, const char **data, size_t *len);
void lu_tick(void); /* once a second */
void lu_poll(void); /* main loop, between events: the safe point */
/* -U startup: restore from path (unlinked after reading).  0 or -errno. */
int lu_startup(const char *path);
const char *lu_state_path(void *ctx, const char *socket_path);

#endif

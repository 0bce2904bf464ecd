/* xstored internals shared between its modules.
 *
 * Ownership (talloc): the global `xsd` context owns the listening socket, every
 * connection and the domain table.  A connection owns its input buffer, its queued
 * output, its watches and its transactions; freeing it unlinks them all.  A request
 * is a fresh talloc context freed after its handler.  Committed nodes are the one
 * exception: they are plain malloc'd records (see node.c for why) owned by the tree,
 * freed by node_delete()/node_tree_free(). */
#ifndef XST_STORE_XSTORED_H
#define XST_STORE_XSTORED_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/types.h>

#include "store/xs_proto.h"

/* ---- permissions (perms.c) ---- */
#define XS_PERM_NONE 0x00
#define XS_PERM_READ 0x01
#define XS_PERM_WRITE 0x02
#define XS_PERM_OWNER 0x08
#define XS_PERM_IGNORE 0x10

/* domid is 32 bits as in C xenstored, which keeps any strtol() value ("r-1" reads
 * back as "r-1"); packed to 5 bytes to keep node records small. */
struct xs_perm {
	uint32_t domid;
	uint8_t bits; /* XS_PERM_READ|WRITE, maybe IGNORE */
} __attribute__((packed));

struct conn;
int perms_parse(void *ctx, const char *s, size_t len, unsigned int count, struct xs_perm **out);
/* "r0\0b5\0" form into buf of size cap; returns length or -E2BIG. */
int perms_format(const struct xs_perm *p, unsigned int n, char *buf, size_t cap);
/* Access bits (READ|WRITE|OWNER) of c on a node with these perms, written at gen. */
unsigned int perm_for_conn(const struct conn *c, const struct xs_perm *p, unsigned int n,
			   uint64_t gen);

/* ---- committed tree (node.c) ---- */
/* One malloc'd record per node: this header, then perms, the NUL-terminated name
 * and the value.  A record may move when its data grows (node_set), so pointers to
 * a node are valid only until the next node_set() on it. */
struct node {
	struct node *parent;
	struct node **kids; /* creation order; capacity: next power of two >= nkids */
	uint64_t gen;
	uint32_t id; /* stable across moves: the child hash is keyed on it */
	uint32_t nkids;
	uint32_t vlen;
	uint16_t nperms;
	uint16_t namelen;
	char data[];
};

static inline struct xs_perm *node_perms(const struct node *n)
{
	return (struct xs_perm *)n->data;
}
static inline const char *node_name(const struct node *n)
{
	return n->data + n->nperms * sizeof(struct xs_perm);
}
static inline char *node_value(const struct node *n)
{
	return (char *)n->data + n->nperms * sizeof(struct xs_perm) + n->namelen + 1;
}

extern uint64_t store_gen; /* bumped by every modification */
int node_tree_init(void);
void node_tree_free(void);
struct node *node_root(void);
struct node *node_lookup(const char *path);
struct node *node_child(const struct node *parent, const char *name, size_t namelen);
int node_create(struct node *parent, const char *name, size_t namelen, const struct xs_perm *perms,
		unsigned int nperms, const void *val, uint32_t vlen, struct node **out);
/* val == NULL keeps the value, perms == NULL keeps the perms.  Bumps gen.  *np is
 * updated if the record moved. */
int node_set(struct node **np, const void *val, uint32_t vlen, const struct xs_perm *perms,
	     unsigned int nperms);
void node_delete(struct node *n);
/* Reorders n's children to the order of names (same set); bumps nothing. */
void node_reorder(struct node *n, char *const *names, unsigned int count);
char *node_path(void *ctx, const struct node *n);
/* Sizes the child table for `more` further nodes at once. */
int node_reserve(unsigned long more);
/* A bulk restore: node_reserve(more), and the hash insertion of the next `more`
 * nodes created is deferred and done in one batch (overlapping its cache misses)
 * by node_bulk_end(), or by the first lookup, node_set() or node_delete() before
 * it, so no caller can see the difference.  0 or -ENOMEM (table not grown). */
int node_bulk_begin(unsigned long more);
void node_bulk_end(void);
unsigned long node_count(void);
size_t node_mem(const struct node *n);
/* Record size as quota "node-size" counts it. */
size_t node_record_size(unsigned int nperms, size_t vlen, size_t childlen);

/* ---- paths (path.c) ---- */
/* Canonical absolute path of a client path; '@' names allowed only if allow_special. */
int path_canon(const struct conn *c, const char *in, bool allow_special, void *ctx, char **out);
bool path_is_special(const char *p);
/* Parent path of an absolute non-root path, on ctx. */
char *path_parent(void *ctx, const char *p);
const char *path_basename(const char *p);
size_t path_depth(const char *p);

/* ---- transactions and the request view of the store (transaction.c) ---- */
struct txn;
struct tnode;

/* A node as one request sees it: committed or through its transaction. */
struct nview {
	bool exists;
	const struct xs_perm *perms;
	unsigned int nperms;
	const char *value;
	uint32_t vlen;
	uint64_t gen;
	struct node *g;
	struct tnode *t;
};

int db_get(struct conn *c, struct txn *t, const char *path, struct nview *v);
unsigned int db_nkids(const struct nview *v);
const char *db_kid(const struct nview *v, unsigned int i);
size_t db_kid_len(const struct nview *v, unsigned int i);
int db_create(struct conn *c, struct txn *t, const char *path, const struct xs_perm *perms,
	      unsigned int nperms, const void *val, uint32_t vlen);
int db_update(struct conn *c, struct txn *t, const char *path, const void *val, uint32_t vlen,
	      const struct xs_perm *perms, unsigned int nperms);
int db_remove(struct conn *c, struct txn *t, const char *path);
/* Queue (in a transaction) or fire a watch event. */
void db_event(struct conn *c, struct txn *t, const char *path, bool exact,
	      const struct xs_perm *perms, unsigned int nperms, uint64_t gen);

struct txn *txn_find(struct conn *c, uint32_t id);
int txn_start(struct conn *c, uint32_t *id_out);
int txn_end(struct conn *c, struct txn *t, bool commit);
unsigned int txn_count(const struct conn *c);
int txn_nodes_delta(const struct txn *t);

/* ---- watches (watch.c) ---- */
int watch_init(void);
int watch_add(struct conn *c, const char *path, const char *orig, const char *token);
int watch_remove(struct conn *c, const char *path, const char *token);
void watch_remove_all(struct conn *c);
unsigned int watch_count(const struct conn *c);
/* Deliver events for a change of path (exact: only watches on path itself). */
void watch_fire(const char *path, bool exact, const struct xs_perm *perms, unsigned int nperms,
		uint64_t gen);
void watch_fire_special(const char *name);
/* A SET_PERMS change: watchers that may read under either ACL get the event. */
void watch_fire_acl_change(const char *path, const struct xs_perm *perms, unsigned int nperms,
			   const struct xs_perm *oldp, unsigned int nold, uint64_t gen);
/* ACL of @introduceDomain/@releaseDomain. */
int special_get_perms(const char *name, const struct xs_perm **p, unsigned int *n);
int special_set_perms(const char *name, const struct xs_perm *p, unsigned int n);
void special_drop_domain(uint16_t domid);

/* ---- quotas (quota.c) ---- */
enum quota_id {
	Q_NODES,
	Q_WATCHES,
	Q_TRANSACTIONS,
	Q_OUTSTANDING,
	Q_TRANSACTION_NODES,
	Q_MEMORY,
	Q_NODE_SIZE,
	Q_PATH_MAX,
	Q_PERMISSIONS,
	Q_COUNT,
};
struct quota {
	const char *name;
	const char *descr;
	int hard;
	int soft; /* 0 = no soft level */
};
extern struct quota quotas[Q_COUNT];
int quota_by_name(const char *name);

/* ---- domains (domain.c) ---- */
struct domain {
	uint16_t domid;
	bool introduced;
	bool shutdown_reported;
	int target;   /* SET_TARGET domid or -1 */
	uint64_t gen; /* store_gen when introduced */
	int nodes;
	long memory;
	struct conn *conn; /* ring connection or NULL */
};
struct domain *domain_get(unsigned int domid);
int domain_init(void);
void domain_free_all(void);
bool domain_exists(unsigned int domid, uint64_t node_gen);
void domain_charge(unsigned int domid, int nodes, long bytes);
void domain_conn_gone(struct conn *c);

/* ---- connections (conn.c, socket.c, ring.c) ---- */
struct ev_source {
	int fd;
	void (*fn)(struct ev_source *src, uint32_t events);
};

struct outmsg {
	struct outmsg *next;
	uint32_t len, off;
	bool is_event;
	uint32_t queued_s; /* monotonic seconds when queued (watch-event timeout) */
	char data[];	   /* header + payload */
};

struct conn_ops {
	const char *name;
	/* Bytes read into buf (>0), 0 = nothing available now, <0 = connection broken.
	 * May attach received fds to the connection. */
	ssize_t (*read)(struct conn *c, void *buf, size_t len);
	/* Bytes written (0 = would block), <0 = broken. */
	ssize_t (*write)(struct conn *c, const void *buf, size_t len);
	/* After a batch of reads/writes: notify the peer / update polling. */
	void (*done)(struct conn *c);
};

#define CONN_MAX_FDS 8

struct conn {
	struct ev_source src;
	struct conn *next, *prev; /* all connections */
	struct conn *dnext;	  /* dirty (has new output) list */
	const struct conn_ops *ops;
	void *transport; /* ring state */
	uint32_t id;
	uint16_t domid;
	int target; /* SET_TARGET domid or -1 */
	bool privileged;
	bool is_ring;
	bool dead;
	bool dirty;
	bool stalled; /* ring error set: ignore */
	/* input: partial message (header + payload), live-update serialisable */
	char *in;
	uint32_t in_len;
	/* output queue */
	struct outmsg *out_head, *out_tail;
	unsigned int out_count;
	size_t out_bytes;
	/* fds received, waiting for an INTRODUCE */
	int fds[CONN_MAX_FDS];
	unsigned int nfds;
	/* watches and transactions (watch.c / transaction.c own the lists) */
	struct watch *watches;
	unsigned int nwatches;
	struct txn *txns;
	uint32_t next_txid;
	unsigned int ntxns;
};

struct conn *conn_new(void *ctx, const struct conn_ops *ops, int fd);
void conn_kill(struct conn *c);
void conn_reap(void);
void conn_input(struct conn *c, const char *data, size_t len);
void conn_take_fds(struct conn *c, const int *fds, unsigned int n);
void conn_close_fds(struct conn *c);
int conn_queue(struct conn *c, uint32_t type, uint32_t req_id, uint32_t tx_id, const void *payload,
	       size_t len, bool is_event);
void conn_flush(struct conn *c);
void conn_flush_dirty(void);
/* Drops watch events queued longer than opts.watch_event_timeout on unprivileged
 * connections (C xenstored's -w watch-event=); called once a second. */
void conn_expire_events(void);
uint32_t mono_seconds(void);
void conn_reset(struct conn *c);
bool conn_can_read(const struct conn *c);
void conn_read_some(struct conn *c);
const char *conn_home(const struct conn *c, char *buf, size_t cap);
extern struct conn *conn_list;
unsigned long conn_total(void);

int socket_listen(const char *path, struct ev_source **out);
/* In-process transport (memconn.c) for unit tests and the fuzzer: output is
 * collected in a buffer read with memconn_output(). */
struct conn *memconn_new(void *ctx, bool privileged, uint16_t domid);
/* Returns collected output bytes (valid until the next call) and clears it. */
const char *memconn_output(struct conn *c, size_t *len);
int ring_attach(struct conn **out, unsigned int domid, uint64_t gfn, const int fds[3]);
void ring_reset(struct conn *c);

/* ---- requests and dispatch (dispatch.c) ---- */
struct req {
	struct conn *conn;
	struct xs_hdr hdr;
	const char *data;
	uint32_t len;
	struct txn *txn;
	void *ctx;
};

void dispatch(struct conn *c, const struct xs_hdr *h, const char *payload);
int reply(struct req *r, const void *data, size_t len);
int reply_str(struct req *r, const char *s); /* with its NUL */
int reply_ok(struct req *r);
/* Splits the payload into NUL-terminated strings; returns count, max n stored. */
unsigned int req_strings(const struct req *r, const char **v, unsigned int n);
/* Exactly one string whose NUL is the last byte. */
const char *req_onearg(const struct req *r);

int do_read(struct req *r);
int do_write(struct req *r);
int do_mkdir(struct req *r);
int do_rm(struct req *r);
int do_directory(struct req *r);
int do_directory_part(struct req *r);
/* Frees the cached child list DIRECTORY keeps (at exit). */
void ops_free(void);
int do_get_perms(struct req *r);
int do_set_perms(struct req *r);
int do_watch(struct req *r);
int do_unwatch(struct req *r);
int do_reset_watches(struct req *r);
int do_txn_start(struct req *r);
int do_txn_end(struct req *r);
int do_introduce(struct req *r);
int do_release(struct req *r);
int do_is_domain_introduced(struct req *r);
int do_get_domain_path(struct req *r);
int do_resume(struct req *r);
int do_set_target(struct req *r);
int do_control(struct req *r);

/* ---- daemon globals (xstored.c, trace.c) ---- */
struct xsd_opts {
	int priv_domid;
	bool keep_orphans;
	bool verbose;
	const char *trace_file;
	const char *socket_path;
	int watch_event_timeout; /* seconds, 0 = never */
	int poll_us;		 /* busy-poll window after activity, 0 = never */
};
extern struct xsd_opts opts;
extern void *xsd_ctx;
int loop_init(void);
void loop_fini(void);
struct epoll_event;
int loop_wait(struct epoll_event *evs, int max);
void loop_activity(void);
int loop_add(struct ev_source *src, uint32_t events);
int loop_mod(struct ev_source *src, uint32_t events);
void loop_del(struct ev_source *src);

int trace_open(const char *path);
void trace_close(void);
void trace_flush(void);
bool trace_on(void);
void trace_msg(const char *dir, const struct conn *c, const struct xs_hdr *h, const char *payload);
void trace_printf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void log_err(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

#endif

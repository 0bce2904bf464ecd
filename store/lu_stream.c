/* Xen's xenstore migration stream (spec §10, docs/liveupdate.md): writer, checker,
 * printer and restorer.
 *
 * Records are `type u32, len u32, body, zero padding to 8`; like C xenstored we
 * store the padded length and the reader advances by 8 + len (rounded up to 8).
 * Everything after the big-endian preamble is in host order (flags bit0 says
 * which); a stream of the other byte order is refused.  Nothing here trusts the
 * input: every length is checked against the record before use. */
#include <endian.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <talloc.h>
#include <unistd.h>

#include "store/lu_stream.h"

#define PREAMBLE_LEN 16
#define CHAIN_MAX 1100 /* deeper than any path allowed (XS_ABS_PATH_MAX / 2) */
#define HOST_BIG (__BYTE_ORDER == __BIG_ENDIAN)

/* ---- writer ---- */

/* The stream being written: one talloc buffer (fd -1), or, for a memfd, a staging
 * buffer of records appended to the memfd with write() every FLUSH_STEP bytes.
 * Staging keeps the buffer in the cache and lets the kernel allocate the memfd's
 * pages inside write(); writing through a shared mapping instead took a page fault
 * per 4 KiB page (1,600 for 100k nodes), most of the writer's time in a VM. */
struct wbuf {
	char *p;
	size_t len, cap;
	size_t base; /* memfd: bytes of the stream already written to it */
	int fd;
	int err;
	int progress; /* pipe for watermarks (lu_stream_build_memfd), or -1 */
};

#define FLUSH_STEP (256 << 10)

static int wb_grow(struct wbuf *w, size_t cap)
{
	char *np = talloc_realloc_size(NULL, w->p, cap);

	if (!np)
		return -ENOMEM;
	w->p = np;
	w->cap = cap;
	return 0;
}

/* memfd: appends the staged bytes to it. */
static void wb_flush(struct wbuf *w)
{
	size_t done = 0;

	while (!w->err && done < w->len) {
		ssize_t n = write(w->fd, w->p + done, w->len - done);
		if (n < 0 && errno != EINTR)
			w->err = -errno;
		else if (n > 0)
			done += (size_t)n;
	}
	w->base += done;
	w->len = 0;
}

/* Between records: every FLUSH_STEP bytes the staged records go to the memfd, and
 * the pre-flight following the stream is told (a u64 watermark) that its first
 * w->base bytes are final (whole records, never written again).  The pipe is
 * non-blocking: a watermark it has no room for is skipped (the next one, or the
 * end of the stream, covers it). */
static void wb_progress(struct wbuf *w)
{
	uint64_t wm;

	if (w->fd < 0 || w->err || w->len < FLUSH_STEP)
		return;
	wb_flush(w);
	wm = w->base;
	if (w->progress >= 0 && !w->err && write(w->progress, &wm, sizeof(wm)) < 0) {
		/* skipped: see above */
	}
}

static void *wb_room(struct wbuf *w, size_t n)
{
	if (w->err)
		return NULL;
	if (w->len + n > w->cap) {
		size_t cap = w->cap ? w->cap : 65536;
		while (cap < w->len + n)
			cap *= 2;
		w->err = wb_grow(w, cap);
		if (w->err)
			return NULL;
	}
	void *r = w->p + w->len;
	w->len += n;
	return r;
}

static void wb_put(struct wbuf *w, const void *d, size_t n)
{
	void *p = wb_room(w, n);
	if (p && n)
		memcpy(p, d, n);
}

static void wb_u32(struct wbuf *w, uint32_t v)
{
	wb_put(w, &v, 4);
}
static void wb_u16(struct wbuf *w, uint16_t v)
{
	wb_put(w, &v, 2);
}

static size_t rec_begin(struct wbuf *w, uint32_t type)
{
	size_t at = w->len;
	wb_u32(w, type);
	wb_u32(w, 0);
	return at;
}

static void rec_end(struct wbuf *w, size_t at)
{
	size_t body = w->len - at - 8, pad = (8 - body % 8) % 8;
	uint32_t len;
	void *z = wb_room(w, pad);

	if (!z)
		return;
	memset(z, 0, pad);
	len = (uint32_t)(body + pad);
	memcpy(w->p + at + 4, &len, 4);
}

static char perm_char(uint8_t bits)
{
	switch (bits & (XS_PERM_READ | XS_PERM_WRITE)) {
	case XS_PERM_READ:
		return 'r';
	case XS_PERM_WRITE:
		return 'w';
	case XS_PERM_READ | XS_PERM_WRITE:
		return 'b';
	default:
		return 'n';
	}
}

static void wb_perms(struct wbuf *w, const struct xs_perm *p, unsigned int n)
{
	for (unsigned int i = 0; i < n; i++) {
		uint8_t b[2] = {(uint8_t)perm_char(p[i].bits),
				(p[i].bits & XS_PERM_IGNORE) ? 1 : 0};
		wb_put(w, b, 2);
		wb_u16(w, p[i].domid);
	}
}

/* One NODE_DATA record, sized once and filled in place (the stream's hot path:
 * one record per node). */
static void wb_node_len(struct wbuf *w, uint32_t conn_id, uint32_t tx_id, const char *path,
			size_t plen, unsigned int access, const struct xs_perm *p, unsigned int np,
			const char *val, uint32_t vlen)
{
	size_t body, pad;
	char *d;

	if (vlen > UINT16_MAX || plen > UINT16_MAX || np > UINT16_MAX) {
		w->err = -E2BIG;
		return;
	}
	body = 16 + 4 * (size_t)np + plen + vlen;
	pad = (8 - body % 8) % 8;
	d = wb_room(w, 8 + body + pad);
	if (!d)
		return;
	uint32_t h32[4] = {LU_REC_NODE, (uint32_t)(body + pad), conn_id, tx_id};
	uint16_t h16[4] = {(uint16_t)plen, (uint16_t)vlen, (uint16_t)access, (uint16_t)np};
	memcpy(d, h32, 16);
	memcpy(d + 16, h16, 8);
	d += 24;
	for (unsigned int i = 0; i < np; i++, d += 4) {
		d[0] = perm_char(p[i].bits);
		d[1] = (p[i].bits & XS_PERM_IGNORE) ? 1 : 0;
		uint16_t dom = (uint16_t)p[i].domid;
		memcpy(d + 2, &dom, 2);
	}
	memcpy(d, path, plen);
	if (vlen)
		memcpy(d + plen, val, vlen);
	memset(d + plen + vlen, 0, pad);
}

static void wb_node(struct wbuf *w, uint32_t conn_id, uint32_t tx_id, const char *path,
		    unsigned int access, const struct xs_perm *p, unsigned int np, const char *val,
		    uint32_t vlen)
{
	wb_node_len(w, conn_id, tx_id, path, strlen(path) + 1, access, p, np, val, vlen);
}

static void wb_tree(struct wbuf *w, const struct node *n, char *path, size_t len)
{
	if (len)
		wb_node_len(w, 0, 0, path, len + 1, 0, node_perms(n), n->nperms, node_value(n),
			    n->vlen);
	else
		wb_node_len(w, 0, 0, "/", 2, 0, node_perms(n), n->nperms, node_value(n), n->vlen);
	wb_progress(w);
	for (uint32_t i = 0; i < n->nkids && !w->err; i++) {
		const struct node *k = n->kids[i];
		/* the records are scattered over the heap: fetch the next siblings' while
		 * this one is written, rather than missing the cache on each in turn */
		if (i + 4 < n->nkids) {
			__builtin_prefetch(n->kids[i + 4]);
			__builtin_prefetch((const char *)n->kids[i + 4] + 64);
		}
		if (len + 1 + k->namelen + 1 > XS_ABS_PATH_MAX + 2) {
			w->err = -ENAMETOOLONG;
			return;
		}
		path[len] = '/';
		memcpy(path + len + 1, node_name(k), k->namelen + 1);
		wb_tree(w, k, path, len + 1 + k->namelen);
		path[len] = '\0';
	}
}

struct wctx {
	struct wbuf *w;
	uint32_t conn_id;
};

static int w_watch(void *arg, const char *orig, const char *token)
{
	struct wctx *x = arg;
	size_t pl = strlen(orig) + 1, tl = strlen(token) + 1;
	size_t at = rec_begin(x->w, LU_REC_WATCH);

	wb_u32(x->w, x->conn_id);
	wb_u16(x->w, (uint16_t)pl);
	wb_u16(x->w, (uint16_t)tl);
	wb_put(x->w, orig, pl);
	wb_put(x->w, token, tl);
	rec_end(x->w, at);
	return x->w->err;
}

static int w_txn(void *arg, uint32_t tx_id, uint32_t flags)
{
	struct wctx *x = arg;
	size_t at = rec_begin(x->w, LU_REC_TXN);

	wb_u32(x->w, x->conn_id);
	wb_u32(x->w, tx_id);
	wb_u32(x->w, flags);
	rec_end(x->w, at);
	return x->w->err;
}

static int w_tnode(void *arg, uint32_t tx_id, const char *path, unsigned int access,
		   const struct xs_perm *p, unsigned int np, const char *val, uint32_t vlen)
{
	struct wctx *x = arg;

	wb_node(x->w, x->conn_id, tx_id, path, access, p, np, val, vlen);
	return x->w->err;
}

static int w_tevent(void *arg, uint32_t tx_id, const char *path, bool exact,
		    const struct xs_perm *p, unsigned int np)
{
	struct wctx *x = arg;
	size_t at = rec_begin(x->w, LU_REC_XST_TXN_EVENT);

	wb_u32(x->w, x->conn_id);
	wb_u32(x->w, tx_id);
	wb_u16(x->w, exact ? 1 : 0);
	wb_u16(x->w, (uint16_t)np);
	wb_perms(x->w, p, np);
	wb_put(x->w, path, strlen(path) + 1);
	rec_end(x->w, at);
	return x->w->err;
}

/* Connections a live update carries: sockets and domain rings (not memconn). */
static bool conn_carried(const struct conn *c)
{
	return c->is_ring || strcmp(c->ops->name, "socket") == 0;
}

static void wb_conn(struct wbuf *w, const struct conn *c, const struct lu_extra *extra)
{
	const char *held;
	size_t nheld, at, in_len, out_len = 0, resp = 0;
	struct wctx x = {.w = w, .conn_id = c->id};

	lu_held_input(c, &held, &nheld);
	in_len = nheld + c->in_len;
	for (const struct outmsg *m = c->out_head; m; m = m->next)
		out_len += m->len - m->off;
	if (c->out_head && c->out_head->off)
		resp = c->out_head->len - c->out_head->off;
	if (extra && extra->conn == c)
		out_len += extra->len;
	if (in_len > UINT16_MAX || out_len > UINT32_MAX) {
		w->err = -E2BIG;
		return;
	}
	at = rec_begin(w, LU_REC_CONN);
	wb_u32(w, c->id);
	wb_u16(w, c->is_ring ? 0 : 1);
	wb_u16(w, 0);
	if (c->is_ring) {
		wb_u16(w, c->domid);
		wb_u16(w, c->target >= 0 ? (uint16_t)c->target : 0x7FF4);
		wb_u32(w, 0); /* event channel: xst rings use eventfds (RING record) */
	} else {
		wb_u32(w, (uint32_t)c->src.fd);
		wb_u32(w, 0);
	}
	wb_u16(w, (uint16_t)in_len);
	wb_u16(w, (uint16_t)resp);
	wb_u32(w, (uint32_t)out_len);
	wb_put(w, held, nheld);
	wb_put(w, c->in, c->in_len);
	for (const struct outmsg *m = c->out_head; m; m = m->next)
		wb_put(w, m->data + m->off, m->len - m->off);
	if (extra && extra->conn == c)
		wb_put(w, extra->data, extra->len);
	rec_end(w, at);
	if (c->is_ring) {
		int fds[3];
		uint64_t gfn;
		if (ring_export(c, fds, &gfn) < 0) {
			w->err = -EINVAL;
			return;
		}
		at = rec_begin(w, LU_REC_XST_RING);
		wb_u32(w, c->id);
		for (int i = 0; i < 3; i++)
			wb_u32(w, (uint32_t)fds[i]);
		wb_put(w, &gfn, 8);
		rec_end(w, at);
	}
	watch_visit(c, w_watch, &x);
}

static const char *const specials[] = {"@releaseDomain", "@introduceDomain"};

/* Writes the whole stream into w (empty, fd set or -1). */
static int build(struct wbuf *wp, int listen_fd, const struct lu_extra *extra)
{
	struct wbuf w = *wp;
	const struct conn **order;
	unsigned int n = 0;
	char *path;
	uint32_t be;

	for (const struct conn *c = conn_list; c; c = c->next)
		n++;
	order = talloc_array(NULL, const struct conn *, n ? n : 1);
	path = talloc_size(order, XS_ABS_PATH_MAX + 2);
	if (!order || !path) {
		talloc_free(order);
		return -ENOMEM;
	}
	n = 0;
	for (const struct conn *c = conn_list; c; c = c->next)
		order[n++] = c; /* newest first: written oldest first below */

	/* a memfd's stream is staged FLUSH_STEP at a time; a buffer's untouched capacity
	 * costs nothing (malloc maps it lazily): one allocation for typical stores, ~64
	 * bytes per node record */
	w.err =
	    wb_grow(&w, w.fd >= 0 ? 2 * FLUSH_STEP : 65536 + node_count() * 128 + (size_t)n * 1024);
	if (w.err) {
		talloc_free(order);
		*wp = w;
		return w.err;
	}
	wb_put(&w, "xenstore", 8);
	be = htobe32(1);
	wb_put(&w, &be, 4);
	be = htobe32(HOST_BIG ? 1 : 0);
	wb_put(&w, &be, 4);

	size_t at = rec_begin(&w, LU_REC_GLOBAL);
	wb_u32(&w, (uint32_t)listen_fd);
	wb_u32(&w, (uint32_t)-1);
	rec_end(&w, at);

	for (unsigned int d = 1; d < 65536; d++) {
		const struct domain *dom = domain_get(d);
		if (!dom || !(dom->introduced || dom->conn))
			continue;
		at = rec_begin(&w, LU_REC_XST_DOMAIN);
		wb_u16(&w, (uint16_t)d);
		wb_u16(&w, (dom->introduced ? 1 : 0) | (dom->shutdown_reported ? 2 : 0));
		wb_u32(&w, (uint32_t)dom->target);
		rec_end(&w, at);
	}
	for (unsigned int i = n; i-- > 0;)
		if (conn_carried(order[i]))
			wb_conn(&w, order[i], extra);

	for (unsigned int i = 0; i < 2; i++) {
		const struct xs_perm *p;
		unsigned int np;
		if (special_get_perms(specials[i], &p, &np) == 0)
			wb_node(&w, 0, 0, specials[i], 0, p, np, "", 0);
	}
	path[0] = '\0';
	wb_tree(&w, node_root(), path, 0);

	static const struct txn_export_ops ops = {.txn = w_txn, .node = w_tnode, .event = w_tevent};
	for (unsigned int i = n; i-- > 0 && !w.err;) {
		struct wctx x = {.w = &w, .conn_id = order[i]->id};
		if (conn_carried(order[i]) && order[i]->txns)
			txn_export(order[i], &ops, &x);
	}
	at = rec_begin(&w, LU_REC_END);
	rec_end(&w, at);
	talloc_free(order);
	*wp = w;
	return w.err;
}

int lu_stream_build(void *ctx, int listen_fd, const struct lu_extra *extra, char **buf_out,
		    size_t *len_out)
{
	struct wbuf w = {.fd = -1, .progress = -1};
	int ret = build(&w, listen_fd, extra);

	if (ret < 0) {
		talloc_free(w.p);
		return ret;
	}
	*buf_out = talloc_steal(ctx, w.p);
	*len_out = w.len;
	return 0;
}

#define LU_SEALS (F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_WRITE)

int lu_memfd_create(void)
{
	int fd = memfd_create("xstored-state", MFD_CLOEXEC | MFD_ALLOW_SEALING);

	return fd < 0 ? -errno : fd;
}

int lu_stream_build_memfd(int fd, int listen_fd, const struct lu_extra *extra, int progress_fd,
			  size_t *len_out)
{
	struct wbuf w = {.fd = fd, .progress = progress_fd};
	int ret = build(&w, listen_fd, extra);

	if (ret == 0) {
		wb_flush(&w);
		ret = w.err;
	}
	talloc_free(w.p);
	if (ret == 0 && fcntl(w.fd, F_ADD_SEALS, LU_SEALS | F_SEAL_SEAL) < 0)
		ret = -errno;
	if (ret == 0)
		*len_out = w.base;
	return ret;
}

/* ---- reader ---- */

struct rec {
	uint32_t type, len;
	const char *body;
};

struct follow;

struct rd {
	const char *buf;
	size_t len, pos;
	char *err;
	size_t errlen;
	struct follow *fw; /* a stream still being written, or NULL */
};

static int follow_more(struct rd *r);

/* True once n bytes from r->pos are there (a stream being written: waits for them
 * until it is complete). */
static bool rd_avail(struct rd *r, size_t n)
{
	while (r->len - r->pos < n) {
		/* the last call (0: complete) may still have brought the bytes */
		if (!r->fw || (follow_more(r) <= 0 && r->len - r->pos < n))
			return false;
	}
	return true;
}

static int bad(struct rd *r, const char *fmt, const char *what, size_t at)
{
	if (r->err)
		snprintf(r->err, r->errlen, fmt, what, at);
	return -EINVAL;
}

static int rd_preamble(struct rd *r)
{
	uint32_t v, f;

	if (!rd_avail(r, PREAMBLE_LEN) || memcmp(r->buf, "xenstore", 8) != 0)
		return bad(r, "%s at offset %zu", "not a xenstore stream (bad ident)", 0);
	memcpy(&v, r->buf + 8, 4);
	memcpy(&f, r->buf + 12, 4);
	if (be32toh(v) != 1)
		return bad(r, "%s at offset %zu", "unsupported stream version", 8);
	if ((be32toh(f) & ~1u) || (be32toh(f) & 1u) != (HOST_BIG ? 1u : 0u))
		return bad(r, "%s at offset %zu", "unsupported flags (byte order)", 12);
	r->pos = PREAMBLE_LEN;
	return 0;
}

/* 1 = record read, 0 = END reached, <0 error. */
static int rd_next(struct rd *r, struct rec *out)
{
	if (!rd_avail(r, 8))
		return bad(r, "%s at offset %zu", "truncated stream (no END record)", r->pos);
	memcpy(&out->type, r->buf + r->pos, 4);
	memcpy(&out->len, r->buf + r->pos + 4, 4);
	/* a record being followed is complete with its padding (or at the end) */
	if (!rd_avail(r, 8 + ((out->len + 7u) & ~(size_t)7)) && out->len > r->len - r->pos - 8)
		return bad(r, "%s at offset %zu", "record longer than the stream", r->pos);
	out->body = r->buf + r->pos + 8;
	r->pos += 8 + ((out->len + 7u) & ~(size_t)7);
	if (r->pos > r->len)
		r->pos = r->len;
	return out->type == LU_REC_END ? 0 : 1;
}

static uint16_t g16(const char *p)
{
	uint16_t v;
	memcpy(&v, p, 2);
	return v;
}
static uint32_t g32(const char *p)
{
	uint32_t v;
	memcpy(&v, p, 4);
	return v;
}

/* A parsed NODE_DATA or TXN_EVENT record. */
struct pnode {
	uint32_t conn_id, tx_id;
	unsigned int access, np;
	struct xs_perm perms[64];
	struct xs_perm *p;
	const char *path, *val;
	size_t plen; /* with the NUL */
	uint32_t vlen;
	bool exact;
};

static int parse_perms(const char *b, unsigned int np, struct xs_perm *out)
{
	for (unsigned int i = 0; i < np; i++) {
		const char *q = b + 4 * i;
		uint8_t bits;
		switch (q[0]) {
		case 'n':
			bits = XS_PERM_NONE;
			break;
		case 'r':
			bits = XS_PERM_READ;
			break;
		case 'w':
			bits = XS_PERM_WRITE;
			break;
		case 'b':
			bits = XS_PERM_READ | XS_PERM_WRITE;
			break;
		default:
			return -EINVAL;
		}
		if (q[1] & 1)
			bits |= XS_PERM_IGNORE;
		memset(&out[i], 0, sizeof(out[i]));
		out[i].bits = bits;
		out[i].domid = g16(q + 2);
	}
	return 0;
}

static int parse_node(void *ctx, const struct rec *rc, struct pnode *n)
{
	size_t need, plen;

	if (rc->len < 16)
		return -EINVAL;
	n->conn_id = g32(rc->body);
	n->tx_id = g32(rc->body + 4);
	plen = g16(rc->body + 8);
	n->vlen = g16(rc->body + 10);
	n->access = g16(rc->body + 12);
	n->np = g16(rc->body + 14);
	need = 16 + 4 * (size_t)n->np + plen + n->vlen;
	if (need > rc->len || plen < 2 || (n->np == 0 && n->conn_id == 0))
		return -EINVAL;
	n->p = n->np <= 64 ? n->perms : talloc_array(ctx, struct xs_perm, n->np);
	if (!n->p)
		return -ENOMEM;
	if (parse_perms(rc->body + 16, n->np, n->p) < 0)
		return -EINVAL;
	n->path = rc->body + 16 + 4 * n->np;
	n->plen = plen;
	if (n->path[plen - 1] != '\0' || memchr(n->path, '\0', plen - 1))
		return -EINVAL;
	n->val = n->path + plen;
	if (n->conn_id == 0 && !path_is_special(n->path) &&
	    (n->path[0] != '/' || (plen > 2 && n->path[plen - 2] == '/')))
		return -EINVAL;
	return 0;
}

/* parse_node() for a stream lu_stream_check() accepted (the restore): the same
 * fields, none of the checks. */
static void parse_node_checked(void *ctx, const struct rec *rc, struct pnode *n)
{
	static const uint8_t bits[256] = {
	    ['n'] = XS_PERM_NONE,
	    ['r'] = XS_PERM_READ,
	    ['w'] = XS_PERM_WRITE,
	    ['b'] = XS_PERM_READ | XS_PERM_WRITE,
	};
	const char *q = rc->body + 16;

	n->conn_id = g32(rc->body);
	n->tx_id = g32(rc->body + 4);
	n->plen = g16(rc->body + 8);
	n->vlen = g16(rc->body + 10);
	n->access = g16(rc->body + 12);
	n->np = g16(rc->body + 14);
	n->p = n->np <= 64 ? n->perms : talloc_array(ctx, struct xs_perm, n->np);
	for (unsigned int i = 0; n->p && i < n->np; i++, q += 4) {
		memset(&n->p[i], 0, sizeof(n->p[i]));
		n->p[i].bits = bits[(unsigned char)q[0]] | ((q[1] & 1) ? XS_PERM_IGNORE : 0);
		n->p[i].domid = g16(q + 2);
	}
	n->path = rc->body + 16 + 4 * n->np;
	n->val = n->path + n->plen;
}

static int parse_event(void *ctx, const struct rec *rc, struct pnode *n)
{
	size_t plen;

	if (rc->len < 12)
		return -EINVAL;
	n->conn_id = g32(rc->body);
	n->tx_id = g32(rc->body + 4);
	n->exact = g16(rc->body + 8) != 0;
	n->np = g16(rc->body + 10);
	if (12 + 4 * (size_t)n->np >= rc->len)
		return -EINVAL;
	n->p = n->np <= 64 ? n->perms : talloc_array(ctx, struct xs_perm, n->np);
	if (!n->p || parse_perms(rc->body + 12, n->np, n->p) < 0)
		return -EINVAL;
	n->path = rc->body + 12 + 4 * n->np;
	plen = strnlen(n->path, rc->len - 12 - 4 * n->np);
	if (plen == rc->len - 12 - 4 * n->np)
		return -EINVAL;
	n->plen = plen + 1;
	return 0;
}

struct pconn {
	uint32_t id;
	int fd;
	bool ring;
	uint16_t domid;
	uint16_t in_len, resp;
	uint32_t out_len;
	const char *data;
	struct conn *c;
	uint32_t *txids;
	unsigned int ntx;
};

/* The stream's connections, in stream order, with an open-addressing index by id
 * (slot: position + 1, 0 empty; load <= 1/2): WATCH, TRANSACTION and transaction
 * records name their connection, thousands of times in a large stream. */
struct pstate {
	struct pconn *conns;
	unsigned int nconns, cap;
	uint32_t *idx;
	unsigned int idx_size; /* power of two */
};

static unsigned int conn_slot(uint32_t id, unsigned int size)
{
	return (id * 2654435761u) & (size - 1);
}

static struct pconn *find_conn(struct pstate *s, uint32_t id)
{
	if (!s->idx_size)
		return NULL;
	for (unsigned int i = conn_slot(id, s->idx_size); s->idx[i];
	     i = (i + 1) & (s->idx_size - 1))
		if (s->conns[s->idx[i] - 1].id == id)
			return &s->conns[s->idx[i] - 1];
	return NULL;
}

/* Appends pc (its id not present yet).  0 or -ENOMEM. */
static int add_conn(void *ctx, struct pstate *s, const struct pconn *pc)
{
	if (s->nconns == s->cap) {
		unsigned int cap = s->cap ? s->cap * 2 : 64;
		struct pconn *nc = talloc_realloc(ctx, s->conns, struct pconn, cap);
		if (!nc)
			return -ENOMEM;
		s->conns = nc;
		s->cap = cap;
	}
	if ((s->nconns + 1) * 2 > s->idx_size) {
		unsigned int size = s->idx_size ? s->idx_size * 2 : 128;
		uint32_t *ni = talloc_zero_array(ctx, uint32_t, size);
		if (!ni)
			return -ENOMEM;
		talloc_free(s->idx);
		s->idx = ni;
		s->idx_size = size;
		for (unsigned int k = 0; k < s->nconns; k++) {
			unsigned int i = conn_slot(s->conns[k].id, size);
			while (ni[i])
				i = (i + 1) & (size - 1);
			ni[i] = k + 1;
		}
	}
	unsigned int i = conn_slot(pc->id, s->idx_size);
	while (s->idx[i])
		i = (i + 1) & (s->idx_size - 1);
	s->conns[s->nconns++] = *pc;
	s->idx[i] = s->nconns;
	return 0;
}

static bool has_tx(const struct pconn *pc, uint32_t tx)
{
	for (unsigned int i = 0; i < pc->ntx; i++)
		if (pc->txids[i] == tx)
			return true;
	return false;
}

/* Whole messages in out (after the first resp bytes) must frame exactly. */
static bool output_frames(const char *d, size_t len, size_t resp)
{
	size_t pos = resp;

	if (resp > len)
		return false;
	while (pos < len) {
		struct xs_hdr h;
		if (len - pos < sizeof(h))
			return false;
		memcpy(&h, d + pos, sizeof(h));
		if (h.len > XS_PAYLOAD_MAX || len - pos - sizeof(h) < h.len)
			return false;
		pos += sizeof(h) + h.len;
	}
	return true;
}

/* The checker: structure, cross references, tree shape.  Keeps the chain of
 * ancestors of the last node (as offsets: a followed stream's mapping may move) to
 * verify that each committed node's parent came before it. */
static int check_rd(struct rd *rp, struct lu_summary *sum)
{
	void *tmp = talloc_new(NULL);
	struct rd r = *rp;
	struct pstate s = {0};
	struct rec rc;
	struct lu_summary local;
	bool global = false, root = false;
	uint32_t expect_ring = 0;
	struct seen {
		size_t off; /* of the path in r.buf */
		size_t len;
	} *seen = NULL;
	size_t nseen = 0, cap = 0;
	int ret;

	if (!sum)
		sum = &local;
	memset(sum, 0, sizeof(*sum));
	sum->listen_fd = -1;
	if (!tmp)
		return -ENOMEM;
	ret = rd_preamble(&r);
	if (ret < 0)
		goto out;
	/* committed paths seen, as a talloc hash-free sorted check: parents are
	 * verified with a simple open-addressing set */
	cap = 1024;
	seen = talloc_zero_array(tmp, struct seen, cap);
	while ((ret = rd_next(&r, &rc)) > 0) {
		size_t at = r.pos;
		switch (rc.type) {
		case LU_REC_GLOBAL:
			if (rc.len < 8 || global) {
				ret = bad(&r, "%s before offset %zu", "bad GLOBAL_DATA", at);
				goto out;
			}
			global = true;
			sum->listen_fd = (int32_t)g32(rc.body);
			break;
		case LU_REC_CONN: {
			struct pconn pc = {0};
			if (rc.len < 24) {
				ret = bad(&r, "%s before offset %zu", "short CONNECTION_DATA", at);
				goto out;
			}
			pc.id = g32(rc.body);
			if (g16(rc.body + 4) > 1) {
				ret = bad(&r, "%s before offset %zu",
					  "CONNECTION_DATA: unknown type", at);
				goto out;
			}
			pc.ring = g16(rc.body + 4) == 0;
			pc.fd = pc.ring ? 0 : (int32_t)g32(rc.body + 8);
			pc.in_len = g16(rc.body + 16);
			pc.resp = g16(rc.body + 18);
			pc.out_len = g32(rc.body + 20);
			pc.data = rc.body + 24;
			if (pc.id == 0 || find_conn(&s, pc.id) || pc.fd < 0 ||
			    (size_t)pc.in_len + pc.out_len > rc.len - 24 ||
			    !output_frames(pc.data + pc.in_len, pc.out_len, pc.resp)) {
				ret = bad(&r, "%s before offset %zu", "bad CONNECTION_DATA", at);
				goto out;
			}
			if (add_conn(tmp, &s, &pc) < 0) {
				ret = -ENOMEM;
				goto out;
			}
			sum->conns++;
			expect_ring = pc.ring ? pc.id : 0;
			continue;
			sum->in_bytes += pc.in_len;
			sum->out_bytes += pc.out_len;
			break;
		}
		case LU_REC_WATCH: {
			size_t pl, tl;
			if (rc.len < 8 || !find_conn(&s, g32(rc.body))) {
				ret = bad(&r, "%s before offset %zu",
					  "WATCH_DATA of unknown connection", at);
				goto out;
			}
			pl = g16(rc.body + 4);
			tl = g16(rc.body + 6);
			if (pl < 1 || tl < 1 || 8 + pl + tl > rc.len || rc.body[8 + pl - 1] ||
			    rc.body[8 + pl + tl - 1] || strlen(rc.body + 8) != pl - 1 ||
			    strlen(rc.body + 8 + pl) != tl - 1) {
				ret = bad(&r, "%s before offset %zu", "bad WATCH_DATA", at);
				goto out;
			}
			sum->watches++;
			break;
		}
		case LU_REC_TXN: {
			struct pconn *pc = rc.len >= 8 ? find_conn(&s, g32(rc.body)) : NULL;
			if (!pc || g32(rc.body + 4) == 0 || has_tx(pc, g32(rc.body + 4))) {
				ret = bad(&r, "%s before offset %zu", "bad TRANSACTION_DATA", at);
				goto out;
			}
			uint32_t *nt = talloc_realloc(tmp, pc->txids, uint32_t, pc->ntx + 1);
			if (!nt) {
				ret = -ENOMEM;
				goto out;
			}
			pc->txids = nt;
			nt[pc->ntx++] = g32(rc.body + 4);
			sum->txns++;
			break;
		}
		case LU_REC_NODE:
		case LU_REC_XST_TXN_EVENT: {
			struct pnode pn;
			int e = rc.type == LU_REC_NODE ? parse_node(tmp, &rc, &pn)
						       : parse_event(tmp, &rc, &pn);
			if (e < 0) {
				ret = bad(&r, "%s before offset %zu", "bad NODE_DATA", at);
				goto out;
			}
			if (pn.conn_id || rc.type != LU_REC_NODE) {
				struct pconn *pc = find_conn(&s, pn.conn_id);
				if (!pc || !has_tx(pc, pn.tx_id)) {
					ret =
					    bad(&r, "%s before offset %zu",
						"transaction record without TRANSACTION_DATA", at);
					goto out;
				}
				if (rc.type == LU_REC_NODE)
					sum->txn_nodes++;
				else
					sum->txn_events++;
				break;
			}
			if (path_is_special(pn.path))
				break;
			if (pn.plen == 2) { /* "/" (parse_node: paths start with '/') */
				if (root) {
					ret =
					    bad(&r, "%s before offset %zu", "root node twice", at);
					goto out;
				}
				root = true;
			} else {
				/* parent must be the path of an earlier node: pre-order means
				 * it is on the current chain, kept in seen[] as a stack */
				const char *slash = memrchr(pn.path, '/', pn.plen - 1);
				size_t plen = (size_t)(slash - pn.path);
				while (nseen > 0) {
					const struct seen *top = &seen[nseen - 1];
					if ((plen == 0 && top->len == 1) ||
					    (top->len == plen &&
					     memcmp(r.buf + top->off, pn.path, plen) == 0))
						break;
					nseen--;
				}
				if (nseen == 0) {
					ret = bad(&r, "%s before offset %zu",
						  "node before its parent (not pre-order)", at);
					goto out;
				}
			}
			if (nseen == cap) {
				struct seen *ns = talloc_realloc(tmp, seen, struct seen, cap * 2);
				if (!ns) {
					ret = -ENOMEM;
					goto out;
				}
				seen = ns;
				cap *= 2;
			}
			seen[nseen].off = (size_t)(pn.path - r.buf);
			seen[nseen++].len = pn.plen - 1;
			sum->nodes++;
			break;
		}
		case LU_REC_XST_RING:
			if (rc.len < 24 || g32(rc.body) != expect_ring || !expect_ring) {
				ret = bad(&r, "%s before offset %zu", "unexpected xst RING record",
					  at);
				goto out;
			}
			expect_ring = 0;
			continue;
		case LU_REC_XST_DOMAIN:
			if (rc.len < 8 || g16(rc.body) == 0) {
				ret = bad(&r, "%s before offset %zu", "bad xst DOMAIN record", at);
				goto out;
			}
			break;
		default:
			break; /* unknown records are skipped */
		}
		if (expect_ring) {
			ret = bad(&r, "%s before offset %zu",
				  "ring connection without its RING record", at);
			goto out;
		}
	}
	if (ret < 0)
		goto out;
	if (!global || !root) {
		ret = bad(&r, "%s before offset %zu", global ? "no root node" : "no GLOBAL_DATA",
			  r.pos);
		goto out;
	}
	ret = 0;
out:
	talloc_free(tmp);
	*rp = r;
	return ret;
}

int lu_stream_check(const char *buf, size_t len, struct lu_summary *sum, char *err, size_t errlen)
{
	struct rd r = {.buf = buf, .len = len, .err = err, .errlen = errlen};

	return check_rd(&r, sum);
}

/* ---- following a stream while it is written (the gated pre-flight) ----
 * The writer sends u64 watermarks (bytes final so far) down the gate pipe and closes
 * it once the stream is complete and sealed.  The stream is mapped shared and
 * read-only, growing the mapping as the watermarks advance; every byte is read only
 * below a watermark, or after the end when the seals are confirmed. */
struct follow {
	int fd, gate;
	char *map;
	size_t maplen;
	bool done;
	int error;		  /* why following stopped early (-errno), or 0 */
	unsigned long watermarks; /* taken (the stream grew while checked) */
};

/* Waits for the next watermark (or the end).  1: r->len grew, 0: no more will come
 * (the stream is complete: r->len is its size), <0: -errno. */
static int follow_more(struct rd *r)
{
	struct follow *f = r->fw;
	uint64_t wm[64];
	size_t upto = r->len;
	ssize_t n;

	if (f->done)
		return 0;
	do
		n = read(f->gate, wm, sizeof(wm));
	while (n < 0 && errno == EINTR);
	if (n < 0) {
		f->done = true;
		return f->error = -errno;
	}
	if (n == 0) {
		struct stat st;
		int seals = fcntl(f->fd, F_GET_SEALS);
		f->done = true;
		/* complete only once sealed: nobody can change the bytes checked */
		if (seals < 0 || (seals & LU_SEALS) != LU_SEALS || fstat(f->fd, &st) < 0 ||
		    (size_t)st.st_size < r->len)
			return f->error = -EPERM;
		upto = (size_t)st.st_size;
	} else if ((size_t)n >= sizeof(wm[0]) && wm[n / sizeof(wm[0]) - 1] > upto) {
		upto = (size_t)wm[n / sizeof(wm[0]) - 1];
		f->watermarks++;
	}
	if (upto > f->maplen) {
		size_t want = f->maplen ? f->maplen : (4 << 20);
		void *p;
		while (want < upto)
			want *= 2;
		/* past the file's current end is allowed; it is never touched there */
		p = f->map ? mremap(f->map, f->maplen, want, MREMAP_MAYMOVE)
			   : mmap(NULL, want, PROT_READ, MAP_SHARED, f->fd, 0);
		if (p == MAP_FAILED) {
			f->done = true;
			return f->error = -errno;
		}
		f->map = p;
		f->maplen = want;
	}
	r->buf = f->map ? f->map : "";
	r->len = upto;
	return f->done ? 0 : 1;
}

int lu_stream_check_follow(const char *path, int gate, struct lu_summary *sum,
			   unsigned long *followed, char *err, size_t errlen)
{
	struct follow f = {.fd = open(path, O_RDONLY | O_CLOEXEC), .gate = gate};
	struct rd r = {.buf = "", .err = err, .errlen = errlen, .fw = &f};
	int ret;

	if (f.fd < 0) {
		ret = -errno;
		snprintf(err, errlen, "%s: %s", path, strerror(-ret));
		return ret;
	}
	ret = check_rd(&r, sum);
	/* a complete check needs the end: a stream whose END came before it was sealed
	 * is not the stream that will be restored */
	while (ret == 0 && !f.done) {
		int e = follow_more(&r);
		if (e < 0)
			ret = e;
	}
	if (f.map)
		munmap(f.map, f.maplen);
	close(f.fd);
	*followed = f.watermarks;
	if (f.error == -EPERM)
		snprintf(err, errlen, "the stream was not sealed when its writer finished");
	else if (f.error)
		snprintf(err, errlen, "following the stream: %s", strerror(-f.error));
	else if (ret < 0 && ret != -EINVAL)
		snprintf(err, errlen, "%s", strerror(-ret));
	return ret < 0 ? ret : f.error;
}

int lu_stream_print(FILE *f, const char *buf, size_t len)
{
	char err[200];
	struct lu_summary sum;
	struct rd r = {.buf = buf, .len = len};
	struct rec rc;
	void *tmp;
	int ret = lu_stream_check(buf, len, &sum, err, sizeof(err));

	if (ret < 0) {
		fprintf(f, "invalid stream: %s\n", err);
		return ret;
	}
	tmp = talloc_new(NULL);
	rd_preamble(&r);
	fprintf(f, "xenstore stream version 1, %s endian\n", HOST_BIG ? "big" : "little");
	while (rd_next(&r, &rc) > 0) {
		struct pnode pn;
		char pb[16];
		switch (rc.type) {
		case LU_REC_GLOBAL:
			fprintf(f, "GLOBAL listen-fd %d evtchn-fd %d\n", (int32_t)g32(rc.body),
				(int32_t)g32(rc.body + 4));
			break;
		case LU_REC_CONN:
			if (g16(rc.body + 4) == 0)
				fprintf(f, "CONNECTION %u ring domid %u target %u", g32(rc.body),
					g16(rc.body + 8), g16(rc.body + 10));
			else
				fprintf(f, "CONNECTION %u socket fd %d", g32(rc.body),
					(int32_t)g32(rc.body + 8));
			fprintf(f, " in %u out %u (partial %u)\n", g16(rc.body + 16),
				g32(rc.body + 20), g16(rc.body + 18));
			break;
		case LU_REC_XST_RING: {
			uint64_t gfn;
			memcpy(&gfn, rc.body + 16, 8);
			fprintf(
			    f, "  RING conn %u mem-fd %d kick-fd %d notify-fd %d gfn %" PRIu64 "\n",
			    g32(rc.body), (int32_t)g32(rc.body + 4), (int32_t)g32(rc.body + 8),
			    (int32_t)g32(rc.body + 12), gfn);
			break;
		}
		case LU_REC_XST_DOMAIN:
			fprintf(f, "DOMAIN %u%s%s target %d\n", g16(rc.body),
				g16(rc.body + 2) & 1 ? " introduced" : "",
				g16(rc.body + 2) & 2 ? " shutdown-reported" : "",
				(int32_t)g32(rc.body + 4));
			break;
		case LU_REC_WATCH:
			fprintf(f, "WATCH conn %u path \"%s\" token \"%s\"\n", g32(rc.body),
				rc.body + 8, rc.body + 8 + g16(rc.body + 4));
			break;
		case LU_REC_TXN:
			fprintf(
			    f, "TRANSACTION conn %u id %u%s%s\n", g32(rc.body), g32(rc.body + 4),
			    rc.len >= 12 && (g32(rc.body + 8) & LU_TXN_CONFLICT) ? " conflicted"
										 : "",
			    rc.len >= 12 && (g32(rc.body + 8) & LU_TXN_FAILED) ? " failed" : "");
			break;
		case LU_REC_NODE:
		case LU_REC_XST_TXN_EVENT:
			if (rc.type == LU_REC_NODE)
				parse_node(tmp, &rc, &pn);
			else
				parse_event(tmp, &rc, &pn);
			if (pn.conn_id)
				fprintf(f, "  %s conn %u tx %u ",
					rc.type == LU_REC_NODE ? "TXNODE" : "TXEVENT", pn.conn_id,
					pn.tx_id);
			else
				fprintf(f, "NODE ");
			fprintf(f, "%s", pn.path);
			for (unsigned int i = 0; i < pn.np; i++) {
				perms_format(&pn.p[i], 1, pb, sizeof(pb));
				fprintf(f, "%s%s", i ? "," : " [", pb);
			}
			if (pn.np)
				fprintf(f, "]");
			if (rc.type == LU_REC_NODE) {
				if (pn.conn_id)
					fprintf(f, " access %u", pn.access);
				fprintf(f, " = \"");
				for (uint32_t i = 0; i < pn.vlen; i++) {
					unsigned char ch = (unsigned char)pn.val[i];
					if (ch >= 32 && ch < 127 && ch != '"' && ch != '\\')
						fputc(ch, f);
					else
						fprintf(f, "\\x%02x", ch);
				}
				fprintf(f, "\"\n");
			} else {
				fprintf(f, " %s\n", pn.exact ? "exact" : "subtree");
			}
			break;
		default:
			fprintf(f, "RECORD type %#x len %u (skipped)\n", rc.type, rc.len);
		}
	}
	fprintf(f, "END: %lu nodes, %lu connections, %lu watches, %lu transactions\n", sum.nodes,
		sum.conns, sum.watches, sum.txns);
	talloc_free(tmp);
	return 0;
}

/* ---- restore ---- */

static int restore_output(struct conn *c, const char *d, size_t len, size_t resp)
{
	size_t pos = 0;

	while (pos < len) {
		size_t n;
		bool ev = false;
		if (pos == 0 && resp) {
			n = resp;
		} else {
			struct xs_hdr h;
			memcpy(&h, d + pos, sizeof(h));
			n = sizeof(h) + h.len;
			ev = h.type == XS_WATCH_EVENT;
		}
		struct outmsg *m = talloc_size(c, sizeof(*m) + n);
		if (!m)
			return -ENOMEM;
		talloc_set_name_const(m, "struct outmsg");
		m->next = NULL;
		m->len = (uint32_t)n;
		m->off = 0;
		m->is_event = ev;
		m->queued_s = ev ? mono_seconds() : 0;
		memcpy(m->data, d + pos, n);
		if (c->out_tail)
			c->out_tail->next = m;
		else
			c->out_head = m;
		c->out_tail = m;
		c->out_count++;
		c->out_bytes += n;
		pos += n;
	}
	return 0;
}

/* NODE_DATA records in a checked stream from r's position (sizes the node table
 * once): record headers only, bounds as rd_next(). */
static unsigned long count_nodes(const struct rd *r)
{
	unsigned long n = 0;

	for (size_t pos = r->pos; pos <= r->len && r->len - pos >= 8;) {
		uint32_t type = g32(r->buf + pos), len = g32(r->buf + pos + 4);
		if (type == LU_REC_END || len > r->len - pos - 8)
			break;
		n += type == LU_REC_NODE;
		pos += 8 + ((len + 7u) & ~(size_t)7);
	}
	return n;
}

static struct node *mkparent_node(const char *path)
{
	char buf[XS_ABS_PATH_MAX + 2];
	const char *slash = strrchr(path, '/');
	size_t l = (size_t)(slash - path);

	if (l == 0)
		return node_root();
	if (l >= sizeof(buf))
		return NULL;
	memcpy(buf, path, l);
	buf[l] = '\0';
	return node_lookup(buf);
}

int lu_stream_restore(const char *buf, size_t len, bool checked, unsigned long nodes_hint,
		      char *err, size_t errlen)
{
	void *tmp = talloc_new(NULL);
	struct rd r = {.buf = buf, .len = len, .err = err, .errlen = errlen};
	struct pstate s = {0};
	struct rec rc;
	struct node *tool;
	int ret;

	if (!tmp)
		return -ENOMEM;
	ret = checked ? 0 : lu_stream_check(buf, len, NULL, err, errlen);
	if (ret < 0)
		goto out;
	/* the fresh tree's /tool/xenstored is replaced by the stream's nodes */
	tool = node_lookup("/tool");
	if (tool)
		node_delete(tool);
	rd_preamble(&r);
	/* pass 1: listener, connections, watches, committed nodes.  chain[] holds the
	 * path from the root to the last created node (root: length 0). */
	struct chain {
		size_t len; /* of the path */
		struct node *n;
	} chain[CHAIN_MAX];
	unsigned int nchain = 0;
	size_t first_txn = 0;

	/* a node record takes at least 24 bytes: a larger hint is not believed */
	ret = node_bulk_begin(nodes_hint && nodes_hint <= len / 24 ? nodes_hint : count_nodes(&r));
	if (ret < 0)
		goto fail;
	while ((ret = rd_next(&r, &rc)) > 0) {
		struct pnode pn;
		switch (rc.type) {
		case LU_REC_TXN:
			if (!first_txn)
				first_txn = (size_t)(rc.body - 8 - buf);
			break;
		case LU_REC_GLOBAL: {
			int fd = (int32_t)g32(rc.body);
			if (fd >= 0 && (ret = socket_adopt_listener(fd)) < 0)
				goto fail;
			lu_set_listener(fd);
			break;
		}
		case LU_REC_CONN: {
			struct pconn pc = {0};
			pc.id = g32(rc.body);
			pc.fd = (int32_t)g32(rc.body + 8);
			pc.in_len = g16(rc.body + 16);
			pc.resp = g16(rc.body + 18);
			pc.out_len = g32(rc.body + 20);
			pc.data = rc.body + 24;
			pc.ring = g16(rc.body + 4) == 0;
			pc.domid = g16(rc.body + 8);
			if (!pc.ring) {
				ret = socket_adopt(pc.fd, &pc.c);
				if (ret < 0)
					goto fail;
				ret =
				    restore_output(pc.c, pc.data + pc.in_len, pc.out_len, pc.resp);
				if (ret < 0)
					goto fail;
			}
			if (add_conn(tmp, &s, &pc) < 0) {
				ret = -ENOMEM;
				goto fail;
			}
			break;
		}
		case LU_REC_XST_DOMAIN:
			ret = domain_restore(g16(rc.body), g16(rc.body + 2) & 1,
					     g16(rc.body + 2) & 2, (int32_t)g32(rc.body + 4), NULL);
			if (ret < 0)
				goto fail;
			break;
		case LU_REC_XST_RING: {
			struct pconn *pc = find_conn(&s, g32(rc.body));
			const struct domain *d = domain_get(pc->domid);
			int fds[3] = {(int32_t)g32(rc.body + 4), (int32_t)g32(rc.body + 8),
				      (int32_t)g32(rc.body + 12)};
			uint64_t gfn;
			memcpy(&gfn, rc.body + 16, 8);
			ret = ring_adopt(&pc->c, pc->domid, gfn, fds);
			if (ret == 0)
				ret = domain_restore(pc->domid, d ? d->introduced : true,
						     d && d->shutdown_reported, d ? d->target : -1,
						     pc->c);
			if (ret == 0)
				ret = restore_output(pc->c, pc->data + pc->in_len, pc->out_len,
						     pc->resp);
			if (ret < 0)
				goto fail;
			break;
		}
		case LU_REC_WATCH: {
			struct pconn *pc = find_conn(&s, g32(rc.body));
			const char *orig = rc.body + 8, *token = orig + g16(rc.body + 4);
			char *canon;
			ret = path_canon(pc->c, orig, true, tmp, &canon);
			if (ret == 0)
				ret = watch_add(pc->c, canon, orig, token);
			if (ret < 0)
				goto fail;
			break;
		}
		case LU_REC_NODE:
			if (g32(rc.body))
				break; /* a transaction's: pass 2 */
			parse_node_checked(tmp, &rc, &pn);
			if (!pn.p) {
				ret = -ENOMEM;
				goto fail;
			}
			if (path_is_special(pn.path)) {
				ret = special_set_perms(pn.path, pn.p, pn.np);
			} else if (pn.plen == 2) { /* "/" */
				struct node *root = node_root();
				ret = node_set(&root, pn.val, pn.vlen, pn.p, pn.np);
				chain[0] = (struct chain){0, node_root()};
				nchain = 1;
			} else {
				/* pre-order: the parent is on the chain of the last node.  The
				 * chain's paths are each other's prefixes, so their lengths
				 * differ, and the check verified (with the same chain, comparing
				 * the paths) that the parent is on it: the entry of the parent's
				 * length is the parent. */
				const char *name =
				    (const char *)memrchr(pn.path, '/', pn.plen - 1) + 1;
				size_t plen = (size_t)(name - 1 - pn.path);
				struct node *parent = NULL, *n;
				while (nchain > 0 && chain[nchain - 1].len > plen)
					nchain--;
				if (nchain > 0 && chain[nchain - 1].len == plen)
					parent = chain[nchain - 1].n;
				if (!parent)
					parent = mkparent_node(pn.path);
				ret = parent ? node_create(parent, name, pn.plen - 1 - plen - 1,
							   pn.p, pn.np, pn.val, pn.vlen, &n)
					     : -EINVAL;
				if (ret == 0 && nchain < CHAIN_MAX)
					chain[nchain++] = (struct chain){pn.plen - 1, n};
			}
			if (ret < 0)
				goto fail;
			break;
		default:
			break;
		}
	}
	node_bulk_end();
	/* pass 2: transactions, now that the committed tree is complete.  The check
	 * guarantees every transaction record follows its TRANSACTION_DATA, so the pass
	 * starts at the first one (none: nothing to do). */
	r.pos = first_txn;
	struct txn *cur = NULL;
	uint32_t cur_flags = 0;
	while (first_txn && (ret = rd_next(&r, &rc)) > 0) {
		struct pnode pn;
		struct pconn *pc;
		switch (rc.type) {
		case LU_REC_TXN:
			if (cur && (ret = txn_restore_done(cur, cur_flags)) < 0)
				goto fail;
			pc = find_conn(&s, g32(rc.body));
			cur_flags = rc.len >= 12 ? g32(rc.body + 8) : 0;
			ret = txn_restore(pc->c, g32(rc.body + 4), &cur);
			if (ret < 0)
				goto fail;
			break;
		case LU_REC_NODE:
		case LU_REC_XST_TXN_EVENT:
			ret = rc.type == LU_REC_NODE ? parse_node(tmp, &rc, &pn)
						     : parse_event(tmp, &rc, &pn);
			if (ret < 0)
				goto fail;
			if (!pn.conn_id)
				break;
			pc = find_conn(&s, pn.conn_id);
			struct txn *t = txn_find(pc->c, pn.tx_id);
			if (!t) {
				ret = -EINVAL;
				goto fail;
			}
			if (rc.type == LU_REC_NODE)
				ret = txn_restore_node(pc->c, t, pn.path, pn.access, pn.p, pn.np,
						       pn.val, pn.vlen);
			else
				db_event(pc->c, t, pn.path, pn.exact, pn.p, pn.np, store_gen);
			if (ret < 0)
				goto fail;
			break;
		default:
			break;
		}
	}
	if (cur && (ret = txn_restore_done(cur, cur_flags)) < 0)
		goto fail;
	/* pending output first (the live-update OK among it), then held input */
	for (unsigned int i = 0; i < s.nconns; i++)
		conn_flush(s.conns[i].c);
	for (unsigned int i = 0; i < s.nconns; i++) {
		struct conn *c = s.conns[i].c;
		if (s.conns[i].in_len && !c->dead)
			conn_input(c, s.conns[i].data, s.conns[i].in_len);
		/* a ring's kick may have been consumed by the old process */
		if (c->is_ring && !c->dead) {
			conn_read_some(c);
			conn_flush(c);
		}
	}
	conn_flush_dirty();
	ret = 0;
	goto out;
fail:
	if (err && ret != -EINVAL)
		snprintf(err, errlen, "restore failed: %s", strerror(-ret));
	else if (err)
		snprintf(err, errlen, "restore failed: inconsistent record at offset %zu", r.pos);
out:
	talloc_free(tmp);
	return ret;
}

int lu_file_read(void *ctx, const char *path, char **buf, size_t *len)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	struct stat st;
	char *b;
	size_t got = 0;

	if (fd < 0)
		return -errno;
	if (fstat(fd, &st) < 0) {
		int e = -errno;
		close(fd);
		return e;
	}
	b = talloc_size(ctx, (size_t)st.st_size + 1);
	if (!b) {
		close(fd);
		return -ENOMEM;
	}
	while (got < (size_t)st.st_size) {
		ssize_t n = read(fd, b + got, (size_t)st.st_size - got);
		if (n <= 0) {
			int e = n < 0 ? -errno : -EIO;
			close(fd);
			talloc_free(b);
			return e;
		}
		got += (size_t)n;
	}
	close(fd);
	*buf = b;
	*len = got;
	return 0;
}

int lu_file_write(const char *path, const char *buf, size_t len)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	size_t done = 0;

	if (fd < 0)
		return -errno;
	fchmod(fd, 0600);
	while (done < len) {
		ssize_t n = write(fd, buf + done, len - done);
		if (n < 0) {
			int e = -errno;
			close(fd);
			return e;
		}
		done += (size_t)n;
	}
	if (close(fd) < 0)
		return -errno;
	return 0;
}

struct lu_map {
	void *p;
	size_t len;
};

static int lu_map_destroy(struct lu_map *m)
{
	if (m->len)
		munmap(m->p, m->len);
	return 0;
}

int lu_file_map(void *ctx, const char *path, const char **buf, size_t *len, bool *sealed)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC), seals, ret = 0;
	struct lu_map *m;
	struct stat st;

	if (fd < 0)
		return -errno;
	m = talloc_zero(ctx, struct lu_map);
	if (!m) {
		ret = -ENOMEM;
		goto out;
	}
	if (fstat(fd, &st) < 0) {
		ret = -errno;
		goto out;
	}
	seals = fcntl(fd, F_GET_SEALS);
	if (sealed)
		*sealed = seals >= 0 && (seals & LU_SEALS) == LU_SEALS;
	if (st.st_size > 0) {
		void *p = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_PRIVATE | MAP_POPULATE,
			       fd, 0);
		if (p == MAP_FAILED) {
			ret = -errno;
			goto out;
		}
		m->p = p;
		m->len = (size_t)st.st_size;
		talloc_set_destructor(m, lu_map_destroy);
	}
	*buf = m->len ? m->p : "";
	*len = m->len;
out:
	if (ret < 0)
		talloc_free(m);
	close(fd);
	return ret;
}

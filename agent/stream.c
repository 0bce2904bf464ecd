/*
 * The save/migration stream: record framing, the sender's record writers (reading the
 * domain process: pages, state, config, xenstore subtree) and the receiver, which
 * rebuilds a domain from the records (docs/save-format.md).
 */
#include <endian.h>
#include <errno.h>
#include <inttypes.h>
#include <malloc.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include <talloc.h>

#include "agent/agent.h"
#include "agent/stream.h"
#include "proto/json.h"
#include "proto/rpc.h"
#include "store/xs_client.h"
#include "store/xs_proto.h"

#define HDR_LEN 16u
#define FNV_INIT 0xcbf29ce484222325ull
#define FNV_PRIME 0x100000001b3ull
#define XS_MAX_NODES 4096
#define XS_MAX_DEPTH 16

/* FNV-1a over 64-bit little-endian words (records are padded to 8 bytes): one
 * multiply per 8 bytes, so the checksum keeps up with the memory copies. */
static uint64_t fnv(uint64_t h, const uint8_t *p, size_t n)
{
	size_t i;
	uint64_t w;

	for (i = 0; i + 8 <= n; i += 8) {
		memcpy(&w, p + i, 8);
		h = (h ^ le64toh(w)) * FNV_PRIME;
	}
	return h;
}

static void put32(uint8_t *p, uint32_t v)
{
	unsigned int i;

	for (i = 0; i < 4; i++)
		p[i] = v >> (8 * i);
}

static void put64(uint8_t *p, uint64_t v)
{
	unsigned int i;

	for (i = 0; i < 8; i++)
		p[i] = v >> (8 * i);
}

static uint32_t get32(const uint8_t *p)
{
	return p[0] | p[1] << 8 | p[2] << 16 | (uint32_t)p[3] << 24;
}

static uint64_t get64(const uint8_t *p)
{
	return get32(p) | (uint64_t)get32(p + 4) << 32;
}

static size_t pad8(size_t n)
{
	return (n + 7) & ~(size_t)7;
}

/* Page batches are 1 MiB buffers, several per request (pack, nng, unpack): served from
 * the heap instead of a fresh mmap each (256 page faults per buffer), the copy runs
 * several times faster.  The agent keeps up to STREAM_HEAP_KEEP of freed heap. */
#define STREAM_HEAP_KEEP (64 << 20)
static void tune_malloc(void)
{
	static bool done;

	if (done)
		return;
	done = true;
	mallopt(M_MMAP_THRESHOLD, 32 << 20);
	mallopt(M_TRIM_THRESHOLD, STREAM_HEAP_KEEP);
}

/* ---------------------------------------------------------------- sender */

int stream_tx_new(void *ctx, stream_sink_fn sink, void *arg, struct stream_tx **out)
{
	struct stream_tx *t = talloc_zero(ctx, struct stream_tx);

	if (!t)
		return -ENOMEM;
	tune_malloc();
	t->buf = talloc_size(t, STREAM_CHUNK + STREAM_MAX_RECORD / 16);
	if (!t->buf) {
		talloc_free(t);
		return -ENOMEM;
	}
	t->sink = sink;
	t->arg = arg;
	t->hash = FNV_INIT;
	*out = t;
	return 0;
}

int stream_tx_flush(struct stream_tx *t)
{
	int rv;

	if (!t->len)
		return 0;
	rv = t->sink(t->arg, t->buf, t->len);
	t->len = 0;
	return rv;
}

/* Room for a record of len payload bytes: its header written, *payload to fill; then
 * tx_commit.  */
static int tx_begin(struct stream_tx *t, uint32_t type, size_t len, uint8_t **payload)
{
	size_t total = HDR_LEN + pad8(len);
	uint8_t *p;
	int rv;

	if (len > STREAM_MAX_RECORD / 16)
		return -E2BIG;
	if (t->len + total > STREAM_CHUNK) {
		rv = stream_tx_flush(t);
		if (rv < 0)
			return rv;
	}
	p = t->buf + t->len;
	put32(p, type);
	put32(p + 4, 0);
	put64(p + 8, len);
	*payload = p + HDR_LEN;
	return 0;
}

static void tx_commit(struct stream_tx *t, uint32_t type, size_t len)
{
	size_t total = HDR_LEN + pad8(len);

	memset(t->buf + t->len + HDR_LEN + len, 0, pad8(len) - len);
	if (type != REC_END)
		t->hash = fnv(t->hash, t->buf + t->len, total);
	t->len += total;
	t->bytes += total;
}

/* One record from up to three pieces of payload. */
static int tx_record(struct stream_tx *t, uint32_t type, const void *a, size_t alen,
		     const void *b, size_t blen, const void *c, size_t clen)
{
	size_t len = alen + blen + clen;
	uint8_t *p;
	int rv;

	rv = tx_begin(t, type, len, &p);
	if (rv < 0)
		return rv;
	if (alen)
		memcpy(p, a, alen);
	if (blen)
		memcpy(p + alen, b, blen);
	if (clen)
		memcpy(p + alen + blen, c, clen);
	tx_commit(t, type, len);
	return 0;
}

int stream_tx_header(struct stream_tx *t, const char *core, uint64_t npages, uint64_t flags)
{
	uint8_t h[48];

	memset(h, 0, sizeof(h));
	memcpy(h, STREAM_MAGIC, 8);
	put32(h + 8, STREAM_VERSION);
	put32(h + 12, STREAM_PAGE);
	put64(h + 16, npages);
	strncpy((char *)h + 24, core, 15);
	put64(h + 40, flags);
	return tx_record(t, REC_HEADER, h, sizeof(h), NULL, 0, NULL, 0);
}

static void json_opt(struct xst_json *j, const char *key, const char *v)
{
	if (v)
		xst_json_kv_string(j, key, v);
}

int stream_tx_config(struct stream_tx *t, struct adom *d)
{
	const Xstagent__DomainConfig *c = d->cfg;
	struct xst_json *j;
	const char *text;
	size_t len;
	int rv;

	rv = xst_json_new(t, false, &j);
	if (rv < 0)
		return rv;
	xst_json_map_open(j);
	xst_json_kv_string(j, "name", d->name);
	xst_json_kv_string(j, "uuid", d->uuid_str);
	xst_json_kv_string(j, "type", c->type);
	xst_json_kv_uint(j, "memory_mib", c->memory_mib);
	xst_json_kv_uint(j, "maxmem_mib", c->maxmem_mib);
	xst_json_kv_uint(j, "vcpus", c->vcpus);
	xst_json_kv_uint(j, "maxvcpus", c->maxvcpus);
	json_opt(j, "cpus", c->cpus);
	xst_json_kv_uint(j, "cpu_weight", d->weight);
	xst_json_kv_uint(j, "cpu_cap", d->cap);
	xst_json_kv_string(j, "pool", c->pool);
	json_opt(j, "kernel", c->kernel);
	json_opt(j, "ramdisk", c->ramdisk);
	json_opt(j, "cmdline", c->cmdline);
	xst_json_kv_string(j, "on_poweroff", c->on_poweroff);
	xst_json_kv_string(j, "on_reboot", c->on_reboot);
	xst_json_kv_string(j, "on_crash", c->on_crash);
	xst_json_kv_string(j, "on_soft_reset", c->on_soft_reset);
	json_opt(j, "workload", c->workload);
	xst_json_kv_string(j, "core", c->core);
	xst_json_map_close(j);
	rv = xst_json_finish(j, &text, &len);
	if (rv == 0)
		rv = tx_record(t, REC_CONFIG, text, len, NULL, 0, NULL, 0);
	talloc_free(j);
	return rv;
}

int stream_npages(struct adom *d, uint64_t *npages)
{
	Xstdom__Info *info;
	void *tmp = talloc_new(d);
	int rv = tmp ? adom_info(d, tmp, &info) : -ENOMEM;

	if (rv == 0)
		*npages = info->mem_max_kib / (STREAM_PAGE / 1024);
	talloc_free(tmp);
	return rv;
}

static bool bit(const uint8_t *map, size_t len, uint64_t n)
{
	return n / 8 < len && (map[n / 8] >> (n % 8)) & 1;
}

/* Read count pages from gfn (the domain process leaves zero pages out) and send the
 * non-zero ones as PAGES records (<= STREAM_BATCH pages each), the zero ones as a ZERO
 * record when `resend`. */
static int tx_batch(struct stream_tx *t, struct adom *d, uint64_t gfn, uint32_t count,
		    bool resend, char **msg, void *ctx)
{
	Xstdom__Request req = XSTDOM__REQUEST__INIT;
	Xstdom__PageRange pr = XSTDOM__PAGE_RANGE__INIT;
	Xstdom__Reply *rep;
	void *tmp = talloc_new(ctx);
	uint8_t head[8], *gfns, *zeros, *data;
	const uint8_t *present;
	uint32_t i, n = 0, nz = 0, done = 0, k;
	int rv;

	if (!tmp)
		return -ENOMEM;
	pr.first_gfn = gfn;
	pr.count = count;
	pr.has_skip_zero = pr.skip_zero = true;
	req.body_case = XSTDOM__REQUEST__BODY_READ_PAGES;
	req.read_pages = &pr;
	rv = adom_call(d, &req, AGENT_CALL_MS, tmp, &rep, msg);
	if (rv < 0)
		goto out;
	rv = -EPROTO;
	if (rep->body_case != XSTDOM__REPLY__BODY_PAGES || !rep->pages->has_present ||
	    rep->pages->present.len != (count + 7) / 8 || rep->pages->data.len % STREAM_PAGE)
		goto out;
	present = rep->pages->present.data;
	data = rep->pages->data.data;
	gfns = talloc_size(tmp, (size_t)count * 8);
	zeros = talloc_size(tmp, (size_t)count * 8);
	if (!gfns || !zeros) {
		rv = -ENOMEM;
		goto out;
	}
	for (i = 0; i < count; i++) {
		if ((present[i / 8] >> (i % 8)) & 1)
			put64(gfns + (size_t)n++ * 8, gfn + i);
		else
			put64(zeros + (size_t)nz++ * 8, gfn + i);
	}
	if ((size_t)n * STREAM_PAGE != rep->pages->data.len)
		goto out;
	t->pages_zero += nz;
	t->pages_sent += n;
	rv = 0;
	for (done = 0; rv == 0 && done < n; done += k) {
		k = n - done < STREAM_BATCH ? n - done : STREAM_BATCH;
		put32(head, k);
		put32(head + 4, 0);
		rv = tx_record(t, REC_PAGES, head, 8, gfns + (size_t)done * 8, (size_t)k * 8,
			       data + (size_t)done * STREAM_PAGE, (size_t)k * STREAM_PAGE);
	}
	if (rv == 0 && resend && nz) {
		put32(head, nz);
		put32(head + 4, 0);
		rv = tx_record(t, REC_ZERO, head, 8, zeros, (size_t)nz * 8, NULL, 0);
	}
out:
	if (msg && *msg)
		*msg = talloc_steal(ctx, *msg);
	talloc_free(tmp);
	return rv;
}

/* tx_batch with the domain's RAM mapped here: holes skipped, zero pages counted (and,
 * with `resend`, listed in ZERO records), the others copied straight from guest
 * memory into PAGES records. */
struct ram_batch {
	struct stream_tx *t;
	struct adom_ram *ram;
	uint8_t gfns[STREAM_BATCH * 8], zeros[STREAM_BATCH * 8];
	uint32_t n, nz;
};

static int ram_flush_pages(struct ram_batch *b)
{
	size_t len = 8 + (size_t)b->n * (8 + STREAM_PAGE);
	uint8_t *p, *dst;
	uint32_t j;
	int rv;

	if (!b->n)
		return 0;
	rv = tx_begin(b->t, REC_PAGES, len, &p);
	if (rv < 0)
		return rv;
	put32(p, b->n);
	put32(p + 4, 0);
	memcpy(p + 8, b->gfns, (size_t)b->n * 8);
	dst = p + 8 + (size_t)b->n * 8;
	for (j = 0; j < b->n; j++)
		memcpy(dst + (size_t)j * STREAM_PAGE,
		       b->ram->mem + get64(b->gfns + (size_t)j * 8) * STREAM_PAGE, STREAM_PAGE);
	tx_commit(b->t, REC_PAGES, len);
	b->t->pages_sent += b->n;
	b->n = 0;
	return 0;
}

static int ram_flush_zeros(struct ram_batch *b)
{
	uint8_t head[8];
	int rv;

	if (!b->nz)
		return 0;
	put32(head, b->nz);
	put32(head + 4, 0);
	rv = tx_record(b->t, REC_ZERO, head, 8, b->zeros, (size_t)b->nz * 8, NULL, 0);
	b->nz = 0;
	return rv;
}

static int ram_zero_page(struct ram_batch *b, uint64_t gfn, bool resend)
{
	b->t->pages_zero++;
	if (!resend)
		return 0;
	put64(b->zeros + (size_t)b->nz++ * 8, gfn);
	return b->nz == STREAM_BATCH ? ram_flush_zeros(b) : 0;
}

/* Page g of the mapped RAM: a zero page is counted (and listed when resending), any
 * other joins the batch. */
static int ram_take_page(struct ram_batch *b, uint64_t g, bool resend)
{
	static const uint8_t zero[STREAM_PAGE];

	if (memcmp(b->ram->mem + g * STREAM_PAGE, zero, STREAM_PAGE) == 0)
		return ram_zero_page(b, g, resend);
	put64(b->gfns + (size_t)b->n++ * 8, g);
	return b->n == STREAM_BATCH ? ram_flush_pages(b) : 0;
}

/* Sends what the batch still holds (unless rv already failed) and frees it. */
static int ram_batch_end(struct ram_batch *b, int rv)
{
	if (rv == 0)
		rv = ram_flush_pages(b);
	if (rv == 0)
		rv = ram_flush_zeros(b);
	talloc_free(b);
	return rv;
}

static int tx_batch_ram(struct stream_tx *t, struct adom_ram *ram, uint64_t gfn,
			uint32_t count, bool resend)
{
	struct ram_batch *b = talloc_zero(t, struct ram_batch);
	uint64_t g, next, end = gfn + count, data_end = gfn;
	int rv = 0;

	if (!b)
		return -ENOMEM;
	b->t = t;
	b->ram = ram;
	for (g = gfn; g < end && rv == 0; g++) {
		if (g >= data_end) {
			next = adom_ram_next_data(ram, g, end, &data_end);
			for (; g < next && rv == 0; g++) /* a hole: never written */
				rv = ram_zero_page(b, g, resend);
			if (g >= end || rv < 0)
				break;
		}
		rv = ram_take_page(b, g, resend);
	}
	return ram_batch_end(b, rv);
}

/* The pages of a dirty bitmap straight from the mapped RAM: one pass over the bitmap a
 * word at a time, pages of separate runs batched into full records.  A dirty page was
 * written, so it is no hole: no SEEK_DATA per run (a round's scattered pages made that
 * two lseeks and a record per page). */
static int tx_bitmap_ram(struct stream_tx *t, struct adom_ram *ram, uint64_t npages,
			 const uint8_t *bitmap, size_t len, bool resend)
{
	struct ram_batch *b = talloc_zero(t, struct ram_batch);
	size_t w;
	int rv = 0;

	if (!b)
		return -ENOMEM;
	b->t = t;
	b->ram = ram;
	for (w = 0; w * 8 < len && rv == 0; w++) {
		uint64_t word = 0;

		memcpy(&word, bitmap + w * 8, len - w * 8 < 8 ? len - w * 8 : 8);
		word = le64toh(word);
		while (word && rv == 0) {
			uint64_t g = w * 64 + (uint64_t)__builtin_ctzll(word);

			word &= word - 1;
			if (g >= npages)
				break;
			rv = ram_take_page(b, g, resend);
		}
	}
	return ram_batch_end(b, rv);
}

int stream_tx_pages(struct stream_tx *t, struct adom *d, uint64_t npages, const uint8_t *bitmap,
		    size_t bitmap_len, bool resend, char **msg, void *ctx)
{
	uint64_t gfn = 0, end;
	int rv;

	if (!t->ram_tried) {
		t->ram_tried = true;
		rv = adom_ram_map(d, false, t, &t->ram);
		if (rv < 0) {
			t->ram = NULL;
			if (rv != -EOPNOTSUPP)
				agent_log(d->a, "domain %u: mapping its RAM: %s (pages go through "
					  "its domain process)", d->domid, strerror(-rv));
		} else if (t->ram->npages < npages) {
			talloc_free(t->ram);
			t->ram = NULL;
		}
	}

	if (bitmap && t->ram)
		return tx_bitmap_ram(t, t->ram, npages, bitmap, bitmap_len, resend);
	while (gfn < npages) {
		if (bitmap && !bit(bitmap, bitmap_len, gfn)) {
			gfn++;
			continue;
		}
		end = gfn + 1;
		while (end < npages && end - gfn < STREAM_READ_BATCH &&
		       (!bitmap || bit(bitmap, bitmap_len, end)))
			end++;
		if (t->ram)
			rv = tx_batch_ram(t, t->ram, gfn, (uint32_t)(end - gfn), resend);
		else
			rv = tx_batch(t, d, gfn, end - gfn, resend, msg, ctx);
		if (rv < 0)
			return rv;
		gfn = end;
	}
	return 0;
}

struct xs_walk {
	struct agent *a;
	uint32_t tx; /* xenstore transaction the walk reads in (0: none) */
	uint8_t *buf;
	size_t len;
	unsigned int nodes;
};

/* One XENSTORE entry: u32 path len, u32 value len, u32 perms len, u32 0, path, value,
 * perms (GET_PERMS' reply: NUL-terminated "n0", "r5", ...). */
static int xs_walk_add(struct xs_walk *w, const char *rel, const char *val, size_t vlen,
		       const char *perms, size_t plen)
{
	size_t rl = strlen(rel), need = w->len + 16 + rl + vlen + plen;
	uint8_t *nb = talloc_realloc(NULL, w->buf, uint8_t, need);

	if (!nb)
		return -ENOMEM;
	w->buf = nb;
	put32(nb + w->len, rl);
	put32(nb + w->len + 4, vlen);
	put32(nb + w->len + 8, plen);
	put32(nb + w->len + 12, 0);
	memcpy(nb + w->len + 16, rel, rl);
	memcpy(nb + w->len + 16 + rl, val, vlen);
	if (plen)
		memcpy(nb + w->len + 16 + rl + vlen, perms, plen);
	w->len = need;
	return 0;
}

/*
 * The subtree under base, level by level: for each level, READ, GET_PERMS and DIRECTORY
 * of all its nodes go to xenstored in pipelined batches (xs_client_batch), so a guest's
 * subtree costs a few round trips, not two per node: this runs while the guest is
 * paused for a migration.  Nodes that vanish meanwhile are skipped.
 */
static int xs_walk(struct xs_walk *w, const char *base)
{
	void *tmp = talloc_new(NULL);
	char **level, **next;
	unsigned int nlevel = 1, nnext, depth, i, k, chunk;
	int rv = 0;

	if (!tmp)
		return -ENOMEM;
	level = talloc_array(tmp, char *, 1);
	if (!level || !(level[0] = talloc_strdup(tmp, ""))) {
		talloc_free(tmp);
		return -ENOMEM;
	}
	for (depth = 0; nlevel && rv == 0; depth++) {
		if (depth > XS_MAX_DEPTH) {
			rv = -E2BIG;
			break;
		}
		next = talloc_array(tmp, char *, 0);
		nnext = 0;
		for (i = 0; i < nlevel && rv == 0; i += chunk) {
			struct xs_batch_op ops[XS_BATCH_MAX];
			char *paths[XS_BATCH_MAX / 3];

			chunk = nlevel - i < XS_BATCH_MAX / 3 ? nlevel - i : XS_BATCH_MAX / 3;
			for (k = 0; k < chunk; k++) {
				const char *rel = level[i + k];

				paths[k] = rel[0] ? talloc_asprintf(tmp, "%s/%s", base, rel)
						  : talloc_strdup(tmp, base);
				if (!paths[k]) {
					rv = -ENOMEM;
					break;
				}
				ops[3 * k] = (struct xs_batch_op){ .type = XS_READ, .tx = w->tx,
								   .payload = paths[k],
								   .len = strlen(paths[k]) + 1 };
				ops[3 * k + 1] = ops[3 * k];
				ops[3 * k + 1].type = XS_DIRECTORY;
				ops[3 * k + 2] = ops[3 * k];
				ops[3 * k + 2].type = XS_GET_PERMS;
			}
			if (rv == 0)
				rv = xs_client_batch(w->a->xs, ops, 3 * chunk, tmp);
			for (k = 0; rv == 0 && k < chunk; k++) {
				const char *rel = level[i + k];
				size_t off;

				if (++w->nodes > XS_MAX_NODES) {
					rv = -E2BIG;
					break;
				}
				if (rel[0] && ops[3 * k].err == 0)
					rv = xs_walk_add(w, rel, ops[3 * k].reply, ops[3 * k].reply_len,
							 ops[3 * k + 2].err == 0 ? ops[3 * k + 2].reply
										 : NULL,
							 ops[3 * k + 2].err == 0
								 ? ops[3 * k + 2].reply_len : 0);
				if (rv < 0 || ops[3 * k + 1].err < 0)
					continue; /* vanished meanwhile */
				for (off = 0; rv == 0 && off < ops[3 * k + 1].reply_len;) {
					const char *name = ops[3 * k + 1].reply + off;
					size_t nl = strlen(name);
					char **nn;

					off += nl + 1;
					if (!nl)
						continue;
					nn = talloc_realloc(tmp, next, char *, nnext + 1);
					if (!nn) {
						rv = -ENOMEM;
						break;
					}
					next = nn;
					next[nnext] = rel[0] ? talloc_asprintf(tmp, "%s/%s", rel, name)
							     : talloc_strdup(tmp, name);
					if (!next[nnext++])
						rv = -ENOMEM;
				}
			}
		}
		level = next;
		nlevel = nnext;
	}
	talloc_free(tmp);
	return rv;
}

/* The guest's watches from xstored (XS_CONTROL domain-watches, a reply's worth at a
 * time, until the empty path that ends the list) as a REC_XS_WATCHES payload on *buf.
 * No ring connection: no watches. */
static int xs_watches(struct adom *d, uint8_t **buf, size_t *len)
{
	unsigned int count = 0, got;
	uint8_t *b = talloc_zero_size(NULL, 8);
	size_t bl = 8;
	bool end = false;
	int rv = 0;

	if (!b)
		return -ENOMEM;
	while (!end) {
		char args[64], *rep;
		size_t al, rl, off = 0;

		al = (size_t)snprintf(args, sizeof(args), "domain-watches%c%u%c%u", 0, d->domid, 0,
				      count) + 1;
		rv = xs_client_request(d->a->xs, XS_CONTROL, 0, args, al, NULL, 0, b, &rep, &rl);
		if (rv == -ENOENT) {
			rv = 0;
			break;
		}
		if (rv < 0)
			break;
		got = 0;
		while (off < rl) {
			size_t pl = strnlen(rep + off, rl - off), tl;
			uint8_t *nb;

			if (pl == 0) {
				end = true;
				break;
			}
			if (off + pl + 1 >= rl)
				break;
			tl = strnlen(rep + off + pl + 1, rl - off - pl - 1);
			nb = talloc_realloc(NULL, b, uint8_t, bl + 8 + pl + tl);
			if (!nb) {
				talloc_free(b);
				return -ENOMEM;
			}
			b = nb;
			put32(b + bl, pl);
			put32(b + bl + 4, tl);
			memcpy(b + bl + 8, rep + off, pl);
			memcpy(b + bl + 8 + pl, rep + off + pl + 1, tl);
			bl += 8 + pl + tl;
			off += pl + tl + 2;
			got++;
		}
		talloc_free(rep);
		if (got == 0)
			break;
		count += got;
	}
	if (rv < 0) {
		talloc_free(b);
		return rv;
	}
	put32(b, d->domid);
	put32(b + 4, count);
	*buf = b;
	*len = bl;
	return 0;
}

int stream_tx_xs_subtree(struct stream_tx *t, struct adom *d, uint32_t tx)
{
	struct xs_walk w = { .a = d->a, .tx = tx };
	char *base;
	int rv;

	w.buf = talloc_size(NULL, 8);
	base = w.buf ? talloc_asprintf(w.buf, "/local/domain/%u", d->domid) : NULL;
	if (!base) {
		talloc_free(w.buf);
		return -ENOMEM;
	}
	put32(w.buf, d->domid); /* perms naming it are moved to the new domid */
	put32(w.buf + 4, 0);
	w.len = 8;
	rv = xs_walk(&w, base);
	if (rv == 0)
		rv = tx_record(t, REC_XENSTORE, w.buf, w.len, NULL, 0, NULL, 0);
	talloc_free(w.buf);
	return rv;
}

int stream_tx_xs_watches(struct stream_tx *t, struct adom *d)
{
	uint8_t *wbuf;
	size_t wlen;
	int rv;

	rv = xs_watches(d, &wbuf, &wlen);
	if (rv < 0) {
		agent_log(d->a, "domain %u: reading its xenstore watches: %s (not carried)",
			  d->domid, strerror(-rv));
		return 0;
	}
	rv = tx_record(t, REC_XS_WATCHES, wbuf, wlen, NULL, 0, NULL, 0);
	talloc_free(wbuf);
	return rv;
}

int stream_tx_xenstore(struct stream_tx *t, struct adom *d)
{
	int rv = stream_tx_xs_subtree(t, d, 0);

	return rv < 0 ? rv : stream_tx_xs_watches(t, d);
}

int stream_tx_cpu(struct stream_tx *t, struct adom *d, char **msg, void *ctx)
{
	Xstdom__Reply *rep;
	void *tmp = talloc_new(ctx);
	char *m = NULL;
	int rv;

	if (!tmp)
		return -ENOMEM;
	rv = adom_call_empty(d, XSTDOM__REQUEST__BODY_CPU_FEATURES, tmp, &rep, &m);
	if (rv == -EOPNOTSUPP) {
		rv = 0; /* the core has nothing to compare (sim) */
	} else if (rv == 0 && rep->body_case != XSTDOM__REPLY__BODY_CPU_FEATURES) {
		rv = -EPROTO;
	} else if (rv == 0) {
		rv = tx_record(t, REC_CPU, rep->cpu_features.data, rep->cpu_features.len, NULL, 0,
			       NULL, 0);
	} else if (msg && m) {
		*msg = talloc_steal(ctx, m);
	}
	talloc_free(tmp);
	return rv;
}

int stream_tx_state(struct stream_tx *t, struct adom *d, char **msg, void *ctx)
{
	Xstdom__Reply *rep;
	void *tmp = talloc_new(ctx);
	int rv;

	if (!tmp)
		return -ENOMEM;
	rv = adom_call_empty(d, XSTDOM__REQUEST__BODY_STATE_SAVE, tmp, &rep, msg);
	if (rv == 0 && rep->body_case != XSTDOM__REPLY__BODY_STATE)
		rv = -EPROTO;
	if (rv == 0)
		rv = stream_tx_state_blob(t, rep->state);
	if (msg && *msg)
		*msg = talloc_steal(ctx, *msg);
	talloc_free(tmp);
	return rv;
}

int stream_tx_state_blob(struct stream_tx *t, const Xstdom__StateBlob *sb)
{
	uint8_t *buf;
	size_t len;
	int rv = xst_rpc_pack(&sb->base, t, &buf, &len);

	if (rv < 0)
		return rv;
	rv = tx_record(t, REC_STATE, buf, len, NULL, 0, NULL, 0);
	talloc_free(buf);
	return rv;
}

int stream_tx_end(struct stream_tx *t)
{
	uint8_t h[8];
	int rv;

	put64(h, t->hash);
	rv = tx_record(t, REC_END, h, 8, NULL, 0, NULL, 0);
	if (rv == 0)
		rv = stream_tx_flush(t);
	return rv;
}

/* ---------------------------------------------------------------- checks */

static int check_header(const uint8_t *p, size_t len, uint64_t *npages, char core[16],
			uint64_t *flags, char *err, size_t errlen)
{
	if (len < 48 || memcmp(p, STREAM_MAGIC, 8) != 0) {
		snprintf(err, errlen, "not an xst save stream (bad magic)");
		return -EINVAL;
	}
	if (get32(p + 8) != STREAM_VERSION || get32(p + 12) != STREAM_PAGE) {
		snprintf(err, errlen, "unsupported stream version %u / page size %u", get32(p + 8),
			 get32(p + 12));
		return -EINVAL;
	}
	*npages = get64(p + 16);
	memcpy(core, p + 24, 15);
	core[15] = 0;
	*flags = get64(p + 40);
	return 0;
}

int stream_verify(const uint8_t *buf, size_t len, char *err, size_t errlen)
{
	uint64_t h = FNV_INIT, npages, flags, off = 0;
	char core[16];
	bool first = true;

	while (off + HDR_LEN <= len) {
		uint32_t type = get32(buf + off);
		uint64_t rl = get64(buf + off + 8), total;

		if (first && type != REC_HEADER) {
			snprintf(err, errlen, "not an xst save stream (no header)");
			return -EINVAL;
		}
		if (rl > STREAM_MAX_RECORD || type < REC_HEADER || type > REC_LAST) {
			snprintf(err, errlen, "corrupt record at offset %" PRIu64, off);
			return -EINVAL;
		}
		total = HDR_LEN + pad8(rl);
		if (off + total > len)
			break;
		if (first && (type != REC_HEADER ||
			      check_header(buf + off + HDR_LEN, rl, &npages, core, &flags, err, errlen) < 0)) {
			if (type != REC_HEADER)
				snprintf(err, errlen, "not an xst save stream (no header)");
			return -EINVAL;
		}
		first = false;
		if (type == REC_END) {
			if (rl != 8 || get64(buf + off + HDR_LEN) != h) {
				snprintf(err, errlen, "checksum mismatch: the file is corrupted");
				return -EINVAL;
			}
			if (off + total != len) {
				snprintf(err, errlen, "trailing bytes after the end record");
				return -EINVAL;
			}
			return 0;
		}
		h = fnv(h, buf + off, total);
		off += total;
	}
	snprintf(err, errlen, first ? "not an xst save stream (too short)"
				    : "truncated (no end record after %" PRIu64 " bytes)", off);
	return -EINVAL;
}

/* ---------------------------------------------------------------- receiver */

struct stream_rx {
	struct agent *a;
	bool paused;
	uint8_t *buf;
	size_t len, cap;
	uint64_t hash;
	uint64_t npages;
	char core[16];
	bool have_header, have_state, done, failed;
	struct adom *d;
	uint8_t *xs;      /* XENSTORE payload */
	size_t xs_len;
	bool xs_applied;  /* ... recreated on this host's xstored already */
	uint8_t *xw;      /* XS_WATCHES payload */
	size_t xw_len;
	struct adom_ram *ram; /* the new domain's RAM mapped here (NULL: write_pages) */
	bool ram_tried;
	bool verified; /* stream_verify() checked the whole stream: no second checksum */
	int (*unchanged)(void *arg); /* ... and this says it was not rewritten since */
	void *unchanged_arg;
	double state_ms; /* loading the vm state (migration: the destination's timing log) */
	char *error;
};

static int rx_fail(struct stream_rx *r, int err, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
static int rx_fail(struct stream_rx *r, int err, const char *fmt, ...)
{
	va_list ap;

	if (!r->error) {
		va_start(ap, fmt);
		r->error = talloc_vasprintf(r, fmt, ap);
		va_end(ap);
	}
	return err;
}

int stream_rx_new(struct agent *a, void *ctx, bool paused, struct stream_rx **out)
{
	struct stream_rx *r = talloc_zero(ctx, struct stream_rx);

	if (!r)
		return -ENOMEM;
	tune_malloc();
	r->a = a;
	r->paused = paused;
	r->hash = FNV_INIT;
	*out = r;
	return 0;
}

void stream_rx_abort(struct stream_rx *r, const char *why)
{
	char *msg = NULL;

	if (r->d) {
		agent_log(r->a, "incoming domain %u (%s): %s: destroying it", r->d->domid,
			  r->d->name, why);
		adom_destroy(r->d, &msg, r);
		r->d = NULL;
	}
	r->failed = true;
}

static const char *jstr(const struct xst_json_value *o, const char *key)
{
	const struct xst_json_value *v = xst_json_get(o, key);

	return v && v->type == XST_JSON_STRING ? v->s : NULL;
}

static int juint(const struct xst_json_value *o, const char *key, uint64_t *out)
{
	const struct xst_json_value *v = xst_json_get(o, key);

	if (!v || v->type != XST_JSON_NUMBER || !v->is_int || v->i < 0)
		return -EINVAL;
	*out = v->i;
	return 0;
}

static int parse_uuid(const char *s, uint8_t u[16])
{
	unsigned int i, k = 0;

	for (i = 0; s[i] && k < 32; i++) {
		char c = s[i];
		int v;

		if (c == '-')
			continue;
		if (c >= '0' && c <= '9')
			v = c - '0';
		else if (c >= 'a' && c <= 'f')
			v = c - 'a' + 10;
		else if (c >= 'A' && c <= 'F')
			v = c - 'A' + 10;
		else
			return -EINVAL;
		if (k % 2 == 0)
			u[k / 2] = v << 4;
		else
			u[k / 2] |= v;
		k++;
	}
	return k == 32 && !s[i] ? 0 : -EINVAL;
}

static char *dupopt(void *ctx, const char *s)
{
	return s ? talloc_strdup(ctx, s) : NULL;
}

static int config_from_json(void *ctx, const char *text, Xstagent__DomainConfig **out, char *err,
			    size_t errlen)
{
	Xstagent__DomainConfig *c = talloc_zero(ctx, Xstagent__DomainConfig);
	struct xst_json_value *v;
	uint64_t n[6];
	const char *u;
	int rv;

	if (!c)
		return -ENOMEM;
	xstagent__domain_config__init(c);
	rv = xst_json_parse(c, text, &v, err, errlen);
	if (rv < 0)
		return rv;
	if (juint(v, "memory_mib", &n[0]) || juint(v, "maxmem_mib", &n[1]) ||
	    juint(v, "vcpus", &n[2]) || juint(v, "maxvcpus", &n[3]) ||
	    juint(v, "cpu_weight", &n[4]) || juint(v, "cpu_cap", &n[5]) || !jstr(v, "name") ||
	    !jstr(v, "type") || !jstr(v, "pool") || !jstr(v, "core") || !jstr(v, "on_poweroff") ||
	    !jstr(v, "on_reboot") || !jstr(v, "on_crash") || !jstr(v, "on_soft_reset") ||
	    n[2] > 4096 || n[3] > 4096 || n[4] > 65535 || n[5] > UINT32_MAX) {
		snprintf(err, errlen, "config record: missing or bad fields");
		return -EINVAL;
	}
	c->name = talloc_strdup(c, jstr(v, "name"));
	c->type = talloc_strdup(c, jstr(v, "type"));
	c->memory_mib = n[0];
	c->maxmem_mib = n[1];
	c->vcpus = n[2];
	c->maxvcpus = n[3];
	c->cpu_weight = n[4];
	c->cpu_cap = n[5];
	c->cpus = dupopt(c, jstr(v, "cpus"));
	c->pool = talloc_strdup(c, jstr(v, "pool"));
	c->kernel = dupopt(c, jstr(v, "kernel"));
	c->ramdisk = dupopt(c, jstr(v, "ramdisk"));
	c->cmdline = dupopt(c, jstr(v, "cmdline"));
	c->on_poweroff = talloc_strdup(c, jstr(v, "on_poweroff"));
	c->on_reboot = talloc_strdup(c, jstr(v, "on_reboot"));
	c->on_crash = talloc_strdup(c, jstr(v, "on_crash"));
	c->on_soft_reset = talloc_strdup(c, jstr(v, "on_soft_reset"));
	c->workload = dupopt(c, jstr(v, "workload"));
	c->core = talloc_strdup(c, jstr(v, "core"));
	u = jstr(v, "uuid");
	if (u) {
		c->uuid.data = talloc_size(c, 16);
		if (!c->uuid.data || parse_uuid(u, c->uuid.data) < 0) {
			snprintf(err, errlen, "config record: bad uuid");
			return -EINVAL;
		}
		c->uuid.len = 16;
		c->has_uuid = true;
	}
	talloc_free(v);
	*out = c;
	return 0;
}

static int write_run(struct stream_rx *r, uint64_t gfn, const uint8_t *data, uint32_t count)
{
	Xstdom__Request req = XSTDOM__REQUEST__INIT;
	Xstdom__WritePages wp = XSTDOM__WRITE_PAGES__INIT;
	Xstdom__Reply *rep;
	void *tmp;
	char *msg = NULL;
	int rv;

	if (!r->ram_tried) {
		/* the domain is paused and restoring: nobody else writes its memory */
		r->ram_tried = true;
		rv = adom_ram_map(r->d, true, r, &r->ram);
		if (rv == 0 && r->ram->npages < r->npages) {
			talloc_free(r->ram);
			rv = -EINVAL;
		}
		if (rv < 0) {
			r->ram = NULL;
			if (rv != -EOPNOTSUPP)
				agent_log(r->a, "domain %u: mapping its RAM: %s (pages go through "
					  "its domain process)", r->d->domid, strerror(-rv));
		}
	}
	if (r->ram) {
		memcpy(r->ram->mem + gfn * STREAM_PAGE, data, (size_t)count * STREAM_PAGE);
		return 0;
	}
	tmp = talloc_new(r);
	if (!tmp)
		return -ENOMEM;
	wp.first_gfn = gfn;
	wp.data.data = (uint8_t *)data;
	wp.data.len = (size_t)count * STREAM_PAGE;
	req.body_case = XSTDOM__REQUEST__BODY_WRITE_PAGES;
	req.write_pages = &wp;
	rv = adom_call(r->d, &req, AGENT_CALL_MS, tmp, &rep, &msg);
	if (rv < 0)
		rx_fail(r, rv, "writing pages at gfn %" PRIu64 ": %s", gfn, msg ? msg : strerror(-rv));
	talloc_free(tmp);
	return rv;
}

static int rx_config(struct stream_rx *r, const uint8_t *p, size_t len)
{
	Xstagent__DomainConfig *cfg;
	char err[256], *text, *msg = NULL;
	const char *here = r->a->core;
	uint64_t np;
	int rv;

	if (r->d)
		return rx_fail(r, -EINVAL, "a second config record");
	text = talloc_strndup(r, (const char *)p, len);
	if (!text)
		return -ENOMEM;
	rv = config_from_json(r, text, &cfg, err, sizeof(err));
	if (rv < 0)
		return rx_fail(r, rv, "%s", rv == -ENOMEM ? "out of memory" : err);
	if (strcmp(here, "auto") != 0 && strcmp(here, r->core) != 0)
		return rx_fail(r, -EOPNOTSUPP,
			       "core mismatch: the domain runs on the %s core, this host's agent "
			       "uses %s", r->core, here);
	/* The same core as the source, never "auto": a kvm guest must not land on sim. */
	cfg->core = talloc_strdup(cfg, r->core);
	if (!cfg->core)
		return -ENOMEM;
	rv = adom_create(r->a, cfg, ADOM_INCOMING, &r->d, &msg, r);
	if (rv < 0)
		return rx_fail(r, rv, "%s", msg ? msg : strerror(-rv));
	rv = stream_npages(r->d, &np);
	if (rv < 0)
		return rx_fail(r, rv, "domain %u: %s", r->d->domid, strerror(-rv));
	if (np != r->npages)
		return rx_fail(r, -EINVAL, "memory size mismatch: stream has %" PRIu64
			       " pages, the new domain %" PRIu64, r->npages, np);
	/* Created incoming: no kernel loaded, its memory all zero (core/hv.h), so pages not
	 * in the stream need no clearing. */
	return 0;
}

static int rx_pages(struct stream_rx *r, const uint8_t *p, size_t len)
{
	uint32_t count, i, run;
	const uint8_t *gfns, *data;
	int rv;

	if (!r->d)
		return rx_fail(r, -EINVAL, "pages before the config record");
	if (len < 8)
		return rx_fail(r, -EINVAL, "short pages record");
	count = get32(p);
	if (count == 0 || count > STREAM_BATCH || len != 8 + (size_t)count * (8 + STREAM_PAGE))
		return rx_fail(r, -EINVAL, "malformed pages record");
	gfns = p + 8;
	data = gfns + (size_t)count * 8;
	for (i = 0; i < count; i += run) {
		uint64_t g = get64(gfns + (size_t)i * 8);

		if (g >= r->npages)
			return rx_fail(r, -EINVAL, "page %" PRIu64 " beyond the guest's memory", g);
		if (g == r->d->ring_gfn) { /* the fresh ring, introduced to xstored, stays */
			run = 1;
			continue;
		}
		for (run = 1; i + run < count && get64(gfns + (size_t)(i + run) * 8) == g + run &&
			      g + run != r->d->ring_gfn && g + run < r->npages; run++)
			;
		rv = write_run(r, g, data + (size_t)i * STREAM_PAGE, run);
		if (rv < 0)
			return rv;
	}
	return 0;
}

static int rx_zero(struct stream_rx *r, const uint8_t *p, size_t len)
{
	static const uint8_t zero[STREAM_PAGE];
	uint32_t count, i;
	int rv;

	if (!r->d)
		return rx_fail(r, -EINVAL, "pages before the config record");
	if (len < 8 || (count = get32(p)) == 0 || len != 8 + (size_t)count * 8)
		return rx_fail(r, -EINVAL, "malformed zero-pages record");
	for (i = 0; i < count; i++) {
		uint64_t g = get64(p + 8 + (size_t)i * 8);

		if (g >= r->npages)
			return rx_fail(r, -EINVAL, "page %" PRIu64 " beyond the guest's memory", g);
		if (g == r->d->ring_gfn)
			continue;
		rv = write_run(r, g, zero, 1);
		if (rv < 0)
			return rv;
	}
	return 0;
}

/* Can the guest run on this host's CPUs?  Before any page moves. */
static int rx_cpu(struct stream_rx *r, const uint8_t *p, size_t len)
{
	Xstdom__Request req = XSTDOM__REQUEST__INIT;
	Xstdom__Reply *rep;
	void *tmp;
	char *msg = NULL;
	int rv;

	if (!r->d)
		return rx_fail(r, -EINVAL, "CPU record before the config record");
	tmp = talloc_new(r);
	if (!tmp)
		return -ENOMEM;
	req.body_case = XSTDOM__REQUEST__BODY_CPU_CHECK;
	req.cpu_check.data = (uint8_t *)p;
	req.cpu_check.len = len;
	rv = adom_call(r->d, &req, AGENT_CALL_MS, tmp, &rep, &msg);
	if (rv < 0) {
		char pre[32];
		size_t pl = (size_t)snprintf(pre, sizeof(pre), "domain %u: ", r->d->domid);

		if (msg && strncmp(msg, pre, pl) == 0)
			msg += pl; /* the domain is the incoming one: no need to name it */
		rx_fail(r, rv, "CPU mismatch: %s", msg ? msg : strerror(-rv));
	}
	talloc_free(tmp);
	return rv;
}

static int rx_state(struct stream_rx *r, const uint8_t *p, size_t len)
{
	Xstdom__Request req = XSTDOM__REQUEST__INIT;
	Xstdom__Reply *rep;
	ProtobufCMessage *m;
	void *tmp = talloc_new(r);
	char *msg = NULL;
	double t0;
	int rv;

	if (!tmp)
		return -ENOMEM;
	if (!r->d) {
		rv = rx_fail(r, -EINVAL, "state before the config record");
		goto out;
	}
	rv = xst_rpc_unpack(&xstdom__state_blob__descriptor, p, len, tmp, &m);
	if (rv < 0) {
		rx_fail(r, rv, "state record does not unpack");
		goto out;
	}
	req.body_case = XSTDOM__REQUEST__BODY_STATE_LOAD;
	req.state_load = (Xstdom__StateBlob *)m;
	t0 = agent_mono_s();
	rv = adom_call(r->d, &req, AGENT_CALL_MS, tmp, &rep, &msg);
	r->state_ms = (agent_mono_s() - t0) * 1e3;
	if (rv < 0)
		rx_fail(r, rv, "loading the vm state: %s", msg ? msg : strerror(-rv));
	else
		r->have_state = true;
out:
	talloc_free(tmp);
	return rv;
}

/* SET_PERMS payload for path from a GET_PERMS reply taken on the source: entries naming
 * the source domid name the new one. */
static char *perms_moved(void *ctx, const char *path, const char *perms, size_t plen,
			 uint32_t old, uint32_t new, size_t *len_out)
{
	char *out = talloc_strdup(ctx, path);
	size_t off, len;

	if (!out)
		return NULL;
	len = strlen(path) + 1;
	for (off = 0; off < plen;) {
		const char *e = perms + off;
		size_t el = strnlen(e, plen - off);
		char *end;
		unsigned long id;

		off += el + 1;
		if (el < 2)
			continue;
		id = strtoul(e + 1, &end, 10);
		out = talloc_realloc(ctx, out, char, len + el + 16);
		if (!out)
			return NULL;
		if (*end == '\0' && id == old)
			len += (size_t)sprintf(out + len, "%c%u", e[0], new) + 1;
		else
			len += (size_t)sprintf(out + len, "%.*s", (int)el, e) + 1;
	}
	*len_out = len;
	return out;
}

/* One node of a XENSTORE payload: its path relative to the domain's home, its value
 * and its permissions (docs/save-format.md). */
struct xs_ent {
	const uint8_t *rel, *val, *perms;
	uint32_t rl, vl, ml;
};

/* The node at *off of XENSTORE payload xs (len bytes); *off moves past it.  false at
 * the end, or at a node cut short (the rest is lost). */
static bool xs_ent_next(const uint8_t *xs, size_t len, size_t *off, struct xs_ent *e)
{
	size_t o = *off;

	if (o + 16 > len)
		return false;
	e->rl = get32(xs + o);
	e->vl = get32(xs + o + 4);
	e->ml = get32(xs + o + 8);
	if (o + 16 + (size_t)e->rl + e->vl + e->ml > len)
		return false;
	e->rel = xs + o + 16;
	e->val = e->rel + e->rl;
	e->perms = e->val + e->vl;
	*off = o + 16 + (size_t)e->rl + e->vl + e->ml;
	return true;
}

/* The node of relative path rel (rl bytes) in XENSTORE payload xs; false if absent. */
static bool xs_rec_find(const uint8_t *xs, size_t len, const uint8_t *rel, uint32_t rl,
			struct xs_ent *found)
{
	size_t off = 8;

	while (xs_ent_next(xs, len, &off, found))
		if (found->rl == rl && memcmp(found->rel, rel, rl) == 0)
			return true;
	return false;
}

/*
 * Recreate the guest's own nodes (data/..., device/...) that the layout did not, and
 * give every node of the subtree the permissions it had at the source (the source's
 * domid moved to the new one): one pipelined batch of READs to see which exist, one of
 * WRITEs and SET_PERMS.  With prev (a record recreated already, which this one
 * replaces): nodes whose value differs from prev's, or that prev lacked, are written
 * even where they exist.
 */
static void rx_xenstore(struct stream_rx *r, const uint8_t *prev, size_t prev_len)
{
	struct xs_batch_op ops[XS_BATCH_MAX / 3], wr[XS_BATCH_MAX];
	const uint8_t *vals[XS_BATCH_MAX / 3], *perms[XS_BATCH_MAX / 3];
	bool changed[XS_BATCH_MAX / 3];
	uint32_t vlens[XS_BATCH_MAX / 3], plens[XS_BATCH_MAX / 3], old;
	struct xs_ent e;
	size_t off = 8;
	unsigned int n, k, nw;
	bool more = true;

	if (r->xs_len < 8)
		return;
	old = get32(r->xs);
	while (more) {
		void *tmp = talloc_new(r);

		if (!tmp)
			return;
		for (n = 0; n < XS_BATCH_MAX / 3;) {
			struct xs_ent pe;
			char *path;

			more = xs_ent_next(r->xs, r->xs_len, &off, &e);
			if (!more)
				break;
			path = talloc_asprintf(tmp, "/local/domain/%u/%.*s", r->d->domid, (int)e.rl,
					       (const char *)e.rel);
			vals[n] = e.val;
			vlens[n] = e.vl;
			changed[n] = prev && (!xs_rec_find(prev, prev_len, e.rel, e.rl, &pe) ||
					      pe.vl != e.vl || memcmp(pe.val, e.val, e.vl) != 0);
			perms[n] = e.perms;
			plens[n] = e.ml;
			if (!path || strstr(path, "..") || strlen(path) + 1 + e.vl > XS_PAYLOAD_MAX)
				continue;
			ops[n] = (struct xs_batch_op){ .type = XS_READ, .payload = path,
						       .len = strlen(path) + 1 };
			n++;
		}
		nw = 0;
		if (xs_client_batch(r->a->xs, ops, n, tmp) == 0) {
			for (k = 0; k < n; k++) {
				size_t plen = ops[k].len, ml;
				char *buf;

				if (ops[k].err == -ENOENT || (ops[k].err == 0 && changed[k])) {
					/* not there (the layout did not write it): recreate;
					 * or changed at the source since prev */
					buf = talloc_size(tmp, plen + vlens[k] + 1);
					if (!buf)
						break;
					memcpy(buf, ops[k].payload, plen);
					memcpy(buf + plen, vals[k], vlens[k]);
					wr[nw++] = (struct xs_batch_op){ .type = XS_WRITE, .payload = buf,
									 .len = plen + vlens[k] };
				}
				if (!plens[k])
					continue;
				buf = perms_moved(tmp, ops[k].payload, (const char *)perms[k], plens[k],
						  old, r->d->domid, &ml);
				if (buf && ml <= XS_PAYLOAD_MAX)
					wr[nw++] = (struct xs_batch_op){ .type = XS_SET_PERMS,
									 .payload = buf, .len = ml };
			}
			if (xs_client_batch(r->a->xs, wr, nw, tmp) == 0)
				for (k = 0; k < nw; k++)
					if (wr[k].err < 0)
						agent_log(r->a, "domain %u: recreating %s: %s",
							  r->d->domid, (const char *)wr[k].payload,
							  strerror(-wr[k].err));
		}
		talloc_free(tmp);
	}
}

/* A later XENSTORE record replaces one applied already (a migration sends the subtree
 * before the pause and again only if it changed): nodes of the old one that the new one
 * lacks were removed at the source meanwhile, and go here too. */
static void rx_xs_forget(struct stream_rx *r, const uint8_t *xs, size_t len)
{
	struct xs_ent e, found;
	size_t off = 8;
	void *tmp = talloc_new(r);

	while (tmp && xs_ent_next(r->xs, r->xs_len, &off, &e)) {
		char *path;
		int rv;

		if (xs_rec_find(xs, len, e.rel, e.rl, &found))
			continue;
		path = talloc_asprintf(tmp, "/local/domain/%u/%.*s", r->d->domid, (int)e.rl,
				       (const char *)e.rel);
		if (!path || strstr(path, ".."))
			continue;
		rv = xs_client_request(r->a->xs, XS_RM, 0, path, strlen(path) + 1, NULL, 0, tmp,
				       NULL, NULL);
		if (rv < 0 && rv != -ENOENT)
			agent_log(r->a, "domain %u: removing %s: %s", r->d->domid, path,
				  strerror(-rv));
	}
	talloc_free(tmp);
}

/* XENSTORE: recreated at once when the domain exists (its vcpus do not run yet), else
 * at the end record. */
static int rx_xs_record(struct stream_rx *r, const uint8_t *p, size_t len)
{
	uint8_t *xs = talloc_memdup(r, p, len ? len : 1), *prev = NULL;
	size_t prev_len = 0;

	if (!xs)
		return -ENOMEM;
	if (r->d && r->xs && r->xs_applied) {
		rx_xs_forget(r, xs, len);
		prev = r->xs;
		prev_len = r->xs_len;
	} else {
		talloc_free(r->xs);
	}
	r->xs = xs;
	r->xs_len = len;
	r->xs_applied = false;
	if (r->d) {
		rx_xenstore(r, prev, prev_len);
		r->xs_applied = true;
	}
	talloc_free(prev);
	return 0;
}

/*
 * The loaded guest asks for a ring reset (as after a soft reset): INTRODUCE again,
 * without fds, makes xstored reset the ring it already holds.  Then the guest's watches
 * are registered again on its (reset) connection: paths under the source domain's home
 * moved to the new domid's; one already there (EEXIST) is fine.  All of it goes to
 * xstored as one pipelined batch (xstored serves a connection's requests in order: the
 * watches come after the reset that would drop them), not a round trip each.  Returns
 * the INTRODUCE's result; a watch that fails is logged.
 */
static int rx_ring_reset(struct stream_rx *r)
{
	struct xs_batch_op *ops;
	uint32_t old = 0, n = 0, i = 0, bad = 0, nops = 1, k, done;
	size_t off = 8, hl = 0;
	void *tmp = talloc_new(r);
	char home[32], dom[16], *intro;
	int rv = 0, il;

	if (!tmp)
		return -ENOMEM;
	if (r->xw) {
		old = get32(r->xw);
		n = get32(r->xw + 4);
		hl = (size_t)snprintf(home, sizeof(home), "/local/domain/%u", old);
	}
	snprintf(dom, sizeof(dom), "%u", r->d->domid);
	ops = talloc_zero_array(tmp, struct xs_batch_op, (size_t)n + 1);
	intro = talloc_size(tmp, 64);
	if (!ops || !intro) {
		talloc_free(tmp);
		return -ENOMEM;
	}
	il = snprintf(intro, 64, "%u%c%llu%c%u", r->d->domid, '\0',
		      (unsigned long long)r->d->ring_gfn, '\0', 1);
	ops[0] = (struct xs_batch_op){ .type = XS_INTRODUCE, .payload = intro,
				       .len = (size_t)il + 1 };
	for (i = 0; i < n && off + 8 <= r->xw_len; i++) {
		uint32_t pl = get32(r->xw + off), tl = get32(r->xw + off + 4);
		const char *ps = (const char *)r->xw + off + 8;
		char *path, *buf;
		size_t dl = strlen(dom), len;

		if (off + 8 + (size_t)pl + tl > r->xw_len)
			break;
		if (pl >= hl && memcmp(ps, home, hl) == 0 && (pl == hl || ps[hl] == '/'))
			path = talloc_asprintf(tmp, "/local/domain/%u%.*s", r->d->domid,
					       (int)(pl - hl), ps + hl);
		else
			path = talloc_strndup(tmp, ps, pl);
		off += 8 + (size_t)pl + tl;
		len = sizeof("domain-watch") + dl + 1 + (path ? strlen(path) + 1 : 0) + tl + 1;
		buf = path ? talloc_size(tmp, len) : NULL;
		if (!buf) {
			bad++;
			continue;
		}
		/* domain-watch \0 domid \0 path \0 token \0 */
		memcpy(buf, "domain-watch", sizeof("domain-watch"));
		memcpy(buf + sizeof("domain-watch"), dom, dl + 1);
		memcpy(buf + sizeof("domain-watch") + dl + 1, path, strlen(path) + 1);
		memcpy(buf + len - tl - 1, ps + pl, tl);
		buf[len - 1] = '\0';
		ops[nops++] = (struct xs_batch_op){ .type = XS_CONTROL, .payload = buf,
						    .len = len };
	}
	for (done = 0; done < nops && rv == 0; done += k) {
		k = nops - done < XS_BATCH_MAX ? nops - done : XS_BATCH_MAX;
		rv = xs_client_batch(r->a->xs, ops + done, k, tmp);
	}
	if (rv == 0)
		rv = ops[0].err;
	for (k = 1; rv == 0 && k < nops; k++) {
		if (ops[k].err < 0 && ops[k].err != -EEXIST) {
			const char *pl = (const char *)ops[k].payload + sizeof("domain-watch");

			pl += strlen(pl) + 1;
			agent_log(r->a, "domain %u: re-registering its watch %s (token %s): %s",
				  r->d->domid, pl, pl + strlen(pl) + 1, strerror(-ops[k].err));
			bad++;
		}
	}
	if (rv == 0 && i < n)
		agent_log(r->a, "domain %u: XS_WATCHES record cut short", r->d->domid);
	else if (rv == 0 && n)
		agent_log(r->a, "domain %u: %u xenstore watches carried over%s", r->d->domid,
			  n - bad, bad ? " (some failed)" : "");
	talloc_free(tmp);
	return rv;
}

static int rx_end(struct stream_rx *r, const uint8_t *p, size_t len)
{
	char *msg = NULL;
	double t[4];
	int rv;

	if (len != 8 || (!r->verified && get64(p) != r->hash))
		return rx_fail(r, -EINVAL, "checksum mismatch: the stream is corrupted");
	if (!r->d || !r->have_state)
		return rx_fail(r, -EINVAL, "stream ends without %s", r->d ? "vm state" : "a domain");
	if (r->verified && r->unchanged && (rv = r->unchanged(r->unchanged_arg)) < 0)
		return rx_fail(r, rv, "the file changed while it was being restored");
	t[0] = agent_mono_s();
	if (r->xs && !r->xs_applied)
		rx_xenstore(r, NULL, 0);
	t[1] = agent_mono_s();
	rv = rx_ring_reset(r);
	if (rv < 0)
		return rx_fail(r, rv, "re-introducing domain %u to xenstored: %s", r->d->domid,
			       strerror(-rv));
	t[2] = agent_mono_s();
	if (!r->paused) {
		rv = adom_call_empty(r->d, XSTDOM__REQUEST__BODY_UNPAUSE, r, NULL, &msg);
		if (rv < 0)
			return rx_fail(r, rv, "unpause: %s", msg ? msg : strerror(-rv));
	}
	t[3] = agent_mono_s();
	/* its config goes to the domain process once the answer is out (ctl.c) */
	r->a->save_config_after_reply = r->d->domid;
	agent_log(r->a, "domain %u: resumed after the end record in %.1f ms (xenstore nodes "
		  "%.1f, ring reset and watches %.1f, unpause %.1f)", r->d->domid,
		  (t[3] - t[0]) * 1e3, (t[1] - t[0]) * 1e3, (t[2] - t[1]) * 1e3,
		  (t[3] - t[2]) * 1e3);
	r->done = true;
	return 0;
}

static int rx_record(struct stream_rx *r, uint32_t type, const uint8_t *p, size_t len)
{
	uint64_t flags;
	char err[160];

	if (r->done)
		return rx_fail(r, -EINVAL, "data after the end record");
	if (!r->have_header) {
		if (type != REC_HEADER)
			return rx_fail(r, -EINVAL, "not an xst save stream (no header)");
		if (check_header(p, len, &r->npages, r->core, &flags, err, sizeof(err)) < 0)
			return rx_fail(r, -EINVAL, "%s", err);
		if (flags & STREAM_F_PAUSED)
			r->paused = true;
		r->have_header = true;
		return 0;
	}
	switch (type) {
	case REC_CONFIG: return rx_config(r, p, len);
	case REC_PAGES: return rx_pages(r, p, len);
	case REC_STATE: return rx_state(r, p, len);
	case REC_END: return rx_end(r, p, len);
	case REC_ZERO: return rx_zero(r, p, len);
	case REC_CPU: return rx_cpu(r, p, len);
	case REC_XS_WATCHES:
		if (len < 8)
			return rx_fail(r, -EINVAL, "XS_WATCHES record of %zu bytes", len);
		talloc_free(r->xw);
		r->xw = talloc_memdup(r, p, len);
		r->xw_len = len;
		return r->xw ? 0 : -ENOMEM;
	case REC_XENSTORE:
		return rx_xs_record(r, p, len);
	default:
		return rx_fail(r, -EINVAL, "unknown record type %u", type);
	}
}

static int rx_reserve(struct stream_rx *r, size_t need)
{
	if (need > r->cap) {
		size_t cap = need * 2;
		uint8_t *nb = talloc_realloc(r, r->buf, uint8_t, cap);

		if (!nb)
			return rx_fail(r, -ENOMEM, "out of memory");
		r->buf = nb;
		r->cap = cap;
	}
	return 0;
}

/*
 * Records are acted on straight from the caller's buffer when nothing is pending (a
 * migration's chunks end on record boundaries, a restore feeds the whole mapped file):
 * only a record cut by the end of a chunk is copied, to be completed by the next one.
 */
int stream_rx_feed(struct stream_rx *r, const uint8_t *buf, size_t len)
{
	const uint8_t *src;
	size_t off = 0, avail;
	int rv = 0;

	if (r->failed)
		return rx_fail(r, -EINVAL, "stream already failed");
	if (r->len == 0) {
		src = buf;
		avail = len;
	} else {
		rv = rx_reserve(r, r->len + len);
		if (rv < 0)
			return rv;
		memcpy(r->buf + r->len, buf, len);
		r->len += len;
		src = r->buf;
		avail = r->len;
	}
	while (avail - off >= HDR_LEN) {
		const uint8_t *h = src + off;
		uint32_t type = get32(h);
		uint64_t rl = get64(h + 8), total;

		if (rl > STREAM_MAX_RECORD || type < REC_HEADER || type > REC_LAST) {
			rv = rx_fail(r, -EINVAL, "corrupt record header");
			break;
		}
		total = HDR_LEN + pad8(rl);
		if (avail - off < total)
			break;
		rv = rx_record(r, type, h + HDR_LEN, rl);
		if (rv < 0)
			break;
		if (type != REC_END && !r->verified)
			r->hash = fnv(r->hash, h, total);
		off += total;
	}
	/* keep what is left (a record cut by the chunk's end) */
	if (src != buf) {
		memmove(r->buf, r->buf + off, avail - off);
		r->len = avail - off;
	} else if (off < avail) {
		if (rx_reserve(r, avail - off) == 0) {
			memcpy(r->buf, src + off, avail - off);
			r->len = avail - off;
		} else if (rv == 0) {
			rv = -ENOMEM;
		}
	}
	if (rv < 0) {
		rx_fail(r, rv, "%s", strerror(-rv));
		stream_rx_abort(r, r->error);
	}
	return rv;
}

void stream_rx_verified(struct stream_rx *r, int (*unchanged)(void *arg), void *arg)
{
	r->verified = true;
	r->unchanged = unchanged;
	r->unchanged_arg = arg;
}

double stream_rx_state_ms(const struct stream_rx *r)
{
	return r->state_ms;
}

bool stream_rx_done(const struct stream_rx *r)
{
	return r->done;
}

const char *stream_rx_error(const struct stream_rx *r)
{
	return r->error ? r->error : "incomplete stream";
}

struct adom *stream_rx_domain(const struct stream_rx *r)
{
	return r->done ? r->d : NULL;
}

/* The message table and the one place where every request is checked.
 *
 * Order (spec §2): unknown/server-only type -> ENOSYS; privileged-only message from
 * an unprivileged connection -> EACCES; tx_id naming no open transaction of this
 * connection -> ENOENT (WATCH/UNWATCH ignore tx_id); then the handler.  Handlers
 * return 0 after queueing their reply, or -errno, turned here into an ERROR reply.
 * Each request runs in its own talloc context, freed afterwards.  fds that came
 * with the request's bytes and were not taken by an INTRODUCE are closed. */
#include <errno.h>
#include <string.h>
#include <talloc.h>

#include "store/lu_stream.h"
#include "store/xstored.h"

#define F_PRIV 0x1 /* privileged connections only */
#define F_NOTX 0x2 /* tx_id ignored */

static const struct {
	const char *name;
	int (*fn)(struct req *r);
	unsigned int flags;
} msgs[XS_TYPE_COUNT] = {
    [XS_CONTROL] = {"CONTROL", do_control, F_PRIV},
    [XS_DIRECTORY] = {"DIRECTORY", do_directory, 0},
    [XS_READ] = {"READ", do_read, 0},
    [XS_GET_PERMS] = {"GET_PERMS", do_get_perms, 0},
    [XS_WATCH] = {"WATCH", do_watch, F_NOTX},
    [XS_UNWATCH] = {"UNWATCH", do_unwatch, F_NOTX},
    [XS_TRANSACTION_START] = {"TRANSACTION_START", do_txn_start, 0},
    [XS_TRANSACTION_END] = {"TRANSACTION_END", do_txn_end, 0},
    [XS_INTRODUCE] = {"INTRODUCE", do_introduce, F_PRIV},
    [XS_RELEASE] = {"RELEASE", do_release, F_PRIV},
    [XS_GET_DOMAIN_PATH] = {"GET_DOMAIN_PATH", do_get_domain_path, 0},
    [XS_WRITE] = {"WRITE", do_write, 0},
    [XS_MKDIR] = {"MKDIR", do_mkdir, 0},
    [XS_RM] = {"RM", do_rm, 0},
    [XS_SET_PERMS] = {"SET_PERMS", do_set_perms, 0},
    [XS_WATCH_EVENT] = {"WATCH_EVENT", NULL, 0},
    [XS_ERROR] = {"ERROR", NULL, 0},
    [XS_IS_DOMAIN_INTRODUCED] = {"IS_DOMAIN_INTRODUCED", do_is_domain_introduced, F_PRIV},
    [XS_RESUME] = {"RESUME", do_resume, F_PRIV},
    [XS_SET_TARGET] = {"SET_TARGET", do_set_target, F_PRIV},
    [XS_RESET_WATCHES] = {"RESET_WATCHES", do_reset_watches, 0},
    [XS_DIRECTORY_PART] = {"DIRECTORY_PART", do_directory_part, 0},
};

const char *msg_name(uint32_t type)
{
	if (type < XS_TYPE_COUNT && msgs[type].name)
		return msgs[type].name;
	return "UNKNOWN";
}

static int reply_error(struct req *r, int err)
{
	const char *name = xs_error_name(err);

	return conn_queue(r->conn, XS_ERROR, r->hdr.req_id, r->hdr.tx_id, name, strlen(name) + 1,
			  false);
}

int reply(struct req *r, const void *data, size_t len)
{
	if (len > XS_PAYLOAD_MAX)
		return -E2BIG;
	return conn_queue(r->conn, r->hdr.type, r->hdr.req_id, r->hdr.tx_id, data, len, false);
}

int reply_str(struct req *r, const char *s)
{
	return reply(r, s, strlen(s) + 1);
}

int reply_ok(struct req *r)
{
	return reply(r, "OK", 3);
}

unsigned int req_strings(const struct req *r, const char **v, unsigned int n)
{
	unsigned int count = 0;
	const char *p = r->data, *end = r->data + r->len;

	while (p < end) {
		const char *z = memchr(p, '\0', (size_t)(end - p));
		if (!z)
			break;
		if (count < n)
			v[count] = p;
		count++;
		p = z + 1;
	}
	return count;
}

const char *req_onearg(const struct req *r)
{
	if (r->len == 0 || r->data[r->len - 1] != '\0' ||
	    memchr(r->data, '\0', r->len) != r->data + r->len - 1)
		return NULL;
	return r->data;
}

void dispatch(struct conn *c, const struct xs_hdr *h, const char *payload)
{
	struct req r = {.conn = c, .hdr = *h, .data = payload, .len = h->len};
	int ret;

	if (trace_on())
		trace_msg("IN ", c, h, payload);
	if (lu_hold(c, h, payload))
		return; /* live-update pending: answered later (lu.c) */
	r.ctx = talloc_new(NULL);
	if (!r.ctx) {
		ret = -ENOMEM;
		goto out;
	}
	if (h->type >= XS_TYPE_COUNT || !msgs[h->type].fn) {
		ret = -ENOSYS;
		goto out;
	}
	if ((msgs[h->type].flags & F_PRIV) && !c->privileged) {
		ret = -EACCES;
		goto out;
	}
	if (!(msgs[h->type].flags & F_NOTX) && h->tx_id != 0) {
		r.txn = txn_find(c, h->tx_id);
		if (!r.txn) {
			ret = -ENOENT;
			goto out;
		}
	}
	ret = msgs[h->type].fn(&r);
out:
	if (ret < 0)
		reply_error(&r, -ret);
	if (h->type != XS_INTRODUCE && c->nfds)
		conn_close_fds(c);
	talloc_free(r.ctx);
}

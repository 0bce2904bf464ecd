/*
 * `xst save` / `xst restore`: the agent writes a domain's save stream to a file
 * (agent/stream.h, docs/save-format.md) and rebuilds a domain from one.
 *
 * Save: pause, every non-zero page, the xenstore subtree, the vm/vcpu state, end; then
 * destroy the domain, or unpause it for a checkpoint (-c).  A failed save removes the
 * partial file and leaves the domain as it was.  Restore checks the whole file (framing
 * and end checksum) before creating anything, then feeds it to the stream receiver.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <talloc.h>

#include "agent/agent.h"
#include "agent/stream.h"

static int failmsg(Xstagent__Reply *rep, void *ctx, int err, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));
static int failmsg(Xstagent__Reply *rep, void *ctx, int err, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	rep->message = talloc_vasprintf(ctx, fmt, ap);
	va_end(ap);
	return err < 0 ? err : -EIO;
}

/* The save file: each chunk's writeback starts as soon as it is written, so the fsync
 * that ends the save waits for the last chunk only, not the whole file. */
struct save_file {
	int fd;
	off_t off;
};

static int file_sink(void *arg, const uint8_t *buf, size_t len)
{
	struct save_file *f = arg;
	off_t start = f->off;

	while (len) {
		ssize_t n = write(f->fd, buf, len);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -errno;
		buf += n;
		len -= n;
		f->off += n;
	}
	/* a hint: fsync() below is what makes the file durable */
	if (sync_file_range(f->fd, start, f->off - start, SYNC_FILE_RANGE_WRITE) < 0 &&
	    errno != ESPIPE && errno != EINVAL)
		return -errno;
	return 0;
}

int save_save(struct agent *a, const Xstagent__Save *s, Xstagent__Reply *rep, void *ctx)
{
	struct adom *d = adom_find(a, s->dom);
	bool checkpoint = s->has_checkpoint && s->checkpoint, paused_by_us = false;
	struct stream_tx *t = NULL;
	struct save_file sf;
	Xstdom__Info *info;
	uint64_t npages;
	char *msg = NULL, *core;
	double t0 = agent_mono_s(), tm[5];
	int fd = -1, rv;

	if (!d)
		return failmsg(rep, ctx, -ENOENT, "domain \"%s\" does not exist", s->dom);
	if (d->state != ADOM_LIVE)
		return failmsg(rep, ctx, -EINVAL, "domain %u (%s) is shut down", d->domid, d->name);
	if (s->file[0] != '/')
		return failmsg(rep, ctx, -EINVAL, "%s: the agent needs an absolute path", s->file);
	rv = adom_info(d, ctx, &info);
	if (rv < 0)
		return failmsg(rep, ctx, rv, "domain %u: %s", d->domid, strerror(-rv));
	core = info->core;
	npages = info->mem_max_kib / (STREAM_PAGE / 1024);
	fd = open(s->file, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (fd < 0)
		return failmsg(rep, ctx, -errno, "%s: %s", s->file, strerror(errno));
	tm[0] = agent_mono_s();
	if (info->state != XSTDOM__VM_STATE__PAUSED) {
		rv = adom_call_empty(d, XSTDOM__REQUEST__BODY_PAUSE, ctx, NULL, &msg);
		if (rv < 0)
			goto fail;
		paused_by_us = true;
	}
	tm[1] = agent_mono_s();
	sf.fd = fd;
	sf.off = 0;
	rv = stream_tx_new(ctx, file_sink, &sf, &t);
	if (rv == 0)
		rv = stream_tx_header(t, core, npages, 0); /* restore runs it unless -p, as xl */
	if (rv == 0)
		rv = stream_tx_config(t, d);
	if (rv == 0)
		rv = stream_tx_cpu(t, d, &msg, ctx);
	if (rv == 0)
		rv = stream_tx_pages(t, d, npages, NULL, 0, false, &msg, ctx);
	tm[2] = agent_mono_s();
	if (rv == 0)
		rv = stream_tx_xenstore(t, d);
	if (rv == 0)
		rv = stream_tx_state(t, d, &msg, ctx);
	if (rv == 0)
		rv = stream_tx_end(t);
	tm[3] = agent_mono_s();
	if (rv == 0 && fsync(fd) < 0)
		rv = -errno;
	tm[4] = agent_mono_s();
	if (rv == 0 && close(fd) < 0) {
		fd = -1;
		rv = -errno;
	}
	fd = -1;
	if (rv < 0)
		goto fail;
	agent_log(a, "domain %u (%s) saved to %s: %" PRIu64 " pages (%" PRIu64 " zero), %" PRIu64
		  " bytes (%.1f ms: setup %.1f, pause %.1f, pages %.1f, xenstore and state %.1f, "
		  "fsync %.1f)", d->domid, d->name, s->file, t->pages_sent, t->pages_zero, t->bytes,
		  (tm[4] - t0) * 1e3, (tm[0] - t0) * 1e3, (tm[1] - tm[0]) * 1e3,
		  (tm[2] - tm[1]) * 1e3, (tm[3] - tm[2]) * 1e3, (tm[4] - tm[3]) * 1e3);
	rep->body_case = XSTAGENT__REPLY__BODY_TEXT;
	rep->text = talloc_asprintf(ctx, "saved domain %u (%s) to %s: %" PRIu64 " bytes, %" PRIu64
				    " pages (%" PRIu64 " zero pages skipped) in %.2f s", d->domid,
				    d->name, s->file, t->bytes, t->pages_sent, t->pages_zero,
				    agent_mono_s() - t0);
	if (checkpoint) {
		if (s->has_paused && s->paused)
			return 0;
		if (paused_by_us && (rv = adom_call_empty(d, XSTDOM__REQUEST__BODY_UNPAUSE, ctx, NULL, &msg)) < 0)
			return failmsg(rep, ctx, rv, "saved, but unpause failed: %s", msg);
		return 0;
	}
	/* saved and paused: destroyed right after the CLI has its answer (ctl.c), before
	 * any other request */
	a->destroy_after_reply = d;
	return 0;
fail:
	if (fd >= 0)
		close(fd);
	unlink(s->file);
	if (paused_by_us)
		adom_call_empty(d, XSTDOM__REQUEST__BODY_UNPAUSE, ctx, NULL, NULL);
	return failmsg(rep, ctx, rv, "saving domain %u to %s: %s", d->domid, s->file,
		       msg ? msg : strerror(-rv));
}

/* The restored file is mapped, checked once, then acted on in place: a rewrite after
 * the check (same inode: in-place writes, truncation) changes its size or times. */
struct restore_file {
	int fd;
	struct stat st;
};

static int restore_file_unchanged(void *arg)
{
	struct restore_file *f = arg;
	struct stat now;

	if (fstat(f->fd, &now) < 0)
		return -errno;
	if (now.st_size != f->st.st_size || now.st_mtim.tv_sec != f->st.st_mtim.tv_sec ||
	    now.st_mtim.tv_nsec != f->st.st_mtim.tv_nsec ||
	    now.st_ctim.tv_sec != f->st.st_ctim.tv_sec ||
	    now.st_ctim.tv_nsec != f->st.st_ctim.tv_nsec)
		return -ESTALE;
	return 0;
}

int save_restore(struct agent *a, const Xstagent__Restore *r, Xstagent__Reply *rep, void *ctx)
{
	struct stream_rx *rx;
	struct adom *d;
	struct restore_file f;
	uint8_t *map = MAP_FAILED;
	char err[200];
	double t0 = agent_mono_s();
	int rv;

	if (r->file[0] != '/')
		return failmsg(rep, ctx, -EINVAL, "%s: the agent needs an absolute path", r->file);
	f.fd = open(r->file, O_RDONLY | O_CLOEXEC);
	if (f.fd < 0)
		return failmsg(rep, ctx, -errno, "%s: %s", r->file, strerror(errno));
	if (fstat(f.fd, &f.st) < 0 || f.st.st_size == 0) {
		close(f.fd);
		return failmsg(rep, ctx, -EINVAL, "%s: not an xst save file (empty)", r->file);
	}
	map = mmap(NULL, f.st.st_size, PROT_READ, MAP_PRIVATE, f.fd, 0);
	if (map == MAP_FAILED) {
		rv = -errno;
		close(f.fd);
		return failmsg(rep, ctx, rv, "%s: %s", r->file, strerror(-rv));
	}
	rv = stream_verify(map, f.st.st_size, err, sizeof(err));
	if (rv < 0) {
		munmap(map, f.st.st_size);
		close(f.fd);
		return failmsg(rep, ctx, rv, "%s: %s", r->file, err);
	}
	rv = stream_rx_new(a, ctx, r->has_paused && r->paused, &rx);
	if (rv == 0) {
		/* stream_verify() above; the file is not checked again, only its times */
		stream_rx_verified(rx, restore_file_unchanged, &f);
		rv = stream_rx_feed(rx, map, (size_t)f.st.st_size); /* records read in place */
	}
	munmap(map, f.st.st_size);
	close(f.fd);
	if (rv < 0 || !stream_rx_done(rx)) {
		if (rv == 0)
			stream_rx_abort(rx, "incomplete");
		return failmsg(rep, ctx, rv < 0 ? rv : -EINVAL, "%s: %s", r->file,
			       stream_rx_error(rx));
	}
	d = stream_rx_domain(rx);
	agent_log(a, "domain %u (%s) restored from %s", d->domid, d->name, r->file);
	rep->body_case = XSTAGENT__REPLY__BODY_TEXT;
	rep->text = talloc_asprintf(ctx, "restored domain %u (%s) from %s in %.2f s%s", d->domid,
				    d->name, r->file, agent_mono_s() - t0,
				    r->has_paused && r->paused ? ", paused" : "");
	return 0;
}

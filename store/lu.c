/* Live update control flow (spec §9.1, docs/liveupdate.md).
 *
 * A session belongs to the connection that opened it (`-f <binary>` or the
 * stub-domain form `-b <size>` + `-d` chunks, optionally `-c <cmdline>`).  `-s`
 * is parked, never answered BUSY: from then on TRANSACTION_START from connections
 * without an open transaction is held (with everything that connection sends
 * after it), and the request is re-checked at every loop iteration and every
 * second.  It goes when no transaction is open, or after `-t` seconds with `-F`
 * (xst then carries the open transactions over instead of losing them);
 * otherwise it fails with C xenstored's reasons.
 *
 * Going happens in lu_poll(), between events (no request half-processed): the
 * listening and client sockets lose CLOEXEC, a pre-flight child is started gated
 * (`<new binary> <new args> --check-stream /proc/self/fd/N`, the gate pipe as its
 * stdin), the state stream with the `-s` OK appended to its connection's output is
 * written into the memfd N -- the child checks it as it is written, following the
 * watermarks sent down the gate -- and sealed, and the gate closes: the child must
 * finish the check and print "xstored-stream-ok" (a failed gated check is retried once
 * ungated; without a memfd -- none can be made, /proc is missing, or
 * XSTORED_LU_NO_MEMFD=1 is set -- the state file and an ordinary pre-flight are
 * used).
 * Only then does this process exec the new binary with `-U`.  Any failure before the exec
 * (or the exec itself) leaves this daemon serving and answers `-s` with the
 * reason; held requests are then processed in order. */
#include <errno.h>
#include <inttypes.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <talloc.h>
#include <time.h>
#include <unistd.h>

#include "store/lu_stream.h"

#define LU_HOLD_MAX 49152	 /* held bytes per connection (in_data_len is u16) */
#define LU_KERNEL_MAX (64 << 20) /* -b size limit */
#define LU_CHECK_TIMEOUT_MS 10000

struct lu_age {
	uint32_t conn_id;
	uint64_t since_ms;
};

struct lu_session {
	struct conn *conn;
	char *binary;
	char *kernel; /* -b/-d form */
	size_t ksize, kused;
	char *cmdline;
	bool started, force, go;
	unsigned int timeout;
	uint64_t start_ms;
	struct xs_hdr hdr; /* of the parked -s */
	struct lu_age *ages;
	unsigned int nages;
};

struct lu_held {
	struct lu_held *next, **pprev;
	struct conn *c;
	char *buf;
	size_t len;
};

static struct lu_session *lu;
static struct lu_held *held_list;
static int lu_argc;
static char **lu_argv;
static int lu_listen_fd = -1;

static uint64_t now_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000 + (uint64_t)ts.tv_nsec / 1000;
}

/* This process's CPU time (user + system), to tell work from waiting for a CPU. */
static uint64_t cpu_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
	return (uint64_t)ts.tv_sec * 1000000 + (uint64_t)ts.tv_nsec / 1000;
}

static uint64_t now_ms(void)
{
	return now_us() / 1000;
}

/* Milliseconds between two now_us() readings, for the trace. */
static double ms_since(uint64_t from, uint64_t to)
{
	return (double)(to - from) / 1000.0;
}

void lu_init(int argc, char **argv, int listen_fd)
{
	lu_argc = argc;
	lu_argv = argv;
	lu_listen_fd = listen_fd;
}

void lu_set_listener(int fd)
{
	lu_listen_fd = fd;
}

const char *lu_state_path(void *ctx, const char *socket_path)
{
	const char *rundir = getenv("XENSTORED_RUNDIR");
	const char *slash;

	if (rundir)
		return talloc_asprintf(ctx, "%s/state_dump", rundir);
	slash = strrchr(socket_path, '/');
	if (!slash)
		return talloc_strdup(ctx, "state_dump");
	return talloc_asprintf(ctx, "%.*s/state_dump", (int)(slash - socket_path), socket_path);
}

/* ---- held requests ---- */

static int held_destroy(struct lu_held *h)
{
	*h->pprev = h->next;
	if (h->next)
		h->next->pprev = h->pprev;
	return 0;
}

static struct lu_held *held_find(const struct conn *c)
{
	for (struct lu_held *h = held_list; h; h = h->next)
		if (h->c == c)
			return h;
	return NULL;
}

bool lu_hold(struct conn *c, const struct xs_hdr *h, const char *payload)
{
	struct lu_held *hd;
	char *nb;

	if (!lu || !lu->started)
		return false;
	hd = held_find(c);
	if (!hd) {
		if (h->type != XS_TRANSACTION_START || c->ntxns > 0)
			return false;
		hd = talloc_zero(c, struct lu_held);
		if (!hd)
			return false;
		hd->c = c;
		hd->next = held_list;
		if (held_list)
			held_list->pprev = &hd->next;
		hd->pprev = &held_list;
		held_list = hd;
		talloc_set_destructor(hd, held_destroy);
	}
	if (hd->len + sizeof(*h) + h->len > LU_HOLD_MAX) {
		log_err("live-update: connection %u sent too much while held, closing it", c->id);
		conn_kill(c);
		return true;
	}
	nb = talloc_realloc(hd, hd->buf, char, hd->len + sizeof(*h) + h->len);
	if (!nb) {
		conn_kill(c);
		return true;
	}
	hd->buf = nb;
	memcpy(nb + hd->len, h, sizeof(*h));
	memcpy(nb + hd->len + sizeof(*h), payload, h->len);
	hd->len += sizeof(*h) + h->len;
	return true;
}

void lu_held_input(const struct conn *c, const char **data, size_t *len)
{
	struct lu_held *h = held_find(c);

	*data = h ? h->buf : "";
	*len = h ? h->len : 0;
}

/* Session over without an exec: process what was held, in order. */
static void release_held(void)
{
	while (held_list) {
		struct lu_held *h = held_list;
		struct conn *c = h->c;
		char *saved = c->in;
		uint32_t saved_len = c->in_len;

		talloc_set_destructor(h, NULL);
		held_destroy(h);
		/* held messages precede the partial one being assembled in c->in */
		c->in = NULL;
		c->in_len = 0;
		if (!c->dead)
			conn_input(c, h->buf, h->len);
		if (!c->dead) {
			talloc_free(c->in);
			c->in = saved;
			c->in_len = saved_len;
		} else {
			talloc_free(saved);
		}
		talloc_free(h);
	}
}

static void session_end(const char *reply)
{
	struct lu_session *s = lu;

	if (!s)
		return;
	lu = NULL;
	if (reply && s->started && !s->conn->dead)
		conn_queue(s->conn, XS_CONTROL, s->hdr.req_id, s->hdr.tx_id, reply,
			   strlen(reply) + 1, false);
	talloc_free(s);
	release_held();
}

static void update_ages(uint64_t now);

/* ---- the control command ---- */

static int reply_text(struct req *r, const char *s)
{
	return reply_str(r, s);
}

static const char *lu_begin(struct req *r)
{
	if (lu)
		return "live-update session already active.";
	lu = talloc_zero(xsd_ctx, struct lu_session);
	if (!lu)
		return NULL;
	lu->conn = r->conn;
	lu->timeout = 60;
	return "OK";
}

/* "-d" carries binary data: parse the raw payload "live-update\0-d\0<n>\0<n bytes>". */
static int lu_data(struct req *r)
{
	const char *p = r->data, *end = r->data + r->len;
	unsigned long n;
	char *e;

	for (int i = 0; i < 2; i++) {
		const char *z = memchr(p, '\0', (size_t)(end - p));
		if (!z)
			return -EINVAL;
		p = z + 1;
	}
	n = strtoul(p, &e, 10);
	if (e == p || *e != '\0')
		return -EINVAL;
	p = e + 1;
	if (n > (size_t)(end - p))
		return -EINVAL;
	if (!lu || lu->conn != r->conn || !lu->kernel)
		return reply_text(r, "Not in live-update session.");
	if (n > lu->ksize - lu->kused)
		return reply_text(r, "Too much kernel data.");
	memcpy(lu->kernel + lu->kused, p, n);
	lu->kused += n;
	return reply_text(r, "OK");
}

static int lu_start(struct req *r, const char **a, unsigned int n)
{
	if (!lu || lu->conn != r->conn)
		return reply_text(r, "Not in live-update session.");
	if (lu->started)
		return reply_text(r, "live-update session already active.");
	for (unsigned int i = 1; i < n; i++) {
		if (strcmp(a[i], "-F") == 0) {
			lu->force = true;
		} else if (strcmp(a[i], "-t") == 0 && i + 1 < n) {
			lu->timeout = (unsigned int)atoi(a[++i]);
		} else {
			return -EINVAL;
		}
	}
	if (lu->kernel) {
		char *path;
		int ret;
		if (lu->kused < lu->ksize)
			return reply_text(r, "Kernel not complete.");
		path = talloc_asprintf(lu, "%s.lu-binary", lu_state_path(lu, opts.socket_path));
		if (!path)
			return -ENOMEM;
		unlink(path);
		ret = lu_file_write(path, lu->kernel, lu->ksize);
		if (ret == 0 && chmod(path, 0700) < 0)
			ret = -errno;
		if (ret < 0)
			return reply_text(r, "Error writing new binary.");
		lu->binary = path;
		talloc_free(lu->kernel);
		lu->kernel = NULL;
	}
	lu->started = true;
	lu->hdr = r->hdr;
	lu->start_ms = now_ms();
	update_ages(lu->start_ms); /* transactions open now count from the start */
	return 0;		   /* parked: answered by lu_tick()/lu_poll() or the new binary */
}

int lu_control(struct req *r, const char **a, unsigned int n)
{
	const char *res;

	if (n == 0)
		return -EINVAL;
	if (strcmp(a[0], "-d") == 0)
		return lu_data(r);
	if (n > 4)
		n = 4;
	if (strcmp(a[0], "-f") == 0 && n == 2) {
		struct stat st;
		if (stat(a[1], &st) < 0)
			return reply_text(r, "File not accessible.");
		if (!(st.st_mode & S_IXUSR) || !S_ISREG(st.st_mode))
			return reply_text(r, "File not executable.");
		res = lu_begin(r);
		if (!res)
			return -ENOMEM;
		if (strcmp(res, "OK") == 0 && !(lu->binary = talloc_strdup(lu, a[1]))) {
			TALLOC_FREE(lu);
			return -ENOMEM;
		}
		return reply_text(r, res);
	}
	if (strcmp(a[0], "-b") == 0 && n == 2) {
		char *e;
		unsigned long size = strtoul(a[1], &e, 10);
		if (*e || e == a[1])
			return -EINVAL;
		if (size == 0 || size > LU_KERNEL_MAX)
			return reply_text(r, "Too much kernel data.");
		res = lu_begin(r);
		if (!res)
			return -ENOMEM;
		if (strcmp(res, "OK") == 0) {
			lu->kernel = talloc_size(lu, size);
			lu->ksize = size;
			if (!lu->kernel) {
				TALLOC_FREE(lu);
				return -ENOMEM;
			}
		}
		return reply_text(r, res);
	}
	if (strcmp(a[0], "-c") == 0 && n == 2) {
		if (!lu || lu->conn != r->conn)
			return reply_text(r, "Not in live-update session.");
		talloc_free(lu->cmdline);
		lu->cmdline = talloc_strdup(lu, a[1]);
		return lu->cmdline ? reply_text(r, "OK") : -ENOMEM;
	}
	if (strcmp(a[0], "-s") == 0)
		return lu_start(r, a, n);
	if (strcmp(a[0], "-a") == 0 && n == 1) {
		if (!lu)
			return reply_text(r, "No live-update session active.");
		if (lu->conn != r->conn)
			return reply_text(r, "Not in live-update session.");
		session_end("Live-update aborted.");
		return reply_text(r, "OK");
	}
	return -EINVAL;
}

int lu_dump_control(struct req *r, const char **a, unsigned int n)
{
	char *buf;
	size_t len;
	int ret;

	if (n != 1)
		return -EINVAL;
	ret = lu_stream_build(r->ctx, lu_listen_fd, NULL, &buf, &len);
	if (ret == 0)
		ret = lu_file_write(a[0], buf, len);
	return ret < 0 ? ret : reply_str(r, "OK");
}

/* ---- deciding when to go ---- */

static bool any_txn(void)
{
	for (const struct conn *c = conn_list; c; c = c->next)
		if (c->ntxns)
			return true;
	return false;
}

static void update_ages(uint64_t now)
{
	unsigned int n = 0;
	struct lu_age *na;

	for (const struct conn *c = conn_list; c; c = c->next)
		n += c->ntxns ? 1 : 0;
	na = talloc_array(lu, struct lu_age, n ? n : 1);
	if (!na)
		return;
	n = 0;
	for (const struct conn *c = conn_list; c; c = c->next) {
		if (!c->ntxns)
			continue;
		na[n].conn_id = c->id;
		na[n].since_ms = now;
		for (unsigned int i = 0; i < lu->nages; i++)
			if (lu->ages[i].conn_id == c->id)
				na[n].since_ms = lu->ages[i].since_ms;
		n++;
	}
	talloc_free(lu->ages);
	lu->ages = na;
	lu->nages = n;
}

void lu_tick(void)
{
	uint64_t now = now_ms(), limit;
	bool all_long = true;
	char *why;

	if (!lu || !lu->started || lu->go)
		return;
	update_ages(now);
	if (lu->nages == 0) {
		lu->go = true;
		return;
	}
	limit = (uint64_t)lu->timeout * 1000;
	if (now - lu->start_ms < limit)
		return;
	for (unsigned int i = 0; i < lu->nages; i++)
		if (now - lu->ages[i].since_ms < limit)
			all_long = false;
	if (lu->force && all_long) {
		lu->go = true;
		return;
	}
	why = NULL;
	for (unsigned int i = 0; i < lu->nages; i++) {
		if (now - lu->ages[i].since_ms < limit)
			continue;
		why = talloc_asprintf(
		    lu, "%s\nDomain %u: %lu s",
		    why ? why : "Domains with long running transactions:", lu->ages[i].conn_id,
		    (unsigned long)((now - lu->ages[i].since_ms) / 1000));
	}
	session_end(why ? why : "Overlapping transactions");
}

/* ---- going ---- */

static void set_cloexec(bool on)
{
	int fds[2] = {lu_listen_fd, -1};

	for (int i = 0; i < 1; i++)
		if (fds[i] >= 0)
			fcntl(fds[i], F_SETFD, on ? FD_CLOEXEC : 0);
	for (const struct conn *c = conn_list; c; c = c->next) {
		int rfds[3];
		uint64_t gfn;
		if (c->is_ring && ring_export(c, rfds, &gfn) == 0) {
			for (int i = 0; i < 3; i++)
				fcntl(rfds[i], F_SETFD, on ? FD_CLOEXEC : 0);
		} else if (!c->is_ring && c->src.fd >= 0) {
			fcntl(c->src.fd, F_SETFD, on ? FD_CLOEXEC : 0);
		}
	}
}

/* New argv: original (or argv[0] + -c words), minus -U, plus tail[0..ntail). */
static char **new_argv(void *ctx, const char *const *tail, unsigned int ntail)
{
	char **v = talloc_array(ctx, char *,
				lu_argc + ntail + 4 + (lu->cmdline ? strlen(lu->cmdline) : 0));
	unsigned int n = 0;

	if (!v)
		return NULL;
	v[n++] = lu_argv[0];
	if (lu->cmdline) {
		char *cl = talloc_strdup(v, lu->cmdline), *save = NULL;
		for (char *w = cl ? strtok_r(cl, " \t", &save) : NULL; w;
		     w = strtok_r(NULL, " \t", &save))
			if (strcmp(w, "-U") && strcmp(w, "--live-update"))
				v[n++] = w;
	} else {
		for (int i = 1; i < lu_argc; i++)
			if (strcmp(lu_argv[i], "-U") && strcmp(lu_argv[i], "--live-update"))
				v[n++] = lu_argv[i];
	}
	for (unsigned int i = 0; i < ntail; i++)
		v[n++] = (char *)tail[i];
	v[n] = NULL;
	return v;
}

/* ---- the pre-flight ----
 * The new binary's check of the stream runs in a child spawned with posix_spawn
 * (vfork semantics: forking this process would copy the page tables of the whole
 * store and make its next writes copy-on-write faults).  With a memfd it is
 * started *gated* before the stream is built: XSTORED_CHECK_WAIT=1 makes it parse
 * its options and then check the stream as far as the watermarks on its stdin say
 * it is written, finishing at EOF, which comes once the stream is complete and
 * sealed; so its start-up and most of its check overlap the build (on the other
 * core).  A binary that does not know the gate checks too early and fails; any
 * failure of the gated check is
 * therefore retried once with an ordinary pre-flight of the complete stream, whose
 * verdict counts. */
struct check {
	pid_t pid;
	int out;  /* its stdout */
	int gate; /* its stdin's write end, or -1 */
	unsigned long followed; /* accepted: watermarks it checked up to before the end */
};

static int check_spawn(void *ctx, const char *state, bool gated, struct check *ck)
{
	const char *tail[] = {"--check-stream", state};
	char **argv = new_argv(ctx, tail, 2);
	int opipe[2], gpipe[2] = {-1, -1}, err;
	posix_spawn_file_actions_t fa;
	posix_spawnattr_t attr;
	sigset_t none;

	if (!argv || pipe2(opipe, O_CLOEXEC) < 0)
		return -ENOMEM;
	/* the gate also carries the writer's watermarks: never block the daemon on it */
	if (gated && (pipe2(gpipe, O_CLOEXEC) < 0 || fcntl(gpipe[1], F_SETFL, O_NONBLOCK) < 0)) {
		err = errno;
		if (gpipe[0] >= 0) {
			close(gpipe[0]);
			close(gpipe[1]);
		}
		close(opipe[0]);
		close(opipe[1]);
		return -err;
	}
	sigemptyset(&none);
	posix_spawn_file_actions_init(&fa);
	posix_spawnattr_init(&attr);
	posix_spawn_file_actions_adddup2(&fa, opipe[1], 1);
	if (gated)
		posix_spawn_file_actions_adddup2(&fa, gpipe[0], 0);
	posix_spawnattr_setsigmask(&attr, &none);
	posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSIGMASK);
	if (gated)
		setenv("XSTORED_CHECK_WAIT", "1", 1);
	err = posix_spawn(&ck->pid, lu->binary, &fa, &attr, argv, environ);
	unsetenv("XSTORED_CHECK_WAIT");
	posix_spawn_file_actions_destroy(&fa);
	posix_spawnattr_destroy(&attr);
	close(opipe[1]);
	if (gated)
		close(gpipe[0]);
	if (err) {
		close(opipe[0]);
		if (gated)
			close(gpipe[1]);
		return -err;
	}
	ck->out = opipe[0];
	ck->gate = gpipe[1];
	return 0;
}

/* Opens the gate (if any), collects the verdict: NULL if the stream was accepted. */
static const char *check_verdict(void *ctx, struct check *ck)
{
	char out[512];
	size_t got = 0;
	int status;
	uint64_t deadline = now_ms() + LU_CHECK_TIMEOUT_MS;

	if (ck->gate >= 0)
		close(ck->gate);
	for (;;) {
		struct pollfd p = {.fd = ck->out, .events = POLLIN};
		uint64_t now = now_ms();
		ssize_t n;
		if (now >= deadline || poll(&p, 1, (int)(deadline - now)) == 0) {
			kill(ck->pid, SIGKILL);
			break;
		}
		n = read(ck->out, out + got, sizeof(out) - 1 - got);
		if (n <= 0 && !(n < 0 && errno == EINTR))
			break;
		if (n > 0)
			got += (size_t)n;
		if (got == sizeof(out) - 1)
			break;
	}
	out[got] = '\0';
	close(ck->out);
	while (waitpid(ck->pid, &status, 0) < 0 && errno == EINTR)
		;
	if (WIFEXITED(status) && WEXITSTATUS(status) == 0 && strstr(out, "xstored-stream-ok")) {
		const char *f = strstr(out, " followed ");
		ck->followed = f ? strtoul(f + 10, NULL, 10) : 0;
		return NULL;
	}
	if (WIFEXITED(status) && WEXITSTATUS(status) == 127)
		return "the new binary could not be executed";
	if (strstr(out, "invalid stream"))
		return talloc_asprintf(ctx, "the new binary rejected the state: %s", out);
	if (WIFSIGNALED(status))
		return talloc_asprintf(ctx, "the new binary's check was killed (signal %d)",
				       WTERMSIG(status));
	return talloc_asprintf(ctx, "the new binary failed its check (exit %d)",
			       WIFEXITED(status) ? WEXITSTATUS(status) : -1);
}

/* A gated check that will not be asked: stop it. */
static void check_cancel(struct check *ck)
{
	if (ck->pid <= 0)
		return;
	kill(ck->pid, SIGKILL);
	if (ck->gate >= 0)
		close(ck->gate);
	close(ck->out);
	while (waitpid(ck->pid, NULL, 0) < 0 && errno == EINTR)
		;
	ck->pid = -1;
}

/* The ordinary pre-flight of a complete stream; NULL if it was accepted. */
static const char *preflight(void *ctx, const char *state)
{
	struct check ck;

	if (check_spawn(ctx, state, false, &ck) < 0)
		return "the new binary could not be executed";
	return check_verdict(ctx, &ck);
}

/* The stream is written straight into a sealed memfd that the pre-flight and the new
 * process open as /proc/self/fd/N (what an xst binary without memfd support reads
 * like a file), with the gated pre-flight started first; the state file is the
 * fallback.  Returns the state path (NULL: *err_out says why), *fd_out the memfd
 * or -1, *ck the gated check (pid -1: none). */
static const char *state_store(void *ctx, const struct lu_extra *extra, size_t *len_out,
			       int *fd_out, struct check *ck, int *err_out)
{
	const char *file;
	char *path = NULL, *buf;
	int fd, ret;

	*fd_out = -1;
	*err_out = 0;
	ck->pid = -1;
	/* XSTORED_LU_NO_MEMFD=1 (tests, or a host whose memfds misbehave): the file */
	fd = getenv("XSTORED_LU_NO_MEMFD") && strcmp(getenv("XSTORED_LU_NO_MEMFD"), "1") == 0
		 ? -ENOSYS
		 : lu_memfd_create();
	if (fd >= 0) {
		path = talloc_asprintf(ctx, "/proc/self/fd/%d", fd);
		if (!path || access(path, R_OK) < 0 || fcntl(fd, F_SETFD, 0) < 0) {
			close(fd);
			fd = -1;
		}
	}
	if (fd >= 0) {
		set_cloexec(false);
		if (check_spawn(ctx, path, true, ck) < 0)
			ck->pid = -1;
		ret = lu_stream_build_memfd(fd, lu_listen_fd, extra, ck->pid > 0 ? ck->gate : -1,
					    len_out);
		if (ret == 0) {
			*fd_out = fd;
			return path;
		}
		check_cancel(ck);
		set_cloexec(true);
		close(fd);
	}
	ret = lu_stream_build(ctx, lu_listen_fd, extra, &buf, len_out);
	if (ret < 0) {
		*err_out = ret;
		return NULL;
	}
	file = lu_state_path(ctx, opts.socket_path);
	if (!file || lu_file_write(file, buf, *len_out) < 0)
		file = NULL;
	talloc_free(buf);
	if (file)
		set_cloexec(false);
	return file;
}

static void state_drop(const char *state, int fd)
{
	if (fd >= 0)
		close(fd);
	else
		unlink(state);
}

static void activate(void)
{
	void *tmp = talloc_new(NULL);
	const char *state;
	char okmsg[sizeof(struct xs_hdr) + 3];
	struct xs_hdr h = lu->hdr;
	struct lu_extra extra = {.conn = lu->conn, .data = okmsg, .len = sizeof(okmsg)};
	const char *tail[] = {"-U"};
	const char *why, *how;
	char **argv, *msg, stamp[24], count[24];
	struct check ck = {.pid = -1, .out = -1, .gate = -1};
	size_t len;
	int ret, sfd;

	uint64_t t0 = now_us(), c0 = cpu_us(), t1, c1, t2;

	conn_flush_dirty();
	h.len = 3;
	memcpy(okmsg, &h, sizeof(h));
	memcpy(okmsg + sizeof(h), "OK", 3);
	state = state_store(tmp, &extra, &len, &sfd, &ck, &ret);
	if (!state && ret < 0) {
		msg = talloc_asprintf(tmp, "Dump state error: %s", strerror(-ret));
		session_end(msg ? msg : "Dump state error");
		goto out;
	}
	if (!state) {
		session_end("Dump state open error");
		goto out;
	}
	t1 = now_us();
	c1 = cpu_us();
	why = ck.pid > 0 ? check_verdict(tmp, &ck) : "no gated check";
	how = ck.pid <= 0 ? ""
	      : why	  ? " (gated check failed, checked again)"
			  : talloc_asprintf(tmp, " (gated, watermarks followed: %lu)", ck.followed);
	if (!how)
		how = " (gated)";
	if (why) /* not gated, or a binary without the gate: the ordinary pre-flight */
		why = preflight(tmp, state);
	t2 = now_us();
	if (trace_on())
		trace_printf("live-update: %zu bytes of state written%s in %.1f ms (cpu %.1f ms), "
			     "checked by the new binary in %.1f ms more%s\n",
			     len, sfd >= 0 ? " (memfd)" : "", ms_since(t0, t1), ms_since(c0, c1),
			     ms_since(t1, t2), how);
	if (why) {
		set_cloexec(true);
		state_drop(state, sfd);
		msg = talloc_asprintf(tmp, "Error activating new binary.\n%s", why);
		log_err("live-update: %s", why);
		session_end(msg ? msg : "Error activating new binary.");
		goto out;
	}
	argv = new_argv(tmp, tail, 1);
	/* XSTORED_LU_CHECKED: the pre-flight of this very binary accepted these sealed
	 * bytes, the restore need not check them again */
	snprintf(count, sizeof(count), "%lu", node_count());
	snprintf(stamp, sizeof(stamp), "%" PRIu64, now_us());
	if (argv && setenv("XSTORED_LU_STATE", state, 1) == 0 &&
	    setenv("XSTORED_LU_NODES", count, 1) == 0 &&
	    (sfd < 0 || setenv("XSTORED_LU_CHECKED", "1", 1) == 0) &&
	    setenv("XSTORED_LU_EXEC_US", stamp, 1) == 0) {
		fflush(NULL);
		trace_flush();
		execv(lu->binary, argv);
		log_err("live-update: exec %s: %s", lu->binary, strerror(errno));
	}
	unsetenv("XSTORED_LU_STATE");
	unsetenv("XSTORED_LU_NODES");
	unsetenv("XSTORED_LU_CHECKED");
	unsetenv("XSTORED_LU_EXEC_US");
	set_cloexec(true);
	state_drop(state, sfd);
	session_end("Error activating new binary.");
out:
	talloc_free(tmp);
}

void lu_poll(void)
{
	if (!lu)
		return;
	if (lu->conn->dead) {
		session_end(NULL);
		return;
	}
	if (!lu->started)
		return;
	if (!lu->go && !any_txn())
		lu->go = true;
	if (lu->go)
		activate();
}

int lu_startup(const char *path)
{
	void *tmp = talloc_new(NULL);
	const char *buf;
	char err[256] = "";
	size_t len;
	bool sealed = false, checked;
	unsigned long nodes;
	uint64_t exec_us;
	int ret, fd = -1;

	if (!tmp || !(path = talloc_strdup(tmp, path))) {
		talloc_free(tmp);
		return -ENOMEM;
	}
	ret = lu_file_map(tmp, path, &buf, &len, &sealed);
	if (ret < 0) {
		log_err("live-update: cannot read %s: %s", path, strerror(-ret));
		goto out;
	}
	/* a memfd handed over by the old process: close our inherited copy */
	if (sscanf(path, "/proc/self/fd/%d", &fd) == 1 && fd > 2)
		close(fd);
	else
		unlink(path);
	checked = sealed && getenv("XSTORED_LU_CHECKED") &&
		  strcmp(getenv("XSTORED_LU_CHECKED"), "1") == 0;
	exec_us = getenv("XSTORED_LU_EXEC_US") ? strtoull(getenv("XSTORED_LU_EXEC_US"), NULL, 10)
					       : 0;
	nodes = getenv("XSTORED_LU_NODES") ? strtoul(getenv("XSTORED_LU_NODES"), NULL, 10) : 0;
	unsetenv("XSTORED_LU_CHECKED");
	unsetenv("XSTORED_LU_STATE");
	unsetenv("XSTORED_LU_EXEC_US");
	unsetenv("XSTORED_LU_NODES");
	uint64_t t0 = now_us(), c0 = cpu_us();
	ret = lu_stream_restore(buf, len, checked, nodes, err, sizeof(err));
	if (ret < 0)
		log_err("live-update: %s: %s", path, err);
	else if (trace_on())
		trace_printf("live-update: exec and start-up %.1f ms, %zu bytes of state restored "
			     "in %.1f ms (cpu %.1f ms)%s\n",
			     exec_us && exec_us <= t0 ? ms_since(exec_us, t0) : -1.0, len,
			     ms_since(t0, now_us()), ms_since(c0, cpu_us()),
			     checked ? ", checked by the pre-flight" : "");
out:
	talloc_free(tmp);
	return ret;
}

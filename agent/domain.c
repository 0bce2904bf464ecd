/*
 * Domains: spawning xst-domain, the create handshake (docs/domain-process.md), the
 * ring handoff to xstored, destruction, guest shutdown actions, supervision and
 * re-adoption after an agent restart.
 *
 * Create, step by step:
 *   1. socketpair(SEQPACKET); posix_spawn xst-domain --handoff-fd 3
 *   2. wait for "ready" on the handoff socket
 *   3. dial ipc://R/dom-D.ipc, subscribe ipc://R/dom-D.events
 *   4. Request{create}: the domain process sends "ring gfn=N" + 3 fds first, then
 *      replies; the fds go to xstored with XS_INTRODUCE and are closed here
 *   5. write the xenstore layout (layout.c; xstored accepts the domain as a node
 *      owner once introduced), store/ring-ref and store/port
 * Any failure undoes what was done (kill the process, remove nodes, release).
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/pidfd.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <talloc.h>

#include "agent/agent.h"
#include "proto/rpc.h"
#include "store/xs_client.h"
#include "tools/xlcfg.h"

extern char **environ;

static int adom_free_destructor(struct adom *d)
{
	struct agent *a = d->a;

	if (d->prev)
		d->prev->next = d->next;
	else if (a->doms == d)
		a->doms = d->next;
	if (d->next)
		d->next->prev = d->prev;
	if (a->ndoms)
		a->ndoms--;
	return 0;
}

static struct adom *adom_new(struct agent *a, uint32_t domid)
{
	struct adom *d = talloc_zero(a, struct adom);
	struct adom **pp;

	if (!d)
		return NULL;
	d->a = a;
	d->domid = domid;
	d->sub_fd = -1;
	d->pid = -1;
	/* Keep the list sorted by domid: `xst list` shows it in that order. */
	for (pp = &a->doms; *pp && (*pp)->domid < domid; pp = &(*pp)->next)
		d->prev = *pp;
	d->next = *pp;
	if (d->next)
		d->next->prev = d;
	*pp = d;
	a->ndoms++;
	talloc_set_destructor(d, adom_free_destructor);
	return d;
}

struct adom *adom_by_id(struct agent *a, uint32_t domid)
{
	struct adom *d;

	for (d = a->doms; d; d = d->next)
		if (d->domid == domid)
			return d;
	return NULL;
}

struct adom *adom_find(struct agent *a, const char *ref)
{
	struct adom *d;
	uint64_t id;
	char *end;

	if (ref[0] >= '0' && ref[0] <= '9') {
		id = strtoull(ref, &end, 10);
		if (*end == '\0' && id <= UINT32_MAX)
			return adom_by_id(a, (uint32_t)id);
	}
	for (d = a->doms; d; d = d->next)
		if (strcmp(d->name, ref) == 0)
			return d;
	return NULL;
}

static uint32_t domid_alloc(struct agent *a)
{
	uint32_t i, id = a->next_domid;

	for (i = 0; i < AGENT_DOMID_MAX; i++) {
		if (id == 0 || id > AGENT_DOMID_MAX)
			id = 1;
		if (!adom_by_id(a, id)) {
			a->next_domid = id + 1;
			return id;
		}
		id++;
	}
	return 0;
}

static char *rpath(struct agent *a, void *ctx, uint32_t domid, const char *suffix)
{
	return talloc_asprintf(ctx, "%s/dom-%u.%s", a->rundir, domid, suffix);
}

/* Remove what a domain process leaves behind when it cannot clean up (kill -9). */
static void remove_files(struct agent *a, uint32_t domid)
{
	static const char *const sfx[] = {"state", "ipc", "console", "events"};
	unsigned int i;

	for (i = 0; i < 4; i++) {
		char *p = rpath(a, NULL, domid, sfx[i]);

		if (p)
			unlink(p);
		talloc_free(p);
	}
}

/* The last line the domain process logged before it died (its reason), without the
 * "xst-domain[pid]: " prefix; NULL if there is none. */
static char *dom_log_last_line(void *ctx, struct agent *a, uint32_t domid)
{
	char path[4096];

	snprintf(path, sizeof(path), "%s/dom-%u.log", a->rundir, domid);
	return dom_log_last_line_at(ctx, path, 0);
}

char *dom_log_last_line_at(void *ctx, const char *path, pid_t pid)
{
	char buf[512], prefix[40], *line = NULL, *p;
	FILE *f;

	snprintf(prefix, sizeof(prefix), "xst-domain[%d]: ", (int)pid);

	f = fopen(path, "re");
	if (!f)
		return NULL;
	while (fgets(buf, sizeof(buf), f)) {
		buf[strcspn(buf, "\n")] = '\0';
		if (!buf[0] || (pid > 0 && strncmp(buf, prefix, strlen(prefix)) != 0))
			continue;
		p = strstr(buf, "]: ");
		p = p && !strncmp(buf, "xst-domain[", 11) ? p + 3 : buf;
		talloc_free(line);
		line = talloc_strdup(ctx, p);
	}
	fclose(f);
	return line;
}

/* An answer's error as -errno, its message on *msg (when msg): "domain D: text". */
static int reply_status(struct adom *d, const Xstdom__Reply *rep, void *ctx, char **msg)
{
	if (!rep->error)
		return 0;
	if (msg)
		*msg = talloc_asprintf(ctx, "domain %u: %s", d->domid,
				       rep->message ? rep->message : strerror(-rep->error));
	return rep->error < 0 ? rep->error : -EIO;
}

int adom_call(struct adom *d, Xstdom__Request *req, int timeout_ms, void *ctx, Xstdom__Reply **rep,
	      char **msg)
{
	ProtobufCMessage *m;
	int rv;

	*rep = NULL;
	if (!d->rpc) {
		if (msg)
			*msg = talloc_asprintf(ctx, "domain %u has no domain process", d->domid);
		return -ESRCH;
	}
	/* A domain process that did not answer (SIGSTOPped, wedged) must not stall the agent
	 * for the full timeout on every call: until it answers again, wait briefly. */
	if (d->stuck && timeout_ms > AGENT_STUCK_MS)
		timeout_ms = AGENT_STUCK_MS;
	rv = xst_rpc_call_msg(d->rpc, &req->base, timeout_ms, &xstdom__reply__descriptor, ctx, &m);
	if (rv == -ETIMEDOUT && !d->stuck) {
		d->stuck = true;
		agent_log(d->a, "domain %u (%s): domain process does not answer; calls now wait "
				"%d ms at most until it does", d->domid, d->name, AGENT_STUCK_MS);
	} else if (rv != -ETIMEDOUT && d->stuck) {
		d->stuck = false;
		agent_log(d->a, "domain %u (%s): domain process answers again", d->domid,
			  d->name);
	}
	if (rv < 0) {
		if (msg)
			*msg = talloc_asprintf(ctx, "domain %u: domain process does not answer: %s",
					       d->domid, strerror(-rv));
		return rv;
	}
	*rep = (Xstdom__Reply *)m;
	return reply_status(d, *rep, ctx, msg);
}

int adom_call_empty(struct adom *d, Xstdom__Request__BodyCase body, void *ctx,
		    Xstdom__Reply **rep, char **msg)
{
	Xstdom__Request req = XSTDOM__REQUEST__INIT;
	Xstdom__Empty e = XSTDOM__EMPTY__INIT;
	Xstdom__Reply *r;

	req.body_case = body;
	req.pause = &e; /* every Empty member shares the oneof's union */
	return adom_call(d, &req, AGENT_CALL_MS, ctx, rep ? rep : &r, msg);
}

int adom_info(struct adom *d, void *ctx, Xstdom__Info **info)
{
	Xstdom__Request req = XSTDOM__REQUEST__INIT;
	Xstdom__Empty e = XSTDOM__EMPTY__INIT;
	Xstdom__Reply *rep;
	uint8_t *buf;
	size_t len;
	int rv;

	*info = NULL;
	req.body_case = XSTDOM__REQUEST__BODY_INFO;
	req.info = &e;
	rv = adom_call(d, &req, AGENT_QUERY_MS, ctx, &rep, NULL);
	if (rv == -ETIMEDOUT && d->info_cache) {
		ProtobufCMessage *m;

		/* Stale but better than nothing (xst list while the process is stopped). */
		rv = xst_rpc_unpack(&xstdom__info__descriptor, d->info_cache, d->info_cache_len,
				    ctx, &m);
		if (rv == 0)
			*info = (Xstdom__Info *)m;
		return rv;
	}
	if (rv < 0)
		return rv;
	if (rep->body_case != XSTDOM__REPLY__BODY_INFO)
		return -EPROTO;
	*info = rep->info;
	if (xst_rpc_pack(&rep->info->base, d, &buf, &len) == 0) {
		talloc_free(d->info_cache);
		d->info_cache = buf;
		d->info_cache_len = len;
	}
	return 0;
}

const char *adom_state_letters(struct adom *d, const Xstdom__Info *info, char buf[8])
{
	static const char reasons[] = "-rscwS";

	strcpy(buf, "------");
	if (!info) {
		buf[5] = 'd'; /* the process is gone: dying */
		return buf;
	}
	switch (info->state) {
	case XSTDOM__VM_STATE__RUNNING:
		buf[0] = 'r';
		break;
	case XSTDOM__VM_STATE__PAUSED:
		buf[2] = 'p';
		break;
	case XSTDOM__VM_STATE__SHUTDOWN:
		buf[3] = 's';
		if (info->has_shutdown_reason && info->shutdown_reason < 6)
			buf[4] = reasons[info->shutdown_reason];
		break;
	case XSTDOM__VM_STATE__DYING:
		buf[5] = 'd';
		break;
	default:
		buf[1] = 'b';
		break;
	}
	return buf;
}

/* Copy a config onto ctx (pack + unpack: one talloc tree). */
static Xstagent__DomainConfig *config_copy(const Xstagent__DomainConfig *c, void *ctx)
{
	ProtobufCMessage *m;
	uint8_t *buf;
	size_t len;

	if (xst_rpc_pack(&c->base, NULL, &buf, &len) < 0)
		return NULL;
	if (xst_rpc_unpack(&xstagent__domain_config__descriptor, buf, len, ctx, &m) < 0)
		m = NULL;
	talloc_free(buf);
	return (Xstagent__DomainConfig *)m;
}

static void vmconfig_fill(struct adom *d, Xstdom__VmConfig *vc, uint8_t *blob, size_t blen)
{
	const Xstagent__DomainConfig *c = d->cfg;

	xstdom__vm_config__init(vc);
	vc->domid = d->domid;
	vc->name = d->name;
	vc->has_uuid = true;
	vc->uuid.data = d->uuid;
	vc->uuid.len = 16;
	vc->mem_max_kib = c->maxmem_mib * 1024;
	vc->mem_target_kib = c->memory_mib * 1024;
	vc->vcpus_max = c->maxvcpus;
	vc->vcpus_online = c->vcpus;
	vc->kernel = c->kernel;
	vc->ramdisk = c->ramdisk;
	vc->cmdline = c->cmdline;
	vc->workload = c->workload;
	vc->has_sched_weight = true;
	vc->sched_weight = d->weight;
	vc->has_sched_cap = true;
	vc->sched_cap = d->cap;
	vc->has_toolstack = true;
	vc->toolstack.data = blob;
	vc->toolstack.len = blen;
}

int adom_save_config(struct adom *d)
{
	Xstdom__Request req = XSTDOM__REQUEST__INIT;
	Xstdom__VmConfig vc;
	Xstdom__Reply *rep;
	void *tmp = talloc_new(d);
	uint8_t *blob;
	size_t blen;
	char *msg = NULL;
	int rv;

	if (!tmp)
		return -ENOMEM;
	rv = xst_rpc_pack(&d->cfg->base, tmp, &blob, &blen);
	if (rv == 0) {
		vmconfig_fill(d, &vc, blob, blen);
		req.body_case = XSTDOM__REQUEST__BODY_SET_TOOLSTACK;
		req.set_toolstack = &vc;
		rv = adom_call(d, &req, AGENT_CALL_MS, tmp, &rep, &msg);
	}
	if (rv < 0)
		agent_log(d->a, "domain %u: saving the config: %s", d->domid,
			  msg ? msg : strerror(-rv));
	talloc_free(tmp);
	return rv;
}

int domain_spawn(struct agent *a, uint32_t domid, uint64_t spare_mib, const char *core,
		 pid_t *pid, int *handoff)
{
	posix_spawn_file_actions_t fa;
	char domid_s[24], *log;
	int sv[2], child, rv;
	char *argv[] = {(char *)a->domain_bin,
			"--rundir",
			(char *)a->rundir,
			domid ? "--domid" : "--spare",
			domid_s,
			"--core",
			(char *)core,
			"--handoff-fd",
			"3",
			"--log",
			NULL,
			NULL};

	*handoff = -1;
	if (domid) {
		snprintf(domid_s, sizeof(domid_s), "%u", domid);
		log = rpath(a, NULL, domid, "log");
	} else {
		/* a spare logs here until it becomes a domain (then dom-<domid>.log) */
		snprintf(domid_s, sizeof(domid_s), "%llu", (unsigned long long)spare_mib);
		log = talloc_asprintf(NULL, "%s/spare.log", a->rundir);
	}
	if (!log)
		return -ENOMEM;
	argv[10] = log;
	if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) < 0) {
		rv = -errno;
		talloc_free(log);
		return rv;
	}
	/* dup2 onto itself would keep FD_CLOEXEC: make sure the child's end is not 3. */
	child = fcntl(sv[1], F_DUPFD_CLOEXEC, 10);
	close(sv[1]);
	if (child < 0) {
		rv = -errno;
		close(sv[0]);
		talloc_free(log);
		return rv;
	}
	posix_spawn_file_actions_init(&fa);
	posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
	posix_spawn_file_actions_addopen(&fa, 1, "/dev/null", O_WRONLY, 0);
	posix_spawn_file_actions_addopen(&fa, 2, "/dev/null", O_WRONLY, 0);
	posix_spawn_file_actions_adddup2(&fa, child, 3);
	rv = -posix_spawn(pid, a->domain_bin, &fa, NULL, argv, environ);
	posix_spawn_file_actions_destroy(&fa);
	close(child);
	talloc_free(log);
	if (rv < 0) {
		close(sv[0]);
		return rv;
	}
	*handoff = sv[0];
	return 0;
}

int handoff_recv(int fd, int timeout_ms, char *buf, size_t len, int fds[3], int *nfds)
{
	struct pollfd pfd = {.fd = fd, .events = POLLIN};
	union {
		struct cmsghdr h;
		char b[CMSG_SPACE(3 * sizeof(int))];
	} cm;
	struct iovec iov = {.iov_base = buf, .iov_len = len - 1};
	struct msghdr mh = {
	    .msg_iov = &iov, .msg_iovlen = 1, .msg_control = cm.b, .msg_controllen = sizeof(cm.b)};
	struct cmsghdr *c;
	ssize_t n;
	int rv;

	*nfds = 0;
	do {
		rv = poll(&pfd, 1, timeout_ms);
	} while (rv < 0 && errno == EINTR);
	if (rv < 0)
		return -errno;
	if (rv == 0)
		return -ETIMEDOUT;
	n = recvmsg(fd, &mh, MSG_CMSG_CLOEXEC);
	if (n < 0)
		return -errno;
	for (c = CMSG_FIRSTHDR(&mh); c; c = CMSG_NXTHDR(&mh, c)) {
		if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_RIGHTS) {
			int k, cnt = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);

			for (k = 0; k < cnt; k++) {
				int f;

				memcpy(&f, CMSG_DATA(c) + k * sizeof(int), sizeof(int));
				if (*nfds < 3)
					fds[(*nfds)++] = f;
				else
					close(f);
			}
		}
	}
	if (n == 0)
		return -EPIPE;
	buf[n] = '\0';
	return 0;
}

static void kill_domain_process(struct adom *d)
{
	if (d->pid > 0) {
		kill(d->pid, SIGKILL);
		if (d->our_child)
			waitpid(d->pid, NULL, 0);
	}
	remove_files(d->a, d->domid);
}

int adom_dial(void *ctx, struct agent *a, const char *stem, struct xst_rpc **rpc,
	      struct xst_rpc **sub, int *sub_fd)
{
	char *ipc = talloc_asprintf(ctx, "ipc://%s/%s.ipc", a->rundir, stem);
	char *ev = talloc_asprintf(ctx, "ipc://%s/%s.events", a->rundir, stem);
	int rv, fd;

	if (!ipc || !ev)
		return -ENOMEM;
	rv = xst_rpc_dial(ctx, ipc, rpc);
	if (rv < 0)
		return rv;
	rv = xst_rpc_subscribe(ctx, ev, sub);
	if (rv < 0)
		return rv;
	fd = xst_rpc_poll_fd(*sub);
	if (fd < 0)
		return fd;
	*sub_fd = fd;
	return 0;
}

static int dom_connect(struct adom *d)
{
	char stem[32];

	snprintf(stem, sizeof(stem), "dom-%u", d->domid);
	return adom_dial(d, d->a, stem, &d->rpc, &d->sub, &d->sub_fd);
}

static void random_uuid(uint8_t u[16])
{
	if (getrandom(u, 16, 0) != 16) {
		uint64_t t = (uint64_t)time(NULL) ^ ((uint64_t)getpid() << 32);
		unsigned int i;

		for (i = 0; i < 16; i++)
			u[i] = (uint8_t)(t >> ((i % 8) * 8)) ^ (uint8_t)(i * 37);
	}
	u[6] = (u[6] & 0x0f) | 0x40; /* version 4 */
	u[8] = (u[8] & 0x3f) | 0x80; /* variant */
}

/*
 * `create` to a domain process taken from the spare, watching the process meanwhile: a
 * spare killed just before it was taken (still exiting when spare_take looked) would
 * leave the call waiting for AGENT_CREATE_MS.  -ESRCH when no answer came (the process
 * is gone, the connection reset, ...: the caller starts cold); else as adom_call.
 */
static int spare_create_call(struct adom *d, Xstdom__Request *req, void *ctx, Xstdom__Reply **rep,
			     char **msg)
{
	struct xst_rpc_async *as = NULL;
	struct pollfd pfd[2];
	ProtobufCMessage *m;
	uint8_t *buf, *rbuf;
	size_t len, rlen;
	int pidfd, efd = -1, rv;

	*rep = NULL;
	pidfd = pidfd_open(d->pid, 0);
	if (pidfd < 0) /* an old kernel: an ordinary call */
		return adom_call(d, req, AGENT_CREATE_MS, ctx, rep, msg);
	efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	rv = efd < 0 ? -errno : xst_rpc_pack(&req->base, ctx, &buf, &len);
	if (rv == 0)
		rv = xst_rpc_async_start(d->rpc, ctx, buf, len, AGENT_CREATE_MS, efd, &as);
	while (rv == 0 && !xst_rpc_async_done(as)) {
		pfd[0] = (struct pollfd){.fd = efd, .events = POLLIN};
		pfd[1] = (struct pollfd){.fd = pidfd, .events = POLLIN};
		if (poll(pfd, 2, -1) < 0 && errno != EINTR) {
			rv = -errno;
		} else if (pfd[0].revents) {
			uint64_t v;

			if (read(efd, &v, sizeof(v)) < 0 && errno != EAGAIN)
				rv = -errno;
		} else if (pfd[1].revents && !xst_rpc_async_done(as)) {
			rv = -ESRCH;
		}
	}
	if (rv == 0)
		rv = xst_rpc_async_result(as, ctx, &rbuf, &rlen);
	if (rv == 0)
		rv = xst_rpc_unpack(&xstdom__reply__descriptor, rbuf, rlen, ctx, &m);
	talloc_free(as); /* cancels a call still outstanding */
	close(pidfd);
	if (efd >= 0)
		close(efd);
	if (rv < 0) {
		/* No answer (killed: the connection reset, or the process is gone): nothing
		 * was done for the domain yet, the caller starts it cold. */
		agent_log(d->a, "domain %u: the spare process %d did not answer create: %s",
			  d->domid, (int)d->pid, rv == -ESRCH ? "it exited" : strerror(-rv));
		return -ESRCH;
	}
	*rep = (Xstdom__Reply *)m;
	return reply_status(d, *rep, ctx, msg);
}

/* The spare taken for d died before it answered: forget it, so d can start cold. */
static void spare_abandon(struct adom *d, int *handoff)
{
	struct agent *a = d->a;

	agent_log(a, "domain %u: starting cold instead", d->domid);
	if (*handoff >= 0)
		close(*handoff);
	*handoff = -1;
	kill_domain_process(d); /* reaps it; removes dom-D.* if it renamed them */
	spare_files_gone(a, d->pid);
	talloc_free(d->rpc);
	talloc_free(d->sub);
	d->rpc = d->sub = NULL;
	d->sub_fd = -1;
	d->pid = -1;
	d->our_child = false;
}

int adom_create(struct agent *a, const Xstagent__DomainConfig *cfg, unsigned int flags,
		struct adom **out, char **msg, void *ctx)
{
	bool paused = (flags & (ADOM_PAUSED | ADOM_INCOMING)) != 0;
	double tm[5] = { 0 }; /* ms: spawn, ready, connected, ring, done */
	Xstdom__Request req = XSTDOM__REQUEST__INIT;
	Xstdom__Create cr = XSTDOM__CREATE__INIT;
	Xstdom__VmConfig vc;
	Xstdom__Reply *rep;
	struct adom *d, *other;
	const char *core;
	char buf[128], *emsg = NULL;
	int handoff = -1, fds[3] = {-1, -1, -1}, nfds = 0, rv, i;
	unsigned long long gfn;
	bool introduced = false, layout = false, spare = false;
	uint8_t *blob;
	size_t blen;
	uint32_t domid;

	*out = NULL;
	*msg = NULL;
	if ((other = adom_find(a, cfg->name)) != NULL && strcmp(other->name, cfg->name) == 0) {
		*msg = talloc_asprintf(ctx, "domain name \"%s\" is already in use (domain %u)",
				       cfg->name, other->domid);
		return -EEXIST;
	}
	if (!pool_find(a, cfg->pool)) {
		*msg = talloc_asprintf(ctx, "no cpupool \"%s\"", cfg->pool);
		return -ENOENT;
	}
	if (cfg->maxvcpus == 0 || cfg->vcpus > cfg->maxvcpus || cfg->memory_mib > cfg->maxmem_mib) {
		*msg = talloc_asprintf(ctx, "inconsistent config for \"%s\"", cfg->name);
		return -EINVAL;
	}
	domid = domid_alloc(a);
	if (!domid) {
		*msg = talloc_strdup(ctx, "no free domain id");
		return -ENOSPC;
	}
	d = adom_new(a, domid);
	if (!d)
		return -ENOMEM;
	d->cfg = config_copy(cfg, d);
	if (!d->cfg) {
		talloc_free(d);
		return -ENOMEM;
	}
	d->name = talloc_strdup(d, cfg->name);
	if (cfg->has_uuid && cfg->uuid.len == 16) {
		memcpy(d->uuid, cfg->uuid.data, 16);
	} else {
		random_uuid(d->uuid);
		d->cfg->has_uuid = true;
		d->cfg->uuid.data = talloc_memdup(d->cfg, d->uuid, 16);
		d->cfg->uuid.len = 16;
	}
	xlcfg_uuid_format(d->uuid, d->uuid_str);
	d->weight = cfg->cpu_weight;
	d->cap = cfg->cpu_cap;
	d->affinity = talloc_array(d, char *, cfg->maxvcpus);
	d->console_path = rpath(a, d, domid, "console");
	if (!d->name || !d->cfg->uuid.data || !d->affinity || !d->console_path) {
		talloc_free(d);
		return -ENOMEM;
	}
	for (i = 0; i < (int)cfg->maxvcpus; i++)
		d->affinity[i] = talloc_strdup(d->affinity, cfg->cpus ? cfg->cpus : "all");
	core = strcmp(cfg->core, "auto") == 0 ? a->core : cfg->core;

	tm[0] = agent_mono_s() * 1e3;
	/* A warm spare process of this size if there is one (spare.c), else a cold start. */
	spare = spare_take(a, d, core, cfg->maxmem_mib, &handoff) == 0;
	if (spare) {
		tm[1] = tm[2] = agent_mono_s() * 1e3;
		goto connected;
	}
cold:
	rv = domain_spawn(a, domid, 0, core, &d->pid, &handoff);
	if (rv < 0) {
		emsg = talloc_asprintf(ctx, "cannot start %s: %s", a->domain_bin, strerror(-rv));
		goto fail;
	}
	d->our_child = true;
	rv = handoff_recv(handoff, 10000, buf, sizeof(buf), fds, &nfds);
	if (rv == 0 && strcmp(buf, "ready") != 0)
		rv = -EPROTO;
	if (rv < 0) {
		char *why = dom_log_last_line(ctx, a, domid);

		emsg = talloc_asprintf(ctx,
				       "domain process for domain %u did not start: %s; see "
				       "%s/dom-%u.log",
				       domid, why ? why : strerror(-rv), a->rundir, domid);
		goto fail;
	}
	tm[1] = agent_mono_s() * 1e3;
	rv = dom_connect(d);
	if (rv < 0) {
		emsg =
		    talloc_asprintf(ctx, "cannot connect to the domain process: %s", strerror(-rv));
		goto fail;
	}
	tm[2] = agent_mono_s() * 1e3;
connected:
	rv = xst_rpc_pack(&d->cfg->base, ctx, &blob, &blen);
	if (rv < 0)
		goto fail;
	vmconfig_fill(d, &vc, blob, blen);
	vc.has_start_paused = true;
	vc.start_paused = paused;
	if (flags & ADOM_INCOMING)
		cr.has_restoring = cr.restoring = true;
	cr.config = &vc;
	req.body_case = XSTDOM__REQUEST__BODY_CREATE;
	req.create = &cr;
	if (spare) {
		rv = spare_create_call(d, &req, ctx, &rep, &emsg);
		if (rv == -ESRCH) {
			spare_abandon(d, &handoff);
			spare = false;
			goto cold;
		}
	} else {
		rv = adom_call(d, &req, AGENT_CREATE_MS, ctx, &rep, &emsg);
	}
	if (rv < 0)
		goto fail;
	rv = handoff_recv(handoff, 5000, buf, sizeof(buf), fds, &nfds);
	if (rv == 0 && (nfds != 3 || sscanf(buf, "ring gfn=%llu", &gfn) != 1))
		rv = -EPROTO;
	if (rv < 0) {
		emsg = talloc_asprintf(ctx, "no xenstore ring from the domain process: %s",
				       strerror(-rv));
		goto fail;
	}
	d->ring_gfn = gfn;
	tm[3] = agent_mono_s() * 1e3;
	rv = xs_client_introduce(a->xs, domid, gfn, 1, fds);
	if (rv < 0) {
		emsg = talloc_asprintf(ctx, "xenstored refused to introduce domain %u: %s", domid,
				       strerror(-rv));
		goto fail;
	}
	introduced = true;
	/* After INTRODUCE: xstored accepts the domain as a node owner only once it knows
	 * it.  The guest retries until its nodes appear. */
	layout = true;
	rv = layout_write(a, d);
	if (rv < 0) {
		emsg = talloc_asprintf(ctx, "writing the xenstore layout: %s", strerror(-rv));
		goto fail;
	}
	rv = layout_set_ring(a, d);
	if (rv < 0) {
		emsg = talloc_asprintf(ctx, "writing store/ring-ref: %s", strerror(-rv));
		goto fail;
	}
	/* config cpus, within the domain's cpupool */
	rv = pool_apply(a, d, ctx, &emsg);
	if (rv < 0)
		goto fail;
	for (i = 0; i < nfds; i++)
		close(fds[i]);
	close(handoff);
	tm[4] = agent_mono_s() * 1e3;
	if (spare)
		agent_log(a, "domain %u (%s) created: uuid %s, core %s, pid %d%s, from the spare "
			  "(%.1f ms: spare taken %.1f, vm created %.1f, xenstore %.1f)", domid,
			  d->name, d->uuid_str, core, (int)d->pid, paused ? ", paused" : "",
			  tm[4] - tm[0], tm[1] - tm[0], tm[3] - tm[2], tm[4] - tm[3]);
	else
		agent_log(a, "domain %u (%s) created: uuid %s, core %s, pid %d%s (%.1f ms: "
			  "process up %.1f, connected %.1f, vm created %.1f, xenstore %.1f)",
			  domid, d->name, d->uuid_str, core, (int)d->pid,
			  paused ? ", paused" : "", tm[4] - tm[0], tm[1] - tm[0], tm[2] - tm[1],
			  tm[3] - tm[2], tm[4] - tm[3]);
	spare_note_create(a, core, cfg->maxmem_mib);
	*out = d;
	return 0;
fail:
	for (i = 0; i < nfds; i++)
		close(fds[i]);
	if (handoff >= 0)
		close(handoff);
	kill_domain_process(d);
	if (spare)
		spare_files_gone(a, d->pid); /* if it died before renaming them */
	if (introduced)
		xs_client_release(a->xs, domid);
	if (layout)
		layout_remove(a, domid, d->uuid_str);
	if (!emsg)
		emsg = talloc_asprintf(ctx, "creating domain %u: %s", domid, strerror(-rv));
	agent_log(a, "create %s failed%s: %s", cfg->name, spare ? " (on the spare)" : "", emsg);
	*msg = emsg;
	talloc_free(d);
	return rv < 0 ? rv : -EIO;
}

int adom_pin(struct adom *d, int vcpu, const char *cpus, void *ctx, char **msg)
{
	Xstdom__Request req = XSTDOM__REQUEST__INIT;
	Xstdom__VcpuPin vp = XSTDOM__VCPU_PIN__INIT;
	Xstdom__Reply *rep;
	void *tmp = talloc_new(ctx);
	char *m = NULL;
	int rv;

	if (!tmp)
		return -ENOMEM;
	vp.has_vcpu = true;
	vp.vcpu = vcpu;
	vp.cpus = (char *)cpus;
	req.body_case = XSTDOM__REQUEST__BODY_VCPU_PIN;
	req.vcpu_pin = &vp;
	rv = adom_call(d, &req, AGENT_CALL_MS, tmp, &rep, &m);
	if (rv < 0)
		*msg = talloc_asprintf(ctx, "pinning vcpus to %s: %s", cpus,
				       m ? m : strerror(-rv));
	talloc_free(tmp);
	return rv;
}

/* Tear down everything of a domain whose process is already gone or killed. */
static void adom_cleanup(struct adom *d)
{
	struct agent *a = d->a;
	int rv;

	rv = xs_client_release(a->xs, d->domid);
	if (rv < 0 && rv != -ENOENT && rv != -EINVAL && rv != -ESRCH)
		agent_log(a, "domain %u: xenstore release: %s", d->domid, strerror(-rv));
	layout_remove(a, d->domid, d->uuid_str);
}

int adom_destroy(struct adom *d, char **msg, void *ctx)
{
	struct agent *a = d->a;
	void *tmp = talloc_new(a);
	uint32_t domid = d->domid;
	int rv = adom_call_empty(d, XSTDOM__REQUEST__BODY_DESTROY, tmp, NULL, NULL);

	if (rv < 0) {
		agent_log(a, "domain %u: destroy request failed (%s): killing pid %d", domid,
			  strerror(-rv), (int)d->pid);
		kill_domain_process(d);
	} else if (d->our_child && d->pid > 0) {
		/* It removed its files and exits right after replying: reap it if it is gone
		 * already, else agent_supervise does within a second. */
		waitpid(d->pid, NULL, WNOHANG);
	}
	talloc_free(tmp);
	adom_cleanup(d);
	agent_log(a, "domain %u (%s) destroyed", domid, d->name);
	talloc_free(d);
	return 0;
}

static const char *action_for(const Xstagent__DomainConfig *c, int reason)
{
	switch (reason) {
	case XSTDOM__SHUTDOWN_REASON__POWEROFF:
		return c->on_poweroff;
	case XSTDOM__SHUTDOWN_REASON__REBOOT:
		return c->on_reboot;
	case XSTDOM__SHUTDOWN_REASON__CRASH:
	case XSTDOM__SHUTDOWN_REASON__WATCHDOG:
		return c->on_crash;
	case XSTDOM__SHUTDOWN_REASON__SOFT_RESET:
		return c->on_soft_reset;
	default:
		return "preserve"; /* suspend: the toolstack that asked will act */
	}
}

static const char *reason_name(int reason)
{
	static const char *const names[] = {"poweroff", "reboot",   "suspend",
					    "crash",	"watchdog", "soft_reset"};

	return reason >= 0 && reason < 6 ? names[reason] : "unknown";
}

static void put_le(uint8_t *p, uint64_t v, unsigned int n)
{
	unsigned int i;

	for (i = 0; i < n; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

static int write_full(int fd, const uint8_t *p, size_t len)
{
	while (len) {
		ssize_t n = write(fd, p, len);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -errno;
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

#define DUMP_BATCH 256 /* pages per read_pages request (the domain process's limit) */

/* Write guest memory to <dump_dir>/<name> (docs/agent.md "Core dumps"): a 64-byte header,
 * then every page from gfn 0 up to the static maximum.  Written to a temporary name and
 * renamed, so the file is complete or absent. */
static int adom_core_dump(struct adom *d, int reason, char **path_out, char **msg, void *ctx)
{
	struct agent *a = d->a;
	void *tmp = talloc_new(ctx);
	Xstdom__Info *info;
	uint8_t hdr[AGENT_DUMP_HDR] = {0};
	uint64_t npages, gfn;
	char *path, *part;
	int fd = -1, rv;

	if (!tmp)
		return -ENOMEM;
	path = talloc_asprintf(tmp, "%s/%s", a->dump_dir, d->name);
	part = talloc_asprintf(tmp, "%s/.%s.part", a->dump_dir, d->name);
	if (!path || !part) {
		rv = -ENOMEM;
		goto out;
	}
	rv = adom_info(d, tmp, &info);
	if (rv < 0) {
		*msg = talloc_asprintf(ctx, "domain info: %s", strerror(-rv));
		goto out;
	}
	npages = info->mem_max_kib / 4;
	if (mkdir(a->dump_dir, 0700) < 0 && errno != EEXIST) {
		rv = -errno;
		*msg = talloc_asprintf(ctx, "cannot create %s: %s", a->dump_dir, strerror(-rv));
		goto out;
	}
	fd = open(part, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (fd < 0) {
		rv = -errno;
		*msg = talloc_asprintf(ctx, "cannot create %s: %s", part, strerror(-rv));
		goto out;
	}
	memcpy(hdr, AGENT_DUMP_MAGIC, sizeof(AGENT_DUMP_MAGIC));
	put_le(hdr + 8, 1, 4);     /* version */
	put_le(hdr + 12, 4096, 4); /* page size */
	put_le(hdr + 16, d->domid, 4);
	put_le(hdr + 20, (uint64_t)reason, 4);
	put_le(hdr + 24, npages, 8);
	put_le(hdr + 32, (uint64_t)time(NULL), 8);
	memcpy(hdr + 40, d->uuid, 16);
	rv = write_full(fd, hdr, sizeof(hdr));
	for (gfn = 0; rv == 0 && gfn < npages; gfn += DUMP_BATCH) {
		Xstdom__Request req = XSTDOM__REQUEST__INIT;
		Xstdom__PageRange pr = XSTDOM__PAGE_RANGE__INIT;
		Xstdom__Reply *rep;
		void *t2 = talloc_new(tmp);
		uint32_t count = npages - gfn < DUMP_BATCH ? (uint32_t)(npages - gfn) : DUMP_BATCH;

		if (!t2) {
			rv = -ENOMEM;
			break;
		}
		pr.first_gfn = gfn;
		pr.count = count;
		req.body_case = XSTDOM__REQUEST__BODY_READ_PAGES;
		req.read_pages = &pr;
		rv = adom_call(d, &req, AGENT_CALL_MS, t2, &rep, msg);
		if (rv == 0 && (rep->body_case != XSTDOM__REPLY__BODY_PAGES ||
				rep->pages->data.len != (size_t)count * 4096))
			rv = -EPROTO;
		if (rv == 0)
			rv = write_full(fd, rep->pages->data.data, rep->pages->data.len);
		if (rv < 0 && !*msg)
			*msg = talloc_asprintf(ctx, "gfn %llu: %s", (unsigned long long)gfn,
					       strerror(-rv));
		else if (*msg)
			*msg = talloc_steal(ctx, *msg);
		talloc_free(t2);
	}
	if (rv == 0 && fsync(fd) < 0)
		rv = -errno;
	if (close(fd) < 0 && rv == 0)
		rv = -errno;
	fd = -1;
	if (rv == 0 && rename(part, path) < 0)
		rv = -errno;
	if (rv < 0) {
		unlink(part);
		if (!*msg)
			*msg = talloc_asprintf(ctx, "%s: %s", path, strerror(-rv));
		goto out;
	}
	*path_out = talloc_steal(ctx, path);
out:
	if (fd >= 0)
		close(fd);
	talloc_free(tmp);
	return rv;
}

/* Start a new domain from `cfg` (restart actions). */
static void restart_with(struct agent *a, Xstagent__DomainConfig *cfg)
{
	struct adom *nd;
	char *msg;
	int rv;

	rv = adom_create(a, cfg, 0, &nd, &msg, cfg);
	if (rv < 0)
		agent_log(a, "restarting %s failed: %s", cfg->name, msg ? msg : strerror(-rv));
	else
		agent_log(a, "%s restarted as domain %u", nd->name, nd->domid);
}

/* The guest stopped (reason) or its process died (dead).  May free d. */
static void act_on_shutdown(struct adom *d, int reason, bool dead)
{
	struct agent *a = d->a;
	char act[32];
	const char *action = act;
	Xstagent__DomainConfig *cfg;
	char *msg = NULL;
	bool restart;

	/* A copy: destroying d below frees its config. */
	snprintf(act, sizeof(act), "%s", action_for(d->cfg, reason));

	if (d->state == ADOM_PRESERVED)
		return;
	agent_log(a, "domain %u (%s) %s (%s): action %s", d->domid, d->name,
		  dead ? "domain process died" : "shut down", reason_name(reason), action);
	if (dead && (strcmp(action, "preserve") == 0 || strcmp(action, "soft-reset") == 0 ||
		     strcmp(action, "rename-restart") == 0))
		action = strcmp(action, "rename-restart") == 0 ? "restart" : "destroy";
	if (strcmp(action, "preserve") == 0) {
		d->state = ADOM_PRESERVED;
		return;
	}
	if (strcmp(action, "soft-reset") == 0) {
		void *tmp = talloc_new(a);
		int rv = adom_call_empty(d, XSTDOM__REQUEST__BODY_SOFT_RESET, tmp, NULL, &msg);

		if (rv < 0) {
			agent_log(a, "domain %u: soft reset: %s", d->domid, msg ? msg : strerror(-rv));
		} else {
			/* The reset guest starts its xenbus afresh: INTRODUCE again, without fds,
			 * makes xstored reset the ring it already holds. */
			rv = xs_client_introduce(a->xs, d->domid, d->ring_gfn, 1, NULL);
			if (rv < 0)
				agent_log(a, "domain %u: re-introducing after soft reset: %s",
					  d->domid, strerror(-rv));
		}
		talloc_free(tmp);
		return;
	}
	if (strncmp(action, "coredump-", 9) == 0) {
		char *path = NULL;
		void *tmp = talloc_new(a);

		msg = NULL;
		if (dead)
			agent_log(a, "domain %u: no core dump: its process is gone", d->domid);
		else if (!tmp || adom_core_dump(d, reason, &path, &msg, tmp) < 0)
			agent_log(a, "domain %u: core dump failed: %s", d->domid,
				  msg ? msg : "out of memory");
		else
			agent_log(a, "domain %u: core dumped to %s", d->domid, path);
		talloc_free(tmp);
		msg = NULL;
		action += 9;
	}
	if (strcmp(action, "rename-restart") != 0) {
		a->gone[a->gone_next].domid = d->domid;
		a->gone[a->gone_next].reason = reason;
		a->gone_next = (a->gone_next + 1) % AGENT_GONE_KEEP;
	}
	cfg = config_copy(d->cfg, a);
	restart = strcmp(action, "restart") == 0 || strcmp(action, "rename-restart") == 0;
	if (strcmp(action, "rename-restart") == 0) {
		/* Keep the old one under a new name, start a fresh one with the name. */
		char *old = talloc_asprintf(d, "%s-%u", d->name, d->domid);

		if (old) {
			d->name = old;
			d->cfg->name = old;
			layout_xs_write(a, talloc_asprintf(cfg, "/local/domain/%u/name", d->domid),
					old);
			adom_save_config(d);
		}
		d->state = ADOM_PRESERVED;
	} else if (dead) {
		adom_cleanup(d);
		remove_files(a, d->domid);
		talloc_free(d);
	} else {
		adom_destroy(d, &msg, a);
	}
	if (cfg && restart)
		restart_with(a, cfg);
	talloc_free(cfg);
}

void adom_events(struct adom *d)
{
	Xstdom__Request req = XSTDOM__REQUEST__INIT;
	Xstdom__WaitEvent we = XSTDOM__WAIT_EVENT__INIT;
	Xstdom__Reply *rep;
	struct agent *a = d->a;
	void *tmp = talloc_new(a);
	uint32_t domid = d->domid;
	size_t i;

	we.after_seq = d->last_seq;
	we.timeout_ms = 0;
	req.body_case = XSTDOM__REQUEST__BODY_WAIT_EVENT;
	req.wait_event = &we;
	if (!tmp || adom_call(d, &req, AGENT_QUERY_MS, tmp, &rep, NULL) < 0 ||
	    rep->body_case != XSTDOM__REPLY__BODY_EVENTS) {
		talloc_free(tmp);
		return;
	}
	for (i = 0; i < rep->events->n_event; i++) {
		Xstdom__Event *ev = rep->events->event[i];

		if (ev->seq <= d->last_seq)
			continue;
		d->last_seq = ev->seq;
		switch (ev->kind) {
		case XSTDOM__EVENT_KIND__EV_SHUTDOWN:
		case XSTDOM__EVENT_KIND__EV_FAIL:
			if (ev->detail)
				agent_log(a, "domain %u: %s", domid, ev->detail);
			act_on_shutdown(d,
					ev->kind == XSTDOM__EVENT_KIND__EV_FAIL
					    ? XSTDOM__SHUTDOWN_REASON__CRASH
					    : (ev->has_reason ? (int)ev->reason : 0),
					false);
			/* d may be gone now. */
			if (adom_by_id(a, domid) != d)
				goto out;
			break;
		case XSTDOM__EVENT_KIND__EV_PAUSED:
			agent_log(a, "domain %u paused", domid);
			break;
		case XSTDOM__EVENT_KIND__EV_UNPAUSED:
			agent_log(a, "domain %u unpaused", domid);
			break;
		case XSTDOM__EVENT_KIND__EV_SOFT_RESET:
			agent_log(a, "domain %u soft-reset", domid);
			break;
		default:
			break;
		}
	}
	if (rep->events->last_seq > d->last_seq)
		d->last_seq = rep->events->last_seq;
out:
	talloc_free(tmp);
}

void agent_supervise(struct agent *a)
{
	static unsigned int tick;
	struct adom *d, *next;
	pid_t pid;
	int status;

	while ((pid = waitpid(-1, &status, WNOHANG)) > 0) {
		for (d = a->doms; d; d = d->next)
			if (d->pid == pid)
				d->our_child = false; /* reaped: kill(pid, 0) now fails */
		spare_reaped(a, pid);
	}
	tick++;
	for (d = a->doms; d; d = next) {
		next = d->next;
		if (d->pid > 0 && kill(d->pid, 0) < 0 && errno == ESRCH) {
			uint32_t nid = next ? next->domid : 0;

			agent_log(a, "domain %u (%s): domain process %d is gone", d->domid, d->name,
				  (int)d->pid);
			d->pid = -1;
			act_on_shutdown(d, XSTDOM__SHUTDOWN_REASON__CRASH, true);
			/* The list may have changed (a restart adds one): find our place again. */
			next = nid ? adom_by_id(a, nid) : NULL;
			continue;
		}
		/* Events are pushed, but a subscriber may miss some: catch up now and then. */
		if ((d->domid + tick) % 10 == 0) {
			uint32_t nid = next ? next->domid : 0;

			adom_events(d);
			next = nid ? adom_by_id(a, nid) : NULL;
		}
	}
}

/* ---- re-adoption ---- */

static int read_file(void *ctx, const char *path, uint8_t **buf, size_t *len)
{
	struct stat st;
	ssize_t n;
	int fd = open(path, O_RDONLY | O_CLOEXEC), rv = 0;

	*buf = NULL;
	if (fd < 0)
		return -errno;
	if (fstat(fd, &st) < 0 || st.st_size > (1 << 20)) {
		close(fd);
		return -EFBIG;
	}
	*buf = talloc_size(ctx, st.st_size + 1);
	if (!*buf) {
		close(fd);
		return -ENOMEM;
	}
	n = read(fd, *buf, st.st_size);
	if (n != st.st_size)
		rv = n < 0 ? -errno : -EIO;
	*len = n > 0 ? (size_t)n : 0;
	close(fd);
	return rv;
}

/* A config for a domain whose toolstack blob is missing: from its VmConfig. */
static Xstagent__DomainConfig *config_from_vm(const Xstdom__VmConfig *vc, void *ctx)
{
	Xstagent__DomainConfig c;

	xstagent__domain_config__init(&c);
	c.name = vc->name;
	c.has_uuid = vc->has_uuid;
	c.uuid = vc->uuid;
	c.type = "pvh";
	c.memory_mib = vc->mem_target_kib / 1024;
	c.maxmem_mib = vc->mem_max_kib / 1024;
	c.vcpus = vc->vcpus_online;
	c.maxvcpus = vc->vcpus_max;
	c.cpu_weight = vc->has_sched_weight && vc->sched_weight ? vc->sched_weight : 256;
	c.cpu_cap = vc->sched_cap;
	c.pool = "Pool-0";
	c.kernel = vc->kernel;
	c.ramdisk = vc->ramdisk;
	c.cmdline = vc->cmdline;
	c.on_poweroff = "destroy";
	c.on_reboot = "restart";
	c.on_crash = "destroy";
	c.on_soft_reset = "soft-reset";
	c.workload = vc->workload;
	c.core = "auto";
	return config_copy(&c, ctx);
}

static int adopt_one(struct agent *a, const char *path)
{
	Xstdom__Request req = XSTDOM__REQUEST__INIT;
	Xstdom__Empty e = XSTDOM__EMPTY__INIT;
	Xstdom__DomainRecord *rec;
	Xstdom__Reply *rep;
	Xstdom__Info *info;
	ProtobufCMessage *m;
	struct adom *d;
	void *tmp = talloc_new(a);
	uint8_t *buf;
	size_t len;
	unsigned int i;
	int rv;

	if (!tmp)
		return -ENOMEM;
	rv = read_file(tmp, path, &buf, &len);
	if (rv == 0)
		rv = xst_rpc_unpack(&xstdom__domain_record__descriptor, buf, len, tmp, &m);
	if (rv < 0) {
		agent_log(a, "re-adoption: %s: %s", path, strerror(-rv));
		goto out;
	}
	rec = (Xstdom__DomainRecord *)m;
	if (adom_by_id(a, rec->domid)) {
		rv = -EEXIST;
		goto out;
	}
	if (kill((pid_t)rec->pid, 0) < 0 && errno == ESRCH) {
		char u[37] = "";

		agent_log(a, "re-adoption: domain %u: process %u is gone; cleaning up", rec->domid,
			  rec->pid);
		if (rec->config->has_uuid && rec->config->uuid.len == 16)
			xlcfg_uuid_format(rec->config->uuid.data, u);
		xs_client_release(a->xs, rec->domid);
		layout_remove(a, rec->domid, u[0] ? u : NULL);
		remove_files(a, rec->domid);
		rv = 0;
		goto out;
	}
	d = adom_new(a, rec->domid);
	if (!d) {
		rv = -ENOMEM;
		goto out;
	}
	d->pid = (pid_t)rec->pid;
	d->ring_gfn = rec->ring_gfn;
	d->console_path = talloc_strdup(d, rec->console_path);
	rv = dom_connect(d);
	if (rv == 0)
		rv = adom_info(d, tmp, &info);
	if (rv == 0) {
		req.body_case = XSTDOM__REQUEST__BODY_GET_CONFIG;
		req.get_config = &e;
		rv = adom_call(d, &req, AGENT_CALL_MS, tmp, &rep, NULL);
		if (rv == 0 && rep->body_case != XSTDOM__REPLY__BODY_CONFIG)
			rv = -EPROTO;
	}
	if (rv < 0) {
		agent_log(a, "re-adoption: domain %u (pid %u) does not answer: %s", rec->domid,
			  rec->pid, strerror(-rv));
		talloc_free(d);
		goto out;
	}
	if (rep->config->has_toolstack && rep->config->toolstack.len &&
	    xst_rpc_unpack(&xstagent__domain_config__descriptor, rep->config->toolstack.data,
			   rep->config->toolstack.len, d, &m) == 0)
		d->cfg = (Xstagent__DomainConfig *)m;
	else
		d->cfg = config_from_vm(rep->config, d);
	if (!d->cfg || !d->cfg->has_uuid || d->cfg->uuid.len != 16) {
		agent_log(a, "re-adoption: domain %u: unusable config", rec->domid);
		talloc_free(d);
		rv = -EPROTO;
		goto out;
	}
	d->name = talloc_strdup(d, d->cfg->name);
	memcpy(d->uuid, d->cfg->uuid.data, 16);
	xlcfg_uuid_format(d->uuid, d->uuid_str);
	d->weight = info->sched_weight;
	d->cap = info->sched_cap;
	d->last_seq = info->last_event_seq;
	d->affinity = talloc_array(d, char *, d->cfg->maxvcpus);
	if (!d->name || !d->affinity) {
		talloc_free(d);
		rv = -ENOMEM;
		goto out;
	}
	for (i = 0; i < d->cfg->maxvcpus; i++) {
		char *p = talloc_asprintf(tmp, "/libxl/%u/vcpu/%u/affinity", d->domid, i), *v;

		if (p && layout_xs_read(a, d->affinity, p, &v) == 0)
			d->affinity[i] = v;
		else
			d->affinity[i] = talloc_strdup(d->affinity, "all");
	}
	if (d->domid >= a->next_domid)
		a->next_domid = d->domid + 1;
	agent_log(a, "re-adopted domain %u (%s), pid %d, core %s", d->domid, d->name, (int)d->pid,
		  info->core);
	/* Act on a shutdown that happened while no agent was watching. */
	if (info->state == XSTDOM__VM_STATE__SHUTDOWN) {
		const char *act =
		    action_for(d->cfg, info->has_shutdown_reason ? (int)info->shutdown_reason : 0);

		if (strcmp(act, "preserve") == 0 || strcmp(act, "rename-restart") == 0)
			d->state = ADOM_PRESERVED;
		else
			act_on_shutdown(
			    d, info->has_shutdown_reason ? (int)info->shutdown_reason : 0, false);
	}
	rv = 0;
out:
	talloc_free(tmp);
	return rv;
}

int agent_adopt_all(struct agent *a)
{
	struct dirent *de;
	DIR *dir = opendir(a->rundir);
	unsigned int domid;
	char tail[16];

	if (!dir)
		return -errno;
	while ((de = readdir(dir)) != NULL) {
		char *path;

		if (sscanf(de->d_name, "dom-%u.%15s", &domid, tail) != 2 || strcmp(tail, "state"))
			continue;
		path = talloc_asprintf(a, "%s/%s", a->rundir, de->d_name);
		if (path)
			adopt_one(a, path);
		talloc_free(path);
	}
	closedir(dir);
	return 0;
}

/*
 * Control service of the domain process: one handler per xstdom.Request body, in one
 * table indexed by the oneof case.  The dispatcher checks "created yet?" once; each
 * handler fills the reply (allocated on the request's talloc context) and returns 0
 * or -errno with an optional message.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <talloc.h>

#include "core/dom.h"
#include "proto/domain.pb-c.h"

#define CREATE_TIMEOUT_MS 30000
#define WAIT_MAX_MS 60000
#define PAGES_MAX 256
#define PAGES_MAX_SKIP 2048 /* read_pages with skip_zero: 8 MiB reply at most */

struct call {
	struct dom *d;
	const Xstdom__Request *req;
	Xstdom__Reply *rep;
	void *ctx;        /* freed after the reply is sent */
	char msg[200];
	bool exit_after;  /* destroy: leave the loop after replying */
};

static int fail(struct call *c, int err, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
static int fail(struct call *c, int err, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(c->msg, sizeof(c->msg), fmt, ap);
	va_end(ap);
	return err;
}

/* ---- configuration ------------------------------------------------------------ */

static int config_from_pb(struct dom *d, const Xstdom__VmConfig *pc, char *why, size_t len)
{
	struct xst_vm_config *cfg = &d->cfg;

	memset(cfg, 0, sizeof(*cfg));
	if (pc->domid != d->domid) {
		snprintf(why, len, "config domid %u, process domid %u", pc->domid, d->domid);
		return -EINVAL;
	}
	if (!pc->name[0] || strlen(pc->name) > 64) {
		snprintf(why, len, "bad name");
		return -EINVAL;
	}
	if (pc->has_uuid && pc->uuid.len != 16) {
		snprintf(why, len, "uuid must be 16 bytes");
		return -EINVAL;
	}
	if (!pc->vcpus_max || pc->vcpus_max > 128 || !pc->vcpus_online ||
	    pc->vcpus_online > pc->vcpus_max) {
		snprintf(why, len, "vcpus %u of %u: need 1 <= online <= max <= 128",
			 pc->vcpus_online, pc->vcpus_max);
		return -EINVAL;
	}
	if (!pc->mem_max_kib || pc->mem_target_kib > pc->mem_max_kib) {
		snprintf(why, len, "memory target %llu KiB above maximum %llu KiB",
			 (unsigned long long)pc->mem_target_kib,
			 (unsigned long long)pc->mem_max_kib);
		return -EINVAL;
	}
	if (pc->has_toolstack && pc->toolstack.len > DOM_TOOLSTACK_MAX) {
		snprintf(why, len, "toolstack blob over %u bytes", DOM_TOOLSTACK_MAX);
		return -E2BIG;
	}
	cfg->domid = pc->domid;
	cfg->name = talloc_strdup(d, pc->name);
	if (pc->has_uuid)
		memcpy(cfg->uuid, pc->uuid.data, 16);
	cfg->mem_max_kib = pc->mem_max_kib;
	cfg->mem_target_kib = pc->mem_target_kib;
	cfg->vcpus_max = pc->vcpus_max;
	cfg->vcpus_online = pc->vcpus_online;
	cfg->kernel = pc->kernel ? talloc_strdup(d, pc->kernel) : NULL;
	cfg->ramdisk = pc->ramdisk ? talloc_strdup(d, pc->ramdisk) : NULL;
	cfg->cmdline = pc->cmdline ? talloc_strdup(d, pc->cmdline) : NULL;
	cfg->workload = pc->workload ? talloc_strdup(d, pc->workload) : NULL;
	cfg->start_paused = pc->has_start_paused && pc->start_paused;
	d->sched_weight = pc->has_sched_weight && pc->sched_weight ? pc->sched_weight : 256;
	d->sched_cap = pc->has_sched_cap ? pc->sched_cap : 0;
	if (pc->has_toolstack) {
		d->toolstack = talloc_memdup(d, pc->toolstack.data, pc->toolstack.len ? pc->toolstack.len : 1);
		d->toolstack_len = pc->toolstack.len;
	}
	if (!cfg->name || (pc->kernel && !cfg->kernel) || (pc->ramdisk && !cfg->ramdisk) ||
	    (pc->cmdline && !cfg->cmdline) || (pc->workload && !cfg->workload) ||
	    (pc->has_toolstack && !d->toolstack)) {
		snprintf(why, len, "out of memory");
		return -ENOMEM;
	}
	return 0;
}

/* The current configuration (targets as they are now) as a message on ctx. */
static Xstdom__VmConfig *config_to_pb(struct dom *d, void *ctx)
{
	Xstdom__VmConfig *pc = talloc_zero(ctx, Xstdom__VmConfig);
	struct xst_vm_info info;

	if (!pc)
		return NULL;
	xstdom__vm_config__init(pc);
	pc->domid = d->cfg.domid;
	pc->name = (char *)d->cfg.name;
	pc->has_uuid = true;
	pc->uuid.data = d->cfg.uuid;
	pc->uuid.len = 16;
	pc->mem_max_kib = d->cfg.mem_max_kib;
	pc->mem_target_kib = d->cfg.mem_target_kib;
	if (d->vm && xst_vm_info(d->vm, &info) == 0) {
		pc->mem_max_kib = info.mem_max_kib;
		pc->mem_target_kib = info.mem_target_kib;
	}
	pc->vcpus_max = d->cfg.vcpus_max;
	pc->vcpus_online = d->online;
	pc->kernel = (char *)d->cfg.kernel;
	pc->ramdisk = (char *)d->cfg.ramdisk;
	pc->cmdline = (char *)d->cfg.cmdline;
	pc->workload = (char *)d->cfg.workload;
	pc->has_start_paused = true;
	pc->start_paused = d->cfg.start_paused;
	pc->has_sched_weight = pc->has_sched_cap = true;
	pc->sched_weight = d->sched_weight;
	pc->sched_cap = d->sched_cap;
	if (d->toolstack) {
		pc->has_toolstack = true;
		pc->toolstack.data = d->toolstack;
		pc->toolstack.len = d->toolstack_len;
	}
	return pc;
}

/* Write <rundir>/dom-<domid>.state atomically. */
static int record_write(struct dom *d)
{
	Xstdom__DomainRecord rec = XSTDOM__DOMAIN_RECORD__INIT;
	void *tmp = talloc_new(NULL);
	char *path;
	uint8_t *buf;
	size_t len;
	int fd = -1, ret;

	if (!tmp)
		return -ENOMEM;
	rec.pid = getpid();
	rec.domid = d->domid;
	rec.core = (char *)xst_hv_name(d->hv);
	rec.ipc_url = d->ipc_url;
	rec.console_path = d->console_path;
	rec.ring_gfn = d->ring_gfn;
	rec.start_time_ns = d->start_time_ns;
	rec.config = config_to_pb(d, tmp);
	path = talloc_asprintf(tmp, "%s.tmp", d->state_path);
	if (!rec.config || !path) {
		ret = -ENOMEM;
		goto out;
	}
	ret = xst_rpc_pack(&rec.base, tmp, &buf, &len);
	if (ret < 0)
		goto out;
	fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0640);
	/* No fsync: the rename makes the file whole or absent for a reader, and the run
	 * directory does not outlive the host (tmpfs; after a crash no domain process is
	 * left to adopt).  An fsync here delayed every create's reply by 1-90 ms on disk. */
	if (fd < 0 || write(fd, buf, len) != (ssize_t)len) {
		ret = -errno;
		goto out;
	}
	if (rename(path, d->state_path) < 0)
		ret = -errno;
out:
	if (fd >= 0)
		close(fd);
	if (ret < 0)
		dom_log("state file %s: %s", d->state_path, strerror(-ret));
	talloc_free(tmp);
	return ret;
}

/* ---- handoff ------------------------------------------------------------------ */

static int handoff_ring(struct dom *d)
{
	struct xst_xs_ring ring;
	char text[64];
	struct iovec iov;
	union {
		struct cmsghdr h;
		char buf[CMSG_SPACE(3 * sizeof(int))];
	} u;
	struct msghdr mh = {0};
	struct cmsghdr *cm;
	int fds[3], ret;

	ret = xst_vm_xs_ring(d->vm, &ring);
	if (ret < 0)
		return ret;
	d->ring_gfn = ring.offset / XST_PAGE_SIZE;
	if (d->handoff_fd < 0)
		return 0;
	fds[0] = ring.mem_fd;
	fds[1] = ring.kick_fd;
	fds[2] = ring.notify_fd;
	snprintf(text, sizeof(text), "ring gfn=%llu", (unsigned long long)d->ring_gfn);
	iov.iov_base = text;
	iov.iov_len = strlen(text);
	memset(&u, 0, sizeof(u));
	mh.msg_iov = &iov;
	mh.msg_iovlen = 1;
	mh.msg_control = u.buf;
	mh.msg_controllen = sizeof(u.buf);
	cm = CMSG_FIRSTHDR(&mh);
	cm->cmsg_level = SOL_SOCKET;
	cm->cmsg_type = SCM_RIGHTS;
	cm->cmsg_len = CMSG_LEN(sizeof(fds));
	memcpy(CMSG_DATA(cm), fds, sizeof(fds));
	if (sendmsg(d->handoff_fd, &mh, MSG_NOSIGNAL) < 0)
		return -errno;
	close(d->handoff_fd);
	d->handoff_fd = -1;
	return 0;
}

/* ---- handlers ------------------------------------------------------------------ */

static double mono_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

static int h_create(struct call *c)
{
	struct dom *d = c->d;
	const Xstdom__Create *cr = c->req->create;
	struct xst_vm *vm;
	bool prepared = false;
	double t[3];
	unsigned int i;
	int ret;

	if (d->state != DOM_CREATED)
		return fail(c, -EEXIST, "domain already created");
	if (!cr->config)
		return fail(c, -EINVAL, "create without config");
	if (d->spare) {
		ret = dom_take(d, cr->config->domid, c->msg, sizeof(c->msg));
		if (ret < 0)
			return ret;
	}
	ret = config_from_pb(d, cr->config, c->msg, sizeof(c->msg));
	if (ret < 0)
		return ret;
	if (cr->has_restoring && cr->restoring)
		d->cfg.start_paused = d->cfg.incoming = true;
	vm = NULL;
	t[0] = mono_ms();
	if (d->spare_vm && d->cfg.mem_max_kib == d->spare_vm->prepared_kib) {
		/* a spare's vm: only the kernel is left to load */
		vm = d->spare_vm;
		d->spare_vm = NULL;
		prepared = true;
		ret = xst_vm_create_prepared(vm, &d->cfg);
		if (ret < 0) {
			talloc_free(vm);
			vm = NULL;
			return fail(c, ret, "%s: vm_create: %s", xst_hv_name(d->hv),
				    strerror(-ret));
		}
	} else {
		/* no spare vm, or of another size: it goes, a new one is made */
		talloc_free(d->spare_vm);
		d->spare_vm = NULL;
		ret = xst_vm_create(d->hv, &d->cfg, &vm);
		if (ret < 0)
			return fail(c, ret, "%s: vm_create: %s", xst_hv_name(d->hv),
				    strerror(-ret));
	}
	__atomic_store_n(&d->vm, vm, __ATOMIC_RELEASE);
	xst_vm_console_attach(vm, console_output, d->con);
	ret = xst_vm_sched_set(vm, d->sched_weight, d->sched_cap);
	if (ret < 0 && ret != -EOPNOTSUPP)
		return fail(c, ret, "sched weight %u cap %u: %s", d->sched_weight, d->sched_cap,
			    strerror(-ret));
	d->online = d->cfg.vcpus_online;
	pthread_mutex_lock(&d->lock);
	d->state = d->cfg.start_paused ? DOM_PAUSED : DOM_RUNNING;
	pthread_mutex_unlock(&d->lock);
	t[1] = mono_ms();
	/* threads start parked if paused; otherwise they run as soon as they exist */
	ret = dom_vcpus_start(d);
	if (ret < 0)
		goto undo;
	ret = dom_sched_apply(d);
	if (ret < 0)
		goto undo;
	ret = handoff_ring(d);
	if (ret < 0) {
		fail(c, ret, "ring handoff: %s", strerror(-ret));
		goto undo;
	}
	t[2] = mono_ms();
	d->start_time_ns = dom_realtime_ns();
	record_write(d);
	dom_log("domain %u (%s) created on %s, %u/%u vcpus, %llu KiB%s (vm %.2f ms%s, vcpus "
		"%.2f ms, state file %.2f ms)", d->domid, d->cfg.name, xst_hv_name(d->hv),
		d->online, d->cfg.vcpus_max, (unsigned long long)d->cfg.mem_max_kib,
		d->cfg.start_paused ? ", paused" : "", t[1] - t[0], prepared ? " on the spare's" : "",
		t[2] - t[1], mono_ms() - t[2]);
	return 0;
undo:
	dom_vcpus_stop(d);
	__atomic_store_n(&d->vm, NULL, __ATOMIC_RELEASE);
	talloc_free(vm);
	for (i = 0; i < d->nvcpus; i++)
		d->vcpus[i].vcpu = NULL;
	talloc_free(d->vcpus);
	d->vcpus = NULL;
	d->nvcpus = 0;
	d->quit = false;
	pthread_mutex_lock(&d->lock);
	d->state = DOM_CREATED;
	pthread_mutex_unlock(&d->lock);
	if (!c->msg[0])
		fail(c, ret, "vcpus: %s", strerror(-ret));
	return ret;
}

static int h_info(struct call *c)
{
	struct dom *d = c->d;
	Xstdom__Info *in = talloc_zero(c->ctx, Xstdom__Info);
	struct xst_vm_info vi = {0};

	if (!in)
		return -ENOMEM;
	xstdom__info__init(in);
	if (d->vm)
		xst_vm_info(d->vm, &vi);
	pthread_mutex_lock(&d->lock);
	in->state = (Xstdom__VmState)d->state;
	if (d->state == DOM_SHUTDOWN) {
		in->has_shutdown_reason = true;
		in->shutdown_reason = d->shutdown_reason;
	}
	in->last_event_seq = d->last_seq;
	pthread_mutex_unlock(&d->lock);
	in->cpu_time_ns = vi.cpu_time_ns;
	in->mem_kib = vi.mem_kib;
	in->mem_max_kib = d->vm ? vi.mem_max_kib : 0;
	in->mem_target_kib = d->vm ? vi.mem_target_kib : 0;
	in->vcpus_max = d->cfg.vcpus_max;
	in->vcpus_online = d->online;
	in->sched_weight = d->sched_weight;
	in->sched_cap = d->sched_cap;
	in->pid = getpid();
	in->core = (char *)xst_hv_name(d->hv);
	in->start_time_ns = d->start_time_ns;
	in->domid = d->domid;
	in->name = d->cfg.name ? (char *)d->cfg.name : "";
	if (d->vm && xst_vm_mem_fd(d->vm, &in->mem_fd) == 0)
		in->has_mem_fd = true;
	c->rep->body_case = XSTDOM__REPLY__BODY_INFO;
	c->rep->info = in;
	return 0;
}

/* Move to a new state with all vcpus parked first. */
static int set_state(struct dom *d, enum dom_state from, enum dom_state to, int kind)
{
	pthread_mutex_lock(&d->lock);
	if (d->state != from) {
		pthread_mutex_unlock(&d->lock);
		return -EINVAL;
	}
	d->state = to;
	if (to != DOM_RUNNING)
		dom_vcpus_wait_parked_locked(d, 0);
	else
		pthread_cond_broadcast(&d->cond);
	dom_event_add_locked(d, kind, -1, NULL);
	pthread_mutex_unlock(&d->lock);
	dom_events_flush(d);
	return 0;
}

static int h_pause(struct call *c)
{
	if (c->d->state == DOM_PAUSED)
		return 0;
	if (set_state(c->d, DOM_RUNNING, DOM_PAUSED, XSTDOM__EVENT_KIND__EV_PAUSED) < 0)
		return fail(c, -EINVAL, "domain is not running");
	return 0;
}

static int h_unpause(struct call *c)
{
	if (c->d->state == DOM_RUNNING)
		return 0;
	if (set_state(c->d, DOM_PAUSED, DOM_RUNNING, XSTDOM__EVENT_KIND__EV_UNPAUSED) < 0)
		return fail(c, -EINVAL, "domain is not paused");
	return 0;
}

static int h_destroy(struct call *c)
{
	struct dom *d = c->d;

	pthread_mutex_lock(&d->lock);
	d->state = DOM_DYING;
	pthread_mutex_unlock(&d->lock);
	dom_vcpus_stop(d);
	/* The run-directory files go before the reply: once the agent has it, nothing of
	 * the domain is left to find (the process itself exits a moment later). */
	unlink(d->state_path);
	unlink(d->ipc_url + strlen("ipc://"));
	unlink(d->events_url + strlen("ipc://"));
	unlink(d->console_path);
	dom_log("domain %u destroyed", d->domid);
	c->exit_after = true;
	return 0;
}

static int h_shutdown(struct call *c)
{
	struct dom *d = c->d;
	int reason = c->req->shutdown->reason;
	char detail[64];

	pthread_mutex_lock(&d->lock);
	if (d->state != DOM_RUNNING && d->state != DOM_PAUSED) {
		pthread_mutex_unlock(&d->lock);
		return fail(c, -EINVAL, "domain is already shut down");
	}
	d->state = DOM_SHUTDOWN;
	d->shutdown_reason = reason;
	dom_vcpus_wait_parked_locked(d, 0);
	snprintf(detail, sizeof(detail), "hard shutdown (%s) by the toolstack",
		 xst_shutdown_reason_name(reason));
	dom_event_add_locked(d, XSTDOM__EVENT_KIND__EV_SHUTDOWN, reason, detail);
	pthread_mutex_unlock(&d->lock);
	dom_events_flush(d);
	return 0;
}

static int h_mem(struct call *c)
{
	struct dom *d = c->d;
	bool target = c->req->body_case == XSTDOM__REQUEST__BODY_MEM_TARGET;
	uint64_t kib = target ? c->req->mem_target->kib : c->req->mem_max->kib;
	int ret;

	ret = target ? xst_vm_set_mem_target(d->vm, kib) : xst_vm_set_mem_max(d->vm, kib);
	if (ret < 0)
		return fail(c, ret, "memory %s %llu KiB: %s", target ? "target" : "maximum",
			    (unsigned long long)kib, strerror(-ret));
	record_write(d);
	return 0;
}

static int h_vcpus_online(struct call *c)
{
	struct dom *d = c->d;
	unsigned int n = c->req->vcpus_online->count;

	if (n < 1 || n > d->cfg.vcpus_max)
		return fail(c, -EINVAL, "vcpus %u: must be 1..%u", n, d->cfg.vcpus_max);
	pthread_mutex_lock(&d->lock);
	d->online = n;
	pthread_cond_broadcast(&d->cond);
	dom_vcpus_wait_parked_locked(d, n);
	pthread_mutex_unlock(&d->lock);
	record_write(d);
	return 0;
}

/* "all" or a comma list of cpus and ranges ("0-3,6") into set; -EINVAL if malformed. */
static int cpuset_parse(const char *s, cpu_set_t *set)
{
	long conf = sysconf(_SC_NPROCESSORS_CONF);
	unsigned long a, b;
	char *end;

	CPU_ZERO(set);
	if (strcmp(s, "all") == 0) {
		for (a = 0; a < (unsigned long)(conf > 0 ? conf : 1) && a < CPU_SETSIZE; a++)
			CPU_SET(a, set);
		return 0;
	}
	for (;;) {
		if (*s < '0' || *s > '9')
			return -EINVAL;
		a = b = strtoul(s, &end, 10);
		if (*end == '-') {
			s = end + 1;
			if (*s < '0' || *s > '9')
				return -EINVAL;
			b = strtoul(s, &end, 10);
		}
		if (a > b || b >= CPU_SETSIZE)
			return -EINVAL;
		for (; a <= b; a++)
			CPU_SET(a, set);
		if (*end == '\0')
			return 0;
		if (*end != ',')
			return -EINVAL;
		s = end + 1;
	}
}

/* The cpu list of set ("0-1,3"), or "all" when it holds every online cpu. */
static char *cpuset_text(const cpu_set_t *set, void *ctx)
{
	long online = sysconf(_SC_NPROCESSORS_ONLN);
	char *s = talloc_strdup(ctx, "");
	unsigned int i, j;

	if (online > 0 && CPU_COUNT(set) >= online)
		return talloc_strdup(ctx, "all");
	for (i = 0; s && i < CPU_SETSIZE; i++) {
		if (!CPU_ISSET(i, set))
			continue;
		for (j = i; j + 1 < CPU_SETSIZE && CPU_ISSET(j + 1, set); j++)
			;
		s = talloc_asprintf_append(s, "%s%u", s[0] ? "," : "", i);
		if (s && j > i)
			s = talloc_asprintf_append(s, "-%u", j);
		i = j;
	}
	return s;
}

static int h_vcpu_pin(struct call *c)
{
	struct dom *d = c->d;
	const Xstdom__VcpuPin *p = c->req->vcpu_pin;
	unsigned int i, first = 0, last;
	cpu_set_t set;
	int ret;

	if (!p->cpus || cpuset_parse(p->cpus, &set) < 0)
		return fail(c, -EINVAL, "invalid cpu list \"%s\"", p->cpus ? p->cpus : "");
	if (!d->nvcpus)
		return fail(c, -ENODEV, "no vcpus");
	last = d->nvcpus - 1;
	if (p->has_vcpu && p->vcpu >= 0) {
		if ((unsigned int)p->vcpu >= d->nvcpus)
			return fail(c, -EINVAL, "no vcpu %d", p->vcpu);
		first = last = (unsigned int)p->vcpu;
	}
	for (i = first; i <= last; i++) {
		if (!d->vcpus[i].started)
			continue;
		ret = -pthread_setaffinity_np(d->vcpus[i].thread, sizeof(set), &set);
		if (ret < 0)
			return fail(c, ret, "vcpu %u: sched_setaffinity %s: %s", i, p->cpus,
				    strerror(-ret));
	}
	return 0;
}

static int h_vcpu_info(struct call *c)
{
	struct dom *d = c->d;
	Xstdom__VcpuList *l = talloc_zero(c->ctx, Xstdom__VcpuList);
	unsigned int i;

	if (!l)
		return -ENOMEM;
	xstdom__vcpu_list__init(l);
	l->vcpu = talloc_zero_array(c->ctx, Xstdom__VcpuInfo *, d->nvcpus);
	if (!l->vcpu && d->nvcpus)
		return -ENOMEM;
	for (i = 0; i < d->nvcpus; i++) {
		Xstdom__VcpuInfo *vi = talloc_zero(c->ctx, Xstdom__VcpuInfo);
		struct xst_vcpu_info info;

		if (!vi)
			return -ENOMEM;
		xstdom__vcpu_info__init(vi);
		xst_vcpu_info(d->vcpus[i].vcpu, &info);
		vi->id = i;
		pthread_mutex_lock(&d->lock);
		vi->online = i < d->online;
		vi->running = vi->online && !d->vcpus[i].parked && d->state == DOM_RUNNING;
		pthread_mutex_unlock(&d->lock);
		vi->cpu_time_ns = info.cpu_time_ns;
		if (d->vcpus[i].started) {
			cpu_set_t set;

			if (pthread_getaffinity_np(d->vcpus[i].thread, sizeof(set), &set) == 0)
				vi->affinity = cpuset_text(&set, c->ctx);
		}
		l->vcpu[l->n_vcpu++] = vi;
	}
	c->rep->body_case = XSTDOM__REPLY__BODY_VCPUS;
	c->rep->vcpus = l;
	return 0;
}

static int h_sched(struct call *c)
{
	struct dom *d = c->d;
	const Xstdom__Sched *s = c->req->sched;
	unsigned int w = s->has_weight ? s->weight : d->sched_weight;
	unsigned int cap = s->has_cap ? s->cap : d->sched_cap;
	int ret;

	if (w < 1 || w > 65535 || cap > 100 * d->cfg.vcpus_max)
		return fail(c, -EINVAL, "weight %u cap %u: %s (weight 1..65535, cap 0..%u)", w, cap,
			    strerror(EINVAL), 100 * d->cfg.vcpus_max);
	ret = xst_vm_sched_set(d->vm, w, cap);
	if (ret < 0 && ret != -EOPNOTSUPP)
		return fail(c, ret, "weight %u cap %u: %s (weight 1..65535, cap 0..%u)", w, cap,
			    strerror(-ret), 100 * d->cfg.vcpus_max);
	pthread_mutex_lock(&d->lock);
	d->sched_weight = w;
	d->sched_cap = cap;
	pthread_mutex_unlock(&d->lock);
	ret = dom_sched_apply(d);
	if (ret < 0)
		return fail(c, ret, "starting the cap's throttle: %s", strerror(-ret));
	record_write(d);
	return 0;
}

static int h_soft_reset(struct call *c)
{
	struct dom *d = c->d;
	enum dom_state prev;
	unsigned int i;
	int ret;

	pthread_mutex_lock(&d->lock);
	prev = d->state;
	d->state = DOM_PAUSED;
	dom_vcpus_wait_parked_locked(d, 0);
	pthread_mutex_unlock(&d->lock);
	ret = xst_vm_soft_reset(d->vm);
	pthread_mutex_lock(&d->lock);
	if (ret < 0) {
		d->state = prev;
	} else {
		for (i = 0; i < d->nvcpus; i++)
			d->vcpus[i].halted = false;
		d->state = DOM_RUNNING;
		d->shutdown_reason = -1;
		dom_event_add_locked(d, XSTDOM__EVENT_KIND__EV_SOFT_RESET, -1, NULL);
	}
	pthread_cond_broadcast(&d->cond);
	pthread_mutex_unlock(&d->lock);
	dom_events_flush(d);
	if (ret < 0)
		return fail(c, ret, "soft reset: %s", strerror(-ret));
	return 0;
}

static int h_wait_event(struct call *c)
{
	struct dom *d = c->d;
	const Xstdom__WaitEvent *w = c->req->wait_event;
	uint32_t ms = w->timeout_ms > WAIT_MAX_MS ? WAIT_MAX_MS : w->timeout_ms;
	Xstdom__Events *evs = talloc_zero(c->ctx, Xstdom__Events);
	struct timespec ts;
	uint64_t seq, first;

	if (!evs)
		return -ENOMEM;
	xstdom__events__init(evs);
	clock_gettime(CLOCK_REALTIME, &ts);
	ts.tv_sec += ms / 1000;
	ts.tv_nsec += (long)(ms % 1000) * 1000000;
	if (ts.tv_nsec >= 1000000000) {
		ts.tv_sec++;
		ts.tv_nsec -= 1000000000;
	}
	pthread_mutex_lock(&d->lock);
	while (d->last_seq <= w->after_seq && ms &&
	       pthread_cond_timedwait(&d->cond, &d->lock, &ts) == 0)
		;
	first = d->last_seq > DOM_EVENTS_KEPT ? d->last_seq - DOM_EVENTS_KEPT + 1 : 1;
	evs->first_seq = first;
	evs->last_seq = d->last_seq;
	seq = w->after_seq + 1 > first ? w->after_seq + 1 : first;
	evs->event = talloc_zero_array(c->ctx, Xstdom__Event *, DOM_EVENTS_KEPT);
	for (; evs->event && seq <= d->last_seq; seq++) {
		const struct dom_event *e = &d->events[(seq - 1) % DOM_EVENTS_KEPT];
		Xstdom__Event *ev = talloc_zero(c->ctx, Xstdom__Event);

		if (!ev)
			break;
		xstdom__event__init(ev);
		ev->seq = e->seq;
		ev->kind = e->kind;
		ev->time_ns = e->time_ns;
		if (e->reason >= 0) {
			ev->has_reason = true;
			ev->reason = e->reason;
		}
		if (e->detail[0])
			ev->detail = talloc_strdup(c->ctx, e->detail);
		evs->event[evs->n_event++] = ev;
	}
	pthread_mutex_unlock(&d->lock);
	c->rep->body_case = XSTDOM__REPLY__BODY_EVENTS;
	c->rep->events = evs;
	return 0;
}

static int h_get_config(struct call *c)
{
	c->rep->config = config_to_pb(c->d, c->ctx);
	if (!c->rep->config)
		return -ENOMEM;
	c->rep->body_case = XSTDOM__REPLY__BODY_CONFIG;
	return 0;
}

static int h_set_toolstack(struct call *c)
{
	struct dom *d = c->d;
	const Xstdom__VmConfig *pc = c->req->set_toolstack;
	uint8_t *blob;

	if (!pc->has_toolstack)
		return fail(c, -EINVAL, "no toolstack blob");
	if (pc->toolstack.len > DOM_TOOLSTACK_MAX)
		return fail(c, -E2BIG, "toolstack blob over %u bytes", DOM_TOOLSTACK_MAX);
	blob = talloc_memdup(d, pc->toolstack.data, pc->toolstack.len ? pc->toolstack.len : 1);
	if (!blob)
		return -ENOMEM;
	talloc_free(d->toolstack);
	d->toolstack = blob;
	d->toolstack_len = pc->toolstack.len;
	record_write(d);
	return 0;
}

static int h_console_log(struct call *c)
{
	uint8_t *buf;
	size_t len;
	int ret = console_log(c->d->con, c->ctx, &buf, &len);

	if (ret < 0)
		return ret;
	c->rep->body_case = XSTDOM__REPLY__BODY_CONSOLE;
	c->rep->console.data = buf;
	c->rep->console.len = len;
	return 0;
}

static int h_dirty_log(struct call *c)
{
	int ret = xst_vm_dirty_log_enable(c->d->vm, c->req->dirty_log->enable);

	return ret < 0 ? fail(c, ret, "dirty log: %s", strerror(-ret)) : 0;
}

static int h_dirty_fetch(struct call *c)
{
	uint64_t n = xst_vm_npages(c->d->vm);
	Xstdom__Dirty *dy = talloc_zero(c->ctx, Xstdom__Dirty);
	uint64_t *bm = talloc_zero_array(c->ctx, uint64_t, (n + 63) / 64 + 1);
	int ret;

	if (!dy || !bm)
		return -ENOMEM;
	ret = xst_vm_dirty_log_fetch(c->d->vm, bm, n);
	if (ret < 0)
		return fail(c, ret, "dirty fetch: %s", strerror(-ret));
	xstdom__dirty__init(dy);
	dy->npages = n;
	dy->bitmap.data = (uint8_t *)bm;
	dy->bitmap.len = (n + 63) / 64 * 8;
	c->rep->body_case = XSTDOM__REPLY__BODY_DIRTY;
	c->rep->dirty = dy;
	return 0;
}

static bool page_zero(const uint8_t *p)
{
	const uint64_t *w = (const uint64_t *)p;
	size_t i;

	for (i = 0; i < XST_PAGE_SIZE / 8; i++)
		if (w[i])
			return false;
	return true;
}

/* skip_zero: the first page at or after gfn that the guest may have written (not in a
 * hole of its RAM file), capped at end, and in *data_end the end of that written
 * extent.  Without a RAM file (or if lseek fails), every page may hold data. */
static uint64_t next_data(int fd, uint64_t gfn, uint64_t end, uint64_t *data_end)
{
	off_t d, h;

	*data_end = end;
	if (fd < 0)
		return gfn;
	d = lseek(fd, (off_t)(gfn * XST_PAGE_SIZE), SEEK_DATA);
	if (d < 0)
		return errno == ENXIO ? end : gfn; /* ENXIO: only holes from there on */
	if ((uint64_t)d / XST_PAGE_SIZE >= end)
		return end;
	h = lseek(fd, d, SEEK_HOLE);
	if (h > d && (uint64_t)(h + XST_PAGE_SIZE - 1) / XST_PAGE_SIZE < end)
		*data_end = (uint64_t)(h + XST_PAGE_SIZE - 1) / XST_PAGE_SIZE;
	return (uint64_t)d / XST_PAGE_SIZE;
}

static int h_read_pages(struct call *c)
{
	const Xstdom__PageRange *r = c->req->read_pages;
	Xstdom__Pages *p = talloc_zero(c->ctx, Xstdom__Pages);
	bool skip = r->has_skip_zero && r->skip_zero;
	uint32_t max = skip ? PAGES_MAX_SKIP : PAGES_MAX, i, n = 0;
	uint8_t *buf, *present = NULL;
	uint64_t gfn, end = r->first_gfn + r->count, data_end = 0; /* data up to data_end */
	int fd = -1, ret;

	if (!r->count || r->count > max)
		return fail(c, -EINVAL, "count %u: must be 1..%u", r->count, max);
	/* skip_zero: non-zero pages are rare in big ranges; grow the buffer as they come */
	buf = talloc_size(c->ctx, (size_t)(skip ? 1 : r->count) * XST_PAGE_SIZE);
	if (skip)
		present = talloc_zero_size(c->ctx, (r->count + 7) / 8);
	if (!p || !buf || (skip && !present))
		return -ENOMEM;
	if (skip && xst_vm_mem_fd(c->d->vm, &fd) < 0)
		fd = -1;
	for (i = 0; i < r->count; i++) {
		if (skip && r->first_gfn + i >= data_end) {
			/* holes of the RAM file were never written: zero, and reading them
			 * would allocate them */
			gfn = next_data(fd, r->first_gfn + i, end, &data_end);
			if (gfn >= end)
				break;
			i = (uint32_t)(gfn - r->first_gfn);
		}
		if (skip && talloc_get_size(buf) < (size_t)(n + 1) * XST_PAGE_SIZE) {
			buf = talloc_realloc_size(c->ctx, buf, (size_t)(n + 1) * 2 * XST_PAGE_SIZE);
			if (!buf)
				return -ENOMEM;
		}
		ret = xst_vm_read_page(c->d->vm, r->first_gfn + i, buf + (size_t)n * XST_PAGE_SIZE);
		if (ret < 0)
			return fail(c, ret, "read gfn %llu: %s",
				    (unsigned long long)(r->first_gfn + i), strerror(-ret));
		if (skip && page_zero(buf + (size_t)n * XST_PAGE_SIZE))
			continue;
		if (skip)
			present[i / 8] |= 1u << (i % 8);
		n++;
	}
	xstdom__pages__init(p);
	p->first_gfn = r->first_gfn;
	p->data.data = buf;
	p->data.len = (size_t)n * XST_PAGE_SIZE;
	if (skip) {
		p->has_present = true;
		p->present.data = present;
		p->present.len = (r->count + 7) / 8;
	}
	c->rep->body_case = XSTDOM__REPLY__BODY_PAGES;
	c->rep->pages = p;
	return 0;
}

static int h_write_pages(struct call *c)
{
	const Xstdom__WritePages *w = c->req->write_pages;
	size_t i, n = w->data.len / XST_PAGE_SIZE;
	int ret;

	if (!n || n > PAGES_MAX || w->data.len % XST_PAGE_SIZE)
		return fail(c, -EINVAL, "data must be 1..%u whole pages", PAGES_MAX);
	for (i = 0; i < n; i++) {
		ret = xst_vm_write_page(c->d->vm, w->first_gfn + i,
					w->data.data + i * XST_PAGE_SIZE);
		if (ret < 0)
			return fail(c, ret, "write gfn %llu: %s",
				    (unsigned long long)(w->first_gfn + i), strerror(-ret));
	}
	return 0;
}

static int h_state_save(struct call *c)
{
	struct dom *d = c->d;
	Xstdom__StateBlob *sb = talloc_zero(c->ctx, Xstdom__StateBlob);
	unsigned int i;
	int ret;

	if (d->state == DOM_RUNNING)
		return fail(c, -EBUSY, "pause the domain first");
	if (!sb)
		return -ENOMEM;
	xstdom__state_blob__init(sb);
	ret = xst_vm_state_save(d->vm, c->ctx, &sb->vm.data, &sb->vm.len);
	if (ret < 0)
		return fail(c, ret, "vm state: %s", strerror(-ret));
	sb->vcpu = talloc_zero_array(c->ctx, ProtobufCBinaryData, d->nvcpus);
	if (!sb->vcpu && d->nvcpus)
		return -ENOMEM;
	for (i = 0; i < d->nvcpus; i++) {
		ret = xst_vcpu_state_save(d->vcpus[i].vcpu, c->ctx, &sb->vcpu[i].data,
					  &sb->vcpu[i].len);
		if (ret < 0)
			return fail(c, ret, "vcpu %u state: %s", i, strerror(-ret));
		sb->n_vcpu++;
	}
	c->rep->body_case = XSTDOM__REPLY__BODY_STATE;
	c->rep->state = sb;
	return 0;
}

/* Pause, dirty fetch and state save in one reply: the calls a migration's stop makes,
 * without two round trips while the guest is paused. */
static int h_stop_copy(struct call *c)
{
	Xstdom__StopCopy *sc = talloc_zero(c->ctx, Xstdom__StopCopy);
	int ret;

	if (!sc)
		return -ENOMEM;
	xstdom__stop_copy__init(sc);
	ret = h_pause(c);
	if (ret == 0)
		ret = h_dirty_fetch(c);
	if (ret < 0)
		return ret;
	sc->dirty = c->rep->dirty;
	ret = h_state_save(c);
	if (ret < 0)
		return ret;
	sc->state = c->rep->state;
	c->rep->body_case = XSTDOM__REPLY__BODY_STOP_COPY;
	c->rep->stop_copy = sc;
	return 0;
}

static int h_state_load(struct call *c)
{
	struct dom *d = c->d;
	const Xstdom__StateBlob *sb = c->req->state_load;
	unsigned int i;
	int ret;

	if (d->state == DOM_RUNNING)
		return fail(c, -EBUSY, "pause the domain first");
	if (sb->n_vcpu != d->nvcpus)
		return fail(c, -EINVAL, "%zu vcpu states for %u vcpus", sb->n_vcpu, d->nvcpus);
	ret = xst_vm_state_load(d->vm, sb->vm.data, sb->vm.len);
	if (ret < 0)
		return fail(c, ret, "vm state: %s", strerror(-ret));
	for (i = 0; i < d->nvcpus; i++) {
		ret = xst_vcpu_state_load(d->vcpus[i].vcpu, sb->vcpu[i].data, sb->vcpu[i].len);
		if (ret < 0)
			return fail(c, ret, "vcpu %u state: %s", i, strerror(-ret));
	}
	return 0;
}

static int h_cpu_features(struct call *c)
{
	uint8_t *blob;
	size_t len;
	int ret;

	ret = xst_vm_cpu_features(c->d->vm, c->ctx, &blob, &len);
	if (ret < 0)
		return fail(c, ret, "cpu features: %s", strerror(-ret));
	c->rep->body_case = XSTDOM__REPLY__BODY_CPU_FEATURES;
	c->rep->cpu_features.data = blob;
	c->rep->cpu_features.len = len;
	return 0;
}

static int h_cpu_check(struct call *c)
{
	char why[256] = "";
	int ret;

	ret = xst_vm_cpu_check(c->d->vm, c->req->cpu_check.data, c->req->cpu_check.len, why,
			       sizeof(why));
	if (ret < 0)
		return fail(c, ret, "%s", why[0] ? why : strerror(-ret));
	return 0;
}

/* ---- dispatch ------------------------------------------------------------------ */

enum { NEEDS_VM = 1 };

static const struct {
	const char *name;
	int (*fn)(struct call *c);
	unsigned int flags;
} handlers[] = {
	[XSTDOM__REQUEST__BODY_CREATE] = {"create", h_create, 0},
	[XSTDOM__REQUEST__BODY_INFO] = {"info", h_info, 0},
	[XSTDOM__REQUEST__BODY_PAUSE] = {"pause", h_pause, NEEDS_VM},
	[XSTDOM__REQUEST__BODY_UNPAUSE] = {"unpause", h_unpause, NEEDS_VM},
	[XSTDOM__REQUEST__BODY_DESTROY] = {"destroy", h_destroy, 0},
	[XSTDOM__REQUEST__BODY_SHUTDOWN] = {"shutdown", h_shutdown, NEEDS_VM},
	[XSTDOM__REQUEST__BODY_MEM_TARGET] = {"mem_target", h_mem, NEEDS_VM},
	[XSTDOM__REQUEST__BODY_MEM_MAX] = {"mem_max", h_mem, NEEDS_VM},
	[XSTDOM__REQUEST__BODY_VCPUS_ONLINE] = {"vcpus_online", h_vcpus_online, NEEDS_VM},
	[XSTDOM__REQUEST__BODY_VCPU_INFO] = {"vcpu_info", h_vcpu_info, NEEDS_VM},
	[XSTDOM__REQUEST__BODY_VCPU_PIN] = {"vcpu_pin", h_vcpu_pin, NEEDS_VM},
	[XSTDOM__REQUEST__BODY_SCHED] = {"sched", h_sched, NEEDS_VM},
	[XSTDOM__REQUEST__BODY_SOFT_RESET] = {"soft_reset", h_soft_reset, NEEDS_VM},
	[XSTDOM__REQUEST__BODY_WAIT_EVENT] = {"wait_event", h_wait_event, 0},
	[XSTDOM__REQUEST__BODY_GET_CONFIG] = {"get_config", h_get_config, NEEDS_VM},
	[XSTDOM__REQUEST__BODY_CONSOLE_LOG] = {"console_log", h_console_log, 0},
	[XSTDOM__REQUEST__BODY_DIRTY_LOG] = {"dirty_log", h_dirty_log, NEEDS_VM},
	[XSTDOM__REQUEST__BODY_DIRTY_FETCH] = {"dirty_fetch", h_dirty_fetch, NEEDS_VM},
	[XSTDOM__REQUEST__BODY_READ_PAGES] = {"read_pages", h_read_pages, NEEDS_VM},
	[XSTDOM__REQUEST__BODY_WRITE_PAGES] = {"write_pages", h_write_pages, NEEDS_VM},
	[XSTDOM__REQUEST__BODY_STATE_SAVE] = {"state_save", h_state_save, NEEDS_VM},
	[XSTDOM__REQUEST__BODY_STATE_LOAD] = {"state_load", h_state_load, NEEDS_VM},
	[XSTDOM__REQUEST__BODY_SET_TOOLSTACK] = {"set_toolstack", h_set_toolstack, NEEDS_VM},
	[XSTDOM__REQUEST__BODY_CPU_FEATURES] = {"cpu_features", h_cpu_features, NEEDS_VM},
	[XSTDOM__REQUEST__BODY_CPU_CHECK] = {"cpu_check", h_cpu_check, NEEDS_VM},
	[XSTDOM__REQUEST__BODY_STOP_COPY] = {"stop_copy", h_stop_copy, NEEDS_VM},
};

static void dispatch(struct call *c)
{
	unsigned int k = c->req->body_case;
	int ret;

	if (k >= sizeof(handlers) / sizeof(handlers[0]) || !handlers[k].fn) {
		ret = fail(c, -EOPNOTSUPP, "unknown request %u", k);
	} else if ((handlers[k].flags & NEEDS_VM) && !c->d->vm) {
		ret = fail(c, -ENODEV, "%s: domain not created yet", handlers[k].name);
	} else {
		ret = handlers[k].fn(c);
		if (ret < 0 && !c->msg[0])
			fail(c, ret, "%s: %s", handlers[k].name, strerror(-ret));
	}
	c->rep->error = ret < 0 ? ret : 0;
	if (ret < 0) {
		c->rep->message = c->msg;
		c->rep->body_case = XSTDOM__REPLY__BODY__NOT_SET;
	}
}

int dom_serve(struct dom *d)
{
	uint64_t deadline = dom_realtime_ns() + (uint64_t)CREATE_TIMEOUT_MS * 1000000;

	for (;;) {
		struct call c = {.d = d};
		Xstdom__Reply rep = XSTDOM__REPLY__INIT;
		ProtobufCMessage *msg;
		int ret;

		c.ctx = talloc_new(d);
		if (!c.ctx) {
			usleep(100000); /* out of memory: keep serving */
			continue;
		}
		/* wake once a second only while waiting for create (its deadline): an idle
		 * domain must not cost CPU */
		ret = xst_rpc_recv_msg(d->rpc, d->state == DOM_CREATED ? 1000 : -1,
				       &xstdom__request__descriptor, c.ctx, &msg);
		if (ret == -ETIMEDOUT) {
			talloc_free(c.ctx);
			if (d->spare) {
				/* A spare waits as long as the agent that made it lives: its
				 * end of the handoff socket closes when the agent goes. */
				struct pollfd pfd = {.fd = d->handoff_fd, .events = POLLIN};

				if (poll(&pfd, 1, 0) > 0 &&
				    (pfd.revents & (POLLHUP | POLLERR | POLLIN))) {
					dom_log("spare: the agent is gone: exiting");
					return 0;
				}
				continue;
			}
			if (d->state == DOM_CREATED && dom_realtime_ns() > deadline) {
				dom_log("no create request within %d s: exiting",
					CREATE_TIMEOUT_MS / 1000);
				return 2;
			}
			continue;
		}
		c.rep = &rep;
		if (ret < 0) {
			/* unparsable request: answer it, keep serving */
			rep.error = ret;
			rep.message = "malformed request";
			if (ret != -EPROTO) {
				dom_log("receive: %s", strerror(-ret));
				talloc_free(c.ctx);
				if (ret == -EBADF)
					return 1;
				continue;
			}
		} else {
			c.req = (const Xstdom__Request *)msg;
			dispatch(&c);
		}
		ret = xst_rpc_reply_msg(d->rpc, &rep.base);
		if (ret < 0)
			dom_log("reply: %s", strerror(-ret));
		talloc_free(c.ctx);
		if (c.exit_after)
			return 0;
	}
}

/*
 * xst-domctl: a direct harness for the domain process, used by the integration tests
 * (and as a reference for the agent).  It speaks docs/domain-process.md: spawns
 * xst-domain, takes the ring fds from the handoff socket, introduces the domain to
 * xstored, and sends single control requests, printing replies as key=value lines.
 *
 *   xst-domctl --rundir D --domid N spawn [--core C] [--xs SOCKET] [--paused]
 *              [name=..] [mem=KiB] [maxmem=KiB] [vcpus=N] [maxvcpus=N] [workload=..]
 *   xst-domctl --rundir D --domid N info | pause | unpause | destroy | vcpu-info |
 *              soft-reset | get-config | console-log | state-save | record |
 *              shutdown REASON | mem-target KIB | mem-max KIB | vcpus N |
 *              sched WEIGHT CAP | wait-event AFTER_SEQ TIMEOUT_MS | raw-garbage |
 *              introduce XSTORED_SOCKET GFN | checksum | migrate-local TO_DOMID |
 *              subscribe SECONDS
 *   spawn --restoring: create for a restore (paused, waiting for pages and state)
 *
 * Exit status 0 on success; on an error reply it prints "error=<errno name> ..." and
 * exits 1.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <talloc.h>

#include "proto/domain.pb-c.h"
#include "proto/rpc.h"
#include "store/xs_client.h"

extern char **environ;

static const char *rundir;
static unsigned int domid;

static void die(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));
static void die(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	fprintf(stderr, "xst-domctl: ");
	vfprintf(stderr, fmt, ap);
	fputc('\n', stderr);
	va_end(ap);
	exit(1);
}

static Xstdom__Reply *call_dom(void *ctx, unsigned int id, Xstdom__Request *req)
{
	char *url = talloc_asprintf(ctx, "ipc://%s/dom-%u.ipc", rundir, id);
	struct xst_rpc *r;
	ProtobufCMessage *rep;
	Xstdom__Reply *reply;
	int ret;

	ret = xst_rpc_dial(ctx, url, &r);
	if (ret < 0)
		die("%s: %s", url, strerror(-ret));
	ret = xst_rpc_call_msg(r, &req->base, 70000, &xstdom__reply__descriptor, ctx, &rep);
	if (ret < 0)
		die("%s: %s", url, strerror(-ret));
	reply = (Xstdom__Reply *)rep;
	if (reply->error) {
		printf("error=%s errno=%d message=%s\n", strerrorname_np(-reply->error),
		       -reply->error, reply->message ? reply->message : "");
		exit(1);
	}
	return reply;
}

static Xstdom__Reply *call(void *ctx, Xstdom__Request *req)
{
	return call_dom(ctx, domid, req);
}

static const char *state_name(int s)
{
	const ProtobufCEnumValue *v = protobuf_c_enum_descriptor_get_value(
		&xstdom__vm_state__descriptor, s);
	return v ? v->name : "?";
}

static const char *reason_name(int s)
{
	const ProtobufCEnumValue *v = protobuf_c_enum_descriptor_get_value(
		&xstdom__shutdown_reason__descriptor, s);
	return v ? v->name : "?";
}

static const char *kind_name(int s)
{
	const ProtobufCEnumValue *v = protobuf_c_enum_descriptor_get_value(
		&xstdom__event_kind__descriptor, s);
	return v ? v->name : "?";
}

static void print_config(const Xstdom__VmConfig *c)
{
	printf("name=%s\ndomid=%u\nmem_max_kib=%llu\nmem_target_kib=%llu\nvcpus_max=%u\n"
	       "vcpus_online=%u\nworkload=%s\nsched_weight=%u\nsched_cap=%u\ntoolstack=%.*s\n",
	       c->name, c->domid, (unsigned long long)c->mem_max_kib,
	       (unsigned long long)c->mem_target_kib, c->vcpus_max, c->vcpus_online,
	       c->workload ? c->workload : "", c->sched_weight, c->sched_cap,
	       c->has_toolstack ? (int)c->toolstack.len : 0,
	       c->has_toolstack ? (const char *)c->toolstack.data : "");
}

/* ---- spawn ---------------------------------------------------------------------- */

static int recv_ring(int sock, int fds[3], unsigned long long *gfn)
{
	char text[64] = "";
	struct iovec iov = {.iov_base = text, .iov_len = sizeof(text) - 1};
	union {
		struct cmsghdr h;
		char buf[CMSG_SPACE(3 * sizeof(int))];
	} u;
	struct msghdr mh = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = u.buf,
			    .msg_controllen = sizeof(u.buf)};
	struct cmsghdr *cm;
	ssize_t n = recvmsg(sock, &mh, MSG_CMSG_CLOEXEC);

	if (n <= 0)
		return n < 0 ? -errno : -EPIPE;
	cm = CMSG_FIRSTHDR(&mh);
	if (!cm || cm->cmsg_type != SCM_RIGHTS || cm->cmsg_len != CMSG_LEN(3 * sizeof(int)) ||
	    sscanf(text, "ring gfn=%llu", gfn) != 1)
		return -EPROTO;
	memcpy(fds, CMSG_DATA(cm), 3 * sizeof(int));
	return 0;
}

static int cmd_spawn(void *ctx, int argc, char **argv)
{
	Xstdom__VmConfig cfg = XSTDOM__VM_CONFIG__INIT;
	Xstdom__Create cr = XSTDOM__CREATE__INIT;
	Xstdom__Request req = XSTDOM__REQUEST__INIT;
	const char *core = "sim", *xs = NULL;
	char exe[PATH_MAX], dom_path[PATH_MAX + 16], fdarg[16], domarg[16], ready[8];
	char *log = talloc_asprintf(ctx, "%s/dom-%u.log", rundir, domid);
	posix_spawn_file_actions_t fa;
	int sv[2], fds[3], i, ret;
	unsigned long long gfn;
	struct pollfd pfd;
	pid_t pid;
	ssize_t n;

	cfg.domid = domid;
	cfg.name = talloc_asprintf(ctx, "dom%u", domid);
	cfg.mem_max_kib = cfg.mem_target_kib = 16384;
	cfg.vcpus_max = cfg.vcpus_online = 1;
	for (i = 0; i < argc; i++) {
		char *v = strchr(argv[i], '=');
		if (!strcmp(argv[i], "--restoring")) {
			cr.has_restoring = true;
			cr.restoring = true;
		} else if (!strcmp(argv[i], "--paused")) {
			cfg.has_start_paused = true;
			cfg.start_paused = true;
		} else if (!strcmp(argv[i], "--core") && i + 1 < argc) {
			core = argv[++i];
		} else if (!strcmp(argv[i], "--xs") && i + 1 < argc) {
			xs = argv[++i];
		} else if (v) {
			*v++ = '\0';
			if (!strcmp(argv[i], "name"))
				cfg.name = v;
			else if (!strcmp(argv[i], "mem"))
				cfg.mem_target_kib = strtoull(v, NULL, 0);
			else if (!strcmp(argv[i], "maxmem"))
				cfg.mem_max_kib = strtoull(v, NULL, 0);
			else if (!strcmp(argv[i], "vcpus"))
				cfg.vcpus_online = strtoul(v, NULL, 0);
			else if (!strcmp(argv[i], "maxvcpus"))
				cfg.vcpus_max = strtoul(v, NULL, 0);
			else if (!strcmp(argv[i], "workload"))
				cfg.workload = v;
			else if (!strcmp(argv[i], "toolstack")) {
				cfg.has_toolstack = true;
				cfg.toolstack.data = (uint8_t *)v;
				cfg.toolstack.len = strlen(v);
			} else
				die("spawn: unknown key \"%s\"", argv[i]);
		} else {
			die("spawn: bad argument \"%s\"", argv[i]);
		}
	}
	if (cfg.mem_max_kib < cfg.mem_target_kib)
		cfg.mem_max_kib = cfg.mem_target_kib;
	if (cfg.vcpus_max < cfg.vcpus_online)
		cfg.vcpus_max = cfg.vcpus_online;

	n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
	if (n < 0)
		die("readlink: %s", strerror(errno));
	exe[n] = '\0';
	*strrchr(exe, '/') = '\0';
	snprintf(dom_path, sizeof(dom_path), "%s/xst-domain", exe);
	if (socketpair(AF_UNIX, SOCK_SEQPACKET, 0, sv) < 0)
		die("socketpair: %s", strerror(errno));
	fcntl(sv[0], F_SETFD, FD_CLOEXEC);
	snprintf(fdarg, sizeof(fdarg), "%d", sv[1]);
	snprintf(domarg, sizeof(domarg), "%u", domid);
	/* The domain outlives us: it must not hold our stdio (pipes of a caller waiting for
	 * EOF); its diagnostics go to dom-<domid>.log. */
	posix_spawn_file_actions_init(&fa);
	posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
	posix_spawn_file_actions_addopen(&fa, 1, "/dev/null", O_WRONLY, 0);
	posix_spawn_file_actions_addopen(&fa, 2, "/dev/null", O_WRONLY, 0);
	{
		char *args[] = {dom_path, "--rundir", (char *)rundir, "--domid", domarg, "--core",
				(char *)core, "--handoff-fd", fdarg, "--log", log, NULL};
		ret = posix_spawn(&pid, dom_path, &fa, NULL, args, environ);
	}
	posix_spawn_file_actions_destroy(&fa);
	if (ret)
		die("spawn %s: %s", dom_path, strerror(ret));
	close(sv[1]);
	pfd = (struct pollfd){.fd = sv[0], .events = POLLIN};
	if (poll(&pfd, 1, 10000) != 1)
		die("xst-domain did not get ready in 10 s");
	n = recv(sv[0], ready, sizeof(ready), 0);
	if (n != 5 || memcmp(ready, "ready", 5))
		die("xst-domain failed to start (see its log)");

	printf("pid=%d\n", (int)pid);
	fflush(stdout);
	cr.config = &cfg;
	req.body_case = XSTDOM__REQUEST__BODY_CREATE;
	req.create = &cr;
	call(ctx, &req);
	ret = recv_ring(sv[0], fds, &gfn);
	if (ret < 0)
		die("ring handoff: %s", strerror(-ret));
	close(sv[0]);
	if (xs) {
		struct xs_client *c;

		ret = xs_client_open(ctx, xs, &c);
		if (ret < 0)
			die("xstored %s: %s", xs, strerror(-ret));
		ret = xs_client_introduce(c, domid, gfn, 1, fds);
		if (ret < 0)
			die("introduce: %s", strerror(-ret));
	}
	for (i = 0; i < 3; i++)
		close(fds[i]);
	printf("gfn=%llu\n", gfn);
	return 0;
}

/* ---- single requests ------------------------------------------------------------- */

static int cmd_request(void *ctx, const char *cmd, int argc, char **argv)
{
	Xstdom__Request req = XSTDOM__REQUEST__INIT;
	Xstdom__Empty empty = XSTDOM__EMPTY__INIT;
	Xstdom__Shutdown sd = XSTDOM__SHUTDOWN__INIT;
	Xstdom__MemSet ms = XSTDOM__MEM_SET__INIT;
	Xstdom__VcpusOnline vo = XSTDOM__VCPUS_ONLINE__INIT;
	Xstdom__Sched sc = XSTDOM__SCHED__INIT;
	Xstdom__WaitEvent we = XSTDOM__WAIT_EVENT__INIT;
	Xstdom__Reply *rep;
	size_t i;

#define EMPTY(kase, field) (req.body_case = (kase), req.field = &empty)
	if (!strcmp(cmd, "info"))
		EMPTY(XSTDOM__REQUEST__BODY_INFO, info);
	else if (!strcmp(cmd, "pause"))
		EMPTY(XSTDOM__REQUEST__BODY_PAUSE, pause);
	else if (!strcmp(cmd, "unpause"))
		EMPTY(XSTDOM__REQUEST__BODY_UNPAUSE, unpause);
	else if (!strcmp(cmd, "destroy"))
		EMPTY(XSTDOM__REQUEST__BODY_DESTROY, destroy);
	else if (!strcmp(cmd, "vcpu-info"))
		EMPTY(XSTDOM__REQUEST__BODY_VCPU_INFO, vcpu_info);
	else if (!strcmp(cmd, "soft-reset"))
		EMPTY(XSTDOM__REQUEST__BODY_SOFT_RESET, soft_reset);
	else if (!strcmp(cmd, "get-config"))
		EMPTY(XSTDOM__REQUEST__BODY_GET_CONFIG, get_config);
	else if (!strcmp(cmd, "console-log"))
		EMPTY(XSTDOM__REQUEST__BODY_CONSOLE_LOG, console_log);
	else if (!strcmp(cmd, "state-save"))
		EMPTY(XSTDOM__REQUEST__BODY_STATE_SAVE, state_save);
	else if (!strcmp(cmd, "shutdown") && argc == 1) {
		const ProtobufCEnumValue *v = protobuf_c_enum_descriptor_get_value_by_name(
			&xstdom__shutdown_reason__descriptor, argv[0]);
		if (!v)
			die("shutdown: unknown reason %s", argv[0]);
		sd.reason = v->value;
		req.body_case = XSTDOM__REQUEST__BODY_SHUTDOWN;
		req.shutdown = &sd;
	} else if ((!strcmp(cmd, "mem-target") || !strcmp(cmd, "mem-max")) && argc == 1) {
		ms.kib = strtoull(argv[0], NULL, 0);
		if (cmd[4] == 't') {
			req.body_case = XSTDOM__REQUEST__BODY_MEM_TARGET;
			req.mem_target = &ms;
		} else {
			req.body_case = XSTDOM__REQUEST__BODY_MEM_MAX;
			req.mem_max = &ms;
		}
	} else if (!strcmp(cmd, "vcpus") && argc == 1) {
		vo.count = strtoul(argv[0], NULL, 0);
		req.body_case = XSTDOM__REQUEST__BODY_VCPUS_ONLINE;
		req.vcpus_online = &vo;
	} else if (!strcmp(cmd, "sched") && argc == 2) {
		sc.has_weight = sc.has_cap = true;
		sc.weight = strtoul(argv[0], NULL, 0);
		sc.cap = strtoul(argv[1], NULL, 0);
		req.body_case = XSTDOM__REQUEST__BODY_SCHED;
		req.sched = &sc;
	} else if (!strcmp(cmd, "wait-event") && argc == 2) {
		we.after_seq = strtoull(argv[0], NULL, 0);
		we.timeout_ms = strtoul(argv[1], NULL, 0);
		req.body_case = XSTDOM__REQUEST__BODY_WAIT_EVENT;
		req.wait_event = &we;
	} else {
		die("unknown command or wrong arguments: %s", cmd);
	}
	rep = call(ctx, &req);
	switch (rep->body_case) {
	case XSTDOM__REPLY__BODY_INFO: {
		Xstdom__Info *in = rep->info;
		printf("state=%s\n", state_name(in->state));
		if (in->has_shutdown_reason)
			printf("shutdown_reason=%s\n", reason_name(in->shutdown_reason));
		printf("cpu_time_ns=%llu\nmem_kib=%llu\nmem_max_kib=%llu\nmem_target_kib=%llu\n"
		       "vcpus_max=%u\nvcpus_online=%u\nsched_weight=%u\nsched_cap=%u\npid=%u\n"
		       "core=%s\nstart_time_ns=%llu\ndomid=%u\nname=%s\nlast_event_seq=%llu\n",
		       (unsigned long long)in->cpu_time_ns, (unsigned long long)in->mem_kib,
		       (unsigned long long)in->mem_max_kib,
		       (unsigned long long)in->mem_target_kib, in->vcpus_max, in->vcpus_online,
		       in->sched_weight, in->sched_cap, in->pid, in->core,
		       (unsigned long long)in->start_time_ns, in->domid, in->name,
		       (unsigned long long)in->last_event_seq);
		break;
	}
	case XSTDOM__REPLY__BODY_VCPUS:
		for (i = 0; i < rep->vcpus->n_vcpu; i++)
			printf("vcpu%u online=%d running=%d cpu_time_ns=%llu\n",
			       rep->vcpus->vcpu[i]->id, rep->vcpus->vcpu[i]->online,
			       rep->vcpus->vcpu[i]->running,
			       (unsigned long long)rep->vcpus->vcpu[i]->cpu_time_ns);
		break;
	case XSTDOM__REPLY__BODY_EVENTS:
		printf("first_seq=%llu\nlast_seq=%llu\n",
		       (unsigned long long)rep->events->first_seq,
		       (unsigned long long)rep->events->last_seq);
		for (i = 0; i < rep->events->n_event; i++) {
			Xstdom__Event *e = rep->events->event[i];
			printf("event seq=%llu kind=%s reason=%s detail=%s\n",
			       (unsigned long long)e->seq, kind_name(e->kind),
			       e->has_reason ? reason_name(e->reason) : "-",
			       e->detail ? e->detail : "");
		}
		break;
	case XSTDOM__REPLY__BODY_CONFIG:
		print_config(rep->config);
		break;
	case XSTDOM__REPLY__BODY_CONSOLE:
		if (rep->console.len)
			fwrite(rep->console.data, 1, rep->console.len, stdout);
		break;
	case XSTDOM__REPLY__BODY_STATE:
		printf("vm_state_bytes=%zu\nvcpu_states=%zu\n", rep->state->vm.len,
		       rep->state->n_vcpu);
		break;
	default:
		printf("ok\n");
		break;
	}
	return 0;
}

static int cmd_record(void *ctx)
{
	char *path = talloc_asprintf(ctx, "%s/dom-%u.state", rundir, domid);
	uint8_t buf[1 << 17];
	ProtobufCMessage *msg;
	Xstdom__DomainRecord *rec;
	ssize_t n;
	int fd = open(path, O_RDONLY | O_CLOEXEC);

	if (fd < 0)
		die("%s: %s", path, strerror(errno));
	n = read(fd, buf, sizeof(buf));
	close(fd);
	if (n < 0 || xst_rpc_unpack(&xstdom__domain_record__descriptor, buf, n, ctx, &msg) < 0)
		die("%s: not a DomainRecord", path);
	rec = (Xstdom__DomainRecord *)msg;
	printf("pid=%u\ncore=%s\nipc_url=%s\nconsole_path=%s\nring_gfn=%llu\n", rec->pid,
	       rec->core, rec->ipc_url, rec->console_path, (unsigned long long)rec->ring_gfn);
	print_config(rec->config);
	return 0;
}

/* ---- memory: checksum and a local migration through the save/restore hooks ------- */

#define CHUNK 256u

static Xstdom__Pages *pages_read(void *ctx, unsigned int id, uint64_t gfn, uint32_t count)
{
	Xstdom__Request req = XSTDOM__REQUEST__INIT;
	Xstdom__PageRange pr = XSTDOM__PAGE_RANGE__INIT;

	pr.first_gfn = gfn;
	pr.count = count;
	req.body_case = XSTDOM__REQUEST__BODY_READ_PAGES;
	req.read_pages = &pr;
	return call_dom(ctx, id, &req)->pages;
}

static void pages_write(void *ctx, unsigned int id, uint64_t gfn, const Xstdom__Pages *p)
{
	Xstdom__Request req = XSTDOM__REQUEST__INIT;
	Xstdom__WritePages wp = XSTDOM__WRITE_PAGES__INIT;

	wp.first_gfn = gfn;
	wp.data = p->data;
	req.body_case = XSTDOM__REQUEST__BODY_WRITE_PAGES;
	req.write_pages = &wp;
	call_dom(ctx, id, &req);
}

static uint64_t ram_pages(void *ctx, unsigned int id)
{
	Xstdom__Request req = XSTDOM__REQUEST__INIT;
	Xstdom__Empty e = XSTDOM__EMPTY__INIT;

	req.body_case = XSTDOM__REQUEST__BODY_INFO;
	req.info = &e;
	return call_dom(ctx, id, &req)->info->mem_max_kib / 4;
}

/* FNV-1a over every page but the last (the xenstore ring, which xstored writes). */
static int cmd_checksum(void *ctx)
{
	uint64_t n = ram_pages(ctx, domid) - 1, gfn, h = 0xcbf29ce484222325ull;
	size_t i;

	for (gfn = 0; gfn < n; gfn += CHUNK) {
		void *tmp = talloc_new(ctx);
		uint32_t count = n - gfn < CHUNK ? n - gfn : CHUNK;
		Xstdom__Pages *p = pages_read(tmp, domid, gfn, count);

		for (i = 0; i < p->data.len; i++)
			h = (h ^ p->data.data[i]) * 0x100000001b3ull;
		talloc_free(tmp);
	}
	printf("pages=%llu\nchecksum=%016llx\n", (unsigned long long)n, (unsigned long long)h);
	return 0;
}

static uint64_t copy_range(void *ctx, unsigned int to, uint64_t gfn, uint32_t count)
{
	void *tmp = talloc_new(ctx);

	pages_write(tmp, to, gfn, pages_read(tmp, domid, gfn, count));
	talloc_free(tmp);
	return count;
}

/* Copy the pages set in the dirty bitmap of `domid` to `to`; returns how many. */
static uint64_t copy_dirty(void *ctx, unsigned int to)
{
	Xstdom__Request req = XSTDOM__REQUEST__INIT;
	Xstdom__Empty e = XSTDOM__EMPTY__INIT;
	void *tmp = talloc_new(ctx);
	Xstdom__Dirty *dy;
	uint64_t gfn, copied = 0;

	req.body_case = XSTDOM__REQUEST__BODY_DIRTY_FETCH;
	req.dirty_fetch = &e;
	dy = call_dom(tmp, domid, &req)->dirty;
	for (gfn = 0; gfn < dy->npages && gfn / 8 < dy->bitmap.len; gfn++)
		if (dy->bitmap.data[gfn / 8] & (1u << (gfn % 8)))
			copied += copy_range(tmp, to, gfn, 1);
	talloc_free(tmp);
	return copied;
}

/* Pre-copy migration of `domid` into the (restoring, paused) domain `to`: full copy
 * with the dirty log on, up to 5 rounds of dirty pages, then pause, last round, state. */
static int cmd_migrate_local(void *ctx, int argc, char **argv)
{
	Xstdom__Request req = XSTDOM__REQUEST__INIT;
	Xstdom__Empty e = XSTDOM__EMPTY__INIT;
	Xstdom__DirtyLog dl = XSTDOM__DIRTY_LOG__INIT;
	Xstdom__Reply *rep;
	unsigned int to, round;
	uint64_t n, gfn, total = 0, last = 0;

	if (argc != 1)
		die("usage: migrate-local TO_DOMID");
	to = strtoul(argv[0], NULL, 10);
	n = ram_pages(ctx, domid);
	if (ram_pages(ctx, to) != n)
		die("memory sizes differ");
	dl.enable = true;
	req.body_case = XSTDOM__REQUEST__BODY_DIRTY_LOG;
	req.dirty_log = &dl;
	call(ctx, &req);
	for (gfn = 0; gfn < n; gfn += CHUNK)
		total += copy_range(ctx, to, gfn, n - gfn < CHUNK ? n - gfn : CHUNK);
	for (round = 0; round < 5; round++) {
		last = copy_dirty(ctx, to);
		total += last;
		if (last < 16)
			break;
	}
	req.body_case = XSTDOM__REQUEST__BODY_PAUSE;
	req.pause = &e;
	call(ctx, &req);
	last = copy_dirty(ctx, to);
	total += last;
	req.body_case = XSTDOM__REQUEST__BODY_STATE_SAVE;
	req.state_save = &e;
	rep = call(ctx, &req);
	req.body_case = XSTDOM__REQUEST__BODY_STATE_LOAD;
	req.state_load = rep->state;
	call_dom(ctx, to, &req);
	printf("pages_copied=%llu\nrounds=%u\nlast_round_pages=%llu\n",
	       (unsigned long long)total, round + 1, (unsigned long long)last);
	return 0;
}

/* Print events from the domain's events channel for `seconds` (pub/sub). */
static int cmd_subscribe(void *ctx, int argc, char **argv)
{
	char *url = talloc_asprintf(ctx, "ipc://%s/dom-%u.events", rundir, domid);
	struct xst_rpc *sub;
	time_t end;
	int ret;

	if (argc != 1)
		die("usage: subscribe SECONDS");
	end = time(NULL) + atoi(argv[0]);
	ret = xst_rpc_subscribe(ctx, url, &sub);
	if (ret < 0)
		die("%s: %s", url, strerror(-ret));
	printf("subscribed\n");
	fflush(stdout);
	while (time(NULL) < end) {
		ProtobufCMessage *m;
		Xstdom__Event *e;
		uint8_t *buf;
		size_t len;

		ret = xst_rpc_event_recv(sub, 200, ctx, &buf, &len);
		if (ret == -ETIMEDOUT)
			continue;
		if (ret < 0)
			die("receive: %s", strerror(-ret));
		if (xst_rpc_unpack(&xstdom__event__descriptor, buf, len, ctx, &m) < 0)
			die("event does not unpack");
		e = (Xstdom__Event *)m;
		printf("event seq=%llu kind=%s reason=%s detail=%s\n", (unsigned long long)e->seq,
		       kind_name(e->kind), e->has_reason ? reason_name(e->reason) : "-",
		       e->detail ? e->detail : "");
		fflush(stdout);
	}
	return 0;
}

/* INTRODUCE without fds: for a known domain xstored resets its ring (soft reset). */
static int cmd_introduce(void *ctx, int argc, char **argv)
{
	struct xs_client *c;
	int ret;

	if (argc != 2)
		die("usage: introduce XSTORED_SOCKET GFN");
	ret = xs_client_open(ctx, argv[0], &c);
	if (ret < 0)
		die("xstored %s: %s", argv[0], strerror(-ret));
	ret = xs_client_introduce(c, domid, strtoull(argv[1], NULL, 0), 1, NULL);
	if (ret < 0)
		die("introduce: %s", strerror(-ret));
	printf("ok\n");
	return 0;
}

/* Send bytes that are not a Request: the process must answer with an error, not die. */
static int cmd_raw_garbage(void *ctx)
{
	char *url = talloc_asprintf(ctx, "ipc://%s/dom-%u.ipc", rundir, domid);
	static const uint8_t junk[] = {0xff, 0xff, 0xff, 0x07, 0x01, 0x02};
	struct xst_rpc *r;
	ProtobufCMessage *rep;
	uint8_t *raw;
	size_t len;
	int ret;

	ret = xst_rpc_dial(ctx, url, &r);
	if (ret < 0)
		die("%s: %s", url, strerror(-ret));
	ret = xst_rpc_call(r, junk, sizeof(junk), 10000, ctx, &raw, &len);
	if (ret < 0)
		die("call: %s", strerror(-ret));
	ret = xst_rpc_unpack(&xstdom__reply__descriptor, raw, len, ctx, &rep);
	if (ret < 0)
		die("reply does not unpack");
	printf("error=%s message=%s\n", strerrorname_np(-((Xstdom__Reply *)rep)->error),
	       ((Xstdom__Reply *)rep)->message ? ((Xstdom__Reply *)rep)->message : "");
	return 0;
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
		{"rundir", required_argument, NULL, 'r'},
		{"domid", required_argument, NULL, 'd'},
		{NULL, 0, NULL, 0},
	};
	void *ctx = talloc_new(NULL);
	const char *cmd;
	int o, ret;

	signal(SIGPIPE, SIG_IGN);
	while ((o = getopt_long(argc, argv, "+", opts, NULL)) != -1) {
		if (o == 'r')
			rundir = optarg;
		else if (o == 'd')
			domid = strtoul(optarg, NULL, 10);
		else
			die("usage: xst-domctl --rundir D --domid N COMMAND ...");
	}
	if (!rundir || !domid || optind >= argc)
		die("usage: xst-domctl --rundir D --domid N COMMAND ...");
	cmd = argv[optind++];
	if (!strcmp(cmd, "spawn"))
		ret = cmd_spawn(ctx, argc - optind, argv + optind);
	else if (!strcmp(cmd, "record"))
		ret = cmd_record(ctx);
	else if (!strcmp(cmd, "checksum"))
		ret = cmd_checksum(ctx);
	else if (!strcmp(cmd, "migrate-local"))
		ret = cmd_migrate_local(ctx, argc - optind, argv + optind);
	else if (!strcmp(cmd, "subscribe"))
		ret = cmd_subscribe(ctx, argc - optind, argv + optind);
	else if (!strcmp(cmd, "introduce"))
		ret = cmd_introduce(ctx, argc - optind, argv + optind);
	else if (!strcmp(cmd, "raw-garbage"))
		ret = cmd_raw_garbage(ctx);
	else
		ret = cmd_request(ctx, cmd, argc - optind, argv + optind);
	talloc_free(ctx);
	return ret ? 1 : 0;
}

/*
 * xst-kvm-drive: a test driver that boots one guest through libxstcore and a
 * hypervisor plugin (normally xst-hv-kvm.so) and obeys commands on stdin, one per line:
 *
 *   pause | unpause            stop / resume the vcpus (kick + park)
 *   dirty on | dirty off       dirty logging
 *   dirty fetch                -> "OK dirty fetch <pages>"
 *   save PREFIX                (paused) PREFIX.vm, PREFIX.vcpu<N>, PREFIX.mem
 *   destroy | create           drop the vm / make a fresh one (paused)
 *   load PREFIX                (after create) memory, vm state, vcpu state
 *   introduce SOCKET DOMID     hand the xenstore ring to xstored (XS_INTRODUCE + fds)
 *   info                       -> "OK info state=<s> reason=<r> cpu_ns=<n> vcpus=<n>"
 *   input TEXT                 console input (TEXT + "\n")
 *   quit
 * Output: "CON <line>" per console line, "EXIT <what> <detail>" when a vcpu stops by
 * itself, "OK <cmd>" or "ERR <cmd>: <reason>" per command.  Exits 77 with "SKIP: <why>"
 * when the plugin's probe fails (no usable /dev/kvm).
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <talloc.h>
#include <unistd.h>

#include "core/core.h"
#include "store/xs_client.h"

#define MAX_VCPUS 8

static pthread_mutex_t out_lock = PTHREAD_MUTEX_INITIALIZER;

static void say(const char *fmt, ...)
{
	va_list ap;
	pthread_mutex_lock(&out_lock);
	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	putchar('\n');
	fflush(stdout);
	pthread_mutex_unlock(&out_lock);
}

struct drive;

struct vthread {
	struct drive *d;
	struct xst_vcpu *vcpu;
	pthread_t tid;
	bool parked, stopped;
};

struct drive {
	void *ctx;
	struct xst_hv *hv;
	struct xst_vm *vm;
	struct xst_vm_config cfg;
	pthread_mutex_t lock;
	pthread_cond_t cond;
	bool paused, quit;
	unsigned int nvcpus;
	struct vthread vt[MAX_VCPUS];
	char line[4096];
	size_t line_len;
	pthread_mutex_t con_lock;
};

static void console_cb(void *opaque, const char *buf, size_t len)
{
	struct drive *d = opaque;
	pthread_mutex_lock(&d->con_lock);
	for (size_t i = 0; i < len; i++) {
		if (buf[i] == '\n' || d->line_len == sizeof(d->line) - 1) {
			d->line[d->line_len] = 0;
			say("CON %s", d->line);
			d->line_len = 0;
			if (buf[i] == '\n')
				continue;
		}
		if (buf[i] != '\r')
			d->line[d->line_len++] = buf[i];
	}
	pthread_mutex_unlock(&d->con_lock);
}

static void *vcpu_main(void *arg)
{
	struct vthread *t = arg;
	struct drive *d = t->d;
	struct xst_vcpu_exit ex;

	for (;;) {
		pthread_mutex_lock(&d->lock);
		while ((d->paused || t->stopped) && !d->quit) {
			t->parked = true;
			pthread_cond_broadcast(&d->cond);
			pthread_cond_wait(&d->cond, &d->lock);
		}
		t->parked = false;
		bool quit = d->quit;
		pthread_mutex_unlock(&d->lock);
		if (quit)
			break;
		int rc = xst_vcpu_run(t->vcpu, &ex);
		const char *what = NULL;
		if (rc < 0)
			say("EXIT error %s", strerror(-rc));
		else if (ex.reason == XST_EXIT_SHUTDOWN)
			say("EXIT shutdown %s", xst_shutdown_reason_name(ex.shutdown));
		else if (ex.reason == XST_EXIT_HALT)
			what = "halt";
		else if (ex.reason == XST_EXIT_FAIL)
			what = "fail";
		else
			continue;
		if (what)
			say("EXIT %s %s", what, ex.detail);
		pthread_mutex_lock(&d->lock);
		t->stopped = true;
		pthread_mutex_unlock(&d->lock);
	}
	pthread_mutex_lock(&d->lock);
	t->parked = true;
	pthread_cond_broadcast(&d->cond);
	pthread_mutex_unlock(&d->lock);
	return NULL;
}

/* Pauses every vcpu thread: sets the flag, kicks until all are parked. */
static void drive_pause(struct drive *d)
{
	pthread_mutex_lock(&d->lock);
	d->paused = true;
	for (;;) {
		bool all = true;
		for (unsigned int i = 0; i < d->nvcpus; i++)
			if (!d->vt[i].parked)
				all = false;
		if (all)
			break;
		for (unsigned int i = 0; i < d->nvcpus; i++)
			if (!d->vt[i].parked)
				xst_vcpu_kick(d->vt[i].vcpu);
		struct timespec ts;
		clock_gettime(CLOCK_REALTIME, &ts);
		ts.tv_nsec += 10000000;
		if (ts.tv_nsec >= 1000000000) {
			ts.tv_sec++;
			ts.tv_nsec -= 1000000000;
		}
		pthread_cond_timedwait(&d->cond, &d->lock, &ts);
	}
	pthread_mutex_unlock(&d->lock);
}

static void drive_unpause(struct drive *d)
{
	pthread_mutex_lock(&d->lock);
	d->paused = false;
	pthread_cond_broadcast(&d->cond);
	pthread_mutex_unlock(&d->lock);
}

static void drive_destroy(struct drive *d)
{
	if (!d->vm)
		return;
	drive_pause(d);
	pthread_mutex_lock(&d->lock);
	d->quit = true;
	pthread_cond_broadcast(&d->cond);
	pthread_mutex_unlock(&d->lock);
	for (unsigned int i = 0; i < d->nvcpus; i++)
		pthread_join(d->vt[i].tid, NULL);
	talloc_free(d->vm); /* frees its vcpus first */
	d->vm = NULL;
	d->nvcpus = 0;
	d->quit = false;
}

/* Creates the vm and its vcpu threads, paused. */
static int drive_create(struct drive *d)
{
	int rc = xst_vm_create(d->hv, &d->cfg, &d->vm);
	if (rc < 0)
		return rc;
	rc = xst_vm_console_attach(d->vm, console_cb, d);
	if (rc < 0)
		goto fail;
	d->paused = true;
	for (unsigned int i = 0; i < d->cfg.vcpus_max; i++) {
		struct vthread *t = &d->vt[i];
		memset(t, 0, sizeof(*t));
		t->d = d;
		rc = xst_vcpu_create(d->vm, i, &t->vcpu);
		if (rc < 0)
			goto fail;
		t->parked = false;
		if (pthread_create(&t->tid, NULL, vcpu_main, t) != 0) {
			rc = -EAGAIN;
			goto fail;
		}
		d->nvcpus++;
	}
	drive_pause(d);
	return 0;
fail:
	drive_destroy(d);
	talloc_free(d->vm);
	d->vm = NULL;
	return rc;
}

static int file_put(const char *prefix, const char *suffix, const void *buf, size_t len)
{
	char path[4096];
	snprintf(path, sizeof(path), "%s%s", prefix, suffix);
	FILE *f = fopen(path, "wb");
	if (!f)
		return -errno;
	int rc = fwrite(buf, 1, len, f) == len ? 0 : -EIO;
	if (fclose(f) != 0 && rc == 0)
		rc = -errno;
	return rc;
}

static int file_get(void *ctx, const char *prefix, const char *suffix, uint8_t **buf,
		    size_t *len)
{
	char path[4096];
	snprintf(path, sizeof(path), "%s%s", prefix, suffix);
	FILE *f = fopen(path, "rb");
	if (!f)
		return -errno;
	int rc = 0;
	if (fseek(f, 0, SEEK_END) != 0) {
		rc = -errno;
		goto out;
	}
	long n = ftell(f);
	rewind(f);
	*buf = talloc_size(ctx, n > 0 ? (size_t)n : 1);
	if (!*buf) {
		rc = -ENOMEM;
		goto out;
	}
	*len = fread(*buf, 1, (size_t)n, f);
	if (*len != (size_t)n)
		rc = -EIO;
out:
	fclose(f);
	return rc;
}

/* Guest memory streams page by page (talloc caps one allocation at 256 MiB). */
static int mem_save(struct drive *d, const char *prefix)
{
	char path[4200];
	uint8_t page[XST_PAGE_SIZE];
	int rc = 0;
	snprintf(path, sizeof(path), "%s.mem", prefix);
	FILE *f = fopen(path, "wb");
	if (!f)
		return -errno;
	uint64_t np = xst_vm_npages(d->vm);
	for (uint64_t g = 0; g < np && rc == 0; g++) {
		rc = xst_vm_read_page(d->vm, g, page);
		if (rc == 0 && fwrite(page, 1, sizeof(page), f) != sizeof(page))
			rc = -EIO;
	}
	if (fclose(f) != 0 && rc == 0)
		rc = -errno;
	return rc;
}

static int mem_load(struct drive *d, const char *prefix)
{
	char path[4200];
	uint8_t page[XST_PAGE_SIZE];
	int rc = 0;
	snprintf(path, sizeof(path), "%s.mem", prefix);
	FILE *f = fopen(path, "rb");
	if (!f)
		return -errno;
	uint64_t np = xst_vm_npages(d->vm);
	for (uint64_t g = 0; g < np && rc == 0; g++) {
		if (fread(page, 1, sizeof(page), f) != sizeof(page))
			rc = -EINVAL; /* short file */
		else
			rc = xst_vm_write_page(d->vm, g, page);
	}
	if (rc == 0 && fgetc(f) != EOF)
		rc = -EINVAL; /* long file */
	fclose(f);
	return rc;
}

static int cmd_save(struct drive *d, const char *prefix)
{
	void *tmp = talloc_new(NULL);
	uint8_t *blob;
	size_t len;
	char suffix[32];
	int rc = xst_vm_state_save(d->vm, tmp, &blob, &len);
	if (rc < 0)
		goto out;
	if ((rc = file_put(prefix, ".vm", blob, len)) < 0)
		goto out;
	for (unsigned int i = 0; i < d->nvcpus; i++) {
		if ((rc = xst_vcpu_state_save(d->vt[i].vcpu, tmp, &blob, &len)) < 0)
			goto out;
		snprintf(suffix, sizeof(suffix), ".vcpu%u", i);
		if ((rc = file_put(prefix, suffix, blob, len)) < 0)
			goto out;
	}
	rc = mem_save(d, prefix);
out:
	talloc_free(tmp);
	return rc;
}

static int cmd_load(struct drive *d, const char *prefix)
{
	void *tmp = talloc_new(NULL);
	uint8_t *blob;
	size_t len;
	char suffix[32];
	int rc = mem_load(d, prefix);
	if (rc < 0)
		goto out;
	if ((rc = file_get(tmp, prefix, ".vm", &blob, &len)) < 0 ||
	    (rc = xst_vm_state_load(d->vm, blob, len)) < 0)
		goto out;
	for (unsigned int i = 0; i < d->nvcpus; i++) {
		snprintf(suffix, sizeof(suffix), ".vcpu%u", i);
		if ((rc = file_get(tmp, prefix, suffix, &blob, &len)) < 0 ||
		    (rc = xst_vcpu_state_load(d->vt[i].vcpu, blob, len)) < 0)
			goto out;
	}
out:
	talloc_free(tmp);
	return rc;
}

static int cmd_introduce(struct drive *d, const char *sock, unsigned int domid)
{
	struct xs_client *c;
	struct xst_xs_ring ring;
	int rc = xst_vm_xs_ring(d->vm, &ring);
	if (rc < 0)
		return rc;
	rc = xs_client_open(d->ctx, sock, &c);
	if (rc < 0)
		return rc;
	int fds[3] = { ring.mem_fd, ring.kick_fd, ring.notify_fd };
	rc = xs_client_introduce(c, domid, ring.offset / XST_PAGE_SIZE, 1, fds);
	talloc_free(c);
	return rc;
}

static int cmd_dirty_fetch(struct drive *d, uint64_t *count)
{
	uint64_t np = xst_vm_npages(d->vm);
	uint64_t *bm = talloc_zero_array(NULL, uint64_t, (np + 63) / 64);
	if (!bm)
		return -ENOMEM;
	int rc = xst_vm_dirty_log_fetch(d->vm, bm, np);
	*count = 0;
	for (uint64_t i = 0; rc == 0 && i < (np + 63) / 64; i++)
		*count += (uint64_t)__builtin_popcountll(bm[i]);
	talloc_free(bm);
	return rc;
}

static int run_command(struct drive *d, char *cmd)
{
	char a[4096];
	unsigned int n;
	uint64_t v;
	int rc;

	if (strcmp(cmd, "create") == 0)
		return d->vm ? -EEXIST : drive_create(d);
	if (strcmp(cmd, "quit") == 0)
		return 0;
	if (!d->vm)
		return -ENOENT;
	if (strcmp(cmd, "pause") == 0) {
		drive_pause(d);
		return 0;
	}
	if (strcmp(cmd, "unpause") == 0) {
		drive_unpause(d);
		return 0;
	}
	if (strcmp(cmd, "destroy") == 0) {
		drive_destroy(d);
		return 0;
	}
	if (strcmp(cmd, "dirty on") == 0 || strcmp(cmd, "dirty off") == 0)
		return xst_vm_dirty_log_enable(d->vm, cmd[7] == 'n');
	if (strcmp(cmd, "dirty fetch") == 0) {
		rc = cmd_dirty_fetch(d, &v);
		if (rc == 0)
			say("OK dirty fetch %llu", (unsigned long long)v);
		return rc < 0 ? rc : 1;
	}
	if (sscanf(cmd, "save %4095s", a) == 1)
		return d->paused ? cmd_save(d, a) : -EBUSY;
	if (sscanf(cmd, "load %4095s", a) == 1)
		return d->paused ? cmd_load(d, a) : -EBUSY;
	if (sscanf(cmd, "introduce %4095s %u", a, &n) == 2)
		return cmd_introduce(d, a, n);
	if (strncmp(cmd, "input ", 6) == 0) {
		size_t l = strlen(cmd + 6);
		if (l + 1 >= sizeof(a))
			return -E2BIG;
		memcpy(a, cmd + 6, l);
		a[l] = '\n';
		return xst_vm_console_write(d->vm, a, l + 1);
	}
	if (strcmp(cmd, "info") == 0) {
		struct xst_vm_info info;
		uint64_t ns = 0;
		rc = xst_vm_info(d->vm, &info);
		if (rc < 0)
			return rc;
		for (unsigned int i = 0; i < d->nvcpus; i++) {
			struct xst_vcpu_info vi;
			if (xst_vcpu_info(d->vt[i].vcpu, &vi) == 0)
				ns += vi.cpu_time_ns;
		}
		say("OK info state=%s reason=%s cpu_ns=%llu vcpus=%u",
		    d->paused && info.state == XST_VM_RUNNING ? "paused" : xst_vm_state_name(info.state),
		    xst_shutdown_reason_name(info.shutdown_reason), (unsigned long long)ns,
		    d->nvcpus);
		return 1;
	}
	return -EINVAL;
}

int main(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "plugin", required_argument, NULL, 'p' },
		{ "kernel", required_argument, NULL, 'k' },
		{ "ramdisk", required_argument, NULL, 'r' },
		{ "cmdline", required_argument, NULL, 'c' },
		{ "mem", required_argument, NULL, 'm' },
		{ "vcpus", required_argument, NULL, 'v' },
		{ "domid", required_argument, NULL, 'd' },
		{ "paused", no_argument, NULL, 'P' },
		{ NULL, 0, NULL, 0 },
	};
	struct drive d;
	const char *plugin = NULL;
	bool start_paused = false;
	char why[256] = "";
	char cmd[8192];
	int o, rc;

	memset(&d, 0, sizeof(d));
	d.ctx = talloc_new(NULL);
	pthread_mutex_init(&d.lock, NULL);
	pthread_mutex_init(&d.con_lock, NULL);
	pthread_cond_init(&d.cond, NULL);
	d.cfg.domid = 1;
	d.cfg.name = "guest";
	d.cfg.mem_max_kib = 64 * 1024;
	d.cfg.vcpus_max = d.cfg.vcpus_online = 1;
	while ((o = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
		switch (o) {
		case 'p': plugin = optarg; break;
		case 'k': d.cfg.kernel = optarg; break;
		case 'r': d.cfg.ramdisk = optarg; break;
		case 'c': d.cfg.cmdline = optarg; break;
		case 'm': d.cfg.mem_max_kib = strtoull(optarg, NULL, 0) * 1024; break;
		case 'v': d.cfg.vcpus_max = d.cfg.vcpus_online = (unsigned int)atoi(optarg); break;
		case 'd': d.cfg.domid = (uint32_t)atoi(optarg); break;
		case 'P': start_paused = true; break;
		default: return 2;
		}
	}
	if (!plugin || !d.cfg.kernel || d.cfg.vcpus_max < 1 || d.cfg.vcpus_max > MAX_VCPUS) {
		fprintf(stderr, "usage: xst-kvm-drive --plugin SO --kernel K [--cmdline S] "
				"[--ramdisk R] [--mem MiB] [--vcpus N] [--domid N] [--paused]\n");
		return 2;
	}
	d.cfg.mem_target_kib = d.cfg.mem_max_kib;
	rc = xst_hv_open_path(d.ctx, plugin, &d.hv, why, sizeof(why));
	if (rc < 0) {
		printf("SKIP: %s\n", why);
		return 77;
	}
	rc = drive_create(&d);
	if (rc < 0) {
		say("ERR create: %s", strerror(-rc));
		return 1;
	}
	say("OK create");
	if (!start_paused)
		drive_unpause(&d);
	while (fgets(cmd, sizeof(cmd), stdin)) {
		cmd[strcspn(cmd, "\n")] = 0;
		if (!cmd[0])
			continue;
		rc = run_command(&d, cmd);
		if (rc < 0)
			say("ERR %s: %s", cmd, strerror(-rc));
		else if (rc == 0)
			say("OK %s", cmd);
		if (strcmp(cmd, "quit") == 0)
			break;
	}
	drive_destroy(&d);
	talloc_free(d.ctx);
	return 0;
}

/*
 * The spare domain process (docs/agent.md, "Spare domain process").
 *
 * Creating a kvm domain cold costs a posix_spawn of xst-domain, loading the plugin and
 * making the VM, and on a PVM host KVM_SET_USER_MEMORY_REGION alone takes 5-11 ms at
 * any size.  None of that depends on the domain's config except the RAM size, so the
 * agent keeps one xst-domain started ahead of need (`--spare MIB`): kvm core loaded,
 * a vm of MIB prepared (VM, irqchip, PIT, RAM memfd and memslot), ipc and event sockets
 * dialed.  A create of a kvm domain whose maxmem is MIB takes it (spare_take): the
 * domain process learns its domid from the create request, renames its files
 * dom-<domid>.* and loads the kernel into the prepared vm.  After the reply the agent
 * starts the next spare.
 *
 * The spare is nobody's domain: no domid, not in the domain list, nothing in
 * xenstore.  Its files are <rundir>/spare-<pid>.{ipc,events,console}; it logs to
 * <rundir>/spare.log.  It dies with the agent: it watches its end of the handoff
 * socket, which closes when the agent exits however it exits, and the agent kills it
 * on a normal stop.  Any failure of a spare (it did not start, it died, it was killed)
 * only means the next create is cold; after AGENT_SPARE_FAILURES in a row no spare is
 * started until a kvm domain is created cold again.
 *
 * Example: `xst-agent --spare auto` (the default).  The first kvm domain, 512 MiB, is
 * created cold; right after its reply a spare preparing 512 MiB starts.  The next
 * 512 MiB create takes it and a new one starts; a 2048 MiB create finds no match, is
 * created cold, and the spare is replaced by a 2048 MiB one (auto follows the last
 * size).
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <talloc.h>

#include "agent/agent.h"
#include "proto/rpc.h"

#define SPARE_READY_MS 10000 /* a take waits this long for a spare still starting */

void spare_files_gone(struct agent *a, pid_t pid)
{
	static const char *const sfx[] = {"ipc", "events", "console", "state"};
	char path[4096];
	unsigned int i;

	for (i = 0; i < 4; i++) {
		snprintf(path, sizeof(path), "%s/spare-%u.%s", a->rundir, (unsigned int)pid,
			 sfx[i]);
		unlink(path);
	}
}

static int spare_destructor(struct spare *s)
{
	if (s->handoff >= 0)
		close(s->handoff);
	return 0;
}

/* Kill and forget the spare; why (may be NULL) goes to the log. */
static void spare_drop(struct agent *a, const char *why, bool failure)
{
	struct spare *s = a->spare;

	if (!s)
		return;
	a->spare = NULL;
	if (why)
		agent_log(a, "spare process %d: %s", (int)s->pid, why);
	if (!s->reaped) {
		kill(s->pid, SIGKILL);
		waitpid(s->pid, NULL, 0);
	}
	spare_files_gone(a, s->pid);
	talloc_free(s); /* closes the handoff socket and the nng sockets */
	if (failure && ++a->spare_failures == AGENT_SPARE_FAILURES)
		agent_log(a, "spare: %u failures in a row; no spare until a kvm domain is "
			     "created again", a->spare_failures);
}

int spare_init(struct agent *a)
{
	struct dirent *de;
	unsigned int pid;
	char tail[16];
	DIR *dir;
	int fd;

	fd = open("/dev/kvm", O_RDWR | O_CLOEXEC);
	a->kvm_usable = fd >= 0;
	if (fd >= 0)
		close(fd);
	a->spare_mib = a->spare_cfg > 0 ? (uint64_t)a->spare_cfg : 0;
	/* Files of spares whose agent died (they exit when they notice). */
	dir = opendir(a->rundir);
	if (!dir)
		return -errno;
	while ((de = readdir(dir)) != NULL) {
		if (sscanf(de->d_name, "spare-%u.%15s", &pid, tail) == 2 &&
		    kill((pid_t)pid, 0) < 0 && errno == ESRCH)
			spare_files_gone(a, (pid_t)pid);
	}
	closedir(dir);
	return 0;
}

void spare_start(struct agent *a)
{
	struct spare *s;
	int rv;

	if (a->spare || !a->spare_mib || a->spare_failures >= AGENT_SPARE_FAILURES || a->stop)
		return;
	s = talloc_zero(a, struct spare);
	if (!s)
		return;
	s->handoff = -1;
	s->sub_fd = -1;
	s->mib = a->spare_mib;
	talloc_set_destructor(s, spare_destructor);
	s->t_spawn = agent_mono_s() * 1e3;
	/* Always the kvm core: it is the one with a vm to prepare. */
	rv = domain_spawn(a, 0, s->mib, "kvm", &s->pid, &s->handoff);
	if (rv < 0) {
		agent_log(a, "spare: cannot start %s: %s", a->domain_bin, strerror(-rv));
		talloc_free(s);
		a->spare_failures++;
		return;
	}
	a->spare = s;
}

int spare_fd(struct agent *a)
{
	return a->spare ? a->spare->handoff : -1;
}

/* Dial the spare's sockets (spare-PID.ipc / .events), as for a domain. */
static int spare_connect(struct agent *a, struct spare *s)
{
	char stem[32];

	snprintf(stem, sizeof(stem), "spare-%u", (unsigned int)s->pid);
	return adom_dial(s, a, stem, &s->rpc, &s->sub, &s->sub_fd);
}

/* Read what the spare sent: its "ready", or EOF.  timeout_ms as for poll. */
static int spare_read(struct agent *a, int timeout_ms)
{
	struct spare *s = a->spare;
	char buf[128], core[16], *why, *msg;
	unsigned long long mib;
	int fds[3], nfds, rv, i;

	rv = handoff_recv(s->handoff, timeout_ms, buf, sizeof(buf), fds, &nfds);
	for (i = 0; i < nfds; i++)
		close(fds[i]);
	if (rv == -ETIMEDOUT)
		return rv;
	if (rv == 0 && s->ready)
		rv = -EPROTO; /* nothing comes after "ready" until a create */
	if (rv == 0 && (sscanf(buf, "ready core=%15s mib=%llu", core, &mib) != 2 ||
			mib != s->mib))
		rv = -EPROTO;
	if (rv == 0) {
		snprintf(s->core, sizeof(s->core), "%s", core);
		rv = spare_connect(a, s);
	}
	if (rv < 0) {
		char path[4096];

		snprintf(path, sizeof(path), "%s/spare.log", a->rundir);
		why = rv == -EPIPE ? dom_log_last_line_at(a, path, s->pid) : NULL;
		if (rv == -EPIPE)
			msg = talloc_asprintf(a, "exited: %s", why ? why : "nothing logged (killed?)");
		else
			msg = talloc_asprintf(a, "%s", strerror(-rv));
		spare_drop(a, msg ? msg : "failed", true);
		talloc_free(why);
		talloc_free(msg);
		return rv;
	}
	s->ready = true;
	a->spare_failures = 0;
	agent_log(a, "spare process %d ready: core %s, %llu MiB prepared (%.1f ms)", (int)s->pid,
		  s->core, mib, agent_mono_s() * 1e3 - s->t_spawn);
	return 0;
}

void spare_event(struct agent *a)
{
	if (a->spare)
		spare_read(a, 0);
}

void spare_reaped(struct agent *a, pid_t pid)
{
	if (a->spare && a->spare->pid == pid)
		a->spare->reaped = true; /* spare_read sees its EOF next */
}

/* The process is stopped or traced (state T or t in /proc/PID/stat). */
static bool spare_stopped(pid_t pid)
{
	char path[64], buf[256], *p;
	ssize_t n;
	int fd;

	snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return false; /* gone: the poll above or the create call sees it */
	n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (n <= 0)
		return false;
	buf[n] = '\0';
	p = strrchr(buf, ')'); /* the command name may hold anything */
	return p && p[1] == ' ' && (p[2] == 'T' || p[2] == 't');
}

int spare_take(struct agent *a, struct adom *d, const char *core, uint64_t mib, int *handoff)
{
	struct spare *s = a->spare;
	struct pollfd pfd;
	int rv;

	if (!s || s->mib != mib || (strcmp(core, "kvm") && strcmp(core, "auto")))
		return -ENOENT;
	if (!s->ready) {
		/* Still starting: it is ahead of a cold start all the same. */
		rv = spare_read(a, SPARE_READY_MS);
		if (rv < 0) {
			if (rv == -ETIMEDOUT)
				spare_drop(a, "not ready in time", true);
			return -ENOENT;
		}
	}
	if (strcmp(s->core, "kvm") != 0) {
		spare_drop(a, "not on the kvm core", true);
		return -ENOENT;
	}
	/* Gone since (killed)?  Its end of the handoff socket closed: a cold start then. */
	pfd.fd = s->handoff;
	pfd.events = POLLIN;
	if (poll(&pfd, 1, 0) != 0 || s->reaped) {
		spare_drop(a, "gone before it was taken", true);
		return -ENOENT;
	}
	/* Stopped (SIGSTOP, a debugger)?  Its create would wait for the create timeout. */
	if (spare_stopped(s->pid)) {
		spare_drop(a, "stopped when it was to be taken", true);
		return -ENOENT;
	}
	a->spare = NULL;
	d->pid = s->pid;
	d->our_child = true;
	d->rpc = talloc_steal(d, s->rpc);
	d->sub = talloc_steal(d, s->sub);
	d->sub_fd = s->sub_fd;
	*handoff = s->handoff;
	s->handoff = -1;
	talloc_free(s);
	a->spare_after_reply = true;
	return 0;
}

void spare_note_create(struct agent *a, const char *core, uint64_t mib)
{
	if (strcmp(core, "kvm") && !(strcmp(core, "auto") == 0 && a->kvm_usable))
		return;
	a->spare_failures = 0; /* kvm works here */
	if (a->spare_cfg == AGENT_SPARE_AUTO && mib != a->spare_mib) {
		a->spare_mib = mib;
		if (a->spare) {
			char why[64];

			snprintf(why, sizeof(why), "replaced by one of %llu MiB",
				 (unsigned long long)mib);
			spare_drop(a, why, false);
		}
	}
	a->spare_after_reply = true;
}

void spare_stop(struct agent *a)
{
	struct spare *s = a->spare;
	int i;

	if (!s)
		return;
	a->spare = NULL;
	if (!s->reaped) {
		/* SIGTERM: it removes its files and exits at once */
		kill(s->pid, SIGTERM);
		for (i = 0; i < 100 && waitpid(s->pid, NULL, WNOHANG) == 0; i++)
			usleep(10000);
		if (i == 100) {
			kill(s->pid, SIGKILL);
			waitpid(s->pid, NULL, 0);
		}
	}
	spare_files_gone(a, s->pid);
	talloc_free(s);
}

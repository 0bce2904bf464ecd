/*
 * xst-domain: start-up and shutdown of the domain process (docs/domain-process.md).
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <malloc.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <talloc.h>

#include "core/dom.h"

void dom_log(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	fprintf(stderr, "xst-domain[%d]: ", (int)getpid());
	vfprintf(stderr, fmt, ap);
	fputc('\n', stderr);
	va_end(ap);
}

/*
 * SIGTERM / SIGINT: a destroy without the control service (an agent or an operator
 * killing the process).  Blocked in every thread and taken by this one, which removes
 * the run-directory files and exits at once: the guest's memory goes with the process.
 */
static void *signal_thread(void *arg)
{
	struct dom *d = arg;
	sigset_t set;
	int sig = 0;

	sigemptyset(&set);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGINT);
	if (sigwait(&set, &sig) != 0)
		return NULL;
	if (__atomic_load_n(&d->spare, __ATOMIC_ACQUIRE))
		dom_log("spare: signal %d: exiting", sig);
	else
		dom_log("domain %u: signal %d: destroying", d->domid, sig);
	unlink(__atomic_load_n(&d->state_path, __ATOMIC_ACQUIRE));
	unlink(__atomic_load_n(&d->console_path, __ATOMIC_ACQUIRE));
	unlink(__atomic_load_n(&d->ipc_url, __ATOMIC_ACQUIRE) + strlen("ipc://"));
	unlink(__atomic_load_n(&d->events_url, __ATOMIC_ACQUIRE) + strlen("ipc://"));
	_exit(0);
}

static void usage(void)
{
	fprintf(stderr, "usage: xst-domain --rundir DIR (--domid N | --spare MIB --handoff-fd FD)\n"
			"                  [--core NAME] [--handoff-fd FD] [--log FILE]\n");
}

int dom_take(struct dom *d, uint32_t domid, char *why, size_t len)
{
	char *ipc, *ev, *con, *st, *log;
	int fd, ret;

	if (domid < 1 || domid > 32751) {
		snprintf(why, len, "domid %u out of range 1..32751", domid);
		return -EINVAL;
	}
	ipc = talloc_asprintf(d, "ipc://%s/dom-%u.ipc", d->rundir, domid);
	ev = talloc_asprintf(d, "ipc://%s/dom-%u.events", d->rundir, domid);
	con = talloc_asprintf(d, "%s/dom-%u.console", d->rundir, domid);
	st = talloc_asprintf(d, "%s/dom-%u.state", d->rundir, domid);
	log = talloc_asprintf(d, "%s/dom-%u.log", d->rundir, domid);
	if (!ipc || !ev || !con || !st || !log)
		return -ENOMEM;
	/* From here on the domain's own log, where the agent looks for its last words. */
	fd = open(log, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0640);
	if (fd < 0 || dup2(fd, STDERR_FILENO) < 0) {
		ret = -errno;
		snprintf(why, len, "log %s: %s", log, strerror(-ret));
		if (fd >= 0)
			close(fd);
		return ret;
	}
	close(fd);
	/* The sockets keep their connections (the agent dialed the spare's names); the
	 * names change so that everything after create looks like a cold start. */
	if (rename(d->ipc_url + strlen("ipc://"), ipc + strlen("ipc://")) < 0 ||
	    rename(d->events_url + strlen("ipc://"), ev + strlen("ipc://")) < 0) {
		ret = -errno;
		snprintf(why, len, "renaming the spare's sockets: %s", strerror(-ret));
		return ret;
	}
	ret = console_rename(d->con, con);
	if (ret < 0) {
		snprintf(why, len, "renaming the spare's console: %s", strerror(-ret));
		return ret;
	}
	/* The signal thread may read these at any time: whole pointers, old strings kept. */
	__atomic_store_n(&d->ipc_url, ipc, __ATOMIC_RELEASE);
	__atomic_store_n(&d->events_url, ev, __ATOMIC_RELEASE);
	__atomic_store_n(&d->console_path, con, __ATOMIC_RELEASE);
	__atomic_store_n(&d->state_path, st, __ATOMIC_RELEASE);
	d->domid = domid;
	__atomic_store_n(&d->spare, false, __ATOMIC_RELEASE);
	dom_log("domain %u: taken from spare (%s, %llu MiB prepared)", domid,
		xst_hv_name(d->hv), (unsigned long long)(d->spare_vm ? d->spare_mib : 0));
	return 0;
}

static int parse_args(struct dom *d, int argc, char **argv)
{
	static const struct option opts[] = {
		{"rundir", required_argument, NULL, 'r'},
		{"domid", required_argument, NULL, 'd'},
		{"spare", required_argument, NULL, 's'},
		{"core", required_argument, NULL, 'c'},
		{"handoff-fd", required_argument, NULL, 'H'},
		{"log", required_argument, NULL, 'l'},
		{"help", no_argument, NULL, 'h'},
		{NULL, 0, NULL, 0},
	};
	char *end;
	long v;
	int o, fd;

	d->core_name = "auto";
	d->handoff_fd = -1;
	while ((o = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		switch (o) {
		case 'r':
			d->rundir = optarg;
			break;
		case 'd':
			v = strtol(optarg, &end, 10);
			if (*end || v < 1 || v > 32751) {
				dom_log("bad --domid \"%s\" (1..32751)", optarg);
				return -EINVAL;
			}
			d->domid = v;
			break;
		case 's':
			v = strtol(optarg, &end, 10);
			if (*end || v < 0 || v > (1L << 20)) {
				dom_log("bad --spare \"%s\" (MiB, 0..1048576)", optarg);
				return -EINVAL;
			}
			d->spare = true;
			d->spare_mib = (uint64_t)v;
			break;
		case 'c':
			d->core_name = optarg;
			break;
		case 'H':
			v = strtol(optarg, &end, 10);
			if (*end || v < 0 || fcntl(v, F_GETFD) < 0) {
				dom_log("bad --handoff-fd \"%s\"", optarg);
				return -EINVAL;
			}
			d->handoff_fd = v;
			break;
		case 'l':
			fd = open(optarg, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0640);
			if (fd < 0 || dup2(fd, STDERR_FILENO) < 0) {
				dom_log("--log %s: %s", optarg, strerror(errno));
				return -errno;
			}
			close(fd);
			break;
		default:
			usage();
			return -EINVAL;
		}
	}
	if (!d->rundir || !!d->domid == d->spare || (d->spare && d->handoff_fd < 0) ||
	    optind != argc) {
		usage();
		return -EINVAL;
	}
	return 0;
}

int main(int argc, char **argv)
{
	struct dom *d;
	char why[256] = "";
	int ret, status = 1;

	signal(SIGPIPE, SIG_IGN);
	/* read_pages/write_pages move 1 MiB buffers: take them from the heap rather than a
	 * fresh mmap each time (page faults dominated the copy); keep at most 8 MiB free. */
	mallopt(M_MMAP_THRESHOLD, 4 << 20);
	mallopt(M_TRIM_THRESHOLD, 8 << 20);
	d = talloc_zero(NULL, struct dom);
	if (!d)
		return 1;
	pthread_mutex_init(&d->lock, NULL);
	pthread_mutex_init(&d->pub_lock, NULL);
	pthread_cond_init(&d->cond, NULL);
	d->state = DOM_CREATED;
	d->shutdown_reason = -1;
	if (parse_args(d, argc, argv) < 0)
		goto out;
	/* Outlive the agent that spawned us (fails harmlessly if already a leader). */
	setsid();
	if (d->spare) {
		/* unique while this process lives; dom_take renames them dom-<domid>.* */
		unsigned int pid = (unsigned int)getpid();

		d->ipc_url = talloc_asprintf(d, "ipc://%s/spare-%u.ipc", d->rundir, pid);
		d->events_url = talloc_asprintf(d, "ipc://%s/spare-%u.events", d->rundir, pid);
		d->console_path = talloc_asprintf(d, "%s/spare-%u.console", d->rundir, pid);
		d->state_path = talloc_asprintf(d, "%s/spare-%u.state", d->rundir, pid);
	} else {
		d->ipc_url = talloc_asprintf(d, "ipc://%s/dom-%u.ipc", d->rundir, d->domid);
		d->events_url = talloc_asprintf(d, "ipc://%s/dom-%u.events", d->rundir, d->domid);
		d->console_path = talloc_asprintf(d, "%s/dom-%u.console", d->rundir, d->domid);
		d->state_path = talloc_asprintf(d, "%s/dom-%u.state", d->rundir, d->domid);
	}
	if (!d->ipc_url || !d->events_url || !d->console_path || !d->state_path)
		goto out;
	{
		sigset_t set;
		pthread_t t;

		sigemptyset(&set);
		sigaddset(&set, SIGTERM);
		sigaddset(&set, SIGINT);
		/* before any other thread exists, so all of them inherit the mask */
		pthread_sigmask(SIG_BLOCK, &set, NULL);
		if (pthread_create(&t, NULL, signal_thread, d) != 0) {
			dom_log("signal thread: %s", strerror(errno));
			goto out;
		}
		pthread_detach(t);
	}

	ret = xst_hv_open(d, d->core_name, &d->hv, why, sizeof(why));
	if (ret < 0) {
		dom_log("core %s: %s", d->core_name, why);
		goto out;
	}
	ret = console_open(d, d->console_path, &d->con);
	if (ret < 0) {
		dom_log("console %s: %s", d->console_path, strerror(-ret));
		goto out;
	}
	ret = xst_rpc_listen(d, d->ipc_url, &d->rpc);
	if (ret < 0) {
		dom_log("listen %s: %s", d->ipc_url, strerror(-ret));
		goto out;
	}
	ret = xst_rpc_publish(d, d->events_url, &d->pub);
	if (ret < 0) {
		dom_log("listen %s: %s", d->events_url, strerror(-ret));
		goto out;
	}
	if (d->spare && d->spare_mib) {
		ret = xst_vm_prepare(d->hv, d->spare_mib * 1024, &d->spare_vm);
		if (ret < 0 && ret != -EOPNOTSUPP) {
			dom_log("spare: preparing a %llu MiB vm on %s: %s",
				(unsigned long long)d->spare_mib, xst_hv_name(d->hv), strerror(-ret));
			goto out;
		}
	}
	if (d->spare) {
		char msg[64];
		int n = snprintf(msg, sizeof(msg), "ready core=%s mib=%llu", xst_hv_name(d->hv),
				 (unsigned long long)(d->spare_vm ? d->spare_mib : 0));

		if (send(d->handoff_fd, msg, (size_t)n, MSG_NOSIGNAL) != n) {
			dom_log("handoff: %s", strerror(errno));
			goto out;
		}
	} else if (d->handoff_fd >= 0 && send(d->handoff_fd, "ready", 5, MSG_NOSIGNAL) != 5) {
		dom_log("handoff: %s", strerror(errno));
		goto out;
	}
	status = dom_serve(d);
out:
	if (d->handoff_fd >= 0)
		close(d->handoff_fd);
	dom_vcpus_stop(d);
	if (d->con)
		console_close(d->con);
	d->con = NULL;
	talloc_free(d->spare_vm);
	d->spare_vm = NULL;
	if (d->vm) {
		struct xst_vm *vm = d->vm;
		__atomic_store_n(&d->vm, NULL, __ATOMIC_RELEASE);
		talloc_free(vm);
	}
	if (d->state_path)
		unlink(d->state_path);
	if (d->rpc) {
		/* give the last reply time to leave before the socket closes */
		usleep(50000);
		unlink(d->ipc_url + strlen("ipc://"));
	}
	if (d->pub)
		unlink(d->events_url + strlen("ipc://"));
	talloc_free(d);
	return status;
}

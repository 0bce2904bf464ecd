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
	dom_log("domain %u: signal %d: destroying", d->domid, sig);
	unlink(d->state_path);
	unlink(d->console_path);
	unlink(d->ipc_url + strlen("ipc://"));
	unlink(d->events_url + strlen("ipc://"));
	_exit(0);
}

static void usage(void)
{
	fprintf(stderr, "usage: xst-domain --rundir DIR --domid N [--core NAME] "
			"[--handoff-fd FD] [--log FILE]\n");
}

static int parse_args(struct dom *d, int argc, char **argv)
{
	static const struct option opts[] = {
		{"rundir", required_argument, NULL, 'r'},
		{"domid", required_argument, NULL, 'd'},
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
	if (!d->rundir || !d->domid || optind != argc) {
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
	d->ipc_url = talloc_asprintf(d, "ipc://%s/dom-%u.ipc", d->rundir, d->domid);
	d->events_url = talloc_asprintf(d, "ipc://%s/dom-%u.events", d->rundir, d->domid);
	d->console_path = talloc_asprintf(d, "%s/dom-%u.console", d->rundir, d->domid);
	d->state_path = talloc_asprintf(d, "%s/dom-%u.state", d->rundir, d->domid);
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
	if (d->handoff_fd >= 0 && send(d->handoff_fd, "ready", 5, MSG_NOSIGNAL) != 5) {
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

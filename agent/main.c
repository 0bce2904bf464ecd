/* xst-agent: options, daemon start-up, and the main loop (see agent.h). */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <talloc.h>

#include "agent/agent.h"
#include "proto/rpc.h"
#include "store/xs_client.h"

static struct agent *the_agent;

static void on_signal(int sig)
{
	if (the_agent)
		the_agent->stop = sig;
}

static void usage(FILE *f)
{
	fprintf(f, "usage: xst-agent [--rundir DIR] [--xenstored SOCKET] [--listen URL]...\n"
		   "                 [--core auto|sim|kvm] [--log FILE] [--dump-dir DIR]\n"
		   "                 [--cpuid-mask FEATURE,...] [--spare auto|off|MIB]\n"
		   "                 [-N|--no-fork]\n");
}

/* <dir of this executable>/../core/xst-domain, unless $XST_DOMAIN names one. */
static const char *find_domain_bin(void *ctx)
{
	const char *env = getenv("XST_DOMAIN");
	char exe[PATH_MAX];
	ssize_t n;
	char *slash;

	if (env && env[0])
		return env;
	n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
	if (n <= 0)
		return "xst-domain";
	exe[n] = '\0';
	slash = strrchr(exe, '/');
	if (slash)
		*slash = '\0';
	return talloc_asprintf(ctx, "%s/../core/xst-domain", exe);
}

static void raise_nofile(void)
{
	struct rlimit rl;

	/* Each domain costs a few descriptors (nng pipes, notification fds). */
	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
		rl.rlim_cur = rl.rlim_max;
		setrlimit(RLIMIT_NOFILE, &rl);
	}
}

static int daemonize(void)
{
	pid_t pid;
	int fd;

	/* Before any nng socket exists: nng is not fork-safe. */
	pid = fork();
	if (pid < 0)
		return -errno;
	if (pid > 0)
		_exit(0);
	if (setsid() < 0)
		return -errno;
	fd = open("/dev/null", O_RDWR | O_CLOEXEC);
	if (fd >= 0) {
		dup2(fd, STDIN_FILENO);
		dup2(fd, STDOUT_FILENO);
		dup2(fd, STDERR_FILENO);
		close(fd);
	}
	return 0;
}

static void loop(struct agent *a)
{
	uint64_t next_tick = (uint64_t)(agent_mono_s() * 1e3) + 1000;

	while (!a->stop) {
		unsigned int n = 0, i, nd = 0;
		struct pollfd *pfd;
		uint32_t *ids;
		struct adom *d;
		uint64_t now;
		int timeout, rv, spare;
		void *tmp = talloc_new(a);

		pfd = talloc_array(tmp, struct pollfd, a->nsrv + a->ndoms + 2);
		ids = talloc_array(tmp, uint32_t, a->ndoms + 1);
		if (!tmp || !pfd || !ids) {
			talloc_free(tmp);
			sleep(1);
			continue;
		}
		for (i = 0; i < a->nsrv; i++) {
			pfd[n].fd = xst_rpc_poll_fd(a->srv[i]);
			pfd[n++].events = POLLIN;
		}
		for (d = a->doms; d; d = d->next) {
			if (d->sub_fd < 0)
				continue;
			ids[nd++] = d->domid;
			pfd[n].fd = d->sub_fd;
			pfd[n++].events = POLLIN;
		}
		spare = spare_fd(a);
		pfd[n].fd = spare; /* poll ignores -1 */
		pfd[n++].events = POLLIN;
		now = (uint64_t)(agent_mono_s() * 1e3);
		timeout = next_tick > now ? (int)(next_tick - now) : 0;
		rv = poll(pfd, n, timeout);
		if (rv < 0 && errno != EINTR)
			agent_log(a, "poll: %s", strerror(errno));
		if (rv > 0) {
			/* First: a spare that died must not be taken by a create below. */
			if (pfd[n - 1].revents && spare_fd(a) == spare)
				spare_event(a);
			for (i = 0; i < a->nsrv; i++)
				if (pfd[i].revents)
					ctl_serve(a, a->srv[i]);
			for (i = 0; i < nd; i++) {
				uint8_t *buf;
				size_t len;

				if (!pfd[a->nsrv + i].revents)
					continue;
				/* The domain may be gone: look it up again. */
				d = adom_by_id(a, ids[i]);
				if (!d || !d->sub)
					continue;
				while (xst_rpc_event_recv(d->sub, 0, tmp, &buf, &len) == 0)
					talloc_free(buf);
				adom_events(d);
			}
		}
		if ((uint64_t)(agent_mono_s() * 1e3) >= next_tick) {
			agent_supervise(a);
			spare_start(a); /* after a failure: one try a tick */
			next_tick = (uint64_t)(agent_mono_s() * 1e3) + 1000;
		}
		talloc_free(tmp);
	}
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
	    {"rundir", required_argument, NULL, 'r'}, {"xenstored", required_argument, NULL, 'x'},
	    {"listen", required_argument, NULL, 'l'}, {"core", required_argument, NULL, 'c'},
	    {"log", required_argument, NULL, 'L'},    {"no-fork", no_argument, NULL, 'N'},
	    {"dump-dir", required_argument, NULL, 'D'},
	    {"cpuid-mask", required_argument, NULL, 'M'},
	    {"spare", required_argument, NULL, 'S'},
	    {"help", no_argument, NULL, 'h'},	      {NULL, 0, NULL, 0},
	};
	struct agent *a;
	char *url;
	int opt, rv;
	unsigned int i;

	a = talloc_zero(NULL, struct agent);
	if (!a)
		return 1;
	the_agent = a;
	a->rundir = "/var/run/xst";
	a->xenstored =
	    getenv("XENSTORED_PATH") ? getenv("XENSTORED_PATH") : "/var/run/xenstored/socket";
	a->core = "auto";
	a->dump_dir = "/var/lib/xen/dump";
	a->log_fd = STDERR_FILENO;
	a->spare_cfg = AGENT_SPARE_AUTO;
	while ((opt = getopt_long(argc, argv, "Nh", opts, NULL)) != -1) {
		switch (opt) {
		case 'r':
			a->rundir = optarg;
			break;
		case 'x':
			a->xenstored = optarg;
			break;
		case 'l':
			if (a->nlisten == AGENT_MAX_LISTEN) {
				fprintf(stderr, "xst-agent: at most %d --listen\n",
					AGENT_MAX_LISTEN);
				return 2;
			}
			a->listen_urls[a->nlisten++] = optarg;
			break;
		case 'c':
			if (strcmp(optarg, "auto") && strcmp(optarg, "sim") &&
			    strcmp(optarg, "kvm")) {
				fprintf(stderr, "xst-agent: unknown core \"%s\"\n", optarg);
				return 2;
			}
			a->core = optarg;
			break;
		case 'L':
			a->log_path = optarg;
			break;
		case 'D':
			a->dump_dir = optarg;
			break;
		case 'M':
			/* hidden from every kvm guest of this host (levelling); the kvm core
			 * in each domain process reads it (plugins/kvm/cpuid.c) */
			if (setenv("XST_KVM_CPUID_MASK", optarg, 1) < 0) {
				fprintf(stderr, "xst-agent: --cpuid-mask: %s\n", strerror(errno));
				return 1;
			}
			break;
		case 'S': {
			char *end;
			long long v;

			if (strcmp(optarg, "auto") == 0) {
				a->spare_cfg = AGENT_SPARE_AUTO;
				break;
			}
			if (strcmp(optarg, "off") == 0) {
				a->spare_cfg = 0;
				break;
			}
			v = strtoll(optarg, &end, 10);
			if (*end || v < 0 || v > (1LL << 20)) {
				fprintf(stderr, "xst-agent: --spare: auto, off or MiB (0..1048576), "
						"not \"%s\"\n", optarg);
				return 2;
			}
			a->spare_cfg = v;
			break;
		}
		case 'N':
			a->no_fork = true;
			break;
		case 'h':
			usage(stdout);
			return 0;
		default:
			usage(stderr);
			return 2;
		}
	}
	if (optind != argc) {
		usage(stderr);
		return 2;
	}
	if (mkdir(a->rundir, 0700) < 0 && errno != EEXIST) {
		fprintf(stderr, "xst-agent: cannot create %s: %s\n", a->rundir, strerror(errno));
		return 1;
	}
	if (!a->log_path && !a->no_fork)
		a->log_path = talloc_asprintf(a, "%s/agent.log", a->rundir);
	rv = agent_log_init(a);
	if (rv < 0) {
		fprintf(stderr, "xst-agent: log %s: %s\n", a->log_path, strerror(-rv));
		return 1;
	}
	if (!a->no_fork && (rv = daemonize()) < 0) {
		fprintf(stderr, "xst-agent: daemonize: %s\n", strerror(-rv));
		return 1;
	}
	signal(SIGPIPE, SIG_IGN);
	signal(SIGTERM, on_signal);
	signal(SIGINT, on_signal);
	raise_nofile();
	a->domain_bin = find_domain_bin(a);
	a->start_time = (uint64_t)time(NULL);
	a->nr_cpus = (unsigned int)sysconf(_SC_NPROCESSORS_ONLN);
	if (a->nr_cpus == 0 || a->nr_cpus > 1024)
		a->nr_cpus = 1;
	a->next_domid = 1;
	agent_log(a, "xst-agent starting: rundir %s, xenstored %s, core %s, domain process %s",
		  a->rundir, a->xenstored, a->core, a->domain_bin);

	rv = xs_client_open(a, a->xenstored, &a->xs);
	if (rv < 0) {
		agent_log(a, "cannot connect to xenstored at %s: %s", a->xenstored, strerror(-rv));
		fprintf(stderr, "xst-agent: cannot connect to xenstored at %s: %s\n", a->xenstored,
			strerror(-rv));
		return 1;
	}
	url = talloc_asprintf(a, "ipc://%s/agent.ipc", a->rundir);
	rv = url ? xst_rpc_listen(a, url, &a->srv[a->nsrv]) : -ENOMEM;
	if (rv < 0) {
		agent_log(a, "listen %s: %s", url, strerror(-rv));
		fprintf(stderr, "xst-agent: listen %s: %s\n", url, strerror(-rv));
		return 1;
	}
	a->nsrv++;
	for (i = 0; i < a->nlisten; i++) {
		rv = xst_rpc_listen(a, a->listen_urls[i], &a->srv[a->nsrv]);
		if (rv < 0) {
			agent_log(a, "listen %s: %s", a->listen_urls[i], strerror(-rv));
			fprintf(stderr, "xst-agent: listen %s: %s\n", a->listen_urls[i],
				strerror(-rv));
			return 1;
		}
		a->nsrv++;
	}
	rv = layout_dom0(a);
	if (rv < 0)
		agent_log(a, "writing Domain-0's xenstore nodes: %s", strerror(-rv));
	rv = pool_init(a);
	if (rv < 0)
		agent_log(a, "cpupools: %s", strerror(-rv));
	rv = agent_adopt_all(a);
	if (rv < 0)
		agent_log(a, "re-adoption: %s", strerror(-rv));
	rv = spare_init(a);
	if (rv < 0)
		agent_log(a, "spare: %s", strerror(-rv));
	if (a->spare_cfg == AGENT_SPARE_AUTO)
		agent_log(a, "spare: auto (the size of the last kvm domain created)");
	else if (a->spare_cfg)
		agent_log(a, "spare: %lld MiB", (long long)a->spare_cfg);
	else
		agent_log(a, "spare: off");
	spare_start(a);
	agent_log(a, "serving on %s (%u domains)", url, a->ndoms);

	loop(a);

	spare_stop(a);

	agent_log(a, "stopping on signal %d; %u domains keep running", (int)a->stop, a->ndoms);
	talloc_free(a);
	return 0;
}

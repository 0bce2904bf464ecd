/* xstored: a xenstored speaking Xen's wire protocol (docs/xstored.md).
 *
 * main() parses Xen-compatible options, creates the listening socket, optionally
 * daemonizes, and runs one epoll loop until SIGTERM/SIGINT; on exit everything is
 * freed (the talloc tree, the node tree) so valgrind reports no leak. */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <sys/stat.h>
#include <sys/timerfd.h>
#include <talloc.h>
#include <unistd.h>

#include "store/lu_stream.h"
#include "store/xs_client.h"
#include "store/xstored.h"

static bool quit;

static void timer_event(struct ev_source *src, uint32_t events)
{
	uint64_t ticks;

	if (read(src->fd, &ticks, sizeof(ticks)) == (ssize_t)sizeof(ticks)) {
		conn_expire_events();
		lu_tick();
	}
}

static void signal_event(struct ev_source *src, uint32_t events)
{
	struct signalfd_siginfo si;

	if (read(src->fd, &si, sizeof(si)) == (ssize_t)sizeof(si))
		quit = true;
}

static void usage(FILE *f)
{
	fprintf(
	    f,
	    "Usage: xstored [options]\n"
	    "  --socket PATH            listen on PATH (default $XENSTORED_PATH, else\n"
	    "                           $XENSTORED_RUNDIR/socket, else /var/run/xenstored/socket)\n"
	    "  -N, --no-fork            stay in the foreground\n"
	    "  -F, --pid-file FILE      write the daemon's pid to FILE\n"
	    "  -P, --output-pid         print the pid on stdout\n"
	    "  -T, --trace-file FILE    trace every message to FILE\n"
	    "  -E, --entry-nb N         nodes per domain quota\n"
	    "  -W, --watch-nb N         watches per domain quota\n"
	    "  -t, --transaction N      transactions per domain quota\n"
	    "  -S, --entry-size N       max node size\n"
	    "  -M, --path-max N         max path length (at most 2048)\n"
	    "  -A, --perm-nb N          max permissions per node\n"
	    "  -Q, --quota NAME=VAL     set a quota (nodes, watches, transactions, outstanding,\n"
	    "                           transaction-nodes, memory, node-size, path-max,\n"
	    "                           permissions)\n"
	    "  -q, --quota-soft NAME=VAL  set a soft quota (memory)\n"
	    "  -p, --priv-domid ID      domain treated as privileged\n"
	    "  -K, --keep-orphans       keep nodes of released domains (owned by priv domid)\n"
	    "  -w watch-event=SECS      drop events a domain leaves unread that long (20)\n"
	    "  --poll-us N              after serving requests, poll for the next one for up\n"
	    "                           to N microseconds before sleeping (50; 0 = never;\n"
	    "                           at most 1000)\n"
	    "  -U, --live-update        started by a live update: restore the state file\n"
	    "  --check-stream FILE      check a live-update state stream, print a summary\n"
	    "  --inspect-state FILE     print a state stream in readable form\n"
	    "  --dump-state FILE        ask the running daemon to write its state to FILE\n"
	    "  -D, -R, -I, -V, -e, -m   accepted for compatibility\n"
	    "  -h, --help               this text\n"
	    "Environment: XSTORED_LU_NO_MEMFD=1 makes a live update pass its state in the\n"
	    "state file ($XENSTORED_RUNDIR/state_dump, or next to the socket) instead of a\n"
	    "sealed memfd (the fallback for hosts without memfd; for tests and operators).\n");
}

static int set_quota_arg(const char *arg, bool soft)
{
	const char *eq = strchr(arg, '=');
	char name[64];
	int q, v;

	if (!eq || (size_t)(eq - arg) >= sizeof(name))
		return -EINVAL;
	memcpy(name, arg, (size_t)(eq - arg));
	name[eq - arg] = '\0';
	q = quota_by_name(name);
	v = atoi(eq + 1);
	if (q < 0 || v < 0 || (soft && !quotas[q].soft))
		return -EINVAL;
	if (soft)
		quotas[q].soft = v;
	else
		quotas[q].hard = v;
	return 0;
}

static int num_arg(const char *s, int *out)
{
	char *e;
	long v = strtol(s, &e, 10);

	if (*s == '\0' || *e != '\0' || v < 0 || v > 1000000000)
		return -EINVAL;
	*out = (int)v;
	return 0;
}

static void raise_nofile(void)
{
	struct rlimit rl;

	if (getrlimit(RLIMIT_NOFILE, &rl) < 0)
		return;
	if (rl.rlim_max < 65536) {
		struct rlimit big = {65536, 65536};
		if (setrlimit(RLIMIT_NOFILE, &big) == 0)
			return;
	}
	rl.rlim_cur = rl.rlim_max;
	setrlimit(RLIMIT_NOFILE, &rl);
}

static int mkdir_parent(const char *path)
{
	char *d = strdup(path), *s;

	if (!d)
		return -ENOMEM;
	s = strrchr(d, '/');
	if (s && s != d) {
		*s = '\0';
		if (mkdir(d, 0755) < 0 && errno != EEXIST) {
			free(d);
			return -errno;
		}
	}
	free(d);
	return 0;
}

/* --check-stream (the live-update pre-flight), --inspect-state, --dump-state. */
static int lu_offline(const char *check, const char *inspect, const char *dump,
		      const char *socket_path)
{
	void *ctx = talloc_new(NULL);
	const char *buf;
	char err[256];
	size_t len;
	int ret;

	if (dump) {
		const char *args[] = {"dump-state", dump};
		struct xs_client *xc;
		char *reply;
		ret = xs_client_open(ctx, socket_path, &xc);
		if (ret == 0)
			ret = xs_client_control(xc, args, 2, ctx, &reply);
		if (ret < 0)
			fprintf(stderr, "xstored: dump-state: %s: %s\n", socket_path, strerror(-ret));
		talloc_free(ctx);
		return ret < 0 ? 1 : 0;
	}
	/* a gated pre-flight (lu.c): the stream is checked as it is written, following
	 * the watermarks on stdin; it is complete (and sealed) once stdin reaches EOF */
	if (check && getenv("XSTORED_CHECK_WAIT")) {
		struct lu_summary sum;
		unsigned long followed;
		ret = lu_stream_check_follow(check, 0, &sum, &followed, err, sizeof(err));
		if (ret < 0)
			printf("invalid stream: %s\n", err);
		else
			printf("xstored-stream-ok nodes %lu connections %lu transactions %lu "
			       "followed %lu\n",
			       sum.nodes, sum.conns, sum.txns, followed);
		talloc_free(ctx);
		return ret < 0 ? 1 : 0;
	}
	ret = lu_file_map(ctx, check ? check : inspect, &buf, &len, NULL);
	if (ret < 0) {
		fprintf(stderr, "xstored: %s: %s\n", check ? check : inspect, strerror(-ret));
	} else if (check) {
		struct lu_summary sum;
		ret = lu_stream_check(buf, len, &sum, err, sizeof(err));
		if (ret < 0)
			printf("invalid stream: %s\n", err);
		else
			printf("xstored-stream-ok nodes %lu connections %lu transactions %lu\n",
			       sum.nodes, sum.conns, sum.txns);
	} else {
		ret = lu_stream_print(stdout, buf, len);
	}
	talloc_free(ctx);
	return ret < 0 ? 1 : 0;
}

int main(int argc, char **argv)
{
	static const struct option longopts[] = {
	    {"socket", required_argument, NULL, 's' + 256},
	    {"no-fork", no_argument, NULL, 'N'},
	    {"pid-file", required_argument, NULL, 'F'},
	    {"output-pid", no_argument, NULL, 'P'},
	    {"trace-file", required_argument, NULL, 'T'},
	    {"entry-nb", required_argument, NULL, 'E'},
	    {"watch-nb", required_argument, NULL, 'W'},
	    {"transaction", required_argument, NULL, 't'},
	    {"entry-size", required_argument, NULL, 'S'},
	    {"path-max", required_argument, NULL, 'M'},
	    {"perm-nb", required_argument, NULL, 'A'},
	    {"quota", required_argument, NULL, 'Q'},
	    {"quota-soft", required_argument, NULL, 'q'},
	    {"priv-domid", required_argument, NULL, 'p'},
	    {"keep-orphans", no_argument, NULL, 'K'},
	    {"no-domain-init", no_argument, NULL, 'D'},
	    {"no-recovery", no_argument, NULL, 'R'},
	    {"internal-db", optional_argument, NULL, 'I'},
	    {"verbose", no_argument, NULL, 'V'},
	    {"event", required_argument, NULL, 'e'},
	    {"master-domid", required_argument, NULL, 'm'},
	    {"timeout", required_argument, NULL, 'w'},
	    {"live-update", no_argument, NULL, 'U'},
	    {"poll-us", required_argument, NULL, 'p' + 512},
	    {"check-stream", required_argument, NULL, 'c' + 512},
	    {"inspect-state", required_argument, NULL, 'i' + 512},
	    {"dump-state", required_argument, NULL, 'd' + 512},
	    {"help", no_argument, NULL, 'h'},
	    {NULL, 0, NULL, 0},
	};
	const char *pidfile = NULL, *socket_path = NULL;
	bool nofork = false, print_pid = false, live_update = false;
	const char *check_stream = NULL, *inspect_state = NULL, *dump_state = NULL;
	struct ev_source *listener, sigsrc = {.fd = -1, .fn = signal_event};
	struct ev_source timersrc = {.fd = -1, .fn = timer_event};
	struct itimerspec every_second = {{1, 0}, {1, 0}};
	char defpath[4096];
	sigset_t mask;
	int opt, v, ret = 1;

	while ((opt = getopt_long(argc, argv, "NF:PT:E:W:t:S:M:A:Q:q:p:KDRI::Ve:m:w:Uh", longopts,
				  NULL)) != -1) {
		int err = 0;

		switch (opt) {
		case 's' + 256:
			socket_path = optarg;
			break;
		case 'N':
			nofork = true;
			break;
		case 'F':
			pidfile = optarg;
			break;
		case 'P':
			print_pid = true;
			break;
		case 'T':
			opts.trace_file = optarg;
			break;
		case 'E':
			err = num_arg(optarg, &quotas[Q_NODES].hard);
			break;
		case 'W':
			err = num_arg(optarg, &quotas[Q_WATCHES].hard);
			break;
		case 't':
			err = num_arg(optarg, &quotas[Q_TRANSACTIONS].hard);
			break;
		case 'S':
			err = num_arg(optarg, &quotas[Q_NODE_SIZE].hard);
			break;
		case 'M':
			err = num_arg(optarg, &v);
			if (!err)
				quotas[Q_PATH_MAX].hard = v < XS_REL_PATH_MAX ? v : XS_REL_PATH_MAX;
			break;
		case 'A':
			err = num_arg(optarg, &quotas[Q_PERMISSIONS].hard);
			break;
		case 'Q':
			err = set_quota_arg(optarg, false);
			break;
		case 'q':
			err = set_quota_arg(optarg, true);
			break;
		case 'p':
			err = num_arg(optarg, &opts.priv_domid);
			break;
		case 'K':
			opts.keep_orphans = true;
			break;
		case 'V':
			opts.verbose = true;
			break;
		case 'D':
		case 'R':
		case 'I':
		case 'e':
		case 'm':
			break;
		case 'w':
			if (strncmp(optarg, "watch-event=", 12) == 0)
				err = num_arg(optarg + 12, &opts.watch_event_timeout);
			else
				err = -EINVAL;
			break;
		case 'U':
			live_update = true;
			break;
		case 'p' + 512:
			err = num_arg(optarg, &v);
			if (!err && v > 1000)
				err = -EINVAL;
			if (!err)
				opts.poll_us = v;
			break;
		case 'c' + 512:
			check_stream = optarg;
			break;
		case 'i' + 512:
			inspect_state = optarg;
			break;
		case 'd' + 512:
			dump_state = optarg;
			break;
		case 'h':
			usage(stdout);
			return 0;
		default:
			usage(stderr);
			return 1;
		}
		if (err) {
			const struct option *o = longopts;
			while (o->name && o->val != opt)
				o++;
			if (o->name)
				fprintf(stderr, "xstored: invalid argument for --%s: %s\n", o->name,
					optarg);
			else
				fprintf(stderr, "xstored: invalid argument for -%c: %s\n", opt,
					optarg);
			return 1;
		}
	}
	if (optind < argc) {
		fprintf(stderr, "xstored: unexpected argument %s\n", argv[optind]);
		return 1;
	}
	if (!socket_path)
		socket_path = getenv("XENSTORED_PATH");
	if (!socket_path) {
		const char *rundir = getenv("XENSTORED_RUNDIR");
		snprintf(defpath, sizeof(defpath), "%s/socket",
			 rundir ? rundir : "/var/run/xenstored");
		socket_path = defpath;
	}
	opts.socket_path = socket_path;
	if (check_stream || inspect_state || dump_state)
		return lu_offline(check_stream, inspect_state, dump_state, socket_path);

	signal(SIGPIPE, SIG_IGN);
	raise_nofile();
	xsd_ctx = talloc_named_const(NULL, 0, "xstored");
	if (!xsd_ctx || loop_init() < 0) {
		fprintf(stderr, "xstored: init failed\n");
		return 1;
	}
	if (opts.trace_file && trace_open(opts.trace_file) < 0) {
		fprintf(stderr, "xstored: cannot open trace file %s: %s\n", opts.trace_file,
			strerror(errno));
		goto out;
	}
	if (domain_init() < 0 || node_tree_init() < 0 || watch_init() < 0) {
		fprintf(stderr, "xstored: out of memory\n");
		goto out;
	}
	lu_init(argc, argv, -1);
	if (live_update) {
		const char *state = getenv("XSTORED_LU_STATE");
		if (!state)
			state = lu_state_path(xsd_ctx, socket_path);
		if (!state || lu_startup(state) < 0)
			goto out;
		nofork = true;
		print_pid = false;
	} else {
		mkdir_parent(socket_path);
		if ((v = socket_listen(socket_path, &listener)) < 0) {
			fprintf(stderr, "xstored: cannot listen on %s: %s\n", socket_path,
				strerror(-v));
			goto out;
		}
		lu_init(argc, argv, listener->fd);
	}
	if (!nofork && daemon(0, 0) < 0) {
		fprintf(stderr, "xstored: daemon: %s\n", strerror(errno));
		goto out;
	}
	if (pidfile) {
		FILE *f = fopen(pidfile, "w");
		if (!f) {
			log_err("cannot write pid file %s: %s", pidfile, strerror(errno));
			goto out;
		}
		fprintf(f, "%ld\n", (long)getpid());
		fclose(f);
	}
	if (print_pid) {
		printf("%ld\n", (long)getpid());
		fflush(stdout);
	}
	sigemptyset(&mask);
	sigaddset(&mask, SIGTERM);
	sigaddset(&mask, SIGINT);
	sigprocmask(SIG_BLOCK, &mask, NULL);
	sigsrc.fd = signalfd(-1, &mask, SFD_CLOEXEC | SFD_NONBLOCK);
	if (sigsrc.fd < 0 || loop_add(&sigsrc, EPOLLIN) < 0) {
		log_err("signalfd: %s", strerror(errno));
		goto out;
	}

	timersrc.fd = timerfd_create(CLOCK_MONOTONIC, TFD_CLOEXEC | TFD_NONBLOCK);
	if (timersrc.fd < 0 || timerfd_settime(timersrc.fd, 0, &every_second, NULL) < 0 ||
	    loop_add(&timersrc, EPOLLIN) < 0) {
		log_err("timerfd: %s", strerror(errno));
		goto out;
	}

	while (!quit) {
		struct epoll_event evs[64];
		int n = loop_wait(evs, 64);

		if (n < 0) {
			if (n == -EINTR)
				continue;
			log_err("epoll_wait: %s", strerror(-n));
			break;
		}
		for (int i = 0; i < n; i++) {
			struct ev_source *src = evs[i].data.ptr;
			src->fn(src, evs[i].events);
		}
		lu_poll();
		conn_flush_dirty();
		conn_reap();
		trace_flush();
	}
	ret = 0;
	unlink(socket_path);
	if (pidfile)
		unlink(pidfile);
out:
	conn_reap();
	talloc_free(xsd_ctx);
	conn_reap();
	node_tree_free();
	ops_free();
	domain_free_all();
	trace_close();
	if (sigsrc.fd >= 0)
		close(sigsrc.fd);
	if (timersrc.fd >= 0)
		close(timersrc.fd);
	loop_fini();
	return ret;
}

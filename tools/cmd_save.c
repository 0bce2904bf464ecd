/* save, restore (xl's flags), and the progress display shared with migrate. */
#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <talloc.h>

#include "proto/rpc.h"
#include "tools/xst.h"

int xst_call_progress(void *ctx, Xstagent__Request *req, Xstagent__Reply **rep,
		      const char *label, const char *file, void (*on_int)(void *), void *arg);

static volatile sig_atomic_t got_int;

static void on_sigint(int sig)
{
	(void)sig;
	got_int = 1;
}

static double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

/*
 * xst_call, waiting for a long request asynchronously: on a terminal, a progress line
 * (elapsed time, and the size of `file` while the agent writes it) is redrawn five times
 * a second.  Ctrl-C calls on_int once (when given) and keeps waiting for the answer.
 */
int xst_call_progress(void *ctx, Xstagent__Request *req, Xstagent__Reply **rep,
		      const char *label, const char *file, void (*on_int)(void *), void *arg)
{
	static const char spin[] = "|/-\\";
	struct sigaction sa = { .sa_handler = on_sigint }, old;
	struct xst_rpc_async *as;
	struct xst_rpc *rpc;
	ProtobufCMessage *m;
	bool tty = isatty(STDOUT_FILENO), interrupted = false;
	double t0 = now_s();
	uint8_t *buf, *out;
	size_t len, olen;
	unsigned int tick = 0;
	int efd, rv;

	*rep = NULL;
	rv = xst_rpc_pack(&req->base, ctx, &buf, &len);
	if (rv < 0)
		return xst_err("%s", strerror(-rv)), rv;
	rv = xst_rpc_dial(ctx, xst_agent_url, &rpc);
	if (rv < 0) {
		xst_err("cannot reach the agent at %s: %s", xst_agent_url, strerror(-rv));
		return rv;
	}
	efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (efd < 0)
		return xst_err("eventfd: %s", strerror(errno)), -errno;
	rv = xst_rpc_async_start(rpc, ctx, buf, len, 3600 * 1000, efd, &as);
	if (rv < 0) {
		close(efd);
		xst_err("cannot call the agent: %s", strerror(-rv));
		return rv;
	}
	sigemptyset(&sa.sa_mask);
	sigaction(SIGINT, &sa, &old);
	while (!xst_rpc_async_done(as)) {
		struct pollfd p = { .fd = efd, .events = POLLIN };

		poll(&p, 1, 200);
		if (got_int && !interrupted) {
			interrupted = true;
			if (on_int)
				on_int(arg);
		}
		if (tty) {
			struct stat st;

			printf("\r%s %c %6.1f s", label, spin[tick++ % 4], now_s() - t0);
			if (file && stat(file, &st) == 0)
				printf("  %8.1f MiB written", st.st_size / 1048576.0);
			if (interrupted)
				printf("  (cancelling)");
			fflush(stdout);
		}
	}
	sigaction(SIGINT, &old, NULL);
	if (tty) {
		printf("\r\033[K");
		fflush(stdout);
	}
	rv = xst_rpc_async_result(as, ctx, &out, &olen);
	close(efd);
	if (rv < 0) {
		xst_err("no answer from the agent at %s: %s", xst_agent_url, strerror(-rv));
		return rv;
	}
	rv = xst_rpc_unpack(&xstagent__reply__descriptor, out, olen, ctx, &m);
	if (rv < 0) {
		xst_err("malformed answer from the agent");
		return rv;
	}
	*rep = (Xstagent__Reply *)m;
	if ((*rep)->error) {
		xst_err("%s", (*rep)->message ? (*rep)->message : strerror(-(*rep)->error));
		return (*rep)->error < 0 ? (*rep)->error : -EIO;
	}
	return 0;
}

/* The agent opens the file itself: give it an absolute path. */
static char *abs_path(void *ctx, const char *file)
{
	char cwd[PATH_MAX];

	if (file[0] == '/')
		return talloc_strdup(ctx, file);
	if (!getcwd(cwd, sizeof(cwd)))
		return NULL;
	return talloc_asprintf(ctx, "%s/%s", cwd, file);
}

int cmd_save(void *ctx, int argc, char **argv)
{
	static const struct option opts[] = { { NULL, 0, NULL, 0 } };
	Xstagent__Request req = XSTAGENT__REQUEST__INIT;
	Xstagent__Save s = XSTAGENT__SAVE__INIT;
	Xstagent__Reply *rep;
	int opt;

	optind = 1;
	while ((opt = getopt_long(argc, argv, "+cp", opts, NULL)) != -1) {
		switch (opt) {
		case 'c': s.has_checkpoint = s.checkpoint = true; break;
		case 'p': s.has_paused = s.paused = true; break; /* with -c: stay paused */
		default: return xst_usage("unknown option \"%s\"", argv[optind - 1]);
		}
	}
	if (argc - optind != 2)
		return xst_usage("expected DOMAIN and FILE");
	s.dom = argv[optind];
	s.file = abs_path(ctx, argv[optind + 1]);
	if (!s.file)
		return xst_err("%s: %s", argv[optind + 1], strerror(errno));
	req.body_case = XSTAGENT__REQUEST__BODY_SAVE;
	req.save = &s;
	if (xst_call_progress(ctx, &req, &rep, "saving", s.file, NULL, NULL) < 0)
		return 1;
	printf("%s\n", rep->text ? rep->text : "saved");
	return 0;
}

int cmd_restore(void *ctx, int argc, char **argv)
{
	static const struct option opts[] = { { NULL, 0, NULL, 0 } };
	Xstagent__Request req = XSTAGENT__REQUEST__INIT;
	Xstagent__Restore r = XSTAGENT__RESTORE__INIT;
	Xstagent__Reply *rep;
	bool console = false;
	int opt;

	optind = 1;
	while ((opt = getopt_long(argc, argv, "+pec", opts, NULL)) != -1) {
		switch (opt) {
		case 'p': r.has_paused = r.paused = true; break;
		case 'e': break; /* xl: do not wait for the domain's death; xst never waits */
		case 'c': console = true; break;
		default: return xst_usage("unknown option \"%s\"", argv[optind - 1]);
		}
	}
	if (argc - optind != 1)
		return xst_usage("expected one FILE");
	r.file = abs_path(ctx, argv[optind]);
	if (!r.file)
		return xst_err("%s: %s", argv[optind], strerror(errno));
	req.body_case = XSTAGENT__REQUEST__BODY_RESTORE;
	req.restore = &r;
	if (xst_call_progress(ctx, &req, &rep, "restoring", NULL, NULL, NULL) < 0)
		return 1;
	printf("%s\n", rep->text ? rep->text : "restored");
	if (console) {
		Xstagent__Request lq = XSTAGENT__REQUEST__INIT;
		Xstagent__ListReq lr = XSTAGENT__LIST_REQ__INIT;
		Xstagent__Reply *lrep;
		char name[80];

		/* "restored domain N (NAME) from ..." */
		if (!rep->text || sscanf(rep->text, "restored domain %*u (%79[^)])", name) != 1)
			return xst_err("cannot tell the restored domain's name");
		lr.dom = name;
		lq.body_case = XSTAGENT__REQUEST__BODY_LIST;
		lq.list = &lr;
		if (xst_call(ctx, &lq, &lrep) < 0 || lrep->domains->n_domain != 1)
			return 1;
		return cmd_console_connect(lrep->domains->domain[0]->console_path, name);
	}
	return 0;
}

/* xst create (config file + key=value overrides, -p, -c, -n) and xst console. */
#include <errno.h>
#include <getopt.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <termios.h>
#include <unistd.h>

#include <talloc.h>

#include "tools/xlcfg.h"
#include "tools/xst.h"

static void config_to_msg(void *ctx, const struct xlcfg_domain *d, Xstagent__DomainConfig *c)
{
	xstagent__domain_config__init(c);
	c->name = (char *)d->name;
	if (d->has_uuid) {
		c->has_uuid = true;
		c->uuid.len = 16;
		c->uuid.data = talloc_memdup(ctx, d->uuid, 16);
	}
	c->type = (char *)d->type;
	c->memory_mib = d->memory_mib;
	c->maxmem_mib = d->maxmem_mib;
	c->vcpus = d->vcpus;
	c->maxvcpus = d->maxvcpus;
	c->cpus = (char *)d->cpus;
	c->cpu_weight = d->cpu_weight;
	c->cpu_cap = d->cpu_cap;
	c->pool = (char *)d->pool;
	c->kernel = (char *)d->kernel;
	c->ramdisk = (char *)d->ramdisk;
	c->cmdline = (char *)d->cmdline;
	c->on_poweroff = (char *)d->on_poweroff;
	c->on_reboot = (char *)d->on_reboot;
	c->on_crash = (char *)d->on_crash;
	c->on_soft_reset = (char *)d->on_soft_reset;
	c->workload = (char *)d->workload;
	c->core = (char *)d->core;
}

int cmd_create(void *ctx, int argc, char **argv)
{
	static const struct option opts[] = {
	    {"dry-run", no_argument, NULL, 'n'},
	    {"paused", no_argument, NULL, 'p'},
	    {"console", no_argument, NULL, 'c'},
	    {NULL, 0, NULL, 0},
	};
	bool paused = false, console = false, dry = false;
	struct xlcfg *cfg = NULL;
	struct xlcfg_domain d;
	Xstagent__DomainConfig msg;
	Xstagent__Create create = XSTAGENT__CREATE__INIT;
	Xstagent__Request req = XSTAGENT__REQUEST__INIT;
	Xstagent__Reply *rep;
	const char *file;
	char err[512];
	int opt, i, rv;

	optind = 1;
	opterr = 0;
	while ((opt = getopt_long(argc, argv, "+pcn", opts, NULL)) != -1) {
		switch (opt) {
		case 'p':
			paused = true;
			break;
		case 'c':
			console = true;
			break;
		case 'n':
			dry = true;
			break;
		default:
			return xst_usage("unknown option \"%s\"", argv[optind - 1]);
		}
	}
	if (optind >= argc)
		return xst_usage("no config file given");
	file = argv[optind++];
	rv = xlcfg_parse_file(ctx, file, &cfg, err, sizeof(err));
	if (rv < 0)
		return xst_err("%s", err);
	for (i = optind; i < argc; i++) {
		char where[32];

		if (!strchr(argv[i], '='))
			return xst_usage("expected KEY=VALUE, got \"%s\"", argv[i]);
		snprintf(where, sizeof(where), "argument %d", i - optind + 1);
		rv = xlcfg_parse(ctx, talloc_strdup(ctx, where), argv[i], true, &cfg, err,
				 sizeof(err));
		if (rv < 0)
			return xst_err("%s", err);
	}
	rv = xlcfg_resolve(ctx, cfg, file, &d, err, sizeof(err));
	if (rv < 0)
		return xst_err("%s", err);
	config_to_msg(ctx, &d, &msg);
	if (dry) {
		struct xst_json *j;

		if (xst_json_new(ctx, true, &j) < 0)
			return xst_err("out of memory");
		xst_json_config(j, &msg);
		return xst_json_print(j);
	}
	create.config = &msg;
	create.has_paused = true;
	create.paused = paused;
	req.body_case = XSTAGENT__REQUEST__BODY_CREATE;
	req.create = &create;
	if (xst_call(ctx, &req, &rep) < 0)
		return 1;
	if (rep->body_case != XSTAGENT__REPLY__BODY_DOMAINS || rep->domains->n_domain != 1)
		return xst_err("unexpected reply from the agent");
	if (console) {
		Xstagent__Domain *dom = rep->domains->domain[0];

		if (!dom->console_path)
			return xst_err("domain %s has no console", dom->name);
		return cmd_console_connect(dom->console_path, dom->name);
	}
	return 0;
}

/* ---- console ---- */

static struct termios saved_tio;
static bool tio_saved;

static void tio_restore(void)
{
	if (tio_saved)
		tcsetattr(STDIN_FILENO, TCSANOW, &saved_tio);
}

int cmd_console_connect(const char *path, const char *name)
{
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	struct pollfd pfd[2];
	bool in_open = true;
	char buf[4096];
	int fd, rv = 0;

	if (strlen(path) >= sizeof(sa.sun_path))
		return xst_err("console path too long: %s", path);
	strcpy(sa.sun_path, path);
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return xst_err("socket: %s", strerror(errno));
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		rv = xst_err("cannot connect to the console of %s (%s): %s", name, path,
			     strerror(errno));
		close(fd);
		return rv;
	}
	signal(SIGPIPE, SIG_IGN);
	if (isatty(STDIN_FILENO) && tcgetattr(STDIN_FILENO, &saved_tio) == 0) {
		struct termios raw = saved_tio;

		cfmakeraw(&raw);
		if (tcsetattr(STDIN_FILENO, TCSANOW, &raw) == 0) {
			tio_saved = true;
			atexit(tio_restore);
		}
	}
	pfd[0].fd = fd;
	pfd[0].events = POLLIN;
	pfd[1].fd = STDIN_FILENO;
	pfd[1].events = POLLIN;
	for (;;) {
		ssize_t n;

		if (poll(pfd, in_open ? 2 : 1, -1) < 0) {
			if (errno == EINTR)
				continue;
			rv = xst_err("poll: %s", strerror(errno));
			break;
		}
		if (pfd[0].revents) {
			n = read(fd, buf, sizeof(buf));
			if (n <= 0)
				break; /* the domain went away */
			if (write(STDOUT_FILENO, buf, n) != n) {
				rv = 1;
				break;
			}
		}
		if (in_open && pfd[1].revents) {
			n = read(STDIN_FILENO, buf, sizeof(buf));
			if (n <= 0) {
				/* Input closed: keep showing output until the console closes. */
				in_open = false;
				continue;
			}
			/* Ctrl-] detaches, as in xl console. */
			if (memchr(buf, 0x1d, n)) {
				n = (char *)memchr(buf, 0x1d, n) - buf;
				if (n > 0 && write(fd, buf, n) < 0)
					rv = 1;
				break;
			}
			if (write(fd, buf, n) != n) {
				rv = 1;
				break;
			}
		}
	}
	close(fd);
	tio_restore();
	tio_saved = false;
	return rv;
}

int cmd_console(void *ctx, int argc, char **argv)
{
	Xstagent__Request req = XSTAGENT__REQUEST__INIT;
	Xstagent__ListReq lr = XSTAGENT__LIST_REQ__INIT;
	Xstagent__Reply *rep;
	Xstagent__Domain *dom;

	if (argc != 2)
		return xst_usage("expected one DOMAIN");
	lr.dom = argv[1];
	req.body_case = XSTAGENT__REQUEST__BODY_LIST;
	req.list = &lr;
	if (xst_call(ctx, &req, &rep) < 0)
		return 1;
	if (rep->body_case != XSTAGENT__REPLY__BODY_DOMAINS || rep->domains->n_domain != 1)
		return xst_err("unexpected reply from the agent");
	dom = rep->domains->domain[0];
	if (!dom->console_path)
		return xst_err("domain %s has no console", dom->name);
	return cmd_console_connect(dom->console_path, dom->name);
}

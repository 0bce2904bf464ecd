/* The daemon's one epoll set and its global options.  Kept apart from main() so
 * the unit tests and the fuzzer can link every other module. */
#include <errno.h>
#include <sys/epoll.h>
#include <unistd.h>

#include "store/xstored.h"

struct xsd_opts opts = {.priv_domid = -1, .watch_event_timeout = 20};
void *xsd_ctx;
static int epfd = -1;

int loop_init(void)
{
	epfd = epoll_create1(EPOLL_CLOEXEC);
	return epfd < 0 ? -errno : 0;
}

void loop_fini(void)
{
	if (epfd >= 0)
		close(epfd);
	epfd = -1;
}

int loop_wait(struct epoll_event *evs, int max)
{
	int n = epoll_wait(epfd, evs, max, -1);
	return n < 0 ? -errno : n;
}

int loop_add(struct ev_source *src, uint32_t events)
{
	struct epoll_event ev = {.events = events, .data.ptr = src};
	return epoll_ctl(epfd, EPOLL_CTL_ADD, src->fd, &ev) < 0 ? -errno : 0;
}

int loop_mod(struct ev_source *src, uint32_t events)
{
	struct epoll_event ev = {.events = events, .data.ptr = src};
	return epoll_ctl(epfd, EPOLL_CTL_MOD, src->fd, &ev) < 0 ? -errno : 0;
}

void loop_del(struct ev_source *src)
{
	epoll_ctl(epfd, EPOLL_CTL_DEL, src->fd, NULL);
}

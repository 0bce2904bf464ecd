/* The daemon's one epoll set and its global options.  Kept apart from main() so
 * the unit tests and the fuzzer can link every other module. */
#include <errno.h>
#include <sys/epoll.h>
#include <sched.h>
#include <time.h>
#include <unistd.h>

#include "store/xstored.h"

struct xsd_opts opts = {.priv_domid = -1, .watch_event_timeout = 20, .poll_us = 50};
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

/* Adaptive busy polling: after an iteration in which a connection had input, poll
 * without blocking for up to opts.poll_us before sleeping, so the next request of a
 * sequential client is picked up without a scheduler wakeup.  Bounded, and only
 * after client activity (not after the one-second timer), so an idle daemon
 * uses no CPU.  Each empty poll yields the CPU: on a busy machine the client we
 * wait for is often runnable on this very core, and a plain spin would only delay
 * it (measured on the loaded 2-core test machine: a plain 50 us spin cut read ops/s
 * by 2x and, in a later series, 10x; the yielding one raised them by ~50%).
 * docs/xstored.md lists what else was tried here. */
static bool active;

void loop_activity(void)
{
	active = true;
}

static long elapsed_ns(const struct timespec *a, const struct timespec *b)
{
	return (b->tv_sec - a->tv_sec) * 1000000000L + (b->tv_nsec - a->tv_nsec);
}

int loop_wait(struct epoll_event *evs, int max)
{
	int n;

	if (active && opts.poll_us > 0) {
		long limit = opts.poll_us * 1000L;
		struct timespec t0, t;

		clock_gettime(CLOCK_MONOTONIC, &t0);
		do {
			n = epoll_wait(epfd, evs, max, 0);
			if (n != 0) {
				active = false;
				return n < 0 ? -errno : n;
			}
			sched_yield();
			clock_gettime(CLOCK_MONOTONIC, &t);
		} while (elapsed_ns(&t0, &t) < limit);
	}
	active = false;
	n = epoll_wait(epfd, evs, max, -1);
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

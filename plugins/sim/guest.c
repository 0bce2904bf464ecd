/*
 * The sim guest: what "runs" inside a sim vcpu.
 *
 * vcpu 0 does all guest work; other vcpus sleep until kicked.  Each pass of the loop
 * runs the xenbus client, prints a console line when due ("console=" interval), and
 * dirties the pages owed to the "dirty=" rate: every word of a page gets
 * (generation << 32 | gfn), walking the working set round-robin, so a copy of the
 * memory can be checked page by page.  Between passes the thread sleeps in poll() on
 * its kick eventfd and the ring's notify eventfd, so idle domains cost no CPU.
 */
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "plugins/sim/sim.h"

#define DIRTY_TICK_NS 10000000ull /* dirty in 10 ms slices */
#define NS 1000000000ull

uint64_t sim_now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * NS + ts.tv_nsec;
}

static uint64_t thread_cpu_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
	return (uint64_t)ts.tv_sec * NS + ts.tv_nsec;
}

void sim_guest_touch(struct sim_vm *s, uint64_t gfn)
{
	if (gfn < s->npages && atomic_load_explicit(&s->dirty_on, memory_order_relaxed))
		atomic_fetch_or(&s->dirty[gfn / 64], 1ull << (gfn % 64));
}

void sim_console_out(struct sim_vm *s, const char *buf, size_t len)
{
	pthread_mutex_lock(&s->con_lock);
	if (s->con_fn)
		s->con_fn(s->con_opaque, buf, len);
	pthread_mutex_unlock(&s->con_lock);
}

/* "8M" -> 8 MiB; "1s", "500ms", "250us" -> ns.  Returns -EINVAL on junk. */
static int parse_size(const char *v, uint64_t *out)
{
	char *end;
	unsigned long long n = strtoull(v, &end, 10);

	if (end == v)
		return -EINVAL;
	switch (*end) {
	case 'G': case 'g': n <<= 30; end++; break;
	case 'M': case 'm': n <<= 20; end++; break;
	case 'K': case 'k': n <<= 10; end++; break;
	default: break;
	}
	*out = n;
	return *end ? -EINVAL : 0;
}

static int parse_time(const char *v, uint64_t *out)
{
	char *end;
	unsigned long long n = strtoull(v, &end, 10);

	if (end == v)
		return -EINVAL;
	if (!strcmp(end, "s"))
		*out = n * NS;
	else if (!strcmp(end, "ms"))
		*out = n * 1000000ull;
	else if (!strcmp(end, "us"))
		*out = n * 1000ull;
	else
		return -EINVAL;
	return 0;
}

int sim_workload_parse(const char *spec, struct sim_workload *wl)
{
	char buf[256], *save = NULL, *tok;
	size_t n;
	int ret = 0;

	memset(wl, 0, sizeof(*wl));
	if (!spec || !spec[0])
		return 0;
	if (strlen(spec) >= sizeof(buf))
		return -EINVAL;
	strcpy(buf, spec);
	for (tok = strtok_r(buf, ",", &save); tok && !ret; tok = strtok_r(NULL, ",", &save)) {
		char *eq = strchr(tok, '=');
		if (!eq)
			return -EINVAL;
		*eq++ = '\0';
		if (!strcmp(tok, "dirty")) {
			n = strlen(eq);
			if (n < 3 || strcmp(eq + n - 2, "/s"))
				return -EINVAL;
			eq[n - 2] = '\0';
			ret = parse_size(eq, &wl->dirty_bps);
		} else if (!strcmp(tok, "console")) {
			ret = parse_time(eq, &wl->console_ns);
		} else if (!strcmp(tok, "ws")) {
			uint64_t bytes;
			ret = parse_size(eq, &bytes);
			wl->ws_pages = bytes / XST_PAGE_SIZE;
		} else {
			return -EINVAL;
		}
	}
	return ret;
}

void sim_guest_reset(struct sim_vm *s)
{
	atomic_store(&s->dirty_cursor, 0);
	atomic_store(&s->dirty_gen, 1);
	s->console_seq = 0;
	s->next_console_ns = 0;
	s->booted = false;
	xenbus_reset(s);
}

static void console_tick(struct sim_vm *s, uint64_t now)
{
	char line[200];
	int n;

	if (!s->booted) {
		n = snprintf(line, sizeof(line), "sim: %s (domid %u) booting, %llu KiB, %u vcpus\n",
			     s->vm->cfg.name, s->vm->cfg.domid,
			     (unsigned long long)(s->npages * 4), s->vm->cfg.vcpus_max);
		sim_console_out(s, line, (size_t)n < sizeof(line) ? (size_t)n : sizeof(line) - 1);
		s->booted = true;
		s->next_console_ns = now + s->wl.console_ns;
	}
	if (!s->wl.console_ns || now < s->next_console_ns)
		return;
	n = snprintf(line, sizeof(line), "sim: %s tick %llu\n", s->vm->cfg.name,
		     (unsigned long long)++s->console_seq);
	sim_console_out(s, line, (size_t)n < sizeof(line) ? (size_t)n : sizeof(line) - 1);
	s->next_console_ns += s->wl.console_ns;
	if (s->next_console_ns <= now)
		s->next_console_ns = now + s->wl.console_ns;
}

static uint64_t working_set(struct sim_vm *s)
{
	uint64_t ws = s->npages - 1; /* never the ring page */
	uint64_t target = atomic_load(&s->mem_target_kib) / 4; /* ballooned out above it */

	if (s->wl.ws_pages && s->wl.ws_pages < ws)
		ws = s->wl.ws_pages;
	return target < ws ? target : ws;
}

static void dirty_tick(struct sim_vm *s, struct sim_vcpu *sv, uint64_t now)
{
	uint64_t ws = working_set(s), elapsed, bytes, pages, i, w;

	if (!s->wl.dirty_bps || !ws)
		return;
	/* A vcpu that did not run for a while (paused, throttled by its cap, starved by the
	 * host) does not catch up: like a real guest, it just got less done. */
	if (!sv->last_ns || now - sv->last_ns > 4 * DIRTY_TICK_NS)
		sv->last_ns = now - DIRTY_TICK_NS;
	elapsed = now - sv->last_ns;
	sv->last_ns = now;
	bytes = s->wl.dirty_bps / 1000 * (elapsed / 1000) / 1000 + sv->dirty_carry;
	pages = bytes / XST_PAGE_SIZE;
	sv->dirty_carry = bytes % XST_PAGE_SIZE;
	for (i = 0; i < pages; i++) {
		uint64_t cur = atomic_load(&s->dirty_cursor);
		uint64_t gen = atomic_load(&s->dirty_gen);
		uint64_t *page;

		if (cur >= ws) {
			cur = 0;
			atomic_store(&s->dirty_gen, ++gen);
		}
		page = (uint64_t *)(s->ram + cur * XST_PAGE_SIZE);
		for (w = 0; w < XST_PAGE_SIZE / 8; w++)
			page[w] = gen << 32 | cur;
		sim_guest_touch(s, cur);
		atomic_store(&s->dirty_cursor, cur + 1);
	}
}

int sim_guest_run(struct xst_vcpu *vcpu, struct xst_vcpu_exit *exit)
{
	struct sim_vm *s = sim_vm(vcpu->vm);
	struct sim_vcpu *sv = sim_vcpu(vcpu);
	uint64_t cpu_prev = thread_cpu_ns(), cpu_now;
	bool boss = vcpu->id == 0;
	int reason;

	atomic_store(&sv->running, true);
	exit->reason = XST_EXIT_NONE;
	for (;;) {
		struct pollfd pfd[2] = {
			{.fd = sv->kick_fd, .events = POLLIN},
			{.fd = s->notify_fd, .events = POLLIN},
		};
		uint64_t now, deadline = UINT64_MAX, t;
		int timeout_ms;

		if (boss) {
			reason = xenbus_step(s);
			if (reason >= 0) {
				exit->reason = XST_EXIT_SHUTDOWN;
				exit->shutdown = reason;
				snprintf(exit->detail, sizeof(exit->detail),
					 "guest asked for %s through control/shutdown",
					 reason == XST_SHUTDOWN_REBOOT ? "reboot" :
					 reason == XST_SHUTDOWN_CRASH ? "crash" :
					 reason == XST_SHUTDOWN_SUSPEND ? "suspend" : "poweroff");
				break;
			}
			now = sim_now_ns();
			console_tick(s, now);
			dirty_tick(s, sv, now);
			if (s->wl.console_ns)
				deadline = s->next_console_ns;
			if (s->wl.dirty_bps && now + DIRTY_TICK_NS < deadline)
				deadline = now + DIRTY_TICK_NS;
			t = xenbus_deadline_ns(s);
			if (t < deadline)
				deadline = t;
		} else {
			now = sim_now_ns();
		}
		cpu_now = thread_cpu_ns();
		atomic_fetch_add(&sv->cpu_ns, cpu_now - cpu_prev);
		cpu_prev = cpu_now;

		if (deadline == UINT64_MAX)
			timeout_ms = -1;
		else if (deadline <= now)
			timeout_ms = 0;
		else
			timeout_ms = (int)((deadline - now + 999999) / 1000000);
		if (poll(pfd, boss ? 2 : 1, timeout_ms) < 0 && errno != EINTR) {
			exit->reason = XST_EXIT_FAIL;
			snprintf(exit->detail, sizeof(exit->detail), "poll: %s", strerror(errno));
			break;
		}
		if (pfd[0].revents & POLLIN) {
			uint64_t v;
			if (read(sv->kick_fd, &v, sizeof(v)) < 0) {
				/* EAGAIN: another reader raced us; still a kick */
			}
			break; /* XST_EXIT_NONE */
		}
	}
	cpu_now = thread_cpu_ns();
	atomic_fetch_add(&sv->cpu_ns, cpu_now - cpu_prev);
	atomic_store(&sv->running, false);
	return 0;
}

/*
 * vcpu threads of the domain process.
 *
 * Each thread loops: park while the domain is not RUNNING (or its vcpu is offline or
 * halted), else call vcpu_run and act on the exit.  Stopping the vcpus is "change the
 * state under the lock, kick every vcpu, wait until all are parked"; a kick that lands
 * before the thread entered vcpu_run is kept by the plugin (hv.h), and the waiter
 * re-kicks every 10 ms anyway, so no stop is lost.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <talloc.h>

#include "core/dom.h"
#include "proto/domain.pb-c.h"

uint64_t dom_realtime_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + ts.tv_nsec;
}

static bool may_run(struct dom *d, struct dom_vcpu *v)
{
	return !d->quit && d->state == DOM_RUNNING && v->vcpu->id < d->online && !v->halted &&
	       !d->throttled;
}

void dom_event_add_locked(struct dom *d, int kind, int reason, const char *detail)
{
	struct dom_event *e = &d->events[d->last_seq % DOM_EVENTS_KEPT];

	memset(e, 0, sizeof(*e));
	e->seq = ++d->last_seq;
	e->kind = kind;
	e->reason = reason;
	e->time_ns = dom_realtime_ns();
	if (detail)
		snprintf(e->detail, sizeof(e->detail), "%s", detail);
	pthread_cond_broadcast(&d->cond);
}

/* Publish events not yet published on the events channel (best effort: pub/sub drops
 * when nobody listens; wait_event is the reliable path). */
void dom_events_flush(struct dom *d)
{
	void *tmp;

	if (!d->pub)
		return;
	pthread_mutex_lock(&d->pub_lock);
	tmp = talloc_new(NULL);
	for (;;) {
		Xstdom__Event ev = XSTDOM__EVENT__INIT;
		struct dom_event e;
		uint8_t *buf;
		size_t len;

		pthread_mutex_lock(&d->lock);
		if (d->published_seq >= d->last_seq) {
			pthread_mutex_unlock(&d->lock);
			break;
		}
		if (d->last_seq - d->published_seq > DOM_EVENTS_KEPT)
			d->published_seq = d->last_seq - DOM_EVENTS_KEPT;
		e = d->events[d->published_seq % DOM_EVENTS_KEPT];
		d->published_seq++;
		pthread_mutex_unlock(&d->lock);
		ev.seq = e.seq;
		ev.kind = e.kind;
		ev.time_ns = e.time_ns;
		if (e.reason >= 0) {
			ev.has_reason = true;
			ev.reason = e.reason;
		}
		if (e.detail[0])
			ev.detail = e.detail;
		if (tmp && xst_rpc_pack(&ev.base, tmp, &buf, &len) == 0)
			xst_rpc_event_send(d->pub, buf, len);
	}
	talloc_free(tmp);
	pthread_mutex_unlock(&d->pub_lock);
}

/* The guest stopped itself (lock held): every vcpu parks, the agent is told. */
static void guest_shutdown_locked(struct dom *d, int reason, int kind, const char *detail)
{
	unsigned int i;

	if (d->state == DOM_SHUTDOWN || d->state == DOM_DYING)
		return;
	d->state = DOM_SHUTDOWN;
	d->shutdown_reason = reason;
	dom_event_add_locked(d, kind, reason, detail);
	for (i = 0; i < d->nvcpus; i++)
		if (d->vcpus[i].vcpu)
			xst_vcpu_kick(d->vcpus[i].vcpu);
	dom_log("domain %u: shutdown (%s): %s", d->domid,
		xst_shutdown_reason_name(reason), detail ? detail : "");
}

static void *vcpu_thread(void *arg)
{
	struct dom_vcpu *v = arg;
	struct dom *d = v->dom;
	struct xst_vcpu_exit exit;
	int ret;

	char name[16];

	snprintf(name, sizeof(name), "vcpu%u", v->vcpu ? v->vcpu->id : 0);
	pthread_setname_np(pthread_self(), name); /* top, ps -L, /proc/PID/task/TID/comm */
	pthread_mutex_lock(&d->lock);
	v->tid = gettid(); /* dom_vcpus_start waits for it */
	pthread_cond_broadcast(&d->cond);
	pthread_mutex_unlock(&d->lock);
	dom_sched_nice_vcpu(d, v);
	pthread_mutex_lock(&d->lock);
	for (;;) {
		while (!d->quit && !may_run(d, v)) {
			if (!v->parked) {
				v->parked = true;
				pthread_cond_broadcast(&d->cond);
			}
			pthread_cond_wait(&d->cond, &d->lock);
		}
		if (d->quit)
			break;
		v->parked = false;
		pthread_mutex_unlock(&d->lock);

		ret = xst_vcpu_run(v->vcpu, &exit);

		pthread_mutex_lock(&d->lock);
		if (ret < 0) {
			exit.reason = XST_EXIT_FAIL;
			snprintf(exit.detail, sizeof(exit.detail), "vcpu_run: %s", strerror(-ret));
		}
		switch (exit.reason) {
		case XST_EXIT_NONE:
			break;
		case XST_EXIT_HALT:
			v->halted = true;
			break;
		case XST_EXIT_SHUTDOWN:
			guest_shutdown_locked(d, exit.shutdown, XSTDOM__EVENT_KIND__EV_SHUTDOWN,
					      exit.detail);
			break;
		case XST_EXIT_FAIL:
		default:
			guest_shutdown_locked(d, XST_SHUTDOWN_CRASH, XSTDOM__EVENT_KIND__EV_FAIL,
					      exit.detail);
			break;
		}
		if (exit.reason == XST_EXIT_SHUTDOWN || exit.reason == XST_EXIT_FAIL) {
			pthread_mutex_unlock(&d->lock);
			dom_events_flush(d);
			pthread_mutex_lock(&d->lock);
		}
	}
	v->parked = true;
	pthread_cond_broadcast(&d->cond);
	pthread_mutex_unlock(&d->lock);
	return NULL;
}

int dom_vcpus_start(struct dom *d)
{
	unsigned int i;
	int ret = 0;

	d->nvcpus = d->cfg.vcpus_max;
	d->vcpus = talloc_zero_array(d, struct dom_vcpu, d->nvcpus);
	if (!d->vcpus)
		return -ENOMEM;
	for (i = 0; i < d->nvcpus; i++) {
		d->vcpus[i].dom = d;
		d->vcpus[i].parked = true;
		ret = xst_vcpu_create(d->vm, i, &d->vcpus[i].vcpu);
		if (ret < 0)
			return ret;
	}
	/* Guest threads need little stack; 1,000 domains per host add up. */
	for (i = 0; i < d->nvcpus; i++) {
		ret = dom_thread_start(&d->vcpus[i].thread, 256 * 1024, vcpu_thread,
				       &d->vcpus[i]);
		if (ret < 0)
			break;
		d->vcpus[i].started = true;
	}
	/* Every thread named and its tid known before create answers: nice values, pins
	 * and vcpu-list apply to it from the first request on (the guest runs meanwhile). */
	pthread_mutex_lock(&d->lock);
	for (i = 0; i < d->nvcpus; i++)
		while (d->vcpus[i].started && !d->vcpus[i].tid)
			pthread_cond_wait(&d->cond, &d->lock);
	pthread_mutex_unlock(&d->lock);
	return ret;
}

int dom_thread_start(pthread_t *t, size_t stack, void *(*fn)(void *), void *arg)
{
	pthread_attr_t attr;
	int ret = -pthread_attr_init(&attr);

	if (ret < 0)
		return ret;
	ret = -pthread_attr_setstacksize(&attr, stack);
	if (ret == 0)
		ret = -pthread_create(t, &attr, fn, arg);
	pthread_attr_destroy(&attr);
	return ret;
}

void dom_vcpus_wait_parked_locked(struct dom *d, unsigned int from)
{
	unsigned int i;
	bool all;

	for (;;) {
		struct timespec ts;

		all = true;
		for (i = from; i < d->nvcpus; i++) {
			if (d->vcpus[i].started && !d->vcpus[i].parked) {
				all = false;
				xst_vcpu_kick(d->vcpus[i].vcpu);
			}
		}
		if (all)
			return;
		clock_gettime(CLOCK_REALTIME, &ts);
		ts.tv_nsec += 10000000;
		if (ts.tv_nsec >= 1000000000) {
			ts.tv_sec++;
			ts.tv_nsec -= 1000000000;
		}
		pthread_cond_timedwait(&d->cond, &d->lock, &ts);
	}
}

void dom_vcpus_stop(struct dom *d)
{
	unsigned int i;

	if (!d->vcpus)
		return;
	pthread_mutex_lock(&d->lock);
	d->quit = true;
	pthread_cond_broadcast(&d->cond);
	dom_vcpus_wait_parked_locked(d, 0);
	pthread_mutex_unlock(&d->lock);
	dom_sched_stop(d);
	for (i = 0; i < d->nvcpus; i++) {
		if (d->vcpus[i].started)
			pthread_join(d->vcpus[i].thread, NULL);
		d->vcpus[i].started = false;
	}
	for (i = 0; i < d->nvcpus; i++) {
		talloc_free(d->vcpus[i].vcpu);
		d->vcpus[i].vcpu = NULL;
	}
}

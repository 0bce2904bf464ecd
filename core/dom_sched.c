/*
 * Credit-scheduler parameters of a domain, on Linux (docs/domain-process.md,
 * "Scheduling"), the same for every core:
 *
 *   weight  the nice value of each vcpu thread, so that the host's scheduler (CFS) shares
 *           contended cpus in proportion to the weights, as Xen's credit scheduler does:
 *           256 (Xen's default) is nice 0 and each factor 1.25 of weight one nice step
 *           (CFS's own ratio), clamped to -20..19 (weight 2560 is nice -10, 26 is 10);
 *   cap     at most cap percent of one host cpu for all vcpus together (0: no cap).  A
 *           throttle thread measures the vcpu threads' cpu time every 10 ms and keeps a
 *           balance: +cap% of the period, -what the vcpus used, at most one period's
 *           worth saved.  While the balance is negative the vcpus park (they are kicked
 *           out of vcpu_run); the domain's state does not change (it stays running).
 */
#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#include "core/dom.h"

#define SCHED_PERIOD_NS 10000000ll

int dom_sched_nice(unsigned int weight)
{
	double n;

	if (weight == 0)
		return 0;
	n = -log((double)weight / 256.0) / log(1.25);
	n = n < 0 ? n - 0.5 : n + 0.5;
	if (n < -20)
		return -20;
	if (n > 19)
		return 19;
	return (int)n;
}

/* A vcpu thread's nice value, from the thread itself or the control thread. */
void dom_sched_nice_vcpu(struct dom *d, struct dom_vcpu *v)
{
	if (v->tid > 0 && setpriority(PRIO_PROCESS, (id_t)v->tid,
				      dom_sched_nice(d->sched_weight)) < 0)
		dom_log("domain %u: nice %d for vcpu thread %d: %s", d->domid,
			dom_sched_nice(d->sched_weight), (int)v->tid, strerror(errno));
}

static int64_t thread_cpu_ns(pthread_t t)
{
	clockid_t cid;
	struct timespec ts;

	if (pthread_getcpuclockid(t, &cid) != 0 || clock_gettime(cid, &ts) < 0)
		return 0;
	return (int64_t)ts.tv_sec * 1000000000ll + ts.tv_nsec;
}

static int64_t vcpus_cpu_ns(struct dom *d)
{
	int64_t sum = 0;
	unsigned int i;

	for (i = 0; i < d->nvcpus; i++)
		if (d->vcpus[i].started)
			sum += thread_cpu_ns(d->vcpus[i].thread);
	return sum;
}

static void *throttle_thread(void *arg)
{
	struct dom *d = arg;
	int64_t last = -1, balance = 0, now, budget;
	struct timespec next;
	unsigned int i;

	clock_gettime(CLOCK_MONOTONIC, &next);
	pthread_mutex_lock(&d->lock);
	while (!d->quit && d->sched_cap) {
		pthread_mutex_unlock(&d->lock);
		next.tv_nsec += SCHED_PERIOD_NS;
		if (next.tv_nsec >= 1000000000) {
			next.tv_sec++;
			next.tv_nsec -= 1000000000;
		}
		while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &next, NULL) == EINTR)
			;
		pthread_mutex_lock(&d->lock);
		now = vcpus_cpu_ns(d);
		budget = SCHED_PERIOD_NS * (int64_t)d->sched_cap / 100;
		if (last >= 0)
			balance += budget - (now - last);
		last = now;
		if (balance > budget)
			balance = budget;
		if (balance < 0 && !d->throttled) {
			d->throttled = true;
			for (i = 0; i < d->nvcpus; i++)
				if (d->vcpus[i].started)
					xst_vcpu_kick(d->vcpus[i].vcpu);
		} else if (balance >= 0 && d->throttled) {
			d->throttled = false;
			pthread_cond_broadcast(&d->cond);
		}
	}
	if (d->throttled) {
		d->throttled = false;
		pthread_cond_broadcast(&d->cond);
	}
	d->throttle_running = false;
	pthread_cond_broadcast(&d->cond);
	pthread_mutex_unlock(&d->lock);
	return NULL;
}

int dom_sched_apply(struct dom *d)
{
	unsigned int i;
	int ret = 0;

	for (i = 0; i < d->nvcpus; i++)
		if (d->vcpus[i].started)
			dom_sched_nice_vcpu(d, &d->vcpus[i]);
	pthread_mutex_lock(&d->lock);
	if (d->sched_cap && !d->throttle_running && !d->quit && d->nvcpus) {
		if (d->throttle_started) {
			/* a previous thread ended (cap went to 0): reap it first */
			pthread_mutex_unlock(&d->lock);
			pthread_join(d->throttle, NULL);
			pthread_mutex_lock(&d->lock);
			d->throttle_started = false;
		}
		ret = dom_thread_start(&d->throttle, 64 * 1024, throttle_thread, d);
		if (ret == 0)
			d->throttle_started = d->throttle_running = true;
	}
	pthread_mutex_unlock(&d->lock);
	return ret;
}

/* With d->quit set (or the cap at 0): wait for the throttle thread to end. */
void dom_sched_stop(struct dom *d)
{
	if (d->throttle_started) {
		pthread_join(d->throttle, NULL);
		d->throttle_started = false;
	}
}

/*
 * Guest rip sampling, a debugging aid for slow guests (Linux on PVM, docs/kvm.md):
 * with XST_KVM_PROFILE=FILE in the domain process's environment each vcpu thread arms
 * a timer that sends it the kick signal every 2 ms of wall time; a KVM_RUN interrupted
 * by it (and not by a real kick) records the vcpu's rip and cpl and resumes.  Samples
 * are appended to FILE as lines "vcpu rip cpl" (hex rip).  Off (no timer, no file)
 * without the variable.
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/ioctl.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "plugins/kvm/kvm_priv.h"

#define PROFILE_PERIOD_NS 2000000

static pthread_mutex_t prof_lock = PTHREAD_MUTEX_INITIALIZER;
static FILE *prof_file;

int kvm_profile_start(struct kvm_vcpu *c, int signo)
{
	const char *path = getenv("XST_KVM_PROFILE");
	if (!path || !path[0] || c->prof_armed)
		return 0;
	pthread_mutex_lock(&prof_lock);
	if (!prof_file)
		prof_file = fopen(path, "ae");
	pthread_mutex_unlock(&prof_lock);
	if (!prof_file)
		return -errno;
	struct sigevent sev = {
		.sigev_notify = SIGEV_THREAD_ID,
		.sigev_signo = signo,
	};
	sev._sigev_un._tid = (pid_t)syscall(SYS_gettid);
	if (timer_create(CLOCK_MONOTONIC, &sev, &c->prof_timer) < 0)
		return -errno;
	struct itimerspec it = {
		.it_interval = { 0, PROFILE_PERIOD_NS },
		.it_value = { 0, PROFILE_PERIOD_NS },
	};
	if (timer_settime(c->prof_timer, 0, &it, NULL) < 0) {
		int err = -errno;
		timer_delete(c->prof_timer);
		return err;
	}
	c->prof_armed = true;
	return 0;
}

void kvm_profile_sample(struct kvm_vcpu *c, unsigned int id)
{
	struct kvm_regs r;
	struct kvm_sregs s;
	if (ioctl(c->fd, KVM_GET_REGS, &r) < 0 || ioctl(c->fd, KVM_GET_SREGS, &s) < 0)
		return;
	pthread_mutex_lock(&prof_lock);
	fprintf(prof_file, "%u %llx %u\n", id, (unsigned long long)r.rip, s.cs.selector & 3);
	pthread_mutex_unlock(&prof_lock);
}

void kvm_profile_stop(struct kvm_vcpu *c)
{
	if (!c->prof_armed)
		return;
	timer_delete(c->prof_timer);
	c->prof_armed = false;
	pthread_mutex_lock(&prof_lock);
	if (prof_file)
		fflush(prof_file);
	pthread_mutex_unlock(&prof_lock);
}

/*
 * sim core: the ops table.  See sim.h for the design.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <unistd.h>

#include <talloc.h>

#include "plugins/sim/sim.h"

#define SIM_STATE_MAGIC 0x31304d4953545358ull /* "XSTSIM01" */

/* vm_state_save blob: little-endian fixed fields (the sim runs on x86/arm hosts). */
struct sim_state {
	uint64_t magic;
	uint64_t npages;
	uint64_t dirty_cursor;
	uint64_t dirty_gen;
	uint64_t console_seq;
	uint64_t mem_target_kib;
	uint64_t mem_max_kib;
	uint32_t sched_weight;
	uint32_t sched_cap;
};

struct sim_vcpu_state {
	uint64_t magic;
	uint32_t id;
	uint32_t pad;
	uint64_t cpu_ns;
};

static int sim_probe(char *why, size_t len)
{
	return 0; /* user space only: always available */
}

static int sim_vm_create(struct xst_vm *vm, const struct xst_vm_config *cfg)
{
	struct sim_vm *s = sim_vm(vm);
	uint64_t bytes = cfg->mem_max_kib * 1024;
	char name[64];
	int ret;

	s->vm = vm;
	s->mem_fd = s->kick_fd = s->notify_fd = -1;
	s->ram = MAP_FAILED;
	pthread_mutex_init(&s->con_lock, NULL);
	ret = sim_workload_parse(cfg->workload, &s->wl);
	if (ret < 0)
		goto out;
	s->npages = bytes / XST_PAGE_SIZE;
	if (s->npages < 2 || cfg->mem_max_kib > (1ull << 30)) { /* 1 TiB */
		ret = -EINVAL;
		goto out;
	}
	s->ring_gfn = s->npages - 1;
	snprintf(name, sizeof(name), "xst-sim-%u", cfg->domid);
	s->mem_fd = memfd_create(name, MFD_CLOEXEC);
	if (s->mem_fd < 0 || ftruncate(s->mem_fd, s->npages * XST_PAGE_SIZE) < 0) {
		ret = -errno;
		goto out;
	}
	s->ram = mmap(NULL, s->npages * XST_PAGE_SIZE, PROT_READ | PROT_WRITE,
		      MAP_SHARED | MAP_NORESERVE, s->mem_fd, 0);
	if (s->ram == MAP_FAILED) {
		ret = -errno;
		goto out;
	}
	s->kick_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	s->notify_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (s->kick_fd < 0 || s->notify_fd < 0) {
		ret = -errno;
		goto out;
	}
	s->dirty = talloc_zero_array(s, _Atomic uint64_t, (s->npages + 63) / 64);
	s->vcpus = talloc_zero_array(s, struct sim_vcpu *, cfg->vcpus_max);
	if (!s->dirty || !s->vcpus) {
		ret = -ENOMEM;
		goto out;
	}
	atomic_store(&s->mem_max_kib, cfg->mem_max_kib);
	atomic_store(&s->mem_target_kib, cfg->mem_target_kib ? cfg->mem_target_kib
							      : cfg->mem_max_kib);
	atomic_store(&s->sched_weight, 256);
	sim_guest_reset(s);
	return 0;
out:
	if (s->ram != MAP_FAILED)
		munmap(s->ram, s->npages * XST_PAGE_SIZE);
	if (s->mem_fd >= 0)
		close(s->mem_fd);
	if (s->kick_fd >= 0)
		close(s->kick_fd);
	if (s->notify_fd >= 0)
		close(s->notify_fd);
	pthread_mutex_destroy(&s->con_lock);
	return ret;
}

static void sim_vm_destroy(struct xst_vm *vm)
{
	struct sim_vm *s = sim_vm(vm);

	munmap(s->ram, s->npages * XST_PAGE_SIZE);
	close(s->mem_fd);
	close(s->kick_fd);
	close(s->notify_fd);
	pthread_mutex_destroy(&s->con_lock);
}

/*
 * The sim guest's balloon: it follows its target at once.  Pages from the target up
 * (but the ring page, the last one) leave the guest's working set and go back to the
 * host (holes punched in the RAM memfd: they read as zero, and a migration or save
 * skips them); the dirty log marks them, since their content changed.  A larger target
 * gives the guest its pages back (zero).
 */
static int sim_vm_set_mem_target(struct xst_vm *vm, uint64_t kib)
{
	struct sim_vm *s = sim_vm(vm);
	uint64_t first = kib / 4, g;

	if (kib > atomic_load(&s->mem_max_kib) || kib < 4)
		return -EINVAL;
	atomic_store(&s->mem_target_kib, kib);
	if (first < s->ring_gfn) {
		if (fallocate(s->mem_fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
			      (off_t)(first * XST_PAGE_SIZE),
			      (off_t)((s->ring_gfn - first) * XST_PAGE_SIZE)) < 0)
			return -errno;
		for (g = first; g < s->ring_gfn; g++)
			sim_guest_touch(s, g);
	}
	return 0;
}

static int sim_vm_set_mem_max(struct xst_vm *vm, uint64_t kib)
{
	struct sim_vm *s = sim_vm(vm);

	/* RAM is allocated at create: the maximum can move within it. */
	if (kib > s->npages * 4 || kib < atomic_load(&s->mem_target_kib))
		return -EINVAL;
	atomic_store(&s->mem_max_kib, kib);
	return 0;
}

static int sim_vm_info(struct xst_vm *vm, struct xst_vm_info *info)
{
	struct sim_vm *s = sim_vm(vm);
	unsigned int i;

	info->state = s->xb.stage == XB_DONE ? XST_VM_SHUTDOWN : XST_VM_RUNNING;
	if (info->state == XST_VM_SHUTDOWN)
		info->shutdown_reason = s->xb.shutdown_reason;
	for (i = 0; i < vm->cfg.vcpus_max; i++)
		if (s->vcpus[i])
			info->cpu_time_ns += atomic_load(&s->vcpus[i]->cpu_ns);
	info->mem_target_kib = atomic_load(&s->mem_target_kib);
	info->mem_max_kib = atomic_load(&s->mem_max_kib);
	info->mem_kib = info->mem_target_kib;
	info->vcpus_max = vm->cfg.vcpus_max;
	info->vcpus_online = vm->cfg.vcpus_online;
	return 0;
}

static int sim_dirty_log_enable(struct xst_vm *vm, bool on)
{
	struct sim_vm *s = sim_vm(vm);
	uint64_t i;

	for (i = 0; i < (s->npages + 63) / 64; i++)
		atomic_store(&s->dirty[i], 0);
	atomic_store(&s->dirty_on, on);
	return 0;
}

static int sim_dirty_log_fetch(struct xst_vm *vm, uint64_t *bitmap, uint64_t npages)
{
	struct sim_vm *s = sim_vm(vm);
	uint64_t i;

	if (!atomic_load(&s->dirty_on))
		return -EINVAL;
	if (npages < s->npages)
		return -ENOSPC;
	for (i = 0; i < (s->npages + 63) / 64; i++)
		bitmap[i] = atomic_exchange(&s->dirty[i], 0);
	return 0;
}

static int sim_read_page(struct xst_vm *vm, uint64_t gfn, void *buf)
{
	struct sim_vm *s = sim_vm(vm);

	if (gfn >= s->npages)
		return -EFAULT;
	memcpy(buf, s->ram + gfn * XST_PAGE_SIZE, XST_PAGE_SIZE);
	return 0;
}

static int sim_write_page(struct xst_vm *vm, uint64_t gfn, const void *buf)
{
	struct sim_vm *s = sim_vm(vm);

	if (gfn >= s->npages)
		return -EFAULT;
	memcpy(s->ram + gfn * XST_PAGE_SIZE, buf, XST_PAGE_SIZE);
	return 0;
}

static uint64_t sim_npages(struct xst_vm *vm)
{
	return sim_vm(vm)->npages;
}

static int sim_state_save(struct xst_vm *vm, void *ctx, uint8_t **blob, size_t *len)
{
	struct sim_vm *s = sim_vm(vm);
	struct sim_state *st = talloc_zero(ctx, struct sim_state);

	if (!st)
		return -ENOMEM;
	st->magic = SIM_STATE_MAGIC;
	st->npages = s->npages;
	st->dirty_cursor = atomic_load(&s->dirty_cursor);
	st->dirty_gen = atomic_load(&s->dirty_gen);
	st->console_seq = s->console_seq;
	st->mem_target_kib = atomic_load(&s->mem_target_kib);
	st->mem_max_kib = atomic_load(&s->mem_max_kib);
	st->sched_weight = atomic_load(&s->sched_weight);
	st->sched_cap = atomic_load(&s->sched_cap);
	*blob = (uint8_t *)st;
	*len = sizeof(*st);
	return 0;
}

static int sim_state_load(struct xst_vm *vm, const uint8_t *blob, size_t len)
{
	struct sim_vm *s = sim_vm(vm);
	struct sim_state st;

	if (len != sizeof(st))
		return -EINVAL;
	memcpy(&st, blob, sizeof(st));
	if (st.magic != SIM_STATE_MAGIC || st.npages != s->npages ||
	    st.mem_target_kib > st.mem_max_kib || st.mem_max_kib > s->npages * 4 ||
	    st.sched_weight < 1 || st.sched_weight > 65535)
		return -EINVAL;
	atomic_store(&s->dirty_cursor, st.dirty_cursor);
	atomic_store(&s->dirty_gen, st.dirty_gen);
	s->console_seq = st.console_seq;
	s->next_console_ns = 0;
	s->booted = true;
	atomic_store(&s->mem_target_kib, st.mem_target_kib);
	atomic_store(&s->mem_max_kib, st.mem_max_kib);
	atomic_store(&s->sched_weight, st.sched_weight);
	atomic_store(&s->sched_cap, st.sched_cap);
	/* The restored guest reconnects to xenstore: its new ring is introduced afresh. */
	xenbus_reset(s);
	return 0;
}

static int sim_soft_reset(struct xst_vm *vm)
{
	sim_guest_reset(sim_vm(vm));
	return 0;
}

static int sim_console_attach(struct xst_vm *vm, xst_console_fn fn, void *opaque)
{
	struct sim_vm *s = sim_vm(vm);

	pthread_mutex_lock(&s->con_lock);
	s->con_fn = fn;
	s->con_opaque = opaque;
	pthread_mutex_unlock(&s->con_lock);
	return 0;
}

/* The sim guest's console is a terminal in echo mode. */
static int sim_console_write(struct xst_vm *vm, const char *buf, size_t len)
{
	sim_console_out(sim_vm(vm), buf, len);
	return 0;
}

static int sim_mem_fd(struct xst_vm *vm, int *fd)
{
	struct sim_vm *s = vm->priv;

	*fd = s->mem_fd;
	return 0;
}

static int sim_xs_ring(struct xst_vm *vm, struct xst_xs_ring *ring)
{
	struct sim_vm *s = sim_vm(vm);

	ring->mem_fd = s->mem_fd;
	ring->offset = s->ring_gfn * XST_PAGE_SIZE;
	ring->kick_fd = s->kick_fd;
	ring->notify_fd = s->notify_fd;
	return 0;
}

static int sim_sched_set(struct xst_vm *vm, unsigned int weight, unsigned int cap)
{
	struct sim_vm *s = sim_vm(vm);

	atomic_store(&s->sched_weight, weight);
	atomic_store(&s->sched_cap, cap);
	return 0;
}

static int sim_vcpu_create(struct xst_vcpu *vcpu, unsigned int id)
{
	struct sim_vm *s = sim_vm(vcpu->vm);
	struct sim_vcpu *sv = sim_vcpu(vcpu);

	sv->vcpu = vcpu;
	sv->kick_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (sv->kick_fd < 0)
		return -errno;
	s->vcpus[id] = sv;
	return 0;
}

static void sim_vcpu_destroy(struct xst_vcpu *vcpu)
{
	struct sim_vcpu *sv = sim_vcpu(vcpu);

	sim_vm(vcpu->vm)->vcpus[vcpu->id] = NULL;
	close(sv->kick_fd);
}

/* Async-signal-safe: one write(2). */
static void sim_vcpu_kick(struct xst_vcpu *vcpu)
{
	uint64_t one = 1;

	if (write(sim_vcpu(vcpu)->kick_fd, &one, sizeof(one)) < 0) {
		/* EAGAIN: the counter is already non-zero, the kick is pending */
	}
}

static int sim_vcpu_info(struct xst_vcpu *vcpu, struct xst_vcpu_info *info)
{
	struct sim_vcpu *sv = sim_vcpu(vcpu);

	info->id = vcpu->id;
	info->running = atomic_load(&sv->running);
	info->cpu_time_ns = atomic_load(&sv->cpu_ns);
	info->online = true; /* the core knows better and overrides */
	return 0;
}

static int sim_vcpu_state_save(struct xst_vcpu *vcpu, void *ctx, uint8_t **blob, size_t *len)
{
	struct sim_vcpu_state *st = talloc_zero(ctx, struct sim_vcpu_state);

	if (!st)
		return -ENOMEM;
	st->magic = SIM_STATE_MAGIC;
	st->id = vcpu->id;
	st->cpu_ns = atomic_load(&sim_vcpu(vcpu)->cpu_ns);
	*blob = (uint8_t *)st;
	*len = sizeof(*st);
	return 0;
}

static int sim_vcpu_state_load(struct xst_vcpu *vcpu, const uint8_t *blob, size_t len)
{
	struct sim_vcpu_state st;

	if (len != sizeof(st))
		return -EINVAL;
	memcpy(&st, blob, sizeof(st));
	if (st.magic != SIM_STATE_MAGIC || st.id != vcpu->id)
		return -EINVAL;
	atomic_store(&sim_vcpu(vcpu)->cpu_ns, st.cpu_ns);
	return 0;
}

static const struct xst_hv_ops sim_ops = {
	.abi_version = XST_HV_ABI_VERSION,
	.name = "sim",
	.vm_priv_size = sizeof(struct sim_vm),
	.vcpu_priv_size = sizeof(struct sim_vcpu),
	.probe = sim_probe,
	.vm_create = sim_vm_create,
	.vm_destroy = sim_vm_destroy,
	.vm_set_mem_target = sim_vm_set_mem_target,
	.vm_set_mem_max = sim_vm_set_mem_max,
	.vm_info = sim_vm_info,
	.vm_dirty_log_enable = sim_dirty_log_enable,
	.vm_dirty_log_fetch = sim_dirty_log_fetch,
	.vm_read_page = sim_read_page,
	.vm_write_page = sim_write_page,
	.vm_npages = sim_npages,
	.vm_state_save = sim_state_save,
	.vm_state_load = sim_state_load,
	.vm_soft_reset = sim_soft_reset,
	.vm_console_attach = sim_console_attach,
	.vm_console_write = sim_console_write,
	.vm_xs_ring = sim_xs_ring,
	.vm_mem_fd = sim_mem_fd,
	.vm_sched_set = sim_sched_set,
	.vcpu_create = sim_vcpu_create,
	.vcpu_destroy = sim_vcpu_destroy,
	.vcpu_run = sim_guest_run,
	.vcpu_kick = sim_vcpu_kick,
	.vcpu_info = sim_vcpu_info,
	.vcpu_state_save = sim_vcpu_state_save,
	.vcpu_state_load = sim_vcpu_state_load,
};

const struct xst_hv_ops *xst_hv_plugin_ops(void);
__attribute__((visibility("default"))) const struct xst_hv_ops *xst_hv_plugin_ops(void)
{
	return &sim_ops;
}

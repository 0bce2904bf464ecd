/*
 * xst-hv-kvm: the KVM hypervisor core.
 *
 * One vm = one KVM VM: guest RAM is a memfd mapped shared (so xstored can map the
 * xenstore ring page and save/migration can stream it) registered as memslot 0 at
 * guest physical 0; an in-kernel irqchip (PIC + IOAPIC + LAPIC) and PIT; a 16550
 * console and the xst platform ports handled in vcpu_run (docs/kvm.md).  The xenstore
 * "event channel" is a pair of eventfds wired into KVM: the kick port is an ioeventfd,
 * notifications are an irqfd on GSI 5.
 *
 * vcpu_kick: sets kvm_run.immediate_exit and signals the vcpu thread with
 * KVM_KICK_SIGNAL (a no-op handler installed without SA_RESTART by init), so a
 * KVM_RUN in progress or about to start returns with EINTR.  Not async-signal-safe.
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include "plugins/kvm/kvm_priv.h"

#define KVM_KICK_SIGNAL (SIGRTMIN + 4)

static bool host_is_pvm(void)
{
	const char *e = getenv("XST_KVM_PVM");
	if (e)
		return e[0] == '1';
	return access("/sys/module/kvm_pvm", F_OK) == 0;
}

static const struct {
	int cap;
	const char *name;
} required_caps[] = {
	{ KVM_CAP_USER_MEMORY, "KVM_CAP_USER_MEMORY" },
	{ KVM_CAP_IRQCHIP, "KVM_CAP_IRQCHIP" },
	{ KVM_CAP_PIT2, "KVM_CAP_PIT2" },
	{ KVM_CAP_IOEVENTFD, "KVM_CAP_IOEVENTFD" },
	{ KVM_CAP_IRQFD, "KVM_CAP_IRQFD" },
	{ KVM_CAP_IMMEDIATE_EXIT, "KVM_CAP_IMMEDIATE_EXIT" },
	{ KVM_CAP_EXT_CPUID, "KVM_CAP_EXT_CPUID" },
};

static int kvm_probe(char *why, size_t len)
{
	int fd = open("/dev/kvm", O_RDWR | O_CLOEXEC);
	int rc = 0;
	if (fd < 0) {
		rc = -errno;
		snprintf(why, len, "cannot open /dev/kvm: %s", strerror(errno));
		return rc;
	}
	int api = ioctl(fd, KVM_GET_API_VERSION, 0);
	if (api != KVM_API_VERSION) {
		snprintf(why, len, "/dev/kvm API version %d, need %d", api, KVM_API_VERSION);
		rc = -ENOTSUP;
		goto out;
	}
	for (size_t i = 0; i < sizeof(required_caps) / sizeof(required_caps[0]); i++) {
		if (ioctl(fd, KVM_CHECK_EXTENSION, required_caps[i].cap) <= 0) {
			snprintf(why, len, "/dev/kvm lacks %s", required_caps[i].name);
			rc = -ENOTSUP;
			goto out;
		}
	}
	int vm = ioctl(fd, KVM_CREATE_VM, 0);
	if (vm < 0) {
		rc = -errno;
		snprintf(why, len, "KVM_CREATE_VM failed: %s", strerror(errno));
		goto out;
	}
	close(vm);
	rc = kvm_cpuid_mask_check(why, len);
	if (rc < 0)
		goto out;
	if (why && len)
		snprintf(why, len, "kvm usable%s", host_is_pvm() ? " (PVM backend)" : "");
out:
	close(fd);
	return rc;
}

static void kick_handler(int sig)
{
	(void)sig;
}

static int kvm_init(struct xst_hv *hv)
{
	struct kvm_hv *h = hv->priv;
	struct sigaction sa;
	int rc;

	h->kvm_fd = -1;
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = kick_handler;
	sigemptyset(&sa.sa_mask);
	if (sigaction(KVM_KICK_SIGNAL, &sa, NULL) < 0)
		return -errno;
	h->kvm_fd = open("/dev/kvm", O_RDWR | O_CLOEXEC);
	if (h->kvm_fd < 0)
		return -errno;
	h->pvm = host_is_pvm();
	h->run_size = ioctl(h->kvm_fd, KVM_GET_VCPU_MMAP_SIZE, 0);
	if (h->run_size < (int)sizeof(struct kvm_run)) {
		rc = -ENOTSUP;
		goto fail;
	}
	rc = kvm_cpuid_init(h);
	if (rc < 0)
		goto fail;
	return 0;
fail:
	close(h->kvm_fd);
	h->kvm_fd = -1;
	return rc;
}

static void kvm_fini(struct xst_hv *hv)
{
	struct kvm_hv *h = hv->priv;
	free(h->cpuid);
	free(h->msrs);
	if (h->kvm_fd >= 0)
		close(h->kvm_fd);
}

static int set_memslot(struct kvm_vm *k)
{
	struct kvm_userspace_memory_region r = {
		.slot = 0,
		.flags = k->dirty_log ? KVM_MEM_LOG_DIRTY_PAGES : 0,
		.guest_phys_addr = 0,
		.memory_size = k->mem_size,
		.userspace_addr = (uint64_t)(uintptr_t)k->mem,
	};
	return ioctl(k->vm_fd, KVM_SET_USER_MEMORY_REGION, &r) < 0 ? -errno : 0;
}

static void vm_release(struct kvm_vm *k)
{
	if (k->kick_fd >= 0)
		close(k->kick_fd);
	if (k->notify_fd >= 0)
		close(k->notify_fd);
	if (k->vm_fd >= 0)
		close(k->vm_fd);
	if (k->mem && k->mem != MAP_FAILED)
		munmap(k->mem, k->mem_size);
	if (k->mem_fd >= 0)
		close(k->mem_fd);
	k->kick_fd = k->notify_fd = k->vm_fd = k->mem_fd = -1;
	k->mem = NULL;
}

static int vm_wire_xs(struct kvm_vm *k)
{
	k->kick_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	k->notify_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (k->kick_fd < 0 || k->notify_fd < 0)
		return -errno;
	struct kvm_ioeventfd io = {
		.addr = KVM_PORT_XS_KICK,
		.len = 1,
		.fd = k->kick_fd,
		.flags = KVM_IOEVENTFD_FLAG_PIO,
	};
	if (ioctl(k->vm_fd, KVM_IOEVENTFD, &io) < 0)
		return -errno;
	struct kvm_irqfd irq = { .fd = (uint32_t)k->notify_fd, .gsi = KVM_XS_GSI };
	if (ioctl(k->vm_fd, KVM_IRQFD, &irq) < 0)
		return -errno;
	return 0;
}

/* Everything that depends on the RAM size alone: VM, RAM memfd + memslot 0, irqchip,
 * PIT, the xenstore eventfds, the UART.  KVM_SET_USER_MEMORY_REGION dominates (several
 * ms on PVM whatever the size), which is why a spare domain process does this ahead. */
static int kvm_vm_prepare(struct xst_vm *vm, uint64_t mem_max_kib)
{
	struct kvm_hv *h = kvm_hv_of(vm);
	struct kvm_vm *k = vm->priv;
	uint64_t size = mem_max_kib * 1024;
	int rc;

	k->vm_fd = k->mem_fd = k->kick_fd = k->notify_fd = -1;
	atomic_store(&k->shutdown, -1);
	if (size < (2ull << 20) || size > KVM_MAX_RAM || (size & (XST_PAGE_SIZE - 1)))
		return -EINVAL;
	k->mem_size = size;
	k->mem_max_kib = mem_max_kib;
	k->mem_target_kib = mem_max_kib;

	k->vm_fd = ioctl(h->kvm_fd, KVM_CREATE_VM, 0);
	if (k->vm_fd < 0) {
		rc = -errno;
		goto fail;
	}
	k->mem_fd = memfd_create("xst-kvm-ram", MFD_CLOEXEC);
	if (k->mem_fd < 0 || ftruncate(k->mem_fd, (off_t)size) < 0) {
		rc = -errno;
		goto fail;
	}
	k->mem = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, k->mem_fd, 0);
	if (k->mem == MAP_FAILED) {
		rc = -errno;
		goto fail;
	}
	/* VMX needs these three pages below 4 GiB outside RAM; other backends ignore it. */
	(void)ioctl(k->vm_fd, KVM_SET_TSS_ADDR, (unsigned long)KVM_TSS_GPA);
	if (ioctl(k->vm_fd, KVM_CREATE_IRQCHIP, 0) < 0) {
		rc = -errno;
		goto fail;
	}
	struct kvm_pit_config pit = { .flags = KVM_PIT_SPEAKER_DUMMY };
	if (ioctl(k->vm_fd, KVM_CREATE_PIT2, &pit) < 0) {
		rc = -errno;
		goto fail;
	}
	/*
	 * PIT ticks the vcpu missed while its thread was not running are dropped, not
	 * replayed one by one: guests keep time with a clocksource (kvmclock), and on a
	 * loaded host replayed ticks only pile up emulated work (Linux's periodic tick
	 * before its LAPIC timer is set up).  Best effort: without the capability KVM
	 * keeps its default.
	 */
	if (ioctl(h->kvm_fd, KVM_CHECK_EXTENSION, KVM_CAP_REINJECT_CONTROL) > 0) {
		struct kvm_reinject_control rc_ctl = { .pit_reinject = 0 };
		(void)ioctl(k->vm_fd, KVM_REINJECT_CONTROL, &rc_ctl);
	}
	rc = set_memslot(k);
	if (rc < 0)
		goto fail;
	rc = vm_wire_xs(k);
	if (rc < 0)
		goto fail;
	kvm_uart_init(&k->uart, k->vm_fd);
	k->prepared = true;
	return 0;
fail:
	vm_release(k);
	return rc;
}

static int kvm_vm_create(struct xst_vm *vm, const struct xst_vm_config *cfg)
{
	struct kvm_vm *k = vm->priv;
	bool was_prepared = k->prepared;
	int rc;

	if (cfg->vcpus_max < 1 || cfg->vcpus_online > cfg->vcpus_max)
		return -EINVAL;
	if (!was_prepared) {
		rc = kvm_vm_prepare(vm, cfg->mem_max_kib);
		if (rc < 0)
			return rc;
	} else if (cfg->mem_max_kib != k->mem_max_kib) {
		return -EINVAL;
	}
	k->mem_target_kib = cfg->mem_target_kib ? cfg->mem_target_kib : cfg->mem_max_kib;
	/* incoming: its memory and state arrive next; loading a kernel is wasted work */
	rc = cfg->incoming ? 0 : kvm_boot_load(vm, cfg);
	if (rc < 0 && !was_prepared) {
		/* A failed vm_create leaves nothing (the core calls no vm_destroy); a
		 * prepared vm is released by vm_destroy when the core frees it. */
		kvm_uart_fini(&k->uart);
		vm_release(k);
	}
	return rc;
}

static void kvm_vm_destroy(struct xst_vm *vm)
{
	struct kvm_vm *k = vm->priv;
	if (k->prepared)
		kvm_uart_fini(&k->uart);
	free(k->cpuid);
	k->cpuid = NULL;
	vm_release(k);
}

static int kvm_vm_set_mem_target(struct xst_vm *vm, uint64_t kib)
{
	struct kvm_vm *k = vm->priv;
	if (kib > k->mem_max_kib)
		return -EINVAL;
	k->mem_target_kib = kib;
	return 0;
}

static int kvm_vm_set_mem_max(struct xst_vm *vm, uint64_t kib)
{
	struct kvm_vm *k = vm->priv;
	if (kib > k->mem_size / 1024 || kib < k->mem_target_kib)
		return -EINVAL; /* RAM is allocated at create: it cannot grow */
	k->mem_max_kib = kib;
	return 0;
}

static uint64_t kvm_vm_npages(struct xst_vm *vm)
{
	struct kvm_vm *k = vm->priv;
	return k->mem_size >> XST_PAGE_SHIFT;
}

static int kvm_vm_info(struct xst_vm *vm, struct xst_vm_info *info)
{
	struct kvm_vm *k = vm->priv;
	int sd = atomic_load(&k->shutdown);
	memset(info, 0, sizeof(*info));
	info->state = sd >= 0 ? XST_VM_SHUTDOWN : XST_VM_RUNNING;
	info->shutdown_reason = sd >= 0 ? (enum xst_shutdown_reason)sd : XST_SHUTDOWN_POWEROFF;
	info->mem_kib = k->mem_target_kib;
	info->mem_max_kib = k->mem_max_kib;
	info->mem_target_kib = k->mem_target_kib;
	info->vcpus_max = vm->cfg.vcpus_max;
	info->vcpus_online = vm->cfg.vcpus_online ? vm->cfg.vcpus_online : vm->cfg.vcpus_max;
	return 0; /* cpu time: the core sums vcpu_info */
}

static int kvm_dirty_log_enable(struct xst_vm *vm, bool on)
{
	struct kvm_vm *k = vm->priv;
	if (k->dirty_log == on)
		return 0;
	k->dirty_log = on;
	int rc = set_memslot(k);
	if (rc < 0)
		k->dirty_log = !on;
	return rc;
}

static int kvm_dirty_log_fetch(struct xst_vm *vm, uint64_t *bitmap, uint64_t npages)
{
	struct kvm_vm *k = vm->priv;
	uint64_t n = k->mem_size >> XST_PAGE_SHIFT;
	if (!k->dirty_log)
		return -EINVAL;
	if (npages < n)
		return -ENOSPC;
	memset(bitmap, 0, (npages + 7) / 8);
	struct kvm_dirty_log d = { .slot = 0, .dirty_bitmap = bitmap };
	if (ioctl(k->vm_fd, KVM_GET_DIRTY_LOG, &d) < 0)
		return -errno;
	/* xstored writes the ring page through its own mapping: KVM cannot see that. */
	bitmap[KVM_XS_GFN / 64] |= 1ull << (KVM_XS_GFN % 64);
	return 0;
}

static int kvm_read_page(struct xst_vm *vm, uint64_t gfn, void *buf)
{
	struct kvm_vm *k = vm->priv;
	if (gfn >= k->mem_size >> XST_PAGE_SHIFT)
		return -EFAULT;
	memcpy(buf, k->mem + (gfn << XST_PAGE_SHIFT), XST_PAGE_SIZE);
	return 0;
}

static int kvm_mem_fd(struct xst_vm *vm, int *fd)
{
	struct kvm_vm *k = vm->priv;
	*fd = k->mem_fd;
	return 0;
}

static int kvm_write_page(struct xst_vm *vm, uint64_t gfn, const void *buf)
{
	struct kvm_vm *k = vm->priv;
	if (gfn >= k->mem_size >> XST_PAGE_SHIFT)
		return -EFAULT;
	memcpy(k->mem + (gfn << XST_PAGE_SHIFT), buf, XST_PAGE_SIZE);
	return 0;
}

static int kvm_console_attach(struct xst_vm *vm, xst_console_fn fn, void *opaque)
{
	struct kvm_vm *k = vm->priv;
	pthread_mutex_lock(&k->uart.lock);
	k->uart.fn = fn;
	k->uart.opaque = opaque;
	pthread_mutex_unlock(&k->uart.lock);
	return 0;
}

static int kvm_console_write(struct xst_vm *vm, const char *buf, size_t len)
{
	struct kvm_vm *k = vm->priv;
	return kvm_uart_input(&k->uart, buf, len);
}

static int kvm_xs_ring(struct xst_vm *vm, struct xst_xs_ring *ring)
{
	struct kvm_vm *k = vm->priv;
	ring->mem_fd = k->mem_fd;
	ring->offset = KVM_XS_GFN << XST_PAGE_SHIFT;
	ring->kick_fd = k->kick_fd;
	ring->notify_fd = k->notify_fd;
	return 0;
}

static int kvm_vcpu_create(struct xst_vcpu *vcpu, unsigned int id)
{
	struct kvm_hv *h = kvm_hv_of(vcpu->vm);
	struct kvm_vm *k = vcpu->vm->priv;
	struct kvm_vcpu *c = vcpu->priv;
	int rc;

	c->fd = ioctl(k->vm_fd, KVM_CREATE_VCPU, (unsigned long)id);
	if (c->fd < 0)
		return -errno;
	c->run = mmap(NULL, (size_t)h->run_size, PROT_READ | PROT_WRITE, MAP_SHARED, c->fd, 0);
	if (c->run == MAP_FAILED) {
		rc = -errno;
		goto fail;
	}
	if (id >= KVM_VCPUS_MAX) {
		rc = -EINVAL;
		goto fail;
	}
	rc = kvm_cpuid_set(h, k->cpuid ? k->cpuid : h->cpuid, c->fd, id);
	if (rc < 0)
		goto fail;
	k->vcpu_fd[id] = c->fd;
	k->vcpu_live[id] = true;
	if (id == 0) {
		rc = kvm_boot_vcpu(vcpu->vm, c->fd);
		if (rc < 0)
			goto fail;
	}
	pthread_mutex_init(&c->kick_lock, NULL);
	c->online = id < (vcpu->vm->cfg.vcpus_online ? vcpu->vm->cfg.vcpus_online
						       : vcpu->vm->cfg.vcpus_max);
	return 0;
fail:
	if (c->run && c->run != MAP_FAILED)
		munmap(c->run, (size_t)h->run_size);
	close(c->fd);
	c->fd = -1;
	c->run = NULL;
	return rc;
}

static void kvm_vcpu_destroy(struct xst_vcpu *vcpu)
{
	struct kvm_hv *h = kvm_hv_of(vcpu->vm);
	struct kvm_vcpu *c = vcpu->priv;
	struct kvm_vm *k = vcpu->vm->priv;
	if (c->fd < 0)
		return;
	if (vcpu->id < KVM_VCPUS_MAX)
		k->vcpu_live[vcpu->id] = false;
	kvm_profile_stop(c);
	pthread_mutex_destroy(&c->kick_lock);
	munmap(c->run, (size_t)h->run_size);
	close(c->fd);
	c->fd = -1;
}

static void kvm_vcpu_kick(struct xst_vcpu *vcpu)
{
	struct kvm_vcpu *c = vcpu->priv;
	atomic_store(&c->kicked, true);
	pthread_mutex_lock(&c->kick_lock);
	c->run->immediate_exit = 1;
	if (c->in_run)
		pthread_kill(c->thread, KVM_KICK_SIGNAL);
	pthread_mutex_unlock(&c->kick_lock);
}

static uint64_t thread_cpu_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static void exit_set(struct xst_vcpu_exit *e, enum xst_vcpu_exit_reason r, const char *detail)
{
	e->reason = r;
	snprintf(e->detail, sizeof(e->detail), "%s", detail);
}

/* Port I/O the kernel did not handle.  Returns true when the guest asked to stop. */
static bool handle_pio(struct xst_vm *vm, struct kvm_run *run, struct xst_vcpu_exit *exit)
{
	struct kvm_vm *k = vm->priv;
	uint8_t *data = (uint8_t *)run + run->io.data_offset;
	bool out = run->io.direction == KVM_EXIT_IO_OUT;
	uint16_t port = run->io.port;
	int reason = -1;

	for (uint32_t i = 0; i < run->io.count; i++, data += run->io.size) {
		if (port >= KVM_PORT_COM1 && port < KVM_PORT_COM1 + 8 && run->io.size == 1) {
			kvm_uart_io(&k->uart, port - KVM_PORT_COM1, out, data);
		} else if (port == KVM_PORT_SHUTDOWN && out) {
			reason = data[0] <= XST_SHUTDOWN_SOFT_RESET ? data[0] : XST_SHUTDOWN_CRASH;
		} else if (port == 0xcf9 && out && (data[0] & 0x04)) {
			reason = XST_SHUTDOWN_REBOOT; /* PCI reset control */
		} else if (port == 0x64 && out && data[0] == 0xfe) {
			reason = XST_SHUTDOWN_REBOOT; /* keyboard controller reset */
		} else if (!out) {
			memset(data, 0xff, run->io.size); /* nothing there */
		}
	}
	if (reason < 0)
		return false;
	atomic_store(&k->shutdown, reason);
	exit->reason = XST_EXIT_SHUTDOWN;
	exit->shutdown = (enum xst_shutdown_reason)reason;
	snprintf(exit->detail, sizeof(exit->detail), "guest shutdown request %d", reason);
	return true;
}

/* Reads up to n guest bytes at virtual address va of the vcpu's current mapping. */
int kvm_guest_read_va(struct xst_vcpu *vcpu, uint64_t va, uint8_t *buf, size_t n)
{
	struct kvm_vm *k = vcpu->vm->priv;
	struct kvm_vcpu *c = vcpu->priv;
	struct kvm_translation tr = { .linear_address = va };
	if (ioctl(c->fd, KVM_TRANSLATE, &tr) < 0 || !tr.valid)
		return -EFAULT;
	if (tr.physical_address >= k->mem_size)
		return -EFAULT;
	size_t room = XST_PAGE_SIZE - (tr.physical_address & (XST_PAGE_SIZE - 1));
	if (n > room)
		n = room;
	if (n > k->mem_size - tr.physical_address)
		n = (size_t)(k->mem_size - tr.physical_address);
	memcpy(buf, k->mem + tr.physical_address, n);
	return (int)n;
}

static void fail_detail(struct xst_vcpu *vcpu, struct xst_vcpu_exit *exit, const char *what,
			unsigned int code)
{
	struct kvm_vcpu *c = vcpu->priv;
	struct kvm_regs r;
	uint8_t insn[8] = { 0 };
	int n = 0;
	if (ioctl(c->fd, KVM_GET_REGS, &r) < 0) {
		snprintf(exit->detail, sizeof(exit->detail), "%s %u", what, code);
		return;
	}
	n = kvm_guest_read_va(vcpu, r.rip, insn, sizeof(insn));
	snprintf(exit->detail, sizeof(exit->detail),
		 "%s %u rip=%#llx insn=%02x %02x %02x %02x %02x %02x (%d)", what, code,
		 (unsigned long long)r.rip, insn[0], insn[1], insn[2], insn[3], insn[4], insn[5],
		 n);
}

/*
 * PVM's kernel-mode emulator cannot execute some instructions; when emulation fails on
 * one of these we do what the CPU would and continue:
 *   int3 (Linux runs one at boot in its alternatives self-test, and uses it for live
 *        text patching): rip past it and inject #BP (a trap), so the guest's handler runs;
 *   fwait (Linux's x87 paths): a no-op unless an unmasked x87 exception is pending,
 *        which a kernel that does no x87 arithmetic never has: rip past it.
 * Returns true when it did so.
 */
static bool step_unemulated(struct xst_vcpu *vcpu)
{
	struct kvm_vcpu *c = vcpu->priv;
	struct kvm_regs r;
	struct kvm_vcpu_events ev;
	uint8_t op = 0;
	if (c->run->internal.suberror != KVM_INTERNAL_ERROR_EMULATION ||
	    ioctl(c->fd, KVM_GET_REGS, &r) < 0 || kvm_guest_read_va(vcpu, r.rip, &op, 1) != 1 ||
	    (op != 0xcc && op != 0x9b))
		return false;
	r.rip += 1;
	if (op == 0x9b)
		return ioctl(c->fd, KVM_SET_REGS, &r) == 0;
	if (ioctl(c->fd, KVM_GET_VCPU_EVENTS, &ev) < 0 || ioctl(c->fd, KVM_SET_REGS, &r) < 0)
		return false;
	ev.exception.injected = 1;
	ev.exception.nr = 3;
	ev.exception.has_error_code = 0;
	ev.exception.error_code = 0;
	ev.flags = 0;
	if (ioctl(c->fd, KVM_SET_VCPU_EVENTS, &ev) < 0)
		return false;
	return true;
}

static int kvm_vcpu_run(struct xst_vcpu *vcpu, struct xst_vcpu_exit *exit)
{
	struct kvm_vcpu *c = vcpu->priv;
	struct kvm_run *run = c->run;
	int rc = 0;

	memset(exit, 0, sizeof(*exit));
	pthread_mutex_lock(&c->kick_lock);
	c->thread = pthread_self();
	c->in_run = true;
	pthread_mutex_unlock(&c->kick_lock);
	(void)kvm_profile_start(c, KVM_KICK_SIGNAL);

	for (;;) {
		if (atomic_exchange(&c->kicked, false)) {
			exit_set(exit, XST_EXIT_NONE, "kicked");
			break;
		}
		if (kvm_vm_of(vcpu->vm)->syscall_bridge && !c->sc_armed)
			(void)kvm_pvm_syscall_arm(vcpu);
		uint64_t t0 = thread_cpu_ns();
		int r = ioctl(c->fd, KVM_RUN, 0);
		int err = errno;
		atomic_fetch_add(&c->cpu_ns, thread_cpu_ns() - t0);
		if (r < 0) {
			if (err == EINTR && c->prof_armed && !atomic_load(&c->kicked)) {
				kvm_profile_sample(c, vcpu->id);
				continue;
			}
			if (err == EINTR || err == EAGAIN) {
				exit_set(exit, XST_EXIT_NONE, "interrupted");
				break;
			}
			rc = -err;
			break;
		}
		switch (run->exit_reason) {
		case KVM_EXIT_IO:
			if (handle_pio(vcpu->vm, run, exit))
				goto out;
			continue;
		case KVM_EXIT_MMIO:
			if (!run->mmio.is_write)
				memset(run->mmio.data, 0xff, sizeof(run->mmio.data));
			continue;
		case KVM_EXIT_INTR:
			exit_set(exit, XST_EXIT_NONE, "interrupted");
			goto out;
		case KVM_EXIT_HLT:
			exit_set(exit, XST_EXIT_HALT, "halted");
			goto out;
		case KVM_EXIT_SHUTDOWN:
			exit_set(exit, XST_EXIT_FAIL, "triple fault");
			goto out;
		case KVM_EXIT_SYSTEM_EVENT: {
			int reason = run->system_event.type == KVM_SYSTEM_EVENT_RESET
					     ? XST_SHUTDOWN_REBOOT
				     : run->system_event.type == KVM_SYSTEM_EVENT_SHUTDOWN
					     ? XST_SHUTDOWN_POWEROFF
					     : XST_SHUTDOWN_CRASH;
			atomic_store(&kvm_vm_of(vcpu->vm)->shutdown, reason);
			exit->reason = XST_EXIT_SHUTDOWN;
			exit->shutdown = (enum xst_shutdown_reason)reason;
			snprintf(exit->detail, sizeof(exit->detail), "system event %u",
				 run->system_event.type);
			goto out;
		}
		case KVM_EXIT_FAIL_ENTRY:
			exit->reason = XST_EXIT_FAIL;
			snprintf(exit->detail, sizeof(exit->detail), "entry failed: %#llx",
				 (unsigned long long)run->fail_entry.hardware_entry_failure_reason);
			goto out;
		case KVM_EXIT_DEBUG:
			if (kvm_vm_of(vcpu->vm)->syscall_bridge &&
			    kvm_pvm_syscall_debug_exit(vcpu) == 0)
				continue;
			exit->reason = XST_EXIT_FAIL;
			fail_detail(vcpu, exit, "debug exit", run->debug.arch.exception);
			goto out;
		case KVM_EXIT_INTERNAL_ERROR:
			if (step_unemulated(vcpu))
				continue;
			exit->reason = XST_EXIT_FAIL;
			fail_detail(vcpu, exit, "internal error", run->internal.suberror);
			goto out;
		default:
			exit->reason = XST_EXIT_FAIL;
			snprintf(exit->detail, sizeof(exit->detail), "unhandled exit %u",
				 run->exit_reason);
			goto out;
		}
	}
out:
	pthread_mutex_lock(&c->kick_lock);
	c->in_run = false;
	run->immediate_exit = 0;
	pthread_mutex_unlock(&c->kick_lock);
	return rc;
}

static int kvm_vcpu_info(struct xst_vcpu *vcpu, struct xst_vcpu_info *info)
{
	struct kvm_vcpu *c = vcpu->priv;
	memset(info, 0, sizeof(*info));
	info->id = vcpu->id;
	info->online = c->online;
	pthread_mutex_lock(&c->kick_lock);
	info->running = c->in_run;
	pthread_mutex_unlock(&c->kick_lock);
	info->cpu_time_ns = atomic_load(&c->cpu_ns);
	return 0;
}

static const struct xst_hv_ops kvm_ops = {
	.abi_version = XST_HV_ABI_VERSION,
	.name = "kvm",
	.hv_priv_size = sizeof(struct kvm_hv),
	.vm_priv_size = sizeof(struct kvm_vm),
	.vcpu_priv_size = sizeof(struct kvm_vcpu),
	.probe = kvm_probe,
	.init = kvm_init,
	.fini = kvm_fini,
	.vm_prepare = kvm_vm_prepare,
	.vm_create = kvm_vm_create,
	.vm_destroy = kvm_vm_destroy,
	.vm_set_mem_target = kvm_vm_set_mem_target,
	.vm_set_mem_max = kvm_vm_set_mem_max,
	.vm_info = kvm_vm_info,
	.vm_dirty_log_enable = kvm_dirty_log_enable,
	.vm_dirty_log_fetch = kvm_dirty_log_fetch,
	.vm_read_page = kvm_read_page,
	.vm_write_page = kvm_write_page,
	.vm_npages = kvm_vm_npages,
	.vm_state_save = kvm_vm_state_save,
	.vm_state_load = kvm_vm_state_load,
	.vm_console_attach = kvm_console_attach,
	.vm_console_write = kvm_console_write,
	.vm_xs_ring = kvm_xs_ring,
	.vcpu_create = kvm_vcpu_create,
	.vcpu_destroy = kvm_vcpu_destroy,
	.vcpu_run = kvm_vcpu_run,
	.vcpu_kick = kvm_vcpu_kick,
	.vcpu_info = kvm_vcpu_info,
	.vcpu_state_save = kvm_vcpu_state_save,
	.vcpu_state_load = kvm_vcpu_state_load,
	.vm_cpu_features = kvm_cpu_features,
	.vm_cpu_check = kvm_cpu_check,
	.vm_mem_fd = kvm_mem_fd,
};

const struct xst_hv_ops *xst_hv_plugin_ops(void);
const struct xst_hv_ops *xst_hv_plugin_ops(void)
{
	return &kvm_ops;
}

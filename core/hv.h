/*
 * xst hypervisor core interface.
 *
 * A hypervisor core is a plugin (a shared object in plugins/) exporting one const
 * `struct xst_hv_ops` through `xst_hv_plugin_ops()`.  The interface has three levels,
 * hv -> vm -> vcpu:
 *
 *   hv    one loaded core in one process (init/fini, probe);
 *   vm    one domain: memory, lifecycle, dirty log, state, console, xenstore ring;
 *   vcpu  one virtual CPU, run by a thread of the domain process through vcpu_run(),
 *         which returns a neutral exit record (struct xst_vcpu_exit).
 *
 * The core (core/) allocates every object and its plugin-private state (sizes given by
 * the ops table), so plugins never allocate their top-level objects.  No hypervisor
 * specific type (struct kvm_*) appears here.
 *
 * Conventions: every int-returning op returns 0 (or a non-negative count) on success
 * and a negative errno on failure.  Ops marked MANDATORY must be present; optional ops
 * may be NULL, and the core then answers -EOPNOTSUPP.  Unless stated otherwise ops on
 * one vm are called from the domain process's control thread only; vcpu_run is called
 * from that vcpu's own thread; vcpu_kick may be called from any thread.
 */
#ifndef XST_CORE_HV_H
#define XST_CORE_HV_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define XST_HV_ABI_VERSION 3
#define XST_PAGE_SIZE 4096u
#define XST_PAGE_SHIFT 12

struct xst_hv;
struct xst_vm;
struct xst_vcpu;

/* Domain configuration as resolved by the toolstack (from xl.cfg). */
struct xst_vm_config {
	uint32_t domid;
	const char *name;
	uint8_t uuid[16];
	uint64_t mem_max_kib;    /* guest RAM allocated/addressable (maxmem) */
	uint64_t mem_target_kib; /* balloon target (memory) */
	unsigned int vcpus_max;
	unsigned int vcpus_online;
	const char *kernel;  /* kvm: ELF (PVH note) or bzImage path; sim: unused */
	const char *ramdisk; /* optional */
	const char *cmdline; /* optional */
	const char *workload; /* sim: workload spec, e.g. "dirty=8M/s,console=1s" */
	bool start_paused;
	/* A restore's or a migration's domain: its memory and vcpu/vm state are loaded
	 * after vm_create (start_paused is set too).  Load no kernel and leave guest memory
	 * all zero; kernel, ramdisk and cmdline may name files this host lacks. */
	bool incoming;
};

enum xst_vm_state {
	XST_VM_RUNNING = 0,
	XST_VM_PAUSED,
	XST_VM_SHUTDOWN, /* guest stopped itself; see shutdown_reason */
	XST_VM_DYING,
};

/* Values match Xen's SHUTDOWN_* codes (xen/include/public/sched.h). */
enum xst_shutdown_reason {
	XST_SHUTDOWN_POWEROFF = 0,
	XST_SHUTDOWN_REBOOT = 1,
	XST_SHUTDOWN_SUSPEND = 2,
	XST_SHUTDOWN_CRASH = 3,
	XST_SHUTDOWN_WATCHDOG = 4,
	XST_SHUTDOWN_SOFT_RESET = 5,
};

struct xst_vm_info {
	enum xst_vm_state state;
	enum xst_shutdown_reason shutdown_reason; /* valid when state == SHUTDOWN */
	uint64_t cpu_time_ns;    /* all vcpus */
	uint64_t mem_kib;        /* memory in use by the guest */
	uint64_t mem_max_kib;
	uint64_t mem_target_kib;
	unsigned int vcpus_max;
	unsigned int vcpus_online;
};

struct xst_vcpu_info {
	unsigned int id;
	bool online;
	bool running; /* currently in guest mode / runnable */
	uint64_t cpu_time_ns;
};

/* Why vcpu_run returned.  Everything a plugin can handle itself it handles. */
enum xst_vcpu_exit_reason {
	XST_EXIT_NONE = 0, /* kicked (vcpu_kick) or interrupted: caller re-checks state */
	XST_EXIT_HALT,     /* vcpu halted with interrupts off: it stays stopped */
	XST_EXIT_SHUTDOWN, /* guest asked for a shutdown; see exit.shutdown */
	XST_EXIT_FAIL,     /* unrecoverable fault (triple fault, emulation failure) */
};

struct xst_vcpu_exit {
	enum xst_vcpu_exit_reason reason;
	enum xst_shutdown_reason shutdown; /* XST_EXIT_SHUTDOWN */
	char detail[128];                  /* human-readable, for logs */
};

/*
 * The xenstore shared ring of a domain (see docs/xenstore-ring-transport.md):
 * one 4 KiB page laid out as struct xenstore_domain_interface, reachable through a
 * file descriptor that can be mmap()ed at `offset`, and two eventfds standing in for
 * the event channel: `kick_fd` is signalled by the guest when it updates the ring,
 * `notify_fd` is signalled by xstored to wake the guest.
 */
struct xst_xs_ring {
	int mem_fd;
	uint64_t offset;
	int kick_fd;
	int notify_fd;
};

typedef void (*xst_console_fn)(void *opaque, const char *buf, size_t len);

struct xst_hv_ops {
	uint32_t abi_version;   /* MANDATORY: XST_HV_ABI_VERSION */
	const char *name;       /* MANDATORY: "kvm", "sim", ... */
	size_t hv_priv_size;    /* bytes of private state per hv, zeroed */
	size_t vm_priv_size;    /* bytes of private state per vm, zeroed */
	size_t vcpu_priv_size;  /* bytes of private state per vcpu, zeroed */

	/* MANDATORY.  0 if this core can run guests on this host, else -errno and a
	 * reason in why[len]. */
	int (*probe)(char *why, size_t len);
	/* Optional.  Per-process setup/teardown. */
	int (*init)(struct xst_hv *hv);
	void (*fini)(struct xst_hv *hv);

	/* MANDATORY.  Create the domain: allocate guest memory (mem_max_kib), set up the
	 * platform and load the kernel (on a vm from vm_prepare: only what it left).  vcpus are created afterwards with vcpu_create.
	 * -ENOMEM, -EINVAL (bad config or kernel), -ENOENT (kernel missing). */
	int (*vm_create)(struct xst_vm *vm, const struct xst_vm_config *cfg);
	/* Optional.  The part of vm_create that depends on the memory size alone (guest
	 * RAM of mem_max_kib, the VM and its platform devices), done ahead of time by a
	 * spare domain process (docs/domain-process.md, "Spare domain processes").
	 * vm_create is later called on the same vm with a config of that mem_max_kib and
	 * does the rest (kernel load); the core checks the sizes match.  vm_destroy must
	 * release a vm that was prepared but never created.  -ENOMEM, -EINVAL. */
	int (*vm_prepare)(struct xst_vm *vm, uint64_t mem_max_kib);
	/* MANDATORY.  Release everything vm_create (or vm_prepare) made.  vcpus are
	 * already destroyed. */
	void (*vm_destroy)(struct xst_vm *vm);

	/* Memory: balloon target and maximum, in KiB.  -EINVAL above the maximum. */
	int (*vm_set_mem_target)(struct xst_vm *vm, uint64_t kib);
	int (*vm_set_mem_max)(struct xst_vm *vm, uint64_t kib);
	/* MANDATORY. */
	int (*vm_info)(struct xst_vm *vm, struct xst_vm_info *info);

	/* Dirty-page tracking.  fetch copies-and-clears the bitmap of pages written since
	 * enable/the previous fetch; bitmap has room for vm_npages() bits. */
	int (*vm_dirty_log_enable)(struct xst_vm *vm, bool on);
	int (*vm_dirty_log_fetch)(struct xst_vm *vm, uint64_t *bitmap, uint64_t npages);
	/* Guest pages by page frame number.  -EFAULT outside guest memory. */
	int (*vm_read_page)(struct xst_vm *vm, uint64_t gfn, void *buf);
	int (*vm_write_page)(struct xst_vm *vm, uint64_t gfn, const void *buf);
	/* Number of guest page frames (RAM size / 4 KiB). */
	uint64_t (*vm_npages)(struct xst_vm *vm);

	/* Device/platform state (irqchip, timers, clocks, console) as an opaque blob
	 * allocated on talloc context `ctx`.  Loaded into a vm created with the same
	 * config, before its vcpus run. */
	int (*vm_state_save)(struct xst_vm *vm, void *ctx, uint8_t **blob, size_t *len);
	int (*vm_state_load)(struct xst_vm *vm, const uint8_t *blob, size_t len);

	/* Soft reset: return the domain to its freshly-booted state keeping its memory
	 * (Xen's soft_reset for kexec/kdump).  vcpus are stopped by the caller. */
	int (*vm_soft_reset)(struct xst_vm *vm);

	/* Console: output is delivered through the callback set at attach (any thread);
	 * input is written with console_write. */
	int (*vm_console_attach)(struct xst_vm *vm, xst_console_fn fn, void *opaque);
	int (*vm_console_write)(struct xst_vm *vm, const char *buf, size_t len);

	/* The xenstore ring for this domain; fds stay owned by the vm. */
	int (*vm_xs_ring)(struct xst_vm *vm, struct xst_xs_ring *ring);

	/* Scheduler parameters (credit: weight 1..65535, cap 0..100*vcpus, 0 = none). */
	int (*vm_sched_set)(struct xst_vm *vm, unsigned int weight, unsigned int cap);

	/* MANDATORY.  Create vcpu `id` (0-based) in the reset state. */
	int (*vcpu_create)(struct xst_vcpu *vcpu, unsigned int id);
	void (*vcpu_destroy)(struct xst_vcpu *vcpu);
	/* MANDATORY.  Run the vcpu until something the caller must handle; returns 0 and
	 * fills *exit, or -errno.  Called only from the vcpu's own thread. */
	int (*vcpu_run)(struct xst_vcpu *vcpu, struct xst_vcpu_exit *exit);
	/* MANDATORY.  Make a running vcpu_run return soon with XST_EXIT_NONE.  Any thread;
	 * async-signal-safe where the plugin documents so.  A kick that arrives while the
	 * vcpu is not inside vcpu_run must make the next vcpu_run return promptly (the
	 * domain process parks vcpus relying on this; spurious returns are harmless). */
	void (*vcpu_kick)(struct xst_vcpu *vcpu);
	int (*vcpu_info)(struct xst_vcpu *vcpu, struct xst_vcpu_info *info);
	/* Full vcpu state (registers, FPU, MSRs, LAPIC, events, MP state) as an opaque
	 * blob; the vcpu is not running. */
	int (*vcpu_state_save)(struct xst_vcpu *vcpu, void *ctx, uint8_t **blob, size_t *len);
	int (*vcpu_state_load)(struct xst_vcpu *vcpu, const uint8_t *blob, size_t len);

	/* The CPU features this domain's guest sees, as an opaque blob on `ctx` (kvm: its
	 * CPUID feature words).  Optional: a core without it has nothing to compare. */
	int (*vm_cpu_features)(struct xst_vm *vm, void *ctx, uint8_t **blob, size_t *len);
	/* Can a guest that saw the features in `blob` (vm_cpu_features of a domain on
	 * another host: migration, restore) run in this vm?  0; -EOPNOTSUPP naming the
	 * first feature this host does not offer in why[whylen]; -EINVAL for a blob it
	 * cannot read.  Before any vcpu of this vm ran. */
	int (*vm_cpu_check)(struct xst_vm *vm, const uint8_t *blob, size_t len, char *why,
			    size_t whylen);

	/* Guest RAM as a file: page gfn is at byte gfn * 4096 of *fd (a memfd owned by the
	 * vm).  Optional: lets the domain process skip memory the guest never wrote
	 * (holes: lseek SEEK_DATA) when it reads pages for a save or a migration. */
	int (*vm_mem_fd)(struct xst_vm *vm, int *fd);
};

/* Objects as the core allocates them.  Plugins use the accessors below. */
struct xst_hv {
	const struct xst_hv_ops *ops;
	void *handle; /* dlopen handle */
	void *priv;
	void *vms; /* core-private: talloc parent of the vms on this hv */
};

struct xst_vm {
	struct xst_hv *hv;
	struct xst_vm_config cfg; /* strings owned by the vm */
	void *priv;
	void *vcpus; /* core-private: talloc parent of this vm's vcpus */
	uint64_t prepared_kib; /* core-private: vm_prepare's size while no domain is in it */
};

struct xst_vcpu {
	struct xst_vm *vm;
	unsigned int id;
	void *priv;
};

/* Every plugin exports exactly this symbol. */
typedef const struct xst_hv_ops *(*xst_hv_plugin_fn)(void);
#define XST_HV_PLUGIN_SYMBOL "xst_hv_plugin_ops"

#endif

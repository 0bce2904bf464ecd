/*
 * xst kvm core: private definitions shared by the plugin's files.
 *
 * kvm.c      ops table, probe, vm memory/dirty log, vcpu run loop and kick
 * cpuid.c    the CPUID model given to guests (PVM masking)
 * boot.c     PVH ELF loader and the boot-time vcpu state
 * uart.c     16550 UART console
 * state.c    vm/vcpu state save/load (protobuf-c messages of kvm_state.proto)
 * See docs/kvm.md for the guest memory layout and the platform's ports.
 */
#ifndef XST_PLUGINS_KVM_PRIV_H
#define XST_PLUGINS_KVM_PRIV_H

#include <linux/kvm.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "core/hv.h"

/* Platform: guest physical layout and ports (docs/kvm.md). */
#define KVM_LOW_RAM_END 0xa0000ull        /* RAM below the legacy hole */
#define KVM_HIGH_RAM_START 0x100000ull    /* RAM from 1 MiB */
#define KVM_MAX_RAM (3ull << 30)          /* RAM ends below the 3-4 GiB MMIO hole */
#define KVM_START_INFO_GPA 0x1000ull      /* struct hvm_start_info */
#define KVM_MODLIST_GPA 0x1800ull         /* struct hvm_modlist_entry[1] */
#define KVM_MEMMAP_GPA 0x1c00ull          /* struct hvm_memmap_table_entry[] */
#define KVM_CMDLINE_GPA 0x2000ull         /* kernel command line, NUL-terminated */
#define KVM_CMDLINE_MAX 4096u
#define KVM_XS_GFN 0xfeull                /* xenstore ring page (reserved hole) */
#define KVM_PORT_COM1 0x3f8
#define KVM_PORT_SHUTDOWN 0x510           /* write a Xen SHUTDOWN_* code */
#define KVM_PORT_XS_KICK 0x511            /* xenstore kick: ioeventfd */
#define KVM_XS_GSI 5                      /* xenstore notify: irqfd */
#define KVM_UART_GSI 4
#define KVM_TSS_GPA 0xfffbd000ull         /* KVM_SET_TSS_ADDR (VMX), above RAM */

#define KVM_UART_RX_MAX 4096u

struct kvm_uart {
	pthread_mutex_t lock;
	uint8_t ier, lcr, mcr, scr, dll, dlm, fcr;
	bool thr_pending; /* THR-empty interrupt pending (cleared by reading IIR) */
	bool irq_level;
	uint8_t rx[KVM_UART_RX_MAX];
	unsigned int rx_head, rx_len;
	/* output line assembly for the callback */
	xst_console_fn fn;
	void *opaque;
	int vm_fd;
};

struct kvm_hv {
	int kvm_fd;
	int run_size;
	bool pvm;
	struct kvm_cpuid2 *cpuid; /* supported, masked; malloc'd */
	uint32_t *msrs;           /* MSRs saved with a vcpu; malloc'd */
	unsigned int nmsrs;
	bool msrs_probed;
};

enum kvm_boot_kind { KVM_BOOT_PVH = 1 };

#define KVM_VCPUS_MAX 128 /* the agent's limit */

struct kvm_vm {
	bool prepared;          /* kvm_vm_prepare done: VM, RAM, platform exist */
	int vm_fd;
	int mem_fd;
	uint8_t *mem;
	uint64_t mem_size;
	bool dirty_log;
	int kick_fd, notify_fd;
	uint64_t mem_target_kib, mem_max_kib;
	enum kvm_boot_kind boot;
	uint64_t entry;         /* PVH: 32-bit entry point */
	bool syscall_bridge;    /* pvm_syscall.c: a Linux kernel on PVM */
	atomic_int shutdown;    /* -1 none, else enum xst_shutdown_reason */
	struct kvm_uart uart;
	/* This guest's CPUID model when it differs from the host's (levelled to what the
	 * guest saw at its source: kvm_cpu_check); malloc'd, NULL = h->cpuid. */
	struct kvm_cpuid2 *cpuid;
	int vcpu_fd[KVM_VCPUS_MAX]; /* to set that model again; valid below nvcpu_fd */
	bool vcpu_live[KVM_VCPUS_MAX];
};

struct kvm_vcpu {
	int fd;
	struct kvm_run *run;
	pthread_mutex_t kick_lock;
	pthread_t thread;
	bool in_run;            /* under kick_lock */
	atomic_bool kicked;
	atomic_uint_fast64_t cpu_ns;
	bool online;
	bool prof_armed;        /* profile.c: the sampling timer runs (vcpu thread only) */
	timer_t prof_timer;
	bool sc_armed;          /* pvm_syscall.c: breakpoint on the #PF handler set */
	bool sc_stepping;       /* pvm_syscall.c: single-stepping past it */
	uint64_t sc_lstar, sc_pf_entry;
	uint64_t sc_entries;    /* syscalls finished */
	uint64_t sc_nop_skips;  /* page faults let through by skipping a nop */
};

static inline struct kvm_hv *kvm_hv_of(struct xst_vm *vm) { return vm->hv->priv; }
static inline struct kvm_vm *kvm_vm_of(struct xst_vm *vm) { return vm->priv; }

/*
 * pvm_syscall.c: finishing user-mode syscall for ordinary kernels on PVM (vcpu thread).
 * _arm: before each KVM_RUN until it has found LSTAR and the #PF handler and tried to
 * set the breakpoint once; 0 (also: not yet) or -errno.  _debug_exit: handles a
 * KVM_EXIT_DEBUG; 0, or -errno when it was not the bridge's (the vcpu then fails).
 */
int kvm_pvm_syscall_arm(struct xst_vcpu *vcpu);
int kvm_pvm_syscall_debug_exit(struct xst_vcpu *vcpu);

/* kvm.c: reads up to n guest bytes at a virtual address (stops at a page end) */
int kvm_guest_read_va(struct xst_vcpu *vcpu, uint64_t va, uint8_t *buf, size_t n);

/* profile.c: rip sampling when XST_KVM_PROFILE is set (vcpu thread only) */
int kvm_profile_start(struct kvm_vcpu *c, int signo);
void kvm_profile_sample(struct kvm_vcpu *c, unsigned int id);
void kvm_profile_stop(struct kvm_vcpu *c);

/* cpuid.c */
int kvm_cpuid_init(struct kvm_hv *h);
int kvm_cpuid_set(struct kvm_hv *h, const struct kvm_cpuid2 *model, int vcpu_fd,
		  unsigned int apic_id);
int kvm_cpuid_mask_check(char *why, size_t whylen);
int kvm_cpu_features(struct xst_vm *vm, void *ctx, uint8_t **blob, size_t *len);
int kvm_cpu_check(struct xst_vm *vm, const uint8_t *blob, size_t len, char *why,
		  size_t whylen);

/* boot.c: load cfg->kernel (and ramdisk/cmdline) into guest memory. */
int kvm_boot_load(struct xst_vm *vm, const struct xst_vm_config *cfg);
int kvm_boot_vcpu(struct xst_vm *vm, int vcpu_fd);

/* uart.c */
void kvm_uart_init(struct kvm_uart *u, int vm_fd);
void kvm_uart_fini(struct kvm_uart *u);
void kvm_uart_io(struct kvm_uart *u, unsigned int reg, bool write, uint8_t *data);
int kvm_uart_input(struct kvm_uart *u, const char *buf, size_t len);

/* state.c */
int kvm_vm_state_save(struct xst_vm *vm, void *ctx, uint8_t **blob, size_t *len);
int kvm_vm_state_load(struct xst_vm *vm, const uint8_t *blob, size_t len);
int kvm_vcpu_state_save(struct xst_vcpu *vcpu, void *ctx, uint8_t **blob, size_t *len);
int kvm_vcpu_state_load(struct xst_vcpu *vcpu, const uint8_t *blob, size_t len);

#endif

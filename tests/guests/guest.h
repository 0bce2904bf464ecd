/* xstguest: shared definitions of the freestanding test guest (kernel and user parts). */
#ifndef XSTGUEST_H
#define XSTGUEST_H

#include <stddef.h>
#include <stdint.h>

/* Platform ports of the xst kvm plugin (docs/kvm.md). */
#define PORT_COM1 0x3f8
#define PORT_XST_SHUTDOWN 0x510 /* write a Xen SHUTDOWN_* code */
#define PORT_XST_XS_KICK 0x511  /* xenstore event channel kick (ioeventfd) */
#define XS_NOTIFY_GSI 5         /* xenstore notifications (irqfd) */
#define XS_DEFAULT_GFN 0xfe

/* Interrupt vectors. */
#define VEC_TIMER 48
#define VEC_XS 49
#define VEC_SPURIOUS 255

/* Syscalls (ud2, rax = number, rdi/rsi/rdx = args, rax = result; see kern.c). */
#define SYS_SLEEP 1 /* rdi = ns (max ~4 s): wait for timer or xenstore irq */
#define SYS_OUTB 2  /* rdi = port, rsi = byte */
#define SYS_OUTS 3  /* rdi = port, rsi = buffer, rdx = length: rep outsb */

struct hvm_start_info {
	uint32_t magic; /* 0x336ec578 */
	uint32_t version;
	uint32_t flags;
	uint32_t nr_modules;
	uint64_t modlist_paddr;
	uint64_t cmdline_paddr;
	uint64_t rsdp_paddr;
	uint64_t memmap_paddr;
	uint32_t memmap_entries;
	uint32_t reserved;
};

struct hvm_memmap_table_entry {
	uint64_t addr;
	uint64_t size;
	uint32_t type;
	uint32_t reserved;
};

struct pvclock {
	uint32_t version;
	uint32_t pad0;
	uint64_t tsc_timestamp;
	uint64_t system_time;
	uint32_t tsc_to_system_mul;
	int8_t tsc_shift;
	uint8_t flags;
	uint8_t pad[2];
} __attribute__((packed));

extern volatile struct pvclock kvmclock; /* written by KVM, read in user mode */

static inline void outb(uint16_t port, uint8_t v)
{
	__asm__ volatile("outb %0, %1" : : "a"(v), "Nd"(port));
}

static inline uint8_t inb(uint16_t port)
{
	uint8_t v;
	__asm__ volatile("inb %1, %0" : "=a"(v) : "Nd"(port));
	return v;
}

static inline uint64_t rdtsc(void)
{
	uint32_t lo, hi;
	__asm__ volatile("rdtsc" : "=a"(lo), "=d"(hi));
	return ((uint64_t)hi << 32) | lo;
}

void *memset(void *d, int c, size_t n);
void *memcpy(void *d, const void *s, size_t n);
size_t strlen(const char *s);

void user_main(struct hvm_start_info *si);

#endif

/*
 * xstguest kernel part: runs once at boot and on interrupts/syscalls, in ring 0.
 * It keeps to a handful of instructions because on KVM's PVM backend every
 * kernel-mode instruction is emulated.  It loads the TSS and IDT, masks the legacy
 * PIC, switches the LAPIC to x2APIC mode (MSR access, no MMIO), registers kvmclock,
 * routes the xenstore notification GSI through the IOAPIC and drops to ring 3 with
 * IOPL 0: port I/O goes through syscalls, because PVM does not honour IOPL for
 * natively running user code (an out in ring 3 raises #GP there).
 * Syscalls are "ud2" (#UD, vector 6, rax = number): on PVM neither int $n (#UD) nor
 * the syscall instruction (it stays in ring 3) reach the guest kernel, exceptions do.
 */
#include "tests/guests/guest.h"

struct frame {
	uint64_t r15, r14, r13, r12, r11, r10, r9, r8, rbp, rdi, rsi, rdx, rcx, rbx, rax;
	uint64_t vec, err, rip, cs, rflags, rsp, ss;
};

struct tss64 {
	uint32_t rsv0;
	uint64_t rsp0, rsp1, rsp2;
	uint64_t rsv1;
	uint64_t ist[7];
	uint64_t rsv2;
	uint16_t rsv3;
	uint16_t iomap;
} __attribute__((packed));

struct idt_gate {
	uint16_t off0;
	uint16_t sel;
	uint8_t ist;
	uint8_t type;
	uint16_t off1;
	uint32_t off2;
	uint32_t rsv;
} __attribute__((packed));

extern uint64_t gdt[];
extern char kstack_top[];
extern void enter_user(void (*fn)(struct hvm_start_info *), void *stack,
		       struct hvm_start_info *si);

#define ISR(n) extern char isr_##n[]
ISR(0); ISR(1); ISR(2); ISR(3); ISR(4); ISR(5); ISR(6); ISR(7); ISR(8); ISR(9); ISR(10);
ISR(11); ISR(12); ISR(13); ISR(14); ISR(15); ISR(16); ISR(17); ISR(18); ISR(19); ISR(20);
ISR(21); ISR(48); ISR(49); ISR(255);

static struct tss64 tss __attribute__((aligned(16)));
static struct idt_gate idt[256] __attribute__((aligned(16)));
volatile struct pvclock kvmclock __attribute__((aligned(64)));
static char ustack[65536] __attribute__((aligned(16)));
static volatile int timer_fired, xs_fired;

static inline void wrmsr(uint32_t msr, uint64_t v)
{
	__asm__ volatile("wrmsr" : : "c"(msr), "a"((uint32_t)v), "d"((uint32_t)(v >> 32)));
}

static inline uint64_t rdmsr(uint32_t msr)
{
	uint32_t lo, hi;
	__asm__ volatile("rdmsr" : "=a"(lo), "=d"(hi) : "c"(msr));
	return ((uint64_t)hi << 32) | lo;
}

static void kputs(const char *s)
{
	while (*s)
		outb(PORT_COM1, (uint8_t)*s++);
}

static void kputhex(uint64_t v)
{
	char b[19];
	b[0] = '0';
	b[1] = 'x';
	for (int i = 0; i < 16; i++)
		b[2 + i] = "0123456789abcdef"[(v >> (60 - 4 * i)) & 15];
	b[18] = 0;
	kputs(b);
}

static void set_gate(unsigned int vec, void *fn, unsigned int dpl)
{
	uint64_t a = (uint64_t)fn;
	idt[vec].off0 = (uint16_t)a;
	idt[vec].sel = 0x08;
	idt[vec].ist = 0;
	idt[vec].type = (uint8_t)(0x8e | (dpl << 5)); /* present, 64-bit interrupt gate */
	idt[vec].off1 = (uint16_t)(a >> 16);
	idt[vec].off2 = (uint32_t)(a >> 32);
}

#define IOAPIC ((volatile uint32_t *)0xfec00000ul)

static void ioapic_write(uint32_t reg, uint32_t v)
{
	IOAPIC[0] = reg;
	IOAPIC[4] = v;
}

void kmain(struct hvm_start_info *si)
{
	static void *const exc[22] = {
		isr_0, isr_1, isr_2, isr_3, isr_4, isr_5, isr_6, isr_7, isr_8, isr_9, isr_10,
		isr_11, isr_12, isr_13, isr_14, isr_15, isr_16, isr_17, isr_18, isr_19, isr_20,
		isr_21,
	};
	uint64_t base = (uint64_t)&tss;
	struct {
		uint16_t limit;
		uint64_t base;
	} __attribute__((packed)) idtr = { sizeof(idt) - 1, (uint64_t)idt };

	tss.rsp0 = (uint64_t)kstack_top;
	tss.iomap = sizeof(tss);
	gdt[5] = (sizeof(tss) - 1) | ((base & 0xffffff) << 16) | (0x89ull << 40) |
		 (((base >> 24) & 0xff) << 56);
	gdt[6] = base >> 32;
	__asm__ volatile("ltr %w0" : : "r"(0x28));

	for (unsigned int i = 0; i < 22; i++)
		set_gate(i, exc[i], 0);
	set_gate(VEC_TIMER, isr_48, 0);
	set_gate(VEC_XS, isr_49, 0);
	set_gate(VEC_SPURIOUS, isr_255, 0);
	__asm__ volatile("lidt %0" : : "m"(idtr));

	outb(0x21, 0xff); /* legacy PIC: all masked */
	outb(0xa1, 0xff);

	wrmsr(0x1b, rdmsr(0x1b) | 0xc00); /* x2APIC on */
	wrmsr(0x80f, 0x100 | VEC_SPURIOUS);
	wrmsr(0x835, 0x10000); /* LINT0 masked */
	wrmsr(0x836, 0x10000); /* LINT1 masked */
	wrmsr(0x83e, 0xb);     /* timer divide by 1 */
	wrmsr(0x832, VEC_TIMER); /* one-shot */

	wrmsr(0x4b564d01, (uint64_t)&kvmclock | 1); /* MSR_KVM_SYSTEM_TIME_NEW */

	ioapic_write(0x10 + 2 * XS_NOTIFY_GSI + 1, 0);
	ioapic_write(0x10 + 2 * XS_NOTIFY_GSI, VEC_XS); /* edge, fixed, unmasked */

	enter_user(user_main, ustack + sizeof(ustack), si);
}

static void sys_sleep(uint64_t ns)
{
	if (ns < 1000)
		ns = 1000;
	if (ns > 0xffffffffull)
		ns = 0xffffffffull;
	timer_fired = 0;
	xs_fired = 0;
	wrmsr(0x838, ns);
	while (!timer_fired && !xs_fired)
		__asm__ volatile("sti; hlt; cli" ::: "memory");
	wrmsr(0x838, 0);
}

static uint64_t do_syscall(uint64_t nr, uint64_t a, uint64_t b, uint64_t c)
{
	switch (nr) {
	case SYS_SLEEP:
		sys_sleep(a);
		return 0;
	case SYS_OUTB:
		outb((uint16_t)a, (uint8_t)b);
		return 0;
	case SYS_OUTS:
		/* not rep outsb: PVM's emulator raises #GP on string I/O */
		for (const uint8_t *p = (const uint8_t *)b; c--; p++)
			outb((uint16_t)a, *p);
		return 0;
	}
	return (uint64_t)-38;
}

void trap(struct frame *f);
void trap(struct frame *f)
{
	switch (f->vec) {
	case VEC_TIMER:
		timer_fired = 1;
		wrmsr(0x80b, 0);
		return;
	case VEC_XS:
		xs_fired = 1;
		wrmsr(0x80b, 0);
		return;
	case VEC_SPURIOUS:
		return;
	case 6: /* ud2 from user mode is the syscall gate */
		if ((f->cs & 3) == 3 && *(const uint16_t *)f->rip == 0x0b0f) {
			f->rax = do_syscall(f->rax, f->rdi, f->rsi, f->rdx);
			f->rip += 2;
			return;
		}
		break;
	}
	uint64_t cr2;
	__asm__ volatile("mov %%cr2, %0" : "=r"(cr2));
	kputs("\nxstguest: EXCEPTION vec=");
	kputhex(f->vec);
	kputs(" err=");
	kputhex(f->err);
	kputs(" rip=");
	kputhex(f->rip);
	kputs(" cr2=");
	kputhex(cr2);
	kputs(" cs=");
	kputhex(f->cs);
	kputs(" rflags=");
	kputhex(f->rflags);
	kputs(" rsp=");
	kputhex(f->rsp);
	kputs("\n");
	outb(PORT_XST_SHUTDOWN, 3); /* crash */
	for (;;)
		__asm__ volatile("cli; hlt");
}

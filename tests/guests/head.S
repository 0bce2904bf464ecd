/*
 * xstguest entry: the PVH boot ABI enters start32 in 32-bit protected mode, paging off,
 * %ebx = physical address of struct hvm_start_info.  We switch to long mode with static
 * page tables (identity map of 0-3 GiB with 2 MiB user pages, 3-4 GiB uncached for the
 * IOAPIC/LAPIC), so no kernel-mode loops run at boot: on KVM's PVM backend every
 * kernel-mode instruction is emulated, while user-mode code runs natively.
 */
#define XEN_ELFNOTE_PHYS32_ENTRY 18

	.section .note.xen, "a"
	.align 4
	.long 4			/* namesz */
	.long 4			/* descsz */
	.long XEN_ELFNOTE_PHYS32_ENTRY
	.asciz "Xen"
	.long start32

	.section .text.head, "ax"
	.code32
	.globl start32
start32:
	cld
	movl %ebx, %edi
	lgdt gdt_ptr
	movl $pml4, %eax
	movl %eax, %cr3
	movl $0x6a0, %eax		/* PAE | PGE | OSFXSR | OSXMMEXCPT */
	movl %eax, %cr4
	movl $0xc0000080, %ecx		/* EFER.LME */
	rdmsr
	orl $0x100, %eax
	wrmsr
	movl $0x80010033, %eax		/* PG | WP | NE | ET | MP | PE */
	movl %eax, %cr0
	ljmp $0x08, $start64

	.code64
start64:
	movl $0x10, %eax
	movl %eax, %ds
	movl %eax, %es
	movl %eax, %ss
	xorl %eax, %eax
	movl %eax, %fs
	movl %eax, %gs
	movq $kstack_top, %rsp
	movl %edi, %edi
	call kmain
1:	hlt
	jmp 1b

/* Interrupt stubs: push a dummy error code where the CPU does not, then the vector. */
.macro STUB vec, err=0
	.globl isr_\vec
isr_\vec:
	.if \err == 0
	pushq $0
	.endif
	pushq $\vec
	jmp isr_common
.endm
STUB 0
STUB 1
STUB 2
STUB 3
STUB 4
STUB 5
STUB 6
STUB 7
STUB 8, 1
STUB 9
STUB 10, 1
STUB 11, 1
STUB 12, 1
STUB 13, 1
STUB 14, 1
STUB 15
STUB 16
STUB 17, 1
STUB 18
STUB 19
STUB 20
STUB 21, 1
STUB 48
STUB 49
STUB 255

isr_common:
	pushq %rax
	pushq %rbx
	pushq %rcx
	pushq %rdx
	pushq %rsi
	pushq %rdi
	pushq %rbp
	pushq %r8
	pushq %r9
	pushq %r10
	pushq %r11
	pushq %r12
	pushq %r13
	pushq %r14
	pushq %r15
	movq %rsp, %rdi
	call trap
	popq %r15
	popq %r14
	popq %r13
	popq %r12
	popq %r11
	popq %r10
	popq %r9
	popq %r8
	popq %rbp
	popq %rdi
	popq %rsi
	popq %rdx
	popq %rcx
	popq %rbx
	popq %rax
	addq $16, %rsp
	iretq

/* Enter user mode: rdi = entry, rsi = stack, rdx = argument. */
	.globl enter_user
enter_user:
	movq %rdi, %rcx
	movq %rdx, %rdi
	pushq $0x1b			/* ss: user data */
	pushq %rsi			/* rsp */
	pushq $0x0002			/* rflags: IOPL 0, IF off */
	pushq $0x23			/* cs: user code */
	pushq %rcx			/* rip */
	iretq

	.section .data.pt, "aw"
	.align 4096
	.globl pml4
pml4:
	.quad pdpt + 0x7
	.fill 511, 8, 0
pdpt:
	.quad pd + 0x7
	.quad pd + 0x1007
	.quad pd + 0x2007
	.quad pd + 0x301b		/* 3-4 GiB: MMIO, uncached, supervisor */
	.fill 508, 8, 0
pd:
	.set i, 0
	.rept 1536
	.quad (i << 21) | 0x87		/* present, writable, user, 2 MiB */
	.set i, i + 1
	.endr
	.rept 512
	.quad (i << 21) | 0x9b		/* present, writable, PWT, PCD, 2 MiB */
	.set i, i + 1
	.endr

	.data
	.align 16
	.globl gdt
gdt:
	.quad 0
	.quad 0x00af9a000000ffff	/* 0x08 kernel code 64 */
	.quad 0x00cf92000000ffff	/* 0x10 kernel data */
	.quad 0x00cff2000000ffff	/* 0x18 user data */
	.quad 0x00affa000000ffff	/* 0x20 user code 64 */
	.quad 0, 0			/* 0x28 TSS, filled by kmain */
gdt_end:
gdt_ptr:
	.word gdt_end - gdt - 1
	.quad gdt

	.bss
	.align 4096
	.space 16384
	.globl kstack_top
kstack_top:

/*
 * The syscall bridge for ordinary (non-PVM-aware) kernels on KVM's PVM backend.
 *
 * There, guest user mode runs natively and a `syscall` instruction in it does not
 * enter guest kernel mode: the CPU's part is done (rcx = return rip, r11 = rflags,
 * rip = the guest's MSR_LSTAR) but the vcpu stays in ring 3, so the fetch of the
 * kernel's entry code faults and the #PF is delivered to the guest kernel, which kills
 * the process (Debian's Linux: init dies at its first syscall).  Guest-debug hardware
 * breakpoints are not honoured in native user mode, but the instruction emulator that
 * runs guest kernel mode checks them before each instruction.  So, once the guest has
 * set LSTAR, a breakpoint sits on its #PF handler (IDT vector 14): an exit there whose
 * exception frame says "user mode, rip = LSTAR" is that syscall, and we finish it the
 * way the CPU would have: CS/SS from MSR_STAR at CPL 0, rflags = r11 masked with
 * MSR_SYSCALL_MASK, the user rsp back, rip = LSTAR (the frame on the kernel stack is
 * simply abandoned; the entry code loads its own stack).  Any other page fault goes
 * on past the breakpoint: over a nop by moving rip, else by single-stepping one
 * instruction and arming the breakpoint again.  The way back (sysretq, iretq) needs no
 * help.
 *
 * On real hardware none of this runs: user syscalls never fault at LSTAR there.
 */
#include <errno.h>
#include <string.h>
#include <sys/ioctl.h>

#include "plugins/kvm/kvm_priv.h"

#define MSR_STAR 0xc0000081u
#define MSR_LSTAR 0xc0000082u
#define MSR_SYSCALL_MASK 0xc0000084u
#define PF_VECTOR 14

static int msrs_get(int fd, const uint32_t *idx, uint64_t *val, unsigned int n)
{
	struct {
		struct kvm_msrs h;
		struct kvm_msr_entry e[4];
	} m;
	memset(&m, 0, sizeof(m));
	m.h.nmsrs = n;
	for (unsigned int i = 0; i < n; i++)
		m.e[i].index = idx[i];
	if (ioctl(fd, KVM_GET_MSRS, &m) != (int)n)
		return -EIO;
	for (unsigned int i = 0; i < n; i++)
		val[i] = m.e[i].data;
	return 0;
}

static int debug_set(struct kvm_vcpu *c, bool step)
{
	struct kvm_guest_debug dbg;
	memset(&dbg, 0, sizeof(dbg));
	if (step) {
		dbg.control = KVM_GUESTDBG_ENABLE | KVM_GUESTDBG_SINGLESTEP;
	} else {
		dbg.control = KVM_GUESTDBG_ENABLE | KVM_GUESTDBG_USE_HW_BP;
		dbg.arch.debugreg[0] = c->sc_pf_entry;
		dbg.arch.debugreg[7] = 0x1; /* L0, execute, length 1 */
	}
	if (ioctl(c->fd, KVM_SET_GUEST_DEBUG, &dbg) < 0)
		return -errno;
	c->sc_stepping = step;
	return 0;
}

int kvm_pvm_syscall_arm(struct xst_vcpu *vcpu)
{
	struct kvm_vcpu *c = vcpu->priv;
	uint32_t idx = MSR_LSTAR;
	uint64_t lstar = 0;
	struct kvm_sregs s;
	uint8_t gate[16];

	if (c->sc_armed)
		return 0;
	int rc = msrs_get(c->fd, &idx, &lstar, 1);
	if (rc < 0 || !lstar)
		return rc;
	if (ioctl(c->fd, KVM_GET_SREGS, &s) < 0)
		return -errno;
	if (s.idt.limit < PF_VECTOR * 16 + 15 ||
	    kvm_guest_read_va(vcpu, s.idt.base + PF_VECTOR * 16, gate, sizeof(gate)) !=
		    (int)sizeof(gate))
		return -EFAULT;
	uint64_t entry = (uint64_t)gate[0] | (uint64_t)gate[1] << 8 | (uint64_t)gate[6] << 16 |
			 (uint64_t)gate[7] << 24;
	uint32_t hi;
	memcpy(&hi, gate + 8, 4);
	entry |= (uint64_t)hi << 32;
	if (!entry)
		return 0;
	c->sc_lstar = lstar;
	c->sc_pf_entry = entry;
	c->sc_armed = true; /* tried once: without KVM_SET_GUEST_DEBUG there is no bridge */
	return debug_set(c, false);
}

static void seg_flat(struct kvm_segment *s, uint16_t sel, uint8_t type, unsigned int dpl,
		     bool code64)
{
	memset(s, 0, sizeof(*s));
	s->selector = sel;
	s->limit = 0xffffffff;
	s->type = type;
	s->present = 1;
	s->s = 1;
	s->dpl = (uint8_t)dpl;
	s->l = code64;
	s->db = !code64;
	s->g = 1;
}

int kvm_pvm_syscall_debug_exit(struct xst_vcpu *vcpu)
{
	struct kvm_vcpu *c = vcpu->priv;
	struct kvm_regs r;
	struct kvm_sregs s;
	uint64_t frame[6]; /* error code, rip, cs, rflags, rsp, ss */

	if (c->sc_stepping) /* one instruction past the breakpoint: arm it again */
		return debug_set(c, false);
	if (ioctl(c->fd, KVM_GET_REGS, &r) < 0)
		return -errno;
	if (r.rip != c->sc_pf_entry)
		return -EINVAL;
	uint8_t *fb = (uint8_t *)frame;
	for (size_t got = 0; got < sizeof(frame);) {
		int n = kvm_guest_read_va(vcpu, r.rsp + got, fb + got, sizeof(frame) - got);
		if (n <= 0)
			return -EFAULT;
		got += (size_t)n;
	}
	if (frame[1] != c->sc_lstar || (frame[2] & 3) != 3) {
		/* An ordinary page fault: past the breakpoint.  Linux's handler starts with
		 * the nops of its patched-out clac; a nop is skipped here, anything else is
		 * single-stepped. */
		uint8_t op = 0;
		if (kvm_guest_read_va(vcpu, r.rip, &op, 1) != 1 || op != 0x90)
			return debug_set(c, true);
		r.rip += 1;
		c->sc_nop_skips++;
		return ioctl(c->fd, KVM_SET_REGS, &r) < 0 ? -errno : 0;
	}
	uint32_t idx[2] = { MSR_STAR, MSR_SYSCALL_MASK };
	uint64_t v[2];
	int rc = msrs_get(c->fd, idx, v, 2);
	if (rc < 0)
		return rc;
	if (ioctl(c->fd, KVM_GET_SREGS, &s) < 0)
		return -errno;
	uint16_t kcs = (uint16_t)((v[0] >> 32) & 0xfffc);
	seg_flat(&s.cs, kcs, 0xb, 0, true);
	seg_flat(&s.ss, (uint16_t)(kcs + 8), 0x3, 0, false);
	r.rip = c->sc_lstar;
	r.rsp = frame[4];
	r.rflags = (r.r11 & ~v[1]) | 0x2;
	if (ioctl(c->fd, KVM_SET_SREGS, &s) < 0 || ioctl(c->fd, KVM_SET_REGS, &r) < 0)
		return -errno;
	c->sc_entries++;
	return 0;
}

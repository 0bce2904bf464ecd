/*
 * The CPUID model: what KVM_GET_SUPPORTED_CPUID reports, with per-vcpu APIC ids, and on
 * KVM's PVM backend without the features its kernel-mode instruction emulator cannot
 * execute (xsave family and AVX, popcnt, cmpxchg16b, rdtscp, ...), so that a guest
 * kernel choosing code paths by CPUID stays on instructions that work.  Guest user mode
 * runs natively on PVM, but user and kernel see one CPUID.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>

#include "plugins/kvm/kvm_priv.h"

#define MAX_ENTRIES 256

static void pvm_mask(struct kvm_cpuid_entry2 *e)
{
	switch (e->function) {
	case 1:
		/* FMA, CX16, POPCNT, XSAVE, OSXSAVE, AVX, F16C, RDRAND */
		e->ecx &= ~((1u << 12) | (1u << 13) | (1u << 23) | (1u << 26) | (1u << 27) |
			    (1u << 28) | (1u << 29) | (1u << 30));
		break;
	case 7:
		if (e->index == 0) {
			/* keep FSGSBASE(0), BMI1(3), SMEP(7), BMI2(8), ERMS(9), INVPCID(10),
			 * SMAP(20), CLFLUSHOPT(23); drop AVX2, AVX-512, SHA, ADX, RDSEED,... */
			e->ebx &= (1u << 0) | (1u << 3) | (1u << 7) | (1u << 8) | (1u << 9) |
				  (1u << 10) | (1u << 20) | (1u << 23);
			e->ecx &= (1u << 2); /* UMIP */
			e->edx &= (1u << 4); /* FSRM */
		} else {
			e->eax = e->ebx = e->ecx = e->edx = 0;
		}
		break;
	case 0xd: /* no XSAVE */
		e->eax = e->ebx = e->ecx = e->edx = 0;
		break;
	case 0x80000001:
		e->edx &= ~(1u << 27);                 /* RDTSCP */
		e->ecx &= ~((1u << 5) | (1u << 6));    /* ABM(lzcnt), SSE4A */
		break;
	}
}

int kvm_cpuid_init(struct kvm_hv *h)
{
	struct kvm_cpuid2 *c = calloc(1, sizeof(*c) + MAX_ENTRIES * sizeof(c->entries[0]));
	if (!c)
		return -ENOMEM;
	c->nent = MAX_ENTRIES;
	if (ioctl(h->kvm_fd, KVM_GET_SUPPORTED_CPUID, c) < 0) {
		int err = -errno;
		free(c);
		return err;
	}
	if (h->pvm)
		for (unsigned int i = 0; i < c->nent; i++)
			pvm_mask(&c->entries[i]);
	h->cpuid = c;
	return 0;
}

int kvm_cpuid_set(struct kvm_hv *h, int vcpu_fd, unsigned int apic_id)
{
	size_t sz = sizeof(*h->cpuid) + h->cpuid->nent * sizeof(h->cpuid->entries[0]);
	struct kvm_cpuid2 *c = malloc(sz);
	int rc = 0;
	if (!c)
		return -ENOMEM;
	memcpy(c, h->cpuid, sz);
	for (unsigned int i = 0; i < c->nent; i++) {
		struct kvm_cpuid_entry2 *e = &c->entries[i];
		if (e->function == 1) {
			e->ebx = (e->ebx & 0x00ffffff) | (apic_id << 24);
			if (h->pvm) /* OSXSAVE mirrors CR4 */
				e->ecx &= ~(1u << 27);
		} else if (e->function == 0xb || e->function == 0x1f) {
			e->edx = apic_id;
		}
	}
	if (ioctl(vcpu_fd, KVM_SET_CPUID2, c) < 0)
		rc = -errno;
	free(c);
	return rc;
}

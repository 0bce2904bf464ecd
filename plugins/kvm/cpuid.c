/*
 * The CPUID model: what KVM_GET_SUPPORTED_CPUID reports, with per-vcpu APIC ids, and on
 * KVM's PVM backend without the features its kernel-mode instruction emulator cannot
 * execute (xsave family and AVX, popcnt, cmpxchg16b, rdtscp, ...), so that a guest
 * kernel choosing code paths by CPUID stays on instructions that work.  Guest user mode
 * runs natively on PVM, but user and kernel see one CPUID.
 *
 * Levelling: XST_KVM_CPUID_MASK (set by `xst-agent --cpuid-mask`) names features hidden
 * from every guest of this host, like Xen's cpuid_mask_* options, so that a pool of
 * different hosts can offer their common subset.  Migration and restore compare the
 * feature words a guest saw at its source with this host's model (kvm_cpu_check): a
 * guest that may use a feature this host lacks is refused before any page moves.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>

#include <talloc.h>

#include "plugins/kvm/kvm_priv.h"
#include "plugins/kvm/kvm_state.pb-c.h"

enum { EAX, EBX, ECX, EDX };

/* The feature words compared between hosts. */
static const struct cpuid_word {
	uint32_t function, index, reg;
	uint32_t ignore; /* bits that are state, not features (OSXSAVE, OSPKE) */
} words[] = {
    {1, 0, ECX, 1u << 27}, {1, 0, EDX, 0},	   {7, 0, EBX, 0},	    {7, 0, ECX, 1u << 4},
    {7, 0, EDX, 0},	   {7, 1, EAX, 0},	   {0xd, 1, EAX, 0},	    {0x80000001, 0, ECX, 0},
    {0x80000001, 0, EDX, 0}, {0x80000007, 0, EDX, 0}, {0x80000008, 0, EBX, 0},
};

/* Feature names (as Linux's /proc/cpuinfo spells them) for the mask and messages. */
static const struct cpuid_feature {
	const char *name;
	uint32_t function, index, reg, bit;
} features[] = {
    {"fpu", 1, 0, EDX, 0},	   {"tsc", 1, 0, EDX, 4},	   {"msr", 1, 0, EDX, 5},
    {"pae", 1, 0, EDX, 6},	   {"cx8", 1, 0, EDX, 8},	   {"apic", 1, 0, EDX, 9},
    {"sep", 1, 0, EDX, 11},	   {"mtrr", 1, 0, EDX, 12},	   {"pge", 1, 0, EDX, 13},
    {"cmov", 1, 0, EDX, 15},	   {"pat", 1, 0, EDX, 16},	   {"clflush", 1, 0, EDX, 19},
    {"mmx", 1, 0, EDX, 23},	   {"fxsr", 1, 0, EDX, 24},	   {"sse", 1, 0, EDX, 25},
    {"sse2", 1, 0, EDX, 26},	   {"ht", 1, 0, EDX, 28},	   {"pni", 1, 0, ECX, 0},
    {"pclmulqdq", 1, 0, ECX, 1},   {"ssse3", 1, 0, ECX, 9},	   {"fma", 1, 0, ECX, 12},
    {"cx16", 1, 0, ECX, 13},	   {"pcid", 1, 0, ECX, 17},	   {"sse4_1", 1, 0, ECX, 19},
    {"sse4_2", 1, 0, ECX, 20},	   {"x2apic", 1, 0, ECX, 21},	   {"movbe", 1, 0, ECX, 22},
    {"popcnt", 1, 0, ECX, 23},	   {"tsc_deadline_timer", 1, 0, ECX, 24},
    {"aes", 1, 0, ECX, 25},	   {"xsave", 1, 0, ECX, 26},	   {"avx", 1, 0, ECX, 28},
    {"f16c", 1, 0, ECX, 29},	   {"rdrand", 1, 0, ECX, 30},	   {"fsgsbase", 7, 0, EBX, 0},
    {"bmi1", 7, 0, EBX, 3},	   {"hle", 7, 0, EBX, 4},	   {"avx2", 7, 0, EBX, 5},
    {"smep", 7, 0, EBX, 7},	   {"bmi2", 7, 0, EBX, 8},	   {"erms", 7, 0, EBX, 9},
    {"invpcid", 7, 0, EBX, 10},	   {"rtm", 7, 0, EBX, 11},	   {"avx512f", 7, 0, EBX, 16},
    {"avx512dq", 7, 0, EBX, 17},   {"rdseed", 7, 0, EBX, 18},	   {"adx", 7, 0, EBX, 19},
    {"smap", 7, 0, EBX, 20},	   {"clflushopt", 7, 0, EBX, 23},  {"clwb", 7, 0, EBX, 24},
    {"avx512cd", 7, 0, EBX, 28},   {"sha_ni", 7, 0, EBX, 29},	   {"avx512bw", 7, 0, EBX, 30},
    {"avx512vl", 7, 0, EBX, 31},   {"umip", 7, 0, ECX, 2},	   {"pku", 7, 0, ECX, 3},
    {"gfni", 7, 0, ECX, 8},	   {"vaes", 7, 0, ECX, 9},	   {"vpclmulqdq", 7, 0, ECX, 10},
    {"rdpid", 7, 0, ECX, 22},	   {"fsrm", 7, 0, EDX, 4},	   {"serialize", 7, 0, EDX, 14},
    {"xsaveopt", 0xd, 1, EAX, 0},  {"xsavec", 0xd, 1, EAX, 1},	   {"xsaves", 0xd, 1, EAX, 3},
    {"lahf_lm", 0x80000001, 0, ECX, 0}, {"abm", 0x80000001, 0, ECX, 5},
    {"3dnowprefetch", 0x80000001, 0, ECX, 8}, {"syscall", 0x80000001, 0, EDX, 11},
    {"nx", 0x80000001, 0, EDX, 20}, {"pdpe1gb", 0x80000001, 0, EDX, 26},
    {"rdtscp", 0x80000001, 0, EDX, 27}, {"lm", 0x80000001, 0, EDX, 29},
    {"invtsc", 0x80000007, 0, EDX, 8},
};

#define NFEATURES (sizeof(features) / sizeof(features[0]))
#define NWORDS (sizeof(words) / sizeof(words[0]))

/* A compared word's state bits (0 for a word not compared). */
static uint32_t state_bits(uint32_t function, uint32_t index, uint32_t reg)
{
	for (size_t i = 0; i < NWORDS; i++)
		if (words[i].function == function && words[i].index == index &&
		    words[i].reg == reg)
			return words[i].ignore;
	return 0;
}

#define MASK_ENV "XST_KVM_CPUID_MASK"

static const char *const reg_names[] = {"eax", "ebx", "ecx", "edx"};

static size_t cpuid_size(const struct kvm_cpuid2 *c)
{
	return sizeof(*c) + c->nent * sizeof(c->entries[0]);
}

static uint32_t *entry_reg(struct kvm_cpuid_entry2 *e, uint32_t reg)
{
	return reg == EAX ? &e->eax : reg == EBX ? &e->ebx : reg == ECX ? &e->ecx : &e->edx;
}

static struct kvm_cpuid_entry2 *entry_find(struct kvm_cpuid2 *c, uint32_t function,
					   uint32_t index)
{
	for (unsigned int i = 0; i < c->nent; i++) {
		struct kvm_cpuid_entry2 *e = &c->entries[i];
		bool indexed = e->flags & KVM_CPUID_FLAG_SIGNIFCANT_INDEX;

		if (e->function == function && (!indexed || e->index == index))
			return e;
	}
	return NULL;
}

static const struct cpuid_feature *feature_by_name(const char *name, size_t len)
{
	for (size_t i = 0; i < NFEATURES; i++)
		if (strlen(features[i].name) == len && !strncmp(features[i].name, name, len))
			return &features[i];
	return NULL;
}

/* Apply (c != NULL) or just check the mask in the environment.  -EINVAL with the
 * unknown name in why. */
static int mask_apply(struct kvm_cpuid2 *c, char *why, size_t whylen)
{
	const char *m = getenv(MASK_ENV), *p;

	for (p = m; p && *p;) {
		size_t n = strcspn(p, ", ");
		const struct cpuid_feature *f;

		if (n == 0) {
			p++;
			continue;
		}
		f = feature_by_name(p, n);
		if (!f) {
			if (why && whylen)
				snprintf(why, whylen, "%s: unknown CPU feature \"%.*s\"", MASK_ENV,
					 (int)n, p);
			return -EINVAL;
		}
		if (c) {
			struct kvm_cpuid_entry2 *e = entry_find(c, f->function, f->index);

			if (e)
				*entry_reg(e, f->reg) &= ~(1u << f->bit);
		}
		p += n;
	}
	return 0;
}

int kvm_cpuid_mask_check(char *why, size_t whylen)
{
	return mask_apply(NULL, why, whylen);
}

static void bit_name(char *buf, size_t len, uint32_t function, uint32_t index, uint32_t reg,
		     unsigned int bit)
{
	for (size_t i = 0; i < NFEATURES; i++) {
		const struct cpuid_feature *f = &features[i];

		if (f->function == function && f->index == index && f->reg == reg && f->bit == bit) {
			snprintf(buf, len, "%s (CPUID 0x%x.%u %s bit %u)", f->name, function, index,
				 reg_names[reg], bit);
			return;
		}
	}
	snprintf(buf, len, "CPUID 0x%x.%u %s bit %u", function, index, reg_names[reg], bit);
}

int kvm_cpu_features(struct xst_vm *vm, void *ctx, uint8_t **blob, size_t *len)
{
	struct kvm_hv *h = kvm_hv_of(vm);
	struct kvm_vm *k = kvm_vm_of(vm);
	struct kvm_cpuid2 *model = k->cpuid ? k->cpuid : h->cpuid;
	KvmCpuFeatures f = KVM_CPU_FEATURES__INIT;
	KvmCpuidWord w[NWORDS], *wp[NWORDS];
	size_t i;

	for (i = 0; i < NWORDS; i++) {
		struct kvm_cpuid_entry2 *e = entry_find(model, words[i].function, words[i].index);

		kvm_cpuid_word__init(&w[i]);
		w[i].function = words[i].function;
		w[i].index = words[i].index;
		w[i].reg = words[i].reg;
		w[i].value = e ? *entry_reg(e, words[i].reg) & ~words[i].ignore : 0;
		wp[i] = &w[i];
	}
	f.version = 1;
	f.n_word = NWORDS;
	f.word = wp;
	*len = kvm_cpu_features__get_packed_size(&f);
	*blob = talloc_size(ctx, *len ? *len : 1);
	if (!*blob)
		return -ENOMEM;
	kvm_cpu_features__pack(&f, *blob);
	return 0;
}

/* The guest keeps the features it saw at its source: this vm's model becomes the
 * host's with every compared word cut to the incoming one, set again on every vcpu
 * (none has run yet). */
static int level(struct xst_vm *vm, const KvmCpuFeatures *f, char *why, size_t whylen)
{
	struct kvm_hv *h = kvm_hv_of(vm);
	struct kvm_vm *k = kvm_vm_of(vm);
	struct kvm_cpuid2 *c = malloc(cpuid_size(h->cpuid));
	int rc;

	if (!c)
		return -ENOMEM;
	memcpy(c, h->cpuid, cpuid_size(h->cpuid));
	for (size_t i = 0; i < f->n_word; i++) {
		const KvmCpuidWord *w = f->word[i];
		struct kvm_cpuid_entry2 *e = entry_find(c, w->function, w->index);
		uint32_t keep = w->value | state_bits(w->function, w->index, w->reg);

		if (e)
			*entry_reg(e, w->reg) &= keep;
	}
	for (unsigned int id = 0; id < KVM_VCPUS_MAX; id++) {
		if (!k->vcpu_live[id])
			continue;
		rc = kvm_cpuid_set(h, c, k->vcpu_fd[id], id);
		if (rc < 0) {
			snprintf(why, whylen, "setting the levelled CPUID on vcpu %u: %s", id,
				 strerror(-rc));
			free(c);
			return rc;
		}
	}
	free(k->cpuid);
	k->cpuid = c;
	return 0;
}

int kvm_cpu_check(struct xst_vm *vm, const uint8_t *blob, size_t len, char *why,
		  size_t whylen)
{
	struct kvm_hv *h = kvm_hv_of(vm);
	KvmCpuFeatures *f = kvm_cpu_features__unpack(NULL, len, blob);
	int rc = 0;

	if (!f || f->version != 1) {
		snprintf(why, whylen, "unreadable CPU feature record");
		kvm_cpu_features__free_unpacked(f, NULL);
		return -EINVAL;
	}
	for (size_t i = 0; i < f->n_word && rc == 0; i++) {
		const KvmCpuidWord *w = f->word[i];
		struct kvm_cpuid_entry2 *e;
		uint32_t here, missing;

		if (w->reg > EDX) {
			snprintf(why, whylen, "unreadable CPU feature record");
			rc = -EINVAL;
			break;
		}
		e = entry_find(h->cpuid, w->function, w->index);
		here = (e ? *entry_reg(e, w->reg) : 0) |
		       state_bits(w->function, w->index, w->reg);
		missing = w->value & ~here;
		if (missing) {
			char name[96];

			bit_name(name, sizeof(name), w->function, w->index, w->reg,
				 (unsigned int)__builtin_ctz(missing));
			snprintf(why, whylen, "the guest may use %s, which this host does not offer",
				 name);
			rc = -EOPNOTSUPP;
		}
	}
	if (rc == 0)
		rc = level(vm, f, why, whylen);
	kvm_cpu_features__free_unpacked(f, NULL);
	return rc;
}

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
	if (mask_apply(c, NULL, 0) < 0) {
		free(c);
		return -EINVAL;
	}
	h->cpuid = c;
	return 0;
}

int kvm_cpuid_set(struct kvm_hv *h, const struct kvm_cpuid2 *model, int vcpu_fd,
		  unsigned int apic_id)
{
	size_t sz = cpuid_size(model);
	struct kvm_cpuid2 *c = malloc(sz);
	int rc = 0;
	if (!c)
		return -ENOMEM;
	memcpy(c, model, sz);
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

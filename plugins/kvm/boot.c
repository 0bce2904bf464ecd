/*
 * Direct boot: PVH ELF kernels (Xen's boot ABI for HVM guests without firmware), and
 * Linux bzImages whose payload (decompressed here, on the host) is such a kernel:
 * Debian's kernels are built with CONFIG_PVH, so the vmlinux inside carries the note.
 *
 * The kernel's PT_LOAD segments are copied to their physical addresses; the Xen ELF
 * note XEN_ELFNOTE_PHYS32_ENTRY (18) gives the 32-bit entry point.  The boot
 * structures live in low memory (docs/kvm.md): struct hvm_start_info at 0x1000, one
 * module (the ramdisk, placed at the top of RAM) in the modlist at 0x1800, the memory
 * map at 0x1c00 and the command line at 0x2000, to which " xs_gfn=0xfe" is appended
 * so the guest finds its xenstore ring page.  vcpu 0 starts in flat 32-bit protected
 * mode, paging off, %ebx = start_info, as the PVH ABI says.
 */
#include <elf.h>
#include <errno.h>
#include <lzma.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "plugins/kvm/kvm_priv.h"

#define XEN_ELFNOTE_PHYS32_ENTRY 18
/*
 * Linux on KVM's PVM backend (docs/kvm.md, "Linux on PVM"): PVM does not apply the
 * CPUID we set to what the guest reads, so the features its kernel-mode emulator lacks
 * are cleared through the command line (xsave/AVX: "x87 FPU will use FXSAVE"; SMAP:
 * clac/stac are not emulated; SSE: ldmxcsr is not emulated).  The kernel reads at most
 * 127 characters of clearcpuid=, so the list names each feature once and leaves out
 * those cleared with what they depend on (gfni with sse2, vaes and vpclmulqdq with avx).
 *
 * The rest skips emulated work (each instruction, and each iteration of a rep string
 * instruction, costs ~0.4 us): erms/fsrm make memset, memcpy and clear_page use rep
 * stosq/movsq (8 bytes per iteration) instead of rep stosb/movsb; init_on_alloc=0 stops
 * zeroing every allocated page; mitigations only add work; the lockup detectors take
 * slow emulation for hangs; cryptomgr.notests skips the crypto self-tests.  The
 * blacklisted initcalls are those a profile of Debian's 6.1 kernel found expensive and
 * a guest can do without: ftrace's weak-function check (a kallsyms lookup per call
 * site), the trace-event enum rewrite and tracefs (no tracefs in the guest), every
 * built-in kfunc registration (the first one parses the 4 MiB vmlinux BTF: minutes;
 * the guest's BPF programs lose those kfuncs and TCP stays on reno instead of cubic,
 * without trying to load it), the CMOS RTC (the platform has none: probing it spins on a
 * missing UIP bit), the built-in X.509 certificates (an RSA verify each; module
 * signatures cannot be checked), self-tests (blake2s, kdf108), the encrypted-keys type
 * and /sys/kernel/slab (a sysfs directory per cache; /proc/slabinfo stays).
 */
#define PVM_LINUX_CMDLINE \
	"clearcpuid=xsave,avx,sse,sse2,popcnt,cx16,rdtscp,rdrand,rdseed,smap,erms,fsrm,pni," \
	"ssse3,sse4_1,sse4_2,aes,pclmulqdq,avx2,fma,f16c,sha_ni "                          \
	"mitigations=off init_on_alloc=0 nowatchdog nosoftlockup cryptomgr.notests "      \
	"initcall_blacklist=ftrace_check_for_weak_functions,trace_eval_init,"               \
	"tracer_init_tracefs,bpf_prog_test_run_init,bpf_key_sig_kfuncs_init,"              \
	"bpf_rstat_kfunc_init,bpf_tcp_ca_kfunc_init,kfunc_init,cubictcp_register,"         \
	"tcp_congestion_default,add_rtc_cmos,load_system_certificate_list,"               \
	"blake2s_mod_init,crypto_kdf108_init,init_encrypted,slab_sysfs_init"
#define HVM_START_MAGIC 0x336ec578u
#define KERNEL_MAX (512u << 20)

struct hvm_start_info {
	uint32_t magic, version, flags, nr_modules;
	uint64_t modlist_paddr, cmdline_paddr, rsdp_paddr, memmap_paddr;
	uint32_t memmap_entries, reserved;
};

struct hvm_modlist_entry {
	uint64_t paddr, size, cmdline_paddr, reserved;
};

struct hvm_memmap_table_entry {
	uint64_t addr, size;
	uint32_t type, reserved;
};

/* Reads a whole file into malloc'd memory. */
static int file_read(const char *path, uint8_t **out, size_t *len)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	struct stat st;
	int rc = 0;
	uint8_t *buf = NULL;
	if (fstat(fd, &st) < 0) {
		rc = -errno;
		goto out;
	}
	if (st.st_size <= 0 || (uint64_t)st.st_size > KERNEL_MAX) {
		rc = -EINVAL;
		goto out;
	}
	buf = malloc((size_t)st.st_size);
	if (!buf) {
		rc = -ENOMEM;
		goto out;
	}
	size_t got = 0;
	while (got < (size_t)st.st_size) {
		ssize_t n = read(fd, buf + got, (size_t)st.st_size - got);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			rc = n < 0 ? -errno : -EIO;
			goto out;
		}
		got += (size_t)n;
	}
	*out = buf;
	*len = got;
	buf = NULL;
out:
	free(buf);
	close(fd);
	return rc;
}

static bool range_ok(uint64_t off, uint64_t len, uint64_t size)
{
	return off <= size && len <= size - off;
}

/*
 * bzImage: the setup header (boot protocol >= 2.08) says where the compressed kernel
 * is (payload_offset/payload_length, from the end of the setup sectors).  We decompress
 * it here instead of running the in-guest decompressor.  The payload is an ELF vmlinux;
 * xz is what Debian's kernels use (CONFIG_KERNEL_XZ), other compressions are refused.
 */
#define BZ_MAX_VMLINUX (256u << 20)

static int bzimage_payload(const uint8_t *img, size_t len, uint8_t **out, size_t *out_len)
{
	uint32_t poff, plen;
	uint16_t version;
	if (len < 0x270 || img[0x1fe] != 0x55 || img[0x1ff] != 0xaa ||
	    memcmp(img + 0x202, "HdrS", 4) != 0)
		return -EINVAL;
	memcpy(&version, img + 0x206, 2);
	if (version < 0x208)
		return -EINVAL;
	unsigned int setup_sects = img[0x1f1] ? img[0x1f1] : 4;
	memcpy(&poff, img + 0x248, 4);
	memcpy(&plen, img + 0x24c, 4);
	uint64_t start = (setup_sects + 1ull) * 512 + poff;
	if (!range_ok(start, plen, len) || plen < 6)
		return -EINVAL;
	const uint8_t *p = img + start;
	if (memcmp(p, "\xfd" "7zXZ\0", 6) != 0)
		return -EINVAL; /* gzip, zstd, lzma, lz4, bzip2: not supported */

	lzma_stream zs = LZMA_STREAM_INIT;
	size_t cap = 64u << 20;
	uint8_t *buf = malloc(cap);
	int rc = 0;
	if (!buf)
		return -ENOMEM;
	if (lzma_stream_decoder(&zs, UINT64_MAX, 0) != LZMA_OK) {
		free(buf);
		return -ENOMEM;
	}
	zs.next_in = p;
	zs.avail_in = plen;
	zs.next_out = buf;
	zs.avail_out = cap;
	for (;;) {
		lzma_ret r = lzma_code(&zs, LZMA_FINISH);
		if (r == LZMA_STREAM_END)
			break;
		if (r == LZMA_OK && zs.avail_out == 0) {
			if (cap >= BZ_MAX_VMLINUX) {
				rc = -EFBIG;
				break;
			}
			uint8_t *nb = realloc(buf, cap * 2);
			if (!nb) {
				rc = -ENOMEM;
				break;
			}
			buf = nb;
			zs.next_out = buf + cap;
			zs.avail_out = cap;
			cap *= 2;
			continue;
		}
		rc = r == LZMA_MEM_ERROR ? -ENOMEM : -EINVAL;
		break;
	}
	size_t n = cap - zs.avail_out;
	lzma_end(&zs);
	if (rc < 0) {
		free(buf);
		return rc;
	}
	*out = buf;
	*out_len = n;
	return 0;
}

/* Finds the PHYS32 entry in the PT_NOTE segments; 0 if absent. */
static uint64_t elf_pvh_entry(const uint8_t *img, size_t len, const Elf64_Ehdr *eh)
{
	for (unsigned int i = 0; i < eh->e_phnum; i++) {
		const Elf64_Phdr *ph = (const void *)(img + eh->e_phoff + (size_t)i * eh->e_phentsize);
		if (ph->p_type != PT_NOTE || !range_ok(ph->p_offset, ph->p_filesz, len))
			continue;
		uint64_t off = ph->p_offset, end = ph->p_offset + ph->p_filesz;
		while (off + 12 <= end) {
			uint32_t namesz, descsz, type;
			memcpy(&namesz, img + off, 4);
			memcpy(&descsz, img + off + 4, 4);
			memcpy(&type, img + off + 8, 4);
			uint64_t name = off + 12;
			uint64_t desc = name + ((namesz + 3ull) & ~3ull);
			uint64_t next = desc + ((descsz + 3ull) & ~3ull);
			if (next > end)
				break;
			if (namesz == 4 && memcmp(img + name, "Xen", 4) == 0 &&
			    type == XEN_ELFNOTE_PHYS32_ENTRY && (descsz == 4 || descsz == 8)) {
				uint64_t v = 0;
				memcpy(&v, img + desc, descsz);
				return v;
			}
			off = next;
		}
	}
	return 0;
}

static int load_elf(struct kvm_vm *k, const uint8_t *img, size_t len)
{
	const Elf64_Ehdr *eh = (const void *)img;
	if (len < sizeof(*eh) || eh->e_ident[EI_CLASS] != ELFCLASS64 ||
	    eh->e_ident[EI_DATA] != ELFDATA2LSB || eh->e_machine != EM_X86_64 ||
	    eh->e_phentsize != sizeof(Elf64_Phdr) ||
	    !range_ok(eh->e_phoff, (uint64_t)eh->e_phnum * sizeof(Elf64_Phdr), len))
		return -EINVAL;
	uint64_t entry = elf_pvh_entry(img, len, eh);
	if (!entry || entry >= k->mem_size)
		return -EINVAL; /* not a PVH kernel */
	for (unsigned int i = 0; i < eh->e_phnum; i++) {
		const Elf64_Phdr *ph = (const void *)(img + eh->e_phoff + (size_t)i * sizeof(*ph));
		if (ph->p_type != PT_LOAD)
			continue;
		if (ph->p_filesz > ph->p_memsz || !range_ok(ph->p_offset, ph->p_filesz, len) ||
		    !range_ok(ph->p_paddr, ph->p_memsz, k->mem_size) ||
		    ph->p_paddr < KVM_HIGH_RAM_START)
			return -EINVAL;
		memcpy(k->mem + ph->p_paddr, img + ph->p_offset, ph->p_filesz);
		memset(k->mem + ph->p_paddr + ph->p_filesz, 0, ph->p_memsz - ph->p_filesz);
	}
	k->boot = KVM_BOOT_PVH;
	k->entry = entry;
	return 0;
}

int kvm_boot_load(struct xst_vm *vm, const struct xst_vm_config *cfg)
{
	struct kvm_vm *k = kvm_vm_of(vm);
	uint8_t *img = NULL, *rd = NULL;
	size_t len = 0, rdlen = 0;
	int rc;

	if (!cfg->kernel)
		return -EINVAL;
	rc = file_read(cfg->kernel, &img, &len);
	if (rc < 0)
		return rc;
	bool linux_pvm = false;
	if (len >= 4 && memcmp(img, ELFMAG, SELFMAG) == 0) {
		rc = load_elf(k, img, len);
	} else {
		linux_pvm = kvm_hv_of(vm)->pvm;
		uint8_t *vmlinux = NULL;
		size_t vlen = 0;
		rc = bzimage_payload(img, len, &vmlinux, &vlen);
		if (rc == 0)
			rc = load_elf(k, vmlinux, vlen);
		free(vmlinux);
	}
	if (rc < 0)
		goto out;
	k->syscall_bridge = linux_pvm;

	struct hvm_start_info si = {
		.magic = HVM_START_MAGIC,
		.version = 1,
		.cmdline_paddr = KVM_CMDLINE_GPA,
		.memmap_paddr = KVM_MEMMAP_GPA,
		.memmap_entries = 3,
	};
	struct hvm_memmap_table_entry mm[3] = {
		{ 0, KVM_LOW_RAM_END, 1, 0 },
		{ KVM_LOW_RAM_END, KVM_HIGH_RAM_START - KVM_LOW_RAM_END, 2, 0 },
		{ KVM_HIGH_RAM_START, k->mem_size - KVM_HIGH_RAM_START, 1, 0 },
	};
	if (cfg->ramdisk) {
		rc = file_read(cfg->ramdisk, &rd, &rdlen);
		if (rc < 0)
			goto out;
		uint64_t at = (k->mem_size - rdlen) & ~(uint64_t)(XST_PAGE_SIZE - 1);
		if (rdlen > k->mem_size / 2 || at < KVM_HIGH_RAM_START) {
			rc = -ENOMEM;
			goto out;
		}
		memcpy(k->mem + at, rd, rdlen);
		struct hvm_modlist_entry mod = { .paddr = at, .size = rdlen };
		memcpy(k->mem + KVM_MODLIST_GPA, &mod, sizeof(mod));
		si.nr_modules = 1;
		si.modlist_paddr = KVM_MODLIST_GPA;
	}
	char *cl = (char *)k->mem + KVM_CMDLINE_GPA;
	int n = snprintf(cl, KVM_CMDLINE_MAX, "%s%s%s%sxs_gfn=%#llx",
			 cfg->cmdline ? cfg->cmdline : "", cfg->cmdline && cfg->cmdline[0] ? " " : "",
			 linux_pvm ? PVM_LINUX_CMDLINE : "", linux_pvm ? " " : "",
			 (unsigned long long)KVM_XS_GFN);
	if (n < 0 || (unsigned int)n >= KVM_CMDLINE_MAX) {
		rc = -EINVAL;
		goto out;
	}
	memcpy(k->mem + KVM_MEMMAP_GPA, mm, sizeof(mm));
	memcpy(k->mem + KVM_START_INFO_GPA, &si, sizeof(si));
out:
	free(img);
	free(rd);
	return rc;
}

static void seg(struct kvm_segment *s, uint16_t sel, uint8_t type, bool code_or_data)
{
	memset(s, 0, sizeof(*s));
	s->selector = sel;
	s->limit = 0xffffffff;
	s->type = type;
	s->present = 1;
	s->db = 1;
	s->s = code_or_data;
	s->g = 1;
}

int kvm_boot_vcpu(struct xst_vm *vm, int vcpu_fd)
{
	struct kvm_vm *k = kvm_vm_of(vm);
	struct kvm_sregs s;
	struct kvm_regs r;

	if (ioctl(vcpu_fd, KVM_GET_SREGS, &s) < 0)
		return -errno;
	seg(&s.cs, 0x08, 0xb, true);
	seg(&s.ds, 0x10, 0x3, true);
	s.es = s.fs = s.gs = s.ss = s.ds;
	seg(&s.tr, 0x18, 0xb, false); /* 32-bit busy TSS */
	s.tr.limit = 0x67;
	s.tr.db = 0;
	s.tr.g = 0;
	s.cr0 = 0x11; /* PE | ET */
	s.cr3 = 0;
	s.cr4 = 0;
	s.efer = 0;
	if (ioctl(vcpu_fd, KVM_SET_SREGS, &s) < 0)
		return -errno;
	memset(&r, 0, sizeof(r));
	r.rip = k->entry;
	r.rbx = KVM_START_INFO_GPA;
	r.rflags = 2;
	if (ioctl(vcpu_fd, KVM_SET_REGS, &r) < 0)
		return -errno;
	return 0;
}

/*
 * Save/restore of a kvm vm and its vcpus as protobuf-c messages (kvm_state.proto).
 *
 * vcpu: regs, sregs, FPU (and XSAVE where KVM offers it), XCRs, MSRs, LAPIC, pending
 * events, MP state, debug registers.  Restore order follows what KVM needs: sregs
 * before regs (mode), MSRs after sregs (EFER), LAPIC before events, MP state last.
 * The MSR list is KVM_GET_MSR_INDEX_LIST filtered, once per process, to the MSRs
 * this host can read back.
 * vm: the three irqchips (PIC master/slave, IOAPIC), PIT, kvmclock, UART registers
 * and pending input, and whether the guest asked to shut down.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <talloc.h>

#include "plugins/kvm/kvm_priv.h"
#include "plugins/kvm/kvm_state.pb-c.h"

#define STATE_VERSION 1
#define MSR_MAX 512

struct msrs_buf {
	struct kvm_msrs hdr;
	struct kvm_msr_entry e[MSR_MAX];
};

/* Fills h->msrs with the indexes that KVM_GET_MSRS can read on this vcpu. */
static int msrs_probe(struct kvm_hv *h, int vcpu_fd)
{
	struct {
		struct kvm_msr_list l;
		uint32_t idx[MSR_MAX];
	} list;
	static struct msrs_buf one;

	if (h->msrs_probed)
		return 0;
	list.l.nmsrs = MSR_MAX;
	if (ioctl(h->kvm_fd, KVM_GET_MSR_INDEX_LIST, &list) < 0)
		return -errno;
	h->msrs = calloc(list.l.nmsrs ? list.l.nmsrs : 1, sizeof(uint32_t));
	if (!h->msrs)
		return -ENOMEM;
	h->nmsrs = 0;
	for (uint32_t i = 0; i < list.l.nmsrs; i++) {
		memset(&one, 0, sizeof(one));
		one.hdr.nmsrs = 1;
		one.e[0].index = list.l.indices[i];
		if (ioctl(vcpu_fd, KVM_GET_MSRS, &one) == 1)
			h->msrs[h->nmsrs++] = list.l.indices[i];
	}
	h->msrs_probed = true;
	return 0;
}

static ProtobufCBinaryData bin(void *ctx, const void *p, size_t len)
{
	ProtobufCBinaryData b = { 0, NULL };
	b.data = talloc_memdup(ctx, p, len);
	if (b.data)
		b.len = len;
	return b;
}

static int pack(void *ctx, const ProtobufCMessage *m, uint8_t **blob, size_t *len)
{
	size_t n = protobuf_c_message_get_packed_size(m);
	uint8_t *b = talloc_size(ctx, n ? n : 1);
	if (!b)
		return -ENOMEM;
	protobuf_c_message_pack(m, b);
	*blob = b;
	*len = n;
	return 0;
}

#define GET(fd, req, var, field)                                                           \
	do {                                                                               \
		if (ioctl(fd, req, &var) < 0) {                                            \
			rc = -errno;                                                       \
			goto out;                                                          \
		}                                                                          \
		field = bin(tmp, &var, sizeof(var));                                       \
		if (!field.data) {                                                         \
			rc = -ENOMEM;                                                      \
			goto out;                                                          \
		}                                                                          \
	} while (0)

int kvm_vcpu_state_save(struct xst_vcpu *vcpu, void *ctx, uint8_t **blob, size_t *len)
{
	struct kvm_hv *h = kvm_hv_of(vcpu->vm);
	struct kvm_vcpu *c = vcpu->priv;
	KvmVcpuState st = KVM_VCPU_STATE__INIT;
	void *tmp = talloc_new(NULL);
	struct kvm_regs regs;
	struct kvm_sregs sregs;
	struct kvm_fpu fpu;
	struct kvm_xcrs xcrs;
	struct kvm_lapic_state lapic;
	struct kvm_vcpu_events ev;
	struct kvm_mp_state mp;
	struct kvm_debugregs dr;
	struct kvm_xsave *xs = NULL;
	struct msrs_buf *mb = NULL;
	int rc = 0;

	if (!tmp)
		return -ENOMEM;
	st.version = STATE_VERSION;
	GET(c->fd, KVM_GET_REGS, regs, st.regs);
	GET(c->fd, KVM_GET_SREGS, sregs, st.sregs);
	GET(c->fd, KVM_GET_FPU, fpu, st.fpu);
	st.has_fpu = true;
	if (ioctl(h->kvm_fd, KVM_CHECK_EXTENSION, KVM_CAP_XSAVE) > 0) {
		xs = talloc_zero(tmp, struct kvm_xsave);
		if (!xs) {
			rc = -ENOMEM;
			goto out;
		}
		if (ioctl(c->fd, KVM_GET_XSAVE, xs) == 0) {
			st.xsave = bin(tmp, xs, sizeof(*xs));
			st.has_xsave = st.xsave.data != NULL;
		}
	}
	if (ioctl(h->kvm_fd, KVM_CHECK_EXTENSION, KVM_CAP_XCRS) > 0 &&
	    ioctl(c->fd, KVM_GET_XCRS, &xcrs) == 0) {
		st.xcrs = bin(tmp, &xcrs, sizeof(xcrs));
		st.has_xcrs = st.xcrs.data != NULL;
	}
	rc = msrs_probe(h, c->fd);
	if (rc < 0)
		goto out;
	mb = talloc_zero(tmp, struct msrs_buf);
	if (!mb) {
		rc = -ENOMEM;
		goto out;
	}
	mb->hdr.nmsrs = h->nmsrs;
	for (unsigned int i = 0; i < h->nmsrs; i++)
		mb->e[i].index = h->msrs[i];
	int got = ioctl(c->fd, KVM_GET_MSRS, mb);
	if (got < 0) {
		rc = -errno;
		goto out;
	}
	st.n_msrs = (size_t)got;
	st.msrs = talloc_array(tmp, KvmMsr *, got ? (size_t)got : 1);
	KvmMsr *ms = talloc_array(tmp, KvmMsr, got ? (size_t)got : 1);
	if (!st.msrs || !ms) {
		rc = -ENOMEM;
		goto out;
	}
	for (int i = 0; i < got; i++) {
		kvm_msr__init(&ms[i]);
		ms[i].index = mb->e[i].index;
		ms[i].data = mb->e[i].data;
		st.msrs[i] = &ms[i];
	}
	GET(c->fd, KVM_GET_LAPIC, lapic, st.lapic);
	GET(c->fd, KVM_GET_VCPU_EVENTS, ev, st.events);
	GET(c->fd, KVM_GET_MP_STATE, mp, st.mp_state);
	if (ioctl(c->fd, KVM_GET_DEBUGREGS, &dr) == 0) {
		st.debugregs = bin(tmp, &dr, sizeof(dr));
		st.has_debugregs = st.debugregs.data != NULL;
	}
	rc = pack(ctx, &st.base, blob, len);
out:
	talloc_free(tmp);
	return rc;
}

#define SET(fd, req, type, field)                                                          \
	do {                                                                               \
		type v_;                                                                   \
		if (field.len != sizeof(v_)) {                                             \
			rc = -EINVAL;                                                      \
			goto out;                                                          \
		}                                                                          \
		memcpy(&v_, field.data, sizeof(v_));                                       \
		if (ioctl(fd, req, &v_) < 0) {                                             \
			rc = -errno;                                                       \
			goto out;                                                          \
		}                                                                          \
	} while (0)

int kvm_vcpu_state_load(struct xst_vcpu *vcpu, const uint8_t *blob, size_t len)
{
	struct kvm_vcpu *c = vcpu->priv;
	KvmVcpuState *st = kvm_vcpu_state__unpack(NULL, len, blob);
	struct msrs_buf *mb = NULL;
	struct kvm_xsave *xs = NULL;
	int rc = 0;

	if (!st)
		return -EINVAL;
	if (st->version != STATE_VERSION || st->n_msrs > MSR_MAX) {
		rc = -EINVAL;
		goto out;
	}
	SET(c->fd, KVM_SET_SREGS, struct kvm_sregs, st->sregs);
	SET(c->fd, KVM_SET_REGS, struct kvm_regs, st->regs);
	if (st->has_xsave) {
		xs = calloc(1, sizeof(*xs));
		if (!xs) {
			rc = -ENOMEM;
			goto out;
		}
		if (st->xsave.len != sizeof(*xs)) {
			rc = -EINVAL;
			goto out;
		}
		memcpy(xs, st->xsave.data, sizeof(*xs));
		if (ioctl(c->fd, KVM_SET_XSAVE, xs) < 0) {
			rc = -errno;
			goto out;
		}
	} else if (st->has_fpu) {
		SET(c->fd, KVM_SET_FPU, struct kvm_fpu, st->fpu);
	}
	if (st->has_xcrs)
		SET(c->fd, KVM_SET_XCRS, struct kvm_xcrs, st->xcrs);
	mb = calloc(1, sizeof(*mb));
	if (!mb) {
		rc = -ENOMEM;
		goto out;
	}
	mb->hdr.nmsrs = (uint32_t)st->n_msrs;
	for (size_t i = 0; i < st->n_msrs; i++) {
		mb->e[i].index = st->msrs[i]->index;
		mb->e[i].data = st->msrs[i]->data;
	}
	int set = ioctl(c->fd, KVM_SET_MSRS, mb);
	if (set < 0 || (size_t)set != st->n_msrs) {
		rc = set < 0 ? -errno : -EINVAL;
		goto out;
	}
	SET(c->fd, KVM_SET_LAPIC, struct kvm_lapic_state, st->lapic);
	SET(c->fd, KVM_SET_VCPU_EVENTS, struct kvm_vcpu_events, st->events);
	SET(c->fd, KVM_SET_MP_STATE, struct kvm_mp_state, st->mp_state);
	if (st->has_debugregs)
		SET(c->fd, KVM_SET_DEBUGREGS, struct kvm_debugregs, st->debugregs);
out:
	free(mb);
	free(xs);
	kvm_vcpu_state__free_unpacked(st, NULL);
	return rc;
}

static int irqchip_get(int vm_fd, void *tmp, unsigned int id, ProtobufCBinaryData *out)
{
	struct kvm_irqchip chip;
	memset(&chip, 0, sizeof(chip));
	chip.chip_id = id;
	if (ioctl(vm_fd, KVM_GET_IRQCHIP, &chip) < 0)
		return -errno;
	*out = bin(tmp, &chip, sizeof(chip));
	return out->data ? 0 : -ENOMEM;
}

static int irqchip_set(int vm_fd, unsigned int id, const ProtobufCBinaryData *in)
{
	struct kvm_irqchip chip;
	if (in->len != sizeof(chip))
		return -EINVAL;
	memcpy(&chip, in->data, sizeof(chip));
	if (chip.chip_id != id)
		return -EINVAL;
	return ioctl(vm_fd, KVM_SET_IRQCHIP, &chip) < 0 ? -errno : 0;
}

int kvm_vm_state_save(struct xst_vm *vm, void *ctx, uint8_t **blob, size_t *len)
{
	struct kvm_vm *k = vm->priv;
	KvmVmState st = KVM_VM_STATE__INIT;
	KvmUartState us = KVM_UART_STATE__INIT;
	void *tmp = talloc_new(NULL);
	struct kvm_pit_state2 pit;
	struct kvm_clock_data clock;
	int rc;

	if (!tmp)
		return -ENOMEM;
	st.version = STATE_VERSION;
	st.has_syscall_bridge = true;
	st.syscall_bridge = k->syscall_bridge;
	if ((rc = irqchip_get(k->vm_fd, tmp, KVM_IRQCHIP_PIC_MASTER, &st.pic_master)) < 0 ||
	    (rc = irqchip_get(k->vm_fd, tmp, KVM_IRQCHIP_PIC_SLAVE, &st.pic_slave)) < 0 ||
	    (rc = irqchip_get(k->vm_fd, tmp, KVM_IRQCHIP_IOAPIC, &st.ioapic)) < 0)
		goto out;
	GET(k->vm_fd, KVM_GET_PIT2, pit, st.pit);
	memset(&clock, 0, sizeof(clock));
	GET(k->vm_fd, KVM_GET_CLOCK, clock, st.clock);

	pthread_mutex_lock(&k->uart.lock);
	us.ier = k->uart.ier;
	us.lcr = k->uart.lcr;
	us.mcr = k->uart.mcr;
	us.scr = k->uart.scr;
	us.dll = k->uart.dll;
	us.dlm = k->uart.dlm;
	us.fcr = k->uart.fcr;
	us.thr_pending = k->uart.thr_pending;
	uint8_t *rx = talloc_size(tmp, k->uart.rx_len + 1);
	if (rx) {
		for (unsigned int i = 0; i < k->uart.rx_len; i++)
			rx[i] = k->uart.rx[(k->uart.rx_head + i) % KVM_UART_RX_MAX];
		us.rx.data = rx;
		us.rx.len = k->uart.rx_len;
		us.has_rx = true;
	}
	pthread_mutex_unlock(&k->uart.lock);
	if (!rx) {
		rc = -ENOMEM;
		goto out;
	}
	st.uart = &us;
	st.shutdown = atomic_load(&k->shutdown);
	rc = pack(ctx, &st.base, blob, len);
out:
	talloc_free(tmp);
	return rc;
}

int kvm_vm_state_load(struct xst_vm *vm, const uint8_t *blob, size_t len)
{
	struct kvm_vm *k = vm->priv;
	KvmVmState *st = kvm_vm_state__unpack(NULL, len, blob);
	int rc;

	if (!st)
		return -EINVAL;
	if (st->version != STATE_VERSION || !st->uart ||
	    (st->uart->has_rx && st->uart->rx.len > KVM_UART_RX_MAX)) {
		rc = -EINVAL;
		goto out;
	}
	if ((rc = irqchip_set(k->vm_fd, KVM_IRQCHIP_PIC_MASTER, &st->pic_master)) < 0 ||
	    (rc = irqchip_set(k->vm_fd, KVM_IRQCHIP_PIC_SLAVE, &st->pic_slave)) < 0 ||
	    (rc = irqchip_set(k->vm_fd, KVM_IRQCHIP_IOAPIC, &st->ioapic)) < 0)
		goto out;
	SET(k->vm_fd, KVM_SET_PIT2, struct kvm_pit_state2, st->pit);
	{
		struct kvm_clock_data clock;
		if (st->clock.len != sizeof(clock)) {
			rc = -EINVAL;
			goto out;
		}
		memcpy(&clock, st->clock.data, sizeof(clock));
		clock.flags = 0; /* continue from the saved value, not realtime-adjusted */
		memset(clock.pad, 0, sizeof(clock.pad));
		clock.realtime = 0;
		clock.host_tsc = 0;
		if (ioctl(k->vm_fd, KVM_SET_CLOCK, &clock) < 0) {
			rc = -errno;
			goto out;
		}
	}
	pthread_mutex_lock(&k->uart.lock);
	k->uart.ier = (uint8_t)st->uart->ier;
	k->uart.lcr = (uint8_t)st->uart->lcr;
	k->uart.mcr = (uint8_t)st->uart->mcr;
	k->uart.scr = (uint8_t)st->uart->scr;
	k->uart.dll = (uint8_t)st->uart->dll;
	k->uart.dlm = (uint8_t)st->uart->dlm;
	k->uart.fcr = (uint8_t)st->uart->fcr;
	k->uart.thr_pending = st->uart->thr_pending;
	k->uart.rx_head = 0;
	k->uart.rx_len = st->uart->has_rx ? (unsigned int)st->uart->rx.len : 0;
	if (k->uart.rx_len)
		memcpy(k->uart.rx, st->uart->rx.data, k->uart.rx_len);
	pthread_mutex_unlock(&k->uart.lock);
	/* an incoming vm loaded no kernel: what it runs comes with its state */
	if (st->has_syscall_bridge)
		k->syscall_bridge = st->syscall_bridge;
	atomic_store(&k->shutdown, st->shutdown >= 0 && st->shutdown <= XST_SHUTDOWN_SOFT_RESET
					   ? st->shutdown : -1);
	rc = 0;
out:
	kvm_vm_state__free_unpacked(st, NULL);
	return rc;
}

/*
 * 16550 UART at COM1 (0x3f8, GSI 4).  Output bytes go to the console callback as the
 * guest writes them (the transmitter never backs up); input from console_write waits
 * in a bounded receive buffer (excess is dropped).  Enough of the register model for
 * Linux's 8250 driver: divisor latch, scratch, loopback for autoconfig, FIFO bit in
 * IIR, receive-data and THR-empty interrupts (level, through KVM_IRQ_LINE).
 */
#include <errno.h>
#include <string.h>
#include <sys/ioctl.h>

#include "plugins/kvm/kvm_priv.h"

enum { RBR = 0, IER = 1, IIR = 2, LCR = 3, MCR = 4, LSR = 5, MSR = 6, SCR = 7 };

void kvm_uart_init(struct kvm_uart *u, int vm_fd)
{
	pthread_mutex_init(&u->lock, NULL);
	u->vm_fd = vm_fd;
	u->lcr = 0x03;
	u->dll = 0x0c;
}

void kvm_uart_fini(struct kvm_uart *u)
{
	pthread_mutex_destroy(&u->lock);
}

/* lock held */
static void uart_update_irq(struct kvm_uart *u)
{
	bool level = ((u->ier & 1) && u->rx_len) || ((u->ier & 2) && u->thr_pending);
	if (level == u->irq_level)
		return;
	u->irq_level = level;
	struct kvm_irq_level l = { .irq = KVM_UART_GSI, .level = level };
	(void)ioctl(u->vm_fd, KVM_IRQ_LINE, &l);
}

void kvm_uart_io(struct kvm_uart *u, unsigned int reg, bool write, uint8_t *data)
{
	xst_console_fn fn = NULL;
	void *opaque = NULL;
	char out = 0;

	pthread_mutex_lock(&u->lock);
	bool dlab = u->lcr & 0x80;
	if (write) {
		uint8_t v = *data;
		switch (reg) {
		case RBR:
			if (dlab) {
				u->dll = v;
			} else if (u->mcr & 0x10) { /* loopback: transmit into receive */
				if (u->rx_len < KVM_UART_RX_MAX) {
					u->rx[(u->rx_head + u->rx_len) % KVM_UART_RX_MAX] = v;
					u->rx_len++;
				}
				u->thr_pending = true;
			} else {
				fn = u->fn;
				opaque = u->opaque;
				out = (char)v;
				u->thr_pending = true;
			}
			break;
		case IER:
			if (dlab) {
				u->dlm = v;
			} else {
				if ((v & 2) && !(u->ier & 2))
					u->thr_pending = true;
				u->ier = v & 0x0f;
			}
			break;
		case IIR:
			u->fcr = v;
			if (v & 2) { /* clear receive FIFO */
				u->rx_len = 0;
				u->rx_head = 0;
			}
			break;
		case LCR: u->lcr = v; break;
		case MCR: u->mcr = v & 0x1f; break;
		case SCR: u->scr = v; break;
		default: break;
		}
	} else {
		uint8_t v = 0xff;
		switch (reg) {
		case RBR:
			if (dlab) {
				v = u->dll;
			} else if (u->rx_len) {
				v = u->rx[u->rx_head];
				u->rx_head = (u->rx_head + 1) % KVM_UART_RX_MAX;
				u->rx_len--;
			} else {
				v = 0;
			}
			break;
		case IER: v = dlab ? u->dlm : u->ier; break;
		case IIR:
			if ((u->ier & 1) && u->rx_len) {
				v = 0x04;
			} else if ((u->ier & 2) && u->thr_pending) {
				v = 0x02;
				u->thr_pending = false;
			} else {
				v = 0x01;
			}
			if (u->fcr & 1)
				v |= 0xc0;
			break;
		case LCR: v = u->lcr; break;
		case MCR: v = u->mcr; break;
		case LSR: v = 0x60 | (u->rx_len ? 1 : 0); break;
		case MSR:
			if (u->mcr & 0x10) /* loopback: DTR->DSR, RTS->CTS, OUT1->RI, OUT2->DCD */
				v = (uint8_t)(((u->mcr & 1) << 5) | ((u->mcr & 2) << 3) |
					      ((u->mcr & 4) << 4) | ((u->mcr & 8) << 4));
			else
				v = 0xb0; /* DCD, DSR, CTS */
			break;
		case SCR: v = u->scr; break;
		}
		*data = v;
	}
	uart_update_irq(u);
	pthread_mutex_unlock(&u->lock);
	if (fn)
		fn(opaque, &out, 1);
}

int kvm_uart_input(struct kvm_uart *u, const char *buf, size_t len)
{
	size_t i;
	pthread_mutex_lock(&u->lock);
	for (i = 0; i < len && u->rx_len < KVM_UART_RX_MAX; i++) {
		u->rx[(u->rx_head + u->rx_len) % KVM_UART_RX_MAX] = (uint8_t)buf[i];
		u->rx_len++;
	}
	uart_update_irq(u);
	pthread_mutex_unlock(&u->lock);
	return i == len || len == 0 ? 0 : -ENOSPC;
}

/*
 * sim core: private state shared by the files of the plugin.
 *
 * A sim domain is ordinary memory and threads.  Guest RAM is a memfd mapped
 * MAP_SHARED|MAP_NORESERVE (sparse: only touched pages cost), whose last page is the
 * xenstore ring.  The "guest" is code run by vcpu_run on the vcpu's thread
 * (guest.c): it dirties pages at a configured rate, prints to the console, and vcpu 0
 * runs a xenbus client over the ring (xenbus.c).  Everything it writes to RAM goes
 * through sim_guest_touch() so the dirty log sees it.
 */
#ifndef XST_PLUGINS_SIM_SIM_H
#define XST_PLUGINS_SIM_SIM_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "core/hv.h"

/* Parsed cfg->workload. */
struct sim_workload {
	uint64_t dirty_bps;      /* bytes dirtied per second (all vcpus), 0 = none */
	uint64_t console_ns;     /* console line interval, 0 = none */
	uint64_t ws_pages;       /* working set for dirtying, 0 = all RAM but the ring */
};

enum xenbus_stage {
	XB_WAIT_CONNECT = 0, /* ring connection field still RECONNECT: xstored not there */
	XB_READ_NAME,
	XB_WRITE_STATUS,
	XB_WATCH,
	XB_IDLE,             /* waiting for a control/shutdown event */
	XB_READ_SHUTDOWN,
	XB_ACK_SHUTDOWN,
	XB_DONE,
};

/* vcpu-0 xenbus client state (only vcpu 0's thread touches it while running). */
struct xenbus {
	enum xenbus_stage stage;
	uint32_t req_id;
	bool waiting;             /* a request is in the ring, reply not yet read */
	uint32_t sent_type;
	uint64_t retry_at_ns;     /* monotonic; 0 = now */
	uint64_t backoff_ns;      /* next retry delay: doubles per failure, up to 5 s */
	bool event_pending;       /* control/shutdown watch fired */
	char name[128];
	int shutdown_reason;      /* -1 none, else enum xst_shutdown_reason */
	uint32_t req_prod;        /* our view of req_prod: a reset by xstored shows up
				   * as a page value different from it */
	uint8_t msg[16 + 4096 + 1]; /* header + payload of the message being read */
};

struct sim_vm {
	struct xst_vm *vm;
	int mem_fd;
	uint8_t *ram;
	uint64_t npages;          /* RAM pages including the ring page */
	uint64_t ring_gfn;        /* npages - 1 */
	int kick_fd;              /* guest -> xstored */
	int notify_fd;            /* xstored -> guest */

	struct sim_workload wl;
	_Atomic uint64_t mem_target_kib;
	_Atomic uint64_t mem_max_kib;
	_Atomic unsigned int sched_weight, sched_cap;

	_Atomic bool dirty_on;
	_Atomic uint64_t *dirty;  /* npages bits */

	struct sim_vcpu **vcpus;  /* [vcpus_max], NULL until created */

	/* console */
	pthread_mutex_t con_lock;
	xst_console_fn con_fn;
	void *con_opaque;

	/* guest progress (saved with vm_state_save) */
	_Atomic uint64_t dirty_cursor;  /* next page index in the working set */
	_Atomic uint64_t dirty_gen;     /* passes over the working set */
	uint64_t console_seq;           /* lines printed */
	uint64_t next_console_ns;
	bool booted;

	struct xenbus xb;
};

struct sim_vcpu {
	struct xst_vcpu *vcpu;
	int kick_fd;               /* eventfd: vcpu_kick writes it */
	_Atomic uint64_t cpu_ns;
	_Atomic bool running;
	uint64_t dirty_carry;      /* fractional bytes owed to the dirty workload */
	uint64_t last_ns;
};

static inline struct sim_vm *sim_vm(struct xst_vm *vm)
{
	return vm->priv;
}

static inline struct sim_vcpu *sim_vcpu(struct xst_vcpu *vcpu)
{
	return vcpu->priv;
}

uint64_t sim_now_ns(void);
/* Mark gfn dirty if the log is on (the guest calls this for every page it writes). */
void sim_guest_touch(struct sim_vm *s, uint64_t gfn);

int sim_workload_parse(const char *spec, struct sim_workload *wl);
/* Output guest console text (any guest thread). */
void sim_console_out(struct sim_vm *s, const char *buf, size_t len);

/* Run the guest on this vcpu until kicked or shut down (guest.c). */
int sim_guest_run(struct xst_vcpu *vcpu, struct xst_vcpu_exit *exit);
/* Reset guest progress to a fresh boot (vm_create, soft reset). */
void sim_guest_reset(struct sim_vm *s);

/* xenbus.c: reset the client (and mark the ring page "reconnect"), step it (returns a
 * shutdown reason >= 0 when the guest must shut down, else -1), and the fd/timeout it
 * waits on. */
void xenbus_reset(struct sim_vm *s);
int xenbus_step(struct sim_vm *s);
uint64_t xenbus_deadline_ns(struct sim_vm *s);

#endif

/*
 * xst-domain: the process that runs one domain (docs/domain-process.md).
 *
 * Threads: the main thread serves the control protocol (dom_ctl.c) and is the only
 * one calling vm ops other than vcpu_run/kick; one thread per vcpu (dom_vcpu.c) runs
 * vcpu_run loops and parks when the domain is not running or the vcpu is offline; a
 * console thread (dom_console.c) accepts console clients and feeds guest input.
 * dom->lock guards state, the vcpu park/run handshake and the event log; it is never
 * held across vcpu_run or a blocking write.
 */
#ifndef XST_CORE_DOM_H
#define XST_CORE_DOM_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include "core/core.h"
#include "proto/rpc.h"

#define DOM_EVENTS_KEPT 64
#define DOM_CONSOLE_LOG (64u * 1024)
#define DOM_CONSOLE_CLIENTS 8
#define DOM_TOOLSTACK_MAX (64u * 1024)

/* Mirrors xstdom.VmState. */
enum dom_state {
	DOM_RUNNING = 0,
	DOM_PAUSED = 1,
	DOM_SHUTDOWN = 2,
	DOM_DYING = 3,
	DOM_CREATED = 4,
};

struct dom_event {
	uint64_t seq;
	int kind;   /* xstdom.EventKind */
	int reason; /* xstdom.ShutdownReason, -1 none */
	char detail[128];
	uint64_t time_ns;
};

struct dom_vcpu {
	struct dom *dom;
	struct xst_vcpu *vcpu;
	pthread_t thread;
	bool started;
	bool parked;   /* waiting on dom->cond, not in vcpu_run */
	bool halted;   /* vcpu_run said HALT: stays stopped until reset */
	pid_t tid;     /* the thread's kernel id (nice, affinity), 0 until it runs */
};

struct console;

struct dom {
	/* from the command line */
	const char *rundir;
	uint32_t domid;
	const char *core_name;
	int handoff_fd;
	char *ipc_url, *events_url, *console_path, *state_path;
	/* A spare (--spare MIB): no domid yet, files named spare-<pid>.*, a vm prepared
	 * for MIB (NULL if the core has no vm_prepare or MIB is 0) until create names the
	 * domain (dom_main.c dom_take). */
	bool spare;
	uint64_t spare_mib;
	struct xst_vm *spare_vm;

	struct xst_hv *hv;
	struct xst_vm *vm;
	struct xst_rpc *rpc, *pub;
	struct console *con;

	pthread_mutex_t lock;
	pthread_cond_t cond;
	enum dom_state state;
	int shutdown_reason;
	bool quit;            /* vcpu threads exit */
	unsigned int online;
	struct dom_vcpu *vcpus; /* [cfg.vcpus_max] */
	unsigned int nvcpus;

	/* config kept for get_config and the state file */
	struct xst_vm_config cfg;
	unsigned int sched_weight, sched_cap;
	bool throttled;        /* over its cap: vcpus park (dom_sched.c; under lock) */
	pthread_t throttle;
	bool throttle_started, throttle_running;
	uint8_t *toolstack;
	size_t toolstack_len;
	uint64_t ring_gfn;
	uint64_t start_time_ns;

	/* events: a ring of the last DOM_EVENTS_KEPT */
	struct dom_event events[DOM_EVENTS_KEPT];
	uint64_t last_seq;
	uint64_t published_seq; /* under pub_lock */
	pthread_mutex_t pub_lock;
};

uint64_t dom_realtime_ns(void);
void dom_log(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* dom_vcpu.c */
int dom_vcpus_start(struct dom *d);
/* Starts a thread with a STACK-byte stack; -errno on failure. */
int dom_thread_start(pthread_t *t, size_t stack, void *(*fn)(void *), void *arg);
/* Wait until every vcpu with id >= from is parked (the caller changed the state or
 * the online count first; lock held). */
void dom_vcpus_wait_parked_locked(struct dom *d, unsigned int from);
/* Stop and join all vcpu threads, free the vcpus. */
void dom_vcpus_stop(struct dom *d);
/* Record an event (lock held); publish it with dom_events_flush() after unlocking. */
void dom_event_add_locked(struct dom *d, int kind, int reason, const char *detail);
void dom_events_flush(struct dom *d);

/* dom_sched.c: weight as vcpu threads' nice value, cap by a throttle thread. */
int dom_sched_nice(unsigned int weight);
void dom_sched_nice_vcpu(struct dom *d, struct dom_vcpu *v);
int dom_sched_apply(struct dom *d);
void dom_sched_stop(struct dom *d);

/* dom_console.c */
int console_open(struct dom *d, const char *path, struct console **out);
/* Plugin console callback (any thread). */
void console_output(void *opaque, const char *buf, size_t len);
/* The buffered log, oldest first, on ctx. */
int console_log(struct console *c, void *ctx, uint8_t **buf, size_t *len);
/* Move the listening socket to path (a spare becoming a domain); clients stay. */
int console_rename(struct console *c, const char *path);
/* Stop the thread, close all sockets, unlink the path. */
void console_close(struct console *c);

/* dom_main.c: a spare becomes domain `domid`: its files are renamed dom-<domid>.*
 * and its log goes to <rundir>/dom-<domid>.log. */
int dom_take(struct dom *d, uint32_t domid, char *why, size_t len);

/* dom_ctl.c: serve requests until destroy; returns the exit status. */
int dom_serve(struct dom *d);

#endif

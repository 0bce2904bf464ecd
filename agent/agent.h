/*
 * xst-agent: one per host (docs/agent.md).
 *
 * One thread.  The main loop (main.c) polls the CLI listeners (proto/rpc), the event
 * subscriptions of every domain process, and a one-second supervision tick.  The
 * agent owns domid allocation, spawns one xst-domain per domain (domain.c), writes
 * and removes the domain's xenstore layout (layout.c), acts on guest shutdowns with
 * the on_* actions, keeps cpupools and scheduler parameters (pool.c), and serves
 * the CLI protocol proto/agent.proto through one dispatch table (ctl.c).  It keeps one
 * warm spare domain process for kvm creates (spare.c).
 *
 * Ownership (talloc): struct agent owns the domains, the pools, the xenstore client
 * and the listeners; each struct adom owns its nng sockets, its config and strings.
 */
#ifndef XST_AGENT_AGENT_H
#define XST_AGENT_AGENT_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "proto/agent.pb-c.h"
#include "proto/domain.pb-c.h"

struct xs_client;
struct xst_rpc;

#define AGENT_MAX_LISTEN 4
#define AGENT_DOMID_MAX 32751 /* DOMID_FIRST_RESERVED - 1 */
#define AGENT_LOG_KEEP (64u * 1024)
#define AGENT_CALL_MS 10000
#define AGENT_CREATE_MS 60000
#define AGENT_QUERY_MS 1000 /* info and event catch-up: the agent must not stall on them */
#define AGENT_STUCK_MS 200  /* any call to a domain process whose last call timed out */
#define AGENT_MAX_POOLS 64
#define AGENT_GONE_KEEP 64
/* Core dump file (docs/agent.md): this header, then every guest page from gfn 0. */
#define AGENT_DUMP_MAGIC "XSTCORE"
#define AGENT_DUMP_HDR 64

struct pool {
	struct pool *next;
	uint32_t id;
	char *name;
	char *sched;
	uint64_t cpus[16]; /* bitmap, up to 1024 cpus */
};

enum adom_state {
	ADOM_LIVE = 0,     /* running or paused */
	ADOM_PRESERVED,    /* shut down, kept by on_* = preserve / rename-restart */
};

struct adom {
	struct adom *next, *prev;
	struct agent *a;
	uint32_t domid;
	char *name;
	uint8_t uuid[16];
	char uuid_str[37];
	Xstagent__DomainConfig *cfg; /* on this adom; name/pool kept up to date */
	pid_t pid;
	bool our_child;
	struct xst_rpc *rpc; /* control: req/rep to the domain process */
	struct xst_rpc *sub; /* events: pub/sub from the domain process */
	int sub_fd;
	uint64_t last_seq;   /* newest event seq acted on */
	char *console_path;
	enum adom_state state;
	uint32_t weight, cap;
	char **affinity;     /* per vcpu (maxvcpus entries), cpu list or "all" */
	uint64_t ring_gfn;
	bool stuck;          /* its last call timed out: calls wait AGENT_STUCK_MS at most */
	uint8_t *info_cache; /* the last Info it gave (packed), answered while it is stuck */
	size_t info_cache_len;
};

/* The spare domain process (spare.c, docs/agent.md "Spare domain process"). */
#define AGENT_SPARE_AUTO (-1)    /* --spare auto: the size of the last kvm domain created */
#define AGENT_SPARE_FAILURES 3   /* consecutive spare failures before spares pause */

struct spare {
	pid_t pid;
	int handoff;               /* our end of its handoff socket */
	bool ready;                /* its "ready" came: core loaded, vm prepared */
	bool reaped;               /* waitpid took it (agent_supervise) */
	char core[16];             /* the core it loaded */
	uint64_t mib;              /* the RAM size it prepared */
	struct xst_rpc *rpc, *sub; /* dialed once ready; go to the domain that takes it */
	int sub_fd;
	double t_spawn;            /* ms, CLOCK_MONOTONIC */
};

struct agent {
	const char *rundir;
	const char *xenstored;
	const char *core;        /* default core for "auto" configs */
	const char *domain_bin;  /* xst-domain */
	const char *log_path;
	const char *dump_dir;    /* coredump-* actions write <dump_dir>/<name> */
	bool no_fork;
	const char *listen_urls[AGENT_MAX_LISTEN];
	unsigned int nlisten;

	struct xs_client *xs;
	struct xst_rpc *srv[AGENT_MAX_LISTEN + 1];
	unsigned int nsrv;
	struct adom *doms;
	unsigned int ndoms;
	/* destroyed right after the current request's reply went out (the source copy of
	 * a finished migration, a saved domain: the CLI does not wait for its process to
	 * exit) */
	struct adom *destroy_after_reply;
	/* domid (0: none) whose config goes to its domain process after the reply: a
	 * domain that just migrated in or was restored runs already */
	uint32_t save_config_after_reply;
	uint32_t next_domid;
	struct pool *pools;
	uint32_t next_pool_id;
	unsigned int nr_cpus;
	uint64_t start_time;
	int log_fd;
	char *logbuf;            /* the last AGENT_LOG_KEEP bytes of the log, circular */
	size_t log_head, log_len;
	volatile int stop;
	/* spare.c */
	int64_t spare_cfg;        /* --spare: AGENT_SPARE_AUTO, 0 (off) or MiB */
	uint64_t spare_mib;       /* the size the next spare prepares; 0: none wanted */
	struct spare *spare;      /* NULL: none running */
	unsigned int spare_failures;
	bool spare_after_reply;   /* start a spare once the current reply went out */
	bool kvm_usable;          /* /dev/kvm opens (core "auto" would pick kvm) */
	/* The last AGENT_GONE_KEEP domains destroyed on a guest shutdown, and why. */
	struct {
		uint32_t domid;
		int reason;
	} gone[AGENT_GONE_KEEP];
	unsigned int gone_next;
};

/* log.c */
double agent_mono_s(void); /* CLOCK_MONOTONIC, seconds: durations for the log */
void agent_log(struct agent *a, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
int agent_log_init(struct agent *a);
/* The kept log as one string on ctx. */
char *agent_log_text(struct agent *a, void *ctx);

/* domain.c */
struct adom *adom_find(struct agent *a, const char *ref); /* id or name */
struct adom *adom_by_id(struct agent *a, uint32_t domid);
/* adom_create flags: created paused; incoming (restore, migration: paused, its memory
 * and state are loaded next, so no kernel is loaded and memory stays all zero). */
enum { ADOM_PAUSED = 1, ADOM_INCOMING = 2 };
int adom_create(struct agent *a, const Xstagent__DomainConfig *cfg, unsigned int flags,
		struct adom **out, char **msg, void *ctx);
int adom_destroy(struct adom *d, char **msg, void *ctx);
/* Call the domain process; reply on ctx; error replies give their errno and msg. */
int adom_call(struct adom *d, Xstdom__Request *req, int timeout_ms, void *ctx,
	      Xstdom__Reply **rep, char **msg);
/* adom_call of a request whose body is Empty (pause, info, state_save, ...), with the
 * usual timeout; rep may be NULL when only the outcome matters. */
int adom_call_empty(struct adom *d, Xstdom__Request__BodyCase body, void *ctx,
		    Xstdom__Reply **rep, char **msg);
int adom_info(struct adom *d, void *ctx, Xstdom__Info **info);
/* Dial a domain process's control and event sockets, $rundir/STEM.ipc and .events. */
int adom_dial(void *ctx, struct agent *a, const char *stem, struct xst_rpc **rpc,
	      struct xst_rpc **sub, int *sub_fd);

/* ram.c: the domain's RAM mapped here (read-only, or writable for a restore). */
struct adom_ram {
	uint8_t *mem;
	size_t len;
	uint64_t npages;
	int fd;
};
/* -EOPNOTSUPP when the domain process names no RAM file (then use read/write_pages). */
int adom_ram_map(struct adom *d, bool writable, void *ctx, struct adom_ram **out);
/* The first page in [gfn, end) that may hold data (end if none); *data_end: the end
 * of the written extent it starts. */
uint64_t adom_ram_next_data(struct adom_ram *r, uint64_t gfn, uint64_t end, uint64_t *data_end);
/* Pin vcpu (-1: all) threads of the domain process to the cpu list cpus. */
int adom_pin(struct adom *d, int vcpu, const char *cpus, void *ctx, char **msg);
/* Store the config (name, pool, ...) in the domain process for re-adoption. */
int adom_save_config(struct adom *d);
void adom_events(struct adom *d);      /* fetch and act on new events */
void agent_supervise(struct agent *a); /* reap, notice dead domain processes */
int agent_adopt_all(struct agent *a);
const char *adom_state_letters(struct adom *d, const Xstdom__Info *info, char buf[8]);

/* Start xst-domain for domain `domid`, or a spare (domid 0) preparing spare_mib MiB;
 * *handoff: our end of the handoff socket. */
int domain_spawn(struct agent *a, uint32_t domid, uint64_t spare_mib, const char *core,
		 pid_t *pid, int *handoff);
/* One datagram from a handoff socket, with up to 3 fds.  -ETIMEDOUT, -EPIPE (EOF). */
int handoff_recv(int fd, int timeout_ms, char *buf, size_t len, int fds[3], int *nfds);
/* The last line a domain process (pid; 0: any) logged in `path` (its reason for
 * dying), without its "xst-domain[pid]: " prefix, or NULL. */
char *dom_log_last_line_at(void *ctx, const char *path, pid_t pid);

/* spare.c: a warm xst-domain (kvm core loaded, vm of spare_mib prepared).  Never a
 * domain: not listed, nothing in xenstore, no domid until taken. */
int spare_init(struct agent *a);                 /* options read: policy, stale files */
void spare_start(struct agent *a);               /* one, if wanted and none runs */
int spare_fd(struct agent *a);                   /* its handoff socket for poll, or -1 */
void spare_event(struct agent *a);               /* the fd is readable: ready or gone */
void spare_reaped(struct agent *a, pid_t pid);   /* agent_supervise reaped pid */
void spare_stop(struct agent *a);                /* agent exit: kill it, remove its files */
void spare_files_gone(struct agent *a, pid_t pid); /* remove spare-<pid>.* */
/* Give d the spare if it matches core and mib: d->pid, rpc, sub and *handoff are set
 * and 0 is returned; -ENOENT when there is none or it does not match (cold start). */
int spare_take(struct agent *a, struct adom *d, const char *core, uint64_t mib, int *handoff);
/* A domain of this core and size was created: the auto policy follows its size. */
void spare_note_create(struct agent *a, const char *core, uint64_t mib);

/* layout.c */
int layout_write(struct agent *a, struct adom *d);
int layout_set_ring(struct agent *a, struct adom *d);
void layout_remove(struct agent *a, uint32_t domid, const char *uuid_str);
int layout_dom0(struct agent *a);
int layout_xs_write(struct agent *a, const char *path, const char *val);
int layout_xs_read(struct agent *a, void *ctx, const char *path, char **val);
/* Re-open the xenstore connection after xstored restarted. */
int agent_xs_reconnect(struct agent *a);

/* pool.c */
int pool_init(struct agent *a);
struct pool *pool_find(struct agent *a, const char *name);
int pool_save(struct agent *a);
unsigned int pool_ndomains(struct agent *a, const struct pool *p);
int pool_cpus_text(const uint64_t map[16], void *ctx, char **out);
unsigned int pool_ncpus(const uint64_t map[16]);
/* Where a vcpu with this hard affinity may run in pool p: the intersection (the
 * affinity itself when p holds every host cpu); -ENOENT when it is empty. */
int pool_effective(struct agent *a, const struct pool *p, const char *affinity, void *ctx,
		   char **out);
/* Pin d's vcpu threads to their affinity within d's pool (domain process vcpu_pin). */
int pool_apply(struct agent *a, struct adom *d, void *ctx, char **msg);
/* pool_apply to every live domain of p (its cpus changed). */
int pool_apply_all(struct agent *a, const struct pool *p);

/* save.c, migrate.c: handlers of Save, Restore, Migrate, MigData; on failure they
 * return -errno with rep->message set. */
int save_save(struct agent *a, const Xstagent__Save *s, Xstagent__Reply *rep, void *ctx);
int save_restore(struct agent *a, const Xstagent__Restore *r, Xstagent__Reply *rep, void *ctx);
int migrate_send(struct agent *a, const Xstagent__Migrate *m, Xstagent__Reply *rep, void *ctx);
int migrate_recv(struct agent *a, const Xstagent__MigData *m, Xstagent__Reply *rep, void *ctx);

/* ctl.c */
void ctl_serve(struct agent *a, struct xst_rpc *srv);

#endif

/*
 * Live migration, agent to agent (docs/migration.md).
 *
 * Source (migrate_send, serving `xst migrate`): dial the destination agent's CLI
 * listener (tcp://ADDR:PORT), and send the save stream (agent/stream.h) in MigData
 * chunks of about 4 MiB.  The header and config go first and alone: the destination
 * creates the (paused, restoring) domain or refuses (core mismatch, name in use, ...)
 * before any page moves.  Then pre-copy: the dirty log is switched on, every page is
 * sent, then rounds of the pages dirtied meanwhile until the dirty set fits the
 * downtime budget at the measured link rate, or the round bound is hit.  A guest that
 * keeps dirtying as fast as the link carries is throttled: it is paused while a round
 * is sent and runs only in between, for a period that halves every round.  Before the
 * stop, the xenstore subtree goes over, read in a transaction.  Stop and copy: one
 * stop_copy call (pause, last dirty bitmap, vm/vcpu state), the last dirty pages, the
 * subtree again only if that transaction's commit says it changed, the watches, the
 * state, the end record.  The
 * destination answers that last chunk only after the domain runs; only then is the
 * source destroyed.  Any failure before that answer aborts the incoming domain (best
 * effort) and resumes the source, so exactly one copy runs.
 *
 * Destination (migrate_recv): one incoming session at a time, fed to a stream_rx.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <talloc.h>

#include "agent/agent.h"
#include "agent/stream.h"
#include "proto/rpc.h"
#include "store/xs_client.h"
#include "store/xs_proto.h"

#define MIG_CALL_MS 10000
#define MIG_PREPARE_MS 120000 /* the first chunk: the destination creates (and clears) */
#define MIG_DEFAULT_DOWNTIME_MS 30
#define MIG_DEFAULT_ROUNDS 30
#define MIG_MIN_RATE (50.0 * 1024 * 1024) /* bytes/s assumed before a measurement */
/* A dirty set that fits the budget still gets another round while rounds halve it,
 * down to this many pages: each round shortens the stop. */
#define MIG_TAIL_PAGES 32

struct mig_out {
	struct agent *a;
	struct xst_rpc *rpc;
	uint64_t session;
	uint32_t seq;   /* index of the next chunk */
	char *dest_msg; /* the destination's error message */
	bool transport; /* the last chunk got no answer (lost, timed out) */
	double bw;      /* bytes/s cap, 0: none */
	double t0;      /* when the first chunk went */
	uint64_t sent;  /* bytes handed to the destination */
	bool prepared;  /* the destination has answered the first chunk */
	void *ctx;
};


static int mig_sink(void *arg, const uint8_t *buf, size_t len)
{
	struct mig_out *o = arg;
	Xstagent__Request req = XSTAGENT__REQUEST__INIT;
	Xstagent__MigData md = XSTAGENT__MIG_DATA__INIT;
	Xstagent__Reply *rep;
	ProtobufCMessage *m;
	void *tmp = talloc_new(o->ctx);
	int rv;

	if (!tmp)
		return -ENOMEM;
	md.session = o->session;
	md.has_seq = true;
	md.seq = o->seq++;
	md.has_data = true;
	md.data.data = (uint8_t *)buf;
	md.data.len = len;
	req.body_case = XSTAGENT__REQUEST__BODY_MIG_DATA;
	req.mig_data = &md;
	rv = xst_rpc_call_msg(o->rpc, &req.base, o->prepared ? MIG_CALL_MS : MIG_PREPARE_MS,
			      &xstagent__reply__descriptor, tmp, &m);
	o->prepared = true;
	o->transport = rv < 0;
	o->sent += len;
	if (rv == 0 && o->bw > 0) {
		/* --bandwidth: never ahead of the cap */
		double ahead = o->sent / o->bw - (agent_mono_s() - o->t0);

		if (ahead > 0)
			usleep((useconds_t)(ahead * 1e6));
	}
	if (rv < 0) {
		o->dest_msg = talloc_asprintf(o->ctx, "destination agent %s: %s",
					      xst_rpc_url(o->rpc), strerror(-rv));
	} else {
		rep = (Xstagent__Reply *)m;
		if (rep->error) {
			rv = rep->error < 0 ? rep->error : -EIO;
			o->dest_msg = talloc_asprintf(o->ctx, "destination: %s",
						      rep->message ? rep->message : strerror(-rv));
		}
	}
	talloc_free(tmp);
	return rv;
}

static void mig_abort(struct mig_out *o)
{
	Xstagent__Request req = XSTAGENT__REQUEST__INIT;
	Xstagent__MigData md = XSTAGENT__MIG_DATA__INIT;
	ProtobufCMessage *m;
	void *tmp = talloc_new(o->ctx);

	md.session = o->session;
	md.has_abort = true;
	md.abort = true;
	req.body_case = XSTAGENT__REQUEST__BODY_MIG_DATA;
	req.mig_data = &md;
	if (tmp)
		xst_rpc_call_msg(o->rpc, &req.base, 5000, &xstagent__reply__descriptor, tmp, &m);
	talloc_free(tmp);
}

/* After the end record went out unanswered: does the destination run the domain?
 * 1 yes, 0 no, -errno when it cannot be asked. */
static int dest_runs(struct mig_out *o, const char *url, const char *name)
{
	Xstagent__Request req = XSTAGENT__REQUEST__INIT;
	Xstagent__ListReq lr = XSTAGENT__LIST_REQ__INIT;
	Xstagent__Reply *rep;
	ProtobufCMessage *m;
	struct xst_rpc *rpc;
	int i, rv = -ETIMEDOUT;

	lr.dom = (char *)name;
	req.body_case = XSTAGENT__REQUEST__BODY_LIST;
	req.list = &lr;
	for (i = 0; i < 3; i++) {
		void *tmp = talloc_new(o->ctx);

		if (!tmp)
			return -ENOMEM;
		rv = xst_rpc_dial(tmp, url, &rpc);
		if (rv == 0)
			rv = xst_rpc_call_msg(rpc, &req.base, 3000, &xstagent__reply__descriptor, tmp,
					      &m);
		if (rv == 0) {
			rep = (Xstagent__Reply *)m;
			rv = rep->error == 0 && rep->body_case == XSTAGENT__REPLY__BODY_DOMAINS &&
			     rep->domains->n_domain == 1 &&
			     strchr(rep->domains->domain[0]->state, 's') == NULL;
			talloc_free(tmp);
			return rv;
		}
		talloc_free(tmp);
		usleep(500000);
	}
	return rv;
}

static int dirty_log(struct adom *d, bool on, void *ctx, char **msg)
{
	Xstdom__Request req = XSTDOM__REQUEST__INIT;
	Xstdom__DirtyLog dl = XSTDOM__DIRTY_LOG__INIT;
	Xstdom__Reply *rep;

	dl.enable = on;
	req.body_case = XSTDOM__REQUEST__BODY_DIRTY_LOG;
	req.dirty_log = &dl;
	return adom_call(d, &req, AGENT_CALL_MS, ctx, &rep, msg);
}

/* Fetch (and clear) the dirty bitmap; *count = pages set. */
static int dirty_fetch(struct adom *d, void *ctx, Xstdom__Dirty **out, uint64_t *count,
		       char **msg)
{
	Xstdom__Reply *rep;
	size_t i;
	int rv = adom_call_empty(d, XSTDOM__REQUEST__BODY_DIRTY_FETCH, ctx, &rep, msg);

	if (rv < 0)
		return rv;
	if (rep->body_case != XSTDOM__REPLY__BODY_DIRTY)
		return -EPROTO;
	*out = rep->dirty;
	*count = 0;
	for (i = 0; i < rep->dirty->bitmap.len; i++)
		*count += __builtin_popcount(rep->dirty->bitmap.data[i]);
	return 0;
}

/* Pause, then the last dirty bitmap and the vm/vcpu state, in one call. */
static int stop_copy(struct adom *d, void *ctx, Xstdom__Dirty **dirty,
		     Xstdom__StateBlob **state, char **msg)
{
	Xstdom__Reply *rep;
	int rv = adom_call_empty(d, XSTDOM__REQUEST__BODY_STOP_COPY, ctx, &rep, msg);

	if (rv < 0)
		return rv;
	if (rep->body_case != XSTDOM__REPLY__BODY_STOP_COPY)
		return -EPROTO;
	*dirty = rep->stop_copy->dirty;
	*state = rep->stop_copy->state;
	return 0;
}

static char *url_for(void *ctx, const char *host)
{
	if (strstr(host, "://"))
		return talloc_strdup(ctx, host);
	if (strchr(host, ':'))
		return talloc_asprintf(ctx, "tcp://%s", host);
	return talloc_asprintf(ctx, "tcp://%s:8003", host);
}

/* <rundir>/migrate-<domid> and migrate-<name> hold the destination URL while a
 * migration runs: `xst migrate-cancel DOMAIN` reads it (this agent is busy meanwhile). */
static void note_dest(struct agent *a, uint32_t domid, const char *name, const char *url)
{
	char path[4096];
	FILE *f;
	int i;

	for (i = 0; i < 2; i++) {
		if (i == 0)
			snprintf(path, sizeof(path), "%s/migrate-%u", a->rundir, domid);
		else
			snprintf(path, sizeof(path), "%s/migrate-%s", a->rundir, name);
		if (!url) {
			unlink(path);
			continue;
		}
		f = fopen(path, "we");
		if (f) {
			fprintf(f, "%s\n", url);
			fclose(f);
		}
	}
}

int migrate_send(struct agent *a, const Xstagent__Migrate *mreq, Xstagent__Reply *rep, void *ctx)
{
	struct adom *d = adom_find(a, mreq->dom);
	uint32_t downtime_ms = mreq->has_downtime_ms ? mreq->downtime_ms : MIG_DEFAULT_DOWNTIME_MS;
	uint32_t max_rounds = mreq->has_max_rounds && mreq->max_rounds ? mreq->max_rounds
									: MIG_DEFAULT_ROUNDS;
	struct mig_out o = { .a = a, .ctx = ctx };
	struct stream_tx *t = NULL;
	Xstdom__Info *info;
	Xstdom__Dirty *dy = NULL;
	uint64_t npages, count = 0, prev = UINT64_MAX;
	double t0 = agent_mono_s(), ts, rate = MIG_MIN_RATE, tdown = 0, run_ms = 0, ttotal;
	double tp[6] = { 0 }; /* stop-and-copy: start, paused, pages, xenstore, state, end */
	bool was_paused, paused = false, logging = false, throttled = false, committed = false;
	bool xs_same = false;
	uint32_t xs_tx = 0;
	unsigned int round = 0;
	char *msg = NULL, *url, *what = "";
	void *rtmp;
	uint32_t domid;
	char *name;
	int rv;

	if (!d) {
		rep->message = talloc_asprintf(ctx, "domain \"%s\" does not exist", mreq->dom);
		return -ENOENT;
	}
	if (d->state != ADOM_LIVE) {
		rep->message = talloc_asprintf(ctx, "domain %u (%s) is shut down", d->domid, d->name);
		return -EINVAL;
	}
	rv = adom_info(d, ctx, &info);
	if (rv < 0) {
		rep->message = talloc_asprintf(ctx, "domain %u: %s", d->domid, strerror(-rv));
		return rv;
	}
	was_paused = info->state == XSTDOM__VM_STATE__PAUSED;
	npages = info->mem_max_kib / (STREAM_PAGE / 1024);
	url = url_for(ctx, mreq->url);
	if (!url)
		return -ENOMEM;
	rv = xst_rpc_dial(ctx, url, &o.rpc);
	if (rv < 0) {
		rep->message = talloc_asprintf(ctx, "cannot reach the destination agent at %s: %s", url,
					       strerror(-rv));
		return rv;
	}
	o.session = ((uint64_t)getpid() << 32) ^ (uint64_t)(t0 * 1e6) ^ d->domid;
	o.t0 = t0;
	if (mreq->has_bandwidth_mib && mreq->bandwidth_mib)
		o.bw = (double)mreq->bandwidth_mib * 1024 * 1024;
	domid = d->domid;
	name = talloc_strdup(ctx, d->name);
	agent_log(a, "domain %u (%s): migrating to %s", domid, name, url);
	note_dest(a, domid, name, url);

	/* Header and config alone: the destination refuses now or creates the domain. */
	what = "preparing the destination";
	rv = stream_tx_new(ctx, mig_sink, &o, &t);
	if (rv == 0)
		rv = stream_tx_header(t, info->core, npages, was_paused ? STREAM_F_PAUSED : 0);
	if (rv == 0)
		rv = stream_tx_config(t, d);
	if (rv == 0)
		rv = stream_tx_cpu(t, d, &msg, ctx);
	if (rv == 0)
		rv = stream_tx_flush(t);
	if (rv < 0)
		goto fail;
	what = "enabling the dirty log";
	rv = dirty_log(d, true, ctx, &msg);
	if (rv < 0)
		goto fail;
	logging = true;
	what = "copying memory";
	ts = agent_mono_s();
	rv = stream_tx_pages(t, d, npages, NULL, 0, false, &msg, ctx);
	if (rv == 0)
		rv = stream_tx_flush(t);
	if (rv < 0)
		goto fail;
	if (t->bytes > 1u << 20 && agent_mono_s() - ts > 0.001)
		rate = t->bytes / (agent_mono_s() - ts);
	for (round = 1; round <= max_rounds; round++) {
		uint64_t before = t->bytes;

		/* per round allocations (the bitmap: npages / 8 bytes) live until the end */
		rtmp = ctx;
		if (!rtmp) {
			rv = -ENOMEM;
			goto fail;
		}
		if (throttled) {
			/* The guest runs only between rounds. */
			rv = adom_call_empty(d, XSTDOM__REQUEST__BODY_UNPAUSE, rtmp, NULL, &msg);
			if (rv < 0)
				goto fail;
			paused = false;
			usleep((useconds_t)(run_ms * 1000));
			rv = adom_call_empty(d, XSTDOM__REQUEST__BODY_PAUSE, rtmp, NULL, &msg);
			if (rv < 0)
				goto fail;
			paused = true;
			run_ms = run_ms / 2 < 1 ? 1 : run_ms / 2;
		}
		rv = dirty_fetch(d, rtmp, &dy, &count, &msg);
		if (rv < 0)
			goto fail;
		/* Half the budget for the last pages: pausing, the state, the xenstore
		 * subtree and the destination's resume take the rest.  A set that fits
		 * goes over in one more round while rounds still halve it: the pages
		 * sent while the guest runs are not sent while it is paused. */
		if ((double)count * STREAM_PAGE <= rate * downtime_ms / 2000.0 &&
		    (count <= MIG_TAIL_PAGES || count * 2 > prev))
			break;
		ts = agent_mono_s();
		rv = stream_tx_pages(t, d, npages, dy->bitmap.data, dy->bitmap.len, true, &msg,
				     rtmp);
		if (rv == 0)
			rv = stream_tx_flush(t);
		if (rv < 0)
			goto fail;
		agent_log(a, "domain %u: round %u: %" PRIu64 " dirty pages, %.1f ms", domid, round,
			  count, (agent_mono_s() - ts) * 1000);
		if (t->bytes - before > (1u << 20) && agent_mono_s() - ts > 0.001)
			rate = (t->bytes - before) / (agent_mono_s() - ts);
		if (!throttled && round >= 2 && count * 10 > prev * 8) {
			throttled = true;
			run_ms = 50;
			agent_log(a, "domain %u: dirtying %" PRIu64 " pages per round, throttling",
				  domid, count);
		}
		prev = count;
	}
	/* The xenstore subtree goes now, read in a transaction: the destination recreates
	 * it before the pause; committing that (read-only) transaction once the guest is
	 * paused tells whether any node changed since (EAGAIN), and only then is it read
	 * and sent again during the pause.  Without a transaction: read during the pause. */
	what = "sending the xenstore subtree";
	if (xs_client_txn_start(a->xs, &xs_tx) == 0) {
		rv = stream_tx_xs_subtree(t, d, xs_tx);
		if (rv == 0)
			rv = stream_tx_flush(t);
		if (rv < 0)
			goto fail;
	}
	/* Stop and copy: the dirty bitmap fetched last is still to be sent.  One call
	 * pauses, fetches the last dirty bitmap and saves the state (a domain process that
	 * does not know stop_copy gets the three calls). */
	what = "stop-and-copy";
	tdown = tp[5] = agent_mono_s();
	{
		Xstdom__Dirty *last = NULL;
		Xstdom__StateBlob *state = NULL;
		uint64_t n2;
		uint8_t *map;
		size_t i, len;

		paused = true; /* from here, a failure unpauses (a no-op if it runs) */
		rv = stop_copy(d, ctx, &last, &state, &msg);
		if (rv == -EOPNOTSUPP) {
			agent_log(a, "domain %u: its domain process has no stop_copy: pause, dirty "
				  "fetch and state save in three calls", domid);
			msg = NULL;
			rv = adom_call_empty(d, XSTDOM__REQUEST__BODY_PAUSE, ctx, NULL, &msg);
			if (rv == 0)
				rv = dirty_fetch(d, ctx, &last, &n2, &msg);
		}
		if (rv < 0)
			goto fail;
		/* union of the unsent round and what was dirtied since */
		len = last->bitmap.len;
		map = talloc_memdup(ctx, last->bitmap.data, len ? len : 1);
		if (!map) {
			rv = -ENOMEM;
			goto fail;
		}
		if (dy && round <= max_rounds)
			for (i = 0; i < len && i < dy->bitmap.len; i++)
				map[i] |= dy->bitmap.data[i];
		tp[0] = agent_mono_s();
		rv = stream_tx_pages(t, d, npages, map, len, true, &msg, ctx);
		tp[1] = agent_mono_s();
		if (rv == 0 && xs_tx) {
			xs_same = xs_client_txn_end(a->xs, xs_tx, true) == 0;
			xs_tx = 0;
		}
		if (rv == 0 && !xs_same)
			rv = stream_tx_xs_subtree(t, d, 0);
		if (rv == 0)
			rv = stream_tx_xs_watches(t, d);
		tp[2] = agent_mono_s();
		if (rv == 0)
			rv = state ? stream_tx_state_blob(t, state) : stream_tx_state(t, d, &msg, ctx);
		tp[3] = agent_mono_s();
	}
	what = "handing over";
	if (rv == 0)
		rv = stream_tx_end(t); /* answered once the destination runs it */
	tp[4] = agent_mono_s();
	if (rv < 0)
		goto fail;
	committed = true;
	tdown = agent_mono_s() - tdown;
	ttotal = agent_mono_s() - t0; /* the guest runs there: the migration is done */
	if (was_paused)
		agent_log(a, "domain %u was paused: the destination copy runs", domid);
	note_dest(a, domid, name, NULL);
	/* destroyed once the CLI has its answer (ctl.c): the guest runs there already */
	a->destroy_after_reply = d;
	agent_log(a, "domain %u (%s) migrated to %s: %.3f s, downtime %.1f ms (pause, last "
		  "bitmap and state %.1f, last pages %.1f, xenstore %.1f%s, state record %.1f, "
		  "sending and the destination's resume "
		  "%.1f), %" PRIu64 " bytes", domid, name, url, ttotal, tdown * 1000,
		  (tp[0] - tp[5]) * 1000, (tp[1] - tp[0]) * 1000, (tp[2] - tp[1]) * 1000,
		  xs_same ? " (subtree unchanged since sent)" : "",
		  (tp[3] - tp[2]) * 1000, (tp[4] - tp[3]) * 1000, t->bytes);
	rep->body_case = XSTAGENT__REPLY__BODY_TEXT;
	rep->text = talloc_asprintf(ctx, "migrated domain %u (%s) to %s: total %.3f s, downtime "
				    "%.1f ms, %" PRIu64 " bytes sent, %u rounds, %" PRIu64
				    " zero pages skipped%s", domid, name, url, ttotal,
				    tdown * 1000, t->bytes, round > max_rounds ? max_rounds : round,
				    t->pages_zero, throttled ? ", guest throttled" : "");
	return 0;
fail:
	(void)committed;
	if (xs_tx)
		xs_client_txn_end(a->xs, xs_tx, false);
	note_dest(a, domid, name, NULL);
	if (o.transport && strcmp(what, "handing over") == 0) {
		/* The destination may run it already: never resume a second copy blindly. */
		int runs = dest_runs(&o, url, name);

		if (runs == 1) {
			agent_log(a, "domain %u (%s): the end record got no answer, but %s runs "
				  "it: handover complete", domid, name, url);
			tdown = agent_mono_s() - tdown;
			adom_destroy(d, &msg, ctx);
			rep->body_case = XSTAGENT__REPLY__BODY_TEXT;
			rep->text = talloc_asprintf(ctx, "migrated domain %u (%s) to %s: total %.3f s, "
						    "downtime %.1f ms, %" PRIu64 " bytes sent (the "
						    "confirmation was lost; checked)", domid, name,
						    url, agent_mono_s() - t0, tdown * 1000, t->bytes);
			return 0;
		}
		if (runs < 0) {
			rep->message = talloc_asprintf(
				ctx, "migration of domain %u (%s): %s after the final state was sent, "
				"and the destination cannot be asked whether it runs the domain: left "
				"PAUSED here so that at most one copy runs; check %s, then `xst unpause "
				"%s` or `xst destroy %s` here", domid, name, o.dest_msg, url, name, name);
			agent_log(a, "%s", rep->message);
			return -EHOSTUNREACH;
		}
	}
	mig_abort(&o);
	if (logging)
		dirty_log(d, false, ctx, NULL);
	if (paused && !was_paused)
		adom_call_empty(d, XSTDOM__REQUEST__BODY_UNPAUSE, ctx, NULL, NULL);
	rep->message = talloc_asprintf(ctx, "migration of domain %u (%s) failed while %s: %s; "
				       "the domain keeps running here", domid, name, what,
				       o.dest_msg ? o.dest_msg : msg ? msg : strerror(-rv));
	agent_log(a, "%s", rep->message);
	return rv;
}

/* ---------------------------------------------------------------- destination */

/*
 * One incoming session at a time.  Chunks of a session that ended here (aborted,
 * cancelled, superseded, refused) may still arrive late: a TCP connection closed by
 * its source delivers what it had buffered once a cut link is back.  Such a chunk, or
 * an abort naming another session, never touches the current one; only a session's
 * first chunk (seq 0, the HEADER) replaces a current session whose source went away.
 */
#define IN_ENDED 16

static struct stream_rx *in_rx;
static uint64_t in_session;
static uint64_t in_ended[IN_ENDED]; /* recently ended sessions, newest at in_ended_next-1 */
static bool in_ended_cancel[IN_ENDED];
static unsigned int in_ended_next;
static void *in_ctx;

static void in_end(bool cancelled)
{
	if (in_session) {
		in_ended[in_ended_next % IN_ENDED] = in_session;
		in_ended_cancel[in_ended_next % IN_ENDED] = cancelled;
		in_ended_next++;
	}
	talloc_free(in_ctx);
	in_ctx = NULL;
	in_rx = NULL;
	in_session = 0;
}

/* 0 when the session is not one that ended here, 1 ended, 2 cancelled by a user. */
static int in_ended_how(uint64_t session)
{
	unsigned int i;

	for (i = 0; i < IN_ENDED; i++)
		if (session && in_ended[i] == session)
			return in_ended_cancel[i] ? 2 : 1;
	return 0;
}

int migrate_recv(struct agent *a, const Xstagent__MigData *m, Xstagent__Reply *rep, void *ctx)
{
	struct adom *d;
	bool abort = m->has_abort && m->abort;
	bool first = m->has_seq && m->seq == 0;
	double t0;
	int rv;

	if (abort) {
		/* session 0: `xst migrate` cancelled by its user (Ctrl-C, migrate-cancel) */
		if (in_rx && (m->session == 0 || m->session == in_session)) {
			stream_rx_abort(in_rx, m->session ? "the source aborted the migration"
							  : "cancelled");
			in_end(m->session == 0);
		}
		return 0;
	}
	switch (in_ended_how(m->session)) {
	case 2:
		rep->message = talloc_strdup(ctx, "migration cancelled");
		return -ECANCELED;
	case 1:
		rep->message = talloc_strdup(ctx, "a late chunk of a migration that ended here");
		return -ESTALE;
	}
	if (in_rx && in_session != m->session) {
		if (!first) {
			rep->message = talloc_strdup(ctx, "a chunk of an unknown migration session "
						     "(another one is in progress)");
			return -ESTALE;
		}
		/* A new sender: the old one went away without a word. */
		agent_log(a, "incoming migration superseded by a new one");
		stream_rx_abort(in_rx, "superseded by a new incoming migration");
		in_end(false);
	}
	if (!in_rx && !first) {
		rep->message = talloc_strdup(ctx, "a chunk of an unknown migration session");
		return -ESTALE;
	}
	if (!in_rx) {
		in_ctx = talloc_new(a);
		rv = in_ctx ? stream_rx_new(a, in_ctx, false, &in_rx) : -ENOMEM;
		if (rv < 0) {
			in_end(false);
			return rv;
		}
		in_session = m->session;
	}
	if (!m->has_data)
		return 0;
	t0 = agent_mono_s();
	rv = stream_rx_feed(in_rx, m->data.data, m->data.len);
	if (rv < 0) {
		rep->message = talloc_strdup(ctx, stream_rx_error(in_rx));
		agent_log(a, "incoming migration refused: %s", rep->message);
		in_end(false);
		return rv;
	}
	if (stream_rx_done(in_rx)) {
		d = stream_rx_domain(in_rx);
		agent_log(a, "domain %u (%s) migrated in and running: the last chunk (%zu bytes) "
			  "acted on in %.1f ms (vm state %.1f)", d->domid, d->name, m->data.len,
			  (agent_mono_s() - t0) * 1000, stream_rx_state_ms(in_rx));
		rep->body_case = XSTAGENT__REPLY__BODY_DOMID;
		rep->domid = d->domid;
		in_end(false);
	}
	return 0;
}

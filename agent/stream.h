/*
 * The save/migration stream (docs/save-format.md): typed records, one format for a save
 * file and for a live migration (where the same bytes travel in chunks over nng).
 *
 * Every record is a 16-byte header {u32 type, u32 reserved = 0, u64 length} (little
 * endian) and `length` bytes of payload, padded with zeros to a multiple of 8.  The
 * stream starts with HEADER and ends with END, whose payload is the FNV-1a 64 hash of
 * every byte before the END record.  PAGES records may repeat (pre-copy rounds send a
 * page again; the last copy wins); pages absent from the stream are zero.
 *
 * Sender (stream_tx): records are buffered and handed to a sink in chunks of about
 * STREAM_CHUNK bytes.  Receiver (stream_rx): fed bytes in any split, it creates the
 * domain (paused, incoming: no kernel, memory all zero) on CONFIG, writes pages, loads
 * the state, and on END (hash checked) restores the xenstore nodes and unpauses.  Any
 * error destroys the half-built domain, so a bad stream leaves nothing behind.
 */
#ifndef XST_AGENT_STREAM_H
#define XST_AGENT_STREAM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct agent;
struct adom;

#define STREAM_MAGIC "XSTSAVE\n"
#define STREAM_VERSION 2 /* 2: the END checksum hashes 64-bit words */
#define STREAM_PAGE 4096u
#define STREAM_CHUNK (4u << 20)
#define STREAM_MAX_RECORD (64u << 20)
#define STREAM_BATCH 256u /* pages per write_pages and per PAGES record */
#define STREAM_READ_BATCH 2048u /* pages per read_pages (skip_zero; 8 MiB replies at most) */
#define STREAM_F_PAUSED 1u /* the domain was paused at the source: keep it paused */

enum stream_rec {
	REC_HEADER = 1,   /* magic[8], u32 version, u32 page size, u64 npages, char core[16],
			     u64 flags (STREAM_F_*) */
	REC_CONFIG = 2,   /* the DomainConfig as JSON text */
	REC_PAGES = 3,    /* u32 count, u32 0, u64 gfn[count], count pages */
	REC_XENSTORE = 4, /* repeated {u32 path len, u32 value len, path, value}; paths
			     relative to /local/domain/<domid> */
	REC_STATE = 5,    /* packed xstdom.StateBlob (vm + vcpu state) */
	REC_END = 6,      /* u64 FNV-1a of the stream before this record */
	REC_ZERO = 7,     /* u32 count, u32 0, u64 gfn[count]: these pages are now zero */
	REC_XS_WATCHES = 8, /* u32 source domid, u32 count, repeated {u32 path len, u32 token
			       len, path, token}: the guest's xenstore watches, oldest first */
	REC_CPU = 9,        /* the core's CPU feature blob of the source domain
			       (vm_cpu_features; kvm: CPUID words), right after CONFIG */
	REC_LAST = REC_CPU,
};

typedef int (*stream_sink_fn)(void *arg, const uint8_t *buf, size_t len);

struct stream_tx {
	stream_sink_fn sink;
	void *arg;
	uint8_t *buf;
	size_t len;
	uint64_t hash;
	uint64_t bytes;      /* handed to the sink so far + buffered */
	uint64_t pages_sent; /* non-zero pages in PAGES records */
	uint64_t pages_zero; /* pages skipped because they were zero */
	struct adom_ram *ram; /* the domain's RAM mapped here (NULL: through its process) */
	bool ram_tried;
};

int stream_tx_new(void *ctx, stream_sink_fn sink, void *arg, struct stream_tx **out);
int stream_tx_flush(struct stream_tx *t);
int stream_tx_header(struct stream_tx *t, const char *core, uint64_t npages, uint64_t flags);
int stream_tx_config(struct stream_tx *t, struct adom *d);
/* REC_CPU when the domain's core describes its CPU features (kvm), else nothing. */
int stream_tx_cpu(struct stream_tx *t, struct adom *d, char **msg, void *ctx);
/* Pages of d: all of 0..npages-1 when bitmap is NULL, else those whose bit is set
 * (little-endian u64 words, bit n = gfn n).  Zero pages are counted, not sent; with
 * `resend` (a later pre-copy round: the receiver may hold an older, non-zero copy) they
 * go as ZERO records (gfns only). */
int stream_tx_pages(struct stream_tx *t, struct adom *d, uint64_t npages, const uint8_t *bitmap,
		    size_t bitmap_len, bool resend, char **msg, void *ctx);
/* The guest's xenstore subtree (/local/domain/<domid>, values and permissions) as a
 * XENSTORE record, read inside transaction tx (0: none; a migration reads it before the
 * pause in a transaction whose commit tells whether it changed since); its watches as
 * an XS_WATCHES record; stream_tx_xenstore: both, outside any transaction. */
int stream_tx_xs_subtree(struct stream_tx *t, struct adom *d, uint32_t tx);
int stream_tx_xs_watches(struct stream_tx *t, struct adom *d);
int stream_tx_xenstore(struct stream_tx *t, struct adom *d);
/* state_save of a paused d. */
int stream_tx_state(struct stream_tx *t, struct adom *d, char **msg, void *ctx);
/* A STATE record from a state the caller has (a migration's stop_copy reply). */
int stream_tx_state_blob(struct stream_tx *t, const Xstdom__StateBlob *sb);
/* END record and flush. */
int stream_tx_end(struct stream_tx *t);

/* Number of guest pages of d (from its mem_max). */
int stream_npages(struct adom *d, uint64_t *npages);

struct stream_rx;
/* paused: leave the domain paused at the end. */
int stream_rx_new(struct agent *a, void *ctx, bool paused, struct stream_rx **out);
/* Feed bytes; on error the message is set (on rx) and the domain is destroyed. */
int stream_rx_feed(struct stream_rx *r, const uint8_t *buf, size_t len);
bool stream_rx_done(const struct stream_rx *r);
/* How long loading the vm state took (ms; 0 before the STATE record). */
double stream_rx_state_ms(const struct stream_rx *r);
const char *stream_rx_error(const struct stream_rx *r);
/* The restored domain (after done), or NULL. */
struct adom *stream_rx_domain(const struct stream_rx *r);
/* Destroy the domain being built (if any); used when the sender went away. */
void stream_rx_abort(struct stream_rx *r, const char *why);
/* The whole stream passed stream_verify() (a restore): its END checksum is not taken
 * again while records are acted on.  Instead, at the end record and before the domain
 * resumes, unchanged(arg) must return 0: the verified bytes were not rewritten since
 * (a negative errno fails the restore). */
void stream_rx_verified(struct stream_rx *r, int (*unchanged)(void *arg), void *arg);

/* Check a whole stream in memory (framing, header, END hash) without acting on it. */
int stream_verify(const uint8_t *buf, size_t len, char *err, size_t errlen);

#endif

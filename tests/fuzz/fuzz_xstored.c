/* libFuzzer target: xstored's request parser and dispatcher, in-process.
 *
 * Input: byte 0 picks the connection (bit 0: privileged; bits 1-2: domid 1..3 for an
 * unprivileged one), byte 1 a split point; the rest is a raw byte stream fed to the
 * connection in two chunks, exercising partial-message reassembly.  The store keeps
 * its state between inputs (so sequences build on earlier trees) and is rebuilt
 * every few thousand inputs to stay small. */
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <talloc.h>

#include "store/xstored.h"

static struct conn *priv;

static void feed(struct conn *c, const char *msg, size_t len)
{
	conn_input(c, msg, len);
	size_t olen;
	memconn_output(c, &olen);
}

static void store_init(void)
{
	static const char intro[][40] = {"1\0"
					 "1\0"
					 "1",
					 "2\0"
					 "1\0"
					 "1",
					 "3\0"
					 "1\0"
					 "1"};

	xsd_ctx = talloc_named_const(NULL, 0, "fuzz");
	domain_init();
	node_tree_init();
	watch_init();
	priv = memconn_new(xsd_ctx, true, 0);
	for (unsigned int i = 0; i < 3; i++) {
		char buf[64];
		struct xs_hdr h = {.type = XS_INTRODUCE, .len = 6};
		memcpy(buf, &h, sizeof(h));
		memcpy(buf + sizeof(h), intro[i], 6);
		feed(priv, buf, sizeof(h) + 6);
	}
	/* domain homes owned by their domains, as a toolstack makes them */
	for (unsigned int d = 1; d <= 3; d++) {
		char buf[128];
		int l = snprintf(buf + 16, sizeof(buf) - 16, "/local/domain/%u%cn%u", d, 0, d);
		struct xs_hdr h = {.type = XS_WRITE, .len = (uint32_t)(l - 3)};
		memcpy(buf, &h, sizeof(h));
		feed(priv, buf, sizeof(h) + h.len);
		h.type = XS_SET_PERMS;
		h.len = (uint32_t)l + 1;
		memcpy(buf, &h, sizeof(h));
		feed(priv, buf, sizeof(h) + h.len);
	}
}

static void store_fini(void)
{
	conn_reap();
	talloc_free(xsd_ctx);
	conn_reap();
	node_tree_free();
	domain_free_all();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static unsigned int runs;
	struct conn *c;
	size_t split, olen;

	if (runs++ % 5000 == 0) {
		if (runs > 1)
			store_fini();
		store_init();
	}
	if (size < 2)
		return 0;
	c = (data[0] & 1) ? memconn_new(xsd_ctx, true, 0)
			  : memconn_new(xsd_ctx, false, (uint16_t)(1 + ((data[0] >> 1) % 3)));
	if (!c)
		return 0;
	split = size > 2 ? data[1] % (size - 1) : 0;
	conn_input(c, (const char *)data + 2, split);
	if (!c->dead)
		conn_input(c, (const char *)data + 2 + split, size - 2 - split);
	memconn_output(c, &olen);
	if (!c->dead)
		conn_kill(c);
	conn_reap();
	return 0;
}

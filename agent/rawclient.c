/*
 * agent-rawclient: sends the xst-agent requests the xst CLI never would (configs it
 * validates away, garbage bytes), for the integration tests.  Not installed.
 *
 *   agent-rawclient URL create NAME VCPUS MAXVCPUS MEMORY_MIB ACTION
 *   agent-rawclient URL garbage
 *   agent-rawclient URL migdata SESSION SEQ    (a MigData chunk of 4 junk bytes)
 *   agent-rawclient URL migabort SESSION
 *   agent-rawclient URL migfile SESSION FILE CHUNK  (a save file as one incoming
 *                                                   migration, in CHUNK-byte pieces)
 *
 * Prints the reply as "error=<n> message=<text>" and exits 0 when a reply came.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <talloc.h>

#include "proto/agent.pb-c.h"
#include "proto/rpc.h"

int main(int argc, char **argv)
{
	Xstagent__Request req = XSTAGENT__REQUEST__INIT;
	Xstagent__Create cr = XSTAGENT__CREATE__INIT;
	Xstagent__DomainConfig c = XSTAGENT__DOMAIN_CONFIG__INIT;
	Xstagent__MigData md = XSTAGENT__MIG_DATA__INIT;
	Xstagent__Reply *rep;
	ProtobufCMessage *m;
	struct xst_rpc *r;
	void *ctx = talloc_new(NULL);
	int rv;

	if (argc < 3)
		return 2;
	rv = xst_rpc_dial(ctx, argv[1], &r);
	if (rv < 0) {
		fprintf(stderr, "dial: %s\n", strerror(-rv));
		return 1;
	}
	if (strcmp(argv[2], "garbage") == 0) {
		uint8_t *buf;
		size_t len;

		rv = xst_rpc_call(r, "\xff\xff\xff\xff", 4, 10000, ctx, &buf, &len);
		if (rv == 0)
			rv = xst_rpc_unpack(&xstagent__reply__descriptor, buf, len, ctx, &m);
	} else if (strcmp(argv[2], "create") == 0 && argc == 8) {
		c.name = argv[3];
		c.type = "pvh";
		c.vcpus = (uint32_t)strtoul(argv[4], NULL, 10);
		c.maxvcpus = (uint32_t)strtoul(argv[5], NULL, 10);
		c.memory_mib = c.maxmem_mib = strtoull(argv[6], NULL, 10);
		c.cpu_weight = 256;
		c.pool = "Pool-0";
		c.on_poweroff = c.on_reboot = c.on_crash = argv[7];
		c.on_soft_reset = "soft-reset";
		c.core = "sim";
		cr.config = &c;
		req.body_case = XSTAGENT__REQUEST__BODY_CREATE;
		req.create = &cr;
		rv = xst_rpc_call_msg(r, &req.base, 30000, &xstagent__reply__descriptor, ctx, &m);
	} else if ((strcmp(argv[2], "migdata") == 0 && argc == 5) ||
		   (strcmp(argv[2], "migabort") == 0 && argc == 4)) {
		md.session = strtoull(argv[3], NULL, 0);
		if (argc == 5) {
			md.has_seq = true;
			md.seq = (uint32_t)strtoul(argv[4], NULL, 0);
			md.has_data = true;
			md.data.data = (uint8_t *)"junk";
			md.data.len = 4;
		} else {
			md.has_abort = true;
			md.abort = true;
		}
		req.body_case = XSTAGENT__REQUEST__BODY_MIG_DATA;
		req.mig_data = &md;
		rv = xst_rpc_call_msg(r, &req.base, 30000, &xstagent__reply__descriptor, ctx, &m);
	} else if (strcmp(argv[2], "migfile") == 0 && argc == 6) {
		FILE *f = fopen(argv[4], "rb");
		size_t chunk = strtoul(argv[5], NULL, 0), n;
		uint8_t *buf = chunk ? talloc_size(ctx, chunk) : NULL;

		if (!f || !buf) {
			fprintf(stderr, "%s: %s\n", argv[4], strerror(errno));
			return 1;
		}
		md.session = strtoull(argv[3], NULL, 0);
		md.has_seq = md.has_data = true;
		rv = 0;
		while (rv == 0 && (n = fread(buf, 1, chunk, f)) > 0) {
			md.data.data = buf;
			md.data.len = n;
			req.body_case = XSTAGENT__REQUEST__BODY_MIG_DATA;
			req.mig_data = &md;
			rv = xst_rpc_call_msg(r, &req.base, 120000, &xstagent__reply__descriptor, ctx,
					      &m);
			md.seq++;
			if (rv == 0 && ((Xstagent__Reply *)m)->error)
				break; /* print the refusal */
		}
		fclose(f);
	} else {
		return 2;
	}
	if (rv < 0) {
		fprintf(stderr, "call: %s\n", strerror(-rv));
		return 1;
	}
	rep = (Xstagent__Reply *)m;
	printf("error=%d message=%s\n", rep->error, rep->message ? rep->message : "");
	talloc_free(ctx);
	return 0;
}

/* xs_client_check SOCKET: exercises every xs_client call against a running xstored and
 * exits 0 if all behave as documented; prints the first failing check otherwise.
 * Run by tests/integration/test_xstored_client.py. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <talloc.h>
#include <unistd.h>

#include "store/xs_client.h"
#include "store/xs_proto.h"

#define CHECK(expr)                                                                                \
	do {                                                                                       \
		int rc_ = (expr);                                                                  \
		if (rc_ != 0) {                                                                    \
			fprintf(stderr, "%s:%d: %s = %d (%s)\n", __FILE__, __LINE__, #expr, rc_,   \
				rc_ < 0 ? strerror(-rc_) : "");                                    \
			exit(1);                                                                   \
		}                                                                                  \
	} while (0)
#define EXPECT(cond)                                                                               \
	do {                                                                                       \
		if (!(cond)) {                                                                     \
			fprintf(stderr, "%s:%d: expected %s\n", __FILE__, __LINE__, #cond);        \
			exit(1);                                                                   \
		}                                                                                  \
	} while (0)

int main(int argc, char **argv)
{
	void *ctx = talloc_new(NULL);
	struct xs_client *c, *w;
	char *val, *path, *token, **names, **perms, *reply;
	unsigned int n;
	size_t len;
	uint32_t tx;

	if (argc != 2) {
		fprintf(stderr, "usage: xs_client_check SOCKET\n");
		return 2;
	}
	CHECK(xs_client_open(ctx, argv[1], &c));
	CHECK(xs_client_open(ctx, argv[1], &w));
	EXPECT(xs_client_fd(c) >= 0);

	CHECK(xs_client_write(c, 0, "/cc/a", "v\0x", 3));
	CHECK(xs_client_read(c, 0, "/cc/a", ctx, &val, &len));
	EXPECT(len == 3 && memcmp(val, "v\0x", 3) == 0);
	EXPECT(xs_client_read(c, 0, "/cc/none", ctx, &val, &len) == -ENOENT);
	EXPECT(xs_client_read(c, 0, "bad//path", ctx, &val, &len) == -EINVAL);
	CHECK(xs_client_mkdir(c, 0, "/cc/dir"));
	CHECK(xs_client_directory(c, 0, "/cc", ctx, &names, &n));
	EXPECT(n == 2 && strcmp(names[0], "a") == 0 && strcmp(names[1], "dir") == 0);

	/* a directory too big for one reply goes through DIRECTORY_PART */
	for (int i = 0; i < 300; i++) {
		char p[128];
		snprintf(p, sizeof(p), "/cc/big/a-rather-long-child-name-number-%04d", i);
		CHECK(xs_client_write(c, 0, p, "", 0));
	}
	CHECK(xs_client_directory(c, 0, "/cc/big", ctx, &names, &n));
	EXPECT(n == 300 && strcmp(names[299], "a-rather-long-child-name-number-0299") == 0);

	const char *pl[] = {"n0", "r0"};
	CHECK(xs_client_set_perms(c, 0, "/cc/a", pl, 2));
	CHECK(xs_client_get_perms(c, 0, "/cc/a", ctx, &perms, &n));
	EXPECT(n == 2 && strcmp(perms[0], "n0") == 0 && strcmp(perms[1], "r0") == 0);

	/* watches: the initial event, then one per change; events while waiting queue */
	CHECK(xs_client_watch(w, "/cc", "tok"));
	CHECK(xs_client_next_event(w, 1000, ctx, &path, &token));
	EXPECT(strcmp(path, "/cc") == 0 && strcmp(token, "tok") == 0);
	CHECK(xs_client_write(c, 0, "/cc/a", "2", 1));
	CHECK(xs_client_write(w, 0, "/cc/b", "3", 1)); /* event for /cc/a arrives meanwhile */
	CHECK(xs_client_next_event(w, 1000, ctx, &path, &token));
	EXPECT(strcmp(path, "/cc/a") == 0);
	CHECK(xs_client_next_event(w, 1000, ctx, &path, &token));
	EXPECT(strcmp(path, "/cc/b") == 0);
	EXPECT(xs_client_next_event(w, 100, ctx, &path, &token) == -ETIMEDOUT);
	CHECK(xs_client_unwatch(w, "/cc", "tok"));
	EXPECT(xs_client_unwatch(w, "/cc", "tok") == -ENOENT);

	/* transactions and EAGAIN */
	CHECK(xs_client_txn_start(c, &tx));
	CHECK(xs_client_read(c, tx, "/cc/a", ctx, &val, &len));
	CHECK(xs_client_write(w, 0, "/cc/a", "other", 5));
	CHECK(xs_client_write(c, tx, "/cc/a", "mine", 4));
	EXPECT(xs_client_txn_end(c, tx, true) == -EAGAIN);
	CHECK(xs_client_txn_start(c, &tx));
	CHECK(xs_client_write(c, tx, "/cc/a", "mine", 4));
	CHECK(xs_client_txn_end(c, tx, true));
	CHECK(xs_client_read(c, 0, "/cc/a", ctx, &val, &len));
	EXPECT(len == 4 && memcmp(val, "mine", 4) == 0);

	CHECK(xs_client_rm(c, 0, "/cc"));
	EXPECT(xs_client_read(c, 0, "/cc/a", ctx, &val, &len) == -ENOENT);

	/* control */
	const char *help[] = {"help"};
	CHECK(xs_client_control(c, help, 1, ctx, &reply));
	EXPECT(strncmp(reply, "check\t\n", 7) == 0);
	const char *bad[] = {"nosuch"};
	EXPECT(xs_client_control(c, bad, 1, ctx, &reply) == -EINVAL);

	/* introduce without fds (bookkeeping only) and with a ring */
	CHECK(xs_client_introduce(c, 11, 0, 1, NULL));
	CHECK(xs_client_release(c, 11));
	EXPECT(xs_client_release(c, 11) == -ENOENT);
	int mem = memfd_create("ring", MFD_CLOEXEC);
	int kick = eventfd(0, EFD_CLOEXEC), notify = eventfd(0, EFD_CLOEXEC);
	EXPECT(mem >= 0 && kick >= 0 && notify >= 0 && ftruncate(mem, 8192) == 0);
	int fds[3] = {mem, kick, notify};
	CHECK(xs_client_watch(w, "@introduceDomain", "i"));
	CHECK(xs_client_next_event(w, 1000, ctx, &path, &token));
	CHECK(xs_client_introduce(c, 12, 1, 1, fds));
	CHECK(xs_client_next_event(w, 1000, ctx, &path, &token));
	EXPECT(strcmp(path, "@introduceDomain") == 0);
	CHECK(xs_client_release(c, 12));
	close(mem);
	close(kick);
	close(notify);

	/* pipelined batch: results per op, in order, errors for some, a watch event that
	 * arrives in the middle queued for next_event */
	{
		struct xs_batch_op ops[XS_BATCH_MAX];
		char wbuf[300][32];
		unsigned int i;

		CHECK(xs_client_watch(c, "/batch", "b"));
		CHECK(xs_client_next_event(c, 1000, ctx, &path, &token));
		for (i = 0; i < 200; i++) {
			int l = snprintf(wbuf[i], sizeof(wbuf[i]), "/batch/n%u", i);

			memcpy(wbuf[i] + l + 1, "v", 1);
			ops[i] = (struct xs_batch_op){ .type = XS_WRITE, .payload = wbuf[i],
						       .len = (size_t)l + 2 };
		}
		CHECK(xs_client_batch(c, ops, 200, ctx));
		for (i = 0; i < 200; i++)
			EXPECT(ops[i].err == 0);
		ops[0] = (struct xs_batch_op){ .type = XS_READ, .payload = "/batch/n7", .len = 10 };
		ops[1] = (struct xs_batch_op){ .type = XS_READ, .payload = "/batch/none", .len = 12 };
		ops[2] = (struct xs_batch_op){ .type = XS_DIRECTORY, .payload = "/batch", .len = 7 };
		ops[3] = (struct xs_batch_op){ .type = XS_READ, .payload = "bad//path", .len = 10 };
		CHECK(xs_client_batch(c, ops, 4, ctx));
		EXPECT(ops[0].err == 0 && ops[0].reply_len == 1 && ops[0].reply[0] == 'v');
		EXPECT(ops[1].err == -ENOENT && ops[1].reply == NULL);
		EXPECT(ops[2].err == 0 && ops[2].reply_len > 200 * 3);
		EXPECT(ops[3].err == -EINVAL);
		EXPECT(xs_client_batch(c, ops, XS_BATCH_MAX + 1, ctx) == -E2BIG);
		/* the 200 writes fired 200 events on c: all queued, none lost */
		for (i = 0; i < 200; i++)
			CHECK(xs_client_next_event(c, 1000, ctx, &path, &token));
		EXPECT(strcmp(token, "b") == 0);
		EXPECT(xs_client_next_event(c, 50, ctx, &path, &token) == -ETIMEDOUT);
		CHECK(xs_client_unwatch(c, "/batch", "b"));
		CHECK(xs_client_rm(c, 0, "/batch"));
	}

	talloc_free(ctx);
	printf("xs_client_check: all checks passed\n");
	return 0;
}

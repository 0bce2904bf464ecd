/*
 * xs_libclient: exercises Debian's libxenstore (-lxenstore) against the daemon named by
 * XENSTORED_PATH and prints one line per step, "<step>: <result>".  The output is
 * deterministic, so tests/integration/test_xenstore_libclient.py compares it line by
 * line, and runs it against Xen's C xenstored as well to check the expectations.
 *
 * Covered: xs_open/xs_close, read/write/mkdir/rm/directory, get/set permissions,
 * transactions (commit, abort, EAGAIN conflict and the usual retry loop), watches via
 * xs_fileno + xs_check_watch/xs_read_watch and unwatch, a directory whose child list is
 * larger than 4096 bytes (libxenstore falls back to XS_DIRECTORY_PART), domain calls
 * (introduce, is_introduced, get_domain_path, set_target, resume, release and the
 * @introduceDomain/@releaseDomain watches) and xs_control_command.
 *
 * Exit status: 0 when every step ran (a step's result may be an expected error), 1 when
 * the program could not connect, 2 on an internal failure (e.g. out of memory).
 */
#include <errno.h>
#include <poll.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <xenstore.h>

#define BIG_CHILDREN 600 /* 600 * strlen("child-0000\0") = 6600 bytes > 4096 */

static const char *errname(int e)
{
    switch (e) {
    case EINVAL: return "EINVAL";
    case EACCES: return "EACCES";
    case EEXIST: return "EEXIST";
    case ENOENT: return "ENOENT";
    case ENOMEM: return "ENOMEM";
    case ENOSPC: return "ENOSPC";
    case EIO: return "EIO";
    case ENOSYS: return "ENOSYS";
    case EBUSY: return "EBUSY";
    case EAGAIN: return "EAGAIN";
    case E2BIG: return "E2BIG";
    case EPERM: return "EPERM";
    default: {
        static char buf[32];

        snprintf(buf, sizeof(buf), "errno %d", e);
        return buf;
    }
    }
}

/* Prints "step: ok" or "step: error <ERRNO>" for a bool-returning call. */
static void report(const char *step, bool ok)
{
    if (ok)
        printf("%s: ok\n", step);
    else
        printf("%s: error %s\n", step, errname(errno));
}

static void do_read(struct xs_handle *h, xs_transaction_t t, const char *path)
{
    unsigned int len = 0;
    char *v = xs_read(h, t, path, &len);

    if (!v) {
        printf("read %s: error %s\n", path, errname(errno));
        return;
    }
    printf("read %s: \"%.*s\" len %u\n", path, (int)len, v, len);
    free(v);
}

static void do_dir(struct xs_handle *h, xs_transaction_t t, const char *path)
{
    unsigned int n = 0;
    char **d = xs_directory(h, t, path, &n);

    if (!d) {
        printf("directory %s: error %s\n", path, errname(errno));
        return;
    }
    printf("directory %s:", path);
    for (unsigned int i = 0; i < n; i++)
        printf(" %s", d[i]);
    printf(" (%u)\n", n);
    free(d);
}

static void do_perms(struct xs_handle *h, const char *path)
{
    unsigned int n = 0;
    struct xs_permissions *p = xs_get_permissions(h, XBT_NULL, path, &n);
    static const char letters[] = "nrwb";

    if (!p) {
        printf("get_permissions %s: error %s\n", path, errname(errno));
        return;
    }
    printf("get_permissions %s:", path);
    for (unsigned int i = 0; i < n; i++)
        printf(" %c%u", letters[p[i].perms & 3], p[i].id);
    printf("\n");
    free(p);
}

/* Waits up to timeout_ms for the watch fd; prints every queued event, or "none". */
static void do_events(struct xs_handle *h, const char *step, int timeout_ms)
{
    struct pollfd pfd = { .fd = xs_fileno(h), .events = POLLIN };
    int got = 0;

    if (pfd.fd < 0) {
        printf("%s: xs_fileno error %s\n", step, errname(errno));
        return;
    }
    while (poll(&pfd, 1, got ? 100 : timeout_ms) > 0) {
        char **ev;

        while ((ev = xs_check_watch(h)) != NULL) {
            printf("%s: event %s %s\n", step, ev[XS_WATCH_PATH], ev[XS_WATCH_TOKEN]);
            free(ev);
            got++;
        }
        if (errno != EAGAIN) {
            printf("%s: xs_check_watch error %s\n", step, errname(errno));
            return;
        }
    }
    if (!got)
        printf("%s: none\n", step);
}

static void transactions(struct xs_handle *h)
{
    xs_transaction_t t, t2;
    int attempts = 0;
    bool ok;

    report("write /lc/tx/a", xs_write(h, XBT_NULL, "/lc/tx/a", "a", 1));

    t = xs_transaction_start(h);
    printf("transaction_start: %s\n", t == XBT_NULL ? errname(errno) : "ok");
    report("write /lc/tx/new in tx", xs_write(h, t, "/lc/tx/new", "n", 1));
    do_read(h, t, "/lc/tx/new");
    do_read(h, XBT_NULL, "/lc/tx/new");          /* not visible outside yet */
    report("transaction_end commit", xs_transaction_end(h, t, false));
    do_read(h, XBT_NULL, "/lc/tx/new");

    t = xs_transaction_start(h);
    report("write /lc/tx/a in tx", xs_write(h, t, "/lc/tx/a", "x", 1));
    report("transaction_end abort", xs_transaction_end(h, t, true));
    do_read(h, XBT_NULL, "/lc/tx/a");

    /* Conflict: a node read in the transaction changes outside it. */
    t = xs_transaction_start(h);
    do_read(h, t, "/lc/tx/a");
    report("write /lc/tx/a outside tx", xs_write(h, XBT_NULL, "/lc/tx/a", "b", 1));
    do_read(h, t, "/lc/tx/a");                    /* still the value first seen */
    report("write /lc/tx/a in tx", xs_write(h, t, "/lc/tx/a", "c", 1));
    report("transaction_end conflict", xs_transaction_end(h, t, false));
    do_read(h, XBT_NULL, "/lc/tx/a");

    /* The usual retry loop: the first attempt is disturbed, the second commits. */
    do {
        attempts++;
        t = xs_transaction_start(h);
        if (t == XBT_NULL)
            break;
        free(xs_read(h, t, "/lc/tx/a", NULL));
        if (attempts == 1)
            xs_write(h, XBT_NULL, "/lc/tx/a", "d", 1);
        xs_write(h, t, "/lc/tx/a", "e", 1);
        ok = xs_transaction_end(h, t, false);
    } while (!ok && errno == EAGAIN && attempts < 10);
    printf("retry loop: %s after %d attempts\n", ok ? "committed" : errname(errno), attempts);
    do_read(h, XBT_NULL, "/lc/tx/a");

    /* Two transactions of one handle are independent. */
    t = xs_transaction_start(h);
    t2 = xs_transaction_start(h);
    printf("two transactions distinct: %s\n", t != t2 ? "yes" : "no");
    report("write /lc/tx/t1 in tx1", xs_write(h, t, "/lc/tx/t1", "1", 1));
    do_read(h, t2, "/lc/tx/t1");
    report("transaction_end tx2", xs_transaction_end(h, t2, false));
    report("transaction_end tx1", xs_transaction_end(h, t, false));
    do_dir(h, XBT_NULL, "/lc/tx");

    /* Ending an unknown transaction. */
    report("transaction_end unknown", xs_transaction_end(h, 0x7777, false));
}

static void watches(struct xs_handle *h, struct xs_handle *w)
{
    unsigned int num = 0;
    char **ev;

    report("watch /lc/w", xs_watch(w, "/lc/w", "tok1"));
    ev = xs_read_watch(w, &num);                  /* the initial event, blocking */
    if (ev) {
        printf("read_watch: %s %s (%u)\n", ev[XS_WATCH_PATH], ev[XS_WATCH_TOKEN], num);
        free(ev);
    } else {
        printf("read_watch: error %s\n", errname(errno));
    }
    report("write /lc/w/x", xs_write(h, XBT_NULL, "/lc/w/x", "1", 1));
    do_events(w, "after write /lc/w/x", 2000);
    report("write /lc/other", xs_write(h, XBT_NULL, "/lc/other", "1", 1));
    do_events(w, "after write /lc/other", 200);
    report("watch relative", xs_watch(w, "lcrel", "tok2"));
    do_events(w, "after watch relative", 2000);
    report("write /local/domain/0/lcrel/k", xs_write(h, XBT_NULL, "/local/domain/0/lcrel/k",
                                                     "1", 1));
    do_events(w, "after write lcrel/k", 2000);
    report("watch /lc/w again", xs_watch(w, "/lc/w", "tok1"));
    report("unwatch /lc/w", xs_unwatch(w, "/lc/w", "tok1"));
    report("unwatch /lc/w again", xs_unwatch(w, "/lc/w", "tok1"));
    report("write /lc/w/y", xs_write(h, XBT_NULL, "/lc/w/y", "1", 1));
    do_events(w, "after unwatch", 200);
    report("rm /local/domain/0/lcrel", xs_rm(h, XBT_NULL, "/local/domain/0/lcrel"));
    do_events(w, "after rm lcrel", 2000);
    report("unwatch relative", xs_unwatch(w, "lcrel", "tok2"));
}

static void big_directory(struct xs_handle *h)
{
    char path[64];
    unsigned int n = 0;
    char **d;
    bool ordered = true;
    xs_transaction_t t;
    bool ok = true;

    t = xs_transaction_start(h);
    for (int i = 0; i < BIG_CHILDREN && ok; i++) {
        snprintf(path, sizeof(path), "/lc/big/child-%04d", i);
        ok = xs_write(h, t, path, "v", 1);
    }
    ok = xs_transaction_end(h, t, !ok) && ok;
    report("create big directory", ok);
    d = xs_directory(h, XBT_NULL, "/lc/big", &n);
    if (!d) {
        printf("directory big: error %s\n", errname(errno));
        return;
    }
    for (unsigned int i = 0; i < n; i++) {
        snprintf(path, sizeof(path), "child-%04u", i);
        if (strcmp(d[i], path))
            ordered = false;
    }
    printf("directory big: %u children, %s, first %s, last %s\n", n,
           ordered ? "in creation order" : "out of order", n ? d[0] : "-", n ? d[n - 1] : "-");
    free(d);
}

static void domains(struct xs_handle *h, struct xs_handle *w)
{
    char *s;

    report("watch @introduceDomain", xs_watch(w, "@introduceDomain", "intro"));
    report("watch @releaseDomain", xs_watch(w, "@releaseDomain", "release"));
    do_events(w, "special watches", 2000);
    printf("is_domain_introduced 7: %s\n", xs_is_domain_introduced(h, 7) ? "yes" : "no");
    printf("is_domain_introduced 0: %s\n", xs_is_domain_introduced(h, 0) ? "yes" : "no");
    report("introduce_domain 7", xs_introduce_domain(h, 7, 0x1234, 1));
    do_events(w, "after introduce 7", 2000);
    report("introduce_domain 8", xs_introduce_domain(h, 8, 0x1235, 2));
    do_events(w, "after introduce 8", 2000);
    report("introduce_domain 9", xs_introduce_domain(h, 9, 0x1236, 3));
    do_events(w, "after introduce 9", 2000);
    report("introduce_domain 7 again", xs_introduce_domain(h, 7, 0x1234, 4));
    do_events(w, "after introduce 7 again", 200);
    printf("is_domain_introduced 7: %s\n", xs_is_domain_introduced(h, 7) ? "yes" : "no");
    printf("is_domain_introduced 10: %s\n", xs_is_domain_introduced(h, 10) ? "yes" : "no");
    s = xs_get_domain_path(h, 7);
    printf("get_domain_path 7: %s\n", s ? s : errname(errno));
    free(s);
    s = xs_get_domain_path(h, 32000);
    printf("get_domain_path 32000: %s\n", s ? s : errname(errno));
    free(s);
    report("set_target 9 8", xs_set_target(h, 9, 8));
    report("set_target 9 10", xs_set_target(h, 9, 10));
    report("set_target 10 9", xs_set_target(h, 10, 9));
    report("resume_domain 7", xs_resume_domain(h, 7));
    report("resume_domain 0", xs_resume_domain(h, 0));
    report("resume_domain 10", xs_resume_domain(h, 10));

    /* Nodes owned by a released domain go with it. */
    report("write /lc/dom7/sub", xs_write(h, XBT_NULL, "/lc/dom7/sub", "x", 1));
    {
        struct xs_permissions p[2] = { { .id = 7, .perms = XS_PERM_NONE },
                                       { .id = 0, .perms = XS_PERM_READ } };
        report("set_permissions /lc/dom7 n7 r0", xs_set_permissions(h, XBT_NULL, "/lc/dom7",
                                                                    p, 2));
    }
    do_perms(h, "/lc/dom7");
    report("release_domain 7", xs_release_domain(h, 7));
    do_events(w, "after release 7", 2000);
    printf("is_domain_introduced 7: %s\n", xs_is_domain_introduced(h, 7) ? "yes" : "no");
    do_read(h, XBT_NULL, "/lc/dom7/sub");
    do_perms(h, "/lc/dom7");
    report("release_domain 7 again", xs_release_domain(h, 7));
    report("release_domain 0", xs_release_domain(h, 0));
    report("release_domain 9", xs_release_domain(h, 9));
    do_events(w, "after release 9", 2000);
    report("release_domain 8", xs_release_domain(h, 8));
    do_events(w, "after release 8", 2000);
    printf("is_domain_introduced 8: %s\n", xs_is_domain_introduced(h, 8) ? "yes" : "no");
}

static void basics(struct xs_handle *h)
{
    struct xs_permissions p[3] = { { .id = 0, .perms = XS_PERM_NONE },
                                   { .id = 0, .perms = XS_PERM_READ },
                                   { .id = 0, .perms = XS_PERM_READ | XS_PERM_WRITE } };

    report("write /lc/a", xs_write(h, XBT_NULL, "/lc/a", "hello", 5));
    do_read(h, XBT_NULL, "/lc/a");
    report("write /lc/bin", xs_write(h, XBT_NULL, "/lc/bin", "a\0b", 3));
    do_read(h, XBT_NULL, "/lc/bin");
    report("write /lc/empty", xs_write(h, XBT_NULL, "/lc/empty", "", 0));
    do_read(h, XBT_NULL, "/lc/empty");
    report("mkdir /lc/d/e", xs_mkdir(h, XBT_NULL, "/lc/d/e"));
    report("mkdir /lc/a (exists)", xs_mkdir(h, XBT_NULL, "/lc/a"));
    do_read(h, XBT_NULL, "/lc/a");
    do_dir(h, XBT_NULL, "/lc");
    do_dir(h, XBT_NULL, "/lc/d/e");
    do_read(h, XBT_NULL, "/lc/missing");
    do_dir(h, XBT_NULL, "/lc/missing");
    do_read(h, XBT_NULL, "/lc//bad");
    do_read(h, XBT_NULL, "@introduceDomain");
    report("write relative lcrel2", xs_write(h, XBT_NULL, "lcrel2", "r", 1));
    do_read(h, XBT_NULL, "/local/domain/0/lcrel2");
    report("rm lcrel2", xs_rm(h, XBT_NULL, "lcrel2"));
    do_perms(h, "/lc/a");
    report("set_permissions /lc/a n0 r0 b0", xs_set_permissions(h, XBT_NULL, "/lc/a", p, 3));
    do_perms(h, "/lc/a");
    report("write /lc/a/child", xs_write(h, XBT_NULL, "/lc/a/child", "c", 1));
    do_perms(h, "/lc/a/child");                  /* inherited */
    p[1].id = 42;
    report("set_permissions /lc/a with unknown domain 42",
           xs_set_permissions(h, XBT_NULL, "/lc/a", p, 2));
    report("set_permissions /lc/missing", xs_set_permissions(h, XBT_NULL, "/lc/missing", p, 1));
    do_perms(h, "/lc/missing");
    report("rm /lc/d", xs_rm(h, XBT_NULL, "/lc/d"));
    report("rm /lc/d (gone, parent exists)", xs_rm(h, XBT_NULL, "/lc/d"));
    report("rm /lc/nope/x", xs_rm(h, XBT_NULL, "/lc/nope/x"));
    report("rm /", xs_rm(h, XBT_NULL, "/"));
    do_dir(h, XBT_NULL, "/lc");
}

static void control(struct xs_handle *h)
{
    char *s = xs_control_command(h, "check", NULL, 0);

    printf("control check: %s\n", s ? s : errname(errno));
    free(s);
    s = xs_control_command(h, "print", "from-libclient", strlen("from-libclient") + 1);
    printf("control print: %s\n", s ? s : errname(errno));
    free(s);
    s = xs_control_command(h, "no-such-command", NULL, 0);
    printf("control no-such-command: %s\n", s ? s : errname(errno));
    free(s);
}

int main(void)
{
    struct xs_handle *h = xs_open(0);
    struct xs_handle *w = xs_open(0);

    if (!h || !w) {
        fprintf(stderr, "xs_libclient: xs_open: %s\n", strerror(errno));
        xs_close(h);
        xs_close(w);
        return 1;
    }
    setvbuf(stdout, NULL, _IOLBF, 0);
    basics(h);
    transactions(h);
    watches(h, w);
    big_directory(h);
    domains(h, w);
    control(h);
    xs_close(w);
    xs_close(h);
    printf("done\n");
    return 0;
}

/*
 * xs_bench: xenstore daemon benchmark over Debian's libxenstore.
 *
 *   XENSTORED_PATH=<socket> xs_bench [--pid <daemon pid>] [--scale <0.1..1>]
 *                                    [--only rw,dir,tx,fanout,rss,conns]
 *
 * Runs every workload against the daemon behind XENSTORED_PATH and prints one result per
 * line, "<key> <value> <unit>", for tests/bench/run-xenstore to put side by side:
 *
 *   write / read      single client, sequential ops: ops/s, p50 and p99 latency (us)
 *   dir10k            DIRECTORY of a node with 10,000 children (libxenstore falls back to
 *                     DIRECTORY_PART): listings/s
 *   tx_disjoint/same  4 client processes, START/READ/WRITE/END loops for a fixed time on
 *                     their own node / on one shared node: commits/s, EAGAIN ratio
 *   fanout            50 watcher connections, 2,000 writes under the watched path:
 *                     events/s delivered, p99 write-to-event latency (us)
 *   rss               daemon VmRSS after adding 100,000 nodes with 32-byte values (MiB)
 *   conn1000          1,000 concurrent connections, connect + one READ each: total ms
 *
 * --only runs the listed workloads (default all; tests/bench/run-xenstore runs rw,tx
 * against xs_floor, the zero-work responder).
 * A workload that fails prints "<key> n/a <reason>" and the rest still run.  Exit 0
 * unless the daemon cannot be reached.
 */
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <xenstore.h>

#define VALUE32 "0123456789abcdef0123456789abcdef" /* 32 bytes */

static double scale = 1.0;
static const char *only;

/* Whether workload `name` was selected with --only (all are by default). */
static bool selected(const char *name)
{
    size_t n = strlen(name);

    for (const char *p = only; p; p = strchr(p, ',') ? strchr(p, ',') + 1 : NULL)
        if (!strncmp(p, name, n) && (p[n] == ',' || p[n] == '\0'))
            return true;
    return !only;
}
static long daemon_pid = -1;

static uint64_t now_ns(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static int scaled(int n)
{
    int v = (int)(n * scale);

    return v < 1 ? 1 : v;
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

    return x < y ? -1 : x > y;
}

/* Percentile p (0..100) of n sorted samples, in microseconds. */
static double pct_us(const uint64_t *sorted, size_t n, double p)
{
    size_t i;

    if (!n)
        return 0;
    i = (size_t)(p / 100.0 * (double)(n - 1) + 0.5);
    return (double)sorted[i] / 1000.0;
}

static struct xs_handle *open_or_die(void)
{
    struct xs_handle *h = xs_open(0);

    if (!h) {
        fprintf(stderr, "xs_bench: xs_open: %s\n", strerror(errno));
        exit(1);
    }
    return h;
}

static void na(const char *key, const char *why)
{
    printf("%s n/a %s\n", key, why);
}

/* ---- single client write / read ---------------------------------------------------- */

static void bench_rw(struct xs_handle *h)
{
    int n = scaled(20000);
    uint64_t *lat = calloc((size_t)n, sizeof(*lat));
    char path[64];
    uint64_t t0, t1;

    if (!lat) {
        na("write", "out of memory");
        return;
    }
    t0 = now_ns();
    for (int i = 0; i < n; i++) {
        uint64_t s = now_ns();

        snprintf(path, sizeof(path), "/bench/rw/k%d", i % 1000);
        if (!xs_write(h, XBT_NULL, path, VALUE32, 32)) {
            na("write_ops", strerror(errno));
            free(lat);
            return;
        }
        lat[i] = now_ns() - s;
    }
    t1 = now_ns();
    qsort(lat, (size_t)n, sizeof(*lat), cmp_u64);
    printf("write_ops %.0f ops/s\n", n / ((double)(t1 - t0) / 1e9));
    printf("write_p50 %.1f us\n", pct_us(lat, (size_t)n, 50));
    printf("write_p99 %.1f us\n", pct_us(lat, (size_t)n, 99));

    t0 = now_ns();
    for (int i = 0; i < n; i++) {
        uint64_t s = now_ns();
        unsigned int len;
        char *v;

        snprintf(path, sizeof(path), "/bench/rw/k%d", i % 1000);
        v = xs_read(h, XBT_NULL, path, &len);
        if (!v || len != 32) {
            na("read_ops", v ? "wrong length" : strerror(errno));
            free(v);
            free(lat);
            return;
        }
        free(v);
        lat[i] = now_ns() - s;
    }
    t1 = now_ns();
    qsort(lat, (size_t)n, sizeof(*lat), cmp_u64);
    printf("read_ops %.0f ops/s\n", n / ((double)(t1 - t0) / 1e9));
    printf("read_p50 %.1f us\n", pct_us(lat, (size_t)n, 50));
    printf("read_p99 %.1f us\n", pct_us(lat, (size_t)n, 99));
    free(lat);
}

/* ---- DIRECTORY of 10,000 children --------------------------------------------------- */

static void bench_dir(struct xs_handle *h)
{
    int children = 10000, reps = scaled(20);
    char path[64];
    uint64_t t0, t1;

    for (int i = 0; i < children; i++) {
        snprintf(path, sizeof(path), "/bench/dir/child%05d", i);
        if (!xs_write(h, XBT_NULL, path, "", 0)) {
            na("dir10k_ops", strerror(errno));
            return;
        }
    }
    t0 = now_ns();
    for (int r = 0; r < reps; r++) {
        unsigned int num = 0;
        char **d = xs_directory(h, XBT_NULL, "/bench/dir", &num);

        if (!d || num != (unsigned int)children) {
            na("dir10k_ops", d ? "wrong child count" : strerror(errno));
            free(d);
            return;
        }
        free(d);
    }
    t1 = now_ns();
    printf("dir10k_ops %.1f listings/s\n", reps / ((double)(t1 - t0) / 1e9));
    printf("dir10k_ms %.2f ms\n", (double)(t1 - t0) / 1e6 / reps);
}

/* ---- transactions from 4 clients ---------------------------------------------------- */

struct tx_result {
    long commits;
    long eagain;
    long errors;
};

static void tx_client(int id, bool shared, double seconds, int fd)
{
    struct xs_handle *h = xs_open(0);
    struct tx_result r = { 0, 0, 0 };
    char path[64];
    uint64_t end;

    if (shared)
        snprintf(path, sizeof(path), "/bench/tx/shared");
    else
        snprintf(path, sizeof(path), "/bench/tx/c%d", id);
    if (!h) {
        r.errors = 1;
        goto out;
    }
    end = now_ns() + (uint64_t)(seconds * 1e9);
    while (now_ns() < end) {
        xs_transaction_t t = xs_transaction_start(h);
        unsigned int len;
        char *v;

        if (t == XBT_NULL) {
            r.errors++;
            break;
        }
        v = xs_read(h, t, path, &len);
        free(v);
        if (!xs_write(h, t, path, VALUE32, 32)) {
            xs_transaction_end(h, t, true);
            r.errors++;
            continue;
        }
        if (xs_transaction_end(h, t, false))
            r.commits++;
        else if (errno == EAGAIN)
            r.eagain++;
        else
            r.errors++;
    }
out:
    if (write(fd, &r, sizeof(r)) != sizeof(r))
        _exit(3);
    xs_close(h);
    _exit(0);
}

static void bench_tx(struct xs_handle *h, bool shared)
{
    const char *key = shared ? "tx_same" : "tx_disjoint";
    double seconds = 2.0 * scale;
    struct tx_result total = { 0, 0, 0 };
    int fds[2];
    pid_t pids[4];
    char k[64];

    for (int i = 0; i < 4; i++) {
        snprintf(k, sizeof(k), "/bench/tx/c%d", i);
        xs_write(h, XBT_NULL, k, VALUE32, 32);
    }
    xs_write(h, XBT_NULL, "/bench/tx/shared", VALUE32, 32);
    if (pipe(fds)) {
        na(key, strerror(errno));
        return;
    }
    fflush(stdout);
    for (int i = 0; i < 4; i++) {
        pids[i] = fork();
        if (pids[i] == 0) {
            close(fds[0]);
            tx_client(i, shared, seconds, fds[1]);
        }
    }
    close(fds[1]);
    for (int i = 0; i < 4; i++) {
        struct tx_result r;

        if (read(fds[0], &r, sizeof(r)) == sizeof(r)) {
            total.commits += r.commits;
            total.eagain += r.eagain;
            total.errors += r.errors;
        } else {
            total.errors++;
        }
    }
    close(fds[0]);
    for (int i = 0; i < 4; i++)
        waitpid(pids[i], NULL, 0);
    if (total.errors) {
        snprintf(k, sizeof(k), "%s_commits", key);
        na(k, "transaction errors other than EAGAIN");
        return;
    }
    printf("%s_commits %.0f commits/s\n", key, total.commits / seconds);
    printf("%s_eagain %.3f ratio\n", key,
           total.commits + total.eagain
               ? (double)total.eagain / (double)(total.commits + total.eagain) : 0.0);
}

/* ---- watch fan-out ------------------------------------------------------------------- */

#define FAN_WATCHERS 50

struct fanout {
    int writes;
    uint64_t *sent;           /* send time of write i (set before the write) */
    uint64_t *lat;            /* FAN_WATCHERS * writes latencies */
    long nlat;
    uint64_t last_event;
    pthread_mutex_t lock;
    struct xs_handle *w[FAN_WATCHERS];
    int failed;
};

struct fan_arg {
    struct fanout *f;
    int idx;
};

static void *fan_watcher(void *p)
{
    struct fan_arg *a = p;
    struct fanout *f = a->f;
    int got = 0;

    while (got < f->writes) {
        unsigned int num;
        char **ev = xs_read_watch(f->w[a->idx], &num);
        uint64_t t = now_ns();
        const char *slash;
        int i;

        if (!ev) {
            pthread_mutex_lock(&f->lock);
            f->failed++;
            pthread_mutex_unlock(&f->lock);
            break;
        }
        slash = strrchr(ev[XS_WATCH_PATH], '/');
        if (slash && slash[1] == 'e') {
            i = atoi(slash + 2);
            if (i >= 0 && i < f->writes) {
                pthread_mutex_lock(&f->lock);
                f->lat[f->nlat++] = t - __atomic_load_n(&f->sent[i], __ATOMIC_ACQUIRE);
                if (t > f->last_event)
                    f->last_event = t;
                pthread_mutex_unlock(&f->lock);
                got++;
            }
        }
        free(ev);
    }
    return NULL;
}

static void bench_fanout(struct xs_handle *h)
{
    struct fanout f = { .writes = scaled(2000) };
    struct fan_arg args[FAN_WATCHERS];
    pthread_t th[FAN_WATCHERS];
    int nth = 0;
    char path[64];
    uint64_t t0;

    f.sent = calloc((size_t)f.writes, sizeof(*f.sent));
    f.lat = calloc((size_t)f.writes * FAN_WATCHERS, sizeof(*f.lat));
    pthread_mutex_init(&f.lock, NULL);
    if (!f.sent || !f.lat) {
        na("fanout_events", "out of memory");
        goto out;
    }
    xs_write(h, XBT_NULL, "/bench/fan", "", 0);
    for (int i = 0; i < FAN_WATCHERS; i++) {
        unsigned int num;
        char **ev;

        f.w[i] = xs_open(0);
        if (!f.w[i] || !xs_watch(f.w[i], "/bench/fan", "fan")) {
            na("fanout_events", "cannot register watcher");
            goto out;
        }
        ev = xs_read_watch(f.w[i], &num);     /* the initial event */
        free(ev);
    }
    for (int i = 0; i < FAN_WATCHERS; i++) {
        args[i].f = &f;
        args[i].idx = i;
        if (pthread_create(&th[i], NULL, fan_watcher, &args[i]))
            break;
        nth++;
    }
    t0 = now_ns();
    for (int i = 0; i < f.writes; i++) {
        snprintf(path, sizeof(path), "/bench/fan/e%d", i);
        __atomic_store_n(&f.sent[i], now_ns(), __ATOMIC_RELEASE);
        if (!xs_write(h, XBT_NULL, path, VALUE32, 32)) {
            f.failed++;
            break;
        }
    }
    for (int i = 0; i < nth; i++) {
        /* A watcher still waiting after 60 s means events were lost: stop it. */
        struct timespec ts;

        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_sec += 60;
        if (pthread_timedjoin_np(th[i], NULL, &ts)) {
            f.failed++;
            pthread_cancel(th[i]);
            pthread_join(th[i], NULL);
        }
    }
    if (f.failed || nth < FAN_WATCHERS || f.nlat != (long)f.writes * FAN_WATCHERS) {
        printf("fanout_events n/a %ld of %ld events delivered\n", f.nlat,
               (long)f.writes * FAN_WATCHERS);
        goto out;
    }
    qsort(f.lat, (size_t)f.nlat, sizeof(*f.lat), cmp_u64);
    printf("fanout_events %.0f events/s\n", f.nlat / ((double)(f.last_event - t0) / 1e9));
    printf("fanout_p99 %.1f us\n", pct_us(f.lat, (size_t)f.nlat, 99));
out:
    for (int i = 0; i < FAN_WATCHERS; i++)
        xs_close(f.w[i]);
    free(f.sent);
    free(f.lat);
}

/* ---- RSS with 100,000 nodes --------------------------------------------------------- */

static long vmrss_kib(long pid)
{
    char path[64], line[256];
    long kib = -1;
    FILE *f;

    snprintf(path, sizeof(path), "/proc/%ld/status", pid);
    f = fopen(path, "r");
    if (!f)
        return -1;
    while (fgets(line, sizeof(line), f))
        if (sscanf(line, "VmRSS: %ld kB", &kib) == 1)
            break;
    fclose(f);
    return kib;
}

static void bench_rss(struct xs_handle *h)
{
    int n = 100000;
    char path[64];
    long before, after;

    if (daemon_pid <= 0) {
        na("rss_100k", "no --pid given");
        return;
    }
    before = vmrss_kib(daemon_pid);
    for (int i = 0; i < n; i++) {
        snprintf(path, sizeof(path), "/bench/rss/d%03d/n%03d", i / 1000, i % 1000);
        if (!xs_write(h, XBT_NULL, path, VALUE32, 32)) {
            na("rss_100k", strerror(errno));
            return;
        }
    }
    after = vmrss_kib(daemon_pid);
    if (before < 0 || after < 0) {
        na("rss_100k", "cannot read /proc/PID/status");
        return;
    }
    printf("rss_100k %.1f MiB\n", after / 1024.0);
    printf("rss_100k_growth %.1f MiB\n", (after - before) / 1024.0);
}

/* ---- 1,000 concurrent connections ---------------------------------------------------- */

static void bench_conns(void)
{
    enum { N = 1000 };
    static struct xs_handle *hs[N];
    struct rlimit rl;
    uint64_t t0, t1;
    int ok = 0;

    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < N + 64) {
        rl.rlim_cur = rl.rlim_max < N + 64 ? rl.rlim_max : N + 64;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
    t0 = now_ns();
    for (int i = 0; i < N; i++) {
        unsigned int len;
        char *v;

        hs[i] = xs_open(0);
        if (!hs[i])
            break;
        v = xs_read(hs[i], XBT_NULL, "/bench/rw/k1", &len);
        if (!v)
            break;
        free(v);
        ok++;
    }
    t1 = now_ns();
    for (int i = 0; i < N; i++)
        xs_close(hs[i]);
    if (ok < N) {
        printf("conn1000_ms n/a only %d connections served (%s)\n", ok, strerror(errno));
        return;
    }
    printf("conn1000_ms %.1f ms\n", (double)(t1 - t0) / 1e6);
}

int main(int argc, char **argv)
{
    struct xs_handle *h;

    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--pid") && i + 1 < argc)
            daemon_pid = atol(argv[++i]);
        else if (!strcmp(argv[i], "--scale") && i + 1 < argc)
            scale = atof(argv[++i]);
        else if (!strcmp(argv[i], "--only") && i + 1 < argc)
            only = argv[++i];
        else {
            fprintf(stderr, "usage: xs_bench [--pid PID] [--scale 0.1..1] [--only LIST]\n");
            return 2;
        }
    }
    if (scale <= 0 || scale > 1)
        scale = 1;
    signal(SIGPIPE, SIG_IGN);
    setvbuf(stdout, NULL, _IOLBF, 0);
    h = open_or_die();
    if (selected("rss")) {
        bench_rss(h);                 /* first: a fresh daemon plus exactly 100k nodes */
        if (!xs_rm(h, XBT_NULL, "/bench/rss"))
            fprintf(stderr, "xs_bench: rm /bench/rss: %s\n", strerror(errno));
    }
    if (selected("rw"))
        bench_rw(h);
    if (selected("dir"))
        bench_dir(h);
    if (selected("tx")) {
        bench_tx(h, false);
        bench_tx(h, true);
    }
    if (selected("fanout"))
        bench_fanout(h);
    if (selected("conns"))
        bench_conns();
    xs_close(h);
    return 0;
}

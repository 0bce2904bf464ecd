/*
 * xstguest workload (ring 3).  Command line (space separated key=value):
 *   tick=MS       print "COUNTER n errors=e dirtied=d" every MS ms (default 1000, 0 = never)
 *   dirty=SIZE    working set (bytes, K/M/G suffix; default 0 = none)
 *   rate=N        pages dirtied per second (default 0)
 *   xs=1          talk to xenstore: read name, write data/status, obey control/shutdown
 *   xs_gfn=N      xenstore ring page frame (the host appends it; default 0xfe)
 *   ticks=N       power off after N counter lines (default 0 = never)
 *   beat=MS       print a "." line every MS ms of guest time (default 0 = never): a
 *                 heartbeat whose arrival times on the host show every pause the guest
 *                 went through (tests/bench/run-migrate's guest-observed downtime)
 * Each working-set page carries content whose checksum is kept in a table; every page is
 * verified before it is rewritten and all pages on every tick, so a lost or stale page
 * (after a restore or migration) is reported: "CHECKSUM-ERROR page N".
 */
#include "tests/guests/user.h"

extern char _end[];

static struct {
	uint64_t tick_ms, dirty_bytes, rate, xs_gfn, ticks, beat_ms;
	int xs;
} opt = { 1000, 0, 0, XS_DEFAULT_GFN, 0, 0, 0 };

/* Kept in guest memory, so they survive save/restore like everything else. */
static uint64_t counter, errors, dirtied, seed = 0x9e3779b97f4a7c15ull;
static uint64_t *csum, npages;
static uint8_t *pages;

static uint64_t syscall3(uint64_t nr, uint64_t a, uint64_t b, uint64_t c)
{
	__asm__ volatile("ud2" : "+a"(nr) : "D"(a), "S"(b), "d"(c) : "memory");
	return nr;
}

void port_out(uint16_t port, uint8_t v)
{
	syscall3(SYS_OUTB, port, v, 0);
}

void con_puts(const char *s)
{
	syscall3(SYS_OUTS, PORT_COM1, (uint64_t)s, strlen(s));
}

void con_putu(uint64_t v)
{
	char b[24];
	int i = 23;
	b[i] = 0;
	do {
		b[--i] = (char)('0' + v % 10);
		v /= 10;
	} while (v);
	con_puts(b + i);
}

uint64_t now_ns(void)
{
	uint32_t ver;
	uint64_t tsc, ts, st, delta;
	uint32_t mul;
	int8_t shift;
	do {
		ver = kvmclock.version;
		__asm__ volatile("" ::: "memory");
		tsc = rdtsc();
		ts = kvmclock.tsc_timestamp;
		st = kvmclock.system_time;
		mul = kvmclock.tsc_to_system_mul;
		shift = kvmclock.tsc_shift;
		__asm__ volatile("" ::: "memory");
	} while ((ver & 1) || ver != kvmclock.version);
	delta = tsc - ts;
	if ((int64_t)delta < 0)
		delta = 0;
	if (shift < 0)
		delta >>= -shift;
	else
		delta <<= shift;
	return st + (uint64_t)(((unsigned __int128)delta * mul) >> 32);
}

void sleep_ns(uint64_t ns)
{
	syscall3(SYS_SLEEP, ns, 0, 0);
}

void poweroff(unsigned int reason)
{
	port_out(PORT_XST_SHUTDOWN, (uint8_t)reason);
	for (;;)
		sleep_ns(1000000000);
}

static uint64_t parse_num(const char *s, const char **end)
{
	uint64_t v = 0, base = 10;
	if (s[0] == '0' && (s[1] == 'x' || s[1] == 'X')) {
		base = 16;
		s += 2;
	}
	for (;; s++) {
		unsigned int d;
		if (*s >= '0' && *s <= '9')
			d = (unsigned int)(*s - '0');
		else if (base == 16 && *s >= 'a' && *s <= 'f')
			d = (unsigned int)(*s - 'a' + 10);
		else if (base == 16 && *s >= 'A' && *s <= 'F')
			d = (unsigned int)(*s - 'A' + 10);
		else
			break;
		v = v * base + d;
	}
	if (*s == 'K' || *s == 'k')
		v <<= 10, s++;
	else if (*s == 'M' || *s == 'm')
		v <<= 20, s++;
	else if (*s == 'G' || *s == 'g')
		v <<= 30, s++;
	*end = s;
	return v;
}

static int key_is(const char *p, const char *key, const char **val)
{
	size_t n = strlen(key);
	for (size_t i = 0; i < n; i++)
		if (p[i] != key[i])
			return 0;
	if (p[n] != '=')
		return 0;
	*val = p + n + 1;
	return 1;
}

static void parse_cmdline(const char *p)
{
	while (p && *p) {
		const char *v;
		while (*p == ' ')
			p++;
		if (key_is(p, "tick", &v))
			opt.tick_ms = parse_num(v, &p);
		else if (key_is(p, "dirty", &v))
			opt.dirty_bytes = parse_num(v, &p);
		else if (key_is(p, "rate", &v))
			opt.rate = parse_num(v, &p);
		else if (key_is(p, "xs", &v))
			opt.xs = (int)parse_num(v, &p);
		else if (key_is(p, "xs_gfn", &v))
			opt.xs_gfn = parse_num(v, &p);
		else if (key_is(p, "ticks", &v))
			opt.ticks = parse_num(v, &p);
		else if (key_is(p, "beat", &v))
			opt.beat_ms = parse_num(v, &p);
		while (*p && *p != ' ')
			p++;
	}
}

static uint64_t page_sum(const uint64_t *w)
{
	uint64_t h = 0xcbf29ce484222325ull;
	for (unsigned int i = 0; i < 512; i++)
		h = (h ^ w[i]) * 0x100000001b3ull;
	return h;
}

static void page_fill(uint64_t i)
{
	uint64_t *w = (uint64_t *)(pages + (i << 12));
	uint64_t x = seed ^ (i * 0x9e3779b97f4a7c15ull) ^ dirtied;
	for (unsigned int k = 0; k < 512; k++) {
		x ^= x << 13;
		x ^= x >> 7;
		x ^= x << 17;
		w[k] = x;
	}
	csum[i] = page_sum(w);
	seed = x;
}

static void page_check(uint64_t i)
{
	if (page_sum((const uint64_t *)(pages + (i << 12))) != csum[i]) {
		errors++;
		con_puts("CHECKSUM-ERROR page ");
		con_putu(i);
		con_puts("\n");
	}
}

static uint64_t ram_top(const struct hvm_start_info *si)
{
	const struct hvm_memmap_table_entry *m = (const void *)si->memmap_paddr;
	uint64_t top = 0;
	for (uint32_t i = 0; si->memmap_paddr && i < si->memmap_entries; i++)
		if (m[i].type == 1 && m[i].addr + m[i].size > top)
			top = m[i].addr + m[i].size;
	return top > (3ull << 30) ? (3ull << 30) : top;
}

static void ws_setup(const struct hvm_start_info *si)
{
	uint64_t base = ((uint64_t)_end + 0x1fffff) & ~0x1fffffull;
	uint64_t top = ram_top(si);
	npages = opt.dirty_bytes >> 12;
	if (!npages)
		return;
	uint64_t need = ((npages * 8 + 4095) & ~4095ull) + (npages << 12);
	if (base + need > top) {
		uint64_t avail = top > base ? top - base : 0;
		npages = avail / (4096 + 8) > 1 ? avail / (4096 + 8) - 1 : 0;
		con_puts("xstguest: working set clamped to ");
		con_putu(npages);
		con_puts(" pages\n");
	}
	csum = (uint64_t *)base;
	pages = (uint8_t *)(base + ((npages * 8 + 4095) & ~4095ull));
	for (uint64_t i = 0; i < npages; i++)
		page_fill(i);
}

/* Returns 1 once connected: name read, status written, watch set.  Retried by the
 * main loop until xstored answers and the toolstack has written our nodes. */
static int xs_start(void)
{
	char name[128];
	if (xs_read("name", name, sizeof(name)) < 0)
		return 0;
	xs_connected();
	con_puts("xstguest: name=");
	con_puts(name);
	con_puts("\n");
	/* a reply may take long on a loaded host (each request gives up after 1 s) */
	int tries = 0;
	while (xs_write("data/status", "running") < 0 && ++tries < 10)
		;
	if (tries == 10)
		con_puts("xstguest: xenstore write data/status failed\n");
	if (xs_watch("control/shutdown", "ctl") < 0)
		con_puts("xstguest: xenstore watch control/shutdown failed\n");
	return 1;
}

static void xs_check_shutdown(void)
{
	char v[64];
	if (xs_poll_event() <= 0)
		return;
	if (xs_read("control/shutdown", v, sizeof(v)) <= 0)
		return;
	unsigned int reason;
	if (v[0] == 'p' || v[0] == 'h') /* poweroff, halt */
		reason = 0;
	else if (v[0] == 'r') /* reboot */
		reason = 1;
	else
		return;
	xs_write("control/shutdown", "");
	xs_write("data/status", v);
	con_puts("xstguest: shutdown ");
	con_puts(v);
	con_puts("\n");
	poweroff(reason);
}

static uint64_t next_beat;

static void beat(void)
{
	uint64_t now;

	if (!opt.beat_ms || (now = now_ns()) < next_beat)
		return;
	con_puts(".\n");
	next_beat = now + opt.beat_ms * 1000000; /* no burst after a pause */
}

void user_main(struct hvm_start_info *si)
{
	con_puts("xstguest: boot\n");
	if (si->magic != 0x336ec578) {
		con_puts("xstguest: bad start_info magic\n");
		poweroff(3);
	}
	parse_cmdline((const char *)si->cmdline_paddr);
	ws_setup(si);
	int xs_up = 0;
	uint64_t xs_retry = 0;
	if (opt.xs)
		xs_init(opt.xs_gfn);
	con_puts("xstguest: ready pages=");
	con_putu(npages);
	con_puts("\n");

	uint64_t t0 = now_ns(), next_tick = t0 + opt.tick_ms * 1000000, rate_base = t0;
	uint64_t rate_done = 0, next = 0;
	next_beat = t0;
	for (;;) {
		uint64_t now = now_ns();
		beat();
		if (opt.rate && npages) {
			uint64_t want = (now - rate_base) / 1000 * opt.rate / 1000000;
			if (want > rate_done + opt.rate) /* after a pause: no catch-up burst */
				rate_done = want - opt.rate / 10;
			while (rate_done < want) {
				beat(); /* a long catch-up is progress too */
				page_check(next);
				page_fill(next);
				dirtied++;
				rate_done++;
				next = (next + 1) % npages;
			}
		}
		if (opt.tick_ms && now >= next_tick) {
			for (uint64_t i = 0; i < npages; i++) {
				if (i % 256 == 0)
					beat();
				page_check(i);
			}
			counter++;
			con_puts("COUNTER ");
			con_putu(counter);
			con_puts(" errors=");
			con_putu(errors);
			con_puts(" dirtied=");
			con_putu(dirtied);
			con_puts("\n");
			next_tick += opt.tick_ms * 1000000;
			if (next_tick < now)
				next_tick = now + opt.tick_ms * 1000000;
			if (opt.ticks && counter >= opt.ticks) {
				con_puts("xstguest: done\n");
				poweroff(0);
			}
		}
		if (opt.xs && xs_up)
			xs_check_shutdown();
		else if (opt.xs && now >= xs_retry) {
			xs_up = xs_start();
			xs_retry = now_ns() + 100000000;
		}
		uint64_t wake = opt.tick_ms ? next_tick : now + 1000000000;
		if (opt.rate && npages && wake > now + 1000000)
			wake = now + 1000000;
		if (opt.beat_ms && wake > next_beat)
			wake = next_beat;
		if (opt.xs && !xs_up && wake > xs_retry)
			wake = xs_retry;
		if (wake > now)
			sleep_ns(wake - now);
	}
}

/*
 * xst-guestd: the Linux test guest's xenstore agent (runs from the initramfs).
 *
 * It maps the xenstore ring page (gfn from "xs_gfn=" on /proc/cmdline) through /dev/mem,
 * kicks through /dev/port (the kick port is an ioeventfd on the host; user-mode port I/O
 * does not work on PVM, so the kernel does it for us), and shares the ring client with
 * the freestanding test guest (../xs.c).  It reads "name", writes data/status, watches
 * control/shutdown and on "poweroff"/"reboot" syncs and writes the Xen SHUTDOWN_* code to
 * the xst shutdown port.  Messages go to stdout (the console).
 */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include "tests/guests/user.h"

static int port_fd = -1;

void con_puts(const char *s)
{
	fputs(s, stdout);
	fflush(stdout);
}

uint64_t now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

void sleep_ns(uint64_t ns)
{
	struct timespec ts = { (time_t)(ns / 1000000000ull), (long)(ns % 1000000000ull) };
	nanosleep(&ts, NULL);
}

void port_out(uint16_t port, uint8_t v)
{
	if (pwrite(port_fd, &v, 1, port) != 1)
		perror("xst-guestd: /dev/port");
}

static uint64_t cmdline_gfn(void)
{
	char buf[4096];
	FILE *f = fopen("/proc/cmdline", "r");
	uint64_t gfn = XS_DEFAULT_GFN;
	if (f && fgets(buf, sizeof(buf), f)) {
		char *p = strstr(buf, "xs_gfn=");
		if (p)
			gfn = strtoull(p + 7, NULL, 0);
	}
	if (f)
		fclose(f);
	return gfn;
}

int main(void)
{
	char name[128], v[64];
	uint64_t gfn = cmdline_gfn();
	int mem = open("/dev/mem", O_RDWR | O_SYNC);
	port_fd = open("/dev/port", O_RDWR);
	if (mem < 0 || port_fd < 0) {
		perror("xst-guestd: open /dev/mem or /dev/port");
		return 1;
	}
	void *page = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, mem, (off_t)(gfn << 12));
	if (page == MAP_FAILED) {
		perror("xst-guestd: mmap ring");
		return 1;
	}
	xs_init_page(page);
	while (xs_read("name", name, sizeof(name)) < 0)
		sleep_ns(100000000);
	xs_connected();
	printf("xst-guestd: name=%s\n", name);
	fflush(stdout);
	xs_write("data/status", "running");
	xs_watch("control/shutdown", "ctl");
	for (;;) {
		if (xs_poll_event() > 0 && xs_read("control/shutdown", v, sizeof(v)) > 0) {
			unsigned int reason;
			if (!strcmp(v, "poweroff") || !strcmp(v, "halt"))
				reason = 0;
			else if (!strcmp(v, "reboot"))
				reason = 1;
			else
				continue;
			xs_write("control/shutdown", "");
			xs_write("data/status", v);
			printf("xst-guestd: shutdown %s\n", v);
			fflush(stdout);
			sync();
			port_out(PORT_XST_SHUTDOWN, (uint8_t)reason);
		}
		sleep_ns(20000000);
	}
}

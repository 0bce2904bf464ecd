/* Trace file (-T, XS_CONTROL log/logfile) and error log.
 *
 * Like Xen's -T: one line per message in and out, with the connection, a timestamp,
 * the message type and its payload (NULs shown as blanks), plus connection
 * creation/destruction.  Errors go to stderr (and the trace file when open). */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "store/xstored.h"

static FILE *trace_fp;

const char *msg_name(uint32_t type);

int trace_open(const char *path)
{
	FILE *f = fopen(path, "a");

	if (!f)
		return -errno;
	setvbuf(f, NULL, _IOFBF, 1 << 16); /* flushed once per loop iteration */
	if (trace_fp)
		fclose(trace_fp);
	trace_fp = f;
	return 0;
}

void trace_close(void)
{
	if (trace_fp)
		fclose(trace_fp);
	trace_fp = NULL;
}

void trace_flush(void)
{
	if (trace_fp)
		fflush(trace_fp);
}

bool trace_on(void)
{
	return trace_fp != NULL;
}

static void stamp(char *buf, size_t cap)
{
	struct timespec ts;
	struct tm tm;

	clock_gettime(CLOCK_REALTIME, &ts);
	gmtime_r(&ts.tv_sec, &tm);
	snprintf(buf, cap, "%04d%02d%02d %02d:%02d:%02d.%03d", tm.tm_year + 1900, tm.tm_mon + 1,
		 tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, (int)(ts.tv_nsec / 1000000) % 1000);
}

void trace_msg(const char *dir, const struct conn *c, const struct xs_hdr *h, const char *payload)
{
	char ts[96];
	const char *name = h->type == XS_ERROR	       ? "ERROR"
			   : h->type == XS_WATCH_EVENT ? "WATCH_EVENT"
						       : msg_name(h->type);

	if (!trace_fp)
		return;
	stamp(ts, sizeof(ts));
	fprintf(trace_fp, "%s %u %s %s (", dir, c->id, ts, name);
	for (uint32_t i = 0; i < h->len && i < 256; i++) {
		unsigned char ch = (unsigned char)payload[i];
		fputc(ch == 0 ? ' ' : (ch < 32 || ch > 126) ? '.' : ch, trace_fp);
	}
	fputs(h->len > 256 ? "...)\n" : ")\n", trace_fp);
}

void trace_printf(const char *fmt, ...)
{
	va_list ap;

	if (!trace_fp)
		return;
	va_start(ap, fmt);
	vfprintf(trace_fp, fmt, ap);
	va_end(ap);
}

void log_err(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	fputs("xstored: ", stderr);
	vfprintf(stderr, fmt, ap);
	fputc('\n', stderr);
	va_end(ap);
	if (trace_fp) {
		va_start(ap, fmt);
		fputs("ERROR: ", trace_fp);
		vfprintf(trace_fp, fmt, ap);
		fputc('\n', trace_fp);
		va_end(ap);
	}
}

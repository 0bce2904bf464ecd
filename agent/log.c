/* The agent log: lines with a UTC timestamp, written to the log file (or stderr with
 * --no-fork and no --log) and kept in memory (the last AGENT_LOG_KEEP bytes) for
 * `xst dmesg`. */
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <talloc.h>

#include "agent/agent.h"

int agent_log_init(struct agent *a)
{
	a->logbuf = talloc_size(a, AGENT_LOG_KEEP);
	if (!a->logbuf)
		return -ENOMEM;
	a->log_head = a->log_len = 0;
	a->log_fd = STDERR_FILENO;
	if (a->log_path) {
		int fd = open(a->log_path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0640);

		if (fd < 0)
			return -errno;
		a->log_fd = fd;
	}
	return 0;
}

static void keep(struct agent *a, const char *s, size_t n)
{
	size_t i;

	for (i = 0; i < n; i++) {
		a->logbuf[(a->log_head + a->log_len) % AGENT_LOG_KEEP] = s[i];
		if (a->log_len < AGENT_LOG_KEEP)
			a->log_len++;
		else
			a->log_head = (a->log_head + 1) % AGENT_LOG_KEEP;
	}
}

double agent_mono_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

void agent_log(struct agent *a, const char *fmt, ...)
{
	char line[1024];
	struct timespec ts;
	struct tm tm;
	va_list ap;
	int n, m;

	clock_gettime(CLOCK_REALTIME, &ts);
	gmtime_r(&ts.tv_sec, &tm);
	n = snprintf(line, sizeof(line), "(xst) [%04d-%02d-%02d %02d:%02d:%02d.%03ld] ",
		     tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
		     ts.tv_nsec / 1000000);
	va_start(ap, fmt);
	m = vsnprintf(line + n, sizeof(line) - n - 1, fmt, ap);
	va_end(ap);
	if (m < 0)
		m = 0;
	n += m;
	if (n > (int)sizeof(line) - 2)
		n = sizeof(line) - 2;
	line[n++] = '\n';
	if (a->logbuf)
		keep(a, line, n);
	if (a->log_fd >= 0 && write(a->log_fd, line, n) < 0) {
		/* Nowhere else to report it; the in-memory copy still has the line. */
	}
}

char *agent_log_text(struct agent *a, void *ctx)
{
	char *s = talloc_size(ctx, a->log_len + 1);
	size_t i;

	if (!s)
		return NULL;
	for (i = 0; i < a->log_len; i++)
		s[i] = a->logbuf[(a->log_head + i) % AGENT_LOG_KEEP];
	s[a->log_len] = '\0';
	return s;
}

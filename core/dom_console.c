/*
 * Guest console of the domain process: a bounded log of the last DOM_CONSOLE_LOG
 * bytes and a unix stream socket serving it.
 *
 * Output arrives from the plugin on guest threads (console_output): it is appended to
 * the log and written, non-blocking, to every client; a client whose socket is full
 * is dropped, so a client that does not read can never stall the guest.  The console
 * thread accepts clients (at most DOM_CONSOLE_CLIENTS; a new one first gets the log)
 * and passes what they send to the guest's console input.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdatomic.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <talloc.h>

#include "core/dom.h"

struct console {
	struct dom *dom;
	char *path;
	int listen_fd;
	int wake_fd;   /* eventfd: console_close wakes the thread */
	pthread_t thread;
	bool started;

	pthread_mutex_t lock; /* log and clients */
	char log[DOM_CONSOLE_LOG];
	size_t head;   /* next write position */
	size_t used;
	/* A client is closed only by the console thread (which polls the fds); a guest
	 * thread that finds it stuck shuts it down and marks it dead. */
	int clients[DOM_CONSOLE_CLIENTS];
	bool dead[DOM_CONSOLE_CLIENTS];
};

/* Any thread: stop writing to client i and make the console thread reap it. */
static void client_kill_locked(struct console *c, unsigned int i)
{
	if (!c->dead[i])
		shutdown(c->clients[i], SHUT_RDWR);
	c->dead[i] = true;
}

/* Console thread only. */
static void client_close_locked(struct console *c, unsigned int i)
{
	close(c->clients[i]);
	c->clients[i] = -1;
	c->dead[i] = false;
}

/* Write all of buf or report failure: the socket is non-blocking. */
static bool write_all(int fd, const char *buf, size_t len)
{
	while (len) {
		ssize_t n = send(fd, buf, len, MSG_NOSIGNAL | MSG_DONTWAIT);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return false;
		buf += n;
		len -= n;
	}
	return true;
}

void console_output(void *opaque, const char *buf, size_t len)
{
	struct console *c = opaque;
	size_t i, off, chunk;

	pthread_mutex_lock(&c->lock);
	/* append to the ring, keeping only the last DOM_CONSOLE_LOG bytes */
	if (len > DOM_CONSOLE_LOG) {
		buf += len - DOM_CONSOLE_LOG;
		len = DOM_CONSOLE_LOG;
	}
	for (off = 0; off < len; off += chunk) {
		chunk = DOM_CONSOLE_LOG - c->head;
		if (chunk > len - off)
			chunk = len - off;
		memcpy(c->log + c->head, buf + off, chunk);
		c->head = (c->head + chunk) % DOM_CONSOLE_LOG;
	}
	c->used = c->used + len > DOM_CONSOLE_LOG ? DOM_CONSOLE_LOG : c->used + len;
	for (i = 0; i < DOM_CONSOLE_CLIENTS; i++)
		if (c->clients[i] >= 0 && !c->dead[i] && !write_all(c->clients[i], buf, len))
			client_kill_locked(c, i);
	pthread_mutex_unlock(&c->lock);
}

static size_t log_copy_locked(struct console *c, char *out)
{
	size_t start = (c->head + DOM_CONSOLE_LOG - c->used) % DOM_CONSOLE_LOG;
	size_t first = DOM_CONSOLE_LOG - start;

	if (first > c->used)
		first = c->used;
	memcpy(out, c->log + start, first);
	memcpy(out + first, c->log, c->used - first);
	return c->used;
}

int console_log(struct console *c, void *ctx, uint8_t **buf, size_t *len)
{
	char *out = talloc_size(ctx, DOM_CONSOLE_LOG);

	if (!out)
		return -ENOMEM;
	pthread_mutex_lock(&c->lock);
	*len = log_copy_locked(c, out);
	pthread_mutex_unlock(&c->lock);
	*buf = (uint8_t *)out;
	return 0;
}

static void client_add(struct console *c, int fd)
{
	static char hist[DOM_CONSOLE_LOG];
	unsigned int i;
	size_t n;
	int sz = 2 * DOM_CONSOLE_LOG;

	setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &sz, sizeof(sz));
	pthread_mutex_lock(&c->lock);
	for (i = 0; i < DOM_CONSOLE_CLIENTS && c->clients[i] >= 0; i++)
		;
	if (i == DOM_CONSOLE_CLIENTS) {
		pthread_mutex_unlock(&c->lock);
		write_all(fd, "xst-domain: too many console clients\r\n", 38);
		close(fd);
		return;
	}
	n = log_copy_locked(c, hist);
	c->clients[i] = fd;
	/* A client that already went (`echo cmd | xst console`) still has its input read:
	 * it stays until the console thread reads its end, but is written no more. */
	c->dead[i] = !write_all(fd, hist, n);
	pthread_mutex_unlock(&c->lock);
}

static void *console_thread(void *arg)
{
	struct console *c = arg;
	struct pollfd pfd[2 + DOM_CONSOLE_CLIENTS];
	int fds[DOM_CONSOLE_CLIENTS];
	char buf[1024];
	unsigned int i, n;

	for (;;) {
		pfd[0] = (struct pollfd){.fd = c->wake_fd, .events = POLLIN};
		pfd[1] = (struct pollfd){.fd = c->listen_fd, .events = POLLIN};
		pthread_mutex_lock(&c->lock);
		for (i = 0, n = 0; i < DOM_CONSOLE_CLIENTS; i++) {
			fds[i] = c->clients[i];
			pfd[2 + i] = (struct pollfd){.fd = fds[i], .events = POLLIN};
		}
		pthread_mutex_unlock(&c->lock);
		if (poll(pfd, 2 + DOM_CONSOLE_CLIENTS, -1) < 0) {
			if (errno == EINTR)
				continue;
			dom_log("console: poll: %s", strerror(errno));
			break;
		}
		if (pfd[0].revents)
			break;
		if (pfd[1].revents & POLLIN) {
			int fd = accept4(c->listen_fd, NULL, NULL, SOCK_CLOEXEC);
			if (fd >= 0)
				client_add(c, fd);
		}
		for (i = 0; i < DOM_CONSOLE_CLIENTS; i++) {
			ssize_t r;
			struct xst_vm *vm;

			if (fds[i] < 0 || !pfd[2 + i].revents)
				continue;
			r = recv(fds[i], buf, sizeof(buf), MSG_DONTWAIT);
			if (r < 0 && (errno == EAGAIN || errno == EINTR))
				continue;
			if (r <= 0) {
				pthread_mutex_lock(&c->lock);
				client_close_locked(c, i);
				pthread_mutex_unlock(&c->lock);
				continue;
			}
			vm = __atomic_load_n(&c->dom->vm, __ATOMIC_ACQUIRE);
			if (vm)
				xst_vm_console_write(vm, buf, r);
		}
		(void)n;
	}
	return NULL;
}

static int console_destructor(struct console *c)
{
	unsigned int i;

	if (c->started) {
		uint64_t one = 1;
		if (write(c->wake_fd, &one, sizeof(one)) < 0)
			dom_log("console: wake: %s", strerror(errno));
		pthread_join(c->thread, NULL);
	}
	for (i = 0; i < DOM_CONSOLE_CLIENTS; i++)
		if (c->clients[i] >= 0)
			close(c->clients[i]);
	if (c->listen_fd >= 0) {
		close(c->listen_fd);
		unlink(c->path);
	}
	if (c->wake_fd >= 0)
		close(c->wake_fd);
	pthread_mutex_destroy(&c->lock);
	return 0;
}

int console_open(struct dom *d, const char *path, struct console **out)
{
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	struct console *c;
	unsigned int i;
	int ret;

	*out = NULL;
	if (strlen(path) >= sizeof(sa.sun_path))
		return -ENAMETOOLONG;
	c = talloc_zero(d, struct console);
	if (!c)
		return -ENOMEM;
	c->dom = d;
	c->listen_fd = c->wake_fd = -1;
	for (i = 0; i < DOM_CONSOLE_CLIENTS; i++)
		c->clients[i] = -1;
	pthread_mutex_init(&c->lock, NULL);
	talloc_set_destructor(c, console_destructor);
	c->path = talloc_strdup(c, path);
	if (!c->path) {
		ret = -ENOMEM;
		goto out;
	}
	c->wake_fd = eventfd(0, EFD_CLOEXEC);
	if (c->wake_fd < 0) {
		ret = -errno;
		goto out;
	}
	strcpy(sa.sun_path, path);
	unlink(path);
	c->listen_fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (c->listen_fd < 0) {
		ret = -errno;
		goto out;
	}
	if (bind(c->listen_fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 ||
	    listen(c->listen_fd, 8) < 0) {
		ret = -errno;
		close(c->listen_fd);
		c->listen_fd = -1;
		goto out;
	}
	ret = -pthread_create(&c->thread, NULL, console_thread, c);
	if (ret < 0)
		goto out;
	c->started = true;
	*out = c;
	return 0;
out:
	talloc_free(c);
	return ret;
}

int console_rename(struct console *c, const char *path)
{
	char *p = talloc_strdup(c, path);

	if (!p)
		return -ENOMEM;
	if (rename(c->path, path) < 0) {
		int ret = -errno;

		talloc_free(p);
		return ret;
	}
	talloc_free(c->path);
	c->path = p;
	return 0;
}

void console_close(struct console *c)
{
	talloc_free(c);
}

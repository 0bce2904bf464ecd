/*
 * A domain's RAM mapped into the agent, for save, restore and migration: the pages go
 * between guest memory and the stream with one copy, not through the domain process's
 * control socket (Xen's toolstack maps guest pages the same way to save them).
 *
 * The domain process names its RAM memfd in Info.mem_fd (the core's vm_mem_fd: page gfn
 * at byte gfn * 4096); the agent opens it again through /proc/<pid>/fd/<n>, which also
 * works for domains it re-adopted after a restart.  The file is checked to be a memfd
 * of at least the guest's size.  Holes of the file were never written by the guest:
 * adom_ram_next_data() finds the next page that may hold data with lseek(SEEK_DATA).
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <talloc.h>

#include "agent/agent.h"

static int ram_free(struct adom_ram *r)
{
	if (r->mem && r->mem != MAP_FAILED)
		munmap(r->mem, r->len);
	if (r->fd >= 0)
		close(r->fd);
	return 0;
}

int adom_ram_map(struct adom *d, bool writable, void *ctx, struct adom_ram **out)
{
	struct adom_ram *r;
	Xstdom__Info *info;
	char path[64], link[64];
	struct stat st;
	ssize_t n;
	void *tmp = talloc_new(ctx);
	int rv;

	if (!tmp)
		return -ENOMEM;
	rv = adom_info(d, tmp, &info);
	if (rv < 0)
		goto out;
	rv = -EOPNOTSUPP;
	if (!info->has_mem_fd || info->mem_fd < 0 || !info->pid)
		goto out;
	snprintf(path, sizeof(path), "/proc/%u/fd/%d", info->pid, info->mem_fd);
	n = readlink(path, link, sizeof(link) - 1);
	if (n < 0) {
		rv = -errno;
		goto out;
	}
	link[n] = '\0';
	if (strncmp(link, "/memfd:", 7) != 0) {
		rv = -EINVAL; /* not guest RAM */
		goto out;
	}
	r = talloc_zero(ctx, struct adom_ram);
	if (!r) {
		rv = -ENOMEM;
		goto out;
	}
	r->fd = open(path, (writable ? O_RDWR : O_RDONLY) | O_CLOEXEC);
	r->mem = MAP_FAILED;
	talloc_set_destructor(r, ram_free);
	if (r->fd < 0 || fstat(r->fd, &st) < 0) {
		rv = -errno;
		talloc_free(r);
		goto out;
	}
	r->npages = info->mem_max_kib / 4;
	r->len = (size_t)r->npages * 4096;
	if ((uint64_t)st.st_size < r->len || r->len == 0) {
		rv = -EINVAL;
		talloc_free(r);
		goto out;
	}
	r->mem = mmap(NULL, r->len, writable ? PROT_READ | PROT_WRITE : PROT_READ, MAP_SHARED,
		      r->fd, 0);
	if (r->mem == MAP_FAILED) {
		rv = -errno;
		talloc_free(r);
		goto out;
	}
	*out = r;
	rv = 0;
out:
	talloc_free(tmp);
	return rv;
}

uint64_t adom_ram_next_data(struct adom_ram *r, uint64_t gfn, uint64_t end, uint64_t *data_end)
{
	off_t dpos, hpos;

	*data_end = end;
	dpos = lseek(r->fd, (off_t)(gfn * 4096), SEEK_DATA);
	if (dpos < 0)
		return errno == ENXIO ? end : gfn; /* ENXIO: only holes from there on */
	if ((uint64_t)dpos / 4096 >= end)
		return end;
	hpos = lseek(r->fd, dpos, SEEK_HOLE);
	if (hpos > dpos && (uint64_t)(hpos + 4095) / 4096 < end)
		*data_end = (uint64_t)(hpos + 4095) / 4096;
	return (uint64_t)dpos / 4096;
}

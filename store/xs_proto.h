/* Xenstore wire protocol constants shared by xstored and xs_client.
 *
 * Values are facts of Xen's public xs_wire.h (4.17); see docs and
 * /work/shared/specs/xenstore.md §1-§3.  Everything is host byte order. */
#ifndef XST_STORE_XS_PROTO_H
#define XST_STORE_XS_PROTO_H

#include <errno.h>
#include <stdint.h>
#include <string.h>

enum xs_type {
	XS_CONTROL = 0,
	XS_DIRECTORY = 1,
	XS_READ = 2,
	XS_GET_PERMS = 3,
	XS_WATCH = 4,
	XS_UNWATCH = 5,
	XS_TRANSACTION_START = 6,
	XS_TRANSACTION_END = 7,
	XS_INTRODUCE = 8,
	XS_RELEASE = 9,
	XS_GET_DOMAIN_PATH = 10,
	XS_WRITE = 11,
	XS_MKDIR = 12,
	XS_RM = 13,
	XS_SET_PERMS = 14,
	XS_WATCH_EVENT = 15,
	XS_ERROR = 16,
	XS_IS_DOMAIN_INTRODUCED = 17,
	XS_RESUME = 18,
	XS_SET_TARGET = 19,
	XS_RESET_WATCHES = 21,
	XS_DIRECTORY_PART = 22,
	XS_TYPE_COUNT = 23, /* 4.17: types >= this answer ENOSYS */
};

struct xs_hdr {
	uint32_t type;
	uint32_t req_id;
	uint32_t tx_id;
	uint32_t len;
};

#define XS_PAYLOAD_MAX 4096
#define XS_ABS_PATH_MAX 3072
#define XS_REL_PATH_MAX 2048
#define XS_RING_SIZE 1024
#define XS_DOMID_SELF 32752u

/* The ring page (struct xenstore_domain_interface), spec §8.1. */
struct xs_ring {
	char req[XS_RING_SIZE];
	char rsp[XS_RING_SIZE];
	volatile uint32_t req_cons, req_prod;
	volatile uint32_t rsp_cons, rsp_prod;
	volatile uint32_t server_features;
	volatile uint32_t connection;
	volatile uint32_t error;
};

/* Error names in xs_wire.h's table order. */
static const struct {
	int err;
	const char *name;
} xs_errors[] = {
    {EINVAL, "EINVAL"},	      {EACCES, "EACCES"},   {EEXIST, "EEXIST"}, {EISDIR, "EISDIR"},
    {ENOENT, "ENOENT"},	      {ENOMEM, "ENOMEM"},   {ENOSPC, "ENOSPC"}, {EIO, "EIO"},
    {ENOTEMPTY, "ENOTEMPTY"}, {ENOSYS, "ENOSYS"},   {EROFS, "EROFS"},	{EBUSY, "EBUSY"},
    {EAGAIN, "EAGAIN"},	      {EISCONN, "EISCONN"}, {E2BIG, "E2BIG"},	{EPERM, "EPERM"},
};

/* Wire name of a positive errno; anything unknown is sent as EINVAL. */
static inline const char *xs_error_name(int err)
{
	for (unsigned int i = 0; i < sizeof(xs_errors) / sizeof(xs_errors[0]); i++)
		if (xs_errors[i].err == err)
			return xs_errors[i].name;
	return "EINVAL";
}

/* Positive errno of a wire name (len bytes, NUL optional); EINVAL if unknown. */
static inline int xs_error_parse(const char *s, size_t len)
{
	while (len > 0 && s[len - 1] == '\0')
		len--;
	for (unsigned int i = 0; i < sizeof(xs_errors) / sizeof(xs_errors[0]); i++)
		if (strlen(xs_errors[i].name) == len && memcmp(xs_errors[i].name, s, len) == 0)
			return xs_errors[i].err;
	return EINVAL;
}

#endif

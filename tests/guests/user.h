/* xstguest user part: console, clock, sleep and the xenstore ring client. */
#ifndef XSTGUEST_USER_H
#define XSTGUEST_USER_H

#include "tests/guests/guest.h"

void con_puts(const char *s);
void con_putu(uint64_t v);
uint64_t now_ns(void);
void sleep_ns(uint64_t ns); /* returns early on a xenstore notification */
void poweroff(unsigned int reason);
void port_out(uint16_t port, uint8_t v);

/* xenstore over the shared ring (wire format of xs_wire.h) */
void xs_init(uint64_t gfn);
void xs_init_page(void *page);
void xs_connected(void); /* longer timeouts from now on */
int xs_read(const char *path, char *val, size_t len); /* NUL-terminates; -1 on error */
int xs_write(const char *path, const char *val);
int xs_watch(const char *path, const char *token);
/* Processes any complete incoming message; returns 1 when a watch event arrived. */
int xs_poll_event(void);

#endif

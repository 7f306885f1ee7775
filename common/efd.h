/* efd: an eventfd used as a wake-up between threads. Header-only, so the
 * engines that are fuzzed alone (h2.c) need nothing more linked. */
#ifndef VIGIL_EFD_H
#define VIGIL_EFD_H

#include <stdbool.h>
#include <stdint.h>
#include <unistd.h>

/* Makes fd readable (fd < 0: nothing). A full counter cannot happen at
 * our rates, and would still leave fd readable: the error is ignored. */
static inline void efd_signal(int fd)
{
	uint64_t one = 1;
	if (fd >= 0 && write(fd, &one, sizeof(one)) < 0)
		return;
}

/* Clears fd (non-blocking). Returns whether it had been signalled. */
static inline bool efd_drain(int fd)
{
	uint64_t v;
	return fd >= 0 && read(fd, &v, sizeof(v)) == (ssize_t)sizeof(v);
}

#endif

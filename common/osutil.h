/* osutil: two small things several modules need: writing a formatted error
 * into a caller's buffer, and creating a directory path. */
#ifndef VIGIL_OSUTIL_H
#define VIGIL_OSUTIL_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

/* snprintf into err[errlen]; does nothing when err is NULL or errlen 0. */
void osutil_errf(char *err, size_t errlen, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/* mkdir -p: parents created with parent_mode, the last component with
 * mode; existing directories are fine. 0 or -errno. */
int osutil_mkdir_p(const char *path, mode_t parent_mode, mode_t mode);

struct timespec;

/* The CLOCK_REALTIME time ms from now: a deadline for
 * pthread_cond_timedwait (condition variables wait on that clock unless
 * told otherwise) and pthread_timedjoin_np. */
void osutil_deadline_ms(struct timespec *ts, uint64_t ms);

struct sockaddr;

/* A non-blocking close-on-exec TCP listener at sa (SO_REUSEADDR; IPv6
 * only for AF_INET6). Returns the fd, or -1 with "cannot listen on ADDR
 * port N: reason" in err (errno kept). */
int osutil_listen(const struct sockaddr *sa, unsigned len, char *err, size_t errlen);

#endif

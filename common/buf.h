/* buf: the growable byte buffer every module shares. Zero-initialise;
 * data is NUL-terminated after any successful append (the NUL is not
 * counted in len); buf_free releases it. A buffer that holds text a user
 * sent (prompts, answers, tokens' originals) sets secret before its first
 * append: it then grows by copy-and-wipe instead of realloc and is wiped on
 * buf_free, so no stale copy is left in freed memory. */
#ifndef VIGIL_BUF_H
#define VIGIL_BUF_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>

struct buf {
	char *data;
	size_t len;
	size_t cap;
	bool secret;
};

/* Room for extra more bytes (and the NUL). Returns 0 or -ENOMEM. */
int buf_reserve(struct buf *b, size_t extra);
/* Appends p[0..n). Returns 0 or -ENOMEM (b unchanged). */
int buf_append(struct buf *b, const void *p, size_t n);
/* Appends printf-formatted text. Returns 0, -ENOMEM or -EINVAL (a bad
 * format); b is unchanged on error. */
int buf_printf(struct buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
int buf_vprintf(struct buf *b, const char *fmt, va_list ap) __attribute__((format(printf, 2, 0)));
void buf_free(struct buf *b);

/* For buffers of what a user sent kept outside a struct buf: moves the
 * first used bytes of p (a block of cap bytes, or NULL) to a new block of
 * ncap bytes, then wipes and frees p. NULL on failure (p unchanged). */
void *secret_realloc(void *p, size_t used, size_t cap, size_t ncap);
/* Wipes the cap bytes of p, then frees it (p may be NULL). */
void secret_free(void *p, size_t cap);

/* For arrays of any element: makes room for element n of the array at
 * *(T **)arrp holding *cap elements of elem bytes, doubling it (16 at
 * first). Returns 0 or -ENOMEM (the array unchanged). */
int buf_grow_array(void *arrp, size_t *cap, size_t n, size_t elem);

#endif

/* buf: see buf.h. */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "buf.h"

int buf_reserve(struct buf *b, size_t extra)
{
	if (extra >= SIZE_MAX - b->len)   /* len + extra and its NUL must fit */
		return -ENOMEM;
	if (b->len + extra + 1 <= b->cap)
		return 0;
	size_t cap = b->cap ? b->cap : 256;
	while (cap < b->len + extra + 1) {
		if (cap > SIZE_MAX / 2)
			return -ENOMEM;
		cap *= 2;
	}
	char *d = b->secret ? secret_realloc(b->data, b->len, b->cap, cap) : realloc(b->data, cap);
	if (!d)
		return -ENOMEM;
	if (b->secret)
		d[b->len] = '\0';
	b->data = d;
	b->cap = cap;
	return 0;
}

int buf_append(struct buf *b, const void *p, size_t n)
{
	int rc = buf_reserve(b, n);
	if (rc)
		return rc;
	if (n)
		memcpy(b->data + b->len, p, n);
	b->len += n;
	b->data[b->len] = '\0';
	return 0;
}

int buf_vprintf(struct buf *b, const char *fmt, va_list ap)
{
	va_list again;
	size_t room = b->cap > b->len ? b->cap - b->len : 0;

	va_copy(again, ap);
	int n = vsnprintf(room ? b->data + b->len : NULL, room, fmt, ap);
	if (n < 0) {
		va_end(again);
		if (room)
			b->data[b->len] = '\0';
		return -EINVAL;
	}
	if ((size_t)n >= room) {
		int rc = buf_reserve(b, (size_t)n);
		if (rc) {
			va_end(again);
			if (room)
				b->data[b->len] = '\0';
			return rc;
		}
		vsnprintf(b->data + b->len, (size_t)n + 1, fmt, again);
	}
	va_end(again);
	b->len += (size_t)n;
	return 0;
}

int buf_printf(struct buf *b, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	int rc = buf_vprintf(b, fmt, ap);
	va_end(ap);
	return rc;
}

void buf_free(struct buf *b)
{
	if (!b)
		return;
	if (b->secret)
		secret_free(b->data, b->cap);
	else
		free(b->data);
	b->data = NULL;
	b->len = b->cap = 0;
}

void *secret_realloc(void *p, size_t used, size_t cap, size_t ncap)
{
	char *d = malloc(ncap ? ncap : 1);
	if (!d)
		return NULL;
	if (p) {
		memcpy(d, p, used < ncap ? used : ncap);
		secret_free(p, cap);
	}
	return d;
}

void secret_free(void *p, size_t cap)
{
	if (p)
		explicit_bzero(p, cap);
	free(p);
}

int buf_grow_array(void *arrp, size_t *cap, size_t n, size_t elem)
{
	void *arr;
	size_t nc = *cap ? *cap : 16;

	if (n < *cap)
		return 0;
	while (nc <= n) {
		if (nc > SIZE_MAX / 2)
			return -ENOMEM;
		nc *= 2;
	}
	if (nc > SIZE_MAX / elem)
		return -ENOMEM;
	memcpy(&arr, arrp, sizeof(arr));
	if (!(arr = realloc(arr, nc * elem)))
		return -ENOMEM;
	memcpy(arrp, &arr, sizeof(arr));
	*cap = nc;
	return 0;
}

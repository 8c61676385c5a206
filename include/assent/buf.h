/*
 * buf: a growing byte buffer, reused from one message to the next so
 * that the hot path allocates nothing once it is big enough. render and
 * mime write into it.
 *
 * Memory: the buffer owns data; buf_free() releases it. data is
 * NUL-terminated after every append (len excludes the NUL), or NULL
 * while nothing was ever written. Allocation never fails (xmalloc.h).
 */
#ifndef ASSENT_BUF_H
#define ASSENT_BUF_H

#include <stddef.h>

struct buf {
	char *data;
	size_t len;
	size_t cap;
};

void buf_init(struct buf *b);
void buf_free(struct buf *b);
/* Empty the buffer, keeping its memory. */
void buf_reset(struct buf *b);
/* Room for n more bytes and a NUL. */
void buf_reserve(struct buf *b, size_t n);
void buf_add(struct buf *b, const char *s, size_t n);
void buf_add_str(struct buf *b, const char *s);

#endif

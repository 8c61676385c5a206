/*
 * xmalloc: allocation that succeeds or does not return.
 *
 * Each function aborts the process with a message on allocation
 * failure, so callers never test for NULL. The caller owns and frees
 * every returned pointer with free().
 */
#ifndef ASSENT_XMALLOC_H
#define ASSENT_XMALLOC_H

#include <stddef.h>

void *xmalloc(size_t size);
void *xcalloc(size_t nmemb, size_t size);
void *xreallocarray(void *ptr, size_t nmemb, size_t size);
char *xstrdup(const char *s);
char *xstrndup(const char *s, size_t n);
char *xasprintf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

#endif

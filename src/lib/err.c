/* err: fill the caller's error value; see include/assent/err.h */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "assent/err.h"

int
err_set(struct assent_err *err, int code, const char *fmt, ...)
{
	va_list ap;

	if (err == NULL)
		return -1;
	err->code = code;
	va_start(ap, fmt);
	vsnprintf(err->msg, sizeof(err->msg), fmt, ap);
	va_end(ap);
	return -1;
}

int
err_prefix(struct assent_err *err, const char *fmt, ...)
{
	char prefix[256];
	size_t plen, room;
	va_list ap;

	if (err == NULL)
		return -1;
	va_start(ap, fmt);
	vsnprintf(prefix, sizeof(prefix), fmt, ap);
	va_end(ap);
	plen = strlen(prefix);
	room = sizeof(err->msg) - plen - 3;     /* ": " and the NUL */
	err->msg[room] = '\0';                 /* the old text may shrink */
	memmove(err->msg + plen + 2, err->msg, strlen(err->msg) + 1);
	memcpy(err->msg, prefix, plen);
	memcpy(err->msg + plen, ": ", 2);
	return -1;
}

void
err_clear(struct assent_err *err)
{
	if (err == NULL)
		return;
	err->code = 0;
	err->msg[0] = '\0';
}

/*
 * err: the one error idiom of assent.
 *
 * A function that can fail for an outside reason (bad input, a database
 * that is down, a file that is missing) returns 0 on success and -1 on
 * failure, and fills the caller's struct assent_err with an exit code
 * from <sysexits.h> and a one-line message naming the problem. It does
 * not also log: the caller decides whether to print, log or recover.
 *
 * Memory: struct assent_err is a plain value with an inline buffer; the
 * caller owns it (usually on the stack). err may be NULL to ignore.
 */
#ifndef ASSENT_ERR_H
#define ASSENT_ERR_H

#include <sysexits.h>

#define ASSENT_ERR_MSG_MAX 1024

struct assent_err {
	int  code;                      /* EX_USAGE, EX_DATAERR, ... */
	char msg[ASSENT_ERR_MSG_MAX];
};

/* Fill err (if not NULL) and return -1, so callers can write
 * "return err_set(err, EX_DATAERR, "...", ...);". */
int err_set(struct assent_err *err, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Prefix an existing message: "context: old message". Returns -1. */
int err_prefix(struct assent_err *err, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* Reset to "no error" (code 0, empty message). */
void err_clear(struct assent_err *err);

#endif

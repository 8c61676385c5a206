/*
 * inbound: the strict check of a message's header section that
 * `assent inbound` makes before bounce.h parses the message: a header
 * section that is not well formed is refused naming the line (what the
 * message is, and its VERP token, is bounce.h's). This module only
 * reads: it touches no database, so that the fuzzer can run it alone.
 *
 * Reading: the header section only (unfolded; at most INBOUND_HEADER_MAX
 * bytes, a longer one is refused), then the rest is read and dropped so
 * that the MTA's pipe is not cut. Bytes are not trusted: NUL, bare CR
 * and header lines without a colon are refused with the line number.
 *
 * Memory: struct inbound_headers holds inline buffers, the caller's.
 */
#ifndef ASSENT_INBOUND_H
#define ASSENT_INBOUND_H

#include <stdbool.h>
#include <stdio.h>

#include "assent/err.h"

#define INBOUND_HEADER_MAX  (256 * 1024)
#define INBOUND_VALUE_MAX   1000
#define INBOUND_LINE_MAX    (64 * 1024)

struct inbound_headers {
	char delivered_to[INBOUND_VALUE_MAX + 1];
	char x_original_to[INBOUND_VALUE_MAX + 1];
	char to[INBOUND_VALUE_MAX + 1];
	unsigned long lines;            /* header lines read */
};

/* Read the header section of the message on in (and drain the rest).
 * EX_DATAERR naming the line for a malformed one; EX_IOERR when in
 * fails. */
int inbound_read_headers(FILE *in, struct inbound_headers *h,
    struct assent_err *err);

#endif

/*
 * inbound: mail that comes back to the bounce domain, one message at a
 * time as an MTA's pipe transport hands it over (`assent inbound`).
 *
 * What it understands today: the mailto unsubscribe of List-Unsubscribe
 * (RFC 2369), sent to u-TOKEN@BOUNCE_DOMAIN, where TOKEN is the compact
 * unsubscribe token of the delivery (token.h); optout_mailto() acts on
 * it. This module only reads: it touches no database, so that the
 * fuzzer can run it alone.
 *
 * The recipient is the one the MTA gives (`--recipient`, Postfix's
 * ${recipient}), else the message's first Delivered-To, X-Original-To
 * or To header, in that order.
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

#include "assent/addr.h"
#include "assent/err.h"
#include "assent/token.h"

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

/* The recipient to act for: given (may be NULL or ""), else the first of
 * Delivered-To, X-Original-To, To; "" when none. */
const char *inbound_recipient(const char *given, const struct inbound_headers *h);

/* If address (an addr-spec, or "Name <addr-spec>") is PREFIX TOKEN @
 * domain, ignoring case, copy TOKEN (lower case) into token_r and
 * return true. */
bool inbound_token_of(const char *address, const char *prefix,
    const char *domain, char token_r[TOKEN_COMPACT_TEXT_SIZE]);

#endif

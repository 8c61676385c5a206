/*
 * addr: validate and normalise an email address, the one gate every
 * path that takes an address goes through (CLI, import, web form,
 * suppression, bounces).
 *
 * Accepted: "local@domain" with a dot-atom local part (RFC 5322 atext
 * and dots, no leading, trailing or double dot) of at most 64 octets,
 * a domain of at most 255 octets (as A-label) made of LDH labels of at
 * most 63 octets, at least two labels, and a whole address of at most
 * 254 octets. The domain may be given as U-label (IDN) and is converted
 * to its A-label with libidn2 (IDNA2008, with UTS#46 mapping), then
 * lower-cased. A domain literal ("[192.0.2.1]") is refused.
 *
 * Refused with a message that names the problem: empty input, missing
 * or repeated '@', quoted local parts (the message says so), non-ASCII
 * local parts (assent's transport has no SMTPUTF8), CR, LF, NUL and
 * other control characters, whitespace, the limits above.
 *
 * Memory: struct addr holds inline buffers; the caller owns it (on the
 * stack is fine). Input strings are borrowed for the call only.
 */
#ifndef ASSENT_ADDR_H
#define ASSENT_ADDR_H

#include <stddef.h>
#include "assent/err.h"

#define ADDR_LOCAL_MAX   64
#define ADDR_DOMAIN_MAX  255
#define ADDR_MAX         254

struct addr {
	/* The address to send to: local part as given, "@", the domain as
	 * lower-case A-label. */
	char address[ADDR_MAX + 1];
	/* The key for matching and uniqueness: the whole address
	 * lower-cased (local part included). */
	char key[ADDR_MAX + 1];
	/* Pointers into address: the local part length and the domain. */
	size_t local_len;
	const char *domain;     /* points into address, after '@' */
};

/* Parse and normalise input (a NUL-terminated string; surrounding
 * whitespace is NOT trimmed: callers trim where their input format
 * allows it). On failure returns -1 with err->code = EX_DATAERR and a
 * message such as: invalid address "a..b@x.org": two dots in a row in
 * the local part. */
int addr_parse(const char *input, struct addr *addr_r, struct assent_err *err);

/* Normalise a bare domain (for "@domain" suppression entries): A-label,
 * lower case, same rules as the domain of addr_parse(). out must have
 * room for ADDR_DOMAIN_MAX + 1 bytes. */
int addr_parse_domain(const char *input, char *out, struct assent_err *err);

/* The role mailbox a parsed address is, such as "postmaster" or
 * "abuse" (RFC 2142 and the usual no-reply names), or NULL for an
 * address that may be a person's. Role addresses reach whoever runs a
 * service: nobody there gave consent to a mailing list. */
const char *addr_role(const struct addr *a);

#endif

/*
 * bounce_private: what the files of the bounce module (bounce.c, the
 * GMime walk; bounce_classify.c; bounce_patterns.c, the plain-text
 * table) share and nobody else uses. See include/assent/bounce.h.
 */
#ifndef ASSENT_BOUNCE_PRIVATE_H
#define ASSENT_BOUNCE_PRIVATE_H

#include <stdbool.h>
#include <stddef.h>

#include "assent/bounce.h"

/* Copy n bytes of src (stops at a NUL) into dst (size bytes) as one
 * clean line: control characters become spaces, runs of blanks one
 * space, no blanks at either end, invalid UTF-8 and C1 controls '?'. */
void bounce_copy(char *dst, size_t size, const char *src, size_t n);

/* The address of value (after an optional "TYPE;", inside <> when
 * there are some) into dst as bounce_copy() does; "" if none. */
void bounce_copy_address(char *dst, size_t size, const char *value);

/* A new zeroed recipient at the end of r's list; NULL (and counted in
 * recipients_dropped) once BOUNCE_RECIPIENTS_MAX are there. */
struct bounce_recipient *bounce_recipient_add(struct bounce_report *r);

/* Replace status (a code or "") with the one bounce_classify() judges
 * by: a specific code of the same class from diagnostic when status is
 * X.0.0 or "", as RFC 3464 reports from Exim and Exchange need. */
void bounce_status_refine(char status[BOUNCE_STATUS_SIZE],
    const char *diagnostic);

/* Case-insensitive memmem(): the first place of needle in s[0..n), or
 * NULL. */
const char *bounce_find(const char *s, size_t n, const char *needle);

/* Look for a known plain-text bounce in text (UTF-8, len bytes): on a
 * match set r->pattern, add its recipients and return true. */
bool bounce_patterns_scan(const char *text, size_t len,
    struct bounce_report *r);

#endif

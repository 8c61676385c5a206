/*
 * consent: the exact wordings subscribers are shown when they consent,
 * each stored once under a version with its SHA-256 and the date it
 * took effect. A wording is never edited, and once a ledger event names
 * it, it is never removed (the database enforces both).
 *
 * Memory: string arguments are borrowed. Functions returning json_t
 * give the caller a new reference to json_decref().
 */
#ifndef ASSENT_CONSENT_H
#define ASSENT_CONSENT_H

#include <stddef.h>
#include <jansson.h>
#include <libpq-fe.h>
#include "assent/err.h"

#define CONSENT_TEXT_MAX 100000          /* bytes */

/* Store body (NUL-terminated, len bytes: valid UTF-8 without NUL or control characters
 * other than tab and newlines, at most CONSENT_TEXT_MAX) as version.
 * effective_at (timestamptz text, NULL for now) is when it took effect.
 * sha_r (may be NULL) gets its SHA-256 in hex. EX_DATAERR for a bad
 * version or body, or a version that exists already. */
int consent_text_add(PGconn *conn, const char *version, const char *body,
    size_t len, const char *effective_at, const char *created_by,
    char sha_r[65], struct assent_err *err);

/* Every version, oldest first: version, sha256, effective_at,
 * created_at, created_by, used (whether a ledger event names it). */
int consent_text_all(PGconn *conn, json_t **texts_r, struct assent_err *err);

/* One version as consent_text_all() gives it, plus its body. */
int consent_text_show(PGconn *conn, const char *version, json_t **text_r,
    struct assent_err *err);

/* 0 when version is known; EX_DATAERR "unknown consent text" else. */
int consent_text_require(PGconn *conn, const char *version, struct assent_err *err);

#endif

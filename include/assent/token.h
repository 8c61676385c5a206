/*
 * token: opaque, URL-safe, signed tokens for unsubscribe links,
 * confirmation links, preference ("manage") links and bounce (VERP)
 * addresses.
 *
 * A token carries ids only, never an address or other personal data.
 * Version 1 is 48 bytes, base64url without padding: exactly
 * TOKEN_TEXT_LEN (64) characters of [A-Za-z0-9_-].
 *
 *	offset size  field
 *	     0    1  version (1)
 *	     1    1  key id (1-255: which key of the keys file signed it)
 *	     2    1  purpose (enum token_purpose, 1-4)
 *	     3    1  flags: 0x01 all lists; the other bits are zero
 *	     4    8  subscriber id, big-endian (never 0)
 *	    12    8  list id, big-endian (0 with the all-lists flag)
 *	    20    8  campaign or message id, big-endian (0 for none)
 *	    28    4  issue time, seconds since 1970 UTC, big-endian
 *	    32   16  HMAC-SHA256 of bytes 0-31 with the key's secret,
 *	             truncated to its first 16 bytes (128 bits)
 *
 * The purpose is inside the MAC, so a token made for one purpose never
 * passes as another. What each purpose needs (checked when making and
 * again when verifying):
 *	unsubscribe  a subscriber, and a list or all lists
 *	confirm      a subscriber and a list (not all lists); expires
 *	manage       a subscriber; a list or all lists optional
 *	bounce       a subscriber; campaign or message id optional
 * Only confirm tokens expire (confirm_ttl, tokens.confirm_ttl); the
 * others keep working for as long as their key stays in the keys file.
 *
 * Verification refuses anything malformed, forged, expired, issued in
 * the future (beyond TOKEN_CLOCK_SKEW) or of another purpose with one
 * generic message, "invalid token", and EX_DATAERR: which check failed
 * is not told. MACs are compared with CRYPTO_memcmp.
 *
 * Memory: token_signer_new() returns an object the caller frees with
 * token_signer_free(); it copies what it needs from the keys, which the
 * caller may free afterwards. A signer holds HMAC contexts that each
 * call reuses: one thread at a time may use a signer (make one per
 * thread). Output text goes to the caller's buffer.
 */
#ifndef ASSENT_TOKEN_H
#define ASSENT_TOKEN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "assent/err.h"
#include "assent/keys.h"

#define TOKEN_VERSION     1
#define TOKEN_BODY_LEN    32            /* bytes covered by the MAC */
#define TOKEN_MAC_LEN     16
#define TOKEN_RAW_LEN     (TOKEN_BODY_LEN + TOKEN_MAC_LEN)
#define TOKEN_TEXT_LEN    64            /* base64url of TOKEN_RAW_LEN */
#define TOKEN_TEXT_SIZE   (TOKEN_TEXT_LEN + 1)
#define TOKEN_CLOCK_SKEW  300           /* seconds into the future allowed */
#define TOKEN_CONFIRM_TTL_DEFAULT (7 * 24 * 3600)

enum token_purpose {
	TOKEN_UNSUBSCRIBE = 1,
	TOKEN_CONFIRM = 2,
	TOKEN_MANAGE = 3,
	TOKEN_BOUNCE = 4,
	TOKEN_NOTICE = 5,       /* compact only: a notice's bounce address */
};
#define TOKEN_PURPOSE_MIN TOKEN_UNSUBSCRIBE
#define TOKEN_PURPOSE_MAX TOKEN_NOTICE

struct token {
	enum token_purpose purpose;
	uint64_t subscriber_id;
	uint64_t list_id;               /* 0 with all_lists */
	uint64_t campaign_id;           /* campaign or message; 0 for none */
	bool all_lists;
	int64_t issued_at;              /* seconds since 1970, 0 to 2^32-1 */
	uint8_t key_id;                 /* set by token_verify() */
};

struct token_signer;

/* Prepare an HMAC context for every key in keys (the current one signs).
 * EX_SOFTWARE when OpenSSL fails. */
int token_signer_new(const struct keys *keys, struct token_signer **signer_r,
    struct assent_err *err);

void token_signer_free(struct token_signer *signer);

/* Sign t (purpose, ids, all_lists, issued_at; key_id is ignored) with
 * the current key into out (at least TOKEN_TEXT_SIZE bytes): exactly
 * TOKEN_TEXT_LEN characters and a NUL. EX_DATAERR, with the reason,
 * when the fields do not fit the purpose (see above) or issued_at is
 * out of range. */
int token_make(struct token_signer *signer, const struct token *t, char *out,
    size_t outlen, struct assent_err *err);

/* The same with the key key_id (EX_DATAERR when there is none): for
 * tests, and for re-encoding a verified token. */
int token_make_with_key(struct token_signer *signer, uint8_t key_id,
    const struct token *t, char *out, size_t outlen, struct assent_err *err);

/* Check text (a NUL-terminated string) as a token for purpose expected
 * at time now. A confirm token is refused once now is more than
 * confirm_ttl seconds after its issue time. Returns 0 and fills *out
 * (key_id included), or -1 with EX_DATAERR and "invalid token", *out
 * zeroed. */
int token_verify(struct token_signer *signer, const char *text,
    enum token_purpose expected, int64_t now, int64_t confirm_ttl,
    struct token *out, struct assent_err *err);

/* token_verify() for a confirm token that tells expiry apart: 0 when
 * valid, 1 when genuine but expired (*out filled all the same: the page
 * may offer a fresh confirmation request for it), -1 with "invalid
 * token" for anything else (*out zeroed). Only a token that passed
 * every other check is ever reported as expired. */
int token_verify_confirm(struct token_signer *signer, const char *text,
    int64_t now, int64_t confirm_ttl, struct token *out,
    struct assent_err *err);

/*
 * Compact tokens, for bounce (VERP) addresses. A token sits in the local
 * part of an envelope sender, which holds at most 64 octets, and some
 * MTAs fold the case of local parts: so this form is shorter, binds a
 * delivery id only, and is lower-case base32 (RFC 4648 alphabet
 * a-z2-7, no padding), read case-insensitively. 30 bytes give exactly
 * TOKEN_COMPACT_TEXT_LEN (48) characters with no spare bit, so
 * "b-" + token is 50 octets.
 *
 *	offset size  field
 *	     0    1  version (TOKEN_COMPACT_VERSION)
 *	     1    1  key id
 *	     2    1  purpose (bounce: a campaign delivery; notice: a
 *	             notice's bounce address (notice.h), its id in the
 *	             delivery id field; unsubscribe and manage also allowed;
 *	             confirm refused: it needs a list and an expiry)
 *	     3    7  delivery id, big-endian (1 to TOKEN_COMPACT_ID_MAX)
 *	    10    4  issue time, seconds since 1970 UTC, big-endian
 *	    14   16  HMAC-SHA256 of bytes 0-13, truncated to 128 bits
 *
 * The MAC input differs from a long token's in length and version, so
 * neither form passes as the other. Verification follows the same rule
 * as token_verify(): one generic "invalid token" (EX_DATAERR) for
 * anything malformed, forged, of another purpose or issued in the
 * future; compact tokens do not expire.
 */
#define TOKEN_COMPACT_VERSION   0x82
#define TOKEN_COMPACT_BODY_LEN  14
#define TOKEN_COMPACT_RAW_LEN   (TOKEN_COMPACT_BODY_LEN + TOKEN_MAC_LEN)
#define TOKEN_COMPACT_TEXT_LEN  48      /* base32 of TOKEN_COMPACT_RAW_LEN */
#define TOKEN_COMPACT_TEXT_SIZE (TOKEN_COMPACT_TEXT_LEN + 1)
#define TOKEN_COMPACT_ID_MAX    ((UINT64_C(1) << 56) - 1)

struct token_compact {
	enum token_purpose purpose;
	uint64_t delivery_id;
	int64_t issued_at;              /* seconds since 1970, 0 to 2^32-1 */
	uint8_t key_id;                 /* set by token_compact_verify() */
};

/* Sign t with the current key into out (at least TOKEN_COMPACT_TEXT_SIZE
 * bytes): TOKEN_COMPACT_TEXT_LEN lower-case characters and a NUL.
 * EX_DATAERR when the purpose is confirm or unknown, the delivery id 0
 * or above TOKEN_COMPACT_ID_MAX, or issued_at out of range. */
int token_compact_make(struct token_signer *signer,
    const struct token_compact *t, char *out, size_t outlen,
    struct assent_err *err);

/* The same with the key key_id (EX_DATAERR when there is none). */
int token_compact_make_with_key(struct token_signer *signer, uint8_t key_id,
    const struct token_compact *t, char *out, size_t outlen,
    struct assent_err *err);

/* Check text (NUL-terminated, either case) as a compact token for
 * purpose expected at time now. 0 and *out filled (key_id included), or
 * -1 with EX_DATAERR and "invalid token", *out zeroed. */
int token_compact_verify(struct token_signer *signer, const char *text,
    enum token_purpose expected, int64_t now, struct token_compact *out,
    struct assent_err *err);

/* "unsubscribe", "confirm", "manage", "bounce"; "?" for anything else. */
const char *token_purpose_name(enum token_purpose purpose);

/* The purpose named name; -1 (no err: the caller words it) if none. */
int token_purpose_parse(const char *name, enum token_purpose *purpose_r);

#endif

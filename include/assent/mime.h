/*
 * mime: build one complete RFC 5322 / MIME message from rendered parts,
 * and the VERP envelope sender that carries a bounce token.
 *
 * The message has CRLF line ends only, no line over 78 octets in the
 * headers where a fold is possible (never over 998), and these headers
 * in this order: Date (UTC, "+0000"), From, To, Reply-To (optional),
 * Subject, Message-ID, List-Id, List-Unsubscribe, List-Unsubscribe-Post
 * (List-Unsubscribe=One-Click, RFC 8058), MIME-Version, Content-Type
 * and, for a single part, Content-Transfer-Encoding.
 *
 * Bodies: text only gives one text/plain; charset=utf-8 part; text and
 * HTML give multipart/alternative with text first. Each body is
 * quoted-printable: lines of at most 76 octets with soft breaks, '='
 * and every byte outside printable ASCII encoded, and whitespace at the
 * end of a line encoded. A line break in a body may be LF or CRLF; both
 * become CRLF (a lone CR is kept, encoded as =0D). A body that does not
 * end in a line break ends in a soft break, so it decodes to exactly
 * what was given. A '.' or "From " at the start of an encoded line is
 * encoded too (=2E, =46): libesmtp dot-stuffs anyway, but the message
 * then survives any path (a file, a pipe to sendmail, an mbox) that
 * would drop a dot or mangle "From ". The boundary is "=_assent_" and
 * the seed: "=_" never occurs in quoted-printable text, so it cannot
 * collide with a body.
 *
 * Header text: subject and display names (UTF-8) go as they are when
 * they are printable ASCII; otherwise (or when they hold "=?", or a word
 * too long to fold) as RFC 2047 encoded-words (UTF-8, Q encoding, at
 * most 75 characters each, folded with CRLF and a space, never
 * splitting a UTF-8 character). An ASCII display name with characters
 * outside atext becomes a quoted-string.
 *
 * Refused with EX_DATAERR (the message names the header): a control
 * character (CR and LF above all) or invalid UTF-8 in any header input;
 * an address that is not a plain dot-atom "local@domain" (addresses are
 * expected already normalised by addr_parse()); a List-Unsubscribe URL
 * that is not https (mime_url_scheme_ok()) or holds characters outside RFC 3986 (a comma
 * included, as RFC 2369 asks); a body that is not valid UTF-8.
 *
 * Message-ID: the caller gives the unique left part (dot-atom text, at
 * most 64 octets, e.g. "c42.d1234567"); the builder writes
 * <LEFT@DOMAIN> with the domain of the From address.
 *
 * Memory: every input is borrowed for the call. mime_build() replaces
 * the content of the caller's struct buf (buf.h), which grows as needed and is
 * meant to be reused for the next message (no allocation once it is big
 * enough); free it with buf_free().
 */
#ifndef ASSENT_MIME_H
#define ASSENT_MIME_H

#include <stdbool.h>
#include <stddef.h>
#include <time.h>

#include "assent/buf.h"
#include "assent/err.h"

#define MIME_LINE_MAX      78   /* header fold target */
#define MIME_QP_LINE_MAX   76
#define MIME_NAME_MAX      256  /* display and list names, bytes */
#define MIME_SUBJECT_MAX   998  /* bytes of UTF-8 */
#define MIME_URL_MAX       900
#define MIME_ID_LEFT_MAX   64
#define MIME_SEED_MAX      40
#define MIME_VERP_LOCAL_MAX 64

struct mime_mailbox {
	const char *name;       /* display name, UTF-8; NULL or "" for none */
	const char *address;    /* normalised local@domain */
};

struct mime_message {
	struct mime_mailbox from;
	struct mime_mailbox to;
	struct mime_mailbox reply_to;   /* address NULL: no Reply-To */
	const char *subject;            /* UTF-8, may be empty */
	time_t date;
	const char *message_id;         /* left part, see above */
	const char *list_name;          /* List-Id phrase; NULL or "" for none */
	const char *list_id;            /* e.g. news.lists.example.org; NULL:
	                                 * no List-Id (a notice, not list mail) */
	const char *unsubscribe_url;    /* https://...; NULL: no
	                                 * List-Unsubscribe(-Post) (a notice) */
	const char *unsubscribe_mailto; /* an address, or NULL */
	const char *text;               /* UTF-8 body (required) */
	const char *html;               /* UTF-8 body, or NULL */
	const char *boundary_seed;      /* 1-40 of [A-Za-z0-9._-]; with html */
};

/* A growing output buffer; data is NUL-terminated (len excludes it). */

/* Build m into out (its previous content replaced). On failure out is
 * emptied and err says which input was refused and why. */
int mime_build(const struct mime_message *m, struct buf *out,
    struct assent_err *err);

/* True for an https:// URL with something after the scheme, and for
 * http:// to 127.0.0.1, localhost or [::1] (trying assent out on one
 * machine): mail links must be https (RFC 8058) everywhere else. */
bool mime_url_scheme_ok(const char *url);

/* The envelope sender PREFIX TOKEN@DOMAIN into out (outsize bytes),
 * e.g. "b-" + token + "@bounce.example.org". prefix and token are
 * lower-case letters, digits, '-', '_' and '.', the local part at most
 * 64 octets, domain a lower-case LDH domain name; the whole at most 254
 * octets. EX_DATAERR otherwise (EX_SOFTWARE when out is too small). */
int mime_verp(const char *prefix, const char *token, const char *domain,
    char *out, size_t outsize, struct assent_err *err);

#endif

/*
 * text: checks on free text that comes from outside (names, sources,
 * user agents, list names) before it is stored or printed, and a safe
 * way to quote such text in a message.
 *
 * "Control character" means C0 (U+0000-U+001F, so CR, LF and TAB too),
 * DEL (U+007F) and C1 (U+0080-U+009F). Character classes are ASCII
 * only and do not depend on the locale.
 *
 * Memory: inputs are borrowed for the call; nothing is kept.
 * text_quote() writes into the caller's buffer.
 */
#ifndef ASSENT_TEXT_H
#define ASSENT_TEXT_H

#include <stdbool.h>
#include <stddef.h>
#include "assent/err.h"

/* A buffer size for text_quote() that is right for error messages. */
#define TEXT_QUOTE_SIZE 96

/* Is s (len bytes) well-formed UTF-8: no overlong forms, no surrogates
 * (U+D800-U+DFFF), nothing above U+10FFFF, no truncated sequence?
 * NUL bytes inside len are well-formed (U+0000). */
bool text_is_utf8(const char *s, size_t len);

/* Make the len bytes at s valid UTF-8 in place: every byte that does not
 * belong to a well-formed character becomes '?'. For text from outside
 * (a browser's User-Agent, a relay's reply) that the database must
 * store. */
void text_make_utf8(char *s, size_t len);

/* Refuse s unless it is valid UTF-8 of at most max bytes without any
 * control character (C0, DEL or C1; CR and LF included). what names
 * the value in the message, e.g. "--source". With allow_empty false an
 * empty string (or NULL) is refused too; with allow_empty true NULL is
 * accepted as empty. EX_DATAERR on failure; the message quotes s with
 * text_quote(), e.g.: invalid --source "a\rb": control character \r
 * (byte 2). */
int text_check_line(const char *s, size_t max, bool allow_empty,
    const char *what, struct assent_err *err);

/* A list name: 1-64 characters from [A-Za-z0-9._-], starting with a
 * letter or digit. The message names the offending character. */
int text_check_list_name(const char *name, struct assent_err *err);

/* Render len bytes of s for a message, without the surrounding quotes:
 * '"' and '\' are escaped with a backslash, TAB, CR and LF become \t,
 * \r and \n, other C0 bytes, DEL and bytes that are not valid UTF-8
 * become \xNN, and C1, line/paragraph separators and bidirectional
 * controls become \uNNNN; other UTF-8 is kept. When the rendering does
 * not fit in size bytes it is cut at a character boundary and ends in
 * "...". size must be at least 8 (abort otherwise). Returns buf, always
 * NUL-terminated, so a call can sit in a printf argument list. */
const char *text_quote(const char *s, size_t len, char *buf, size_t size);

/* The whole of path as a fresh string (*text_r, the caller frees it):
 * at most max bytes of valid UTF-8 without NUL. A file that cannot be
 * opened or read is EX_NOINPUT naming it; one too large, holding a NUL
 * byte or not UTF-8 is EX_DATAERR. A pipe is read too; a directory, a
 * device or a socket is not. */
int text_read_file(const char *path, size_t max, char **text_r,
    struct assent_err *err);

#endif

/*
 * render: campaign templates with merge fields, compiled once and
 * rendered for each recipient.
 *
 * A template is UTF-8 text with fields between double braces;
 * whitespace inside the braces is optional:
 *	{{ name }}                 the subscriber's name
 *	{{ email }}                the subscriber's address
 *	{{ attr.KEY }}             an attribute (KEY: 1-64 of [A-Za-z0-9_-])
 *	{{ unsubscribe_url }}      the one-click unsubscribe link
 *	{{ manage_url }}           the preferences link
 *	{{ sender.postal_address }}
 *	{{ sender.organisation }}
 * name and attr.KEY take an optional default, used when the value is
 * missing, JSON null or empty: {{ attr.city | "friend" }}. Inside the
 * quotes \" and \\ stand for " and \; nothing else is an escape. "{{"
 * always opens a field: there is no way to write it literally.
 *
 * Kinds: RENDER_SUBJECT (one line: no line break or other control
 * character, and no unsubscribe_url or manage_url), RENDER_TEXT and
 * RENDER_HTML (bodies: must contain both {{ unsubscribe_url }} and
 * {{ sender.postal_address }}). In RENDER_HTML every value and default
 * is HTML-escaped (& < > " '); in the other kinds values go in as they
 * are, except that a subject refuses at render time a value holding a
 * control character (CR and LF above all): a header value never
 * carries a line break that came from data.
 *
 * Errors from render_compile() are EX_DATAERR and name the place, with
 * the line and the column counted in characters, both from 1:
 *	template line 3, column 14: unknown field "nmae"
 *
 * Attribute values: a JSON string renders as its text; any other JSON
 * value as its compact JSON text (42, true, [1,2]).
 *
 * Memory: render_compile() copies what it needs from text; the caller
 * frees the template with render_free(). A compiled template is never
 * changed by rendering, so threads may share one. render_run() borrows
 * the values for the call and appends to the caller's struct buf (buf.h), which
 * grows as needed and is meant to be reused (buf_reset()) so
 * that rendering allocates nothing once the buffer is big enough.
 */
#ifndef ASSENT_RENDER_H
#define ASSENT_RENDER_H

#include <stddef.h>
#include <jansson.h>

#include "assent/buf.h"
#include "assent/err.h"

#define RENDER_ATTR_KEY_MAX 64

enum render_kind {
	RENDER_SUBJECT,
	RENDER_TEXT,
	RENDER_HTML,
};

/* One recipient's values; NULL stands for missing (rendered as the
 * default, or as nothing). attrs is a JSON object or NULL. */
struct render_values {
	const char *name;
	const char *email;
	const json_t *attrs;
	const char *unsubscribe_url;
	const char *manage_url;
	const char *postal_address;
	const char *organisation;
};

struct render_template;

/* Parse text (NUL-terminated, valid UTF-8) as a template of kind.
 * EX_DATAERR with line and column for a bad field, an unterminated
 * "{{", a bad default or a line break in a subject; without a place for
 * invalid UTF-8 (byte offset instead) and for a body missing the
 * unsubscribe link or the postal address. */
int render_compile(const char *text, enum render_kind kind,
    struct render_template **tpl_r, struct assent_err *err);

void render_free(struct render_template *tpl);

/* Append the template rendered with values to out. EX_DATAERR when a
 * subject value holds a control character (out is then left as it was
 * before the call). */
int render_run(const struct render_template *tpl,
    const struct render_values *values, struct buf *out,
    struct assent_err *err);

/* How many fields the template holds (for tests and previews). */
size_t render_field_count(const struct render_template *tpl);

#endif

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
 * Notices (the confirmation request a double-opt-in sign-up gets) and
 * the web endpoint's pages have fields of their own:
 *	{{ list }}                 the list's name (notices, pages)
 *	{{ confirm_url }}          the confirmation link (notice bodies)
 *	{{ title }}                the page's title (pages)
 *	{{ content }}              the page's own text (pages): HTML that
 *	                           assentd made and escaped, inserted as it is
 *
 * Kinds, and the fields each may hold:
 *	RENDER_SUBJECT         campaign subject: one line (no line break or
 *	                       other control character); name, email,
 *	                       attr.KEY, sender.organisation
 *	RENDER_TEXT, _HTML     campaign bodies: those and unsubscribe_url,
 *	                       manage_url, sender.postal_address; must hold
 *	                       {{ unsubscribe_url }} and
 *	                       {{ sender.postal_address }}
 *	RENDER_NOTICE_SUBJECT  one line: name, email, attr.KEY,
 *	                       sender.organisation, list
 *	RENDER_NOTICE_TEXT, _HTML  those, confirm_url and
 *	                       sender.postal_address; must hold
 *	                       {{ confirm_url }}
 *	RENDER_PAGE            an HTML page: title, content, list,
 *	                       sender.organisation, sender.postal_address;
 *	                       must hold {{ content }}
 * A field a kind does not take is refused at compile time ("a subject
 * may not contain unsubscribe_url"). In the HTML kinds every value and
 * default is HTML-escaped (& < > " '), content excepted; in the other
 * kinds values go in as they are, except that a subject refuses at
 * render time a value holding a control character (CR and LF above
 * all): a header value never carries a line break that came from data.
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
#define RENDER_FILE_MAX (256 * 1024)  /* bytes of a template file in conf/ */

enum render_kind {
	RENDER_SUBJECT,
	RENDER_TEXT,
	RENDER_HTML,
	RENDER_NOTICE_SUBJECT,
	RENDER_NOTICE_TEXT,
	RENDER_NOTICE_HTML,
	RENDER_PAGE,
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
	const char *list;               /* notices and pages */
	const char *confirm_url;        /* notices */
	const char *title;              /* pages */
	const char *content;            /* pages: HTML, inserted as it is */
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

/* The template a setting names: the file path (at most RENDER_FILE_MAX
 * bytes of UTF-8), or builtin when path is NULL or "" (*tpl_r NULL when
 * builtin is NULL too). EX_CONFIG naming the setting and the file:
 *	signup.confirm_text: /etc/assent/confirm.txt: template line 3,
 *	column 14: unknown field "nmae"
 * (a file that cannot be read: "SETTING: FILE: reason"). */
int render_compile_file(const char *setting, const char *path,
    const char *builtin, enum render_kind kind,
    struct render_template **tpl_r, struct assent_err *err);

/* Append the template rendered with values to out. EX_DATAERR when a
 * subject value holds a control character (out is then left as it was
 * before the call). */
int render_run(const struct render_template *tpl,
    const struct render_values *values, struct buf *out,
    struct assent_err *err);

/* How many fields the template holds (for tests and previews). */
size_t render_field_count(const struct render_template *tpl);

#endif

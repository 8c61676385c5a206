/* render: merge-field templates, compiled once, rendered per recipient;
 * the rules are in include/assent/render.h */
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "assent/buf.h"
#include "assent/render.h"
#include "assent/text.h"
#include "assent/xmalloc.h"

enum render_field {
	RENDER_LITERAL,
	RENDER_NAME,
	RENDER_EMAIL,
	RENDER_ATTR,
	RENDER_UNSUBSCRIBE_URL,
	RENDER_MANAGE_URL,
	RENDER_POSTAL_ADDRESS,
	RENDER_ORGANISATION,
	RENDER_LIST,
	RENDER_CONFIRM_URL,
	RENDER_TITLE,
	RENDER_CONTENT,
};

/* What each kind is: a one-line header, HTML (values escaped), and the
 * fields it must hold. */
#define RENDER_NKINDS (RENDER_PAGE + 1)
static const struct {
	bool one_line;
	bool html;
	enum render_field required[2];  /* RENDER_LITERAL: none */
} render_kinds[RENDER_NKINDS] = {
	[RENDER_SUBJECT] = { true, false, { 0, 0 } },
	[RENDER_TEXT] = { false, false,
	    { RENDER_UNSUBSCRIBE_URL, RENDER_POSTAL_ADDRESS } },
	[RENDER_HTML] = { false, true,
	    { RENDER_UNSUBSCRIBE_URL, RENDER_POSTAL_ADDRESS } },
	[RENDER_NOTICE_SUBJECT] = { true, false, { 0, 0 } },
	[RENDER_NOTICE_TEXT] = { false, false, { RENDER_CONFIRM_URL, 0 } },
	[RENDER_NOTICE_HTML] = { false, true, { RENDER_CONFIRM_URL, 0 } },
	[RENDER_PAGE] = { false, true, { RENDER_CONTENT, 0 } },
};

/* A literal span of the template, or a field. A literal points into the
 * template's own copy of the text; a key and a default are owned by the
 * part (the default already HTML-escaped in the HTML kind). */
struct render_part {
	enum render_field field;
	const char *text;       /* literal text, or the attribute key */
	size_t len;
	char *key;
	char *def;              /* NULL: no default */
	size_t def_len;
};

struct render_template {
	enum render_kind kind;
	char *text;
	struct render_part *parts;
	size_t nparts;
	size_t cap;
	size_t nfields;
};

/* Which kinds may use a field. */
#define K(k) (1u << (k))
#define RENDER_CAMPAIGN (K(RENDER_SUBJECT) | K(RENDER_TEXT) | K(RENDER_HTML))
#define RENDER_NOTICE (K(RENDER_NOTICE_SUBJECT) | K(RENDER_NOTICE_TEXT) | \
	K(RENDER_NOTICE_HTML))

static const struct {
	const char *name;
	enum render_field field;
	bool takes_default;
	unsigned int kinds;
	const char *name_in_text;       /* for "a body has no {{ ... }}" */
} render_fields[] = {
	{ "name", RENDER_NAME, true, RENDER_CAMPAIGN | RENDER_NOTICE, NULL },
	{ "email", RENDER_EMAIL, false, RENDER_CAMPAIGN | RENDER_NOTICE, NULL },
	{ "unsubscribe_url", RENDER_UNSUBSCRIBE_URL, false,
	  K(RENDER_TEXT) | K(RENDER_HTML),
	  "{{ unsubscribe_url }} (every message needs an unsubscribe link)" },
	{ "manage_url", RENDER_MANAGE_URL, false,
	  K(RENDER_TEXT) | K(RENDER_HTML), NULL },
	{ "sender.postal_address", RENDER_POSTAL_ADDRESS, false,
	  RENDER_CAMPAIGN | RENDER_NOTICE | K(RENDER_PAGE),
	  "{{ sender.postal_address }} (every message needs the sender's "
	  "postal address)" },
	{ "sender.organisation", RENDER_ORGANISATION, false,
	  RENDER_CAMPAIGN | RENDER_NOTICE | K(RENDER_PAGE), NULL },
	{ "list", RENDER_LIST, false, RENDER_NOTICE | K(RENDER_PAGE), NULL },
	{ "confirm_url", RENDER_CONFIRM_URL, false,
	  K(RENDER_NOTICE_TEXT) | K(RENDER_NOTICE_HTML),
	  "{{ confirm_url }} (a confirmation request needs its link)" },
	{ "title", RENDER_TITLE, false, K(RENDER_PAGE), NULL },
	{ "content", RENDER_CONTENT, false, K(RENDER_PAGE),
	  "{{ content }} (where the page's own text goes)" },
};
#define RENDER_NFIELDS (sizeof(render_fields) / sizeof(render_fields[0]))

#define RENDER_ATTR_PREFIX "attr."

/* --- the output buffer ------------------------------------------------- */

/* The HTML entity for c, or NULL when c stands for itself. */
static const char *const render_html_entity[256] = {
	['&'] = "&amp;", ['<'] = "&lt;", ['>'] = "&gt;", ['"'] = "&quot;",
	['\''] = "&#39;",
};

static void
render_add_html(struct buf *b, const char *s, size_t n)
{
	const char *e;
	char *o;
	size_t el;

	buf_reserve(b, n * 6);
	o = b->data + b->len;
	for (size_t i = 0; i < n; i++) {
		if ((e = render_html_entity[(unsigned char)s[i]]) == NULL) {
			*o++ = s[i];
			continue;
		}
		el = strlen(e);
		memcpy(o, e, el);
		o += el;
	}
	b->len = (size_t)(o - b->data);
	b->data[b->len] = '\0';
}

/* --- compiling --------------------------------------------------------- */

/* Line and column (in characters, from 1) of byte offset off. */
static void
render_position(const char *text, size_t off, size_t *line, size_t *col)
{
	*line = 1;
	*col = 1;
	for (size_t i = 0; i < off; i++) {
		if (text[i] == '\n') {
			(*line)++;
			*col = 1;
		} else if (((unsigned char)text[i] & 0xc0) != 0x80)
			(*col)++;
	}
}

static int
render_fail(const char *text, const char *at, struct assent_err *err,
    const char *what)
{
	size_t line, col;

	render_position(text, (size_t)(at - text), &line, &col);
	return err_set(err, EX_DATAERR, "template line %zu, column %zu: %s",
	    line, col, what);
}

static struct render_part *
render_add_part(struct render_template *tpl, enum render_field field)
{
	struct render_part *p;

	if (tpl->nparts == tpl->cap) {
		tpl->cap = tpl->cap == 0 ? 16 : tpl->cap * 2;
		tpl->parts = xreallocarray(tpl->parts, tpl->cap,
		    sizeof(*tpl->parts));
	}
	p = &tpl->parts[tpl->nparts++];
	memset(p, 0, sizeof(*p));
	p->field = field;
	if (field != RENDER_LITERAL)
		tpl->nfields++;
	return p;
}

static bool
render_is_space(char c)
{
	return c == ' ' || c == '\t';
}

static bool
render_is_ident(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
	    (c >= '0' && c <= '9') || c == '_' || c == '-' || c == '.';
}

static const char *
render_skip_space(const char *p)
{
	while (render_is_space(*p))
		p++;
	return p;
}

/* Parse the quoted default at *pp (just after the opening quote) into a
 * fresh string; *pp ends after the closing quote. */
static int
render_parse_default(const char *text, const char **pp, char **def_r,
    size_t *len_r, struct assent_err *err)
{
	const char *start = *pp, *p;
	char *def;
	size_t n = 0;

	/* Find the end first: the default is then allocated to its size,
	 * not to the rest of a possibly huge template. */
	for (p = start; *p != '"'; p++) {
		if (*p == '\0' || *p == '\n' || *p == '\r')
			return render_fail(text, start - 1, err,
			    "unterminated default (a closing \" is missing)");
		if (*p == '\\') {
			if (p[1] != '"' && p[1] != '\\')
				return render_fail(text, p, err, "bad escape in "
				    "default (only \\\" and \\\\)");
			p++;
		}
	}
	def = xmalloc((size_t)(p - start) + 1);
	for (p = start; *p != '"'; p++) {
		if (*p == '\\')
			p++;
		def[n++] = *p;
	}
	def[n] = '\0';
	*pp = p + 1;
	*def_r = def;
	*len_r = n;
	return 0;
}

/* Which field name (n bytes at s) is; -1 for none. */
static int
render_lookup(const char *s, size_t n, enum render_kind kind,
    enum render_field *field_r, bool *takes_default_r)
{
	size_t plen = strlen(RENDER_ATTR_PREFIX);

	for (size_t i = 0; i < RENDER_NFIELDS; i++)
		if (strlen(render_fields[i].name) == n &&
		    memcmp(render_fields[i].name, s, n) == 0) {
			*field_r = render_fields[i].field;
			*takes_default_r = render_fields[i].takes_default;
			return (render_fields[i].kinds & K(kind)) ? 0 : 1;
		}
	if (n > plen && n - plen <= RENDER_ATTR_KEY_MAX &&
	    memcmp(s, RENDER_ATTR_PREFIX, plen) == 0 &&
	    memchr(s + plen, '.', n - plen) == NULL) {
		*field_r = RENDER_ATTR;
		*takes_default_r = true;
		return ((RENDER_CAMPAIGN | RENDER_NOTICE) & K(kind)) ? 0 : 1;
	}
	return -1;
}

static const char *
render_kind_name(enum render_kind kind)
{
	switch (kind) {
	case RENDER_SUBJECT:
	case RENDER_NOTICE_SUBJECT:
		return "a subject";
	case RENDER_PAGE:
		return "a page";
	case RENDER_NOTICE_TEXT:
	case RENDER_NOTICE_HTML:
		return "a confirmation request";
	default:
		return "a campaign body";
	}
}

/* Parse the field whose "{{" is at open; *pp ends after its "}}". */
static int
render_parse_field(struct render_template *tpl, const char *open,
    const char **pp, struct assent_err *err)
{
	const char *text = tpl->text, *name, *p;
	enum render_field field;
	struct render_part *part;
	char q[TEXT_QUOTE_SIZE], msg[TEXT_QUOTE_SIZE + 64];
	bool takes_default;
	char *def = NULL;
	size_t n, def_len = 0;

	name = render_skip_space(open + 2);
	for (p = name; render_is_ident(*p); p++)
		;
	n = (size_t)(p - name);
	if (n == 0) {
		if (*p == '\0')
			return render_fail(text, open, err, "unterminated \"{{\"");
		return render_fail(text, name, err, "a field name is missing");
	}
	switch (render_lookup(name, n, tpl->kind, &field, &takes_default)) {
	case -1:
		snprintf(msg, sizeof(msg), "unknown field \"%s\"",
		    text_quote(name, n, q, sizeof(q)));
		return render_fail(text, name, err, msg);
	case 1:
		snprintf(msg, sizeof(msg), "%s may not contain %s",
		    render_kind_name(tpl->kind), text_quote(name, n, q, sizeof(q)));
		return render_fail(text, name, err, msg);
	}
	p = render_skip_space(p);
	if (*p == '|') {
		if (!takes_default)
			return render_fail(text, p, err, "a default is allowed "
			    "only on name and attr.KEY");
		p = render_skip_space(p + 1);
		if (*p != '"')
			return render_fail(text, p, err, "a default must be a "
			    "quoted string: | \"...\"");
		p++;
		if (render_parse_default(text, &p, &def, &def_len, err) == -1)
			return -1;
		p = render_skip_space(p);
	}
	if (p[0] != '}' || p[1] != '}') {
		free(def);
		if (*p == '\0')
			return render_fail(text, open, err, "unterminated \"{{\"");
		return render_fail(text, p, err, "expected \"}}\"");
	}
	part = render_add_part(tpl, field);
	part->text = name;
	part->len = n;
	if (field == RENDER_ATTR)
		part->key = xstrndup(name + strlen(RENDER_ATTR_PREFIX),
		    n - strlen(RENDER_ATTR_PREFIX));
	if (def != NULL && render_kinds[tpl->kind].html) {
		struct buf b;

		buf_init(&b);
		render_add_html(&b, def, def_len);
		free(def);
		def = b.data;
		def_len = b.len;
	}
	part->def = def;
	part->def_len = def_len;
	*pp = p + 2;
	return 0;
}

/* A subject is one line of printable text. */
static int
render_check_subject(const char *text, struct assent_err *err)
{
	const unsigned char *p;

	for (p = (const unsigned char *)text; *p != '\0'; p++) {
		if (*p == '\r' || *p == '\n')
			return render_fail(text, (const char *)p, err,
			    "a subject may not contain a line break");
		if (*p < 0x20 || *p == 0x7f || (*p == 0xc2 && p[1] >= 0x80 &&
		    p[1] <= 0x9f))
			return render_fail(text, (const char *)p, err,
			    "a subject may not contain a control character");
	}
	return 0;
}

static bool
render_has_field(const struct render_template *tpl, enum render_field field)
{
	for (size_t i = 0; i < tpl->nparts; i++)
		if (tpl->parts[i].field == field)
			return true;
	return false;
}

static const char *
render_field_text(enum render_field field)
{
	for (size_t i = 0; i < RENDER_NFIELDS; i++)
		if (render_fields[i].field == field)
			return render_fields[i].name_in_text;
	return "?";
}

static int
render_check_body(const struct render_template *tpl, struct assent_err *err)
{
	enum render_field need;

	for (size_t i = 0; i < 2; i++) {
		need = render_kinds[tpl->kind].required[i];
		if (need != RENDER_LITERAL && !render_has_field(tpl, need))
			return err_set(err, EX_DATAERR, "template: the %s has no %s",
			    tpl->kind == RENDER_PAGE ? "page" : "body",
			    render_field_text(need));
	}
	return 0;
}

/* The next "{{" at or after p, or the terminating NUL. A plain scan:
 * strstr() here made compiling quadratic under AddressSanitizer, whose
 * strstr measures the whole rest of the text at every call. */
static const char *
render_next_open(const char *p)
{
	for (; *p != '\0'; p++)
		if (p[0] == '{' && p[1] == '{')
			return p;
	return p;
}

static int
render_parse(struct render_template *tpl, struct assent_err *err)
{
	const char *p = tpl->text, *open;
	struct render_part *lit;

	while (*p != '\0') {
		open = render_next_open(p);
		if (open > p) {
			lit = render_add_part(tpl, RENDER_LITERAL);
			lit->text = p;
			lit->len = (size_t)(open - p);
		}
		if (*open == '\0')
			break;
		if (render_parse_field(tpl, open, &p, err) == -1)
			return -1;
	}
	return render_check_body(tpl, err);
}

/* The offset of the first byte that does not start a valid character. */
static size_t
render_bad_utf8(const char *text, size_t len)
{
	size_t i = 0, n;

	while (i < len) {
		for (n = 1; n <= 4 && i + n <= len; n++)
			if (text_is_utf8(text + i, n))
				break;
		if (n > 4 || i + n > len)
			return i;
		i += n;
	}
	return len;
}

int
render_compile(const char *text, enum render_kind kind,
    struct render_template **tpl_r, struct assent_err *err)
{
	struct render_template *tpl;
	size_t len = strlen(text);

	*tpl_r = NULL;
	if ((unsigned int)kind >= RENDER_NKINDS)
		abort();
	if (!text_is_utf8(text, len))
		return err_set(err, EX_DATAERR, "template: not valid UTF-8 "
		    "(byte %zu)", render_bad_utf8(text, len) + 1);
	if (render_kinds[kind].one_line && render_check_subject(text, err) == -1)
		return -1;
	tpl = xcalloc(1, sizeof(*tpl));
	tpl->kind = kind;
	tpl->text = xstrdup(text);
	if (render_parse(tpl, err) == -1) {
		render_free(tpl);
		return -1;
	}
	*tpl_r = tpl;
	return 0;
}

int
render_compile_file(const char *setting, const char *path, const char *builtin,
    enum render_kind kind, struct render_template **tpl_r,
    struct assent_err *err)
{
	char *text = NULL;
	int rc;

	*tpl_r = NULL;
	if (path == NULL || *path == '\0') {
		if (builtin == NULL)
			return 0;
		if (render_compile(builtin, kind, tpl_r, err) == -1) {
			err->code = EX_SOFTWARE;
			return err_prefix(err, "%s (built in)", setting);
		}
		return 0;
	}
	if (text_read_file(path, RENDER_FILE_MAX, &text, err) == -1) {
		err->code = EX_CONFIG;
		return err_prefix(err, "%s", setting);
	}
	rc = render_compile(text, kind, tpl_r, err);
	free(text);
	if (rc == -1) {
		err->code = EX_CONFIG;
		return err_prefix(err, "%s: %s", setting, path);
	}
	return 0;
}

void
render_free(struct render_template *tpl)
{
	if (tpl == NULL)
		return;
	for (size_t i = 0; i < tpl->nparts; i++) {
		free(tpl->parts[i].key);
		free(tpl->parts[i].def);
	}
	free(tpl->parts);
	free(tpl->text);
	free(tpl);
}

size_t
render_field_count(const struct render_template *tpl)
{
	return tpl->nfields;
}

/* --- rendering --------------------------------------------------------- */

/* The value of part (NULL with *len_r 0 when missing or empty). A
 * non-string attribute is dumped as JSON into scratch (size bytes) or,
 * when longer, into *heap_r, which the caller frees. */
static const char *
render_value(const struct render_part *part, const struct render_values *v,
    char *scratch, size_t size, char **heap_r, size_t *len_r)
{
	const char *s = NULL;
	const json_t *j;
	size_t n;

	*len_r = 0;
	switch (part->field) {
	case RENDER_NAME:
		s = v->name;
		break;
	case RENDER_EMAIL:
		s = v->email;
		break;
	case RENDER_UNSUBSCRIBE_URL:
		s = v->unsubscribe_url;
		break;
	case RENDER_MANAGE_URL:
		s = v->manage_url;
		break;
	case RENDER_POSTAL_ADDRESS:
		s = v->postal_address;
		break;
	case RENDER_ORGANISATION:
		s = v->organisation;
		break;
	case RENDER_LIST:
		s = v->list;
		break;
	case RENDER_CONFIRM_URL:
		s = v->confirm_url;
		break;
	case RENDER_TITLE:
		s = v->title;
		break;
	case RENDER_CONTENT:
		s = v->content;
		break;
	case RENDER_ATTR:
		if (v->attrs == NULL ||
		    (j = json_object_get(v->attrs, part->key)) == NULL ||
		    json_is_null(j))
			return NULL;
		if (json_is_string(j)) {
			*len_r = json_string_length(j);
			return *len_r == 0 ? NULL : json_string_value(j);
		}
		n = json_dumpb(j, scratch, size, JSON_ENCODE_ANY | JSON_COMPACT);
		if (n > 0 && n <= size) {
			*len_r = n;
			return scratch;
		}
		*heap_r = json_dumps(j, JSON_ENCODE_ANY | JSON_COMPACT);
		if (*heap_r == NULL)
			return NULL;
		*len_r = strlen(*heap_r);
		return *heap_r;
	case RENDER_LITERAL:
		abort();
	}
	if (s != NULL)
		*len_r = strlen(s);
	return *len_r == 0 ? NULL : s;
}

/* Why value may not go in: a NUL byte anywhere (a JSON string may hold
 * one), a control character in a subject; NULL when it may. */
static const char *
render_value_problem(enum render_kind kind, const char *s, size_t n)
{
	const unsigned char *p = (const unsigned char *)s;

	if (memchr(s, '\0', n) != NULL)
		return "a NUL byte";
	if (!render_kinds[kind].one_line)
		return NULL;
	for (size_t i = 0; i < n; i++) {
		if (p[i] == '\r' || p[i] == '\n')
			return "a line break";
		if (p[i] < 0x20 || p[i] == 0x7f || (p[i] == 0xc2 &&
		    i + 1 < n && p[i + 1] >= 0x80 && p[i + 1] <= 0x9f))
			return "a control character";
	}
	return NULL;
}

static int
render_part(const struct render_template *tpl, const struct render_part *part,
    const struct render_values *v, struct buf *out,
    struct assent_err *err)
{
	char scratch[256], *heap = NULL;
	const char *s, *problem;
	size_t n;

	s = render_value(part, v, scratch, sizeof(scratch), &heap, &n);
	if (s == NULL) {
		if (part->def != NULL)
			buf_add(out, part->def, part->def_len);
		return 0;
	}
	if ((problem = render_value_problem(tpl->kind, s, n)) != NULL) {
		free(heap);
		return err_set(err, EX_DATAERR, "the value of %.*s holds %s: "
		    "refused in %s", (int)part->len, part->text, problem,
		    render_kinds[tpl->kind].one_line ? "a subject" : "a message");
	}
	/* content is the page's own HTML, made and escaped by assentd */
	if (render_kinds[tpl->kind].html && part->field != RENDER_CONTENT)
		render_add_html(out, s, n);
	else
		buf_add(out, s, n);
	free(heap);
	return 0;
}

int
render_run(const struct render_template *tpl,
    const struct render_values *values, struct buf *out,
    struct assent_err *err)
{
	const struct render_part *part;
	size_t start = out->len;

	buf_reserve(out, 0);
	out->data[out->len] = '\0';
	for (size_t i = 0; i < tpl->nparts; i++) {
		part = &tpl->parts[i];
		if (part->field == RENDER_LITERAL) {
			buf_add(out, part->text, part->len);
			continue;
		}
		if (render_part(tpl, part, values, out, err) == -1) {
			out->len = start;
			out->data[start] = '\0';
			return -1;
		}
	}
	return 0;
}

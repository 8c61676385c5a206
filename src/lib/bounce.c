/* bounce: reading what comes back to the bounce domain with GMime; see
 * include/assent/bounce.h. The classifier is in bounce_classify.c, the
 * plain-text bounce table in bounce_patterns.c. */
#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <gmime/gmime.h>

#include "assent/bounce.h"
#include "assent/text.h"
#include "assent/xmalloc.h"
#include "bounce_private.h"

#define BOUNCE_FIELD_MAX        2048    /* one unfolded report field */
#define BOUNCE_TEXT_SCAN_MAX    (256 * 1024)    /* plain text for patterns */
#define BOUNCE_READ_CHUNK       65536

/* ---- GMime, once per process -------------------------------------------- */

static pthread_once_t bounce_once = PTHREAD_ONCE_INIT;

static void
bounce_init_once(void)
{
	g_mime_init();
}

void
bounce_init(void)
{
	pthread_once(&bounce_once, bounce_init_once);
}

void
bounce_shutdown(void)
{
	g_mime_shutdown();
}

/* ---- small helpers, shared with bounce_patterns.c ------------------------- */

const char *
bounce_find(const char *s, size_t n, const char *needle)
{
	size_t m = strlen(needle);
	unsigned char first = (unsigned char)tolower((unsigned char)needle[0]);

	if (m == 0)
		return s;
	for (size_t i = 0; i + m <= n; i++)
		if (tolower((unsigned char)s[i]) == first &&
		    strncasecmp(s + i, needle, m) == 0 &&
		    memchr(s + i, '\0', m) == NULL)
			return s + i;
	return NULL;
}

void
bounce_copy(char *dst, size_t size, const char *src, size_t n)
{
	size_t o = 0;
	bool blank = false;

	if (size == 0)
		return;
	for (size_t i = 0; src != NULL && i < n && src[i] != '\0' &&
	    o + 1 < size; i++) {
		unsigned char c = (unsigned char)src[i];

		if (c < 0x20 || c == 0x7f || c == ' ') {
			blank = o > 0;
			continue;
		}
		if (blank) {
			dst[o++] = ' ';
			blank = false;
			if (o + 1 >= size)
				break;
		}
		dst[o++] = (char)c;
	}
	dst[o] = '\0';
	text_make_utf8(dst, o);
	for (size_t i = 0; i + 1 < o; i++)     /* C1 controls: U+0080-U+009F */
		if ((unsigned char)dst[i] == 0xc2 && (unsigned char)dst[i + 1] < 0xa0) {
			dst[i] = '?';
			dst[i + 1] = '?';
		}
}

void
bounce_copy_address(char *dst, size_t size, const char *value)
{
	const char *v = value, *semi, *lt, *gt;
	size_t n;

	dst[0] = '\0';
	if (v == NULL)
		return;
	semi = strchr(v, ';');
	if (semi != NULL && memchr(v, '@', (size_t)(semi - v)) == NULL)
		v = semi + 1;                   /* "rfc822; addr" */
	if ((lt = strchr(v, '<')) != NULL && (gt = strchr(lt, '>')) != NULL) {
		v = lt + 1;
		n = (size_t)(gt - v);
	} else {
		v += strspn(v, " \t\r\n");
		n = strcspn(v, " \t\r\n");
	}
	bounce_copy(dst, size, v, n);
}

struct bounce_recipient *
bounce_recipient_add(struct bounce_report *r)
{
	if (r->nrecipients >= BOUNCE_RECIPIENTS_MAX) {
		r->recipients_dropped++;
		return NULL;
	}
	if (r->nrecipients == r->recipients_cap) {
		r->recipients_cap = r->recipients_cap == 0 ? 2 :
		    r->recipients_cap * 2;
		if (r->recipients_cap > BOUNCE_RECIPIENTS_MAX)
			r->recipients_cap = BOUNCE_RECIPIENTS_MAX;
		r->recipients = xreallocarray(r->recipients, r->recipients_cap,
		    sizeof(r->recipients[0]));
	}
	memset(&r->recipients[r->nrecipients], 0, sizeof(r->recipients[0]));
	return &r->recipients[r->nrecipients++];
}

/* ---- reading ------------------------------------------------------------- */

int
bounce_read(FILE *in, char **data_r, size_t *len_r, bool *truncated_r,
    struct assent_err *err)
{
	size_t len = 0, cap = BOUNCE_READ_CHUNK, n;
	char *data = xmalloc(cap + 1), drain[8192];

	*truncated_r = false;
	while (len < BOUNCE_INPUT_MAX) {
		if (len == cap) {
			cap = cap * 2 > BOUNCE_INPUT_MAX ? BOUNCE_INPUT_MAX : cap * 2;
			data = xreallocarray(data, cap + 1, 1);
		}
		if ((n = fread(data + len, 1, cap - len, in)) == 0)
			break;
		len += n;
	}
	while ((n = fread(drain, 1, sizeof(drain), in)) > 0)
		*truncated_r = true;
	if (ferror(in)) {
		free(data);
		*data_r = NULL;
		*len_r = 0;
		return err_set(err, EX_IOERR, "reading the message: %s",
		    strerror(errno));
	}
	data[len] = '\0';
	*data_r = data;
	*len_r = len;
	return 0;
}

/* ---- identifiers: VERP tokens and our Message-IDs ------------------------- */

static bool
bounce_is_base32(char c)
{
	c = (char)tolower((unsigned char)c);
	return (c >= 'a' && c <= 'z') || (c >= '2' && c <= '7');
}

/* A token address at s ([bnu]-TOKEN@domain)? Fill v and return true. */
static bool
bounce_token_at(const char *s, struct bounce_verp *v)
{
	static const char prefixes[] = "bnu";
	const char *p = strchr(prefixes, tolower((unsigned char)s[0]));
	const char *dom;
	size_t i, n;

	if (s[0] == '\0' || p == NULL || s[1] != '-')
		return false;
	for (i = 0; i < TOKEN_COMPACT_TEXT_LEN; i++)
		if (!bounce_is_base32(s[2 + i]))
			return false;
	if (s[2 + i] != '@')
		return false;
	dom = s + 3 + i;
	n = strspn(dom, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
	    "0123456789.-");
	while (n > 0 && dom[n - 1] == '.')
		n--;
	if (n == 0 || n > BOUNCE_HOST_MAX)
		return false;
	v->kind = p == prefixes ? BOUNCE_TOKEN_BOUNCE : p == prefixes + 1 ?
	    BOUNCE_TOKEN_NOTICE : BOUNCE_TOKEN_UNSUBSCRIBE;
	for (i = 0; i < TOKEN_COMPACT_TEXT_LEN; i++)
		v->token[i] = (char)tolower((unsigned char)s[2 + i]);
	v->token[i] = '\0';
	for (i = 0; i < n; i++)
		v->domain[i] = (char)tolower((unsigned char)dom[i]);
	v->domain[n] = '\0';
	return true;
}

/* The first token address in value (an address, a list, "Name <addr>"),
 * unless r already has one. */
static void
bounce_verp_scan(struct bounce_report *r, const char *value,
    enum bounce_source source)
{
	if (r->verp.kind != BOUNCE_TOKEN_NONE || value == NULL)
		return;
	for (const char *s = value; *s != '\0'; s++) {
		if (s != value && strchr("<:;, \t\"'", s[-1]) == NULL)
			continue;               /* mid-word: "xb-..." is no token */
		if (bounce_token_at(s, &r->verp)) {
			r->verp.source = source;
			return;
		}
	}
}

/* Decimal (dec) or hex digits at *s, at least one, no overflow. */
static bool
bounce_number(const char **s, bool hex, uint64_t *out)
{
	uint64_t v = 0, base = hex ? 16 : 10;
	const char *p = *s;

	for (; hex ? isxdigit((unsigned char)*p) : isdigit((unsigned char)*p); p++) {
		unsigned d = isdigit((unsigned char)*p) ? (unsigned)(*p - '0') :
		    (unsigned)(tolower((unsigned char)*p) - 'a' + 10);

		if (v > (UINT64_MAX - d) / base)
			return false;
		v = v * base + d;
	}
	if (p == *s)
		return false;
	*s = p;
	*out = v;
	return true;
}

/* A signed campaign Message-ID's token at *s (TOKEN then '@')? */
static bool
bounce_msgid_token(const char **s, char token[TOKEN_COMPACT_TEXT_SIZE])
{
	size_t i;

	for (i = 0; i < TOKEN_COMPACT_TEXT_LEN; i++)
		if (!bounce_is_base32((*s)[i]))
			return false;
	if ((*s)[i] != '@')
		return false;
	for (i = 0; i < TOKEN_COMPACT_TEXT_LEN; i++)
		token[i] = (char)tolower((unsigned char)(*s)[i]);
	token[i] = '\0';
	*s += i;
	return true;
}

/* After 'c': CAMPAIGN.TOKEN (signed), CAMPAIGN.dDELIVERY (old, unsigned)
 * or CAMPAIGN.tNONCE (a test send); *s then at '@' or at ".ISSUED". */
static bool
bounce_msgid_campaign(const char **s, struct bounce_msgid *t)
{
	uint64_t nonce;

	if (!bounce_number(s, false, &t->campaign_id) || *(*s)++ != '.')
		return false;
	t->kind = BOUNCE_MSGID_CAMPAIGN;
	if (bounce_msgid_token(s, t->token))
		return true;
	if (**s == 'd') {
		(*s)++;
		return bounce_number(s, false, &t->delivery_id);
	}
	t->kind = BOUNCE_MSGID_TEST;
	if (*(*s)++ != 't')
		return false;
	return bounce_number(s, true, &nonce);
}

/* id (without <>, up to '>' or the end) as one of our Message-IDs. */
static bool
bounce_msgid_parse(const char *id, struct bounce_msgid *m)
{
	struct bounce_msgid t = { .kind = BOUNCE_MSGID_NONE };
	const char *s = id;
	uint64_t issued = 0;
	size_t n;

	if (*s == 'c') {
		s++;
		if (!bounce_msgid_campaign(&s, &t))
			return false;
	} else if (*s == 'n') {
		s++;
		t.kind = BOUNCE_MSGID_NOTICE;
		if (!bounce_number(&s, false, &t.notice_id))
			return false;
	} else
		return false;
	if (t.token[0] == '\0' && (*s++ != '.' ||
	    !bounce_number(&s, true, &issued) || issued > INT64_MAX))
		return false;
	if (*s++ != '@')
		return false;
	n = strcspn(s, "> \t\r\n");
	if (n == 0 || n > BOUNCE_HOST_MAX)
		return false;
	t.issued_at = (int64_t)issued;
	for (size_t i = 0; i < n; i++)
		t.domain[i] = (char)tolower((unsigned char)s[i]);
	t.domain[n] = '\0';
	*m = t;
	return true;
}

/* Each <id> of value (or value itself without <>), unless r has one. */
static void
bounce_msgid_scan(struct bounce_report *r, const char *value,
    enum bounce_source source)
{
	const char *s;

	if (r->msgid.kind != BOUNCE_MSGID_NONE || value == NULL)
		return;
	value += strspn(value, " \t");
	if (strchr(value, '<') == NULL) {
		if (bounce_msgid_parse(value, &r->msgid))
			r->msgid.source = source;
		return;
	}
	for (s = strchr(value, '<'); s != NULL; s = strchr(s + 1, '<'))
		if (bounce_msgid_parse(s + 1, &r->msgid)) {
			r->msgid.source = source;
			return;
		}
}

/* ---- report fields (message/delivery-status, message/feedback-report) --- */

/* Called for each field of each block; block counts from 0, and a call
 * with name NULL ends a block. */
typedef void (*bounce_field_fn)(void *arg, const char *name,
    const char *value);

struct bounce_fields {
	bounce_field_fn fn;
	void *arg;
	char field[BOUNCE_FIELD_MAX + 1];
	size_t len;
	bool in_block;
};

static void
bounce_field_flush(struct bounce_fields *f)
{
	char *colon;

	if (f->len == 0)
		return;
	f->field[f->len] = '\0';
	f->len = 0;
	if ((colon = strchr(f->field, ':')) == NULL || colon == f->field)
		return;                         /* not a field: ignored */
	*colon = '\0';
	f->fn(f->arg, f->field, colon + 1 + strspn(colon + 1, " \t"));
}

static void
bounce_field_append(struct bounce_fields *f, const char *s, size_t n)
{
	if (n > BOUNCE_FIELD_MAX - f->len)
		n = BOUNCE_FIELD_MAX - f->len;
	memcpy(f->field + f->len, s, n);
	f->len += n;
}

/* Split data (len bytes) into blocks of "Name: value" fields, unfolded. */
static void
bounce_fields_parse(const char *data, size_t len, bounce_field_fn fn,
    void *arg)
{
	struct bounce_fields *f = xcalloc(1, sizeof(*f));
	const char *p = data, *end = data + len, *nl;
	size_t n;

	f->fn = fn;
	f->arg = arg;
	for (; p < end; p = nl + 1) {
		nl = memchr(p, '\n', (size_t)(end - p));
		if (nl == NULL)
			nl = end;
		n = (size_t)(nl - p);
		if (n > 0 && p[n - 1] == '\r')
			n--;
		if (n == 0 || strspn(p, " \t") >= n) {
			bounce_field_flush(f);
			if (f->in_block)
				fn(arg, NULL, NULL);
			f->in_block = false;
			continue;
		}
		if (p[0] != ' ' && p[0] != '\t')
			bounce_field_flush(f);
		else if (f->len > 0)
			bounce_field_append(f, " ", 1);
		bounce_field_append(f, p, n);
		f->in_block = true;
	}
	bounce_field_flush(f);
	if (f->in_block)
		fn(arg, NULL, NULL);
	free(f);
}

/* After "TYPE;" when there is one. */
static const char *
bounce_after_type(const char *value)
{
	const char *semi = strchr(value, ';');

	if (semi == NULL)
		return value;
	return semi + 1 + strspn(semi + 1, " \t");
}

struct bounce_dsn {
	struct bounce_report *r;
	struct bounce_recipient cur;
	bool has_cur;
};

static void
bounce_dsn_end_block(struct bounce_dsn *d)
{
	struct bounce_recipient *rc;

	if (!d->has_cur)
		return;
	d->has_cur = false;
	bounce_status_refine(d->cur.status, d->cur.diagnostic);
	d->cur.class = bounce_classify(d->cur.action, d->cur.status,
	    d->cur.smtp_code, d->cur.diagnostic, &d->cur.why);
	if ((rc = bounce_recipient_add(d->r)) != NULL)
		*rc = d->cur;
	memset(&d->cur, 0, sizeof(d->cur));
}

static void
bounce_dsn_field(void *arg, const char *name, const char *value)
{
	struct bounce_dsn *d = arg;
	struct bounce_recipient *c = &d->cur;

	if (name == NULL)
		bounce_dsn_end_block(d);
	else if (strcasecmp(name, "Reporting-MTA") == 0)
		bounce_copy(d->r->reporting_mta, sizeof(d->r->reporting_mta),
		    bounce_after_type(value), SIZE_MAX);
	else if (strcasecmp(name, "Final-Recipient") == 0) {
		if (d->has_cur && c->final_recipient[0] != '\0')
			bounce_dsn_end_block(d);        /* blocks run together */
		bounce_copy_address(c->final_recipient,
		    sizeof(c->final_recipient), value);
		d->has_cur = true;
	} else if (strcasecmp(name, "Original-Recipient") == 0)
		bounce_copy_address(c->original_recipient,
		    sizeof(c->original_recipient), value);
	else if (strcasecmp(name, "Action") == 0)
		c->action = bounce_action_parse(value), d->has_cur = true;
	else if (strcasecmp(name, "Status") == 0)
		bounce_status_find(value, c->status), d->has_cur = true;
	else if (strcasecmp(name, "Diagnostic-Code") == 0) {
		bounce_copy(c->diagnostic, sizeof(c->diagnostic),
		    bounce_after_type(value), SIZE_MAX);
		c->smtp_code = bounce_smtp_code_find(c->diagnostic);
	} else if (strcasecmp(name, "Remote-MTA") == 0)
		bounce_copy(c->remote_mta, sizeof(c->remote_mta),
		    bounce_after_type(value), SIZE_MAX);
}

static void
bounce_arf_field(void *arg, const char *name, const char *value)
{
	struct bounce_arf *a = arg;

	if (name == NULL)
		return;
	if (strcasecmp(name, "Feedback-Type") == 0 && a->feedback_type[0] == '\0') {
		bounce_copy(a->feedback_type, sizeof(a->feedback_type), value,
		    strcspn(value, " \t;("));
		for (char *s = a->feedback_type; *s != '\0'; s++)
			*s = (char)tolower((unsigned char)*s);
	} else if (strcasecmp(name, "User-Agent") == 0)
		bounce_copy(a->user_agent, sizeof(a->user_agent), value, SIZE_MAX);
	else if (strcasecmp(name, "Original-Mail-From") == 0)
		bounce_copy_address(a->original_mail_from,
		    sizeof(a->original_mail_from), value);
	else if (strcasecmp(name, "Original-Rcpt-To") == 0 &&
	    a->original_rcpt_to[0] == '\0')
		bounce_copy_address(a->original_rcpt_to,
		    sizeof(a->original_rcpt_to), value);
	else if (strcasecmp(name, "Reported-Domain") == 0)
		bounce_copy(a->reported_domain, sizeof(a->reported_domain), value,
		    SIZE_MAX);
	else if (strcasecmp(name, "Source-IP") == 0)
		bounce_copy(a->source_ip, sizeof(a->source_ip), value, SIZE_MAX);
}

/* ---- the MIME tree ------------------------------------------------------- */

struct bounce_parts {
	GMimeObject *delivery_status;
	GMimeObject *feedback;
	GMimeObject *original;          /* message/rfc822 or headers */
	GMimeObject *text;              /* the first text/plain */
	bool report;                    /* a multipart/report was seen */
	unsigned seen;
};

static bool
bounce_type_is(GMimeObject *o, const char *type, const char *subtype)
{
	GMimeContentType *ct = g_mime_object_get_content_type(o);

	return ct != NULL && g_mime_content_type_is_type(ct, type, subtype);
}

/* Find the parts that matter; attached messages are not entered (a
 * bounce of a bounce is about the outer one). */
static void
bounce_walk(GMimeObject *o, int depth, struct bounce_parts *p)
{
	if (o == NULL || depth > BOUNCE_DEPTH_MAX || ++p->seen > BOUNCE_PARTS_MAX)
		return;
	if (GMIME_IS_MULTIPART(o)) {
		GMimeMultipart *mp = GMIME_MULTIPART(o);
		int n = g_mime_multipart_get_count(mp);

		if (bounce_type_is(o, "multipart", "report"))
			p->report = true;
		for (int i = 0; i < n && p->seen < BOUNCE_PARTS_MAX; i++)
			bounce_walk(g_mime_multipart_get_part(mp, i), depth + 1, p);
	} else if (GMIME_IS_MESSAGE_PART(o)) {
		if (p->original == NULL)
			p->original = o;
	} else if (!GMIME_IS_PART(o))
		return;
	else if (bounce_type_is(o, "message", "delivery-status") ||
	    bounce_type_is(o, "message", "global-delivery-status")) {
		if (p->delivery_status == NULL)
			p->delivery_status = o;
	} else if (bounce_type_is(o, "message", "feedback-report")) {
		if (p->feedback == NULL)
			p->feedback = o;
	} else if (bounce_type_is(o, "text", "rfc822-headers") ||
	    bounce_type_is(o, "message", "global-headers")) {
		if (p->original == NULL)
			p->original = o;
	} else if (bounce_type_is(o, "text", "plain") && p->text == NULL)
		p->text = o;
}

/* A part's content, transfer encoding undone, at most max bytes, NUL
 * terminated; the caller frees it. NULL when there is none. */
static char *
bounce_part_bytes(GMimeObject *o, size_t max, size_t *len_r)
{
	GMimeDataWrapper *dw = g_mime_part_get_content(GMIME_PART(o));
	GMimeStream *mem;
	GByteArray *ba;
	char *out = NULL;

	*len_r = 0;
	if (dw == NULL)
		return NULL;
	mem = g_mime_stream_mem_new();
	if (g_mime_data_wrapper_write_to_stream(dw, mem) >= 0) {
		ba = g_mime_stream_mem_get_byte_array(GMIME_STREAM_MEM(mem));
		*len_r = ba->len < max ? ba->len : max;
		out = xmalloc(*len_r + 1);
		if (*len_r > 0)
			memcpy(out, ba->data, *len_r);
		out[*len_r] = '\0';
	}
	g_object_unref(mem);
	return out;
}

static GMimeMessage *
bounce_gmime_parse(const char *data, size_t len)
{
	GMimeStream *stream;
	GMimeParser *parser;
	GMimeMessage *msg;

	stream = g_mime_stream_mem_new_with_buffer(data, len);
	parser = g_mime_parser_new_with_stream(stream);
	g_object_unref(stream);
	g_mime_parser_set_format(parser, GMIME_FORMAT_MESSAGE);
	msg = g_mime_parser_construct_message(parser, NULL);
	g_object_unref(parser);
	return msg;
}

/* The headers of the attached original. */
static void
bounce_original(struct bounce_report *r, GMimeObject *o)
{
	struct bounce_original *orig = &r->original;
	GMimeMessage *msg = NULL, *own = NULL;
	char *bytes = NULL;
	size_t len;
	const char *v;

	if (o == NULL)
		return;
	if (GMIME_IS_MESSAGE_PART(o))
		msg = g_mime_message_part_get_message(GMIME_MESSAGE_PART(o));
	else if ((bytes = bounce_part_bytes(o, BOUNCE_INPUT_MAX, &len)) != NULL) {
		own = msg = bounce_gmime_parse(bytes, len);
		orig->headers_only = true;
	}
	if (msg != NULL) {
		orig->present = true;
		v = g_mime_object_get_header(GMIME_OBJECT(msg), "Return-Path");
		bounce_copy_address(orig->return_path, sizeof(orig->return_path), v);
		v = g_mime_object_get_header(GMIME_OBJECT(msg), "From");
		bounce_copy(orig->from, sizeof(orig->from), v, SIZE_MAX);
		v = g_mime_object_get_header(GMIME_OBJECT(msg), "To");
		bounce_copy(orig->to, sizeof(orig->to), v, SIZE_MAX);
		v = g_mime_message_get_message_id(msg);
		bounce_copy(orig->message_id, sizeof(orig->message_id), v,
		    SIZE_MAX);
	}
	if (own != NULL)
		g_object_unref(own);
	free(bytes);
}

/* ---- the kinds ------------------------------------------------------------ */

static void
bounce_dsn(struct bounce_report *r, GMimeObject *part)
{
	struct bounce_dsn *d = xcalloc(1, sizeof(*d));
	char *bytes;
	size_t len;

	d->r = r;
	if ((bytes = bounce_part_bytes(part, BOUNCE_INPUT_MAX, &len)) != NULL)
		bounce_fields_parse(bytes, len, bounce_dsn_field, d);
	bounce_dsn_end_block(d);
	free(bytes);
	free(d);
}

static void
bounce_arf(struct bounce_report *r, GMimeObject *part)
{
	struct bounce_arf *a = &r->arf;
	struct bounce_recipient *rc;
	char *bytes;
	size_t len;

	if ((bytes = bounce_part_bytes(part, BOUNCE_INPUT_MAX, &len)) != NULL)
		bounce_fields_parse(bytes, len, bounce_arf_field, a);
	free(bytes);
	if ((rc = bounce_recipient_add(r)) == NULL)
		return;
	if (a->original_rcpt_to[0] != '\0')
		memcpy(rc->final_recipient, a->original_rcpt_to,
		    sizeof(rc->final_recipient));
	else
		bounce_copy_address(rc->final_recipient,
		    sizeof(rc->final_recipient), r->original.to);
	if (strchr(rc->final_recipient, '@') == NULL)
		rc->final_recipient[0] = '\0';         /* redacted */
	if (strcmp(a->feedback_type, "abuse") == 0) {
		rc->class = BOUNCE_CLASS_COMPLAINT;
		rc->why = "feedback-type abuse";
	} else {
		rc->class = BOUNCE_CLASS_NONE;
		rc->why = "feedback-type other than abuse";
	}
}

/* Plain text for the patterns: the first text/plain part in UTF-8. */
static bool
bounce_plain(struct bounce_report *r, GMimeObject *text)
{
	char *s;
	size_t len;
	bool found;

	if (text == NULL || !GMIME_IS_TEXT_PART(text))
		return false;
	s = g_mime_text_part_get_text(GMIME_TEXT_PART(text));
	if (s == NULL)
		return false;
	len = strlen(s);
	if (len > BOUNCE_TEXT_SCAN_MAX)
		len = BOUNCE_TEXT_SCAN_MAX;
	found = bounce_patterns_scan(s, len, r);
	g_free(s);
	return found;
}

static const char *const bounce_auto_subjects[] = {
	"out of office", "out of the office", "automatic reply", "auto reply",
	"auto-reply", "autoreply", "auto response", "auto-response",
	"autoresponse", "on vacation", "vacation reply", "abwesenheitsnotiz",
	"réponse automatique", "respuesta automática",
};

static bool
bounce_is_auto_reply(GMimeObject *top, const char *subject)
{
	const char *v;
	size_t n;

	v = g_mime_object_get_header(top, "Auto-Submitted");
	if (v != NULL) {
		v += strspn(v, " \t");
		n = strcspn(v, " \t;(");
		if (n > 0 && !(n == 2 && strncasecmp(v, "no", 2) == 0))
			return true;
	}
	if (g_mime_object_get_header(top, "X-Autoreply") != NULL ||
	    g_mime_object_get_header(top, "X-Autorespond") != NULL)
		return true;
	v = g_mime_object_get_header(top, "Precedence");
	if (v != NULL && bounce_find(v, strlen(v), "auto_reply") != NULL)
		return true;
	if (strncasecmp(subject, "auto:", 5) == 0)
		return true;
	for (size_t i = 0; i < sizeof(bounce_auto_subjects) /
	    sizeof(bounce_auto_subjects[0]); i++)
		if (bounce_find(subject, strlen(subject), bounce_auto_subjects[i]))
			return true;
	return false;
}

/* Is from (the message's From) a mailer daemon's, as bounces are? */
static bool
bounce_from_daemon(const char *from)
{
	static const char *const names[] = {
		"mailer-daemon@", "mailer_daemon@", "mail-daemon@", "postmaster@",
		"mail delivery",
	};

	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
		if (bounce_find(from, strlen(from), names[i]) != NULL)
			return true;
	return false;
}

/* The message's own headers: what it says it is, and where a token may
 * be. */
static void
bounce_own_headers(struct bounce_report *r, GMimeMessage *msg)
{
	GMimeObject *top = GMIME_OBJECT(msg);
	const char *v;

	v = g_mime_object_get_header(top, "From");
	bounce_copy(r->from, sizeof(r->from), v, SIZE_MAX);
	v = g_mime_message_get_subject(msg);
	bounce_copy(r->subject, sizeof(r->subject), v, SIZE_MAX);
	bounce_verp_scan(r, g_mime_object_get_header(top, "Delivered-To"),
	    BOUNCE_SOURCE_DELIVERED_TO);
	bounce_verp_scan(r, g_mime_object_get_header(top, "X-Original-To"),
	    BOUNCE_SOURCE_X_ORIGINAL_TO);
	bounce_verp_scan(r, g_mime_object_get_header(top, "To"),
	    BOUNCE_SOURCE_TO);
}

/* Decide the kind of a message GMime could read. */
static void
bounce_classify_message(struct bounce_report *r, GMimeMessage *msg)
{
	struct bounce_parts p = { 0 };

	bounce_own_headers(r, msg);
	bounce_walk(g_mime_message_get_mime_part(msg), 0, &p);
	bounce_original(r, p.original);
	bounce_verp_scan(r, r->original.return_path,
	    BOUNCE_SOURCE_ORIGINAL_RETURN_PATH);
	bounce_msgid_scan(r, r->original.message_id,
	    BOUNCE_SOURCE_ORIGINAL_MESSAGE_ID);
	if (p.feedback != NULL) {
		bounce_arf(r, p.feedback);
		bounce_verp_scan(r, r->arf.original_mail_from,
		    BOUNCE_SOURCE_ORIGINAL_MAIL_FROM);
		r->kind = BOUNCE_KIND_ARF;
		r->detail = "RFC 5965 feedback report";
		return;
	}
	if (p.delivery_status != NULL) {
		bounce_dsn(r, p.delivery_status);
		if (r->nrecipients > 0) {
			r->kind = BOUNCE_KIND_DSN;
			r->detail = "RFC 3464 delivery status notification";
			return;
		}
	}
	if (r->verp.kind == BOUNCE_TOKEN_UNSUBSCRIBE &&
	    r->verp.source < BOUNCE_SOURCE_ORIGINAL_RETURN_PATH) {
		r->kind = BOUNCE_KIND_MAILTO_UNSUBSCRIBE;
		r->detail = "sent to a mailto unsubscribe address";
		return;
	}
	if (bounce_plain(r, p.text)) {
		r->kind = BOUNCE_KIND_DSN;
		r->detail = "plain-text bounce";
		return;
	}
	if (p.report || p.delivery_status != NULL || bounce_from_daemon(r->from)) {
		r->detail = p.report || p.delivery_status != NULL ?
		    "a report without any recipient" :
		    "from a mailer daemon, but no known bounce";
		return;
	}
	if (bounce_is_auto_reply(GMIME_OBJECT(msg), r->subject)) {
		r->kind = BOUNCE_KIND_AUTO_REPLY;
		r->detail = "auto-reply";
		return;
	}
	r->detail = "neither a bounce, a complaint, an auto-reply nor an unsubscribe";
}

void
bounce_parse(const char *data, size_t len, const char *envelope_rcpt,
    struct bounce_report *r)
{
	GMimeMessage *msg;

	memset(r, 0, sizeof(*r));
	r->size = len;
	if (len > BOUNCE_INPUT_MAX) {
		len = BOUNCE_INPUT_MAX;
		r->truncated = true;
	}
	r->detail = "empty message";
	bounce_init();
	if (envelope_rcpt != NULL && envelope_rcpt[0] != '\0')
		bounce_verp_scan(r, envelope_rcpt, BOUNCE_SOURCE_ENVELOPE);
	if (len == 0)
		return;
	if ((msg = bounce_gmime_parse(data, len)) == NULL) {
		r->detail = "not a mail message";
		return;
	}
	bounce_classify_message(r, msg);
	bounce_msgid_scan(r, g_mime_object_get_header(GMIME_OBJECT(msg),
	    "In-Reply-To"), BOUNCE_SOURCE_IN_REPLY_TO);
	bounce_msgid_scan(r, g_mime_object_get_header(GMIME_OBJECT(msg),
	    "References"), BOUNCE_SOURCE_REFERENCES);
	g_object_unref(msg);
}

void
bounce_report_free(struct bounce_report *r)
{
	free(r->recipients);
	memset(r, 0, sizeof(*r));
}

/* check_mime: the message builder (src/lib/mime.c). Messages are parsed
 * back with GMime: headers decode to the inputs, parts have the right
 * types and charsets, bodies decode to the inputs; every line ends in
 * CRLF within the limits; header injection is refused; three golden
 * files are compared byte for byte.
 *
 * Golden files: tests/data/mime/{plain,alternative,nonascii}.eml under
 * $ASSENT_SRCDIR. After a deliberate change to the output, run
 *	ASSENT_UPDATE_GOLDEN=1 ASSENT_SRCDIR=/path/to/src tests/unit/check_mime
 * to rewrite them, and review the diff before committing it. */
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <check.h>
#include "testhelp.h"
#include <gmime/gmime.h>

#include "assent/err.h"
#include "assent/mime.h"
#include "assent/text.h"

#define DATE     1732017600     /* Tue, 19 Nov 2024 12:00:00 +0000 */
#define URL      "https://example.org/u/AbC-123_xyz?l=7&c=42"
#define MAILTO   "unsubscribe+AbC@example.org"

static const char text_plain[] =
    "Hello Ann,\n"
    "\n"
    "This week: three short stories and a long one.\n"
    "\n"
    "Unsubscribe: " URL "\n"
    "Assent News, 1 Main Street, 12345 Town\n";

static const char html_plain[] =
    "<!DOCTYPE html>\n"
    "<html><body>\n"
    "<p>Hello Ann,</p>\n"
    "<p>This week: three short stories and a long one.</p>\n"
    "<p><a href=\"https://example.org/u/AbC-123_xyz?l=7&amp;c=42\">"
    "Unsubscribe</a></p>\n"
    "</body></html>\n";

/* ---- building blocks ------------------------------------------------- */

static void
base_message(struct mime_message *m)
{
	memset(m, 0, sizeof(*m));
	m->from.name = "Assent News";
	m->from.address = "news@example.org";
	m->to.name = "Ann Example";
	m->to.address = "ann@example.org";
	m->subject = "Weekly news for Ann";
	m->date = DATE;
	m->message_id = "c42.d1001";
	m->list_name = "Weekly news";
	m->list_id = "news.lists.example.org";
	m->unsubscribe_url = URL;
	m->unsubscribe_mailto = MAILTO;
	m->text = text_plain;
	m->html = NULL;
	m->boundary_seed = "c42d1001";
}

/* The body the message must decode to: LF becomes CRLF. */
static char *
crlf(const char *s)
{
	char *out = malloc(2 * strlen(s) + 1), *o = out;

	for (; *s != '\0'; s++) {
		if (*s == '\n' && (o == out || o[-1] != '\r'))
			*o++ = '\r';
		*o++ = *s;
	}
	*o = '\0';
	return out;
}

static char *
build(const struct mime_message *m)
{
	struct assent_err err;
	struct buf b;
	char *s;

	buf_init(&b);
	ck_assert_msg(mime_build(m, &b, &err) == 0, "%s", err.msg);
	ck_assert_uint_eq(strlen(b.data), b.len);
	s = strdup(b.data);
	buf_free(&b);
	return s;
}

/* ---- line checks on the raw message ---------------------------------- */

/* Q-decode one encoded-word's text (between "?Q?" and "?="). */
static size_t
q_decode(const char *s, size_t n, char *out)
{
	size_t o = 0;

	for (size_t i = 0; i < n; i++) {
		if (s[i] == '_')
			out[o++] = ' ';
		else if (s[i] == '=' && i + 2 < n + 1) {
			unsigned v;

			ck_assert(sscanf(s + i + 1, "%2x", &v) == 1);
			out[o++] = (char)v;
			i += 2;
		} else
			out[o++] = s[i];
	}
	return o;
}

/* Every encoded-word in the header block: at most 75 octets, and its
 * text is whole UTF-8 (no character split between two words). */
static void
check_encoded_words(const char *msg, size_t hdr_len)
{
	const char *p = msg, *end;
	char dec[128];

	while ((p = strstr(p, "=?UTF-8?Q?")) != NULL &&
	    (size_t)(p - msg) < hdr_len) {
		end = strstr(p + 10, "?=");
		ck_assert_ptr_nonnull(end);
		ck_assert_msg(end + 2 - p <= 75, "encoded-word of %d octets",
		    (int)(end + 2 - p));
		ck_assert(text_is_utf8(dec, q_decode(p + 10,
		    (size_t)(end - p - 10), dec)));
		p = end + 2;
	}
}

/* CRLF only; headers within 78 octets (when fold_ok), body lines within
 * 76 (quoted-printable), nothing over 998. */
static void
check_lines(const char *msg, bool fold_ok)
{
	const char *p = msg, *nl;
	bool in_body = false;
	size_t len, hdr_len = 0;

	ck_assert_uint_gt(strlen(msg), 2);
	ck_assert_msg(strstr(msg, "\r\n") != NULL, "no CRLF");
	while (*p != '\0') {
		nl = strchr(p, '\n');
		ck_assert_msg(nl != NULL, "last line without CRLF");
		ck_assert_msg(nl > p && nl[-1] == '\r', "bare LF at %d",
		    (int)(nl - msg));
		len = (size_t)(nl - 1 - p);
		ck_assert_msg(memchr(p, '\r', len) == NULL, "bare CR at %d",
		    (int)(p - msg));
		ck_assert_uint_le(len, 998);
		if (in_body)
			ck_assert_msg(len <= MIME_QP_LINE_MAX, "body line of %zu: "
			    "%.*s", len, (int)len, p);
		else if (fold_ok)
			ck_assert_msg(len <= MIME_LINE_MAX, "header line of %zu: "
			    "%.*s", len, (int)len, p);
		if (len == 0 && !in_body) {
			in_body = true;
			hdr_len = (size_t)(p - msg);
		}
		p = nl + 1;
	}
	ck_assert(in_body);
	check_encoded_words(msg, hdr_len);
}

/* ---- parsing back with GMime ----------------------------------------- */

static GMimeMessage *
parse(const char *msg)
{
	GMimeStream *stream;
	GMimeParser *parser;
	GMimeMessage *m;

	stream = g_mime_stream_mem_new_with_buffer(msg, strlen(msg));
	parser = g_mime_parser_new_with_stream(stream);
	m = g_mime_parser_construct_message(parser, NULL);
	g_object_unref(parser);
	g_object_unref(stream);
	ck_assert_ptr_nonnull(m);
	return m;
}

/* The part's decoded content, NUL-terminated, fresh. */
static char *
part_content(GMimeObject *obj)
{
	GMimeDataWrapper *dw;
	GMimeStream *out;
	GByteArray *ba;
	char *s;

	ck_assert(GMIME_IS_PART(obj));
	dw = g_mime_part_get_content(GMIME_PART(obj));
	ck_assert_ptr_nonnull(dw);
	out = g_mime_stream_mem_new();
	ck_assert(g_mime_data_wrapper_write_to_stream(dw, out) >= 0);
	ba = g_mime_stream_mem_get_byte_array(GMIME_STREAM_MEM(out));
	s = malloc(ba->len + 1);
	if (ba->len > 0)        /* an empty body has no data pointer */
		memcpy(s, ba->data, ba->len);
	s[ba->len] = '\0';
	g_object_unref(out);
	return s;
}

static void
check_part(GMimeObject *obj, const char *subtype, const char *body)
{
	GMimeContentType *ct = g_mime_object_get_content_type(obj);
	char *got, *want;

	ck_assert_str_eq(g_mime_content_type_get_media_type(ct), "text");
	ck_assert_str_eq(g_mime_content_type_get_media_subtype(ct), subtype);
	ck_assert_str_eq(g_mime_object_get_content_type_parameter(obj,
	    "charset"), "utf-8");
	ck_assert_int_eq(g_mime_part_get_content_encoding(GMIME_PART(obj)),
	    GMIME_CONTENT_ENCODING_QUOTEDPRINTABLE);
	got = part_content(obj);
	want = crlf(body);
	ck_assert_uint_eq(strlen(got), strlen(want));
	ck_assert_msg(strcmp(got, want) == 0, "body differs:\n%s\n---\n%s",
	    got, want);
	free(got);
	free(want);
}

static void
check_mailbox(InternetAddressList *list, const struct mime_mailbox *mb)
{
	InternetAddress *ia;

	ck_assert_ptr_nonnull(list);
	ck_assert_int_eq(internet_address_list_length(list), 1);
	ia = internet_address_list_get_address(list, 0);
	ck_assert(INTERNET_ADDRESS_IS_MAILBOX(ia));
	ck_assert_str_eq(internet_address_mailbox_get_addr(
	    INTERNET_ADDRESS_MAILBOX(ia)), mb->address);
	if (mb->name == NULL || mb->name[0] == '\0')
		ck_assert(internet_address_get_name(ia) == NULL ||
		    internet_address_get_name(ia)[0] == '\0');
	else
		ck_assert_str_eq(internet_address_get_name(ia), mb->name);
}

/* Header value with folds removed (CRLF deleted, as RFC 5322 says). */
static char *
header_unfolded(GMimeObject *obj, const char *name)
{
	GMimeHeader *h = g_mime_header_list_get_header(
	    g_mime_object_get_header_list(obj), name);
	const char *raw;
	char *s, *o;

	ck_assert_msg(h != NULL, "no %s header", name);
	raw = g_mime_header_get_raw_value(h);
	s = o = malloc(strlen(raw) + 1);
	for (; *raw != '\0'; raw++)
		if (*raw != '\r' && *raw != '\n')
			*o++ = *raw;
	*o = '\0';
	/* the raw value keeps the space after the colon */
	if (s[0] == ' ')
		memmove(s, s + 1, strlen(s));
	return s;
}

static size_t
count(const char *s, const char *needle)
{
	size_t n = 0;

	while ((s = strstr(s, needle)) != NULL) {
		n++;
		s += strlen(needle);
	}
	return n;
}

/* Everything a message must show, parsed back. */
static void
check_message(const struct mime_message *m, const char *raw)
{
	GMimeMessage *msg = parse(raw);
	GMimeObject *obj = GMIME_OBJECT(msg), *body;
	GDateTime *date;
	char *v, *want, *dec;

	ck_assert_str_eq(g_mime_message_get_subject(msg) != NULL ?
	    g_mime_message_get_subject(msg) : "", m->subject);
	check_mailbox(g_mime_message_get_from(msg), &m->from);
	check_mailbox(g_mime_message_get_to(msg), &m->to);
	if (m->reply_to.address != NULL)
		check_mailbox(g_mime_message_get_reply_to(msg), &m->reply_to);
	else
		ck_assert_ptr_null(g_mime_object_get_header(obj, "Reply-To"));
	want = g_strdup_printf("%s@%s", m->message_id,
	    strchr(m->from.address, '@') + 1);
	ck_assert_str_eq(g_mime_message_get_message_id(msg), want);
	g_free(want);
	date = g_mime_message_get_date(msg);
	ck_assert_ptr_nonnull(date);
	ck_assert_int_eq(g_date_time_to_unix(date), (gint64)m->date);
	ck_assert_str_eq(g_mime_object_get_header(obj, "MIME-Version"), "1.0");

	v = header_unfolded(obj, "List-Unsubscribe");
	want = m->unsubscribe_mailto != NULL ?
	    g_strdup_printf("<%s>, <mailto:%s>", m->unsubscribe_url,
	    m->unsubscribe_mailto) : g_strdup_printf("<%s>", m->unsubscribe_url);
	ck_assert_str_eq(v, want);
	ck_assert_uint_eq(count(v, "https:"), 1);
	ck_assert_uint_eq(count(v, "<"), m->unsubscribe_mailto != NULL ? 2 : 1);
	free(v);
	g_free(want);
	ck_assert_str_eq(g_mime_object_get_header(obj, "List-Unsubscribe-Post"),
	    "List-Unsubscribe=One-Click");

	v = header_unfolded(obj, "List-Id");
	dec = g_mime_utils_header_decode_phrase(NULL, v);
	want = m->list_name != NULL && m->list_name[0] != '\0' ?
	    g_strdup_printf("%s <%s>", m->list_name, m->list_id) :
	    g_strdup_printf("<%s>", m->list_id);
	if (strchr(v, '"') == NULL) {
		ck_assert_str_eq(dec, want);
		ck_assert_uint_eq(count(v, "<"), 1);
	}
	free(v);
	g_free(dec);
	g_free(want);

	body = g_mime_message_get_mime_part(msg);
	ck_assert_ptr_nonnull(body);
	if (m->html == NULL)
		check_part(body, "plain", m->text);
	else {
		GMimeContentType *ct = g_mime_object_get_content_type(body);

		ck_assert(GMIME_IS_MULTIPART(body));
		ck_assert_str_eq(g_mime_content_type_get_media_subtype(ct),
		    "alternative");
		ck_assert_int_eq(g_mime_multipart_get_count(
		    GMIME_MULTIPART(body)), 2);
		check_part(g_mime_multipart_get_part(GMIME_MULTIPART(body), 0),
		    "plain", m->text);
		check_part(g_mime_multipart_get_part(GMIME_MULTIPART(body), 1),
		    "html", m->html);
	}
	g_object_unref(msg);
}

/* ---- the message kinds ------------------------------------------------ */

START_TEST(test_plain)
{
	struct mime_message m;
	char *raw;

	base_message(&m);
	raw = build(&m);
	check_lines(raw, true);
	check_message(&m, raw);
	ck_assert_ptr_null(strstr(raw, "multipart"));
	ck_assert_ptr_nonnull(strstr(raw, "\r\nContent-Type: text/plain; "
	    "charset=utf-8\r\nContent-Transfer-Encoding: quoted-printable\r\n"));
	ck_assert(strncmp(raw, "Date: Tue, 19 Nov 2024 12:00:00 +0000\r\n",
	    39) == 0);
	ck_assert_ptr_nonnull(strstr(raw, "\r\nMessage-ID: "
	    "<c42.d1001@example.org>\r\n"));
	free(raw);
}
END_TEST

START_TEST(test_alternative)
{
	struct mime_message m;
	char *raw;

	base_message(&m);
	m.html = html_plain;
	m.reply_to.address = "editor@example.org";
	m.reply_to.name = "The Editor";
	raw = build(&m);
	check_lines(raw, true);
	check_message(&m, raw);
	/* text first, then HTML; each with its charset */
	ck_assert_ptr_nonnull(strstr(raw, "text/plain; charset=utf-8"));
	ck_assert(strstr(raw, "text/plain") < strstr(raw, "text/html"));
	ck_assert_uint_eq(count(raw, "charset=utf-8"), 2);
	ck_assert_uint_eq(count(raw, "--=_assent_c42d1001\r\n"), 2);
	ck_assert_uint_eq(count(raw, "--=_assent_c42d1001--\r\n"), 1);
	free(raw);
}
END_TEST

/* A long unbroken line: quoted-printable keeps every line within 76. */
START_TEST(test_long_html_line)
{
	static const char pattern[] = "<a href=\"x\">=\xc3\xa9</a>";
	size_t n = 100 * 1024;
	char *html = malloc(n + 1), *raw;
	struct mime_message m;

	for (size_t i = 0; i < n; i++)
		html[i] = pattern[i % (sizeof(pattern) - 1)];
	/* keep it valid UTF-8: never cut the two-byte character */
	for (size_t i = 0; i < n; i++)
		if ((unsigned char)html[i] == 0xc3 && i + 1 == n)
			html[i] = 'x';
	html[n] = '\0';
	ck_assert(text_is_utf8(html, n));
	base_message(&m);
	m.html = html;
	raw = build(&m);
	check_lines(raw, true);
	check_message(&m, raw);
	free(raw);
	free(html);
}
END_TEST

/* Bodies that test the encoder's edges; each decodes back exactly. */
static const char *const body_cases[] = {
	"",
	"no newline at the end",
	"trailing spaces   \ntrailing tab\t\nboth \t \n",
	"trailing space at the very end ",
	".\n..\n.leading dot\n",
	"From here\nFrom the start\n>From quoted\nFromage\n",
	"crlf\r\nalready\r\n",
	"a lone\rcarriage return\r",
	"equals = and =3D and =\n",
	"caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x93\xac \xe4\xb8\xad\xe6\x96\x87\n",
	"\n\n\n",
	"tab\tinside\tthe\tline\n",
	/* lines of 74, 75, 76 and 77 characters around the soft break */
	"12345678901234567890123456789012345678901234567890123456789012345678901234\n"
	"123456789012345678901234567890123456789012345678901234567890123456789012345\n"
	"1234567890123456789012345678901234567890123456789012345678901234567890123456\n"
	"12345678901234567890123456789012345678901234567890123456789012345678901234567\n",
	/* an escape that would straddle the soft break */
	"1234567890123456789012345678901234567890123456789012345678901234567890123\xc3\xa9\xc3\xa9\n",
	/* a space and a dot where a soft break falls */
	"123456789012345678901234567890123456789012345678901234567890123456789012345 .x\n",
	"123456789012345678901234567890123456789012345678901234567890123456789012345.x\n",
	"\x01\x7f\x1b[0m control bytes\n",
};

START_TEST(test_bodies)
{
	struct mime_message m;
	char *raw;

	base_message(&m);
	m.text = body_cases[_i];
	m.html = _i % 2 == 0 ? body_cases[_i] : NULL;
	raw = build(&m);
	check_lines(raw, true);
	check_message(&m, raw);
	free(raw);
}
END_TEST

/* Encoded lines never start with '.' or "From " (encoded instead). */
START_TEST(test_dot_and_from_encoded)
{
	struct mime_message m;
	char *raw;

	base_message(&m);
	m.text = ".dot\nFrom me\n"
	    "123456789012345678901234567890123456789012345678901234567890123456789012345.x\n";
	raw = build(&m);
	ck_assert_ptr_nonnull(strstr(raw, "\r\n\r\n=2Edot\r\n=46rom me\r\n"));
	ck_assert_ptr_nonnull(strstr(raw, "=\r\n=2Ex\r\n"));
	ck_assert_ptr_null(strstr(raw, "\r\n.\r\n"));
	free(raw);
}
END_TEST

/* ---- header text: subjects and names round-trip ----------------------- */

static const char *const header_texts[] = {
	"Hello",
	"Weekly news: 3 stories, 1 long read (and more!)",
	"A subject long enough that it has to be folded at least once, maybe "
	"twice, when it goes into the header, because lines are kept within "
	"seventy-eight octets",
	"two  spaces and a trailing word",
	"Looks =?UTF-8?Q?encoded?= but is not",
	"Gr\xc3\xbc\xc3\x9f" "e aus K\xc3\xb6ln",
	"\xf0\x9f\x93\xac\xf0\x9f\x93\xac\xf0\x9f\x93\xac\xf0\x9f\x93\xac"
	"\xf0\x9f\x93\xac\xf0\x9f\x93\xac\xf0\x9f\x93\xac\xf0\x9f\x93\xac"
	"\xf0\x9f\x93\xac\xf0\x9f\x93\xac\xf0\x9f\x93\xac\xf0\x9f\x93\xac",
	"W\xc3\xb6" "chentliche Nachrichten f\xc3\xbcr Zo\xc3\xab \xe2\x80\x94 "
	"mit sehr langen Zeilen, die gefaltet werden m\xc3\xbcssen, "
	"\xe4\xb8\xad\xe6\x96\x87\xe5\xad\x97\xe7\xac\xa6 und Emoji "
	"\xf0\x9f\x8e\x89 am Ende",
	"under_score ?question= equals_",
	"Example, Ann",
	"Ann \"The Boss\" Example",
	"back\\slash",
	"(parens) <angles> [brackets] @at; semi:colon",
};

START_TEST(test_header_text)
{
	struct mime_message m;
	char *raw;

	base_message(&m);
	m.subject = header_texts[_i];
	m.from.name = header_texts[_i];
	m.to.name = header_texts[(_i + 5) % (sizeof(header_texts) /
	    sizeof(header_texts[0]))];
	m.list_name = header_texts[_i];
	raw = build(&m);
	check_lines(raw, true);
	check_message(&m, raw);
	free(raw);
}
END_TEST

/* An ASCII word too long to fold goes as encoded-words, so every
 * header line still fits. */
START_TEST(test_long_word_subject)
{
	char subject[MIME_SUBJECT_MAX + 1];
	struct mime_message m;
	char *raw;

	memset(subject, 'x', sizeof(subject) - 1);
	subject[sizeof(subject) - 1] = '\0';
	base_message(&m);
	m.subject = subject;
	raw = build(&m);
	check_lines(raw, true);
	check_message(&m, raw);
	free(raw);
}
END_TEST

START_TEST(test_no_names)
{
	struct mime_message m;
	char *raw;

	base_message(&m);
	m.from.name = NULL;
	m.to.name = "";
	m.list_name = NULL;
	m.unsubscribe_mailto = NULL;
	m.subject = "";
	raw = build(&m);
	check_lines(raw, true);
	check_message(&m, raw);
	ck_assert_ptr_nonnull(strstr(raw, "\r\nFrom: news@example.org\r\n"));
	ck_assert_ptr_nonnull(strstr(raw, "\r\nList-Id: "
	    "<news.lists.example.org>\r\n"));
	free(raw);
}
END_TEST

/* ---- refusals: header injection and bad inputs ------------------------ */

enum field {
	F_SUBJECT, F_FROM_NAME, F_TO_NAME, F_REPLY_NAME, F_LIST_NAME, F_LIST_ID,
	F_URL, F_MAILTO, F_FROM_ADDR, F_TO_ADDR, F_REPLY_ADDR, F_MESSAGE_ID,
	F_SEED, F_TEXT, F_HTML,
};

static const struct {
	enum field field;
	const char *value;
	const char *want;       /* start of the message */
} bad_cases[] = {
	{ F_SUBJECT, "Hi\r\nBcc: victim@example.net", "invalid subject \"" },
	{ F_SUBJECT, "Hi\n", "invalid subject \"" },
	{ F_SUBJECT, "Hi\rthere", "invalid subject \"" },
	{ F_SUBJECT, "Hi\tthere", "invalid subject \"" },
	{ F_SUBJECT, "Hi \xc2\x85", "invalid subject \"" },
	{ F_SUBJECT, "bad \xff utf-8", "invalid subject \"" },
	{ F_FROM_NAME, "Ann\r\nBcc: x@example.net", "invalid From name \"" },
	{ F_TO_NAME, "Ann\n", "invalid To name \"" },
	{ F_REPLY_NAME, "Ann\r", "invalid Reply-To name \"" },
	{ F_LIST_NAME, "News\r\nX-Evil: 1", "invalid list name \"" },
	{ F_LIST_ID, "news.example.org\r\nX-Evil: 1", "invalid List-Id \"" },
	{ F_LIST_ID, "news example.org", "invalid List-Id \"" },
	{ F_LIST_ID, "news..example.org", "invalid List-Id \"" },
	{ F_LIST_ID, "", "invalid List-Id: empty value" },
	{ F_URL, "https://example.org/u\r\nBcc: x@example.net",
	    "invalid List-Unsubscribe URL \"" },
	{ F_URL, "https://example.org/u\n", "invalid List-Unsubscribe URL \"" },
	{ F_URL, "http://example.org/u", "invalid List-Unsubscribe URL \"" },
	{ F_URL, "http://127.0.0.1.example.org/u", "invalid List-Unsubscribe URL \"" },
	{ F_URL, "http://localhostx/u", "invalid List-Unsubscribe URL \"" },
	{ F_URL, "ftp://127.0.0.1/u", "invalid List-Unsubscribe URL \"" },
	{ F_URL, "https://example.org/a,b", "invalid List-Unsubscribe URL \"" },
	{ F_URL, "https://example.org/a>b", "invalid List-Unsubscribe URL \"" },
	{ F_URL, "https://example.org/a b", "invalid List-Unsubscribe URL \"" },
	{ F_URL, "https://", "invalid List-Unsubscribe URL \"" },
	{ F_URL, NULL, "invalid List-Unsubscribe URL: empty" },
	{ F_MAILTO, "u@example.org\r\nBcc: x@example.net",
	    "invalid List-Unsubscribe mailto address \"" },
	{ F_MAILTO, "u@example.org>, <https://evil.example/",
	    "invalid List-Unsubscribe mailto address \"" },
	{ F_FROM_ADDR, "news@example.org\r\nBcc: x@example.net",
	    "invalid From address \"" },
	{ F_FROM_ADDR, "News <news@example.org>", "invalid From address \"" },
	{ F_FROM_ADDR, "\"q\"@example.org", "invalid From address \"" },
	{ F_FROM_ADDR, "nobody", "invalid From address \"" },
	{ F_FROM_ADDR, NULL, "invalid From address: empty address" },
	{ F_TO_ADDR, "ann@example.org\n", "invalid To address \"" },
	{ F_TO_ADDR, "a@b@example.org", "invalid To address \"" },
	{ F_REPLY_ADDR, "ed@example.org\r", "invalid Reply-To address \"" },
	{ F_MESSAGE_ID, "c42\r\nBcc: x", "invalid Message-ID \"" },
	{ F_MESSAGE_ID, "c42@example.org", "invalid Message-ID \"" },
	{ F_MESSAGE_ID, "c42>", "invalid Message-ID \"" },
	{ F_MESSAGE_ID, "", "invalid Message-ID: empty value" },
	{ F_SEED, "seed\r\n", "invalid boundary seed \"" },
	{ F_SEED, "a\"b", "invalid boundary seed \"" },
	{ F_SEED, "", "invalid boundary seed: 1 to 40" },
	{ F_TEXT, "bad \xc3 utf-8", "invalid text body: not valid UTF-8" },
	{ F_TEXT, NULL, "invalid text body: missing" },
	{ F_HTML, "bad \xed\xa0\x80 surrogate", "invalid HTML body: not valid "
	    "UTF-8" },
};

START_TEST(test_refused)
{
	struct mime_message m;
	struct assent_err err;
	struct buf b;
	const char *v = bad_cases[_i].value;

	base_message(&m);
	m.html = html_plain;
	m.reply_to.address = "ed@example.org";
	buf_init(&b);
	ck_assert(mime_build(&m, &b, &err) == 0);
	ck_assert_uint_gt(b.len, 0);
	switch (bad_cases[_i].field) {
	case F_SUBJECT: m.subject = v; break;
	case F_FROM_NAME: m.from.name = v; break;
	case F_TO_NAME: m.to.name = v; break;
	case F_REPLY_NAME: m.reply_to.name = v; break;
	case F_LIST_NAME: m.list_name = v; break;
	case F_LIST_ID: m.list_id = v; break;
	case F_URL: m.unsubscribe_url = v; break;
	case F_MAILTO: m.unsubscribe_mailto = v; break;
	case F_FROM_ADDR: m.from.address = v; break;
	case F_TO_ADDR: m.to.address = v; break;
	case F_REPLY_ADDR: m.reply_to.address = v; break;
	case F_MESSAGE_ID: m.message_id = v; break;
	case F_SEED: m.boundary_seed = v; break;
	case F_TEXT: m.text = v; break;
	case F_HTML: m.html = v; break;
	}
	/* the previous message in the buffer is dropped on failure */
	err_clear(&err);
	ck_assert_int_eq(mime_build(&m, &b, &err), -1);
	ck_assert_int_eq(err.code, EX_DATAERR);
	ck_assert_msg(strncmp(err.msg, bad_cases[_i].want,
	    strlen(bad_cases[_i].want)) == 0, "got: %s", err.msg);
	ck_assert_uint_eq(b.len, 0);
	ck_assert_str_eq(b.data, "");
	/* the message names no raw control character */
	for (const char *p = err.msg; *p != '\0'; p++)
		ck_assert((unsigned char)*p >= 0x20);
	buf_free(&b);
}
END_TEST

/* A notice (a confirmation request) is not list mail: no List-Id, no
 * List-Unsubscribe, no List-Unsubscribe-Post. */
START_TEST(test_notice_headers)
{
	struct mime_message m;
	struct assent_err err;
	struct buf b;

	base_message(&m);
	m.list_name = NULL;
	m.list_id = NULL;
	m.unsubscribe_url = NULL;
	m.unsubscribe_mailto = NULL;
	buf_init(&b);
	ck_assert_msg(mime_build(&m, &b, &err) == 0, "%s", err.msg);
	ck_assert_ptr_null(strstr(b.data, "List-"));
	ck_assert_ptr_nonnull(strstr(b.data, "\r\nMIME-Version: 1.0\r\n"));
	buf_free(&b);
}
END_TEST

/* The buffer is reused: a second, shorter message replaces the first. */
START_TEST(test_buffer_reuse)
{
	struct mime_message m;
	struct assent_err err;
	struct buf b;
	char *first;
	size_t cap;

	base_message(&m);
	m.html = html_plain;
	buf_init(&b);
	ck_assert(mime_build(&m, &b, &err) == 0);
	cap = b.cap;
	m.html = NULL;
	ck_assert(mime_build(&m, &b, &err) == 0);
	first = build(&m);
	ck_assert_str_eq(b.data, first);
	ck_assert_uint_eq(b.cap, cap);
	free(first);
	buf_free(&b);
}
END_TEST

/* ---- golden files ------------------------------------------------------ */

static char *
slurp(const char *path, size_t *len_r)
{
	FILE *f = fopen(path, "rb");
	char *s;
	long n;

	if (f == NULL)
		return NULL;
	fseek(f, 0, SEEK_END);
	n = ftell(f);
	rewind(f);
	s = malloc((size_t)n + 1);
	ck_assert(fread(s, 1, (size_t)n, f) == (size_t)n);
	s[n] = '\0';
	fclose(f);
	*len_r = (size_t)n;
	return s;
}

static void
golden_message(int which, struct mime_message *m)
{
	static char long_html[4096 + 64];

	base_message(m);
	if (which == 1) {
		m->html = html_plain;
		m->reply_to.name = "The Editor";
		m->reply_to.address = "editor@example.org";
		return;
	}
	if (which != 2)
		return;
	m->subject = "Gr\xc3\xbc\xc3\x9f" "e aus K\xc3\xb6ln \xe2\x80\x94 "
	    "W\xc3\xb6" "chentliche Nachrichten f\xc3\xbcr Zo\xc3\xab "
	    "\xf0\x9f\x93\xac";
	m->from.name = "Zo\xc3\xab's B\xc3\xbc" "cherstube";
	m->to.name = "\xc5\x81ukasz \xc5\xbb\xc3\xb3\xc5\x82\xc4\x87";
	m->list_name = "B\xc3\xbc" "cher-News";
	m->text = "Hallo \xc5\x81ukasz,\n"
	    ".\n"
	    ". a line that starts with a dot\n"
	    "From the editor: trailing spaces follow   \n"
	    "Abmelden: " URL "\n"
	    "Zo\xc3\xab's B\xc3\xbc" "cherstube, Hauptstra\xc3\x9f" "e 1, "
	    "50667 K\xc3\xb6ln\n";
	strcpy(long_html, "<p>");
	for (int i = 0; i < 400; i++)
		strcat(long_html, "K\xc3\xb6ln=x ");
	strcat(long_html, "</p>\n");
	m->html = long_html;
}

static const char *const golden_names[] = { "plain", "alternative",
	"nonascii" };

START_TEST(test_golden)
{
	const char *srcdir = getenv("ASSENT_SRCDIR"), *update;
	struct mime_message m;
	char path[4096], *raw, *want;
	size_t len;
	FILE *f;

	ck_assert_msg(srcdir != NULL, "ASSENT_SRCDIR is not set");
	snprintf(path, sizeof(path), "%s/tests/data/mime/%s.eml", srcdir,
	    golden_names[_i]);
	golden_message(_i, &m);
	raw = build(&m);
	check_lines(raw, true);
	check_message(&m, raw);
	update = getenv("ASSENT_UPDATE_GOLDEN");
	if (update != NULL && strcmp(update, "1") == 0) {
		f = fopen(path, "wb");
		ck_assert_msg(f != NULL, "%s: %s", path, strerror(errno));
		ck_assert(fwrite(raw, 1, strlen(raw), f) == strlen(raw));
		ck_assert(fclose(f) == 0);
	}
	want = slurp(path, &len);
	ck_assert_msg(want != NULL, "%s: %s", path, strerror(errno));
	ck_assert_msg(len > 0, "%s is empty (ASSENT_UPDATE_GOLDEN=1 writes it)",
	    path);
	ck_assert_uint_eq(strlen(raw), len);
	ck_assert_msg(memcmp(raw, want, len) == 0, "%s differs from the "
	    "built message", path);
	free(want);
	free(raw);
}
END_TEST

/* ---- the envelope sender ------------------------------------------------ */

static const struct {
	const char *prefix, *token, *domain, *want;
} verp_ok[] = {
	{ "b-", "abcdefghijklmnopqrstuvwxyz234567abcdefghijklmnop",
	    "bounce.example.org",
	    "b-abcdefghijklmnopqrstuvwxyz234567abcdefghijklmnop"
	    "@bounce.example.org" },
	{ "bounce-", "x", "b.example", "bounce-x@b.example" },
	{ "", "b-1234567890123456789012345678901234567890123456789012345678901",
	    "e.org", "b-1234567890123456789012345678901234567890123456789012345678901@e.org" },
};

static const struct {
	const char *prefix, *token, *domain;
} verp_bad[] = {
	{ "b-", "12345678901234567890123456789012345678901234567890123456789012345",
	    "example.org" },                    /* 65 octets */
	{ "b-", "ABC", "example.org" },         /* upper case */
	{ "b-", "a b", "example.org" },
	{ "b-", "a\r\n", "example.org" },
	{ "b-", "a@b", "example.org" },
	{ "b-", "a.", "example.org" },
	{ "", "", "example.org" },
	{ "b-", "abc", "Example.org" },
	{ "b-", "abc", "example" },
	{ "b-", "abc", "example..org" },
	{ "b-", "abc", "" },
	{ "b-", "abc", "example.org\r\n" },
};

/* Mail links are https; http only to this machine, for trying it out. */
static const struct {
	const char *url;
	bool ok;
} url_schemes[] = {
	{ "https://news.example.org/u/x", true },
	{ "http://127.0.0.1:8025/u/x", true },
	{ "http://localhost/u/x", true },
	{ "http://[::1]:8025", true },
	{ "http://127.0.0.1", true },
	{ "https://", false },
	{ "http://news.example.org/u/x", false },
	{ "http://127.0.0.1.example.org/u", false },
	{ "http://localhost.example.org/u", false },
	{ "http://localhostx/u", false },
	{ "HTTP://127.0.0.1/u", false },
	{ "ftp://127.0.0.1/u", false },
	{ "", false },
};

START_TEST(test_url_scheme)
{
	ck_assert_msg(mime_url_scheme_ok(url_schemes[_i].url) == url_schemes[_i].ok,
	    "%s", url_schemes[_i].url);
}
END_TEST

START_TEST(test_verp_ok)
{
	struct assent_err err;
	char out[300];

	ck_assert_msg(mime_verp(verp_ok[_i].prefix, verp_ok[_i].token,
	    verp_ok[_i].domain, out, sizeof(out), &err) == 0, "%s", err.msg);
	ck_assert_str_eq(out, verp_ok[_i].want);
	ck_assert_uint_le((size_t)(strchr(out, '@') - out), 64);
}
END_TEST

START_TEST(test_verp_bad)
{
	struct assent_err err;
	char out[300];

	ck_assert_int_eq(mime_verp(verp_bad[_i].prefix, verp_bad[_i].token,
	    verp_bad[_i].domain, out, sizeof(out), &err), -1);
	ck_assert_int_eq(err.code, EX_DATAERR);
	ck_assert_str_eq(out, "");
}
END_TEST

START_TEST(test_verp_small_buffer)
{
	struct assent_err err;
	char out[10];

	ck_assert_int_eq(mime_verp("b-", "abc", "example.org", out, sizeof(out),
	    &err), -1);
	ck_assert_int_eq(err.code, EX_SOFTWARE);
	ck_assert_str_eq(out, "");
}
END_TEST

static Suite *
mime_suite(void)
{
	Suite *s = suite_create("mime");
	TCase *tc = tcase_create("mime");

	tcase_add_test(tc, test_plain);
	tcase_add_test(tc, test_alternative);
	tcase_add_test(tc, test_long_html_line);
	tcase_add_loop_test(tc, test_bodies, 0,
	    sizeof(body_cases) / sizeof(body_cases[0]));
	tcase_add_test(tc, test_dot_and_from_encoded);
	tcase_add_loop_test(tc, test_header_text, 0,
	    sizeof(header_texts) / sizeof(header_texts[0]));
	tcase_add_test(tc, test_long_word_subject);
	tcase_add_test(tc, test_no_names);
	tcase_add_loop_test(tc, test_refused, 0,
	    sizeof(bad_cases) / sizeof(bad_cases[0]));
	tcase_add_test(tc, test_buffer_reuse);
	tcase_add_test(tc, test_notice_headers);
	tcase_add_loop_test(tc, test_golden, 0,
	    sizeof(golden_names) / sizeof(golden_names[0]));
	tcase_add_loop_test(tc, test_verp_ok, 0,
	    sizeof(verp_ok) / sizeof(verp_ok[0]));
	tcase_add_loop_test(tc, test_verp_bad, 0,
	    sizeof(verp_bad) / sizeof(verp_bad[0]));
	tcase_add_test(tc, test_verp_small_buffer);
	tcase_add_loop_test(tc, test_url_scheme, 0,
	    sizeof(url_schemes) / sizeof(url_schemes[0]));
	suite_add_tcase(s, tc);
	return s;
}

int
main(void)
{
	int rc;

	g_mime_init();
	rc = testhelp_run_suite(mime_suite());
	g_mime_shutdown();
	return rc;
}

/*
 * fuzz_render: libFuzzer target over the template parser and the
 * message builder's header and body encoders.
 *
 * Built and run by tests/fuzz/run, which reads the two lines below.
 * fuzz-sources: src/lib/render.c src/lib/mime.c src/lib/buf.c src/lib/text.c src/lib/err.c src/lib/xmalloc.c
 * fuzz-libs: -ljansson
 *
 * The first byte picks what the rest is: a template (subject, text or
 * HTML), or a subject, display name, list name or body for a message.
 * Invariants checked, each an abort() when broken:
 * - render_compile() refusal: EX_DATAERR, a message that starts with
 *   "template" and holds no control character.
 * - render_compile() success: rendering with clean values works and
 *   gives valid UTF-8; a subject result has no control character; a
 *   subject with a field refuses a value holding CR or LF; the buffer
 *   is unchanged after a refusal.
 * - mime_build() refusal: EX_DATAERR, and the input really holds a
 *   control character or invalid UTF-8 or is too long.
 * - mime_build() success: CRLF line ends only, no line over 998
 *   octets, body lines at most 76, encoded-words at most 75, exactly
 *   the expected header fields (nothing injected), and the
 *   quoted-printable body decodes to the input (LF read as CRLF).
 */
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "assent/err.h"
#include "assent/mime.h"
#include "assent/render.h"
#include "assent/text.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(cond) do {                                                \
	if (!(cond)) {                                                  \
		fprintf(stderr, "%s:%d: invariant broken: %s\n",        \
		    __FILE__, __LINE__, #cond);                         \
		abort();                                                \
	}                                                               \
} while (0)

static bool
has_control(const char *s, size_t n)
{
	const unsigned char *p = (const unsigned char *)s;

	for (size_t i = 0; i < n; i++) {
		if (p[i] < 0x20 || p[i] == 0x7f)
			return true;
		if (p[i] == 0xc2 && i + 1 < n && p[i + 1] >= 0x80 &&
		    p[i + 1] <= 0x9f)
			return true;
	}
	return false;
}

/* ---- templates -------------------------------------------------------- */

static void
fuzz_template(const char *text, enum render_kind kind)
{
	struct render_values v = {
		.name = "Ann <&> \"q\" 'a'", .email = "ann@example.org",
		.unsubscribe_url = "https://x.example/u?a=1&b=2",
		.manage_url = "https://x.example/m",
		.postal_address = "1 Main St", .organisation = "Acme",
	};
	struct render_template *t;
	struct assent_err err;
	struct buf b;
	json_t *attrs;

	if (render_compile(text, kind, &t, &err) == -1) {
		CHECK(err.code == EX_DATAERR);
		CHECK(strncmp(err.msg, "template", 8) == 0);
		CHECK(!has_control(err.msg, strlen(err.msg)));
		CHECK(text_is_utf8(err.msg, strlen(err.msg)));
		return;
	}
	attrs = json_pack("{s:s, s:i, s:[i,s], s:n}", "city", "K\xc3\xb6ln",
	    "n", 42, "arr", 1, "x", "nil");
	v.attrs = attrs;
	buf_init(&b);
	CHECK(render_run(t, &v, &b, &err) == 0);
	CHECK(b.data != NULL && strlen(b.data) == b.len);
	CHECK(text_is_utf8(b.data, b.len));
	if (kind == RENDER_SUBJECT) {
		size_t before = b.len;

		CHECK(!has_control(b.data, b.len));
		v.name = "Ann\r\nBcc: x@example.org";
		json_object_set_new(attrs, "city", json_string("a\nb"));
		json_object_set_new(attrs, "n", json_string("a\rb"));
		json_object_set_new(attrs, "arr", json_string("\r"));
		if (render_run(t, &v, &b, &err) == -1)
			CHECK(b.len == before && b.data[before] == '\0');
		else
			CHECK(!has_control(b.data, b.len));
	}
	buf_free(&b);
	render_free(t);
	json_decref(attrs);
}

/* ---- messages ----------------------------------------------------------- */

enum slot { SLOT_SUBJECT, SLOT_NAME, SLOT_LIST_NAME, SLOT_BODY };

static int
hexval(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

/* Decode quoted-printable text (CRLF lines) from s to e; fresh. */
static char *
qp_decode(const char *s, const char *e, size_t *len_r)
{
	char *out = malloc((size_t)(e - s) + 1), *o = out;
	int hi, lo;

	while (s < e) {
		if (*s == '=' && s + 2 < e + 1 && s[1] == '\r' && s[2] == '\n') {
			s += 3;
		} else if (*s == '=') {
			CHECK(s + 2 < e);
			hi = hexval(s[1]);
			lo = hexval(s[2]);
			CHECK(hi >= 0 && lo >= 0);
			*o++ = (char)(hi << 4 | lo);
			s += 3;
		} else {
			*o++ = *s++;
		}
	}
	*len_r = (size_t)(o - out);
	return out;
}

static void
check_message(const char *msg, size_t len, const char *body)
{
	const char *p = msg, *nl, *hdr_end = NULL, *w, *we;
	size_t fields = 0, n, dlen, blen = 0;
	char *dec, *want;

	for (p = msg; p < msg + len; p = nl + 1) {
		nl = memchr(p, '\n', (size_t)(msg + len - p));
		CHECK(nl != NULL && nl > p && nl[-1] == '\r');
		n = (size_t)(nl - 1 - p);
		CHECK(memchr(p, '\r', n) == NULL);
		CHECK(n <= 998);
		if (hdr_end != NULL)
			CHECK(n <= MIME_QP_LINE_MAX);
		else if (n == 0)
			hdr_end = nl + 1;
		else if (*p != ' ')
			fields++;
	}
	CHECK(hdr_end != NULL);
	/* Date From To Subject Message-ID List-Id List-Unsubscribe
	 * List-Unsubscribe-Post MIME-Version Content-Type
	 * Content-Transfer-Encoding */
	CHECK(fields == 11);
	for (w = msg; (w = strstr(w, "=?UTF-8?Q?")) != NULL && w < hdr_end;
	    w = we + 2) {
		we = strstr(w + 10, "?=");
		CHECK(we != NULL && we + 2 - w <= 75);
	}
	dec = qp_decode(hdr_end, msg + len, &dlen);
	want = malloc(2 * strlen(body) + 1);
	for (const char *s = body; *s != '\0'; s++) {
		if (*s == '\n' && (blen == 0 || want[blen - 1] != '\r'))
			want[blen++] = '\r';
		want[blen++] = *s;
	}
	CHECK(dlen == blen && memcmp(dec, want, blen) == 0);
	free(dec);
	free(want);
}

static void
fuzz_message(const char *s, enum slot slot)
{
	struct mime_message m = {
		.from = { "News", "news@example.org" },
		.to = { "Ann", "ann@example.org" },
		.subject = "Hello", .date = 1732017600,
		.message_id = "c1.d2", .list_name = "News",
		.list_id = "news.example.org",
		.unsubscribe_url = "https://example.org/u/T",
		.unsubscribe_mailto = "u@example.org",
		.text = "body\n", .boundary_seed = "s",
	};
	struct assent_err err;
	struct buf b;
	size_t n = strlen(s);

	switch (slot) {
	case SLOT_SUBJECT: m.subject = s; break;
	case SLOT_NAME: m.from.name = s; m.to.name = s; break;
	case SLOT_LIST_NAME: m.list_name = s; break;
	case SLOT_BODY: m.text = s; break;
	}
	buf_init(&b);
	if (mime_build(&m, &b, &err) == -1) {
		CHECK(err.code == EX_DATAERR);
		CHECK(b.len == 0);
		CHECK(!text_is_utf8(s, n) || (slot != SLOT_BODY &&
		    (has_control(s, n) || n > MIME_NAME_MAX)));
	} else {
		CHECK(text_is_utf8(s, n));
		CHECK(slot == SLOT_BODY || !has_control(s, n));
		check_message(b.data, b.len, m.text);
	}
	buf_free(&b);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *s;

	if (size < 1)
		return 0;
	s = malloc(size);
	memcpy(s, data + 1, size - 1);
	s[size - 1] = '\0';
	switch (data[0] % 7) {
	case 0: fuzz_template(s, RENDER_SUBJECT); break;
	case 1: fuzz_template(s, RENDER_TEXT); break;
	case 2: fuzz_template(s, RENDER_HTML); break;
	case 3: fuzz_message(s, SLOT_SUBJECT); break;
	case 4: fuzz_message(s, SLOT_NAME); break;
	case 5: fuzz_message(s, SLOT_LIST_NAME); break;
	case 6: fuzz_message(s, SLOT_BODY); break;
	}
	free(s);
	return 0;
}

/* mime: one RFC 5322 message with quoted-printable bodies, and the VERP
 * envelope sender; the rules are in include/assent/mime.h */
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "assent/buf.h"
#include "assent/mime.h"
#include "assent/text.h"
#include "assent/xmalloc.h"

#define MIME_BOUNDARY_PREFIX "=_assent_"
#define MIME_EW_OPEN         "=?UTF-8?Q?"
#define MIME_EW_OPEN_LEN     10
#define MIME_EW_MAX          75
#define MIME_WORD_MAX        900        /* longest unfoldable ASCII run */
#define MIME_QP_CONTENT_MAX  (MIME_QP_LINE_MAX - 1)  /* room for '=' */

static const char mime_hex[] = "0123456789ABCDEF";

/* --- the output buffer ------------------------------------------------- */

/* --- checks on the inputs ---------------------------------------------- */

static bool
mime_is_atext(unsigned char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
	    (c >= '0' && c <= '9') || (c != '\0' &&
	    strchr("!#$%&'*+-/=?^_`{|}~", c) != NULL);
}

static bool
mime_is_printable_ascii(const char *s, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if ((unsigned char)s[i] < 0x20 || (unsigned char)s[i] > 0x7e)
			return false;
	return true;
}

/* Valid UTF-8, quickly: ASCII is skipped eight bytes at a time, and
 * each run of non-ASCII bytes (a multi-byte character holds no ASCII
 * byte, so a run holds whole characters) goes to text_is_utf8(). */
static bool
mime_is_utf8(const char *s, size_t n)
{
	const unsigned char *p = (const unsigned char *)s;
	size_t i = 0, j;
	uint64_t w;

	while (i < n) {
		if (n - i >= 8) {
			memcpy(&w, p + i, 8);
			if ((w & UINT64_C(0x8080808080808080)) == 0) {
				i += 8;
				continue;
			}
		}
		if (p[i] < 0x80) {
			i++;
			continue;
		}
		for (j = i; j < n && p[j] >= 0x80; j++)
			;
		if (!text_is_utf8(s + i, j - i))
			return false;
		i = j;
	}
	return true;
}

/* UTF-8 text of at most max bytes without control characters. */
static int
mime_check_text(const char *s, size_t max, bool allow_empty, const char *what,
    struct assent_err *err)
{
	size_t n = s == NULL ? 0 : strlen(s);

	if (n > 0 && n <= max && mime_is_printable_ascii(s, n))
		return 0;
	return text_check_line(s, max, allow_empty, what, err);
}

/* Dot-atom text: atext runs separated by single dots. */
static bool
mime_is_dot_atom(const char *s, size_t n)
{
	if (n == 0 || s[0] == '.' || s[n - 1] == '.')
		return false;
	for (size_t i = 0; i < n; i++) {
		if (s[i] == '.') {
			if (s[i + 1] == '.')
				return false;
		} else if (!mime_is_atext((unsigned char)s[i]))
			return false;
	}
	return true;
}

static int
mime_refuse(const char *s, const char *what, const char *why,
    struct assent_err *err)
{
	char q[TEXT_QUOTE_SIZE];

	return err_set(err, EX_DATAERR, "invalid %s \"%s\": %s", what,
	    text_quote(s, strlen(s), q, sizeof(q)), why);
}

/* A normalised address: dot-atom local part, '@', a domain of
 * letters, digits, '-' and '.'. */
static int
mime_check_address(const char *s, const char *what, struct assent_err *err)
{
	const char *at;
	size_t n;

	if (s == NULL || *s == '\0')
		return err_set(err, EX_DATAERR, "invalid %s: empty address",
		    what);
	n = strlen(s);
	at = strchr(s, '@');
	if (n > 254 || at == NULL || at == s || at[1] == '\0')
		return mime_refuse(s, what, "not a normalised address", err);
	if (!mime_is_dot_atom(s, (size_t)(at - s)) || (size_t)(at - s) > 64)
		return mime_refuse(s, what, "not a normalised address", err);
	for (const char *p = at + 1; *p != '\0'; p++)
		if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
		    (*p >= '0' && *p <= '9') || *p == '-' || *p == '.'))
			return mime_refuse(s, what, "not a normalised address",
			    err);
	return 0;
}

static int
mime_check_mailbox(const struct mime_mailbox *mb, const char *what,
    struct assent_err *err)
{
	char w[64];

	snprintf(w, sizeof(w), "%s name", what);
	if (mime_check_text(mb->name, MIME_NAME_MAX, true, w, err) == -1)
		return -1;
	snprintf(w, sizeof(w), "%s address", what);
	return mime_check_address(mb->address, w, err);
}

bool
mime_url_scheme_ok(const char *url)
{
	static const char *const loopback[] = { "127.0.0.1", "localhost", "[::1]" };
	const char *host;

	if (strncmp(url, "https://", 8) == 0)
		return url[8] != '\0';
	if (strncmp(url, "http://", 7) != 0)
		return false;
	host = url + 7;
	for (size_t i = 0; i < sizeof(loopback) / sizeof(loopback[0]); i++) {
		size_t n = strlen(loopback[i]);

		if (strncmp(host, loopback[i], n) == 0 &&
		    (host[n] == '\0' || host[n] == ':' || host[n] == '/'))
			return true;
	}
	return false;
}

/* An https URL (see mime_url_scheme_ok()) of RFC 3986 characters; no
 * comma (RFC 2369). */
static int
mime_check_url(const char *s, struct assent_err *err)
{
	const char *what = "List-Unsubscribe URL";
	size_t n;

	if (s == NULL || *s == '\0')
		return err_set(err, EX_DATAERR, "invalid %s: empty", what);
	if (mime_check_text(s, MIME_URL_MAX, false, what, err) == -1)
		return -1;
	n = strlen(s);
	if (!mime_url_scheme_ok(s))
		return mime_refuse(s, what, "not an https URL", err);
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)s[i];

		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
		    (c >= '0' && c <= '9') ||
		    strchr("-._~:/?#[]@!$&'()*+;=%", c) != NULL))
			return mime_refuse(s, what, "a character outside "
			    "RFC 3986 (or a comma)", err);
	}
	return 0;
}

static int
mime_check_seed(const char *s, struct assent_err *err)
{
	size_t n = s == NULL ? 0 : strlen(s);

	if (n == 0 || n > MIME_SEED_MAX)
		return err_set(err, EX_DATAERR, "invalid boundary seed: 1 to "
		    "%d characters needed", MIME_SEED_MAX);
	for (size_t i = 0; i < n; i++)
		if (!((s[i] >= 'a' && s[i] <= 'z') ||
		    (s[i] >= 'A' && s[i] <= 'Z') ||
		    (s[i] >= '0' && s[i] <= '9') || s[i] == '.' ||
		    s[i] == '_' || s[i] == '-'))
			return mime_refuse(s, "boundary seed", "only letters, "
			    "digits, '.', '_' and '-'", err);
	return 0;
}

static int
mime_check_dot_atom(const char *s, size_t max, const char *what,
    struct assent_err *err)
{
	if (mime_check_text(s, max, false, what, err) == -1)
		return -1;
	if (!mime_is_dot_atom(s, strlen(s)))
		return mime_refuse(s, what, "not dot-atom text", err);
	return 0;
}

static int
mime_check(const struct mime_message *m, struct assent_err *err)
{
	if (mime_check_mailbox(&m->from, "From", err) == -1 ||
	    mime_check_mailbox(&m->to, "To", err) == -1)
		return -1;
	if (m->reply_to.address != NULL &&
	    mime_check_mailbox(&m->reply_to, "Reply-To", err) == -1)
		return -1;
	if (mime_check_text(m->subject, MIME_SUBJECT_MAX, true, "subject",
	    err) == -1)
		return -1;
	if (mime_check_dot_atom(m->message_id, MIME_ID_LEFT_MAX, "Message-ID",
	    err) == -1)
		return -1;
	/* a notice (not list mail) has neither List-Id nor List-Unsubscribe */
	if (m->list_id != NULL && (mime_check_text(m->list_name, MIME_NAME_MAX,
	    true, "list name", err) == -1 ||
	    mime_check_dot_atom(m->list_id, 255, "List-Id", err) == -1))
		return -1;
	if (m->unsubscribe_url == NULL && m->unsubscribe_mailto != NULL)
		return err_set(err, EX_DATAERR, "invalid List-Unsubscribe URL: "
		    "empty (a mailto goes with a URL)");
	if (m->unsubscribe_url != NULL && mime_check_url(m->unsubscribe_url,
	    err) == -1)
		return -1;
	if (m->unsubscribe_mailto != NULL && mime_check_address(
	    m->unsubscribe_mailto, "List-Unsubscribe mailto address", err) == -1)
		return -1;
	if (m->text == NULL || !mime_is_utf8(m->text, strlen(m->text)))
		return err_set(err, EX_DATAERR, "invalid text body: %s",
		    m->text == NULL ? "missing" : "not valid UTF-8");
	if (m->html == NULL)
		return 0;
	if (!mime_is_utf8(m->html, strlen(m->html)))
		return err_set(err, EX_DATAERR, "invalid HTML body: not valid "
		    "UTF-8");
	return mime_check_seed(m->boundary_seed, err);
}

/* --- headers: folding -------------------------------------------------- */

/* A header being written: col counts the octets on the current line,
 * start those of "Name:" (a fold before anything follows it would leave
 * an empty first line). */
struct mime_hdr {
	struct buf *b;
	size_t col;
	size_t start;
};

static void
mime_hdr_begin(struct mime_hdr *h, struct buf *b, const char *name)
{
	h->b = b;
	buf_add_str(b, name);
	buf_add(b, ":", 1);
	h->col = h->start = strlen(name) + 1;
}

/* Append " " and n bytes at s as one chunk: a fold (CRLF) may go
 * before its space when the line would pass MIME_LINE_MAX. */
static void
mime_hdr_chunk(struct mime_hdr *h, const char *s, size_t n)
{
	if (h->col + 1 + n > MIME_LINE_MAX && h->col > h->start) {
		buf_add(h->b, "\r\n", 2);
		h->col = 0;
	}
	buf_add(h->b, " ", 1);
	buf_add(h->b, s, n);
	h->col += 1 + n;
}

/* Append to the current chunk: no fold before it. */
static void
mime_hdr_glue(struct mime_hdr *h, const char *s, size_t n)
{
	buf_add(h->b, s, n);
	h->col += n;
}

static void
mime_hdr_end(struct mime_hdr *h)
{
	buf_add(h->b, "\r\n", 2);
}

/* --- headers: RFC 2047 encoded-words ---------------------------------- */

/* Letters, digits and the five that RFC 2047 5(3) allows literally in
 * a phrase; a stricter set than a Subject needs, so one encoder serves
 * both. */
static bool
mime_q_literal(unsigned char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
	    (c >= '0' && c <= '9') || c == '!' || c == '*' || c == '+' ||
	    c == '-' || c == '/';
}

static size_t
mime_utf8_len(unsigned char c)
{
	if (c < 0x80)
		return 1;
	if (c < 0xe0)
		return 2;
	if (c < 0xf0)
		return 3;
	return 4;
}

/* Q-encode the character at s (clen bytes) into out; its length. */
static size_t
mime_q_char(const unsigned char *s, size_t clen, char *out)
{
	size_t o = 0;

	for (size_t k = 0; k < clen; k++) {
		if (s[k] == ' ')
			out[o++] = '_';
		else if (mime_q_literal(s[k]))
			out[o++] = (char)s[k];
		else {
			out[o++] = '=';
			out[o++] = mime_hex[s[k] >> 4];
			out[o++] = mime_hex[s[k] & 15];
		}
	}
	return o;
}

/* Write n bytes of valid UTF-8 as encoded-words of at most 75 octets,
 * each a chunk of its own; a word fills what is left of the line. */
static void
mime_hdr_encoded(struct mime_hdr *h, const char *text, size_t n)
{
	const unsigned char *s = (const unsigned char *)text;
	char word[MIME_EW_MAX + 1], enc[12];
	size_t i = 0, room, wl, clen, elen;

	while (i < n) {
		/* Room for " " and a word on this line, if a word with
		 * one character of 4 bytes (24 octets) fits there. */
		room = h->col + 1 + 24 <= MIME_LINE_MAX ?
		    MIME_LINE_MAX - h->col - 1 : 0;
		if (room < 24 && h->col > h->start) {
			buf_add(h->b, "\r\n", 2);
			h->col = 0;
			room = MIME_LINE_MAX - 1;
		}
		if (room > MIME_EW_MAX)
			room = MIME_EW_MAX;
		if (room < 24)
			room = 24;
		memcpy(word, MIME_EW_OPEN, MIME_EW_OPEN_LEN);
		wl = MIME_EW_OPEN_LEN;
		do {
			clen = mime_utf8_len(s[i]);
			if (clen > n - i)
				clen = n - i;
			elen = mime_q_char(s + i, clen, enc);
			if (wl + elen + 2 > room)
				break;
			memcpy(word + wl, enc, elen);
			wl += elen;
			i += clen;
		} while (i < n);
		word[wl++] = '?';
		word[wl++] = '=';
		mime_hdr_chunk(h, word, wl);
	}
}

/* --- headers: unstructured text and phrases ---------------------------- */

/* Can s go as it is: printable ASCII, no "=?" (a decoder would take it
 * for an encoded-word), no run between spaces too long to fold? */
static bool
mime_plain_ok(const char *s, size_t n)
{
	size_t run = 0;

	if (!mime_is_printable_ascii(s, n))
		return false;
	for (size_t i = 0; i < n; i++) {
		if (s[i] == '=' && i + 1 < n && s[i + 1] == '?')
			return false;
		run = s[i] == ' ' ? 0 : run + 1;
		if (run > MIME_WORD_MAX)
			return false;
	}
	return true;
}

/* Plain text in chunks: each is a run of spaces and the word after it,
 * the fold going before the spaces, so unfolding gives back s. The
 * first chunk's space is the one after the colon. */
static void
mime_hdr_plain(struct mime_hdr *h, const char *s, size_t n)
{
	size_t i = 0, j;

	while (i < n) {
		j = i;
		while (j < n && s[j] == ' ')
			j++;
		while (j < n && s[j] != ' ')
			j++;
		if (i == 0)
			mime_hdr_chunk(h, s, j);
		else if (j == n && s[j - 1] == ' ')
			mime_hdr_glue(h, s + i, j - i);   /* trailing spaces */
		else {
			/* s[i] is a space: the chunk's own leading space. */
			mime_hdr_chunk(h, s + i + 1, j - i - 1);
		}
		i = j;
	}
}

static void
mime_hdr_text(struct mime_hdr *h, const char *s)
{
	size_t n = s == NULL ? 0 : strlen(s);

	if (n == 0)
		return;
	if (mime_plain_ok(s, n))
		mime_hdr_plain(h, s, n);
	else
		mime_hdr_encoded(h, s, n);
}

/* Atoms separated by single spaces: writable as they are. */
static bool
mime_is_atom_phrase(const char *s, size_t n)
{
	if (n == 0 || s[0] == ' ' || s[n - 1] == ' ')
		return false;
	for (size_t i = 0; i < n; i++) {
		if (s[i] == ' ') {
			if (s[i + 1] == ' ')
				return false;
		} else if (!mime_is_atext((unsigned char)s[i]))
			return false;
	}
	return true;
}

/* A display name (or a list name): atoms, a quoted-string or
 * encoded-words. A quoted-string is not folded (some readers, GMime
 * among them, keep the line break of a fold inside quotes): one that
 * would pass the line limit goes as encoded-words instead. */
static void
mime_hdr_phrase(struct mime_hdr *h, const char *s)
{
	size_t n = strlen(s), o = 0;
	char q[2 * MIME_NAME_MAX + 3];

	if (!mime_plain_ok(s, n)) {
		mime_hdr_encoded(h, s, n);
		return;
	}
	if (mime_is_atom_phrase(s, n)) {
		mime_hdr_plain(h, s, n);
		return;
	}
	q[o++] = '"';
	for (size_t i = 0; i < n; i++) {
		if (s[i] == '"' || s[i] == '\\')
			q[o++] = '\\';
		q[o++] = s[i];
	}
	q[o++] = '"';
	if (o + 1 <= MIME_LINE_MAX - h->start)
		mime_hdr_chunk(h, q, o);
	else
		mime_hdr_encoded(h, s, n);
}

/* " <address>" as a chunk of its own. */
static void
mime_hdr_angle(struct mime_hdr *h, const char *prefix, const char *s,
    const char *suffix)
{
	char tmp[MIME_URL_MAX + 32];
	int n;

	n = snprintf(tmp, sizeof(tmp), "<%s%s>%s", prefix, s, suffix);
	if (n < 0 || (size_t)n >= sizeof(tmp))
		abort();        /* lengths were checked */
	mime_hdr_chunk(h, tmp, (size_t)n);
}

static void
mime_hdr_message_id(struct mime_hdr *h, const char *left, const char *domain)
{
	char tmp[MIME_ID_LEFT_MAX + 255 + 4];
	int n;

	n = snprintf(tmp, sizeof(tmp), "<%s@%s>", left, domain);
	if (n < 0 || (size_t)n >= sizeof(tmp))
		abort();        /* lengths were checked */
	mime_hdr_chunk(h, tmp, (size_t)n);
}

static void
mime_header_mailbox(struct buf *b, const char *name,
    const struct mime_mailbox *mb)
{
	struct mime_hdr h;

	mime_hdr_begin(&h, b, name);
	if (mb->name == NULL || mb->name[0] == '\0')
		mime_hdr_chunk(&h, mb->address, strlen(mb->address));
	else {
		mime_hdr_phrase(&h, mb->name);
		mime_hdr_angle(&h, "", mb->address, "");
	}
	mime_hdr_end(&h);
}

/* --- the headers ------------------------------------------------------- */

static void
mime_header_date(struct buf *b, time_t date)
{
	static const char days[][4] = {
		"Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"
	};
	static const char months[][4] = {
		"Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep",
		"Oct", "Nov", "Dec"
	};
	char line[160];
	struct tm tm;

	if (gmtime_r(&date, &tm) == NULL)
		memset(&tm, 0, sizeof(tm));
	snprintf(line, sizeof(line), "Date: %s, %d %s %04d %02d:%02d:%02d "
	    "+0000\r\n", days[tm.tm_wday % 7], tm.tm_mday,
	    months[tm.tm_mon % 12], tm.tm_year + 1900, tm.tm_hour, tm.tm_min,
	    tm.tm_sec);
	buf_add_str(b, line);
}

static void
mime_headers(const struct mime_message *m, struct buf *b)
{
	struct mime_hdr h;

	mime_header_date(b, m->date);
	mime_header_mailbox(b, "From", &m->from);
	mime_header_mailbox(b, "To", &m->to);
	if (m->reply_to.address != NULL)
		mime_header_mailbox(b, "Reply-To", &m->reply_to);
	mime_hdr_begin(&h, b, "Subject");
	mime_hdr_text(&h, m->subject);
	mime_hdr_end(&h);
	mime_hdr_begin(&h, b, "Message-ID");
	mime_hdr_message_id(&h, m->message_id, strchr(m->from.address, '@') + 1);
	mime_hdr_end(&h);
	if (m->list_id != NULL) {
		mime_hdr_begin(&h, b, "List-Id");
		if (m->list_name != NULL && m->list_name[0] != '\0')
			mime_hdr_phrase(&h, m->list_name);
		mime_hdr_angle(&h, "", m->list_id, "");
		mime_hdr_end(&h);
	}
	if (m->unsubscribe_url != NULL) {
		mime_hdr_begin(&h, b, "List-Unsubscribe");
		mime_hdr_angle(&h, "", m->unsubscribe_url,
		    m->unsubscribe_mailto != NULL ? "," : "");
		if (m->unsubscribe_mailto != NULL)
			mime_hdr_angle(&h, "mailto:", m->unsubscribe_mailto, "");
		mime_hdr_end(&h);
		buf_add_str(b, "List-Unsubscribe-Post: List-Unsubscribe=One-Click\r\n");
	}
	buf_add_str(b, "MIME-Version: 1.0\r\n");
}

/* --- bodies: quoted-printable ------------------------------------------ */

/* Bytes that stand for themselves: printable ASCII but '=', and space
 * and TAB (unless they end a line, decided by the caller). */
static const unsigned char mime_qp_plain[256] = {
	['\t'] = 1, [' '] = 1, ['!'] = 1, ['"'] = 1, ['#'] = 1, ['$'] = 1,
	['%'] = 1, ['&'] = 1, ['\''] = 1, ['('] = 1, [')'] = 1, ['*'] = 1,
	['+'] = 1, [','] = 1, ['-'] = 1, ['.'] = 1, ['/'] = 1, ['0'] = 1,
	['1'] = 1, ['2'] = 1, ['3'] = 1, ['4'] = 1, ['5'] = 1, ['6'] = 1,
	['7'] = 1, ['8'] = 1, ['9'] = 1, [':'] = 1, [';'] = 1, ['<'] = 1,
	['>'] = 1, ['?'] = 1, ['@'] = 1, ['A'] = 1, ['B'] = 1, ['C'] = 1,
	['D'] = 1, ['E'] = 1, ['F'] = 1, ['G'] = 1, ['H'] = 1, ['I'] = 1,
	['J'] = 1, ['K'] = 1, ['L'] = 1, ['M'] = 1, ['N'] = 1, ['O'] = 1,
	['P'] = 1, ['Q'] = 1, ['R'] = 1, ['S'] = 1, ['T'] = 1, ['U'] = 1,
	['V'] = 1, ['W'] = 1, ['X'] = 1, ['Y'] = 1, ['Z'] = 1, ['['] = 1,
	['\\'] = 1, [']'] = 1, ['^'] = 1, ['_'] = 1, ['`'] = 1, ['a'] = 1,
	['b'] = 1, ['c'] = 1, ['d'] = 1, ['e'] = 1, ['f'] = 1, ['g'] = 1,
	['h'] = 1, ['i'] = 1, ['j'] = 1, ['k'] = 1, ['l'] = 1, ['m'] = 1,
	['n'] = 1, ['o'] = 1, ['p'] = 1, ['q'] = 1, ['r'] = 1, ['s'] = 1,
	['t'] = 1, ['u'] = 1, ['v'] = 1, ['w'] = 1, ['x'] = 1, ['y'] = 1,
	['z'] = 1, ['{'] = 1, ['|'] = 1, ['}'] = 1, ['~'] = 1,
};

/* Does a line break (LF or CRLF) start at s[i], or the text end? */
static bool
mime_qp_line_end(const unsigned char *s, size_t len, size_t i)
{
	return i == len || s[i] == '\n' ||
	    (s[i] == '\r' && i + 1 < len && s[i + 1] == '\n');
}

/* May the byte at s[i] be copied as it is within a run: plain, and a
 * space or TAB only when no line break or end follows it. */
static inline bool
mime_qp_safe(const unsigned char *s, size_t len, size_t i)
{
	unsigned char c = s[i];

	if (c > ' ' && c <= '~')
		return c != '=';
	return mime_qp_plain[c] && !mime_qp_line_end(s, len, i + 1);
}

/* One byte the fast path did not take: a line break, a byte to escape,
 * a space or TAB, a soft break, or a '.' or "From " starting a line.
 * Returns the input bytes used. */
static size_t
mime_qp_one(const unsigned char *s, size_t len, size_t i, char **op,
    size_t *colp)
{
	unsigned char c = s[i];
	char *o = *op;
	size_t n;
	bool esc;

	if (c == '\n' || (c == '\r' && i + 1 < len && s[i + 1] == '\n')) {
		*o++ = '\r';
		*o++ = '\n';
		*op = o;
		*colp = 0;
		return c == '\r' ? 2 : 1;
	}
	esc = !mime_qp_plain[c] || ((c == ' ' || c == '\t') &&
	    mime_qp_line_end(s, len, i + 1));
	n = esc ? 3 : 1;
	if (*colp + n > MIME_QP_CONTENT_MAX) {
		memcpy(o, "=\r\n", 3);
		o += 3;
		*colp = 0;
	}
	if (*colp == 0 && !esc && (c == '.' || (c == 'F' &&
	    len - i >= 5 && memcmp(s + i, "From ", 5) == 0))) {
		esc = true;
		n = 3;
	}
	if (esc) {
		*o++ = '=';
		*o++ = mime_hex[c >> 4];
		*o++ = mime_hex[c & 15];
	} else
		*o++ = (char)c;
	*colp += n;
	*op = o;
	return 1;
}

/* Encode len bytes at s into out, which has room for 4 * len + 8
 * bytes (each byte gives at most 3; a soft break of 3 comes at most
 * once for every 25 bytes; the final soft break 3). Returns the length.
 * Runs of safe bytes are copied whole: most of a body is such runs. */
static size_t
mime_qp(const unsigned char *s, size_t len, char *out)
{
	char *o = out;
	size_t i = 0, col = 0, k, room;

	while (i < len) {
		if (col > 0 || (s[i] != '.' && s[i] != 'F')) {
			room = MIME_QP_CONTENT_MAX - col;
			if (room > len - i)
				room = len - i;
			for (k = 0; k < room && mime_qp_safe(s, len, i + k); k++)
				o[k] = (char)s[i + k];
			if (k > 0) {
				o += k;
				col += k;
				i += k;
				continue;
			}
		}
		i += mime_qp_one(s, len, i, &o, &col);
	}
	if (col > 0) {
		memcpy(o, "=\r\n", 3);
		o += 3;
	}
	return (size_t)(o - out);
}

static void
mime_body(struct buf *b, const char *type, const char *body)
{
	size_t len = strlen(body);

	buf_add_str(b, "Content-Type: ");
	buf_add_str(b, type);
	buf_add_str(b, "; charset=utf-8\r\n"
	    "Content-Transfer-Encoding: quoted-printable\r\n\r\n");
	if (len > (SIZE_MAX - 8) / 4)
		abort();
	buf_reserve(b, 4 * len + 8);
	b->len += mime_qp((const unsigned char *)body, len, b->data + b->len);
	b->data[b->len] = '\0';
}

static void
mime_bodies(const struct mime_message *m, struct buf *b)
{
	const char *seed = m->boundary_seed;

	if (m->html == NULL) {
		mime_body(b, "text/plain", m->text);
		return;
	}
	buf_add_str(b, "Content-Type: multipart/alternative;\r\n"
	    " boundary=\"" MIME_BOUNDARY_PREFIX);
	buf_add_str(b, seed);
	buf_add_str(b, "\"\r\n\r\n--" MIME_BOUNDARY_PREFIX);
	buf_add_str(b, seed);
	buf_add_str(b, "\r\n");
	mime_body(b, "text/plain", m->text);
	buf_add_str(b, "\r\n--" MIME_BOUNDARY_PREFIX);
	buf_add_str(b, seed);
	buf_add_str(b, "\r\n");
	mime_body(b, "text/html", m->html);
	buf_add_str(b, "\r\n--" MIME_BOUNDARY_PREFIX);
	buf_add_str(b, seed);
	buf_add_str(b, "--\r\n");
}

int
mime_build(const struct mime_message *m, struct buf *out,
    struct assent_err *err)
{
	buf_reset(out);
	buf_reserve(out, 0);    /* data is "" even when refused below */
	if (mime_check(m, err) == -1)
		return -1;
	mime_headers(m, out);
	mime_bodies(m, out);
	return 0;
}

/* --- the envelope sender ----------------------------------------------- */

static bool
mime_verp_char(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' ||
	    c == '_' || c == '.';
}

int
mime_verp(const char *prefix, const char *token, const char *domain,
    char *out, size_t outsize, struct assent_err *err)
{
	size_t plen = strlen(prefix), tlen = strlen(token), dlen = strlen(domain);
	char local[MIME_VERP_LOCAL_MAX + 1];
	int n;

	if (outsize > 0)
		out[0] = '\0';
	if (plen + tlen == 0 || plen + tlen > MIME_VERP_LOCAL_MAX)
		return err_set(err, EX_DATAERR, "invalid bounce address: the "
		    "local part must have 1 to %d octets, not %zu",
		    MIME_VERP_LOCAL_MAX, plen + tlen);
	memcpy(local, prefix, plen);
	memcpy(local + plen, token, tlen);
	local[plen + tlen] = '\0';
	for (size_t i = 0; i < plen + tlen; i++)
		if (!mime_verp_char(local[i]))
			return mime_refuse(local, "bounce local part", "only "
			    "lower-case letters, digits, '-', '_' and '.'", err);
	if (!mime_is_dot_atom(local, plen + tlen))
		return mime_refuse(local, "bounce local part", "a dot at the "
		    "start, the end or twice in a row", err);
	for (size_t i = 0; i < dlen; i++)
		if (!((domain[i] >= 'a' && domain[i] <= 'z') ||
		    (domain[i] >= '0' && domain[i] <= '9') ||
		    domain[i] == '-' || domain[i] == '.'))
			return mime_refuse(domain, "bounce domain", "not a "
			    "lower-case domain name", err);
	if (dlen == 0 || strchr(domain, '.') == NULL || domain[0] == '.' ||
	    domain[dlen - 1] == '.' || strstr(domain, "..") != NULL ||
	    plen + tlen + 1 + dlen > 254)
		return mime_refuse(domain, "bounce domain", "not a domain "
		    "name, or the address is over 254 octets", err);
	n = snprintf(out, outsize, "%s@%s", local, domain);
	if (n < 0 || (size_t)n >= outsize) {
		if (outsize > 0)
			out[0] = '\0';
		return err_set(err, EX_SOFTWARE, "bounce address buffer too "
		    "small");
	}
	return 0;
}

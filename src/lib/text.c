/* text: UTF-8 and control-character checks, safe quoting; see
 * include/assent/text.h */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sys/stat.h>

#include "assent/text.h"
#include "assent/xmalloc.h"

#define TEXT_LIST_NAME_MAX 64

/*
 * Decode one UTF-8 sequence at s (len > 0 bytes left). Returns its
 * length and sets *cp, or returns 0 when the bytes there are not
 * well-formed (RFC 3629 table, so overlongs, surrogates and values
 * above U+10FFFF fall out of the ranges on the second byte).
 */
static size_t
text_utf8_decode(const unsigned char *s, size_t len, uint32_t *cp)
{
	unsigned char lo = 0x80, hi = 0xbf;
	size_t need, i;
	uint32_t c;

	if (s[0] < 0x80) {
		*cp = s[0];
		return 1;
	}
	if (s[0] >= 0xc2 && s[0] <= 0xdf) {
		need = 2;
		c = s[0] & 0x1f;
	} else if (s[0] >= 0xe0 && s[0] <= 0xef) {
		need = 3;
		c = s[0] & 0x0f;
		if (s[0] == 0xe0)
			lo = 0xa0;              /* overlong below U+0800 */
		else if (s[0] == 0xed)
			hi = 0x9f;              /* surrogates */
	} else if (s[0] >= 0xf0 && s[0] <= 0xf4) {
		need = 4;
		c = s[0] & 0x07;
		if (s[0] == 0xf0)
			lo = 0x90;              /* overlong below U+10000 */
		else if (s[0] == 0xf4)
			hi = 0x8f;              /* above U+10FFFF */
	} else
		return 0;                       /* 80-BF, C0, C1, F5-FF */
	if (len < need)
		return 0;
	for (i = 1; i < need; i++) {
		if (s[i] < lo || s[i] > hi)
			return 0;
		lo = 0x80;
		hi = 0xbf;
		c = (c << 6) | (s[i] & 0x3f);
	}
	*cp = c;
	return need;
}

bool
text_is_utf8(const char *s, size_t len)
{
	const unsigned char *p = (const unsigned char *)s;
	uint32_t cp;
	size_t n;

	while (len > 0) {
		n = text_utf8_decode(p, len, &cp);
		if (n == 0)
			return false;
		p += n;
		len -= n;
	}
	return true;
}

static bool
text_is_control(uint32_t cp)
{
	return cp < 0x20 || (cp >= 0x7f && cp <= 0x9f);
}

/* Characters that are valid but would hide or reorder what a reader
 * sees in a terminal or a log: C1, line separators, bidi controls. */
static bool
text_is_unsafe_unicode(uint32_t cp)
{
	return (cp >= 0x80 && cp <= 0x9f) || cp == 0x200e || cp == 0x200f ||
	    cp == 0x2028 || cp == 0x2029 ||
	    (cp >= 0x202a && cp <= 0x202e) ||
	    (cp >= 0x2066 && cp <= 0x2069) || cp == 0xfeff;
}

/* The rendering of the character at p into rep (at least 8 bytes);
 * returns its length and sets *used to the input bytes it stands for. */
static size_t
text_quote_one(const unsigned char *p, size_t len, char *rep, size_t *used)
{
	uint32_t cp;
	size_t n;

	n = text_utf8_decode(p, len, &cp);
	if (n == 0) {
		*used = 1;
		return (size_t)snprintf(rep, 8, "\\x%02x", p[0]);
	}
	*used = n;
	switch (cp) {
	case '"':
		return (size_t)snprintf(rep, 8, "\\\"");
	case '\\':
		return (size_t)snprintf(rep, 8, "\\\\");
	case '\t':
		return (size_t)snprintf(rep, 8, "\\t");
	case '\r':
		return (size_t)snprintf(rep, 8, "\\r");
	case '\n':
		return (size_t)snprintf(rep, 8, "\\n");
	}
	if (cp < 0x20 || cp == 0x7f)
		return (size_t)snprintf(rep, 8, "\\x%02x", (unsigned)cp);
	if (text_is_unsafe_unicode(cp))
		return (size_t)snprintf(rep, 8, "\\u%04x", (unsigned)cp);
	memcpy(rep, p, n);
	return n;
}

const char *
text_quote(const char *s, size_t len, char *buf, size_t size)
{
	const unsigned char *p = (const unsigned char *)s;
	size_t i, used, n, total = 0, out = 0, room;
	char rep[8];

	if (size < 8)
		abort();
	for (i = 0; i < len; i += used)
		total += text_quote_one(p + i, len - i, rep, &used);
	room = total < size ? size - 1 : size - 1 - 3;
	for (i = 0; i < len; i += used) {
		n = text_quote_one(p + i, len - i, rep, &used);
		if (out + n > room)
			break;
		memcpy(buf + out, rep, n);
		out += n;
	}
	if (i < len) {
		memcpy(buf + out, "...", 3);
		out += 3;
	}
	buf[out] = '\0';
	return buf;
}

int
text_check_line(const char *s, size_t max, bool allow_empty,
    const char *what, struct assent_err *err)
{
	const unsigned char *p = (const unsigned char *)s;
	char q[TEXT_QUOTE_SIZE], rep[8];
	size_t len, i, n, used;
	uint32_t cp;

	len = s == NULL ? 0 : strlen(s);
	if (len == 0) {
		if (allow_empty)
			return 0;
		return err_set(err, EX_DATAERR, "invalid %s: empty value",
		    what);
	}
	text_quote(s, len, q, sizeof(q));
	if (len > max)
		return err_set(err, EX_DATAERR,
		    "invalid %s \"%s\": too long (%zu bytes, at most %zu)",
		    what, q, len, max);
	for (i = 0; i < len; i += n) {
		n = text_utf8_decode(p + i, len - i, &cp);
		if (n == 0)
			return err_set(err, EX_DATAERR, "invalid %s \"%s\": "
			    "not valid UTF-8 (byte %zu)", what, q, i + 1);
		if (text_is_control(cp)) {
			rep[text_quote_one(p + i, len - i, rep, &used)] = '\0';
			return err_set(err, EX_DATAERR, "invalid %s \"%s\": "
			    "control character %s (byte %zu)", what, q, rep,
			    i + 1);
		}
	}
	return 0;
}

static bool
text_is_alnum(unsigned char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
	    (c >= '0' && c <= '9');
}

int
text_check_list_name(const char *name, struct assent_err *err)
{
	const unsigned char *p = (const unsigned char *)name;
	char q[TEXT_QUOTE_SIZE], rep[8];
	size_t len, i, used;

	len = name == NULL ? 0 : strlen(name);
	if (len == 0)
		return err_set(err, EX_DATAERR, "invalid list name: empty");
	text_quote(name, len, q, sizeof(q));
	for (i = 0; i < len; i++) {
		if (text_is_alnum(p[i]) ||
		    (i > 0 && (p[i] == '.' || p[i] == '_' || p[i] == '-')))
			continue;
		rep[text_quote_one(p + i, len - i, rep, &used)] = '\0';
		if (i == 0 && (p[i] == '.' || p[i] == '_' || p[i] == '-'))
			return err_set(err, EX_DATAERR, "invalid list name "
			    "\"%s\": must start with a letter or digit, not "
			    "'%s'", q, rep);
		return err_set(err, EX_DATAERR, "invalid list name \"%s\": "
		    "character '%s' is not allowed (only A-Z, a-z, 0-9, '.', "
		    "'_' and '-')", q, rep);
	}
	if (len > TEXT_LIST_NAME_MAX)
		return err_set(err, EX_DATAERR, "invalid list name \"%s\": "
		    "too long (%zu characters, at most %d)", q, len,
		    TEXT_LIST_NAME_MAX);
	/* The name is the first part of the List-Id (RFC 2919), a dot-atom. */
	if (strstr(name, "..") != NULL || name[len - 1] == '.')
		return err_set(err, EX_DATAERR, "invalid list name \"%s\": "
		    "a dot must not end it or follow another (it begins the "
		    "List-Id header)", q);
	return 0;
}

void
text_make_utf8(char *s, size_t len)
{
	size_t i = 0;

	while (i < len) {
		unsigned char c = (unsigned char)s[i];
		size_t n = c < 0x80 ? 1 : c >= 0xc2 && c <= 0xdf ? 2 :
		    c >= 0xe0 && c <= 0xef ? 3 : c >= 0xf0 && c <= 0xf4 ? 4 : 0;

		if (n == 0 || i + n > len || !text_is_utf8(s + i, n)) {
			s[i++] = '?';
			continue;
		}
		i += n;
	}
}

/* A file that cannot be opened or read is EX_NOINPUT, as
 * doc/exit-codes.md says of input files (EX_IOERR is for output). */
int
text_read_file(const char *path, size_t max, char **text_r,
    struct assent_err *err)
{
	char q[TEXT_QUOTE_SIZE], *text = NULL;
	size_t len = 0, n;
	struct stat st;
	FILE *f;

	*text_r = NULL;
	text_quote(path, strlen(path), q, sizeof(q));
	if ((f = fopen(path, "r")) == NULL)
		return err_set(err, EX_NOINPUT, "%s: %s", q, strerror(errno));
	if (fstat(fileno(f), &st) == -1) {
		err_set(err, EX_NOINPUT, "%s: %s", q, strerror(errno));
		goto fail;
	}
	if (!S_ISREG(st.st_mode) && !S_ISFIFO(st.st_mode)) {
		err_set(err, EX_NOINPUT, "%s: not a regular file", q);
		goto fail;
	}
	text = xmalloc(max + 2);
	while ((n = fread(text + len, 1, max + 1 - len, f)) > 0)
		len += n;
	if (ferror(f)) {
		err_set(err, EX_NOINPUT, "%s: %s", q, strerror(errno));
		goto fail;
	}
	text[len] = '\0';
	if (len > max) {
		if (max % (1024 * 1024) == 0)
			err_set(err, EX_DATAERR, "%s: larger than %zu MB", q,
			    max / (1024 * 1024));
		else
			err_set(err, EX_DATAERR, "%s: larger than %zu kB", q,
			    max / 1024);
		goto fail;
	}
	if (memchr(text, '\0', len) != NULL) {
		err_set(err, EX_DATAERR, "%s: holds a NUL byte (byte %zu): not a "
		    "text file", q, (size_t)((char *)memchr(text, '\0', len) - text) + 1);
		goto fail;
	}
	if (!text_is_utf8(text, len)) {
		err_set(err, EX_DATAERR, "%s: not valid UTF-8", q);
		goto fail;
	}
	fclose(f);
	*text_r = text;
	return 0;
fail:
	fclose(f);
	free(text);
	return -1;
}

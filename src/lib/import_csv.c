/* import_csv: stream a CSV file through SHA-256 and libcsv, record by
 * record, with the line each record starts on (import_private.h).
 *
 * libcsv is fed one whole physical line at a time, so that a problem
 * found in a line ends with that line and the next line starts clean
 * wherever the 64 KiB reads fall. A record that spans lines and cannot
 * be read (its quote runs away, closes wrongly, or never closes) costs
 * only its first line: that line is rejected and the lines after it are
 * read again as records of their own, so no row goes uncounted. */
#include <csv.h>
#include <errno.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sysexits.h>
#include <unistd.h>
#include <openssl/evp.h>

#include "assent/buf.h"
#include "assent/xmalloc.h"
#include "import_private.h"

#define CSVIN_OPTIONS (CSV_STRICT | CSV_STRICT_FINI | CSV_APPEND_NULL)

enum csvin_mode { CSVIN_MODE_UNKNOWN, CSVIN_MODE_LF, CSVIN_MODE_CR };

struct csvin {
	struct csv_parser parser;
	const struct csvin_handlers *h;
	struct assent_err *err;
	char *bytes;                    /* the record's fields, NUL after each */
	size_t len, cap;
	size_t offset[CSVIN_FIELDS_MAX];
	struct csvin_field fields[CSVIN_FIELDS_MAX];
	size_t nfields;
	unsigned long line;             /* the physical line fed next */
	unsigned long rec_line;         /* where the record being read starts */
	struct buf raw;                 /* the record's lines as read */
	struct buf work;                /* read, not yet fed (from pos) */
	size_t pos;
	struct buf scratch;             /* a line with its stray CRs blanked */
	enum csvin_mode mode;
	size_t translated;              /* CR mode: work done up to here */
	bool bom_checked;
	bool in_record, in_quotes, skip_line, stopped;
	const char *error;
	char why[200];
};

static void
csvin_start(struct csvin *c)
{
	if (c->in_record)
		return;
	c->in_record = true;
	c->in_quotes = false;
	c->rec_line = c->line;
	buf_reset(&c->raw);
	c->nfields = 0;
	c->len = 0;
	c->error = NULL;
}

static void
csvin_fail_record(struct csvin *c, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* The first problem of a record is the one reported. */
static void
csvin_fail_record(struct csvin *c, const char *fmt, ...)
{
	va_list ap;

	if (c->error != NULL)
		return;
	va_start(ap, fmt);
	vsnprintf(c->why, sizeof(c->why), fmt, ap);
	va_end(ap);
	c->error = c->why;
}

/* libcsv: a field is complete. */
static void
csvin_on_field(void *s, size_t len, void *arg)
{
	struct csvin *c = arg;

	csvin_start(c);
	if (c->nfields == CSVIN_FIELDS_MAX) {
		csvin_fail_record(c, "more than %d fields", CSVIN_FIELDS_MAX);
		return;
	}
	if (c->len + len + 1 > c->cap) {
		c->cap = (c->len + len + 1) * 2;
		c->bytes = xreallocarray(c->bytes, c->cap, 1);
	}
	c->offset[c->nfields] = c->len;
	c->fields[c->nfields].len = len;
	memcpy(c->bytes + c->len, s, len);
	c->bytes[c->len + len] = '\0';
	c->len += len + 1;
	c->nfields++;
}

/* Hand the record to the callback and forget it. */
static void
csvin_emit(struct csvin *c)
{
	struct csvin_record rec;

	for (size_t i = 0; i < c->nfields; i++)
		c->fields[i].s = c->bytes + c->offset[i];
	rec.fields = c->fields;
	rec.nfields = c->nfields;
	rec.line = c->rec_line;
	rec.error = c->error;
	rec.raw = c->raw.data != NULL ? c->raw.data : "";
	rec.raw_len = c->raw.len;
	while (rec.raw_len > 0 && (rec.raw[rec.raw_len - 1] == '\n' ||
	    rec.raw[rec.raw_len - 1] == '\r'))
		rec.raw_len--;
	c->in_record = false;
	if (!c->stopped && c->h->record(&rec, c->h->arg, c->err) == -1)
		c->stopped = true;
}

/* libcsv: a record is complete. */
static void
csvin_on_record(int term, void *arg)
{
	struct csvin *c = arg;

	csvin_start(c);
	csvin_emit(c);
}

/* A new parser, after a record that could not be read. */
static void
csvin_reset(struct csvin *c)
{
	csv_free(&c->parser);
	csv_init(&c->parser, CSVIN_OPTIONS);
	c->in_record = false;
}

/* Nothing but blanks and line ends: no record (libcsv skips it too). */
static bool
csvin_blank(const char *p, size_t len)
{
	for (size_t i = 0; i < len; i++)
		if (p[i] != '\r' && p[i] != '\n' && p[i] != ' ' && p[i] != '\t')
			return false;
	return true;
}

/* Is p[i], a CR, one that ends no line? A CR before the line's LF, or
 * the last byte of the file, ends it. */
static bool
csvin_cr_is_stray(const char *p, size_t len, size_t i)
{
	return i + 1 < len && p[i + 1] != '\n';
}

/* Follow the quotes through one line; true when a CR outside quotes
 * ends no line (libcsv would end the record there and cut the line in
 * two). */
static bool
csvin_scan_line(struct csvin *c, const char *p, size_t len)
{
	bool stray = false;

	for (size_t i = 0; i < len; i++) {
		if (p[i] == '"')
			c->in_quotes = !c->in_quotes;
		else if (p[i] == '\r' && !c->in_quotes && csvin_cr_is_stray(p, len, i))
			stray = true;
	}
	return stray;
}

/* The line with every stray CR made a blank, for libcsv: the record is
 * rejected anyway, and stays one record. */
static const char *
csvin_blank_stray_crs(struct csvin *c, const char *p, size_t len)
{
	buf_reset(&c->scratch);
	buf_add(&c->scratch, p, len);
	for (size_t i = 0; i < len; i++)
		if (p[i] == '\r' && csvin_cr_is_stray(p, len, i))
			c->scratch.data[i] = ' ';
	return c->scratch.data;
}

/*
 * The record being read spans lines and cannot be read (why): reject
 * its first line alone, and read its other lines again, with the skip
 * bytes of work at pos that raw holds already, as what comes next.
 */
static void
csvin_refeed(struct csvin *c, size_t skip, const char *why)
{
	const char *nl = memchr(c->raw.data, '\n', c->raw.len);
	size_t first = (size_t)(nl - c->raw.data) + 1;
	struct buf again;

	buf_init(&again);
	buf_add(&again, c->raw.data + first, c->raw.len - first);
	buf_add(&again, c->work.data + c->pos + skip, c->work.len - c->pos - skip);
	c->error = NULL;
	csvin_fail_record(c, "%s", why);
	c->raw.len = first;
	c->nfields = 0;
	csvin_emit(c);
	csvin_reset(c);
	buf_free(&c->work);
	c->work = again;
	c->pos = 0;
	c->translated = 0;      /* all of it was translated before */
	c->line = c->rec_line + 1;
}

/* Does the record being read span more than one line? */
static bool
csvin_multiline(const struct csvin *c)
{
	const char *nl = c->raw.len > 0 ? memchr(c->raw.data, '\n', c->raw.len) : NULL;

	return nl != NULL && (size_t)(nl - c->raw.data) + 1 < c->raw.len;
}

/* A single line over the limit: rejected, with its first bytes. */
static void
csvin_long_line(struct csvin *c, const char *p, size_t len)
{
	csvin_start(c);
	buf_reset(&c->raw);
	buf_add(&c->raw, p, len < CSVIN_RECORD_MAX ? len : CSVIN_RECORD_MAX);
	c->nfields = 0;
	csvin_fail_record(c, "line %lu is over %d bytes", c->line, CSVIN_RECORD_MAX);
	csvin_emit(c);
	csvin_reset(c);
}

/*
 * Feed one physical line p (ending in LF, unless it is the file's last)
 * at work's pos. Returns 1 when work was rebuilt (a record's lines are
 * to be read again: go on from pos), else 0.
 */
static int
csvin_line(struct csvin *c, const char *p, size_t len)
{
	bool ends = len > 0 && p[len - 1] == '\n';
	const char *feed = p;
	char why[160];
	size_t used;

	if (!c->in_record && csvin_blank(p, len)) {
		c->line += ends;
		return 0;
	}
	csvin_start(c);
	if (c->raw.len + len > CSVIN_RECORD_MAX && c->raw.len > 0) {
		snprintf(why, sizeof(why), "a quoted field opened on line %lu is "
		    "still open %d bytes later (an unclosed quote?)", c->rec_line,
		    CSVIN_RECORD_MAX);
		csvin_refeed(c, 0, why);
		return 1;
	}
	if (len > CSVIN_RECORD_MAX) {
		csvin_long_line(c, p, len);
		c->line += ends;
		return 0;
	}
	buf_add(&c->raw, p, len);
	if (csvin_scan_line(c, p, len)) {
		csvin_fail_record(c, "line %lu has a carriage return (CR) that ends "
		    "no line: line ends must be LF or CRLF", c->line);
		feed = csvin_blank_stray_crs(c, p, len);
	}
	used = csv_parse(&c->parser, feed, len, csvin_on_field, csvin_on_record, c);
	if (used < len) {
		if (csvin_multiline(c)) {
			snprintf(why, sizeof(why), "the quoted field opened on line %lu "
			    "closes wrongly on line %lu (an unclosed quote?)",
			    c->rec_line, c->line);
			csvin_refeed(c, len, why);
			return 1;
		}
		csvin_fail_record(c, "malformed quoting on line %lu, byte %zu: a "
		    "quote inside an unquoted field, or text after a closing quote",
		    c->line, used + 1);
		csvin_emit(c);
		csvin_reset(c);
	}
	c->line += ends;
	return 0;
}

/* A line over the limit with no LF yet in sight: drop it up to its LF. */
static void
csvin_skip(struct csvin *c, const char *p, size_t avail)
{
	const char *nl = memchr(p, '\n', avail);

	if (nl == NULL) {
		c->pos += avail;
		return;
	}
	c->pos += (size_t)(nl - p) + 1;
	c->line++;
	c->skip_line = false;
}

/* Feed every whole line in work (at the end of the file, the rest too). */
static void
csvin_drain(struct csvin *c, bool eof)
{
	while (!c->stopped && c->pos < c->work.len) {
		const char *p = c->work.data + c->pos, *nl;
		size_t avail = c->work.len - c->pos, n;

		if (c->skip_line) {
			csvin_skip(c, p, avail);
			continue;
		}
		if ((nl = memchr(p, '\n', avail)) != NULL)
			n = (size_t)(nl - p) + 1;
		else if (eof)
			n = avail;
		else if (avail > CSVIN_RECORD_MAX && c->in_record && c->raw.len > 0) {
			csvin_refeed(c, 0, "a quoted field is still open after "
			    "64 KiB (an unclosed quote?)");
			continue;
		} else if (avail > CSVIN_RECORD_MAX) {
			csvin_long_line(c, p, avail);
			c->skip_line = true;
			continue;
		} else
			break;
		if (csvin_line(c, p, n) == 0)
			c->pos += n;
	}
	if (c->pos > 0) {
		memmove(c->work.data, c->work.data + c->pos, c->work.len - c->pos);
		c->work.len -= c->pos;
		c->translated -= c->translated < c->pos ? c->translated : c->pos;
		c->pos = 0;
	}
}

/* The end of the file: a record still open is flushed, or (an unclosed
 * quote) its first line rejected and the rest read again. */
static void
csvin_finish(struct csvin *c)
{
	char why[160];

	for (;;) {
		csvin_drain(c, true);
		if (c->stopped ||
		    csv_fini(&c->parser, csvin_on_field, csvin_on_record, c) == 0)
			return;
		csvin_start(c);
		snprintf(why, sizeof(why), "a quoted field opened on line %lu is not "
		    "closed at the end of the file", c->rec_line);
		if (!csvin_multiline(c)) {
			csvin_fail_record(c, "%s", why);
			c->nfields = 0;
			csvin_emit(c);
			csvin_reset(c);
			return;
		}
		csvin_refeed(c, 0, why);
	}
}

/* Which line ends the file uses, from the first one in work: a CR not
 * followed by LF means CR alone ends lines (CR mode). Undecided while
 * work ends in that CR; a first line over the limit is taken as LF. */
static void
csvin_detect_mode(struct csvin *c, bool eof)
{
	const char *p = c->work.data;

	for (size_t i = 0; i < c->work.len && c->mode == CSVIN_MODE_UNKNOWN; i++) {
		if (p[i] == '\n')
			c->mode = CSVIN_MODE_LF;
		else if (p[i] == '\r' && i + 1 < c->work.len)
			c->mode = p[i + 1] == '\n' ? CSVIN_MODE_LF : CSVIN_MODE_CR;
		else if (p[i] == '\r' && eof)
			c->mode = CSVIN_MODE_CR;
		else if (p[i] == '\r')
			return;
	}
	if (c->mode == CSVIN_MODE_UNKNOWN && (eof || c->work.len > CSVIN_RECORD_MAX))
		c->mode = CSVIN_MODE_LF;
}

/* CR mode: every CR that ends a line becomes LF, from where the last
 * call stopped (a CR that ends what was read waits for the next byte). */
static void
csvin_translate(struct csvin *c, bool eof)
{
	char *p = c->work.data;
	size_t i;

	for (i = c->translated; i < c->work.len; i++) {
		if (p[i] != '\r')
			continue;
		if (i + 1 < c->work.len) {
			if (p[i + 1] != '\n')
				p[i] = '\n';
		} else if (eof) {
			p[i] = '\n';
		} else {
			break;
		}
	}
	c->translated = i;
}

/* What was read, into work: a BOM at the very start dropped, the line
 * ends made LF in CR mode; then every whole line fed. */
static void
csvin_take(struct csvin *c, const char *p, size_t n, bool eof)
{
	static const char bom[] = "\xef\xbb\xbf";

	buf_add(&c->work, p, n);
	if (!c->bom_checked) {
		if (c->work.len < 3 && !eof)
			return;
		if (c->work.len >= 3 && memcmp(c->work.data, bom, 3) == 0) {
			memmove(c->work.data, c->work.data + 3, c->work.len - 3);
			c->work.len -= 3;
		}
		c->bom_checked = true;
	}
	if (c->mode == CSVIN_MODE_UNKNOWN)
		csvin_detect_mode(c, eof);
	if (c->mode == CSVIN_MODE_UNKNOWN)
		return;
	if (c->mode == CSVIN_MODE_CR)
		csvin_translate(c, eof);
	csvin_drain(c, eof);
}

static void
csvin_hex(const unsigned char md[32], char out[65])
{
	static const char digits[] = "0123456789abcdef";

	for (int i = 0; i < 32; i++) {
		out[2 * i] = digits[md[i] >> 4];
		out[2 * i + 1] = digits[md[i] & 15];
	}
	out[64] = '\0';
}

/* One read: what is there now (a pipe's bytes as they come), or 0 at
 * the end; -1 on error. */
static ssize_t
csvin_get(FILE *in, char *chunk)
{
	int fd = fileno(in);
	ssize_t n;
	size_t got;

	if (fd == -1) {
		got = fread(chunk, 1, CSVIN_CHUNK, in);
		return got == 0 && ferror(in) ? -1 : (ssize_t)got;
	}
	do
		n = read(fd, chunk, CSVIN_CHUNK);
	while (n == -1 && errno == EINTR);
	return n;
}

/* Read every chunk: hash, then take. */
static int
csvin_loop(struct csvin *c, FILE *in, const char *what, EVP_MD_CTX *md)
{
	char *chunk = xmalloc(CSVIN_CHUNK);
	uint64_t total = 0;
	ssize_t n = 0;

	while (!c->stopped && (n = csvin_get(in, chunk)) > 0) {
		EVP_DigestUpdate(md, chunk, (size_t)n);
		total += (size_t)n;
		csvin_take(c, chunk, (size_t)n, false);
		if (c->h->progress != NULL)
			c->h->progress(total, c->h->arg);
	}
	free(chunk);
	if (n == -1)
		return err_set(c->err, EX_IOERR, "%s: read error: %s", what,
		    strerror(errno));
	return c->stopped ? -1 : 0;
}

int
csvin_read(FILE *in, const char *what, const struct csvin_handlers *h,
    char sha256_r[65], struct assent_err *err)
{
	struct csvin *c = xcalloc(1, sizeof(*c));
	EVP_MD_CTX *md = EVP_MD_CTX_new();
	unsigned char digest[32];
	int rc;

	if (md == NULL)
		abort();
	c->h = h;
	c->err = err;
	c->line = 1;
	buf_init(&c->raw);
	buf_init(&c->work);
	buf_init(&c->scratch);
	csv_init(&c->parser, CSVIN_OPTIONS);
	EVP_DigestInit_ex(md, EVP_sha256(), NULL);
	rc = csvin_loop(c, in, what, md);
	if (rc == 0) {
		csvin_take(c, "", 0, true);
		csvin_finish(c);
		rc = c->stopped ? -1 : 0;
	}
	EVP_DigestFinal_ex(md, digest, NULL);
	csvin_hex(digest, sha256_r);
	EVP_MD_CTX_free(md);
	csv_free(&c->parser);
	free(c->bytes);
	buf_free(&c->raw);
	buf_free(&c->work);
	buf_free(&c->scratch);
	free(c);
	return rc;
}

/* check_import_csv: table-driven tests of the import's CSV reader
 * (src/lib/import_csv.c, through import_private.h), its times
 * (import_time_parse() and import_time_text() in src/lib/import.c) and
 * addr_role() (src/lib/addr.c). Files are strings read through
 * fmemopen() or a temporary file; big ones are made in memory. */
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <check.h>
#include <openssl/evp.h>
#include "testhelp.h"

#include "assent/addr.h"
#include "assent/err.h"
#include "import_private.h"

#define NELEM(a) (sizeof(a) / sizeof((a)[0]))

/* ck_assert() for code run per record: each ck_assert() is a checkpoint
 * Check writes down, too slow for thousands of records. */
#define FAIL_IF(cond, ...) do {                                         \
	if (cond)                                                       \
		ck_abort_msg(__VA_ARGS__);                              \
} while (0)

/* ---- a collector: every record as text ------------------------------- */

/*
 * Each record becomes one line of text: its start line, then each field
 * in brackets with CR, LF, NUL and backslash escaped; or, for a record
 * with an error, "!" (what fields a malformed record keeps is not
 * promised) and, when show_raw is set, its raw bytes in braces.
 * "1[a][b]\n3!{a\"b}\n" is a good record on line 1 and a malformed one
 * on line 3.
 */
struct collect {
	FILE *out;
	char *text;
	size_t text_len;
	unsigned long records;
	unsigned long stop_after;       /* 0: never stop */
	unsigned long last_line;
	char first_error[256];
	unsigned long first_error_line;
	size_t first_error_nfields;
	uint64_t progress;
	unsigned long progress_calls;
	/* self-checking files: field 0 must be "row<line>" */
	bool show_raw;
	bool rows_named;
	const char *eol;                /* and field 1 "q,<line><eol>z\"" */
	unsigned long rows_checked;
};

static void
collect_bytes(FILE *out, const char *s, size_t len, const char *brackets)
{
	fputc(brackets[0], out);
	for (size_t i = 0; i < len; i++) {
		switch (s[i]) {
		case '\0': fputs("\\0", out); break;
		case '\n': fputs("\\n", out); break;
		case '\r': fputs("\\r", out); break;
		case '\\': fputs("\\\\", out); break;
		default: fputc(s[i], out); break;
		}
	}
	fputc(brackets[1], out);
}

/* Self-checking files: field 0 is "row<line>", field 1 (with eol set)
 * "q,<line><eol>z\"". */
static void
collect_check_row(struct collect *c, const struct csvin_record *rec,
    char *want, size_t size)
{
	snprintf(want, size, "row%lu", rec->line);
	FAIL_IF(rec->nfields < 1 || strcmp(rec->fields[0].s, want) != 0,
	    "record on line %lu starts with \"%.40s\"", rec->line,
	    rec->nfields > 0 ? rec->fields[0].s : "");
	if (c->eol != NULL) {
		snprintf(want, size, "q,%lu%sz\"", rec->line, c->eol);
		FAIL_IF(rec->nfields != 2 || rec->fields[1].len != strlen(want) ||
		    strcmp(rec->fields[1].s, want) != 0,
		    "record on line %lu: %zu fields, the second \"%.40s\"",
		    rec->line, rec->nfields, rec->nfields > 1 ?
		    rec->fields[1].s : "");
	}
	c->rows_checked++;
}

static int
collect_record(const struct csvin_record *rec, void *arg,
    struct assent_err *err)
{
	struct collect *c = arg;
	char want[64];

	FAIL_IF(rec->line < 1 || rec->line < c->last_line,
	    "record on line %lu after one on line %lu", rec->line, c->last_line);
	FAIL_IF(rec->nfields > CSVIN_FIELDS_MAX, "%zu fields", rec->nfields);
	c->last_line = rec->line;
	for (size_t i = 0; i < rec->nfields; i++)
		FAIL_IF(rec->fields[i].s[rec->fields[i].len] != '\0',
		    "line %lu: field %zu without its NUL", rec->line, i);
	c->records++;
	if (rec->error != NULL) {
		FAIL_IF(rec->error[0] == '\0', "line %lu: empty error", rec->line);
		FAIL_IF(rec->raw == NULL || rec->raw_len > CSVIN_RECORD_MAX,
		    "line %lu: raw of %zu bytes", rec->line, rec->raw_len);
		fprintf(c->out, "%lu!", rec->line);
		if (c->show_raw)
			collect_bytes(c->out, rec->raw, rec->raw_len, "{}");
		fputc('\n', c->out);
		if (c->first_error[0] == '\0') {
			snprintf(c->first_error, sizeof(c->first_error), "%s",
			    rec->error);
			c->first_error_line = rec->line;
			c->first_error_nfields = rec->nfields;
		}
	} else {
		fprintf(c->out, "%lu", rec->line);
		for (size_t i = 0; i < rec->nfields; i++)
			collect_bytes(c->out, rec->fields[i].s,
			    rec->fields[i].len, "[]");
		fputc('\n', c->out);
		if (c->rows_named && rec->line > 1)
			collect_check_row(c, rec, want, sizeof(want));
	}
	if (c->stop_after != 0 && c->records == c->stop_after)
		return err_set(err, EX_SOFTWARE, "stopped at record %lu",
		    c->records);
	return 0;
}

static void
collect_progress(uint64_t bytes, void *arg)
{
	struct collect *c = arg;

	FAIL_IF(bytes < c->progress, "progress %llu after %llu",
	    (unsigned long long)bytes, (unsigned long long)c->progress);
	c->progress = bytes;
	c->progress_calls++;
}

static void
collect_init(struct collect *c)
{
	memset(c, 0, sizeof(*c));
	c->out = open_memstream(&c->text, &c->text_len);
	ck_assert_ptr_nonnull(c->out);
}

static void
collect_done(struct collect *c)
{
	fclose(c->out);
	free(c->text);
}

/* The SHA-256 of data as csvin_read() gives it, computed here. */
static void
sha256_hex(const char *data, size_t len, char out[65])
{
	unsigned char md[EVP_MAX_MD_SIZE];
	unsigned int mdlen = 0;

	ck_assert_int_eq(EVP_Digest(data, len, md, &mdlen, EVP_sha256(), NULL),
	    1);
	ck_assert_uint_eq(mdlen, 32);
	for (unsigned int i = 0; i < mdlen; i++)
		snprintf(out + 2 * i, 3, "%02x", md[i]);
}

/* A stream that reads data: fmemopen() (no file descriptor), or with
 * by_fd a temporary file holding it (one). */
static FILE *
open_data(const char *data, size_t len, bool by_fd)
{
	FILE *in;

	if (by_fd) {
		in = tmpfile();
		ck_assert_ptr_nonnull(in);
		ck_assert_uint_eq(fwrite(data, 1, len, in), len);
		ck_assert_int_eq(fflush(in), 0);
		rewind(in);
	} else if (len == 0) {
		/* fmemopen() may refuse a size of 0 */
		in = fopen("/dev/null", "r");
	} else {
		in = fmemopen((void *)(uintptr_t)data, len, "r");
	}
	ck_assert_ptr_nonnull(in);
	return in;
}

/* Read len bytes of data through csvin_read() into c; its return value.
 * When it returns 0, the digest and the progress are checked. */
static int
read_data(const char *data, size_t len, bool by_fd, struct collect *c,
    struct assent_err *err)
{
	struct csvin_handlers h = { collect_record, collect_progress, c };
	char sha[65], want[65];
	FILE *in = open_data(data, len, by_fd);
	int rc;

	memset(sha, 'x', sizeof(sha));
	err_clear(err);
	rc = csvin_read(in, "test.csv", &h, sha, err);
	fclose(in);
	fflush(c->out);
	ck_assert_uint_eq(strlen(sha), 64);
	if (rc == 0) {
		sha256_hex(data, len, want);
		ck_assert_str_eq(sha, want);
		ck_assert_uint_eq(c->progress, len);
	}
	return rc;
}

static int
read_mem(const char *data, size_t len, struct collect *c,
    struct assent_err *err)
{
	return read_data(data, len, false, c, err);
}

/* ---- records and their lines ------------------------------------------ */

struct record_case {
	const char *name;
	const char *input;
	size_t len;
	const char *want;
};

#define IN(s) s, sizeof(s) - 1

static const struct record_case record_cases[] = {
	{ "LF", IN("a,b\nc,d\n"), "1[a][b]\n2[c][d]\n" },
	{ "CRLF", IN("a,b\r\nc,d\r\n"), "1[a][b]\n2[c][d]\n" },
	{ "quoted LF moves the next record down",
	  IN("a,\"x\ny\"\nb\n"), "1[a][x\\ny]\n3[b]\n" },
	{ "quoted CRLF moves the next record down",
	  IN("\"x\r\ny\",z\r\nb\r\n"), "1[x\\r\\ny][z]\n3[b]\n" },
	{ "two quoted line breaks",
	  IN("h\n\"1\n2\n3\",x\nlast\n"), "1[h]\n2[1\\n2\\n3][x]\n5[last]\n" },
	{ "quoted commas and doubled quotes",
	  IN("\"a,b\",\"say \"\"hi\"\"\",\"\"\"\"\n"),
	  "1[a,b][say \"hi\"][\"]\n" },
	{ "BOM at the start is not data",
	  IN("\xef\xbb\xbf" "email,name\nx@example.org,X\n"),
	  "1[email][name]\n2[x@example.org][X]\n" },
	{ "BOM before a quoted field",
	  IN("\xef\xbb\xbf\"email\"\n"), "1[email]\n" },
	{ "a BOM elsewhere is data",
	  IN("a\n\xef\xbb\xbf" "b\n"), "1[a]\n2[\xef\xbb\xbf" "b]\n" },
	{ "blank lines are skipped but counted",
	  IN("a\n\nb\n\r\n\nc\n"), "1[a]\n3[b]\n6[c]\n" },
	{ "blank lines first", IN("\n\r\n\na,b\n"), "4[a][b]\n" },
	{ "blank lines last", IN("a\n\n\n"), "1[a]\n" },
	{ "last record without a final newline",
	  IN("a\nb,c"), "1[a]\n2[b][c]\n" },
	{ "last quoted field without a final newline",
	  IN("a\n\"b\nc\""), "1[a]\n2[b\\nc]\n" },
	{ "only a header", IN("email,name,basis\n"), "1[email][name][basis]\n" },
	{ "only a header, no newline", IN("email"), "1[email]\n" },
	{ "empty file", IN(""), "" },
	{ "only blank lines", IN("\n\r\n\n"), "" },
	{ "empty fields", IN(",,\n\"\",x\n"), "1[][][]\n2[][x]\n" },
	{ "NUL in a field", IN("a\0b,c\n"), "1[a\\0b][c]\n" },
	{ "NUL in a quoted field", IN("\"\0\0\",x\n"), "1[\\0\\0][x]\n" },
	{ "UTF-8 kept as it is", IN("J\xc3\xbcrgen,\xe2\x82\xac\n"),
	  "1[J\xc3\xbcrgen][\xe2\x82\xac]\n" },
	{ "line ends CR alone", IN("a,b\rc\r\rd"), "1[a][b]\n2[c]\n4[d]\n" },
	{ "blank lines of blanks", IN("a\n \t \n\t\r\nb\n"), "1[a]\n4[b]\n" },
	/* malformed records, each followed by good ones */
	{ "quote inside an unquoted field",
	  IN("h\na\"b,c\nd,e\n"), "1[h]\n2!{a\"b,c}\n3[d][e]\n" },
	{ "quote inside a later unquoted field",
	  IN("h\nx,a\"b\r\nd\r\n"), "1[h]\n2!{x,a\"b}\n3[d]\n" },
	{ "text after a closing quote",
	  IN("h\n\"a\"b,c\nd\n"), "1[h]\n2!{\"a\"b,c}\n3[d]\n" },
	{ "two malformed records in a row",
	  IN("a\"\n\"b\"x\nc\n"), "1!{a\"}\n2!{\"b\"x}\n3[c]\n" },
	{ "malformed last record without a newline",
	  IN("h\na\"b"), "1[h]\n2!{a\"b}\n" },
	{ "a CR that ends no line", IN("h\na\rb,c\nd\n"),
	  "1[h]\n2!{a\\rb,c}\n3[d]\n" },
	/* a malformed record over several lines costs its first line only:
	 * the lines after it are read again */
	{ "text after a closing quote on a record's second line",
	  IN("h\n\"a\nb\"c\nd\n"), "1[h]\n2!{\"a}\n3!{b\"c}\n4[d]\n" },
	{ "unclosed quote at the end of the file",
	  IN("h\nok\n\"b,c\nd\n"), "1[h]\n2[ok]\n3!{\"b,c}\n4[d]\n" },
	{ "unclosed quote at the end, CRLF",
	  IN("h\r\n\"b,c\r\nd,e\r\n\r\nf"),
	  "1[h]\n2!{\"b,c}\n3[d][e]\n5[f]\n" },
	{ "unclosed quote, whole file", IN("\"abc"), "1!{\"abc}\n" },
};

/* _i: the case, times two; odd: read through a file descriptor. */
START_TEST(test_records)
{
	const struct record_case *rc = &record_cases[_i / 2];
	bool by_fd = (_i & 1) != 0;
	struct assent_err err;
	struct collect c;

	collect_init(&c);
	c.show_raw = true;
	ck_assert_msg(read_data(rc->input, rc->len, by_fd, &c, &err) == 0,
	    "%s: %s", rc->name, err.msg);
	ck_assert_msg(strcmp(c.text, rc->want) == 0,
	    "%s%s: got\n%s\nwant\n%s", rc->name, by_fd ? " (fd)" : "",
	    c.text, rc->want);
	collect_done(&c);
}
END_TEST

/* ---- what the error texts say ----------------------------------------- */

struct error_case {
	const char *input;
	size_t len;
	unsigned long line;
	const char *says;               /* a part of the error text */
};

static const struct error_case error_cases[] = {
	{ IN("h\na\"b\n"), 2, "quote inside an unquoted field" },
	{ IN("h\n\"a\"b\n"), 2, "text after a closing quote" },
	{ IN("h\n\"a\"b\n"), 2, "line 2" },
	{ IN("h\n\n\"a\nb\nc"), 3, "line 3" },
	{ IN("h\n\n\"a\nb\nc"), 3, "not closed at the end of the file" },
	{ IN("h\n\"a\n\n\nb\n"), 2, "line 2" },
	{ IN("h\na\rb\n"), 2, "carriage return" },
	{ IN("h\na\rb\n"), 2, "line 2" },
	{ IN("h\n\"a\nb\"c\n"), 2, "line 2" },
};

START_TEST(test_error_text)
{
	const struct error_case *ec = &error_cases[_i];
	struct assent_err err;
	struct collect c;

	collect_init(&c);
	ck_assert_int_eq(read_mem(ec->input, ec->len, &c, &err), 0);
	ck_assert_msg(c.first_error[0] != '\0', "no error for case %d", _i);
	ck_assert_uint_eq(c.first_error_line, ec->line);
	ck_assert_msg(strstr(c.first_error, ec->says) != NULL,
	    "error \"%s\" does not say \"%s\"", c.first_error, ec->says);
	collect_done(&c);
}
END_TEST

/* ---- long records ------------------------------------------------------- */

/* Append printf output to a growing buffer. */
struct gen {
	char *p;
	size_t len, cap;
};

static void
gen_add(struct gen *g, const char *s, size_t n)
{
	if (g->len + n + 1 > g->cap) {
		g->cap = (g->len + n + 1) * 2;
		g->p = realloc(g->p, g->cap);
		FAIL_IF(g->p == NULL, "out of memory");
	}
	memcpy(g->p + g->len, s, n);
	g->len += n;
	g->p[g->len] = '\0';
}

static void
gen_str(struct gen *g, const char *s)
{
	gen_add(g, s, strlen(s));
}

static void
gen_fill(struct gen *g, char ch, size_t n)
{
	char block[1024];

	memset(block, ch, sizeof(block));
	for (; n > sizeof(block); n -= sizeof(block))
		gen_add(g, block, sizeof(block));
	gen_add(g, block, n);
}

/*
 * A runaway quote: line 2 opens a quoted field that never closes, the
 * lines after it are good rows "row<line>,<line>". Once the record is
 * over CSVIN_RECORD_MAX bytes it is an error naming line 2, and that
 * line alone is lost: every line after it comes out as its own good
 * record, with its own line number.
 */
START_TEST(test_runaway_quote)
{
	struct gen g = { 0 };
	struct assent_err err;
	struct collect c;
	char line[64];

	gen_str(&g, "h,n\n");
	gen_str(&g, "\"runaway,2\n");
	for (unsigned long l = 3; l <= 12000; l++) {
		snprintf(line, sizeof(line), "row%lu,%lu\n", l, l);
		gen_str(&g, line);
	}
	ck_assert_uint_gt(g.len, 2 * CSVIN_RECORD_MAX);
	collect_init(&c);
	c.rows_named = true;
	ck_assert_int_eq(read_mem(g.p, g.len, &c, &err), 0);
	ck_assert_uint_eq(c.first_error_line, 2);
	ck_assert_msg(strstr(c.first_error, "line 2") != NULL, "%s",
	    c.first_error);
	ck_assert_msg(strstr(c.text, "\n2!\n3[row3][3]\n4[row4][4]\n") != NULL,
	    "%.200s", c.text);
	/* the header, the runaway line, then one record a line */
	ck_assert_uint_eq(c.records, 2 + 11998);
	ck_assert_uint_eq(c.rows_checked, 11998);
	ck_assert_uint_eq(c.last_line, 12000);
	collect_done(&c);
	free(g.p);
}
END_TEST

/* A quoted field of 5000 lines, under CSVIN_RECORD_MAX in all: one
 * record, and the next one starts 5000 lines down. */
START_TEST(test_long_quoted_field)
{
	struct gen g = { 0 };
	struct assent_err err;
	struct collect c;

	gen_str(&g, "h\n\"");
	for (int i = 0; i < 5000; i++)
		gen_str(&g, "abcdefghi\n");
	gen_str(&g, "\",x\nrow5003,1\n");
	ck_assert_uint_lt(g.len, CSVIN_RECORD_MAX);
	collect_init(&c);
	ck_assert_int_eq(read_mem(g.p, g.len, &c, &err), 0);
	ck_assert_str_eq(c.first_error, "");
	ck_assert_uint_eq(c.records, 3);
	ck_assert_uint_eq(c.last_line, 5003);
	/* "1[h]\n2[" then the field, 10 bytes a line with LF escaped */
	ck_assert_uint_eq(c.text_len, strlen("1[h]\n2[") + 5000 * 11 +
	    strlen("][x]\n5003[row5003][1]\n"));
	ck_assert_str_eq(c.text + c.text_len - strlen("][x]\n5003[row5003][1]\n"),
	    "][x]\n5003[row5003][1]\n");
	collect_done(&c);
	free(g.p);
}
END_TEST

/*
 * One physical line of size bytes (LF included) on line 2, between a
 * header and a good row: within CSVIN_RECORD_MAX it is a record, over it
 * an error, and either way the next line comes out whole as line 3. The
 * longer lines straddle two and three 64 KiB reads.
 */
struct long_case {
	size_t size;
	bool quoted;
	bool ok;
};

static const struct long_case long_cases[] = {
	{ 60000, false, true },
	{ 60000, true, true },
	{ 65000, false, true },
	{ 70000, false, false },
	{ 70000, true, false },
	{ 140000, false, false },
	{ 140000, true, false },
	{ 200000, false, false },
	{ 300000, true, false },
};

START_TEST(test_long_line)
{
	const struct long_case *lc = &long_cases[_i];
	struct gen g = { 0 };
	struct assent_err err;
	struct collect c;
	char want[64];

	gen_str(&g, "h\n");
	if (lc->quoted) {
		gen_str(&g, "\"");
		gen_fill(&g, 'q', lc->size - 3);
		gen_str(&g, "\"");
	} else {
		gen_fill(&g, 'x', lc->size - 1);
	}
	gen_str(&g, "\nrow3,after\n");
	collect_init(&c);
	ck_assert_int_eq(read_mem(g.p, g.len, &c, &err), 0);
	if (lc->ok) {
		ck_assert_uint_eq(c.records, 3);
		ck_assert_str_eq(c.first_error, "");
	} else {
		snprintf(want, sizeof(want), "1[h]\n2!\n3[row3][after]\n");
		ck_assert_msg(strcmp(c.text, want) == 0,
		    "size %zu: got\n%.300s\nwant\n%s", lc->size, c.text, want);
		ck_assert_uint_eq(c.first_error_line, 2);
		ck_assert_msg(strstr(c.first_error, "line 2") != NULL, "%s",
		    c.first_error);
	}
	ck_assert_uint_eq(c.last_line, 3);
	collect_done(&c);
	free(g.p);
}
END_TEST

/*
 * A malformed record whose line is cut by the end of a 64 KiB read: the
 * rest of that line, in the next read, is still the same bad line and
 * must not come out as a record of its own.
 */
START_TEST(test_malformed_across_reads)
{
	struct gen g = { 0 };
	struct assent_err err;
	struct collect c;
	char tail[64];

	gen_str(&g, "h\n");
	while (g.len < CSVIN_CHUNK - 100)
		gen_str(&g, "pad,pad,pad,pad\n");
	/* this line starts before the end of the first read, ends after */
	gen_str(&g, "a\"b,");
	gen_fill(&g, 'z', 300);
	gen_str(&g, ",tail\nlast,1\n");
	collect_init(&c);
	ck_assert_int_eq(read_mem(g.p, g.len, &c, &err), 0);
	/* the header, the pad lines, the bad line, the last one */
	ck_assert_msg(c.last_line == c.first_error_line + 1,
	    "bad line %lu, then a record on line %lu; records:\n%s",
	    c.first_error_line, c.last_line,
	    c.text + (c.text_len > 200 ? c.text_len - 200 : 0));
	snprintf(tail, sizeof(tail), "\n%lu!\n%lu[last][1]\n",
	    c.first_error_line, c.first_error_line + 1);
	ck_assert_uint_ge(c.text_len, strlen(tail));
	ck_assert_str_eq(c.text + c.text_len - strlen(tail), tail);
	collect_done(&c);
	free(g.p);
}
END_TEST

/* Up to CSVIN_FIELDS_MAX fields is a record; one more is an error, and
 * the next record is fine. */
struct fields_case {
	size_t n;
	bool ok;
};

static const struct fields_case fields_cases[] = {
	{ 1, true },
	{ CSVIN_FIELDS_MAX - 1, true },
	{ CSVIN_FIELDS_MAX, true },
	{ CSVIN_FIELDS_MAX + 1, false },
	{ 1000, false },
};

START_TEST(test_fields_max)
{
	const struct fields_case *fc = &fields_cases[_i];
	struct gen g = { 0 };
	struct assent_err err;
	struct collect c;
	char f[32];

	for (size_t i = 0; i < fc->n; i++) {
		snprintf(f, sizeof(f), "%s%zu", i == 0 ? "" : ",", i);
		gen_str(&g, f);
	}
	gen_str(&g, "\r\nnext,1\r\n");
	collect_init(&c);
	ck_assert_int_eq(read_mem(g.p, g.len, &c, &err), 0);
	ck_assert_uint_eq(c.records, 2);
	ck_assert_ptr_nonnull(strstr(c.text, "\n2[next][1]\n"));
	if (fc->ok) {
		ck_assert_str_eq(c.first_error, "");
		ck_assert_uint_eq(strncmp(c.text, "1[0]", 4), 0);
	} else {
		ck_assert_uint_eq(c.first_error_line, 1);
		ck_assert_uint_le(c.first_error_nfields, CSVIN_FIELDS_MAX);
		ck_assert_msg(strstr(c.first_error, "more than 256 fields")
		    != NULL, "%s", c.first_error);
	}
	collect_done(&c);
	free(g.p);
}
END_TEST

/* ---- 64 KiB reads ------------------------------------------------------- */

/*
 * Records of two lines each (a quoted line break), named after the line
 * they start on, behind a header whose length (pad) moves the end of the
 * first read through every byte of a record: inside a quoted field,
 * between CR and LF, just after LF (records are 21 to 23 bytes long
 * there).
 */
static void
chunk_boundary(int pad, bool crlf, bool bom, bool by_fd)
{
	const char *eol = crlf ? "\r\n" : "\n";
	struct gen g = { 0 };
	struct assent_err err;
	struct collect c;
	char rec[128];
	unsigned long line = 2, records = 0;
	bool straddled = false;

	if (bom)
		gen_str(&g, "\xef\xbb\xbf");
	gen_str(&g, "h,q,");
	gen_fill(&g, 'p', (size_t)pad);
	gen_str(&g, eol);
	while (g.len < CSVIN_CHUNK + 4000) {
		size_t before = g.len;

		snprintf(rec, sizeof(rec), "row%lu,\"q,%lu%sz\"\"\"%s", line, line,
		    eol, eol);
		gen_str(&g, rec);
		if (before < CSVIN_CHUNK && g.len >= CSVIN_CHUNK)
			straddled = true;
		line += 2;
		records++;
	}
	ck_assert(straddled);
	collect_init(&c);
	c.rows_named = true;
	c.eol = eol;    /* every second field, its line break as it was */
	ck_assert_msg(read_data(g.p, g.len, by_fd, &c, &err) == 0, "pad %d: %s",
	    pad, err.msg);
	ck_assert_msg(c.first_error[0] == '\0', "pad %d: line %lu: %s", pad,
	    c.first_error_line, c.first_error);
	ck_assert_msg(c.rows_checked == records, "pad %d: %lu records of %lu",
	    pad, c.rows_checked, records);
	ck_assert_uint_eq(c.last_line, line - 2);
	collect_done(&c);
	free(g.p);
}

/* Bit 0 of _i: CRLF; bit 1: a BOM; bit 2: read through a file
 * descriptor. Every pad in one test (a test is a process). */
START_TEST(test_chunk_boundary)
{
	for (int pad = 0; pad < 32; pad++)
		chunk_boundary(pad, (_i & 1) != 0, (_i & 2) != 0, (_i & 4) != 0);
}
END_TEST

/* ---- the callback stops the reading, read errors ------------------------ */

START_TEST(test_callback_stops)
{
	static const char in[] = "a\nb\nc\nd\n";
	struct assent_err err;
	struct collect c;

	collect_init(&c);
	c.stop_after = 2;
	ck_assert_int_eq(read_mem(in, sizeof(in) - 1, &c, &err), -1);
	ck_assert_uint_eq(c.records, 2);
	ck_assert_str_eq(c.text, "1[a]\n2[b]\n");
	ck_assert_int_eq(err.code, EX_SOFTWARE);
	ck_assert_str_eq(err.msg, "stopped at record 2");
	collect_done(&c);
}
END_TEST

/* Stopping on the last record (without a final newline, so at the end of
 * the file) and on the first of a long file. */
START_TEST(test_callback_stops_last)
{
	static const char in[] = "a\nb";
	struct assent_err err;
	struct collect c;

	collect_init(&c);
	c.stop_after = 2;
	ck_assert_int_eq(read_mem(in, sizeof(in) - 1, &c, &err), -1);
	ck_assert_uint_eq(c.records, 2);
	ck_assert_int_eq(err.code, EX_SOFTWARE);
	collect_done(&c);
}
END_TEST

START_TEST(test_callback_stops_long)
{
	struct gen g = { 0 };
	struct assent_err err;
	struct collect c;

	while (g.len < 3 * CSVIN_CHUNK)
		gen_str(&g, "x,y\n");
	collect_init(&c);
	c.stop_after = 1;
	ck_assert_int_eq(read_mem(g.p, g.len, &c, &err), -1);
	ck_assert_uint_eq(c.records, 1);
	ck_assert_uint_lt(c.progress, g.len);
	collect_done(&c);
	free(g.p);
}
END_TEST

START_TEST(test_read_error)
{
	struct csvin_handlers h = { collect_record, NULL, NULL };
	char buf[16] = "a,b\n", sha[65];
	struct assent_err err;
	struct collect c;
	FILE *in;

	collect_init(&c);
	h.arg = &c;
	/* a stream open for writing only: fread() fails */
	in = fmemopen(buf, sizeof(buf), "w");
	ck_assert_ptr_nonnull(in);
	err_clear(&err);
	ck_assert_int_eq(csvin_read(in, "broken.csv", &h, sha, &err), -1);
	fclose(in);
	ck_assert_int_eq(err.code, EX_IOERR);
	ck_assert_msg(strstr(err.msg, "broken.csv") != NULL, "%s", err.msg);
	ck_assert_uint_eq(c.records, 0);
	collect_done(&c);
}
END_TEST

/* ---- import_time_parse(), import_time_text() ---------------------------- */

struct time_case {
	const char *in;
	int ok;
	int64_t us;                     /* when ok; -1: not compared */
};

#define S(sec) ((int64_t)(sec) * 1000000)

static const struct time_case time_cases[] = {
	{ "1970-01-01", 1, 0 },
	{ "1970-01-01T00:00:00Z", 1, 0 },
	{ "2025-01-31", 1, S(1738281600) },
	{ "2025-01-31T12:00:00Z", 1, S(1738324800) },
	{ "2025-01-31 12:00:00Z", 1, S(1738324800) },
	{ "2025-01-31T12:00Z", 1, S(1738324800) },
	{ "2025-01-31 12:00Z", 1, S(1738324800) },
	{ "2025-01-31T14:00:00+02:00", 1, S(1738324800) },
	{ "2025-01-31T14:00+02:00", 1, S(1738324800) },
	{ "2025-01-31T06:30:00-05:30", 1, S(1738324800) },
	{ "2025-01-31T12:00:00+00:00", 1, S(1738324800) },
	{ "2025-01-31T12:00:00-00:00", 1, S(1738324800) },
	{ "2025-02-01T01:00:00+13:00", 1, S(1738324800) },
	{ "2025-01-31T12:00:00.5Z", 1, S(1738324800) + 500000 },
	{ "2025-01-31T12:00:00.123456Z", 1, S(1738324800) + 123456 },
	{ "2025-01-31T12:00:00.000001Z", 1, S(1738324800) + 1 },
	{ "2025-01-31T12:00:00.999999+01:00", 1, S(1738321200) + 999999 },
	{ "2025-01-31T12:00:00.1234567Z", 1, -1 },
	{ "2025-02-28T23:30:00Z", 1, S(1740785400) },
	{ "2024-02-29", 1, S(1709164800) },
	{ "2024-02-29T23:59:59Z", 1, S(1709251199) },
	{ "2000-02-29", 1, S(951782400) },
	{ "9999-12-31T23:59:59Z", 1, S(253402300799LL) },
	{ "2025-12-31", 1, S(1767139200) },
	/* dates that do not exist */
	{ "2025-02-30", 0, 0 },
	{ "2025-02-29", 0, 0 },
	{ "2023-02-29", 0, 0 },
	{ "2100-02-29", 0, 0 },
	{ "2025-04-31", 0, 0 },
	{ "2025-13-01", 0, 0 },
	{ "2025-00-10", 0, 0 },
	{ "2025-01-00", 0, 0 },
	{ "2025-01-32", 0, 0 },
	/* times that do not exist */
	{ "2025-01-31T24:00:00Z", 0, 0 },
	{ "2025-01-31T12:60:00Z", 0, 0 },
	{ "2025-01-31T12:00:60Z", 0, 0 },
	{ "2025-01-31T12:00:00+24:00", 0, 0 },
	{ "2025-01-31T12:00:00+02:60", 0, 0 },
	/* a time needs a zone */
	{ "2025-01-31T12:00", 0, 0 },
	{ "2025-01-31T12:00:00", 0, 0 },
	{ "2025-01-31 12:00:00.5", 0, 0 },
	/* other shapes */
	{ "", 0, 0 },
	{ "2025", 0, 0 },
	{ "2025-1-31", 0, 0 },
	{ "25-01-31", 0, 0 },
	{ "2025/01/31", 0, 0 },
	{ "20250131", 0, 0 },
	{ "2025-01-31Z", 0, 0 },
	{ "2025-01-31T", 0, 0 },
	{ "2025-01-31 ", 0, 0 },
	{ " 2025-01-31", 0, 0 },
	{ "2025-01-31x", 0, 0 },
	{ "2025-01-31T12Z", 0, 0 },
	{ "2025-01-31T12:0Z", 0, 0 },
	{ "2025-01-31T12:00:0Z", 0, 0 },
	{ "2025-01-31T12:00:00Zjunk", 0, 0 },
	{ "2025-01-31T12:00:00Z ", 0, 0 },
	{ "2025-01-31T12:00:00+0200", 0, 0 },
	{ "2025-01-31T12:00:00+02", 0, 0 },
	{ "2025-01-31T12:00:00+02:00:00", 0, 0 },
	{ "2025-01-31T12:00:00z", 0, 0 },
	{ "2025-01-31t12:00:00Z", 0, 0 },
	{ "2025-01-31T12:00:00.5", 0, 0 },
	/* a fraction needs seconds and at least one digit */
	{ "2025-01-31T12:00.5Z", 0, 0 },
	{ "2025-01-31T12:00:00.Z", 0, 0 },
	{ "2025-01-31T12:00:00.+01:00", 0, 0 },
	/* before 1970 */
	{ "1969-12-31", 0, 0 },
	{ "1969-12-31T23:59:59Z", 0, 0 },
	{ "0000-01-01", 0, 0 },
	/* the instant is before 1970 even though the text's year is not (a
	 * value that import_time_text() cannot write so that it reads back) */
	{ "1970-01-01T00:30+01:00", 0, 0 },
	{ "1970-01-01T00:00:00.5+00:01", 0, 0 },
	{ "1970-01-01T00:00:00-01:00", 1, S(3600) },
	{ "1970-01-01T00:00:00+00:00", 1, 0 },
};

START_TEST(test_time_parse)
{
	const struct time_case *tc = &time_cases[_i];
	int64_t us = 12345;
	int rc;

	rc = import_time_parse(tc->in, &us);
	if (!tc->ok) {
		ck_assert_msg(rc == -1, "\"%s\" accepted as %lld", tc->in,
		    (long long)us);
		return;
	}
	ck_assert_msg(rc == 0, "\"%s\" refused", tc->in);
	if (tc->us != -1)
		ck_assert_msg(us == tc->us, "\"%s\": %lld, want %lld", tc->in,
		    (long long)us, (long long)tc->us);
}
END_TEST

/* import_time_text() as PostgreSQL reads it, and back again. */
struct text_case {
	int64_t us;
	const char *text;
};

static const struct text_case text_cases[] = {
	{ 0, "1970-01-01 00:00:00.000000+00" },
	{ 1, "1970-01-01 00:00:00.000001+00" },
	{ S(1738324800), "2025-01-31 12:00:00.000000+00" },
	{ S(1738324800) + 123456, "2025-01-31 12:00:00.123456+00" },
	{ S(1709251199) + 999999, "2024-02-29 23:59:59.999999+00" },
	{ S(253402300799LL), "9999-12-31 23:59:59.000000+00" },
};

/* import_time_text()'s zone "+00" as import_time_parse() takes it. */
static void
time_text_parse(const char *text, int64_t *us_r)
{
	char in[80];
	size_t n = strlen(text);

	ck_assert_uint_gt(n, 3);
	ck_assert_str_eq(text + n - 3, "+00");
	snprintf(in, sizeof(in), "%s:00", text);
	ck_assert_msg(import_time_parse(in, us_r) == 0, "\"%s\" refused", in);
}

START_TEST(test_time_text)
{
	const struct text_case *tc = &text_cases[_i];
	char out[64];
	int64_t us;

	import_time_text(tc->us, out);
	ck_assert_str_eq(out, tc->text);
	time_text_parse(out, &us);
	ck_assert_int_eq(us, tc->us);
}
END_TEST

/* Every valid case of the parse table: text and back to the same value. */
START_TEST(test_time_round_trip)
{
	const struct time_case *tc = &time_cases[_i];
	char out[64];
	int64_t us, again;

	if (!tc->ok)
		return;
	ck_assert_int_eq(import_time_parse(tc->in, &us), 0);
	import_time_text(us, out);
	time_text_parse(out, &again);
	ck_assert_msg(again == us, "\"%s\" -> %lld -> \"%s\" -> %lld", tc->in,
	    (long long)us, out, (long long)again);
}
END_TEST

/* ---- addr_role() -------------------------------------------------------- */

struct role_case {
	const char *address;
	const char *role;               /* NULL: not a role address */
};

static const struct role_case role_cases[] = {
	{ "postmaster@example.org", "postmaster" },
	{ "Abuse@example.org", "abuse" },
	{ "ABUSE@EXAMPLE.ORG", "abuse" },
	{ "noreply+x@example.org", "noreply" },
	{ "no-reply@example.org", "no-reply" },
	{ "No-Reply+tag+more@example.org", "no-reply" },
	{ "mailer-daemon@example.org", "mailer-daemon" },
	{ "hostmaster@b\xc3\xbc" "cher.example", "hostmaster" },
	{ "post@example.org", NULL },
	{ "abuser@example.org", NULL },
	{ "info@example.org", NULL },
	{ "postmaster.x@example.org", NULL },
	{ "xpostmaster@example.org", NULL },
	{ "x+postmaster@example.org", NULL },
	{ "noreplyx@example.org", NULL },
	{ "jane@postmaster.example.org", NULL },
};

START_TEST(test_addr_role)
{
	const struct role_case *rc = &role_cases[_i];
	struct assent_err err;
	struct addr a;
	const char *role;

	ck_assert_msg(addr_parse(rc->address, &a, &err) == 0, "%s: %s",
	    rc->address, err.msg);
	role = addr_role(&a);
	if (rc->role == NULL)
		ck_assert_msg(role == NULL, "%s: role %s", rc->address, role);
	else
		ck_assert_msg(role != NULL && strcmp(role, rc->role) == 0,
		    "%s: role %s, want %s", rc->address,
		    role != NULL ? role : "(none)", rc->role);
}
END_TEST

static Suite *
import_csv_suite(void)
{
	Suite *s = suite_create("import_csv");
	TCase *tc = tcase_create("csv");
	TCase *tt = tcase_create("time");

	tcase_set_timeout(tc, 20);
	tcase_add_loop_test(tc, test_records, 0, 2 * NELEM(record_cases));
	tcase_add_loop_test(tc, test_error_text, 0, NELEM(error_cases));
	tcase_add_test(tc, test_runaway_quote);
	tcase_add_test(tc, test_long_quoted_field);
	tcase_add_loop_test(tc, test_long_line, 0, NELEM(long_cases));
	tcase_add_test(tc, test_malformed_across_reads);
	tcase_add_loop_test(tc, test_fields_max, 0, NELEM(fields_cases));
	tcase_add_loop_test(tc, test_chunk_boundary, 0, 8);
	tcase_add_test(tc, test_callback_stops);
	tcase_add_test(tc, test_callback_stops_last);
	tcase_add_test(tc, test_callback_stops_long);
	tcase_add_test(tc, test_read_error);
	suite_add_tcase(s, tc);
	tcase_add_loop_test(tt, test_time_parse, 0, NELEM(time_cases));
	tcase_add_loop_test(tt, test_time_text, 0, NELEM(text_cases));
	tcase_add_loop_test(tt, test_time_round_trip, 0, NELEM(time_cases));
	tcase_add_loop_test(tt, test_addr_role, 0, NELEM(role_cases));
	suite_add_tcase(s, tt);
	return s;
}

int
main(void)
{
	return testhelp_run_suite(import_csv_suite());
}

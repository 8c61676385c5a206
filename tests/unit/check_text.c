/* check_text: table-driven tests of UTF-8 validation, line checks, list
 * names and quoting (src/lib/text.c). */
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include <check.h>
#include "testhelp.h"

#include "assent/err.h"
#include "assent/text.h"

/* ---- text_is_utf8 ---------------------------------------------------- */

struct utf8_case {
	const char *s;
	size_t len;             /* 0: strlen(s) */
	bool valid;
};

static const struct utf8_case utf8_cases[] = {
	{ "", 0, true },
	{ "plain ASCII", 0, true },
	{ "a\0b", 3, true },                            /* U+0000 is UTF-8 */
	{ "caf\xc3\xa9", 0, true },                     /* U+00E9 */
	{ "\xc2\x80", 0, true },                        /* U+0080, lowest 2 */
	{ "\xdf\xbf", 0, true },                        /* U+07FF */
	{ "\xe0\xa0\x80", 0, true },                    /* U+0800 */
	{ "\xed\x9f\xbf", 0, true },                    /* U+D7FF */
	{ "\xee\x80\x80", 0, true },                    /* U+E000 */
	{ "\xef\xbf\xbf", 0, true },                    /* U+FFFF */
	{ "\xf0\x90\x80\x80", 0, true },                /* U+10000 */
	{ "\xf4\x8f\xbf\xbf", 0, true },                /* U+10FFFF */
	{ "\xf0\x9f\x92\xa9", 0, true },                /* U+1F4A9 */
	{ "\x80", 0, false },                           /* lone continuation */
	{ "a\xbf" "b", 0, false },
	{ "\xc0\x80", 0, false },                       /* overlong NUL */
	{ "\xc0\xaf", 0, false },                       /* overlong '/' */
	{ "\xc1\xbf", 0, false },                       /* overlong U+007F */
	{ "\xe0\x80\xaf", 0, false },                   /* overlong 3 */
	{ "\xe0\x9f\xbf", 0, false },                   /* overlong U+07FF */
	{ "\xf0\x80\x80\xaf", 0, false },               /* overlong 4 */
	{ "\xf0\x8f\xbf\xbf", 0, false },               /* overlong U+FFFF */
	{ "\xed\xa0\x80", 0, false },                   /* U+D800 */
	{ "\xed\xbf\xbf", 0, false },                   /* U+DFFF */
	{ "\xed\xa0\xbd\xed\xb2\xa9", 0, false },       /* CESU-8 pair */
	{ "\xf4\x90\x80\x80", 0, false },               /* U+110000 */
	{ "\xf5\x80\x80\x80", 0, false },
	{ "\xf8\x88\x80\x80\x80", 0, false },           /* 5-byte form */
	{ "\xfe", 0, false },
	{ "\xff", 0, false },
	{ "\xc3", 0, false },                           /* truncated 2 */
	{ "\xe2\x82", 0, false },                       /* truncated 3 */
	{ "\xf0\x9f\x92", 0, false },                   /* truncated 4 */
	{ "\xe2\x82" "a", 0, false },                   /* bad continuation */
	{ "\xc3\xa9\xc3", 0, false },                   /* truncated at end */
	{ "\xc3\xa9", 1, false },                       /* cut by len */
};

START_TEST(test_utf8)
{
	const struct utf8_case *c = &utf8_cases[_i];
	size_t len = c->len == 0 ? strlen(c->s) : c->len;

	ck_assert_msg(text_is_utf8(c->s, len) == c->valid,
	    "case %d: expected %s", _i, c->valid ? "valid" : "invalid");
}
END_TEST

/* ---- text_check_line ------------------------------------------------- */

struct line_case {
	const char *s;
	size_t max;
	bool allow_empty;
	const char *why;        /* NULL: accepted; else the whole message */
};

static const struct line_case line_cases[] = {
	{ "web form", 64, false, NULL },
	{ "Jos\xc3\xa9 M\xc3\xbcller", 64, false, NULL },
	{ "\xe6\x97\xa5\xe6\x9c\xac", 6, false, NULL },        /* exactly max */
	{ "\xe6\x97\xa5\xe6\x9c\xac", 5, false,
	  "invalid what \"\xe6\x97\xa5\xe6\x9c\xac\": too long (6 bytes, "
	  "at most 5)" },
	{ "", 64, true, NULL },
	{ NULL, 64, true, NULL },
	{ "", 64, false, "invalid what: empty value" },
	{ NULL, 64, false, "invalid what: empty value" },
	{ "a\rb", 64, false,
	  "invalid what \"a\\rb\": control character \\r (byte 2)" },
	{ "a\n", 64, false,
	  "invalid what \"a\\n\": control character \\n (byte 2)" },
	{ "\tx", 64, false,
	  "invalid what \"\\tx\": control character \\t (byte 1)" },
	{ "x\x7f", 64, false,
	  "invalid what \"x\\x7f\": control character \\x7f (byte 2)" },
	{ "\x1b[2J", 64, false,
	  "invalid what \"\\x1b[2J\": control character \\x1b (byte 1)" },
	{ "ab\xc2\x85", 64, false,
	  "invalid what \"ab\\u0085\": control character \\u0085 (byte 3)" },
	{ "\xc2\x9f", 64, false,
	  "invalid what \"\\u009f\": control character \\u009f (byte 1)" },
	{ "\xc2\xa0", 64, false, NULL },                 /* U+00A0 is fine */
	{ "ab\xff", 64, false,
	  "invalid what \"ab\\xff\": not valid UTF-8 (byte 3)" },
	{ "\xed\xa0\x80", 64, false,
	  "invalid what \"\\xed\\xa0\\x80\": not valid UTF-8 (byte 1)" },
	{ "say \"hi\"", 64, false, NULL },
};

START_TEST(test_line)
{
	const struct line_case *c = &line_cases[_i];
	struct assent_err err;
	int rc;

	err_clear(&err);
	rc = text_check_line(c->s, c->max, c->allow_empty, "what", &err);
	if (c->why == NULL) {
		ck_assert_msg(rc == 0, "case %d refused: %s", _i, err.msg);
		return;
	}
	ck_assert_int_eq(rc, -1);
	ck_assert_int_eq(err.code, EX_DATAERR);
	ck_assert_str_eq(err.msg, c->why);
}
END_TEST

/* ---- text_check_list_name -------------------------------------------- */

struct name_case {
	const char *name;
	const char *why;        /* NULL: accepted; else part of the message */
};

static const struct name_case name_cases[] = {
	{ "news", NULL },
	{ "News-Letter_2024.v2", NULL },
	{ "0day", NULL },
	{ "a", NULL },
	{ "a123456789012345678901234567890123456789012345678901234567890123",
	  NULL },                                        /* 64 */
	{ "a1234567890123456789012345678901234567890123456789012345678901234",
	  "too long (65 characters, at most 64)" },
	{ "", "invalid list name: empty" },
	{ NULL, "invalid list name: empty" },
	{ "-news", "must start with a letter or digit, not '-'" },
	{ ".news", "must start with a letter or digit, not '.'" },
	{ "_news", "must start with a letter or digit, not '_'" },
	{ "my list", "character ' ' is not allowed" },
	{ "a/b", "character '/' is not allowed" },
	{ "a\"b", "invalid list name \"a\\\"b\": character '\\\"' is not" },
	{ "a\nb", "character '\\n' is not allowed" },
	{ "caf\xc3\xa9", "character '\xc3\xa9' is not allowed" },
	{ "caf\xe9", "character '\\xe9' is not allowed" },
	{ "news.", "a dot must not end it or follow another" },
	{ "news..letter", "a dot must not end it or follow another" },
	{ "news.letter", NULL },
};

START_TEST(test_list_name)
{
	const struct name_case *c = &name_cases[_i];
	struct assent_err err;
	int rc;

	err_clear(&err);
	rc = text_check_list_name(c->name, &err);
	if (c->why == NULL) {
		ck_assert_msg(rc == 0, "refused %s: %s", c->name, err.msg);
		return;
	}
	ck_assert_int_eq(rc, -1);
	ck_assert_int_eq(err.code, EX_DATAERR);
	ck_assert_msg(strstr(err.msg, c->why) != NULL, "wanted \"%s\", got: %s",
	    c->why, err.msg);
}
END_TEST

/* ---- text_quote ------------------------------------------------------ */

struct quote_case {
	const char *s;
	size_t size;
	const char *want;
};

static const struct quote_case quote_cases[] = {
	{ "plain", 16, "plain" },
	{ "a\"b\\c", 16, "a\\\"b\\\\c" },
	{ "\r\n\t\x01\x7f", 32, "\\r\\n\\t\\x01\\x7f" },
	{ "\xc3\xa9\xc2\x85", 16, "\xc3\xa9\\u0085" },
	{ "\xe2\x80\xae" "evil", 16, "\\u202eevil" },     /* bidi override */
	{ "\xff\xc3", 16, "\\xff\\xc3" },
	{ "0123456", 8, "0123456" },                      /* exactly fits */
	{ "01234567", 8, "0123..." },
	{ "\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9", 8, "\xc3\xa9\xc3\xa9..." },
	{ "ab\xe2\x82\xac\xe2\x82\xac", 8, "ab..." },      /* whole chars */
	{ "abcd\\efgh", 8, "abcd..." },                   /* whole escapes */
};

START_TEST(test_quote)
{
	const struct quote_case *c = &quote_cases[_i];
	char buf[64];
	const char *r;

	memset(buf, 'X', sizeof(buf));
	r = text_quote(c->s, strlen(c->s), buf, c->size);
	ck_assert_ptr_eq(r, buf);
	ck_assert_str_eq(buf, c->want);
	ck_assert_uint_lt(strlen(buf), c->size);
	ck_assert_int_eq(buf[c->size], 'X');    /* nothing past size */
}
END_TEST

/* ---- text_make_utf8 --------------------------------------------------- */

static const struct {
	const char *in, *out;
} make_utf8_cases[] = {
	{ "plain ascii", "plain ascii" },
	{ "caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80", "caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80" },
	{ "Mozilla \xe9\xff\xfe", "Mozilla ???" },
	{ "cut \xc3", "cut ?" },                    /* a character cut short */
	{ "\xc0\xaf", "??" },                       /* overlong */
	{ "\xed\xa0\x80", "???" },                 /* a surrogate */
	{ "\xf5\x80\x80\x80", "????" },           /* beyond U+10FFFF */
	{ "\xe2\x82", "??" },
	{ "", "" },
};

START_TEST(test_make_utf8)
{
	char buf[64];

	snprintf(buf, sizeof(buf), "%s", make_utf8_cases[_i].in);
	text_make_utf8(buf, strlen(buf));
	ck_assert_str_eq(buf, make_utf8_cases[_i].out);
	ck_assert(text_is_utf8(buf, strlen(buf)));
}
END_TEST

static Suite *
text_suite(void)
{
	Suite *s = suite_create("text");
	TCase *tc = tcase_create("text");

	tcase_add_loop_test(tc, test_utf8, 0,
	    sizeof(utf8_cases) / sizeof(utf8_cases[0]));
	tcase_add_loop_test(tc, test_line, 0,
	    sizeof(line_cases) / sizeof(line_cases[0]));
	tcase_add_loop_test(tc, test_list_name, 0,
	    sizeof(name_cases) / sizeof(name_cases[0]));
	tcase_add_loop_test(tc, test_make_utf8, 0,
	    sizeof(make_utf8_cases) / sizeof(make_utf8_cases[0]));
	tcase_add_loop_test(tc, test_quote, 0,
	    sizeof(quote_cases) / sizeof(quote_cases[0]));
	suite_add_tcase(s, tc);
	return s;
}

int
main(void)
{
	return testhelp_run_suite(text_suite());
}

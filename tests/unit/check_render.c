/* check_render: merge-field templates (src/lib/render.c): every field,
 * defaults, HTML escaping, whitespace, refusals with line and column,
 * the body requirements, subject values with line breaks, a 1 MB
 * template and reuse of the output buffer. */
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <check.h>
#include "testhelp.h"
#include <jansson.h>

#include "assent/err.h"
#include "assent/render.h"

#define URL     "https://x.example/u/T1?a=1&b=2"
#define URL_H   "https://x.example/u/T1?a=1&amp;b=2"
#define POSTAL  "1 Main St, Town"
/* Every body needs these two; the tables append them. */
#define TAIL    "\n{{ unsubscribe_url }}\n{{sender.postal_address}}"
#define TAIL_T  "\n" URL "\n" POSTAL
#define TAIL_H  "\n" URL_H "\n" POSTAL

static json_t *attrs;
static struct render_values values;

static void
setup(void)
{
	json_error_t jerr;

	attrs = json_loads("{\"city\": \"K\\u00f6ln\", \"n\": 42, "
	    "\"real\": 1.5, \"flag\": true, \"empty\": \"\", \"nil\": null, "
	    "\"arr\": [1, \"two\"], \"obj\": {\"a\": 1}, "
	    "\"html\": \"<b>&\\\"'\", \"multi\": \"a\\r\\nb\", "
	    "\"nul\": \"a\\u0000b\", \"tab\": \"a\\tb\", "
	    "\"c1\": \"a\\u0085b\", \"with-dash_1\": \"ok\"}", JSON_ALLOW_NUL,
	    &jerr);
	ck_assert_msg(attrs != NULL, "%s", jerr.text);
	memset(&values, 0, sizeof(values));
	values.name = "Ann";
	values.email = "ann@example.org";
	values.attrs = attrs;
	values.unsubscribe_url = URL;
	values.manage_url = "https://x.example/m/T2";
	values.postal_address = POSTAL;
	values.organisation = "Acme & Co";
	values.list = "<news&co>";
	values.confirm_url = "https://x.example/c/T3";
	values.title = "Leave <news>";
	values.content = "<p>made by assentd</p>";
}

static void
teardown(void)
{
	json_decref(attrs);
}

/* Compile and render tpl with values; the result (fresh) or NULL with
 * err filled. */
static char *
render_string(const char *tpl, enum render_kind kind,
    const struct render_values *v, struct assent_err *err)
{
	struct render_template *t;
	struct buf b;
	char *s;

	if (render_compile(tpl, kind, &t, err) == -1)
		return NULL;
	buf_init(&b);
	if (render_run(t, v, &b, err) == -1) {
		render_free(t);
		buf_free(&b);
		return NULL;
	}
	render_free(t);
	s = strdup(b.data != NULL ? b.data : "");
	buf_free(&b);
	return s;
}

/* ---- rendering: every field, defaults, escaping, whitespace ---------- */

static const struct {
	enum render_kind kind;
	const char *tpl;
	const char *want;
} ok_cases[] = {
	/* every field, subject */
	{ RENDER_SUBJECT, "Hi {{ name }}", "Hi Ann" },
	{ RENDER_SUBJECT, "{{ email }}", "ann@example.org" },
	{ RENDER_SUBJECT, "{{ attr.city }}!", "K\xc3\xb6ln!" },
	{ RENDER_SUBJECT, "{{ sender.organisation }}", "Acme & Co" },
	{ RENDER_SUBJECT, "{{ sender.postal_address }}", POSTAL },
	{ RENDER_SUBJECT, "no fields at all", "no fields at all" },
	{ RENDER_SUBJECT, "", "" },
	{ RENDER_SUBJECT, "a } b }} c {", "a } b }} c {" },
	/* whitespace variants */
	{ RENDER_SUBJECT, "{{name}}", "Ann" },
	{ RENDER_SUBJECT, "{{   name}}", "Ann" },
	{ RENDER_SUBJECT, "{{name   }}", "Ann" },
	{ RENDER_TEXT, "{{\tname\t}}" TAIL, "Ann" TAIL_T },
	{ RENDER_SUBJECT, "{{attr.nope|\"x\"}}", "x" },
	{ RENDER_SUBJECT, "{{  attr.nope  |  \"x\"  }}", "x" },
	/* attributes: JSON types, defaults */
	{ RENDER_SUBJECT, "{{ attr.n }}", "42" },
	{ RENDER_SUBJECT, "{{ attr.real }}", "1.5" },
	{ RENDER_SUBJECT, "{{ attr.flag }}", "true" },
	{ RENDER_SUBJECT, "{{ attr.arr }}", "[1,\"two\"]" },
	{ RENDER_SUBJECT, "{{ attr.obj }}", "{\"a\":1}" },
	{ RENDER_SUBJECT, "{{ attr.with-dash_1 }}", "ok" },
	{ RENDER_SUBJECT, "[{{ attr.nope }}]", "[]" },
	{ RENDER_SUBJECT, "{{ attr.nope | \"friend\" }}", "friend" },
	{ RENDER_SUBJECT, "{{ attr.empty | \"friend\" }}", "friend" },
	{ RENDER_SUBJECT, "{{ attr.nil | \"friend\" }}", "friend" },
	{ RENDER_SUBJECT, "{{ attr.city | \"friend\" }}", "K\xc3\xb6ln" },
	{ RENDER_SUBJECT, "{{ attr.nope | \"\" }}", "" },
	{ RENDER_SUBJECT, "{{ attr.nope | \"a \\\"q\\\" \\\\ }}\" }}",
	    "a \"q\" \\ }}" },
	{ RENDER_SUBJECT, "{{ name | \"friend\" }}", "Ann" },
	{ RENDER_SUBJECT, "{{ attr.nope | \"Gr\xc3\xbc\xc3\x9f" "e\" }}",
	    "Gr\xc3\xbc\xc3\x9f" "e" },
	/* values go in as they are outside HTML */
	{ RENDER_SUBJECT, "{{ attr.html }}", "<b>&\"'" },
	{ RENDER_TEXT, "{{ attr.html }} {{ attr.multi }} {{ attr.tab }}" TAIL,
	    "<b>&\"' a\r\nb a\tb" TAIL_T },
	{ RENDER_TEXT, "Hi {{ name }},\n{{ manage_url }}" TAIL,
	    "Hi Ann,\nhttps://x.example/m/T2" TAIL_T },
	/* HTML: every value and default escaped, literal text not */
	{ RENDER_HTML, "<p>{{ attr.html }}</p>" TAIL,
	    "<p>&lt;b&gt;&amp;&quot;&#39;</p>" TAIL_H },
	{ RENDER_HTML, "{{ sender.organisation }}" TAIL, "Acme &amp; Co" TAIL_H },
	{ RENDER_HTML, "{{ attr.nope | \"<i>&\" }}" TAIL, "&lt;i&gt;&amp;" TAIL_H },
	{ RENDER_HTML, "{{ attr.arr }}" TAIL, "[1,&quot;two&quot;]" TAIL_H },
	{ RENDER_HTML, "<a href=\"{{unsubscribe_url}}\">x</a>"
	    "{{ sender.postal_address }}",
	    "<a href=\"" URL_H "\">x</a>" POSTAL },
	/* notices: the list and the confirmation link */
	{ RENDER_NOTICE_SUBJECT, "Confirm {{ list }} for {{ name | \"you\" }}",
	    "Confirm <news&co> for Ann" },
	{ RENDER_NOTICE_TEXT, "{{ list }}: {{ confirm_url }} {{ email }}",
	    "<news&co>: https://x.example/c/T3 ann@example.org" },
	{ RENDER_NOTICE_HTML, "<a href=\"{{ confirm_url }}\">{{ list }}</a>"
	    "{{ sender.postal_address }}",
	    "<a href=\"https://x.example/c/T3\">&lt;news&amp;co&gt;</a>" POSTAL },
	/* pages: content goes in as it is, everything else escaped */
	{ RENDER_PAGE, "<title>{{ title }}</title>{{ content }}{{ list }}",
	    "<title>Leave &lt;news&gt;</title><p>made by assentd</p>"
	    "&lt;news&amp;co&gt;" },
	{ RENDER_PAGE, "{{content}}{{ sender.organisation }}",
	    "<p>made by assentd</p>Acme &amp; Co" },
};

START_TEST(test_render_ok)
{
	struct assent_err err;
	char *got;

	got = render_string(ok_cases[_i].tpl, ok_cases[_i].kind, &values, &err);
	ck_assert_msg(got != NULL, "case %d: %s", _i, err.msg);
	ck_assert_str_eq(got, ok_cases[_i].want);
	free(got);
}
END_TEST

/* Missing values: NULL and "" both take the default, or render as
 * nothing. */
START_TEST(test_missing_values)
{
	struct render_values v = { 0 };
	struct assent_err err;
	char *got;

	got = render_string("[{{ name | \"friend\" }}|{{ name }}|{{ email }}|"
	    "{{ attr.city }}|{{ sender.organisation }}]", RENDER_SUBJECT, &v,
	    &err);
	ck_assert_msg(got != NULL, "%s", err.msg);
	ck_assert_str_eq(got, "[friend||||]");
	free(got);
	v.name = "";
	got = render_string("{{ name | \"friend\" }}", RENDER_SUBJECT, &v, &err);
	ck_assert_str_eq(got, "friend");
	free(got);
}
END_TEST

/* ---- refusals at compile time ---------------------------------------- */

static const struct {
	enum render_kind kind;
	const char *tpl;
	const char *want;       /* the whole message */
} bad_cases[] = {
	{ RENDER_SUBJECT, "Hello {{ nmae }}",
	    "template line 1, column 10: unknown field \"nmae\"" },
	{ RENDER_TEXT, "one\ntwo\nHello there {{nmae}}" TAIL,
	    "template line 3, column 15: unknown field \"nmae\"" },
	{ RENDER_TEXT, "a\r\nb {{ x }}" TAIL,
	    "template line 2, column 6: unknown field \"x\"" },
	{ RENDER_SUBJECT, "Gr\xc3\xbc\xc3\x9f" "e {{ nmae }}",
	    "template line 1, column 10: unknown field \"nmae\"" },
	{ RENDER_SUBJECT, "{{ Name }}",
	    "template line 1, column 4: unknown field \"Name\"" },
	{ RENDER_SUBJECT, "{{ attr. }}",
	    "template line 1, column 4: unknown field \"attr.\"" },
	{ RENDER_SUBJECT, "{{ attr.a.b }}",
	    "template line 1, column 4: unknown field \"attr.a.b\"" },
	{ RENDER_SUBJECT, "{{ attr.aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa }}",
	    "template line 1, column 4: unknown field \"attr.aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\"" },
	{ RENDER_SUBJECT, "{{ sender }}",
	    "template line 1, column 4: unknown field \"sender\"" },
	{ RENDER_SUBJECT, "x {{ name",
	    "template line 1, column 3: unterminated \"{{\"" },
	{ RENDER_SUBJECT, "x {{",
	    "template line 1, column 3: unterminated \"{{\"" },
	{ RENDER_SUBJECT, "x {{ name }",
	    "template line 1, column 11: expected \"}}\"" },
	{ RENDER_SUBJECT, "{{{name}}}",
	    "template line 1, column 3: a field name is missing" },
	{ RENDER_SUBJECT, "{{ }}",
	    "template line 1, column 4: a field name is missing" },
	{ RENDER_SUBJECT, "{{ name! }}",
	    "template line 1, column 8: expected \"}}\"" },
	{ RENDER_SUBJECT, "{{ attr.city | friend }}",
	    "template line 1, column 16: a default must be a quoted string: "
	    "| \"...\"" },
	{ RENDER_SUBJECT, "{{ attr.city | \"friend }}",
	    "template line 1, column 16: unterminated default (a closing \" "
	    "is missing)" },
	{ RENDER_TEXT, "{{ attr.city | \"friend\n\" }}" TAIL,
	    "template line 1, column 16: unterminated default (a closing \" "
	    "is missing)" },
	{ RENDER_SUBJECT, "{{ attr.city | \"a\\n\" }}",
	    "template line 1, column 18: bad escape in default (only \\\" and "
	    "\\\\)" },
	{ RENDER_SUBJECT, "{{ attr.city | \"a\" | \"b\" }}",
	    "template line 1, column 20: expected \"}}\"" },
	{ RENDER_SUBJECT, "{{ attr.city \"a\" }}",
	    "template line 1, column 14: expected \"}}\"" },
	{ RENDER_SUBJECT, "{{ email | \"x\" }}",
	    "template line 1, column 10: a default is allowed only on name and "
	    "attr.KEY" },
	/* subjects: one line, no links */
	{ RENDER_SUBJECT, "Hi\nthere",
	    "template line 1, column 3: a subject may not contain a line "
	    "break" },
	{ RENDER_SUBJECT, "Hi\r",
	    "template line 1, column 3: a subject may not contain a line "
	    "break" },
	{ RENDER_SUBJECT, "Hi\tthere",
	    "template line 1, column 3: a subject may not contain a control "
	    "character" },
	{ RENDER_SUBJECT, "Hi \xc2\x85",
	    "template line 1, column 4: a subject may not contain a control "
	    "character" },
	{ RENDER_SUBJECT, "Leave: {{ unsubscribe_url }}",
	    "template line 1, column 11: a subject may not contain "
	    "unsubscribe_url" },
	{ RENDER_SUBJECT, "{{manage_url}}",
	    "template line 1, column 3: a subject may not contain manage_url" },
	/* bodies: the unsubscribe link and the postal address */
	{ RENDER_TEXT, "Hi {{ name }}\n{{ sender.postal_address }}",
	    "template: the body has no {{ unsubscribe_url }} (every message "
	    "needs an unsubscribe link)" },
	{ RENDER_HTML, "<p>{{ unsubscribe_url }}</p>",
	    "template: the body has no {{ sender.postal_address }} (every "
	    "message needs the sender's postal address)" },
	{ RENDER_TEXT, "",
	    "template: the body has no {{ unsubscribe_url }} (every message "
	    "needs an unsubscribe link)" },
	/* each kind takes its own fields */
	{ RENDER_TEXT, "{{ confirm_url }}" TAIL,
	    "template line 1, column 4: a campaign body may not contain "
	    "confirm_url" },
	{ RENDER_SUBJECT, "{{ list }}",
	    "template line 1, column 4: a subject may not contain list" },
	{ RENDER_NOTICE_TEXT, "{{ unsubscribe_url }} {{ confirm_url }}",
	    "template line 1, column 4: a confirmation request may not "
	    "contain unsubscribe_url" },
	{ RENDER_NOTICE_SUBJECT, "{{ confirm_url }}",
	    "template line 1, column 4: a subject may not contain confirm_url" },
	{ RENDER_NOTICE_TEXT, "Hello {{ list }}",
	    "template: the body has no {{ confirm_url }} (a confirmation "
	    "request needs its link)" },
	{ RENDER_PAGE, "<p>{{ title }}</p>",
	    "template: the page has no {{ content }} (where the page's own "
	    "text goes)" },
	{ RENDER_PAGE, "{{ content }}{{ name }}",
	    "template line 1, column 17: a page may not contain name" },
	{ RENDER_PAGE, "{{ content }}{{ attr.x }}",
	    "template line 1, column 17: a page may not contain attr.x" },
	{ RENDER_NOTICE_SUBJECT, "Hi\n",
	    "template line 1, column 3: a subject may not contain a line "
	    "break" },
	/* encoding */
	{ RENDER_TEXT, "ok \xff" TAIL, "template: not valid UTF-8 (byte 4)" },
	{ RENDER_SUBJECT, "\xc3\xa9\xe2\x82", "template: not valid UTF-8 "
	    "(byte 3)" },
};

START_TEST(test_compile_refused)
{
	struct render_template *t = (struct render_template *)&t;
	struct assent_err err;

	err_clear(&err);
	ck_assert_int_eq(render_compile(bad_cases[_i].tpl, bad_cases[_i].kind,
	    &t, &err), -1);
	ck_assert_ptr_null(t);
	ck_assert_int_eq(err.code, EX_DATAERR);
	ck_assert_str_eq(err.msg, bad_cases[_i].want);
}
END_TEST

/* ---- refusals at render time ----------------------------------------- */

static const struct {
	const char *tpl;
	const char *name;
	const char *want;
} subject_value_cases[] = {
	{ "Hi {{ name }}", "Ann\r\nBcc: x@example.org",
	    "the value of name holds a line break: refused in a subject" },
	{ "Hi {{ name }}", "Ann\n", "the value of name holds a line break: "
	    "refused in a subject" },
	{ "Hi {{ name }}", "Ann\r", "the value of name holds a line break: "
	    "refused in a subject" },
	{ "Hi {{ name }}", "A\tB", "the value of name holds a control "
	    "character: refused in a subject" },
	{ "Hi {{ name }}", "A\xc2\x85" "B", "the value of name holds a "
	    "control character: refused in a subject" },
	{ "Hi {{ attr.multi }}", "Ann", "the value of attr.multi holds a "
	    "line break: refused in a subject" },
	{ "Hi {{ attr.c1 }}", "Ann", "the value of attr.c1 holds a "
	    "control character: refused in a subject" },
	{ "Hi {{ attr.nul }}", "Ann", "the value of attr.nul holds a NUL "
	    "byte: refused in a subject" },
};

START_TEST(test_subject_value_refused)
{
	struct render_template *t;
	struct render_values v = values, fine = values;
	struct assent_err err;
	struct buf b;

	ck_assert(render_compile(subject_value_cases[_i].tpl, RENDER_SUBJECT,
	    &t, &err) == 0);
	v.name = subject_value_cases[_i].name;
	fine.attrs = NULL;
	buf_init(&b);
	ck_assert_int_eq(render_run(t, &fine, &b, &err), 0);
	/* the buffer is left as it was: "prefix" stays, nothing added */
	buf_reset(&b);
	ck_assert_int_eq(render_run(t, &v, &b, &err), -1);
	ck_assert_int_eq(err.code, EX_DATAERR);
	ck_assert_str_eq(err.msg, subject_value_cases[_i].want);
	ck_assert_uint_eq(b.len, 0);
	ck_assert_str_eq(b.data, "");
	buf_reset(&b);
	memcpy(b.data, "prefix", 7);
	b.len = 6;
	ck_assert_int_eq(render_run(t, &v, &b, &err), -1);
	ck_assert_uint_eq(b.len, 6);
	ck_assert_str_eq(b.data, "prefix");
	buf_free(&b);
	render_free(t);
}
END_TEST

/* A NUL inside a JSON string would cut the body short: refused there
 * too; line breaks in a body value are fine. */
START_TEST(test_body_value_nul)
{
	struct assent_err err;
	char *got;

	got = render_string("{{ attr.nul }}" TAIL, RENDER_TEXT, &values, &err);
	ck_assert_ptr_null(got);
	ck_assert_str_eq(err.msg, "the value of attr.nul holds a NUL byte: "
	    "refused in a message");
	got = render_string("{{ attr.multi }}" TAIL, RENDER_HTML, &values, &err);
	ck_assert_ptr_nonnull(got);
	ck_assert_str_eq(got, "a\r\nb" TAIL_H);
	free(got);
}
END_TEST

/* ---- size and reuse --------------------------------------------------- */

/* 1 MB of template with 40,000 fields: compiles, renders exactly. */
START_TEST(test_big_template)
{
	static const char piece[] = "Hello {{ name }}, from {{attr.city|\"x\"}}. ";
	static const char out_piece[] = "Hello Ann, from K\xc3\xb6ln. ";
	size_t n = 40000, plen = strlen(piece), olen = strlen(out_piece);
	char *tpl = malloc(n * plen + 1 + strlen(TAIL)), *want;
	struct render_template *t;
	struct assent_err err;
	struct buf b;

	for (size_t i = 0; i < n; i++)
		memcpy(tpl + i * plen, piece, plen);
	strcpy(tpl + n * plen, TAIL);
	ck_assert_uint_ge(strlen(tpl), 1000000);
	ck_assert_msg(render_compile(tpl, RENDER_TEXT, &t, &err) == 0, "%s",
	    err.msg);
	ck_assert_uint_eq(render_field_count(t), 2 * n + 2);
	want = malloc(n * olen + strlen(TAIL_T) + 1);
	for (size_t i = 0; i < n; i++)
		memcpy(want + i * olen, out_piece, olen);
	strcpy(want + n * olen, TAIL_T);
	buf_init(&b);
	for (int round = 0; round < 3; round++) {
		buf_reset(&b);
		ck_assert(render_run(t, &values, &b, &err) == 0);
		ck_assert_uint_eq(b.len, strlen(want));
		ck_assert(memcmp(b.data, want, b.len) == 0);
	}
	buf_free(&b);
	render_free(t);
	free(want);
	/* the same text with one bad field on the last line */
	strcpy(tpl + n * plen, "\n{{ nmae }}");
	ck_assert(render_compile(tpl, RENDER_TEXT, &t, &err) == -1);
	ck_assert_str_eq(err.msg, "template line 2, column 4: unknown field "
	    "\"nmae\"");
	free(tpl);
}
END_TEST

/* Rendering many recipients into one buffer: no growth once it is big
 * enough, and each result is exactly that recipient's. */
START_TEST(test_buffer_reuse)
{
	static const char *names[] = { "Ann", "Bartholomew", "", "Zo\xc3\xab" };
	struct render_template *t;
	struct render_values v = values;
	struct assent_err err;
	struct buf b;
	char want[128], *data;
	size_t cap;

	ck_assert(render_compile("Dear {{ name | \"reader\" }}" TAIL,
	    RENDER_TEXT, &t, &err) == 0);
	buf_init(&b);
	ck_assert(render_run(t, &values, &b, &err) == 0);
	data = b.data;
	cap = b.cap;
	for (int round = 0; round < 1000; round++) {
		v.name = names[round % 4];
		buf_reset(&b);
		ck_assert(render_run(t, &v, &b, &err) == 0);
		snprintf(want, sizeof(want), "Dear %s" TAIL_T,
		    v.name[0] != '\0' ? v.name : "reader");
		ck_assert_str_eq(b.data, want);
	}
	ck_assert_ptr_eq(b.data, data);
	ck_assert_uint_eq(b.cap, cap);
	/* appending: render_run adds to what is there */
	ck_assert(render_run(t, &values, &b, &err) == 0);
	ck_assert_uint_eq(b.len, strlen(want) + strlen("Dear Ann" TAIL_T));
	buf_free(&b);
	ck_assert_ptr_null(b.data);
	render_free(t);
}
END_TEST

/* A long non-string value takes the slow path (more than the scratch
 * buffer) and still renders whole. */
START_TEST(test_long_json_value)
{
	json_t *a = json_object(), *arr = json_array();
	struct render_values v = values;
	struct assent_err err;
	char *got, *want;

	for (int i = 0; i < 200; i++)
		json_array_append_new(arr, json_integer(1000 + i));
	json_object_set_new(a, "big", arr);
	v.attrs = a;
	want = json_dumps(arr, JSON_COMPACT);
	got = render_string("{{ attr.big }}", RENDER_SUBJECT, &v, &err);
	ck_assert_ptr_nonnull(got);
	ck_assert_uint_gt(strlen(got), 256);
	ck_assert_str_eq(got, want);
	free(got);
	free(want);
	json_decref(a);
}
END_TEST

static Suite *
render_suite(void)
{
	Suite *s = suite_create("render");
	TCase *tc = tcase_create("render");

	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_loop_test(tc, test_render_ok, 0,
	    sizeof(ok_cases) / sizeof(ok_cases[0]));
	tcase_add_test(tc, test_missing_values);
	tcase_add_loop_test(tc, test_compile_refused, 0,
	    sizeof(bad_cases) / sizeof(bad_cases[0]));
	tcase_add_loop_test(tc, test_subject_value_refused, 0,
	    sizeof(subject_value_cases) / sizeof(subject_value_cases[0]));
	tcase_add_test(tc, test_body_value_nul);
	tcase_add_test(tc, test_big_template);
	tcase_add_test(tc, test_buffer_reuse);
	tcase_add_test(tc, test_long_json_value);
	suite_add_tcase(s, tc);
	return s;
}

int
main(void)
{
	return testhelp_run_suite(render_suite());
}

/* check_addr: table-driven tests of address validation and normalisation
 * (src/lib/addr.c). */
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <check.h>
#include "testhelp.h"

#include "assent/addr.h"
#include "assent/err.h"

/* ---- valid addresses: input -> address, key ------------------------- */

struct valid_case {
	const char *input;
	const char *address;
	const char *key;
};

static const struct valid_case valid_cases[] = {
	{ "user@example.org", "user@example.org", "user@example.org" },
	{ "User.Name@Example.ORG", "User.Name@example.org",
	  "user.name@example.org" },
	{ "A@EXAMPLE.ORG", "A@example.org", "a@example.org" },
	{ "a@b.co", "a@b.co", "a@b.co" },
	{ "first.last@sub.example.co.uk", "first.last@sub.example.co.uk",
	  "first.last@sub.example.co.uk" },
	{ "user+tag@example.org", "user+tag@example.org",
	  "user+tag@example.org" },
	{ "o'reilly@example.org", "o'reilly@example.org",
	  "o'reilly@example.org" },
	{ "1234567890@example.org", "1234567890@example.org",
	  "1234567890@example.org" },
	{ "!#$%&'*+-/=?^_`{|}~@example.org", "!#$%&'*+-/=?^_`{|}~@example.org",
	  "!#$%&'*+-/=?^_`{|}~@example.org" },
	{ "a.b.c.d@example.org", "a.b.c.d@example.org", "a.b.c.d@example.org" },
	{ "a@1.example", "a@1.example", "a@1.example" },
	{ "a@x1.example", "a@x1.example", "a@x1.example" },
	{ "a@a-b.example", "a@a-b.example", "a@a-b.example" },
	{ "a@a--b.example", "a@a--b.example", "a@a--b.example" },
	{ "a@example.xn--p1ai", "a@example.xn--p1ai", "a@example.xn--p1ai" },
	/* IDN: U-label and A-label forms meet in the same A-label. */
	{ "info@B\xc3\xbc" "cher.example", "info@xn--bcher-kva.example",
	  "info@xn--bcher-kva.example" },
	{ "info@B\xc3\x9c" "CHER.example", "info@xn--bcher-kva.example",
	  "info@xn--bcher-kva.example" },
	{ "Info@xn--bcher-kva.example", "Info@xn--bcher-kva.example",
	  "info@xn--bcher-kva.example" },
	{ "info@XN--BCHER-KVA.EXAMPLE", "info@xn--bcher-kva.example",
	  "info@xn--bcher-kva.example" },
	/* non-transitional: sharp s stays itself */
	{ "x@fa\xc3\x9f.de", "x@xn--fa-hia.de", "x@xn--fa-hia.de" },
	{ "x@m\xc3\xbcnchen.de", "x@xn--mnchen-3ya.de", "x@xn--mnchen-3ya.de" },
	/* NFC: e + combining acute is the same as e-acute */
	{ "x@cafe\xcc\x81.example", "x@xn--caf-dma.example",
	  "x@xn--caf-dma.example" },
	{ "x@caf\xc3\xa9.example", "x@xn--caf-dma.example",
	  "x@xn--caf-dma.example" },
	{ "x@\xd0\xbf\xd1\x80\xd0\xb8\xd0\xbc\xd0\xb5\xd1\x80.\xd1\x80\xd1\x84",
	  "x@xn--e1afmkfd.xn--p1ai", "x@xn--e1afmkfd.xn--p1ai" },
	/* UTS#46 mapping: full-width letters and ideographic full stop */
	{ "x@\xef\xbd\x85\xef\xbd\x98\xef\xbd\x81\xef\xbd\x8d\xef\xbd\x90"
	  "\xef\xbd\x8c\xef\xbd\x85\xe3\x80\x82\xef\xbd\x83\xef\xbd\x8f"
	  "\xef\xbd\x8d", "x@example.com", "x@example.com" },
};

START_TEST(test_valid)
{
	const struct valid_case *c = &valid_cases[_i];
	struct assent_err err;
	struct addr a, again;

	err_clear(&err);
	ck_assert_msg(addr_parse(c->input, &a, &err) == 0,
	    "refused %s: %s", c->input, err.msg);
	ck_assert_str_eq(a.address, c->address);
	ck_assert_str_eq(a.key, c->key);
	ck_assert_uint_eq(a.local_len, strchr(c->address, '@') - c->address);
	ck_assert_ptr_eq(a.domain, a.address + a.local_len + 1);
	ck_assert_str_eq(a.domain, strchr(c->address, '@') + 1);
	/* parsing the normalised address changes nothing */
	ck_assert_int_eq(addr_parse(a.address, &again, &err), 0);
	ck_assert_str_eq(again.address, a.address);
	ck_assert_str_eq(again.key, a.key);
}
END_TEST

/* ---- every atext special character, alone and inside ---------------- */

static const char atext_specials[] = "!#$%&'*+-/=?^_`{|}~";

START_TEST(test_atext_special)
{
	char input[64], key[64];
	struct assent_err err;
	struct addr a;

	snprintf(input, sizeof(input), "A%cB@example.org", atext_specials[_i]);
	snprintf(key, sizeof(key), "a%cb@example.org", atext_specials[_i]);
	ck_assert_msg(addr_parse(input, &a, &err) == 0, "refused %s: %s",
	    input, err.msg);
	ck_assert_str_eq(a.address, input);
	ck_assert_str_eq(a.key, key);
}
END_TEST

/* Printable ASCII that is neither atext nor '.': refused in a local part. */
static const char local_specials[] = "(),:;<>[]\\";

START_TEST(test_local_special)
{
	char input[64], want[64];
	struct assent_err err;
	struct addr a;

	snprintf(input, sizeof(input), "a%cb@example.org", local_specials[_i]);
	snprintf(want, sizeof(want), "character '%c' is not allowed in the "
	    "local part", local_specials[_i]);
	ck_assert_int_eq(addr_parse(input, &a, &err), -1);
	ck_assert_int_eq(err.code, EX_DATAERR);
	ck_assert_msg(strstr(err.msg, want) != NULL, "%s: got %s", input,
	    err.msg);
}
END_TEST

/* ---- invalid addresses: input -> part of the message ---------------- */

struct invalid_case {
	const char *input;
	const char *why;
};

static const struct invalid_case invalid_cases[] = {
	{ "", "empty address" },
	{ "userexample.org", "missing '@'" },
	{ "a@b@example.org", "more than one '@'" },
	{ "@example.org", "empty local part" },
	{ "user@", "empty domain" },
	{ "@", "empty local part" },
	{ "\"john\"@example.org", "quoted local parts are not accepted" },
	{ "\"a@b\"@example.org", "quoted local parts are not accepted" },
	{ "john.\"doe\"@example.org", "quoted local parts are not accepted" },
	{ "jos\xc3\xa9@example.org",
	  "non-ASCII local part (SMTPUTF8 is not supported)" },
	{ "\xff@example.org", "non-ASCII local part" },
	{ "a..b@example.org", "two dots in a row in the local part" },
	{ ".a@example.org", "local part starts with a dot" },
	{ "a.@example.org", "local part ends with a dot" },
	{ ".@example.org", "local part starts with a dot" },
	{ "a b@example.org", "contains a space" },
	{ " a@example.org", "contains a space" },
	{ "a@example.org ", "contains a space" },
	{ "a\r@example.org", "control character (\\r)" },
	{ "a@example.org\n", "control character (\\n)" },
	{ "a@example.org\r\nBcc: x@example.net", "control character (\\r)" },
	{ "a\tb@example.org", "control character (\\t)" },
	{ "a\x7f" "b@example.org", "control character (\\x7f)" },
	{ "a\x01" "b@example.org", "control character (\\x01)" },
	{ "a\x1b[31m@example.org", "control character (\\x1b)" },
	{ "a@exa\xc2\x85mple.org", "control character (\\u0085)" },
	{ "a@[192.0.2.1]", "domain literals such as [192.0.2.1] are not "
	  "accepted" },
	{ "a@[IPv6:2001:db8::1]", "domain literals" },
	{ "a@192.0.2.1", "top-level domain \"1\" is all digits" },
	{ "a@example.123", "top-level domain \"123\" is all digits" },
	{ "a@localhost", "domain has a single label" },
	{ "a@xn--bcher-kva", "domain has a single label" },
	{ "a@example.org.", "trailing dot is not accepted" },
	{ "a@.example.org", "domain starts with a dot" },
	{ "a@example..org", "two dots in a row in the domain" },
	{ "a@.", "domain starts with a dot" },
	{ "a@-example.org", "domain label \"-example\" starts with a hyphen" },
	{ "a@example-.org", "domain label \"example-\" ends with a hyphen" },
	{ "a@example.-org", "starts with a hyphen" },
	{ "a@exa_mple.org", "character '_' is not allowed in the domain" },
	{ "a@exa!mple.org", "character '!' is not allowed in the domain" },
	{ "a@exa\"mple.org", "character '\\\"' is not allowed in the domain" },
	/* A-labels that are not valid punycode or not valid IDNA2008 */
	{ "a@xn--zz.example", "domain label \"xn--zz\" is not a valid "
	  "internationalised domain name" },
	{ "a@xn--.example", "domain label \"xn--\" ends with a hyphen" },
	{ "a@XN--ZZ.example", "domain label \"XN--ZZ\" is not a valid" },
	{ "a@xn--abc-.example", "ends with a hyphen" },
	{ "a@xn--n3h.example", "disallowed" },
	{ "a@xn--a.example", "not a valid internationalised domain name" },
	/* U-labels that are not valid IDNA2008 */
	{ "a@\xe2\x98\x83.example", "disallowed" },
	{ "a@\xcc\x81" "abc.example", "not a valid internationalised" },
	{ "a@a\xe2\x80\x8c" "b.example", "not a valid internationalised" },
	{ "a@exa\xc2\xa0mple.org", "character ' ' is not allowed in the "
	  "domain" },
	{ "a@example.org\xe3\x80\x82", "domain ends with a dot" },
	/* bytes that are not UTF-8 in the domain */
	{ "a@\xff" "example.org", "domain is not valid UTF-8" },
	{ "a@\xc3.example", "domain is not valid UTF-8" },
	{ "a@\xc0\xae" "example.org", "domain is not valid UTF-8" },
	{ "a@\xed\xa0\x80" "example.org", "domain is not valid UTF-8" },
	{ "a@\xf4\x90\x80\x80" "example.org", "domain is not valid UTF-8" },
};

static void
expect_refused(const char *input, const char *why)
{
	struct assent_err err;
	struct addr a;

	err_clear(&err);
	ck_assert_int_eq(addr_parse(input, &a, &err), -1);
	ck_assert_int_eq(err.code, EX_DATAERR);
	ck_assert_msg(strncmp(err.msg, "invalid address \"", 17) == 0,
	    "no prefix: %s", err.msg);
	ck_assert_msg(strstr(err.msg, why) != NULL, "wanted \"%s\", got: %s",
	    why, err.msg);
	ck_assert_str_eq(a.address, "");
	ck_assert_str_eq(a.key, "");
}

START_TEST(test_invalid)
{
	expect_refused(invalid_cases[_i].input, invalid_cases[_i].why);
}
END_TEST

/* ---- lengths at the limits ----------------------------------------- */

/* An address from a local part of local_len 'l's and domain labels of
 * the given lengths ('d', then 'e', ...), the last label being the TLD. */
struct length_case {
	size_t local_len;
	size_t labels[6];
	const char *why;        /* NULL: accepted */
};

static const struct length_case length_cases[] = {
	{ 64, { 7, 3 }, NULL },
	{ 65, { 7, 3 }, "local part is too long (65 octets, at most 64)" },
	{ 1, { 63, 3 }, NULL },
	{ 1, { 64, 3 }, "is too long (64 octets, at most 63)" },
	{ 1, { 3, 63 }, NULL },
	{ 1, { 3, 64 }, "is too long (64 octets, at most 63)" },
	/* 64 + 1 + (63 + 1 + 63 + 1 + 61) = 254 */
	{ 64, { 63, 63, 61 }, NULL },
	{ 64, { 63, 63, 62 }, "address is too long (255 octets, at most 254)" },
	{ 1, { 63, 63, 63, 60 }, NULL },
	{ 1, { 63, 63, 63, 61 }, "address is too long (255 octets, at most "
	  "254)" },
	{ 600, { 7, 3 }, "local part is too long (600 octets, at most 64)" },
	{ 2000, { 7, 3 }, "address is too long" },
};

static char *
build(const struct length_case *c)
{
	char *s, *p;
	size_t i, j;

	s = p = calloc(1, 4096);
	ck_assert_ptr_nonnull(s);
	memset(p, 'l', c->local_len);
	p += c->local_len;
	*p++ = '@';
	for (i = 0; i < 6 && c->labels[i] > 0; i++) {
		if (i > 0)
			*p++ = '.';
		for (j = 0; j < c->labels[i]; j++)
			*p++ = (char)('d' + i);
	}
	return s;
}

START_TEST(test_length)
{
	const struct length_case *c = &length_cases[_i];
	struct assent_err err;
	struct addr a;
	char *input = build(c);

	if (c->why == NULL) {
		ck_assert_msg(addr_parse(input, &a, &err) == 0, "%s", err.msg);
		ck_assert_str_eq(a.address, input);
	} else
		expect_refused(input, c->why);
	free(input);
}
END_TEST

/* The 254 limit is on the A-label form: a U-label that fits as typed can
 * make the address too long once converted. */
START_TEST(test_length_after_idn)
{
	char input[512];
	struct assent_err err;
	struct addr a;

	/* 64 + 1 + "xn--bcher-kva" (13) + 1 + 63 + 1 + 63 + 1 + 47 = 254,
	 * typed as "b\xc3\xbc" "cher" (7 octets) the input is 248. */
	snprintf(input, sizeof(input), "%s@b\xc3\xbc" "cher.%s.%s.%s",
	    "llllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllll",
	    "ddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddd",
	    "eeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeee",
	    "fffffffffffffffffffffffffffffffffffffffffffffff");
	ck_assert_int_eq(addr_parse(input, &a, &err), 0);
	ck_assert_uint_eq(strlen(a.address), 254);
	strcat(input, "f");
	expect_refused(input, "address is too long (255 octets, at most 254)");
}
END_TEST

/* ---- messages quote the input safely --------------------------------- */

START_TEST(test_message_escapes)
{
	struct assent_err err;
	struct addr a;

	ck_assert_int_eq(addr_parse("a\r\n@example.org", &a, &err), -1);
	ck_assert_str_eq(err.msg, "invalid address \"a\\r\\n@example.org\": "
	    "contains a control character (\\r)");
	ck_assert_int_eq(addr_parse("\"john\"@example.org", &a, &err), -1);
	ck_assert_str_eq(err.msg, "invalid address \"\\\"john\\\"@example.org"
	    "\": quoted local parts are not accepted");
	ck_assert_int_eq(addr_parse("jos\xc3\xa9@example.org", &a, &err), -1);
	ck_assert_str_eq(err.msg, "invalid address \"jos\xc3\xa9@example.org"
	    "\": non-ASCII local part (SMTPUTF8 is not supported)");
	ck_assert_int_eq(addr_parse("a..b@example.org", &a, &err), -1);
	ck_assert_str_eq(err.msg, "invalid address \"a..b@example.org\": "
	    "two dots in a row in the local part");
	ck_assert_int_eq(addr_parse("a@\xff.org", &a, &err), -1);
	ck_assert_str_eq(err.msg, "invalid address \"a@\\xff.org\": "
	    "domain is not valid UTF-8");
}
END_TEST

START_TEST(test_message_truncated)
{
	struct length_case c = { 3000, { 7, 3 }, NULL };
	struct assent_err err;
	struct addr a;
	char *input = build(&c);

	ck_assert_int_eq(addr_parse(input, &a, &err), -1);
	ck_assert_msg(strlen(err.msg) < 200, "message too long: %zu",
	    strlen(err.msg));
	ck_assert_ptr_nonnull(strstr(err.msg, "...\": "));
	free(input);
}
END_TEST

/* U-label and A-label spellings of one address share one key. */
START_TEST(test_idn_same_key)
{
	struct assent_err err;
	struct addr u, al;

	ck_assert_int_eq(addr_parse("Info@B\xc3\xbc" "cher.Example", &u, &err),
	    0);
	ck_assert_int_eq(addr_parse("INFO@xn--bcher-kva.example", &al, &err),
	    0);
	ck_assert_str_eq(u.key, al.key);
	ck_assert_str_ne(u.address, al.address);
	ck_assert_str_eq(u.domain, al.domain);
}
END_TEST

START_TEST(test_err_null)
{
	struct addr a;

	ck_assert_int_eq(addr_parse("no-at-sign", &a, NULL), -1);
	ck_assert_int_eq(addr_parse("ok@example.org", &a, NULL), 0);
}
END_TEST

/* ---- addr_parse_domain ---------------------------------------------- */

struct domain_case {
	const char *input;
	const char *out;        /* NULL: refused */
	const char *why;
};

static const struct domain_case domain_cases[] = {
	{ "example.org", "example.org", NULL },
	{ "Example.ORG", "example.org", NULL },
	{ "sub.example.co.uk", "sub.example.co.uk", NULL },
	{ "B\xc3\xbc" "cher.example", "xn--bcher-kva.example", NULL },
	{ "XN--BCHER-KVA.example", "xn--bcher-kva.example", NULL },
	{ "", NULL, "invalid domain \"\": empty domain" },
	{ "localhost", NULL, "single label" },
	{ "example.org.", NULL, "trailing dot is not accepted" },
	{ "@example.org", NULL, "character '@' is not allowed in the domain" },
	{ "[192.0.2.1]", NULL, "domain literals" },
	{ "10.0.0.1", NULL, "all digits" },
	{ "exa mple.org", NULL, "contains a space" },
	{ "example.org\r", NULL, "control character (\\r)" },
	{ "xn--zz.org", NULL, "not a valid internationalised domain name" },
	{ "\xff.org", NULL, "not valid UTF-8" },
	{ "-a.org", NULL, "starts with a hyphen" },
};

START_TEST(test_domain)
{
	const struct domain_case *c = &domain_cases[_i];
	char out[ADDR_DOMAIN_MAX + 1];
	struct assent_err err;

	err_clear(&err);
	if (c->out != NULL) {
		ck_assert_msg(addr_parse_domain(c->input, out, &err) == 0,
		    "refused %s: %s", c->input, err.msg);
		ck_assert_str_eq(out, c->out);
		return;
	}
	ck_assert_int_eq(addr_parse_domain(c->input, out, &err), -1);
	ck_assert_int_eq(err.code, EX_DATAERR);
	ck_assert_str_eq(out, "");
	ck_assert_msg(strncmp(err.msg, "invalid domain \"", 16) == 0, "%s",
	    err.msg);
	ck_assert_msg(strstr(err.msg, c->why) != NULL, "wanted \"%s\", got: %s",
	    c->why, err.msg);
}
END_TEST

/* 63 * 4 + 3 dots = 255 octets: the longest domain; one more is refused. */
START_TEST(test_domain_length)
{
	char in[300], out[ADDR_DOMAIN_MAX + 1];
	struct assent_err err;

	memset(in, 'a', 255);
	in[63] = in[127] = in[191] = '.';
	in[255] = '\0';
	ck_assert_msg(addr_parse_domain(in, out, &err) == 0, "%s", err.msg);
	ck_assert_str_eq(out, in);
	/* 63.63.63.62.1 = 256 */
	memcpy(in + 254, ".b", 3);
	ck_assert_int_eq(addr_parse_domain(in, out, &err), -1);
	ck_assert_ptr_nonnull(strstr(err.msg, "domain is too long"));
}
END_TEST

static Suite *
addr_suite(void)
{
	Suite *s = suite_create("addr");
	TCase *tc = tcase_create("addr");

	tcase_add_loop_test(tc, test_valid, 0,
	    sizeof(valid_cases) / sizeof(valid_cases[0]));
	tcase_add_loop_test(tc, test_atext_special, 0,
	    sizeof(atext_specials) - 1);
	tcase_add_loop_test(tc, test_local_special, 0,
	    sizeof(local_specials) - 1);
	tcase_add_loop_test(tc, test_invalid, 0,
	    sizeof(invalid_cases) / sizeof(invalid_cases[0]));
	tcase_add_loop_test(tc, test_length, 0,
	    sizeof(length_cases) / sizeof(length_cases[0]));
	tcase_add_test(tc, test_length_after_idn);
	tcase_add_test(tc, test_message_escapes);
	tcase_add_test(tc, test_message_truncated);
	tcase_add_test(tc, test_idn_same_key);
	tcase_add_test(tc, test_err_null);
	tcase_add_loop_test(tc, test_domain, 0,
	    sizeof(domain_cases) / sizeof(domain_cases[0]));
	tcase_add_test(tc, test_domain_length);
	suite_add_tcase(s, tc);
	return s;
}

int
main(void)
{
	return testhelp_run_suite(addr_suite());
}

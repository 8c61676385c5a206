/*
 * fuzz_addr: libFuzzer target over the address and text gates.
 *
 * Built and run by tests/fuzz/run, which reads the two lines below.
 * fuzz-sources: src/lib/addr.c src/lib/text.c src/lib/err.c src/lib/xmalloc.c
 * fuzz-libs: -lidn2
 *
 * Invariants checked, each an abort() when broken:
 * - addr_parse() success: address at most 254 octets, printable ASCII,
 *   one '@' at local_len, domain pointer into address, key is the
 *   ASCII lower-case of address, and parsing address (or key) again
 *   gives the same result (idempotent).
 * - addr_parse_domain() success: at most 255 octets of [a-z0-9.-],
 *   idempotent, and "a@" + domain parses with that domain.
 * - every refusal: EX_DATAERR and a message that starts as promised
 *   and is valid UTF-8 without control characters (input is quoted).
 * - text_is_utf8() agrees with a second, differently written decoder;
 *   text_check_line() accepts exactly valid UTF-8 without controls;
 *   text_quote() output fits and is clean.
 */
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "assent/addr.h"
#include "assent/err.h"
#include "assent/text.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(cond) do {                                                \
	if (!(cond)) {                                                  \
		fprintf(stderr, "%s:%d: invariant broken: %s\n",        \
		    __FILE__, __LINE__, #cond);                         \
		abort();                                                \
	}                                                               \
} while (0)

/* Reference UTF-8 check: decode by the generic bit pattern, then
 * refuse overlongs, surrogates and values above U+10FFFF by value. */
static bool
ref_is_utf8(const unsigned char *s, size_t len)
{
	static const uint32_t min[] = { 0, 0, 0x80, 0x800, 0x10000 };
	size_t i = 0, n, k;
	uint32_t cp;

	while (i < len) {
		if (s[i] < 0x80)
			n = 1;
		else if ((s[i] & 0xe0) == 0xc0)
			n = 2;
		else if ((s[i] & 0xf0) == 0xe0)
			n = 3;
		else if ((s[i] & 0xf8) == 0xf0)
			n = 4;
		else
			return false;
		if (len - i < n)
			return false;
		cp = n == 1 ? s[i] : (uint32_t)(s[i] & (0x7f >> n));
		for (k = 1; k < n; k++) {
			if ((s[i + k] & 0xc0) != 0x80)
				return false;
			cp = (cp << 6) | (s[i + k] & 0x3f);
		}
		if (cp < min[n] || cp > 0x10ffff ||
		    (cp >= 0xd800 && cp <= 0xdfff))
			return false;
		i += n;
	}
	return true;
}

/* Any C0, DEL, or C1 (as UTF-8: C2 80-9F) byte sequence in s? */
static bool
has_control(const unsigned char *s, size_t len)
{
	size_t i;

	for (i = 0; i < len; i++) {
		if (s[i] < 0x20 || s[i] == 0x7f)
			return true;
		if (s[i] == 0xc2 && i + 1 < len && s[i + 1] >= 0x80 &&
		    s[i + 1] <= 0x9f)
			return true;
	}
	return false;
}

static void
check_message(const struct assent_err *err, const char *prefix)
{
	size_t len = strlen(err->msg);

	CHECK(err->code == EX_DATAERR);
	CHECK(strncmp(err->msg, prefix, strlen(prefix)) == 0);
	CHECK(len < 400);
	CHECK(ref_is_utf8((const unsigned char *)err->msg, len));
	CHECK(!has_control((const unsigned char *)err->msg, len));
}

static void
check_addr_ok(const struct addr *a)
{
	const char *at = strchr(a->address, '@');
	struct assent_err err;
	struct addr again;
	size_t len = strlen(a->address), i;
	char c;

	CHECK(len <= ADDR_MAX);
	CHECK(at != NULL && strchr(at + 1, '@') == NULL);
	CHECK((size_t)(at - a->address) == a->local_len);
	CHECK(a->local_len >= 1 && a->local_len <= ADDR_LOCAL_MAX);
	CHECK(a->domain == at + 1);
	CHECK(strlen(a->key) == len);
	for (i = 0; i < len; i++) {
		c = a->address[i];
		CHECK(c > 0x20 && c < 0x7f);
		CHECK(a->key[i] == (c >= 'A' && c <= 'Z' ? c - 'A' + 'a' : c));
		if (i > a->local_len)
			CHECK((c >= 'a' && c <= 'z') ||
			    (c >= '0' && c <= '9') || c == '-' || c == '.');
	}
	CHECK(addr_parse(a->address, &again, &err) == 0);
	CHECK(strcmp(again.address, a->address) == 0);
	CHECK(strcmp(again.key, a->key) == 0);
	CHECK(addr_parse(a->key, &again, &err) == 0);
	CHECK(strcmp(again.address, a->key) == 0);
}

static void
fuzz_addr(const char *s)
{
	struct assent_err err;
	struct addr a;

	if (addr_parse(s, &a, &err) == 0)
		check_addr_ok(&a);
	else {
		check_message(&err, "invalid address \"");
		CHECK(a.address[0] == '\0' && a.key[0] == '\0');
	}
}

static void
fuzz_domain(const char *s)
{
	char out[ADDR_DOMAIN_MAX + 1], again[ADDR_DOMAIN_MAX + 1];
	char buf[ADDR_DOMAIN_MAX + 3];
	struct assent_err err;
	struct addr a;
	size_t len, i;

	if (addr_parse_domain(s, out, &err) == -1) {
		check_message(&err, "invalid domain \"");
		CHECK(out[0] == '\0');
		return;
	}
	len = strlen(out);
	CHECK(len >= 3 && len <= ADDR_DOMAIN_MAX);
	for (i = 0; i < len; i++)
		CHECK((out[i] >= 'a' && out[i] <= 'z') ||
		    (out[i] >= '0' && out[i] <= '9') ||
		    out[i] == '-' || out[i] == '.');
	CHECK(addr_parse_domain(out, again, &err) == 0);
	CHECK(strcmp(again, out) == 0);
	if (len <= ADDR_MAX - 2) {
		snprintf(buf, sizeof(buf), "a@%s", s);
		if (strlen(s) + 2 < sizeof(buf)) {
			CHECK(addr_parse(buf, &a, &err) == 0);
			CHECK(strcmp(a.domain, out) == 0);
		}
	}
}

static void
fuzz_text(const uint8_t *data, size_t size, const char *s)
{
	struct assent_err err;
	char q[TEXT_QUOTE_SIZE];
	size_t len = strlen(s);
	bool ok;

	CHECK(text_is_utf8((const char *)data, size) ==
	    ref_is_utf8(data, size));
	ok = len > 0 && ref_is_utf8((const unsigned char *)s, len) &&
	    !has_control((const unsigned char *)s, len);
	CHECK((text_check_line(s, SIZE_MAX, false, "--fuzz", &err) == 0) == ok);
	if (!ok)
		check_message(&err, "invalid --fuzz");
	CHECK(text_check_line(s, len == 0 ? 0 : len - 1, true, "--fuzz",
	    &err) == (len == 0 ? 0 : -1));
	if (text_check_list_name(s, &err) == -1)
		check_message(&err, "invalid list name");
	text_quote((const char *)data, size, q, sizeof(q));
	CHECK(strlen(q) < sizeof(q));
	CHECK(ref_is_utf8((const unsigned char *)q, strlen(q)));
	CHECK(!has_control((const unsigned char *)q, strlen(q)));
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *s;

	/* The gates take C strings: everything up to the first NUL. */
	s = malloc(size + 1);
	if (s == NULL)
		return 0;
	memcpy(s, data, size);
	s[size] = '\0';
	fuzz_addr(s);
	fuzz_domain(s);
	fuzz_text(data, size, s);
	free(s);
	return 0;
}

/*
 * fuzz_inbound: libFuzzer target over the reader of mail to the bounce
 * domain (inbound.h): the header section of a message from anyone.
 *
 * Built and run by tests/fuzz/run, which reads the two lines below.
 * fuzz-sources: src/lib/inbound.c src/lib/err.c src/lib/xmalloc.c
 * fuzz-libs:
 *
 * Invariants checked, each an abort() when broken:
 * - inbound_read_headers() either succeeds, with every kept value at
 *   most INBOUND_VALUE_MAX bytes and free of CR, LF and NUL, or fails
 *   with EX_DATAERR and a message that names a line;
 * - inbound_token_of() on any value (and on the raw input) gives either
 *   false and "" or true and exactly TOKEN_COMPACT_TEXT_LEN characters
 *   of [a-z2-7];
 * - inbound_recipient() is one of the values (or the one given).
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "assent/inbound.h"

static void
check_value(const char *v)
{
	size_t n = strlen(v);

	if (n > INBOUND_VALUE_MAX || strpbrk(v, "\r\n") != NULL)
		abort();
}

static void
check_token_of(const char *address)
{
	char token[TOKEN_COMPACT_TEXT_SIZE];

	if (!inbound_token_of(address, "u-", "bounce.example.org", token)) {
		if (token[0] != '\0')
			abort();
		return;
	}
	if (strlen(token) != TOKEN_COMPACT_TEXT_LEN ||
	    strspn(token, "abcdefghijklmnopqrstuvwxyz234567") != TOKEN_COMPACT_TEXT_LEN)
		abort();
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct inbound_headers h;
	struct assent_err err;
	char *text = malloc(size + 1);
	const char *r;
	FILE *f;

	memcpy(text, data, size);
	text[size] = '\0';
	check_token_of(text);
	f = fmemopen(text, size > 0 ? size : 1, "r");
	if (f == NULL)
		abort();
	if (inbound_read_headers(f, &h, &err) == 0) {
		check_value(h.delivered_to);
		check_value(h.x_original_to);
		check_value(h.to);
		check_token_of(h.delivered_to);
		check_token_of(h.x_original_to);
		check_token_of(h.to);
		r = inbound_recipient(NULL, &h);
		if (r != h.delivered_to && r != h.x_original_to && r != h.to)
			abort();
		if (inbound_recipient("given", &h)[0] != 'g')
			abort();
	} else if (err.code != EX_DATAERR || strstr(err.msg, "line") == NULL) {
		abort();
	}
	fclose(f);
	free(text);
	return 0;
}

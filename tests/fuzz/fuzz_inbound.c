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
 *   with EX_DATAERR and a message that names a line.
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

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct inbound_headers h;
	struct assent_err err;
	char *text = malloc(size + 1);
	FILE *f;

	memcpy(text, data, size);
	text[size] = '\0';
	f = fmemopen(text, size > 0 ? size : 1, "r");
	if (f == NULL)
		abort();
	if (inbound_read_headers(f, &h, &err) == 0) {
		check_value(h.delivered_to);
		check_value(h.x_original_to);
		check_value(h.to);
	} else if (err.code != EX_DATAERR || strstr(err.msg, "line") == NULL) {
		abort();
	}
	fclose(f);
	free(text);
	return 0;
}

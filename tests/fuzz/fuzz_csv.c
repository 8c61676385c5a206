/*
 * fuzz_csv: libFuzzer target over the import's CSV reader (csvin_read()
 * in import_csv.c) and its time parser (import_time_parse() and
 * import_time_text() in import_time.c).
 *
 * Built and run by tests/fuzz/run, which reads the lines below.
 * fuzz-sources: src/lib/import_csv.c src/lib/import_time.c src/lib/buf.c src/lib/err.c src/lib/xmalloc.c
 * fuzz-libs: -lcsv -lcrypto
 * fuzz-pkg-config: libpq
 * fuzz-seeds: tests/data/csv
 * fuzz-max-len: 4096
 *
 * The file is the input with each byte 0x01 and the byte after it, k,
 * made (k + 1) * 512 copies of the byte before them (so that a short
 * input can make lines and records over the 64 KiB limits and reads),
 * up to FILE_MAX bytes. Invariants checked, each an abort() when
 * broken (or libFuzzer's timeout when the reader hangs):
 * - every record starts on a line >= 1, never before the previous
 *   record's, and not after the file's last line (ends: LF, CRLF or
 *   CR); at most CSVIN_FIELDS_MAX fields; a good record has at least
 *   one field; each field NUL-terminated at len, its bytes readable
 *   (ASan), and all fields of all records together no longer than the
 *   file; a malformed record's raw bytes at most CSVIN_RECORD_MAX;
 * - csvin_read() returns 0 and the SHA-256 it gives is the file's,
 *   computed here with EVP;
 * - a second read whose callback stops at record k (1 to 4, from the
 *   first byte) returns -1 after exactly k records when there are k,
 *   and gives the same lines as the first read;
 * - the input as it is, as a string (to its first NUL): when
 *   import_time_parse() takes it, import_time_text() of the value,
 *   with its zone "+00" written "+00:00", parses back to the same
 *   value.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <openssl/evp.h>

#include "../../src/lib/import_private.h"

#define CHECK(cond) do { if (!(cond)) abort(); } while (0)

#define LINES_KEPT 64
#define FILE_MAX (256 * 1024)   /* a line over three 64 KiB reads */

struct seen {
	size_t input_len;
	unsigned long max_line;         /* line ends in the input, plus one */
	unsigned long records;
	unsigned long last_line;
	size_t field_bytes;
	unsigned long stop_after;       /* 0: never */
	unsigned long lines[LINES_KEPT];        /* the first records' lines */
};

static int
on_record(const struct csvin_record *rec, void *arg, struct assent_err *err)
{
	struct seen *s = arg;
	volatile unsigned char sink = 0;

	CHECK(rec->line >= 1);
	CHECK(rec->line >= s->last_line);
	CHECK(rec->line <= s->max_line);
	CHECK(rec->nfields <= CSVIN_FIELDS_MAX);
	CHECK(rec->error != NULL || rec->nfields >= 1);
	CHECK(rec->error == NULL || rec->error[0] != '\0');
	if (rec->error != NULL) {
		CHECK(rec->raw != NULL && rec->raw_len <= CSVIN_RECORD_MAX);
		for (size_t i = 0; i < rec->raw_len; i++)
			sink ^= (unsigned char)rec->raw[i];
	}
	CHECK(rec->nfields == 0 || rec->fields != NULL);
	for (size_t i = 0; i < rec->nfields; i++) {
		const struct csvin_field *f = &rec->fields[i];

		CHECK(f->s != NULL);
		CHECK(f->len <= s->input_len);
		for (size_t j = 0; j < f->len; j++)
			sink ^= (unsigned char)f->s[j];
		CHECK(f->s[f->len] == '\0');
		s->field_bytes += f->len;
	}
	(void)sink;
	CHECK(s->field_bytes <= s->input_len);
	if (s->records < LINES_KEPT)
		s->lines[s->records] = rec->line;
	s->last_line = rec->line;
	s->records++;
	if (s->stop_after != 0 && s->records == s->stop_after)
		return err_set(err, EX_SOFTWARE, "stop");
	return 0;
}

static void
sha256_hex(const uint8_t *data, size_t len, char out[65])
{
	unsigned char md[EVP_MAX_MD_SIZE];
	unsigned int mdlen = 0;

	CHECK(EVP_Digest(data, len, md, &mdlen, EVP_sha256(), NULL) == 1);
	CHECK(mdlen == 32);
	for (unsigned int i = 0; i < mdlen; i++)
		snprintf(out + 2 * i, 3, "%02x", md[i]);
}

static int
read_once(const uint8_t *data, size_t size, struct seen *s, char sha[65],
    struct assent_err *err)
{
	struct csvin_handlers h = { on_record, NULL, s };
	FILE *in;
	int rc;

	in = fmemopen((void *)(uintptr_t)data, size, "r");
	CHECK(in != NULL);
	rc = csvin_read(in, "fuzz.csv", &h, sha, err);
	fclose(in);
	return rc;
}

static void
check_csv(const uint8_t *data, size_t size)
{
	struct seen first, second;
	struct assent_err err;
	char sha[65], want[65];
	unsigned long k;

	memset(&first, 0, sizeof(first));
	first.input_len = size;
	first.max_line = 1;
	/* line ends: LF, CRLF, or (in a file whose lines end so) CR alone */
	for (size_t i = 0; i < size; i++)
		first.max_line += data[i] == '\n' ||
		    (data[i] == '\r' && (i + 1 == size || data[i + 1] != '\n'));
	second = first;

	CHECK(read_once(data, size, &first, sha, &err) == 0);
	sha256_hex(data, size, want);
	CHECK(strcmp(sha, want) == 0);

	k = 1 + data[0] % 4;
	second.stop_after = k;
	if (read_once(data, size, &second, sha, &err) == -1) {
		CHECK(first.records >= k);
		CHECK(second.records == k);
		CHECK(err.code == EX_SOFTWARE);
	} else {
		CHECK(first.records < k);
		CHECK(second.records == first.records);
	}
	for (unsigned long i = 0; i < second.records && i < LINES_KEPT; i++)
		CHECK(second.lines[i] == first.lines[i]);
}

static void
check_time(const uint8_t *data, size_t size)
{
	char *s = malloc(size + 1), out[64], back[72];
	int64_t us = -12345, again = -12345;
	size_t n;

	CHECK(s != NULL);
	memcpy(s, data, size);
	s[size] = '\0';
	if (import_time_parse(s, &us) == 0) {
		import_time_text(us, out);
		n = strnlen(out, sizeof(out));
		CHECK(n < sizeof(out));
		CHECK(n > 3 && strcmp(out + n - 3, "+00") == 0);
		snprintf(back, sizeof(back), "%s:00", out);
		CHECK(import_time_parse(back, &again) == 0);
		CHECK(again == us);
	}
	free(s);
}

/* The file from the input: runs of the byte before each 0x01 k. */
static uint8_t *
expand(const uint8_t *data, size_t size, size_t *len_r)
{
	size_t len = 0, run, cap = size;
	uint8_t *out;

	for (size_t i = 0; i + 1 < size; i++)
		if (data[i] == 0x01)
			cap += ((size_t)data[++i] + 1) * 512;
	if (cap > FILE_MAX)
		cap = FILE_MAX;
	out = malloc(cap);
	CHECK(out != NULL);
	for (size_t i = 0; i < size && len < cap; i++) {
		if (data[i] == 0x01 && i + 1 < size && len > 0) {
			run = ((size_t)data[++i] + 1) * 512;
			if (run > cap - len)
				run = cap - len;
			memset(out + len, out[len - 1], run);
			len += run;
		} else {
			out[len++] = data[i];
		}
	}
	*len_r = len;
	return out;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	uint8_t *file;
	size_t len;

	if (size == 0)
		return 0;
	file = expand(data, size, &len);
	check_csv(file, len);
	free(file);
	check_time(data, size);
	return 0;
}

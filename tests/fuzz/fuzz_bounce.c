/*
 * fuzz_bounce: libFuzzer target over the bounce parser and classifier
 * (bounce.h): whole messages from anyone, through GMime.
 *
 * Built and run by tests/fuzz/run, which reads the lines below (GMime's
 * flags come from pkg-config; the corpus seeds the run).
 * fuzz-sources: src/lib/bounce.c src/lib/bounce_classify.c src/lib/bounce_patterns.c src/lib/text.c src/lib/err.c src/lib/xmalloc.c
 * fuzz-libs: -lpthread
 * fuzz-pkg-config: gmime-3.0
 * fuzz-seeds: tests/data/inbound
 * fuzz-max-len: 16384
 *
 * The first byte picks an envelope recipient (none, a b- token, a u-
 * token, junk); the rest is the message. Invariants checked, each an
 * abort() when broken:
 * - bounce_parse() gives a known kind and a detail; at most
 *   BOUNCE_RECIPIENTS_MAX recipients, each with a known class and a
 *   rule; every string one line of valid UTF-8 without control
 *   characters, NUL-terminated inside its buffer; a token, when found,
 *   48 characters of [a-z2-7] with a domain; a complaint only in an ARF
 *   report; recipients only in a DSN or ARF report;
 * - bounce_status_find() gives "" or X.Y.Z (X 2, 4 or 5);
 *   bounce_smtp_code_find() 0 or 200-599; bounce_classify() on the
 *   text as a diagnostic never gives complaint.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "assent/bounce.h"
#include "assent/text.h"

#define CHECK(cond) do { if (!(cond)) abort(); } while (0)

static void
check_str(const char *s, size_t size)
{
	size_t n = strnlen(s, size);

	CHECK(n < size);
	CHECK(text_is_utf8(s, n));
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)s[i];

		CHECK(c >= 0x20 && c != 0x7f);
		CHECK(!(c == 0xc2 && i + 1 < n && (unsigned char)s[i + 1] < 0xa0));
	}
}

#define STR(field) check_str((field), sizeof(field))

static void
check_recipient(const struct bounce_report *r, const struct bounce_recipient *rc)
{
	STR(rc->final_recipient);
	STR(rc->original_recipient);
	STR(rc->diagnostic);
	STR(rc->remote_mta);
	STR(rc->status);
	CHECK(rc->class <= BOUNCE_CLASS_COMPLAINT);
	CHECK(rc->why != NULL);
	CHECK(rc->class != BOUNCE_CLASS_COMPLAINT || r->kind == BOUNCE_KIND_ARF);
}

static void
check_report(const struct bounce_report *r)
{
	CHECK(r->kind <= BOUNCE_KIND_MAILTO_UNSUBSCRIBE);
	CHECK(r->detail != NULL);
	CHECK(r->nrecipients <= BOUNCE_RECIPIENTS_MAX);
	CHECK(r->nrecipients == 0 || r->kind == BOUNCE_KIND_DSN ||
	    r->kind == BOUNCE_KIND_ARF);
	STR(r->from);
	STR(r->subject);
	STR(r->reporting_mta);
	STR(r->original.return_path);
	STR(r->original.from);
	STR(r->original.to);
	STR(r->original.message_id);
	STR(r->arf.feedback_type);
	STR(r->arf.user_agent);
	STR(r->arf.original_mail_from);
	STR(r->arf.original_rcpt_to);
	STR(r->arf.reported_domain);
	STR(r->arf.source_ip);
	if (r->verp.kind != BOUNCE_TOKEN_NONE) {
		CHECK(strlen(r->verp.token) == TOKEN_COMPACT_TEXT_LEN);
		CHECK(strspn(r->verp.token, "abcdefghijklmnopqrstuvwxyz234567") ==
		    TOKEN_COMPACT_TEXT_LEN);
		CHECK(r->verp.domain[0] != '\0');
		CHECK(r->verp.source != BOUNCE_SOURCE_NONE);
	}
	if (r->msgid.kind != BOUNCE_MSGID_NONE)
		CHECK(r->msgid.domain[0] != '\0' && r->msgid.issued_at >= 0);
	for (size_t i = 0; i < r->nrecipients; i++)
		check_recipient(r, &r->recipients[i]);
}

static void
check_text(const char *text)
{
	char st[BOUNCE_STATUS_SIZE];
	int code = bounce_smtp_code_find(text);

	if (bounce_status_find(text, st))
		CHECK(strlen(st) >= 5 && (st[0] == '2' || st[0] == '4' ||
		    st[0] == '5') && st[1] == '.');
	else
		CHECK(st[0] == '\0');
	CHECK(code == 0 || (code >= 200 && code <= 599));
	for (int a = BOUNCE_ACTION_NONE; a <= BOUNCE_ACTION_EXPANDED; a++)
		CHECK(bounce_classify((enum bounce_action)a, text, code, text,
		    NULL) != BOUNCE_CLASS_COMPLAINT);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const char *const envelopes[] = {
		NULL,
		"b-ujzdegxdncf32epf3dhodzdocis2jhtlgmxgedn73u55xtpl@bounce.example.org",
		"u-ujzdegxdncf32epf3dhodzdocis2jhtlgmxgedn73u55xtpl@bounce.example.org",
		"fbl@bounce.example.org",
	};
	struct bounce_report r;
	char *text;

	if (size == 0)
		return 0;
	bounce_parse((const char *)data + 1, size - 1, envelopes[data[0] % 4], &r);
	check_report(&r);
	bounce_report_free(&r);
	CHECK(r.recipients == NULL && r.nrecipients == 0);

	text = malloc(size);
	memcpy(text, data + 1, size - 1);
	text[size - 1] = '\0';
	check_text(text);
	free(text);
	return 0;
}

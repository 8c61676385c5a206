/* check_bounce: the bounce parser and classifier (src/lib/bounce*.c).
 *
 * The corpus: every sample of tests/data/inbound/ (under
 * $ASSENT_SRCDIR) listed in tests/data/inbound/expect is parsed and
 * compared with its expected kind, identifiers, pattern and recipients
 * (address, class, status); every sample on disk must be listed. Then
 * targeted cases: the classifier's table, finding codes in text,
 * tokens and Message-IDs, limits (recipients, input size), bounce_read()
 * and what every string of a report may hold. */
#include <dirent.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <check.h>
#include "testhelp.h"

#include "assent/bounce.h"
#include "assent/text.h"

#define TOKEN_A "ujzdegxdncf32epf3dhodzdocis2jhtlgmxgedn73u55xtpl"
#define TOKEN_B "pft7v4seh2kvj72ceuvw75efr6edt4sywb5wkh7dnsipzz7f"
#define EXPECT_MAX 128
#define RCPT_MAX 8

/* ---- the corpus and its expectations ----------------------------------- */

struct expect_rcpt {
	char address[BOUNCE_ADDR_MAX + 1];
	char class[16];
	char status[BOUNCE_STATUS_SIZE];
};

struct expect {
	char file[128];
	char kind[32];
	char envelope[BOUNCE_ADDR_MAX + 1];
	char token[64];                 /* "b:to", "" for none */
	char msgid[128];                /* "campaign:12:3456:SOURCE", "" */
	char pattern[32];
	char feedback[32];
	struct expect_rcpt rcpt[RCPT_MAX];
	size_t nrcpt;
};

static struct expect expects[EXPECT_MAX];
static size_t nexpects;
static char corpus_dir[4096];

static void
expect_option(struct expect *e, const char *opt)
{
	static const struct {
		const char *key;
		size_t off, size;
	} keys[] = {
#define K(name) { #name "=", offsetof(struct expect, name), \
	sizeof(((struct expect *)0)->name) }
		K(envelope), K(token), K(msgid), K(pattern), K(feedback),
#undef K
	};

	for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++)
		if (strncmp(opt, keys[i].key, strlen(keys[i].key)) == 0) {
			snprintf((char *)e + keys[i].off, keys[i].size, "%s",
			    opt + strlen(keys[i].key));
			return;
		}
	fprintf(stderr, "check_bounce: unknown expectation %s\n", opt);
	exit(99);
}

static void
expect_line(char *line)
{
	struct expect *e;
	char *tok, *save;

	if (line[0] == '\t') {
		struct expect_rcpt *rc;

		if (nexpects == 0 || expects[nexpects - 1].nrcpt == RCPT_MAX)
			exit(99);
		e = &expects[nexpects - 1];
		rc = &e->rcpt[e->nrcpt++];
		if (sscanf(line, "%320s %15s %11s", rc->address, rc->class,
		    rc->status) != 3)
			exit(99);
		return;
	}
	if (nexpects == EXPECT_MAX)
		exit(99);
	e = &expects[nexpects++];
	tok = strtok_r(line, " ", &save);
	snprintf(e->file, sizeof(e->file), "%s", tok);
	tok = strtok_r(NULL, " ", &save);
	snprintf(e->kind, sizeof(e->kind), "%s", tok != NULL ? tok : "?");
	while ((tok = strtok_r(NULL, " ", &save)) != NULL)
		expect_option(e, tok);
}

static void
expect_load(void)
{
	const char *src = getenv("ASSENT_SRCDIR");
	char path[4200], line[1024];
	FILE *f;

	snprintf(corpus_dir, sizeof(corpus_dir), "%s/tests/data/inbound",
	    src != NULL ? src : ".");
	snprintf(path, sizeof(path), "%s/expect", corpus_dir);
	if ((f = fopen(path, "r")) == NULL) {
		perror(path);
		exit(99);
	}
	while (fgets(line, sizeof(line), f) != NULL) {
		line[strcspn(line, "\n")] = '\0';
		if (line[0] != '#' && line[0] != '\0')
			expect_line(line);
	}
	fclose(f);
}

static char *
sample_read(const char *file, size_t *len_r)
{
	char path[4400], *data;
	struct assent_err err;
	bool truncated;
	FILE *f;

	snprintf(path, sizeof(path), "%s/%s", corpus_dir, file);
	f = fopen(path, "r");
	ck_assert_msg(f != NULL, "cannot open %s", path);
	ck_assert_msg(bounce_read(f, &data, len_r, &truncated, &err) == 0, "%s",
	    err.msg);
	ck_assert(!truncated);
	fclose(f);
	return data;
}

/* Every string of a report: one line of valid UTF-8, no control. */
static void
check_clean(const char *s, size_t size)
{
	size_t n = strnlen(s, size);

	ck_assert_uint_lt(n, size);
	ck_assert_msg(text_is_utf8(s, n), "not UTF-8: %s", s);
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)s[i];

		ck_assert_msg(c >= 0x20 && c != 0x7f, "control in %s", s);
		ck_assert(!(c == 0xc2 && i + 1 < n &&
		    (unsigned char)s[i + 1] < 0xa0));
	}
}

#define CLEAN(field) check_clean((field), sizeof(field))

static void
check_report_clean(const struct bounce_report *r)
{
	CLEAN(r->from);
	CLEAN(r->subject);
	CLEAN(r->reporting_mta);
	CLEAN(r->original.return_path);
	CLEAN(r->original.from);
	CLEAN(r->original.to);
	CLEAN(r->original.message_id);
	CLEAN(r->arf.feedback_type);
	CLEAN(r->arf.user_agent);
	CLEAN(r->arf.original_mail_from);
	CLEAN(r->arf.original_rcpt_to);
	CLEAN(r->arf.reported_domain);
	CLEAN(r->arf.source_ip);
	ck_assert_ptr_nonnull(r->detail);
	ck_assert_uint_le(r->nrecipients, BOUNCE_RECIPIENTS_MAX);
	for (size_t i = 0; i < r->nrecipients; i++) {
		const struct bounce_recipient *rc = &r->recipients[i];

		CLEAN(rc->final_recipient);
		CLEAN(rc->original_recipient);
		CLEAN(rc->diagnostic);
		CLEAN(rc->remote_mta);
		CLEAN(rc->status);
		ck_assert_ptr_nonnull(rc->why);
	}
}

static void
check_token(const struct expect *e, const struct bounce_report *r)
{
	char got[64];

	if (e->token[0] == '\0') {
		ck_assert_msg(r->verp.kind == BOUNCE_TOKEN_NONE,
		    "%s: unexpected token", e->file);
		return;
	}
	snprintf(got, sizeof(got), "%c:%s", "-bnu"[r->verp.kind],
	    bounce_source_name(r->verp.source));
	ck_assert_msg(strcmp(got, e->token) == 0, "%s: token %s, expected %s",
	    e->file, got, e->token);
	ck_assert_uint_eq(strlen(r->verp.token), TOKEN_COMPACT_TEXT_LEN);
	ck_assert_uint_eq(strspn(r->verp.token,
	    "abcdefghijklmnopqrstuvwxyz234567"), TOKEN_COMPACT_TEXT_LEN);
	ck_assert_str_eq(r->verp.domain, "bounce.example.org");
}

static void
check_msgid(const struct expect *e, const struct bounce_report *r)
{
	const struct bounce_msgid *m = &r->msgid;
	char got[128] = "";

	if (m->kind == BOUNCE_MSGID_CAMPAIGN && m->token[0] != '\0')
		snprintf(got, sizeof(got), "signed:%llu:%s",
		    (unsigned long long)m->campaign_id,
		    bounce_source_name(m->source));
	else if (m->kind == BOUNCE_MSGID_CAMPAIGN)
		snprintf(got, sizeof(got), "campaign:%llu:%llu:%s",
		    (unsigned long long)m->campaign_id,
		    (unsigned long long)m->delivery_id,
		    bounce_source_name(m->source));
	else if (m->kind == BOUNCE_MSGID_TEST)
		snprintf(got, sizeof(got), "test:%llu:%s",
		    (unsigned long long)m->campaign_id,
		    bounce_source_name(m->source));
	else if (m->kind == BOUNCE_MSGID_NOTICE)
		snprintf(got, sizeof(got), "notice:%llu:%s",
		    (unsigned long long)m->notice_id,
		    bounce_source_name(m->source));
	ck_assert_msg(strcmp(got, e->msgid) == 0, "%s: msgid \"%s\", expected "
	    "\"%s\"", e->file, got, e->msgid);
	if (m->kind != BOUNCE_MSGID_NONE) {
		ck_assert_str_eq(m->domain, "example.org");
		ck_assert_int_eq(m->issued_at, m->token[0] != '\0' ? 0 :
		    0x673c7d40);
	}
	if (m->token[0] != '\0')
		ck_assert_uint_eq(strspn(m->token,
		    "abcdefghijklmnopqrstuvwxyz234567"), TOKEN_COMPACT_TEXT_LEN);
}

static void
check_recipients(const struct expect *e, const struct bounce_report *r)
{
	ck_assert_msg(r->nrecipients == e->nrcpt, "%s: %zu recipients, "
	    "expected %zu", e->file, r->nrecipients, e->nrcpt);
	for (size_t i = 0; i < e->nrcpt; i++) {
		const struct bounce_recipient *got = &r->recipients[i];
		const struct expect_rcpt *want = &e->rcpt[i];
		const char *addr = got->final_recipient[0] != '\0' ?
		    got->final_recipient : "-";
		const char *status = got->status[0] != '\0' ? got->status : "-";

		ck_assert_msg(strcmp(addr, want->address) == 0,
		    "%s #%zu: address %s, expected %s", e->file, i, addr,
		    want->address);
		ck_assert_msg(strcmp(bounce_class_name(got->class), want->class) == 0,
		    "%s #%zu: class %s (%s), expected %s", e->file, i,
		    bounce_class_name(got->class), got->why, want->class);
		ck_assert_msg(strcmp(status, want->status) == 0,
		    "%s #%zu: status %s, expected %s", e->file, i, status,
		    want->status);
	}
}

START_TEST(test_corpus)
{
	const struct expect *e = &expects[_i];
	struct bounce_report r;
	size_t len;
	char *data = sample_read(e->file, &len);

	bounce_parse(data, len, e->envelope[0] != '\0' ? e->envelope : NULL, &r);
	ck_assert_msg(strcmp(bounce_kind_name(r.kind), e->kind) == 0,
	    "%s: kind %s (%s), expected %s", e->file, bounce_kind_name(r.kind),
	    r.detail, e->kind);
	check_token(e, &r);
	check_msgid(e, &r);
	ck_assert_msg(strcmp(r.pattern != NULL ? r.pattern : "", e->pattern) == 0,
	    "%s: pattern %s, expected %s", e->file, r.pattern, e->pattern);
	ck_assert_str_eq(r.arf.feedback_type, e->feedback);
	check_recipients(e, &r);
	check_report_clean(&r);
	ck_assert_uint_eq(r.size, len);
	bounce_report_free(&r);
	free(data);
}
END_TEST

/* Every sample on disk has its expectation. */
START_TEST(test_corpus_complete)
{
	DIR *d = opendir(corpus_dir);
	struct dirent *de;
	size_t samples = 0;

	ck_assert_ptr_nonnull(d);
	while ((de = readdir(d)) != NULL) {
		size_t n = strlen(de->d_name);
		bool listed = false;

		if (n < 5 || strcmp(de->d_name + n - 4, ".eml") != 0)
			continue;
		samples++;
		for (size_t i = 0; i < nexpects; i++)
			listed |= strcmp(expects[i].file, de->d_name) == 0;
		ck_assert_msg(listed, "%s has no expectation", de->d_name);
	}
	closedir(d);
	ck_assert_uint_eq(samples, nexpects);
	ck_assert_uint_ge(samples, 40);
}
END_TEST

/* ---- the classifier ------------------------------------------------------ */

static const struct {
	enum bounce_action action;
	const char *status;
	int code;
	const char *diagnostic;
	enum bounce_class want;
} classify_cases[] = {
	{ BOUNCE_ACTION_FAILED, "5.1.1", 550, "user unknown", BOUNCE_CLASS_HARD },
	{ BOUNCE_ACTION_FAILED, "5.1.2", 0, NULL, BOUNCE_CLASS_HARD },
	{ BOUNCE_ACTION_FAILED, "5.1.3", 553, "bad syntax", BOUNCE_CLASS_HARD },
	{ BOUNCE_ACTION_FAILED, "5.1.6", 0, "", BOUNCE_CLASS_HARD },
	{ BOUNCE_ACTION_FAILED, "5.1.10", 550, "RecipientNotFound", BOUNCE_CLASS_HARD },
	{ BOUNCE_ACTION_FAILED, "5.2.1", 550, "mailbox disabled", BOUNCE_CLASS_HARD },
	{ BOUNCE_ACTION_FAILED, "5.1.7", 553, "bad sender", BOUNCE_CLASS_POLICY },
	{ BOUNCE_ACTION_FAILED, "5.1.8", 553, NULL, BOUNCE_CLASS_POLICY },
	{ BOUNCE_ACTION_FAILED, "5.2.2", 552, "mailbox full", BOUNCE_CLASS_SOFT },
	{ BOUNCE_ACTION_FAILED, "4.2.2", 452, "over quota", BOUNCE_CLASS_SOFT },
	{ BOUNCE_ACTION_FAILED, "5.2.3", 552, "message too long", BOUNCE_CLASS_POLICY },
	{ BOUNCE_ACTION_FAILED, "5.3.4", 552, "too big", BOUNCE_CLASS_POLICY },
	{ BOUNCE_ACTION_FAILED, "5.4.4", 0, "no route", BOUNCE_CLASS_SOFT },
	{ BOUNCE_ACTION_FAILED, "5.4.1", 550, "No answer", BOUNCE_CLASS_SOFT },
	{ BOUNCE_ACTION_FAILED, "4.4.1", 0, "timed out", BOUNCE_CLASS_SOFT },
	{ BOUNCE_ACTION_FAILED, "5.7.1", 554, "blocked using zen.spamhaus.org",
	    BOUNCE_CLASS_POLICY },
	{ BOUNCE_ACTION_FAILED, "5.7.1", 550, "user unknown", BOUNCE_CLASS_POLICY },
	{ BOUNCE_ACTION_FAILED, "5.7.26", 550, "DMARC", BOUNCE_CLASS_POLICY },
	{ BOUNCE_ACTION_FAILED, "5.0.0", 550, "550 5.1.1 user unknown",
	    BOUNCE_CLASS_HARD },
	{ BOUNCE_ACTION_FAILED, "5.0.0", 550, "550 No such user here",
	    BOUNCE_CLASS_HARD },
	{ BOUNCE_ACTION_FAILED, "5.0.0", 550, "mailbox unavailable",
	    BOUNCE_CLASS_SOFT },
	{ BOUNCE_ACTION_FAILED, "5.0.0", 554, "rejected as spam",
	    BOUNCE_CLASS_POLICY },
	{ BOUNCE_ACTION_FAILED, "5.0.0", 550, "spam; user unknown",
	    BOUNCE_CLASS_POLICY },
	{ BOUNCE_ACTION_FAILED, "", 550, "No such user", BOUNCE_CLASS_HARD },
	{ BOUNCE_ACTION_FAILED, NULL, 553, "sorry, that user doesn't exist",
	    BOUNCE_CLASS_HARD },
	{ BOUNCE_ACTION_FAILED, NULL, 552, "user unknown", BOUNCE_CLASS_SOFT },
	{ BOUNCE_ACTION_FAILED, NULL, 550, "denied", BOUNCE_CLASS_SOFT },
	{ BOUNCE_ACTION_FAILED, NULL, 0, NULL, BOUNCE_CLASS_SOFT },
	{ BOUNCE_ACTION_FAILED, "junk", 0, "Unrouteable address", BOUNCE_CLASS_HARD },
	{ BOUNCE_ACTION_FAILED, "5.5.0", 550, "mailbox not found", BOUNCE_CLASS_HARD },
	{ BOUNCE_ACTION_FAILED, "5.0.0", 0, "#5.1.1 smtp; 550 x", BOUNCE_CLASS_HARD },
	{ BOUNCE_ACTION_DELAYED, "5.1.1", 550, NULL, BOUNCE_CLASS_SOFT },
	{ BOUNCE_ACTION_DELAYED, "4.4.7", 0, NULL, BOUNCE_CLASS_SOFT },
	{ BOUNCE_ACTION_DELIVERED, "2.0.0", 250, "ok", BOUNCE_CLASS_NONE },
	{ BOUNCE_ACTION_RELAYED, "2.0.0", 0, NULL, BOUNCE_CLASS_NONE },
	{ BOUNCE_ACTION_EXPANDED, "2.0.0", 0, NULL, BOUNCE_CLASS_NONE },
	{ BOUNCE_ACTION_NONE, "2.1.5", 250, NULL, BOUNCE_CLASS_NONE },
	{ BOUNCE_ACTION_NONE, NULL, 0, NULL, BOUNCE_CLASS_NONE },
	{ BOUNCE_ACTION_NONE, "5.1.1", 0, NULL, BOUNCE_CLASS_HARD },
	{ BOUNCE_ACTION_NONE, NULL, 451, "try later", BOUNCE_CLASS_SOFT },
	{ BOUNCE_ACTION_NONE, "5.1.1", 9999, NULL, BOUNCE_CLASS_HARD },
};

START_TEST(test_classify)
{
	const char *why = NULL;
	enum bounce_class got = bounce_classify(classify_cases[_i].action,
	    classify_cases[_i].status, classify_cases[_i].code,
	    classify_cases[_i].diagnostic, &why);

	ck_assert_msg(got == classify_cases[_i].want, "case %d (%s %s): %s (%s), "
	    "expected %s", _i, classify_cases[_i].status,
	    classify_cases[_i].diagnostic, bounce_class_name(got), why,
	    bounce_class_name(classify_cases[_i].want));
	ck_assert_ptr_nonnull(why);
	ck_assert(bounce_classify(classify_cases[_i].action,
	    classify_cases[_i].status, classify_cases[_i].code,
	    classify_cases[_i].diagnostic, NULL) == got);
}
END_TEST

/* SMTP replies at send time: the same classes as the DSNs. */
static const struct {
	int code;
	const char *enhanced;
	const char *text;
	enum bounce_class want;
} reply_cases[] = {
	{ 550, "5.1.1", "<a@example.net>: Recipient address rejected",
	    BOUNCE_CLASS_HARD },
	{ 550, "", "No such user", BOUNCE_CLASS_HARD },
	{ 553, "", "mailbox name not allowed; user unknown", BOUNCE_CLASS_HARD },
	{ 450, "4.2.0", "Greylisted", BOUNCE_CLASS_SOFT },
	{ 451, "", "Temporary local problem", BOUNCE_CLASS_SOFT },
	{ 452, "4.2.2", "Mailbox full", BOUNCE_CLASS_SOFT },
	{ 554, "5.7.1", "Client host blocked using zen.spamhaus.org",
	    BOUNCE_CLASS_POLICY },
	{ 550, "5.7.1", "Message rejected as spam", BOUNCE_CLASS_POLICY },
	{ 550, "", "Blocked: your IP is listed at bl.example", BOUNCE_CLASS_POLICY },
	{ 250, "2.0.0", "Ok", BOUNCE_CLASS_NONE },
	{ 354, "", "go ahead", BOUNCE_CLASS_NONE },
	{ 0, "", "", BOUNCE_CLASS_NONE },
};

START_TEST(test_classify_reply)
{
	enum bounce_class got = bounce_classify_reply(reply_cases[_i].code,
	    reply_cases[_i].enhanced, reply_cases[_i].text, NULL);

	ck_assert_msg(got == reply_cases[_i].want, "case %d: %s", _i,
	    bounce_class_name(got));
}
END_TEST

static const struct {
	const char *text;
	const char *status;
	int code;
} find_cases[] = {
	{ "550 5.1.1 <a@b>: user unknown", "5.1.1", 550 },
	{ "smtp; 550-5.1.1 The email account", "5.1.1", 550 },
	{ "#550 5.1.1 RESOLVER.ADR.RecipNotFound; not found ##", "5.1.1", 550 },
	{ "<mx.example.net #5.1.1>", "5.1.1", 0 },
	{ "Remote Server returned '< #5.0.0 smtp; 550 5.1.1 x>'", "5.1.1", 550 },
	{ "5.0.0 only", "5.0.0", 0 },
	{ "554: delivery error: dd", "", 554 },
	{ "version 1.5.1.2 and 10.5.1.1 host", "", 0 },
	{ "5.1.1x 5.123.4567 2.1.5", "2.1.5", 0 },
	{ "x550 5501 550", "", 550 },
	{ "connect to mx.example.net[203.0.113.9]:25: timed out", "", 0 },
	{ "4.7.1 greylisted, 451 later", "4.7.1", 451 },
	{ "", "", 0 },
};

START_TEST(test_find_codes)
{
	char st[BOUNCE_STATUS_SIZE];
	bool found = bounce_status_find(find_cases[_i].text, st);

	ck_assert_str_eq(st, find_cases[_i].status);
	ck_assert(found == (find_cases[_i].status[0] != '\0'));
	ck_assert_int_eq(bounce_smtp_code_find(find_cases[_i].text),
	    find_cases[_i].code);
}
END_TEST

START_TEST(test_names)
{
	ck_assert_str_eq(bounce_kind_name(BOUNCE_KIND_MAILTO_UNSUBSCRIBE),
	    "mailto-unsubscribe");
	ck_assert_str_eq(bounce_kind_name((enum bounce_kind)99), "unknown");
	ck_assert_str_eq(bounce_class_name(BOUNCE_CLASS_COMPLAINT), "complaint");
	ck_assert_str_eq(bounce_action_name((enum bounce_action)99), "");
	ck_assert_int_eq(bounce_action_parse(" Failed "), BOUNCE_ACTION_FAILED);
	ck_assert_int_eq(bounce_action_parse("delayed (retrying)"),
	    BOUNCE_ACTION_DELAYED);
	ck_assert_int_eq(bounce_action_parse("failedx"), BOUNCE_ACTION_NONE);
	ck_assert_int_eq(bounce_action_parse(""), BOUNCE_ACTION_NONE);
	ck_assert_int_eq(bounce_action_parse(NULL), BOUNCE_ACTION_NONE);
	ck_assert_str_eq(bounce_source_name(BOUNCE_SOURCE_ENVELOPE), "envelope");
}
END_TEST

/* ---- identifiers ----------------------------------------------------------- */

static void
parse_str(const char *msg, const char *envelope, struct bounce_report *r)
{
	bounce_parse(msg, strlen(msg), envelope, r);
	check_report_clean(r);
}

static const struct {
	const char *to;
	const char *envelope;
	enum bounce_token_kind kind;
	enum bounce_source source;
} token_cases[] = {
	{ "b-" TOKEN_A "@bounce.example.org", NULL, BOUNCE_TOKEN_BOUNCE,
	    BOUNCE_SOURCE_TO },
	{ "\"News\" <N-" TOKEN_A "@Bounce.Example.Org>", NULL, BOUNCE_TOKEN_NOTICE,
	    BOUNCE_SOURCE_TO },
	{ "x@example.org, u-" TOKEN_A "@bounce.example.org", NULL,
	    BOUNCE_TOKEN_UNSUBSCRIBE, BOUNCE_SOURCE_TO },
	{ "b-" TOKEN_A "@bounce.example.org", "u-" TOKEN_B "@bounce.example.org",
	    BOUNCE_TOKEN_UNSUBSCRIBE, BOUNCE_SOURCE_ENVELOPE },
	{ "xb-" TOKEN_A "@bounce.example.org", NULL, BOUNCE_TOKEN_NONE, 0 },
	{ "b-" TOKEN_A "x@bounce.example.org", NULL, BOUNCE_TOKEN_NONE, 0 },
	{ "b-ujzdegxdncf32epf3dhodzdocis2jhtlgmxgedn73u55xtp@bounce.example.org",
	    NULL, BOUNCE_TOKEN_NONE, 0 },
	{ "b-ujzdegxdncf32epf3dhodzdocis2jhtlgmxgedn73u55xt1l@bounce.example.org",
	    NULL, BOUNCE_TOKEN_NONE, 0 },
	{ "c-" TOKEN_A "@bounce.example.org", NULL, BOUNCE_TOKEN_NONE, 0 },
	{ "b-" TOKEN_A "@", NULL, BOUNCE_TOKEN_NONE, 0 },
};

START_TEST(test_tokens)
{
	char msg[1024];
	struct bounce_report r;

	snprintf(msg, sizeof(msg), "From: a@example.com\nTo: %s\nSubject: x\n\n"
	    "hello\n", token_cases[_i].to);
	parse_str(msg, token_cases[_i].envelope, &r);
	ck_assert_int_eq(r.verp.kind, token_cases[_i].kind);
	if (r.verp.kind != BOUNCE_TOKEN_NONE) {
		ck_assert_int_eq(r.verp.source, token_cases[_i].source);
		ck_assert_str_eq(r.verp.token, token_cases[_i].envelope != NULL ?
		    TOKEN_B : TOKEN_A);
		ck_assert_str_eq(r.verp.domain, "bounce.example.org");
	} else
		ck_assert_str_eq(r.verp.token, "");
	bounce_report_free(&r);
}
END_TEST

#define T48 "rx2kq7mzvd4hb6wuc3tnfj5ypeals7gixo2dq4vnkm6zhbw3"

static const struct {
	const char *in_reply_to;
	enum bounce_msgid_kind kind;
	unsigned long long a, b;
	const char *token;              /* signed form: expected token */
} msgid_cases[] = {
	/* the signed form: the token kept (lower case), no delivery id */
	{ "<c42." T48 "@news.example.org>", BOUNCE_MSGID_CAMPAIGN, 42, 0, T48 },
	{ "<c42.RX2KQ7MZVD4HB6WUC3TNFJ5YPEALS7GIXO2DQ4VNKM6ZHBW3@News.Example.org>",
	    BOUNCE_MSGID_CAMPAIGN, 42, 0, T48 },
	{ "<x@y> <c7." T48 "@news.example.org>", BOUNCE_MSGID_CAMPAIGN, 7, 0, T48 },
	{ "<c42." T48 "x@news.example.org>", BOUNCE_MSGID_NONE, 0, 0, "" },
	{ "<c42.x" T48 "@news.example.org>", BOUNCE_MSGID_NONE, 0, 0, "" },
	{ "<c42.rx2kq7mzvd4hb6wuc3tnfj5ypeals7gixo2dq4vnkm6zhbw@news.example.org>",
	    BOUNCE_MSGID_NONE, 0, 0, "" },
	{ "<c42.rx2kq7mzvd4hb6wuc3tnfj5ypeals7gixo2dq4vnkm6zhbw1@news.example.org>",
	    BOUNCE_MSGID_NONE, 0, 0, "" },
	{ "<c42." T48 "@>", BOUNCE_MSGID_NONE, 0, 0, "" },
	{ "<c42." T48 ".673c7d40@news.example.org>", BOUNCE_MSGID_NONE, 0, 0, "" },
	{ "<c." T48 "@news.example.org>", BOUNCE_MSGID_NONE, 0, 0, "" },
	/* the old unsigned form: ours, token "" (never attributes) */
	{ "<c42.d1001.673c7d40@news.example.org>", BOUNCE_MSGID_CAMPAIGN, 42,
	    1001, "" },
	{ "<other@x> <c42.tdeadbeef.673c7d40@news.example.org>",
	    BOUNCE_MSGID_TEST, 42, 0, "" },
	{ "<n9.673c7d40@news.example.org>", BOUNCE_MSGID_NOTICE, 9, 0, "" },
	{ "<c42.d1001.673c7d40@>", BOUNCE_MSGID_NONE, 0, 0, "" },
	{ "<c42.d1001@news.example.org>", BOUNCE_MSGID_NONE, 0, 0, "" },
	{ "<c99999999999999999999.d1.1@news.example.org>", BOUNCE_MSGID_NONE, 0,
	    0, "" },
	{ "<c42.d1001.fffffffffffffffff@news.example.org>", BOUNCE_MSGID_NONE,
	    0, 0, "" },
	{ "<c42.x1001.673c7d40@news.example.org>", BOUNCE_MSGID_NONE, 0, 0, "" },
	{ "<cx.d1.1@news.example.org>", BOUNCE_MSGID_NONE, 0, 0, "" },
	{ "<", BOUNCE_MSGID_NONE, 0, 0, "" },
};

START_TEST(test_msgids)
{
	char msg[1024];
	struct bounce_report r;
	bool is_signed = msgid_cases[_i].token[0] != '\0';

	snprintf(msg, sizeof(msg), "From: a@example.com\nTo: b@example.org\n"
	    "In-Reply-To: %s\nSubject: x\n\nhello\n", msgid_cases[_i].in_reply_to);
	parse_str(msg, NULL, &r);
	ck_assert_int_eq(r.msgid.kind, msgid_cases[_i].kind);
	ck_assert_str_eq(r.msgid.token, msgid_cases[_i].token);
	if (r.msgid.kind == BOUNCE_MSGID_CAMPAIGN) {
		ck_assert_uint_eq(r.msgid.campaign_id, msgid_cases[_i].a);
		ck_assert_uint_eq(r.msgid.delivery_id, msgid_cases[_i].b);
	} else if (r.msgid.kind == BOUNCE_MSGID_TEST)
		ck_assert_uint_eq(r.msgid.campaign_id, msgid_cases[_i].a);
	else if (r.msgid.kind == BOUNCE_MSGID_NOTICE)
		ck_assert_uint_eq(r.msgid.notice_id, msgid_cases[_i].a);
	if (r.msgid.kind != BOUNCE_MSGID_NONE) {
		ck_assert_int_eq(r.msgid.source, BOUNCE_SOURCE_IN_REPLY_TO);
		ck_assert_int_eq(r.msgid.issued_at, is_signed ? 0 : 0x673c7d40);
		ck_assert_str_eq(r.msgid.domain, "news.example.org");
	}
	bounce_report_free(&r);
}
END_TEST

/* ---- limits and bad input -------------------------------------------------- */

static char *
dsn_with(size_t nrcpt, size_t padding)
{
	size_t cap = 1024 + nrcpt * 128 + padding, len;
	char *m = malloc(cap);

	len = (size_t)snprintf(m, cap, "From: MAILER-DAEMON@mx.example.net\n"
	    "To: b-" TOKEN_A "@bounce.example.org\nMIME-Version: 1.0\n"
	    "Content-Type: multipart/report; report-type=delivery-status; "
	    "boundary=\"B\"\n\n--B\nContent-Type: message/delivery-status\n\n"
	    "Reporting-MTA: dns; mx.example.net\n");
	for (size_t i = 0; i < nrcpt; i++)
		len += (size_t)snprintf(m + len, cap - len, "\nFinal-Recipient: "
		    "rfc822; user%zu@example.net\nAction: failed\nStatus: 5.1.1\n", i);
	len += (size_t)snprintf(m + len, cap - len,
	    "\n--B\nContent-Type: text/plain\n\n");
	memset(m + len, 'x', padding);
	len += padding;
	snprintf(m + len, cap - len, "\n--B--\n");
	return m;
}

START_TEST(test_recipient_cap)
{
	struct bounce_report r;
	char *m = dsn_with(BOUNCE_RECIPIENTS_MAX + 50, 0);

	parse_str(m, NULL, &r);
	ck_assert_int_eq(r.kind, BOUNCE_KIND_DSN);
	ck_assert_uint_eq(r.nrecipients, BOUNCE_RECIPIENTS_MAX);
	ck_assert_uint_eq(r.recipients_dropped, 50);
	ck_assert_str_eq(r.recipients[99].final_recipient, "user99@example.net");
	bounce_report_free(&r);
	bounce_report_free(&r);         /* harmless */
	ck_assert_ptr_null(r.recipients);
	free(m);
}
END_TEST

START_TEST(test_huge_input)
{
	struct bounce_report r;
	char *m = dsn_with(1, BOUNCE_INPUT_MAX + 4096);

	bounce_parse(m, strlen(m), NULL, &r);
	ck_assert(r.truncated);
	ck_assert_uint_eq(r.size, strlen(m));
	ck_assert_int_eq(r.kind, BOUNCE_KIND_DSN);
	ck_assert_uint_eq(r.nrecipients, 1);
	bounce_report_free(&r);
	free(m);
}
END_TEST

START_TEST(test_read)
{
	static const char msg[] = "Subject: a\n\nb\0c";
	struct assent_err err;
	char *data, *big;
	size_t len, biglen = BOUNCE_INPUT_MAX + 10;
	bool truncated;
	FILE *f = fmemopen((void *)msg, sizeof(msg) - 1, "r");

	ck_assert_int_eq(bounce_read(f, &data, &len, &truncated, &err), 0);
	ck_assert_uint_eq(len, sizeof(msg) - 1);
	ck_assert(memcmp(data, msg, len) == 0 && data[len] == '\0');
	ck_assert(!truncated);
	fclose(f);
	free(data);

	big = malloc(biglen);
	memset(big, 'a', biglen);
	f = fmemopen(big, biglen, "r");
	ck_assert_int_eq(bounce_read(f, &data, &len, &truncated, &err), 0);
	ck_assert_uint_eq(len, BOUNCE_INPUT_MAX);
	ck_assert(truncated);
	ck_assert(feof(f));             /* the rest was drained */
	fclose(f);
	free(data);
	free(big);
}
END_TEST

static const char *const junk_cases[] = {
	"",
	"\n\n\n",
	"From: a\n",
	"Content-Type: multipart/report; report-type=delivery-status\n\n--\n",
	"Content-Type: multipart/report; boundary=x\n\n--x\nContent-Type: "
	    "message/delivery-status\n\nFinal-Recipient\n:\n\n: x\n\n--x--\n",
	"Content-Type: multipart/report; boundary=x\n\n--x\nContent-Type: "
	    "message/delivery-status\nContent-Transfer-Encoding: base64\n\n"
	    "!!!!\n--x--\n",
	"Content-Type: multipart/report; boundary=x\n\n--x\nContent-Type: "
	    "message/feedback-report\n\n--x\nContent-Type: message/rfc822\n\n"
	    "--x--\n",
	"Content-Type: text/plain; charset=\"\xff\"\nSubject: =?\xff?Q?x?=\n\n"
	    "Delivery has failed to these recipients or groups\n"
	    "Diagnostic information for administrators\n\xff@\xfe.x\n",
	"Subject: x\n\nThis is the qmail-send program\nfollowing addresses\n<@>:\n"
	    "<a@b>:\n",
};

START_TEST(test_junk)
{
	struct bounce_report r;

	parse_str(junk_cases[_i], NULL, &r);
	ck_assert_ptr_nonnull(r.detail);
	bounce_report_free(&r);
}
END_TEST

/* A bounce of a bounce: the attached message's report is not ours. */
START_TEST(test_nested_report_ignored)
{
	static const char msg[] =
	    "From: someone@example.com\nTo: b-" TOKEN_A "@bounce.example.org\n"
	    "Subject: fwd\nContent-Type: multipart/mixed; boundary=o\n\n"
	    "--o\nContent-Type: text/plain\n\nsee attached\n"
	    "--o\nContent-Type: message/rfc822\n\n"
	    "Content-Type: multipart/report; report-type=delivery-status; "
	    "boundary=i\n\n--i\nContent-Type: message/delivery-status\n\n"
	    "Final-Recipient: rfc822; x@example.net\nAction: failed\n"
	    "Status: 5.1.1\n\n--i--\n--o--\n";
	struct bounce_report r;

	parse_str(msg, NULL, &r);
	ck_assert_int_eq(r.kind, BOUNCE_KIND_UNKNOWN);
	ck_assert_uint_eq(r.nrecipients, 0);
	bounce_report_free(&r);
}
END_TEST

static Suite *
bounce_suite(void)
{
	Suite *s = suite_create("bounce");
	TCase *tc = tcase_create("bounce");

	tcase_add_loop_test(tc, test_corpus, 0, (int)nexpects);
	tcase_add_test(tc, test_corpus_complete);
	tcase_add_loop_test(tc, test_classify, 0,
	    sizeof(classify_cases) / sizeof(classify_cases[0]));
	tcase_add_loop_test(tc, test_classify_reply, 0,
	    sizeof(reply_cases) / sizeof(reply_cases[0]));
	tcase_add_loop_test(tc, test_find_codes, 0,
	    sizeof(find_cases) / sizeof(find_cases[0]));
	tcase_add_test(tc, test_names);
	tcase_add_loop_test(tc, test_tokens, 0,
	    sizeof(token_cases) / sizeof(token_cases[0]));
	tcase_add_loop_test(tc, test_msgids, 0,
	    sizeof(msgid_cases) / sizeof(msgid_cases[0]));
	tcase_add_test(tc, test_recipient_cap);
	tcase_add_test(tc, test_huge_input);
	tcase_add_test(tc, test_read);
	tcase_add_loop_test(tc, test_junk, 0,
	    sizeof(junk_cases) / sizeof(junk_cases[0]));
	tcase_add_test(tc, test_nested_report_ignored);
	suite_add_tcase(s, tc);
	return s;
}

int
main(void)
{
	int rc;

	expect_load();
	bounce_init();
	rc = testhelp_run_suite(bounce_suite());
	bounce_shutdown();
	return rc;
}

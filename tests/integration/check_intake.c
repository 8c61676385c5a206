/*
 * check_intake: bounces and complaints into the real database. Reports
 * are samples from tests/data/inbound/ parsed with bounce_parse(), their
 * made-up VERP token replaced by one signed here for a delivery (or a
 * notice) of this test's database; and the sender's synchronous path
 * end to end: assentd ($ASSENTD_BIN) sending to tests/harness/smtpd.py,
 * whose recipients' local parts choose its refusals.
 *
 * A hostile reading of the same (issue 7; samples review-*.eml): a
 * forged ARF naming another delivery's unsigned Message-ID changes
 * nothing; erasing a person blanks every stored bounce naming the
 * address, also one attributed to somebody else; a refusal about our
 * sender never hard-bounces the recipient; and `assent inbound`
 * ($ASSENT_BIN) exits EX_TEMPFAIL when the database fails under it,
 * never cuts a message larger than BOUNCE_INPUT_MAX on its way to the
 * reject folder, and is not stopped by one unreadable Maildir entry.
 */
#include <sys/stat.h>
#include <check.h>
#include <ctype.h>
#include <dirent.h>
#include <inttypes.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <jansson.h>

#include "assent/bounce.h"
#include "assent/buf.h"
#include "assent/campaign.h"
#include "assent/compose.h"
#include "assent/conf.h"
#include "assent/intake.h"
#include "assent/keys.h"
#include "assent/ledger.h"
#include "assent/lists.h"
#include "assent/mime.h"
#include "assent/rights.h"
#include "assent/suppress.h"
#include "assent/token.h"
#include "assent/xmalloc.h"
#include "testhelp.h"

#define conn testhelp_conn
#define DONE_MS 60000

static struct world {
	char dir[64];
	char *keys_path;
	struct keys *keys;
	struct suppress_ctx gate;
	struct token_signer *signer;
	struct assent_conf conf;
	struct intake_ctx ctx;
	char *smtp_dir;
	int smtp_port;
	pid_t smtp_pid;
} w;

static long
count(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static long
count(const char *fmt, ...)
{
	char sql[2048];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(sql, sizeof(sql), fmt, ap);
	va_end(ap);
	return testhelp_query_long(conn, sql);
}

/* ann and bob on news, ann on offers too; campaign 1 ("spring", from
 * news@example.org) sent to both a moment ago. */
static void
setup(void)
{
	struct assent_err err;

	testhelp_fixture_db();
	memset(&w, 0, sizeof(w));
	strcpy(w.dir, "/tmp/assent-intake-XXXXXX");
	ck_assert(mkdtemp(w.dir) != NULL);
	testhelp_keys_make(w.dir, &w.keys_path, &w.keys, &w.gate, &w.signer);
	w.conf.sender_bounce_domain = "bounce.example.org";
	w.conf.bounce_soft_limit = 3;
	w.conf.bounce_soft_span = 14 * 86400;
	w.conf.bounce_soft_suppress_for = 90 * 86400;
	w.ctx.conf = &w.conf;
	w.ctx.signer = w.signer;
	w.ctx.added_by = "check_intake";
	ck_assert_int_eq(lists_create(conn, "news", NULL, false, &err), 0);
	ck_assert_int_eq(lists_create(conn, "offers", NULL, false, &err), 0);
	testhelp_subscribe(conn, "ann@example.org", NULL, "news");
	testhelp_subscribe(conn, "ann@example.org", NULL, "offers");
	testhelp_subscribe(conn, "bob@example.net", NULL, "news");
	testhelp_sql_exec(conn, "INSERT INTO campaigns (name, state, subject,"
	    " from_address, body_text, scheduled_at, created_by) VALUES ('spring',"
	    " 'sending', 'News', 'news@example.org', 'x', now(), 'tester')");
	testhelp_sql_exec(conn, "INSERT INTO deliveries (campaign_id,"
	    " subscriber_id, list_id, domain, state, sent_at)"
	    " SELECT 1, id, 1, split_part(email_key, '@', 2), 'sent', now()"
	    " FROM subscribers ORDER BY id");
}

static void
teardown(void)
{
	testhelp_smtpd_stop(w.smtp_pid);
	token_signer_free(w.signer);
	keys_free(w.keys);
	free(w.keys_path);
	free(w.smtp_dir);
	testhelp_fixture_drop();
}

static long long
delivery_of(const char *email, int campaign)
{
	return count("SELECT d.id FROM deliveries d JOIN subscribers s"
	    " ON s.id = d.subscriber_id WHERE s.email = '%s'"
	    " AND d.campaign_id = %d", email, campaign);
}

/* A compact token of purpose p (bounce: b-, notice: n-) for message id
 * issued at. */
static void
make_token_for(enum token_purpose p, long long id, int64_t issued,
    char out[TOKEN_COMPACT_TEXT_SIZE])
{
	struct token_compact t = { .purpose = p,
	    .delivery_id = (uint64_t)id, .issued_at = issued };
	struct assent_err err;

	ck_assert_msg(token_compact_make(w.signer, &t, out,
	    TOKEN_COMPACT_TEXT_SIZE, &err) == 0, "%s", err.msg);
}

/* A b- token for delivery id issued at. */
static void
make_token(long long id, int64_t issued, char out[TOKEN_COMPACT_TEXT_SIZE])
{
	make_token_for(TOKEN_BOUNCE, id, issued, out);
}

/* text with every from replaced by to (a fresh string). */
static char *
replace_all(const char *text, const char *from, const char *to)
{
	size_t fl = strlen(from), tl = strlen(to), n = 0;
	const char *p;
	char *out, *o;

	for (p = text; (p = strstr(p, from)) != NULL; p += fl)
		n++;
	out = o = xmalloc(strlen(text) + n * (tl + 1) + 1);
	for (p = text; *p != '\0';) {
		if (strncmp(p, from, fl) == 0) {
			memcpy(o, to, tl);
			o += tl;
			p += fl;
		} else
			*o++ = *p++;
	}
	*o = '\0';
	return out;
}

static char *
sample_text(const char *file)
{
	const char *src = getenv("ASSENT_SRCDIR");
	char *path = xasprintf("%s/tests/data/inbound/%s", src != NULL ? src :
	    ".", file);
	char *text = testhelp_file_read(path);

	ck_assert_msg(text[0] != '\0', "cannot read %s", path);
	free(path);
	return text;
}

/* text (taken: freed here) with its VERP token (prefix b-) replaced by
 * token with prefix (e.g. "b-", "n-"), as a fresh string; token NULL:
 * text as is. file names the sample in a failure. */
static char *
retoken(char *text, const char *file, const char *prefix, const char *token)
{
	char from[64], to[64], *edited;
	struct bounce_report r;

	if (token == NULL)
		return text;
	bounce_parse(text, strlen(text), NULL, &r);
	ck_assert_msg(r.verp.kind == BOUNCE_TOKEN_BOUNCE, "%s: no token", file);
	snprintf(from, sizeof(from), "b-%s", r.verp.token);
	snprintf(to, sizeof(to), "%s%s", prefix, token);
	bounce_report_free(&r);
	edited = replace_all(text, from, to);
	free(text);
	return edited;
}

/* The sample file retoken()ed, parsed into r. */
static void
sample(const char *file, const char *prefix, const char *token,
    struct bounce_report *r)
{
	char *text = retoken(sample_text(file), file, prefix, token);

	bounce_parse(text, strlen(text), NULL, r);
	free(text);
}

static void
intake(const struct bounce_report *r, struct intake_result *res)
{
	struct assent_err err;

	ck_assert_msg(intake_report(conn, &w.ctx, r, r->size, res, &err) == 0,
	    "%s", err.msg);
}

/* sample() with every from in the text replaced by to first. */
static void
sample_edited(const char *file, const char *from, const char *to,
    const char *prefix, const char *token, struct bounce_report *r)
{
	char *text = sample_text(file), *edited;

	edited = retoken(replace_all(text, from, to), file, prefix, token);
	bounce_parse(edited, strlen(edited), NULL, r);
	free(edited);
	free(text);
}

/* A hard DSN for delivery id, reporting its own recipient (the
 * sample's bob@example.net replaced by the delivery's address),
 * processed; the report is freed. */
static void
hard_dsn(long long id, struct intake_result *res)
{
	char tok[TOKEN_COMPACT_TEXT_SIZE], sql[256], *email;
	struct bounce_report r;

	snprintf(sql, sizeof(sql), "SELECT coalesce(s.email, 'gone@example.org')"
	    " FROM deliveries d JOIN subscribers s ON s.id = d.subscriber_id"
	    " WHERE d.id = %lld", id);
	email = testhelp_query_text(conn, sql);
	make_token(id, (int64_t)time(NULL), tok);
	sample_edited("postfix-user-unknown.eml", "bob@example.net", email, "b-",
	    tok, &r);
	intake(&r, res);
	bounce_report_free(&r);
	free(email);
}

static void
assert_ledger_valid(void)
{
	struct ledger_verify_result v;
	struct assent_err err;

	ck_assert_msg(ledger_verify(conn, &v, &err) == 0, "%s", err.msg);
	ck_assert_msg(v.problems == 0, "ledger: %s", v.what);
}

/* ---- reports ---------------------------------------------------------- */

/* A hard bounce: suppressed, a ledger event, bounced_at, the row; the
 * same report again stores a row and nothing more. */
START_TEST(test_hard_bounce)
{
	long long ann = delivery_of("ann@example.org", 1);
	struct intake_result res;

	hard_dsn(ann, &res);
	ck_assert(res.attributed);
	ck_assert_str_eq(res.attributed_by, "verp");
	ck_assert_int_eq(res.delivery_id, ann);
	ck_assert_int_eq(res.hard, 1);
	ck_assert_int_eq(res.suppressed, 1);
	ck_assert_int_eq(count("SELECT count(*) FROM suppressions WHERE value ="
	    " 'ann@example.org' AND reason = 'hard-bounce' AND removed_at IS NULL"
	    " AND source LIKE 'hard bounce 5.1.1 (dsn, delivery %lld of campaign 1)%%'",
	    ann), 1);
	ck_assert_int_eq(count("SELECT count(*) FROM ledger l JOIN subscribers s"
	    " ON s.id = l.subscriber_id WHERE s.email = 'ann@example.org'"
	    " AND l.action = 'bounce' AND l.channel = 'bounce'"
	    " AND l.list_id IS NULL AND l.status_after IS NULL"
	    " AND l.source LIKE 'hard bounce 5.1.1 %%unknown user%%'"), 1);
	ck_assert_int_eq(count("SELECT count(*) FROM deliveries WHERE id = %lld"
	    " AND bounced_at IS NOT NULL", ann), 1);
	ck_assert_int_eq(count("SELECT count(*) FROM bounces WHERE delivery_id = %lld"
	    " AND campaign_id = 1 AND class = 'hard' AND source = 'dsn'"
	    " AND attributed_by = 'verp' AND action = 'hard-bounce'"
	    " AND status = '5.1.1' AND recipient = 'ann@example.org'"
	    " AND remote_mta IS NOT NULL AND raw_size > 1000"
	    " AND subscriber_id = (SELECT id FROM subscribers"
	    "   WHERE email = 'ann@example.org')", ann), 1);
	/* still subscribed: a bounce is no withdrawal */
	ck_assert_int_eq(count("SELECT count(*) FROM subscriptions"
	    " WHERE status = 'confirmed'"), 3);

	hard_dsn(ann, &res);
	ck_assert(res.attributed);
	ck_assert_int_eq(res.suppressed, 0);
	ck_assert_int_eq(count("SELECT count(*) FROM bounces"), 2);
	ck_assert_int_eq(count("SELECT count(*) FROM bounces WHERE action = 'already'"), 1);
	ck_assert_int_eq(count("SELECT count(*) FROM ledger WHERE action = 'bounce'"), 1);
	ck_assert_int_eq(count("SELECT count(*) FROM suppressions"), 1);
	assert_ledger_valid();
}
END_TEST

static void
assert_refused(const char *sql)
{
	PGresult *res = PQexec(conn, sql);

	ck_assert_msg(PQresultStatus(res) == PGRES_FATAL_ERROR, "accepted: %s", sql);
	PQclear(res);
}

START_TEST(test_record_is_kept)
{
	struct intake_result res;

	hard_dsn(delivery_of("ann@example.org", 1), &res);
	assert_refused("DELETE FROM bounces");
	assert_refused("TRUNCATE bounces");
	assert_refused("UPDATE bounces SET class = 'soft'");
	assert_refused("UPDATE bounces SET action = 'none'");
	assert_refused("UPDATE bounces SET recipient = 'someone@else.example'");
	assert_refused("UPDATE bounces SET received_at = now() - interval '1 day'");
	testhelp_sql_exec(conn, "UPDATE bounces SET recipient = NULL, diagnostic = NULL");
	/* contents are checked */
	assert_refused("INSERT INTO bounces (source, class, action)"
	    " VALUES ('smtp', 'hard', 'none')");
	assert_refused("INSERT INTO bounces (source, class, action)"
	    " VALUES ('dsn', 'hard', 'hard-bounce')");       /* unattributed */
	assert_refused("INSERT INTO bounces (source, class, action, status)"
	    " VALUES ('dsn', 'hard', 'none', '5.1')");
	assert_refused("INSERT INTO bounces (source, class, action, diagnostic)"
	    " VALUES ('dsn', 'hard', 'none', E'a\\nb')");
	assert_refused("INSERT INTO bounces (source, class, action)"
	    " VALUES ('dsn', 'complaint', 'none')");
}
END_TEST

/* Forged, unsigned, wrong domain, a message that was never sent: the
 * report is stored unattributed and changes nothing. */
START_TEST(test_unattributed)
{
	long long ann = delivery_of("ann@example.org", 1);
	char tok[TOKEN_COMPACT_TEXT_SIZE];
	struct intake_result res;
	struct bounce_report r;

	/* the sample's own (made-up) token */
	sample("postfix-user-unknown.eml", NULL, NULL, &r);
	intake(&r, &res);
	ck_assert(!res.attributed);
	ck_assert_int_eq(res.stored, 1);
	bounce_report_free(&r);
	/* a real token with one character changed */
	make_token(ann, (int64_t)time(NULL), tok);
	tok[10] = tok[10] == 'a' ? 'b' : 'a';
	sample("postfix-user-unknown.eml", "b-", tok, &r);
	intake(&r, &res);
	ck_assert(!res.attributed);
	bounce_report_free(&r);
	/* a real token at a domain that is not ours */
	make_token(ann, (int64_t)time(NULL), tok);
	w.conf.sender_bounce_domain = "bounces.example.com";
	sample("postfix-user-unknown.eml", "b-", tok, &r);
	intake(&r, &res);
	ck_assert(!res.attributed);
	bounce_report_free(&r);
	w.conf.sender_bounce_domain = "bounce.example.org";
	/* a real token issued long before the message was sent */
	make_token(ann, (int64_t)time(NULL) - 86400, tok);
	sample("postfix-user-unknown.eml", "b-", tok, &r);
	intake(&r, &res);
	ck_assert(!res.attributed);
	bounce_report_free(&r);
	/* a real token for a delivery that does not exist */
	make_token(ann + 100, (int64_t)time(NULL), tok);
	sample("postfix-user-unknown.eml", "b-", tok, &r);
	intake(&r, &res);
	ck_assert(!res.attributed);
	bounce_report_free(&r);

	ck_assert_int_eq(count("SELECT count(*) FROM bounces WHERE attributed_by"
	    " IS NULL AND subscriber_id IS NULL AND delivery_id IS NULL"
	    " AND action = 'none' AND class = 'hard'"), 5);
	ck_assert_int_eq(count("SELECT count(*) FROM suppressions"), 0);
	ck_assert_int_eq(count("SELECT count(*) FROM ledger WHERE action = 'bounce'"), 0);
	ck_assert_int_eq(count("SELECT count(*) FROM deliveries"
	    " WHERE bounced_at IS NOT NULL"), 0);
}
END_TEST

/* Soft bounces count once per message; the limit needs soft_limit of
 * them over at least soft_span; then an entry that expires. */
START_TEST(test_soft_limit)
{
	long long d[3];
	struct intake_result res;
	int order[] = { 0, 1, 1, 2 };

	testhelp_sql_exec(conn, "INSERT INTO campaigns (name, state, subject,"
	    " from_address, body_text, scheduled_at, created_by) VALUES"
	    " ('summer', 'sending', 'News', 'news@example.org', 'x', now(), 't'),"
	    " ('autumn', 'sending', 'News', 'news@example.org', 'x', now(), 't')");
	testhelp_sql_exec(conn, "INSERT INTO deliveries (campaign_id,"
	    " subscriber_id, list_id, domain, state, sent_at)"
	    " SELECT c, id, 1, 'example.org', 'sent', now() FROM subscribers,"
	    " generate_series(2, 3) AS c WHERE email = 'ann@example.org'");
	for (int i = 0; i < 3; i++)
		d[i] = delivery_of("ann@example.org", i + 1);
	w.conf.bounce_soft_span = 2;
	for (size_t i = 0; i < sizeof(order) / sizeof(order[0]); i++) {
		char tok[TOKEN_COMPACT_TEXT_SIZE];
		struct bounce_report r;

		make_token(d[order[i]], (int64_t)time(NULL), tok);
		sample("postfix-mailbox-full.eml", "b-", tok, &r);
		intake(&r, &res);
		bounce_report_free(&r);
		ck_assert(res.attributed);
		ck_assert_int_eq(res.soft, 1);
		ck_assert_int_eq(res.suppressed, 0);
	}
	/* three messages, but all within the span */
	ck_assert_int_eq(count("SELECT count(*) FROM bounces WHERE class = 'soft'"
	    " AND action = 'soft-counted'"), 4);
	ck_assert_int_eq(count("SELECT count(*) FROM suppressions"), 0);
	testhelp_sleep_ms(2100);
	{
		char tok[TOKEN_COMPACT_TEXT_SIZE];
		struct bounce_report r;

		make_token(d[2], (int64_t)time(NULL), tok);   /* the third again */
		sample("postfix-mailbox-full.eml", "b-", tok, &r);
		intake(&r, &res);
		bounce_report_free(&r);
	}
	ck_assert_int_eq(res.suppressed, 1);
	ck_assert_int_eq(count("SELECT count(*) FROM suppressions WHERE value ="
	    " 'ann@example.org' AND reason = 'soft-bounce-limit'"
	    " AND expires_at BETWEEN now() + interval '89 days'"
	    "                    AND now() + interval '91 days'"), 1);
	ck_assert_int_eq(count("SELECT count(*) FROM bounces WHERE action = 'soft-limit'"), 1);
	/* no ledger event, no subscription change for a soft bounce */
	ck_assert_int_eq(count("SELECT count(*) FROM ledger WHERE action = 'bounce'"), 0);
	ck_assert_int_eq(count("SELECT count(*) FROM deliveries"
	    " WHERE bounced_at IS NOT NULL"), 0);
}
END_TEST

/* Policy refusals are the sender's fault: stored, nobody suppressed. */
START_TEST(test_policy)
{
	long long bob = delivery_of("bob@example.net", 1);
	char tok[TOKEN_COMPACT_TEXT_SIZE];
	struct intake_result res;
	struct bounce_report r;

	make_token(bob, (int64_t)time(NULL), tok);
	sample("microsoft-policy.eml", "b-", tok, &r);
	intake(&r, &res);
	bounce_report_free(&r);
	ck_assert(res.attributed);
	ck_assert_int_eq(res.policy, 1);
	ck_assert_int_eq(res.suppressed, 0);
	ck_assert_int_eq(count("SELECT count(*) FROM bounces WHERE class = 'policy'"
	    " AND action = 'none' AND delivery_id = %lld", bob), 1);
	ck_assert_int_eq(count("SELECT count(*) FROM suppressions"), 0);
	ck_assert_int_eq(count("SELECT count(*) FROM ledger WHERE action = 'bounce'"), 0);
}
END_TEST

static void
assert_complaint_effect(const char *email)
{
	ck_assert_int_eq(count("SELECT count(*) FROM subscriptions x JOIN subscribers s"
	    " ON s.id = x.subscriber_id WHERE s.email = '%s'"
	    " AND x.status <> 'unsubscribed'", email), 0);
	ck_assert_int_eq(count("SELECT count(*) FROM suppressions WHERE value = '%s'"
	    " AND reason = 'complaint'", email), 1);
	ck_assert_int_eq(count("SELECT count(*) FROM deliveries d JOIN subscribers s"
	    " ON s.id = d.subscriber_id WHERE s.email = '%s'"
	    " AND d.complained_at IS NOT NULL", email), 1);
}

/* A complaint through the VERP sender: every subscription ended with
 * its ledger event, a complaint entry, complained_at; again: nothing. */
START_TEST(test_complaint_verp)
{
	long long ann = delivery_of("ann@example.org", 1);
	char tok[TOKEN_COMPACT_TEXT_SIZE];
	struct intake_result res;
	struct bounce_report r;

	make_token(ann, (int64_t)time(NULL), tok);
	sample("arf-yahoo.eml", "b-", tok, &r);
	ck_assert_int_eq(r.kind, BOUNCE_KIND_ARF);
	intake(&r, &res);
	ck_assert(res.attributed);
	ck_assert_str_eq(res.attributed_by, "verp");
	ck_assert_int_eq(res.complaints, 1);
	ck_assert_int_eq(res.unsubscribed, 2);
	ck_assert_int_eq(res.suppressed, 1);
	assert_complaint_effect("ann@example.org");
	ck_assert_int_eq(count("SELECT count(*) FROM ledger WHERE action = 'complaint'"
	    " AND channel = 'complaint' AND status_after = 'unsubscribed'"
	    " AND status_before = 'confirmed' AND list_id IS NOT NULL"), 2);
	ck_assert_int_eq(count("SELECT count(*) FROM bounces WHERE source = 'arf'"
	    " AND class = 'complaint' AND action = 'complaint'"), 1);
	/* bob is untouched */
	ck_assert_int_eq(count("SELECT count(*) FROM subscriptions x JOIN subscribers s"
	    " ON s.id = x.subscriber_id WHERE s.email = 'bob@example.net'"
	    " AND x.status = 'confirmed'"), 1);

	intake(&r, &res);
	bounce_report_free(&r);
	ck_assert_int_eq(res.unsubscribed, 0);
	ck_assert_int_eq(res.suppressed, 0);
	ck_assert_int_eq(count("SELECT count(*) FROM ledger WHERE action = 'complaint'"), 2);
	ck_assert_int_eq(count("SELECT count(*) FROM suppressions"), 1);
	ck_assert_int_eq(count("SELECT count(*) FROM bounces WHERE action = 'already'"), 1);
	assert_ledger_valid();
}
END_TEST

/* The sample arf-msgid-only.eml with its Message-ID left part and
 * domain replaced, parsed and taken in; the report's result in *res. */
static void
complaint_by_msgid(const char *left, const char *domain,
    struct intake_result *res)
{
	char *text = sample_text("arf-msgid-only.eml"), *edited, id[256];
	struct bounce_report r;

	snprintf(id, sizeof(id), "<%s@%s>", left, domain);
	edited = replace_all(text, "<c12.rx2kq7mzvd4hb6wuc3tnfj5ypeals7gixo2dq4vnkm6"
	    "zhbw3@example.org>", id);
	ck_assert_msg(strcmp(edited, text) != 0, "the sample's Message-ID moved");
	bounce_parse(edited, strlen(edited), NULL, &r);
	ck_assert_int_eq(r.kind, BOUNCE_KIND_ARF);
	ck_assert_int_eq(r.verp.kind, BOUNCE_TOKEN_NONE);
	intake(&r, res);
	bounce_report_free(&r);
	free(edited);
	free(text);
}

/* A redacted complaint found through our signed Message-ID
 * (<cCAMPAIGN.TOKEN@FROMDOMAIN>); nobody through the old unsigned form
 * (anybody can write one), a forged or altered token, another
 * campaign, another domain, another purpose, the wrong time. */
START_TEST(test_complaint_message_id)
{
	long long bob = delivery_of("bob@example.net", 1);
	int64_t now = (int64_t)time(NULL);
	char good[TOKEN_COMPACT_TEXT_SIZE], early[TOKEN_COMPACT_TEXT_SIZE];
	char notice[TOKEN_COMPACT_TEXT_SIZE], bad[TOKEN_COMPACT_TEXT_SIZE];
	char left[8][128];
	struct {
		const char *left;
		const char *domain;
	} refused[] = {
		{ left[0], "example.org" },     /* old form: c1.dBOB.ISSUED */
		{ left[1], "example.com" },     /* not the campaign's domain */
		{ left[2], "example.org" },     /* another campaign */
		{ left[3], "example.org" },     /* one character changed */
		{ left[4], "example.org" },     /* issued 2 hours before */
		{ left[5], "example.org" },     /* a notice token */
		{ left[6], "example.org" },     /* a test send's form */
	};
	struct intake_result res;

	make_token(bob, now, good);
	make_token(bob, now - 7200, early);
	make_token_for(TOKEN_NOTICE, bob, now, notice);
	snprintf(bad, sizeof(bad), "%s", good);
	bad[20] = bad[20] == 'a' ? 'b' : 'a';
	snprintf(left[0], sizeof(left[0]), "c1.d%lld.%" PRIx64, bob,
	    (uint64_t)now);
	snprintf(left[1], sizeof(left[1]), "c1.%s", good);
	snprintf(left[2], sizeof(left[2]), "c2.%s", good);
	snprintf(left[3], sizeof(left[3]), "c1.%s", bad);
	snprintf(left[4], sizeof(left[4]), "c1.%s", early);
	snprintf(left[5], sizeof(left[5]), "c1.%s", notice);
	snprintf(left[6], sizeof(left[6]), "c1.t%llx.%" PRIx64,
	    (unsigned long long)bob, (uint64_t)now);
	snprintf(left[7], sizeof(left[7]), "c1.%s", good);
	for (size_t i = 0; i < sizeof(refused) / sizeof(refused[0]); i++) {
		complaint_by_msgid(refused[i].left, refused[i].domain, &res);
		ck_assert_msg(!res.attributed, "case %zu attributed by %s", i,
		    res.attributed_by);
	}
	ck_assert_int_eq(count("SELECT count(*) FROM suppressions"), 0);
	ck_assert_int_eq(count("SELECT count(*) FROM subscriptions"
	    " WHERE status = 'unsubscribed'"), 0);
	ck_assert_int_eq(count("SELECT count(*) FROM bounces WHERE attributed_by"
	    " IS NULL AND action = 'none' AND class = 'complaint'"), 7);

	/* the signed one, as compose makes it: upper case is the same */
	for (char *c = left[7]; *c != '\0'; c++)
		*c = (char)toupper((unsigned char)*c);
	left[7][0] = 'c';
	complaint_by_msgid(left[7], "Example.ORG", &res);
	ck_assert(res.attributed);
	ck_assert_str_eq(res.attributed_by, "message-id");
	ck_assert_int_eq(res.delivery_id, bob);
	assert_complaint_effect("bob@example.net");
	ck_assert_int_eq(count("SELECT count(*) FROM bounces WHERE attributed_by"
	    " = 'message-id' AND delivery_id = %lld AND campaign_id = 1", bob), 1);
	/* ann is untouched */
	ck_assert_int_eq(count("SELECT count(*) FROM subscriptions x JOIN"
	    " subscribers s ON s.id = x.subscriber_id WHERE s.email ="
	    " 'ann@example.org' AND x.status = 'confirmed'"), 2);
	/* a Message-ID never attributes a DSN, signed or not */
	{
		char *text = sample_text("exim-dsn.eml"), *edited, id[128];
		struct bounce_report r;

		snprintf(id, sizeof(id), "c1.%s@example.org", good);
		edited = replace_all(text, "c12.d3461.673c7d40@example.org", id);
		bounce_parse(edited, strlen(edited), NULL, &r);
		ck_assert_str_eq(r.msgid.token, good);
		intake(&r, &res);
		ck_assert(!res.attributed);
		bounce_report_free(&r);
		free(edited);
		free(text);
	}
}
END_TEST

/* End to end: the Message-ID compose gives a delivery is the signed
 * form (campaign, then the delivery's bounce token) and attributes a
 * redacted complaint about it to that delivery; a test send's is not. */
START_TEST(test_complaint_composed_message_id)
{
	long long bob = delivery_of("bob@example.net", 1);
	struct campaign_list lists[] = { { .id = 1, .name = "news" } };
	struct campaign c = { .id = 1, .name = "spring", .subject = "News",
	    .from_name = "", .from_address = "news@example.org",
	    .body_text = "Hello. {{ unsubscribe_url }} {{ sender.postal_address }}",
	    .lists = lists,
	    .nlists = 1 };
	struct compose_recipient rcpt = { .delivery_id = (uint64_t)bob,
	    .subscriber_id = testhelp_subscriber_id(conn, "bob@example.net"),
	    .list_id = 1, .email = "bob@example.net" };
	char envelope[COMPOSE_ENVELOPE_MAX], left[128], *at;
	const char *id;
	struct intake_result res;
	struct token_compact t;
	struct assent_err err;
	struct compose *cp;
	struct buf out;

	w.conf.http_base_url = "https://lists.example.org";
	w.conf.sender_postal_address = "1 Main Street, Example";
	w.conf.sender_organisation = "Example";
	ck_assert_msg(compose_new(&c, &w.conf, w.signer, &cp, &err) == 0, "%s",
	    err.msg);
	buf_init(&out);
	ck_assert_msg(compose_message(cp, &rcpt, time(NULL), &out, envelope,
	    &err) == 0, "%s", err.msg);
	id = strstr(out.data, "\r\nMessage-ID: <");
	ck_assert_ptr_nonnull(id);
	id += strlen("\r\nMessage-ID: <");
	at = strchr(id, '@');
	ck_assert_ptr_nonnull(at);
	ck_assert_uint_le((size_t)(at - id), MIME_ID_LEFT_MAX);
	snprintf(left, sizeof(left), "%.*s", (int)(at - id), id);
	ck_assert_msg(strncmp(left, "c1.", 3) == 0 && strlen(left) ==
	    3 + TOKEN_COMPACT_TEXT_LEN, "Message-ID left part %s", left);
	ck_assert_msg(token_compact_verify(w.signer, left + 3, TOKEN_BOUNCE,
	    (int64_t)time(NULL), &t, &err) == 0, "%s", err.msg);
	ck_assert_int_eq((long long)t.delivery_id, bob);
	ck_assert_msg(strncmp(at, "@example.org>", 13) == 0, "%.20s", at);
	complaint_by_msgid(left, "example.org", &res);
	ck_assert(res.attributed);
	ck_assert_str_eq(res.attributed_by, "message-id");
	ck_assert_int_eq(res.delivery_id, bob);
	assert_complaint_effect("bob@example.net");

	/* a test send: random, unsigned, not taken for anybody's */
	rcpt.delivery_id = rcpt.subscriber_id = 0;
	ck_assert_msg(compose_message(cp, &rcpt, time(NULL), &out, envelope,
	    &err) == 0, "%s", err.msg);
	id = strstr(out.data, "\r\nMessage-ID: <c1.t");
	ck_assert_ptr_nonnull(id);
	buf_free(&out);
	compose_free(cp);
}
END_TEST

/* A report about a message older than bounce.token_max_age (its copy
 * travelled for months): stored, attributed, action none, nothing done
 * and not counted; within the age (the default when 0), acted on. */
START_TEST(test_stale_report)
{
	int64_t then = (int64_t)time(NULL) - 2 * 86400;
	char tok[TOKEN_COMPACT_TEXT_SIZE], left[128];
	struct intake_result res;
	struct bounce_report r;
	long long ann, bob;

	/* campaign 2, sent two days ago */
	testhelp_sql_exec(conn, "INSERT INTO campaigns (name, state, subject,"
	    " from_address, body_text, scheduled_at, created_by) VALUES"
	    " ('winter', 'sending', 'News', 'news@example.org', 'x', now(), 't')");
	testhelp_sql_exec(conn, "INSERT INTO deliveries (campaign_id,"
	    " subscriber_id, list_id, domain, state, sent_at)"
	    " SELECT 2, id, 1, split_part(email_key, '@', 2), 'sent',"
	    " now() - interval '2 days' FROM subscribers ORDER BY id");
	ann = delivery_of("ann@example.org", 2);
	bob = delivery_of("bob@example.net", 2);
	w.conf.bounce_token_max_age = 86400;
	/* a hard bounce */
	make_token(ann, then, tok);
	sample_edited("postfix-user-unknown.eml", "bob@example.net",
	    "ann@example.org", "b-", tok, &r);
	intake(&r, &res);
	bounce_report_free(&r);
	ck_assert(res.attributed);
	ck_assert_int_eq(res.stale, 1);
	ck_assert_int_eq(res.suppressed, 0);
	ck_assert_int_eq(count("SELECT count(*) FROM bounces WHERE delivery_id ="
	    " %lld AND attributed_by = 'verp' AND class = 'hard'"
	    " AND action = 'none'", ann), 1);
	/* a complaint by the signed Message-ID */
	make_token(bob, then, tok);
	snprintf(left, sizeof(left), "c2.%s", tok);
	complaint_by_msgid(left, "example.org", &res);
	ck_assert(res.attributed);
	ck_assert_int_eq(res.stale, 1);
	ck_assert_int_eq(count("SELECT count(*) FROM bounces WHERE delivery_id ="
	    " %lld AND class = 'complaint' AND action = 'none'", bob), 1);
	ck_assert_int_eq(count("SELECT count(*) FROM suppressions"), 0);
	ck_assert_int_eq(count("SELECT count(*) FROM ledger WHERE action IN"
	    " ('bounce', 'complaint')"), 0);
	ck_assert_int_eq(count("SELECT count(*) FROM subscriptions"
	    " WHERE status = 'unsubscribed'"), 0);
	ck_assert_int_eq(count("SELECT count(*) FROM deliveries WHERE bounced_at"
	    " IS NOT NULL OR complained_at IS NOT NULL"), 0);
	/* stale soft bounces are not counted toward the limit: a stale one
	 * and a fresh one (campaign 1) are one, not two */
	w.conf.bounce_soft_limit = 2;
	w.conf.bounce_soft_span = 0;
	make_token(ann, then, tok);
	sample("postfix-mailbox-full.eml", "b-", tok, &r);
	intake(&r, &res);
	bounce_report_free(&r);
	ck_assert_int_eq(res.stale, 1);
	make_token(delivery_of("ann@example.org", 1), (int64_t)time(NULL), tok);
	sample("postfix-mailbox-full.eml", "b-", tok, &r);
	intake(&r, &res);
	bounce_report_free(&r);
	ck_assert_int_eq(res.stale, 0);
	ck_assert_int_eq(res.soft, 1);
	ck_assert_int_eq(count("SELECT count(*) FROM suppressions"), 0);

	/* 0: the default, 30 days: the same report is acted on */
	w.conf.bounce_token_max_age = 0;
	w.conf.bounce_soft_limit = 3;
	make_token(ann, then, tok);
	sample_edited("postfix-user-unknown.eml", "bob@example.net",
	    "ann@example.org", "b-", tok, &r);
	intake(&r, &res);
	bounce_report_free(&r);
	ck_assert_int_eq(res.stale, 0);
	ck_assert_int_eq(res.suppressed, 1);
	ck_assert_int_eq(count("SELECT count(*) FROM suppressions WHERE value ="
	    " 'ann@example.org' AND reason = 'hard-bounce'"), 1);
	ck_assert_int_eq(count("SELECT count(*) FROM ledger WHERE action ="
	    " 'bounce'"), 1);
}
END_TEST

/* A DSN whose recipient blocks name other addresses than the token's
 * message went to (a forward, one report for several recipients): only
 * the person's own block is acted on; a single foreign failure only
 * as soft; several, none. */
START_TEST(test_foreign_recipient)
{
	long long ann = delivery_of("ann@example.org", 1);
	long long bob = delivery_of("bob@example.net", 1);
	char tok[TOKEN_COMPACT_TEXT_SIZE];
	struct intake_result res;
	struct bounce_report r;

	make_token(ann, (int64_t)time(NULL), tok);
	/* one failure, bob's: ann's token, soft for ann, never hard */
	sample("postfix-user-unknown.eml", "b-", tok, &r);
	intake(&r, &res);
	bounce_report_free(&r);
	ck_assert(res.attributed);
	ck_assert_int_eq(res.hard, 0);
	ck_assert_int_eq(res.soft, 1);
	ck_assert_int_eq(count("SELECT count(*) FROM bounces WHERE delivery_id ="
	    " %lld AND class = 'soft' AND action = 'soft-counted'"
	    " AND recipient = 'bob@example.net'", ann), 1);
	ck_assert_int_eq(count("SELECT count(*) FROM suppressions"), 0);

	/* three recipients, none ann: nobody */
	sample("postfix-mixed.eml", "b-", tok, &r);
	ck_assert_uint_eq(r.nrecipients, 3);
	intake(&r, &res);
	bounce_report_free(&r);
	ck_assert(!res.attributed);
	ck_assert_int_eq(res.stored, 3);
	ck_assert_int_eq(count("SELECT count(*) FROM bounces WHERE attributed_by"
	    " IS NULL AND action = 'none'"), 3);
	ck_assert_int_eq(count("SELECT count(*) FROM suppressions"), 0);

	/* Original-Recipient is ann's (case aside): hers, hard */
	sample_edited("postfix-user-unknown.eml", "rfc822;bob@example.net",
	    "rfc822;Ann@Example.ORG", "b-", tok, &r);
	ck_assert_str_eq(r.recipients[0].final_recipient, "bob@example.net");
	intake(&r, &res);
	bounce_report_free(&r);
	ck_assert(res.attributed);
	ck_assert_int_eq(res.hard, 1);
	ck_assert_int_eq(res.suppressed, 1);
	ck_assert_int_eq(count("SELECT count(*) FROM suppressions WHERE value ="
	    " 'ann@example.org' AND reason = 'hard-bounce'"), 1);

	/* three recipients, frank is bob (case aside): his acted on, the
	 * others stored unattributed */
	make_token(bob, (int64_t)time(NULL), tok);
	sample_edited("postfix-mixed.eml", "frank@example.net", "BOB@example.NET",
	    "b-", tok, &r);
	intake(&r, &res);
	bounce_report_free(&r);
	ck_assert(res.attributed);
	ck_assert_int_eq(res.soft, 1);
	ck_assert_int_eq(count("SELECT count(*) FROM bounces WHERE lower(recipient)"
	    " = 'bob@example.net' AND attributed_by = 'verp' AND delivery_id = %lld"
	    " AND action = 'soft-counted'", bob), 1);
	ck_assert_int_eq(count("SELECT count(*) FROM bounces WHERE recipient IN"
	    " ('erin@example.com', 'grace@example.org') AND attributed_by IS NULL"),
	    4);
	ck_assert_int_eq(count("SELECT count(*) FROM suppressions WHERE value ="
	    " 'erin@example.com'"), 0);
	ck_assert_int_eq(count("SELECT count(*) FROM suppressions"), 1);
	assert_ledger_valid();
}
END_TEST

/* An erased person: the report is stored with nothing personal, and
 * nothing is done; erasure blanks what was stored before. */
START_TEST(test_erased)
{
	struct audit_actor who = { "tester", "host" };
	long long ann = delivery_of("ann@example.org", 1);
	long long bob = delivery_of("bob@example.net", 1);
	struct intake_result res;
	struct bounce_report r;
	struct assent_err err;

	/* bob: a bounce and an unattributed report naming him, then erased */
	hard_dsn(bob, &res);
	sample("postfix-user-unknown.eml", NULL, NULL, &r);   /* bob@example.net */
	intake(&r, &res);
	bounce_report_free(&r);
	ck_assert_int_eq(count("SELECT count(*) FROM bounces"
	    " WHERE recipient = 'bob@example.net'"), 2);
	ck_assert_msg(rights_erase(conn, &w.gate, "bob@example.net", "asked",
	    &who, NULL, &err) == 0, "%s", err.msg);
	ck_assert_int_eq(count("SELECT count(*) FROM bounces WHERE recipient IS NULL"
	    " AND diagnostic IS NULL"), 2);
	ck_assert_int_eq(count("SELECT count(*) FROM bounces WHERE class = 'hard'"), 2);

	/* ann erased first, then her bounce arrives */
	ck_assert_msg(rights_erase(conn, &w.gate, "ann@example.org", "asked",
	    &who, NULL, &err) == 0, "%s", err.msg);
	hard_dsn(ann, &res);
	ck_assert(res.attributed);
	ck_assert_int_eq(res.suppressed, 0);
	ck_assert_int_eq(count("SELECT count(*) FROM bounces WHERE delivery_id = %lld"
	    " AND action = 'erased' AND recipient IS NULL AND diagnostic IS NULL",
	    ann), 1);
	ck_assert_int_eq(count("SELECT count(*) FROM suppressions WHERE kind = 'address'"
	    " AND removed_at IS NULL"), 0);
	ck_assert_int_eq(count("SELECT count(*) FROM ledger WHERE action = 'bounce'"
	    " AND subscriber_id = (SELECT subscriber_id FROM deliveries"
	    " WHERE id = %lld)", ann), 0);
	assert_ledger_valid();
}
END_TEST

/* A confirmation request's bounce (n- token) affects its person. */
START_TEST(test_notice_bounce)
{
	char tok[TOKEN_COMPACT_TEXT_SIZE];
	struct intake_result res;
	struct bounce_report r;
	long long notice;

	testhelp_sql_exec(conn, "INSERT INTO notices (subscriber_id, list_id,"
	    " state, sent_at) SELECT id, 1, 'sent', now() FROM subscribers"
	    " WHERE email = 'bob@example.net'");
	notice = count("SELECT max(id) FROM notices");
	/* a delivery's bounce token presented as a notice's: its MAC says
	 * bounce, so it attributes nothing */
	make_token(notice, (int64_t)time(NULL), tok);
	sample("postfix-user-unknown.eml", "n-", tok, &r);
	ck_assert_int_eq(r.verp.kind, BOUNCE_TOKEN_NOTICE);
	intake(&r, &res);
	bounce_report_free(&r);
	ck_assert(!res.attributed);
	make_token_for(TOKEN_NOTICE, notice, (int64_t)time(NULL), tok);
	sample("postfix-user-unknown.eml", "n-", tok, &r);
	ck_assert_int_eq(r.verp.kind, BOUNCE_TOKEN_NOTICE);
	intake(&r, &res);
	bounce_report_free(&r);
	ck_assert(res.attributed);
	ck_assert_int_eq(res.notice_id, notice);
	ck_assert_int_eq(res.delivery_id, 0);
	ck_assert_int_eq(count("SELECT count(*) FROM suppressions WHERE value ="
	    " 'bob@example.net' AND reason = 'hard-bounce'"), 1);
	ck_assert_int_eq(count("SELECT count(*) FROM ledger WHERE action = 'bounce'"
	    " AND source LIKE '%%confirmation request %lld%%'", notice), 1);
	ck_assert_int_eq(count("SELECT count(*) FROM bounces WHERE notice_id = %lld"
	    " AND delivery_id IS NULL AND campaign_id IS NULL"
	    " AND action = 'hard-bounce'", notice), 1);
	/* a b- token with the notice's id names delivery `notice`: ann's,
	 * sent at another time? here it is sent too, but it is another
	 * person: the prefix decides, never both */
	ck_assert_int_eq(count("SELECT count(*) FROM deliveries"
	    " WHERE bounced_at IS NOT NULL"), 0);
}
END_TEST

/* The subject export lists the person's bounces. */
START_TEST(test_export)
{
	struct audit_actor who = { "tester", "host" };
	struct intake_result res;
	struct assent_err err;
	json_t *doc, *b;

	hard_dsn(delivery_of("ann@example.org", 1), &res);
	ck_assert_msg(rights_export(conn, &w.gate, "ann@example.org", &who, &doc,
	    &err) == 0, "%s", err.msg);
	ck_assert_int_eq(json_array_size(json_object_get(doc, "bounces")), 1);
	b = json_array_get(json_object_get(doc, "bounces"), 0);
	ck_assert_str_eq(json_string_value(json_object_get(b, "class")), "hard");
	ck_assert_str_eq(json_string_value(json_object_get(b, "campaign")), "spring");
	ck_assert_str_eq(json_string_value(json_object_get(b, "status")), "5.1.1");
	json_decref(doc);
}
END_TEST

/* bounces ls: newest first, filtered by campaign and class. */
START_TEST(test_list)
{
	struct intake_query q = { .limit = 10 };
	long long bob = delivery_of("bob@example.net", 1);
	char tok[TOKEN_COMPACT_TEXT_SIZE];
	struct intake_result res;
	struct bounce_report r;
	struct assent_err err;
	json_t *rows;

	hard_dsn(delivery_of("ann@example.org", 1), &res);
	make_token(bob, (int64_t)time(NULL), tok);
	sample("microsoft-policy.eml", "b-", tok, &r);
	intake(&r, &res);
	bounce_report_free(&r);
	ck_assert_msg(intake_list(conn, &q, &rows, &err) == 0, "%s", err.msg);
	ck_assert_int_eq(json_array_size(rows), 2);
	ck_assert_str_eq(json_string_value(json_object_get(json_array_get(rows, 0),
	    "class")), "policy");
	ck_assert_str_eq(json_string_value(json_object_get(json_array_get(rows, 1),
	    "campaign")), "spring");
	json_decref(rows);
	q.class = "hard";
	q.campaign = "SPRING";
	ck_assert_int_eq(intake_list(conn, &q, &rows, &err), 0);
	ck_assert_int_eq(json_array_size(rows), 1);
	json_decref(rows);
	q.class = "bogus";
	ck_assert_int_eq(intake_list(conn, &q, &rows, &err), -1);
	ck_assert_int_eq(err.code, EX_DATAERR);
	q.class = NULL;
	q.campaign = "nope";
	ck_assert_int_eq(intake_list(conn, &q, &rows, &err), -1);
	ck_assert_int_eq(err.code, EX_DATAERR);
}
END_TEST

/* ---- a hostile reading: forged reports, erasure, our sender --------- */

/* ann (the attacker) read her own message's Message-ID,
 * <c1.dANN.ISSUED@example.org>. Delivery ids are consecutive and a
 * campaign goes out within minutes, so <c1.dBOB.ISSUED@example.org> is
 * a guess away. An ARF anyone can send, naming it, must not unsubscribe
 * bob: nothing in that Message-ID is signed. */
START_TEST(test_arf_forged_message_id)
{
	long long ann = delivery_of("ann@example.org", 1);
	long long bob = delivery_of("bob@example.net", 1);
	struct intake_result res;
	struct bounce_report r;
	char id[128];

	ck_assert(bob != ann);
	snprintf(id, sizeof(id), "c1.d%lld.%" PRIx64 "@example.org", bob,
	    (uint64_t)time(NULL));
	sample_edited("review-arf-forged-msgid.eml", "REVIEW-MSGID", id, NULL,
	    NULL, &r);
	intake(&r, &res);
	bounce_report_free(&r);
	ck_assert_msg(!res.attributed, "a forged ARF was attributed by %s to "
	    "delivery %lld", res.attributed_by, res.delivery_id);
	ck_assert_int_eq(count("SELECT count(*) FROM subscriptions x"
	    " JOIN subscribers s ON s.id = x.subscriber_id"
	    " WHERE s.email = 'bob@example.net' AND x.status = 'unsubscribed'"), 0);
	ck_assert_int_eq(count("SELECT count(*) FROM suppressions"
	    " WHERE value = 'bob@example.net'"), 0);
}
END_TEST

/* A DSN attributed to ann by her token names bob as its recipient (the
 * stored row keeps "the recipient address as the report gave it").
 * When bob is erased, no stored bounce may keep his address. */
START_TEST(test_erase_foreign_recipient)
{
	struct audit_actor who = { "tester", "host" };
	long long ann = delivery_of("ann@example.org", 1);
	char tok[TOKEN_COMPACT_TEXT_SIZE];
	struct intake_result res;
	struct bounce_report r;
	struct assent_err err;

	make_token(ann, (int64_t)time(NULL), tok);
	sample("postfix-user-unknown.eml", "b-", tok, &r);   /* bob@ */
	intake(&r, &res);
	bounce_report_free(&r);
	ck_assert(res.attributed);
	ck_assert_int_eq(count("SELECT count(*) FROM bounces"
	    " WHERE lower(recipient) = 'bob@example.net'"), 1);
	ck_assert_msg(rights_erase(conn, &w.gate, "bob@example.net", "asked",
	    &who, NULL, &err) == 0, "%s", err.msg);
	ck_assert_msg(count("SELECT count(*) FROM bounces"
	    " WHERE lower(recipient) = 'bob@example.net'"
	    " OR diagnostic ILIKE '%%bob%%'") == 0,
	    "the erased address stays in a bounce attributed to another person");
}
END_TEST

static const char *const sender_side_samples[] = {
	"review-exchange-sender-denied.eml",
	"review-sender-domain-words.eml",
	"review-no-ptr.eml",
};

/* Refusals of our sender as whole DSNs through intake: the healthy
 * recipient (ann, whose token it carries) is not suppressed. */
START_TEST(test_sender_side_samples)
{
	const char *file = sender_side_samples[_i];
	long long ann = delivery_of("ann@example.org", 1);
	char tok[TOKEN_COMPACT_TEXT_SIZE];
	struct intake_result res;
	struct bounce_report r;

	make_token(ann, (int64_t)time(NULL), tok);
	sample(file, "b-", tok, &r);
	intake(&r, &res);
	bounce_report_free(&r);
	ck_assert_msg(res.attributed, "%s: not attributed", file);
	ck_assert_msg(res.hard == 0 && res.suppressed == 0, "%s: %ld hard, %ld "
	    "suppressed for a refusal of our sender", file, res.hard,
	    res.suppressed);
	ck_assert_int_eq(count("SELECT count(*) FROM suppressions"
	    " WHERE value = 'ann@example.org'"), 0);
}
END_TEST

/* ---- the classifier for synchronous refusals -------------------------- */

START_TEST(test_refusal_class)
{
	static const struct {
		bool at_rcpt;
		int code;
		const char *enhanced, *reply;
		enum bounce_class want;
	} cases[] = {
		{ true, 550, "5.1.1", "550 5.1.1 <a@b>: user unknown", BOUNCE_CLASS_HARD },
		{ true, 554, "5.7.1", "554 5.7.1 rejected by policy", BOUNCE_CLASS_POLICY },
		{ true, 450, "4.2.0", "450 4.2.0 mailbox busy", BOUNCE_CLASS_SOFT },
		{ true, 552, "5.2.2", "552 5.2.2 mailbox full", BOUNCE_CLASS_SOFT },
		{ true, 550, "", "550 no such user here", BOUNCE_CLASS_HARD },
		{ false, 550, "5.7.1", "550 5.7.1 message content rejected",
		    BOUNCE_CLASS_POLICY },
		{ false, 550, "5.1.1", "550 5.1.1 user unknown", BOUNCE_CLASS_POLICY },
		{ false, 552, "5.2.2", "552 5.2.2 mailbox full", BOUNCE_CLASS_POLICY },
		{ false, 451, "4.3.0", "451 4.3.0 try later", BOUNCE_CLASS_SOFT },
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct intake_refusal f = { .delivery_id = 1,
		    .at_rcpt = cases[i].at_rcpt, .code = cases[i].code };

		snprintf(f.enhanced, sizeof(f.enhanced), "%s", cases[i].enhanced);
		snprintf(f.reply, sizeof(f.reply), "%s", cases[i].reply);
		ck_assert_msg(intake_refusal_class(&f, NULL) == cases[i].want,
		    "case %zu (%s): %s", i, cases[i].reply,
		    bounce_class_name(intake_refusal_class(&f, NULL)));
	}
}
END_TEST

static const struct {
	const char *status;
	int code;
	const char *diagnostic;
} sender_side[] = {
	/* Exchange's sender filter: our address, not the mailbox */
	{ "5.1.0", 550, "550 5.1.0 Sender denied as sender's email address is "
	    "on SenderFilterConfig list" },
	{ "5.1.0", 550, "550 5.1.0 <b-x@bounce.example.org>: Sender address "
	    "rejected: undeliverable address" },
	/* no precise status: the words "does not exist" are about us */
	{ "5.0.0", 550, "550 Sender domain bounce.example.org does not exist" },
	{ "", 550, "550 Sender domain bounce.example.org does not exist" },
	/* "does not have a" is about our sending host */
	{ "5.0.0", 550, "550 Client host 192.0.2.10 does not have a PTR record" },
	{ "", 554, "554 Your mail server does not have a valid reverse DNS" },
};

/* bounce_classify() (DSNs) and bounce_classify_reply() (RCPT refusals)
 * must not call a refusal of our sender hard: a hard bounce suppresses
 * the recipient at once, for a fault that is the sender's. */
START_TEST(test_sender_side_not_hard)
{
	size_t i = (size_t)_i;
	const char *why = "";
	enum bounce_class c;

	c = bounce_classify(BOUNCE_ACTION_FAILED, sender_side[i].status,
	    sender_side[i].code, sender_side[i].diagnostic, &why);
	ck_assert_msg(c != BOUNCE_CLASS_HARD, "DSN \"%s\" is %s (%s)",
	    sender_side[i].diagnostic, bounce_class_name(c), why);
	c = bounce_classify_reply(sender_side[i].code, sender_side[i].status,
	    sender_side[i].diagnostic, &why);
	ck_assert_msg(c != BOUNCE_CLASS_HARD, "RCPT \"%s\" is %s (%s)",
	    sender_side[i].diagnostic, bounce_class_name(c), why);
}
END_TEST

/* ---- the sender's synchronous path, end to end ------------------------- */

static char *
world_conf(void)
{
	char port[16], *extra, *path;

	/* no capture server started (the command's tests): the harness's */
	if (w.smtp_port > 0) {
		snprintf(port, sizeof(port), "%d", w.smtp_port);
		setenv("ASSENT_TEST_SMTP_PORT", port, 1);
	}
	extra = xasprintf(
	    "tokens = { keys_file = \"%s\"; };\n"
	    "sending = { concurrency = 1; batch = 10; retry_base = 1;"
	    " max_attempts = 3; };\n"
	    "sender = { from = \"news@example.org\"; "
	    "bounce_domain = \"bounce.example.org\"; "
	    "postal_address = \"1 Test Road, Testtown\"; };\n",
	    w.keys_path);
	path = testhelp_write_conf(testhelp_dsn, testhelp_free_port(), extra);
	free(extra);
	return path;
}

static void
wait_done(const char *name, const char *log)
{
	long deadline = testhelp_now_ms() + DONE_MS;

	for (;;) {
		if (count("SELECT count(*) FROM campaigns WHERE name = '%s'"
		    " AND state = 'done'", name) == 1)
			return;
		ck_assert_msg(testhelp_now_ms() < deadline, "not done; log:\n%s",
		    testhelp_file_read(log));
		testhelp_sleep_ms(100);
	}
}

START_TEST(test_synchronous_refusals)
{
	const char *lists[] = { "offers" };
	struct campaign_content c = { .lists = lists, .nlists = 1,
	    .subject = "Offers", .from = "Example <news@example.org>",
	    .text = "Hi\nLeave: {{ unsubscribe_url }}\n{{ sender.postal_address }}\n" };
	const char *people[] = { "reject0@example.org", "policy0@example.org",
	    "contentreject0@example.org", "flaky0@example.org", "fine@example.org" };
	struct assent_err err;
	char *conf, *log;
	json_t *report;
	pid_t pid;

	for (size_t i = 0; i < sizeof(people) / sizeof(people[0]); i++)
		testhelp_subscribe(conn, people[i], NULL, "offers");
	ck_assert_msg(campaign_create(conn, "fall", &c, "tester", NULL, &err) == 0,
	    "%s", err.msg);
	ck_assert_msg(campaign_schedule(conn, "fall", "now", false, 86400, &err)
	    == 0, "%s", err.msg);
	w.smtp_dir = xasprintf("%s/smtp", w.dir);
	ck_assert(mkdir(w.smtp_dir, 0700) == 0);
	w.smtp_port = testhelp_free_port();
	w.smtp_pid = testhelp_smtpd_start(w.smtp_dir, w.smtp_port, NULL);
	conf = world_conf();
	log = xasprintf("%s/assentd.log", w.dir);
	pid = testhelp_assentd_spawn(conf, "-f", log);
	wait_done("fall", log);
	testhelp_assentd_stop(pid, log);

#define ROW(email) "FROM bounces b JOIN subscribers s ON s.id = b.subscriber_id" \
	" WHERE s.email = '" email "' AND b.source = 'smtp'" \
	" AND b.attributed_by = 'smtp' AND b.delivery_id IS NOT NULL"
	/* 550 5.1.1 at RCPT: hard, the same effect as a DSN */
	ck_assert_int_eq(count("SELECT count(*) " ROW("reject0@example.org")
	    " AND b.class = 'hard' AND b.smtp_stage = 'rcpt' AND b.status = '5.1.1'"
	    " AND b.smtp_code = 550 AND b.action = 'hard-bounce'"
	    " AND b.recipient = 'reject0@example.org'"
	    " AND b.diagnostic LIKE '550 5.1.1 %%'"), 1);
	ck_assert_int_eq(count("SELECT count(*) FROM suppressions WHERE value ="
	    " 'reject0@example.org' AND reason = 'hard-bounce'"), 1);
	ck_assert_int_eq(count("SELECT count(*) FROM ledger l JOIN subscribers s"
	    " ON s.id = l.subscriber_id WHERE s.email = 'reject0@example.org'"
	    " AND l.action = 'bounce' AND l.channel = 'bounce'"), 1);
	ck_assert_int_eq(count("SELECT count(*) FROM deliveries d JOIN subscribers s"
	    " ON s.id = d.subscriber_id WHERE s.email = 'reject0@example.org'"
	    " AND d.state = 'failed' AND d.bounced_at IS NOT NULL"), 1);
	/* 554 5.7.1 at RCPT: policy, never suppressing */
	ck_assert_int_eq(count("SELECT count(*) " ROW("policy0@example.org")
	    " AND b.class = 'policy' AND b.smtp_stage = 'rcpt'"
	    " AND b.action = 'none'"), 1);
	/* 550 5.7.1 after the data: about the message */
	ck_assert_int_eq(count("SELECT count(*) " ROW("contentreject0@example.org")
	    " AND b.class = 'policy' AND b.smtp_stage = 'data'"
	    " AND b.action = 'none'"), 1);
	/* 450 the first time: a soft bounce, counted, then sent */
	ck_assert_int_eq(count("SELECT count(*) " ROW("flaky0@example.org")
	    " AND b.class = 'soft' AND b.smtp_stage = 'rcpt'"
	    " AND b.action = 'soft-counted'"), 1);
	ck_assert_int_eq(count("SELECT count(*) " ROW("fine@example.org")), 0);
#undef ROW
	ck_assert_int_eq(count("SELECT count(*) FROM suppressions"), 1);
	ck_assert_int_eq(count("SELECT count(*) FROM bounces"), 4);

	ck_assert_int_eq(campaign_report(conn, "fall", &report, &err), 0);
	ck_assert_int_eq(json_integer_value(json_object_get(json_object_get(report,
	    "bounces"), "hard")), 1);
	ck_assert_int_eq(json_integer_value(json_object_get(json_object_get(report,
	    "bounces"), "policy")), 2);
	ck_assert_int_eq(json_integer_value(json_object_get(json_object_get(report,
	    "bounces"), "soft")), 1);
	ck_assert_int_eq(json_integer_value(json_object_get(report, "bounced")), 1);
	json_decref(report);
	assert_ledger_valid();
	free(conf);
	free(log);
}
END_TEST

/* ---- the command: assent inbound ---------------------------------------- */

/* The database goes away in the middle of a report (a restart, a
 * failover, an administrator's pg_terminate_backend()). On a pipe
 * transport, anything but EX_TEMPFAIL (75) makes Postfix return the
 * message as undeliverable (a DSN has the null sender: it ends at the
 * postmaster, and assent never sees it again). */
START_TEST(test_cli_database_lost_is_tempfail)
{
	long long ann = delivery_of("ann@example.org", 1);
	char tok[TOKEN_COMPACT_TEXT_SIZE];
	char *conf = world_conf(), *text, *out = NULL, *errs = NULL;
	const char *argv[] = { getenv("ASSENT_BIN"), "-c", conf, "inbound",
	    NULL };
	int rc;

	ck_assert_msg(argv[0] != NULL, "ASSENT_BIN is not set");
	testhelp_sql_exec(conn, "CREATE FUNCTION review_drop_conn() RETURNS"
	    " trigger LANGUAGE plpgsql AS $$ BEGIN"
	    " PERFORM pg_terminate_backend(pg_backend_pid()); RETURN NEW; END $$");
	testhelp_sql_exec(conn, "CREATE TRIGGER review_drop_conn BEFORE INSERT"
	    " ON bounces FOR EACH ROW EXECUTE FUNCTION review_drop_conn()");
	make_token(ann, (int64_t)time(NULL), tok);
	text = retoken(sample_text("postfix-user-unknown.eml"),
	    "postfix-user-unknown.eml", "b-", tok);
	rc = testhelp_run(argv, text, &out, &errs);
	ck_assert_int_eq(count("SELECT count(*) FROM bounces"), 0);
	ck_assert_msg(rc == 75, "exit %d, not 75 (EX_TEMPFAIL): the MTA bounces "
	    "the message instead of retrying; stderr: %s", rc, errs);
	free(text);
	free(out);
	free(errs);
	free(conf);
}
END_TEST

/* A fresh Maildir (new/, cur/, tmp/) named name in the world's dir. */
static char *
maildir_make(const char *name)
{
	char *md = xasprintf("%s/%s", w.dir, name);
	const char *subs[] = { "", "/new", "/cur", "/tmp" };

	for (size_t i = 0; i < 4; i++) {
		char *d = xasprintf("%s%s", md, subs[i]);

		ck_assert(mkdir(d, 0700) == 0);
		free(d);
	}
	return md;
}

/* Bytes in every regular file of dir (0 when none). */
static long long
dir_bytes(const char *dir, int *files_r)
{
	struct dirent *e;
	long long total = 0;
	DIR *d = opendir(dir);

	*files_r = 0;
	if (d == NULL)
		return 0;
	while ((e = readdir(d)) != NULL) {
		char *p = xasprintf("%s/%s", dir, e->d_name);
		struct stat st;

		if (e->d_name[0] != '.' && stat(p, &st) == 0 &&
		    S_ISREG(st.st_mode)) {
			total += st.st_size;
			(*files_r)++;
		}
		free(p);
	}
	closedir(d);
	return total;
}

/* An 11 MB message that is no bounce goes to the reject folder: whole,
 * not its first 10 MB (the Maildir copy is unlinked afterwards). */
START_TEST(test_cli_huge_message_kept_whole)
{
	char *conf = world_conf(), *md = maildir_make("huge");
	char *reject = xasprintf("%s/reject", w.dir);
	char *path = xasprintf("%s/new/1732100000.1.review", md), *newdir;
	const char *argv[] = { getenv("ASSENT_BIN"), "-c", conf, "inbound",
	    "--maildir", md, "--reject", reject, NULL };
	char line[101];
	long long size, kept_new, kept_reject;
	int files_new, files_reject, rc;
	FILE *f;

	ck_assert_msg(argv[0] != NULL, "ASSENT_BIN is not set");
	ck_assert(mkdir(reject, 0700) == 0);
	ck_assert((f = fopen(path, "w")) != NULL);
	fputs("From: someone@example.com\nTo: b-nope@bounce.example.org\n"
	    "Subject: a very large attachment\n\n", f);
	memset(line, 'x', 99);
	line[99] = '\n';
	line[100] = '\0';
	for (int i = 0; i < 11 * 1024 * 1024 / 100; i++)
		fputs(line, f);
	ck_assert(fclose(f) == 0);
	newdir = xasprintf("%s/new", md);
	size = dir_bytes(newdir, &files_new);
	ck_assert(size > BOUNCE_INPUT_MAX);
	rc = testhelp_run(argv, NULL, NULL, NULL);
	ck_assert_int_eq(rc, 0);
	kept_new = dir_bytes(newdir, &files_new);
	kept_reject = dir_bytes(reject, &files_reject);
	ck_assert_msg(kept_new == size || kept_reject == size,
	    "a %lld-byte message: %lld bytes left in new/ (%d files), %lld in "
	    "the reject folder (%d files): the rest is lost", size, kept_new,
	    files_new, kept_reject, files_reject);
	free(newdir);
	free(path);
	free(reject);
	free(md);
	free(conf);
}
END_TEST

/* One entry of new/ that cannot be read (here a directory; an EIO or a
 * file being replaced does the same) must not stop every later message
 * from being handled, run after run. */
START_TEST(test_cli_maildir_one_bad_entry)
{
	char *conf = world_conf(), *md = maildir_make("bad");
	char *bad = xasprintf("%s/new/1732100000.0.review", md);
	char *good = xasprintf("%s/new/1732100001.1.review", md);
	char *text = sample_text("autoreply-x-autoreply.eml");
	const char *argv[] = { getenv("ASSENT_BIN"), "-c", conf, "inbound",
	    "--maildir", md, NULL };
	char *errs = NULL, *curdir;
	int files_cur, rc;

	ck_assert_msg(argv[0] != NULL, "ASSENT_BIN is not set");
	ck_assert(mkdir(bad, 0700) == 0);
	testhelp_file_write(good, text);
	rc = testhelp_run(argv, NULL, NULL, &errs);
	curdir = xasprintf("%s/cur", md);
	dir_bytes(curdir, &files_cur);
	free(curdir);
	ck_assert_msg(files_cur == 1, "exit %d, %d messages handled; stderr: %s",
	    rc, files_cur, errs);
	free(errs);
	free(text);
	free(good);
	free(bad);
	free(md);
	free(conf);
}
END_TEST

static Suite *
intake_suite(void)
{
	Suite *s = suite_create("intake");
	TCase *tc = tcase_create("reports");
	TCase *sync = tcase_create("synchronous");
	TCase *pure = tcase_create("classes");
	TCase *cli = tcase_create("command");

	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_set_timeout(tc, 30);
	tcase_add_test(tc, test_hard_bounce);
	tcase_add_test(tc, test_record_is_kept);
	tcase_add_test(tc, test_unattributed);
	tcase_add_test(tc, test_soft_limit);
	tcase_add_test(tc, test_policy);
	tcase_add_test(tc, test_complaint_verp);
	tcase_add_test(tc, test_complaint_message_id);
	tcase_add_test(tc, test_complaint_composed_message_id);
	tcase_add_test(tc, test_stale_report);
	tcase_add_test(tc, test_foreign_recipient);
	tcase_add_test(tc, test_erased);
	tcase_add_test(tc, test_notice_bounce);
	tcase_add_test(tc, test_export);
	tcase_add_test(tc, test_list);
	tcase_add_test(tc, test_arf_forged_message_id);
	tcase_add_test(tc, test_erase_foreign_recipient);
	tcase_add_loop_test(tc, test_sender_side_samples, 0,
	    sizeof(sender_side_samples) / sizeof(sender_side_samples[0]));
	suite_add_tcase(s, tc);
	tcase_add_checked_fixture(sync, setup, teardown);
	tcase_set_timeout(sync, 120);
	tcase_add_test(sync, test_synchronous_refusals);
	suite_add_tcase(s, sync);
	tcase_add_test(pure, test_refusal_class);
	tcase_add_loop_test(pure, test_sender_side_not_hard, 0,
	    sizeof(sender_side) / sizeof(sender_side[0]));
	suite_add_tcase(s, pure);
	tcase_add_checked_fixture(cli, setup, teardown);
	tcase_set_timeout(cli, 120);
	tcase_add_test(cli, test_cli_database_lost_is_tempfail);
	tcase_add_test(cli, test_cli_huge_message_kept_whole);
	tcase_add_test(cli, test_cli_maildir_one_bad_entry);
	suite_add_tcase(s, cli);
	return s;
}

int
main(void)
{
	testhelp_require_servers();
	signal(SIGPIPE, SIG_IGN);
	return testhelp_run_suite(intake_suite());
}

/*
 * check_signup: the subscribe form's library side (signup.h) and the
 * confirmation requests it queues (notice.h), against the real test
 * PostgreSQL and a real SMTP server (tests/harness/smtpd.py): what is
 * stored for each kind of address, the evidence in the ledger, the
 * same-transaction notice, the gate at claim time, the mail itself and
 * its link, the per-address limit, bounces and orphans.
 */
#include <sys/stat.h>
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "assent/conf.h"
#include "assent/consent.h"
#include "assent/keys.h"
#include "assent/lists.h"
#include "assent/notice.h"
#include "assent/optout.h"
#include "assent/rights.h"
#include "assent/sender.h"
#include "assent/signup.h"
#include "assent/subs.h"
#include "assent/suppress.h"
#include "assent/throttle.h"
#include "assent/token.h"
#include "assent/xmalloc.h"
#include "testhelp.h"

#define conn testhelp_conn
#define CONSENT "Yes, send me the news. I can leave at any time."

static struct world {
	char dir[64];
	char *keys, *smtp_dir, *conf_path;
	int smtp_port;
	pid_t smtp_pid;
	struct keys *k;
	struct suppress_ctx gate;
	struct token_signer *signer;
	struct assent_conf *conf;
	struct throttle *throttle;
} w;

static char *
write_conf(const char *signup)
{
	char port[16], *extra, *path;

	snprintf(port, sizeof(port), "%d", w.smtp_port);
	setenv("ASSENT_TEST_SMTP_PORT", port, 1);
	extra = xasprintf("tokens = { keys_file = \"%s\"; };\n"
	    "sender = { from = \"news@example.org\"; organisation = \"Example\";"
	    " bounce_domain = \"bounce.example.org\";"
	    " postal_address = \"1 Test Road, Testtown\"; };\n"
	    "signup = { %s };\n", w.keys, signup);
	path = testhelp_write_conf(testhelp_dsn, testhelp_free_port(), extra);
	free(extra);
	return path;
}

static void
setup(void)
{
	struct assent_err err;
	struct lists_change c = { .double_optin = -1, .form_consent = "v1",
	    .form_attrs = "city" };

	testhelp_fixture_db();
	memset(&w, 0, sizeof(w));
	strcpy(w.dir, "/tmp/assent-signup-XXXXXX");
	ck_assert(mkdtemp(w.dir) != NULL);
	testhelp_keys_make(w.dir, &w.keys, &w.k, &w.gate, &w.signer);
	w.smtp_dir = xasprintf("%s/smtp", w.dir);
	ck_assert(mkdir(w.smtp_dir, 0700) == 0);
	w.smtp_port = testhelp_free_port();
	w.conf_path = write_conf("");
	ck_assert_msg(conf_load(w.conf_path, &w.conf, &err) == 0, "%s", err.msg);
	ck_assert_int_eq(throttle_new(0, "", &w.throttle, &err), 0);
	ck_assert_msg(consent_text_add(conn, "v1", CONSENT, strlen(CONSENT), NULL,
	    "test", NULL, &err) == 0, "%s", err.msg);
	ck_assert_msg(consent_text_add(conn, "v2", "Newer words.", 12, NULL,
	    "test", NULL, &err) == 0, "%s", err.msg);
	ck_assert_int_eq(lists_create(conn, "news", "Monthly news", true, &err), 0);
	ck_assert_msg(lists_edit(conn, "news", &c, &err) == 0, "%s", err.msg);
	ck_assert_int_eq(lists_create(conn, "single", NULL, false, &err), 0);
	c.form_attrs = NULL;
	ck_assert_int_eq(lists_edit(conn, "single", &c, &err), 0);
	ck_assert_int_eq(lists_create(conn, "closed", NULL, true, &err), 0);
	w.smtp_pid = testhelp_smtpd_start(w.smtp_dir, w.smtp_port, NULL);
}

static void
teardown(void)
{
	testhelp_smtpd_stop(w.smtp_pid);
	throttle_free(w.throttle);
	conf_free(w.conf);
	token_signer_free(w.signer);
	keys_free(w.k);
	free(w.keys);
	free(w.smtp_dir);
	free(w.conf_path);
	testhelp_fixture_drop();
}

/* Add a suppression entry for input ("@domain" or an address). */
static void
suppress(const char *input, const char *reason)
{
	struct suppress_target t;
	struct suppress_new n = { reason, "test", "tester", NULL };
	struct assent_err err;
	long long id;
	bool added;

	ck_assert_msg(suppress_target_parse(&w.gate, input, false, &t, &err) == 0,
	    "%s", err.msg);
	ck_assert_msg(suppress_add(conn, &t, &n, &id, &added, &err) == 0, "%s",
	    err.msg);
}

/* A form for email on list, with the usual evidence. */
static struct signup_form
form(const char *list, const char *email)
{
	struct signup_form f = {
		.list = list, .email = email, .name = "Ann", .consent_text = "v1",
		.ip = "192.0.2.7", .user_agent = "Mozilla/5.0 (test)",
		.page = "https://www.example.org/join",
	};
	return f;
}

static enum signup_outcome
submit_ok(const struct signup_form *f)
{
	struct signup_result r;
	struct assent_err err;

	ck_assert_msg(signup_submit(conn, &w.gate, f, &r, &err) == 0, "%s", err.msg);
	return r.outcome;
}

static void
submit_refused(const struct signup_form *f, int code, const char *want)
{
	struct signup_result r;
	struct assent_err err;
	long subs = testhelp_query_long(conn, "SELECT count(*) FROM subscribers");

	ck_assert_int_eq(signup_submit(conn, &w.gate, f, &r, &err), -1);
	ck_assert_int_eq(err.code, code);
	ck_assert_msg(strstr(err.msg, want) != NULL, "\"%s\" lacks \"%s\"",
	    err.msg, want);
	ck_assert_int_eq(testhelp_query_long(conn, "SELECT count(*) FROM subscribers"),
	    subs);
}

static long
notices(const char *state)
{
	char sql[160];

	snprintf(sql, sizeof(sql), "SELECT count(*) FROM notices WHERE state = '%s'",
	    state);
	return testhelp_query_long(conn, sql);
}

/* One worker turn (notices first). */
static void
run_sender(void)
{
	struct sender *s;
	struct sender_stats st = { 0 };
	struct assent_err err;
	bool worked;

	ck_assert_msg(sender_new(conn, w.conf, &w.gate, w.signer, w.throttle, &s,
	    &err) == 0, "%s", err.msg);
	ck_assert_msg(sender_run_batch(s, &worked, &st, &err) == 0, "%s", err.msg);
	sender_free(s);
}

/* The confirmation link's token in msg (quoted-printable soft breaks
 * removed), into tok. */
static void
confirm_token(const char *msg, char tok[TOKEN_TEXT_SIZE])
{
	const char *p = strstr(msg, "https://news.example.org/c/");
	size_t n = 0;

	ck_assert_msg(p != NULL, "no confirm link in %s", msg);
	p += strlen("https://news.example.org/c/");
	while (n < TOKEN_TEXT_LEN && *p != '\0') {
		if (p[0] == '=' && p[1] == '\r' && p[2] == '\n') {
			p += 3;
			continue;
		}
		tok[n++] = *p++;
	}
	tok[n] = '\0';
}

/* ---- the happy path: form -> pending + ledger + notice -> mail -> link --- */

START_TEST(test_double_optin_end_to_end)
{
	struct signup_form f = form("News", "Ann@Example.org");
	struct token t;
	struct optout_result r;
	struct optout_evidence ev = { "confirm-link", "198.51.100.9", "Browser/2" };
	struct assent_err err;
	char tok[TOKEN_TEXT_SIZE], *msg, *log;

	f.attr_keys[0] = "city";
	f.attr_values[0] = "K\xc3\xb6ln";
	f.nattrs = 1;
	ck_assert_int_eq(submit_ok(&f), SIGNUP_PENDING);
	ck_assert_int_eq(testhelp_query_long(conn, "SELECT count(*) FROM subscriptions"
	    " WHERE status = 'pending'"), 1);
	/* the evidence, exactly */
	ck_assert_int_eq(testhelp_query_long(conn, "SELECT count(*) FROM ledger"
	    " WHERE action = 'subscribe' AND channel = 'web'"
	    " AND ip = '192.0.2.7' AND user_agent = 'Mozilla/5.0 (test)'"
	    " AND page = 'https://www.example.org/join'"
	    " AND consent_text_version = 'v1' AND consent_text_sha256 IS NOT NULL"
	    " AND source = 'subscribe form' AND status_after = 'pending'"
	    " AND basis = 'express'"), 1);
	ck_assert_int_eq(testhelp_query_long(conn, "SELECT count(*) FROM subscribers"
	    " WHERE email = 'Ann@example.org' AND name = 'Ann'"
	    " AND attrs->>'city' = 'K\xc3\xb6ln'"), 1);
	ck_assert_int_eq(notices("queued"), 1);

	run_sender();
	ck_assert_int_eq(notices("sent"), 1);
	msg = testhelp_smtpd_message(w.smtp_dir, 1);
	ck_assert_ptr_nonnull(msg);
	ck_assert_ptr_nonnull(strstr(msg, "\r\nTo: Ann <Ann@example.org>\r\n"));
	ck_assert_ptr_nonnull(strstr(msg, "\r\nSubject: Please confirm your "
	    "subscription to news\r\n"));
	ck_assert_ptr_nonnull(strstr(msg, "From: Example <news@example.org>\r\n"));
	ck_assert_ptr_null(strstr(msg, "List-Unsubscribe"));
	ck_assert_ptr_null(strstr(msg, "List-Id"));
	log = testhelp_smtpd_log(w.smtp_dir);
	ck_assert_msg(strstr(log, "\"mail_from\": \"n-") != NULL &&
	    strstr(log, "@bounce.example.org\"") != NULL, "%s", log);
	free(log);
	confirm_token(msg, tok);
	free(msg);
	ck_assert_msg(token_verify(w.signer, tok, TOKEN_CONFIRM, time(NULL),
	    w.conf->tokens_confirm_ttl, &t, &err) == 0, "%s: %s", tok, err.msg);
	ck_assert_uint_eq(t.subscriber_id, testhelp_subscriber_id(conn,
	    "ann@example.org"));
	ck_assert_uint_eq(t.list_id, testhelp_list_id(conn, "news"));
	ck_assert_int_eq(optout_confirm(conn, &t, &ev, &r, &err), 0);
	ck_assert(r.changed);
	ck_assert_int_eq(testhelp_query_long(conn, "SELECT count(*) FROM ledger"
	    " WHERE action = 'confirm' AND channel = 'confirm-link'"
	    " AND ip = '198.51.100.9' AND user_agent = 'Browser/2'"), 1);
	/* once confirmed, a form post for the same address does nothing */
	ck_assert_int_eq(submit_ok(&f), SIGNUP_QUIET);
	ck_assert_int_eq(testhelp_query_long(conn, "SELECT count(*) FROM ledger"), 2);
	ck_assert_int_eq(testhelp_query_long(conn, "SELECT count(*) FROM notices"), 1);
}
END_TEST

START_TEST(test_single_optin)
{
	struct signup_form f = form("single", "bo@example.org");

	ck_assert_int_eq(submit_ok(&f), SIGNUP_CONFIRMED);
	ck_assert_int_eq(testhelp_query_long(conn, "SELECT count(*) FROM subscriptions"
	    " WHERE status = 'confirmed'"), 1);
	ck_assert_int_eq(testhelp_query_long(conn, "SELECT count(*) FROM notices"), 0);
}
END_TEST

/* Pending again: another request, up to the limit, then nothing; one
 * still waiting in the queue absorbs the next. */
START_TEST(test_resend_limit)
{
	struct signup_form f = form("news", "cy@example.org");
	char *msg;

	ck_assert_int_eq(submit_ok(&f), SIGNUP_PENDING);
	ck_assert_int_eq(submit_ok(&f), SIGNUP_RESENT);
	ck_assert_int_eq(notices("queued"), 1);
	run_sender();
	for (int i = 1; i < NOTICE_PER_DAY; i++) {
		ck_assert_int_eq(submit_ok(&f), SIGNUP_RESENT);
		run_sender();
	}
	ck_assert_int_eq(notices("sent"), NOTICE_PER_DAY);
	ck_assert_int_eq(submit_ok(&f), SIGNUP_QUIET);
	ck_assert_int_eq(notices("queued"), 0);
	msg = testhelp_smtpd_message(w.smtp_dir, NOTICE_PER_DAY);
	ck_assert_ptr_nonnull(msg);
	free(msg);
	ck_assert_ptr_null(testhelp_smtpd_message(w.smtp_dir,
	    NOTICE_PER_DAY + 1));
	ck_assert_int_eq(testhelp_query_long(conn, "SELECT count(*) FROM ledger"), 1);
}
END_TEST

/* Suppressed or erased: nothing stored at all, not even the address. */
START_TEST(test_suppressed_quiet)
{
	struct signup_form f = form("news", "gone@example.org");

	suppress("gone@example.org", "manual");
	ck_assert_int_eq(submit_ok(&f), SIGNUP_QUIET);
	ck_assert_int_eq(testhelp_query_long(conn, "SELECT count(*) FROM subscribers"), 0);
	ck_assert_int_eq(testhelp_query_long(conn, "SELECT count(*) FROM notices"), 0);
	suppress("@blocked.example", "manual");
	f.email = "x@blocked.example";
	ck_assert_int_eq(submit_ok(&f), SIGNUP_QUIET);
	ck_assert_int_eq(testhelp_query_long(conn, "SELECT count(*) FROM subscribers"), 0);
}
END_TEST

/* A public form never rewrites a known person's name or attributes. */
START_TEST(test_existing_person_kept)
{
	struct signup_form f = form("news", "dee@example.org");

	testhelp_subscribe(conn, "dee@example.org", "Dee Original", "single");
	f.name = "Someone Else";
	f.attr_keys[0] = "city";
	f.attr_values[0] = "Elsewhere";
	f.nattrs = 1;
	ck_assert_int_eq(submit_ok(&f), SIGNUP_PENDING);
	ck_assert_int_eq(testhelp_query_long(conn, "SELECT count(*) FROM subscribers"
	    " WHERE name = 'Dee Original' AND attrs = '{}'"), 1);
}
END_TEST

START_TEST(test_resubscribe_after_unsubscribe)
{
	struct signup_form f = form("news", "eve@example.org");
	struct token t = { .purpose = TOKEN_UNSUBSCRIBE };
	struct optout_evidence ev = { "one-click", NULL, NULL };
	struct optout_result r;
	struct assent_err err;

	ck_assert_int_eq(submit_ok(&f), SIGNUP_PENDING);
	t.subscriber_id = testhelp_subscriber_id(conn, "eve@example.org");
	t.list_id = testhelp_list_id(conn, "news");
	t.issued_at = time(NULL);
	ck_assert_int_eq(optout_unsubscribe(conn, &t, false, &ev, &r, &err), 0);
	ck_assert_int_eq(submit_ok(&f), SIGNUP_PENDING);
	ck_assert_int_eq(testhelp_query_long(conn, "SELECT count(*) FROM ledger"
	    " WHERE action = 'resubscribe' AND channel = 'web'"
	    " AND status_before = 'unsubscribed' AND status_after = 'pending'"), 1);
}
END_TEST

/* What the form itself gets wrong: refused, nothing stored. */
START_TEST(test_form_refused)
{
	struct signup_form f = form("news", "fay@example.org");

	f.consent_text = "v2";
	submit_refused(&f, EX_DATAERR, "out of date");
	f.consent_text = NULL;
	submit_refused(&f, EX_DATAERR, "consent_text");
	f = form("news", "not an address");
	submit_refused(&f, EX_DATAERR, "the email address is not valid");
	f = form("news", "");
	submit_refused(&f, EX_DATAERR, "the email address is missing");
	f = form("news", "fay@example.org");
	f.attr_keys[0] = "plan";
	f.attr_values[0] = "gold";
	f.nattrs = 1;
	submit_refused(&f, EX_DATAERR, "does not take: attr.plan");
	f = form("news", "fay@example.org");
	f.name = "Fay\r\nBcc: x@example.org";
	submit_refused(&f, EX_DATAERR, "name");
	f = form("news", "fay@example.org");
	f.user_agent = "bad\001agent";
	submit_refused(&f, EX_DATAERR, "user agent");
	f = form("nope", "fay@example.org");
	submit_refused(&f, EX_NOUSER, "no such list");
	f = form("closed", "fay@example.org");
	submit_refused(&f, EX_NOUSER, "no such list");
	f = form("../etc", "fay@example.org");
	submit_refused(&f, EX_NOUSER, "no such list");
	ck_assert_int_eq(testhelp_query_long(conn, "SELECT count(*) FROM ledger"), 0);
}
END_TEST

/* The gate at claim time: suppressed after the sign-up, before the
 * worker ran: no mail. */
START_TEST(test_gate_at_claim)
{
	struct signup_form f = form("news", "gil@example.org");

	ck_assert_int_eq(submit_ok(&f), SIGNUP_PENDING);
	suppress("gil@example.org", "complaint");
	run_sender();
	ck_assert_int_eq(notices("suppressed"), 1);
	ck_assert_int_eq(testhelp_query_long(conn, "SELECT count(*) FROM notices"
	    " WHERE suppression_id IS NOT NULL AND detail = 'complaint'"), 1);
	ck_assert_ptr_null(testhelp_smtpd_message(w.smtp_dir, 1));
}
END_TEST

/* Confirmed another way before the worker ran: the request is skipped. */
START_TEST(test_skipped_when_settled)
{
	struct signup_form f = form("news", "hal@example.org");
	struct ledger_evidence ev = { .source = "desk", .operator_name = "tester" };
	struct subs_request req = { .email = "hal@example.org", .list = "news",
	    .channel = "cli", .evidence = &ev };
	struct assent_err err;
	bool changed;

	ck_assert_int_eq(submit_ok(&f), SIGNUP_PENDING);
	ck_assert_int_eq(subs_confirm(conn, &req, &changed, &err), 0);
	run_sender();
	ck_assert_int_eq(notices("skipped"), 1);
	ck_assert_ptr_null(testhelp_smtpd_message(w.smtp_dir, 1));
}
END_TEST

/* The relay says the mailbox does not exist: failed, and suppressed. */
START_TEST(test_hard_bounce)
{
	struct signup_form f = form("news", "reject-me@example.org");

	ck_assert_int_eq(submit_ok(&f), SIGNUP_PENDING);
	run_sender();
	ck_assert_int_eq(notices("failed"), 1);
	ck_assert_int_eq(testhelp_query_long(conn, "SELECT count(*) FROM suppressions"
	    " WHERE reason = 'hard-bounce' AND value = 'reject-me@example.org'"), 1);
	/* stored as a bounce of the request, with its ledger event, as a
	 * campaign message's refusal would be */
	ck_assert_int_eq(testhelp_query_long(conn, "SELECT count(*) FROM bounces"
	    " WHERE source = 'smtp' AND class = 'hard' AND notice_id IS NOT NULL"
	    " AND delivery_id IS NULL AND action = 'hard-bounce'"), 1);
	ck_assert_int_eq(testhelp_query_long(conn, "SELECT count(*) FROM ledger"
	    " WHERE action = 'bounce' AND channel = 'bounce'"), 1);
}
END_TEST

/* An expired link's fresh request: only for a pending subscription. */
START_TEST(test_confirm_again)
{
	struct signup_form f = form("news", "ida@example.org");
	struct signup_result r;
	struct assent_err err;
	uint64_t sid, lid = testhelp_list_id(conn, "news");

	ck_assert_int_eq(submit_ok(&f), SIGNUP_PENDING);
	run_sender();
	sid = testhelp_subscriber_id(conn, "ida@example.org");
	ck_assert_int_eq(signup_confirm_again(conn, &w.gate, sid, lid, &r, &err), 0);
	ck_assert_int_eq(r.outcome, SIGNUP_RESENT);
	ck_assert_int_eq(notices("queued"), 1);
	ck_assert_int_eq(notices("sent"), 1);
	/* a list it is not on, an unknown person: nothing */
	ck_assert_int_eq(signup_confirm_again(conn, &w.gate, sid,
	    testhelp_list_id(conn, "single"), &r, &err), 0);
	ck_assert_int_eq(r.outcome, SIGNUP_QUIET);
	ck_assert_int_eq(signup_confirm_again(conn, &w.gate, sid + 100, lid, &r,
	    &err), 0);
	ck_assert_int_eq(r.outcome, SIGNUP_QUIET);
	ck_assert_int_eq(notices("queued"), 1);
}
END_TEST

/* A notice in flight under a dead session becomes unknown, never
 * resent on its own; states only move forward. */
START_TEST(test_orphan_and_states)
{
	struct signup_form f = form("news", "jo@example.org");
	struct assent_err err;
	long n;

	ck_assert_int_eq(submit_ok(&f), SIGNUP_PENDING);
	ck_assert_int_eq(testhelp_query_long(conn, "WITH u AS (UPDATE notices"
	    " SET state = 'sending', sender_session = 424242 RETURNING 1)"
	    " SELECT count(*) FROM u"), 1);
	ck_assert_int_eq(sender_reap_orphans(conn, &n, &err), 0);
	ck_assert_int_eq(n, 1);
	ck_assert_int_eq(notices("unknown"), 1);
	ck_assert_int_eq(testhelp_query_long(conn, "UPDATE notices SET state = 'queued'"),
	    -1);
	run_sender();
	ck_assert_ptr_null(testhelp_smtpd_message(w.smtp_dir, 1));
}
END_TEST

/* Erasure: a bounced request's relay reply (it may quote the address)
 * is blanked, and a request still queued is never sent. */
START_TEST(test_erasure)
{
	struct signup_form f = form("news", "reject-zed@example.org");
	struct audit_actor who = { "tester", "host" };
	struct assent_err err;

	ck_assert_int_eq(submit_ok(&f), SIGNUP_PENDING);
	run_sender();
	ck_assert_int_eq(testhelp_query_long(conn, "SELECT count(*) FROM notices"
	    " WHERE detail LIKE '%reject-zed@example.org%'"), 1);
	f.email = "zoe@example.org";
	ck_assert_int_eq(submit_ok(&f), SIGNUP_PENDING);
	ck_assert_msg(rights_erase(conn, &w.gate, "reject-zed@example.org", "ticket",
	    &who, NULL, &err) == 0, "%s", err.msg);
	ck_assert_msg(rights_erase(conn, &w.gate, "zoe@example.org", "ticket",
	    &who, NULL, &err) == 0, "%s", err.msg);
	ck_assert_int_eq(testhelp_query_long(conn, "SELECT count(*) FROM notices"
	    " WHERE detail LIKE '%@example.org%'"), 0);
	run_sender();
	ck_assert_int_eq(notices("skipped"), 1);
	ck_assert_ptr_null(testhelp_smtpd_message(w.smtp_dir, 1));
	/* and the erased address signing up again is quiet */
	ck_assert_int_eq(submit_ok(&f), SIGNUP_QUIET);
	ck_assert_int_eq(testhelp_query_long(conn, "SELECT count(*) FROM subscribers"
	    " WHERE email IS NOT NULL"), 0);
}
END_TEST

/* The subject export lists the confirmation requests. */
START_TEST(test_export_lists_requests)
{
	struct signup_form f = form("news", "lu@example.org");
	struct audit_actor who = { "tester", "host" };
	struct assent_err err;
	json_t *doc, *m;

	ck_assert_int_eq(submit_ok(&f), SIGNUP_PENDING);
	run_sender();
	ck_assert_msg(rights_export(conn, &w.gate, "lu@example.org", &who, &doc,
	    &err) == 0, "%s", err.msg);
	ck_assert_int_eq(json_array_size(json_object_get(doc, "messages")), 1);
	m = json_array_get(json_object_get(doc, "messages"), 0);
	ck_assert_str_eq(json_string_value(json_object_get(m, "kind")),
	    "confirmation request");
	ck_assert_str_eq(json_string_value(json_object_get(m, "list")), "news");
	ck_assert_str_eq(json_string_value(json_object_get(m, "state")), "sent");
	ck_assert(json_is_string(json_object_get(m, "sent_at")));
	ck_assert(json_is_null(json_object_get(m, "campaign")));
	json_decref(doc);
}
END_TEST

/* Confirmed on implied consent that has lapsed: the form records the
 * fresh, express consent (resubscribe, pending again with its request). */
START_TEST(test_lapsed_implied_consent)
{
	struct signup_form f = form("news", "meg@example.org");
	struct ledger_evidence ev = { .source = "shop", .operator_name = "tester" };
	struct subs_request req = { .email = "meg@example.org", .list = "news",
	    .channel = "cli", .evidence = &ev, .suppress = &w.gate,
	    .basis = "implied", .basis_expires_at = "2999-01-01" };
	struct assent_err err;
	char status[16];
	bool changed;

	ck_assert_msg(subs_add(conn, &req, status, NULL, &err) == 0, "%s", err.msg);
	req.basis = req.basis_expires_at = NULL;
	ck_assert_int_eq(subs_confirm(conn, &req, &changed, &err), 0);
	ck_assert_int_eq(submit_ok(&f), SIGNUP_QUIET);  /* still valid */
	ck_assert_int_eq(testhelp_query_long(conn, "WITH u AS (UPDATE subscriptions"
	    " SET basis_expires_at = now() - interval '1 day' RETURNING 1)"
	    " SELECT count(*) FROM u"), 1);
	ck_assert_int_eq(submit_ok(&f), SIGNUP_PENDING);
	ck_assert_int_eq(testhelp_query_long(conn, "SELECT count(*) FROM subscriptions"
	    " WHERE status = 'pending' AND basis = 'express'"
	    " AND basis_expires_at IS NULL"), 1);
	ck_assert_int_eq(testhelp_query_long(conn, "SELECT count(*) FROM ledger"
	    " WHERE action = 'resubscribe' AND channel = 'web'"
	    " AND status_before = 'confirmed' AND basis = 'express'"), 1);
}
END_TEST

/* The CLI's subscribe on a double-opt-in list queues the request too. */
START_TEST(test_cli_add_queues)
{
	struct ledger_evidence ev = { .source = "desk", .operator_name = "tester" };
	struct subs_request req = { .email = "kai@example.org", .list = "news",
	    .channel = "cli", .evidence = &ev, .suppress = &w.gate };
	struct assent_err err;
	char status[16];

	ck_assert_msg(subs_add(conn, &req, status, NULL, &err) == 0, "%s", err.msg);
	ck_assert_str_eq(status, "pending");
	ck_assert_int_eq(notices("queued"), 1);
}
END_TEST

/* Templates: a broken file stops the notice sender with file, line and
 * column; a missing From too; a custom one is used. */
START_TEST(test_templates)
{
	struct notice_sender *ns;
	struct assent_conf *conf;
	struct assent_err err;
	char *tpl = xasprintf("%s/confirm.txt", w.dir), *path, *sig;
	FILE *fp = fopen(tpl, "w");
	json_t *attrs = json_pack("{s:s}", "city", "Oslo");
	struct notice_recipient r = { 7, 1, 1, "a@example.org", "A", "news", attrs };
	char envelope[256];
	struct buf b;

	fputs("Hi {{ nmae }}\n{{ confirm_url }}\n", fp);
	fclose(fp);
	sig = xasprintf("confirm_text = \"%s\";", tpl);
	path = write_conf(sig);
	ck_assert_int_eq(conf_load(path, &conf, &err), 0);
	ck_assert_int_eq(notice_sender_new(conf, &w.gate, w.signer, 1, &ns, &err), -1);
	ck_assert_int_eq(err.code, EX_CONFIG);
	ck_assert_msg(strstr(err.msg, "signup.confirm_text") != NULL &&
	    strstr(err.msg, "confirm.txt") != NULL &&
	    strstr(err.msg, "template line 1, column 7: unknown field") != NULL,
	    "%s", err.msg);
	conf_free(conf);
	free(path);
	fp = fopen(tpl, "w");
	fputs("Bitte: {{ confirm_url }} ({{ list }}, {{ attr.city | \"?\" }})\n", fp);
	fclose(fp);
	path = write_conf(sig);
	ck_assert_int_eq(conf_load(path, &conf, &err), 0);
	ck_assert_msg(notice_sender_new(conf, &w.gate, w.signer, 1, &ns, &err) == 0,
	    "%s", err.msg);
	buf_init(&b);
	ck_assert_int_eq(notice_compose(ns, &r, time(NULL), &b, envelope,
	    sizeof(envelope), &err), 0);
	ck_assert_ptr_nonnull(strstr(b.data, "Bitte: https://news.example.org/c/"));
	ck_assert_ptr_nonnull(strstr(b.data, "(news, Oslo)"));
	ck_assert_ptr_nonnull(strstr(envelope, "@bounce.example.org"));
	ck_assert(strncmp(envelope, "n-", 2) == 0);
	buf_free(&b);
	notice_sender_free(ns);
	conf_free(conf);
	free(path);
	free(sig);
	/* conf/confirm.txt is the built-in text, to copy and change */
	{
		struct buf built_in, shipped;
		char *c2 = xasprintf("confirm_text = \"%s/conf/confirm.txt\";",
		    getenv("ASSENT_SRCDIR"));
		time_t now = time(NULL);

		buf_init(&built_in);
		buf_init(&shipped);
		ck_assert_int_eq(notice_sender_new(w.conf, &w.gate, w.signer, 1, &ns,
		    &err), 0);
		ck_assert_int_eq(notice_compose(ns, &r, now, &built_in, envelope,
		    sizeof(envelope), &err), 0);
		notice_sender_free(ns);
		path = write_conf(c2);
		ck_assert_int_eq(conf_load(path, &conf, &err), 0);
		ck_assert_msg(notice_sender_new(conf, &w.gate, w.signer, 1, &ns,
		    &err) == 0, "%s", err.msg);
		ck_assert_int_eq(notice_compose(ns, &r, now, &shipped, envelope,
		    sizeof(envelope), &err), 0);
		ck_assert_str_eq(shipped.data, built_in.data);
		notice_sender_free(ns);
		conf_free(conf);
		free(path);
		free(c2);
		buf_free(&built_in);
		buf_free(&shipped);
	}
	/* no From anywhere */
	path = testhelp_write_conf(testhelp_dsn, testhelp_free_port(),
	    "sender = { bounce_domain = \"b.example.org\"; postal_address = \"x\"; };");
	ck_assert_int_eq(conf_load(path, &conf, &err), 0);
	ck_assert_int_eq(notice_sender_new(conf, &w.gate, w.signer, 1, &ns, &err), -1);
	ck_assert_msg(strstr(err.msg, "signup.from or sender.from") != NULL, "%s",
	    err.msg);
	conf_free(conf);
	free(path);
	free(tpl);
	json_decref(attrs);
}
END_TEST

static Suite *
signup_suite(void)
{
	Suite *s = suite_create("signup");
	TCase *tc = tcase_create("signup");

	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_set_timeout(tc, 60);
	tcase_add_test(tc, test_double_optin_end_to_end);
	tcase_add_test(tc, test_single_optin);
	tcase_add_test(tc, test_resend_limit);
	tcase_add_test(tc, test_suppressed_quiet);
	tcase_add_test(tc, test_existing_person_kept);
	tcase_add_test(tc, test_resubscribe_after_unsubscribe);
	tcase_add_test(tc, test_form_refused);
	tcase_add_test(tc, test_gate_at_claim);
	tcase_add_test(tc, test_skipped_when_settled);
	tcase_add_test(tc, test_hard_bounce);
	tcase_add_test(tc, test_confirm_again);
	tcase_add_test(tc, test_orphan_and_states);
	tcase_add_test(tc, test_cli_add_queues);
	tcase_add_test(tc, test_lapsed_implied_consent);
	tcase_add_test(tc, test_erasure);
	tcase_add_test(tc, test_export_lists_requests);
	tcase_add_test(tc, test_templates);
	suite_add_tcase(s, tc);
	return s;
}

int
main(void)
{
	testhelp_require_servers();
	return testhelp_run_suite(signup_suite());
}

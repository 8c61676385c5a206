/*
 * check_signup: the subscribe form's library side (signup.h) and the
 * confirmation requests it queues (notice.h), against the real test
 * PostgreSQL and a real SMTP server (tests/harness/smtpd.py): what is
 * stored for each kind of address, the evidence in the ledger, the
 * same-transaction notice, the gate at claim time, the mail itself and
 * its link, the per-address limit, bounces and orphans; and, from a
 * review, the promises under concurrency (a sign-up racing an erasure,
 * a relay reply written after the erasure, two sign-ups for one new
 * address, a database lost after the relay took a request) and a few
 * edge cases (the CLI at the limit, the form's answer whatever the
 * address's state, an attribute key PostgreSQL quotes).
 *
 * Concurrency is made deterministic with locks: a third connection
 * holds a table lock that the first transaction needs late, the second
 * is started, and the test waits (pg_stat_activity) until each is
 * blocked before it lets go. The concurrent parts run in child
 * processes with their own connections.
 */
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "assent/conf.h"
#include "assent/consent.h"
#include "assent/db.h"
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

/* A list named list with a subscribe form (consent v1, attrs). */
static void
open_form(const char *list, bool double_optin, const char *attrs)
{
	struct lists_change c = { .double_optin = -1, .form_consent = "v1",
	    .form_attrs = attrs };
	struct assent_err err;

	ck_assert_msg(lists_create(conn, list, NULL, double_optin, &err) == 0,
	    "%s", err.msg);
	ck_assert_msg(lists_edit(conn, list, &c, &err) == 0, "%s", err.msg);
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

/* The one number sql answers. */
static long
count(const char *sql)
{
	return testhelp_query_long(conn, sql);
}

/* A connection of its own, for a child process or a lock holder. */
static PGconn *
other_conn(void)
{
	PGconn *c = PQconnectdb(testhelp_dsn);

	if (PQstatus(c) != CONNECTION_OK) {
		fprintf(stderr, "connect: %s", PQerrorMessage(c));
		PQfinish(c);
		return NULL;
	}
	return c;
}

/* Wait until n other sessions of this database wait for a lock. */
static void
wait_blocked(long n)
{
	long deadline = testhelp_now_ms() + 10000;

	while (count("SELECT count(*) FROM pg_stat_activity WHERE datname ="
	    " current_database() AND wait_event_type = 'Lock'") < n) {
		ck_assert_msg(testhelp_now_ms() < deadline,
		    "never blocked: %ld sessions wanted", n);
		testhelp_sleep_ms(20);
	}
}

/* The exit status of child pid (within 20 s). */
static int
child_status(pid_t pid)
{
	int rc = testhelp_wait_exit(pid, 20000);

	ck_assert_msg(rc != -1, "child %d still running", (int)pid);
	return rc;
}

/* ---- children -------------------------------------------------------- */

/* Each runs one library call on a connection of its own and exits with
 * 0 for success (plus the outcome for a sign-up), 99 for a failure. */

static pid_t
child_erase(const char *email)
{
	pid_t pid = fork();

	ck_assert(pid != -1);
	if (pid == 0) {
		struct audit_actor who = { "tester", "host" };
		struct assent_err err;
		PGconn *c = other_conn();
		int rc;

		if (c == NULL)
			_exit(99);
		rc = rights_erase(c, &w.gate, email, "ticket", &who, NULL, &err);
		if (rc == -1)
			fprintf(stderr, "erase: %s\n", err.msg);
		PQfinish(c);
		_exit(rc == 0 ? 0 : 99);
	}
	return pid;
}

static pid_t
child_signup(const char *list, const char *email)
{
	pid_t pid = fork();

	ck_assert(pid != -1);
	if (pid == 0) {
		struct signup_form f = form(list, email);
		struct signup_result r;
		struct assent_err err;
		PGconn *c = other_conn();
		int rc;

		if (c == NULL)
			_exit(99);
		rc = signup_submit(c, &w.gate, &f, &r, &err);
		if (rc == -1)
			fprintf(stderr, "signup: %s\n", err.msg);
		PQfinish(c);
		_exit(rc == 0 ? (int)r.outcome : 99);
	}
	return pid;
}

/* One worker turn on a connection of its own: 0 when it went well, 1
 * when sender_run_batch() failed (the database, as the test wants), 99
 * when it could not start. */
static pid_t
child_sender(void)
{
	pid_t pid = fork();

	ck_assert(pid != -1);
	if (pid == 0) {
		struct sender_stats st = { 0 };
		struct assent_err err;
		struct sender *s;
		bool worked;
		PGconn *c = other_conn();
		int rc;

		if (c == NULL || sender_new(c, w.conf, &w.gate, w.signer, w.throttle,
		    &s, &err) == -1)
			_exit(99);
		rc = sender_run_batch(s, &worked, &st, &err);
		if (rc == -1)
			fprintf(stderr, "sender: %s\n", err.msg);
		sender_free(s);
		PQfinish(c);
		_exit(rc == 0 ? 0 : 1);
	}
	return pid;
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

/* ---- from the review: defects -------------------------------------------- */

/*
 * A sign-up racing an erasure of the same address. The sign-up checks
 * "erased or suppressed?" before it locks the subscriber; the erasure
 * holds that lock, commits its erasure entry and blanks the row; the
 * sign-up, let through, finds no row with the address any more and
 * makes a new subscriber: the erased person's address, name, IP and
 * user agent are stored again (and a request queued), though signup.h
 * says an erased address gets "nothing at all".
 */
START_TEST(test_signup_racing_erasure_stores_nothing)
{
	struct signup_form f = form("news", "pat@example.org");
	PGconn *holder;
	pid_t eraser, signer;
	int srs;

	ck_assert_int_eq(submit_ok(&f), SIGNUP_PENDING);
	/* the erasure will stop at its last table, its entry uncommitted */
	ck_assert_ptr_nonnull(holder = other_conn());
	testhelp_sql_exec(holder, "BEGIN");
	testhelp_sql_exec(holder, "LOCK TABLE test_sends IN ACCESS EXCLUSIVE MODE");
	eraser = child_erase("pat@example.org");
	wait_blocked(1);
	signer = child_signup("news", "pat@example.org");
	wait_blocked(2);        /* the sign-up waits for the subscriber's row */
	testhelp_sql_exec(holder, "COMMIT");
	PQfinish(holder);
	ck_assert_int_eq(child_status(eraser), 0);
	srs = child_status(signer);
	ck_assert_msg(srs != 99, "the sign-up failed");
	ck_assert_msg(count("SELECT count(*) FROM subscribers"
	    " WHERE email IS NOT NULL") == 0,
	    "the erased address is stored again (sign-up outcome %d):"
	    " %ld subscriber(s) with an address, %ld ledger event(s) with its"
	    " IP after the erasure", srs,
	    count("SELECT count(*) FROM subscribers WHERE email IS NOT NULL"),
	    count("SELECT count(*) FROM ledger WHERE ip IS NOT NULL"));
}
END_TEST

/*
 * A confirmation request in flight when its address is erased: the
 * relay's refusal ("550 5.1.1 <addr>: user unknown") is written into
 * notices.detail after the erasure blanked it, so the address outlives
 * the erasure (rights.c says the erasure blanks notices' detail because
 * replies quote the address).
 */
START_TEST(test_reply_after_erasure_not_kept)
{
	struct signup_form f = form("news", "slow-a@example.org");
	struct audit_actor who = { "tester", "host" };
	struct assent_err err;
	long deadline = testhelp_now_ms() + 10000;
	pid_t sender;

	ck_assert_int_eq(submit_ok(&f), SIGNUP_PENDING);
	f.email = "reject-b@example.org";
	ck_assert_int_eq(submit_ok(&f), SIGNUP_PENDING);
	sender = child_sender();
	/* both claimed and committed; the relay holds the first for 2 s */
	while (count("SELECT count(*) FROM notices WHERE state = 'sending'") < 2) {
		ck_assert_msg(testhelp_now_ms() < deadline, "never claimed");
		testhelp_sleep_ms(20);
	}
	testhelp_sleep_ms(300);
	ck_assert_msg(rights_erase(conn, &w.gate, "reject-b@example.org", "ticket",
	    &who, NULL, &err) == 0, "%s", err.msg);
	ck_assert_int_eq(child_status(sender), 0);
	ck_assert_int_eq(count("SELECT count(*) FROM notices WHERE state = 'failed'"),
	    1);
	ck_assert_msg(count("SELECT count(*) FROM notices"
	    " WHERE detail LIKE '%reject-b%'") == 0,
	    "the erased address is in notices.detail after the erasure");
}
END_TEST

/*
 * "assent sub add" on a double-opt-in list for a person who had
 * NOTICE_PER_DAY requests today: it answers "pending" and queues
 * nothing, and nobody is told that no confirmation request will go
 * (subs.h: pending "with its confirmation request queued").
 */
START_TEST(test_cli_add_at_limit_says_so)
{
	struct signup_form f = form("news", "max@example.org");
	struct ledger_evidence ev = { .source = "desk", .operator_name = "tester" };
	struct subs_request req = { .email = "max@example.org", .list = "more",
	    .channel = "cli", .evidence = &ev, .suppress = &w.gate };
	struct assent_err err;
	char status[16] = "";
	bool notice_queued = true;
	long queued;
	int rc;

	open_form("more", true, NULL);
	for (int i = 0; i < NOTICE_PER_DAY; i++) {
		ck_assert_int_ne(submit_ok(&f), SIGNUP_QUIET);
		/* as a worker would: a request still queued absorbs the next */
		count("WITH u AS (UPDATE notices SET state = 'sending',"
		    " sender_session = 1 WHERE state = 'queued' RETURNING id)"
		    " SELECT count(*) FROM u");
		count("WITH u AS (UPDATE notices SET state = 'sent', sent_at = now()"
		    " WHERE state = 'sending' RETURNING id) SELECT count(*) FROM u");
	}
	ck_assert_int_eq(count("SELECT count(*) FROM notices"), NOTICE_PER_DAY);
	rc = subs_add(conn, &req, status, &notice_queued, &err);
	queued = count("SELECT count(*) FROM notices");
	ck_assert_msg(queued == NOTICE_PER_DAY + 1 || rc != 0 ||
	    strcmp(status, "pending") != 0 || !notice_queued,
	    "sub add said \"%s\" (rc %d) but no confirmation request was queued"
	    " (%ld requests), and nothing says so", status, rc, queued);
	ck_assert_int_eq(queued, NOTICE_PER_DAY);
	ck_assert(!notice_queued);
}
END_TEST

/*
 * The same form (a user agent with a control character) is refused for
 * an address nobody knows and accepted quietly for a confirmed or a
 * suppressed one: the library's answer tells the address's state,
 * which signup.h says the caller must never be able to show. (assentd
 * cleans the user agent and the page first, so its form is not an
 * oracle today; any other caller is.)
 */
START_TEST(test_bad_evidence_refused_whatever_the_address)
{
	struct signup_form f;
	struct suppress_target t;
	struct suppress_new n = { "manual", "test", "tester", NULL };
	struct signup_result r;
	struct assent_err err;
	const char *addrs[] = { "new@example.org", "known@example.org",
	    "blocked@example.org" };
	int rcs[3];
	long long id;
	bool added;

	testhelp_subscribe(conn, "known@example.org", NULL, "single");
	ck_assert_int_eq(suppress_target_parse(&w.gate, "blocked@example.org",
	    false, &t, &err), 0);
	ck_assert_int_eq(suppress_add(conn, &t, &n, &id, &added, &err), 0);
	for (size_t i = 0; i < 3; i++) {
		f = form("single", addrs[i]);
		f.user_agent = "bad\001agent";
		rcs[i] = signup_submit(conn, &w.gate, &f, &r, &err);
	}
	ck_assert_int_eq(rcs[0], -1);
	ck_assert_msg(rcs[1] == rcs[0] && rcs[2] == rcs[0],
	    "new: %d, confirmed: %d, suppressed: %d", rcs[0], rcs[1], rcs[2]);
}
END_TEST

/*
 * An attribute key "null" (the schema and lists_edit() take it) comes
 * back from PostgreSQL's array text quoted ({"null"}), and
 * signup_parse_attrs() keeps the quotes: the form's attr.null is
 * refused and the GET form names the field attr."null".
 */
START_TEST(test_attr_key_null)
{
	struct lists_change c = { .double_optin = -1, .form_attrs = "city,null" };
	struct signup_form f = form("news", "nul@example.org");
	struct signup_list info;
	struct signup_result r;
	struct assent_err err;

	ck_assert_msg(lists_edit(conn, "news", &c, &err) == 0, "%s", err.msg);
	ck_assert_msg(signup_list_info(conn, "news", &info, &err) == 0, "%s",
	    err.msg);
	ck_assert_uint_eq(info.nattrs, 2);
	ck_assert_str_eq(info.attrs[0], "city");
	ck_assert_str_eq(info.attrs[1], "null");
	signup_list_info_free(&info);
	f.attr_keys[0] = "null";
	f.attr_values[0] = "x";
	f.nattrs = 1;
	ck_assert_msg(signup_submit(conn, &w.gate, &f, &r, &err) == 0, "%s",
	    err.msg);
}
END_TEST

/* ---- from the review: guards, what holds --------------------------------- */

/* Two sign-ups for one new address at once: one person, one
 * subscription, one ledger event, one request (the second finds the
 * first still queued); neither fails. */
START_TEST(test_two_signups_one_new_address)
{
	PGconn *holder;
	pid_t a, b;
	int ra, rb;

	ck_assert_ptr_nonnull(holder = other_conn());
	testhelp_sql_exec(holder, "BEGIN");
	testhelp_sql_exec(holder, "LOCK TABLE notices IN EXCLUSIVE MODE");
	a = child_signup("news", "twin@example.org");
	wait_blocked(1);        /* a: subscriber made, waits to queue */
	b = child_signup("news", "twin@example.org");
	wait_blocked(2);        /* b: waits for a's subscriber row */
	testhelp_sql_exec(holder, "COMMIT");
	PQfinish(holder);
	ra = child_status(a);
	rb = child_status(b);
	ck_assert_int_eq(ra, SIGNUP_PENDING);
	ck_assert_int_eq(rb, SIGNUP_RESENT);
	ck_assert_int_eq(count("SELECT count(*) FROM subscribers"), 1);
	ck_assert_int_eq(count("SELECT count(*) FROM subscriptions"), 1);
	ck_assert_int_eq(count("SELECT count(*) FROM ledger"), 1);
	ck_assert_int_eq(count("SELECT count(*) FROM notices"), 1);
}
END_TEST

/* The limit counts over all lists. */
START_TEST(test_limit_over_lists)
{
	const char *lists[] = { "news", "l2", "l3", "l4" };
	struct signup_form f;

	open_form("l2", true, NULL);
	open_form("l3", true, NULL);
	open_form("l4", true, NULL);
	for (size_t i = 0; i < 4; i++) {
		f = form(lists[i], "many@example.org");
		ck_assert_int_eq(submit_ok(&f), i < NOTICE_PER_DAY ? SIGNUP_PENDING :
		    SIGNUP_QUIET);
	}
	ck_assert_int_eq(count("SELECT count(*) FROM notices"), NOTICE_PER_DAY);
}
END_TEST

/* The database connection lost while the relay has the request: the
 * request stays 'sending', the reaper makes it unknown, and it is never
 * sent again on its own. */
START_TEST(test_db_lost_after_relay_never_twice)
{
	struct signup_form f = form("news", "slow-c@example.org");
	struct assent_err err;
	long deadline = testhelp_now_ms() + 10000, reaped;
	pid_t sender;
	char *m;

	ck_assert_int_eq(submit_ok(&f), SIGNUP_PENDING);
	sender = child_sender();
	while (count("SELECT count(*) FROM notices WHERE state = 'sending'") < 1) {
		ck_assert_msg(testhelp_now_ms() < deadline, "never claimed");
		testhelp_sleep_ms(20);
	}
	ck_assert_int_eq(count("SELECT count(*) FROM (SELECT pg_terminate_backend(pid)"
	    " FROM pg_stat_activity WHERE datname = current_database()"
	    " AND pid <> pg_backend_pid()) t"), 1);
	ck_assert_int_eq(child_status(sender), 1);
	ck_assert_ptr_nonnull(m = testhelp_smtpd_message(w.smtp_dir, 1));
	free(m);
	ck_assert_int_eq(count("SELECT count(*) FROM notices WHERE state = 'sending'"),
	    1);
	ck_assert_msg(sender_reap_orphans(conn, &reaped, &err) == 0, "%s", err.msg);
	ck_assert_int_eq(reaped, 1);
	ck_assert_int_eq(child_status(child_sender()), 0);
	ck_assert_ptr_null(testhelp_smtpd_message(w.smtp_dir, 2));
	ck_assert_int_eq(count("SELECT count(*) FROM notices WHERE state = 'unknown'"),
	    1);
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

	tc = tcase_create("review");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_set_timeout(tc, 60);
	tcase_add_test(tc, test_signup_racing_erasure_stores_nothing);
	tcase_add_test(tc, test_reply_after_erasure_not_kept);
	tcase_add_test(tc, test_cli_add_at_limit_says_so);
	tcase_add_test(tc, test_bad_evidence_refused_whatever_the_address);
	tcase_add_test(tc, test_attr_key_null);
	tcase_add_test(tc, test_two_signups_one_new_address);
	tcase_add_test(tc, test_limit_over_lists);
	tcase_add_test(tc, test_db_lost_after_relay_never_twice);
	suite_add_tcase(s, tc);
	return s;
}

int
main(void)
{
	testhelp_require_servers();
	return testhelp_run_suite(signup_suite());
}

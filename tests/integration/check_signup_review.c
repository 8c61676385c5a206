/*
 * check_signup_review: a review of the subscribe form (signup.h) and
 * its confirmation requests (notice.h), as failing tests for the
 * defects found and passing ones for the promises that hold under
 * concurrency: a sign-up racing an erasure, a relay reply written after
 * the erasure, the CLI subscribe at the per-address limit, the form's
 * answer depending on the address's state, an attribute key PostgreSQL
 * quotes; and, as guards, two sign-ups for one new address at once, the
 * limit over lists, and a database lost after the relay took a request.
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

static void
setup(void)
{
	struct assent_err err;
	char port[16], *extra;

	testhelp_fixture_db();
	memset(&w, 0, sizeof(w));
	strcpy(w.dir, "/tmp/assent-review-XXXXXX");
	ck_assert(mkdtemp(w.dir) != NULL);
	testhelp_keys_make(w.dir, &w.keys, &w.k, &w.gate, &w.signer);
	w.smtp_dir = xasprintf("%s/smtp", w.dir);
	ck_assert(mkdir(w.smtp_dir, 0700) == 0);
	w.smtp_port = testhelp_free_port();
	snprintf(port, sizeof(port), "%d", w.smtp_port);
	setenv("ASSENT_TEST_SMTP_PORT", port, 1);
	extra = xasprintf("tokens = { keys_file = \"%s\"; };\n"
	    "sender = { from = \"news@example.org\"; organisation = \"Example\";"
	    " bounce_domain = \"bounce.example.org\";"
	    " postal_address = \"1 Test Road, Testtown\"; };\n", w.keys);
	w.conf_path = testhelp_write_conf(testhelp_dsn, testhelp_free_port(), extra);
	free(extra);
	ck_assert_msg(conf_load(w.conf_path, &w.conf, &err) == 0, "%s", err.msg);
	ck_assert_int_eq(throttle_new(0, "", &w.throttle, &err), 0);
	ck_assert_msg(consent_text_add(conn, "v1", CONSENT, strlen(CONSENT), NULL,
	    "test", NULL, &err) == 0, "%s", err.msg);
	open_form("news", true, "city");
	open_form("single", false, NULL);
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

static struct signup_form
form(const char *list, const char *email)
{
	struct signup_form f = {
		.list = list, .email = email, .name = "Pat", .consent_text = "v1",
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

static void
run_sender(void)
{
	ck_assert_int_eq(child_status(child_sender()), 0);
}

/* ---- defects ----------------------------------------------------------- */

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

/* ---- guards: what holds ---------------------------------------------------- */

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
	run_sender();
	ck_assert_ptr_null(testhelp_smtpd_message(w.smtp_dir, 2));
	ck_assert_int_eq(count("SELECT count(*) FROM notices WHERE state = 'unknown'"),
	    1);
}
END_TEST

static Suite *
review_suite(void)
{
	Suite *s = suite_create("signup_review");
	TCase *tc = tcase_create("signup_review");

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
	return testhelp_run_suite(review_suite());
}

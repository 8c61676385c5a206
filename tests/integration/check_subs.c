/* Integration: subscribers, subscriptions and their ledger events */
#include <check.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "assent/consent.h"
#include "assent/db.h"
#include "assent/lists.h"
#include "assent/subs.h"
#include "testhelp.h"

#define conn testhelp_conn

static const struct ledger_evidence web_ev = {
	.source = "signup form", .operator_name = NULL, .ip = "2001:db8::7",
	.user_agent = "Mozilla/5.0 (X11)", .page = "/join", .consent_text_version = "v3",
};
static const struct ledger_evidence cli_ev = {
	.source = "signup desk", .operator_name = "tester",
};

static void
setup(void)
{
	struct assent_err err;

	testhelp_fixture_db();
	ck_assert_int_eq(consent_text_add(conn, "v3", "Yes, send me news.", 18, NULL,
	    "tester", NULL, &err), 0);
	ck_assert_int_eq(lists_create(conn, "news", NULL, false, &err), 0);
	ck_assert_int_eq(lists_create(conn, "letters", NULL, true, &err), 0);
}

static int
add(const char *email, const char *list, const struct ledger_evidence *ev,
    bool resubscribe, char status[16], struct assent_err *err)
{
	struct subs_request req = {
		.email = email, .list = list, .channel = ev == &cli_ev ? "cli" : "web",
		.resubscribe = resubscribe, .evidence = ev,
	};

	return subs_add(conn, &req, status, NULL, err);
}

static long
count(const char *sql)
{
	return testhelp_query_long(conn, sql);
}

START_TEST(test_single_optin_is_confirmed_with_event)
{
	struct assent_err err;
	char status[16];

	ck_assert_int_eq(add("a@example.org", "news", &cli_ev, false, status, &err), 0);
	ck_assert_str_eq(status, "confirmed");
	ck_assert_int_eq(count("SELECT count(*) FROM ledger WHERE action = 'subscribe'"
	    " AND channel = 'cli' AND status_before IS NULL AND status_after = 'confirmed'"
	    " AND operator = 'tester' AND source = 'signup desk'"
	    " AND at > now() - interval '1 minute'"), 1);
}
END_TEST

START_TEST(test_double_optin_is_pending_with_evidence)
{
	struct assent_err err;
	char status[16];

	ck_assert_int_eq(add("a@example.org", "letters", &web_ev, false, status, &err), 0);
	ck_assert_str_eq(status, "pending");
	ck_assert_int_eq(count("SELECT count(*) FROM ledger WHERE channel = 'web'"
	    " AND ip = '2001:db8::7' AND user_agent = 'Mozilla/5.0 (X11)'"
	    " AND page = '/join' AND consent_text_version = 'v3'"
	    " AND status_after = 'pending'"), 1);
}
END_TEST

START_TEST(test_duplicate_refused_and_nothing_changes)
{
	struct assent_err err;
	char status[16];

	ck_assert_int_eq(add("a@example.org", "news", &cli_ev, false, status, &err), 0);
	ck_assert_int_eq(add("A@Example.ORG", "news", &cli_ev, false, status, &err), -1);
	ck_assert_int_eq(err.code, EX_DATAERR);
	ck_assert_ptr_nonnull(strstr(err.msg, "already subscribed to news"));
	ck_assert_int_eq(count("SELECT count(*) FROM ledger"), 1);
	ck_assert_int_eq(count("SELECT count(*) FROM subscribers"), 1);
}
END_TEST

START_TEST(test_idn_forms_are_one_subscriber)
{
	struct assent_err err;
	char status[16];

	ck_assert_int_eq(add("b@Bücher.example", "news", &cli_ev, false, status, &err), 0);
	ck_assert_int_eq(add("b@xn--bcher-kva.example", "letters", &cli_ev, false,
	    status, &err), 0);
	ck_assert_int_eq(count("SELECT count(*) FROM subscribers"
	    " WHERE email = 'b@xn--bcher-kva.example'"), 1);
	ck_assert_int_eq(count("SELECT count(*) FROM subscriptions"), 2);
}
END_TEST

/* Every refusal leaves the database exactly as it was. */
static const struct {
	const char *email, *list, *source, *ip, *user_agent, *version, *why;
} refusals[] = {
	{ "not-an-address", "news", "s", NULL, NULL, NULL, "invalid address" },
	{ "a@example.org\r\nBcc: x@evil.example", "news", "s", NULL, NULL, NULL,
	  "invalid address" },
	{ "\"q\"@example.org", "news", "s", NULL, NULL, NULL, "quoted" },
	{ "a@example.org", "nolist", "s", NULL, NULL, NULL, "unknown list \"nolist\"" },
	{ "a@example.org", "bad list", "s", NULL, NULL, NULL, "invalid list name" },
	{ "a@example.org", "news", "", NULL, NULL, NULL, "source" },
	{ "a@example.org", "news", NULL, NULL, NULL, NULL, "source is required" },
	{ "a@example.org", "news", "two\nlines", NULL, NULL, NULL, "source" },
	{ "a@example.org", "news", "s", "300.1.1.1", NULL, NULL, "invalid IP" },
	{ "a@example.org", "news", "s", "example.org", NULL, NULL, "invalid IP" },
	{ "a@example.org", "news", "s", NULL, "UA\r\nX-Evil: 1", NULL, "user agent" },
	{ "a@example.org", "news", "s", NULL, NULL, "has space", "consent text" },
};

START_TEST(test_refusals_change_nothing)
{
	struct ledger_evidence ev = {
		.source = refusals[_i].source, .operator_name = "tester",
		.ip = refusals[_i].ip, .user_agent = refusals[_i].user_agent,
		.consent_text_version = refusals[_i].version,
	};
	struct subs_request req = {
		.email = refusals[_i].email, .list = refusals[_i].list,
		.channel = "cli", .evidence = &ev,
	};
	struct assent_err err;
	char status[16];

	ck_assert_int_eq(subs_add(conn, &req, status, NULL, &err), -1);
	ck_assert_int_eq(err.code, EX_DATAERR);
	ck_assert_msg(strstr(err.msg, refusals[_i].why) != NULL,
	    "message \"%s\" lacks \"%s\"", err.msg, refusals[_i].why);
	ck_assert_int_eq(count("SELECT count(*) FROM subscribers"), 0);
	ck_assert_int_eq(count("SELECT count(*) FROM ledger"), 0);
}
END_TEST

static int
confirm(const char *email, const char *list, bool *changed, struct assent_err *err)
{
	struct subs_request req = {
		.email = email, .list = list, .channel = "cli", .evidence = &cli_ev,
	};

	return subs_confirm(conn, &req, changed, err);
}

START_TEST(test_confirm_pending)
{
	struct assent_err err;
	char status[16];
	bool changed = false;

	ck_assert_int_eq(add("a@example.org", "letters", &web_ev, false, status, &err), 0);
	ck_assert_int_eq(confirm("a@example.org", "letters", &changed, &err), 0);
	ck_assert(changed);
	ck_assert_int_eq(count("SELECT count(*) FROM ledger WHERE action = 'confirm'"
	    " AND status_before = 'pending' AND status_after = 'confirmed'"), 1);
	ck_assert_int_eq(confirm("a@example.org", "letters", &changed, &err), 0);
	ck_assert(!changed);
	ck_assert_int_eq(count("SELECT count(*) FROM ledger"), 2);
}
END_TEST

START_TEST(test_confirm_refusals)
{
	struct assent_err err;
	char status[16];
	bool changed;

	ck_assert_int_eq(confirm("nobody@example.org", "letters", &changed, &err), -1);
	ck_assert_ptr_nonnull(strstr(err.msg, "no subscriber"));
	ck_assert_int_eq(add("a@example.org", "news", &cli_ev, false, status, &err), 0);
	ck_assert_int_eq(confirm("a@example.org", "letters", &changed, &err), -1);
	ck_assert_ptr_nonnull(strstr(err.msg, "not subscribed to letters"));
	ck_assert_int_eq(count("SELECT count(*) FROM ledger"), 1);
}
END_TEST

/* End a subscription the way later features will: status and event together. */
static void
unsubscribe_by_hand(void)
{
	static const char *const steps[] = {
		"BEGIN",
		"INSERT INTO ledger (subscriber_id, list_id, action, channel,"
		" status_before, status_after, source) SELECT subscriber_id, list_id,"
		" 'unsubscribe', 'one-click', status, 'unsubscribed', 'test'"
		" FROM subscriptions",
		"UPDATE subscriptions SET status = 'unsubscribed'",
		"COMMIT",
	};
	struct assent_err err;

	for (size_t i = 0; i < sizeof(steps) / sizeof(steps[0]); i++)
		ck_assert_msg(db_exec(conn, NULL, &err, steps[i], 0, NULL) == 0,
		    "%s", err.msg);
}

START_TEST(test_unsubscribed_needs_resubscribe)
{
	struct assent_err err;
	char status[16];
	bool changed;

	ck_assert_int_eq(add("a@example.org", "news", &cli_ev, false, status, &err), 0);
	unsubscribe_by_hand();
	ck_assert_int_eq(add("a@example.org", "news", &cli_ev, false, status, &err), -1);
	ck_assert_ptr_nonnull(strstr(err.msg, "unsubscribed from news"));
	ck_assert_ptr_nonnull(strstr(err.msg, "--resubscribe"));
	ck_assert_int_eq(confirm("a@example.org", "news", &changed, &err), -1);
	ck_assert_int_eq(count("SELECT count(*) FROM subscriptions"
	    " WHERE status = 'unsubscribed'"), 1);
	ck_assert_int_eq(add("a@example.org", "news", &cli_ev, true, status, &err), 0);
	ck_assert_int_eq(count("SELECT count(*) FROM ledger WHERE action = 'resubscribe'"
	    " AND status_before = 'unsubscribed' AND status_after = 'confirmed'"), 1);
}
END_TEST

START_TEST(test_show_profile)
{
	struct assent_err err;
	char status[16];
	json_t *p, *subs, *history;
	bool changed;

	ck_assert_int_eq(add("a@example.org", "letters", &web_ev, false, status, &err), 0);
	ck_assert_int_eq(confirm("a@example.org", "letters", &changed, &err), 0);
	ck_assert_int_eq(add("a@example.org", "news", &cli_ev, false, status, &err), 0);
	ck_assert_int_eq(subs_show(conn, "A@EXAMPLE.ORG", &p, &err), 0);
	ck_assert_str_eq(json_string_value(json_object_get(p, "email")), "a@example.org");
	ck_assert_ptr_nonnull(json_object_get(p, "name"));
	subs = json_object_get(p, "subscriptions");
	ck_assert_int_eq(json_array_size(subs), 2);
	ck_assert_str_eq(json_string_value(json_object_get(json_array_get(subs, 0),
	    "list")), "letters");
	ck_assert_str_eq(json_string_value(json_object_get(json_array_get(subs, 0),
	    "status")), "confirmed");
	history = json_object_get(p, "history");
	ck_assert_int_eq(json_array_size(history), 3);
	ck_assert_str_eq(json_string_value(json_object_get(json_array_get(history, 0),
	    "ip")), "2001:db8::7");
	ck_assert_str_eq(json_string_value(json_object_get(json_array_get(history, 1),
	    "action")), "confirm");
	json_decref(p);
	ck_assert_int_eq(subs_show(conn, "b@example.org", &p, &err), -1);
	ck_assert_ptr_nonnull(strstr(err.msg, "no subscriber b@example.org"));
}
END_TEST

/* Two processes subscribe one address at once: exactly one wins. */
START_TEST(test_concurrent_add_one_wins)
{
	int status, ok = 0;
	pid_t pids[4];

	for (int i = 0; i < 4; i++) {
		if ((pids[i] = fork()) == 0) {
			struct assent_err err;
			char st[16];
			PGconn *c;

			if (db_connect(testhelp_dsn, &c, &err) == -1)
				_exit(2);
			conn = c;
			_exit(add("race@example.org", "news", &cli_ev, false, st, &err)
			    == 0 ? 0 : 1);
		}
	}
	for (int i = 0; i < 4; i++) {
		waitpid(pids[i], &status, 0);
		ck_assert(WIFEXITED(status) && WEXITSTATUS(status) != 2);
		ok += WEXITSTATUS(status) == 0;
	}
	ck_assert_int_eq(ok, 1);
	ck_assert_int_eq(count("SELECT count(*) FROM ledger"), 1);
}
END_TEST

/* Text checked as UTF-8 is stored as UTF-8 whatever the client's
 * environment asks for. */
START_TEST(test_utf8_whatever_pgclientencoding)
{
	struct subs_request req = {
		.email = "z@example.org", .list = "news", .name = "Zo\u00eb \u20ac",
		.channel = "cli", .evidence = &cli_ev,
	};
	struct assent_err err;
	char status[16];
	PGconn *latin1;

	setenv("PGCLIENTENCODING", "LATIN1", 1);
	ck_assert_int_eq(db_connect(testhelp_dsn, &latin1, &err), 0);
	unsetenv("PGCLIENTENCODING");
	ck_assert_msg(subs_add(latin1, &req, status, NULL, &err) == 0, "%s", err.msg);
	db_close(latin1);
	ck_assert_int_eq(count("SELECT length(name) FROM subscribers"), 5);
}
END_TEST

int
main(void)
{
	Suite *s = suite_create("subs");
	TCase *tc = tcase_create("subs");

	testhelp_require_servers();
	tcase_add_checked_fixture(tc, setup, testhelp_fixture_drop);
	tcase_set_timeout(tc, 30);
	tcase_add_test(tc, test_single_optin_is_confirmed_with_event);
	tcase_add_test(tc, test_double_optin_is_pending_with_evidence);
	tcase_add_test(tc, test_duplicate_refused_and_nothing_changes);
	tcase_add_test(tc, test_idn_forms_are_one_subscriber);
	tcase_add_loop_test(tc, test_refusals_change_nothing, 0,
	    sizeof(refusals) / sizeof(refusals[0]));
	tcase_add_test(tc, test_confirm_pending);
	tcase_add_test(tc, test_confirm_refusals);
	tcase_add_test(tc, test_unsubscribed_needs_resubscribe);
	tcase_add_test(tc, test_show_profile);
	tcase_add_test(tc, test_concurrent_add_one_wins);
	tcase_add_test(tc, test_utf8_whatever_pgclientencoding);
	suite_add_tcase(s, tc);
	return testhelp_run_suite(s);
}

/* Integration: lists on a real PostgreSQL */
#include <check.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "assent/db.h"
#include "assent/lists.h"
#include "assent/subs.h"
#include "testhelp.h"

#define conn testhelp_conn

static const struct ledger_evidence cli_ev = {
	.source = "test", .operator_name = "tester",
};

static void
subscribe(const char *email, const char *list)
{
	struct subs_request req = {
		.email = email, .list = list, .channel = "cli", .evidence = &cli_ev,
	};
	struct assent_err err;
	char status[16];

	ck_assert_msg(subs_add(conn, &req, status, NULL, &err) == 0, "%s", err.msg);
}

START_TEST(test_create_and_show)
{
	struct assent_err err;
	json_t *list;

	ck_assert_int_eq(lists_create(conn, "news", "Weekly news", true, &err), 0);
	ck_assert_int_eq(lists_show(conn, "NEWS", &list, &err), 0);
	ck_assert_str_eq(json_string_value(json_object_get(list, "name")), "news");
	ck_assert_str_eq(json_string_value(json_object_get(list, "description")),
	    "Weekly news");
	ck_assert(json_is_true(json_object_get(list, "double_optin")));
	ck_assert_int_eq(json_integer_value(json_object_get(list, "pending")), 0);
	json_decref(list);
}
END_TEST

START_TEST(test_duplicate_name_refused_case_insensitively)
{
	struct assent_err err;

	ck_assert_int_eq(lists_create(conn, "news", NULL, false, &err), 0);
	ck_assert_int_eq(lists_create(conn, "News", NULL, false, &err), -1);
	ck_assert_int_eq(err.code, EX_DATAERR);
	ck_assert_ptr_nonnull(strstr(err.msg, "exists already"));
	ck_assert_int_eq(testhelp_query_long(conn, "SELECT count(*) FROM lists"), 1);
}
END_TEST

static const struct {
	const char *name, *description, *why;
} bad_lists[] = {
	{ "", NULL, "invalid list name" },
	{ "has space", NULL, "' '" },
	{ "tab\there", NULL, "'\\t'" },
	{ "cr\rhere", NULL, "'\\r'" },
	{ "nl\nhere", NULL, "'\\n'" },
	{ ".hidden", NULL, "invalid list name" },
	{ "-dash", NULL, "invalid list name" },
	{ "semi;colon", NULL, "';'" },
	{ "quote'd", NULL, "invalid list name" },
	{ "a123456789012345678901234567890123456789012345678901234567890123x",
	  NULL, "invalid list name" },
	{ "ok", "two\nlines", "description" },
	{ "ok", "bell\a", "description" },
};

START_TEST(test_bad_names_refused)
{
	struct assent_err err;

	ck_assert_int_eq(lists_create(conn, bad_lists[_i].name,
	    bad_lists[_i].description, false, &err), -1);
	ck_assert_int_eq(err.code, EX_DATAERR);
	ck_assert_msg(strstr(err.msg, bad_lists[_i].why) != NULL,
	    "message \"%s\" lacks \"%s\"", err.msg, bad_lists[_i].why);
	ck_assert_int_eq(testhelp_query_long(conn, "SELECT count(*) FROM lists"), 0);
}
END_TEST

START_TEST(test_unknown_list)
{
	struct assent_err err;
	char id[24];
	json_t *list;

	ck_assert_int_eq(lists_lookup(conn, "nope", id, NULL, &err), -1);
	ck_assert_int_eq(err.code, EX_DATAERR);
	ck_assert_ptr_nonnull(strstr(err.msg, "unknown list \"nope\""));
	ck_assert_int_eq(lists_show(conn, "nope", &list, &err), -1);
	ck_assert_int_eq(lists_remove(conn, "nope", true, &cli_ev, NULL, &err), -1);
	ck_assert_ptr_nonnull(strstr(err.msg, "unknown list"));
}
END_TEST

START_TEST(test_counts_by_status)
{
	struct assent_err err;
	json_t *all, *l;

	ck_assert_int_eq(lists_create(conn, "a", NULL, false, &err), 0);
	ck_assert_int_eq(lists_create(conn, "b", NULL, true, &err), 0);
	subscribe("x@example.org", "a");
	subscribe("y@example.org", "a");
	subscribe("x@example.org", "b");
	ck_assert_int_eq(lists_all(conn, &all, &err), 0);
	ck_assert_int_eq(json_array_size(all), 2);
	l = json_array_get(all, 0);
	ck_assert_str_eq(json_string_value(json_object_get(l, "name")), "a");
	ck_assert_int_eq(json_integer_value(json_object_get(l, "confirmed")), 2);
	l = json_array_get(all, 1);
	ck_assert_int_eq(json_integer_value(json_object_get(l, "pending")), 1);
	ck_assert_int_eq(json_integer_value(json_object_get(l, "confirmed")), 0);
	json_decref(all);
}
END_TEST

START_TEST(test_remove_refused_while_subscribed)
{
	struct assent_err err;

	ck_assert_int_eq(lists_create(conn, "news", NULL, false, &err), 0);
	subscribe("x@example.org", "news");
	ck_assert_int_eq(lists_remove(conn, "news", false, &cli_ev, NULL, &err), -1);
	ck_assert_int_eq(err.code, EX_DATAERR);
	ck_assert_ptr_nonnull(strstr(err.msg, "--force"));
	ck_assert_int_eq(testhelp_query_long(conn,
	    "SELECT count(*) FROM lists WHERE removed_at IS NULL"), 1);
}
END_TEST

START_TEST(test_remove_force_ends_subscriptions_with_events)
{
	struct assent_err err;
	long ended = -1;

	ck_assert_int_eq(lists_create(conn, "news", NULL, false, &err), 0);
	subscribe("x@example.org", "news");
	subscribe("y@example.org", "news");
	ck_assert_msg(lists_remove(conn, "news", true, &cli_ev, &ended, &err) == 0,
	    "%s", err.msg);
	ck_assert_int_eq(ended, 2);
	ck_assert_int_eq(testhelp_query_long(conn, "SELECT count(*) FROM ledger"
	    " WHERE action = 'unsubscribe' AND status_before = 'confirmed'"
	    " AND status_after = 'unsubscribed' AND operator = 'tester'"), 2);
	ck_assert_int_eq(testhelp_query_long(conn, "SELECT count(*) FROM subscriptions"
	    " WHERE status = 'unsubscribed'"), 2);
	/* The name is free again; the old list's history stays. */
	ck_assert_int_eq(lists_create(conn, "news", NULL, false, &err), 0);
	ck_assert_int_eq(testhelp_query_long(conn, "SELECT count(*) FROM lists"), 2);
}
END_TEST

START_TEST(test_remove_empty_list)
{
	struct assent_err err;
	long ended = -1;

	ck_assert_int_eq(lists_create(conn, "news", NULL, false, &err), 0);
	ck_assert_int_eq(lists_remove(conn, "news", false, &cli_ev, &ended, &err), 0);
	ck_assert_int_eq(ended, 0);
	ck_assert_int_eq(lists_remove(conn, "news", false, &cli_ev, &ended, &err), -1);
}
END_TEST

/* A removal must wait for a subscribe in flight, then see it. */
START_TEST(test_remove_waits_for_subscribe_in_flight)
{
	static const char *const subscribe_steps[] = {
		"BEGIN",
		"SELECT id FROM lists WHERE name = 'news' FOR SHARE",
		"INSERT INTO subscribers (email, email_key) VALUES ('a@x.org', 'a@x.org')",
		"INSERT INTO ledger (subscriber_id, list_id, action, channel,"
		" status_after, operator, source) SELECT s.id, l.id, 'subscribe', 'cli',"
		" 'confirmed', 't', 's' FROM subscribers s, lists l",
		"INSERT INTO subscriptions (subscriber_id, list_id, status)"
		" SELECT s.id, l.id, 'confirmed' FROM subscribers s, lists l",
	};
	struct assent_err err;
	PGconn *other;
	int status;
	pid_t pid;

	ck_assert_int_eq(lists_create(conn, "news", NULL, false, &err), 0);
	ck_assert_int_eq(db_connect(testhelp_dsn, &other, &err), 0);
	for (size_t i = 0; i < sizeof(subscribe_steps) / sizeof(subscribe_steps[0]); i++)
		ck_assert_msg(db_exec(other, NULL, &err, subscribe_steps[i], 0, NULL) == 0,
		    "%s", err.msg);
	if ((pid = fork()) == 0) {
		PGconn *c;

		if (db_connect(testhelp_dsn, &c, &err) == -1)
			_exit(2);
		_exit(lists_remove(c, "news", false, &cli_ev, NULL, &err) == 0 ? 0 : 1);
	}
	usleep(300 * 1000);     /* let the removal reach the lock */
	ck_assert_int_eq(db_exec(other, NULL, &err, "COMMIT", 0, NULL), 0);
	waitpid(pid, &status, 0);
	ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == 1,
	    "the removal went ahead with a subscriber it did not see");
	ck_assert_int_eq(testhelp_query_long(conn,
	    "SELECT count(*) FROM lists WHERE removed_at IS NULL"), 1);
	db_close(other);
}
END_TEST

int
main(void)
{
	Suite *s = suite_create("lists");
	TCase *tc = tcase_create("lists");

	testhelp_require_servers();
	tcase_add_checked_fixture(tc, testhelp_fixture_db, testhelp_fixture_drop);
	tcase_set_timeout(tc, 30);
	tcase_add_test(tc, test_create_and_show);
	tcase_add_test(tc, test_duplicate_name_refused_case_insensitively);
	tcase_add_loop_test(tc, test_bad_names_refused, 0,
	    sizeof(bad_lists) / sizeof(bad_lists[0]));
	tcase_add_test(tc, test_unknown_list);
	tcase_add_test(tc, test_counts_by_status);
	tcase_add_test(tc, test_remove_refused_while_subscribed);
	tcase_add_test(tc, test_remove_force_ends_subscriptions_with_events);
	tcase_add_test(tc, test_remove_empty_list);
	tcase_add_test(tc, test_remove_waits_for_subscribe_in_flight);
	suite_add_tcase(s, tc);
	return testhelp_run_suite(s);
}

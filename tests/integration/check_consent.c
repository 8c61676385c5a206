/* Integration: consent texts, consent basis and its expiry */
#include <check.h>
#include <stdlib.h>
#include <string.h>

#include "assent/consent.h"
#include "assent/db.h"
#include "assent/lists.h"
#include "assent/subs.h"
#include "testhelp.h"

#define conn testhelp_conn

static const char wording[] = "Yes, send me the weekly news. I can leave at any time.\n";

static void
setup(void)
{
	struct assent_err err;

	testhelp_fixture_db();
	ck_assert_int_eq(lists_create(conn, "news", NULL, false, &err), 0);
}

static long
count(const char *sql)
{
	return testhelp_query_long(conn, sql);
}

static int
add(const char *email, const char *version, const char *basis, const char *expires,
    struct assent_err *err)
{
	struct ledger_evidence ev = {
		.source = "test", .operator_name = "tester", .consent_text_version = version,
	};
	struct subs_request req = {
		.email = email, .list = "news", .channel = "cli", .evidence = &ev,
		.basis = basis, .basis_expires_at = expires,
	};
	char status[16];

	return subs_add(conn, &req, status, NULL, err);
}

START_TEST(test_text_stored_with_digest)
{
	struct assent_err err;
	char sha[65];
	json_t *t;

	ck_assert_int_eq(consent_text_add(conn, "2026-11", wording, strlen(wording),
	    "2026-11-01T00:00:00Z", "tester", sha, &err), 0);
	ck_assert_int_eq(strlen(sha), 64);
	ck_assert_int_eq(consent_text_show(conn, "2026-11", &t, &err), 0);
	ck_assert_str_eq(json_string_value(json_object_get(t, "body")), wording);
	ck_assert_str_eq(json_string_value(json_object_get(t, "sha256")), sha);
	ck_assert_str_eq(json_string_value(json_object_get(t, "effective_at")),
	    "2026-11-01T00:00:00Z");
	ck_assert(json_is_false(json_object_get(t, "used")));
	json_decref(t);
	/* the database checks the digest itself */
	ck_assert_int_eq(count("SELECT count(*) FROM consent_texts WHERE sha256 ="
	    " encode(sha256(convert_to(body, 'UTF8')), 'hex')"), 1);
}
END_TEST

START_TEST(test_texts_are_never_edited_or_removed_once_used)
{
	struct assent_err err;

	ck_assert_int_eq(consent_text_add(conn, "v1", wording, strlen(wording), NULL,
	    "tester", NULL, &err), 0);
	ck_assert_int_eq(consent_text_add(conn, "v1", "other", 5, NULL, "tester",
	    NULL, &err), -1);
	ck_assert_ptr_nonnull(strstr(err.msg, "exists already"));
	ck_assert_int_eq(db_exec(conn, NULL, &err, "UPDATE consent_texts SET body = 'x',"
	    " sha256 = encode(sha256('x'), 'hex')", 0, NULL), -1);
	ck_assert_ptr_nonnull(strstr(err.msg, "never edited"));
	ck_assert_int_eq(add("a@example.org", "v1", NULL, NULL, &err), 0);
	ck_assert_int_eq(db_exec(conn, NULL, &err, "DELETE FROM consent_texts", 0, NULL), -1);
	ck_assert_int_eq(count("SELECT count(*) FROM consent_texts"), 1);
}
END_TEST

static const struct {
	const char *body;
	const char *why;
} bad_bodies[] = {
	{ "", "1 to 100000 bytes" },
	{ "bell \a here", "control character 0x07" },
	{ "escape \x1b[31m", "control character 0x1b" },
	{ "bad \xc3\x28 utf-8", "UTF-8" },
};

START_TEST(test_bad_texts_refused)
{
	struct assent_err err;

	ck_assert_int_eq(consent_text_add(conn, "v1", bad_bodies[_i].body,
	    strlen(bad_bodies[_i].body), NULL, "tester", NULL, &err), -1);
	ck_assert_int_eq(err.code, EX_DATAERR);
	ck_assert_msg(strstr(err.msg, bad_bodies[_i].why) != NULL, "%s", err.msg);
	ck_assert_int_eq(count("SELECT count(*) FROM consent_texts"), 0);
}
END_TEST

START_TEST(test_too_long_text_refused)
{
	struct assent_err err;
	size_t len = CONSENT_TEXT_MAX + 1;
	char *body = malloc(len + 1);

	memset(body, 'a', len);
	body[len] = '\0';
	ck_assert_int_eq(consent_text_add(conn, "v1", body, len, NULL, "tester",
	    NULL, &err), -1);
	body[len - 1] = '\0';
	ck_assert_int_eq(consent_text_add(conn, "v1", body, len - 1, NULL, "tester",
	    NULL, &err), 0);
	free(body);
}
END_TEST

START_TEST(test_subscribing_needs_a_known_text)
{
	struct assent_err err;

	ck_assert_int_eq(add("a@example.org", "v9", NULL, NULL, &err), -1);
	ck_assert_int_eq(err.code, EX_DATAERR);
	ck_assert_ptr_nonnull(strstr(err.msg, "unknown consent text \"v9\""));
	ck_assert_int_eq(count("SELECT count(*) FROM subscriptions"), 0);
	/* and the database refuses an event naming an unknown text */
	ck_assert_int_eq(consent_text_add(conn, "v1", wording, strlen(wording), NULL,
	    "tester", NULL, &err), 0);
	ck_assert_int_eq(add("a@example.org", "v1", NULL, NULL, &err), 0);
	ck_assert_int_eq(db_exec(conn, NULL, &err, "INSERT INTO ledger (subscriber_id,"
	    " action, channel, source, consent_text_version) SELECT id, 'subscribe',"
	    " 'web', 's', 'v9' FROM subscribers", 0, NULL), -1);
}
END_TEST

static const struct {
	const char *basis, *expires, *why;
} bad_bases[] = {
	{ "implied", NULL, "needs an expiry" },
	{ "express", "2099-01-01", "does not expire" },
	{ NULL, "2099-01-01", "does not expire" },
	{ "implied", "2001-01-01", "has passed already" },
	{ "implied", "not a date", "expiry \"not a date\"" },
	{ "presumed", "2099-01-01", "unknown consent basis" },
};

START_TEST(test_bad_basis_refused)
{
	struct assent_err err;

	ck_assert_int_eq(add("a@example.org", NULL, bad_bases[_i].basis,
	    bad_bases[_i].expires, &err), -1);
	ck_assert_int_eq(err.code, EX_DATAERR);
	ck_assert_msg(strstr(err.msg, bad_bases[_i].why) != NULL, "%s", err.msg);
	ck_assert_int_eq(count("SELECT count(*) FROM subscriptions"), 0);
}
END_TEST

/* Implied consent is sendable until it lapses, then no longer, and the
 * reports show it as expired. */
START_TEST(test_implied_consent_expires)
{
	struct assent_err err;
	json_t *list, *profile;

	ck_assert_int_eq(add("a@example.org", NULL, "implied",
	    "2099-06-30T00:00:00Z", &err), 0);
	ck_assert_int_eq(add("b@example.org", NULL, NULL, NULL, &err), 0);
	ck_assert_int_eq(count("SELECT count(*) FROM subscriptions"
	    " WHERE basis = 'implied' AND basis_expires_at = '2099-06-30T00:00:00Z'"), 1);
	ck_assert_int_eq(count("SELECT count(*) FROM sendable_subscriptions"), 2);
	/* time passes */
	ck_assert_int_eq(db_exec(conn, NULL, &err, "UPDATE subscriptions"
	    " SET basis_expires_at = now() - interval '1 day' WHERE basis = 'implied'",
	    0, NULL), 0);
	ck_assert_int_eq(count("SELECT count(*) FROM sendable_subscriptions s"
	    " JOIN subscribers p ON p.id = s.subscriber_id"
	    " WHERE p.email = 'a@example.org'"), 0);
	ck_assert_int_eq(count("SELECT count(*) FROM sendable_subscriptions"), 1);
	ck_assert_int_eq(lists_show(conn, "news", &list, &err), 0);
	ck_assert_int_eq(json_integer_value(json_object_get(list, "expired")), 1);
	ck_assert_int_eq(json_integer_value(json_object_get(list, "confirmed")), 2);
	json_decref(list);
	ck_assert_int_eq(subs_show(conn, "a@example.org", &profile, &err), 0);
	ck_assert(json_is_true(json_object_get(json_array_get(json_object_get(profile,
	    "subscriptions"), 0), "expired")));
	json_decref(profile);
}
END_TEST

int
main(void)
{
	Suite *s = suite_create("consent");
	TCase *tc = tcase_create("consent");

	testhelp_require_servers();
	tcase_add_checked_fixture(tc, setup, testhelp_fixture_drop);
	tcase_set_timeout(tc, 30);
	tcase_add_test(tc, test_text_stored_with_digest);
	tcase_add_test(tc, test_texts_are_never_edited_or_removed_once_used);
	tcase_add_loop_test(tc, test_bad_texts_refused, 0,
	    sizeof(bad_bodies) / sizeof(bad_bodies[0]));
	tcase_add_test(tc, test_too_long_text_refused);
	tcase_add_test(tc, test_subscribing_needs_a_known_text);
	tcase_add_loop_test(tc, test_bad_basis_refused, 0,
	    sizeof(bad_bases) / sizeof(bad_bases[0]));
	tcase_add_test(tc, test_implied_consent_expires);
	suite_add_tcase(s, tc);
	return testhelp_run_suite(s);
}

/*
 * check_optout: unsubscribe and confirm through signed links, against
 * the real database: what changes, what is recorded, and that doing it
 * again changes nothing.
 */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "assent/consent.h"
#include "assent/db.h"
#include "assent/lists.h"
#include "assent/optout.h"
#include "assent/rights.h"
#include "assent/subs.h"
#include "assent/suppress.h"
#include "testhelp.h"

#define conn testhelp_conn

static const struct ledger_evidence cli_ev = {
	.source = "check_optout", .operator_name = "tester",
};
static const struct optout_evidence click = {
	.channel = "one-click", .ip = "192.0.2.7", .user_agent = "Mail/1.0",
};

static long
count(const char *sql)
{
	return testhelp_query_long(conn, sql);
}

static void
setup(void)
{
	struct assent_err err;

	testhelp_fixture_db();
	ck_assert_int_eq(lists_create(conn, "news", NULL, false, &err), 0);
	ck_assert_int_eq(lists_create(conn, "offers", NULL, false, &err), 0);
	ck_assert_int_eq(lists_create(conn, "club", NULL, true, &err), 0);
	testhelp_subscribe(conn, "ann@example.org", NULL, "news");           /* subscriber 1 */
	testhelp_subscribe(conn, "ann@example.org", NULL, "offers");
	testhelp_subscribe(conn, "bob@example.org", NULL, "news");           /* subscriber 2 */
}

static uint64_t
sub(const char *email)
{
	return testhelp_subscriber_id(conn, email);
}

static uint64_t
list(const char *name)
{
	return testhelp_list_id(conn, name);
}

/* Campaign 1, sending, with a delivery on list 1 for every subscriber. */
static void
campaign_sending(void)
{
	testhelp_sql_exec(conn, "INSERT INTO campaigns (name, state, subject,"
	    " from_address, body_text, scheduled_at, created_by) VALUES ('spring',"
	    " 'sending', 'News', 'news@example.org', 'x', now(), 'tester')");
	testhelp_sql_exec(conn, "INSERT INTO deliveries (campaign_id,"
	    " subscriber_id, list_id, domain)"
	    " SELECT 1, id, 1, 'example.org' FROM subscribers");
}

/* A token for subscriber sub and list (0: all lists). */
static struct token
tok(enum token_purpose p, uint64_t sub, uint64_t list, uint64_t campaign)
{
	struct token t = { .purpose = p, .subscriber_id = sub, .list_id = list,
	    .campaign_id = campaign, .all_lists = list == 0, .issued_at = 1 };

	return t;
}

START_TEST(test_describe_changes_nothing)
{
	struct token t = tok(TOKEN_UNSUBSCRIBE, sub("ann@example.org"), list("news"), 0);
	struct optout_result r;
	struct assent_err err;

	for (int i = 0; i < 3; i++) {
		ck_assert_int_eq(optout_describe(conn, &t, &r, &err), 0);
		ck_assert_str_eq(r.list_name, "news");
		ck_assert_str_eq(r.status, "confirmed");
		ck_assert(r.known);
	}
	ck_assert_int_eq(count("SELECT count(*) FROM ledger WHERE action = 'unsubscribe'"), 0);
	ck_assert_int_eq(count("SELECT count(*) FROM subscriptions WHERE status = 'confirmed'"), 3);
}
END_TEST

START_TEST(test_unsubscribe_one_list_once)
{
	struct token t = tok(TOKEN_UNSUBSCRIBE, sub("ann@example.org"), list("news"), 0);
	struct optout_result r;
	struct assent_err err;

	ck_assert_msg(optout_unsubscribe(conn, &t, false, &click, &r, &err) == 0,
	    "%s", err.msg);
	ck_assert(r.changed);
	ck_assert_str_eq(r.list_name, "news");
	ck_assert_int_eq(count("SELECT count(*) FROM subscriptions s JOIN subscribers p"
	    " ON p.id = s.subscriber_id WHERE p.email_key = 'ann@example.org'"
	    " AND s.status = 'unsubscribed'"), 1);
	ck_assert_int_eq(count("SELECT count(*) FROM ledger WHERE action = 'unsubscribe'"
	    " AND channel = 'one-click' AND ip = '192.0.2.7' AND user_agent = 'Mail/1.0'"
	    " AND subscriber_id = (SELECT id FROM subscribers"
	    "                       WHERE email_key = 'ann@example.org')"
	    " AND list_id = (SELECT id FROM lists WHERE name = 'news')"), 1);
	/* again: the same answer, nothing new */
	ck_assert_int_eq(optout_unsubscribe(conn, &t, false, &click, &r, &err), 0);
	ck_assert(!r.changed);
	ck_assert_str_eq(r.list_name, "news");
	ck_assert_int_eq(count("SELECT count(*) FROM ledger WHERE action = 'unsubscribe'"), 1);
	/* the other list and the other person are untouched */
	ck_assert_int_eq(count("SELECT count(*) FROM subscriptions WHERE"
	    " status = 'confirmed'"), 2);
	ck_assert_int_eq(count("SELECT count(*) FROM suppressions"), 0);
}
END_TEST

/* An all-lists token, and "everything" chosen on a list's page. */
START_TEST(test_unsubscribe_everything_once)
{
	struct token all = tok(TOKEN_UNSUBSCRIBE, sub("ann@example.org"), 0, 0);
	struct token one = tok(TOKEN_UNSUBSCRIBE, sub("ann@example.org"), list("offers"), 0);
	struct optout_result r;
	struct assent_err err;

	ck_assert_msg(optout_unsubscribe(conn, _i == 0 ? &all : &one, _i == 1,
	    &click, &r, &err) == 0, "%s", err.msg);
	ck_assert(r.changed);
	ck_assert_str_eq(r.list_name, "");
	ck_assert_int_eq(count("SELECT count(*) FROM subscriptions s JOIN subscribers p"
	    " ON p.id = s.subscriber_id WHERE p.email_key = 'ann@example.org'"
	    " AND s.status = 'unsubscribed'"), 2);
	ck_assert_int_eq(count("SELECT count(*) FROM suppressions WHERE"
	    " value = 'ann@example.org' AND reason = 'unsubscribe'"
	    " AND removed_at IS NULL"), 1);
	ck_assert_int_eq(optout_unsubscribe(conn, _i == 0 ? &all : &one, _i == 1,
	    &click, &r, &err), 0);
	ck_assert(!r.changed);
	ck_assert_int_eq(count("SELECT count(*) FROM suppressions"), 1);
	ck_assert_int_eq(count("SELECT count(*) FROM ledger WHERE action = 'unsubscribe'"), 2);
	ck_assert_int_eq(count("SELECT count(*) FROM subscriptions s JOIN subscribers p"
	    " ON p.id = s.subscriber_id WHERE p.email_key = 'bob@example.org'"
	    " AND s.status = 'confirmed'"), 1);
}
END_TEST

/* The campaign whose link was used learns it. */
START_TEST(test_marks_the_campaigns_delivery)
{
	struct token t = tok(TOKEN_UNSUBSCRIBE, sub("ann@example.org"), list("news"), 1);
	struct optout_result r;
	struct assent_err err;

	campaign_sending();
	ck_assert_int_eq(optout_unsubscribe(conn, &t, false, &click, &r, &err), 0);
	ck_assert_int_eq(optout_unsubscribe(conn, &t, false, &click, &r, &err), 0);
	ck_assert_int_eq(count("SELECT count(*) FROM deliveries d JOIN subscribers p"
	    " ON p.id = d.subscriber_id WHERE d.unsubscribed_at IS NOT NULL"
	    " AND p.email_key = 'ann@example.org'"), 1);
	ck_assert_int_eq(count("SELECT count(*) FROM deliveries WHERE"
	    " unsubscribed_at IS NOT NULL"), 1);
}
END_TEST

/* What a browser sends is kept as the ledger can hold it. */
START_TEST(test_user_agent_cleaned_and_cut)
{
	struct token t = tok(TOKEN_UNSUBSCRIBE, sub("bob@example.org"), list("news"), 0);
	struct optout_evidence ev = { .channel = "web", .ip = "2001:db8::1" };
	struct optout_result r;
	struct assent_err err;
	char ua[700];

	memset(ua, 'a', sizeof(ua));
	memcpy(ua, "Evil\r\nX: y", 10);
	/* a two-byte character across the 512-byte cut: left out whole */
	ua[509] = (char)0xc3;
	ua[510] = (char)0xa9;
	ua[511] = (char)0xc3;
	ua[512] = (char)0xa9;
	ua[sizeof(ua) - 1] = '\0';
	ev.user_agent = ua;
	ck_assert_msg(optout_unsubscribe(conn, &t, false, &ev, &r, &err) == 0, "%s",
	    err.msg);
	ck_assert_int_eq(count("SELECT octet_length(user_agent) FROM ledger"
	    " WHERE action = 'unsubscribe'"), 511);
	ck_assert_int_eq(count("SELECT count(*) FROM ledger WHERE action = 'unsubscribe'"
	    " AND user_agent LIKE 'Evil  X: y%' AND channel = 'web'"
	    " AND ip = '2001:db8::1'"), 1);
}
END_TEST

/* A user agent that is not UTF-8 must not fail the unsubscribe (the
 * database would refuse the text): its bad bytes become '?'. */
START_TEST(test_user_agent_not_utf8)
{
	struct token t = tok(TOKEN_UNSUBSCRIBE, sub("bob@example.org"),
	    list("news"), 0);
	struct optout_evidence ev = { .channel = "one-click", .ip = "192.0.2.1",
	    .user_agent = "Mozilla \xe9\xff\xfe ok \xc3\xa9" };
	struct optout_result r;
	struct assent_err err;

	ck_assert_msg(optout_unsubscribe(conn, &t, false, &ev, &r, &err) == 0, "%s",
	    err.msg);
	ck_assert(r.changed);
	ck_assert_int_eq(count("SELECT count(*) FROM ledger WHERE action = 'unsubscribe'"
	    " AND user_agent = 'Mozilla ??? ok \xc3\xa9'"), 1);
}
END_TEST

/* An erased person's old link: nothing to do, nothing told, no error. */
START_TEST(test_erased_subscriber)
{
	unsigned char pepper[32] = { 1 };
	struct suppress_ctx ctx = { pepper, sizeof(pepper), false };
	struct audit_actor who = { .operator_name = "tester", .host = "test" };
	struct token t = tok(TOKEN_UNSUBSCRIBE, sub("bob@example.org"), list("news"), 0);
	struct optout_result r;
	struct assent_err err;
	long events;

	ck_assert_msg(rights_erase(conn, &ctx, "bob@example.org", "ticket 9", &who,
	    NULL, &err) == 0, "%s", err.msg);
	events = count("SELECT count(*) FROM ledger");
	ck_assert_int_eq(optout_describe(conn, &t, &r, &err), 0);
	ck_assert(!r.known);
	ck_assert_int_eq(optout_unsubscribe(conn, &t, true, &click, &r, &err), 0);
	ck_assert(!r.known);
	ck_assert(!r.changed);
	ck_assert_int_eq(count("SELECT count(*) FROM ledger"), events);
}
END_TEST

/* A token for a list that is not there: answered as done, nothing
 * changed, no error. */
START_TEST(test_unknown_list)
{
	struct token t = tok(TOKEN_UNSUBSCRIBE, sub("ann@example.org"), 999, 0);
	struct optout_result r;
	struct assent_err err;

	ck_assert_msg(optout_unsubscribe(conn, &t, false, &click, &r, &err) == 0,
	    "%s", err.msg);
	ck_assert(!r.known);
	ck_assert(!r.changed);
	ck_assert_str_eq(r.list_name, "");
	ck_assert_int_eq(count("SELECT count(*) FROM ledger WHERE action = 'unsubscribe'"), 0);
	ck_assert_int_eq(count("SELECT count(*) FROM subscriptions WHERE"
	    " status = 'confirmed'"), 3);
}
END_TEST

/* Evidence the ledger refuses (a C1 control character in the user
 * agent) fails an unsubscribe that would write an event, changing
 * nothing; one with nothing left to do still succeeds. */
START_TEST(test_unfit_evidence)
{
	struct token t = tok(TOKEN_UNSUBSCRIBE, sub("ann@example.org"), list("news"), 0);
	struct token all = tok(TOKEN_UNSUBSCRIBE, sub("ann@example.org"), 0, 0);
	struct optout_evidence bad = { .channel = "one-click", .ip = "192.0.2.7",
	    .user_agent = "Mail\xc2\x85/1.0" };
	struct optout_result r;
	struct assent_err err;

	ck_assert_int_eq(optout_unsubscribe(conn, &t, false, &bad, &r, &err), -1);
	ck_assert_int_eq(err.code, EX_DATAERR);
	ck_assert_ptr_nonnull(strstr(err.msg, "user agent"));
	ck_assert(!r.changed);
	ck_assert_int_eq(optout_unsubscribe(conn, &all, false, &bad, &r, &err), -1);
	ck_assert_int_eq(err.code, EX_DATAERR);
	ck_assert_int_eq(count("SELECT count(*) FROM ledger WHERE action = 'unsubscribe'"), 0);
	ck_assert_int_eq(count("SELECT count(*) FROM subscriptions WHERE"
	    " status = 'confirmed'"), 3);
	ck_assert_int_eq(count("SELECT count(*) FROM suppressions"), 0);
	/* ended by a clean click: the unfit one finds nothing to write */
	ck_assert_int_eq(optout_unsubscribe(conn, &t, false, &click, &r, &err), 0);
	ck_assert_msg(optout_unsubscribe(conn, &t, false, &bad, &r, &err) == 0,
	    "%s", err.msg);
	ck_assert(!r.changed);
	ck_assert_str_eq(r.status, "unsubscribed");
	ck_assert_int_eq(count("SELECT count(*) FROM ledger WHERE action = 'unsubscribe'"), 1);
}
END_TEST

/* Everything, when every list was left already: the suppression entry
 * is the change, and the campaign's delivery learns it. */
START_TEST(test_everything_after_each_list)
{
	struct token news = tok(TOKEN_UNSUBSCRIBE, sub("ann@example.org"), list("news"), 0);
	struct token offers = tok(TOKEN_UNSUBSCRIBE, sub("ann@example.org"),
	    list("offers"), 0);
	struct token all = tok(TOKEN_UNSUBSCRIBE, sub("ann@example.org"), 0, 1);
	struct optout_result r;
	struct assent_err err;

	campaign_sending();
	ck_assert_int_eq(optout_unsubscribe(conn, &news, false, &click, &r, &err), 0);
	ck_assert_int_eq(optout_unsubscribe(conn, &offers, false, &click, &r, &err), 0);
	ck_assert_int_eq(count("SELECT count(*) FROM deliveries WHERE"
	    " unsubscribed_at IS NOT NULL"), 0);
	ck_assert_msg(optout_unsubscribe(conn, &all, false, &click, &r, &err) == 0,
	    "%s", err.msg);
	ck_assert(r.changed);
	ck_assert(r.known);
	ck_assert_str_eq(r.status, "unsubscribed");
	ck_assert_int_eq(count("SELECT count(*) FROM suppressions WHERE"
	    " value = 'ann@example.org' AND source LIKE '%campaign 1'"), 1);
	ck_assert_int_eq(count("SELECT count(*) FROM deliveries d JOIN subscribers p"
	    " ON p.id = d.subscriber_id WHERE d.unsubscribed_at IS NOT NULL"
	    " AND p.email_key = 'ann@example.org'"), 1);
	ck_assert_int_eq(count("SELECT count(*) FROM ledger WHERE action = 'unsubscribe'"), 2);
	ck_assert_int_eq(optout_unsubscribe(conn, &all, false, &click, &r, &err), 0);
	ck_assert(!r.changed);
}
END_TEST

/* The statement is prepared once per session: a session that lost it
 * (DEALLOCATE, or a new one behind the same PGconn) gets it again. */
START_TEST(test_prepared_statement_lost)
{
	struct token ann = tok(TOKEN_UNSUBSCRIBE, sub("ann@example.org"), list("news"), 0);
	struct token bob = tok(TOKEN_UNSUBSCRIBE, sub("bob@example.org"), list("news"), 0);
	struct optout_result r;
	struct assent_err err;

	ck_assert_int_eq(optout_unsubscribe(conn, &ann, false, &click, &r, &err), 0);
	ck_assert(r.changed);
	ck_assert_int_eq(db_exec(conn, NULL, &err, "DEALLOCATE ALL", 0, NULL), 0);
	ck_assert_msg(optout_unsubscribe(conn, &bob, false, &click, &r, &err) == 0,
	    "%s", err.msg);
	ck_assert(r.changed);
	ck_assert_str_eq(r.list_name, "news");
	ck_assert_int_eq(count("SELECT count(*) FROM ledger WHERE action = 'unsubscribe'"), 2);
}
END_TEST

START_TEST(test_confirm)
{
	struct subs_request req = { .email = "cat@example.org", .list = "club",
	    .channel = "cli", .evidence = &cli_ev };
	struct optout_evidence ev = { .channel = "confirm-link", .ip = "192.0.2.9",
	    .user_agent = "Browser" };
	struct token t, u;
	struct optout_result r;
	struct assent_err err;
	char status[16];

	ck_assert_msg(subs_add(conn, &req, status, NULL, &err) == 0, "%s", err.msg);
	ck_assert_str_eq(status, "pending");
	t = tok(TOKEN_CONFIRM, sub("cat@example.org"), list("club"), 0);
	u = tok(TOKEN_UNSUBSCRIBE, sub("cat@example.org"), list("club"), 0);
	ck_assert_msg(optout_confirm(conn, &t, &ev, &r, &err) == 0, "%s", err.msg);
	ck_assert(r.changed);
	ck_assert_str_eq(r.list_name, "club");
	ck_assert_str_eq(r.status, "confirmed");
	ck_assert_int_eq(count("SELECT count(*) FROM ledger WHERE action = 'confirm'"
	    " AND channel = 'confirm-link' AND ip = '192.0.2.9'"
	    " AND status_before = 'pending' AND status_after = 'confirmed'"), 1);
	ck_assert_int_eq(optout_confirm(conn, &t, &ev, &r, &err), 0);
	ck_assert(!r.changed);
	/* ended, then the old confirm link: it stays ended */
	ck_assert_int_eq(optout_unsubscribe(conn, &u, false, &click, &r, &err), 0);
	ck_assert_int_eq(optout_confirm(conn, &t, &ev, &r, &err), 0);
	ck_assert(!r.changed);
	ck_assert_str_eq(r.status, "unsubscribed");
	ck_assert_int_eq(count("SELECT count(*) FROM subscriptions s JOIN subscribers p"
	    " ON p.id = s.subscriber_id WHERE p.email_key = 'cat@example.org'"
	    " AND s.status = 'unsubscribed'"), 1);
	ck_assert_int_eq(count("SELECT count(*) FROM ledger WHERE action = 'confirm'"), 1);
}
END_TEST

int
main(void)
{
	Suite *s = suite_create("optout");
	TCase *tc = tcase_create("optout");

	testhelp_require_servers();
	tcase_add_checked_fixture(tc, setup, testhelp_fixture_drop);
	tcase_set_timeout(tc, 30);
	tcase_add_test(tc, test_describe_changes_nothing);
	tcase_add_test(tc, test_unsubscribe_one_list_once);
	tcase_add_loop_test(tc, test_unsubscribe_everything_once, 0, 2);
	tcase_add_test(tc, test_marks_the_campaigns_delivery);
	tcase_add_test(tc, test_user_agent_cleaned_and_cut);
	tcase_add_test(tc, test_user_agent_not_utf8);
	tcase_add_test(tc, test_erased_subscriber);
	tcase_add_test(tc, test_unknown_list);
	tcase_add_test(tc, test_unfit_evidence);
	tcase_add_test(tc, test_everything_after_each_list);
	tcase_add_test(tc, test_prepared_statement_lost);
	tcase_add_test(tc, test_confirm);
	suite_add_tcase(s, tc);
	return testhelp_run_suite(s);
}

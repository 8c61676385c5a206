/* Integration: campaigns, their life cycle, audience and figures on a
 * real PostgreSQL */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "assent/campaign.h"
#include "assent/db.h"
#include "assent/lists.h"
#include "assent/rights.h"
#include "assent/subs.h"
#include "testhelp.h"

#define conn testhelp_conn
#define MAX_AGE CAMPAIGN_MAX_AGE_DEFAULT

#define TEXT_OK "Hello {{ name | \"friend\" }},\n\nnews.\n\n" \
	"Leave: {{ unsubscribe_url }}\n{{ sender.postal_address }}\n"
#define HTML_OK "<p>Hello {{ name }}</p>\n<a href=\"{{ unsubscribe_url }}\">" \
	"leave</a>\n<p>{{ sender.postal_address }}</p>\n"

static const struct ledger_evidence cli_ev = {
	.source = "test", .operator_name = "tester",
};

static const char *const default_lists[] = { "news", "offers" };

static void
setup(void)
{
	struct assent_err err;

	testhelp_fixture_db();
	ck_assert_int_eq(lists_create(conn, "news", NULL, false, &err), 0);
	ck_assert_int_eq(lists_create(conn, "offers", NULL, false, &err), 0);
	ck_assert_int_eq(lists_create(conn, "letters", NULL, true, &err), 0);
	ck_assert_int_eq(lists_create(conn, "other", NULL, false, &err), 0);
}

static struct campaign_content
content(void)
{
	struct campaign_content c = {
		.lists = default_lists, .nlists = 2,
		.subject = "News for {{ name | \"you\" }}",
		.from = " \"Ann Example\"  < News@EXAMPLE.org >",
		.text = TEXT_OK,
	};

	return c;
}

static void
create(const char *name)
{
	struct campaign_content c = content();
	struct assent_err err;

	ck_assert_msg(campaign_create(conn, name, &c, "tester", NULL, &err) == 0,
	    "%s", err.msg);
}

static long
count(const char *sql)
{
	return testhelp_query_long(conn, sql);
}

static int
sql(const char *q)
{
	struct assent_err err;

	return db_exec(conn, NULL, &err, q, 0, NULL);
}

static void
sql_ok(const char *q)
{
	struct assent_err err;

	ck_assert_msg(db_exec(conn, NULL, &err, q, 0, NULL) == 0, "%s: %s", q, err.msg);
}

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

static char *
state_of(const char *name)
{
	struct assent_err err;
	struct campaign *c;
	static char state[16];

	ck_assert_msg(campaign_load(conn, name, &c, &err) == 0, "%s", err.msg);
	snprintf(state, sizeof(state), "%s", c->state);
	campaign_free(c);
	return state;
}

/* now + offset seconds as ISO 8601 UTC */
static const char *
iso_from_now(long offset, char buf[32])
{
	time_t t = time(NULL) + offset;
	struct tm tm;

	gmtime_r(&t, &tm);
	strftime(buf, 32, "%Y-%m-%dT%H:%M:%SZ", &tm);
	return buf;
}

static void
schedule(const char *name, const char *at, bool force)
{
	struct assent_err err;

	ck_assert_msg(campaign_schedule(conn, name, at, force, MAX_AGE, &err) == 0,
	    "%s", err.msg);
}

static int
start_due(long max_age)
{
	struct assent_err err;
	int started = -1;

	ck_assert_msg(campaign_start_due(conn, max_age, &started, &err) == 0, "%s",
	    err.msg);
	return started;
}

/* --- create --------------------------------------------------------------- */

START_TEST(test_create_and_load)
{
	struct campaign_content c = content();
	struct assent_err err;
	struct campaign *cp;
	long long id = 0;
	json_t *rows, *row, *j;

	c.reply_to = "Replies@Example.ORG";
	c.html = HTML_OK;
	ck_assert_msg(campaign_create(conn, "spring", &c, "tester", &id, &err) == 0,
	    "%s", err.msg);
	ck_assert_int_gt(id, 0);
	ck_assert_int_eq(campaign_load(conn, "SPRING", &cp, &err), 0);
	ck_assert_int_eq(cp->id, id);
	ck_assert_str_eq(cp->name, "spring");
	ck_assert_str_eq(cp->state, "draft");
	ck_assert_str_eq(cp->from_name, "Ann Example");
	ck_assert_str_eq(cp->from_address, "News@example.org");
	ck_assert_str_eq(cp->reply_to, "Replies@example.org");
	ck_assert_str_eq(cp->body_text, TEXT_OK);
	ck_assert_str_eq(cp->body_html, HTML_OK);
	ck_assert_str_eq(cp->scheduled_at, "");
	ck_assert_uint_eq(cp->nlists, 2);
	ck_assert_str_eq(cp->lists[0].name, "news");
	ck_assert_str_eq(cp->lists[1].name, "offers");
	j = campaign_json(cp);
	ck_assert_str_eq(json_string_value(json_array_get(json_object_get(j, "lists"),
	    1)), "offers");
	ck_assert(json_is_null(json_object_get(j, "scheduled_at")));
	json_decref(j);
	campaign_free(cp);

	ck_assert_int_eq(campaign_load_id(conn, id, &cp, &err), 0);
	ck_assert_str_eq(cp->name, "spring");
	campaign_free(cp);
	ck_assert_int_eq(campaign_load(conn, "nope", &cp, &err), -1);
	ck_assert_int_eq(err.code, EX_DATAERR);
	ck_assert_ptr_nonnull(strstr(err.msg, "unknown campaign nope"));

	ck_assert_int_eq(campaign_list(conn, &rows, &err), 0);
	ck_assert_uint_eq(json_array_size(rows), 1);
	row = json_array_get(rows, 0);
	ck_assert_str_eq(json_string_value(json_object_get(row, "state")), "draft");
	ck_assert_uint_eq(json_array_size(json_object_get(row, "lists")), 2);
	ck_assert_int_eq(json_integer_value(json_object_get(row, "total")), 0);
	json_decref(rows);
}
END_TEST

START_TEST(test_create_plain_from_and_repeated_list)
{
	static const char *const lists[] = { "news", "NEWS", "news" };
	struct campaign_content c = content();
	struct assent_err err;
	struct campaign *cp;

	c.from = "  plain@example.org ";
	c.lists = lists;
	c.nlists = 3;
	ck_assert_msg(campaign_create(conn, "plain", &c, "tester", NULL, &err) == 0,
	    "%s", err.msg);
	ck_assert_int_eq(campaign_load(conn, "plain", &cp, &err), 0);
	ck_assert_str_eq(cp->from_name, "");
	ck_assert_str_eq(cp->from_address, "plain@example.org");
	ck_assert_uint_eq(cp->nlists, 1);
	ck_assert_ptr_null(cp->reply_to);
	ck_assert_ptr_null(cp->body_html);
	campaign_free(cp);
}
END_TEST

/* From forms that are accepted, and what is stored. */
static const struct {
	const char *from, *name, *address;
} froms_ok[] = {
	{ "Ann <a@example.org>", "Ann", "a@example.org" },
	{ "  \" Ann Example \"  <  a@Example.ORG >", "Ann Example", "a@example.org" },
	{ "\"Ann <Team>\" <a@example.org>", "Ann <Team>", "a@example.org" },
	{ "<a@example.org>", "", "a@example.org" },
	{ "a@example.org", "", "a@example.org" },
};

START_TEST(test_create_from_forms)
{
	struct campaign_content c = content();
	struct assent_err err;
	struct campaign *cp;

	c.from = froms_ok[_i].from;
	ck_assert_msg(campaign_create(conn, "f", &c, "tester", NULL, &err) == 0,
	    "%s: %s", froms_ok[_i].from, err.msg);
	ck_assert_int_eq(campaign_load(conn, "f", &cp, &err), 0);
	ck_assert_str_eq(cp->from_name, froms_ok[_i].name);
	ck_assert_str_eq(cp->from_address, froms_ok[_i].address);
	campaign_free(cp);
}
END_TEST

static const char *const unknown_list[] = { "news", "nope" };

#define FROM_FORM "From: expected \"Name <address>\" or an address"

static const struct {
	const char *name, *subject, *from, *reply_to, *text, *html;
	bool no_lists, bad_list;
	const char *why;
} refusals[] = {
	{ .text = "Hi {{ nmae }}\n{{ unsubscribe_url }} {{ sender.postal_address }}",
	  .why = "text body: template line 1, column 7: unknown field \"nmae\"" },
	{ .html = "<p>\n  {{ attr.ci ty }}</p>{{ unsubscribe_url }}"
	  "{{ sender.postal_address }}", .why = "HTML body: template line 2" },
	{ .text = "Hello\n{{ sender.postal_address }}\n",
	  .why = "text body: template: the body has no {{ unsubscribe_url }}" },
	{ .html = "<a href=\"{{ unsubscribe_url }}\">x</a>",
	  .why = "HTML body: template: the body has no {{ sender.postal_address }}" },
	{ .text = "Hi {{ name\n{{ unsubscribe_url }} {{ sender.postal_address }}",
	  .why = "text body: template line 1" },
	{ .subject = "", .why = "subject: it is empty" },
	{ .subject = "Leave {{ unsubscribe_url }}", .why = "subject: " },
	{ .subject = "Two\nlines", .why = "subject: " },
	{ .subject = "{{ nmae }}", .why = "subject: template line 1, column 4" },
	{ .from = "Ann <not an address>", .why = "From: invalid address" },
	{ .from = "Ann <a..b@example.org>", .why = "From: invalid address" },
	{ .from = "", .why = "From: invalid address" },
	{ .from = "Ann\x01 <a@example.org>", .why = "From name" },
	{ .from = "Ann\r\nBcc: x@example.org <a@example.org>", .why = "From name" },
	{ .from = "\xff\xfe <a@example.org>", .why = "From name" },
	{ .from = "a <b> <news@example.org>", .why = FROM_FORM },
	{ .from = "Ann <a@example.org", .why = FROM_FORM },
	{ .from = "a@example.org>", .why = FROM_FORM },
	{ .from = "<a@example.org> Ann", .why = FROM_FORM },
	{ .from = "Ann <<a@example.org>>", .why = FROM_FORM },
	{ .from = "\"Ann\" x <a@example.org>", .why = FROM_FORM },
	{ .reply_to = "nobody", .why = "Reply-To: invalid address" },
	{ .no_lists = true, .why = "at least one list" },
	{ .bad_list = true, .why = "unknown list \"nope\"" },
	{ .name = "has space", .why = "invalid campaign name" },
	{ .name = "-dash", .why = "invalid campaign name" },
	{ .name = "", .why = "invalid campaign name" },
	{ .name = "a1234567890123456789012345678901234567890123456789012345678901234",
	  .why = "invalid campaign name" },
};

START_TEST(test_create_refusals)
{
	struct campaign_content c = content();
	struct assent_err err;

#define OR(field) if (refusals[_i].field != NULL) c.field = refusals[_i].field
	OR(subject);
	OR(from);
	OR(reply_to);
	OR(text);
	OR(html);
#undef OR
	if (refusals[_i].no_lists)
		c.nlists = 0;
	if (refusals[_i].bad_list)
		c.lists = unknown_list;
	ck_assert_int_eq(campaign_create(conn, refusals[_i].name != NULL ?
	    refusals[_i].name : "refused", &c, "tester", NULL, &err), -1);
	ck_assert_int_eq(err.code, EX_DATAERR);
	ck_assert_msg(strstr(err.msg, refusals[_i].why) != NULL,
	    "message \"%s\" lacks \"%s\"", err.msg, refusals[_i].why);
	ck_assert_int_eq(count("SELECT count(*) FROM campaigns"), 0);
	ck_assert_int_eq(count("SELECT count(*) FROM campaign_lists"), 0);
}
END_TEST

START_TEST(test_duplicate_name_refused)
{
	struct campaign_content c = content();
	struct assent_err err;

	create("spring");
	ck_assert_int_eq(campaign_create(conn, "Spring", &c, "tester", NULL, &err), -1);
	ck_assert_int_eq(err.code, EX_DATAERR);
	ck_assert_ptr_nonnull(strstr(err.msg, "campaign \"Spring\" exists already"));
	ck_assert_int_eq(count("SELECT count(*) FROM campaigns"), 1);
}
END_TEST

/* --- edit ------------------------------------------------------------------ */

START_TEST(test_edit_draft_only)
{
	static const char *const lists[] = { "other" };
	struct campaign_content ch = { .subject = "New subject" };
	struct assent_err err;
	struct campaign *cp;

	create("spring");
	ck_assert_msg(campaign_edit(conn, "spring", &ch, &err) == 0, "%s", err.msg);
	memset(&ch, 0, sizeof(ch));
	ch.lists = lists;
	ch.nlists = 1;
	ch.html = HTML_OK;
	ch.reply_to = "r@example.org";
	ck_assert_msg(campaign_edit(conn, "spring", &ch, &err) == 0, "%s", err.msg);
	ck_assert_int_eq(campaign_load(conn, "spring", &cp, &err), 0);
	ck_assert_str_eq(cp->subject, "New subject");
	ck_assert_str_eq(cp->from_name, "Ann Example");     /* unchanged */
	ck_assert_str_eq(cp->body_text, TEXT_OK);
	ck_assert_str_eq(cp->body_html, HTML_OK);
	ck_assert_str_eq(cp->reply_to, "r@example.org");
	ck_assert_uint_eq(cp->nlists, 1);
	ck_assert_str_eq(cp->lists[0].name, "other");
	campaign_free(cp);

	/* "" removes the HTML part and the Reply-To */
	memset(&ch, 0, sizeof(ch));
	ch.html = "";
	ch.reply_to = "";
	ck_assert_int_eq(campaign_edit(conn, "spring", &ch, &err), 0);
	ck_assert_int_eq(campaign_load(conn, "spring", &cp, &err), 0);
	ck_assert_ptr_null(cp->body_html);
	ck_assert_ptr_null(cp->reply_to);
	campaign_free(cp);

	/* a refused template changes nothing */
	memset(&ch, 0, sizeof(ch));
	ch.subject = "Changed";
	ch.text = "no link";
	ck_assert_int_eq(campaign_edit(conn, "spring", &ch, &err), -1);
	ck_assert_ptr_nonnull(strstr(err.msg, "text body: "));
	ck_assert_int_eq(count("SELECT count(*) FROM campaigns"
	    " WHERE subject = 'New subject'"), 1);

	schedule("spring", "2999-01-01T00:00:00Z", false);
	memset(&ch, 0, sizeof(ch));
	ch.subject = "Too late";
	ck_assert_int_eq(campaign_edit(conn, "spring", &ch, &err), -1);
	ck_assert_int_eq(err.code, EX_DATAERR);
	ck_assert_str_eq(err.msg, "campaign spring is scheduled: only a draft "
	    "can be edited");
	ck_assert_int_eq(campaign_edit(conn, "nope", &ch, &err), -1);
	ck_assert_ptr_nonnull(strstr(err.msg, "unknown campaign nope"));

	/* the database refuses it too */
	ck_assert_int_eq(sql("UPDATE campaigns SET subject = 'x'"), -1);
	ck_assert_str_eq(db_last_sqlstate(), "23514");
	ck_assert_int_eq(sql("UPDATE campaigns SET body_html = 'x'"), -1);
	ck_assert_int_eq(sql("INSERT INTO campaign_lists (campaign_id, list_id)"
	    " SELECT c.id, l.id FROM campaigns c, lists l WHERE l.name = 'news'"), -1);
	ck_assert_int_eq(sql("DELETE FROM campaign_lists"), -1);
	ck_assert_int_eq(sql("DELETE FROM campaigns"), -1);
	ck_assert_int_eq(count("SELECT count(*) FROM campaigns"
	    " WHERE subject = 'New subject'"), 1);
}
END_TEST

/* --- schedule --------------------------------------------------------------- */

START_TEST(test_schedule_times)
{
	struct assent_err err;
	struct campaign *cp;
	char at[32];

	create("c");
	schedule("c", "now", false);
	ck_assert_str_eq(state_of("c"), "scheduled");
	ck_assert_int_eq(count("SELECT count(*) FROM campaigns WHERE"
	    " scheduled_at BETWEEN now() - interval '1 minute' AND now()"), 1);

	/* rescheduling a scheduled one that has not started */
	schedule("c", "2999-06-01T12:00:00+02:00", false);
	ck_assert_int_eq(campaign_load(conn, "c", &cp, &err), 0);
	ck_assert_str_eq(cp->scheduled_at, "2999-06-01T10:00:00Z");
	ck_assert(!cp->force_start);
	campaign_free(cp);

	/* within max_age in the past */
	schedule("c", iso_from_now(-3600, at), false);
	ck_assert_str_eq(state_of("c"), "scheduled");

	/* beyond it: refused, then forced */
	ck_assert_int_eq(campaign_schedule(conn, "c", iso_from_now(-3 * 86400, at),
	    false, MAX_AGE, &err), -1);
	ck_assert_int_eq(err.code, EX_DATAERR);
	ck_assert_msg(strstr(err.msg, "is 72 hours (3 days) in the past; use --force to "
	    "send it anyway") != NULL, "%s", err.msg);
	ck_assert_int_eq(count("SELECT count(*) FROM campaigns"
	    " WHERE scheduled_at < now() - interval '2 days'"), 0);
	ck_assert_int_eq(campaign_schedule(conn, "c", at, true, MAX_AGE, &err), 0);
	ck_assert_int_eq(campaign_load(conn, "c", &cp, &err), 0);
	ck_assert(cp->force_start);
	ck_assert_str_eq(cp->scheduled_at, at);
	campaign_free(cp);
}
END_TEST

static const struct {
	const char *at, *why;
} bad_times[] = {
	{ "2030-01-01T10:00:00", "has no time zone" },
	{ "2030-01-01 10:00", "has no time zone" },
	{ "2030-01-01", "no time of day and no zone" },
	{ "tomorrow", "invalid time" },
	{ "2030-01-01T10:00:00+1", "invalid time" },
	{ "2030-02-30T10:00:00Z", "invalid time" },
	{ "2030-01-01T25:00:00Z", "invalid time" },
	{ "", "invalid time" },
};

START_TEST(test_schedule_bad_times)
{
	struct assent_err err;

	create("c");
	ck_assert_int_eq(campaign_schedule(conn, "c", bad_times[_i].at, true, MAX_AGE,
	    &err), -1);
	ck_assert_int_eq(err.code, EX_DATAERR);
	ck_assert_msg(strstr(err.msg, bad_times[_i].why) != NULL,
	    "\"%s\" lacks \"%s\"", err.msg, bad_times[_i].why);
	ck_assert_msg(strstr(err.msg, "campaign c") != NULL, "%s", err.msg);
	ck_assert_str_eq(state_of("c"), "draft");
}
END_TEST

/* --- the audience ---------------------------------------------------------------- */

/* a on news and offers, b on news, c on offers, d pending on letters,
 * e unsubscribed from news, f on news on lapsed implied consent, g on
 * other only. */
static void
audience(void)
{
	struct assent_err err;
	struct subs_request req = {
		.email = "f@F.example", .list = "news", .channel = "cli",
		.evidence = &cli_ev, .basis = "implied",
		.basis_expires_at = "2999-01-01T00:00:00Z",
	};
	char status[16];

	subscribe("a@A.example", "offers");
	subscribe("a@A.example", "news");
	subscribe("b@b.example", "news");
	subscribe("c@c.example", "offers");
	subscribe("d@d.example", "letters");
	subscribe("e@e.example", "news");
	ck_assert_msg(rights_unsubscribe(conn, "e@e.example", "news", &cli_ev, NULL,
	    &err) == 0, "%s", err.msg);
	ck_assert_msg(subs_add(conn, &req, status, NULL, &err) == 0, "%s", err.msg);
	sql_ok("UPDATE subscriptions SET basis_expires_at = now() - interval '1 day'"
	    " WHERE subscriber_id = (SELECT id FROM subscribers"
	    "  WHERE email_key = 'f@f.example')");
	subscribe("g@g.example", "other");
}

START_TEST(test_start_due_materialises_audience_once)
{
	static const char *const lists[] = { "news", "offers", "letters" };
	struct campaign_content c = content();
	struct assent_err err;

	audience();
	c.lists = lists;
	c.nlists = 3;
	ck_assert_int_eq(campaign_create(conn, "spring", &c, "tester", NULL, &err), 0);
	create("later");
	schedule("later", "2999-01-01T00:00:00Z", false);
	ck_assert_int_eq(start_due(MAX_AGE), 0);      /* a draft and a future one */
	schedule("spring", "now", false);
	ck_assert_int_eq(start_due(MAX_AGE), 1);
	ck_assert_str_eq(state_of("spring"), "sending");
	ck_assert_str_eq(state_of("later"), "scheduled");
	ck_assert_int_eq(count("SELECT count(*) FROM campaigns WHERE name = 'spring'"
	    " AND started_at IS NOT NULL"), 1);
	ck_assert_int_eq(count("SELECT count(*) FROM deliveries"), 3);
	ck_assert_int_eq(count("SELECT count(*) FROM deliveries d JOIN subscribers s"
	    " ON s.id = d.subscriber_id WHERE d.state = 'queued' AND"
	    " s.email_key IN ('a@a.example', 'b@b.example', 'c@c.example')"
	    " AND d.domain = split_part(s.email_key, '@', 2)"), 3);
	/* a is on both lists: one delivery, on the lower list id (news) */
	ck_assert_int_eq(count("SELECT count(*) FROM deliveries d"
	    " JOIN subscribers s ON s.id = d.subscriber_id"
	    " JOIN lists l ON l.id = d.list_id WHERE s.email_key = 'a@a.example'"
	    " AND l.id = (SELECT min(id) FROM lists WHERE name IN ('news', 'offers'))"),
	    1);

	/* twice: nothing more */
	ck_assert_int_eq(start_due(MAX_AGE), 0);
	ck_assert_int_eq(count("SELECT count(*) FROM deliveries"), 3);
	ck_assert_int_eq(sql("INSERT INTO deliveries (campaign_id, subscriber_id,"
	    " list_id, domain) SELECT campaign_id, subscriber_id, list_id, domain"
	    " FROM deliveries LIMIT 1"), -1);
	ck_assert_str_eq(db_last_sqlstate(), "23505");
}
END_TEST

START_TEST(test_start_due_old_campaigns)
{
	char at[32];

	subscribe("a@a.example", "news");
	create("stale");
	create("forced");
	create("recent");
	/* accepted when scheduled (max_age a day), too old for a scheduler
	 * whose max_age is an hour */
	schedule("stale", iso_from_now(-2 * 3600, at), false);
	schedule("forced", iso_from_now(-5 * 86400, at), true);
	schedule("recent", iso_from_now(-60, at), false);
	ck_assert_int_eq(start_due(3600), 2);
	ck_assert_str_eq(state_of("stale"), "scheduled");
	ck_assert_str_eq(state_of("forced"), "sending");
	ck_assert_str_eq(state_of("recent"), "sending");
	ck_assert_int_eq(count("SELECT count(*) FROM deliveries"), 2);
	ck_assert_int_eq(start_due(3600), 0);
	ck_assert_str_eq(state_of("stale"), "scheduled");
}
END_TEST

/* --- pause, resume, cancel --------------------------------------------------------- */

START_TEST(test_pause_resume_cancel)
{
	struct assent_err err;

	subscribe("a@a.example", "news");
	create("c");
	ck_assert_int_eq(campaign_pause(conn, "c", &err), -1);
	ck_assert_int_eq(err.code, EX_DATAERR);
	ck_assert_str_eq(err.msg, "campaign c is draft: only a scheduled or sending "
	    "campaign can be paused");
	ck_assert_int_eq(campaign_resume(conn, "c", &err), -1);
	ck_assert_ptr_nonnull(strstr(err.msg, "campaign c is draft: only a paused"));

	/* scheduled -> paused -> scheduled (it had not started) */
	schedule("c", "2999-01-01T00:00:00Z", false);
	ck_assert_int_eq(campaign_pause(conn, "c", &err), 0);
	ck_assert_str_eq(state_of("c"), "paused");
	ck_assert_int_eq(campaign_pause(conn, "c", &err), -1);
	ck_assert_str_eq(err.msg, "campaign c is already paused");
	ck_assert_int_eq(campaign_resume(conn, "c", &err), 0);
	ck_assert_str_eq(state_of("c"), "scheduled");

	/* a paused one that has not started may be rescheduled */
	ck_assert_int_eq(campaign_pause(conn, "c", &err), 0);
	schedule("c", "now", false);
	ck_assert_int_eq(start_due(MAX_AGE), 1);

	/* sending -> paused -> sending */
	ck_assert_int_eq(campaign_pause(conn, "c", &err), 0);
	ck_assert_str_eq(state_of("c"), "paused");
	ck_assert_int_eq(campaign_schedule(conn, "c", "now", false, MAX_AGE, &err), -1);
	ck_assert_ptr_nonnull(strstr(err.msg, "campaign c is paused after it started"));
	ck_assert_int_eq(start_due(MAX_AGE), 0);
	ck_assert_int_eq(campaign_resume(conn, "c", &err), 0);
	ck_assert_str_eq(state_of("c"), "sending");
	ck_assert_int_eq(campaign_schedule(conn, "c", "now", false, MAX_AGE, &err), -1);
	ck_assert_ptr_nonnull(strstr(err.msg, "campaign c is sending"));

	/* cancel: final */
	ck_assert_int_eq(campaign_cancel(conn, "c", &err), 0);
	ck_assert_str_eq(state_of("c"), "cancelled");
	ck_assert_int_eq(campaign_cancel(conn, "c", &err), -1);
	ck_assert_str_eq(err.msg, "campaign c is already cancelled");
	ck_assert_int_eq(campaign_resume(conn, "c", &err), -1);
	ck_assert_int_eq(campaign_pause(conn, "c", &err), -1);
	ck_assert_int_eq(campaign_pause(conn, "nope", &err), -1);
	ck_assert_ptr_nonnull(strstr(err.msg, "unknown campaign nope"));
	/* the database refuses to bring it back */
	ck_assert_int_eq(sql("UPDATE campaigns SET state = 'sending'"), -1);

	/* a draft can be cancelled */
	create("d");
	ck_assert_int_eq(campaign_cancel(conn, "d", &err), 0);
	ck_assert_str_eq(state_of("d"), "cancelled");
}
END_TEST

/* --- deliveries set by hand --------------------------------------------------------- */

/* n subscribers on news, the campaign "c" started. */
static void
started_with(int n)
{
	char email[64];

	for (int i = 0; i < n; i++) {
		snprintf(email, sizeof(email), "p%d@example.org", i);
		subscribe(email, "news");
	}
	create("c");
	schedule("c", "now", false);
	ck_assert_int_eq(start_due(MAX_AGE), 1);
	ck_assert_int_eq(count("SELECT count(*) FROM deliveries"), n);
}

/* The delivery of pN moves through states (forward only). */
static void
move(int n, const char *sets)
{
	char q[512];

	snprintf(q, sizeof(q), "UPDATE deliveries SET %s WHERE subscriber_id ="
	    " (SELECT id FROM subscribers WHERE email_key = 'p%d@example.org')",
	    sets, n);
	sql_ok(q);
}

#define TO_SENDING "state = 'sending', sender_session = 7, attempts = attempts + 1"
#define TO_SENT "state = 'sent', sent_at = now(), smtp_reply = '250 ok'"

START_TEST(test_finish_and_resend_unknown)
{
	struct assent_err err;
	long n = -1;
	int finished = -1;

	started_with(2);
	ck_assert_int_eq(campaign_finish_done(conn, &finished, &err), 0);
	ck_assert_int_eq(finished, 0);
	move(0, TO_SENDING);
	move(0, TO_SENT);
	move(1, TO_SENDING);
	ck_assert_int_eq(campaign_finish_done(conn, &finished, &err), 0);
	ck_assert_int_eq(finished, 0);                  /* one in flight */
	move(1, "state = 'unknown'");
	ck_assert_int_eq(campaign_finish_done(conn, &finished, &err), 0);
	ck_assert_int_eq(finished, 1);
	ck_assert_str_eq(state_of("c"), "done");
	ck_assert_int_eq(count("SELECT count(*) FROM campaigns WHERE finished_at"
	    " IS NOT NULL"), 1);

	ck_assert_msg(campaign_resend_unknown(conn, "c", &n, &err) == 0, "%s", err.msg);
	ck_assert_int_eq(n, 1);
	ck_assert_str_eq(state_of("c"), "sending");
	ck_assert_int_eq(count("SELECT count(*) FROM deliveries WHERE state = 'queued'"
	    " AND sender_session IS NULL AND next_attempt_at <= now()"), 1);
	ck_assert_int_eq(count("SELECT count(*) FROM deliveries WHERE state = 'sent'"), 1);
	ck_assert_int_eq(campaign_resend_unknown(conn, "c", &n, &err), 0);
	ck_assert_int_eq(n, 0);
	ck_assert_int_eq(campaign_finish_done(conn, &finished, &err), 0);
	ck_assert_int_eq(finished, 0);
	ck_assert_str_eq(state_of("c"), "sending");
}
END_TEST

START_TEST(test_finish_empty_audience)
{
	struct assent_err err;
	int finished = -1;

	create("c");
	schedule("c", "now", false);
	ck_assert_int_eq(start_due(MAX_AGE), 1);
	ck_assert_int_eq(campaign_finish_done(conn, &finished, &err), 0);
	ck_assert_int_eq(finished, 1);
	ck_assert_str_eq(state_of("c"), "done");
	ck_assert_int_eq(campaign_cancel(conn, "c", &err), -1);
	ck_assert_int_eq(err.code, EX_DATAERR);
	ck_assert_str_eq(err.msg, "campaign c is done: it cannot be cancelled");
}
END_TEST

START_TEST(test_status_and_report)
{
	struct assent_err err;
	json_t *st, *r, *counts, *sup;

	started_with(6);
	move(1, TO_SENDING);
	move(2, TO_SENDING);
	move(2, TO_SENT ", bounced_at = now(), complained_at = now()");
	move(3, TO_SENDING);
	move(3, TO_SENT ", unsubscribed_at = now()");
	move(4, "state = 'suppressed', suppress_reason = 'hard-bounce'");
	move(5, "state = 'failed', smtp_reply = '550 no'");

	ck_assert_int_eq(campaign_status(conn, "C", MAX_AGE, &st, &err), 0);
	ck_assert_str_eq(json_string_value(json_object_get(st, "state")), "sending");
	ck_assert_int_eq(json_integer_value(json_object_get(st, "total")), 6);
	counts = json_object_get(st, "counts");
	ck_assert_int_eq(json_integer_value(json_object_get(counts, "queued")), 1);
	ck_assert_int_eq(json_integer_value(json_object_get(counts, "sending")), 1);
	ck_assert_int_eq(json_integer_value(json_object_get(counts, "sent")), 2);
	ck_assert_int_eq(json_integer_value(json_object_get(counts, "suppressed")), 1);
	ck_assert_int_eq(json_integer_value(json_object_get(counts, "failed")), 1);
	ck_assert_int_eq(json_integer_value(json_object_get(counts, "unknown")), 0);
	/* two sent a moment ago: measured over the floor of one second */
	ck_assert_msg(json_real_value(json_object_get(st, "rate")) > 2.0 - 1e-9 &&
	    json_real_value(json_object_get(st, "rate")) < 2.0 + 1e-9, "rate %f",
	    json_real_value(json_object_get(st, "rate")));
	ck_assert(json_is_string(json_object_get(st, "eta")));
	ck_assert(json_is_null(json_object_get(st, "note")));
	ck_assert(json_is_string(json_object_get(st, "started_at")));
	ck_assert(json_is_null(json_object_get(st, "finished_at")));
	json_decref(st);

	ck_assert_int_eq(campaign_report(conn, "c", &r, &err), 0);
	ck_assert_int_eq(json_integer_value(json_object_get(r, "total")), 6);
	ck_assert_int_eq(json_integer_value(json_object_get(r, "sent")), 2);
	sup = json_object_get(r, "suppressed");
	ck_assert_int_eq(json_integer_value(json_object_get(sup, "total")), 1);
	ck_assert_int_eq(json_integer_value(json_object_get(json_object_get(sup,
	    "by_reason"), "hard-bounce")), 1);
	ck_assert_int_eq(json_integer_value(json_object_get(r, "failed")), 1);
	ck_assert_int_eq(json_integer_value(json_object_get(r, "unknown")), 0);
	ck_assert_int_eq(json_integer_value(json_object_get(r, "not_sent")), 0);
	ck_assert_int_eq(json_integer_value(json_object_get(r, "bounced")), 1);
	ck_assert_int_eq(json_integer_value(json_object_get(r, "complained")), 1);
	ck_assert_int_eq(json_integer_value(json_object_get(r, "unsubscribed")), 1);
	json_decref(r);

	/* cancelled: what was queued or in flight is "not sent" */
	ck_assert_int_eq(campaign_cancel(conn, "c", &err), 0);
	ck_assert_int_eq(campaign_report(conn, "c", &r, &err), 0);
	ck_assert_int_eq(json_integer_value(json_object_get(r, "not_sent")), 2);
	ck_assert_str_eq(json_string_value(json_object_get(r, "state")), "cancelled");
	json_decref(r);
	ck_assert_int_eq(campaign_status(conn, "c", MAX_AGE, &st, &err), 0);
	ck_assert(json_is_null(json_object_get(st, "eta")));
	ck_assert(json_is_null(json_object_get(st, "rate")));
	json_decref(st);
	ck_assert_int_eq(campaign_report(conn, "nope", &r, &err), -1);
	ck_assert_ptr_nonnull(strstr(err.msg, "unknown campaign nope"));
	ck_assert_int_eq(campaign_status(conn, "nope", MAX_AGE, &st, &err), -1);
}
END_TEST

START_TEST(test_status_note_when_too_old)
{
	struct assent_err err;
	char at[32];
	json_t *st;

	create("c");
	schedule("c", iso_from_now(-2 * 3600, at), false);
	ck_assert_int_eq(campaign_status(conn, "c", 3600, &st, &err), 0);
	ck_assert_str_eq(json_string_value(json_object_get(st, "state")), "scheduled");
	ck_assert(json_is_string(json_object_get(st, "note")));
	ck_assert_msg(strstr(json_string_value(json_object_get(st, "note")), "--force")
	    != NULL, "%s", json_string_value(json_object_get(st, "note")));
	ck_assert(json_is_null(json_object_get(st, "eta")));
	ck_assert_int_eq(json_integer_value(json_object_get(st, "total")), 0);
	json_decref(st);
	ck_assert_int_eq(campaign_status(conn, "c", MAX_AGE, &st, &err), 0);
	ck_assert(json_is_null(json_object_get(st, "note")));
	json_decref(st);
}
END_TEST

static double
rate_of(const char *name)
{
	struct assent_err err;
	json_t *st;
	double rate;

	ck_assert_msg(campaign_status(conn, name, MAX_AGE, &st, &err) == 0, "%s",
	    err.msg);
	rate = json_is_null(json_object_get(st, "rate")) ? -1 :
	    json_real_value(json_object_get(st, "rate"));
	json_decref(st);
	return rate;
}

/* 59 messages sent over the 3 s since the start: about 20 a second, not
 * 59 / 60; the 41 left take about 2 s more. */
START_TEST(test_status_rate_over_real_window)
{
	struct assent_err err;
	json_t *st;
	const char *eta;
	struct tm tm;
	time_t now, at;
	double rate;
	int finished;

	started_with(100);
	sql_ok("UPDATE campaigns SET started_at = now() - interval '3 seconds'");
	sql_ok("UPDATE deliveries SET " TO_SENDING " WHERE id IN"
	    " (SELECT id FROM deliveries ORDER BY id LIMIT 59)");
	/* the first one long before the window: it does not count */
	sql_ok("UPDATE deliveries d SET state = 'sent', sent_at = CASE"
	    " WHEN n.i = 0 THEN now() - interval '10 minutes' ELSE now()"
	    " - interval '3 seconds' + (n.i * interval '50 milliseconds') END"
	    " FROM (SELECT id, row_number() OVER (ORDER BY id) - 1 AS i"
	    "  FROM deliveries WHERE state = 'sending') n WHERE d.id = n.id");

	ck_assert_msg(campaign_status(conn, "c", MAX_AGE, &st, &err) == 0, "%s",
	    err.msg);
	now = time(NULL);
	/* 58 in the window, the first of them 2.95 s ago */
	rate = json_real_value(json_object_get(st, "rate"));
	ck_assert_msg(rate > 58.0 / 4 && rate < 58.0 / 2.7, "rate %f", rate);
	eta = json_string_value(json_object_get(st, "eta"));
	ck_assert_ptr_nonnull(eta);
	memset(&tm, 0, sizeof(tm));
	ck_assert_ptr_nonnull(strptime(eta, "%Y-%m-%dT%H:%M:%SZ", &tm));
	at = timegm(&tm);
	/* 41 left at ~20/s: ~2 s */
	ck_assert_msg(at >= now && at <= now + 4, "eta %s, now %lld", eta,
	    (long long)now);
	json_decref(st);

	/* not sending: no rate */
	ck_assert_int_eq(campaign_pause(conn, "c", &err), 0);
	ck_assert(rate_of("c") == -1);
	ck_assert_int_eq(campaign_resume(conn, "c", &err), 0);
	ck_assert(rate_of("c") > 0);

	/* sending, nothing sent yet: 0, and no estimate */
	create("d");
	schedule("d", "now", false);
	ck_assert_int_eq(start_due(MAX_AGE), 1);
	ck_assert_msg(campaign_status(conn, "d", MAX_AGE, &st, &err) == 0, "%s",
	    err.msg);
	ck_assert_str_eq(json_string_value(json_object_get(st, "state")), "sending");
	ck_assert(json_is_real(json_object_get(st, "rate")));
	ck_assert(json_real_value(json_object_get(st, "rate")) == 0);
	ck_assert(json_is_null(json_object_get(st, "eta")));
	json_decref(st);

	/* done: no rate, even with sends a moment ago */
	sql_ok("UPDATE deliveries SET " TO_SENDING " WHERE state = 'queued'"
	    " AND campaign_id = (SELECT id FROM campaigns WHERE name = 'c')");
	sql_ok("UPDATE deliveries SET " TO_SENT " WHERE state = 'sending'");
	ck_assert_int_eq(campaign_finish_done(conn, &finished, &err), 0);
	ck_assert_str_eq(state_of("c"), "done");
	ck_assert(rate_of("c") == -1);
}
END_TEST

START_TEST(test_overdue)
{
	struct assent_err err;
	json_t *rows, *row;
	char at[32], stale_at[32];

	create("stale");
	create("forced");
	create("recent");
	create("future");
	create("draft");
	schedule("stale", iso_from_now(-2 * 3600, stale_at), false);
	schedule("forced", iso_from_now(-5 * 86400, at), true);
	schedule("recent", iso_from_now(-60, at), false);
	schedule("future", "2999-01-01T00:00:00Z", false);

	ck_assert_msg(campaign_overdue(conn, 3600, &rows, &err) == 0, "%s", err.msg);
	ck_assert_uint_eq(json_array_size(rows), 1);
	row = json_array_get(rows, 0);
	ck_assert_str_eq(json_string_value(json_object_get(row, "name")), "stale");
	ck_assert_str_eq(json_string_value(json_object_get(row, "scheduled_at")),
	    stale_at);
	ck_assert_int_eq(json_integer_value(json_object_get(row, "id")),
	    count("SELECT id FROM campaigns WHERE name = 'stale'"));
	json_decref(rows);

	/* the scheduler leaves it, so it stays overdue */
	ck_assert_int_eq(start_due(3600), 2);
	ck_assert_int_eq(campaign_overdue(conn, 3600, &rows, &err), 0);
	ck_assert_uint_eq(json_array_size(rows), 1);
	json_decref(rows);

	/* within a day's max_age it is not */
	ck_assert_int_eq(campaign_overdue(conn, MAX_AGE, &rows, &err), 0);
	ck_assert_uint_eq(json_array_size(rows), 0);
	json_decref(rows);

	/* rescheduled: no longer */
	schedule("stale", "now", false);
	ck_assert_int_eq(campaign_overdue(conn, 3600, &rows, &err), 0);
	ck_assert_uint_eq(json_array_size(rows), 0);
	json_decref(rows);
}
END_TEST

static const struct {
	const char *from, *sets;
} forbidden_moves[] = {
	{ NULL, "state = 'sent', sent_at = now()" },            /* queued -> sent */
	{ NULL, "state = 'unknown'" },                          /* queued -> unknown */
	{ TO_SENT, "state = 'queued'" },                        /* sent -> queued */
	{ TO_SENT, "state = 'failed'" },
	{ TO_SENT, "smtp_reply = 'changed'" },                  /* outcome fixed */
	{ NULL, "campaign_id = campaign_id + 1" },              /* identity */
	{ TO_SENT ", bounced_at = now()", "bounced_at = now() + interval '1 s'" },
};

START_TEST(test_delivery_trigger)
{
	started_with(1);
	if (forbidden_moves[_i].from != NULL) {
		move(0, TO_SENDING);
		move(0, forbidden_moves[_i].from);
	}
	ck_assert_int_eq(sql("UPDATE deliveries SET state = state"), 0);
	{
		char q[256];

		snprintf(q, sizeof(q), "UPDATE deliveries SET %s", forbidden_moves[_i].sets);
		ck_assert_msg(sql(q) == -1, "%s was accepted", q);
	}
	ck_assert_int_eq(sql("DELETE FROM deliveries"), -1);
	ck_assert_int_eq(sql("TRUNCATE deliveries"), -1);
	ck_assert_int_eq(count("SELECT count(*) FROM deliveries"), 1);
}
END_TEST

int
main(void)
{
	Suite *s = suite_create("campaign");
	TCase *tc = tcase_create("campaign");

	testhelp_require_servers();
	tcase_add_checked_fixture(tc, setup, testhelp_fixture_drop);
	tcase_set_timeout(tc, 60);
	tcase_add_test(tc, test_create_and_load);
	tcase_add_test(tc, test_create_plain_from_and_repeated_list);
	tcase_add_loop_test(tc, test_create_refusals, 0,
	    sizeof(refusals) / sizeof(refusals[0]));
	tcase_add_loop_test(tc, test_create_from_forms, 0,
	    sizeof(froms_ok) / sizeof(froms_ok[0]));
	tcase_add_test(tc, test_duplicate_name_refused);
	tcase_add_test(tc, test_edit_draft_only);
	tcase_add_test(tc, test_schedule_times);
	tcase_add_loop_test(tc, test_schedule_bad_times, 0,
	    sizeof(bad_times) / sizeof(bad_times[0]));
	tcase_add_test(tc, test_start_due_materialises_audience_once);
	tcase_add_test(tc, test_start_due_old_campaigns);
	tcase_add_test(tc, test_pause_resume_cancel);
	tcase_add_test(tc, test_finish_and_resend_unknown);
	tcase_add_test(tc, test_finish_empty_audience);
	tcase_add_test(tc, test_status_and_report);
	tcase_add_test(tc, test_status_note_when_too_old);
	tcase_add_test(tc, test_status_rate_over_real_window);
	tcase_add_test(tc, test_overdue);
	tcase_add_loop_test(tc, test_delivery_trigger, 0,
	    sizeof(forbidden_moves) / sizeof(forbidden_moves[0]));
	suite_add_tcase(s, tc);
	return testhelp_run_suite(s);
}

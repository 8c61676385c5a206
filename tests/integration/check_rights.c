/* Integration: the data subject's rights (export, rectify, unsubscribe,
 * erase) and the audit table */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "assent/addr.h"
#include "assent/db.h"
#include "assent/lists.h"
#include "assent/rights.h"
#include "assent/subs.h"
#include "assent/xmalloc.h"
#include "testhelp.h"

#define conn testhelp_conn
#define NELEM(a) (sizeof(a) / sizeof((a)[0]))

/* The person whose data is exported, corrected and erased. */
#define ZELDA        "Zelda.Quimby@Example.NET"
#define ZELDA_KEY    "zelda.quimby@example.net"
#define ZELDA_LOCAL  "zelda.quimby"
#define ZELDA_NAME   "Zelda Quimby"
#define IMPORT_SHA   "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"

static unsigned char pepper[32];
static struct suppress_ctx ctx = { pepper, sizeof(pepper), false };
static const struct audit_actor who = { "tester", "testhost" };

static const struct ledger_evidence web_ev = {
	.source = "signup form of " ZELDA_NAME, .ip = "2001:db8::7",
	.user_agent = "Mozilla/5.0 (zelda.quimby's laptop)", .page = "/join?u=" ZELDA_LOCAL,
	.consent_text_version = "v7",
};
static const struct ledger_evidence import_ev = {
	.source = "CRM import", .import_file = "customers-" ZELDA_LOCAL ".csv",
	.import_sha256 = IMPORT_SHA, .import_line = "3",
};
static const struct ledger_evidence cli_ev = {
	.source = "phone call", .operator_name = "tester",
};

static long
count(const char *sql)
{
	return testhelp_query_long(conn, sql);
}

static void
exec_ok(const char *sql)
{
	struct assent_err err;

	ck_assert_msg(db_exec(conn, NULL, &err, sql, 0, NULL) == 0, "%s: %s", sql,
	    err.msg);
}

static void
setup(void)
{
	struct assent_err err;

	for (size_t i = 0; i < sizeof(pepper); i++)
		pepper[i] = (unsigned char)(0xa0 + i);
	testhelp_fixture_db();
	ck_assert_int_eq(lists_create(conn, "news", NULL, false, &err), 0);
	ck_assert_int_eq(lists_create(conn, "letters", NULL, true, &err), 0);
	exec_ok("INSERT INTO consent_texts (version, body, sha256, effective_at,"
	    " created_by) VALUES ('v7', 'Yes, send me the news.',"
	    " encode(sha256('Yes, send me the news.'), 'hex'),"
	    " '2025-01-01T00:00:00Z', 'tester')");
}

static void
add(const char *email, const char *list, const struct ledger_evidence *ev,
    const char *channel, const char *name, const char *basis, const char *expires)
{
	struct subs_request req = {
		.email = email, .list = list, .name = name, .channel = channel,
		.basis = basis, .basis_expires_at = expires, .evidence = ev,
	};
	struct assent_err err;
	char status[16];

	ck_assert_msg(subs_add(conn, &req, status, NULL, &err) == 0, "%s: %s", email, err.msg);
}

static void
confirm(const char *email, const char *list)
{
	struct subs_request req = {
		.email = email, .list = list, .channel = "cli", .evidence = &cli_ev,
	};
	struct assent_err err;
	bool changed;

	ck_assert_msg(subs_confirm(conn, &req, &changed, &err) == 0, "%s", err.msg);
}

static long long
suppress(const char *input, const char *reason, const char *source)
{
	struct suppress_new n = { reason, source, "tester", NULL };
	struct suppress_target t;
	struct assent_err err;
	long long id;
	bool added;

	ck_assert_int_eq(suppress_target_parse(&ctx, input, false, &t, &err), 0);
	ck_assert_msg(suppress_add(conn, &t, &n, &id, &added, &err) == 0, "%s", err.msg);
	return id;
}

static json_t *
export(const char *email)
{
	struct assent_err err;
	json_t *doc;

	ck_assert_msg(rights_export(conn, &ctx, email, &who, &doc, &err) == 0, "%s",
	    err.msg);
	return doc;
}

static const char *
str(const json_t *o, const char *key)
{
	const json_t *v = json_object_get(o, key);

	ck_assert_msg(v != NULL, "no member %s", key);
	return json_is_null(v) ? NULL : json_string_value(v);
}

static void
assert_str_member(const json_t *o, const char *key, const char *want)
{
	const char *got = str(o, key);

	if (want == NULL)
		ck_assert_msg(got == NULL, "%s: want null, got %s", key, got);
	else
		ck_assert_msg(got != NULL && strcmp(got, want) == 0, "%s: want %s, got %s",
		    key, want, got != NULL ? got : "null");
}

static void
assert_verified(void)
{
	struct ledger_verify_result r;
	struct assent_err err;

	ck_assert_msg(ledger_verify(conn, &r, &err) == 0, "%s", err.msg);
	ck_assert_msg(r.problems == 0, "ledger verify: %s", r.what);
}

/* --- export ------------------------------------------------------------------ */

/* The ledger's columns a subject export must show: all of them except
 * the digests, the salt (blanked on erasure, never personal data of its
 * own), the internal txid, id and subscriber_id; list_id is shown as
 * the list's name. */
static json_t *
ledger_columns_expected(void)
{
	struct assent_err err;
	PGresult *res;
	json_t *cols = json_array();

	ck_assert_int_eq(db_exec(conn, &res, &err, "SELECT column_name::text"
	    " FROM information_schema.columns WHERE table_schema = 'public'"
	    " AND table_name = 'ledger' AND column_name NOT IN ('id', 'txid',"
	    " 'subscriber_id', 'salt', 'personal_sha256', 'content_sha256',"
	    " 'chain_sha256') ORDER BY ordinal_position", 0, NULL), 0);
	for (int i = 0; i < PQntuples(res); i++)
		json_array_append_new(cols, json_string(strcmp(PQgetvalue(res, i, 0),
		    "list_id") == 0 ? "list" : PQgetvalue(res, i, 0)));
	PQclear(res);
	ck_assert_int_ge(json_array_size(cols), 19);
	return cols;
}

START_TEST(test_export_holds_every_ledger_field)
{
	json_t *doc, *cols, *history, *ev, *col;
	size_t i, j;

	add(ZELDA, "news", &web_ev, "web", ZELDA_NAME, "implied", "2999-01-01T00:00:00Z");
	add(ZELDA, "letters", &import_ev, "import", NULL, NULL, NULL);
	doc = export(ZELDA);
	cols = ledger_columns_expected();
	history = json_object_get(doc, "history");
	ck_assert_int_eq(json_array_size(history), 2);
	json_array_foreach(history, i, ev)
		json_array_foreach(cols, j, col)
			ck_assert_msg(json_object_get(ev, json_string_value(col)) != NULL,
			    "history event %zu lacks ledger column %s", i,
			    json_string_value(col));
	ev = json_array_get(history, 0);
	assert_str_member(ev, "list", "news");
	assert_str_member(ev, "action", "subscribe");
	assert_str_member(ev, "channel", "web");
	assert_str_member(ev, "ip", "2001:db8::7");
	assert_str_member(ev, "user_agent", web_ev.user_agent);
	assert_str_member(ev, "page", web_ev.page);
	assert_str_member(ev, "source", web_ev.source);
	assert_str_member(ev, "consent_text_version", "v7");
	assert_str_member(ev, "basis", "implied");
	ck_assert_ptr_nonnull(strstr(str(ev, "basis_expires_at"), "2999-01-01T00:00:00"));
	ev = json_array_get(history, 1);
	assert_str_member(ev, "import_file", import_ev.import_file);
	assert_str_member(ev, "import_sha256", IMPORT_SHA);
	ck_assert_int_eq(json_integer_value(json_object_get(ev, "import_line")) +
	    (json_is_string(json_object_get(ev, "import_line")) ?
	    atoi(str(ev, "import_line")) : 0), 3);
	json_decref(cols);
	json_decref(doc);
}
END_TEST

START_TEST(test_export_document)
{
	json_t *doc, *o, *texts, *supp;

	add(ZELDA, "news", &web_ev, "web", ZELDA_NAME, "implied", "2999-01-01T00:00:00Z");
	suppress("@example.net", "hard-bounce", "bounces");
	suppress(ZELDA, "manual", "asked by phone");
	suppress("other@example.net", "manual", "someone else");
	doc = export("zelda.quimby@example.net");
	assert_str_member(doc, "format", RIGHTS_EXPORT_FORMAT);
	ck_assert_ptr_nonnull(str(doc, "generated_at"));
	o = json_object_get(doc, "profile");
	assert_str_member(o, "email", "Zelda.Quimby@example.net");
	assert_str_member(o, "name", ZELDA_NAME);
	ck_assert(json_is_object(json_object_get(o, "attrs")));
	ck_assert_ptr_nonnull(str(o, "created_at"));
	ck_assert_ptr_nonnull(str(o, "updated_at"));
	o = json_array_get(json_object_get(doc, "subscriptions"), 0);
	assert_str_member(o, "list", "news");
	assert_str_member(o, "status", "confirmed");
	assert_str_member(o, "basis", "implied");
	ck_assert_ptr_nonnull(str(o, "since"));
	ck_assert_ptr_nonnull(strstr(str(o, "basis_expires_at"), "2999-01-01"));
	texts = json_object_get(doc, "consent_texts");
	ck_assert_int_eq(json_array_size(texts), 1);
	o = json_array_get(texts, 0);
	assert_str_member(o, "version", "v7");
	assert_str_member(o, "body", "Yes, send me the news.");
	ck_assert_int_eq(strlen(str(o, "sha256")), 64);
	ck_assert_ptr_nonnull(strstr(str(o, "effective_at"), "2025-01-01T00:00:00"));
	supp = json_object_get(doc, "suppression");
	ck_assert(json_is_true(json_object_get(supp, "suppressed")));
	assert_str_member(json_object_get(supp, "entry"), "kind", "address");
	/* the address and its domain; not someone else's entry */
	ck_assert_int_eq(json_array_size(json_object_get(supp, "entries")), 2);
	ck_assert(json_is_array(json_object_get(doc, "messages")));
	ck_assert_int_eq(json_array_size(json_object_get(doc, "messages")), 0);
	ck_assert_int_eq(count("SELECT count(*) FROM audit WHERE action = 'export'"
	    " AND subject = 'subscriber 1' AND operator = 'tester'"
	    " AND host = 'testhost'"), 1);
	json_decref(doc);
}
END_TEST

/* --- unknown addresses ----------------------------------------------------------- */

START_TEST(test_unknown_address)
{
	struct rights_rectify r = { .email = "nobody@example.org", .name = "X",
	    .reason = "r" };
	struct assent_err err;
	json_t *out = NULL;
	int rc = 0;

	add(ZELDA, "news", &cli_ev, "cli", NULL, NULL, NULL);
	switch (_i) {
	case 0:
		rc = rights_export(conn, &ctx, "nobody@example.org", &who, &out, &err);
		break;
	case 1:
		rc = rights_rectify(conn, &r, &who, &out, &err);
		break;
	case 2:
		rc = rights_erase(conn, &ctx, "nobody@example.org", "ticket 1", &who,
		    &out, &err);
		break;
	case 3:
		rc = rights_unsubscribe(conn, "nobody@example.org", NULL, &cli_ev, &out,
		    &err);
		break;
	}
	ck_assert_int_eq(rc, -1);
	ck_assert_int_eq(err.code, EX_DATAERR);
	ck_assert_msg(strstr(err.msg, "no subscriber nobody@example.org") != NULL,
	    "%s", err.msg);
	ck_assert_ptr_null(out);
	ck_assert_int_eq(count("SELECT count(*) FROM audit"), 0);
	ck_assert_int_eq(count("SELECT count(*) FROM ledger"), 1);
}
END_TEST

/* --- rectify --------------------------------------------------------------------- */

static int
rectify(const struct rights_rectify *r, json_t **summary_r, struct assent_err *err)
{
	return rights_rectify(conn, r, &who, summary_r, err);
}

START_TEST(test_rectify_name_and_attrs)
{
	const struct rights_attr attrs[] = {
		{ "city", "Oslo" }, { "zip", "0150" }, { "city", "Bergen" },
	};
	const struct rights_attr drop[] = { { "zip", "" }, { "absent", "" } };
	struct rights_rectify r = {
		.email = ZELDA, .name = "Zelda Q. Quimby", .attrs = attrs, .nattrs = 3,
		.reason = "typo reported by phone",
	};
	struct assent_err err;
	json_t *s;

	add(ZELDA, "news", &cli_ev, "cli", ZELDA_NAME, NULL, NULL);
	ck_assert_msg(rectify(&r, &s, &err) == 0, "%s", err.msg);
	ck_assert_int_eq(json_array_size(json_object_get(s, "changed")), 3);
	json_decref(s);
	ck_assert_int_eq(count("SELECT count(*) FROM subscribers WHERE name ="
	    " 'Zelda Q. Quimby' AND attrs = '{\"city\": \"Bergen\", \"zip\": \"0150\"}'"), 1);
	/* one event for every list, naming the fields, not the values */
	ck_assert_int_eq(count("SELECT count(*) FROM ledger WHERE action = 'rectify'"
	    " AND list_id IS NULL AND status_after IS NULL AND channel = 'cli'"
	    " AND source = 'rectified name, attrs.city, attrs.zip;"
	    " reason: typo reported by phone'"), 1);
	ck_assert_int_eq(count("SELECT count(*) FROM audit WHERE action = 'rectify'"
	    " AND detail->'fields' = '[\"name\", \"attrs.city\", \"attrs.zip\"]'"), 1);
	/* removing a key; an absent key and an unchanged name are no change */
	r.name = "Zelda Q. Quimby";
	r.attrs = drop;
	r.nattrs = 2;
	ck_assert_msg(rectify(&r, &s, &err) == 0, "%s", err.msg);
	ck_assert_int_eq(json_array_size(json_object_get(s, "changed")), 1);
	json_decref(s);
	ck_assert_int_eq(count("SELECT count(*) FROM subscribers WHERE"
	    " attrs = '{\"city\": \"Bergen\"}'"), 1);
	ck_assert_msg(rectify(&r, &s, &err) == 0, "%s", err.msg);
	ck_assert_int_eq(json_array_size(json_object_get(s, "changed")), 0);
	json_decref(s);
	ck_assert_int_eq(count("SELECT count(*) FROM ledger WHERE action = 'rectify'"), 2);
	ck_assert_int_eq(count("SELECT count(*) FROM audit"), 2);
	assert_verified();
}
END_TEST

START_TEST(test_rectify_email_on_double_optin_goes_pending)
{
	struct rights_rectify r = {
		.email = ZELDA, .new_email = "Zelda@Quimby.EXAMPLE", .reason = "new mailbox",
	};
	struct assent_err err;
	json_t *s;

	add(ZELDA, "news", &cli_ev, "cli", NULL, NULL, NULL);
	add(ZELDA, "letters", &cli_ev, "cli", NULL, NULL, NULL);
	confirm(ZELDA, "letters");
	ck_assert_msg(rectify(&r, &s, &err) == 0, "%s", err.msg);
	assert_str_member(s, "email", "Zelda@quimby.example");
	ck_assert_int_eq(json_array_size(json_object_get(s, "pending")), 1);
	assert_str_member(s, "email", "Zelda@quimby.example");
	json_decref(s);
	ck_assert_int_eq(count("SELECT count(*) FROM subscribers WHERE"
	    " email = 'Zelda@quimby.example' AND email_key = 'zelda@quimby.example'"), 1);
	ck_assert_int_eq(count("SELECT count(*) FROM subscriptions s JOIN lists l"
	    " ON l.id = s.list_id WHERE (l.name, s.status) IN (('letters', 'pending'),"
	    " ('news', 'confirmed'))"), 2);
	ck_assert_int_eq(count("SELECT count(*) FROM ledger e JOIN lists l"
	    " ON l.id = e.list_id WHERE e.action = 'rectify' AND ("
	    " (l.name = 'letters' AND e.status_before = 'confirmed'"
	    "  AND e.status_after = 'pending') OR (l.name = 'news'"
	    "  AND e.status_before = 'confirmed' AND e.status_after = 'confirmed'))"
	    " AND e.source = 'rectified email; reason: new mailbox'"), 2);
	ck_assert_int_eq(count("SELECT count(*) FROM ledger WHERE source ILIKE '%quimby%'"), 0);
	ck_assert_int_eq(count("SELECT count(*) FROM audit WHERE action = 'rectify'"
	    " AND detail->'pending' = '[\"letters\"]'"), 1);
	assert_verified();
}
END_TEST

/* Refused rectifications change nothing. */
static const struct {
	const char *name, *new_email, *reason, *attr_key, *attr_value, *why;
	int code;
} rectify_refusals[] = {
	{ NULL, "taken@example.org", "r", NULL, NULL, "another subscriber has "
	  "taken@example.org", EX_DATAERR },
	{ NULL, "TAKEN@example.org", "r", NULL, NULL, "another subscriber", EX_DATAERR },
	{ NULL, "not an address", "r", NULL, NULL, "--email", EX_DATAERR },
	{ "X", NULL, NULL, NULL, NULL, "--reason", EX_DATAERR },
	{ "X", NULL, "two\nlines", NULL, NULL, "--reason", EX_DATAERR },
	{ "bad\rname", NULL, "r", NULL, NULL, "name", EX_DATAERR },
	{ NULL, NULL, "r", "bad key", "v", "attribute name", EX_DATAERR },
	{ NULL, NULL, "r", "k", "bad\x1bvalue", "attribute value", EX_DATAERR },
	{ NULL, NULL, "r", NULL, NULL, "nothing to rectify", EX_USAGE },
};

START_TEST(test_rectify_refusals)
{
	struct rights_attr attr = { rectify_refusals[_i].attr_key,
	    rectify_refusals[_i].attr_value };
	struct rights_rectify r = {
		.email = ZELDA, .name = rectify_refusals[_i].name,
		.new_email = rectify_refusals[_i].new_email,
		.reason = rectify_refusals[_i].reason,
		.attrs = &attr, .nattrs = attr.key != NULL ? 1 : 0,
	};
	struct assent_err err;
	json_t *s = NULL;

	add(ZELDA, "news", &cli_ev, "cli", ZELDA_NAME, NULL, NULL);
	add("taken@example.org", "news", &cli_ev, "cli", NULL, NULL, NULL);
	ck_assert_int_eq(rectify(&r, &s, &err), -1);
	ck_assert_ptr_null(s);
	ck_assert_int_eq(err.code, rectify_refusals[_i].code);
	ck_assert_msg(strstr(err.msg, rectify_refusals[_i].why) != NULL,
	    "\"%s\" lacks \"%s\"", err.msg, rectify_refusals[_i].why);
	ck_assert_int_eq(count("SELECT count(*) FROM subscribers WHERE email ="
	    " 'Zelda.Quimby@example.net' AND name = 'Zelda Quimby'"
	    " AND attrs = '{}'"), 1);
	ck_assert_int_eq(count("SELECT count(*) FROM ledger"), 2);
	ck_assert_int_eq(count("SELECT count(*) FROM audit"), 0);
}
END_TEST

/* --- unsubscribe ------------------------------------------------------------------- */

START_TEST(test_unsubscribe_one_list)
{
	struct assent_err err;
	json_t *s;

	add(ZELDA, "news", &cli_ev, "cli", NULL, NULL, NULL);
	add(ZELDA, "letters", &cli_ev, "cli", NULL, NULL, NULL);
	ck_assert_msg(rights_unsubscribe(conn, ZELDA, "news", &cli_ev, &s, &err) == 0,
	    "%s", err.msg);
	ck_assert_int_eq(json_array_size(json_object_get(s, "ended")), 1);
	ck_assert(json_is_null(json_object_get(s, "suppression")));
	json_decref(s);
	ck_assert_int_eq(count("SELECT count(*) FROM ledger WHERE action = 'unsubscribe'"
	    " AND channel = 'cli' AND status_before = 'confirmed'"
	    " AND status_after = 'unsubscribed' AND source = 'phone call'"
	    " AND operator = 'tester'"), 1);
	/* again: said so, nothing written */
	ck_assert_int_eq(rights_unsubscribe(conn, ZELDA, "news", &cli_ev, &s, &err), 0);
	ck_assert_int_eq(json_array_size(json_object_get(s, "ended")), 0);
	ck_assert_int_eq(json_array_size(json_object_get(s, "already")), 1);
	json_decref(s);
	ck_assert_int_eq(count("SELECT count(*) FROM ledger"), 3);
	ck_assert_int_eq(count("SELECT count(*) FROM subscriptions WHERE"
	    " status = 'pending'"), 1);
	ck_assert_int_eq(count("SELECT count(*) FROM suppressions"), 0);
	assert_verified();
}
END_TEST

START_TEST(test_unsubscribe_all_suppresses)
{
	struct suppress_verdict v;
	struct assent_err err;
	const char *key = ZELDA_KEY;
	json_t *s;

	add(ZELDA, "news", &cli_ev, "cli", NULL, NULL, NULL);
	add(ZELDA, "letters", &cli_ev, "cli", NULL, NULL, NULL);
	ck_assert_msg(rights_unsubscribe(conn, ZELDA, NULL, &cli_ev, &s, &err) == 0,
	    "%s", err.msg);
	ck_assert_int_eq(json_array_size(json_object_get(s, "ended")), 2);
	ck_assert(json_is_integer(json_object_get(s, "suppression")));
	json_decref(s);
	ck_assert_int_eq(count("SELECT count(*) FROM subscriptions WHERE"
	    " status = 'unsubscribed'"), 2);
	ck_assert_int_eq(count("SELECT count(*) FROM suppressions WHERE kind = 'address'"
	    " AND value = '" ZELDA_KEY "' AND reason = 'unsubscribe'"
	    " AND source = 'phone call' AND added_by = 'tester'"), 1);
	ck_assert_int_eq(suppress_gate(conn, &ctx, &key, 1, &v, &err), 0);
	ck_assert(v.suppressed);
	/* again: nothing left to end, the entry is there already */
	ck_assert_int_eq(rights_unsubscribe(conn, ZELDA, NULL, &cli_ev, &s, &err), 0);
	ck_assert_int_eq(json_array_size(json_object_get(s, "ended")), 0);
	json_decref(s);
	ck_assert_int_eq(count("SELECT count(*) FROM suppressions"), 1);
	ck_assert_int_eq(count("SELECT count(*) FROM ledger"), 4);
}
END_TEST

START_TEST(test_unsubscribe_refusals)
{
	struct assent_err err;
	json_t *s = NULL;

	add(ZELDA, "news", &cli_ev, "cli", NULL, NULL, NULL);
	ck_assert_int_eq(rights_unsubscribe(conn, ZELDA, "letters", &cli_ev, &s, &err), -1);
	ck_assert_int_eq(err.code, EX_DATAERR);
	ck_assert_ptr_nonnull(strstr(err.msg, "not subscribed to letters"));
	ck_assert_int_eq(rights_unsubscribe(conn, ZELDA, "nolist", &cli_ev, &s, &err), -1);
	ck_assert_ptr_nonnull(strstr(err.msg, "unknown list"));
	ck_assert_ptr_null(s);
	ck_assert_int_eq(count("SELECT count(*) FROM ledger"), 1);
}
END_TEST

/* --- erase ------------------------------------------------------------------------- */

/* A person with everything: two lists, evidence of every kind, a
 * correction, plain suppression entries (one removed, one naming her),
 * an export. */
static void
zelda_with_history(void)
{
	const struct rights_attr attrs[] = { { "city", "Oslo" },
	    { "nick", ZELDA_LOCAL } };
	struct rights_rectify r = { .email = ZELDA, .attrs = attrs, .nattrs = 2,
	    .reason = "form error" };
	struct suppress_removal rm = { "mistake, said " ZELDA_LOCAL, "tester", false, &who };
	struct suppress_target t;
	struct assent_err err;
	json_t *s;

	add(ZELDA, "news", &web_ev, "web", ZELDA_NAME, "implied", "2999-01-01T00:00:00Z");
	add(ZELDA, "letters", &import_ev, "import", NULL, NULL, NULL);
	ck_assert_msg(rectify(&r, &s, &err) == 0, "%s", err.msg);
	json_decref(s);
	suppress(ZELDA, "manual", "asked by " ZELDA_KEY);
	ck_assert_int_eq(suppress_target_parse(&ctx, ZELDA, false, &t, &err), 0);
	ck_assert_int_eq(suppress_remove(conn, &t, 0, &rm, NULL, &err), 0);
	suppress(ZELDA, "complaint", "feedback loop");
	json_decref(export(ZELDA));
	add("bystander@example.net", "news", &cli_ev, "cli", NULL, NULL, NULL);
	suppress("bystander@example.net", "manual", "unrelated");
	/* a campaign that bounced on her, and a test send to her */
	static const char *const sending[] = {
		"INSERT INTO campaigns (name, state, subject, from_address,"
		" body_text, scheduled_at, created_by) VALUES ('spring', 'sending',"
		" 'News', 'news@example.org', 'x', now(), 'tester')",
		"INSERT INTO deliveries (campaign_id, subscriber_id, list_id, domain)"
		" SELECT 1, id, 1, 'example.net' FROM subscribers"
		"  WHERE email_key = '" ZELDA_KEY "'",
		"UPDATE deliveries SET state = 'sending', sender_session = 7",
		"UPDATE deliveries SET state = 'failed', smtp_reply ="
		" '550 5.1.1 <" ZELDA_KEY ">: user unknown'",
		"INSERT INTO test_sends (campaign_id, email, outcome, detail, sent_by)"
		" VALUES (1, '" ZELDA_KEY "', 'sent', '250 ok', 'tester')",
	};
	for (size_t i = 0; i < sizeof(sending) / sizeof(sending[0]); i++)
		ck_assert_msg(db_exec(conn, NULL, &err, sending[i], 0, NULL) == 0,
		    "%s", err.msg);
}

/* Every text, varchar and jsonb column of every table: how many values
 * hold needle (ILIKE). With show, each column that does is named. */
static long
trace_count_show(const char *needle, bool show)
{
	struct assent_err err;
	PGresult *cols;
	long total = 0, n;
	char *sql, *table, *column, *pattern = xasprintf("%%%s%%", needle);
	const char *params[] = { pattern };
	PGresult *res;

	ck_assert_int_eq(db_exec(conn, &cols, &err, "SELECT c.table_name::text,"
	    " c.column_name::text FROM information_schema.columns c"
	    " JOIN information_schema.tables t USING (table_schema, table_name)"
	    " WHERE c.table_schema = 'public' AND t.table_type = 'BASE TABLE'"
	    " AND c.data_type IN ('text', 'character varying', 'character', 'jsonb',"
	    " 'json', 'ARRAY', 'USER-DEFINED')", 0, NULL), 0);
	ck_assert_int_ge(PQntuples(cols), 30);
	for (int i = 0; i < PQntuples(cols); i++) {
		table = PQescapeIdentifier(conn, PQgetvalue(cols, i, 0),
		    strlen(PQgetvalue(cols, i, 0)));
		column = PQescapeIdentifier(conn, PQgetvalue(cols, i, 1),
		    strlen(PQgetvalue(cols, i, 1)));
		sql = xasprintf("SELECT count(*) FROM %s WHERE %s::text ILIKE $1",
		    table, column);
		ck_assert_msg(db_exec(conn, &res, &err, sql, 1, params) == 0, "%s", err.msg);
		n = atol(PQgetvalue(res, 0, 0));
		if (n > 0 && show)
			fprintf(stderr, "# trace of \"%s\" in %s.%s\n", needle,
			    PQgetvalue(cols, i, 0), PQgetvalue(cols, i, 1));
		total += n;
		PQclear(res);
		free(sql);
		PQfreemem(table);
		PQfreemem(column);
	}
	PQclear(cols);
	free(pattern);
	return total;
}

static long
trace_count(const char *needle)
{
	return trace_count_show(needle, false);
}

/* The count that must be 0 after an erasure: names where it was found. */
static long
trace_left(const char *needle)
{
	return trace_count_show(needle, true);
}

START_TEST(test_erase_leaves_no_trace)
{
	struct suppress_verdict v;
	struct assent_err err;
	const char *key = ZELDA_KEY;
	bool erased;
	json_t *s, *doc;

	zelda_with_history();
	/* the search finds her before */
	ck_assert_int_gt(trace_count(ZELDA_LOCAL), 5);
	ck_assert_int_gt(trace_count(ZELDA_NAME), 0);
	ck_assert_msg(rights_erase(conn, &ctx, ZELDA, "ticket 4711", &who, &s, &err) == 0,
	    "%s", err.msg);
	ck_assert_int_eq(json_integer_value(json_object_get(s, "subscriptions")), 2);
	ck_assert_int_eq(json_integer_value(json_object_get(s, "suppressions_hashed")), 2);
	json_decref(s);
	ck_assert_int_eq(trace_left(ZELDA_LOCAL), 0);
	ck_assert_int_eq(trace_left(ZELDA_KEY), 0);
	ck_assert_int_eq(trace_left(ZELDA_NAME), 0);
	ck_assert_int_eq(trace_left("Quimby"), 0);
	ck_assert_int_eq(trace_count("bystander@example.net"), 3);
	/* the gate still refuses her, by the keyed hash */
	ck_assert_int_eq(suppress_gate(conn, &ctx, &key, 1, &v, &err), 0);
	ck_assert(v.suppressed);
	ck_assert_int_eq(v.entry.kind, SUPPRESS_HASH);
	ck_assert_str_eq(v.entry.reason, "erasure");
	ck_assert_int_eq(rights_is_erased(conn, &ctx, ZELDA_KEY, &erased, &err), 0);
	ck_assert(erased);
	ck_assert_int_eq(rights_is_erased(conn, &ctx, "bystander@example.net", &erased,
	    &err), 0);
	ck_assert(!erased);
	/* the old entries keep their reasons, as hashes */
	ck_assert_int_eq(count("SELECT count(*) FROM suppressions WHERE kind = 'hash'"
	    " AND reason IN ('manual', 'complaint') AND removed_at IS NOT NULL"), 2);
	/* nobody is found any more */
	ck_assert_int_eq(subs_show(conn, ZELDA, &doc, &err), -1);
	ck_assert_int_eq(err.code, EX_DATAERR);
	ck_assert_int_eq(rights_export(conn, &ctx, ZELDA, &who, &doc, &err), -1);
	ck_assert_int_eq(err.code, EX_DATAERR);
	ck_assert_ptr_nonnull(strstr(err.msg, "erased"));
	/* the ledger: erase events, personal fields blank, chain intact */
	ck_assert_int_eq(count("SELECT count(*) FROM ledger WHERE action = 'erase'"
	    " AND status_after = 'unsubscribed'"), 2);
	ck_assert_int_eq(count("SELECT count(*) FROM ledger WHERE subscriber_id = 1"
	    " AND (erased_at IS NULL OR ip IS NOT NULL OR source IS NOT NULL)"), 0);
	assert_verified();
	ck_assert_int_eq(count("SELECT count(*) FROM audit WHERE action = 'erase'"
	    " AND subject = 'subscriber 1' AND detail->>'reason' = 'ticket 4711'"
	    " AND length(detail->>'hash') = 64"), 1);
	ck_assert_int_eq(count("SELECT count(*) FROM subscribers WHERE id = 1"
	    " AND erased_at IS NOT NULL AND email IS NULL"), 1);
}
END_TEST

START_TEST(test_erase_without_subscriptions)
{
	struct assent_err err;

	exec_ok("INSERT INTO subscribers (email, email_key, name)"
	    " VALUES ('" ZELDA_KEY "', '" ZELDA_KEY "', '" ZELDA_NAME "')");
	ck_assert_int_eq(rights_erase(conn, &ctx, ZELDA, "ticket 1", &who, NULL, &err), 0);
	ck_assert_int_eq(count("SELECT count(*) FROM ledger WHERE action = 'erase'"
	    " AND list_id IS NULL AND status_after IS NULL"), 1);
	ck_assert_int_eq(count("SELECT count(*) FROM subscribers WHERE name = ''"
	    " AND erased_at IS NOT NULL"), 1);
	assert_verified();
	/* erasing twice: the address is gone */
	ck_assert_int_eq(rights_erase(conn, &ctx, ZELDA, "ticket 1", &who, NULL, &err), -1);
	ck_assert_int_eq(err.code, EX_DATAERR);
	ck_assert_ptr_nonnull(strstr(err.msg, "erased"));
}
END_TEST

/* A fingerprint of every table's rows: one md5 a table. */
static char *
database_fingerprint(void)
{
	struct assent_err err;
	PGresult *tables, *res;
	char *fp = xstrdup(""), *next, *ident, *sql;

	ck_assert_int_eq(db_exec(conn, &tables, &err, "SELECT table_name::text"
	    " FROM information_schema.tables WHERE table_schema = 'public'"
	    " AND table_type = 'BASE TABLE' ORDER BY table_name", 0, NULL), 0);
	ck_assert_int_ge(PQntuples(tables), 7);
	for (int i = 0; i < PQntuples(tables); i++) {
		ident = PQescapeIdentifier(conn, PQgetvalue(tables, i, 0),
		    strlen(PQgetvalue(tables, i, 0)));
		sql = xasprintf("SELECT md5(coalesce(string_agg(t::text, ','"
		    " ORDER BY t::text), '')) FROM %s t", ident);
		ck_assert_msg(db_exec(conn, &res, &err, sql, 0, NULL) == 0, "%s", err.msg);
		next = xasprintf("%s%s=%s ", fp, PQgetvalue(tables, i, 0),
		    PQgetvalue(res, 0, 0));
		free(fp);
		fp = next;
		PQclear(res);
		free(sql);
		PQfreemem(ident);
	}
	PQclear(tables);
	return fp;
}

START_TEST(test_erase_is_all_or_nothing)
{
	struct assent_err err;
	char *before, *after;

	zelda_with_history();
	before = database_fingerprint();
	exec_ok("CREATE FUNCTION fail_audit() RETURNS trigger LANGUAGE plpgsql AS"
	    " $$ BEGIN RAISE EXCEPTION 'audit is down'; END $$");
	exec_ok("CREATE TRIGGER zz_fail BEFORE INSERT ON audit FOR EACH ROW"
	    " EXECUTE FUNCTION fail_audit()");
	ck_assert_int_eq(rights_erase(conn, &ctx, ZELDA, "ticket 9", &who, NULL, &err), -1);
	ck_assert_ptr_nonnull(strstr(err.msg, "audit is down"));
	after = database_fingerprint();
	ck_assert_str_eq(after, before);
	exec_ok("DROP TRIGGER zz_fail ON audit");
	ck_assert_msg(rights_erase(conn, &ctx, ZELDA, "ticket 9", &who, NULL, &err) == 0,
	    "%s", err.msg);
	free(after);
	after = database_fingerprint();
	ck_assert_str_ne(after, before);
	free(before);
	free(after);
}
END_TEST

static const char *const naming_reasons[] = {
	"asked by " ZELDA_KEY, "ZELDA.QUIMBY wrote in", "call from zelda quimby",
	"jo@b\u00fccher.de asked by phone", "Quimby asked on the phone",
	"ticket from quimby", "mail from zq@quimby.example",
};

/* A reason that only happens to share a domain word is fine. */
START_TEST(test_erase_reason_may_name_the_channel)
{
	struct assent_err err;

	add(ZELDA, "news", &cli_ev, "cli", NULL, NULL, NULL);
	ck_assert_msg(rights_erase(conn, &ctx, ZELDA, "request via internet form, "
	    "ticket 7", &who, NULL, &err) == 0, "%s", err.msg);
}
END_TEST

START_TEST(test_erase_reason_must_not_name_the_person)
{
	struct assent_err err;

	add(ZELDA, "news", &cli_ev, "cli", ZELDA_NAME, NULL, NULL);
	ck_assert_int_eq(rights_erase(conn, &ctx, ZELDA, naming_reasons[_i], &who, NULL,
	    &err), -1);
	ck_assert_int_eq(err.code, EX_DATAERR);
	ck_assert_ptr_nonnull(strstr(err.msg, "must not name the person"));
	ck_assert_int_eq(count("SELECT count(*) FROM subscribers WHERE erased_at"
	    " IS NULL"), 1);
}
END_TEST

/* --- what the database refuses ------------------------------------------------------ */

static const char *const refused_sql[] = {
	"UPDATE audit SET host = 'elsewhere'",
	"DELETE FROM audit",
	"TRUNCATE audit",
	"INSERT INTO audit (operator, host, action, subject)"
	" VALUES ('t', 'h', 'export', '" ZELDA_KEY "')",
	"INSERT INTO audit (operator, host, action, subject)"
	" VALUES ('t', 'h', 'browse', 'subscriber 1')",
	"UPDATE subscribers SET name = 'back' WHERE erased_at IS NOT NULL",
	"UPDATE subscribers SET erased_at = NULL WHERE erased_at IS NOT NULL",
	"UPDATE subscribers SET erased_at = now() WHERE email = 'bystander@example.net'",
	"INSERT INTO subscribers (email, email_key, erased_at)"
	" VALUES ('n@example.net', 'n@example.net', now())",
	"SELECT suppress_erase_plain('bystander@example.net', repeat('cd', 32), 'x')",
	"SELECT suppress_erase_plain('Bystander@example.net', 'nothex', 'x')",
};

START_TEST(test_database_refuses)
{
	struct assent_err err;

	add(ZELDA, "news", &cli_ev, "cli", NULL, NULL, NULL);
	add("bystander@example.net", "news", &cli_ev, "cli", NULL, NULL, NULL);
	suppress("bystander@example.net", "manual", "x");
	json_decref(export("bystander@example.net"));
	ck_assert_int_eq(rights_erase(conn, &ctx, ZELDA, "ticket 2", &who, NULL, &err), 0);
	ck_assert_msg(db_exec(conn, NULL, &err, refused_sql[_i], 0, NULL) == -1,
	    "accepted: %s", refused_sql[_i]);
	db_rollback(conn);
	ck_assert_int_eq(count("SELECT count(*) FROM audit"), 2);
	ck_assert_int_eq(count("SELECT count(*) FROM suppressions WHERE kind = 'address'"
	    " AND value = 'bystander@example.net' AND removed_at IS NULL"), 1);
	ck_assert_int_eq(count("SELECT count(*) FROM subscribers WHERE erased_at"
	    " IS NOT NULL AND email IS NULL AND name = ''"), 1);
}
END_TEST

START_TEST(test_audit_rows)
{
	struct assent_err err;
	json_t *d = json_pack("{s:s}", "k", "v");

	ck_assert_int_eq(audit_append(conn, &who, "suppress-remove", "suppression 3", d,
	    &err), 0);
	ck_assert_int_eq(audit_append(conn, &who, "export", ZELDA_KEY, NULL, &err), -1);
	ck_assert_int_eq(err.code, EX_DATAERR);
	json_decref(d);
	ck_assert_int_eq(count("SELECT count(*) FROM audit WHERE action ="
	    " 'suppress-remove' AND subject = 'suppression 3' AND operator = 'tester'"
	    " AND host = 'testhost' AND detail = '{\"k\": \"v\"}'"
	    " AND at > now() - interval '1 minute'"), 1);
}
END_TEST

/* The erasure exceptions, used for anyone but a person being erased:
 * each sequence runs in one transaction and must fail at the step
 * named, leaving the bystander's suppression and ledger as they were. */
#define ERASURE_HASH "(SELECT value FROM suppressions WHERE reason = 'erasure'" \
	" AND removed_at IS NULL)"
static const struct {
	const char *what;
	const char *steps[4];
	int fails_at;
} misuse[] = {
	{ "function on a live bystander", {
	  "SELECT suppress_erase_plain('bystander@example.net', " ERASURE_HASH ", 'x')",
	  "COMMIT" }, 1 },
	{ "flag naming someone else", {
	  "SELECT set_config('assent.suppress_erase', " ERASURE_HASH
	  " || '|zelda@quimby.example', true)",
	  "UPDATE suppressions SET kind = 'hash', value = " ERASURE_HASH ","
	  " mailbox_key = NULL, removed_by = 'x', removed_reason = 'y'"
	  " WHERE value = 'bystander@example.net'" }, 1 },
	{ "flag naming the bystander", {
	  "SELECT set_config('assent.suppress_erase', " ERASURE_HASH
	  " || '|bystander@example.net', true)",
	  "UPDATE suppressions SET kind = 'hash', value = " ERASURE_HASH ","
	  " mailbox_key = NULL, removed_by = 'x', removed_reason = 'y'"
	  " WHERE value = 'bystander@example.net'",
	  "COMMIT" }, 2 },
	{ "flag without an erasure entry", {
	  "SELECT set_config('assent.suppress_erase', repeat('ab', 32)"
	  " || '|bystander@example.net', true)",
	  "UPDATE suppressions SET kind = 'hash', value = repeat('ab', 32),"
	  " mailbox_key = NULL, removed_by = 'x', removed_reason = 'y'"
	  " WHERE value = 'bystander@example.net'" }, 1 },
	{ "ledger blanked for a live bystander", {
	  "SELECT ledger_erase_personal((SELECT id FROM subscribers"
	  " WHERE email = 'bystander@example.net'))",
	  "COMMIT" }, 1 },
};

START_TEST(test_erasure_exceptions_only_for_the_erased)
{
	struct assent_err err;
	int i;

	add(ZELDA, "news", &cli_ev, "cli", NULL, NULL, NULL);
	add("bystander@example.net", "news", &web_ev, "web", NULL, NULL, NULL);
	suppress("bystander@example.net", "complaint", "x");
	ck_assert_int_eq(rights_erase(conn, &ctx, ZELDA, "ticket 2", &who, NULL, &err), 0);
	exec_ok("BEGIN");
	for (i = 0; misuse[_i].steps[i] != NULL; i++)
		if (db_exec(conn, NULL, &err, misuse[_i].steps[i], 0, NULL) == -1)
			break;
	ck_assert_msg(i == misuse[_i].fails_at, "%s: failed at step %d, not %d (%s)",
	    misuse[_i].what, i, misuse[_i].fails_at, err.msg);
	db_rollback(conn);
	ck_assert_int_eq(count("SELECT count(*) FROM suppressions WHERE kind = 'address'"
	    " AND value = 'bystander@example.net' AND removed_at IS NULL"), 1);
	ck_assert_int_eq(count("SELECT count(*) FROM ledger l JOIN subscribers s"
	    " ON s.id = l.subscriber_id WHERE s.email = 'bystander@example.net'"
	    " AND l.ip IS NOT NULL AND l.erased_at IS NULL"), 1);
}
END_TEST

/* With gmail mailbox keys on, an erased gmail address keeps blocking
 * its other spellings, though only its hash is kept. */
START_TEST(test_erase_keeps_gmail_widening)
{
	struct suppress_ctx gmail = { pepper, sizeof(pepper), true };
	const char *keys[] = { "h.a.n.k.hill+news@gmail.com", "hankhill@googlemail.com",
	    "hank.hill@example.com" };
	struct suppress_verdict v[3];
	struct assent_err err;

	struct suppress_new n = { "complaint", "s", "tester", NULL };
	struct suppress_target t;
	long long id;
	bool added;

	add("Hank.Hill@gmail.com", "news", &cli_ev, "cli", NULL, NULL, NULL);
	/* an entry already kept hashed, which the erasure redacts */
	ck_assert_int_eq(suppress_target_parse(&gmail, "hank.hill@gmail.com", true, &t,
	    &err), 0);
	ck_assert_int_eq(strlen(t.mailbox_key), 64);
	ck_assert_msg(suppress_add(conn, &t, &n, &id, &added, &err) == 0, "%s", err.msg);
	ck_assert_int_eq(rights_erase(conn, &gmail, "hank.hill@gmail.com", "ticket 5",
	    &who, NULL, &err), 0);
	ck_assert_int_eq(count("SELECT count(*) FROM suppressions WHERE kind = 'hash'"
	    " AND reason = 'erasure' AND removed_at IS NULL"
	    " AND mailbox_key ~ '^[0-9a-f]{64}$'"), 1);
	ck_assert_int_eq(suppress_gate(conn, &gmail, keys, 3, v, &err), 0);
	ck_assert(v[0].suppressed);
	ck_assert(v[1].suppressed);
	ck_assert(!v[2].suppressed);
	/* with the option off, only the exact address */
	ck_assert_int_eq(suppress_gate(conn, &ctx, keys, 3, v, &err), 0);
	ck_assert(!v[0].suppressed);
	ck_assert(!v[1].suppressed);
}
END_TEST

/* What other entries of the erased address's hash said goes too. */
START_TEST(test_erase_redacts_hash_entries)
{
	struct assent_err err;
	struct suppress_new n = { "complaint", "phone complaint from " ZELDA, "tester", NULL };
	struct suppress_target t;
	long long id;
	bool added;

	add(ZELDA, "news", &cli_ev, "cli", NULL, NULL, NULL);
	ck_assert_int_eq(suppress_target_parse(&ctx, ZELDA, true, &t, &err), 0);
	ck_assert_msg(suppress_add(conn, &t, &n, &id, &added, &err) == 0, "%s", err.msg);
	ck_assert_int_eq(rights_erase(conn, &ctx, ZELDA, "ticket 3", &who, NULL, &err), 0);
	ck_assert_int_eq(count("SELECT count(*) FROM suppressions"
	    " WHERE source ILIKE '%quimby%' OR removed_reason ILIKE '%quimby%'"), 0);
}
END_TEST

int
main(void)
{
	Suite *s = suite_create("rights");
	TCase *tc = tcase_create("rights");

	testhelp_require_servers();
	tcase_add_checked_fixture(tc, setup, testhelp_fixture_drop);
	tcase_set_timeout(tc, 60);
	tcase_add_test(tc, test_export_holds_every_ledger_field);
	tcase_add_test(tc, test_export_document);
	tcase_add_loop_test(tc, test_unknown_address, 0, 4);
	tcase_add_test(tc, test_rectify_name_and_attrs);
	tcase_add_test(tc, test_rectify_email_on_double_optin_goes_pending);
	tcase_add_loop_test(tc, test_rectify_refusals, 0, NELEM(rectify_refusals));
	tcase_add_test(tc, test_unsubscribe_one_list);
	tcase_add_test(tc, test_unsubscribe_all_suppresses);
	tcase_add_test(tc, test_unsubscribe_refusals);
	tcase_add_test(tc, test_erase_leaves_no_trace);
	tcase_add_test(tc, test_erase_without_subscriptions);
	tcase_add_test(tc, test_erase_is_all_or_nothing);
	tcase_add_loop_test(tc, test_erase_reason_must_not_name_the_person, 0,
	    NELEM(naming_reasons));
	tcase_add_loop_test(tc, test_database_refuses, 0, NELEM(refused_sql));
	tcase_add_test(tc, test_audit_rows);
	tcase_add_loop_test(tc, test_erasure_exceptions_only_for_the_erased, 0,
	    (int)(sizeof(misuse) / sizeof(misuse[0])));
	tcase_add_test(tc, test_erase_redacts_hash_entries);
	tcase_add_test(tc, test_erase_keeps_gmail_widening);
	tcase_add_test(tc, test_erase_reason_may_name_the_channel);
	suite_add_tcase(s, tc);
	return testhelp_run_suite(s);
}

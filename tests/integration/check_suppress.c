/* Integration: the suppression list, its guards in the database, and the gate */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "assent/addr.h"
#include "assent/db.h"
#include "assent/suppress.h"
#include "testhelp.h"

#define conn testhelp_conn
#define NELEM(a) (sizeof(a) / sizeof((a)[0]))

/* bytes 0x00..0x1f: the expected hash below was computed with Python's hmac */
static const struct audit_actor tester = { "tester", "testhost" };

static unsigned char pepper[32];
static struct suppress_ctx ctx = { pepper, sizeof(pepper), false };

static long
count(const char *sql)
{
	return testhelp_query_long(conn, sql);
}

static void
setup(void)
{
	for (size_t i = 0; i < sizeof(pepper); i++)
		pepper[i] = (unsigned char)i;
	ctx.gmail_mailbox_key = false;
	testhelp_fixture_db();
}

/* Add input; returns the entry id. */
static long long
add_on(PGconn *c, const char *input, const char *reason, bool hashed,
    const char *expires, bool *added_r)
{
	struct suppress_new n = { reason, "test", "tester", expires };
	struct suppress_target t;
	struct assent_err err;
	long long id;
	bool added;

	ck_assert_msg(suppress_target_parse(&ctx, input, hashed, &t, &err) == 0,
	    "%s: %s", input, err.msg);
	ck_assert_msg(suppress_add(c, &t, &n, &id, &added, &err) == 0, "%s: %s",
	    input, err.msg);
	if (added_r != NULL)
		*added_r = added;
	return id;
}

static long long
add(const char *input, const char *reason)
{
	return add_on(conn, input, reason, false, NULL, NULL);
}

static int
rm(const char *input, const char *why, bool force, struct assent_err *err)
{
	struct suppress_removal r = { why, "tester", force, &tester };
	struct suppress_target t;

	ck_assert_int_eq(suppress_target_parse(&ctx, input, false, &t, err), 0);
	return suppress_remove(conn, &t, 0, &r, NULL, err);
}

/* The gate for one address as typed. */
static struct suppress_verdict
gate1(PGconn *c, const char *input)
{
	struct suppress_verdict v;
	struct assent_err err;
	struct addr a;
	const char *key = a.key;

	ck_assert_msg(addr_parse(input, &a, &err) == 0, "%s", err.msg);
	ck_assert_msg(suppress_gate(c, &ctx, &key, 1, &v, &err) == 0, "%s", err.msg);
	return v;
}

/* --- pure helpers: hashes, mailbox keys, parsing ------------------------------ */

START_TEST(test_hash_is_hmac_sha256_of_key)
{
	char hex[SUPPRESS_HASH_HEX + 1];

	suppress_hash(&ctx, "foo@example.com", hex);
	ck_assert_str_eq(hex,
	    "0f46a103f659e8f1efbe2ff927d3179f917047f09807c25aee6d63b915201ef6");
}
END_TEST

static const struct {
	const char *key, *want;         /* want NULL: no mailbox key */
} mailbox_cases[] = {
	{ "joe@gmail.com", "joe@gmail.com" },
	{ "j.o.e@gmail.com", "joe@gmail.com" },
	{ "j.o.e+x@googlemail.com", "joe@gmail.com" },
	{ "joe+a+b@gmail.com", "joe@gmail.com" },
	{ "+tag@gmail.com", NULL },
	{ "joe@example.com", NULL },
	{ "joe@gmail.com.example", NULL },
	{ "joe@sub.gmail.com", NULL },
};

START_TEST(test_mailbox_key)
{
	char out[ADDR_MAX + 1];
	bool got = suppress_mailbox_key(mailbox_cases[_i].key, out);

	ck_assert_int_eq(got, mailbox_cases[_i].want != NULL);
	ck_assert_str_eq(out, got ? mailbox_cases[_i].want : "");
}
END_TEST

static const struct {
	const char *input;
	bool hashed;
	int kind;                       /* -1: refused */
	const char *value;              /* or the message fragment */
} parse_cases[] = {
	{ "Foo@EXAMPLE.com", false, SUPPRESS_ADDRESS, "foo@example.com" },
	{ "b@Bücher.example", false, SUPPRESS_ADDRESS, "b@xn--bcher-kva.example" },
	{ "@Bücher.Example", false, SUPPRESS_DOMAIN, "xn--bcher-kva.example" },
	{ "@example.org", false, SUPPRESS_DOMAIN, "example.org" },
	{ "Foo@example.com", true, SUPPRESS_HASH,
	  "0f46a103f659e8f1efbe2ff927d3179f917047f09807c25aee6d63b915201ef6" },
	{ "0F46A103F659E8F1EFBE2FF927D3179F917047F09807C25AEE6D63B915201EF6", false,
	  SUPPRESS_HASH,
	  "0f46a103f659e8f1efbe2ff927d3179f917047f09807c25aee6d63b915201ef6" },
	{ "0f46a103f659e8f1efbe2ff927d3179f917047f09807c25aee6d63b915201ef", false,
	  -1, "invalid address" },
	{ "a..b@example.org", false, -1, "two dots" },
	{ "@bad_domain", false, -1, "invalid domain" },
	{ "@", false, -1, "domain" },
	{ "", false, -1, "invalid address" },
	{ "a@example.org\nb@example.org", false, -1, "invalid address" },
};

START_TEST(test_target_parse)
{
	struct suppress_target t;
	struct assent_err err;
	int rc = suppress_target_parse(&ctx, parse_cases[_i].input,
	    parse_cases[_i].hashed, &t, &err);

	if (parse_cases[_i].kind == -1) {
		ck_assert_int_eq(rc, -1);
		ck_assert_int_eq(err.code, EX_DATAERR);
		ck_assert_msg(strstr(err.msg, parse_cases[_i].value) != NULL,
		    "\"%s\" lacks \"%s\"", err.msg, parse_cases[_i].value);
	} else {
		ck_assert_msg(rc == 0, "%s", err.msg);
		ck_assert_int_eq(t.kind, parse_cases[_i].kind);
		ck_assert_str_eq(t.value, parse_cases[_i].value);
	}
}
END_TEST

static const struct {
	const char *text;
	bool ok;
} time_cases[] = {
	{ "2030-01-31", true }, { "2030-01-31T10:00Z", true },
	{ "2030-01-31T10:00:59Z", true }, { "2030-01-31 10:00:59.25+01:00", true },
	{ "2030-01-31T10:00-0500", true },
	{ "2030-01-31T10:00", false }, { "2030-1-31", false }, { "tomorrow", false },
	{ "2030-01-31T10:00Zjunk", false }, { "", false },
	{ "2030-01-31; DROP TABLE suppressions", false },
};

START_TEST(test_time_forms)
{
	struct assent_err err;

	ck_assert_int_eq(suppress_parse_time(time_cases[_i].text, "--expires", &err),
	    time_cases[_i].ok ? 0 : -1);
}
END_TEST

/* --- the gate: every kind, one mixed batch ------------------------------------ */

/* The list every gate test below starts from. */
static void
fill_list(void)
{
	struct assent_err err;

	add("Foo@EXAMPLE.com", "manual");
	add("@Bücher.example", "hard-bounce");
	add("@example.net", "hard-bounce");
	add("both@example.net", "unsubscribe");
	add_on(conn, "Hashed@Example.org", "erasure", true, NULL, NULL);
	add("j.o.e+x@googlemail.com", "complaint");
	add("plain@gmail.com", "unsubscribe");
	add_on(conn, "held@example.org", "soft-bounce-limit", false, "2999-01-01", NULL);
	add("removed@example.org", "manual");
	ck_assert_int_eq(rm("removed@example.org", "wrong entry", false, &err), 0);
}

static const struct {
	const char *recipient;
	const char *kind_off, *kind_on;  /* matching kind without / with gmail keys; NULL: none */
	const char *value;               /* the entry's value when matched */
} gate_cases[] = {
	{ "foo@example.com", "address", "address", "foo@example.com" },
	{ "FOO@example.COM", "address", "address", "foo@example.com" },
	{ "other@example.com", NULL, NULL, NULL },
	{ "x@bücher.example", "domain", "domain", "xn--bcher-kva.example" },
	{ "x@BÜCHER.example", "domain", "domain", "xn--bcher-kva.example" },
	{ "x@xn--bcher-kva.example", "domain", "domain", "xn--bcher-kva.example" },
	{ "x@sub.xn--bcher-kva.example", NULL, NULL, NULL },
	{ "a@example.net", "domain", "domain", "example.net" },
	{ "a@sub.example.net", NULL, NULL, NULL },
	{ "a@example.network", NULL, NULL, NULL },
	{ "both@example.net", "address", "address", "both@example.net" },
	{ "hashed@example.org", "hash", "hash", NULL },
	{ "HASHED@example.ORG", "hash", "hash", NULL },
	{ "hashed2@example.org", NULL, NULL, NULL },
	{ "j.o.e+x@googlemail.com", "address", "address", "j.o.e+x@googlemail.com" },
	{ "joe@gmail.com", NULL, "address", "j.o.e+x@googlemail.com" },
	{ "J.oe+News@googlemail.com", NULL, "address", "j.o.e+x@googlemail.com" },
	{ "joe2@gmail.com", NULL, NULL, NULL },
	{ "joe@example.com", NULL, NULL, NULL },
	{ "p.lain+z@googlemail.com", NULL, "address", "plain@gmail.com" },
	{ "held@example.org", "address", "address", "held@example.org" },
	{ "removed@example.org", NULL, NULL, NULL },
};

static void
check_batch(bool gmail)
{
	size_t n = NELEM(gate_cases);
	struct suppress_verdict v[NELEM(gate_cases)];
	struct addr a[NELEM(gate_cases)];
	const char *keys[NELEM(gate_cases)];
	struct assent_err err;

	for (size_t i = 0; i < n; i++) {
		ck_assert_msg(addr_parse(gate_cases[i].recipient, &a[i], &err) == 0,
		    "%s", err.msg);
		keys[i] = a[i].key;
	}
	ctx.gmail_mailbox_key = gmail;
	ck_assert_int_eq(db_begin(conn, &err), 0);
	ck_assert_msg(suppress_gate(conn, &ctx, keys, n, v, &err) == 0, "%s", err.msg);
	ck_assert_int_eq(db_commit(conn, &err), 0);
	for (size_t i = 0; i < n; i++) {
		const char *want = gmail ? gate_cases[i].kind_on : gate_cases[i].kind_off;

		ck_assert_msg(v[i].suppressed == (want != NULL), "%s (gmail %s): "
		    "suppressed %d", gate_cases[i].recipient, gmail ? "on" : "off",
		    v[i].suppressed);
		if (want == NULL)
			continue;
		ck_assert_str_eq(suppress_kind_name(v[i].entry.kind), want);
		if (gate_cases[i].value != NULL)
			ck_assert_str_eq(v[i].entry.value, gate_cases[i].value);
		ck_assert_str_eq(v[i].entry.source, "test");
		ck_assert_str_eq(v[i].entry.added_by, "tester");
		ck_assert(v[i].entry.id > 0);
	}
}

START_TEST(test_gate_batch_gmail_off)
{
	fill_list();
	check_batch(false);
}
END_TEST

START_TEST(test_gate_batch_gmail_on)
{
	fill_list();
	check_batch(true);
}
END_TEST

START_TEST(test_gate_reports_the_entry)
{
	struct suppress_verdict v;
	long long id;

	id = add_on(conn, "held@example.org", "soft-bounce-limit", false,
	    "2999-01-01T12:00:00+02:00", NULL);
	v = gate1(conn, "Held@Example.org");
	ck_assert(v.suppressed);
	ck_assert_int_eq(v.entry.id, id);
	ck_assert_str_eq(v.entry.reason, "soft-bounce-limit");
	ck_assert_str_eq(v.entry.expires_at, "2999-01-01T10:00:00Z");
	ck_assert_int_eq(strlen(v.entry.added_at), 20);
	v = gate1(conn, "nobody@example.org");
	ck_assert(!v.suppressed);
}
END_TEST

START_TEST(test_gate_empty_batch_and_bad_keys)
{
	struct suppress_verdict v[2];
	struct assent_err err;
	const char *bad[] = { "ok@example.org", "Upper@example.org" };
	const char *noat[] = { "nobody" };

	ck_assert_int_eq(suppress_gate(conn, &ctx, NULL, 0, v, &err), 0);
	ck_assert_int_eq(suppress_gate(conn, &ctx, bad, 2, v, &err), -1);
	ck_assert_int_eq(err.code, EX_SOFTWARE);
	ck_assert_int_eq(suppress_gate(conn, &ctx, noat, 1, v, &err), -1);
}
END_TEST

/* The promise: an entry committed before the claim stops the send,
 * even when the batch was built before the entry existed. */
START_TEST(test_entry_added_between_batch_and_claim)
{
	struct suppress_verdict v[3];
	struct assent_err err;
	struct addr a[3];
	const char *keys[3];
	const char *rcpt[] = { "first@example.org", "late@example.org", "third@example.org" };
	PGconn *other;

	for (int i = 0; i < 3; i++) {
		ck_assert_int_eq(addr_parse(rcpt[i], &a[i], &err), 0);
		keys[i] = a[i].key;
	}
	/* Prepare the gate on this connection first, as a running sender has. */
	ck_assert_int_eq(suppress_gate(conn, &ctx, keys, 3, v, &err), 0);
	ck_assert(!v[1].suppressed);

	ck_assert_int_eq(db_connect(testhelp_dsn, &other, &err), 0);
	add_on(other, "Late@Example.org", "unsubscribe", false, NULL, NULL);

	ck_assert_int_eq(db_begin(conn, &err), 0);
	ck_assert_int_eq(suppress_gate(conn, &ctx, keys, 3, v, &err), 0);
	ck_assert(!v[0].suppressed);
	ck_assert(v[1].suppressed);
	ck_assert_str_eq(v[1].entry.reason, "unsubscribe");
	ck_assert(!v[2].suppressed);

	/* Inside an open transaction too: the next statement sees it. */
	add_on(other, "third@example.org", "complaint", false, NULL, NULL);
	ck_assert_int_eq(suppress_gate(conn, &ctx, keys, 3, v, &err), 0);
	ck_assert(v[2].suppressed);
	ck_assert_int_eq(db_commit(conn, &err), 0);
	db_close(other);
}
END_TEST

/* The statement is prepared per connection: a second connection, and a
 * new one after closing it, work too. */
START_TEST(test_gate_on_several_connections)
{
	struct suppress_verdict v;
	struct assent_err err;
	PGconn *c;

	add("a@example.org", "manual");
	ck_assert(gate1(conn, "a@example.org").suppressed);
	for (int i = 0; i < 3; i++) {
		ck_assert_int_eq(db_connect(testhelp_dsn, &c, &err), 0);
		v = gate1(c, "a@example.org");
		ck_assert(v.suppressed);
		db_close(c);
	}
	ck_assert(gate1(conn, "a@example.org").suppressed);
}
END_TEST

START_TEST(test_expired_hold)
{
	struct assent_err err;
	PGresult *res;
	char soon[64];
	long long first, second;
	bool added;

	ck_assert_int_eq(db_exec(conn, &res, &err, "SELECT to_char(now() +"
	    " interval '1 second', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"')", 0, NULL), 0);
	snprintf(soon, sizeof(soon), "%s", PQgetvalue(res, 0, 0));
	PQclear(res);
	first = add_on(conn, "cool@example.org", "soft-bounce-limit", false, soon, NULL);
	ck_assert(gate1(conn, "cool@example.org").suppressed);
	usleep(1300 * 1000);
	ck_assert(!gate1(conn, "cool@example.org").suppressed);
	/* Adding again replaces the spent hold and records why. */
	second = add_on(conn, "cool@example.org", "manual", false, NULL, &added);
	ck_assert(added);
	ck_assert(second != first);
	ck_assert(gate1(conn, "cool@example.org").suppressed);
	ck_assert_int_eq(count("SELECT count(*) FROM suppressions WHERE"
	    " removed_reason = 'expired' AND removed_by = 'tester'"), 1);
}
END_TEST

START_TEST(test_expiry_in_the_past_refused)
{
	struct suppress_new n = { "manual", "test", "tester", "2001-01-01" };
	struct suppress_target t;
	struct assent_err err;
	long long id;
	bool added;

	ck_assert_int_eq(suppress_target_parse(&ctx, "a@example.org", false, &t, &err), 0);
	ck_assert_int_eq(suppress_add(conn, &t, &n, &id, &added, &err), -1);
	ck_assert_int_eq(err.code, EX_DATAERR);
	ck_assert_ptr_nonnull(strstr(err.msg, "not in the future"));
	n.expires = "2030-02-30";
	ck_assert_int_eq(suppress_add(conn, &t, &n, &id, &added, &err), -1);
	ck_assert_int_eq(err.code, EX_DATAERR);
	ck_assert_int_eq(count("SELECT count(*) FROM suppressions"), 0);
}
END_TEST

/* --- adding, removing, and what the database refuses --------------------------- */

START_TEST(test_add_twice_changes_nothing)
{
	long long first, second;
	bool added;

	first = add_on(conn, "Foo@EXAMPLE.com", "manual", false, NULL, &added);
	ck_assert(added);
	second = add_on(conn, "foo@example.COM", "complaint", false, NULL, &added);
	ck_assert(!added);
	ck_assert_int_eq(first, second);
	ck_assert_int_eq(count("SELECT count(*) FROM suppressions"), 1);
	ck_assert_int_eq(count("SELECT count(*) FROM suppressions WHERE reason = 'manual'"), 1);
}
END_TEST

static const struct {
	const char *reason;
	bool needs_force;
} removal_cases[] = {
	{ "complaint", true }, { "erasure", true }, { "manual", false },
	{ "unsubscribe", false }, { "hard-bounce", false },
};

START_TEST(test_remove_rules)
{
	struct assent_err err;

	add("a@example.org", removal_cases[_i].reason);
	if (removal_cases[_i].needs_force) {
		ck_assert_int_eq(rm("a@example.org", "asked by phone", false, &err), -1);
		ck_assert_int_eq(err.code, EX_DATAERR);
		ck_assert_ptr_nonnull(strstr(err.msg, "--force"));
		ck_assert(gate1(conn, "a@example.org").suppressed);
	}
	ck_assert_int_eq(rm("a@example.org", "asked by phone", true, &err), 0);
	ck_assert(!gate1(conn, "a@example.org").suppressed);
	ck_assert_int_eq(count("SELECT count(*) FROM suppressions WHERE"
	    " removed_by = 'tester' AND removed_reason = 'asked by phone'"
	    " AND removed_at > now() - interval '1 minute'"), 1);
	/* Gone from the active list, kept in the history. */
	ck_assert_int_eq(rm("a@example.org", "again", true, &err), -1);
	ck_assert_ptr_nonnull(strstr(err.msg, "no active suppression entry"));
	ck_assert_int_eq(count("SELECT count(*) FROM suppressions"), 1);
}
END_TEST

START_TEST(test_remove_needs_a_reason_and_by_id)
{
	struct suppress_removal r = { "", "tester", false, &tester };
	struct assent_err err;
	long long id, removed;

	id = add("a@example.org", "manual");
	ck_assert_int_eq(suppress_remove(conn, NULL, id, &r, &removed, &err), -1);
	r.reason = "two\nlines";
	ck_assert_int_eq(suppress_remove(conn, NULL, id, &r, &removed, &err), -1);
	r.reason = "duplicate";
	ck_assert_int_eq(suppress_remove(conn, NULL, id + 100, &r, &removed, &err), -1);
	ck_assert_int_eq(suppress_remove(conn, NULL, id, &r, &removed, &err), 0);
	ck_assert_int_eq(removed, id);
	/* recorded with it, in the same transaction */
	ck_assert_int_eq(testhelp_query_long(conn, "SELECT count(*) FROM audit"
	    " WHERE action = 'suppress-remove' AND operator = 'tester'"), 1);
	/* The value is free for a new entry. */
	ck_assert(add("a@example.org", "manual") != id);
}
END_TEST

static const char *const refused_sql[] = {
	"DELETE FROM suppressions",
	"TRUNCATE suppressions",
	"UPDATE suppressions SET value = 'other@example.org'",
	"UPDATE suppressions SET reason = 'manual'",
	"UPDATE suppressions SET added_at = now() - interval '1 day'",
	"UPDATE suppressions SET expires_at = now() + interval '1 day'",
	"UPDATE suppressions SET removed_by = 'x'",     /* without why */
	"INSERT INTO suppressions (kind, value, reason, source, added_by)"
	" VALUES ('address', 'Upper@example.org', 'manual', 's', 'me')",
	"INSERT INTO suppressions (kind, value, reason, source, added_by)"
	" VALUES ('hash', 'abc', 'manual', 's', 'me')",
	"INSERT INTO suppressions (kind, value, reason, source, added_by)"
	" VALUES ('domain', 'a@example.org', 'manual', 's', 'me')",
	"INSERT INTO suppressions (kind, value, reason, source, added_by)"
	" VALUES ('address', 'b@example.org', 'because', 's', 'me')",
	"INSERT INTO suppressions (kind, value, reason, source, added_by,"
	" removed_at, removed_by, removed_reason) VALUES ('address',"
	" 'c@example.org', 'manual', 's', 'me', now(), 'me', 'x')",
	"INSERT INTO suppressions (kind, value, reason, source, added_by)"
	" VALUES ('address', 'a@example.org', 'manual', 's', 'me')",   /* active twice */
};

START_TEST(test_database_refuses)
{
	struct assent_err err;

	add("a@example.org", "complaint");
	ck_assert_msg(db_exec(conn, NULL, &err, refused_sql[_i], 0, NULL) == -1,
	    "accepted: %s", refused_sql[_i]);
	ck_assert_int_eq(count("SELECT count(*) FROM suppressions WHERE"
	    " value = 'a@example.org' AND reason = 'complaint' AND removed_at IS NULL"), 1);
	ck_assert_int_eq(count("SELECT count(*) FROM suppressions"), 1);
}
END_TEST

START_TEST(test_removed_entry_cannot_change_again)
{
	struct assent_err err;

	add("a@example.org", "manual");
	ck_assert_int_eq(rm("a@example.org", "first", false, &err), 0);
	ck_assert_int_eq(db_exec(conn, NULL, &err, "UPDATE suppressions SET"
	    " removed_by = 'y', removed_reason = 'second'", 0, NULL), -1);
	ck_assert_int_eq(count("SELECT count(*) FROM suppressions"
	    " WHERE removed_reason = 'first'"), 1);
}
END_TEST

/* --- listing, import, export -------------------------------------------------- */

START_TEST(test_list_pages)
{
	struct suppress_query q = { .limit = 2 };
	struct assent_err err;
	bool more;
	json_t *rows;
	long long ids[5];

	for (int i = 0; i < 5; i++) {
		char addr[32];

		snprintf(addr, sizeof(addr), "p%d@example.org", i);
		ids[i] = add(addr, i == 3 ? "complaint" : "manual");
	}
	ck_assert_int_eq(rm("p0@example.org", "gone", false, &err), 0);
	ck_assert_int_eq(suppress_list(conn, &q, &rows, &more, &err), 0);
	ck_assert_int_eq(json_array_size(rows), 2);
	ck_assert(more);
	ck_assert_int_eq(json_integer_value(json_object_get(json_array_get(rows, 0),
	    "id")), ids[1]);
	q.after_id = ids[2];
	json_decref(rows);
	ck_assert_int_eq(suppress_list(conn, &q, &rows, &more, &err), 0);
	ck_assert_int_eq(json_array_size(rows), 2);
	ck_assert_int_eq(json_integer_value(json_object_get(json_array_get(rows, 1),
	    "id")), ids[4]);
	ck_assert(!more);
	json_decref(rows);
	q.after_id = 0;
	q.limit = 100;
	q.reason = "complaint";
	ck_assert_int_eq(suppress_list(conn, &q, &rows, &more, &err), 0);
	ck_assert_int_eq(json_array_size(rows), 1);
	json_decref(rows);
	q.reason = NULL;
	q.include_removed = true;
	q.since = "2000-01-01";
	ck_assert_int_eq(suppress_list(conn, &q, &rows, &more, &err), 0);
	ck_assert_int_eq(json_array_size(rows), 5);
	ck_assert_str_eq(json_string_value(json_object_get(json_array_get(rows, 0),
	    "removed_reason")), "gone");
	json_decref(rows);
	q.since = "2999-01-01";
	ck_assert_int_eq(suppress_list(conn, &q, &rows, &more, &err), 0);
	ck_assert_int_eq(json_array_size(rows), 0);
	json_decref(rows);
	q.reason = "bogus";
	ck_assert_int_eq(suppress_list(conn, &q, &rows, &more, &err), -1);
}
END_TEST

static unsigned long reject_lines[8];
static size_t nrejects;

static void
on_reject(unsigned long line, const char *why, void *arg)
{
	(void)why;
	(void)arg;
	if (nrejects < NELEM(reject_lines))
		reject_lines[nrejects++] = line;
}

static int
import_text(const char *text, bool hashed, struct suppress_import_counts *c,
    struct assent_err *err)
{
	struct suppress_new n = { "imported", "test file", "tester", NULL };
	struct suppress_import im = { &n, &ctx, hashed, on_reject, NULL };
	FILE *in = fmemopen((void *)text, strlen(text), "r");
	int rc;

	nrejects = 0;
	rc = suppress_import(conn, in, &im, c, err);
	fclose(in);
	return rc;
}

START_TEST(test_import_counts_and_lines)
{
	struct suppress_import_counts c;
	struct assent_err err;

	add("dup@example.org", "manual");
	ck_assert_int_eq(import_text(
	    "# a comment\n"                     /* 1 */
	    "a@example.org\n"                   /* 2 */
	    "\n"                                /* 3 */
	    "  B@Example.org \r\n"              /* 4 */
	    "bad..x@example.org\n"              /* 5 rejected */
	    "dup@example.org\n"                 /* 6 present */
	    "A@EXAMPLE.ORG\n"                   /* 7 present (line 2) */
	    "@example.net\n"                    /* 8 */
	    "@bad_domain\n"                     /* 9 rejected */
	    "0f46a103f659e8f1efbe2ff927d3179f917047f09807c25aee6d63b915201ef6\n"
	    "last@example.org",                 /* 11, no newline */
	    false, &c, &err), 0);
	ck_assert_int_eq(c.added, 5);
	ck_assert_int_eq(c.present, 2);
	ck_assert_int_eq(c.rejected, 2);
	ck_assert_int_eq(nrejects, 2);
	ck_assert_int_eq(reject_lines[0], 5);
	ck_assert_int_eq(reject_lines[1], 9);
	ck_assert(gate1(conn, "foo@example.com").suppressed);        /* the hash */
	ck_assert(gate1(conn, "x@example.net").suppressed);
	ck_assert(gate1(conn, "last@example.org").suppressed);
	ck_assert_int_eq(count("SELECT count(*) FROM suppressions WHERE"
	    " source = 'test file' AND reason = 'imported'"), 5);
}
END_TEST

START_TEST(test_import_hashed_keeps_no_address)
{
	struct suppress_import_counts c;
	struct assent_err err;

	ck_assert_int_eq(import_text("Foo@Example.com\nbar@example.com\n@example.net\n",
	    true, &c, &err), 0);
	ck_assert_int_eq(c.added, 3);
	ck_assert_int_eq(count("SELECT count(*) FROM suppressions WHERE kind = 'hash'"), 2);
	ck_assert_int_eq(count("SELECT count(*) FROM suppressions WHERE"
	    " value LIKE '%example.com%'"), 0);
	ck_assert(gate1(conn, "foo@example.COM").suppressed);
	ck_assert(gate1(conn, "bar@example.com").suppressed);
}
END_TEST

/* Enough lines for several batches, with duplicates across batches. */
START_TEST(test_import_many_batches)
{
	struct suppress_import_counts c;
	struct assent_err err;
	size_t len = 0;
	char *text = NULL;
	FILE *f = open_memstream(&text, &len);

	for (int i = 0; i < 2500; i++)
		fprintf(f, "m%d@example.org\n", i % 2200);
	fclose(f);
	ck_assert_int_eq(import_text(text, false, &c, &err), 0);
	ck_assert_int_eq(c.added, 2200);
	ck_assert_int_eq(c.present, 300);
	ck_assert_int_eq(count("SELECT count(*) FROM suppressions"), 2200);
	free(text);
}
END_TEST

static char *
export_text(bool hashed)
{
	struct assent_err err;
	unsigned long n;
	size_t len = 0;
	char *text = NULL;
	FILE *f = open_memstream(&text, &len);

	ck_assert_int_eq(suppress_export(conn, f, &ctx, hashed, &n, &err), 0);
	fclose(f);
	return text;
}

START_TEST(test_export)
{
	struct suppress_import_counts c;
	struct assent_err err;
	char *plain, *hashed, *again;

	add("Foo@example.com", "manual");
	add("@Bücher.example", "hard-bounce");
	add_on(conn, "h@example.org", "erasure", true, NULL, NULL);
	add("gone@example.org", "manual");
	ck_assert_int_eq(rm("gone@example.org", "x", false, &err), 0);
	plain = export_text(false);
	hashed = export_text(true);
	ck_assert_str_eq(plain, "foo@example.com\n@xn--bcher-kva.example\n"
	    "0b8061c101f3cca7bfecb1531d793c7c7a59d6c93374f905b3082c98c5c31bb2\n");
	ck_assert_str_eq(hashed,
	    "0f46a103f659e8f1efbe2ff927d3179f917047f09807c25aee6d63b915201ef6\n"
	    "@xn--bcher-kva.example\n"
	    "0b8061c101f3cca7bfecb1531d793c7c7a59d6c93374f905b3082c98c5c31bb2\n");
	/* Round trip: importing the export adds nothing new. */
	ck_assert_int_eq(import_text(plain, false, &c, &err), 0);
	ck_assert_int_eq(c.added, 0);
	ck_assert_int_eq(c.present, 3);
	ck_assert_int_eq(c.rejected, 0);
	again = export_text(false);
	ck_assert_str_eq(again, plain);
	free(plain);
	free(hashed);
	free(again);
}
END_TEST

/* A removal whose audit row cannot be written does not happen. */
START_TEST(test_remove_and_audit_are_one)
{
	struct suppress_removal r = { "mistake", "tester", false, NULL };
	struct audit_actor nowhere = { "tester", "bad\nhost" };
	struct assent_err err;
	long long id, removed;

	id = add("a@example.org", "manual");
	ck_assert_int_eq(suppress_remove(conn, NULL, id, &r, &removed, &err), -1);
	r.who = &nowhere;
	ck_assert_int_eq(suppress_remove(conn, NULL, id, &r, &removed, &err), -1);
	ck_assert_int_eq(testhelp_query_long(conn, "SELECT count(*) FROM suppressions"
	    " WHERE removed_at IS NULL"), 1);
	ck_assert_int_eq(testhelp_query_long(conn, "SELECT count(*) FROM audit"), 0);
}
END_TEST

int
main(void)
{
	Suite *s = suite_create("suppress");
	TCase *tc = tcase_create("suppress");

	testhelp_require_servers();
	tcase_add_checked_fixture(tc, setup, testhelp_fixture_drop);
	tcase_set_timeout(tc, 30);
	tcase_add_test(tc, test_hash_is_hmac_sha256_of_key);
	tcase_add_loop_test(tc, test_mailbox_key, 0, NELEM(mailbox_cases));
	tcase_add_loop_test(tc, test_target_parse, 0, NELEM(parse_cases));
	tcase_add_loop_test(tc, test_time_forms, 0, NELEM(time_cases));
	tcase_add_test(tc, test_gate_batch_gmail_off);
	tcase_add_test(tc, test_gate_batch_gmail_on);
	tcase_add_test(tc, test_gate_reports_the_entry);
	tcase_add_test(tc, test_gate_empty_batch_and_bad_keys);
	tcase_add_test(tc, test_entry_added_between_batch_and_claim);
	tcase_add_test(tc, test_gate_on_several_connections);
	tcase_add_test(tc, test_expired_hold);
	tcase_add_test(tc, test_expiry_in_the_past_refused);
	tcase_add_test(tc, test_add_twice_changes_nothing);
	tcase_add_loop_test(tc, test_remove_rules, 0, NELEM(removal_cases));
	tcase_add_test(tc, test_remove_needs_a_reason_and_by_id);
	tcase_add_loop_test(tc, test_database_refuses, 0, NELEM(refused_sql));
	tcase_add_test(tc, test_removed_entry_cannot_change_again);
	tcase_add_test(tc, test_list_pages);
	tcase_add_test(tc, test_import_counts_and_lines);
	tcase_add_test(tc, test_import_hashed_keeps_no_address);
	tcase_add_test(tc, test_import_many_batches);
	tcase_add_test(tc, test_export);
	tcase_add_test(tc, test_remove_and_audit_are_one);
	suite_add_tcase(s, tc);
	return testhelp_run_suite(s);
}

/* Integration: the consent ledger's hash chain, its guards and ledger_verify() */
#include <check.h>
#include <glob.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "assent/db.h"
#include "assent/ledger.h"
#include "assent/lists.h"
#include "assent/migrate.h"
#include "assent/subs.h"
#include "testhelp.h"

#define conn testhelp_conn

static const struct ledger_evidence web_ev = {
	.source = "signup form", .ip = "192.0.2.7", .user_agent = "Mozilla/5.0",
	.page = "/join",
};
static const struct ledger_evidence cli_ev = {
	.source = "signup desk", .operator_name = "tester",
};
static const struct ledger_evidence import_ev = {
	.source = "spring fair import", .operator_name = "tester",
	.import_file = "fair.csv", .import_line = "12",
	.import_sha256 = "0123456789abcdef0123456789abcdef"
	    "0123456789abcdef0123456789abcdef",
};

static long
count(const char *sql)
{
	return testhelp_query_long(conn, sql);
}

/* Run sql, which may hold several statements. */
static void
run_ok(const char *sql)
{
	PGresult *res = PQexec(conn, sql);

	if (PQresultStatus(res) != PGRES_COMMAND_OK &&
	    PQresultStatus(res) != PGRES_TUPLES_OK)
		ck_abort_msg("%s: %s", sql, PQresultErrorMessage(res));
	PQclear(res);
}

static void
add(const char *email, const char *list, const struct ledger_evidence *ev,
    bool resubscribe)
{
	struct subs_request req = {
		.email = email, .list = list, .channel = ev == &web_ev ? "web" : "cli",
		.resubscribe = resubscribe, .evidence = ev,
	};
	struct assent_err err;
	char status[16];

	if (subs_add(conn, &req, status, NULL, &err) == -1)
		ck_abort_msg("add %s to %s: %s", email, list, err.msg);
}

static void
confirm(const char *email, const char *list)
{
	struct subs_request req = {
		.email = email, .list = list, .channel = "confirm-link",
		.evidence = &web_ev,
	};
	struct assent_err err;
	bool changed;

	if (subs_confirm(conn, &req, &changed, &err) == -1)
		ck_abort_msg("confirm %s on %s: %s", email, list, err.msg);
}

/* An unsubscribe as the rights module will write it: event and status
 * in one transaction. */
static void
unsubscribe(const char *email, const char *list)
{
	char sql[2048];

	snprintf(sql, sizeof(sql), "BEGIN;"
	    " INSERT INTO ledger (subscriber_id, list_id, action, channel,"
	    "  status_before, status_after, operator, source)"
	    " SELECT s.subscriber_id, s.list_id, 'unsubscribe', 'cli', s.status,"
	    "  'unsubscribed', 'tester', 'asked by phone'"
	    " FROM subscriptions s JOIN subscribers p ON p.id = s.subscriber_id"
	    " JOIN lists l ON l.id = s.list_id"
	    " WHERE p.email = '%s' AND l.name = '%s' AND l.removed_at IS NULL;"
	    " UPDATE subscriptions s SET status = 'unsubscribed' FROM subscribers p, lists l"
	    " WHERE p.id = s.subscriber_id AND l.id = s.list_id"
	    " AND p.email = '%s' AND l.name = '%s' AND l.removed_at IS NULL;"
	    " COMMIT", email, list, email, list);
	run_ok(sql);
}

/* A mixed history, several subscribers interleaved: subscribe (cli, web,
 * with import evidence), confirm, unsubscribe, resubscribe, and a list
 * removed with --force. c@ ends with a resubscribe. */
static void
setup(void)
{
	struct assent_err err;
	long ended;

	testhelp_fixture_db();
	ck_assert_int_eq(lists_create(conn, "news", NULL, false, &err), 0);
	ck_assert_int_eq(lists_create(conn, "letters", NULL, true, &err), 0);
	ck_assert_int_eq(lists_create(conn, "spring", NULL, false, &err), 0);
	add("a@example.org", "news", &cli_ev, false);
	add("b@example.org", "letters", &web_ev, false);
	add("a@example.org", "letters", &web_ev, false);
	confirm("b@example.org", "letters");
	add("c@example.org", "news", &import_ev, false);
	confirm("a@example.org", "letters");
	add("a@example.org", "spring", &cli_ev, false);
	add("b@example.org", "spring", &import_ev, false);
	ck_assert_int_eq(lists_remove(conn, "spring", true, &cli_ev, &ended, &err), 0);
	ck_assert_int_eq(ended, 2);
	add("d@example.org", "news", &web_ev, false);
	unsubscribe("c@example.org", "news");
	add("c@example.org", "news", &cli_ev, true);
}

static void
verify(struct ledger_verify_result *r)
{
	struct assent_err err;

	if (ledger_verify(conn, r, &err) == -1)
		ck_abort_msg("ledger_verify: %s", err.msg);
}

static void
assert_intact(void)
{
	struct ledger_verify_result r;

	verify(&r);
	ck_assert_msg(r.problems == 0, "event %lld: %s", r.event_id, r.what);
	ck_assert_int_eq(r.events, count("SELECT count(*) FROM ledger"));
	ck_assert_int_eq(r.subscribers,
	    count("SELECT count(DISTINCT subscriber_id) FROM ledger"));
	ck_assert_int_eq(strlen(r.head), 64);
}

START_TEST(test_mixed_history_is_intact)
{
	assert_intact();
	/* seq runs 1..n per subscriber; at is the database clock */
	ck_assert_int_eq(count("SELECT count(*) FROM (SELECT subscriber_id"
	    " FROM ledger GROUP BY subscriber_id"
	    " HAVING max(seq) <> count(*) OR min(seq) <> 1) x"), 0);
	ck_assert_int_eq(count("SELECT count(*) FROM ledger WHERE subscriber_id ="
	    " (SELECT id FROM subscribers WHERE email = 'a@example.org')"), 5);
	ck_assert_int_eq(count("SELECT count(*) FROM ledger WHERE import_file = 'fair.csv'"
	    " AND import_line = 12 AND import_sha256 LIKE '0123%'"), 2);
	ck_assert_int_eq(count("SELECT count(*) FROM ledger WHERE salt IS NULL"
	    " OR octet_length(chain_sha256) <> 32"), 0);
}
END_TEST

START_TEST(test_head_changes_only_with_the_ledger)
{
	struct ledger_verify_result r1, r2, r3;

	verify(&r1);
	verify(&r2);
	ck_assert_str_eq(r1.head, r2.head);
	add("e@example.org", "news", &cli_ev, false);
	verify(&r3);
	ck_assert_int_eq(r3.problems, 0);
	ck_assert_str_ne(r1.head, r3.head);
}
END_TEST

/* The trigger computes seq, at, salt and digests whatever an INSERT says. */
START_TEST(test_insert_cannot_choose_computed_columns)
{
	run_ok("INSERT INTO ledger (subscriber_id, action, channel, operator, source,"
	    " seq, at, salt, personal_sha256, content_sha256, chain_sha256, erased_at)"
	    " SELECT id, 'rectify', 'cli', 'tester', 'typo fixed', 99, '2001-01-01',"
	    " '\\x00', '\\x00', '\\x00', '\\x00', now()"
	    " FROM subscribers WHERE email = 'a@example.org'");
	ck_assert_int_eq(count("SELECT count(*) FROM ledger WHERE source = 'typo fixed'"
	    " AND seq = 6 AND at > now() - interval '1 minute' AND erased_at IS NULL"
	    " AND octet_length(salt) = 16"), 1);
	assert_intact();
}
END_TEST

#define RACERS 2
#define RACE_APPENDS 15

/* Two processes append for one subscriber at once: every event chains,
 * none shares a seq. */
START_TEST(test_concurrent_appends_chain)
{
	char id[24];
	pid_t pids[RACERS];
	int status;

	snprintf(id, sizeof(id), "%ld",
	    count("SELECT id FROM subscribers WHERE email = 'b@example.org'"));
	for (int i = 0; i < RACERS; i++) {
		if ((pids[i] = fork()) == 0) {
			struct ledger_event ev = {
				.subscriber_id = id, .action = "rectify",
				.channel = "cli", .evidence = &cli_ev,
			};
			struct assent_err err;
			PGconn *c;

			if (db_connect(testhelp_dsn, &c, &err) == -1)
				_exit(2);
			for (int n = 0; n < RACE_APPENDS; n++)
				if (db_begin(c, &err) == -1 ||
				    ledger_append(c, &ev, &err) == -1 ||
				    db_exec(c, NULL, &err, "SELECT pg_sleep(0.01)", 0, NULL) == -1 ||
				    db_commit(c, &err) == -1) {
					fprintf(stderr, "racer: %s\n", err.msg);
					_exit(1);
				}
			_exit(0);
		}
	}
	for (int i = 0; i < RACERS; i++) {
		waitpid(pids[i], &status, 0);
		ck_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0);
	}
	ck_assert_int_eq(count("SELECT max(seq) FROM ledger WHERE subscriber_id = (SELECT id"
	    " FROM subscribers WHERE email = 'b@example.org')"), 4 + RACERS * RACE_APPENDS);
	assert_intact();
}
END_TEST

/* A change made behind the triggers' back, and the event verify must
 * name. $1 in tamper is the target event's id. */
struct tamper_case {
	const char *name;
	const char *target;               /* SQL: the event to tamper with */
	const char *tamper;
	const char *expect;               /* SQL: the event verify names */
	const char *what;                 /* in the message */
};

#define ERASE_ALL "ip = NULL, user_agent = NULL, page = NULL, source = NULL," \
	" import_file = NULL, salt = NULL"

#define EVENT(email, seq) "SELECT l.id FROM ledger l JOIN subscribers s" \
	" ON s.id = l.subscriber_id WHERE s.email = '" email "' AND l.seq = " #seq

static const struct tamper_case tamper_cases[] = {
	{ "source", EVENT("a@example.org", 3),
	  "UPDATE ledger SET source = 'forged' WHERE id = $1",
	  EVENT("a@example.org", 3), "personal data changed" },
	{ "ip", EVENT("b@example.org", 1),
	  "UPDATE ledger SET ip = '198.51.100.1' WHERE id = $1",
	  EVENT("b@example.org", 1), "personal data changed" },
	{ "action", EVENT("c@example.org", 1),
	  "UPDATE ledger SET action = 'subscribe', channel = 'web' WHERE id = $1",
	  EVENT("c@example.org", 1), "content changed" },
	{ "at", EVENT("a@example.org", 2),
	  "UPDATE ledger SET at = at - interval '1 day' WHERE id = $1",
	  EVENT("a@example.org", 2), "content changed" },
	{ "at by a microsecond", EVENT("a@example.org", 2),
	  "UPDATE ledger SET at = at + interval '1 microsecond' WHERE id = $1",
	  EVENT("a@example.org", 2), "content changed" },
	{ "status_after", EVENT("d@example.org", 1),
	  "UPDATE ledger SET status_after = 'pending' WHERE id = $1",
	  EVENT("d@example.org", 1), "content changed" },
	{ "consent text version", EVENT("b@example.org", 2),
	  "UPDATE ledger SET consent_text_version = 'v2' WHERE id = $1",
	  EVENT("b@example.org", 2), "content changed" },
	{ "personal digest swapped with another event's",
	  EVENT("a@example.org", 1),
	  "UPDATE ledger e SET personal_sha256 = o.personal_sha256, salt = o.salt,"
	  " ip = o.ip, user_agent = o.user_agent, page = o.page, source = o.source,"
	  " import_file = o.import_file FROM ledger o"
	  " WHERE e.id = $1 AND o.id = (SELECT max(id) FROM ledger)",
	  EVENT("a@example.org", 1), "content changed" },
	{ "middle event deleted", EVENT("a@example.org", 2),
	  "DELETE FROM ledger WHERE id = $1",
	  EVENT("a@example.org", 3), "seq 3 follows seq 1" },
	{ "middle event that set a status deleted", EVENT("a@example.org", 3),
	  "DELETE FROM ledger WHERE id = $1",
	  EVENT("a@example.org", 2), "is confirmed but its last event says pending" },
	{ "last event deleted", EVENT("c@example.org", 3),
	  "DELETE FROM ledger WHERE id = $1",
	  EVENT("c@example.org", 2), "last event says unsubscribed" },
	{ "chain digest replaced", EVENT("b@example.org", 2),
	  "UPDATE ledger SET chain_sha256 = sha256(chain_sha256) WHERE id = $1",
	  EVENT("b@example.org", 2), "chain link broken" },
	{ "erased before the event was written", EVENT("a@example.org", 2),
	  "UPDATE ledger SET " ERASE_ALL ", erased_at = '1999-01-01' WHERE id = $1",
	  EVENT("a@example.org", 2), "erased before the event was written" },
	{ "erased while the subscriber is not", EVENT("a@example.org", 2),
	  "UPDATE ledger SET " ERASE_ALL ", erased_at = now() WHERE id = $1",
	  EVENT("a@example.org", 2), "erased, yet its subscriber is not" },
	{ "consent text digest replaced", EVENT("b@example.org", 1),
	  "UPDATE ledger SET consent_text_sha256 = repeat('0', 64) WHERE id = $1",
	  EVENT("b@example.org", 1), "content changed" },
	{ "consent collection time added", EVENT("c@example.org", 1),
	  "UPDATE ledger SET consent_collected_at = '2020-01-01' WHERE id = $1",
	  EVENT("c@example.org", 1), "content changed" },
	{ "erased marker on a row that still holds its source",
	  EVENT("a@example.org", 1),
	  "UPDATE ledger SET erased_at = now(), salt = NULL WHERE id = $1",
	  EVENT("a@example.org", 1), "still holds personal data" },
};

static long
tamper_target(const struct tamper_case *t)
{
	long id = count(t->target);

	ck_assert_msg(id > 0, "%s: no target event", t->name);
	return id;
}

/* As a superuser would: with the triggers off. */
static void
tamper(const char *sql, long id)
{
	char idtext[24];
	const char *params[] = { idtext };
	struct assent_err err;

	snprintf(idtext, sizeof(idtext), "%ld", id);
	run_ok("BEGIN; SET LOCAL session_replication_role = replica");
	if (db_exec(conn, NULL, &err, sql, strstr(sql, "$1") ? 1 : 0, params) == -1)
		ck_abort_msg("%s: %s", sql, err.msg);
	run_ok("COMMIT");
}

START_TEST(test_tampering_is_found_at_its_event)
{
	const struct tamper_case *t = &tamper_cases[_i];
	struct ledger_verify_result r;
	long target, expect;

	target = tamper_target(t);
	expect = count(t->expect);
	tamper(t->tamper, target);
	verify(&r);
	ck_assert_msg(r.problems > 0, "%s: not detected", t->name);
	ck_assert_msg(r.event_id == expect, "%s: reported event %lld (%s), "
	    "expected %ld", t->name, r.event_id, r.what, expect);
	ck_assert_msg(strstr(r.what, t->what) != NULL, "%s: \"%s\"", t->name, r.what);
}
END_TEST

/* Deleting a chain's first event: its successor names the gap. */
START_TEST(test_first_event_deleted)
{
	struct ledger_verify_result r;

	add("d@example.org", "letters", &cli_ev, false);
	tamper("DELETE FROM ledger WHERE id = $1", count(EVENT("d@example.org", 1)));
	verify(&r);
	ck_assert_int_eq(r.event_id, count(EVENT("d@example.org", 2)));
	ck_assert_int_eq(r.seq, 2);
	ck_assert_ptr_nonnull(strstr(r.what, "starts at seq 2"));
}
END_TEST

/* A forger who knows the algorithm and recomputes the digests of the
 * row he changed still breaks the link to the next event. */
START_TEST(test_recomputed_row_breaks_next_link)
{
	struct ledger_verify_result r;
	long id = count(EVENT("a@example.org", 2));

	tamper("UPDATE ledger SET operator = 'forger' WHERE id = $1", id);
	tamper("UPDATE ledger e SET content_sha256 = ledger_content_digest(e)"
	    " WHERE id = $1", id);
	tamper("UPDATE ledger e SET chain_sha256 = sha256((SELECT p.chain_sha256"
	    " FROM ledger p WHERE p.subscriber_id = e.subscriber_id"
	    " AND p.seq = e.seq - 1) || e.content_sha256) WHERE id = $1", id);
	verify(&r);
	ck_assert_int_eq(r.event_id, count(EVENT("a@example.org", 3)));
	ck_assert_ptr_nonnull(strstr(r.what, "chain link broken"));
}
END_TEST

/* A subscription changed behind the ledger's back. */
START_TEST(test_subscription_without_matching_event)
{
	struct ledger_verify_result r;

	tamper("UPDATE subscriptions SET status = 'confirmed' WHERE subscriber_id ="
	    " (SELECT id FROM subscribers WHERE email = 'a@example.org')"
	    " AND list_id = (SELECT id FROM lists WHERE name = 'spring')", 0);
	verify(&r);
	ck_assert_int_eq(r.problems, 1);
	ck_assert_int_eq(r.event_id, count(EVENT("a@example.org", 5)));
	ck_assert_ptr_nonnull(strstr(r.what, "is confirmed but its last event says "
	    "unsubscribed"));
}
END_TEST

static const char *const refused_edits[] = {
	"UPDATE ledger SET source = 'edited' WHERE id = 1",
	"UPDATE ledger SET source = NULL, ip = NULL, user_agent = NULL, page = NULL,"
	" import_file = NULL, salt = NULL, erased_at = now() WHERE id = 1",
	"DELETE FROM ledger WHERE id = 1",
	"TRUNCATE ledger",
};

START_TEST(test_plain_edits_refused)
{
	struct assent_err err;

	ck_assert_int_eq(db_exec(conn, NULL, &err, refused_edits[_i], 0, NULL), -1);
	ck_assert_str_eq(db_last_sqlstate(), "42501");
	ck_assert_ptr_nonnull(strstr(err.msg, "append-only"));
	assert_intact();
}
END_TEST

#define ERASE_FLAG_A "SELECT set_config('assent.ledger_erase'," \
	" (SELECT id FROM subscribers WHERE email = 'a@example.org')::text, true)"

#define ERASE_SUBSCRIBER "UPDATE subscribers SET email = NULL, email_key = NULL," \
	" name = '', attrs = '{}', erased_at = now() WHERE id = $1"

START_TEST(test_erasure_keeps_the_chain)
{
	char id[24];
	const char *params[] = { id };
	char sql[512];
	struct assent_err err;
	long n;

	snprintf(id, sizeof(id), "%ld",
	    count("SELECT id FROM subscribers WHERE email = 'b@example.org'"));
	ck_assert_int_eq(db_begin(conn, &err), 0);
	ck_assert_int_eq(ledger_erase(conn, id, &n, &err), 0);
	ck_assert_int_eq(db_exec(conn, NULL, &err, ERASE_SUBSCRIBER, 1, params), 0);
	ck_assert_int_eq(db_commit(conn, &err), 0);
	ck_assert_int_eq(n, 4);
	/* the database's clock, not before the events */
	ck_assert_int_eq(count("SELECT count(*) FROM ledger WHERE erased_at IS NOT NULL"
	    " AND (erased_at < at OR erased_at > now())"), 0);
	snprintf(sql, sizeof(sql), "SELECT count(*) FROM ledger WHERE"
	    " subscriber_id = %s AND ip IS NULL AND user_agent IS NULL"
	    " AND page IS NULL AND source IS NULL AND import_file IS NULL"
	    " AND salt IS NULL AND erased_at IS NOT NULL"
	    " AND personal_sha256 IS NOT NULL", id);
	ck_assert_int_eq(count(sql), 4);
	/* what isn't personal stays: the import's digest and line */
	ck_assert_int_eq(count("SELECT count(*) FROM ledger WHERE erased_at IS NOT NULL"
	    " AND import_sha256 IS NOT NULL AND import_line = 12"), 1);
	ck_assert_int_eq(count("SELECT count(*) FROM ledger WHERE erased_at IS NOT NULL"), 4);
	ck_assert_int_eq(count("SELECT count(*) FROM ledger WHERE source IS NULL"), 4);
	/* the flag is gone afterwards */
	ck_assert_int_eq(count("SELECT length(current_setting('assent.ledger_erase', true))"), 0);
	assert_intact();
	/* a second erasure finds nothing left */
	ck_assert_int_eq(db_begin(conn, &err), 0);
	ck_assert_int_eq(ledger_erase(conn, id, &n, &err), 0);
	db_rollback(conn);
	ck_assert_int_eq(n, 0);
	assert_intact();
}
END_TEST

/* A flag set by hand may not choose the time of erasure. */
START_TEST(test_erase_time_is_forced)
{
	struct assent_err err;

	ck_assert_int_eq(db_begin(conn, &err), 0);
	ck_assert_int_eq(db_exec(conn, NULL, &err, ERASE_FLAG_A, 0, NULL), 0);
	ck_assert_msg(db_exec(conn, NULL, &err, "UPDATE ledger SET " ERASE_ALL ","
	    " erased_at = '1999-01-01' WHERE subscriber_id = (SELECT id FROM"
	    " subscribers WHERE email = 'a@example.org')", 0, NULL) == 0, "%s",
	    err.msg);
	ck_assert_int_eq(count("SELECT count(*) FROM ledger WHERE erased_at IS NOT NULL"), 5);
	ck_assert_int_eq(count("SELECT count(*) FROM ledger WHERE erased_at <> now()"), 0);
	db_rollback(conn);
}
END_TEST

/* An INSERT may not choose its txid: a predicted future one would let
 * that later transaction change a subscription without an event. */
START_TEST(test_txid_is_forced)
{
	run_ok("BEGIN; INSERT INTO ledger (subscriber_id, action, channel, operator,"
	    " source, txid) SELECT id, 'rectify', 'cli', 'tester', 'txid test',"
	    " txid_current() + 5 FROM subscribers WHERE email = 'a@example.org'");
	ck_assert_int_eq(count("SELECT count(*) FROM ledger WHERE source = 'txid test'"
	    " AND txid = txid_current()"), 1);
	run_ok("COMMIT");
	assert_intact();
}
END_TEST

/* --- first events sealed by their writer (sql/0010_import.sql) ---------- */

/* The stored digest of wording version (a static buffer). */
static const char *
text_sha256(const char *version)
{
	static char hex[65];
	char sql[200];
	PGresult *res;

	snprintf(sql, sizeof(sql), "SELECT sha256 FROM consent_texts WHERE version = '%s'",
	    version);
	res = PQexec(conn, sql);
	ck_assert_int_eq(PQntuples(res), 1);
	snprintf(hex, sizeof(hex), "%s", PQgetvalue(res, 0, 0));
	PQclear(res);
	return hex;
}

/* In an open transaction: a new subscriber counted 1 and its first event
 * sealed by ledger_seal_first(), inserted with the values given (list
 * and at may differ from what was sealed, to forge). The row's id. */
static long
insert_sealed_text(const char *email, const char *seal_list, const char *row_list,
    const char *at_sql, const char *version, const char *row_text_sha)
{
	char sql[4096], hex[4][65];
	struct ledger_sealed seal;
	struct ledger_first e = {
		.list_id = count("SELECT id FROM lists WHERE name = 'news'"),
		.action = "import", .channel = "import", .status_after = "confirmed",
		.operator_name = "tester", .source = "sealed.csv import",
		.basis = "express", .basis_expires_us = -1, .collected_us = -1,
		.import_file = "sealed.csv", .import_sha256 = import_ev.import_sha256,
		.import_line = 7,
	};
	const unsigned char *parts[] = { seal.salt, seal.personal, seal.content,
	    seal.chain };

	snprintf(sql, sizeof(sql), "INSERT INTO subscribers (email, email_key,"
	    " ledger_seq) VALUES ('%s', '%s', 1)", email, email);
	run_ok(sql);
	snprintf(sql, sizeof(sql), "SELECT id FROM subscribers WHERE email = '%s'",
	    email);
	e.subscriber_id = count(sql);
	snprintf(sql, sizeof(sql), "SELECT id FROM lists WHERE name = '%s'", seal_list);
	e.list_id = count(sql);
	e.at_us = count("SELECT (extract(epoch FROM now()) * 1000000)::bigint");
	e.consent_text_version = version;
	e.consent_text_sha256 = version != NULL ? text_sha256(version) : NULL;
	ledger_seal_first(&e, &seal);
	for (int k = 0; k < 4; k++) {
		for (int i = 0; i < (k == 0 ? 16 : 32); i++)
			sprintf(hex[k] + 2 * i, "%02x", parts[k][i]);
	}
	snprintf(sql, sizeof(sql), "INSERT INTO ledger (at, txid, subscriber_id,"
	    " list_id, action, channel, status_after, operator, source, basis,"
	    " import_file, import_sha256, import_line, seq, salt, personal_sha256,"
	    " content_sha256, chain_sha256, consent_text_version,"
	    " consent_text_sha256) SELECT %s, txid_current(), %lld, l.id,"
	    " 'import', 'import', 'confirmed', 'tester', 'sealed.csv import',"
	    " 'express', 'sealed.csv', '%s', 7, 1, '\\x%s', '\\x%s', '\\x%s',"
	    " '\\x%s', %s%s%s, %s FROM lists l WHERE l.name = '%s'", at_sql,
	    e.subscriber_id, import_ev.import_sha256, hex[0], hex[1], hex[2],
	    hex[3], version != NULL ? "'" : "", version != NULL ? version : "NULL",
	    version != NULL ? "'" : "", row_text_sha, row_list);
	run_ok(sql);
	snprintf(sql, sizeof(sql), "SELECT max(l.id) FROM ledger l JOIN subscribers s"
	    " ON s.id = l.subscriber_id WHERE s.email = '%s'", email);
	return count(sql);
}

static long
insert_sealed(const char *email, const char *seal_list, const char *row_list,
    const char *at_sql)
{
	return insert_sealed_text(email, seal_list, row_list, at_sql, NULL, "NULL");
}

/* Sealed right: it passes the trigger untouched (its own salt stays) and
 * verify finds the ledger intact. */
START_TEST(test_sealed_first_event_kept)
{
	long id;
	char sql[256];

	run_ok("BEGIN");
	id = insert_sealed("sealed@example.org", "news", "news", "now()");
	run_ok("INSERT INTO subscriptions (subscriber_id, list_id, status)"
	    " SELECT s.id, l.id, 'confirmed' FROM subscribers s, lists l"
	    " WHERE s.email = 'sealed@example.org' AND l.name = 'news'");
	run_ok("COMMIT");
	snprintf(sql, sizeof(sql), "SELECT count(*) FROM ledger WHERE id = %ld"
	    " AND seq = 1 AND import_line = 7", id);
	ck_assert_int_eq(count(sql), 1);
	ck_assert_int_eq(count("SELECT ledger_seq FROM subscribers"
	    " WHERE email = 'sealed@example.org'"), 1);
	assert_intact();
}
END_TEST

/* Sealed for one list, stored for another: the trigger lets it by (its
 * chain digest is right for its content digest), verify names it. */
START_TEST(test_sealed_first_event_forged_is_found)
{
	struct ledger_verify_result r;
	long id;

	run_ok("BEGIN");
	id = insert_sealed("forged@example.org", "news", "letters", "now()");
	run_ok("COMMIT");
	verify(&r);
	ck_assert_int_eq(r.problems, 1);
	ck_assert_int_eq(r.event_id, id);
	ck_assert_msg(strstr(r.what, "content changed") != NULL, "%s", r.what);
}
END_TEST

/* Not written now: the trigger seals it as any other event (a new salt,
 * the subscriber counted again, so it becomes seq 2 after the writer's
 * count of 1), and verify shows the chain starting late. */
START_TEST(test_sealed_first_event_of_another_time_resealed)
{
	struct ledger_verify_result r;
	char sql[256];
	long id;

	run_ok("BEGIN");
	id = insert_sealed("late@example.org", "news", "news",
	    "now() - interval '1 second'");
	run_ok("COMMIT");
	snprintf(sql, sizeof(sql), "SELECT seq FROM ledger WHERE id = %ld", id);
	ck_assert_int_eq(count(sql), 2);
	ck_assert_int_eq(count("SELECT count(*) FROM ledger l JOIN subscribers s"
	    " ON s.id = l.subscriber_id WHERE s.email = 'late@example.org'"
	    " AND l.at = (SELECT max(at) FROM ledger)"), 1);
	verify(&r);
	ck_assert_int_eq(r.problems, 1);
	ck_assert_msg(strstr(r.what, "starts at seq 2") != NULL, "%s", r.what);
}
END_TEST

/* Naming a wording without its digest: the trigger seals it (it would
 * otherwise stand unpinned and verify could not tell), and verify shows
 * the chain starting late. */
START_TEST(test_sealed_first_event_without_wording_digest_resealed)
{
	struct ledger_verify_result r;
	char sql[256];
	long id;

	run_ok("INSERT INTO consent_texts (version, body, sha256, created_by)"
	    " VALUES ('w1', 'Yes, mail me.', encode(sha256('Yes, mail me.'), 'hex'),"
	    " 'tester')");
	run_ok("BEGIN");
	id = insert_sealed_text("unpinned@example.org", "news", "news", "now()",
	    "w1", "NULL");
	run_ok("COMMIT");
	snprintf(sql, sizeof(sql), "SELECT count(*) FROM ledger WHERE id = %ld"
	    " AND seq = 2 AND consent_text_sha256 = encode(sha256('Yes, mail me.'),"
	    " 'hex')", id);
	ck_assert_int_eq(count(sql), 1);
	verify(&r);
	ck_assert_int_eq(r.problems, 1);
	ck_assert_msg(strstr(r.what, "starts at seq 2") != NULL, "%s", r.what);
}
END_TEST

/* With the right digest it is kept as sealed. */
START_TEST(test_sealed_first_event_with_wording_kept)
{
	run_ok("INSERT INTO consent_texts (version, body, sha256, created_by)"
	    " VALUES ('w1', 'Yes, mail me.', encode(sha256('Yes, mail me.'), 'hex'),"
	    " 'tester')");
	run_ok("BEGIN");
	insert_sealed_text("pinned@example.org", "news", "news", "now()", "w1",
	    "encode(sha256('Yes, mail me.'), 'hex')");
	run_ok("COMMIT");
	ck_assert_int_eq(count("SELECT count(*) FROM ledger l JOIN subscribers s"
	    " ON s.id = l.subscriber_id WHERE s.email = 'pinned@example.org'"
	    " AND l.seq = 1 AND l.consent_text_version = 'w1'"), 1);
	assert_intact();
}
END_TEST

/* A second first event for a subscriber who has one is refused. */
START_TEST(test_sealed_first_event_twice_refused)
{
	PGresult *res;

	run_ok("BEGIN");
	insert_sealed("twice@example.org", "news", "news", "now()");
	run_ok("COMMIT");
	run_ok("BEGIN");
	res = PQexec(conn, "INSERT INTO ledger (at, txid, subscriber_id, list_id,"
	    " action, channel, status_after, operator, source, seq, salt,"
	    " personal_sha256, content_sha256, chain_sha256)"
	    " SELECT now(), txid_current(), subscriber_id, list_id, action, channel,"
	    " status_after, operator, source, 1, salt, personal_sha256,"
	    " content_sha256, chain_sha256 FROM ledger WHERE seq = 1"
	    " AND source = 'sealed.csv import'");
	ck_assert_int_eq(PQresultStatus(res), PGRES_FATAL_ERROR);
	ck_assert_str_eq(PQresultErrorField(res, PG_DIAG_SQLSTATE), "23505");
	PQclear(res);
	run_ok("ROLLBACK");
	assert_intact();
}
END_TEST

/* A deleted last event that set no status (a rectify) shows against the
 * subscriber's count of events. */
START_TEST(test_deleted_statusless_tail)
{
	struct ledger_verify_result r;

	run_ok("INSERT INTO ledger (subscriber_id, action, channel, operator, source)"
	    " SELECT id, 'rectify', 'cli', 'tester', 'name fixed'"
	    " FROM subscribers WHERE email = 'a@example.org'");
	assert_intact();
	tamper("DELETE FROM ledger WHERE id = $1", count(EVENT("a@example.org", 6)));
	verify(&r);
	ck_assert_int_eq(r.problems, 1);
	ck_assert_int_eq(r.event_id, count(EVENT("a@example.org", 5)));
	ck_assert_msg(strstr(r.what, "ends at seq 5 but the subscriber has had 6")
	    != NULL, "%s", r.what);
	/* every event deleted: the subscriber's count still says so */
	tamper("DELETE FROM ledger WHERE subscriber_id = (SELECT id FROM subscribers"
	    " WHERE email = 'a@example.org')", 0);
	verify(&r);
	ck_assert_int_gt(r.problems, 0);
}
END_TEST

/* The wording an event names is in its content digest; a wording swapped
 * later is found at the first event that named it. Wordings are never
 * removed. */
START_TEST(test_consent_text_covered)
{
	static const struct ledger_evidence text_ev = {
		.source = "signup form", .ip = "192.0.2.8",
		.operator_name = "tester", .consent_text_version = "v1",
	};
	struct ledger_verify_result r;
	struct assent_err err;

	run_ok("INSERT INTO consent_texts (version, body, sha256, created_by)"
	    " VALUES ('v1', 'Yes, send me news.', encode(sha256('Yes, send me news.'),"
	    " 'hex'), 'tester')");
	add("e@example.org", "news", &text_ev, false);
	add("f@example.org", "news", &text_ev, false);
	ck_assert_int_eq(count("SELECT count(*) FROM ledger l JOIN consent_texts t"
	    " ON t.version = l.consent_text_version"
	    " WHERE l.consent_text_sha256 = t.sha256"), 2);
	assert_intact();
	ck_assert_int_eq(db_exec(conn, NULL, &err, "DELETE FROM consent_texts", 0,
	    NULL), -1);
	ck_assert_str_eq(db_last_sqlstate(), "42501");
	/* (the ledger's foreign key may refuse it before the trigger does) */
	ck_assert_int_eq(db_exec(conn, NULL, &err, "TRUNCATE consent_texts", 0,
	    NULL), -1);
	ck_assert_int_eq(count("SELECT count(*) FROM consent_texts"), 1);
	tamper("UPDATE consent_texts SET body = 'Yes, sell my address.',"
	    " sha256 = encode(sha256('Yes, sell my address.'), 'hex')", 0);
	verify(&r);
	ck_assert_int_eq(r.problems, 2);
	ck_assert_int_eq(r.event_id, count("SELECT min(id) FROM ledger"
	    " WHERE consent_text_version = 'v1'"));
	ck_assert_msg(strstr(r.what, "consent text \"v1\" was changed") != NULL,
	    "%s", r.what);
}
END_TEST


/* 0003's digest functions (LANGUAGE sql), in this session's pg_temp:
 * what every event was sealed with before 0007 replaced them. */
static const char ledger_0003_digests[] =
    "CREATE FUNCTION pg_temp.personal_0003(e ledger) RETURNS bytea"
    " LANGUAGE sql STABLE AS $$"
    " SELECT sha256(e.salt || convert_to(concat_ws('|',"
    "  coalesce(ledger_canon(text(e.ip)), '-'),"
    "  coalesce(ledger_canon(e.user_agent), '-'),"
    "  coalesce(ledger_canon(e.page), '-'),"
    "  coalesce(ledger_canon(e.source), '-'),"
    "  coalesce(ledger_canon(e.import_file), '-')), 'UTF8')) $$;"
    "CREATE FUNCTION pg_temp.content_0003(e ledger) RETURNS bytea"
    " LANGUAGE sql STABLE AS $$"
    " SELECT sha256(convert_to(concat_ws('|',"
    "  coalesce(ledger_canon(e.subscriber_id::text), '-'),"
    "  coalesce(ledger_canon(e.seq::text), '-'),"
    "  coalesce(ledger_canon(e.list_id::text), '-'),"
    "  coalesce(ledger_canon(e.action), '-'),"
    "  coalesce(ledger_canon(e.channel), '-'),"
    "  coalesce(ledger_canon(e.status_before), '-'),"
    "  coalesce(ledger_canon(e.status_after), '-'),"
    "  coalesce(ledger_canon(ledger_canon_us(e.at)), '-'),"
    "  coalesce(ledger_canon(e.operator), '-'),"
    "  coalesce(ledger_canon(e.consent_text_version), '-'),"
    "  coalesce(ledger_canon(e.consent_text_sha256), '-'),"
    "  coalesce(ledger_canon(e.basis), '-'),"
    "  coalesce(ledger_canon(ledger_canon_us(e.basis_expires_at)), '-'),"
    "  coalesce(ledger_canon(e.import_sha256), '-'),"
    "  coalesce(ledger_canon(e.import_line::text), '-'),"
    "  coalesce(ledger_canon(encode(e.personal_sha256, 'hex')), '-')),"
    "  'UTF8')) $$";

/* Events appended through the chain trigger of 0007, every field used
 * (non-ASCII text, IPv6, times before 1970 and with microseconds, an
 * empty string, an import, implied consent, a consent wording), carry
 * the digests 0003 gave and that ledger_verify() recomputes in C. */
START_TEST(test_trigger_digests_as_0003)
{
	run_ok("INSERT INTO consent_texts (version, body, sha256, created_by)"
	    " VALUES ('v1', 'Oui, des nouvelles \u00e9t\u00e9.',"
	    " encode(sha256(convert_to('Oui, des nouvelles \u00e9t\u00e9.', 'UTF8')),"
	    " 'hex'), 'tester')");
	run_ok("INSERT INTO ledger (subscriber_id, list_id, action, channel,"
	    " status_before, status_after, ip, user_agent, page, operator, source,"
	    " consent_text_version, basis, basis_expires_at, import_file,"
	    " import_sha256, import_line)"
	    " SELECT id, NULL, 'rectify', 'cli', NULL, NULL, '2001:db8::7',"
	    " 'M\u00f6zilla \u2603 | \"q\" \\', '', 'tester', 'caf\u00e9 desk', 'v1',"
	    " 'implied', '2031-02-03 04:05:06.789123+02', 'f|\u00e9.csv',"
	    " repeat('ab', 32), 7 FROM subscribers WHERE email = 'a@example.org';"
	    "INSERT INTO ledger (subscriber_id, action, channel, operator, source,"
	    " ip, basis_expires_at)"
	    " SELECT id, 'rectify', 'cli', 'o', 's', '192.0.2.1',"
	    " '1969-12-31 23:59:59.5+00' FROM subscribers WHERE email = 'b@example.org'");
	run_ok(ledger_0003_digests);
	ck_assert_int_eq(count("SELECT count(*) FROM ledger l WHERE"
	    " pg_temp.personal_0003(l) IS DISTINCT FROM l.personal_sha256"
	    " OR pg_temp.content_0003(l) IS DISTINCT FROM l.content_sha256"), 0);
	ck_assert_int_eq(count("SELECT count(*) FROM ledger l WHERE"
	    " ledger_personal_digest(l) IS DISTINCT FROM l.personal_sha256"
	    " OR ledger_content_digest(l) IS DISTINCT FROM l.content_sha256"), 0);
	ck_assert_int_eq(count("SELECT count(*) FROM ledger WHERE basis = 'implied'"
	    " AND consent_text_sha256 IS NOT NULL AND import_line = 7"), 1);
	assert_intact();
	/* changed fields: both still agree, and the change shows */
	ck_assert_int_eq(count("SELECT count(*) FROM ledger l,"
	    " LATERAL jsonb_populate_record(l, '{\"user_agent\": \"x\","
	    " \"at\": \"1999-01-01 00:00:00.000001+00\", \"import_line\": 8}') m"
	    " WHERE pg_temp.personal_0003(m) IS DISTINCT FROM ledger_personal_digest(m)"
	    " OR pg_temp.content_0003(m) IS DISTINCT FROM ledger_content_digest(m)"
	    " OR ledger_content_digest(m) = l.content_sha256"
	    " OR ledger_personal_digest(m) = l.personal_sha256"), 0);
}
END_TEST

/* Under the erasure flag for a@, each of these changes something
 * erasure may not. */
#define BLANK_REST "user_agent = NULL, page = NULL, import_file = NULL, salt = NULL"
#define BLANK "ip = NULL, source = NULL, erased_at = now(), " BLANK_REST

static const char *const erase_abuses[] = {
	BLANK ", action = 'import'",
	BLANK ", status_after = 'pending'",
	BLANK ", at = at - interval '1 day'",
	BLANK ", seq = seq + 100",
	BLANK ", list_id = NULL",
	BLANK ", operator = 'someone else'",
	BLANK ", consent_text_version = 'v9'",
	BLANK ", import_sha256 = repeat('a', 64)",
	BLANK ", personal_sha256 = sha256('x')",
	BLANK ", content_sha256 = sha256('x')",
	BLANK ", chain_sha256 = sha256('x')",
	BLANK ", txid = 1",
	/* personal fields may only be blanked, and all of them */
	"ip = NULL, source = 'rewritten', erased_at = now(), " BLANK_REST,
	"ip = '203.0.113.9', source = NULL, erased_at = now(), " BLANK_REST,
	"ip = NULL, source = NULL, erased_at = NULL, " BLANK_REST,
	"ip = NULL, source = NULL, erased_at = now(), user_agent = NULL,"
	" page = NULL, import_file = NULL",
};

START_TEST(test_erase_flag_changes_nothing_else)
{
	char sql[1024];
	struct assent_err err;

	snprintf(sql, sizeof(sql), "UPDATE ledger SET %s WHERE subscriber_id = (SELECT id FROM subscribers"
	    " WHERE email = 'a@example.org')", erase_abuses[_i]);
	ck_assert_int_eq(db_begin(conn, &err), 0);
	ck_assert_int_eq(db_exec(conn, NULL, &err, ERASE_FLAG_A, 0, NULL), 0);
	ck_assert_int_eq(db_exec(conn, NULL, &err, sql, 0, NULL), -1);
	ck_assert_str_eq(db_last_sqlstate(), "42501");
	db_rollback(conn);
	assert_intact();
}
END_TEST

/* The flag names one subscriber: another's events stay refused. */
START_TEST(test_erase_flag_is_for_one_subscriber)
{
	struct assent_err err;

	ck_assert_int_eq(db_begin(conn, &err), 0);
	ck_assert_int_eq(db_exec(conn, NULL, &err, ERASE_FLAG_A, 0, NULL), 0);
	ck_assert_int_eq(db_exec(conn, NULL, &err, "UPDATE ledger SET ip = NULL, user_agent = NULL, page = NULL,"
	    " source = NULL, import_file = NULL, salt = NULL, erased_at = now()", 0, NULL), -1);
	ck_assert_str_eq(db_last_sqlstate(), "42501");
	db_rollback(conn);
	ck_assert_int_eq(count("SELECT count(*) FROM ledger WHERE erased_at IS NOT NULL"), 0);
}
END_TEST

/*
 * Row conditions (the CHECK constraints of 0001, 0003 and 0005): a bad
 * row written by direct SQL is refused with 23514 naming the
 * constraint, whatever checks it. An event is the row below with one
 * column set as the case says; a subscriber is a@ updated. The columns
 * the chain trigger computes (seq, salt, digests, consent_text_sha256,
 * erased_at) cannot be set by an INSERT; an infinite basis_expires_at
 * fails sealing first (0A000).
 */
static const struct {
	const char *column;
	const char *value;              /* SQL */
	const char *constraint;
} bad_events[] = {
	{ "action", "'resign'", "ledger_action_check" },
	{ "channel", "'fax'", "ledger_channel_check" },
	{ "status_before", "'gone'", "ledger_status_before_check" },
	{ "status_after", "'gone'", "ledger_status_after_check" },
	{ "user_agent", "E'Mail\\x01'", "ledger_user_agent_check" },
	{ "user_agent", "repeat('u', 513)", "ledger_user_agent_check" },
	{ "page", "E'/join\\n'", "ledger_page_check" },
	{ "page", "repeat('p', 1001)", "ledger_page_check" },
	{ "operator", "E'test\\ter'", "ledger_operator_check" },
	{ "operator", "repeat('o', 201)", "ledger_operator_check" },
	{ "source", "''", "ledger_source_check" },
	{ "source", "E'desk\\x7f'", "ledger_source_check" },
	{ "source", "repeat('s', 1001)", "ledger_source_check" },
	{ "consent_text_version", "'v 1'", "ledger_consent_text_version_check" },
	{ "consent_text_version", "repeat('v', 65)", "ledger_consent_text_version_check" },
	{ "operator", "NULL", "ledger_check" },                 /* channel cli */
	{ "basis", "'assumed'", "ledger_basis_check" },
	{ "import_file", "E'fair\\r.csv'", "ledger_import_file_check" },
	{ "import_file", "repeat('f', 1001)", "ledger_import_file_check" },
	{ "import_sha256", "repeat('A', 64)", "ledger_import_sha256_check" },
	{ "import_sha256", "repeat('a', 63)", "ledger_import_sha256_check" },
	{ "import_line", "0", "ledger_import_line_check" },
	{ "source", "NULL", "ledger_source_unless_erased" },
	{ NULL, NULL, NULL },                                   /* the good row */
};

static const char *const event_columns[][2] = {
	{ "action", "'rectify'" }, { "channel", "'cli'" },
	{ "operator", "'tester'" }, { "source", "'typo fixed'" },
};

START_TEST(test_bad_event_refused)
{
	char cols[512] = "subscriber_id", vals[2048] =
	    "(SELECT id FROM subscribers WHERE email = 'a@example.org')", sql[3072];
	const char *col = bad_events[_i].column, *val;
	struct assent_err err;
	bool replaced = false;
	long before = count("SELECT count(*) FROM ledger");

	for (size_t k = 0; k < sizeof(event_columns) / sizeof(event_columns[0]); k++) {
		val = event_columns[k][1];
		if (col != NULL && strcmp(col, event_columns[k][0]) == 0) {
			val = bad_events[_i].value;
			replaced = true;
		}
		snprintf(cols + strlen(cols), sizeof(cols) - strlen(cols), ", %s",
		    event_columns[k][0]);
		snprintf(vals + strlen(vals), sizeof(vals) - strlen(vals), ", %s", val);
	}
	if (col != NULL && !replaced) {
		snprintf(cols + strlen(cols), sizeof(cols) - strlen(cols), ", %s", col);
		snprintf(vals + strlen(vals), sizeof(vals) - strlen(vals), ", %s",
		    bad_events[_i].value);
	}
	snprintf(sql, sizeof(sql), "INSERT INTO ledger (%s) VALUES (%s)", cols, vals);
	if (col == NULL) {
		ck_assert_msg(db_exec(conn, NULL, &err, sql, 0, NULL) == 0, "%s: %s",
		    sql, err.msg);
		ck_assert_int_eq(count("SELECT count(*) FROM ledger"), before + 1);
		assert_intact();
		return;
	}
	ck_assert_int_eq(db_exec(conn, NULL, &err, sql, 0, NULL), -1);
	ck_assert_msg(strcmp(db_last_sqlstate(), "23514") == 0, "%s: %s %s", sql,
	    db_last_sqlstate(), err.msg);
	ck_assert_int_eq(err.code, EX_DATAERR);
	ck_assert_msg(strstr(err.msg, bad_events[_i].constraint) != NULL, "%s", err.msg);
	ck_assert_int_eq(count("SELECT count(*) FROM ledger"), before);
	ck_assert_int_eq(count("SELECT ledger_seq FROM subscribers"
	    " WHERE email = 'a@example.org'"), 5);
	assert_intact();
}
END_TEST

static const struct {
	const char *set;                /* SQL, for a@ */
	const char *constraint;
} bad_subscribers[] = {
	{ "email = 'no-at-sign', email_key = 'no-at-sign'", "subscribers_email_check" },
	{ "email = 'a@EXAMPLE.org', email_key = 'a@example.org'", "subscribers_email_check" },
	{ "email_key = 'b@example.org'", "subscribers_check" },
	{ "name = E'Ann\\n'", "subscribers_name_check" },
	{ "name = repeat('n', 201)", "subscribers_name_check" },
	{ "attrs = '[]'", "subscribers_attrs_check" },
	{ "ledger_seq = -1", "subscribers_ledger_seq_check" },
	{ "email = NULL, email_key = NULL", "subscribers_live_or_shell" },
	{ "email = NULL, email_key = NULL, name = 'Ann', erased_at = now()",
	    "subscribers_live_or_shell" },
	{ "name = 'Ann', attrs = '{\"k\": \"v\"}'", NULL },
};

START_TEST(test_bad_subscriber_refused)
{
	struct assent_err err;
	char sql[512];

	snprintf(sql, sizeof(sql), "UPDATE subscribers SET %s"
	    " WHERE email = 'a@example.org'", bad_subscribers[_i].set);
	if (bad_subscribers[_i].constraint == NULL) {
		ck_assert_msg(db_exec(conn, NULL, &err, sql, 0, NULL) == 0, "%s", err.msg);
		return;
	}
	ck_assert_int_eq(db_exec(conn, NULL, &err, sql, 0, NULL), -1);
	ck_assert_msg(strcmp(db_last_sqlstate(), "23514") == 0, "%s %s",
	    db_last_sqlstate(), err.msg);
	ck_assert_int_eq(err.code, EX_DATAERR);
	ck_assert_msg(strstr(err.msg, bad_subscribers[_i].constraint) != NULL, "%s",
	    err.msg);
	ck_assert_int_eq(count("SELECT count(*) FROM subscribers"
	    " WHERE email = 'a@example.org' AND name = ''"), 1);
}
END_TEST

/* And a new subscriber, by INSERT. */
static const char *const bad_new_subscribers[] = {
	"('x@exa_mple.org', 'x@exa_mple.org', '')",
	"('X@example.org', 'X@example.org', '')",
	"('x@example.org', 'x@example.org', E'\\x1b[31m')",
};

START_TEST(test_bad_new_subscriber_refused)
{
	struct assent_err err;
	char sql[512];

	snprintf(sql, sizeof(sql), "INSERT INTO subscribers (email, email_key, name)"
	    " VALUES %s", bad_new_subscribers[_i]);
	ck_assert_int_eq(db_exec(conn, NULL, &err, sql, 0, NULL), -1);
	ck_assert_msg(strcmp(db_last_sqlstate(), "23514") == 0, "%s %s",
	    db_last_sqlstate(), err.msg);
	ck_assert_int_eq(err.code, EX_DATAERR);
	ck_assert_int_eq(count("SELECT count(*) FROM subscribers"
	    " WHERE email_key LIKE 'x@%'"), 0);
}
END_TEST

START_TEST(test_repeatable_read_append_refused)
{
	const char *levels[] = { "REPEATABLE READ", "SERIALIZABLE" };
	char begin[64];
	struct ledger_event ev = {
		.action = "rectify", .channel = "cli", .evidence = &cli_ev,
	};
	char id[24];
	struct assent_err err;

	snprintf(id, sizeof(id), "%ld",
	    count("SELECT id FROM subscribers WHERE email = 'a@example.org'"));
	ev.subscriber_id = id;
	for (size_t i = 0; i < sizeof(levels) / sizeof(levels[0]); i++) {
		snprintf(begin, sizeof(begin), "BEGIN ISOLATION LEVEL %s", levels[i]);
		run_ok(begin);
		ck_assert_int_eq(ledger_append(conn, &ev, &err), -1);
		ck_assert_str_eq(db_last_sqlstate(), "55000");
		ck_assert_ptr_nonnull(strstr(err.msg, "READ COMMITTED"));
		db_rollback(conn);
	}
	assert_intact();
}
END_TEST

/* Apply the migration files first..last by hand (migrate_apply() wants
 * them all). */
static void
apply_files(int first, int last)
{
	char pattern[300], *sql;
	glob_t g;
	FILE *f;
	long len;

	snprintf(pattern, sizeof(pattern), "%s/[0-9][0-9][0-9][0-9]_*.sql",
	    migrate_sql_dir());
	ck_assert_int_eq(glob(pattern, 0, NULL, &g), 0);
	for (int v = first; v <= last; v++) {
		ck_assert_uint_ge(g.gl_pathc, (size_t)v);
		ck_assert_ptr_nonnull(f = fopen(g.gl_pathv[v - 1], "r"));
		fseek(f, 0, SEEK_END);
		len = ftell(f);
		rewind(f);
		sql = calloc(1, (size_t)len + 1);
		ck_assert_int_eq(fread(sql, 1, (size_t)len, f), len);
		fclose(f);
		run_ok("BEGIN");
		run_ok(sql);
		run_ok("COMMIT");
		free(sql);
	}
	globfree(&g);
}

/* Events written before 0003 are chained by the migration itself, in
 * (subscriber, id) order, keeping their times. */
START_TEST(test_migration_chains_existing_events)
{
	char *dbname;

	conn = testhelp_db_create_empty(NULL, &dbname);
	apply_files(1, 2);
	run_ok("INSERT INTO lists (name) VALUES ('news');"
	    " INSERT INTO subscribers (email, email_key) VALUES ('x@example.org',"
	    " 'x@example.org'), ('y@example.org', 'y@example.org');"
	    " BEGIN; INSERT INTO ledger (subscriber_id, list_id, action, channel,"
	    " status_after, operator, source, ip, at) VALUES"
	    " (2, 1, 'subscribe', 'cli', 'confirmed', 'o', 's', '192.0.2.1', '2020-01-01'),"
	    " (1, 1, 'subscribe', 'web', 'confirmed', NULL, 'form', '2001:db8::1', DEFAULT),"
	    " (2, NULL, 'rectify', 'cli', NULL, 'o', 'name fixed', NULL, DEFAULT);"
	    " INSERT INTO subscriptions VALUES (1, 1, 'confirmed'), (2, 1, 'confirmed');"
	    " COMMIT");
	apply_files(3, MIGRATE_SCHEMA_VERSION);
	ck_assert_int_eq(count("SELECT count(*) FROM ledger WHERE subscriber_id = 2"
	    " AND seq = 2 AND action = 'rectify'"), 1);
	ck_assert_int_eq(count("SELECT count(*) FROM ledger WHERE subscriber_id = 2"
	    " AND seq = 1 AND at = '2020-01-01'"), 1);
	assert_intact();
	run_ok("INSERT INTO ledger (subscriber_id, action, channel, operator, source)"
	    " VALUES (1, 'rectify', 'cli', 'o', 'later')");
	ck_assert_int_eq(count("SELECT max(seq) FROM ledger WHERE subscriber_id = 1"), 2);
	assert_intact();
	testhelp_db_drop(conn, dbname);
	free(dbname);
	conn = NULL;
}
END_TEST

int
main(void)
{
	Suite *s = suite_create("ledger");
	TCase *tc = tcase_create("ledger");

	testhelp_require_servers();
	tcase_add_checked_fixture(tc, setup, testhelp_fixture_drop);
	tcase_set_timeout(tc, 30);
	tcase_add_test(tc, test_mixed_history_is_intact);
	tcase_add_test(tc, test_head_changes_only_with_the_ledger);
	tcase_add_test(tc, test_insert_cannot_choose_computed_columns);
	tcase_add_test(tc, test_concurrent_appends_chain);
	tcase_add_loop_test(tc, test_tampering_is_found_at_its_event, 0,
	    sizeof(tamper_cases) / sizeof(tamper_cases[0]));
	tcase_add_test(tc, test_first_event_deleted);
	tcase_add_test(tc, test_recomputed_row_breaks_next_link);
	tcase_add_test(tc, test_subscription_without_matching_event);
	tcase_add_loop_test(tc, test_plain_edits_refused, 0,
	    sizeof(refused_edits) / sizeof(refused_edits[0]));
	tcase_add_test(tc, test_erasure_keeps_the_chain);
	tcase_add_test(tc, test_erase_time_is_forced);
	tcase_add_test(tc, test_txid_is_forced);
	tcase_add_test(tc, test_sealed_first_event_kept);
	tcase_add_test(tc, test_sealed_first_event_forged_is_found);
	tcase_add_test(tc, test_sealed_first_event_of_another_time_resealed);
	tcase_add_test(tc, test_sealed_first_event_twice_refused);
	tcase_add_test(tc, test_sealed_first_event_without_wording_digest_resealed);
	tcase_add_test(tc, test_sealed_first_event_with_wording_kept);
	tcase_add_test(tc, test_deleted_statusless_tail);
	tcase_add_test(tc, test_consent_text_covered);
	tcase_add_test(tc, test_trigger_digests_as_0003);
	tcase_add_loop_test(tc, test_erase_flag_changes_nothing_else, 0,
	    sizeof(erase_abuses) / sizeof(erase_abuses[0]));
	tcase_add_test(tc, test_erase_flag_is_for_one_subscriber);
	tcase_add_test(tc, test_repeatable_read_append_refused);
	suite_add_tcase(s, tc);
	tc = tcase_create("conditions");
	tcase_add_checked_fixture(tc, setup, testhelp_fixture_drop);
	tcase_set_timeout(tc, 30);
	tcase_add_loop_test(tc, test_bad_event_refused, 0,
	    sizeof(bad_events) / sizeof(bad_events[0]));
	tcase_add_loop_test(tc, test_bad_subscriber_refused, 0,
	    sizeof(bad_subscribers) / sizeof(bad_subscribers[0]));
	tcase_add_loop_test(tc, test_bad_new_subscriber_refused, 0,
	    sizeof(bad_new_subscribers) / sizeof(bad_new_subscribers[0]));
	suite_add_tcase(s, tc);
	tc = tcase_create("migration");
	tcase_set_timeout(tc, 30);
	tcase_add_test(tc, test_migration_chains_existing_events);
	suite_add_tcase(s, tc);
	return testhelp_run_suite(s);
}

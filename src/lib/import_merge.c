/* import_merge: the staged rows into subscribers, subscriptions and the
 * ledger with set-based SQL (import.h), in the import's transaction. */
#include <stdlib.h>
#include <string.h>
#include <sysexits.h>

#include "assent/audit.h"
#include "assent/db.h"
#include "assent/ledger.h"
#include "assent/xmalloc.h"
#include "import_private.h"

/* Lines per write step: a progress report after each. */
#define IMPORT_STEP_LINES 25000

/* What import.c streams in with COPY, one row per good record. hash and
 * mbox_hash are keyed hashes (suppress_hash()) for the gate's hash
 * entries; mbox is the gmail mailbox key when that option is on. */
const char import_staging_sql[] =
	"CREATE TEMP TABLE import_rows ("
	" line integer NOT NULL, email text NOT NULL,"
	" key text COLLATE \"C\" NOT NULL, domain text COLLATE \"C\" NOT NULL,"
	" hash text COLLATE \"C\" NOT NULL, mbox text COLLATE \"C\","
	" mbox_hash text COLLATE \"C\", name text, attrs jsonb,"
	" basis text NOT NULL, expires timestamptz, collected timestamptz"
	") ON COMMIT DROP";

/* An entry that is in force. */
#define IMPORT_ACTIVE \
	"e.removed_at IS NULL AND (e.expires_at IS NULL OR e.expires_at > now())"

/*
 * Every active entry that stops a row of the relation rel (columns key,
 * domain, hash, mbox, mbox_hash), as suppress_gate() matches them, with
 * how specific the match is (rank: address, keyed hash, gmail mailbox
 * key, domain). Equality joins, one for each way to match, so that the
 * planner can hash a big side or probe the gate's indexes for a small
 * one: never a scan of the list for each row.
 */
#define IMPORT_MATCHES(rel) \
	"SELECT r.key, e.reason, 1 AS rank, e.id FROM " rel " r JOIN suppressions e" \
	"  ON e.kind = 'address' AND e.value = r.key AND " IMPORT_ACTIVE \
	" UNION ALL SELECT r.key, e.reason, 2, e.id FROM " rel " r JOIN suppressions e" \
	"  ON e.kind = 'hash' AND e.value = r.hash AND " IMPORT_ACTIVE \
	" UNION ALL SELECT r.key, e.reason, 3, e.id FROM " rel " r JOIN suppressions e" \
	"  ON e.kind = 'address' AND e.mailbox_key = r.mbox AND " IMPORT_ACTIVE \
	" UNION ALL SELECT r.key, e.reason, 3, e.id FROM " rel " r JOIN suppressions e" \
	"  ON e.kind = 'hash' AND e.mailbox_key = r.mbox_hash AND " IMPORT_ACTIVE \
	" UNION ALL SELECT r.key, e.reason, 4, e.id FROM " rel " r JOIN suppressions e" \
	"  ON e.kind = 'domain' AND e.value = r.domain AND " IMPORT_ACTIVE

/*
 * The plan: each address once (its first line), with what is to be done.
 * suppressed: the reason of an active entry that stops the address, as
 * suppress_gate() matches them (address, keyed hash, gmail mailbox key,
 * domain). A subscription the person ended is never started again; one
 * pending or confirmed is left as it is, or (with --update, $2) gets the
 * row's name and attributes when they differ.
 */
static const char import_plan_sql[] =
	"CREATE TEMP TABLE import_plan ON COMMIT DROP AS"
	" SELECT d.line, d.email, d.key, d.domain, d.hash, d.mbox, d.mbox_hash,"
	"  d.name, d.attrs, d.basis, d.expires,"
	"  d.collected, s.id AS sub_id, sup.reason AS suppressed,"
	"  CASE WHEN sup.reason IS NOT NULL THEN 'suppressed'"
	"   WHEN x.status = 'unsubscribed' THEN 'unsubscribed'"
	"   WHEN x.status IS NOT NULL THEN CASE WHEN $2::boolean AND"
	"    ((d.name IS NOT NULL AND d.name <> s.name) OR (d.attrs IS NOT NULL"
	"     AND s.attrs || d.attrs <> s.attrs)) THEN 'updated' ELSE 'unchanged' END"
	"   ELSE 'added' END AS outcome"
	" FROM (SELECT DISTINCT ON (key) * FROM import_rows ORDER BY key, line) d"
	" LEFT JOIN subscribers s ON s.email_key = d.key"
	" LEFT JOIN subscriptions x ON x.subscriber_id = s.id AND x.list_id = $1"
	" LEFT JOIN (SELECT DISTINCT ON (key) key, reason FROM ("
	IMPORT_MATCHES("import_rows") ") m ORDER BY key, rank, id) sup"
	"  ON sup.key = d.key";

/* New people, for the plan's lines in [$2, $3): the subscriber (its
 * chain counted 1) and the subscription; the rows come back for their
 * first ledger events, sealed in C (import_new_events()). */
static const char import_new_sql[] =
	"WITH p AS (SELECT * FROM import_plan WHERE outcome = 'added'"
	"  AND sub_id IS NULL AND line >= $2 AND line < $3),"
	" ns AS (INSERT INTO subscribers (email, email_key, name, attrs, ledger_seq)"
	"  SELECT email, key, coalesce(name, ''), coalesce(attrs, '{}'), 1 FROM p"
	"  RETURNING id, email_key),"
	" sb AS (INSERT INTO subscriptions (subscriber_id, list_id, status, basis,"
	"  basis_expires_at)"
	"  SELECT ns.id, $1, 'confirmed', p.basis, p.expires"
	"  FROM ns JOIN p ON p.key = ns.email_key)"
	" SELECT ns.id, p.line, p.basis,"
	"  (extract(epoch FROM p.expires) * 1000000)::bigint,"
	"  (extract(epoch FROM p.collected) * 1000000)::bigint"
	" FROM ns JOIN p ON p.key = ns.email_key";

/* Their events, each a first event sealed by ledger_seal_first(): the
 * chain trigger lets exactly such rows through (sql/0010_import.sql). */
static const char import_events_copy[] =
	"COPY ledger (at, txid, subscriber_id, list_id, action, channel,"
	" status_after, operator, source, consent_text_version,"
	" consent_text_sha256, basis, basis_expires_at, consent_collected_at,"
	" import_file, import_sha256, import_line, seq, salt, personal_sha256,"
	" content_sha256, chain_sha256) FROM STDIN";

/* People known from other lists: a ledger event through the chain
 * trigger (it locks, counts and seals) and the subscription. */
static const char import_known_sql[] =
	"WITH p AS (SELECT * FROM import_plan WHERE outcome = 'added'"
	"  AND sub_id IS NOT NULL AND line >= $2 AND line < $3),"
	" ev AS (INSERT INTO ledger (subscriber_id, list_id, action, channel,"
	"  status_after, operator, source, consent_text_version, basis,"
	"  basis_expires_at, consent_collected_at, import_file, import_sha256,"
	"  import_line)"
	"  SELECT sub_id, $1, 'import', 'import', 'confirmed', $4, $5, $6, basis,"
	"   expires, collected, $7, $8, line FROM p ORDER BY sub_id)"
	" INSERT INTO subscriptions (subscriber_id, list_id, status, basis,"
	"  basis_expires_at)"
	" SELECT sub_id, $1, 'confirmed', basis, expires FROM p";

/* --update: name (when the row has one) and attributes (merged, the
 * row's keys win); never a status. Each change of personal data is
 * audited (a rectification, as "sub rectify" records one). */
static const char import_update_sql[] =
	"WITH u AS (UPDATE subscribers s SET name = coalesce(p.name, s.name),"
	"  attrs = s.attrs || coalesce(p.attrs, '{}'), updated_at = now()"
	"  FROM import_plan p WHERE p.outcome = 'updated' AND s.id = p.sub_id"
	"  AND p.line >= $1 AND p.line < $2 RETURNING s.id, p.line)"
	" INSERT INTO audit (operator, host, action, subject, detail)"
	" SELECT $3, $4, 'rectify', 'subscriber ' || u.id,"
	"  jsonb_build_object('by', 'import --update', 'import_sha256', $5::text,"
	"   'import_line', u.line)"
	" FROM u";

/* A row added although an entry committed since the plan stops it. */
static const char import_recheck_sql[] =
	"WITH added AS (SELECT * FROM import_plan WHERE outcome = 'added')"
	" SELECT p.line, p.email, m.reason FROM (" IMPORT_MATCHES("added") ") m"
	" JOIN import_plan p ON p.key = m.key ORDER BY p.line LIMIT 1";

/* What was not taken by choice, in line order. */
static const char import_skipped_sql[] =
	"SELECT line, reason, email FROM ("
	" SELECT line, CASE outcome WHEN 'suppressed' THEN 'suppressed ('"
	"   || suppressed || ')' ELSE 'unsubscribed from ' || $1 END AS reason,"
	"  email FROM import_plan WHERE outcome IN ('suppressed', 'unsubscribed')"
	" UNION ALL"
	" SELECT r.line, 'duplicate of line ' || f.line, r.email"
	"  FROM import_rows r JOIN import_plan f ON f.key = r.key AND f.line <> r.line"
	") q ORDER BY line";

static void
import_progress(struct import_job *j, const char *phase, uint64_t done,
    uint64_t total)
{
	struct import_progress p = { phase, done, total, j->s->rows,
	    import_clock() - j->started };

	if (j->o->progress != NULL)
		j->o->progress(&p, j->o->progress_arg);
}

static int
import_plan(struct import_job *j, struct assent_err *err)
{
	const char *params[] = { j->list_id, j->o->update ? "true" : "false" };
	PGresult *res;
	unsigned long planned = 0;

	import_progress(j, "checking", 0, 0);
	if (db_exec(j->conn, NULL, err, "ANALYZE import_rows", 0, NULL) == -1 ||
	    db_exec(j->conn, NULL, err, import_plan_sql, 2, params) == -1 ||
	    db_exec(j->conn, NULL, err, "CREATE INDEX ON import_plan (line)"
	    " WHERE outcome IN ('added', 'updated')", 0, NULL) == -1 ||
	    db_exec(j->conn, NULL, err, "ANALYZE import_plan", 0, NULL) == -1 ||
	    db_exec(j->conn, &res, err, "SELECT outcome, count(*) FROM import_plan"
	    " GROUP BY outcome", 0, NULL) == -1)
		return -1;
	for (int r = 0; r < PQntuples(res); r++) {
		const char *o = PQgetvalue(res, r, 0);
		unsigned long n = strtoul(PQgetvalue(res, r, 1), NULL, 10);

		planned += n;
		*(strcmp(o, "added") == 0 ? &j->s->added :
		    strcmp(o, "updated") == 0 ? &j->s->updated :
		    strcmp(o, "unchanged") == 0 ? &j->s->unchanged :
		    strcmp(o, "unsubscribed") == 0 ? &j->s->unsubscribed :
		    &j->s->suppressed) += n;
	}
	PQclear(res);
	j->s->duplicates = j->staged - planned;
	return 0;
}

/* A bytea for COPY text: "\\x" and hex (COPY takes one backslash off). */
static void
import_copy_bytea(struct buf *b, const unsigned char *p, size_t n, bool last)
{
	static const char digits[] = "0123456789abcdef";
	char pair[2];

	buf_add(b, "\\\\x", 3);
	for (size_t i = 0; i < n; i++) {
		pair[0] = digits[p[i] >> 4];
		pair[1] = digits[p[i] & 15];
		buf_add(b, pair, 2);
	}
	buf_add(b, last ? "\n" : "\t", 1);
}

static int64_t
import_us_or_none(const PGresult *res, int row, int col)
{
	return PQgetisnull(res, row, col) ? -1 :
	    strtoll(PQgetvalue(res, row, col), NULL, 10);
}

/* One sealed first event as a COPY row of import_events_copy. */
static void
import_new_event(struct import_job *j, const PGresult *res, int row)
{
	struct ledger_first e = {
		.subscriber_id = strtoll(PQgetvalue(res, row, 0), NULL, 10),
		.list_id = strtoll(j->list_id, NULL, 10),
		.action = "import", .channel = "import", .status_after = "confirmed",
		.at_us = j->now_us, .operator_name = j->o->operator_name,
		.source = j->o->source, .consent_text_version = j->o->consent_text,
		.consent_text_sha256 = j->text_sha256,
		.basis = PQgetvalue(res, row, 2),
		.basis_expires_us = import_us_or_none(res, row, 3),
		.collected_us = import_us_or_none(res, row, 4),
		.import_file = j->file_name, .import_sha256 = j->s->sha256,
		.import_line = strtoul(PQgetvalue(res, row, 1), NULL, 10),
	};
	struct ledger_sealed seal;
	struct buf *b = &j->copy;
	char t1[64], t2[64];

	ledger_seal_first(&e, &seal);
	if (e.basis_expires_us >= 0)
		import_time_text(e.basis_expires_us, t1);
	if (e.collected_us >= 0)
		import_time_text(e.collected_us, t2);
	import_copy_field(b, j->now_text, false);
	import_copy_field(b, j->txid, false);
	import_copy_field(b, PQgetvalue(res, row, 0), false);
	import_copy_field(b, j->list_id, false);
	import_copy_field(b, e.action, false);
	import_copy_field(b, e.channel, false);
	import_copy_field(b, e.status_after, false);
	import_copy_field(b, e.operator_name, false);
	import_copy_field(b, e.source, false);
	import_copy_field(b, e.consent_text_version, false);
	import_copy_field(b, e.consent_text_sha256, false);
	import_copy_field(b, e.basis, false);
	import_copy_field(b, e.basis_expires_us >= 0 ? t1 : NULL, false);
	import_copy_field(b, e.collected_us >= 0 ? t2 : NULL, false);
	import_copy_field(b, e.import_file, false);
	import_copy_field(b, e.import_sha256, false);
	import_copy_field(b, PQgetvalue(res, row, 1), false);
	import_copy_field(b, "1", false);
	import_copy_bytea(b, seal.salt, sizeof(seal.salt), false);
	import_copy_bytea(b, seal.personal, sizeof(seal.personal), false);
	import_copy_bytea(b, seal.content, sizeof(seal.content), false);
	import_copy_bytea(b, seal.chain, sizeof(seal.chain), true);
}

static int
import_new_events(struct import_job *j, const PGresult *res, struct assent_err *err)
{
	int rc = 0;

	if (PQntuples(res) == 0)
		return 0;
	if (import_copy_start(j, import_events_copy, err) == -1)
		return -1;
	for (int row = 0; row < PQntuples(res) && rc == 0; row++) {
		import_new_event(j, res, row);
		if (j->copy.len >= 64 * 1024)
			rc = import_copy_flush(j, err);
	}
	if (import_copy_end(j, rc == 0 ? NULL : "import stopped", rc == 0 ? err :
	    &(struct assent_err){ 0 }) == -1)
		rc = -1;
	return rc;
}

/* Someone else wrote one of the file's people meanwhile (a sign-up made
 * the same subscriber or subscription): nothing is lost, the import
 * only has to run again. */
static int
import_write_failed(struct assent_err *err)
{
	struct assent_err was = *err;
	const char *state = db_last_sqlstate();

	if (state == NULL || strcmp(state, "23505") != 0)
		return -1;
	return err_set(err, EX_TEMPFAIL, "a subscriber or subscription of the "
	    "file was written by someone else while the import ran (%s): nothing "
	    "was imported; run the import again", was.msg);
}

static int
import_update_step(struct import_job *j, const char *from, const char *to,
    struct assent_err *err)
{
	struct audit_actor who;
	char host[256];
	const char *params[] = { from, to, NULL, NULL, j->s->sha256 };

	audit_actor_local(&who, j->o->operator_name, host, sizeof(host));
	params[2] = who.operator_name;
	params[3] = who.host;
	return db_exec(j->conn, NULL, err, import_update_sql, 5, params);
}

/* Lines [from, to) of the plan. */
static int
import_write_step(struct import_job *j, unsigned long from, unsigned long to,
    struct assent_err *err)
{
	char a[24], b[24];
	const char *params[] = { j->list_id, a, b, j->o->operator_name,
	    j->o->source, j->o->consent_text, j->file_name, j->s->sha256 };
	PGresult *res;
	int rc;

	snprintf(a, sizeof(a), "%lu", from);
	snprintf(b, sizeof(b), "%lu", to);
	if (db_exec(j->conn, &res, err, import_new_sql, 3, params) == -1)
		return import_write_failed(err);
	rc = import_new_events(j, res, err);
	PQclear(res);
	if (rc == -1 ||
	    db_exec(j->conn, NULL, err, import_known_sql, 8, params) == -1)
		return import_write_failed(err);
	if (j->s->updated > 0 && import_update_step(j, a, b, err) == -1)
		return import_write_failed(err);
	return 0;
}

static int
import_write(struct import_job *j, struct assent_err *err)
{
	uint64_t total = j->s->added + j->s->updated, lines = j->last_line + 1;

	if (total == 0)
		return 0;
	import_progress(j, "writing", 0, total);
	for (unsigned long from = 2; from < lines; from += IMPORT_STEP_LINES) {
		if (import_write_step(j, from, from + IMPORT_STEP_LINES, err) == -1)
			return -1;
		uint64_t to = from + IMPORT_STEP_LINES;

		import_progress(j, "writing", (to > lines ? lines : to) * total / lines,
		    total);
	}
	return 0;
}

/* One skipped row into the rejects file: the address in its column. */
static int
import_skipped_row(struct import_job *j, const PGresult *res,
    struct csvin_field *fields, struct assent_err *err)
{
	for (size_t i = 0; i < j->ncols; i++)
		fields[i] = (struct csvin_field){ "", 0 };
	fields[j->email_col].s = PQgetvalue(res, 0, 2);
	fields[j->email_col].len = strlen(fields[j->email_col].s);
	return import_reject_write(j, strtoul(PQgetvalue(res, 0, 0), NULL, 10),
	    PQgetvalue(res, 0, 1), fields, j->ncols, err);
}

/* Stream the skipped rows (single-row mode: memory stays flat). */
static int
import_list_skipped(struct import_job *j, struct assent_err *err)
{
	const char *params[] = { j->s->list };
	struct csvin_field *fields;
	PGresult *res;
	int rc = 0;

	if (j->s->suppressed + j->s->unsubscribed + j->s->duplicates == 0)
		return 0;
	if (!PQsendQueryParams(j->conn, import_skipped_sql, 1, NULL, params, NULL,
	    NULL, 0) || !PQsetSingleRowMode(j->conn))
		return err_set(err, EX_UNAVAILABLE, "listing skipped rows: %s",
		    PQerrorMessage(j->conn));
	fields = xcalloc(j->ncols, sizeof(*fields));
	while ((res = PQgetResult(j->conn)) != NULL) {
		ExecStatusType st = PQresultStatus(res);

		if (rc == 0 && st == PGRES_SINGLE_TUPLE)
			rc = import_skipped_row(j, res, fields, err);
		else if (rc == 0 && st != PGRES_TUPLES_OK)
			rc = err_set(err, EX_SOFTWARE, "listing skipped rows: %s",
			    PQresultErrorMessage(res));
		PQclear(res);
	}
	free(fields);
	return rc;
}

/* The plan saw the suppression list as it stood; an entry committed
 * since then for someone the import added refuses the whole import. */
static int
import_recheck(struct import_job *j, struct assent_err *err)
{
	PGresult *res;
	int rc = 0;

	if (j->s->added == 0)
		return 0;
	import_progress(j, "checking", 0, 0);
	if (db_exec(j->conn, &res, err, import_recheck_sql, 0, NULL) == -1)
		return -1;
	if (PQntuples(res) > 0)
		rc = err_set(err, EX_TEMPFAIL, "%s (line %s) was suppressed (%s) "
		    "while the import ran: nothing was imported; run the import "
		    "again", PQgetvalue(res, 0, 1), PQgetvalue(res, 0, 0),
		    PQgetvalue(res, 0, 2));
	PQclear(res);
	return rc;
}

int
import_merge(struct import_job *j, struct assent_err *err)
{
	if (import_plan(j, err) == -1 || import_write(j, err) == -1 ||
	    import_recheck(j, err) == -1 || import_list_skipped(j, err) == -1)
		return -1;
	return 0;
}

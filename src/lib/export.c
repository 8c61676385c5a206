/* export: a list's subscribers as CSV or JSON, streamed from a cursor */
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <csv.h>
#include <jansson.h>

#include "assent/db.h"
#include "assent/export.h"
#include "assent/lists.h"
#include "assent/xmalloc.h"

#define EXPORT_TIME(col) "to_char(" col ", 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"')"

/* The session's time zone is UTC (db_connect()), so to_char() gives UTC.
 * The newest event comes through the (subscriber_id, id) index. */
#define EXPORT_DECLARE_SQL \
	"DECLARE export_rows NO SCROLL CURSOR FOR" \
	" SELECT p.email, p.email_key, p.name, s.status, s.basis," \
	" " EXPORT_TIME("s.basis_expires_at") "," \
	" " EXPORT_TIME("s.created_at") "," \
	" " EXPORT_TIME("e.at") ", e.action, e.channel, p.attrs::text" \
	" FROM subscriptions s JOIN subscribers p ON p.id = s.subscriber_id" \
	" LEFT JOIN LATERAL (SELECT l.at, l.action, l.channel FROM ledger l" \
	"   WHERE l.subscriber_id = s.subscriber_id" \
	"   AND (l.list_id = s.list_id OR l.list_id IS NULL)" \
	"   ORDER BY l.id DESC LIMIT 1) e ON true" \
	" WHERE s.list_id = $1::bigint AND s.status = ANY ($2::text[])" \
	" AND p.erased_at IS NULL" \
	" ORDER BY s.subscriber_id"

/* The cursor's columns */
enum {
	EC_EMAIL, EC_KEY, EC_NAME, EC_STATUS, EC_BASIS, EC_BASIS_EXPIRES,
	EC_SUBSCRIBED, EC_EVENT_AT, EC_EVENT_ACTION, EC_EVENT_CHANNEL, EC_ATTRS,
	EC_SUPPRESSED = -1              /* not a column: the gate's answer */
};

/* The columns written, in order: CSV header and JSON members. */
static const struct {
	const char *name;
	int col;
} export_cols[] = {
	{ "email", EC_EMAIL }, { "name", EC_NAME }, { "status", EC_STATUS },
	{ "basis", EC_BASIS }, { "basis_expires_at", EC_BASIS_EXPIRES },
	{ "subscribed_at", EC_SUBSCRIBED }, { "last_event_at", EC_EVENT_AT },
	{ "last_event_action", EC_EVENT_ACTION },
	{ "last_event_channel", EC_EVENT_CHANNEL },
	{ "suppressed", EC_SUPPRESSED }, { "attrs", EC_ATTRS },
};
#define EXPORT_NCOLS (sizeof(export_cols) / sizeof(export_cols[0]))

/* What a walk carries from batch to batch. */
struct export_walk {
	PGconn *conn;
	const struct suppress_ctx *ctx;
	FILE *out;
	enum export_format format;
	struct export_counts *counts;
	const char **keys;                      /* EXPORT_FETCH of them */
	struct suppress_verdict *verdicts;      /* EXPORT_FETCH of them */
};

int
export_parse_format(const char *name, enum export_format *format_r,
    struct assent_err *err)
{
	if (strcmp(name, "csv") == 0)
		*format_r = EXPORT_CSV;
	else if (strcmp(name, "json") == 0)
		*format_r = EXPORT_JSON;
	else
		return err_set(err, EX_USAGE, "export: --format is csv or json");
	return 0;
}

/* The statuses as a text[] literal, NULL for a bad one. */
static const char *
export_status_array(const char *status)
{
	static const struct {
		const char *name, *array;
	} statuses[] = {
		{ "confirmed", "{confirmed}" }, { "pending", "{pending}" },
		{ "unsubscribed", "{unsubscribed}" },
		{ "all", "{pending,confirmed,unsubscribed}" },
	};

	for (size_t i = 0; i < sizeof(statuses) / sizeof(statuses[0]); i++)
		if (strcmp(status, statuses[i].name) == 0)
			return statuses[i].array;
	return NULL;
}

int
export_check_status(const char *status, struct assent_err *err)
{
	if (export_status_array(status) == NULL)
		return err_set(err, EX_USAGE, "export: --status is confirmed, "
		    "pending, unsubscribed or all");
	return 0;
}

/* --- writing --------------------------------------------------------------- */

/* A field of row: NULL when it has no value. */
static const char *
export_value(const PGresult *res, int row, int col, const struct suppress_verdict *v)
{
	if (col == EC_SUPPRESSED)
		return v->suppressed ? v->entry.reason : NULL;
	if (PQgetisnull(res, row, col))
		return NULL;
	return PQgetvalue(res, row, col);
}

/* Every field quoted (csv_fwrite() always quotes), none for no value. */
static void
export_csv_field(FILE *out, size_t i, const char *value)
{
	if (i > 0)
		fputc(',', out);
	if (value != NULL)
		csv_fwrite(out, value, strlen(value));
}

static void
export_csv_header(FILE *out)
{
	for (size_t i = 0; i < EXPORT_NCOLS; i++)
		export_csv_field(out, i, export_cols[i].name);
	fputs("\r\n", out);
}

static void
export_csv_row(FILE *out, const PGresult *res, int row,
    const struct suppress_verdict *v)
{
	for (size_t i = 0; i < EXPORT_NCOLS; i++)
		export_csv_field(out, i, export_value(res, row, export_cols[i].col, v));
	fputs("\r\n", out);
}

/* One JSON member; NULL (and a message) when the value is not what
 * JSON can carry. */
static json_t *
export_json_value(int col, const char *value, struct assent_err *err)
{
	json_t *j;

	if (value == NULL)
		return json_null();
	if (col == EC_ATTRS) {
		j = json_loads(value, JSON_REJECT_DUPLICATES, NULL);
		if (j == NULL || !json_is_object(j)) {
			json_decref(j);
			err_set(err, EX_SOFTWARE, "export: stored attributes are not "
			    "a JSON object");
			return NULL;
		}
		return j;
	}
	if ((j = json_string(value)) == NULL)
		err_set(err, EX_DATAERR, "export: a stored value is not UTF-8");
	return j;
}

static int
export_json_row(FILE *out, const PGresult *res, int row,
    const struct suppress_verdict *v, bool first, struct assent_err *err)
{
	json_t *obj = json_object(), *j;
	int col;

	for (size_t i = 0; i < EXPORT_NCOLS; i++) {
		col = export_cols[i].col;
		j = export_json_value(col, export_value(res, row, col, v), err);
		if (j == NULL) {
			json_decref(obj);
			return -1;
		}
		json_object_set_new(obj, export_cols[i].name, j);
	}
	if (!first)
		fputs(",\n", out);
	json_dumpf(obj, out, JSON_COMPACT);
	json_decref(obj);
	return 0;
}

/* --- the walk -------------------------------------------------------------- */

/* Ask the gate about the batch in res, then write its rows. */
static int
export_batch(struct export_walk *w, const PGresult *res, struct assent_err *err)
{
	int n = PQntuples(res);

	for (int i = 0; i < n; i++)
		w->keys[i] = PQgetvalue(res, i, EC_KEY);
	if (suppress_gate(w->conn, w->ctx, w->keys, (size_t)n, w->verdicts,
	    err) == -1)
		return err_prefix(err, "export");
	for (int i = 0; i < n; i++) {
		if (w->format == EXPORT_CSV)
			export_csv_row(w->out, res, i, &w->verdicts[i]);
		else if (export_json_row(w->out, res, i, &w->verdicts[i],
		    w->counts->rows == 0, err) == -1)
			return -1;
		w->counts->rows++;
		if (w->verdicts[i].suppressed)
			w->counts->suppressed++;
	}
	if (ferror(w->out))
		return err_set(err, EX_IOERR, "export: cannot write: %s",
		    strerror(errno));
	return 0;
}

/* FETCH until the cursor is spent. */
static int
export_walk_all(struct export_walk *w, struct assent_err *err)
{
	char sql[64];
	PGresult *res;
	int n, rc;

	snprintf(sql, sizeof(sql), "FETCH %d FROM export_rows", EXPORT_FETCH);
	do {
		if (db_exec(w->conn, &res, err, sql, 0, NULL) == -1)
			return -1;
		n = PQntuples(res);
		rc = n > 0 ? export_batch(w, res, err) : 0;
		PQclear(res);
	} while (rc == 0 && n == EXPORT_FETCH);
	return rc;
}

static void
export_begin_output(FILE *out, enum export_format format)
{
	if (format == EXPORT_CSV)
		export_csv_header(out);
	else
		fputs("[\n", out);
}

static int
export_end_output(FILE *out, enum export_format format, unsigned long rows,
    struct assent_err *err)
{
	if (format == EXPORT_JSON)
		fputs(rows > 0 ? "\n]\n" : "]\n", out);
	if (fflush(out) == EOF || ferror(out))
		return err_set(err, EX_IOERR, "export: cannot write: %s",
		    strerror(errno));
	return 0;
}

/* The audit row, committed before the export starts. */
static int
export_audit(PGconn *conn, const struct export_query *q, const char *list_id,
    struct assent_err *err)
{
	char subject[40];
	json_t *detail = json_pack("{s:s, s:s}", "status", q->status, "format",
	    q->format == EXPORT_JSON ? "json" : "csv");
	int rc;

	snprintf(subject, sizeof(subject), "list %s", list_id);
	rc = audit_append(conn, q->who, "export", subject, detail, err);
	json_decref(detail);
	return rc;
}

int
export_run(PGconn *conn, const struct suppress_ctx *ctx,
    const struct export_query *q, FILE *out, struct export_counts *counts_r,
    struct assent_err *err)
{
	struct export_counts counts = { 0, 0 };
	struct export_walk w = {
		.conn = conn, .ctx = ctx, .out = out, .format = q->format,
		.counts = &counts,
	};
	const char *params[2];
	char list_id[24];
	int rc = -1;

	if ((params[1] = export_status_array(q->status)) == NULL)
		return export_check_status(q->status, err);
	if (lists_lookup(conn, q->list, list_id, NULL, err) == -1 ||
	    export_audit(conn, q, list_id, err) == -1)
		return -1;
	if (db_exec(conn, NULL, err, "BEGIN ISOLATION LEVEL REPEATABLE READ"
	    " READ ONLY", 0, NULL) == -1)
		return -1;
	params[0] = list_id;
	if (db_exec(conn, NULL, err, EXPORT_DECLARE_SQL, 2, params) == -1)
		goto done;
	w.keys = xcalloc(EXPORT_FETCH, sizeof(*w.keys));
	w.verdicts = xcalloc(EXPORT_FETCH, sizeof(*w.verdicts));
	export_begin_output(out, q->format);
	if (export_walk_all(&w, err) == -1 ||
	    export_end_output(out, q->format, counts.rows, err) == -1)
		goto done;
	rc = 0;
done:
	/* Read only: rolling back ends the snapshot and closes the cursor. */
	db_rollback(conn);
	free(w.verdicts);
	free(w.keys);
	if (counts_r != NULL)
		*counts_r = counts;
	return rc;
}

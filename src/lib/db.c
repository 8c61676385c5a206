/* db: PostgreSQL connections and parameterised queries; see db.h */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "assent/buf.h"
#include "assent/db.h"
#include "assent/log.h"
#include "assent/xmalloc.h"

static __thread char db_sqlstate[6];

/* libpq messages end in a newline and may span lines: keep the first. */
static void
db_first_line(const char *msg, char *out, size_t outlen)
{
	size_t n = strcspn(msg, "\n");

	if (n >= outlen)
		n = outlen - 1;
	memcpy(out, msg, n);
	out[n] = '\0';
}

/* Server notices ("relation exists, skipping") are not errors: debug log. */
static void
db_notice(void *arg, const char *message)
{
	(void)arg;
	log_debug("database notice: %.*s", (int)strcspn(message, "\n"), message);
}

int
db_connect(const char *dsn, PGconn **conn_r, struct assent_err *err)
{
	char reason[512];
	PGconn *conn;
	PGresult *res;

	/* Defaults before the DSN (it may override them), and what assent
	 * relies on after it: the text it checked as UTF-8 goes over the
	 * wire as UTF-8, whatever PGCLIENTENCODING says. */
	static const char *const keywords[] = {
		"connect_timeout", "application_name", "dbname", "client_encoding", NULL,
	};
	const char *values[] = { "5", "assent", dsn, "UTF8", NULL };

	*conn_r = NULL;
	conn = PQconnectdbParams(keywords, values, 1);
	if (conn == NULL)
		return err_set(err, EX_UNAVAILABLE, "database: out of memory");
	if (PQstatus(conn) != CONNECTION_OK) {
		db_first_line(PQerrorMessage(conn), reason, sizeof(reason));
		PQfinish(conn);
		return err_set(err, EX_UNAVAILABLE, "database unreachable: %s", reason);
	}
	PQsetNoticeProcessor(conn, db_notice, NULL);
	res = PQexec(conn, "SET TIME ZONE 'UTC'");
	if (PQresultStatus(res) != PGRES_COMMAND_OK) {
		db_first_line(PQerrorMessage(conn), reason, sizeof(reason));
		PQclear(res);
		PQfinish(conn);
		return err_set(err, EX_UNAVAILABLE, "database: %s", reason);
	}
	PQclear(res);
	*conn_r = conn;
	return 0;
}

void
db_close(PGconn *conn)
{
	if (conn != NULL)
		PQfinish(conn);
}

static int
db_code_for_sqlstate(PGconn *conn, const char *state)
{
	if (PQstatus(conn) != CONNECTION_OK)
		return EX_UNAVAILABLE;
	/* 23000 is what our own triggers raise for a change the program
	 * should never have tried (a subscription without its ledger event). */
	if (strcmp(state, "23000") == 0)
		return EX_SOFTWARE;
	if (strncmp(state, "22", 2) == 0 || strncmp(state, "23", 2) == 0)
		return EX_DATAERR;
	if (strncmp(state, "40", 2) == 0 || strncmp(state, "53", 2) == 0 ||
	    strcmp(state, "57014") == 0)
		return EX_TEMPFAIL;
	if (strncmp(state, "08", 2) == 0 || strncmp(state, "57P", 3) == 0)
		return EX_UNAVAILABLE;
	return EX_SOFTWARE;
}

int
db_exec(PGconn *conn, PGresult **res_r, struct assent_err *err,
    const char *sql, int nparams, const char *const *params)
{
	ExecStatusType status;
	const char *state;
	char reason[512];
	PGresult *res;

	if (res_r != NULL)
		*res_r = NULL;
	db_sqlstate[0] = '\0';
	res = PQexecParams(conn, sql, nparams, NULL, params, NULL, NULL, 0);
	status = PQresultStatus(res);
	if (status == PGRES_COMMAND_OK || status == PGRES_TUPLES_OK) {
		if (res_r != NULL)
			*res_r = res;
		else
			PQclear(res);
		return 0;
	}
	state = res != NULL ? PQresultErrorField(res, PG_DIAG_SQLSTATE) : NULL;
	if (state != NULL)
		snprintf(db_sqlstate, sizeof(db_sqlstate), "%s", state);
	db_first_line(res != NULL && PQresultErrorMessage(res)[0] != '\0' ?
	    PQresultErrorMessage(res) : PQerrorMessage(conn),
	    reason, sizeof(reason));
	PQclear(res);
	if (strncmp(reason, "ERROR:  ", 8) == 0)
		memmove(reason, reason + 8, strlen(reason + 8) + 1);
	return err_set(err, db_code_for_sqlstate(conn, db_sqlstate),
	    "database: %s", reason);
}

int
db_begin(PGconn *conn, struct assent_err *err)
{
	return db_exec(conn, NULL, err, "BEGIN", 0, NULL);
}

int
db_commit(PGconn *conn, struct assent_err *err)
{
	return db_exec(conn, NULL, err, "COMMIT", 0, NULL);
}

void
db_rollback(PGconn *conn)
{
	PQclear(PQexec(conn, "ROLLBACK"));
}

const char *
db_last_sqlstate(void)
{
	return db_sqlstate;
}

int
db_ping(PGconn *conn)
{
	PGresult *res;
	int ok;

	if (conn == NULL || PQstatus(conn) != CONNECTION_OK)
		return 0;
	res = PQexec(conn, "SELECT 1");
	ok = PQresultStatus(res) == PGRES_TUPLES_OK;
	PQclear(res);
	return ok;
}

/* Type OIDs from pg_type.h, which libpq-dev does not install. */
#define DB_OID_BOOL 16
#define DB_OID_INT8 20
#define DB_OID_INT2 21
#define DB_OID_INT4 23

static json_t *
db_value_json(const PGresult *res, int row, int col)
{
	const char *v;

	if (PQgetisnull(res, row, col))
		return json_null();
	v = PQgetvalue(res, row, col);
	switch (PQftype(res, col)) {
	case DB_OID_BOOL:
		return json_boolean(v[0] == 't');
	case DB_OID_INT8:
	case DB_OID_INT2:
	case DB_OID_INT4:
		return json_integer(strtoll(v, NULL, 10));
	default:
		return json_string(v);
	}
}

json_t *
db_rows_json(const PGresult *res)
{
	json_t *rows = json_array(), *row;

	for (int r = 0; r < PQntuples(res); r++) {
		row = json_object();
		for (int c = 0; c < PQnfields(res); c++)
			json_object_set_new(row, PQfname(res, c), db_value_json(res, r, c));
		json_array_append_new(rows, row);
	}
	return rows;
}

/* --- showing a DSN ------------------------------------------------------ */

#define DB_MASK "********"

static bool
db_dsn_is_conninfo(const char *s)
{
	return strchr(s, '=') != NULL || strncmp(s, "postgresql://", 13) == 0 ||
	    strncmp(s, "postgres://", 11) == 0;
}

/* Append "key='value'" with libpq's quoting to *out. */
static char *
db_dsn_append(char *out, const char *key, const char *value)
{
	size_t len = out != NULL ? strlen(out) : 0, vlen = strlen(value);
	char *p;

	out = xreallocarray(out, len + strlen(key) + 2 * vlen + 6, 1);
	p = out + len;
	p += sprintf(p, "%s%s='", len > 0 ? " " : "", key);
	for (size_t i = 0; i < vlen; i++) {
		if (value[i] == '\'' || value[i] == '\\')
			*p++ = '\\';
		*p++ = value[i];
	}
	strcpy(p, "'");
	return out;
}

char *
db_dsn_display(const char *dsn, bool *has_secret_r)
{
	PQconninfoOption *opts, *o;
	char *errmsg = NULL, *out = NULL, *inner;
	bool secret = false, inner_secret;

	if (has_secret_r != NULL)
		*has_secret_r = false;
	if (!db_dsn_is_conninfo(dsn))
		return xstrdup(dsn);
	if ((opts = PQconninfoParse(dsn, &errmsg)) == NULL) {
		PQfreemem(errmsg);
		return NULL;
	}
	for (o = opts; o->keyword != NULL; o++) {
		if (o->val == NULL || o->val[0] == '\0')
			continue;
		if (o->dispchar != NULL && o->dispchar[0] == '*') {
			secret = true;
			out = db_dsn_append(out, o->keyword, DB_MASK);
		} else if (strcmp(o->keyword, "dbname") == 0 && db_dsn_is_conninfo(o->val)) {
			inner = db_dsn_display(o->val, &inner_secret);
			secret |= inner_secret;
			out = db_dsn_append(out, o->keyword, inner != NULL ? inner : DB_MASK);
			free(inner);
		} else {
			out = db_dsn_append(out, o->keyword, o->val);
		}
	}
	PQconninfoFree(opts);
	if (has_secret_r != NULL)
		*has_secret_r = secret;
	if (!secret) {          /* nothing to hide: show it as written */
		free(out);
		return xstrdup(dsn);
	}
	return out;
}

/* ---- array literals ------------------------------------------------------ */

void
db_array_open(struct buf *b)
{
	buf_reset(b);
	buf_add(b, "{", 1);
}

static void
db_array_sep(struct buf *b)
{
	if (b->len > 1)
		buf_add(b, ",", 1);
}

void
db_array_int(struct buf *b, long long v)
{
	char num[24];

	db_array_sep(b);
	buf_add(b, num, (size_t)snprintf(num, sizeof(num), "%lld", v));
}

void
db_array_text(struct buf *b, const char *s)
{
	db_array_sep(b);
	if (s == NULL) {
		buf_add(b, "NULL", 4);
		return;
	}
	buf_add(b, "\"", 1);
	for (; *s != '\0'; s++) {
		if (*s == '"' || *s == '\\')
			buf_add(b, "\\", 1);
		buf_add(b, s, 1);
	}
	buf_add(b, "\"", 1);
}

void
db_array_close(struct buf *b)
{
	buf_add(b, "}", 1);
}

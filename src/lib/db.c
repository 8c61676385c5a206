/* db: PostgreSQL connections and parameterised queries; see db.h */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <libpq-events.h>

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

/* Fill err (and this thread's SQLSTATE) from the failed result res, which
 * the caller clears: the server's first line and a code as db.h says. */
static int
db_failed(PGconn *conn, const PGresult *res, struct assent_err *err)
{
	const char *state;
	char reason[512];

	db_sqlstate[0] = '\0';
	state = res != NULL ? PQresultErrorField(res, PG_DIAG_SQLSTATE) : NULL;
	if (state != NULL)
		snprintf(db_sqlstate, sizeof(db_sqlstate), "%s", state);
	db_first_line(res != NULL && PQresultErrorMessage(res)[0] != '\0' ?
	    PQresultErrorMessage(res) : PQerrorMessage(conn),
	    reason, sizeof(reason));
	if (strncmp(reason, "ERROR:  ", 8) == 0)
		memmove(reason, reason + 8, strlen(reason + 8) + 1);
	return err_set(err, db_code_for_sqlstate(conn, db_sqlstate),
	    "database: %s", reason);
}

/* Hand res to the caller (or clear it) when it succeeded, else fail. */
static int
db_result(PGconn *conn, PGresult *res, PGresult **res_r, struct assent_err *err)
{
	ExecStatusType status = PQresultStatus(res);

	if (status == PGRES_COMMAND_OK || status == PGRES_TUPLES_OK) {
		if (res_r != NULL)
			*res_r = res;
		else
			PQclear(res);
		return 0;
	}
	db_failed(conn, res, err);
	PQclear(res);
	return -1;
}

int
db_exec(PGconn *conn, PGresult **res_r, struct assent_err *err,
    const char *sql, int nparams, const char *const *params)
{
	if (res_r != NULL)
		*res_r = NULL;
	db_sqlstate[0] = '\0';
	return db_result(conn, PQexecParams(conn, sql, nparams, NULL, params,
	    NULL, NULL, 0), res_r, err);
}

/* ---- named prepared statements --------------------------------------------- */

/*
 * What a server session has prepared, as libpq instance data of the
 * PGconn (libpq-events.h): it lives and dies with the connection, is
 * emptied when PQreset() opens a new session, and belongs to whichever
 * thread holds the connection, so no lock and no registry keyed by
 * pointers that may be reused. What it cannot see (DEALLOCATE, a
 * session lost some other way) the server tells with SQLSTATE 26000.
 */
struct db_session {
	char **names;
	size_t n, cap;
};

static void
db_session_forget(struct db_session *s)
{
	for (size_t i = 0; i < s->n; i++)
		free(s->names[i]);
	s->n = 0;
}

static int
db_session_event(PGEventId id, void *info, void *pass)
{
	struct db_session *s;

	(void)pass;
	if (id == PGEVT_CONNRESET) {
		s = PQinstanceData(((PGEventConnReset *)info)->conn, db_session_event);
		if (s != NULL)
			db_session_forget(s);
	} else if (id == PGEVT_CONNDESTROY) {
		s = PQinstanceData(((PGEventConnDestroy *)info)->conn, db_session_event);
		if (s != NULL) {
			db_session_forget(s);
			free(s->names);
			free(s);
		}
	}
	return 1;
}

/* conn's session record, made on first use; NULL when libpq is out of memory. */
static struct db_session *
db_session_of(PGconn *conn)
{
	struct db_session *s = PQinstanceData(conn, db_session_event);

	if (s != NULL)
		return s;
	if (!PQregisterEventProc(conn, db_session_event, "assent db", NULL))
		return NULL;
	s = xcalloc(1, sizeof(*s));
	if (!PQsetInstanceData(conn, db_session_event, s)) {
		free(s);
		return NULL;
	}
	return s;
}

static bool
db_session_has(const struct db_session *s, const char *name)
{
	for (size_t i = 0; i < s->n; i++)
		if (strcmp(s->names[i], name) == 0)
			return true;
	return false;
}

static void
db_session_add(struct db_session *s, const char *name)
{
	if (s->n == s->cap) {
		s->cap = s->cap == 0 ? 4 : 2 * s->cap;
		s->names = xreallocarray(s->names, s->cap, sizeof(*s->names));
	}
	s->names[s->n++] = xstrdup(name);
}

static bool
db_result_is(const PGresult *res, const char *state)
{
	const char *s = PQresultErrorField(res, PG_DIAG_SQLSTATE);

	return s != NULL && strcmp(s, state) == 0;
}

/* Whether the session has st already, asked of the server: inside a
 * transaction, where a PREPARE that fails (42P05, prepared by someone
 * else under our name) would abort the caller's work. */
static int
db_prepared_on_server(PGconn *conn, const struct db_statement *st, bool *have_r,
    struct assent_err *err)
{
	const char *params[] = { st->name };
	PGresult *res;

	if (db_exec(conn, &res, err, "SELECT 1 FROM pg_prepared_statements"
	    " WHERE name = $1", 1, params) == -1)
		return -1;
	*have_r = PQntuples(res) > 0;
	PQclear(res);
	return 0;
}

static int
db_prepare(PGconn *conn, struct db_session *s, const struct db_statement *st,
    struct assent_err *err)
{
	PGresult *res;
	bool have = false;

	if (db_session_has(s, st->name))
		return 0;
	if (PQtransactionStatus(conn) != PQTRANS_IDLE &&
	    db_prepared_on_server(conn, st, &have, err) == -1)
		return -1;
	if (!have) {
		res = PQprepare(conn, st->name, st->sql, 0, NULL);
		/* outside a transaction, "already there" costs nothing */
		if (PQresultStatus(res) != PGRES_COMMAND_OK &&
		    !db_result_is(res, "42P05")) {
			db_failed(conn, res, err);
			PQclear(res);
			return -1;
		}
		PQclear(res);
	}
	db_session_add(s, st->name);
	return 0;
}

int
db_exec_prepared(PGconn *conn, PGresult **res_r, struct assent_err *err,
    const struct db_statement *st, int nparams, const char *const *params,
    const int *lengths, const int *formats)
{
	struct db_session *s;
	PGresult *res;
	bool idle;

	if (res_r != NULL)
		*res_r = NULL;
	db_sqlstate[0] = '\0';
	if ((s = db_session_of(conn)) == NULL)
		return err_set(err, EX_SOFTWARE, "database: out of memory");
	for (int attempt = 0; ; attempt++) {
		idle = PQtransactionStatus(conn) == PQTRANS_IDLE;
		if (db_prepare(conn, s, st, err) == -1)
			return -1;
		res = PQexecPrepared(conn, st->name, nparams, params, lengths,
		    formats, 0);
		if (!db_result_is(res, "26000"))
			return db_result(conn, res, res_r, err);
		/* The session lost what it had (DEALLOCATE ALL, or a new
		 * session). Outside a transaction nothing ran: again, once. */
		db_session_forget(s);
		if (!idle || attempt > 0) {
			db_failed(conn, res, err);
			PQclear(res);
			err->code = EX_TEMPFAIL;
			return -1;
		}
		PQclear(res);
	}
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

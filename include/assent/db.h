/*
 * db: PostgreSQL connections and queries, parameters only.
 *
 * Every query goes through db_exec() with its values passed as
 * parameters; no SQL is ever built from data. A connection belongs to
 * one thread.
 *
 * Memory: db_connect() returns a PGconn the caller closes with
 * db_close(). db_exec() and db_exec_prepared() hand back a PGresult the
 * caller frees with PQclear() (when res_r is NULL the result is cleared
 * for you). struct db_statement is borrowed for the call; what
 * db_exec_prepared() remembers of a connection is freed with it.
 */
#ifndef ASSENT_DB_H
#define ASSENT_DB_H

#include <stdbool.h>
#include <jansson.h>
#include <libpq-fe.h>
#include "assent/err.h"

/* Connect to dsn (a libpq connection string; "" uses libpq's PG*
 * environment variables). Sets the session's time zone to UTC. On
 * failure returns -1 with err->code EX_UNAVAILABLE and libpq's reason
 * on one line. */
int db_connect(const char *dsn, PGconn **conn_r, struct assent_err *err);

void db_close(PGconn *conn);

/* Run sql with nparams text parameters (NULL entries are SQL NULL).
 * Succeeds for PGRES_COMMAND_OK and PGRES_TUPLES_OK. On failure
 * returns -1 with the server's message and a code: EX_DATAERR for
 * constraint and data errors (SQLSTATE classes 22 and 23),
 * EX_TEMPFAIL for serialization failures and deadlocks (40xxx),
 * EX_UNAVAILABLE for a lost connection, EX_SOFTWARE otherwise. */
int db_exec(PGconn *conn, PGresult **res_r, struct assent_err *err,
    const char *sql, int nparams, const char *const *params);

/* A statement run by name (style rule 8: SQL prepared once per
 * connection). name must be unique among assent's statements. */
struct db_statement {
	const char *name;
	const char *sql;
};

/* Run st as db_exec() runs its SQL (same results, same error codes),
 * preparing it first on a connection (server session) that does not
 * have it: the first use on each connection, again after PQreset(), and
 * after the server lost it (DEALLOCATE ALL; SQLSTATE 26000), which is
 * retried once when outside a transaction (nothing ran) and inside one
 * fails with EX_TEMPFAIL (the transaction is aborted; the caller's
 * retry prepares it again). Inside a transaction a first use asks the
 * server whether st is there before preparing, as a failed PREPARE would
 * abort the transaction. lengths and formats are PQexecPrepared()'s
 * (NULL: text parameters). What each connection has is kept with the
 * PGconn (libpq instance data), so threads with their own connections
 * need no locking. */
int db_exec_prepared(PGconn *conn, PGresult **res_r, struct assent_err *err,
    const struct db_statement *st, int nparams, const char *const *params,
    const int *lengths, const int *formats);

/* Transactions: "BEGIN", "COMMIT", "ROLLBACK". db_rollback() never
 * fails visibly (it is the cleanup path). */
int db_begin(PGconn *conn, struct assent_err *err);
int db_commit(PGconn *conn, struct assent_err *err);
void db_rollback(PGconn *conn);

/* The SQLSTATE of the last failed db_exec() on this thread, or "" */
const char *db_last_sqlstate(void);

/* The DSN as it may be shown, in a fresh string: as written when it
 * holds no secret; else rebuilt as keyword='value' pairs with the
 * options libpq marks secret (password, sslpassword) masked, also inside
 * a dbname that is itself a connection string. A value without "=" that is not a URI
 * is a plain database name, as db_connect() takes it. *has_secret_r
 * (may be NULL) tells whether anything was masked. NULL when libpq
 * cannot parse the DSN. */
char *db_dsn_display(const char *dsn, bool *has_secret_r);

/* The rows of res as a new JSON array of objects keyed by column name:
 * SQL NULL becomes null, boolean columns true/false, integer columns
 * numbers, everything else strings. The caller json_decref()s it. */
json_t *db_rows_json(const PGresult *res);

/* 1 when the server answers a trivial query right now, else 0 (a
 * predicate, not the 0/-1 idiom). */
int db_ping(PGconn *conn);

/* Array literals for text parameters ("{1,2}", "{\"a\",NULL}"), so that
 * a batch goes as one parameter: db_array_open() empties b and opens
 * it, each call adds one element (db_array_text(b, NULL) adds SQL
 * NULL; quotes and backslashes are escaped), db_array_close() closes
 * it. Use as $1::bigint[] or $1::text[]. */
struct buf;
void db_array_open(struct buf *b);
void db_array_int(struct buf *b, long long v);
void db_array_text(struct buf *b, const char *s);
void db_array_close(struct buf *b);

#endif

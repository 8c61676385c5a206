/*
 * check_db: db_exec_prepared() against the real server: it answers as
 * db_exec() does (results, SQLSTATEs, codes), prepares once per session,
 * and prepares again whenever the session lost the statement, inside a
 * transaction or not, on one connection or many threads' own.
 */
#include <check.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "assent/db.h"
#include "testhelp.h"

static PGconn *conn;
static char *dsn, *dbname;

static void
setup(void)
{
	conn = testhelp_db_create_empty(&dsn, &dbname);
}

static void
teardown(void)
{
	testhelp_db_drop(conn, dbname);
	free(dbname);
	free(dsn);
	conn = NULL;
	dbname = dsn = NULL;
}

/* How many statements the server session of c has prepared by name. */
static long
prepared_count(PGconn *c, const char *name)
{
	char sql[200];

	snprintf(sql, sizeof(sql), "SELECT count(*) FROM pg_prepared_statements"
	    " WHERE name = '%s'", name);
	return testhelp_query_long(c, sql);
}

static const struct db_statement add_stmt = {
	"check_db_add", "SELECT $1::int + $2::int",
};

/* Run add_stmt with a and b; its sum, or -1 with err filled. */
static long
add(PGconn *c, const char *a, const char *b, struct assent_err *err)
{
	const char *params[] = { a, b };
	PGresult *res;
	long sum;

	if (db_exec_prepared(c, &res, err, &add_stmt, 2, params, NULL, NULL) == -1)
		return -1;
	sum = strtol(PQgetvalue(res, 0, 0), NULL, 10);
	PQclear(res);
	return sum;
}

START_TEST(test_prepares_once_per_session)
{
	struct assent_err err;

	ck_assert_int_eq(prepared_count(conn, "check_db_add"), 0);
	for (int i = 0; i < 3; i++)
		ck_assert_int_eq(add(conn, "2", "3", &err), 5);
	ck_assert_int_eq(prepared_count(conn, "check_db_add"), 1);
	ck_assert_int_eq(db_exec_prepared(conn, NULL, &err, &add_stmt, 2,
	    (const char *[]){ "1", "1" }, NULL, NULL), 0);
}
END_TEST

/* The same failures give the same code, SQLSTATE and message as db_exec(). */
static const struct {
	const char *sql;
	const char *param;
	const char *sqlstate;
	int code;
} failures[] = {
	{ "SELECT 1 / $1::int", "0", "22012", EX_DATAERR },
	{ "SELECT $1::int", "x", "22P02", EX_DATAERR },
	{ "SELECT count(*) FROM no_such_table WHERE $1::int > 0", "1",
	    "42P01", EX_SOFTWARE },
	{ "SELEC $1", "1", "42601", EX_SOFTWARE },
};

/* Raises SQLSTATE $1 from a function, for the codes only a server-side
 * error can give. */
static const struct {
	const char *sqlstate;
	int code;
} raised[] = {
	{ "23000", EX_SOFTWARE },       /* our triggers: "should never try" */
	{ "23505", EX_DATAERR },
	{ "23514", EX_DATAERR },
	{ "40001", EX_TEMPFAIL },
	{ "40P01", EX_TEMPFAIL },
	{ "57014", EX_TEMPFAIL },
	{ "P0001", EX_SOFTWARE },
};

START_TEST(test_failure_as_db_exec)
{
	const char *params[] = { failures[_i].param };
	const struct db_statement st = { "check_db_failure", failures[_i].sql };
	struct assent_err e1, e2;

	ck_assert_int_eq(db_exec(conn, NULL, &e1, st.sql, 1, params), -1);
	ck_assert_str_eq(db_last_sqlstate(), failures[_i].sqlstate);
	ck_assert_int_eq(db_exec_prepared(conn, NULL, &e2, &st, 1, params,
	    NULL, NULL), -1);
	ck_assert_str_eq(db_last_sqlstate(), failures[_i].sqlstate);
	ck_assert_int_eq(e1.code, failures[_i].code);
	ck_assert_int_eq(e2.code, failures[_i].code);
	ck_assert_str_eq(e1.msg, e2.msg);
	ck_assert_int_eq(db_ping(conn), 1);
}
END_TEST

START_TEST(test_raised_as_db_exec)
{
	static const struct db_statement st = { "check_db_raise",
	    "SELECT check_db_raise($1)" };
	const char *params[] = { raised[_i].sqlstate };
	struct assent_err e1, e2;

	testhelp_sql_exec(conn, "CREATE FUNCTION check_db_raise(s text)"
	    " RETURNS void LANGUAGE plpgsql AS $$ BEGIN RAISE EXCEPTION 'raised %', s"
	    " USING ERRCODE = s; END $$");
	ck_assert_int_eq(db_exec(conn, NULL, &e1, st.sql, 1, params), -1);
	ck_assert_int_eq(db_exec_prepared(conn, NULL, &e2, &st, 1, params,
	    NULL, NULL), -1);
	ck_assert_str_eq(db_last_sqlstate(), raised[_i].sqlstate);
	ck_assert_int_eq(e1.code, raised[_i].code);
	ck_assert_int_eq(e2.code, raised[_i].code);
	ck_assert_str_eq(e1.msg, e2.msg);
}
END_TEST

START_TEST(test_success_clears_sqlstate)
{
	struct assent_err err;

	ck_assert_int_eq(db_exec(conn, NULL, &err, "SELECT 1 / 0", 0, NULL), -1);
	ck_assert_str_eq(db_last_sqlstate(), "22012");
	ck_assert_int_eq(add(conn, "1", "2", &err), 3);
	ck_assert_str_eq(db_last_sqlstate(), "");
}
END_TEST

/* DEALLOCATE ALL behind its back: outside a transaction it prepares
 * again and runs; inside one it fails (EX_TEMPFAIL: the transaction is
 * lost, the next try works). */
START_TEST(test_deallocated_outside_transaction)
{
	struct assent_err err;

	ck_assert_int_eq(add(conn, "1", "1", &err), 2);
	testhelp_sql_exec(conn, "DEALLOCATE ALL");
	ck_assert_int_eq(prepared_count(conn, "check_db_add"), 0);
	ck_assert_msg(add(conn, "1", "2", &err) == 3, "%s", err.msg);
	ck_assert_int_eq(prepared_count(conn, "check_db_add"), 1);
}
END_TEST

START_TEST(test_deallocated_inside_transaction)
{
	struct assent_err err;

	ck_assert_int_eq(add(conn, "1", "1", &err), 2);
	testhelp_sql_exec(conn, "DEALLOCATE ALL");
	ck_assert_int_eq(db_begin(conn, &err), 0);
	ck_assert_int_eq(add(conn, "1", "2", &err), -1);
	ck_assert_int_eq(err.code, EX_TEMPFAIL);
	ck_assert_str_eq(db_last_sqlstate(), "26000");
	db_rollback(conn);
	ck_assert_int_eq(db_begin(conn, &err), 0);
	ck_assert_msg(add(conn, "1", "3", &err) == 4, "%s", err.msg);
	ck_assert_int_eq(db_commit(conn, &err), 0);
}
END_TEST

/* First use inside a transaction, the session holding a statement of
 * that name already (prepared by other means): the transaction goes on. */
START_TEST(test_first_use_in_transaction)
{
	struct assent_err err;

	testhelp_sql_exec(conn, "CREATE TABLE t (v int)");
	ck_assert_int_eq(db_begin(conn, &err), 0);
	testhelp_sql_exec(conn, "INSERT INTO t VALUES (1)");
	ck_assert_msg(add(conn, "2", "2", &err) == 4, "%s", err.msg);
	ck_assert_int_eq(db_commit(conn, &err), 0);

	/* a new session (nothing recorded) that has it by other means */
	PQreset(conn);
	ck_assert_int_eq(PQstatus(conn), CONNECTION_OK);
	testhelp_sql_exec(conn, "PREPARE check_db_add (int, int) AS SELECT $1 + $2");
	ck_assert_int_eq(db_begin(conn, &err), 0);
	testhelp_sql_exec(conn, "INSERT INTO t VALUES (2)");
	ck_assert_msg(add(conn, "2", "5", &err) == 7, "%s", err.msg);
	ck_assert_int_eq(db_commit(conn, &err), 0);
	ck_assert_int_eq(testhelp_query_long(conn, "SELECT sum(v) FROM t"), 3);
}
END_TEST

/* Outside a transaction, a statement of that name prepared by other
 * means is taken as there (42P05 is no failure). */
START_TEST(test_first_use_prepared_elsewhere)
{
	struct assent_err err;

	testhelp_sql_exec(conn, "PREPARE check_db_add (int, int) AS SELECT $1 + $2");
	ck_assert_msg(add(conn, "4", "5", &err) == 9, "%s", err.msg);
}
END_TEST

/* A new session behind the same PGconn (PQreset) has nothing prepared. */
START_TEST(test_reset_connection)
{
	struct assent_err err;

	ck_assert_int_eq(add(conn, "1", "1", &err), 2);
	PQreset(conn);
	ck_assert_int_eq(PQstatus(conn), CONNECTION_OK);
	ck_assert_int_eq(prepared_count(conn, "check_db_add"), 0);
	ck_assert_int_eq(db_begin(conn, &err), 0);
	ck_assert_msg(add(conn, "1", "4", &err) == 5, "%s", err.msg);
	ck_assert_int_eq(db_commit(conn, &err), 0);
}
END_TEST

/* Binary parameters, as the suppression gate sends them. */
START_TEST(test_binary_parameters)
{
	static const struct db_statement st = { "check_db_bin",
	    "SELECT $1::bytea = '\\x00ff41'::bytea" };
	const char value[] = { 0, (char)0xff, 'A' };
	const char *params[] = { value };
	const int lengths[] = { 3 }, formats[] = { 1 };
	struct assent_err err;
	PGresult *res;

	ck_assert_int_eq(db_exec_prepared(conn, &res, &err, &st, 1, params,
	    lengths, formats), 0);
	ck_assert_str_eq(PQgetvalue(res, 0, 0), "t");
	PQclear(res);
}
END_TEST

/* A lost connection is EX_UNAVAILABLE, as with db_exec(). */
START_TEST(test_connection_lost)
{
	struct assent_err err;
	PGconn *other;
	char sql[100];

	ck_assert_int_eq(add(conn, "1", "1", &err), 2);
	ck_assert_int_eq(db_connect(dsn, &other, &err), 0);
	snprintf(sql, sizeof(sql), "SELECT pg_terminate_backend(%d)",
	    PQbackendPID(conn));
	testhelp_assert_text(other, sql, "t");
	db_close(other);
	testhelp_sleep_ms(100);
	ck_assert_int_eq(add(conn, "1", "1", &err), -1);
	ck_assert_int_eq(err.code, EX_UNAVAILABLE);
	PQreset(conn);
	ck_assert_msg(add(conn, "1", "2", &err) == 3, "%s", err.msg);
}
END_TEST

/* Threads with a connection each, all running and losing the same
 * statement at once. */
#define THREADS 4
#define ROUNDS 50

static void *
thread_run(void *arg)
{
	struct assent_err err;
	PGconn *c;
	long bad = 0;
	char a[16];

	(void)arg;
	if (db_connect(dsn, &c, &err) == -1)
		return (void *)1;
	for (int i = 0; i < ROUNDS; i++) {
		snprintf(a, sizeof(a), "%d", i);
		if (add(c, a, "1", &err) != i + 1)
			bad++;
		if (i % 7 == 3)
			PQclear(PQexec(c, "DEALLOCATE ALL"));
		if (i % 11 == 5)
			PQreset(c);
	}
	db_close(c);
	return (void *)bad;
}

START_TEST(test_threads)
{
	pthread_t t[THREADS];
	void *bad;

	for (int i = 0; i < THREADS; i++)
		ck_assert_int_eq(pthread_create(&t[i], NULL, thread_run, NULL), 0);
	for (int i = 0; i < THREADS; i++) {
		ck_assert_int_eq(pthread_join(t[i], &bad), 0);
		ck_assert_ptr_null(bad);
	}
}
END_TEST

int
main(void)
{
	Suite *s = suite_create("db");
	TCase *tc = tcase_create("prepared");

	testhelp_require_servers();
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_set_timeout(tc, 30);
	tcase_add_test(tc, test_prepares_once_per_session);
	tcase_add_loop_test(tc, test_failure_as_db_exec, 0,
	    sizeof(failures) / sizeof(failures[0]));
	tcase_add_loop_test(tc, test_raised_as_db_exec, 0,
	    sizeof(raised) / sizeof(raised[0]));
	tcase_add_test(tc, test_success_clears_sqlstate);
	tcase_add_test(tc, test_deallocated_outside_transaction);
	tcase_add_test(tc, test_deallocated_inside_transaction);
	tcase_add_test(tc, test_first_use_in_transaction);
	tcase_add_test(tc, test_first_use_prepared_elsewhere);
	tcase_add_test(tc, test_reset_connection);
	tcase_add_test(tc, test_binary_parameters);
	tcase_add_test(tc, test_connection_lost);
	tcase_add_test(tc, test_threads);
	suite_add_tcase(s, tc);
	return testhelp_run_suite(s);
}

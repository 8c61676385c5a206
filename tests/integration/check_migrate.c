/* Integration: schema migrations and the guards the schema carries */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "assent/db.h"
#include "assent/migrate.h"
#include "testhelp.h"

static PGconn *conn;
static char *dbname, *dsn;

static void
setup_empty(void)
{
	conn = testhelp_db_create_empty(&dsn, &dbname);
}

static void
teardown(void)
{
	testhelp_db_drop(conn, dbname);
	free(dbname);
	free(dsn);
}

START_TEST(test_fresh_database_is_version_zero)
{
	struct assent_err err;
	int v = -1;

	ck_assert_int_eq(migrate_current_version(conn, &v, &err), 0);
	ck_assert_int_eq(v, 0);
	ck_assert_int_eq(migrate_require_current(conn, &err), -1);
	ck_assert_int_eq(err.code, EX_CONFIG);
	ck_assert_ptr_nonnull(strstr(err.msg, "assent db migrate"));
}
END_TEST

START_TEST(test_apply_then_nothing_to_do)
{
	struct assent_err err;
	int applied = -1, v = 0;

	ck_assert_int_eq(migrate_apply(conn, &applied, NULL, NULL, &err), 0);
	ck_assert_int_eq(applied, MIGRATE_SCHEMA_VERSION);
	ck_assert_int_eq(migrate_current_version(conn, &v, &err), 0);
	ck_assert_int_eq(v, MIGRATE_SCHEMA_VERSION);
	ck_assert_int_eq(migrate_require_current(conn, &err), 0);
	ck_assert_int_eq(migrate_apply(conn, &applied, NULL, NULL, &err), 0);
	ck_assert_int_eq(applied, 0);
	ck_assert_int_eq(testhelp_query_long(conn,
	    "SELECT count(*) FROM schema_migrations"), MIGRATE_SCHEMA_VERSION);
	ck_assert_int_eq(testhelp_query_long(conn,
	    "SELECT count(*) FROM schema_migrations WHERE length(sha256) = 64"),
	    MIGRATE_SCHEMA_VERSION);
}
END_TEST

START_TEST(test_newer_schema_is_refused)
{
	struct assent_err err;
	int applied;

	ck_assert_int_eq(migrate_apply(conn, NULL, NULL, NULL, &err), 0);
	ck_assert_int_eq(db_exec(conn, NULL, &err, "INSERT INTO schema_migrations"
	    " (version, name, sha256) VALUES (999, '0999_future.sql', 'x')", 0, NULL), 0);
	ck_assert_int_eq(migrate_apply(conn, &applied, NULL, NULL, &err), -1);
	ck_assert_int_eq(err.code, EX_CONFIG);
	ck_assert_ptr_nonnull(strstr(err.msg, "newer than this program"));
	ck_assert_int_eq(migrate_require_current(conn, &err), -1);
	ck_assert_ptr_nonnull(strstr(err.msg, "upgrade assent"));
}
END_TEST

START_TEST(test_edited_migration_is_refused)
{
	struct assent_err err;

	ck_assert_int_eq(migrate_apply(conn, NULL, NULL, NULL, &err), 0);
	ck_assert_int_eq(db_exec(conn, NULL, &err, "UPDATE schema_migrations"
	    " SET sha256 = repeat('0', 64) WHERE version = 1", 0, NULL), 0);
	ck_assert_int_eq(migrate_apply(conn, NULL, NULL, NULL, &err), -1);
	ck_assert_ptr_nonnull(strstr(err.msg, "changed after it was applied"));
}
END_TEST

/* A migration that fails leaves nothing behind: not its tables, not its record. */
START_TEST(test_failed_migration_is_rolled_back)
{
	char dir[] = "/tmp/assent-sql-XXXXXX", path[256];
	struct assent_err err;
	FILE *f;

	ck_assert_ptr_nonnull(mkdtemp(dir));
	snprintf(path, sizeof(path), "%s/0001_broken.sql", dir);
	ck_assert_ptr_nonnull(f = fopen(path, "w"));
	fputs("CREATE TABLE half_done (x int);\nCREATE TABLE oops (;\n", f);
	fclose(f);
	for (int v = 2; v <= MIGRATE_SCHEMA_VERSION; v++) {
		char later[256];

		snprintf(later, sizeof(later), "%s/%04d_later.sql", dir, v);
		ck_assert_ptr_nonnull(f = fopen(later, "w"));
		fputs("SELECT 1;\n", f);
		fclose(f);
	}
	setenv("ASSENT_SQLDIR", dir, 1);
	ck_assert_int_eq(migrate_apply(conn, NULL, NULL, NULL, &err), -1);
	ck_assert_ptr_nonnull(strstr(err.msg, "0001_broken.sql"));
	ck_assert_int_eq(testhelp_query_long(conn,
	    "SELECT count(*) FROM schema_migrations"), 0);
	ck_assert_int_eq(testhelp_query_long(conn,
	    "SELECT count(*) FROM pg_tables WHERE tablename = 'half_done'"), 0);
	for (int v = 1; v <= MIGRATE_SCHEMA_VERSION; v++) {
		snprintf(path, sizeof(path), "%s/%04d_%s.sql", dir, v, v == 1 ? "broken" : "later");
		unlink(path);
	}
	rmdir(dir);
}
END_TEST

START_TEST(test_missing_migration_file)
{
	char dir[] = "/tmp/assent-sql-XXXXXX";
	struct assent_err err;

	ck_assert_ptr_nonnull(mkdtemp(dir));
	setenv("ASSENT_SQLDIR", dir, 1);
	ck_assert_int_eq(migrate_apply(conn, NULL, NULL, NULL, &err), -1);
	ck_assert_ptr_nonnull(strstr(err.msg, "no file for version 0001"));
	rmdir(dir);
}
END_TEST

/* Two migrators at once: the advisory lock makes one wait; both succeed. */
START_TEST(test_concurrent_migrate)
{
	struct assent_err err;
	int status, applied = -1;
	pid_t pid = fork();

	ck_assert_int_ne(pid, -1);
	if (pid == 0) {
		PGconn *c2;

		if (db_connect(dsn, &c2, &err) == -1 ||
		    migrate_apply(c2, NULL, NULL, NULL, &err) == -1)
			_exit(1);
		_exit(0);
	}
	ck_assert_int_eq(migrate_apply(conn, &applied, NULL, NULL, &err), 0);
	waitpid(pid, &status, 0);
	ck_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0);
	ck_assert_int_eq(testhelp_query_long(conn,
	    "SELECT count(*) FROM schema_migrations"), MIGRATE_SCHEMA_VERSION);
}
END_TEST

/* --- the schema's own guards ------------------------------------------- */

static void
setup_migrated(void)
{
	conn = testhelp_db_create(&dsn, &dbname);
}

static void
seed_one_subscription(void)
{
	struct assent_err err;

	ck_assert_int_eq(db_exec(conn, NULL, &err,
	    "BEGIN;", 0, NULL), 0);
	ck_assert_int_eq(db_exec(conn, NULL, &err,
	    "INSERT INTO lists (name) VALUES ('news')", 0, NULL), 0);
	ck_assert_int_eq(db_exec(conn, NULL, &err,
	    "INSERT INTO subscribers (email, email_key) VALUES ('a@x.org', 'a@x.org')",
	    0, NULL), 0);
	ck_assert_int_eq(db_exec(conn, NULL, &err,
	    "INSERT INTO ledger (subscriber_id, list_id, action, channel, status_after,"
	    " operator, source) VALUES (1, 1, 'subscribe', 'cli', 'confirmed', 't', 's')",
	    0, NULL), 0);
	ck_assert_int_eq(db_exec(conn, NULL, &err, "INSERT INTO subscriptions"
	    " (subscriber_id, list_id, status) VALUES (1, 1, 'confirmed')", 0, NULL), 0);
	ck_assert_int_eq(db_exec(conn, NULL, &err, "COMMIT", 0, NULL), 0);
}

static const char *const ledger_edits[] = {
	"UPDATE ledger SET source = 'forged'",
	"DELETE FROM ledger",
	"TRUNCATE ledger",
	"UPDATE ledger SET at = at - interval '1 year'",
};

START_TEST(test_ledger_refuses_edits)
{
	struct assent_err err;

	seed_one_subscription();
	ck_assert_int_eq(db_exec(conn, NULL, &err, ledger_edits[_i], 0, NULL), -1);
	ck_assert_ptr_nonnull(strstr(err.msg, "append-only"));
	ck_assert_int_eq(testhelp_query_long(conn,
	    "SELECT count(*) FROM ledger WHERE source = 's'"), 1);
}
END_TEST

static const char *const unledgered_changes[] = {
	"UPDATE subscriptions SET status = 'unsubscribed'",
	"WITH l AS (INSERT INTO lists (name) VALUES ('l2') RETURNING id)"
	" INSERT INTO subscriptions (subscriber_id, list_id, status)"
	" SELECT 1, id, 'confirmed' FROM l",
};

START_TEST(test_subscription_change_needs_ledger_event)
{
	struct assent_err err;

	seed_one_subscription();
	ck_assert_int_eq(db_exec(conn, NULL, &err, unledgered_changes[_i], 0, NULL), -1);
	ck_assert_ptr_nonnull(strstr(err.msg, "without a consent ledger event"));
	ck_assert_int_eq(testhelp_query_long(conn, "SELECT count(*) FROM subscriptions"
	    " WHERE status = 'confirmed'"), 1);
}
END_TEST

START_TEST(test_subscriptions_are_never_deleted)
{
	struct assent_err err;

	seed_one_subscription();
	ck_assert_int_eq(db_exec(conn, NULL, &err, "DELETE FROM subscriptions",
	    0, NULL), -1);
	ck_assert_ptr_nonnull(strstr(err.msg, "never deleted"));
}
END_TEST

int
main(void)
{
	Suite *s = suite_create("migrate");
	TCase *tc = tcase_create("migrations");
	TCase *guards = tcase_create("schema guards");

	testhelp_require_servers();
	tcase_add_checked_fixture(tc, setup_empty, teardown);
	tcase_set_timeout(tc, 30);
	tcase_add_test(tc, test_fresh_database_is_version_zero);
	tcase_add_test(tc, test_apply_then_nothing_to_do);
	tcase_add_test(tc, test_newer_schema_is_refused);
	tcase_add_test(tc, test_edited_migration_is_refused);
	tcase_add_test(tc, test_failed_migration_is_rolled_back);
	tcase_add_test(tc, test_missing_migration_file);
	tcase_add_test(tc, test_concurrent_migrate);
	suite_add_tcase(s, tc);
	tcase_add_checked_fixture(guards, setup_migrated, teardown);
	tcase_set_timeout(guards, 30);
	tcase_add_loop_test(guards, test_ledger_refuses_edits, 0,
	    sizeof(ledger_edits) / sizeof(ledger_edits[0]));
	tcase_add_loop_test(guards, test_subscription_change_needs_ledger_event, 0, 2);
	tcase_add_test(guards, test_subscriptions_are_never_deleted);
	suite_add_tcase(s, guards);
	return testhelp_run_suite(s);
}

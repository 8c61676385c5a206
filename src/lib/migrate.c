/* migrate: versioned schema migrations; see include/assent/migrate.h */
#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>

#include "assent/db.h"
#include "assent/migrate.h"
#include "assent/xmalloc.h"

/* Any constant: serialises concurrent "assent db migrate" runs. */
#define MIGRATE_LOCK_KEY "7237010410"

struct migration {
	int   version;
	char *name;     /* file name */
	char *path;
};

static const char migrate_sql_bootstrap[] =
    "CREATE TABLE IF NOT EXISTS schema_migrations ("
    " version integer PRIMARY KEY,"
    " name text NOT NULL,"
    " sha256 text NOT NULL,"
    " applied_at timestamptz NOT NULL DEFAULT now())";

const char *
migrate_sql_dir(void)
{
	const char *dir = getenv("ASSENT_SQLDIR");

	return dir != NULL && dir[0] != '\0' ? dir : ASSENT_SQLDIR;
}

/* "0001_foundation.sql" -> 1; -1 for any other name. */
static int
migrate_file_version(const char *name)
{
	size_t len = strlen(name);

	if (len < 10 || strcmp(name + len - 4, ".sql") != 0 || name[4] != '_')
		return -1;
	for (int i = 0; i < 4; i++)
		if (!isdigit((unsigned char)name[i]))
			return -1;
	return atoi(name) > 0 ? atoi(name) : -1;
}

/* The files for versions 1..MIGRATE_SCHEMA_VERSION, indexed by version. */
static int
migrate_scan(struct migration *list, struct assent_err *err)
{
	const char *dir = migrate_sql_dir();
	struct dirent *de;
	DIR *d;
	int v;

	if ((d = opendir(dir)) == NULL)
		return err_set(err, EX_SOFTWARE, "migrations: cannot read %s: %s",
		    dir, strerror(errno));
	while ((de = readdir(d)) != NULL) {
		v = migrate_file_version(de->d_name);
		if (v < 1 || v > MIGRATE_SCHEMA_VERSION)
			continue;
		if (list[v].name != NULL) {
			closedir(d);
			return err_set(err, EX_SOFTWARE,
			    "migrations: two files for version %d in %s", v, dir);
		}
		list[v].version = v;
		list[v].name = xstrdup(de->d_name);
		list[v].path = xasprintf("%s/%s", dir, de->d_name);
	}
	closedir(d);
	for (v = 1; v <= MIGRATE_SCHEMA_VERSION; v++)
		if (list[v].name == NULL)
			return err_set(err, EX_SOFTWARE,
			    "migrations: no file for version %04d in %s", v, dir);
	return 0;
}

static void
migrate_list_free(struct migration *list)
{
	for (int v = 0; v <= MIGRATE_SCHEMA_VERSION; v++) {
		free(list[v].name);
		free(list[v].path);
	}
}

static char *
migrate_read_file(const char *path, struct assent_err *err)
{
	char *buf = NULL;
	size_t len = 0;
	FILE *f;

	if ((f = fopen(path, "r")) == NULL) {
		err_set(err, EX_SOFTWARE, "migrations: %s: %s", path, strerror(errno));
		return NULL;
	}
	for (;;) {
		buf = xreallocarray(buf, len + 4096 + 1, 1);
		size_t n = fread(buf + len, 1, 4096, f);
		len += n;
		if (n < 4096)
			break;
	}
	buf[len] = '\0';
	if (!ferror(f) && strlen(buf) != len) {
		err_set(err, EX_SOFTWARE, "migrations: %s: contains a NUL byte", path);
		free(buf);
		fclose(f);
		return NULL;
	}
	if (ferror(f)) {
		err_set(err, EX_SOFTWARE, "migrations: %s: read error", path);
		free(buf);
		buf = NULL;
	}
	fclose(f);
	return buf;
}

static void
migrate_sha256_hex(const char *text, char out[65])
{
	unsigned char md[EVP_MAX_MD_SIZE];
	unsigned int mdlen = 0;

	EVP_Digest(text, strlen(text), md, &mdlen, EVP_sha256(), NULL);
	for (unsigned int i = 0; i < mdlen; i++)
		snprintf(out + 2 * i, 3, "%02x", md[i]);
}

int
migrate_current_version(PGconn *conn, int *version_r, struct assent_err *err)
{
	PGresult *res;

	*version_r = 0;
	if (db_exec(conn, &res, err,
	    "SELECT to_regclass('schema_migrations') IS NOT NULL", 0, NULL) == -1)
		return -1;
	if (strcmp(PQgetvalue(res, 0, 0), "t") != 0) {
		PQclear(res);
		return 0;
	}
	PQclear(res);
	if (db_exec(conn, &res, err,
	    "SELECT coalesce(max(version), 0) FROM schema_migrations", 0, NULL) == -1)
		return -1;
	*version_r = atoi(PQgetvalue(res, 0, 0));
	PQclear(res);
	return 0;
}

/* One migration in one transaction: the file's statements, then its record. */
static int
migrate_apply_one(PGconn *conn, const struct migration *m, struct assent_err *err)
{
	char version[16], sha[65];
	const char *params[3] = { version, m->name, sha };
	char *sql;
	PGresult *res;

	if ((sql = migrate_read_file(m->path, err)) == NULL)
		return -1;
	migrate_sha256_hex(sql, sha);
	snprintf(version, sizeof(version), "%d", m->version);
	if (db_begin(conn, err) == -1)
		goto fail;
	res = PQexec(conn, sql);
	if (PQresultStatus(res) != PGRES_COMMAND_OK &&
	    PQresultStatus(res) != PGRES_TUPLES_OK &&
	    PQresultStatus(res) != PGRES_EMPTY_QUERY) {     /* comments only */
		err_set(err, EX_SOFTWARE, "migration %s failed: %.*s", m->name,
		    (int)strcspn(PQresultErrorMessage(res), "\n"),
		    PQresultErrorMessage(res));
		PQclear(res);
		goto fail;
	}
	PQclear(res);
	if (db_exec(conn, NULL, err, "INSERT INTO schema_migrations "
	    "(version, name, sha256) VALUES ($1, $2, $3)", 3, params) == -1)
		goto fail;
	if (db_commit(conn, err) == -1)
		goto fail;
	free(sql);
	return 0;
fail:
	db_rollback(conn);
	free(sql);
	return -1;
}

/* An applied migration whose file has changed since means the database
 * and this program disagree about the schema: refuse to go on. */
static int
migrate_check_applied(PGconn *conn, const struct migration *list, int current,
    struct assent_err *err)
{
	char sha[65], *sql;
	PGresult *res;
	int v;

	if (db_exec(conn, &res, err, "SELECT version, sha256 FROM schema_migrations"
	    " ORDER BY version", 0, NULL) == -1)
		return -1;
	for (int i = 0; i < PQntuples(res); i++) {
		v = atoi(PQgetvalue(res, i, 0));
		if (v > current || v > MIGRATE_SCHEMA_VERSION)
			break;
		if ((sql = migrate_read_file(list[v].path, err)) == NULL) {
			PQclear(res);
			return -1;
		}
		migrate_sha256_hex(sql, sha);
		free(sql);
		if (strcmp(sha, PQgetvalue(res, i, 1)) != 0) {
			PQclear(res);
			return err_set(err, EX_SOFTWARE, "migration %s was changed after "
			    "it was applied to this database (its SHA-256 differs)",
			    list[v].name);
		}
	}
	PQclear(res);
	return 0;
}

static int
migrate_apply_locked(PGconn *conn, const struct migration *list, int *applied_r,
    void (*on_step)(int, const char *, void *), void *arg, struct assent_err *err)
{
	int current;

	if (db_exec(conn, NULL, err, migrate_sql_bootstrap, 0, NULL) == -1)
		return -1;
	if (migrate_current_version(conn, &current, err) == -1)
		return -1;
	if (current > MIGRATE_SCHEMA_VERSION)
		return err_set(err, EX_CONFIG, "the database schema is at version %d, "
		    "newer than this program (%d): upgrade assent", current,
		    MIGRATE_SCHEMA_VERSION);
	if (migrate_check_applied(conn, list, current, err) == -1)
		return -1;
	for (int v = current + 1; v <= MIGRATE_SCHEMA_VERSION; v++) {
		if (migrate_apply_one(conn, &list[v], err) == -1)
			return -1;
		(*applied_r)++;
		if (on_step != NULL)
			on_step(v, list[v].name, arg);
	}
	return 0;
}

int
migrate_apply(PGconn *conn, int *applied_r,
    void (*on_step)(int version, const char *name, void *arg), void *arg,
    struct assent_err *err)
{
	static const char *const lock_param[1] = { MIGRATE_LOCK_KEY };
	struct migration list[MIGRATE_SCHEMA_VERSION + 1];
	int applied = 0, rc = -1;

	memset(list, 0, sizeof(list));
	if (migrate_scan(list, err) == -1)
		goto done;
	if (db_exec(conn, NULL, err, "SELECT pg_advisory_lock($1::bigint)", 1,
	    lock_param) == -1)
		goto done;
	rc = migrate_apply_locked(conn, list, &applied, on_step, arg, err);
	PQclear(PQexecParams(conn, "SELECT pg_advisory_unlock($1::bigint)", 1,
	    NULL, lock_param, NULL, NULL, 0));
done:
	migrate_list_free(list);
	if (applied_r != NULL)
		*applied_r = applied;
	return rc;
}

int
migrate_require_current(PGconn *conn, struct assent_err *err)
{
	int current;

	if (migrate_current_version(conn, &current, err) == -1)
		return -1;
	if (current < MIGRATE_SCHEMA_VERSION)
		return err_set(err, EX_CONFIG, "the database schema is at version %d "
		    "but this program needs %d: run \"assent db migrate\"", current,
		    MIGRATE_SCHEMA_VERSION);
	if (current > MIGRATE_SCHEMA_VERSION)
		return err_set(err, EX_CONFIG, "the database schema is at version %d, "
		    "newer than this program (%d): upgrade assent", current,
		    MIGRATE_SCHEMA_VERSION);
	return 0;
}

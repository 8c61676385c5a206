/*
 * migrate: versioned schema migrations.
 *
 * Migrations are files NNNN_name.sql in the SQL directory: $ASSENT_SQLDIR
 * when set, else the directory they were installed to
 * ($(pkgdatadir)/sql). Each is applied in its own transaction and
 * recorded in schema_migrations. The program knows the schema version
 * it was built for (MIGRATE_SCHEMA_VERSION) and refuses a database
 * whose schema is newer.
 */
#ifndef ASSENT_MIGRATE_H
#define ASSENT_MIGRATE_H

#include <libpq-fe.h>
#include "assent/err.h"

/* The schema version this program was built for: the number of the
 * last migration file in sql/. */
#define MIGRATE_SCHEMA_VERSION 10

/* The directory migrations are read from (borrowed string). */
const char *migrate_sql_dir(void);

/* The database's current version (0 for an empty database). */
int migrate_current_version(PGconn *conn, int *version_r, struct assent_err *err);

/* Apply pending migrations in order. *applied_r (may be NULL) gets the
 * number applied (0 when already current). Refuses (EX_CONFIG) a
 * database newer than the program. Concurrent runs are serialised with
 * an advisory lock. on_step (may be NULL) is called after each applied
 * migration with its version and name. */
int migrate_apply(PGconn *conn, int *applied_r,
    void (*on_step)(int version, const char *name, void *arg), void *arg,
    struct assent_err *err);

/* 0 when the schema is exactly MIGRATE_SCHEMA_VERSION; otherwise -1
 * with EX_CONFIG and a message that says what to do (run "assent db
 * migrate", or upgrade the program). */
int migrate_require_current(PGconn *conn, struct assent_err *err);

#endif

/*
 * testhelp: what the integration tests share.
 *
 * The servers come from tests/harness/servers.sh (contrib/run-tests
 * starts them): PGHOST/PGUSER name a throwaway PostgreSQL cluster and
 * ASSENT_TEST_SMTP_PORT a capture SMTP server on 127.0.0.1.
 *
 * Memory: strings returned are the caller's to free().
 */
#ifndef ASSENT_TESTHELP_H
#define ASSENT_TESTHELP_H

#include <check.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>
#include <libpq-fe.h>

/* Exit 77 ("skipped") from a test binary when no database server is
 * configured, unless ASSENT_TEST_REQUIRE_SERVERS=1, where it fails. */
void testhelp_require_servers(void);

/* A fresh database with the schema applied (migrations from
 * $ASSENT_SQLDIR). *dsn_r gets its connection string, *dbname_r its name
 * (either may be NULL). Aborts the test on failure. */
PGconn *testhelp_db_create(char **dsn_r, char **dbname_r);

/* Drop the database made by testhelp_db_create(); closes conn. */
void testhelp_db_drop(PGconn *conn, const char *dbname);

/* An empty database (no schema) for migration tests. */
PGconn *testhelp_db_create_empty(char **dsn_r, char **dbname_r);

/* Write a config file with database.dsn = dsn, the SMTP sink
 * ($ASSENT_TEST_SMTP_PORT) as relay with starttls off, http.listen
 * 127.0.0.1 on http_port, http.base_url https://news.example.org, log
 * level debug, and extra (may be NULL)
 * appended as raw libconfig text at top level (groups other than
 * database, smtp, http and log). Returns its path in a fresh temporary
 * directory. */
char *testhelp_write_conf(const char *dsn, int http_port, const char *extra);

/* Run argv (argv[0] a path), optional stdin text, capture stdout and
 * stderr into fresh strings (may be NULL to discard). Returns the exit
 * status, or 128+signal. */
int testhelp_run(const char *const argv[], const char *stdin_text,
    char **out_r, char **err_r);

/* A TCP port on 127.0.0.1 that was free a moment ago. */
int testhelp_free_port(void);

/* Checked fixtures for Check: testhelp_fixture_db() makes a fresh
 * migrated database in testhelp_conn (its connection string in
 * testhelp_dsn); testhelp_fixture_drop() drops it. */
extern PGconn *testhelp_conn;
extern char *testhelp_dsn;
void testhelp_fixture_db(void);
void testhelp_fixture_drop(void);

/* Run a test suite with TAP output and return main()'s exit code. */
int testhelp_run_suite(Suite *s);

/* ---- processes and files, for tests that run the programs ---------- */

/* Milliseconds on a monotonic clock; sleeping. */
long testhelp_now_ms(void);
void testhelp_sleep_ms(long ms);

/* The whole file as a fresh string ("" when it cannot be read). */
char *testhelp_file_read(const char *path);

/* Start argv (argv[0] a path) with stdout and stderr going to log
 * (created or truncated). The child dies with the test process
 * (PR_SET_PDEATHSIG), and every child still known is SIGKILLed when the
 * test process exits. Returns the pid; aborts the test on failure. */
pid_t testhelp_spawn(const char *const argv[], const char *log);

/* Have pid (a process the test did not spawn itself, e.g. a detached
 * daemon) SIGKILLed too when the test process exits. */
void testhelp_adopt(pid_t pid);

/* The exit status (or 128+signal) within ms, or -1 when still running. */
int testhelp_wait_exit(pid_t pid, long ms);

/* Does 127.0.0.1:port accept a TCP connection now? */
bool testhelp_port_accepts(int port);

/* One integer from a query (first row, first column); -1 on error. */
long testhelp_query_long(PGconn *conn, const char *sql);

/* ---- people and lists, for tests that need some ------------------------ */

/* Subscribe email (name may be NULL) to list through subs_add(), on
 * channel cli by operator "tester". Aborts the test on failure. */
void testhelp_subscribe(PGconn *conn, const char *email, const char *name,
    const char *list);

/* The id of the subscriber with canonical address email, of the live
 * list called name. Abort the test when there is none. */
uint64_t testhelp_subscriber_id(PGconn *conn, const char *email);
uint64_t testhelp_list_id(PGconn *conn, const char *name);

/* ---- HTTP over a plain socket, for tests that talk to assentd ------- */

struct testhelp_http_reply {
	int   status;
	char *raw;              /* the whole response: free() it */
	char *body;             /* inside raw */
};

/* Send request (the raw bytes, as they are) to 127.0.0.1:port, read
 * the answer to EOF (5 s timeout). Aborts the test when it cannot
 * connect or no status line comes back. */
struct testhelp_http_reply testhelp_http_raw(int port, const char *request);

/* One request with Host, Connection: close and Content-Length (body
 * may be NULL), plus headers: more header lines, each ending in "\r\n"
 * (may be NULL). */
struct testhelp_http_reply testhelp_http(int port, const char *method,
    const char *path, const char *headers, const char *body);

/* Is there a header "Name: value..." (name case-insensitive, value a
 * prefix)? */
bool testhelp_http_has_header(const struct testhelp_http_reply *r,
    const char *name, const char *value);

#endif

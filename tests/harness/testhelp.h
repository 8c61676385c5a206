/*
 * testhelp: what the integration tests share.
 *
 * The servers come from tests/harness/servers.sh (contrib/run-tests
 * starts them): PGHOST/PGUSER name a throwaway PostgreSQL cluster and
 * ASSENT_TEST_SMTP_PORT a capture SMTP server on 127.0.0.1.
 *
 * Memory: strings returned are the caller's to free(); each function
 * below says so again where it returns one, and what else it hands out.
 */
#ifndef ASSENT_TESTHELP_H
#define ASSENT_TESTHELP_H

#include <check.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>
#include <libpq-fe.h>

struct keys;
struct suppress_ctx;
struct token_signer;

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

/* The first column of the first row of sql as a fresh string ("" when
 * there is no row); the caller frees it. Aborts the test when sql
 * fails. */
char *testhelp_query_text(PGconn *conn, const char *sql);

/* Abort the test unless testhelp_query_text(sql) is want. */
void testhelp_assert_text(PGconn *conn, const char *sql, const char *want);

/* Run a statement that returns no rows; abort the test when it fails. */
void testhelp_sql_exec(PGconn *conn, const char *statement);

/* SIGTERM pid and wait up to ms for it to exit; SIGKILL (and reap) it
 * when it is still there. Returns its exit status (or 128+signal), -1
 * when it had to be killed. */
int testhelp_terminate(pid_t pid, long ms);

/* Write text to path (created or truncated); abort the test on failure. */
void testhelp_file_write(const char *path, const char *text);

/* Replace the first occurrence of from by to in the file at path; abort
 * the test when there is none. */
void testhelp_file_replace(const char *path, const char *from,
    const char *to);

/* Times needle occurs in text. */
int testhelp_count_in(const char *text, const char *needle);

/* Wait up to ms (looking at least once) until the file at path holds
 * needle at least times times. */
bool testhelp_file_wait(const char *path, const char *needle, int times,
    long ms);

/* Remove the file testhelp_write_conf() made, log (a file next to it,
 * may be NULL) and their directory (if it is empty then). Both strings
 * stay the caller's. */
void testhelp_conf_remove(const char *conf, const char *log);

/* ---- keys, for tests that sign tokens or hash addresses -------------- */

/* Generate a keys file in dir (an existing directory) and hand out what
 * the caller asks for (each _r may be NULL): *path_r "dir/keys.conf"
 * (the caller frees it), *keys_r the keys loaded (keys_free()), *gate_r
 * a suppression context with their pepper (borrowed from *keys_r: ask
 * for keys_r too and keep them), *signer_r a token signer
 * (token_signer_free(); needs keys_r too). Aborts the test on failure. */
void testhelp_keys_make(const char *dir, char **path_r, struct keys **keys_r,
    struct suppress_ctx *gate_r, struct token_signer **signer_r);

/* ---- the capture SMTP server: tests/harness/smtpd.py ----------------- */

/* Start smtpd.py (under /usr/bin/python3, which has aiosmtpd) on
 * 127.0.0.1:port writing into dir (which must exist), with extra: more
 * arguments, NULL-terminated (extra may be NULL). Its output goes to
 * dir/smtpd.log. Returns once it says "ready"; aborts the test with
 * that output when it exits first or takes over 10 s. The pid is
 * testhelp_spawn()'s: killed when the test process exits. */
pid_t testhelp_smtpd_start(const char *dir, int port,
    const char *const *extra);

/* Stop it: testhelp_terminate() with 3 s. Nothing when pid <= 0. */
void testhelp_smtpd_stop(pid_t pid);

/* The n-th message it took in dir (1-based, "%08d.eml") as a fresh
 * string the caller frees, or NULL when there is none (yet). */
char *testhelp_smtpd_message(const char *dir, int n);

/* Its dir/log.jsonl (one JSON object a line) as a fresh string the
 * caller frees; "" when there is none yet. */
char *testhelp_smtpd_log(const char *dir);

/* ---- assentd ($ASSENTD_BIN) ------------------------------------------ */

/* Start assentd -c conf [arg] (arg may be NULL; "-f" keeps it in the
 * foreground) with its output to log, through testhelp_spawn(). Aborts
 * the test when ASSENTD_BIN is not set. conf and log stay the
 * caller's. */
pid_t testhelp_assentd_spawn(const char *conf, const char *arg,
    const char *log);

/* Wait (10 s at most) until 127.0.0.1:port accepts; abort the test
 * with the log when pid exits first or never listens. */
void testhelp_assentd_wait_listen(pid_t pid, int port, const char *log);

/* SIGTERM: it must exit 0 within 20 s (under the sanitizers: without a
 * finding); else abort the test with the log. */
void testhelp_assentd_stop(pid_t pid, const char *log);

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

/* Abort the test, showing the whole response, unless the body holds
 * needle (assert_has), or when the response, headers included, holds
 * it (assert_lacks). */
void testhelp_http_assert_has(const struct testhelp_http_reply *r,
    const char *needle);
void testhelp_http_assert_lacks(const struct testhelp_http_reply *r,
    const char *needle);

#endif

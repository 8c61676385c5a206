/* testhelp: databases, config files and child processes for the tests */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <unistd.h>

#include "assent/db.h"
#include "assent/keys.h"
#include "assent/migrate.h"
#include "assent/subs.h"
#include "assent/suppress.h"
#include "assent/token.h"
#include "assent/xmalloc.h"
#include "testhelp.h"

void
testhelp_require_servers(void)
{
	const char *req = getenv("ASSENT_TEST_REQUIRE_SERVERS");

	if (getenv("PGHOST") != NULL && getenv("PGHOST")[0] != '\0')
		return;
	if (req != NULL && strcmp(req, "1") == 0) {
		printf("Bail out! PGHOST is not set: start the servers with "
		    "tests/harness/servers.sh\n");
		exit(1);
	}
	printf("1..0 # SKIP no database server (run contrib/run-tests)\n");
	exit(0);
}

static void
testhelp_die(const char *what, const char *why)
{
	fprintf(stderr, "testhelp: %s: %s\n", what, why);
	abort();
}

/* Run "verb IDENT tail" on the maintenance database; dbname is ours
 * (t_PID_N), quoted as an identifier all the same. */
static PGconn *
testhelp_admin_exec(const char *verb, const char *dbname, const char *tail)
{
	struct assent_err err;
	PGconn *admin;
	char *ident, *sql;

	if (db_connect("dbname=postgres", &admin, &err) == -1)
		testhelp_die("connect", err.msg);
	ident = PQescapeIdentifier(admin, dbname, strlen(dbname));
	sql = xasprintf("%s %s %s", verb, ident, tail);
	if (db_exec(admin, NULL, &err, sql, 0, NULL) == -1)
		testhelp_die(sql, err.msg);
	PQfreemem(ident);
	free(sql);
	return admin;
}

PGconn *
testhelp_db_create_empty(char **dsn_r, char **dbname_r)
{
	static int counter;
	struct assent_err err;
	PGconn *conn;
	char *name, *dsn;

	struct timespec now;

	/* pids come round again (pid_max is 32768 here, and the send tests
	 * start many processes): a database a crashed test left behind must
	 * not block a later one, so the name carries the clock too */
	clock_gettime(CLOCK_REALTIME, &now);
	name = xasprintf("t_%ld_%d_%lx", (long)getpid(), ++counter,
	    (unsigned long)(now.tv_sec * 1000000L + now.tv_nsec / 1000) & 0xffffffffUL);
	db_close(testhelp_admin_exec("CREATE DATABASE", name, "TEMPLATE template0"));
	dsn = xasprintf("dbname=%s", name);
	if (db_connect(dsn, &conn, &err) == -1)
		testhelp_die("connect", err.msg);
	if (dsn_r != NULL)
		*dsn_r = dsn;
	else
		free(dsn);
	if (dbname_r != NULL)
		*dbname_r = name;
	else
		free(name);
	return conn;
}

PGconn *
testhelp_db_create(char **dsn_r, char **dbname_r)
{
	struct assent_err err;
	PGconn *conn = testhelp_db_create_empty(dsn_r, dbname_r);

	if (migrate_apply(conn, NULL, NULL, NULL, &err) == -1)
		testhelp_die("migrate", err.msg);
	return conn;
}

void
testhelp_db_drop(PGconn *conn, const char *dbname)
{
	db_close(conn);
	db_close(testhelp_admin_exec("DROP DATABASE IF EXISTS", dbname, "WITH (FORCE)"));
}

char *
testhelp_write_conf(const char *dsn, int http_port, const char *extra)
{
	char dir[] = "/tmp/assent-test-XXXXXX";
	const char *smtp_port = getenv("ASSENT_TEST_SMTP_PORT");
	char *path;
	FILE *f;

	if (mkdtemp(dir) == NULL)
		testhelp_die("mkdtemp", strerror(errno));
	path = xasprintf("%s/assent.conf", dir);
	if ((f = fopen(path, "w")) == NULL)
		testhelp_die(path, strerror(errno));
	fprintf(f,
	    "database = { dsn = \"%s\"; };\n"
	    "smtp = { host = \"127.0.0.1\"; port = %s; starttls = \"off\"; };\n"
	    "http = { listen = \"127.0.0.1\"; port = %d;"
	    " base_url = \"https://news.example.org\"; admin_port = 0; };\n"
	    "log = { level = \"debug\"; };\n"
	    "daemon = { pid_file = \"%s/assentd.pid\"; };\n"
	    "%s\n",
	    dsn, smtp_port != NULL ? smtp_port : "25", http_port, dir,
	    extra != NULL ? extra : "");
	fclose(f);
	return path;
}

/* Read everything from fd into a fresh string. */
static char *
testhelp_slurp(int fd)
{
	size_t len = 0, cap = 4096;
	char *buf = xmalloc(cap);
	ssize_t n;

	while ((n = read(fd, buf + len, cap - len - 1)) > 0 || (n == -1 && errno == EINTR)) {
		if (n < 0)
			continue;
		len += (size_t)n;
		if (cap - len < 2)
			buf = xreallocarray(buf, cap *= 2, 1);
	}
	buf[len] = '\0';
	return buf;
}

int
testhelp_run(const char *const argv[], const char *stdin_text,
    char **out_r, char **err_r)
{
	char out_tmpl[] = "/tmp/assent-out-XXXXXX", err_tmpl[] = "/tmp/assent-err-XXXXXX";
	int in_pipe[2], out_fd, err_fd, status;
	pid_t pid;

	if (pipe(in_pipe) == -1 || (out_fd = mkstemp(out_tmpl)) == -1 ||
	    (err_fd = mkstemp(err_tmpl)) == -1)
		testhelp_die("run", strerror(errno));
	unlink(out_tmpl);
	unlink(err_tmpl);
	if ((pid = fork()) == -1)
		testhelp_die("fork", strerror(errno));
	if (pid == 0) {
		dup2(in_pipe[0], 0);
		dup2(out_fd, 1);
		dup2(err_fd, 2);
		close(in_pipe[1]);
		execv(argv[0], (char *const *)argv);
		fprintf(stderr, "exec %s: %s\n", argv[0], strerror(errno));
		_exit(127);
	}
	close(in_pipe[0]);
	if (stdin_text != NULL) {
		signal(SIGPIPE, SIG_IGN);
		if (write(in_pipe[1], stdin_text, strlen(stdin_text)) < 0)
			(void)0;        /* the child may not read its input */
	}
	close(in_pipe[1]);
	while (waitpid(pid, &status, 0) == -1 && errno == EINTR)
		;
	lseek(out_fd, 0, SEEK_SET);
	lseek(err_fd, 0, SEEK_SET);
	if (out_r != NULL)
		*out_r = testhelp_slurp(out_fd);
	if (err_r != NULL)
		*err_r = testhelp_slurp(err_fd);
	close(out_fd);
	close(err_fd);
	return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

int
testhelp_free_port(void)
{
	struct sockaddr_in sin;
	socklen_t len = sizeof(sin);
	int fd, port;

	memset(&sin, 0, sizeof(sin));
	sin.sin_family = AF_INET;
	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if ((fd = socket(AF_INET, SOCK_STREAM, 0)) == -1 ||
	    bind(fd, (struct sockaddr *)&sin, sizeof(sin)) == -1 ||
	    getsockname(fd, (struct sockaddr *)&sin, &len) == -1)
		testhelp_die("free port", strerror(errno));
	port = ntohs(sin.sin_port);
	close(fd);
	return port;
}

long
testhelp_query_long(PGconn *conn, const char *sql)
{
	struct assent_err err;
	PGresult *res;
	long v;

	if (db_exec(conn, &res, &err, sql, 0, NULL) == -1) {
		fprintf(stderr, "testhelp: %s: %s\n", sql, err.msg);
		return -1;
	}
	v = PQntuples(res) > 0 ? atol(PQgetvalue(res, 0, 0)) : -1;
	PQclear(res);
	return v;
}

char *
testhelp_query_text(PGconn *conn, const char *sql)
{
	PGresult *res = PQexec(conn, sql);
	char *s;

	ck_assert_msg(PQresultStatus(res) == PGRES_TUPLES_OK, "%s: %s", sql,
	    PQerrorMessage(conn));
	s = xstrdup(PQntuples(res) > 0 ? PQgetvalue(res, 0, 0) : "");
	PQclear(res);
	return s;
}

void
testhelp_assert_text(PGconn *conn, const char *sql, const char *want)
{
	char *got = testhelp_query_text(conn, sql);

	ck_assert_msg(strcmp(got, want) == 0, "%s: \"%s\", not \"%s\"", sql, got,
	    want);
	free(got);
}

void
testhelp_sql_exec(PGconn *conn, const char *statement)
{
	PGresult *res = PQexec(conn, statement);

	ck_assert_msg(PQresultStatus(res) == PGRES_COMMAND_OK, "%s: %s",
	    statement, PQerrorMessage(conn));
	PQclear(res);
}

PGconn *testhelp_conn;
char *testhelp_dsn;
static char *testhelp_dbname;

void
testhelp_fixture_db(void)
{
	testhelp_conn = testhelp_db_create(&testhelp_dsn, &testhelp_dbname);
}

void
testhelp_fixture_drop(void)
{
	testhelp_db_drop(testhelp_conn, testhelp_dbname);
	free(testhelp_dbname);
	free(testhelp_dsn);
	testhelp_conn = NULL;
	testhelp_dbname = testhelp_dsn = NULL;
}

int
testhelp_run_suite(Suite *s)
{
	SRunner *sr = srunner_create(s);
	int failed;

	srunner_run_all(sr, CK_ENV);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed == 0 ? 0 : 1;
}

/* ---- processes and files ------------------------------------------------- */

long
testhelp_now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1000L + ts.tv_nsec / 1000000L;
}

void
testhelp_sleep_ms(long ms)
{
	struct timespec ts = { ms / 1000, (ms % 1000) * 1000000L };

	nanosleep(&ts, NULL);
}

char *
testhelp_file_read(const char *path)
{
	FILE *f = fopen(path, "r");
	size_t len = 0, cap = 4096, n;
	char *buf;

	if (f == NULL)
		return xstrdup("");
	buf = xmalloc(cap);
	while ((n = fread(buf + len, 1, cap - len - 1, f)) > 0)
		if ((len += n) + 1 == cap)
			buf = xreallocarray(buf, cap *= 2, 1);
	buf[len] = '\0';
	fclose(f);
	return buf;
}

/* Children this test process started: killed at exit, whatever happens
 * to the test (a failed assertion exits the forked test process). */
static pid_t testhelp_children[32];
static size_t testhelp_nchildren;

static void
testhelp_kill_children(void)
{
	for (size_t i = 0; i < testhelp_nchildren; i++)
		if (testhelp_children[i] > 0)
			kill(testhelp_children[i], SIGKILL);
}

void
testhelp_adopt(pid_t pid)
{
	static bool registered;

	if (!registered) {
		atexit(testhelp_kill_children);
		registered = true;
	}
	if (testhelp_nchildren < sizeof(testhelp_children) / sizeof(testhelp_children[0]))
		testhelp_children[testhelp_nchildren++] = pid;
}

pid_t
testhelp_spawn(const char *const argv[], const char *log)
{
	pid_t pid;
	int fd;

	fd = open(log, O_WRONLY | O_CREAT | O_TRUNC | O_APPEND, 0600);
	ck_assert_msg(fd != -1, "%s: %s", log, strerror(errno));
	pid = fork();
	ck_assert(pid != -1);
	if (pid == 0) {
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		dup2(fd, 1);
		dup2(fd, 2);
		execv(argv[0], (char *const *)argv);
		fprintf(stderr, "exec %s: %s\n", argv[0], strerror(errno));
		_exit(127);
	}
	close(fd);
	testhelp_adopt(pid);
	return pid;
}

int
testhelp_wait_exit(pid_t pid, long ms)
{
	long deadline = testhelp_now_ms() + ms;
	int status;

	while (testhelp_now_ms() <= deadline) {
		if (waitpid(pid, &status, WNOHANG) == pid) {
			for (size_t i = 0; i < testhelp_nchildren; i++)
				if (testhelp_children[i] == pid)
					testhelp_children[i] = 0;
			return WIFEXITED(status) ? WEXITSTATUS(status) :
			    128 + WTERMSIG(status);
		}
		testhelp_sleep_ms(10);
	}
	return -1;
}

int
testhelp_terminate(pid_t pid, long ms)
{
	int status;

	kill(pid, SIGTERM);
	if ((status = testhelp_wait_exit(pid, ms)) == -1) {
		kill(pid, SIGKILL);
		testhelp_wait_exit(pid, 5000);
	}
	return status;
}

void
testhelp_file_write(const char *path, const char *text)
{
	FILE *f = fopen(path, "w");

	ck_assert_msg(f != NULL, "%s: %s", path, strerror(errno));
	fputs(text, f);
	fclose(f);
}

void
testhelp_file_replace(const char *path, const char *from, const char *to)
{
	char *text = testhelp_file_read(path), *at, *out;

	at = strstr(text, from);
	ck_assert_msg(at != NULL, "%s has no \"%s\"", path, from);
	*at = '\0';
	out = xasprintf("%s%s%s", text, to, at + strlen(from));
	testhelp_file_write(path, out);
	free(out);
	free(text);
}

int
testhelp_count_in(const char *text, const char *needle)
{
	int n = 0;

	for (const char *p = text; (p = strstr(p, needle)) != NULL; p++)
		n++;
	return n;
}

bool
testhelp_file_wait(const char *path, const char *needle, int times, long ms)
{
	long deadline = testhelp_now_ms() + ms;

	for (;;) {
		char *text = testhelp_file_read(path);
		int n = testhelp_count_in(text, needle);

		free(text);
		if (n >= times)
			return true;
		if (testhelp_now_ms() > deadline)
			return false;
		testhelp_sleep_ms(20);
	}
}

void
testhelp_conf_remove(const char *conf, const char *log)
{
	char *dir = xstrdup(conf);

	if (log != NULL)
		unlink(log);
	unlink(conf);
	*strrchr(dir, '/') = '\0';
	rmdir(dir);
	free(dir);
}

bool
testhelp_port_accepts(int port)
{
	struct sockaddr_in sin = { .sin_family = AF_INET };
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	bool ok;

	sin.sin_port = htons((unsigned short)port);
	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	ok = connect(fd, (struct sockaddr *)&sin, sizeof(sin)) == 0;
	close(fd);
	return ok;
}

/* ---- HTTP ---------------------------------------------------------------- */

static int
testhelp_http_connect(int port)
{
	struct sockaddr_in sin = { .sin_family = AF_INET };
	struct timeval tv = { 5, 0 };
	int fd = socket(AF_INET, SOCK_STREAM, 0);

	ck_assert_msg(fd != -1, "socket: %s", strerror(errno));
	sin.sin_port = htons((unsigned short)port);
	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	ck_assert_msg(connect(fd, (struct sockaddr *)&sin, sizeof(sin)) == 0,
	    "connect to %d: %s", port, strerror(errno));
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
	return fd;
}

struct testhelp_http_reply
testhelp_http_raw(int port, const char *request)
{
	struct testhelp_http_reply r = { 0, NULL, NULL };
	size_t len = strlen(request), off = 0, cap = 4096;
	int fd = testhelp_http_connect(port);
	ssize_t n;

	/* The server may answer and close before reading everything (a
	 * body too large): stop writing then, and read what it said. */
	while (off < len && (n = send(fd, request + off, len - off,
	    MSG_NOSIGNAL)) > 0)
		off += (size_t)n;
	r.raw = xmalloc(cap);
	len = 0;
	while ((n = read(fd, r.raw + len, cap - len - 1)) > 0)
		if ((len += (size_t)n) + 1 == cap)
			r.raw = xreallocarray(r.raw, cap *= 2, 1);
	close(fd);
	r.raw[len] = '\0';
	ck_assert_msg(sscanf(r.raw, "HTTP/1.%*d %d", &r.status) == 1,
	    "no status line in \"%s\" for \"%.200s\"", r.raw, request);
	r.body = strstr(r.raw, "\r\n\r\n");
	r.body = r.body != NULL ? r.body + 4 : r.raw + len;
	return r;
}

struct testhelp_http_reply
testhelp_http(int port, const char *method, const char *path,
    const char *headers, const char *body)
{
	struct testhelp_http_reply r;
	char *req;

	req = xasprintf("%s %s HTTP/1.1\r\nHost: 127.0.0.1\r\n"
	    "Connection: close\r\n%sContent-Length: %zu\r\n\r\n%s",
	    method, path, headers != NULL ? headers : "",
	    body != NULL ? strlen(body) : 0, body != NULL ? body : "");
	r = testhelp_http_raw(port, req);
	free(req);
	return r;
}

bool
testhelp_http_has_header(const struct testhelp_http_reply *r,
    const char *name, const char *value)
{
	size_t nlen = strlen(name);

	for (const char *p = strstr(r->raw, "\r\n"); p != NULL && p + 2 < r->body;
	    p = strstr(p + 2, "\r\n")) {
		const char *h = p + 2;

		if (strncasecmp(h, name, nlen) == 0 && h[nlen] == ':' &&
		    strncmp(h + nlen + 1 + strspn(h + nlen + 1, " "), value,
		    strlen(value)) == 0)
			return true;
	}
	return false;
}

void
testhelp_http_assert_has(const struct testhelp_http_reply *r,
    const char *needle)
{
	ck_assert_msg(strstr(r->body, needle) != NULL, "no \"%s\" in:\n%s",
	    needle, r->raw);
}

void
testhelp_http_assert_lacks(const struct testhelp_http_reply *r,
    const char *needle)
{
	ck_assert_msg(strstr(r->raw, needle) == NULL, "\"%s\" in:\n%s", needle,
	    r->raw);
}

/* ---- people and lists ---------------------------------------------------- */

void
testhelp_subscribe(PGconn *conn, const char *email, const char *name,
    const char *list)
{
	static const struct ledger_evidence ev = {
		.source = "test", .operator_name = "tester",
	};
	struct subs_request req = { .email = email, .list = list, .name = name,
	    .channel = "cli", .evidence = &ev };
	struct assent_err err;
	char status[16];

	ck_assert_msg(subs_add(conn, &req, status, NULL, &err) == 0, "%s: %s", email,
	    err.msg);
}

static uint64_t
testhelp_id_of(PGconn *conn, const char *sql, const char *value)
{
	const char *params[] = { value };
	PGresult *res = PQexecParams(conn, sql, 1, NULL, params, NULL, NULL, 0);
	uint64_t id;

	ck_assert_msg(PQntuples(res) == 1, "no id for %s", value);
	id = strtoull(PQgetvalue(res, 0, 0), NULL, 10);
	PQclear(res);
	return id;
}

uint64_t
testhelp_subscriber_id(PGconn *conn, const char *email)
{
	return testhelp_id_of(conn, "SELECT id FROM subscribers WHERE email_key = $1",
	    email);
}

uint64_t
testhelp_list_id(PGconn *conn, const char *name)
{
	return testhelp_id_of(conn, "SELECT id FROM lists WHERE name = $1"
	    " AND removed_at IS NULL", name);
}

/* ---- keys ------------------------------------------------------------------ */

void
testhelp_keys_make(const char *dir, char **path_r, struct keys **keys_r,
    struct suppress_ctx *gate_r, struct token_signer **signer_r)
{
	char *path = xasprintf("%s/keys.conf", dir);
	struct assent_err err;
	struct keys *keys;

	ck_assert_msg(keys_generate(path, &err) == 0, "%s", err.msg);
	if (keys_r != NULL) {
		ck_assert_msg(keys_load(path, &keys, &err) == 0, "%s", err.msg);
		if (gate_r != NULL)
			gate_r->pepper = keys_pepper(keys, &gate_r->pepper_len);
		if (signer_r != NULL)
			ck_assert_msg(token_signer_new(keys, signer_r, &err) == 0,
			    "%s", err.msg);
		*keys_r = keys;
	}
	if (path_r != NULL)
		*path_r = path;
	else
		free(path);
}

/* ---- the capture SMTP server ---------------------------------------------- */

#define TESTHELP_PYTHON "/usr/bin/python3"

pid_t
testhelp_smtpd_start(const char *dir, int port, const char *const *extra)
{
	const char *srcdir = getenv("ASSENT_SRCDIR");
	const char *argv[32];
	char portstr[16], *script, *log, *out;
	long deadline = testhelp_now_ms() + 10000;
	size_t n = 0;
	pid_t pid;

	snprintf(portstr, sizeof(portstr), "%d", port);
	script = xasprintf("%s/tests/harness/smtpd.py", srcdir != NULL ? srcdir : ".");
	log = xasprintf("%s/smtpd.log", dir);
	argv[n++] = TESTHELP_PYTHON;
	argv[n++] = script;
	argv[n++] = "--port";
	argv[n++] = portstr;
	argv[n++] = "--dir";
	argv[n++] = dir;
	while (extra != NULL && *extra != NULL && n < 31)
		argv[n++] = *extra++;
	argv[n] = NULL;
	pid = testhelp_spawn(argv, log);
	/* "ready" comes once it listens: no probe connection, which the
	 * server would count in its log */
	while (strstr(out = testhelp_file_read(log), "ready\n") == NULL) {
		ck_assert_msg(testhelp_wait_exit(pid, 0) == -1,
		    "smtpd.py exited before it was ready:\n%s", out);
		ck_assert_msg(testhelp_now_ms() < deadline,
		    "smtpd.py never said it was ready:\n%s", out);
		free(out);
		testhelp_sleep_ms(20);
	}
	free(out);
	free(script);
	free(log);
	return pid;
}

void
testhelp_smtpd_stop(pid_t pid)
{
	if (pid > 0)
		testhelp_terminate(pid, 3000);
}

char *
testhelp_smtpd_message(const char *dir, int n)
{
	char *path = xasprintf("%s/%08d.eml", dir, n);
	char *text = testhelp_file_read(path);

	free(path);
	if (*text == '\0') {
		free(text);
		return NULL;
	}
	return text;
}

char *
testhelp_smtpd_log(const char *dir)
{
	char *path = xasprintf("%s/log.jsonl", dir);
	char *text = testhelp_file_read(path);

	free(path);
	return text;
}

/* ---- assentd ------------------------------------------------------------------ */

pid_t
testhelp_assentd_spawn(const char *conf, const char *arg, const char *log)
{
	const char *argv[] = { getenv("ASSENTD_BIN"), "-c", conf, arg, NULL };

	ck_assert_msg(argv[0] != NULL, "ASSENTD_BIN is not set");
	return testhelp_spawn(argv, log);
}

void
testhelp_assentd_wait_listen(pid_t pid, int port, const char *log)
{
	long deadline = testhelp_now_ms() + 10000;

	while (!testhelp_port_accepts(port)) {
		ck_assert_msg(testhelp_wait_exit(pid, 0) == -1,
		    "assentd exited during start-up:\n%s", testhelp_file_read(log));
		ck_assert_msg(testhelp_now_ms() < deadline,
		    "assentd never listened on %d", port);
		testhelp_sleep_ms(10);
	}
}

void
testhelp_assentd_stop(pid_t pid, const char *log)
{
	int status = testhelp_terminate(pid, 20000);

	ck_assert_msg(status == 0, "assentd: status %d; log:\n%s", status,
	    testhelp_file_read(log));
}

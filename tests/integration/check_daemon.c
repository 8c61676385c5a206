/*
 * check_daemon: assentd as a process. Start-up, refusals, /healthz,
 * signals. The daemon is $ASSENTD_BIN, run against the test cluster
 * (PGHOST/PGUSER), talked to over a plain socket.
 */
#include <sys/types.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "assent/xmalloc.h"
#include "testhelp.h"

#define TEST_TIMEOUT   20      /* seconds per test */
#define READY_MS       10000   /* how long start-up may take */
#define STOP_MS        5000    /* how long SIGTERM may take */

struct daemon {
	pid_t  pid;
	int    port;
	char  *conf;            /* its config file */
	char  *log;             /* its stdout and stderr */
	char  *dbname;          /* NULL when the test made no database */
	PGconn *db;
};

/* ---- processes ------------------------------------------------------------- */

/* Run assentd -c conf [arg] with stdout and stderr into d->log. */
static void
daemon_spawn(struct daemon *d, const char *arg)
{
	d->log = xasprintf("%s.log", d->conf);
	d->pid = testhelp_assentd_spawn(d->conf, arg, d->log);
}

/* The exit status (or 128+signal) within ms, or -1 when still running. */
static int
daemon_wait_exit(struct daemon *d, long ms)
{
	int status = testhelp_wait_exit(d->pid, ms);

	if (status != -1)
		d->pid = 0;
	return status;
}

/* Send sig, expect exit status 0 within STOP_MS. */
static void
daemon_stop(struct daemon *d, int sig)
{
	long start = testhelp_now_ms();
	int status;

	ck_assert_int_eq(kill(d->pid, sig), 0);
	status = daemon_wait_exit(d, STOP_MS);
	if (status != 0) {
		char *log = testhelp_file_read(d->log);

		ck_abort_msg("after signal %d: status %d after %ld ms; log:\n%s",
		    sig, status, testhelp_now_ms() - start, log);
	}
}

/* A database (current schema unless empty) and a config file for it. */
static void
daemon_setup(struct daemon *d, bool empty)
{
	char *dsn;

	memset(d, 0, sizeof(*d));
	d->db = empty ? testhelp_db_create_empty(&dsn, &d->dbname) :
	    testhelp_db_create(&dsn, &d->dbname);
	d->port = testhelp_free_port();
	d->conf = testhelp_write_conf(dsn, d->port, NULL);
	free(dsn);
}

static void
daemon_teardown(struct daemon *d)
{
	if (d->pid > 0) {
		kill(d->pid, SIGKILL);
		waitpid(d->pid, NULL, 0);
	}
	if (d->dbname != NULL)
		testhelp_db_drop(d->db, d->dbname);
	if (d->conf != NULL)
		testhelp_conf_remove(d->conf, d->log);
	free(d->dbname);
	free(d->conf);
	free(d->log);
}

/* Set up, start in the foreground and wait until it listens. */
static void
daemon_start(struct daemon *d)
{
	daemon_setup(d, false);
	daemon_spawn(d, "-f");
	testhelp_assentd_wait_listen(d->pid, d->port, d->log);
}

/* ---- HTTP: testhelp_http() ------------------------------------------------ */

#define http_reply testhelp_http_reply

static struct http_reply
http_request(int port, const char *method, const char *path, const char *body)
{
	return testhelp_http(port, method, path, NULL, body);
}

#define http_has_header testhelp_http_has_header

/* A connection left open (an idle keep-alive client). */
static int
http_connect(int port)
{
	struct sockaddr_in sin = { .sin_family = AF_INET };
	int fd = socket(AF_INET, SOCK_STREAM, 0);

	sin.sin_port = htons((unsigned short)port);
	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	ck_assert_msg(connect(fd, (struct sockaddr *)&sin, sizeof(sin)) == 0,
	    "connect to %d: %s", port, strerror(errno));
	return fd;
}

static void
send_all(int fd, const char *buf)
{
	size_t len = strlen(buf), off = 0;

	while (off < len) {
		ssize_t n = write(fd, buf + off, len - off);

		ck_assert_msg(n > 0, "write: %s", strerror(errno));
		off += (size_t)n;
	}
}

/* ---- start-up ------------------------------------------------------------------ */

START_TEST(test_healthz_ok)
{
	struct daemon d;
	struct http_reply r;
	char *want;
	long conns;

	daemon_start(&d);
	want = xasprintf("listening on http://127.0.0.1:%d", d.port);
	ck_assert_msg(testhelp_file_wait(d.log, want, 1, 1000),
	    "no \"%s\" in the log", want);
	r = http_request(d.port, "GET", "/healthz", NULL);
	ck_assert_int_eq(r.status, 200);
	ck_assert_str_eq(r.body, "ok\n");
	ck_assert(http_has_header(&r, "Content-Type", "text/plain"));
	ck_assert(http_has_header(&r, "X-Content-Type-Options", "nosniff"));
	ck_assert(http_has_header(&r, "Cache-Control", "no-store"));
	ck_assert(http_has_header(&r, "Referrer-Policy", "no-referrer"));
	/* The schema check passed: the daemon said it is ready. */
	ck_assert(testhelp_file_wait(d.log, "ready", 1, 2000));
	free(r.raw);
	/* Each pool thread keeps its connection: many requests, few
	 * connections (the main thread's, the scheduler's, and one for each
	 * pool thread that did the shared once-a-second database check,
	 * four at most; the sender workers have no keys file here, so they
	 * do not connect). */
	for (int i = 0; i < 20; i++) {
		r = http_request(d.port, "GET", "/healthz", NULL);
		ck_assert_int_eq(r.status, 200);
		free(r.raw);
	}
	conns = testhelp_query_long(d.db, "SELECT count(*) FROM pg_stat_activity "
	    "WHERE datname = current_database() AND pid <> pg_backend_pid() "
	    "AND backend_type = 'client backend'");
	ck_assert_msg(conns >= 2 && conns <= 6, "%ld connections", conns);
	daemon_stop(&d, SIGTERM);
	free(want);
	daemon_teardown(&d);
}
END_TEST

START_TEST(test_unmigrated_refused)
{
	struct daemon d;
	char *log;

	daemon_setup(&d, true);
	daemon_spawn(&d, "-f");
	ck_assert_int_eq(daemon_wait_exit(&d, READY_MS), 78);
	log = testhelp_file_read(d.log);
	ck_assert_msg(strstr(log, "assent db migrate") != NULL, "log:\n%s", log);
	free(log);
	daemon_teardown(&d);
}
END_TEST

/* A config made bad on a known line: from -> to in the file written by
 * testhelp_write_conf (database, smtp, http, log: lines 1 to 4). */
static const struct {
	const char *from, *to;
	int line;
} bad_confs[] = {
	{ "level = \"debug\";", "level = ;", 4 },               /* syntax */
	{ "listen = \"127.0.0.1\";", "listen = 127;", 3 },      /* type */
};

START_TEST(test_bad_config)
{
	struct daemon d;
	char *log, *want;

	memset(&d, 0, sizeof(d));
	d.port = testhelp_free_port();
	d.conf = testhelp_write_conf("dbname=nowhere", d.port, NULL);
	testhelp_file_replace(d.conf, bad_confs[_i].from, bad_confs[_i].to);
	daemon_spawn(&d, "-f");
	ck_assert_int_eq(daemon_wait_exit(&d, READY_MS), 78);
	log = testhelp_file_read(d.log);
	want = xasprintf("%s:%d", d.conf, bad_confs[_i].line);
	ck_assert_msg(strstr(log, want) != NULL, "no \"%s\" in:\n%s", want, log);
	ck_assert_msg(testhelp_count_in(log, "\n") == 1, "not one line:\n%s",
	    log);
	free(want);
	free(log);
	daemon_teardown(&d);
}
END_TEST

START_TEST(test_port_in_use)
{
	struct sockaddr_in sin = { .sin_family = AF_INET };
	struct daemon d;
	int fd, one = 1;
	char *log;

	daemon_setup(&d, false);
	sin.sin_port = htons((unsigned short)d.port);
	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	fd = socket(AF_INET, SOCK_STREAM, 0);
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	ck_assert(bind(fd, (struct sockaddr *)&sin, sizeof(sin)) == 0);
	ck_assert(listen(fd, 1) == 0);
	daemon_spawn(&d, "-f");
	ck_assert_int_eq(daemon_wait_exit(&d, READY_MS), 69);
	log = testhelp_file_read(d.log);
	ck_assert_msg(strstr(log, "cannot listen on 127.0.0.1:") != NULL,
	    "log:\n%s", log);
	close(fd);
	free(log);
	daemon_teardown(&d);
}
END_TEST

START_TEST(test_db_unreachable)
{
	char dir[] = "/tmp/assent-nodb-XXXXXX";
	struct http_reply r;
	struct daemon d;
	char *dsn;

	memset(&d, 0, sizeof(d));
	ck_assert(mkdtemp(dir) != NULL);
	dsn = xasprintf("host=%s dbname=nowhere connect_timeout=2", dir);
	d.port = testhelp_free_port();
	d.conf = testhelp_write_conf(dsn, d.port, NULL);
	daemon_spawn(&d, "-f");
	testhelp_assentd_wait_listen(d.pid, d.port, d.log);
	/* Two attempts, each with libpq's reason (it names the socket). */
	ck_assert(testhelp_file_wait(d.log, "retrying the database in", 2,
	    3000));
	ck_assert(testhelp_file_wait(d.log, ".s.PGSQL.", 2, 100));
	r = http_request(d.port, "GET", "/healthz", NULL);
	ck_assert_int_eq(r.status, 503);
	ck_assert_str_eq(r.body, "database unavailable\n");
	daemon_stop(&d, SIGTERM);
	rmdir(dir);
	free(r.raw);
	free(dsn);
	daemon_teardown(&d);
}
END_TEST

/* ---- routes -------------------------------------------------------------------- */

static const struct {
	const char *method, *path, *body;
	int status;
	const char *header, *value;     /* one header to expect, or NULL */
} route_cases[] = {
	{ "GET",    "/healthz",   NULL,     200, "Cache-Control", "no-store" },
	{ "HEAD",   "/healthz",   NULL,     200, NULL, NULL },
	{ "POST",   "/healthz",   "a=b",    405, "Allow", "GET" },
	{ "DELETE", "/healthz",   NULL,     405, "Allow", "GET" },
	{ "GET",    "/nowhere",   NULL,     404, "X-Content-Type-Options", "nosniff" },
	{ "GET",    "/healthz/x", NULL,     404, NULL, NULL },
	{ "POST",   "/nowhere",   "x",      404, "Referrer-Policy", "no-referrer" },
};

START_TEST(test_routes)
{
	struct daemon d;

	daemon_start(&d);
	for (size_t i = 0; i < sizeof(route_cases) / sizeof(route_cases[0]); i++) {
		struct http_reply r = http_request(d.port, route_cases[i].method,
		    route_cases[i].path, route_cases[i].body);

		ck_assert_msg(r.status == route_cases[i].status, "%s %s: %d",
		    route_cases[i].method, route_cases[i].path, r.status);
		if (route_cases[i].header != NULL)
			ck_assert_msg(http_has_header(&r, route_cases[i].header,
			    route_cases[i].value), "%s %s: no %s: %s in\n%s",
			    route_cases[i].method, route_cases[i].path,
			    route_cases[i].header, route_cases[i].value, r.raw);
		free(r.raw);
	}
	daemon_stop(&d, SIGTERM);
	daemon_teardown(&d);
}
END_TEST

/* ---- signals ----------------------------------------------------------------------- */

START_TEST(test_sighup_broken_config)
{
	struct http_reply r;
	struct daemon d;
	char *want;

	daemon_start(&d);
	testhelp_file_replace(d.conf, "level = \"debug\";", "level = ;");
	ck_assert_int_eq(kill(d.pid, SIGHUP), 0);
	ck_assert_msg(testhelp_file_wait(d.log, "reload failed", 1, 3000),
	    "log:\n%s", testhelp_file_read(d.log));
	want = xasprintf("%s:4", d.conf);
	ck_assert(testhelp_file_wait(d.log, want, 1, 100));
	r = http_request(d.port, "GET", "/healthz", NULL);
	ck_assert_int_eq(r.status, 200);
	daemon_stop(&d, SIGTERM);
	free(want);
	free(r.raw);
	daemon_teardown(&d);
}
END_TEST

START_TEST(test_sighup_reload)
{
	struct daemon d;
	char *from, *to;

	daemon_start(&d);
	testhelp_file_replace(d.conf, "level = \"debug\";",
	    "level = \"info\";");
	from = xasprintf("port = %d;", d.port);
	to = xasprintf("port = %d;", d.port + 1);
	testhelp_file_replace(d.conf, from, to);
	ck_assert_int_eq(kill(d.pid, SIGHUP), 0);
	ck_assert(testhelp_file_wait(d.log, "reloaded configuration", 1, 3000));
	ck_assert(testhelp_file_wait(d.log, "log level info", 1, 100));
	ck_assert(testhelp_file_wait(d.log,
	    "http.port changed; that needs a restart", 1, 100));
	/* Still where it was. */
	ck_assert(testhelp_port_accepts(d.port));
	daemon_stop(&d, SIGTERM);
	free(from);
	free(to);
	daemon_teardown(&d);
}
END_TEST

START_TEST(test_sigterm_with_idle_client)
{
	struct daemon d;
	int fd;

	daemon_start(&d);
	/* An idle keep-alive connection must not hold up the exit. */
	fd = http_connect(d.port);
	send_all(fd, "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n");
	daemon_stop(&d, SIGTERM);
	close(fd);
	ck_assert(testhelp_file_wait(d.log, "stopped", 1, 100));
	daemon_teardown(&d);
}
END_TEST

START_TEST(test_sigint)
{
	struct daemon d;

	daemon_start(&d);
	daemon_stop(&d, SIGINT);
	daemon_teardown(&d);
}
END_TEST

/* ---- detached ------------------------------------------------------------------------ */

static pid_t
pidfile_read(const char *path)
{
	char *text = testhelp_file_read(path);
	long pid = atol(text);

	free(text);
	return (pid_t)pid;
}

START_TEST(test_detached)
{
	const char *bin = getenv("ASSENTD_BIN");
	struct http_reply r;
	struct daemon d;
	char *pidfile, *err;
	pid_t pid;
	long deadline;

	daemon_setup(&d, false);
	pidfile = xstrdup(d.conf);
	strcpy(strrchr(pidfile, '/'), "/assentd.pid");
	{
		const char *argv[] = { bin, "-c", d.conf, NULL };

		ck_assert_int_eq(testhelp_run(argv, NULL, NULL, &err), 0);
		free(err);
		pid = pidfile_read(pidfile);
		ck_assert_msg(pid > 0, "no pid in %s", pidfile);
		testhelp_adopt(pid);
		/* A second one is refused while the first lives. */
		ck_assert_int_eq(testhelp_run(argv, NULL, NULL, &err), 69);
		ck_assert_msg(strstr(err, "already running") != NULL, "%s", err);
		free(err);
	}
	ck_assert(testhelp_port_accepts(d.port));
	r = http_request(d.port, "GET", "/healthz", NULL);
	ck_assert_int_eq(r.status, 200);
	ck_assert_int_eq(kill(pid, SIGTERM), 0);
	deadline = testhelp_now_ms() + STOP_MS;
	while (kill(pid, 0) == 0 && testhelp_now_ms() < deadline)
		testhelp_sleep_ms(10);
	ck_assert_msg(kill(pid, 0) == -1, "pid %ld still runs", (long)pid);
	ck_assert_msg(access(pidfile, F_OK) == -1, "%s is still there", pidfile);
	free(r.raw);
	free(pidfile);
	daemon_teardown(&d);
}
END_TEST

/* Detached on a database with an old schema: the command that started
 * it must fail with 78, not report a start that ends a moment later. */
START_TEST(test_detached_unmigrated_fails_visibly)
{
	const char *bin = getenv("ASSENTD_BIN");
	struct daemon d;
	char *err;

	daemon_setup(&d, true);
	{
		const char *argv[] = { bin, "-c", d.conf, NULL };

		ck_assert_int_eq(testhelp_run(argv, NULL, NULL, &err), 78);
		free(err);
	}
	daemon_teardown(&d);
}
END_TEST

/* A pid file left by a dead daemon, naming a live process (ours), does
 * not block a start: the lock decides, not the number in the file. */
START_TEST(test_detached_stale_pid_file)
{
	const char *bin = getenv("ASSENTD_BIN");
	struct daemon d;
	char *pidfile, *err, stale[32];
	pid_t pid;

	daemon_setup(&d, false);
	pidfile = xstrdup(d.conf);
	strcpy(strrchr(pidfile, '/'), "/assentd.pid");
	snprintf(stale, sizeof(stale), "%ld\n", (long)getpid());
	testhelp_file_write(pidfile, stale);
	{
		const char *argv[] = { bin, "-c", d.conf, NULL };

		ck_assert_int_eq(testhelp_run(argv, NULL, NULL, &err), 0);
		free(err);
	}
	pid = pidfile_read(pidfile);
	ck_assert_msg(pid > 0 && pid != getpid(), "pid file not rewritten");
	testhelp_adopt(pid);
	ck_assert_int_eq(kill(pid, SIGTERM), 0);
	free(pidfile);
	daemon_teardown(&d);
}
END_TEST

static Suite *
daemon_suite(void)
{
	Suite *s = suite_create("daemon");
	TCase *tc = tcase_create("daemon");

	tcase_set_timeout(tc, TEST_TIMEOUT);
	tcase_add_test(tc, test_healthz_ok);
	tcase_add_test(tc, test_unmigrated_refused);
	tcase_add_loop_test(tc, test_bad_config, 0,
	    sizeof(bad_confs) / sizeof(bad_confs[0]));
	tcase_add_test(tc, test_port_in_use);
	tcase_add_test(tc, test_db_unreachable);
	tcase_add_test(tc, test_routes);
	tcase_add_test(tc, test_sighup_broken_config);
	tcase_add_test(tc, test_sighup_reload);
	tcase_add_test(tc, test_sigterm_with_idle_client);
	tcase_add_test(tc, test_sigint);
	tcase_add_test(tc, test_detached);
	tcase_add_test(tc, test_detached_unmigrated_fails_visibly);
	tcase_add_test(tc, test_detached_stale_pid_file);
	suite_add_tcase(s, tc);
	return s;
}

int
main(void)
{
	testhelp_require_servers();
	return testhelp_run_suite(daemon_suite());
}

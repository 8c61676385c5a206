/*
 * assentd: the daemon. Arguments, configuration and its reload,
 * detaching, the pid file, signals, the start-up database check and the
 * main loop (which will host the scheduler). The HTTP side is web.c.
 */
#include <sys/file.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "assent/conf.h"
#include "assent/db.h"
#include "assent/err.h"
#include "assent/log.h"
#include "assent/migrate.h"
#include "assent/notice.h"
#include "assent/xmalloc.h"
#include "assentd.h"

#define DB_RETRY_FIRST_MS  500
#define DB_RETRY_MAX_MS    30000

struct assentd {
	char               *conf_path;   /* absolute: we chdir("/") */
	struct assent_conf *conf;        /* replaced on a good SIGHUP */
	struct assent_conf *start_conf;  /* the first one: the workers borrow it */
	char               *dsn;         /* the one we started with */
	bool                foreground;
	bool                detached;
	char               *pid_file;    /* the one we wrote, or NULL */
	int                 pid_fd;      /* holds its lock, or -1 */
	int                 ready_fd;    /* to the waiting parent, or -1 */
	struct web         *web;
	struct workers     *workers;
	struct scheduler   *scheduler;
	struct metrics_server *metrics;
	PGconn             *db;          /* the main thread's connection */
	bool                stopping;
};

/* The self-pipe: signal handlers write the signal number, the main
 * thread reads it. */
static int sig_pipe[2] = { -1, -1 };

static void __attribute__((noreturn))
usage(FILE *out, int code)
{
	fprintf(out, "usage: assentd [-c FILE] [-f] [-h] [-V]\n"
	    "  -c FILE  configuration file (default: $ASSENT_CONFIG or %s)\n"
	    "  -f       stay in the foreground, log to stderr\n"
	    "  -h       this help\n"
	    "  -V       print the version\n", CONF_DEFAULT_PATH);
	exit(code);
}

static void
main_args(int argc, char **argv, struct assentd *d, const char **path_r)
{
	int ch;

	*path_r = NULL;
	while ((ch = getopt(argc, argv, "c:fhV")) != -1) {
		switch (ch) {
		case 'c':
			*path_r = optarg;
			break;
		case 'f':
			d->foreground = true;
			break;
		case 'h':
			usage(stdout, 0);
		case 'V':
			printf("assentd %s\n", PACKAGE_VERSION);
			exit(0);
		default:
			usage(stderr, EX_USAGE);
		}
	}
	if (optind != argc)
		usage(stderr, EX_USAGE);
	if (*path_r == NULL)
		*path_r = conf_default_path();
}

/* ---- logging and configuration ----------------------------------------- */

static enum log_level
main_log_level(const struct assent_conf *conf)
{
	enum log_level level = LOG_LEVEL_INFO;

	if (conf->log_level != NULL)
		log_level_parse(conf->log_level, &level);
	return level;
}

static void
main_log_setup(const struct assentd *d)
{
	log_init("assentd", main_log_level(d->conf),
	    d->detached || d->conf->log_syslog);
}

/* At start-up a bad configuration is fatal: one line on stderr. */
static void
main_load_conf(struct assentd *d, const char *path)
{
	struct assent_err err;
	char abs[PATH_MAX];

	err_clear(&err);
	if (conf_load(path, &d->conf, &err) == -1 ||
	    notice_check_templates(d->conf, &err) == -1) {
		fprintf(stderr, "assentd: %s\n", err.msg);
		exit(err.code != 0 ? err.code : EX_CONFIG);
	}
	d->conf_path = xstrdup(realpath(path, abs) != NULL ? abs : path);
	d->dsn = xstrdup(d->conf->database_dsn);
}

static bool
str_differs(const char *a, const char *b)
{
	if (a == NULL || b == NULL)
		return a != b;
	return strcmp(a, b) != 0;
}

static void
main_note_restart(const char *setting, bool changed)
{
	if (changed)
		log_warnx("reload: %s changed; that needs a restart", setting);
}

/* SIGHUP: read the file again; keep the old configuration on error. */
static void
main_reload(struct assentd *d)
{
	struct assent_conf *old = d->conf, *fresh;
	struct assent_err err;

	err_clear(&err);
	if (conf_load(d->conf_path, &fresh, &err) == -1) {
		log_error("reload failed, keeping the running configuration: %s",
		    err.msg);
		return;
	}
	main_note_restart("database.dsn",
	    str_differs(old->database_dsn, fresh->database_dsn));
	main_note_restart("http.listen",
	    str_differs(old->http_listen, fresh->http_listen));
	main_note_restart("http.port", old->http_port != fresh->http_port);
	main_note_restart("daemon.pid_file",
	    str_differs(old->daemon_pid_file, fresh->daemon_pid_file));
	main_note_restart("smtp, sending (except rate and domain_limits) and sender",
	    str_differs(old->smtp_host, fresh->smtp_host) ||
	    old->smtp_port != fresh->smtp_port ||
	    old->sending_concurrency != fresh->sending_concurrency ||
	    old->sending_batch != fresh->sending_batch ||
	    str_differs(old->sender_from, fresh->sender_from) ||
	    str_differs(old->http_base_url, fresh->http_base_url));
	main_note_restart("http.trusted_proxies, http.admin_*, tokens or "
	    "sender.organisation (the web endpoint)",
	    str_differs(old->http_trusted_proxies, fresh->http_trusted_proxies) ||
	    str_differs(old->http_admin_listen, fresh->http_admin_listen) ||
	    old->http_admin_port != fresh->http_admin_port ||
	    str_differs(old->tokens_keys_file, fresh->tokens_keys_file) ||
	    old->tokens_confirm_ttl != fresh->tokens_confirm_ttl ||
	    str_differs(old->sender_organisation, fresh->sender_organisation));
	workers_reload(d->workers, fresh);
	d->conf = fresh;
	if (old != d->start_conf)
		conf_free(old);
	main_log_setup(d);
	log_info("reloaded configuration from %s (log level %s%s)",
	    d->conf_path, d->conf->log_level != NULL ? d->conf->log_level : "info",
	    d->detached || d->conf->log_syslog ? ", syslog" : "");
}

/* ---- the pid file ------------------------------------------------------- */

/* The pid in an existing pid file, or 0. */
static long
pidfile_read(int fd)
{
	char buf[32];
	ssize_t n = pread(fd, buf, sizeof(buf) - 1, 0);

	if (n <= 0)
		return 0;
	buf[n] = '\0';
	return strtol(buf, NULL, 10);
}

/* Open path and take its lock. The lock, not the pid written in the
 * file, says whether an assentd runs: it dies with the process, so a
 * stale file (or a pid reused by another program) never blocks a start
 * and two daemons starting at once cannot both win. */
static int
pidfile_lock(const char *path, bool create, int *fd_r, struct assent_err *err)
{
	int fd = open(path, O_RDWR | O_CLOEXEC | (create ? O_CREAT : 0), 0644);

	*fd_r = -1;
	if (fd == -1) {
		if (errno == ENOENT && !create)
			return 0;
		return err_set(err, EX_CANTCREAT, "%s: %s", path, strerror(errno));
	}
	if (flock(fd, LOCK_EX | LOCK_NB) == -1) {
		long pid = pidfile_read(fd);

		close(fd);
		return err_set(err, EX_UNAVAILABLE,
		    "%s: assentd is already running as pid %ld", path, pid);
	}
	*fd_r = fd;
	return 0;
}

/* Refuse to start, while still on the terminal, when one runs. */
static int
pidfile_check(const char *path, struct assent_err *err)
{
	int fd;

	if (pidfile_lock(path, false, &fd, err) == -1)
		return -1;
	if (fd != -1)
		close(fd);
	return 0;
}

/* Lock and write the pid file; the lock is held until exit. */
static int
pidfile_write(const char *path, int *fd_r, struct assent_err *err)
{
	if (pidfile_lock(path, true, fd_r, err) == -1)
		return -1;
	if (ftruncate(*fd_r, 0) == -1 || dprintf(*fd_r, "%ld\n", (long)getpid()) < 0) {
		err_set(err, EX_IOERR, "%s: %s", path, strerror(errno));
		close(*fd_r);
		*fd_r = -1;
		return -1;
	}
	return 0;
}

/* ---- detaching ------------------------------------------------------------ */

/* The original process waits for the daemon to say it is listening (a
 * zero byte) or why it gave up (its exit code), and exits with that. */
static void __attribute__((noreturn))
main_parent_wait(int fd, pid_t child)
{
	unsigned char code = EX_SOFTWARE;
	ssize_t n;

	while (waitpid(child, NULL, 0) == -1 && errno == EINTR)
		continue;
	do
		n = read(fd, &code, 1);
	while (n == -1 && errno == EINTR);
	if (n == 1 && code == 0)
		_exit(0);
	if (n != 1)
		code = EX_SOFTWARE;
	fprintf(stderr, "assentd: failed to start (exit %d); see the system "
	    "log\n", code);
	_exit(code);
}

static void
main_null_stdio(void)
{
	int fd;

	if ((fd = open("/dev/null", O_RDWR)) == -1)
		fatal("/dev/null");
	dup2(fd, STDIN_FILENO);
	dup2(fd, STDOUT_FILENO);
	dup2(fd, STDERR_FILENO);
	if (fd > STDERR_FILENO)
		close(fd);
}

static void
main_daemonise(struct assentd *d)
{
	int ready[2];
	pid_t pid;

	if (pipe(ready) == -1)
		fatal("pipe");
	if ((pid = fork()) == -1)
		fatal("fork");
	if (pid > 0) {
		close(ready[1]);
		main_parent_wait(ready[0], pid);
	}
	close(ready[0]);
	if (setsid() == -1)
		fatal("setsid");
	if ((pid = fork()) == -1)
		fatal("fork");
	if (pid > 0)
		_exit(0);
	if (chdir("/") == -1)
		fatal("chdir /");
	main_null_stdio();
	d->ready_fd = ready[1];
	d->detached = true;
}

/* Tell the waiting parent (if any) how start-up went. */
static void
main_ready(struct assentd *d, int code)
{
	unsigned char byte = (unsigned char)code;

	if (d->ready_fd == -1)
		return;
	if (write(d->ready_fd, &byte, 1) == -1)
		log_warn("telling the parent process we started");
	close(d->ready_fd);
	d->ready_fd = -1;
}

/* ---- exit ---------------------------------------------------------------- */

static void __attribute__((noreturn))
main_exit(struct assentd *d, int code)
{
	main_ready(d, code);
	scheduler_stop(d->scheduler);
	workers_stop(d->workers);
	metrics_stop(d->metrics);
	web_stop(d->web);
	if (d->db != NULL)
		db_close(d->db);
	/* Only the holder of the lock removes the file. */
	if (d->pid_file != NULL && unlink(d->pid_file) == -1)
		log_warn("removing %s", d->pid_file);
	if (d->pid_fd != -1)
		close(d->pid_fd);
	log_info("%s", code == 0 ? "stopped" : "exiting");
	if (d->start_conf != d->conf)
		conf_free(d->start_conf);
	conf_free(d->conf);
	free(d->pid_file);
	free(d->dsn);
	free(d->conf_path);
	exit(code);
}

static void __attribute__((noreturn))
main_fail(struct assentd *d, const struct assent_err *err)
{
	log_error("%s", err->msg);
	main_exit(d, err->code != 0 ? err->code : EX_SOFTWARE);
}

/* ---- signals -------------------------------------------------------------- */

static void
sig_handler(int sig)
{
	unsigned char byte = (unsigned char)sig;
	int saved_errno = errno;

	/* A full pipe already holds a wake-up: dropping this is fine. */
	if (write(sig_pipe[1], &byte, 1) == -1)
		errno = saved_errno;
	errno = saved_errno;
}

static void
sig_setup(void)
{
	static const int sigs[] = { SIGHUP, SIGTERM, SIGINT };
	struct sigaction sa;

	if (pipe2(sig_pipe, O_NONBLOCK | O_CLOEXEC) == -1)
		fatal("pipe");
	memset(&sa, 0, sizeof(sa));
	sigemptyset(&sa.sa_mask);
	sa.sa_flags = SA_RESTART;
	sa.sa_handler = sig_handler;
	for (size_t i = 0; i < sizeof(sigs) / sizeof(sigs[0]); i++)
		if (sigaction(sigs[i], &sa, NULL) == -1)
			fatal("sigaction");
	sa.sa_handler = SIG_IGN;
	if (sigaction(SIGPIPE, &sa, NULL) == -1)
		fatal("sigaction");
}

static void
sig_dispatch(struct assentd *d, int sig)
{
	switch (sig) {
	case SIGHUP:
		log_info("SIGHUP: reloading %s", d->conf_path);
		main_reload(d);
		break;
	case SIGTERM:
	case SIGINT:
		log_info("%s: stopping", sig == SIGTERM ? "SIGTERM" : "SIGINT");
		d->stopping = true;
		break;
	}
}

/* Wait up to timeout_ms (-1: forever) for a signal, and act on every
 * signal that arrived. */
static void
main_wait(struct assentd *d, int timeout_ms)
{
	struct pollfd pfd = { .fd = sig_pipe[0], .events = POLLIN };
	unsigned char sigs[16];
	ssize_t n;

	/* A signal may interrupt poll() (EINTR) before the pipe shows
	 * readable: the non-blocking read below finds its byte anyway. */
	if (poll(&pfd, 1, timeout_ms) == -1 && errno != EINTR)
		fatal("poll");
	while ((n = read(sig_pipe[0], sigs, sizeof(sigs))) > 0)
		for (ssize_t i = 0; i < n; i++)
			sig_dispatch(d, sigs[i]);
}

/* ---- the database ---------------------------------------------------------- */

/* Connect, retrying with exponential backoff while the server is down.
 * Returns -1 only when asked to stop meanwhile. */
static int
main_db_connect(struct assentd *d)
{
	struct assent_err err;
	int delay_ms = DB_RETRY_FIRST_MS;

	while (!d->stopping) {
		err_clear(&err);
		if (db_connect(d->dsn, &d->db, &err) == 0) {
			if (delay_ms > DB_RETRY_FIRST_MS)
				log_info("connected to the database");
			return 0;
		}
		log_warnx("retrying the database in %d.%d s: %s",
		    delay_ms / 1000, delay_ms % 1000 / 100, err.msg);
		/* Started, if not ready: the parent may go, we keep trying. */
		main_ready(d, 0);
		main_wait(d, delay_ms);
		delay_ms = delay_ms * 2 > DB_RETRY_MAX_MS ? DB_RETRY_MAX_MS :
		    delay_ms * 2;
	}
	return -1;
}

/* Connected, with the schema this program was built for. A schema that
 * is not current is a refusal, not something to wait out. */
static int
main_db_ready(struct assentd *d)
{
	struct assent_err err;

	for (;;) {
		if (main_db_connect(d) == -1)
			return -1;
		err_clear(&err);
		if (migrate_require_current(d->db, &err) == 0)
			return 0;
		if (PQstatus(d->db) == CONNECTION_OK)
			main_fail(d, &err);
		log_warnx("database connection lost: %s", err.msg);
		db_close(d->db);
		d->db = NULL;
	}
}

/* ---- main ------------------------------------------------------------------ */

/* The sender workers and the scheduler, once the schema is known good. */
static void
main_start_sending(struct assentd *d)
{
	struct assent_err err;

	err_clear(&err);
	d->start_conf = d->conf;
	if (workers_start(d->start_conf, &d->workers, &err) == -1 ||
	    scheduler_start(d->start_conf, &d->scheduler, &err) == -1)
		main_fail(d, &err);
}

static bool
main_has_pid_file(const struct assentd *d)
{
	return d->conf->daemon_pid_file != NULL &&
	    d->conf->daemon_pid_file[0] != '\0';
}

/* Refuse a second daemon while still on the terminal, then detach. */
static void
main_detach(struct assentd *d)
{
	struct assent_err err;

	err_clear(&err);
	if (main_has_pid_file(d) &&
	    pidfile_check(d->conf->daemon_pid_file, &err) == -1) {
		fprintf(stderr, "assentd: %s\n", err.msg);
		exit(err.code);
	}
	main_daemonise(d);
	main_log_setup(d);
}

/* Written once the signal handlers are in place, so that a SIGTERM
 * from here on removes it. */
static void
main_write_pid_file(struct assentd *d)
{
	struct assent_err err;

	err_clear(&err);
	if (pidfile_write(d->conf->daemon_pid_file, &d->pid_fd, &err) == -1)
		main_fail(d, &err);
	d->pid_file = xstrdup(d->conf->daemon_pid_file);
}

int
main(int argc, char **argv)
{
	struct assentd d = { .ready_fd = -1, .pid_fd = -1 };
	struct assent_err err;
	const char *path;

	main_args(argc, argv, &d, &path);
	log_init("assentd", LOG_LEVEL_INFO, false);
	main_load_conf(&d, path);
	main_log_setup(&d);
	if (!d.foreground)
		main_detach(&d);
	sig_setup();
	if (d.detached && main_has_pid_file(&d))
		main_write_pid_file(&d);
	err_clear(&err);
	if (web_start(d.conf, &d.web, &err) == -1)
		main_fail(&d, &err);
	/* Metrics are for operators: without them assentd still does its job. */
	err_clear(&err);
	if (metrics_start(d.conf, &d.metrics, &err) == -1)
		log_error("%s; no metrics", err.msg);
	if (main_db_ready(&d) == 0)
		log_info("database schema is current (version %d); ready",
		    MIGRATE_SCHEMA_VERSION);
	/* The waiting parent learns of a wrong schema (main_fail) rather
	 * than of a start that ends a moment later. */
	main_ready(&d, 0);
	if (!d.stopping)
		main_start_sending(&d);
	while (!d.stopping)
		main_wait(&d, -1);
	main_exit(&d, 0);
}

/* check_conf: the configuration table, its errors, defaults and dumps. */
#include <sys/stat.h>

#include <check.h>
#include "testhelp.h"
#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "assent/conf.h"

#define MIN_CONF "database = { dsn = \"dbname=t\"; };\n"

/* --- helpers ------------------------------------------------------------ */

struct tmpconf {
	char dir[64];
	char path[128];
};

static void
tmpconf_write(struct tmpconf *t, const char *text)
{
	FILE *fp;

	snprintf(t->dir, sizeof(t->dir), "/tmp/check_conf.XXXXXX");
	ck_assert_ptr_nonnull(mkdtemp(t->dir));
	snprintf(t->path, sizeof(t->path), "%s/assent.conf", t->dir);
	ck_assert_ptr_nonnull(fp = fopen(t->path, "w"));
	fputs(text, fp);
	ck_assert_int_eq(fclose(fp), 0);
	/* private, as a file holding a DSN password must be */
	ck_assert_int_eq(chmod(t->path, 0600), 0);
}

static void
tmpconf_remove(struct tmpconf *t)
{
	char cmd[256];

	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", t->dir);
	ck_assert_int_eq(system(cmd), 0);
}

/* Load text; on failure the error message with the temporary path
 * replaced by "FILE", so that expectations can name file:line. */
static int
load_text(const char *text, struct assent_conf **conf_r,
    struct assent_err *err, char *msg, size_t msglen)
{
	struct tmpconf t;
	const char *p;
	size_t plen;
	int rc;

	tmpconf_write(&t, text);
	err->code = 0;
	err->msg[0] = '\0';
	rc = conf_load(t.path, conf_r, err);
	plen = strlen(t.path);
	msg[0] = '\0';
	if ((p = strstr(err->msg, t.path)) != NULL)
		snprintf(msg, msglen, "%.*sFILE%s", (int)(p - err->msg),
		    err->msg, p + plen);
	else
		snprintf(msg, msglen, "%s", err->msg);
	tmpconf_remove(&t);
	return rc;
}

static void
expect_ok(const char *text, struct assent_conf **conf_r)
{
	struct assent_err err;
	char msg[ASSENT_ERR_MSG_MAX + 16];

	ck_assert_msg(load_text(text, conf_r, &err, msg, sizeof(msg)) == 0,
	    "expected success, got: %s", msg);
	ck_assert_ptr_nonnull(*conf_r);
}

static void
expect_error(const char *text, const char *want, int code)
{
	struct assent_conf *conf = (struct assent_conf *)1;
	struct assent_err err;
	char msg[ASSENT_ERR_MSG_MAX + 16];

	ck_assert_msg(load_text(text, &conf, &err, msg, sizeof(msg)) == -1,
	    "expected \"%s\", got success", want);
	ck_assert_ptr_null(conf);
	ck_assert_msg(strncmp(msg, want, strlen(want)) == 0,
	    "expected \"%s\", got \"%s\"", want, msg);
	ck_assert_int_eq(err.code, code);
}

static char *
dump_to_string(const struct assent_conf *conf, int json)
{
	char *buf = NULL;
	size_t len = 0;
	FILE *fp = open_memstream(&buf, &len);

	ck_assert_ptr_nonnull(fp);
	if (json)
		conf_dump_json(conf, fp);
	else
		conf_dump(conf, fp);
	ck_assert_int_eq(fclose(fp), 0);
	return buf;
}

static const char *
sample_path(void)
{
	static char path[4096];
	const char *srcdir = getenv("ASSENT_SRCDIR");
	const char *slash;

	if (srcdir != NULL && srcdir[0] != '\0') {
		snprintf(path, sizeof(path), "%s/conf/assent.conf", srcdir);
		return path;
	}
	/* The compiler saw this file as .../tests/unit/check_conf.c. */
	slash = strrchr(__FILE__, '/');
	snprintf(path, sizeof(path), "%.*s../../conf/assent.conf",
	    slash != NULL ? (int)(slash - __FILE__ + 1) : 0, __FILE__);
	return path;
}

/* --- errors: a table of config texts and the message each must give ----- */

static const struct error_case {
	const char *text;
	const char *want;       /* prefix of the message, FILE = the path */
} error_cases[] = {
	/* libconfig's own parse errors */
	{ MIN_CONF "smtp = {\n\tport = ;\n};\n",
	  "FILE:3: syntax error" },
	{ MIN_CONF "smtp = {\n\tport = 25;\n\tport = 26;\n};\n",
	  "FILE:4: duplicate setting name" },
	{ MIN_CONF "smtp = {\n\thost = \"unterminated;\n};\n",
	  "FILE:5: syntax error" },
	/* unknown names */
	{ MIN_CONF "smtp = {\n\tprot = 25;\n};\n",
	  "FILE:3: smtp.prot: unknown setting (did you mean smtp.port?)" },
	{ MIN_CONF "http = {\n\thost = \"x\";\n};\n",
	  "FILE:3: http.host: unknown setting (did you mean smtp.host?)" },
	{ MIN_CONF "smtp = {\n\tcolour = \"blue\";\n};\n",
	  "FILE:3: smtp.colour: unknown setting" },
	{ MIN_CONF "smpt = {\n\tport = 25;\n};\n",
	  "FILE:2: smpt: unknown group (did you mean smtp?)" },
	{ MIN_CONF "SMTP = {\n\tport = 25;\n};\n",
	  "FILE:2: SMTP: unknown group (did you mean smtp?)" },
	{ MIN_CONF "smtp = {\n\tPort = 25;\n};\n",
	  "FILE:3: smtp.Port: unknown setting (did you mean smtp.port?)" },
	{ MIN_CONF "\nfrobnicate = { x = 1; };\n",
	  "FILE:3: frobnicate: unknown group" },
	{ MIN_CONF "port = 25;\n",
	  "FILE:2: port: unknown setting (did you mean smtp.port?)" },
	/* groups and values in each other's place */
	{ MIN_CONF "smtp = 25;\n",
	  "FILE:2: smtp: expected a group ({ ... }), got an integer" },
	{ MIN_CONF "log = \"debug\";\n",
	  "FILE:2: log: expected a group ({ ... }), got a string" },
	{ MIN_CONF "smtp = ( { port = 25; } );\n",
	  "FILE:2: smtp: expected a group ({ ... }), got a list" },
	{ MIN_CONF "smtp = {\n\tport = { value = 25; };\n};\n",
	  "FILE:3: smtp.port: expected an integer, got a group" },
	{ MIN_CONF "smtp = {\n\thost = [ \"a\", \"b\" ];\n};\n",
	  "FILE:3: smtp.host: expected a string, got an array" },
	/* wrong types, for each type */
	{ MIN_CONF "smtp = {\n\tport = \"25\";\n};\n",
	  "FILE:3: smtp.port: expected an integer, got a string "
	  "(write the number without quotes)" },
	{ MIN_CONF "http = {\n\tport = 80.5;\n};\n",
	  "FILE:3: http.port: expected an integer, got a floating point number" },
	{ MIN_CONF "sending = {\n\tbatch = true;\n};\n",
	  "FILE:3: sending.batch: expected an integer, got a boolean" },
	{ MIN_CONF "tokens = {\n\tconfirm_ttl = \"1w\";\n};\n",
	  "FILE:3: tokens.confirm_ttl: expected an integer, got a string" },
	{ MIN_CONF "smtp = {\n\thost = 127;\n};\n",
	  "FILE:3: smtp.host: expected a string, got an integer "
	  "(put the value in double quotes)" },
	{ MIN_CONF "sender = {\n\torganisation = false;\n};\n",
	  "FILE:3: sender.organisation: expected a string, got a boolean" },
	{ MIN_CONF "log = {\n\tsyslog = 1;\n};\n",
	  "FILE:3: log.syslog: expected a boolean (true or false), "
	  "got an integer" },
	{ MIN_CONF "log = {\n\tsyslog = \"yes\";\n};\n",
	  "FILE:3: log.syslog: expected a boolean (true or false), got a string "
	  "(write true or false without quotes)" },
	{ MIN_CONF "smtp = {\n\tstarttls = true;\n};\n",
	  "FILE:3: smtp.starttls: expected a string (off, opportunistic or "
	  "required), got a boolean" },
	{ MIN_CONF "smtp = {\n\tstarttls = \"maybe\";\n};\n",
	  "FILE:3: smtp.starttls: \"maybe\" is not one of off, opportunistic "
	  "or required" },
	{ "database = {\n\tdsn = 5;\n};\n",
	  "FILE:2: database.dsn: expected a string, got an integer" },
	/* required and non-empty values */
	{ "smtp = { port = 25; };\n",
	  "FILE: database.dsn: required setting is missing" },
	{ "\ndatabase = {\n};\n",
	  "FILE:2: database.dsn: required setting is missing" },
	{ "database = {\n\tdsn = \"\";\n};\n",
	  "FILE:2: database.dsn: must not be empty" },
	{ MIN_CONF "smtp = {\n\thost = \"\";\n};\n",
	  "FILE:3: smtp.host: must not be empty" },
	{ "", "FILE: database.dsn: required setting is missing" },
	/* validators */
	{ MIN_CONF "log = {\n\tlevel = \"verbose\";\n};\n",
	  "FILE:3: log.level: unknown level \"verbose\" "
	  "(use error, warn, info or debug)" },
	{ MIN_CONF "http = {\n\tbase_url = \"ftp://x.org\";\n};\n",
	  "FILE:3: http.base_url: \"ftp://x.org\" must start with http:// "
	  "or https://" },
	{ MIN_CONF "http = {\n\tbase_url = \"news.example.org\";\n};\n",
	  "FILE:3: http.base_url: \"news.example.org\" must start with" },
	{ MIN_CONF "http = {\n\tbase_url = \"https://\";\n};\n",
	  "FILE:3: http.base_url: \"https://\" has no host name" },
	{ MIN_CONF "smtp = {\n\tuser = \"mailer\";\n};\n",
	  "FILE:3: smtp.user: is set but smtp.password_file is not" },
	{ MIN_CONF "http = {\n\tbase_url = \"https://x.org/\";\n};\n",
	  "FILE:3: http.base_url: \"https://x.org/\" must not end with /" },
	{ MIN_CONF "http = {\n\tbase_url = \"http://news.example.org\";\n};\n",
	  "FILE:3: http.base_url: \"http://news.example.org\" must be https:// "
	  "(links in mail must be; http:// only to 127.0.0.1, localhost or [::1])" },
	{ MIN_CONF "http = {\n\tbase_url = \"http://localhost.example.org\";\n};\n",
	  "FILE:3: http.base_url: \"http://localhost.example.org\" must be https://" },
	{ MIN_CONF "http = {\n\tlisten = \"localhost\";\n};\n",
	  "FILE:3: http.listen: \"localhost\" is not a numeric IPv4 or IPv6 "
	  "address" },
	{ MIN_CONF "daemon = {\n\tpid_file = \"assentd.pid\";\n};\n",
	  "FILE:3: daemon.pid_file: \"assentd.pid\" is not an absolute path" },
	{ MIN_CONF "tokens = {\n\tkeys_file = \"keys.conf\";\n};\n",
	  "FILE:3: tokens.keys_file: \"keys.conf\" is not an absolute path" },
	{ MIN_CONF "sender = {\n\n\tfrom = \"not an address\";\n};\n",
	  "FILE:4: sender.from: " },
	{ MIN_CONF "sender = {\n\tfrom = \"a..b@example.org\";\n};\n",
	  "FILE:3: sender.from: " },
	{ MIN_CONF "sender = {\n\tbounce_domain = \"no_such domain\";\n};\n",
	  "FILE:3: sender.bounce_domain: " },
	/* control characters in strings */
	{ MIN_CONF "smtp = {\n\thelo = \"mx\\n.example.org\";\n};\n",
	  "FILE:3: smtp.helo" },
	{ MIN_CONF "sender = {\n\torganisation = \"A\\tB\";\n};\n",
	  "FILE:3: sender.organisation" },
	{ "database = {\n\tdsn = \"dbname=a\\x01\";\n};\n",
	  "FILE:2: database.dsn" },
};

START_TEST(test_error)
{
	expect_error(error_cases[_i].text, error_cases[_i].want, EX_CONFIG);
}
END_TEST

/* --- every integer at and past both ends of its range ------------------- */

static const struct range_case {
	const char *group, *name, *literal;
	int ok;
	const char *want;       /* for !ok: the message after "FILE:3: " */
} range_cases[] = {
	{ "smtp", "port", "0", 0, "smtp.port: 0 is out of range (1 to 65535)" },
	{ "smtp", "port", "1", 1, NULL },
	{ "smtp", "port", "65535", 1, NULL },
	{ "smtp", "port", "65536", 0, "smtp.port: 65536 is out of range" },
	{ "smtp", "port", "1099511627776", 0,
	  "smtp.port: 1099511627776 is out of range (1 to 65535)" },
	{ "smtp", "port", "1099511627776L", 0,
	  "smtp.port: 1099511627776 is out of range" },
	{ "smtp", "port", "4294967321", 0,      /* 2^32 + 25: reads as 25 */
	  "smtp.port: 4294967321 is out of range" },
	{ "smtp", "port", "99999999999999999999L", 0,
	  "smtp.port: 99999999999999999999 is out of range" },
	{ "smtp", "port", "-1", 0, "smtp.port: -1 is out of range" },
	{ "smtp", "port", "0x19", 1, NULL },
	{ "smtp", "port", "0xFFFFFFFFF", 0,
	  "smtp.port: 0xFFFFFFFFF is out of range" },
	{ "http", "port", "0", 0, "http.port: 0 is out of range (1 to 65535)" },
	{ "http", "port", "1", 1, NULL },
	{ "http", "port", "65535", 1, NULL },
	{ "http", "port", "65536", 0, "http.port: 65536 is out of range" },
	{ "http", "port", "1099511627776", 0, "http.port: 1099511627776 is out" },
	{ "tokens", "confirm_ttl", "59", 0,
	  "tokens.confirm_ttl: 59 is out of range (60 to 31536000)" },
	{ "tokens", "confirm_ttl", "60", 1, NULL },
	{ "tokens", "confirm_ttl", "31536000", 1, NULL },
	{ "tokens", "confirm_ttl", "31536001", 0,
	  "tokens.confirm_ttl: 31536001 is out of range" },
	{ "tokens", "confirm_ttl", "1099511627776", 0,
	  "tokens.confirm_ttl: 1099511627776 is out of range" },
	{ "sending", "rate", "-1", 0,
	  "sending.rate: -1 is out of range (0 to 1000000)" },
	{ "sending", "rate", "0", 1, NULL },
	{ "sending", "rate", "1000000", 1, NULL },
	{ "sending", "rate", "1000001", 0,
	  "sending.rate: 1000001 is out of range" },
	{ "sending", "rate", "1099511627776", 0,
	  "sending.rate: 1099511627776 is out of range" },
	{ "sending", "concurrency", "0", 0,
	  "sending.concurrency: 0 is out of range (1 to 256)" },
	{ "sending", "concurrency", "1", 1, NULL },
	{ "sending", "concurrency", "256", 1, NULL },
	{ "sending", "concurrency", "257", 0,
	  "sending.concurrency: 257 is out of range" },
	{ "sending", "concurrency", "1099511627776", 0,
	  "sending.concurrency: 1099511627776 is out of range" },
	{ "sending", "batch", "0", 0,
	  "sending.batch: 0 is out of range (1 to 10000)" },
	{ "sending", "batch", "1", 1, NULL },
	{ "sending", "batch", "10000", 1, NULL },
	{ "sending", "batch", "10001", 0, "sending.batch: 10001 is out of range" },
	{ "sending", "batch", "1099511627776", 0,
	  "sending.batch: 1099511627776 is out of range" },
};

START_TEST(test_range)
{
	const struct range_case *rc = &range_cases[_i];
	struct assent_conf *conf;
	char text[256], want[256];

	snprintf(text, sizeof(text), MIN_CONF "%s = {\n\t%s = %s;\n};\n",
	    rc->group, rc->name, rc->literal);
	if (rc->ok) {
		expect_ok(text, &conf);
		conf_free(conf);
		return;
	}
	snprintf(want, sizeof(want), "FILE:3: %s", rc->want);
	expect_error(text, want, EX_CONFIG);
}
END_TEST

START_TEST(test_range_values_stored)
{
	struct assent_conf *conf;

	expect_ok(MIN_CONF "smtp = { port = 65535; };\nhttp = { port = 1; };\n"
	    "tokens = { confirm_ttl = 31536000; };\n"
	    "sending = { rate = 1000000; concurrency = 256; batch = 10000; };\n",
	    &conf);
	ck_assert_int_eq(conf->smtp_port, 65535);
	ck_assert_int_eq(conf->http_port, 1);
	ck_assert_int_eq(conf->tokens_confirm_ttl, 31536000);
	ck_assert_int_eq(conf->sending_rate, 1000000);
	ck_assert_int_eq(conf->sending_concurrency, 256);
	ck_assert_int_eq(conf->sending_batch, 10000);
	conf_free(conf);
}
END_TEST

/* The literal is found again in the file despite neighbours, strings and
 * comments that look like it. */
static const struct literal_case {
	const char *text;
	const char *want;       /* NULL: accepted */
} literal_cases[] = {
	{ MIN_CONF "smtp = { port = 25; }; http = { port = 1099511627776; };\n",
	  "FILE:2: http.port: 1099511627776 is out of range" },
	{ MIN_CONF "smtp = { host = \"port = 5\"; port = 4294967321; };\n",
	  "FILE:2: smtp.port: 4294967321 is out of range" },
	{ MIN_CONF "smtp = { /* port = 4294967321 */ port = 25; };\n", NULL },
	{ MIN_CONF "smtp = {\n\tport = 25; # port = 99999999999\n};\n", NULL },
	{ MIN_CONF "smtp = {\n\tport =\n\t\t4294967321;\n};\n",
	  "FILE:3: smtp.port: 4294967321 is out of range" },
	{ MIN_CONF "sending = { rate = 5; batch = 4294967297; };\n",
	  "FILE:2: sending.batch: 4294967297 is out of range" },
};

START_TEST(test_literal)
{
	const struct literal_case *lc = &literal_cases[_i];
	struct assent_conf *conf;

	if (lc->want != NULL) {
		expect_error(lc->text, lc->want, EX_CONFIG);
		return;
	}
	expect_ok(lc->text, &conf);
	ck_assert_int_eq(conf->smtp_port, 25);
	conf_free(conf);
}
END_TEST

/* A DSN may hold a password: an error about it must not quote it. */
START_TEST(test_dsn_error_hides_value)
{
	struct assent_conf *conf;
	struct assent_err err;
	char msg[ASSENT_ERR_MSG_MAX + 16];

	ck_assert_int_eq(load_text("database = {\n\tdsn = \"password=s3cret"
	    "\\n\";\n};\n", &conf, &err, msg, sizeof(msg)), -1);
	ck_assert_str_eq(msg, "FILE:2: database.dsn: not one line of UTF-8 "
	    "text (value not shown)");
}
END_TEST

/* --- files ---------------------------------------------------------------- */

START_TEST(test_missing_file)
{
	struct assent_conf *conf = (struct assent_conf *)1;
	struct assent_err err;

	ck_assert_int_eq(conf_load("/nonexistent/assent.conf", &conf, &err), -1);
	ck_assert_ptr_null(conf);
	ck_assert_int_eq(err.code, EX_NOINPUT);
	ck_assert_str_eq(err.msg,
	    "/nonexistent/assent.conf: No such file or directory");
}
END_TEST

START_TEST(test_directory_as_file)
{
	struct assent_conf *conf;
	struct assent_err err;

	ck_assert_int_eq(conf_load("/tmp", &conf, &err), -1);
	ck_assert_int_eq(err.code, EX_NOINPUT);
	ck_assert_str_eq(err.msg, "/tmp: Is a directory");
}
END_TEST

START_TEST(test_unreadable_file)
{
	struct assent_conf *conf;
	struct assent_err err;
	struct tmpconf t;

	if (geteuid() == 0)
		return;         /* root reads mode 000 files */
	tmpconf_write(&t, MIN_CONF);
	ck_assert_int_eq(chmod(t.path, 0), 0);
	ck_assert_int_eq(conf_load(t.path, &conf, &err), -1);
	ck_assert_int_eq(err.code, EX_NOINPUT);
	ck_assert_ptr_nonnull(strstr(err.msg, "Permission denied"));
	tmpconf_remove(&t);
}
END_TEST

START_TEST(test_include)
{
	struct assent_conf *conf;
	struct assent_err err;
	struct tmpconf t;
	char inc[160], want[200];
	FILE *fp;

	tmpconf_write(&t, MIN_CONF "@include \"smtp.inc\"\n");
	snprintf(inc, sizeof(inc), "%s/smtp.inc", t.dir);
	ck_assert_ptr_nonnull(fp = fopen(inc, "w"));
	fputs("smtp = {\n\tport = 2525;\n};\n", fp);
	fclose(fp);
	ck_assert_int_eq(conf_load(t.path, &conf, &err), 0);
	ck_assert_int_eq(conf->smtp_port, 2525);
	conf_free(conf);

	/* a syntax error inside the included file names that file */
	ck_assert_ptr_nonnull(fp = fopen(inc, "w"));
	fputs("smtp = {\n\tport = ;\n};\n", fp);
	fclose(fp);
	ck_assert_int_eq(conf_load(t.path, &conf, &err), -1);
	snprintf(want, sizeof(want), "%s:2: syntax error", inc);
	ck_assert_str_eq(err.msg, want);

	/* so does any other error there */
	ck_assert_ptr_nonnull(fp = fopen(inc, "w"));
	fputs("smtp = {\n\tprot = 2525;\n};\n", fp);
	fclose(fp);
	ck_assert_int_eq(conf_load(t.path, &conf, &err), -1);
	snprintf(want, sizeof(want), "%s:2: smtp.prot: unknown setting", inc);
	ck_assert_msg(strncmp(err.msg, want, strlen(want)) == 0,
	    "got %s", err.msg);
	tmpconf_remove(&t);
}
END_TEST

/* --- the sample and the defaults ------------------------------------------ */

static void
assert_defaults(const struct assent_conf *c)
{
	ck_assert_str_eq(c->smtp_host, "127.0.0.1");
	ck_assert_int_eq(c->smtp_port, 25);
	ck_assert_int_eq(c->smtp_starttls, CONF_STARTTLS_REQUIRED);
	ck_assert_str_eq(c->smtp_user, "");
	ck_assert_str_eq(c->smtp_password_file, "");
	ck_assert_str_eq(c->smtp_helo, "");
	ck_assert_str_eq(c->http_listen, "127.0.0.1");
	ck_assert_int_eq(c->http_port, 8025);
	ck_assert_str_eq(c->http_base_url, "");
	ck_assert_str_eq(c->tokens_keys_file, "/etc/assent/keys.conf");
	ck_assert_int_eq(c->tokens_confirm_ttl, 604800);
	ck_assert_int_eq(c->sending_rate, 0);
	ck_assert_int_eq(c->sending_concurrency, 4);
	ck_assert_int_eq(c->sending_batch, 100);
	ck_assert_str_eq(c->log_level, "info");
	ck_assert(!c->log_syslog);
	ck_assert_str_eq(c->daemon_pid_file, "/run/assentd.pid");
	ck_assert_str_eq(c->sender_organisation, "");
	ck_assert_str_eq(c->sender_postal_address, "");
	ck_assert_str_eq(c->sender_from, "");
	ck_assert_str_eq(c->sender_bounce_domain, "");
	ck_assert(c->smtp_tls_verify);
	ck_assert_str_eq(c->smtp_ca_file, "");
	ck_assert_int_eq(c->smtp_timeout, 60);
	ck_assert_int_eq(c->sending_max_attempts, 8);
	ck_assert_int_eq(c->sending_retry_base, 60);
	ck_assert_str_eq(c->sending_domain_limits, "");
	ck_assert_int_eq(c->sending_max_schedule_age, 86400);
}

/* Nothing can be sent with what every message carries unset; the
 * message names the file and each missing setting. */
START_TEST(test_check_sending)
{
	struct assent_conf *conf;
	struct assent_err err;

	expect_ok(MIN_CONF, &conf);
	ck_assert_int_eq(conf_check_sending(conf, &err), -1);
	ck_assert_int_eq(err.code, EX_CONFIG);
	ck_assert_msg(strstr(err.msg, ": nothing can be sent until http.base_url, "
	    "sender.postal_address, sender.bounce_domain are set") != NULL,
	    "%s", err.msg);
	conf_free(conf);
	expect_ok(MIN_CONF "http = { base_url = \"https://n.example.org\"; };\n"
	    "sender = { postal_address = \"1 Road\"; };\n", &conf);
	ck_assert_int_eq(conf_check_sending(conf, &err), -1);
	ck_assert_msg(strstr(err.msg, "until sender.bounce_domain is set") != NULL,
	    "%s", err.msg);
	conf_free(conf);
	expect_ok(MIN_CONF "http = { base_url = \"https://n.example.org\"; };\n"
	    "sender = { postal_address = \"1 Road\"; bounce_domain = \"b.example.org\"; };\n",
	    &conf);
	ck_assert_int_eq(conf_check_sending(conf, &err), 0);
	conf_free(conf);
}
END_TEST

START_TEST(test_defaults)
{
	struct assent_conf *conf;

	expect_ok(MIN_CONF, &conf);
	ck_assert_str_eq(conf->database_dsn, "dbname=t");
	assert_defaults(conf);
	conf_free(conf);
}
END_TEST

START_TEST(test_defaults_partial_group)
{
	struct assent_conf *conf;

	expect_ok(MIN_CONF "smtp = { port = 587; };\nsending = { };\n", &conf);
	ck_assert_int_eq(conf->smtp_port, 587);
	ck_assert_str_eq(conf->smtp_host, "127.0.0.1");
	ck_assert_int_eq(conf->smtp_starttls, CONF_STARTTLS_REQUIRED);
	ck_assert_int_eq(conf->sending_batch, 100);
	conf_free(conf);
}
END_TEST

/* The sample loads, and sets every setting to its default. */
START_TEST(test_sample)
{
	struct assent_conf *sample, *minimal;
	struct assent_err err;
	char *a, *b;
	const char *path = sample_path();

	ck_assert_msg(conf_load(path, &sample, &err) == 0, "%s", err.msg);
	ck_assert_str_eq(sample->path, path);
	ck_assert_str_eq(sample->database_dsn,
	    "host=/run/postgresql dbname=assent");
	assert_defaults(sample);
	expect_ok("database = { dsn = \"host=/run/postgresql dbname=assent\"; };",
	    &minimal);
	a = dump_to_string(sample, 0);
	b = dump_to_string(minimal, 0);
	ck_assert_str_eq(a, b);
	free(a);
	free(b);
	conf_free(sample);
	conf_free(minimal);
}
END_TEST

START_TEST(test_values_stored)
{
	struct assent_conf *c;

	expect_ok("database = { dsn = \"host=db port=5433\"; };\n"
	    "smtp = { host = \"relay.example.net\"; starttls = \"off\";"
	    " user = \"u\"; password_file = \"/nonexistent/pw\";"
	    " helo = \"mx.example.net\"; };\n"
	    "log = { level = \"debug\"; syslog = true; };\n"
	    "http = { listen = \"::1\"; };\n"
	    "sender = { from = \"Info@Example.NET\"; };\n", &c);
	ck_assert_str_eq(c->database_dsn, "host=db port=5433");
	ck_assert_str_eq(c->smtp_host, "relay.example.net");
	ck_assert_int_eq(c->smtp_starttls, CONF_STARTTLS_OFF);
	ck_assert_str_eq(c->smtp_user, "u");
	ck_assert_str_eq(c->smtp_helo, "mx.example.net");
	ck_assert_str_eq(c->log_level, "debug");
	ck_assert(c->log_syslog);
	ck_assert_str_eq(c->http_listen, "::1");
	ck_assert_str_eq(c->sender_from, "Info@Example.NET");
	conf_free(c);
}
END_TEST

START_TEST(test_starttls_names)
{
	static const struct { const char *name; enum conf_starttls value; }
	    names[] = {
		{ "off", CONF_STARTTLS_OFF },
		{ "opportunistic", CONF_STARTTLS_OPPORTUNISTIC },
		{ "required", CONF_STARTTLS_REQUIRED },
	};
	struct assent_conf *conf;
	char text[128];
	size_t i;

	for (i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
		snprintf(text, sizeof(text), MIN_CONF
		    "smtp = { starttls = \"%s\"; };\n", names[i].name);
		expect_ok(text, &conf);
		ck_assert_int_eq(conf->smtp_starttls, names[i].value);
		conf_free(conf);
	}
}
END_TEST

/* --- secret files ------------------------------------------------------ */

static const struct secret_case {
	const char *setting;
	int mode;               /* 0: missing; -1: a directory */
	const char *want;       /* NULL: accepted */
} secret_cases[] = {
	{ "tokens.keys_file", 0600, NULL },
	{ "tokens.keys_file", 0400, NULL },
	{ "tokens.keys_file", 0640,
	  "tokens.keys_file: SECRET is readable by group or others "
	  "(mode 0640); chmod 600 it" },
	{ "tokens.keys_file", 0604,
	  "tokens.keys_file: SECRET is readable by group or others "
	  "(mode 0604); chmod 600 it" },
	{ "smtp.password_file", 0644,
	  "smtp.password_file: SECRET is readable by group or others "
	  "(mode 0644); chmod 600 it" },
	{ "smtp.password_file", 0620,
	  "smtp.password_file: SECRET is writable by group or others "
	  "(mode 0620)" },
	{ "smtp.password_file", 0601,
	  "smtp.password_file: SECRET is accessible by group or others "
	  "(mode 0601)" },
	{ "smtp.password_file", 0600, NULL },
	{ "smtp.password_file", 0, NULL },
	{ "tokens.keys_file", 0, NULL },
	{ "tokens.keys_file", -1,
	  "tokens.keys_file: SECRET is not a regular file" },
};

START_TEST(test_secret_file)
{
	const struct secret_case *sc = &secret_cases[_i];
	struct assent_conf *conf = NULL;
	struct assent_err err;
	struct tmpconf t;
	char secret[160], text[512], want[512];
	const char *dot = strchr(sc->setting, '.');
	FILE *fp;

	tmpconf_write(&t, "");
	snprintf(secret, sizeof(secret), "%s/secret", t.dir);
	if (sc->mode > 0) {
		ck_assert_ptr_nonnull(fp = fopen(secret, "w"));
		fputs("s3cret\n", fp);
		fclose(fp);
		ck_assert_int_eq(chmod(secret, (mode_t)sc->mode), 0);
	} else if (sc->mode < 0)
		ck_assert_int_eq(mkdir(secret, 0700), 0);
	snprintf(text, sizeof(text), MIN_CONF "\n%.*s = {\n\t%s = \"%s\";\n};\n",
	    (int)(dot - sc->setting), sc->setting, dot + 1, secret);
	ck_assert_ptr_nonnull(fp = fopen(t.path, "w"));
	fputs(text, fp);
	fclose(fp);

	if (sc->want == NULL) {
		ck_assert_msg(conf_load(t.path, &conf, &err) == 0, "%s", err.msg);
		conf_free(conf);
		/* the function on its own agrees */
		ck_assert_int_eq(conf_check_secret_file(secret, sc->setting,
		    &err), 0);
	} else {
		ck_assert_int_eq(conf_load(t.path, &conf, &err), -1);
		ck_assert_int_eq(err.code, EX_CONFIG);
		snprintf(want, sizeof(want), "%s:4: ", t.path);
		ck_assert_msg(strncmp(err.msg, want, strlen(want)) == 0,
		    "got %s", err.msg);
		ck_assert_int_eq(conf_check_secret_file(secret, sc->setting,
		    &err), -1);
		/* SECRET stands for the path */
		snprintf(want, sizeof(want), "%.*s%s%s",
		    (int)(strstr(sc->want, "SECRET") - sc->want), sc->want,
		    secret, strstr(sc->want, "SECRET") + 6);
		ck_assert_msg(strncmp(err.msg, want, strlen(want)) == 0,
		    "expected \"%s\", got \"%s\"", want, err.msg);
	}
	tmpconf_remove(&t);
}
END_TEST

/* --- dumps ------------------------------------------------------------- */

#define FULL_CONF \
	"database = { dsn = \"host=db.example.net dbname=news user=assent\"; };\n" \
	"smtp = { host = \"relay.example.net\"; port = 587;" \
	" starttls = \"opportunistic\"; user = \"mailer\";" \
	" password_file = \"/nonexistent/smtp.pw\"; helo = \"mx.example.net\"; };\n" \
	"http = { listen = \"0.0.0.0\"; port = 8080;" \
	" base_url = \"http://localhost:8080/news\"; };\n" \
	"tokens = { keys_file = \"/nonexistent/keys\"; confirm_ttl = 3600; };\n" \
	"sending = { rate = 50; concurrency = 8; batch = 500; };\n" \
	"log = { level = \"warn\"; syslog = true; };\n" \
	"daemon = { pid_file = \"/tmp/assentd.pid\"; };\n" \
	"sender = { organisation = \"Soci\xc3\xa9t\xc3\xa9 \\\"Quote\\\" \\\\ Co\";" \
	" postal_address = \"2 Rue de l'Exemple, 75000 Paris\";" \
	" from = \"newsletter@example.net\"; bounce_domain = \"b.example.net\"; };\n"

START_TEST(test_dump_round_trip)
{
	struct assent_conf *first, *second;
	char *a, *b;

	expect_ok(FULL_CONF, &first);
	ck_assert_str_eq(first->sender_organisation,
	    "Soci\xc3\xa9t\xc3\xa9 \"Quote\" \\ Co");
	a = dump_to_string(first, 0);
	expect_ok(a, &second);
	b = dump_to_string(second, 0);
	ck_assert_str_eq(a, b);
	ck_assert_str_eq(second->sender_organisation, first->sender_organisation);
	ck_assert_str_eq(second->database_dsn, first->database_dsn);
	ck_assert_int_eq(second->smtp_port, 587);
	ck_assert_int_eq(second->smtp_starttls, CONF_STARTTLS_OPPORTUNISTIC);
	ck_assert_int_eq(second->tokens_confirm_ttl, 3600);
	ck_assert_int_eq(second->sending_batch, 500);
	ck_assert(second->log_syslog);
	/* grouped as in the sample */
	ck_assert_ptr_nonnull(strstr(a, "smtp = {\n"));
	ck_assert_ptr_nonnull(strstr(a, "\tport = 587;\n"));
	ck_assert_ptr_nonnull(strstr(a, "\tstarttls = \"opportunistic\";\n"));
	ck_assert_ptr_nonnull(strstr(a, "\tsyslog = true;\n"));
	free(a);
	free(b);
	conf_free(first);
	conf_free(second);
}
END_TEST

START_TEST(test_dump_json)
{
	struct assent_conf *conf;
	json_error_t jerr;
	json_t *root, *smtp;
	char *text;

	expect_ok(FULL_CONF, &conf);
	text = dump_to_string(conf, 1);
	root = json_loads(text, 0, &jerr);
	ck_assert_msg(root != NULL, "bad JSON: %s in %s", jerr.text, text);
	ck_assert(json_is_object(root));
	ck_assert_int_eq(json_object_size(root), 11);
	ck_assert_ptr_nonnull(smtp = json_object_get(root, "smtp"));
	ck_assert_int_eq(json_integer_value(json_object_get(smtp, "port")), 587);
	ck_assert_str_eq(json_string_value(json_object_get(smtp, "starttls")),
	    "opportunistic");
	ck_assert_str_eq(json_string_value(json_object_get(smtp,
	    "password_file")), "/nonexistent/smtp.pw");
	ck_assert(json_is_true(json_object_get(json_object_get(root, "log"),
	    "syslog")));
	ck_assert_int_eq(json_integer_value(json_object_get(
	    json_object_get(root, "tokens"), "confirm_ttl")), 3600);
	ck_assert_str_eq(json_string_value(json_object_get(
	    json_object_get(root, "sender"), "organisation")),
	    "Soci\xc3\xa9t\xc3\xa9 \"Quote\" \\ Co");
	json_decref(root);
	free(text);
	conf_free(conf);
}
END_TEST

static const struct mask_case {
	const char *dsn;        /* as written in the file (libconfig escapes) */
	const char *shown;      /* as dumped; NULL: rebuilt with the secret masked */
} mask_cases[] = {
	{ "host=db password=s3cret dbname=news", NULL },
	{ "password=s3cret", NULL },
	{ "host=db password = 's3 cr\\\\'et' dbname=news", NULL },
	{ "host=db sslpassword=s3cret dbname=news", NULL },
	{ "postgresql://assent:s3cret@db.example.net:5432/news", NULL },
	{ "postgres://assent@db/news?sslmode=require&password=s3cret", NULL },
	{ "dbname='host=db password=s3cret'", NULL },
	{ "dbname=postgresql://u:s3cret@db/news", NULL },
	{ "host=db dbname=news", "host=db dbname=news" },
	{ "postgresql://db/news", "postgresql://db/news" },
	{ "news", "news" },
};

START_TEST(test_dsn_masked)
{
	const struct mask_case *mc = &mask_cases[_i];
	struct assent_conf *conf;
	char text[512], want[512], *dump, *json;

	snprintf(text, sizeof(text), "database = { dsn = \"%s\"; };\n", mc->dsn);
	expect_ok(text, &conf);
	dump = dump_to_string(conf, 0);
	if (mc->shown != NULL)
		snprintf(want, sizeof(want), "\tdsn = \"%s\";\n", mc->shown);
	else
		snprintf(want, sizeof(want), "********");
	ck_assert_msg(strstr(dump, want) != NULL, "want %s in %s", want, dump);
	ck_assert_ptr_null(strstr(dump, "s3"));
	json = dump_to_string(conf, 1);
	ck_assert_ptr_null(strstr(json, "s3"));
	/* the loaded value itself is intact */
	ck_assert_int_eq(strstr(conf->database_dsn, "s3") != NULL,
	    strstr(mc->dsn, "s3") != NULL);
	free(dump);
	free(json);
	conf_free(conf);
}
END_TEST

/* A DSN libpq would refuse, and a password in a file others can read. */
START_TEST(test_dsn_refusals)
{
	struct assent_err err;
	struct assent_conf *conf = NULL;
	struct tmpconf t;

	tmpconf_write(&t, "database = { dsn = \"host=db 'password=s3cret'\"; };\n");
	ck_assert_int_eq(conf_load(t.path, &conf, &err), -1);
	ck_assert_ptr_nonnull(strstr(err.msg, "not a connection string libpq understands"));
	ck_assert_ptr_null(strstr(err.msg, "s3"));
	tmpconf_remove(&t);
	tmpconf_write(&t, "database = { dsn = \"host=db password=s3cret\"; };\n");
	ck_assert_int_eq(chmod(t.path, 0644), 0);
	ck_assert_int_eq(conf_load(t.path, &conf, &err), -1);
	ck_assert_int_eq(err.code, EX_CONFIG);
	ck_assert_ptr_nonnull(strstr(err.msg, "readable by group or others"));
	ck_assert_ptr_nonnull(strstr(err.msg, ":1:"));
	ck_assert_int_eq(chmod(t.path, 0600), 0);
	ck_assert_int_eq(conf_load(t.path, &conf, &err), 0);
	conf_free(conf);
	tmpconf_remove(&t);
}
END_TEST

/* --- conf_default_path ---------------------------------------------------- */

START_TEST(test_default_path)
{
	unsetenv("ASSENT_CONFIG");
	ck_assert_str_eq(conf_default_path(), CONF_DEFAULT_PATH);
	ck_assert_str_eq(conf_default_path(), "/etc/assent/assent.conf");
	setenv("ASSENT_CONFIG", "/srv/assent/test.conf", 1);
	ck_assert_str_eq(conf_default_path(), "/srv/assent/test.conf");
	setenv("ASSENT_CONFIG", "", 1);
	ck_assert_str_eq(conf_default_path(), CONF_DEFAULT_PATH);
	unsetenv("ASSENT_CONFIG");
}
END_TEST

START_TEST(test_free_null)
{
	conf_free(NULL);
}
END_TEST

#define N(a) ((int)(sizeof(a) / sizeof((a)[0])))

static Suite *
conf_suite(void)
{
	Suite *s = suite_create("conf");
	TCase *tc;

	tc = tcase_create("load");
	tcase_add_test(tc, test_defaults);
	tcase_add_test(tc, test_check_sending);
	tcase_add_test(tc, test_defaults_partial_group);
	tcase_add_test(tc, test_sample);
	tcase_add_test(tc, test_values_stored);
	tcase_add_test(tc, test_starttls_names);
	tcase_add_test(tc, test_range_values_stored);
	tcase_add_test(tc, test_missing_file);
	tcase_add_test(tc, test_directory_as_file);
	tcase_add_test(tc, test_unreadable_file);
	tcase_add_test(tc, test_include);
	tcase_add_test(tc, test_free_null);
	tcase_add_test(tc, test_default_path);
	suite_add_tcase(s, tc);

	tc = tcase_create("errors");
	tcase_add_loop_test(tc, test_error, 0, N(error_cases));
	tcase_add_loop_test(tc, test_range, 0, N(range_cases));
	tcase_add_loop_test(tc, test_literal, 0, N(literal_cases));
	tcase_add_test(tc, test_dsn_error_hides_value);
	tcase_add_loop_test(tc, test_secret_file, 0, N(secret_cases));
	suite_add_tcase(s, tc);

	tc = tcase_create("dump");
	tcase_add_test(tc, test_dump_round_trip);
	tcase_add_test(tc, test_dump_json);
	tcase_add_loop_test(tc, test_dsn_masked, 0, N(mask_cases));
	tcase_add_test(tc, test_dsn_refusals);
	suite_add_tcase(s, tc);
	return s;
}

int
main(void)
{
	return testhelp_run_suite(conf_suite());
}

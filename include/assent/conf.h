/*
 * conf: assent's configuration, read from a libconfig file.
 *
 * One table (in conf.c) drives every setting: its path, type, default,
 * range, whether it is required and whether it names a secret file.
 * Loading catches what libconfig lets through silently: unknown
 * settings, values of the wrong type, integers out of range (including
 * those libconfig truncates). Every error names file:line and the
 * setting. Only database.dsn is required; assent.conf(5) documents the
 * rest.
 *
 * Secret files (tokens.keys_file, smtp.password_file) that exist are
 * refused when readable or writable by group or others. A secret file
 * that does not exist is not an error at load time: the module that
 * needs it reports that when it opens it.
 *
 * Memory: conf_load() returns a struct the caller frees with
 * conf_free(); all strings inside belong to it.
 */
#ifndef ASSENT_CONF_H
#define ASSENT_CONF_H

#include <stdbool.h>
#include <stdio.h>
#include "assent/err.h"

#define CONF_DEFAULT_PATH "/etc/assent/assent.conf"

enum conf_starttls { CONF_STARTTLS_OFF, CONF_STARTTLS_OPPORTUNISTIC, CONF_STARTTLS_REQUIRED };

struct assent_conf {
	char *path;                     /* the file it was read from */

	char *database_dsn;

	char *smtp_host;
	int   smtp_port;
	enum conf_starttls smtp_starttls;
	char *smtp_user;
	char *smtp_password_file;
	char *smtp_helo;
	bool  smtp_tls_verify;
	char *smtp_ca_file;             /* "" for the system's CAs */
	int   smtp_timeout;             /* seconds */

	char *http_listen;
	int   http_port;
	char *http_base_url;
	char *http_admin_listen;
	int   http_admin_port;          /* 0: no admin server */
	char *http_trusted_proxies;     /* comma-separated IP literals; "" none */
	char *http_page_template;       /* file; "" for the built-in page */

	char *tokens_keys_file;
	long  tokens_confirm_ttl;       /* seconds */

	bool  suppress_gmail_mailbox_key;

	int   sending_rate;             /* messages per second, 0 = unlimited */
	int   sending_concurrency;
	int   sending_batch;
	int   sending_max_attempts;
	int   sending_retry_base;       /* seconds */
	char *sending_domain_limits;    /* throttle.h's syntax; "" for none */
	long  sending_max_schedule_age; /* seconds */

	int   bounce_soft_limit;        /* soft bounces that suppress for a while */
	long  bounce_soft_span;         /* seconds, first to last of them at least */
	long  bounce_soft_suppress_for; /* seconds */
	long  bounce_token_max_age;     /* seconds a report may come after sending */

	char *log_level;
	bool  log_syslog;

	char *daemon_pid_file;

	char *sender_organisation;
	char *sender_postal_address;
	char *sender_from;
	char *sender_bounce_domain;

	char *signup_from;              /* "" for sender_from */
	char *signup_confirm_subject;   /* a template (render.h) */
	char *signup_confirm_text;      /* file; "" for the built-in text */
	char *signup_confirm_html;      /* file; "" for none */
};

/* The path to use when no -c was given: $ASSENT_CONFIG if set and not
 * empty, else CONF_DEFAULT_PATH. Returns a borrowed string. */
const char *conf_default_path(void);

/* Read and validate path. On failure returns -1 with err->code
 * EX_CONFIG (or EX_NOINPUT when the file cannot be read) and a message
 * "FILE:LINE: SETTING: problem". */
int conf_load(const char *path, struct assent_conf **conf_r, struct assent_err *err);

void conf_free(struct assent_conf *conf);

/* What every message carries has no default: 0 when http.base_url,
 * sender.postal_address and sender.bounce_domain are set, else -1 with
 * EX_CONFIG naming the file and the missing settings. Every path that
 * builds mail checks this first. */
int conf_check_sending(const struct assent_conf *conf, struct assent_err *err);

/* Refuse a secret file that is not a regular file or that group or
 * others may access (mode & 077). Returns 0 when the file is private,
 * does not exist, or cannot be looked at (EACCES: then it cannot be read
 * either). The message is "SETTING: PATH is readable by group or others
 * (mode 0644); chmod 600 it", without file:line: conf_load() adds it. */
int conf_check_secret_file(const char *path, const char *setting, struct assent_err *err);

/* Print every effective setting in libconfig syntax, grouped as in the
 * sample file, each under its one-line description as a comment;
 * conf_load() reads the output back. Secret values are masked as
 * "********", and so is a password inside database.dsn (which then does
 * not read back as the same DSN). */
void conf_dump(const struct assent_conf *conf, FILE *out);

/* The same as one JSON object, nested by group ({"smtp": {"port": 25,
 * ...}, ...}), followed by a newline. */
void conf_dump_json(const struct assent_conf *conf, FILE *out);

#endif

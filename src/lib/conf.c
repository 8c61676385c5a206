/* conf: assent's configuration, read from a libconfig file; see
 * include/assent/conf.h and assent.conf(5). */
#include <sys/stat.h>

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <jansson.h>
#include <libconfig.h>
#include <limits.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "assent/addr.h"
#include "assent/conf.h"
#include "assent/db.h"
#include "assent/log.h"
#include "assent/mime.h"
#include "assent/text.h"
#include "assent/throttle.h"
#include "assent/xmalloc.h"

#define CONF_STRING_MAX 4096
#define CONF_MASK       "********"

enum conf_type { CONF_STRING, CONF_INT, CONF_LONG, CONF_BOOL, CONF_ENUM };

#define CONF_REQUIRED    0x01   /* must be present, and not empty */
#define CONF_NONEMPTY    0x02   /* may be left out, but not set to "" */
#define CONF_SECRET_FILE 0x04   /* names a file only its owner may read */
#define CONF_SECRET      0x08   /* the value itself is secret: masked */
#define CONF_DSN         0x10   /* a libpq DSN: its password is masked */

/* A validator for a (non-empty) string value: 0, or -1 with a problem
 * written to why. */
typedef int (*conf_check_fn)(const char *value, char *why, size_t whylen);

struct conf_setting {
	const char *path;               /* "group.name" */
	enum conf_type type;
	size_t offset;                  /* into struct assent_conf */
	const char *def_string;         /* CONF_STRING, CONF_ENUM */
	long long def_number;           /* CONF_INT, CONF_LONG, CONF_BOOL */
	long long min, max;             /* CONF_INT, CONF_LONG */
	unsigned flags;
	const char *const *names;       /* CONF_ENUM: value i is names[i] */
	conf_check_fn check;
	const char *description;
};

static int conf_check_level(const char *, char *, size_t);
static int conf_check_dsn(const char *, char *, size_t);
static int conf_check_url(const char *, char *, size_t);
static int conf_check_from(const char *, char *, size_t);
static int conf_check_domain(const char *, char *, size_t);
static int conf_check_listen(const char *, char *, size_t);
static int conf_check_absolute(const char *, char *, size_t);
static int conf_check_domain_limits(const char *, char *, size_t);
static int conf_check_proxies(const char *, char *, size_t);

static const char *const conf_starttls_names[] = {
	[CONF_STARTTLS_OFF] = "off",
	[CONF_STARTTLS_OPPORTUNISTIC] = "opportunistic",
	[CONF_STARTTLS_REQUIRED] = "required",
	NULL
};

_Static_assert(sizeof(enum conf_starttls) == sizeof(int),
    "enum settings are stored as int");

#define OFF(field) offsetof(struct assent_conf, field)

/*
 * Every setting, grouped: the dump prints a group each time the prefix
 * changes, so the settings of one group must stay together. Keep
 * man/assent.conf.5 and conf/assent.conf in step with this table.
 */
static const struct conf_setting conf_settings[] = {
	{ .path = "database.dsn", .type = CONF_STRING, .offset = OFF(database_dsn),
	  .flags = CONF_REQUIRED | CONF_DSN,        /* no default */
	  .check = conf_check_dsn,
	  .description = "libpq connection string of the assent database" },

	{ .path = "smtp.host", .type = CONF_STRING, .offset = OFF(smtp_host),
	  .def_string = "127.0.0.1", .flags = CONF_NONEMPTY,
	  .description = "host name or address of the SMTP relay" },
	{ .path = "smtp.port", .type = CONF_INT, .offset = OFF(smtp_port),
	  .def_number = 25, .min = 1, .max = 65535,
	  .description = "TCP port of the SMTP relay" },
	{ .path = "smtp.starttls", .type = CONF_ENUM, .offset = OFF(smtp_starttls),
	  .def_string = "required", .names = conf_starttls_names,
	  .description = "STARTTLS policy: required, opportunistic or off" },
	{ .path = "smtp.user", .type = CONF_STRING, .offset = OFF(smtp_user),
	  .def_string = "",
	  .description = "SMTP AUTH user name; empty for no authentication" },
	{ .path = "smtp.password_file", .type = CONF_STRING,
	  .offset = OFF(smtp_password_file), .def_string = "",
	  .flags = CONF_SECRET_FILE, .check = conf_check_absolute,
	  .description = "file holding the SMTP AUTH password (mode 0600)" },
	{ .path = "smtp.helo", .type = CONF_STRING, .offset = OFF(smtp_helo),
	  .def_string = "",
	  .description = "name sent in EHLO; empty for the system host name" },
	{ .path = "smtp.tls_verify", .type = CONF_BOOL, .offset = OFF(smtp_tls_verify),
	  .def_number = 1,
	  .description = "verify the relay's TLS certificate (turn off only "
	  "for a relay on this host)" },
	{ .path = "smtp.ca_file", .type = CONF_STRING, .offset = OFF(smtp_ca_file),
	  .def_string = "", .check = conf_check_absolute,
	  .description = "file of CA certificates (PEM) the relay's certificate "
	  "must chain to; empty for the system's" },
	{ .path = "smtp.timeout", .type = CONF_INT, .offset = OFF(smtp_timeout),
	  .def_number = 60, .min = 1, .max = 3600,
	  .description = "seconds to wait for the relay at each SMTP step" },

	{ .path = "http.listen", .type = CONF_STRING, .offset = OFF(http_listen),
	  .def_string = "127.0.0.1", .flags = CONF_NONEMPTY,
	  .check = conf_check_listen,
	  .description = "numeric IPv4 or IPv6 address the web server binds" },
	{ .path = "http.port", .type = CONF_INT, .offset = OFF(http_port),
	  .def_number = 8025, .min = 1, .max = 65535,
	  .description = "TCP port the web server listens on" },
	{ .path = "http.base_url", .type = CONF_STRING, .offset = OFF(http_base_url),
	  .def_string = "", .check = conf_check_url,
	  .description = "public URL of the web server, used in links in mail" },

	{ .path = "http.admin_listen", .type = CONF_STRING,
	  .offset = OFF(http_admin_listen), .def_string = "127.0.0.1",
	  .flags = CONF_NONEMPTY, .check = conf_check_listen,
	  .description = "numeric IPv4 or IPv6 address of the admin server "
	  "(/metrics); keep it private" },
	{ .path = "http.admin_port", .type = CONF_INT, .offset = OFF(http_admin_port),
	  .def_number = 8026, .min = 0, .max = 65535,
	  .description = "TCP port of the admin server (/metrics); 0 for none" },
	{ .path = "http.trusted_proxies", .type = CONF_STRING,
	  .offset = OFF(http_trusted_proxies), .def_string = "",
	  .check = conf_check_proxies,
	  .description = "comma-separated IP addresses of reverse proxies whose "
	  "X-Forwarded-For names the client; empty: none" },
	{ .path = "http.page_template", .type = CONF_STRING,
	  .offset = OFF(http_page_template), .def_string = "",
	  .check = conf_check_absolute,
	  .description = "HTML template every public page is rendered in "
	  "(fields title, content, list, sender.*); empty for the built-in one" },

	{ .path = "tokens.keys_file", .type = CONF_STRING,
	  .offset = OFF(tokens_keys_file), .def_string = "/etc/assent/keys.conf",
	  .flags = CONF_NONEMPTY | CONF_SECRET_FILE, .check = conf_check_absolute,
	  .description = "file holding the keys that sign tokens (mode 0600)" },
	{ .path = "tokens.confirm_ttl", .type = CONF_LONG,
	  .offset = OFF(tokens_confirm_ttl), .def_number = 604800,
	  .min = 60, .max = 31536000,
	  .description = "seconds a confirmation link stays valid" },

	{ .path = "suppress.gmail_mailbox_key", .type = CONF_BOOL,
	  .offset = OFF(suppress_gmail_mailbox_key), .def_number = 0,
	  .description = "a suppressed gmail.com or googlemail.com address also "
	  "blocks its forms with other dots and +tags" },

	{ .path = "sending.rate", .type = CONF_INT, .offset = OFF(sending_rate),
	  .def_number = 0, .min = 0, .max = 1000000,
	  .description = "messages per second at most; 0 for no limit" },
	{ .path = "sending.concurrency", .type = CONF_INT,
	  .offset = OFF(sending_concurrency), .def_number = 4, .min = 1, .max = 256,
	  .description = "SMTP connections used at the same time" },
	{ .path = "sending.batch", .type = CONF_INT, .offset = OFF(sending_batch),
	  .def_number = 100, .min = 1, .max = 10000,
	  .description = "messages claimed and sent per SMTP connection" },
	{ .path = "sending.max_attempts", .type = CONF_INT,
	  .offset = OFF(sending_max_attempts), .def_number = 8, .min = 1, .max = 100,
	  .description = "attempts for a message the relay defers (4xx) before "
	  "it counts as failed" },
	{ .path = "sending.retry_base", .type = CONF_INT,
	  .offset = OFF(sending_retry_base), .def_number = 60, .min = 1, .max = 86400,
	  .description = "seconds before the first retry of a deferred message; "
	  "doubled for each further attempt, at most an hour" },
	{ .path = "sending.domain_limits", .type = CONF_STRING,
	  .offset = OFF(sending_domain_limits), .def_string = "",
	  .check = conf_check_domain_limits,
	  .description = "per destination domain: DOMAIN=CONNECTIONS/PER_MINUTE, "
	  "comma-separated, 0 for no limit, * for every other domain" },
	{ .path = "sending.max_schedule_age", .type = CONF_LONG,
	  .offset = OFF(sending_max_schedule_age), .def_number = 86400,
	  .min = 60, .max = 31536000,
	  .description = "seconds past its time after which a scheduled campaign "
	  "is started only if scheduled with --force" },

	{ .path = "bounce.soft_limit", .type = CONF_INT,
	  .offset = OFF(bounce_soft_limit), .def_number = 3, .min = 1, .max = 1000,
	  .description = "soft bounces of one address that suppress it for a while "
	  "(with bounce.soft_span)" },
	{ .path = "bounce.soft_span", .type = CONF_LONG,
	  .offset = OFF(bounce_soft_span), .def_number = 14 * 86400,
	  .min = 0, .max = 31536000,
	  .description = "seconds at least between the first and the last of "
	  "those soft bounces" },
	{ .path = "bounce.soft_suppress_for", .type = CONF_LONG,
	  .offset = OFF(bounce_soft_suppress_for), .def_number = 90 * 86400,
	  .min = 3600, .max = 315360000,
	  .description = "seconds a soft-bounce-limit suppression lasts" },
	{ .path = "bounce.token_max_age", .type = CONF_LONG,
	  .offset = OFF(bounce_token_max_age), .def_number = 30 * 86400,
	  .min = 86400, .max = 31536000,
	  .description = "seconds after sending during which a report about a "
	  "message is acted on (older ones are stored, nothing done)" },

	{ .path = "log.level", .type = CONF_STRING, .offset = OFF(log_level),
	  .def_string = "info", .flags = CONF_NONEMPTY, .check = conf_check_level,
	  .description = "least severe level logged: error, warn, info or debug" },
	{ .path = "log.syslog", .type = CONF_BOOL, .offset = OFF(log_syslog),
	  .def_number = 0,
	  .description = "log to syslog (facility mail) instead of stderr" },

	{ .path = "daemon.pid_file", .type = CONF_STRING,
	  .offset = OFF(daemon_pid_file), .def_string = "/run/assentd.pid",
	  .flags = CONF_NONEMPTY, .check = conf_check_absolute,
	  .description = "file where assentd writes its process id" },

	{ .path = "sender.organisation", .type = CONF_STRING,
	  .offset = OFF(sender_organisation), .def_string = "",
	  .description = "name of the sender, shown in every message" },
	{ .path = "sender.postal_address", .type = CONF_STRING,
	  .offset = OFF(sender_postal_address), .def_string = "",
	  .description = "postal address of the sender, shown in every message" },
	{ .path = "sender.from", .type = CONF_STRING, .offset = OFF(sender_from),
	  .def_string = "",
	  .check = conf_check_from,
	  .description = "address in the From header of every message" },
	{ .path = "sender.bounce_domain", .type = CONF_STRING,
	  .offset = OFF(sender_bounce_domain), .def_string = "",
	  .check = conf_check_domain,
	  .description = "domain of the envelope sender (VERP) that gets bounces" },

	{ .path = "signup.from", .type = CONF_STRING, .offset = OFF(signup_from),
	  .def_string = "", .check = conf_check_from,
	  .description = "From of confirmation requests; empty for sender.from" },
	{ .path = "signup.confirm_subject", .type = CONF_STRING,
	  .offset = OFF(signup_confirm_subject),
	  .def_string = "Please confirm your subscription to {{ list }}",
	  .flags = CONF_NONEMPTY,
	  .description = "subject template of confirmation requests" },
	{ .path = "signup.confirm_text", .type = CONF_STRING,
	  .offset = OFF(signup_confirm_text), .def_string = "",
	  .check = conf_check_absolute,
	  .description = "text template file of confirmation requests (must hold "
	  "{{ confirm_url }}); empty for the built-in one" },
	{ .path = "signup.confirm_html", .type = CONF_STRING,
	  .offset = OFF(signup_confirm_html), .def_string = "",
	  .check = conf_check_absolute,
	  .description = "HTML template file of confirmation requests; empty "
	  "for text only" },
};

#define CONF_NSETTINGS (sizeof(conf_settings) / sizeof(conf_settings[0]))

/* What conf_load() carries around while it reads one file. */
struct conf_loader {
	config_t cfg;
	const char *file;               /* the file named by the caller */
	char *dir;                      /* its directory, for @include */
	struct assent_conf *conf;
	/* where each setting was read; NULL when the default was used */
	const config_setting_t *where[CONF_NSETTINGS];
};

/* --- the table --------------------------------------------------------- */

static const char *
conf_leaf(const char *path)
{
	return strchr(path, '.') + 1;
}

static size_t
conf_group_len(const char *path)
{
	return (size_t)(strchr(path, '.') - path);
}

static int
conf_is_group(const char *name)
{
	size_t i, len = strlen(name);

	for (i = 0; i < CONF_NSETTINGS; i++)
		if (conf_group_len(conf_settings[i].path) == len &&
		    strncmp(conf_settings[i].path, name, len) == 0)
			return 1;
	return 0;
}

static const struct conf_setting *
conf_find(const char *path)
{
	size_t i;

	for (i = 0; i < CONF_NSETTINGS; i++)
		if (strcmp(conf_settings[i].path, path) == 0)
			return &conf_settings[i];
	return NULL;
}

static char **
conf_string_field(const struct assent_conf *conf, const struct conf_setting *s)
{
	return (char **)((char *)conf + s->offset);
}

static void
conf_store_number(struct assent_conf *conf, const struct conf_setting *s,
    long long value)
{
	char *field = (char *)conf + s->offset;

	switch (s->type) {
	case CONF_INT:
	case CONF_ENUM:
		*(int *)field = (int)value;
		break;
	case CONF_LONG:
		*(long *)field = (long)value;
		break;
	case CONF_BOOL:
		*(bool *)field = value != 0;
		break;
	case CONF_STRING:
		abort();
	}
}

static long long
conf_fetch_number(const struct assent_conf *conf, const struct conf_setting *s)
{
	const char *field = (const char *)conf + s->offset;

	switch (s->type) {
	case CONF_INT:
	case CONF_ENUM:
		return *(const int *)field;
	case CONF_LONG:
		return *(const long *)field;
	case CONF_BOOL:
		return *(const bool *)field;
	case CONF_STRING:
		break;
	}
	abort();
}

static int
conf_enum_index(const struct conf_setting *s, const char *value)
{
	int i;

	for (i = 0; s->names[i] != NULL; i++)
		if (strcmp(s->names[i], value) == 0)
			return i;
	return -1;
}

/* "a, b or c" into buf. */
static void
conf_enum_list(const struct conf_setting *s, char *buf, size_t len)
{
	size_t used = 0;
	int i;

	buf[0] = '\0';
	for (i = 0; s->names[i] != NULL && used < len; i++)
		used += (size_t)snprintf(buf + used, len - used, "%s%s",
		    i == 0 ? "" : s->names[i + 1] == NULL ? " or " : ", ",
		    s->names[i]);
}

/* --- suggestions for misspelt names ------------------------------------ */

#define CONF_NAME_MAX 64

/* Edit distance, ignoring case, counting a swap of two neighbours as
 * one edit. */
static size_t
conf_distance(const char *a, const char *b)
{
	size_t d[CONF_NAME_MAX + 1][CONF_NAME_MAX + 1];
	size_t la = strlen(a), lb = strlen(b), i, j, best;

	if (la > CONF_NAME_MAX || lb > CONF_NAME_MAX)
		return SIZE_MAX;
	for (i = 0; i <= la; i++)
		d[i][0] = i;
	for (j = 0; j <= lb; j++)
		d[0][j] = j;
	for (i = 1; i <= la; i++) {
		for (j = 1; j <= lb; j++) {
			best = d[i - 1][j - 1] + (tolower((unsigned char)a[i - 1]) !=
			    tolower((unsigned char)b[j - 1]));
			if (d[i - 1][j] + 1 < best)
				best = d[i - 1][j] + 1;
			if (d[i][j - 1] + 1 < best)
				best = d[i][j - 1] + 1;
			if (i > 1 && j > 1 && a[i - 1] == b[j - 2] &&
			    a[i - 2] == b[j - 1] && d[i - 2][j - 2] + 1 < best)
				best = d[i - 2][j - 2] + 1;
			d[i][j] = best;
		}
	}
	return d[la][lb];
}

/*
 * " (did you mean X?)" into buf, or "" when nothing is close. For a
 * group the candidates are the groups; for a setting, the full paths,
 * and a setting of the same name in another group (or at top level)
 * wins: that is a setting put in the wrong place.
 */
static void
conf_suggest(const char *name, int want_group, char *buf, size_t len)
{
	char candidate[CONF_NAME_MAX + 1];
	const char *best = NULL, *path, *dot = strchr(name, '.');
	const char *leaf = dot != NULL ? dot + 1 : name;
	size_t i, dist, best_dist = 3;

	buf[0] = '\0';
	for (i = 0; i < CONF_NSETTINGS; i++) {
		path = conf_settings[i].path;
		if (want_group) {
			snprintf(candidate, sizeof(candidate), "%.*s",
			    (int)conf_group_len(path), path);
			dist = conf_distance(name, candidate);
		} else if (strcmp(leaf, conf_leaf(path)) == 0)
			dist = 0;
		else
			dist = conf_distance(name, path);
		if (dist < best_dist) {
			best_dist = dist;
			best = path;
		}
	}
	if (best == NULL)
		return;
	if (want_group)
		snprintf(buf, len, " (did you mean %.*s?)",
		    (int)conf_group_len(best), best);
	else
		snprintf(buf, len, " (did you mean %s?)", best);
}

/* --- errors ------------------------------------------------------------ */

static const char *
conf_type_name(int type)
{
	switch (type) {
	case CONFIG_TYPE_GROUP:  return "a group";
	case CONFIG_TYPE_INT:
	case CONFIG_TYPE_INT64:  return "an integer";
	case CONFIG_TYPE_FLOAT:  return "a floating point number";
	case CONFIG_TYPE_STRING: return "a string";
	case CONFIG_TYPE_BOOL:   return "a boolean";
	case CONFIG_TYPE_ARRAY:  return "an array";
	case CONFIG_TYPE_LIST:   return "a list";
	}
	return "an unknown type";
}

/* Fill err with "FILE:LINE: SETTING: problem" (":LINE" left out when
 * line is 0: a missing setting or a default value). */
static int
conf_fail(struct assent_err *err, const char *file, int line,
    const char *setting, const char *problem)
{
	if (line > 0)
		return err_set(err, EX_CONFIG, "%s:%d: %s: %s", file, line,
		    setting, problem);
	return err_set(err, EX_CONFIG, "%s: %s: %s", file, setting, problem);
}

/* libconfig names an @include'd file as it was written, relative to
 * the include directory: make that a path. */
static const char *
conf_file_path(const struct conf_loader *ld, const char *file, char *buf,
    size_t len)
{
	if (file == NULL)
		return ld->file;
	if (file[0] == '/' || strcmp(file, ld->file) == 0)
		return file;
	snprintf(buf, len, "%s/%s", ld->dir, file);
	return buf;
}

/* The file cs came from. */
static const char *
conf_source_file(const struct conf_loader *ld, const config_setting_t *cs,
    char *buf, size_t len)
{
	return conf_file_path(ld, cs != NULL ? config_setting_source_file(cs) :
	    NULL, buf, len);
}

/* --- validators -------------------------------------------------------- */

/* libpq must understand it; its reason is not repeated, since it may
 * quote part of a password. */
static int
conf_check_dsn(const char *value, char *why, size_t whylen)
{
	char *shown = db_dsn_display(value, NULL);

	if (shown != NULL) {
		free(shown);
		return 0;
	}
	snprintf(why, whylen, "not a connection string libpq understands");
	return -1;
}

static int
conf_check_level(const char *value, char *why, size_t whylen)
{
	enum log_level level;

	if (log_level_parse(value, &level) == 0)
		return 0;
	snprintf(why, whylen, "unknown level \"%s\" "
	    "(use error, warn, info or debug)", value);
	return -1;
}

static int
conf_check_url(const char *value, char *why, size_t whylen)
{
	const char *rest;

	if (strncmp(value, "https://", 8) == 0)
		rest = value + 8;
	else if (strncmp(value, "http://", 7) == 0)
		rest = value + 7;
	else {
		snprintf(why, whylen, "\"%s\" must start with http:// or "
		    "https://", value);
		return -1;
	}
	if (*rest == '\0' || *rest == '/' || strpbrk(value, " \t") != NULL) {
		snprintf(why, whylen, "\"%s\" has no host name", value);
		return -1;
	}
	if (!mime_url_scheme_ok(value)) {
		snprintf(why, whylen, "\"%s\" must be https:// (links in mail "
		    "must be; http:// only to 127.0.0.1, localhost or [::1])",
		    value);
		return -1;
	}
	/* Links are built as base_url + "/confirm?...": no double slash. */
	if (value[strlen(value) - 1] == '/') {
		snprintf(why, whylen, "\"%s\" must not end with /", value);
		return -1;
	}
	return 0;
}

static int
conf_check_from(const char *value, char *why, size_t whylen)
{
	struct assent_err e;
	struct addr a;

	if (addr_parse(value, &a, &e) == 0)
		return 0;
	snprintf(why, whylen, "%s", e.msg);
	return -1;
}

static int
conf_check_domain(const char *value, char *why, size_t whylen)
{
	struct assent_err e;
	char domain[ADDR_DOMAIN_MAX + 1];

	if (addr_parse_domain(value, domain, &e) == 0)
		return 0;
	snprintf(why, whylen, "%s", e.msg);
	return -1;
}

static int
conf_check_listen(const char *value, char *why, size_t whylen)
{
	unsigned char buf[sizeof(struct in6_addr)];

	if (inet_pton(AF_INET, value, buf) == 1 ||
	    inet_pton(AF_INET6, value, buf) == 1)
		return 0;
	snprintf(why, whylen, "\"%s\" is not a numeric IPv4 or IPv6 address",
	    value);
	return -1;
}

/* The daemon changes directory to /: a relative path would move. */
static int
conf_check_absolute(const char *value, char *why, size_t whylen)
{
	if (value[0] == '/')
		return 0;
	snprintf(why, whylen, "\"%s\" is not an absolute path", value);
	return -1;
}

/* A comma-separated list of IPv4 or IPv6 literals (blanks allowed). */
static int
conf_check_proxies(const char *value, char *why, size_t whylen)
{
	unsigned char buf[sizeof(struct in6_addr)];
	char item[INET6_ADDRSTRLEN + 1];
	const char *p = value;

	while (*p != '\0') {
		size_t n;

		p += strspn(p, " \t,");
		n = strcspn(p, " \t,");
		if (n == 0)
			break;
		if (n >= sizeof(item)) {
			snprintf(why, whylen, "\"%.*s\" is not an IP address", (int)n, p);
			return -1;
		}
		memcpy(item, p, n);
		item[n] = '\0';
		if (inet_pton(AF_INET, item, buf) != 1 &&
		    inet_pton(AF_INET6, item, buf) != 1) {
			snprintf(why, whylen, "\"%s\" is not an IP address", item);
			return -1;
		}
		p += n;
	}
	return 0;
}

static int
conf_check_domain_limits(const char *value, char *why, size_t whylen)
{
	struct assent_err e;

	if (throttle_check_spec(value, &e) == 0)
		return 0;
	snprintf(why, whylen, "%s", e.msg);
	return -1;
}

/* --- integers libconfig got wrong -------------------------------------- */

static char *
conf_slurp(const char *file)
{
	FILE *fp;
	char *buf;
	long size;

	if ((fp = fopen(file, "r")) == NULL)
		return NULL;
	if (fseek(fp, 0, SEEK_END) != 0 || (size = ftell(fp)) < 0 ||
	    fseek(fp, 0, SEEK_SET) != 0) {
		fclose(fp);
		return NULL;
	}
	buf = xmalloc((size_t)size + 1);
	buf[fread(buf, 1, (size_t)size, fp)] = '\0';
	fclose(fp);
	return buf;
}

static int
conf_is_name_char(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
	    (c >= '0' && c <= '9') || c == '_' || c == '-' || c == '*';
}

/* An integer literal as written in the file. */
struct conf_literal {
	char text[32];
	long long value;        /* saturated when it overflows */
	int overflow;
	int wide;               /* has the L suffix: libconfig reads 64 bits */
};

static int
conf_parse_literal(const char *p, struct conf_literal *lit)
{
	const char *digits = p + (*p == '-' || *p == '+'), *end;
	int hex = digits[0] == '0' && (digits[1] == 'x' || digits[1] == 'X');

	if (*digits < '0' || *digits > '9')
		return -1;
	errno = 0;
	lit->value = strtoll(p, NULL, hex ? 16 : 10);
	lit->overflow = errno == ERANGE;
	end = digits + strspn(digits, "0123456789abcdefABCDEFxX");
	lit->wide = *end == 'L';
	snprintf(lit->text, sizeof(lit->text), "%.*s", (int)(end - p), p);
	return 0;
}

/* Skip a string or a comment at p, if there is one there. */
static const char *
conf_skip_noise(const char *p)
{
	const char *end;

	if (*p == '"') {
		for (p++; *p != '\0' && *p != '"'; p++)
			if (*p == '\\' && p[1] != '\0')
				p++;
		return *p == '"' ? p + 1 : p;
	}
	if (*p == '#' || (p[0] == '/' && p[1] == '/'))
		return p + strcspn(p, "\n");
	if (p[0] == '/' && p[1] == '*') {
		end = strstr(p + 2, "*/");
		return end != NULL ? end + 2 : p + strlen(p);
	}
	return p;
}

/* The next integer literal after "name =" (or "name :") from p on,
 * outside strings and comments. Returns where to look for the next one,
 * or NULL. */
static const char *
conf_next_literal(const char *p, const char *name, struct conf_literal *lit)
{
	const char *q;
	size_t nlen = strlen(name), len;

	while (*p != '\0') {
		if ((q = conf_skip_noise(p)) != p) {
			p = q;
			continue;
		}
		if (!conf_is_name_char(*p)) {
			p++;
			continue;
		}
		for (len = 0; conf_is_name_char(p[len]); len++)
			;
		q = p + len + strspn(p + len, " \t\r\n");
		p += len;
		if (len == nlen && strncmp(p - len, name, nlen) == 0 &&
		    (*q == '=' || *q == ':') &&
		    conf_parse_literal(q + 1 + strspn(q + 1, " \t\r\n"),
		    lit) == 0)
			return p;
	}
	return NULL;
}

/*
 * libconfig 1.5 silently keeps the low 32 bits of an integer that does
 * not fit an int (port = 1099511627776 reads as 0) and saturates an
 * L-suffixed one past 64 bits. Read the literal again from the file,
 * from the setting's line on: libconfig gives no column, so the literal
 * is the first one libconfig would have cut down to what it returned (a
 * same-named setting earlier on the line is not it). It overflowed if
 * it reads differently in full.
 */
static int
conf_literal_overflows(const char *file, int line, const char *name,
    long long parsed, struct conf_literal *lit)
{
	const char *p;
	char *text;
	long long as_read;
	int overflows = 0;

	if ((text = conf_slurp(file)) == NULL)
		return 0;
	for (p = text; --line > 0 && (p = strchr(p, '\n')) != NULL; p++)
		;
	while (p != NULL && (p = conf_next_literal(p, name, lit)) != NULL) {
		as_read = lit->wide ? lit->value :
		    (long long)(int)(unsigned)(unsigned long long)lit->value;
		if (as_read == parsed) {
			overflows = lit->overflow || lit->value != parsed;
			break;
		}
	}
	free(text);
	return overflows;
}

/* --- loading ------------------------------------------------------------ */

/* Refuse anything in the file that the table does not know, and a group
 * given as a value. */
static int
conf_walk(struct conf_loader *ld, struct assent_err *err)
{
	config_setting_t *root = config_root_setting(&ld->cfg), *group, *s;
	char path[2 * CONF_NAME_MAX + 2], hint[96], problem[160];
	char buf[PATH_MAX];
	const char *file;
	int i, j;

	for (i = 0; (group = config_setting_get_elem(root, (unsigned)i)) != NULL;
	    i++) {
		const char *gname = config_setting_name(group);

		file = conf_source_file(ld, group, buf, sizeof(buf));
		if (!conf_is_group(gname)) {
			int is_group = config_setting_is_group(group);

			conf_suggest(gname, is_group, hint, sizeof(hint));
			snprintf(problem, sizeof(problem), "unknown %s%s",
			    is_group ? "group" : "setting", hint);
			return conf_fail(err, file,
			    config_setting_source_line(group), gname, problem);
		}
		if (!config_setting_is_group(group)) {
			snprintf(problem, sizeof(problem), "expected a group "
			    "({ ... }), got %s",
			    conf_type_name(config_setting_type(group)));
			return conf_fail(err, file,
			    config_setting_source_line(group), gname, problem);
		}
		for (j = 0; (s = config_setting_get_elem(group, (unsigned)j)) !=
		    NULL; j++) {
			snprintf(path, sizeof(path), "%s.%s", gname,
			    config_setting_name(s));
			if (conf_find(path) != NULL)
				continue;
			conf_suggest(path, 0, hint, sizeof(hint));
			snprintf(problem, sizeof(problem), "unknown setting%s",
			    hint);
			return conf_fail(err, conf_source_file(ld, s, buf,
			    sizeof(buf)), config_setting_source_line(s), path,
			    problem);
		}
	}
	return 0;
}

/* The type is right for s: check and store a string or enum value. */
static int
conf_take_string(struct conf_loader *ld, const struct conf_setting *s,
    const char *value, const char *file, int line, struct assent_err *err)
{
	struct assent_err e;
	char problem[ASSENT_ERR_MSG_MAX / 2], names[64];
	int index;

	if (value[0] == '\0' && (s->flags & (CONF_REQUIRED | CONF_NONEMPTY)))
		return conf_fail(err, file, line, s->path, "must not be empty");
	if (text_check_line(value, CONF_STRING_MAX, true, "value", &e) < 0) {
		/* text's message quotes the value: not a password */
		if (s->flags & (CONF_SECRET | CONF_DSN))
			return conf_fail(err, file, line, s->path, "not one "
			    "line of UTF-8 text (value not shown)");
		return conf_fail(err, file, line, s->path, e.msg);
	}
	if (s->type == CONF_ENUM) {
		if ((index = conf_enum_index(s, value)) < 0) {
			conf_enum_list(s, names, sizeof(names));
			snprintf(problem, sizeof(problem),
			    "\"%s\" is not one of %s", value, names);
			return conf_fail(err, file, line, s->path, problem);
		}
		conf_store_number(ld->conf, s, index);
		return 0;
	}
	if (s->check != NULL && value[0] != '\0' &&
	    s->check(value, problem, sizeof(problem)) < 0)
		return conf_fail(err, file, line, s->path, problem);
	*conf_string_field(ld->conf, s) = xstrdup(value);
	return 0;
}

static int
conf_take_integer(struct conf_loader *ld, const struct conf_setting *s,
    const config_setting_t *cs, const char *file, int line,
    struct assent_err *err)
{
	long long value = config_setting_get_int64(cs);
	struct conf_literal lit;
	char problem[160];

	if (conf_literal_overflows(file, line, config_setting_name(cs), value,
	    &lit)) {
		snprintf(problem, sizeof(problem), "%s is out of range "
		    "(%lld to %lld)", lit.text, s->min, s->max);
		return conf_fail(err, file, line, s->path, problem);
	}
	if (value < s->min || value > s->max) {
		snprintf(problem, sizeof(problem), "%lld is out of range "
		    "(%lld to %lld)", value, s->min, s->max);
		return conf_fail(err, file, line, s->path, problem);
	}
	conf_store_number(ld->conf, s, value);
	return 0;
}

static int
conf_wrong_type(const struct conf_setting *s, const config_setting_t *cs,
    const char *file, int line, struct assent_err *err)
{
	char problem[160], names[64];
	const char *want = "a string", *hint = "";
	int got = config_setting_type(cs);

	switch (s->type) {
	case CONF_INT:
	case CONF_LONG:
		want = "an integer";
		if (got == CONFIG_TYPE_STRING)
			hint = " (write the number without quotes)";
		break;
	case CONF_BOOL:
		want = "a boolean (true or false)";
		if (got == CONFIG_TYPE_STRING)
			hint = " (write true or false without quotes)";
		break;
	case CONF_ENUM:
		conf_enum_list(s, names, sizeof(names));
		snprintf(problem, sizeof(problem), "expected a string (%s), "
		    "got %s", names, conf_type_name(got));
		return conf_fail(err, file, line, s->path, problem);
	case CONF_STRING:
		if (got != CONFIG_TYPE_GROUP && got != CONFIG_TYPE_LIST &&
		    got != CONFIG_TYPE_ARRAY)
			hint = " (put the value in double quotes)";
		break;
	}
	snprintf(problem, sizeof(problem), "expected %s, got %s%s", want,
	    conf_type_name(got), hint);
	return conf_fail(err, file, line, s->path, problem);
}

/* The setting is present in the file: check its type and value. */
static int
conf_take(struct conf_loader *ld, const struct conf_setting *s,
    const config_setting_t *cs, struct assent_err *err)
{
	char buf[PATH_MAX];
	const char *file = conf_source_file(ld, cs, buf, sizeof(buf));
	int line = config_setting_source_line(cs);
	int got = config_setting_type(cs);

	ld->where[s - conf_settings] = cs;
	switch (s->type) {
	case CONF_STRING:
	case CONF_ENUM:
		if (got != CONFIG_TYPE_STRING)
			break;
		return conf_take_string(ld, s, config_setting_get_string(cs),
		    file, line, err);
	case CONF_INT:
	case CONF_LONG:
		if (got != CONFIG_TYPE_INT && got != CONFIG_TYPE_INT64)
			break;
		return conf_take_integer(ld, s, cs, file, line, err);
	case CONF_BOOL:
		if (got != CONFIG_TYPE_BOOL)
			break;
		conf_store_number(ld->conf, s, config_setting_get_bool(cs));
		return 0;
	}
	return conf_wrong_type(s, cs, file, line, err);
}

/* The setting is absent: refuse if required, else use the default. */
static int
conf_take_default(struct conf_loader *ld, const struct conf_setting *s,
    struct assent_err *err)
{
	char group[CONF_NAME_MAX + 1];
	config_setting_t *g;
	int line = 0;

	if (s->flags & CONF_REQUIRED) {
		snprintf(group, sizeof(group), "%.*s",
		    (int)conf_group_len(s->path), s->path);
		if ((g = config_lookup(&ld->cfg, group)) != NULL)
			line = config_setting_source_line(g);
		return conf_fail(err, ld->file, line, s->path,
		    "required setting is missing");
	}
	if (s->type == CONF_STRING)
		*conf_string_field(ld->conf, s) = xstrdup(s->def_string);
	else if (s->type == CONF_ENUM)
		conf_store_number(ld->conf, s, conf_enum_index(s, s->def_string));
	else
		conf_store_number(ld->conf, s, s->def_number);
	return 0;
}

/* Secret files are checked for defaults too: the default keys file may
 * well exist with a careless mode. */
/* A DSN with a password in it makes its file a secret too. */
static int
conf_dsn_file_private(struct conf_loader *ld, const struct conf_setting *s,
    size_t i, struct assent_err *err)
{
	char buf[PATH_MAX], *shown;
	const char *file;
	bool secret = false;

	shown = db_dsn_display(*conf_string_field(ld->conf, s), &secret);
	free(shown);
	if (!secret)
		return 0;
	file = conf_source_file(ld, ld->where[i], buf, sizeof(buf));
	if (conf_check_secret_file(file, "the file holding database.dsn, which "
	    "has a password,", err) == 0)
		return 0;
	return err_prefix(err, "%s:%d", file, config_setting_source_line(ld->where[i]));
}

static int
conf_check_secrets(struct conf_loader *ld, struct assent_err *err)
{
	const struct conf_setting *s;
	const char *value, *file;
	char buf[PATH_MAX];
	size_t i;

	for (i = 0; i < CONF_NSETTINGS; i++) {
		s = &conf_settings[i];
		if ((s->flags & CONF_DSN) && ld->where[i] != NULL &&
		    conf_dsn_file_private(ld, s, i, err) == -1)
			return -1;
		if (!(s->flags & CONF_SECRET_FILE))
			continue;
		value = *conf_string_field(ld->conf, s);
		if (value[0] == '\0' ||
		    conf_check_secret_file(value, s->path, err) == 0)
			continue;
		file = conf_source_file(ld, ld->where[i], buf, sizeof(buf));
		if (ld->where[i] != NULL)
			return err_prefix(err, "%s:%d", file,
			    config_setting_source_line(ld->where[i]));
		return err_prefix(err, "%s", file);
	}
	return 0;
}

/* An SMTP user needs a password file: said at load time, with
 * file:line, not at the first send. (Whether the file exists is checked
 * when it is read, as for every secret file.) */
static int
conf_check_smtp_auth(struct conf_loader *ld, struct assent_err *err)
{
	size_t user = (size_t)(conf_find("smtp.user") - conf_settings);
	char buf[PATH_MAX];
	const char *file;

	if (ld->conf->smtp_user[0] == '\0' ||
	    ld->conf->smtp_password_file[0] != '\0')
		return 0;
	file = conf_source_file(ld, ld->where[user], buf, sizeof(buf));
	return conf_fail(err, file, config_setting_source_line(ld->where[user]),
	    "smtp.user", "is set but smtp.password_file is not");
}

/* Fail early, with EX_NOINPUT, for what libconfig would only call
 * "file I/O error" on line 0. */
static int
conf_open_check(const char *path, struct assent_err *err)
{
	struct stat st;
	FILE *fp;

	if ((fp = fopen(path, "r")) == NULL)
		return err_set(err, EX_NOINPUT, "%s: %s", path,
		    strerror(errno));
	if (fstat(fileno(fp), &st) == 0 && S_ISDIR(st.st_mode)) {
		fclose(fp);
		return err_set(err, EX_NOINPUT, "%s: %s", path,
		    strerror(EISDIR));
	}
	fclose(fp);
	return 0;
}

/* A relative @include is read from the directory of the file. */
static char *
conf_dir_of(const char *path)
{
	const char *slash = strrchr(path, '/');

	if (slash == NULL)
		return xstrdup(".");
	if (slash == path)
		return xstrdup("/");
	return xstrndup(path, (size_t)(slash - path));
}

const char *
conf_default_path(void)
{
	const char *path = getenv("ASSENT_CONFIG");

	return path != NULL && path[0] != '\0' ? path : CONF_DEFAULT_PATH;
}

int
conf_load(const char *path, struct assent_conf **conf_r,
    struct assent_err *err)
{
	struct conf_loader ld;
	const config_setting_t *cs;
	char buf[PATH_MAX];
	size_t i;

	*conf_r = NULL;
	if (conf_open_check(path, err) < 0)
		return -1;
	memset(&ld, 0, sizeof(ld));
	ld.file = path;
	ld.conf = xcalloc(1, sizeof(*ld.conf));
	ld.conf->path = xstrdup(path);
	config_init(&ld.cfg);
	ld.dir = conf_dir_of(path);
	config_set_include_dir(&ld.cfg, ld.dir);
	if (!config_read_file(&ld.cfg, path)) {
		err_set(err, EX_CONFIG, "%s:%d: %s", conf_file_path(&ld,
		    config_error_file(&ld.cfg), buf, sizeof(buf)),
		    config_error_line(&ld.cfg), config_error_text(&ld.cfg));
		goto fail;
	}
	if (conf_walk(&ld, err) < 0)
		goto fail;
	for (i = 0; i < CONF_NSETTINGS; i++) {
		cs = config_lookup(&ld.cfg, conf_settings[i].path);
		if ((cs != NULL ? conf_take(&ld, &conf_settings[i], cs, err) :
		    conf_take_default(&ld, &conf_settings[i], err)) < 0)
			goto fail;
	}
	if (conf_check_secrets(&ld, err) < 0 || conf_check_smtp_auth(&ld, err) < 0)
		goto fail;
	config_destroy(&ld.cfg);
	free(ld.dir);
	*conf_r = ld.conf;
	return 0;

fail:
	config_destroy(&ld.cfg);
	free(ld.dir);
	conf_free(ld.conf);
	return -1;
}

int
conf_check_sending(const struct assent_conf *conf, struct assent_err *err)
{
	static const char *const needed[] = {
		"http.base_url", "sender.postal_address", "sender.bounce_domain",
	};
	char missing[256] = "";
	size_t len = 0;

	for (size_t i = 0; i < sizeof(needed) / sizeof(needed[0]); i++) {
		const char *v = *conf_string_field(conf, conf_find(needed[i]));

		if (v != NULL && *v != '\0')
			continue;
		len += (size_t)snprintf(missing + len, sizeof(missing) - len, "%s%s",
		    len > 0 ? ", " : "", needed[i]);
	}
	if (len == 0)
		return 0;
	return err_set(err, EX_CONFIG, "%s: nothing can be sent until %s %s set "
	    "(every message carries them: see assent.conf(5))", conf->path,
	    missing, strchr(missing, ',') != NULL ? "are" : "is");
}

void
conf_free(struct assent_conf *conf)
{
	size_t i;

	if (conf == NULL)
		return;
	for (i = 0; i < CONF_NSETTINGS; i++)
		if (conf_settings[i].type == CONF_STRING)
			free(*conf_string_field(conf, &conf_settings[i]));
	free(conf->path);
	free(conf);
}

int
conf_check_secret_file(const char *path, const char *setting,
    struct assent_err *err)
{
	struct stat st;
	const char *how;

	if (stat(path, &st) < 0) {
		/* Missing, or hidden from us (and so from any reader
		 * running as we do): the module that opens it reports. */
		if (errno == ENOENT || errno == ENOTDIR || errno == EACCES)
			return 0;
		return err_set(err, EX_CONFIG, "%s: cannot check %s: %s",
		    setting, path, strerror(errno));
	}
	if (!S_ISREG(st.st_mode))
		return err_set(err, EX_CONFIG, "%s: %s is not a regular file",
		    setting, path);
	if ((st.st_mode & 077) == 0)
		return 0;
	if (st.st_mode & 044)
		how = "readable";
	else if (st.st_mode & 022)
		how = "writable";
	else
		how = "accessible";
	return err_set(err, EX_CONFIG, "%s: %s is %s by group or others "
	    "(mode %04o); chmod 600 it", setting, path, how,
	    (unsigned)(st.st_mode & 07777));
}

/* --- dumping ------------------------------------------------------------ */

/* The value as it may be shown: a fresh string. */
static char *
conf_display(const struct conf_setting *s, const char *value)
{
	char *shown;

	if ((s->flags & CONF_SECRET) && value[0] != '\0')
		return xstrdup(CONF_MASK);
	if (!(s->flags & CONF_DSN))
		return xstrdup(value);
	shown = db_dsn_display(value, NULL);
	return shown != NULL ? shown : xstrdup(CONF_MASK);
}

static void
conf_print_string(FILE *out, const char *s)
{
	fputc('"', out);
	for (; *s != '\0'; s++) {
		if (*s == '"' || *s == '\\')
			fprintf(out, "\\%c", *s);
		else if ((unsigned char)*s < 0x20 || *s == 0x7f)
			fprintf(out, "\\x%02x", (unsigned char)*s);
		else
			fputc(*s, out);
	}
	fputc('"', out);
}

static void
conf_print_value(const struct assent_conf *conf, const struct conf_setting *s,
    FILE *out)
{
	char *shown;

	switch (s->type) {
	case CONF_STRING:
		shown = conf_display(s, *conf_string_field(conf, s));
		conf_print_string(out, shown);
		free(shown);
		break;
	case CONF_ENUM:
		conf_print_string(out, s->names[conf_fetch_number(conf, s)]);
		break;
	case CONF_INT:
	case CONF_LONG:
		fprintf(out, "%lld", conf_fetch_number(conf, s));
		break;
	case CONF_BOOL:
		fputs(conf_fetch_number(conf, s) ? "true" : "false", out);
		break;
	}
}

static int
conf_same_group(const char *a, const char *b)
{
	return conf_group_len(a) == conf_group_len(b) &&
	    strncmp(a, b, conf_group_len(a)) == 0;
}

void
conf_dump(const struct assent_conf *conf, FILE *out)
{
	const struct conf_setting *s, *prev = NULL;
	size_t i;

	for (i = 0; i < CONF_NSETTINGS; i++, prev = s) {
		s = &conf_settings[i];
		if (prev == NULL || !conf_same_group(prev->path, s->path)) {
			if (prev != NULL)
				fputs("};\n\n", out);
			fprintf(out, "%.*s = {\n", (int)conf_group_len(s->path),
			    s->path);
		}
		fprintf(out, "\t# %s\n\t%s = ", s->description, conf_leaf(s->path));
		conf_print_value(conf, s, out);
		fputs(";\n", out);
	}
	fputs("};\n", out);
}

static json_t *
conf_json_value(const struct assent_conf *conf, const struct conf_setting *s)
{
	json_t *v = NULL;
	char *shown;

	switch (s->type) {
	case CONF_STRING:
		shown = conf_display(s, *conf_string_field(conf, s));
		v = json_string(shown);
		free(shown);
		break;
	case CONF_ENUM:
		v = json_string(s->names[conf_fetch_number(conf, s)]);
		break;
	case CONF_INT:
	case CONF_LONG:
		v = json_integer(conf_fetch_number(conf, s));
		break;
	case CONF_BOOL:
		v = json_boolean(conf_fetch_number(conf, s));
		break;
	}
	return v != NULL ? v : json_null();
}

void
conf_dump_json(const struct assent_conf *conf, FILE *out)
{
	const struct conf_setting *s;
	char group[CONF_NAME_MAX + 1];
	json_t *root = json_object(), *g;
	size_t i;

	for (i = 0; i < CONF_NSETTINGS; i++) {
		s = &conf_settings[i];
		snprintf(group, sizeof(group), "%.*s",
		    (int)conf_group_len(s->path), s->path);
		if ((g = json_object_get(root, group)) == NULL) {
			g = json_object();
			json_object_set_new(root, group, g);
		}
		json_object_set_new(g, conf_leaf(s->path),
		    conf_json_value(conf, s));
	}
	json_dumpf(root, out, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
	fputc('\n', out);
	json_decref(root);
}

/* log: levels, stderr or syslog; see include/assent/log.h */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <syslog.h>
#include <sysexits.h>
#include <time.h>

#include "assent/log.h"

/* Read by every thread, changed by the daemon's main thread on reload. */
static const char *log_ident = "assent";
static _Atomic int log_threshold = LOG_LEVEL_INFO;
static _Atomic bool log_to_syslog;

static const struct {
	const char *name;
	enum log_level level;
	int priority;
} log_levels[] = {
	{ "error", LOG_LEVEL_ERROR, LOG_ERR },
	{ "warn",  LOG_LEVEL_WARN,  LOG_WARNING },
	{ "info",  LOG_LEVEL_INFO,  LOG_INFO },
	{ "debug", LOG_LEVEL_DEBUG, LOG_DEBUG },
};

void
log_init(const char *ident, enum log_level level, bool use_syslog)
{
	log_ident = ident;
	log_threshold = level;
	if (use_syslog && !log_to_syslog)
		openlog(ident, LOG_PID | LOG_NDELAY, LOG_MAIL);
	else if (!use_syslog && log_to_syslog)
		closelog();
	log_to_syslog = use_syslog;
}

void
log_set_level(enum log_level level)
{
	log_threshold = level;
}

int
log_level_parse(const char *name, enum log_level *level_r)
{
	for (size_t i = 0; i < sizeof(log_levels) / sizeof(log_levels[0]); i++) {
		if (strcmp(name, log_levels[i].name) == 0) {
			*level_r = log_levels[i].level;
			return 0;
		}
	}
	return -1;
}

static void
log_vwrite(enum log_level level, int with_errno, const char *fmt, va_list ap)
{
	char msg[2048];
	int saved_errno = errno;
	size_t len;

	if ((int)level > log_threshold)
		return;
	vsnprintf(msg, sizeof(msg), fmt, ap);
	len = strlen(msg);
	if (with_errno && len < sizeof(msg)) {
		char why[128];

		/* The GNU strerror_r returns its text; it may not use why. */
		snprintf(msg + len, sizeof(msg) - len, ": %s",
		    strerror_r(saved_errno, why, sizeof(why)));
	}
	if (log_to_syslog) {
		syslog(log_levels[level].priority, "%s", msg);
	} else {
		char stamp[32];
		time_t now = time(NULL);
		struct tm tm;

		gmtime_r(&now, &tm);
		strftime(stamp, sizeof(stamp), "%Y-%m-%dT%H:%M:%SZ", &tm);
		fprintf(stderr, "%s %s[%s]: %s\n", stamp, log_ident,
		    log_levels[level].name, msg);
	}
	errno = saved_errno;
}

#define LOG_FN(fn, level, with_errno)				\
void								\
fn(const char *fmt, ...)					\
{								\
	va_list ap;						\
	va_start(ap, fmt);					\
	log_vwrite(level, with_errno, fmt, ap);			\
	va_end(ap);						\
}

LOG_FN(log_error, LOG_LEVEL_ERROR, 0)
LOG_FN(log_warn, LOG_LEVEL_WARN, 1)
LOG_FN(log_warnx, LOG_LEVEL_WARN, 0)
LOG_FN(log_info, LOG_LEVEL_INFO, 0)
LOG_FN(log_debug, LOG_LEVEL_DEBUG, 0)

void
fatal(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	log_vwrite(LOG_LEVEL_ERROR, 1, fmt, ap);
	va_end(ap);
	exit(EX_SOFTWARE);
}

void
fatalx(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	log_vwrite(LOG_LEVEL_ERROR, 0, fmt, ap);
	va_end(ap);
	exit(EX_SOFTWARE);
}

/*
 * log: the one way assent writes diagnostics.
 *
 * To stderr in the foreground, to syslog when log_init() asked for it
 * (the daemon, once detached). The level is checked before formatting.
 * Never pass a secret or a whole token to these functions.
 *
 * log_warn() appends strerror(errno); log_warnx() does not.
 * fatal()/fatalx() log and exit(EX_SOFTWARE) -- for programmer errors
 * and for the daemon's start-up only; library code returns errors.
 */
#ifndef ASSENT_LOG_H
#define ASSENT_LOG_H

#include <stdbool.h>

enum log_level { LOG_LEVEL_ERROR, LOG_LEVEL_WARN, LOG_LEVEL_INFO, LOG_LEVEL_DEBUG };

/* ident is borrowed and must outlive the log module (a string literal). */
void log_init(const char *ident, enum log_level level, bool use_syslog);
void log_set_level(enum log_level level);
/* Parse "error", "warn", "info", "debug"; returns -1 for anything else. */
int  log_level_parse(const char *name, enum log_level *level_r);

void log_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void log_warn(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void log_warnx(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void log_info(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void log_debug(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void fatal(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));
void fatalx(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));

#endif

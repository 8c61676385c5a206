/*
 * assentd: the daemon's internal interface between its files.
 *
 * main.c owns the process: arguments, configuration and its reload,
 * logging, detaching, the pid file, signals, the start-up database
 * check and the main loop (which will host the scheduler).
 * web.c owns the HTTP server: libmicrohttpd, the route table, and one
 * database connection per pool thread (never shared across threads).
 *
 * Memory: web_start() copies what it needs from the configuration, so
 * main.c may free or replace its struct assent_conf at any time (on
 * SIGHUP). web_stop() releases everything web_start() made. A route
 * handler borrows the connection and the url for the call only.
 */
#ifndef ASSENTD_H
#define ASSENTD_H

#include <microhttpd.h>
#include <libpq-fe.h>

#include "assent/conf.h"
#include "assent/err.h"

/* ---- web.c: the HTTP server ------------------------------------------ */

struct web;

/* Listen on conf->http_listen (an IPv4 or IPv6 literal) port
 * conf->http_port, and log "listening on http://HOST:PORT". Fails with
 * EX_CONFIG for an address that is not a literal and EX_UNAVAILABLE
 * when the port cannot be bound. */
int web_start(const struct assent_conf *conf, struct web **web_r,
    struct assent_err *err);

/* Stop accepting connections, finish, close every pool thread's
 * database connection and free web. NULL is allowed. */
void web_stop(struct web *web);

/* ---- for route handlers (web.c and, later, web_*.c) ------------------ */

/* A handler answers one request, on its last handler call (the body,
 * if any, has been consumed). It must queue a response, normally with
 * web_reply(). */
typedef enum MHD_Result (*web_handler)(struct web *web,
    struct MHD_Connection *conn, const char *url);

/* One route: method ("GET" also answers HEAD) and path. A path ending
 * in '/' matches every url under it; any other path matches exactly. */
struct web_route {
	const char  *method;
	const char  *path;
	web_handler  handler;
};

/* Queue a response with status and a copy of body, as content_type,
 * with the security headers every response carries. */
enum MHD_Result web_reply(struct MHD_Connection *conn, unsigned int status,
    const char *content_type, const char *body);

/* This pool thread's database connection, opened on first use and
 * reopened when it was lost; NULL (and logged at debug level) when the
 * database cannot be reached. Borrowed: the thread closes it at exit. */
PGconn *web_db(struct web *web);

#endif

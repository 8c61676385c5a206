/*
 * assentd: the daemon's internal interface between its files.
 *
 * main.c owns the process: arguments, configuration and its reload,
 * logging, detaching, the pid file, signals, the start-up database
 * check and the main loop (which will host the scheduler).
 * web.c owns the HTTP server: libmicrohttpd, the route table, and one
 * database connection per pool thread (never shared across threads).
 * workers.c owns the sender workers: sending.concurrency threads, each
 * with its own database connection, keys, token signer and SMTP
 * transport, sharing one throttle.
 * scheduler.c owns the scheduler thread: one per cluster at a time (an
 * advisory lock), it starts due campaigns, turns the deliveries of dead
 * senders into 'unknown' and marks finished campaigns done.
 *
 * Memory: web_start() copies what it needs from the configuration, so
 * main.c may free or replace its struct assent_conf at any time (on
 * SIGHUP). web_stop() releases everything web_start() made. A route
 * handler borrows the connection and the request (url, body, client
 * address) for the call only.
 */
#ifndef ASSENTD_H
#define ASSENTD_H

#include <stdbool.h>
#include <microhttpd.h>
#include <libpq-fe.h>

#include "assent/conf.h"
#include "assent/err.h"

/* ---- web.c: the HTTP server ------------------------------------------ */

struct web;

/* Listen on conf->http_listen (an IPv4 or IPv6 literal) port
 * conf->http_port, and log "listening on http://HOST:PORT". Fails with
 * EX_CONFIG for an address that is not a literal and EX_UNAVAILABLE
 * when the port cannot be bound. Loads conf->tokens_keys_file: when it
 * cannot, the routes that need tokens answer 503 (logged once, with the
 * reason) and the rest, /healthz among them, work. */
int web_start(const struct assent_conf *conf, struct web **web_r,
    struct assent_err *err);

/* Stop accepting connections, finish, close every pool thread's
 * database connection and free web. NULL is allowed. */
void web_stop(struct web *web);

/* ---- workers.c: the sender workers ------------------------------------- */

struct workers;

/* Start conf->sending_concurrency workers. They borrow conf, which
 * must stay as it is until workers_stop() (main.c keeps the start-up
 * configuration for them across reloads).
 * A worker that cannot reach the database or read the keys file logs
 * why and retries with backoff; a relay that is down pauses the work
 * with backoff. */
int workers_start(const struct assent_conf *conf, struct workers **w_r,
    struct assent_err *err);

/* Apply the rate and domain limits of a reloaded configuration. */
void workers_reload(struct workers *w, const struct assent_conf *conf);

/* Stop claiming, let each worker finish the batch it holds, join them
 * and free w. NULL is allowed. */
void workers_stop(struct workers *w);

/* ---- scheduler.c: the cluster's scheduler ------------------------------ */

struct scheduler;

/* Start the scheduler thread on its own connection to conf's database;
 * it copies what it needs. */
int scheduler_start(const struct assent_conf *conf, struct scheduler **s_r,
    struct assent_err *err);

/* Stop and join it. NULL is allowed. */
void scheduler_stop(struct scheduler *s);

/* ---- shared by the threads (workers.c) -------------------------------- */

/* A stop flag with a file descriptor that becomes readable once the
 * flag is raised, so that a thread can wait on it and a socket together. */
struct stopper {
	int fds[2];
	volatile int stopped;
};
void stopper_init(struct stopper *st);
void stopper_raise(struct stopper *st);
void stopper_close(struct stopper *st);

/* Wait up to ms milliseconds for the stopper or for a notification on
 * conn (LISTENing); consume the notifications. Returns true when a
 * notification arrived. */
bool stopper_wait(struct stopper *st, PGconn *conn, int ms);

/* ---- metrics.c: counters, and /metrics on the admin address --------- */

enum metrics_route {
	METRICS_HEALTHZ, METRICS_UNSUBSCRIBE, METRICS_CONFIRM, METRICS_OTHER,
	METRICS_NROUTES
};

/* The route of the request this thread is answering (web.c sets it
 * before the handler runs); metrics_request() counts its status when the
 * response is queued. */
void metrics_set_route(enum metrics_route route);
void metrics_request(unsigned int status);
/* A subscription ended (channel one-click, web, mailto) or confirmed. */
void metrics_unsubscribe(const char *channel);
void metrics_confirmation(void);
/* A worker's turn: what its stats grew by. */
struct sender_stats;
void metrics_sends(const struct sender_stats *before,
    const struct sender_stats *after);
/* Every counter in Prometheus's text format, and the queue's depth
 * (-1 when unknown). */
struct buf;
void metrics_render(struct buf *out, long queued, long sending);

struct metrics_server;
/* Serve GET /metrics on conf->http_admin_listen:http_admin_port (port 0:
 * nothing, *m_r NULL). EX_UNAVAILABLE when the port cannot be bound. */
int metrics_start(const struct assent_conf *conf, struct metrics_server **m_r,
    struct assent_err *err);
void metrics_stop(struct metrics_server *m);

/* ---- for route handlers (web.c and web_*.c) --------------------------- */

#define WEB_BODY_MAX 8192               /* bytes of request body read */

/* One request, as a handler sees it on the last handler call. */
struct web_request {
	const char *url;        /* borrowed from MHD for the call */
	const char *method;
	const char *body;       /* NUL-terminated; "" when there was none */
	size_t      body_len;
	const char *ip;         /* the client: the peer, or X-Forwarded-For
	                         * when the peer is a trusted proxy */
};

/* A handler answers one request, on its last handler call (the body,
 * at most WEB_BODY_MAX bytes, has been read). It must queue a response,
 * normally with web_reply() or web_page(). */
typedef enum MHD_Result (*web_handler)(struct web *web,
    struct MHD_Connection *conn, const struct web_request *req);

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

/* Queue an HTML page (text/html; charset=utf-8): title is escaped here,
 * body_html is markup the caller escaped (web_html_escape()). */
enum MHD_Result web_page(struct MHD_Connection *conn, unsigned int status,
    const char *title, const char *body_html);

/* Append s to b with &, <, >, " and ' escaped for HTML text and
 * attribute values. */
struct buf;
void web_html_escape(struct buf *b, const char *s);

/* This pool thread's database connection, opened on first use and
 * reopened when it was lost; NULL (and logged at debug level) when the
 * database cannot be reached. Borrowed: the thread closes it at exit. */
PGconn *web_db(struct web *web);

/* This pool thread's token signer, made on first use from the keys
 * (made again after web_keys_refresh() loaded them anew); NULL when the
 * keys file could not be loaded (the routes that need it answer 503).
 * Borrowed: valid until this thread's next web_signer() call. */
struct token_signer;
struct token_signer *web_signer(struct web *web);

/* After a token failed to verify (or there are no keys): load the keys
 * file again if it changed since it was last read (a rotation added a
 * key), looking at most once a second. true when new keys were loaded:
 * verify again with a fresh web_signer(). */
bool web_keys_refresh(struct web *web);

/* tokens.confirm_ttl and sender.organisation ("" when unset), as they
 * were at web_start(). */
long web_confirm_ttl(const struct web *web);
const char *web_organisation(const struct web *web);

/* A handler refusing a bad token says so: for a POST, that is what
 * uses up the client's allowance of requests (see web.c). */
void web_note_refused(void);

/* ---- web_optout.c: /u/ (unsubscribe) and /c/ (confirm) ---------------- */

/* GET shows a page with a button and changes nothing; POST acts. Bad
 * tokens of every kind get one generic 400 page. */
enum MHD_Result web_unsubscribe_get(struct web *web,
    struct MHD_Connection *conn, const struct web_request *req);
enum MHD_Result web_unsubscribe_post(struct web *web,
    struct MHD_Connection *conn, const struct web_request *req);
enum MHD_Result web_confirm_get(struct web *web,
    struct MHD_Connection *conn, const struct web_request *req);
enum MHD_Result web_confirm_post(struct web *web,
    struct MHD_Connection *conn, const struct web_request *req);

#endif

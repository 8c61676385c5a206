/*
 * assentd: the daemon's internal interface between its files.
 *
 * main.c owns the process: arguments, configuration and its reload,
 * logging, detaching, the pid file, signals, the start-up database
 * check and the main loop (which will host the scheduler).
 * web.c owns the HTTP server: libmicrohttpd, the route table, and one
 * database connection per pool thread (never shared across threads).
 * web_page.c makes the responses: every HTML page through one template
 * (http.page_template or the built-in page). web_form.c reads a request
 * body as a form; web_lists.c keeps the names of the lists in memory.
 * web_optout.c answers the links in mail (/u/, /c/), web_subscribe.c
 * the subscribe form (/s/).
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
#include <stdint.h>
#include <netinet/in.h>
#include <microhttpd.h>
#include <libpq-fe.h>

#include "assent/buf.h"
#include "assent/conf.h"
#include "assent/err.h"

/* ---- web.c: the HTTP server ------------------------------------------ */

struct web;

/* Listen on conf->http_listen (an IPv4 or IPv6 literal) port
 * conf->http_port, and log "listening on http://HOST:PORT". Fails with
 * EX_CONFIG for an address that is not a literal or a page template
 * (http.page_template) that cannot be read or compiled
 * ("http.page_template: FILE:LINE:COLUMN: ..."), and EX_UNAVAILABLE when the port cannot be
 * bound. Loads conf->tokens_keys_file: when it
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
	METRICS_HEALTHZ, METRICS_UNSUBSCRIBE, METRICS_CONFIRM, METRICS_SUBSCRIBE,
	METRICS_OTHER, METRICS_NROUTES
};

/* The route of the request this thread is answering (web.c sets it
 * before the handler runs); metrics_request() counts its status when the
 * response is queued. */
void metrics_set_route(enum metrics_route route);
void metrics_request(unsigned int status);
/* A subscription ended (channel one-click, web, mailto) or confirmed. */
void metrics_unsubscribe(const char *channel);
void metrics_confirmation(void);
/* The subscribe form: a sign-up by outcome ("pending", "confirmed",
 * "resent", "quiet", "refused": the form's own error), a filled
 * honeypot, a POST refused by the per-address limit; and a fresh
 * confirmation request asked through an expired link (by outcome:
 * "resent", "quiet"). */
void metrics_signup(const char *outcome);
void metrics_signup_honeypot(void);
void metrics_signup_limited(void);
void metrics_confirm_again(const char *outcome);
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
	const struct in6_addr *addr;    /* the same (IPv4 mapped) */
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

/* ---- web_page.c: responses and pages --------------------------------- */

struct web_pages;

/* The page template: conf->http_page_template (a file; "" or NULL for
 * the built-in page, which conf/page.html holds a copy of) compiled as
 * RENDER_PAGE, with sender.organisation and sender.postal_address
 * copied for it. EX_CONFIG naming the file on any error. */
int web_pages_new(const struct assent_conf *conf, struct web_pages **p_r,
    struct assent_err *err);
void web_pages_free(struct web_pages *p);

/* A response holding a copy of body, as content_type, with the security
 * headers every response carries (Content-Security-Policy,
 * X-Content-Type-Options, Cache-Control, Referrer-Policy); NULL when
 * out of memory. */
struct MHD_Response *web_response(const char *content_type, const char *body);

/* Queue resp (NULL: fail the request), count it in /metrics and drop
 * our reference. */
enum MHD_Result web_queue(struct MHD_Connection *conn, unsigned int status,
    struct MHD_Response *resp);

/* web_queue(web_response()). */
enum MHD_Result web_reply(struct MHD_Connection *conn, unsigned int status,
    const char *content_type, const char *body);

/* An HTML page (text/html; charset=utf-8) from the template: title and
 * list (NULL for none) are escaped by the template, body_html is markup
 * the caller escaped (web_html_escape()) and goes in {{ content }}. */
struct MHD_Response *web_page_make(struct web *web, const char *title,
    const char *list, const char *body_html);
enum MHD_Result web_page(struct web *web, struct MHD_Connection *conn,
    unsigned int status, const char *title, const char *body_html);
enum MHD_Result web_page_list(struct web *web, struct MHD_Connection *conn,
    unsigned int status, const char *title, const char *list,
    const char *body_html);
/* The same with Retry-After: seconds (429, 503). */
enum MHD_Result web_page_retry(struct web *web, struct MHD_Connection *conn,
    unsigned int status, const char *title, const char *body_html,
    unsigned int seconds);

/* Append s to b with &, <, >, " and ' escaped for HTML text and
 * attribute values. */
struct buf;
void web_html_escape(struct buf *b, const char *s);

/* ---- web.c: for route handlers ------------------------------------------ */

/* The one 404 page. */
enum MHD_Result web_not_found(struct web *web, struct MHD_Connection *conn);

/* The template web_start() compiled (borrowed). */
struct web_pages *web_pages_of(struct web *web);

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

/* This pool thread's suppression gate (suppress.h), with its own copy
 * of the pepper from the keys file; NULL when there are no keys. Like
 * web_signer(), valid until this thread's next call. */
struct suppress_ctx;
const struct suppress_ctx *web_gate(struct web *web);

/* tokens.confirm_ttl, sender.organisation and http.base_url ("" when
 * unset), as they were at web_start(). */
long web_confirm_ttl(const struct web *web);
const char *web_organisation(const struct web *web);
const char *web_base_url(const struct web *web);

/* A handler refusing a bad token says so: for a POST, that is what
 * uses up the client's allowance of requests (see web.c). */
void web_note_refused(void);

/* A POST that costs a database write and may send mail (a sign-up, a
 * fresh confirmation link): take one from req's client's allowance for
 * those (an IPv6 client's is its /64's). false when it is used up:
 * answer with web_too_many() (429 with Retry-After, counted). Every
 * POST to /s/ is charged by web.c before its handler runs. */
bool web_costly_allow(struct web *web, const struct web_request *req);
enum MHD_Result web_too_many(struct web *web, struct MHD_Connection *conn);

/* Seconds on the monotonic clock. */
double web_seconds(void);

/* The table of list names web_start() made (borrowed; web_lists.c). */
struct web_lists;
struct web_lists *web_lists_of(struct web *web);

/* ---- web_lists.c: the names of the lists ------------------------------ */

/* The table web.c keeps for the life of struct web: made empty (loaded
 * on first use), freed with everything in it. */
struct web_lists *web_lists_new(void);
void web_lists_free(struct web_lists *l);

/* The name of list id into name (the caller's buffer), from a table of
 * every list's name kept in memory (loaded again every few seconds, and
 * for an id it lacks), so that a GET page needs no query. A removed
 * list keeps its name; an id never seen gives "". -1 only when the
 * table could never be loaded (no database). */
int web_list_name(struct web *web, uint64_t id, char name[65]);

/* ---- web_form.c: a request body as a form ----------------------------- */

/* A form (application/x-www-form-urlencoded or multipart/form-data, per
 * the request's Content-Type): each field's name and whole value (the
 * body is capped: so are they). Uploads (fields with a filename) are
 * left out. The form owns every name and value: copies, made by
 * web_form_read() and freed by web_form_free(); the struct itself is
 * the caller's (normally on its stack). */
#define WEB_FORM_FIELDS 48
struct web_field {
	char      *name;
	struct buf value;       /* NUL-terminated; value.len excludes it */
};
struct web_form {
	struct web_field fields[WEB_FORM_FIELDS];
	size_t n;
};

/* Parse req's body (borrowed for the call) into form. -1, with form
 * empty and nothing to free, for a body that is not a form or holds
 * more than WEB_FORM_FIELDS fields. After 0 the caller frees the form
 * with web_form_free(). */
int web_form_read(struct MHD_Connection *conn, const struct web_request *req,
    struct web_form *form);
/* The value of the first field named name, or NULL. Borrowed from
 * form: valid until web_form_free(). */
const char *web_form_get(const struct web_form *form, const char *name);
/* The name of a field that appears more than once, or NULL: for a
 * route where that is ambiguous (a proxy or a log may read the other
 * one). Borrowed from form. */
const char *web_form_duplicate(const struct web_form *form);
/* Free every name and value; the form is empty after. */
void web_form_free(struct web_form *form);

/* ---- web_optout.c: /u/ (unsubscribe) and /c/ (confirm) ---------------- */

/* GET shows a page with a button and changes nothing (nor asks the
 * database: the list's name comes from web_list_name()); POST acts.
 * Bad tokens of every kind get one generic 400 page; an expired
 * confirmation link (genuine) gets a page offering a fresh one. */
enum MHD_Result web_unsubscribe_get(struct web *web,
    struct MHD_Connection *conn, const struct web_request *req);
enum MHD_Result web_unsubscribe_post(struct web *web,
    struct MHD_Connection *conn, const struct web_request *req);
enum MHD_Result web_confirm_get(struct web *web,
    struct MHD_Connection *conn, const struct web_request *req);
enum MHD_Result web_confirm_post(struct web *web,
    struct MHD_Connection *conn, const struct web_request *req);

/* ---- web_subscribe.c: /s/LIST (the subscribe form) ------------------- */

/* GET: the list's default form page (404 for a list that takes no
 * sign-ups); POST: a sign-up (signup.h), answered with one page for
 * every outcome, which depends on the list's mode only. */
enum MHD_Result web_subscribe_get(struct web *web,
    struct MHD_Connection *conn, const struct web_request *req);
enum MHD_Result web_subscribe_post(struct web *web,
    struct MHD_Connection *conn, const struct web_request *req);

#endif

/*
 * metrics: counters of what assentd does, and /metrics in Prometheus's
 * text format on a separate admin address (http.admin_listen,
 * http.admin_port; see assentd.h).
 *
 * Counters are process-wide atomics, bumped from any thread: the web
 * pool (requests by route and status, unsubscribes, confirmations,
 * sign-ups by outcome, honeypot hits and rate-limited sign-ups) and
 * the sender workers (messages by outcome). The admin server is one
 * thread of its own with its own database connection, for the queue
 * depth it reads at each scrape. It is not on the public address:
 * nothing there tells the world how much mail goes out.
 */
#include <sys/types.h>
#include <sys/socket.h>
#include <netdb.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "assent/buf.h"
#include "assent/db.h"
#include "assent/log.h"
#include "assent/sender.h"
#include "assent/xmalloc.h"
#include "assentd.h"

static const char *const metrics_route_names[METRICS_NROUTES] = {
	[METRICS_HEALTHZ] = "healthz",
	[METRICS_UNSUBSCRIBE] = "unsubscribe",
	[METRICS_CONFIRM] = "confirm",
	[METRICS_SUBSCRIBE] = "subscribe",
	[METRICS_OTHER] = "other",
};

/* The statuses assentd answers with; anything else counts as "other". */
static const unsigned int metrics_statuses[] = {
	200, 204, 400, 404, 405, 410, 413, 429, 500, 503,
};
#define METRICS_NSTATUS (sizeof(metrics_statuses) / sizeof(metrics_statuses[0]))

static const char *const metrics_outcomes[] = {
	"claimed", "sent", "suppressed", "failed", "retried", "deferred", "unknown",
};
#define METRICS_NOUTCOMES (sizeof(metrics_outcomes) / sizeof(metrics_outcomes[0]))

static const char *const metrics_channels[] = { "one-click", "web", "mailto" };
#define METRICS_NCHANNELS (sizeof(metrics_channels) / sizeof(metrics_channels[0]))

static const char *const metrics_signup_outcomes[] = {
	"pending", "confirmed", "resent", "quiet", "refused",
};
#define METRICS_NSIGNUP \
	(sizeof(metrics_signup_outcomes) / sizeof(metrics_signup_outcomes[0]))

static atomic_ulong metrics_requests[METRICS_NROUTES][METRICS_NSTATUS + 1];
static atomic_ulong metrics_unsubscribes[METRICS_NCHANNELS];
static atomic_ulong metrics_confirmations;
static atomic_ulong metrics_sent[METRICS_NOUTCOMES];
static atomic_ulong metrics_signups[METRICS_NSIGNUP];

static const char *const metrics_notice_outcomes[] = {
	"sent", "suppressed", "skipped", "failed", "retried", "deferred", "unknown",
};
#define METRICS_NNOTICE \
	(sizeof(metrics_notice_outcomes) / sizeof(metrics_notice_outcomes[0]))
static atomic_ulong metrics_notices[METRICS_NNOTICE];
static atomic_ulong metrics_again[METRICS_NSIGNUP];
static atomic_ulong metrics_honeypot;
static atomic_ulong metrics_signup_limit;

static _Thread_local enum metrics_route metrics_current = METRICS_OTHER;

struct metrics_server {
	struct MHD_Daemon *mhd;
	char *dsn;
	PGconn *conn;                   /* the admin thread's only */
};

/* ---- counting ---------------------------------------------------------------- */

void
metrics_set_route(enum metrics_route route)
{
	metrics_current = route;
}

void
metrics_request(unsigned int status)
{
	size_t i;

	for (i = 0; i < METRICS_NSTATUS && metrics_statuses[i] != status; i++)
		;
	atomic_fetch_add(&metrics_requests[metrics_current][i], 1);
	metrics_current = METRICS_OTHER;
}

void
metrics_unsubscribe(const char *channel)
{
	for (size_t i = 0; i < METRICS_NCHANNELS; i++)
		if (strcmp(metrics_channels[i], channel) == 0)
			atomic_fetch_add(&metrics_unsubscribes[i], 1);
}

void
metrics_confirmation(void)
{
	atomic_fetch_add(&metrics_confirmations, 1);
}

/* Count outcome in counters (one per metrics_signup_outcomes). */
static void
metrics_signup_count(atomic_ulong *counters, const char *outcome)
{
	for (size_t i = 0; i < METRICS_NSIGNUP; i++)
		if (strcmp(metrics_signup_outcomes[i], outcome) == 0)
			atomic_fetch_add(&counters[i], 1);
}

void
metrics_signup(const char *outcome)
{
	metrics_signup_count(metrics_signups, outcome);
}

void
metrics_confirm_again(const char *outcome)
{
	metrics_signup_count(metrics_again, outcome);
}

void
metrics_signup_honeypot(void)
{
	atomic_fetch_add(&metrics_honeypot, 1);
}

void
metrics_signup_limited(void)
{
	atomic_fetch_add(&metrics_signup_limit, 1);
}

void
metrics_sends(const struct sender_stats *before, const struct sender_stats *after)
{
	const long b[] = { before->claimed, before->sent, before->suppressed,
	    before->failed, before->retried, before->deferred, before->unknown };
	const long a[] = { after->claimed, after->sent, after->suppressed,
	    after->failed, after->retried, after->deferred, after->unknown };

	const struct notice_stats *nb = &before->notices, *na = &after->notices;
	const long c[] = { nb->sent, nb->suppressed, nb->skipped, nb->failed,
	    nb->retried, nb->deferred, nb->unknown };
	const long d[] = { na->sent, na->suppressed, na->skipped, na->failed,
	    na->retried, na->deferred, na->unknown };

	for (size_t i = 0; i < METRICS_NOUTCOMES; i++)
		if (a[i] > b[i])
			atomic_fetch_add(&metrics_sent[i], (unsigned long)(a[i] - b[i]));
	for (size_t i = 0; i < METRICS_NNOTICE; i++)
		if (d[i] > c[i])
			atomic_fetch_add(&metrics_notices[i], (unsigned long)(d[i] - c[i]));
}

/* ---- the text format ------------------------------------------------------------ */

static void
metrics_line(struct buf *b, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void
metrics_line(struct buf *b, const char *fmt, ...)
{
	char line[256];
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
	if (n > 0)
		buf_add(b, line, (size_t)n < sizeof(line) ? (size_t)n : sizeof(line) - 1);
}

static void
metrics_render_requests(struct buf *b)
{
	metrics_line(b, "# HELP assent_http_requests_total Requests answered, by "
	    "route and status.\n# TYPE assent_http_requests_total counter\n");
	for (size_t r = 0; r < METRICS_NROUTES; r++)
		for (size_t s = 0; s <= METRICS_NSTATUS; s++) {
			char status[8];

			if (s < METRICS_NSTATUS)
				snprintf(status, sizeof(status), "%u", metrics_statuses[s]);
			else
				snprintf(status, sizeof(status), "other");
			metrics_line(b, "assent_http_requests_total{route=\"%s\","
			    "status=\"%s\"} %lu\n", metrics_route_names[r], status,
			    atomic_load(&metrics_requests[r][s]));
		}
}

static void
metrics_render_signups(struct buf *b)
{
	metrics_line(b, "# HELP assent_signups_total Subscribe form posts "
	    "by outcome (refused: the form's own error).\n"
	    "# TYPE assent_signups_total counter\n");
	for (size_t i = 0; i < METRICS_NSIGNUP; i++)
		metrics_line(b, "assent_signups_total{outcome=\"%s\"} %lu\n",
		    metrics_signup_outcomes[i], atomic_load(&metrics_signups[i]));
	metrics_line(b, "# HELP assent_signup_honeypot_total Subscribe form "
	    "posts with the honeypot filled (answered as a success, ignored).\n"
	    "# TYPE assent_signup_honeypot_total counter\n"
	    "assent_signup_honeypot_total %lu\n", atomic_load(&metrics_honeypot));
	metrics_line(b, "# HELP assent_signup_rate_limited_total Subscribe "
	    "form posts refused by the per-address limit.\n"
	    "# TYPE assent_signup_rate_limited_total counter\n"
	    "assent_signup_rate_limited_total %lu\n",
	    atomic_load(&metrics_signup_limit));
	metrics_line(b, "# HELP assent_confirm_again_total Fresh confirmation "
	    "requests asked through expired links, by outcome.\n"
	    "# TYPE assent_confirm_again_total counter\n");
	for (size_t i = 2; i < 4; i++)         /* resent, quiet */
		metrics_line(b, "assent_confirm_again_total{outcome=\"%s\"} %lu\n",
		    metrics_signup_outcomes[i], atomic_load(&metrics_again[i]));
}

void
metrics_render(struct buf *b, long queued, long sending)
{
	metrics_render_requests(b);
	metrics_render_signups(b);
	metrics_line(b, "# HELP assent_unsubscribes_total Subscriptions ended "
	    "through links and mails, by channel.\n"
	    "# TYPE assent_unsubscribes_total counter\n");
	for (size_t i = 0; i < METRICS_NCHANNELS; i++)
		metrics_line(b, "assent_unsubscribes_total{channel=\"%s\"} %lu\n",
		    metrics_channels[i], atomic_load(&metrics_unsubscribes[i]));
	metrics_line(b, "# HELP assent_confirmations_total Subscriptions confirmed "
	    "through links.\n# TYPE assent_confirmations_total counter\n"
	    "assent_confirmations_total %lu\n", atomic_load(&metrics_confirmations));
	metrics_line(b, "# HELP assent_messages_total Campaign messages by "
	    "outcome, by this daemon.\n# TYPE assent_messages_total counter\n");
	for (size_t i = 0; i < METRICS_NOUTCOMES; i++)
		metrics_line(b, "assent_messages_total{outcome=\"%s\"} %lu\n",
		    metrics_outcomes[i], atomic_load(&metrics_sent[i]));
	metrics_line(b, "# HELP assent_confirmation_requests_total Confirmation "
	    "requests by outcome, by this daemon.\n"
	    "# TYPE assent_confirmation_requests_total counter\n");
	for (size_t i = 0; i < METRICS_NNOTICE; i++)
		metrics_line(b, "assent_confirmation_requests_total{outcome=\"%s\"} "
		    "%lu\n", metrics_notice_outcomes[i], atomic_load(&metrics_notices[i]));
	metrics_line(b, "# HELP assent_queue_deliveries Deliveries of sending "
	    "campaigns, by state (the whole cluster; -1: database unavailable).\n"
	    "# TYPE assent_queue_deliveries gauge\n"
	    "assent_queue_deliveries{state=\"queued\"} %ld\n"
	    "assent_queue_deliveries{state=\"sending\"} %ld\n", queued, sending);
}

/* ---- the admin server ---------------------------------------------------------- */

static void
metrics_queue(struct metrics_server *m, long *queued, long *sending)
{
	struct assent_err err;
	PGresult *res;

	*queued = *sending = -1;
	if (m->conn == NULL || PQstatus(m->conn) != CONNECTION_OK) {
		db_close(m->conn);
		m->conn = NULL;
		if (db_connect(m->dsn, &m->conn, &err) == -1)
			return;
	}
	if (db_exec(m->conn, &res, &err, "SELECT"
	    " count(*) FILTER (WHERE d.state = 'queued'),"
	    " count(*) FILTER (WHERE d.state = 'sending')"
	    " FROM deliveries d JOIN campaigns c ON c.id = d.campaign_id"
	    " WHERE c.state = 'sending' AND d.state IN ('queued', 'sending')",
	    0, NULL) == -1)
		return;
	*queued = strtol(PQgetvalue(res, 0, 0), NULL, 10);
	*sending = strtol(PQgetvalue(res, 0, 1), NULL, 10);
	PQclear(res);
}

static enum MHD_Result
metrics_answer(struct metrics_server *m, struct MHD_Connection *conn,
    const char *url, const char *method)
{
	struct MHD_Response *resp;
	enum MHD_Result ret;
	long queued, sending;
	struct buf b;
	unsigned int status = MHD_HTTP_OK;

	buf_init(&b);
	if (strcmp(method, "GET") != 0 && strcmp(method, "HEAD") != 0) {
		status = MHD_HTTP_METHOD_NOT_ALLOWED;
		buf_add_str(&b, "method not allowed\n");
	} else if (strcmp(url, "/metrics") == 0) {
		metrics_queue(m, &queued, &sending);
		metrics_render(&b, queued, sending);
	} else {
		status = MHD_HTTP_NOT_FOUND;
		buf_add_str(&b, "not found\n");
	}
	resp = MHD_create_response_from_buffer(b.len, b.data, MHD_RESPMEM_MUST_COPY);
	buf_free(&b);
	if (resp == NULL)
		return MHD_NO;
	MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE,
	    status == MHD_HTTP_OK ? "text/plain; version=0.0.4" : "text/plain");
	MHD_add_response_header(resp, MHD_HTTP_HEADER_CACHE_CONTROL, "no-store");
	ret = MHD_queue_response(conn, status, resp);
	MHD_destroy_response(resp);
	return ret;
}

static enum MHD_Result
metrics_dispatch(void *cls, struct MHD_Connection *conn, const char *url,
    const char *method, const char *version, const char *upload_data,
    size_t *upload_data_size, void **req_cls)
{
	static int seen;

	(void)version;
	(void)upload_data;
	if (*req_cls == NULL) {         /* headers only: answer on the next call */
		*req_cls = &seen;
		return MHD_YES;
	}
	if (*upload_data_size != 0) {
		*upload_data_size = 0;
		return MHD_YES;
	}
	return metrics_answer(cls, conn, url, method);
}

int
metrics_start(const struct assent_conf *conf, struct metrics_server **m_r,
    struct assent_err *err)
{
	struct metrics_server *m;
	struct addrinfo hints, *ai;
	char port[16];
	int rc;

	*m_r = NULL;
	if (conf->http_admin_port == 0)
		return 0;
	memset(&hints, 0, sizeof(hints));
	hints.ai_socktype = SOCK_STREAM;
	hints.ai_flags = AI_NUMERICHOST | AI_NUMERICSERV | AI_PASSIVE;
	snprintf(port, sizeof(port), "%d", conf->http_admin_port);
	if ((rc = getaddrinfo(conf->http_admin_listen, port, &hints, &ai)) != 0)
		return err_set(err, EX_CONFIG, "http.admin_listen: \"%s\": %s",
		    conf->http_admin_listen, gai_strerror(rc));
	m = xcalloc(1, sizeof(*m));
	m->dsn = xstrdup(conf->database_dsn);
	m->mhd = MHD_start_daemon(MHD_USE_INTERNAL_POLLING_THREAD |
	    (ai->ai_family == AF_INET6 ? MHD_USE_IPv6 : 0), 0, NULL, NULL,
	    metrics_dispatch, m, MHD_OPTION_SOCK_ADDR, ai->ai_addr,
	    MHD_OPTION_CONNECTION_LIMIT, (unsigned int)16,
	    MHD_OPTION_CONNECTION_TIMEOUT, (unsigned int)10, MHD_OPTION_END);
	freeaddrinfo(ai);
	if (m->mhd == NULL) {
		free(m->dsn);
		free(m);
		return err_set(err, EX_UNAVAILABLE, "cannot listen on %s port %d for "
		    "/metrics", conf->http_admin_listen, conf->http_admin_port);
	}
	log_info("metrics on http://%s:%d/metrics", conf->http_admin_listen,
	    conf->http_admin_port);
	*m_r = m;
	return 0;
}

void
metrics_stop(struct metrics_server *m)
{
	if (m == NULL)
		return;
	MHD_stop_daemon(m->mhd);
	db_close(m->conn);
	free(m->dsn);
	free(m);
}

/* web: assentd's HTTP server and its routes; see assentd.h */
#include <sys/types.h>
#include <sys/socket.h>
#include <netdb.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "assent/db.h"
#include "assent/log.h"
#include "assent/xmalloc.h"
#include "assentd.h"

#define WEB_THREADS          2
#define WEB_CONN_LIMIT       256
#define WEB_PER_IP_LIMIT     64
#define WEB_TIMEOUT_SECONDS  30

struct web {
	struct MHD_Daemon *mhd;
	char              *dsn;          /* copied from the configuration */
	pthread_key_t      db_key;       /* each pool thread's PGconn */

	/* While MHD_start_daemon() runs, the last error it logged, so a
	 * failure to bind can say why. */
	pthread_mutex_t    log_lock;
	bool               starting;
	char               start_error[256];
};

static enum MHD_Result web_healthz(struct web *, struct MHD_Connection *,
    const char *);

/* Later issues add /u/, /c/, /s/ and /metrics here. */
static const struct web_route web_routes[] = {
	{ "GET", "/healthz", web_healthz },
};
#define WEB_NROUTES (sizeof(web_routes) / sizeof(web_routes[0]))

/* A marker for "the first call for this request has been seen". */
static int web_request_seen;

/* ---- responses ------------------------------------------------------- */

/* Every response carries these. */
static const struct {
	const char *name, *value;
} web_security_headers[] = {
	{ "X-Content-Type-Options", "nosniff" },
	{ MHD_HTTP_HEADER_CACHE_CONTROL, "no-store" },
	{ "Referrer-Policy", "no-referrer" },
};

/* A response holding a copy of body; NULL when out of memory. */
static struct MHD_Response *
web_response(const char *content_type, const char *body)
{
	struct MHD_Response *resp;

	resp = MHD_create_response_from_buffer(strlen(body), (void *)body,
	    MHD_RESPMEM_MUST_COPY);
	if (resp == NULL)
		return NULL;
	MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, content_type);
	for (size_t i = 0; i < sizeof(web_security_headers) /
	    sizeof(web_security_headers[0]); i++)
		MHD_add_response_header(resp, web_security_headers[i].name,
		    web_security_headers[i].value);
	return resp;
}

/* Queue resp (NULL: fail the request) and drop our reference. */
static enum MHD_Result
web_queue(struct MHD_Connection *conn, unsigned int status,
    struct MHD_Response *resp)
{
	enum MHD_Result ret;

	if (resp == NULL)
		return MHD_NO;
	ret = MHD_queue_response(conn, status, resp);
	MHD_destroy_response(resp);
	return ret;
}

enum MHD_Result
web_reply(struct MHD_Connection *conn, unsigned int status,
    const char *content_type, const char *body)
{
	return web_queue(conn, status, web_response(content_type, body));
}

static enum MHD_Result
web_reply_405(struct MHD_Connection *conn, const char *allow)
{
	struct MHD_Response *resp;

	resp = web_response("text/plain", "method not allowed\n");
	if (resp != NULL)
		MHD_add_response_header(resp, MHD_HTTP_HEADER_ALLOW, allow);
	return web_queue(conn, MHD_HTTP_METHOD_NOT_ALLOWED, resp);
}

/* ---- per-thread database connections --------------------------------- */

/* Runs when a pool thread exits (MHD_stop_daemon joins them). */
static void
web_db_release(void *conn)
{
	db_close(conn);
}

PGconn *
web_db(struct web *web)
{
	struct assent_err err;
	PGconn *conn;

	conn = pthread_getspecific(web->db_key);
	if (conn != NULL && PQstatus(conn) == CONNECTION_OK)
		return conn;
	if (conn != NULL) {
		db_close(conn);
		pthread_setspecific(web->db_key, NULL);
	}
	if (db_connect(web->dsn, &conn, &err) == -1) {
		log_debug("http: database unavailable: %s", err.msg);
		return NULL;
	}
	/* A pool thread must not hang on a stuck server: the next request,
	 * a one-click unsubscribe perhaps, waits for it. */
	if (db_exec(conn, NULL, &err, "SET statement_timeout = '5s'", 0, NULL) == -1) {
		log_debug("http: database: %s", err.msg);
		db_close(conn);
		return NULL;
	}
	pthread_setspecific(web->db_key, conn);
	return conn;
}

/* ---- routes ------------------------------------------------------------ */

static bool
web_db_answers(struct web *web)
{
	PGconn *conn;

	if ((conn = web_db(web)) == NULL)
		return false;
	if (db_ping(conn))
		return true;
	/* The server may have restarted since this thread last asked:
	 * one fresh connection before calling it down. */
	if (PQstatus(conn) == CONNECTION_OK)
		return false;
	if ((conn = web_db(web)) == NULL)
		return false;
	return db_ping(conn) != 0;
}

static enum MHD_Result
web_healthz(struct web *web, struct MHD_Connection *conn, const char *url)
{
	(void)url;
	if (web_db_answers(web))
		return web_reply(conn, MHD_HTTP_OK, "text/plain", "ok\n");
	return web_reply(conn, MHD_HTTP_SERVICE_UNAVAILABLE, "text/plain",
	    "database unavailable\n");
}

/* ---- dispatch ------------------------------------------------------------ */

static bool
web_path_matches(const char *path, const char *url)
{
	size_t len = strlen(path);

	if (len > 0 && path[len - 1] == '/')
		return strncmp(path, url, len) == 0;
	return strcmp(path, url) == 0;
}

static bool
web_method_matches(const char *route_method, const char *method)
{
	if (strcmp(route_method, method) == 0)
		return true;
	return strcmp(route_method, "GET") == 0 && strcmp(method, "HEAD") == 0;
}

/* Append "METHOD" (and ", HEAD" after GET) to an Allow list. */
static void
web_allow_add(char *allow, size_t size, const char *method)
{
	const char *sep = allow[0] == '\0' ? "" : ", ";
	size_t len = strlen(allow);

	snprintf(allow + len, size - len, "%s%s%s", sep, method,
	    strcmp(method, "GET") == 0 ? ", HEAD" : "");
}

static enum MHD_Result
web_route(struct web *web, struct MHD_Connection *conn, const char *url,
    const char *method)
{
	char allow[128] = "";

	for (size_t i = 0; i < WEB_NROUTES; i++) {
		const struct web_route *r = &web_routes[i];

		if (!web_path_matches(r->path, url))
			continue;
		if (web_method_matches(r->method, method))
			return r->handler(web, conn, url);
		web_allow_add(allow, sizeof(allow), r->method);
	}
	if (allow[0] != '\0')
		return web_reply_405(conn, allow);
	return web_reply(conn, MHD_HTTP_NOT_FOUND, "text/plain", "not found\n");
}

static enum MHD_Result
web_dispatch(void *cls, struct MHD_Connection *conn, const char *url,
    const char *method, const char *version, const char *upload_data,
    size_t *upload_data_size, void **req_cls)
{
	(void)version;
	(void)upload_data;
	/* The first call carries only the headers: answering now would
	 * make MHD close the connection. */
	if (*req_cls == NULL) {
		*req_cls = &web_request_seen;
		return MHD_YES;
	}
	/* No route reads a body yet: discard it, answer on the last call. */
	if (*upload_data_size != 0) {
		*upload_data_size = 0;
		return MHD_YES;
	}
	return web_route(cls, conn, url, method);
}

/* ---- start and stop ------------------------------------------------------ */

/* MHD's error log, one line each, into log.h. */
static void
web_mhd_log(void *cls, const char *fmt, va_list ap)
{
	struct web *web = cls;
	char msg[512];
	size_t len;

	vsnprintf(msg, sizeof(msg), fmt, ap);
	len = strlen(msg);
	while (len > 0 && (msg[len - 1] == '\n' || msg[len - 1] == '\r'))
		msg[--len] = '\0';
	log_warnx("http: %s", msg);
	pthread_mutex_lock(&web->log_lock);
	if (web->starting)
		snprintf(web->start_error, sizeof(web->start_error), "%s", msg);
	pthread_mutex_unlock(&web->log_lock);
}

static int
web_address(const struct assent_conf *conf, struct addrinfo **ai_r,
    struct assent_err *err)
{
	struct addrinfo hints;
	char port[16];
	int rc;

	memset(&hints, 0, sizeof(hints));
	hints.ai_family = AF_UNSPEC;
	hints.ai_socktype = SOCK_STREAM;
	hints.ai_flags = AI_NUMERICHOST | AI_NUMERICSERV | AI_PASSIVE;
	snprintf(port, sizeof(port), "%d", conf->http_port);
	rc = getaddrinfo(conf->http_listen, port, &hints, ai_r);
	if (rc != 0)
		return err_set(err, EX_CONFIG, "http.listen: \"%s\" is not an "
		    "IPv4 or IPv6 address: %s", conf->http_listen,
		    gai_strerror(rc));
	return 0;
}

static struct MHD_Daemon *
web_mhd_start(struct web *web, const struct addrinfo *ai)
{
	unsigned int flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_ITC |
	    MHD_USE_ERROR_LOG;

	if (ai->ai_family == AF_INET6)
		flags |= MHD_USE_IPv6;
	/* The logger goes first, or MHD's own logger takes the messages
	 * about the options before it. */
	return MHD_start_daemon(flags, 0, NULL, NULL, web_dispatch, web,
	    MHD_OPTION_EXTERNAL_LOGGER, web_mhd_log, web,
	    MHD_OPTION_SOCK_ADDR, ai->ai_addr,
	    MHD_OPTION_THREAD_POOL_SIZE, (unsigned int)WEB_THREADS,
	    MHD_OPTION_CONNECTION_LIMIT, (unsigned int)WEB_CONN_LIMIT,
	    MHD_OPTION_PER_IP_CONNECTION_LIMIT, (unsigned int)WEB_PER_IP_LIMIT,
	    MHD_OPTION_CONNECTION_TIMEOUT, (unsigned int)WEB_TIMEOUT_SECONDS,
	    MHD_OPTION_END);
}

static struct web *
web_new(const char *dsn)
{
	struct web *web = xcalloc(1, sizeof(*web));

	web->dsn = xstrdup(dsn);
	if (pthread_key_create(&web->db_key, web_db_release) != 0)
		fatalx("web: cannot create a thread key");
	pthread_mutex_init(&web->log_lock, NULL);
	return web;
}

static void
web_free(struct web *web)
{
	pthread_key_delete(web->db_key);
	pthread_mutex_destroy(&web->log_lock);
	free(web->dsn);
	free(web);
}

/* "HOST:PORT", with brackets around an IPv6 HOST. */
static void
web_endpoint(const struct addrinfo *ai, const struct assent_conf *conf,
    char *buf, size_t size)
{
	if (ai->ai_family == AF_INET6)
		snprintf(buf, size, "[%s]:%d", conf->http_listen, conf->http_port);
	else
		snprintf(buf, size, "%s:%d", conf->http_listen, conf->http_port);
}

int
web_start(const struct assent_conf *conf, struct web **web_r,
    struct assent_err *err)
{
	struct addrinfo *ai = NULL;
	struct web *web;
	char endpoint[320];

	if (web_address(conf, &ai, err) == -1)
		return -1;
	web_endpoint(ai, conf, endpoint, sizeof(endpoint));
	web = web_new(conf->database_dsn);
	web->starting = true;
	web->mhd = web_mhd_start(web, ai);
	freeaddrinfo(ai);
	pthread_mutex_lock(&web->log_lock);
	web->starting = false;
	pthread_mutex_unlock(&web->log_lock);
	if (web->mhd == NULL) {
		err_set(err, EX_UNAVAILABLE, "cannot listen on %s: %s", endpoint,
		    web->start_error[0] != '\0' ? web->start_error :
		    "libmicrohttpd failed to start");
		web_free(web);
		return -1;
	}
	log_info("listening on http://%s", endpoint);
	*web_r = web;
	return 0;
}

void
web_stop(struct web *web)
{
	MHD_socket fd;

	if (web == NULL)
		return;
	/* Stop accepting first; the connections in flight finish or are
	 * closed by MHD_stop_daemon(), which joins the pool threads (their
	 * database connections close as they exit). */
	fd = MHD_quiesce_daemon(web->mhd);
	if (fd != MHD_INVALID_SOCKET)
		close(fd);
	MHD_stop_daemon(web->mhd);
	web_free(web);
}

/* web: assentd's HTTP server and its routes; see assentd.h */
#include <sys/types.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netdb.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include "assent/buf.h"
#include "assent/db.h"
#include "assent/keys.h"
#include "assent/log.h"
#include "assent/suppress.h"
#include "assent/text.h"
#include "assent/token.h"
#include "assent/xmalloc.h"
#include "assentd.h"

#define WEB_THREADS_PER_CPU  2       /* pool threads: a POST waits on */
#define WEB_THREADS_MIN      4       /* the database, so more than one */
#define WEB_THREADS_MAX      32      /* a CPU, within these */
#define WEB_CONN_LIMIT       256
#define WEB_PER_IP_LIMIT     64
#define WEB_TIMEOUT_SECONDS  10
#define WEB_DISCARD_MAX      (64 * 1024) /* body bytes read past the cap
                                          * before the connection is cut */

/* POSTs per client address: a token bucket each, in a small table
 * indexed by a hash of the address. Addresses that collide share a
 * bucket; a slot is handed over only once its bucket has refilled, so
 * a collision never gives anyone a fresh burst. */
#define WEB_RATE_SLOTS       1024
#define WEB_RATE_PER_SECOND  10.0
#define WEB_RATE_BURST       30.0

/* POSTs to the subscribe form per client address: every one counts,
 * valid or not (a sign-up costs a database write and may send mail). */
#define WEB_SIGNUP_PER_SECOND 0.1
#define WEB_SIGNUP_BURST      10.0
#define WEB_SIGNUP_RETRY      10     /* seconds, for Retry-After */

/* /healthz asks the database at most this often (seconds); between
 * checks every thread answers with the last result. */
#define WEB_HEALTH_TTL       1.0

/* After a token fails, look at the keys file at most this often
 * (seconds) for a rotation. */
#define WEB_KEYS_RECHECK     1.0

struct web_bucket {
	double          tokens;
	double          at;             /* seconds, monotonic */
	bool            used;
};

/* A table of buckets for one kind of request. */
struct web_rate {
	pthread_mutex_t    lock;
	struct web_bucket *buckets;      /* WEB_RATE_SLOTS */
	double             per_second;
	double             burst;
};

/* The last database check, for /healthz. */
struct web_health {
	pthread_mutex_t lock;
	double          at;             /* when asked last; 0: never */
	bool            ok;
	bool            known;          /* ok holds an answer */
};

struct web {
	struct MHD_Daemon *mhd;
	char              *dsn;          /* copied from the configuration */
	pthread_key_t      db_key;       /* each pool thread's PGconn */
	pthread_key_t      signer_key;   /* each pool thread's web_signer_slot */

	/* The keys, loaded again when the file changes (a rotation), so
	 * links signed with a new key work without a restart. */
	pthread_mutex_t    keys_lock;
	char              *keys_path;
	struct keys       *keys;         /* NULL: the file could not be loaded */
	unsigned int       keys_gen;     /* bumped on each load */
	struct stat        keys_st;      /* the file as last tried */
	double             keys_checked; /* when it was last looked at */
	long               confirm_ttl;
	char              *organisation;
	char              *base_url;
	bool               gmail_mailbox_key;
	struct in6_addr   *proxies;      /* trusted proxies, IPv4 mapped */
	size_t             nproxies;
	struct web_pages  *pages;

	struct web_rate    post_rate;    /* POSTs with a bad token */
	struct web_rate    signup_rate;  /* POSTs to /s/ */
	struct web_health  health;
	struct web_lists  *lists;        /* web_lists.c */

	/* While MHD_start_daemon() runs, the last error it logged, so a
	 * failure to bind can say why. */
	pthread_mutex_t    log_lock;
	bool               starting;
	char               start_error[256];
};

static enum MHD_Result web_healthz(struct web *, struct MHD_Connection *,
    const struct web_request *);

/* /metrics is on the admin address (metrics.c). */
static const struct web_route web_routes[] = {
	{ "GET",  "/healthz", web_healthz },
	{ "GET",  "/u/",      web_unsubscribe_get },
	{ "POST", "/u/",      web_unsubscribe_post },
	{ "GET",  "/c/",      web_confirm_get },
	{ "POST", "/c/",      web_confirm_post },
	{ "GET",  "/s/",      web_subscribe_get },
	{ "POST", "/s/",      web_subscribe_post },
};
#define WEB_NROUTES (sizeof(web_routes) / sizeof(web_routes[0]))

/* What dispatch keeps for one request between handler calls; freed
 * when MHD says the request is complete. */
struct web_state {
	struct buf body;
	size_t     discarded;   /* bytes read past WEB_BODY_MAX */
	bool       too_large;
	bool       answered;    /* a response was queued early (413) */
};

/* ---- responses (the rest is web_page.c) ------------------------------- */

static enum MHD_Result
web_reply_405(struct web *web, struct MHD_Connection *conn, const char *allow)
{
	struct MHD_Response *resp;

	resp = web_page_make(web, "Method not allowed", NULL,
	    "<p>This address does not take that kind of request.</p>\n");
	if (resp != NULL)
		MHD_add_response_header(resp, MHD_HTTP_HEADER_ALLOW, allow);
	return web_queue(conn, MHD_HTTP_METHOD_NOT_ALLOWED, resp);
}

/* OPTIONS on a known path: what it allows, no body, nothing done. */
static enum MHD_Result
web_reply_options(struct MHD_Connection *conn, const char *allow)
{
	struct MHD_Response *resp;
	char all[160];

	snprintf(all, sizeof(all), "%s, OPTIONS", allow);
	resp = web_response("text/plain", "");
	if (resp != NULL)
		MHD_add_response_header(resp, MHD_HTTP_HEADER_ALLOW, all);
	return web_queue(conn, MHD_HTTP_NO_CONTENT, resp);
}

/* Set by web_note_refused() while this thread answers a request. */
static _Thread_local bool web_refused;

void
web_note_refused(void)
{
	web_refused = true;
}

/* Too many POSTs from one client: when to come back. */
static enum MHD_Result
web_reply_429(struct web *web, struct MHD_Connection *conn,
    unsigned int seconds)
{
	return web_page_retry(web, conn, MHD_HTTP_TOO_MANY_REQUESTS,
	    "Too many requests", "<p>Too many requests. Please try again in "
	    "a minute.</p>\n", seconds);
}

enum MHD_Result
web_too_many(struct web *web, struct MHD_Connection *conn)
{
	metrics_signup_limited();
	return web_reply_429(web, conn, WEB_SIGNUP_RETRY);
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
	/* lock_timeout: a row held elsewhere must not hold up the pool
	 * thread (and every connection it serves) for long */
	if (db_exec(conn, NULL, &err, "SET statement_timeout = '5s'", 0, NULL) == -1 ||
	    db_exec(conn, NULL, &err, "SET lock_timeout = '2s'", 0, NULL) == -1) {
		log_debug("http: database: %s", err.msg);
		db_close(conn);
		return NULL;
	}
	pthread_setspecific(web->db_key, conn);
	return conn;
}

/* ---- keys and per-thread token signers ------------------------------------ */

/* A pool thread's signer and suppression gate (with its own copy of
 * the pepper), and which load of the keys they were made from. */
struct web_signer_slot {
	struct token_signer *signer;
	unsigned char       *pepper;
	struct suppress_ctx  gate;
	unsigned int         gen;
};

static void
web_signer_release(void *p)
{
	struct web_signer_slot *slot = p;

	token_signer_free(slot->signer);
	free(slot->pepper);
	free(slot);
}

/* This thread's slot, made again when the keys were loaded anew; NULL
 * when there are no keys. */
static struct web_signer_slot *
web_slot(struct web *web)
{
	struct web_signer_slot *slot = pthread_getspecific(web->signer_key);
	struct token_signer *signer = NULL;
	unsigned char *pepper = NULL;
	struct assent_err err;
	size_t pepper_len = 0;
	unsigned int gen;

	pthread_mutex_lock(&web->keys_lock);
	gen = web->keys_gen;
	if (slot != NULL && slot->gen == gen && slot->signer != NULL) {
		pthread_mutex_unlock(&web->keys_lock);
		return slot;
	}
	/* token_signer_new() copies the secrets, and so do we the pepper:
	 * web->keys may go later. */
	if (web->keys != NULL && token_signer_new(web->keys, &signer, &err) == -1)
		log_warnx("http: %s", err.msg);
	if (signer != NULL) {
		const unsigned char *p = keys_pepper(web->keys, &pepper_len);

		pepper = xmalloc(pepper_len);
		memcpy(pepper, p, pepper_len);
	}
	pthread_mutex_unlock(&web->keys_lock);
	if (signer == NULL)
		return NULL;
	if (slot == NULL) {
		slot = xcalloc(1, sizeof(*slot));
		pthread_setspecific(web->signer_key, slot);
	}
	token_signer_free(slot->signer);
	free(slot->pepper);
	slot->signer = signer;
	slot->pepper = pepper;
	slot->gate.pepper = pepper;
	slot->gate.pepper_len = pepper_len;
	slot->gate.gmail_mailbox_key = web->gmail_mailbox_key;
	slot->gen = gen;
	return slot;
}

struct token_signer *
web_signer(struct web *web)
{
	struct web_signer_slot *slot = web_slot(web);

	return slot != NULL ? slot->signer : NULL;
}

const struct suppress_ctx *
web_gate(struct web *web)
{
	struct web_signer_slot *slot = web_slot(web);

	return slot != NULL ? &slot->gate : NULL;
}

static bool
web_keys_same_file(const struct stat *a, const struct stat *b)
{
	/* ctime too: a chmod that makes a refused file private changes
	 * nothing else */
	return a->st_dev == b->st_dev && a->st_ino == b->st_ino &&
	    a->st_size == b->st_size && a->st_mode == b->st_mode &&
	    a->st_mtim.tv_sec == b->st_mtim.tv_sec &&
	    a->st_mtim.tv_nsec == b->st_mtim.tv_nsec &&
	    a->st_ctim.tv_sec == b->st_ctim.tv_sec &&
	    a->st_ctim.tv_nsec == b->st_ctim.tv_nsec;
}

/* Load the keys file if it changed since it was last tried; with
 * web->keys_lock held. A file that fails is logged once per change. */
static bool
web_keys_load_locked(struct web *web, bool first)
{
	struct assent_err err;
	struct keys *keys;
	struct stat st;

	web->keys_checked = web_seconds();
	if (stat(web->keys_path, &st) == 0) {
		if (!first && web_keys_same_file(&st, &web->keys_st))
			return false;
		web->keys_st = st;
	} else if (!first) {
		return false;
	}
	if (keys_load(web->keys_path, &keys, &err) == -1) {
		log_warnx("http: %s: %s", web->keys != NULL ? "keeping the keys "
		    "loaded before" : "/u/ and /c/ will answer 503", err.msg);
		return false;
	}
	keys_free(web->keys);
	web->keys = keys;
	web->keys_gen++;
	if (!first)
		log_info("http: loaded the keys again from %s", web->keys_path);
	return true;
}

bool
web_keys_refresh(struct web *web)
{
	bool loaded = false;

	pthread_mutex_lock(&web->keys_lock);
	if (web_seconds() - web->keys_checked >= WEB_KEYS_RECHECK)
		loaded = web_keys_load_locked(web, false);
	pthread_mutex_unlock(&web->keys_lock);
	return loaded;
}

long
web_confirm_ttl(const struct web *web)
{
	return web->confirm_ttl;
}

const char *
web_organisation(const struct web *web)
{
	return web->organisation;
}

const char *
web_base_url(const struct web *web)
{
	return web->base_url;
}

struct web_pages *
web_pages_of(struct web *web)
{
	return web->pages;
}

struct web_lists *
web_lists_of(struct web *web)
{
	return web->lists;
}

/* ---- client addresses ---------------------------------------------------- */

/* An IPv4 or IPv6 literal as an IPv6 address (IPv4 mapped). */
static bool
web_ip_parse(const char *s, struct in6_addr *a)
{
	struct in_addr v4;

	if (inet_pton(AF_INET6, s, a) == 1)
		return true;
	if (inet_pton(AF_INET, s, &v4) != 1)
		return false;
	memset(a, 0, sizeof(*a));
	a->s6_addr[10] = 0xff;
	a->s6_addr[11] = 0xff;
	memcpy(&a->s6_addr[12], &v4, 4);
	return true;
}

/* The literal, IPv4-mapped addresses as IPv4. */
static void
web_ip_format(const struct in6_addr *a, char *buf, size_t size)
{
	if (IN6_IS_ADDR_V4MAPPED(a))
		inet_ntop(AF_INET, &a->s6_addr[12], buf, (socklen_t)size);
	else
		inet_ntop(AF_INET6, a, buf, (socklen_t)size);
}

static bool
web_ip_peer(struct MHD_Connection *conn, struct in6_addr *a)
{
	const union MHD_ConnectionInfo *ci;
	const struct sockaddr *sa;

	ci = MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
	if (ci == NULL || (sa = ci->client_addr) == NULL)
		return false;
	if (sa->sa_family == AF_INET6) {
		*a = ((const struct sockaddr_in6 *)(const void *)sa)->sin6_addr;
		return true;
	}
	if (sa->sa_family != AF_INET)
		return false;
	memset(a, 0, sizeof(*a));
	a->s6_addr[10] = 0xff;
	a->s6_addr[11] = 0xff;
	memcpy(&a->s6_addr[12],
	    &((const struct sockaddr_in *)(const void *)sa)->sin_addr, 4);
	return true;
}

static bool
web_ip_trusted(const struct web *web, const struct in6_addr *a)
{
	for (size_t i = 0; i < web->nproxies; i++)
		if (memcmp(&web->proxies[i], a, sizeof(*a)) == 0)
			return true;
	return false;
}

/* Every X-Forwarded-For header, in order, joined with commas. */
static enum MHD_Result
web_xff_collect(void *cls, enum MHD_ValueKind kind, const char *key,
    const char *value)
{
	struct buf *b = cls;

	(void)kind;
	if (strcasecmp(key, "X-Forwarded-For") != 0 || value == NULL)
		return MHD_YES;
	if (b->len > 0)
		buf_add_str(b, ",");
	buf_add_str(b, value);
	return MHD_YES;
}

/* From the right of X-Forwarded-For: the first address that is not a
 * trusted proxy. false when an entry is not an IP literal (the peer
 * stands then); the leftmost when every one is trusted. */
static bool
web_xff_client(const struct web *web, char *list, struct in6_addr *a)
{
	char *comma;

	for (;;) {
		char *item = (comma = strrchr(list, ',')) != NULL ? comma + 1 : list;
		size_t len;

		item += strspn(item, " \t");
		len = strlen(item);
		while (len > 0 && (item[len - 1] == ' ' || item[len - 1] == '\t'))
			item[--len] = '\0';
		if (!web_ip_parse(item, a))
			return false;
		if (!web_ip_trusted(web, a) || comma == NULL)
			return true;
		*comma = '\0';
	}
}

/* The client's address as a literal into buf. */
static void
web_client_ip(const struct web *web, struct MHD_Connection *conn,
    struct in6_addr *a, char *buf, size_t size)
{
	struct in6_addr from;
	struct buf xff;

	if (!web_ip_peer(conn, a)) {
		memset(a, 0, sizeof(*a));
		snprintf(buf, size, "%s", "");
		return;
	}
	if (web_ip_trusted(web, a)) {
		buf_init(&xff);
		MHD_get_connection_values(conn, MHD_HEADER_KIND, web_xff_collect,
		    &xff);
		if (xff.len > 0 && web_xff_client(web, xff.data, &from))
			*a = from;
		buf_free(&xff);
	}
	web_ip_format(a, buf, size);
}

/* "10.0.0.1, ::1" into web->proxies; conf.c checked the syntax. */
static int
web_proxies_parse(struct web *web, const char *text, struct assent_err *err)
{
	char *copy = xstrdup(text), *save = NULL;

	for (char *item = strtok_r(copy, ", \t", &save); item != NULL;
	    item = strtok_r(NULL, ", \t", &save)) {
		web->proxies = xreallocarray(web->proxies, web->nproxies + 1,
		    sizeof(*web->proxies));
		if (!web_ip_parse(item, &web->proxies[web->nproxies])) {
			err_set(err, EX_CONFIG, "http.trusted_proxies: \"%s\" is "
			    "not an IP address", item);
			free(copy);
			return -1;
		}
		web->nproxies++;
	}
	free(copy);
	return 0;
}

/* ---- rate limit ------------------------------------------------------------ */

double
web_seconds(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void
web_rate_init(struct web_rate *rate, double per_second, double burst)
{
	pthread_mutex_init(&rate->lock, NULL);
	rate->buckets = xcalloc(WEB_RATE_SLOTS, sizeof(*rate->buckets));
	rate->per_second = per_second;
	rate->burst = burst;
}

static void
web_rate_free(struct web_rate *rate)
{
	pthread_mutex_destroy(&rate->lock);
	free(rate->buckets);
}

/* The bytes of a that name one client for the limits: an IPv4
 * address whole, an IPv6 one by its /64 (a single host is routinely
 * given a /64, and could otherwise take a fresh bucket per address). */
static size_t
web_rate_key(const struct in6_addr *a, const uint8_t **key_r)
{
	*key_r = a->s6_addr;
	return IN6_IS_ADDR_V4MAPPED(a) ? sizeof(a->s6_addr) : 8;
}

/* May a request from a go ahead now? With charge, it takes a token
 * from its bucket. */
static bool
web_rate_allow(struct web_rate *rate, const struct in6_addr *a, bool charge)
{
	struct web_bucket *bk;
	uint32_t h = 2166136261u;
	double now = web_seconds();
	const uint8_t *key;
	size_t len = web_rate_key(a, &key);
	bool allow;

	for (size_t i = 0; i < len; i++)
		h = (h ^ key[i]) * 16777619u;
	pthread_mutex_lock(&rate->lock);
	bk = &rate->buckets[h % WEB_RATE_SLOTS];
	if (bk->used)
		bk->tokens += (now - bk->at) * rate->per_second;
	if (!bk->used || bk->tokens > rate->burst) {
		bk->used = true;
		bk->tokens = rate->burst;
	}
	bk->at = now;
	if ((allow = bk->tokens >= 1.0) && charge)
		bk->tokens -= 1.0;
	pthread_mutex_unlock(&rate->lock);
	return allow;
}

bool
web_costly_allow(struct web *web, const struct web_request *req)
{
	return web_rate_allow(&web->signup_rate, req->addr, true);
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

/* The database answers: asked at most once in WEB_HEALTH_TTL, across
 * the threads (a load balancer polling many times a second, or a flood
 * of /healthz, must not become a flood of queries). */
static bool
web_db_healthy(struct web *web)
{
	struct web_health *h = &web->health;
	double now = web_seconds();
	bool ok, ask;

	pthread_mutex_lock(&h->lock);
	ok = h->ok;
	/* Until a first answer is in, each asks for itself. */
	ask = !h->known || now - h->at >= WEB_HEALTH_TTL;
	if (ask)
		h->at = now;    /* the others use the last answer meanwhile */
	pthread_mutex_unlock(&h->lock);
	if (!ask)
		return ok;
	ok = web_db_answers(web);
	pthread_mutex_lock(&h->lock);
	h->ok = ok;
	h->known = true;
	h->at = web_seconds();
	pthread_mutex_unlock(&h->lock);
	return ok;
}

static enum MHD_Result
web_healthz(struct web *web, struct MHD_Connection *conn,
    const struct web_request *req)
{
	(void)req;
	if (web_db_healthy(web))
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
web_route(struct web *web, struct MHD_Connection *conn,
    const struct web_request *req)
{
	char allow[128] = "";

	for (size_t i = 0; i < WEB_NROUTES; i++) {
		const struct web_route *r = &web_routes[i];

		if (!web_path_matches(r->path, req->url))
			continue;
		if (web_method_matches(r->method, req->method))
			return r->handler(web, conn, req);
		web_allow_add(allow, sizeof(allow), r->method);
	}
	if (allow[0] != '\0' && strcmp(req->method, "OPTIONS") == 0)
		return web_reply_options(conn, allow);
	if (allow[0] != '\0')
		return web_reply_405(web, conn, allow);
	return web_not_found(web, conn);
}

/* Which route url counts under in /metrics. */
static enum metrics_route
web_metrics_route(const char *url)
{
	if (strncmp(url, "/u/", 3) == 0)
		return METRICS_UNSUBSCRIBE;
	if (strncmp(url, "/c/", 3) == 0)
		return METRICS_CONFIRM;
	if (strncmp(url, "/s/", 3) == 0)
		return METRICS_SUBSCRIBE;
	if (strcmp(url, "/healthz") == 0)
		return METRICS_HEALTHZ;
	return METRICS_OTHER;
}

enum MHD_Result
web_not_found(struct web *web, struct MHD_Connection *conn)
{
	return web_page(web, conn, MHD_HTTP_NOT_FOUND, "Not found",
	    "<p>There is nothing at this address.</p>\n");
}

static enum MHD_Result
web_reply_413(struct web *web, struct MHD_Connection *conn)
{
	return web_page(web, conn, MHD_HTTP_CONTENT_TOO_LARGE, "Too large",
	    "<p>The request was too large.</p>\n");
}

/* Is a POST to url from addr over a limit already? Then its 429, on
 * the headers: a flood costs no body read, no parse, no query. Nothing
 * is charged here (web_dispatch() does that on the last call). */
static bool
web_request_limited(struct web *web, struct MHD_Connection *conn,
    const char *url, const char *method, enum MHD_Result *ret)
{
	struct in6_addr addr;
	char ip[INET6_ADDRSTRLEN];
	bool posts, signups;

	if (strcmp(method, "POST") != 0)
		return false;
	web_client_ip(web, conn, &addr, ip, sizeof(ip));
	posts = web_rate_allow(&web->post_rate, &addr, false);
	signups = strncmp(url, "/s/", 3) != 0 ||
	    web_rate_allow(&web->signup_rate, &addr, false);
	if (posts && signups)
		return false;
	metrics_set_route(web_metrics_route(url));
	*ret = !posts ? web_reply_429(web, conn, 5) : web_too_many(web, conn);
	return true;
}

/* The first call: new state; a body announced as too large, or a POST
 * from a client over its limit, is refused at once (MHD closes the
 * connection instead of reading the body). */
static enum MHD_Result
web_request_begin(struct web *web, struct MHD_Connection *conn,
    const char *url, const char *method, void **req_cls)
{
	struct web_state *st = xcalloc(1, sizeof(*st));
	enum MHD_Result ret;
	const char *cl;

	buf_init(&st->body);
	*req_cls = st;
	cl = MHD_lookup_connection_value(conn, MHD_HEADER_KIND,
	    MHD_HTTP_HEADER_CONTENT_LENGTH);
	if (cl != NULL && strtoull(cl, NULL, 10) > WEB_BODY_MAX) {
		st->too_large = st->answered = true;
		metrics_set_route(web_metrics_route(url));
		return web_reply_413(web, conn);
	}
	if (web_request_limited(web, conn, url, method, &ret)) {
		st->answered = true;
		return ret;
	}
	return MHD_YES;
}

/* A piece of the body: kept up to the cap, then discarded (up to
 * WEB_DISCARD_MAX, past which the connection is cut: MHD 0.9.75 cannot
 * queue a response in the middle of a body, so a chunked body that is
 * too large gets its 413 at the end, or no answer at all). */
static enum MHD_Result
web_request_body(struct web_state *st, const char *data, size_t *size)
{
	if (!st->too_large && st->body.len + *size <= WEB_BODY_MAX) {
		buf_add(&st->body, data, *size);
	} else {
		st->too_large = true;
		st->discarded += *size;
		if (st->discarded > WEB_DISCARD_MAX)
			return MHD_NO;
	}
	*size = 0;
	return MHD_YES;
}

static enum MHD_Result
web_dispatch(void *cls, struct MHD_Connection *conn, const char *url,
    const char *method, const char *version, const char *upload_data,
    size_t *upload_data_size, void **req_cls)
{
	struct web *web = cls;
	struct web_state *st = *req_cls;
	struct web_request req;
	struct in6_addr addr;
	char ip[INET6_ADDRSTRLEN];
	enum MHD_Result ret;
	bool post;

	(void)version;
	/* The first call carries only the headers: answering now would
	 * make MHD close the connection (wanted for a body too large). */
	if (st == NULL)
		return web_request_begin(web, conn, url, method, req_cls);
	if (st->answered) {
		*upload_data_size = 0;
		return MHD_YES;
	}
	if (*upload_data_size != 0)
		return web_request_body(st, upload_data, upload_data_size);
	metrics_set_route(web_metrics_route(url));
	if (st->too_large)
		return web_reply_413(web, conn);
	web_client_ip(web, conn, &addr, ip, sizeof(ip));
	/* Only POSTs with a bad token use up the client's allowance: a
	 * mailbox provider's one-click POSTs after a big campaign come from
	 * few addresses, are idempotent and cannot be forged, and one it
	 * does not retry would be an unsubscribe lost. */
	post = strcmp(method, "POST") == 0;
	if (post && !web_rate_allow(&web->post_rate, &addr, false))
		return web_reply_429(web, conn, 5);
	/* Every POST to the subscribe form counts: a flood of sign-ups is
	 * made of valid requests. */
	if (post && strncmp(url, "/s/", 3) == 0 &&
	    !web_rate_allow(&web->signup_rate, &addr, true))
		return web_too_many(web, conn);
	req.url = url;
	req.method = method;
	req.body = st->body.data != NULL ? st->body.data : "";
	req.body_len = st->body.len;
	req.ip = ip;
	req.addr = &addr;
	web_refused = false;
	ret = web_route(web, conn, &req);
	if (post && web_refused)
		web_rate_allow(&web->post_rate, &addr, true);
	return ret;
}

/* MHD is done with a request: free its state. */
static void
web_request_done(void *cls, struct MHD_Connection *conn, void **req_cls,
    enum MHD_RequestTerminationCode toe)
{
	struct web_state *st = *req_cls;

	(void)cls;
	(void)conn;
	(void)toe;
	if (st == NULL)
		return;
	buf_free(&st->body);
	free(st);
	*req_cls = NULL;
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
		snprintf(web->start_error, sizeof(web->start_error), "%.*s",
		    (int)sizeof(web->start_error) - 1, msg);
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

static unsigned int
web_threads(void)
{
	long cpus = sysconf(_SC_NPROCESSORS_ONLN);
	long n = cpus > 0 ? cpus * WEB_THREADS_PER_CPU : WEB_THREADS_MIN;

	if (n < WEB_THREADS_MIN)
		n = WEB_THREADS_MIN;
	if (n > WEB_THREADS_MAX)
		n = WEB_THREADS_MAX;
	return (unsigned int)n;
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
	    MHD_OPTION_THREAD_POOL_SIZE, web_threads(),
	    MHD_OPTION_CONNECTION_LIMIT, (unsigned int)WEB_CONN_LIMIT,
	    MHD_OPTION_PER_IP_CONNECTION_LIMIT, (unsigned int)WEB_PER_IP_LIMIT,
	    MHD_OPTION_CONNECTION_TIMEOUT, (unsigned int)WEB_TIMEOUT_SECONDS,
	    MHD_OPTION_NOTIFY_COMPLETED, web_request_done, NULL,
	    MHD_OPTION_END);
}

static struct web *
web_new(const struct assent_conf *conf)
{
	struct web *web = xcalloc(1, sizeof(*web));

	web->dsn = xstrdup(conf->database_dsn);
	web->confirm_ttl = conf->tokens_confirm_ttl;
	web->organisation = xstrdup(conf->sender_organisation != NULL ?
	    conf->sender_organisation : "");
	web->base_url = xstrdup(conf->http_base_url != NULL ?
	    conf->http_base_url : "");
	web->gmail_mailbox_key = conf->suppress_gmail_mailbox_key;
	web->keys_path = xstrdup(conf->tokens_keys_file);
	if (pthread_key_create(&web->db_key, web_db_release) != 0 ||
	    pthread_key_create(&web->signer_key, web_signer_release) != 0)
		fatalx("web: cannot create a thread key");
	pthread_mutex_init(&web->log_lock, NULL);
	pthread_mutex_init(&web->keys_lock, NULL);
	pthread_mutex_init(&web->health.lock, NULL);
	web->lists = web_lists_new();
	web_rate_init(&web->post_rate, WEB_RATE_PER_SECOND, WEB_RATE_BURST);
	web_rate_init(&web->signup_rate, WEB_SIGNUP_PER_SECOND,
	    WEB_SIGNUP_BURST);
	return web;
}

static void
web_free(struct web *web)
{
	pthread_key_delete(web->db_key);
	pthread_key_delete(web->signer_key);
	pthread_mutex_destroy(&web->log_lock);
	pthread_mutex_destroy(&web->keys_lock);
	pthread_mutex_destroy(&web->health.lock);
	web_rate_free(&web->post_rate);
	web_rate_free(&web->signup_rate);
	web_pages_free(web->pages);
	keys_free(web->keys);
	web_lists_free(web->lists);
	free(web->keys_path);
	free(web->proxies);
	free(web->base_url);
	free(web->organisation);
	free(web->dsn);
	free(web);
}

/* The keys for /u/ and /c/; without them those answer 503, the rest
 * works (a daemon that only serves /healthz needs no keys file). */
static void
web_keys_load(struct web *web)
{
	pthread_mutex_lock(&web->keys_lock);
	web_keys_load_locked(web, true);
	pthread_mutex_unlock(&web->keys_lock);
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
	web = web_new(conf);
	if (web_proxies_parse(web, conf->http_trusted_proxies != NULL ?
	    conf->http_trusted_proxies : "", err) == -1 ||
	    web_pages_new(conf, &web->pages, err) == -1) {
		freeaddrinfo(ai);
		web_free(web);
		return -1;
	}
	web_keys_load(web);
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

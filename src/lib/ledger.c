/* ledger: append consent events, read them back, verify the chain; see ledger.h */
#include <arpa/inet.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>
#include <openssl/rand.h>

#include "assent/db.h"
#include "assent/ledger.h"
#include "assent/text.h"
#include "assent/xmalloc.h"

static int
ledger_check_ip(const char *ip, struct assent_err *err)
{
	unsigned char buf[sizeof(struct in6_addr)];

	if (ip == NULL || inet_pton(AF_INET, ip, buf) == 1 ||
	    inet_pton(AF_INET6, ip, buf) == 1)
		return 0;
	return err_set(err, EX_DATAERR, "invalid IP address \"%.64s\"", ip);
}

static int
ledger_check_version(const char *v, struct assent_err *err)
{
	size_t len;

	if (v == NULL)
		return 0;
	len = strlen(v);
	if (len == 0 || len > 64)
		goto bad;
	for (size_t i = 0; i < len; i++)
		if (v[i] <= ' ' || v[i] > '~')
			goto bad;
	return 0;
bad:
	return err_set(err, EX_DATAERR, "consent text version must be 1-64 "
	    "visible ASCII characters without spaces");
}

/* The import's evidence: file name, SHA-256 of the file, line number. */
static int
ledger_check_import(const struct ledger_evidence *ev, struct assent_err *err)
{
	const char *s = ev->import_sha256, *line = ev->import_line;
	char *end;
	long n;

	if (ev->import_file != NULL &&
	    text_check_line(ev->import_file, 1000, false, "import file", err) == -1)
		return -1;
	if (s != NULL && (strlen(s) != 64 || strspn(s, "0123456789abcdef") != 64))
		return err_set(err, EX_DATAERR, "import SHA-256 must be 64 "
		    "lower-case hex digits");
	if (line != NULL) {
		n = strtol(line, &end, 10);
		if (line[0] < '1' || line[0] > '9' || *end != '\0' || n > INT_MAX)
			return err_set(err, EX_DATAERR, "import line must be a "
			    "positive integer");
	}
	return 0;
}

int
ledger_evidence_check(const struct ledger_evidence *ev, struct assent_err *err)
{
	if (ev->source == NULL)
		return err_set(err, EX_DATAERR, "a source is required "
		    "(where and how consent was given)");
	if (text_check_line(ev->source, 1000, false, "source", err) == -1 ||
	    (ev->operator_name != NULL &&
	    text_check_line(ev->operator_name, 200, true, "operator", err) == -1) ||
	    (ev->user_agent != NULL &&
	    text_check_line(ev->user_agent, 512, true, "user agent", err) == -1) ||
	    (ev->page != NULL &&
	    text_check_line(ev->page, 1000, true, "page", err) == -1) ||
	    ledger_check_ip(ev->ip, err) == -1 ||
	    ledger_check_version(ev->consent_text_version, err) == -1 ||
	    ledger_check_import(ev, err) == -1)
		return -1;
	return 0;
}

int
ledger_append(PGconn *conn, const struct ledger_event *ev, struct assent_err *err)
{
	const struct ledger_evidence *e = ev->evidence;
	const char *params[] = {
		ev->subscriber_id, ev->list_id, ev->action, ev->channel,
		ev->status_before, ev->status_after, e->ip, e->user_agent,
		e->page, e->operator_name, e->source, e->consent_text_version,
		ev->basis, ev->basis_expires_at, e->import_file, e->import_sha256,
		e->import_line, e->collected_at,
	};

	if (ledger_evidence_check(e, err) == -1)
		return -1;
	return db_exec(conn, NULL, err,
	    "INSERT INTO ledger (subscriber_id, list_id, action, channel,"
	    " status_before, status_after, ip, user_agent, page, operator,"
	    " source, consent_text_version, basis, basis_expires_at,"
	    " import_file, import_sha256, import_line, consent_collected_at)"
	    " VALUES ($1, $2, $3, $4, $5, $6, $7::inet, $8, $9, $10, $11, $12,"
	    " $13, $14::timestamptz, $15, $16, $17::integer, $18::timestamptz)",
	    18, params);
}

#define LEDGER_ISO(col) "to_char(" col ", 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"')"

int
ledger_history(PGconn *conn, const char *subscriber_id, json_t **history_r,
    struct assent_err *err)
{
	const char *params[] = { subscriber_id };
	PGresult *res;

	*history_r = NULL;
	if (db_exec(conn, &res, err,
	    "SELECT e.seq, " LEDGER_ISO("e.at") " AS at,"
	    " coalesce(l.name, '*') AS list, e.action, e.channel,"
	    " e.status_before, e.status_after, e.basis,"
	    " " LEDGER_ISO("e.basis_expires_at") " AS basis_expires_at,"
	    " host(e.ip) AS ip, e.user_agent, e.page, e.operator, e.source,"
	    " e.import_file, e.import_sha256, e.import_line,"
	    " e.consent_text_version, e.consent_text_sha256,"
	    " " LEDGER_ISO("e.consent_collected_at") " AS consent_collected_at,"
	    " " LEDGER_ISO("e.erased_at") " AS erased_at,"
	    " encode(e.chain_sha256, 'hex') AS chain"
	    " FROM ledger e LEFT JOIN lists l ON l.id = e.list_id"
	    " WHERE e.subscriber_id = $1 ORDER BY e.seq", 1, params) == -1)
		return -1;
	*history_r = db_rows_json(res);
	PQclear(res);
	return 0;
}

int
ledger_erase(PGconn *conn, const char *subscriber_id, long *count_r,
    struct assent_err *err)
{
	const char *params[] = { subscriber_id };
	PGresult *res;

	if (db_exec(conn, &res, err, "SELECT ledger_erase_personal($1::bigint)",
	    1, params) == -1)
		return -1;
	if (count_r != NULL)
		*count_r = atol(PQgetvalue(res, 0, 0));
	PQclear(res);
	return 0;
}

/* --- verifying the chain ----------------------------------------------- */

/* Rows per FETCH: memory stays flat whatever the ledger's size. */
#define LEDGER_FETCH 2000

/* The walk's columns. 1 to 16 are C in canonical order (see ledger.h),
 * 17 to 21 are P; then what the checks need besides. */
#define LEDGER_WALK_SQL \
	"SELECT e.id, e.subscriber_id, e.seq, e.list_id, e.action, e.channel," \
	" e.status_before, e.status_after," \
	" (extract(epoch FROM e.at) * 1000000)::bigint, e.operator," \
	" e.consent_text_version, e.consent_text_sha256, e.basis," \
	" (extract(epoch FROM e.basis_expires_at) * 1000000)::bigint," \
	" e.import_sha256, e.import_line, encode(e.personal_sha256, 'hex')," \
	" text(e.ip), e.user_agent, e.page, e.source, e.import_file," \
	" encode(e.salt, 'hex'), encode(e.content_sha256, 'hex')," \
	" encode(e.chain_sha256, 'hex'), e.erased_at IS NOT NULL," \
	" coalesce(e.erased_at < e.at, false)," \
	" e.erased_at IS NOT NULL AND s.erased_at IS NULL," \
	" coalesce(s.ledger_seq, 0)," \
	" (extract(epoch FROM e.consent_collected_at) * 1000000)::bigint" \
	" FROM ledger e LEFT JOIN subscribers s ON s.id = e.subscriber_id" \
	" ORDER BY e.subscriber_id, e.seq, e.id"

enum {
	LW_ID, LW_SUB, LW_SEQ, LW_LIST, LW_AFTER = 7, LW_TEXT_VERSION = 10,
	LW_TEXT_SHA256, LW_PERSONAL = 16, LW_IP, LW_IMPORT_FILE = 21, LW_SALT,
	LW_CONTENT, LW_CHAIN, LW_ERASED, LW_ERASED_EARLY, LW_SUB_NOT_ERASED,
	LW_SUB_COUNT, LW_COLLECTED,
};

/* The subscribers side: every subscription, and every subscriber whose
 * count of events (subscribers.ledger_seq) isn't 0 (list_id NULL when
 * it has no subscription). */
#define LEDGER_SUBS_SQL \
	"SELECT p.id, s.list_id, s.status, p.ledger_seq" \
	" FROM subscribers p LEFT JOIN subscriptions s ON s.subscriber_id = p.id" \
	" WHERE s.subscriber_id IS NOT NULL OR p.ledger_seq <> 0" \
	" ORDER BY p.id, s.list_id"

/* A consent wording's digest as recomputed here from its body. */
struct ledger_text {
	char *version;
	char sha256[65];
};

/* A canonical text being built (P or C, see ledger.h). */
struct ledger_canon {
	unsigned char *buf;
	size_t len, cap;
};

/* A server-side cursor read LEDGER_FETCH rows at a time. */
struct ledger_cursor {
	const char *name;
	PGresult *res;
	int row, nrows;
	bool done;
};

/* The latest event with a status for one list (list_id 0: every list). */
struct ledger_last {
	long long list_id, event_id, seq;
	char status[16];
};

struct ledger_walk {
	struct ledger_verify_result *r;
	struct ledger_text *texts;        /* sorted by version (bytes) */
	size_t ntexts;
	EVP_MD_CTX *head;
	struct ledger_canon canon;        /* canonical text being built */
	long long sub;                    /* current subscriber; 0: none yet */
	long long last_id, last_seq;
	long long count;                  /* subscribers.ledger_seq of sub */
	unsigned char last_chain[32];
	struct ledger_last every, *lists; /* every: list_id 0; seq 0 when none */
	size_t nlists, lists_cap;
};

/* 1 when the cursor stands on a row, 0 at its end, -1 on error. */
static int
ledger_cursor_peek(PGconn *conn, struct ledger_cursor *c, struct assent_err *err)
{
	char sql[64];

	if (c->res != NULL && c->row < c->nrows)
		return 1;
	PQclear(c->res);
	c->res = NULL;
	if (c->done)
		return 0;
	snprintf(sql, sizeof(sql), "FETCH %d FROM %s", LEDGER_FETCH, c->name);
	if (db_exec(conn, &c->res, err, sql, 0, NULL) == -1)
		return -1;
	c->row = 0;
	c->nrows = PQntuples(c->res);
	c->done = c->nrows < LEDGER_FETCH;
	return c->nrows > 0;
}

/* A column of the current row, NULL for SQL NULL. */
static const char *
ledger_cursor_get(const struct ledger_cursor *c, int col)
{
	if (PQgetisnull(c->res, c->row, col))
		return NULL;
	return PQgetvalue(c->res, c->row, col);
}

static long long
ledger_cursor_ll(const struct ledger_cursor *c, int col)
{
	const char *v = ledger_cursor_get(c, col);

	return v != NULL ? strtoll(v, NULL, 10) : 0;
}

static void
ledger_problem(struct ledger_verify_result *r, long long event_id,
    long long sub, long long seq, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));

/* Count a problem; keep it when it is the first by event id. */
static void
ledger_problem(struct ledger_verify_result *r, long long event_id,
    long long sub, long long seq, const char *fmt, ...)
{
	va_list ap;

	if (r->problems++ > 0 && event_id >= r->event_id)
		return;
	r->event_id = event_id;
	r->subscriber_id = sub;
	r->seq = seq;
	va_start(ap, fmt);
	vsnprintf(r->what, sizeof(r->what), fmt, ap);
	va_end(ap);
}

static void
ledger_buf_add(struct ledger_canon *w, const void *p, size_t n)
{
	if (w->len + n > w->cap) {
		w->cap = (w->len + n) * 2;
		w->buf = xreallocarray(w->buf, w->cap, 1);
	}
	memcpy(w->buf + w->len, p, n);
	w->len += n;
}

/* One canonical field: "|" unless first, then "-" or the text's hex. */
static void
ledger_buf_field(struct ledger_canon *w, const char *v, bool first)
{
	static const char digits[] = "0123456789abcdef";
	char pair[2];

	if (!first)
		ledger_buf_add(w, "|", 1);
	if (v == NULL) {
		ledger_buf_add(w, "-", 1);
		return;
	}
	for (const unsigned char *p = (const unsigned char *)v; *p != '\0'; p++) {
		pair[0] = digits[*p >> 4];
		pair[1] = digits[*p & 15];
		ledger_buf_add(w, pair, 2);
	}
}

/* Decode exactly n bytes from lower-case hex; -1 when hex is not that. */
static int
ledger_unhex(const char *hex, unsigned char *out, size_t n)
{
	static const char digits[] = "0123456789abcdef";
	const char *hi, *lo;

	if (hex == NULL || strlen(hex) != 2 * n)
		return -1;
	for (size_t i = 0; i < n; i++) {
		/* no NUL inside: strlen() said so */
		if ((hi = strchr(digits, hex[2 * i])) == NULL ||
		    (lo = strchr(digits, hex[2 * i + 1])) == NULL)
			return -1;
		out[i] = (unsigned char)((hi - digits) << 4 | (lo - digits));
	}
	return 0;
}

/* Does SHA-256 of the canonical buffer equal the stored hex digest? */
static bool
ledger_buf_matches(const struct ledger_canon *w, const char *stored_hex)
{
	unsigned char md[32], want[32];

	if (ledger_unhex(stored_hex, want, sizeof(want)) == -1)
		return false;
	EVP_Digest(w->buf, w->len, md, NULL, EVP_sha256(), NULL);
	return memcmp(md, want, sizeof(md)) == 0;
}

/* The personal digest, or (erased) that nothing personal is left. */
static const char *
ledger_check_personal(struct ledger_walk *w, const struct ledger_cursor *c)
{
	unsigned char salt[16];

	if (strcmp(ledger_cursor_get(c, LW_ERASED), "t") == 0) {
		for (int col = LW_IP; col <= LW_IMPORT_FILE; col++)
			if (ledger_cursor_get(c, col) != NULL)
				return "erased, yet it still holds personal data";
		if (ledger_cursor_get(c, LW_SALT) != NULL)
			return "erased, yet it still holds its salt";
		if (strcmp(ledger_cursor_get(c, LW_ERASED_EARLY), "t") == 0)
			return "erased before the event was written";
		if (strcmp(ledger_cursor_get(c, LW_SUB_NOT_ERASED), "t") == 0)
			return "erased, yet its subscriber is not";
		return NULL;
	}
	if (ledger_unhex(ledger_cursor_get(c, LW_SALT), salt, sizeof(salt)) == -1)
		return "salt missing or malformed";
	w->canon.len = 0;
	ledger_buf_add(&w->canon, salt, sizeof(salt));
	for (int col = LW_IP; col <= LW_IMPORT_FILE; col++)
		ledger_buf_field(&w->canon, ledger_cursor_get(c, col), col == LW_IP);
	if (!ledger_buf_matches(&w->canon, ledger_cursor_get(c, LW_PERSONAL)))
		return "personal data changed (ip, user agent, page, source or "
		    "import file no longer match the personal digest)";
	return NULL;
}

static const char *
ledger_check_content(struct ledger_walk *w, const struct ledger_cursor *c)
{
	w->canon.len = 0;
	for (int col = LW_SUB; col <= LW_PERSONAL; col++)
		ledger_buf_field(&w->canon, ledger_cursor_get(c, col), col == LW_SUB);
	/* a 17th field only when the event has one (sql/0010_import.sql) */
	if (ledger_cursor_get(c, LW_COLLECTED) != NULL)
		ledger_buf_field(&w->canon, ledger_cursor_get(c, LW_COLLECTED), false);
	if (!ledger_buf_matches(&w->canon, ledger_cursor_get(c, LW_CONTENT)))
		return "content changed (the event no longer matches its "
		    "content digest)";
	return NULL;
}

static int
ledger_text_cmp(const void *key, const void *elem)
{
	return strcmp(key, ((const struct ledger_text *)elem)->version);
}

/* The wording the event names must still be the one it recorded. Events
 * from before 0004 recorded no digest: nothing to compare. */
static const char *
ledger_check_text(const struct ledger_walk *w, const struct ledger_cursor *c,
    char *why, size_t whylen)
{
	const char *version = ledger_cursor_get(c, LW_TEXT_VERSION);
	const char *recorded = ledger_cursor_get(c, LW_TEXT_SHA256);
	const struct ledger_text *t;

	if (version == NULL || recorded == NULL)
		return NULL;
	t = bsearch(version, w->texts, w->ntexts, sizeof(*w->texts),
	    ledger_text_cmp);
	if (t == NULL)
		snprintf(why, whylen, "consent text \"%.64s\" is gone", version);
	else if (strcmp(t->sha256, recorded) != 0)
		snprintf(why, whylen, "consent text \"%.64s\" was changed: its "
		    "wording no longer matches the SHA-256 this event recorded",
		    version);
	else
		return NULL;
	return why;
}

/* chain = SHA-256(previous chain || content), from the stored digests. */
static const char *
ledger_check_link(struct ledger_walk *w, const struct ledger_cursor *c,
    unsigned char chain[32])
{
	unsigned char in[64], md[32];

	memcpy(in, w->last_chain, 32);
	if (ledger_unhex(ledger_cursor_get(c, LW_CONTENT), in + 32, 32) == -1 ||
	    ledger_unhex(ledger_cursor_get(c, LW_CHAIN), chain, 32) == -1) {
		memset(chain, 0, 32);
		return "digest missing or malformed";
	}
	EVP_Digest(in, sizeof(in), md, NULL, EVP_sha256(), NULL);
	if (memcmp(md, chain, sizeof(md)) != 0)
		return "chain link broken (its digest does not follow from the "
		    "previous event's)";
	return NULL;
}

/* Remember the event's status as the latest for its list. */
static void
ledger_note_status(struct ledger_walk *w, const struct ledger_cursor *c,
    long long id, long long seq)
{
	const char *after = ledger_cursor_get(c, LW_AFTER);
	long long list = ledger_cursor_ll(c, LW_LIST);
	struct ledger_last *last = &w->every;
	size_t i;

	if (after == NULL)
		return;
	if (list != 0) {
		for (i = 0; i < w->nlists && w->lists[i].list_id != list; i++)
			;
		if (i == w->nlists) {
			if (w->nlists == w->lists_cap) {
				w->lists_cap = w->lists_cap * 2 + 8;
				w->lists = xreallocarray(w->lists, w->lists_cap,
				    sizeof(*w->lists));
			}
			w->nlists++;
		}
		last = &w->lists[i];
	}
	last->list_id = list;
	last->event_id = id;
	last->seq = seq;
	snprintf(last->status, sizeof(last->status), "%s", after);
}

static void
ledger_check_event(struct ledger_walk *w, const struct ledger_cursor *c)
{
	long long id = ledger_cursor_ll(c, LW_ID), seq = ledger_cursor_ll(c, LW_SEQ);
	unsigned char chain[32];
	char why[200];
	const char *what;

	w->r->events++;
	w->count = ledger_cursor_ll(c, LW_SUB_COUNT);
	if (seq != w->last_seq + 1)
		ledger_problem(w->r, id, w->sub, seq, w->last_seq == 0 ?
		    "the chain starts at seq %lld: %lld earlier event(s) missing" :
		    "seq %lld follows seq %lld: event(s) missing", seq,
		    w->last_seq == 0 ? seq - 1 : w->last_seq);
	else if ((what = ledger_check_personal(w, c)) != NULL ||
	    (what = ledger_check_content(w, c)) != NULL ||
	    (what = ledger_check_text(w, c, why, sizeof(why))) != NULL)
		ledger_problem(w->r, id, w->sub, seq, "%s", what);
	if ((what = ledger_check_link(w, c, chain)) != NULL)
		ledger_problem(w->r, id, w->sub, seq, "%s", what);
	memcpy(w->last_chain, chain, sizeof(chain));
	w->last_id = id;
	w->last_seq = seq;
	ledger_note_status(w, c, id, seq);
}

/* One subscription against the events of its subscriber (w->sub, or a
 * subscriber without events when sub differs); status NULL: no
 * subscription, a subscriber that counts count events. */
static void
ledger_check_subscription(struct ledger_walk *w, long long sub, long long list,
    const char *status, long long count)
{
	const struct ledger_last *last = w->every.seq > 0 ? &w->every : NULL;

	if (sub != w->sub && status == NULL) {
		ledger_problem(w->r, 0, sub, 0, "the subscriber has had %lld "
		    "event(s) but has none: all were deleted", count);
		return;
	}
	if (status == NULL)
		return;
	if (sub != w->sub) {
		ledger_problem(w->r, 0, sub, 0, "subscription to list %lld is %s "
		    "but the subscriber has no event at all", list, status);
		return;
	}
	for (size_t i = 0; i < w->nlists; i++)
		if (w->lists[i].list_id == list &&
		    (last == NULL || w->lists[i].seq > last->seq))
			last = &w->lists[i];
	if (last == NULL)
		ledger_problem(w->r, w->last_id, sub, w->last_seq, "subscription "
		    "to list %lld is %s but no event is about that list", list, status);
	else if (strcmp(last->status, status) != 0)
		ledger_problem(w->r, last->event_id, sub, last->seq, "subscription "
		    "to list %lld is %s but its last event says %s: a later event "
		    "is missing or this one was changed", list, status, last->status);
}

/* Check the subscriptions of subscribers up to and including w->sub
 * (up to every one when all), then forget w->sub's events. */
static int
ledger_finish_subscriber(PGconn *conn, struct ledger_walk *w,
    struct ledger_cursor *subs, bool all, struct assent_err *err)
{
	long long sub;
	int rc;

	while ((rc = ledger_cursor_peek(conn, subs, err)) == 1) {
		sub = ledger_cursor_ll(subs, 0);
		if (!all && sub > w->sub)
			break;
		ledger_check_subscription(w, sub, ledger_cursor_ll(subs, 1),
		    ledger_cursor_get(subs, 2), ledger_cursor_ll(subs, 3));
		subs->row++;
	}
	if (w->sub != 0 && w->count != w->last_seq)
		ledger_problem(w->r, w->last_id, w->sub, w->last_seq, "the chain "
		    "ends at seq %lld but the subscriber has had %lld event(s): "
		    "the last were deleted", w->last_seq, w->count);
	if (w->sub != 0)
		EVP_DigestUpdate(w->head, w->last_chain, sizeof(w->last_chain));
	w->nlists = 0;
	w->every.seq = 0;
	w->last_id = w->last_seq = w->count = 0;
	memset(w->last_chain, 0, sizeof(w->last_chain));
	return rc == -1 ? -1 : 0;
}

static int
ledger_walk_all(PGconn *conn, struct ledger_walk *w, struct assent_err *err)
{
	struct ledger_cursor events = { "ledger_walk", NULL, 0, 0, false };
	struct ledger_cursor subs = { "ledger_walk_subs", NULL, 0, 0, false };
	long long sub;
	int rc;

	while ((rc = ledger_cursor_peek(conn, &events, err)) == 1) {
		sub = ledger_cursor_ll(&events, LW_SUB);
		if (sub != w->sub) {
			if (ledger_finish_subscriber(conn, w, &subs, false, err) == -1)
				goto done;
			/* subscriptions of subscribers before this one had none */
			w->sub = sub;
			w->r->subscribers++;
		}
		ledger_check_event(w, &events);
		events.row++;
	}
	if (rc == 0)
		rc = ledger_finish_subscriber(conn, w, &subs, true, err);
done:
	PQclear(events.res);
	PQclear(subs.res);
	return rc == -1 ? -1 : 0;
}

static void
ledger_hex(const unsigned char *md, size_t n, char *out)
{
	for (size_t i = 0; i < n; i++)
		snprintf(out + 2 * i, 3, "%02x", md[i]);
}

/* Every consent wording's SHA-256, recomputed from its body. */
static int
ledger_load_texts(PGconn *conn, struct ledger_walk *w, struct assent_err *err)
{
	unsigned char md[32];
	const char *body;
	PGresult *res;
	int n;

	if (db_exec(conn, &res, err, "SELECT version, body FROM consent_texts"
	    " ORDER BY version COLLATE \"C\"", 0, NULL) == -1)
		return -1;
	n = PQntuples(res);
	w->texts = xreallocarray(NULL, (size_t)n + 1, sizeof(*w->texts));
	for (int i = 0; i < n; i++) {
		body = PQgetvalue(res, i, 1);
		EVP_Digest(body, strlen(body), md, NULL, EVP_sha256(), NULL);
		w->texts[i].version = xstrdup(PQgetvalue(res, i, 0));
		ledger_hex(md, sizeof(md), w->texts[i].sha256);
	}
	w->ntexts = (size_t)n;
	PQclear(res);
	return 0;
}

int
ledger_verify(PGconn *conn, struct ledger_verify_result *r, struct assent_err *err)
{
	struct ledger_walk w = { .r = r };
	unsigned char md[32];
	int rc = -1;

	memset(r, 0, sizeof(*r));
	if (db_exec(conn, NULL, err, "BEGIN ISOLATION LEVEL REPEATABLE READ"
	    " READ ONLY", 0, NULL) == -1)
		return -1;
	if (db_exec(conn, NULL, err, "DECLARE ledger_walk NO SCROLL CURSOR FOR "
	    LEDGER_WALK_SQL, 0, NULL) == -1 ||
	    db_exec(conn, NULL, err, "DECLARE ledger_walk_subs NO SCROLL CURSOR FOR "
	    LEDGER_SUBS_SQL, 0, NULL) == -1 ||
	    ledger_load_texts(conn, &w, err) == -1)
		goto done;
	if ((w.head = EVP_MD_CTX_new()) == NULL ||
	    EVP_DigestInit_ex(w.head, EVP_sha256(), NULL) != 1) {
		err_set(err, EX_SOFTWARE, "ledger verify: SHA-256 unavailable");
		goto done;
	}
	if (ledger_walk_all(conn, &w, err) == -1)
		goto done;
	EVP_DigestFinal_ex(w.head, md, NULL);
	ledger_hex(md, sizeof(md), r->head);
	rc = 0;
done:
	db_rollback(conn);
	EVP_MD_CTX_free(w.head);
	free(w.canon.buf);
	free(w.lists);
	for (size_t i = 0; i < w.ntexts; i++)
		free(w.texts[i].version);
	free(w.texts);
	return rc;
}

/* --- sealing a first event here ------------------------------------------ */

static void
ledger_canon_ll(struct ledger_canon *c, long long v, bool first)
{
	char num[24];

	snprintf(num, sizeof(num), "%lld", v);
	ledger_buf_field(c, num, first);
}

/* A time field: "-" for none (us < 0). */
static void
ledger_canon_time(struct ledger_canon *c, int64_t us)
{
	if (us < 0)
		ledger_buf_field(c, NULL, false);
	else
		ledger_canon_ll(c, (long long)us, false);
}

void
ledger_seal_first(const struct ledger_first *e, struct ledger_sealed *out)
{
	struct ledger_canon c = { NULL, 0, 0 };
	char personal_hex[65];

	if (RAND_bytes(out->salt, sizeof(out->salt)) != 1)
		abort();
	/* P = ip | user_agent | page | source | import_file, after the salt */
	ledger_buf_add(&c, out->salt, sizeof(out->salt));
	ledger_buf_field(&c, NULL, true);
	ledger_buf_field(&c, NULL, false);
	ledger_buf_field(&c, NULL, false);
	ledger_buf_field(&c, e->source, false);
	ledger_buf_field(&c, e->import_file, false);
	EVP_Digest(c.buf, c.len, out->personal, NULL, EVP_sha256(), NULL);
	ledger_hex(out->personal, sizeof(out->personal), personal_hex);
	/* C, in the order of ledger.h, seq 1 and no status before */
	c.len = 0;
	ledger_canon_ll(&c, e->subscriber_id, true);
	ledger_canon_ll(&c, 1, false);
	ledger_canon_ll(&c, e->list_id, false);
	ledger_buf_field(&c, e->action, false);
	ledger_buf_field(&c, e->channel, false);
	ledger_buf_field(&c, NULL, false);
	ledger_buf_field(&c, e->status_after, false);
	ledger_canon_time(&c, e->at_us);
	ledger_buf_field(&c, e->operator_name, false);
	ledger_buf_field(&c, e->consent_text_version, false);
	ledger_buf_field(&c, e->consent_text_sha256, false);
	ledger_buf_field(&c, e->basis, false);
	ledger_canon_time(&c, e->basis_expires_us);
	ledger_buf_field(&c, e->import_sha256, false);
	ledger_canon_ll(&c, (long long)e->import_line, false);
	ledger_buf_field(&c, personal_hex, false);
	if (e->collected_us >= 0)
		ledger_canon_time(&c, e->collected_us);
	EVP_Digest(c.buf, c.len, out->content, NULL, EVP_sha256(), NULL);
	/* chain = SHA-256(32 zero bytes || content) */
	c.len = 0;
	ledger_buf_add(&c, (const unsigned char[32]){ 0 }, 32);
	ledger_buf_add(&c, out->content, sizeof(out->content));
	EVP_Digest(c.buf, c.len, out->chain, NULL, EVP_sha256(), NULL);
	free(c.buf);
}

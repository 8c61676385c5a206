/*
 * intake: what comes back, and what the relay refused, into the
 * database (see intake.h).
 *
 * Every item (one failed recipient) goes the same way, whatever brought
 * it: attribute it (only through what we signed), lock the person, act
 * by class, store the row with what was done. The person's row lock
 * comes first, so that two reports about one person, an unsubscribe and
 * an erasure all take their turn, and a duplicate finds the effect of
 * the first one in place.
 */
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "assent/addr.h"
#include "assent/buf.h"
#include "assent/db.h"
#include "assent/intake.h"
#include "assent/ledger.h"
#include "assent/text.h"
#include "assent/xmalloc.h"

#define INTAKE_TEXT_MAX 1000    /* bytes: sources, diagnostics */

/* One failed recipient, ready to act on and store. */
struct intake_item {
	const char *source;             /* dsn, text, arf, smtp */
	enum bounce_class class;
	const char *attributed_by;      /* NULL: unattributed */
	long long delivery_id, notice_id, campaign_id, subscriber_id;
	const char *recipient;          /* NULL or "": none given */
	const char *status;             /* "X.Y.Z" or "" */
	int smtp_code;                  /* 0: none */
	const char *stage;              /* smtp: "rcpt" or "data"; else NULL */
	const char *diagnostic;
	const char *remote_mta;
	long long raw_size;
	bool stale;                     /* older than bounce.token_max_age */
};

/* The attributed person, under lock. */
struct intake_person {
	char id[24];
	bool erased;                    /* or no such row */
	char key[ADDR_MAX + 1];
	char email[ADDR_MAX + 1];
};

/* ---- small helpers ----------------------------------------------------- */

/* snprintf() that never leaves half a UTF-8 character at a cut. */
static void
intake_format(char *out, size_t size, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void
intake_format(char *out, size_t size, const char *fmt, ...)
{
	va_list ap;
	size_t n, lead;
	int w;

	va_start(ap, fmt);
	w = vsnprintf(out, size, fmt, ap);
	va_end(ap);
	if (w < 0) {
		out[0] = '\0';
		return;
	}
	n = strlen(out);
	if ((size_t)w > n) {
		/* cut: a character whose last bytes fell off goes entirely */
		for (lead = n; lead > 0 &&
		    ((unsigned char)out[lead - 1] & 0xc0) == 0x80; lead--)
			;
		if (lead > 0 && (unsigned char)out[lead - 1] >= 0xc0) {
			unsigned char c = (unsigned char)out[lead - 1];
			size_t want = c >= 0xf0 ? 4 : c >= 0xe0 ? 3 : 2;

			if (n - (lead - 1) < want)
				out[n = lead - 1] = '\0';
		}
	}
	text_make_utf8(out, n);
	for (size_t i = 0; i < n; i++)
		if ((unsigned char)out[i] < 0x20 || out[i] == 0x7f)
			out[i] = ' ';
}

static const char *
intake_or_null(const char *s)
{
	return s == NULL || s[0] == '\0' ? NULL : s;
}

/* "X.Y.Z" as the table takes it: X 2, 4 or 5, Y and Z 1-3 digits. */
static bool
intake_status_ok(const char *s)
{
	size_t i = 0;

	if (s == NULL || (s[0] != '2' && s[0] != '4' && s[0] != '5') ||
	    s[1] != '.')
		return false;
	s += 2;
	for (int part = 0; part < 2; part++) {
		for (i = 0; s[i] >= '0' && s[i] <= '9'; i++)
			;
		if (i < 1 || i > 3 || s[i] != (part == 0 ? '.' : '\0'))
			return false;
		s += i + 1;
	}
	return true;
}

static const char *
intake_message_name(const struct intake_item *it, char *out, size_t size)
{
	if (it->delivery_id != 0)
		snprintf(out, size, "delivery %lld of campaign %lld",
		    it->delivery_id, it->campaign_id);
	else
		snprintf(out, size, "confirmation request %lld", it->notice_id);
	return out;
}

static void
intake_count(const struct intake_item *it, struct intake_result *res)
{
	res->stored++;
	switch (it->class) {
	case BOUNCE_CLASS_HARD:         res->hard++; break;
	case BOUNCE_CLASS_SOFT:         res->soft++; break;
	case BOUNCE_CLASS_POLICY:       res->policy++; break;
	case BOUNCE_CLASS_COMPLAINT:    res->complaints++; break;
	case BOUNCE_CLASS_NONE:         break;
	}
}

/* ---- the person ----------------------------------------------------------- */

static int
intake_lock_person(PGconn *conn, long long subscriber_id,
    struct intake_person *p, struct assent_err *err)
{
	const char *params[] = { p->id };
	PGresult *res;

	memset(p, 0, sizeof(*p));
	snprintf(p->id, sizeof(p->id), "%lld", subscriber_id);
	if (db_exec(conn, &res, err, "SELECT email, email_key FROM subscribers"
	    " WHERE id = $1 FOR UPDATE", 1, params) == -1)
		return -1;
	p->erased = PQntuples(res) != 1 || PQgetisnull(res, 0, 1);
	if (!p->erased) {
		snprintf(p->email, sizeof(p->email), "%s", PQgetvalue(res, 0, 0));
		snprintf(p->key, sizeof(p->key), "%s", PQgetvalue(res, 0, 1));
	}
	PQclear(res);
	return 0;
}

int
intake_lock_subscribers(PGconn *conn, const struct intake_refusal *f, size_t n,
    struct assent_err *err)
{
	struct buf ids, nids;
	int rc;

	if (n == 0)
		return 0;
	buf_init(&ids);
	buf_init(&nids);
	db_array_open(&ids);
	db_array_open(&nids);
	for (size_t i = 0; i < n; i++)
		if (f[i].notice_id != 0)
			db_array_int(&nids, f[i].notice_id);
		else
			db_array_int(&ids, f[i].delivery_id);
	db_array_close(&ids);
	db_array_close(&nids);
	const char *params[] = { ids.data, nids.data };
	rc = db_exec(conn, NULL, err, "SELECT s.id FROM subscribers s"
	    " WHERE s.id IN (SELECT d.subscriber_id FROM deliveries d"
	    "                 WHERE d.id = ANY ($1::bigint[])"
	    "               UNION SELECT n.subscriber_id FROM notices n"
	    "                 WHERE n.id = ANY ($2::bigint[]))"
	    " ORDER BY s.id FOR UPDATE", 2, params);
	buf_free(&ids);
	buf_free(&nids);
	return rc;
}

/* An address entry for the person. */
static int
intake_suppress(PGconn *conn, const struct intake_ctx *c,
    const struct intake_person *p, const char *reason, const char *source,
    const char *expires, bool *added_r, struct assent_err *err)
{
	struct suppress_new n = { .reason = reason, .source = source,
	    .added_by = c->added_by, .expires = expires };
	struct suppress_target t;
	long long id;

	*added_r = false;
	if (suppress_target_parse(NULL, p->key, false, &t, err) == -1)
		return -1;
	return suppress_add_in(conn, &t, &n, &id, added_r, err);
}

/* ---- what each class does ---------------------------------------------------- */

/* Was an earlier hard bounce of the same message stored already? */
static int
intake_hard_seen(PGconn *conn, const struct intake_item *it, bool *seen_r,
    struct assent_err *err)
{
	char d[24], n[24];
	const char *params[] = { d, n };
	PGresult *res;

	snprintf(d, sizeof(d), "%lld", it->delivery_id);
	snprintf(n, sizeof(n), "%lld", it->notice_id);
	if (db_exec(conn, &res, err, "SELECT 1 FROM bounces WHERE class = 'hard'"
	    " AND action <> 'none'"
	    " AND (delivery_id = $1 OR notice_id = $2) LIMIT 1", 2, params) == -1)
		return -1;
	*seen_r = PQntuples(res) > 0;
	PQclear(res);
	return 0;
}

static int
intake_hard(PGconn *conn, const struct intake_ctx *c,
    const struct intake_item *it, const struct intake_person *p,
    const char **action_r, struct intake_result *res, struct assent_err *err)
{
	char source[INTAKE_TEXT_MAX + 1], what[96], d[24];
	struct ledger_evidence ev = { .source = source };
	struct ledger_event le = { .subscriber_id = p->id, .action = "bounce",
	    .channel = "bounce", .evidence = &ev };
	const char *params[] = { d };
	bool seen, added;

	if (intake_hard_seen(conn, it, &seen, err) == -1)
		return -1;
	intake_format(source, sizeof(source), "hard bounce %s (%s, %s): %s",
	    it->status[0] != '\0' ? it->status : "without status", it->source,
	    intake_message_name(it, what, sizeof(what)),
	    it->diagnostic[0] != '\0' ? it->diagnostic : "no diagnostic");
	if (intake_suppress(conn, c, p, "hard-bounce", source, NULL, &added,
	    err) == -1)
		return -1;
	res->suppressed += added;
	*action_r = seen && !added ? "already" : "hard-bounce";
	if (seen)
		return 0;
	snprintf(d, sizeof(d), "%lld", it->delivery_id);
	if (ledger_append(conn, &le, err) == -1)
		return -1;
	if (it->delivery_id == 0)
		return 0;
	return db_exec(conn, NULL, err, "UPDATE deliveries SET bounced_at = now()"
	    " WHERE id = $1 AND bounced_at IS NULL", 1, params);
}

/* The person's soft bounces since the last soft-limit entry, this one
 * included: distinct messages, and the seconds since the first. */
static int
intake_soft_tally(PGconn *conn, const struct intake_item *it,
    const struct intake_person *p, long *messages_r, long *span_r,
    struct assent_err *err)
{
	char d[24], n[24];
	const char *params[] = { p->id, d, n };
	PGresult *res;

	snprintf(d, sizeof(d), "%lld", it->delivery_id);
	snprintf(n, sizeof(n), "%lld", it->notice_id);
	if (db_exec(conn, &res, err,
	    "WITH since AS (SELECT coalesce(max(id), 0) AS id FROM bounces"
	    "               WHERE subscriber_id = $1 AND action = 'soft-limit'),"
	    " soft AS (SELECT b.delivery_id, b.notice_id, b.received_at"
	    "            FROM bounces b, since"
	    "           WHERE b.subscriber_id = $1 AND b.class = 'soft'"
	    "             AND b.id > since.id"
	    "             AND b.smtp_stage IS DISTINCT FROM 'data'"
	    "             AND b.action <> 'none'"
	    "          UNION ALL SELECT nullif($2::bigint, 0), nullif($3::bigint, 0),"
	    "                           now())"
	    " SELECT count(DISTINCT (coalesce(delivery_id, 0), coalesce(notice_id, 0))),"
	    "        extract(epoch FROM now() - min(received_at))::bigint"
	    "   FROM soft", 3, params) == -1)
		return -1;
	*messages_r = atol(PQgetvalue(res, 0, 0));
	*span_r = atol(PQgetvalue(res, 0, 1));
	PQclear(res);
	return 0;
}

static int
intake_soft(PGconn *conn, const struct intake_ctx *c,
    const struct intake_item *it, const struct intake_person *p,
    const char **action_r, struct intake_result *res, struct assent_err *err)
{
	const struct assent_conf *conf = c->conf;
	char source[INTAKE_TEXT_MAX + 1], secs[24], expires[40];
	const char *params[] = { secs };
	long messages, span;
	PGresult *r;
	bool added;

	*action_r = "soft-counted";
	if (it->stage != NULL && strcmp(it->stage, "data") == 0) {
		*action_r = "none";     /* about the message, not the mailbox */
		return 0;
	}
	if (intake_soft_tally(conn, it, p, &messages, &span, err) == -1)
		return -1;
	if (messages < conf->bounce_soft_limit || span < conf->bounce_soft_span)
		return 0;
	snprintf(secs, sizeof(secs), "%ld", conf->bounce_soft_suppress_for);
	if (db_exec(conn, &r, err, "SELECT to_char((now() + make_interval(secs =>"
	    " $1::bigint)) AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"')",
	    1, params) == -1)
		return -1;
	snprintf(expires, sizeof(expires), "%s", PQgetvalue(r, 0, 0));
	PQclear(r);
	intake_format(source, sizeof(source), "%ld soft bounces over %ld days, "
	    "the last %s (%s): %s", messages, span / 86400,
	    it->status[0] != '\0' ? it->status : "without status", it->source,
	    it->diagnostic[0] != '\0' ? it->diagnostic : "no diagnostic");
	if (intake_suppress(conn, c, p, "soft-bounce-limit", source, expires,
	    &added, err) == -1)
		return -1;
	res->suppressed += added;
	*action_r = added ? "soft-limit" : "already";
	return 0;
}

/* End every subscription of the person, each with its ledger event. */
static int
intake_end_subscriptions(PGconn *conn, const struct intake_person *p,
    const char *source, long *ended_r, struct assent_err *err)
{
	const char *params[] = { p->id, NULL };
	PGresult *res;
	int rc = 0;

	*ended_r = 0;
	if (db_exec(conn, &res, err, "SELECT list_id, status FROM subscriptions"
	    " WHERE subscriber_id = $1 AND status <> 'unsubscribed'"
	    " ORDER BY list_id", 1, params) == -1)
		return -1;
	for (int i = 0; i < PQntuples(res) && rc == 0; i++) {
		struct ledger_evidence ev = { .source = source };
		struct ledger_event le = { .subscriber_id = p->id,
		    .list_id = PQgetvalue(res, i, 0), .action = "complaint",
		    .channel = "complaint", .status_before = PQgetvalue(res, i, 1),
		    .status_after = "unsubscribed", .evidence = &ev };

		params[1] = le.list_id;
		rc = ledger_append(conn, &le, err);
		if (rc == 0)
			rc = db_exec(conn, NULL, err, "UPDATE subscriptions SET"
			    " status = 'unsubscribed', updated_at = now()"
			    " WHERE subscriber_id = $1 AND list_id = $2", 2, params);
		if (rc == 0)
			(*ended_r)++;
	}
	PQclear(res);
	return rc;
}

static int
intake_complaint(PGconn *conn, const struct intake_ctx *c,
    const struct intake_item *it, const struct intake_person *p,
    const char **action_r, struct intake_result *res, struct assent_err *err)
{
	char source[INTAKE_TEXT_MAX + 1], what[96], d[24];
	const char *params[] = { d };
	long ended;
	bool added;

	intake_format(source, sizeof(source), "spam complaint (%s through %s, %s)",
	    it->source, it->attributed_by, intake_message_name(it, what,
	    sizeof(what)));
	if (intake_end_subscriptions(conn, p, source, &ended, err) == -1 ||
	    intake_suppress(conn, c, p, "complaint", source, NULL, &added,
	    err) == -1)
		return -1;
	res->unsubscribed += ended;
	res->suppressed += added;
	*action_r = ended > 0 || added ? "complaint" : "already";
	if (it->delivery_id == 0)
		return 0;
	snprintf(d, sizeof(d), "%lld", it->delivery_id);
	return db_exec(conn, NULL, err, "UPDATE deliveries SET complained_at = now()"
	    " WHERE id = $1 AND complained_at IS NULL", 1, params);
}

/* ---- storing ------------------------------------------------------------------ */

static int
intake_store(PGconn *conn, const struct intake_item *it, bool erased,
    const char *action, struct assent_err *err)
{
	char d[24], n[24], cam[24], s[24], code[16], size[24];
	const char *params[15];

	snprintf(d, sizeof(d), "%lld", it->delivery_id);
	snprintf(n, sizeof(n), "%lld", it->notice_id);
	snprintf(cam, sizeof(cam), "%lld", it->campaign_id);
	snprintf(s, sizeof(s), "%lld", it->subscriber_id);
	snprintf(code, sizeof(code), "%d", it->smtp_code);
	snprintf(size, sizeof(size), "%lld", it->raw_size);
	params[0] = it->source;
	params[1] = bounce_class_name(it->class);
	params[2] = it->delivery_id != 0 ? d : NULL;
	params[3] = it->notice_id != 0 ? n : NULL;
	params[4] = it->campaign_id != 0 ? cam : NULL;
	params[5] = it->attributed_by != NULL ? s : NULL;
	params[6] = it->attributed_by;
	params[7] = erased ? NULL : intake_or_null(it->recipient);
	params[8] = intake_status_ok(it->status) ? it->status : NULL;
	params[9] = it->smtp_code >= 200 && it->smtp_code <= 599 ? code : NULL;
	params[10] = it->stage;
	params[11] = erased ? NULL : intake_or_null(it->diagnostic);
	params[12] = intake_or_null(it->remote_mta);
	params[13] = size;
	params[14] = action;
	return db_exec(conn, NULL, err, "INSERT INTO bounces (source, class,"
	    " delivery_id, notice_id, campaign_id, subscriber_id, attributed_by,"
	    " recipient, status, smtp_code, smtp_stage, diagnostic, remote_mta,"
	    " raw_size, action) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9,"
	    " $10::integer, $11, $12, $13, $14, $15)", 15, params);
}

/* Act on one item and store it, in the caller's transaction. */
static int
intake_apply(PGconn *conn, const struct intake_ctx *c,
    const struct intake_item *it, struct intake_result *res,
    struct assent_err *err)
{
	struct intake_person p;
	const char *action = "none";
	int rc = 0;

	intake_count(it, res);
	if (it->attributed_by == NULL)
		return intake_store(conn, it, false, action, err);
	if (intake_lock_person(conn, it->subscriber_id, &p, err) == -1)
		return -1;
	if (p.erased) {
		if (it->class != BOUNCE_CLASS_POLICY && it->class != BOUNCE_CLASS_NONE)
			action = "erased";
		return intake_store(conn, it, true, action, err);
	}
	if (it->stale) {        /* a copy of an old message: on record only */
		res->stale++;
		return intake_store(conn, it, false, action, err);
	}
	switch (it->class) {
	case BOUNCE_CLASS_HARD:
		rc = intake_hard(conn, c, it, &p, &action, res, err);
		break;
	case BOUNCE_CLASS_SOFT:
		rc = intake_soft(conn, c, it, &p, &action, res, err);
		break;
	case BOUNCE_CLASS_COMPLAINT:
		rc = intake_complaint(conn, c, it, &p, &action, res, err);
		break;
	case BOUNCE_CLASS_POLICY:
	case BOUNCE_CLASS_NONE:
		break;
	}
	if (rc == -1)
		return -1;
	return intake_store(conn, it, false, action, err);
}

/* ---- attribution ---------------------------------------------------------------- */

static long
intake_max_age(const struct intake_ctx *c)
{
	return c->conf->bounce_token_max_age > 0 ?
	    c->conf->bounce_token_max_age : INTAKE_TOKEN_MAX_AGE_DEFAULT;
}

/* The message a verified b- or n- token names, if it fits (intake.h):
 * it->attributed_by set to by, *domain_r (BOUNCE_HOST_MAX + 1 bytes)
 * the domain of the campaign's From address ("" for a notice). */
static int
intake_find_message(PGconn *conn, const struct intake_ctx *c, bool notice,
    const struct token_compact *t, const char *by, struct intake_item *it,
    char *domain_r, struct assent_err *err)
{
	char idt[24], is[24], slack[16], age[24];
	const char *params[] = { idt, is, slack, age };
	PGresult *res;

	domain_r[0] = '\0';
	snprintf(idt, sizeof(idt), "%" PRIu64, t->delivery_id);
	snprintf(is, sizeof(is), "%" PRId64, t->issued_at);
	snprintf(slack, sizeof(slack), "%d", INTAKE_MSGID_SLACK);
	snprintf(age, sizeof(age), "%ld", intake_max_age(c));
#define INTAKE_STALE \
	" ($2::bigint < extract(epoch FROM now()) - $4::bigint" \
	"  OR coalesce(m.sent_at < now() - make_interval(secs => $4::bigint)," \
	"              false))"
#define INTAKE_FITS \
	"   AND m.state IN ('sent', 'sending', 'unknown')" \
	"   AND CASE WHEN m.sent_at IS NOT NULL" \
	"       THEN abs(extract(epoch FROM m.sent_at) - $2::bigint) <= $3::int" \
	"       ELSE $2::bigint >= extract(epoch FROM m.created_at) - $3::int END"
	if (db_exec(conn, &res, err, notice ?
	    "SELECT 0, m.subscriber_id, '', " INTAKE_STALE
	    "  FROM notices m WHERE m.id = $1" INTAKE_FITS :
	    "SELECT m.campaign_id, m.subscriber_id,"
	    "       lower(split_part(c.from_address, '@', 2)), " INTAKE_STALE
	    "  FROM deliveries m JOIN campaigns c ON c.id = m.campaign_id"
	    " WHERE m.id = $1" INTAKE_FITS, 4, params) == -1)
		return -1;
#undef INTAKE_FITS
#undef INTAKE_STALE
	if (PQntuples(res) == 1) {
		it->attributed_by = by;
		it->delivery_id = notice ? 0 : (long long)t->delivery_id;
		it->notice_id = notice ? (long long)t->delivery_id : 0;
		it->campaign_id = strtoll(PQgetvalue(res, 0, 0), NULL, 10);
		it->subscriber_id = strtoll(PQgetvalue(res, 0, 1), NULL, 10);
		snprintf(domain_r, BOUNCE_HOST_MAX + 1, "%s", PQgetvalue(res, 0, 2));
		it->stale = PQgetvalue(res, 0, 3)[0] == 't';
	}
	PQclear(res);
	return 0;
}

static int
intake_by_verp(PGconn *conn, const struct intake_ctx *c,
    const struct bounce_report *r, struct intake_item *it,
    struct assent_err *err)
{
	const char *ours = c->conf->sender_bounce_domain;
	char domain[BOUNCE_HOST_MAX + 1];
	struct token_compact t;
	struct assent_err ignored;

	if (r->verp.kind != BOUNCE_TOKEN_BOUNCE &&
	    r->verp.kind != BOUNCE_TOKEN_NOTICE)
		return 0;
	if (ours == NULL || ours[0] == '\0' ||
	    strcasecmp(r->verp.domain, ours) != 0)
		return 0;
	/* the purpose is inside the MAC: a b- token never passes as n- */
	if (token_compact_verify(c->signer, r->verp.token,
	    r->verp.kind == BOUNCE_TOKEN_NOTICE ? TOKEN_NOTICE : TOKEN_BOUNCE,
	    (int64_t)time(NULL), &t, &ignored) == -1)
		return 0;
	return intake_find_message(conn, c, r->verp.kind == BOUNCE_TOKEN_NOTICE,
	    &t, "verp", it, domain, err);
}

/* An ARF report's original, by our signed Message-ID (intake.h): the
 * token verifies, names a delivery of the campaign the Message-ID
 * names, at that campaign's From domain, and fits the delivery's send
 * time. The old unsigned form and notices' Message-IDs never do. */
static int
intake_by_message_id(PGconn *conn, const struct intake_ctx *c,
    const struct bounce_report *r, struct intake_item *it,
    struct assent_err *err)
{
	const struct bounce_msgid *m = &r->msgid;
	struct intake_item found = *it;
	char domain[BOUNCE_HOST_MAX + 1];
	struct token_compact t;
	struct assent_err ignored;

	if (r->kind != BOUNCE_KIND_ARF || m->kind != BOUNCE_MSGID_CAMPAIGN ||
	    m->token[0] == '\0' || m->campaign_id == 0 ||
	    m->campaign_id > (uint64_t)INT64_MAX)
		return 0;
	if (token_compact_verify(c->signer, m->token, TOKEN_BOUNCE,
	    (int64_t)time(NULL), &t, &ignored) == -1)
		return 0;
	if (intake_find_message(conn, c, false, &t, "message-id", &found,
	    domain, err) == -1)
		return -1;
	if (found.attributed_by == NULL ||
	    found.campaign_id != (long long)m->campaign_id ||
	    strcmp(domain, m->domain) != 0)
		return 0;
	*it = found;
	return 0;
}

/* ---- reports ------------------------------------------------------------------------ */

static void
intake_item_of(const struct bounce_report *r, const struct bounce_recipient *b,
    size_t raw_size, struct intake_item *it)
{
	it->source = r->kind == BOUNCE_KIND_ARF ? "arf" :
	    r->pattern != NULL ? "text" : "dsn";
	it->raw_size = (long long)raw_size;
	if (b == NULL) {        /* a report that named no recipient */
		it->class = BOUNCE_CLASS_NONE;
		it->recipient = it->status = it->diagnostic = "";
		it->remote_mta = r->reporting_mta;
		return;
	}
	it->class = b->class;
	if (it->class == BOUNCE_CLASS_COMPLAINT && r->kind != BOUNCE_KIND_ARF)
		it->class = BOUNCE_CLASS_NONE;  /* never from a DSN */
	it->recipient = b->final_recipient[0] != '\0' ? b->final_recipient :
	    b->original_recipient;
	it->status = b->status;
	it->smtp_code = b->smtp_code;
	it->diagnostic = b->diagnostic;
	it->remote_mta = b->remote_mta[0] != '\0' ? b->remote_mta :
	    r->reporting_mta;
}

/* Is address (as a report gave it) the one whose key is key? */
static bool
intake_same_address(const char *address, const char *key)
{
	struct assent_err ignored;
	struct addr a;

	return address[0] != '\0' && addr_parse(address, &a, &ignored) == 0 &&
	    strcmp(a.key, key) == 0;
}

/* Which recipient blocks of a DSN attributed to a person are that
 * person's (intake.h): match[i] for each, and *single_r the index of
 * the one failure to act on, downgraded, when none matches (or -1). */
static int
intake_match_blocks(PGconn *conn, const struct bounce_report *r,
    const struct intake_item *who, bool *match, long *single_r,
    struct assent_err *err)
{
	struct intake_person p;
	size_t failures = 0, matched = 0;

	*single_r = -1;
	if (intake_lock_person(conn, who->subscriber_id, &p, err) == -1)
		return -1;
	for (size_t i = 0; i < r->nrecipients; i++) {
		const struct bounce_recipient *b = &r->recipients[i];

		/* an erased person: nothing is done nor kept either way */
		match[i] = p.erased ||
		    intake_same_address(b->final_recipient, p.key) ||
		    intake_same_address(b->original_recipient, p.key);
		matched += match[i];
		if (b->class != BOUNCE_CLASS_NONE &&
		    b->class != BOUNCE_CLASS_COMPLAINT) {
			failures++;
			if (*single_r == -1)
				*single_r = (long)i;
		}
	}
	if (matched > 0 || failures != 1)
		*single_r = -1;
	return 0;
}

static int
intake_report_in(PGconn *conn, const struct intake_ctx *c,
    const struct bounce_report *r, size_t raw_size, struct intake_result *res,
    struct assent_err *err)
{
	struct intake_item who = { .attributed_by = NULL };
	bool *match = NULL;
	long single = -1;
	int rc = -1;

	if (intake_by_verp(conn, c, r, &who, err) == -1)
		return -1;
	if (who.attributed_by == NULL &&
	    intake_by_message_id(conn, c, r, &who, err) == -1)
		return -1;
	if (who.attributed_by != NULL && r->kind != BOUNCE_KIND_ARF &&
	    r->nrecipients > 0) {
		match = xcalloc(r->nrecipients, sizeof(*match));
		if (intake_match_blocks(conn, r, &who, match, &single, err) == -1)
			goto fail;
	}
	for (size_t i = 0; i == 0 || i < r->nrecipients; i++) {
		struct intake_item it = who;

		if (match != NULL && !match[i] && (long)i != single)
			it = (struct intake_item){ .attributed_by = NULL };
		intake_item_of(r, r->nrecipients > 0 ? &r->recipients[i] : NULL,
		    raw_size, &it);
		if ((long)i == single && it.class == BOUNCE_CLASS_HARD)
			it.class = BOUNCE_CLASS_SOFT;   /* maybe a dead forward */
		if (it.attributed_by != NULL && !res->attributed) {
			res->attributed = true;
			snprintf(res->attributed_by, sizeof(res->attributed_by),
			    "%s", it.attributed_by);
			res->delivery_id = it.delivery_id;
			res->notice_id = it.notice_id;
		}
		if (intake_apply(conn, c, &it, res, err) == -1)
			goto fail;
	}
	rc = 0;
fail:
	free(match);
	return rc;
}

int
intake_report(PGconn *conn, const struct intake_ctx *c,
    const struct bounce_report *r, size_t raw_size, struct intake_result *res,
    struct assent_err *err)
{
	memset(res, 0, sizeof(*res));
	if (r->kind != BOUNCE_KIND_DSN && r->kind != BOUNCE_KIND_ARF)
		return err_set(err, EX_SOFTWARE, "intake: a %s is not a bounce or "
		    "a complaint", bounce_kind_name(r->kind));
	if (db_begin(conn, err) == -1)
		return -1;
	if (intake_report_in(conn, c, r, raw_size, res, err) == -1 ||
	    db_commit(conn, err) == -1) {
		db_rollback(conn);
		memset(res, 0, sizeof(*res));
		return -1;
	}
	return 0;
}

/* ---- synchronous refusals ------------------------------------------------------------ */

enum bounce_class
intake_refusal_class(const struct intake_refusal *f, const char **why_r)
{
	enum bounce_class class = bounce_classify_reply(f->code, f->enhanced,
	    f->reply, why_r);

	if (f->at_rcpt || f->code / 100 != 5)
		return class;
	if (class == BOUNCE_CLASS_HARD || class == BOUNCE_CLASS_SOFT) {
		if (why_r != NULL)
			*why_r = "refused after the data: the message, not the mailbox";
		return BOUNCE_CLASS_POLICY;
	}
	return class;
}

static int
intake_refusal_item(PGconn *conn, const struct intake_refusal *f,
    struct intake_item *it, bool *found_r, struct assent_err *err)
{
	char d[24];
	const char *params[] = { d };
	PGresult *res;

	snprintf(d, sizeof(d), "%lld", f->notice_id != 0 ? f->notice_id :
	    f->delivery_id);
	if (db_exec(conn, &res, err, f->notice_id != 0 ?
	    "SELECT NULL, subscriber_id FROM notices WHERE id = $1" :
	    "SELECT campaign_id, subscriber_id FROM deliveries WHERE id = $1",
	    1, params) == -1)
		return -1;
	*found_r = PQntuples(res) == 1;
	if (*found_r) {
		it->campaign_id = strtoll(PQgetvalue(res, 0, 0), NULL, 10);
		it->subscriber_id = strtoll(PQgetvalue(res, 0, 1), NULL, 10);
	}
	PQclear(res);
	it->source = "smtp";
	it->attributed_by = "smtp";
	it->delivery_id = f->notice_id != 0 ? 0 : f->delivery_id;
	it->notice_id = f->notice_id;
	it->class = intake_refusal_class(f, NULL);
	it->status = f->enhanced;
	it->smtp_code = f->code;
	it->stage = f->at_rcpt ? "rcpt" : "data";
	it->diagnostic = f->reply;
	it->remote_mta = "";
	return 0;
}

int
intake_refusals_in(PGconn *conn, const struct intake_ctx *c,
    const struct intake_refusal *f, size_t n, struct intake_result *res,
    struct assent_err *err)
{
	struct intake_result local;

	if (res == NULL) {
		memset(&local, 0, sizeof(local));
		res = &local;
	}
	for (size_t i = 0; i < n; i++) {
		struct intake_item it = { .attributed_by = NULL };
		struct intake_person p;
		bool found;

		if (intake_refusal_item(conn, &f[i], &it, &found, err) == -1)
			return -1;
		if (!found || it.class == BOUNCE_CLASS_NONE)
			continue;
		/* the address it went to, as the recipient (the lock is
		 * intake_apply()'s again, held already) */
		if (intake_lock_person(conn, it.subscriber_id, &p, err) == -1)
			return -1;
		it.recipient = p.erased ? "" : p.email;
		if (intake_apply(conn, c, &it, res, err) == -1)
			return -1;
	}
	return 0;
}

/* ---- listing -------------------------------------------------------------------------- */

static int
intake_query_check(PGconn *conn, const struct intake_query *q, char *campaign,
    size_t size, struct assent_err *err)
{
	static const char *const classes[] = { "hard", "soft", "policy",
	    "complaint", "none" };
	const char *params[] = { q->campaign };
	PGresult *res;
	bool known = q->class == NULL;

	for (size_t i = 0; !known && i < sizeof(classes) / sizeof(classes[0]); i++)
		known = strcmp(q->class, classes[i]) == 0;
	if (!known)
		return err_set(err, EX_DATAERR, "no class %s (hard, soft, policy, "
		    "complaint or none)", q->class);
	if (q->limit < 1 || q->limit > 100000)
		return err_set(err, EX_DATAERR, "a limit of 1 to 100000, not %ld",
		    q->limit);
	campaign[0] = '\0';
	if (q->campaign == NULL)
		return 0;
	if (db_exec(conn, &res, err, "SELECT id FROM campaigns"
	    " WHERE lower(name) = lower($1)", 1, params) == -1)
		return -1;
	if (PQntuples(res) == 1)
		snprintf(campaign, size, "%s", PQgetvalue(res, 0, 0));
	PQclear(res);
	if (campaign[0] == '\0')
		return err_set(err, EX_DATAERR, "no campaign %s", q->campaign);
	return 0;
}

int
intake_list(PGconn *conn, const struct intake_query *q, json_t **rows_r,
    struct assent_err *err)
{
	char campaign[24], limit[24];
	const char *params[] = { NULL, q->class, limit };
	PGresult *res;

	*rows_r = NULL;
	if (intake_query_check(conn, q, campaign, sizeof(campaign), err) == -1)
		return -1;
	params[0] = campaign[0] != '\0' ? campaign : NULL;
	snprintf(limit, sizeof(limit), "%ld", q->limit);
	if (db_exec(conn, &res, err, "SELECT b.id,"
	    " to_char(b.received_at, 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"') AS received_at,"
	    " b.source, b.class, b.status, b.smtp_code, c.name AS campaign,"
	    " b.recipient, b.action, b.diagnostic, b.attributed_by"
	    " FROM bounces b LEFT JOIN campaigns c ON c.id = b.campaign_id"
	    " WHERE ($1::bigint IS NULL OR b.campaign_id = $1::bigint)"
	    "   AND ($2::text IS NULL OR b.class = $2::text)"
	    " ORDER BY b.id DESC LIMIT $3::bigint", 3, params) == -1)
		return -1;
	*rows_r = db_rows_json(res);
	PQclear(res);
	return 0;
}

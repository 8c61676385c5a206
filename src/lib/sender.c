/*
 * sender: claim -> gate -> render -> transport -> record (see sender.h).
 *
 * Why the order matters: the gate runs inside the claiming transaction,
 * so a suppression committed before the claim stops the message; the
 * claim commits 'sending' before the SMTP session starts, so a crash
 * can leave a message unknown but never sent twice; every outcome of a
 * session is written by one statement, with the relay's refusals
 * (stored and acted on by intake.c: a hard bounce at RCPT suppresses)
 * in one transaction.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/rand.h>

#include "assent/campaign.h"
#include "assent/compose.h"
#include "assent/db.h"
#include "assent/intake.h"
#include "assent/log.h"
#include "assent/notice.h"
#include "assent/sender.h"
#include "assent/text.h"
#include "assent/transport.h"
#include "assent/xmalloc.h"

#define SENDER_CACHE      4             /* composed campaigns kept */
#define SENDER_RETRY_MAX  3600          /* seconds between 4xx retries, at most */
#define SENDER_REPLY_MAX  300

/* What the claim decided for one delivery. */
enum sender_fate { FATE_SEND, FATE_SUPPRESSED, FATE_FAILED, FATE_DEFER };

struct sender_row {
	uint64_t id, subscriber_id, list_id;
	const char *email, *key, *name, *attrs, *domain;   /* into the claim result */
	int attempts;
	bool subscribed;
	enum sender_fate fate;
	long long suppression_id;       /* 0: none */
	char reason[SENDER_REPLY_MAX];  /* suppress reason, or why it failed */
};

struct sender_cached {
	long long campaign_id;
	struct compose *compose;
};

struct sender {
	PGconn *conn;
	const struct assent_conf *conf;
	const struct suppress_ctx *gate;
	struct token_signer *signer;
	struct throttle *throttle;
	struct transport *transport;
	struct notice_sender *notices;  /* NULL: confirmation requests wait */
	int session;
	struct sender_cached cache[SENDER_CACHE];
	size_t cache_next;
	size_t turn;                    /* round robin over sending campaigns */
	/* the batch in flight */
	struct compose *cp;
	PGresult *claimed;
	struct sender_row *rows;
	size_t nrows, cap;
	struct transport_msg *msgs;
	size_t *msg_row;                /* msgs[i] is rows[msg_row[i]] */
	char (*envelopes)[COMPOSE_ENVELOPE_MAX];
	size_t nmsgs;
	time_t batch_time;
	struct buf scratch;
	struct sender_outcomes *unrecorded;     /* see sender_take_unrecorded() */
	const volatile int *stop;               /* sender_set_stop() */
};

/* ---- the sender ---------------------------------------------------------- */

static int
sender_lock_session(struct sender *s, struct assent_err *err)
{
	char ns[16], id[16];
	const char *params[] = { ns, id };
	PGresult *res;

	snprintf(ns, sizeof(ns), "%d", ASSENT_SESSION_NS);
	for (int tries = 0; tries < 16; tries++) {
		uint32_t r = 0;
		bool got;

		if (RAND_bytes((unsigned char *)&r, sizeof(r)) != 1)
			return err_set(err, EX_SOFTWARE, "no random bytes");
		s->session = (int)(r & 0x7fffffff);
		if (s->session == 0)
			continue;
		snprintf(id, sizeof(id), "%d", s->session);
		if (db_exec(s->conn, &res, err, "SELECT pg_try_advisory_lock("
		    "$1::int, $2::int)", 2, params) < 0)
			return -1;
		got = PQgetvalue(res, 0, 0)[0] == 't';
		PQclear(res);
		if (got)
			return 0;
	}
	return err_set(err, EX_TEMPFAIL, "no free sender session id");
}

/* Confirmation requests go with the campaigns; a configuration that
 * cannot build them (no From, a broken template file) leaves them
 * queued and says why, without stopping the campaigns. */
static void
sender_new_notices(struct sender *s)
{
	struct assent_err err;

	if (notice_sender_new(s->conf, s->gate, s->signer, s->session,
	    &s->notices, &err) < 0)
		log_warnx("confirmation requests stay queued: %s", err.msg);
}

int
sender_new(PGconn *conn, const struct assent_conf *conf,
    const struct suppress_ctx *gate, struct token_signer *signer,
    struct throttle *throttle, struct sender **sender_r,
    struct assent_err *err)
{
	struct sender *s = xcalloc(1, sizeof(*s));
	struct transport_opts opts;

	*sender_r = NULL;
	s->conn = conn;
	s->conf = conf;
	s->gate = gate;
	s->signer = signer;
	s->throttle = throttle;
	s->cap = (size_t)conf->sending_batch;
	/* Under a rate limit, a batch the rate needs more than a few seconds
	 * for would hold its deliveries 'sending' (unknown after a crash) for
	 * no gain, and slow a SIGTERM: at most 2 s worth. */
	if (conf->sending_rate > 0 && s->cap > (size_t)conf->sending_rate * 2)
		s->cap = (size_t)conf->sending_rate * 2;
	s->rows = xcalloc(s->cap, sizeof(*s->rows));
	s->msgs = xcalloc(s->cap, sizeof(*s->msgs));
	s->msg_row = xcalloc(s->cap, sizeof(*s->msg_row));
	s->envelopes = xcalloc(s->cap, sizeof(*s->envelopes));
	buf_init(&s->scratch);
	transport_opts_from_conf(conf, &opts);
	if (transport_new(&opts, &s->transport, err) < 0 ||
	    sender_lock_session(s, err) < 0) {
		sender_free(s);
		return -1;
	}
	sender_new_notices(s);
	*sender_r = s;
	return 0;
}

void
sender_free(struct sender *s)
{
	if (s == NULL)
		return;
	for (size_t i = 0; i < SENDER_CACHE; i++)
		compose_free(s->cache[i].compose);
	PQclear(s->claimed);
	sender_outcomes_free(s->unrecorded);
	notice_sender_free(s->notices);
	transport_free(s->transport);
	free(s->rows);
	free(s->msgs);
	free(s->msg_row);
	free(s->envelopes);
	buf_free(&s->scratch);
	free(s);
}

int
sender_session(const struct sender *s)
{
	return s->session;
}

void
sender_set_stop(struct sender *s, const volatile int *stop)
{
	s->stop = stop;
}

static bool
sender_stopping(const struct sender *s)
{
	return s->stop != NULL && *s->stop;
}

/* The compose of campaign id, from the cache or made now. */
static int
sender_compose(struct sender *s, long long id, struct compose **cp_r,
    struct assent_err *err)
{
	struct campaign *c;
	struct sender_cached *slot;

	for (size_t i = 0; i < SENDER_CACHE; i++)
		if (s->cache[i].compose != NULL && s->cache[i].campaign_id == id) {
			*cp_r = s->cache[i].compose;
			return 0;
		}
	if (campaign_load_id(s->conn, id, &c, err) < 0)
		return -1;
	slot = &s->cache[s->cache_next];
	s->cache_next = (s->cache_next + 1) % SENDER_CACHE;
	compose_free(slot->compose);
	slot->compose = NULL;
	if (compose_new(c, s->conf, s->signer, &slot->compose, err) < 0) {
		campaign_free(c);
		return -1;
	}
	campaign_free(c);
	slot->campaign_id = id;
	*cp_r = slot->compose;
	return 0;
}

/* ---- 1. claim ------------------------------------------------------------- */

static const char sender_claim_sql[] =
    "WITH picked AS ("
    "  SELECT d.id FROM deliveries d"
    "   WHERE d.campaign_id = $1 AND d.state = 'queued'"
    "     AND d.next_attempt_at <= now()"
    "     AND d.domain <> ALL ($3::text[])"
    "     AND EXISTS (SELECT 1 FROM campaigns c"
    "                  WHERE c.id = $1 AND c.state = 'sending')"
    "   ORDER BY d.id LIMIT $2"
    "   FOR UPDATE OF d SKIP LOCKED)"
    " SELECT d.id, d.subscriber_id, d.list_id, d.domain, d.attempts,"
    "        s.email, s.email_key, s.name, s.attrs::text,"
    "        (SELECT min(ss.list_id) FROM sendable_subscriptions ss"
    "           JOIN campaign_lists cl ON cl.list_id = ss.list_id"
    "          WHERE cl.campaign_id = $1"
    "            AND ss.subscriber_id = d.subscriber_id)"
    "   FROM picked p JOIN deliveries d ON d.id = p.id"
    "   JOIN subscribers s ON s.id = d.subscriber_id"
    "  ORDER BY d.id";

static uint64_t
sender_u64(const PGresult *res, int row, int col)
{
	return strtoull(PQgetvalue(res, row, col), NULL, 10);
}

static void
sender_read_rows(struct sender *s)
{
	PGresult *res = s->claimed;

	s->nrows = (size_t)PQntuples(res);
	for (size_t i = 0; i < s->nrows; i++) {
		struct sender_row *r = &s->rows[i];
		int row = (int)i;

		memset(r, 0, sizeof(*r));
		r->id = sender_u64(res, row, 0);
		r->subscriber_id = sender_u64(res, row, 1);
		r->list_id = sender_u64(res, row, 2);
		r->domain = PQgetvalue(res, row, 3);
		r->attempts = atoi(PQgetvalue(res, row, 4));
		r->email = PQgetisnull(res, row, 5) ? NULL : PQgetvalue(res, row, 5);
		r->key = PQgetisnull(res, row, 6) ? NULL : PQgetvalue(res, row, 6);
		r->name = PQgetvalue(res, row, 7);
		r->attrs = PQgetvalue(res, row, 8);
		/* The list the unsubscribe link leaves: one the person is on
		 * now, not the one of when the audience was built. */
		r->subscribed = !PQgetisnull(res, row, 9);
		if (r->subscribed)
			r->list_id = sender_u64(res, row, 9);
	}
}

static void
sender_recipient(const struct sender_row *r, json_t *attrs,
    struct compose_recipient *rc)
{
	rc->delivery_id = r->id;
	rc->subscriber_id = r->subscriber_id;
	rc->list_id = r->list_id;
	rc->email = r->email;
	rc->name = r->name;
	rc->attrs = attrs;
}

/* Everything but the gate: erased, unsubscribed, unrenderable,
 * throttled. */
static void
sender_decide(struct sender *s, struct throttle_session *ts)
{
	double now = throttle_now();

	for (size_t i = 0; i < s->nrows; i++) {
		struct sender_row *r = &s->rows[i];
		struct compose_recipient rc;
		struct assent_err e;
		json_t *attrs;

		if (r->fate != FATE_SEND)
			continue;
		if (r->email == NULL || r->key == NULL) {
			r->fate = FATE_SUPPRESSED;
			snprintf(r->reason, sizeof(r->reason), "erased");
			continue;
		}
		if (!r->subscribed) {
			r->fate = FATE_SUPPRESSED;
			snprintf(r->reason, sizeof(r->reason), "unsubscribed");
			continue;
		}
		attrs = json_loads(r->attrs, 0, NULL);
		sender_recipient(r, attrs, &rc);
		err_clear(&e);
		if (compose_check(s->cp, &rc, &e) < 0) {
			r->fate = FATE_FAILED;
			snprintf(r->reason, sizeof(r->reason), "cannot render: %.250s",
			    e.msg);
		} else if (!throttle_admit(s->throttle, ts, r->domain, now))
			r->fate = FATE_DEFER;
		json_decref(attrs);
	}
}

static int
sender_gate(struct sender *s, struct assent_err *err)
{
	const char **keys = xcalloc(s->nrows, sizeof(*keys));
	struct suppress_verdict *v = xcalloc(s->nrows, sizeof(*v));
	size_t n = 0;
	int rc;

	for (size_t i = 0; i < s->nrows; i++)
		if (s->rows[i].key != NULL)
			keys[n++] = s->rows[i].key;
	rc = n == 0 ? 0 : suppress_gate(s->conn, s->gate, keys, n, v, err);
	for (size_t i = 0, j = 0; rc == 0 && i < s->nrows; i++) {
		struct sender_row *r = &s->rows[i];

		if (r->key == NULL)
			continue;
		if (v[j].suppressed) {
			r->fate = FATE_SUPPRESSED;
			r->suppression_id = v[j].entry.id;
			snprintf(r->reason, sizeof(r->reason), "%s",
			    v[j].entry.reason);
		}
		j++;
	}
	free(keys);
	free(v);
	return rc;
}

/* Write every fate but FATE_DEFER (left as it was). */
static int
sender_mark(struct sender *s, struct assent_err *err)
{
	struct buf ids, states, sids, reasons;
	char session[16];
	const char *params[5];
	int rc;

	buf_init(&ids); buf_init(&states); buf_init(&sids); buf_init(&reasons);
	db_array_open(&ids); db_array_open(&states); db_array_open(&sids); db_array_open(&reasons);
	for (size_t i = 0; i < s->nrows; i++) {
		const struct sender_row *r = &s->rows[i];
		static const char *const names[] = {
			[FATE_SEND] = "sending", [FATE_SUPPRESSED] = "suppressed",
			[FATE_FAILED] = "failed" };

		if (r->fate == FATE_DEFER)
			continue;
		db_array_int(&ids, (long long)r->id);
		db_array_text(&states, names[r->fate]);
		if (r->suppression_id != 0)
			db_array_int(&sids, r->suppression_id);
		else
			db_array_text(&sids, NULL);
		db_array_text(&reasons, r->fate == FATE_SEND ? NULL : r->reason);
	}
	db_array_close(&ids); db_array_close(&states); db_array_close(&sids); db_array_close(&reasons);
	snprintf(session, sizeof(session), "%d", s->session);
	params[0] = ids.data; params[1] = states.data; params[2] = sids.data;
	params[3] = reasons.data; params[4] = session;
	rc = db_exec(s->conn, NULL, err,
	    "UPDATE deliveries d SET state = u.state,"
	    "   sender_session = CASE WHEN u.state = 'sending' THEN $5::int"
	    "                         ELSE d.sender_session END,"
	    "   suppression_id = u.sid,"
	    "   suppress_reason = CASE WHEN u.state = 'suppressed' THEN u.reason END,"
	    "   smtp_reply = CASE WHEN u.state = 'failed' THEN u.reason"
	    "                     ELSE d.smtp_reply END"
	    "  FROM unnest($1::bigint[], $2::text[], $3::bigint[], $4::text[])"
	    "       AS u(id, state, sid, reason)"
	    " WHERE d.id = u.id", 5, params);
	buf_free(&ids); buf_free(&states); buf_free(&sids); buf_free(&reasons);
	return rc;
}

/* One domain the throttle holds back, into the claim's array. */
static void
sender_blocked_domain(const char *domain, void *arg)
{
	db_array_text(arg, domain);
}

static int
sender_claim_campaign(struct sender *s, long long campaign_id,
    struct throttle_session *ts, bool *broken_r, struct assent_err *err)
{
	char id[24], limit[16];
	const char *params[3] = { id, limit, NULL };

	snprintf(id, sizeof(id), "%lld", campaign_id);
	snprintf(limit, sizeof(limit), "%zu", s->cap);
	db_array_open(&s->scratch);
	throttle_blocked(s->throttle, throttle_now(), sender_blocked_domain,
	    &s->scratch);
	db_array_close(&s->scratch);
	params[2] = s->scratch.data;
	PQclear(s->claimed);
	s->claimed = NULL;
	s->nrows = 0;
	if (db_exec(s->conn, &s->claimed, err, sender_claim_sql, 3, params) < 0)
		return -1;
	sender_read_rows(s);
	if (s->nrows == 0)
		return 0;
	if (sender_compose(s, campaign_id, &s->cp, err) < 0) {
		*broken_r = PQstatus(s->conn) == CONNECTION_OK &&
		    (err->code == EX_DATAERR || err->code == EX_CONFIG);
		return -1;
	}
	if (sender_gate(s, err) < 0)
		return -1;
	sender_decide(s, ts);
	return sender_mark(s, err);
}

/* The ids of the campaigns being sent, oldest first. */
static int
sender_campaigns(struct sender *s, long long **ids_r, size_t *n_r,
    struct assent_err *err)
{
	PGresult *res;

	*ids_r = NULL;
	*n_r = 0;
	if (db_exec(s->conn, &res, err, "SELECT id FROM campaigns"
	    " WHERE state = 'sending' ORDER BY started_at, id", 0, NULL) < 0)
		return -1;
	*n_r = (size_t)PQntuples(res);
	*ids_r = xcalloc(*n_r + 1, sizeof(**ids_r));
	for (size_t i = 0; i < *n_r; i++)
		(*ids_r)[i] = strtoll(PQgetvalue(res, (int)i, 0), NULL, 10);
	PQclear(res);
	return 0;
}

/* Claim one batch from the first sending campaign (round robin) that
 * has work, in one transaction. */
static int
sender_claim(struct sender *s, struct throttle_session *ts,
    struct sender_stats *st, struct assent_err *err)
{
	long long *ids;
	size_t n;

	s->nrows = 0;
	if (sender_campaigns(s, &ids, &n, err) < 0)
		return -1;
	for (size_t k = 0; k < n && s->nrows == 0; k++) {
		long long id = ids[(s->turn + k) % n];
		bool broken = false;

		if (db_begin(s->conn, err) < 0)
			goto fail;
		if (sender_claim_campaign(s, id, ts, &broken, err) < 0) {
			db_rollback(s->conn);
			if (!broken)
				goto fail;
			/* this one cannot be built: say so, and go on */
			st->broken_campaign = id;
			snprintf(st->broken_reason, sizeof(st->broken_reason), "%s",
			    err->msg);
			err_clear(err);
			s->nrows = 0;
			continue;
		}
		if (db_commit(s->conn, err) < 0)
			goto fail;
	}
	s->turn++;
	free(ids);
	return 0;
fail:
	s->turn++;      /* next time another campaign comes first */
	free(ids);
	s->nrows = 0;
	return -1;
}

/* ---- 2. send ---------------------------------------------------------------- */

static int
sender_fill(void *arg, size_t index, struct buf *out)
{
	struct sender *s = arg;
	const struct sender_row *r = &s->rows[s->msg_row[index]];
	struct compose_recipient rc;
	char envelope[COMPOSE_ENVELOPE_MAX];
	struct assent_err e;
	json_t *attrs;
	int rc_;

	if (sender_stopping(s))
		return -1;      /* abandoned before its data: not tried */
	attrs = json_loads(r->attrs, 0, NULL);
	sender_recipient(r, attrs, &rc);
	err_clear(&e);
	rc_ = compose_message(s->cp, &rc, s->batch_time, out, envelope, &e);
	json_decref(attrs);
	if (rc_ < 0) {
		/* transport abandons the message (NOT_TRIED); record why it
		 * failed instead of queueing it again for the same fate */
		struct sender_row *w = &s->rows[s->msg_row[index]];

		w->fate = FATE_FAILED;
		snprintf(w->reason, sizeof(w->reason), "cannot render: %.250s",
		    e.msg);
	}
	return rc_;
}

/* The global rate, in steps short enough to notice a stop. */
static void
sender_pace(void *arg, size_t index)
{
	struct sender *s = arg;
	double wait;

	(void)index;
	while (!sender_stopping(s) &&
	    !throttle_try_pace(s->throttle, throttle_now(), &wait)) {
		struct timespec ts = { 0, (long)((wait < 0.1 ? wait : 0.1) * 1e9) };

		nanosleep(&ts, NULL);
	}
}

/* The messages to send, with their envelope senders. */
static int
sender_prepare(struct sender *s, struct assent_err *err)
{
	s->nmsgs = 0;
	s->batch_time = time(NULL);
	for (size_t i = 0; i < s->nrows; i++) {
		const struct sender_row *r = &s->rows[i];
		struct compose_recipient rc;
		struct transport_msg *m;

		if (r->fate != FATE_SEND)
			continue;
		sender_recipient(r, NULL, &rc);
		if (compose_envelope(s->cp, &rc, s->batch_time,
		    s->envelopes[s->nmsgs], err) < 0)
			return -1;
		m = &s->msgs[s->nmsgs];
		memset(m, 0, sizeof(*m));
		m->envelope_from = s->envelopes[s->nmsgs];
		m->rcpt = r->email;
		s->msg_row[s->nmsgs++] = i;
	}
	return 0;
}

/* ---- 3. record ---------------------------------------------------------------- */

/* A session's outcomes, ready to write: array literals (closed once
 * complete) for one UPDATE, and the relay's refusals for intake. They
 * outlive the sender when the write fails (sender_take_unrecorded()),
 * to be written on the next connection under the session that sent
 * them, so they keep their own copy of the bounce settings. */
struct sender_outcomes {
	int session;
	size_t n;
	struct buf ids, states, tried, delays, replies;
	struct intake_refusal *refusals;
	size_t nrefusals;
	int soft_limit;
	long soft_span, soft_suppress_for;
};

static struct sender_outcomes *
sender_outcomes_new(int session, const struct assent_conf *conf, size_t cap)
{
	struct sender_outcomes *o = xcalloc(1, sizeof(*o));
	struct buf *all[] = { &o->ids, &o->states, &o->tried, &o->delays,
	    &o->replies };

	o->session = session;
	for (size_t i = 0; i < sizeof(all) / sizeof(all[0]); i++) {
		buf_init(all[i]);
		db_array_open(all[i]);
	}
	o->refusals = xcalloc(cap + 1, sizeof(*o->refusals));
	o->soft_limit = conf->bounce_soft_limit;
	o->soft_span = conf->bounce_soft_span;
	o->soft_suppress_for = conf->bounce_soft_suppress_for;
	return o;
}

void
sender_outcomes_free(struct sender_outcomes *o)
{
	if (o == NULL)
		return;
	buf_free(&o->ids); buf_free(&o->states); buf_free(&o->tried);
	buf_free(&o->delays); buf_free(&o->replies);
	free(o->refusals);
	free(o);
}

size_t
sender_outcomes_count(const struct sender_outcomes *o)
{
	return o->n;
}

/* The retry delay after attempts failed attempts (attempts >= 1). */
static long
sender_backoff(const struct assent_conf *conf, int attempts)
{
	long delay = conf->sending_retry_base;

	for (int i = 1; i < attempts && delay < SENDER_RETRY_MAX; i++)
		delay *= 2;
	return delay < SENDER_RETRY_MAX ? delay : SENDER_RETRY_MAX;
}

void
sender_count(const struct sender_verdict *v, long *sent, long *failed,
    long *retried, long *unknown, long *deferred)
{
	if (!v->tried)
		(*deferred)++;
	else if (strcmp(v->state, "sent") == 0)
		(*sent)++;
	else if (strcmp(v->state, "failed") == 0)
		(*failed)++;
	else if (strcmp(v->state, "unknown") == 0)
		(*unknown)++;
	else
		(*retried)++;
}

void
sender_judge(const struct assent_conf *conf, const struct transport_msg *m,
    int attempts, struct sender_verdict *v)
{
	memset(v, 0, sizeof(*v));
	v->state = "queued";
	v->tried = true;
	switch (m->outcome) {
	case TRANSPORT_SENT:
		v->state = "sent";
		break;
	case TRANSPORT_TEMPFAIL:
		if (attempts + 1 >= conf->sending_max_attempts)
			v->state = "failed";
		else
			v->delay = sender_backoff(conf, attempts + 1);
		break;
	case TRANSPORT_PERMFAIL:
		v->state = "failed";
		/* the classifier DSNs go through: the same reply, the same
		 * class; only a refusal at RCPT is about the mailbox */
		v->hard_bounce = m->stage == TRANSPORT_STAGE_RCPT &&
		    bounce_classify_reply(m->code, m->enhanced, m->reply, NULL) ==
		    BOUNCE_CLASS_HARD;
		break;
	case TRANSPORT_UNCERTAIN:
		v->state = "unknown";
		break;
	case TRANSPORT_NOT_TRIED:
		v->tried = false;
		break;
	}
}

bool
sender_refusal(const struct transport_msg *m, const char *reply,
    struct intake_refusal *f)
{
	if ((m->outcome != TRANSPORT_PERMFAIL &&
	    m->outcome != TRANSPORT_TEMPFAIL) || m->code < 400 ||
	    m->code > 599 || (m->stage != TRANSPORT_STAGE_RCPT &&
	    m->stage != TRANSPORT_STAGE_DATA))
		return false;
	memset(f, 0, sizeof(*f));
	f->at_rcpt = m->stage == TRANSPORT_STAGE_RCPT;
	f->code = m->code;
	snprintf(f->enhanced, sizeof(f->enhanced), "%s", m->enhanced);
	snprintf(f->reply, sizeof(f->reply), "%s", reply);
	return true;
}

/* A refusal by the relay (4xx or 5xx at RCPT or after the data) goes
 * to intake with the outcome. */
static void
sender_add_refusal(struct sender_outcomes *o, const struct transport_msg *m,
    const struct sender_row *r, const char *reply)
{
	struct intake_refusal *f = &o->refusals[o->nrefusals];

	if (!sender_refusal(m, reply, f))
		return;
	f->delivery_id = (long long)r->id;
	o->nrefusals++;
}

/* One delivery's outcome into o. */
static void
sender_outcome(struct sender *s, struct sender_outcomes *o, size_t i,
    struct sender_stats *st)
{
	const struct transport_msg *m = &s->msgs[i];
	const struct sender_row *r = &s->rows[s->msg_row[i]];
	char reply[SENDER_REPLY_MAX];
	struct sender_verdict v;
	const char *state;
	int tried;
	long delay;

	transport_reply_text(m, reply, sizeof(reply));
	sender_judge(s->conf, m, r->attempts, &v);
	if (!v.tried && r->fate == FATE_FAILED) {
		/* sender_fill() could not build it */
		v.state = "failed";
		v.tried = true;
		snprintf(reply, sizeof(reply), "%s", r->reason);
		text_make_utf8(reply, strlen(reply));
	}
	sender_add_refusal(o, m, r, reply);
	sender_count(&v, &st->sent, &st->failed, &st->retried, &st->unknown,
	    &st->deferred);
	state = v.state;
	tried = v.tried;
	delay = v.delay;
	db_array_int(&o->ids, (long long)r->id);
	db_array_text(&o->states, state);
	db_array_int(&o->tried, tried);
	db_array_int(&o->delays, delay);
	db_array_text(&o->replies, tried == 0 ? NULL : reply);
	o->n++;
}

static const char sender_record_sql[] =
    "UPDATE deliveries d SET state = u.state,"
    "   attempts = d.attempts + u.tried,"
    "   next_attempt_at = CASE WHEN u.state = 'queued'"
    "       THEN now() + make_interval(secs => u.delay) ELSE d.next_attempt_at END,"
    /* a reply may quote the address: not kept once the person was
     * erased (the erasure, waiting on this row, sees it after) */
    "   smtp_reply = CASE WHEN s.email_key IS NULL THEN NULL"
    "       ELSE COALESCE(u.reply, d.smtp_reply) END,"
    "   sent_at = CASE WHEN u.state = 'sent' THEN now() ELSE d.sent_at END"
    "  FROM unnest($1::bigint[], $2::text[], $3::int[], $4::int[], $5::text[])"
    "       AS u(id, state, tried, delay, reply), subscribers s"
    " WHERE d.id = u.id AND d.state IN ('sending', 'unknown')"
    "   AND d.sender_session = $6::int AND s.id = d.subscriber_id"
    " RETURNING d.id";

/* The refusals of the deliveries the UPDATE wrote (res: their ids), to
 * intake: a delivery written before (a retried write whose first commit
 * did go through) is not counted twice. */
static int
sender_refusals_write(PGconn *conn, struct sender_outcomes *o,
    const PGresult *res, struct assent_err *err)
{
	struct assent_conf conf = { .bounce_soft_limit = o->soft_limit,
	    .bounce_soft_span = o->soft_span,
	    .bounce_soft_suppress_for = o->soft_suppress_for };
	struct intake_ctx ctx = { .conf = &conf, .added_by = "assentd" };
	struct intake_refusal *written = xcalloc(o->nrefusals + 1,
	    sizeof(*written));
	size_t n = 0;
	int rc;

	for (size_t i = 0; i < o->nrefusals; i++)
		for (int row = 0; row < PQntuples(res); row++)
			if (strtoll(PQgetvalue(res, row, 0), NULL, 10) ==
			    o->refusals[i].delivery_id) {
				written[n++] = o->refusals[i];
				break;
			}
	rc = intake_refusals_in(conn, &ctx, written, n, NULL, err);
	free(written);
	return rc;
}

int
sender_outcomes_write(PGconn *conn, struct sender_outcomes *o, long *written_r,
    struct assent_err *err)
{
	char session[16];
	PGresult *res;

	*written_r = 0;
	snprintf(session, sizeof(session), "%d", o->session);
	const char *params[] = { o->ids.data, o->states.data, o->tried.data,
	    o->delays.data, o->replies.data, session };
	if (db_begin(conn, err) < 0)
		return -1;
	/* the refused deliveries' subscribers first: the lock order of
	 * every other path (unsubscribe, erasure, intake) */
	if (intake_lock_subscribers(conn, o->refusals, o->nrefusals, err) < 0 ||
	    db_exec(conn, &res, err, sender_record_sql, 6, params) < 0)
		goto fail;
	*written_r = (long)PQntuples(res);
	if (sender_refusals_write(conn, o, res, err) < 0) {
		PQclear(res);
		goto fail;
	}
	PQclear(res);
	return db_commit(conn, err);
fail:
	db_rollback(conn);
	*written_r = 0;
	return -1;
}

struct sender_outcomes *
sender_take_unrecorded(struct sender *s)
{
	struct sender_outcomes *o = s->unrecorded;

	s->unrecorded = NULL;
	return o;
}

/* Write the session's outcomes; when that fails they are kept for
 * sender_take_unrecorded(). */
static int
sender_record(struct sender *s, struct sender_stats *st, struct assent_err *err)
{
	struct sender_outcomes *o = sender_outcomes_new(s->session, s->conf,
	    s->nmsgs);
	long written;

	for (size_t i = 0; i < s->nmsgs; i++)
		sender_outcome(s, o, i, st);
	db_array_close(&o->ids); db_array_close(&o->states);
	db_array_close(&o->tried); db_array_close(&o->delays);
	db_array_close(&o->replies);
	if (sender_outcomes_write(s->conn, o, &written, err) < 0) {
		sender_outcomes_free(s->unrecorded);
		s->unrecorded = o;
		return -1;
	}
	if ((size_t)written < o->n)
		st->unwritten += (long)(o->n - (size_t)written);
	sender_outcomes_free(o);
	return 0;
}

/* ---- one turn ------------------------------------------------------------------ */

static void
sender_count_claim(const struct sender *s, struct sender_stats *st)
{
	st->claimed += (long)s->nrows;
	for (size_t i = 0; i < s->nrows; i++) {
		if (s->rows[i].fate == FATE_SUPPRESSED)
			st->suppressed++;
		else if (s->rows[i].fate == FATE_FAILED)
			st->failed++;
		else if (s->rows[i].fate == FATE_DEFER)
			st->deferred++;
	}
}

int
sender_run_batch(struct sender *s, bool *worked_r, struct sender_stats *stats,
    struct assent_err *err)
{
	struct sender_stats local = { 0 };
	struct sender_stats *st = stats != NULL ? stats : &local;
	struct throttle_session *ts = throttle_session_begin(s->throttle);
	struct assent_err send_err, notice_err;
	bool notice_failed = false;
	int rc = -1, sent_rc;

	*worked_r = false;
	err_clear(&notice_err);
	if (s->notices != NULL && notice_run_batch(s->notices, s->conn,
	    s->transport, worked_r, &st->notices, &notice_err) < 0) {
		/* the database: reconnect; the relay (perhaps refusing only the
		 * notices' senders): the campaigns still get their turn */
		if (notice_err.code != EX_UNAVAILABLE) {
			*err = notice_err;
			goto done;
		}
		notice_failed = true;
	}
	if (sender_claim(s, ts, st, err) < 0)
		goto done;
	*worked_r = *worked_r || s->nrows > 0;
	sender_count_claim(s, st);
	if (sender_prepare(s, err) < 0)
		goto done;      /* left 'sending': the reaper makes them unknown */
	rc = 0;
	if (s->nmsgs == 0)
		goto done;
	err_clear(&send_err);
	sent_rc = transport_send(s->transport, s->msgs, s->nmsgs, sender_fill,
	    sender_pace, s, &send_err);
	rc = sender_record(s, st, err);
	if (rc == 0 && sent_rc < 0) {
		/* Whatever the relay's trouble, it is the relay's: the worker
		 * keeps its database connection and backs off. */
		*err = send_err;
		err->code = EX_UNAVAILABLE;
		rc = -1;
	}
done:
	if (rc == 0 && notice_failed) {
		*err = notice_err;      /* back off all the same */
		rc = -1;
	}
	throttle_session_end(s->throttle, ts);
	return rc;
}

/* ---- orphans ------------------------------------------------------------------------ */

/* table's rows 'sending' under a dead session become 'unknown', with
 * note in column (table and column are constants of this file). */
static int
sender_reap_table(PGconn *conn, const char *sql, long *count_r,
    struct assent_err *err)
{
	char ns[16];
	const char *params[] = { ns };
	PGresult *res;

	snprintf(ns, sizeof(ns), "%d", ASSENT_SESSION_NS);
	if (db_exec(conn, &res, err, sql, 1, params) < 0)
		return -1;
	*count_r += strtol(PQcmdTuples(res), NULL, 10);
	PQclear(res);
	return 0;
}

#define SENDER_REAP(table, column) \
	"UPDATE " table " d SET state = 'unknown'," \
	"   " column " = 'the sender stopped while sending it'" \
	" WHERE d.state = 'sending'" \
	"   AND NOT EXISTS (SELECT 1 FROM pg_locks l" \
	"        WHERE l.locktype = 'advisory' AND l.granted" \
	"          AND l.database = (SELECT oid FROM pg_database" \
	"                             WHERE datname = current_database())" \
	"          AND l.classid = $1::int::oid" \
	"          AND l.objid = d.sender_session::oid" \
	"          AND l.objsubid = 2)"

int
sender_reap_orphans(PGconn *conn, long *count_r, struct assent_err *err)
{
	*count_r = 0;
	if (sender_reap_table(conn, SENDER_REAP("deliveries", "smtp_reply"),
	    count_r, err) < 0)
		return -1;
	return sender_reap_table(conn, SENDER_REAP("notices", "detail"), count_r,
	    err);
}

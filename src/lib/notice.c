/* notice: confirmation requests, queued with the sign-up and sent by
 * the workers through the gate (see include/assent/notice.h) */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "assent/addr.h"
#include "assent/db.h"
#include "assent/intake.h"
#include "assent/mime.h"
#include "assent/notice.h"
#include "assent/render.h"
#include "assent/sender.h"
#include "assent/text.h"
#include "assent/xmalloc.h"

#define NOTICE_URL_MAX      1024
#define NOTICE_ENVELOPE_MAX 256
#define NOTICE_REPLY_MAX    300

static const char notice_default_text[] =
    "Hello {{ name | \"there\" }},\n"
    "\n"
    "Someone, probably you, asked to subscribe this address to\n"
    "{{ list }}. To confirm, open this link and press the button:\n"
    "\n"
    "{{ confirm_url }}\n"
    "\n"
    "If it was not you, ignore this message: nothing will be sent to you\n"
    "unless you confirm.\n"
    "\n"
    "{{ sender.organisation }}\n"
    "{{ sender.postal_address }}\n";

/* One claimed notice. */
struct notice_row {
	uint64_t id, subscriber_id, list_id;
	int attempts;
	const char *email, *key, *name, *list_name;     /* in the claim result */
	json_t *attrs;                  /* owned */
	const char *skip;               /* why it is skipped, or NULL */
	bool suppressed;
	struct suppress_entry entry;
	bool unbuildable;               /* notice_prepare() could not build it */
	char why[NOTICE_REPLY_MAX];
};

struct notice_sender {
	const struct assent_conf *conf;
	const struct suppress_ctx *gate;
	struct token_signer *signer;
	int session;
	const char *from_address;       /* borrowed from conf */
	struct render_template *subject, *text, *html;
	struct buf subject_out, text_out, html_out;
	/* the batch in flight */
	PGresult *claimed;
	struct notice_row rows[NOTICE_BATCH];
	size_t nrows;
	size_t sending[NOTICE_BATCH];   /* rows marked 'sending' */
	size_t nsending;
	struct transport_msg msgs[NOTICE_BATCH];        /* those that build */
	size_t msg_row[NOTICE_BATCH];   /* msgs[i] is rows[msg_row[i]] */
	char envelopes[NOTICE_BATCH][NOTICE_ENVELOPE_MAX];
	size_t nmsgs;
	time_t batch_time;
};

/* ---- queueing -------------------------------------------------------------- */

int
notice_queue_confirm(PGconn *conn, const char *subscriber_id,
    const char *list_id, bool *queued_r, struct assent_err *err)
{
	char limit[16];
	const char *params[] = { subscriber_id, list_id, limit };
	PGresult *res;

	snprintf(limit, sizeof(limit), "%d", NOTICE_PER_DAY);
	*queued_r = false;
	/* one still waiting in the queue for the same list will do */
	if (db_exec(conn, &res, err, "SELECT EXISTS (SELECT 1 FROM notices"
	    " WHERE subscriber_id = $1 AND list_id = $2 AND state = 'queued')",
	    2, params) == -1)
		return -1;
	*queued_r = PQgetvalue(res, 0, 0)[0] == 't';
	PQclear(res);
	if (*queued_r)
		return 0;
	if (db_exec(conn, &res, err, "INSERT INTO notices (subscriber_id, list_id)"
	    " SELECT $1, $2 WHERE (SELECT count(*) FROM notices"
	    "   WHERE subscriber_id = $1 AND created_at > now() - interval '1 day')"
	    "   < $3::int RETURNING id", 3, params) == -1)
		return -1;
	*queued_r = PQntuples(res) == 1;
	PQclear(res);
	if (!*queued_r)
		return 0;
	return db_exec(conn, NULL, err, "SELECT pg_notify('assent_work', '')", 0, NULL);
}

/* ---- the sender ------------------------------------------------------------ */

static int
notice_compile_all(const struct assent_conf *conf, struct notice_sender *ns,
    struct assent_err *err)
{
	if (render_compile(conf->signup_confirm_subject, RENDER_NOTICE_SUBJECT,
	    &ns->subject, err) == -1) {
		err->code = EX_CONFIG;
		return err_prefix(err, "signup.confirm_subject");
	}
	if (render_compile_file("signup.confirm_text", conf->signup_confirm_text,
	    notice_default_text, RENDER_NOTICE_TEXT, &ns->text, err) == -1 ||
	    render_compile_file("signup.confirm_html", conf->signup_confirm_html,
	    NULL, RENDER_NOTICE_HTML, &ns->html, err) == -1)
		return -1;
	return 0;
}

int
notice_check_templates(const struct assent_conf *conf, struct assent_err *err)
{
	struct notice_sender ns;
	int rc;

	memset(&ns, 0, sizeof(ns));
	rc = notice_compile_all(conf, &ns, err);
	render_free(ns.subject);
	render_free(ns.text);
	render_free(ns.html);
	return rc;
}

static int
notice_trial(struct notice_sender *ns, struct assent_err *err)
{
	struct notice_recipient r = { .notice_id = 1, .subscriber_id = 1,
	    .list_id = 1, .email = ns->from_address, .name = "Trial",
	    .list_name = "trial" };
	char envelope[NOTICE_ENVELOPE_MAX];
	struct buf b;
	int rc;

	buf_init(&b);
	rc = notice_compose(ns, &r, time(NULL), &b, envelope, sizeof(envelope), err);
	buf_free(&b);
	if (rc == -1) {
		err->code = EX_CONFIG;
		return err_prefix(err, "confirmation requests cannot be built");
	}
	return 0;
}

int
notice_sender_new(const struct assent_conf *conf,
    const struct suppress_ctx *gate, struct token_signer *signer,
    int session, struct notice_sender **ns_r, struct assent_err *err)
{
	struct notice_sender *ns = xcalloc(1, sizeof(*ns));
	const char *from = conf->signup_from;

	*ns_r = NULL;
	if (from == NULL || *from == '\0')
		from = conf->sender_from;
	ns->conf = conf;
	ns->gate = gate;
	ns->signer = signer;
	ns->session = session;
	ns->from_address = from;
	buf_init(&ns->subject_out);
	buf_init(&ns->text_out);
	buf_init(&ns->html_out);
	if (conf_check_sending(conf, err) == -1)
		goto fail;
	if (from == NULL || *from == '\0') {
		err_set(err, EX_CONFIG, "%s: confirmation requests cannot be sent "
		    "until signup.from or sender.from is set", conf->path);
		goto fail;
	}
	if (notice_compile_all(conf, ns, err) == -1 || notice_trial(ns, err) == -1)
		goto fail;
	*ns_r = ns;
	return 0;
fail:
	notice_sender_free(ns);
	return -1;
}

static void
notice_batch_clear(struct notice_sender *ns)
{
	for (size_t i = 0; i < ns->nrows; i++)
		json_decref(ns->rows[i].attrs);
	PQclear(ns->claimed);
	ns->claimed = NULL;
	ns->nrows = ns->nsending = ns->nmsgs = 0;
}

void
notice_sender_free(struct notice_sender *ns)
{
	if (ns == NULL)
		return;
	notice_batch_clear(ns);
	render_free(ns->subject);
	render_free(ns->text);
	render_free(ns->html);
	buf_free(&ns->subject_out);
	buf_free(&ns->text_out);
	buf_free(&ns->html_out);
	free(ns);
}

/* ---- composing ------------------------------------------------------------- */

static int
notice_render(struct notice_sender *ns, const struct notice_recipient *r,
    const char *confirm_url, struct assent_err *err)
{
	struct render_values v = {
		.name = r->name, .email = r->email, .attrs = r->attrs,
		.list = r->list_name,
		.confirm_url = confirm_url,
		.postal_address = ns->conf->sender_postal_address,
		.organisation = ns->conf->sender_organisation,
	};

	buf_reset(&ns->subject_out);
	buf_reset(&ns->text_out);
	buf_reset(&ns->html_out);
	if (render_run(ns->subject, &v, &ns->subject_out, err) == -1)
		return err_prefix(err, "subject");
	if (render_run(ns->text, &v, &ns->text_out, err) == -1)
		return err_prefix(err, "text body");
	if (ns->html != NULL && render_run(ns->html, &v, &ns->html_out, err) == -1)
		return err_prefix(err, "HTML body");
	return 0;
}

static int
notice_links(struct notice_sender *ns, const struct notice_recipient *r,
    int64_t now, char *url, char *envelope, size_t envelope_size,
    struct assent_err *err)
{
	struct token t = { .purpose = TOKEN_CONFIRM,
	    .subscriber_id = r->subscriber_id, .list_id = r->list_id,
	    .campaign_id = r->notice_id, .issued_at = now };
	struct token_compact ct = { .purpose = TOKEN_NOTICE,
	    .delivery_id = r->notice_id, .issued_at = now };
	char tok[TOKEN_TEXT_SIZE], ctok[TOKEN_COMPACT_TEXT_SIZE];

	if (token_make(ns->signer, &t, tok, sizeof(tok), err) == -1 ||
	    token_compact_make(ns->signer, &ct, ctok, sizeof(ctok), err) == -1)
		return -1;
	snprintf(url, NOTICE_URL_MAX, "%s/c/%s", ns->conf->http_base_url, tok);
	return mime_verp("n-", ctok, ns->conf->sender_bounce_domain, envelope,
	    envelope_size, err);
}

int
notice_compose(struct notice_sender *ns, const struct notice_recipient *r,
    time_t now, struct buf *out, char *envelope, size_t envelope_size,
    struct assent_err *err)
{
	char url[NOTICE_URL_MAX], message_id[MIME_ID_LEFT_MAX + 1];

	envelope[0] = '\0';
	buf_reset(out);
	if (notice_links(ns, r, (int64_t)now, url, envelope, envelope_size,
	    err) == -1 || notice_render(ns, r, url, err) == -1) {
		envelope[0] = '\0';
		return -1;
	}
	snprintf(message_id, sizeof(message_id), "n%" PRIu64 ".%" PRIx64,
	    r->notice_id, (uint64_t)now);
	struct mime_message m = {
		.from = { ns->conf->sender_organisation, ns->from_address },
		.to = { r->name, r->email },
		.subject = ns->subject_out.data != NULL ? ns->subject_out.data : "",
		.date = now,
		.message_id = message_id,
		.text = ns->text_out.data != NULL ? ns->text_out.data : "",
		.html = ns->html != NULL ? ns->html_out.data : NULL,
		.boundary_seed = message_id,
	};
	if (mime_build(&m, out, err) == -1) {
		envelope[0] = '\0';
		return -1;
	}
	return 0;
}

/* ---- claiming -------------------------------------------------------------- */

static uint64_t
notice_u64(PGresult *res, int row, int col)
{
	return strtoull(PQgetvalue(res, row, col), NULL, 10);
}

static int
notice_claim_rows(struct notice_sender *ns, PGconn *conn, struct assent_err *err)
{
	char limit[16];
	const char *params[] = { limit };
	PGresult *res;

	snprintf(limit, sizeof(limit), "%d", NOTICE_BATCH);
	if (db_exec(conn, &res, err,
	    "SELECT n.id, n.subscriber_id, n.list_id, n.attempts, s.email,"
	    "  s.email_key, s.name, l.name, s.attrs::text,"
	    "  CASE WHEN s.email_key IS NULL THEN 'the subscriber was erased'"
	    "       WHEN l.removed_at IS NOT NULL THEN 'the list was removed'"
	    "       WHEN sub.status IS DISTINCT FROM 'pending'"
	    "       THEN 'the subscription is ' || coalesce(sub.status, 'gone')"
	    "  END"
	    " FROM notices n JOIN subscribers s ON s.id = n.subscriber_id"
	    " JOIN lists l ON l.id = n.list_id"
	    " LEFT JOIN subscriptions sub ON sub.subscriber_id = n.subscriber_id"
	    "   AND sub.list_id = n.list_id"
	    " WHERE n.state = 'queued' AND n.next_attempt_at <= now()"
	    " ORDER BY n.next_attempt_at, n.id LIMIT $1::int"
	    " FOR UPDATE OF n SKIP LOCKED", 1, params) == -1)
		return -1;
	ns->claimed = res;
	ns->nrows = (size_t)PQntuples(res);
	for (size_t i = 0; i < ns->nrows; i++) {
		struct notice_row *r = &ns->rows[i];
		int k = (int)i;

		memset(r, 0, sizeof(*r));
		r->id = notice_u64(res, k, 0);
		r->subscriber_id = notice_u64(res, k, 1);
		r->list_id = notice_u64(res, k, 2);
		r->attempts = atoi(PQgetvalue(res, k, 3));
		r->email = PQgetvalue(res, k, 4);
		r->key = PQgetvalue(res, k, 5);
		r->name = PQgetvalue(res, k, 6);
		r->list_name = PQgetvalue(res, k, 7);
		r->attrs = json_loads(PQgetvalue(res, k, 8), 0, NULL);
		if (!PQgetisnull(res, k, 9))
			r->skip = PQgetvalue(res, k, 9);
	}
	return 0;
}

/* The gate, for every row not skipped, in the claiming transaction. */
static int
notice_gate(struct notice_sender *ns, PGconn *conn, struct assent_err *err)
{
	const char *keys[NOTICE_BATCH];
	struct suppress_verdict verdicts[NOTICE_BATCH];
	size_t idx[NOTICE_BATCH], n = 0;

	for (size_t i = 0; i < ns->nrows; i++)
		if (ns->rows[i].skip == NULL) {
			idx[n] = i;
			keys[n++] = ns->rows[i].key;
		}
	if (n == 0)
		return 0;
	if (suppress_gate(conn, ns->gate, keys, n, verdicts, err) == -1)
		return -1;
	for (size_t j = 0; j < n; j++)
		if (verdicts[j].suppressed) {
			ns->rows[idx[j]].suppressed = true;
			ns->rows[idx[j]].entry = verdicts[j].entry;
		}
	return 0;
}

/* Each row's fate before the relay sees anything, in one statement. */
static int
notice_mark(struct notice_sender *ns, PGconn *conn, struct notice_stats *st,
    struct assent_err *err)
{
	struct buf ids, states, details, entries;
	char session[16], detail[NOTICE_REPLY_MAX];
	const char *params[5];
	int rc;

	buf_init(&ids); buf_init(&states); buf_init(&details); buf_init(&entries);
	db_array_open(&ids); db_array_open(&states);
	db_array_open(&details); db_array_open(&entries);
	for (size_t i = 0; i < ns->nrows; i++) {
		struct notice_row *r = &ns->rows[i];
		const char *state = "sending";

		detail[0] = '\0';
		if (r->skip != NULL) {
			state = "skipped";
			snprintf(detail, sizeof(detail), "%s", r->skip);
			st->skipped++;
		} else if (r->suppressed) {
			state = "suppressed";
			snprintf(detail, sizeof(detail), "%s", r->entry.reason);
			st->suppressed++;
		} else {
			ns->sending[ns->nsending++] = i;
		}
		db_array_int(&ids, (long long)r->id);
		db_array_text(&states, state);
		db_array_text(&details, detail[0] != '\0' ? detail : NULL);
		if (r->suppressed)
			db_array_int(&entries, r->entry.id);
		else
			db_array_text(&entries, NULL);
	}
	db_array_close(&ids); db_array_close(&states);
	db_array_close(&details); db_array_close(&entries);
	snprintf(session, sizeof(session), "%d", ns->session);
	params[0] = ids.data; params[1] = states.data; params[2] = details.data;
	params[3] = entries.data; params[4] = session;
	rc = db_exec(conn, NULL, err, "UPDATE notices n SET state = x.state,"
	    " detail = x.detail, suppression_id = x.entry,"
	    " sender_session = CASE WHEN x.state = 'sending' THEN $5::int END"
	    " FROM unnest($1::bigint[], $2::text[], $3::text[], $4::bigint[])"
	    "   AS x(id, state, detail, entry) WHERE n.id = x.id", 5, params);
	buf_free(&ids); buf_free(&states); buf_free(&details); buf_free(&entries);
	return rc;
}

static int
notice_claim(struct notice_sender *ns, PGconn *conn, struct notice_stats *st,
    struct assent_err *err)
{
	if (db_begin(conn, err) == -1)
		return -1;
	if (notice_claim_rows(ns, conn, err) == -1 ||
	    notice_gate(ns, conn, err) == -1 ||
	    (ns->nrows > 0 && notice_mark(ns, conn, st, err) == -1) ||
	    db_commit(conn, err) == -1) {
		db_rollback(conn);
		notice_batch_clear(ns);
		return -1;
	}
	return 0;
}

/* ---- sending and recording --------------------------------------------------- */

static int
notice_fill(void *arg, size_t index, struct buf *out)
{
	struct notice_sender *ns = arg;
	const struct notice_row *row = &ns->rows[ns->msg_row[index]];
	struct notice_recipient r = { .notice_id = row->id,
	    .subscriber_id = row->subscriber_id, .list_id = row->list_id,
	    .email = row->email, .name = row->name, .list_name = row->list_name,
	    .attrs = row->attrs };
	char envelope[NOTICE_ENVELOPE_MAX];
	struct assent_err err;

	/* the same bytes each time (batch_time), as transport asks */
	return notice_compose(ns, &r, ns->batch_time, out, envelope,
	    sizeof(envelope), &err);
}

/* Envelopes are made before the session (MAIL FROM comes first), and
 * each message once, so that one that cannot be built is failed now
 * rather than in the middle of the session. */
static void
notice_prepare(struct notice_sender *ns)
{
	struct assent_err err;
	struct buf scratch;

	buf_init(&scratch);
	for (size_t i = 0; i < ns->nsending; i++) {
		struct notice_row *row = &ns->rows[ns->sending[i]];
		struct notice_recipient r = { .notice_id = row->id,
		    .subscriber_id = row->subscriber_id, .list_id = row->list_id,
		    .email = row->email, .name = row->name,
		    .list_name = row->list_name, .attrs = row->attrs };
		struct transport_msg *m = &ns->msgs[ns->nmsgs];

		if (notice_compose(ns, &r, ns->batch_time, &scratch,
		    ns->envelopes[ns->nmsgs], NOTICE_ENVELOPE_MAX, &err) == -1) {
			row->unbuildable = true;
			snprintf(row->why, sizeof(row->why), "cannot be built: %.250s",
			    err.msg);
			text_make_utf8(row->why, strlen(row->why));
			continue;
		}
		memset(m, 0, sizeof(*m));
		m->rcpt = row->email;
		m->envelope_from = ns->envelopes[ns->nmsgs];
		ns->msg_row[ns->nmsgs++] = ns->sending[i];
	}
	buf_free(&scratch);
}

struct notice_outcomes {
	struct buf ids, states, tried, delays, replies;
	struct intake_refusal refusals[NOTICE_BATCH];   /* for intake.h */
	size_t nrefusals;
};

static void
notice_outcome_add(struct notice_outcomes *o, const struct notice_row *r,
    const char *state, int tried, long delay, const char *reply)
{
	db_array_int(&o->ids, (long long)r->id);
	db_array_text(&o->states, state);
	db_array_int(&o->tried, tried);
	db_array_int(&o->delays, delay);
	db_array_text(&o->replies, tried == 0 ? NULL : reply);
}

static void
notice_outcome(struct notice_sender *ns, struct notice_outcomes *o,
    const struct transport_msg *m, const struct notice_row *r,
    struct notice_stats *st)
{
	char reply[NOTICE_REPLY_MAX];
	struct sender_verdict v;

	transport_reply_text(m, reply, sizeof(reply));
	sender_judge(ns->conf, m, r->attempts, &v);
	sender_count(&v, &st->sent, &st->failed, &st->retried, &st->unknown,
	    &st->deferred);
	if (sender_refusal(m, reply, &o->refusals[o->nrefusals]))
		o->refusals[o->nrefusals++].notice_id = (long long)r->id;
	notice_outcome_add(o, r, v.state, v.tried, v.delay, reply);
}

/* The refusals of the notices the UPDATE wrote (res: their ids), to
 * intake, as the sender does for deliveries. */
static int
notice_refusals_write(struct notice_sender *ns, PGconn *conn,
    const struct notice_outcomes *o, const PGresult *res,
    struct assent_err *err)
{
	struct intake_ctx ctx = { .conf = ns->conf, .added_by = "assentd" };
	struct intake_refusal written[NOTICE_BATCH];
	size_t n = 0;

	for (size_t i = 0; i < o->nrefusals; i++)
		for (int row = 0; row < PQntuples(res); row++)
			if (strtoll(PQgetvalue(res, row, 0), NULL, 10) ==
			    o->refusals[i].notice_id) {
				written[n++] = o->refusals[i];
				break;
			}
	return intake_refusals_in(conn, &ctx, written, n, NULL, err);
}

static int
notice_record(struct notice_sender *ns, PGconn *conn, struct notice_stats *st,
    struct assent_err *err)
{
	struct notice_outcomes o;
	const char *params[5];
	PGresult *res = NULL;
	int rc = -1;

	memset(&o, 0, sizeof(o));
	buf_init(&o.ids); buf_init(&o.states); buf_init(&o.tried);
	buf_init(&o.delays); buf_init(&o.replies);
	db_array_open(&o.ids); db_array_open(&o.states); db_array_open(&o.tried);
	db_array_open(&o.delays); db_array_open(&o.replies);
	for (size_t i = 0; i < ns->nmsgs; i++)
		notice_outcome(ns, &o, &ns->msgs[i], &ns->rows[ns->msg_row[i]], st);
	for (size_t i = 0; i < ns->nsending; i++) {
		const struct notice_row *r = &ns->rows[ns->sending[i]];

		if (r->unbuildable) {
			notice_outcome_add(&o, r, "failed", 1, 0, r->why);
			st->failed++;
		}
	}
	db_array_close(&o.ids); db_array_close(&o.states); db_array_close(&o.tried);
	db_array_close(&o.delays); db_array_close(&o.replies);
	params[0] = o.ids.data; params[1] = o.states.data; params[2] = o.tried.data;
	params[3] = o.delays.data; params[4] = o.replies.data;
	if (db_begin(conn, err) == -1)
		goto done;
	/* the refused people first (the lock order of every path); a
	 * reply may quote the address: not kept once the person was erased
	 * (an erasure waiting on these rows sees them after) */
	if (intake_lock_subscribers(conn, o.refusals, o.nrefusals, err) == -1 ||
	    db_exec(conn, &res, err, "UPDATE notices n SET state = x.state,"
	    " attempts = n.attempts + x.tried,"
	    " next_attempt_at = now() + make_interval(secs => x.delay),"
	    " detail = CASE WHEN s.email_key IS NULL THEN NULL"
	    "   ELSE coalesce(x.reply, n.detail) END,"
	    " sent_at = CASE WHEN x.state = 'sent' THEN now() END"
	    " FROM unnest($1::bigint[], $2::text[], $3::int[], $4::int[], $5::text[])"
	    "   AS x(id, state, tried, delay, reply), subscribers s"
	    " WHERE n.id = x.id AND n.state = 'sending'"
	    "   AND s.id = n.subscriber_id RETURNING n.id", 5, params) == -1 ||
	    notice_refusals_write(ns, conn, &o, res, err) == -1 ||
	    db_commit(conn, err) == -1) {
		PQclear(res);
		db_rollback(conn);
		goto done;
	}
	PQclear(res);
	rc = 0;
done:
	buf_free(&o.ids); buf_free(&o.states); buf_free(&o.tried);
	buf_free(&o.delays); buf_free(&o.replies);
	return rc;
}

int
notice_run_batch(struct notice_sender *ns, PGconn *conn, struct transport *t,
    bool *worked_r, struct notice_stats *st, struct assent_err *err)
{
	struct assent_err send_err;
	int rc, sent_rc = 0;

	*worked_r = false;
	ns->batch_time = time(NULL);
	if (notice_claim(ns, conn, st, err) == -1)
		return -1;
	*worked_r = ns->nrows > 0;
	if (ns->nsending == 0) {
		notice_batch_clear(ns);
		return 0;
	}
	notice_prepare(ns);
	err_clear(&send_err);
	if (ns->nmsgs > 0)
		sent_rc = transport_send(t, ns->msgs, ns->nmsgs, notice_fill, NULL,
		    ns, &send_err);
	rc = notice_record(ns, conn, st, err);
	notice_batch_clear(ns);
	if (rc == 0 && sent_rc == -1) {
		*err = send_err;
		err->code = EX_UNAVAILABLE;
		return -1;
	}
	return rc;
}

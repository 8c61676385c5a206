/*
 * testsend: "assent campaign test": a campaign sent now to addresses an
 * operator names, through the same gate, composer and transport as the
 * sender workers (see testsend.h).
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "assent/campaign.h"
#include "assent/compose.h"
#include "assent/db.h"
#include "assent/testsend.h"
#include "assent/transport.h"
#include "assent/xmalloc.h"

#define TESTSEND_DETAIL_MAX 300

struct testsend_rcpt {
	struct addr addr;
	struct suppress_verdict verdict;
	long long subscriber_id;        /* 0: not a subscriber */
	long long list_id;
	char *name;
	json_t *attrs;
	char envelope[COMPOSE_ENVELOPE_MAX];
};

struct testsend_run {
	struct compose *cp;
	struct testsend_rcpt *rcpts;
	size_t *msg_rcpt;
	time_t now;
};

static void
testsend_recipient(const struct testsend_rcpt *t,
    struct compose_recipient *rc)
{
	rc->delivery_id = 0;
	rc->subscriber_id = (uint64_t)t->subscriber_id;
	rc->list_id = (uint64_t)t->list_id;
	rc->email = t->addr.address;
	rc->name = t->name;
	rc->attrs = t->attrs;
}

static int
testsend_fill(void *arg, size_t index, struct buf *out)
{
	struct testsend_run *run = arg;
	struct compose_recipient rc;
	char envelope[COMPOSE_ENVELOPE_MAX];
	struct assent_err e;

	testsend_recipient(&run->rcpts[run->msg_rcpt[index]], &rc);
	return compose_message(run->cp, &rc, run->now, out, envelope, &e);
}

/* Who among the recipients is a subscriber, for their merge fields and
 * links; the gate's verdict for each. One transaction. */
static int
testsend_lookup(PGconn *conn, const struct suppress_ctx *gate,
    const struct campaign *c, struct testsend_rcpt *t, size_t n,
    struct assent_err *err)
{
	const char **keys = xcalloc(n, sizeof(*keys));
	struct suppress_verdict *v = xcalloc(n, sizeof(*v));
	char cid[24];
	int rc = -1;

	snprintf(cid, sizeof(cid), "%lld", c->id);
	for (size_t i = 0; i < n; i++)
		keys[i] = t[i].addr.key;
	if (db_begin(conn, err) < 0)
		goto done;
	if (suppress_gate(conn, gate, keys, n, v, err) < 0)
		goto rollback;
	for (size_t i = 0; i < n; i++) {
		const char *params[] = { keys[i], cid };
		PGresult *res;

		t[i].verdict = v[i];
		t[i].list_id = c->lists[0].id;
		if (db_exec(conn, &res, err,
		    "SELECT s.id, s.name, s.attrs::text,"
		    "       (SELECT min(ss.list_id) FROM sendable_subscriptions ss"
		    "          JOIN campaign_lists cl ON cl.list_id = ss.list_id"
		    "         WHERE cl.campaign_id = $2 AND ss.subscriber_id = s.id)"
		    "  FROM subscribers s WHERE s.email_key = $1", 2, params) < 0)
			goto rollback;
		if (PQntuples(res) == 1) {
			t[i].subscriber_id = strtoll(PQgetvalue(res, 0, 0), NULL, 10);
			t[i].name = xstrdup(PQgetvalue(res, 0, 1));
			t[i].attrs = json_loads(PQgetvalue(res, 0, 2), 0, NULL);
			if (!PQgetisnull(res, 0, 3))
				t[i].list_id = strtoll(PQgetvalue(res, 0, 3), NULL, 10);
		}
		PQclear(res);
	}
	rc = db_commit(conn, err);
	goto done;
rollback:
	db_rollback(conn);
done:
	free(keys);
	free(v);
	return rc;
}

static json_t *
testsend_result(PGconn *conn, const struct campaign *c,
    const struct testsend_rcpt *t, const struct transport_msg *m,
    const char *sent_by)
{
	char detail[TESTSEND_DETAIL_MAX + 64], cid[24];
	const char *outcome;
	const char *params[5];

	if (t->verdict.suppressed) {
		outcome = "suppressed";
		snprintf(detail, sizeof(detail), "%s, entry %lld",
		    t->verdict.entry.reason, t->verdict.entry.id);
	} else if (m != NULL && m->outcome == TRANSPORT_SENT) {
		outcome = "sent";
		transport_reply_text(m, detail, sizeof(detail));
	} else {
		outcome = "failed";
		if (m != NULL)
			transport_reply_text(m, detail, sizeof(detail));
		else
			snprintf(detail, sizeof(detail), "not sent");
	}
	snprintf(cid, sizeof(cid), "%lld", c->id);
	params[0] = cid; params[1] = t->addr.address; params[2] = outcome;
	params[3] = detail; params[4] = sent_by;
	/* The record of a test send is best effort: the mail went or not. */
	db_exec(conn, NULL, NULL, "INSERT INTO test_sends (campaign_id, email,"
	    " outcome, detail, sent_by) VALUES ($1, $2, $3, $4, $5)", 5, params);
	return json_pack("{s:s, s:s, s:s}", "address", t->addr.address,
	    "outcome", outcome, "detail", detail);
}

static int
testsend_send(const struct assent_conf *conf, struct testsend_run *run,
    struct transport_msg *msgs, size_t n, struct assent_err *err)
{
	struct transport_opts opts;
	struct transport *tr;
	int rc;

	if (n == 0)
		return 0;
	transport_opts_from_conf(conf, &opts);
	if (transport_new(&opts, &tr, err) < 0)
		return -1;
	rc = transport_send(tr, msgs, n, testsend_fill, NULL, run, err);
	transport_free(tr);
	return rc;
}

int
testsend_run(PGconn *conn, const struct assent_conf *conf,
    const struct suppress_ctx *gate, struct token_signer *signer,
    const char *campaign_name, const char *const *addresses, size_t n,
    const char *sent_by, json_t **results_r, struct assent_err *err)
{
	struct campaign *c = NULL;
	struct testsend_run run = { 0 };
	struct testsend_rcpt *t = xcalloc(n, sizeof(*t));
	struct transport_msg *msgs = xcalloc(n, sizeof(*msgs));
	size_t nmsgs = 0, *msg_of = xcalloc(n, sizeof(*msg_of));
	int rc = -1, sent_rc;
	struct buf scratch;

	*results_r = NULL;
	buf_init(&scratch);
	run.rcpts = t;
	run.msg_rcpt = xcalloc(n, sizeof(*run.msg_rcpt));
	run.now = time(NULL);
	for (size_t i = 0; i < n; i++)
		if (addr_parse(addresses[i], &t[i].addr, err) < 0)
			goto done;
	if (campaign_load(conn, campaign_name, &c, err) < 0 ||
	    compose_new(c, conf, signer, &run.cp, err) < 0 ||
	    testsend_lookup(conn, gate, c, t, n, err) < 0)
		goto done;
	for (size_t i = 0; i < n; i++) {
		struct compose_recipient rc_;

		msg_of[i] = SIZE_MAX;
		if (t[i].verdict.suppressed)
			continue;
		testsend_recipient(&t[i], &rc_);
		/* a whole message now: a test send names what is wrong */
		if (compose_message(run.cp, &rc_, run.now, &scratch, t[i].envelope,
		    err) < 0) {
			err_prefix(err, "%s", t[i].addr.address);
			goto done;
		}
		msgs[nmsgs].envelope_from = t[i].envelope;
		msgs[nmsgs].rcpt = t[i].addr.address;
		run.msg_rcpt[nmsgs] = i;
		msg_of[i] = nmsgs++;
	}
	sent_rc = testsend_send(conf, &run, msgs, nmsgs, err);
	if (sent_rc < 0 && err != NULL && err->code != EX_CONFIG)
		err->code = EX_UNAVAILABLE;
	*results_r = json_array();
	for (size_t i = 0; i < n; i++)
		json_array_append_new(*results_r, testsend_result(conn, c, &t[i],
		    msg_of[i] == SIZE_MAX ? NULL : &msgs[msg_of[i]], sent_by));
	rc = sent_rc;
done:
	for (size_t i = 0; i < n; i++) {
		free(t[i].name);
		json_decref(t[i].attrs);
	}
	buf_free(&scratch);
	compose_free(run.cp);
	campaign_free(c);
	free(run.msg_rcpt);
	free(msg_of);
	free(msgs);
	free(t);
	return rc;
}

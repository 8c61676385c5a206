/*
 * optout: unsubscribe and confirm through signed links (see optout.h).
 *
 * Each change locks the subscriber row first, so that two clicks at
 * once (a mailbox provider's one-click POST and the person's own) are
 * one after the other, and the second finds nothing left to do.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "assent/db.h"
#include "assent/ledger.h"
#include "assent/optout.h"
#include "assent/suppress.h"
#include "assent/text.h"

/* The person and the link's list, looked up (and the person locked). */
struct optout_target {
	char subscriber[24], list[24], campaign[24];
	char key[ADDR_MAX + 1];         /* "" when erased */
	char ua[OPTOUT_UA_MAX + 1];
};

static void
optout_ids(const struct token *t, struct optout_target *o)
{
	memset(o, 0, sizeof(*o));
	snprintf(o->subscriber, sizeof(o->subscriber), "%" PRIu64, t->subscriber_id);
	snprintf(o->list, sizeof(o->list), "%" PRIu64, t->list_id);
	snprintf(o->campaign, sizeof(o->campaign), "%" PRIu64, t->campaign_id);
}

/* A user agent as the ledger keeps it: control characters become
 * spaces, at most OPTOUT_UA_MAX bytes, not cut inside a UTF-8 character. */
static const char *
optout_user_agent(const char *ua, char out[OPTOUT_UA_MAX + 1])
{
	size_t n = 0;

	if (ua == NULL)
		return NULL;
	for (; ua[n] != '\0' && n < OPTOUT_UA_MAX; n++)
		out[n] = ((unsigned char)ua[n] < 0x20 || ua[n] == 0x7f) ? ' ' : ua[n];
	text_make_utf8(out, n);
	/* Cut: when ua[n] continues a character, drop that character's
	 * first bytes too (n ends on its lead byte, which is left out). */
	if (ua[n] != '\0')
		while (n > 0 && ((unsigned char)ua[n] & 0xc0) == 0x80)
			n--;
	out[n] = '\0';
	return out;
}

/* Lock the subscriber; o->key "" when there is none or it was erased. */
static int
optout_lock(PGconn *conn, struct optout_target *o, struct assent_err *err)
{
	const char *params[] = { o->subscriber };
	PGresult *res;

	if (db_exec(conn, &res, err, "SELECT email_key FROM subscribers"
	    " WHERE id = $1 FOR UPDATE", 1, params) == -1)
		return -1;
	if (PQntuples(res) == 1 && !PQgetisnull(res, 0, 0))
		snprintf(o->key, sizeof(o->key), "%s", PQgetvalue(res, 0, 0));
	PQclear(res);
	return 0;
}

/* The list's name and the subscription's status ("" for none). */
static int
optout_look(PGconn *conn, const struct token *t, const struct optout_target *o,
    struct optout_result *r, struct assent_err *err)
{
	const char *params[] = { o->subscriber, o->list };
	PGresult *res;

	if (t->all_lists) {
		r->known = true;
		return 0;
	}
	if (db_exec(conn, &res, err, "SELECT l.name, s.status, l.removed_at IS NULL"
	    "  FROM lists l LEFT JOIN subscriptions s"
	    "    ON s.list_id = l.id AND s.subscriber_id = $1"
	    " WHERE l.id = $2", 2, params) == -1)
		return -1;
	if (PQntuples(res) == 1) {
		snprintf(r->list_name, sizeof(r->list_name), "%s", PQgetvalue(res, 0, 0));
		snprintf(r->status, sizeof(r->status), "%s", PQgetvalue(res, 0, 1));
		r->known = PQgetvalue(res, 0, 2)[0] == 't';
	}
	PQclear(res);
	return 0;
}

int
optout_describe(PGconn *conn, const struct token *t, struct optout_result *r,
    struct assent_err *err)
{
	struct optout_target o;
	const char *params[1];
	PGresult *res;

	memset(r, 0, sizeof(*r));
	optout_ids(t, &o);
	params[0] = o.subscriber;
	if (db_exec(conn, &res, err, "SELECT email_key FROM subscribers"
	    " WHERE id = $1 AND email_key IS NOT NULL", 1, params) == -1)
		return -1;
	if (PQntuples(res) == 1)
		snprintf(o.key, sizeof(o.key), "%s", PQgetvalue(res, 0, 0));
	PQclear(res);
	if (optout_look(conn, t, &o, r, err) == -1)
		return -1;
	if (o.key[0] == '\0')
		r->known = false;
	return 0;
}

/*
 * An unsubscribe is one call of optout_unsubscribe_apply() (see
 * sql/0007_speed.sql): it locks the subscriber, looks up the list, ends
 * the subscription(s) with their ledger events and marks the delivery,
 * in one round trip, prepared once per connection by db_exec_prepared().
 * Sent alone it is its own transaction; an
 * unsubscribe from everything wraps it in one with the suppression
 * entry. Parameters: subscriber, list, campaign, all, the token is for
 * every list, channel, source, ip, user agent, refuse.
 */
static const struct db_statement optout_apply_stmt = {
	"assent_optout_unsubscribe",
	"SELECT email_key, known, list_name, sub_status, ended, refused"
	" FROM optout_unsubscribe_apply($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
};

/* What optout_unsubscribe_apply() answered. */
struct optout_applied {
	bool present;           /* the subscriber is there, not erased (o->key) */
	bool refused;           /* the evidence can't go into the ledger */
	long ended;             /* subscriptions ended */
};

/* The evidence of an unsubscribe as its ledger events keep it. */
static void
optout_unsubscribe_evidence(const struct optout_evidence *ev,
    struct optout_target *o, struct ledger_evidence *le_ev)
{
	memset(le_ev, 0, sizeof(*le_ev));
	le_ev->source = strcmp(ev->channel, "mailto") == 0 ?
	    "unsubscribe mail" : "unsubscribe link";
	le_ev->ip = ev->ip;
	le_ev->user_agent = optout_user_agent(ev->user_agent, o->ua);
}

static void
optout_applied_read(const PGresult *res, struct optout_target *o,
    struct optout_result *r, struct optout_applied *a)
{
	a->present = !PQgetisnull(res, 0, 0);
	snprintf(o->key, sizeof(o->key), "%s", PQgetvalue(res, 0, 0));
	r->known = PQgetvalue(res, 0, 1)[0] == 't';
	snprintf(r->list_name, sizeof(r->list_name), "%s", PQgetvalue(res, 0, 2));
	snprintf(r->status, sizeof(r->status), "%s", PQgetvalue(res, 0, 3));
	a->ended = atol(PQgetvalue(res, 0, 4));
	a->refused = PQgetvalue(res, 0, 5)[0] == 't';
}

/* Lock, look, end and mark (all: every list) in one statement: inside
 * the caller's transaction when all, else as a transaction of its own.
 * Evidence the ledger can't take fails with ledger_evidence_check()'s
 * error where an event would be appended (nothing is changed then), as
 * ledger_append() did. */
static int
optout_apply(PGconn *conn, const struct token *t, bool all,
    const struct optout_evidence *ev, struct optout_target *o,
    struct optout_result *r, struct optout_applied *a, struct assent_err *err)
{
	struct ledger_evidence le_ev;
	struct assent_err unfit;
	const char *params[10];
	PGresult *res;
	bool refuse;

	optout_unsubscribe_evidence(ev, o, &le_ev);
	refuse = ledger_evidence_check(&le_ev, &unfit) == -1;
	params[0] = o->subscriber;
	params[1] = o->list;
	params[2] = o->campaign;
	params[3] = all ? "t" : "f";
	params[4] = t->all_lists ? "t" : "f";
	params[5] = ev->channel;
	params[6] = le_ev.source;
	params[7] = le_ev.ip;
	params[8] = le_ev.user_agent;
	params[9] = refuse ? "t" : "f";
	if (db_exec_prepared(conn, &res, err, &optout_apply_stmt, 10, params,
	    NULL, NULL) == -1)
		return -1;
	optout_applied_read(res, o, r, a);
	PQclear(res);
	if (a->refused) {
		*err = unfit;
		return -1;
	}
	return 0;
}

/* Everything: the address on the global suppression list too. */
static int
optout_suppress(PGconn *conn, const struct optout_target *o,
    const struct optout_evidence *ev, bool *added_r, struct assent_err *err)
{
	char source[128];
	struct suppress_new n = { .reason = "unsubscribe", .source = source,
	    .added_by = "assentd" };
	struct suppress_target t;
	long long id;

	snprintf(source, sizeof(source), "%s unsubscribe from everything%s%s",
	    ev->channel, strcmp(o->campaign, "0") != 0 ? ", campaign " : "",
	    strcmp(o->campaign, "0") != 0 ? o->campaign : "");
	if (suppress_target_parse(NULL, o->key, false, &t, err) == -1)
		return -1;
	return suppress_add_in(conn, &t, &n, &id, added_r, err);
}

/* The campaign's delivery learns it was left through its link. */
static int
optout_mark_delivery(PGconn *conn, const struct optout_target *o,
    struct assent_err *err)
{
	const char *params[] = { o->campaign, o->subscriber };

	if (strcmp(o->campaign, "0") == 0)
		return 0;
	return db_exec(conn, NULL, err, "UPDATE deliveries SET unsubscribed_at ="
	    " now() WHERE campaign_id = $1 AND subscriber_id = $2"
	    " AND unsubscribed_at IS NULL", 2, params);
}

/* One list: a single statement, its own transaction. */
static int
optout_unsubscribe_list(PGconn *conn, const struct token *t,
    const struct optout_evidence *ev, struct optout_target *o,
    struct optout_result *r, struct assent_err *err)
{
	struct optout_applied a;

	if (optout_apply(conn, t, false, ev, o, r, &a, err) == -1)
		return -1;
	if (!a.present) {
		r->known = false;       /* erased: nothing to do, and nothing told */
		return 0;
	}
	r->changed = a.ended > 0;
	snprintf(r->status, sizeof(r->status), "unsubscribed");
	return 0;
}

/* Every list, and the address suppressed, in one transaction. The
 * delivery was marked already when a subscription ended. */
static int
optout_unsubscribe_all(PGconn *conn, const struct token *t,
    const struct optout_evidence *ev, struct optout_target *o,
    struct optout_result *r, struct assent_err *err)
{
	struct optout_applied a;
	bool added = false;

	if (optout_apply(conn, t, true, ev, o, r, &a, err) == -1)
		return -1;
	if (!a.present) {
		r->known = false;
		return 0;
	}
	if (optout_suppress(conn, o, ev, &added, err) == -1)
		return -1;
	r->changed = a.ended > 0 || added;
	if (added && a.ended == 0 && optout_mark_delivery(conn, o, err) == -1)
		return -1;
	snprintf(r->status, sizeof(r->status), "unsubscribed");
	return 0;
}

int
optout_unsubscribe(PGconn *conn, const struct token *t, bool all,
    const struct optout_evidence *ev, struct optout_result *r,
    struct assent_err *err)
{
	struct optout_target o;

	memset(r, 0, sizeof(*r));
	optout_ids(t, &o);
	all = all || t->all_lists;
	if (!all) {
		if (optout_unsubscribe_list(conn, t, ev, &o, r, err) == -1) {
			memset(r, 0, sizeof(*r));
			return -1;
		}
		return 0;
	}
	if (db_begin(conn, err) == -1)
		return -1;
	if (optout_unsubscribe_all(conn, t, ev, &o, r, err) == -1 ||
	    db_commit(conn, err) == -1) {
		db_rollback(conn);
		memset(r, 0, sizeof(*r));
		return -1;
	}
	r->list_name[0] = '\0';
	return 0;
}

static int
optout_confirm_locked(PGconn *conn, const struct token *t,
    const struct optout_evidence *ev, struct optout_target *o,
    struct optout_result *r, struct assent_err *err)
{
	struct ledger_evidence le_ev = { .source = "confirmation link",
	    .ip = ev->ip, .user_agent = optout_user_agent(ev->user_agent, o->ua) };
	struct ledger_event le = { .subscriber_id = o->subscriber,
	    .list_id = o->list, .action = "confirm", .channel = ev->channel,
	    .status_before = "pending", .status_after = "confirmed",
	    .evidence = &le_ev };
	const char *params[] = { o->subscriber, o->list };

	if (optout_look(conn, t, o, r, err) == -1)
		return -1;
	if (o->key[0] == '\0' || !r->known) {
		r->known = false;
		return 0;
	}
	if (strcmp(r->status, "pending") != 0)
		return 0;       /* confirmed already, or ended: left as it is */
	if (ledger_append(conn, &le, err) == -1 ||
	    db_exec(conn, NULL, err, "UPDATE subscriptions SET status = 'confirmed',"
	    " updated_at = now() WHERE subscriber_id = $1 AND list_id = $2"
	    " AND status = 'pending'", 2, params) == -1)
		return -1;
	r->changed = true;
	snprintf(r->status, sizeof(r->status), "confirmed");
	return 0;
}

int
optout_confirm(PGconn *conn, const struct token *t,
    const struct optout_evidence *ev, struct optout_result *r,
    struct assent_err *err)
{
	struct optout_target o;

	memset(r, 0, sizeof(*r));
	if (t->all_lists || t->list_id == 0)
		return err_set(err, EX_DATAERR, "a confirmation needs a list");
	optout_ids(t, &o);
	if (db_begin(conn, err) == -1)
		return -1;
	if (optout_lock(conn, &o, err) == -1 ||
	    optout_confirm_locked(conn, t, ev, &o, r, err) == -1 ||
	    db_commit(conn, err) == -1) {
		db_rollback(conn);
		memset(r, 0, sizeof(*r));
		return -1;
	}
	return 0;
}

/* ---- the mailto unsubscribe ----------------------------------------------- */

int
optout_mailto(PGconn *conn, struct token_signer *signer,
    const char *token, int64_t now, struct optout_result *r,
    struct assent_err *err)
{
	struct optout_evidence ev = { .channel = "mailto" };
	struct token_compact c;
	struct token t = { .purpose = TOKEN_UNSUBSCRIBE };
	char id[24];
	const char *params[] = { id };
	PGresult *res;

	memset(r, 0, sizeof(*r));
	if (token_compact_verify(signer, token, TOKEN_UNSUBSCRIBE, now, &c,
	    err) == -1)
		return err_set(err, EX_NOUSER, "no such recipient (the token does "
		    "not verify)");
	snprintf(id, sizeof(id), "%" PRIu64, c.delivery_id);
	if (db_exec(conn, &res, err, "SELECT subscriber_id, list_id, campaign_id"
	    " FROM deliveries WHERE id = $1", 1, params) == -1)
		return -1;
	if (PQntuples(res) != 1) {
		PQclear(res);
		return err_set(err, EX_NOUSER, "no such recipient (delivery %s is "
		    "unknown)", id);
	}
	t.subscriber_id = strtoull(PQgetvalue(res, 0, 0), NULL, 10);
	t.list_id = strtoull(PQgetvalue(res, 0, 1), NULL, 10);
	t.campaign_id = strtoull(PQgetvalue(res, 0, 2), NULL, 10);
	PQclear(res);
	return optout_unsubscribe(conn, &t, false, &ev, r, err);
}

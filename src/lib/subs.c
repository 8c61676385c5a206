/* subs: subscribers and subscriptions, each change with its ledger event */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "assent/addr.h"
#include "assent/consent.h"
#include "assent/db.h"
#include "assent/lists.h"
#include "assent/notice.h"
#include "assent/rights.h"
#include "assent/subs.h"
#include "assent/text.h"

/* What a request is about, once looked up inside the transaction. */
struct subs_target {
	struct addr addr;
	char list_id[24];
	bool double_optin;
	char subscriber_id[24];
	char status[16];                  /* "" when there is no subscription */
	char since[32];
};

/* Express needs no expiry; implied needs one, in the future. */
static int
subs_check_basis(PGconn *conn, const struct subs_request *req, struct assent_err *err)
{
	const char *params[] = { req->basis_expires_at };
	const char *basis = req->basis != NULL ? req->basis : "express";
	PGresult *res;
	int future;

	if (strcmp(basis, "express") == 0) {
		if (req->basis_expires_at != NULL)
			return err_set(err, EX_DATAERR, "express consent does not expire: "
			    "an expiry goes with --basis implied");
		return 0;
	}
	if (strcmp(basis, "implied") != 0)
		return err_set(err, EX_DATAERR, "unknown consent basis \"%.32s\" "
		    "(express or implied)", basis);
	if (req->basis_expires_at == NULL)
		return err_set(err, EX_DATAERR, "implied consent needs an expiry "
		    "(--expires DATE)");
	if (db_exec(conn, &res, err, "SELECT $1::timestamptz > now()", 1, params) == -1)
		return err_prefix(err, "expiry \"%.40s\"", req->basis_expires_at);
	future = PQgetvalue(res, 0, 0)[0] == 't';
	PQclear(res);
	if (!future)
		return err_set(err, EX_DATAERR, "the expiry of implied consent "
		    "(%.40s) has passed already", req->basis_expires_at);
	return 0;
}

/* An erased address stays suppressed by its erasure entry, so a new
 * subscription would never be mailed: the operator removes that entry
 * first, with the evidence of fresh consent as its reason (audited). */
static int
subs_check_erased(PGconn *conn, const struct subs_request *req,
    const struct addr *addr, struct assent_err *err)
{
	PGresult *res;
	bool erased = false;

	if (req->suppress == NULL) {
		if (db_exec(conn, &res, err, "SELECT EXISTS (SELECT 1 FROM suppressions"
		    " WHERE reason = 'erasure' AND removed_at IS NULL)", 0, NULL) == -1)
			return -1;
		erased = PQgetvalue(res, 0, 0)[0] == 't';
		PQclear(res);
		if (erased)
			return err_set(err, EX_CONFIG, "the suppression list holds erased "
			    "addresses: checking this one needs the keys file "
			    "(tokens.keys_file)");
		return 0;
	}
	if (rights_is_erased(conn, req->suppress, addr->key, &erased, err) == -1)
		return -1;
	if (erased)
		return err_set(err, EX_DATAERR, "%s was erased at the person's request "
		    "and stays suppressed: with evidence of fresh consent, remove its "
		    "erasure entry first (assent suppress rm ADDRESS --hashed --force "
		    "--reason EVIDENCE), then subscribe it again", addr->address);
	return 0;
}

static int
subs_check_request(const struct subs_request *req, struct addr *addr,
    struct assent_err *err)
{
	if (addr_parse(req->email, addr, err) == -1)
		return -1;
	if (req->name != NULL &&
	    text_check_line(req->name, 200, true, "name", err) == -1)
		return -1;
	return ledger_evidence_check(req->evidence, err);
}

/* Find or create the subscriber (locking its row, which serialises
 * concurrent changes to one person), then read the subscription. */
static int
subs_lock_subscriber(PGconn *conn, const struct subs_request *req,
    struct subs_target *t, bool create, struct assent_err *err)
{
	const char *params[] = { t->addr.address, t->addr.key, req->name ? req->name : "" };
	PGresult *res;

	if (create)
		db_exec(conn, &res, err, "INSERT INTO subscribers (email, email_key, name)"
		    " VALUES ($1, $2, $3) ON CONFLICT (email_key) DO UPDATE"
		    " SET name = CASE WHEN subscribers.name = '' THEN EXCLUDED.name"
		    " ELSE subscribers.name END RETURNING id", 3, params);
	else
		db_exec(conn, &res, err, "SELECT id FROM subscribers WHERE email_key = $1"
		    " FOR UPDATE", 1, params + 1);
	if (res == NULL)
		return -1;
	if (PQntuples(res) == 0) {
		PQclear(res);
		return err_set(err, EX_DATAERR, "no subscriber %s", t->addr.address);
	}
	snprintf(t->subscriber_id, sizeof(t->subscriber_id), "%s", PQgetvalue(res, 0, 0));
	PQclear(res);
	return 0;
}

static int
subs_read_status(PGconn *conn, struct subs_target *t, struct assent_err *err)
{
	const char *params[] = { t->subscriber_id, t->list_id };
	PGresult *res;

	if (db_exec(conn, &res, err, "SELECT status,"
	    " to_char(updated_at, 'YYYY-MM-DD') FROM subscriptions"
	    " WHERE subscriber_id = $1 AND list_id = $2 FOR UPDATE", 2, params) == -1)
		return -1;
	t->status[0] = t->since[0] = '\0';
	if (PQntuples(res) == 1) {
		snprintf(t->status, sizeof(t->status), "%s", PQgetvalue(res, 0, 0));
		snprintf(t->since, sizeof(t->since), "%s", PQgetvalue(res, 0, 1));
	}
	PQclear(res);
	return 0;
}

static int
subs_begin(PGconn *conn, const struct subs_request *req, struct subs_target *t,
    bool create, struct assent_err *err)
{
	if (subs_check_request(req, &t->addr, err) == -1 || db_begin(conn, err) == -1)
		return -1;
	/* the erasure check after the person's row is locked: an erasure in
	 * flight holds that lock, and its entry is seen once we have it */
	if ((create && subs_check_basis(conn, req, err) == -1) ||
	    (req->evidence->consent_text_version != NULL && consent_text_require(conn,
	    req->evidence->consent_text_version, err) == -1) ||
	    lists_lookup(conn, req->list, t->list_id, &t->double_optin, err) == -1 ||
	    subs_lock_subscriber(conn, req, t, create, err) == -1 ||
	    (create && subs_check_erased(conn, req, &t->addr, err) == -1) ||
	    subs_read_status(conn, t, err) == -1) {
		db_rollback(conn);
		return -1;
	}
	return 0;
}

int
subs_write(PGconn *conn, const struct subs_write *w, struct assent_err *err)
{
	const char *params[] = { w->subscriber_id, w->list_id, w->status_after,
	    w->basis, w->basis_expires_at };
	struct ledger_event ev = {
		.subscriber_id = w->subscriber_id, .list_id = w->list_id,
		.action = w->action, .channel = w->channel,
		.status_before = w->status_before, .status_after = w->status_after,
		.basis = w->basis, .basis_expires_at = w->basis_expires_at,
		.evidence = w->evidence,
	};

	if (ledger_append(conn, &ev, err) == -1)
		return -1;
	return db_exec(conn, NULL, err, "INSERT INTO subscriptions"
	    " (subscriber_id, list_id, status, basis, basis_expires_at)"
	    " VALUES ($1, $2, $3, coalesce($4, 'express'), $5::timestamptz)"
	    " ON CONFLICT (subscriber_id, list_id) DO UPDATE"
	    " SET status = EXCLUDED.status, updated_at = now(),"
	    " basis = CASE WHEN $4 IS NULL THEN subscriptions.basis ELSE EXCLUDED.basis END,"
	    " basis_expires_at = CASE WHEN $4 IS NULL THEN subscriptions.basis_expires_at"
	    " ELSE EXCLUDED.basis_expires_at END", 5, params);
}

/* Write the new status and its ledger event, then commit. A subscribe
 * or resubscribe (basis given) also sets the subscription's basis; a
 * confirmation keeps it. A new pending subscription gets its
 * confirmation request (notice.h) in the same transaction. */
static int
subs_change(PGconn *conn, const struct subs_request *req, const struct subs_target *t,
    const char *action, const char *status, bool set_basis, bool *queued_r,
    struct assent_err *err)
{
	const char *basis = set_basis ? (req->basis != NULL ? req->basis : "express") : NULL;
	struct subs_write w = {
		.subscriber_id = t->subscriber_id, .list_id = t->list_id,
		.action = action, .channel = req->channel,
		.status_before = t->status[0] != '\0' ? t->status : NULL,
		.status_after = status, .basis = basis,
		.basis_expires_at = set_basis ? req->basis_expires_at : NULL,
		.evidence = req->evidence,
	};
	bool queued = false;

	if (queued_r != NULL)
		*queued_r = false;
	if (subs_write(conn, &w, err) == -1 ||
	    (strcmp(status, "pending") == 0 && notice_queue_confirm(conn,
	    t->subscriber_id, t->list_id, &queued, err) == -1) ||
	    db_commit(conn, err) == -1) {
		db_rollback(conn);
		return -1;
	}
	if (queued_r != NULL)
		*queued_r = queued;
	return 0;
}

static int
subs_refuse(PGconn *conn, struct assent_err *err, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int
subs_refuse(PGconn *conn, struct assent_err *err, const char *fmt, ...)
{
	va_list ap;

	db_rollback(conn);
	if (err != NULL) {
		err->code = EX_DATAERR;
		va_start(ap, fmt);
		vsnprintf(err->msg, sizeof(err->msg), fmt, ap);
		va_end(ap);
	}
	return -1;
}

int
subs_add(PGconn *conn, const struct subs_request *req, char status_r[16],
    bool *notice_queued_r, struct assent_err *err)
{
	struct subs_target t;
	const char *status, *action = "subscribe";

	if (subs_begin(conn, req, &t, true, err) == -1)
		return -1;
	if (strcmp(t.status, "pending") == 0 || strcmp(t.status, "confirmed") == 0)
		return subs_refuse(conn, err, "%s is already subscribed to %s (%s since %s)",
		    t.addr.address, req->list, t.status, t.since);
	if (strcmp(t.status, "unsubscribed") == 0) {
		if (!req->resubscribe)
			return subs_refuse(conn, err, "%s unsubscribed from %s on %s; "
			    "subscribing again needs --resubscribe with evidence of "
			    "fresh consent", t.addr.address, req->list, t.since);
		action = "resubscribe";
	}
	status = t.double_optin ? "pending" : "confirmed";
	if (subs_change(conn, req, &t, action, status, true, notice_queued_r,
	    err) == -1)
		return -1;
	snprintf(status_r, 16, "%s", status);
	return 0;
}

int
subs_confirm(PGconn *conn, const struct subs_request *req, bool *changed_r,
    struct assent_err *err)
{
	struct subs_target t;

	*changed_r = false;
	if (subs_begin(conn, req, &t, false, err) == -1)
		return -1;
	if (t.status[0] == '\0')
		return subs_refuse(conn, err, "%s is not subscribed to %s",
		    t.addr.address, req->list);
	if (strcmp(t.status, "unsubscribed") == 0)
		return subs_refuse(conn, err, "%s unsubscribed from %s on %s: there is "
		    "nothing to confirm", t.addr.address, req->list, t.since);
	if (strcmp(t.status, "confirmed") == 0) {
		db_rollback(conn);
		return 0;
	}
	if (subs_change(conn, req, &t, "confirm", "confirmed", false, NULL,
	    err) == -1)
		return -1;
	*changed_r = true;
	return 0;
}

static int
subs_profile_rows(PGconn *conn, const char *sql, const char *param, json_t **rows_r,
    struct assent_err *err)
{
	PGresult *res;

	if (db_exec(conn, &res, err, sql, 1, &param) == -1)
		return -1;
	*rows_r = db_rows_json(res);
	PQclear(res);
	return 0;
}

/* The subscriber row as an object (without its id), and the id. */
static int
subs_profile_base(PGconn *conn, const struct addr *addr, json_t **profile_r,
    char id_r[24], struct assent_err *err)
{
	const char *params[] = { addr->key };
	PGresult *res;
	json_t *rows;

	if (db_exec(conn, &res, err, "SELECT id, email, name, attrs::text AS attrs,"
	    " to_char(created_at, 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"') AS created_at"
	    " FROM subscribers WHERE email_key = $1", 1, params) == -1)
		return -1;
	if (PQntuples(res) == 0) {
		PQclear(res);
		return err_set(err, EX_DATAERR, "no subscriber %s", addr->address);
	}
	snprintf(id_r, 24, "%s", PQgetvalue(res, 0, 0));
	rows = db_rows_json(res);
	PQclear(res);
	*profile_r = json_incref(json_array_get(rows, 0));
	json_decref(rows);
	json_object_del(*profile_r, "id");
	json_object_set_new(*profile_r, "attrs", json_loads(json_string_value(
	    json_object_get(*profile_r, "attrs")), 0, NULL));
	return 0;
}

int
subs_show(PGconn *conn, const char *email, json_t **profile_r, struct assent_err *err)
{
	json_t *profile = NULL, *subs = NULL, *history = NULL;
	struct addr addr;
	char id[24];

	*profile_r = NULL;
	if (addr_parse(email, &addr, err) == -1 ||
	    subs_profile_base(conn, &addr, &profile, id, err) == -1)
		return -1;
	if (subs_profile_rows(conn, "SELECT l.name AS list, s.status,"
	    " to_char(s.updated_at, 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"') AS since,"
	    " s.basis, to_char(s.basis_expires_at, 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"')"
	    " AS basis_expires_at,"
	    " s.basis_expires_at IS NOT NULL AND s.basis_expires_at <= now() AS expired,"
	    " l.removed_at IS NOT NULL AS list_removed"
	    " FROM subscriptions s JOIN lists l ON l.id = s.list_id"
	    " WHERE s.subscriber_id = $1 ORDER BY l.name", id, &subs, err) == -1 ||
	    ledger_history(conn, id, &history, err) == -1) {
		json_decref(subs);
		json_decref(profile);
		return -1;
	}
	json_object_set_new(profile, "subscriptions", subs);
	json_object_set_new(profile, "history", history);
	*profile_r = profile;
	return 0;
}

/* signup: the public subscribe form and fresh confirmation requests
 * (see include/assent/signup.h) */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "assent/addr.h"
#include "assent/db.h"
#include "assent/notice.h"
#include "assent/rights.h"
#include "assent/signup.h"
#include "assent/subs.h"
#include "assent/text.h"
#include "assent/xmalloc.h"

#define SIGNUP_SOURCE "subscribe form"

/* The list as the form sees it, looked up (and locked FOR SHARE) in the
 * transaction. */
struct signup_target {
	char list_id[24];
	char list_name[65];
	char description[1001];
	bool double_optin;
	char consent[65];               /* "" when the list takes no sign-ups */
	char attrs[SIGNUP_ATTRS_MAX][65];
	size_t nattrs;
	char subscriber_id[24];
	bool created;                   /* the subscriber is new */
	char status[16];                /* "" for no subscription */
	bool lapsed;                    /* confirmed on implied consent that lapsed */
	bool blocked;                   /* suppressed or erased: store nothing */
};

/* form_attrs as "a,b" (array_to_string(): a key never holds a comma,
 * the database allows [A-Za-z0-9_-] only). */
static void
signup_parse_attrs(const char *list, char attrs[][65], size_t *n)
{
	const char *p = list, *e;

	*n = 0;
	while (*p != '\0' && *n < SIGNUP_ATTRS_MAX) {
		e = p + strcspn(p, ",");
		snprintf(attrs[*n], 65, "%.*s", (int)(e - p), p);
		(*n)++;
		p = *e == ',' ? e + 1 : e;
	}
}

static int
signup_find_list(PGconn *conn, const char *name, bool lock,
    struct signup_target *t, char **consent_body_r, struct assent_err *err)
{
	const char *params[] = { name };
	PGresult *res;

	if (name == NULL || text_check_list_name(name, NULL) == -1)
		return err_set(err, EX_NOUSER, "no such list");
	if (db_exec(conn, &res, err, lock ?
	    "SELECT l.id, l.name, l.double_optin, l.form_consent_text,"
	    " array_to_string(l.form_attrs, ','), NULL, l.description FROM lists l"
	    " WHERE lower(l.name) = lower($1) AND l.removed_at IS NULL"
	    "   AND l.form_consent_text IS NOT NULL FOR SHARE" :
	    "SELECT l.id, l.name, l.double_optin, l.form_consent_text,"
	    " array_to_string(l.form_attrs, ','), c.body, l.description FROM lists l"
	    " JOIN consent_texts c ON c.version = l.form_consent_text"
	    " WHERE lower(l.name) = lower($1) AND l.removed_at IS NULL",
	    1, params) == -1)
		return -1;
	if (PQntuples(res) == 0) {
		PQclear(res);
		return err_set(err, EX_NOUSER, "no such list");
	}
	snprintf(t->list_id, sizeof(t->list_id), "%s", PQgetvalue(res, 0, 0));
	snprintf(t->list_name, sizeof(t->list_name), "%s", PQgetvalue(res, 0, 1));
	t->double_optin = PQgetvalue(res, 0, 2)[0] == 't';
	snprintf(t->consent, sizeof(t->consent), "%s", PQgetvalue(res, 0, 3));
	signup_parse_attrs(PQgetvalue(res, 0, 4), t->attrs, &t->nattrs);
	snprintf(t->description, sizeof(t->description), "%s", PQgetvalue(res, 0, 6));
	if (consent_body_r != NULL)
		*consent_body_r = xstrdup(PQgetvalue(res, 0, 5));
	PQclear(res);
	return 0;
}

/* The form's own problems, before anything is looked up. */
/* The evidence recorded with a sign-up. */
static void
signup_evidence(const struct signup_form *f, struct ledger_evidence *ev)
{
	memset(ev, 0, sizeof(*ev));
	ev->source = SIGNUP_SOURCE;
	ev->ip = f->ip;
	ev->user_agent = f->user_agent;
	ev->page = f->page;
	ev->consent_text_version = f->consent_text;
}

/* Everything about the form itself is checked before any look-up, so
 * that a refusal never depends on the address's state. */
static int
signup_check_form(const struct signup_form *f, struct addr *addr,
    struct assent_err *err)
{
	struct ledger_evidence ev;

	if (f->email == NULL || *f->email == '\0')
		return err_set(err, EX_DATAERR, "the email address is missing");
	if (addr_parse(f->email, addr, err) == -1)
		return err_prefix(err, "the email address is not valid");
	if (f->name != NULL && text_check_line(f->name, SIGNUP_VALUE_MAX, true,
	    "name", err) == -1)
		return -1;
	if (f->consent_text == NULL || *f->consent_text == '\0')
		return err_set(err, EX_DATAERR, "the form did not say which consent "
		    "wording it showed (consent_text)");
	for (size_t i = 0; i < f->nattrs; i++) {
		char what[80];

		snprintf(what, sizeof(what), "attr.%.64s", f->attr_keys[i]);
		if (text_check_line(f->attr_values[i], SIGNUP_VALUE_MAX, true, what,
		    err) == -1)
			return -1;
	}
	signup_evidence(f, &ev);
	if (ledger_evidence_check(&ev, err) == -1) {
		err->code = EX_DATAERR;
		return -1;
	}
	return 0;
}

static int
signup_check_against_list(const struct signup_form *f,
    const struct signup_target *t, struct assent_err *err)
{
	char q[TEXT_QUOTE_SIZE];
	bool known;

	if (strcmp(f->consent_text, t->consent) != 0)
		return err_set(err, EX_DATAERR, "this form is out of date: it shows "
		    "a consent wording the list no longer uses; reload the page and "
		    "try again");
	for (size_t i = 0; i < f->nattrs; i++) {
		known = false;
		for (size_t k = 0; k < t->nattrs && !known; k++)
			known = strcmp(f->attr_keys[i], t->attrs[k]) == 0;
		if (!known)
			return err_set(err, EX_DATAERR, "the form has a field this list "
			    "does not take: attr.%s", text_quote(f->attr_keys[i],
			    strlen(f->attr_keys[i]), q, sizeof(q)));
	}
	return 0;
}

/* Suppressed or erased: nothing may happen for this address. */
static int
signup_is_blocked(PGconn *conn, const struct suppress_ctx *gate,
    const struct addr *addr, bool *blocked_r, struct assent_err *err)
{
	const char *keys[] = { addr->key };
	struct suppress_verdict v;
	bool erased = false;

	*blocked_r = false;
	if (gate == NULL)
		return err_set(err, EX_CONFIG, "the subscribe form needs the keys "
		    "file (tokens.keys_file) to check the suppression list");
	if (rights_is_erased(conn, gate, addr->key, &erased, err) == -1 ||
	    suppress_gate(conn, gate, keys, 1, &v, err) == -1)
		return -1;
	*blocked_r = erased || v.suppressed;
	return 0;
}

/* The attributes as a JSON object text, for a new subscriber. */
static char *
signup_attrs_json(const struct signup_form *f)
{
	json_t *o = json_object();
	char *s;

	for (size_t i = 0; i < f->nattrs; i++)
		json_object_set_new(o, f->attr_keys[i], json_string(f->attr_values[i]));
	s = json_dumps(o, JSON_COMPACT);
	json_decref(o);
	return s;
}

/* Find or create the subscriber, locking its row; then the status of
 * its subscription to the list, locked too. */
static int
signup_lock_person(PGconn *conn, const struct signup_form *f,
    const struct addr *addr, struct signup_target *t, struct assent_err *err)
{
	char *attrs = signup_attrs_json(f);
	const char *params[] = { addr->address, addr->key,
	    f->name != NULL ? f->name : "", attrs };
	const char *sp[2];
	PGresult *res;
	int rc;

	rc = db_exec(conn, &res, err, "INSERT INTO subscribers (email, email_key,"
	    " name, attrs) VALUES ($1, $2, $3, $4::jsonb)"
	    " ON CONFLICT (email_key) DO UPDATE SET email_key = EXCLUDED.email_key"
	    " RETURNING id, xmax = 0", 4, params);
	free(attrs);
	if (rc == -1)
		return -1;
	snprintf(t->subscriber_id, sizeof(t->subscriber_id), "%s",
	    PQgetvalue(res, 0, 0));
	t->created = PQgetvalue(res, 0, 1)[0] == 't';
	PQclear(res);
	sp[0] = t->subscriber_id;
	sp[1] = t->list_id;
	if (db_exec(conn, &res, err, "SELECT status, basis_expires_at <= now()"
	    " FROM subscriptions WHERE subscriber_id = $1 AND list_id = $2"
	    " FOR UPDATE", 2, sp) == -1)
		return -1;
	snprintf(t->status, sizeof(t->status), "%s",
	    PQntuples(res) == 1 ? PQgetvalue(res, 0, 0) : "");
	t->lapsed = PQntuples(res) == 1 && PQgetvalue(res, 0, 1)[0] == 't';
	PQclear(res);
	return 0;
}

static int
signup_queue(PGconn *conn, const struct signup_target *t,
    enum signup_outcome if_queued, struct signup_result *r,
    struct assent_err *err)
{
	bool queued;

	if (notice_queue_confirm(conn, t->subscriber_id, t->list_id, &queued,
	    err) == -1)
		return -1;
	r->outcome = queued ? if_queued : SIGNUP_QUIET;
	return 0;
}

/* New, or ended before: subscribe (pending or confirmed) with the
 * form's evidence. */
static int
signup_subscribe(PGconn *conn, const struct signup_form *f,
    const struct signup_target *t, struct signup_result *r,
    struct assent_err *err)
{
	const char *status = t->double_optin ? "pending" : "confirmed";
	struct ledger_evidence ev;
	struct subs_write w = {
		.subscriber_id = t->subscriber_id, .list_id = t->list_id,
		.action = t->status[0] == '\0' ? "subscribe" : "resubscribe",
		.channel = "web",
		.status_before = t->status[0] != '\0' ? t->status : NULL,
		.status_after = status, .basis = "express", .evidence = &ev,
	};

	signup_evidence(f, &ev);
	if (subs_write(conn, &w, err) == -1)
		return -1;
	if (!t->double_optin) {
		r->outcome = SIGNUP_CONFIRMED;
		return 0;
	}
	return signup_queue(conn, t, SIGNUP_PENDING, r, err);
}

/* The person's row is locked first: an erasure in flight holds it, and
 * once it is ours the gate sees that erasure's entry. A blocked address
 * is then rolled back by the caller, with the row the upsert made. */
static int
signup_decide(PGconn *conn, const struct suppress_ctx *gate,
    const struct signup_form *f, const struct addr *addr,
    struct signup_target *t, struct signup_result *r, struct assent_err *err)
{
	if (signup_find_list(conn, f->list, true, t, NULL, err) == -1)
		return -1;
	snprintf(r->list_name, sizeof(r->list_name), "%s", t->list_name);
	r->double_optin = t->double_optin;
	if (signup_check_against_list(f, t, err) == -1 ||
	    signup_lock_person(conn, f, addr, t, err) == -1 ||
	    signup_is_blocked(conn, gate, addr, &t->blocked, err) == -1)
		return -1;
	if (t->blocked)
		return 0;
	if (strcmp(t->status, "confirmed") == 0 && !t->lapsed)
		return 0;
	if (strcmp(t->status, "pending") == 0)
		return signup_queue(conn, t, SIGNUP_RESENT, r, err);
	return signup_subscribe(conn, f, t, r, err);
}

int
signup_submit(PGconn *conn, const struct suppress_ctx *gate,
    const struct signup_form *form, struct signup_result *r,
    struct assent_err *err)
{
	struct signup_target t;
	struct addr addr;

	memset(r, 0, sizeof(*r));
	memset(&t, 0, sizeof(t));
	r->outcome = SIGNUP_QUIET;
	if (signup_check_form(form, &addr, err) == -1)
		return -1;
	if (db_begin(conn, err) == -1)
		return -1;
	if (signup_decide(conn, gate, form, &addr, &t, r, err) == -1)
		goto fail;
	if (t.blocked) {
		db_rollback(conn);      /* nothing at all is stored */
		return 0;
	}
	if (db_commit(conn, err) == -1)
		goto fail;
	return 0;
fail:
	db_rollback(conn);
	r->outcome = SIGNUP_QUIET;
	return -1;
}

int
signup_confirm_again(PGconn *conn, const struct suppress_ctx *gate,
    uint64_t subscriber_id, uint64_t list_id, struct signup_result *r,
    struct assent_err *err)
{
	struct signup_target t;
	char sid[24], lid[24];
	const char *params[] = { sid, lid };
	PGresult *res;
	struct addr addr;
	bool blocked = true;

	memset(r, 0, sizeof(*r));
	memset(&t, 0, sizeof(t));
	r->outcome = SIGNUP_QUIET;
	snprintf(sid, sizeof(sid), "%" PRIu64, subscriber_id);
	snprintf(lid, sizeof(lid), "%" PRIu64, list_id);
	if (db_begin(conn, err) == -1)
		return -1;
	/* the subscriber's row locked: notice_queue_confirm() counts */
	if (db_exec(conn, &res, err, "SELECT s.email, sub.status FROM subscribers s"
	    " JOIN subscriptions sub ON sub.subscriber_id = s.id AND sub.list_id = $2"
	    " JOIN lists l ON l.id = sub.list_id AND l.removed_at IS NULL"
	    " WHERE s.id = $1 AND s.email_key IS NOT NULL FOR UPDATE OF s, sub",
	    2, params) == -1)
		goto fail;
	if (PQntuples(res) == 1 && strcmp(PQgetvalue(res, 0, 1), "pending") == 0 &&
	    addr_parse(PQgetvalue(res, 0, 0), &addr, NULL) == 0 &&
	    signup_is_blocked(conn, gate, &addr, &blocked, err) == -1) {
		PQclear(res);
		goto fail;
	}
	PQclear(res);
	snprintf(t.subscriber_id, sizeof(t.subscriber_id), "%s", sid);
	snprintf(t.list_id, sizeof(t.list_id), "%s", lid);
	if ((!blocked && signup_queue(conn, &t, SIGNUP_RESENT, r, err) == -1) ||
	    db_commit(conn, err) == -1)
		goto fail;
	return 0;
fail:
	db_rollback(conn);
	r->outcome = SIGNUP_QUIET;
	return -1;
}

int
signup_list_info(PGconn *conn, const char *name, struct signup_list *info,
    struct assent_err *err)
{
	struct signup_target t;

	memset(info, 0, sizeof(*info));
	memset(&t, 0, sizeof(t));
	if (signup_find_list(conn, name, false, &t, &info->consent_body, err) == -1)
		return -1;
	snprintf(info->name, sizeof(info->name), "%s", t.list_name);
	info->double_optin = t.double_optin;
	snprintf(info->consent_version, sizeof(info->consent_version), "%s",
	    t.consent);
	memcpy(info->attrs, t.attrs, sizeof(info->attrs));
	info->nattrs = t.nattrs;
	snprintf(info->description, sizeof(info->description), "%s", t.description);
	return 0;
}

void
signup_list_info_free(struct signup_list *info)
{
	free(info->consent_body);
	info->consent_body = NULL;
}

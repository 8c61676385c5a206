/* rights: export, rectify, unsubscribe, erase; see rights.h */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "assent/addr.h"
#include "assent/db.h"
#include "assent/lists.h"
#include "assent/rights.h"
#include "assent/text.h"
#include "assent/xmalloc.h"

/* A timestamp column as ISO 8601 UTC (the session's zone is UTC). */
#define RIGHTS_TS(col, as) \
	"to_char(" col ", 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"') AS " as

#define RIGHTS_REASON_MAX 500         /* bytes; leaves room in a ledger source */
#define RIGHTS_ATTR_KEY_MAX 64
#define RIGHTS_ATTR_VALUE_MAX 1000
#define RIGHTS_FIELDS_MAX 400         /* bytes of field names in a ledger source */

/* The person a request is about. */
struct rights_person {
	struct addr addr;                 /* as typed, normalised */
	char id[24];
	char email[ADDR_MAX + 1];         /* as stored */
	char *name;                       /* as stored; freed by rights_person_free() */
	char *attrs;                      /* JSON text, as stored */
};

static void
rights_person_free(struct rights_person *p)
{
	free(p->name);
	free(p->attrs);
	p->name = p->attrs = NULL;
}

/* --- finding the person ------------------------------------------------------ */

static int
rights_unknown(PGconn *conn, const struct suppress_ctx *ctx, const struct addr *a,
    struct assent_err *err)
{
	bool erased = false;

	if (ctx != NULL && rights_is_erased(conn, ctx, a->key, &erased, err) == -1)
		return -1;
	if (erased)
		return err_set(err, EX_DATAERR, "no subscriber %s (the address was "
		    "erased; only its keyed hash is kept, as a suppression entry)",
		    a->address);
	return err_set(err, EX_DATAERR, "no subscriber %s", a->address);
}

/* Parse email and find its subscriber, its row locked FOR UPDATE when
 * lock is set. ctx (may be NULL) lets "no subscriber" say whether the
 * address was erased. */
static int
rights_find(PGconn *conn, const struct suppress_ctx *ctx, const char *email,
    bool lock, struct rights_person *p, struct assent_err *err)
{
	const char *params[] = { p->addr.key };
	PGresult *res;

	p->name = p->attrs = NULL;
	if (addr_parse(email, &p->addr, err) == -1)
		return -1;
	if (db_exec(conn, &res, err, lock ?
	    "SELECT id, email, name, attrs::text FROM subscribers"
	    " WHERE email_key = $1 FOR UPDATE" :
	    "SELECT id, email, name, attrs::text FROM subscribers"
	    " WHERE email_key = $1", 1, params) == -1)
		return -1;
	if (PQntuples(res) == 0) {
		PQclear(res);
		return rights_unknown(conn, ctx, &p->addr, err);
	}
	snprintf(p->id, sizeof(p->id), "%s", PQgetvalue(res, 0, 0));
	snprintf(p->email, sizeof(p->email), "%s", PQgetvalue(res, 0, 1));
	p->name = xstrdup(PQgetvalue(res, 0, 2));
	p->attrs = xstrdup(PQgetvalue(res, 0, 3));
	PQclear(res);
	return 0;
}

/* --- the audit table ----------------------------------------------------------- */

static int
rights_audit_subscriber(PGconn *conn, const struct audit_actor *who,
    const char *action, const struct rights_person *p, const json_t *detail,
    struct assent_err *err)
{
	char subject[40];

	snprintf(subject, sizeof(subject), "subscriber %s", p->id);
	return audit_append(conn, who, action, subject, detail, err);
}

/* --- export ---------------------------------------------------------------------- */

/* The rows of a query with one parameter, as a JSON array. */
static int
rights_rows(PGconn *conn, const char *sql, int nparams, const char *const *params,
    json_t **rows_r, struct assent_err *err)
{
	PGresult *res;

	*rows_r = NULL;
	if (db_exec(conn, &res, err, sql, nparams, params) == -1)
		return -1;
	*rows_r = db_rows_json(res);
	PQclear(res);
	return 0;
}

/* Replace the JSON text in member key of every object of rows by its
 * value. */
static void
rights_parse_member(json_t *rows, const char *key)
{
	size_t i;
	json_t *row, *v;

	json_array_foreach(rows, i, row) {
		v = json_object_get(row, key);
		if (json_is_string(v))
			json_object_set_new(row, key, json_loads(json_string_value(v),
			    JSON_DECODE_ANY, NULL));
	}
}

static int
rights_export_profile(PGconn *conn, const struct rights_person *p, json_t *doc,
    struct assent_err *err)
{
	const char *params[] = { p->id };
	json_t *rows;

	if (rights_rows(conn, "SELECT id, email, name, attrs::text AS attrs, "
	    RIGHTS_TS("created_at", "created_at") ", "
	    RIGHTS_TS("updated_at", "updated_at")
	    " FROM subscribers WHERE id = $1", 1, params, &rows, err) == -1)
		return -1;
	rights_parse_member(rows, "attrs");
	json_object_set(doc, "profile", json_array_get(rows, 0));
	json_decref(rows);
	return 0;
}

static int
rights_export_subscriptions(PGconn *conn, const struct rights_person *p, json_t *doc,
    struct assent_err *err)
{
	const char *params[] = { p->id };
	json_t *rows;

	if (rights_rows(conn, "SELECT l.name AS list, l.double_optin, s.status, "
	    RIGHTS_TS("s.updated_at", "since") ", "
	    RIGHTS_TS("s.created_at", "created_at") ", s.basis, "
	    RIGHTS_TS("s.basis_expires_at", "basis_expires_at") ","
	    " l.removed_at IS NOT NULL AS list_removed"
	    " FROM subscriptions s JOIN lists l ON l.id = s.list_id"
	    " WHERE s.subscriber_id = $1 ORDER BY l.name, l.id", 1, params,
	    &rows, err) == -1)
		return -1;
	json_object_set_new(doc, "subscriptions", rows);
	return 0;
}

/* The wordings named by the person's ledger events. */
static int
rights_export_consent_texts(PGconn *conn, const struct rights_person *p,
    json_t *doc, struct assent_err *err)
{
	const char *params[] = { p->id };
	json_t *rows;

	if (rights_rows(conn, "SELECT c.version, c.sha256, "
	    RIGHTS_TS("c.effective_at", "effective_at") ", c.body"
	    " FROM consent_texts c WHERE c.version IN (SELECT e.consent_text_version"
	    " FROM ledger e WHERE e.subscriber_id = $1)"
	    " ORDER BY c.effective_at, c.version", 1, params, &rows, err) == -1)
		return -1;
	json_object_set_new(doc, "consent_texts", rows);
	return 0;
}

/* Entries, active or not, for the address, its keyed hash, its domain
 * or (when the gate uses it) its gmail mailbox key. */
static int
rights_suppression_entries(PGconn *conn, const struct suppress_ctx *ctx,
    const struct addr *a, json_t **rows_r, struct assent_err *err)
{
	char hash[SUPPRESS_HASH_HEX + 1], mbox[ADDR_MAX + 1];
	const char *params[4];

	suppress_hash(ctx, a->key, hash);
	params[0] = a->key;
	params[1] = hash;
	params[2] = strrchr(a->key, '@') + 1;
	params[3] = ctx->gmail_mailbox_key && suppress_mailbox_key(a->key, mbox) ?
	    mbox : NULL;
	if (rights_rows(conn, "SELECT id, kind, value, reason, source, added_by, "
	    RIGHTS_TS("added_at", "added_at") ", "
	    RIGHTS_TS("expires_at", "expires_at") ", "
	    RIGHTS_TS("removed_at", "removed_at") ", removed_by, removed_reason,"
	    " removed_at IS NULL AND (expires_at IS NULL OR expires_at > now())"
	    "  AS active"
	    " FROM suppressions WHERE (kind = 'address' AND value = $1)"
	    " OR (kind = 'hash' AND value = $2) OR (kind = 'domain' AND value = $3)"
	    " OR mailbox_key = $4 ORDER BY id", 4, params, rows_r, err) == -1)
		return -1;
	return 0;
}

static int
rights_export_suppression(PGconn *conn, const struct suppress_ctx *ctx,
    const struct rights_person *p, json_t *doc, struct assent_err *err)
{
	const char *key = p->addr.key;
	struct suppress_verdict v;
	json_t *entries;

	if (suppress_gate(conn, ctx, &key, 1, &v, err) == -1 ||
	    rights_suppression_entries(conn, ctx, &p->addr, &entries, err) == -1)
		return -1;
	json_object_set_new(doc, "suppression", json_pack("{s:b, s:o, s:o}",
	    "suppressed", v.suppressed, "entry", v.suppressed ?
	    suppress_entry_json(&v.entry) : json_null(), "entries", entries));
	return 0;
}

/* Every message meant for the person: campaign deliveries and test
 * sends to a subscriber are in deliveries, confirmation requests in
 * notices; oldest first. */
static int
rights_export_messages(PGconn *conn, const struct rights_person *p,
    json_t *doc, struct assent_err *err)
{
	const char *params[] = { p->id };
	json_t *rows;

	if (rights_rows(conn, "SELECT kind, campaign, list, state, "
	    RIGHTS_TS("created_at", "created_at") ", "
	    RIGHTS_TS("sent_at", "sent_at") ", reply, "
	    RIGHTS_TS("bounced_at", "bounced_at") ", "
	    RIGHTS_TS("complained_at", "complained_at") ", "
	    RIGHTS_TS("unsubscribed_at", "unsubscribed_at")
	    " FROM (SELECT 'campaign' AS kind, c.name AS campaign, l.name AS list,"
	    "   d.state, d.created_at, d.sent_at, d.smtp_reply AS reply,"
	    "   d.bounced_at, d.complained_at, d.unsubscribed_at, d.id"
	    "  FROM deliveries d JOIN campaigns c ON c.id = d.campaign_id"
	    "  JOIN lists l ON l.id = d.list_id WHERE d.subscriber_id = $1"
	    " UNION ALL"
	    " SELECT 'confirmation request', NULL, l.name, n.state, n.created_at,"
	    "   n.sent_at, n.detail, NULL, NULL, NULL, n.id"
	    "  FROM notices n JOIN lists l ON l.id = n.list_id"
	    "  WHERE n.subscriber_id = $1) m"
	    " ORDER BY created_at, kind, id", 1, params, &rows, err) == -1)
		return -1;
	json_object_set_new(doc, "messages", rows);
	return 0;
}

/* What came back about the person's messages (bounces, complaints,
 * the relay's refusals), oldest first. */
static int
rights_export_bounces(PGconn *conn, const struct rights_person *p,
    json_t *doc, struct assent_err *err)
{
	const char *params[] = { p->id };
	json_t *rows;

	if (rights_rows(conn, "SELECT " RIGHTS_TS("b.received_at", "received_at")
	    ", b.source, b.class, c.name AS campaign,"
	    " CASE WHEN b.notice_id IS NOT NULL THEN 'confirmation request'"
	    "      ELSE 'campaign' END AS message,"
	    " b.recipient, b.status, b.smtp_code, b.diagnostic, b.remote_mta,"
	    " b.action"
	    " FROM bounces b LEFT JOIN campaigns c ON c.id = b.campaign_id"
	    " WHERE b.subscriber_id = $1 ORDER BY b.id", 1, params, &rows,
	    err) == -1)
		return -1;
	json_object_set_new(doc, "bounces", rows);
	return 0;
}

static int
rights_export_doc(PGconn *conn, const struct suppress_ctx *ctx,
    const struct rights_person *p, json_t *doc, struct assent_err *err)
{
	json_t *history;

	if (rights_export_profile(conn, p, doc, err) == -1 ||
	    rights_export_subscriptions(conn, p, doc, err) == -1 ||
	    ledger_history(conn, p->id, &history, err) == -1)
		return -1;
	json_object_set_new(doc, "history", history);
	if (rights_export_consent_texts(conn, p, doc, err) == -1 ||
	    rights_export_suppression(conn, ctx, p, doc, err) == -1 ||
	    rights_export_messages(conn, p, doc, err) == -1 ||
	    rights_export_bounces(conn, p, doc, err) == -1)
		return -1;
	return 0;
}

/* A new document with its format and the snapshot's time. */
static int
rights_export_start(PGconn *conn, json_t **doc_r, struct assent_err *err)
{
	PGresult *res;

	if (db_exec(conn, NULL, err, "SET TRANSACTION ISOLATION LEVEL REPEATABLE READ",
	    0, NULL) == -1 ||
	    db_exec(conn, &res, err, "SELECT " RIGHTS_TS("now()", "t"), 0, NULL) == -1)
		return -1;
	*doc_r = json_pack("{s:s, s:s}", "format", RIGHTS_EXPORT_FORMAT,
	    "generated_at", PQgetvalue(res, 0, 0));
	PQclear(res);
	return 0;
}

int
rights_export(PGconn *conn, const struct suppress_ctx *ctx, const char *email,
    const struct audit_actor *who, json_t **doc_r, struct assent_err *err)
{
	struct rights_person p = { .name = NULL };
	json_t *doc = NULL, *detail;
	int rc;

	*doc_r = NULL;
	if (db_begin(conn, err) == -1)
		return -1;
	if (rights_export_start(conn, &doc, err) == -1 ||
	    rights_find(conn, ctx, email, false, &p, err) == -1 ||
	    rights_export_doc(conn, ctx, &p, doc, err) == -1)
		goto fail;
	detail = json_pack("{s:s, s:I}", "format", RIGHTS_EXPORT_FORMAT,
	    "history_events", (json_int_t)json_array_size(json_object_get(doc, "history")));
	rc = rights_audit_subscriber(conn, who, "export", &p, detail, err);
	json_decref(detail);
	if (rc == -1 || db_commit(conn, err) == -1)
		goto fail;
	rights_person_free(&p);
	*doc_r = doc;
	return 0;
fail:
	db_rollback(conn);
	rights_person_free(&p);
	json_decref(doc);
	return -1;
}

/* --- rectify --------------------------------------------------------------------- */

/* What a rectification changes, worked out against the stored row. */
struct rights_change {
	json_t *fields;                   /* names of changed fields */
	json_t *attrs;                    /* the attributes after the change */
	const char *name;                 /* the name after the change */
	struct addr new_addr;
	bool email_changed, key_changed;
};

static int
rights_check_attr(const struct rights_attr *a, struct assent_err *err)
{
	size_t len = strlen(a->key);

	if (len == 0 || len > RIGHTS_ATTR_KEY_MAX ||
	    strspn(a->key, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
	    "0123456789_.-") != len)
		return err_set(err, EX_DATAERR, "invalid attribute name \"%.*s\": use "
		    "1-%d letters, digits, '_', '.' or '-'", RIGHTS_ATTR_KEY_MAX + 1,
		    a->key, RIGHTS_ATTR_KEY_MAX);
	return text_check_line(a->value, RIGHTS_ATTR_VALUE_MAX, true,
	    "attribute value", err);
}

static int
rights_check_rectify(const struct rights_rectify *r, struct assent_err *err)
{
	if (r->name == NULL && r->nattrs == 0 && r->new_email == NULL)
		return err_set(err, EX_USAGE, "nothing to rectify: give a name, an "
		    "attribute or a new address");
	if (text_check_line(r->reason, RIGHTS_REASON_MAX, false, "--reason", err) == -1 ||
	    (r->name != NULL && text_check_line(r->name, 200, true, "name", err) == -1))
		return -1;
	for (size_t i = 0; i < r->nattrs; i++)
		if (rights_check_attr(&r->attrs[i], err) == -1)
			return -1;
	return 0;
}

static void
rights_change_field(struct rights_change *c, const char *field)
{
	json_array_append_new(c->fields, json_string(field));
}

/* Apply the attributes to c->attrs, noting the keys that change. */
static void
rights_change_attrs(struct rights_change *c, const struct rights_rectify *r)
{
	const struct rights_attr *a;
	const char *old;
	char *field;

	for (size_t i = 0; i < r->nattrs; i++) {
		a = &r->attrs[i];
		old = json_string_value(json_object_get(c->attrs, a->key));
		if (a->value[0] == '\0' && json_object_get(c->attrs, a->key) == NULL)
			continue;
		if (a->value[0] != '\0' && old != NULL && strcmp(old, a->value) == 0)
			continue;
		if (a->value[0] == '\0')
			json_object_del(c->attrs, a->key);
		else
			json_object_set_new(c->attrs, a->key, json_string(a->value));
		field = xasprintf("attrs.%s", a->key);
		/* the same key given twice is one field */
		for (size_t j = 0; j <= json_array_size(c->fields); j++)
			if (j == json_array_size(c->fields)) {
				rights_change_field(c, field);
				break;
			} else if (strcmp(json_string_value(json_array_get(c->fields, j)),
			    field) == 0)
				break;
		free(field);
	}
}

/* A new address: refused when someone else has it. */
static int
rights_change_email(PGconn *conn, const struct rights_person *p,
    const struct rights_rectify *r, struct rights_change *c, struct assent_err *err)
{
	const char *params[] = { c->new_addr.key, p->id };
	PGresult *res;
	bool taken;

	if (addr_parse(r->new_email, &c->new_addr, err) == -1)
		return err_prefix(err, "--email");
	c->email_changed = strcmp(c->new_addr.address, p->email) != 0;
	c->key_changed = strcmp(c->new_addr.key, p->addr.key) != 0;
	if (!c->key_changed)
		return 0;
	if (db_exec(conn, &res, err, "SELECT 1 FROM subscribers WHERE email_key = $1"
	    " AND id <> $2", 2, params) == -1)
		return -1;
	taken = PQntuples(res) > 0;
	PQclear(res);
	if (taken)
		return err_set(err, EX_DATAERR, "another subscriber has %s already",
		    c->new_addr.address);
	return 0;
}

static int
rights_plan_rectify(PGconn *conn, const struct rights_person *p,
    const struct rights_rectify *r, struct rights_change *c, struct assent_err *err)
{
	c->fields = json_array();
	c->attrs = json_loads(p->attrs, 0, NULL);
	if (c->attrs == NULL || !json_is_object(c->attrs))
		return err_set(err, EX_SOFTWARE, "subscriber %s: stored attributes are "
		    "not a JSON object", p->id);
	c->name = p->name;
	if (r->name != NULL && strcmp(r->name, p->name) != 0) {
		c->name = r->name;
		rights_change_field(c, "name");
	}
	rights_change_attrs(c, r);
	if (r->new_email != NULL) {
		if (rights_change_email(conn, p, r, c, err) == -1)
			return -1;
		if (c->email_changed)
			rights_change_field(c, "email");
	}
	return 0;
}

static int
rights_store_profile(PGconn *conn, const struct rights_person *p,
    const struct rights_change *c, struct assent_err *err)
{
	char *attrs = json_dumps(c->attrs, JSON_COMPACT | JSON_SORT_KEYS);
	const char *params[] = {
		p->id, c->name, attrs,
		c->email_changed ? c->new_addr.address : p->email,
		c->email_changed ? c->new_addr.key : p->addr.key,
	};
	int rc;

	rc = db_exec(conn, NULL, err, "UPDATE subscribers SET name = $2,"
	    " attrs = $3::jsonb, email = $4, email_key = $5, updated_at = now()"
	    " WHERE id = $1", 5, params);
	free(attrs);
	if (rc == -1 && strcmp(db_last_sqlstate(), "23505") == 0)
		return err_set(err, EX_DATAERR, "another subscriber has %s already",
		    c->new_addr.address);
	return rc;
}

/* "rectified name, attrs.city; reason: ..." for the ledger source. */
static char *
rights_rectify_source(const struct rights_change *c, const char *reason)
{
	size_t i, len = 0, nattrs = 0;
	json_t *f;
	char *fields, *source;

	json_array_foreach(c->fields, i, f)
		len += strlen(json_string_value(f)) + 2;
	fields = xcalloc(1, len + 1);
	json_array_foreach(c->fields, i, f) {
		if (strncmp(json_string_value(f), "attrs.", 6) == 0)
			nattrs++;
		if (i > 0)
			strcat(fields, ", ");
		strcat(fields, json_string_value(f));
	}
	if (strlen(fields) > RIGHTS_FIELDS_MAX) {
		/* too many attribute names to list: count them */
		snprintf(fields, len + 1, "%s%s%zu attributes",
		    strcmp(json_string_value(json_array_get(c->fields, 0)), "name") == 0 ?
		    "name, " : "", c->email_changed ? "email, " : "", nattrs);
	}
	source = xasprintf("rectified %s; reason: %s", fields, reason);
	free(fields);
	return source;
}

/* One event for every subscription when the address changed (a
 * confirmed one on a double-opt-in list goes back to pending), else one
 * for all lists. */
static int
rights_rectify_events(PGconn *conn, const struct rights_person *p,
    const struct rights_change *c, const struct ledger_evidence *ev,
    json_t *pending, struct assent_err *err)
{
	struct ledger_event le = {
		.subscriber_id = p->id, .action = "rectify", .channel = "cli",
		.evidence = ev,
	};
	const char *params[] = { p->id, NULL };
	const char *status;
	PGresult *res;
	bool to_pending;
	int n, rc = 0;

	if (c->key_changed && db_exec(conn, &res, err, "SELECT s.list_id, s.status,"
	    " l.double_optin, l.name FROM subscriptions s JOIN lists l ON l.id = s.list_id"
	    " WHERE s.subscriber_id = $1 ORDER BY l.name FOR UPDATE OF s",
	    1, params) == -1)
		return -1;
	n = c->key_changed ? PQntuples(res) : 0;
	if (n == 0)
		rc = ledger_append(conn, &le, err);
	for (int i = 0; i < n && rc == 0; i++) {
		status = PQgetvalue(res, i, 1);
		to_pending = PQgetvalue(res, i, 2)[0] == 't' &&
		    strcmp(status, "confirmed") == 0;
		le.list_id = params[1] = PQgetvalue(res, i, 0);
		le.status_before = status;
		le.status_after = to_pending ? "pending" : status;
		rc = ledger_append(conn, &le, err);
		if (rc == 0 && to_pending) {
			json_array_append_new(pending, json_string(PQgetvalue(res, i, 3)));
			rc = db_exec(conn, NULL, err, "UPDATE subscriptions SET status ="
			    " 'pending', updated_at = now() WHERE subscriber_id = $1"
			    " AND list_id = $2", 2, params);
		}
	}
	if (c->key_changed)
		PQclear(res);
	return rc;
}

static int
rights_rectify_apply(PGconn *conn, const struct rights_person *p,
    const struct rights_rectify *r, const struct audit_actor *who,
    const struct rights_change *c, json_t *pending, struct assent_err *err)
{
	struct ledger_evidence ev = { .operator_name = who->operator_name };
	json_t *detail;
	char *source;
	int rc;

	source = rights_rectify_source(c, r->reason);
	ev.source = source;
	rc = rights_store_profile(conn, p, c, err) == -1 ||
	    rights_rectify_events(conn, p, c, &ev, pending, err) == -1 ? -1 : 0;
	free(source);
	if (rc == -1)
		return -1;
	detail = json_pack("{s:O, s:O}", "fields", c->fields, "pending", pending);
	rc = rights_audit_subscriber(conn, who, "rectify", p, detail, err);
	json_decref(detail);
	return rc;
}

int
rights_rectify(PGconn *conn, const struct rights_rectify *r,
    const struct audit_actor *who, json_t **summary_r, struct assent_err *err)
{
	struct rights_person p = { .name = NULL };
	struct rights_change c = { .fields = NULL };
	json_t *pending = json_array();
	int rc = -1;

	if (rights_check_rectify(r, err) == -1 || db_begin(conn, err) == -1)
		goto out;
	if (rights_find(conn, NULL, r->email, true, &p, err) == -1 ||
	    rights_plan_rectify(conn, &p, r, &c, err) == -1 ||
	    (json_array_size(c.fields) > 0 &&
	    rights_rectify_apply(conn, &p, r, who, &c, pending, err) == -1))
		goto out_rollback;
	if (json_array_size(c.fields) == 0)
		db_rollback(conn);
	else if (db_commit(conn, err) == -1)
		goto out_rollback;
	if (summary_r != NULL)
		*summary_r = json_pack("{s:s, s:O, s:O}", "email", c.email_changed ?
		    c.new_addr.address : p.email, "changed", c.fields, "pending", pending);
	rc = 0;
	goto out;
out_rollback:
	db_rollback(conn);
out:
	rights_person_free(&p);
	json_decref(c.fields);
	json_decref(c.attrs);
	json_decref(pending);
	return rc;
}

/* --- unsubscribe ------------------------------------------------------------------- */

/* The subscriptions to end: one list, or all. Rows: list_id, status, name. */
static int
rights_subscriptions(PGconn *conn, const struct rights_person *p, const char *list,
    PGresult **res_r, struct assent_err *err)
{
	char list_id[24];
	const char *params[] = { p->id, list_id };

	if (list == NULL)
		return db_exec(conn, res_r, err, "SELECT s.list_id, s.status, l.name"
		    " FROM subscriptions s JOIN lists l ON l.id = s.list_id"
		    " WHERE s.subscriber_id = $1 ORDER BY l.name, l.id FOR UPDATE OF s",
		    1, params);
	if (lists_lookup(conn, list, list_id, NULL, err) == -1 ||
	    db_exec(conn, res_r, err, "SELECT s.list_id, s.status, l.name"
	    " FROM subscriptions s JOIN lists l ON l.id = s.list_id"
	    " WHERE s.subscriber_id = $1 AND s.list_id = $2 FOR UPDATE OF s",
	    2, params) == -1)
		return -1;
	if (PQntuples(*res_r) == 0) {
		PQclear(*res_r);
		*res_r = NULL;
		return err_set(err, EX_DATAERR, "%s is not subscribed to %s",
		    p->addr.address, list);
	}
	return 0;
}

/* End each subscription of res with its event, with status after;
 * names go to ended (or to already, when it had ended before). */
static int
rights_end_subscriptions(PGconn *conn, const struct rights_person *p,
    PGresult *res, const char *action, const struct ledger_evidence *ev,
    json_t *ended, json_t *already, struct assent_err *err)
{
	struct ledger_event le = {
		.subscriber_id = p->id, .action = action, .channel = "cli",
		.status_after = "unsubscribed", .evidence = ev,
	};
	const char *params[] = { p->id, NULL };

	for (int i = 0; i < PQntuples(res); i++) {
		le.list_id = params[1] = PQgetvalue(res, i, 0);
		le.status_before = PQgetvalue(res, i, 1);
		if (strcmp(le.status_before, "unsubscribed") == 0 && already != NULL) {
			json_array_append_new(already, json_string(PQgetvalue(res, i, 2)));
			continue;
		}
		if (ledger_append(conn, &le, err) == -1 ||
		    db_exec(conn, NULL, err, "UPDATE subscriptions SET status ="
		    " 'unsubscribed', updated_at = now() WHERE subscriber_id = $1"
		    " AND list_id = $2 AND status <> 'unsubscribed'", 2, params) == -1)
			return -1;
		json_array_append_new(ended, json_string(PQgetvalue(res, i, 2)));
	}
	return 0;
}

/* After --all: the address on the suppression list (its own transaction). */
static int
rights_suppress_unsubscribed(PGconn *conn, const struct rights_person *p,
    const struct ledger_evidence *ev, long long *id_r, struct assent_err *err)
{
	struct suppress_new n = {
		.reason = "unsubscribe", .source = ev->source,
		.added_by = ev->operator_name, .expires = NULL,
	};
	struct suppress_target t;
	bool added;

	if (suppress_target_parse(NULL, p->addr.key, false, &t, err) == -1 ||
	    suppress_add(conn, &t, &n, id_r, &added, err) == -1)
		return err_prefix(err, "unsubscribed, but the suppression entry was "
		    "not added (run the command again)");
	return 0;
}

int
rights_unsubscribe(PGconn *conn, const char *email, const char *list,
    const struct ledger_evidence *ev, json_t **summary_r, struct assent_err *err)
{
	struct rights_person p = { .name = NULL };
	json_t *ended = json_array(), *already = json_array(), *entry = json_null();
	PGresult *res = NULL;
	long long id;
	int rc = -1;

	if (ledger_evidence_check(ev, err) == -1 || db_begin(conn, err) == -1)
		goto out;
	if (rights_find(conn, NULL, email, true, &p, err) == -1 ||
	    rights_subscriptions(conn, &p, list, &res, err) == -1 ||
	    rights_end_subscriptions(conn, &p, res, "unsubscribe", ev, ended, already,
	    err) == -1 || db_commit(conn, err) == -1) {
		db_rollback(conn);
		goto out;
	}
	if (list == NULL) {
		if (rights_suppress_unsubscribed(conn, &p, ev, &id, err) == -1)
			goto out;
		json_decref(entry);
		entry = json_integer((json_int_t)id);
	}
	if (summary_r != NULL)
		*summary_r = json_pack("{s:s, s:O, s:O, s:O}", "email", p.email,
		    "ended", ended, "already", already, "suppression", entry);
	rc = 0;
out:
	PQclear(res);
	rights_person_free(&p);
	json_decref(ended);
	json_decref(already);
	json_decref(entry);
	return rc;
}

/* --- erase ------------------------------------------------------------------------- */

/* Does haystack contain needle, ignoring ASCII case? */
static bool
rights_contains(const char *haystack, const char *needle, size_t len)
{
	if (len == 0)
		return false;
	for (const char *h = haystack; *h != '\0'; h++)
		if (strncasecmp(h, needle, len) == 0)
			return true;
	return false;
}

/* Does reason contain a word (3 characters or more) of name? */
static bool
rights_names_a_part(const char *reason, const char *name)
{
	size_t len;

	for (; *name != '\0'; name += len) {
		name += strspn(name, " ,.-'");
		len = strcspn(name, " ,.-'");
		if (len >= 3 && rights_contains(reason, name, len))
			return true;
	}
	return false;
}

/* The reason outlives the erasure in the audit table: it must not name
 * the person. No address of any spelling (so no "@" at all), no local
 * part or word of it, no word of the name; a part shorter than 3
 * characters is too common a string to refuse. */
static int
rights_check_erase_reason(const struct rights_person *p, const char *reason,
    struct assent_err *err)
{
	char local[ADDR_LOCAL_MAX + 1];

	snprintf(local, sizeof(local), "%.*s", (int)p->addr.local_len, p->addr.key);
	if (strchr(reason, '@') != NULL ||
	    (p->addr.local_len >= 3 &&
	    rights_contains(reason, p->addr.key, p->addr.local_len)) ||
	    rights_names_a_part(reason, local) ||
	    rights_names_a_part(reason, p->name))
		return err_set(err, EX_DATAERR, "--reason must not name the person "
		    "(address or name): it is kept after the erasure");
	return 0;
}

/* The erasure entry: an active hash entry with reason erasure. An
 * active hash entry for another reason gives way to it; one that is
 * already an erasure entry stays. For a gmail address it also carries
 * the keyed hash of its mailbox key, so that with
 * suppress.gmail_mailbox_key the other spellings stay blocked. */
static int
rights_erase_suppression(PGconn *conn, const struct suppress_ctx *ctx,
    const struct rights_person *p, const char *hash,
    const struct audit_actor *who, long long *id_r, struct assent_err *err)
{
	char source[64], mbox[ADDR_MAX + 1], mbox_hash[SUPPRESS_HASH_HEX + 1];
	const char *params[] = { hash, who->operator_name, source, NULL };
	PGresult *res;

	snprintf(source, sizeof(source), "erasure of subscriber %s", p->id);
	if (suppress_mailbox_key(p->addr.key, mbox)) {
		suppress_hash(ctx, mbox, mbox_hash);
		params[3] = mbox_hash;
	}
	if (db_exec(conn, NULL, err, "UPDATE suppressions SET removed_by = $2,"
	    " removed_reason = CASE WHEN expires_at <= now() THEN 'expired'"
	    " ELSE 'superseded by an erasure entry' END"
	    " WHERE kind = 'hash' AND value = $1 AND removed_at IS NULL"
	    " AND (reason <> 'erasure' OR expires_at <= now())", 2, params) == -1 ||
	    db_exec(conn, NULL, err, "INSERT INTO suppressions (kind, value, reason,"
	    " source, added_by, mailbox_key) VALUES ('hash', $1, 'erasure', $3, $2, $4)"
	    " ON CONFLICT (kind, value) WHERE removed_at IS NULL DO NOTHING",
	    4, params) == -1 ||
	    db_exec(conn, &res, err, "SELECT id FROM suppressions WHERE kind = 'hash'"
	    " AND value = $1 AND removed_at IS NULL", 1, params) == -1)
		return -1;
	*id_r = PQntuples(res) == 1 ? strtoll(PQgetvalue(res, 0, 0), NULL, 10) : 0;
	PQclear(res);
	return 0;
}

/* One integer from a query. */
static int
rights_query_long(PGconn *conn, const char *sql, int nparams,
    const char *const *params, long *n_r, struct assent_err *err)
{
	PGresult *res;

	if (db_exec(conn, &res, err, sql, nparams, params) == -1)
		return -1;
	*n_r = atol(PQgetvalue(res, 0, 0));
	PQclear(res);
	return 0;
}

/* What an erasure did, for the audit row and the caller. */
struct rights_erasure {
	char hash[SUPPRESS_HASH_HEX + 1];
	long ended, blanked, hashed;
	long long entry;
};

static int
rights_erase_ledger(PGconn *conn, const struct rights_person *p,
    const struct audit_actor *who, struct rights_erasure *e, struct assent_err *err)
{
	struct ledger_evidence ev = {
		.source = "erasure (GDPR Art. 17)", .operator_name = who->operator_name,
	};
	struct ledger_event le = {
		.subscriber_id = p->id, .action = "erase", .channel = "cli",
		.evidence = &ev,
	};
	json_t *ended = json_array();
	PGresult *res = NULL;
	int rc;

	rc = rights_subscriptions(conn, p, NULL, &res, err);
	if (rc == 0 && PQntuples(res) == 0)
		rc = ledger_append(conn, &le, err);
	else if (rc == 0)
		rc = rights_end_subscriptions(conn, p, res, "erase", &ev, ended, NULL, err);
	e->ended = (long)json_array_size(ended);
	json_decref(ended);
	PQclear(res);
	if (rc == -1)
		return -1;
	return ledger_erase(conn, p->id, &e->blanked, err);
}

/* What sending kept that names the person: relays' replies often
 * quote the address ("550 <a@b>: user unknown") in deliveries and
 * notices, and test sends keep the address they went to. Deliveries and
 * notices themselves stay (the counts), without the words; a queued
 * notice is never sent (the claim skips an erased subscriber). The same
 * for bounces: the person's, and the unattributed ones that name the
 * address, keep their class and status but lose the recipient and the
 * diagnostic (after the deliveries: a sender recording its outcomes
 * holds those rows, and its refusals are seen once it commits). */
static int
rights_erase_sending(PGconn *conn, const struct rights_person *p,
    struct assent_err *err)
{
	const char *idp[] = { p->id };
	const char *keyp[] = { p->addr.key };

	if (db_exec(conn, NULL, err, "UPDATE deliveries SET smtp_reply = NULL"
	    " WHERE subscriber_id = $1 AND smtp_reply IS NOT NULL", 1, idp) == -1 ||
	    db_exec(conn, NULL, err, "UPDATE notices SET detail = NULL"
	    " WHERE subscriber_id = $1 AND detail IS NOT NULL", 1, idp) == -1 ||
	    db_exec(conn, NULL, err, "UPDATE bounces SET recipient = NULL,"
	    " diagnostic = NULL WHERE subscriber_id = $1"
	    " AND (recipient IS NOT NULL OR diagnostic IS NOT NULL)", 1,
	    idp) == -1 ||
	    /* a report may name the person while it is attributed to
	     * someone else (a forward) or to nobody */
	    db_exec(conn, NULL, err, "UPDATE bounces SET recipient = NULL,"
	    " diagnostic = NULL WHERE recipient IS NOT NULL"
	    " AND lower(recipient) = $1", 1, keyp) == -1)
		return -1;
	return db_exec(conn, NULL, err, "UPDATE test_sends SET email = '(erased)',"
	    " detail = '' WHERE lower(email) = $1", 1, keyp);
}

static int
rights_erase_steps(PGconn *conn, const struct suppress_ctx *ctx,
    const struct rights_person *p, const struct audit_actor *who,
    struct rights_erasure *e, struct assent_err *err)
{
	const char *params[] = { p->addr.key, e->hash, who->operator_name };
	const char *idp[] = { p->id };

	suppress_hash(ctx, p->addr.key, e->hash);
	if (rights_erase_ledger(conn, p, who, e, err) == -1 ||
	    rights_erase_suppression(conn, ctx, p, e->hash, who, &e->entry, err) == -1 ||
	    rights_query_long(conn, "SELECT suppress_erase_plain($1, $2, $3)",
	    3, params, &e->hashed, err) == -1)
		return -1;
	if (rights_erase_sending(conn, p, err) == -1)
		return -1;
	return db_exec(conn, NULL, err, "UPDATE subscribers SET email = NULL,"
	    " email_key = NULL, name = '', attrs = '{}', erased_at = now()"
	    " WHERE id = $1", 1, idp);
}

static json_t *
rights_erasure_json(const struct rights_person *p, const struct rights_erasure *e)
{
	return json_pack("{s:s, s:s, s:I, s:I, s:I, s:I}", "subscriber", p->id,
	    "hash", e->hash, "subscriptions", (json_int_t)e->ended,
	    "ledger_events_blanked", (json_int_t)e->blanked,
	    "suppressions_hashed", (json_int_t)e->hashed,
	    "suppression", (json_int_t)e->entry);
}

int
rights_erase(PGconn *conn, const struct suppress_ctx *ctx, const char *email,
    const char *reason, const struct audit_actor *who, json_t **summary_r,
    struct assent_err *err)
{
	struct rights_person p = { .name = NULL };
	struct rights_erasure e = { .ended = 0 };
	json_t *detail = NULL;

	if (text_check_line(reason, RIGHTS_REASON_MAX, false, "--reason", err) == -1 ||
	    db_begin(conn, err) == -1)
		return -1;
	if (rights_find(conn, ctx, email, true, &p, err) == -1 ||
	    rights_check_erase_reason(&p, reason, err) == -1 ||
	    rights_erase_steps(conn, ctx, &p, who, &e, err) == -1)
		goto fail;
	detail = rights_erasure_json(&p, &e);
	json_object_set_new(detail, "reason", json_string(reason));
	if (rights_audit_subscriber(conn, who, "erase", &p, detail, err) == -1 ||
	    db_commit(conn, err) == -1)
		goto fail;
	json_decref(detail);
	if (summary_r != NULL)
		*summary_r = rights_erasure_json(&p, &e);
	rights_person_free(&p);
	return 0;
fail:
	db_rollback(conn);
	json_decref(detail);
	rights_person_free(&p);
	return -1;
}

int
rights_is_erased(PGconn *conn, const struct suppress_ctx *ctx,
    const char *addr_key, bool *erased_r, struct assent_err *err)
{
	char hash[SUPPRESS_HASH_HEX + 1];
	const char *params[] = { hash };
	PGresult *res;

	*erased_r = false;
	suppress_hash(ctx, addr_key, hash);
	if (db_exec(conn, &res, err, "SELECT 1 FROM suppressions WHERE kind = 'hash'"
	    " AND value = $1 AND reason = 'erasure' AND removed_at IS NULL"
	    " AND (expires_at IS NULL OR expires_at > now())", 1, params) == -1)
		return -1;
	*erased_r = PQntuples(res) > 0;
	PQclear(res);
	return 0;
}

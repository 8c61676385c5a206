/* lists: create, look up, show and remove mailing lists; see lists.h */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "assent/db.h"
#include "assent/lists.h"
#include "assent/text.h"

/* The columns lists_show() and lists_all() give, one row per list. */
#define LISTS_SELECT \
	"SELECT l.name, l.description, l.double_optin," \
	" l.form_consent_text AS form_consent," \
	" array_to_string(l.form_attrs, ',') AS form_attrs," \
	" to_char(l.created_at, 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"') AS created_at," \
	" count(*) FILTER (WHERE s.status = 'pending') AS pending," \
	" count(*) FILTER (WHERE s.status = 'confirmed') AS confirmed," \
	" count(*) FILTER (WHERE s.status = 'unsubscribed') AS unsubscribed," \
	" count(*) FILTER (WHERE s.status = 'confirmed'" \
	"  AND s.basis_expires_at <= now()) AS expired" \
	" FROM lists l LEFT JOIN subscriptions s ON s.list_id = l.id" \
	" WHERE l.removed_at IS NULL"
#define LISTS_GROUP " GROUP BY l.id"

int
lists_create(PGconn *conn, const char *name, const char *description,
    bool double_optin, struct assent_err *err)
{
	const char *params[] = { name, description, double_optin ? "t" : "f" };

	if (description == NULL)
		params[1] = description = "";
	if (text_check_list_name(name, err) == -1 ||
	    text_check_line(description, 1000, true, "description", err) == -1)
		return -1;
	if (db_exec(conn, NULL, err, "INSERT INTO lists (name, description,"
	    " double_optin) VALUES ($1, $2, $3)", 3, params) == -1) {
		if (strcmp(db_last_sqlstate(), "23505") == 0)
			return err_set(err, EX_DATAERR, "list \"%s\" exists already", name);
		return -1;
	}
	return 0;
}

/* Keys as attr.KEY names them, comma-separated. */
static int
lists_check_attrs(const char *attrs, struct assent_err *err)
{
	const char *p = attrs, *e;
	size_t n = 0, len;

	if (*attrs == '\0')
		return 0;
	for (;;) {
		e = p + strcspn(p, ",");
		len = (size_t)(e - p);
		if (len == 0 || len > 64 || strspn(p, "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
		    "abcdefghijklmnopqrstuvwxyz0123456789_-") < len)
			return err_set(err, EX_DATAERR, "form attributes: \"%.*s\" is "
			    "not a key (1-64 of A-Z a-z 0-9 _ -)", (int)(len > 64 ? 64 :
			    len), p);
		if (++n > 32)
			return err_set(err, EX_DATAERR, "form attributes: at most 32");
		if (*e == '\0')
			return 0;
		p = e + 1;
	}
}

int
lists_edit(PGconn *conn, const char *name, const struct lists_change *c,
    struct assent_err *err)
{
	const char *params[] = { name, c->description,
	    c->double_optin < 0 ? NULL : c->double_optin ? "t" : "f",
	    c->form_consent, c->form_attrs };
	PGresult *res;
	long n;

	if (text_check_list_name(name, err) == -1 ||
	    (c->description != NULL && text_check_line(c->description, 1000, true,
	    "description", err) == -1) ||
	    (c->form_attrs != NULL && lists_check_attrs(c->form_attrs, err) == -1))
		return -1;
	if (db_exec(conn, &res, err, "UPDATE lists SET"
	    " description = coalesce($2, description),"
	    " double_optin = coalesce($3::boolean, double_optin),"
	    " form_consent_text = CASE WHEN $4::text IS NULL THEN form_consent_text"
	    "   ELSE nullif($4, '') END,"
	    " form_attrs = CASE WHEN $5::text IS NULL THEN form_attrs"
	    "   ELSE coalesce(string_to_array(nullif($5, ''), ','), '{}') END"
	    " WHERE lower(name) = lower($1) AND removed_at IS NULL", 5, params) == -1) {
		if (strcmp(db_last_sqlstate(), "23503") == 0)
			return err_set(err, EX_DATAERR, "unknown consent text \"%.64s\" "
			    "(see \"assent consent-text ls\")", c->form_consent);
		return -1;
	}
	n = strtol(PQcmdTuples(res), NULL, 10);
	PQclear(res);
	if (n == 0)
		return err_set(err, EX_DATAERR, "unknown list \"%s\" "
		    "(see \"assent list ls\")", name);
	return 0;
}

/* The live list called name, its row locked: FOR SHARE by those who add
 * to it (they may run side by side), FOR UPDATE by its removal, so that
 * a removal waits for every subscribe in flight and a subscribe waiting
 * on a removal finds the list gone. */
static int
lists_lookup_locked(PGconn *conn, const char *name, bool exclusive, char id_r[24],
    bool *double_optin_r, struct assent_err *err)
{
	const char *params[] = { name };
	PGresult *res;

	if (text_check_list_name(name, err) == -1)
		return -1;
	if (db_exec(conn, &res, err, exclusive ?
	    "SELECT id, double_optin FROM lists"
	    " WHERE lower(name) = lower($1) AND removed_at IS NULL FOR UPDATE" :
	    "SELECT id, double_optin FROM lists"
	    " WHERE lower(name) = lower($1) AND removed_at IS NULL FOR SHARE",
	    1, params) == -1)
		return -1;
	if (PQntuples(res) == 0) {
		PQclear(res);
		return err_set(err, EX_DATAERR, "unknown list \"%s\" "
		    "(see \"assent list ls\")", name);
	}
	snprintf(id_r, 24, "%s", PQgetvalue(res, 0, 0));
	if (double_optin_r != NULL)
		*double_optin_r = PQgetvalue(res, 0, 1)[0] == 't';
	PQclear(res);
	return 0;
}

int
lists_lookup(PGconn *conn, const char *name, char id_r[24],
    bool *double_optin_r, struct assent_err *err)
{
	return lists_lookup_locked(conn, name, false, id_r, double_optin_r, err);
}

int
lists_show(PGconn *conn, const char *name, json_t **list_r, struct assent_err *err)
{
	const char *params[] = { name };
	PGresult *res;
	json_t *rows;

	*list_r = NULL;
	if (text_check_list_name(name, err) == -1)
		return -1;
	if (db_exec(conn, &res, err, LISTS_SELECT
	    " AND lower(l.name) = lower($1)" LISTS_GROUP, 1, params) == -1)
		return -1;
	rows = db_rows_json(res);
	PQclear(res);
	if (json_array_size(rows) == 0) {
		json_decref(rows);
		return err_set(err, EX_DATAERR, "unknown list \"%s\" "
		    "(see \"assent list ls\")", name);
	}
	*list_r = json_incref(json_array_get(rows, 0));
	json_decref(rows);
	return 0;
}

int
lists_all(PGconn *conn, json_t **lists_r, struct assent_err *err)
{
	PGresult *res;

	*lists_r = NULL;
	if (db_exec(conn, &res, err, LISTS_SELECT LISTS_GROUP " ORDER BY l.name",
	    0, NULL) == -1)
		return -1;
	*lists_r = db_rows_json(res);
	PQclear(res);
	return 0;
}

/* End every live subscription of the list, one ledger event each. */
static int
lists_end_subscriptions(PGconn *conn, const char *list_id,
    const struct ledger_evidence *ev, long *ended_r, struct assent_err *err)
{
	const char *params[] = { list_id, ev->operator_name, ev->source };
	PGresult *res;

	if (ledger_evidence_check(ev, err) == -1)
		return -1;
	if (db_exec(conn, &res, err,
	    "WITH ended AS ("
	    "  UPDATE subscriptions s SET status = 'unsubscribed', updated_at = now()"
	    "   FROM subscriptions old"
	    "  WHERE s.list_id = $1 AND s.status <> 'unsubscribed'"
	    "    AND old.subscriber_id = s.subscriber_id AND old.list_id = s.list_id"
	    "  RETURNING s.subscriber_id, old.status AS before)"
	    " INSERT INTO ledger (subscriber_id, list_id, action, channel,"
	    "  status_before, status_after, operator, source)"
	    " SELECT subscriber_id, $1, 'unsubscribe', 'cli', before, 'unsubscribed',"
	    "  $2, $3 FROM ended", 3, params) == -1)
		return -1;
	*ended_r = atol(PQcmdTuples(res));
	PQclear(res);
	return 0;
}

static long
lists_live_count(PGconn *conn, const char *list_id, struct assent_err *err)
{
	const char *params[] = { list_id };
	PGresult *res;
	long n;

	if (db_exec(conn, &res, err, "SELECT count(*) FROM subscriptions"
	    " WHERE list_id = $1 AND status <> 'unsubscribed'", 1, params) == -1)
		return -1;
	n = atol(PQgetvalue(res, 0, 0));
	PQclear(res);
	return n;
}

int
lists_remove(PGconn *conn, const char *name, bool force,
    const struct ledger_evidence *ev, long *ended_r, struct assent_err *err)
{
	char id[24];
	const char *params[] = { id };
	long live, ended = 0;

	if (db_begin(conn, err) == -1)
		return -1;
	if (lists_lookup_locked(conn, name, true, id, NULL, err) == -1 ||
	    (live = lists_live_count(conn, id, err)) == -1)
		goto fail;
	if (live > 0 && !force) {
		err_set(err, EX_DATAERR, "list \"%s\" has %ld subscriber%s (pending or "
		    "confirmed); use --force to unsubscribe them and remove it",
		    name, live, live == 1 ? "" : "s");
		goto fail;
	}
	if (live > 0 && lists_end_subscriptions(conn, id, ev, &ended, err) == -1)
		goto fail;
	if (db_exec(conn, NULL, err, "UPDATE lists SET removed_at = now()"
	    " WHERE id = $1", 1, params) == -1 || db_commit(conn, err) == -1)
		goto fail;
	if (ended_r != NULL)
		*ended_r = ended;
	return 0;
fail:
	db_rollback(conn);
	return -1;
}

/* ledger: append consent events and read them back; see ledger.h */
#include <arpa/inet.h>
#include <string.h>

#include "assent/db.h"
#include "assent/ledger.h"
#include "assent/text.h"

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
	    ledger_check_version(ev->consent_text_version, err) == -1)
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
	};

	if (ledger_evidence_check(e, err) == -1)
		return -1;
	return db_exec(conn, NULL, err,
	    "INSERT INTO ledger (subscriber_id, list_id, action, channel,"
	    " status_before, status_after, ip, user_agent, page, operator,"
	    " source, consent_text_version)"
	    " VALUES ($1, $2, $3, $4, $5, $6, $7::inet, $8, $9, $10, $11, $12)",
	    12, params);
}

int
ledger_history(PGconn *conn, const char *subscriber_id, json_t **history_r,
    struct assent_err *err)
{
	const char *params[] = { subscriber_id };
	PGresult *res;

	*history_r = NULL;
	if (db_exec(conn, &res, err,
	    "SELECT to_char(e.at, 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"') AS at,"
	    " coalesce(l.name, '*') AS list, e.action, e.channel,"
	    " e.status_before, e.status_after, host(e.ip) AS ip, e.user_agent,"
	    " e.page, e.operator, e.source, e.consent_text_version"
	    " FROM ledger e LEFT JOIN lists l ON l.id = e.list_id"
	    " WHERE e.subscriber_id = $1 ORDER BY e.id", 1, params) == -1)
		return -1;
	*history_r = db_rows_json(res);
	PQclear(res);
	return 0;
}

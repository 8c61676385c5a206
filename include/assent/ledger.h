/*
 * ledger: the consent ledger, where every change to a subscription is
 * appended as one event in the same transaction as the change.
 *
 * The database refuses UPDATE, DELETE and TRUNCATE on the ledger, and
 * refuses at commit a subscription change that has no event (see
 * sql/0001_foundation.sql). This module appends events and reads a
 * subscriber's history; it never edits one.
 *
 * Memory: all pointers in the structs below are borrowed for the call.
 * ledger_history() returns a new JSON array the caller json_decref()s.
 */
#ifndef ASSENT_LEDGER_H
#define ASSENT_LEDGER_H

#include <jansson.h>
#include <libpq-fe.h>
#include "assent/err.h"

/* Who and what stood behind a change. Any field may be NULL except
 * source. */
struct ledger_evidence {
	const char *source;               /* free text: "signup desk", file, ... */
	const char *operator_name;        /* Unix user, for the CLI */
	const char *ip;                   /* IPv4 or IPv6 literal */
	const char *user_agent;
	const char *page;                 /* form or page id, Referer */
	const char *consent_text_version;
};

struct ledger_event {
	const char *subscriber_id;        /* decimal, as from the database */
	const char *list_id;              /* NULL: every list */
	const char *action;               /* subscribe, confirm, unsubscribe, ... */
	const char *channel;              /* cli, import, web, one-click, ... */
	const char *status_before;        /* NULL when there was no subscription */
	const char *status_after;
	const struct ledger_evidence *evidence;
};

/* Refuse evidence that can't be stored: an empty or multi-line source,
 * an IP that isn't an address, control characters in the user agent,
 * page or operator, a consent text version that isn't 1-64 visible
 * ASCII characters. EX_DATAERR names the field. */
int ledger_evidence_check(const struct ledger_evidence *ev, struct assent_err *err);

/* Append ev inside the caller's open transaction. */
int ledger_append(PGconn *conn, const struct ledger_event *ev, struct assent_err *err);

/* Every event of one subscriber, oldest first, as objects with at,
 * list, action, channel, status_before, status_after, ip, user_agent,
 * page, operator, source, consent_text_version. */
int ledger_history(PGconn *conn, const char *subscriber_id, json_t **history_r,
    struct assent_err *err);

#endif

/*
 * optout: what a recipient does through a signed link: leave a list or
 * everything (unsubscribe tokens), confirm a subscription (confirm
 * tokens). The web endpoint calls it for /u/ and /c/, `assent inbound`
 * for a mailto unsubscribe. The token has been verified by the caller
 * (token_verify()): these functions trust its ids.
 *
 * Every change is one transaction, committed before the function
 * returns (so before the page that says it is done): the ledger event
 * (channel one-click, web, mailto or confirm-link; the IP and user
 * agent), the subscription's new status, for "everything" a global
 * suppression entry (reason unsubscribe), and the campaign's delivery
 * marked unsubscribed_at when the token names a campaign. Doing it
 * again changes nothing and adds nothing (r->changed false): the caller
 * answers the same.
 *
 * A token whose subscriber was erased, or whose list was removed, is
 * answered as if done (r->known false): a link must not tell anyone
 * what happened to the person.
 *
 * Memory: everything is borrowed for the call; struct optout_result is
 * the caller's.
 */
#ifndef ASSENT_OPTOUT_H
#define ASSENT_OPTOUT_H

#include <stdbool.h>
#include <libpq-fe.h>

#include "assent/err.h"
#include "assent/token.h"

#define OPTOUT_UA_MAX 512       /* bytes of user agent kept (the ledger's limit) */

struct optout_evidence {
	const char *channel;    /* "one-click", "web", "mailto", "confirm-link" */
	const char *ip;         /* IPv4 or IPv6 literal, or NULL */
	const char *user_agent; /* as sent, or NULL: control characters become
	                         * spaces and it is cut to OPTOUT_UA_MAX */
};

struct optout_result {
	char list_name[65];     /* the token's list; "" for all lists */
	char status[16];        /* describe: the subscription's status, "" for none */
	bool known;             /* false: subscriber erased or list removed */
	bool changed;           /* false: it was so already */
};

/* What the page for t shows, changing nothing: the list's name (never
 * the address) and the subscription's status. */
int optout_describe(PGconn *conn, const struct token *t,
    struct optout_result *r, struct assent_err *err);

/* Leave t's list, or every list when all (always when t->all_lists).
 * EX_TEMPFAIL/EX_UNAVAILABLE when the database fails (nothing done).
 * It is a transaction of its own (for one list, a single statement,
 * SQL optout_unsubscribe_apply() of sql/0007_speed.sql, prepared once
 * per connection): call it outside one. */
int optout_unsubscribe(PGconn *conn, const struct token *t, bool all,
    const struct optout_evidence *ev, struct optout_result *r,
    struct assent_err *err);

/* Confirm t's pending subscription (t is a confirm token). One that is
 * confirmed already is left (changed false); one that was ended stays
 * ended (r->status "unsubscribed", changed false). */
int optout_confirm(PGconn *conn, const struct token *t,
    const struct optout_evidence *ev, struct optout_result *r,
    struct assent_err *err);

/* The mailto unsubscribe (inbound.h): verify token (compact,
 * unsubscribe) at now, find its delivery and leave the delivery's list,
 * channel mailto. EX_NOUSER for a token that does not verify or names no
 * delivery (an MTA answers "no such user"), EX_TEMPFAIL or
 * EX_UNAVAILABLE when the database fails (the MTA tries again). */
int optout_mailto(PGconn *conn, struct token_signer *signer,
    const char *token, int64_t now, struct optout_result *r,
    struct assent_err *err);

#endif

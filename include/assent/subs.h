/*
 * subs: subscribers and their subscriptions. Every change goes through
 * ledger_append() in the same transaction.
 *
 * Memory: string arguments are borrowed. Functions returning json_t
 * give the caller a new reference to json_decref().
 */
#ifndef ASSENT_SUBS_H
#define ASSENT_SUBS_H

#include <stdbool.h>
#include <jansson.h>
#include <libpq-fe.h>
#include "assent/err.h"
#include "assent/ledger.h"
#include "assent/suppress.h"

struct subs_request {
	const char *email;                /* as typed; normalised by addr */
	const char *list;                 /* list name */
	const char *name;                 /* may be NULL */
	const char *channel;              /* "cli", "web", ... */
	bool resubscribe;                 /* allow a new subscription after an unsubscribe */
	/* the consent basis of a new subscription: "express" (NULL means
	 * express) lasts until withdrawn; "implied" needs basis_expires_at,
	 * a time in the future (timestamptz text) when it lapses */
	const char *basis;
	const char *basis_expires_at;
	/* the gate's pepper, to find an address that was erased (NULL when
	 * the keys file is not at hand: then a subscribe is refused only
	 * while the suppression list holds erased addresses at all) */
	const struct suppress_ctx *suppress;
	const struct ledger_evidence *evidence;
};

/* One change of a subscription in the caller's transaction: its ledger
 * event (ledger_append()), then the subscription's new status (created
 * when there was none). basis NULL keeps the subscription's basis (a
 * new one is express). Ids are decimal text. */
struct subs_write {
	const char *subscriber_id;
	const char *list_id;
	const char *action;
	const char *channel;
	const char *status_before;        /* NULL: no subscription yet */
	const char *status_after;
	const char *basis;
	const char *basis_expires_at;
	const struct ledger_evidence *evidence;
};
int subs_write(PGconn *conn, const struct subs_write *w, struct assent_err *err);

/* Subscribe: "confirmed" on a single-opt-in list, "pending" on a
 * double-opt-in list, with its confirmation request queued (notice.h)
 * unless the address had NOTICE_PER_DAY of them in the last 24 hours:
 * *notice_queued_r (may be NULL) tells which; the status is written to status_r (char[16]).
 * Refused with EX_DATAERR: an invalid address, an unknown list, an
 * existing pending or confirmed subscription, a subscription that was
 * ended (unsubscribed) unless resubscribe is set, an unknown consent
 * text version, a basis that is not express or implied with an expiry
 * in the future, and an address that was erased (rights_erase()) while
 * its erasure entry stands: it would never be mailed. */
int subs_add(PGconn *conn, const struct subs_request *req, char status_r[16],
    bool *notice_queued_r, struct assent_err *err);

/* Record a confirmation of a pending subscription. *changed_r is false
 * when it was confirmed already (nothing is written then). Refused for
 * an unknown address or list, no subscription, or an unsubscribed one. */
int subs_confirm(PGconn *conn, const struct subs_request *req, bool *changed_r,
    struct assent_err *err);

/* The subscriber's profile: email, name, attrs, created_at,
 * subscriptions (list, status, since) and history (the ledger events,
 * see ledger_history()). EX_DATAERR "no subscriber" when unknown. */
int subs_show(PGconn *conn, const char *email, json_t **profile_r,
    struct assent_err *err);

#endif

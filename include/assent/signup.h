/*
 * signup: the public subscribe form (POST /s/LIST) and a fresh
 * confirmation request for an expired confirmation link.
 *
 * A list takes sign-ups from the form once an operator has set the
 * consent wording its form shows (assent list edit NAME --form-consent
 * VERSION); the form must send that exact version, so a page showing an
 * old wording is refused ("out of date") instead of recording consent to
 * words nobody saw. The attributes a form may set are the list's
 * form_attrs (attr.KEY fields); any other attr.KEY is refused.
 *
 * What a sign-up does, in one transaction:
 *  - a new address, or one whose subscription to the list had ended:
 *    the subscription becomes pending (double opt-in: a confirmation
 *    request is queued as a notice, see notice.h) or confirmed (single
 *    opt-in), with its ledger event: channel web, action subscribe or
 *    resubscribe, the IP, user agent, page (form id or Referer) and
 *    consent version; name and attributes are stored only for a
 *    subscriber this sign-up creates (nobody rewrites another person's
 *    data through a public form);
 *  - a pending subscription: another confirmation request is queued
 *    (unless one for the list still waits in the queue);
 *  - a confirmed subscription whose implied consent has lapsed: as an
 *    ended one (resubscribe, now on express consent);
 *  - a confirmed subscription, a suppressed or erased address: nothing
 *    at all (for an erased or suppressed address the transaction is
 *    rolled back: not even the address is stored).
 * The form's own problems (address, name, attributes, evidence) are
 * checked before anything is looked up, so that a refusal never depends
 * on the address.
 * Confirmation requests are limited per address (NOTICE_PER_DAY (notice.h)
 * in 24 hours, over all lists): past it nothing is queued. The caller
 * must answer every outcome the same way: the result says what happened
 * for counting and logs only, never for the page.
 *
 * Memory: everything is borrowed for the call; results are the
 * caller's.
 */
#ifndef ASSENT_SIGNUP_H
#define ASSENT_SIGNUP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <libpq-fe.h>

#include "assent/err.h"
#include "assent/suppress.h"

#define SIGNUP_ATTRS_MAX        32
#define SIGNUP_VALUE_MAX        200     /* bytes of a name or attribute value */
#define SIGNUP_PAGE_MAX         1000    /* bytes of the page kept (the ledger's limit) */

struct signup_form {
	const char *list;               /* the list's name, from the URL */
	const char *email;
	const char *name;               /* NULL or "" for none */
	const char *consent_text;       /* the version the form showed */
	const char *attr_keys[SIGNUP_ATTRS_MAX];        /* without "attr." */
	const char *attr_values[SIGNUP_ATTRS_MAX];
	size_t nattrs;
	/* evidence */
	const char *ip;                 /* IPv4 or IPv6 literal */
	const char *user_agent;         /* cleaned and cut like optout.h says */
	const char *page;               /* the form's id, or the Referer; cut
	                                 * to SIGNUP_PAGE_MAX */
};

enum signup_outcome {
	SIGNUP_PENDING,         /* pending, confirmation request queued */
	SIGNUP_CONFIRMED,       /* single opt-in: subscribed */
	SIGNUP_RESENT,          /* was pending: another request queued */
	SIGNUP_QUIET,           /* nothing done (see above) */
};

struct signup_result {
	enum signup_outcome outcome;
	bool double_optin;      /* the list's mode: what the page says */
	char list_name[65];     /* the list's name as stored */
};

/* What a list's form needs, for a page that shows the form. */
struct signup_list {
	char name[65];
	char description[1001];
	bool double_optin;
	char consent_version[65];
	char *consent_body;     /* the wording; the caller frees it */
	char attrs[SIGNUP_ATTRS_MAX][65];
	size_t nattrs;
};

/* Record form (see above) and commit. Refused, with nothing stored:
 *	EX_NOUSER    no live list of that name, or it takes no sign-ups from
 *	             the form ("no such list")
 *	EX_DATAERR   the form's own problem, in words fit for the page: an
 *	             address that is not valid (addr_parse()'s reason), a
 *	             consent version that is not the list's current one, an
 *	             attribute the list does not take, a name or value too
 *	             long or with control characters
 *	EX_TEMPFAIL, EX_UNAVAILABLE  the database failed
 * gate (may be NULL only when no erased address is on file: see
 * subs.h) finds suppressed and erased addresses. */
int signup_submit(PGconn *conn, const struct suppress_ctx *gate,
    const struct signup_form *form, struct signup_result *r,
    struct assent_err *err);

/* An expired confirmation link was used: queue a fresh request for the
 * subscription it names, if it is still pending and the address's limit
 * allows (r->outcome SIGNUP_RESENT, else SIGNUP_QUIET). Commits. */
int signup_confirm_again(PGconn *conn, const struct suppress_ctx *gate,
    uint64_t subscriber_id, uint64_t list_id, struct signup_result *r,
    struct assent_err *err);

/* The form's needs for list name. EX_NOUSER as signup_submit(). */
int signup_list_info(PGconn *conn, const char *name, struct signup_list *info,
    struct assent_err *err);
void signup_list_info_free(struct signup_list *info);

#endif

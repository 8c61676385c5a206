/*
 * intake: acting on what comes back (bounce.h's reports) and on the
 * relay's synchronous refusals, in the database.
 *
 * Every bounce and complaint is stored (table bounces): when it came,
 * where from (dsn, arf, text pattern, smtp: a refusal during the SMTP
 * session), the delivery or notice and subscriber it was attributed to
 * (NULL when it could not be), the recipient address as the report gave
 * it, class, status code, diagnostic, the raw message's size, and what
 * was done.
 *
 * Attribution, never on a report's word alone:
 *  - a DSN or text bounce: only through its VERP token (b- delivery, n-
 *    notice), verified with token_compact_verify() and at our
 *    sender.bounce_domain. A report whose token does not verify, or
 *    that has none, is stored unattributed and changes nothing else.
 *  - an ARF complaint: the VERP token as above, else our signed
 *    Message-ID (<cCAMPAIGN.TOKEN@DOMAIN>, compose.h): its token
 *    verifies as a bounce token (token_compact_verify()), names a
 *    delivery of campaign CAMPAIGN, DOMAIN is that campaign's From
 *    domain, and the token's issue time fits the delivery (below). The
 *    old unsigned form <cC.dD.ISSUED@...>, a test send's and a notice's
 *    Message-ID never attribute; a Message-ID never attributes a DSN.
 *
 * Whose failure a DSN reports: the token names the message, the
 * recipient blocks name addresses, and the two can differ (a forward,
 * or one report for several recipients). A block is acted on when its
 * Final-Recipient or Original-Recipient is the attributed person's
 * address (addr_parse() keys compared); the others are stored
 * unattributed (action none). When no block matches and the report has
 * exactly one failure (class other than none), that one is acted on,
 * a hard bounce downgraded to soft (a dead forward still reaches the
 * soft-bounce limit); with several, none is. ARF complaints are
 * attributed whatever recipient they name (providers redact it).
 *
 * Old reports: a copy of a message carries its token for ever. A
 * report whose token was issued, or whose message was sent, more than
 * bounce.token_max_age seconds ago (INTAKE_TOKEN_MAX_AGE_DEFAULT when
 * the configuration says 0) is stored attributed with action none, and
 * nothing is done (nor counted toward the soft-bounce limit).
 *
 * What each class does to the attributed person, in one transaction
 * with the stored bounce:
 *  - hard: a hard-bounce suppression entry (suppress_add_in()),
 *    a ledger event (action bounce, channel bounce, every list, the
 *    status code and diagnostic in its source), the delivery's
 *    bounced_at;
 *  - soft: counted; when the person has bounce.soft_limit soft bounces
 *    over at least bounce.soft_span, a soft-bounce-limit suppression
 *    entry that expires after bounce.soft_suppress_for;
 *  - policy: stored and counted per campaign (the sender is at fault:
 *    the recipient is never suppressed for it);
 *  - complaint: every subscription of the person ended (ledger events,
 *    action complaint, channel complaint), a complaint suppression
 *    entry, the delivery's complained_at.
 * Doing the same report twice stores it twice but suppresses and
 * records nothing more (entries and events are added only when they
 * are not there already): one hard-bounce ledger event per message
 * (delivery or notice) that bounced hard, soft bounces counted once per
 * message, and counting starts again after a soft-bounce-limit entry.
 *
 * A b- or n- token names a message by id only, and the two id spaces
 * overlap: so a verified token attributes only when the message was
 * handed to the relay (state sent, sending or unknown) and the token's
 * issue time fits it (within INTAKE_MSGID_SLACK of its sent_at, or not
 * before its creation when it has none).
 *
 * An erased person (or one erased meanwhile: the subscriber row is
 * locked first) gets nothing: the report is stored, attributed, with
 * neither the recipient address nor the diagnostic.
 *
 * Synchronous refusals (intake_refusals_in(), for the sender): the
 * relay's reply at RCPT is classified with bounce_classify_reply() and
 * has the same effects as a DSN with that class (source smtp). A refusal
 * after the data is about the message: stored, class policy for a 5xx
 * (soft stays soft for a 4xx, not counted toward the limit), and it
 * never suppresses the recipient.
 *
 * Memory: everything is borrowed for the call; results are the
 * caller's.
 */
#ifndef ASSENT_INTAKE_H
#define ASSENT_INTAKE_H

#include <stdbool.h>
#include <stddef.h>
#include <jansson.h>
#include <libpq-fe.h>

#include "assent/bounce.h"
#include "assent/conf.h"
#include "assent/err.h"
#include "assent/suppress.h"
#include "assent/token.h"

#define INTAKE_MSGID_SLACK 300  /* seconds */
#define INTAKE_TOKEN_MAX_AGE_DEFAULT (30L * 86400)      /* seconds */

struct intake_ctx {
	const struct assent_conf *conf; /* sender.bounce_domain, bounce.* */
	struct token_signer *signer;
	const char *added_by;           /* "assent inbound", "assentd" */
};

struct intake_result {
	bool attributed;                /* a row stored attributed to a
	                                 * delivery or a notice */
	char attributed_by[24];         /* "verp", "message-id" or "" */
	long long delivery_id;          /* 0 when none */
	long long notice_id;            /* 0 when none */
	long stored;                    /* bounces rows written */
	long hard, soft, policy, complaints;
	long suppressed;                /* entries added */
	long unsubscribed;              /* subscriptions ended */
	long stale;                     /* attributed, too old: nothing done */
};

/* Store and act on r (kind dsn or arf; other kinds are the caller's),
 * raw_size the message's size in bytes. Commits. EX_TEMPFAIL or
 * EX_UNAVAILABLE when the database fails (nothing done: the caller
 * keeps the message for a retry). */
int intake_report(PGconn *conn, const struct intake_ctx *c,
    const struct bounce_report *r, size_t raw_size, struct intake_result *res,
    struct assent_err *err);

#define INTAKE_REPLY_MAX 320            /* bytes of a relay's reply kept */

/* The relay's refusal of one campaign delivery, as the sender saw it. */
struct intake_refusal {
	long long delivery_id;          /* a campaign's message, or 0 */
	long long notice_id;            /* or a confirmation request's */
	bool at_rcpt;                   /* false: after DATA (the message) */
	int code;                       /* 4xx or 5xx */
	char enhanced[16];              /* "X.Y.Z" or "" */
	char reply[INTAKE_REPLY_MAX + 1];       /* one line of UTF-8 */
};

/* The class of a refusal (see above); *why_r (may be NULL) gets the
 * rule, a static string. */
enum bounce_class intake_refusal_class(const struct intake_refusal *f,
    const char **why_r);

/* Store and act on the n refusals inside the caller's READ COMMITTED
 * transaction (it neither begins nor commits), c->signer unused (may
 * be NULL). Lock the refused deliveries' subscribers (intake_lock_
 * subscribers()) before the deliveries themselves to keep the lock order
 * every other path uses (subscriber, then delivery). res (may be NULL)
 * is added to. */
int intake_refusals_in(PGconn *conn, const struct intake_ctx *c,
    const struct intake_refusal *f, size_t n, struct intake_result *res,
    struct assent_err *err);

/* Lock (FOR UPDATE, in id order) the subscribers of the n refusals'
 * deliveries, in the caller's transaction. */
int intake_lock_subscribers(PGconn *conn, const struct intake_refusal *f,
    size_t n, struct assent_err *err);

/* A page of stored bounces, newest first, for "assent bounces ls":
 * id, received_at, source, class, status, smtp_code, campaign (name or
 * null), recipient, action, diagnostic, attributed_by. campaign and
 * class (may be NULL) filter; an unknown campaign or class is
 * EX_DATAERR. */
struct intake_query {
	const char *campaign;
	const char *class;
	long limit;                     /* 1 .. 100000 */
};
int intake_list(PGconn *conn, const struct intake_query *q, json_t **rows_r,
    struct assent_err *err);

#endif

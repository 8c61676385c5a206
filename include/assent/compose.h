/*
 * compose: one campaign's message for one recipient, complete: merge
 * fields (render.h), signed links and envelope sender (token.h), MIME
 * (mime.h). Used by the sender workers, "campaign preview" and
 * "campaign test", so that a preview is exactly what is sent.
 *
 * For each recipient:
 *	unsubscribe_url  BASE/u/TOKEN (unsubscribe token: subscriber, the
 *	                 delivery's list, the campaign)
 *	manage_url       BASE/m/TOKEN (manage token: subscriber, campaign)
 *	List-Unsubscribe <BASE/u/TOKEN>, <mailto:u-CTOKEN@BOUNCE_DOMAIN>
 *	                 (CTOKEN: compact unsubscribe token of the delivery)
 *	envelope sender  b-CTOKEN@BOUNCE_DOMAIN (compact bounce token of the
 *	                 delivery): the VERP address bounces come back to
 *	List-Id          "LIST" <LIST.FROM_DOMAIN> (the list lower-cased)
 *	Message-ID       <cCAMPAIGN.BTOKEN@FROM_DOMAIN> (BTOKEN: the same
 *	                 compact bounce token as the envelope sender's: a
 *	                 complaint that lost the envelope is traced through
 *	                 it, and nobody can make one up)
 * BASE is http.base_url, BOUNCE_DOMAIN sender.bounce_domain. A
 * recipient with no delivery (a test send to someone who is not a
 * subscriber: delivery_id and subscriber_id 0) gets BASE/u/test and
 * BASE/m/test, which change nothing, a mailto and envelope sender of
 * "b-test@BOUNCE_DOMAIN", and a Message-ID with "t" and a random part.
 *
 * Memory: compose_new() compiles the campaign's templates and copies
 * what it needs from the campaign and the configuration (the campaign
 * may be freed afterwards); it borrows the signer, which must outlive
 * it. One thread at a time may use a struct compose (the signer is not
 * thread-safe): one per worker. Output goes to the caller's buffers.
 */
#ifndef ASSENT_COMPOSE_H
#define ASSENT_COMPOSE_H

#include <stddef.h>
#include <stdint.h>
#include <time.h>
#include <jansson.h>

#include "assent/buf.h"
#include "assent/campaign.h"
#include "assent/conf.h"
#include "assent/err.h"
#include "assent/token.h"

#define COMPOSE_ENVELOPE_MAX 256

struct compose;

struct compose_recipient {
	uint64_t delivery_id;           /* 0 for none (test to a non-subscriber) */
	uint64_t subscriber_id;         /* 0 for none */
	uint64_t list_id;               /* one of the campaign's lists */
	const char *email;              /* normalised address */
	const char *name;               /* may be NULL or "" */
	const json_t *attrs;            /* object or NULL */
};

/* Compile c's templates (EX_DATAERR naming the part, as campaign.h
 * says) and prepare the links. */
int compose_new(const struct campaign *c, const struct assent_conf *conf,
    struct token_signer *signer, struct compose **compose_r,
    struct assent_err *err);
void compose_free(struct compose *cp);

/* The campaign's id. */
long long compose_campaign_id(const struct compose *cp);

/* Build r's message at now into out (replacing its content) and its
 * envelope sender into envelope (COMPOSE_ENVELOPE_MAX bytes).
 * EX_DATAERR when a value cannot go into the message (a subject merge
 * value with a line break, an address mime refuses), naming it. */
int compose_message(struct compose *cp, const struct compose_recipient *r,
    time_t now, struct buf *out, char envelope[COMPOSE_ENVELOPE_MAX],
    struct assent_err *err);

/* r's envelope sender at now alone (the same compose_message() gives
 * for the same now): MAIL FROM is sent before the message is built. */
int compose_envelope(struct compose *cp, const struct compose_recipient *r,
    time_t now, char envelope[COMPOSE_ENVELOPE_MAX], struct assent_err *err);

/* Render only what can fail (the subject, the addresses), cheaply: the
 * sender calls it for each message of a batch before it claims them. */
int compose_check(struct compose *cp, const struct compose_recipient *r,
    struct assent_err *err);

#endif

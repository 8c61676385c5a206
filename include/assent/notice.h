/*
 * notice: transactional messages to one subscriber, today the
 * confirmation request of a pending (double-opt-in) subscription.
 *
 * A notice is queued (table notices, sql/0008_signup.sql) in the
 * transaction that makes the subscription pending, whoever does it (the
 * subscribe form, "assent sub add", a fresh request from an expired
 * link), and sent by the sender workers on the path every campaign
 * message takes: claimed FOR UPDATE SKIP LOCKED, passed through
 * suppress_gate() in that transaction, marked 'sending' under the
 * worker's session and committed, then handed to the relay and its
 * outcome recorded. A notice whose subscription is no longer pending
 * (confirmed, ended), whose subscriber was erased or whose list was
 * removed is skipped; a suppressed address gets nothing.
 *
 * The message: From sender.organisation <signup.from, or sender.from>,
 * To the subscriber, Subject signup.confirm_subject, a text body from
 * signup.confirm_text (or the built-in one) and optionally HTML from
 * signup.confirm_html, with {{ confirm_url }} = BASE/c/TOKEN (a confirm
 * token for the subscriber and list, valid tokens.confirm_ttl); the
 * envelope sender is n-CTOKEN@BOUNCE_DOMAIN (a compact token of purpose
 * notice with the notice's id: its MAC tells it from a delivery's "b-"
 * bounce token, whose ids overlap);
 * Message-ID <nID.ISSUED@FROM_DOMAIN>. It has no List-Id and no
 * List-Unsubscribe: it is not list mail, and the person is not
 * subscribed yet.
 *
 * Outcomes: sent; a 4xx is retried with the campaigns' backoff
 * (sending.retry_base, sending.max_attempts), then failed; a 5xx failed
 * (a mailbox-level 5.1.x also a hard-bounce suppression); the relay
 * unreachable leaves the batch queued untried. If the outcome cannot be
 * written (the database went away after the relay took them), the
 * notices stay 'sending' and sender_reap_orphans() makes them
 * 'unknown': a
 * confirmation request is never sent twice on its own.
 *
 * Memory: notice_sender_new() borrows conf, gate and signer, which must
 * outlive it, and owns its compiled templates; the PGconn and transport
 * are borrowed for each call. One thread at a time per notice_sender.
 */
#ifndef ASSENT_NOTICE_H
#define ASSENT_NOTICE_H

#include <stdbool.h>
#include <stddef.h>
#include <time.h>
#include <jansson.h>
#include <libpq-fe.h>

#include "assent/buf.h"
#include "assent/conf.h"
#include "assent/err.h"
#include "assent/suppress.h"
#include "assent/token.h"
#include "assent/transport.h"

#define NOTICE_PER_DAY  3       /* confirmation requests per address in 24 hours */
#define NOTICE_BATCH    20

/* Queue the confirmation request of subscriber_id's pending subscription
 * to list_id (decimal ids) in the caller's transaction, which should
 * hold the subscriber's row locked (it counts the person's requests).
 * *queued_r is false when NOTICE_PER_DAY requests went to the person in
 * the last 24 hours (nothing is queued then); true, with nothing added,
 * when a request for the same list still waits in the queue. The
 * workers are woken at commit. */
int notice_queue_confirm(PGconn *conn, const char *subscriber_id,
    const char *list_id, bool *queued_r, struct assent_err *err);

struct notice_sender;

/* Compile the signup.* templates of conf and nothing else: EX_CONFIG
 * naming the setting, the file and the template's line and column, for
 * a check at start-up and by "assent config check". */
int notice_check_templates(const struct assent_conf *conf,
    struct assent_err *err);

struct notice_stats {
	long sent, suppressed, skipped, failed, retried, unknown, deferred;
};

/* Compile the templates (EX_CONFIG naming the file or setting, with the
 * template's line and column) and check that a message can be built
 * (conf_check_sending(); signup.from or sender.from set). session is
 * the worker's (sender.h). */
int notice_sender_new(const struct assent_conf *conf,
    const struct suppress_ctx *gate, struct token_signer *signer,
    int session, struct notice_sender **ns_r, struct assent_err *err);
void notice_sender_free(struct notice_sender *ns);

/* One turn: claim up to NOTICE_BATCH due notices and send them over
 * one session of t (see above). *worked_r false when none was due.
 * -1 with EX_UNAVAILABLE when the relay could not be reached (nothing
 * lost), EX_TEMPFAIL when the database failed. */
int notice_run_batch(struct notice_sender *ns, PGconn *conn,
    struct transport *t, bool *worked_r, struct notice_stats *st,
    struct assent_err *err);

/* The confirmation request for one recipient, exactly as sent (for
 * tests and previews): notice_id, subscriber and list ids, the
 * address, name, list name and attributes. */
struct notice_recipient {
	uint64_t notice_id;
	uint64_t subscriber_id;
	uint64_t list_id;
	const char *email;
	const char *name;
	const char *list_name;
	const json_t *attrs;            /* the subscriber's, or NULL */
};
int notice_compose(struct notice_sender *ns, const struct notice_recipient *r,
    time_t now, struct buf *out, char *envelope, size_t envelope_size,
    struct assent_err *err);

#endif

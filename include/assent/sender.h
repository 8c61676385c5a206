/*
 * sender: the path every campaign message takes to the relay:
 * claim -> gate -> render -> transport -> record.
 *
 * sender_run_batch() does one turn for one worker:
 *  1. In one transaction: claim up to batch queued deliveries of a
 *     sending campaign (FOR UPDATE SKIP LOCKED, skipping domains the
 *     throttle holds back), pass them through suppress_gate(), and
 *     write each one's fate: suppressed (the entry that matched, or no
 *     longer subscribed to any of the campaign's lists, or erased),
 *     failed (a message that cannot be rendered), deferred (throttled:
 *     stays queued), or sending (with this worker's session). Commit.
 *     From here on a crash leaves the batch 'sending', which the
 *     scheduler turns into 'unknown': never resent without an operator.
 *  2. One SMTP session for the messages marked sending, each rendered
 *     when libesmtp reaches its DATA.
 *  3. One statement records every outcome: sent; 4xx back to queued
 *     after an exponential backoff (sending.retry_base * 2^attempts, at
 *     most an hour) until sending.max_attempts, then failed; 5xx failed;
 *     and in the same transaction every refusal goes to intake
 *     (intake.h: stored, classified by bounce_classify_reply() as a DSN
 *     would be; a hard one at RCPT suppresses with a ledger event, a
 *     refusal after the data never suppresses the recipient); a relay that could not be reached puts them
 *     all back to queued untried (attempts unchanged) and reports
 *     EX_UNAVAILABLE so the worker backs off; an uncertain outcome (the
 *     connection broke after DATA) becomes unknown.
 *
 * The session is the worker's advisory lock (ASSENT_SESSION_NS,
 * session), taken by sender_new() on its connection and held as long as
 * the connection lives: a delivery 'sending' under a session whose lock
 * is gone belongs to a dead worker (sender_reap_orphans()).
 *
 * Memory: sender_new() borrows conf, throttle and signer (they must
 * outlive the sender) and owns its transport and caches; the PGconn is
 * borrowed too and must stay the same for the sender's life.
 */
#ifndef ASSENT_SENDER_H
#define ASSENT_SENDER_H

#include <stdbool.h>
#include <stddef.h>
#include <libpq-fe.h>

#include "assent/conf.h"
#include "assent/err.h"
#include "assent/notice.h"
#include "assent/suppress.h"
#include "assent/throttle.h"
#include "assent/token.h"

/* The first key of the advisory locks that mark live sender sessions. */
#define ASSENT_SESSION_NS 0x41535344    /* "ASSD" */

struct sender;

struct sender_stats {
	long claimed, sent, suppressed, failed, deferred, retried, unknown;
	/* outcomes that matched no delivery any more (an operator requeued
	 * them meanwhile with resend-unknown): worth a warning */
	long unwritten;
	/* a campaign that cannot be sent (it cannot be built: the reason),
	 * skipped so that the others go on; 0 when none this turn */
	long long broken_campaign;
	char broken_reason[ASSENT_ERR_MSG_MAX];
	/* confirmation requests, sent first in each turn (notice.h) */
	struct notice_stats notices;
};

/* A session's outcomes that could not be written (the database went
 * away after the relay took the messages). */
struct sender_outcomes;

/* Take this worker's session lock on conn and prepare. EX_TEMPFAIL
 * when the database fails. */
int sender_new(PGconn *conn, const struct assent_conf *conf,
    const struct suppress_ctx *gate, struct token_signer *signer,
    struct throttle *throttle, struct sender **sender_r,
    struct assent_err *err);
void sender_free(struct sender *s);

/* This sender's session id (the advisory lock's second key). */
int sender_session(const struct sender *s);

/* While *stop is non-zero the sender sends nothing more: the rest of a
 * session in flight is abandoned before its data (not tried, queued
 * again) and pacing stops waiting. For a prompt SIGTERM. */
void sender_set_stop(struct sender *s, const volatile int *stop);

/* After sender_run_batch() failed on the database, the outcomes of the
 * session it had run (NULL when none): the caller keeps them while it
 * reconnects (the sender may be freed) and writes them, before any new
 * claim, with sender_outcomes_write() under the session that sent them:
 * deliveries the scheduler made 'unknown' meanwhile become sent or
 * failed as they really were. */
struct sender_outcomes *sender_take_unrecorded(struct sender *s);
int sender_outcomes_write(PGconn *conn, struct sender_outcomes *o,
    long *written_r, struct assent_err *err);
size_t sender_outcomes_count(const struct sender_outcomes *o);
void sender_outcomes_free(struct sender_outcomes *o);

/* One turn (see above). *worked_r is false when nothing was claimable
 * (the worker may sleep). A campaign that cannot be built is skipped
 * (stats->broken_campaign says which and why) and the others go on. -1 with EX_UNAVAILABLE when the relay could
 * not be reached (nothing lost; back off), EX_TEMPFAIL when the
 * database failed (reconnect). stats (may be NULL) is added to. */
int sender_run_batch(struct sender *s, bool *worked_r,
    struct sender_stats *stats, struct assent_err *err);

/* What a message's outcome m makes of it after attempts earlier tries
 * (the rules above, with conf's sending.max_attempts and retry_base):
 * state "sent", "failed", "unknown", or "queued" (again after delay
 * seconds, or untried: tried false); hard_bounce for a mailbox-level
 * 5xx (transport_is_hard_bounce()). Notices (notice.h) follow the same
 * rules. sender_count() adds v to the matching counter. */
struct sender_verdict {
	const char *state;
	long delay;
	bool tried;
	bool hard_bounce;
};
struct transport_msg;
void sender_judge(const struct assent_conf *conf, const struct transport_msg *m,
    int attempts, struct sender_verdict *v);
void sender_count(const struct sender_verdict *v, long *sent, long *failed,
    long *retried, long *unknown, long *deferred);

/* When m is a refusal by the relay (a 4xx or 5xx at RCPT or after the
 * data), fill f for intake (intake.h) with it (reply: m's text, as
 * transport_reply_text() gives it; the ids are the caller's to set) and
 * return true. */
struct intake_refusal;
bool sender_refusal(const struct transport_msg *m, const char *reply,
    struct intake_refusal *f);

/* Deliveries and notices (notice.h) 'sending' whose session lock is
 * not held by any live connection become 'unknown'. *count_r gets how
 * many. */
int sender_reap_orphans(PGconn *conn, long *count_r, struct assent_err *err);

#endif

/*
 * campaign: campaign records, their life cycle, the audience, and the
 * figures operators read (status, report). Tables: sql/0006_campaigns.sql.
 *
 * Life cycle (the database refuses anything else):
 *	draft --schedule--> scheduled --(due: scheduler)--> sending --> done
 *	scheduled|sending --pause--> paused --resume--> scheduled|sending
 *	draft|scheduled|sending|paused --cancel--> cancelled
 *	done --resend-unknown--> sending (when it had unknown deliveries)
 * Content (subject, From, Reply-To, bodies, lists) changes only while
 * draft (campaign_edit()).
 *
 * Templates are checked at create and edit with render_compile(): an
 * unknown field, a bad brace, or a body without {{ unsubscribe_url }} or
 * {{ sender.postal_address }} is refused with EX_DATAERR, the part
 * named first: "text body: template line 3, column 14: unknown field
 * \"nmae\"" (parts: "subject", "text body", "HTML body").
 *
 * Starting (campaign_start_due(), run by the one scheduler of the
 * cluster) writes the audience in the same transaction that moves the
 * campaign to sending: one delivery for each subscriber with a sendable
 * subscription (sendable_subscriptions: confirmed, consent not expired)
 * to any of the campaign's lists, once however many lists the person is
 * on, with the lowest such list id as the delivery's list. A campaign
 * whose scheduled time is more than max_age seconds in the past is not
 * started unless it was scheduled with force (a database restored from
 * an old backup must not fire old campaigns): it stays scheduled, and
 * status says why.
 *
 * Memory: strings passed in are borrowed. struct campaign from
 * campaign_load() is the caller's, freed with campaign_free(); every
 * string in it belongs to it. json_t results are new references.
 */
#ifndef ASSENT_CAMPAIGN_H
#define ASSENT_CAMPAIGN_H

#include <stdbool.h>
#include <stddef.h>
#include <jansson.h>
#include <libpq-fe.h>

#include "assent/err.h"

#define CAMPAIGN_NAME_MAX  64
#define CAMPAIGN_LISTS_MAX 64
/* sending.max_schedule_age default: a day */
#define CAMPAIGN_MAX_AGE_DEFAULT (24 * 3600)

/* What create and edit take. For edit, NULL (nlists 0) leaves a field
 * as it is; reply_to "" removes it, html "" removes the HTML part. */
struct campaign_content {
	const char *const *lists;       /* list names */
	size_t nlists;
	const char *subject;
	const char *from;               /* "Name <addr>", "\"Name\" <addr>",
	                                 * "<addr>" or "addr"; '<' and '>'
	                                 * elsewhere are refused */
	const char *reply_to;           /* an address */
	const char *text;               /* text body template */
	const char *html;               /* HTML body template */
};

struct campaign_list {
	long long id;
	char name[CAMPAIGN_NAME_MAX + 1];
};

/* A campaign as stored. Times are ISO 8601 UTC, "" when not set. */
struct campaign {
	long long id;
	char name[CAMPAIGN_NAME_MAX + 1];
	char state[16];
	char *subject;
	char *from_name;                /* "" when none */
	char *from_address;
	char *reply_to;                 /* NULL when none */
	char *body_text;
	char *body_html;                /* NULL when none */
	char scheduled_at[40];
	bool force_start;
	char started_at[40];
	char finished_at[40];
	struct campaign_list *lists;
	size_t nlists;
};

/* Create a draft. EX_DATAERR: a bad or taken name, no list or an
 * unknown one, a bad From or Reply-To, a template refused (see above).
 * *id_r (may be NULL) gets the id. */
int campaign_create(PGconn *conn, const char *name,
    const struct campaign_content *content, const char *created_by,
    long long *id_r, struct assent_err *err);

/* Change a draft. EX_DATAERR as create, and "campaign NAME is STATE:
 * only a draft can be edited". */
int campaign_edit(PGconn *conn, const char *name,
    const struct campaign_content *changes, struct assent_err *err);

/* EX_DATAERR "unknown campaign NAME" when there is none. */
int campaign_load(PGconn *conn, const char *name, struct campaign **c_r,
    struct assent_err *err);
int campaign_load_id(PGconn *conn, long long id, struct campaign **c_r,
    struct assent_err *err);
void campaign_free(struct campaign *c);

/* Every campaign, newest first: name, state, subject, lists (names),
 * scheduled_at, created_at, and counts of deliveries by state. */
int campaign_list(PGconn *conn, json_t **rows_r, struct assent_err *err);

/* One campaign as an object: the fields of struct campaign (lists as
 * names; bodies included). */
json_t *campaign_json(const struct campaign *c);

/* Schedule a draft (or reschedule a scheduled or paused one that has
 * not started) at at: ISO 8601 with a zone, or "now". Refused
 * (EX_DATAERR) when at is more than max_age seconds in the past unless
 * force; force is recorded and lets the scheduler start it however
 * late. Sends NOTIFY assent_campaigns. */
int campaign_schedule(PGconn *conn, const char *name, const char *at,
    bool force, long max_age, struct assent_err *err);

/* Pause (scheduled or sending), resume (paused: back to scheduled when
 * it had not started, else sending), cancel (anything not done or
 * cancelled). A wrong state is EX_DATAERR naming the state ("campaign
 * c is done: it cannot be cancelled"; "campaign c is already
 * cancelled", "... already paused"). Pause and
 * cancel take effect at the workers' next claim; a batch already
 * claimed finishes. Each NOTIFYs assent_campaigns. */
int campaign_pause(PGconn *conn, const char *name, struct assent_err *err);
int campaign_resume(PGconn *conn, const char *name, struct assent_err *err);
int campaign_cancel(PGconn *conn, const char *name, struct assent_err *err);

/* Move the campaign's unknown deliveries back to queued (and a done
 * campaign back to sending). *count_r gets how many. */
int campaign_resend_unknown(PGconn *conn, const char *name, long *count_r,
    struct assent_err *err);

/* name, state, scheduled_at, started_at, finished_at, total, and
 * counts: queued, sending, sent, suppressed, failed, unknown; rate:
 * messages per second, those sent in the last minute over the time
 * from the first of them to now (at least 1 s), 0 when none, null when
 * the campaign is not sending; eta (ISO 8601 UTC): when what is queued
 * or in flight will be sent at that rate, null when the rate is null
 * or 0; and note: why a scheduled campaign has not started (too old
 * without force), or null. */
int campaign_status(PGconn *conn, const char *name, long max_age,
    json_t **status_r, struct assent_err *err);

/* The scheduled campaigns the scheduler will not start because their
 * time is more than max_age seconds in the past and they were not
 * scheduled with force: an array of {id, name, scheduled_at}, oldest
 * first (empty when none). */
int campaign_overdue(PGconn *conn, long max_age, json_t **rows_r,
    struct assent_err *err);

/* name, state, total, sent, suppressed (total and by_reason: {reason:
 * n}), failed, unknown, not_sent (queued when cancelled), and what came
 * back later, counted from the deliveries as other modules mark them:
 * bounced (bounced_at: a hard bounce of the delivery), complained
 * (complained_at: a spam complaint about it), unsubscribed
 * (unsubscribed_at: the recipient left through this campaign's links). */
int campaign_report(PGconn *conn, const char *name, json_t **report_r,
    struct assent_err *err);

/* ---- for the scheduler (assentd) -------------------------------------- */

/* Start every campaign that is due (scheduled_at <= now, and not older
 * than max_age unless force_start), each in its own transaction with
 * its audience; locked FOR UPDATE SKIP LOCKED so that two schedulers
 * cannot start one twice. *started_r gets how many. NOTIFY assent_work
 * when any started. */
int campaign_start_due(PGconn *conn, long max_age, int *started_r,
    struct assent_err *err);

/* Sending campaigns with nothing queued or in flight become done.
 * *finished_r gets how many. */
int campaign_finish_done(PGconn *conn, int *finished_r, struct assent_err *err);

#endif

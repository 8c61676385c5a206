/*
 * bounce: what comes back to the bounce domain, read and classified.
 * Pure: no database, no configuration, no logging, so that the fuzzer
 * and `assent inbound --classify` can run it alone.
 *
 * bounce_parse() reads one message (bytes as the MTA handed them over,
 * and the envelope recipient it gave, if any) with GMime and says what
 * it is:
 *
 *	dsn                 a delivery status notification: RFC 3464
 *	                    (multipart/report with a message/delivery-status
 *	                    part), or a plain-text bounce of a known MTA or
 *	                    provider (the pattern table, bounce_patterns.c;
 *	                    report->pattern names the one that matched)
 *	arf                 a feedback report (RFC 5965: multipart/report
 *	                    with a message/feedback-report part)
 *	auto-reply          Auto-Submitted other than "no", X-Autoreply,
 *	                    X-Autorespond, Precedence: auto_reply, or a
 *	                    subject such as "Out of Office" or "Automatic
 *	                    reply": the caller ignores it
 *	mailto-unsubscribe  sent to u-TOKEN@... (List-Unsubscribe mailto)
 *	unknown             anything else, malformed or empty input included;
 *	                    report->detail says why
 *
 * in that order of precedence: a DSN often carries "Auto-Submitted:
 * auto-replied" and is still a DSN. Each failed (or delayed) recipient
 * of a DSN is one struct bounce_recipient with its class; an ARF report
 * gives one recipient (Original-Rcpt-To, else the original's To, either
 * may be redacted or empty) with class complaint when its Feedback-Type
 * is abuse, none otherwise.
 *
 * Attribution: the parser finds identifiers, the caller verifies them
 * (token_compact_verify(), and whether a domain is ours). A VERP token
 * is looked for, first found wins, in: the envelope recipient; the
 * message's Delivered-To, X-Original-To, To; the attached original's
 * Return-Path (message/rfc822 or text/rfc822-headers part); an ARF
 * report's Original-Mail-From. Each is PREFIX TOKEN @ domain, PREFIX
 * "b-" (campaign delivery), "n-" (notice) or "u-" (mailto unsubscribe),
 * TOKEN 48 characters of [a-z2-7] in either case, at any domain (the
 * domain is reported). Independently, a Message-ID of the form compose
 * and notice make is looked for in the original's Message-ID, then the
 * message's own In-Reply-To and References:
 *	<cCAMPAIGN.TOKEN@DOMAIN>   a campaign delivery, signed: TOKEN a
 *	                           compact bounce token (48 of [a-z2-7],
 *	                           either case) naming the delivery, kept
 *	                           unverified in msgid.token
 *	<cCAMPAIGN.tNONCE.ISSUED@...>   a test send (ISSUED in hex)
 *	<nNOTICE.ISSUED@...>       a notice
 * and the older unsigned form <cCAMPAIGN.dDELIVERY.ISSUED@...>, still
 * recognised as ours (kind campaign, msgid.token "") so that it is
 * shown, but guessable: the caller must never attribute by it.
 *
 * Classification (bounce_classify(), shared with the sender's
 * synchronous SMTP replies, so that 550 5.1.1 at RCPT and a DSN with
 * 5.1.1 have the same effect):
 *
 *	none       not a failure: action delivered, relayed or expanded, or
 *	           a 2.x.x status
 *	hard       the mailbox is bad for good: 5.1.x except 5.1.0, 5.1.7
 *	           and 5.1.8 (5.1.0 goes by its words), 5.2.1; or a 5xx
 *	           (5.0.0 and the other unspecific codes included) whose
 *	           diagnostic names a missing mailbox: "user unknown", "no
 *	           such user", "mailbox does not exist" and the like
 *	soft       may heal: 4.x.x, delayed, x.2.2 mailbox full, x.4.x
 *	           network and routing, and every 5xx that says nothing more
 *	           precise (counted toward the soft-bounce limit, so a
 *	           mailbox that keeps failing is suppressed in the end)
 *	policy     the sender's fault, never the recipient's: 5.7.x, 5.1.7,
 *	           5.1.8, 5.2.3 and 5.3.4 (message too big), any refusal
 *	           that speaks of our sender or sending host (sender
 *	           address rejected, sender domain, PTR record, reverse
 *	           DNS, client host, your IP...: checked first, even under
 *	           a 5.1.x code), and any 5xx whose diagnostic speaks of
 *	           spam, blocking, block lists (Spamhaus...), reputation,
 *	           SPF, DKIM, DMARC or policy; policy words win over
 *	           user-unknown words
 *	complaint  an ARF report with Feedback-Type abuse (never returned
 *	           by bounce_classify())
 *
 * Limits and bad input: at most BOUNCE_INPUT_MAX bytes are parsed (the
 * rest is ignored and report->truncated set), at most
 * BOUNCE_RECIPIENTS_MAX recipients kept (the others counted), MIME trees
 * walked at most BOUNCE_DEPTH_MAX deep and BOUNCE_PARTS_MAX parts wide.
 * Malformed MIME, truncated reports, NUL bytes and unknown charsets
 * never crash: they give what could be read, or kind unknown. Every
 * string in a report is one line of valid UTF-8 without control
 * characters (others become '?' or a space), cut to its buffer.
 *
 * GMime: bounce_parse() calls bounce_init() itself; bounce_init() runs
 * g_mime_init() once per process (pthread_once) and may be called from
 * any thread; bounce_shutdown() is for the end of a process that wants
 * a clean leak check. Parsing keeps no state: threads may parse at once.
 *
 * Memory: struct bounce_report is the caller's (stack or heap); its
 * strings are inline buffers, its recipients array is allocated by
 * bounce_parse() and released by bounce_report_free(), which leaves an
 * empty report (freeing twice is harmless). The input is borrowed for
 * the call. Every "const char *" in a report (detail, pattern, why)
 * points to a static string. bounce_read() hands the caller a buffer
 * to free().
 */
#ifndef ASSENT_BOUNCE_H
#define ASSENT_BOUNCE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "assent/err.h"
#include "assent/token.h"

#define BOUNCE_INPUT_MAX        (10 * 1024 * 1024)
#define BOUNCE_RECIPIENTS_MAX   100
#define BOUNCE_DEPTH_MAX        8
#define BOUNCE_PARTS_MAX        64

#define BOUNCE_ADDR_MAX         320     /* bytes, without the NUL */
#define BOUNCE_HOST_MAX         255
#define BOUNCE_TEXT_MAX         500     /* diagnostics, subjects, ids */
#define BOUNCE_SHORT_MAX        64      /* field values such as types */
#define BOUNCE_STATUS_SIZE      12      /* "5.123.123" and a NUL */

enum bounce_kind {
	BOUNCE_KIND_UNKNOWN = 0,
	BOUNCE_KIND_DSN,
	BOUNCE_KIND_ARF,
	BOUNCE_KIND_AUTO_REPLY,
	BOUNCE_KIND_MAILTO_UNSUBSCRIBE,
};

/* RFC 3464 Action; NONE when absent or not one of these. */
enum bounce_action {
	BOUNCE_ACTION_NONE = 0,
	BOUNCE_ACTION_FAILED,
	BOUNCE_ACTION_DELAYED,
	BOUNCE_ACTION_DELIVERED,
	BOUNCE_ACTION_RELAYED,
	BOUNCE_ACTION_EXPANDED,
};

enum bounce_class {
	BOUNCE_CLASS_NONE = 0,          /* not a failure */
	BOUNCE_CLASS_HARD,
	BOUNCE_CLASS_SOFT,
	BOUNCE_CLASS_POLICY,
	BOUNCE_CLASS_COMPLAINT,
};

/* Where an identifier was found. */
enum bounce_source {
	BOUNCE_SOURCE_NONE = 0,
	BOUNCE_SOURCE_ENVELOPE,         /* the recipient the MTA gave */
	BOUNCE_SOURCE_DELIVERED_TO,
	BOUNCE_SOURCE_X_ORIGINAL_TO,
	BOUNCE_SOURCE_TO,
	BOUNCE_SOURCE_ORIGINAL_RETURN_PATH,
	BOUNCE_SOURCE_ORIGINAL_MAIL_FROM,       /* ARF Original-Mail-From */
	BOUNCE_SOURCE_ORIGINAL_MESSAGE_ID,
	BOUNCE_SOURCE_IN_REPLY_TO,
	BOUNCE_SOURCE_REFERENCES,
};

enum bounce_token_kind {
	BOUNCE_TOKEN_NONE = 0,
	BOUNCE_TOKEN_BOUNCE,            /* b-: a campaign delivery */
	BOUNCE_TOKEN_NOTICE,            /* n-: a confirmation request */
	BOUNCE_TOKEN_UNSUBSCRIBE,       /* u-: the mailto unsubscribe */
};

enum bounce_msgid_kind {
	BOUNCE_MSGID_NONE = 0,
	BOUNCE_MSGID_CAMPAIGN,          /* campaign_id, token (or delivery_id) */
	BOUNCE_MSGID_TEST,              /* campaign_id; a test send */
	BOUNCE_MSGID_NOTICE,            /* notice_id */
};

struct bounce_verp {
	enum bounce_token_kind kind;
	enum bounce_source source;
	char token[TOKEN_COMPACT_TEXT_SIZE];    /* lower case; unverified */
	char domain[BOUNCE_HOST_MAX + 1];       /* lower case */
};

struct bounce_msgid {
	enum bounce_msgid_kind kind;
	enum bounce_source source;
	uint64_t campaign_id;
	uint64_t delivery_id;           /* old unsigned form only, else 0 */
	uint64_t notice_id;
	int64_t issued_at;              /* 0 in the signed form (the token's) */
	char domain[BOUNCE_HOST_MAX + 1];       /* lower case */
	/* kind campaign, signed form: the token, lower case, unverified;
	 * "" for the old unsigned form (never attributes) */
	char token[TOKEN_COMPACT_TEXT_SIZE];
};

struct bounce_recipient {
	char final_recipient[BOUNCE_ADDR_MAX + 1];      /* address only */
	char original_recipient[BOUNCE_ADDR_MAX + 1];   /* "" if none */
	enum bounce_action action;
	/* Status, or the diagnostic's more precise code when Status says
	 * only X.0.0 (or nothing): "5.1.1"; "" if none */
	char status[BOUNCE_STATUS_SIZE];
	int smtp_code;                          /* from the diagnostic; 0 */
	char diagnostic[BOUNCE_TEXT_MAX + 1];   /* without "smtp;" */
	char remote_mta[BOUNCE_HOST_MAX + 1];   /* without "dns;" */
	enum bounce_class class;
	const char *why;                        /* static: the rule applied */
};

/* The attached original message (or its headers), when there is one. */
struct bounce_original {
	bool present;
	bool headers_only;                      /* text/rfc822-headers */
	char return_path[BOUNCE_ADDR_MAX + 1];  /* address only */
	char from[BOUNCE_TEXT_MAX + 1];
	char to[BOUNCE_TEXT_MAX + 1];
	char message_id[BOUNCE_TEXT_MAX + 1];   /* without <> */
};

struct bounce_arf {
	char feedback_type[BOUNCE_SHORT_MAX + 1];       /* lower case */
	char user_agent[BOUNCE_TEXT_MAX + 1];
	char original_mail_from[BOUNCE_ADDR_MAX + 1];
	char original_rcpt_to[BOUNCE_ADDR_MAX + 1];
	char reported_domain[BOUNCE_HOST_MAX + 1];
	char source_ip[BOUNCE_SHORT_MAX + 1];
};

struct bounce_report {
	enum bounce_kind kind;
	const char *detail;     /* static: how it was recognised, or why not */
	const char *pattern;    /* static: the plain-text pattern, or NULL */
	bool truncated;         /* input longer than BOUNCE_INPUT_MAX */
	size_t size;            /* input bytes, as given */

	char from[BOUNCE_TEXT_MAX + 1];         /* the message's own */
	char subject[BOUNCE_TEXT_MAX + 1];      /* decoded */
	char reporting_mta[BOUNCE_HOST_MAX + 1];        /* DSN, without "dns;" */

	struct bounce_verp verp;
	struct bounce_msgid msgid;
	struct bounce_original original;
	struct bounce_arf arf;                  /* kind arf */

	struct bounce_recipient *recipients;    /* see Memory above */
	size_t nrecipients;
	size_t recipients_dropped;              /* beyond BOUNCE_RECIPIENTS_MAX */
	size_t recipients_cap;                  /* allocated; the parser's */
};

/* g_mime_init() once per process; safe to call often, from any thread. */
void bounce_init(void);

/* g_mime_shutdown(), for a clean exit; no bounce_parse() afterwards. */
void bounce_shutdown(void);

/* Read a whole message from in: at most BOUNCE_INPUT_MAX bytes are kept,
 * the rest is read and dropped (so that the MTA's pipe is not cut) and
 * *truncated_r set. *data_r gets a NUL-terminated buffer (NULs inside
 * are kept; *len_r counts them) the caller frees. EX_IOERR when in
 * fails (nothing to free then). */
int bounce_read(FILE *in, char **data_r, size_t *len_r, bool *truncated_r,
    struct assent_err *err);

/* Parse data (len bytes, any bytes at all) into *r, which is
 * overwritten (not freed: call bounce_report_free() between two
 * uses). envelope_rcpt is the recipient the MTA gave (NULL or "" when
 * none). Never fails: what cannot be understood is kind unknown. */
void bounce_parse(const char *data, size_t len, const char *envelope_rcpt,
    struct bounce_report *r);

/* Release r's recipients and zero it. */
void bounce_report_free(struct bounce_report *r);

/* The class of one failure, from what a DSN or an SMTP reply says:
 * action (NONE when unknown: then status or code decide), status
 * ("X.Y.Z", may be NULL or "", or hold junk, then it is ignored), the
 * SMTP reply code (0 when none) and the diagnostic text (may be NULL).
 * An unspecific status (X.0.0) is refined by an enhanced code found in
 * the diagnostic. *why_r (may be NULL) gets a static phrase naming the
 * rule. For a synchronous refusal, pass only RCPT-stage replies as the
 * recipient's: a refusal after DATA is about the message (the caller
 * should count a hard result there as policy). */
enum bounce_class bounce_classify(enum bounce_action action,
    const char *status, int smtp_code, const char *diagnostic,
    const char **why_r);

/* bounce_classify() for an SMTP reply: code 4xx or 5xx (a 2xx or 3xx is
 * none), enhanced "X.Y.Z" or "" and the reply text. */
enum bounce_class bounce_classify_reply(int code, const char *enhanced,
    const char *text, const char **why_r);

/* An enhanced status code ("X.Y.Z", X 2, 4 or 5; Y and Z 1-3 digits,
 * not part of a longer number or dotted word) in text, into out: the
 * first specific one (not X.0.0) if there is one, else the first;
 * false and "" if none. */
bool bounce_status_find(const char *text, char out[BOUNCE_STATUS_SIZE]);

/* The first SMTP reply code in text: three digits 2xx-5xx standing
 * alone (followed by a space, '-', ':', ';' or the end); 0 if none. */
int bounce_smtp_code_find(const char *text);

/* "dsn", "arf", "auto-reply", "mailto-unsubscribe", "unknown". */
const char *bounce_kind_name(enum bounce_kind kind);
/* "none", "hard", "soft", "policy", "complaint". */
const char *bounce_class_name(enum bounce_class class);
/* "failed", "delayed", "delivered", "relayed", "expanded", "" for none. */
const char *bounce_action_name(enum bounce_action action);
/* The action named by s (case-insensitive, surrounding blanks and an RFC
 * 3464 comment ignored); NONE if none. */
enum bounce_action bounce_action_parse(const char *s);
/* "envelope", "delivered-to", ..., "references"; "" for none. */
const char *bounce_source_name(enum bounce_source source);

#endif

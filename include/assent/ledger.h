/*
 * ledger: the consent ledger, where every change to a subscription is
 * appended as one event in the same transaction as the change.
 *
 * The database refuses DELETE and TRUNCATE on the ledger, and UPDATE
 * except through ledger_erase_personal(), which may only blank the
 * personal fields; it refuses at commit a subscription change that has
 * no event (sql/0001_foundation.sql, sql/0003_ledger_chain.sql).
 *
 * Tamper evidence: a trigger numbers each subscriber's events (seq 1,
 * 2, 3...) and chains them with SHA-256 digests:
 *   personal_sha256 = SHA-256(salt || P)
 *   content_sha256  = SHA-256(C)
 *   chain_sha256    = SHA-256(previous chain_sha256, or 32 zero bytes
 *                     for seq 1 || content_sha256)
 * where P and C are canonical texts: each field "-" when NULL, else the
 * lower-case hex of its UTF-8 text, the fields joined with "|";
 *   P = ip | user_agent | page | source | import_file
 *   C = subscriber_id | seq | list_id | action | channel | status_before
 *       | status_after | at | operator | consent_text_version
 *       | consent_text_sha256 | basis | basis_expires_at | import_sha256
 *       | import_line | personal_sha256 [| consent_collected_at]
 * (the last field only when the event has one), integers in decimal, ip as text(inet) (with its prefix length, e.g.
 * "192.0.2.1/32"), times as integer microseconds since the Unix epoch,
 * personal_sha256 as 64 lower-case hex digits, consent_text_sha256 the
 * hex SHA-256 of the named wording, copied by the trigger from
 * consent_texts (so the wording itself is covered). The trigger also
 * forces txid, at and erased_at, and counts each subscriber's events in
 * subscribers.ledger_seq, which the event takes as its seq. The salt is 16 random
 * bytes; erasure blanks it with the personal fields, so the digest that
 * stays can't be tested against guesses, and the chain stays valid.
 * ledger_verify() recomputes all of it here in C, trusting no function
 * stored in the database.
 *
 * Memory: all pointers in the structs below are borrowed for the call.
 * ledger_history() returns a new JSON array the caller json_decref()s;
 * struct ledger_verify_result is the caller's, filled in place.
 */
#ifndef ASSENT_LEDGER_H
#define ASSENT_LEDGER_H

#include <stdint.h>
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
	/* an import: the file's name, its SHA-256 (hex) and the line */
	const char *import_file;
	const char *import_sha256;
	const char *import_line;          /* decimal */
	/* when the consent was given, when before the event (an import of
	 * consent collected elsewhere): timestamptz text, or NULL */
	const char *collected_at;
};

struct ledger_event {
	const char *subscriber_id;        /* decimal, as from the database */
	const char *list_id;              /* NULL: every list */
	const char *action;               /* subscribe, confirm, unsubscribe, ... */
	const char *channel;              /* cli, import, web, one-click, ... */
	const char *status_before;        /* NULL when there was no subscription */
	const char *status_after;
	const char *basis;                /* "express" or "implied"; NULL: none given */
	const char *basis_expires_at;     /* implied consent: when it lapses (timestamptz text) */
	const struct ledger_evidence *evidence;
};

/* Refuse evidence that can't be stored: an empty or multi-line source,
 * an IP that isn't an address, control characters in the user agent,
 * page, operator or import file name, a consent text version that isn't
 * 1-64 visible ASCII characters, an import SHA-256 that isn't 64
 * lower-case hex digits, an import line that isn't a positive decimal
 * integer. EX_DATAERR names the field. */
int ledger_evidence_check(const struct ledger_evidence *ev, struct assent_err *err);

/* Append ev inside the caller's open transaction, which must be READ
 * COMMITTED (the database refuses other levels: see 0003). The time,
 * seq, salt and digests are the database's, whatever the caller does. */
int ledger_append(PGconn *conn, const struct ledger_event *ev, struct assent_err *err);

/* Every event of one subscriber, oldest first, as objects with seq, at,
 * list, action, channel, status_before, status_after, basis,
 * basis_expires_at, ip, user_agent, page, operator, source,
 * import_file, import_sha256, import_line, consent_text_version,
 * consent_text_sha256, erased_at (null unless erased; the personal fields are then null) and
 * chain (chain_sha256 in hex). Times are ISO 8601 UTC. */
int ledger_history(PGconn *conn, const char *subscriber_id, json_t **history_r,
    struct assent_err *err);

/* Erasure: blank ip, user agent, page, source, import file and salt of
 * every event of the subscriber not erased before, and set erased_at,
 * inside the caller's open transaction (SQL ledger_erase_personal(), the
 * one UPDATE the database allows). *count_r (may be NULL) gets how many
 * events were erased. */
int ledger_erase(PGconn *conn, const char *subscriber_id, long *count_r,
    struct assent_err *err);

/* What ledger_verify() found. */
struct ledger_verify_result {
	long long events;                 /* events checked */
	long long subscribers;            /* chains (subscribers with events) */
	long long problems;               /* broken links found, all told */
	char head[65];                    /* hex SHA-256 of every chain's last
	                                   * chain_sha256, in subscriber order */
	/* The first problem by event id (when problems > 0). event_id is 0
	 * (and seq 0) for a subscription whose subscriber has no event. */
	long long event_id;
	long long subscriber_id;
	long long seq;
	char what[256];                   /* one line: what is wrong */
};

/* Walk the whole ledger in one REPEATABLE READ snapshot, streaming it
 * (memory stays flat however long it is), and recompute every digest in
 * C: per subscriber, seq must run 1, 2, 3... without a gap (a gap is a
 * deleted event); each event's personal digest (unless erased: then its
 * personal fields and salt must be blank, erased_at not before at, and
 * the subscriber erased too), content digest and chain link must match,
 * and the consent wording the event names must still hash (recomputed
 * here from consent_texts.body) to the SHA-256 it recorded. Each chain
 * must end at the subscriber's count of events (subscribers.ledger_seq:
 * a deleted last event). Then every subscription's status must equal the
 * status_after of the latest event for its list or for every list (a
 * mismatch is a deleted or altered tail). Returns 0 with r filled,
 * problems or not; -1 only when the database fails (err). Runs its own
 * transaction: call it outside one. */
int ledger_verify(PGconn *conn, struct ledger_verify_result *r,
    struct assent_err *err);

/*
 * A subscriber's first event (seq 1, no status before), sealed here
 * exactly as the chain trigger would seal it, for a writer that inserts
 * many at once (import: sql/0010_import.sql lets a row sealed so skip
 * the trigger, and ledger_verify() checks it like any other). It has no
 * ip, user agent or page. Times are microseconds since 1970 UTC, -1 for
 * none; at_us must be the inserting transaction's now(). The caller
 * sets the subscriber's ledger_seq to 1.
 */
struct ledger_first {
	long long subscriber_id, list_id;
	const char *action, *channel, *status_after;
	int64_t at_us;
	const char *operator_name, *source;
	const char *consent_text_version, *consent_text_sha256;
	const char *basis;
	int64_t basis_expires_us, collected_us;
	const char *import_file, *import_sha256;
	unsigned long import_line;
};

struct ledger_sealed {
	unsigned char salt[16];          /* random */
	unsigned char personal[32], content[32], chain[32];
};

void ledger_seal_first(const struct ledger_first *e, struct ledger_sealed *out);

#endif

/*
 * suppress: the global suppression list and the gate every send passes.
 *
 * An entry is one of three kinds:
 *   - address: the canonical key of an address (addr.h: lower case,
 *     domain as A-label), so case and U-label/A-label forms match alike;
 *   - domain: "@example.com" blocks that exact domain, not subdomains;
 *   - hash: HMAC-SHA256(pepper, canonical key) as 64 lower-case hex
 *     digits, for addresses whose plain form must not be kept (erasure)
 *     or that come hashed from elsewhere.
 * Each has a reason, a source, who added it and when (database clock),
 * and may expire. Removal keeps the row and records who, when and why;
 * the database refuses any other change (sql/0002_suppression.sql).
 *
 * THE GATE. suppress_gate() is the only way to learn whether a
 * recipient may be sent to. Every send path (campaigns, test sends,
 * confirmation mails, anything later) must call it for its batch
 * INSIDE the transaction that claims the recipients for sending, after
 * the claim and before the commit that hands them to the transport, so
 * that an entry committed a moment before the claim stops the send.
 *
 * Memory: strings passed in are borrowed for the call. Result structs
 * are the caller's (inline buffers). Functions returning json_t give a
 * new reference the caller json_decref()s. struct suppress_ctx borrows
 * the pepper (usually from keys_pepper()); keep the keys alive while
 * the context is used.
 */
#ifndef ASSENT_SUPPRESS_H
#define ASSENT_SUPPRESS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <jansson.h>
#include <libpq-fe.h>

#include "assent/addr.h"
#include "assent/audit.h"
#include "assent/err.h"

#define SUPPRESS_HASH_HEX   64
#define SUPPRESS_SOURCE_MAX 1000        /* bytes */
#define SUPPRESS_WHO_MAX    200         /* bytes: added_by, removed_by */

enum suppress_kind { SUPPRESS_ADDRESS, SUPPRESS_DOMAIN, SUPPRESS_HASH };

/* What the gate and hashing need. The pepper must be at least 32 bytes
 * (suppress_gate() and suppress_hash() abort otherwise: every address
 * must be checked against hashed entries too). */
struct suppress_ctx {
	const unsigned char *pepper;
	size_t pepper_len;
	bool gmail_mailbox_key;         /* conf suppress.gmail_mailbox_key */
};

/* "address", "domain" or "hash". */
const char *suppress_kind_name(enum suppress_kind kind);

/* 0 when reason is one of unsubscribe, hard-bounce, complaint,
 * soft-bounce-limit, manual, erasure, imported; else -1 with
 * EX_DATAERR listing them. */
int suppress_reason_check(const char *reason, struct assent_err *err);

/* HMAC-SHA256(ctx->pepper, key) as 64 lower-case hex digits. key is a
 * canonical address key (struct addr's key). */
void suppress_hash(const struct suppress_ctx *ctx, const char *key,
    char hex_r[SUPPRESS_HASH_HEX + 1]);

/* The gmail mailbox key of a canonical key at gmail.com or
 * googlemail.com: the local part without dots and without a +tag,
 * "@gmail.com". Returns false (and "" in out) for other domains. */
bool suppress_mailbox_key(const char *key, char out[ADDR_MAX + 1]);

/* One entry to add or remove, as parsed from what an operator typed. */
struct suppress_target {
	enum suppress_kind kind;
	char value[ADDR_DOMAIN_MAX + 1];        /* key, domain or hex hash */
	char mailbox_key[ADDR_MAX + 1];         /* "" when none; for a hashed
	                                         * gmail address, its keyed hash */
	char shown[ADDR_DOMAIN_MAX + 2];        /* for messages: "@dom", ... */
};

/* Parse input: "@domain" is a domain entry, 64 hex digits a hash
 * entry, anything else an address (addr_parse()). With hash_addresses
 * an address becomes the hash entry of its key; that needs ctx with a
 * pepper (ctx may be NULL otherwise). EX_DATAERR for invalid input. */
int suppress_target_parse(const struct suppress_ctx *ctx, const char *input,
    bool hash_addresses, struct suppress_target *t_r, struct assent_err *err);

/* What is recorded with a new entry. */
struct suppress_new {
	const char *reason;             /* suppress_reason_check() */
	const char *source;             /* free text, one line, <= 1000 bytes */
	const char *added_by;           /* operator or subsystem */
	const char *expires;            /* NULL, or ISO 8601 (suppress_parse_time) */
};

/* Add t. When an active entry for it exists already nothing changes:
 * *added_r = false and *id_r is that entry. An active entry that has
 * expired is removed first (by added_by, "expired") and replaced.
 * Refused (EX_DATAERR): a bad reason, source, who, or an expiry that is
 * malformed or not in the future. Runs its own transaction. */
int suppress_add(PGconn *conn, const struct suppress_target *t,
    const struct suppress_new *n, long long *id_r, bool *added_r,
    struct assent_err *err);

/* The same inside the caller's transaction (it neither begins nor
 * commits), for a change that must commit together with the entry. */
int suppress_add_in(PGconn *conn, const struct suppress_target *t,
    const struct suppress_new *n, long long *id_r, bool *added_r,
    struct assent_err *err);

/* How an entry is removed. */
struct suppress_removal {
	const char *reason;             /* why, free text, required */
	const char *removed_by;
	bool force;                     /* allow complaint and erasure entries */
	/* who acts, for the audit row written in the same transaction
	 * (audit.h); required: a removal is an action on personal data */
	const struct audit_actor *who;
};

/* Remove the active entry for t (or, when t is NULL, entry id). Refused
 * with EX_DATAERR: no such active entry; a complaint or erasure entry
 * without force; an empty or multi-line reason. *id_r (may be NULL)
 * gets the removed entry's id. Runs its own transaction. */
int suppress_remove(PGconn *conn, const struct suppress_target *t, long long id,
    const struct suppress_removal *r, long long *id_r, struct assent_err *err);

/* The entry that matched a recipient. Timestamps are ISO 8601 UTC
 * ("2025-01-31T12:00:00Z"); expires_at is "" when the entry has none. */
struct suppress_entry {
	long long id;
	enum suppress_kind kind;
	char value[ADDR_DOMAIN_MAX + 1];        /* for a hash entry, the hash */
	char reason[24];
	char source[SUPPRESS_SOURCE_MAX + 1];
	char added_by[SUPPRESS_WHO_MAX + 1];
	char added_at[32];
	char expires_at[32];
};

struct suppress_verdict {
	bool suppressed;
	struct suppress_entry entry;            /* valid when suppressed */
};

/*
 * The gate. For each of the n canonical address keys (struct addr's
 * key), sets verdicts[i]: suppressed, and which entry matched, when an
 * active, unexpired entry matches the address, its domain (exactly),
 * its keyed hash, or (with ctx->gmail_mailbox_key) its gmail mailbox
 * key. When several match, the most specific wins: address, hash,
 * mailbox, domain.
 *
 * One query for the whole batch (one index probe per address, domain
 * and hash), prepared once per connection, run in the caller's
 * transaction: it neither begins nor commits. About 6 us a recipient in
 * batches of 100 against 1.1 million entries (bench/suppression).
 *
 * A key that is not canonical (upper case, no '@', control characters)
 * is refused with EX_SOFTWARE rather than answered. On -1 no recipient
 * of the batch may be sent to: roll the transaction back (the database
 * has aborted it if the query failed) and retry later (EX_TEMPFAIL,
 * EX_UNAVAILABLE).
 */
int suppress_gate(PGconn *conn, const struct suppress_ctx *ctx,
    const char *const *addr_keys, size_t n, struct suppress_verdict *verdicts,
    struct assent_err *err);

/* An entry as a JSON object: id, kind, value, reason, source, added_by,
 * added_at, expires_at (null when none). */
json_t *suppress_entry_json(const struct suppress_entry *e);

/* Check an operator's date: "YYYY-MM-DD" (midnight UTC) or
 * "YYYY-MM-DDTHH:MM[:SS[.frac]]" followed by "Z" or "+HH:MM"/"-HH:MM"
 * ("T" may be a space). what names it in the message ("--expires").
 * Only the form is checked here; the database checks the calendar. */
int suppress_parse_time(const char *s, const char *what, struct assent_err *err);

/* A page of entries for "suppress ls", oldest first. */
struct suppress_query {
	const char *reason;             /* NULL for every reason */
	const char *since;              /* NULL, or added at or after (ISO 8601) */
	long long after_id;             /* keyset paging: entries with id > after_id */
	long limit;                     /* 1 .. 100000 */
	bool include_removed;
};

/* Rows: the fields of suppress_entry_json() plus removed_at, removed_by,
 * removed_reason (null unless removed) and active (not removed, not
 * expired). *more_r (may be NULL) tells whether entries follow the page. */
int suppress_list(PGconn *conn, const struct suppress_query *q, json_t **rows_r,
    bool *more_r, struct assent_err *err);

/* Streaming import: a file of one entry a line (see suppress_target_parse;
 * blank lines and lines starting with '#' are skipped; surrounding
 * blanks and a CR are trimmed). The whole import is one transaction,
 * inserted in batches; entries already active are counted, not changed.
 * Each refused line is passed to on_reject (may be NULL) with its line
 * number and the reason. */
struct suppress_import {
	const struct suppress_new *entry;   /* reason, source, added_by (no expiry) */
	const struct suppress_ctx *ctx;     /* needed with hash_addresses */
	bool hash_addresses;
	void (*on_reject)(unsigned long line, const char *why, void *arg);
	void *arg;
};

struct suppress_import_counts {
	unsigned long added, present, rejected;
};

int suppress_import(PGconn *conn, FILE *in, const struct suppress_import *im,
    struct suppress_import_counts *counts_r, struct assent_err *err);

/* Write every active, unexpired entry to out, one a line, oldest first:
 * addresses as their key, domains as "@domain", hashes as hex. With
 * hash_addresses (ctx needed) addresses are written as their hash.
 * Streams (COPY); *count_r (may be NULL) gets the number of lines. */
int suppress_export(PGconn *conn, FILE *out, const struct suppress_ctx *ctx,
    bool hash_addresses, unsigned long *count_r, struct assent_err *err);

#endif

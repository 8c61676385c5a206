/*
 * export: a list's subscribers written out as CSV or JSON, for the
 * operator's own use (a spreadsheet, another system).
 *
 * One record per subscription of the list, ordered by subscriber id,
 * with these columns (CSV header) or members (JSON):
 *   email, name, status, basis, basis_expires_at, subscribed_at,
 *   last_event_at, last_event_action, last_event_channel, suppressed,
 *   attrs
 * Times are ISO 8601 UTC ("2025-01-31T12:00:00Z"). subscribed_at is
 * when the subscription was first created; last_event_* describe the
 * newest ledger event of the subscriber for this list or for every list.
 * suppressed is the reason of the suppression entry that stops the
 * address, as suppress_gate() finds it (address, domain, keyed hash,
 * gmail mailbox key). attrs is the attribute object: its JSON text in
 * CSV, an object in JSON. What is absent is an empty field in CSV and
 * null in JSON. Erased subscribers are never written.
 *
 * CSV follows RFC 4180: every field quoted, records ended by CRLF.
 * JSON is one array streamed as "[\n", one compact object per line
 * separated by ",\n", "]\n".
 *
 * Memory: the query's strings, the context and out are borrowed for
 * the call. Memory use does not grow with the list: rows come from a
 * server-side cursor a batch at a time.
 */
#ifndef ASSENT_EXPORT_H
#define ASSENT_EXPORT_H

#include <stdio.h>
#include <libpq-fe.h>

#include "assent/audit.h"
#include "assent/err.h"
#include "assent/suppress.h"

#define EXPORT_FETCH 2000               /* rows per FETCH and per gate call */

enum export_format { EXPORT_CSV, EXPORT_JSON };

struct export_query {
	const char *list;               /* the list's name (case-insensitive) */
	const char *status;             /* confirmed, pending, unsubscribed or all */
	enum export_format format;
	/* who exports, for the audit row written first (audit.h) */
	const struct audit_actor *who;
};

struct export_counts {
	unsigned long rows;             /* records written */
	unsigned long suppressed;       /* of which suppressed */
};

/* 0 when name is "csv" or "json" (sets *format_r), else -1 with
 * EX_USAGE. */
int export_parse_format(const char *name, enum export_format *format_r,
    struct assent_err *err);

/* 0 when status is confirmed, pending, unsubscribed or all, else -1
 * with EX_USAGE. */
int export_check_status(const char *status, struct assent_err *err);

/*
 * Write the subscribers of q->list with status q->status to out, in one
 * REPEATABLE READ READ ONLY transaction (a consistent snapshot; it is
 * ended before returning, so conn must not be in a transaction). ctx is
 * the gate's (its pepper is required). *counts_r (may be NULL) gets
 * what was written, also on failure (then part of it).
 *
 * Before anything is read an audit row is committed (action export,
 * subject "list N", the status and format): no export goes unrecorded.
 *
 * Errors: EX_USAGE for a bad status; EX_DATAERR "unknown list" (lists_lookup());
 * EX_IOERR when out cannot be written (out is then incomplete: the
 * caller discards it); the database's codes (db.h) otherwise.
 */
int export_run(PGconn *conn, const struct suppress_ctx *ctx,
    const struct export_query *q, FILE *out, struct export_counts *counts_r,
    struct assent_err *err);

#endif

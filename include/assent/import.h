/*
 * import: subscribers in from a CSV file, with the provenance of every
 * row, in one transaction.
 *
 * The file is read once (import_private.h: SHA-256 and libcsv on 64 KiB
 * chunks); each good row is checked here (address, UTF-8, sizes, role
 * addresses, consent basis) and streamed with COPY into a temporary
 * staging table; the rest of the work is set-based SQL over that table
 * (import_merge.c): duplicates taken once, the suppression list and the
 * list's own unsubscribes applied, new subscribers and subscriptions
 * written with one ledger event each (action import, the file's name,
 * its SHA-256 and the line, the operator, the basis). Nobody who left
 * the list or is suppressed is subscribed again; --update changes names
 * and attributes, never a status. Memory stays flat whatever the
 * file's size.
 *
 * What is not taken is written to a rejects file (CSV: line, reason and
 * the row's fields), mode 0600, renamed into place at the end.
 *
 * Memory: every pointer in struct import_options is borrowed for the
 * call; struct import_summary is the caller's.
 */
#ifndef ASSENT_IMPORT_H
#define ASSENT_IMPORT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <libpq-fe.h>

#include "assent/err.h"
#include "assent/suppress.h"

#define IMPORT_FIELD_MAX   1000     /* bytes of one field */
#define IMPORT_NAME_MAX    200      /* bytes of a name (subscribers.name) */
#define IMPORT_ATTR_KEY_MAX 64      /* bytes of an attribute's name */

/* Where the import stands, for a progress display. */
struct import_progress {
	const char *phase;              /* "reading", "checking", "writing" */
	uint64_t done, total;           /* bytes (reading) or rows (writing);
	                                 * total 0 when unknown */
	unsigned long rows;             /* rows read so far */
	double elapsed;                 /* seconds since the import began */
};

struct import_options {
	const char *path;               /* the file; "-" reads in */
	FILE *in;                       /* the open file (stdin for "-") */
	uint64_t size;                  /* its size when known, else 0 */
	const char *list;
	const char *source;             /* --source, required */
	const char *operator_name;
	/* the consent basis of rows that carry none: "express", "implied"
	 * (then expires is required) or NULL (every row must carry one) */
	const char *basis;
	const char *expires;            /* ISO 8601, implied consent's end */
	const char *consent_text;       /* a stored version, or NULL */
	const char *collected_at;       /* ISO 8601 in the past, or NULL */
	const char *const *maps;        /* "COLUMN=FIELD" (--map), nmaps of them */
	size_t nmaps;
	const char *rejects_path;       /* NULL: FILE.rejects.csv */
	bool update, dry_run;
	const struct suppress_ctx *suppress;    /* the pepper: required */
	void (*progress)(const struct import_progress *p, void *arg);
	void *progress_arg;
};

struct import_summary {
	char sha256[65];
	char list[65];
	unsigned long rows;             /* data records read (no header) */
	unsigned long added, updated, unchanged, unsubscribed, suppressed,
	    duplicates, rejected;
	char rejects_path[4096];        /* "" when nothing was rejected */
	double seconds;
};

/* Run the import. EX_USAGE or EX_DATAERR for options and headers that
 * cannot work (an unknown list, column or consent text version, no
 * email column, an expiry not in the future), naming the problem;
 * EX_CANTCREAT when the rejects file cannot be written; database errors
 * as db_exec() gives them. Nothing is stored unless it returns 0, and
 * with dry_run nothing is stored at all. */
int import_run(PGconn *conn, const struct import_options *o,
    struct import_summary *s, struct assent_err *err);

/* Seconds on the monotonic clock, for measuring spans. */
double import_clock(void);

#endif

/*
 * import_private: the CSV reader under import.c (import_csv.c), kept
 * apart so that it can be tested and fuzzed without a database.
 *
 * csvin_read() streams a file once: every byte goes into SHA-256 and
 * into libcsv (strict RFC 4180: quoted fields with commas, quotes and
 * line breaks; a UTF-8 byte order mark at the start is dropped), read
 * as it comes, 64 KiB at most at a time, so memory stays flat whatever
 * the file's size. Lines end in LF or CRLF, or in CR alone when the
 * file's first line does; libcsv is fed one whole line at a time, so a
 * problem ends with its line wherever the reads fall. Each record is
 * handed to the callback with the line where it starts (a quoted line
 * break moves the next record down). Lines of blanks are skipped.
 *
 * A record that cannot be read comes with error set, the fields read
 * (if any; import.c uses raw instead) and its bytes in raw: a quote
 * where none may be, a CR inside a line of an LF file, a line over
 * CSVIN_RECORD_MAX bytes, more than CSVIN_FIELDS_MAX fields. When such
 * a record spans lines (a quote that runs away, closes wrongly or never
 * closes), only its first line is reported and the lines after it are
 * read again as records of their own: no line goes uncounted.
 *
 * Memory: the record, its fields and the error text belong to the
 * reader and are valid during the callback only. Fields are
 * NUL-terminated (a field may contain a NUL byte too: use len).
 */
#ifndef ASSENT_IMPORT_PRIVATE_H
#define ASSENT_IMPORT_PRIVATE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "assent/err.h"

#define CSVIN_CHUNK       (64 * 1024)
#define CSVIN_RECORD_MAX  (64 * 1024)   /* bytes of one record */
#define CSVIN_FIELDS_MAX  256

struct csvin_field {
	const char *s;
	size_t len;
};

struct csvin_record {
	const struct csvin_field *fields;
	size_t nfields;
	unsigned long line;             /* where the record starts, from 1 */
	const char *error;              /* NULL, or why it could not be read */
	/* the record's bytes as read (line ends kept inside, the last one
	 * dropped), at most CSVIN_RECORD_MAX of them */
	const char *raw;
	size_t raw_len;
};

/* Return 0 to go on, -1 to stop (csvin_read() then returns -1 with the
 * error the callback put in err). */
typedef int (*csvin_record_cb)(const struct csvin_record *rec, void *arg,
    struct assent_err *err);

/* Called after every read of the file with the bytes read so far. */
typedef void (*csvin_progress_cb)(uint64_t bytes, void *arg);

struct csvin_handlers {
	csvin_record_cb record;
	csvin_progress_cb progress;     /* may be NULL */
	void *arg;
};

/* Read in to its end. sha256_r gets the SHA-256 of every byte read
 * (BOM included), as 64 lower-case hex digits. -1 on a read error
 * (EX_IOERR naming what) or when the callback stopped. */
int csvin_read(FILE *in, const char *what, const struct csvin_handlers *h,
    char sha256_r[65], struct assent_err *err);

#endif

/* --- what import.c and import_merge.c share ------------------------------ */

/* --- import_time.c --------------------------------------------------------- */

/* "YYYY-MM-DD" (midnight UTC) or "YYYY-MM-DD[T ]HH:MM[:SS[.frac]]"
 * followed by "Z" or "+HH:MM"/"-HH:MM": microseconds since 1970 UTC
 * in *us_r. -1 for anything else, a date that does not exist (Feb 30)
 * or a year before 1970. */
int import_time_parse(const char *s, int64_t *us_r);

/* us as PostgreSQL reads it back exactly: "2025-01-31 12:00:00.000000+00". */
void import_time_text(int64_t us, char out[64]);

#include <libpq-fe.h>
#include "assent/buf.h"
#include "assent/import.h"

/* What a column of the file is. */
enum import_field {
	IMPORT_IGNORE, IMPORT_EMAIL, IMPORT_NAME, IMPORT_BASIS, IMPORT_EXPIRES,
	IMPORT_COLLECTED, IMPORT_STATUS, IMPORT_ATTRS, IMPORT_UNNAMED,
	IMPORT_ATTR,
};

struct import_column {
	char *header;                   /* as in the file (trimmed) */
	enum import_field field;
	char *attr;                     /* IMPORT_ATTR: the attribute's name */
};

/* One import under way. */
struct import_job {
	PGconn *conn;
	const struct import_options *o;
	struct import_summary *s;
	char list_id[24];
	int64_t now_us;                 /* the transaction's now() */
	char now_text[64];              /* the same as PostgreSQL wrote it */
	char txid[24];                  /* txid_current() */
	char *text_sha256;              /* of the consent text; NULL: none */
	int64_t expires_us, collected_us;       /* the defaults; -1: none */
	struct import_column *cols;
	size_t ncols;
	size_t email_col;
	unsigned long header_line;
	bool header_done, copying;
	struct buf copy;                /* COPY data not yet sent */
	unsigned long staged;           /* rows sent to the staging table */
	unsigned long last_line;
	FILE *rejects;                  /* open once something is rejected */
	bool rejects_placed;            /* renamed into place */
	char rejects_tmp[4096 + 8];
	const char *file_name;          /* as recorded: the path, or "(stdin)" */
	double started;                 /* import_clock() at the start */
};

/* Write one line to the rejects file (opened on first use): line,
 * reason, then nfields fields. */
int import_reject_write(struct import_job *j, unsigned long line,
    const char *reason, const struct csvin_field *fields, size_t nfields,
    struct assent_err *err);

/* COPY FROM STDIN (copy_sql) on the job's connection: start, add a
 * field to the buffer (NULL: SQL NULL; last ends the row), send what
 * is buffered, end (abort_why non-NULL: abandon it). */
int import_copy_start(struct import_job *j, const char *copy_sql,
    struct assent_err *err);
void import_copy_field(struct buf *b, const char *s, bool last);
int import_copy_flush(struct import_job *j, struct assent_err *err);
int import_copy_end(struct import_job *j, const char *abort_why,
    struct assent_err *err);

/* The set-based part, after the staging table is filled: plan, write,
 * list what was skipped. In the job's transaction. */
int import_merge(struct import_job *j, struct assent_err *err);

/* The staging table's definition (import_merge.c). */
extern const char import_staging_sql[];

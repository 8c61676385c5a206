/* import: read and check a CSV file's rows into the staging table
 * (import.h); import_merge.c does the rest. */
#include <ctype.h>
#include <csv.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <sysexits.h>
#include <time.h>
#include <unistd.h>
#include <jansson.h>

#include "assent/addr.h"
#include "assent/db.h"
#include "assent/import.h"
#include "assent/ledger.h"
#include "assent/lists.h"
#include "assent/text.h"
#include "assent/xmalloc.h"
#include "import_private.h"

#define IMPORT_COPY_FLUSH (64 * 1024)
#define IMPORT_ANALYZE_ROWS 10000       /* added rows that call for ANALYZE */

/* "FILE.rejects.csv", or "import.rejects.csv" for "-". */
static void
import_rejects_default(const char *path, char *out, size_t size)
{
	if (strcmp(path, "-") == 0)
		snprintf(out, size, "import.rejects.csv");
	else
		snprintf(out, size, "%s.rejects.csv", path);
}

/* An option's time: -1 (none) when s is NULL. */
static int
import_option_time(const char *s, const char *what, int64_t *us_r,
    struct assent_err *err)
{
	*us_r = -1;
	if (s == NULL)
		return 0;
	if (import_time_parse(s, us_r) == -1)
		return err_set(err, EX_USAGE, "%s \"%s\": not a date (YYYY-MM-DD, "
		    "or YYYY-MM-DDTHH:MM[:SS] with Z or +HH:MM)", what, s);
	return 0;
}

/* --- the rejects file --------------------------------------------------------- */

static int
import_rejects_open(struct import_job *j, struct assent_err *err)
{
	const struct import_summary *s = j->s;
	int fd;

	if ((size_t)snprintf(j->rejects_tmp, sizeof(j->rejects_tmp), "%.4080s.XXXXXX",
	    s->rejects_path) >= sizeof(j->rejects_tmp))
		return err_set(err, EX_CANTCREAT, "%s: name too long", s->rejects_path);
	if ((fd = mkstemp(j->rejects_tmp)) == -1 ||
	    (j->rejects = fdopen(fd, "w")) == NULL) {
		if (fd != -1)
			close(fd);
		j->rejects_tmp[0] = '\0';
		return err_set(err, EX_CANTCREAT, "%s: cannot write the rejects "
		    "file: %s", s->rejects_path, strerror(errno));
	}
	fputs("line,reason", j->rejects);
	for (size_t i = 0; i < j->ncols; i++) {
		fputc(',', j->rejects);
		csv_fwrite(j->rejects, j->cols[i].header, strlen(j->cols[i].header));
	}
	fputc('\n', j->rejects);
	return 0;
}

int
import_reject_write(struct import_job *j, unsigned long line, const char *reason,
    const struct csvin_field *fields, size_t nfields, struct assent_err *err)
{
	if (j->rejects == NULL && import_rejects_open(j, err) == -1)
		return -1;
	fprintf(j->rejects, "%lu,", line);
	csv_fwrite(j->rejects, reason, strlen(reason));
	for (size_t i = 0; i < nfields; i++) {
		fputc(',', j->rejects);
		csv_fwrite(j->rejects, fields[i].s, fields[i].len);
	}
	fputc('\n', j->rejects);
	if (ferror(j->rejects))
		return err_set(err, EX_IOERR, "%s: write error: %s",
		    j->s->rejects_path, strerror(errno));
	return 0;
}

static int
import_reject(struct import_job *j, const struct csvin_record *rec,
    const char *reason, struct assent_err *err)
{
	struct csvin_field raw = { rec->raw, rec->raw_len };

	j->s->rejected++;
	/* a record that could not be read: its text as it was, in one field */
	if (rec->error != NULL)
		return import_reject_write(j, rec->line, reason, &raw, 1, err);
	return import_reject_write(j, rec->line, reason, rec->fields,
	    rec->nfields, err);
}

/* A copy of s[0..len) without blanks (spaces, tabs) around it. */
static char *
import_trimmed(const char *s, size_t len)
{
	while (len > 0 && (*s == ' ' || *s == '\t')) {
		s++;
		len--;
	}
	while (len > 0 && (s[len - 1] == ' ' || s[len - 1] == '\t'))
		len--;
	return xstrndup(s, len);
}

/* --- the header ---------------------------------------------------------------- */

static const struct {
	const char *header;
	enum import_field field;
} import_known[] = {
	{ "email", IMPORT_EMAIL }, { "e-mail", IMPORT_EMAIL },
	{ "email address", IMPORT_EMAIL }, { "email_address", IMPORT_EMAIL },
	{ "name", IMPORT_NAME }, { "full name", IMPORT_NAME },
	{ "full_name", IMPORT_NAME }, { "basis", IMPORT_BASIS },
	{ "expires", IMPORT_EXPIRES }, { "collected_at", IMPORT_COLLECTED },
	/* what assent export writes, so that its files come back in */
	{ "status", IMPORT_STATUS }, { "attrs", IMPORT_ATTRS },
	{ "basis_expires_at", IMPORT_EXPIRES }, { "subscribed_at", IMPORT_IGNORE },
	{ "last_event_at", IMPORT_IGNORE }, { "last_event_action", IMPORT_IGNORE },
	{ "last_event_channel", IMPORT_IGNORE }, { "suppressed", IMPORT_IGNORE },
	{ NULL, IMPORT_IGNORE },
};

/* FIELD of --map: email, name, basis, expires, collected_at, attr.KEY, -. */
static int
import_map_field(const char *f, struct import_column *c, struct assent_err *err)
{
	static const struct {
		const char *name;
		enum import_field field;
	} fields[] = {
		{ "-", IMPORT_IGNORE }, { "email", IMPORT_EMAIL },
		{ "name", IMPORT_NAME }, { "basis", IMPORT_BASIS },
		{ "expires", IMPORT_EXPIRES }, { "collected_at", IMPORT_COLLECTED },
		{ "status", IMPORT_STATUS }, { "attrs", IMPORT_ATTRS },
	};

	free(c->attr);
	c->attr = NULL;
	if (strncmp(f, "attr.", 5) == 0 && f[5] != '\0') {
		if (text_check_line(f + 5, IMPORT_ATTR_KEY_MAX, false,
		    "attribute name", err) == -1)
			return -1;
		c->field = IMPORT_ATTR;
		c->attr = xstrdup(f + 5);
		return 0;
	}
	for (size_t k = 0; k < sizeof(fields) / sizeof(fields[0]); k++)
		if (strcmp(f, fields[k].name) == 0) {
			c->field = fields[k].field;
			return 0;
		}
	return err_set(err, EX_USAGE, "--map: unknown field \"%s\" (email, name, "
	    "basis, expires, collected_at, status, attrs, attr.NAME, or - to "
	    "ignore the column)", f);
}

/* The header's columns, as a list for messages. */
static void
import_header_list(const struct import_job *j, char *out, size_t size)
{
	size_t used = 0;

	out[0] = '\0';
	for (size_t i = 0; i < j->ncols && used + 8 < size; i++)
		used += (size_t)snprintf(out + used, size - used, "%s\"%.60s\"",
		    i > 0 ? ", " : "", j->cols[i].header);
}

static int
import_apply_maps(struct import_job *j, struct assent_err *err)
{
	char cols[512];

	for (size_t m = 0; m < j->o->nmaps; m++) {
		const char *map = j->o->maps[m], *eq = strrchr(map, '=');
		size_t i;

		if (eq == NULL || eq == map)
			return err_set(err, EX_USAGE, "--map \"%s\": write COLUMN=FIELD",
			    map);
		for (i = 0; i < j->ncols; i++)
			if (strlen(j->cols[i].header) == (size_t)(eq - map) &&
			    strncasecmp(j->cols[i].header, map, (size_t)(eq - map)) == 0)
				break;
		if (i == j->ncols) {
			import_header_list(j, cols, sizeof(cols));
			return err_set(err, EX_USAGE, "--map \"%s\": no column \"%.*s\" "
			    "in the header (it has %s)", map, (int)(eq - map), map, cols);
		}
		if (import_map_field(eq + 1, &j->cols[i], err) == -1)
			return -1;
	}
	return 0;
}

/* One column by its header's name: a known field or an attribute. A
 * column without a name (a spreadsheet's trailing comma) must stay
 * empty in every row. */
static int
import_column_init(struct import_job *j, size_t i, const struct csvin_field *f,
    struct assent_err *err)
{
	struct import_column *c = &j->cols[i];

	c->header = import_trimmed(f->s, f->len);
	if (memchr(f->s, '\0', f->len) != NULL || !text_is_utf8(f->s, f->len))
		return err_set(err, EX_DATAERR, "%s:%lu: column %zu of the header "
		    "is not valid UTF-8 text", j->file_name, j->header_line, i + 1);
	if (c->header[0] == '\0') {
		c->field = IMPORT_UNNAMED;
		return 0;
	}
	c->field = IMPORT_ATTR;
	for (size_t k = 0; import_known[k].header != NULL; k++)
		if (strcasecmp(c->header, import_known[k].header) == 0)
			c->field = import_known[k].field;
	for (size_t k = 0; k < i; k++)
		if (strcasecmp(j->cols[k].header, c->header) == 0)
			return err_set(err, EX_DATAERR, "%s:%lu: column \"%s\" appears "
			    "twice in the header", j->file_name, j->header_line,
			    c->header);
	if (c->field == IMPORT_ATTR) {
		struct assent_err why;

		if (text_check_line(c->header, IMPORT_ATTR_KEY_MAX, false,
		    "column name", &why) == -1)
			return err_set(err, EX_DATAERR, "%s:%lu: column %zu: %s",
			    j->file_name, j->header_line, i + 1, why.msg);
		c->attr = xstrdup(c->header);
	}
	return 0;
}

/* Exactly one column for email; at most one for each other field. */
static int
import_check_columns(struct import_job *j, struct assent_err *err)
{
	static const char *names[] = { "", "email", "name", "basis", "expires",
	    "collected_at", "status", "attrs", "", "" };
	size_t seen[IMPORT_ATTR + 1] = { 0 };
	char cols[512];

	for (size_t i = 0; i < j->ncols; i++) {
		enum import_field f = j->cols[i].field;

		if (f != IMPORT_IGNORE && f != IMPORT_ATTR && f != IMPORT_UNNAMED &&
		    seen[f]++ > 0)
			return err_set(err, EX_USAGE, "%s:%lu: two columns are %s: map "
			    "one of them elsewhere with --map COLUMN=FIELD",
			    j->file_name, j->header_line, names[f]);
		if (f == IMPORT_EMAIL)
			j->email_col = i;
		for (size_t k = 0; f == IMPORT_ATTR && k < i; k++)
			if (j->cols[k].field == IMPORT_ATTR &&
			    strcmp(j->cols[k].attr, j->cols[i].attr) == 0)
				return err_set(err, EX_USAGE, "%s:%lu: two columns are "
				    "attribute \"%s\"", j->file_name, j->header_line,
				    j->cols[i].attr);
	}
	if (seen[IMPORT_EMAIL] == 0) {
		import_header_list(j, cols, sizeof(cols));
		return err_set(err, EX_DATAERR, "%s:%lu: no email column (the header "
		    "has %s): name one with --map COLUMN=email%s", j->file_name,
		    j->header_line, cols, j->ncols == 1 && strchr(j->cols[0].header,
		    ';') != NULL ? "; is the file separated by ';'? assent reads "
		    "commas (RFC 4180)" : "");
	}
	if (j->o->basis == NULL && seen[IMPORT_BASIS] == 0)
		return err_set(err, EX_USAGE, "no consent basis: give --basis "
		    "express|implied, or a basis column");
	return 0;
}

static int
import_header(struct import_job *j, const struct csvin_record *rec,
    struct assent_err *err)
{
	if (rec->error != NULL)
		return err_set(err, EX_DATAERR, "%s:%lu: the header cannot be read: %s",
		    j->file_name, rec->line, rec->error);
	j->header_line = rec->line;
	j->ncols = rec->nfields;
	j->cols = xcalloc(j->ncols, sizeof(*j->cols));
	for (size_t i = 0; i < j->ncols; i++)
		if (import_column_init(j, i, &rec->fields[i], err) == -1)
			return -1;
	if (import_apply_maps(j, err) == -1 || import_check_columns(j, err) == -1)
		return -1;
	j->header_done = true;
	return 0;
}

/* --- one row ------------------------------------------------------------------ */

/* COPY text format: backslash, tab, LF and CR escaped. */
static void
import_copy_text(struct buf *b, const char *s, size_t len)
{
	size_t start = 0;

	for (size_t i = 0; i < len; i++) {
		const char *rep = s[i] == '\\' ? "\\\\" : s[i] == '\t' ? "\\t" :
		    s[i] == '\n' ? "\\n" : s[i] == '\r' ? "\\r" : NULL;

		if (rep == NULL)
			continue;
		buf_add(b, s + start, i - start);
		buf_add(b, rep, 2);
		start = i + 1;
	}
	buf_add(b, s + start, len - start);
}

void
import_copy_field(struct buf *b, const char *s, bool last)
{
	if (s == NULL)
		buf_add(b, "\\N", 2);
	else
		import_copy_text(b, s, strlen(s));
	buf_add(b, last ? "\n" : "\t", 1);
}

/* A JSON string (UTF-8 checked before). */
static void
import_json_string(struct buf *b, const char *s, size_t len)
{
	char esc[8];

	buf_add(b, "\"", 1);
	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)s[i];

		if (c == '"' || c == '\\') {
			esc[0] = '\\';
			esc[1] = (char)c;
			buf_add(b, esc, 2);
		} else if (c < 0x20 || c == 0x7f) {
			snprintf(esc, sizeof(esc), "\\u%04x", c);
			buf_add(b, esc, 6);
		} else {
			buf_add(b, s + i, 1);
		}
	}
	buf_add(b, "\"", 1);
}

/* What a row says, checked. */
struct import_row {
	struct addr addr;
	const char *name, *basis;
	int64_t expires_us, collected_us;
	struct buf attrs;
	bool file_unsubscribed;         /* its status column says so */
};

/* A field fit for storing: no NUL, UTF-8, not over the limit. */
static const char *
import_check_field(const struct import_job *j, const struct csvin_record *rec,
    size_t i, char *why, size_t size)
{
	const struct csvin_field *f = &rec->fields[i];

	if (memchr(f->s, '\0', f->len) != NULL)
		snprintf(why, size, "column \"%.60s\" holds a NUL byte", j->cols[i].header);
	else if (!text_is_utf8(f->s, f->len))
		snprintf(why, size, "column \"%.60s\" is not valid UTF-8", j->cols[i].header);
	else if (f->len > IMPORT_FIELD_MAX)
		snprintf(why, size, "column \"%.60s\" is over %d bytes (%zu)",
		    j->cols[i].header, IMPORT_FIELD_MAX, f->len);
	else
		return NULL;
	return why;
}

static const char *
import_row_time(const char *v, int64_t fallback, const char *what, int64_t *us_r,
    char *why, size_t size)
{
	*us_r = fallback;
	if (v == NULL || *v == '\0')
		return NULL;
	if (import_time_parse(v, us_r) == 0)
		return NULL;
	snprintf(why, size, "%s \"%.60s\" is not a date", what, v);
	return why;
}

/* The consent basis of the row: its own or the option's. */
static const char *
import_row_basis(const struct import_job *j, struct import_row *r, char *why,
    size_t size)
{
	if (r->basis == NULL || *r->basis == '\0')
		r->basis = j->o->basis;
	if (r->basis == NULL)
		return "no consent basis";
	if (strcmp(r->basis, "express") != 0 && strcmp(r->basis, "implied") != 0) {
		snprintf(why, size, "consent basis \"%.40s\" is neither express nor "
		    "implied", r->basis);
		return why;
	}
	if (strcmp(r->basis, "express") == 0) {
		r->expires_us = -1;     /* express consent lasts until withdrawn */
		return NULL;
	}
	if (r->expires_us < 0)
		return "implied consent without an expiry (--expires, or an "
		    "expires column)";
	if (r->expires_us <= j->now_us)
		return "implied consent that has already expired";
	return NULL;
}

/* One attribute into the row's JSON object: value a text, or (quote
 * false) JSON already. */
static void
import_attr_add(struct import_row *r, const char *key, size_t keylen,
    const char *value, size_t len, bool quote)
{
	buf_add(&r->attrs, r->attrs.len == 0 ? "{" : ",", 1);
	import_json_string(&r->attrs, key, keylen);
	buf_add(&r->attrs, ":", 1);
	if (quote)
		import_json_string(&r->attrs, value, len);
	else
		buf_add(&r->attrs, value, len);
}

/* A status column (assent export writes one): confirmed or empty is
 * imported; a person the file says unsubscribed is skipped as one who
 * left; pending consent was never confirmed. */
static const char *
import_row_status(struct import_row *r, const char *v, char *why, size_t size)
{
	if (*v == '\0' || strcmp(v, "confirmed") == 0)
		return NULL;
	if (strcmp(v, "unsubscribed") == 0) {
		r->file_unsubscribed = true;
		return NULL;
	}
	if (strcmp(v, "pending") == 0)
		return "status pending in the file: the subscription was never "
		    "confirmed, so there is no consent to import";
	snprintf(why, size, "status \"%.40s\" is none of confirmed, pending, "
	    "unsubscribed", v);
	return why;
}

/* An attrs column (assent export writes one): a JSON object whose
 * members become attributes. */
static const char *
import_row_attrs(struct import_row *r, const char *v, size_t len)
{
	json_t *o, *value;
	const char *key;
	char *text;

	if (len == 0)
		return NULL;
	if ((o = json_loadb(v, len, JSON_REJECT_DUPLICATES, NULL)) == NULL ||
	    !json_is_object(o)) {
		json_decref(o);
		return "attrs is not a JSON object";
	}
	json_object_foreach(o, key, value) {
		if (strlen(key) > IMPORT_ATTR_KEY_MAX || key[0] == '\0') {
			json_decref(o);
			return "attrs has a member name that is empty or over 64 bytes";
		}
		text = json_dumps(value, JSON_COMPACT | JSON_ENCODE_ANY);
		import_attr_add(r, key, strlen(key), text, strlen(text), false);
		free(text);
	}
	json_decref(o);
	return NULL;
}

/* One field into the row by its column. */
static const char *
import_row_field(const struct import_job *j, struct import_row *r, size_t i,
    const char *v, size_t len, struct assent_err *err, char *why, size_t size)
{
	const struct import_column *c = &j->cols[i];

	switch (c->field) {
	case IMPORT_EMAIL: {
		char *email = import_trimmed(v, len);
		int rc = addr_parse(email, &r->addr, err);

		free(email);
		return rc == -1 ? err->msg : NULL;
	}
	case IMPORT_NAME:
		r->name = len > 0 ? v : NULL;   /* empty: no name given */
		return text_check_line(v, IMPORT_NAME_MAX, true, "name", err) == -1 ?
		    err->msg : NULL;
	case IMPORT_BASIS:
		r->basis = v;
		return NULL;
	case IMPORT_EXPIRES:
		return import_row_time(v, j->expires_us, "expires", &r->expires_us,
		    why, size);
	case IMPORT_COLLECTED:
		return import_row_time(v, j->collected_us, "collected_at",
		    &r->collected_us, why, size);
	case IMPORT_STATUS:
		return import_row_status(r, v, why, size);
	case IMPORT_ATTRS:
		return import_row_attrs(r, v, len);
	case IMPORT_UNNAMED:
		if (len == 0)
			return NULL;
		snprintf(why, size, "column %zu has no name in the header, yet this "
		    "row has a value there", i + 1);
		return why;
	case IMPORT_ATTR:
		if (len == 0)
			return NULL;
		import_attr_add(r, c->attr, strlen(c->attr), v, len, true);
		return NULL;
	case IMPORT_IGNORE:
		break;
	}
	return NULL;
}

/* Check every field of a record; NULL when the row can be staged. */
static const char *
import_row_check(struct import_job *j, const struct csvin_record *rec,
    struct import_row *r, struct assent_err *err, char *why, size_t size)
{
	const char *bad, *role;

	if (rec->error != NULL)
		return rec->error;
	if (rec->nfields != j->ncols) {
		snprintf(why, size, "%zu field%s where the header has %zu",
		    rec->nfields, rec->nfields == 1 ? "" : "s", j->ncols);
		return why;
	}
	for (size_t i = 0; i < rec->nfields; i++)
		if (j->cols[i].field != IMPORT_IGNORE &&
		    ((bad = import_check_field(j, rec, i, why, size)) != NULL ||
		    (bad = import_row_field(j, r, i, rec->fields[i].s,
		    rec->fields[i].len, err, why, size)) != NULL))
			return bad;
	if ((bad = import_row_basis(j, r, why, size)) != NULL)
		return bad;
	if (r->collected_us > j->now_us)
		return "consent collected in the future";
	if ((role = addr_role(&r->addr)) != NULL) {
		snprintf(why, size, "role address (%s@): it reaches whoever runs "
		    "the service, not a person who consented", role);
		return why;
	}
	return NULL;
}

int
import_copy_flush(struct import_job *j, struct assent_err *err)
{
	if (j->copy.len == 0)
		return 0;
	if (PQputCopyData(j->conn, j->copy.data, (int)j->copy.len) != 1)
		return err_set(err, EX_UNAVAILABLE, "COPY: %s",
		    PQerrorMessage(j->conn));
	buf_reset(&j->copy);
	return 0;
}

/* line, email, key, domain, hash, mbox, mbox_hash, name, attrs, basis,
 * expires, collected: see import_staging_sql. */
static int
import_stage(struct import_job *j, unsigned long line, struct import_row *r,
    struct assent_err *err)
{
	const struct suppress_ctx *ctx = j->o->suppress;
	char num[24], hash[SUPPRESS_HASH_HEX + 1], mbox[ADDR_MAX + 1];
	char mbox_hash[SUPPRESS_HASH_HEX + 1], t1[64], t2[64];
	bool has_mbox;

	suppress_hash(ctx, r->addr.key, hash);
	has_mbox = ctx->gmail_mailbox_key && suppress_mailbox_key(r->addr.key, mbox);
	if (has_mbox)
		suppress_hash(ctx, mbox, mbox_hash);
	if (r->attrs.len > 0)
		buf_add(&r->attrs, "}", 1);
	if (r->expires_us >= 0)
		import_time_text(r->expires_us, t1);
	if (r->collected_us >= 0)
		import_time_text(r->collected_us, t2);
	snprintf(num, sizeof(num), "%lu", line);
	import_copy_field(&j->copy, num, false);
	import_copy_field(&j->copy, r->addr.address, false);
	import_copy_field(&j->copy, r->addr.key, false);
	import_copy_field(&j->copy, r->addr.domain, false);
	import_copy_field(&j->copy, hash, false);
	import_copy_field(&j->copy, has_mbox ? mbox : NULL, false);
	import_copy_field(&j->copy, has_mbox ? mbox_hash : NULL, false);
	import_copy_field(&j->copy, r->name, false);
	import_copy_field(&j->copy, r->attrs.len > 0 ? r->attrs.data : NULL, false);
	import_copy_field(&j->copy, r->basis, false);
	import_copy_field(&j->copy, r->expires_us >= 0 ? t1 : NULL, false);
	import_copy_field(&j->copy, r->collected_us >= 0 ? t2 : NULL, true);
	j->staged++;
	return j->copy.len >= IMPORT_COPY_FLUSH ? import_copy_flush(j, err) : 0;
}

/* The file says the person left: never subscribed, counted with those
 * who left the list. */
static int
import_skip_unsubscribed(struct import_job *j, const struct csvin_record *rec,
    struct assent_err *err)
{
	j->s->unsubscribed++;
	return import_reject_write(j, rec->line, "unsubscribed, as the file says",
	    rec->fields, rec->nfields, err);
}

static int
import_on_record(const struct csvin_record *rec, void *arg, struct assent_err *err)
{
	struct import_job *j = arg;
	struct import_row r;
	struct assent_err why_err;
	char why[300];
	const char *bad;
	int rc;

	if (!j->header_done)
		return import_header(j, rec, err);
	j->s->rows++;
	j->last_line = rec->line;
	memset(&r, 0, sizeof(r));
	r.expires_us = j->expires_us;
	r.collected_us = j->collected_us;
	buf_init(&r.attrs);
	if ((bad = import_row_check(j, rec, &r, &why_err, why, sizeof(why))) != NULL)
		rc = import_reject(j, rec, bad, err);
	else if (r.file_unsubscribed)
		rc = import_skip_unsubscribed(j, rec, err);
	else
		rc = import_stage(j, rec->line, &r, err);
	buf_free(&r.attrs);
	return rc;
}

static void
import_on_progress(uint64_t bytes, void *arg)
{
	struct import_job *j = arg;
	struct import_progress p = { "reading", bytes, j->o->size, j->s->rows,
	    import_clock() - j->started };

	if (j->o->progress != NULL)
		j->o->progress(&p, j->o->progress_arg);
}

/* --- the run ----------------------------------------------------------------- */

/* What every event will carry, checked before a row is read. */
static int
import_check_evidence(const struct import_job *j, struct assent_err *err)
{
	const struct ledger_evidence ev = {
		.source = j->o->source, .operator_name = j->o->operator_name,
		.consent_text_version = j->o->consent_text,
		.import_file = j->file_name, .import_line = "1",
		.import_sha256 = "0000000000000000000000000000000000000000000000000000000000000000",
	};

	return ledger_evidence_check(&ev, err);
}

/* The list, the wording, the times: everything checked before a row is read. */
static int
import_prepare(struct import_job *j, struct assent_err *err)
{
	const struct import_options *o = j->o;
	const char *params[] = { o->consent_text };
	PGresult *res;

	if (import_option_time(o->expires, "--expires", &j->expires_us, err) == -1 ||
	    import_option_time(o->collected_at, "--collected-at", &j->collected_us,
	    err) == -1)
		return -1;
	if (o->basis != NULL && strcmp(o->basis, "express") != 0 &&
	    strcmp(o->basis, "implied") != 0)
		return err_set(err, EX_USAGE, "--basis takes express or implied");
	if (o->basis != NULL && strcmp(o->basis, "express") == 0 && o->expires != NULL)
		return err_set(err, EX_USAGE, "--expires goes with --basis implied: "
		    "express consent lasts until withdrawn");
	if (import_check_evidence(j, err) == -1 ||
	    lists_lookup(j->conn, o->list, j->list_id, NULL, err) == -1)
		return -1;
	if (db_exec(j->conn, &res, err, "SELECT (extract(epoch FROM now()) "
	    "* 1000000)::bigint, now(), txid_current(), $1::text IS NULL OR "
	    "EXISTS (SELECT 1 FROM consent_texts WHERE version = $1), (SELECT "
	    "sha256 FROM consent_texts WHERE version = $1)", 1, params) == -1)
		return -1;
	j->now_us = strtoll(PQgetvalue(res, 0, 0), NULL, 10);
	snprintf(j->now_text, sizeof(j->now_text), "%s", PQgetvalue(res, 0, 1));
	snprintf(j->txid, sizeof(j->txid), "%s", PQgetvalue(res, 0, 2));
	bool known = PQgetvalue(res, 0, 3)[0] == 't';
	if (!PQgetisnull(res, 0, 4))
		j->text_sha256 = xstrdup(PQgetvalue(res, 0, 4));
	PQclear(res);
	if (!known)
		return err_set(err, EX_DATAERR, "unknown consent text \"%.64s\" "
		    "(see \"assent consent-text ls\")", o->consent_text);
	if (o->basis != NULL && strcmp(o->basis, "implied") == 0 &&
	    (j->expires_us < 0 || j->expires_us <= j->now_us))
		return err_set(err, EX_USAGE, "--basis implied needs --expires with "
		    "a date in the future");
	if (j->collected_us > j->now_us)
		return err_set(err, EX_USAGE, "--collected-at is in the future");
	return 0;
}

int
import_copy_start(struct import_job *j, const char *copy_sql,
    struct assent_err *err)
{
	PGresult *res = PQexec(j->conn, copy_sql);

	if (PQresultStatus(res) != PGRES_COPY_IN) {
		err_set(err, EX_UNAVAILABLE, "%s: %s", copy_sql,
		    PQerrorMessage(j->conn));
		PQclear(res);
		return -1;
	}
	PQclear(res);
	j->copying = true;
	return 0;
}

int
import_copy_end(struct import_job *j, const char *abort_why, struct assent_err *err)
{
	PGresult *res;
	int rc = 0;

	if (!j->copying)
		return 0;
	j->copying = false;
	if (abort_why == NULL && import_copy_flush(j, err) == -1)
		abort_why = "stopped";
	if (PQputCopyEnd(j->conn, abort_why) != 1)
		rc = err_set(err, EX_UNAVAILABLE, "COPY: %s", PQerrorMessage(j->conn));
	while ((res = PQgetResult(j->conn)) != NULL) {
		if (abort_why == NULL && rc == 0 &&
		    PQresultStatus(res) != PGRES_COMMAND_OK)
			rc = err_set(err, EX_SOFTWARE, "COPY: %s",
			    PQresultErrorMessage(res));
		PQclear(res);
	}
	return rc;
}

static int
import_read(struct import_job *j, struct assent_err *err)
{
	const struct csvin_handlers h = { import_on_record, import_on_progress, j };
	int rc;

	if (db_exec(j->conn, NULL, err, import_staging_sql, 0, NULL) == -1 ||
	    import_copy_start(j, "COPY import_rows FROM STDIN", err) == -1)
		return -1;
	rc = csvin_read(j->o->in, j->file_name, &h, j->s->sha256, err);
	if (rc == 0 && !j->header_done)
		rc = err_set(err, EX_DATAERR, "%s: empty file: no header", j->file_name);
	if (import_copy_end(j, rc == 0 ? NULL : "import stopped", rc == 0 ? err :
	    &(struct assent_err){ 0 }) == -1)
		rc = -1;
	return rc;
}

/* Is path a rejects file an earlier run wrote (its header is ours)? */
static bool
import_is_rejects_file(const char *path)
{
	char head[12] = "";
	FILE *f = fopen(path, "r");
	bool ours;

	if (f == NULL)
		return false;
	ours = fread(head, 1, 11, f) == 11 && memcmp(head, "line,reason", 11) == 0;
	fclose(f);
	return ours;
}

/* Before the commit: the rejects file into place, or (nothing rejected)
 * an earlier run's list of the same name removed, as it would mislead. */
static int
import_rejects_place(struct import_job *j, struct assent_err *err)
{
	if (j->rejects == NULL) {
		if (import_is_rejects_file(j->s->rejects_path))
			unlink(j->s->rejects_path);
		j->s->rejects_path[0] = '\0';
		return 0;
	}
	if (fclose(j->rejects) == EOF || rename(j->rejects_tmp, j->s->rejects_path) == -1) {
		j->rejects = NULL;
		err_set(err, EX_CANTCREAT, "%s: cannot write the rejects file: %s",
		    j->s->rejects_path, strerror(errno));
		unlink(j->rejects_tmp);
		return -1;
	}
	j->rejects = NULL;
	j->rejects_placed = true;
	return 0;
}

/* After a failure: no temporary file left, and no list placed for an
 * import that did not happen. */
static void
import_rejects_drop(struct import_job *j)
{
	if (j->rejects != NULL) {
		fclose(j->rejects);
		j->rejects = NULL;
		unlink(j->rejects_tmp);
	}
	if (j->rejects_placed)
		unlink(j->s->rejects_path);
	j->s->rejects_path[0] = '\0';
}

static void
import_job_free(struct import_job *j)
{
	for (size_t i = 0; i < j->ncols; i++) {
		free(j->cols[i].header);
		free(j->cols[i].attr);
	}
	free(j->cols);
	free(j->text_sha256);
	buf_free(&j->copy);
}

double
import_clock(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* The rejects file must not replace what is being read. */
static int
import_check_rejects_path(const struct import_job *j, struct assent_err *err)
{
	struct stat in, out;

	if (stat(j->s->rejects_path, &out) == -1)
		return 0;
	if (fstat(fileno(j->o->in), &in) == 0 && in.st_dev == out.st_dev &&
	    in.st_ino == out.st_ino)
		return err_set(err, EX_USAGE, "%s: the rejects file would replace "
		    "the file being imported: give another --rejects PATH",
		    j->s->rejects_path);
	if (!S_ISREG(out.st_mode))
		return err_set(err, EX_CANTCREAT, "%s: not a regular file: it "
		    "cannot become the rejects file", j->s->rejects_path);
	if (!import_is_rejects_file(j->s->rejects_path))
		return err_set(err, EX_CANTCREAT, "%s: the file exists and is not "
		    "a rejects file of an earlier import: remove it, or give "
		    "another --rejects PATH", j->s->rejects_path);
	return 0;
}

static int
import_steps(struct import_job *j, struct assent_err *err)
{
	if (import_check_rejects_path(j, err) == -1 || db_begin(j->conn, err) == -1)
		return -1;
	if (import_prepare(j, err) == -1 || import_read(j, err) == -1 ||
	    import_merge(j, err) == -1 || import_rejects_place(j, err) == -1) {
		db_rollback(j->conn);
		return -1;
	}
	if (j->o->dry_run) {
		db_rollback(j->conn);
		return 0;
	}
	return db_commit(j->conn, err);
}

/* After a big import the planner's statistics are far off (an export's
 * cursor then picked a plan minutes slow): refresh them, best effort. */
static void
import_analyze(PGconn *conn)
{
	struct assent_err ignored;

	db_exec(conn, NULL, &ignored, "ANALYZE subscribers, subscriptions, ledger",
	    0, NULL);
}

int
import_run(PGconn *conn, const struct import_options *o,
    struct import_summary *s, struct assent_err *err)
{
	struct import_job j;
	int rc;

	memset(s, 0, sizeof(*s));
	memset(&j, 0, sizeof(j));
	j.conn = conn;
	j.o = o;
	j.s = s;
	j.started = import_clock();
	j.file_name = strcmp(o->path, "-") == 0 ? "(stdin)" : o->path;
	buf_init(&j.copy);
	snprintf(s->list, sizeof(s->list), "%s", o->list);
	if (o->rejects_path != NULL)
		snprintf(s->rejects_path, sizeof(s->rejects_path), "%s", o->rejects_path);
	else
		import_rejects_default(o->path, s->rejects_path, sizeof(s->rejects_path));
	if ((rc = import_steps(&j, err)) == -1)
		import_rejects_drop(&j);
	else if (!o->dry_run && s->added >= IMPORT_ANALYZE_ROWS)
		import_analyze(conn);
	import_job_free(&j);
	s->seconds = import_clock() - j.started;
	return rc;
}

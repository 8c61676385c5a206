/* campaign: campaign records, life cycle, audience and figures; see campaign.h */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "assent/addr.h"
#include "assent/buf.h"
#include "assent/campaign.h"
#include "assent/db.h"
#include "assent/lists.h"
#include "assent/render.h"
#include "assent/text.h"
#include "assent/xmalloc.h"

#define CAMPAIGN_FROM_NAME_MAX 256
#define CAMPAIGN_SUBJECT_MAX   998
#define CAMPAIGN_ISO(col) \
	"to_char(" col ", 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"')"

/* The columns campaign_load() reads, in this order. */
#define CAMPAIGN_SELECT \
	"SELECT id, name, state, subject, from_name, from_address, reply_to," \
	" body_text, body_html, " CAMPAIGN_ISO("scheduled_at") ", force_start," \
	" " CAMPAIGN_ISO("started_at") ", " CAMPAIGN_ISO("finished_at") \
	" FROM campaigns"

/* --- checking what comes in ----------------------------------------------- */

static int
campaign_check_name(const char *name, struct assent_err *err)
{
	char q[TEXT_QUOTE_SIZE];
	size_t len = name != NULL ? strlen(name) : 0;

	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)name[i];

		if (!isalnum(c) && (i == 0 || (c != '.' && c != '_' && c != '-')))
			len = 0;
		if (c >= 0x80)
			len = 0;
	}
	if (len > 0 && len <= CAMPAIGN_NAME_MAX)
		return 0;
	return err_set(err, EX_DATAERR, "invalid campaign name \"%s\": use 1-%d "
	    "letters, digits, \".\", \"_\" or \"-\", starting with a letter or digit",
	    name != NULL ? text_quote(name, strlen(name), q, sizeof(q)) : "",
	    CAMPAIGN_NAME_MAX);
}

/* A template of kind, compiled only to be checked; the part comes first
 * in the message. */
static int
campaign_check_template(const char *text, enum render_kind kind,
    const char *part, struct assent_err *err)
{
	struct render_template *tpl;

	if (render_compile(text, kind, &tpl, err) == -1)
		return err_prefix(err, "%s", part);
	render_free(tpl);
	return 0;
}

static int
campaign_check_subject(const char *subject, struct assent_err *err)
{
	if (subject[0] == '\0')
		return err_set(err, EX_DATAERR, "subject: it is empty");
	if (strlen(subject) > CAMPAIGN_SUBJECT_MAX)
		return err_set(err, EX_DATAERR, "subject: longer than %d bytes",
		    CAMPAIGN_SUBJECT_MAX);
	return campaign_check_template(subject, RENDER_SUBJECT, "subject", err);
}

/* The From as stored: its display name (may be empty) and the address
 * in its normalised form. */
struct campaign_from {
	char name[CAMPAIGN_FROM_NAME_MAX + 1];
	struct addr addr;
};

static void
campaign_trim(const char **s, size_t *len)
{
	while (*len > 0 && (**s == ' ' || **s == '\t')) {
		(*s)++;
		(*len)--;
	}
	while (*len > 0 && ((*s)[*len - 1] == ' ' || (*s)[*len - 1] == '\t'))
		(*len)--;
}

/* "a <b> <x@y>", "Ann <x@y", "x@y>": nothing an operator meant. */
static int
campaign_from_form(const char *from, struct assent_err *err)
{
	char q[TEXT_QUOTE_SIZE];

	return err_set(err, EX_DATAERR, "From: expected \"Name <address>\" or an "
	    "address, not \"%s\"", text_quote(from, strlen(from), q, sizeof(q)));
}

/* Split "Name <addr>", "\"Name\" <addr>" or "<addr>" (s, len: trimmed,
 * ending in '>') into the name and the address inside the brackets. A
 * quoted name may hold '<' and '>'; elsewhere they are refused. */
static int
campaign_split_from(const char *from, const char *s, size_t len,
    const char **name, size_t *nlen, const char **a, size_t *alen,
    struct assent_err *err)
{
	const char *lt, *close;

	*name = s;
	if (s[0] == '"' && (close = memchr(s + 1, '"', len - 1)) != NULL) {
		*name = s + 1;
		*nlen = (size_t)(close - s - 1);
		lt = close + 1;
		while (*lt == ' ' || *lt == '\t')
			lt++;
		if (*lt != '<')
			return campaign_from_form(from, err);
	} else {
		if ((lt = memchr(s, '<', len)) == NULL)
			return campaign_from_form(from, err);
		*nlen = (size_t)(lt - s);
		if (memchr(s, '>', *nlen) != NULL)
			return campaign_from_form(from, err);
	}
	*a = lt + 1;
	*alen = (size_t)(s + len - 1 - *a);
	if (memchr(*a, '<', *alen) != NULL || memchr(*a, '>', *alen) != NULL)
		return campaign_from_form(from, err);
	campaign_trim(name, nlen);
	campaign_trim(a, alen);
	return 0;
}

/* "Name <addr>", "\"Name\" <addr>", "<addr>" or "addr". */
static int
campaign_parse_from(const char *from, struct campaign_from *f,
    struct assent_err *err)
{
	const char *s = from, *name, *a;
	size_t len = strlen(from), nlen = 0, alen;
	char addrtext[ADDR_MAX + 1];

	memset(f, 0, sizeof(*f));
	campaign_trim(&s, &len);
	name = a = s;
	alen = len;
	if (len > 0 && s[len - 1] == '>') {
		if (campaign_split_from(from, s, len, &name, &nlen, &a, &alen,
		    err) == -1)
			return -1;
	} else if (memchr(s, '<', len) != NULL || memchr(s, '>', len) != NULL) {
		return campaign_from_form(from, err);
	}
	if (alen > ADDR_MAX)
		return err_set(err, EX_DATAERR, "From: the address is longer "
		    "than %d bytes", ADDR_MAX);
	memcpy(addrtext, a, alen);
	addrtext[alen] = '\0';
	if (nlen > CAMPAIGN_FROM_NAME_MAX)
		return err_set(err, EX_DATAERR, "From: the name is longer than %d bytes",
		    CAMPAIGN_FROM_NAME_MAX);
	memcpy(f->name, name, nlen);
	f->name[nlen] = '\0';
	if (text_check_line(f->name, CAMPAIGN_FROM_NAME_MAX, true, "From name",
	    err) == -1)
		return -1;
	if (addr_parse(addrtext, &f->addr, err) == -1)
		return err_prefix(err, "From");
	return 0;
}

/* Everything of content that is given, checked. For create all of
 * subject, from and text are required (create true). */
static int
campaign_check_content(const struct campaign_content *c, bool create,
    struct campaign_from *from, struct addr *reply_to, struct assent_err *err)
{
	if (create && (c->nlists == 0 || c->lists == NULL))
		return err_set(err, EX_DATAERR, "a campaign needs at least one list");
	if (c->nlists > CAMPAIGN_LISTS_MAX)
		return err_set(err, EX_DATAERR, "a campaign has at most %d lists",
		    CAMPAIGN_LISTS_MAX);
	if (create && c->subject == NULL)
		return err_set(err, EX_DATAERR, "a campaign needs a subject");
	if (create && c->from == NULL)
		return err_set(err, EX_DATAERR, "a campaign needs a From");
	if (create && c->text == NULL)
		return err_set(err, EX_DATAERR, "a campaign needs a text body");
	if (c->subject != NULL && campaign_check_subject(c->subject, err) == -1)
		return -1;
	if (c->from != NULL && campaign_parse_from(c->from, from, err) == -1)
		return -1;
	if (c->reply_to != NULL && c->reply_to[0] != '\0' &&
	    addr_parse(c->reply_to, reply_to, err) == -1)
		return err_prefix(err, "Reply-To");
	if (c->text != NULL &&
	    campaign_check_template(c->text, RENDER_TEXT, "text body", err) == -1)
		return -1;
	if (c->html != NULL && c->html[0] != '\0' &&
	    campaign_check_template(c->html, RENDER_HTML, "HTML body", err) == -1)
		return -1;
	return 0;
}

/* --- create and edit ------------------------------------------------------ */

/* Inside the transaction: the lists by name, each locked FOR SHARE. */
static int
campaign_set_lists(PGconn *conn, const char *campaign_id,
    const struct campaign_content *c, struct assent_err *err)
{
	char list_id[24];
	const char *params[] = { campaign_id, list_id };

	if (db_exec(conn, NULL, err, "DELETE FROM campaign_lists WHERE campaign_id = $1",
	    1, params) == -1)
		return -1;
	for (size_t i = 0; i < c->nlists; i++) {
		if (lists_lookup(conn, c->lists[i], list_id, NULL, err) == -1)
			return -1;
		if (db_exec(conn, NULL, err, "INSERT INTO campaign_lists (campaign_id,"
		    " list_id) VALUES ($1, $2) ON CONFLICT DO NOTHING", 2, params) == -1)
			return -1;
	}
	return 0;
}

int
campaign_create(PGconn *conn, const char *name,
    const struct campaign_content *content, const char *created_by,
    long long *id_r, struct assent_err *err)
{
	struct campaign_from from;
	struct addr reply_to;
	const char *params[] = {
		name, content->subject, NULL, NULL, NULL, content->text, NULL,
		created_by,
	};
	char id[24];
	PGresult *res;

	if (campaign_check_name(name, err) == -1 ||
	    campaign_check_content(content, true, &from, &reply_to, err) == -1 ||
	    text_check_line(created_by, 200, false, "created by", err) == -1)
		return -1;
	params[2] = from.name;
	params[3] = from.addr.address;
	if (content->reply_to != NULL && content->reply_to[0] != '\0')
		params[4] = reply_to.address;
	if (content->html != NULL && content->html[0] != '\0')
		params[6] = content->html;
	if (db_begin(conn, err) == -1)
		return -1;
	if (db_exec(conn, &res, err, "INSERT INTO campaigns (name, subject, from_name,"
	    " from_address, reply_to, body_text, body_html, created_by)"
	    " VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING id", 8, params) == -1) {
		if (strcmp(db_last_sqlstate(), "23505") == 0)
			err_set(err, EX_DATAERR, "campaign \"%s\" exists already", name);
		goto fail;
	}
	snprintf(id, sizeof(id), "%s", PQgetvalue(res, 0, 0));
	PQclear(res);
	if (campaign_set_lists(conn, id, content, err) == -1) {
		err_prefix(err, "campaign %s", name);
		goto fail;
	}
	if (db_commit(conn, err) == -1)
		goto fail;
	if (id_r != NULL)
		*id_r = strtoll(id, NULL, 10);
	return 0;
fail:
	db_rollback(conn);
	return -1;
}

/* Inside a transaction: the campaign's id and state, its row locked. */
static int
campaign_lock(PGconn *conn, const char *name, char id_r[24], char state_r[16],
    bool *started_r, struct assent_err *err)
{
	const char *params[] = { name };
	PGresult *res;

	if (campaign_check_name(name, err) == -1)
		return -1;
	if (db_exec(conn, &res, err, "SELECT id, state, started_at IS NOT NULL"
	    " FROM campaigns WHERE lower(name) = lower($1) FOR UPDATE", 1, params) == -1)
		return -1;
	if (PQntuples(res) == 0) {
		PQclear(res);
		return err_set(err, EX_DATAERR, "unknown campaign %s "
		    "(see \"assent campaign ls\")", name);
	}
	snprintf(id_r, 24, "%s", PQgetvalue(res, 0, 0));
	snprintf(state_r, 16, "%s", PQgetvalue(res, 0, 1));
	if (started_r != NULL)
		*started_r = PQgetvalue(res, 0, 2)[0] == 't';
	PQclear(res);
	return 0;
}

int
campaign_edit(PGconn *conn, const char *name,
    const struct campaign_content *changes, struct assent_err *err)
{
	struct campaign_from from;
	struct addr reply_to;
	char id[24], state[16];
	const char *params[] = {
		id, changes->subject, NULL, NULL, changes->reply_to, changes->text,
		changes->html,
	};

	if (campaign_check_content(changes, false, &from, &reply_to, err) == -1)
		return -1;
	if (changes->from != NULL) {
		params[2] = from.name;
		params[3] = from.addr.address;
	}
	if (changes->reply_to != NULL && changes->reply_to[0] != '\0')
		params[4] = reply_to.address;
	if (db_begin(conn, err) == -1)
		return -1;
	if (campaign_lock(conn, name, id, state, NULL, err) == -1)
		goto fail;
	if (strcmp(state, "draft") != 0) {
		err_set(err, EX_DATAERR, "campaign %s is %s: only a draft can be edited",
		    name, state);
		goto fail;
	}
	if (db_exec(conn, NULL, err, "UPDATE campaigns SET"
	    " subject = COALESCE($2, subject),"
	    " from_name = COALESCE($3, from_name),"
	    " from_address = COALESCE($4, from_address),"
	    " reply_to = CASE WHEN $5::text IS NULL THEN reply_to"
	    "  WHEN $5 = '' THEN NULL ELSE $5 END,"
	    " body_text = COALESCE($6, body_text),"
	    " body_html = CASE WHEN $7::text IS NULL THEN body_html"
	    "  WHEN $7 = '' THEN NULL ELSE $7 END"
	    " WHERE id = $1", 7, params) == -1)
		goto fail;
	if (changes->nlists > 0 && campaign_set_lists(conn, id, changes, err) == -1) {
		err_prefix(err, "campaign %s", name);
		goto fail;
	}
	if (db_commit(conn, err) == -1)
		goto fail;
	return 0;
fail:
	db_rollback(conn);
	return -1;
}

/* --- loading -------------------------------------------------------------- */

static char *
campaign_dup_or_null(const PGresult *res, int col)
{
	return PQgetisnull(res, 0, col) ? NULL : xstrdup(PQgetvalue(res, 0, col));
}

static void
campaign_copy_time(char *out, size_t len, const PGresult *res, int col)
{
	snprintf(out, len, "%s", PQgetisnull(res, 0, col) ? "" : PQgetvalue(res, 0, col));
}

static struct campaign *
campaign_from_row(const PGresult *res)
{
	struct campaign *c = xcalloc(1, sizeof(*c));

	c->id = strtoll(PQgetvalue(res, 0, 0), NULL, 10);
	snprintf(c->name, sizeof(c->name), "%s", PQgetvalue(res, 0, 1));
	snprintf(c->state, sizeof(c->state), "%s", PQgetvalue(res, 0, 2));
	c->subject = xstrdup(PQgetvalue(res, 0, 3));
	c->from_name = xstrdup(PQgetvalue(res, 0, 4));
	c->from_address = xstrdup(PQgetvalue(res, 0, 5));
	c->reply_to = campaign_dup_or_null(res, 6);
	c->body_text = xstrdup(PQgetvalue(res, 0, 7));
	c->body_html = campaign_dup_or_null(res, 8);
	campaign_copy_time(c->scheduled_at, sizeof(c->scheduled_at), res, 9);
	c->force_start = PQgetvalue(res, 0, 10)[0] == 't';
	campaign_copy_time(c->started_at, sizeof(c->started_at), res, 11);
	campaign_copy_time(c->finished_at, sizeof(c->finished_at), res, 12);
	return c;
}

static int
campaign_load_lists(PGconn *conn, struct campaign *c, struct assent_err *err)
{
	char id[24];
	const char *params[] = { id };
	PGresult *res;
	int n;

	snprintf(id, sizeof(id), "%lld", c->id);
	if (db_exec(conn, &res, err, "SELECT l.id, l.name FROM campaign_lists cl"
	    " JOIN lists l ON l.id = cl.list_id WHERE cl.campaign_id = $1"
	    " ORDER BY l.id", 1, params) == -1)
		return -1;
	n = PQntuples(res);
	c->lists = xcalloc(n > 0 ? (size_t)n : 1, sizeof(*c->lists));
	c->nlists = (size_t)n;
	for (int i = 0; i < n; i++) {
		c->lists[i].id = strtoll(PQgetvalue(res, i, 0), NULL, 10);
		snprintf(c->lists[i].name, sizeof(c->lists[i].name), "%s",
		    PQgetvalue(res, i, 1));
	}
	PQclear(res);
	return 0;
}

/* The one campaign where, matched by param. */
static int
campaign_load_where(PGconn *conn, const char *where, const char *param,
    const char *shown, struct campaign **c_r, struct assent_err *err)
{
	const char *params[] = { param };
	struct campaign *c;
	PGresult *res;
	char *sql;
	int rc;

	*c_r = NULL;
	sql = xasprintf("%s WHERE %s", CAMPAIGN_SELECT, where);
	rc = db_exec(conn, &res, err, sql, 1, params);
	free(sql);
	if (rc == -1)
		return -1;
	if (PQntuples(res) == 0) {
		PQclear(res);
		return err_set(err, EX_DATAERR, "unknown campaign %s "
		    "(see \"assent campaign ls\")", shown);
	}
	c = campaign_from_row(res);
	PQclear(res);
	if (campaign_load_lists(conn, c, err) == -1) {
		campaign_free(c);
		return -1;
	}
	*c_r = c;
	return 0;
}

int
campaign_load(PGconn *conn, const char *name, struct campaign **c_r,
    struct assent_err *err)
{
	*c_r = NULL;
	if (campaign_check_name(name, err) == -1)
		return -1;
	return campaign_load_where(conn, "lower(name) = lower($1)", name, name,
	    c_r, err);
}

int
campaign_load_id(PGconn *conn, long long id, struct campaign **c_r,
    struct assent_err *err)
{
	char idtext[24], shown[32];

	snprintf(idtext, sizeof(idtext), "%lld", id);
	snprintf(shown, sizeof(shown), "with id %lld", id);
	return campaign_load_where(conn, "id = $1", idtext, shown, c_r, err);
}

void
campaign_free(struct campaign *c)
{
	if (c == NULL)
		return;
	free(c->subject);
	free(c->from_name);
	free(c->from_address);
	free(c->reply_to);
	free(c->body_text);
	free(c->body_html);
	free(c->lists);
	free(c);
}

/* --- showing -------------------------------------------------------------- */

/* "a,b,c" (list names hold no comma) as a JSON array. */
static json_t *
campaign_names_json(const char *joined)
{
	json_t *a = json_array();
	const char *p = joined;
	size_t n;

	while (p != NULL && *p != '\0') {
		n = strcspn(p, ",");
		json_array_append_new(a, json_stringn(p, n));
		p += n;
		if (*p == ',')
			p++;
	}
	return a;
}

int
campaign_list(PGconn *conn, json_t **rows_r, struct assent_err *err)
{
	PGresult *res;
	json_t *rows, *row;
	size_t i;

	*rows_r = NULL;
	/* One pass over deliveries, grouped, rather than a count per
	 * campaign: ls reads every campaign's figures anyway. */
	if (db_exec(conn, &res, err, "SELECT c.name, c.state, c.subject, l.lists,"
	    " " CAMPAIGN_ISO("c.scheduled_at") " AS scheduled_at,"
	    " " CAMPAIGN_ISO("c.created_at") " AS created_at,"
	    " COALESCE(d.total, 0) AS total, COALESCE(d.queued, 0) AS queued,"
	    " COALESCE(d.sending, 0) AS sending, COALESCE(d.sent, 0) AS sent,"
	    " COALESCE(d.suppressed, 0) AS suppressed,"
	    " COALESCE(d.failed, 0) AS failed, COALESCE(d.unknown, 0) AS unknown"
	    " FROM campaigns c"
	    " LEFT JOIN (SELECT cl.campaign_id,"
	    "   string_agg(l.name, ',' ORDER BY l.id) AS lists FROM campaign_lists cl"
	    "   JOIN lists l ON l.id = cl.list_id GROUP BY cl.campaign_id) l"
	    "  ON l.campaign_id = c.id"
	    " LEFT JOIN (SELECT campaign_id, count(*) AS total,"
	    "   count(*) FILTER (WHERE state = 'queued') AS queued,"
	    "   count(*) FILTER (WHERE state = 'sending') AS sending,"
	    "   count(*) FILTER (WHERE state = 'sent') AS sent,"
	    "   count(*) FILTER (WHERE state = 'suppressed') AS suppressed,"
	    "   count(*) FILTER (WHERE state = 'failed') AS failed,"
	    "   count(*) FILTER (WHERE state = 'unknown') AS unknown"
	    "   FROM deliveries GROUP BY campaign_id) d ON d.campaign_id = c.id"
	    " ORDER BY c.created_at DESC, c.id DESC", 0, NULL) == -1)
		return -1;
	rows = db_rows_json(res);
	PQclear(res);
	json_array_foreach(rows, i, row)
		json_object_set_new(row, "lists", campaign_names_json(
		    json_string_value(json_object_get(row, "lists"))));
	*rows_r = rows;
	return 0;
}

static json_t *
campaign_str_or_null(const char *s)
{
	return s != NULL && s[0] != '\0' ? json_string(s) : json_null();
}

json_t *
campaign_json(const struct campaign *c)
{
	json_t *o = json_object(), *lists = json_array();

	for (size_t i = 0; i < c->nlists; i++)
		json_array_append_new(lists, json_string(c->lists[i].name));
	json_object_set_new(o, "id", json_integer(c->id));
	json_object_set_new(o, "name", json_string(c->name));
	json_object_set_new(o, "state", json_string(c->state));
	json_object_set_new(o, "lists", lists);
	json_object_set_new(o, "subject", json_string(c->subject));
	json_object_set_new(o, "from_name", json_string(c->from_name));
	json_object_set_new(o, "from_address", json_string(c->from_address));
	json_object_set_new(o, "reply_to", campaign_str_or_null(c->reply_to));
	json_object_set_new(o, "scheduled_at", campaign_str_or_null(c->scheduled_at));
	json_object_set_new(o, "force_start", json_boolean(c->force_start));
	json_object_set_new(o, "started_at", campaign_str_or_null(c->started_at));
	json_object_set_new(o, "finished_at", campaign_str_or_null(c->finished_at));
	json_object_set_new(o, "body_text", json_string(c->body_text));
	json_object_set_new(o, "body_html", campaign_str_or_null(c->body_html));
	return o;
}

/* --- schedule --------------------------------------------------------------- */

static bool
campaign_digits(const char *s, size_t *i, size_t n)
{
	for (size_t k = 0; k < n; k++, (*i)++)
		if (!isdigit((unsigned char)s[*i]))
			return false;
	return true;
}

/* The zone at s[i] to the end: "Z", "+HH:MM", "-HHMM", "+HH". */
static bool
campaign_zone(const char *s, size_t i)
{
	if ((s[i] == 'Z' || s[i] == 'z') && s[i + 1] == '\0')
		return true;
	if (s[i] != '+' && s[i] != '-')
		return false;
	i++;
	if (!campaign_digits(s, &i, 2))
		return false;
	if (s[i] == '\0')
		return true;
	if (s[i] == ':')
		i++;
	return campaign_digits(s, &i, 2) && s[i] == '\0';
}

/* "YYYY-MM-DDTHH:MM[:SS[.frac]]" followed by a zone; the database checks
 * the calendar. A time without a zone is refused: which zone would it be? */
static int
campaign_check_time(const char *s, struct assent_err *err)
{
	char q[TEXT_QUOTE_SIZE];
	size_t i = 0;
	bool form;

	text_quote(s, strlen(s), q, sizeof(q));
	form = campaign_digits(s, &i, 4) && s[i++] == '-' &&
	    campaign_digits(s, &i, 2) && s[i++] == '-' && campaign_digits(s, &i, 2);
	if (form && s[i] == '\0')
		return err_set(err, EX_DATAERR, "time \"%s\" has no time of day and no "
		    "zone: write it as 2030-12-31T18:00:00Z or "
		    "2030-12-31T19:00:00+01:00, or \"now\"", q);
	form = form && (s[i] == 'T' || s[i] == 't' || s[i] == ' ');
	i++;
	form = form && campaign_digits(s, &i, 2) && s[i++] == ':' &&
	    campaign_digits(s, &i, 2);
	if (form && s[i] == ':') {
		i++;
		form = campaign_digits(s, &i, 2);
		if (form && s[i] == '.') {
			i++;
			form = isdigit((unsigned char)s[i]);
			while (isdigit((unsigned char)s[i]))
				i++;
		}
	}
	if (form && s[i] == '\0')
		return err_set(err, EX_DATAERR, "time \"%s\" has no time zone: add Z "
		    "for UTC or an offset such as +01:00 (2030-12-31T18:00:00Z)", q);
	if (form && campaign_zone(s, i))
		return 0;
	return err_set(err, EX_DATAERR, "invalid time \"%s\": use ISO 8601 with a "
	    "zone (2030-12-31T18:00:00Z, 2030-12-31T19:00:00+01:00) or \"now\"", q);
}

/* How long ago, in words: "3 hours", "25 minutes", "40 seconds". */
static void
campaign_age_words(long long secs, char *buf, size_t len)
{
	if (secs >= 3 * 86400)
		snprintf(buf, len, "%lld hours (%lld days)", secs / 3600, secs / 86400);
	else if (secs >= 2 * 3600)
		snprintf(buf, len, "%lld hours", secs / 3600);
	else if (secs >= 3600)
		snprintf(buf, len, "1 hour");
	else if (secs >= 120)
		snprintf(buf, len, "%lld minutes", secs / 60);
	else
		snprintf(buf, len, "%lld seconds", secs);
}

/* Inside the transaction: how many seconds ago at was (negative: in
 * the future), the database casting it. */
static int
campaign_time_age(PGconn *conn, const char *at, long long *age_r,
    struct assent_err *err)
{
	const char *params[] = { at };
	char q[TEXT_QUOTE_SIZE];
	PGresult *res;

	if (db_exec(conn, &res, err, "SELECT floor(extract(epoch FROM"
	    " now() - $1::timestamptz))::bigint", 1, params) == -1) {
		if (err != NULL && err->code == EX_DATAERR)
			err_prefix(err, "invalid time \"%s\"",
			    text_quote(at, strlen(at), q, sizeof(q)));
		return -1;
	}
	*age_r = strtoll(PQgetvalue(res, 0, 0), NULL, 10);
	PQclear(res);
	return 0;
}

static int
campaign_notify(PGconn *conn, const char *channel, struct assent_err *err)
{
	const char *params[] = { channel };

	return db_exec(conn, NULL, err, "SELECT pg_notify($1, '')", 1, params);
}

int
campaign_schedule(PGconn *conn, const char *name, const char *at,
    bool force, long max_age, struct assent_err *err)
{
	char id[24], state[16], ago[48];
	const char *params[] = { id, NULL, force ? "t" : "f" };
	long long age = 0;
	bool now, started;

	now = strcmp(at, "now") == 0;
	if (!now && campaign_check_time(at, err) == -1)
		return err_prefix(err, "campaign %s", name);
	params[1] = now ? NULL : at;
	if (db_begin(conn, err) == -1)
		return -1;
	if (campaign_lock(conn, name, id, state, &started, err) == -1)
		goto fail;
	if (strcmp(state, "draft") != 0 && strcmp(state, "scheduled") != 0 &&
	    (strcmp(state, "paused") != 0 || started)) {
		err_set(err, EX_DATAERR, "campaign %s is %s%s: only a draft, or a "
		    "campaign that has not started, can be scheduled", name, state,
		    strcmp(state, "paused") == 0 ? " after it started" : "");
		goto fail;
	}
	if (!now && campaign_time_age(conn, at, &age, err) == -1) {
		err_prefix(err, "campaign %s", name);
		goto fail;
	}
	if (age > max_age && !force) {
		campaign_age_words(age, ago, sizeof(ago));
		err_set(err, EX_DATAERR, "campaign %s: %s is %s in the past; use "
		    "--force to send it anyway", name, at, ago);
		goto fail;
	}
	if (db_exec(conn, NULL, err, "UPDATE campaigns SET state = 'scheduled',"
	    " scheduled_at = COALESCE($2::timestamptz, now()), force_start = $3"
	    " WHERE id = $1", 3, params) == -1 ||
	    campaign_notify(conn, "assent_campaigns", err) == -1 ||
	    db_commit(conn, err) == -1)
		goto fail;
	return 0;
fail:
	db_rollback(conn);
	return -1;
}

/* --- pause, resume, cancel ---------------------------------------------------- */

/* Lock the campaign, check that its state is one of from (separated by
 * '|'), run update (with $1 = id, $2 = whether it started) and NOTIFY.
 * A campaign already in state to is refused as such ("campaign c is
 * already paused"), any other state with refusal. */
static int
campaign_move(PGconn *conn, const char *name, const char *from, const char *to,
    const char *update, const char *refusal, struct assent_err *err)
{
	char id[24], state[16], pattern[20];
	const char *params[] = { id, NULL };
	bool started;

	if (db_begin(conn, err) == -1)
		return -1;
	if (campaign_lock(conn, name, id, state, &started, err) == -1)
		goto fail;
	params[1] = started ? "t" : "f";
	snprintf(pattern, sizeof(pattern), "|%s|", state);
	if (strstr(from, pattern) == NULL) {
		if (to != NULL && strcmp(state, to) == 0)
			err_set(err, EX_DATAERR, "campaign %s is already %s", name, state);
		else
			err_set(err, EX_DATAERR, "campaign %s is %s: %s", name, state,
			    refusal);
		goto fail;
	}
	if (db_exec(conn, NULL, err, update, strstr(update, "$2") != NULL ? 2 : 1,
	    params) == -1 ||
	    campaign_notify(conn, "assent_campaigns", err) == -1 ||
	    db_commit(conn, err) == -1)
		goto fail;
	return 0;
fail:
	db_rollback(conn);
	return -1;
}

int
campaign_pause(PGconn *conn, const char *name, struct assent_err *err)
{
	return campaign_move(conn, name, "|scheduled|sending|", "paused",
	    "UPDATE campaigns SET state = 'paused' WHERE id = $1",
	    "only a scheduled or sending campaign can be paused", err);
}

int
campaign_resume(PGconn *conn, const char *name, struct assent_err *err)
{
	return campaign_move(conn, name, "|paused|", NULL,
	    "UPDATE campaigns SET state = CASE WHEN $2::bool THEN 'sending'"
	    " ELSE 'scheduled' END WHERE id = $1",
	    "only a paused campaign can be resumed", err);
}

int
campaign_cancel(PGconn *conn, const char *name, struct assent_err *err)
{
	return campaign_move(conn, name, "|draft|scheduled|sending|paused|",
	    "cancelled", "UPDATE campaigns SET state = 'cancelled',"
	    " finished_at = now() WHERE id = $1", "it cannot be cancelled", err);
}

int
campaign_resend_unknown(PGconn *conn, const char *name, long *count_r,
    struct assent_err *err)
{
	char id[24], state[16];
	const char *params[] = { id };
	PGresult *res;
	long n;

	if (db_begin(conn, err) == -1)
		return -1;
	if (campaign_lock(conn, name, id, state, NULL, err) == -1)
		goto fail;
	if (strcmp(state, "cancelled") == 0) {
		err_set(err, EX_DATAERR, "campaign %s is cancelled: nothing of it is "
		    "sent any more", name);
		goto fail;
	}
	if (db_exec(conn, &res, err, "UPDATE deliveries SET state = 'queued',"
	    " next_attempt_at = now(), sender_session = NULL"
	    " WHERE campaign_id = $1 AND state = 'unknown'", 1, params) == -1)
		goto fail;
	n = atol(PQcmdTuples(res));
	PQclear(res);
	if (n > 0 && strcmp(state, "done") == 0 &&
	    db_exec(conn, NULL, err, "UPDATE campaigns SET state = 'sending',"
	    " finished_at = NULL WHERE id = $1", 1, params) == -1)
		goto fail;
	if (n > 0 && (campaign_notify(conn, "assent_campaigns", err) == -1 ||
	    campaign_notify(conn, "assent_work", err) == -1))
		goto fail;
	if (db_commit(conn, err) == -1)
		goto fail;
	if (count_r != NULL)
		*count_r = n;
	return 0;
fail:
	db_rollback(conn);
	return -1;
}

/* --- status and report -------------------------------------------------------- */

/* Column col of row 0 as a number. */
static json_int_t
campaign_col_int(const PGresult *res, int col)
{
	return strtoll(PQgetvalue(res, 0, col), NULL, 10);
}

static json_t *
campaign_col_time(const PGresult *res, int col)
{
	return PQgetisnull(res, 0, col) ? json_null() :
	    json_string(PQgetvalue(res, 0, col));
}

/* The campaign named, its columns as sql says (id first). */
static int
campaign_find(PGconn *conn, const char *sql, const char *name,
    const char *max_age, PGresult **res_r, struct assent_err *err)
{
	const char *params[] = { name, max_age };

	*res_r = NULL;
	if (campaign_check_name(name, err) == -1)
		return -1;
	if (db_exec(conn, res_r, err, sql, max_age != NULL ? 2 : 1, params) == -1)
		return -1;
	if (PQntuples(*res_r) == 0) {
		PQclear(*res_r);
		*res_r = NULL;
		return err_set(err, EX_DATAERR, "unknown campaign %s "
		    "(see \"assent campaign ls\")", name);
	}
	return 0;
}

static const char *const campaign_count_names[] = {
	"queued", "sending", "sent", "suppressed", "failed", "unknown", NULL,
};

/* The deliveries of one campaign counted in one pass. The campaign is
 * found first and its id passed as a parameter, not joined: planned
 * with the id's own statistics, a small campaign is counted through the
 * (campaign_id, subscriber_id) index and a big one by a parallel scan
 * (with a join, the planner guesses an average campaign). */
#define CAMPAIGN_SQL_COUNTS \
	"SELECT count(*)," \
	" count(*) FILTER (WHERE state = 'queued')," \
	" count(*) FILTER (WHERE state = 'sending')," \
	" count(*) FILTER (WHERE state = 'sent')," \
	" count(*) FILTER (WHERE state = 'suppressed')," \
	" count(*) FILTER (WHERE state = 'failed')," \
	" count(*) FILTER (WHERE state = 'unknown')," \
	" count(*) FILTER (WHERE state = 'sent'" \
	"  AND sent_at > now() - interval '60 seconds')," \
	" extract(epoch FROM now() - min(sent_at) FILTER (WHERE state = 'sent'" \
	"  AND sent_at > now() - interval '60 seconds'))" \
	" FROM deliveries WHERE campaign_id = $1"
#define CAMPAIGN_COL_QUEUED  1
#define CAMPAIGN_COL_SENDING 2
#define CAMPAIGN_COL_RECENT  7
#define CAMPAIGN_COL_SPAN    8

/* What status shows of the campaign itself: then its too-old test and
 * its age (seconds since scheduled_at). */
#define CAMPAIGN_SQL_STATUS \
	"SELECT id, name, state, " CAMPAIGN_ISO("scheduled_at") "," \
	" " CAMPAIGN_ISO("started_at") ", " CAMPAIGN_ISO("finished_at") "," \
	" state = 'scheduled' AND NOT force_start" \
	"  AND scheduled_at < now() - make_interval(secs => $2::bigint)," \
	" COALESCE(floor(extract(epoch FROM now() - scheduled_at)), 0)::bigint" \
	" FROM campaigns WHERE lower(name) = lower($1)"
#define CAMPAIGN_COL_TOO_OLD 6

static json_t *
campaign_eta(json_int_t remaining, double rate)
{
	time_t t = time(NULL) + (time_t)((double)remaining / rate + 0.5);
	struct tm tm;
	char buf[32];

	gmtime_r(&t, &tm);
	strftime(buf, sizeof(buf), "%Y-%m-%dT%H:%M:%SZ", &tm);
	return json_string(buf);
}

/* Messages per second: those sent in the last minute over the time
 * from the first of them to now, not over a fixed minute: a campaign
 * that started (or was resumed) 3 s ago is measured over those 3 s. At
 * least a second, so that the very first message does not read as
 * thousands a second. */
static double
campaign_rate(const PGresult *counts)
{
	double n = (double)campaign_col_int(counts, CAMPAIGN_COL_RECENT), secs;

	if (n == 0 || PQgetisnull(counts, 0, CAMPAIGN_COL_SPAN))
		return 0;
	secs = strtod(PQgetvalue(counts, 0, CAMPAIGN_COL_SPAN), NULL);
	return n / (secs > 1.0 ? secs : 1.0);
}

/* rate and eta into o: both null unless the campaign is sending; the
 * eta from what is queued or in flight at that rate, null at rate 0. */
static void
campaign_status_pace(json_t *o, const char *state, const PGresult *counts)
{
	json_int_t remaining;
	double rate;

	if (strcmp(state, "sending") != 0) {
		json_object_set_new(o, "rate", json_null());
		json_object_set_new(o, "eta", json_null());
		return;
	}
	remaining = campaign_col_int(counts, CAMPAIGN_COL_QUEUED) +
	    campaign_col_int(counts, CAMPAIGN_COL_SENDING);
	rate = campaign_rate(counts);
	json_object_set_new(o, "rate", json_real(rate));
	json_object_set_new(o, "eta", rate > 0 ? campaign_eta(remaining, rate) :
	    json_null());
}

static json_t *
campaign_status_note(const PGresult *c, long max_age)
{
	char ago[48], *note;
	json_t *j;

	if (PQgetvalue(c, 0, CAMPAIGN_COL_TOO_OLD)[0] != 't')
		return json_null();
	campaign_age_words(campaign_col_int(c, CAMPAIGN_COL_TOO_OLD + 1), ago,
	    sizeof(ago));
	note = xasprintf("not started: its time is %s in the past, more than "
	    "sending.max_schedule_age (%ld s) allows; reschedule it, or schedule "
	    "it with --force to send it anyway (assent campaign schedule %s --at "
	    "now)", ago, max_age, PQgetvalue(c, 0, 1));
	j = json_string(note);
	free(note);
	return j;
}

static json_t *
campaign_status_json(const PGresult *c, const PGresult *counts, long max_age)
{
	json_t *o = json_object(), *by_state = json_object();

	json_object_set_new(o, "name", json_string(PQgetvalue(c, 0, 1)));
	json_object_set_new(o, "state", json_string(PQgetvalue(c, 0, 2)));
	json_object_set_new(o, "scheduled_at", campaign_col_time(c, 3));
	json_object_set_new(o, "started_at", campaign_col_time(c, 4));
	json_object_set_new(o, "finished_at", campaign_col_time(c, 5));
	json_object_set_new(o, "total", json_integer(campaign_col_int(counts, 0)));
	for (int i = 0; campaign_count_names[i] != NULL; i++)
		json_object_set_new(by_state, campaign_count_names[i],
		    json_integer(campaign_col_int(counts, 1 + i)));
	json_object_set_new(o, "counts", by_state);
	campaign_status_pace(o, PQgetvalue(c, 0, 2), counts);
	json_object_set_new(o, "note", campaign_status_note(c, max_age));
	return o;
}

int
campaign_status(PGconn *conn, const char *name, long max_age,
    json_t **status_r, struct assent_err *err)
{
	char age[24];
	const char *params[1];
	PGresult *c, *counts;

	*status_r = NULL;
	snprintf(age, sizeof(age), "%ld", max_age);
	if (campaign_find(conn, CAMPAIGN_SQL_STATUS, name, age, &c, err) == -1)
		return -1;
	params[0] = PQgetvalue(c, 0, 0);
	if (db_exec(conn, &counts, err, CAMPAIGN_SQL_COUNTS, 1, params) == -1) {
		PQclear(c);
		return -1;
	}
	*status_r = campaign_status_json(c, counts, max_age);
	PQclear(counts);
	PQclear(c);
	return 0;
}

int
campaign_overdue(PGconn *conn, long max_age, json_t **rows_r,
    struct assent_err *err)
{
	char age[24];
	const char *params[] = { age };
	PGresult *res;

	*rows_r = NULL;
	snprintf(age, sizeof(age), "%ld", max_age);
	/* the same test as campaign_start_one()'s, turned round */
	if (db_exec(conn, &res, err, "SELECT id, name,"
	    " " CAMPAIGN_ISO("scheduled_at") " AS scheduled_at FROM campaigns"
	    " WHERE state = 'scheduled' AND NOT force_start"
	    " AND scheduled_at < now() - make_interval(secs => $1::bigint)"
	    " ORDER BY scheduled_at, id", 1, params) == -1)
		return -1;
	*rows_r = db_rows_json(res);
	PQclear(res);
	return 0;
}

/* The report's figures, summed from one grouped pass over the
 * campaign's deliveries (by state and suppression reason). */
struct campaign_tally {
	json_int_t total, sent, suppressed, failed, unknown, in_queue;
	json_int_t bounced, complained, unsubscribed;
	json_t *by_reason;
};

static void
campaign_tally_row(struct campaign_tally *t, const PGresult *res, int r)
{
	const char *state = PQgetvalue(res, r, 0);
	json_int_t n = strtoll(PQgetvalue(res, r, 2), NULL, 10);

	t->total += n;
	if (strcmp(state, "sent") == 0)
		t->sent += n;
	else if (strcmp(state, "failed") == 0)
		t->failed += n;
	else if (strcmp(state, "unknown") == 0)
		t->unknown += n;
	else if (strcmp(state, "queued") == 0 || strcmp(state, "sending") == 0)
		t->in_queue += n;
	else if (strcmp(state, "suppressed") == 0) {
		t->suppressed += n;
		json_object_set_new(t->by_reason, PQgetvalue(res, r, 1),
		    json_integer(n));
	}
	t->bounced += strtoll(PQgetvalue(res, r, 3), NULL, 10);
	t->complained += strtoll(PQgetvalue(res, r, 4), NULL, 10);
	t->unsubscribed += strtoll(PQgetvalue(res, r, 5), NULL, 10);
}

static int
campaign_tally(PGconn *conn, const char *id, struct campaign_tally *t,
    struct assent_err *err)
{
	const char *params[] = { id };
	PGresult *res;

	memset(t, 0, sizeof(*t));
	/* reasons most frequent first: the order the report prints them */
	if (db_exec(conn, &res, err, "SELECT state,"
	    " COALESCE(suppress_reason, 'unspecified'), count(*),"
	    " count(bounced_at), count(complained_at), count(unsubscribed_at)"
	    " FROM deliveries WHERE campaign_id = $1 GROUP BY 1, 2"
	    " ORDER BY 3 DESC, 2", 1, params) == -1)
		return -1;
	t->by_reason = json_object();
	for (int r = 0; r < PQntuples(res); r++)
		campaign_tally_row(t, res, r);
	PQclear(res);
	return 0;
}

/* What came back, from the bounces table: "bounces" {hard, soft, policy,
 * complaint}, each the campaign's deliveries with at least one of that
 * class (a 4xx retried three times is one soft bounce). Policy refusals
 * are the sender's problem: the operator reads them here. */
static int
campaign_bounces(PGconn *conn, const char *id, json_t *report,
    struct assent_err *err)
{
	const char *params[] = { id };
	PGresult *res;

	if (db_exec(conn, &res, err, "SELECT"
	    " count(DISTINCT delivery_id) FILTER (WHERE class = 'hard'),"
	    " count(DISTINCT delivery_id) FILTER (WHERE class = 'soft'),"
	    " count(DISTINCT delivery_id) FILTER (WHERE class = 'policy'),"
	    " count(DISTINCT delivery_id) FILTER (WHERE class = 'complaint')"
	    " FROM bounces WHERE campaign_id = $1", 1, params) == -1)
		return -1;
	json_object_set_new(report, "bounces", json_pack("{s:I, s:I, s:I, s:I}",
	    "hard", (json_int_t)strtoll(PQgetvalue(res, 0, 0), NULL, 10),
	    "soft", (json_int_t)strtoll(PQgetvalue(res, 0, 1), NULL, 10),
	    "policy", (json_int_t)strtoll(PQgetvalue(res, 0, 2), NULL, 10),
	    "complaint", (json_int_t)strtoll(PQgetvalue(res, 0, 3), NULL, 10)));
	PQclear(res);
	return 0;
}

int
campaign_report(PGconn *conn, const char *name, json_t **report_r,
    struct assent_err *err)
{
	struct campaign_tally t;
	json_t *o;
	PGresult *c;
	bool cancelled;

	*report_r = NULL;
	if (campaign_find(conn, "SELECT id, name, state FROM campaigns"
	    " WHERE lower(name) = lower($1)", name, NULL, &c, err) == -1)
		return -1;
	if (campaign_tally(conn, PQgetvalue(c, 0, 0), &t, err) == -1) {
		PQclear(c);
		return -1;
	}
	cancelled = strcmp(PQgetvalue(c, 0, 2), "cancelled") == 0;
	o = json_object();
	json_object_set_new(o, "name", json_string(PQgetvalue(c, 0, 1)));
	json_object_set_new(o, "state", json_string(PQgetvalue(c, 0, 2)));
	json_object_set_new(o, "total", json_integer(t.total));
	json_object_set_new(o, "sent", json_integer(t.sent));
	json_object_set_new(o, "suppressed", json_pack("{s:I, s:o}", "total",
	    t.suppressed, "by_reason", t.by_reason));
	json_object_set_new(o, "failed", json_integer(t.failed));
	json_object_set_new(o, "unknown", json_integer(t.unknown));
	json_object_set_new(o, "not_sent", json_integer(cancelled ? t.in_queue : 0));
	json_object_set_new(o, "bounced", json_integer(t.bounced));
	json_object_set_new(o, "complained", json_integer(t.complained));
	json_object_set_new(o, "unsubscribed", json_integer(t.unsubscribed));
	if (campaign_bounces(conn, PQgetvalue(c, 0, 0), o, err) == -1) {
		json_decref(o);
		PQclear(c);
		return -1;
	}
	PQclear(c);
	*report_r = o;
	return 0;
}

/* --- the scheduler ------------------------------------------------------------ */

/* The audience: each subscriber with a sendable subscription to any of
 * the campaign's lists, once, with the lowest such list. One statement,
 * whatever the size. */
#define CAMPAIGN_SQL_AUDIENCE \
	"INSERT INTO deliveries (campaign_id, subscriber_id, list_id, domain)" \
	" SELECT $1, s.id, min(ss.list_id)," \
	"  substr(s.email_key, strpos(s.email_key, '@') + 1)" \
	" FROM sendable_subscriptions ss" \
	" JOIN campaign_lists cl ON cl.list_id = ss.list_id AND cl.campaign_id = $1" \
	" JOIN subscribers s ON s.id = ss.subscriber_id" \
	" WHERE s.email_key IS NOT NULL" \
	" GROUP BY s.id ORDER BY s.id" \
	" ON CONFLICT (campaign_id, subscriber_id) DO NOTHING"

/* Start one due campaign, if there is one nobody else is starting:
 * *started_r true when it did. */
static int
campaign_start_one(PGconn *conn, const char *max_age, bool *started_r,
    struct assent_err *err)
{
	const char *params[] = { max_age };
	char id[24];
	const char *idp[] = { id };
	PGresult *res;

	*started_r = false;
	if (db_begin(conn, err) == -1)
		return -1;
	if (db_exec(conn, &res, err, "SELECT id FROM campaigns"
	    " WHERE state = 'scheduled' AND scheduled_at <= now()"
	    " AND (force_start OR scheduled_at >= now() - make_interval(secs => $1::bigint))"
	    " ORDER BY scheduled_at, id LIMIT 1 FOR UPDATE SKIP LOCKED", 1, params) == -1)
		goto fail;
	if (PQntuples(res) == 0) {
		PQclear(res);
		db_rollback(conn);
		return 0;
	}
	snprintf(id, sizeof(id), "%s", PQgetvalue(res, 0, 0));
	PQclear(res);
	if (db_exec(conn, NULL, err, CAMPAIGN_SQL_AUDIENCE, 1, idp) == -1 ||
	    db_exec(conn, NULL, err, "UPDATE campaigns SET state = 'sending',"
	    " started_at = now() WHERE id = $1", 1, idp) == -1 ||
	    db_commit(conn, err) == -1) {
		err_prefix(err, "starting campaign %s", id);
		goto fail;
	}
	*started_r = true;
	return 0;
fail:
	db_rollback(conn);
	return -1;
}

int
campaign_start_due(PGconn *conn, long max_age, int *started_r,
    struct assent_err *err)
{
	char age[24];
	bool started;
	int n = 0, rc;

	snprintf(age, sizeof(age), "%ld", max_age);
	do {
		rc = campaign_start_one(conn, age, &started, err);
		if (rc == 0 && started) {
			n++;
			/* after the commit: the workers find it sending */
			rc = campaign_notify(conn, "assent_work", err);
		}
	} while (rc == 0 && started);
	if (started_r != NULL)
		*started_r = n;
	return rc;
}

int
campaign_finish_done(PGconn *conn, int *finished_r, struct assent_err *err)
{
	PGresult *locked, *res;
	struct buf ids;
	int rc = -1;

	if (finished_r != NULL)
		*finished_r = 0;
	/* Lock first, then look, in a second statement limited to what was
	 * locked: its snapshot sees what a resend-unknown that held a lock
	 * committed. (One statement would wait for the lock and then judge
	 * by its old snapshot, finishing a campaign just given work.) */
	if (db_begin(conn, err) == -1)
		return -1;
	if (db_exec(conn, &locked, err, "SELECT id FROM campaigns"
	    " WHERE state = 'sending' FOR UPDATE SKIP LOCKED", 0, NULL) == -1) {
		db_rollback(conn);
		return -1;
	}
	buf_init(&ids);
	db_array_open(&ids);
	for (int i = 0; i < PQntuples(locked); i++)
		db_array_int(&ids, strtoll(PQgetvalue(locked, i, 0), NULL, 10));
	db_array_close(&ids);
	PQclear(locked);
	const char *params[] = { ids.data };
	if (db_exec(conn, &res, err, "UPDATE campaigns c SET state = 'done',"
	    " finished_at = now() WHERE c.id = ANY ($1::bigint[])"
	    " AND NOT EXISTS (SELECT 1 FROM deliveries d"
	    "  WHERE d.campaign_id = c.id AND d.state IN ('queued', 'sending'))",
	    1, params) == -1) {
		db_rollback(conn);
		goto done;
	}
	if (finished_r != NULL)
		*finished_r = atoi(PQcmdTuples(res));
	PQclear(res);
	rc = db_commit(conn, err);
done:
	buf_free(&ids);
	return rc;
}

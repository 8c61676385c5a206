/*
 * web_subscribe: the subscribe form, /s/LIST; see assentd.h and
 * signup.h.
 *
 * GET shows the list's default form: its name and description, the
 * consent wording verbatim, the fields (email, name, the attributes the
 * list takes), the consent version as a hidden field, and a honeypot
 * field, "website", that people never see and bots fill in.
 *
 * POST records a sign-up through signup_submit(). What the page says
 * depends on the list's mode only, never on the address: a new address,
 * a confirmed one, a suppressed one and a filled honeypot all get the
 * same bytes back. Only the form's own mistakes (an address that is not
 * valid, a page that showed an old consent wording, an attribute the
 * list does not take) get a 400 page with the reason, which never says
 * anything about an address's state. Every POST counts against the
 * client's allowance (web.c), valid or not.
 */
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "assent/buf.h"
#include "assent/log.h"
#include "assent/optout.h"
#include "assent/signup.h"
#include "assent/text.h"
#include "assentd.h"

#define WEB_HONEYPOT     "website"
#define WEB_ATTR_PREFIX  "attr."
#define WEB_RETRY        60     /* seconds, Retry-After of a 503 */

/* ---- pages ------------------------------------------------------------- */

static enum MHD_Result
web_signup_unavailable(struct web *web, struct MHD_Connection *conn)
{
	return web_page_retry(web, conn, MHD_HTTP_SERVICE_UNAVAILABLE,
	    "Try again soon", "<p>This cannot be done right now. Please try "
	    "again in a minute.</p>\n", WEB_RETRY);
}

/* The form's own mistake, in signup's words (escaped). */
static enum MHD_Result
web_signup_refused(struct web *web, struct MHD_Connection *conn,
    const char *why)
{
	struct buf b;
	enum MHD_Result ret;

	buf_init(&b);
	buf_add_str(&b, "<p>");
	web_html_escape(&b, why);
	buf_add_str(&b, "</p>\n<p>Please go back, correct the form and send it "
	    "again.</p>\n");
	ret = web_page(web, conn, MHD_HTTP_BAD_REQUEST, "Not subscribed", b.data);
	buf_free(&b);
	return ret;
}

/* The one answer to a sign-up: it depends on the list's mode only. */
static enum MHD_Result
web_signup_done(struct web *web, struct MHD_Connection *conn,
    const char *list, bool double_optin)
{
	struct buf b;
	enum MHD_Result ret;

	buf_init(&b);
	buf_add_str(&b, "<p>");
	if (double_optin) {
		buf_add_str(&b, "Thank you. Unless this address is on the list "
		    "already, we have sent it a message with a link: please "
		    "open it to confirm your subscription to ");
		web_html_escape(&b, list);
		buf_add_str(&b, ".</p>\n<p>Nothing arrived? Look in your spam "
		    "folder, or check the address and send the form again.");
	} else {
		buf_add_str(&b, "Thank you for subscribing to ");
		web_html_escape(&b, list);
		buf_add_str(&b, ".");
	}
	buf_add_str(&b, "</p>\n");
	ret = web_page_list(web, conn, MHD_HTTP_OK, double_optin ?
	    "Check your inbox" : "You are subscribed", list, b.data);
	buf_free(&b);
	return ret;
}

/* ---- the request --------------------------------------------------------- */

/* The list's name from "/s/NAME": NULL unless it could be a list's name
 * (then no query is needed to answer 404). */
static const char *
web_signup_list(const struct web_request *req)
{
	const char *name = req->url + 3;
	struct assent_err err;

	if (text_check_list_name(name, &err) == -1)
		return NULL;
	return name;
}

/* The database, once more after a dropped connection (a restart, a
 * failover). retry says whether this is the second try. */
static PGconn *
web_signup_db(struct web *web, PGconn *db)
{
	if (db != NULL && PQstatus(db) != CONNECTION_BAD)
		return NULL;            /* it was not the connection */
	if ((db = web_db(web)) == NULL)
		log_warnx("http: database unavailable for the subscribe form");
	return db;
}

/* A value cleaned for the ledger: control characters (C0, DEL and C1,
 * which the ledger refuses) become spaces, bytes that are not UTF-8
 * '?', cut to max bytes on a character boundary. Into out (max + 1
 * bytes). What comes out always passes the ledger's checks: a value
 * it refused would fail a sign-up only for an address that is new,
 * and so tell who is known. */
static void
web_signup_clean(const char *s, char *out, size_t max)
{
	unsigned char *p = (unsigned char *)out;
	size_t len = strlen(s);

	if (len > max) {
		len = max;
		/* not in the middle of a character */
		while (len > 0 && ((unsigned char)s[len] & 0xc0) == 0x80)
			len--;
	}
	memcpy(out, s, len);
	out[len] = '\0';
	text_make_utf8(out, len);
	for (size_t i = 0; i < len; i++) {
		if (p[i] < 0x20 || p[i] == 0x7f)
			p[i] = ' ';
		else if (p[i] == 0xc2 && i + 1 < len && p[i + 1] >= 0x80 &&
		    p[i + 1] <= 0x9f)   /* U+0080-U+009F */
			p[i] = p[i + 1] = ' ';
	}
}

/* The form's fields into f (borrowing from form). -1 with the reason in
 * why when the body is not a form this route takes. */
static int
web_signup_fields(const struct web_form *form, struct signup_form *f,
    const char **why)
{
	if (web_form_duplicate(form) != NULL) {
		*why = "The form has a field more than once.";
		return -1;
	}
	for (size_t i = 0; i < form->n; i++) {
		const struct web_field *fd = &form->fields[i];

		if (!text_is_utf8(fd->value.data, fd->value.len) ||
		    strlen(fd->value.data) != fd->value.len) {
			*why = "The form was not sent as UTF-8 text.";
			return -1;
		}
		if (strncmp(fd->name, WEB_ATTR_PREFIX,
		    strlen(WEB_ATTR_PREFIX)) != 0)
			continue;
		if (f->nattrs == SIGNUP_ATTRS_MAX) {
			*why = "The form has too many fields.";
			return -1;
		}
		f->attr_keys[f->nattrs] = fd->name + strlen(WEB_ATTR_PREFIX);
		f->attr_values[f->nattrs++] = fd->value.data;
	}
	f->email = web_form_get(form, "email");
	f->name = web_form_get(form, "name");
	f->consent_text = web_form_get(form, "consent_text");
	if (f->email == NULL || f->email[0] == '\0') {
		*why = "Please give an email address.";
		return -1;
	}
	if (f->consent_text == NULL)
		f->consent_text = "";
	return 0;
}

/* The evidence: the form's id, or the Referer, cleaned and cut. */
static void
web_signup_page(struct MHD_Connection *conn, const struct web_form *form,
    char page[SIGNUP_PAGE_MAX + 1])
{
	const char *id = web_form_get(form, "form_id");

	if (id == NULL || id[0] == '\0')
		id = MHD_lookup_connection_value(conn, MHD_HEADER_KIND,
		    MHD_HTTP_HEADER_REFERER);
	web_signup_clean(id != NULL ? id : "", page, SIGNUP_PAGE_MAX);
}

/* Record f, trying once more on a dropped connection. */
static int
web_signup_submit(struct web *web, const struct signup_form *f,
    struct signup_result *r, struct assent_err *err)
{
	const struct suppress_ctx *gate = web_gate(web);
	PGconn *db;

	if (gate == NULL) {
		log_warnx("http: subscribe form: no keys (the pepper)");
		return err_set(err, EX_UNAVAILABLE, "no keys");
	}
	if ((db = web_db(web)) == NULL)
		return err_set(err, EX_UNAVAILABLE, "database unavailable");
	if (signup_submit(db, gate, f, r, err) == 0)
		return 0;
	if (err->code != EX_TEMPFAIL && err->code != EX_UNAVAILABLE)
		return -1;
	/* Nothing was stored: a second try cannot sign up twice. */
	if ((db = web_signup_db(web, db)) == NULL)
		return -1;
	return signup_submit(db, gate, f, r, err);
}

/* Answer a honeypot hit as a sign-up would be, doing nothing. */
static enum MHD_Result
web_signup_honeypot(struct web *web, struct MHD_Connection *conn,
    const char *list)
{
	struct signup_list info;
	struct assent_err err;
	enum MHD_Result ret;
	PGconn *db;

	metrics_signup_honeypot();
	if ((db = web_db(web)) == NULL)
		return web_signup_unavailable(web, conn);
	if (signup_list_info(db, list, &info, &err) == -1) {
		if (err.code == EX_NOUSER)
			return web_not_found(web, conn);
		return web_signup_unavailable(web, conn);
	}
	ret = web_signup_done(web, conn, info.name, info.double_optin);
	signup_list_info_free(&info);
	return ret;
}

static const char *
web_signup_outcome(enum signup_outcome o)
{
	switch (o) {
	case SIGNUP_PENDING:   return "pending";
	case SIGNUP_CONFIRMED: return "confirmed";
	case SIGNUP_RESENT:    return "resent";
	default:               return "quiet";
	}
}

enum MHD_Result
web_subscribe_post(struct web *web, struct MHD_Connection *conn,
    const struct web_request *req)
{
	char page[SIGNUP_PAGE_MAX + 1], ua[OPTOUT_UA_MAX + 1];
	struct signup_form f = { 0 };
	struct signup_result r;
	struct web_form form;
	struct assent_err err;
	const char *list, *hp, *why = NULL, *agent;
	enum MHD_Result ret;

	if ((list = web_signup_list(req)) == NULL)
		return web_not_found(web, conn);
	if (web_form_read(conn, req, &form) == -1)
		return web_signup_refused(web, conn, "The request is not a form.");
	if (web_form_duplicate(&form) == NULL &&
	    (hp = web_form_get(&form, WEB_HONEYPOT)) != NULL && hp[0] != '\0') {
		web_form_free(&form);
		return web_signup_honeypot(web, conn, list);
	}
	if (web_signup_fields(&form, &f, &why) == -1) {
		metrics_signup("refused");
		ret = web_signup_refused(web, conn, why);
		web_form_free(&form);
		return ret;
	}
	f.list = list;
	f.ip = req->ip[0] != '\0' ? req->ip : NULL;
	agent = MHD_lookup_connection_value(conn, MHD_HEADER_KIND,
	    MHD_HTTP_HEADER_USER_AGENT);
	web_signup_clean(agent != NULL ? agent : "", ua, OPTOUT_UA_MAX);
	f.user_agent = ua[0] != '\0' ? ua : NULL;
	web_signup_page(conn, &form, page);
	f.page = page[0] != '\0' ? page : NULL;
	if (web_signup_submit(web, &f, &r, &err) == 0) {
		metrics_signup(web_signup_outcome(r.outcome));
		ret = web_signup_done(web, conn, r.list_name, r.double_optin);
	} else if (err.code == EX_NOUSER) {
		ret = web_not_found(web, conn);
	} else if (err.code == EX_DATAERR) {
		metrics_signup("refused");
		ret = web_signup_refused(web, conn, err.msg);
	} else {
		log_warnx("http: subscribe form: %s", err.msg);
		ret = web_signup_unavailable(web, conn);
	}
	web_form_free(&form);
	return ret;
}

/* ---- the default form ---------------------------------------------------- */

/* The consent wording as it was written: a paragraph per blank-line
 * separated block, its line breaks kept. */
static void
web_signup_wording(struct buf *b, const char *text)
{
	const char *p = text;

	while (*p != '\0') {
		const char *end = strstr(p, "\n\n");
		size_t len = end != NULL ? (size_t)(end - p) : strlen(p);
		char *para = strndup(p, len);
		char *line, *save = NULL;
		bool first = true;

		if (para == NULL)
			abort();
		if (strspn(para, " \t\n") != len) {
			buf_add_str(b, "<p>");
			for (line = strtok_r(para, "\n", &save); line != NULL;
			    line = strtok_r(NULL, "\n", &save), first = false) {
				if (!first)
					buf_add_str(b, "<br>\n");
				web_html_escape(b, line);
			}
			buf_add_str(b, "</p>\n");
		}
		free(para);
		p += len;
		p += strspn(p, "\n");
	}
}

/* <p><label>...</label><br><input ...></p> */
static void
web_signup_input(struct buf *b, const char *name, const char *label,
    const char *type, const char *extra)
{
	buf_add_str(b, "<p><label for=\"");
	web_html_escape(b, name);
	buf_add_str(b, "\">");
	web_html_escape(b, label);
	buf_add_str(b, "</label><br>\n<input type=\"");
	buf_add_str(b, type);
	buf_add_str(b, "\" id=\"");
	web_html_escape(b, name);
	buf_add_str(b, "\" name=\"");
	web_html_escape(b, name);
	buf_add_str(b, "\"");
	buf_add_str(b, extra);
	buf_add_str(b, "></p>\n");
}

static void
web_signup_form(struct web *web, struct buf *b, const struct signup_list *info)
{
	char field[80];

	if (info->description[0] != '\0') {
		buf_add_str(b, "<p>");
		web_html_escape(b, info->description);
		buf_add_str(b, "</p>\n");
	}
	/* No action: the form posts to this page's own address. */
	buf_add_str(b, "<form method=\"post\">\n<input type=\"hidden\" "
	    "name=\"consent_text\" value=\"");
	web_html_escape(b, info->consent_version);
	buf_add_str(b, "\">\n<input type=\"hidden\" name=\"form_id\" value=\"");
	web_html_escape(b, web_base_url(web));
	buf_add_str(b, "/s/");
	web_html_escape(b, info->name);
	buf_add_str(b, "\">\n");
	web_signup_input(b, "email", "Email address", "email",
	    " required autocomplete=\"email\"");
	web_signup_input(b, "name", "Name (optional)", "text",
	    " autocomplete=\"name\" maxlength=\"200\"");
	for (size_t i = 0; i < info->nattrs; i++) {
		snprintf(field, sizeof(field), WEB_ATTR_PREFIX "%s", info->attrs[i]);
		web_signup_input(b, field, info->attrs[i], "text",
		    " maxlength=\"200\"");
	}
	/* The honeypot: out of sight and out of the tab order, for people;
	 * a style attribute, so that any page template hides it. */
	buf_add_str(b, "<div style=\"position:absolute;left:-10000px;top:auto;"
	    "width:1px;height:1px;overflow:hidden\" aria-hidden=\"true\">\n"
	    "<label for=\"" WEB_HONEYPOT "\">Leave this field empty</label>\n"
	    "<input type=\"text\" id=\"" WEB_HONEYPOT "\" name=\"" WEB_HONEYPOT
	    "\" value=\"\" autocomplete=\"off\" tabindex=\"-1\">\n</div>\n");
	web_signup_wording(b, info->consent_body != NULL ?
	    info->consent_body : "");
	buf_add_str(b, "<p><button type=\"submit\">Subscribe</button></p>\n"
	    "</form>\n");
}

enum MHD_Result
web_subscribe_get(struct web *web, struct MHD_Connection *conn,
    const struct web_request *req)
{
	struct signup_list info;
	struct assent_err err;
	enum MHD_Result ret;
	const char *list;
	char title[96];
	struct buf b;
	PGconn *db;
	int rc;

	if ((list = web_signup_list(req)) == NULL)
		return web_not_found(web, conn);
	if ((db = web_db(web)) == NULL)
		return web_signup_unavailable(web, conn);
	if ((rc = signup_list_info(db, list, &info, &err)) == -1 &&
	    err.code != EX_NOUSER && (db = web_signup_db(web, db)) != NULL)
		rc = signup_list_info(db, list, &info, &err);
	if (rc == -1) {
		if (err.code == EX_NOUSER)
			return web_not_found(web, conn);
		log_warnx("http: subscribe page: %s", err.msg);
		return web_signup_unavailable(web, conn);
	}
	buf_init(&b);
	web_signup_form(web, &b, &info);
	snprintf(title, sizeof(title), "Subscribe to %s", info.name);
	ret = web_page_list(web, conn, MHD_HTTP_OK, title, info.name, b.data);
	buf_free(&b);
	signup_list_info_free(&info);
	return ret;
}

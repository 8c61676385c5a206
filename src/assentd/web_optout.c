/*
 * web_optout: the pages behind the links in mail. /u/TOKEN leaves a
 * list or everything, /c/TOKEN confirms a subscription; see assentd.h.
 *
 * GET only shows a page with a button (mail scanners fetch links; a
 * fetch must change nothing); POST acts, through optout.h, which
 * commits before the page says it is done. Every kind of bad token
 * gets the same 400 page: which check failed is nobody's business.
 */
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "assent/buf.h"
#include "assent/log.h"
#include "assent/optout.h"
#include "assent/token.h"
#include "assentd.h"

/* Long enough for any real expiry, short enough not to overflow. */
#define WEB_TTL_FOREVER  (INT64_C(1) << 40)
#define WEB_FIELD_MAX    32     /* bytes kept of a form field we read */

/* ---- pages ------------------------------------------------------------- */

static enum MHD_Result
web_invalid(struct MHD_Connection *conn)
{
	return web_page(conn, MHD_HTTP_BAD_REQUEST, "Link not valid",
	    "<p>This link is not valid.</p>\n");
}

static enum MHD_Result
web_unavailable(struct MHD_Connection *conn)
{
	return web_page(conn, MHD_HTTP_SERVICE_UNAVAILABLE, "Try again soon",
	    "<p>This cannot be done right now. Nothing has changed. "
	    "Please try again in a minute.</p>\n");
}

static const char *
web_list_label(const struct optout_result *r)
{
	return r->list_name[0] != '\0' ? r->list_name : "this list";
}

static const char *
web_org_label(struct web *web)
{
	const char *org = web_organisation(web);

	return org[0] != '\0' ? org : "this sender";
}

/* "<p>" text "</p>" with text escaped. */
static void
web_para(struct buf *b, const char *before, const char *value,
    const char *after)
{
	buf_add_str(b, "<p>");
	buf_add_str(b, before);
	web_html_escape(b, value);
	buf_add_str(b, after);
	buf_add_str(b, "</p>\n");
}

/* A form POSTing to the page's own URL (the token, relative). */
static void
web_form_open(struct buf *b, const char *token)
{
	buf_add_str(b, "<form method=\"post\" action=\"");
	web_html_escape(b, token);
	buf_add_str(b, "\">\n");
}

static void
web_button(struct buf *b, const char *name, const char *value,
    const char *label, const char *label_value)
{
	buf_add_str(b, "<button type=\"submit\" name=\"");
	web_html_escape(b, name);
	buf_add_str(b, "\" value=\"");
	web_html_escape(b, value);
	buf_add_str(b, "\">");
	web_html_escape(b, label);
	web_html_escape(b, label_value);
	buf_add_str(b, "</button>\n");
}

static enum MHD_Result
web_page_buf(struct MHD_Connection *conn, unsigned int status,
    const char *title, struct buf *b)
{
	enum MHD_Result ret;

	ret = web_page(conn, status, title, b->data != NULL ? b->data : "");
	buf_free(b);
	return ret;
}

/* ---- tokens ----------------------------------------------------------- */

/* The token in "/u/TOKEN" or "/c/TOKEN". */
static const char *
web_token_text(const struct web_request *req)
{
	return req->url + 3;
}

enum web_verdict { WEB_TOKEN_OK, WEB_TOKEN_BAD, WEB_TOKEN_EXPIRED,
	WEB_TOKEN_NO_KEYS };

/* Verify text for purpose with signer. An expired confirm token is
 * told apart from a bad one: it verifies with an expiry that never
 * comes. */
static enum web_verdict
web_token_check(struct web *web, struct token_signer *signer,
    const char *text, enum token_purpose purpose, struct token *t)
{
	int64_t now = (int64_t)time(NULL);

	if (signer == NULL)
		return WEB_TOKEN_NO_KEYS;
	if (token_verify(signer, text, purpose, now, web_confirm_ttl(web), t,
	    NULL) == 0)
		return WEB_TOKEN_OK;
	if (purpose == TOKEN_CONFIRM && token_verify(signer, text, purpose, now,
	    WEB_TTL_FOREVER, t, NULL) == 0)
		return WEB_TOKEN_EXPIRED;
	return WEB_TOKEN_BAD;
}

/* Verify the url's token. One that fails may be signed with a key
 * added since the keys were loaded: once the file is read again, it
 * gets a second chance. */
static enum web_verdict
web_token(struct web *web, const struct web_request *req,
    enum token_purpose purpose, struct token *t)
{
	const char *text = web_token_text(req);
	struct token_signer *signer = web_signer(web);
	enum web_verdict v;

	if (signer == NULL && web_keys_refresh(web))
		signer = web_signer(web);
	if (signer == NULL)
		return WEB_TOKEN_NO_KEYS;
	if (strlen(text) != TOKEN_TEXT_LEN)
		return WEB_TOKEN_BAD;
	v = web_token_check(web, signer, text, purpose, t);
	if (v == WEB_TOKEN_BAD && web_keys_refresh(web))
		v = web_token_check(web, web_signer(web), text, purpose, t);
	return v;
}

/* The page for a token that did not pass. */
static enum MHD_Result
web_token_refused(struct MHD_Connection *conn, enum web_verdict v)
{
	web_note_refused();
	if (v == WEB_TOKEN_NO_KEYS)
		return web_unavailable(conn);
	if (v == WEB_TOKEN_EXPIRED)
		return web_page(conn, MHD_HTTP_GONE, "Link expired",
		    "<p>This confirmation link has expired. To subscribe, please "
		    "sign up again: you will get a fresh confirmation mail.</p>\n");
	return web_invalid(conn);
}

/* The database, or log why not. */
static PGconn *
web_optout_db(struct web *web)
{
	PGconn *db = web_db(web);

	if (db == NULL)
		log_warnx("http: database unavailable for a link");
	return db;
}

/* After a failed call: was it a connection the server had dropped (a
 * restart, a failover)? Then a fresh one, for one more try: every
 * optout call is idempotent, so trying again is safe even when the
 * first try's commit was lost. */
static bool
web_optout_retry(struct web *web, PGconn **db)
{
	if (PQstatus(*db) != CONNECTION_BAD)
		return false;
	*db = web_db(web);
	return *db != NULL;
}

static void
web_evidence(struct MHD_Connection *conn, const struct web_request *req,
    const char *channel, struct optout_evidence *ev)
{
	ev->channel = channel;
	ev->ip = req->ip[0] != '\0' ? req->ip : NULL;
	ev->user_agent = MHD_lookup_connection_value(conn, MHD_HEADER_KIND,
	    MHD_HTTP_HEADER_USER_AGENT);
}

/* ---- the unsubscribe form ----------------------------------------------- */

struct web_form {
	char one_click[WEB_FIELD_MAX];  /* List-Unsubscribe */
	char scope[WEB_FIELD_MAX];
};

/* Put a piece of a field's value at off, cut at the buffer's size. */
static void
web_field_put(char *field, const char *data, uint64_t off, size_t size)
{
	if (off >= WEB_FIELD_MAX - 1)
		return;
	if (size > WEB_FIELD_MAX - 1 - off)
		size = WEB_FIELD_MAX - 1 - (size_t)off;
	memcpy(field + off, data, size);
	field[off + size] = '\0';
}

static enum MHD_Result
web_form_field(void *cls, enum MHD_ValueKind kind, const char *key,
    const char *filename, const char *content_type,
    const char *transfer_encoding, const char *data, uint64_t off,
    size_t size)
{
	struct web_form *form = cls;

	(void)kind;
	(void)filename;
	(void)content_type;
	(void)transfer_encoding;
	if (key == NULL)
		return MHD_YES;
	if (strcmp(key, "List-Unsubscribe") == 0)
		web_field_put(form->one_click, data != NULL ? data : "", off, size);
	else if (strcmp(key, "scope") == 0)
		web_field_put(form->scope, data != NULL ? data : "", off, size);
	return MHD_YES;
}

/* Parse the body (urlencoded or multipart, per Content-Type). */
static bool
web_form_read(struct MHD_Connection *conn, const struct web_request *req,
    struct web_form *form)
{
	struct MHD_PostProcessor *pp;
	bool ok;

	memset(form, 0, sizeof(*form));
	pp = MHD_create_post_processor(conn, 1024, web_form_field, form);
	if (pp == NULL)
		return false;
	ok = req->body_len == 0 ||
	    MHD_post_process(pp, req->body, req->body_len) == MHD_YES;
	/* The last urlencoded value may only arrive now. */
	if (MHD_destroy_post_processor(pp) != MHD_YES)
		ok = false;
	return ok;
}

/* What the POST asks: RFC 8058's one-click (the token's scope) or the
 * page's form. false for anything else. */
static bool
web_unsubscribe_ask(struct MHD_Connection *conn,
    const struct web_request *req, const struct token *t,
    const char **channel_r, bool *all_r)
{
	struct web_form form;

	if (!web_form_read(conn, req, &form))
		return false;
	if (strcmp(form.one_click, "One-Click") == 0) {
		*channel_r = "one-click";
		*all_r = t->all_lists;
		return true;
	}
	if (strcmp(form.scope, "list") == 0 || strcmp(form.scope, "all") == 0) {
		*channel_r = "web";
		*all_r = t->all_lists || strcmp(form.scope, "all") == 0;
		return true;
	}
	return false;
}

/* ---- /u/ ------------------------------------------------------------------ */

/* What a GET page needs: req's token verified for purpose and what it
 * names. True with t and r filled; false with the error page queued in
 * *answer (a bad token, no database). */
static bool
web_look(struct web *web, struct MHD_Connection *conn,
    const struct web_request *req, enum token_purpose purpose, struct token *t,
    struct optout_result *r, enum MHD_Result *answer)
{
	struct assent_err err;
	enum web_verdict v;
	PGconn *db;

	if ((v = web_token(web, req, purpose, t)) != WEB_TOKEN_OK) {
		*answer = web_token_refused(conn, v);
		return false;
	}
	if ((db = web_optout_db(web)) == NULL ||
	    (optout_describe(db, t, r, &err) == -1 &&
	    (!web_optout_retry(web, &db) || optout_describe(db, t, r, &err) == -1))) {
		if (db != NULL)
			log_warnx("http: %s page: %s", token_purpose_name(purpose),
			    err.msg);
		*answer = web_unavailable(conn);
		return false;
	}
	return true;
}

enum MHD_Result
web_unsubscribe_get(struct web *web, struct MHD_Connection *conn,
    const struct web_request *req)
{
	struct optout_result r;
	enum MHD_Result answer;
	struct token t;
	struct buf b;

	if (!web_look(web, conn, req, TOKEN_UNSUBSCRIBE, &t, &r, &answer))
		return answer;
	buf_init(&b);
	if (t.all_lists)
		web_para(&b, "Stop all mail from ", web_org_label(web), "?");
	else if (strcmp(r.status, "unsubscribed") == 0)
		web_para(&b, "You are no longer subscribed to ",
		    web_list_label(&r), ".");
	else
		web_para(&b, "Leave the list ", web_list_label(&r), "?");
	web_form_open(&b, web_token_text(req));
	if (!t.all_lists && strcmp(r.status, "unsubscribed") != 0)
		web_button(&b, "scope", "list", "Leave ", web_list_label(&r));
	web_button(&b, "scope", "all", "Leave everything from ",
	    web_org_label(web));
	buf_add_str(&b, "</form>\n");
	return web_page_buf(conn, MHD_HTTP_OK, "Unsubscribe", &b);
}

enum MHD_Result
web_unsubscribe_post(struct web *web, struct MHD_Connection *conn,
    const struct web_request *req)
{
	struct optout_evidence ev;
	struct optout_result r;
	struct assent_err err;
	const char *channel;
	enum web_verdict v;
	struct token t;
	struct buf b;
	PGconn *db;
	bool all;

	if ((v = web_token(web, req, TOKEN_UNSUBSCRIBE, &t)) != WEB_TOKEN_OK)
		return web_token_refused(conn, v);
	if (!web_unsubscribe_ask(conn, req, &t, &channel, &all))
		return web_invalid(conn);
	if ((db = web_optout_db(web)) == NULL)
		return web_unavailable(conn);
	web_evidence(conn, req, channel, &ev);
	if (optout_unsubscribe(db, &t, all, &ev, &r, &err) == -1 &&
	    (!web_optout_retry(web, &db) || optout_unsubscribe(db, &t, all, &ev, &r, &err) == -1)) {
		log_warnx("http: unsubscribe: %s", err.msg);
		return web_unavailable(conn);
	}
	if (r.changed)
		metrics_unsubscribe(channel);
	buf_init(&b);
	web_para(&b, "You will get no more mail from ",
	    all ? web_org_label(web) : web_list_label(&r), ".");
	return web_page_buf(conn, MHD_HTTP_OK, "Unsubscribed", &b);
}

/* ---- /c/ ------------------------------------------------------------------ */

/* The page for a subscription that is confirmed or ended: true when
 * one was written. */
static bool
web_confirm_settled(struct buf *b, const struct optout_result *r)
{
	if (strcmp(r->status, "unsubscribed") == 0) {
		web_para(b, "Your subscription to ", web_list_label(r),
		    " has ended; this link no longer confirms it.");
		return true;
	}
	if (strcmp(r->status, "confirmed") == 0 || !r->known) {
		web_para(b, "Your subscription to ", web_list_label(r),
		    " is confirmed already.");
		return true;
	}
	return false;
}

enum MHD_Result
web_confirm_get(struct web *web, struct MHD_Connection *conn,
    const struct web_request *req)
{
	struct optout_result r;
	enum MHD_Result answer;
	struct token t;
	struct buf b;

	if (!web_look(web, conn, req, TOKEN_CONFIRM, &t, &r, &answer))
		return answer;
	buf_init(&b);
	if (!web_confirm_settled(&b, &r)) {
		web_para(&b, "Please confirm that you want mail from ",
		    web_list_label(&r), ".");
		web_form_open(&b, web_token_text(req));
		web_button(&b, "confirm", "yes",
		    "Confirm my subscription to ", web_list_label(&r));
		buf_add_str(&b, "</form>\n");
	}
	return web_page_buf(conn, MHD_HTTP_OK, "Confirm your subscription", &b);
}

enum MHD_Result
web_confirm_post(struct web *web, struct MHD_Connection *conn,
    const struct web_request *req)
{
	struct optout_evidence ev;
	struct optout_result r;
	struct assent_err err;
	enum web_verdict v;
	struct token t;
	struct buf b;
	PGconn *db;

	if ((v = web_token(web, req, TOKEN_CONFIRM, &t)) != WEB_TOKEN_OK)
		return web_token_refused(conn, v);
	if ((db = web_optout_db(web)) == NULL)
		return web_unavailable(conn);
	web_evidence(conn, req, "confirm-link", &ev);
	if (optout_confirm(db, &t, &ev, &r, &err) == -1 &&
	    (!web_optout_retry(web, &db) || optout_confirm(db, &t, &ev, &r, &err) == -1)) {
		log_warnx("http: confirm: %s", err.msg);
		return web_unavailable(conn);
	}
	if (r.changed)
		metrics_confirmation();
	buf_init(&b);
	if (r.changed || !web_confirm_settled(&b, &r))
		web_para(&b, "Your subscription to ", web_list_label(&r),
		    " is confirmed. Thank you.");
	return web_page_buf(conn, MHD_HTTP_OK, "Your subscription", &b);
}

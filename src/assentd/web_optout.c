/*
 * web_optout: the pages behind the links in mail. /u/TOKEN leaves a
 * list or everything, /c/TOKEN confirms a subscription; see assentd.h.
 *
 * GET only shows a page with a button (mail scanners fetch links; a
 * fetch must change nothing); POST acts, through optout.h, which
 * commits before the page says it is done. Every kind of bad token
 * gets the same 400 page: which check failed is nobody's business.
 *
 * A GET page asks the database nothing: it names the token's list from
 * web_list_name()'s table and offers the button. Whether the
 * subscription was ended or confirmed already is told by the page the
 * button leads to (link scanners and curious repeat visits cost no
 * query, and the page is as fast as a static one).
 *
 * An expired confirmation link (genuine, token_verify_confirm()) gets a
 * page with a button that asks for a fresh one (POST resend=1,
 * signup_confirm_again()); the answer is the same whatever happened.
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
#include "assent/signup.h"
#include "assent/token.h"
#include "assentd.h"


/* ---- pages ------------------------------------------------------------- */

static enum MHD_Result
web_invalid(struct web *web, struct MHD_Connection *conn)
{
	return web_page(web, conn, MHD_HTTP_BAD_REQUEST, "Link not valid",
	    "<p>This link is not valid.</p>\n");
}

static enum MHD_Result
web_unavailable(struct web *web, struct MHD_Connection *conn)
{
	return web_page_retry(web, conn, MHD_HTTP_SERVICE_UNAVAILABLE,
	    "Try again soon", "<p>This cannot be done right now. Nothing has "
	    "changed. Please try again in a minute.</p>\n", 60);
}

static const char *
web_list_label(const struct optout_result *r)
{
	return r->list_name[0] != '\0' ? r->list_name : "this list";
}

static const char *
web_name_label(const char *name)
{
	return name[0] != '\0' ? name : "this list";
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
web_optout_form(struct buf *b, const char *token)
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
web_page_buf(struct web *web, struct MHD_Connection *conn,
    unsigned int status, const char *title, const char *list, struct buf *b)
{
	enum MHD_Result ret;

	ret = web_page_list(web, conn, status, title, list,
	    b->data != NULL ? b->data : "");
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
 * told apart from a bad one (token_verify_confirm()). */
static enum web_verdict
web_token_check(struct web *web, struct token_signer *signer,
    const char *text, enum token_purpose purpose, struct token *t)
{
	int64_t now = (int64_t)time(NULL);

	if (signer == NULL)
		return WEB_TOKEN_NO_KEYS;
	if (purpose == TOKEN_CONFIRM) {
		switch (token_verify_confirm(signer, text, now,
		    web_confirm_ttl(web), t, NULL)) {
		case 0:
			return WEB_TOKEN_OK;
		case 1:
			return WEB_TOKEN_EXPIRED;
		default:
			return WEB_TOKEN_BAD;
		}
	}
	if (token_verify(signer, text, purpose, now, web_confirm_ttl(web), t,
	    NULL) == 0)
		return WEB_TOKEN_OK;
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

/* The page for a token that did not pass (an expired one is answered
 * by web_confirm_expired()). */
static enum MHD_Result
web_token_refused(struct web *web, struct MHD_Connection *conn,
    enum web_verdict v)
{
	web_note_refused();
	if (v == WEB_TOKEN_NO_KEYS)
		return web_unavailable(web, conn);
	return web_invalid(web, conn);
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

/* What the POST asks: RFC 8058's one-click (the token's scope) or the
 * page's form. false for anything else. */
static bool
web_unsubscribe_ask(struct MHD_Connection *conn,
    const struct web_request *req, const struct token *t,
    const char **channel_r, bool *all_r)
{
	const char *one_click, *scope;
	struct web_form form;
	bool ok = false;

	if (web_form_read(conn, req, &form) == -1)
		return false;
	one_click = web_form_get(&form, "List-Unsubscribe");
	scope = web_form_get(&form, "scope");
	if (one_click != NULL && strcmp(one_click, "One-Click") == 0) {
		*channel_r = "one-click";
		*all_r = t->all_lists;
		ok = true;
	} else if (scope != NULL && (strcmp(scope, "list") == 0 ||
	    strcmp(scope, "all") == 0)) {
		*channel_r = "web";
		*all_r = t->all_lists || strcmp(scope, "all") == 0;
		ok = true;
	}
	web_form_free(&form);
	return ok;
}

/* ---- /u/ ------------------------------------------------------------------ */

/* What a GET page needs: req's token verified for purpose and its
 * list's name (no query: web_list_name()). True with t and name
 * filled; false with the error page queued in *answer. An expired
 * confirmation link passes too (v_r says so). */
static bool
web_look(struct web *web, struct MHD_Connection *conn,
    const struct web_request *req, enum token_purpose purpose, struct token *t,
    char name[65], enum web_verdict *v_r, enum MHD_Result *answer)
{
	enum web_verdict v;

	v = web_token(web, req, purpose, t);
	if (v != WEB_TOKEN_OK && v != WEB_TOKEN_EXPIRED) {
		*answer = web_token_refused(web, conn, v);
		return false;
	}
	name[0] = '\0';
	if (!t->all_lists && web_list_name(web, t->list_id, name) == -1) {
		log_warnx("http: %s page: database unavailable",
		    token_purpose_name(purpose));
		*answer = web_unavailable(web, conn);
		return false;
	}
	if (v_r != NULL)
		*v_r = v;
	return true;
}

enum MHD_Result
web_unsubscribe_get(struct web *web, struct MHD_Connection *conn,
    const struct web_request *req)
{
	enum MHD_Result answer;
	struct token t;
	char name[65];
	struct buf b;

	if (!web_look(web, conn, req, TOKEN_UNSUBSCRIBE, &t, name, NULL, &answer))
		return answer;
	buf_init(&b);
	if (t.all_lists)
		web_para(&b, "Stop all mail from ", web_org_label(web), "?");
	else
		web_para(&b, "Leave the list ", web_name_label(name), "?");
	web_optout_form(&b, web_token_text(req));
	if (!t.all_lists)
		web_button(&b, "scope", "list", "Leave ", web_name_label(name));
	web_button(&b, "scope", "all", "Leave everything from ",
	    web_org_label(web));
	buf_add_str(&b, "</form>\n");
	return web_page_buf(web, conn, MHD_HTTP_OK, "Unsubscribe",
	    t.all_lists ? NULL : name, &b);
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
		return web_token_refused(web, conn, v);
	if (!web_unsubscribe_ask(conn, req, &t, &channel, &all))
		return web_invalid(web, conn);
	if ((db = web_optout_db(web)) == NULL)
		return web_unavailable(web, conn);
	web_evidence(conn, req, channel, &ev);
	if (optout_unsubscribe(db, &t, all, &ev, &r, &err) == -1 &&
	    (!web_optout_retry(web, &db) || optout_unsubscribe(db, &t, all, &ev, &r, &err) == -1)) {
		log_warnx("http: unsubscribe: %s", err.msg);
		return web_unavailable(web, conn);
	}
	if (r.changed)
		metrics_unsubscribe(channel);
	buf_init(&b);
	web_para(&b, "You will get no more mail from ",
	    all ? web_org_label(web) : web_list_label(&r), ".");
	return web_page_buf(web, conn, MHD_HTTP_OK, "Unsubscribed",
	    all ? NULL : r.list_name, &b);
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

/* The page of an expired confirmation link: a button asking for a
 * fresh one. It changes nothing. */
static enum MHD_Result
web_confirm_expired(struct web *web, struct MHD_Connection *conn,
    const struct web_request *req, const char *name)
{
	struct buf b;

	buf_init(&b);
	buf_add_str(&b, "<p>This confirmation link has expired.</p>\n");
	web_para(&b, "If you still want mail from ", web_name_label(name),
	    ", ask for a new link: if your subscription is still waiting to be "
	    "confirmed, we will send one.");
	web_optout_form(&b, web_token_text(req));
	web_button(&b, "resend", "1", "Send me a new link", "");
	buf_add_str(&b, "</form>\n");
	return web_page_buf(web, conn, MHD_HTTP_OK, "Link expired", name, &b);
}

/* Does the POST ask for a fresh link (resend=1)? */
static bool
web_confirm_asks_again(struct MHD_Connection *conn,
    const struct web_request *req)
{
	struct web_form form;
	const char *resend;
	bool again;

	if (web_form_read(conn, req, &form) == -1)
		return false;
	resend = web_form_get(&form, "resend");
	again = resend != NULL && strcmp(resend, "1") == 0;
	web_form_free(&form);
	return again;
}

/* POST resend=1 to an expired link: a fresh confirmation request if the
 * subscription still waits for one (signup_confirm_again()); one page
 * whatever happened. */
static enum MHD_Result
web_confirm_again(struct web *web, struct MHD_Connection *conn,
    const struct token *t, const char *name)
{
	const struct suppress_ctx *gate = web_gate(web);
	struct signup_result r;
	struct assent_err err;
	struct buf b;
	PGconn *db;

	if (gate == NULL || (db = web_optout_db(web)) == NULL)
		return web_unavailable(web, conn);
	if (signup_confirm_again(db, gate, t->subscriber_id, t->list_id, &r,
	    &err) == -1 && (!web_optout_retry(web, &db) ||
	    signup_confirm_again(db, gate, t->subscriber_id, t->list_id, &r,
	    &err) == -1)) {
		log_warnx("http: confirm again: %s", err.msg);
		return web_unavailable(web, conn);
	}
	metrics_confirm_again(r.outcome == SIGNUP_RESENT ? "resent" : "quiet");
	buf_init(&b);
	web_para(&b, "If your subscription to ", web_name_label(name),
	    " is still waiting to be confirmed, a new link is on its way to "
	    "you. Please look in your inbox in a few minutes.");
	return web_page_buf(web, conn, MHD_HTTP_OK, "New link", name, &b);
}

enum MHD_Result
web_confirm_get(struct web *web, struct MHD_Connection *conn,
    const struct web_request *req)
{
	enum MHD_Result answer;
	enum web_verdict v;
	struct token t;
	char name[65];
	struct buf b;

	if (!web_look(web, conn, req, TOKEN_CONFIRM, &t, name, &v, &answer))
		return answer;
	if (v == WEB_TOKEN_EXPIRED)
		return web_confirm_expired(web, conn, req, name);
	buf_init(&b);
	web_para(&b, "Please confirm that you want mail from ",
	    web_name_label(name), ".");
	web_optout_form(&b, web_token_text(req));
	web_button(&b, "confirm", "yes", "Confirm my subscription to ",
	    web_name_label(name));
	buf_add_str(&b, "</form>\n");
	return web_page_buf(web, conn, MHD_HTTP_OK, "Confirm your subscription",
	    name, &b);
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
	char name[65];
	struct buf b;
	PGconn *db;

	v = web_token(web, req, TOKEN_CONFIRM, &t);
	if (v == WEB_TOKEN_EXPIRED) {
		if (web_list_name(web, t.list_id, name) == -1)
			return web_unavailable(web, conn);
		/* Each press may queue mail: it counts like a sign-up. */
		if (web_confirm_asks_again(conn, req))
			return web_costly_allow(web, req) ?
			    web_confirm_again(web, conn, &t, name) :
			    web_too_many(web, conn);
		return web_confirm_expired(web, conn, req, name);
	}
	if (v != WEB_TOKEN_OK)
		return web_token_refused(web, conn, v);
	if ((db = web_optout_db(web)) == NULL)
		return web_unavailable(web, conn);
	web_evidence(conn, req, "confirm-link", &ev);
	if (optout_confirm(db, &t, &ev, &r, &err) == -1 &&
	    (!web_optout_retry(web, &db) || optout_confirm(db, &t, &ev, &r, &err) == -1)) {
		log_warnx("http: confirm: %s", err.msg);
		return web_unavailable(web, conn);
	}
	if (r.changed)
		metrics_confirmation();
	buf_init(&b);
	if (r.changed || !web_confirm_settled(&b, &r))
		web_para(&b, "Your subscription to ", web_list_label(&r),
		    " is confirmed. Thank you.");
	return web_page_buf(web, conn, MHD_HTTP_OK, "Your subscription",
	    r.list_name, &b);
}

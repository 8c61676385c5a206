/*
 * web_page: every response assentd's public address makes, and the one
 * template every HTML page goes through (http.page_template, or the
 * built-in page that conf/page.html holds a copy of); see assentd.h.
 *
 * The template is compiled once at web_start() and shared by the pool
 * threads (render.h: rendering never changes a compiled template).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "assent/buf.h"
#include "assent/log.h"
#include "assent/render.h"
#include "assent/text.h"
#include "assent/xmalloc.h"
#include "assentd.h"


/* The built-in page: conf/page.html is the same text, for operators to
 * start their own from (a test checks that the two agree). */
static const char web_page_builtin[] =
    "<!DOCTYPE html>\n"
    "<html lang=\"en\">\n"
    "<head>\n"
    "<meta charset=\"utf-8\">\n"
    "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n"
    "<meta name=\"robots\" content=\"noindex, nofollow\">\n"
    "<style>body{font-family:system-ui,sans-serif;max-width:36em;"
    "margin:3em auto;padding:0 1em;line-height:1.5;color:#222}"
    "button{font:inherit;padding:.5em 1em;margin:.25em .5em .25em 0;"
    "cursor:pointer}input{font:inherit;padding:.3em;width:100%;"
    "box-sizing:border-box}</style>\n"
    "<title>{{ title }}</title>\n"
    "</head>\n"
    "<body>\n"
    "<h1>{{ title }}</h1>\n"
    "{{ content }}</body>\n"
    "</html>\n";

struct web_pages {
	struct render_template *tpl;
	char *organisation;             /* "" when unset */
	char *postal_address;           /* "" when unset */
};

/* Every response carries these. */
static const struct {
	const char *name, *value;
} web_security_headers[] = {
	{ "X-Content-Type-Options", "nosniff" },
	{ MHD_HTTP_HEADER_CACHE_CONTROL, "no-store" },
	{ "Referrer-Policy", "no-referrer" },
	{ "Content-Security-Policy", "default-src 'none'; "
	  "style-src 'unsafe-inline'; form-action 'self'; "
	  "frame-ancestors 'none'; base-uri 'none'" },
};

/* ---- the template ---------------------------------------------------------- */

int
web_pages_new(const struct assent_conf *conf, struct web_pages **p_r,
    struct assent_err *err)
{
	const char *path = conf->http_page_template != NULL ?
	    conf->http_page_template : "";
	struct web_pages *p = xcalloc(1, sizeof(*p));

	p->organisation = xstrdup(conf->sender_organisation != NULL ?
	    conf->sender_organisation : "");
	p->postal_address = xstrdup(conf->sender_postal_address != NULL ?
	    conf->sender_postal_address : "");
	if (render_compile_file("http.page_template", path, web_page_builtin,
	    RENDER_PAGE, &p->tpl, err) == -1) {
		web_pages_free(p);
		return -1;
	}
	*p_r = p;
	return 0;
}

void
web_pages_free(struct web_pages *p)
{
	if (p == NULL)
		return;
	render_free(p->tpl);
	free(p->organisation);
	free(p->postal_address);
	free(p);
}

/* ---- responses ------------------------------------------------------------- */

/* A response holding len bytes at body; with take, body (malloc'd) is
 * handed to MHD, else copied. NULL when out of memory. */
static struct MHD_Response *
web_response_of(const char *content_type, char *body, size_t len, bool take)
{
	struct MHD_Response *resp;

	resp = MHD_create_response_from_buffer(len, body, take ?
	    MHD_RESPMEM_MUST_FREE : MHD_RESPMEM_MUST_COPY);
	if (resp == NULL) {
		if (take)
			free(body);
		return NULL;
	}
	MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, content_type);
	for (size_t i = 0; i < sizeof(web_security_headers) /
	    sizeof(web_security_headers[0]); i++)
		MHD_add_response_header(resp, web_security_headers[i].name,
		    web_security_headers[i].value);
	return resp;
}

struct MHD_Response *
web_response(const char *content_type, const char *body)
{
	return web_response_of(content_type, (char *)body, strlen(body), false);
}

enum MHD_Result
web_queue(struct MHD_Connection *conn, unsigned int status,
    struct MHD_Response *resp)
{
	enum MHD_Result ret;

	if (resp == NULL)
		return MHD_NO;
	ret = MHD_queue_response(conn, status, resp);
	MHD_destroy_response(resp);
	metrics_request(status);
	return ret;
}

enum MHD_Result
web_reply(struct MHD_Connection *conn, unsigned int status,
    const char *content_type, const char *body)
{
	return web_queue(conn, status, web_response(content_type, body));
}

void
web_html_escape(struct buf *b, const char *s)
{
	for (const char *p = s; *p != '\0'; p++) {
		switch (*p) {
		case '&':  buf_add_str(b, "&amp;"); break;
		case '<':  buf_add_str(b, "&lt;"); break;
		case '>':  buf_add_str(b, "&gt;"); break;
		case '"':  buf_add_str(b, "&quot;"); break;
		case '\'': buf_add_str(b, "&#39;"); break;
		default:   buf_add(b, p, 1); break;
		}
	}
}

struct MHD_Response *
web_page_make(struct web *web, const char *title, const char *list,
    const char *body_html)
{
	const struct web_pages *p = web_pages_of(web);
	struct render_values v = { .title = title, .list = list,
	    .content = body_html, .organisation = p->organisation,
	    .postal_address = p->postal_address };
	struct assent_err err;
	struct buf b;

	buf_init(&b);
	/* A page never fails to render: no kind of page refuses a value. */
	if (render_run(p->tpl, &v, &b, &err) == -1)
		fatalx("http: rendering a page: %s", err.msg);
	buf_add(&b, "", 1);     /* a NUL, for an empty page too */
	return web_response_of("text/html; charset=utf-8", b.data, b.len - 1,
	    true);
}

enum MHD_Result
web_page(struct web *web, struct MHD_Connection *conn, unsigned int status,
    const char *title, const char *body_html)
{
	return web_queue(conn, status, web_page_make(web, title, NULL,
	    body_html));
}

enum MHD_Result
web_page_list(struct web *web, struct MHD_Connection *conn,
    unsigned int status, const char *title, const char *list,
    const char *body_html)
{
	return web_queue(conn, status, web_page_make(web, title, list,
	    body_html));
}

enum MHD_Result
web_page_retry(struct web *web, struct MHD_Connection *conn,
    unsigned int status, const char *title, const char *body_html,
    unsigned int seconds)
{
	struct MHD_Response *resp = web_page_make(web, title, NULL, body_html);
	char value[16];

	snprintf(value, sizeof(value), "%u", seconds);
	if (resp != NULL)
		MHD_add_response_header(resp, MHD_HTTP_HEADER_RETRY_AFTER, value);
	return web_queue(conn, status, resp);
}

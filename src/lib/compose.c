/* compose: one campaign message for one recipient (see compose.h) */
#include <ctype.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/rand.h>

#include "assent/compose.h"
#include "assent/mime.h"
#include "assent/render.h"
#include "assent/xmalloc.h"

#define COMPOSE_URL_MAX 1024

struct compose_list {
	uint64_t id;
	char *name;                     /* as stored, for the List-Id phrase */
	char *list_id;                  /* "name.fromdomain", lower case */
};

struct compose {
	long long campaign_id;
	char *from_name, *from_address, *reply_to;
	char *base_url, *bounce_domain, *postal_address, *organisation;
	struct render_template *subject, *text, *html;
	struct compose_list *lists;
	size_t nlists;
	struct token_signer *signer;    /* borrowed */
	/* scratch, reused for every message */
	struct buf subject_out, text_out, html_out;
};

static int
compose_compile(const char *src, enum render_kind kind, const char *part,
    struct render_template **tpl_r, struct assent_err *err)
{
	*tpl_r = NULL;
	if (src == NULL)
		return 0;
	if (render_compile(src, kind, tpl_r, err) < 0)
		return err_prefix(err, "%s", part);
	return 0;
}

static void
compose_add_lists(struct compose *cp, const struct campaign *c)
{
	const char *domain = strchr(c->from_address, '@') + 1;

	cp->nlists = c->nlists;
	cp->lists = xcalloc(c->nlists, sizeof(*cp->lists));
	for (size_t i = 0; i < c->nlists; i++) {
		struct compose_list *l = &cp->lists[i];
		size_t n = strlen(c->lists[i].name) + 1 + strlen(domain) + 1;

		l->id = (uint64_t)c->lists[i].id;
		l->name = xstrdup(c->lists[i].name);
		l->list_id = xmalloc(n);
		snprintf(l->list_id, n, "%s.%s", c->lists[i].name, domain);
		for (char *p = l->list_id; *p != '\0'; p++)
			*p = (char)tolower((unsigned char)*p);
	}
}

/* Build one message for a made-up recipient, so that what is wrong for
 * every message (the base URL, the bounce domain, the From address)
 * shows now, with its reason, rather than at each recipient's DATA. */
static int
compose_trial(struct compose *cp, struct assent_err *err)
{
	struct compose_recipient r = { .delivery_id = 1, .subscriber_id = 1,
	    .list_id = cp->lists[0].id, .email = cp->from_address };
	char envelope[COMPOSE_ENVELOPE_MAX];
	struct buf b;
	int rc;

	buf_init(&b);
	rc = compose_message(cp, &r, time(NULL), &b, envelope, err);
	buf_free(&b);
	return rc;
}

int
compose_new(const struct campaign *c, const struct assent_conf *conf,
    struct token_signer *signer, struct compose **compose_r,
    struct assent_err *err)
{
	struct compose *cp = xcalloc(1, sizeof(*cp));

	*compose_r = NULL;
	if (conf_check_sending(conf, err) < 0)
		goto fail;
	if (compose_compile(c->subject, RENDER_SUBJECT, "subject", &cp->subject, err) < 0 ||
	    compose_compile(c->body_text, RENDER_TEXT, "text body", &cp->text, err) < 0 ||
	    compose_compile(c->body_html, RENDER_HTML, "HTML body", &cp->html, err) < 0)
		goto fail;
	if (c->nlists == 0 || strchr(c->from_address, '@') == NULL) {
		err_set(err, EX_SOFTWARE, "campaign %s has no list or no From", c->name);
		goto fail;
	}
	cp->campaign_id = c->id;
	cp->from_name = xstrdup(c->from_name != NULL ? c->from_name : "");
	cp->from_address = xstrdup(c->from_address);
	cp->reply_to = c->reply_to != NULL ? xstrdup(c->reply_to) : NULL;
	cp->base_url = xstrdup(conf->http_base_url);
	cp->bounce_domain = xstrdup(conf->sender_bounce_domain);
	cp->postal_address = xstrdup(conf->sender_postal_address);
	cp->organisation = xstrdup(conf->sender_organisation);
	cp->signer = signer;
	compose_add_lists(cp, c);
	buf_init(&cp->subject_out);
	buf_init(&cp->text_out);
	buf_init(&cp->html_out);
	if (compose_trial(cp, err) < 0) {
		err_prefix(err, "campaign %s cannot be sent", c->name);
		goto fail;
	}
	*compose_r = cp;
	return 0;
fail:
	compose_free(cp);
	return -1;
}

void
compose_free(struct compose *cp)
{
	if (cp == NULL)
		return;
	render_free(cp->subject);
	render_free(cp->text);
	render_free(cp->html);
	for (size_t i = 0; i < cp->nlists; i++) {
		free(cp->lists[i].name);
		free(cp->lists[i].list_id);
	}
	free(cp->lists);
	free(cp->from_name);
	free(cp->from_address);
	free(cp->reply_to);
	free(cp->base_url);
	free(cp->bounce_domain);
	free(cp->postal_address);
	free(cp->organisation);
	buf_free(&cp->subject_out);
	buf_free(&cp->text_out);
	buf_free(&cp->html_out);
	free(cp);
}

long long
compose_campaign_id(const struct compose *cp)
{
	return cp->campaign_id;
}

static const struct compose_list *
compose_list(const struct compose *cp, uint64_t list_id)
{
	for (size_t i = 0; i < cp->nlists; i++)
		if (cp->lists[i].id == list_id)
			return &cp->lists[i];
	return &cp->lists[0];
}

/* The links and addresses that carry tokens. */
struct compose_links {
	char unsubscribe_url[COMPOSE_URL_MAX];
	char manage_url[COMPOSE_URL_MAX];
	char mailto[COMPOSE_ENVELOPE_MAX];
	char envelope[COMPOSE_ENVELOPE_MAX];
};

static int
compose_url(const struct compose *cp, const char *path, const struct token *t,
    char *out, size_t outlen, struct assent_err *err)
{
	char tok[TOKEN_TEXT_SIZE];

	if (token_make(cp->signer, t, tok, sizeof(tok), err) < 0)
		return -1;
	snprintf(out, outlen, "%s/%s/%s", cp->base_url, path, tok);
	return 0;
}

static int
compose_verp(const struct compose *cp, const char *prefix, enum token_purpose p,
    uint64_t delivery_id, int64_t now, char *out, struct assent_err *err)
{
	struct token_compact t = { .purpose = p, .delivery_id = delivery_id,
	    .issued_at = now };
	char tok[TOKEN_COMPACT_TEXT_SIZE];

	if (token_compact_make(cp->signer, &t, tok, sizeof(tok), err) < 0)
		return -1;
	return mime_verp(prefix, tok, cp->bounce_domain, out,
	    COMPOSE_ENVELOPE_MAX, err);
}

static int
compose_links(const struct compose *cp, const struct compose_recipient *r,
    int64_t now, struct compose_links *l, struct assent_err *err)
{
	struct token t = { .subscriber_id = r->subscriber_id,
	    .list_id = r->list_id, .campaign_id = (uint64_t)cp->campaign_id,
	    .issued_at = now };

	if (r->subscriber_id == 0) {
		snprintf(l->unsubscribe_url, sizeof(l->unsubscribe_url),
		    "%s/u/test", cp->base_url);
		snprintf(l->manage_url, sizeof(l->manage_url), "%s/m/test",
		    cp->base_url);
	} else {
		t.purpose = TOKEN_UNSUBSCRIBE;
		if (compose_url(cp, "u", &t, l->unsubscribe_url,
		    sizeof(l->unsubscribe_url), err) < 0)
			return -1;
		t.purpose = TOKEN_MANAGE;
		if (compose_url(cp, "m", &t, l->manage_url,
		    sizeof(l->manage_url), err) < 0)
			return -1;
	}
	if (r->delivery_id == 0) {
		snprintf(l->mailto, sizeof(l->mailto), "u-test@%s", cp->bounce_domain);
		snprintf(l->envelope, sizeof(l->envelope), "b-test@%s",
		    cp->bounce_domain);
		return 0;
	}
	if (compose_verp(cp, "u-", TOKEN_UNSUBSCRIBE, r->delivery_id, now,
	    l->mailto, err) < 0 ||
	    compose_verp(cp, "b-", TOKEN_BOUNCE, r->delivery_id, now,
	    l->envelope, err) < 0)
		return -1;
	return 0;
}

static int
compose_render(struct compose *cp, const struct compose_recipient *r,
    const struct compose_links *l, bool bodies, struct assent_err *err)
{
	struct render_values v = {
		.name = r->name, .email = r->email, .attrs = r->attrs,
		.unsubscribe_url = l != NULL ? l->unsubscribe_url : "",
		.manage_url = l != NULL ? l->manage_url : "",
		.postal_address = cp->postal_address,
		.organisation = cp->organisation,
	};

	buf_reset(&cp->subject_out);
	if (render_run(cp->subject, &v, &cp->subject_out, err) < 0)
		return err_prefix(err, "subject");
	if (!bodies)
		return 0;
	buf_reset(&cp->text_out);
	if (render_run(cp->text, &v, &cp->text_out, err) < 0)
		return err_prefix(err, "text body");
	if (cp->html == NULL)
		return 0;
	buf_reset(&cp->html_out);
	if (render_run(cp->html, &v, &cp->html_out, err) < 0)
		return err_prefix(err, "HTML body");
	return 0;
}

int
compose_envelope(struct compose *cp, const struct compose_recipient *r,
    time_t now, char envelope[COMPOSE_ENVELOPE_MAX], struct assent_err *err)
{
	if (r->delivery_id == 0) {
		snprintf(envelope, COMPOSE_ENVELOPE_MAX, "b-test@%s",
		    cp->bounce_domain);
		return 0;
	}
	return compose_verp(cp, "b-", TOKEN_BOUNCE, r->delivery_id,
	    (int64_t)now, envelope, err);
}

int
compose_check(struct compose *cp, const struct compose_recipient *r,
    struct assent_err *err)
{
	return compose_render(cp, r, NULL, false, err);
}

/* A Message-ID left part: for a delivery "cCAMPAIGN.TOKEN", TOKEN the
 * delivery's compact bounce token issued now, so that a complaint can
 * be traced through it and a forged one cannot (intake.h); "c" and 14
 * digits, '.' and 48 fit MIME_ID_LEFT_MAX. A test send gets random bits
 * instead. */
static int
compose_message_id(const struct compose *cp, const struct compose_recipient *r,
    int64_t now, char *out, size_t outlen, struct assent_err *err)
{
	struct token_compact t = { .purpose = TOKEN_BOUNCE,
	    .delivery_id = r->delivery_id, .issued_at = now };
	char tok[TOKEN_COMPACT_TEXT_SIZE];
	uint64_t nonce = 0;
	int w;

	if (r->delivery_id != 0) {
		if (token_compact_make(cp->signer, &t, tok, sizeof(tok), err) < 0)
			return -1;
		w = snprintf(out, outlen, "c%lld.%s", cp->campaign_id, tok);
		if (w < 0 || (size_t)w >= outlen)
			return err_set(err, EX_SOFTWARE, "campaign id %lld too "
			    "large for a Message-ID", cp->campaign_id);
		return 0;
	}
	if (RAND_bytes((unsigned char *)&nonce, sizeof(nonce)) != 1)
		nonce = (uint64_t)now ^ (uint64_t)(uintptr_t)out;
	snprintf(out, outlen, "c%lld.t%" PRIx64 ".%" PRIx64, cp->campaign_id,
	    nonce, (uint64_t)now);
	return 0;
}

int
compose_message(struct compose *cp, const struct compose_recipient *r,
    time_t now, struct buf *out, char envelope[COMPOSE_ENVELOPE_MAX],
    struct assent_err *err)
{
	struct compose_links l;
	const struct compose_list *list = compose_list(cp, r->list_id);
	char message_id[MIME_ID_LEFT_MAX + 1], seed[MIME_SEED_MAX + 1];

	envelope[0] = '\0';
	if (compose_links(cp, r, (int64_t)now, &l, err) < 0 ||
	    compose_render(cp, r, &l, true, err) < 0) {
		buf_reset(out);
		return -1;
	}
	if (compose_message_id(cp, r, (int64_t)now, message_id,
	    sizeof(message_id), err) < 0) {
		buf_reset(out);
		return -1;
	}
	/* The boundary seed: the Message-ID's unique part, cut to fit. */
	size_t seedlen = strlen(message_id);
	if (seedlen > MIME_SEED_MAX)
		seedlen = MIME_SEED_MAX;
	memcpy(seed, message_id, seedlen);
	seed[seedlen] = '\0';
	struct mime_message m = {
		.from = { cp->from_name, cp->from_address },
		.to = { r->name, r->email },
		.reply_to = { NULL, cp->reply_to },
		.subject = cp->subject_out.data != NULL ? cp->subject_out.data : "",
		.date = now,
		.message_id = message_id,
		.list_name = list->name,
		.list_id = list->list_id,
		.unsubscribe_url = l.unsubscribe_url,
		.unsubscribe_mailto = l.mailto,
		.text = cp->text_out.data != NULL ? cp->text_out.data : "",
		.html = cp->html != NULL ? cp->html_out.data : NULL,
		.boundary_seed = seed,
	};
	if (mime_build(&m, out, err) < 0)
		return -1;
	memcpy(envelope, l.envelope, sizeof(l.envelope));
	return 0;
}

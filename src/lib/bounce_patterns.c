/* bounce_patterns: plain-text bounces that are not RFC 3464 reports, as
 * common MTAs and providers write them. Each entry of the table says
 * which text marks the bounce, where its list of failed addresses
 * starts and ends and how an address line looks; what follows an
 * address (up to the next one) is its reason, where the SMTP reply code
 * and the enhanced status code are found. Each entry has a sample in
 * tests/data/inbound/. Simple case-insensitive matching, no regex. */
#include <ctype.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "assent/bounce.h"
#include "bounce_private.h"

#define BOUNCE_BLOCK_MAX 2048           /* reason text kept per address */
#define BOUNCE_ENDS 3

enum bounce_addr_style {
	BOUNCE_ADDR_ALONE,              /* a line holding the address only */
	BOUNCE_ADDR_ANGLE_COLON,        /* "<addr>:" */
	BOUNCE_ADDR_FIRST_WORD,         /* "addr on 3/4/2024 10:00 AM" */
	BOUNCE_ADDR_AFTER_START,        /* on the start line, after it */
};

struct bounce_pattern {
	const char *name;
	const char *marker;             /* must appear */
	const char *start;              /* addresses after it (NULL: marker) */
	const char *end[BOUNCE_ENDS];   /* the list ends at the first of these */
	enum bounce_addr_style style;
	enum bounce_action action;
};

static const struct bounce_pattern bounce_patterns[] = {
	{ "qmail", "This is the qmail-send program", "following addresses",
	    { "--- Below this line is a copy of the message", NULL, NULL },
	    BOUNCE_ADDR_ANGLE_COLON, BOUNCE_ACTION_FAILED },
	{ "exim", "could not be delivered to one or more of its recipients",
	    "following address(es) failed",
	    { "------ This is a copy of the message",
	      "------ This is a copy of the body", NULL },
	    BOUNCE_ADDR_ALONE, BOUNCE_ACTION_FAILED },
	{ "exim-delay", "has not yet been delivered to one or more of its",
	    "to which the message has not yet been delivered",
	    { "No action is required on your part", NULL, NULL },
	    BOUNCE_ADDR_ALONE, BOUNCE_ACTION_DELAYED },
	{ "sendmail", "----- The following addresses had permanent fatal errors",
	    NULL,
	    { "----- Transcript of session follows",
	      "----- Original message follows", "----- Message header follows" },
	    BOUNCE_ADDR_ALONE, BOUNCE_ACTION_FAILED },
	{ "exchange", "Delivery has failed to these recipients or groups",
	    "Diagnostic information for administrators",
	    { "Original message headers", NULL, NULL },
	    BOUNCE_ADDR_ALONE, BOUNCE_ACTION_FAILED },
	{ "exchange-2003", "did not reach some or all of the intended recipients",
	    "recipient(s) cannot be reached",
	    { "Original message", "-----Original Message-----", NULL },
	    BOUNCE_ADDR_FIRST_WORD, BOUNCE_ACTION_FAILED },
	{ "google", "Delivery to the following recipient failed permanently",
	    NULL,
	    { "----- Original message -----", "----- Message header follows",
	      NULL },
	    BOUNCE_ADDR_ALONE, BOUNCE_ACTION_FAILED },
	{ "google-delay", "Delivery to the following recipient has been delayed",
	    NULL,
	    { "----- Original message -----", "----- Message header follows",
	      NULL },
	    BOUNCE_ADDR_ALONE, BOUNCE_ACTION_DELAYED },
	{ "google-notfound", "** Address not found **",
	    "Your message wasn't delivered to",
	    { "----- Original message -----", NULL, NULL },
	    BOUNCE_ADDR_AFTER_START, BOUNCE_ACTION_FAILED },
	{ "yahoo", "Sorry, we were unable to deliver your message to the "
	    "following address", NULL,
	    { "--- Below this line is a copy of the message", NULL, NULL },
	    BOUNCE_ADDR_ANGLE_COLON, BOUNCE_ACTION_FAILED },
};

#define BOUNCE_NPATTERNS (sizeof(bounce_patterns) / sizeof(bounce_patterns[0]))

/* ---- matching ---------------------------------------------------------------- */

/* How much of s[0..n) needle matches at its start, ignoring case, a
 * blank in needle standing for any run of white space (text is often
 * wrapped differently); 0 if it does not. */
static size_t
bounce_match_at(const char *s, size_t n, const char *needle)
{
	size_t i = 0;

	for (; *needle != '\0'; needle++) {
		if (*needle == ' ') {
			size_t w = i;

			while (w < n && isspace((unsigned char)s[w]))
				w++;
			if (w == i)
				return 0;
			i = w;
		} else if (i < n && tolower((unsigned char)s[i]) ==
		    tolower((unsigned char)*needle))
			i++;
		else
			return 0;
	}
	return i;
}

/* The first place in s[0..n) where needle matches (as above), or NULL. */
static const char *
bounce_find_loose(const char *s, size_t n, const char *needle)
{
	int first = tolower((unsigned char)needle[0]);

	for (size_t i = 0; i < n; i++)
		if (tolower((unsigned char)s[i]) == first &&
		    bounce_match_at(s + i, n - i, needle) > 0)
			return s + i;
	return NULL;
}

/* ---- address lines --------------------------------------------------------- */

/* Is s[0..n) one plausible address: local@domain.tld, no blanks? */
static bool
bounce_plausible(const char *s, size_t n)
{
	const char *at = memchr(s, '@', n);

	if (n == 0 || n > BOUNCE_ADDR_MAX || at == NULL || at == s ||
	    at == s + n - 1 || memchr(at + 1, '@', (size_t)(s + n - at - 1)))
		return false;
	if (memchr(at, '.', (size_t)(s + n - at)) == NULL)
		return false;
	for (size_t i = 0; i < n; i++)
		if ((unsigned char)s[i] <= ' ' || strchr("<>()[],;:\"", s[i]))
			return false;
	return true;
}

/* Strip blanks at both ends of line[0..*n); returns the new start. */
static const char *
bounce_trim(const char *line, size_t *n)
{
	while (*n > 0 && isspace((unsigned char)line[0])) {
		line++;
		(*n)--;
	}
	while (*n > 0 && isspace((unsigned char)line[*n - 1]))
		(*n)--;
	return line;
}

/* The address a line starts a block with, as style says: into addr,
 * true when there is one. */
static bool
bounce_addr_line(const char *line, size_t n, enum bounce_addr_style style,
    char addr[BOUNCE_ADDR_MAX + 1])
{
	size_t w;

	line = bounce_trim(line, &n);
	switch (style) {
	case BOUNCE_ADDR_ANGLE_COLON:
		if (n < 4 || line[0] != '<' || line[n - 2] != '>' || line[n - 1] != ':')
			return false;
		line++;
		n -= 3;
		break;
	case BOUNCE_ADDR_ALONE:
		if (n >= 2 && line[0] == '<' && line[n - 1] == '>') {
			line++;
			n -= 2;
		}
		break;
	case BOUNCE_ADDR_FIRST_WORD:
		for (w = 0; w < n && !isspace((unsigned char)line[w]); w++)
			;
		n = w;
		break;
	case BOUNCE_ADDR_AFTER_START:
		return false;
	}
	if (!bounce_plausible(line, n))
		return false;
	bounce_copy(addr, BOUNCE_ADDR_MAX + 1, line, n);
	return true;
}

/* The first plausible address in s[0..n) ("Your message wasn't
 * delivered to bob@example.net because ..."). */
static bool
bounce_addr_in(const char *s, size_t n, char addr[BOUNCE_ADDR_MAX + 1])
{
	for (size_t i = 0; i < n; i++) {
		size_t w;

		if (i > 0 && !isspace((unsigned char)s[i - 1]) && s[i - 1] != '<')
			continue;
		for (w = 0; i + w < n && !isspace((unsigned char)s[i + w]) &&
		    s[i + w] != '>'; w++)
			;
		while (w > 0 && strchr(".,;:", s[i + w - 1]) != NULL)
			w--;
		if (bounce_plausible(s + i, w)) {
			bounce_copy(addr, BOUNCE_ADDR_MAX + 1, s + i, w);
			return true;
		}
	}
	return false;
}

/* ---- one address and its reason ------------------------------------------ */

struct bounce_block {
	char addr[BOUNCE_ADDR_MAX + 1];
	char text[BOUNCE_BLOCK_MAX + 1];        /* reason lines, '\n' between */
	size_t len;
	bool open;
};

static void
bounce_block_line(struct bounce_block *b, const char *line, size_t n)
{
	line = bounce_trim(line, &n);
	if (n == 0 || b->len + 1 >= BOUNCE_BLOCK_MAX)
		return;
	if (n > BOUNCE_BLOCK_MAX - b->len - 1)
		n = BOUNCE_BLOCK_MAX - b->len - 1;
	memcpy(b->text + b->len, line, n);
	b->len += n;
	b->text[b->len++] = '\n';
	b->text[b->len] = '\0';
}

/* The diagnostic: the reason line holding the first SMTP code or status,
 * from there; else the first reason line. */
static void
bounce_block_diagnostic(const struct bounce_block *b, char *out, size_t size)
{
	const char *line = b->text, *nl;

	for (; *line != '\0'; line = nl + 1) {
		char one[BOUNCE_BLOCK_MAX + 1], st[BOUNCE_STATUS_SIZE];
		size_t n;
		int code;

		nl = strchr(line, '\n');
		n = (size_t)(nl - line);
		memcpy(one, line, n);
		one[n] = '\0';
		code = bounce_smtp_code_find(one);
		if (code != 0 || bounce_status_find(one, st)) {
			char digits[4];
			const char *from = NULL;

			if (code != 0) {
				snprintf(digits, sizeof(digits), "%d", code);
				from = strstr(one, digits);
			}
			bounce_copy(out, size, from != NULL ? from : one, SIZE_MAX);
			return;
		}
	}
	nl = strchr(b->text, '\n');
	bounce_copy(out, size, b->text, nl != NULL ? (size_t)(nl - b->text) : 0);
}

static void
bounce_block_end(struct bounce_block *b, enum bounce_action action,
    struct bounce_report *r)
{
	struct bounce_recipient *rc;

	if (!b->open)
		return;
	b->open = false;
	if ((rc = bounce_recipient_add(r)) == NULL)
		return;
	memcpy(rc->final_recipient, b->addr, sizeof(rc->final_recipient));
	rc->action = action;
	bounce_status_find(b->text, rc->status);
	rc->smtp_code = bounce_smtp_code_find(b->text);
	bounce_block_diagnostic(b, rc->diagnostic, sizeof(rc->diagnostic));
	rc->class = bounce_classify(action, rc->status, rc->smtp_code,
	    rc->diagnostic, &rc->why);
}

/* ---- one pattern ------------------------------------------------------------ */

/* Where the address list of p ends in s[0..n). */
static size_t
bounce_section_end(const struct bounce_pattern *p, const char *s, size_t n)
{
	size_t end = n;

	for (size_t i = 0; i < BOUNCE_ENDS && p->end[i] != NULL; i++) {
		const char *e = bounce_find_loose(s, n, p->end[i]);

		if (e != NULL && (size_t)(e - s) < end)
			end = (size_t)(e - s);
	}
	return end;
}

/* The addresses of section s[0..n) (starting on the start line). */
static void
bounce_section(const struct bounce_pattern *p, const char *s, size_t n,
    struct bounce_report *r)
{
	struct bounce_block b = { .open = false };
	const char *line = s, *nl, *end = s + n;
	size_t len;
	bool first = true;

	for (; line < end; line = nl + 1, first = false) {
		nl = memchr(line, '\n', (size_t)(end - line));
		if (nl == NULL)
			nl = end;
		len = (size_t)(nl - line);
		if (first && p->style == BOUNCE_ADDR_AFTER_START) {
			b.open = bounce_addr_in(line, len, b.addr);
			b.len = 0;
			b.text[0] = '\0';
			continue;
		}
		if (!first && p->style != BOUNCE_ADDR_AFTER_START) {
			char addr[BOUNCE_ADDR_MAX + 1];

			if (bounce_addr_line(line, len, p->style, addr)) {
				bounce_block_end(&b, p->action, r);
				memcpy(b.addr, addr, sizeof(addr));
				b.len = 0;
				b.text[0] = '\0';
				b.open = true;
				continue;
			}
		}
		if (b.open)
			bounce_block_line(&b, line, len);
	}
	bounce_block_end(&b, p->action, r);
}

static bool
bounce_pattern_try(const struct bounce_pattern *p, const char *text,
    size_t len, struct bounce_report *r)
{
	const char *m = bounce_find_loose(text, len, p->marker), *start;
	size_t rest, n;

	if (m == NULL)
		return false;
	rest = len - (size_t)(m - text);
	start = p->start != NULL ? bounce_find_loose(m, rest, p->start) : m;
	if (start == NULL)
		return false;
	/* the start line is where the section begins */
	while (start > text && start[-1] != '\n')
		start--;
	rest = len - (size_t)(start - text);
	n = bounce_section_end(p, start, rest);
	bounce_section(p, start, n, r);
	return r->nrecipients > 0;
}

bool
bounce_patterns_scan(const char *text, size_t len, struct bounce_report *r)
{
	for (size_t i = 0; i < BOUNCE_NPATTERNS; i++) {
		if (bounce_pattern_try(&bounce_patterns[i], text, len, r)) {
			r->pattern = bounce_patterns[i].name;
			return true;
		}
		r->nrecipients = 0;             /* a partial match leaves nothing */
		r->recipients_dropped = 0;
	}
	return false;
}

/* bounce_classify: status codes, SMTP replies and diagnostics to a
 * class (hard, soft, policy); the names of the module's enums. See
 * include/assent/bounce.h for the rules. */
#include <ctype.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "assent/bounce.h"
#include "bounce_private.h"

/* ---- finding codes in text ------------------------------------------------ */

/* Digits at s: how many (at most max + 1, to tell "too many"). */
static size_t
bounce_digits(const char *s, size_t max)
{
	size_t n = 0;

	while (n <= max && isdigit((unsigned char)s[n]))
		n++;
	return n;
}

/* Is there an enhanced status code at s (s[-1], if any, checked by the
 * caller)? Its length, or 0. */
static size_t
bounce_status_at(const char *s)
{
	size_t y, z;

	if (s[0] != '2' && s[0] != '4' && s[0] != '5')
		return 0;
	if (s[1] != '.' || (y = bounce_digits(s + 2, 3)) == 0 || y > 3)
		return 0;
	if (s[2 + y] != '.' || (z = bounce_digits(s + 3 + y, 3)) == 0 || z > 3)
		return 0;
	/* "5.1.1.2" or "5.1.1x" is a dotted word or a version, not a code */
	if (s[3 + y + z] == '.' && isdigit((unsigned char)s[4 + y + z]))
		return 0;
	if (isalnum((unsigned char)s[3 + y + z]))
		return 0;
	return 3 + y + z;
}

static bool
bounce_starts_word(const char *text, const char *s)
{
	return s == text || !(isalnum((unsigned char)s[-1]) || s[-1] == '.');
}

static bool
bounce_status_unspecific(const char *status)
{
	const char *dot = strchr(status, '.');

	return dot != NULL && strcmp(dot, ".0.0") == 0;
}

bool
bounce_status_find(const char *text, char out[BOUNCE_STATUS_SIZE])
{
	const char *s;
	size_t n;

	out[0] = '\0';
	if (text == NULL)
		return false;
	for (s = text; *s != '\0'; s++) {
		if (!bounce_starts_word(text, s) || (n = bounce_status_at(s)) == 0)
			continue;
		if (out[0] == '\0' || bounce_status_unspecific(out)) {
			memcpy(out, s, n);
			out[n] = '\0';
		}
		if (!bounce_status_unspecific(out))
			return true;
		s += n - 1;
	}
	return out[0] != '\0';
}

int
bounce_smtp_code_find(const char *text)
{
	const char *s;

	if (text == NULL)
		return 0;
	for (s = text; *s != '\0'; s++) {
		if (*s < '2' || *s > '5' || !bounce_starts_word(text, s) ||
		    !isdigit((unsigned char)s[1]) || !isdigit((unsigned char)s[2]))
			continue;
		if (s[3] == '\0' || s[3] == ' ' || s[3] == '-' || s[3] == ':' ||
		    s[3] == ';' || s[3] == '\t' || s[3] == '\r' || s[3] == '\n')
			return (s[0] - '0') * 100 + (s[1] - '0') * 10 + (s[2] - '0');
	}
	return 0;
}

/* ---- diagnostics ---------------------------------------------------------- */

/* The sender's fault: content, reputation, authentication. */
static const char *const bounce_policy_words[] = {
	"spam", "blocked", "blacklist", "blocklist", "block list", "denylist",
	"spamhaus", "spamcop", "barracuda", "sorbs", "listed at", "listed in",
	"reputation", "policy", "dmarc", "dkim", "spf", "not authorized",
	"unauthenticated", "authentication", "rejected due to content",
	"message content", "virus", "malware", "phish", "too many messages",
	"rate limit", "ratelimit", "bulk mail", "junk",
};

/* The refusal is about us, not the mailbox: our sender address or
 * domain, or the sending host (its reverse DNS, its address). Checked
 * before anything that would call the recipient gone: "Sender domain
 * x does not exist" or "5.1.0 Sender denied" must not suppress a
 * healthy address. "in reply to mail from" is Postfix's note that the
 * MAIL FROM command itself was refused. */
static const char *const bounce_sender_words[] = {
	"sender address rejected", "sender denied", "sender rejected",
	"sender domain", "sender verify", "sender verification",
	"sender not allowed", "sender is not allowed", "in reply to mail from",
	"ptr record", "no ptr", "reverse dns", "reverse lookup",
	"reverse hostname", "rdns", "client host", "helo command rejected",
	"your ip", "sending ip", "your mail server", "your server",
};

/* The mailbox does not exist or is closed for good. Each phrase names
 * the mailbox: a bare "does not exist" may be said of our domain or
 * host too. */
static const char *const bounce_unknown_words[] = {
	"user unknown", "unknown user", "no such user", "no such mailbox",
	"no such recipient", "no such address", "no mailbox", "unknown recipient",
	"recipient unknown", "recipient not found", "address not found",
	"user not found", "mailbox not found", "unknown mailbox",
	"mailbox does not exist", "mailbox doesn't exist",
	"user does not exist", "user doesn't exist", "account does not exist",
	"account doesn't exist", "address does not exist",
	"address doesn't exist", "recipient does not exist",
	"recipient doesn't exist", "account that you tried to reach does not exist",
	"user doesn't have a", "user does not have a", "invalid recipient",
	"invalid mailbox", "not a valid mailbox", "unknown address",
	"address unknown", "addressee unknown", "unknown local part",
	"unrouteable address", "recipnotfound", "account disabled",
	"account has been disabled", "account is disabled", "mailbox disabled",
	"mailbox is disabled", "account closed", "no longer available",
	"couldn't be found",
};

/* Full, may empty again. */
static const char *const bounce_full_words[] = {
	"mailbox full", "mailbox is full", "over quota", "quota exceeded",
	"exceeded storage", "insufficient storage", "out of storage",
	"storage allocation",
};

static bool
bounce_says(const char *text, const char *const *words, size_t n)
{
	size_t len;

	if (text == NULL)
		return false;
	len = strlen(text);
	for (size_t i = 0; i < n; i++)
		if (bounce_find(text, len, words[i]) != NULL)
			return true;
	return false;
}

#define BOUNCE_SAYS(text, words) \
	bounce_says((text), (words), sizeof(words) / sizeof((words)[0]))

/* A 5xx without anything more precise: what its words say. */
static enum bounce_class
bounce_by_words(int smtp_code, const char *diagnostic, const char **why)
{
	if (BOUNCE_SAYS(diagnostic, bounce_sender_words)) {
		*why = "diagnostic speaks of our sender or sending host";
		return BOUNCE_CLASS_POLICY;
	}
	if (BOUNCE_SAYS(diagnostic, bounce_policy_words)) {
		*why = "diagnostic speaks of policy or reputation";
		return BOUNCE_CLASS_POLICY;
	}
	if (BOUNCE_SAYS(diagnostic, bounce_full_words)) {
		*why = "diagnostic says mailbox full";
		return BOUNCE_CLASS_SOFT;
	}
	if (BOUNCE_SAYS(diagnostic, bounce_unknown_words) &&
	    (smtp_code == 0 || smtp_code == 550 || smtp_code == 551 ||
	    smtp_code == 553 || smtp_code == 554 || smtp_code == 511)) {
		*why = "diagnostic says the mailbox does not exist";
		return BOUNCE_CLASS_HARD;
	}
	*why = "permanent failure without a precise reason";
	return BOUNCE_CLASS_SOFT;
}

/* ---- the classifier --------------------------------------------------------- */

/* The status to judge by: status when it is a code, refined by a
 * specific one of the same class in the diagnostic; else the
 * diagnostic's. "" if none. */
static void
bounce_effective_status(const char *status, const char *diagnostic,
    char out[BOUNCE_STATUS_SIZE])
{
	char given[BOUNCE_STATUS_SIZE], diag[BOUNCE_STATUS_SIZE];

	bounce_status_find(status, given);
	bounce_status_find(diagnostic, diag);
	if (given[0] == '\0' || (bounce_status_unspecific(given) &&
	    diag[0] == given[0] && !bounce_status_unspecific(diag)))
		memcpy(out, diag, BOUNCE_STATUS_SIZE);
	else
		memcpy(out, given, BOUNCE_STATUS_SIZE);
}

void
bounce_status_refine(char status[BOUNCE_STATUS_SIZE], const char *diagnostic)
{
	char st[BOUNCE_STATUS_SIZE];

	bounce_effective_status(status, diagnostic, st);
	memcpy(status, st, BOUNCE_STATUS_SIZE);
}

/* A permanent failure with status 5.S.D. */
static enum bounce_class
bounce_permanent(int subject, int detail, int smtp_code,
    const char *diagnostic, const char **why)
{
	if (subject == 7) {
		*why = "5.7.x: refused by policy";
		return BOUNCE_CLASS_POLICY;
	}
	if (subject == 1 && (detail == 7 || detail == 8)) {
		*why = "5.1.7/5.1.8: our sender address";
		return BOUNCE_CLASS_POLICY;
	}
	if ((subject == 2 && detail == 3) || (subject == 3 && detail == 4)) {
		*why = "message too big";
		return BOUNCE_CLASS_POLICY;
	}
	if (subject == 1 && BOUNCE_SAYS(diagnostic, bounce_sender_words)) {
		*why = "5.1.x about our sender or sending host";
		return BOUNCE_CLASS_POLICY;
	}
	/* 5.1.0 ("other address status") is Exchange's for its sender
	 * filter as much as for a bad recipient: the words decide */
	if (subject == 1 && detail == 0)
		return bounce_by_words(smtp_code, diagnostic, why);
	if (subject == 1) {
		*why = "5.1.x: bad destination address";
		return BOUNCE_CLASS_HARD;
	}
	if (subject == 2 && detail == 1) {
		*why = "5.2.1: mailbox disabled";
		return BOUNCE_CLASS_HARD;
	}
	if (subject == 2 && detail == 2) {
		*why = "x.2.2: mailbox full";
		return BOUNCE_CLASS_SOFT;
	}
	return bounce_by_words(smtp_code, diagnostic, why);
}

enum bounce_class
bounce_classify(enum bounce_action action, const char *status, int smtp_code,
    const char *diagnostic, const char **why_r)
{
	char st[BOUNCE_STATUS_SIZE];
	const char *why_local, **why = why_r != NULL ? why_r : &why_local;
	int subject = 0, detail = 0, class_digit;

	if (action == BOUNCE_ACTION_DELIVERED || action == BOUNCE_ACTION_RELAYED ||
	    action == BOUNCE_ACTION_EXPANDED) {
		*why = "not a failure";
		return BOUNCE_CLASS_NONE;
	}
	if (action == BOUNCE_ACTION_DELAYED) {
		*why = "delayed: still trying";
		return BOUNCE_CLASS_SOFT;
	}
	if (smtp_code < 200 || smtp_code > 599)
		smtp_code = 0;
	bounce_effective_status(status, diagnostic, st);
	if (st[0] != '\0') {
		class_digit = st[0] - '0';
		sscanf(st + 2, "%d.%d", &subject, &detail);
	} else if (smtp_code != 0)
		class_digit = smtp_code / 100;
	else if (action == BOUNCE_ACTION_FAILED)
		class_digit = 5;
	else {
		*why = "no failure information";
		return BOUNCE_CLASS_NONE;
	}
	if (class_digit == 2 || class_digit == 3) {
		*why = "success reply";
		return BOUNCE_CLASS_NONE;
	}
	if (class_digit == 4) {
		*why = "4.x.x or 4xx: transient";
		return BOUNCE_CLASS_SOFT;
	}
	if (st[0] == '\0')
		return bounce_by_words(smtp_code, diagnostic, why);
	if (subject == 4) {
		*why = "x.4.x: network or routing";
		return BOUNCE_CLASS_SOFT;
	}
	return bounce_permanent(subject, detail, smtp_code, diagnostic, why);
}

enum bounce_class
bounce_classify_reply(int code, const char *enhanced, const char *text,
    const char **why_r)
{
	if (code < 400 || code > 599) {
		if (why_r != NULL)
			*why_r = "not a refusal";
		return BOUNCE_CLASS_NONE;
	}
	return bounce_classify(code >= 500 ? BOUNCE_ACTION_FAILED :
	    BOUNCE_ACTION_DELAYED, enhanced, code, text, why_r);
}

/* ---- names -------------------------------------------------------------- */

const char *
bounce_kind_name(enum bounce_kind kind)
{
	switch (kind) {
	case BOUNCE_KIND_DSN:           return "dsn";
	case BOUNCE_KIND_ARF:           return "arf";
	case BOUNCE_KIND_AUTO_REPLY:    return "auto-reply";
	case BOUNCE_KIND_MAILTO_UNSUBSCRIBE: return "mailto-unsubscribe";
	case BOUNCE_KIND_UNKNOWN:       break;
	}
	return "unknown";
}

const char *
bounce_class_name(enum bounce_class class)
{
	switch (class) {
	case BOUNCE_CLASS_HARD:         return "hard";
	case BOUNCE_CLASS_SOFT:         return "soft";
	case BOUNCE_CLASS_POLICY:       return "policy";
	case BOUNCE_CLASS_COMPLAINT:    return "complaint";
	case BOUNCE_CLASS_NONE:         break;
	}
	return "none";
}

static const char *const bounce_action_names[] = {
	[BOUNCE_ACTION_NONE] = "",
	[BOUNCE_ACTION_FAILED] = "failed",
	[BOUNCE_ACTION_DELAYED] = "delayed",
	[BOUNCE_ACTION_DELIVERED] = "delivered",
	[BOUNCE_ACTION_RELAYED] = "relayed",
	[BOUNCE_ACTION_EXPANDED] = "expanded",
};

const char *
bounce_action_name(enum bounce_action action)
{
	if ((size_t)action >= sizeof(bounce_action_names) /
	    sizeof(bounce_action_names[0]))
		return "";
	return bounce_action_names[action];
}

enum bounce_action
bounce_action_parse(const char *s)
{
	size_t n;

	if (s == NULL)
		return BOUNCE_ACTION_NONE;
	s += strspn(s, " \t");
	n = strcspn(s, " \t(;");
	for (size_t a = 1; a < sizeof(bounce_action_names) /
	    sizeof(bounce_action_names[0]); a++)
		if (strlen(bounce_action_names[a]) == n &&
		    strncasecmp(s, bounce_action_names[a], n) == 0)
			return (enum bounce_action)a;
	return BOUNCE_ACTION_NONE;
}

const char *
bounce_source_name(enum bounce_source source)
{
	switch (source) {
	case BOUNCE_SOURCE_ENVELOPE:            return "envelope";
	case BOUNCE_SOURCE_DELIVERED_TO:        return "delivered-to";
	case BOUNCE_SOURCE_X_ORIGINAL_TO:       return "x-original-to";
	case BOUNCE_SOURCE_TO:                  return "to";
	case BOUNCE_SOURCE_ORIGINAL_RETURN_PATH: return "original-return-path";
	case BOUNCE_SOURCE_ORIGINAL_MAIL_FROM:  return "original-mail-from";
	case BOUNCE_SOURCE_ORIGINAL_MESSAGE_ID: return "original-message-id";
	case BOUNCE_SOURCE_IN_REPLY_TO:         return "in-reply-to";
	case BOUNCE_SOURCE_REFERENCES:          return "references";
	case BOUNCE_SOURCE_NONE:                break;
	}
	return "";
}

/* addr: validate and normalise email addresses; see include/assent/addr.h */
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include <idn2.h>

#include "assent/addr.h"
#include "assent/text.h"

/*
 * Raw input beyond this is refused before any work. UTS#46 mapping can
 * shrink a domain (full-width letters, ignored characters), so this is
 * a bound on effort, not the 254-octet rule, which is applied to the
 * normalised result.
 */
#define ADDR_INPUT_MAX   1024
#define ADDR_LABEL_MAX   63
#define ADDR_WHY_SIZE    256

/* UTS#46 processing: map case and compatibility forms, keep sharp s
 * and final sigma as themselves (non-transitional), NFC first. */
#define ADDR_IDN2_FLAGS  (IDN2_NFC_INPUT | IDN2_NONTRANSITIONAL)

static int addr_why(char *why, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* Write the reason for a refusal into why (ADDR_WHY_SIZE bytes) and
 * return -1. */
static int
addr_why(char *why, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(why, ADDR_WHY_SIZE, fmt, ap);
	va_end(ap);
	return -1;
}

static char
addr_lower(char c)
{
	return c >= 'A' && c <= 'Z' ? (char)(c - 'A' + 'a') : c;
}

static bool
addr_is_alnum(unsigned char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
	    (c >= '0' && c <= '9');
}

/* RFC 5322 atext. */
static bool
addr_is_atext(unsigned char c)
{
	return addr_is_alnum(c) || (c != '\0' && strchr("!#$%&'*+-/=?^_`{|}~",
	    c) != NULL);
}

/*
 * Refuse control characters (C0, DEL, and C1 written as UTF-8, which is
 * always C2 80-C2 9F) and spaces anywhere in s, naming the first one.
 */
static int
addr_check_controls(const char *s, char *why)
{
	const unsigned char *p = (const unsigned char *)s;
	char rep[16];
	size_t i;

	for (i = 0; p[i] != '\0'; i++) {
		if (p[i] == ' ')
			return addr_why(why, "contains a space");
		if (p[i] < 0x20 || p[i] == 0x7f) {
			text_quote(s + i, 1, rep, sizeof(rep));
			return addr_why(why, "contains a control character "
			    "(%s)", rep);
		}
		if (p[i] == 0xc2 && p[i + 1] >= 0x80 && p[i + 1] <= 0x9f) {
			text_quote(s + i, 2, rep, sizeof(rep));
			return addr_why(why, "contains a control character "
			    "(%s)", rep);
		}
	}
	return 0;
}

static int
addr_check_local(const char *local, size_t len, char *why)
{
	size_t i;

	if (len == 0)
		return addr_why(why, "empty local part");
	for (i = 0; i < len; i++)
		if ((unsigned char)local[i] >= 0x80)
			return addr_why(why, "non-ASCII local part (SMTPUTF8 "
			    "is not supported)");
	if (len > ADDR_LOCAL_MAX)
		return addr_why(why, "local part is too long (%zu octets, at "
		    "most %d)", len, ADDR_LOCAL_MAX);
	if (local[0] == '.')
		return addr_why(why, "local part starts with a dot");
	if (local[len - 1] == '.')
		return addr_why(why, "local part ends with a dot");
	for (i = 0; i < len; i++) {
		if (local[i] == '.' && local[i + 1] == '.')
			return addr_why(why, "two dots in a row in the local "
			    "part");
		if (local[i] != '.' && !addr_is_atext((unsigned char)local[i]))
			return addr_why(why, "character '%c' is not allowed in "
			    "the local part", local[i]);
	}
	return 0;
}

/*
 * The LDH rules for one ASCII label (len bytes, already lower-case or
 * not): 1-63 octets of letters, digits and hyphens, no hyphen at
 * either end.
 */
static int
addr_check_ldh_label(const char *label, size_t len, char *why)
{
	char q[TEXT_QUOTE_SIZE];
	size_t i;

	if (len == 0)
		return addr_why(why, "empty label in the domain");
	text_quote(label, len, q, sizeof(q));
	if (len > ADDR_LABEL_MAX)
		return addr_why(why, "domain label \"%s\" is too long (%zu "
		    "octets, at most %d)", q, len, ADDR_LABEL_MAX);
	for (i = 0; i < len; i++)
		if (!addr_is_alnum((unsigned char)label[i]) &&
		    label[i] != '-') {
			char c[16];

			text_quote(label + i, 1, c, sizeof(c));
			return addr_why(why, "character '%s' is not allowed in "
			    "the domain", c);
		}
	if (label[0] == '-')
		return addr_why(why, "domain label \"%s\" starts with a "
		    "hyphen", q);
	if (label[len - 1] == '-')
		return addr_why(why, "domain label \"%s\" ends with a hyphen",
		    q);
	return 0;
}

static bool
addr_is_ascii(const char *s, size_t len)
{
	size_t i;

	for (i = 0; i < len; i++)
		if ((unsigned char)s[i] >= 0x80)
			return false;
	return true;
}

/*
 * Run one label (NUL-terminated, already ASCII lower-cased; raw is the
 * label as given, for the message) through libidn2, which maps it
 * (UTS#46), checks it against IDNA2008 and, for an A-label, checks the
 * punycode and the round trip. *alabel_r is freed with idn2_free().
 */
static int
addr_idn_label(const char *lower, const char *raw, size_t rawlen,
    char **alabel_r, char *why)
{
	char q[TEXT_QUOTE_SIZE];
	size_t i;
	int rc;

	*alabel_r = NULL;
	rc = idn2_lookup_u8((const uint8_t *)lower, (uint8_t **)alabel_r,
	    ADDR_IDN2_FLAGS);
	if (rc != IDN2_OK) {
		*alabel_r = NULL;
		text_quote(raw, rawlen, q, sizeof(q));
		return addr_why(why, "domain label \"%s\" is not a valid "
		    "internationalised domain name (%s)", q,
		    idn2_strerror(rc));
	}
	for (i = 0; (*alabel_r)[i] != '\0'; i++)
		(*alabel_r)[i] = addr_lower((*alabel_r)[i]);
	return 0;
}

/*
 * Convert one label (len bytes) to its lower-case A-label form and
 * append it to out (*outlen bytes used, room for ADDR_DOMAIN_MAX).
 * ASCII labels follow the LDH rules and are used as they are, except
 * that those claiming to be A-labels ("xn--") must pass libidn2; every
 * label with non-ASCII characters is converted by libidn2.
 */
static int
addr_append_label(const char *label, size_t len, char *out, size_t *outlen,
    char *why)
{
	char lower[ADDR_INPUT_MAX + 1], *idn = NULL;
	const char *alabel = lower;
	bool ascii = addr_is_ascii(label, len);
	size_t i, n;
	int rc = -1;

	for (i = 0; i < len; i++)
		lower[i] = addr_lower(label[i]);
	lower[len] = '\0';
	if (ascii && addr_check_ldh_label(label, len, why) == -1)
		return -1;
	if (!ascii || strncmp(lower, "xn--", 4) == 0) {
		if (addr_idn_label(lower, label, len, &idn, why) == -1)
			return -1;
		alabel = idn;
	}
	n = strlen(alabel);
	if (*outlen + (*outlen > 0) + n > ADDR_DOMAIN_MAX) {
		addr_why(why, "domain is too long (more than %d octets)",
		    ADDR_DOMAIN_MAX);
		goto done;
	}
	if (*outlen > 0)
		out[(*outlen)++] = '.';
	memcpy(out + *outlen, alabel, n);
	*outlen += n;
	out[*outlen] = '\0';
	rc = 0;
done:
	idn2_free(idn);
	return rc;
}

/*
 * The final check on a whole normalised domain: what the per-label
 * work cannot see, because UTS#46 mapping may turn other characters
 * into dots, spaces or nothing.
 */
static int
addr_check_alabel_domain(const char *domain, char *why)
{
	const char *label = domain, *dot;
	char q[TEXT_QUOTE_SIZE];
	size_t len = strlen(domain), n, labels = 0;
	bool numeric = true;

	if (len > ADDR_DOMAIN_MAX)
		return addr_why(why, "domain is too long (%zu octets, at most "
		    "%d)", len, ADDR_DOMAIN_MAX);
	if (len > 0 && domain[len - 1] == '.')
		return addr_why(why, "domain ends with a dot (a trailing dot "
		    "is not accepted)");
	for (;;) {
		dot = strchr(label, '.');
		n = dot == NULL ? strlen(label) : (size_t)(dot - label);
		if (addr_check_ldh_label(label, n, why) == -1)
			return -1;
		labels++;
		if (dot == NULL)
			break;
		label = dot + 1;
	}
	if (labels < 2)
		return addr_why(why, "domain has a single label (a domain such "
		    "as \"example.org\" is needed)");
	for (n = 0; label[n] != '\0'; n++)
		if (label[n] < '0' || label[n] > '9')
			numeric = false;
	if (numeric)
		return addr_why(why, "top-level domain \"%s\" is all digits "
		    "(IP addresses are not accepted)",
		    text_quote(label, n, q, sizeof(q)));
	return 0;
}

/* Normalise the domain (NUL-terminated, at most ADDR_INPUT_MAX bytes)
 * into out (ADDR_DOMAIN_MAX + 1 bytes). */
static int
addr_normalise_domain(const char *domain, char *out, char *why)
{
	const char *label, *dot;
	size_t len = strlen(domain), outlen = 0;

	out[0] = '\0';
	if (len == 0)
		return addr_why(why, "empty domain");
	if (domain[0] == '[')
		return addr_why(why, "domain literals such as [192.0.2.1] are "
		    "not accepted");
	if (!text_is_utf8(domain, len))
		return addr_why(why, "domain is not valid UTF-8");
	if (domain[0] == '.')
		return addr_why(why, "domain starts with a dot");
	if (domain[len - 1] == '.')
		return addr_why(why, "domain ends with a dot (a trailing dot "
		    "is not accepted)");
	if (strstr(domain, "..") != NULL)
		return addr_why(why, "two dots in a row in the domain");
	for (label = domain;; label = dot + 1) {
		dot = strchr(label, '.');
		if (addr_append_label(label, dot == NULL ? strlen(label) :
		    (size_t)(dot - label), out, &outlen, why) == -1)
			return -1;
		if (dot == NULL)
			break;
	}
	return addr_check_alabel_domain(out, why);
}

static int
addr_refuse(struct assent_err *err, const char *what, const char *input,
    const char *why)
{
	char q[TEXT_QUOTE_SIZE];

	text_quote(input, strlen(input), q, sizeof(q));
	return err_set(err, EX_DATAERR, "invalid %s \"%s\": %s", what, q, why);
}

/* Everything addr_parse() checks, with the reason in why. */
static int
addr_parse_why(const char *input, struct addr *addr_r, char *why)
{
	char domain[ADDR_DOMAIN_MAX + 1];
	const char *at;
	size_t len = strlen(input), local_len, total;

	if (len == 0)
		return addr_why(why, "empty address");
	if (len > ADDR_INPUT_MAX)
		return addr_why(why, "address is too long (%zu octets, at most "
		    "%d)", len, ADDR_MAX);
	if (addr_check_controls(input, why) == -1)
		return -1;
	at = strchr(input, '@');
	if (input[0] == '"' || (at != NULL && memchr(input, '"',
	    (size_t)(at - input)) != NULL))
		return addr_why(why, "quoted local parts are not accepted");
	if (at == NULL)
		return addr_why(why, "missing '@'");
	if (strchr(at + 1, '@') != NULL)
		return addr_why(why, "more than one '@'");
	local_len = (size_t)(at - input);
	if (addr_check_local(input, local_len, why) == -1)
		return -1;
	if (addr_normalise_domain(at + 1, domain, why) == -1)
		return -1;
	total = local_len + 1 + strlen(domain);
	if (total > ADDR_MAX)
		return addr_why(why, "address is too long (%zu octets, at most "
		    "%d)", total, ADDR_MAX);
	memcpy(addr_r->address, input, local_len);
	addr_r->address[local_len] = '@';
	memcpy(addr_r->address + local_len + 1, domain, total - local_len);
	memcpy(addr_r->key, addr_r->address, total + 1);
	for (len = 0; len < local_len; len++)
		addr_r->key[len] = addr_lower(addr_r->key[len]);
	addr_r->local_len = local_len;
	addr_r->domain = addr_r->address + local_len + 1;
	return 0;
}

int
addr_parse(const char *input, struct addr *addr_r, struct assent_err *err)
{
	char why[ADDR_WHY_SIZE];

	memset(addr_r, 0, sizeof(*addr_r));
	addr_r->domain = addr_r->address;
	if (addr_parse_why(input, addr_r, why) == -1) {
		memset(addr_r, 0, sizeof(*addr_r));
		addr_r->domain = addr_r->address;
		return addr_refuse(err, "address", input, why);
	}
	return 0;
}

int
addr_parse_domain(const char *input, char *out, struct assent_err *err)
{
	char why[ADDR_WHY_SIZE];
	size_t len = strlen(input);

	out[0] = '\0';
	if (len > ADDR_INPUT_MAX)
		addr_why(why, "domain is too long (%zu octets, at most %d)",
		    len, ADDR_DOMAIN_MAX);
	else if (addr_check_controls(input, why) == 0 &&
	    addr_normalise_domain(input, out, why) == 0)
		return 0;
	out[0] = '\0';
	return addr_refuse(err, "domain", input, why);
}

/* Matched against the local part, case-insensitively, before any +tag. */
static const char *const addr_roles[] = {
	"abuse", "postmaster", "hostmaster", "webmaster", "mailer-daemon",
	"noc", "security", "root", "nobody", "noreply", "no-reply",
	"donotreply", "do-not-reply", "devnull", "listserv", "majordomo",
	"list-request", "unsubscribe", NULL,
};

const char *
addr_role(const struct addr *a)
{
	size_t len = a->local_len;
	const char *plus = memchr(a->key, '+', a->local_len);

	if (plus != NULL)
		len = (size_t)(plus - a->key);
	for (size_t i = 0; addr_roles[i] != NULL; i++)
		if (strlen(addr_roles[i]) == len &&
		    strncmp(a->key, addr_roles[i], len) == 0)
			return addr_roles[i];
	return NULL;
}

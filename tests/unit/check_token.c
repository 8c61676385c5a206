/* check_token: signed tokens (src/lib/token.c): round trips, the
 * documented layout against an independent HMAC, and refusal of every
 * tampered, truncated, padded, cross-purpose, expired or future token. */
#include <ctype.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <check.h>
#include "testhelp.h"
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "assent/err.h"
#include "assent/keys.h"
#include "assent/token.h"

#define NOW      1795000000LL           /* 2026-11-18 */
#define TTL      (7 * 24 * 3600LL)
#define YEAR     (365 * 24 * 3600LL)

static const char b64url[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

/* ---- fixtures: key sets built in memory ------------------------------ */

static void
make_key(struct keys_key *k, uint8_t id, unsigned char fill)
{
	memset(k, 0, sizeof(*k));
	k->id = id;
	k->secret_len = KEYS_SECRET_MIN;
	for (size_t i = 0; i < k->secret_len; i++)
		k->secret[i] = (unsigned char)(fill + i);
}

/* A signer over keys with the given ids (secret bytes fill, fill+1, ...
 * with fill = id + salt), the last one current. */
static struct token_signer *
signer_salted(const uint8_t *ids, size_t n, unsigned char salt)
{
	struct keys_key keys[8];
	unsigned char pepper[KEYS_SECRET_MIN];
	struct token_signer *s;
	struct assent_err err;
	struct keys *k;

	ck_assert_uint_le(n, 8);
	for (size_t i = 0; i < n; i++)
		make_key(&keys[i], ids[i], (unsigned char)(ids[i] + salt));
	memset(pepper, 0x5a, sizeof(pepper));
	ck_assert_msg(keys_from_memory(keys, n, ids[n - 1], pepper,
	    sizeof(pepper), &k, &err) == 0, "%s", err.msg);
	ck_assert_msg(token_signer_new(k, &s, &err) == 0, "%s", err.msg);
	keys_free(k);
	return s;
}

static struct token_signer *
signer_with(const uint8_t *ids, size_t n)
{
	return signer_salted(ids, n, 0);
}

static struct token_signer *signer;     /* keys 1 and 7, 7 current */

static void
setup(void)
{
	static const uint8_t ids[] = { 1, 7 };

	signer = signer_with(ids, 2);
}

static void
teardown(void)
{
	token_signer_free(signer);
	signer = NULL;
}

/* A token valid for purpose p, issued at NOW. */
static struct token
sample(enum token_purpose p)
{
	struct token t;

	memset(&t, 0, sizeof(t));
	t.purpose = p;
	t.subscriber_id = 123456789;
	t.list_id = p == TOKEN_BOUNCE ? 0 : 42;
	t.campaign_id = p == TOKEN_BOUNCE || p == TOKEN_UNSUBSCRIBE ? 987 : 0;
	t.issued_at = NOW;
	return t;
}

static void
make_ok(const struct token *t, char *text)
{
	struct assent_err err;

	ck_assert_msg(token_make(signer, t, text, TOKEN_TEXT_SIZE, &err) == 0,
	    "token_make: %s", err.msg);
	ck_assert_uint_eq(strlen(text), TOKEN_TEXT_LEN);
}

/* text is refused, with the one generic message. */
static void
refused(const char *text, enum token_purpose p, int64_t now, const char *what)
{
	struct assent_err err;
	struct token out;

	memset(&out, 0xff, sizeof(out));
	err_clear(&err);
	ck_assert_msg(token_verify(signer, text, p, now, TTL, &out, &err) == -1,
	    "accepted %s: \"%s\"", what, text);
	ck_assert_int_eq(err.code, EX_DATAERR);
	ck_assert_str_eq(err.msg, "invalid token");
	ck_assert_uint_eq(out.subscriber_id, 0);
	ck_assert_uint_eq(out.key_id, 0);
}

static void
accepted(const char *text, enum token_purpose p, int64_t now, struct token *out)
{
	struct assent_err err;

	err_clear(&err);
	ck_assert_msg(token_verify(signer, text, p, now, TTL, out, &err) == 0,
	    "refused \"%s\" as %s", text, token_purpose_name(p));
}

/* ---- round trips ----------------------------------------------------- */

static const struct token round_cases[] = {
	{ TOKEN_UNSUBSCRIBE, 1, 1, 0, false, 0, 0 },
	{ TOKEN_UNSUBSCRIBE, 5, 0, 77, true, NOW, 0 },
	{ TOKEN_UNSUBSCRIBE, UINT64_MAX, UINT64_MAX, UINT64_MAX, false, NOW, 0 },
	{ TOKEN_CONFIRM, 9, 3, 0, false, NOW, 0 },
	{ TOKEN_CONFIRM, 0x0102030405060708ULL, 0x1112131415161718ULL,
	  0x2122232425262728ULL, false, NOW - TTL, 0 },
	{ TOKEN_MANAGE, 12, 0, 0, false, NOW, 0 },
	{ TOKEN_MANAGE, 12, 0, 0, true, NOW, 0 },
	{ TOKEN_MANAGE, 12, 8, 0, false, NOW, 0 },
	{ TOKEN_BOUNCE, 3, 0, 0, false, NOW, 0 },
	{ TOKEN_BOUNCE, 3, 4, 99, false, NOW + TOKEN_CLOCK_SKEW, 0 },
	{ TOKEN_BOUNCE, 3, 0, 99, true, 1, 0 },
};

START_TEST(test_round_trip)
{
	const struct token *t = &round_cases[_i];
	char text[TOKEN_TEXT_SIZE];
	struct token out;

	make_ok(t, text);
	ck_assert_uint_eq(strspn(text, b64url), TOKEN_TEXT_LEN);
	accepted(text, t->purpose, NOW, &out);
	ck_assert_int_eq(out.purpose, t->purpose);
	ck_assert_uint_eq(out.subscriber_id, t->subscriber_id);
	ck_assert_uint_eq(out.list_id, t->list_id);
	ck_assert_uint_eq(out.campaign_id, t->campaign_id);
	ck_assert_int_eq(out.all_lists, t->all_lists);
	ck_assert_int_eq(out.issued_at, t->issued_at);
	ck_assert_uint_eq(out.key_id, 7);
}
END_TEST

/* ---- the layout of token.h, against OpenSSL's one-shot HMAC() --------- */

static void
put64(unsigned char *p, uint64_t v)
{
	for (int i = 0; i < 8; i++)
		p[i] = (unsigned char)(v >> (56 - 8 * i));
}

/* Sign 32 body bytes with key (id, fill) and encode: an independent
 * implementation of the documented format. */
static void
forge(const unsigned char *body, uint8_t fill, char *text)
{
	unsigned char raw[TOKEN_RAW_LEN], mac[32], secret[KEYS_SECRET_MIN];
	unsigned int maclen = sizeof(mac);
	size_t o = 0;

	for (size_t i = 0; i < sizeof(secret); i++)
		secret[i] = (unsigned char)(fill + i);
	memcpy(raw, body, TOKEN_BODY_LEN);
	ck_assert_ptr_nonnull(HMAC(EVP_sha256(), secret, sizeof(secret), body,
	    TOKEN_BODY_LEN, mac, &maclen));
	memcpy(raw + TOKEN_BODY_LEN, mac, TOKEN_MAC_LEN);
	for (size_t i = 0; i < TOKEN_RAW_LEN; i += 3) {
		uint32_t v = (uint32_t)raw[i] << 16 | raw[i + 1] << 8 | raw[i + 2];

		text[o++] = b64url[v >> 18];
		text[o++] = b64url[(v >> 12) & 63];
		text[o++] = b64url[(v >> 6) & 63];
		text[o++] = b64url[v & 63];
	}
	text[o] = '\0';
}

static void
body_of(unsigned char *b, uint8_t version, uint8_t key, uint8_t purpose,
    uint8_t flags, uint64_t sub, uint64_t list, uint64_t camp, uint32_t at)
{
	b[0] = version;
	b[1] = key;
	b[2] = purpose;
	b[3] = flags;
	put64(b + 4, sub);
	put64(b + 12, list);
	put64(b + 20, camp);
	b[28] = at >> 24;
	b[29] = at >> 16;
	b[30] = at >> 8;
	b[31] = at;
}

START_TEST(test_layout)
{
	unsigned char body[TOKEN_BODY_LEN];
	char want[TOKEN_TEXT_SIZE], got[TOKEN_TEXT_SIZE];
	struct token t = sample(TOKEN_UNSUBSCRIBE);

	body_of(body, 1, 7, TOKEN_UNSUBSCRIBE, 0, t.subscriber_id, t.list_id,
	    t.campaign_id, (uint32_t)t.issued_at);
	forge(body, 7, want);
	make_ok(&t, got);
	ck_assert_str_eq(got, want);

	t.list_id = 0;
	t.all_lists = true;
	body_of(body, 1, 7, TOKEN_UNSUBSCRIBE, 1, t.subscriber_id, 0,
	    t.campaign_id, (uint32_t)t.issued_at);
	forge(body, 7, want);
	make_ok(&t, got);
	ck_assert_str_eq(got, want);
}
END_TEST

/* Correctly signed by a known key, but not what a token may say. */
static const struct {
	const char *what;
	uint8_t version, key, fill, purpose, flags;
	uint64_t sub, list;
	uint32_t at;
	bool ok;
} forged_cases[] = {
	{ "the reference", 1, 7, 7, 1, 0, 5, 6, NOW, true },
	{ "signed by key 1", 1, 1, 1, 1, 0, 5, 6, NOW, true },
	{ "version 0", 0, 7, 7, 1, 0, 5, 6, NOW, false },
	{ "version 2", 2, 7, 7, 1, 0, 5, 6, NOW, false },
	{ "key id 1, MAC of key 7", 1, 1, 7, 1, 0, 5, 6, NOW, false },
	{ "key id 7, another secret", 1, 7, 8, 1, 0, 5, 6, NOW, false },
	{ "purpose 0", 1, 7, 7, 0, 0, 5, 6, NOW, false },
	{ "purpose 5", 1, 7, 7, 5, 0, 5, 6, NOW, false },
	{ "unknown flag", 1, 7, 7, 1, 2, 5, 6, NOW, false },
	{ "high flag", 1, 7, 7, 1, 0x80, 5, 6, NOW, false },
	{ "no subscriber", 1, 7, 7, 1, 0, 0, 6, NOW, false },
	{ "unsubscribe without list", 1, 7, 7, 1, 0, 5, 0, NOW, false },
	{ "all lists and a list", 1, 7, 7, 1, 1, 5, 6, NOW, false },
	{ "confirm for all lists", 1, 7, 7, 2, 1, 5, 0, NOW, false },
	{ "from the future", 1, 7, 7, 3, 0, 5, 0, NOW + 3600, false },
};

START_TEST(test_forged)
{
	unsigned char body[TOKEN_BODY_LEN];
	char text[TOKEN_TEXT_SIZE];
	struct token out;

	body_of(body, forged_cases[_i].version, forged_cases[_i].key,
	    forged_cases[_i].purpose, forged_cases[_i].flags,
	    forged_cases[_i].sub, forged_cases[_i].list, 0, forged_cases[_i].at);
	forge(body, forged_cases[_i].fill, text);
	if (forged_cases[_i].ok) {
		accepted(text, forged_cases[_i].purpose, NOW, &out);
		ck_assert_uint_eq(out.key_id, forged_cases[_i].key);
	} else {
		for (int p = TOKEN_PURPOSE_MIN; p <= TOKEN_PURPOSE_MAX; p++)
			refused(text, (enum token_purpose)p, NOW,
			    forged_cases[_i].what);
	}
}
END_TEST

/* ---- tampering ------------------------------------------------------- */

static int
value_of(char c)
{
	const char *p = strchr(b64url, c);

	return p != NULL && c != '\0' ? (int)(p - b64url) : -1;
}

/* Every bit of the 48 bytes, flipped one at a time: each is one bit of
 * the 6-bit value of one character. */
START_TEST(test_bit_flip)
{
	struct token t = sample((enum token_purpose)(_i + 1));
	char text[TOKEN_TEXT_SIZE], bad[TOKEN_TEXT_SIZE];
	int n = 0;

	make_ok(&t, text);
	for (size_t i = 0; i < TOKEN_TEXT_LEN; i++)
		for (int b = 0; b < 6; b++) {
			memcpy(bad, text, sizeof(bad));
			bad[i] = b64url[value_of(text[i]) ^ (1 << b)];
			refused(bad, t.purpose, NOW, "a flipped bit");
			n++;
		}
	ck_assert_int_eq(n, TOKEN_RAW_LEN * 8);
}
END_TEST

/* Every bit of the text's characters flipped: another letter, a
 * character outside the alphabet, or a NUL that shortens it. */
START_TEST(test_char_bit_flip)
{
	struct token t = sample(TOKEN_UNSUBSCRIBE);
	char text[TOKEN_TEXT_SIZE], bad[TOKEN_TEXT_SIZE];

	make_ok(&t, text);
	for (size_t i = 0; i < TOKEN_TEXT_LEN; i++)
		for (int b = 0; b < 8; b++) {
			memcpy(bad, text, sizeof(bad));
			bad[i] = (char)(bad[i] ^ (1 << b));
			refused(bad, t.purpose, NOW, "a flipped character bit");
		}
}
END_TEST

START_TEST(test_truncated)
{
	struct token t = sample(TOKEN_UNSUBSCRIBE);
	char text[TOKEN_TEXT_SIZE], bad[TOKEN_TEXT_SIZE];

	make_ok(&t, text);
	for (size_t len = 0; len < TOKEN_TEXT_LEN; len++) {
		memcpy(bad, text, len);
		bad[len] = '\0';
		refused(bad, t.purpose, NOW, "a prefix");
		/* and the suffix of the same length */
		refused(text + TOKEN_TEXT_LEN - len, t.purpose, NOW, "a suffix");
	}
	/* one character dropped anywhere */
	for (size_t i = 0; i < TOKEN_TEXT_LEN; i++) {
		memcpy(bad, text, i);
		memcpy(bad + i, text + i + 1, TOKEN_TEXT_LEN - i);
		refused(bad, t.purpose, NOW, "a dropped character");
	}
}
END_TEST

static const char *const extras[] = {
	"A", "-", "_", "=", "==", "AA", "AAAA", " ", "\n", "\r\n", "\t", ".",
	"%3D", "&x=1", "\xc3\xa9",
};

START_TEST(test_extra)
{
	struct token t = sample(TOKEN_UNSUBSCRIBE);
	char text[TOKEN_TEXT_SIZE], bad[TOKEN_TEXT_SIZE + 16];

	make_ok(&t, text);
	snprintf(bad, sizeof(bad), "%s%s", text, extras[_i]);
	refused(bad, t.purpose, NOW, "a token with a suffix");
	snprintf(bad, sizeof(bad), "%s%s", extras[_i], text);
	refused(bad, t.purpose, NOW, "a token with a prefix");
	/* in place of the last characters (same length) */
	snprintf(bad, sizeof(bad), "%.*s%s", (int)(TOKEN_TEXT_LEN -
	    strlen(extras[_i])), text, extras[_i]);
	if (strcmp(bad, text) != 0)
		refused(bad, t.purpose, NOW, "a token with its end replaced");
}
END_TEST

/* Characters of standard base64, padding, and bytes that are not base64
 * at all, in each position. */
static const char bad_chars[] = "+/=.~ \t\n!\"#$%&'()*,:;<>?@[\\]^`{|}\x7f\x80\xff";

START_TEST(test_bad_char)
{
	struct token t = sample(TOKEN_CONFIRM);
	char text[TOKEN_TEXT_SIZE], bad[TOKEN_TEXT_SIZE];

	make_ok(&t, text);
	for (size_t i = 0; i < TOKEN_TEXT_LEN; i++) {
		memcpy(bad, text, sizeof(bad));
		bad[i] = bad_chars[_i];
		refused(bad, t.purpose, NOW, "a character outside base64url");
	}
}
END_TEST

START_TEST(test_standard_base64)
{
	/* The same bytes in standard base64 (+ and / for - and _). */
	struct token t = sample(TOKEN_UNSUBSCRIBE);
	char text[TOKEN_TEXT_SIZE];
	bool changed = false;

	for (t.subscriber_id = 1; !changed && t.subscriber_id < 5000;
	    t.subscriber_id++) {
		make_ok(&t, text);
		for (char *p = text; *p != '\0'; p++) {
			if (*p == '-' || *p == '_') {
				*p = *p == '-' ? '+' : '/';
				changed = true;
			}
		}
	}
	ck_assert(changed);
	refused(text, t.purpose, NOW, "standard base64");
}
END_TEST

START_TEST(test_empty_and_junk)
{
	char big[4096];

	refused("", TOKEN_UNSUBSCRIBE, NOW, "an empty token");
	memset(big, 'A', sizeof(big) - 1);
	big[sizeof(big) - 1] = '\0';
	refused(big, TOKEN_UNSUBSCRIBE, NOW, "a long token");
	big[TOKEN_TEXT_LEN] = '\0';
	refused(big, TOKEN_UNSUBSCRIBE, NOW, "64 As");
	refused("0000000000000000000000000000000000000000000000000000000000000000",
	    TOKEN_UNSUBSCRIBE, NOW, "64 zeros");
}
END_TEST

/* ---- keys ------------------------------------------------------------ */

START_TEST(test_unknown_key)
{
	static const uint8_t other_ids[] = { 9 };
	static const uint8_t same_ids[] = { 1, 7 };
	struct token_signer *other = signer_with(other_ids, 1);
	struct token t = sample(TOKEN_UNSUBSCRIBE);
	char text[TOKEN_TEXT_SIZE];
	struct assent_err err;

	ck_assert_int_eq(token_make(other, &t, text, sizeof(text), &err), 0);
	refused(text, t.purpose, NOW, "a token of an unknown key");
	token_signer_free(other);

	/* The key ids we know, with other secrets. */
	other = signer_salted(same_ids, 2, 100);
	ck_assert_int_eq(token_make(other, &t, text, sizeof(text), &err), 0);
	refused(text, t.purpose, NOW, "a token of another secret");
	token_signer_free(other);

	ck_assert_int_eq(token_make_with_key(signer, 3, &t, text, sizeof(text),
	    &err), -1);
	ck_assert_int_eq(err.code, EX_DATAERR);
}
END_TEST

START_TEST(test_retired_key)
{
	static const uint8_t before_ids[] = { 1 };
	static const uint8_t after_ids[] = { 1, 2 };
	struct token_signer *before = signer_with(before_ids, 1);
	struct token_signer *after = signer_with(after_ids, 2);
	struct token t = sample(TOKEN_UNSUBSCRIBE), out;
	char old[TOKEN_TEXT_SIZE], new[TOKEN_TEXT_SIZE];
	struct assent_err err;

	ck_assert_int_eq(token_make(before, &t, old, sizeof(old), &err), 0);
	ck_assert_int_eq(token_make(after, &t, new, sizeof(new), &err), 0);
	ck_assert_str_ne(old, new);
	ck_assert_int_eq(token_verify(after, old, t.purpose, NOW, TTL, &out,
	    &err), 0);
	ck_assert_uint_eq(out.key_id, 1);
	ck_assert_int_eq(token_verify(after, new, t.purpose, NOW, TTL, &out,
	    &err), 0);
	ck_assert_uint_eq(out.key_id, 2);
	ck_assert_int_eq(token_verify(before, new, t.purpose, NOW, TTL, &out,
	    &err), -1);
	/* with_key: key 1 of "after" makes what "before" made */
	ck_assert_int_eq(token_make_with_key(after, 1, &t, new, sizeof(new),
	    &err), 0);
	ck_assert_str_eq(new, old);
	token_signer_free(before);
	token_signer_free(after);
}
END_TEST

/* ---- purposes --------------------------------------------------------- */

/* Made for purpose 1 + _i / 4, checked as 1 + _i % 4. */
START_TEST(test_cross_purpose)
{
	enum token_purpose made = (enum token_purpose)(1 + _i / 4);
	enum token_purpose as = (enum token_purpose)(1 + _i % 4);
	struct token t = sample(made), out;
	char text[TOKEN_TEXT_SIZE];

	/* fields that every purpose would accept */
	t.list_id = 42;
	make_ok(&t, text);
	if (made == as) {
		accepted(text, as, NOW, &out);
		ck_assert_int_eq(out.purpose, made);
	} else {
		refused(text, as, NOW, "a token of another purpose");
	}
}
END_TEST

START_TEST(test_purpose_names)
{
	enum token_purpose p;

	for (int i = TOKEN_PURPOSE_MIN; i <= TOKEN_PURPOSE_MAX; i++) {
		ck_assert_int_eq(token_purpose_parse(token_purpose_name(
		    (enum token_purpose)i), &p), 0);
		ck_assert_int_eq(p, i);
	}
	ck_assert_str_eq(token_purpose_name(TOKEN_UNSUBSCRIBE), "unsubscribe");
	ck_assert_str_eq(token_purpose_name(TOKEN_CONFIRM), "confirm");
	ck_assert_str_eq(token_purpose_name(TOKEN_MANAGE), "manage");
	ck_assert_str_eq(token_purpose_name(TOKEN_BOUNCE), "bounce");
	ck_assert_str_eq(token_purpose_name((enum token_purpose)0), "?");
	ck_assert_str_eq(token_purpose_name(TOKEN_NOTICE), "notice");
	ck_assert_str_eq(token_purpose_name((enum token_purpose)6), "?");
	ck_assert_int_eq(token_purpose_parse("Unsubscribe", &p), -1);
	ck_assert_int_eq(token_purpose_parse("", &p), -1);
}
END_TEST

/* ---- time -------------------------------------------------------------- */

static const struct {
	enum token_purpose purpose;
	int64_t age;                    /* now - issued_at */
	bool ok;
} time_cases[] = {
	{ TOKEN_CONFIRM, 0, true },
	{ TOKEN_CONFIRM, TTL, true },
	{ TOKEN_CONFIRM, TTL + 1, false },
	{ TOKEN_CONFIRM, 30 * 24 * 3600, false },
	{ TOKEN_CONFIRM, -TOKEN_CLOCK_SKEW, true },
	{ TOKEN_CONFIRM, -TOKEN_CLOCK_SKEW - 1, false },
	{ TOKEN_UNSUBSCRIBE, 10 * YEAR, true },
	{ TOKEN_UNSUBSCRIBE, 61 * 24 * 3600, true },
	{ TOKEN_UNSUBSCRIBE, -TOKEN_CLOCK_SKEW, true },
	{ TOKEN_UNSUBSCRIBE, -TOKEN_CLOCK_SKEW - 1, false },
	{ TOKEN_UNSUBSCRIBE, -YEAR, false },
	{ TOKEN_MANAGE, 10 * YEAR, true },
	{ TOKEN_MANAGE, -TOKEN_CLOCK_SKEW - 1, false },
	{ TOKEN_BOUNCE, 10 * YEAR, true },
	{ TOKEN_BOUNCE, -3600, false },
};

START_TEST(test_time)
{
	struct token t = sample(time_cases[_i].purpose), out;
	char text[TOKEN_TEXT_SIZE];

	t.issued_at = NOW - time_cases[_i].age;
	make_ok(&t, text);
	if (time_cases[_i].ok)
		accepted(text, t.purpose, NOW, &out);
	else
		refused(text, t.purpose, NOW, "a token outside its time");
}
END_TEST

START_TEST(test_ttl_configurable)
{
	struct token t = sample(TOKEN_CONFIRM), out;
	char text[TOKEN_TEXT_SIZE];
	struct assent_err err;

	t.issued_at = NOW - 3600;
	make_ok(&t, text);
	ck_assert_int_eq(token_verify(signer, text, TOKEN_CONFIRM, NOW, 3600,
	    &out, &err), 0);
	ck_assert_int_eq(token_verify(signer, text, TOKEN_CONFIRM, NOW, 3599,
	    &out, &err), -1);
}
END_TEST

/* token_verify_confirm(): expiry told apart, and only for a genuine
 * confirm token. */
START_TEST(test_verify_confirm_expired)
{
	struct token t = sample(TOKEN_CONFIRM), out;
	char text[TOKEN_TEXT_SIZE], bad[TOKEN_TEXT_SIZE];
	struct assent_err err;

	t.issued_at = NOW - 3600;
	make_ok(&t, text);
	ck_assert_int_eq(token_verify_confirm(signer, text, NOW, 3600, &out,
	    &err), 0);
	ck_assert_uint_eq(out.subscriber_id, t.subscriber_id);
	memset(&out, 0, sizeof(out));
	ck_assert_int_eq(token_verify_confirm(signer, text, NOW, 3599, &out,
	    &err), 1);
	ck_assert_uint_eq(out.subscriber_id, t.subscriber_id);
	ck_assert_uint_eq(out.list_id, t.list_id);
	/* a forged expired one is just invalid */
	memcpy(bad, text, sizeof(bad));
	bad[TOKEN_TEXT_LEN - 3] = bad[TOKEN_TEXT_LEN - 3] == 'A' ? 'B' : 'A';
	ck_assert_int_eq(token_verify_confirm(signer, bad, NOW, 3599, &out,
	    &err), -1);
	ck_assert_str_eq(err.msg, "invalid token");
	ck_assert_uint_eq(out.subscriber_id, 0);
	/* so is an expired-looking token of another purpose */
	t = sample(TOKEN_UNSUBSCRIBE);
	t.issued_at = NOW - 3600;
	make_ok(&t, text);
	ck_assert_int_eq(token_verify_confirm(signer, text, NOW, 3599, &out,
	    &err), -1);
}
END_TEST

/* ---- what token_make refuses ----------------------------------------- */

static const struct {
	struct token t;
	const char *msg;
} make_bad_cases[] = {
	{ { TOKEN_UNSUBSCRIBE, 0, 1, 0, false, NOW, 0 },
	  "a token needs a subscriber" },
	{ { TOKEN_UNSUBSCRIBE, 1, 0, 0, false, NOW, 0 },
	  "an unsubscribe token needs a list or all lists" },
	{ { TOKEN_MANAGE, 1, 2, 0, true, NOW, 0 },
	  "a token is for one list or for all lists, not both" },
	{ { TOKEN_CONFIRM, 1, 0, 0, true, NOW, 0 },
	  "a confirm token needs one list" },
	{ { TOKEN_CONFIRM, 1, 0, 0, false, NOW, 0 },
	  "a confirm token needs one list" },
	{ { (enum token_purpose)0, 1, 1, 0, false, NOW, 0 }, "unknown purpose" },
	{ { (enum token_purpose)6, 1, 1, 0, false, NOW, 0 }, "unknown purpose" },
	{ { TOKEN_NOTICE, 1, 1, 0, false, NOW, 0 }, "a notice token is compact only" },
	{ { TOKEN_BOUNCE, 1, 0, 0, false, -1, 0 },
	  "issue time out of range (1970 to 2106)" },
	{ { TOKEN_BOUNCE, 1, 0, 0, false, 4294967296LL, 0 },
	  "issue time out of range (1970 to 2106)" },
};

START_TEST(test_make_refuses)
{
	char text[TOKEN_TEXT_SIZE];
	struct assent_err err;

	memset(text, 'x', sizeof(text));
	ck_assert_int_eq(token_make(signer, &make_bad_cases[_i].t, text,
	    sizeof(text), &err), -1);
	ck_assert_int_eq(err.code, EX_DATAERR);
	ck_assert_str_eq(err.msg, make_bad_cases[_i].msg);
	ck_assert_str_eq(text, "");
}
END_TEST

START_TEST(test_make_small_buffer)
{
	struct token t = sample(TOKEN_MANAGE);
	char text[TOKEN_TEXT_SIZE];
	struct assent_err err;

	ck_assert_int_eq(token_make(signer, &t, text, TOKEN_TEXT_LEN, &err), -1);
	ck_assert_int_eq(err.code, EX_SOFTWARE);
	/* 2106-02-07T06:28:15Z, the last second, still fits */
	t.issued_at = 4294967295LL;
	ck_assert_int_eq(token_make(signer, &t, text, sizeof(text), &err), 0);
}
END_TEST

START_TEST(test_err_null)
{
	struct token t = sample(TOKEN_MANAGE), out;
	char text[TOKEN_TEXT_SIZE];

	ck_assert_int_eq(token_make(signer, &t, text, sizeof(text), NULL), 0);
	ck_assert_int_eq(token_verify(signer, text, TOKEN_MANAGE, NOW, TTL, &out,
	    NULL), 0);
	text[5] ^= 1;
	ck_assert_int_eq(token_verify(signer, text, TOKEN_MANAGE, NOW, TTL, &out,
	    NULL), -1);
}
END_TEST

/* ---- compact tokens (bounce addresses) -------------------------------- */

static const char b32[] = "abcdefghijklmnopqrstuvwxyz234567";

/* An independent base32 of TOKEN_COMPACT_RAW_LEN bytes, bit by bit. */
static void
b32_encode(const unsigned char *raw, char *text)
{
	size_t nbits = TOKEN_COMPACT_RAW_LEN * 8, o = 0;

	for (size_t bit = 0; bit < nbits; bit += 5) {
		int v = 0;

		for (size_t k = 0; k < 5; k++)
			v = v << 1 | ((raw[(bit + k) / 8] >> (7 - (bit + k) % 8)) & 1);
		text[o++] = b32[v];
	}
	text[o] = '\0';
}

static void
b32_decode(const char *text, unsigned char *raw)
{
	memset(raw, 0, TOKEN_COMPACT_RAW_LEN);
	for (size_t i = 0; i < TOKEN_COMPACT_TEXT_LEN; i++) {
		const char *p = strchr(b32, text[i]);
		int v;

		ck_assert_ptr_nonnull(p);
		v = (int)(p - b32);
		for (size_t k = 0; k < 5; k++)
			if (v & (1 << (4 - k)))
				raw[(i * 5 + k) / 8] |= (unsigned char)
				    (1 << (7 - (i * 5 + k) % 8));
	}
}

/* Sign 14 body bytes with the key whose secret starts at fill. */
static void
forge_compact(const unsigned char *body, uint8_t fill, char *text)
{
	unsigned char raw[TOKEN_COMPACT_RAW_LEN], mac[32],
	    secret[KEYS_SECRET_MIN];
	unsigned int maclen = sizeof(mac);

	for (size_t i = 0; i < sizeof(secret); i++)
		secret[i] = (unsigned char)(fill + i);
	memcpy(raw, body, TOKEN_COMPACT_BODY_LEN);
	ck_assert_ptr_nonnull(HMAC(EVP_sha256(), secret, sizeof(secret), body,
	    TOKEN_COMPACT_BODY_LEN, mac, &maclen));
	memcpy(raw + TOKEN_COMPACT_BODY_LEN, mac, TOKEN_MAC_LEN);
	b32_encode(raw, text);
}

static void
compact_body(unsigned char *body, uint8_t version, uint8_t key,
    uint8_t purpose, uint64_t id, uint32_t at)
{
	body[0] = version;
	body[1] = key;
	body[2] = purpose;
	for (int i = 0; i < 7; i++)
		body[3 + i] = (unsigned char)(id >> (48 - 8 * i));
	for (int i = 0; i < 4; i++)
		body[10 + i] = (unsigned char)(at >> (24 - 8 * i));
}

static void
compact_make_ok(const struct token_compact *t, char *text)
{
	struct assent_err err;

	ck_assert_msg(token_compact_make(signer, t, text,
	    TOKEN_COMPACT_TEXT_SIZE, &err) == 0, "%s", err.msg);
	ck_assert_uint_eq(strlen(text), TOKEN_COMPACT_TEXT_LEN);
	ck_assert_uint_eq(strspn(text, b32), TOKEN_COMPACT_TEXT_LEN);
}

static void
compact_refused(const char *text, enum token_purpose p, const char *what)
{
	struct token_compact out;
	struct assent_err err;

	memset(&out, 0xff, sizeof(out));
	err_clear(&err);
	ck_assert_msg(token_compact_verify(signer, text, p, NOW, &out, &err) ==
	    -1, "accepted %s: \"%s\"", what, text);
	ck_assert_int_eq(err.code, EX_DATAERR);
	ck_assert_str_eq(err.msg, "invalid token");
	ck_assert_uint_eq(out.delivery_id, 0);
	ck_assert_uint_eq(out.key_id, 0);
}

static void
compact_accepted(const char *text, enum token_purpose p,
    struct token_compact *out)
{
	struct assent_err err;

	ck_assert_msg(token_compact_verify(signer, text, p, NOW, out, &err) == 0,
	    "refused \"%s\"", text);
}

static const struct token_compact compact_cases[] = {
	{ TOKEN_BOUNCE, 1, NOW, 0 },
	{ TOKEN_BOUNCE, TOKEN_COMPACT_ID_MAX, NOW, 0 },
	{ TOKEN_BOUNCE, 0x01020304050607ULL, 0, 0 },
	{ TOKEN_BOUNCE, 987654321, NOW + TOKEN_CLOCK_SKEW, 0 },
	{ TOKEN_BOUNCE, 5, 1, 0 },
	{ TOKEN_UNSUBSCRIBE, 77, NOW, 0 },
	{ TOKEN_MANAGE, 78, NOW - 10 * YEAR, 0 },
};

START_TEST(test_compact_round_trip)
{
	const struct token_compact *t = &compact_cases[_i];
	char text[TOKEN_COMPACT_TEXT_SIZE], upper[TOKEN_COMPACT_TEXT_SIZE];
	struct token_compact out;

	compact_make_ok(t, text);
	/* "b-" + token fits a local part */
	ck_assert_uint_le(strlen("b-") + strlen(text), 64);
	compact_accepted(text, t->purpose, &out);
	ck_assert_int_eq(out.purpose, t->purpose);
	ck_assert_uint_eq(out.delivery_id, t->delivery_id);
	ck_assert_int_eq(out.issued_at, t->issued_at);
	ck_assert_uint_eq(out.key_id, 7);
	/* an MTA that folds the local part to upper case, or half of it */
	for (size_t i = 0; i < TOKEN_COMPACT_TEXT_LEN; i++)
		upper[i] = (char)toupper((unsigned char)text[i]);
	upper[TOKEN_COMPACT_TEXT_LEN] = '\0';
	compact_accepted(upper, t->purpose, &out);
	ck_assert_uint_eq(out.delivery_id, t->delivery_id);
	for (size_t i = 0; i < TOKEN_COMPACT_TEXT_LEN; i += 2)
		upper[i] = text[i];
	compact_accepted(upper, t->purpose, &out);
	ck_assert_uint_eq(out.delivery_id, t->delivery_id);
}
END_TEST

/* The layout in token.h, signed by an independent implementation. */
START_TEST(test_compact_layout)
{
	const struct token_compact *t = &compact_cases[_i];
	char text[TOKEN_COMPACT_TEXT_SIZE], forged[TOKEN_COMPACT_TEXT_SIZE];
	unsigned char body[TOKEN_COMPACT_BODY_LEN];

	compact_make_ok(t, text);
	compact_body(body, TOKEN_COMPACT_VERSION, 7, (uint8_t)t->purpose,
	    t->delivery_id, (uint32_t)t->issued_at);
	forge_compact(body, 7, forged);
	ck_assert_str_eq(text, forged);
}
END_TEST

/* Every bit of the 30 bytes flipped one at a time. */
START_TEST(test_compact_bit_flip)
{
	struct token_compact t = compact_cases[_i];
	unsigned char raw[TOKEN_COMPACT_RAW_LEN], bad[TOKEN_COMPACT_RAW_LEN];
	char text[TOKEN_COMPACT_TEXT_SIZE], badtext[TOKEN_COMPACT_TEXT_SIZE];

	compact_make_ok(&t, text);
	b32_decode(text, raw);
	b32_encode(raw, badtext);
	ck_assert_str_eq(badtext, text);
	for (size_t bit = 0; bit < TOKEN_COMPACT_RAW_LEN * 8; bit++) {
		memcpy(bad, raw, sizeof(bad));
		bad[bit / 8] ^= (unsigned char)(1 << (bit % 8));
		b32_encode(bad, badtext);
		compact_refused(badtext, t.purpose, "a flipped bit");
	}
}
END_TEST

/* Every bit of every character: only a change of case still passes. */
START_TEST(test_compact_char_flip)
{
	struct token_compact t = compact_cases[0], out;
	char text[TOKEN_COMPACT_TEXT_SIZE], bad[TOKEN_COMPACT_TEXT_SIZE];
	int passed = 0;

	compact_make_ok(&t, text);
	for (size_t i = 0; i < TOKEN_COMPACT_TEXT_LEN; i++)
		for (int b = 0; b < 8; b++) {
			memcpy(bad, text, sizeof(bad));
			bad[i] = (char)(bad[i] ^ (1 << b));
			if (tolower((unsigned char)bad[i]) == text[i]) {
				compact_accepted(bad, t.purpose, &out);
				passed++;
			} else
				compact_refused(bad, t.purpose, "a flipped "
				    "character bit");
		}
	ck_assert_int_gt(passed, 0);
}
END_TEST

/* Made for one purpose, checked as another. */
START_TEST(test_compact_wrong_purpose)
{
	static const enum token_purpose ps[] = {
		TOKEN_BOUNCE, TOKEN_UNSUBSCRIBE, TOKEN_MANAGE, TOKEN_NOTICE
	};
	struct token_compact t = compact_cases[0], out;
	char text[TOKEN_COMPACT_TEXT_SIZE];

	t.purpose = ps[_i];
	compact_make_ok(&t, text);
	for (int p = TOKEN_PURPOSE_MIN; p <= TOKEN_PURPOSE_MAX; p++)
		if ((enum token_purpose)p == t.purpose)
			compact_accepted(text, t.purpose, &out);
		else
			compact_refused(text, (enum token_purpose)p,
			    "another purpose");
}
END_TEST

/* Well signed but against the rules, malformed, or of the other form. */
START_TEST(test_compact_refused)
{
	struct token_compact t = compact_cases[0];
	unsigned char body[TOKEN_COMPACT_BODY_LEN];
	char text[TOKEN_COMPACT_TEXT_SIZE], bad[TOKEN_COMPACT_TEXT_SIZE + 8];
	char longtok[TOKEN_TEXT_SIZE];
	struct token lt = sample(TOKEN_BOUNCE), lout;
	struct assent_err err;

	compact_make_ok(&t, text);
	/* length */
	memcpy(bad, text, TOKEN_COMPACT_TEXT_LEN - 1);
	bad[TOKEN_COMPACT_TEXT_LEN - 1] = '\0';
	compact_refused(bad, TOKEN_BOUNCE, "a truncated token");
	snprintf(bad, sizeof(bad), "%sa", text);
	compact_refused(bad, TOKEN_BOUNCE, "a longer token");
	compact_refused("", TOKEN_BOUNCE, "nothing");
	snprintf(bad, sizeof(bad), "%s", text);
	bad[10] = '1';
	compact_refused(bad, TOKEN_BOUNCE, "a digit outside base32");
	bad[10] = '=';
	compact_refused(bad, TOKEN_BOUNCE, "padding");
	/* the two forms never pass as each other */
	make_ok(&lt, longtok);
	compact_refused(longtok, TOKEN_BOUNCE, "a long token");
	ck_assert_int_eq(token_verify(signer, text, TOKEN_BOUNCE, NOW, TTL,
	    &lout, &err), -1);
	/* issued in the future */
	t.issued_at = NOW + TOKEN_CLOCK_SKEW + 1;
	compact_make_ok(&t, text);
	compact_refused(text, TOKEN_BOUNCE, "a token from the future");
	/* properly signed, but a version, purpose or id not allowed */
	compact_body(body, 0x81, 7, TOKEN_BOUNCE, 5, NOW);
	forge_compact(body, 7, text);
	compact_refused(text, TOKEN_BOUNCE, "an unknown version");
	compact_body(body, TOKEN_COMPACT_VERSION, 7, TOKEN_CONFIRM, 5, NOW);
	forge_compact(body, 7, text);
	compact_refused(text, TOKEN_CONFIRM, "a confirm purpose");
	compact_body(body, TOKEN_COMPACT_VERSION, 7, 9, 5, NOW);
	forge_compact(body, 7, text);
	compact_refused(text, (enum token_purpose)9, "an unknown purpose");
	compact_body(body, TOKEN_COMPACT_VERSION, 7, TOKEN_BOUNCE, 0, NOW);
	forge_compact(body, 7, text);
	compact_refused(text, TOKEN_BOUNCE, "delivery id 0");
	/* a key we do not have, and the right key id with a wrong secret */
	compact_body(body, TOKEN_COMPACT_VERSION, 3, TOKEN_BOUNCE, 5, NOW);
	forge_compact(body, 3, text);
	compact_refused(text, TOKEN_BOUNCE, "an unknown key");
	compact_body(body, TOKEN_COMPACT_VERSION, 7, TOKEN_BOUNCE, 5, NOW);
	forge_compact(body, 8, text);
	compact_refused(text, TOKEN_BOUNCE, "a wrong secret");
	forge_compact(body, 7, text);
	compact_accepted(text, TOKEN_BOUNCE, &t);
	ck_assert_uint_eq(t.delivery_id, 5);
}
END_TEST

static const struct {
	struct token_compact t;
	int code;
} compact_make_bad[] = {
	{ { TOKEN_CONFIRM, 5, NOW, 0 }, EX_DATAERR },
	{ { (enum token_purpose)0, 5, NOW, 0 }, EX_DATAERR },
	{ { (enum token_purpose)6, 5, NOW, 0 }, EX_DATAERR },
	{ { TOKEN_BOUNCE, 0, NOW, 0 }, EX_DATAERR },
	{ { TOKEN_BOUNCE, TOKEN_COMPACT_ID_MAX + 1, NOW, 0 }, EX_DATAERR },
	{ { TOKEN_BOUNCE, UINT64_MAX, NOW, 0 }, EX_DATAERR },
	{ { TOKEN_BOUNCE, 5, -1, 0 }, EX_DATAERR },
	{ { TOKEN_BOUNCE, 5, (int64_t)UINT32_MAX + 1, 0 }, EX_DATAERR },
};

START_TEST(test_compact_make_refuses)
{
	char text[TOKEN_COMPACT_TEXT_SIZE];
	struct assent_err err;

	memset(text, 'x', sizeof(text));
	ck_assert_int_eq(token_compact_make(signer, &compact_make_bad[_i].t,
	    text, sizeof(text), &err), -1);
	ck_assert_int_eq(err.code, compact_make_bad[_i].code);
	ck_assert_str_eq(text, "");
	ck_assert_int_eq(token_compact_make_with_key(signer, 9,
	    &compact_cases[0], text, sizeof(text), &err), -1);
	ck_assert_int_eq(token_compact_make(signer, &compact_cases[0], text,
	    TOKEN_COMPACT_TEXT_LEN, &err), -1);
	ck_assert_int_eq(err.code, EX_SOFTWARE);
}
END_TEST

static Suite *
token_suite(void)
{
	Suite *s = suite_create("token");
	TCase *tc = tcase_create("token");

	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_loop_test(tc, test_round_trip, 0,
	    sizeof(round_cases) / sizeof(round_cases[0]));
	tcase_add_test(tc, test_layout);
	tcase_add_loop_test(tc, test_forged, 0,
	    sizeof(forged_cases) / sizeof(forged_cases[0]));
	tcase_add_loop_test(tc, test_bit_flip, 0, 4);
	tcase_add_test(tc, test_char_bit_flip);
	tcase_add_test(tc, test_truncated);
	tcase_add_loop_test(tc, test_extra, 0, sizeof(extras) / sizeof(extras[0]));
	tcase_add_loop_test(tc, test_bad_char, 0, sizeof(bad_chars) - 1);
	tcase_add_test(tc, test_standard_base64);
	tcase_add_test(tc, test_empty_and_junk);
	tcase_add_test(tc, test_unknown_key);
	tcase_add_test(tc, test_retired_key);
	tcase_add_loop_test(tc, test_cross_purpose, 0, 16);
	tcase_add_test(tc, test_purpose_names);
	tcase_add_loop_test(tc, test_time, 0,
	    sizeof(time_cases) / sizeof(time_cases[0]));
	tcase_add_test(tc, test_ttl_configurable);
	tcase_add_test(tc, test_verify_confirm_expired);
	tcase_add_loop_test(tc, test_make_refuses, 0,
	    sizeof(make_bad_cases) / sizeof(make_bad_cases[0]));
	tcase_add_test(tc, test_make_small_buffer);
	tcase_add_test(tc, test_err_null);
	tcase_add_loop_test(tc, test_compact_round_trip, 0,
	    sizeof(compact_cases) / sizeof(compact_cases[0]));
	tcase_add_loop_test(tc, test_compact_layout, 0,
	    sizeof(compact_cases) / sizeof(compact_cases[0]));
	tcase_add_loop_test(tc, test_compact_bit_flip, 0,
	    sizeof(compact_cases) / sizeof(compact_cases[0]));
	tcase_add_test(tc, test_compact_char_flip);
	tcase_add_loop_test(tc, test_compact_wrong_purpose, 0, 4);
	tcase_add_test(tc, test_compact_refused);
	tcase_add_loop_test(tc, test_compact_make_refuses, 0,
	    sizeof(compact_make_bad) / sizeof(compact_make_bad[0]));
	suite_add_tcase(s, tc);
	return s;
}

int
main(void)
{
	return testhelp_run_suite(token_suite());
}

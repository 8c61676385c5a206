/* token: signed, URL-safe tokens; the layout and the rules are in
 * include/assent/token.h */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/params.h>

#include "assent/token.h"
#include "assent/xmalloc.h"

#define TOKEN_FLAG_ALL_LISTS 0x01
#define TOKEN_FLAGS_KNOWN    TOKEN_FLAG_ALL_LISTS
#define TOKEN_INVALID        "invalid token"

_Static_assert(TOKEN_RAW_LEN % 3 == 0, "no base64 padding or spare bits");
_Static_assert(TOKEN_TEXT_LEN == TOKEN_RAW_LEN / 3 * 4, "text length");

struct token_signer {
	EVP_MAC *mac;
	/* One context per key id, keyed once: each MAC only re-initialises
	 * it (EVP_MAC_init with no key), which reuses the prepared inner
	 * and outer digests. bench/tokens compares this with the raw rate. */
	EVP_MAC_CTX *ctx[KEYS_ID_MAX + 1];
	uint8_t current_id;
};

static const char *const token_purpose_names[] = {
	[TOKEN_UNSUBSCRIBE] = "unsubscribe",
	[TOKEN_CONFIRM] = "confirm",
	[TOKEN_MANAGE] = "manage",
	[TOKEN_BOUNCE] = "bounce",
	[TOKEN_NOTICE] = "notice",
};

const char *
token_purpose_name(enum token_purpose purpose)
{
	if (purpose < TOKEN_PURPOSE_MIN || purpose > TOKEN_PURPOSE_MAX)
		return "?";
	return token_purpose_names[purpose];
}

int
token_purpose_parse(const char *name, enum token_purpose *purpose_r)
{
	for (int p = TOKEN_PURPOSE_MIN; p <= TOKEN_PURPOSE_MAX; p++)
		if (strcmp(name, token_purpose_names[p]) == 0) {
			*purpose_r = (enum token_purpose)p;
			return 0;
		}
	return -1;
}

/* --- the signer -------------------------------------------------------- */

void
token_signer_free(struct token_signer *signer)
{
	if (signer == NULL)
		return;
	for (size_t i = 0; i <= KEYS_ID_MAX; i++)
		EVP_MAC_CTX_free(signer->ctx[i]);
	EVP_MAC_free(signer->mac);
	free(signer);
}

int
token_signer_new(const struct keys *keys, struct token_signer **signer_r,
    struct assent_err *err)
{
	struct token_signer *s = xcalloc(1, sizeof(*s));
	OSSL_PARAM params[2];
	const struct keys_key *key;

	*signer_r = NULL;
	params[0] = OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST,
	    (char *)"SHA256", 0);
	params[1] = OSSL_PARAM_construct_end();
	if ((s->mac = EVP_MAC_fetch(NULL, "HMAC", NULL)) == NULL)
		goto fail;
	for (size_t i = 0; (key = keys_at(keys, i)) != NULL; i++) {
		if ((s->ctx[key->id] = EVP_MAC_CTX_new(s->mac)) == NULL ||
		    !EVP_MAC_init(s->ctx[key->id], key->secret, key->secret_len,
		    params))
			goto fail;
	}
	s->current_id = keys_current(keys)->id;
	*signer_r = s;
	return 0;
fail:
	token_signer_free(s);
	return err_set(err, EX_SOFTWARE, "cannot prepare HMAC-SHA256 "
	    "(OpenSSL)");
}

/* The truncated MAC of body with the key's context. */
static int
token_mac(EVP_MAC_CTX *ctx, const unsigned char *body, size_t body_len,
    unsigned char *mac)
{
	unsigned char full[EVP_MAX_MD_SIZE];
	size_t len;

	if (!EVP_MAC_init(ctx, NULL, 0, NULL) ||
	    !EVP_MAC_update(ctx, body, body_len) ||
	    !EVP_MAC_final(ctx, full, &len, sizeof(full)) ||
	    len < TOKEN_MAC_LEN)
		return -1;
	memcpy(mac, full, TOKEN_MAC_LEN);
	return 0;
}

/* --- the fields -------------------------------------------------------- */

static void
token_put64(unsigned char *p, uint64_t v)
{
	for (int i = 7; i >= 0; i--, v >>= 8)
		p[i] = (unsigned char)v;
}

static uint64_t
token_get64(const unsigned char *p)
{
	uint64_t v = 0;

	for (int i = 0; i < 8; i++)
		v = v << 8 | p[i];
	return v;
}

/* Why t does not fit its purpose, or NULL when it does. */
static const char *
token_fields_problem(const struct token *t)
{
	if (t->purpose < TOKEN_PURPOSE_MIN || t->purpose > TOKEN_PURPOSE_MAX)
		return "unknown purpose";
	if (t->purpose == TOKEN_NOTICE)
		return "a notice token is compact only";
	if (t->subscriber_id == 0)
		return "a token needs a subscriber";
	if (t->all_lists && t->list_id != 0)
		return "a token is for one list or for all lists, not both";
	if (t->purpose == TOKEN_UNSUBSCRIBE && t->list_id == 0 && !t->all_lists)
		return "an unsubscribe token needs a list or all lists";
	if (t->purpose == TOKEN_CONFIRM && t->list_id == 0)
		return "a confirm token needs one list";
	if (t->issued_at < 0 || t->issued_at > (int64_t)UINT32_MAX)
		return "issue time out of range (1970 to 2106)";
	return NULL;
}

static void
token_pack(const struct token *t, uint8_t key_id, unsigned char *raw)
{
	raw[0] = TOKEN_VERSION;
	raw[1] = key_id;
	raw[2] = (unsigned char)t->purpose;
	raw[3] = t->all_lists ? TOKEN_FLAG_ALL_LISTS : 0;
	token_put64(raw + 4, t->subscriber_id);
	token_put64(raw + 12, t->list_id);
	token_put64(raw + 20, t->campaign_id);
	raw[28] = (unsigned char)(t->issued_at >> 24);
	raw[29] = (unsigned char)(t->issued_at >> 16);
	raw[30] = (unsigned char)(t->issued_at >> 8);
	raw[31] = (unsigned char)t->issued_at;
}

/* -1 for a version or flags this code does not know. */
static int
token_unpack(const unsigned char *raw, struct token *t)
{
	if (raw[0] != TOKEN_VERSION || (raw[3] & ~TOKEN_FLAGS_KNOWN) != 0)
		return -1;
	t->key_id = raw[1];
	t->purpose = (enum token_purpose)raw[2];
	t->all_lists = (raw[3] & TOKEN_FLAG_ALL_LISTS) != 0;
	t->subscriber_id = token_get64(raw + 4);
	t->list_id = token_get64(raw + 12);
	t->campaign_id = token_get64(raw + 20);
	t->issued_at = (int64_t)((uint32_t)raw[28] << 24 | (uint32_t)raw[29] << 16 |
	    (uint32_t)raw[30] << 8 | raw[31]);
	return 0;
}

/* --- base64url, no padding: TOKEN_RAW_LEN bytes <-> TOKEN_TEXT_LEN ---- */

static const char token_alphabet[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

static void
token_encode(const unsigned char *raw, char *out)
{
	size_t i, o = 0;
	uint32_t acc;

	for (i = 0; i < TOKEN_RAW_LEN; i += 3) {
		acc = (uint32_t)raw[i] << 16 | (uint32_t)raw[i + 1] << 8 | raw[i + 2];
		out[o++] = token_alphabet[acc >> 18];
		out[o++] = token_alphabet[(acc >> 12) & 63];
		out[o++] = token_alphabet[(acc >> 6) & 63];
		out[o++] = token_alphabet[acc & 63];
	}
	out[o] = '\0';
}

/* Each character's value plus one; 0 for a character outside the
 * alphabet. A table, not branches: the characters of a MAC are random,
 * and mispredicted branches cost as much as the HMAC itself. */
static const unsigned char token_b64_plus1[256] = {
	['A'] = 1, ['B'] = 2, ['C'] = 3, ['D'] = 4, ['E'] = 5, ['F'] = 6,
	['G'] = 7, ['H'] = 8, ['I'] = 9, ['J'] = 10, ['K'] = 11, ['L'] = 12,
	['M'] = 13, ['N'] = 14, ['O'] = 15, ['P'] = 16, ['Q'] = 17,
	['R'] = 18, ['S'] = 19, ['T'] = 20, ['U'] = 21, ['V'] = 22,
	['W'] = 23, ['X'] = 24, ['Y'] = 25, ['Z'] = 26, ['a'] = 27,
	['b'] = 28, ['c'] = 29, ['d'] = 30, ['e'] = 31, ['f'] = 32,
	['g'] = 33, ['h'] = 34, ['i'] = 35, ['j'] = 36, ['k'] = 37,
	['l'] = 38, ['m'] = 39, ['n'] = 40, ['o'] = 41, ['p'] = 42,
	['q'] = 43, ['r'] = 44, ['s'] = 45, ['t'] = 46, ['u'] = 47,
	['v'] = 48, ['w'] = 49, ['x'] = 50, ['y'] = 51, ['z'] = 52,
	['0'] = 53, ['1'] = 54, ['2'] = 55, ['3'] = 56, ['4'] = 57,
	['5'] = 58, ['6'] = 59, ['7'] = 60, ['8'] = 61, ['9'] = 62,
	['-'] = 63, ['_'] = 64,
};

/* Exactly TOKEN_TEXT_LEN characters of the alphabet: since the length
 * is a multiple of 4 there is no padding and no spare bit, so every
 * accepted text is the one encoding of its bytes. */
static int
token_decode(const char *text, unsigned char *raw)
{
	const unsigned char *s = (const unsigned char *)text;
	unsigned bad = 0;
	uint32_t acc;
	size_t o = 0;

	if (strnlen(text, TOKEN_TEXT_LEN + 1) != TOKEN_TEXT_LEN)
		return -1;
	for (size_t i = 0; i < TOKEN_TEXT_LEN; i += 4) {
		unsigned a = token_b64_plus1[s[i]], b = token_b64_plus1[s[i + 1]];
		unsigned c = token_b64_plus1[s[i + 2]], d = token_b64_plus1[s[i + 3]];

		bad |= (a == 0) | (b == 0) | (c == 0) | (d == 0);
		acc = (a - 1) << 18 | (b - 1) << 12 | (c - 1) << 6 | (d - 1);
		raw[o++] = (unsigned char)(acc >> 16);
		raw[o++] = (unsigned char)(acc >> 8);
		raw[o++] = (unsigned char)acc;
	}
	return bad ? -1 : 0;
}

/* --- making and verifying --------------------------------------------- */

int
token_make_with_key(struct token_signer *signer, uint8_t key_id,
    const struct token *t, char *out, size_t outlen, struct assent_err *err)
{
	unsigned char raw[TOKEN_RAW_LEN];
	const char *problem;

	if (outlen < TOKEN_TEXT_SIZE)
		return err_set(err, EX_SOFTWARE, "token buffer too small");
	out[0] = '\0';
	if ((problem = token_fields_problem(t)) != NULL)
		return err_set(err, EX_DATAERR, "%s", problem);
	if (signer->ctx[key_id] == NULL)
		return err_set(err, EX_DATAERR, "no key with id %u", key_id);
	token_pack(t, key_id, raw);
	if (token_mac(signer->ctx[key_id], raw, TOKEN_BODY_LEN,
	    raw + TOKEN_BODY_LEN) == -1)
		return err_set(err, EX_SOFTWARE, "HMAC-SHA256 failed (OpenSSL)");
	token_encode(raw, out);
	return 0;
}

int
token_make(struct token_signer *signer, const struct token *t, char *out,
    size_t outlen, struct assent_err *err)
{
	return token_make_with_key(signer, signer->current_id, t, out, outlen,
	    err);
}

/* The checks of token_verify() except expiry: 0 with *t filled for a
 * genuine token of purpose expected, -1 for anything else. */
static int
token_check(struct token_signer *signer, const char *text,
    enum token_purpose expected, int64_t now, struct token *t)
{
	unsigned char raw[TOKEN_RAW_LEN], mac[TOKEN_MAC_LEN];
	EVP_MAC_CTX *ctx;

	if (token_decode(text, raw) == -1 || token_unpack(raw, t) == -1)
		return -1;
	if ((ctx = signer->ctx[t->key_id]) == NULL ||
	    token_mac(ctx, raw, TOKEN_BODY_LEN, mac) == -1 ||
	    CRYPTO_memcmp(mac, raw + TOKEN_BODY_LEN, TOKEN_MAC_LEN) != 0)
		return -1;
	/* Signed by us, so what follows holds unless a key leaked or the
	 * rules changed; checked all the same. */
	if (t->purpose != expected || token_fields_problem(t) != NULL)
		return -1;
	if (t->issued_at > now + TOKEN_CLOCK_SKEW)
		return -1;
	return 0;
}

int
token_verify(struct token_signer *signer, const char *text,
    enum token_purpose expected, int64_t now, int64_t confirm_ttl,
    struct token *out, struct assent_err *err)
{
	struct token t;

	memset(out, 0, sizeof(*out));
	if (token_check(signer, text, expected, now, &t) == -1 ||
	    (t.purpose == TOKEN_CONFIRM && now - t.issued_at > confirm_ttl))
		return err_set(err, EX_DATAERR, TOKEN_INVALID);
	*out = t;
	return 0;
}

int
token_verify_confirm(struct token_signer *signer, const char *text,
    int64_t now, int64_t confirm_ttl, struct token *out,
    struct assent_err *err)
{
	struct token t;

	memset(out, 0, sizeof(*out));
	if (token_check(signer, text, TOKEN_CONFIRM, now, &t) == -1)
		return err_set(err, EX_DATAERR, TOKEN_INVALID);
	*out = t;
	if (now - t.issued_at > confirm_ttl) {
		err_set(err, EX_DATAERR, TOKEN_INVALID);
		return 1;
	}
	return 0;
}

/* --- compact tokens: base32, for bounce addresses ---------------------- */

_Static_assert(TOKEN_COMPACT_RAW_LEN % 5 == 0, "no base32 padding");
_Static_assert(TOKEN_COMPACT_TEXT_LEN == TOKEN_COMPACT_RAW_LEN / 5 * 8,
    "compact text length");

static const char token_base32[] = "abcdefghijklmnopqrstuvwxyz234567";

static void
token_compact_encode(const unsigned char *raw, char *out)
{
	size_t o = 0;
	uint64_t acc;

	for (size_t i = 0; i < TOKEN_COMPACT_RAW_LEN; i += 5) {
		acc = 0;
		for (size_t k = 0; k < 5; k++)
			acc = acc << 8 | raw[i + k];
		for (int shift = 35; shift >= 0; shift -= 5)
			out[o++] = token_base32[(acc >> shift) & 31];
	}
	out[o] = '\0';
}

/* Each character's value plus one, either case; 0 outside the alphabet. */
static const unsigned char token_b32_plus1[256] = {
	['a'] = 1, ['b'] = 2, ['c'] = 3, ['d'] = 4, ['e'] = 5, ['f'] = 6,
	['g'] = 7, ['h'] = 8, ['i'] = 9, ['j'] = 10, ['k'] = 11, ['l'] = 12,
	['m'] = 13, ['n'] = 14, ['o'] = 15, ['p'] = 16, ['q'] = 17,
	['r'] = 18, ['s'] = 19, ['t'] = 20, ['u'] = 21, ['v'] = 22,
	['w'] = 23, ['x'] = 24, ['y'] = 25, ['z'] = 26,
	['A'] = 1, ['B'] = 2, ['C'] = 3, ['D'] = 4, ['E'] = 5, ['F'] = 6,
	['G'] = 7, ['H'] = 8, ['I'] = 9, ['J'] = 10, ['K'] = 11, ['L'] = 12,
	['M'] = 13, ['N'] = 14, ['O'] = 15, ['P'] = 16, ['Q'] = 17,
	['R'] = 18, ['S'] = 19, ['T'] = 20, ['U'] = 21, ['V'] = 22,
	['W'] = 23, ['X'] = 24, ['Y'] = 25, ['Z'] = 26,
	['2'] = 27, ['3'] = 28, ['4'] = 29, ['5'] = 30, ['6'] = 31, ['7'] = 32,
};

static int
token_compact_decode(const char *text, unsigned char *raw)
{
	const unsigned char *s = (const unsigned char *)text;
	unsigned bad = 0, v;
	uint64_t acc;
	size_t o = 0;

	if (strnlen(text, TOKEN_COMPACT_TEXT_LEN + 1) != TOKEN_COMPACT_TEXT_LEN)
		return -1;
	for (size_t i = 0; i < TOKEN_COMPACT_TEXT_LEN; i += 8) {
		acc = 0;
		for (size_t k = 0; k < 8; k++) {
			v = token_b32_plus1[s[i + k]];
			bad |= v == 0;
			acc = acc << 5 | ((v - 1) & 31);
		}
		for (int shift = 32; shift >= 0; shift -= 8)
			raw[o++] = (unsigned char)(acc >> shift);
	}
	return bad ? -1 : 0;
}

static const char *
token_compact_problem(const struct token_compact *t)
{
	if (t->purpose != TOKEN_BOUNCE && t->purpose != TOKEN_NOTICE &&
	    t->purpose != TOKEN_UNSUBSCRIBE && t->purpose != TOKEN_MANAGE)
		return "a compact token is for bounce, notice, unsubscribe or manage";
	if (t->delivery_id == 0 || t->delivery_id > TOKEN_COMPACT_ID_MAX)
		return "a compact token needs a delivery id from 1 to 2^56-1";
	if (t->issued_at < 0 || t->issued_at > (int64_t)UINT32_MAX)
		return "issue time out of range (1970 to 2106)";
	return NULL;
}

static void
token_compact_pack(const struct token_compact *t, uint8_t key_id,
    unsigned char *raw)
{
	raw[0] = TOKEN_COMPACT_VERSION;
	raw[1] = key_id;
	raw[2] = (unsigned char)t->purpose;
	for (int i = 0; i < 7; i++)
		raw[3 + i] = (unsigned char)(t->delivery_id >> (8 * (6 - i)));
	for (int i = 0; i < 4; i++)
		raw[10 + i] = (unsigned char)(t->issued_at >> (8 * (3 - i)));
}

static void
token_compact_unpack(const unsigned char *raw, struct token_compact *t)
{
	t->key_id = raw[1];
	t->purpose = (enum token_purpose)raw[2];
	t->delivery_id = 0;
	for (int i = 0; i < 7; i++)
		t->delivery_id = t->delivery_id << 8 | raw[3 + i];
	t->issued_at = (int64_t)((uint32_t)raw[10] << 24 |
	    (uint32_t)raw[11] << 16 | (uint32_t)raw[12] << 8 | raw[13]);
}

int
token_compact_make_with_key(struct token_signer *signer, uint8_t key_id,
    const struct token_compact *t, char *out, size_t outlen,
    struct assent_err *err)
{
	unsigned char raw[TOKEN_COMPACT_RAW_LEN];
	const char *problem;

	if (outlen < TOKEN_COMPACT_TEXT_SIZE)
		return err_set(err, EX_SOFTWARE, "token buffer too small");
	out[0] = '\0';
	if ((problem = token_compact_problem(t)) != NULL)
		return err_set(err, EX_DATAERR, "%s", problem);
	if (signer->ctx[key_id] == NULL)
		return err_set(err, EX_DATAERR, "no key with id %u", key_id);
	token_compact_pack(t, key_id, raw);
	if (token_mac(signer->ctx[key_id], raw, TOKEN_COMPACT_BODY_LEN,
	    raw + TOKEN_COMPACT_BODY_LEN) == -1)
		return err_set(err, EX_SOFTWARE, "HMAC-SHA256 failed (OpenSSL)");
	token_compact_encode(raw, out);
	return 0;
}

int
token_compact_make(struct token_signer *signer, const struct token_compact *t,
    char *out, size_t outlen, struct assent_err *err)
{
	return token_compact_make_with_key(signer, signer->current_id, t, out,
	    outlen, err);
}

int
token_compact_verify(struct token_signer *signer, const char *text,
    enum token_purpose expected, int64_t now, struct token_compact *out,
    struct assent_err *err)
{
	unsigned char raw[TOKEN_COMPACT_RAW_LEN], mac[TOKEN_MAC_LEN];
	struct token_compact t;
	EVP_MAC_CTX *ctx;

	memset(out, 0, sizeof(*out));
	if (token_compact_decode(text, raw) == -1 ||
	    raw[0] != TOKEN_COMPACT_VERSION)
		goto invalid;
	token_compact_unpack(raw, &t);
	if ((ctx = signer->ctx[t.key_id]) == NULL ||
	    token_mac(ctx, raw, TOKEN_COMPACT_BODY_LEN, mac) == -1 ||
	    CRYPTO_memcmp(mac, raw + TOKEN_COMPACT_BODY_LEN,
	    TOKEN_MAC_LEN) != 0)
		goto invalid;
	if (t.purpose != expected || token_compact_problem(&t) != NULL ||
	    t.issued_at > now + TOKEN_CLOCK_SKEW)
		goto invalid;
	*out = t;
	return 0;
invalid:
	return err_set(err, EX_DATAERR, TOKEN_INVALID);
}

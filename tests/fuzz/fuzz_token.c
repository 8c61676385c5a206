/*
 * fuzz_token: libFuzzer target over token_verify().
 *
 * Built and run by tests/fuzz/run, which reads the two lines below.
 * fuzz-sources: src/lib/token.c src/lib/keys.c src/lib/err.c src/lib/xmalloc.c
 * fuzz-libs: -lcrypto -lconfig
 *
 * The key set is fixed and in memory (keys 1, 2 and 200; 2 current).
 * Each input is tried two ways:
 * - as text: the input up to its first NUL is verified for every
 *   purpose;
 * - as a body: its bytes 1-32 become the 32 signed bytes of a token
 *   (byte 0 steers them towards a known key, version, flags and
 *   purpose), signed here with OpenSSL's one-shot HMAC() and encoded by
 *   a second base64url encoder, then verified for every purpose at a
 *   time near a boundary of the rules (bytes 33-34), so the checks
 *   after the MAC get exercised too.
 *
 * Invariants checked, each an abort() when broken:
 * - a token passes for at most one purpose;
 * - anything accepted re-encodes (token_make_with_key with its key id)
 *   to the same text, and its fields are the ones in the body;
 * - a correctly signed body is accepted exactly when an independent
 *   reading of the rules in token.h says it should be;
 * - every refusal is EX_DATAERR "invalid token" with *out zeroed.
 */
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "assent/conf.h"
#include "assent/err.h"
#include "assent/keys.h"
#include "assent/token.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(cond) do {                                                \
	if (!(cond)) {                                                  \
		fprintf(stderr, "%s:%d: invariant broken: %s\n",        \
		    __FILE__, __LINE__, #cond);                         \
		abort();                                                \
	}                                                               \
} while (0)

#define NOW 1795000000LL
#define TTL 604800LL

/* keys.c's keys_load() asks conf.c about file modes; no file is read
 * here, so this stands in for conf.c and what it pulls in. */
int
conf_check_secret_file(const char *path, const char *setting,
    struct assent_err *err)
{
	(void)path;
	(void)setting;
	(void)err;
	return 0;
}

static const uint8_t fuzz_ids[] = { 1, 200, 2 };        /* current last */
static struct token_signer *fuzz_signer;

static void
fuzz_secret(uint8_t id, unsigned char *secret)
{
	for (size_t i = 0; i < KEYS_SECRET_MIN; i++)
		secret[i] = (unsigned char)(id * 31 + i * 7);
}

static bool
fuzz_known(uint8_t id)
{
	for (size_t i = 0; i < sizeof(fuzz_ids); i++)
		if (fuzz_ids[i] == id)
			return true;
	return false;
}

static void
fuzz_init(void)
{
	struct keys_key keys[sizeof(fuzz_ids)];
	unsigned char pepper[KEYS_SECRET_MIN];
	struct assent_err err;
	struct keys *k;

	memset(keys, 0, sizeof(keys));
	for (size_t i = 0; i < sizeof(fuzz_ids); i++) {
		keys[i].id = fuzz_ids[i];
		keys[i].secret_len = KEYS_SECRET_MIN;
		fuzz_secret(fuzz_ids[i], keys[i].secret);
	}
	memset(pepper, 0x42, sizeof(pepper));
	CHECK(keys_from_memory(keys, sizeof(fuzz_ids), 2, pepper,
	    sizeof(pepper), &k, &err) == 0);
	CHECK(token_signer_new(k, &fuzz_signer, &err) == 0);
	keys_free(k);
}

static bool
fuzz_zeroed(const struct token *t)
{
	return t->purpose == 0 && t->subscriber_id == 0 && t->list_id == 0 &&
	    t->campaign_id == 0 && !t->all_lists && t->issued_at == 0 &&
	    t->key_id == 0;
}

/* Verify text for every purpose; returns the purpose it passed for (0
 * for none) with the fields in *out. */
static int
fuzz_verify(const char *text, int64_t now, struct token *out)
{
	struct assent_err err;
	struct token t;
	int passed = 0;

	for (int p = TOKEN_PURPOSE_MIN; p <= TOKEN_PURPOSE_MAX; p++) {
		memset(&t, 0xa5, sizeof(t));
		if (token_verify(fuzz_signer, text, (enum token_purpose)p, now,
		    TTL, &t, &err) == 0) {
			CHECK(passed == 0);
			CHECK((int)t.purpose == p);
			passed = p;
			*out = t;
		} else {
			CHECK(err.code == EX_DATAERR);
			CHECK(strcmp(err.msg, "invalid token") == 0);
			CHECK(fuzz_zeroed(&t));
		}
	}
	return passed;
}

/* What was accepted encodes back to the same text. */
static void
fuzz_reencode(const char *text, const struct token *t)
{
	char again[TOKEN_TEXT_SIZE];
	struct assent_err err;

	CHECK(strlen(text) == TOKEN_TEXT_LEN);
	CHECK(fuzz_known(t->key_id));
	CHECK(token_make_with_key(fuzz_signer, t->key_id, t, again,
	    sizeof(again), &err) == 0);
	CHECK(strcmp(again, text) == 0);
}

/* --- the independent signer and reader of the format ------------------- */

static uint64_t
get64(const unsigned char *p)
{
	uint64_t v = 0;

	for (int i = 0; i < 8; i++)
		v = (v << 8) | p[i];
	return v;
}

static int64_t
get32(const unsigned char *p)
{
	return (int64_t)((uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 |
	    (uint32_t)p[2] << 8 | p[3]);
}

static void
sign_body(const unsigned char *body, char *text)
{
	static const char alphabet[] =
	    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
	unsigned char raw[TOKEN_RAW_LEN], mac[32], secret[KEYS_SECRET_MIN];
	unsigned int maclen = sizeof(mac);
	size_t o = 0;

	/* An unknown key id gets a secret no key has. */
	if (fuzz_known(body[1]))
		fuzz_secret(body[1], secret);
	else
		memset(secret, 0xee, sizeof(secret));
	CHECK(HMAC(EVP_sha256(), secret, sizeof(secret), body, TOKEN_BODY_LEN,
	    mac, &maclen) != NULL);
	memcpy(raw, body, TOKEN_BODY_LEN);
	memcpy(raw + TOKEN_BODY_LEN, mac, TOKEN_MAC_LEN);
	for (size_t i = 0; i < TOKEN_RAW_LEN; i += 3) {
		unsigned v = (unsigned)raw[i] << 16 | (unsigned)raw[i + 1] << 8 |
		    raw[i + 2];

		for (int k = 3; k >= 0; k--)
			text[o++] = alphabet[(v >> (6 * k)) & 63];
	}
	text[o] = '\0';
}

/* The rules of token.h, read again. */
static int
ref_purpose(const unsigned char *b, int64_t now)
{
	uint64_t sub = get64(b + 4), list = get64(b + 12);
	int64_t at = get32(b + 28);
	bool all = b[3] & 1;
	int p = b[2];

	if (b[0] != 1 || !fuzz_known(b[1]) || (b[3] & 0xfe) != 0)
		return 0;
	if (p < 1 || p > 4 || sub == 0 || (all && list != 0))
		return 0;
	if (p == 1 && !all && list == 0)
		return 0;
	if (p == 2 && list == 0)
		return 0;
	if (at > now + 300 || (p == 2 && now - at > TTL))
		return 0;
	return p;
}

/* The time to verify at, near the body's issue time: byte 33 picks a
 * boundary of the rules and byte 34 an offset from it. */
static int64_t
fuzz_now(const uint8_t *data, size_t size, int64_t at)
{
	int64_t delta;

	if (size < 1 + TOKEN_BODY_LEN + 2)
		return NOW;
	delta = (int8_t)data[34];
	switch (data[33] & 3) {
	case 0: return NOW;
	case 1: return at + TTL + delta * 16;              /* confirm expiry */
	case 2: return at - TOKEN_CLOCK_SKEW + delta;      /* the future */
	default: return at + delta * 100000;
	}
}

/* Byte 0 steers the body towards what passes the first checks, so the
 * later ones get their turn: bits 0-1 a known key id, bit 2 version 1,
 * bit 3 no unknown flag, bits 4-6 a purpose 1-4 (from bit 6 on). */
static void
fuzz_steer(uint8_t steer, unsigned char *body)
{
	static const uint8_t ids[] = { 0, 1, 2, 200 };

	if (steer & 3)
		body[1] = ids[steer & 3];
	if (steer & 4)
		body[0] = 1;
	if (steer & 8)
		body[3] &= 1;
	if (steer & 0x40)
		body[2] = (uint8_t)(1 + ((steer >> 4) & 3));
}

static void
fuzz_body(const uint8_t *data, size_t size)
{
	unsigned char body[TOKEN_BODY_LEN];
	char text[TOKEN_TEXT_SIZE];
	struct token t;
	int64_t now, at;
	int passed;

	memcpy(body, data + 1, TOKEN_BODY_LEN);
	fuzz_steer(data[0], body);
	at = get32(body + 28);
	now = fuzz_now(data, size, at);
	sign_body(body, text);
	passed = fuzz_verify(text, now, &t);
	CHECK(passed == ref_purpose(body, now));
	if (passed == 0)
		return;
	fuzz_reencode(text, &t);
	CHECK(t.key_id == body[1]);
	CHECK(t.subscriber_id == get64(body + 4));
	CHECK(t.list_id == get64(body + 12));
	CHECK(t.campaign_id == get64(body + 20));
	CHECK(t.issued_at == at);
	CHECK(t.all_lists == ((body[3] & 1) != 0));
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct token t;
	char *s;

	if (fuzz_signer == NULL)
		fuzz_init();
	s = malloc(size + 1);
	if (s == NULL)
		return 0;
	memcpy(s, data, size);
	s[size] = '\0';
	if (fuzz_verify(s, NOW, &t) != 0)
		fuzz_reencode(s, &t);
	free(s);
	if (size >= 1 + TOKEN_BODY_LEN)
		fuzz_body(data, size);
	return 0;
}

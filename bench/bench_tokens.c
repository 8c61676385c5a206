/*
 * bench_tokens: tokens signed and verified per second on one core,
 * against the raw HMAC-SHA256 rate of OpenSSL measured in the same run
 * (EVP_MAC, key set once, one re-init per message, over the 32 bytes a
 * token signs). Run by bench/tokens.
 *
 * usage: bench_tokens [SECONDS]   (per figure; default 2)
 *
 * The machine may be busy with other work, so the operations take turns
 * in BENCH_ROUNDS short rounds and each figure is its best round: a
 * burst of load then slows one round, not one operation.
 * Exit status 0 when token_make and token_verify both reach
 * BENCH_TARGET of the raw rate, 1 otherwise.
 */
#include <sched.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/core_names.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/params.h>

#include "assent/keys.h"
#include "assent/token.h"

#define BENCH_TARGET    0.50
#define BENCH_CHUNK     4096            /* iterations between clock reads */
#define BENCH_NTOKENS   4096            /* distinct tokens verified */
#define BENCH_ROUNDS    5

static double bench_seconds = 2.0;
static volatile unsigned bench_sink;    /* keeps results alive */

static double
bench_now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

static void
bench_fail(const char *what)
{
	fprintf(stderr, "bench_tokens: %s failed\n", what);
	exit(2);
}

/* --- the references: HMAC-SHA256 over 32 bytes, three ways ------------- */

static unsigned char bench_key[KEYS_SECRET_MIN];
static unsigned char bench_msg[TOKEN_BODY_LEN];

static EVP_MAC_CTX *
bench_mac_ctx(void)
{
	OSSL_PARAM params[2];
	EVP_MAC *mac = EVP_MAC_fetch(NULL, "HMAC", NULL);
	EVP_MAC_CTX *ctx;

	params[0] = OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST,
	    (char *)"SHA256", 0);
	params[1] = OSSL_PARAM_construct_end();
	if (mac == NULL || (ctx = EVP_MAC_CTX_new(mac)) == NULL ||
	    !EVP_MAC_init(ctx, bench_key, sizeof(bench_key), params))
		bench_fail("EVP_MAC setup");
	EVP_MAC_free(mac);
	return ctx;
}

/* Each run_* does n iterations of one operation. */
typedef void (*bench_fn)(void *arg, uint64_t n);

static void
run_raw(void *arg, uint64_t n)
{
	EVP_MAC_CTX *ctx = arg;
	unsigned char out[32];
	size_t len;

	for (uint64_t i = 0; i < n; i++) {
		bench_msg[0] = (unsigned char)i;
		if (!EVP_MAC_init(ctx, NULL, 0, NULL) ||
		    !EVP_MAC_update(ctx, bench_msg, sizeof(bench_msg)) ||
		    !EVP_MAC_final(ctx, out, &len, sizeof(out)))
			bench_fail("EVP_MAC");
		bench_sink += out[0];
	}
}

static void
run_dup(void *arg, uint64_t n)
{
	EVP_MAC_CTX *ctx = arg, *c;
	unsigned char out[32];
	size_t len;

	for (uint64_t i = 0; i < n; i++) {
		bench_msg[0] = (unsigned char)i;
		if ((c = EVP_MAC_CTX_dup(ctx)) == NULL ||
		    !EVP_MAC_update(c, bench_msg, sizeof(bench_msg)) ||
		    !EVP_MAC_final(c, out, &len, sizeof(out)))
			bench_fail("EVP_MAC_CTX_dup");
		EVP_MAC_CTX_free(c);
		bench_sink += out[0];
	}
}

static void
run_oneshot(void *arg, uint64_t n)
{
	unsigned char out[32];
	unsigned int len;

	(void)arg;
	for (uint64_t i = 0; i < n; i++) {
		bench_msg[0] = (unsigned char)i;
		if (HMAC(EVP_sha256(), bench_key, sizeof(bench_key), bench_msg,
		    sizeof(bench_msg), out, &len) == NULL)
			bench_fail("HMAC");
		bench_sink += out[0];
	}
}

/* --- tokens ----------------------------------------------------------- */

static void
run_make(void *arg, uint64_t n)
{
	struct token t = { TOKEN_UNSUBSCRIBE, 1, 42, 7, false, 1795000000, 0 };
	char text[TOKEN_TEXT_SIZE];
	struct assent_err err;

	for (uint64_t i = 0; i < n; i++) {
		t.subscriber_id = i + 1;
		if (token_make(arg, &t, text, sizeof(text), &err) == -1)
			bench_fail(err.msg);
		bench_sink += (unsigned char)text[40];
	}
}

static char bench_tokens[BENCH_NTOKENS][TOKEN_TEXT_SIZE];

static void
run_verify(void *arg, uint64_t n)
{
	struct assent_err err;
	struct token out;

	for (uint64_t i = 0; i < n; i++) {
		if (token_verify(arg, bench_tokens[i % BENCH_NTOKENS],
		    TOKEN_UNSUBSCRIBE, 1795000000, 604800, &out, &err) == -1)
			bench_fail("token_verify");
		bench_sink += (unsigned)out.subscriber_id;
	}
}

/* Operations per second over one round: a short warm-up, then chunks
 * until the time is up. */
static double
bench_rate(bench_fn fn, void *arg, double seconds)
{
	uint64_t n = 0;
	double start, elapsed;

	fn(arg, BENCH_CHUNK);
	start = bench_now();
	do {
		fn(arg, BENCH_CHUNK);
		n += BENCH_CHUNK;
		elapsed = bench_now() - start;
	} while (elapsed < seconds);
	return (double)n / elapsed;
}

enum { B_RAW, B_DUP, B_ONESHOT, B_MAKE, B_VERIFY, B_N };

static const struct {
	const char *what;
	bench_fn fn;
} bench_ops[B_N] = {
	[B_RAW] = { "raw HMAC-SHA256, EVP_MAC key set once (ref)", run_raw },
	[B_DUP] = { "  EVP_MAC_CTX_dup per message", run_dup },
	[B_ONESHOT] = { "  one-shot HMAC()", run_oneshot },
	[B_MAKE] = { "token_make (sign + base64url)", run_make },
	[B_VERIFY] = { "token_verify (decode + MAC + checks)", run_verify },
};

static struct token_signer *
bench_signer(void)
{
	struct keys_key key;
	unsigned char pepper[KEYS_SECRET_MIN];
	struct token_signer *signer;
	struct assent_err err;
	struct keys *keys;

	memset(&key, 0, sizeof(key));
	key.id = 1;
	key.secret_len = sizeof(bench_key);
	memcpy(key.secret, bench_key, sizeof(bench_key));
	memset(pepper, 0x33, sizeof(pepper));
	if (keys_from_memory(&key, 1, 1, pepper, sizeof(pepper), &keys, &err) == -1 ||
	    token_signer_new(keys, &signer, &err) == -1)
		bench_fail(err.msg);
	keys_free(keys);
	return signer;
}

/* Stay on the CPU we started on: "one core" and steadier figures. */
static int
bench_pin(void)
{
	int cpu = sched_getcpu();
	cpu_set_t set;

	if (cpu < 0)
		return -1;
	CPU_ZERO(&set);
	CPU_SET(cpu, &set);
	return sched_setaffinity(0, sizeof(set), &set) == 0 ? cpu : -1;
}

static void
bench_line(const char *what, double rate, double raw)
{
	printf("%-44s %12.0f /s", what, rate);
	if (raw > 0)
		printf("  %5.1f%% of raw", 100.0 * rate / raw);
	printf("\n");
}

/* The best rate of each operation over the rounds. */
static void
bench_measure(double *best, struct token_signer *signer, EVP_MAC_CTX *ctx)
{
	for (int r = 0; r < BENCH_ROUNDS; r++)
		for (int op = 0; op < B_N; op++) {
			void *arg = op == B_MAKE || op == B_VERIFY ? (void *)signer :
			    op == B_ONESHOT ? NULL : (void *)ctx;
			double rate = bench_rate(bench_ops[op].fn, arg,
			    bench_seconds / BENCH_ROUNDS);

			if (rate > best[op])
				best[op] = rate;
		}
}

int
main(int argc, char **argv)
{
	struct token_signer *signer;
	struct token t = { TOKEN_UNSUBSCRIBE, 1, 42, 7, false, 1795000000, 0 };
	struct assent_err err;
	EVP_MAC_CTX *ctx;
	double best[B_N] = { 0 }, raw, make, verify;
	int cpu;

	if (argc > 1 && (bench_seconds = atof(argv[1])) <= 0) {
		fprintf(stderr, "usage: bench_tokens [SECONDS]\n");
		return 64;
	}
	for (size_t i = 0; i < sizeof(bench_key); i++)
		bench_key[i] = (unsigned char)(i * 7 + 1);
	cpu = bench_pin();
	ctx = bench_mac_ctx();
	signer = bench_signer();
	for (size_t i = 0; i < BENCH_NTOKENS; i++) {
		t.subscriber_id = i + 1;
		if (token_make(signer, &t, bench_tokens[i], TOKEN_TEXT_SIZE,
		    &err) == -1)
			bench_fail(err.msg);
	}

	if (cpu >= 0)
		printf("bench/tokens: one thread pinned to CPU %d", cpu);
	else
		printf("bench/tokens: one thread (not pinned)");
	printf(", %.1f s per figure (best of %d rounds), %s\n", bench_seconds,
	    BENCH_ROUNDS, OpenSSL_version(OPENSSL_VERSION));
	bench_measure(best, signer, ctx);
	raw = best[B_RAW];
	make = best[B_MAKE];
	verify = best[B_VERIFY];
	for (int op = 0; op < B_N; op++)
		bench_line(bench_ops[op].what, best[op], op == B_RAW ? 0 : raw);

	printf("target: signing and verifying at least %.0f%% of raw: %s\n",
	    BENCH_TARGET * 100,
	    make >= BENCH_TARGET * raw && verify >= BENCH_TARGET * raw ?
	    "met" : "NOT met");
	token_signer_free(signer);
	EVP_MAC_CTX_free(ctx);
	return make >= BENCH_TARGET * raw && verify >= BENCH_TARGET * raw ? 0 : 1;
}

/*
 * bench_unsub_tokens: unsubscribe tokens for bench/unsubscribe, one a
 * line, as fast as they can be signed (assent token make would run a
 * process per token).
 *
 * usage: bench_unsub_tokens KEYS_FILE LIST_ID < IDS > TOKENS
 *
 * IDS holds subscriber ids, one a line. Each gets a token of purpose
 * unsubscribe for that subscriber and LIST_ID, no campaign, issued now,
 * signed with the current key of KEYS_FILE (as made by "assent keys
 * generate"). Exit status 0, 64 for bad usage, 1 when the keys cannot
 * be loaded, a line is not an id or a token cannot be made or written.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "assent/keys.h"
#include "assent/token.h"

static int
bench_id(const char *s, uint64_t *id_r)
{
	unsigned long long v;
	char *end;

	errno = 0;
	v = strtoull(s, &end, 10);
	if (s[0] < '0' || s[0] > '9' || *end != '\0' || errno != 0 || v == 0 ||
	    v > INT64_MAX)
		return -1;
	*id_r = v;
	return 0;
}

static struct token_signer *
bench_signer(const char *path)
{
	struct token_signer *signer;
	struct assent_err err;
	struct keys *keys;

	if (keys_load(path, &keys, &err) == -1) {
		fprintf(stderr, "bench_unsub_tokens: %s\n", err.msg);
		return NULL;
	}
	if (token_signer_new(keys, &signer, &err) == -1) {
		fprintf(stderr, "bench_unsub_tokens: %s\n", err.msg);
		signer = NULL;
	}
	keys_free(keys);
	return signer;
}

/* One token a line of ids on in; the number of lines written or -1. */
static long
bench_tokens(struct token_signer *signer, uint64_t list_id, FILE *in)
{
	struct token t = { TOKEN_UNSUBSCRIBE, 0, list_id, 0, false,
	    (int64_t)time(NULL), 0 };
	char line[64], text[TOKEN_TEXT_SIZE];
	struct assent_err err;
	long n = 0;

	while (fgets(line, sizeof(line), in) != NULL) {
		line[strcspn(line, "\r\n")] = '\0';
		if (bench_id(line, &t.subscriber_id) == -1) {
			fprintf(stderr, "bench_unsub_tokens: line %ld: \"%s\" is "
			    "not a subscriber id\n", n + 1, line);
			return -1;
		}
		if (token_make(signer, &t, text, sizeof(text), &err) == -1) {
			fprintf(stderr, "bench_unsub_tokens: %s\n", err.msg);
			return -1;
		}
		if (puts(text) == EOF)
			return -1;
		n++;
	}
	return ferror(in) ? -1 : n;
}

int
main(int argc, char **argv)
{
	struct token_signer *signer;
	uint64_t list_id;
	long n;

	if (argc != 3 || bench_id(argv[2], &list_id) == -1) {
		fprintf(stderr, "usage: bench_unsub_tokens KEYS_FILE LIST_ID "
		    "< IDS > TOKENS\n");
		return 64;
	}
	if ((signer = bench_signer(argv[1])) == NULL)
		return 1;
	n = bench_tokens(signer, list_id, stdin);
	token_signer_free(signer);
	if (n == -1 || fflush(stdout) == EOF || ferror(stdout)) {
		if (n != -1)
			fprintf(stderr, "bench_unsub_tokens: writing: %s\n",
			    strerror(errno));
		return 1;
	}
	return 0;
}

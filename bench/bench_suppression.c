/*
 * bench_suppression: the suppression gate under a full list.
 *
 * Makes a fresh database (tests/harness: PGHOST, ASSENT_SQLDIR), fills
 * it with 1,000,000 address entries, 10,000 domains and 100,000 keyed
 * hashes, then runs the gate over 1,000,000 recipients (about 5%
 * suppressed: by address, domain and hash) in batches of sending.batch
 * (100), each in its own transaction, as the sender does. Prints the
 * recipients checked per second and the microseconds per recipient,
 * and, given the reference message rate (--message-rate, from
 * smtp-source against smtp-sink, see bench/suppression), the gate's
 * share of the time to send one message.
 *
 * usage: bench_suppression [--recipients N] [--batch N] [--gmail]
 *                          [--message-rate MSGS_PER_SEC]
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "assent/db.h"
#include "assent/suppress.h"
#include "assent/xmalloc.h"
#include "testhelp.h"

#define BENCH_ADDRESSES 1000000
#define BENCH_DOMAINS   10000
#define BENCH_HASHES    100000
#define BENCH_GMAIL     10000           /* of the addresses, at gmail.com */
#define BENCH_SPREAD    20000           /* domains the addresses spread over */

struct bench_opts {
	long recipients;
	long batch;
	bool gmail;
	double message_rate;
};

static double
bench_now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void
bench_die(const char *what, const char *why)
{
	fprintf(stderr, "bench_suppression: %s: %s\n", what, why);
	exit(1);
}

static void
bench_exec(PGconn *conn, const char *sql)
{
	struct assent_err err;

	if (db_exec(conn, NULL, &err, sql, 0, NULL) == -1)
		bench_die(sql, err.msg);
}

/* A cheap deterministic mix (splitmix64), so every run checks the same. */
static unsigned long long
bench_mix(unsigned long long x)
{
	x += 0x9e3779b97f4a7c15ULL;
	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
	x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
	return x ^ (x >> 31);
}

/* The hashed entries: their hex through COPY, computed with the pepper. */
static void
bench_fill_hashes(PGconn *conn, const struct suppress_ctx *ctx)
{
	char key[64], line[128], hex[SUPPRESS_HASH_HEX + 1];
	PGresult *res;
	int len;

	res = PQexec(conn, "COPY suppressions (kind, value, reason, source, added_by)"
	    " FROM STDIN");
	if (PQresultStatus(res) != PGRES_COPY_IN)
		bench_die("COPY", PQerrorMessage(conn));
	PQclear(res);
	for (long i = 1; i <= BENCH_HASHES; i++) {
		snprintf(key, sizeof(key), "h%ld@hashed.example", i);
		suppress_hash(ctx, key, hex);
		len = snprintf(line, sizeof(line), "hash\t%s\terasure\tbench\tbench\n", hex);
		if (PQputCopyData(conn, line, len) != 1)
			bench_die("COPY data", PQerrorMessage(conn));
	}
	if (PQputCopyEnd(conn, NULL) != 1)
		bench_die("COPY end", PQerrorMessage(conn));
	while ((res = PQgetResult(conn)) != NULL) {
		if (PQresultStatus(res) != PGRES_COMMAND_OK)
			bench_die("COPY", PQresultErrorMessage(res));
		PQclear(res);
	}
}

static void
bench_fill(PGconn *conn, const struct suppress_ctx *ctx)
{
	double t0 = bench_now();

	bench_exec(conn, "INSERT INTO suppressions (kind, value, reason, source, added_by)"
	    " SELECT 'address', 's' || g || '@d' || (g % " "20000" ") || '.example',"
	    " 'unsubscribe', 'bench', 'bench'"
	    " FROM generate_series(1, 1000000 - 10000) g");
	bench_exec(conn, "INSERT INTO suppressions (kind, value, mailbox_key, reason,"
	    " source, added_by) SELECT 'address', 'g.' || g || '@gmail.com',"
	    " 'g' || g || '@gmail.com', 'complaint', 'bench', 'bench'"
	    " FROM generate_series(1, 10000) g");
	bench_exec(conn, "INSERT INTO suppressions (kind, value, reason, source, added_by)"
	    " SELECT 'domain', 'blocked' || g || '.example', 'hard-bounce',"
	    " 'bench', 'bench' FROM generate_series(1, 10000) g");
	bench_fill_hashes(conn, ctx);
	bench_exec(conn, "VACUUM ANALYZE suppressions");
	printf("filled %d address entries (%d at gmail.com), %d domains, %d hashed "
	    "entries in %.1f s\n", BENCH_ADDRESSES, BENCH_GMAIL, BENCH_DOMAINS,
	    BENCH_HASHES, bench_now() - t0);
}

/*
 * Recipient i: 3% hit an address entry, 1% a domain, 1% a hash, 1% are
 * gmail spellings of a suppressed mailbox (suppressed only with
 * --gmail), the rest are clean (some of them at gmail.com). *expect_r
 * counts the ones the gate must stop.
 */
static void
bench_recipient(long i, bool gmail, char *out, size_t len, long *expect_r)
{
	unsigned long long r = bench_mix((unsigned long long)i);
	unsigned slot = (unsigned)(r % 1000);
	long pick = (long)((r >> 20) % 1000000);

	if (slot < 30) {
		pick = pick % (BENCH_ADDRESSES - BENCH_GMAIL) + 1;
		snprintf(out, len, "s%ld@d%ld.example", pick, pick % BENCH_SPREAD);
	} else if (slot < 40) {
		snprintf(out, len, "x%ld@blocked%ld.example", i, pick % BENCH_DOMAINS + 1);
	} else if (slot < 50) {
		snprintf(out, len, "h%ld@hashed.example", pick % BENCH_HASHES + 1);
	} else if (slot < 60) {
		snprintf(out, len, "g%ld+news@googlemail.com", pick % BENCH_GMAIL + 1);
		if (!gmail)
			return;
	} else if (slot < 100) {
		snprintf(out, len, "n%ld@gmail.com", i);
		return;
	} else {
		snprintf(out, len, "n%ld@d%ld.example", i, i % BENCH_SPREAD);
		return;
	}
	(*expect_r)++;
}

static void
bench_gate(PGconn *conn, const struct suppress_ctx *ctx, const struct bench_opts *o)
{
	struct suppress_verdict *v = xcalloc((size_t)o->batch, sizeof(*v));
	char (*keys)[ADDR_MAX + 1] = xcalloc((size_t)o->batch, sizeof(*keys));
	const char **kp = xcalloc((size_t)o->batch, sizeof(*kp));
	struct assent_err err;
	long expect = 0, got = 0;
	double t0, t_gate = 0, t1, total;

	for (long b = 0; b < o->batch; b++)
		kp[b] = keys[b];
	t0 = bench_now();
	for (long i = 0; i < o->recipients; i += o->batch) {
		long n = o->recipients - i < o->batch ? o->recipients - i : o->batch;

		for (long b = 0; b < n; b++)
			bench_recipient(i + b, ctx->gmail_mailbox_key, keys[b],
			    sizeof(keys[b]), &expect);
		if (db_begin(conn, &err) == -1)
			bench_die("BEGIN", err.msg);
		t1 = bench_now();
		if (suppress_gate(conn, ctx, kp, (size_t)n, v, &err) == -1)
			bench_die("gate", err.msg);
		t_gate += bench_now() - t1;
		if (db_commit(conn, &err) == -1)
			bench_die("COMMIT", err.msg);
		for (long b = 0; b < n; b++)
			got += v[b].suppressed;
	}
	total = bench_now() - t0;
	printf("gate%s: %ld recipients in batches of %ld: %ld suppressed (expected %ld)%s\n",
	    ctx->gmail_mailbox_key ? " (gmail mailbox keys on)" : "", o->recipients,
	    o->batch, got, expect, got == expect ? "" : "  MISMATCH");
	printf("  with BEGIN/COMMIT: %.1f s, %.0f recipients/s, %.2f us/recipient\n",
	    total, o->recipients / total, total * 1e6 / o->recipients);
	printf("  gate call alone:   %.1f s, %.0f recipients/s, %.2f us/recipient\n",
	    t_gate, o->recipients / t_gate, t_gate * 1e6 / o->recipients);
	if (o->message_rate > 0)
		printf("  share of the send budget (%.0f messages/s = %.1f us/message): "
		    "%.1f%% (gate alone), %.1f%% (with its transaction); target < 5%%\n",
		    o->message_rate, 1e6 / o->message_rate,
		    100.0 * (t_gate / o->recipients) * o->message_rate,
		    100.0 * (total / o->recipients) * o->message_rate);
	free(kp);
	free(keys);
	free(v);
	if (got != expect)
		exit(1);
}

static void
bench_args(int argc, char **argv, struct bench_opts *o)
{
	o->recipients = 1000000;
	o->batch = 100;
	o->gmail = false;
	o->message_rate = 0;
	for (int i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--gmail") == 0)
			o->gmail = true;
		else if (strcmp(argv[i], "--recipients") == 0 && i + 1 < argc)
			o->recipients = atol(argv[++i]);
		else if (strcmp(argv[i], "--batch") == 0 && i + 1 < argc)
			o->batch = atol(argv[++i]);
		else if (strcmp(argv[i], "--message-rate") == 0 && i + 1 < argc)
			o->message_rate = atof(argv[++i]);
		else
			bench_die("usage", "bench_suppression [--recipients N] "
			    "[--batch N] [--gmail] [--message-rate N]");
	}
	if (o->recipients < 1 || o->batch < 1 || o->batch > 10000)
		bench_die("usage", "--recipients and --batch (1-10000) must be positive");
}

int
main(int argc, char **argv)
{
	static unsigned char pepper[32] = "bench pepper: 32 bytes, not sec";
	struct suppress_ctx ctx = { pepper, sizeof(pepper), false };
	struct bench_opts o;
	char *dbname;
	PGconn *conn;

	bench_args(argc, argv, &o);
	testhelp_require_servers();
	conn = testhelp_db_create(NULL, &dbname);
	bench_fill(conn, &ctx);
	bench_gate(conn, &ctx, &o);
	if (o.gmail) {
		ctx.gmail_mailbox_key = true;
		bench_gate(conn, &ctx, &o);
	}
	testhelp_db_drop(conn, dbname);
	free(dbname);
	return 0;
}

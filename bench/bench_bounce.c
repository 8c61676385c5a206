/*
 * bench_bounce: messages classified per second on one core by
 * bounce_parse() (GMime parse, report walk, patterns, classifier),
 * over the samples of the inbound corpus taken in turn. Run by
 * bench/inbound.
 *
 * usage: bench_bounce DIR [MESSAGES]   (default 100000)
 *
 * DIR holds the *.eml samples (tests/data/inbound). They are read into
 * memory first, so the figure leaves disk reads out, as the daemon's
 * pipe reads would be. Prints the rate, the corpus mix and the target;
 * exit status 0 when the rate reaches BENCH_TARGET, 1 when not, 2 on
 * error.
 */
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "assent/bounce.h"

#define BENCH_TARGET    2000.0          /* messages per second */
#define BENCH_SAMPLES   256

struct sample {
	char name[256];
	char *data;
	size_t len;
};

static struct sample samples[BENCH_SAMPLES];
static size_t nsamples;

static double
bench_now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

static int
bench_cmp(const void *a, const void *b)
{
	return strcmp(((const struct sample *)a)->name,
	    ((const struct sample *)b)->name);
}

static void
bench_load(const char *dir)
{
	DIR *d = opendir(dir);
	struct dirent *de;
	struct assent_err err;
	char path[4096];
	bool truncated;
	FILE *f;

	if (d == NULL) {
		perror(dir);
		exit(2);
	}
	while ((de = readdir(d)) != NULL && nsamples < BENCH_SAMPLES) {
		size_t n = strlen(de->d_name);
		struct sample *s = &samples[nsamples];

		if (n < 5 || strcmp(de->d_name + n - 4, ".eml") != 0)
			continue;
		snprintf(path, sizeof(path), "%s/%s", dir, de->d_name);
		if ((f = fopen(path, "r")) == NULL ||
		    bounce_read(f, &s->data, &s->len, &truncated, &err) == -1) {
			fprintf(stderr, "bench_bounce: %s: cannot read\n", path);
			exit(2);
		}
		fclose(f);
		snprintf(s->name, sizeof(s->name), "%s", de->d_name);
		nsamples++;
	}
	closedir(d);
	if (nsamples == 0) {
		fprintf(stderr, "bench_bounce: no *.eml in %s\n", dir);
		exit(2);
	}
	qsort(samples, nsamples, sizeof(samples[0]), bench_cmp);
}

int
main(int argc, char **argv)
{
	unsigned long total = argc > 2 ? strtoul(argv[2], NULL, 10) : 100000;
	unsigned long kinds[5] = { 0 }, recipients = 0;
	size_t bytes = 0;
	struct bounce_report r;
	double t0, secs, rate;

	if (argc < 2 || total == 0) {
		fprintf(stderr, "usage: bench_bounce DIR [MESSAGES]\n");
		return 2;
	}
	bench_load(argv[1]);
	bounce_init();
	for (size_t i = 0; i < nsamples; i++) {        /* warm up, and the mix */
		bounce_parse(samples[i].data, samples[i].len, NULL, &r);
		kinds[r.kind]++;
		recipients += r.nrecipients;
		bytes += samples[i].len;
		bounce_report_free(&r);
	}
	t0 = bench_now();
	for (unsigned long i = 0; i < total; i++) {
		const struct sample *s = &samples[i % nsamples];

		bounce_parse(s->data, s->len, NULL, &r);
		bounce_report_free(&r);
	}
	secs = bench_now() - t0;
	rate = total / secs;
	printf("corpus: %zu samples, %zu bytes (mean %zu), %lu recipients: "
	    "dsn %lu, arf %lu, auto-reply %lu, mailto-unsubscribe %lu, "
	    "unknown %lu\n", nsamples, bytes, bytes / nsamples, recipients,
	    kinds[BOUNCE_KIND_DSN], kinds[BOUNCE_KIND_ARF],
	    kinds[BOUNCE_KIND_AUTO_REPLY], kinds[BOUNCE_KIND_MAILTO_UNSUBSCRIBE],
	    kinds[BOUNCE_KIND_UNKNOWN]);
	printf("classified %lu messages in %.2f s on one core: %.0f messages/s, "
	    "%.1f us each (target >= %.0f/s: %s)\n", total, secs, rate,
	    1e6 * secs / total, BENCH_TARGET,
	    rate >= BENCH_TARGET ? "met" : "NOT met");
	for (size_t i = 0; i < nsamples; i++)
		free(samples[i].data);
	bounce_shutdown();
	return rate >= BENCH_TARGET ? 0 : 1;
}

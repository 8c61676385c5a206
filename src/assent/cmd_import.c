/* assent import: subscribers in from a CSV file (import.h) */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sysexits.h>
#include <unistd.h>

#include "assent/import.h"
#include "assent/keys.h"
#include "assent/xmalloc.h"
#include "cli.h"

static const struct cli_cmd import_cmd = {
	"", "FILE|- --list NAME --source TEXT [--basis express|implied] "
	"[--expires DATE] [--consent-text VERSION] [--collected-at DATE] "
	"[--map COLUMN=FIELD]... [--update] [--dry-run] [--rejects PATH]",
	"import subscribers from a CSV file with a header row, in one "
	"transaction; rows that cannot be taken go to FILE.rejects.csv",
	1, 1, NULL,
};

/* The progress line, when stderr is a terminal. */
struct import_bar {
	const char *phase;
	double start, last;
};

/* "reading [####      ]  41%  412000 rows, 98000 rows/s, 7 s left":
 * while reading, bytes tell how far; while writing, rows written. */
static void
import_show_progress(const struct import_progress *p, void *arg)
{
	struct import_bar *bar = arg;
	double now = p->elapsed, spent, part, count;
	char left[32] = "";
	int width = 30, filled;

	if (bar->phase == NULL || strcmp(bar->phase, p->phase) != 0) {
		bar->phase = p->phase;
		bar->start = now;
	} else if (now - bar->last < 0.2 && p->done < p->total) {
		return;
	}
	bar->last = now;
	spent = now - bar->start;
	if (p->total == 0 && strcmp(p->phase, "reading") != 0) {
		fprintf(stderr, "\r%-8s %lu rows read; checking them against the "
		    "list and the suppression list\033[K", p->phase, p->rows);
		fflush(stderr);
		return;
	}
	part = p->total > 0 ? (double)p->done / (double)p->total : 0;
	count = strcmp(p->phase, "reading") == 0 ? (double)p->rows : (double)p->done;
	filled = (int)(part * width);
	if (part > 0.01 && spent > 1)
		snprintf(left, sizeof(left), ", %.0f s left", spent / part - spent);
	fprintf(stderr, "\r%-8s [%.*s%*s] %3.0f%%  %.0f rows, %.0f rows/s%s\033[K",
	    p->phase, filled, "##############################", width - filled, "",
	    part * 100, count, spent > 0 ? count / spent : 0, left);
	fflush(stderr);
}

/* --map may come many times: take them out before cli_parse(). */
static int
import_take_maps(int argc, char **argv, char **rest, int *nrest,
    const char **maps, size_t *nmaps)
{
	*nrest = 0;
	*nmaps = 0;
	for (int i = 0; i < argc; i++) {
		if (strcmp(argv[i], "--map") == 0) {
			if (i + 1 >= argc)
				return cli_usage_error("import: --map needs COLUMN=FIELD");
			maps[(*nmaps)++] = argv[++i];
		} else if (strncmp(argv[i], "--map=", 6) == 0) {
			maps[(*nmaps)++] = argv[i] + 6;
		} else {
			rest[(*nrest)++] = argv[i];
		}
	}
	return 0;
}

static void
import_print_summary(bool as_json, const struct import_options *o,
    const struct import_summary *s)
{
	json_t *j;

	if (!as_json) {
		printf("import of %s (sha256 %s) into %s: %lu row%s\n",
		    strcmp(o->path, "-") == 0 ? "standard input" : o->path,
		    s->sha256, s->list, s->rows, s->rows == 1 ? "" : "s");
		printf("  added         %lu\n  updated       %lu\n"
		    "  unchanged     %lu\n", s->added, s->updated, s->unchanged);
		printf("  unsubscribed  %lu   skipped: they left the list\n",
		    s->unsubscribed);
		printf("  suppressed    %lu   skipped: on the suppression list\n",
		    s->suppressed);
		printf("  duplicates    %lu   taken once\n", s->duplicates);
		printf("  rejected      %lu\n", s->rejected);
		if (s->rejects_path[0] != '\0')
			printf("rejected and skipped rows, with their lines and "
			    "reasons: %s\n", s->rejects_path);
		if (o->dry_run)
			printf("dry run: nothing was written (%.1f s)\n", s->seconds);
		else
			printf("committed in %.1f s (%.0f rows/s)\n", s->seconds,
			    s->seconds > 0 ? (double)s->rows / s->seconds : 0);
		return;
	}
	j = json_pack("{s:s, s:s, s:s, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I,"
	    " s:o, s:b, s:f}", "file", o->path, "sha256", s->sha256, "list", s->list,
	    "rows", (json_int_t)s->rows, "added", (json_int_t)s->added,
	    "updated", (json_int_t)s->updated, "unchanged", (json_int_t)s->unchanged,
	    "unsubscribed", (json_int_t)s->unsubscribed,
	    "suppressed", (json_int_t)s->suppressed,
	    "duplicates", (json_int_t)s->duplicates,
	    "rejected", (json_int_t)s->rejected,
	    "rejects_file", s->rejects_path[0] != '\0' ?
	    json_string(s->rejects_path) : json_null(),
	    "dry_run", o->dry_run, "seconds", s->seconds);
	out_json(j);
	json_decref(j);
}

static int
import_open(struct import_options *o)
{
	struct stat st;

	if (strcmp(o->path, "-") == 0) {
		o->in = stdin;
		return 0;
	}
	if ((o->in = fopen(o->path, "r")) == NULL) {
		fprintf(stderr, "assent: %s: %s\n", o->path, strerror(errno));
		return errno == ENOENT ? EX_NOINPUT : EX_IOERR;
	}
	if (fstat(fileno(o->in), &st) == -1)
		st.st_mode = 0;
	if (S_ISDIR(st.st_mode)) {
		fprintf(stderr, "assent: %s: is a directory, not a CSV file\n",
		    o->path);
		fclose(o->in);
		o->in = NULL;
		return EX_NOINPUT;
	}
	if (S_ISREG(st.st_mode))
		o->size = (uint64_t)st.st_size;
	return 0;
}

static int
import_go(struct cli *cli, struct import_options *o)
{
	struct import_summary s;
	struct import_bar bar = { NULL, 0, 0 };
	struct suppress_ctx ctx;
	struct keys *keys = NULL;
	struct assent_err err;
	int rc;

	if ((rc = cli_db(cli, false)) != 0 ||
	    (rc = cli_suppress_ctx(cli, &keys, &ctx)) != 0)
		return rc;
	if ((rc = import_open(o)) != 0) {
		keys_free(keys);
		return rc;
	}
	o->suppress = &ctx;
	o->operator_name = cli->operator_name;
	if (isatty(STDERR_FILENO)) {
		o->progress = import_show_progress;
		o->progress_arg = &bar;
	}
	rc = import_run(cli->conn, o, &s, &err);
	if (o->progress != NULL)
		fputs("\r\033[K", stderr);
	if (o->in != stdin)
		fclose(o->in);
	keys_free(keys);
	if (rc == -1)
		return cli_fail(&err);
	import_print_summary(cli->json, o, &s);
	return 0;
}

int
cmd_import(struct cli *cli, int argc, char **argv)
{
	struct import_options o = { 0 };
	const char **maps = xcalloc((size_t)argc + 1, sizeof(*maps));
	char **rest = xcalloc((size_t)argc + 2, sizeof(*rest)), *args[1];
	bool update = false, dry_run = false;
	const struct cli_opt opts[] = {
		{ "list", &o.list, NULL }, { "source", &o.source, NULL },
		{ "basis", &o.basis, NULL }, { "expires", &o.expires, NULL },
		{ "consent-text", &o.consent_text, NULL },
		{ "collected-at", &o.collected_at, NULL },
		{ "rejects", &o.rejects_path, NULL },
		{ "update", NULL, &update }, { "dry-run", NULL, &dry_run },
		{ NULL, NULL, NULL },
	};
	int rc, n, nrest;

	rest[0] = "import";
	if ((rc = import_take_maps(argc, argv, rest + 1, &nrest, maps, &o.nmaps)) != 0 ||
	    (rc = cli_parse(cli, &import_cmd, "import", nrest + 1, rest, opts, args,
	    &n)) != 0)
		goto out;
	if (n < 1 || o.list == NULL || o.source == NULL) {
		rc = cli_usage_error("import: give FILE (or - for standard input), "
		    "--list NAME and --source TEXT");
		goto out;
	}
	o.path = args[0];
	o.maps = maps;
	o.update = update;
	o.dry_run = dry_run;
	rc = import_go(cli, &o);
out:
	free(maps);
	free(rest);
	return rc < 0 ? 0 : rc;
}

/* assent export: a list's subscribers as CSV or JSON (export.h) */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "assent/export.h"
#include "assent/keys.h"
#include "assent/xmalloc.h"
#include "cli.h"

static int export_main(struct cli *, int, char **);

/* A group of one command: its name is the group's. */
static const struct cli_cmd export_cmd = {
	"", "--list NAME [--status confirmed|pending|unsubscribed|all] "
	"[--format csv|json] [--out FILE]",
	"write a list's subscribers out as CSV or JSON (default: the confirmed "
	"ones, as CSV, to standard output)", 0, 0, export_main,
};

/* Where the data goes: stdout, or FILE written as FILE.XXXXXX (a new
 * file of our own) and renamed at the end so that a failed export
 * leaves no half file. An existing FILE must be a regular file: a
 * device, a FIFO or a directory is never replaced. */
struct export_dest {
	const char *path;               /* NULL: stdout */
	char *tmp;
	FILE *f;
};

static int
export_cli_open(struct export_dest *d)
{
	struct assent_err err;
	int fd;

	struct stat st;

	d->f = stdout;
	if (d->path == NULL)
		return 0;
	if (lstat(d->path, &st) == 0 && !S_ISREG(st.st_mode)) {
		err_set(&err, EX_CANTCREAT, "%s: not a regular file: export "
		    "writes a new file (or replaces one)", d->path);
		return cli_fail(&err);
	}
	d->tmp = xasprintf("%s.XXXXXX", d->path);
	fd = mkstemp(d->tmp);           /* O_EXCL, mode 0600 */
	if (fd == -1 || (d->f = fdopen(fd, "w")) == NULL) {
		err_set(&err, EX_CANTCREAT, "%s: %s", d->tmp, strerror(errno));
		if (fd != -1) {
			close(fd);
			unlink(d->tmp);
		}
		return cli_fail(&err);
	}
	return 0;
}

/* Make the file durable and give it its name; on failure remove it. */
static int
export_cli_close(struct export_dest *d, int rc)
{
	struct assent_err err;
	int failed;

	if (d->path == NULL)
		return rc;
	failed = rc != 0;
	failed |= fflush(d->f) == EOF;
	failed |= fsync(fileno(d->f)) == -1;
	failed |= fclose(d->f) == EOF;
	if (!failed && rename(d->tmp, d->path) == -1) {
		err_set(&err, EX_CANTCREAT, "%s: %s", d->path, strerror(errno));
		rc = cli_fail(&err);
	} else if (failed && rc == 0) {
		err_set(&err, EX_IOERR, "%s: %s", d->tmp, strerror(errno));
		rc = cli_fail(&err);
	}
	if (rc != 0)
		unlink(d->tmp);
	return rc;
}

static void
export_cli_summary(struct cli *cli, const struct export_query *q,
    const struct export_counts *c, const char *path)
{
	json_t *o;

	/* With the data on stdout, only the text line (on stderr) fits. */
	if (!cli->json || path == NULL) {
		fprintf(stderr, "exported %lu subscriber%s of %s (%lu suppressed)\n",
		    c->rows, c->rows == 1 ? "" : "s", q->list, c->suppressed);
		return;
	}
	o = json_pack("{s:s, s:s, s:I, s:I, s:s}", "list", q->list, "status",
	    q->status, "rows", (json_int_t)c->rows, "suppressed",
	    (json_int_t)c->suppressed, "file", path);
	out_json(o);
	json_decref(o);
}

static int
export_cli_run(struct cli *cli, const struct export_query *q,
    struct export_dest *d)
{
	struct export_counts counts;
	struct suppress_ctx ctx;
	struct keys *keys = NULL;
	struct assent_err err;
	int rc;

	if ((rc = cli_suppress_ctx(cli, &keys, &ctx)) != 0)
		return rc;
	if ((rc = cli_db(cli, false)) == 0 && (rc = export_cli_open(d)) == 0) {
		if (export_run(cli->conn, &ctx, q, d->f, &counts, &err) == -1)
			rc = cli_fail(&err);
		rc = export_cli_close(d, rc);
		if (rc == 0)
			export_cli_summary(cli, q, &counts, d->path);
	}
	keys_free(keys);
	return rc;
}

static int
export_main(struct cli *cli, int argc, char **argv)
{
	struct export_query q = { .status = "confirmed", .format = EXPORT_CSV };
	struct audit_actor who;
	char host[256];
	struct export_dest d = { .path = NULL };
	struct assent_err err;
	const char *format = "csv";
	const struct cli_opt opts[] = {
		{ "list", &q.list, NULL }, { "status", &q.status, NULL },
		{ "format", &format, NULL }, { "out", &d.path, NULL },
		{ NULL, NULL, NULL },
	};
	char *args[1];
	int rc, n;

	if ((rc = cli_parse(cli, &export_cmd, "export", argc, argv, opts, args,
	    &n)) != 0)
		return rc < 0 ? 0 : rc;
	if (q.list == NULL)
		return cli_usage_error("export: --list NAME is required");
	if (d.path != NULL && d.path[0] == '\0')
		return cli_usage_error("export: --out needs a file name");
	if (export_check_status(q.status, &err) == -1 ||
	    export_parse_format(format, &q.format, &err) == -1)
		return cli_usage_error("%s", err.msg);
	audit_actor_local(&who, cli->operator_name, host, sizeof(host));
	q.who = &who;
	rc = export_cli_run(cli, &q, &d);
	free(d.tmp);
	return rc;
}

int
cmd_export(struct cli *cli, int argc, char **argv)
{
	/* cli_parse() skips argv[0]: hand it the word "export" again. */
	return export_main(cli, argc + 1, argv - 1);
}

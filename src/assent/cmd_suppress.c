/* assent suppress: add, rm, ls, check, import, export */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "assent/keys.h"
#include "assent/rights.h"
#include "assent/suppress.h"
#include "assent/text.h"
#include "assent/xmalloc.h"
#include "cli.h"

#define SUPPRESS_CLI_REJECTS_SHOWN 20
#define SUPPRESS_CLI_LS_LIMIT      "100"

static int suppress_cmd_add(struct cli *, int, char **);
static int suppress_cmd_rm(struct cli *, int, char **);
static int suppress_cmd_ls(struct cli *, int, char **);
static int suppress_cmd_check(struct cli *, int, char **);
static int suppress_cmd_import(struct cli *, int, char **);
static int suppress_cmd_export(struct cli *, int, char **);

static const struct cli_cmd suppress_cmds[] = {
	{ "add", "ADDRESS|@DOMAIN|HASH --reason R [--source TEXT] [--expires DATE] "
	  "[--hashed]",
	  "suppress an address, a whole domain or a keyed hash; --hashed keeps "
	  "only the address's hash", 1, 1, suppress_cmd_add },
	{ "rm", "ADDRESS|@DOMAIN|HASH|--id N --reason TEXT [--hashed] [--force]",
	  "remove an entry, recording who and why (complaints and erasures need "
	  "--force)", 0, 1, suppress_cmd_rm },
	{ "ls", "[--reason R] [--since DATE] [--limit N] [--after ID] [--all]",
	  "active entries, oldest first, a page at a time (--all: removed too)",
	  0, 0, suppress_cmd_ls },
	{ "check", "ADDRESS",
	  "is ADDRESS suppressed, and by which entry (exit 0 either way)",
	  1, 1, suppress_cmd_check },
	{ "import", "FILE|- --reason R [--hashed] [--source TEXT]",
	  "add one address, @domain or hash a line, in one transaction",
	  1, 1, suppress_cmd_import },
	{ "export", "[--hashed]",
	  "every active entry, one a line (--hashed: addresses as their hash)",
	  0, 0, suppress_cmd_export },
	{ NULL, NULL, NULL, 0, 0, NULL },
};

/* The entry as people read it: "address foo@example.com", "domain @x.org". */
static void
suppress_cli_entry_name(enum suppress_kind kind, const char *value, char *buf,
    size_t len)
{
	snprintf(buf, len, "%s %s%s", suppress_kind_name(kind),
	    kind == SUPPRESS_DOMAIN ? "@" : "", value);
}

/* --- add -------------------------------------------------------------------- */

static void
suppress_cli_print_add(struct cli *cli, const struct suppress_target *t,
    long long id, bool added, const char *reason)
{
	char name[ADDR_DOMAIN_MAX + 32];

	suppress_cli_entry_name(t->kind, t->value, name, sizeof(name));
	if (cli->json) {
		json_t *o = json_pack("{s:b, s:I, s:s, s:s}", "added", added,
		    "id", (json_int_t)id, "kind", suppress_kind_name(t->kind),
		    "value", t->value);
		out_json(o);
		json_decref(o);
	} else if (added) {
		printf("suppressed %s (%s): entry %lld\n", name, reason, id);
	} else {
		printf("%s is already suppressed by entry %lld; nothing changed\n",
		    name, id);
	}
}

static int
suppress_cmd_add(struct cli *cli, int argc, char **argv)
{
	struct suppress_new n = { .source = "cli" };
	struct suppress_target t;
	struct suppress_ctx ctx, *ctxp = NULL;
	struct keys *keys = NULL;
	struct assent_err err;
	bool hashed = false, added;
	const struct cli_opt opts[] = {
		{ "reason", &n.reason, NULL }, { "source", &n.source, NULL },
		{ "expires", &n.expires, NULL }, { "hashed", NULL, &hashed },
		{ NULL, NULL, NULL },
	};
	long long id;
	char *args[1];
	int rc, nargs;

	if ((rc = cli_parse(cli, &suppress_cmds[0], "suppress", argc, argv, opts,
	    args, &nargs)) != 0)
		return rc < 0 ? 0 : rc;
	if (n.reason == NULL)
		return cli_usage_error("suppress add: --reason R is required");
	if (suppress_reason_check(n.reason, &err) == -1)
		return cli_fail(&err);
	/* An erasure must not keep the plain address: store its hash. */
	if (strcmp(n.reason, "erasure") == 0)
		hashed = true;
	if (hashed && args[0][0] != '@') {
		if ((rc = cli_suppress_ctx(cli, &keys, &ctx)) != 0)
			return rc;
		ctxp = &ctx;
	}
	n.added_by = cli->operator_name;
	rc = 0;
	if (suppress_target_parse(ctxp, args[0], hashed, &t, &err) == -1 ||
	    (rc = cli_db(cli, false)) != 0 ||
	    suppress_add(cli->conn, &t, &n, &id, &added, &err) == -1)
		rc = rc != 0 ? rc : cli_fail(&err);
	else
		suppress_cli_print_add(cli, &t, id, added, n.reason);
	keys_free(keys);
	return rc;
}

/* --- rm --------------------------------------------------------------------- */

static int
suppress_cli_parse_id(const char *text, const char *what, long long *id_r)
{
	char *end;

	errno = 0;
	*id_r = strtoll(text, &end, 10);
	if (errno != 0 || end == text || *end != '\0' || *id_r < 0)
		return cli_usage_error("%s needs a number, not \"%s\"", what, text);
	return 0;
}

static int
suppress_cmd_rm(struct cli *cli, int argc, char **argv)
{
	struct suppress_removal r = { .force = false };
	struct suppress_target t, *tp = NULL;
	struct suppress_ctx ctx, *ctxp = NULL;
	struct keys *keys = NULL;
	struct assent_err err;
	const char *idtext = NULL;
	bool hashed = false;
	const struct cli_opt opts[] = {
		{ "reason", &r.reason, NULL }, { "id", &idtext, NULL },
		{ "hashed", NULL, &hashed }, { "force", NULL, &r.force },
		{ NULL, NULL, NULL },
	};
	long long id = 0, removed;
	struct audit_actor who;
	char *args[1], host[256];
	int rc, nargs;

	if ((rc = cli_parse(cli, &suppress_cmds[1], "suppress", argc, argv, opts,
	    args, &nargs)) != 0)
		return rc < 0 ? 0 : rc;
	if ((nargs == 1) == (idtext != NULL))
		return cli_usage_error("suppress rm: name the entry by its value or "
		    "by --id N, not both");
	if (r.reason == NULL)
		return cli_usage_error("suppress rm: --reason TEXT is required (why "
		    "the entry goes)");
	if (idtext != NULL && (rc = suppress_cli_parse_id(idtext, "--id", &id)) != 0)
		return rc;
	if (nargs == 1 && hashed && args[0][0] != '@') {
		if ((rc = cli_suppress_ctx(cli, &keys, &ctx)) != 0)
			return rc;
		ctxp = &ctx;
	}
	r.removed_by = cli->operator_name;
	if (nargs == 1 && suppress_target_parse(ctxp, args[0], hashed, &t, &err) == -1) {
		keys_free(keys);
		return cli_fail(&err);
	}
	keys_free(keys);
	if (nargs == 1)
		tp = &t;
	if ((rc = cli_db(cli, false)) != 0)
		return rc;
	/* The removal is an action on personal data: it is audited in the
	 * same transaction. */
	audit_actor_local(&who, cli->operator_name, host, sizeof(host));
	r.who = &who;
	if (suppress_remove(cli->conn, tp, id, &r, &removed, &err) == -1)
		return cli_fail(&err);
	if (cli->json) {
		json_t *o = json_pack("{s:I}", "removed", (json_int_t)removed);
		out_json(o);
		json_decref(o);
	} else {
		printf("removed entry %lld\n", removed);
	}
	return 0;
}

/* --- ls --------------------------------------------------------------------- */

static const struct out_col suppress_ls_cols[] = {
	{ "id", "ID" }, { "kind", "KIND" }, { "value", "VALUE" },
	{ "reason", "REASON" }, { "added_at", "ADDED (UTC)" },
	{ "added_by", "BY" }, { "expires_at", "EXPIRES" }, { "source", "SOURCE" },
	{ NULL, NULL },
};
static const struct out_col suppress_ls_all_cols[] = {
	{ "id", "ID" }, { "kind", "KIND" }, { "value", "VALUE" },
	{ "reason", "REASON" }, { "added_at", "ADDED (UTC)" },
	{ "added_by", "BY" }, { "expires_at", "EXPIRES" }, { "source", "SOURCE" },
	{ "removed_at", "REMOVED" }, { "removed_by", "REMOVED BY" },
	{ "removed_reason", "WHY" }, { NULL, NULL },
};

static int
suppress_cmd_ls(struct cli *cli, int argc, char **argv)
{
	struct suppress_query q = { .include_removed = false };
	const char *limit = SUPPRESS_CLI_LS_LIMIT, *after = "0";
	const struct cli_opt opts[] = {
		{ "reason", &q.reason, NULL }, { "since", &q.since, NULL },
		{ "limit", &limit, NULL }, { "after", &after, NULL },
		{ "all", NULL, &q.include_removed }, { NULL, NULL, NULL },
	};
	struct assent_err err;
	long long n;
	bool more;
	json_t *rows;
	char *args[1];
	int rc, nargs;

	if ((rc = cli_parse(cli, &suppress_cmds[2], "suppress", argc, argv, opts,
	    args, &nargs)) != 0)
		return rc < 0 ? 0 : rc;
	if ((rc = suppress_cli_parse_id(limit, "--limit", &n)) != 0)
		return rc;
	if (n < 1 || n > 100000)
		return cli_usage_error("--limit must be 1 to 100000");
	q.limit = (long)n;
	if ((rc = suppress_cli_parse_id(after, "--after", &q.after_id)) != 0 ||
	    (rc = cli_db(cli, false)) != 0)
		return rc;
	if (suppress_list(cli->conn, &q, &rows, &more, &err) == -1)
		return cli_fail(&err);
	if (cli->json) {
		out_json(rows);
	} else {
		out_table(rows, q.include_removed ? suppress_ls_all_cols : suppress_ls_cols);
		if (more)
			printf("(more entries: repeat with --after %lld)\n",
			    (long long)json_integer_value(json_object_get(
			    json_array_get(rows, json_array_size(rows) - 1), "id")));
	}
	json_decref(rows);
	return 0;
}

/* --- check ------------------------------------------------------------------ */

static void
suppress_cli_print_verdict(struct cli *cli, const struct addr *addr,
    const struct suppress_verdict *v)
{
	const struct suppress_entry *e = &v->entry;
	char name[ADDR_DOMAIN_MAX + 32], qby[TEXT_QUOTE_SIZE], qsrc[TEXT_QUOTE_SIZE];

	if (cli->json) {
		json_t *o = json_pack("{s:s, s:b, s:o}", "address", addr->address,
		    "suppressed", v->suppressed, "entry",
		    v->suppressed ? suppress_entry_json(e) : json_null());
		out_json(o);
		json_decref(o);
		return;
	}
	if (!v->suppressed) {
		printf("not suppressed: %s\n", addr->address);
		return;
	}
	suppress_cli_entry_name(e->kind, e->value, name, sizeof(name));
	printf("suppressed: %s (entry %lld, %s, added %s by %s, source \"%s\"%s%s)\n",
	    e->reason, e->id, name, e->added_at,
	    text_quote(e->added_by, strlen(e->added_by), qby, sizeof(qby)),
	    text_quote(e->source, strlen(e->source), qsrc, sizeof(qsrc)),
	    e->expires_at[0] != '\0' ? ", until " : "", e->expires_at);
}

static int
suppress_cmd_check(struct cli *cli, int argc, char **argv)
{
	struct suppress_verdict v;
	struct suppress_ctx ctx;
	struct assent_err err;
	struct keys *keys;
	struct addr addr;
	const char *key;
	char *args[1];
	int rc, nargs;

	if ((rc = cli_parse(cli, &suppress_cmds[3], "suppress", argc, argv, NULL,
	    args, &nargs)) != 0)
		return rc < 0 ? 0 : rc;
	if (addr_parse(args[0], &addr, &err) == -1)
		return cli_fail(&err);
	if ((rc = cli_suppress_ctx(cli, &keys, &ctx)) != 0)
		return rc;
	key = addr.key;
	if ((rc = cli_db(cli, false)) == 0) {
		if (suppress_gate(cli->conn, &ctx, &key, 1, &v, &err) == -1)
			rc = cli_fail(&err);
		else
			suppress_cli_print_verdict(cli, &addr, &v);
	}
	keys_free(keys);
	return rc;
}

/* --- import ----------------------------------------------------------------- */

struct suppress_cli_rejects {
	const char *file;
	unsigned long shown;
};

static void
suppress_cli_reject(unsigned long line, const char *why, void *arg)
{
	struct suppress_cli_rejects *r = arg;

	if (r->shown++ < SUPPRESS_CLI_REJECTS_SHOWN)
		fprintf(stderr, "%s:%lu: %s\n", r->file, line, why);
}

static void
suppress_cli_print_import(struct cli *cli, const char *file,
    const struct suppress_import_counts *c)
{
	if (cli->json) {
		json_t *o = json_pack("{s:s, s:I, s:I, s:I}", "file", file,
		    "added", (json_int_t)c->added, "already_present",
		    (json_int_t)c->present, "rejected", (json_int_t)c->rejected);
		out_json(o);
		json_decref(o);
		return;
	}
	if (c->rejected > SUPPRESS_CLI_REJECTS_SHOWN)
		fprintf(stderr, "%s: ... and %lu more rejected lines\n", file,
		    c->rejected - SUPPRESS_CLI_REJECTS_SHOWN);
	printf("%s: %lu added, %lu already present, %lu rejected\n", file,
	    c->added, c->present, c->rejected);
}

/* The import itself, once the file is open and the keys loaded. */
static int
suppress_cli_import_run(struct cli *cli, FILE *in, const char *name,
    struct suppress_import *im)
{
	struct suppress_cli_rejects rejects = { name, 0 };
	struct suppress_import_counts counts;
	struct assent_err err;
	int rc;

	im->on_reject = suppress_cli_reject;
	im->arg = &rejects;
	if ((rc = cli_db(cli, false)) != 0)
		return rc;
	if (suppress_import(cli->conn, in, im, &counts, &err) == -1) {
		err_prefix(&err, "%s: nothing imported", name);
		return cli_fail(&err);
	}
	suppress_cli_print_import(cli, name, &counts);
	return 0;
}

static int
suppress_cmd_import(struct cli *cli, int argc, char **argv)
{
	struct suppress_new n = { .source = NULL };
	struct suppress_import im = { .entry = &n };
	struct suppress_ctx ctx;
	struct keys *keys = NULL;
	struct assent_err err;
	const struct cli_opt opts[] = {
		{ "reason", &n.reason, NULL }, { "source", &n.source, NULL },
		{ "hashed", NULL, &im.hash_addresses }, { NULL, NULL, NULL },
	};
	char *args[1], *source = NULL;
	const char *name;
	FILE *in;
	int rc, nargs;

	if ((rc = cli_parse(cli, &suppress_cmds[4], "suppress", argc, argv, opts,
	    args, &nargs)) != 0)
		return rc < 0 ? 0 : rc;
	if (n.reason == NULL)
		return cli_usage_error("suppress import: --reason R is required");
	if (suppress_reason_check(n.reason, &err) == -1)
		return cli_fail(&err);
	name = strcmp(args[0], "-") == 0 ? "(stdin)" : args[0];
	if (n.source == NULL) {
		/* Record which file it came from, when the name is printable. */
		source = xasprintf("import %s", name);
		n.source = text_check_line(source, SUPPRESS_SOURCE_MAX, false, "source",
		    NULL) == 0 ? source : "import";
	}
	n.added_by = cli->operator_name;
	if (im.hash_addresses && (rc = cli_suppress_ctx(cli, &keys, &ctx)) != 0) {
		free(source);
		return rc;
	}
	im.ctx = im.hash_addresses ? &ctx : NULL;
	in = strcmp(args[0], "-") == 0 ? stdin : fopen(args[0], "r");
	if (in == NULL) {
		err_set(&err, EX_NOINPUT, "%s: %s", args[0], strerror(errno));
		rc = cli_fail(&err);
	} else {
		rc = suppress_cli_import_run(cli, in, name, &im);
		if (in != stdin)
			fclose(in);
	}
	keys_free(keys);
	free(source);
	return rc;
}

/* --- export ----------------------------------------------------------------- */

static int
suppress_cmd_export(struct cli *cli, int argc, char **argv)
{
	struct suppress_ctx ctx;
	struct keys *keys = NULL;
	struct assent_err err;
	bool hashed = false;
	const struct cli_opt opts[] = {
		{ "hashed", NULL, &hashed }, { NULL, NULL, NULL },
	};
	char *args[1];
	int rc, nargs;

	if ((rc = cli_parse(cli, &suppress_cmds[5], "suppress", argc, argv, opts,
	    args, &nargs)) != 0)
		return rc < 0 ? 0 : rc;
	if (hashed && (rc = cli_suppress_ctx(cli, &keys, &ctx)) != 0)
		return rc;
	if ((rc = cli_db(cli, false)) == 0 &&
	    suppress_export(cli->conn, stdout, hashed ? &ctx : NULL, hashed, NULL,
	    &err) == -1)
		rc = cli_fail(&err);
	keys_free(keys);
	return rc;
}

int
cmd_suppress(struct cli *cli, int argc, char **argv)
{
	return cli_dispatch(cli, "suppress", suppress_cmds, argc, argv);
}

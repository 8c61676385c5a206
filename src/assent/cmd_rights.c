/* assent sub export|rectify|unsubscribe|erase: the data subject's rights */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "assent/keys.h"
#include "assent/rights.h"
#include "assent/xmalloc.h"
#include "cli.h"

#define RIGHTS_CLI_ATTRS_MAX 64

/* Who acts, for the audit table: the Unix user and this machine. */
struct rights_cli_actor {
	struct audit_actor actor;
	char host[256];
};

static void
rights_cli_actor(struct cli *cli, struct rights_cli_actor *a)
{
	audit_actor_local(&a->actor, cli->operator_name, a->host, sizeof(a->host));
}

/* Print a summary as JSON, or nothing (the caller prints text). */
static bool
rights_cli_json(struct cli *cli, json_t *summary)
{
	if (!cli->json)
		return false;
	out_json(summary);
	return true;
}

/* "a, b, c" from an array of strings, in a fresh string. */
static char *
rights_cli_join(const json_t *names)
{
	size_t i, len = 1;
	json_t *v;
	char *s;

	json_array_foreach(names, i, v)
		len += strlen(json_string_value(v)) + 2;
	s = xcalloc(1, len);
	json_array_foreach(names, i, v) {
		if (i > 0)
			strcat(s, ", ");
		strcat(s, json_string_value(v));
	}
	return s;
}

/* --- export ---------------------------------------------------------------------- */

/* Create path for the export: new, mode 0600, never over a file. */
static int
rights_cli_create(const char *path, FILE **f_r)
{
	struct assent_err err;
	int fd;

	fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	if (fd == -1) {
		err_set(&err, EX_CANTCREAT, "%s: %s%s", path, strerror(errno),
		    errno == EEXIST ? " (an export never overwrites a file)" : "");
		return cli_fail(&err);
	}
	if ((*f_r = fdopen(fd, "w")) == NULL) {
		err_set(&err, EX_OSERR, "%s: %s", path, strerror(errno));
		close(fd);
		unlink(path);
		return cli_fail(&err);
	}
	return 0;
}

/* Write doc to f (and close it when it is a file). */
static int
rights_cli_write(const json_t *doc, FILE *f, const char *path)
{
	struct assent_err err;
	int failed;

	failed = json_dumpf(doc, f, JSON_INDENT(2) | JSON_PRESERVE_ORDER) == -1;
	failed |= fputc('\n', f) == EOF;
	failed |= fflush(f) == EOF;
	if (path != NULL) {
		failed |= fsync(fileno(f)) == -1;
		failed |= fclose(f) == EOF;
	}
	if (!failed)
		return 0;
	err_set(&err, EX_IOERR, "%s: %s", path != NULL ? path : "(stdout)",
	    strerror(errno));
	if (path != NULL)
		unlink(path);
	return cli_fail(&err);
}

static int
rights_cli_export_run(struct cli *cli, const char *email, const char *out,
    struct suppress_ctx *ctx)
{
	struct rights_cli_actor who;
	struct assent_err err;
	json_t *doc;
	FILE *f = stdout;
	int rc;

	rights_cli_actor(cli, &who);
	if ((rc = cli_db(cli, false)) != 0 ||
	    (out != NULL && (rc = rights_cli_create(out, &f)) != 0))
		return rc;
	if (rights_export(cli->conn, ctx, email, &who.actor, &doc, &err) == -1) {
		if (out != NULL) {
			fclose(f);
			unlink(out);
		}
		return cli_fail(&err);
	}
	rc = rights_cli_write(doc, f, out);
	if (rc == 0 && out != NULL && !cli->json)
		printf("wrote the export of %s to %s (mode 0600)\n",
		    json_string_value(json_object_get(json_object_get(doc, "profile"),
		    "email")), out);
	json_decref(doc);
	return rc;
}

int
sub_export(struct cli *cli, int argc, char **argv)
{
	const char *out = NULL;
	const struct cli_opt opts[] = {
		{ "out", &out, NULL }, { NULL, NULL, NULL },
	};
	struct suppress_ctx ctx;
	struct keys *keys;
	char *args[1];
	int rc, n;

	if ((rc = cli_parse(cli, sub_command("export"), "sub", argc, argv, opts,
	    args, &n)) != 0)
		return rc < 0 ? 0 : rc;
	if ((rc = cli_suppress_ctx(cli, &keys, &ctx)) != 0)
		return rc;
	rc = rights_cli_export_run(cli, args[0], out, &ctx);
	keys_free(keys);
	return rc;
}

/* --- rectify ------------------------------------------------------------------- */

/* Take every "--attr K=V" (or "--attr=K=V") out of argv, which cli_parse()
 * would keep only the last of. *argc_r and the returned array (the
 * caller frees it) hold the rest. */
static int
rights_cli_take_attrs(int argc, char **argv, struct rights_attr *attrs,
    size_t *nattrs_r, char ***rest_r, int *argc_r)
{
	char **rest = xcalloc((size_t)argc + 1, sizeof(*rest));
	bool only_args = false;
	char *kv, *eq;
	int n = 0;

	*nattrs_r = 0;
	for (int i = 0; i < argc; i++) {
		kv = NULL;
		only_args |= strcmp(argv[i], "--") == 0;
		if (!only_args && strncmp(argv[i], "--attr=", 7) == 0)
			kv = argv[i] + 7;
		else if (!only_args && strcmp(argv[i], "--attr") == 0 && i + 1 < argc)
			kv = argv[++i];
		else if (!only_args && strcmp(argv[i], "--attr") == 0)
			goto usage;
		if (kv == NULL) {
			rest[n++] = argv[i];
			continue;
		}
		if ((eq = strchr(kv, '=')) == NULL || *nattrs_r == RIGHTS_CLI_ATTRS_MAX)
			goto usage;
		*eq = '\0';
		attrs[*nattrs_r].key = kv;
		attrs[(*nattrs_r)++].value = eq + 1;
	}
	*rest_r = rest;
	*argc_r = n;
	return 0;
usage:
	free(rest);
	return cli_usage_error("sub rectify: --attr KEY=VALUE (an empty VALUE "
	    "removes KEY; at most %d)", RIGHTS_CLI_ATTRS_MAX);
}

static void
rights_cli_print_rectify(struct cli *cli, json_t *s)
{
	char *fields, *pending;

	if (rights_cli_json(cli, s))
		return;
	if (json_array_size(json_object_get(s, "changed")) == 0) {
		printf("%s: nothing changed (the values given are stored already)\n",
		    json_string_value(json_object_get(s, "email")));
		return;
	}
	fields = rights_cli_join(json_object_get(s, "changed"));
	printf("%s: rectified %s\n", json_string_value(json_object_get(s, "email")),
	    fields);
	if (json_array_size(json_object_get(s, "pending")) > 0) {
		pending = rights_cli_join(json_object_get(s, "pending"));
		printf("pending reconfirmation of the new address on: %s\n", pending);
		free(pending);
	}
	free(fields);
}

static int
rights_cli_rectify_run(struct cli *cli, struct rights_rectify *r)
{
	struct rights_cli_actor who;
	struct assent_err err;
	json_t *summary;
	int rc;

	if (r->reason == NULL)
		return cli_usage_error("sub rectify: --reason TEXT is required (why "
		    "the data is corrected)");
	if (r->name == NULL && r->nattrs == 0 && r->new_email == NULL)
		return cli_usage_error("sub rectify: give --name, --attr or --email");
	if ((rc = cli_db(cli, false)) != 0)
		return rc;
	rights_cli_actor(cli, &who);
	if (rights_rectify(cli->conn, r, &who.actor, &summary, &err) == -1)
		return cli_fail(&err);
	rights_cli_print_rectify(cli, summary);
	json_decref(summary);
	return 0;
}

int
sub_rectify(struct cli *cli, int argc, char **argv)
{
	struct rights_attr attrs[RIGHTS_CLI_ATTRS_MAX];
	struct rights_rectify r = { .attrs = attrs };
	const struct cli_opt opts[] = {
		{ "name", &r.name, NULL }, { "email", &r.new_email, NULL },
		{ "reason", &r.reason, NULL }, { NULL, NULL, NULL },
	};
	char *args[1], **rest = NULL;
	int rc, n, nrest = 0;

	if ((rc = rights_cli_take_attrs(argc, argv, attrs, &r.nattrs, &rest,
	    &nrest)) != 0)
		return rc;
	rc = cli_parse(cli, sub_command("rectify"), "sub", nrest, rest, opts, args, &n);
	if (rc == 0) {
		r.email = args[0];
		rc = rights_cli_rectify_run(cli, &r);
	}
	free(rest);
	return rc < 0 ? 0 : rc;
}

/* --- unsubscribe --------------------------------------------------------------- */

static void
rights_cli_print_unsubscribe(struct cli *cli, json_t *s, const char *list)
{
	const char *email = json_string_value(json_object_get(s, "email"));
	const json_t *entry = json_object_get(s, "suppression");
	char *names;

	if (rights_cli_json(cli, s))
		return;
	if (json_array_size(json_object_get(s, "ended")) > 0) {
		names = rights_cli_join(json_object_get(s, "ended"));
		printf("%s: unsubscribed from %s\n", email, names);
		free(names);
	} else if (list != NULL) {
		printf("%s: already unsubscribed from %s; nothing changed\n", email, list);
	} else {
		printf("%s: no subscription left to end\n", email);
	}
	if (json_is_integer(entry))
		printf("%s: suppressed (unsubscribe), entry %lld\n", email,
		    (long long)json_integer_value(entry));
}

int
sub_unsubscribe(struct cli *cli, int argc, char **argv)
{
	const char *list = NULL, *source = NULL;
	bool all = false;
	const struct cli_opt opts[] = {
		{ "list", &list, NULL }, { "all", NULL, &all },
		{ "source", &source, NULL }, { NULL, NULL, NULL },
	};
	struct ledger_evidence ev;
	struct assent_err err;
	json_t *summary;
	char *args[1];
	int rc, n;

	if ((rc = cli_parse(cli, sub_command("unsubscribe"), "sub", argc, argv, opts,
	    args, &n)) != 0)
		return rc < 0 ? 0 : rc;
	if ((list != NULL) == all)
		return cli_usage_error("sub unsubscribe: give --list NAME or --all "
		    "(exactly one)");
	if (source == NULL)
		return cli_usage_error("sub unsubscribe: --source TEXT is required "
		    "(how the person withdrew)");
	if ((rc = cli_db(cli, false)) != 0)
		return rc;
	cli_evidence(cli, &ev, source);
	if (rights_unsubscribe(cli->conn, args[0], list, &ev, &summary, &err) == -1)
		return cli_fail(&err);
	rights_cli_print_unsubscribe(cli, summary, list);
	json_decref(summary);
	return 0;
}

/* --- erase --------------------------------------------------------------------- */

static void
rights_cli_print_erase(struct cli *cli, json_t *s, const char *email)
{
	long long n;

	if (rights_cli_json(cli, s))
		return;
	/* The address as typed: the database no longer has it. */
	printf("erased %s (subscriber %s)\n", email,
	    json_string_value(json_object_get(s, "subscriber")));
	n = json_integer_value(json_object_get(s, "subscriptions"));
	printf("  %lld subscription%s closed with an erase event\n", n, n == 1 ? "" : "s");
	n = json_integer_value(json_object_get(s, "ledger_events_blanked"));
	printf("  %lld ledger event%s without personal fields now\n", n,
	    n == 1 ? "" : "s");
	n = json_integer_value(json_object_get(s, "suppressions_hashed"));
	printf("  %lld suppression entr%s holding the address turned into its hash\n",
	    n, n == 1 ? "y" : "ies");
	printf("  the address stays suppressed: entry %lld (erasure, keyed hash)\n",
	    (long long)json_integer_value(json_object_get(s, "suppression")));
}

int
sub_erase(struct cli *cli, int argc, char **argv)
{
	const char *reason = NULL;
	const struct cli_opt opts[] = {
		{ "reason", &reason, NULL }, { NULL, NULL, NULL },
	};
	struct rights_cli_actor who;
	struct suppress_ctx ctx;
	struct assent_err err;
	struct keys *keys;
	json_t *summary;
	char *args[1];
	int rc, n;

	if ((rc = cli_parse(cli, sub_command("erase"), "sub", argc, argv, opts,
	    args, &n)) != 0)
		return rc < 0 ? 0 : rc;
	if (reason == NULL)
		return cli_usage_error("sub erase: --reason TEXT is required (kept in "
		    "the audit table; it must not name the person)");
	if ((rc = cli_suppress_ctx(cli, &keys, &ctx)) != 0)
		return rc;
	rights_cli_actor(cli, &who);
	if ((rc = cli_db(cli, false)) == 0) {
		if (rights_erase(cli->conn, &ctx, args[0], reason, &who.actor, &summary,
		    &err) == -1) {
			rc = cli_fail(&err);
		} else {
			rights_cli_print_erase(cli, summary, args[0]);
			json_decref(summary);
		}
	}
	keys_free(keys);
	return rc;
}

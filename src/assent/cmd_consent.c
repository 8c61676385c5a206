/* assent consent-text: add, ls, show */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "assent/consent.h"
#include "assent/xmalloc.h"
#include "cli.h"

static int consent_add(struct cli *, int, char **);
static int consent_ls(struct cli *, int, char **);
static int consent_show(struct cli *, int, char **);

static const struct cli_cmd consent_cmds[] = {
	{ "add", "VERSION FILE [--effective TIME]",
	  "store the exact wording in FILE as VERSION (never edited afterwards)",
	  2, 2, consent_add },
	{ "ls", "", "every version with its SHA-256 and when it took effect",
	  0, 0, consent_ls },
	{ "show", "VERSION", "one version and its wording", 1, 1, consent_show },
	{ NULL, NULL, NULL, 0, 0, NULL },
};

static const struct out_col consent_cols[] = {
	{ "version", "VERSION" }, { "effective_at", "EFFECTIVE" },
	{ "used", "USED" }, { "created_by", "BY" }, { "sha256", "SHA-256" },
	{ NULL, NULL },
};

/* The whole file, up to one byte more than a text may hold. */
static char *
consent_read(const char *path, size_t *len_r, struct assent_err *err)
{
	size_t cap = CONSENT_TEXT_MAX + 2, len;
	char *buf;
	FILE *f;

	if ((f = fopen(path, "r")) == NULL) {
		err_set(err, EX_NOINPUT, "%s: %s", path, strerror(errno));
		return NULL;
	}
	buf = xmalloc(cap);
	len = fread(buf, 1, cap - 1, f);
	if (ferror(f)) {
		err_set(err, EX_IOERR, "%s: read error", path);
		free(buf);
		buf = NULL;
	} else {
		buf[len] = '\0';
		*len_r = len;
		if (memchr(buf, '\0', len) != NULL) {
			err_set(err, EX_DATAERR, "%s: holds a NUL byte", path);
			free(buf);
			buf = NULL;
		}
	}
	fclose(f);
	return buf;
}

static int
consent_add(struct cli *cli, int argc, char **argv)
{
	const char *effective = NULL;
	const struct cli_opt opts[] = {
		{ "effective", &effective, NULL }, { NULL, NULL, NULL },
	};
	struct assent_err err;
	char *args[2], *body, sha[65];
	size_t len;
	int rc, n;

	if ((rc = cli_parse(cli, &consent_cmds[0], "consent-text", argc, argv, opts,
	    args, &n)) != 0)
		return rc < 0 ? 0 : rc;
	if ((body = consent_read(args[1], &len, &err)) == NULL)
		return cli_fail(&err);
	if ((rc = cli_db(cli, false)) != 0) {
		free(body);
		return rc;
	}
	rc = consent_text_add(cli->conn, args[0], body, len, effective,
	    cli->operator_name, sha, &err);
	free(body);
	if (rc == -1)
		return cli_fail(&err);
	if (cli->json) {
		json_t *o = json_pack("{s:s, s:s}", "version", args[0], "sha256", sha);
		out_json(o);
		json_decref(o);
	} else {
		printf("stored consent text %s (sha256 %s)\n", args[0], sha);
	}
	return 0;
}

static int
consent_ls(struct cli *cli, int argc, char **argv)
{
	struct assent_err err;
	json_t *texts;
	char *args[1];
	int rc, n;

	if ((rc = cli_parse(cli, &consent_cmds[1], "consent-text", argc, argv, NULL,
	    args, &n)) != 0)
		return rc < 0 ? 0 : rc;
	if ((rc = cli_db(cli, false)) != 0)
		return rc;
	if (consent_text_all(cli->conn, &texts, &err) == -1)
		return cli_fail(&err);
	if (cli->json)
		out_json(texts);
	else
		out_table(texts, consent_cols);
	json_decref(texts);
	return 0;
}

static int
consent_show(struct cli *cli, int argc, char **argv)
{
	static const struct out_col fields[] = {
		{ "version", "version" }, { "sha256", "sha256" },
		{ "effective_at", "effective" }, { "created_at", "created" },
		{ "created_by", "by" }, { "used", "used" }, { NULL, NULL },
	};
	struct assent_err err;
	json_t *text;
	char *args[1];
	int rc, n;

	if ((rc = cli_parse(cli, &consent_cmds[2], "consent-text", argc, argv, NULL,
	    args, &n)) != 0)
		return rc < 0 ? 0 : rc;
	if ((rc = cli_db(cli, false)) != 0)
		return rc;
	if (consent_text_show(cli->conn, args[0], &text, &err) == -1)
		return cli_fail(&err);
	if (cli->json) {
		out_json(text);
	} else {
		out_fields(text, fields);
		printf("\n%s", json_string_value(json_object_get(text, "body")));
		if (json_string_length(json_object_get(text, "body")) > 0 &&
		    json_string_value(json_object_get(text, "body"))[
		    json_string_length(json_object_get(text, "body")) - 1] != '\n')
			printf("\n");
	}
	json_decref(text);
	return 0;
}

int
cmd_consent(struct cli *cli, int argc, char **argv)
{
	return cli_dispatch(cli, "consent-text", consent_cmds, argc, argv);
}

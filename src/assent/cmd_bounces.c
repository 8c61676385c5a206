/* assent bounces: what came back and what the relay refused (intake.h) */
#include <stdio.h>
#include <stdlib.h>

#include "assent/intake.h"
#include "cli.h"

static int bounces_ls(struct cli *, int, char **);

static const struct cli_cmd bounces_cmds[] = {
	{ "ls", "[--campaign NAME] [--class hard|soft|policy|complaint|none] "
	  "[--limit N]", "the newest bounces and complaints first, with what "
	  "was done about each", 0, 0, bounces_ls },
	{ NULL, NULL, NULL, 0, 0, NULL },
};

static const struct out_col bounces_cols[] = {
	{ "id", "ID" }, { "received_at", "RECEIVED" }, { "source", "SOURCE" },
	{ "class", "CLASS" }, { "status", "STATUS" }, { "campaign", "CAMPAIGN" },
	{ "recipient", "RECIPIENT" }, { "action", "ACTION" },
	{ "diagnostic", "DIAGNOSTIC" },
	{ NULL, NULL },
};

static int
bounces_ls(struct cli *cli, int argc, char **argv)
{
	struct intake_query q = { .limit = 100 };
	const char *limit = NULL;
	const struct cli_opt opts[] = {
		{ "campaign", &q.campaign, NULL }, { "class", &q.class, NULL },
		{ "limit", &limit, NULL }, { NULL, NULL, NULL },
	};
	struct assent_err err;
	json_t *rows;
	char *args[1], *end;
	int rc, n;

	if ((rc = cli_parse(cli, &bounces_cmds[0], "bounces", argc, argv, opts,
	    args, &n)) != 0)
		return rc < 0 ? 0 : rc;
	if (limit != NULL) {
		q.limit = strtol(limit, &end, 10);
		if (*limit == '\0' || *end != '\0' || q.limit < 1 || q.limit > 100000)
			return cli_usage_error("bounces ls: --limit takes 1 to 100000");
	}
	if ((rc = cli_db(cli, false)) != 0)
		return rc;
	if (intake_list(cli->conn, &q, &rows, &err) == -1)
		return cli_fail(&err);
	if (cli->json)
		out_json(rows);
	else
		out_table(rows, bounces_cols);
	json_decref(rows);
	return 0;
}

int
cmd_bounces(struct cli *cli, int argc, char **argv)
{
	return cli_dispatch(cli, "bounces", bounces_cmds, argc, argv);
}

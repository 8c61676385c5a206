/* assent list: create, edit, ls, show, rm */
#include <stdio.h>

#include "assent/db.h"
#include "assent/lists.h"
#include "cli.h"

static int list_create(struct cli *, int, char **);
static int list_edit(struct cli *, int, char **);
static int list_ls(struct cli *, int, char **);
static int list_show(struct cli *, int, char **);
static int list_rm(struct cli *, int, char **);

static const struct cli_cmd list_cmds[] = {
	{ "create", "NAME [--description TEXT] [--double-optin] "
	  "[--form-consent VERSION] [--form-attrs KEY,...]",
	  "create a list (single opt-in unless --double-optin)", 1, 1, list_create },
	{ "ls", "", "every list with its subscriber counts", 0, 0, list_ls },
	{ "show", "NAME", "one list and its counts by status", 1, 1, list_show },
	{ "rm", "NAME [--force] [--source TEXT]",
	  "remove a list; --force first unsubscribes its subscribers", 1, 1, list_rm },
	{ "edit", "NAME [--description TEXT] [--double-optin | --single-optin] "
	  "[--form-consent VERSION | --close-form] [--form-attrs KEY,...]",
	  "change a list; --form-consent opens its subscribe form (/s/NAME) "
	  "with that consent wording", 1, 1, list_edit },
	{ NULL, NULL, NULL, 0, 0, NULL },
};

static const struct out_col list_cols[] = {
	{ "name", "NAME" }, { "double_optin", "DOUBLE-OPTIN" },
	{ "pending", "PENDING" }, { "confirmed", "CONFIRMED" },
	{ "unsubscribed", "UNSUBSCRIBED" }, { "expired", "EXPIRED" },
	{ "description", "DESCRIPTION" },
	{ NULL, NULL },
};

static const struct out_col list_fields[] = {
	{ "name", "name" }, { "description", "description" },
	{ "double_optin", "double opt-in" },
	{ "form_consent", "form consent" }, { "form_attrs", "form attrs" },
	{ "created_at", "created" },
	{ "pending", "pending" }, { "confirmed", "confirmed" },
	{ "unsubscribed", "unsubscribed" },
	{ "expired", "expired" }, { NULL, NULL },
};

/* One list, as show and edit print it; list is consumed. */
static void
list_print(struct cli *cli, json_t *list)
{
	if (cli->json)
		out_json(list);
	else
		out_fields(list, list_fields);
	json_decref(list);
}

static int
list_create(struct cli *cli, int argc, char **argv)
{
	const char *description = "";
	bool double_optin = false;
	struct lists_change c = { .double_optin = -1 };
	const struct cli_opt opts[] = {
		{ "description", &description, NULL },
		{ "double-optin", NULL, &double_optin },
		{ "form-consent", &c.form_consent, NULL },
		{ "form-attrs", &c.form_attrs, NULL },
		{ NULL, NULL, NULL },
	};
	struct assent_err err;
	char *args[1];
	int rc, n;

	if ((rc = cli_parse(cli, &list_cmds[0], "list", argc, argv, opts, args, &n)) != 0)
		return rc < 0 ? 0 : rc;
	if ((rc = cli_db(cli, false)) != 0)
		return rc;
	if (db_begin(cli->conn, &err) == -1)
		return cli_fail(&err);
	if (lists_create(cli->conn, args[0], description, double_optin, &err) == -1 ||
	    ((c.form_consent != NULL || c.form_attrs != NULL) &&
	    lists_edit(cli->conn, args[0], &c, &err) == -1) ||
	    db_commit(cli->conn, &err) == -1) {
		db_rollback(cli->conn);
		return cli_fail(&err);
	}
	if (cli->json) {
		json_t *o = json_pack("{s:s, s:b}", "created", args[0],
		    "double_optin", double_optin);
		out_json(o);
		json_decref(o);
	} else {
		printf("created list %s (%s opt-in)\n", args[0],
		    double_optin ? "double" : "single");
	}
	return 0;
}

static int
list_edit(struct cli *cli, int argc, char **argv)
{
	struct lists_change c = { .double_optin = -1 };
	bool dbl = false, single = false, close = false;
	const struct cli_opt opts[] = {
		{ "description", &c.description, NULL },
		{ "double-optin", NULL, &dbl },
		{ "single-optin", NULL, &single },
		{ "form-consent", &c.form_consent, NULL },
		{ "close-form", NULL, &close },
		{ "form-attrs", &c.form_attrs, NULL },
		{ NULL, NULL, NULL },
	};
	struct assent_err err;
	json_t *list;
	char *args[1];
	int rc, n;

	if ((rc = cli_parse(cli, &list_cmds[4], "list", argc, argv, opts, args, &n)) != 0)
		return rc < 0 ? 0 : rc;
	if (dbl && single)
		return cli_usage_error("list edit: --double-optin or --single-optin, "
		    "not both");
	if (close && c.form_consent != NULL)
		return cli_usage_error("list edit: --form-consent or --close-form, "
		    "not both");
	if (c.form_consent != NULL && *c.form_consent == '\0')
		return cli_usage_error("list edit: --form-consent needs a version "
		    "(--close-form closes the form)");
	if (!dbl && !single && !close && c.description == NULL &&
	    c.form_consent == NULL && c.form_attrs == NULL)
		return cli_usage_error("list edit: nothing to change");
	c.double_optin = dbl ? 1 : single ? 0 : -1;
	if (close)
		c.form_consent = "";
	if ((rc = cli_db(cli, false)) != 0)
		return rc;
	if (lists_edit(cli->conn, args[0], &c, &err) == -1 ||
	    lists_show(cli->conn, args[0], &list, &err) == -1)
		return cli_fail(&err);
	list_print(cli, list);
	return 0;
}

static int
list_ls(struct cli *cli, int argc, char **argv)
{
	struct assent_err err;
	json_t *lists;
	char *args[1];
	int rc, n;

	if ((rc = cli_parse(cli, &list_cmds[1], "list", argc, argv, NULL, args, &n)) != 0)
		return rc < 0 ? 0 : rc;
	if ((rc = cli_db(cli, false)) != 0)
		return rc;
	if (lists_all(cli->conn, &lists, &err) == -1)
		return cli_fail(&err);
	if (cli->json)
		out_json(lists);
	else
		out_table(lists, list_cols);
	json_decref(lists);
	return 0;
}

static int
list_show(struct cli *cli, int argc, char **argv)
{
	struct assent_err err;
	json_t *list;
	char *args[1];
	int rc, n;

	if ((rc = cli_parse(cli, &list_cmds[2], "list", argc, argv, NULL, args, &n)) != 0)
		return rc < 0 ? 0 : rc;
	if ((rc = cli_db(cli, false)) != 0)
		return rc;
	if (lists_show(cli->conn, args[0], &list, &err) == -1)
		return cli_fail(&err);
	list_print(cli, list);
	return 0;
}

static int
list_rm(struct cli *cli, int argc, char **argv)
{
	const char *source = "list removed";
	bool force = false;
	const struct cli_opt opts[] = {
		{ "force", NULL, &force },
		{ "source", &source, NULL },
		{ NULL, NULL, NULL },
	};
	struct ledger_evidence ev;
	struct assent_err err;
	char *args[1];
	long ended;
	int rc, n;

	if ((rc = cli_parse(cli, &list_cmds[3], "list", argc, argv, opts, args, &n)) != 0)
		return rc < 0 ? 0 : rc;
	if ((rc = cli_db(cli, false)) != 0)
		return rc;
	cli_evidence(cli, &ev, source);
	if (lists_remove(cli->conn, args[0], force, &ev, &ended, &err) == -1)
		return cli_fail(&err);
	if (cli->json) {
		json_t *o = json_pack("{s:s, s:I}", "removed", args[0],
		    "unsubscribed", (json_int_t)ended);
		out_json(o);
		json_decref(o);
	} else {
		printf("removed list %s", args[0]);
		if (ended > 0)
			printf(" (%ld subscription%s ended, each with a ledger event)",
			    ended, ended == 1 ? "" : "s");
		printf("\n");
	}
	return 0;
}

int
cmd_list(struct cli *cli, int argc, char **argv)
{
	return cli_dispatch(cli, "list", list_cmds, argc, argv);
}

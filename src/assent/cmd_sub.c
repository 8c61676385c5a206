/* assent sub: add, confirm, show */
#include <stdio.h>
#include <unistd.h>
#include <string.h>

#include "assent/addr.h"
#include "assent/keys.h"
#include "assent/notice.h"
#include "assent/subs.h"
#include "cli.h"

static int sub_add(struct cli *, int, char **);
static int sub_confirm(struct cli *, int, char **);
static int sub_show(struct cli *, int, char **);

static const struct cli_cmd sub_cmds[] = {
	{ "add", "EMAIL --list NAME --source TEXT [--name TEXT] [--ip ADDR] "
	  "[--user-agent TEXT] [--consent-text VERSION] [--basis express|implied "
	  "--expires TIME] [--resubscribe]",
	  "subscribe EMAIL: confirmed on a single-opt-in list, pending on a "
	  "double-opt-in list", 1, 1, sub_add },
	{ "confirm", "EMAIL --list NAME --source TEXT [--ip ADDR] [--user-agent TEXT]",
	  "record a confirmation obtained elsewhere, with its evidence", 1, 1,
	  sub_confirm },
	{ "show", "EMAIL", "profile, subscriptions and full consent history",
	  1, 1, sub_show },
	{ "export", "EMAIL [--out FILE]", "everything held about the person, as one "
	  "JSON document (access, GDPR Art. 15 and 20)", 1, 1, sub_export },
	{ "rectify", "EMAIL [--name TEXT] [--attr KEY=VALUE]... [--email NEW] --reason TEXT",
	  "correct the person's data, recording the change (Art. 16)", 1, 1, sub_rectify },
	{ "unsubscribe", "EMAIL (--list NAME | --all) --source TEXT",
	  "record a withdrawal; --all also suppresses the address (Art. 21)", 1, 1,
	  sub_unsubscribe },
	{ "erase", "EMAIL --reason TEXT", "remove the person's data, keeping a keyed-hash "
	  "suppression entry (Art. 17)", 1, 1, sub_erase },
	{ NULL, NULL, NULL, 0, 0, NULL },
};

/* The options add and confirm share. */
struct sub_opts {
	const char *list, *source, *name, *ip, *user_agent, *consent_text;
	const char *basis, *expires;
	bool resubscribe;
};

static int
sub_parse(struct cli *cli, const struct cli_cmd *cmd, int argc, char **argv,
    struct sub_opts *o, char **email_r)
{
	const struct cli_opt opts[] = {
		{ "list", &o->list, NULL }, { "source", &o->source, NULL },
		{ "name", &o->name, NULL }, { "ip", &o->ip, NULL },
		{ "user-agent", &o->user_agent, NULL },
		{ "consent-text", &o->consent_text, NULL },
		{ "resubscribe", NULL, &o->resubscribe },
		{ "basis", &o->basis, NULL }, { "expires", &o->expires, NULL },
		{ NULL, NULL, NULL },
	};
	int rc, n;

	if ((rc = cli_parse(cli, cmd, "sub", argc, argv, opts, email_r, &n)) != 0)
		return rc;
	if (cmd->run == sub_confirm && (o->name != NULL || o->consent_text != NULL ||
	    o->resubscribe || o->basis != NULL || o->expires != NULL))
		return cli_usage_error("sub confirm takes --list, --source, --ip and "
		    "--user-agent only");
	if (o->list == NULL)
		return cli_usage_error("sub %s: --list NAME is required", cmd->name);
	if (o->source == NULL)
		return cli_usage_error("sub %s: --source TEXT is required (where and "
		    "how consent was given)", cmd->name);
	return 0;
}

static void
sub_request(struct cli *cli, const struct sub_opts *o, const char *email,
    struct ledger_evidence *ev, struct subs_request *req)
{
	cli_evidence(cli, ev, o->source);
	ev->ip = o->ip;
	ev->user_agent = o->user_agent;
	ev->consent_text_version = o->consent_text;
	req->email = email;
	req->list = o->list;
	req->name = o->name;
	req->channel = "cli";
	req->resubscribe = o->resubscribe;
	req->basis = o->basis;
	req->basis_expires_at = o->expires;
	req->evidence = ev;
	req->suppress = NULL;
}

static void
sub_print_change(struct cli *cli, const char *input, const char *list,
    const char *status, const char *text)
{
	struct addr addr;
	const char *email = input;

	/* Say what was stored: the normalised address (the domain as A-label). */
	if (addr_parse(input, &addr, NULL) == 0)
		email = addr.address;
	if (cli->json) {
		json_t *o = json_pack("{s:s, s:s, s:s}", "email", email, "list", list,
		    "status", status);
		out_json(o);
		json_decref(o);
	} else {
		printf("%s: %s %s (%s)\n", email, text, list, status);
	}
}

static int
sub_add(struct cli *cli, int argc, char **argv)
{
	struct sub_opts o = { 0 };
	struct keys *keys = NULL;
	struct suppress_ctx ctx;
	struct ledger_evidence ev;
	struct subs_request req;
	struct assent_err err;
	char *email, status[16], text[160];
	bool queued = false;
	int rc;

	if ((rc = sub_parse(cli, &sub_cmds[0], argc, argv, &o, &email)) != 0)
		return rc < 0 ? 0 : rc;
	if ((rc = cli_db(cli, false)) != 0)
		return rc;
	sub_request(cli, &o, email, &ev, &req);
	/* With the keys file, an erased address is recognised by its hash;
	 * without it, subs_add() refuses while any erasure is on record. */
	if (access(cli->conf->tokens_keys_file, F_OK) == 0) {
		if ((rc = cli_suppress_ctx(cli, &keys, &ctx)) != 0)
			return rc;
		req.suppress = &ctx;
	}
	rc = subs_add(cli->conn, &req, status, &queued, &err);
	keys_free(keys);
	if (rc == -1)
		return cli_fail(&err);
	if (status[0] != 'p')
		snprintf(text, sizeof(text), "subscribed to");
	else if (queued)
		snprintf(text, sizeof(text), "pending confirmation (a confirmation "
		    "request is queued) on");
	else
		snprintf(text, sizeof(text), "pending confirmation (NO confirmation "
		    "request queued: the address had %d in the last 24 hours) on",
		    NOTICE_PER_DAY);
	sub_print_change(cli, email, o.list, status, text);
	if (status[0] == 'p' && !queued)
		fprintf(stderr, "assent: note: no confirmation request was sent to "
		    "%s: %d went to it in the last 24 hours\n", email, NOTICE_PER_DAY);
	return 0;
}

static int
sub_confirm(struct cli *cli, int argc, char **argv)
{
	struct sub_opts o = { 0 };
	struct ledger_evidence ev;
	struct subs_request req;
	struct assent_err err;
	char *email;
	bool changed;
	int rc;

	if ((rc = sub_parse(cli, &sub_cmds[1], argc, argv, &o, &email)) != 0)
		return rc < 0 ? 0 : rc;
	if ((rc = cli_db(cli, false)) != 0)
		return rc;
	sub_request(cli, &o, email, &ev, &req);
	if (subs_confirm(cli->conn, &req, &changed, &err) == -1)
		return cli_fail(&err);
	sub_print_change(cli, email, o.list, "confirmed",
	    changed ? "confirmed on" : "was already confirmed on");
	return 0;
}

static const struct out_col sub_fields[] = {
	{ "email", "email" }, { "name", "name" }, { "created_at", "since" },
	{ "attrs", "attributes" }, { NULL, NULL },
};
static const struct out_col sub_subscription_cols[] = {
	{ "list", "LIST" }, { "status", "STATUS" }, { "since", "SINCE" },
	{ "basis", "BASIS" }, { "basis_expires_at", "EXPIRES" },
	{ "expired", "EXPIRED" }, { "list_removed", "LIST REMOVED" }, { NULL, NULL },
};
static const struct out_col sub_history_cols[] = {
	{ "at", "AT (UTC)" }, { "list", "LIST" }, { "action", "ACTION" },
	{ "channel", "CHANNEL" }, { "status_after", "STATUS" },
	{ "source", "SOURCE" }, { "operator", "OPERATOR" }, { "ip", "IP" },
	{ "user_agent", "USER AGENT" }, { "consent_text_version", "CONSENT TEXT" },
	{ "import_file", "IMPORT FILE" }, { "import_line", "LINE" },
	{ NULL, NULL },
};

static int
sub_show(struct cli *cli, int argc, char **argv)
{
	struct assent_err err;
	json_t *profile;
	char *email;
	int rc, n;

	if ((rc = cli_parse(cli, &sub_cmds[2], "sub", argc, argv, NULL, &email, &n)) != 0)
		return rc < 0 ? 0 : rc;
	if ((rc = cli_db(cli, false)) != 0)
		return rc;
	if (subs_show(cli->conn, email, &profile, &err) == -1)
		return cli_fail(&err);
	if (cli->json) {
		out_json(profile);
	} else {
		out_fields(profile, sub_fields);
		printf("\nsubscriptions:\n");
		out_table(json_object_get(profile, "subscriptions"), sub_subscription_cols);
		printf("\nconsent history:\n");
		out_table(json_object_get(profile, "history"), sub_history_cols);
	}
	json_decref(profile);
	return 0;
}

const struct cli_cmd *
sub_command(const char *name)
{
	for (const struct cli_cmd *c = sub_cmds; c->name != NULL; c++)
		if (strcmp(c->name, name) == 0)
			return c;
	return NULL;
}

int
cmd_sub(struct cli *cli, int argc, char **argv)
{
	return cli_dispatch(cli, "sub", sub_cmds, argc, argv);
}

/* assent inbound: one message to the bounce domain, on standard input,
 * as an MTA's pipe transport runs it (see inbound.h) */
#include <stdio.h>
#include <time.h>

#include "assent/inbound.h"
#include "assent/keys.h"
#include "assent/optout.h"
#include "assent/token.h"
#include "cli.h"

static const struct cli_cmd inbound_cmd = {
	"inbound", "[--recipient ADDR] < MESSAGE",
	"act on one message sent to the bounce domain: a mailto unsubscribe "
	"(u-TOKEN@...); exit 67 for a recipient that is not ours", 0, 0, NULL,
};

/* What was done, for the MTA's log and for people. */
static void
inbound_print(struct cli *cli, const char *recipient,
    const struct optout_result *r)
{
	const char *what = !r->changed ? "already unsubscribed" : "unsubscribed";

	if (cli->json) {
		json_t *o = json_pack("{s:s, s:s, s:s, s:b}", "recipient", recipient,
		    "action", "unsubscribe", "list", r->list_name, "changed",
		    r->changed);

		out_json(o);
		json_decref(o);
		return;
	}
	if (r->list_name[0] != '\0')
		printf("%s: %s from list %s\n", recipient, what, r->list_name);
	else
		printf("%s: %s\n", recipient, what);
}

static int
inbound_act(struct cli *cli, const char *recipient, const char *token)
{
	struct token_signer *signer = NULL;
	struct optout_result r;
	struct assent_err err;
	struct keys *keys;
	int rc;

	struct token_compact c;

	err_clear(&err);
	if (keys_load(cli->conf->tokens_keys_file, &keys, &err) == -1)
		return cli_fail(&err);
	/* a forged token costs no database connection */
	if (token_signer_new(keys, &signer, &err) == -1)
		rc = cli_fail(&err);
	else if (token_compact_verify(signer, token, TOKEN_UNSUBSCRIBE,
	    (int64_t)time(NULL), &c, &err) == -1) {
		err_set(&err, EX_NOUSER, "%.200s: no such recipient here", recipient);
		rc = cli_fail(&err);
	} else if ((rc = cli_db(cli, false)) == 0) {
		if (optout_mailto(cli->conn, signer, token, (int64_t)time(NULL), &r,
		    &err) == -1)
			rc = cli_fail(&err);
		else
			inbound_print(cli, recipient, &r);
	}
	token_signer_free(signer);
	keys_free(keys);
	return rc;
}

int
cmd_inbound(struct cli *cli, int argc, char **argv)
{
	const char *given = NULL;
	const struct cli_opt opts[] = {
		{ "recipient", &given, NULL }, { NULL, NULL, NULL },
	};
	char token[TOKEN_COMPACT_TEXT_SIZE];
	struct inbound_headers h;
	struct assent_err err;
	const char *recipient;
	char *args[1];
	int rc, n;

	/* cli_parse() expects the command's own name first */
	if ((rc = cli_parse(cli, &inbound_cmd, "assent", argc + 1, argv - 1, opts,
	    args, &n)) != 0)
		return rc < 0 ? 0 : rc;
	if ((rc = cli_conf(cli)) != 0)
		return rc;
	err_clear(&err);
	if (inbound_read_headers(stdin, &h, &err) == -1)
		return cli_fail(&err);
	recipient = inbound_recipient(given, &h);
	if (recipient[0] == '\0')
		return cli_usage_error("inbound: no recipient: give --recipient, or "
		    "a message with Delivered-To, X-Original-To or To");
	if (!inbound_token_of(recipient, "u-", cli->conf->sender_bounce_domain,
	    token)) {
		err_set(&err, EX_NOUSER, "%.200s: no such recipient here", recipient);
		return cli_fail(&err);
	}
	return inbound_act(cli, recipient, token);
}

/* assent ledger: verify the consent ledger's hash chain */
#include <stdio.h>

#include "assent/ledger.h"
#include "cli.h"

static int ledger_cmd_verify(struct cli *, int, char **);

static const struct cli_cmd ledger_cmds[] = {
	{ "verify", "[--json]",
	  "recompute every digest of the consent ledger; exit 0 when intact, "
	  "65 at the first broken link", 0, 0, ledger_cmd_verify },
	{ NULL, NULL, NULL, 0, 0, NULL },
};

static void
ledger_print_json(const struct ledger_verify_result *r)
{
	json_t *o = json_pack("{s:b, s:I, s:I, s:s}", "intact", r->problems == 0,
	    "events", (json_int_t)r->events, "subscribers",
	    (json_int_t)r->subscribers, "head", r->head);

	if (r->problems > 0) {
		json_object_set_new(o, "problems", json_integer(r->problems));
		json_object_set_new(o, "broken", json_pack("{s:I, s:I, s:I, s:s}",
		    "event", (json_int_t)r->event_id,
		    "subscriber", (json_int_t)r->subscriber_id,
		    "seq", (json_int_t)r->seq, "what", r->what));
	}
	out_json(o);
	json_decref(o);
}

static void
ledger_print_text(const struct ledger_verify_result *r)
{
	if (r->problems == 0) {
		printf("ledger intact: %lld event%s, head %s\n", r->events,
		    r->events == 1 ? "" : "s", r->head);
		return;
	}
	if (r->event_id != 0)
		printf("ledger broken at event %lld (subscriber %lld, seq %lld): %s\n",
		    r->event_id, r->subscriber_id, r->seq, r->what);
	else
		printf("ledger broken at subscriber %lld: %s\n", r->subscriber_id,
		    r->what);
	printf("%lld broken link%s among %lld events\n", r->problems,
	    r->problems == 1 ? "" : "s", r->events);
}

static int
ledger_cmd_verify(struct cli *cli, int argc, char **argv)
{
	struct ledger_verify_result r;
	struct assent_err err;
	char *args[1];
	int rc, n;

	if ((rc = cli_parse(cli, &ledger_cmds[0], "ledger", argc, argv, NULL,
	    args, &n)) != 0)
		return rc < 0 ? 0 : rc;
	if ((rc = cli_db(cli, false)) != 0)
		return rc;
	if (ledger_verify(cli->conn, &r, &err) == -1)
		return cli_fail(&err);
	if (cli->json)
		ledger_print_json(&r);
	else
		ledger_print_text(&r);
	return r.problems == 0 ? 0 : EX_DATAERR;
}

int
cmd_ledger(struct cli *cli, int argc, char **argv)
{
	return cli_dispatch(cli, "ledger", ledger_cmds, argc, argv);
}

/* assent campaign: create, ls, show, edit, preview, test, schedule, pause,
 * resume, cancel, status, report, resend-unknown */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "assent/addr.h"
#include "assent/buf.h"
#include "assent/campaign.h"
#include "assent/compose.h"
#include "assent/db.h"
#include "assent/keys.h"
#include "assent/testsend.h"
#include "assent/suppress.h"
#include "assent/text.h"
#include "assent/token.h"
#include "assent/xmalloc.h"
#include "cli.h"

#define CAMPAIGN_CLI_FILE_MAX (1024 * 1024)

static int campaign_cmd_create(struct cli *, int, char **);
static int campaign_cmd_ls(struct cli *, int, char **);
static int campaign_cmd_show(struct cli *, int, char **);
static int campaign_cmd_edit(struct cli *, int, char **);
static int campaign_cmd_preview(struct cli *, int, char **);
static int campaign_cmd_test(struct cli *, int, char **);
static int campaign_cmd_schedule(struct cli *, int, char **);
static int campaign_cmd_pause(struct cli *, int, char **);
static int campaign_cmd_resume(struct cli *, int, char **);
static int campaign_cmd_cancel(struct cli *, int, char **);
static int campaign_cmd_status(struct cli *, int, char **);
static int campaign_cmd_report(struct cli *, int, char **);
static int campaign_cmd_resend(struct cli *, int, char **);

enum {
	CMD_CREATE, CMD_LS, CMD_SHOW, CMD_EDIT, CMD_PREVIEW, CMD_TEST, CMD_SCHEDULE,
	CMD_PAUSE, CMD_RESUME, CMD_CANCEL, CMD_STATUS, CMD_REPORT, CMD_RESEND,
};

static const struct cli_cmd campaign_cmds[] = {
	[CMD_CREATE] = { "create", "NAME --list L [--list L2 ...] --subject TEXT "
	  "--from \"Name <addr>\" [--reply-to ADDR] --text FILE [--html FILE]",
	  "create a draft campaign from template files (--list a,b works too)",
	  1, 1, campaign_cmd_create },
	[CMD_LS] = { "ls", "", "every campaign, newest first, with its deliveries "
	  "by state", 0, 0, campaign_cmd_ls },
	[CMD_SHOW] = { "show", "NAME", "one campaign: its settings and templates",
	  1, 1, campaign_cmd_show },
	[CMD_EDIT] = { "edit", "NAME [--list L ...] [--subject TEXT] [--from FROM] "
	  "[--reply-to ADDR|\"\"] [--text FILE] [--html FILE|\"\"]",
	  "change a draft; an empty --reply-to or --html removes it",
	  1, 1, campaign_cmd_edit },
	[CMD_PREVIEW] = { "preview", "NAME --to EMAIL",
	  "print the exact message EMAIL would get (CRLF line ends)",
	  1, 1, campaign_cmd_preview },
	[CMD_TEST] = { "test", "NAME --to EMAIL [--to EMAIL2 ...]",
	  "send the campaign now to these addresses, through the suppression "
	  "gate; exit 65 if any was not sent", 1, 1, campaign_cmd_test },
	[CMD_SCHEDULE] = { "schedule", "NAME --at TIME|now [--force]",
	  "schedule a draft (TIME: ISO 8601 with a zone); --force sends a time "
	  "too far in the past anyway", 1, 1, campaign_cmd_schedule },
	[CMD_PAUSE] = { "pause", "NAME", "pause a scheduled or sending campaign",
	  1, 1, campaign_cmd_pause },
	[CMD_RESUME] = { "resume", "NAME", "carry on with a paused campaign",
	  1, 1, campaign_cmd_resume },
	[CMD_CANCEL] = { "cancel", "NAME", "stop a campaign for good",
	  1, 1, campaign_cmd_cancel },
	[CMD_STATUS] = { "status", "NAME",
	  "deliveries by state, the current rate and the estimated finish",
	  1, 1, campaign_cmd_status },
	[CMD_REPORT] = { "report", "NAME", "sent, suppressed (by reason), failed, "
	  "bounced, complained, unsubscribed", 1, 1, campaign_cmd_report },
	[CMD_RESEND] = { "resend-unknown", "NAME",
	  "queue again the deliveries whose outcome is unknown (their sender died "
	  "mid-send: they may have arrived)", 1, 1, campaign_cmd_resend },
	{ NULL, NULL, NULL, 0, 0, NULL },
};

/* --- options given more than once ----------------------------------------- */

/* Every value of --name in argv (as cli_parse() reads argv: values of
 * other options skipped, nothing after "--"), each split at commas,
 * into a fresh array of pointers into a fresh copy (*store_r: free both). */
static size_t
campaign_cli_all(int argc, char **argv, const struct cli_opt *opts,
    const char *name, const char ***values_r, char **store_r)
{
	size_t n = 0, len = strlen(name), total = 0;
	const char **values;
	char *store, *p, *tok, *save;

	for (int i = 1; i < argc; i++)
		total += strlen(argv[i]) + 1;
	store = p = xmalloc(total + 1);
	values = xcalloc(total + 1, sizeof(*values));
	for (int i = 1; i < argc && strcmp(argv[i], "--") != 0; i++) {
		const char *a = argv[i], *v = NULL;
		const struct cli_opt *o;

		if (strncmp(a, "--", 2) != 0)
			continue;
		a += 2;
		for (o = opts; o->name != NULL; o++)
			if (strncmp(a, o->name, strlen(o->name)) == 0 &&
			    (a[strlen(o->name)] == '\0' || a[strlen(o->name)] == '='))
				break;
		if (o->name == NULL || o->value == NULL)
			continue;
		if (a[strlen(o->name)] == '=')
			v = a + strlen(o->name) + 1;
		else if (i + 1 < argc)
			v = argv[++i];
		if (v == NULL || strlen(o->name) != len || strcmp(o->name, name) != 0)
			continue;
		strcpy(p, v);
		for (tok = strtok_r(p, ",", &save); tok != NULL;
		    tok = strtok_r(NULL, ",", &save))
			values[n++] = tok;
		p += strlen(v) + 1;
	}
	*values_r = values;
	*store_r = store;
	return n;
}

/* --- template files -------------------------------------------------------- */

/* A template file: at most 1 MB of UTF-8 (text_read_file()). */
static int
campaign_cli_read(const char *path, char **text_r, struct assent_err *err)
{
	return text_read_file(path, CAMPAIGN_CLI_FILE_MAX, text_r, err);
}

/* What create and edit read from the command line. */
struct campaign_cli_input {
	const char *subject, *from, *reply_to, *text_file, *html_file, *list;
	const char **lists;
	size_t nlists;
	char *list_store;
	char *text, *html;
};

static void
campaign_cli_input_free(struct campaign_cli_input *in)
{
	free(in->lists);
	free(in->list_store);
	free(in->text);
	free(in->html);
}

/* Read the files named; an empty --html stays "" (no HTML part). */
static int
campaign_cli_read_files(struct campaign_cli_input *in, struct assent_err *err)
{
	if (in->text_file != NULL &&
	    campaign_cli_read(in->text_file, &in->text, err) == -1)
		return -1;
	if (in->html_file != NULL && in->html_file[0] == '\0')
		in->html = xstrdup("");
	else if (in->html_file != NULL &&
	    campaign_cli_read(in->html_file, &in->html, err) == -1)
		return -1;
	return 0;
}

/* "text body: template line..." becomes "FILE: template line...". */
static void
campaign_cli_name_file(struct assent_err *err, const struct campaign_cli_input *in)
{
	const char *parts[] = { "text body: ", "HTML body: " };
	const char *files[] = { in->text_file, in->html_file };
	char rest[ASSENT_ERR_MSG_MAX], q[TEXT_QUOTE_SIZE];

	for (size_t i = 0; i < 2; i++) {
		if (files[i] == NULL ||
		    strncmp(err->msg, parts[i], strlen(parts[i])) != 0)
			continue;
		snprintf(rest, sizeof(rest), "%s", err->msg + strlen(parts[i]));
		err_set(err, err->code, "%s: %s",
		    text_quote(files[i], strlen(files[i]), q, sizeof(q)), rest);
		return;
	}
}

static void
campaign_cli_content(const struct campaign_cli_input *in,
    struct campaign_content *c)
{
	memset(c, 0, sizeof(*c));
	c->lists = in->lists;
	c->nlists = in->nlists;
	c->subject = in->subject;
	c->from = in->from;
	c->reply_to = in->reply_to;
	c->text = in->text;
	c->html = in->html;
}

/* Parse create's or edit's command line into in. */
static int
campaign_cli_parse_content(struct cli *cli, int cmd, int argc, char **argv,
    struct campaign_cli_input *in, char **args)
{
	const struct cli_opt opts[] = {
		{ "list", &in->list, NULL }, { "subject", &in->subject, NULL },
		{ "from", &in->from, NULL }, { "reply-to", &in->reply_to, NULL },
		{ "text", &in->text_file, NULL }, { "html", &in->html_file, NULL },
		{ NULL, NULL, NULL },
	};
	int rc, nargs;

	memset(in, 0, sizeof(*in));
	if ((rc = cli_parse(cli, &campaign_cmds[cmd], "campaign", argc, argv, opts,
	    args, &nargs)) != 0)
		return rc;
	in->nlists = campaign_cli_all(argc, argv, opts, "list", &in->lists,
	    &in->list_store);
	if (in->list != NULL && in->nlists == 0)
		return cli_usage_error("campaign %s: --list needs a list name",
		    campaign_cmds[cmd].name);
	return 0;
}

/* --- create, edit ------------------------------------------------------------ */

static int
campaign_cmd_create(struct cli *cli, int argc, char **argv)
{
	struct campaign_cli_input in;
	struct campaign_content c;
	struct assent_err err;
	long long id;
	char *args[1];
	int rc;

	if ((rc = campaign_cli_parse_content(cli, CMD_CREATE, argc, argv, &in,
	    args)) != 0) {
		campaign_cli_input_free(&in);
		return rc < 0 ? 0 : rc;
	}
	if (in.nlists == 0 || in.subject == NULL || in.from == NULL ||
	    in.text_file == NULL)
		rc = cli_usage_error("campaign create: --list, --subject, --from and "
		    "--text are required");
	else if (campaign_cli_read_files(&in, &err) == -1)
		rc = cli_fail(&err);
	else if ((rc = cli_db(cli, false)) == 0) {
		campaign_cli_content(&in, &c);
		if (campaign_create(cli->conn, args[0], &c, cli->operator_name, &id,
		    &err) == -1) {
			campaign_cli_name_file(&err, &in);
			rc = cli_fail(&err);
		} else if (cli->json) {
			json_t *o = json_pack("{s:s, s:I, s:s}", "created", args[0],
			    "id", (json_int_t)id, "state", "draft");
			out_json(o);
			json_decref(o);
		} else {
			printf("created campaign %s (draft, id %lld)\n", args[0], id);
		}
	}
	campaign_cli_input_free(&in);
	return rc;
}

static int
campaign_cmd_edit(struct cli *cli, int argc, char **argv)
{
	struct campaign_cli_input in;
	struct campaign_content c;
	struct assent_err err;
	char *args[1];
	int rc;

	if ((rc = campaign_cli_parse_content(cli, CMD_EDIT, argc, argv, &in,
	    args)) != 0) {
		campaign_cli_input_free(&in);
		return rc < 0 ? 0 : rc;
	}
	if (in.nlists == 0 && in.subject == NULL && in.from == NULL &&
	    in.reply_to == NULL && in.text_file == NULL && in.html_file == NULL)
		rc = cli_usage_error("campaign edit: nothing to change (give --list, "
		    "--subject, --from, --reply-to, --text or --html)");
	else if (campaign_cli_read_files(&in, &err) == -1)
		rc = cli_fail(&err);
	else if ((rc = cli_db(cli, false)) == 0) {
		campaign_cli_content(&in, &c);
		if (campaign_edit(cli->conn, args[0], &c, &err) == -1) {
			campaign_cli_name_file(&err, &in);
			rc = cli_fail(&err);
		} else if (cli->json) {
			json_t *o = json_pack("{s:s}", "edited", args[0]);
			out_json(o);
			json_decref(o);
		} else {
			printf("campaign %s changed\n", args[0]);
		}
	}
	campaign_cli_input_free(&in);
	return rc;
}

/* --- ls, show ------------------------------------------------------------------ */

static const struct out_col campaign_ls_cols[] = {
	{ "name", "NAME" }, { "state", "STATE" }, { "lists", "LISTS" },
	{ "scheduled_at", "SCHEDULED (UTC)" }, { "total", "TOTAL" },
	{ "queued", "QUEUED" }, { "sent", "SENT" }, { "suppressed", "SUPPRESSED" },
	{ "failed", "FAILED" }, { "unknown", "UNKNOWN" }, { "subject", "SUBJECT" },
	{ NULL, NULL },
};

/* A JSON array of names as "a, b" for a table. */
static void
campaign_cli_join_lists(json_t *obj)
{
	json_t *lists = json_object_get(obj, "lists"), *v;
	struct buf b;
	size_t i;

	if (!json_is_array(lists))
		return;
	buf_init(&b);
	buf_add_str(&b, "");
	json_array_foreach(lists, i, v) {
		if (i > 0)
			buf_add_str(&b, ", ");
		buf_add_str(&b, json_string_value(v));
	}
	json_object_set_new(obj, "lists", json_string(b.data));
	buf_free(&b);
}

#define CAMPAIGN_CLI_OVERDUE_NOTE \
	"too old to start: its time is more than sending.max_schedule_age in " \
	"the past; reschedule it, or use schedule --force to send it anyway"

/* A note on each row (null, or why a scheduled campaign waits); in a
 * table the state says it. */
static void
campaign_cli_note_overdue(struct cli *cli, json_t *rows, const json_t *overdue)
{
	const char *name;
	json_t *row, *o;
	size_t i, k;
	bool late;

	json_array_foreach(rows, i, row) {
		name = json_string_value(json_object_get(row, "name"));
		late = false;
		json_array_foreach(overdue, k, o)
			if (name != NULL && strcmp(name, json_string_value(
			    json_object_get(o, "name"))) == 0)
				late = true;
		json_object_set_new(row, "note", late ?
		    json_string(CAMPAIGN_CLI_OVERDUE_NOTE) : json_null());
		if (late && !cli->json)
			json_object_set_new(row, "state",
			    json_string("scheduled (too old: use schedule --force)"));
	}
}

static int
campaign_cmd_ls(struct cli *cli, int argc, char **argv)
{
	struct assent_err err;
	json_t *rows = NULL, *overdue = NULL, *row;
	char *args[1];
	size_t i;
	int rc, n;

	if ((rc = cli_parse(cli, &campaign_cmds[CMD_LS], "campaign", argc, argv, NULL,
	    args, &n)) != 0)
		return rc < 0 ? 0 : rc;
	if ((rc = cli_db(cli, false)) != 0)
		return rc;
	if (campaign_list(cli->conn, &rows, &err) == -1 ||
	    campaign_overdue(cli->conn, cli->conf->sending_max_schedule_age,
	    &overdue, &err) == -1) {
		json_decref(rows);
		return cli_fail(&err);
	}
	campaign_cli_note_overdue(cli, rows, overdue);
	if (cli->json) {
		out_json(rows);
	} else {
		json_array_foreach(rows, i, row)
			campaign_cli_join_lists(row);
		out_table(rows, campaign_ls_cols);
	}
	json_decref(overdue);
	json_decref(rows);
	return 0;
}

static const struct out_col campaign_show_fields[] = {
	{ "name", "name" }, { "state", "state" }, { "lists", "lists" },
	{ "subject", "subject" }, { "from", "from" }, { "reply_to", "reply-to" },
	{ "scheduled_at", "scheduled" }, { "force_start", "forced" },
	{ "started_at", "started" }, { "finished_at", "finished" },
	{ NULL, NULL },
};

/* A template as people read it: line breaks and tabs kept, every other
 * control character shown as \xHH. */
static void
campaign_cli_print_body(const char *title, const char *body)
{
	printf("\n--- %s ---\n", title);
	for (const char *p = body; *p != '\0'; p++) {
		unsigned char c = (unsigned char)*p;

		if ((c < 0x20 && c != '\n' && c != '\t') || c == 0x7f)
			printf("\\x%02x", c);
		else
			putchar(c);
	}
	if (body[0] != '\0' && body[strlen(body) - 1] != '\n')
		putchar('\n');
}

static int
campaign_cmd_show(struct cli *cli, int argc, char **argv)
{
	struct assent_err err;
	struct campaign *c;
	json_t *o;
	char *args[1], *from;
	int rc, n;

	if ((rc = cli_parse(cli, &campaign_cmds[CMD_SHOW], "campaign", argc, argv,
	    NULL, args, &n)) != 0)
		return rc < 0 ? 0 : rc;
	if ((rc = cli_db(cli, false)) != 0)
		return rc;
	if (campaign_load(cli->conn, args[0], &c, &err) == -1)
		return cli_fail(&err);
	o = campaign_json(c);
	if (cli->json) {
		out_json(o);
	} else {
		campaign_cli_join_lists(o);
		from = c->from_name[0] != '\0' ? xasprintf("%s <%s>", c->from_name,
		    c->from_address) : xstrdup(c->from_address);
		json_object_set_new(o, "from", json_string(from));
		free(from);
		out_fields(o, campaign_show_fields);
		campaign_cli_print_body("text body", c->body_text);
		if (c->body_html != NULL)
			campaign_cli_print_body("HTML body", c->body_html);
	}
	json_decref(o);
	campaign_free(c);
	return 0;
}

/* --- preview, test ------------------------------------------------------------- */

/* The keys file as a signer (and, when keys_r is not NULL, the keys). */
static int
campaign_cli_signer(struct cli *cli, struct token_signer **signer_r)
{
	struct assent_err err;
	struct keys *keys;
	int rc;

	*signer_r = NULL;
	if ((rc = cli_conf(cli)) != 0)
		return rc;
	if (keys_load(cli->conf->tokens_keys_file, &keys, &err) == -1)
		return cli_fail(&err);
	rc = token_signer_new(keys, signer_r, &err);
	keys_free(keys);
	return rc == -1 ? cli_fail(&err) : 0;
}

/* What the database holds about a recipient of a preview. */
struct campaign_cli_person {
	char *email, *name;
	json_t *attrs;
};

static void
campaign_cli_person_free(struct campaign_cli_person *p)
{
	free(p->email);
	free(p->name);
	json_decref(p->attrs);
}

/* The recipient as the campaign would have it: a subscriber's data (p
 * holds it), or an address alone. */
static int
campaign_cli_recipient(PGconn *conn, const struct campaign *c,
    const struct addr *addr, struct compose_recipient *r,
    struct campaign_cli_person *p, struct assent_err *err)
{
	char cid[24];
	const char *params[] = { addr->key, cid };
	PGresult *res;

	memset(r, 0, sizeof(*r));
	memset(p, 0, sizeof(*p));
	r->email = addr->address;
	r->list_id = c->nlists > 0 ? (uint64_t)c->lists[0].id : 0;
	snprintf(cid, sizeof(cid), "%lld", c->id);
	if (db_exec(conn, &res, err, "SELECT s.id, s.email, s.name, s.attrs::text,"
	    " (SELECT min(ss.list_id) FROM subscriptions ss JOIN campaign_lists cl"
	    "  ON cl.list_id = ss.list_id AND cl.campaign_id = $2"
	    "  WHERE ss.subscriber_id = s.id AND ss.status <> 'unsubscribed')"
	    " FROM subscribers s WHERE s.email_key = $1", 2, params) == -1)
		return -1;
	if (PQntuples(res) == 1) {
		r->subscriber_id = strtoull(PQgetvalue(res, 0, 0), NULL, 10);
		r->email = p->email = xstrdup(PQgetvalue(res, 0, 1));
		r->name = p->name = xstrdup(PQgetvalue(res, 0, 2));
		r->attrs = p->attrs = json_loads(PQgetvalue(res, 0, 3), 0, NULL);
		if (!PQgetisnull(res, 0, 4))
			r->list_id = strtoull(PQgetvalue(res, 0, 4), NULL, 10);
	}
	PQclear(res);
	return 0;
}

static void
campaign_cli_print_preview(struct cli *cli, const struct buf *msg,
    const char *envelope)
{
	json_t *o;

	if (!cli->json) {
		fwrite(msg->data, 1, msg->len, stdout);
		return;
	}
	o = json_object();
	json_object_set_new(o, "envelope_from", json_string(envelope));
	json_object_set_new(o, "message", json_stringn(msg->data, msg->len));
	out_json(o);
	json_decref(o);
}

/* Compose c's message for addr and print it. */
static int
campaign_cli_preview_run(struct cli *cli, struct campaign *c,
    const struct addr *addr, struct token_signer *signer)
{
	char envelope[COMPOSE_ENVELOPE_MAX];
	struct campaign_cli_person person;
	struct compose_recipient r;
	struct compose *cp = NULL;
	struct assent_err err;
	struct buf msg;
	int rc = 0;

	buf_init(&msg);
	if (campaign_cli_recipient(cli->conn, c, addr, &r, &person, &err) == -1 ||
	    compose_new(c, cli->conf, signer, &cp, &err) == -1 ||
	    compose_message(cp, &r, time(NULL), &msg, envelope, &err) == -1)
		rc = cli_fail(&err);
	else
		campaign_cli_print_preview(cli, &msg, envelope);
	compose_free(cp);
	buf_free(&msg);
	campaign_cli_person_free(&person);
	return rc;
}

static int
campaign_cmd_preview(struct cli *cli, int argc, char **argv)
{
	const char *to = NULL;
	const struct cli_opt opts[] = {
		{ "to", &to, NULL }, { NULL, NULL, NULL },
	};
	struct token_signer *signer;
	struct assent_err err;
	struct campaign *c;
	struct addr addr;
	char *args[1];
	int rc, n;

	if ((rc = cli_parse(cli, &campaign_cmds[CMD_PREVIEW], "campaign", argc, argv,
	    opts, args, &n)) != 0)
		return rc < 0 ? 0 : rc;
	if (to == NULL)
		return cli_usage_error("campaign preview: --to EMAIL is required");
	if (addr_parse(to, &addr, &err) == -1)
		return cli_fail(&err);
	if ((rc = cli_db(cli, false)) != 0)
		return rc;
	if (campaign_load(cli->conn, args[0], &c, &err) == -1)
		return cli_fail(&err);
	if ((rc = campaign_cli_signer(cli, &signer)) == 0)
		rc = campaign_cli_preview_run(cli, c, &addr, signer);
	token_signer_free(signer);
	campaign_free(c);
	return rc;
}

/* A test send that did not go, in words: the transport's outcome names
 * ("not-tried", "uncertain") are for programs (--json keeps them). */
static void
campaign_cli_print_unsent(const char *address, const char *detail,
    bool relay_down)
{
	if (strcmp(detail, "not-tried") == 0 && relay_down)
		printf("%s: not sent (relay unreachable)\n", address);
	else if (strcmp(detail, "not-tried") == 0)
		printf("%s: not sent (the relay session ended before it)\n", address);
	else if (strcmp(detail, "uncertain") == 0)
		printf("%s: outcome unknown (the connection broke after the relay "
		    "took the recipient: it may have arrived)\n", address);
	else
		printf("%s: failed: %s\n", address, detail);
}

/* One line per address; *all_sent_r false when any was not sent.
 * relay_down: the relay could not be used at all (the error follows). */
static void
campaign_cli_print_tests(struct cli *cli, const json_t *results, bool relay_down,
    bool *all_sent_r)
{
	const char *outcome, *address;
	json_t *r, *detail;
	char *text;
	size_t i;

	*all_sent_r = true;
	json_array_foreach(results, i, r) {
		outcome = json_string_value(json_object_get(r, "outcome"));
		if (outcome == NULL || strcmp(outcome, "sent") != 0)
			*all_sent_r = false;
	}
	if (cli->json) {
		out_json(results);
		return;
	}
	json_array_foreach(results, i, r) {
		address = json_string_value(json_object_get(r, "address"));
		outcome = json_string_value(json_object_get(r, "outcome"));
		detail = json_object_get(r, "detail");
		if (json_is_object(detail))
			text = xasprintf("%s, entry %lld",
			    json_string_value(json_object_get(detail, "reason")),
			    (long long)json_integer_value(json_object_get(detail, "id")));
		else
			text = out_cell(detail);
		if (outcome != NULL && strcmp(outcome, "sent") == 0)
			printf("%s: sent\n", address);
		else if (outcome != NULL && strcmp(outcome, "suppressed") == 0)
			printf("%s: suppressed (%s)\n", address, text);
		else
			campaign_cli_print_unsent(address, text, relay_down);
		free(text);
	}
}

/* Send, with the gate's context and a signer from the same keys. */
static int
campaign_cli_test_run(struct cli *cli, const char *name, const char **to,
    size_t nto)
{
	struct token_signer *signer = NULL;
	struct suppress_ctx ctx;
	struct keys *keys = NULL;
	struct assent_err err;
	json_t *results = NULL;
	bool all_sent;
	int rc;

	if ((rc = cli_suppress_ctx(cli, &keys, &ctx)) != 0)
		return rc;
	if (token_signer_new(keys, &signer, &err) == -1) {
		keys_free(keys);
		return cli_fail(&err);
	}
	if ((rc = cli_db(cli, false)) == 0) {
		if (testsend_run(cli->conn, cli->conf, &ctx, signer, name, to, nto,
		    cli->operator_name, &results, &err) == -1) {
			/* Results with a failure: the relay could not be reached
			 * (EX_UNAVAILABLE); a database failure comes before any
			 * result. */
			if (results != NULL)
				campaign_cli_print_tests(cli, results, true, &all_sent);
			rc = cli_fail(&err);
		} else {
			campaign_cli_print_tests(cli, results, false, &all_sent);
			rc = all_sent ? 0 : EX_DATAERR;
		}
	}
	json_decref(results);
	token_signer_free(signer);
	keys_free(keys);
	return rc;
}

static int
campaign_cmd_test(struct cli *cli, int argc, char **argv)
{
	const char *to = NULL, **all;
	const struct cli_opt opts[] = {
		{ "to", &to, NULL }, { NULL, NULL, NULL },
	};
	char *args[1], *store;
	size_t nto;
	int rc, n;

	if ((rc = cli_parse(cli, &campaign_cmds[CMD_TEST], "campaign", argc, argv,
	    opts, args, &n)) != 0)
		return rc < 0 ? 0 : rc;
	nto = campaign_cli_all(argc, argv, opts, "to", &all, &store);
	if (nto == 0)
		rc = cli_usage_error("campaign test: --to EMAIL is required");
	else
		rc = campaign_cli_test_run(cli, args[0], all, nto);
	free(all);
	free(store);
	return rc;
}

/* --- schedule and the state changes -------------------------------------------- */

/* Print the campaign's new state (text: message; --json: name, state,
 * scheduled_at). */
static int
campaign_cli_print_state(struct cli *cli, const char *name, const char *what)
{
	struct assent_err err;
	struct campaign *c;
	json_t *o;

	if (campaign_load(cli->conn, name, &c, &err) == -1)
		return cli_fail(&err);
	if (cli->json) {
		o = json_pack("{s:s, s:s, s:o}", "name", c->name, "state", c->state,
		    "scheduled_at", c->scheduled_at[0] != '\0' ?
		    json_string(c->scheduled_at) : json_null());
		out_json(o);
		json_decref(o);
	} else if (strcmp(c->state, "scheduled") == 0) {
		printf("campaign %s %s%s for %s%s\n", c->name, what,
		    strcmp(what, "scheduled") == 0 ? "" : ": scheduled",
		    c->scheduled_at, c->force_start ? " (forced)" : "");
	} else if (strcmp(c->state, what) == 0) {
		printf("campaign %s %s\n", c->name, what);
	} else {
		printf("campaign %s %s: now %s\n", c->name, what, c->state);
	}
	campaign_free(c);
	return 0;
}

static int
campaign_cmd_schedule(struct cli *cli, int argc, char **argv)
{
	const char *at = NULL;
	bool force = false;
	const struct cli_opt opts[] = {
		{ "at", &at, NULL }, { "force", NULL, &force }, { NULL, NULL, NULL },
	};
	struct assent_err err;
	char *args[1];
	int rc, n;

	if ((rc = cli_parse(cli, &campaign_cmds[CMD_SCHEDULE], "campaign", argc, argv,
	    opts, args, &n)) != 0)
		return rc < 0 ? 0 : rc;
	if (at == NULL)
		return cli_usage_error("campaign schedule: --at TIME is required "
		    "(ISO 8601 with a zone, or \"now\")");
	if ((rc = cli_db(cli, false)) != 0)
		return rc;
	if (campaign_schedule(cli->conn, args[0], at, force,
	    cli->conf->sending_max_schedule_age, &err) == -1)
		return cli_fail(&err);
	return campaign_cli_print_state(cli, args[0], "scheduled");
}

/* pause, resume and cancel: one name, one call. */
static int
campaign_cli_move(struct cli *cli, int cmd, int argc, char **argv,
    int (*move)(PGconn *, const char *, struct assent_err *), const char *what)
{
	struct assent_err err;
	char *args[1];
	int rc, n;

	if ((rc = cli_parse(cli, &campaign_cmds[cmd], "campaign", argc, argv, NULL,
	    args, &n)) != 0)
		return rc < 0 ? 0 : rc;
	if ((rc = cli_db(cli, false)) != 0)
		return rc;
	if (move(cli->conn, args[0], &err) == -1)
		return cli_fail(&err);
	return campaign_cli_print_state(cli, args[0], what);
}

static int
campaign_cmd_pause(struct cli *cli, int argc, char **argv)
{
	return campaign_cli_move(cli, CMD_PAUSE, argc, argv, campaign_pause, "paused");
}

static int
campaign_cmd_resume(struct cli *cli, int argc, char **argv)
{
	return campaign_cli_move(cli, CMD_RESUME, argc, argv, campaign_resume,
	    "resumed");
}

static int
campaign_cmd_cancel(struct cli *cli, int argc, char **argv)
{
	return campaign_cli_move(cli, CMD_CANCEL, argc, argv, campaign_cancel,
	    "cancelled");
}

static int
campaign_cmd_resend(struct cli *cli, int argc, char **argv)
{
	struct assent_err err;
	char *args[1];
	long count;
	int rc, n;

	if ((rc = cli_parse(cli, &campaign_cmds[CMD_RESEND], "campaign", argc, argv,
	    NULL, args, &n)) != 0)
		return rc < 0 ? 0 : rc;
	if ((rc = cli_db(cli, false)) != 0)
		return rc;
	if (campaign_resend_unknown(cli->conn, args[0], &count, &err) == -1)
		return cli_fail(&err);
	if (cli->json) {
		json_t *o = json_pack("{s:s, s:I}", "name", args[0], "queued",
		    (json_int_t)count);
		out_json(o);
		json_decref(o);
	} else if (count == 0) {
		printf("campaign %s has no delivery of unknown outcome\n", args[0]);
	} else {
		printf("campaign %s: %ld deliver%s of unknown outcome queued again\n",
		    args[0], count, count == 1 ? "y" : "ies");
	}
	return 0;
}

/* --- status, report --------------------------------------------------------- */

static const struct out_col campaign_status_fields[] = {
	{ "name", "name" }, { "state", "state" }, { "scheduled_at", "scheduled" },
	{ "started_at", "started" }, { "finished_at", "finished" },
	{ "total", "total" }, { "queued", "queued" }, { "sending", "sending" },
	{ "sent", "sent" }, { "suppressed", "suppressed" }, { "failed", "failed" },
	{ "unknown", "unknown" }, { "rate", "rate (msg/s)" }, { "eta", "finish (est.)" },
	{ "note", "note" }, { NULL, NULL },
};

static int
campaign_cmd_status(struct cli *cli, int argc, char **argv)
{
	struct assent_err err;
	json_t *st, *flat;
	char *args[1], rate[32];
	int rc, n;

	if ((rc = cli_parse(cli, &campaign_cmds[CMD_STATUS], "campaign", argc, argv,
	    NULL, args, &n)) != 0)
		return rc < 0 ? 0 : rc;
	if ((rc = cli_db(cli, false)) != 0)
		return rc;
	if (campaign_status(cli->conn, args[0], cli->conf->sending_max_schedule_age,
	    &st, &err) == -1)
		return cli_fail(&err);
	if (cli->json) {
		out_json(st);
	} else {
		flat = json_copy(st);
		json_object_update(flat, json_object_get(st, "counts"));
		if (json_is_real(json_object_get(st, "rate"))) {
			snprintf(rate, sizeof(rate), "%.1f",
			    json_real_value(json_object_get(st, "rate")));
			json_object_set_new(flat, "rate", json_string(rate));
		}
		out_fields(flat, campaign_status_fields);
		json_decref(flat);
	}
	json_decref(st);
	return 0;
}

/* Messages with a bounce of each class; policy refusals are the
 * sender's problem, so they are pointed out. */
static void
campaign_cli_print_bounces(const json_t *b)
{
	long long policy = (long long)json_integer_value(json_object_get(b, "policy"));

	printf("bounces:      %lld hard, %lld soft, %lld policy, %lld complaint\n",
	    (long long)json_integer_value(json_object_get(b, "hard")),
	    (long long)json_integer_value(json_object_get(b, "soft")), policy,
	    (long long)json_integer_value(json_object_get(b, "complaint")));
	if (policy > 0)
		printf("note: %lld message%s refused by policy (5.7.x: block lists, "
		    "authentication, content): the sender, not the recipients, must "
		    "fix this; see assent bounces ls --campaign NAME --class policy\n",
		    policy, policy == 1 ? " was" : "s were");
}

static void
campaign_cli_print_report(const json_t *r)
{
	const json_t *sup = json_object_get(r, "suppressed"), *v;
	const char *reason;

#define REPORT_N(key) ((long long)json_integer_value(json_object_get(r, key)))
	printf("campaign:     %s (%s)\n", json_string_value(json_object_get(r, "name")),
	    json_string_value(json_object_get(r, "state")));
	printf("recipients:   %lld\n", REPORT_N("total"));
	printf("sent:         %lld\n", REPORT_N("sent"));
	printf("suppressed:   %lld\n",
	    (long long)json_integer_value(json_object_get(sup, "total")));
	json_object_foreach((json_t *)json_object_get(sup, "by_reason"), reason, v)
		printf("  %-12s%lld\n", reason, (long long)json_integer_value(v));
	printf("failed:       %lld\n", REPORT_N("failed"));
	printf("unknown:      %lld\n", REPORT_N("unknown"));
	printf("not sent:     %lld\n", REPORT_N("not_sent"));
	/* what came back later: these grow after the campaign is done */
	printf("bounced:      %lld (hard bounces recorded for its messages)\n",
	    REPORT_N("bounced"));
	printf("complained:   %lld (spam complaints about it)\n",
	    REPORT_N("complained"));
	printf("unsubscribed: %lld (through its links)\n",
	    REPORT_N("unsubscribed"));
	campaign_cli_print_bounces(json_object_get(r, "bounces"));
#undef REPORT_N
}

static int
campaign_cmd_report(struct cli *cli, int argc, char **argv)
{
	struct assent_err err;
	char *args[1];
	json_t *r;
	int rc, n;

	if ((rc = cli_parse(cli, &campaign_cmds[CMD_REPORT], "campaign", argc, argv,
	    NULL, args, &n)) != 0)
		return rc < 0 ? 0 : rc;
	if ((rc = cli_db(cli, false)) != 0)
		return rc;
	if (campaign_report(cli->conn, args[0], &r, &err) == -1)
		return cli_fail(&err);
	if (cli->json)
		out_json(r);
	else
		campaign_cli_print_report(r);
	json_decref(r);
	return 0;
}

int
cmd_campaign(struct cli *cli, int argc, char **argv)
{
	return cli_dispatch(cli, "campaign", campaign_cmds, argc, argv);
}

/* assent token: make and check signed tokens with the keys of
 * tokens.keys_file. Needs the configuration, not the database. */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "assent/keys.h"
#include "assent/token.h"
#include "cli.h"

static int token_cmd_make(struct cli *, int, char **);
static int token_cmd_check(struct cli *, int, char **);

static const struct cli_cmd token_cmds[] = {
	{ "make", "--purpose P --subscriber ID [--list ID | --all] "
	  "[--campaign ID] [--issued-at TIME]",
	  "sign a token (P: unsubscribe, confirm, manage, bounce); it is "
	  "printed alone on the last line", 0, 0, token_cmd_make },
	{ "check", "TOKEN [--purpose P]",
	  "verify a token and show what it carries; exit 65 when invalid",
	  1, 1, token_cmd_check },
	{ NULL, NULL, NULL, 0, 0, NULL },
};

#define TOKEN_PURPOSES "unsubscribe, confirm, manage or bounce"

/* The keys file of the configuration, as a signer. */
static int
token_cmd_signer(struct cli *cli, struct token_signer **signer_r,
    uint8_t *current_r)
{
	struct assent_err err;
	struct keys *keys;
	int rc;

	if ((rc = cli_conf(cli)) != 0)
		return rc;
	if (keys_load(cli->conf->tokens_keys_file, &keys, &err) == -1)
		return cli_fail(&err);
	rc = token_signer_new(keys, signer_r, &err);
	if (current_r != NULL)
		*current_r = keys_current(keys)->id;
	keys_free(keys);
	return rc == -1 ? cli_fail(&err) : 0;
}

/* A decimal id from 1 to INT64_MAX (a database bigint). */
static int
token_cmd_id(const char *option, const char *s, uint64_t *id_r)
{
	unsigned long long v;
	char *end;

	errno = 0;
	v = strtoull(s, &end, 10);
	if (s[0] < '0' || s[0] > '9' || *end != '\0' || errno != 0 || v == 0 ||
	    v > INT64_MAX)
		return cli_usage_error("--%s: \"%s\" is not an id (a whole "
		    "number from 1)", option, s);
	*id_r = v;
	return 0;
}

/* Seconds since 1970, or a UTC time "2026-11-22T16:00:00Z". */
static int
token_cmd_time(const char *s, int64_t *t_r)
{
	struct tm tm;
	char *end;
	long long v;

	if (s[0] >= '0' && s[0] <= '9' && strchr(s, '-') == NULL) {
		errno = 0;
		v = strtoll(s, &end, 10);
		if (*end == '\0' && errno == 0 && v <= (long long)UINT32_MAX) {
			*t_r = v;
			return 0;
		}
	} else {
		memset(&tm, 0, sizeof(tm));
		end = strptime(s, "%Y-%m-%dT%H:%M:%SZ", &tm);
		if (end != NULL && *end == '\0') {
			*t_r = (int64_t)timegm(&tm);
			return 0;
		}
	}
	return cli_usage_error("--issued-at: \"%s\" is neither seconds since "
	    "1970 nor a time like 2026-11-22T16:00:00Z", s);
}

static int
token_cmd_purpose(const char *s, enum token_purpose *purpose_r)
{
	if (token_purpose_parse(s, purpose_r) == -1)
		return cli_usage_error("--purpose: \"%s\" is not "
		    TOKEN_PURPOSES, s);
	return 0;
}

static json_t *
token_cmd_time_json(int64_t t)
{
	time_t tt = (time_t)t;
	char buf[32];
	struct tm tm;

	if (gmtime_r(&tt, &tm) == NULL)
		return json_null();
	strftime(buf, sizeof(buf), "%Y-%m-%dT%H:%M:%SZ", &tm);
	return json_string(buf);
}

/* An id as a JSON number; 0 (none) as null. Ids above INT64_MAX (which
 * only a hand-made token can hold) as a string. */
static json_t *
token_cmd_id_json(uint64_t id)
{
	char buf[24];

	if (id == 0)
		return json_null();
	if (id <= INT64_MAX)
		return json_integer((json_int_t)id);
	snprintf(buf, sizeof(buf), "%" PRIu64, id);
	return json_string(buf);
}

/* The fields of t as an object; expires_at only for confirm tokens. */
static json_t *
token_cmd_fields(const struct token *t, int64_t confirm_ttl)
{
	json_t *o = json_object();

	json_object_set_new(o, "purpose",
	    json_string(token_purpose_name(t->purpose)));
	json_object_set_new(o, "subscriber", token_cmd_id_json(t->subscriber_id));
	json_object_set_new(o, "list", token_cmd_id_json(t->list_id));
	json_object_set_new(o, "all_lists", json_boolean(t->all_lists));
	json_object_set_new(o, "campaign", token_cmd_id_json(t->campaign_id));
	json_object_set_new(o, "key_id", json_integer(t->key_id));
	json_object_set_new(o, "issued_at", token_cmd_time_json(t->issued_at));
	json_object_set_new(o, "expires_at", t->purpose == TOKEN_CONFIRM ?
	    token_cmd_time_json(t->issued_at + confirm_ttl) : json_null());
	return o;
}

static int
token_cmd_make_opts(int argc, char **argv, struct cli *cli, struct token *t)
{
	const char *purpose = NULL, *subscriber = NULL, *list = NULL;
	const char *campaign = NULL, *issued = NULL;
	bool all = false;
	const struct cli_opt opts[] = {
		{ "purpose", &purpose, NULL },
		{ "subscriber", &subscriber, NULL },
		{ "list", &list, NULL },
		{ "all", NULL, &all },
		{ "campaign", &campaign, NULL },
		{ "issued-at", &issued, NULL },
		{ NULL, NULL, NULL },
	};
	char *args[1];
	int rc, n;

	if ((rc = cli_parse(cli, &token_cmds[0], "token", argc, argv, opts, args,
	    &n)) != 0)
		return rc;
	if (purpose == NULL || subscriber == NULL)
		return cli_usage_error("token make needs --purpose and "
		    "--subscriber");
	if (list != NULL && all)
		return cli_usage_error("token make: --list or --all, not both");
	memset(t, 0, sizeof(*t));
	t->all_lists = all;
	t->issued_at = (int64_t)time(NULL);
	if ((rc = token_cmd_purpose(purpose, &t->purpose)) != 0 ||
	    (rc = token_cmd_id("subscriber", subscriber, &t->subscriber_id)) != 0 ||
	    (list != NULL && (rc = token_cmd_id("list", list, &t->list_id)) != 0) ||
	    (campaign != NULL &&
	    (rc = token_cmd_id("campaign", campaign, &t->campaign_id)) != 0) ||
	    (issued != NULL && (rc = token_cmd_time(issued, &t->issued_at)) != 0))
		return rc;
	return 0;
}

static int
token_cmd_make(struct cli *cli, int argc, char **argv)
{
	struct token_signer *signer;
	char text[TOKEN_TEXT_SIZE];
	struct assent_err err;
	struct token t;
	int rc;

	if ((rc = token_cmd_make_opts(argc, argv, cli, &t)) != 0)
		return rc < 0 ? 0 : rc;
	if ((rc = token_cmd_signer(cli, &signer, &t.key_id)) != 0)
		return rc;
	rc = token_make(signer, &t, text, sizeof(text), &err);
	token_signer_free(signer);
	if (rc == -1)
		return cli_fail(&err);
	if (cli->json) {
		json_t *o = token_cmd_fields(&t, cli->conf->tokens_confirm_ttl);

		json_object_set_new(o, "token", json_string(text));
		out_json(o);
		json_decref(o);
	} else {
		printf("%s\n", text);
	}
	return 0;
}

/* Verify against purpose, or (purpose NULL) against each purpose in
 * turn: a token is valid for at most one. */
static int
token_cmd_verify(struct cli *cli, struct token_signer *signer, const char *text,
    const char *purpose, struct token *t, struct assent_err *err)
{
	int64_t now = (int64_t)time(NULL), ttl = cli->conf->tokens_confirm_ttl;
	enum token_purpose p;

	if (purpose != NULL) {
		if (token_purpose_parse(purpose, &p) == -1)
			return err_set(err, EX_USAGE, "--purpose: \"%s\" is not "
			    TOKEN_PURPOSES " (see --help)", purpose);
		return token_verify(signer, text, p, now, ttl, t, err);
	}
	for (int i = TOKEN_PURPOSE_MIN; i <= TOKEN_PURPOSE_MAX; i++)
		if (token_verify(signer, text, (enum token_purpose)i, now, ttl, t,
		    err) == 0)
			return 0;
	return -1;
}

static const struct out_col token_fields[] = {
	{ "purpose", "purpose" }, { "subscriber", "subscriber" },
	{ "list", "list" }, { "campaign", "campaign" }, { "key_id", "key" },
	{ "issued_at", "issued" }, { "expires_at", "expires" },
	{ NULL, NULL },
};

static int
token_cmd_check(struct cli *cli, int argc, char **argv)
{
	const char *purpose = NULL;
	const struct cli_opt opts[] = {
		{ "purpose", &purpose, NULL },
		{ NULL, NULL, NULL },
	};
	struct token_signer *signer;
	struct assent_err err;
	struct token t;
	char *args[1];
	json_t *o;
	int rc, n;

	if ((rc = cli_parse(cli, &token_cmds[1], "token", argc, argv, opts, args,
	    &n)) != 0)
		return rc < 0 ? 0 : rc;
	if ((rc = token_cmd_signer(cli, &signer, NULL)) != 0)
		return rc;
	rc = token_cmd_verify(cli, signer, args[0], purpose, &t, &err);
	token_signer_free(signer);
	if (rc == -1)
		return cli_fail(&err);
	o = token_cmd_fields(&t, cli->conf->tokens_confirm_ttl);
	if (cli->json) {
		json_object_set_new(o, "valid", json_true());
		out_json(o);
	} else {
		if (t.all_lists)
			json_object_set_new(o, "list", json_string("all"));
		if (t.purpose != TOKEN_CONFIRM)
			json_object_set_new(o, "expires_at", json_string("never"));
		printf("valid token\n");
		out_fields(o, token_fields);
	}
	json_decref(o);
	return 0;
}

int
cmd_token(struct cli *cli, int argc, char **argv)
{
	return cli_dispatch(cli, "token", token_cmds, argc, argv);
}

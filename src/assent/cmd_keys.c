/* assent keys: generate, rotate, ls. The keys file is
 * tokens.keys_file of the configuration unless --file names another;
 * with --file no configuration is needed. Secrets are never printed. */
#include <stdio.h>

#include "assent/keys.h"
#include "cli.h"

static int keys_cmd_generate(struct cli *, int, char **);
static int keys_cmd_rotate(struct cli *, int, char **);
static int keys_cmd_ls(struct cli *, int, char **);

static const struct cli_cmd keys_cmds[] = {
	{ "generate", "[--file PATH]",
	  "write a new keys file (mode 0600): one signing key and a pepper",
	  0, 0, keys_cmd_generate },
	{ "rotate", "[--file PATH]",
	  "add a new current key; the older keys still verify their tokens",
	  0, 0, keys_cmd_rotate },
	{ "ls", "[--file PATH]",
	  "the key ids, which is current and when each was made (no secrets)",
	  0, 0, keys_cmd_ls },
	{ NULL, NULL, NULL, 0, 0, NULL },
};

static const struct out_col keys_cols[] = {
	{ "id", "ID" }, { "current", "CURRENT" }, { "created", "CREATED" },
	{ NULL, NULL },
};

/* Parse [--file PATH] and find the file: --file, else the config's. */
static int
keys_cmd_path(struct cli *cli, const struct cli_cmd *cmd, int argc, char **argv,
    const char **path_r)
{
	const char *file = NULL;
	const struct cli_opt opts[] = {
		{ "file", &file, NULL },
		{ NULL, NULL, NULL },
	};
	char *args[1];
	int rc, n;

	if ((rc = cli_parse(cli, cmd, "keys", argc, argv, opts, args, &n)) != 0)
		return rc;
	if (file != NULL && file[0] == '\0')
		return cli_usage_error("--file needs a path");
	if (file == NULL) {
		if ((rc = cli_conf(cli)) != 0)
			return rc;
		file = cli->conf->tokens_keys_file;
	}
	*path_r = file;
	return 0;
}

static int
keys_cmd_generate(struct cli *cli, int argc, char **argv)
{
	struct assent_err err;
	const char *path;
	int rc;

	if ((rc = keys_cmd_path(cli, &keys_cmds[0], argc, argv, &path)) != 0)
		return rc < 0 ? 0 : rc;
	if (keys_generate(path, &err) == -1)
		return cli_fail(&err);
	if (cli->json) {
		json_t *o = json_pack("{s:s, s:i}", "file", path, "current", 1);
		out_json(o);
		json_decref(o);
	} else {
		printf("wrote %s (mode 0600): signing key 1, current, and a "
		    "pepper\nKeep it private and back it up: losing it breaks "
		    "every link already sent.\n", path);
	}
	return 0;
}

static void
keys_print_ids(const struct keys *keys)
{
	for (size_t i = 0; i < keys_count(keys); i++)
		printf("%s%u", i == 0 ? "" : ", ", keys_at(keys, i)->id);
}

static int
keys_cmd_rotate(struct cli *cli, int argc, char **argv)
{
	struct assent_err err;
	struct keys *keys;
	const char *path;
	uint8_t id;
	int rc;

	if ((rc = keys_cmd_path(cli, &keys_cmds[1], argc, argv, &path)) != 0)
		return rc < 0 ? 0 : rc;
	if (keys_rotate(path, &id, &err) == -1)
		return cli_fail(&err);
	/* Read it back: what is printed is what the daemon will load. */
	if (keys_load(path, &keys, &err) == -1)
		return cli_fail(&err);
	if (cli->json) {
		json_t *o = json_pack("{s:s, s:i, s:[]}", "file", path, "current",
		    id, "keys");

		for (size_t i = 0; i < keys_count(keys); i++)
			json_array_append_new(json_object_get(o, "keys"),
			    json_integer(keys_at(keys, i)->id));
		out_json(o);
		json_decref(o);
	} else {
		printf("%s: key %u is now current; keys ", path, id);
		keys_print_ids(keys);
		printf(" verify tokens\n");
	}
	keys_free(keys);
	return 0;
}

static int
keys_cmd_ls(struct cli *cli, int argc, char **argv)
{
	const struct keys_key *current;
	struct assent_err err;
	struct keys *keys;
	const char *path;
	json_t *rows;
	int rc;

	if ((rc = keys_cmd_path(cli, &keys_cmds[2], argc, argv, &path)) != 0)
		return rc < 0 ? 0 : rc;
	if (keys_load(path, &keys, &err) == -1)
		return cli_fail(&err);
	current = keys_current(keys);
	rows = json_array();
	for (size_t i = 0; i < keys_count(keys); i++) {
		const struct keys_key *k = keys_at(keys, i);

		json_array_append_new(rows, json_pack("{s:i, s:b, s:s?}", "id",
		    k->id, "current", k == current, "created",
		    k->created[0] != '\0' ? k->created : NULL));
	}
	if (cli->json)
		out_json(rows);
	else
		out_table(rows, keys_cols);
	json_decref(rows);
	keys_free(keys);
	return 0;
}

int
cmd_keys(struct cli *cli, int argc, char **argv)
{
	return cli_dispatch(cli, "keys", keys_cmds, argc, argv);
}

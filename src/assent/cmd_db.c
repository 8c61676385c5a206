/* assent db: schema migrations */
#include <stdio.h>

#include "assent/migrate.h"
#include "cli.h"

static void
db_migrate_step(int version, const char *name, void *arg)
{
	struct cli *cli = arg;

	if (!cli->json)
		printf("applied %04d (%s)\n", version, name);
}

static int
db_migrate(struct cli *cli, int argc, char **argv);
static int
db_status(struct cli *cli, int argc, char **argv);

static const struct cli_cmd db_cmds[] = {
	{ "migrate", "", "apply the pending schema migrations, each in a transaction",
	  0, 0, db_migrate },
	{ "status", "", "show the schema version of the database and of this program",
	  0, 0, db_status },
	{ NULL, NULL, NULL, 0, 0, NULL },
};

static int
db_migrate(struct cli *cli, int argc, char **argv)
{
	struct assent_err err;
	char *args[1];
	int rc, n, applied;

	if ((rc = cli_parse(cli, &db_cmds[0], "db", argc, argv, NULL, args, &n)) != 0)
		return rc < 0 ? 0 : rc;
	if ((rc = cli_db(cli, true)) != 0)
		return rc;
	if (migrate_apply(cli->conn, &applied, db_migrate_step, cli, &err) == -1)
		return cli_fail(&err);
	if (cli->json) {
		json_t *o = json_pack("{s:i, s:i}", "applied", applied,
		    "version", MIGRATE_SCHEMA_VERSION);
		out_json(o);
		json_decref(o);
	} else if (applied == 0) {
		printf("schema is current (version %d); nothing to do\n",
		    MIGRATE_SCHEMA_VERSION);
	} else {
		printf("schema is now at version %d\n", MIGRATE_SCHEMA_VERSION);
	}
	return 0;
}

static int
db_status(struct cli *cli, int argc, char **argv)
{
	struct assent_err err;
	char *args[1];
	int rc, n, version;
	const char *state;

	if ((rc = cli_parse(cli, &db_cmds[1], "db", argc, argv, NULL, args, &n)) != 0)
		return rc < 0 ? 0 : rc;
	if ((rc = cli_db(cli, true)) != 0)
		return rc;
	if (migrate_current_version(cli->conn, &version, &err) == -1)
		return cli_fail(&err);
	state = version == MIGRATE_SCHEMA_VERSION ? "current" :
	    version < MIGRATE_SCHEMA_VERSION ? "behind" : "ahead";
	if (cli->json) {
		json_t *o = json_pack("{s:i, s:i, s:s}", "version", version,
		    "program_version", MIGRATE_SCHEMA_VERSION, "state", state);
		out_json(o);
		json_decref(o);
	} else {
		printf("database schema: version %d\nthis program:    version %d\n"
		    "state:           %s%s\n", version, MIGRATE_SCHEMA_VERSION, state,
		    version < MIGRATE_SCHEMA_VERSION ? " (run \"assent db migrate\")" :
		    version > MIGRATE_SCHEMA_VERSION ? " (upgrade assent)" : "");
	}
	return 0;
}

int
cmd_db(struct cli *cli, int argc, char **argv)
{
	return cli_dispatch(cli, "db", db_cmds, argc, argv);
}

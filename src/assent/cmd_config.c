/* assent config: check a configuration file */
#include <stdio.h>

#include "cli.h"

static int config_check(struct cli *cli, int argc, char **argv);

static const struct cli_cmd config_cmds[] = {
	{ "check", "[FILE]", "validate a configuration file and print the effective "
	  "settings, secrets masked", 0, 1, config_check },
	{ NULL, NULL, NULL, 0, 0, NULL },
};

static int
config_check(struct cli *cli, int argc, char **argv)
{
	struct assent_err err;
	char *args[1];
	int rc, n;

	if ((rc = cli_parse(cli, &config_cmds[0], "config", argc, argv, NULL,
	    args, &n)) != 0)
		return rc < 0 ? 0 : rc;
	if (n == 1)
		cli->conf_path = args[0];
	if ((rc = cli_conf(cli)) != 0)
		return rc;
	/* A valid file may still be one nothing can be sent with: say so. */
	err_clear(&err);
	if (conf_check_sending(cli->conf, &err) < 0)
		fprintf(stderr, "assent: note: %s\n", err.msg);
	if (cli->json) {
		conf_dump_json(cli->conf, stdout);
	} else {
		printf("# %s: OK\n", cli->conf->path);
		conf_dump(cli->conf, stdout);
	}
	return 0;
}

int
cmd_config(struct cli *cli, int argc, char **argv)
{
	return cli_dispatch(cli, "config", config_cmds, argc, argv);
}

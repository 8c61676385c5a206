/* assent config: check a configuration file */
#include <stdio.h>

#include "assent/notice.h"
#include "assent/render.h"
#include "cli.h"

static int config_check(struct cli *cli, int argc, char **argv);

static const struct cli_cmd config_cmds[] = {
	{ "check", "[FILE]", "validate a configuration file and print the effective "
	  "settings, secrets masked", 0, 1, config_check },
	{ NULL, NULL, NULL, 0, 0, NULL },
};

/* The templates the configuration names compile (assentd refuses to
 * start otherwise). */
static int
config_check_templates(const struct assent_conf *conf, struct assent_err *err)
{
	struct render_template *tpl;

	if (notice_check_templates(conf, err) < 0 ||
	    render_compile_file("http.page_template", conf->http_page_template,
	    NULL, RENDER_PAGE, &tpl, err) < 0)
		return -1;
	render_free(tpl);
	return 0;
}

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
	if (config_check_templates(cli->conf, &err) < 0)
		return cli_fail(&err);
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

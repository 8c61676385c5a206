/* assent: the command line that marketing staff use */
#include <pwd.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "assent/db.h"
#include "assent/keys.h"
#include "assent/log.h"
#include "assent/migrate.h"
#include "assent/suppress.h"
#include "cli.h"

static const struct {
	const char *name;
	const char *help;
	int (*run)(struct cli *, int, char **);
} cli_groups[] = {
	{ "db",     "apply and inspect schema migrations", cmd_db },
	{ "list",   "create, list, show and remove lists", cmd_list },
	{ "sub",    "add, confirm and show subscribers", cmd_sub },
	{ "suppress", "the global suppression list: add, rm, ls, check, import, export",
	  cmd_suppress },
	{ "campaign", "write, preview, test, schedule and follow campaigns",
	  cmd_campaign },
	{ "inbound", "act on mail sent to the bounce domain: bounces, complaints, "
	  "mailto unsubscribes", cmd_inbound },
	{ "bounces", "list what came back and what was done about it", cmd_bounces },
	{ "import", "bring subscribers in from a CSV file, with the provenance of "
	  "every row", cmd_import },
	{ "export", "write a list's subscribers out as CSV or JSON", cmd_export },
	{ "ledger", "verify the consent ledger's chain", cmd_ledger },
	{ "consent-text", "add, list and show the consent wordings shown to subscribers",
	  cmd_consent },
	{ "keys",   "generate and rotate the token signing keys", cmd_keys },
	{ "token",  "make and check signed tokens", cmd_token },
	{ "config", "check a configuration file", cmd_config },
};
#define CLI_NGROUPS (sizeof(cli_groups) / sizeof(cli_groups[0]))

static void
cli_main_usage(FILE *out)
{
	fprintf(out, "usage: assent [-c FILE] [--json] COMMAND [ARGS]\n"
	    "       assent --help | --version | COMMAND --help\n\ncommands:\n");
	for (size_t i = 0; i < CLI_NGROUPS; i++)
		fprintf(out, "  %-13s %s\n", cli_groups[i].name, cli_groups[i].help);
	fprintf(out, "\nThe configuration is read from -c FILE, else $ASSENT_CONFIG, "
	    "else %s.\nExit codes follow sysexits.h: see assent(1).\n",
	    CONF_DEFAULT_PATH);
}

int
cli_fail(const struct assent_err *err)
{
	fprintf(stderr, "assent: %s\n", err->msg);
	return err->code != 0 ? err->code : EX_SOFTWARE;
}

int
cli_usage_error(const char *fmt, ...)
{
	va_list ap;

	fputs("assent: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputs(" (see --help)\n", stderr);
	return EX_USAGE;
}

int
cli_conf(struct cli *cli)
{
	struct assent_err err;

	if (cli->conf != NULL)
		return 0;
	if (conf_load(cli->conf_path, &cli->conf, &err) == -1)
		return cli_fail(&err);
	return 0;
}

int
cli_db(struct cli *cli, bool any_schema)
{
	struct assent_err err;
	int rc;

	if (cli->conn != NULL)
		return 0;
	if ((rc = cli_conf(cli)) != 0)
		return rc;
	if (db_connect(cli->conf->database_dsn, &cli->conn, &err) == -1)
		return cli_fail(&err);
	if (!any_schema && migrate_require_current(cli->conn, &err) == -1)
		return cli_fail(&err);
	return 0;
}

int
cli_suppress_ctx(struct cli *cli, struct keys **keys_r, struct suppress_ctx *ctx)
{
	struct assent_err err;
	int rc;

	*keys_r = NULL;
	if ((rc = cli_conf(cli)) != 0)
		return rc;
	if (keys_load(cli->conf->tokens_keys_file, keys_r, &err) == -1)
		return cli_fail(&err);
	memset(ctx, 0, sizeof(*ctx));
	ctx->pepper = keys_pepper(*keys_r, &ctx->pepper_len);
	ctx->gmail_mailbox_key = cli->conf->suppress_gmail_mailbox_key;
	return 0;
}

void
cli_evidence(struct cli *cli, struct ledger_evidence *ev, const char *source)
{
	memset(ev, 0, sizeof(*ev));
	ev->source = source;
	ev->operator_name = cli->operator_name;
}

static const struct cli_opt *
cli_find_opt(const struct cli_opt *opts, const char *name, size_t len)
{
	for (; opts != NULL && opts->name != NULL; opts++)
		if (strlen(opts->name) == len && strncmp(opts->name, name, len) == 0)
			return opts;
	return NULL;
}

/* A group of one command (import, export) has a command without a name. */
#define CLI_SEP(cmd) ((cmd)->name[0] != '\0' ? " " : "")

static void
cli_cmd_usage(FILE *out, const char *group, const struct cli_cmd *cmd)
{
	fprintf(out, "usage: assent %s%s%s %s\n  %s\n", group,
	    CLI_SEP(cmd), cmd->name, cmd->usage, cmd->help);
}

/* One "--name[=value]" at argv[*i]; advances *i past a separate value. */
static int
cli_parse_opt(struct cli *cli, const char *group, const struct cli_cmd *cmd,
    const struct cli_opt *opts, int argc, char **argv, int *i)
{
	const char *arg = argv[*i] + 2, *eq = strchr(arg, '=');
	size_t len = eq != NULL ? (size_t)(eq - arg) : strlen(arg);
	const struct cli_opt *o = cli_find_opt(opts, arg, len);

	if (o == NULL && len == 4 && strncmp(arg, "json", 4) == 0 && eq == NULL) {
		cli->json = true;
		return 0;
	}
	if (o == NULL && len == 4 && strncmp(arg, "help", 4) == 0 && eq == NULL) {
		cli_cmd_usage(stdout, group, cmd);
		return -1;
	}
	if (o == NULL)
		return cli_usage_error("%s%s%s: unknown option --%.*s",
		    group, CLI_SEP(cmd), cmd->name, (int)len, arg);
	if (o->value == NULL) {
		if (eq != NULL)
			return cli_usage_error("%s%s%s: --%s takes no value",
			    group, CLI_SEP(cmd), cmd->name, o->name);
		*o->flag = true;
		return 0;
	}
	if (eq != NULL) {
		*o->value = eq + 1;
		return 0;
	}
	if (*i + 1 >= argc)
		return cli_usage_error("%s%s%s: --%s needs a value",
		    group, CLI_SEP(cmd), cmd->name, o->name);
	*o->value = argv[++*i];
	return 0;
}

int
cli_parse(struct cli *cli, const struct cli_cmd *cmd, const char *group,
    int argc, char **argv, const struct cli_opt *opts, char **args, int *nargs_r)
{
	bool only_args = false;
	int rc, n = 0;

	for (int i = 1; i < argc; i++) {
		if (!only_args && strcmp(argv[i], "--") == 0) {
			only_args = true;
		} else if (!only_args && strncmp(argv[i], "--", 2) == 0) {
			if ((rc = cli_parse_opt(cli, group, cmd, opts, argc, argv, &i)) != 0)
				return rc;
		} else if (!only_args && argv[i][0] == '-' && argv[i][1] != '\0') {
			return cli_usage_error("%s%s%s: unknown option %s",
			    group, CLI_SEP(cmd), cmd->name, argv[i]);
		} else {
			if (n >= cmd->max_args)
				return cli_usage_error("%s%s%s: unexpected argument "
				    "\"%s\"", group, CLI_SEP(cmd), cmd->name, argv[i]);
			args[n++] = argv[i];
		}
	}
	if (n < cmd->min_args)
		return cli_usage_error("%s%s%s: missing argument: %s",
		    group, CLI_SEP(cmd), cmd->name, cmd->usage);
	*nargs_r = n;
	return 0;
}

void
cli_group_usage(FILE *out, const char *group, const struct cli_cmd *cmds)
{
	fprintf(out, "usage: assent %s COMMAND [ARGS]\n\ncommands:\n", group);
	for (; cmds->name != NULL; cmds++)
		fprintf(out, "  assent %s %s %s\n      %s\n", group, cmds->name,
		    cmds->usage, cmds->help);
}

int
cli_dispatch(struct cli *cli, const char *group, const struct cli_cmd *cmds,
    int argc, char **argv)
{
	if (argc < 1 || strcmp(argv[0], "--help") == 0 || strcmp(argv[0], "help") == 0) {
		cli_group_usage(argc < 1 ? stderr : stdout, group, cmds);
		return argc < 1 ? EX_USAGE : 0;
	}
	for (const struct cli_cmd *c = cmds; c->name != NULL; c++)
		if (strcmp(c->name, argv[0]) == 0)
			return c->run(cli, argc, argv);
	return cli_usage_error("unknown command \"%s %s\"", group, argv[0]);
}

static void
cli_set_operator(struct cli *cli)
{
	struct passwd *pw = getpwuid(getuid());
	const char *sudo = getenv("SUDO_USER");

	if (pw != NULL && sudo != NULL && sudo[0] != '\0' && getuid() == 0)
		snprintf(cli->operator_name, sizeof(cli->operator_name), "%s (sudo %s)",
		    sudo, pw->pw_name);
	else if (pw != NULL)
		snprintf(cli->operator_name, sizeof(cli->operator_name), "%s", pw->pw_name);
	else
		snprintf(cli->operator_name, sizeof(cli->operator_name), "uid %ld",
		    (long)getuid());
}

/* Global options come before the command: -c FILE, --config=FILE, --json. */
static int
cli_global_opts(struct cli *cli, int argc, char **argv, int *i)
{
	for (*i = 1; *i < argc && argv[*i][0] == '-'; (*i)++) {
		const char *a = argv[*i];

		if (strcmp(a, "-c") == 0 || strcmp(a, "--config") == 0) {
			if (*i + 1 >= argc)
				return cli_usage_error("%s needs a file", a);
			cli->conf_path = argv[++*i];
		} else if (strncmp(a, "--config=", 9) == 0) {
			cli->conf_path = a + 9;
		} else if (strcmp(a, "--json") == 0) {
			cli->json = true;
		} else if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
			cli_main_usage(stdout);
			return -1;
		} else if (strcmp(a, "--version") == 0 || strcmp(a, "-V") == 0) {
			printf("assent %s (schema %d)\n", PACKAGE_VERSION,
			    MIGRATE_SCHEMA_VERSION);
			return -1;
		} else {
			return cli_usage_error("unknown option %s", a);
		}
	}
	return 0;
}

int
main(int argc, char **argv)
{
	struct cli cli;
	int i, rc;

	memset(&cli, 0, sizeof(cli));
	signal(SIGPIPE, SIG_IGN);
	log_init("assent", LOG_LEVEL_WARN, false);
	cli.conf_path = conf_default_path();
	cli_set_operator(&cli);
	if ((rc = cli_global_opts(&cli, argc, argv, &i)) != 0)
		return rc == -1 ? 0 : rc;
	if (i >= argc) {
		cli_main_usage(stderr);
		return EX_USAGE;
	}
	rc = -1;
	for (size_t g = 0; g < CLI_NGROUPS; g++)
		if (strcmp(argv[i], cli_groups[g].name) == 0)
			rc = cli_groups[g].run(&cli, argc - i - 1, argv + i + 1);
	if (rc == -1)
		rc = cli_usage_error("unknown command \"%s\"", argv[i]);
	db_close(cli.conn);
	conf_free(cli.conf);
	if (fflush(stdout) == EOF && rc == 0)
		rc = EX_IOERR;
	return rc;
}

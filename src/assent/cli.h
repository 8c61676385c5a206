/*
 * cli: what the command groups of the assent program share.
 *
 * main.c parses the global options and dispatches to a command group
 * (cmd_db.c, cmd_list.c, ...); each group has a table of commands with
 * their options. A command returns an exit code from <sysexits.h>;
 * errors are printed once, by cli_fail(), as "assent: message".
 *
 * Memory: struct cli lives for the whole run and owns conf and conn;
 * option values point into argv (borrowed).
 */
#ifndef ASSENT_CLI_H
#define ASSENT_CLI_H

#include <stdbool.h>
#include <jansson.h>
#include <libpq-fe.h>

#include "assent/conf.h"
#include "assent/err.h"
#include "assent/ledger.h"

struct cli {
	const char *conf_path;
	struct assent_conf *conf;       /* loaded on first use */
	PGconn *conn;                   /* opened on first use */
	bool json;
	char operator_name[64];         /* the Unix user running us */
};

/* One option of a command: "--name" alone sets *flag; "--name VALUE" or
 * "--name=VALUE" sets *value (the last one given wins). */
struct cli_opt {
	const char *name;
	const char **value;             /* NULL for a flag */
	bool *flag;
};

/* One command of a group: "list create NAME ..." */
struct cli_cmd {
	const char *name;
	const char *usage;              /* "NAME [--description TEXT] ..." */
	const char *help;               /* one line */
	int min_args, max_args;         /* positional arguments */
	int (*run)(struct cli *cli, int argc, char **argv);
};

/* Parse argv (after the command name) against opts, leaving the
 * positional arguments in args (at most max_args) and their count in
 * *nargs_r. --json and --help are always understood. Returns 0, or an
 * exit code after printing the problem (EX_USAGE), or -1 after printing
 * help (exit 0). */
int cli_parse(struct cli *cli, const struct cli_cmd *cmd, const char *group,
    int argc, char **argv, const struct cli_opt *opts,
    char **args, int *nargs_r);

/* Dispatch argv[0] among cmds of group. */
int cli_dispatch(struct cli *cli, const char *group, const struct cli_cmd *cmds,
    int argc, char **argv);

/* Print the commands of a group (to out). */
void cli_group_usage(FILE *out, const char *group, const struct cli_cmd *cmds);

/* Load the config (once). On failure prints and returns the exit code. */
int cli_conf(struct cli *cli);

/* The database, connected and with a current schema (unless
 * any_schema). On failure prints and returns the exit code. */
int cli_db(struct cli *cli, bool any_schema);

/* The gate's context: the pepper from the keys file (tokens.keys_file)
 * and the suppression options. The caller keys_free()s *keys_r. On
 * failure prints and returns the exit code (66 with a hint to run
 * "assent keys generate" when the file is missing). */
struct keys;
struct suppress_ctx;
int cli_suppress_ctx(struct cli *cli, struct keys **keys_r, struct suppress_ctx *ctx);

/* Print "assent: MSG" to stderr and return err->code. */
int cli_fail(const struct assent_err *err);

/* Print a usage problem and return EX_USAGE. */
int cli_usage_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* Evidence for CLI changes: source from --source, operator from the
 * Unix user. */
void cli_evidence(struct cli *cli, struct ledger_evidence *ev, const char *source);

/* --- output.c: tables for people, JSON for programs ------------------ */

struct out_col {
	const char *key;                /* object member */
	const char *title;              /* column heading */
};

/* Print obj or array as JSON (pretty, one document, newline). Steals
 * nothing: the caller still owns value. */
void out_json(const json_t *value);

/* Print an array of objects as an aligned table with the given columns;
 * "(none)" when it is empty. */
void out_table(const json_t *rows, const struct out_col *cols);

/* Print the members of obj named in cols as "title: value" lines. */
void out_fields(const json_t *obj, const struct out_col *cols);

/* A JSON value as text for a table cell (strings unquoted, null as
 * "-", control characters escaped). Returns a new string. */
char *out_cell(const json_t *value);

/* The data subject's rights, cmd_rights.c: "sub" commands (their usage
 * lines are in cmd_sub.c's table). */
int sub_export(struct cli *cli, int argc, char **argv);
int sub_rectify(struct cli *cli, int argc, char **argv);
int sub_unsubscribe(struct cli *cli, int argc, char **argv);
int sub_erase(struct cli *cli, int argc, char **argv);
/* cmd_sub.c's table, for cmd_rights.c's cli_parse() calls */
const struct cli_cmd *sub_command(const char *name);

/* The command groups */
int cmd_db(struct cli *cli, int argc, char **argv);
int cmd_list(struct cli *cli, int argc, char **argv);
int cmd_sub(struct cli *cli, int argc, char **argv);
int cmd_config(struct cli *cli, int argc, char **argv);
int cmd_suppress(struct cli *cli, int argc, char **argv);
int cmd_keys(struct cli *cli, int argc, char **argv);
int cmd_token(struct cli *cli, int argc, char **argv);
int cmd_ledger(struct cli *cli, int argc, char **argv);
int cmd_consent(struct cli *cli, int argc, char **argv);
int cmd_campaign(struct cli *cli, int argc, char **argv);
int cmd_inbound(struct cli *cli, int argc, char **argv);
int cmd_bounces(struct cli *cli, int argc, char **argv);
int cmd_import(struct cli *cli, int argc, char **argv);
int cmd_export(struct cli *cli, int argc, char **argv);

#endif

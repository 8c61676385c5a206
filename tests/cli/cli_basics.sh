#!/bin/bash
# The assent command line without a database: help, version, usage
# errors and exit codes, missing config, unreachable database.
. "$(dirname "$0")/lib.sh"

run_bin --help
assert_rc 0 "--help"
assert_out_contains "usage: assent" "--help prints usage"
run_bin --version
assert_rc 0 "--version"
assert_out_contains "assent " "--version prints the version"
run_bin
assert_rc 64 "no command is a usage error"
run_bin frobnicate
assert_rc 64 "unknown command"
assert_err_contains 'unknown command "frobnicate"' "names the command"
run_bin --bogus list ls
assert_rc 64 "unknown global option"
run_bin sub --help
assert_rc 0 "sub --help"
assert_out_contains "assent sub add EMAIL" "group help lists commands"
run_bin list create --help
assert_rc 0 "list create --help"
assert_out_contains "--double-optin" "command help lists options"
run_bin list nosuch
assert_rc 64 "unknown subcommand"

TMP=$(mktemp -d)
cli_at_exit "rm -rf '$TMP'"

run_bin -c "$TMP/missing.conf" list ls
assert_rc 66 "missing config file"
assert_err_contains "$TMP/missing.conf" "names the file"

printf 'database = { dsn = "x"; };\nsmtp = { port = "25"; };\n' > "$TMP/bad.conf"
run_bin -c "$TMP/bad.conf" list ls
assert_rc 78 "bad config"
assert_err_contains "$TMP/bad.conf:2" "names file:line"

ASSENT_CONFIG=$TMP/bad.conf run_bin list ls
assert_rc 78 "ASSENT_CONFIG is read"

# A database that is not there: one line, exit 69.
printf 'database = { dsn = "host=%s/nowhere dbname=x connect_timeout=2"; };\n' "$TMP" > "$TMP/nodb.conf"
run_bin -c "$TMP/nodb.conf" list ls
assert_rc 69 "unreachable database"
assert_err_contains "database unreachable" "says so"
lines=$(printf '%s\n' "$ERR" | wc -l)
assert_eq "$lines" "1" "in one line"

finish

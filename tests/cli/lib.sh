# tests/cli/lib.sh: a small TAP helper for the shell tests in tests/cli/.
# Source it (". "$ASSENT_SRCDIR/tests/cli/lib.sh", or relative to $0).
#
# Counting
#   plan N                  print "1..N" first (optional: see finish)
#   ok DESC / not_ok DESC   one TAP line
#   skip DESC REASON        "ok N - DESC # SKIP REASON"
#   diag TEXT...            "# TEXT" lines (to stdout, as TAP comments)
#   finish                  print "1..N" when no plan was given, exit 1
#                           when a test failed or the count is off
#
# Running the CLI
#   run_cli ARGS...         runs "$ASSENT_BIN" -c "$CONF" ARGS... with
#                           standard input from $CLI_STDIN (a file) or
#                           /dev/null; sets OUT, ERR (text) and RC
#   run_bin ARGS...         the same without -c "$CONF"
#   assert_rc N DESC
#   assert_out_contains TEXT DESC    assert_out_lacks TEXT DESC
#   assert_err_contains TEXT DESC    assert_err_empty DESC
#   assert_eq GOT WANT DESC
#
# A database
#   cli_setup_db            call before plan: a fresh database (createdb
#                           with $PGHOST/$PGUSER), a config file $CONF in
#                           $CLI_TMP pointing at it and at the SMTP sink,
#                           and "assent db migrate" applied. Everything is
#                           dropped and removed at exit. Without a server
#                           it prints "1..0 # SKIP no database" and exits
#                           0, unless ASSENT_TEST_REQUIRE_SERVERS=1, where
#                           it bails out (a failure).
#   cli_at_exit CMD         run CMD (a string) at exit too; do not set your
#                           own EXIT trap, it would replace this one.
#
# ASSENT_BIN defaults to the build in _build/ of the checkout when the
# test runs by hand; make check sets it.

_cli_n=0
_cli_failed=0
_cli_plan=
_cli_exit_cmds=()
CLI_TMP=
CONF=${CONF:-}
OUT='' ERR='' RC=''

if [ -z "${ASSENT_BIN:-}" ]; then
	_cli_top=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
	ASSENT_BIN=$_cli_top/_build/src/assent/assent
fi

plan()
{
	_cli_plan=$1
	echo "1..$1"
}

ok()
{
	_cli_n=$((_cli_n + 1))
	echo "ok $_cli_n - $*"
}

not_ok()
{
	_cli_n=$((_cli_n + 1))
	_cli_failed=$((_cli_failed + 1))
	echo "not ok $_cli_n - $*"
}

skip()
{
	_cli_n=$((_cli_n + 1))
	echo "ok $_cli_n - $1 # SKIP ${2:-}"
}

diag()
{
	local line

	printf '%s\n' "$@" | while IFS= read -r line; do
		echo "# $line"
	done
}

# Show what the last command did, under a failed test.
_cli_show_last()
{
	diag "command: ${_cli_last_cmd:-}"
	diag "exit status: $RC"
	[ -z "$OUT" ] || diag "stdout:" "$OUT"
	[ -z "$ERR" ] || diag "stderr:" "$ERR"
}

_cli_run()
{
	local out err input=/dev/null

	[ -z "${CLI_STDIN:-}" ] || input=$CLI_STDIN
	out=$(mktemp) err=$(mktemp)
	_cli_last_cmd="$*"
	# timeout: a hung command fails its test instead of the whole suite.
	RC=0
	timeout 120 "$@" <"$input" >"$out" 2>"$err" || RC=$?
	OUT=$(cat "$out")
	ERR=$(cat "$err")
	rm -f "$out" "$err"
}

run_cli()
{
	[ -n "$CONF" ] || { not_ok "run_cli: no CONF (call cli_setup_db)"; return 0; }
	_cli_run "$ASSENT_BIN" -c "$CONF" "$@"
}

run_bin()
{
	_cli_run "$ASSENT_BIN" "$@"
}

assert_rc()
{
	if [ "$RC" = "$1" ]; then
		ok "$2"
	else
		not_ok "$2"
		diag "expected exit status $1"
		_cli_show_last
	fi
}

assert_out_contains()
{
	if [[ $OUT == *"$1"* ]]; then
		ok "$2"
	else
		not_ok "$2"
		diag "stdout should contain: $1"
		_cli_show_last
	fi
}

assert_out_lacks()
{
	if [[ $OUT != *"$1"* ]]; then
		ok "$2"
	else
		not_ok "$2"
		diag "stdout should not contain: $1"
		_cli_show_last
	fi
}

assert_err_contains()
{
	if [[ $ERR == *"$1"* ]]; then
		ok "$2"
	else
		not_ok "$2"
		diag "stderr should contain: $1"
		_cli_show_last
	fi
}

assert_err_empty()
{
	if [ -z "$ERR" ]; then
		ok "$1"
	else
		not_ok "$1"
		diag "stderr should be empty"
		_cli_show_last
	fi
}

assert_eq()
{
	if [ "$1" = "$2" ]; then
		ok "$3"
	else
		not_ok "$3"
		diag "got:  $1" "want: $2"
	fi
}

finish()
{
	local rc=0

	if [ -z "$_cli_plan" ]; then
		echo "1..$_cli_n"
	elif [ "$_cli_plan" -ne "$_cli_n" ]; then
		diag "planned $_cli_plan tests but ran $_cli_n"
		rc=1
	fi
	[ "$_cli_failed" -eq 0 ] || rc=1
	exit "$rc"
}

cli_at_exit()
{
	_cli_exit_cmds+=("$1")
}

_cli_at_exit_run()
{
	local cmd

	for cmd in "${_cli_exit_cmds[@]}"; do
		eval "$cmd" || true
	done
}
trap _cli_at_exit_run EXIT

_cli_bail()
{
	echo "Bail out! $*"
	exit 1
}

cli_setup_db()
{
	local db

	if [ -z "${PGHOST:-}" ]; then
		[ "${ASSENT_TEST_REQUIRE_SERVERS:-}" != 1 ] ||
		    _cli_bail "PGHOST is not set: start the servers with tests/harness/servers.sh"
		echo "1..0 # SKIP no database"
		exit 0
	fi
	[ -x "$ASSENT_BIN" ] || _cli_bail "no program at $ASSENT_BIN"

	CLI_TMP=$(mktemp -d "${TMPDIR:-/tmp}/assent-cli-XXXXXX")
	# shellcheck disable=SC2016 # expanded at exit
	cli_at_exit 'rm -rf "$CLI_TMP"'

	db=cli_$$_$RANDOM
	createdb -T template0 "$db" 2>"$CLI_TMP/createdb.err" ||
	    _cli_bail "createdb $db: $(cat "$CLI_TMP/createdb.err")"
	CLI_DB=$db      # the database's name, for the tests too
	export CLI_DB
	# shellcheck disable=SC2016 # expanded at exit
	cli_at_exit 'dropdb --if-exists --force "$CLI_DB" 2>/dev/null'

	CONF=$CLI_TMP/assent.conf
	cat >"$CONF" <<EOF
database = { dsn = "host=$PGHOST user=${PGUSER:-postgres} dbname=$db"; };
smtp = { host = "127.0.0.1"; port = ${ASSENT_TEST_SMTP_PORT:-25}; starttls = "off"; };
tokens = { keys_file = "$CLI_TMP/keys.conf"; };
daemon = { pid_file = "$CLI_TMP/assentd.pid"; };
http = { base_url = "https://news.example.org"; };
sender = { organisation = "Example Ltd"; postal_address = "1 Example Street, Town";
	from = "news@example.org"; bounce_domain = "bounce.example.org"; };
EOF
	_cli_run "$ASSENT_BIN" -c "$CONF" db migrate
	[ "$RC" -eq 0 ] ||
	    _cli_bail "assent db migrate exited $RC: $(printf '%s' "$ERR" | head -n 3)"
	OUT='' ERR='' RC=''
}

#!/bin/bash
# assent keys and assent token: generate, rotate and list keys; make and
# check tokens; tampered, expired and cross-purpose tokens refused with
# one generic message; a keys file others can read refused. No database.
. "$(dirname "$0")/lib.sh"

TMP=$(mktemp -d "${TMPDIR:-/tmp}/assent-cli-tokens-XXXXXX")
cli_at_exit "rm -rf '$TMP'"
KEYS=$TMP/keys.conf
CONF=$TMP/assent.conf
cat >"$CONF" <<EOF
database = { dsn = "x"; };
tokens = { keys_file = "$KEYS"; confirm_ttl = 3600; };
EOF

json_get() {	# json_get EXPR: evaluate EXPR over d = the JSON in $OUT
	printf '%s' "$OUT" | /usr/bin/python3 -c \
	    'import json,sys; d=json.load(sys.stdin); print('"$1"')'
}

# --- before there is a keys file -------------------------------------------
run_cli keys ls
assert_rc 66 "keys ls without a keys file"
assert_err_contains 'run "assent keys generate"' "says how to make one"
run_cli token make --purpose unsubscribe --subscriber 1 --list 1
assert_rc 66 "token make without a keys file"

# --- generate -----------------------------------------------------------------
run_cli keys generate
assert_rc 0 "keys generate"
assert_out_contains "$KEYS" "names the file it wrote"
assert_eq "$(stat -c %a "$KEYS")" "600" "the keys file has mode 0600"
secret=$(sed -n 's/.*secret = "\([^"]*\)".*/\1/p' "$KEYS" | head -n 1)
if [ -n "$secret" ]; then ok "the file holds a secret"; else not_ok "the file holds a secret"; fi
before=$(cat "$KEYS")
run_cli keys generate
assert_rc 73 "keys generate refuses to overwrite"
assert_err_contains "exists already" "and says so"
assert_eq "$(cat "$KEYS")" "$before" "the file is unchanged"

run_cli keys ls
assert_rc 0 "keys ls"
assert_out_contains "CURRENT" "prints a table"
assert_out_lacks "$secret" "never prints a secret"
run_cli --json keys ls
got=$(json_get '[(k["id"], k["current"]) for k in d]')
assert_eq "$got" "[(1, True)]" "one key, id 1, current"

# --- make and check -------------------------------------------------------------
run_cli token make --purpose unsubscribe --subscriber 5 --list 3 --campaign 9
assert_rc 0 "token make"
tok=$(printf '%s\n' "$OUT" | tail -n 1)
assert_eq "${#tok}" "64" "the token is the last line, 64 characters"
if [[ $tok =~ ^[A-Za-z0-9_-]+$ ]]; then ok "URL-safe characters only"
else not_ok "URL-safe characters only"; fi

run_cli token check "$tok"
assert_rc 0 "token check of a fresh token"
assert_out_contains "unsubscribe" "shows the purpose"
assert_out_contains "expires:    never" "unsubscribe tokens never expire"
run_cli --json token check "$tok" --purpose unsubscribe
assert_rc 0 "token check --purpose unsubscribe --json"
got=$(json_get 'd["valid"], d["purpose"], d["subscriber"], d["list"], d["campaign"], d["all_lists"], d["key_id"]')
assert_eq "$got" "True unsubscribe 5 3 9 False 1" "JSON has the decoded fields"

run_cli token check "$tok" --purpose confirm
assert_rc 65 "an unsubscribe token does not pass as confirm"
assert_eq "$ERR" "assent: invalid token" "with the generic message only"

# tampered: one character changed, in the middle and at the end
mid=${tok:0:30}$( [ "${tok:30:1}" = A ] && echo B || echo A )${tok:31}
run_cli token check "$mid"
assert_rc 65 "a tampered token is refused"
assert_eq "$ERR" "assent: invalid token" "with the generic message only"
run_cli token check "${tok:0:63}"
assert_rc 65 "a truncated token is refused"
run_cli token check "${tok}="
assert_rc 65 "a padded token is refused"
run_cli token check "not a token"
assert_rc 65 "junk is refused"
assert_eq "$ERR" "assent: invalid token" "with the same message"

run_cli --json token make --purpose manage --subscriber 7 --all
assert_rc 0 "token make --json"
mtok=$(json_get 'd["token"]')
got=$(json_get 'd["purpose"], d["subscriber"], d["list"], d["all_lists"]')
assert_eq "$got" "manage 7 None True" "JSON describes the token"
run_cli token check "$mtok"
assert_rc 0 "a manage token for all lists checks"
assert_out_contains "list:       all" "for all lists"

# --- usage -------------------------------------------------------------------------
run_cli token make --purpose unsubscribe --subscriber 5 --list 3 --all
assert_rc 64 "--list and --all together"
run_cli token make --purpose nonsense --subscriber 5 --list 3
assert_rc 64 "an unknown purpose"
run_cli token make --purpose unsubscribe --subscriber 0 --list 3
assert_rc 64 "subscriber 0"
run_cli token make --purpose unsubscribe --subscriber 5
assert_rc 65 "an unsubscribe token needs a list"
assert_err_contains "needs a list or all lists" "and says so"
run_cli token make --purpose confirm --subscriber 5 --all
assert_rc 65 "a confirm token needs one list"
run_cli token check "$tok" --purpose nonsense
assert_rc 64 "check with an unknown purpose"

# --- time ------------------------------------------------------------------------
run_cli token make --purpose confirm --subscriber 5 --list 3
ctok=$(printf '%s\n' "$OUT" | tail -n 1)
run_cli token check "$ctok" --purpose confirm
assert_rc 0 "a fresh confirm token checks"
assert_out_contains "expires:" "and shows when it expires"
run_cli token make --purpose confirm --subscriber 5 --list 3 \
    --issued-at "$(( $(date +%s) - 3601 ))"
run_cli token check "$(printf '%s\n' "$OUT" | tail -n 1)"
assert_rc 65 "a confirm token older than tokens.confirm_ttl is refused"
run_cli token make --purpose unsubscribe --subscriber 5 --list 3 \
    --issued-at 2016-01-01T00:00:00Z
run_cli token check "$(printf '%s\n' "$OUT" | tail -n 1)"
assert_rc 0 "an unsubscribe token ten years old still checks"
run_cli token make --purpose bounce --subscriber 5 \
    --issued-at "$(( $(date +%s) + 86400 ))"
run_cli token check "$(printf '%s\n' "$OUT" | tail -n 1)"
assert_rc 65 "a token from the future is refused"

# --- rotate ------------------------------------------------------------------------
run_cli keys rotate
assert_rc 0 "keys rotate"
assert_out_contains "key 2 is now current" "names the new key"
assert_eq "$(stat -c %a "$KEYS")" "600" "still mode 0600"
run_cli token check "$tok"
assert_rc 0 "a token of the retired key still checks"
assert_out_contains "key:        1" "signed by key 1"
run_cli --json token make --purpose unsubscribe --subscriber 5 --list 3
got=$(json_get 'd["key_id"]')
assert_eq "$got" "2" "new tokens are signed with key 2"
run_cli --json keys ls
got=$(json_get '[(k["id"], k["current"]) for k in d]')
assert_eq "$got" "[(1, False), (2, True)]" "keys ls shows both, 2 current"

# --- another keys file, no config --------------------------------------------------
run_bin keys generate --file "$TMP/other.conf"
assert_rc 0 "keys generate --file needs no configuration"
run_bin keys ls --file "$TMP/other.conf"
assert_rc 0 "keys ls --file"
cat >"$TMP/other-assent.conf" <<EOF
database = { dsn = "x"; };
tokens = { keys_file = "$TMP/other.conf"; };
EOF
run_bin -c "$TMP/other-assent.conf" token check "$tok"
assert_rc 65 "a token of other keys is refused"

# --- a keys file others may read -----------------------------------------------------
chmod 644 "$KEYS"
run_cli token make --purpose unsubscribe --subscriber 5 --list 3
assert_rc 78 "a keys file others can read is refused"
assert_err_contains "readable by group or others" "and says why"
run_cli keys ls
assert_rc 78 "keys ls refuses it too"
run_bin keys ls --file "$KEYS"
assert_rc 78 "and so does keys ls --file"
run_bin keys rotate --file "$KEYS"
assert_rc 78 "and keys rotate --file"
chmod 600 "$KEYS"
run_cli token check "$tok"
assert_rc 0 "accepted again at 0600"

finish

#!/bin/bash
# assent export as an operator meets it: a list's subscribers out as CSV
# or JSON, against a real PostgreSQL, read back with Python's csv and
# json modules.
. "$(dirname "$0")/lib.sh"
cli_setup_db

sql()
{
	psql -X -q -t -A -v ON_ERROR_STOP=1 -d "$CLI_DB" -c "$1"
}

# rows FORMAT FILE EXPR [EMAIL]: print EXPR over the export in FILE,
# where rows is a list of dicts (CSV values as text), by the same by
# email, header the CSV header and r the row of EMAIL.
cat >"$CLI_TMP/read.py" <<'EOF'
import csv, io, json, re, sys
fmt, path, expr = sys.argv[1:4]
with open(path, 'rb') as f:
    data = f.read().decode('utf-8')
header = None
if fmt == 'csv':
    records = list(csv.reader(io.StringIO(data, newline=''), strict=True))
    header, rows = records[0], [dict(zip(records[0], r)) for r in records[1:]]
    assert all(len(r) == len(header) for r in records), 'ragged CSV'
else:
    rows = json.loads(data)
by = {r['email']: r for r in rows}
if len(sys.argv) > 4:
    r = by[sys.argv[4]]
print(eval(expr))
EOF
rows()
{
	/usr/bin/python3 "$CLI_TMP/read.py" "$@" 2>&1
}
# The same over the last command's stdout.
out_rows()
{
	printf '%s' "$OUT" >"$CLI_TMP/stdout.data"
	rows "$1" "$CLI_TMP/stdout.data" "${@:2}"
}

run_cli keys generate
assert_rc 0 "keys generate (the gate needs the pepper)"

# --- a double opt-in list with every status -------------------------------
run_cli list create letters --double-optin
run_cli list create other
add_confirmed()
{
	run_cli sub add "$1" --list letters --source "desk" "${@:2}" &&
	    run_cli sub confirm "$1" --list letters --source "phone"
}
add_confirmed ann@example.org --name 'Smith, "Jo"'
assert_rc 0 "ann subscribed and confirmed"
# Attribute values with a comma, a quote and a newline (the CLI keeps
# names and attributes to one line; an import or a form may not).
sql "UPDATE subscribers SET attrs = jsonb_build_object('note', E'line 1\nline 2, \"q\"', 'city', 'Zürich') WHERE email_key = 'ann@example.org'"
run_cli sub add ann@example.org --list other --source "desk"
assert_rc 0 "ann on another list too (a newer event there)"
run_cli sub add pat@example.org --list letters --source "web"
assert_rc 0 "pat is pending"
add_confirmed uma@example.org
run_cli sub unsubscribe uma@example.org --list letters --source "her mail"
assert_rc 0 "uma unsubscribed"
add_confirmed sid@example.org
run_cli suppress add sid@example.org --reason manual
assert_rc 0 "sid is suppressed by address"
add_confirmed dan@blocked.example
run_cli suppress add @blocked.example --reason hard-bounce
assert_rc 0 "dan is suppressed by his domain"
add_confirmed hal@example.org
run_cli suppress add hal@example.org --reason complaint --hashed
assert_rc 0 "hal is suppressed by a keyed hash"
add_confirmed eve@example.org
run_cli sub erase eve@example.org --reason "ticket 1"
assert_rc 0 "eve is erased"
run_cli sub add ivy@example.org --list letters --source "purchase" \
	--basis implied --expires 2999-01-31
run_cli sub confirm ivy@example.org --list letters --source "link"
assert_rc 0 "ivy is confirmed on implied consent"
run_cli sub add oli@example.org --list other --source "desk"
assert_rc 0 "oli is on the other list only"

# --- the default: confirmed, CSV, stdout ----------------------------------
run_cli export --list letters
assert_rc 0 "export --list letters"
assert_eq "$(out_rows csv 'header')" \
	"['email', 'name', 'status', 'basis', 'basis_expires_at', 'subscribed_at', 'last_event_at', 'last_event_action', 'last_event_channel', 'suppressed', 'attrs']" \
	"the CSV header names the columns"
assert_eq "$(out_rows csv '[(r["email"], r["status"]) for r in rows]')" \
	"[('ann@example.org', 'confirmed'), ('sid@example.org', 'confirmed'), ('dan@blocked.example', 'confirmed'), ('hal@example.org', 'confirmed'), ('ivy@example.org', 'confirmed')]" \
	"the default is the confirmed subscribers, in subscriber order"
assert_err_contains "exported 5 subscribers of letters (3 suppressed)" \
	"the summary goes to stderr"
[[ $OUT != *exported* ]] && ok "stdout holds only the data" ||
	not_ok "stdout holds only the data"
assert_eq "$(out_rows csv 'by["ann@example.org"]["name"]')" 'Smith, "Jo"' \
	"a name with a comma and quotes reads back the same"
assert_eq "$(out_rows csv 'json.loads(by["ann@example.org"]["attrs"]) == {"note": "line 1\nline 2, \"q\"", "city": "Zürich"}')" \
	"True" "attributes with a newline, comma and quote read back as the same object"
assert_eq "$(out_rows csv '[by[e]["suppressed"] for e in ("ann@example.org", "sid@example.org", "dan@blocked.example", "hal@example.org")]')" \
	"['', 'manual', 'hard-bounce', 'complaint']" \
	"suppressed names the reason, through address, domain and hash entries"
assert_eq "$(out_rows csv '(r["last_event_action"], r["last_event_channel"], r["basis"], r["basis_expires_at"])' ann@example.org)" \
	"('confirm', 'cli', 'express', '')" \
	"the last event is this list's (not the newer one on another list)"
assert_eq "$(out_rows csv '(r["basis"], r["basis_expires_at"])' ivy@example.org)" \
	"('implied', '2999-01-31T00:00:00Z')" "implied consent carries its expiry"
assert_eq "$(out_rows csv 'all(re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", r[k]) for r in rows for k in ("subscribed_at", "last_event_at"))')" \
	"True" "times are ISO 8601 UTC"
case $OUT in
*$'\r\n'*) ok "CSV records end in CRLF" ;;
*) not_ok "CSV records end in CRLF" ;;
esac
assert_eq "$(sql "SELECT to_char(s.created_at, 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"') FROM subscriptions s JOIN subscribers p ON p.id = s.subscriber_id JOIN lists l ON l.id = s.list_id WHERE p.email_key = 'ann@example.org' AND l.name = 'letters'" | tr -d '\n')" \
	"$(out_rows csv 'by["ann@example.org"]["subscribed_at"]')" \
	"subscribed_at is when the subscription began"

# --- statuses ---------------------------------------------------------------
run_cli export --list LETTERS --status all
assert_rc 0 "--status all (the list name in any case)"
assert_eq "$(out_rows csv 'sorted((r["email"], r["status"]) for r in rows)')" \
	"[('ann@example.org', 'confirmed'), ('dan@blocked.example', 'confirmed'), ('hal@example.org', 'confirmed'), ('ivy@example.org', 'confirmed'), ('pat@example.org', 'pending'), ('sid@example.org', 'confirmed'), ('uma@example.org', 'unsubscribed')]" \
	"--status all has everyone with their status, not the erased, not other lists"
assert_eq "$(out_rows csv '(r["last_event_action"], r["last_event_channel"])' uma@example.org)" \
	"('unsubscribe', 'cli')" "the unsubscribe is the last event"
assert_eq "$(out_rows csv '(r["last_event_action"], r["last_event_channel"])' pat@example.org)" \
	"('subscribe', 'cli')" "last_event_channel is cli after sub add"
assert_out_lacks "eve@" "the erased subscriber is not exported"
run_cli export --list letters --status pending
assert_eq "$(out_rows csv '[r["email"] for r in rows]')" "['pat@example.org']" \
	"--status pending"
run_cli export --list letters --status unsubscribed
assert_eq "$(out_rows csv '[r["email"] for r in rows]')" "['uma@example.org']" \
	"--status unsubscribed"

# --- JSON ---------------------------------------------------------------------
run_cli export --list letters --format json
assert_rc 0 "--format json"
assert_eq "$(out_rows json '(type(r["attrs"]).__name__, r["attrs"]["note"], r["name"], r["basis_expires_at"], r["suppressed"])' ann@example.org)" \
	"('dict', 'line 1\nline 2, \"q\"', 'Smith, \"Jo\"', None, None)" \
	"attrs is an object, absent values are null"
assert_eq "$(out_rows json '[(r["email"], r["suppressed"]) for r in rows]')" \
	"[('ann@example.org', None), ('sid@example.org', 'manual'), ('dan@blocked.example', 'hard-bounce'), ('hal@example.org', 'complaint'), ('ivy@example.org', None)]" \
	"the JSON has the same records"
assert_eq "$(out_rows json 'list(rows[0].keys())')" \
	"['email', 'name', 'status', 'basis', 'basis_expires_at', 'subscribed_at', 'last_event_at', 'last_event_action', 'last_event_channel', 'suppressed', 'attrs']" \
	"the members come in the columns' order"
assert_eq "$(printf '%s\n' "$OUT" | head -n 1)" "[" "the array opens on a line of its own"
assert_eq "$(printf '%s\n' "$OUT" | wc -l)" "7" "one object a line"

# --- --out ------------------------------------------------------------------------
printf 'old\n' >"$CLI_TMP/out.csv.tmp"
chmod 644 "$CLI_TMP/out.csv.tmp"
run_cli export --list letters --status all --out "$CLI_TMP/out.csv"
assert_rc 0 "--out FILE"
assert_eq "$OUT" "" "nothing on stdout"
assert_err_contains "exported 7 subscribers of letters (3 suppressed)" "the summary on stderr"
assert_eq "$(stat -c %a "$CLI_TMP/out.csv")" "600" "the file is mode 0600"
assert_eq "$(cat "$CLI_TMP/out.csv.tmp")" "old" "a user's FILE.tmp is left alone"
assert_eq "$(ls "$CLI_TMP" | grep -c '^out\.csv\.')" "1" "no temporary file is left"
assert_eq "$(rows csv "$CLI_TMP/out.csv" 'len(rows), by["ann@example.org"]["name"]')" \
	"(7, 'Smith, \"Jo\"')" "the file holds the export"
run_cli --json export --list letters --format json --out "$CLI_TMP/out.json"
assert_rc 0 "--json with --out"
assert_eq "$(printf '%s' "$OUT" | /usr/bin/python3 -c 'import json,sys; d=json.load(sys.stdin); print(d["list"], d["status"], d["rows"], d["suppressed"], d["file"].endswith("/out.json"))')" \
	"letters confirmed 5 3 True" "prints the summary as JSON"
assert_eq "$(rows json "$CLI_TMP/out.json" 'len(rows)')" "5" "and the file is JSON"

# --- refusals -----------------------------------------------------------------
run_cli export --list nosuch
assert_rc 65 "an unknown list exits 65"
assert_err_contains 'unknown list "nosuch"' "and names it"
run_cli export --list nosuch --out "$CLI_TMP/none.csv"
assert_rc 65 "an unknown list with --out exits 65"
[ ! -e "$CLI_TMP/none.csv" ] && [ "$(ls "$CLI_TMP" | grep -c '^none\.csv')" = 0 ] &&
	ok "and leaves no file" || not_ok "and leaves no file"
# A FIFO, a device or a directory is never replaced by the export.
mkfifo "$CLI_TMP/fifo"
run_cli export --list letters --out "$CLI_TMP/fifo"
assert_rc 73 "--out to a FIFO is refused"
assert_err_contains "not a regular file" "and says why"
[ -p "$CLI_TMP/fifo" ] && ok "the FIFO is still a FIFO" || not_ok "the FIFO is still a FIFO"
run_cli export --list letters --status bounced
assert_rc 64 "a bad --status exits 64"
assert_err_contains "--status" "and says which option"
run_cli export --list letters --format xml
assert_rc 64 "a bad --format exits 64"
run_cli export
assert_rc 64 "--list is required"
run_cli export --list letters extra
assert_rc 64 "no positional arguments"
run_cli export --list letters --out "$CLI_TMP/no/such/dir/x.csv"
assert_rc 73 "an --out that cannot be created exits 73"
run_cli export --help
assert_rc 0 "export --help"
assert_out_contains "--list NAME" "shows the usage"

# --- an empty list, and one bigger than a fetch ---------------------------
run_cli list create empty
run_cli export --list empty
assert_rc 0 "an empty list"
assert_eq "$(out_rows csv 'len(header), len(rows)')" "(11, 0)" "is the header alone"
run_cli export --list empty --format json
assert_eq "$OUT" "$(printf '[\n]')" "or an empty array"

run_cli list create big
sql "BEGIN;
INSERT INTO subscribers (email, email_key)
	SELECT 'bulk' || g || '@example.com', 'bulk' || g || '@example.com'
	FROM generate_series(1, 4500) g;
INSERT INTO ledger (subscriber_id, list_id, action, channel, status_after, operator, source)
	SELECT p.id, l.id, 'subscribe', 'cli', 'confirmed', 'test', 'bulk'
	FROM subscribers p, lists l WHERE p.email LIKE 'bulk%' AND l.name = 'big';
INSERT INTO subscriptions (subscriber_id, list_id, status)
	SELECT p.id, l.id, 'confirmed'
	FROM subscribers p, lists l WHERE p.email LIKE 'bulk%' AND l.name = 'big';
COMMIT;" >/dev/null
run_cli suppress add bulk4321@example.com --reason manual
run_cli export --list big --format json --out "$CLI_TMP/big.json"
assert_rc 0 "a list of 4500 (three fetches)"
assert_eq "$(rows json "$CLI_TMP/big.json" 'len(rows), len(by), [r["email"] for r in rows if r["suppressed"]]')" \
	"(4500, 4500, ['bulk4321@example.com'])" \
	"every subscriber once, the gate asked in the last batch too"
assert_err_contains "exported 4500 subscribers of big (1 suppressed)" "and counted"

finish

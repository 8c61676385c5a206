#!/bin/bash
# The data subject's rights as an operator meets them: assent sub
# export, rectify, unsubscribe and erase, with their exit codes.
. "$(dirname "$0")/lib.sh"
cli_setup_db

py()
{
	printf '%s' "$OUT" | /usr/bin/python3 -c "import json,sys; d=json.load(sys.stdin); $1"
}

sql()
{
	psql -X -q -t -A -d "$CLI_DB" -c "$1"
}

run_cli keys generate
assert_rc 0 "keys generate"
run_cli list create news
run_cli list create letters --double-optin
run_cli sub add Zelda.Quimby@Example.NET --list news --source "signup desk" \
	--name "Zelda Quimby" --ip 192.0.2.7 --user-agent "zelda.quimby's browser"
assert_rc 0 "sub add to news"
run_cli sub add zelda.quimby@example.net --list letters --source "web form"
run_cli sub confirm zelda.quimby@example.net --list letters --source "confirm link"
assert_rc 0 "confirmed on letters"

# --- export ---------------------------------------------------------------
run_cli sub export zelda.quimby@example.net
assert_rc 0 "export to stdout"
assert_eq "$(py 'print(d["format"], d["profile"]["email"], d["profile"]["name"], len(d["subscriptions"]), len(d["history"]), [(m["kind"], m["list"], m["state"]) for m in d["messages"]])')" \
	"assent-subject-export/1 Zelda.Quimby@example.net Zelda Quimby 2 3 [('confirmation request', 'letters', 'queued')]" \
	"the export has profile, subscriptions, history and messages (the confirmation request)"
assert_eq "$(py 'e=d["history"][0]; print(e["ip"], e["user_agent"], e["source"], e["operator"])')" \
	"192.0.2.7 zelda.quimby's browser signup desk $(id -un)" \
	"and the evidence of each event"
run_cli sub export zelda.quimby@example.net --out "$CLI_TMP/zelda.json"
assert_rc 0 "export --out FILE"
assert_out_contains "wrote the export of Zelda.Quimby@example.net to $CLI_TMP/zelda.json" \
	"says where it went"
assert_eq "$(stat -c %a "$CLI_TMP/zelda.json")" "600" "the file is mode 0600"
OUT=$(cat "$CLI_TMP/zelda.json")
assert_eq "$(py 'print(d["format"])')" "assent-subject-export/1" "the file is the document"
run_cli sub export zelda.quimby@example.net --out "$CLI_TMP/zelda.json"
assert_rc 73 "an existing file is not overwritten"
assert_err_contains "never overwrites" "and says so"
run_cli sub export nobody@example.net
assert_rc 65 "export of an unknown address exits 65"
assert_err_contains "no subscriber nobody@example.net" "and says so"
run_cli sub export nobody@example.net --out "$CLI_TMP/nobody.json"
assert_rc 65 "export --out of an unknown address exits 65"
[ ! -e "$CLI_TMP/nobody.json" ] && ok "and leaves no file" || not_ok "and leaves no file"
run_cli sub export 'not an address'
assert_rc 65 "export of an invalid address exits 65"

# --- rectify --------------------------------------------------------------
run_cli sub rectify zelda.quimby@example.net --name "Zelda Q."
assert_rc 64 "rectify without --reason"
run_cli sub rectify zelda.quimby@example.net --reason "x"
assert_rc 64 "rectify with nothing to change"
run_cli sub rectify zelda.quimby@example.net --attr city --reason "x"
assert_rc 64 "--attr needs KEY=VALUE"
run_cli sub rectify zelda.quimby@example.net --name "Zelda Q." --attr city=Oslo \
	--attr=zip=0150 --reason "typo, ticket 12"
assert_rc 0 "rectify name and attributes"
assert_out_contains "rectified name, attrs.city, attrs.zip" "names the fields changed"
run_cli --json sub show zelda.quimby@example.net
assert_eq "$(py 'print(d["name"], sorted(d["attrs"].items()))')" \
	"Zelda Q. [('city', 'Oslo'), ('zip', '0150')]" \
	"the profile has the new values"
assert_eq "$(py 'e=d["history"][-1]; print(e["action"], e["list"], e["source"])')" \
	"rectify * rectified name, attrs.city, attrs.zip; reason: typo, ticket 12" \
	"one all-lists ledger event that names fields, not values"
run_cli sub rectify zelda.quimby@example.net --attr zip= --reason "not needed"
assert_rc 0 "an empty value removes an attribute"
run_cli sub rectify zelda.quimby@example.net --attr zip= --reason "again"
assert_out_contains "nothing changed" "removing it again changes nothing"
run_cli sub add other@example.net --list news --source desk
run_cli sub rectify zelda.quimby@example.net --email OTHER@example.net --reason "x"
assert_rc 65 "an address another subscriber has is refused"
assert_err_contains "another subscriber has OTHER@example.net" "and says so"
run_cli sub rectify zelda.quimby@example.net --email "Zelda@Quimby.Example" \
	--reason "new mailbox"
assert_rc 0 "rectify the address"
assert_out_contains "Zelda@quimby.example: rectified email" "the new address, normalised"
assert_out_contains "pending reconfirmation of the new address on: letters" \
	"the double-opt-in list waits for a new confirmation"
run_cli --json sub show zelda@quimby.example
assert_eq "$(py 'print(sorted((s["list"], s["status"]) for s in d["subscriptions"]))')" \
	"[('letters', 'pending'), ('news', 'confirmed')]" "letters pending, news still confirmed"
run_cli sub show zelda.quimby@example.net
assert_rc 65 "the old address is not found any more"
run_cli sub rectify nobody@example.net --name X --reason x
assert_rc 65 "rectify of an unknown address exits 65"

# --- unsubscribe ----------------------------------------------------------
run_cli sub unsubscribe zelda@quimby.example --source "phone"
assert_rc 64 "unsubscribe needs --list or --all"
run_cli sub unsubscribe zelda@quimby.example --list news --all --source "phone"
assert_rc 64 "but not both"
run_cli sub unsubscribe zelda@quimby.example --list news
assert_rc 64 "unsubscribe needs --source"
run_cli sub unsubscribe zelda@quimby.example --list news --source "phone call"
assert_rc 0 "unsubscribe from one list"
assert_out_contains "Zelda@quimby.example: unsubscribed from news" "says so"
run_cli sub unsubscribe zelda@quimby.example --list news --source "phone call"
assert_rc 0 "unsubscribing again exits 0"
assert_out_contains "already unsubscribed from news; nothing changed" "and says so"
assert_eq "$(sql "SELECT count(*) FROM ledger WHERE action = 'unsubscribe'")" "1" \
	"with no second event"
run_cli sub unsubscribe zelda@quimby.example --list nolist --source x
assert_rc 65 "an unknown list exits 65"
run_cli sub unsubscribe other@example.net --list letters --source x
assert_rc 65 "a list one is not subscribed to exits 65"
run_cli sub unsubscribe zelda@quimby.example --all --source "letter of objection"
assert_rc 0 "unsubscribe --all"
assert_out_contains "unsubscribed from letters" "ends what was left"
assert_out_contains "suppressed (unsubscribe)" "and suppresses the address"
run_cli suppress check zelda@quimby.example
assert_out_contains "suppressed: unsubscribe" "suppress check agrees"

# --- erase ----------------------------------------------------------------
run_cli sub erase zelda@quimby.example
assert_rc 64 "erase without --reason"
run_cli sub erase zelda@quimby.example --reason "mail from zelda@quimby.example"
assert_rc 65 "a reason naming the person is refused"
assert_err_contains "must not name the person" "and says why"
run_cli sub erase nobody@example.net --reason "ticket 1"
assert_rc 65 "erase of an unknown address exits 65"
run_cli sub erase Zelda@quimby.example --reason "ticket 4711"
assert_rc 0 "erase"
assert_out_contains "erased Zelda@quimby.example (subscriber 1)" "says who was erased"
assert_out_contains "stays suppressed" "and that the address stays suppressed"
run_cli sub show zelda@quimby.example
assert_rc 65 "sub show finds nothing"
assert_err_contains "no subscriber" "and says so"
run_cli sub export zelda@quimby.example
assert_rc 65 "sub export finds nothing"
assert_err_contains "erased" "and says the address was erased"
run_cli suppress check zelda@quimby.example
assert_rc 0 "suppress check"
assert_out_contains "suppressed: erasure" "still answers suppressed (erasure)"
run_cli sub erase zelda@quimby.example --reason "ticket 4711"
assert_rc 65 "erasing again exits 65"
hits=$(sql "SELECT count(*) FROM subscribers WHERE email ILIKE '%quimby%' OR name ILIKE '%quimby%'")
hits=$((hits + $(sql "SELECT count(*) FROM ledger WHERE concat(source, ip, user_agent, page) ILIKE '%quimby%'")))
hits=$((hits + $(sql "SELECT count(*) FROM suppressions WHERE concat(value, source, removed_reason) ILIKE '%quimby%'")))
hits=$((hits + $(sql "SELECT count(*) FROM audit WHERE concat(subject, detail) ILIKE '%quimby%'")))
assert_eq "$hits" "0" "no plain trace of the address or the name is left"
run_cli ledger verify
assert_rc 0 "the ledger still verifies"

# An erased address comes back only with fresh evidence of consent,
# given when its erasure entry is removed (which is audited).
run_cli list ls --json
first_list=$(printf '%s' "$OUT" | /usr/bin/python3 -c 'import json,sys; print(json.load(sys.stdin)[0]["name"])')
run_cli sub add ZELDA@quimby.example --list "$first_list" --source "old spreadsheet"
assert_rc 65 "adding an erased address again is refused"
assert_err_contains "was erased" "and says why"
run_cli sub add zelda@quimby.example --list "$first_list" --source "signed form" --resubscribe
assert_rc 65 "--resubscribe alone does not lift an erasure"
run_cli suppress rm zelda@quimby.example --hashed --force --reason "signed form 2026-11-22, ticket 9"
assert_rc 0 "removing the erasure entry, with the evidence as reason"
run_cli sub add zelda@quimby.example --list "$first_list" --source "signed form 2026-11-22"
assert_rc 0 "then the address can subscribe again"

# --- the audit table ------------------------------------------------------
run_cli suppress add gone@example.org --reason manual
run_cli suppress rm gone@example.org --reason "added by mistake"
assert_rc 0 "suppress rm"
assert_eq "$(sql "SELECT string_agg(action || ':' || subject || ':' || operator || ':' || (host <> ''), ',' ORDER BY id) FROM audit")" \
	"export:subscriber 1:$(id -un):true,export:subscriber 1:$(id -un):true,rectify:subscriber 1:$(id -un):true,rectify:subscriber 1:$(id -un):true,rectify:subscriber 1:$(id -un):true,erase:subscriber 1:$(id -un):true,suppress-remove:suppression $(sql "SELECT id FROM suppressions WHERE reason = 'erasure'"):$(id -un):true,suppress-remove:suppression $(sql "SELECT id FROM suppressions WHERE value = 'gone@example.org'"):$(id -un):true" \
	"export, rectify, erase and suppress rm are audited"
assert_eq "$(sql "UPDATE audit SET host = 'x'" 2>&1 | grep -c 'append-only')" "1" \
	"the database refuses to change an audit row"

finish

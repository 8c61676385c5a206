#!/bin/bash
# The global suppression list as an operator meets it: assent suppress
# add, check, rm, ls, import and export against a real PostgreSQL.
. "$(dirname "$0")/lib.sh"
cli_setup_db

py()
{
	printf '%s' "$OUT" | /usr/bin/python3 -c "import json,sys; d=json.load(sys.stdin); $1"
}

# The gate checks hashed entries too, so it needs the pepper.
run_cli suppress check foo@example.com
assert_rc 66 "check without a keys file fails"
assert_err_contains "assent keys generate" "and says how to make one"
run_cli keys generate
assert_rc 0 "keys generate"

# Done when: add Foo@EXAMPLE.com, check foo@example.COM.
run_cli suppress add Foo@EXAMPLE.com --reason manual
assert_rc 0 "suppress add Foo@EXAMPLE.com --reason manual"
assert_out_contains "suppressed address foo@example.com (manual)" "add says what it stored"
run_cli suppress check foo@example.COM
assert_rc 0 "check of a suppressed address exits 0"
assert_out_contains "suppressed: manual (entry 1, address foo@example.com" \
	"check names the entry"
assert_out_contains "by $(id -un)" "and who added it"
run_cli suppress add foo@example.com --reason complaint
assert_rc 0 "adding it again is not an error"
assert_out_contains "already suppressed by entry 1" "and says nothing changed"

run_cli --json suppress check FOO@example.com
assert_rc 0 "check --json"
got=$(py 'e=d["entry"]; print(d["suppressed"], e["id"], e["kind"], e["value"], e["reason"], e["source"], e["expires_at"])')
assert_eq "$got" "True 1 address foo@example.com manual cli None" "check --json has the entry"
run_cli suppress check nobody@example.org --json
assert_rc 0 "check of an address that is not suppressed exits 0"
assert_eq "$(py 'print(d["suppressed"], d["entry"])')" "False None" "--json says so"
run_cli suppress check nobody@example.org
assert_out_contains "not suppressed" "and so does the text"

run_cli suppress check 'a..b@example.org'
assert_rc 65 "check of an invalid address exits 65"
assert_err_contains "invalid address" "and names the problem"
run_cli suppress add a@example.org
assert_rc 64 "add without --reason"
run_cli suppress add a@example.org --reason because
assert_rc 65 "add with an unknown reason"
assert_err_contains "unknown reason" "names it"

# Domains (U-label and A-label alike), holds with an expiry.
run_cli suppress add @Bücher.example --reason hard-bounce --source "bounce 7" \
	--expires 2999-01-01
assert_rc 0 "add a domain with an expiry"
run_cli suppress check x@xn--bcher-kva.example
assert_out_contains "suppressed: hard-bounce" "the domain suppresses its addresses"
assert_out_contains "until 2999-01-01T00:00:00Z" "check shows the expiry"
run_cli suppress check x@sub.bücher.example
assert_out_contains "not suppressed" "but not its subdomains"
run_cli suppress add b@example.org --reason manual --expires 2001-01-01
assert_rc 65 "an expiry in the past is refused"
run_cli suppress add b@example.org --reason manual --expires tomorrow
assert_rc 65 "an expiry that is no date is refused"
assert_err_contains "ISO 8601" "and the form is explained"

# An erasure keeps no plain address.
run_cli suppress add Gone@Example.org --reason erasure
assert_rc 0 "add --reason erasure"
run_cli suppress check gone@example.org
assert_out_contains "suppressed: erasure" "the erased address stays suppressed"
run_cli suppress ls
assert_out_lacks "gone@" "and is listed only as its hash"

# Removal: a reason always, --force for complaints and erasures.
run_cli suppress add c@example.org --reason complaint
run_cli suppress rm c@example.org
assert_rc 64 "rm without --reason"
run_cli suppress rm c@example.org --reason "asked by phone"
assert_rc 65 "rm of a complaint without --force is refused"
assert_err_contains "--force" "and says how"
run_cli suppress rm c@example.org --reason "asked by phone" --force
assert_rc 0 "rm --force"
run_cli suppress check c@example.org
assert_out_contains "not suppressed" "a removed entry no longer suppresses"
run_cli suppress rm c@example.org --reason again
assert_rc 65 "removing it twice is refused"
run_cli --json suppress ls --all --reason complaint
got=$(py 'e=d[0]; print(e["value"], e["removed_by"], e["removed_reason"], e["active"])')
assert_eq "$got" "c@example.org $(id -un) asked by phone False" "ls --all keeps who removed it and why"

run_cli suppress ls --limit 1
assert_rc 0 "ls --limit 1"
assert_out_contains "(more entries: repeat with --after 1)" "ls says how to get the next page"
run_cli suppress ls --limit 3
assert_out_lacks "(more" "and says nothing when the page is the last"
run_cli suppress ls --limit 0
assert_rc 64 "ls --limit 0 is refused"
run_cli --json suppress ls --limit 1 --after 1
assert_eq "$(py 'print(len(d), d[0]["id"] > 1)')" "1 True" "ls --after pages on"

# Import: a mix of good, bad and duplicate lines.
{
	echo "# exported from the old system"
	echo "new1@example.org"
	echo ""
	echo "  NEW2@Example.org  "
	echo "foo@example.com"
	echo "new1@EXAMPLE.org"
	echo "bad..dots@example.org"
	echo "@example.net"
	echo "no-at-sign"
	for i in $(seq 1 25); do echo "bad$i@@example.org"; done
} >"$CLI_TMP/import.txt"
run_cli suppress import "$CLI_TMP/import.txt" --reason imported
assert_rc 0 "import"
assert_out_contains "3 added, 2 already present, 27 rejected" "import sums up"
assert_err_contains "$CLI_TMP/import.txt:7: invalid address \"bad..dots@example.org\"" \
	"a rejected line is named by file:line"
assert_err_contains "import.txt:9: invalid address" "each of the first rejected lines"
assert_err_contains "... and 7 more rejected lines" "the rest are counted"
run_cli suppress check new2@example.org
assert_out_contains "source \"import $CLI_TMP/import.txt\"" "the source names the file"
CLI_STDIN=$CLI_TMP/import.txt run_cli --json suppress import - --reason imported
assert_rc 0 "import from standard input"
assert_eq "$(py 'print(d["added"], d["already_present"], d["rejected"])')" "0 5 27" \
	"a second import adds nothing"
run_cli suppress import "$CLI_TMP/nonexistent" --reason imported
assert_rc 66 "import of a missing file"

# Export round trip.
run_cli suppress export
assert_rc 0 "export"
printf '%s\n' "$OUT" >"$CLI_TMP/export.txt"
assert_eq "$(grep -c . "$CLI_TMP/export.txt")" "6" "export writes one active entry a line"
assert_out_contains "@xn--bcher-kva.example" "domains as @domain"
assert_out_lacks "c@example.org" "removed entries are not exported"
run_cli suppress import "$CLI_TMP/export.txt" --reason imported
assert_out_contains "0 added, 6 already present, 0 rejected" "the export imports back unchanged"
run_cli suppress export --hashed
assert_rc 0 "export --hashed"
assert_out_lacks "foo@example.com" "no address in a hashed export"
assert_eq "$(printf '%s\n' "$OUT" | grep -c -E '^[0-9a-f]{64}$')" "4" "addresses become hashes"
printf '%s\n' "$OUT" >"$CLI_TMP/hashed.txt"
run_cli suppress import "$CLI_TMP/hashed.txt" --reason imported --hashed
assert_out_contains "3 added, 3 already present, 0 rejected" "hashed export imports as hash entries"

# Suppression does not touch subscriptions.
run_cli list create news
run_cli sub add foo@example.com --list news --source desk
assert_rc 0 "a suppressed address can still be subscribed"
run_cli --json sub show foo@example.com
assert_eq "$(py 'print(d["subscriptions"][0]["status"])')" "confirmed" \
	"and stays subscribed"

finish

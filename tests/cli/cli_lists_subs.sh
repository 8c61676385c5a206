#!/bin/bash
# The first slice as a user meets it: lists and subscribers through the
# assent command line, against a real PostgreSQL.
. "$(dirname "$0")/lib.sh"
cli_setup_db

run_cli list create news
assert_rc 0 "list create news"
assert_out_contains "created list news" "list create says what it did"

run_cli sub add a@example.org --list news --source "signup desk"
assert_rc 0 "sub add a@example.org"
assert_out_contains "subscribed to news (confirmed)" "single opt-in subscribes at once"

run_cli sub show a@example.org
assert_rc 0 "sub show"
assert_out_contains "news  confirmed" "show lists the subscription"
assert_out_contains "subscribe  cli      confirmed  signup desk" "show lists the ledger event"
assert_out_contains "$(id -un)" "the ledger event names the operator"

run_cli --json sub show A@Example.ORG
assert_rc 0 "sub show --json"
email=$(printf '%s' "$OUT" | /usr/bin/python3 -c 'import json,sys; d=json.load(sys.stdin); print(d["email"], d["subscriptions"][0]["list"], d["subscriptions"][0]["status"], d["history"][0]["action"], d["history"][0]["channel"], d["history"][0]["source"], "name" in d)')
assert_eq "$email" "a@example.org news confirmed subscribe cli signup desk True" "json has email, subscriptions, history"

run_cli sub show a@example.org --json
assert_rc 0 "--json after the command works too"
assert_out_contains '"history"' "--json after the command gives JSON"

# Double opt-in, evidence, confirmation.
run_cli list create letters --double-optin --description "Monthly letters"
assert_rc 0 "list create --double-optin"
printf 'Yes, send me the monthly letters.\n' > "$CLI_TMP/v1.txt"
run_cli consent-text add v1 "$CLI_TMP/v1.txt"
assert_rc 0 "consent-text add"
run_cli sub add b@Bücher.example --list letters --source "web form" --name "Bea" \
	--ip 192.0.2.7 --user-agent "Mozilla/5.0" --consent-text v1
assert_rc 0 "sub add with evidence"
assert_out_contains "pending" "double opt-in starts pending"
assert_out_contains "confirmation request" "and says a confirmation request is on its way"
run_cli sub confirm b@xn--bcher-kva.example --list letters --source "phone call"
assert_rc 0 "sub confirm"
assert_out_contains "confirmed on letters" "confirm says so"
run_cli sub confirm b@bücher.example --list letters --source "phone call"
assert_rc 0 "confirming twice is harmless"
assert_out_contains "already confirmed" "and says it changed nothing"
run_cli --json sub show b@BÜCHER.example
got=$(printf '%s' "$OUT" | /usr/bin/python3 -c 'import json,sys; d=json.load(sys.stdin); h=d["history"]; print(len(h), h[0]["ip"], h[0]["user_agent"], h[0]["consent_text_version"], h[1]["action"], d["name"])')
assert_eq "$got" "2 192.0.2.7 Mozilla/5.0 v1 confirm Bea" "history keeps the evidence"

run_cli list show letters
assert_rc 0 "list show"
assert_out_contains "confirmed:     1" "list show counts by status"
run_cli --json list ls
got=$(printf '%s' "$OUT" | /usr/bin/python3 -c 'import json,sys; print(" ".join(l["name"] for l in json.load(sys.stdin)))')
assert_eq "$got" "letters news" "list ls --json"

# Bad input: one line naming the problem, the right exit code, no change.
run_cli sub add a@example.org --list news --source "again"
assert_rc 65 "duplicate subscription is refused"
assert_err_contains "already subscribed to news" "and named"
run_cli sub add 'a..b@example.org' --list news --source x
assert_rc 65 "bad address is refused"
assert_err_contains "invalid address" "and named"
run_cli sub add c@example.org --list nosuch --source x
assert_rc 65 "unknown list is refused"
assert_err_contains 'unknown list "nosuch"' "and named"
run_cli list create "$(printf 'bad\x01name')"
assert_rc 65 "list name with a control character is refused"
assert_err_contains "invalid list name" "and named"
run_cli sub add c@example.org --list news
assert_rc 64 "--source is required"
run_cli sub add c@example.org --source x
assert_rc 64 "--list is required"
run_cli sub add c@example.org --list news --source x --bogus
assert_rc 64 "unknown option"
assert_err_contains "unknown option --bogus" "and named"
run_cli --json list ls
n=$(printf '%s' "$OUT" | /usr/bin/python3 -c 'import json,sys; print(sum(l["confirmed"]+l["pending"] for l in json.load(sys.stdin)))')
assert_eq "$n" "2" "refused commands stored nothing"

# Consent texts and the consent basis.
run_cli consent-text add v1 "$CLI_TMP/v1.txt"
assert_rc 65 "a consent text version is stored once"
assert_err_contains "exists already" "and says so"
run_cli consent-text ls
assert_rc 0 "consent-text ls"
assert_out_contains "v1" "lists the version"
run_cli consent-text show v1
assert_out_contains "Yes, send me the monthly letters." "show prints the exact wording"
run_cli sub add d@example.org --list letters --source x --consent-text v2
assert_rc 65 "an unknown consent text is refused"
assert_err_contains 'unknown consent text "v2"' "and named"
run_cli sub add e@example.org --list news --source "purchase 2026-11-20" --basis implied --expires 2028-11-20
assert_rc 0 "implied consent with an expiry"
run_cli --json sub show e@example.org
got=$(printf '%s' "$OUT" | /usr/bin/python3 -c 'import json,sys; s=json.load(sys.stdin)["subscriptions"][0]; print(s["basis"], s["basis_expires_at"], s["expired"])')
assert_eq "$got" "implied 2028-11-20T00:00:00Z False" "the basis and its expiry are kept"
run_cli sub add f@example.org --list news --source x --basis implied
assert_rc 65 "implied consent needs an expiry"

# The subscribe form of a list: its consent wording and attributes.
run_cli list edit letters
assert_rc 64 "list edit with nothing to change"
assert_err_contains "nothing to change" "says so"
run_cli list edit letters --form-consent v9
assert_rc 65 "an unknown consent wording is refused"
assert_err_contains 'unknown consent text "v9"' "naming it"
run_cli list edit letters --form-attrs "city,bad key"
assert_rc 65 "a bad attribute key is refused"
assert_err_contains '"bad key" is not a key' "naming it"
run_cli list edit letters --form-consent v1 --form-attrs city,plan
assert_rc 0 "list edit opens the form"
assert_out_contains "form consent:  v1" "list edit shows the list after"
assert_out_contains "form attrs:    city,plan" "with its form attributes"
run_cli list edit letters --form-consent v1 --close-form
assert_rc 64 "--form-consent and --close-form together are refused"
run_cli --json list edit letters --close-form --single-optin
assert_rc 0 "list edit --close-form"
got=$(printf '%s' "$OUT" | /usr/bin/python3 -c 'import json,sys; d=json.load(sys.stdin); print(d["form_consent"], d["double_optin"], d["form_attrs"])')
assert_eq "$got" "None False city,plan" "the form is closed, the list single opt-in"
run_cli list create shop --double-optin --form-consent v9
assert_rc 65 "list create with an unknown consent wording"
run_cli list show shop
assert_rc 65 "creates nothing"
run_cli list create shop --double-optin --form-consent v1 --form-attrs size
assert_rc 0 "list create with its form"
run_cli --json list show shop
got=$(printf '%s' "$OUT" | /usr/bin/python3 -c 'import json,sys; d=json.load(sys.stdin); print(d["form_consent"], d["form_attrs"])')
assert_eq "$got" "v1 size" "list create sets the form"

# Removing a list.
run_cli list rm news
assert_rc 65 "list rm refuses while it has subscribers"
assert_err_contains "--force" "and says how"
run_cli list rm news --force
assert_rc 0 "list rm --force"
assert_out_contains "2 subscriptions ended" "and says what it ended"
run_cli --json sub show a@example.org
got=$(printf '%s' "$OUT" | /usr/bin/python3 -c 'import json,sys; d=json.load(sys.stdin); print(d["subscriptions"][0]["status"], d["history"][-1]["action"])')
assert_eq "$got" "unsubscribed unsubscribe" "removal is in the ledger"

finish

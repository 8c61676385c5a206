#!/bin/bash
# assent ledger verify: intact after ordinary changes, and exit 65 naming
# the event a superuser changed behind the triggers' back.
. "$(dirname "$0")/lib.sh"
cli_setup_db

sql()
{
	psql -X -q -At -v ON_ERROR_STOP=1 -d "$CLI_DB" -c "$1"
}

run_cli ledger verify
assert_rc 0 "verify an empty ledger"
assert_out_contains "ledger intact: 0 events, head " "an empty ledger is intact"

run_cli list create news
run_cli list create letters --double-optin
run_cli sub add a@example.org --list news --source "signup desk"
run_cli sub add b@example.org --list letters --source "web form" --ip 192.0.2.7
run_cli sub add b@example.org --list news --source "web form"
run_cli sub confirm b@example.org --list letters --source "phone call"
run_cli list rm news --force
assert_rc 0 "a few changes through the CLI"

events=$(sql "SELECT count(*) FROM ledger")
run_cli ledger verify
assert_rc 0 "verify after the changes"
assert_out_contains "ledger intact: $events events, head " "verify counts every event"
head=${OUT##* }
assert_eq "${#head}" 64 "the head is a SHA-256 in hex"

run_cli --json ledger verify
assert_rc 0 "verify --json"
got=$(printf '%s' "$OUT" | /usr/bin/python3 -c 'import json,sys; d=json.load(sys.stdin); print(d["intact"], d["events"], d["subscribers"], d["head"])')
assert_eq "$got" "True $events 2 $head" "--json: intact, events, subscribers, head"

run_cli ledger verify extra
assert_rc 64 "verify takes no argument"

run_cli ledger verify --help
assert_rc 0 "verify --help"
assert_out_contains "65" "the help names the exit status for a broken ledger"

# A plain edit is refused by the database.
if out=$(sql "UPDATE ledger SET source = 'forged'" 2>&1); then
	not_ok "a plain UPDATE on the ledger is refused"
else
	ok "a plain UPDATE on the ledger is refused"
fi
assert_eq "$(printf '%s' "$out" | grep -c 'append-only')" 1 "the refusal says append-only"

# A superuser with the triggers off changes the second event of b@.
target=$(sql "SELECT l.id FROM ledger l JOIN subscribers s ON s.id = l.subscriber_id
	WHERE s.email = 'b@example.org' AND l.seq = 2")
sub=$(sql "SELECT id FROM subscribers WHERE email = 'b@example.org'")
sql "BEGIN; SET LOCAL session_replication_role = replica;
	UPDATE ledger SET source = 'forged' WHERE id = $target; COMMIT"
run_cli ledger verify
assert_rc 65 "verify finds the changed row"
assert_out_contains "ledger broken at event $target (subscriber $sub, seq 2): personal data changed" \
	"verify names the event, its subscriber and seq"

run_cli --json ledger verify
assert_rc 65 "verify --json on a broken ledger"
got=$(printf '%s' "$OUT" | /usr/bin/python3 -c 'import json,sys; d=json.load(sys.stdin); print(d["intact"], d["broken"]["event"], d["broken"]["subscriber"], d["broken"]["seq"])')
assert_eq "$got" "False $target $sub 2" "--json: the broken event"

# Put it back; then delete b@'s last event: the subscription gives it away.
sql "BEGIN; SET LOCAL session_replication_role = replica;
	UPDATE ledger SET source = 'web form' WHERE id = $target; COMMIT"
run_cli ledger verify
assert_rc 0 "intact again once the row is restored"
last=$(sql "SELECT max(l.id) FROM ledger l WHERE l.subscriber_id = $sub AND l.list_id =
	(SELECT id FROM lists WHERE name = 'letters')")
before=$(sql "SELECT max(l.id) FROM ledger l WHERE l.subscriber_id = $sub AND l.list_id =
	(SELECT id FROM lists WHERE name = 'letters') AND l.id < $last")
sql "BEGIN; SET LOCAL session_replication_role = replica;
	DELETE FROM ledger WHERE id = $last; COMMIT"
run_cli ledger verify
assert_rc 65 "verify finds a deleted event"
assert_out_contains "ledger broken at event $before (subscriber $sub, seq 1): subscription to list" \
	"verify names the event left last, through the subscription's status"

finish

#!/bin/bash
# assent inbound as operators meet it: --classify over the sample
# corpus (changes nothing), a Maildir processed with a reject folder,
# a message not understood refused (so that the MTA keeps it) or kept
# in --reject, and assent bounces ls.
. "$(dirname "$0")/lib.sh"
cli_setup_db

CORPUS=${ASSENT_SRCDIR:-$(dirname "$0")/../..}/tests/data/inbound
run_cli keys generate
assert_rc 0 "keys generate"

# --classify: no database needed, nothing changes
run_cli inbound --classify "$CORPUS/postfix-user-unknown.eml" "$CORPUS/arf-yahoo.eml" \
	"$CORPUS/autoreply-outlook.eml" "$CORPUS/junk-binary.eml"
assert_rc 0 "inbound --classify"
assert_out_contains "postfix-user-unknown.eml: dsn" "a DSN is a DSN"
assert_out_contains "bob@example.net hard 5.1.1" "with its failed recipient, class and status"
assert_out_contains "arf-yahoo.eml: arf" "an ARF report is a complaint report"
assert_out_contains "autoreply-outlook.eml: auto-reply" "an auto-reply is recognised"
assert_out_contains "junk-binary.eml: unknown" "junk is unknown"
run_cli --json inbound --classify "$CORPUS/postfix-mixed.eml"
assert_rc 0 "inbound --classify --json"
got=$(printf '%s' "$OUT" | /usr/bin/python3 -c 'import json,sys; d=json.loads(sys.stdin.readline()); print(d["kind"], [(r["class"], r["status"]) for r in d["recipients"]])')
assert_eq "$got" "dsn [('hard', '5.1.2'), ('soft', '4.2.0'), ('none', '2.0.0')]" \
	"one JSON object a message, each recipient classified"
run_cli inbound --classify --reject "$CLI_TMP" x
assert_rc 64 "--classify changes nothing, so takes no --reject"
run_cli bounces ls
assert_rc 0 "bounces ls"
assert_out_lacks "dsn" "classifying stored nothing"

# One message on standard input: not understood and no --reject: refused
# (the MTA returns it to its sender or postmaster rather than lose it)
run_cli_stdin() { local f=$1; shift; CLI_STDIN=$f run_cli "$@"; }
run_cli_stdin "$CORPUS/junk-newsletter.eml" inbound
assert_rc 65 "a message that is none of ours is refused"
assert_err_contains "not a bounce, complaint, auto-reply or unsubscribe" "saying why"
run_cli_stdin "$CORPUS/junk-not-mail.eml" inbound
assert_rc 65 "so is one that is not mail at all"
assert_err_contains "line 1 is not a header" "naming the line"
mkdir -p "$CLI_TMP/reject"
run_cli_stdin "$CORPUS/junk-not-mail.eml" inbound --reject "$CLI_TMP/reject"
assert_rc 0 "with --reject it is kept"
assert_err_contains "kept as $CLI_TMP/reject/" "and says where"
assert_eq "$(find "$CLI_TMP/reject" -type f -perm 600 | wc -l)" "1" "one file, mode 0600"
cmp -s "$CORPUS/junk-not-mail.eml" "$(find "$CLI_TMP/reject" -type f)"
assert_eq "$?" "0" "exactly the bytes that came"
run_cli_stdin "$CORPUS/autoreply-x-autoreply.eml" inbound
assert_rc 0 "an auto-reply is taken and ignored"
assert_out_contains "auto-reply: ignored" "saying so"
run_cli_stdin "$CORPUS/postfix-user-unknown.eml" inbound
assert_rc 0 "a DSN whose token does not verify is taken"
assert_out_contains "not attributed (stored, nothing done)" "stored, nothing done"

# A Maildir: handled and ignored ones move to cur/, the others to --reject
MD=$CLI_TMP/Maildir
mkdir -p "$MD/new" "$MD/cur" "$MD/tmp" "$CLI_TMP/reject2"
cp "$CORPUS/exim-plain.eml" "$MD/new/1.host"
cp "$CORPUS/autoreply-precedence.eml" "$MD/new/2.host"
cp "$CORPUS/junk-empty.eml" "$MD/new/3.host"
run_cli inbound --maildir "$MD"
assert_rc 0 "inbound --maildir without --reject"
assert_out_contains "1 handled, 1 ignored, 0 rejected, 1 left in new/" "counts each"
assert_eq "$(ls "$MD/new")" "3.host" "what was not understood stays in new/"
assert_eq "$(ls "$MD/cur" | tr '\n' ' ')" "1.host:2,S 2.host:2,S " "the others are in cur/, seen"
run_cli inbound --maildir "$MD" --reject "$CLI_TMP/reject2"
assert_rc 0 "inbound --maildir --reject"
assert_out_contains "0 handled, 0 ignored, 1 rejected, 0 left in new/" "the rest goes to the reject folder"
assert_eq "$(ls "$MD/new" | wc -l)" "0" "new/ is empty"
assert_eq "$(ls "$CLI_TMP/reject2" | wc -l)" "1" "and the message is in the reject folder"

run_cli bounces ls
assert_rc 0 "bounces ls"
assert_out_contains "dsn" "lists what was stored"
run_cli --json bounces ls --class hard
assert_rc 0 "bounces ls --class hard"
got=$(printf '%s' "$OUT" | /usr/bin/python3 -c 'import json,sys; d=json.load(sys.stdin); print(len(d), sorted(set(b["action"] for b in d)))')
assert_eq "$got" "3 ['none']" "unattributed hard bounces (the DSN, exim's two): stored, nothing done"
run_cli bounces ls --class sideways
assert_rc 65 "an unknown class"
run_cli bounces ls --campaign nope
assert_rc 65 "an unknown campaign"
run_cli bounces ls --limit 0
assert_rc 64 "a bad limit"

# Larger than what is parsed (10 MB): kept whole in the reject folder,
# from standard input (spooled there first) as from a Maildir (moved)
BIG=$CLI_TMP/big.eml
{ printf 'From: someone@example.com\nTo: b-nope@bounce.example.org\nSubject: big\n\n'
  head -c 11534336 /dev/zero | tr '\0' 'x' | fold -w 99; } >"$BIG"
mkdir -p "$CLI_TMP/reject3"
run_cli_stdin "$BIG" inbound --reject "$CLI_TMP/reject3"
assert_rc 0 "an 11 MB message with --reject is kept"
cmp -s "$BIG" "$(find "$CLI_TMP/reject3" -type f -name '*.eml')"
assert_eq "$?" "0" "whole, not its first 10 MB"
run_cli_stdin "$CORPUS/autoreply-x-autoreply.eml" inbound --reject "$CLI_TMP/reject3"
assert_rc 0 "a message that is handled"
assert_eq "$(ls -A "$CLI_TMP/reject3" | wc -l)" "1" "leaves nothing in the reject folder (its spool is gone)"
MD3=$CLI_TMP/Maildir3
mkdir -p "$MD3/new" "$MD3/cur" "$MD3/tmp"
cp "$BIG" "$MD3/new/1.big"
run_cli inbound --maildir "$MD3" --reject "$CLI_TMP/reject3"
assert_rc 0 "an 11 MB message in a Maildir"
assert_out_contains "0 handled, 0 ignored, 1 rejected, 0 left in new/" "is rejected"
assert_eq "$(find "$CLI_TMP/reject3" -type f -newer "$BIG" -name '*.eml' -size +11000k | wc -l)" "2" \
	"and moved whole into the reject folder"

# On a pipe, whatever is ours to fix exits 75 (EX_TEMPFAIL): the MTA
# keeps the message and tries again, instead of returning it
run_cli_stdin "$CORPUS/junk-newsletter.eml" inbound --reject "$CLI_TMP/no-such-dir"
assert_rc 75 "a reject folder that cannot be written: try again"
mv "$CLI_TMP/keys.conf" "$CLI_TMP/keys.conf.away"
run_cli_stdin "$CORPUS/postfix-user-unknown.eml" inbound
assert_rc 75 "a keys file that cannot be loaded: try again"
mv "$CLI_TMP/keys.conf.away" "$CLI_TMP/keys.conf"
CLI_STDIN=$CORPUS/postfix-user-unknown.eml run_bin -c "$CLI_TMP/no-such.conf" inbound
assert_rc 75 "a configuration that does not load: try again"

# Entries of new/ that cannot be read are left there and said; the
# messages after them are handled
MD4=$CLI_TMP/Maildir4
mkdir -p "$MD4/new/0.dir" "$MD4/cur" "$MD4/tmp"
mkfifo "$MD4/new/1.fifo"
ln -s "$CORPUS/autoreply-precedence.eml" "$MD4/new/2.link"
cp "$CORPUS/autoreply-x-autoreply.eml" "$MD4/new/3.host"
run_cli inbound --maildir "$MD4"
assert_rc 0 "a directory, a FIFO and a symbolic link in new/"
assert_out_contains "0 handled, 1 ignored, 0 rejected, 3 left in new/" "are left and counted"
assert_err_contains "0.dir: not a regular file" "saying which"
assert_eq "$(ls "$MD4/cur")" "3.host:2,S" "the message after them is handled"

# One run a Maildir at a time
cp "$CORPUS/autoreply-x-autoreply.eml" "$MD4/new/4.host"
_cli_run flock "$MD4/.assent-inbound.lock" "$ASSENT_BIN" -c "$CONF" inbound --maildir "$MD4"
assert_rc 0 "a Maildir another run is at"
assert_err_contains "another assent inbound is at work on it" "says so"
[ -e "$MD4/new/4.host" ]
assert_eq "$?" "0" "and touches nothing"

# --classify over the reject folder: a NAME.tmp (a copy a crash cut
# short) is no message
printf 'From: x@example.com\n' >"$CLI_TMP/reject2/1.2.3.eml.tmp"
run_cli inbound --classify "$CLI_TMP/reject2"
assert_rc 0 "inbound --classify REJECT-FOLDER"
assert_out_contains "reject2/" "classifies what was kept"
assert_out_lacks ".tmp" "and not a leftover temporary"

finish

#!/bin/bash
# Campaigns as an operator meets them: assent campaign create, ls, show,
# edit, preview, schedule, pause, resume, cancel, status, report and
# resend-unknown against a real PostgreSQL.
. "$(dirname "$0")/lib.sh"
cli_setup_db

py()
{
	printf '%s' "$OUT" | /usr/bin/python3 -c "import json,sys; d=json.load(sys.stdin); $1"
}

assert_err_lacks()
{
	if printf '%s' "$ERR" | grep -qF -- "$1"; then
		not_ok "$2"
		diag "stderr:" "$ERR"
	else
		ok "$2"
	fi
}

db()
{
	psql -X -q -v ON_ERROR_STOP=1 -At -d "$CLI_DB" -c "$1"
}

D=$CLI_TMP/tpl
mkdir -p "$D"
cat >"$D/body.txt" <<'EOF'
Hello {{ name | "friend" }},

our spring news.

Leave this list: {{ unsubscribe_url }}
{{ sender.organisation }}, {{ sender.postal_address }}
EOF
cat >"$D/body.html" <<'EOF'
<p>Hello {{ name | "friend" }},</p>
<p>our spring news.</p>
<p><a href="{{ unsubscribe_url }}">Leave this list</a></p>
<p>{{ sender.postal_address }}</p>
EOF
printf 'Hello {{ name }}\n\nLeave: {{ unsubscribe_url }}\n{{ sender.postal_addres }}\n' \
	>"$D/typo.txt"
printf 'Hello\n' >"$D/nolink.txt"
printf 'Hello \xff\n' >"$D/latin1.txt"
head -c 1100000 /dev/zero | tr '\0' 'a' >"$D/huge.txt"

run_cli keys generate
assert_rc 0 "keys generate"
run_cli list create news
run_cli list create offers
run_cli sub add ann@example.org --list news --name "Ann Émile" --source "signup desk"
assert_rc 0 "a subscriber with a name"

# --- create ---------------------------------------------------------------------
run_cli campaign create spring --list news --list offers \
	--subject 'Spring news for {{ name | "you" }}' \
	--from 'Ann Example <News@Example.ORG>' --reply-to replies@example.org \
	--text "$D/body.txt" --html "$D/body.html"
assert_rc 0 "campaign create"
assert_out_contains "created campaign spring (draft" "create says what it made"

run_cli campaign create typo --list news --subject S --from a@example.org \
	--text "$D/typo.txt"
assert_rc 65 "a template with an unknown field is refused"
assert_err_contains "$D/typo.txt: template line 4, column 4: unknown field" \
	"the error names the file, line and column"
run_cli campaign create nolink --list news --subject S --from a@example.org \
	--text "$D/nolink.txt"
assert_rc 65 "a body without an unsubscribe link is refused"
assert_err_contains "$D/nolink.txt: template: the body has no {{ unsubscribe_url }}" \
	"and says what is missing"
run_cli campaign create bad --list news --subject S --from a@example.org \
	--text "$D/body.txt" --html "$D/typo.txt"
assert_rc 65 "an HTML template error is refused too"
assert_err_contains "$D/typo.txt: template line 4" "naming the HTML file"
run_cli campaign create bad --list news --subject S --from a@example.org \
	--text "$D/latin1.txt"
assert_rc 65 "a file that is not UTF-8 is refused"
assert_err_contains "latin1.txt: not valid UTF-8" "naming the file"
run_cli campaign create bad --list news --subject S --from a@example.org \
	--text "$D/huge.txt"
assert_rc 65 "a file over 1 MB is refused"
assert_err_contains "huge.txt: larger than 1 MB" "naming the file"
run_cli campaign create bad --list news --subject S --from a@example.org \
	--text "$D/missing.txt"
assert_rc 66 "a missing file"
run_cli campaign create bad --list news,nope --subject S --from a@example.org \
	--text "$D/body.txt"
assert_rc 65 "an unknown list is refused"
assert_err_contains 'unknown list "nope"' "and named"
run_cli campaign create bad --list news --subject S --from 'Ann <nobody>' \
	--text "$D/body.txt"
assert_rc 65 "a bad From is refused"
assert_err_contains "From: invalid address" "and named"
run_cli campaign create bad --list news --subject S \
	--from 'a <b> <news@example.org>' --text "$D/body.txt"
assert_rc 65 "a From with two addresses is refused"
assert_err_contains 'From: expected "Name <address>" or an address' \
	"saying what a From looks like"
assert_err_lacks 'invalid address "b>' \
	"not the address parser's complaint about a piece of it"
run_cli campaign create bad --list news --subject S --from a@example.org \
	--text "$D"
assert_rc 66 "a directory as a template file is missing input (66), not an I/O error"
assert_err_contains "$D: not a regular file" "and says so"
run_cli campaign create bad --subject S --from a@example.org --text "$D/body.txt" \
	--list
assert_rc 64 "--list without a value is a usage error"
assert_err_contains "assent: campaign create: --list needs a value" \
	"with the command named, as other usage errors"
run_cli campaign create bad --subject S --from a@example.org --text "$D/body.txt"
assert_rc 64 "create without --list is a usage error"
run_cli campaign create Spring --list news --subject S --from a@example.org \
	--text "$D/body.txt"
assert_rc 65 "a taken name is refused"
assert_err_contains "exists already" "and said so"

# --- ls, show, edit ----------------------------------------------------------------
run_cli campaign ls
assert_rc 0 "campaign ls"
assert_out_contains "spring" "ls lists it"
assert_out_contains "news, offers" "with its lists"
run_cli --json campaign ls
assert_eq "$(py 'print(len(d), d[0]["name"], d[0]["state"], ",".join(d[0]["lists"]))')" \
	"1 spring draft news,offers" "ls --json parses"

run_cli campaign show spring
assert_rc 0 "campaign show"
assert_out_contains "Ann Example <News@example.org>" "show gives the From, normalised"
assert_out_contains "Leave this list: {{ unsubscribe_url }}" "and the text template"
run_cli campaign show spring --json
assert_eq "$(py 'print(d["from_name"], d["from_address"], d["reply_to"], d["state"])')" \
	"Ann Example News@example.org replies@example.org draft" "show --json parses"

run_cli campaign edit spring --subject 'Spring: news for {{ name | "you" }}' --list news
assert_rc 0 "edit a draft"
run_cli --json campaign show spring
assert_eq "$(py 'print(d["subject"], d["lists"])')" \
	"Spring: news for {{ name | \"you\" }} ['news']" "edit changed subject and lists"
run_cli campaign edit spring --text "$D/typo.txt"
assert_rc 65 "edit checks templates too"
assert_err_contains "typo.txt: template line 4" "naming the file"
run_cli campaign edit spring --text "$D"
assert_rc 66 "edit with a directory as the text file"
assert_err_contains "$D: not a regular file" "says it is not a regular file"
run_cli campaign edit spring --html /nonexistent/body.html
assert_rc 66 "edit with a missing HTML file"
run_cli campaign edit spring
assert_rc 64 "edit with nothing to change is a usage error"
assert_err_contains "campaign edit: nothing to change (give --list, --subject, --from" \
	"and says what to give"

# --- preview -----------------------------------------------------------------------
run_cli campaign preview spring --to Ann@Example.org
assert_rc 0 "preview for a subscriber"
assert_out_contains "List-Unsubscribe: <https://" "the message has List-Unsubscribe"
assert_out_contains "List-Unsubscribe-Post: List-Unsubscribe=One-Click" "and one-click"
assert_out_contains "=?UTF-8?Q?Ann_=C3=89mile?=" "and the subscriber's name"
assert_out_contains "Hello Ann =C3=89mile," "in the body too"
if printf '%s' "$OUT" | head -n 1 | grep -q $'\r$'; then
	ok "preview lines end in CRLF"
else
	not_ok "preview lines end in CRLF"
fi
run_cli campaign preview spring --to stranger@example.net
assert_rc 0 "preview for someone who is not a subscriber"
assert_out_contains "Hello friend," "uses the defaults"
run_cli --json campaign preview spring --to ann@example.org
assert_rc 0 "preview --json"
assert_eq "$(py 'print(d["envelope_from"].startswith("b-"), "\r\nSubject: " in d["message"])')" \
	"True True" "preview --json parses"
run_cli campaign preview spring --to 'not an address'
assert_rc 65 "preview to a bad address"
run_cli campaign preview nope --to ann@example.org
assert_rc 65 "preview of an unknown campaign"

# --- test sends ---------------------------------------------------------------------
# A relay that is down: a config whose SMTP port nothing listens on.
down_port=$(/usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
sed "s/port = [0-9]*;/port = $down_port;/" "$CONF" >"$CLI_TMP/down.conf"
_cli_run "$ASSENT_BIN" -c "$CLI_TMP/down.conf" campaign test spring --to ann@example.org
assert_rc 69 "test with the relay down exits 69"
assert_out_contains "ann@example.org: not sent (relay unreachable)" \
	"says in words that it was not sent"
assert_out_lacks "not-tried" "without the transport's jargon"
run_cli campaign test spring
assert_rc 64 "test without --to is a usage error"
run_cli campaign test spring --to 'not an address'
assert_rc 65 "test to a bad address"
if [ -n "${ASSENT_TEST_SMTP_PORT:-}" ]; then
	run_cli suppress add blocked@example.org --reason manual
	run_cli campaign test spring --to ann@example.org
	assert_rc 0 "test send through the relay"
	assert_out_contains "ann@example.org: sent" "says it was sent"
	run_cli campaign test spring --to ann@example.org --to blocked@example.org
	assert_rc 65 "a suppressed address makes the test exit 65"
	assert_out_contains "ann@example.org: sent" "the other one is sent"
	assert_out_contains "blocked@example.org: suppressed (manual, entry" \
		"the suppressed one names the entry"
	run_cli --json campaign test spring --to ann@example.org,blocked@example.org
	assert_eq "$(py 'print(len(d), d[0]["outcome"], d[1]["outcome"])')" \
		"2 sent suppressed" "test --json parses (and --to a,b works)"
else
	skip "test sends through the relay" "no SMTP sink (ASSENT_TEST_SMTP_PORT)"
fi

# --- schedule, pause, resume, cancel ------------------------------------------------------
run_cli campaign schedule spring --at 2001-01-01T00:00:00Z
assert_rc 65 "a time long past is refused"
assert_err_contains "hours" "saying how old it is"
assert_err_contains "use --force to send it anyway" "and what to do"
run_cli campaign schedule spring --at 2099-01-01T09:00:00
assert_rc 65 "a time without zone is refused"
assert_err_contains "no time zone" "and says why"
run_cli campaign schedule spring --at 2099-01-01T09:00:00+01:00
assert_rc 0 "schedule in the future"
assert_eq "$OUT" "campaign spring scheduled for 2099-01-01T08:00:00Z" \
	"says when, in UTC, in one plain sentence"
run_cli campaign edit spring --subject x
assert_rc 65 "a scheduled campaign cannot be edited"
assert_err_contains "campaign spring is scheduled: only a draft can be edited" "says so"
run_cli campaign status spring
assert_rc 0 "status of a scheduled campaign"
if printf '%s\n' "$OUT" | grep -Eq '^rate \(msg/s\): +-$'; then
	ok "a campaign that is not sending has no rate"
else
	not_ok "a campaign that is not sending has no rate"
	diag "$OUT"
fi
run_cli campaign pause spring
assert_rc 0 "pause"
assert_eq "$OUT" "campaign spring paused" "pause says so"
run_cli campaign pause spring
assert_rc 65 "pause twice"
assert_err_contains "campaign spring is already paused" "names the state"
run_cli campaign resume spring
assert_rc 0 "resume"
assert_eq "$OUT" "campaign spring resumed: scheduled for 2099-01-01T08:00:00Z" \
	"back to scheduled (it had not started)"
run_cli campaign pause spring
run_cli --json campaign resume spring
assert_rc 0 "resume --json"
assert_eq "$(py 'print(d["state"])')" "scheduled" "resume --json parses"
run_cli campaign schedule spring --at 2001-01-01T00:00:00Z --force
assert_rc 0 "an old time with --force"
assert_out_contains "(forced)" "is recorded as forced"

# A scheduled campaign too old to start (a database restored from an old
# backup): ls says so, not only status.
run_cli campaign create old --list news --subject S --from a@example.org \
	--text "$D/body.txt"
run_cli campaign schedule old --at now
db "UPDATE campaigns SET scheduled_at = now() - interval '2 days' WHERE name = 'old'"
run_cli campaign ls
assert_rc 0 "ls with a campaign too old to start"
assert_out_contains "scheduled (too old: use schedule --force)" "ls shows why it waits"
run_cli --json campaign ls
assert_eq "$(py 'r = {x["name"]: x for x in d}; print(r["old"]["state"], r["old"]["note"] is not None and "--force" in r["old"]["note"], r["spring"]["note"])')" \
	"scheduled True None" "ls --json: a note on the old one only (spring was forced)"
run_cli campaign schedule old --at now
run_cli --json campaign ls
assert_eq "$(py 'print([x["note"] for x in d])')" "[None, None]" \
	"rescheduled: no note"

# status and report on deliveries set by hand (the scheduler is assentd's)
db "UPDATE campaigns SET state = 'sending', started_at = now() WHERE name = 'spring';
INSERT INTO deliveries (campaign_id, subscriber_id, list_id, domain)
  SELECT c.id, s.id, l.id, 'example.org' FROM campaigns c, subscribers s, lists l
  WHERE c.name = 'spring' AND l.name = 'news';
UPDATE deliveries SET state = 'sending', sender_session = 1;
UPDATE deliveries SET state = 'unknown';"
run_cli campaign status spring
assert_rc 0 "status"
assert_out_contains "unknown:       1" "status counts the unknown delivery"
run_cli --json campaign status spring
assert_eq "$(py 'print(d["state"], d["total"], d["counts"]["unknown"], d["eta"])')" \
	"sending 1 1 None" "status --json parses"
run_cli campaign resend-unknown spring
assert_rc 0 "resend-unknown"
assert_out_contains "1 delivery of unknown outcome queued again" "says how many"
db "UPDATE deliveries SET state = 'sending', sender_session = 1;
UPDATE deliveries SET state = 'sent', sent_at = now();"
run_cli --json campaign status spring
assert_eq "$(py 'print(d["rate"] > 0, d["eta"] is not None)')" "True True" \
	"a sending campaign with a message just sent has a rate and an estimate"
# Unsubscribing by the CLI is not leaving through the campaign's links:
# the report's "unsubscribed" does not count it. (bounced, complained and
# unsubscribed are set by the modules that receive them: the counting is
# tested in check_campaign.)
run_cli sub unsubscribe ann@example.org --list news --source "asked by phone"
assert_rc 0 "unsubscribe by the CLI"
run_cli campaign report spring
assert_rc 0 "report"
assert_out_contains "sent:         1" "report counts sent"
assert_out_contains "bounced:      0 (hard bounces recorded for its messages)" \
	"says what bounced counts"
assert_out_contains "complained:   0 (spam complaints about it)" \
	"what complained counts"
assert_out_contains "unsubscribed: 0 (through its links)" \
	"and that unsubscribed counts its links only"
assert_out_contains "bounces:      0 hard, 0 soft, 0 policy, 0 complaint" \
	"and the bounces by class"
run_cli --json campaign report spring
assert_eq "$(py 'print(d["sent"], d["suppressed"]["total"], d["bounced"], d["unsubscribed"], d["not_sent"])')" \
	"1 0 0 0 0" "report --json parses"
run_cli campaign cancel spring
assert_rc 0 "cancel"
assert_eq "$OUT" "campaign spring cancelled" "cancel says so"
run_cli campaign cancel spring
assert_rc 65 "cancel twice"
assert_err_contains "assent: campaign spring is already cancelled" "says it already is"
run_cli --json campaign status spring
assert_eq "$(py 'print(d["state"], d["rate"], d["eta"])')" "cancelled None None" \
	"a cancelled campaign has no rate"
run_cli campaign status nope
assert_rc 65 "status of an unknown campaign"
assert_err_contains "unknown campaign nope" "says so"

finish

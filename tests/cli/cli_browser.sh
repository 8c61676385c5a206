#!/bin/bash
# The unsubscribe link as a person meets it: a campaign goes out through
# assentd to the SMTP sink; the one-click link in the captured message's
# List-Unsubscribe header is fetched by curl (a link scanner: nothing may
# change), then opened in headless Chromium (tests/harness/cdp.py, over
# the DevTools protocol), where the button is clicked with the mouse. The
# page and the database must both say the subscription ended, once.
#
# Then the subscribe form: Chromium opens GET /s/club, a person types an
# address and a name and clicks Subscribe; assentd sends the
# confirmation mail to the sink; its /c/ link, opened in Chromium and
# its button clicked, confirms the subscription, and the ledger has both
# events with Chromium's IP and user agent.
#
# Needs chromium and python3-websocket (contrib/deps), PostgreSQL and the
# SMTP sink (tests/harness/servers.sh); skips without them, unless
# ASSENT_TEST_REQUIRE_SERVERS=1, where that is a failure.
. "$(dirname "$0")/lib.sh"

CDP=$(cd "$(dirname "$0")/../harness" && pwd)/cdp.py
PY=/usr/bin/python3
ADDR=a@example.org
SUBJECT="Browser test $$"
GONE="You will get no more mail from news."

skip_all()
{
	[ "${ASSENT_TEST_REQUIRE_SERVERS:-}" != 1 ] || _cli_bail "$1"
	echo "1..0 # SKIP $1"
	exit 0
}

[ -x "$PY" ] || skip_all "no $PY"
why=$("$PY" "$CDP" check 2>&1 >/dev/null) || skip_all "${why#cdp.py: }"
if [ -z "${ASSENT_TEST_SMTP_PORT:-}" ] || [ ! -d "${ASSENT_TEST_SMTP_DIR:-}" ]; then
	skip_all "no SMTP sink (ASSENT_TEST_SMTP_PORT, ASSENT_TEST_SMTP_DIR)"
fi
command -v curl >/dev/null || skip_all "no curl"
ASSENTD_BIN=${ASSENTD_BIN:-$(dirname "$ASSENT_BIN")/../assentd/assentd}
cli_setup_db
[ -x "$ASSENTD_BIN" ] || _cli_bail "no program at $ASSENTD_BIN"

db()
{
	psql -X -q -v ON_ERROR_STOP=1 -At -d "$CLI_DB" -c "$1"
}

# A field of the JSON in $OUT (a Python expression over d).
py()
{
	printf '%s' "$OUT" | "$PY" -c "import json,sys; d=json.load(sys.stdin); print($1)"
}

# The subscription's status, the unsubscribe events and the suppression
# entries as one line: "STATUS|N|EVENT;EVENT...|SUPPRESSIONS", each EVENT
# "CHANNEL|IP|STATUS_BEFORE>STATUS_AFTER|LIST" (LIST: news, another
# list's id, or all), "-" when there is none.
STATE_SQL="SELECT (SELECT ss.status FROM subscriptions ss
	JOIN subscribers s ON s.id = ss.subscriber_id
	JOIN lists l ON l.id = ss.list_id
	WHERE s.email_key = '$ADDR' AND l.name = 'news')
  || '|' || (SELECT count(*) FROM ledger WHERE action = 'unsubscribe')
  || '|' || coalesce((SELECT string_agg(channel || '|' || coalesce(host(ip), '-')
	|| '|' || status_before || '>' || status_after
	|| '|' || CASE WHEN list_id = (SELECT id FROM lists WHERE name = 'news')
	   THEN 'news' ELSE coalesce(list_id::text, 'all') END, ';')
	FROM ledger WHERE action = 'unsubscribe'), '-')
  || '|' || (SELECT count(*) FROM suppressions)"
UA_SQL="SELECT coalesce(string_agg(user_agent, ';'), '') FROM ledger
	WHERE action = 'unsubscribe'"

# A port nothing listened on a moment ago.
PORT=$("$PY" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
BASE=http://127.0.0.1:$PORT

# lib.sh's config with the web server on PORT (http to 127.0.0.1 is
# allowed in links) and no admin server (its default port could be
# taken): the daemon and the CLI share it.
grep -v '^http = ' "$CONF" >"$CLI_TMP/browser.conf"
cat >>"$CLI_TMP/browser.conf" <<EOF
http = { listen = "127.0.0.1"; port = $PORT; base_url = "$BASE"; admin_port = 0; };
EOF
CONF=$CLI_TMP/browser.conf

# --- a subscriber and a campaign ----------------------------------------------
cat >"$CLI_TMP/body.txt" <<'EOF'
Hello {{ name | "friend" }},

the news of the week.

Leave this list: {{ unsubscribe_url }}
{{ sender.organisation }}, {{ sender.postal_address }}
EOF
run_cli keys generate
assert_rc 0 "keys generate"
run_cli list create news
assert_rc 0 "a single opt-in list"
run_cli sub add "$ADDR" --list news --source test
assert_rc 0 "a subscriber"
assert_eq "$(db "$STATE_SQL")" "confirmed|0|-|0" "confirmed, nothing unsubscribed"
run_cli campaign create weekly --list news --subject "$SUBJECT" \
	--from "News <news@example.org>" --text "$CLI_TMP/body.txt"
assert_rc 0 "a campaign"

# --- assentd sends it -------------------------------------------------------------
DPID=
daemon_stop()
{
	local status=0

	[ -n "$DPID" ] || return 0
	kill -TERM "$DPID" 2>/dev/null || true
	for _ in $(seq 1 100); do
		kill -0 "$DPID" 2>/dev/null || break
		sleep 0.1
	done
	kill -KILL "$DPID" 2>/dev/null || true
	wait "$DPID" || status=$?
	DPID=
	return "$status"
}
cli_at_exit daemon_stop

"$ASSENTD_BIN" -f -c "$CONF" >"$CLI_TMP/assentd.log" 2>&1 &
DPID=$!
listening=no
for _ in $(seq 1 100); do
	kill -0 "$DPID" 2>/dev/null || break
	if (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null; then
		listening=yes
		break
	fi
	sleep 0.1
done
if [ "$listening" = yes ]; then
	ok "assentd listens on $BASE"
else
	not_ok "assentd listens on $BASE"
	diag "assentd log:" "$(tail -n 20 "$CLI_TMP/assentd.log")"
	finish
fi

run_cli campaign schedule weekly --at now
assert_rc 0 "schedule it now"
state=
for _ in $(seq 1 150); do
	run_cli --json campaign status weekly
	state=$(py 'd["state"]' 2>/dev/null)
	[ "$state" != "done" ] || break
	sleep 0.1
done
assert_eq "$state" "done" "assentd sent the campaign"

# --- the message in the sink ----------------------------------------------------
# The newest message to ADDR with our subject (other tests share the
# sink): its List-Unsubscribe URL, unfolded, and whether the text body
# carries the same link.
find_message()
{
	"$PY" - "$ASSENT_TEST_SMTP_DIR" "$ADDR" "$SUBJECT" <<'EOF'
import email, email.policy, json, os, re, sys

d, addr, subject = sys.argv[1:]
files = sorted((os.path.join(d, f) for f in os.listdir(d)),
    key=os.path.getmtime, reverse=True)
for path in files:
    with open(path, "rb") as f:
        msg = email.message_from_binary_file(f, policy=email.policy.compat32)
    to, subj = msg.get("To", ""), msg.get("Subject", "")
    if addr not in to or subj.strip() != subject:
        continue
    lu = re.sub(r"\r?\n[ \t]+", " ", msg.get("List-Unsubscribe", ""))
    urls = re.findall(r"<(https?://[^>]*)>", lu)
    body = ""
    for part in msg.walk():
        if part.get_content_type() == "text/plain":
            body = part.get_payload(decode=True).decode("utf-8", "replace")
    print(json.dumps({"file": path, "list_unsubscribe": lu,
        "post": msg.get("List-Unsubscribe-Post", ""),
        "url": urls[0] if len(urls) == 1 else "",
        "in_body": len(urls) == 1 and urls[0] in body}))
    break
EOF
}
OUT=$(find_message)
if [ -n "$OUT" ]; then
	ok "the sink has the message to $ADDR"
else
	not_ok "the sink has the message to $ADDR"
	diag "messages in the sink: $(find "$ASSENT_TEST_SMTP_DIR" -type f | wc -l)"
	finish
fi
URL=$(py 'd["url"]')
case $URL in
"$BASE"/u/?*)
	ok "List-Unsubscribe has one $BASE/u/ link" ;;
*)
	not_ok "List-Unsubscribe has one $BASE/u/ link"
	diag "List-Unsubscribe: $(py 'd["list_unsubscribe"]')"
	finish ;;
esac
assert_eq "$(py 'd["post"]')" "List-Unsubscribe=One-Click" \
	"List-Unsubscribe-Post asks for one-click"
assert_eq "$(py 'd["in_body"]')" True "the text body has the same link"

# --- a link scanner: GET and HEAD change nothing -------------------------------
page=$(curl -s -A "LinkScanner/1.0" -D "$CLI_TMP/get.h" "$URL")
assert_eq "$(head -n 1 "$CLI_TMP/get.h" | tr -d '\r')" "HTTP/1.1 200 OK" "curl GET: 200"
case $page in
*"Leave the list news?"*) ok "the page names the list" ;;
*) not_ok "the page names the list"; diag "$page" ;;
esac
case $page in
*"$ADDR"*) not_ok "and not the address" ;;
*) ok "and not the address" ;;
esac
curl -s -I -A "LinkScanner/1.0" "$URL" >/dev/null
curl -s -X OPTIONS -A "LinkScanner/1.0" "$URL" >/dev/null
assert_eq "$(db "$STATE_SQL")" "confirmed|0|-|0" \
	"after GET, HEAD and OPTIONS: still confirmed, no event"

# --- the person: Chromium, two tabs, the button clicked in each ---------------
# Both tabs show the form before the first click (the mail opened
# twice); the second click comes from a page that no longer tells the
# truth. Between the clicks the database is read.
cat >"$CLI_TMP/between.sh" <<EOF
psql -X -q -v ON_ERROR_STOP=1 -At -d "$CLI_DB" -c "$STATE_SQL" >"$CLI_TMP/after1"
EOF
t0=$(date +%s.%N)
_cli_run "$PY" "$CDP" --timeout 30 click "$URL" --button-text "Leave news" \
	--expect-text "$GONE" --tabs 2 --between "sh $CLI_TMP/between.sh"
t1=$(date +%s.%N)
assert_rc 0 "Chromium: open the link, click \"Leave news\", twice"
diag "cdp.py click took $("$PY" -c "print(round($t1 - $t0, 1))") s"
if [ "$RC" -ne 0 ]; then
	diag "assentd log:" "$(tail -n 10 "$CLI_TMP/assentd.log")"
	finish
fi
UA=$(py 'd["user_agent"]')
assert_eq "$(py 'd["pages"][0]["before_status"], "Leave the list news?" in d["pages"][0]["before_text"]')" \
	"200 True" "the first tab showed the form"
assert_eq "$(py 'd["pages"][0]["method"], d["pages"][0]["statuses"], d["pages"][0]["url"] == d["pages"][0]["request_url"]')" \
	"POST [200] True" "the click POSTed to the link and got 200, no redirect"
assert_eq "$(py '"location" in d["pages"][0]["headers"], "content-security-policy" in d["pages"][0]["headers"]')" \
	"False True" "no Location; a Content-Security-Policy"
assert_eq "$(py '[l for l in d["pages"][0]["text"].splitlines() if l.strip()]')" \
	"['Unsubscribed', '$GONE']" "the page says: $GONE"
assert_eq "$(cat "$CLI_TMP/after1" 2>/dev/null)" \
	"unsubscribed|1|web|127.0.0.1|confirmed>unsubscribed|news|0" \
	"after the click: unsubscribed, one event (web, 127.0.0.1), no suppression"
assert_eq "$(db "$UA_SQL")" "$UA" "the event has Chromium's user agent"
case $UA in
*HeadlessChrome*) ok "which is headless Chromium's ($UA)" ;;
*) not_ok "which is headless Chromium's"; diag "user agent: $UA" ;;
esac

assert_eq "$(py '"Leave the list news?" in d["pages"][1]["before_text"]')" True \
	"the second tab showed the form too"
assert_eq "$(py 'd["pages"][1]["method"], d["pages"][1]["statuses"]')" "POST [200]" \
	"clicking again POSTs and gets 200"
assert_eq "$(py 'd["pages"][1]["text"] == d["pages"][0]["text"]')" True \
	"the same page"
assert_eq "$(db "$STATE_SQL")" \
	"unsubscribed|1|web|127.0.0.1|confirmed>unsubscribed|news|0" \
	"and no second event"

# --- coming back later -------------------------------------------------------------
# The GET page asks the database nothing (it is as fast as a static
# page): it offers the button again, and the click says it is done.
_cli_run "$PY" "$CDP" --timeout 20 click "$URL" --button-text "Leave news" \
	--expect-text "$GONE"
assert_rc 0 "Chromium: open the link again and click"
assert_eq "$(py 'd["pages"][0]["before_status"], d["status"]')" "200 200" \
	"the page, and the page after the click"
assert_eq "$(db "$STATE_SQL")" \
	"unsubscribed|1|web|127.0.0.1|confirmed>unsubscribed|news|0" \
	"nothing changed"

# --- the subscribe form, double opt-in ---------------------------------------------
ADDR2=joiner-$$@example.org
CONFIRMED="Your subscription to club is confirmed."
printf 'Yes, send me the club news.\n\nI can leave at any time.\n' >"$CLI_TMP/consent.txt"
run_cli consent-text add club-v1 "$CLI_TMP/consent.txt"
assert_rc 0 "a consent wording"
run_cli list create club --double-optin --form-consent club-v1 \
	--description "The club's weekly letter"
assert_rc 0 "a double opt-in list with a form"
SIGNUP_SQL="SELECT string_agg(e.action || '|' || e.channel || '|' || coalesce(host(e.ip), '-')
	|| '|' || coalesce(e.page, '-') || '|' || coalesce(e.consent_text_version, '-')
	|| '|' || e.status_after, ';' ORDER BY e.id)
	FROM ledger e JOIN subscribers s ON s.id = e.subscriber_id
	WHERE s.email_key = '$ADDR2'"
STATUS2_SQL="SELECT coalesce((SELECT ss.status FROM subscriptions ss
	JOIN subscribers s ON s.id = ss.subscriber_id JOIN lists l ON l.id = ss.list_id
	WHERE s.email_key = '$ADDR2' AND l.name = 'club'), 'none')"

_cli_run "$PY" "$CDP" --timeout 30 fill "$BASE/s/club" \
	--field "email=$ADDR2" --field "name=Jo Iner" --button-text Subscribe \
	--expect-text "Check your inbox"
assert_rc 0 "Chromium: open the form, type, click Subscribe"
if [ "$RC" -ne 0 ]; then
	diag "assentd log:" "$(tail -n 10 "$CLI_TMP/assentd.log")"
	finish
fi
assert_eq "$(py 'd["before_status"], "Yes, send me the club news." in d["before_text"]')" \
	"200 True" "the form showed the consent wording"
assert_eq "$(py 'd["method"], d["statuses"], "location" in d["headers"]')" \
	"POST [200] False" "the click POSTed and got 200, no redirect"
UA2=$(py 'd["user_agent"]')
assert_eq "$(db "$STATUS2_SQL")" pending "the subscription is pending"
assert_eq "$(db "$SIGNUP_SQL")" \
	"subscribe|web|127.0.0.1|$BASE/s/club|club-v1|pending" \
	"its event: web, 127.0.0.1, the form's page, the consent version"
assert_eq "$(db "SELECT user_agent FROM ledger e JOIN subscribers s
	ON s.id = e.subscriber_id WHERE s.email_key = '$ADDR2'")" "$UA2" \
	"with Chromium's user agent"

# The confirmation mail in the sink: its /c/ link.
find_confirm()
{
	"$PY" - "$ASSENT_TEST_SMTP_DIR" "$ADDR2" <<'EOF'
import email, email.policy, os, re, sys

d, addr = sys.argv[1:]
for name in sorted(os.listdir(d)):
    with open(os.path.join(d, name), "rb") as f:
        msg = email.message_from_binary_file(f, policy=email.policy.compat32)
    if addr not in msg.get("To", ""):
        continue
    for part in msg.walk():
        if part.get_content_type() == "text/plain":
            body = part.get_payload(decode=True).decode("utf-8", "replace")
            m = re.search(r"https?://\S+/c/[A-Za-z0-9_-]{64}", body)
            if m:
                print(m.group(0))
                sys.exit(0)
EOF
}
CURL2=
for _ in $(seq 1 150); do
	CURL2=$(find_confirm)
	[ -z "$CURL2" ] || break
	sleep 0.1
done
case $CURL2 in
"$BASE"/c/?*) ok "the sink has the confirmation mail with a $BASE/c/ link" ;;
*)
	not_ok "the sink has the confirmation mail with a $BASE/c/ link"
	diag "link: $CURL2"
	diag "notices: $(db "SELECT string_agg(state || ' ' || coalesce(detail, ''), '; ') FROM notices")"
	diag "assentd log:" "$(tail -n 10 "$CLI_TMP/assentd.log")"
	finish ;;
esac
curl -s -A "LinkScanner/1.0" "$CURL2" >/dev/null
assert_eq "$(db "$STATUS2_SQL")" pending "a link scanner's GET confirms nothing"

_cli_run "$PY" "$CDP" --timeout 30 click "$CURL2" \
	--button-text "Confirm my subscription to club" --expect-text "$CONFIRMED"
assert_rc 0 "Chromium: open the link, click confirm"
assert_eq "$(py 'd["method"], d["status"]')" "POST 200" "the click POSTed and got 200"
assert_eq "$(db "$STATUS2_SQL")" confirmed "the subscription is confirmed"
assert_eq "$(db "SELECT e.channel || '|' || host(e.ip) || '|' || e.user_agent
	FROM ledger e JOIN subscribers s ON s.id = e.subscriber_id
	WHERE s.email_key = '$ADDR2' AND e.action = 'confirm'")" \
	"confirm-link|127.0.0.1|$UA2" \
	"its event: confirm-link, 127.0.0.1, Chromium's user agent"

# --- the end ----------------------------------------------------------------------
RC=0
daemon_stop || RC=$?
assert_eq "$RC" 0 "assentd stops cleanly on SIGTERM"
[ "$RC" -eq 0 ] || diag "assentd log:" "$(tail -n 20 "$CLI_TMP/assentd.log")"

finish

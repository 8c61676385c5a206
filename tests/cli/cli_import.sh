#!/bin/bash
# assent import as an operator meets it: a CSV from another system into
# a list, against a real PostgreSQL. RFC 4180 quoting, line numbers that
# survive multi-line records, rejects with reasons, never resubscribing,
# one transaction (a kill -9 leaves nothing), idempotent re-runs,
# --update, --dry-run, the ledger's import evidence, option errors.
. "$(dirname "$0")/lib.sh"
cli_setup_db

# The rejects file must be 0600 whatever the umask.
umask 022
# Relative names: the ledger keeps the file's name as given, the rejects
# file goes next to it.
cd "$CLI_TMP" || _cli_bail "cd $CLI_TMP"
# gmail spellings of a suppressed mailbox are suppressed too.
printf 'suppress = { gmail_mailbox_key = true; };\n' >>"$CONF"

PY=/usr/bin/python3
ME=$(id -un)

sql()
{
	psql -X -q -At -v ON_ERROR_STOP=1 -d "$CLI_DB" -c "$1"
}

# What a refused or rolled-back import must leave alone.
state()
{
	sql "SELECT (SELECT count(*) FROM subscribers) || ' ' ||
		(SELECT count(*) FROM subscriptions) || ' ' ||
		(SELECT count(*) FROM ledger) || ' ' ||
		(SELECT count(*) FROM suppressions) || ' ' ||
		(SELECT string_agg(status, ',' ORDER BY subscriber_id, list_id)
		   FROM subscriptions) || ' ' ||
		(SELECT md5(string_agg(name || attrs::text, ',' ORDER BY id))
		   FROM subscribers)"
}

# py EXPR: evaluate Python with d = the JSON on stdout.
py()
{
	printf '%s' "$OUT" | $PY -c "import json,sys; d=json.load(sys.stdin); $1" 2>&1
}

# The counts of a --json summary, in the spec's order.
COUNTS='print(" ".join("%s=%s" % (k, d[k]) for k in ("rows", "added", "updated", "unchanged", "unsubscribed", "suppressed", "duplicates", "rejected")))'
counts()
{
	py "$COUNTS"
}

# want_counts ROWS ADDED UPDATED UNCHANGED UNSUBSCRIBED SUPPRESSED DUPLICATES REJECTED
want_counts()
{
	printf 'rows=%s added=%s updated=%s unchanged=%s unsubscribed=%s suppressed=%s duplicates=%s rejected=%s' "$@"
}

# rejects FILE: one "LINE|REASON|FIRST-FIELD" line for each data row of a
# rejects file (a first line "header|..." for its header).
rejects()
{
	$PY - "$1" <<'EOF' 2>&1
import csv, sys
with open(sys.argv[1], newline="", encoding="utf-8", errors="replace") as f:
    rows = list(csv.reader(f))
print("header|" + ",".join(rows[0]))
for r in rows[1:]:
    print("|".join((r + ["", "", ""])[:3]))
EOF
}

# reject_reason FILE LINE: the reason given for LINE
reject_reason()
{
	rejects "$1" | awk -F'|' -v l="$2" '$1 == l { sub(/^[^|]*\|/, ""); sub(/\|[^|]*$/, ""); print; exit }'
}

# assert_reason FILE LINE REGEX DESC
assert_reason()
{
	local got

	got=$(reject_reason "$1" "$2")
	if [ -n "$got" ] && printf '%s' "$got" | grep -qiE "$3"; then
		ok "$4"
	else
		not_ok "$4"
		diag "line $2 of $1: reason \"$got\", want /$3/i"
		diag "the rejects file:" "$(rejects "$1" | head -n 30)"
	fi
}

# assert_refused DESC: exit 64 (usage) or 65 (bad data), either will do
assert_refused()
{
	if [ "$RC" = 64 ] || [ "$RC" = 65 ]; then
		ok "$1"
	else
		not_ok "$1"
		diag "expected exit status 64 or 65"
		_cli_show_last
	fi
}

mode_of()
{
	stat -c %a "$1" 2>/dev/null || echo "no file"
}

sha_of()
{
	sha256sum "$1" | cut -d' ' -f1
}

run_cli keys generate
assert_rc 0 "keys generate (the suppression gate needs its pepper)"
run_cli list create news
run_cli list create letters --double-optin
run_cli list create bulk
run_cli list create killtest
run_cli list create basis
printf 'Yes, send me the news.\n' >v1.txt
run_cli consent-text add v1 v1.txt
assert_rc 0 "lists and a consent text"

# --- 1. quoting, BOM, CRLF, multi-line records, non-ASCII names ----------------

# Line 3 starts a record that ends on line 5; line 6 is the next one.
{
	printf '\xef\xbb\xbfEmail,Name,Notes\r\n'
	printf 'a1@example.org,"Smith, Anna","likes ""quotes"", and commas"\r\n'
	printf 'a2@example.org,Zo\xc3\xab \xc3\x91\xc3\xba\xc3\xb1ez,"first line\r\nsecond, line\r\nthird"\r\n'
	printf 'bad-address,After Multi,x\r\n'
	printf 'a3@example.org,\xc5\x81ukasz \xc5\xbb\xc3\xb3\xc5\x82\xc4\x87 \xe6\x97\xa5\xe6\x9c\xac,\r\n'
	printf '"a4@example.org","Jos\xc3\xa9",plain\r\n'
} >quoted.csv
qsha=$(sha_of quoted.csv)

run_cli import quoted.csv --list news --source "crm export" --basis express
assert_rc 0 "import of a quoted CSV with a BOM and CRLF"
assert_err_empty "no progress bar when stderr is no terminal"
assert_out_contains "import of quoted.csv (sha256 $qsha) into news: 5 rows" \
	"the summary names the file, its SHA-256, the list and the rows"
got=$(printf '%s\n' "$OUT" | $PY -c '
import re, sys
t = sys.stdin.read()
out = []
for k in ("added", "updated", "unchanged", "unsubscribed", "suppressed", "duplicates", "rejected"):
    m = re.search(r"^\s*" + k + r"\s+([0-9,]+)\b", t, re.M)
    out.append("%s=%s" % (k, m.group(1) if m else "?"))
print(" ".join(out))')
assert_eq "$got" "added=4 updated=0 unchanged=0 unsubscribed=0 suppressed=0 duplicates=0 rejected=1" \
	"the text summary counts"
assert_out_contains "reasons: quoted.csv.rejects.csv" "the summary names the rejects file"
assert_out_contains "committed in " "and says it committed"
assert_eq "$(mode_of quoted.csv.rejects.csv)" "600" "the rejects file is mode 0600"
assert_eq "$(rejects quoted.csv.rejects.csv | head -n 1)" "header|line,reason,Email,Name,Notes" \
	"its header is line, reason and the file's own header (no BOM)"
assert_reason quoted.csv.rejects.csv 6 "address" \
	"the row after a multi-line record is named by its own line (6)"
assert_eq "$(rejects quoted.csv.rejects.csv | sed -n 2p | cut -d'|' -f3)" "bad-address" \
	"the rejects file carries the original fields"

run_cli --json sub show a1@example.org
got=$(py 'print(d["name"], "|", d["attrs"].get("Notes", d["attrs"].get("notes")), "|", d["subscriptions"][0]["list"], d["subscriptions"][0]["status"])')
assert_eq "$got" 'Smith, Anna | likes "quotes", and commas | news confirmed' \
	"a quoted field keeps its commas and doubled quotes"
run_cli --json sub show a2@example.org
got=$(py 'n = d["attrs"].get("Notes", d["attrs"].get("notes")); print(d["name"], n.replace("\r\n", "\n") == "first line\nsecond, line\nthird")')
assert_eq "$got" "Zoë Ñúñez True" "a field over three lines is one field; a UTF-8 name is kept"
run_cli --json sub show a3@example.org
got=$(py 'print(d["name"], "|", sorted(d["attrs"]), "|", d["history"][-1]["import_line"])')
assert_eq "$got" "Łukasz Żółć 日本 | [] | 7" \
	"a record after a multi-line one has its own line; an empty value is no attribute"
run_cli --json sub show a4@example.org
got=$(py 'print(d["name"], "|", repr(d["attrs"].get("Notes", d["attrs"].get("notes"))), "|", d["history"][-1]["import_line"])')
assert_eq "$got" "José | 'plain' | 8" "the last field of a CRLF line has no carriage return"
n=$(sql "SELECT count(*) FROM subscribers WHERE attrs::text LIKE '%'||chr(65279)||'%'
	OR name LIKE '%'||chr(13)||'%'")
assert_eq "$n" "0" "no BOM and no carriage return got into the data"

# --- 10. the ledger's evidence -------------------------------------------------------

run_cli --json sub show a1@example.org
got=$(py 'h = d["history"]; e = h[-1]; print(len(h), e["action"], e["channel"], e["status_before"], e["status_after"], e["list"], e["source"], e["operator"], e["basis"], e["import_file"], e["import_sha256"], e["import_line"])')
assert_eq "$got" "1 import import None confirmed news crm export $ME express quoted.csv $qsha 2" \
	"the event: action, channel, status, source, operator, basis, file, sha256, line"
n=$(sql "SELECT count(*) FROM ledger WHERE import_sha256 = '$qsha'")
assert_eq "$n" "4" "one event for each imported row"

# --- 6. re-running a finished import -------------------------------------------------

events=$(sql "SELECT count(*) FROM ledger")
before=$(state)
run_cli --json import quoted.csv --list news --source "crm export" --basis express
assert_rc 0 "the same import again"
assert_eq "$(counts)" "$(want_counts 5 0 0 4 0 0 0 1)" "adds nothing: 4 unchanged, the bad row rejected again"
assert_eq "$(sql "SELECT count(*) FROM ledger")" "$events" "and writes no ledger event"
assert_eq "$(state)" "$before" "and changes nothing"

# --- 11. --json and standard input ------------------------------------------------

printf 'email,name\ns1@example.org,From Stdin\nnot an address,Bad\n' >stdin.csv
CLI_STDIN=stdin.csv run_cli --json import - --list news --source "pasted" --basis express
assert_rc 0 "import - reads standard input"
got=$(py 'print(sorted(d) == sorted(["file", "sha256", "list", "rows", "added", "updated", "unchanged", "unsubscribed", "suppressed", "duplicates", "rejected", "rejects_file", "dry_run", "seconds"]), d["sha256"], d["list"], d["rejects_file"], d["dry_run"], isinstance(d["seconds"], (int, float)))')
assert_eq "$got" "True $(sha_of stdin.csv) news import.rejects.csv False True" \
	"--json has the spec's keys; the SHA-256 is the input's"
assert_eq "$(counts)" "$(want_counts 2 1 0 0 0 0 0 1)" "--json counts"
assert_eq "$(mode_of import.rejects.csv)" "600" \
	"the rejects of standard input go to import.rejects.csv, mode 0600"
assert_reason import.rejects.csv 3 "address" "listing the bad row at its line"
run_cli --json sub show s1@example.org
got=$(py 'e = d["history"][-1]; print(e["import_file"], e["import_sha256"], e["import_line"])')
assert_eq "$got" "(stdin) $(sha_of stdin.csv) 2" "the ledger records standard input as (stdin)"

# --- 2. no email column; --map ------------------------------------------------

printf 'mail,Full Name,junk,Town\nm1@example.org,Mia,zzz,Oslo\n' >nomail.csv
before=$(state)
run_cli import nomail.csv --list news --source "old crm" --basis express
assert_rc 65 "a file without an email column exits 65"
assert_err_contains 'nomail.csv:1: no email column (the header has "mail", "Full Name", "junk", "Town"): name one with --map COLUMN=email' \
	"the message names the header's columns and --map"
assert_eq "$(state)" "$before" "nothing is stored"

run_cli --json import nomail.csv --list news --source "old crm" --basis express \
	--map mail=email --map junk=- --map Town=attr.city
assert_rc 0 "--map names the email column, ignores one, renames another"
assert_eq "$(counts)" "$(want_counts 1 1 0 0 0 0 0 0)" "and imports the row"
assert_eq "$(py 'print(d["rejects_file"])')" "None" "rejects_file is null when nothing was rejected"
assert_eq "$(mode_of nomail.csv.rejects.csv)" "no file" "no rejects file without rejects"
run_cli --json sub show m1@example.org
assert_eq "$(py 'print(d["name"], d["attrs"])')" "Mia {'city': 'Oslo'}" \
	"'Full Name' is the name, junk is left out, Town is attr city"
run_cli import nomail.csv --list news --source "old crm" --basis express --map mail=bogus
assert_refused "--map to an unknown field is refused"
assert_err_contains "bogus" "naming it"

# --- 12. option errors ------------------------------------------------------------

printf 'email,name\no1@example.org,Opt\n' >opts.csv
before=$(state)
run_cli import opts.csv --list news --source x --basis implied
assert_refused "--basis implied without --expires is refused"
assert_err_contains "--expires" "and says --expires is needed"
run_cli import opts.csv --list news --source x --basis implied --expires 2001-01-01
assert_refused "an expiry in the past is refused"
run_cli import opts.csv --list news --source x --basis sometimes
assert_refused "an unknown --basis is refused"
run_cli import opts.csv --list news --source x --basis express --consent-text v9
assert_rc 65 "an unknown consent text is refused"
assert_err_contains '"v9"' "and named"
run_cli import opts.csv --list nosuch --source x --basis express
assert_rc 65 "an unknown list is refused"
assert_err_contains 'unknown list "nosuch"' "and named"
run_cli import opts.csv --source x --basis express
assert_rc 64 "--list is required"
run_cli import opts.csv --list news --basis express
assert_rc 64 "--source is required"
run_cli import opts.csv --list news --source x --basis express --bogus
assert_rc 64 "an unknown option"
run_cli import nonexistent.csv --list news --source x --basis express
assert_rc 66 "a missing file exits 66"
assert_err_contains "nonexistent.csv" "naming it"
printf 'email\nr73@example.org\nbad@@example.org\n' >r73.csv
run_cli import r73.csv --list news --source x --basis express --rejects /nonexistent/dir/r.csv
assert_rc 73 "a rejects file that cannot be created exits 73"
assert_eq "$(state)" "$before" "none of the refused imports stored anything"

# No --basis and no basis column: no row could have one.
run_cli --json import opts.csv --list news --source x
assert_refused "an import without --basis or a basis column is refused"
assert_err_contains "--basis" "and says --basis is needed"
assert_eq "$(state)" "$before" "storing nothing"
# A basis column without --basis: a row with an empty value has none.
printf 'email,basis\nx1@example.org,express\nx2@example.org,\n' >nobasis.csv
run_cli --json import nobasis.csv --list basis --source x
assert_rc 0 "a basis column without --basis"
assert_eq "$(counts)" "$(want_counts 2 1 0 0 0 0 0 1)" "the row without a basis is rejected"
assert_reason nobasis.csv.rejects.csv 3 "^no consent basis$" "as \"no consent basis\""

# Per-row basis and expiry, the default from --basis, --consent-text, --collected-at.
{
	printf 'email,basis,expires\n'
	printf 'b1@example.org,express,\n'
	printf 'b2@example.org,implied,2999-06-01\n'
	printf 'b3@example.org,implied,\n'
	printf 'b4@example.org,,\n'
	printf 'b5@example.org,implied,2001-01-01\n'
	printf 'b6@example.org,sometimes,\n'
} >basis.csv
run_cli --json import basis.csv --list basis --source "shop" --basis express \
	--consent-text v1 --collected-at 2020-05-01
assert_rc 0 "import with a basis column"
assert_eq "$(counts)" "$(want_counts 6 3 0 0 0 0 0 3)" "3 rows with a usable basis, 3 without"
assert_reason basis.csv.rejects.csv 4 "basis|expir" "implied without an expiry is rejected"
assert_reason basis.csv.rejects.csv 6 "basis|expir|past" "an expiry in the past is rejected"
assert_reason basis.csv.rejects.csv 7 "basis" "an unknown basis is rejected"
got=$(sql "SELECT string_agg(s.email || ':' || e.basis || ':' ||
		coalesce(to_char(e.basis_expires_at AT TIME ZONE 'UTC', 'YYYY-MM-DD'), '-') || ':' ||
		coalesce(e.consent_text_version, '-') || ':' ||
		coalesce(to_char(e.consent_collected_at AT TIME ZONE 'UTC', 'YYYY-MM-DD'), '-'),
		' ' ORDER BY s.email)
	FROM ledger e JOIN subscribers s ON s.id = e.subscriber_id
	WHERE e.import_sha256 = '$(sha_of basis.csv)'")
assert_eq "$got" "b1@example.org:express:-:v1:2020-05-01 b2@example.org:implied:2999-06-01:v1:2020-05-01 b4@example.org:express:-:v1:2020-05-01" \
	"each event carries its row's basis, expiry, consent text and --collected-at"
run_cli --json sub show b2@example.org
assert_eq "$(py 's = d["subscriptions"][0]; print(s["basis"], s["basis_expires_at"])')" \
	"implied 2999-06-01T00:00:00Z" "the subscription keeps the implied basis and its expiry"

# --- 4, 8, 9. unsubscribed, suppressed, duplicates; --dry-run ----------------------

run_cli sub add keep@example.org --list news --source desk --name "Keep Me"
run_cli sub add gone@example.org --list news --source desk
run_cli sub unsubscribe gone@example.org --list news --source "asked by phone"
assert_rc 0 "gone@ unsubscribes from news"
run_cli suppress add blocked@example.org --reason manual
run_cli suppress add @blocked.example --reason hard-bounce
run_cli suppress add Erased@Example.org --reason erasure
run_cli suppress add johndoe@gmail.com --reason complaint
assert_rc 0 "suppressions: an address, a domain, an erasure, a gmail mailbox"
run_cli suppress check J.o.h.n.Doe+promo@googlemail.com
assert_out_contains "suppressed: complaint" "(the gate stops the gmail spelling)"

{
	printf 'email,name,code\n'
	printf 'keep@example.org,Keep Me,a\n'                  # 2 unchanged
	printf 'gone@example.org,Gone,b\n'                     # 3 unsubscribed
	printf 'blocked@example.org,Blocked,c\n'               # 4 suppressed
	printf 'Someone@Blocked.Example,Dom,d\n'               # 5 suppressed (domain)
	printf 'erased@example.org,Erased,e\n'                 # 6 suppressed (hash)
	printf 'J.o.h.n.Doe+promo@googlemail.com,John,f\n'     # 7 suppressed (gmail)
	printf 'New.Person@Example.org,First Wins,g\n'         # 8 added
	printf 'new.person@EXAMPLE.ORG,Second,h\n'             # 9 duplicate of 8
	printf 'bad@@example.org,Bad,j\n'                      # 10 rejected
} >mixed.csv
gone_events=$(sql "SELECT count(*) FROM ledger e JOIN subscribers s ON s.id = e.subscriber_id
	WHERE s.email_key = 'gone@example.org'")
before=$(state)
run_cli --json import mixed.csv --list news --source "partner list" --basis express --dry-run
assert_rc 0 "--dry-run"
dry=$OUT
assert_eq "$(counts)" "$(want_counts 9 1 0 1 1 4 1 1)" \
	"--dry-run counts: 1 added, 1 unchanged, 1 unsubscribed, 4 suppressed, 1 duplicate, 1 rejected"
assert_eq "$(py 'print(d["dry_run"])')" "True" "--json says dry_run"
assert_eq "$(state)" "$before" "--dry-run writes nothing to the database"
assert_eq "$(mode_of mixed.csv.rejects.csv)" "600" "but writes the rejects file"
run_cli import mixed.csv --list news --source "partner list" --basis express --dry-run
assert_out_contains "dry run: nothing was written" "the text summary of a dry run says so"
assert_out_lacks "committed" "and does not claim a commit"
assert_eq "$(state)" "$before" "still nothing written"
rm -f mixed.csv.rejects.csv

run_cli --json import mixed.csv --list news --source "partner list" --basis express
assert_rc 0 "the real import"
strip='[d.pop(k, None) for k in ("seconds", "dry_run")]; print(json.dumps(d, sort_keys=True))'
got=$(py "$strip")
want=$(OUT=$dry py "$strip")
[[ $want == '{'* ]] || want="(no summary of the dry run)"
assert_eq "$got" "$want" "its summary is the dry run's"
rej=mixed.csv.rejects.csv
assert_reason $rej 3 "^unsubscribed from news$" "gone@ is listed as unsubscribed from news"
assert_reason $rej 4 "^suppressed \\(manual\\)$" "an address entry: suppressed (manual)"
assert_reason $rej 5 "^suppressed \\(hard-bounce\\)$" "a domain entry: suppressed (hard-bounce)"
assert_reason $rej 6 "^suppressed \\(erasure\\)$" "an erased address: suppressed (erasure)"
assert_reason $rej 7 "^suppressed \\(complaint\\)$" "a gmail spelling: suppressed (complaint)"
assert_reason $rej 9 "^duplicate of line 8$" "the second spelling: duplicate of line 8"
assert_reason $rej 10 "address" "the bad address is rejected"
got=$(rejects $rej | sed 1d | cut -d'|' -f1 | tr '\n' ' ')
assert_eq "$got" "10 3 4 5 6 7 9 " "invalid rows first, then the skipped ones"
assert_eq "$(rejects $rej | awk -F'|' '$1 == 7 { print $3 }')" "J.o.h.n.Doe+promo@googlemail.com" \
	"a skipped row keeps its email as written"
run_cli --json sub show gone@example.org
got=$(py 'print(d["subscriptions"][0]["status"], len(d["history"]))')
assert_eq "$got" "unsubscribed $gone_events" "gone@ stays unsubscribed, with no new event"
n=$(sql "SELECT count(*) FROM subscribers WHERE email_key IN ('blocked@example.org',
	'someone@blocked.example', 'erased@example.org', 'j.o.h.n.doe+promo@googlemail.com')")
assert_eq "$n" "0" "no suppressed address became a subscriber"
run_cli --json sub show new.person@example.org
got=$(py 'print(d["email"], d["name"], d["attrs"], d["subscriptions"][0]["status"])')
assert_eq "$got" "New.Person@example.org First Wins {'code': 'g'} confirmed" \
	"of two spellings the first row wins"
assert_eq "$(sql "SELECT count(*) FROM subscribers WHERE email_key = 'new.person@example.org'")" \
	"1" "and is stored once"
run_cli --json sub show keep@example.org
got=$(py 'print(d["name"], d["attrs"], len(d["history"]))')
assert_eq "$got" "Keep Me {} 1" "an existing subscriber is left alone without --update"

# --- 7. --update ------------------------------------------------------------------

run_cli sub add pend@example.org --list letters --source desk --name "Pat Old"
run_cli sub add left@example.org --list letters --source desk --name "Lee Old"
run_cli sub confirm left@example.org --list letters --source desk
run_cli sub unsubscribe left@example.org --list letters --source "asked"
assert_rc 0 "pend@ pending and left@ unsubscribed on letters"
printf 'email,name,city,plan\nconf@example.org,Cora Old,Oslo,basic\n' >upd0.csv
run_cli --json import upd0.csv --list letters --source crm --basis express
assert_eq "$(counts)" "$(want_counts 1 1 0 0 0 0 0 0)" "conf@ imported with attributes"
{
	printf 'email,name,city,plan\n'
	printf 'pend@example.org,Pat New,Rome,gold\n'
	printf 'left@example.org,Lee New,Paris,gold\n'
	printf 'conf@example.org,Cora New,,gold\n'
} >upd1.csv
profiles()
{
	local a

	for a in pend left conf; do
		run_cli --json sub show $a@example.org
		py 'print(d["name"] + ":" + d["subscriptions"][0]["status"] + ":" + json.dumps(d["attrs"], sort_keys=True), end=" ")'
	done
}
old_profiles=$(profiles)
assert_eq "$old_profiles" 'Pat Old:pending:{} Lee Old:unsubscribed:{} Cora Old:confirmed:{"city": "Oslo", "plan": "basic"} ' \
	"(the profiles before)"
run_cli --json import upd1.csv --list letters --source crm --basis express
assert_eq "$(counts)" "$(want_counts 3 0 0 2 1 0 0 0)" "without --update: 2 unchanged, 1 unsubscribed"
assert_eq "$(profiles)" "$old_profiles" "and names and attributes stay"

before=$(state)
run_cli --json import upd1.csv --list letters --source crm --basis express --update --dry-run
assert_eq "$(counts)" "$(want_counts 3 0 2 0 1 0 0 0)" "--update --dry-run would update 2"
assert_eq "$(state)" "$before" "but writes nothing"
run_cli --json import upd1.csv --list letters --source crm --basis express --update
assert_rc 0 "--update"
assert_eq "$(counts)" "$(want_counts 3 0 2 0 1 0 0 0)" "--update: 2 updated, the unsubscribed one skipped"
assert_eq "$(profiles)" 'Pat New:pending:{"city": "Rome", "plan": "gold"} Lee Old:unsubscribed:{} Cora New:confirmed:{"city": "Oslo", "plan": "gold"} ' \
	"names replaced, attributes merged, statuses kept, the unsubscribed one untouched"
assert_reason upd1.csv.rejects.csv 3 "^unsubscribed from letters$" "which the rejects file lists"
run_cli --json import upd1.csv --list letters --source crm --basis express --update
assert_eq "$(counts)" "$(want_counts 3 0 0 2 1 0 0 0)" "--update again: nothing differs, 2 unchanged"
printf 'email,name,city\nconf@example.org,,Bergen\n' >upd2.csv
run_cli --json import upd2.csv --list letters --source crm --basis express --update
assert_eq "$(counts)" "$(want_counts 1 0 1 0 0 0 0 0)" "a row without a name still updates attributes"
run_cli --json sub show conf@example.org
assert_eq "$(py 'print(d["name"], d["attrs"]["city"], d["attrs"]["plan"])')" "Cora New Bergen gold" \
	"and the name stays"

# --- 3. 100,000 rows with seeded bad ones -----------------------------------------

$PY - big.csv big.expected big.bad <<'EOF'
import sys
path, expected_path, bad_path = sys.argv[1:4]
N = 100000
bad = {
    3: (b"not-an-address,Bad Address,p0", "address"),
    10: (b"u10@@bulk.example,Double At,p1", "address"),
    1000: (b"u1000@bulk.example,Two Fields", "column|field"),
    2000: (b"u2000@bulk.example,Four,Fields,Here", "column|field"),
    3000: (b"u3000@bulk.example,Bad \xff\xfe bytes,p0", "UTF-8|utf8|encoding"),
    40000: (b"u40000@bulk.example,Long," + b"x" * 1001, "1000|long"),
    50000: (b"u50000@bulk.example," + b"N" * 201 + b",p2", "name"),
    60000: (b"postmaster@bulk.example,Post Master,p1", "role"),
    60001: (b"Abuse@Bulk.Example,Abuse Desk,p1", "role"),
    60002: (b"noreply@bulk.example,,p1", "role"),
    70000: (b"U5@BULK.EXAMPLE,Dup,p1", "^duplicate of line 5$"),
    85000: (b",No Email,p1", "address|email|empty"),
    90000: (b"hostmaster@bulk.example,Host Master,p1", "role"),
}
expected = []
line = 2
out = [b"email,name,plan\n"]
for i in range(N - 1):
    if line in bad:
        out.append(bad[line][0] + b"\n")
        line += 1
    elif line == 80000:
        # one record over two lines: every later line number moves by one
        out.append(b'u80000@bulk.example,User 80000,"two\nlines"\n')
        expected.append("u80000@bulk.example")
        line += 2
    else:
        out.append(b"u%d@bulk.example,User %d,p%d\n" % (line, line, line % 3))
        expected.append("u%d@bulk.example" % line)
        line += 1
# the last record opens a quote it never closes
out.append(b'"u%d@bulk.example,Never closed,p1\n' % line)
bad[line] = (None, "quot")
with open(path, "wb") as f:
    f.write(b"".join(out))
with open(expected_path, "w") as f:
    f.write("\n".join(sorted(expected)) + "\n")
with open(bad_path, "w") as f:
    for l in sorted(bad):
        f.write("%d %s\n" % (l, bad[l][1]))
EOF
nbad=$(wc -l <big.bad)
ngood=$(wc -l <big.expected)
bsha=$(sha_of big.csv)
assert_eq "$ngood $nbad" "99986 14" "(the generated file: 99986 good rows, 14 bad)"
run_cli --json import big.csv --list bulk --source "legacy crm" --basis express
assert_rc 0 "import of 100,000 rows"
assert_eq "$(counts)" "$(want_counts 100000 99986 0 0 0 0 1 13)" \
	"exact counts: 99986 added, 1 duplicate, 13 rejected"
rate=$(py 'print(int(d["rows"] / max(d["seconds"], 0.001)))')
diag "100,000 rows in $(py 'print(d["seconds"])') s ($rate rows/s)"
assert_eq "$(mode_of big.csv.rejects.csv)" "600" "big.csv.rejects.csv is mode 0600"
assert_eq "$(rejects big.csv.rejects.csv | sed 1d | wc -l)" "14" "it lists 14 rows"
while read -r line re; do
	assert_reason big.csv.rejects.csv "$line" "$re" "line $line: /$re/"
done <big.bad
got=$(rejects big.csv.rejects.csv | sed 1d | tail -n 1 | cut -d'|' -f1)
assert_eq "$got" "70000" "the duplicate comes after the invalid rows"
sql "SELECT s.email FROM subscriptions u JOIN subscribers s ON s.id = u.subscriber_id
	JOIN lists l ON l.id = u.list_id WHERE l.name = 'bulk' AND u.status = 'confirmed'
	ORDER BY 1" | LC_ALL=C sort >big.stored
LC_ALL=C sort -o big.expected big.expected
if cmp -s big.stored big.expected; then
	ok "every good row is stored, confirmed on bulk, and nothing else"
else
	not_ok "every good row is stored, confirmed on bulk, and nothing else"
	diag "$(diff big.expected big.stored | head -n 10)"
fi
n=$(sql "SELECT count(*) FROM ledger e JOIN subscribers s ON s.id = e.subscriber_id
	WHERE e.import_sha256 = '$bsha' AND e.action = 'import' AND e.channel = 'import'
	AND e.status_after = 'confirmed' AND e.import_file = 'big.csv'
	AND e.source = 'legacy crm' AND e.operator = '$ME'
	AND e.import_line::text = substring(s.email FROM '^u([0-9]+)@')")
assert_eq "$n" "99986" "each row's event has the file, its SHA-256 and the row's own line"
n=$(sql "SELECT count(*) FROM subscribers WHERE email_key = 'u80002@bulk.example'")
assert_eq "$n" "1" "the record after the two-line one is at line 80002"

# --- 5. a kill in the middle ----------------------------------------------------------

nkill=$((rate * 6))
[ "$nkill" -ge 60000 ] || nkill=60000
[ "$nkill" -le 400000 ] || nkill=400000
$PY -c "
import sys
with open('kill.csv', 'w') as f:
    f.write('email,name\n')
    f.writelines('k%d@kill.example,K %d\n' % (i, i) for i in range($nkill))
"
before=$(state)
"$ASSENT_BIN" -c "$CONF" import kill.csv --list killtest --source "big file" \
	--basis express >kill.out 2>kill.err &
kpid=$!
start=$SECONDS
writing=no
alive=yes
# Kill once it has written in its transaction and run 2 s or more.
while :; do
	kill -0 $kpid 2>/dev/null || { alive=no; break; }
	if [ $writing = no ]; then
		n=$(sql "SELECT count(*) FROM pg_stat_activity WHERE datname = '$CLI_DB'
			AND pid <> pg_backend_pid() AND backend_xid IS NOT NULL")
		[ "$n" = 0 ] || writing=yes
	fi
	[ $writing = yes ] && [ $((SECONDS - start)) -ge 2 ] && break
	[ $((SECONDS - start)) -lt 60 ] || break
	sleep 0.1
done
if [ $alive = yes ] && kill -9 $kpid 2>/dev/null; then
	ok "the import of $nkill rows was still running after $((SECONDS - start)) s (writing: $writing)"
else
	not_ok "the import of $nkill rows was still running when killed"
	diag "it ended after $((SECONDS - start)) s: $(cat kill.out kill.err)"
fi
wait $kpid 2>/dev/null
for _ in $(seq 1 100); do
	n=$(sql "SELECT count(*) FROM pg_stat_activity WHERE datname = '$CLI_DB'
		AND pid <> pg_backend_pid()")
	[ "$n" = 0 ] && break
	sleep 0.2
done
assert_eq "$n" "0" "the server ends the killed import's session"
assert_eq "$(state)" "$before" "the killed import left nothing: subscribers, subscriptions, ledger"
assert_eq "$(sql "SELECT count(*) FROM subscribers WHERE email_key LIKE '%@kill.example'")" "0" \
	"no row of it is stored"
run_cli --json import kill.csv --list killtest --source "big file" --basis express
assert_rc 0 "the same import again"
assert_eq "$(counts)" "$(want_counts $nkill $nkill 0 0 0 0 0 0)" "imports every row"
n=$(sql "SELECT count(*) FROM subscriptions u JOIN lists l ON l.id = u.list_id
	WHERE l.name = 'killtest' AND u.status = 'confirmed'")
assert_eq "$n" "$nkill" "all of them confirmed on killtest"

# --- 13. what a review found: no row lost, smuggled or miscounted ---------------

run_cli list create review
# line numbers as the ledger records them for list review
review_lines()
{
	sql "SELECT string_agg(s.email || ':' || e.import_line, ' ' ORDER BY e.import_line)
		FROM ledger e JOIN subscribers s ON s.id = e.subscriber_id
		JOIN lists l ON l.id = e.list_id
		WHERE l.name = 'review' AND e.import_file = '$1'"
}

# CR alone ends lines (old Mac exports): every row taken, at its line.
printf 'email,name\rcr1@example.com,C One\rcr2@example.com,C Two\rcr3@example.com,C Three\r' > cr.csv
run_cli --json import cr.csv --list review --source review --basis express
assert_eq "$(counts)" "$(want_counts 3 3 0 0 0 0 0 0)" "a CR-only file: three rows added"
assert_eq "$(review_lines cr.csv)" "cr1@example.com:2 cr2@example.com:3 cr3@example.com:4" \
	"and stored, each at its line"

# Lines of blanks are skipped but counted.
printf 'email,name\n \n\t\nws1@example.com,W\n' > ws.csv
run_cli --json import ws.csv --list review --source review --basis express
assert_eq "$(counts)" "$(want_counts 1 1 0 0 0 0 0 0)" "lines of blanks are no rows"
assert_eq "$(review_lines ws.csv)" "ws1@example.com:4" "and the row after them keeps its line"

# A line over 64 KiB is one rejected row: nothing in it becomes a row,
# wherever the reads split it.
$PY - <<'PYEOF'
pad = 131072 - len("email,name,note\n") - len("long1@example.com,A,")
with open("smuggle.csv", "w") as f:
    f.write("email,name,note\n")
    f.write("long1@example.com,A," + "z" * pad + "smuggled@example.com,Smug,x\n")
    f.write("after@example.com,After,ok\n")
PYEOF
run_cli --json import smuggle.csv --list review --source review --basis express
assert_eq "$(counts)" "$(want_counts 2 1 0 0 0 0 0 1)" "an over-long line is one rejected row"
assert_eq "$(review_lines smuggle.csv)" "after@example.com:3" "nothing after its 64 KiB became a row"
assert_reason smuggle.csv.rejects.csv 2 "line 2 is over 65536 bytes" "the reason names the line"

# A quote that never closes costs its own line only: the lines after it
# are read again as rows.
printf 'email,name\nq1@example.com,"Eve\nq2@example.com,Two\nq3@example.com,Three\n' > quote.csv
run_cli --json import quote.csv --list review --source review --basis express
assert_eq "$(counts)" "$(want_counts 3 2 0 0 0 0 0 1)" "an unclosed quote rejects its line only"
assert_eq "$(review_lines quote.csv)" "q2@example.com:3 q3@example.com:4" "the rows after it are taken"
assert_reason quote.csv.rejects.csv 2 "opened on line 2 is not closed" "the reason names where it opened"
printf 'email,name\nw1@example.com,"bad\nw2@example.com,B\nw3@example.com,"C"x\nw4@example.com,D\n' > wrong.csv
run_cli --json import wrong.csv --list review --source review --basis express
assert_eq "$(counts)" "$(want_counts 4 2 0 0 0 0 0 2)" "a quote closed wrongly lines later"
assert_eq "$(review_lines wrong.csv)" "w2@example.com:3 w4@example.com:5" "costs its first line only"
assert_reason wrong.csv.rejects.csv 2 "opened on line 2 closes wrongly on line 4" \
	"and says where it opened and closed"

# A CR inside a line (not before its LF) is refused, not a line break.
printf 'email,name\nlc1@example.com,Jo\rhn\nlc2@example.com,Ann\n' > lonecr.csv
run_cli --json import lonecr.csv --list review --source review --basis express
assert_eq "$(counts)" "$(want_counts 2 1 0 0 0 0 0 1)" "a stray CR: its row rejected, no phantom row"
assert_reason lonecr.csv.rejects.csv 2 "carriage return \\(CR\\) that ends no line" "and named"
assert_eq "$(sql "SELECT count(*) FROM subscribers WHERE email = 'lc1@example.com'")" "0" \
	"the row is not stored cut short"

# --rejects never removes a file that is not a rejects file, and a
# rejects path that cannot be written refuses the import before it commits.
echo precious > precious.txt
printf 'email\nkeep1@example.com\n' > keep.csv
run_cli import keep.csv --list review --source review --basis express --rejects precious.txt --dry-run
assert_rc 73 "--rejects naming a file that is not a rejects file is refused"
assert_err_contains "is not a rejects file" "and says why"
assert_eq "$(cat precious.txt)" "precious" "leaves that FILE alone"
printf 'email\nbad@@x\n' > bad1.csv
run_cli import bad1.csv --list review --source review --basis express --rejects precious.txt
assert_rc 73 "also when a row would be rejected"
assert_eq "$(cat precious.txt)" "precious" "the FILE is not overwritten"
mkdir -p adir
printf 'email\nkeep2@example.com\nbad@@x\n' > keep2.csv
before=$(state)
run_cli import keep2.csv --list review --source review --basis express --rejects adir
assert_rc 73 "a rejects path that is a directory"
assert_err_contains "adir: not a regular file" "is named"
assert_eq "$(state)" "$before" "and nothing is stored"
assert_eq "$(ls -d adir/* keep2.csv.rejects.csv* 2>/dev/null | wc -l)" "0" "nor any file left behind"

# A header cell with a control character: one clear message.
printf 'email,"a\nb"\nx@example.com,x\n' > ctlhead.csv
run_cli import ctlhead.csv --list review --source review --basis express
assert_rc 65 "a header cell with a line break"
assert_err_contains "ctlhead.csv:1: column 2: invalid column name" "names file, line and column once"
assert_eq "$(grep -o 'ctlhead.csv:1' <<<"$ERR" | wc -l)" "1" "without repeating itself"

# Evidence that cannot be stored is refused before the file is read.
run_cli import keep.csv --list review --source "$(printf 'two\tparts')" --basis express
assert_rc 65 "a --source with a tab"
assert_err_contains "source" "names the field"

# --- 14. what a second review found -------------------------------------------

# An ignored column is not checked: its bytes may be anything.
printf 'email,notes\nig1@example.com,caf\xe9\nig2@example.com,%s\n' "$(head -c 1500 /dev/zero | tr '\0' a)" > ignore.csv
run_cli --json import ignore.csv --list review --source review --basis express --map notes=-
assert_eq "$(counts)" "$(want_counts 2 2 0 0 0 0 0 0)" "--map COLUMN=- ignores what the column holds"

# Header errors name the header's own line.
printf '\n\nmail,name\na@x.example,b\n' > h3.csv
run_cli import h3.csv --list review --source review --basis express
assert_rc 65 "a header on line 3 without an email column"
assert_err_contains "h3.csv:3: no email column" "is reported at line 3"
printf 'Email;Name\na@x.example;b\n' > semi.csv
run_cli import semi.csv --list review --source review --basis express
assert_err_contains "separated by ';'" "a file separated by semicolons gets a hint"

# A spreadsheet's trailing comma: a column without a name, empty in
# every row, is no problem; a value in it is.
printf 'email,name,\ntc1@example.com,T,\ntc2@example.com,U,oops\n' > trailing.csv
run_cli --json import trailing.csv --list review --source review --basis express
assert_eq "$(counts)" "$(want_counts 2 1 0 0 0 0 0 1)" "a nameless empty column is fine"
assert_reason trailing.csv.rejects.csv 3 "column 3 has no name" "a value under no name is rejected"

# What assent export writes comes back in: its status is honoured (who
# left stays out), attrs become attributes again, its other columns are
# not attributes.
run_cli list create rtsource
run_cli list create roundtrip
printf 'email,name,city\nrt1@example.com,"Ro, One",Porto\nrt2@example.com,Ro Two,Lima\nrt3@example.com,Ro Three,\n' > rt.csv
run_cli import rt.csv --list rtsource --source "fair" --basis express
run_cli sub unsubscribe rt2@example.com --list rtsource --source "asked by phone"
assert_rc 0 "one of them leaves rtsource"
run_cli export --list rtsource --status all --out rt-export.csv
assert_rc 0 "export of rtsource, every status"
run_cli --json import rt-export.csv --list roundtrip --source "moved from rtsource" --basis express
assert_rc 0 "the export imported into another list"
assert_eq "$(counts)" "$(want_counts 3 2 0 0 1 0 0 0)" \
	"two added, the one who left counted as unsubscribed"
assert_eq "$(sql "SELECT string_agg(s.email_key || '=' || s.name || '/' || coalesce(s.attrs->>'city', '-'), ' ' ORDER BY s.email_key)
	FROM subscriptions u JOIN lists l ON l.id = u.list_id
	JOIN subscribers s ON s.id = u.subscriber_id WHERE l.name = 'roundtrip'")" \
	"rt1@example.com=Ro, One/Porto rt3@example.com=Ro Three/-" \
	"names and attributes come back; the one who left is not subscribed"
assert_eq "$(sql "SELECT count(*) FROM subscribers WHERE attrs ?| array['status',
	'attrs', 'subscribed_at', 'last_event_at', 'last_event_action',
	'last_event_channel', 'suppressed', 'basis_expires_at']")" "0" \
	"no export column became an attribute"
assert_eq "$(rejects rt-export.csv.rejects.csv | grep -c '|unsubscribed, as the file says|rt2@example.com$')" "1" \
	"the rejects file lists the one who left"

run_cli sub show rt1@example.com
assert_out_contains "IMPORT FILE" "sub show lists where each import event came from"
assert_out_contains "rt.csv" "the file"
assert_eq "$(printf '%s\n' "$OUT" | grep -c ' rt\.csv  *2 *$')" "1" "and the line"

# --- 10. the ledger holds ------------------------------------------------------

run_cli ledger verify
assert_rc 0 "ledger verify after the imports"
assert_out_contains "ledger intact" "the ledger is intact"

finish

#!/bin/bash
# assent config check: validation with file:line, effective settings,
# secrets masked, secret files refused when others may read them.
. "$(dirname "$0")/lib.sh"

TMP=$(mktemp -d)
cli_at_exit "rm -rf '$TMP'"
SAMPLE=${ASSENT_SRCDIR:-$(dirname "$0")/../..}/conf/assent.conf

run_bin config check "$SAMPLE"
assert_rc 0 "the sample config is valid"
assert_out_contains ": OK" "config check says OK"
assert_err_contains "nothing can be sent until http.base_url, sender.postal_address, sender.bounce_domain are set" \
	"and that the sample cannot send until the sender is set"
assert_out_contains 'port = 8025;' "and prints effective settings"

run_bin --json config check "$SAMPLE"
assert_rc 0 "config check --json"
got=$(printf '%s' "$OUT" | /usr/bin/python3 -c 'import json,sys; d=json.load(sys.stdin); print(d["http"]["port"], d["smtp"]["starttls"], d["sending"]["batch"])')
assert_eq "$got" "8025 required 100" "JSON has the effective settings"

printf 'database = { dsn = "host=/x user=a password=s3cret dbname=a"; };\n' > "$TMP/pw.conf"
chmod 644 "$TMP/pw.conf"
run_bin config check "$TMP/pw.conf"
assert_rc 78 "a DSN password in a file others can read is refused"
assert_err_contains "readable by group or others" "and says why"
assert_err_lacks() { case "$ERR" in *"$1"*) not_ok "$2";; *) ok "$2";; esac; }
assert_err_lacks "s3cret" "without showing the password"
chmod 600 "$TMP/pw.conf"
run_bin config check "$TMP/pw.conf"
assert_rc 0 "a DSN with a password in a private file"
assert_out_lacks "s3cret" "the password is masked"
run_bin --json config check "$TMP/pw.conf"
assert_out_lacks "s3cret" "masked in JSON too"

printf 'database = { dsn = "x"; };\nsmtp = {\n  prot = 25;\n};\n' > "$TMP/unknown.conf"
run_bin config check "$TMP/unknown.conf"
assert_rc 78 "unknown setting"
assert_err_contains "$TMP/unknown.conf:3: smtp.prot" "names file:line and setting"
assert_err_contains "smtp.port" "suggests the right name"

printf 'database = { dsn = "x"; };\nhttp = { port = "8025"; };\n' > "$TMP/type.conf"
run_bin config check "$TMP/type.conf"
assert_rc 78 "wrong type"
assert_err_contains "$TMP/type.conf:2: http.port" "names file:line and setting"

printf 'database = { dsn = "x"; };\nsending = { batch = 99999999999; };\n' > "$TMP/range.conf"
run_bin config check "$TMP/range.conf"
assert_rc 78 "out of range (libconfig would truncate it)"
assert_err_contains "$TMP/range.conf:2: sending.batch" "names file:line and setting"

printf 'smtp = { port = 25; };\n' > "$TMP/required.conf"
run_bin config check "$TMP/required.conf"
assert_rc 78 "missing required setting"
assert_err_contains "database.dsn" "names it"

printf 'database = {\n  dsn = ;\n};\n' > "$TMP/syntax.conf"
run_bin config check "$TMP/syntax.conf"
assert_rc 78 "syntax error"
assert_err_contains "$TMP/syntax.conf:2" "names file:line"

printf 'secret\n' > "$TMP/pass"
chmod 644 "$TMP/pass"
printf 'database = { dsn = "x"; };\nsmtp = { password_file = "%s"; };\n' "$TMP/pass" > "$TMP/secret.conf"
run_bin config check "$TMP/secret.conf"
assert_rc 78 "a password file others can read is refused"
assert_err_contains "readable by group or others" "and says why"
chmod 600 "$TMP/pass"
run_bin config check "$TMP/secret.conf"
assert_rc 0 "a private password file is accepted"

run_bin config check "$TMP/none.conf"
assert_rc 66 "a missing file"

# The template files the configuration names must compile.
printf 'Hello {{ name }},\nconfirm here:\n  {{ confirm_ur }}\n' > "$TMP/confirm.txt"
printf 'database = { dsn = "x"; };\nsignup = { confirm_text = "%s"; };\n' \
	"$TMP/confirm.txt" > "$TMP/tpl.conf"
run_bin config check "$TMP/tpl.conf"
assert_rc 78 "a confirmation template that does not compile"
assert_err_contains "signup.confirm_text: $TMP/confirm.txt: template line 3, column 6: unknown field \"confirm_ur\"" \
	"names the setting, the file, the line and the column"
printf 'database = { dsn = "x"; };\nsignup = { confirm_subject = "Hi {{ confirm_url }}"; };\n' > "$TMP/subj.conf"
run_bin config check "$TMP/subj.conf"
assert_rc 78 "a subject with the link"
assert_err_contains "a subject may not contain confirm_url" "says why"
printf '<p>{{ title }}</p>\n' > "$TMP/page.html"
printf 'database = { dsn = "x"; };\nhttp = { page_template = "%s"; };\n' \
	"$TMP/page.html" > "$TMP/page.conf"
run_bin config check "$TMP/page.conf"
assert_rc 78 "a page template without its content"
assert_err_contains "http.page_template: $TMP/page.html: template: the page has no {{ content }}" \
	"names the setting and the file"
printf 'database = { dsn = "x"; };\nhttp = { page_template = "%s/nope.html"; };\n' \
	"$TMP" > "$TMP/page2.conf"
run_bin config check "$TMP/page2.conf"
assert_rc 78 "a page template that is not there"
assert_err_contains "nope.html" "names it"

finish

/*
 * check_bounce_e2e: what comes back, end to end. assentd sends a
 * campaign to tests/harness/smtpd.py, which refuses some recipients at
 * RCPT (550 5.1.1, 554 5.7.1 policy) and defers one (451); then a DSN
 * for a message the relay took, an ARF complaint for another, a forged
 * DSN and an auto-reply go through `assent inbound` as an MTA's pipe
 * would hand them over; then `assent suppress check` and the next
 * campaign must skip exactly the right people.
 */
#include <sys/stat.h>
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "assent/buf.h"
#include "assent/campaign.h"
#include "assent/keys.h"
#include "assent/lists.h"
#include "assent/suppress.h"
#include "assent/xmalloc.h"
#include "testhelp.h"

#define conn testhelp_conn
#define DONE_MS 60000
#define SAMPLE_TOKEN "ujzdegxdncf32epf3dhodzdocis2jhtlgmxgedn73u55xtpl"

static const char body[] = "Hello {{ name | \"friend\" }}\n"
    "Leave: {{ unsubscribe_url }}\n{{ sender.postal_address }}\n";

static struct world {
	char dir[64];
	char *keys, *smtp_dir, *conf, *log;
	int smtp_port;
	pid_t smtp_pid;
	struct keys *k;
	struct suppress_ctx gate;
} w;

static void
setup(void)
{
	struct assent_err err;
	char port[16], *extra;

	testhelp_fixture_db();
	memset(&w, 0, sizeof(w));
	strcpy(w.dir, "/tmp/assent-bounce-XXXXXX");
	ck_assert(mkdtemp(w.dir) != NULL);
	testhelp_keys_make(w.dir, &w.keys, &w.k, &w.gate, NULL);
	w.smtp_dir = xasprintf("%s/smtp", w.dir);
	ck_assert(mkdir(w.smtp_dir, 0700) == 0);
	w.smtp_port = testhelp_free_port();
	snprintf(port, sizeof(port), "%d", w.smtp_port);
	setenv("ASSENT_TEST_SMTP_PORT", port, 1);
	extra = xasprintf("tokens = { keys_file = \"%s\"; };\n"
	    "sending = { concurrency = 1; retry_base = 1; max_attempts = 2; };\n"
	    "sender = { from = \"news@example.org\";"
	    " bounce_domain = \"bounce.example.org\";"
	    " postal_address = \"1 Test Road\"; };\n", w.keys);
	w.conf = testhelp_write_conf(testhelp_dsn, testhelp_free_port(), extra);
	free(extra);
	w.log = xasprintf("%s/assentd.log", w.dir);
	ck_assert_int_eq(lists_create(conn, "news", NULL, false, &err), 0);
	ck_assert_int_eq(lists_create(conn, "offers", NULL, false, &err), 0);
	w.smtp_pid = testhelp_smtpd_start(w.smtp_dir, w.smtp_port, NULL);
}

static void
teardown(void)
{
	testhelp_smtpd_stop(w.smtp_pid);
	keys_free(w.k);
	free(w.keys);
	free(w.smtp_dir);
	free(w.conf);
	free(w.log);
	testhelp_fixture_drop();
}

static void
campaign(const char *name)
{
	const char *lists[] = { "news" };
	struct campaign_content c = {
		.lists = lists, .nlists = 1, .subject = "News",
		.from = "Example News <news@example.org>", .text = body,
	};
	struct assent_err err;

	ck_assert_msg(campaign_create(conn, name, &c, "tester", NULL, &err) == 0,
	    "%s", err.msg);
	ck_assert_msg(campaign_schedule(conn, name, "now", false, 86400, &err) == 0,
	    "%s", err.msg);
}

/* Run assentd until campaign name is done. */
static void
send_campaign(const char *name)
{
	char *sql = xasprintf("SELECT count(*) FROM campaigns WHERE name = '%s'"
	    " AND state = 'done'", name);
	long deadline = testhelp_now_ms() + DONE_MS;
	pid_t pid;

	campaign(name);
	pid = testhelp_assentd_spawn(w.conf, "-f", w.log);
	while (testhelp_query_long(conn, sql) != 1) {
		ck_assert_msg(testhelp_now_ms() < deadline, "%s not done:\n%s", name,
		    testhelp_file_read(w.log));
		testhelp_sleep_ms(100);
	}
	testhelp_assentd_stop(pid, w.log);
	free(sql);
}

/* The envelope sender (VERP) of the message rcpt got, from the
 * server's log (the last one); a fresh string. */
static char *
envelope_of(const char *rcpt)
{
	char *log = testhelp_smtpd_log(w.smtp_dir), *line, *save = NULL;
	char *found = NULL;

	for (line = strtok_r(log, "\n", &save); line != NULL;
	    line = strtok_r(NULL, "\n", &save)) {
		json_t *e = json_loads(line, 0, NULL);
		const char *r = json_string_value(json_object_get(e, "rcpt"));

		if (r != NULL && strcmp(r, rcpt) == 0 &&
		    json_object_get(e, "file") != NULL) {
			free(found);
			found = xstrdup(json_string_value(json_object_get(e,
			    "mail_from")));
		}
		json_decref(e);
	}
	free(log);
	ck_assert_msg(found != NULL, "no message to %s", rcpt);
	return found;
}

/* The sample file with every "from" replaced by "to" (twice at most
 * two pairs); a fresh string. */
static char *
sample(const char *file, const char *from1, const char *to1,
    const char *from2, const char *to2)
{
	char *path = xasprintf("%s/tests/data/inbound/%s", getenv("ASSENT_SRCDIR"),
	    file);
	char *text = testhelp_file_read(path), *out;
	struct buf b;
	const char *p = text;

	ck_assert_msg(*text != '\0', "%s is empty or missing", path);
	buf_init(&b);
	while (*p != '\0') {
		if (strncmp(p, from1, strlen(from1)) == 0) {
			buf_add_str(&b, to1);
			p += strlen(from1);
		} else if (from2 != NULL && strncmp(p, from2, strlen(from2)) == 0) {
			buf_add_str(&b, to2);
			p += strlen(from2);
		} else
			buf_add(&b, p++, 1);
	}
	out = xstrdup(b.data);
	buf_free(&b);
	free(text);
	free(path);
	return out;
}

/* assent -c conf inbound [--recipient rcpt] < msg: its exit status. */
static int
inbound(const char *rcpt, const char *msg, char **out_r)
{
	const char *bin = getenv("ASSENT_BIN");
	const char *argv[] = { bin, "-c", w.conf, "inbound", "--recipient", rcpt,
	    NULL };
	char *out, *errs;
	int rc;

	ck_assert_ptr_nonnull(bin);
	if (rcpt == NULL)
		argv[4] = NULL;
	rc = testhelp_run(argv, msg, &out, &errs);
	if (out_r != NULL)
		*out_r = xasprintf("%s%s", out, errs);
	free(out);
	free(errs);
	return rc;
}

/* What "assent --json suppress check ADDR" says. */
static bool
suppressed(const char *addr)
{
	const char *argv[] = { getenv("ASSENT_BIN"), "-c", w.conf, "--json",
	    "suppress", "check", addr, NULL };
	char *out, *errs;
	json_t *o;
	bool yes;

	ck_assert_int_eq(testhelp_run(argv, NULL, &out, &errs), 0);
	o = json_loads(out, 0, NULL);
	ck_assert_msg(o != NULL, "%s%s", out, errs);
	yes = json_is_true(json_object_get(o, "suppressed"));
	json_decref(o);
	free(out);
	free(errs);
	return yes;
}

START_TEST(test_end_to_end)
{
	const char *people[] = { "ann@example.org", "bob@example.org",
	    "cy@example.org", "dee@example.org", "reject-eve@example.org",
	    "policy-flo@example.org", "tempfail-gus@example.org" };
	char *env, *token, *msg, *out;

	for (size_t i = 0; i < sizeof(people) / sizeof(people[0]); i++)
		testhelp_subscribe(conn, people[i], NULL, "news");
	send_campaign("first");

	/* the relay's refusals during the session */
	ck_assert_int_eq(testhelp_query_long(conn, "SELECT count(*) FROM bounces"
	    " WHERE source = 'smtp' AND class = 'hard' AND status = '5.1.1'"
	    " AND recipient = 'reject-eve@example.org'"), 1);
	ck_assert_int_eq(testhelp_query_long(conn, "SELECT count(*) FROM bounces"
	    " WHERE source = 'smtp' AND class = 'policy'"
	    " AND recipient = 'policy-flo@example.org' AND action = 'none'"), 1);
	ck_assert_int_ge(testhelp_query_long(conn, "SELECT count(*) FROM bounces"
	    " WHERE source = 'smtp' AND class = 'soft'"
	    " AND recipient = 'tempfail-gus@example.org'"), 1);

	/* a DSN for ann's message, which the relay had taken */
	env = envelope_of("ann@example.org");
	token = xstrndup(env + 2, 48);
	msg = sample("postfix-user-unknown.eml", SAMPLE_TOKEN, token,
	    "bob@example.net", "ann@example.org");
	ck_assert_int_eq(inbound(env, msg, &out), 0);
	ck_assert_msg(strstr(out, "1 hard") != NULL, "%s", out);
	free(out);
	free(msg);
	ck_assert_int_eq(testhelp_query_long(conn, "SELECT count(*) FROM suppressions"
	    " WHERE value = 'ann@example.org' AND reason = 'hard-bounce'"
	    " AND removed_at IS NULL"), 1);
	ck_assert_int_eq(testhelp_query_long(conn, "SELECT count(*) FROM ledger e"
	    " JOIN subscribers s ON s.id = e.subscriber_id"
	    " WHERE s.email = 'ann@example.org' AND e.action = 'bounce'"
	    " AND e.channel = 'bounce'"), 1);
	ck_assert_int_eq(testhelp_query_long(conn, "SELECT count(*) FROM deliveries d"
	    " JOIN subscribers s ON s.id = d.subscriber_id"
	    " WHERE s.email = 'ann@example.org' AND d.bounced_at IS NOT NULL"), 1);

	/* the same DSN again: stored, nothing more done */
	msg = sample("postfix-user-unknown.eml", SAMPLE_TOKEN, token,
	    "bob@example.net", "ann@example.org");
	ck_assert_int_eq(inbound(env, msg, NULL), 0);
	free(msg);
	ck_assert_int_eq(testhelp_query_long(conn, "SELECT count(*) FROM ledger e"
	    " JOIN subscribers s ON s.id = e.subscriber_id"
	    " WHERE s.email = 'ann@example.org' AND e.action = 'bounce'"), 1);
	/* and the refusal at RCPT had the same effect as a DSN would */
	ck_assert_int_eq(testhelp_query_long(conn, "SELECT count(*) FROM ledger e"
	    " JOIN subscribers s ON s.id = e.subscriber_id"
	    " WHERE s.email = 'reject-eve@example.org' AND e.action = 'bounce'"), 1);

	/* a forged DSN for cy: a token that does not verify */
	free(env);
	free(token);
	env = envelope_of("cy@example.org");
	token = xstrndup(env + 2, 48);
	token[10] = token[10] == 'a' ? 'b' : 'a';
	msg = sample("postfix-user-unknown.eml", SAMPLE_TOKEN, token,
	    "bob@example.net", "cy@example.org");
	ck_assert_int_eq(inbound(NULL, msg, &out), 0);
	ck_assert_msg(strstr(out, "not attributed") != NULL, "%s", out);
	free(out);
	free(msg);
	ck_assert(!suppressed("cy@example.org"));
	ck_assert_int_eq(testhelp_query_long(conn, "SELECT count(*) FROM bounces"
	    " WHERE attributed_by IS NULL AND action = 'none'"), 1);

	/* an ARF complaint about bob's message */
	free(env);
	free(token);
	env = envelope_of("bob@example.org");
	token = xstrndup(env + 2, 48);
	msg = sample("arf-yahoo.eml", SAMPLE_TOKEN, token,
	    "anna@yahoo.example.com", "bob@example.org");
	ck_assert_int_eq(inbound("fbl@bounce.example.org", msg, &out), 0);
	free(out);
	free(msg);
	ck_assert_int_eq(testhelp_query_long(conn, "SELECT count(*) FROM suppressions"
	    " WHERE value = 'bob@example.org' AND reason = 'complaint'"), 1);
	ck_assert_int_eq(testhelp_query_long(conn, "SELECT count(*) FROM subscriptions"
	    " s JOIN subscribers p ON p.id = s.subscriber_id"
	    " WHERE p.email = 'bob@example.org' AND s.status = 'unsubscribed'"), 1);
	ck_assert_int_eq(testhelp_query_long(conn, "SELECT count(*) FROM ledger e"
	    " JOIN subscribers s ON s.id = e.subscriber_id"
	    " WHERE s.email = 'bob@example.org' AND e.channel = 'complaint'"), 1);

	/* an auto-reply: nothing */
	msg = sample("autoreply-auto-submitted.eml", "x", "x", NULL, NULL);
	ck_assert_int_eq(inbound(NULL, msg, &out), 0);
	ck_assert_msg(strstr(out, "ignored") != NULL, "%s", out);
	free(out);
	free(msg);
	free(env);
	free(token);

	ck_assert(suppressed("ann@example.org"));
	ck_assert(suppressed("bob@example.org"));
	ck_assert(suppressed("reject-eve@example.org"));
	ck_assert(!suppressed("policy-flo@example.org"));
	ck_assert(!suppressed("dee@example.org"));

	/* the next campaign skips exactly those */
	send_campaign("second");
	ck_assert_int_eq(testhelp_query_long(conn, "SELECT count(*) FROM deliveries d"
	    " JOIN campaigns c ON c.id = d.campaign_id WHERE c.name = 'second'"
	    " AND d.state = 'sent'"), 2);          /* cy, dee */
	ck_assert_int_eq(testhelp_query_long(conn, "SELECT count(*) FROM deliveries d"
	    " JOIN campaigns c ON c.id = d.campaign_id"
	    " JOIN subscribers s ON s.id = d.subscriber_id WHERE c.name = 'second'"
	    " AND d.state = 'sent' AND s.email IN ('ann@example.org',"
	    " 'bob@example.org', 'reject-eve@example.org')"), 0);
}
END_TEST

static Suite *
bounce_e2e_suite(void)
{
	Suite *s = suite_create("bounce end to end");
	TCase *tc = tcase_create("end to end");

	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_set_timeout(tc, 180);
	tcase_add_test(tc, test_end_to_end);
	suite_add_tcase(s, tc);
	return s;
}

int
main(void)
{
	testhelp_require_servers();
	return testhelp_run_suite(bounce_e2e_suite());
}

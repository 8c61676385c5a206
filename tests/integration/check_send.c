/*
 * check_send: campaigns end to end. assentd ($ASSENTD_BIN) sends to a
 * real SMTP server (tests/harness/smtpd.py, whose recipients' local
 * parts choose its answers) from the real test PostgreSQL, and the
 * tests check what arrived: every sendable recipient exactly once, no
 * suppressed one, retries, hard bounces, kill -9 in the middle, two
 * daemons on one campaign, a relay that is down, pause and resume.
 */
#include <sys/stat.h>
#include <sys/types.h>
#include <check.h>
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <jansson.h>

#include "assent/campaign.h"
#include "assent/consent.h"
#include "assent/keys.h"
#include "assent/lists.h"
#include "assent/rights.h"
#include "assent/subs.h"
#include "assent/suppress.h"
#include "assent/xmalloc.h"
#include "testhelp.h"

#define conn testhelp_conn
#define DONE_MS 60000           /* how long a campaign may take here */

static const char text_body[] =
    "Hello {{ name | \"friend\" }},\n"
    "\n"
    ".a line that starts with a dot\n"
    "Leave: {{ unsubscribe_url }}\n"
    "{{ sender.postal_address }}\n";
static const char html_body[] =
    "<p>Hello {{ name | \"friend\" }}</p>\n"
    "<p><a href=\"{{ unsubscribe_url }}\">leave</a> {{ sender.postal_address }}</p>\n";

/* One test's world: a directory, keys, the SMTP server, a config. */
static struct world {
	char dir[64];
	char *keys;
	char *smtp_dir;
	int smtp_port;
	pid_t smtp_pid;
	char *conf;
	int http_port;
	struct keys *k;
	struct suppress_ctx gate;
} w;

/* ---- set-up ------------------------------------------------------------- */

/* smtpd.py with extra arguments (NULL-terminated; may be NULL). */
static void
smtp_start(const char *const *extra)
{
	w.smtp_pid = testhelp_smtpd_start(w.smtp_dir, w.smtp_port, extra);
}

/* The config for one daemon: sending settings in sending (libconfig
 * text inside the group). */
static char *
world_conf(const char *sending)
{
	char port[16], *extra, *path;

	snprintf(port, sizeof(port), "%d", w.smtp_port);
	setenv("ASSENT_TEST_SMTP_PORT", port, 1);
	extra = xasprintf(
	    "tokens = { keys_file = \"%s\"; };\n"
	    "sending = { %s };\n"
	    "sender = { from = \"news@example.org\"; "
	    "bounce_domain = \"bounce.example.org\"; "
	    "postal_address = \"1 Test Road, Testtown\"; };\n",
	    w.keys, sending);
	path = testhelp_write_conf(testhelp_dsn, testhelp_free_port(), extra);
	free(extra);
	return path;
}

static void
setup(void)
{
	struct assent_err err;

	testhelp_fixture_db();
	memset(&w, 0, sizeof(w));
	strcpy(w.dir, "/tmp/assent-send-XXXXXX");
	ck_assert(mkdtemp(w.dir) != NULL);
	testhelp_keys_make(w.dir, &w.keys, &w.k, &w.gate, NULL);
	w.smtp_dir = xasprintf("%s/smtp", w.dir);
	ck_assert(mkdir(w.smtp_dir, 0700) == 0);
	w.smtp_port = testhelp_free_port();
	ck_assert_int_eq(lists_create(conn, "news", NULL, false, &err), 0);
	ck_assert_int_eq(lists_create(conn, "offers", NULL, false, &err), 0);
}

static void
teardown(void)
{
	testhelp_smtpd_stop(w.smtp_pid);
	keys_free(w.k);
	testhelp_fixture_drop();
	/* the directory stays for a post-mortem when a test failed */
}

static void
subscribe(const char *email, const char *list)
{
	testhelp_subscribe(conn, email, NULL, list);
}

/* n subscribers PREFIX0@DOMAIN .. PREFIX(n-1)@DOMAIN on list. */
static void
subscribe_many(const char *prefix, const char *domain, int n, const char *list)
{
	for (int i = 0; i < n; i++) {
		char email[128];

		snprintf(email, sizeof(email), "%s%d@%s", prefix, i, domain);
		subscribe(email, list);
	}
}

static void
suppress(const char *what, bool hashed)
{
	struct suppress_target t;
	struct suppress_new n = { .reason = "manual", .source = "check_send",
	    .added_by = "tester" };
	struct assent_err err;
	long long id;
	bool added;

	ck_assert_msg(suppress_target_parse(&w.gate, what, hashed, &t, &err) == 0,
	    "%s", err.msg);
	ck_assert_msg(suppress_add(conn, &t, &n, &id, &added, &err) == 0, "%s",
	    err.msg);
}

/* A campaign to lists (comma-separated), scheduled now. */
static void
campaign_now(const char *name, const char *const *lists, size_t nlists)
{
	struct campaign_content c = {
		.lists = lists, .nlists = nlists,
		.subject = "News for {{ name | \"you\" }}",
		.from = "Example News <news@example.org>",
		.text = text_body, .html = html_body,
	};
	struct assent_err err;

	ck_assert_msg(campaign_create(conn, name, &c, "tester", NULL, &err) == 0,
	    "%s", err.msg);
	ck_assert_msg(campaign_schedule(conn, name, "now", false, 86400, &err) == 0,
	    "%s", err.msg);
}

/* ---- the daemon --------------------------------------------------------------- */

static pid_t
daemon_start(const char *conf, const char *log)
{
	return testhelp_assentd_spawn(conf, "-f", log);
}

static char *
campaign_state(const char *name)
{
	const char *params[] = { name };
	PGresult *res = PQexecParams(conn, "SELECT state FROM campaigns"
	    " WHERE name = $1", 1, NULL, params, NULL, NULL, 0);
	char *state;

	ck_assert_int_eq(PQntuples(res), 1);
	state = xstrdup(PQgetvalue(res, 0, 0));
	PQclear(res);
	return state;
}

/* Wait until the campaign is done; fail with the daemon's log if not. */
static void
wait_done(const char *name, const char *log)
{
	long deadline = testhelp_now_ms() + DONE_MS;

	for (;;) {
		char *state = campaign_state(name);
		bool done = strcmp(state, "done") == 0;

		free(state);
		if (done)
			return;
		ck_assert_msg(testhelp_now_ms() < deadline,
		    "campaign %s not done after %d ms; daemon log:\n%s", name,
		    DONE_MS, testhelp_file_read(log));
		testhelp_sleep_ms(100);
	}
}

/* ---- what the SMTP server saw --------------------------------------------------- */

/* {rcpt: times accepted} and the accepted entries in order. */
static json_t *
smtp_accepted(json_t **entries_r)
{
	char *text = testhelp_smtpd_log(w.smtp_dir), *line, *save = NULL;
	json_t *counts = json_object(), *entries = json_array();

	for (line = strtok_r(text, "\n", &save); line != NULL;
	    line = strtok_r(NULL, "\n", &save)) {
		json_t *e = json_loads(line, 0, NULL);
		const char *rcpt;

		ck_assert_msg(e != NULL, "bad log line: %s", line);
		rcpt = json_string_value(json_object_get(e, "rcpt"));
		if (json_object_get(e, "file") != NULL && rcpt != NULL) {
			json_int_t n = json_integer_value(json_object_get(counts, rcpt));

			json_object_set_new(counts, rcpt, json_integer(n + 1));
			json_array_append(entries, e);
		}
		json_decref(e);
	}
	free(text);
	if (entries_r != NULL)
		*entries_r = entries;
	else
		json_decref(entries);
	return counts;
}

static long
smtp_accepted_total(void)
{
	json_t *entries, *counts = smtp_accepted(&entries);
	long n = (long)json_array_size(entries);

	json_decref(counts);
	json_decref(entries);
	return n;
}

static void
wait_accepted(long at_least, const char *log)
{
	long deadline = testhelp_now_ms() + DONE_MS;

	while (smtp_accepted_total() < at_least) {
		ck_assert_msg(testhelp_now_ms() < deadline, "fewer than %ld "
		    "messages arrived; daemon log:\n%s", at_least,
		    testhelp_file_read(log));
		testhelp_sleep_ms(20);
	}
}

/* No address received more than once. */
static void
assert_no_duplicates(json_t *counts)
{
	const char *rcpt;
	json_t *n;

	json_object_foreach(counts, rcpt, n)
		ck_assert_msg(json_integer_value(n) == 1, "%s received %lld copies",
		    rcpt, (long long)json_integer_value(n));
}

static long
count(const char *sql)
{
	return testhelp_query_long(conn, sql);
}

/* The deliveries not sent, one a line, for a failure's message. */
static char *
not_sent(void)
{
	PGresult *res = PQexec(conn, "SELECT string_agg(coalesce(s.email, '-')"
	    " || ' ' || d.state || ' ' || coalesce(d.suppress_reason, '')"
	    " || ' ' || coalesce(d.smtp_reply, ''), E'\\n' ORDER BY d.id)"
	    " FROM deliveries d JOIN subscribers s ON s.id = d.subscriber_id"
	    " WHERE d.state <> 'sent'");
	char *text = xstrdup(PQgetvalue(res, 0, 0));

	PQclear(res);
	return text;
}

/* The address of the delivery with the n-th highest id (0: the last). */
static char *
last_recipient(int n)
{
	char off[16];
	const char *params[] = { off };
	PGresult *res;
	char *email;

	snprintf(off, sizeof(off), "%d", n);
	res = PQexecParams(conn, "SELECT s.email FROM deliveries d JOIN subscribers s"
	    " ON s.id = d.subscriber_id ORDER BY d.id DESC OFFSET $1 LIMIT 1",
	    1, NULL, params, NULL, NULL, 0);
	ck_assert_int_eq(PQntuples(res), 1);
	email = xstrdup(PQgetvalue(res, 0, 0));
	PQclear(res);
	return email;
}

/* Wait until the daemon's log says needle. */
static void
wait_log(const char *log, const char *needle)
{
	ck_assert_msg(testhelp_file_wait(log, needle, 1, DONE_MS),
	    "no \"%s\" in the log:\n%s", needle, testhelp_file_read(log));
}

/* ---- tests ------------------------------------------------------------------------------ */

START_TEST(test_end_to_end)
{
	const char *lists[] = { "news", "offers" };
	json_t *entries, *counts;
	char *log, *msg_path, *msg;
	const char *file, *from;
	pid_t pid;

	subscribe_many("s", "example.org", 30, "news");
	subscribe_many("s", "example.org", 10, "offers");   /* s0-s9 on both */
	subscribe_many("o", "example.net", 5, "offers");
	subscribe_many("b", "blocked.example", 2, "news");
	subscribe("flaky0@example.org", "news");
	subscribe("reject0@example.org", "news");
	testhelp_subscribe(conn, "zoe@example.org", "Zoë Ünal", "news");
	suppress("s1@example.org", false);
	suppress("S2@Example.ORG", true);                  /* hashed entry */
	suppress("@blocked.example", false);
	campaign_now("spring", lists, 2);
	w.conf = world_conf("concurrency = 2; batch = 7; retry_base = 1; "
	    "max_attempts = 3;");
	log = xasprintf("%s/assentd.log", w.dir);
	smtp_start(NULL);
	pid = daemon_start(w.conf, log);
	wait_done("spring", log);
	testhelp_assentd_stop(pid, log);

	counts = smtp_accepted(&entries);
	assert_no_duplicates(counts);
	/* 30 + 5 + flaky + Zoë: 37 sendable, less s1 and s2 */
	ck_assert_msg(json_object_size(counts) == 35, "%zu arrived; not sent:\n%s",
	    json_object_size(counts), not_sent());
	ck_assert_ptr_nonnull(json_object_get(counts, "flaky0@example.org"));
	ck_assert_ptr_nonnull(json_object_get(counts, "s0@example.org"));
	ck_assert_ptr_nonnull(json_object_get(counts, "o4@example.net"));
	ck_assert_ptr_null(json_object_get(counts, "s1@example.org"));
	ck_assert_ptr_null(json_object_get(counts, "s2@example.org"));
	ck_assert_ptr_null(json_object_get(counts, "b0@blocked.example"));
	ck_assert_ptr_null(json_object_get(counts, "reject0@example.org"));
	/* the database's account agrees */
	ck_assert_int_eq(count("SELECT count(*) FROM deliveries"), 40);
	ck_assert_int_eq(count("SELECT count(*) FROM deliveries WHERE state = 'sent'"), 35);
	ck_assert_int_eq(count("SELECT count(*) FROM deliveries WHERE state = 'suppressed'"
	    " AND suppression_id IS NOT NULL AND suppress_reason = 'manual'"), 4);
	ck_assert_int_eq(count("SELECT attempts FROM deliveries d JOIN subscribers s"
	    " ON s.id = d.subscriber_id WHERE s.email = 'flaky0@example.org'"), 2);
	/* a 5.1.1 is a hard bounce: failed, and suppressed from now on */
	ck_assert_int_eq(count("SELECT count(*) FROM deliveries d JOIN subscribers s"
	    " ON s.id = d.subscriber_id WHERE s.email = 'reject0@example.org'"
	    " AND d.state = 'failed' AND d.smtp_reply LIKE '550 5.1.1%'"
	    " AND d.bounced_at IS NOT NULL"), 1);
	ck_assert_int_eq(count("SELECT count(*) FROM deliveries"
	    " WHERE bounced_at IS NOT NULL"), 1);
	ck_assert_int_eq(count("SELECT count(*) FROM suppressions WHERE"
	    " value = 'reject0@example.org' AND reason = 'hard-bounce'"
	    " AND removed_at IS NULL"), 1);

	/* one message as it arrived */
	for (size_t i = 0; i < json_array_size(entries); i++) {
		json_t *e = json_array_get(entries, i);

		if (strcmp(json_string_value(json_object_get(e, "rcpt")),
		    "s0@example.org") != 0)
			continue;
		file = json_string_value(json_object_get(e, "file"));
		from = json_string_value(json_object_get(e, "mail_from"));
		ck_assert_msg(strncmp(from, "b-", 2) == 0 && strlen(from) == 2 + 48 +
		    strlen("@bounce.example.org") && strstr(from,
		    "@bounce.example.org") != NULL, "envelope sender %s", from);
		msg_path = xasprintf("%s/%s", w.smtp_dir, file);
		msg = testhelp_file_read(msg_path);
		ck_assert_ptr_nonnull(strstr(msg, "\r\nList-Unsubscribe-Post: "
		    "List-Unsubscribe=One-Click\r\n"));
		ck_assert_ptr_nonnull(strstr(msg, "\r\nList-Unsubscribe: <http"));
		ck_assert_ptr_nonnull(strstr(msg, "mailto:u-"));
		ck_assert_ptr_nonnull(strstr(msg, "From: Example News <news@example.org>\r\n"));
		ck_assert_ptr_nonnull(strstr(msg, "To: s0@example.org\r\n"));
		ck_assert_ptr_nonnull(strstr(msg, "@example.org>\r\n"));
		ck_assert_ptr_nonnull(strstr(msg, "multipart/alternative"));
		ck_assert_ptr_nonnull(strstr(msg, "\r\n=2Ea line that starts with a dot"));
		free(msg);
		free(msg_path);
	}
	/* the person's subject export lists the message and its fate */
	{
		struct audit_actor who = { "tester", "host" };
		struct assent_err err;
		json_t *doc, *m;

		ck_assert_msg(rights_export(conn, &w.gate, "reject0@example.org",
		    &who, &doc, &err) == 0, "%s", err.msg);
		ck_assert_int_eq(json_array_size(json_object_get(doc, "messages")), 1);
		m = json_array_get(json_object_get(doc, "messages"), 0);
		ck_assert_str_eq(json_string_value(json_object_get(m, "kind")),
		    "campaign");
		ck_assert_str_eq(json_string_value(json_object_get(m, "campaign")),
		    "spring");
		ck_assert_str_eq(json_string_value(json_object_get(m, "state")),
		    "failed");
		ck_assert(json_is_string(json_object_get(m, "bounced_at")));
		json_decref(doc);
	}
	json_decref(counts);
	json_decref(entries);
	free(log);
}
END_TEST

/* An entry added while the campaign runs stops the messages not yet
 * claimed: the gate runs at claim time, not only when the audience was
 * built. */
START_TEST(test_suppressed_mid_campaign)
{
	const char *lists[] = { "news" };
	json_t *counts;
	char *log;
	pid_t pid;

	char *last, *second;

	subscribe_many("m", "example.org", 60, "news");
	campaign_now("midway", lists, 1);
	w.conf = world_conf("concurrency = 1; batch = 5; rate = 20;");
	log = xasprintf("%s/assentd.log", w.dir);
	smtp_start(NULL);
	pid = daemon_start(w.conf, log);
	wait_accepted(5, log);
	/* the two claimed last (highest delivery ids), whatever the plan */
	last = last_recipient(0);
	second = last_recipient(1);
	suppress(last, false);
	suppress(second, true);
	wait_done("midway", log);
	testhelp_assentd_stop(pid, log);
	counts = smtp_accepted(NULL);
	assert_no_duplicates(counts);
	ck_assert_int_eq(json_object_size(counts), 58);
	ck_assert_ptr_null(json_object_get(counts, last));
	ck_assert_ptr_null(json_object_get(counts, second));
	free(last);
	free(second);
	ck_assert_int_eq(count("SELECT count(*) FROM deliveries WHERE state = 'suppressed'"), 2);
	json_decref(counts);
	free(log);
}
END_TEST

/* kill -9 in the middle, three times: nobody gets two copies, and every
 * delivery ends sent, suppressed, failed or unknown; unknown ones go
 * out only when the operator says so. */
START_TEST(test_crash_never_sends_twice)
{
	const char *lists[] = { "news" };
	struct assent_err err;
	json_t *counts, *entries;
	long resent, unknown, received = 0;
	char *log;
	pid_t pid;

	subscribe_many("k", "example.org", 300, "news");
	campaign_now("crashy", lists, 1);
	w.conf = world_conf("concurrency = 2; batch = 10; rate = 150;");
	log = xasprintf("%s/assentd.log", w.dir);
	smtp_start(NULL);
	for (int round = 0; round < 3; round++) {
		pid = daemon_start(w.conf, log);
		wait_accepted(received + 40, log);
		kill(pid, SIGKILL);
		ck_assert_int_eq(testhelp_wait_exit(pid, 5000), 128 + SIGKILL);
		received = smtp_accepted_total();
	}
	pid = daemon_start(w.conf, log);
	wait_done("crashy", log);
	counts = smtp_accepted(&entries);
	assert_no_duplicates(counts);
	ck_assert_int_eq(count("SELECT count(*) FROM deliveries WHERE state NOT IN"
	    " ('sent', 'unknown')"), 0);
	/* everything sent arrived, and whatever arrived is sent or unknown */
	ck_assert_int_eq(count("SELECT count(*) FROM deliveries WHERE state = 'sent'")
	    + count("SELECT count(*) FROM deliveries WHERE state = 'unknown'"), 300);
	ck_assert_int_ge((long)json_object_size(counts),
	    count("SELECT count(*) FROM deliveries WHERE state = 'sent'"));
	ck_assert_int_le((long)json_object_size(counts), 300);
	/* the unknown ones, on the operator's word (the daemon still runs:
	 * they may be claimed at once, so count them before) */
	unknown = count("SELECT count(*) FROM deliveries WHERE state = 'unknown'");
	ck_assert_msg(campaign_resend_unknown(conn, "crashy", &resent, &err) == 0,
	    "%s", err.msg);
	ck_assert_int_eq(resent, unknown);
	wait_done("crashy", log);
	testhelp_assentd_stop(pid, log);
	ck_assert_int_eq(count("SELECT count(*) FROM deliveries WHERE state = 'sent'"), 300);
	json_decref(counts);
	json_decref(entries);
	free(log);
}
END_TEST

START_TEST(test_two_daemons_one_campaign)
{
	const char *lists[] = { "news" };
	json_t *counts;
	char *log1, *log2, *conf2, *text;
	pid_t p1, p2;

	subscribe_many("t", "example.org", 400, "news");
	w.conf = world_conf("concurrency = 2; batch = 10; rate = 100;");
	conf2 = world_conf("concurrency = 2; batch = 10; rate = 100;");
	log1 = xasprintf("%s/assentd1.log", w.dir);
	log2 = xasprintf("%s/assentd2.log", w.dir);
	smtp_start(NULL);
	p1 = daemon_start(w.conf, log1);
	p2 = daemon_start(conf2, log2);
	testhelp_sleep_ms(500);
	campaign_now("shared", lists, 1);
	wait_done("shared", log1);
	testhelp_assentd_stop(p1, log1);
	testhelp_assentd_stop(p2, log2);
	counts = smtp_accepted(NULL);
	assert_no_duplicates(counts);
	ck_assert_int_eq(json_object_size(counts), 400);
	/* both took part */
	text = testhelp_file_read(log1);
	ck_assert_msg(strstr(text, ": claimed ") != NULL, "daemon 1 sent nothing:\n%s", text);
	free(text);
	text = testhelp_file_read(log2);
	ck_assert_msg(strstr(text, ": claimed ") != NULL, "daemon 2 sent nothing:\n%s", text);
	free(text);
	json_decref(counts);
	free(log1);
	free(log2);
	free(conf2);
}
END_TEST

/* A relay that refuses connections: nothing is lost, nothing counts as
 * an attempt, and all goes out once it is back. */
START_TEST(test_relay_down_then_up)
{
	const char *lists[] = { "news" };
	json_t *counts;
	char *log, *text;
	pid_t pid;

	subscribe_many("r", "example.org", 20, "news");
	campaign_now("patient", lists, 1);
	w.conf = world_conf("concurrency = 1; batch = 5;");
	log = xasprintf("%s/assentd.log", w.dir);
	pid = daemon_start(w.conf, log);
	wait_log(log, "relay: SMTP relay 127.0.0.1:");
	testhelp_sleep_ms(1500);        /* a few more tries */
	ck_assert_int_eq(count("SELECT count(*) FROM deliveries WHERE state IN"
	    " ('queued', 'sending') AND attempts = 0"), 20);
	text = testhelp_file_read(log);
	ck_assert_msg(strstr(text, "reconnecting") == NULL,
	    "a relay that is down is not a database problem:\n%s", text);
	free(text);
	smtp_start(NULL);
	wait_done("patient", log);
	testhelp_assentd_stop(pid, log);
	counts = smtp_accepted(NULL);
	assert_no_duplicates(counts);
	ck_assert_int_eq(json_object_size(counts), 20);
	json_decref(counts);
	free(log);
}
END_TEST

START_TEST(test_pause_resume)
{
	const char *lists[] = { "news" };
	struct assent_err err;
	json_t *counts;
	long held;
	char *log;
	pid_t pid;

	subscribe_many("p", "example.org", 100, "news");
	campaign_now("halting", lists, 1);
	w.conf = world_conf("concurrency = 1; batch = 5; rate = 40;");
	log = xasprintf("%s/assentd.log", w.dir);
	smtp_start(NULL);
	pid = daemon_start(w.conf, log);
	wait_accepted(10, log);
	ck_assert_msg(campaign_pause(conn, "halting", &err) == 0, "%s", err.msg);
	testhelp_sleep_ms(1000);        /* the batch in flight finishes */
	held = smtp_accepted_total();
	testhelp_sleep_ms(1500);
	ck_assert_int_eq(smtp_accepted_total(), held);
	ck_assert_int_lt(held, 100);
	ck_assert_msg(campaign_resume(conn, "halting", &err) == 0, "%s", err.msg);
	wait_done("halting", log);
	testhelp_assentd_stop(pid, log);
	counts = smtp_accepted(NULL);
	assert_no_duplicates(counts);
	ck_assert_int_eq(json_object_size(counts), 100);
	json_decref(counts);
	free(log);
}
END_TEST

/* A batch that takes several scheduler ticks to send is not taken for a
 * dead sender's: its deliveries never become unknown. */
START_TEST(test_slow_batch_is_not_reaped)
{
	const char *lists[] = { "news" };
	char *log, *text;
	pid_t pid;

	subscribe_many("slow", "example.org", 3, "news");
	campaign_now("leisurely", lists, 1);
	w.conf = world_conf("concurrency = 1; batch = 3;");
	log = xasprintf("%s/assentd.log", w.dir);
	smtp_start(NULL);
	pid = daemon_start(w.conf, log);
	wait_done("leisurely", log);
	testhelp_assentd_stop(pid, log);
	ck_assert_int_eq(count("SELECT count(*) FROM deliveries WHERE state = 'sent'"
	    " AND attempts = 1"), 3);
	text = testhelp_file_read(log);
	ck_assert_msg(strstr(text, "now unknown") == NULL, "reaped:\n%s", text);
	free(text);
	free(log);
}
END_TEST

/* The database goes away while the relay takes a batch: the outcomes
 * are written when it is back, so what was sent shows as sent, not
 * unknown, and nothing is sent again. */
START_TEST(test_outcomes_survive_a_lost_connection)
{
	const char *lists[] = { "news" };
	json_t *counts;
	char *log;
	pid_t pid;

	subscribe_many("slow", "example.org", 3, "news");
	campaign_now("resilient", lists, 1);
	w.conf = world_conf("concurrency = 1; batch = 3;");
	log = xasprintf("%s/assentd.log", w.dir);
	smtp_start(NULL);
	pid = daemon_start(w.conf, log);
	{
		long deadline = testhelp_now_ms() + DONE_MS;

		while (count("SELECT count(*) FROM deliveries WHERE state = 'sending'") < 3) {
			ck_assert_msg(testhelp_now_ms() < deadline, "never claimed:\n%s",
			    testhelp_file_read(log));
			testhelp_sleep_ms(20);
		}
	}
	/* the worker's connection: the one holding a sender session lock in
	 * this test's database (other tests run daemons side by side) */
	ck_assert_int_eq(count("SELECT count(pg_terminate_backend(l.pid))"
	    " FROM pg_locks l WHERE l.locktype = 'advisory' AND l.objsubid = 2"
	    " AND l.objid <> 0 AND l.classid = 1095979844 AND l.database ="
	    " (SELECT oid FROM pg_database WHERE datname = current_database())"), 1);
	wait_log(log, "wrote the outcomes of 3 messages");
	wait_done("resilient", log);
	testhelp_assentd_stop(pid, log);
	ck_assert_int_eq(count("SELECT count(*) FROM deliveries WHERE state = 'sent'"), 3);
	counts = smtp_accepted(NULL);
	assert_no_duplicates(counts);
	ck_assert_int_eq(json_object_size(counts), 3);
	json_decref(counts);
	free(log);
}
END_TEST

/* A relay that refuses the envelope sender (say, the bounce domain has
 * no DNS yet) says nothing about the recipients: nobody is suppressed
 * or failed, the work waits, and goes out once the relay takes it. */
START_TEST(test_refused_envelope_sender_is_the_relay)
{
	const char *lists[] = { "news" };
	json_t *counts;
	char *log;
	pid_t pid;

	subscribe_many("e", "example.org", 10, "news");
	campaign_now("patience", lists, 1);
	w.conf = world_conf("concurrency = 1; batch = 5;");
	log = xasprintf("%s/assentd.log", w.dir);
	{
		const char *const extra[] = { "--mail-from-reply",
		    "553 5.1.8 Sender address rejected: Domain not found",
		    "--mail-from-reject-count", "3", NULL };

		smtp_start(extra);
	}
	pid = daemon_start(w.conf, log);
	wait_done("patience", log);
	testhelp_assentd_stop(pid, log);
	ck_assert_int_eq(count("SELECT count(*) FROM suppressions"), 0);
	ck_assert_int_eq(count("SELECT count(*) FROM deliveries WHERE state = 'sent'"
	    " AND bounced_at IS NULL"), 10);
	counts = smtp_accepted(NULL);
	assert_no_duplicates(counts);
	ck_assert_int_eq(json_object_size(counts), 10);
	wait_log(log, "Sender address rejected");
	json_decref(counts);
	free(log);
}
END_TEST

static Suite *
send_suite(void)
{
	Suite *s = suite_create("send");
	TCase *tc = tcase_create("end to end");

	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_set_timeout(tc, 120);
	tcase_add_test(tc, test_end_to_end);
	tcase_add_test(tc, test_suppressed_mid_campaign);
	tcase_add_test(tc, test_crash_never_sends_twice);
	tcase_add_test(tc, test_two_daemons_one_campaign);
	tcase_add_test(tc, test_relay_down_then_up);
	tcase_add_test(tc, test_pause_resume);
	tcase_add_test(tc, test_slow_batch_is_not_reaped);
	tcase_add_test(tc, test_outcomes_survive_a_lost_connection);
	tcase_add_test(tc, test_refused_envelope_sender_is_the_relay);
	suite_add_tcase(s, tc);
	return s;
}

int
main(void)
{
	testhelp_require_servers();
	signal(SIGPIPE, SIG_IGN);
	return testhelp_run_suite(send_suite());
}

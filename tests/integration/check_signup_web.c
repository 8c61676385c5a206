/*
 * check_signup_web: the subscribe form (/s/LIST) and the page template,
 * over real HTTP against a running assentd ($ASSENTD_BIN) and a real
 * PostgreSQL. The answer to a sign-up never depends on the address, the
 * honeypot and the per-address limit stop scripts, the ledger gets the
 * evidence, and every page goes through http.page_template.
 */
#include <sys/types.h>
#include <check.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "assent/buf.h"
#include "assent/consent.h"
#include "assent/keys.h"
#include "assent/lists.h"
#include "assent/suppress.h"
#include "assent/xmalloc.h"
#include "testhelp.h"

#define conn testhelp_conn

#define TEST_TIMEOUT   60
#define READY_MS       10000
#define UA             "TestBrowser/3.1 (check_signup_web)"
#define UA_HEADER      "User-Agent: " UA "\r\n"
#define FORM_URLENC    "Content-Type: application/x-www-form-urlencoded\r\n"
#define WORDING        "I agree to get the club's news <weekly> & offers.\n" \
                       "You can leave at any time.\n\nSecond paragraph."
#define FORM_ID        "https://shop.example.org/join"

static struct {
	char dir[64];
	char *keys_path, *conf, *log;
	pid_t pid;
	int port, admin_port;
} w;

/* ---- the daemon ------------------------------------------------------------ */

/* Write the configuration with http_extra inside the http group
 * (may be NULL) and start assentd; with expect_exit, return its exit
 * status instead of waiting for it to listen. */
static int
daemon_run(const char *http_extra, bool expect_exit)
{
	char *extra, *setting;

	w.port = testhelp_free_port();
	extra = xasprintf("tokens = { keys_file = \"%s\"; };\n"
	    "sender = { organisation = \"Club & Co\"; from = \"club@example.org\";"
	    " bounce_domain = \"bounce.example.org\";"
	    " postal_address = \"1 Club Road\"; };\n", w.keys_path);
	w.conf = testhelp_write_conf(testhelp_dsn, w.port, extra);
	free(extra);
	setting = xasprintf("%s admin_port = %d;",
	    http_extra != NULL ? http_extra : "", w.admin_port);
	testhelp_file_replace(w.conf, "admin_port = 0;", setting);
	free(setting);
	w.log = xasprintf("%s.log", w.conf);
	w.pid = testhelp_assentd_spawn(w.conf, "-f", w.log);
	if (expect_exit) {
		int status = testhelp_wait_exit(w.pid, READY_MS);

		w.pid = 0;
		return status;
	}
	testhelp_assentd_wait_listen(w.pid, w.port, w.log);
	return 0;
}

static void
daemon_start(void)
{
	daemon_run(NULL, false);
}

static void
daemon_stop(void)
{
	if (w.pid > 0)
		testhelp_assentd_stop(w.pid, w.log);
	w.pid = 0;
}

/* The configuration's files, for a daemon started again. */
static void
daemon_files_remove(void)
{
	if (w.conf == NULL)
		return;
	testhelp_conf_remove(w.conf, w.log);
	free(w.conf);
	free(w.log);
	w.conf = w.log = NULL;
}

/* ---- HTTP ------------------------------------------------------------------- */

static struct testhelp_http_reply
http(const char *method, const char *path, const char *headers,
    const char *body)
{
	struct testhelp_http_reply r;

	r = testhelp_http(w.port, method, path, headers, body);
	ck_assert_msg(r.status < 300 || r.status >= 400, "%s %s: %d", method,
	    path, r.status);
	ck_assert_msg(!testhelp_http_has_header(&r, "Location", ""),
	    "%s %s: a Location header", method, path);
	ck_assert_msg(!testhelp_http_has_header(&r, "Set-Cookie", ""),
	    "%s %s: a cookie", method, path);
	ck_assert_msg(testhelp_http_has_header(&r, "Content-Security-Policy",
	    "default-src 'none'"), "%s %s: no CSP:\n%s", method, path, r.raw);
	ck_assert(testhelp_http_has_header(&r, "X-Content-Type-Options",
	    "nosniff"));
	return r;
}

/* A sign-up for email on list, urlencoded, with more fields (already
 * encoded, "&..." or ""). */
static struct testhelp_http_reply
signup(const char *list, const char *email, const char *more)
{
	char *path = xasprintf("/s/%s", list);
	char *body = xasprintf("email=%s&name=Ann+Example&consent_text=v1"
	    "&form_id=%s&website=%s", email, FORM_ID, more);
	struct testhelp_http_reply r;

	r = http("POST", path, FORM_URLENC UA_HEADER, body);
	free(body);
	free(path);
	return r;
}

/* The response without its Date header: what two answers must share. */
static char *
sans_date(const struct testhelp_http_reply *r)
{
	char *s = xstrdup(r->raw), *d = strstr(s, "\r\nDate: "), *end;

	if (d != NULL && (end = strstr(d + 2, "\r\n")) != NULL)
		memmove(d, end, strlen(end) + 1);
	return s;
}

static long
count(const char *sql)
{
	return testhelp_query_long(conn, sql);
}

/* ---- fixture ------------------------------------------------------------------ */

static void
setup(void)
{
	struct assent_err err;

	testhelp_fixture_db();
	memset(&w, 0, sizeof(w));
	strcpy(w.dir, "/tmp/assent-signup-XXXXXX");
	ck_assert(mkdtemp(w.dir) != NULL);
	testhelp_keys_make(w.dir, &w.keys_path, NULL, NULL, NULL);
	ck_assert_msg(consent_text_add(conn, "v1", WORDING, strlen(WORDING), NULL,
	    "tester", NULL, &err) == 0, "%s", err.msg);
	ck_assert_msg(consent_text_add(conn, "v0", "old words", 9, NULL,
	    "tester", NULL, &err) == 0, "%s", err.msg);
	ck_assert_int_eq(lists_create(conn, "club", "Weekly <club> news", false,
	    &err), 0);
	ck_assert_int_eq(lists_create(conn, "news", NULL, false, &err), 0);
	ck_assert_int_eq(lists_create(conn, "closed", NULL, true, &err), 0);
	testhelp_sql_exec(conn, "UPDATE lists SET form_consent_text = 'v1',"
	    " form_attrs = '{city}' WHERE name IN ('club', 'news')");
	/* bob is on the club already (confirmed before it became double
	 * opt-in), dan is suppressed */
	testhelp_subscribe(conn, "bob@example.org", NULL, "club");
	testhelp_sql_exec(conn, "UPDATE lists SET double_optin = true"
	    " WHERE name = 'club'");
	{
		struct suppress_new n = { .reason = "manual", .source = "test",
		    .added_by = "tester" };
		struct suppress_target t;
		long long id;
		bool added;

		ck_assert(suppress_target_parse(NULL, "dan@example.org", false, &t,
		    &err) == 0);
		ck_assert_msg(suppress_add(conn, &t, &n, &id, &added, &err) == 0,
		    "%s", err.msg);
	}
}

static void
teardown(void)
{
	char *path;

	daemon_stop();
	testhelp_fixture_drop();
	daemon_files_remove();
	unlink(w.keys_path);
	path = xasprintf("%s.lock", w.keys_path);
	unlink(path);
	free(path);
	rmdir(w.dir);
	free(w.keys_path);
}

/* ---- the form page ------------------------------------------------------------- */

START_TEST(test_form_page)
{
	static const char *const missing[] = { "/s/closed", "/s/nosuch",
	    "/s/", "/s/..%2Fetc", "/s/club/x", "/s/%3Cb%3E" };
	struct testhelp_http_reply r, nf;
	long events = count("SELECT count(*) FROM ledger");

	daemon_start();
	r = http("GET", "/s/club", NULL, NULL);
	ck_assert_int_eq(r.status, 200);
	testhelp_http_assert_has(&r, "<title>Subscribe to club</title>");
	testhelp_http_assert_has(&r, "<p>Weekly &lt;club&gt; news</p>");
	testhelp_http_assert_has(&r,
	    "<p>I agree to get the club&#39;s news &lt;weekly&gt; "
	    "&amp; offers.<br>\nYou can leave at any time.</p>\n"
	    "<p>Second paragraph.</p>");
	testhelp_http_assert_has(&r,
	    "<input type=\"hidden\" name=\"consent_text\" value=\"v1\">");
	testhelp_http_assert_has(&r, "name=\"email\"");
	testhelp_http_assert_has(&r, "name=\"name\"");
	testhelp_http_assert_has(&r, "name=\"attr.city\"");
	testhelp_http_assert_has(&r,
	    "name=\"website\" value=\"\" autocomplete=\"off\" "
	    "tabindex=\"-1\"");
	testhelp_http_assert_has(&r,
	    "<button type=\"submit\">Subscribe</button>");
	testhelp_http_assert_lacks(&r, "<script");
	free(r.raw);
	nf = http("GET", "/s/nosuch", NULL, NULL);
	for (size_t i = 0; i < sizeof(missing) / sizeof(missing[0]); i++) {
		r = http("GET", missing[i], NULL, NULL);
		ck_assert_msg(r.status == 404, "%s: %d", missing[i], r.status);
		ck_assert_str_eq(r.body, nf.body);
		free(r.raw);
	}
	free(nf.raw);
	ck_assert_int_eq(count("SELECT count(*) FROM ledger"), events);
}
END_TEST

/* ---- sign-ups ---------------------------------------------------------------------- */

static const struct {
	const char *headers, *body;
} encodings[] = {
	{ FORM_URLENC UA_HEADER,
	  "email=Ann%40Example.org&name=Ann&consent_text=v1&attr.city=Ghent"
	  "&form_id=" FORM_ID "&website=" },
	{ "Content-Type: multipart/form-data; boundary=b0undary\r\n" UA_HEADER,
	  "--b0undary\r\nContent-Disposition: form-data; name=\"email\"\r\n\r\n"
	  "Ann@Example.org\r\n"
	  "--b0undary\r\nContent-Disposition: form-data; name=\"name\"\r\n\r\n"
	  "Ann\r\n"
	  "--b0undary\r\nContent-Disposition: form-data; name=\"consent_text\"\r\n\r\n"
	  "v1\r\n"
	  "--b0undary\r\nContent-Disposition: form-data; name=\"attr.city\"\r\n\r\n"
	  "Ghent\r\n"
	  "--b0undary\r\nContent-Disposition: form-data; name=\"form_id\"\r\n\r\n"
	  FORM_ID "\r\n"
	  "--b0undary\r\nContent-Disposition: form-data; name=\"website\"\r\n\r\n"
	  "\r\n--b0undary--\r\n" },
};

START_TEST(test_signup_double_optin)
{
	struct testhelp_http_reply r;

	daemon_start();
	r = http("POST", "/s/club", encodings[_i].headers, encodings[_i].body);
	ck_assert_int_eq(r.status, 200);
	testhelp_http_assert_has(&r, "<title>Check your inbox</title>");
	testhelp_http_assert_has(&r, "to confirm your subscription to club.");
	testhelp_http_assert_lacks(&r, "xample.org");
	free(r.raw);
	testhelp_assert_text(conn, "SELECT s.status FROM subscriptions s"
	    " JOIN subscribers p ON p.id = s.subscriber_id"
	    " WHERE p.email_key = 'ann@example.org'",
	    "pending");
	testhelp_assert_text(conn, "SELECT channel || '|' || action || '|'"
	    " || host(ip) || '|' || user_agent || '|' || page || '|'"
	    " || consent_text_version"
	    " FROM ledger e JOIN subscribers p ON p.id = e.subscriber_id"
	    " WHERE p.email_key = 'ann@example.org'",
	    "web|subscribe|127.0.0.1|" UA "|" FORM_ID "|v1");
	testhelp_assert_text(conn, "SELECT attrs->>'city' FROM subscribers"
	    " WHERE email_key = 'ann@example.org'", "Ghent");
	ck_assert_int_eq(count("SELECT count(*) FROM notices n JOIN subscribers p"
	    " ON p.id = n.subscriber_id WHERE p.email_key = 'ann@example.org'"
	    " AND n.state IN ('queued', 'sending', 'sent')"), 1);
}
END_TEST

/* Without a form id, the Referer is the page. */
START_TEST(test_signup_single_optin_referer)
{
	struct testhelp_http_reply r;

	daemon_start();
	r = http("POST", "/s/news", FORM_URLENC UA_HEADER
	    "Referer: https://blog.example.net/post?a=1\r\n",
	    "email=eve%40example.org&consent_text=v1");
	ck_assert_int_eq(r.status, 200);
	testhelp_http_assert_has(&r, "<title>You are subscribed</title>");
	testhelp_http_assert_has(&r, "Thank you for subscribing to news.");
	free(r.raw);
	testhelp_assert_text(conn, "SELECT s.status || '|' || e.page"
	    " FROM subscriptions s JOIN subscribers p ON p.id = s.subscriber_id"
	    " JOIN ledger e ON e.subscriber_id = p.id"
	    " WHERE p.email_key = 'eve@example.org'",
	    "confirmed|https://blog.example.net/post?a=1");
	ck_assert_int_eq(count("SELECT count(*) FROM notices"), 0);
}
END_TEST

/* A new address, a confirmed one, a suppressed one and a bot that fills
 * the honeypot: the same bytes back. */
START_TEST(test_same_answer)
{
	static const char *const who[] = { "ann%40example.org",
	    "bob%40example.org", "dan%40example.org", "BOB%40Example.org" };
	struct testhelp_http_reply first, r;
	char *want, *got;
	long subscribers;

	daemon_start();
	first = signup("club", who[0], "");
	ck_assert_int_eq(first.status, 200);
	want = sans_date(&first);
	for (size_t i = 1; i < sizeof(who) / sizeof(who[0]); i++) {
		r = signup("club", who[i], "");
		got = sans_date(&r);
		ck_assert_msg(strcmp(got, want) == 0, "%s:\n%s\n---\n%s", who[i],
		    got, want);
		free(got);
		free(r.raw);
	}
	subscribers = count("SELECT count(*) FROM subscribers");
	r = signup("club", "zed%40example.org", "https%3A%2F%2Fspam.example");
	got = sans_date(&r);
	ck_assert_msg(strcmp(got, want) == 0, "honeypot:\n%s", got);
	free(got);
	free(r.raw);
	ck_assert_int_eq(count("SELECT count(*) FROM subscribers"), subscribers);
	ck_assert_int_eq(count("SELECT count(*) FROM subscribers"
	    " WHERE email_key = 'zed@example.org'"), 0);
	/* bob stays confirmed with no new event; dan gets nothing */
	testhelp_assert_text(conn, "SELECT s.status FROM subscriptions s"
	    " JOIN subscribers p ON p.id = s.subscriber_id"
	    " WHERE p.email_key = 'bob@example.org'",
	    "confirmed");
	ck_assert_int_eq(count("SELECT count(*) FROM ledger e JOIN subscribers p"
	    " ON p.id = e.subscriber_id WHERE p.email_key = 'bob@example.org'"
	    " AND e.channel = 'web'"), 0);
	ck_assert_int_eq(count("SELECT count(*) FROM notices n JOIN subscribers p"
	    " ON p.id = n.subscriber_id WHERE p.email_key IN ('bob@example.org',"
	    " 'dan@example.org')"), 0);
	free(want);
	free(first.raw);
}
END_TEST

/* The form's own mistakes: 400 with the reason; nothing stored. */
static const struct {
	const char *path, *body;
	int status;
} refusals[] = {
	{ "/s/club", "email=ann%40example.org&consent_text=v0", 400 },
	{ "/s/club", "email=ann%40example.org&consent_text=", 400 },
	{ "/s/club", "email=ann%40example.org&consent_text=v1&attr.shoe=42", 400 },
	{ "/s/club", "email=not-an-address&consent_text=v1", 400 },
	{ "/s/club", "email=&consent_text=v1", 400 },
	{ "/s/club", "name=Ann&consent_text=v1", 400 },
	{ "/s/club", "email=ann%40example.org&consent_text=v1&name=%FF%FE", 400 },
	{ "/s/nosuch", "email=ann%40example.org&consent_text=v1", 404 },
	{ "/s/closed", "email=ann%40example.org&consent_text=v1", 404 },
};

START_TEST(test_refusals)
{
	struct testhelp_http_reply r;

	daemon_start();
	r = http("POST", refusals[_i].path, FORM_URLENC, refusals[_i].body);
	ck_assert_msg(r.status == refusals[_i].status, "%s %s: %d\n%s",
	    refusals[_i].path, refusals[_i].body, r.status, r.raw);
	if (r.status == 400)
		testhelp_http_assert_has(&r, "<title>Not subscribed</title>");
	testhelp_http_assert_lacks(&r, "<script");
	free(r.raw);
	ck_assert_int_eq(count("SELECT count(*) FROM subscribers"
	    " WHERE email_key = 'ann@example.org'"), 0);
	ck_assert_int_eq(count("SELECT count(*) FROM notices"), 0);
}
END_TEST

/* Every POST to /s/ counts; GETs do not. */
START_TEST(test_rate_limit)
{
	struct testhelp_http_reply r;
	int first_limited = -1;

	w.admin_port = testhelp_free_port();
	daemon_start();
	for (int i = 0; i < 14; i++) {
		r = http("POST", "/s/club", FORM_URLENC,
		    "email=bad&consent_text=v1");
		ck_assert(r.status == 400 || r.status == 429);
		if (r.status == 429) {
			if (first_limited < 0)
				first_limited = i;
			ck_assert(testhelp_http_has_header(&r, "Retry-After", ""));
			testhelp_http_assert_has(&r, "Too many requests");
		}
		free(r.raw);
	}
	ck_assert_msg(first_limited == 10, "limited from %d", first_limited);
	r = http("GET", "/s/club", NULL, NULL);
	ck_assert_int_eq(r.status, 200);
	free(r.raw);
	r = testhelp_http(w.admin_port, "GET", "/metrics", NULL, NULL);
	ck_assert_int_eq(r.status, 200);
	testhelp_http_assert_has(&r, "assent_signup_rate_limited_total 4\n");
	testhelp_http_assert_has(&r,
	    "assent_signups_total{outcome=\"refused\"} 10\n");
	testhelp_http_assert_has(&r,
	    "assent_http_requests_total{route=\"subscribe\","
	    "status=\"429\"} 4\n");
	testhelp_http_assert_has(&r,
	    "assent_http_requests_total{route=\"subscribe\","
	    "status=\"200\"} 1\n");
	free(r.raw);
}
END_TEST

START_TEST(test_metrics_outcomes)
{
	struct testhelp_http_reply r;

	w.admin_port = testhelp_free_port();
	daemon_start();
	free(signup("club", "ann%40example.org", "").raw);
	free(signup("club", "bob%40example.org", "").raw);
	free(signup("club", "zed%40example.org", "x").raw);
	r = testhelp_http(w.admin_port, "GET", "/metrics", NULL, NULL);
	testhelp_http_assert_has(&r,
	    "assent_signups_total{outcome=\"pending\"} 1\n");
	testhelp_http_assert_has(&r,
	    "assent_signups_total{outcome=\"quiet\"} 1\n");
	testhelp_http_assert_has(&r, "assent_signup_honeypot_total 1\n");
	testhelp_http_assert_has(&r,
	    "assent_http_requests_total{route=\"subscribe\","
	    "status=\"200\"} 3\n");
	free(r.raw);
	/* the confirmation request, through the test SMTP sink when there
	 * is one (make check's harness starts it) */
	if (getenv("ASSENT_TEST_SMTP_PORT") != NULL) {
		long deadline = testhelp_now_ms() + 15000;
		bool seen = false;

		while (!seen && testhelp_now_ms() < deadline) {
			r = testhelp_http(w.admin_port, "GET", "/metrics", NULL, NULL);
			seen = strstr(r.body, "assent_confirmation_requests_total"
			    "{outcome=\"sent\"} 1\n") != NULL;
			free(r.raw);
			if (!seen)
				testhelp_sleep_ms(100);
		}
		ck_assert_msg(seen, "no confirmation request sent; log:\n%s",
		    testhelp_file_read(w.log));
	}
}
END_TEST

START_TEST(test_body_cap)
{
	struct testhelp_http_reply r;
	char *big = xmalloc(9001);

	memset(big, 'a', 9000);
	memcpy(big, "email=", 6);
	big[9000] = '\0';
	daemon_start();
	r = http("POST", "/s/club", FORM_URLENC, big);
	ck_assert_int_eq(r.status, 413);
	testhelp_http_assert_has(&r, "The request was too large.");
	free(r.raw);
	ck_assert_int_eq(count("SELECT count(*) FROM subscribers"), 1);
	free(big);
}
END_TEST

/* ---- an attacker's requests ------------------------------------------------------ */

/* A field twice is ambiguous (a proxy or a log may read the other one):
 * refused, nothing stored, whichever name it is. */
static const char *const duplicates[] = {
	"email=ann%40example.org&email=eve%40example.org&consent_text=v1",
	"email=ann%40example.org&consent_text=v1&website=&website=x",
	"email=ann%40example.org&consent_text=v0&consent_text=v1",
	"email=ann%40example.org&consent_text=v1&attr.city=A&attr.city=B",
	"email=ann%40example.org&consent_text=v1&name=A&name=B",
	"email=ann%40example.org&consent_text=v1&form_id=a&form_id=b",
};

START_TEST(test_duplicate_fields)
{
	struct testhelp_http_reply r;

	daemon_start();
	r = http("POST", "/s/club", FORM_URLENC, duplicates[_i]);
	ck_assert_msg(r.status == 400, "%s: %d", duplicates[_i], r.status);
	testhelp_http_assert_has(&r, "<title>Not subscribed</title>");
	testhelp_http_assert_has(&r, "more than once");
	free(r.raw);
	ck_assert_int_eq(count("SELECT count(*) FROM subscribers"
	    " WHERE email_key IN ('ann@example.org', 'eve@example.org')"), 0);
	ck_assert_int_eq(count("SELECT count(*) FROM notices"), 0);
}
END_TEST

/* Bodies that are no form, or a broken one: 400, nothing stored, and
 * the daemon lives on. */
static const struct {
	const char *headers, *body;
} broken_bodies[] = {
	/* multipart without a boundary */
	{ "Content-Type: multipart/form-data\r\n",
	  "--b\r\nContent-Disposition: form-data; name=\"email\"\r\n\r\n"
	  "ann@example.org\r\n--b--\r\n" },
	/* a boundary that never comes */
	{ "Content-Type: multipart/form-data; boundary=zz\r\n",
	  "--b\r\nContent-Disposition: form-data; name=\"email\"\r\n\r\n"
	  "ann@example.org\r\n--b--\r\n" },
	/* the address only as an upload */
	{ "Content-Type: multipart/form-data; boundary=b\r\n",
	  "--b\r\nContent-Disposition: form-data; name=\"email\"; "
	  "filename=\"a.txt\"\r\nContent-Type: text/plain\r\n\r\n"
	  "ann@example.org\r\n"
	  "--b\r\nContent-Disposition: form-data; name=\"consent_text\"\r\n\r\n"
	  "v1\r\n--b--\r\n" },
	{ "Content-Type: text/plain\r\n",
	  "email=ann%40example.org&consent_text=v1" },
	{ NULL, "email=ann%40example.org&consent_text=v1" },
	{ FORM_URLENC, "" },
	{ FORM_URLENC, "&&&==&=" },
	{ FORM_URLENC, "email=ann%40example.org%00eve%40example.org"
	  "&consent_text=v1" },
};

START_TEST(test_broken_bodies)
{
	struct testhelp_http_reply r;

	daemon_start();
	r = http("POST", "/s/club", broken_bodies[_i].headers,
	    broken_bodies[_i].body);
	ck_assert_msg(r.status == 400, "case %d: %d\n%s", _i, r.status, r.raw);
	testhelp_http_assert_has(&r, "<title>Not subscribed</title>");
	free(r.raw);
	ck_assert_int_eq(count("SELECT count(*) FROM subscribers"
	    " WHERE email_key = 'ann@example.org'"), 0);
	r = http("GET", "/s/club", NULL, NULL);
	ck_assert_int_eq(r.status, 200);
	free(r.raw);
}
END_TEST

/* Huge part headers, a huge field name, 49 fields: refused whole. */
START_TEST(test_oversized_parts)
{
	struct testhelp_http_reply r;
	char filler[2001], field[16], *body;
	struct buf b;

	memset(filler, 'x', 2000);
	filler[2000] = '\0';
	daemon_start();
	body = xasprintf("--b\r\nContent-Disposition: form-data; name=\"email\""
	    "\r\nX-Filler: %s\r\n\r\nann@example.org\r\n--b\r\n"
	    "Content-Disposition: form-data; name=\"consent_text\"\r\n\r\n"
	    "v1\r\n--b--\r\n", filler);
	r = http("POST", "/s/club", "Content-Type: multipart/form-data; "
	    "boundary=b\r\n", body);
	ck_assert_msg(r.status == 400, "part headers: %d", r.status);
	free(r.raw);
	free(body);
	body = xasprintf("email=ann%%40example.org&consent_text=v1&attr.%s=1",
	    filler);
	r = http("POST", "/s/club", FORM_URLENC, body);
	ck_assert_msg(r.status == 400, "field name: %d", r.status);
	testhelp_http_assert_lacks(&r, filler);
	free(r.raw);
	free(body);
	buf_init(&b);
	buf_add_str(&b, "email=ann%40example.org&consent_text=v1");
	for (int i = 0; i < 47; i++) {
		snprintf(field, sizeof(field), "&f%d=", i);
		buf_add_str(&b, field);
	}
	r = http("POST", "/s/club", FORM_URLENC, b.data);
	ck_assert_msg(r.status == 400, "49 fields: %d", r.status);
	free(r.raw);
	buf_free(&b);
	ck_assert_int_eq(count("SELECT count(*) FROM subscribers"
	    " WHERE email_key = 'ann@example.org'"), 0);
}
END_TEST

/* What the browser sends (user agent, Referer or form id) never makes
 * the answer depend on the address: a C1 control character in it is
 * cleaned for a new address as for a known one. */
static const struct {
	const char *headers, *more;
} evidence[] = {
	{ FORM_URLENC "User-Agent: Bot\xc2\x85/1.0\r\n", "" },
	{ FORM_URLENC "Referer: https://a.example/\xc2\x9b" "x\r\n", "" },
	{ FORM_URLENC, "&form_id=https%3A%2F%2Fa.example%2F%C2%85" },
	{ FORM_URLENC "User-Agent: \xe2\x80\xae" "evil\r\n", "" },
};

START_TEST(test_evidence_no_oracle)
{
	static const char *const who[] = { "ann%40example.org",
	    "bob%40example.org", "dan%40example.org" };
	struct testhelp_http_reply r;
	char *want = NULL, *got, *body;

	daemon_start();
	for (size_t i = 0; i < sizeof(who) / sizeof(who[0]); i++) {
		body = xasprintf("email=%s&consent_text=v1%s", who[i],
		    evidence[_i].more);
		r = http("POST", "/s/club", evidence[_i].headers, body);
		ck_assert_msg(r.status == 200, "%s: %d\n%s", who[i], r.status,
		    r.raw);
		got = sans_date(&r);
		if (want == NULL)
			want = xstrdup(got);
		ck_assert_msg(strcmp(got, want) == 0, "%s:\n%s\n---\n%s", who[i],
		    got, want);
		free(got);
		free(r.raw);
		free(body);
	}
	testhelp_assert_text(conn, "SELECT s.status FROM subscriptions s"
	    " JOIN subscribers p ON p.id = s.subscriber_id"
	    " WHERE p.email_key = 'ann@example.org'",
	    "pending");
	free(want);
}
END_TEST

/* The per-address limit is the peer's when the peer is no trusted
 * proxy (X-Forwarded-For is anybody's to write), and an IPv6 client's
 * /64 behind a trusted one (one host has millions of addresses). */
static const struct {
	const char *proxies;    /* http group text, or NULL */
	const char *before, *after;     /* X-Forwarded-For around a number */
} floods[] = {
	{ NULL, "203.0.113.", "" },
	{ NULL, "2001:db8::", "" },
	{ "trusted_proxies = \"127.0.0.1\";", "2001:db8:0:7::", "" },
	{ "trusted_proxies = \"127.0.0.1\";", "2001:db8:0:7:", "::1" },
};

START_TEST(test_limit_not_spoofed)
{
	struct testhelp_http_reply r;
	int first_limited = -1;

	daemon_run(floods[_i].proxies, false);
	for (int i = 0; i < 12; i++) {
		char *headers = xasprintf(FORM_URLENC "X-Forwarded-For: %s%d%s\r\n",
		    floods[_i].before, i + 1, floods[_i].after);

		r = http("POST", "/s/club", headers, "email=bad&consent_text=v1");
		ck_assert(r.status == 400 || r.status == 429);
		if (r.status == 429 && first_limited < 0)
			first_limited = i;
		free(r.raw);
		free(headers);
	}
	ck_assert_msg(first_limited == 10, "limited from %d", first_limited);
	/* another /64 is somebody else */
	if (floods[_i].proxies != NULL) {
		r = http("POST", "/s/club", FORM_URLENC
		    "X-Forwarded-For: 2001:db8:0:8::1\r\n",
		    "email=bad&consent_text=v1");
		ck_assert_int_eq(r.status, 400);
		free(r.raw);
	}
}
END_TEST

/* A client over its limit is answered from the headers: the body it
 * announces is never waited for (nor read, nor parsed). */
START_TEST(test_limited_is_cheap)
{
	struct testhelp_http_reply r;
	long t0;

	daemon_start();
	for (int i = 0; i < 10; i++)
		free(http("POST", "/s/club", FORM_URLENC,
		    "email=bad&consent_text=v1").raw);
	t0 = testhelp_now_ms();
	r = testhelp_http_raw(w.port, "POST /s/club HTTP/1.1\r\nHost: x\r\n"
	    FORM_URLENC "Content-Length: 5000\r\n\r\nemail=");
	ck_assert_int_eq(r.status, 429);
	ck_assert(testhelp_http_has_header(&r, "Retry-After", ""));
	ck_assert(testhelp_http_has_header(&r, "Content-Security-Policy",
	    "default-src 'none'"));
	ck_assert_msg(testhelp_now_ms() - t0 < 2000, "%ld ms",
	    testhelp_now_ms() - t0);
	free(r.raw);
}
END_TEST

/* GET, HEAD and OPTIONS change nothing, whatever they carry; other
 * methods get 405; every answer has the security headers (http()). */
START_TEST(test_safe_methods)
{
	static const char *const methods[] = { "GET", "HEAD", "OPTIONS" };
	struct testhelp_http_reply r;
	long events = count("SELECT count(*) FROM ledger");

	daemon_start();
	for (size_t i = 0; i < sizeof(methods) / sizeof(methods[0]); i++) {
		r = http(methods[i], "/s/club?email=ann%40example.org"
		    "&consent_text=v1", FORM_URLENC,
		    "email=ann%40example.org&consent_text=v1");
		ck_assert_int_eq(r.status, i == 2 ? 204 : 200);
		if (i == 2)
			ck_assert(testhelp_http_has_header(&r, "Allow",
			    "GET, HEAD, POST, OPTIONS"));
		free(r.raw);
	}
	r = http("PUT", "/s/club", FORM_URLENC,
	    "email=ann%40example.org&consent_text=v1");
	ck_assert_int_eq(r.status, 405);
	ck_assert(testhelp_http_has_header(&r, "Allow", "GET, HEAD, POST"));
	free(r.raw);
	ck_assert_int_eq(count("SELECT count(*) FROM subscribers"
	    " WHERE email_key = 'ann@example.org'"), 0);
	ck_assert_int_eq(count("SELECT count(*) FROM ledger"), events);
}
END_TEST

/* What an operator writes (description, wording, attribute names) and
 * what a client sends (an attribute name in a 400) is shown escaped. */
START_TEST(test_html_escaped)
{
	struct testhelp_http_reply r;
	struct assent_err err;

	ck_assert_msg(consent_text_add(conn, "v2", "<iframe src=//evil>", 19,
	    NULL, "tester", NULL, &err) == 0, "%s", err.msg);
	testhelp_sql_exec(conn, "UPDATE lists"
	    " SET description = '</p><script>alert(1)</script>',"
	    " form_consent_text = 'v2' WHERE name = 'news'");
	daemon_start();
	r = http("GET", "/s/news", NULL, NULL);
	ck_assert_int_eq(r.status, 200);
	testhelp_http_assert_lacks(&r, "<script");
	testhelp_http_assert_lacks(&r, "<iframe");
	testhelp_http_assert_has(&r, "&lt;iframe src=//evil&gt;");
	testhelp_http_assert_has(&r, "&lt;script&gt;");
	free(r.raw);
	r = http("POST", "/s/news", FORM_URLENC, "email=ann%40example.org"
	    "&consent_text=v2&attr.%3Cscript%3E=1");
	ck_assert_int_eq(r.status, 400);
	testhelp_http_assert_lacks(&r, "<script");
	free(r.raw);
	r = http("POST", "/s/news", FORM_URLENC,
	    "email=%3Cscript%3E%40example.org&consent_text=v2");
	ck_assert_int_eq(r.status, 400);
	testhelp_http_assert_lacks(&r, "<script");
	free(r.raw);
}
END_TEST

/* The form page: well-formed HTML5 that works without JavaScript:
 * one doctype, a language, a charset; every label names an input that
 * exists, ids are unique, the form posts to its own address with an
 * email input that is required and a submit button; no script. */
static void
assert_ids_unique(const char *html)
{
	const char *p = html;
	char ids[32][80];
	size_t n = 0;

	while ((p = strstr(p, " id=\"")) != NULL) {
		const char *end = strchr(p + 5, '"');

		ck_assert(end != NULL && end - (p + 5) < 80 && n < 32);
		snprintf(ids[n], sizeof(ids[n]), "%.*s", (int)(end - (p + 5)), p + 5);
		for (size_t i = 0; i < n; i++)
			ck_assert_msg(strcmp(ids[i], ids[n]) != 0, "id %s twice",
			    ids[n]);
		n++;
		p = end;
	}
	for (p = html; (p = strstr(p, "<label for=\"")) != NULL; p++) {
		const char *end = strchr(p + 12, '"');
		char want[96];

		snprintf(want, sizeof(want), " id=\"%.*s\"", (int)(end - (p + 12)),
		    p + 12);
		ck_assert_msg(strstr(html, want) != NULL, "no %s", want);
	}
}

START_TEST(test_form_html5)
{
	struct testhelp_http_reply r;

	daemon_start();
	r = http("GET", "/s/club", NULL, NULL);
	ck_assert_int_eq(r.status, 200);
	ck_assert_msg(strncmp(r.body, "<!DOCTYPE html>\n<html lang=\"", 27) == 0,
	    "%s", r.body);
	testhelp_http_assert_has(&r, "<meta charset=\"utf-8\">");
	testhelp_http_assert_has(&r, "<form method=\"post\">");
	testhelp_http_assert_has(&r,
	    "<input type=\"email\" id=\"email\" name=\"email\" "
	    "required");
	testhelp_http_assert_has(&r, "<button type=\"submit\">");
	testhelp_http_assert_lacks(&r, "<script");
	testhelp_http_assert_lacks(&r,
	    " on");        /* no event handler attribute */
	assert_ids_unique(r.body);
	ck_assert(testhelp_http_has_header(&r, "Content-Type",
	    "text/html; charset=utf-8"));
	free(r.raw);
}
END_TEST

/* ---- the page template -------------------------------------------------------- */

static char *
template_write(const char *name, const char *text)
{
	char *path = xasprintf("%s/%s", w.dir, name);
	FILE *f = fopen(path, "w");

	ck_assert(f != NULL);
	fputs(text, f);
	fclose(f);
	return path;
}

START_TEST(test_page_template)
{
	char *path = template_write("page.html", "<!DOCTYPE html>\n<title>"
	    "{{ title }} | {{ sender.organisation }}</title>\n<main data-list="
	    "\"{{ list }}\">{{ content }}</main>\n");
	char *setting = xasprintf("page_template = \"%s\";", path);
	struct testhelp_http_reply r;

	daemon_run(setting, false);
	r = http("GET", "/s/club", NULL, NULL);
	ck_assert_int_eq(r.status, 200);
	ck_assert_msg(strncmp(r.body, "<!DOCTYPE html>\n<title>Subscribe to club"
	    " | Club &amp; Co</title>\n<main data-list=\"club\"><p>Weekly",
	    strlen("<!DOCTYPE html>\n<title>Subscribe to club | Club &amp; Co"
	    "</title>\n<main data-list=\"club\"><p>Weekly")) == 0, "%s", r.body);
	free(r.raw);
	/* our error pages too */
	r = http("GET", "/nowhere", NULL, NULL);
	ck_assert_int_eq(r.status, 404);
	testhelp_http_assert_has(&r,
	    "<title>Not found | Club &amp; Co</title>");
	free(r.raw);
	r = http("GET", "/u/not-a-token", NULL, NULL);
	ck_assert_int_eq(r.status, 400);
	testhelp_http_assert_has(&r,
	    "<title>Link not valid | Club &amp; Co</title>");
	free(r.raw);
	unlink(path);
	free(setting);
	free(path);
}
END_TEST

/* conf/page.html is the built-in page. */
START_TEST(test_page_builtin_file)
{
	const char *src = getenv("ASSENT_SRCDIR");
	char *setting, *builtin;
	struct testhelp_http_reply r;

	ck_assert_msg(src != NULL, "ASSENT_SRCDIR is not set");
	daemon_start();
	r = http("GET", "/s/club", NULL, NULL);
	builtin = xstrdup(r.body);
	free(r.raw);
	daemon_stop();
	daemon_files_remove();
	setting = xasprintf("page_template = \"%s/conf/page.html\";", src);
	daemon_run(setting, false);
	r = http("GET", "/s/club", NULL, NULL);
	ck_assert_str_eq(r.body, builtin);
	free(r.raw);
	free(setting);
	free(builtin);
}
END_TEST

static const struct {
	const char *text;
	const char *want;       /* after "FILE" */
} broken[] = {
	{ "<title>{{ title }}</title>\n<p>{{ nmae }}</p>{{ content }}",
	  ": template line 2, column 7: unknown field \"nmae\"" },
	{ "<title>{{ title }}</title>\n{{ unsubscribe_url }}{{ content }}",
	  ": template line 2, column 4: a page may not contain unsubscribe_url" },
	{ "<p>{{ content }\n", ": template line 1, column 15: expected \"}}\"" },
	{ "<p>no content here</p>\n", ": template: the page has no {{ content }}" },
};

/* A template that does not compile stops assentd from starting. */
START_TEST(test_page_template_broken)
{
	char *path = template_write("broken.html", broken[_i].text);
	char *setting = xasprintf("page_template = \"%s\";", path);
	char *want = xasprintf("http.page_template: %s%s", path,
	    broken[_i].want);
	char *log;
	int status;

	status = daemon_run(setting, true);
	log = testhelp_file_read(w.log);
	ck_assert_msg(status == 78, "status %d; log:\n%s", status, log);
	ck_assert_msg(strstr(log, want) != NULL, "no \"%s\" in:\n%s", want, log);
	free(log);
	unlink(path);
	free(want);
	free(setting);
	free(path);
}
END_TEST

START_TEST(test_page_template_missing)
{
	char *setting = xasprintf("page_template = \"%s/nothing.html\";", w.dir);
	char *log;
	int status;

	status = daemon_run(setting, true);
	log = testhelp_file_read(w.log);
	ck_assert_msg(status == 78, "status %d; log:\n%s", status, log);
	ck_assert_msg(strstr(log, "nothing.html") != NULL, "%s", log);
	free(log);
	free(setting);
}
END_TEST

int
main(void)
{
	Suite *s = suite_create("signup_web");
	TCase *tc = tcase_create("form");

	testhelp_require_servers();
	tcase_set_timeout(tc, TEST_TIMEOUT);
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, test_form_page);
	tcase_add_loop_test(tc, test_signup_double_optin, 0,
	    sizeof(encodings) / sizeof(encodings[0]));
	tcase_add_test(tc, test_signup_single_optin_referer);
	tcase_add_test(tc, test_same_answer);
	tcase_add_loop_test(tc, test_refusals, 0,
	    sizeof(refusals) / sizeof(refusals[0]));
	tcase_add_test(tc, test_rate_limit);
	tcase_add_test(tc, test_metrics_outcomes);
	tcase_add_test(tc, test_body_cap);
	tcase_add_loop_test(tc, test_duplicate_fields, 0,
	    sizeof(duplicates) / sizeof(duplicates[0]));
	tcase_add_loop_test(tc, test_broken_bodies, 0,
	    sizeof(broken_bodies) / sizeof(broken_bodies[0]));
	tcase_add_test(tc, test_oversized_parts);
	tcase_add_loop_test(tc, test_evidence_no_oracle, 0,
	    sizeof(evidence) / sizeof(evidence[0]));
	tcase_add_loop_test(tc, test_limit_not_spoofed, 0,
	    sizeof(floods) / sizeof(floods[0]));
	tcase_add_test(tc, test_limited_is_cheap);
	tcase_add_test(tc, test_safe_methods);
	tcase_add_test(tc, test_html_escaped);
	tcase_add_test(tc, test_form_html5);
	tcase_add_test(tc, test_page_template);
	tcase_add_test(tc, test_page_builtin_file);
	tcase_add_loop_test(tc, test_page_template_broken, 0,
	    sizeof(broken) / sizeof(broken[0]));
	tcase_add_test(tc, test_page_template_missing);
	suite_add_tcase(s, tc);
	return testhelp_run_suite(s);
}

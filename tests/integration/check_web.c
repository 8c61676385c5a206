/*
 * check_web: the links in mail, over real HTTP against a running
 * assentd ($ASSENTD_BIN): /u/TOKEN (unsubscribe) and /c/TOKEN
 * (confirm). GET changes nothing, POST acts once, bad tokens all look
 * alike, and what the ledger records (channel, IP, user agent). An
 * expired confirmation link offers a fresh one. (The subscribe form
 * and the page template: check_signup_web.)
 */
#include <sys/types.h>
#include <sys/wait.h>
#include <check.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "assent/keys.h"
#include "assent/lists.h"
#include "assent/subs.h"
#include "assent/token.h"
#include "assent/xmalloc.h"
#include "testhelp.h"

#define conn testhelp_conn

#define TEST_TIMEOUT   60      /* seconds per test */
#define ORGANISATION   "Smith & Sons <News>"
#define ONE_CLICK      "List-Unsubscribe=One-Click"
#define FORM_URLENC    "Content-Type: application/x-www-form-urlencoded\r\n"
#define UA             "TestMail/2.0 (check_web)"
#define UA_HEADER      "User-Agent: " UA "\r\n"

static struct {
	char dir[64];
	char *keys_path;
	struct keys *keys;
	struct token_signer *signer;
	char *conf, *log;
	pid_t pid;
	int port;
	int admin_port;                 /* 0: no /metrics server */
} w;

/* ---- the database ----------------------------------------------------------- */

static long
count(const char *sql)
{
	return testhelp_query_long(conn, sql);
}

/* The status of email's subscription to name. */
static void
assert_status(const char *email, const char *name, const char *want)
{
	char *sql = xasprintf("SELECT s.status FROM subscriptions s"
	    " JOIN subscribers p ON p.id = s.subscriber_id"
	    " JOIN lists l ON l.id = s.list_id"
	    " WHERE p.email_key = '%s' AND l.name = '%s'", email, name);

	testhelp_assert_text(conn, sql, want);
	free(sql);
}

/* ---- tokens --------------------------------------------------------------------- */

/* "/u/TOKEN" or "/c/TOKEN" (per purpose) for sub and list (0: all
 * lists), issued at issued, signed with key (0: the current one). */
static char *
link_for(const char *prefix, enum token_purpose p, uint64_t subscriber,
    uint64_t list_id, int64_t issued, uint8_t key)
{
	struct token t = { .purpose = p, .subscriber_id = subscriber,
	    .list_id = list_id, .all_lists = list_id == 0, .issued_at = issued };
	char text[TOKEN_TEXT_SIZE];
	struct assent_err err;
	int rc;

	rc = key == 0 ? token_make(w.signer, &t, text, sizeof(text), &err) :
	    token_make_with_key(w.signer, key, &t, text, sizeof(text), &err);
	ck_assert_msg(rc == 0, "%s", err.msg);
	return xasprintf("%s%s", prefix, text);
}

static char *
unsub_link(const char *email, const char *list_name)
{
	return link_for("/u/", TOKEN_UNSUBSCRIBE,
	    testhelp_subscriber_id(conn, email),
	    list_name != NULL ? testhelp_list_id(conn, list_name) : 0,
	    time(NULL), 0);
}

static char *
confirm_link(const char *email, const char *list_name, int64_t issued)
{
	return link_for("/c/", TOKEN_CONFIRM, testhelp_subscriber_id(conn, email),
	    testhelp_list_id(conn, list_name), issued, 0);
}

/* ---- the daemon ------------------------------------------------------------------ */

/* Start assentd with http.trusted_proxies = proxies (NULL: unset) and
 * the keys file at keys (NULL: w.keys_path). */
static void
daemon_start(const char *proxies, const char *keys)
{
	char *extra, *setting;

	w.port = testhelp_free_port();
	extra = xasprintf("tokens = { keys_file = \"%s\"; };\n"
	    "sender = { organisation = \"%s\"; };\n",
	    keys != NULL ? keys : w.keys_path, ORGANISATION);
	w.conf = testhelp_write_conf(testhelp_dsn, w.port, extra);
	free(extra);
	if (proxies != NULL) {
		/* testhelp_write_conf() owns the http group: add to it. */
		setting = xasprintf("trusted_proxies = \"%s\"; listen = ",
		    proxies);
		testhelp_file_replace(w.conf, "listen = ", setting);
		free(setting);
	}
	if (w.admin_port != 0) {
		setting = xasprintf("admin_port = %d;", w.admin_port);
		testhelp_file_replace(w.conf, "admin_port = 0;", setting);
		free(setting);
	}
	w.log = xasprintf("%s.log", w.conf);
	w.pid = testhelp_assentd_spawn(w.conf, "-f", w.log);
	testhelp_assentd_wait_listen(w.pid, w.port, w.log);
}

static void
daemon_stop(void)
{
	if (w.pid > 0)
		testhelp_assentd_stop(w.pid, w.log);
	w.pid = 0;
}

/* The files a passing test made (a failing one leaves them, and its
 * log, for a post-mortem: Check does not run the teardown then). */
static void
files_remove(void)
{
	char *path;

	if (w.conf != NULL)
		testhelp_conf_remove(w.conf, w.log);
	unlink(w.keys_path);
	path = xasprintf("%s.lock", w.keys_path);
	unlink(path);
	free(path);
	rmdir(w.dir);
}

/* A request that must never redirect. */
static struct testhelp_http_reply
http(const char *method, const char *path, const char *headers,
    const char *body)
{
	struct testhelp_http_reply r;

	r = testhelp_http(w.port, method, path, headers, body);
	ck_assert_msg(r.status < 300 || r.status >= 400, "%s %s: %d", method,
	    path, r.status);
	ck_assert_msg(!testhelp_http_has_header(&r, "Location", ""),
	    "%s %s: a Location header:\n%s", method, path, r.raw);
	return r;
}

static struct testhelp_http_reply
one_click(const char *path)
{
	return http("POST", path, FORM_URLENC UA_HEADER, ONE_CLICK);
}

/* ---- fixture ------------------------------------------------------------------- */

static void
setup(void)
{
	struct assent_err err;

	testhelp_fixture_db();
	memset(&w, 0, sizeof(w));
	strcpy(w.dir, "/tmp/assent-web-XXXXXX");
	ck_assert(mkdtemp(w.dir) != NULL);
	testhelp_keys_make(w.dir, &w.keys_path, &w.keys, NULL, &w.signer);
	ck_assert_int_eq(lists_create(conn, "news", NULL, false, &err), 0);
	ck_assert_int_eq(lists_create(conn, "offers", NULL, false, &err), 0);
	ck_assert_int_eq(lists_create(conn, "club", NULL, true, &err), 0);
	testhelp_subscribe(conn, "ann@example.org", NULL, "news");
	testhelp_subscribe(conn, "ann@example.org", NULL, "offers");
	testhelp_subscribe(conn, "bob@example.org", NULL, "news");
	testhelp_subscribe(conn, "cat@example.org", NULL, "club");           /* pending */
}

static void
teardown(void)
{
	daemon_stop();
	token_signer_free(w.signer);
	keys_free(w.keys);
	testhelp_fixture_drop();
	files_remove();
	free(w.keys_path);
	free(w.conf);
	free(w.log);
}

/* ---- GET, HEAD, OPTIONS change nothing ------------------------------------------------ */

START_TEST(test_get_changes_nothing)
{
	char *u = unsub_link("ann@example.org", "news"), *action;
	long events = count("SELECT count(*) FROM ledger");
	struct testhelp_http_reply r;

	daemon_start(NULL, NULL);
	r = http("GET", u, UA_HEADER, NULL);
	ck_assert_int_eq(r.status, 200);
	testhelp_http_assert_has(&r, "Leave the list news?");
	testhelp_http_assert_has(&r,
	    "name=\"scope\" value=\"list\">Leave news</button>");
	testhelp_http_assert_has(&r,
	    "name=\"scope\" value=\"all\">Leave everything from ");
	action = xasprintf("<form method=\"post\" action=\"%s\">", u + 3);
	testhelp_http_assert_has(&r, action);
	testhelp_http_assert_lacks(&r, "ann@example.org");
	testhelp_http_assert_lacks(&r, "example.org");
	testhelp_http_assert_lacks(&r, "Set-Cookie");
	ck_assert(testhelp_http_has_header(&r, "Content-Type",
	    "text/html; charset=utf-8"));
	ck_assert(testhelp_http_has_header(&r, "Content-Security-Policy",
	    "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; "
	    "frame-ancestors 'none'; base-uri 'none'"));
	ck_assert(testhelp_http_has_header(&r, "X-Content-Type-Options", "nosniff"));
	ck_assert(testhelp_http_has_header(&r, "Cache-Control", "no-store"));
	ck_assert(testhelp_http_has_header(&r, "Referrer-Policy", "no-referrer"));
	free(r.raw);

	r = http("HEAD", u, NULL, NULL);
	ck_assert_int_eq(r.status, 200);
	ck_assert_str_eq(r.body, "");
	free(r.raw);
	r = http("OPTIONS", u, NULL, NULL);
	ck_assert_int_eq(r.status, 204);
	ck_assert(testhelp_http_has_header(&r, "Allow", "GET, HEAD, POST, OPTIONS"));
	free(r.raw);
	/* A link scanner's burst. */
	for (int i = 0; i < 20; i++) {
		r = http("GET", u, UA_HEADER, NULL);
		ck_assert_int_eq(r.status, 200);
		free(r.raw);
	}
	assert_status("ann@example.org", "news", "confirmed");
	ck_assert_int_eq(count("SELECT count(*) FROM ledger"), events);
	free(action);
	free(u);
}
END_TEST

/* ---- POST -------------------------------------------------------------------------- */

START_TEST(test_one_click_urlencoded)
{
	char *u = unsub_link("ann@example.org", "news");
	struct testhelp_http_reply r, again;

	daemon_start(NULL, NULL);
	r = one_click(u);
	ck_assert_int_eq(r.status, 200);
	testhelp_http_assert_has(&r, "You will get no more mail from news.");
	testhelp_http_assert_lacks(&r, "ann@example.org");
	assert_status("ann@example.org", "news", "unsubscribed");
	assert_status("ann@example.org", "offers", "confirmed");
	testhelp_assert_text(conn, "SELECT channel || ' ' || host(ip) || ' '"
	    " || user_agent FROM ledger WHERE action = 'unsubscribe'",
	    "one-click 127.0.0.1 " UA);
	/* Again: the same page, nothing more recorded. */
	again = one_click(u);
	ck_assert_int_eq(again.status, 200);
	ck_assert_str_eq(again.body, r.body);
	ck_assert_int_eq(count("SELECT count(*) FROM ledger"
	    " WHERE action = 'unsubscribe'"), 1);
	ck_assert_int_eq(count("SELECT count(*) FROM suppressions"), 0);
	free(again.raw);
	free(r.raw);
	free(u);
}
END_TEST

START_TEST(test_one_click_multipart)
{
	char *u = unsub_link("bob@example.org", "news");
	struct testhelp_http_reply r;

	daemon_start(NULL, NULL);
	r = http("POST", u,
	    "Content-Type: multipart/form-data; boundary=XyZzy42\r\n" UA_HEADER,
	    "--XyZzy42\r\n"
	    "Content-Disposition: form-data; name=\"List-Unsubscribe\"\r\n"
	    "\r\n"
	    "One-Click\r\n"
	    "--XyZzy42--\r\n");
	ck_assert_int_eq(r.status, 200);
	testhelp_http_assert_has(&r, "You will get no more mail from news.");
	assert_status("bob@example.org", "news", "unsubscribed");
	testhelp_assert_text(conn, "SELECT channel FROM ledger"
	    " WHERE action = 'unsubscribe'", "one-click");
	free(r.raw);
	free(u);
}
END_TEST

START_TEST(test_all_lists_token)
{
	char *u = unsub_link("ann@example.org", NULL);
	struct testhelp_http_reply r;

	daemon_start(NULL, NULL);
	r = http("GET", u, NULL, NULL);
	ck_assert_int_eq(r.status, 200);
	testhelp_http_assert_has(&r, "value=\"all\">Leave everything from ");
	testhelp_http_assert_lacks(&r, "value=\"list\"");
	free(r.raw);
	for (int i = 0; i < 2; i++) {
		r = one_click(u);
		ck_assert_int_eq(r.status, 200);
		testhelp_http_assert_has(&r,
		    "You will get no more mail from Smith &amp; Sons "
		    "&lt;News&gt;.");
		free(r.raw);
		assert_status("ann@example.org", "news", "unsubscribed");
		assert_status("ann@example.org", "offers", "unsubscribed");
		assert_status("bob@example.org", "news", "confirmed");
		ck_assert_int_eq(count("SELECT count(*) FROM suppressions"), 1);
		ck_assert_int_eq(count("SELECT count(*) FROM suppressions"
		    " WHERE reason = 'unsubscribe' AND removed_at IS NULL"), 1);
	}
	free(u);
}
END_TEST

/* The page's own form: scope list or all, channel web. */
START_TEST(test_form_scopes)
{
	char *u = unsub_link("ann@example.org", "news");
	struct testhelp_http_reply r;

	daemon_start(NULL, NULL);
	r = http("POST", u, FORM_URLENC UA_HEADER, "scope=list");
	ck_assert_int_eq(r.status, 200);
	testhelp_http_assert_has(&r, "You will get no more mail from news.");
	free(r.raw);
	assert_status("ann@example.org", "news", "unsubscribed");
	assert_status("ann@example.org", "offers", "confirmed");
	testhelp_assert_text(conn, "SELECT channel FROM ledger"
	    " WHERE action = 'unsubscribe'", "web");
	ck_assert_int_eq(count("SELECT count(*) FROM suppressions"), 0);

	/* Already off news: the page (which asks the database nothing)
	 * still offers both; leaving news again changes nothing. */
	r = http("GET", u, NULL, NULL);
	ck_assert_int_eq(r.status, 200);
	testhelp_http_assert_has(&r, "Leave the list news?");
	testhelp_http_assert_has(&r, "value=\"all\"");
	free(r.raw);
	r = http("POST", u, FORM_URLENC, "scope=list");
	ck_assert_int_eq(r.status, 200);
	testhelp_http_assert_has(&r, "You will get no more mail from news.");
	free(r.raw);
	ck_assert_int_eq(count("SELECT count(*) FROM ledger"
	    " WHERE action = 'unsubscribe'"), 1);

	r = http("POST", u, FORM_URLENC, "scope=all");
	ck_assert_int_eq(r.status, 200);
	testhelp_http_assert_has(&r,
	    "You will get no more mail from Smith &amp; Sons");
	free(r.raw);
	assert_status("ann@example.org", "offers", "unsubscribed");
	ck_assert_int_eq(count("SELECT count(*) FROM suppressions"
	    " WHERE reason = 'unsubscribe'"), 1);
	free(u);
}
END_TEST

/* Bodies that ask for nothing, or too much. */
START_TEST(test_bad_bodies)
{
	static const struct {
		const char *headers, *body;
		int status;
	} cases[] = {
		{ FORM_URLENC, "", 400 },
		{ FORM_URLENC, "List-Unsubscribe=Two-Click", 400 },
		{ FORM_URLENC, "scope=some", 400 },
		{ FORM_URLENC, "unsubscribe=yes", 400 },
		{ "Content-Type: text/plain\r\n", ONE_CLICK, 400 },
		{ NULL, ONE_CLICK, 400 },
		{ "Content-Type: application/json\r\n", "{\"scope\":\"all\"}", 400 },
	};
	char *u = unsub_link("ann@example.org", "news"), *big;
	struct testhelp_http_reply r, first;

	daemon_start(NULL, NULL);
	first = http("GET", "/u/nothing", NULL, NULL);
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		r = http("POST", u, cases[i].headers, cases[i].body);
		ck_assert_msg(r.status == cases[i].status, "case %zu: %d", i,
		    r.status);
		ck_assert_str_eq(r.body, first.body);
		free(r.raw);
	}
	/* Over the cap: 413, announced or chunked. */
	big = xmalloc(9001);
	memcpy(big, ONE_CLICK "&x=", strlen(ONE_CLICK "&x="));
	memset(big + strlen(ONE_CLICK "&x="), 'a', 9000 - strlen(ONE_CLICK "&x="));
	big[9000] = '\0';
	r = http("POST", u, FORM_URLENC, big);
	ck_assert_int_eq(r.status, 413);
	free(r.raw);
	{
		char *req = xasprintf("POST %s HTTP/1.1\r\nHost: x\r\n"
		    "Connection: close\r\n" FORM_URLENC
		    "Transfer-Encoding: chunked\r\n\r\n%x\r\n%s\r\n0\r\n\r\n",
		    u, 9000, big);

		r = testhelp_http_raw(w.port, req);
		ck_assert_int_eq(r.status, 413);
		free(r.raw);
		free(req);
	}
	assert_status("ann@example.org", "news", "confirmed");
	ck_assert_int_eq(count("SELECT count(*) FROM ledger"
	    " WHERE action = 'unsubscribe'"), 0);
	free(big);
	free(first.raw);
	free(u);
}
END_TEST

/* ---- bad tokens ------------------------------------------------------------------- */

START_TEST(test_bad_tokens)
{
	char *u = unsub_link("ann@example.org", "news");
	char *c = confirm_link("cat@example.org", "club", time(NULL));
	char *tampered = xstrdup(u), *truncated = xstrdup(u);
	char *cross_u, *cross_c, *slash;
	struct testhelp_http_reply first, r;
	const char *paths[8];
	size_t n = 0;

	tampered[10] = tampered[10] == 'A' ? 'B' : 'A';
	truncated[strlen(truncated) - 1] = '\0';
	cross_u = xasprintf("/u/%s", c + 3);    /* a confirm token on /u/ */
	cross_c = xasprintf("/c/%s", u + 3);    /* an unsubscribe token on /c/ */
	slash = xasprintf("%s/", u);
	paths[n++] = tampered;
	paths[n++] = truncated;
	paths[n++] = cross_u;
	paths[n++] = cross_c;
	paths[n++] = slash;
	paths[n++] = "/u/";
	paths[n++] = "/c/%3Cscript%3E";
	paths[n++] = "/u/..%2F..%2Fetc%2Fpasswd";
	daemon_start(NULL, NULL);
	first = http("GET", tampered, NULL, NULL);
	ck_assert_int_eq(first.status, 400);
	testhelp_http_assert_has(&first, "This link is not valid.");
	testhelp_http_assert_lacks(&first, "token");
	testhelp_http_assert_lacks(&first, "example.org");
	testhelp_http_assert_lacks(&first, "script");
	ck_assert(testhelp_http_has_header(&first, "Content-Security-Policy",
	    "default-src 'none'"));
	for (size_t i = 0; i < n; i++) {
		const char *methods[] = { "GET", "POST" };

		for (size_t m = 0; m < 2; m++) {
			r = http(methods[m], paths[i], FORM_URLENC, ONE_CLICK);
			ck_assert_msg(r.status == 400, "%s %s: %d", methods[m],
			    paths[i], r.status);
			ck_assert_str_eq(r.body, first.body);
			free(r.raw);
		}
	}
	assert_status("ann@example.org", "news", "confirmed");
	assert_status("cat@example.org", "club", "pending");
	free(first.raw);
	free(slash);
	free(cross_c);
	free(cross_u);
	free(truncated);
	free(tampered);
	free(c);
	free(u);
}
END_TEST

/* ---- confirm ------------------------------------------------------------------------- */

START_TEST(test_confirm_flow)
{
	char *c = confirm_link("cat@example.org", "club", time(NULL));
	long events = count("SELECT count(*) FROM ledger");
	struct testhelp_http_reply r;

	daemon_start(NULL, NULL);
	r = http("GET", c, UA_HEADER, NULL);
	ck_assert_int_eq(r.status, 200);
	testhelp_http_assert_has(&r,
	    "value=\"yes\">Confirm my subscription to club</button>");
	testhelp_http_assert_lacks(&r, "cat@example.org");
	free(r.raw);
	r = http("HEAD", c, NULL, NULL);
	ck_assert_int_eq(r.status, 200);
	free(r.raw);
	assert_status("cat@example.org", "club", "pending");
	ck_assert_int_eq(count("SELECT count(*) FROM ledger"), events);

	r = http("POST", c, FORM_URLENC UA_HEADER, "confirm=yes");
	ck_assert_int_eq(r.status, 200);
	testhelp_http_assert_has(&r, "Your subscription to club is confirmed.");
	free(r.raw);
	assert_status("cat@example.org", "club", "confirmed");
	testhelp_assert_text(conn, "SELECT channel || ' ' || host(ip) || ' '"
	    " || user_agent FROM ledger WHERE action = 'confirm'",
	    "confirm-link 127.0.0.1 " UA);
	/* Again, and the page. */
	r = http("POST", c, NULL, NULL);
	ck_assert_int_eq(r.status, 200);
	testhelp_http_assert_has(&r,
	    "Your subscription to club is confirmed already.");
	free(r.raw);
	/* The page asks the database nothing: the button is there, and
	 * the page it leads to says how things are. */
	r = http("GET", c, NULL, NULL);
	ck_assert_int_eq(r.status, 200);
	testhelp_http_assert_has(&r, "Confirm my subscription to club");
	free(r.raw);
	ck_assert_int_eq(count("SELECT count(*) FROM ledger"
	    " WHERE action = 'confirm'"), 1);
	free(c);
}
END_TEST

START_TEST(test_confirm_expired)
{
	/* The default confirm_ttl is 7 days. */
	char *c = confirm_link("cat@example.org", "club",
	    time(NULL) - 8 * 86400);
	char *forged = xstrdup(c), *action;
	long events = count("SELECT count(*) FROM ledger");
	/* cat's sign-up queued one already (subs.h) */
	long notices = count("SELECT count(*) FROM notices");
	struct testhelp_http_reply r, first;

	forged[10] = forged[10] == 'A' ? 'B' : 'A';
	action = xasprintf("<form method=\"post\" action=\"%s\">", c + 3);
	daemon_start(NULL, NULL);
	/* GET, HEAD, and a POST that does not ask for a new link: the same
	 * page, nothing done */
	first = http("GET", c, UA_HEADER, NULL);
	ck_assert_int_eq(first.status, 200);
	testhelp_http_assert_has(&first, "This confirmation link has expired.");
	testhelp_http_assert_has(&first, "If you still want mail from club");
	testhelp_http_assert_has(&first, action);
	testhelp_http_assert_has(&first,
	    "name=\"resend\" value=\"1\">Send me a new link"
	    "</button>");
	testhelp_http_assert_lacks(&first, "cat@example.org");
	r = http("HEAD", c, NULL, NULL);
	ck_assert_int_eq(r.status, 200);
	free(r.raw);
	r = http("POST", c, FORM_URLENC, "confirm=yes");
	ck_assert_int_eq(r.status, 200);
	ck_assert_str_eq(r.body, first.body);
	free(r.raw);
	assert_status("cat@example.org", "club", "pending");
	ck_assert_int_eq(count("SELECT count(*) FROM notices"), notices);
	ck_assert_int_eq(count("SELECT count(*) FROM ledger"), events);

	/* the button: a fresh confirmation request, and no confirmation
	 * (the first one went out: one still queued would stand for it,
	 * notice.h) */
	testhelp_sql_exec(conn, "UPDATE notices SET state = 'sending',"
	    " sender_session = 1");
	testhelp_sql_exec(conn, "UPDATE notices SET state = 'sent',"
	    " sent_at = now()");
	r = http("POST", c, FORM_URLENC UA_HEADER, "resend=1");
	ck_assert_int_eq(r.status, 200);
	testhelp_http_assert_has(&r,
	    "If your subscription to club is still waiting to be "
	    "confirmed, a new link is on its way");
	free(r.raw);
	assert_status("cat@example.org", "club", "pending");
	ck_assert_int_eq(count("SELECT count(*) FROM notices n"
	    " JOIN subscribers p ON p.id = n.subscriber_id"
	    " JOIN lists l ON l.id = n.list_id WHERE p.email_key ="
	    " 'cat@example.org' AND l.name = 'club' AND n.kind = 'confirm'"),
	    notices + 1);
	ck_assert_int_eq(count("SELECT count(*) FROM ledger"
	    " WHERE action = 'confirm'"), 0);

	/* a forged one is just not valid */
	for (int i = 0; i < 2; i++) {
		r = http(i == 0 ? "GET" : "POST", forged, FORM_URLENC, "resend=1");
		ck_assert_int_eq(r.status, 400);
		testhelp_http_assert_has(&r, "This link is not valid.");
		free(r.raw);
	}
	ck_assert_int_eq(count("SELECT count(*) FROM notices"), notices + 1);
	free(first.raw);
	free(action);
	free(forged);
	free(c);
}
END_TEST

/* A confirmed subscription: the button of an expired link answers the
 * same, and queues nothing. */
START_TEST(test_confirm_expired_settled)
{
	char *c = confirm_link("ann@example.org", "news",
	    time(NULL) - 8 * 86400);
	char *p = confirm_link("cat@example.org", "club",
	    time(NULL) - 8 * 86400);
	struct testhelp_http_reply r, pending;

	daemon_start(NULL, NULL);
	pending = http("POST", p, FORM_URLENC, "resend=1");
	r = http("POST", c, FORM_URLENC, "resend=1");
	ck_assert_int_eq(r.status, 200);
	testhelp_http_assert_has(&r,
	    "If your subscription to news is still waiting");
	free(r.raw);
	assert_status("ann@example.org", "news", "confirmed");
	ck_assert_int_eq(count("SELECT count(*) FROM notices n"
	    " JOIN subscribers p ON p.id = n.subscriber_id"
	    " WHERE p.email_key = 'ann@example.org'"), 0);
	free(pending.raw);
	free(p);
	free(c);
}
END_TEST

/* The button of an expired link queues mail: each press counts against
 * the client's allowance, like a sign-up (it cannot mail-bomb), and the
 * expired page without a press does not. */
START_TEST(test_confirm_again_limited)
{
	char *c = confirm_link("cat@example.org", "club",
	    time(NULL) - 8 * 86400);
	struct testhelp_http_reply r;
	int first_limited = -1;

	daemon_start(NULL, NULL);
	for (int i = 0; i < 15; i++) {
		r = http("GET", c, NULL, NULL);
		ck_assert_int_eq(r.status, 200);
		free(r.raw);
	}
	for (int i = 0; i < 12; i++) {
		r = http("POST", c, FORM_URLENC, "resend=1");
		ck_assert_msg(r.status == 200 || r.status == 429, "%d", r.status);
		if (r.status == 429 && first_limited < 0) {
			first_limited = i;
			ck_assert(testhelp_http_has_header(&r, "Retry-After", ""));
			ck_assert(testhelp_http_has_header(&r,
			    "Content-Security-Policy", "default-src 'none'"));
		}
		free(r.raw);
	}
	ck_assert_msg(first_limited == 10, "limited from %d", first_limited);
	/* and a sign-up from the same client is over the limit too */
	r = http("POST", "/s/club", FORM_URLENC, "email=x");
	ck_assert_int_eq(r.status, 429);
	free(r.raw);
	free(c);
}
END_TEST

/* A token naming a list that does not exist (or no longer does) shows
 * no list's name, never another list's. */
START_TEST(test_unknown_list_name)
{
	char *u = link_for("/u/", TOKEN_UNSUBSCRIBE,
	    testhelp_subscriber_id(conn, "ann@example.org"), 987654, time(NULL), 0);
	char *n = unsub_link("ann@example.org", "news");
	struct testhelp_http_reply r;

	daemon_start(NULL, NULL);
	r = http("GET", n, NULL, NULL);         /* the table is loaded */
	testhelp_http_assert_has(&r, "Leave the list news?");
	free(r.raw);
	for (int i = 0; i < 3; i++) {
		r = http("GET", u, NULL, NULL);
		ck_assert_int_eq(r.status, 200);
		testhelp_http_assert_has(&r, "Leave the list this list?");
		testhelp_http_assert_lacks(&r, "news");
		testhelp_http_assert_lacks(&r, "offers");
		testhelp_http_assert_lacks(&r, "club");
		free(r.raw);
		testhelp_sleep_ms(250);
	}
	free(n);
	free(u);
}
END_TEST

/* ---- the client's address --------------------------------------------------------------- */

static const struct {
	const char *proxies;    /* http.trusted_proxies; NULL unset */
	const char *xff;        /* X-Forwarded-For */
	const char *ip;         /* what the ledger gets */
} xff_cases[] = {
	{ NULL, "203.0.113.9", "127.0.0.1" },
	{ "192.0.2.1", "203.0.113.9", "127.0.0.1" },
	{ "127.0.0.1", "203.0.113.9", "203.0.113.9" },
	{ "127.0.0.1", "198.51.100.4, 203.0.113.9", "203.0.113.9" },
	{ "127.0.0.1, 10.0.0.1", "198.51.100.4, 10.0.0.1", "198.51.100.4" },
	{ "127.0.0.1", "2001:db8::7", "2001:db8::7" },
	{ "127.0.0.1", "not-an-address", "127.0.0.1" },
	{ "127.0.0.1", "203.0.113.9<script>", "127.0.0.1" },
};

START_TEST(test_forwarded_for)
{
	char *u = unsub_link("ann@example.org", "news");
	char *hdr = xasprintf(FORM_URLENC "X-Forwarded-For: %s\r\n",
	    xff_cases[_i].xff);
	struct testhelp_http_reply r;

	daemon_start(xff_cases[_i].proxies, NULL);
	r = http("POST", u, hdr, ONE_CLICK);
	ck_assert_int_eq(r.status, 200);
	free(r.raw);
	testhelp_assert_text(conn, "SELECT host(ip) FROM ledger"
	    " WHERE action = 'unsubscribe'", xff_cases[_i].ip);
	free(hdr);
	free(u);
}
END_TEST

/* ---- keys ------------------------------------------------------------------------------ */

/* A 60-day-old link signed with a key that has since been retired from
 * signing still works. */
START_TEST(test_retired_key)
{
	struct assent_err err;
	struct testhelp_http_reply r;
	uint8_t new_id;
	char *u;

	ck_assert_msg(keys_rotate(w.keys_path, &new_id, &err) == 0, "%s", err.msg);
	ck_assert_int_eq(new_id, 2);
	token_signer_free(w.signer);
	keys_free(w.keys);
	ck_assert_msg(keys_load(w.keys_path, &w.keys, &err) == 0, "%s", err.msg);
	ck_assert_msg(token_signer_new(w.keys, &w.signer, &err) == 0, "%s",
	    err.msg);
	u = link_for("/u/", TOKEN_UNSUBSCRIBE, testhelp_subscriber_id(conn, "ann@example.org"),
	    testhelp_list_id(conn, "news"), time(NULL) - 60 * 86400, 1);
	daemon_start(NULL, NULL);
	r = one_click(u);
	ck_assert_int_eq(r.status, 200);
	free(r.raw);
	assert_status("ann@example.org", "news", "unsubscribed");
	free(u);
}
END_TEST

/* A key added while the daemon runs: links signed with it work at
 * once (the file is read again when a token fails). */
START_TEST(test_rotated_while_running)
{
	struct testhelp_http_reply r;
	struct assent_err err;
	uint8_t new_id;
	char *u;

	daemon_start(NULL, NULL);
	ck_assert_msg(keys_rotate(w.keys_path, &new_id, &err) == 0, "%s", err.msg);
	token_signer_free(w.signer);
	keys_free(w.keys);
	ck_assert_msg(keys_load(w.keys_path, &w.keys, &err) == 0, "%s", err.msg);
	ck_assert_msg(token_signer_new(w.keys, &w.signer, &err) == 0, "%s",
	    err.msg);
	u = unsub_link("ann@example.org", "news");      /* signed with key 2 */
	/* The file is looked at no more than once a second. */
	testhelp_sleep_ms(1100);
	r = one_click(u);
	ck_assert_msg(r.status == 200, "%d; log:\n%s", r.status,
	    testhelp_file_read(w.log));
	free(r.raw);
	assert_status("ann@example.org", "news", "unsubscribed");
	free(u);
}
END_TEST

/* No keys file: the links answer 503, /healthz still works; once the
 * file appears, the links work. */
START_TEST(test_no_keys)
{
	char *u = unsub_link("ann@example.org", "news");
	char *missing = xasprintf("%s/missing.conf", w.dir);
	struct testhelp_http_reply r;
	struct assent_err err;
	char *log;

	daemon_start(NULL, missing);
	r = http("GET", "/healthz", NULL, NULL);
	ck_assert_int_eq(r.status, 200);
	free(r.raw);
	r = one_click(u);
	ck_assert_int_eq(r.status, 503);
	testhelp_http_assert_has(&r, "Nothing has changed.");
	free(r.raw);
	r = http("GET", "/c/whatever", NULL, NULL);
	ck_assert_int_eq(r.status, 503);
	free(r.raw);
	assert_status("ann@example.org", "news", "confirmed");
	log = testhelp_file_read(w.log);
	ck_assert_msg(strstr(log, "/u/ and /c/ will answer 503") != NULL, "%s", log);
	free(log);

	/* The file appears (these keys, not the fixture's). */
	ck_assert_msg(keys_generate(missing, &err) == 0, "%s", err.msg);
	token_signer_free(w.signer);
	keys_free(w.keys);
	ck_assert_msg(keys_load(missing, &w.keys, &err) == 0, "%s", err.msg);
	ck_assert_msg(token_signer_new(w.keys, &w.signer, &err) == 0, "%s",
	    err.msg);
	free(u);
	u = unsub_link("ann@example.org", "news");
	testhelp_sleep_ms(1100);
	r = one_click(u);
	ck_assert_int_eq(r.status, 200);
	free(r.raw);
	assert_status("ann@example.org", "news", "unsubscribed");
	unlink(missing);
	free(missing);
	free(u);
}
END_TEST

/* ---- rate limit ------------------------------------------------------------------------ */

START_TEST(test_rate_limit)
{
	struct testhelp_http_reply r;
	int limited = 0, first_limited = -1;

	daemon_start(NULL, NULL);
	for (int i = 0; i < 60; i++) {
		r = http("POST", "/u/nothing", FORM_URLENC, ONE_CLICK);
		ck_assert(r.status == 400 || r.status == 429);
		if (r.status == 429) {
			if (first_limited < 0)
				first_limited = i;
			limited++;
		}
		free(r.raw);
	}
	ck_assert_msg(first_limited >= 30, "limited after %d", first_limited);
	ck_assert_msg(limited > 0, "never limited");
	/* a fresh client's valid one-click POSTs are never limited (a
	 * mailbox provider's servers send many) */
	{
		char *u = unsub_link("ann@example.org", "news");
		char xff[64];

		daemon_stop();
		unlink(w.log);
		unlink(w.conf);
		*strrchr(w.conf, '/') = '\0';
		rmdir(w.conf);
		free(w.conf);
		free(w.log);
		daemon_start("127.0.0.1", NULL);
		snprintf(xff, sizeof(xff), "X-Forwarded-For: 192.0.2.44\r\n");
		for (int i = 0; i < 80; i++) {
			char *headers = xasprintf("%s%s", FORM_URLENC, xff);

			r = http("POST", u, headers, ONE_CLICK);
			ck_assert_msg(r.status == 200, "POST %d: %d", i, r.status);
			free(r.raw);
			free(headers);
		}
		free(u);
	}
	/* GETs are not limited. */
	r = http("GET", "/u/nothing", NULL, NULL);
	ck_assert_int_eq(r.status, 400);
	free(r.raw);
}
END_TEST

/* The database dropped every connection (a restart, a failover): the
 * next clicks still work, on fresh connections, not 503. */
START_TEST(test_database_connections_lost)
{
	const char *people[] = { "ann@example.org", "bob@example.org" };
	struct testhelp_http_reply r;

	daemon_start(NULL, NULL);
	for (int i = 0; i < 24; i++) {          /* every pool thread connects */
		char *u = unsub_link(people[i % 2], "offers");

		r = http("GET", u, NULL, NULL);
		free(r.raw);
		free(u);
	}
	ck_assert_int_ge(count("SELECT count(pg_terminate_backend(pid))"
	    " FROM pg_stat_activity WHERE datname = current_database()"
	    " AND pid <> pg_backend_pid()"), 1);
	for (int i = 0; i < 8; i++) {
		char *u = unsub_link(people[i % 2], "news");

		r = one_click(u);
		ck_assert_msg(r.status == 200, "POST %d: %d %s", i, r.status, r.body);
		free(r.raw);
		free(u);
	}
	assert_status("ann@example.org", "news", "unsubscribed");
	assert_status("bob@example.org", "news", "unsubscribed");
}
END_TEST

/* /metrics on the admin port counts what the public port answered;
 * the public port has no /metrics. */
START_TEST(test_metrics)
{
	char *u = unsub_link("ann@example.org", "news");
	struct testhelp_http_reply r;

	w.admin_port = testhelp_free_port();
	daemon_start(NULL, NULL);
	r = one_click(u);
	ck_assert_int_eq(r.status, 200);
	free(r.raw);
	r = one_click(u);               /* again: no second unsubscribe */
	free(r.raw);
	r = testhelp_http(w.port, "GET", "/u/not-a-token", NULL, NULL);
	ck_assert_int_eq(r.status, 400);
	free(r.raw);
	r = testhelp_http(w.port, "GET", "/metrics", NULL, NULL);
	ck_assert_int_eq(r.status, 404);
	free(r.raw);
	r = testhelp_http(w.admin_port, "GET", "/metrics", NULL, NULL);
	ck_assert_int_eq(r.status, 200);
	testhelp_http_assert_has(&r,
	    "assent_http_requests_total{route=\"unsubscribe\","
	    "status=\"200\"} 2\n");
	testhelp_http_assert_has(&r,
	    "assent_http_requests_total{route=\"unsubscribe\","
	    "status=\"400\"} 1\n");
	testhelp_http_assert_has(&r,
	    "assent_http_requests_total{route=\"other\","
	    "status=\"404\"} 1\n");
	testhelp_http_assert_has(&r,
	    "assent_unsubscribes_total{channel=\"one-click\"} 1\n");
	testhelp_http_assert_has(&r, "assent_confirmations_total 0\n");
	testhelp_http_assert_has(&r,
	    "assent_queue_deliveries{state=\"queued\"} 0\n");
	testhelp_http_assert_has(&r, "# TYPE assent_messages_total counter\n");
	ck_assert(testhelp_http_has_header(&r, "Content-Type",
	    "text/plain; version=0.0.4"));
	free(r.raw);
	free(u);
}
END_TEST

int
main(void)
{
	Suite *s = suite_create("web");
	TCase *tc = tcase_create("links");

	testhelp_require_servers();
	tcase_set_timeout(tc, TEST_TIMEOUT);
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, test_get_changes_nothing);
	tcase_add_test(tc, test_one_click_urlencoded);
	tcase_add_test(tc, test_one_click_multipart);
	tcase_add_test(tc, test_all_lists_token);
	tcase_add_test(tc, test_form_scopes);
	tcase_add_test(tc, test_bad_bodies);
	tcase_add_test(tc, test_bad_tokens);
	tcase_add_test(tc, test_confirm_flow);
	tcase_add_test(tc, test_confirm_expired);
	tcase_add_test(tc, test_confirm_expired_settled);
	tcase_add_test(tc, test_confirm_again_limited);
	tcase_add_test(tc, test_unknown_list_name);
	tcase_add_loop_test(tc, test_forwarded_for, 0,
	    sizeof(xff_cases) / sizeof(xff_cases[0]));
	tcase_add_test(tc, test_retired_key);
	tcase_add_test(tc, test_rotated_while_running);
	tcase_add_test(tc, test_no_keys);
	tcase_add_test(tc, test_rate_limit);
	tcase_add_test(tc, test_metrics);
	tcase_add_test(tc, test_database_connections_lost);
	suite_add_tcase(s, tc);
	return testhelp_run_suite(s);
}

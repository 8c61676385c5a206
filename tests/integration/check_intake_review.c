/*
 * check_intake_review: a hostile reading of bounce and complaint intake
 * (issue 7). Each test states what the issue promises and fails while
 * the code does otherwise:
 *  - a forged ARF that names another delivery's Message-ID changes
 *    nothing (the Message-ID is not signed);
 *  - erasing a person blanks every stored bounce that names the
 *    address, also one attributed to somebody else;
 *  - a refusal that is about our sender (sender filter, sender domain,
 *    reverse DNS) never hard-bounces the recipient;
 *  - `assent inbound` on a pipe exits EX_TEMPFAIL (75, "try again") when
 *    the database fails under it, so the MTA keeps the message;
 *  - a message larger than BOUNCE_INPUT_MAX is never cut on its way to
 *    the reject folder;
 *  - one unreadable entry in a Maildir's new/ does not stop every later
 *    message from being handled.
 * Samples: tests/data/inbound/review-*.eml.
 */
#include <sys/stat.h>
#include <check.h>
#include <dirent.h>
#include <inttypes.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "assent/bounce.h"
#include "assent/conf.h"
#include "assent/intake.h"
#include "assent/keys.h"
#include "assent/lists.h"
#include "assent/rights.h"
#include "assent/suppress.h"
#include "assent/token.h"
#include "assent/xmalloc.h"
#include "testhelp.h"

#define conn testhelp_conn

static struct review {
	char dir[64];
	char *keys_path;
	struct keys *keys;
	struct suppress_ctx gate;
	struct token_signer *signer;
	struct assent_conf conf;
	struct intake_ctx ctx;
} rv;

static long
review_count(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static long
review_count(const char *fmt, ...)
{
	char sql[2048];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(sql, sizeof(sql), fmt, ap);
	va_end(ap);
	return testhelp_query_long(conn, sql);
}

/* ann and bob on news, ann on offers; campaign 1 sent to both now. */
static void
review_setup(void)
{
	struct assent_err err;

	testhelp_fixture_db();
	memset(&rv, 0, sizeof(rv));
	strcpy(rv.dir, "/tmp/assent-review-XXXXXX");
	ck_assert(mkdtemp(rv.dir) != NULL);
	testhelp_keys_make(rv.dir, &rv.keys_path, &rv.keys, &rv.gate, &rv.signer);
	rv.conf.sender_bounce_domain = "bounce.example.org";
	rv.conf.bounce_soft_limit = 3;
	rv.conf.bounce_soft_span = 14 * 86400;
	rv.conf.bounce_soft_suppress_for = 90 * 86400;
	rv.ctx.conf = &rv.conf;
	rv.ctx.signer = rv.signer;
	rv.ctx.added_by = "check_intake_review";
	ck_assert_int_eq(lists_create(conn, "news", NULL, false, &err), 0);
	ck_assert_int_eq(lists_create(conn, "offers", NULL, false, &err), 0);
	testhelp_subscribe(conn, "ann@example.org", NULL, "news");
	testhelp_subscribe(conn, "ann@example.org", NULL, "offers");
	testhelp_subscribe(conn, "bob@example.net", NULL, "news");
	testhelp_sql_exec(conn, "INSERT INTO campaigns (name, state, subject,"
	    " from_address, body_text, scheduled_at, created_by) VALUES ('spring',"
	    " 'sending', 'News', 'news@example.org', 'x', now(), 'tester')");
	testhelp_sql_exec(conn, "INSERT INTO deliveries (campaign_id,"
	    " subscriber_id, list_id, domain, state, sent_at)"
	    " SELECT 1, id, 1, split_part(email_key, '@', 2), 'sent', now()"
	    " FROM subscribers ORDER BY id");
}

static void
review_teardown(void)
{
	token_signer_free(rv.signer);
	keys_free(rv.keys);
	free(rv.keys_path);
	testhelp_fixture_drop();
}

static long long
review_delivery(const char *email)
{
	return review_count("SELECT d.id FROM deliveries d JOIN subscribers s"
	    " ON s.id = d.subscriber_id WHERE s.email = '%s'"
	    " AND d.campaign_id = 1", email);
}

/* A fresh copy of text with every from replaced by to. */
static char *
review_replace(const char *text, const char *from, const char *to)
{
	size_t fl = strlen(from), tl = strlen(to), n = 0;
	const char *p;
	char *out, *o;

	for (p = text; (p = strstr(p, from)) != NULL; p += fl)
		n++;
	out = o = xmalloc(strlen(text) + n * tl + 1);
	for (p = text; *p != '\0';) {
		if (strncmp(p, from, fl) == 0) {
			memcpy(o, to, tl);
			o += tl;
			p += fl;
		} else
			*o++ = *p++;
	}
	*o = '\0';
	return out;
}

static char *
review_sample_text(const char *file)
{
	const char *src = getenv("ASSENT_SRCDIR");
	char *path = xasprintf("%s/tests/data/inbound/%s", src != NULL ? src :
	    ".", file);
	char *text = testhelp_file_read(path);

	ck_assert_msg(text[0] != '\0', "cannot read %s", path);
	free(path);
	return text;
}

/* The sample's text with its b- token replaced by a real one for
 * delivery id (a fresh string). */
static char *
review_signed_text(const char *file, long long id)
{
	struct token_compact t = { .purpose = TOKEN_BOUNCE,
	    .delivery_id = (uint64_t)id, .issued_at = (int64_t)time(NULL) };
	char tok[TOKEN_COMPACT_TEXT_SIZE], from[64], to[64], *text, *out;
	struct bounce_report r;
	struct assent_err err;

	ck_assert_msg(token_compact_make(rv.signer, &t, tok, sizeof(tok),
	    &err) == 0, "%s", err.msg);
	text = review_sample_text(file);
	bounce_parse(text, strlen(text), NULL, &r);
	ck_assert_msg(r.verp.kind == BOUNCE_TOKEN_BOUNCE, "%s: no token", file);
	snprintf(from, sizeof(from), "b-%s", r.verp.token);
	snprintf(to, sizeof(to), "b-%s", tok);
	bounce_report_free(&r);
	out = review_replace(text, from, to);
	free(text);
	return out;
}

static void
review_intake_text(const char *text, struct intake_result *res)
{
	struct bounce_report r;
	struct assent_err err;

	bounce_parse(text, strlen(text), NULL, &r);
	ck_assert_msg(intake_report(conn, &rv.ctx, &r, r.size, res, &err) == 0,
	    "%s", err.msg);
	bounce_report_free(&r);
}

/* ---- forged reports ------------------------------------------------------ */

/* ann (the attacker) read her own message's Message-ID,
 * <c1.dANN.ISSUED@example.org>. Delivery ids are consecutive and a
 * campaign goes out within minutes, so <c1.dBOB.ISSUED@example.org> is
 * a guess away. An ARF anyone can send, naming it, must not unsubscribe
 * bob: nothing in that Message-ID is signed. */
START_TEST(test_arf_forged_message_id)
{
	long long ann = review_delivery("ann@example.org");
	long long bob = review_delivery("bob@example.net");
	char id[128], *text, *forged;
	struct intake_result res;

	ck_assert(bob != ann);
	snprintf(id, sizeof(id), "c1.d%lld.%" PRIx64 "@example.org", bob,
	    (uint64_t)time(NULL));
	text = review_sample_text("review-arf-forged-msgid.eml");
	forged = review_replace(text, "REVIEW-MSGID", id);
	review_intake_text(forged, &res);
	free(forged);
	free(text);
	ck_assert_msg(!res.attributed, "a forged ARF was attributed by %s to "
	    "delivery %lld", res.attributed_by, res.delivery_id);
	ck_assert_int_eq(review_count("SELECT count(*) FROM subscriptions x"
	    " JOIN subscribers s ON s.id = x.subscriber_id"
	    " WHERE s.email = 'bob@example.net' AND x.status = 'unsubscribed'"), 0);
	ck_assert_int_eq(review_count("SELECT count(*) FROM suppressions"
	    " WHERE value = 'bob@example.net'"), 0);
}
END_TEST

/* A DSN attributed to ann by her token names bob as its recipient (the
 * stored row keeps "the recipient address as the report gave it").
 * When bob is erased, no stored bounce may keep his address. */
START_TEST(test_erase_foreign_recipient)
{
	struct audit_actor who = { "tester", "host" };
	long long ann = review_delivery("ann@example.org");
	struct intake_result res;
	struct assent_err err;
	char *text;

	text = review_signed_text("postfix-user-unknown.eml", ann); /* bob@ */
	review_intake_text(text, &res);
	free(text);
	ck_assert(res.attributed);
	ck_assert_int_eq(review_count("SELECT count(*) FROM bounces"
	    " WHERE lower(recipient) = 'bob@example.net'"), 1);
	ck_assert_msg(rights_erase(conn, &rv.gate, "bob@example.net", "asked",
	    &who, NULL, &err) == 0, "%s", err.msg);
	ck_assert_msg(review_count("SELECT count(*) FROM bounces"
	    " WHERE lower(recipient) = 'bob@example.net'"
	    " OR diagnostic ILIKE '%%bob%%'") == 0,
	    "the erased address stays in a bounce attributed to another person");
}
END_TEST

/* ---- sender-side refusals ------------------------------------------------- */

static const struct {
	const char *status;
	int code;
	const char *diagnostic;
} review_sender_side[] = {
	/* Exchange's sender filter: our address, not the mailbox */
	{ "5.1.0", 550, "550 5.1.0 Sender denied as sender's email address is "
	    "on SenderFilterConfig list" },
	{ "5.1.0", 550, "550 5.1.0 <b-x@bounce.example.org>: Sender address "
	    "rejected: undeliverable address" },
	/* no precise status: the words "does not exist" are about us */
	{ "5.0.0", 550, "550 Sender domain bounce.example.org does not exist" },
	{ "", 550, "550 Sender domain bounce.example.org does not exist" },
	/* "does not have a" is about our sending host */
	{ "5.0.0", 550, "550 Client host 192.0.2.10 does not have a PTR record" },
	{ "", 554, "554 Your mail server does not have a valid reverse DNS" },
};

/* bounce_classify() (DSNs) and bounce_classify_reply() (RCPT refusals)
 * must not call these hard: a hard bounce suppresses the recipient at
 * once, for a fault that is the sender's. */
START_TEST(test_sender_side_not_hard)
{
	size_t i = (size_t)_i;
	const char *why = "";
	enum bounce_class c;

	c = bounce_classify(BOUNCE_ACTION_FAILED, review_sender_side[i].status,
	    review_sender_side[i].code, review_sender_side[i].diagnostic, &why);
	ck_assert_msg(c != BOUNCE_CLASS_HARD, "DSN \"%s\" is %s (%s)",
	    review_sender_side[i].diagnostic, bounce_class_name(c), why);
	c = bounce_classify_reply(review_sender_side[i].code,
	    review_sender_side[i].status, review_sender_side[i].diagnostic, &why);
	ck_assert_msg(c != BOUNCE_CLASS_HARD, "RCPT \"%s\" is %s (%s)",
	    review_sender_side[i].diagnostic, bounce_class_name(c), why);
}
END_TEST

static const char *const review_sender_samples[] = {
	"review-exchange-sender-denied.eml",
	"review-sender-domain-words.eml",
	"review-no-ptr.eml",
};

/* The same as whole DSNs through intake: the healthy recipient (ann,
 * whose token it carries) is not suppressed. */
START_TEST(test_sender_side_samples)
{
	const char *file = review_sender_samples[_i];
	long long ann = review_delivery("ann@example.org");
	struct intake_result res;
	char *text = review_signed_text(file, ann);

	review_intake_text(text, &res);
	free(text);
	ck_assert_msg(res.attributed, "%s: not attributed", file);
	ck_assert_msg(res.hard == 0 && res.suppressed == 0, "%s: %ld hard, %ld "
	    "suppressed for a refusal of our sender", file, res.hard,
	    res.suppressed);
	ck_assert_int_eq(review_count("SELECT count(*) FROM suppressions"
	    " WHERE value = 'ann@example.org'"), 0);
}
END_TEST

/* ---- the command ------------------------------------------------------------ */

static char *
review_conf(void)
{
	char *extra, *path;

	extra = xasprintf("tokens = { keys_file = \"%s\"; };\n"
	    "sender = { from = \"news@example.org\"; "
	    "bounce_domain = \"bounce.example.org\"; "
	    "postal_address = \"1 Test Road, Testtown\"; };\n", rv.keys_path);
	path = testhelp_write_conf(testhelp_dsn, testhelp_free_port(), extra);
	free(extra);
	return path;
}

/* The database goes away in the middle of a report (a restart, a
 * failover, an administrator's pg_terminate_backend()). On a pipe
 * transport, anything but EX_TEMPFAIL (75) makes Postfix return the
 * message as undeliverable (a DSN has the null sender: it ends at the
 * postmaster, and assent never sees it again). */
START_TEST(test_cli_database_lost_is_tempfail)
{
	long long ann = review_delivery("ann@example.org");
	char *conf = review_conf(), *text, *out = NULL, *errs = NULL;
	const char *argv[] = { getenv("ASSENT_BIN"), "-c", conf, "inbound",
	    NULL };
	int rc;

	ck_assert_msg(argv[0] != NULL, "ASSENT_BIN is not set");
	testhelp_sql_exec(conn, "CREATE FUNCTION review_drop_conn() RETURNS"
	    " trigger LANGUAGE plpgsql AS $$ BEGIN"
	    " PERFORM pg_terminate_backend(pg_backend_pid()); RETURN NEW; END $$");
	testhelp_sql_exec(conn, "CREATE TRIGGER review_drop_conn BEFORE INSERT"
	    " ON bounces FOR EACH ROW EXECUTE FUNCTION review_drop_conn()");
	text = review_signed_text("postfix-user-unknown.eml", ann);
	rc = testhelp_run(argv, text, &out, &errs);
	ck_assert_int_eq(review_count("SELECT count(*) FROM bounces"), 0);
	ck_assert_msg(rc == 75, "exit %d, not 75 (EX_TEMPFAIL): the MTA bounces "
	    "the message instead of retrying; stderr: %s", rc, errs);
	free(text);
	free(out);
	free(errs);
	free(conf);
}
END_TEST

static char *
review_maildir(const char *name)
{
	char *md = xasprintf("%s/%s", rv.dir, name);
	const char *subs[] = { "", "/new", "/cur", "/tmp" };

	for (size_t i = 0; i < 4; i++) {
		char *d = xasprintf("%s%s", md, subs[i]);

		ck_assert(mkdir(d, 0700) == 0);
		free(d);
	}
	return md;
}

/* Bytes in every regular file of dir (0 when none). */
static long long
review_dir_bytes(const char *dir, int *files_r)
{
	struct dirent *e;
	long long total = 0;
	DIR *d = opendir(dir);

	*files_r = 0;
	if (d == NULL)
		return 0;
	while ((e = readdir(d)) != NULL) {
		char *p = xasprintf("%s/%s", dir, e->d_name);
		struct stat st;

		if (e->d_name[0] != '.' && stat(p, &st) == 0 &&
		    S_ISREG(st.st_mode)) {
			total += st.st_size;
			(*files_r)++;
		}
		free(p);
	}
	closedir(d);
	return total;
}

/* An 11 MB message that is no bounce goes to the reject folder: whole,
 * not its first 10 MB (the Maildir copy is unlinked afterwards). */
START_TEST(test_cli_huge_message_kept_whole)
{
	char *conf = review_conf(), *md = review_maildir("huge");
	char *reject = xasprintf("%s/reject", rv.dir);
	char *path = xasprintf("%s/new/1732100000.1.review", md), *newdir;
	const char *argv[] = { getenv("ASSENT_BIN"), "-c", conf, "inbound",
	    "--maildir", md, "--reject", reject, NULL };
	char line[101];
	long long size, kept_new, kept_reject;
	int files_new, files_reject, rc;
	FILE *f;

	ck_assert_msg(argv[0] != NULL, "ASSENT_BIN is not set");
	ck_assert(mkdir(reject, 0700) == 0);
	ck_assert((f = fopen(path, "w")) != NULL);
	fputs("From: someone@example.com\nTo: b-nope@bounce.example.org\n"
	    "Subject: a very large attachment\n\n", f);
	memset(line, 'x', 99);
	line[99] = '\n';
	line[100] = '\0';
	for (int i = 0; i < 11 * 1024 * 1024 / 100; i++)
		fputs(line, f);
	ck_assert(fclose(f) == 0);
	newdir = xasprintf("%s/new", md);
	size = review_dir_bytes(newdir, &files_new);
	ck_assert(size > BOUNCE_INPUT_MAX);
	rc = testhelp_run(argv, NULL, NULL, NULL);
	ck_assert_int_eq(rc, 0);
	kept_new = review_dir_bytes(newdir, &files_new);
	kept_reject = review_dir_bytes(reject, &files_reject);
	ck_assert_msg(kept_new == size || kept_reject == size,
	    "a %lld-byte message: %lld bytes left in new/ (%d files), %lld in "
	    "the reject folder (%d files): the rest is lost", size, kept_new,
	    files_new, kept_reject, files_reject);
	free(newdir);
	free(path);
	free(reject);
	free(md);
	free(conf);
}
END_TEST

/* One entry of new/ that cannot be read (here a directory; an EIO or a
 * file being replaced does the same) must not stop every later message
 * from being handled, run after run. */
START_TEST(test_cli_maildir_one_bad_entry)
{
	char *conf = review_conf(), *md = review_maildir("bad");
	char *bad = xasprintf("%s/new/1732100000.0.review", md);
	char *good = xasprintf("%s/new/1732100001.1.review", md);
	char *sample = review_sample_text("autoreply-x-autoreply.eml");
	const char *argv[] = { getenv("ASSENT_BIN"), "-c", conf, "inbound",
	    "--maildir", md, NULL };
	char *errs = NULL, *curdir;
	int files_cur, rc;

	ck_assert_msg(argv[0] != NULL, "ASSENT_BIN is not set");
	ck_assert(mkdir(bad, 0700) == 0);
	testhelp_file_write(good, sample);
	rc = testhelp_run(argv, NULL, NULL, &errs);
	curdir = xasprintf("%s/cur", md);
	review_dir_bytes(curdir, &files_cur);
	free(curdir);
	ck_assert_msg(files_cur == 1, "exit %d, %d messages handled; stderr: %s",
	    rc, files_cur, errs);
	free(errs);
	free(sample);
	free(good);
	free(bad);
	free(md);
	free(conf);
}
END_TEST

static Suite *
review_suite(void)
{
	Suite *s = suite_create("intake_review");
	TCase *db = tcase_create("forged");
	TCase *pure = tcase_create("classes");
	TCase *cli = tcase_create("command");

	tcase_add_checked_fixture(db, review_setup, review_teardown);
	tcase_set_timeout(db, 60);
	tcase_add_test(db, test_arf_forged_message_id);
	tcase_add_test(db, test_erase_foreign_recipient);
	tcase_add_loop_test(db, test_sender_side_samples, 0,
	    sizeof(review_sender_samples) / sizeof(review_sender_samples[0]));
	suite_add_tcase(s, db);
	tcase_add_loop_test(pure, test_sender_side_not_hard, 0,
	    sizeof(review_sender_side) / sizeof(review_sender_side[0]));
	suite_add_tcase(s, pure);
	tcase_add_checked_fixture(cli, review_setup, review_teardown);
	tcase_set_timeout(cli, 120);
	tcase_add_test(cli, test_cli_database_lost_is_tempfail);
	tcase_add_test(cli, test_cli_huge_message_kept_whole);
	tcase_add_test(cli, test_cli_maildir_one_bad_entry);
	suite_add_tcase(s, cli);
	return s;
}

int
main(void)
{
	testhelp_require_servers();
	signal(SIGPIPE, SIG_IGN);
	return testhelp_run_suite(review_suite());
}

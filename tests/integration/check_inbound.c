/*
 * check_inbound: mail to the bounce domain. Reading a message's header
 * (table-driven, no server), finding the token in the recipient, and the
 * mailto unsubscribe end to end: through the library and through
 * `assent inbound` with the message on standard input.
 */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "assent/db.h"
#include "assent/inbound.h"
#include "assent/keys.h"
#include "assent/lists.h"
#include "assent/optout.h"
#include "assent/subs.h"
#include "assent/xmalloc.h"
#include "testhelp.h"

#define conn testhelp_conn

/* ---- reading --------------------------------------------------------------- */

static const struct read_case {
	const char *text;
	const char *delivered_to, *x_original_to, *to;
	const char *why;        /* NULL: read; else part of the error */
} read_cases[] = {
	{ "Delivered-To: u-abc@b.example\r\nTo: x@y.example\r\n\r\nbody\r\n",
	  "u-abc@b.example", "", "x@y.example", NULL },
	{ "To: a@b.example\nX-Original-To: c@d.example\n\nbody\n",
	  "", "c@d.example", "a@b.example", NULL },
	{ "From sender@x Tue Nov 22 10:00:00 2026\nTo: a@b.example\n\n",
	  "", "", "a@b.example", NULL },
	{ "TO:   Name\r\n <a@b.example>  \r\n\r\n", "", "", "Name <a@b.example>", NULL },
	{ "To: first@b.example\nTo: second@b.example\n\n", "", "", "first@b.example",
	  NULL },
	{ "Subject: no end of header", "", "", "", NULL },
	{ "", "", "", "", NULL },
	{ " folded first\n\n", NULL, NULL, NULL, "line 1 continues no header" },
	{ "To: a@b\nnot a header\n\n", NULL, NULL, NULL,
	  "line 2 is not a header" },
	{ "To: a\rb@c\n\n", NULL, NULL, NULL, "line 1 holds a bare CR" },
	{ "Bad Name: x\n\n", NULL, NULL, NULL, "line 1 is not a header" },
	{ ": x\n\n", NULL, NULL, NULL, "line 1 is not a header" },
};

START_TEST(test_read_headers)
{
	const struct read_case *c = &read_cases[_i];
	struct inbound_headers h;
	struct assent_err err;
	FILE *f = fmemopen((void *)c->text, strlen(c->text), "r");
	int rc;

	if (strlen(c->text) == 0) {
		fclose(f);
		f = fopen("/dev/null", "r");
	}
	ck_assert_ptr_nonnull(f);
	rc = inbound_read_headers(f, &h, &err);
	fclose(f);
	if (c->why != NULL) {
		ck_assert_int_eq(rc, -1);
		ck_assert_int_eq(err.code, EX_DATAERR);
		ck_assert_msg(strstr(err.msg, c->why) != NULL, "%s", err.msg);
		return;
	}
	ck_assert_msg(rc == 0, "%s", err.msg);
	ck_assert_str_eq(h.delivered_to, c->delivered_to);
	ck_assert_str_eq(h.x_original_to, c->x_original_to);
	ck_assert_str_eq(h.to, c->to);
}
END_TEST

/* A NUL byte, and a header over the limit. */
START_TEST(test_read_refuses_nul_and_size)
{
	static const char nul[] = "To: a@b\0c\n\n";
	struct inbound_headers h;
	struct assent_err err;
	size_t big = INBOUND_HEADER_MAX + 100;
	char *text = xmalloc(big + 1);
	FILE *f = fmemopen((void *)nul, sizeof(nul) - 1, "r");

	ck_assert_int_eq(inbound_read_headers(f, &h, &err), -1);
	ck_assert_ptr_nonnull(strstr(err.msg, "line 1 holds a NUL byte"));
	fclose(f);
	/* one line too long: refused before it is read whole */
	memset(text, 'x', big);
	memcpy(text, "X-Long: ", 8);
	text[big] = '\0';
	f = fmemopen(text, big, "r");
	ck_assert_int_eq(inbound_read_headers(f, &h, &err), -1);
	ck_assert_msg(strstr(err.msg, "line 1 is longer than 65536 bytes") != NULL,
	    "%s", err.msg);
	fclose(f);
	/* lines within the limit, a header section over it */
	for (size_t at = 60000; at < big; at += 60000)
		memcpy(text + at - 3, "\nX:", 3);
	f = fmemopen(text, big, "r");
	ck_assert_int_eq(inbound_read_headers(f, &h, &err), -1);
	ck_assert_msg(strstr(err.msg, "message header longer than") != NULL, "%s",
	    err.msg);
	fclose(f);
	free(text);
}
END_TEST

/* ---- the mailto unsubscribe -------------------------------------------------- */

static char *keys_path;
static struct keys *keys;
static struct token_signer *signer;

static void
setup_db(void)
{
	static const struct ledger_evidence ev = { .source = "check_inbound",
	    .operator_name = "tester" };
	struct subs_request req = { .email = "ann@example.org", .list = "news",
	    .channel = "cli", .evidence = &ev };
	struct assent_err err;
	char status[16], dir[] = "/tmp/assent-inbound-XXXXXX";
	static const char *const sql[] = {
		"INSERT INTO campaigns (name, state, subject, from_address, body_text,"
		" scheduled_at, created_by) VALUES ('spring', 'draft', 'News',"
		" 'news@example.org', 'x', now(), 'tester')",
		"INSERT INTO campaign_lists VALUES (1, 1)",
		"UPDATE campaigns SET state = 'sending'",
		"INSERT INTO deliveries (campaign_id, subscriber_id, list_id, domain)"
		" SELECT 1, id, 1, 'example.org' FROM subscribers",
	};

	testhelp_fixture_db();
	ck_assert_int_eq(lists_create(conn, "news", NULL, false, &err), 0);
	ck_assert_int_eq(lists_create(conn, "offers", NULL, false, &err), 0);
	ck_assert_msg(subs_add(conn, &req, status, NULL, &err) == 0, "%s", err.msg);
	req.list = "offers";
	ck_assert_msg(subs_add(conn, &req, status, NULL, &err) == 0, "%s", err.msg);
	for (size_t i = 0; i < sizeof(sql) / sizeof(sql[0]); i++)
		ck_assert_msg(db_exec(conn, NULL, &err, sql[i], 0, NULL) == 0, "%s",
		    err.msg);
	ck_assert_ptr_nonnull(mkdtemp(dir));
	testhelp_keys_make(dir, &keys_path, &keys, NULL, &signer);
}

static void
teardown_db(void)
{
	token_signer_free(signer);
	keys_free(keys);
	free(keys_path);
	testhelp_fixture_drop();
}

static void
make_token(enum token_purpose p, uint64_t delivery, char *out)
{
	struct token_compact t = { .purpose = p, .delivery_id = delivery,
	    .issued_at = (int64_t)time(NULL) };
	struct assent_err err;

	ck_assert_int_eq(token_compact_make(signer, &t, out,
	    TOKEN_COMPACT_TEXT_SIZE, &err), 0);
}

START_TEST(test_mailto_unsubscribe)
{
	char token[TOKEN_COMPACT_TEXT_SIZE];
	struct optout_result r;
	struct assent_err err;
	time_t now = time(NULL);

	make_token(TOKEN_UNSUBSCRIBE, 1, token);
	ck_assert_msg(optout_mailto(conn, signer, token, now, &r, &err) == 0, "%s",
	    err.msg);
	ck_assert(r.changed);
	ck_assert_str_eq(r.list_name, "news");
	ck_assert_int_eq(testhelp_query_long(conn, "SELECT count(*) FROM ledger"
	    " WHERE action = 'unsubscribe' AND channel = 'mailto'"
	    " AND list_id = 1"), 1);
	ck_assert_int_eq(testhelp_query_long(conn, "SELECT count(*) FROM"
	    " subscriptions WHERE status = 'confirmed'"), 1);      /* offers */
	ck_assert_int_eq(testhelp_query_long(conn, "SELECT count(*) FROM deliveries"
	    " WHERE unsubscribed_at IS NOT NULL"), 1);
	ck_assert_int_eq(optout_mailto(conn, signer, token, now, &r, &err), 0);
	ck_assert(!r.changed);
	ck_assert_int_eq(testhelp_query_long(conn, "SELECT count(*) FROM ledger"
	    " WHERE action = 'unsubscribe'"), 1);
	/* a bounce token, a forged one, an unknown delivery: no such user */
	make_token(TOKEN_BOUNCE, 1, token);
	ck_assert_int_eq(optout_mailto(conn, signer, token, now, &r, &err), -1);
	ck_assert_int_eq(err.code, EX_NOUSER);
	make_token(TOKEN_UNSUBSCRIBE, 1, token);
	token[5] = token[5] == 'a' ? 'b' : 'a';
	ck_assert_int_eq(optout_mailto(conn, signer, token, now, &r, &err), -1);
	ck_assert_int_eq(err.code, EX_NOUSER);
	make_token(TOKEN_UNSUBSCRIBE, 99, token);
	ck_assert_int_eq(optout_mailto(conn, signer, token, now, &r, &err), -1);
	ck_assert_int_eq(err.code, EX_NOUSER);
	ck_assert_int_eq(testhelp_query_long(conn, "SELECT count(*) FROM ledger"
	    " WHERE action = 'unsubscribe'"), 1);
}
END_TEST

/* As an MTA runs it: the message on standard input. */
START_TEST(test_assent_inbound)
{
	char token[TOKEN_COMPACT_TEXT_SIZE], *conf, *msg, *out, *errs;
	char *extra = xasprintf("tokens = { keys_file = \"%s\"; };\n"
	    "sender = { bounce_domain = \"bounce.example.org\"; };\n", keys_path);
	const char *bin = getenv("ASSENT_BIN");

	ck_assert_ptr_nonnull(bin);
	conf = testhelp_write_conf(testhelp_dsn, testhelp_free_port(), extra);
	make_token(TOKEN_UNSUBSCRIBE, 1, token);
	msg = xasprintf("From: Ann <ann@example.org>\r\nTo: <u-%s@bounce.example.org>\r\n"
	    "Subject: unsubscribe\r\n\r\nplease\r\n", token);
	{
		const char *argv[] = { bin, "-c", conf, "inbound", NULL };
		const char *given[] = { bin, "-c", conf, "inbound", "--recipient",
		    "nobody@bounce.example.org", NULL };

		ck_assert_int_eq(testhelp_run(argv, msg, &out, &errs), 0);
		ck_assert_msg(strstr(out, "unsubscribed from list news") != NULL,
		    "%s%s", out, errs);
		free(out);
		free(errs);
		ck_assert_int_eq(testhelp_run(argv, msg, &out, &errs), 0);
		ck_assert_msg(strstr(out, "already unsubscribed") != NULL, "%s", out);
		free(out);
		free(errs);
		/* --recipient wins over the headers: not ours */
		ck_assert_int_eq(testhelp_run(given, msg, &out, &errs), EX_NOUSER);
		ck_assert_msg(strstr(errs, "no such recipient") != NULL, "%s", errs);
		free(out);
		free(errs);
		/* a valid token at a domain that merely starts like ours */
		{
			char *evil = xasprintf("u-%s@bounce.example.org.evil", token);
			const char *at_evil[] = { bin, "-c", conf, "inbound",
			    "--recipient", evil, NULL };
			char *m2 = xasprintf("To: <%s>\r\nSubject: x\r\n\r\nx\r\n",
			    evil);

			ck_assert_int_eq(testhelp_run(at_evil, m2, &out, &errs),
			    EX_NOUSER);
			free(out);
			free(errs);
			free(m2);
			free(evil);
		}
		ck_assert_int_eq(testhelp_run(argv, "To: a@b\nnot a header\n\n",
		    &out, &errs), EX_DATAERR);
		ck_assert_msg(strstr(errs, "line 2 is not a header") != NULL, "%s", errs);
		free(out);
		free(errs);
	}
	ck_assert_int_eq(testhelp_query_long(conn, "SELECT count(*) FROM ledger"
	    " WHERE action = 'unsubscribe' AND channel = 'mailto'"), 1);
	free(msg);
	free(extra);
	free(conf);
}
END_TEST

int
main(void)
{
	Suite *s = suite_create("inbound");
	TCase *read = tcase_create("read");
	TCase *db = tcase_create("mailto");

	testhelp_require_servers();
	tcase_add_loop_test(read, test_read_headers, 0,
	    sizeof(read_cases) / sizeof(read_cases[0]));
	tcase_add_test(read, test_read_refuses_nul_and_size);
	suite_add_tcase(s, read);
	tcase_add_checked_fixture(db, setup_db, teardown_db);
	tcase_add_test(db, test_mailto_unsubscribe);
	tcase_add_test(db, test_assent_inbound);
	suite_add_tcase(s, db);
	return testhelp_run_suite(s);
}

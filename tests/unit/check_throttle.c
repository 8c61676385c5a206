/* check_throttle: spec parsing, the global and per-domain token buckets
 * on a driven clock, connection slots, the blocked list, reconfiguring,
 * and real time with threads (src/lib/throttle.c). */
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#include <check.h>
#include "testhelp.h"

#include "assent/buf.h"
#include "assent/err.h"
#include "assent/db.h"
#include "assent/throttle.h"

#define EXPECTED "expected DOMAIN=CONNECTIONS/PER_MINUTE"
#define NOT_LDH "a domain holds only letters, digits, '-' and '.' " \
	"(A-labels for international names)"
#define BAD_CONN "CONNECTIONS must be a whole number from 0 to 100000"
#define BAD_PM "PER_MINUTE must be a whole number from 0 to 100000"

static struct throttle *
new_throttle(int rate, const char *spec)
{
	struct assent_err err;
	struct throttle *t = NULL;

	ck_assert_msg(throttle_new(rate, spec, &t, &err) == 0, "%s", err.msg);
	ck_assert_ptr_nonnull(t);
	return t;
}

static void
configure(struct throttle *t, int rate, const char *spec)
{
	struct assent_err err;

	ck_assert_msg(throttle_configure(t, rate, spec, &err) == 0, "%s",
	    err.msg);
}

static void
blocked_join(const char *domain, void *arg)
{
	struct buf *b = arg;

	if (b->len > 1)
		buf_add_str(b, ",");
	buf_add_str(b, domain);
}

/* The blocked domains as "{a,b}". */
static void
blocked_text(struct throttle *t, double now, struct buf *b)
{
	buf_reset(b);
	buf_add_str(b, "{");
	throttle_blocked(t, now, blocked_join, b);
	buf_add_str(b, "}");
}

static void
assert_blocked(struct throttle *t, double now, const char *want)
{
	struct buf b;

	buf_init(&b);
	blocked_text(t, now, &b);
	ck_assert_str_eq(b.data, want);
	buf_free(&b);
}

/* Admit n messages for domain in s at now; how many went in. */
static int
admit_n(struct throttle *t, struct throttle_session *s, const char *domain,
    double now, int n)
{
	int i, in = 0;

	for (i = 0; i < n; i++)
		in += throttle_admit(t, s, domain, now);
	return in;
}

/* Take global tokens at now until refused; how many. */
static int
drain(struct throttle *t, double now)
{
	int n = 0;

	while (throttle_try_pace(t, now, NULL))
		n++;
	return n;
}

/* A string of n copies of c. */
static char *
repeat(char c, size_t n)
{
	char *s = malloc(n + 1);

	ck_assert_ptr_nonnull(s);
	memset(s, c, n);
	s[n] = '\0';
	return s;
}

/* ---- spec parsing ---------------------------------------------------- */

static const char *const good_specs[] = {
	"",
	"   ",
	"\t \t",
	"gmail.com=4/600",
	"gmail.com=4/600, outlook.com=2/300, *=8/0",
	"  gmail.com = 4 / 600 ,outlook.com=2/300 ,\t*\t=\t8\t/\t0\t",
	"*=0/0",
	"a.b=100000/100000",
	"a.b=0/0",
	"007.example=007/00",
	"xn--bcher-kva.example=1/1",
	"a-b.c-d.e9=1/1",
	"mail.example.co.uk=3/30, example.co.uk=1/1",
	/* a 63-character label */
	"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa.b=1/1",
};

START_TEST(test_spec_good)
{
	struct assent_err err;
	struct throttle *t = NULL;

	err_clear(&err);
	ck_assert_msg(throttle_check_spec(good_specs[_i], &err) == 0,
	    "\"%s\": %s", good_specs[_i], err.msg);
	ck_assert_int_eq(throttle_new(7, good_specs[_i], &t, &err), 0);
	throttle_free(t);
}
END_TEST

struct bad_spec {
	const char *spec;
	const char *msg;
};

static const struct bad_spec bad_specs[] = {
	{ "outlook.com=2", "domain limit 1 (\"outlook.com=2\"): " EXPECTED },
	{ "gmail.com=4/600, outlook.com=2",
	  "domain limit 2 (\"outlook.com=2\"): " EXPECTED },
	{ "gmail.com", "domain limit 1 (\"gmail.com\"): " EXPECTED },
	{ "gmail.com/4=600", "domain limit 1 (\"gmail.com/4=600\"): "
	  EXPECTED },
	{ "=1/2", "domain limit 1 (\"=1/2\"): " EXPECTED },
	{ " = 1 / 2", "domain limit 1 (\"= 1 / 2\"): " EXPECTED },
	{ "a.com=/2", "domain limit 1 (\"a.com=/2\"): " EXPECTED },
	{ "a.com=1/", "domain limit 1 (\"a.com=1/\"): " EXPECTED },
	{ "a.com=1/ ", "domain limit 1 (\"a.com=1/\"): " EXPECTED },
	{ "a.com=1/2,", "domain limit 2 (\"\"): empty item (a stray comma?)" },
	{ ",a.com=1/2", "domain limit 1 (\"\"): empty item (a stray comma?)" },
	{ "a.com=1/2, ,b.com=1/2",
	  "domain limit 2 (\"\"): empty item (a stray comma?)" },
	{ ",", "domain limit 1 (\"\"): empty item (a stray comma?)" },
	{ "Gmail.com=1/2",
	  "domain limit 1 (\"Gmail.com=1/2\"): write the domain in lower case" },
	{ "a.com=1/1, GMAIL.COM=1/2", "domain limit 2 (\"GMAIL.COM=1/2\"): "
	  "write the domain in lower case" },
	{ "gmail=1/2",
	  "domain limit 1 (\"gmail=1/2\"): the domain has no dot: write the "
	  "whole domain name" },
	{ "a..com=1/2",
	  "domain limit 1 (\"a..com=1/2\"): the domain has an empty label" },
	{ ".a.com=1/2",
	  "domain limit 1 (\".a.com=1/2\"): the domain has an empty label" },
	{ "a.com.=1/2",
	  "domain limit 1 (\"a.com.=1/2\"): the domain has an empty label" },
	{ "-a.com=1/2", "domain limit 1 (\"-a.com=1/2\"): a label of the "
	  "domain starts or ends with '-'" },
	{ "a-.com=1/2", "domain limit 1 (\"a-.com=1/2\"): a label of the "
	  "domain starts or ends with '-'" },
	{ "a.-com=1/2", "domain limit 1 (\"a.-com=1/2\"): a label of the "
	  "domain starts or ends with '-'" },
	{ "a_b.com=1/2", "domain limit 1 (\"a_b.com=1/2\"): " NOT_LDH },
	{ "gm ail.com=1/2", "domain limit 1 (\"gm ail.com=1/2\"): " NOT_LDH },
	{ "b\xc3\xbc" "cher.de=1/2",
	  "domain limit 1 (\"b\xc3\xbc" "cher.de=1/2\"): " NOT_LDH },
	{ "*.com=1/2", "domain limit 1 (\"*.com=1/2\"): " NOT_LDH },
	{ "**=1/2", "domain limit 1 (\"**=1/2\"): " NOT_LDH },
	{ "a\"b.com=1/2", "domain limit 1 (\"a\\\"b.com=1/2\"): " NOT_LDH },
	{ "a.com=x/2", "domain limit 1 (\"a.com=x/2\"): " BAD_CONN },
	{ "a.com=-1/2", "domain limit 1 (\"a.com=-1/2\"): " BAD_CONN },
	{ "a.com=+1/2", "domain limit 1 (\"a.com=+1/2\"): " BAD_CONN },
	{ "a.com=1 2/3", "domain limit 1 (\"a.com=1 2/3\"): " BAD_CONN },
	{ "a.com=1=2/3", "domain limit 1 (\"a.com=1=2/3\"): " BAD_CONN },
	{ "a.com=100001/2", "domain limit 1 (\"a.com=100001/2\"): " BAD_CONN },
	{ "a.com=0x10/2", "domain limit 1 (\"a.com=0x10/2\"): " BAD_CONN },
	{ "a.com=1/y", "domain limit 1 (\"a.com=1/y\"): " BAD_PM },
	{ "a.com=1/2/3", "domain limit 1 (\"a.com=1/2/3\"): " BAD_PM },
	{ "a.com=1/1.5", "domain limit 1 (\"a.com=1/1.5\"): " BAD_PM },
	{ "a.com=1/100001", "domain limit 1 (\"a.com=1/100001\"): " BAD_PM },
	{ "a.com=1/99999999999999999999999",
	  "domain limit 1 (\"a.com=1/99999999999999999999999\"): " BAD_PM },
	{ "a.com=1/2;b.com=1/2",
	  "domain limit 1 (\"a.com=1/2;b.com=1/2\"): " BAD_PM },
	{ "a.com=1/2, b.com=1/1, a.com=3/4", "domain limit 3 (\"a.com=3/4\"): "
	  "a.com is already limited by domain limit 1" },
	{ "*=1/2, b.com=1/1, * = 3/4", "domain limit 3 (\"* = 3/4\"): "
	  "the default \"*\" was already given by domain limit 1" },
};

START_TEST(test_spec_bad)
{
	const struct bad_spec *c = &bad_specs[_i];
	struct assent_err err;
	struct throttle *t = NULL;

	err_clear(&err);
	ck_assert_int_eq(throttle_check_spec(c->spec, &err), -1);
	ck_assert_int_eq(err.code, EX_CONFIG);
	ck_assert_str_eq(err.msg, c->msg);

	/* throttle_new() refuses it the same way and makes nothing */
	err_clear(&err);
	ck_assert_int_eq(throttle_new(0, c->spec, &t, &err), -1);
	ck_assert_ptr_null(t);
	ck_assert_int_eq(err.code, EX_CONFIG);
	ck_assert_str_eq(err.msg, c->msg);
}
END_TEST

/* Domain lengths: 253 characters are fine, 254 are not; a label of 64
 * is refused; a long item is shortened in the message. */
START_TEST(test_spec_lengths)
{
	struct assent_err err;
	char *label64 = repeat('a', 64), *long_label, spec[600];

	/* 4 labels of 63 and a dot between: 255; cut to the length */
	long_label = repeat('b', 63);
	snprintf(spec, sizeof(spec), "%s.%s.%s.%.61s=1/1", long_label,
	    long_label, long_label, long_label);
	ck_assert_int_eq(strchr(spec, '=') - spec, 253);
	ck_assert_msg(throttle_check_spec(spec, &err) == 0, "%s", err.msg);

	snprintf(spec, sizeof(spec), "%s.%s.%s.%.62s=1/1", long_label,
	    long_label, long_label, long_label);
	ck_assert_int_eq(throttle_check_spec(spec, &err), -1);
	ck_assert_int_eq(err.code, EX_CONFIG);
	ck_assert_msg(strncmp(err.msg, "domain limit 1 (\"bbb", 20) == 0,
	    "%s", err.msg);
	ck_assert_msg(strstr(err.msg, "...\"): the domain is longer than 253 "
	    "characters") != NULL, "%s", err.msg);
	ck_assert_uint_lt(strlen(err.msg), 200);

	snprintf(spec, sizeof(spec), "%s.com=1/1", label64);
	ck_assert_int_eq(throttle_check_spec(spec, &err), -1);
	ck_assert_msg(strstr(err.msg, "\"): a label of the domain is longer "
	    "than 63 characters") != NULL, "%s", err.msg);
	free(label64);
	free(long_label);
}
END_TEST

/* THROTTLE_MAX_DOMAINS items are fine, one more is not. */
START_TEST(test_spec_max_items)
{
	struct assent_err err;
	struct buf spec;
	char item[64], want[128];
	int i;

	buf_init(&spec);
	for (i = 1; i <= THROTTLE_MAX_DOMAINS + 1; i++) {
		snprintf(item, sizeof(item), "%sd%d.example=1/1",
		    i > 1 ? ", " : "", i);
		buf_add_str(&spec, item);
		if (i == THROTTLE_MAX_DOMAINS)
			ck_assert_msg(throttle_check_spec(spec.data, &err) == 0,
			    "%s", err.msg);
	}
	ck_assert_int_eq(throttle_check_spec(spec.data, &err), -1);
	snprintf(want, sizeof(want), "domain limit %d (\"d%d.example=1/1\"): "
	    "more than %d domain limits", THROTTLE_MAX_DOMAINS + 1,
	    THROTTLE_MAX_DOMAINS + 1, THROTTLE_MAX_DOMAINS);
	ck_assert_str_eq(err.msg, want);
	buf_free(&spec);
}
END_TEST

START_TEST(test_bad_rate)
{
	struct assent_err err;
	struct throttle *t = NULL;

	ck_assert_int_eq(throttle_new(-1, "", &t, &err), -1);
	ck_assert_ptr_null(t);
	ck_assert_int_eq(err.code, EX_CONFIG);
	ck_assert_str_eq(err.msg, "sending rate -1 is negative");
}
END_TEST

/* ---- the global rate, driven clock ----------------------------------- */

START_TEST(test_rate_driven)
{
	struct throttle *t = new_throttle(10, "");
	double wait = -1;
	int i;

	for (i = 0; i < 10; i++)
		ck_assert_msg(throttle_try_pace(t, 0, &wait), "token %d", i);
	ck_assert_double_eq(wait, -1);          /* untouched on success */
	ck_assert(!throttle_try_pace(t, 0, &wait));
	ck_assert_double_eq_tol(wait, 0.1, 1e-6);
	ck_assert(!throttle_try_pace(t, 0.05, &wait));
	ck_assert_double_eq_tol(wait, 0.05, 1e-6);
	ck_assert(!throttle_try_pace(t, 0.099, NULL));
	ck_assert(throttle_try_pace(t, 0.1, &wait));
	ck_assert(!throttle_try_pace(t, 0.1, &wait));
	ck_assert_double_eq_tol(wait, 0.1, 1e-6);
	ck_assert(throttle_try_pace(t, 0.2, NULL));
	ck_assert(throttle_try_pace(t, 0.35, NULL));
	/* half a token left over from 0.35 */
	ck_assert(!throttle_try_pace(t, 0.35, &wait));
	ck_assert_double_eq_tol(wait, 0.05, 1e-6);

	/* a long pause refills one second's worth, not more */
	ck_assert_int_eq(drain(t, 100), 10);
	throttle_free(t);
}
END_TEST

/* At rate 1 the bucket holds one token (one second's worth). */
START_TEST(test_rate_one)
{
	struct throttle *t = new_throttle(1, "");
	double wait;

	ck_assert(throttle_try_pace(t, 0, NULL));
	ck_assert(!throttle_try_pace(t, 0, &wait));
	ck_assert_double_eq_tol(wait, 1, 1e-6);
	ck_assert(!throttle_try_pace(t, 0.5, NULL));
	ck_assert(throttle_try_pace(t, 1, NULL));
	ck_assert(throttle_try_pace(t, 50, NULL));
	ck_assert(!throttle_try_pace(t, 50, NULL));
	throttle_free(t);
}
END_TEST

START_TEST(test_rate_zero)
{
	struct throttle *t = new_throttle(0, "");
	double wait = -1, start;
	int i;

	for (i = 0; i < 100000; i++)
		ck_assert(throttle_try_pace(t, 0, &wait));
	ck_assert_double_eq(wait, -1);          /* untouched */
	start = throttle_now();
	for (i = 0; i < 100000; i++)
		throttle_pace(t);
	ck_assert_double_lt(throttle_now() - start, 1.0);
	throttle_free(t);
}
END_TEST

START_TEST(test_now)
{
	double a = throttle_now(), b = throttle_now();

	ck_assert_double_ge(a, 0);
	ck_assert_double_ge(b, a);
}
END_TEST

/* ---- per-domain limits, driven clock --------------------------------- */

/* 600 a minute: 600 at once, then one every 0.1 s, for every session. */
START_TEST(test_per_minute)
{
	struct throttle *t = new_throttle(0, "a.example=0/600");
	struct throttle_session *s = throttle_session_begin(t),
	    *s2 = throttle_session_begin(t);

	ck_assert_int_eq(admit_n(t, s, "a.example", 0, 601), 600);
	ck_assert(!throttle_admit(t, s2, "a.example", 0));
	ck_assert(!throttle_admit(t, s, "a.example", 0.05));
	ck_assert(throttle_admit(t, s, "a.example", 0.1));
	ck_assert(!throttle_admit(t, s, "a.example", 0.1));
	ck_assert(!throttle_admit(t, s2, "a.example", 0.15));
	ck_assert(throttle_admit(t, s2, "a.example", 0.2));
	ck_assert_int_eq(admit_n(t, s2, "a.example", 1.0, 100), 8);
	/* other domains are not affected */
	ck_assert_int_eq(admit_n(t, s, "b.example", 1.0, 1000), 1000);
	/* a minute refills the bucket, and no more */
	ck_assert_int_eq(admit_n(t, s, "a.example", 1000, 700), 600);
	throttle_session_end(t, s);
	throttle_session_end(t, s2);
	throttle_free(t);
}
END_TEST

/* 2 sessions may hold a.example; the third waits until one ends. */
START_TEST(test_slots)
{
	struct throttle *t = new_throttle(0, "a.example=2/0");
	struct throttle_session *s1, *s2, *s3, *s4;

	s1 = throttle_session_begin(t);
	s2 = throttle_session_begin(t);
	s3 = throttle_session_begin(t);
	s4 = throttle_session_begin(t);
	ck_assert(throttle_admit(t, s1, "a.example", 0));
	ck_assert(throttle_admit(t, s2, "a.example", 0));
	ck_assert(!throttle_admit(t, s3, "a.example", 0));
	/* a session that holds a slot is not refused for it */
	ck_assert_int_eq(admit_n(t, s1, "a.example", 0, 50), 50);
	ck_assert_int_eq(admit_n(t, s2, "A.Example", 0, 50), 50);
	ck_assert(!throttle_admit(t, s3, "a.example", 1));
	/* other domains are not counted */
	ck_assert(throttle_admit(t, s3, "c.example", 1));
	throttle_session_end(t, s1);
	ck_assert(throttle_admit(t, s3, "a.example", 1));
	ck_assert(!throttle_admit(t, s4, "a.example", 1));
	throttle_session_end(t, s2);
	throttle_session_end(t, s3);
	ck_assert(throttle_admit(t, s4, "a.example", 1));
	throttle_session_end(t, s4);
	throttle_session_end(t, NULL);
	throttle_free(t);
}
END_TEST

/* "*" limits every domain not named, each on its own; named ones
 * override it; case does not matter at admit time. */
START_TEST(test_fallback)
{
	struct throttle *t = new_throttle(0, "*=1/0, big.example=3/0");
	struct throttle_session *s[4];
	int i;

	for (i = 0; i < 4; i++)
		s[i] = throttle_session_begin(t);
	ck_assert(throttle_admit(t, s[0], "x.example", 0));
	ck_assert(!throttle_admit(t, s[1], "x.example", 0));
	ck_assert(!throttle_admit(t, s[1], "X.EXAMPLE", 0));
	ck_assert(throttle_admit(t, s[1], "Y.example", 0));
	for (i = 0; i < 3; i++)
		ck_assert(throttle_admit(t, s[i], "big.example", 0));
	ck_assert(!throttle_admit(t, s[3], "big.example", 0));
	assert_blocked(t, 0, "{big.example,x.example,y.example}");
	for (i = 0; i < 4; i++)
		throttle_session_end(t, s[i]);
	assert_blocked(t, 0, "{}");
	throttle_free(t);
}
END_TEST

/* Without "*" a domain not named is always admitted and never listed. */
START_TEST(test_unnamed)
{
	const char *specs[] = { "", "a.example=1/1" };
	struct throttle_session *s[100];
	struct throttle *t;
	size_t k;
	int i;

	for (k = 0; k < sizeof(specs) / sizeof(specs[0]); k++) {
		t = new_throttle(0, specs[k]);
		for (i = 0; i < 100; i++) {
			s[i] = throttle_session_begin(t);
			ck_assert_int_eq(admit_n(t, s[i], "other.example", 0,
			    10), 10);
		}
		assert_blocked(t, 0, "{}");
		for (i = 0; i < 100; i++)
			throttle_session_end(t, s[i]);
		throttle_free(t);
	}
}
END_TEST

START_TEST(test_blocked)
{
	struct throttle *t = new_throttle(0,
	    "a.example=1/0, b.example=0/60, c.example=5/5");
	struct throttle_session *s = throttle_session_begin(t);

	assert_blocked(t, 0, "{}");
	ck_assert(throttle_admit(t, s, "a.example", 0));
	assert_blocked(t, 0, "{a.example}");
	ck_assert_int_eq(admit_n(t, s, "b.example", 0, 60), 60);
	assert_blocked(t, 0, "{a.example,b.example}");
	assert_blocked(t, 0.5, "{a.example,b.example}");
	assert_blocked(t, 1.0, "{a.example}");
	ck_assert_int_eq(admit_n(t, s, "c.example", 1.0, 4), 4);
	assert_blocked(t, 1.0, "{a.example}");
	ck_assert(throttle_admit(t, s, "c.example", 1.0));
	assert_blocked(t, 1.0, "{a.example,c.example}");
	throttle_session_end(t, s);
	assert_blocked(t, 1.0, "{c.example}");
	assert_blocked(t, 13.0, "{}");
	throttle_free(t);
}
END_TEST

/* Domains tracked through "*" come from the caller: anything odd comes
 * back as it was, and the claim's array literal (db_array_text())
 * quotes it. */
static void
blocked_quoted(const char *domain, void *arg)
{
	db_array_text(arg, domain);
}

START_TEST(test_blocked_quoting)
{
	struct throttle *t = new_throttle(0, "*=1/0");
	struct throttle_session *s = throttle_session_begin(t);

	ck_assert(throttle_admit(t, s, "we\"ird,x", 0));
	ck_assert(throttle_admit(t, s, "back\\slash", 0));
	ck_assert(throttle_admit(t, s, "null", 0));
	ck_assert(throttle_admit(t, s, "", 0));
	ck_assert(throttle_admit(t, s, "ok.example", 0));
	{
		struct buf b;

		buf_init(&b);
		db_array_open(&b);
		throttle_blocked(t, 0, blocked_quoted, &b);
		db_array_close(&b);
		ck_assert_str_eq(b.data, "{\"\",\"back\\\\slash\",\"null\","
		    "\"ok.example\",\"we\\\"ird,x\"}");
		buf_free(&b);
	}
	throttle_session_end(t, s);
	throttle_free(t);
}
END_TEST

/*
 * Many domains through "*", one admitted every millisecond: the table is
 * swept past 10000 entries, but never of a domain with a slot held or
 * with tokens spent (it would come back with a full bucket).
 */
START_TEST(test_many_tracked)
{
	struct throttle *t = new_throttle(0, "*=1/60");
	struct throttle_session *keep, *s;
	char domain[64];
	double now = 0;
	int i;

	keep = throttle_session_begin(t);
	ck_assert(throttle_admit(t, keep, "held.example", 0));
	for (i = 0; i < 30000; i++) {
		now = i * 0.001;
		snprintf(domain, sizeof(domain), "d%d.example", i);
		s = throttle_session_begin(t);
		ck_assert(throttle_admit(t, s, domain, now));
		if (i == 9500)
			ck_assert_int_eq(admit_n(t, s, "spent.example", now,
			    100), 60);
		throttle_session_end(t, s);
	}
	s = throttle_session_begin(t);
	ck_assert(!throttle_admit(t, s, "held.example", now));
	/* spent at 9.5 s, one a second since: 20 back by 29.999 s */
	ck_assert_int_eq(admit_n(t, s, "spent.example", now, 100), 20);
	assert_blocked(t, now, "{held.example,spent.example}");
	throttle_session_end(t, s);
	throttle_session_end(t, keep);
	throttle_free(t);
}
END_TEST

/* ---- reconfiguring --------------------------------------------------- */

/* The global bucket keeps its tokens, clamped to the new capacity. */
START_TEST(test_configure_rate)
{
	struct throttle *t = new_throttle(10, "");
	int i;

	for (i = 0; i < 4; i++)
		ck_assert(throttle_try_pace(t, 0, NULL));
	configure(t, 100, "");
	ck_assert_int_eq(drain(t, 0), 6);       /* not topped up */
	configure(t, 5, "");
	ck_assert(!throttle_try_pace(t, 0.1, NULL));
	ck_assert(throttle_try_pace(t, 0.2, NULL));
	configure(t, 0, "");
	ck_assert(throttle_try_pace(t, 0.2, NULL));
	configure(t, 3, "");                    /* from no limit: full */
	ck_assert_int_eq(drain(t, 0.2), 3);
	throttle_free(t);
}
END_TEST

START_TEST(test_configure_domains)
{
	struct throttle *t = new_throttle(0, "a.example=2/60");
	struct throttle_session *s1, *s2, *s3, *s4;

	s1 = throttle_session_begin(t);
	s2 = throttle_session_begin(t);
	s3 = throttle_session_begin(t);
	s4 = throttle_session_begin(t);
	ck_assert(throttle_admit(t, s1, "a.example", 0));
	ck_assert(throttle_admit(t, s2, "a.example", 0));
	ck_assert_int_eq(admit_n(t, s1, "a.example", 0, 8), 8);   /* 50 left */

	/* fewer slots and tokens: the two sessions keep their slots */
	configure(t, 0, "a.example=1/30");
	assert_blocked(t, 0, "{a.example}");
	ck_assert(!throttle_admit(t, s3, "a.example", 0));
	ck_assert_int_eq(admit_n(t, s1, "a.example", 0, 40), 30);
	throttle_session_end(t, s1);
	ck_assert(!throttle_admit(t, s3, "a.example", 0));
	throttle_session_end(t, s2);
	assert_blocked(t, 0, "{a.example}");    /* no token */
	ck_assert(!throttle_admit(t, s3, "a.example", 1));
	assert_blocked(t, 2, "{}");
	ck_assert(throttle_admit(t, s3, "a.example", 2));

	/* more capacity: the bucket is not topped up */
	configure(t, 0, "a.example=5/600");
	ck_assert(!throttle_admit(t, s4, "a.example", 2));
	ck_assert(throttle_admit(t, s4, "a.example", 2.1));

	/* no limit: admitted, not listed, s3 and s4 still hold slots */
	configure(t, 0, "b.example=1/1");
	ck_assert_int_eq(admit_n(t, s1 = throttle_session_begin(t),
	    "a.example", 2.1, 100), 100);
	assert_blocked(t, 2.1, "{}");

	/* the limit back while the old sessions run: they count */
	configure(t, 0, "a.example=3/0");
	ck_assert(throttle_admit(t, s2 = throttle_session_begin(t),
	    "a.example", 3));
	assert_blocked(t, 3, "{a.example}");
	throttle_session_end(t, s3);
	assert_blocked(t, 3, "{}");

	throttle_session_end(t, s1);
	throttle_session_end(t, s2);
	throttle_session_end(t, s4);
	throttle_free(t);
}
END_TEST

/* A limit removed, then given again after its sessions ended: the
 * domain starts afresh with a full bucket. "*" domains count the
 * sessions in flight too. */
START_TEST(test_configure_fresh)
{
	struct throttle *t = new_throttle(0, "a.example=0/2, *=0/0");
	struct throttle_session *s1 = throttle_session_begin(t),
	    *s2 = throttle_session_begin(t), *s3;

	ck_assert_int_eq(admit_n(t, s1, "a.example", 0, 5), 2);
	ck_assert(throttle_admit(t, s1, "z.example", 0));
	ck_assert(throttle_admit(t, s2, "z.example", 0));
	configure(t, 0, "*=1/0");
	ck_assert_int_eq(admit_n(t, s2, "a.example", 0, 5), 0);   /* s1 */
	ck_assert(!throttle_admit(t, s3 = throttle_session_begin(t),
	    "z.example", 0));
	throttle_session_end(t, s1);
	throttle_session_end(t, s2);
	configure(t, 0, "");
	configure(t, 0, "a.example=0/2");
	ck_assert_int_eq(admit_n(t, s3, "a.example", 0, 5), 2);
	throttle_session_end(t, s3);
	throttle_free(t);
}
END_TEST

/* A bad spec or rate changes nothing. */
START_TEST(test_configure_bad)
{
	struct throttle *t = new_throttle(1, "a.example=1/0");
	struct throttle_session *s1 = throttle_session_begin(t),
	    *s2 = throttle_session_begin(t);
	struct assent_err err;

	ck_assert_int_eq(throttle_configure(t, 0, "a.example=1", &err), -1);
	ck_assert_int_eq(err.code, EX_CONFIG);
	ck_assert_str_eq(err.msg, "domain limit 1 (\"a.example=1\"): "
	    EXPECTED);
	ck_assert_int_eq(throttle_configure(t, -5, "", &err), -1);
	ck_assert_str_eq(err.msg, "sending rate -5 is negative");
	ck_assert(throttle_admit(t, s1, "a.example", 0));
	ck_assert(!throttle_admit(t, s2, "a.example", 0));
	ck_assert(throttle_try_pace(t, 0, NULL));
	ck_assert(!throttle_try_pace(t, 0, NULL));
	throttle_session_end(t, s1);
	throttle_session_end(t, s2);
	throttle_free(t);
}
END_TEST

/* ---- threads, real time ---------------------------------------------- */

#define SLOT_LIMIT 3
#define SLOT_THREADS 8
#define SLOT_CYCLES 3000

struct slot_run {
	struct throttle *t;
	atomic_int holders;     /* sessions holding busy.example now */
	atomic_int most;        /* the most ever seen */
	atomic_int admitted;    /* sessions that got in */
	atomic_int refused_holder; /* a holder refused: must stay 0 */
	atomic_bool done;
};

static void
slot_note_holder(struct slot_run *r)
{
	int now = atomic_fetch_add(&r->holders, 1) + 1;
	int most = atomic_load(&r->most);

	while (now > most &&
	    !atomic_compare_exchange_weak(&r->most, &most, now))
		;
}

static void
slot_cycle(struct slot_run *r)
{
	struct throttle_session *s = throttle_session_begin(r->t);
	int i;

	if (throttle_admit(r->t, s, "busy.example", throttle_now())) {
		slot_note_holder(r);
		atomic_fetch_add(&r->admitted, 1);
		for (i = 0; i < 3; i++) {
			sched_yield();
			if (!throttle_admit(r->t, s, "busy.example",
			    throttle_now()))
				atomic_fetch_add(&r->refused_holder, 1);
		}
		atomic_fetch_sub(&r->holders, 1);
	}
	throttle_session_end(r->t, s);
}

static void *
slot_worker(void *arg)
{
	struct slot_run *r = arg;
	int i;

	for (i = 0; i < SLOT_CYCLES; i++)
		slot_cycle(r);
	return NULL;
}

START_TEST(test_threads_slots)
{
	struct slot_run r;
	pthread_t th[SLOT_THREADS];
	struct buf b;
	int i;

	memset(&r, 0, sizeof(r));
	r.t = new_throttle(0, "busy.example=3/0, *=2/0");
	for (i = 0; i < SLOT_THREADS; i++)
		ck_assert_int_eq(pthread_create(&th[i], NULL, slot_worker, &r),
		    0);
	/* meanwhile, the claim's view must be consistent */
	buf_init(&b);
	for (i = 0; i < 2000; i++) {
		blocked_text(r.t, throttle_now(), &b);
		ck_assert_msg(strcmp(b.data, "{}") == 0 ||
		    strcmp(b.data, "{busy.example}") == 0, "%s", b.data);
	}
	buf_free(&b);
	for (i = 0; i < SLOT_THREADS; i++)
		ck_assert_int_eq(pthread_join(th[i], NULL), 0);

	ck_assert_int_le(atomic_load(&r.most), SLOT_LIMIT);
	ck_assert_int_ge(atomic_load(&r.most), 1);
	ck_assert_int_gt(atomic_load(&r.admitted), 0);
	ck_assert_int_eq(atomic_load(&r.refused_holder), 0);
	ck_assert_int_eq(atomic_load(&r.holders), 0);
	assert_blocked(r.t, throttle_now(), "{}");
	throttle_free(r.t);
}
END_TEST

#define PACE_RATE 200
#define PACE_THREADS 8
#define PACE_EACH 40

static void *
pace_worker(void *arg)
{
	struct throttle *t = arg;
	int i;

	for (i = 0; i < PACE_EACH; i++)
		throttle_pace(t);
	return NULL;
}

static double
cpu_seconds(void)
{
	struct rusage ru;

	ck_assert_int_eq(getrusage(RUSAGE_SELF, &ru), 0);
	return ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6 +
	    ru.ru_stime.tv_sec + ru.ru_stime.tv_usec / 1e6;
}

/*
 * At 200 a second the bucket starts full with 200 tokens; 8 threads
 * take 320, so the last 120 must be paced: 0.6 s at the very least,
 * whatever the load. Broken pacing (no wait, a bigger bucket, tokens
 * counted twice) ends well under 0.55 s; a slow machine only makes the
 * test longer. Waiting must sleep, not spin: a spinning thread alone
 * would burn the whole 0.6 s of CPU, sleeping ones a few milliseconds.
 */
START_TEST(test_pace_threads)
{
	struct throttle *t = new_throttle(PACE_RATE, "");
	pthread_t th[PACE_THREADS];
	double start, took, cpu;
	int i;

	cpu = cpu_seconds();
	start = throttle_now();
	for (i = 0; i < PACE_THREADS; i++)
		ck_assert_int_eq(pthread_create(&th[i], NULL, pace_worker, t),
		    0);
	for (i = 0; i < PACE_THREADS; i++)
		ck_assert_int_eq(pthread_join(th[i], NULL), 0);
	took = throttle_now() - start;
	cpu = cpu_seconds() - cpu;
	ck_assert_msg(took >= 0.55, "320 tokens at 200/s took %.3f s", took);
	ck_assert_msg(cpu < 0.3, "pacing used %.3f s of CPU", cpu);
	throttle_free(t);
}
END_TEST

static Suite *
throttle_suite(void)
{
	Suite *s = suite_create("throttle");
	TCase *tc = tcase_create("throttle"), *rt = tcase_create("realtime");

	tcase_add_loop_test(tc, test_spec_good, 0,
	    sizeof(good_specs) / sizeof(good_specs[0]));
	tcase_add_loop_test(tc, test_spec_bad, 0,
	    sizeof(bad_specs) / sizeof(bad_specs[0]));
	tcase_add_test(tc, test_spec_lengths);
	tcase_add_test(tc, test_spec_max_items);
	tcase_add_test(tc, test_bad_rate);
	tcase_add_test(tc, test_rate_driven);
	tcase_add_test(tc, test_rate_one);
	tcase_add_test(tc, test_rate_zero);
	tcase_add_test(tc, test_now);
	tcase_add_test(tc, test_per_minute);
	tcase_add_test(tc, test_slots);
	tcase_add_test(tc, test_fallback);
	tcase_add_test(tc, test_unnamed);
	tcase_add_test(tc, test_blocked);
	tcase_add_test(tc, test_blocked_quoting);
	tcase_add_test(tc, test_many_tracked);
	tcase_add_test(tc, test_configure_rate);
	tcase_add_test(tc, test_configure_domains);
	tcase_add_test(tc, test_configure_fresh);
	tcase_add_test(tc, test_configure_bad);
	tcase_set_timeout(tc, 30);
	suite_add_tcase(s, tc);

	tcase_add_test(rt, test_threads_slots);
	tcase_add_test(rt, test_pace_threads);
	tcase_set_timeout(rt, 60);
	suite_add_tcase(s, rt);
	return s;
}

int
main(void)
{
	return testhelp_run_suite(throttle_suite());
}

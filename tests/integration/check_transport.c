/*
 * check_transport: transport.c against tests/harness/smtpd.py (a
 * scriptable aiosmtpd server started per test) and small fake servers.
 * No database needed.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#if defined(__SANITIZE_ADDRESS__)
#include <sanitizer/lsan_interface.h>
#define LEAKS_EXPECTED_BEGIN()  __lsan_disable()
#define LEAKS_EXPECTED_END()    __lsan_enable()
#else
#define LEAKS_EXPECTED_BEGIN()  ((void)0)
#define LEAKS_EXPECTED_END()    ((void)0)
#endif

#include "assent/transport.h"
#include "assent/xmalloc.h"
#include "testhelp.h"

#define PYTHON "/usr/bin/python3"
#define MAXMSG 10

/* ---- the server ------------------------------------------------------ */

struct server {
	pid_t pid;
	int port;
	char dir[64];
};

static struct server srv;       /* the one started by the fixture */

static void write_file(const char *path, const char *text);
static int listen_socket(int *port_r);

static void
make_tmpdir(char *dir, size_t size)
{
	snprintf(dir, size, "/tmp/ck_transport.XXXXXX");
	ck_assert_ptr_nonnull(mkdtemp(dir));
}

/* Start smtpd.py on a free port with a fresh directory; extra is a
 * NULL-terminated list of more arguments (may be NULL). The server dies
 * with this test's process, even if a check fails before teardown. */
static void
server_start(struct server *s, const char *const *extra)
{
	make_tmpdir(s->dir, sizeof(s->dir));
	s->port = testhelp_free_port();
	s->pid = testhelp_smtpd_start(s->dir, s->port, extra);
}

static void
rmtree(const char *dir)
{
	const char *argv[] = { "/bin/rm", "-rf", dir, NULL };

	testhelp_run(argv, NULL, NULL, NULL);
}

static void
server_stop(struct server *s)
{
	if (s->pid > 0) {
		testhelp_smtpd_stop(s->pid);
		s->pid = 0;
		rmtree(s->dir);
	}
}

static void
setup(void)
{
	signal(SIGPIPE, SIG_IGN);
	server_start(&srv, NULL);
}

static void
teardown(void)
{
	server_stop(&srv);
}

/* ---- reading what the server wrote ------------------------------------ */

static char *
slurp(const char *path, size_t *len_r)
{
	struct stat st;
	char *data;
	FILE *f;

	if ((f = fopen(path, "rb")) == NULL)
		return NULL;
	ck_assert_int_eq(fstat(fileno(f), &st), 0);
	data = xmalloc((size_t)st.st_size + 1);
	ck_assert_uint_eq(fread(data, 1, (size_t)st.st_size, f),
	    (size_t)st.st_size);
	data[st.st_size] = '\0';
	fclose(f);
	if (len_r != NULL)
		*len_r = (size_t)st.st_size;
	return data;
}

/* Line number `which` (0-based) of log.jsonl among those containing
 * `with`; NULL when there are fewer. The caller frees. */
static char *
log_line(const char *dir, const char *with, int which)
{
	char *log = testhelp_smtpd_log(dir), *line, *next, *found = NULL;

	for (line = log; *line != '\0' && found == NULL; line = next) {
		next = strchr(line, '\n');
		next = next != NULL ? next + 1 : line + strlen(line);
		if (memmem(line, (size_t)(next - line), with, strlen(with)) &&
		    which-- == 0)
			found = xstrndup(line, (size_t)(next - line));
	}
	free(log);
	return found;
}

static int
log_count(const char *dir, const char *with)
{
	char *line;
	int n = 0;

	while ((line = log_line(dir, with, n)) != NULL) {
		free(line);
		n++;
	}
	return n;
}

static void
assert_log_has(const char *line, const char *what)
{
	ck_assert_msg(line != NULL && strstr(line, what) != NULL,
	    "log line %s lacks %s", line != NULL ? line : "(none)", what);
}

/* ---- the batch ------------------------------------------------------- */

struct batch {
	struct transport_msg msgs[MAXMSG];
	char from[MAXMSG][64];
	char rcpt[MAXMSG][64];
	size_t n;
	int fills[MAXMSG];
	int paces[MAXMSG];
	int accepted_at_fill[MAXMSG];   /* messages the server had logged */
	int fail_at;                    /* fill fails for this index; -1 none */
	const char *dir;                /* the server's, to look at */
};

static void
batch_init(struct batch *b, const char *dir, const char *const *rcpts)
{
	memset(b, 0, sizeof(*b));
	b->fail_at = -1;
	b->dir = dir;
	for (; rcpts[b->n] != NULL; b->n++) {
		snprintf(b->from[b->n], sizeof(b->from[0]),
		    "bounce+%zu@bounces.example.org", b->n);
		snprintf(b->rcpt[b->n], sizeof(b->rcpt[0]), "%s",
		    rcpts[b->n]);
		b->msgs[b->n].envelope_from = b->from[b->n];
		b->msgs[b->n].rcpt = b->rcpt[b->n];
		/* garbage the transport must overwrite */
		b->msgs[b->n].outcome = TRANSPORT_SENT;
		b->msgs[b->n].code = 999;
	}
}

/* The message i as fill() gives it: CRLF, every header present, and
 * body lines that need dot-stuffing. */
static void
render(size_t i, struct buf *out)
{
	char tmp[512];

	snprintf(tmp, sizeof(tmp),
	    "From: Lists <lists@example.org>\r\n"
	    "To: <someone%zu@example.net>\r\n"
	    "Date: Thu, 01 Jan 2026 00:00:00 +0000\r\n"
	    "Message-ID: <msg%zu@example.org>\r\n"
	    "Subject: message %zu\r\n"
	    "MIME-Version: 1.0\r\n"
	    "Content-Type: text/plain; charset=utf-8\r\n"
	    "\r\n"
	    "Hello %zu,\r\n"
	    ".\r\n"
	    "..two dots\r\n"
	    ".leading dot\r\n"
	    "\r\n"
	    "-- \r\n"
	    "bye\r\n", i, i, i, i);
	buf_add_str(out, tmp);
}

static int
fill(void *arg, size_t index, struct buf *out)
{
	struct batch *b = arg;

	ck_assert_uint_lt(index, b->n);
	b->fills[index]++;
	b->accepted_at_fill[index] = log_count(b->dir, "\"seq\"");
	/* pace() for this message came first */
	ck_assert_int_eq(b->paces[index], 1);
	if ((int)index == b->fail_at)
		return -1;
	buf_reset(out);
	render(index, out);
	return 0;
}

static void
pace(void *arg, size_t index)
{
	struct batch *b = arg;

	ck_assert_uint_lt(index, b->n);
	b->paces[index]++;
}

/* A transport for host:port; ca_file NULL for the system's CAs. */
static struct transport *
transport_at(const char *host, int port, enum conf_starttls starttls,
    bool verify, const char *ca_file, const char *user,
    const char *password_file, int timeout)
{
	struct transport_opts opts;
	struct transport *t;
	struct assent_err err;

	memset(&opts, 0, sizeof(opts));
	opts.host = host;
	opts.port = port;
	opts.ca_file = ca_file;
	opts.starttls = starttls;
	opts.tls_verify = verify;
	opts.user = user;
	opts.password_file = password_file;
	opts.helo = "client.example.org";
	opts.timeout = timeout;
	ck_assert_msg(transport_new(&opts, &t, &err) == 0, "%s", err.msg);
	return t;
}

static struct transport *
transport_for(int port, enum conf_starttls starttls, bool verify,
    const char *user, const char *password_file, int timeout)
{
	return transport_at("127.0.0.1", port, starttls, verify, NULL, user,
	    password_file, timeout);
}

static int
send_batch(struct transport *t, struct batch *b, struct assent_err *err)
{
	err_clear(err);
	return transport_send(t, b->msgs, b->n, fill, pace, b, err);
}

static void
assert_outcome(const struct batch *b, size_t i, enum transport_outcome want,
    enum transport_stage stage, int code, const char *enhanced)
{
	const struct transport_msg *m = &b->msgs[i];

	ck_assert_msg(m->outcome == want, "message %zu (%s): %s, want %s "
	    "(%d %s %s)", i, m->rcpt, transport_outcome_name(m->outcome),
	    transport_outcome_name(want), m->code, m->enhanced, m->reply);
	ck_assert_msg(m->stage == stage, "message %zu (%s): stage %d, want %d",
	    i, m->rcpt, (int)m->stage, (int)stage);
	ck_assert_int_eq(m->code, code);
	if (enhanced != NULL)
		ck_assert_str_eq(m->enhanced, enhanced);
}

static void
assert_msg_has(const struct assent_err *err, const char *what)
{
	ck_assert_msg(strstr(err->msg, what) != NULL, "\"%s\" lacks \"%s\"",
	    err->msg, what);
}

/* The server's file for seq equals what fill gave for message i. */
static void
assert_delivered(const char *dir, int seq, size_t i)
{
	char path[128], *got;
	struct buf want;
	size_t len;

	snprintf(path, sizeof(path), "%s/%08d.eml", dir, seq);
	got = slurp(path, &len);
	ck_assert_msg(got != NULL, "%s missing", path);
	buf_init(&want);
	render(i, &want);
	ck_assert_uint_eq(len, want.len);
	ck_assert_msg(memcmp(got, want.data, len) == 0,
	    "%s differs from message %zu:\n%s", path, i, got);
	buf_free(&want);
	free(got);
}

static void
assert_all_not_tried(const struct batch *b)
{
	size_t i;

	for (i = 0; i < b->n; i++)
		assert_outcome(b, i, TRANSPORT_NOT_TRIED, TRANSPORT_STAGE_NONE,
		    0, "");
}

/* ---- tests against smtpd.py -------------------------------------------- */

START_TEST(test_batch_one_connection)
{
	static const char *const rcpts[] = { "ann@example.net",
	    "bob@example.net", "cy@example.net", "di@example.net",
	    "ed@example.net", NULL };
	struct transport *t;
	struct assent_err err;
	struct batch b;
	char want[128], *line;
	size_t i;

	batch_init(&b, srv.dir, rcpts);
	t = transport_for(srv.port, CONF_STARTTLS_OFF, true, NULL, NULL, 10);
	ck_assert_msg(send_batch(t, &b, &err) == 0, "%s", err.msg);
	for (i = 0; i < b.n; i++) {
		assert_outcome(&b, i, TRANSPORT_SENT,
		    TRANSPORT_STAGE_DATA, 250, "2.0.0");
		ck_assert_ptr_nonnull(strstr(b.msgs[i].reply, "queued as"));
		/* one fill and one pace per message, lazily: message i is
		 * rendered only after the relay took message i-1 */
		ck_assert_int_eq(b.fills[i], 1);
		ck_assert_int_eq(b.paces[i], 1);
		ck_assert_int_eq(b.accepted_at_fill[i], (int)i);
		assert_delivered(srv.dir, (int)i + 1, i);
		snprintf(want, sizeof(want), "\"seq\": %zu,", i + 1);
		line = log_line(srv.dir, want, 0);
		snprintf(want, sizeof(want), "\"mail_from\": \"%s\"", b.from[i]);
		assert_log_has(line, want);
		snprintf(want, sizeof(want), "\"rcpt\": \"%s\"", b.rcpt[i]);
		assert_log_has(line, want);
		assert_log_has(line, "\"tls\": false");
		assert_log_has(line, "\"auth\": null");
		/* all over the same connection */
		assert_log_has(line, "\"conn\": 1}");
		free(line);
	}
	transport_free(t);
}
END_TEST

/* What smtpd.py does with each recipient, DATA or BDAT alike. */
static const struct mix_case {
	const char *rcpt;
	enum transport_outcome outcome;
	enum transport_stage stage;
	int code;
	const char *enhanced;
	bool hard;              /* transport_is_hard_bounce() */
	int seq;                /* the server's file for it; 0: none */
} mix[] = {
	{ "ok@example.net", TRANSPORT_SENT, TRANSPORT_STAGE_DATA, 250,
	    "2.0.0", false, 1 },
	{ "reject-me@example.net", TRANSPORT_PERMFAIL, TRANSPORT_STAGE_RCPT,
	    550, "5.1.1", true, 0 },
	{ "Policy@example.net", TRANSPORT_PERMFAIL, TRANSPORT_STAGE_RCPT, 554,
	    "5.7.1", false, 0 },
	{ "tempfail@example.net", TRANSPORT_TEMPFAIL, TRANSPORT_STAGE_RCPT,
	    451, "4.3.0", false, 0 },
	{ "flaky1@example.net", TRANSPORT_TEMPFAIL, TRANSPORT_STAGE_RCPT, 450,
	    "4.2.0", false, 0 },
	{ "flaky1@example.net", TRANSPORT_SENT, TRANSPORT_STAGE_DATA, 250,
	    "2.0.0", false, 2 },
	/* a 550 after the data refuses the content, not the address */
	{ "contentreject@example.net", TRANSPORT_PERMFAIL,
	    TRANSPORT_STAGE_DATA, 550, "5.7.1", false, 0 },
	{ "last@example.net", TRANSPORT_SENT, TRANSPORT_STAGE_DATA, 250,
	    "2.0.0", false, 3 },
};

#define NMIX (sizeof(mix) / sizeof(mix[0]))

/* Send the mix to a fresh server at s; bdat: it offers CHUNKING. */
static void
check_mix(const struct server *s, bool bdat)
{
	const char *rcpts[NMIX + 1];
	struct transport *t;
	struct assent_err err;
	struct batch b;
	char want[32], *line;
	int base = log_count(s->dir, "\"seq\"");
	size_t i;

	for (i = 0; i < NMIX; i++)
		rcpts[i] = mix[i].rcpt;
	rcpts[NMIX] = NULL;
	batch_init(&b, s->dir, rcpts);
	t = transport_for(s->port, CONF_STARTTLS_OFF, true, NULL, NULL, 10);
	ck_assert_msg(send_batch(t, &b, &err) == 0, "%s", err.msg);
	for (i = 0; i < NMIX; i++) {
		assert_outcome(&b, i, mix[i].outcome, mix[i].stage,
		    mix[i].code, mix[i].enhanced);
		ck_assert_msg(transport_is_hard_bounce(&b.msgs[i]) ==
		    mix[i].hard, "message %zu: hard bounce?", i);
		if (mix[i].seq != 0)
			assert_delivered(s->dir, base + mix[i].seq, i);
		/* a recipient refused at RCPT never has its data asked
		 * for, with BDAT too (libesmtp would pipeline it after
		 * RCPT: transport makes it wait for the reply) */
		if (mix[i].stage != TRANSPORT_STAGE_RCPT) {
			ck_assert_int_eq(b.fills[i], 1);
			ck_assert_int_eq(b.paces[i], 1);
		} else {
			ck_assert_int_eq(b.fills[i], 0);
			ck_assert_int_eq(b.paces[i], 0);
		}
	}
	ck_assert_str_eq(b.msgs[1].reply,
	    "<reject-me@example.net>: user unknown");
	ck_assert_str_eq(b.msgs[3].reply, "try again later");
	ck_assert_str_eq(b.msgs[6].reply, "message content rejected");
	ck_assert_int_eq(log_count(s->dir, "\"seq\""), base + 3);
	snprintf(want, sizeof(want), "\"seq\": %d,", base + 3);
	line = log_line(s->dir, want, 0);
	assert_log_has(line, "\"rcpt\": \"last@example.net\"");
	assert_log_has(line, bdat ? "\"via\": \"BDAT\"" : "\"via\": \"DATA\"");
	free(line);
	transport_free(t);
}

START_TEST(test_recipient_mix)
{
	check_mix(&srv, false);
}
END_TEST

/* The connection breaks: after the data of "hangup" (with no final
 * reply: UNCERTAIN), or with no reply to the RCPT of "rcpthangup": no
 * data may have gone out then (NOT_TRIED), with BDAT too (libesmtp
 * would pipeline it after RCPT, and crash when the connection breaks
 * with the replies outstanding). */
static void
check_hangups(const struct server *s)
{
	static const char *const rcpts[] = { "ok@example.net",
	    "hangup@example.net", "after1@example.net",
	    "after2@example.net", NULL };
	static const char *const rcpts2[] = { "ok2@example.net",
	    "rcpthangup@example.net", "after3@example.net", NULL };
	struct transport *t;
	struct assent_err err;
	struct batch b;
	int base = log_count(s->dir, "\"seq\"");

	batch_init(&b, s->dir, rcpts);
	t = transport_for(s->port, CONF_STARTTLS_OFF, true, NULL, NULL, 10);
	ck_assert_msg(send_batch(t, &b, &err) == 0, "%s", err.msg);
	assert_outcome(&b, 0, TRANSPORT_SENT, TRANSPORT_STAGE_DATA, 250,
	    "2.0.0");
	assert_outcome(&b, 1, TRANSPORT_UNCERTAIN, TRANSPORT_STAGE_DATA, 0,
	    "");
	assert_outcome(&b, 2, TRANSPORT_NOT_TRIED, TRANSPORT_STAGE_NONE, 0,
	    "");
	assert_outcome(&b, 3, TRANSPORT_NOT_TRIED, TRANSPORT_STAGE_NONE, 0,
	    "");
	ck_assert_int_eq(b.fills[1], 1);
	ck_assert_int_eq(b.fills[2] + b.fills[3], 0);
	ck_assert_int_eq(log_count(s->dir, "\"hangup\": true"), 1);
	ck_assert_int_eq(log_count(s->dir, "\"seq\""), base + 1);

	batch_init(&b, s->dir, rcpts2);
	ck_assert_msg(send_batch(t, &b, &err) == 0, "%s", err.msg);
	assert_outcome(&b, 0, TRANSPORT_SENT, TRANSPORT_STAGE_DATA, 250,
	    "2.0.0");
	assert_outcome(&b, 1, TRANSPORT_NOT_TRIED, TRANSPORT_STAGE_NONE, 0,
	    "");
	assert_outcome(&b, 2, TRANSPORT_NOT_TRIED, TRANSPORT_STAGE_NONE, 0,
	    "");
	ck_assert_int_eq(b.fills[1] + b.fills[2], 0);
	ck_assert_int_eq(log_count(s->dir, "\"rcpt_hangup\": true"), 1);
	ck_assert_int_eq(log_count(s->dir, "\"seq\""), base + 2);
	transport_free(t);
}

START_TEST(test_hangup_uncertain)
{
	check_hangups(&srv);
}
END_TEST

/* "slow" answers the data after 2 s: with a 1 s timeout nobody knows
 * (under BDAT the 250s to the chunks before LAST must not pass for the
 * final reply); within a 5 s timeout that is sent. */
static void
check_slow(const struct server *s, bool in_time)
{
	static const char *const rcpts[] = { "slow@example.net",
	    "next@example.net", NULL };
	struct transport *t;
	struct assent_err err;
	struct batch b;

	batch_init(&b, s->dir, rcpts);
	t = transport_for(s->port, CONF_STARTTLS_OFF, true, NULL, NULL, 1);
	ck_assert_msg(send_batch(t, &b, &err) == 0, "%s", err.msg);
	assert_outcome(&b, 0, TRANSPORT_UNCERTAIN, TRANSPORT_STAGE_DATA, 0,
	    "");
	assert_outcome(&b, 1, TRANSPORT_NOT_TRIED, TRANSPORT_STAGE_NONE, 0,
	    "");
	transport_free(t);
	if (!in_time)
		return;

	batch_init(&b, s->dir, rcpts);
	t = transport_for(s->port, CONF_STARTTLS_OFF, true, NULL, NULL, 5);
	ck_assert_msg(send_batch(t, &b, &err) == 0, "%s", err.msg);
	assert_outcome(&b, 0, TRANSPORT_SENT, TRANSPORT_STAGE_DATA, 250,
	    "2.0.0");
	assert_outcome(&b, 1, TRANSPORT_SENT, TRANSPORT_STAGE_DATA, 250,
	    "2.0.0");
	transport_free(t);
}

START_TEST(test_slow_timeout)
{
	check_slow(&srv, true);
}
END_TEST

static void
check_fill_fails(const struct server *s)
{
	static const char *const rcpts[] = { "one@example.net",
	    "two@example.net", "three@example.net", NULL };
	struct transport *t;
	struct assent_err err;
	struct batch b;
	int before = log_count(s->dir, "\"seq\"");

	batch_init(&b, s->dir, rcpts);
	b.fail_at = 1;
	t = transport_for(s->port, CONF_STARTTLS_OFF, true, NULL, NULL, 10);
	ck_assert_msg(send_batch(t, &b, &err) == 0, "%s", err.msg);
	assert_outcome(&b, 0, TRANSPORT_SENT, TRANSPORT_STAGE_DATA, 250,
	    "2.0.0");
	assert_outcome(&b, 1, TRANSPORT_NOT_TRIED, TRANSPORT_STAGE_NONE, 0,
	    "");
	assert_outcome(&b, 2, TRANSPORT_NOT_TRIED, TRANSPORT_STAGE_NONE, 0,
	    "");
	ck_assert_int_eq(b.fills[1], 1);
	ck_assert_int_eq(b.fills[2], 0);
	/* the relay got the start of message 1's data, never its end */
	ck_assert_int_eq(log_count(s->dir, "\"seq\""), before + 1);
	ck_assert_int_eq(log_count(s->dir, "two@"), 0);
	transport_free(t);
}

START_TEST(test_fill_fails)
{
	check_fill_fails(&srv);
}
END_TEST

/* A relay that offers CHUNKING: libesmtp 1.1 then uses BDAT, pipelined
 * after RCPT. Outcomes must be what they are with DATA. */
START_TEST(test_chunking)
{
	const char *extra[] = { "--chunking", NULL };
	struct server ch;

	server_start(&ch, extra);
	check_mix(&ch, true);
	check_hangups(&ch);
	/* libesmtp 1.1 leaks its 1 KB BDAT header buffer when the message
	 * callback fails (see transport.c) */
	LEAKS_EXPECTED_BEGIN();
	check_fill_fails(&ch);
	LEAKS_EXPECTED_END();
	check_slow(&ch, false);
	server_stop(&ch);
}
END_TEST

START_TEST(test_starttls_not_offered)
{
	static const char *const rcpts[] = { "a@example.net", NULL };
	struct transport *t;
	struct assent_err err;
	struct batch b;

	batch_init(&b, srv.dir, rcpts);
	t = transport_for(srv.port, CONF_STARTTLS_REQUIRED, false, NULL, NULL,
	    10);
	ck_assert_int_eq(send_batch(t, &b, &err), -1);
	ck_assert_int_eq(err.code, EX_UNAVAILABLE);
	ck_assert_msg(strstr(err.msg, "STARTTLS") != NULL, "%s", err.msg);
	assert_all_not_tried(&b);
	ck_assert_int_eq(b.fills[0], 0);
	ck_assert_int_eq(log_count(srv.dir, "\"seq\""), 0);
	transport_free(t);
}
END_TEST

/* ---- MAIL FROM refused ------------------------------------------------- */

/* A refused MAIL FROM is the relay's or the envelope sender's problem:
 * the session fails, the refused message and all after it are
 * NOT_TRIED, and nothing is a bounce. */
static const struct mail_case {
	const char *reply;              /* smtpd.py --mail-from-reply */
	const char *after;              /* --mail-from-reject-after */
	size_t refused;                 /* the message refused at MAIL */
	int code;
	const char *enhanced;
	const char *text;
} mail_cases[] = {
	{ "550 5.1.0 Sender address rejected", "0", 0, 550, "5.1.0",
	    "Sender address rejected" },
	/* a 4xx too; messages sent before it in the session stay SENT.
	 * The relay takes MAIL again after one refusal (reject-count 1),
	 * yet no later message may go out in this session. */
	{ "451 4.3.0 try again later", "2", 2, 451, "4.3.0",
	    "try again later" },
};

static void
check_mail_refused(const struct mail_case *mc)
{
	static const char *const rcpts[] = { "a@example.net", "b@example.net",
	    "c@example.net", "d@example.net", "e@example.net", NULL };
	const char *extra[] = { "--mail-from-reply", mc->reply,
	    "--mail-from-reject-after", mc->after,
	    "--mail-from-reject-count", "1", NULL };
	struct server ms;
	struct transport *t;
	struct assent_err err;
	struct batch b;
	char want[128];
	size_t i;

	server_start(&ms, extra);
	batch_init(&b, ms.dir, rcpts);
	t = transport_for(ms.port, CONF_STARTTLS_OFF, true, NULL, NULL, 10);
	ck_assert_int_eq(send_batch(t, &b, &err), -1);
	ck_assert_int_eq(err.code, EX_UNAVAILABLE);
	snprintf(want, sizeof(want), "127.0.0.1:%d", ms.port);
	assert_msg_has(&err, want);
	assert_msg_has(&err, b.from[mc->refused]);
	assert_msg_has(&err, mc->reply);
	for (i = 0; i < b.n; i++) {
		if (i < mc->refused) {
			assert_outcome(&b, i, TRANSPORT_SENT,
			    TRANSPORT_STAGE_DATA, 250, "2.0.0");
			assert_delivered(ms.dir, (int)i + 1, i);
		} else if (i == mc->refused) {
			assert_outcome(&b, i, TRANSPORT_NOT_TRIED,
			    TRANSPORT_STAGE_MAIL, mc->code, mc->enhanced);
			ck_assert_str_eq(b.msgs[i].reply, mc->text);
		} else
			assert_outcome(&b, i, TRANSPORT_NOT_TRIED,
			    TRANSPORT_STAGE_NONE, 0, "");
		ck_assert(!transport_is_hard_bounce(&b.msgs[i]));
		ck_assert_int_eq(b.fills[i], i < mc->refused);
		ck_assert_int_eq(b.paces[i], i < mc->refused);
	}
	ck_assert_int_eq(log_count(ms.dir, "\"seq\""), (int)mc->refused);
	ck_assert_int_eq(log_count(ms.dir, "\"refused\""), 1);
	transport_free(t);
	server_stop(&ms);
}

START_TEST(test_mail_refused)
{
	check_mail_refused(&mail_cases[_i]);
}
END_TEST

/* ---- TLS and AUTH: servers of their own -------------------------------- */

static void
run_openssl(const char *const *argv)
{
	char *out = NULL, *errs = NULL;

	ck_assert_msg(testhelp_run(argv, NULL, &out, &errs) == 0,
	    "openssl: %s", errs);
	free(out);
	free(errs);
}

/* Test certificates in dir: a CA (ca.pem) and a server certificate it
 * signed for "localhost" (cert.pem, key.pem), EC keys for speed. */
struct certs {
	char dir[64];
	char ca[128], ca_key[128], cert[128], key[128];
};

static void
make_certs(struct certs *c)
{
	const char *ca[] = { "/usr/bin/openssl", "req", "-x509", "-newkey",
	    "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
	    "-subj", "/CN=assent test CA", "-days", "1", "-keyout", c->ca_key,
	    "-out", c->ca, NULL };
	const char *leaf[] = { "/usr/bin/openssl", "req", "-x509", "-CA",
	    c->ca, "-CAkey", c->ca_key, "-newkey", "ec", "-pkeyopt",
	    "ec_paramgen_curve:prime256v1", "-nodes", "-subj", "/CN=localhost",
	    "-addext", "subjectAltName=DNS:localhost", "-addext",
	    "basicConstraints=critical,CA:FALSE", "-days", "1", "-keyout",
	    c->key, "-out", c->cert, NULL };

	make_tmpdir(c->dir, sizeof(c->dir));
	snprintf(c->ca, sizeof(c->ca), "%s/ca.pem", c->dir);
	snprintf(c->ca_key, sizeof(c->ca_key), "%s/ca.key", c->dir);
	snprintf(c->cert, sizeof(c->cert), "%s/cert.pem", c->dir);
	snprintf(c->key, sizeof(c->key), "%s/key.pem", c->dir);
	run_openssl(ca);
	run_openssl(leaf);
}

START_TEST(test_starttls_self_signed)
{
	static const char *const rcpts[] = { "a@example.net",
	    "b@example.net", NULL };
	struct server tls;
	struct transport *t;
	struct assent_err err;
	struct batch b;
	struct certs c;
	char *line;
	const char *extra[] = { "--tls-cert", c.cert, "--tls-key", c.key,
	    "--require-starttls", NULL };
	int round;

	make_certs(&c);
	server_start(&tls, extra);

	/* verified: a certificate of a CA we do not trust is refused */
	batch_init(&b, tls.dir, rcpts);
	t = transport_for(tls.port, CONF_STARTTLS_REQUIRED, true, NULL, NULL,
	    10);
	ck_assert_int_eq(send_batch(t, &b, &err), -1);
	ck_assert_int_eq(err.code, EX_UNAVAILABLE);
	ck_assert_msg(strstr(err.msg, "certificate") != NULL, "%s", err.msg);
	assert_all_not_tried(&b);
	ck_assert_int_eq(b.fills[0] + b.fills[1], 0);
	transport_free(t);
	ck_assert_int_eq(log_count(tls.dir, "\"seq\""), 0);

	/* not verified: accepted; twice over, as libesmtp's own TLS
	 * context would not survive the first session */
	t = transport_for(tls.port, CONF_STARTTLS_OPPORTUNISTIC, false, NULL,
	    NULL, 10);
	for (round = 0; round < 2; round++) {
		batch_init(&b, tls.dir, rcpts);
		ck_assert_msg(send_batch(t, &b, &err) == 0, "%s", err.msg);
		assert_outcome(&b, 0, TRANSPORT_SENT,
		    TRANSPORT_STAGE_DATA, 250, "2.0.0");
		assert_outcome(&b, 1, TRANSPORT_SENT,
		    TRANSPORT_STAGE_DATA, 250, "2.0.0");
	}
	transport_free(t);
	ck_assert_int_eq(log_count(tls.dir, "\"seq\""), 4);
	ck_assert_int_eq(log_count(tls.dir, "\"tls\": true"), 4);
	/* conn 1 was the refused one; then one connection per call */
	line = log_line(tls.dir, "\"seq\": 2,", 0);
	assert_log_has(line, "\"conn\": 2}");
	free(line);
	line = log_line(tls.dir, "\"seq\": 4,", 0);
	assert_log_has(line, "\"conn\": 3}");
	free(line);
	assert_delivered(tls.dir, 4, 1);
	server_stop(&tls);
	rmtree(c.dir);
}
END_TEST

/* Verified TLS with a CA of our own: the transport trusts ca_file. */
START_TEST(test_starttls_verified)
{
	static const char *const rcpts[] = { "a@example.net", NULL };
	struct certs c;
	struct server tls;
	struct transport *t;
	struct assent_err err;
	struct batch b;
	char pw[128], want[160], *line;
	const char *extra[] = { "--tls-cert", c.cert, "--tls-key", c.key,
	    "--auth-user", "sender", "--auth-pass", "pw", NULL };

	make_certs(&c);
	server_start(&tls, extra);
	snprintf(pw, sizeof(pw), "%s/pw", c.dir);
	write_file(pw, "pw\n");

	/* the name matches and the CA is trusted: sent over TLS, and
	 * with opportunistic TLS AUTH goes out once TLS is up */
	batch_init(&b, tls.dir, rcpts);
	t = transport_at("localhost", tls.port, CONF_STARTTLS_REQUIRED, true,
	    c.ca, NULL, NULL, 10);
	ck_assert_msg(send_batch(t, &b, &err) == 0, "%s", err.msg);
	assert_outcome(&b, 0, TRANSPORT_SENT, TRANSPORT_STAGE_DATA, 250,
	    "2.0.0");
	transport_free(t);
	batch_init(&b, tls.dir, rcpts);
	t = transport_at("localhost", tls.port, CONF_STARTTLS_OPPORTUNISTIC,
	    true, c.ca, "sender", pw, 10);
	ck_assert_msg(send_batch(t, &b, &err) == 0, "%s", err.msg);
	assert_outcome(&b, 0, TRANSPORT_SENT, TRANSPORT_STAGE_DATA, 250,
	    "2.0.0");
	transport_free(t);
	ck_assert_int_eq(log_count(tls.dir, "\"tls\": true"), 3);
	line = log_line(tls.dir, "\"seq\": 2,", 0);
	assert_log_has(line, "\"auth\": \"sender\"");
	free(line);
	line = log_line(tls.dir, "\"auth_attempt\"", 0);
	assert_log_has(line, "\"tls\": true");
	free(line);

	/* a trusted CA, but the certificate is for another name */
	batch_init(&b, tls.dir, rcpts);
	t = transport_at("127.0.0.1", tls.port, CONF_STARTTLS_REQUIRED, true,
	    c.ca, NULL, NULL, 10);
	ck_assert_int_eq(send_batch(t, &b, &err), -1);
	ck_assert_int_eq(err.code, EX_UNAVAILABLE);
	snprintf(want, sizeof(want), "SMTP relay 127.0.0.1:%d: the "
	    "certificate is for \"localhost\", not \"127.0.0.1\"", tls.port);
	ck_assert_str_eq(err.msg, want);
	assert_all_not_tried(&b);
	transport_free(t);

	/* opportunistic with a certificate that fails verification fails
	 * closed: no fallback to clear text */
	batch_init(&b, tls.dir, rcpts);
	t = transport_at("localhost", tls.port, CONF_STARTTLS_OPPORTUNISTIC,
	    true, NULL, NULL, NULL, 10);
	ck_assert_int_eq(send_batch(t, &b, &err), -1);
	ck_assert_int_eq(err.code, EX_UNAVAILABLE);
	assert_msg_has(&err, "certificate failed verification");
	assert_all_not_tried(&b);
	transport_free(t);
	ck_assert_int_eq(log_count(tls.dir, "\"seq\""), 2);
	server_stop(&tls);
	rmtree(c.dir);
}
END_TEST

/* Read from c until a line end (or EOF); 0 when a line came. */
static int
read_line(int c)
{
	char ch;

	while (read(c, &ch, 1) == 1)
		if (ch == '\n')
			return 0;
	return -1;
}

static void
say(int c, const char *text)
{
	if (write(c, text, strlen(text)) < 0)
		_exit(1);
}

/* A relay that offers STARTTLS, says 220 to it, then never speaks TLS:
 * on the first connection it stalls, on the second it sends clear
 * text. */
static void
fake_starttls_relay(int fd)
{
	int round, c;

	for (round = 0; round < 2; round++) {
		if ((c = accept(fd, NULL, NULL)) == -1)
			_exit(1);
		say(c, "220 fake ESMTP\r\n");
		if (read_line(c) == -1)
			_exit(1);
		say(c, "250-fake\r\n250-PIPELINING\r\n250 STARTTLS\r\n");
		if (read_line(c) == -1)
			_exit(1);
		say(c, "220 2.0.0 go ahead\r\n");
		if (round == 1)
			say(c, "this is not TLS\r\n");
		while (read_line(c) == 0)
			;               /* until the client gives up */
		close(c);
	}
	_exit(0);
}

START_TEST(test_tls_handshake_fails)
{
	static const char *const rcpts[] = { "a@example.net", NULL };
	struct transport *t;
	struct assent_err err;
	struct batch b;
	char want[128];
	time_t start;
	int port, fd = listen_socket(&port), round;
	pid_t pid = fork();

	ck_assert_int_ne(pid, -1);
	if (pid == 0)
		fake_starttls_relay(fd);
	t = transport_for(port, CONF_STARTTLS_REQUIRED, true, NULL, NULL, 1);
	snprintf(want, sizeof(want), "TLS handshake with 127.0.0.1:%d failed "
	    "or timed out (1 s)", port);
	for (round = 0; round < 2; round++) {
		batch_init(&b, "/nonexistent", rcpts);
		start = time(NULL);
		ck_assert_int_eq(send_batch(t, &b, &err), -1);
		ck_assert_int_le(time(NULL) - start, 3);
		ck_assert_int_eq(err.code, EX_UNAVAILABLE);
		ck_assert_msg(strncmp(err.msg, want, strlen(want)) == 0,
		    "\"%s\" is not \"%s...\"", err.msg, want);
		assert_all_not_tried(&b);
	}
	transport_free(t);
	waitpid(pid, NULL, 0);
	close(fd);
}
END_TEST

static void
write_file(const char *path, const char *text)
{
	FILE *f = fopen(path, "w");

	ck_assert_ptr_nonnull(f);
	fputs(text, f);
	ck_assert_int_eq(fclose(f), 0);
	chmod(path, 0600);
}

START_TEST(test_auth)
{
	static const char *const rcpts[] = { "a@example.net", NULL };
	const char *extra[] = { "--auth-user", "sender", "--auth-pass",
	    "s3cret pass", NULL };
	struct server as;
	struct transport *t;
	struct assent_err err;
	struct batch b;
	char good[128], bad[128], want[160], *line;
	int attempts;

	server_start(&as, extra);
	snprintf(good, sizeof(good), "%s/good.pw", as.dir);
	snprintf(bad, sizeof(bad), "%s/bad.pw", as.dir);
	/* the first line only, without its CRLF */
	write_file(good, "s3cret pass\r\nsecond line\n");
	write_file(bad, "wrong\n");

	batch_init(&b, as.dir, rcpts);
	t = transport_for(as.port, CONF_STARTTLS_OFF, true, "sender", good, 10);
	ck_assert_msg(send_batch(t, &b, &err) == 0, "%s", err.msg);
	assert_outcome(&b, 0, TRANSPORT_SENT,
	    TRANSPORT_STAGE_DATA, 250, "2.0.0");
	transport_free(t);
	line = log_line(as.dir, "\"seq\": 1,", 0);
	assert_log_has(line, "\"auth\": \"sender\"");
	free(line);

	/* the wrong password: the relay would take mail without AUTH,
	 * but nothing may go out */
	batch_init(&b, as.dir, rcpts);
	t = transport_for(as.port, CONF_STARTTLS_OFF, true, "sender", bad, 10);
	ck_assert_int_eq(send_batch(t, &b, &err), -1);
	ck_assert_int_eq(err.code, EX_UNAVAILABLE);
	ck_assert_msg(strstr(err.msg, "authentication failed") != NULL,
	    "%s", err.msg);
	ck_assert_msg(strstr(err.msg, "wrong") == NULL, "%s", err.msg);
	assert_all_not_tried(&b);
	transport_free(t);
	ck_assert_int_eq(log_count(as.dir, "\"seq\""), 1);

	/* opportunistic TLS, a relay without STARTTLS (or with its offer
	 * stripped): the password must not go out in clear text */
	attempts = log_count(as.dir, "\"auth_attempt\"");
	ck_assert_int_ge(attempts, 2);
	batch_init(&b, as.dir, rcpts);
	t = transport_for(as.port, CONF_STARTTLS_OPPORTUNISTIC, true, "sender",
	    good, 10);
	ck_assert_int_eq(send_batch(t, &b, &err), -1);
	ck_assert_int_eq(err.code, EX_UNAVAILABLE);
	snprintf(want, sizeof(want), "SMTP relay 127.0.0.1:%d offers no "
	    "STARTTLS; not sending the AUTH password in clear (set "
	    "smtp.starttls)", as.port);
	ck_assert_str_eq(err.msg, want);
	assert_all_not_tried(&b);
	ck_assert_int_eq(b.fills[0], 0);
	transport_free(t);
	ck_assert_int_eq(log_count(as.dir, "\"auth_attempt\""), attempts);
	ck_assert_int_eq(log_count(as.dir, "\"seq\""), 1);

	/* a relay without AUTH when a user is configured */
	batch_init(&b, srv.dir, rcpts);
	t = transport_for(srv.port, CONF_STARTTLS_OFF, true, "sender", good,
	    10);
	ck_assert_int_eq(send_batch(t, &b, &err), -1);
	ck_assert_msg(strstr(err.msg, "AUTH") != NULL, "%s", err.msg);
	assert_all_not_tried(&b);
	ck_assert_int_eq(log_count(srv.dir, "\"seq\""), 0);
	transport_free(t);
	server_stop(&as);
}
END_TEST

START_TEST(test_no_enhanced)
{
	static const char *const rcpts[] = { "reject@example.net",
	    "fine@example.net", NULL };
	const char *extra[] = { "--no-enhanced", NULL };
	struct server ne;
	struct transport *t;
	struct assent_err err;
	struct batch b;

	server_start(&ne, extra);
	batch_init(&b, ne.dir, rcpts);
	t = transport_for(ne.port, CONF_STARTTLS_OFF, true, NULL, NULL, 10);
	ck_assert_msg(send_batch(t, &b, &err) == 0, "%s", err.msg);
	assert_outcome(&b, 0, TRANSPORT_PERMFAIL,
	    TRANSPORT_STAGE_RCPT, 550, "");
	ck_assert_str_eq(b.msgs[0].reply,
	    "<reject@example.net>: user unknown");
	ck_assert(transport_is_hard_bounce(&b.msgs[0]));
	assert_outcome(&b, 1, TRANSPORT_SENT,
	    TRANSPORT_STAGE_DATA, 250, "");
	transport_free(t);
	server_stop(&ne);
}
END_TEST

/* ---- relays that cannot be used -------------------------------------- */

static int
listen_socket(int *port_r)
{
	struct sockaddr_in sin;
	socklen_t len = sizeof(sin);
	int fd;

	memset(&sin, 0, sizeof(sin));
	sin.sin_family = AF_INET;
	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	fd = socket(AF_INET, SOCK_STREAM, 0);
	ck_assert_int_ne(fd, -1);
	ck_assert_int_eq(bind(fd, (struct sockaddr *)&sin, sizeof(sin)), 0);
	ck_assert_int_eq(listen(fd, 4), 0);
	ck_assert_int_eq(getsockname(fd, (struct sockaddr *)&sin, &len), 0);
	*port_r = ntohs(sin.sin_port);
	return fd;
}

static void
assert_refused(int port, int timeout, const char *reason)
{
	static const char *const rcpts[] = { "a@example.net",
	    "b@example.net", NULL };
	struct transport *t;
	struct assent_err err;
	struct batch b;
	char where[32];

	batch_init(&b, "/nonexistent", rcpts);
	t = transport_for(port, CONF_STARTTLS_OFF, true, NULL, NULL, timeout);
	ck_assert_int_eq(send_batch(t, &b, &err), -1);
	ck_assert_msg(err.code == EX_TEMPFAIL || err.code == EX_UNAVAILABLE,
	    "code %d", err.code);
	snprintf(where, sizeof(where), "127.0.0.1:%d", port);
	ck_assert_msg(strstr(err.msg, where) != NULL, "%s", err.msg);
	ck_assert_msg(strstr(err.msg, reason) != NULL, "%s lacks %s",
	    err.msg, reason);
	assert_all_not_tried(&b);
	ck_assert_int_eq(b.fills[0] + b.fills[1], 0);
	transport_free(t);
}

START_TEST(test_connection_refused)
{
	assert_refused(testhelp_free_port(), 10, "refused");
}
END_TEST

/* A relay that accepts the connection and never greets. */
START_TEST(test_greeting_timeout)
{
	time_t start = time(NULL);
	int port, fd = listen_socket(&port);

	assert_refused(port, 1, "no reply within 1 s");
	ck_assert_int_le(time(NULL) - start, 3);
	close(fd);
}
END_TEST

/* A relay that greets with 421 and hangs up. */
START_TEST(test_greeting_421)
{
	static const char greeting[] = "421 4.3.2 too busy, go away\r\n";
	int port, fd = listen_socket(&port), c;
	pid_t pid = fork();

	ck_assert_int_ne(pid, -1);
	if (pid == 0) {
		c = accept(fd, NULL, NULL);
		if (write(c, greeting, sizeof(greeting) - 1) < 0)
			_exit(1);
		usleep(200000);
		_exit(0);
	}
	assert_refused(port, 5, "421 4.3.2 too busy, go away");
	waitpid(pid, NULL, 0);
	close(fd);
}
END_TEST

/* Postfix's smtp-sink: a real MTA's dialect (PIPELINING, ENHANCED...)
 * for a batch over one session. */
START_TEST(test_smtp_sink)
{
	static const char *const rcpts[] = { "a@example.net",
	    "b@example.net", "c@example.net", NULL };
	struct transport *t;
	struct assent_err err;
	struct batch b;
	char dir[64], listen[32];
	pid_t pid;
	int port = testhelp_free_port(), i;

	if (access("/usr/sbin/smtp-sink", X_OK) != 0)
		return;         /* not installed: nothing to compare with */
	make_tmpdir(dir, sizeof(dir));
	snprintf(listen, sizeof(listen), "127.0.0.1:%d", port);
	pid = fork();
	ck_assert_int_ne(pid, -1);
	if (pid == 0) {
		prctl(PR_SET_PDEATHSIG, SIGTERM);
		if (getuid() == 0)
			execl("/usr/sbin/smtp-sink", "smtp-sink", "-u",
			    "nobody", listen, "16", (char *)NULL);
		else
			execl("/usr/sbin/smtp-sink", "smtp-sink", listen,
			    "16", (char *)NULL);
		_exit(127);
	}
	for (i = 0; i < 50; i++) {     /* wait until it listens */
		int fd = socket(AF_INET, SOCK_STREAM, 0);
		struct sockaddr_in sin = { .sin_family = AF_INET,
		    .sin_port = htons((uint16_t)port),
		    .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
		int ok = connect(fd, (struct sockaddr *)&sin, sizeof(sin));

		close(fd);
		if (ok == 0)
			break;
		usleep(20000);
	}
	batch_init(&b, dir, rcpts);
	t = transport_for(port, CONF_STARTTLS_OFF, true, NULL, NULL, 10);
	ck_assert_msg(send_batch(t, &b, &err) == 0, "%s", err.msg);
	for (i = 0; i < 3; i++) {
		assert_outcome(&b, (size_t)i, TRANSPORT_SENT,
		    TRANSPORT_STAGE_DATA, 250, NULL);
		ck_assert_int_eq(b.fills[i], 1);
	}
	transport_free(t);
	kill(pid, SIGTERM);
	waitpid(pid, NULL, 0);
	rmtree(dir);
}
END_TEST

/* ---- no server needed ------------------------------------------------ */

START_TEST(test_password_file)
{
	struct transport_opts opts;
	struct transport *t = NULL;
	struct assent_err err;
	char dir[64], path[128];

	make_tmpdir(dir, sizeof(dir));
	memset(&opts, 0, sizeof(opts));
	opts.host = "127.0.0.1";
	opts.port = 25;
	opts.user = "sender";
	snprintf(path, sizeof(path), "%s/missing.pw", dir);
	opts.password_file = path;
	ck_assert_int_eq(transport_new(&opts, &t, &err), -1);
	ck_assert_int_eq(err.code, EX_CONFIG);
	ck_assert_ptr_nonnull(strstr(err.msg, path));
	ck_assert_ptr_null(t);

	write_file(path, "\nsecond line\n");    /* empty first line */
	ck_assert_int_eq(transport_new(&opts, &t, &err), -1);
	ck_assert_int_eq(err.code, EX_CONFIG);

	opts.password_file = NULL;
	ck_assert_int_eq(transport_new(&opts, &t, &err), -1);
	ck_assert_int_eq(err.code, EX_CONFIG);

	opts.user = "";                         /* no AUTH: no file needed */
	ck_assert_int_eq(transport_new(&opts, &t, &err), 0);
	transport_free(t);
	rmtree(dir);
}
END_TEST

START_TEST(test_hard_bounce)
{
	static const struct {
		enum transport_outcome outcome;
		enum transport_stage stage;
		int code;
		const char *enhanced;
		bool hard;
	} cases[] = {
#define P TRANSPORT_PERMFAIL
#define RCPT TRANSPORT_STAGE_RCPT
		{ P, RCPT, 550, "5.1.1", true },
		{ P, RCPT, 550, "5.1.2", true },
		{ P, RCPT, 553, "5.1.3", true },
		{ P, RCPT, 550, "5.1.10", true },
		{ P, RCPT, 554, "5.1.0", true },
		{ P, RCPT, 550, "5.1.6", true },        /* mailbox moved */
		{ P, RCPT, 550, "5.1.7", false },       /* sender's address */
		{ P, RCPT, 553, "5.1.8", false },       /* sender's domain */
		{ P, RCPT, 550, "5.2.2", false },       /* mailbox full */
		{ P, RCPT, 550, "5.7.1", false },       /* policy */
		{ P, RCPT, 554, "5.7.0", false },
		{ P, RCPT, 550, "5.11.1", false },
		{ P, RCPT, 550, "", true },
		{ P, RCPT, 553, "", true },
		{ P, RCPT, 551, "", false },
		{ P, RCPT, 552, "", false },
		{ P, RCPT, 554, "", false },
		/* a refused MAIL FROM: a wrong bounce domain would
		 * otherwise wipe the whole list */
		{ TRANSPORT_NOT_TRIED, TRANSPORT_STAGE_MAIL, 550, "5.1.0",
		    false },
		{ TRANSPORT_NOT_TRIED, TRANSPORT_STAGE_MAIL, 553, "", false },
		{ P, TRANSPORT_STAGE_MAIL, 550, "5.1.1", false },
		{ P, TRANSPORT_STAGE_MAIL, 553, "", false },
		/* after DATA: the content, not the address */
		{ P, TRANSPORT_STAGE_DATA, 550, "", false },
		{ P, TRANSPORT_STAGE_DATA, 550, "5.1.1", false },
		{ P, TRANSPORT_STAGE_DATA, 554, "5.7.1", false },
		{ P, TRANSPORT_STAGE_NONE, 550, "5.1.1", false },
		{ TRANSPORT_TEMPFAIL, RCPT, 450, "4.1.1", false },
		{ TRANSPORT_TEMPFAIL, RCPT, 451, "", false },
		{ TRANSPORT_SENT, TRANSPORT_STAGE_DATA, 250, "2.0.0", false },
		{ TRANSPORT_UNCERTAIN, TRANSPORT_STAGE_DATA, 0, "", false },
		{ TRANSPORT_NOT_TRIED, TRANSPORT_STAGE_NONE, 0, "", false },
#undef P
#undef RCPT
	};
	struct transport_msg m;
	size_t i;

	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		memset(&m, 0, sizeof(m));
		m.outcome = cases[i].outcome;
		m.stage = cases[i].stage;
		m.code = cases[i].code;
		snprintf(m.enhanced, sizeof(m.enhanced), "%s",
		    cases[i].enhanced);
		ck_assert_msg(transport_is_hard_bounce(&m) == cases[i].hard,
		    "case %zu: %s at stage %d, %d %s", i,
		    transport_outcome_name(m.outcome), (int)m.stage, m.code,
		    m.enhanced);
	}
}
END_TEST

START_TEST(test_names_and_conf)
{
	static const struct {
		enum transport_outcome outcome;
		const char *name;
	} names[] = {
		{ TRANSPORT_SENT, "sent" },
		{ TRANSPORT_TEMPFAIL, "tempfail" },
		{ TRANSPORT_PERMFAIL, "permfail" },
		{ TRANSPORT_NOT_TRIED, "not-tried" },
		{ TRANSPORT_UNCERTAIN, "uncertain" },
	};
	struct assent_conf conf;
	struct transport_opts opts;
	size_t i;

	for (i = 0; i < sizeof(names) / sizeof(names[0]); i++)
		ck_assert_str_eq(transport_outcome_name(names[i].outcome),
		    names[i].name);
	memset(&conf, 0, sizeof(conf));
	conf.smtp_host = "relay.example.org";
	conf.smtp_port = 587;
	conf.smtp_starttls = CONF_STARTTLS_REQUIRED;
	conf.smtp_tls_verify = true;
	conf.smtp_user = "u";
	conf.smtp_password_file = "/etc/assent/smtp.pw";
	conf.smtp_helo = "lists.example.org";
	conf.smtp_timeout = 42;
	transport_opts_from_conf(&conf, &opts);
	ck_assert_str_eq(opts.host, "relay.example.org");
	ck_assert_int_eq(opts.port, 587);
	ck_assert_int_eq(opts.starttls, CONF_STARTTLS_REQUIRED);
	ck_assert(opts.tls_verify);
	ck_assert_str_eq(opts.user, "u");
	ck_assert_str_eq(opts.password_file, "/etc/assent/smtp.pw");
	ck_assert_str_eq(opts.helo, "lists.example.org");
	ck_assert_int_eq(opts.timeout, 42);
}
END_TEST

/* libesmtp never sets TCP_NODELAY (Nagle then costs ~40 ms a message):
 * every TCP connect in a program linked with transport gets it. */
START_TEST(test_connect_sets_nodelay)
{
	struct sockaddr_in sin = { .sin_family = AF_INET };
	socklen_t len = sizeof(sin);
	int listener, fd, on = 0;

	transport_socket_use();
	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	ck_assert_int_ge(listener = socket(AF_INET, SOCK_STREAM, 0), 0);
	ck_assert_int_eq(bind(listener, (struct sockaddr *)&sin, sizeof(sin)), 0);
	ck_assert_int_eq(listen(listener, 1), 0);
	ck_assert_int_eq(getsockname(listener, (struct sockaddr *)&sin, &len), 0);
	ck_assert_int_ge(fd = socket(AF_INET, SOCK_STREAM, 0), 0);
	len = sizeof(on);
	ck_assert_int_eq(getsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &on, &len), 0);
	ck_assert_int_eq(on, 0);
	ck_assert_int_eq(connect(fd, (struct sockaddr *)&sin, sizeof(sin)), 0);
	len = sizeof(on);
	ck_assert_int_eq(getsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &on, &len), 0);
	ck_assert_int_eq(on, 1);
	close(fd);
	close(listener);
	/* errno and the result of a failed connect are the real ones */
	ck_assert_int_ge(fd = socket(AF_INET, SOCK_STREAM, 0), 0);
	errno = 0;
	ck_assert_int_eq(connect(fd, (struct sockaddr *)&sin, sizeof(sin)), -1);
	ck_assert_int_eq(errno, ECONNREFUSED);
	close(fd);
}
END_TEST

static Suite *
transport_suite(void)
{
	Suite *s = suite_create("transport");
	TCase *smtpd = tcase_create("smtpd");
	TCase *own = tcase_create("own");
	TCase *other = tcase_create("other");

	tcase_add_checked_fixture(smtpd, setup, teardown);
	tcase_set_timeout(smtpd, 15);
	tcase_add_test(smtpd, test_batch_one_connection);
	tcase_add_test(smtpd, test_recipient_mix);
	tcase_add_test(smtpd, test_hangup_uncertain);
	tcase_add_test(smtpd, test_slow_timeout);
	tcase_add_test(smtpd, test_fill_fails);
	tcase_add_test(smtpd, test_starttls_not_offered);
	tcase_add_test(smtpd, test_starttls_self_signed);
	tcase_add_test(smtpd, test_auth);
	tcase_add_test(smtpd, test_no_enhanced);
	suite_add_tcase(s, smtpd);

	/* servers of their own */
	tcase_set_timeout(own, 15);
	tcase_add_test(own, test_chunking);
	tcase_add_loop_test(own, test_mail_refused, 0,
	    (int)(sizeof(mail_cases) / sizeof(mail_cases[0])));
	tcase_add_test(own, test_starttls_verified);
	suite_add_tcase(s, own);

	tcase_set_timeout(other, 10);
	tcase_add_test(other, test_connection_refused);
	tcase_add_test(other, test_greeting_timeout);
	tcase_add_test(other, test_greeting_421);
	tcase_add_test(other, test_tls_handshake_fails);
	tcase_add_test(other, test_smtp_sink);
	tcase_add_test(other, test_password_file);
	tcase_add_test(other, test_hard_bounce);
	tcase_add_test(other, test_names_and_conf);
	tcase_add_test(other, test_connect_sets_nodelay);
	suite_add_tcase(s, other);
	return s;
}

/* Skip (or, with ASSENT_TEST_REQUIRE_SERVERS=1, fail) when Debian's
 * python3 lacks aiosmtpd. */
static void
require_aiosmtpd(void)
{
	const char *argv[] = { PYTHON, "-c", "import aiosmtpd", NULL };
	const char *req = getenv("ASSENT_TEST_REQUIRE_SERVERS");

	if (testhelp_run(argv, NULL, NULL, NULL) == 0)
		return;
	if (req != NULL && strcmp(req, "1") == 0) {
		printf("Bail out! " PYTHON " cannot import aiosmtpd\n");
		exit(1);
	}
	printf("1..0 # SKIP " PYTHON " cannot import aiosmtpd\n");
	exit(0);
}

int
main(void)
{
	signal(SIGPIPE, SIG_IGN);
	require_aiosmtpd();
	return testhelp_run_suite(transport_suite());
}

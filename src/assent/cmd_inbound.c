/* assent inbound: what comes back to the bounce domain. One message on
 * standard input (an MTA's pipe transport), every new message of a
 * Maildir, or --classify to see what would be done. Reading and
 * classifying is bounce.h's; acting, intake.h's and optout.h's. */
#include <sys/stat.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include "assent/bounce.h"
#include "assent/inbound.h"
#include "assent/intake.h"
#include "assent/keys.h"
#include "assent/optout.h"
#include "assent/text.h"
#include "assent/token.h"
#include "assent/xmalloc.h"
#include "cli.h"

static const struct cli_cmd inbound_cmd = {
	"inbound", "[--recipient ADDR] [--reject DIR] < MESSAGE | --maildir DIR "
	"[--reject DIR] | --classify [FILE|MAILDIR...]",
	"act on what comes back to the bounce domain: bounces (DSN), "
	"complaints (ARF), mailto unsubscribes; auto-replies are ignored",
	0, 64, NULL,
};

/* What became of one message. */
enum inbound_fate {
	INBOUND_DONE,           /* acted on (or nothing to do, e.g. a DSN of
	                         * a delivered message) */
	INBOUND_IGNORED,        /* an auto-reply */
	INBOUND_REJECTED,       /* not understood, or not ours */
	INBOUND_RETRY,          /* the database failed: keep it, try later */
};

/* One message, read and parsed. */
struct inbound_msg {
	char *data;
	size_t len;
	bool truncated;
	char header_problem[ASSENT_ERR_MSG_MAX];        /* "" when fine */
	struct bounce_report report;
};

/* What a run shares between messages. */
struct inbound_run {
	struct cli *cli;
	const char *given;              /* --recipient, or NULL */
	const char *reject_dir;         /* --reject, or NULL */
	struct keys *keys;
	struct token_signer *signer;
	long done, ignored, rejected, kept;
};

/* ---- reading ----------------------------------------------------------------- */

/* The header section must be well formed (inbound.h's reader, which
 * names the line); the rest is GMime's. */
static void
inbound_check_headers(struct inbound_msg *m)
{
	struct inbound_headers h;
	struct assent_err err;
	FILE *f;

	m->header_problem[0] = '\0';
	if (m->len == 0) {
		snprintf(m->header_problem, sizeof(m->header_problem), "empty message");
		return;
	}
	if ((f = fmemopen(m->data, m->len, "r")) == NULL)
		return;
	if (inbound_read_headers(f, &h, &err) == -1)
		snprintf(m->header_problem, sizeof(m->header_problem), "%s", err.msg);
	fclose(f);
}

static int
inbound_load(FILE *in, const char *given, struct inbound_msg *m,
    struct assent_err *err)
{
	memset(m, 0, sizeof(*m));
	if (bounce_read(in, &m->data, &m->len, &m->truncated, err) == -1)
		return -1;
	inbound_check_headers(m);
	bounce_parse(m->data, m->len, given, &m->report);
	return 0;
}

static void
inbound_free(struct inbound_msg *m)
{
	bounce_report_free(&m->report);
	free(m->data);
	m->data = NULL;
}

/* ---- --classify ------------------------------------------------------------ */

static json_t *
inbound_report_json(const char *name, const struct inbound_msg *m)
{
	const struct bounce_report *r = &m->report;
	json_t *o, *rcpts = json_array();

	for (size_t i = 0; i < r->nrecipients; i++) {
		const struct bounce_recipient *p = &r->recipients[i];

		json_array_append_new(rcpts, json_pack("{s:s, s:s, s:s, s:s, s:i, s:s}",
		    "address", p->final_recipient, "action",
		    bounce_action_name(p->action), "class", bounce_class_name(p->class),
		    "status", p->status, "smtp_code", p->smtp_code, "diagnostic",
		    p->diagnostic));
	}
	o = json_pack("{s:s, s:s, s:s, s:I, s:b, s:o}", "message", name, "kind",
	    bounce_kind_name(r->kind), "detail", r->detail != NULL ? r->detail : "",
	    "size", (json_int_t)r->size, "truncated", r->truncated,
	    "recipients", rcpts);
	if (m->header_problem[0] != '\0')
		json_object_set_new(o, "header_problem", json_string(m->header_problem));
	if (r->verp.kind != BOUNCE_TOKEN_NONE)
		json_object_set_new(o, "verp", json_pack("{s:s, s:s}", "token",
		    r->verp.token, "domain", r->verp.domain));
	if (r->kind == BOUNCE_KIND_ARF)
		json_object_set_new(o, "feedback_type",
		    json_string(r->arf.feedback_type));
	return o;
}

static void
inbound_classify_print(struct cli *cli, const char *name,
    const struct inbound_msg *m)
{
	const struct bounce_report *r = &m->report;

	if (cli->json) {
		json_t *o = inbound_report_json(name, m);
		char *s = json_dumps(o, JSON_COMPACT);

		printf("%s\n", s);
		free(s);
		json_decref(o);
		return;
	}
	printf("%s: %s", name, bounce_kind_name(r->kind));
	if (r->detail != NULL && r->detail[0] != '\0')
		printf(" (%s)", r->detail);
	if (m->header_problem[0] != '\0')
		printf(" [header: %s]", m->header_problem);
	printf("\n");
	for (size_t i = 0; i < r->nrecipients; i++) {
		const struct bounce_recipient *p = &r->recipients[i];

		printf("  %s %s %s %s\n", p->final_recipient[0] != '\0' ?
		    p->final_recipient : "(no address)", bounce_class_name(p->class),
		    p->status[0] != '\0' ? p->status : "-", p->diagnostic);
	}
}

static int
inbound_classify_file(struct cli *cli, const char *path)
{
	struct inbound_msg m;
	struct assent_err err;
	FILE *f;
	int rc;

	if ((f = strcmp(path, "-") == 0 ? stdin : fopen(path, "rb")) == NULL) {
		err_set(&err, EX_NOINPUT, "%s: %s", path, strerror(errno));
		return cli_fail(&err);
	}
	rc = inbound_load(f, NULL, &m, &err);
	if (f != stdin)
		fclose(f);
	if (rc == -1)
		return cli_fail(&err);
	inbound_classify_print(cli, path, &m);
	inbound_free(&m);
	return 0;
}

/* Every file of a Maildir's new/ and cur/, or the one file path. */
static int
inbound_classify_path(struct cli *cli, const char *path)
{
	static const char *const subs[] = { "new", "cur" };
	struct stat st;
	int rc = 0;

	if (strcmp(path, "-") == 0 || stat(path, &st) == -1 || !S_ISDIR(st.st_mode))
		return inbound_classify_file(cli, path);
	for (size_t i = 0; i < 2; i++) {
		char *dir = xasprintf("%s/%s", path, subs[i]);
		struct dirent **names;
		int n = scandir(dir, &names, NULL, alphasort);

		for (int k = 0; k < n; k++) {
			char *file = xasprintf("%s/%s", dir, names[k]->d_name);

			if (names[k]->d_name[0] != '.' && rc == 0)
				rc = inbound_classify_file(cli, file);
			free(file);
			free(names[k]);
		}
		free(n >= 0 ? names : NULL);
		free(dir);
	}
	return rc;
}

/* ---- acting ---------------------------------------------------------------- */

static int
inbound_keys(struct inbound_run *run, struct assent_err *err)
{
	if (run->signer != NULL)
		return 0;
	if (keys_load(run->cli->conf->tokens_keys_file, &run->keys, err) == -1)
		return -1;
	return token_signer_new(run->keys, &run->signer, err);
}

static bool
inbound_our_domain(const struct inbound_run *run, const char *domain)
{
	const char *ours = run->cli->conf->sender_bounce_domain;

	return ours != NULL && *ours != '\0' && strcasecmp(domain, ours) == 0;
}

static void
inbound_say_unsubscribed(struct inbound_run *run, const char *recipient,
    const struct optout_result *r)
{
	const char *what = !r->changed ? "already unsubscribed" : "unsubscribed";

	if (run->cli->json) {
		json_t *o = json_pack("{s:s, s:s, s:s, s:b}", "recipient", recipient,
		    "action", "unsubscribe", "list", r->list_name, "changed",
		    r->changed);

		out_json(o);
		json_decref(o);
	} else if (r->list_name[0] != '\0')
		printf("%s: %s from list %s\n", recipient, what, r->list_name);
	else
		printf("%s: %s\n", recipient, what);
}

/* The mailto unsubscribe: a u- token at our bounce domain, in the
 * envelope recipient when the MTA gave one. */
static enum inbound_fate
inbound_mailto(struct inbound_run *run, const struct bounce_report *r,
    struct assent_err *err)
{
	char recipient[TOKEN_COMPACT_TEXT_SIZE + BOUNCE_HOST_MAX + 8];
	struct token_compact c;
	struct optout_result res;

	snprintf(recipient, sizeof(recipient), "u-%s@%s", r->verp.token,
	    r->verp.domain);
	if ((run->given != NULL && *run->given != '\0' &&
	    r->verp.source != BOUNCE_SOURCE_ENVELOPE) ||
	    !inbound_our_domain(run, r->verp.domain) ||
	    inbound_keys(run, err) == -1 ||
	    token_compact_verify(run->signer, r->verp.token, TOKEN_UNSUBSCRIBE,
	    (int64_t)time(NULL), &c, err) == -1) {
		err_set(err, EX_NOUSER, "%.200s: no such recipient here",
		    run->given != NULL && *run->given != '\0' ? run->given : recipient);
		return INBOUND_REJECTED;
	}
	if (cli_db(run->cli, false) != 0) {
		err_set(err, EX_TEMPFAIL, "the database cannot be reached");
		return INBOUND_RETRY;
	}
	if (optout_mailto(run->cli->conn, run->signer, r->verp.token,
	    (int64_t)time(NULL), &res, err) == -1)
		return err->code == EX_NOUSER ? INBOUND_REJECTED : INBOUND_RETRY;
	inbound_say_unsubscribed(run, recipient, &res);
	return INBOUND_DONE;
}

static void
inbound_say_intake(struct inbound_run *run, const struct bounce_report *r,
    const struct intake_result *res)
{
	if (run->cli->json) {
		json_t *o = json_pack("{s:s, s:b, s:s, s:I, s:I, s:i, s:i, s:i, s:i,"
		    " s:i, s:i}", "kind", bounce_kind_name(r->kind), "attributed",
		    res->attributed, "attributed_by", res->attributed_by,
		    "delivery_id", (json_int_t)res->delivery_id, "notice_id",
		    (json_int_t)res->notice_id, "hard", (int)res->hard, "soft",
		    (int)res->soft, "policy", (int)res->policy, "complaints",
		    (int)res->complaints, "suppressed", (int)res->suppressed,
		    "unsubscribed", (int)res->unsubscribed);

		out_json(o);
		json_decref(o);
		return;
	}
	printf("%s: %s", bounce_kind_name(r->kind), res->attributed ?
	    "attributed" : "not attributed (stored, nothing done)");
	if (res->delivery_id != 0)
		printf(" to delivery %lld", res->delivery_id);
	if (res->notice_id != 0)
		printf(" to confirmation request %lld", res->notice_id);
	printf("; %ld hard, %ld soft, %ld policy, %ld complaint; %ld suppressed, "
	    "%ld unsubscribed\n", res->hard, res->soft, res->policy,
	    res->complaints, res->suppressed, res->unsubscribed);
}

static enum inbound_fate
inbound_intake(struct inbound_run *run, const struct inbound_msg *m,
    struct assent_err *err)
{
	struct intake_ctx ctx;
	struct intake_result res;

	if (inbound_keys(run, err) == -1)
		return INBOUND_RETRY;
	if (cli_db(run->cli, false) != 0) {
		err_set(err, EX_TEMPFAIL, "the database cannot be reached");
		return INBOUND_RETRY;
	}
	ctx.conf = run->cli->conf;
	ctx.signer = run->signer;
	ctx.added_by = "assent inbound";
	if (intake_report(run->cli->conn, &ctx, &m->report, m->len, &res, err) == -1)
		return INBOUND_RETRY;
	inbound_say_intake(run, &m->report, &res);
	return INBOUND_DONE;
}

/* What to do with m; err says why for REJECTED and RETRY. */
static enum inbound_fate
inbound_act(struct inbound_run *run, const struct inbound_msg *m,
    struct assent_err *err)
{
	const struct bounce_report *r = &m->report;

	if (m->header_problem[0] != '\0') {
		err_set(err, EX_DATAERR, "%s", m->header_problem);
		return INBOUND_REJECTED;
	}
	switch (r->kind) {
	case BOUNCE_KIND_MAILTO_UNSUBSCRIBE:
		return inbound_mailto(run, r, err);
	case BOUNCE_KIND_DSN:
	case BOUNCE_KIND_ARF:
		return inbound_intake(run, m, err);
	case BOUNCE_KIND_AUTO_REPLY:
		if (!run->cli->json)
			printf("auto-reply: ignored\n");
		return INBOUND_IGNORED;
	case BOUNCE_KIND_UNKNOWN:
		break;
	}
	err_set(err, EX_DATAERR, "not a bounce, complaint, auto-reply or "
	    "unsubscribe (%s)", r->detail != NULL ? r->detail : "unknown");
	return INBOUND_REJECTED;
}

/* ---- the reject folder ------------------------------------------------------ */

/* Keep data in dir as a new file of its own (mode 0600), named by time,
 * pid and a counter, written under a temporary name first. */
static int
inbound_reject_save(const char *dir, const char *data, size_t len,
    char *name_r, size_t name_size, struct assent_err *err)
{
	static unsigned long seq;
	char tmp[4096];
	ssize_t w;
	size_t off = 0;
	int fd;

	snprintf(name_r, name_size, "%s/%lld.%ld.%lu.eml", dir,
	    (long long)time(NULL), (long)getpid(), ++seq);
	snprintf(tmp, sizeof(tmp), "%s.tmp", name_r);
	if ((fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC,
	    0600)) == -1)
		return err_set(err, EX_CANTCREAT, "%s: %s", tmp, strerror(errno));
	while (off < len) {
		if ((w = write(fd, data + off, len - off)) == -1) {
			if (errno == EINTR)
				continue;
			err_set(err, EX_IOERR, "%s: %s", tmp, strerror(errno));
			break;
		}
		off += (size_t)w;
	}
	if (off < len || fsync(fd) == -1 || close(fd) == -1 ||
	    rename(tmp, name_r) == -1) {
		if (off >= len)
			err_set(err, EX_IOERR, "%s: %s", name_r, strerror(errno));
		unlink(tmp);
		return -1;
	}
	return 0;
}

/* ---- one message on standard input ------------------------------------------- */

static int
inbound_one(struct inbound_run *run)
{
	struct inbound_msg m;
	struct assent_err err;
	char saved[4200];
	int rc = 0;

	err_clear(&err);
	if (inbound_load(stdin, run->given, &m, &err) == -1)
		return cli_fail(&err);
	switch (inbound_act(run, &m, &err)) {
	case INBOUND_DONE:
	case INBOUND_IGNORED:
		break;
	case INBOUND_RETRY:
		rc = cli_fail(&err);
		break;
	case INBOUND_REJECTED:
		if (run->reject_dir == NULL) {
			rc = cli_fail(&err);    /* the MTA returns it: not lost */
			break;
		}
		fprintf(stderr, "assent: %s\n", err.msg);
		if (inbound_reject_save(run->reject_dir, m.data, m.len, saved,
		    sizeof(saved), &err) == -1)
			rc = cli_fail(&err);
		else
			fprintf(stderr, "assent: kept as %s\n", saved);
		break;
	}
	inbound_free(&m);
	return rc;
}

/* ---- a Maildir ----------------------------------------------------------------- */

/* Handled: new/NAME to cur/NAME:2,S (seen). */
static int
inbound_maildir_done(const char *maildir, const char *name, struct assent_err *err)
{
	char *from = xasprintf("%s/new/%s", maildir, name);
	char *to = xasprintf("%s/cur/%s:2,S", maildir, name);
	int rc = 0;

	if (rename(from, to) == -1)
		rc = err_set(err, EX_IOERR, "%s: %s", from, strerror(errno));
	free(from);
	free(to);
	return rc;
}

/* One file of new/: returns -1 only when the run must stop (the
 * database, or a file that cannot be moved). */
static int
inbound_maildir_one(struct inbound_run *run, const char *maildir,
    const char *name, struct assent_err *err)
{
	char *path = xasprintf("%s/new/%s", maildir, name), saved[4200];
	struct inbound_msg m;
	FILE *f;
	int rc = 0;

	if ((f = fopen(path, "rb")) == NULL) {
		free(path);
		return 0;               /* taken meanwhile by another run */
	}
	rc = inbound_load(f, NULL, &m, err);
	fclose(f);
	if (rc == -1) {
		free(path);
		return -1;
	}
	switch (inbound_act(run, &m, err)) {
	case INBOUND_DONE:
		run->done++;
		rc = inbound_maildir_done(maildir, name, err);
		break;
	case INBOUND_IGNORED:
		run->ignored++;
		rc = inbound_maildir_done(maildir, name, err);
		break;
	case INBOUND_RETRY:
		rc = -1;
		break;
	case INBOUND_REJECTED:
		fprintf(stderr, "assent: %s: %s\n", path, err->msg);
		if (run->reject_dir == NULL) {
			run->kept++;    /* stays in new/, said once per run */
			break;
		}
		if ((rc = inbound_reject_save(run->reject_dir, m.data, m.len, saved,
		    sizeof(saved), err)) == 0 && unlink(path) == -1)
			rc = err_set(err, EX_IOERR, "%s: %s", path, strerror(errno));
		run->rejected++;
		break;
	}
	inbound_free(&m);
	free(path);
	return rc;
}

static int
inbound_maildir(struct inbound_run *run, const char *maildir)
{
	char *dir = xasprintf("%s/new", maildir);
	struct dirent **names;
	struct assent_err err;
	int n, rc = 0;

	err_clear(&err);
	if ((n = scandir(dir, &names, NULL, alphasort)) == -1) {
		err_set(&err, EX_NOINPUT, "%s: %s", dir, strerror(errno));
		free(dir);
		return cli_fail(&err);
	}
	for (int k = 0; k < n; k++) {
		if (rc == 0 && names[k]->d_name[0] != '.' &&
		    inbound_maildir_one(run, maildir, names[k]->d_name, &err) == -1)
			rc = cli_fail(&err);
		free(names[k]);
	}
	free(names);
	free(dir);
	if (run->cli->json) {
		json_t *o = json_pack("{s:i, s:i, s:i, s:i}", "done", (int)run->done,
		    "ignored", (int)run->ignored, "rejected", (int)run->rejected,
		    "kept", (int)run->kept);

		out_json(o);
		json_decref(o);
	} else
		printf("%s: %ld handled, %ld ignored, %ld rejected, %ld left in new/\n",
		    maildir, run->done, run->ignored, run->rejected, run->kept);
	return rc;
}

/* ---- the command ----------------------------------------------------------------- */

int
cmd_inbound(struct cli *cli, int argc, char **argv)
{
	const char *maildir = NULL;
	bool classify = false;
	struct inbound_run run = { .cli = cli };
	const struct cli_opt opts[] = {
		{ "recipient", &run.given, NULL }, { "reject", &run.reject_dir, NULL },
		{ "maildir", &maildir, NULL }, { "classify", NULL, &classify },
		{ NULL, NULL, NULL },
	};
	char *args[64];
	int rc, n;

	/* cli_parse() expects the command's own name first */
	if ((rc = cli_parse(cli, &inbound_cmd, "assent", argc + 1, argv - 1, opts,
	    args, &n)) != 0)
		return rc < 0 ? 0 : rc;
	bounce_init();
	if (classify) {
		if (maildir != NULL || run.given != NULL || run.reject_dir != NULL)
			return cli_usage_error("inbound --classify takes files or "
			    "Maildirs only, and changes nothing");
		rc = n == 0 ? inbound_classify_path(cli, "-") : 0;
		for (int i = 0; i < n && rc == 0; i++)
			rc = inbound_classify_path(cli, args[i]);
		bounce_shutdown();
		return rc;
	}
	if (n > 0)
		return cli_usage_error("inbound: files go with --classify; a message "
		    "to act on comes on standard input, or from --maildir DIR");
	if (maildir != NULL && run.given != NULL)
		return cli_usage_error("inbound: --recipient goes with one message "
		    "on standard input, not with --maildir");
	if ((rc = cli_conf(cli)) != 0)
		return rc;
	rc = maildir != NULL ? inbound_maildir(&run, maildir) : inbound_one(&run);
	token_signer_free(run.signer);
	keys_free(run.keys);
	bounce_shutdown();
	return rc;
}

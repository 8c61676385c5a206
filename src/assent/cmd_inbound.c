/* assent inbound: what comes back to the bounce domain. One message on
 * standard input (an MTA's pipe transport), every new message of a
 * Maildir, or --classify to see what would be done. Reading and
 * classifying is bounce.h's; acting, intake.h's and optout.h's. */
#include <sys/file.h>
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

/* A name to classify in a folder: not a dot file, not a NAME.tmp (a
 * reject-folder copy that a crash left incomplete). */
static bool
inbound_classify_wanted(const char *name)
{
	size_t n = strlen(name);

	return name[0] != '.' && !(n >= 4 && strcmp(name + n - 4, ".tmp") == 0);
}

/* Every regular file of dir (sorted) that inbound_classify_wanted(). */
static int
inbound_classify_dir(struct cli *cli, const char *dir)
{
	struct dirent **names;
	struct stat st;
	int n = scandir(dir, &names, NULL, alphasort), rc = 0;

	for (int k = 0; k < n; k++) {
		char *file = xasprintf("%s/%s", dir, names[k]->d_name);

		if (rc == 0 && inbound_classify_wanted(names[k]->d_name) &&
		    stat(file, &st) == 0 && S_ISREG(st.st_mode))
			rc = inbound_classify_file(cli, file);
		free(file);
		free(names[k]);
	}
	free(n >= 0 ? names : NULL);
	return rc;
}

/* Every file of a Maildir's new/ and cur/; of a plain folder (such as
 * the reject folder); or the one file path. */
static int
inbound_classify_path(struct cli *cli, const char *path)
{
	static const char *const subs[] = { "new", "cur" };
	struct stat st;
	char *dir;
	int rc = 0;

	if (strcmp(path, "-") == 0 || stat(path, &st) == -1 || !S_ISDIR(st.st_mode))
		return inbound_classify_file(cli, path);
	dir = xasprintf("%s/new", path);
	if (stat(dir, &st) == -1 || !S_ISDIR(st.st_mode)) {
		free(dir);
		return inbound_classify_dir(cli, path);
	}
	free(dir);
	for (size_t i = 0; i < 2 && rc == 0; i++) {
		dir = xasprintf("%s/%s", path, subs[i]);
		rc = inbound_classify_dir(cli, dir);
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
	bool ours;

	snprintf(recipient, sizeof(recipient), "u-%s@%s", r->verp.token,
	    r->verp.domain);
	ours = (run->given == NULL || *run->given == '\0' ||
	    r->verp.source == BOUNCE_SOURCE_ENVELOPE) &&
	    inbound_our_domain(run, r->verp.domain);
	if (ours && inbound_keys(run, err) == -1)
		return INBOUND_RETRY;   /* ours to fix, not the sender's */
	if (!ours || token_compact_verify(run->signer, r->verp.token,
	    TOKEN_UNSUBSCRIBE, (int64_t)time(NULL), &c, err) == -1) {
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

/* A message is kept whole in the reject folder: written (or copied)
 * under NAME.eml.tmp, fsync()ed, renamed to NAME.eml, and the folder
 * fsync()ed, so that a crash leaves either nothing, a whole NAME.eml,
 * or a NAME.eml.tmp that nothing reads (the operator may delete it).
 * Names are time.pid.counter: unique between runs. */

static int
inbound_sync_dir(const char *dir, struct assent_err *err)
{
	int fd, rc = 0;

	if ((fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC)) == -1)
		return err_set(err, EX_IOERR, "%s: %s", dir, strerror(errno));
	if (fsync(fd) == -1)
		rc = err_set(err, EX_IOERR, "%s: %s", dir, strerror(errno));
	close(fd);
	return rc;
}

static void
inbound_reject_name(const char *dir, char *name_r, size_t name_size)
{
	static unsigned long seq;

	snprintf(name_r, name_size, "%s/%lld.%ld.%lu.eml", dir,
	    (long long)time(NULL), (long)getpid(), ++seq);
}

/* A new temporary in dir (read-write, mode 0600): *fd_r, its name in
 * tmp_r and the name it is to get in name_r. */
static int
inbound_reject_open(const char *dir, char *name_r, size_t name_size,
    char *tmp_r, size_t tmp_size, int *fd_r, struct assent_err *err)
{
	inbound_reject_name(dir, name_r, name_size);
	snprintf(tmp_r, tmp_size, "%s.tmp", name_r);
	if ((*fd_r = open(tmp_r, O_RDWR | O_CREAT | O_EXCL | O_NOFOLLOW |
	    O_CLOEXEC, 0600)) == -1)
		return err_set(err, EX_CANTCREAT, "%s: %s", tmp_r, strerror(errno));
	return 0;
}

static void
inbound_reject_abandon(int fd, const char *tmp)
{
	close(fd);
	unlink(tmp);
}

/* The temporary is complete: to disk, then to its name. Closes fd;
 * the temporary is removed on failure. */
static int
inbound_reject_commit(int fd, const char *dir, const char *tmp,
    const char *name, struct assent_err *err)
{
	if (fsync(fd) == -1) {
		err_set(err, EX_IOERR, "%s: %s", tmp, strerror(errno));
		inbound_reject_abandon(fd, tmp);
		return -1;
	}
	if (close(fd) == -1) {
		err_set(err, EX_IOERR, "%s: %s", tmp, strerror(errno));
		unlink(tmp);
		return -1;
	}
	if (rename(tmp, name) == -1) {
		err_set(err, EX_IOERR, "%s: %s", name, strerror(errno));
		unlink(tmp);
		return -1;
	}
	return inbound_sync_dir(dir, err);
}

/* Everything from in to out, however long. */
static int
inbound_copy_fd(int in, int out, const char *in_name, const char *out_name,
    struct assent_err *err)
{
	char buf[65536];
	ssize_t r, w;

	for (;;) {
		if ((r = read(in, buf, sizeof(buf))) == 0)
			return 0;
		if (r == -1) {
			if (errno == EINTR)
				continue;
			return err_set(err, EX_IOERR, "%s: %s", in_name,
			    strerror(errno));
		}
		for (ssize_t off = 0; off < r; off += w)
			if ((w = write(out, buf + off, (size_t)(r - off))) == -1) {
				if (errno != EINTR)
					return err_set(err, EX_IOERR, "%s: %s",
					    out_name, strerror(errno));
				w = 0;
			}
	}
}

/* Move the file path (a Maildir's, read and rejected) into dir: a
 * rename, or on another file system a copy, then the original goes. */
static int
inbound_reject_move(const char *dir, const char *path, char *name_r,
    size_t name_size, struct assent_err *err)
{
	char tmp[4300];
	int in, out;

	inbound_reject_name(dir, name_r, name_size);
	if (rename(path, name_r) == 0)
		return inbound_sync_dir(dir, err);
	if (errno != EXDEV)
		return err_set(err, EX_IOERR, "%s to %s: %s", path, name_r,
		    strerror(errno));
	if ((in = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC)) == -1)
		return err_set(err, EX_IOERR, "%s: %s", path, strerror(errno));
	if (inbound_reject_open(dir, name_r, name_size, tmp, sizeof(tmp), &out,
	    err) == -1) {
		close(in);
		return -1;
	}
	if (inbound_copy_fd(in, out, path, tmp, err) == -1) {
		close(in);
		inbound_reject_abandon(out, tmp);
		return -1;
	}
	close(in);
	if (inbound_reject_commit(out, dir, tmp, name_r, err) == -1)
		return -1;
	if (unlink(path) == -1)
		return err_set(err, EX_IOERR, "%s: %s", path, strerror(errno));
	return 0;
}

/* ---- one message on standard input ------------------------------------------- */

/* An MTA's pipe transport reads the exit code: EX_TEMPFAIL (75) keeps
 * the message queued and tries again later; most others return it to
 * its sender, which for a DSN (null sender) is the postmaster, and
 * assent never sees it again. So every failure of ours (database,
 * keys file, reject folder, reading) is 75; only a message that is not
 * ours and has nowhere to go is refused (65 or 67). */
static int
inbound_tempfail(const struct assent_err *err)
{
	cli_fail(err);
	return EX_TEMPFAIL;
}

/* With --reject, standard input is first spooled whole to a temporary
 * of the reject folder (a message above BOUNCE_INPUT_MAX is parsed in
 * part but kept whole); sp->fd is -1 without --reject. */
struct inbound_spool {
	int fd;
	char name[4200];
	char tmp[4300];
};

static int
inbound_spool_load(struct inbound_run *run, struct inbound_spool *sp,
    struct inbound_msg *m, struct assent_err *err)
{
	FILE *f = NULL;
	int fd2 = -1, rc;

	sp->fd = -1;
	if (run->reject_dir == NULL)
		return inbound_load(stdin, run->given, m, err);
	if (inbound_reject_open(run->reject_dir, sp->name, sizeof(sp->name),
	    sp->tmp, sizeof(sp->tmp), &sp->fd, err) == -1)
		return -1;
	if (inbound_copy_fd(STDIN_FILENO, sp->fd, "standard input", sp->tmp,
	    err) == -1 || lseek(sp->fd, 0, SEEK_SET) == -1 ||
	    (fd2 = dup(sp->fd)) == -1 || (f = fdopen(fd2, "rb")) == NULL) {
		if (err->msg[0] == '\0')
			err_set(err, EX_IOERR, "%s: %s", sp->tmp, strerror(errno));
		if (fd2 != -1)
			close(fd2);
		inbound_reject_abandon(sp->fd, sp->tmp);
		sp->fd = -1;
		return -1;
	}
	rc = inbound_load(f, run->given, m, err);
	fclose(f);
	if (rc == -1) {
		inbound_reject_abandon(sp->fd, sp->tmp);
		sp->fd = -1;
	}
	return rc;
}

static int
inbound_one(struct inbound_run *run)
{
	struct inbound_spool sp;
	struct inbound_msg m;
	struct assent_err err;
	int rc = 0;

	err_clear(&err);
	if (inbound_spool_load(run, &sp, &m, &err) == -1)
		return inbound_tempfail(&err);
	switch (inbound_act(run, &m, &err)) {
	case INBOUND_DONE:
	case INBOUND_IGNORED:
		break;
	case INBOUND_RETRY:
		rc = inbound_tempfail(&err);
		break;
	case INBOUND_REJECTED:
		if (sp.fd == -1) {
			rc = cli_fail(&err);    /* the MTA returns it: not lost */
			break;
		}
		fprintf(stderr, "assent: %s\n", err.msg);
		rc = inbound_reject_commit(sp.fd, run->reject_dir, sp.tmp, sp.name,
		    &err);
		sp.fd = -1;
		if (rc == -1)
			rc = inbound_tempfail(&err);
		else
			fprintf(stderr, "assent: kept as %s\n", sp.name);
		break;
	}
	if (sp.fd != -1)
		inbound_reject_abandon(sp.fd, sp.tmp);
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

/* Read new/NAME into m: true when read. An entry that is gone (taken
 * by another run) is skipped in silence; one that is not a regular
 * file or cannot be read is said on stderr, counted as left in new/,
 * and skipped: it must not stop the messages after it. The open does
 * not block (a FIFO) nor follow a symbolic link. */
static bool
inbound_maildir_read(struct inbound_run *run, const char *path,
    struct inbound_msg *m)
{
	struct assent_err err;
	struct stat st;
	FILE *f;
	int fd;

	err_clear(&err);
	if ((fd = open(path, O_RDONLY | O_NONBLOCK | O_NOFOLLOW | O_CLOEXEC)) == -1) {
		if (errno == ENOENT)
			return false;
		err_set(&err, EX_IOERR, "%s: %s", path, strerror(errno));
	} else if (fstat(fd, &st) == -1)
		err_set(&err, EX_IOERR, "%s: %s", path, strerror(errno));
	else if (!S_ISREG(st.st_mode))
		err_set(&err, EX_DATAERR, "%s: not a regular file", path);
	else if ((f = fdopen(fd, "rb")) == NULL)
		err_set(&err, EX_OSERR, "%s: %s", path, strerror(errno));
	else {
		fd = -1;
		if (inbound_load(f, NULL, m, &err) == -1) {
			char why[ASSENT_ERR_MSG_MAX];

			snprintf(why, sizeof(why), "%s", err.msg);
			err_set(&err, EX_IOERR, "%s: %s", path, why);
		}
		fclose(f);
	}
	if (fd != -1)
		close(fd);
	if (err.msg[0] == '\0')
		return true;
	fprintf(stderr, "assent: %s; left in new/\n", err.msg);
	run->kept++;
	return false;
}

/* One file of new/: returns -1 only when the run must stop (the
 * database, the reject folder, or a file that cannot be moved). */
static int
inbound_maildir_one(struct inbound_run *run, const char *maildir,
    const char *name, struct assent_err *err)
{
	char *path = xasprintf("%s/new/%s", maildir, name), saved[4200];
	struct inbound_msg m;
	int rc = 0;

	if (!inbound_maildir_read(run, path, &m)) {
		free(path);
		return 0;
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
		/* the file itself, not what was read: never cut */
		if ((rc = inbound_reject_move(run->reject_dir, path, saved,
		    sizeof(saved), err)) == 0)
			run->rejected++;
		break;
	}
	inbound_free(&m);
	free(path);
	return rc;
}

/* One run a Maildir at a time: two would handle a message twice.
 * 0 with *fd_r held until exit, 1 when another run holds it. */
static int
inbound_maildir_lock(const char *maildir, int *fd_r, struct assent_err *err)
{
	char *path = xasprintf("%s/.assent-inbound.lock", maildir);
	int rc = 0;

	if ((*fd_r = open(path, O_RDWR | O_CREAT | O_NOFOLLOW | O_CLOEXEC,
	    0600)) == -1)
		rc = err_set(err, errno == ENOENT ? EX_NOINPUT : EX_CANTCREAT,
		    "%s: %s", path, strerror(errno));
	else if (flock(*fd_r, LOCK_EX | LOCK_NB) == -1) {
		if (errno == EWOULDBLOCK)
			rc = 1;
		else
			rc = err_set(err, EX_OSERR, "%s: %s", path, strerror(errno));
		close(*fd_r);
		*fd_r = -1;
	}
	free(path);
	return rc;
}

static void
inbound_maildir_say(const struct inbound_run *run, const char *maildir)
{
	if (run->cli->json) {
		json_t *o = json_pack("{s:i, s:i, s:i, s:i}", "done", (int)run->done,
		    "ignored", (int)run->ignored, "rejected", (int)run->rejected,
		    "kept", (int)run->kept);

		out_json(o);
		json_decref(o);
	} else
		printf("%s: %ld handled, %ld ignored, %ld rejected, %ld left in new/\n",
		    maildir, run->done, run->ignored, run->rejected, run->kept);
}

/* The database gone or the reject folder failing stops the run with
 * EX_TEMPFAIL: what is left in new/ waits for the next. */
static int
inbound_maildir(struct inbound_run *run, const char *maildir)
{
	char *dir = xasprintf("%s/new", maildir);
	struct dirent **names;
	struct assent_err err;
	int n, lock, rc = 0;

	err_clear(&err);
	if ((rc = inbound_maildir_lock(maildir, &lock, &err)) != 0) {
		free(dir);
		if (rc == -1)
			return cli_fail(&err);
		fprintf(stderr, "assent: %s: another assent inbound is at work on "
		    "it; nothing done\n", maildir);
		return 0;
	}
	if ((n = scandir(dir, &names, NULL, alphasort)) == -1) {
		err_set(&err, EX_NOINPUT, "%s: %s", dir, strerror(errno));
		free(dir);
		close(lock);
		return cli_fail(&err);
	}
	for (int k = 0; k < n; k++) {
		if (rc == 0 && names[k]->d_name[0] != '.' &&
		    inbound_maildir_one(run, maildir, names[k]->d_name, &err) == -1)
			rc = inbound_tempfail(&err);
		free(names[k]);
	}
	free(names);
	free(dir);
	inbound_maildir_say(run, maildir);
	close(lock);
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
	/* on a pipe, a configuration that does not load is the operator's to
	 * fix: the MTA keeps the message meanwhile */
	if ((rc = cli_conf(cli)) != 0)
		return maildir == NULL ? EX_TEMPFAIL : rc;
	rc = maildir != NULL ? inbound_maildir(&run, maildir) : inbound_one(&run);
	token_signer_free(run.signer);
	keys_free(run.keys);
	bounce_shutdown();
	return rc;
}

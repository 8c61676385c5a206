/* transport: hand messages to the SMTP relay; see include/assent/transport.h */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
/* auth-client.h first: libesmtp.h declares smtp_auth_set_context() only
 * when it has been included. openssl/ssl.h first too, for
 * smtp_starttls_set_ctx(). */
#include <auth-client.h>
#include <libesmtp.h>

#include "assent/text.h"
#include "assent/transport.h"
#include "assent/xmalloc.h"

#define TRANSPORT_PASSWORD_MAX 1024
#define TRANSPORT_REASON_MAX   400
#define TRANSPORT_LINE_MAX     160
#define TRANSPORT_EHLO_LINE    32

struct transport {
	char *host;
	int port;
	char *hostport;                 /* "host:port" for libesmtp */
	enum conf_starttls starttls;
	bool tls_verify;
	char *user;                     /* NULL: no AUTH */
	char *password;                 /* wiped in transport_free() */
	char *helo;                     /* NULL: the host name */
	int timeout;
	SSL_CTX *tls_ctx;               /* NULL when starttls is off */
	struct buf data;                /* the one rendered message */
};

struct transport_session;

/* One message of a transport_send() call. */
struct transport_item {
	struct transport_session *ss;
	size_t index;
	smtp_message_t message;
	smtp_recipient_t recipient;
	bool data_requested;            /* libesmtp asked for its data */
	bool abandoned;                 /* its data was refused: see below */
	bool done;                      /* libesmtp read its last reply */
};

enum transport_auth_state {
	TRANSPORT_AUTH_NONE,            /* no AUTH command seen */
	TRANSPORT_AUTH_PENDING,         /* AUTH sent, no final reply yet */
	TRANSPORT_AUTH_OK,
	TRANSPORT_AUTH_FAILED,
};

enum transport_tls_state {
	TRANSPORT_TLS_NONE,
	TRANSPORT_TLS_ASKED,            /* STARTTLS sent */
	TRANSPORT_TLS_HANDSHAKE,        /* the relay said 220 to it */
	TRANSPORT_TLS_UP,               /* libesmtp accepted the session */
};

/* The state of one transport_send() call, shared by the callbacks. */
struct transport_session {
	struct transport *t;
	smtp_session_t session;
	struct transport_item *items;
	size_t n;
	transport_fill_fn fill;
	transport_pace_fn pace;
	void *arg;
	size_t loaded;                  /* the index in t->data; SIZE_MAX: none */
	size_t pos;                     /* read position in t->data */
	bool refuse_data;               /* give no more message data */
	size_t mail_refused;            /* first refused MAIL; SIZE_MAX: none */
	enum transport_auth_state auth;
	char auth_reply[TRANSPORT_LINE_MAX];
	enum transport_tls_state tls;
	bool envelope;                  /* a MAIL FROM went out */
	char ehlo_line[TRANSPORT_EHLO_LINE]; /* the reply line being read */
	size_t ehlo_len;                /* > sizeof: a longer line */
	int fatal_code;                 /* set with fatal */
	char fatal[TRANSPORT_REASON_MAX]; /* the whole error message */
	char error_reply[TRANSPORT_LINE_MAX]; /* last 4xx/5xx reply line */
	struct timespec start;
};

static pthread_once_t transport_auth_once = PTHREAD_ONCE_INIT;

static void
transport_auth_init(void)
{
	auth_client_init();
}

/* Copy text to dst (size > 0) on one line: control characters become
 * spaces, trailing spaces go, and a cut never splits a UTF-8 sequence. */
static void
transport_sanitize(char *dst, size_t size, const char *text, size_t len)
{
	size_t i, n = len < size - 1 ? len : size - 1;

	for (i = 0; i < n; i++) {
		unsigned char c = (unsigned char)text[i];

		dst[i] = (c < 0x20 || c == 0x7f) ? ' ' : (char)c;
	}
	/* Cut inside a UTF-8 sequence: drop the start of it too. */
	if (n < len && ((unsigned char)text[n] & 0xc0) == 0x80) {
		while (n > 0 && ((unsigned char)dst[n - 1] & 0xc0) == 0x80)
			n--;
		if (n > 0 && ((unsigned char)dst[n - 1] & 0xc0) == 0xc0)
			n--;
	}
	while (n > 0 && dst[n - 1] == ' ')
		n--;
	dst[n] = '\0';
}

/* Record the whole message saying why the session cannot go on; the
 * first one wins, as later events are usually consequences of it. */
static void __attribute__((format(printf, 3, 4)))
transport_fatal_msg(struct transport_session *ss, int code, const char *fmt,
    ...)
{
	va_list ap;

	if (ss->fatal[0] != '\0')
		return;
	ss->fatal_code = code;
	va_start(ap, fmt);
	vsnprintf(ss->fatal, sizeof(ss->fatal), fmt, ap);
	va_end(ap);
}

/* The same as "SMTP relay HOST:PORT: reason". */
static void __attribute__((format(printf, 3, 4)))
transport_fatal(struct transport_session *ss, int code, const char *fmt, ...)
{
	char reason[TRANSPORT_REASON_MAX];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(reason, sizeof(reason), fmt, ap);
	va_end(ap);
	transport_fatal_msg(ss, code, "SMTP relay %s: %s", ss->t->hostport,
	    reason);
}

/* ---- password file and options ------------------------------------ */

static int
transport_read_password(const char *path, char **password_r,
    struct assent_err *err)
{
	char buf[TRANSPORT_PASSWORD_MAX + 2];
	size_t got = 0, len;
	ssize_t r;
	int fd, rc = -1;

	if (path == NULL || path[0] == '\0')
		return err_set(err, EX_CONFIG, "smtp.user is set but "
		    "smtp.password_file is not");
	if ((fd = open(path, O_RDONLY | O_CLOEXEC)) == -1)
		return err_set(err, EX_CONFIG, "smtp.password_file: %s: %s",
		    path, strerror(errno));
	while (got < sizeof(buf) - 1 &&
	    (r = read(fd, buf + got, sizeof(buf) - 1 - got)) != 0) {
		if (r == -1 && errno == EINTR)
			continue;
		if (r == -1) {
			err_set(err, EX_CONFIG, "smtp.password_file: %s: %s",
			    path, strerror(errno));
			goto done;
		}
		got += (size_t)r;
	}
	buf[got] = '\0';
	len = strcspn(buf, "\r\n");
	if (len == 0)
		err_set(err, EX_CONFIG, "smtp.password_file: %s: the first "
		    "line is empty", path);
	else if (len > TRANSPORT_PASSWORD_MAX)
		err_set(err, EX_CONFIG, "smtp.password_file: %s: the first "
		    "line is longer than %d bytes", path,
		    TRANSPORT_PASSWORD_MAX);
	else {
		*password_r = xstrndup(buf, len);
		rc = 0;
	}
done:
	explicit_bzero(buf, sizeof(buf));
	close(fd);
	return rc;
}

static int
transport_tls_setup(struct transport *t, const char *ca_file,
    struct assent_err *err)
{
	/* Our own SSL_CTX, not libesmtp's default one: libesmtp 1.1.0
	 * hands every session one static SSL_CTX without taking a
	 * reference and smtp_destroy_session() frees it, so a second TLS
	 * session in the process would use freed memory.
	 * smtp_starttls_set_ctx() takes a reference. The default one
	 * also reads CAs and client keys from ~/.authenticate. */
	t->tls_ctx = SSL_CTX_new(TLS_client_method());
	if (t->tls_ctx == NULL)
		return err_set(err, EX_SOFTWARE, "cannot make a TLS context");
	/* TLS 1.2 only: with TLS 1.3, libesmtp 1.1.0 often fails to read
	 * the EHLO reply after STARTTLS ("SMTP server dropped connection",
	 * in about half of the sessions against aiosmtpd; the records the
	 * server sends after the handshake seem to trip its reader). */
	SSL_CTX_set_min_proto_version(t->tls_ctx, TLS1_2_VERSION);
	SSL_CTX_set_max_proto_version(t->tls_ctx, TLS1_2_VERSION);
	if (ca_file == NULL || ca_file[0] == '\0') {
		if (SSL_CTX_set_default_verify_paths(t->tls_ctx) != 1)
			return err_set(err, EX_CONFIG, "cannot load the "
			    "system's trusted certificates");
	} else if (SSL_CTX_load_verify_locations(t->tls_ctx, ca_file,
	    NULL) != 1) {
		ERR_clear_error();
		return err_set(err, EX_CONFIG, "cannot load trusted "
		    "certificates from %s", ca_file);
	}
	return 0;
}

int
transport_new(const struct transport_opts *opts, struct transport **t_r,
    struct assent_err *err)
{
	struct transport *t;

	*t_r = NULL;
	transport_socket_use();
	if (opts->host == NULL || opts->host[0] == '\0')
		return err_set(err, EX_CONFIG, "smtp.host is empty");
	/* libesmtp splits "host:port" at the first colon. */
	if (strchr(opts->host, ':') != NULL)
		return err_set(err, EX_CONFIG, "smtp.host: %s: IPv6 address "
		    "literals are not supported; use a host name",
		    opts->host);
	if (opts->port < 1 || opts->port > 65535)
		return err_set(err, EX_CONFIG, "smtp.port: %d is out of range",
		    opts->port);
	t = xcalloc(1, sizeof(*t));
	t->host = xstrdup(opts->host);
	t->port = opts->port;
	t->hostport = xasprintf("%s:%d", opts->host, opts->port);
	t->starttls = opts->starttls;
	t->tls_verify = opts->tls_verify;
	t->timeout = opts->timeout > 0 ? opts->timeout : 300;
	if (opts->helo != NULL && opts->helo[0] != '\0')
		t->helo = xstrdup(opts->helo);
	buf_init(&t->data);
	if (opts->user != NULL && opts->user[0] != '\0') {
		t->user = xstrdup(opts->user);
		if (transport_read_password(opts->password_file, &t->password,
		    err) == -1)
			goto fail;
	}
	if (t->starttls != CONF_STARTTLS_OFF &&
	    transport_tls_setup(t, opts->ca_file, err) == -1)
		goto fail;
	*t_r = t;
	return 0;
fail:
	transport_free(t);
	return -1;
}

void
transport_free(struct transport *t)
{
	if (t == NULL)
		return;
	if (t->password != NULL) {
		explicit_bzero(t->password, strlen(t->password));
		free(t->password);
	}
	if (t->tls_ctx != NULL)
		SSL_CTX_free(t->tls_ctx);
	buf_free(&t->data);
	free(t->host);
	free(t->hostport);
	free(t->user);
	free(t->helo);
	free(t);
}

void
transport_opts_from_conf(const struct assent_conf *conf,
    struct transport_opts *opts)
{
	memset(opts, 0, sizeof(*opts));
	opts->host = conf->smtp_host;
	opts->port = conf->smtp_port;
	opts->starttls = conf->smtp_starttls;
	opts->tls_verify = conf->smtp_tls_verify;
	opts->user = conf->smtp_user;
	opts->password_file = conf->smtp_password_file;
	opts->helo = conf->smtp_helo;
	opts->timeout = conf->smtp_timeout;
	opts->ca_file = conf->smtp_ca_file;
}

/* ---- libesmtp callbacks --------------------------------------------- */

/* Give libesmtp the user name and password for AUTH (PLAIN, LOGIN,
 * CRAM-MD5 ask for these); the strings stay ours. Never without TLS
 * unless starttls is off: transport_setup() already makes libesmtp
 * insist on TLS when a user is set, this is the second lock. */
static int
transport_interact(auth_client_request_t request, char **result, int fields,
    void *arg)
{
	static char empty[1];
	struct transport_session *ss = arg;
	struct transport *t = ss->t;
	int i;

	if (t->starttls != CONF_STARTTLS_OFF && ss->tls != TRANSPORT_TLS_UP)
		return 0;
	for (i = 0; i < fields; i++) {
		if (request[i].flags & AUTH_USER)
			result[i] = t->user;
		else if (request[i].flags & AUTH_PASS)
			result[i] = t->password;
		else if (request[i].flags & AUTH_REALM)
			result[i] = empty;
		else
			return 0;
	}
	return 1;
}

/* Make message index the one in t->data: pace, then fill. */
static int
transport_load(struct transport_session *ss, struct transport_item *it)
{
	struct transport *t = ss->t;
	int saved = errno;

	if (!it->data_requested) {
		it->data_requested = true;
		if (ss->pace != NULL)
			ss->pace(ss->arg, it->index);
	}
	buf_reset(&t->data);
	ss->loaded = SIZE_MAX;
	if (ss->fill(ss->arg, it->index, &t->data) == -1)
		return -1;
	ss->loaded = it->index;
	ss->pos = 0;
	errno = saved;
	return 0;
}

/*
 * libesmtp's message callback. What was learned about libesmtp 1.1.0
 * (from its source and checked against smtpd.py):
 *
 * - It is called only from the data stage of that message: with DATA
 *   after the 354 reply, with BDAT once the BDAT command is due (see
 *   transport_chunking() for why that is after the RCPT reply here);
 *   first with len == NULL (rewind), then for data until it returns
 *   NULL. It is not called earlier (no header scan at MAIL time, no
 *   SIZE estimate: we set none). So data is produced lazily, one
 *   message at a time, and the buffer of message i-1 is no longer
 *   needed when message i asks.
 * - At the end of the data it must return NULL with *len = 0 and errno
 *   untouched: libesmtp zeroes errno before reading and treats a NULL
 *   with errno set as an error.
 * - Returning NULL with errno set is that error: libesmtp then drops
 *   the connection at once without ending the data (no final "." or
 *   BDAT LAST: it cannot recover in the middle), so the relay discards
 *   the message. This is how a failed fill() (and data for a session
 *   whose AUTH failed, or after a refused MAIL FROM) is refused. The
 *   state stays sticky: libesmtp may call again (it peeks for header
 *   continuation lines) and must get the same answer.
 * - With BDAT, an error while libesmtp reads the headers leaks its
 *   1 KB header buffer (cmd_bdat() returns without freeing it): a
 *   small leak on rare paths (fill() failed, AUTH not done, data after
 *   a refused MAIL FROM that a later MAIL FROM got past).
 * - *ctx would be free()d by libesmtp; it is not used.
 */
static const char *
transport_message_cb(void **ctx, int *len, void *arg)
{
	struct transport_item *it = arg;
	struct transport_session *ss = it->ss;
	struct buf *data = &ss->t->data;
	size_t left;

	(void)ctx;
	if (len == NULL) {
		ss->pos = 0;
		return NULL;
	}
	if (!ss->refuse_data && ss->t->user != NULL &&
	    ss->auth != TRANSPORT_AUTH_OK)
		ss->refuse_data = true;
	if (!ss->refuse_data && ss->loaded != it->index &&
	    transport_load(ss, it) == -1)
		ss->refuse_data = true;
	if (ss->refuse_data) {
		it->abandoned = true;
		*len = 0;
		errno = ECANCELED;
		return NULL;
	}
	left = data->len - ss->pos;
	if (left == 0) {
		*len = 0;
		return NULL;
	}
	if (left > INT_MAX)
		left = INT_MAX;
	*len = (int)left;
	ss->pos += left;
	return data->data + ss->pos - left;
}

static struct transport_item *
transport_item_of(smtp_message_t message)
{
	return message != NULL ? smtp_message_get_application_data(message) :
	    NULL;
}

/* The relay answered a MAIL FROM. A refusal is not about the recipient:
 * stop the session's data here (libesmtp would go on with the next
 * message), so nothing after it is delivered. */
static void
transport_mail_status(struct transport_session *ss, smtp_message_t message)
{
	struct transport_item *it = transport_item_of(message);
	const smtp_status_t *st = smtp_reverse_path_status(message);

	if (it == NULL || st->code / 100 == 2 || ss->mail_refused != SIZE_MAX)
		return;
	ss->mail_refused = it->index;
	ss->refuse_data = true;
}

/* The certificate does not name the host: say which names. */
static void
transport_wrong_name(struct transport_session *ss, const char *name)
{
	const char *want = smtp_get_server_name(ss->session);

	if (want == NULL)
		want = ss->t->host;
	if (name != NULL && name[0] != '\0')
		transport_fatal(ss, EX_UNAVAILABLE, "the certificate is for "
		    "\"%.100s\", not \"%.100s\"", name, want);
	else
		transport_fatal(ss, EX_UNAVAILABLE, "the certificate names "
		    "no host; expected \"%.100s\"", want);
}

static void
transport_event_tls(struct transport_session *ss, int event, va_list ap)
{
	long result;
	int *ok, bits;

	switch (event) {
	case SMTP_EV_STARTTLS_OK:
		ss->tls = TRANSPORT_TLS_UP;
		return;
	case SMTP_EV_INVALID_PEER_CERTIFICATE:
		result = va_arg(ap, long);
		ok = va_arg(ap, int *);
		*ok = !ss->t->tls_verify;
		if (!*ok)
			transport_fatal(ss, EX_UNAVAILABLE, "the relay's "
			    "certificate failed verification: %s",
			    X509_verify_cert_error_string(result));
		return;
	case SMTP_EV_WRONG_PEER_CERTIFICATE:
		ok = va_arg(ap, int *);
		*ok = !ss->t->tls_verify;
		if (!*ok)
			transport_wrong_name(ss, va_arg(ap, const char *));
		return;
	case SMTP_EV_NO_PEER_CERTIFICATE:
		ok = va_arg(ap, int *);
		*ok = !ss->t->tls_verify;
		if (!*ok)
			transport_fatal(ss, EX_UNAVAILABLE, "the relay sent "
			    "no certificate");
		return;
	case SMTP_EV_WEAK_CIPHER:
		bits = va_arg(ap, int);
		ok = va_arg(ap, int *);
		*ok = 0;
		transport_fatal(ss, EX_UNAVAILABLE, "the TLS cipher is too "
		    "weak (%d bits)", bits);
		return;
	case SMTP_EV_NO_CLIENT_CERTIFICATE:
	case SMTP_EV_UNUSABLE_CLIENT_CERTIFICATE:
	case SMTP_EV_UNUSABLE_CA_LIST:
		transport_fatal(ss, EX_UNAVAILABLE, "libesmtp cannot use the "
		    "client certificate or CA list under ~/.authenticate");
		return;
	}
}

static void
transport_no_starttls(struct transport_session *ss)
{
	if (ss->t->starttls == CONF_STARTTLS_REQUIRED)
		transport_fatal(ss, EX_UNAVAILABLE, "STARTTLS is required but "
		    "the relay does not offer it");
	else                    /* opportunistic made required for AUTH */
		transport_fatal_msg(ss, EX_UNAVAILABLE, "SMTP relay %s offers "
		    "no STARTTLS; not sending the AUTH password in clear "
		    "(set smtp.starttls)", ss->t->hostport);
}

static void
transport_event(smtp_session_t session, int event, void *arg, ...)
{
	struct transport_session *ss = arg;
	struct transport_item *it;
	va_list ap;

	(void)session;
	va_start(ap, arg);
	switch (event) {
	case SMTP_EV_MAILSTATUS:
		(void)va_arg(ap, const char *);
		transport_mail_status(ss, va_arg(ap, smtp_message_t));
		break;
	case SMTP_EV_MESSAGESENT:
		/* libesmtp is done with the message's data: after its
		 * final reply, or after a read that failed (the status is
		 * then reset to 0). A 250 to a BDAT chunk before the last
		 * one never comes with this event. */
		if ((it = transport_item_of(va_arg(ap, smtp_message_t))) !=
		    NULL)
			it->done = true;
		break;
	case SMTP_EV_EXTNA_STARTTLS:
		transport_no_starttls(ss);
		break;
	default:
		if (event >= SMTP_EV_WEAK_CIPHER)
			transport_event_tls(ss, event, ap);
		break;
	}
	va_end(ap);
}

/*
 * libesmtp 1.1 pipelines BDAT right after RCPT when the relay offers
 * CHUNKING: the message data is asked for (fill, pace) before the RCPT
 * reply is known, and when the connection then breaks with the RCPT
 * reply and BDAT replies outstanding, libesmtp calls a response handler
 * of state -1 and crashes. Its require_all_recipients option makes it
 * wait for the RCPT replies before DATA or BDAT; with one recipient a
 * message it changes nothing else. Set only for CHUNKING relays, as it
 * costs DATA relays a round trip a message; libesmtp reads the flag at
 * each RCPT, so setting it while the EHLO reply is read is in time.
 */
static void
transport_chunking(struct transport_session *ss, const char *line,
    size_t len)
{
	if (len >= 12 && (line[3] == '-' || line[3] == ' ') &&
	    strncasecmp(line + 4, "CHUNKING", 8) == 0 &&
	    (len == 12 || line[12] == ' ' || line[12] == '\r'))
		smtp_option_require_all_recipients(ss->session, 1);
}

/* Feed the reply bytes read before the first MAIL FROM (the EHLO
 * replies) to transport_chunking() line by line; a read may end in the
 * middle of a line. */
static void
transport_scan_ehlo(struct transport_session *ss, const char *buf, int len)
{
	int i;

	for (i = 0; i < len; i++) {
		if (buf[i] == '\n') {
			if (ss->ehlo_len <= sizeof(ss->ehlo_line))
				transport_chunking(ss, ss->ehlo_line,
				    ss->ehlo_len);
			ss->ehlo_len = 0;
		} else if (ss->ehlo_len < sizeof(ss->ehlo_line))
			ss->ehlo_line[ss->ehlo_len++] = buf[i];
		else
			ss->ehlo_len = sizeof(ss->ehlo_line) + 1;
	}
}

/* Whether the commands in buf (one or more lines) include cmd. */
static bool
transport_wrote(const char *buf, int len, const char *cmd)
{
	size_t n = strlen(cmd);
	const char *p = buf, *end = buf + len;

	while (p != NULL && (size_t)(end - p) >= n) {
		if (strncasecmp(p, cmd, n) == 0)
			return true;
		if ((p = memchr(p, '\n', (size_t)(end - p))) != NULL)
			p++;
	}
	return false;
}

static void
transport_monitor_write(struct transport_session *ss, const char *buf,
    int len)
{
	if (transport_wrote(buf, len, "AUTH "))
		ss->auth = TRANSPORT_AUTH_PENDING;
	if (transport_wrote(buf, len, "STARTTLS"))
		ss->tls = TRANSPORT_TLS_ASKED;
	if (transport_wrote(buf, len, "MAIL FROM:"))
		ss->envelope = true;
}

/* The protocol monitor: the only way to learn whether AUTH succeeded
 * (libesmtp goes on without authentication when every mechanism
 * failed), whether the TLS handshake began, whether the relay offers
 * CHUNKING and what the relay said when it refused the session. It
 * does not see message data; it never keeps what we write. */
static void
transport_monitor(const char *buf, int len, int writing, void *arg)
{
	struct transport_session *ss = arg;
	size_t n;

	if (writing == SMTP_CB_WRITING) {
		transport_monitor_write(ss, buf, len);
		return;
	}
	if (writing != SMTP_CB_READING || len < 1)
		return;
	if (!ss->envelope)
		transport_scan_ehlo(ss, buf, len);
	if (len < 4)
		return;
	n = strcspn(buf, "\r\n");
	if (n > (size_t)len)
		n = (size_t)len;
	if (buf[0] == '4' || buf[0] == '5')
		transport_sanitize(ss->error_reply, sizeof(ss->error_reply),
		    buf, n);
	if (ss->tls == TRANSPORT_TLS_ASKED)
		ss->tls = buf[0] == '2' ? TRANSPORT_TLS_HANDSHAKE :
		    TRANSPORT_TLS_NONE;
	if (ss->auth != TRANSPORT_AUTH_PENDING || buf[0] == '3')
		return;
	if (buf[0] == '2') {
		ss->auth = TRANSPORT_AUTH_OK;
		return;
	}
	ss->auth = TRANSPORT_AUTH_FAILED;
	transport_sanitize(ss->auth_reply, sizeof(ss->auth_reply), buf, n);
}

/* ---- one session ----------------------------------------------------- */

/* Opportunistic TLS with a user becomes required: libesmtp would
 * otherwise send AUTH in clear text to a relay without STARTTLS. */
static enum starttls_option
transport_starttls_option(const struct transport *t)
{
	switch (t->starttls) {
	case CONF_STARTTLS_OPPORTUNISTIC:
		return t->user != NULL ? Starttls_REQUIRED : Starttls_ENABLED;
	case CONF_STARTTLS_REQUIRED:
		return Starttls_REQUIRED;
	case CONF_STARTTLS_OFF:
		break;
	}
	return Starttls_DISABLED;
}

static int
transport_setup(struct transport_session *ss, smtp_session_t session,
    auth_context_t *auth_r)
{
	static const int timeouts[] = { Timeout_GREETING, Timeout_ENVELOPE,
	    Timeout_DATA, Timeout_TRANSFER, Timeout_DATA2 };
	struct transport *t = ss->t;
	auth_context_t auth;
	size_t i;

	if (!smtp_set_server(session, t->hostport) ||
	    !smtp_set_hostname(session, t->helo) ||
	    !smtp_set_eventcb(session, transport_event, ss) ||
	    !smtp_set_monitorcb(session, transport_monitor, ss, 0) ||
	    !smtp_starttls_enable(session, transport_starttls_option(t)))
		return -1;
	for (i = 0; i < sizeof(timeouts) / sizeof(timeouts[0]); i++)
		if (smtp_set_timeout(session,
		    timeouts[i] | Timeout_OVERRIDE_RFC2822_MINIMUM,
		    (long)t->timeout * 1000L) == 0)
			return -1;
	if (t->tls_ctx != NULL && !smtp_starttls_set_ctx(session, t->tls_ctx))
		return -1;
	if (t->user == NULL)
		return 0;
	pthread_once(&transport_auth_once, transport_auth_init);
	if ((auth = auth_create_context()) == NULL)
		return -1;
	*auth_r = auth;
	/* Without AUTH_PLUGIN_PLAIN, PLAIN and LOGIN are skipped. */
	if (!auth_set_mechanism_flags(auth, AUTH_PLUGIN_PLAIN, 0) ||
	    !auth_set_interact_cb(auth, transport_interact, ss) ||
	    !smtp_auth_set_context(session, auth))
		return -1;
	return 0;
}

static int
transport_add(struct transport_session *ss, smtp_session_t session,
    struct transport_msg *msgs)
{
	struct transport_item *it;
	size_t i;

	for (i = 0; i < ss->n; i++) {
		it = &ss->items[i];
		it->ss = ss;
		it->index = i;
		if ((it->message = smtp_add_message(session)) == NULL ||
		    !smtp_set_reverse_path(it->message,
		    msgs[i].envelope_from) ||
		    (it->recipient = smtp_add_recipient(it->message,
		    msgs[i].rcpt)) == NULL ||
		    !smtp_set_messagecb(it->message, transport_message_cb, it))
			return -1;
		smtp_message_set_application_data_release(it->message, it,
		    NULL);
	}
	return 0;
}

static void
transport_status(struct transport_msg *m, enum transport_outcome outcome,
    enum transport_stage stage, const smtp_status_t *st)
{
	m->outcome = outcome;
	m->stage = stage;
	m->code = st->code;
	m->enhanced[0] = '\0';
	if (st->enh_class > 0)
		snprintf(m->enhanced, sizeof(m->enhanced), "%d.%d.%d",
		    st->enh_class, st->enh_subject, st->enh_detail);
	if (st->text != NULL)
		transport_sanitize(m->reply, sizeof(m->reply), st->text,
		    strlen(st->text));
}

/* A 4xx or 5xx (anything else is not success either: retry later). */
static void
transport_refused(struct transport_msg *m, enum transport_stage stage,
    const smtp_status_t *st)
{
	transport_status(m, st->code / 100 == 5 ? TRANSPORT_PERMFAIL :
	    TRANSPORT_TEMPFAIL, stage, st);
}

static void
transport_uncertain(struct transport_msg *m)
{
	m->outcome = TRANSPORT_UNCERTAIN;
	m->stage = TRANSPORT_STAGE_DATA;
	snprintf(m->reply, sizeof(m->reply), "no reply after the message "
	    "data: the connection broke or timed out");
}

/* The outcome of a message whose MAIL FROM the relay accepted. */
static void
transport_outcome(struct transport_item *it, struct transport_msg *m)
{
	const smtp_status_t *st;
	int rcpt;

	if (it->abandoned)
		return;                 /* its data never ended: NOT_TRIED */
	st = smtp_recipient_status(it->recipient);
	if ((rcpt = st->code) != 0 && rcpt / 100 != 2) {
		transport_refused(m, TRANSPORT_STAGE_RCPT, st);
		return;
	}
	st = smtp_message_transfer_status(it->message);
	if (rcpt != 0 && it->done && st->code / 100 == 2)
		transport_status(m, TRANSPORT_SENT, TRANSPORT_STAGE_DATA, st);
	else if (rcpt != 0 && (st->code / 100 == 4 || st->code / 100 == 5))
		transport_refused(m, TRANSPORT_STAGE_DATA, st);
	else if (it->data_requested)
		/* also without a RCPT reply: BDAT pipelined after RCPT,
		 * which transport_chunking() should have prevented */
		transport_uncertain(m);
	/* else no data went out: NOT_TRIED */
}

static void
transport_outcomes(struct transport_session *ss, struct transport_msg *msgs)
{
	size_t i;

	for (i = 0; i < ss->n && i < ss->mail_refused; i++)
		transport_outcome(&ss->items[i], &msgs[i]);
	if (i < ss->n)          /* the refused one: NOT_TRIED, and why */
		transport_status(&msgs[i], TRANSPORT_NOT_TRIED,
		    TRANSPORT_STAGE_MAIL,
		    smtp_reverse_path_status(ss->items[i].message));
}

static void
transport_reset(struct transport_msg *msgs, size_t n)
{
	size_t i;

	for (i = 0; i < n; i++) {
		msgs[i].outcome = TRANSPORT_NOT_TRIED;
		msgs[i].stage = TRANSPORT_STAGE_NONE;
		msgs[i].code = 0;
		msgs[i].enhanced[0] = '\0';
		msgs[i].reply[0] = '\0';
	}
}

static long
transport_elapsed(const struct transport_session *ss)
{
	struct timespec now;

	clock_gettime(CLOCK_MONOTONIC, &now);
	return (long)(now.tv_sec - ss->start.tv_sec);
}

/* The relay said 220 to STARTTLS, then the handshake failed (libesmtp
 * says only "Client error"); OpenSSL may know why. */
static void
transport_tls_failed(struct transport_session *ss, char *buf, size_t size)
{
	unsigned long e = ERR_peek_last_error();
	const char *why = e != 0 ? ERR_reason_error_string(e) : NULL;

	snprintf(buf, size, "TLS handshake with %s failed or timed out "
	    "(%d s)%s%s", ss->t->hostport, ss->t->timeout,
	    why != NULL ? ": " : "", why != NULL ? why : "");
}

/* Why the session could not start: no message was tried. */
static void
transport_no_session(struct transport_session *ss, int *code_r, char *buf,
    size_t size)
{
	char why[128];
	int e;

	if (ss->error_reply[0] != '\0') {
		if (ss->error_reply[0] == '5')
			*code_r = EX_UNAVAILABLE;
		snprintf(buf, size, "SMTP relay %s: the relay refused the "
		    "session: %s", ss->t->hostport, ss->error_reply);
		return;
	}
	e = smtp_errno();
	if (e == SMTP_ERR_EAI_NONAME || e == SMTP_ERR_EAI_NODATA)
		*code_r = EX_UNAVAILABLE;
	/* libesmtp reports a timeout as a dropped connection */
	if (e == SMTP_ERR_DROPPED_CONNECTION &&
	    transport_elapsed(ss) >= ss->t->timeout)
		snprintf(why, sizeof(why), "no reply within %d s",
		    ss->t->timeout);
	else if (e == 0 || smtp_strerror(e, why, sizeof(why)) == NULL)
		snprintf(why, sizeof(why), "the session ended early");
	snprintf(buf, size, "SMTP relay %s: %s", ss->t->hostport, why);
}

/* Why the relay is unusable (the whole message, in buf), or NULL. */
static const char *
transport_failure(struct transport_session *ss, int started, int *code_r,
    char *buf, size_t size)
{
	bool tried = false;
	size_t i;

	*code_r = EX_TEMPFAIL;
	if (ss->fatal[0] != '\0') {
		*code_r = ss->fatal_code;
		return ss->fatal;
	}
	*code_r = EX_UNAVAILABLE;
	if (ss->tls == TRANSPORT_TLS_HANDSHAKE) {
		transport_tls_failed(ss, buf, size);
		return buf;
	}
	for (i = 0; started && !tried && i < ss->n; i++)
		if (smtp_reverse_path_status(ss->items[i].message)->code != 0)
			tried = true;
	if (ss->t->user != NULL && (ss->auth == TRANSPORT_AUTH_FAILED ||
	    ss->auth == TRANSPORT_AUTH_PENDING)) {
		snprintf(buf, size, "SMTP relay %s: authentication failed: %s",
		    ss->t->hostport, ss->auth_reply[0] != '\0' ?
		    ss->auth_reply : "no reply");
		return buf;
	}
	if (tried && ss->t->user != NULL && ss->auth != TRANSPORT_AUTH_OK) {
		snprintf(buf, size, "SMTP relay %s: the relay offers no AUTH "
		    "mechanism we can use", ss->t->hostport);
		return buf;
	}
	if (tried)
		return NULL;
	*code_r = EX_TEMPFAIL;
	transport_no_session(ss, code_r, buf, size);
	return buf;
}

/* After a refused MAIL FROM: the session failed, though messages before
 * it have their outcomes. */
static void
transport_mail_refused(struct transport_session *ss,
    const struct transport_msg *m, struct assent_err *err)
{
	err_set(err, EX_UNAVAILABLE, "SMTP relay %s refused the envelope "
	    "sender <%s>: %d%s%s %s", ss->t->hostport, m->envelope_from,
	    m->code, m->enhanced[0] != '\0' ? " " : "", m->enhanced,
	    m->reply);
}

int
transport_send(struct transport *t, struct transport_msg *msgs, size_t n,
    transport_fill_fn fill, transport_pace_fn pace, void *arg,
    struct assent_err *err)
{
	struct transport_session ss;
	smtp_session_t session;
	auth_context_t auth = NULL;
	char buf[TRANSPORT_REASON_MAX];
	const char *why;
	int started = 0, code, rc = -1;

	transport_reset(msgs, n);
	if (n == 0)
		return 0;
	memset(&ss, 0, sizeof(ss));
	ss.t = t;
	ss.n = n;
	ss.fill = fill;
	ss.pace = pace;
	ss.arg = arg;
	ss.loaded = SIZE_MAX;
	ss.mail_refused = SIZE_MAX;
	ss.items = xcalloc(n, sizeof(*ss.items));
	ERR_clear_error();
	if ((session = ss.session = smtp_create_session()) == NULL ||
	    transport_setup(&ss, session, &auth) == -1 ||
	    transport_add(&ss, session, msgs) == -1) {
		err_set(err, EX_SOFTWARE, "SMTP relay %s: cannot set up the "
		    "libesmtp session: %s", t->hostport,
		    smtp_strerror(smtp_errno(), buf, sizeof(buf)));
		goto done;
	}
	clock_gettime(CLOCK_MONOTONIC, &ss.start);
	started = smtp_start_session(session);
	if ((why = transport_failure(&ss, started, &code, buf,
	    sizeof(buf))) != NULL) {
		err_set(err, code, "%s", why);
		goto done;
	}
	transport_outcomes(&ss, msgs);
	if (ss.mail_refused != SIZE_MAX)
		transport_mail_refused(&ss, &msgs[ss.mail_refused], err);
	else
		rc = 0;
done:
	if (session != NULL)
		smtp_destroy_session(session);
	if (auth != NULL)
		auth_destroy_context(auth);
	ERR_clear_error();
	free(ss.items);
	return rc;
}

/* ---- outcomes -------------------------------------------------------- */

const char *
transport_outcome_name(enum transport_outcome outcome)
{
	switch (outcome) {
	case TRANSPORT_NOT_TRIED:
		return "not-tried";
	case TRANSPORT_SENT:
		return "sent";
	case TRANSPORT_TEMPFAIL:
		return "tempfail";
	case TRANSPORT_PERMFAIL:
		return "permfail";
	case TRANSPORT_UNCERTAIN:
		return "uncertain";
	}
	return "unknown";
}

/* "5.1.N" (N a number) gives N, anything else -1. */
static long
transport_mailbox_detail(const char *enhanced)
{
	char *end;
	long detail;

	if (strncmp(enhanced, "5.1.", 4) != 0 || enhanced[4] < '0' ||
	    enhanced[4] > '9')
		return -1;
	errno = 0;
	detail = strtol(enhanced + 4, &end, 10);
	return *end == '\0' && errno == 0 ? detail : -1;
}

bool
transport_is_hard_bounce(const struct transport_msg *m)
{
	long detail;

	if (m->outcome != TRANSPORT_PERMFAIL ||
	    m->stage != TRANSPORT_STAGE_RCPT || m->code / 100 != 5)
		return false;
	if (m->enhanced[0] == '\0')
		return m->code == 550 || m->code == 553;
	/* 5.1.7 and 5.1.8: the sender's address, not the recipient's */
	detail = transport_mailbox_detail(m->enhanced);
	return detail >= 0 && detail != 7 && detail != 8;
}

void
transport_reply_text(const struct transport_msg *m, char *out, size_t outlen)
{
	if (m->code == 0)
		snprintf(out, outlen, "%s", m->reply[0] != '\0' ? m->reply :
		    transport_outcome_name(m->outcome));
	else if (m->enhanced[0] != '\0')
		snprintf(out, outlen, "%d %s %s", m->code, m->enhanced, m->reply);
	else
		snprintf(out, outlen, "%d %s", m->code, m->reply);
	/* relays pass on remote servers' words, in any charset */
	text_make_utf8(out, strlen(out));
}

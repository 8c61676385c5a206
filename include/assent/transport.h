/*
 * transport: hand messages to the SMTP relay with libesmtp.
 *
 * One call of transport_send() is one SMTP session: connect, EHLO,
 * STARTTLS (as configured), AUTH (when a user is set), then every
 * message of the batch over that one connection (MAIL FROM with the
 * message's own envelope sender, one RCPT, DATA; pipelined when the
 * relay offers it), QUIT. Each message has exactly one recipient, so
 * each message gets one outcome:
 *
 *	TRANSPORT_SENT       2xx after DATA: the relay took it
 *	TRANSPORT_TEMPFAIL   a 4xx at MAIL, RCPT or DATA: not delivered,
 *	                     may be retried later
 *	TRANSPORT_PERMFAIL   a 5xx at MAIL, RCPT or DATA: not delivered,
 *	                     do not retry
 *	TRANSPORT_NOT_TRIED  the session ended before this message's data
 *	                     was sent (no RCPT reply, or no 354 to DATA): it
 *	                     cannot have been delivered, safe to send again
 *	TRANSPORT_UNCERTAIN  the recipient was accepted and the message
 *	                     data may have been sent, but no final reply
 *	                     came (the connection broke): it may or may not
 *	                     have been delivered; never resend on its own
 *
 * code is the SMTP reply code (0 when none), enhanced the enhanced
 * status code "X.Y.Z" when the relay gave one ("" otherwise), and reply
 * the reply text (one line, control characters replaced by spaces,
 * truncated to fit).
 *
 * transport_send() returns -1 only when no message could be tried at
 * all: the relay cannot be reached or refuses the session (connection
 * refused, timeout, 421 greeting, TLS required but not offered or the
 * certificate failed verification, authentication refused), with
 * EX_UNAVAILABLE or EX_TEMPFAIL (EX_CONFIG for a password file that
 * cannot be read) and a message that names the relay and the reason.
 * Every message is then TRANSPORT_NOT_TRIED. Otherwise it returns 0
 * and every message has its outcome (the session may still have broken
 * half way: see NOT_TRIED and UNCERTAIN).
 *
 * Message data is produced lazily: libesmtp asks for a message's data
 * only when it reaches that message's DATA, and transport calls
 * fill(arg, index, out) then, so a batch never holds more than one
 * rendered message. fill() replaces out's content with the complete
 * message (CRLF line ends, as mime_build() makes it); it may be called
 * more than once for the same message (libesmtp rewinds) and must give
 * the same bytes each time. The sender checks before the claim commits
 * that each message can be rendered, so fill() is not expected to fail;
 * if it does (returns -1), transport abandons the session without
 * ending that message's DATA (the relay discards it): that message and
 * the ones after it are TRANSPORT_NOT_TRIED.
 *
 * The optional pace(arg) is called before each message's data is
 * first requested; it may sleep (global rate limiting).
 *
 * Limits of libesmtp 1.1 that show here: connect() has no timeout of
 * its own (an unreachable host takes the kernel's TCP timeout; timeout
 * applies once connected); host is a name or an IPv4 literal (IPv6
 * literals are refused with EX_CONFIG), and with tls_verify the
 * certificate must match a host name, never an address. TLS is capped
 * at 1.2 (libesmtp often loses the EHLO reply after a TLS 1.3
 * handshake), and each transport has its own SSL_CTX (libesmtp's
 * shared default one is freed by the first session that ends).
 *
 * Threads: a struct transport may be used by one thread at a time; make
 * one per worker. transport_new() copies the options and reads the
 * password file (smtp.password_file: its first line, without the line
 * end) once.
 *
 * Memory: envelope senders and recipients are borrowed for the call.
 * transport_free() releases what transport_new() made.
 */
#ifndef ASSENT_TRANSPORT_H
#define ASSENT_TRANSPORT_H

#include <stdbool.h>
#include <stddef.h>

#include "assent/buf.h"
#include "assent/conf.h"
#include "assent/err.h"

#define TRANSPORT_REPLY_MAX 200

enum transport_outcome {
	TRANSPORT_NOT_TRIED = 0,
	TRANSPORT_SENT,
	TRANSPORT_TEMPFAIL,
	TRANSPORT_PERMFAIL,
	TRANSPORT_UNCERTAIN,
};

struct transport_opts {
	const char *host;               /* name or address literal */
	int port;
	enum conf_starttls starttls;    /* off, opportunistic, required */
	bool tls_verify;                /* verify the relay's certificate */
	const char *user;               /* NULL or "": no AUTH */
	const char *password_file;      /* with user */
	const char *helo;               /* NULL or "": the host name */
	int timeout;                    /* seconds for each SMTP step */
};

struct transport_msg {
	/* in */
	const char *envelope_from;      /* the VERP address */
	const char *rcpt;               /* one recipient */
	/* out */
	enum transport_outcome outcome;
	int code;
	char enhanced[16];
	char reply[TRANSPORT_REPLY_MAX];
};

typedef int (*transport_fill_fn)(void *arg, size_t index, struct buf *out);
typedef void (*transport_pace_fn)(void *arg, size_t index);

struct transport;

/* Copy opts and read the password file. EX_CONFIG when a user is set
 * and its password file cannot be read or is empty. */
int transport_new(const struct transport_opts *opts, struct transport **t_r,
    struct assent_err *err);

void transport_free(struct transport *t);

/* The options of conf, for transport_new(). Borrows conf's strings. */
void transport_opts_from_conf(const struct assent_conf *conf,
    struct transport_opts *opts);

/* Send msgs[0..n-1] in one session; see above. pace may be NULL. */
int transport_send(struct transport *t, struct transport_msg *msgs, size_t n,
    transport_fill_fn fill, transport_pace_fn pace, void *arg,
    struct assent_err *err);

/* "sent", "tempfail", "permfail", "not-tried", "uncertain". */
const char *transport_outcome_name(enum transport_outcome outcome);

/* True for a 5xx whose enhanced code says the mailbox itself is bad
 * (5.1.x: unknown user, bad address, ...): a hard bounce. Without an
 * enhanced code, 550 and 553 count as mailbox level, 5xx others not. */
bool transport_is_hard_bounce(int code, const char *enhanced);

#endif

/*
 * transport: hand messages to the SMTP relay with libesmtp.
 *
 * One call of transport_send() is one SMTP session: connect, EHLO,
 * STARTTLS (as configured), AUTH (when a user is set), then every
 * message of the batch over that one connection (MAIL FROM with the
 * message's own envelope sender, one RCPT, then DATA, or BDAT when the
 * relay offers CHUNKING; pipelined when the relay offers it), QUIT.
 * Each message has exactly one recipient, so each message gets one
 * outcome:
 *
 *	TRANSPORT_SENT       2xx as the final reply to the message data:
 *	                     the relay took it
 *	TRANSPORT_TEMPFAIL   a 4xx at RCPT or DATA/BDAT: not delivered, may
 *	                     be retried later
 *	TRANSPORT_PERMFAIL   a 5xx at RCPT or DATA/BDAT: not delivered, do
 *	                     not retry
 *	TRANSPORT_NOT_TRIED  it cannot have been delivered, safe to send
 *	                     again: the session ended before any of its
 *	                     data went out, or the relay refused its MAIL
 *	                     FROM (see below), or it came after such a
 *	                     refusal
 *	TRANSPORT_UNCERTAIN  the recipient was accepted and the message
 *	                     data may have been sent, but no final reply
 *	                     came (the connection broke or timed out; with
 *	                     BDAT, the 250s to chunks before the last one
 *	                     do not count): it may or may not have been
 *	                     delivered; never resend on its own
 *
 * code is the SMTP reply code (0 when none), enhanced the enhanced
 * status code "X.Y.Z" when the relay gave one ("" otherwise), reply the
 * reply text (one line, control characters replaced by spaces,
 * truncated to fit), and stage the step that reply answered:
 *
 *	TRANSPORT_STAGE_MAIL  MAIL FROM (outcome NOT_TRIED: a refused
 *	                      envelope sender is the relay's or our
 *	                      problem, never the recipient's)
 *	TRANSPORT_STAGE_RCPT  RCPT TO (TEMPFAIL, PERMFAIL)
 *	TRANSPORT_STAGE_DATA  DATA or BDAT, or the reply after the data
 *	                      (SENT, TEMPFAIL, PERMFAIL: a refusal here is
 *	                      about the message, e.g. its content); also
 *	                      UNCERTAIN, with no reply (code 0)
 *	TRANSPORT_STAGE_NONE  no reply for this message (NOT_TRIED)
 *
 * transport_send() returns 0 when the session went as far as it could
 * for every message (it may still have broken half way: see NOT_TRIED
 * and UNCERTAIN), and -1 when the relay is unusable, with
 * EX_UNAVAILABLE or EX_TEMPFAIL (EX_CONFIG for a password file that
 * cannot be read) and a message that names the relay and the reason:
 * it cannot be reached or refuses the session (connection refused,
 * timeout, 421 greeting, TLS required but not offered, the TLS
 * handshake failed, the certificate failed verification,
 * authentication refused), AUTH would have to go out in clear text
 * (a user is set, starttls is opportunistic and the relay offers no
 * STARTTLS), or the relay refused a message's MAIL FROM (EX_UNAVAILABLE;
 * the message names the envelope sender and the reply; a wrong bounce
 * domain or a relay that will not take our senders must not look like
 * bad recipients). Every message still has its outcome, those never
 * tried NOT_TRIED: after a MAIL FROM refusal, the messages before it
 * keep theirs (SENT, ...), the refused one and all after it are
 * NOT_TRIED; in the other cases all are NOT_TRIED.
 *
 * Message data is produced lazily: libesmtp asks for a message's data
 * only when it reaches that message's data stage, and transport calls
 * fill(arg, index, out) then, so a batch never holds more than one
 * rendered message, and message i is rendered only after message i-1
 * got its final reply. fill() replaces out's content with the complete
 * message (CRLF line ends, as mime_build() makes it); it may be called
 * more than once for the same message (libesmtp rewinds) and must give
 * the same bytes each time.
 *
 * The data stage comes after the relay accepted the recipient: with
 * DATA after its 354, with BDAT (libesmtp uses BDAT whenever the relay
 * offers CHUNKING, as Postfix does) after its RCPT reply. libesmtp 1.1
 * would pipeline BDAT right after RCPT, asking for the data of
 * recipients the relay then refuses (and crashing when the connection
 * breaks with those replies outstanding), so with a CHUNKING relay
 * transport makes it wait for the RCPT reply first. So fill() and
 * pace() are never called for a recipient the relay refused, nor for a
 * message after a refused MAIL FROM.
 *
 * The sender checks before the claim commits that each message can be
 * rendered, so fill() is not expected to fail; if it does (returns
 * -1), transport abandons the session without ending that message's
 * data (the relay discards it): that message and the ones after it are
 * TRANSPORT_NOT_TRIED.
 *
 * The optional pace(arg, index) is called before each message's data
 * is first requested (see above for when); it may sleep (global rate
 * limiting).
 *
 * TLS and AUTH: with starttls "required" the session fails unless TLS
 * is set up; with "opportunistic" transport uses STARTTLS when the
 * relay offers it and goes on in clear text when it does not, except
 * that AUTH is never sent in clear text: when a user is set, a relay
 * without STARTTLS (or whose offer was stripped on the way) fails the
 * session (-1, EX_UNAVAILABLE). Only starttls "off", the operator's
 * explicit choice, sends AUTH without TLS. With tls_verify, a relay
 * that offers STARTTLS but whose certificate fails verification (or
 * does not name the host) fails the session even with "opportunistic":
 * transport fails closed, it never falls back to clear text. The
 * certificate is checked against ca_file when set, otherwise against
 * the system's trusted CAs.
 *
 * Limits of libesmtp 1.1 that show here: connect() has no timeout of
 * its own (an unreachable host takes the kernel's TCP timeout; timeout
 * applies once connected). timeout bounds each wait for the relay (each
 * read or write, the TLS handshake's included), not a step or the
 * session: there is no overall deadline, so a relay that trickles its
 * reply lines (or a multi-line reply) slowly enough can hold a session
 * for as long as it likes. host is a name or an IPv4 literal (IPv6
 * literals are refused with EX_CONFIG), and with tls_verify the
 * certificate must match a host name (libesmtp checks the DNS names of
 * the certificate, or its CN without them), never an address. TLS is
 * capped at 1.2 (libesmtp often loses the EHLO reply after a TLS 1.3
 * handshake), and each transport has its own SSL_CTX (libesmtp's shared
 * default one is freed by the first session that ends).
 *
 * Threads: a struct transport may be used by one thread at a time; make
 * one per worker. transport_new() copies the options, reads the
 * password file (smtp.password_file: its first line, without the line
 * end) and ca_file once.
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

/* The SMTP step a message's outcome comes from; see above. */
enum transport_stage {
	TRANSPORT_STAGE_NONE = 0,
	TRANSPORT_STAGE_MAIL,
	TRANSPORT_STAGE_RCPT,
	TRANSPORT_STAGE_DATA,
};

struct transport_opts {
	const char *host;               /* name or address literal */
	int port;
	enum conf_starttls starttls;    /* off, opportunistic, required */
	bool tls_verify;                /* verify the relay's certificate */
	const char *user;               /* NULL or "": no AUTH */
	const char *password_file;      /* with user */
	const char *helo;               /* NULL or "": the host name */
	int timeout;                    /* seconds for each wait (above) */
	const char *ca_file;            /* NULL or "": the system's CAs */
};

struct transport_msg {
	/* in */
	const char *envelope_from;      /* the VERP address */
	const char *rcpt;               /* one recipient */
	/* out */
	enum transport_outcome outcome;
	enum transport_stage stage;
	int code;
	char enhanced[16];
	char reply[TRANSPORT_REPLY_MAX];
};

typedef int (*transport_fill_fn)(void *arg, size_t index, struct buf *out);
typedef void (*transport_pace_fn)(void *arg, size_t index);

struct transport;

/* Copy opts, read the password file and load ca_file. EX_CONFIG when a
 * user is set and its password file cannot be read or is empty, or when
 * ca_file cannot be loaded. */
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

/* transport_socket.c: assent's own connect(2), which sets TCP_NODELAY
 * on TCP sockets (libesmtp does not, and Nagle's algorithm then costs
 * about 40 ms a message). transport_new() calls this, which also makes
 * sure the definition is linked into every program that sends. */
void transport_socket_use(void);

/* m's reply as one line for people and the database: "550 5.1.1 TEXT",
 * "451 TEXT", or the outcome's name when no reply came; valid UTF-8
 * (other bytes become '?'), cut to outlen. */
void transport_reply_text(const struct transport_msg *m, char *out,
    size_t outlen);

/* "sent", "tempfail", "permfail", "not-tried", "uncertain". */
const char *transport_outcome_name(enum transport_outcome outcome);

/* True when m is a hard bounce: the relay said the recipient's mailbox
 * itself is bad. Only a PERMFAIL at the RCPT stage counts: with an
 * enhanced code 5.1.x (unknown user, bad address, ...) except 5.1.7
 * and 5.1.8 (the sender's address), without one 550 or 553. Never a
 * refusal at MAIL (NOT_TRIED anyway) or at DATA (the message's content
 * or policy, not the address). */
bool transport_is_hard_bounce(const struct transport_msg *m);

#endif

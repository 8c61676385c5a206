/*
 * throttle: how fast one assentd hands mail to the relay, shared by all
 * its sender workers.
 *
 * Two kinds of limit:
 *   - a global rate, sending.rate messages per second (0: none), as a
 *     token bucket that holds at most one second's worth (at least 1);
 *     throttle_pace() takes one token, sleeping until there is one;
 *   - per destination domain (sending.domain_limits), the number of
 *     SMTP sessions that may carry mail for the domain at the same time
 *     and the number of messages per minute (a token bucket holding one
 *     minute's worth, refilled continuously).
 *
 * Domain limits are written as a comma-separated list of
 * DOMAIN=CONNECTIONS/PER_MINUTE, where 0 means no limit and the domain
 * "*" sets the limit of every domain not named:
 *	"gmail.com=4/600, outlook.com=2/300, *=8/0"
 * An empty string means no domain limits. Domains are matched exactly
 * (lower case, A-label), not as suffixes. Errors name the item:
 *	domain limit 2 ("outlook.com=2"): expected DOMAIN=CONNECTIONS/PER_MINUTE
 *
 * A worker brackets each SMTP session with throttle_session_begin()
 * and throttle_session_end(). While it builds the batch it asks
 * throttle_admit() for each message: admitting takes one of the
 * domain's per-minute tokens and, the first time in the session, one of
 * its connection slots; a message refused stays queued for later.
 * throttle_blocked() lists the domains that would refuse now, so that
 * the claim can skip them in SQL instead of claiming and deferring.
 *
 * Times are seconds on CLOCK_MONOTONIC (throttle_now()); functions that
 * take now let tests drive the clock.
 *
 * Threads: every function may be called from any thread at any time
 * (one mutex inside); a struct throttle_session belongs to one worker.
 * throttle_configure() replaces the limits while workers run (SIGHUP):
 * sessions in flight keep their slots, counted against the new limits.
 *
 * Memory: throttle_new() returns an object freed with throttle_free()
 * after every worker has stopped; the spec string is copied.
 * throttle_blocked() lends each domain name for the callback only.
 */
#ifndef ASSENT_THROTTLE_H
#define ASSENT_THROTTLE_H

#include <stdbool.h>

#include "assent/buf.h"
#include "assent/err.h"

#define THROTTLE_MAX_DOMAINS 256

struct throttle;
struct throttle_session;

/* Check spec (see above). EX_CONFIG naming the item on error. */
int throttle_check_spec(const char *spec, struct assent_err *err);

int throttle_new(int rate, const char *domain_spec, struct throttle **t_r,
    struct assent_err *err);
void throttle_free(struct throttle *t);

/* Replace the limits (SIGHUP). On error the old ones stay. */
int throttle_configure(struct throttle *t, int rate, const char *domain_spec,
    struct assent_err *err);

double throttle_now(void);

/* Wait until the global rate allows one more message, and take it. */
void throttle_pace(struct throttle *t);

/* Take one global token if there is one at now; false if not (and
 * *wait_r, when not NULL, gets the seconds until there will be). */
bool throttle_try_pace(struct throttle *t, double now, double *wait_r);

struct throttle_session *throttle_session_begin(struct throttle *t);

/* May one more message for domain go in this session at now? Takes the
 * tokens when it may. */
bool throttle_admit(struct throttle *t, struct throttle_session *s,
    const char *domain, double now);

/* Release the session's connection slots and free it. NULL is allowed. */
void throttle_session_end(struct throttle *t, struct throttle_session *s);

/* Call each(domain, arg), in sorted order, for every domain for which
 * throttle_admit() would refuse a new session at now: all connection
 * slots taken or no token left. each runs with the throttle's mutex
 * held: it must not call back into the throttle. */
void throttle_blocked(struct throttle *t, double now,
    void (*each)(const char *domain, void *arg), void *arg);

#endif

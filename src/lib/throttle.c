/* throttle: global and per-domain sending limits; see
 * include/assent/throttle.h */
#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "assent/text.h"
#include "assent/throttle.h"
#include "assent/xmalloc.h"

/*
 * Choices the header leaves open:
 *
 * - Upper case in a domain of the spec is refused, with a message saying
 *   to write it in lower case, rather than folded silently: the config
 *   file then shows names exactly as they are matched. throttle_admit()
 *   folds ASCII case itself, since a domain may reach it in any case.
 *   Labels may not start or end with '-' (LDH rule).
 *
 * - Every domain with a limit (named, or through "*") has one entry in a
 *   hash table: its limits, its per-minute bucket and how many sessions
 *   hold one of its slots. Named domains get their entry when configured,
 *   "*" domains when first admitted. A domain without any limit has no
 *   entry: admitting it costs one lookup and records nothing.
 *
 * - A tracked domain takes a slot in every session that admits it, even
 *   with no connection limit, so that a later throttle_configure() that
 *   adds one counts the sessions already in flight.
 *
 * - A session remembers the entries it holds slots in by pointer, so an
 *   entry is never freed while a slot is held. An entry that lost its
 *   limit in throttle_configure() but still has slots stays, marked not
 *   limited, until its last slot is released.
 *
 * - "*" entries are dropped again when the table grows past
 *   THROTTLE_TRACK_MAX, if they hold no slot and their bucket is full:
 *   such an entry is indistinguishable from a fresh one.
 *
 * - throttle_configure() does not refill buckets (it has no now): tokens
 *   are clamped to the new capacity and the time since the last refill
 *   counts at the new rate. A bucket that had no limit starts full.
 *
 * - A bucket's timestamp only moves forward: a now older than the last
 *   refill (two threads reading the clock before taking the mutex)
 *   refills nothing and is not counted twice.
 */

#define THROTTLE_VALUE_MAX   100000   /* connections, per minute */
#define THROTTLE_DOMAIN_MAX  253
#define THROTTLE_LABEL_MAX   63
#define THROTTLE_TRACK_MAX   10000    /* entries before a sweep */
#define THROTTLE_CHAINS      4096     /* hash chains: short at the bound */
#define THROTTLE_EPSILON     1e-9     /* float dust on a token just due */

/* One item of a parsed spec. */
struct throttle_limit {
	char *domain;                   /* "*" for the default */
	int connections;                /* 0: no limit */
	int per_minute;                 /* 0: no limit */
};

struct throttle_spec {
	struct throttle_limit *items;
	size_t n;
};

/* A domain with a limit, or one that had one and still has slots. */
struct throttle_domain {
	struct throttle_domain *next;   /* hash chain */
	bool limited;                   /* false: waiting for its slots */
	bool named;                     /* in the spec, not through "*" */
	int connections;
	int per_minute;
	int slots;                      /* sessions holding a slot */
	double tokens;
	double stamp;                   /* time of the last refill */
	char name[];                    /* lower case */
};

struct throttle {
	pthread_mutex_t mutex;
	int rate;                       /* per second; 0: no limit */
	double tokens;                  /* at most rate: one second's worth */
	double stamp;
	bool has_fallback;              /* "*" given */
	int fallback_connections;
	int fallback_per_minute;
	struct throttle_domain *chains[THROTTLE_CHAINS];
	size_t ndomains;
	size_t sweep_at;                /* sweep when ndomains passes it */
};

struct throttle_session {
	struct throttle_domain **held;  /* entries it holds a slot in */
	size_t n;
	size_t cap;
};

/* ---- spec parsing ---------------------------------------------------- */

static bool
throttle_is_blank(char c)
{
	return c == ' ' || c == '\t';
}

static void
throttle_trim(const char **s, const char **end)
{
	while (*s < *end && throttle_is_blank(**s))
		(*s)++;
	while (*end > *s && throttle_is_blank((*end)[-1]))
		(*end)--;
}

static void
spec_free(struct throttle_spec *sp)
{
	size_t i;

	for (i = 0; i < sp->n; i++)
		free(sp->items[i].domain);
	free(sp->items);
	sp->items = NULL;
	sp->n = 0;
}

/* One label of a domain: 1-63 characters, no '-' at either end (the
 * characters themselves were checked by the caller). */
static int
spec_check_label(const char *s, size_t len, struct assent_err *err)
{
	if (len == 0)
		return err_set(err, EX_CONFIG, "the domain has an empty label");
	if (len > THROTTLE_LABEL_MAX)
		return err_set(err, EX_CONFIG, "a label of the domain is "
		    "longer than %d characters", THROTTLE_LABEL_MAX);
	if (s[0] == '-' || s[len - 1] == '-')
		return err_set(err, EX_CONFIG, "a label of the domain starts "
		    "or ends with '-'");
	return 0;
}

static int
spec_check_chars(const char *s, size_t len, struct assent_err *err)
{
	size_t i;

	for (i = 0; i < len; i++) {
		if (s[i] >= 'A' && s[i] <= 'Z')
			return err_set(err, EX_CONFIG,
			    "write the domain in lower case");
		if (!((s[i] >= 'a' && s[i] <= 'z') ||
		    (s[i] >= '0' && s[i] <= '9') || s[i] == '-' || s[i] == '.'))
			return err_set(err, EX_CONFIG, "a domain holds only "
			    "letters, digits, '-' and '.' (A-labels for "
			    "international names)");
	}
	return 0;
}

/* "*" or a lower-case LDH domain name with at least one dot. */
static int
spec_check_domain(const char *s, size_t len, struct assent_err *err)
{
	const char *label = s, *dot, *end = s + len;

	if (len == 1 && s[0] == '*')
		return 0;
	if (spec_check_chars(s, len, err) == -1)
		return -1;
	if (len > THROTTLE_DOMAIN_MAX)
		return err_set(err, EX_CONFIG, "the domain is longer than %d "
		    "characters", THROTTLE_DOMAIN_MAX);
	if (memchr(s, '.', len) == NULL)
		return err_set(err, EX_CONFIG, "the domain has no dot: write "
		    "the whole domain name");
	for (;;) {
		dot = memchr(label, '.', (size_t)(end - label));
		if (spec_check_label(label, (size_t)((dot ? dot : end) - label),
		    err) == -1)
			return -1;
		if (dot == NULL)
			return 0;
		label = dot + 1;
	}
}

/* A decimal number from 0 to THROTTLE_VALUE_MAX; what names it. */
static int
spec_number(const char *s, size_t len, const char *what, int *value_r,
    struct assent_err *err)
{
	long v = 0;
	size_t i;

	for (i = 0; i < len && s[i] >= '0' && s[i] <= '9' &&
	    v <= THROTTLE_VALUE_MAX; i++)
		v = v * 10 + (s[i] - '0');
	if (len == 0 || i < len || v > THROTTLE_VALUE_MAX)
		return err_set(err, EX_CONFIG, "%s must be a whole number "
		    "from 0 to %d", what, THROTTLE_VALUE_MAX);
	*value_r = (int)v;
	return 0;
}

/* DOMAIN=CONNECTIONS/PER_MINUTE, blanks allowed around '=' and '/'.
 * Fills lim (lim->domain allocated) only on success. */
static int
spec_parse_item(const char *s, const char *end, struct throttle_limit *lim,
    struct assent_err *err)
{
	const char *eq, *slash, *d = s, *dend, *c, *cend, *p, *pend = end;

	eq = memchr(s, '=', (size_t)(end - s));
	slash = eq == NULL ? NULL : memchr(eq, '/', (size_t)(end - eq));
	if (slash == NULL)
		goto syntax;
	dend = eq;
	c = eq + 1;
	cend = slash;
	p = slash + 1;
	throttle_trim(&d, &dend);
	throttle_trim(&c, &cend);
	throttle_trim(&p, &pend);
	if (d == dend || c == cend || p == pend)
		goto syntax;
	if (spec_check_domain(d, (size_t)(dend - d), err) == -1 ||
	    spec_number(c, (size_t)(cend - c), "CONNECTIONS",
	    &lim->connections, err) == -1 ||
	    spec_number(p, (size_t)(pend - p), "PER_MINUTE",
	    &lim->per_minute, err) == -1)
		return -1;
	lim->domain = xstrndup(d, (size_t)(dend - d));
	return 0;
syntax:
	return err_set(err, EX_CONFIG,
	    "expected DOMAIN=CONNECTIONS/PER_MINUTE");
}

static int
spec_check_duplicate(const struct throttle_spec *sp, const char *domain,
    struct assent_err *err)
{
	size_t i;

	for (i = 0; i < sp->n; i++) {
		if (strcmp(sp->items[i].domain, domain) != 0)
			continue;
		if (strcmp(domain, "*") == 0)
			return err_set(err, EX_CONFIG, "the default \"*\" was "
			    "already given by domain limit %zu", i + 1);
		return err_set(err, EX_CONFIG, "%s is already limited by "
		    "domain limit %zu", domain, i + 1);
	}
	return 0;
}

/* Parse the item at [s, end), the pos'th, and append it to sp. Errors
 * name the item: domain limit 2 ("outlook.com=2"): ... */
static int
spec_add_item(struct throttle_spec *sp, size_t pos, const char *s,
    const char *end, struct assent_err *err)
{
	struct throttle_limit lim = { NULL, 0, 0 };
	char shown[TEXT_QUOTE_SIZE];
	int rc;

	throttle_trim(&s, &end);
	if (s == end)
		rc = err_set(err, EX_CONFIG, "empty item (a stray comma?)");
	else if (sp->n == THROTTLE_MAX_DOMAINS)
		rc = err_set(err, EX_CONFIG, "more than %d domain limits",
		    THROTTLE_MAX_DOMAINS);
	else if ((rc = spec_parse_item(s, end, &lim, err)) == 0 &&
	    (rc = spec_check_duplicate(sp, lim.domain, err)) == -1)
		free(lim.domain);
	if (rc == -1)
		return err_prefix(err, "domain limit %zu (\"%s\")", pos,
		    text_quote(s, (size_t)(end - s), shown, sizeof(shown)));
	sp->items = xreallocarray(sp->items, sp->n + 1, sizeof(*sp->items));
	sp->items[sp->n++] = lim;
	return 0;
}

/* Parse spec into sp (empty for NULL, "" or blanks). On error sp is
 * left empty. */
static int
spec_parse(const char *spec, struct throttle_spec *sp,
    struct assent_err *err)
{
	const char *p = spec == NULL ? "" : spec, *comma, *end;
	size_t pos;

	sp->items = NULL;
	sp->n = 0;
	while (throttle_is_blank(*p))
		p++;
	if (*p == '\0')
		return 0;
	for (pos = 1;; pos++) {
		comma = strchr(p, ',');
		end = comma != NULL ? comma : p + strlen(p);
		if (spec_add_item(sp, pos, p, end, err) == -1) {
			spec_free(sp);
			return -1;
		}
		if (comma == NULL)
			return 0;
		p = comma + 1;
	}
}

static const struct throttle_limit *
spec_fallback(const struct throttle_spec *sp)
{
	size_t i;

	for (i = 0; i < sp->n; i++)
		if (strcmp(sp->items[i].domain, "*") == 0)
			return &sp->items[i];
	return NULL;
}

int
throttle_check_spec(const char *spec, struct assent_err *err)
{
	struct throttle_spec sp;

	if (spec_parse(spec, &sp, err) == -1)
		return -1;
	spec_free(&sp);
	return 0;
}

/* ---- token buckets --------------------------------------------------- */

/* A bucket's tokens after elapsed seconds (none when negative), capped. */
static double
bucket_level(double tokens, double elapsed, double per_second, double cap)
{
	if (elapsed > 0)
		tokens += elapsed * per_second;
	return tokens < cap ? tokens : cap;
}

static bool
bucket_has_token(double tokens)
{
	return tokens >= 1 - THROTTLE_EPSILON;
}

/* A new capacity: keep the tokens, clamped; a bucket that had no limit
 * (old_cap 0) starts full. */
static double
bucket_resize(double tokens, int old_cap, int new_cap)
{
	if (old_cap == 0 || tokens > new_cap)
		return new_cap;
	return tokens;
}

/* ---- the domain table ------------------------------------------------ */

static char
throttle_lower(char c)
{
	return c >= 'A' && c <= 'Z' ? (char)(c - 'A' + 'a') : c;
}

/* FNV-1a over the lower-cased name. */
static size_t
domain_hash(const char *name)
{
	uint32_t h = 2166136261u;

	for (; *name != '\0'; name++) {
		h ^= (unsigned char)throttle_lower(*name);
		h *= 16777619u;
	}
	return h % THROTTLE_CHAINS;
}

/* ASCII case-insensitive equality; e->name is already lower case. */
static bool
domain_matches(const struct throttle_domain *e, const char *name)
{
	const char *a = e->name;

	while (*a != '\0' && *a == throttle_lower(*name)) {
		a++;
		name++;
	}
	return *a == '\0' && *name == '\0';
}

static struct throttle_domain *
domain_find(struct throttle *t, const char *name)
{
	struct throttle_domain *e;

	for (e = t->chains[domain_hash(name)]; e != NULL; e = e->next)
		if (domain_matches(e, name))
			return e;
	return NULL;
}

/* A new entry for name, limited, full bucket, no slots. */
static struct throttle_domain *
domain_insert(struct throttle *t, const char *name, int connections,
    int per_minute, double now)
{
	size_t len = strlen(name), i, h = domain_hash(name);
	struct throttle_domain *e;

	e = xcalloc(1, sizeof(*e) + len + 1);
	for (i = 0; i < len; i++)
		e->name[i] = throttle_lower(name[i]);
	e->limited = true;
	e->connections = connections;
	e->per_minute = per_minute;
	e->tokens = per_minute;
	e->stamp = now;
	e->next = t->chains[h];
	t->chains[h] = e;
	t->ndomains++;
	return e;
}

/* Free every entry for which keep() is false. */
static void
domain_filter(struct throttle *t,
    bool (*keep)(const struct throttle_domain *, double), double now)
{
	struct throttle_domain **pp, *e;
	size_t i;

	for (i = 0; i < THROTTLE_CHAINS; i++) {
		pp = &t->chains[i];
		while ((e = *pp) != NULL) {
			if (keep(e, now)) {
				pp = &e->next;
				continue;
			}
			*pp = e->next;
			free(e);
			t->ndomains--;
		}
	}
}

static void
domain_remove(struct throttle *t, struct throttle_domain *gone)
{
	struct throttle_domain **pp;

	for (pp = &t->chains[domain_hash(gone->name)]; *pp != gone;
	    pp = &(*pp)->next)
		;
	*pp = gone->next;
	free(gone);
	t->ndomains--;
}

static double
domain_level(const struct throttle_domain *e, double now)
{
	return bucket_level(e->tokens, now - e->stamp, e->per_minute / 60.0,
	    e->per_minute);
}

static void
domain_refill(struct throttle_domain *e, double now)
{
	if (now <= e->stamp)
		return;
	e->tokens = domain_level(e, now);
	e->stamp = now;
}

static void
domain_set_limits(struct throttle_domain *e, int connections, int per_minute)
{
	e->tokens = bucket_resize(e->tokens, e->limited ? e->per_minute : 0,
	    per_minute);
	e->connections = connections;
	e->per_minute = per_minute;
	e->limited = true;
}

/* The "*" limits, or none (the entry then waits for its slots to go,
 * and starts afresh should a limit come back). */
static void
domain_set_fallback(struct throttle_domain *e,
    const struct throttle_limit *fb)
{
	if (fb != NULL) {
		domain_set_limits(e, fb->connections, fb->per_minute);
		return;
	}
	e->limited = false;
	e->connections = 0;
	e->per_minute = 0;
}

/* Kept by a sweep: it holds something a fresh entry would not. */
static bool
domain_worth_keeping(const struct throttle_domain *e, double now)
{
	return e->named || e->slots > 0 ||
	    domain_level(e, now) < e->per_minute - THROTTLE_EPSILON;
}

static bool
domain_still_limited(const struct throttle_domain *e, double now)
{
	(void)now;
	return e->limited || e->slots > 0;
}

/* An entry for a domain limited only through "*". Bound the table
 * first, so that the sweep cannot take the new entry; the next sweep
 * waits until the table doubles if this one freed little. */
static struct throttle_domain *
domain_track(struct throttle *t, const char *name, double now)
{
	if (t->ndomains >= t->sweep_at) {
		domain_filter(t, domain_worth_keeping, now);
		t->sweep_at = t->ndomains * 2 > THROTTLE_TRACK_MAX ?
		    t->ndomains * 2 : THROTTLE_TRACK_MAX;
	}
	return domain_insert(t, name, t->fallback_connections,
	    t->fallback_per_minute, now);
}

/* ---- configuration --------------------------------------------------- */

static void
throttle_set_rate(struct throttle *t, int rate)
{
	t->tokens = bucket_resize(t->tokens, t->rate, rate);
	t->rate = rate;
}

/* Give every entry the limits of sp: named ones first (created when
 * missing), while each entry still knows its old capacity; then "*" or
 * no limit for the rest; then drop what has no limit and no slot.
 * Called with the mutex held. */
static void
throttle_apply(struct throttle *t, int rate, const struct throttle_spec *sp)
{
	const struct throttle_limit *fb = spec_fallback(sp), *lim;
	struct throttle_domain *e;
	size_t i;

	throttle_set_rate(t, rate);
	t->has_fallback = fb != NULL;
	t->fallback_connections = fb != NULL ? fb->connections : 0;
	t->fallback_per_minute = fb != NULL ? fb->per_minute : 0;
	for (i = 0; i < THROTTLE_CHAINS; i++)
		for (e = t->chains[i]; e != NULL; e = e->next)
			e->named = false;
	for (i = 0; i < sp->n; i++) {
		if ((lim = &sp->items[i]) == fb)
			continue;
		/* stamp 0 for a new one: it is full whenever first used */
		if ((e = domain_find(t, lim->domain)) == NULL)
			e = domain_insert(t, lim->domain, lim->connections,
			    lim->per_minute, 0);
		else
			domain_set_limits(e, lim->connections, lim->per_minute);
		e->named = true;
	}
	for (i = 0; i < THROTTLE_CHAINS; i++)
		for (e = t->chains[i]; e != NULL; e = e->next)
			if (!e->named)
				domain_set_fallback(e, fb);
	domain_filter(t, domain_still_limited, 0);
}

static int
throttle_check_rate(int rate, struct assent_err *err)
{
	if (rate < 0)
		return err_set(err, EX_CONFIG, "sending rate %d is negative",
		    rate);
	return 0;
}

int
throttle_new(int rate, const char *domain_spec, struct throttle **t_r,
    struct assent_err *err)
{
	struct throttle_spec sp;
	struct throttle *t;

	if (throttle_check_rate(rate, err) == -1 ||
	    spec_parse(domain_spec, &sp, err) == -1)
		return -1;
	t = xcalloc(1, sizeof(*t));
	if (pthread_mutex_init(&t->mutex, NULL) != 0)
		abort();
	t->sweep_at = THROTTLE_TRACK_MAX;
	throttle_apply(t, rate, &sp);
	spec_free(&sp);
	*t_r = t;
	return 0;
}

void
throttle_free(struct throttle *t)
{
	struct throttle_domain *e, *next;
	size_t i;

	if (t == NULL)
		return;
	for (i = 0; i < THROTTLE_CHAINS; i++)
		for (e = t->chains[i]; e != NULL; e = next) {
			next = e->next;
			free(e);
		}
	pthread_mutex_destroy(&t->mutex);
	free(t);
}

int
throttle_configure(struct throttle *t, int rate, const char *domain_spec,
    struct assent_err *err)
{
	struct throttle_spec sp;

	if (throttle_check_rate(rate, err) == -1 ||
	    spec_parse(domain_spec, &sp, err) == -1)
		return -1;
	pthread_mutex_lock(&t->mutex);
	throttle_apply(t, rate, &sp);
	pthread_mutex_unlock(&t->mutex);
	spec_free(&sp);
	return 0;
}

/* ---- the global rate ------------------------------------------------- */

double
throttle_now(void)
{
	struct timespec ts;

	if (clock_gettime(CLOCK_MONOTONIC, &ts) == -1)
		abort();
	return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

/* Take a global token at now; with the mutex held. */
static bool
throttle_take(struct throttle *t, double now, double *wait_r)
{
	if (t->rate == 0)
		return true;
	if (now > t->stamp) {
		t->tokens = bucket_level(t->tokens, now - t->stamp, t->rate,
		    t->rate);
		t->stamp = now;
	}
	if (bucket_has_token(t->tokens)) {
		t->tokens -= 1;
		return true;
	}
	if (wait_r != NULL)
		*wait_r = (1 - t->tokens) / t->rate + (t->stamp - now);
	return false;
}

bool
throttle_try_pace(struct throttle *t, double now, double *wait_r)
{
	bool ok;

	pthread_mutex_lock(&t->mutex);
	ok = throttle_take(t, now, wait_r);
	pthread_mutex_unlock(&t->mutex);
	return ok;
}

static void
throttle_sleep(double seconds)
{
	struct timespec ts;

	ts.tv_sec = (time_t)seconds;
	ts.tv_nsec = (long)((seconds - (double)ts.tv_sec) * 1e9);
	if (ts.tv_nsec >= 1000000000L)
		ts.tv_nsec = 999999999L;
	while (clock_nanosleep(CLOCK_MONOTONIC, 0, &ts, &ts) == EINTR)
		;
}

/* The clock is read inside the mutex so that threads refill in order;
 * the sleep is outside it. Whoever wakes first gets the token; the
 * others compute their wait again. */
void
throttle_pace(struct throttle *t)
{
	double wait = 0;
	bool ok;

	for (;;) {
		pthread_mutex_lock(&t->mutex);
		ok = throttle_take(t, throttle_now(), &wait);
		pthread_mutex_unlock(&t->mutex);
		if (ok)
			return;
		throttle_sleep(wait);
	}
}

/* ---- sessions and domains -------------------------------------------- */

struct throttle_session *
throttle_session_begin(struct throttle *t)
{
	(void)t;
	return xcalloc(1, sizeof(struct throttle_session));
}

static bool
session_holds(const struct throttle_session *s,
    const struct throttle_domain *e)
{
	size_t i;

	for (i = 0; i < s->n; i++)
		if (s->held[i] == e)
			return true;
	return false;
}

static void
session_hold(struct throttle_session *s, struct throttle_domain *e)
{
	if (s->n == s->cap) {
		s->cap = s->cap == 0 ? 8 : s->cap * 2;
		s->held = xreallocarray(s->held, s->cap, sizeof(*s->held));
	}
	s->held[s->n++] = e;
	e->slots++;
}

/* A minute token always; a slot too unless the session has one. */
static bool
domain_take(struct throttle_domain *e, struct throttle_session *s,
    double now)
{
	bool held = session_holds(s, e);

	domain_refill(e, now);
	if (!held && e->connections > 0 && e->slots >= e->connections)
		return false;
	if (e->per_minute > 0 && !bucket_has_token(e->tokens))
		return false;
	if (e->per_minute > 0)
		e->tokens -= 1;
	if (!held)
		session_hold(s, e);
	return true;
}

bool
throttle_admit(struct throttle *t, struct throttle_session *s,
    const char *domain, double now)
{
	struct throttle_domain *e;
	bool ok;

	pthread_mutex_lock(&t->mutex);
	e = domain_find(t, domain);
	if (e == NULL && t->has_fallback)
		e = domain_track(t, domain, now);
	ok = e == NULL || !e->limited || domain_take(e, s, now);
	pthread_mutex_unlock(&t->mutex);
	return ok;
}

void
throttle_session_end(struct throttle *t, struct throttle_session *s)
{
	struct throttle_domain *e;
	size_t i;

	if (s == NULL)
		return;
	pthread_mutex_lock(&t->mutex);
	for (i = 0; i < s->n; i++) {
		e = s->held[i];
		if (--e->slots == 0 && !e->limited)
			domain_remove(t, e);
	}
	pthread_mutex_unlock(&t->mutex);
	free(s->held);
	free(s);
}

/* ---- the blocked list ------------------------------------------------ */

static bool
domain_is_blocked(const struct throttle_domain *e, double now)
{
	if (!e->limited)
		return false;
	if (e->connections > 0 && e->slots >= e->connections)
		return true;
	return e->per_minute > 0 && !bucket_has_token(domain_level(e, now));
}

static int
blocked_compare(const void *a, const void *b)
{
	return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* Sorted, so that the same state always gives the same list. The
 * names are handed over before the mutex is released: an entry may go
 * after. */
void
throttle_blocked(struct throttle *t, double now,
    void (*each)(const char *domain, void *arg), void *arg)
{
	const char **names = NULL;
	struct throttle_domain *e;
	size_t i, n = 0;

	pthread_mutex_lock(&t->mutex);
	for (i = 0; i < THROTTLE_CHAINS; i++)
		for (e = t->chains[i]; e != NULL; e = e->next)
			if (domain_is_blocked(e, now)) {
				names = xreallocarray(names, n + 1,
				    sizeof(*names));
				names[n++] = e->name;
			}
	if (n > 1)
		qsort(names, n, sizeof(*names), blocked_compare);
	for (i = 0; i < n; i++)
		each(names[i], arg);
	pthread_mutex_unlock(&t->mutex);
	free(names);
}

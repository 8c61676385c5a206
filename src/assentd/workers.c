/*
 * workers: the sender workers of assentd (see assentd.h).
 *
 * Each worker is a thread that owns everything it touches: a database
 * connection (its sender session's advisory lock lives there), the
 * keys and a token signer, a sender with its SMTP transport. Only the
 * throttle is shared. A worker sleeps on its connection (LISTEN
 * assent_work) when there is nothing to claim, and backs off when the
 * database or the relay is down.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "assent/db.h"
#include "assent/keys.h"
#include "assent/log.h"
#include "assent/sender.h"
#include "assent/suppress.h"
#include "assent/throttle.h"
#include "assent/token.h"
#include "assent/xmalloc.h"
#include "assentd.h"

#define WORKER_BACKOFF_FIRST_MS 500
#define WORKER_BACKOFF_MAX_MS   30000
#define WORKER_IDLE_MS          1000
#define WORKER_REPORT_S         30
#define WORKER_BROKEN_REPORT_S  600     /* repeat a broken campaign's reason */
#define WORKER_FLUSH_TRIES      5

struct worker {
	struct workers *w;
	int index;
	pthread_t thread;
	const struct assent_conf *conf; /* borrowed: the daemon's start-up one */
	PGconn *conn;
	struct keys *keys;
	struct token_signer *signer;
	struct suppress_ctx gate;
	struct sender *sender;
	struct sender_stats stats;
	time_t reported_at;
	/* outcomes of a session whose write failed: written first thing
	 * on the next connection (sender.h) */
	struct sender_outcomes *pending;
	int flush_failures;
	long long broken_id;            /* last broken campaign reported */
	time_t broken_at;
};

struct workers {
	struct stopper stop;
	struct throttle *throttle;
	struct worker *all;
	int n;
};

/* ---- the stopper -------------------------------------------------------- */

void
stopper_init(struct stopper *st)
{
	if (pipe2(st->fds, O_CLOEXEC | O_NONBLOCK) == -1)
		fatal("pipe");
	st->stopped = 0;
}

void
stopper_raise(struct stopper *st)
{
	st->stopped = 1;
	/* The byte is never read: the pipe stays readable for every waiter. */
	if (write(st->fds[1], "x", 1) == -1 && errno != EAGAIN)
		log_warn("waking the workers");
}

void
stopper_close(struct stopper *st)
{
	close(st->fds[0]);
	close(st->fds[1]);
}

static bool
stopper_drain(PGconn *conn)
{
	PGnotify *n;
	bool any = false;

	if (conn == NULL || !PQconsumeInput(conn))
		return false;
	while ((n = PQnotifies(conn)) != NULL) {
		any = true;
		PQfreemem(n);
	}
	return any;
}

bool
stopper_wait(struct stopper *st, PGconn *conn, int ms)
{
	struct pollfd pfd[2] = {
		{ .fd = st->fds[0], .events = POLLIN },
		{ .fd = conn != NULL ? PQsocket(conn) : -1, .events = POLLIN },
	};

	if (st->stopped)
		return false;
	if (stopper_drain(conn))
		return true;
	if (poll(pfd, pfd[1].fd >= 0 ? 2 : 1, ms) == -1 && errno != EINTR)
		log_warn("poll");
	return stopper_drain(conn);
}

/* ---- one worker ------------------------------------------------------------ */

static void
worker_backoff(struct worker *wk, int *delay_ms)
{
	stopper_wait(&wk->w->stop, NULL, *delay_ms);
	*delay_ms = *delay_ms * 2 > WORKER_BACKOFF_MAX_MS ?
	    WORKER_BACKOFF_MAX_MS : *delay_ms * 2;
}

static void
worker_drop(struct worker *wk)
{
	sender_free(wk->sender);
	wk->sender = NULL;
	token_signer_free(wk->signer);
	wk->signer = NULL;
	keys_free(wk->keys);
	wk->keys = NULL;
	db_close(wk->conn);
	wk->conn = NULL;
}

/* Connection, keys, signer, sender: everything a batch needs. */
static int
worker_setup(struct worker *wk, struct assent_err *err)
{
	/* The settings and keys first: without them there is nothing to
	 * connect for. */
	if (conf_check_sending(wk->conf, err) < 0 ||
	    keys_load(wk->conf->tokens_keys_file, &wk->keys, err) < 0 ||
	    token_signer_new(wk->keys, &wk->signer, err) < 0 ||
	    db_connect(wk->conf->database_dsn, &wk->conn, err) < 0 ||
	    db_exec(wk->conn, NULL, err, "LISTEN assent_work", 0, NULL) < 0)
		return -1;
	wk->gate.pepper = keys_pepper(wk->keys, &wk->gate.pepper_len);
	wk->gate.gmail_mailbox_key = wk->conf->suppress_gmail_mailbox_key;
	return sender_new(wk->conn, wk->conf, &wk->gate, wk->signer,
	    wk->w->throttle, &wk->sender, err);
}

static void
worker_report(struct worker *wk, bool force)
{
	struct sender_stats *st = &wk->stats;
	time_t now = time(NULL);

	if (st->claimed == 0 || (!force && now - wk->reported_at < WORKER_REPORT_S))
		return;
	log_info("worker %d: claimed %ld, sent %ld, suppressed %ld, failed %ld, "
	    "retrying %ld, deferred %ld, unknown %ld", wk->index, st->claimed,
	    st->sent, st->suppressed, st->failed, st->retried, st->deferred,
	    st->unknown);
	memset(st, 0, sizeof(*st));
	wk->reported_at = now;
}

/* What a turn found that an operator must hear of at once. */
static void
worker_warn(struct worker *wk)
{
	struct sender_stats *st = &wk->stats;
	time_t now = time(NULL);

	if (st->unwritten > 0)
		log_warnx("worker %d: %ld outcomes matched no delivery being sent "
		    "(requeued meanwhile by resend-unknown?)", wk->index,
		    st->unwritten);
	st->unwritten = 0;
	if (st->broken_campaign != 0 && (st->broken_campaign != wk->broken_id ||
	    now - wk->broken_at >= WORKER_BROKEN_REPORT_S)) {
		log_error("worker %d: campaign %lld is not being sent: %s",
		    wk->index, st->broken_campaign, st->broken_reason);
		wk->broken_id = st->broken_campaign;
		wk->broken_at = now;
	}
	st->broken_campaign = 0;
}

/* Write the outcomes a lost connection kept from being written. After
 * a few failures on a working connection they are given up: their
 * deliveries then show as unknown, which is what is known of them. */
static int
worker_flush(struct worker *wk, struct assent_err *err)
{
	size_t n = sender_outcomes_count(wk->pending);
	long written;

	if (sender_outcomes_write(wk->conn, wk->pending, &written, err) < 0) {
		if (++wk->flush_failures < WORKER_FLUSH_TRIES)
			return -1;
		log_error("worker %d: giving up writing the outcomes of %zu "
		    "messages (%s): they will show as unknown", wk->index, n,
		    err->msg);
	} else {
		log_info("worker %d: wrote the outcomes of %ld messages sent "
		    "before the database connection was lost", wk->index, written);
		if ((size_t)written < n)
			log_warnx("worker %d: %zu of them matched no delivery being "
			    "sent any more", wk->index, n - (size_t)written);
	}
	sender_outcomes_free(wk->pending);
	wk->pending = NULL;
	wk->flush_failures = 0;
	return 0;
}

/* A failed turn: the relay (keep the connection, back off) or the
 * database (drop everything and start again). */
static void
worker_failed(struct worker *wk, const struct assent_err *err, int *relay_ms,
    int *db_ms)
{
	bool connected = wk->conn != NULL && PQstatus(wk->conn) == CONNECTION_OK;

	if (wk->sender != NULL && wk->pending == NULL)
		wk->pending = sender_take_unrecorded(wk->sender);
	if (err->code == EX_UNAVAILABLE && connected) {
		log_warnx("worker %d: relay: %s; retrying in %d.%d s", wk->index,
		    err->msg, *relay_ms / 1000, *relay_ms % 1000 / 100);
		worker_backoff(wk, relay_ms);
		return;
	}
	log_warnx("worker %d: %s; reconnecting", wk->index, err->msg);
	worker_drop(wk);
	worker_backoff(wk, db_ms);
}

static void *
worker_main(void *arg)
{
	struct worker *wk = arg;
	struct stopper *stop = &wk->w->stop;
	int db_ms = WORKER_BACKOFF_FIRST_MS, relay_ms = WORKER_BACKOFF_FIRST_MS;
	struct sender_stats before;
	struct assent_err err;
	bool worked;
	int rc;

	while (!stop->stopped) {
		err_clear(&err);
		if (wk->sender == NULL) {
			if (worker_setup(wk, &err) < 0) {
				log_warnx("worker %d: cannot send yet: %s", wk->index,
				    err.msg);
				worker_drop(wk);
				worker_backoff(wk, &db_ms);
				continue;
			}
			sender_set_stop(wk->sender, &stop->stopped);
		}
		if (wk->pending != NULL && worker_flush(wk, &err) < 0) {
			worker_failed(wk, &err, &relay_ms, &db_ms);
			continue;
		}
		before = wk->stats;
		rc = sender_run_batch(wk->sender, &worked, &wk->stats, &err);
		metrics_sends(&before, &wk->stats);
		if (rc < 0) {
			worker_warn(wk);
			worker_failed(wk, &err, &relay_ms, &db_ms);
			continue;
		}
		worker_warn(wk);
		db_ms = relay_ms = WORKER_BACKOFF_FIRST_MS;
		worker_report(wk, false);
		if (!worked)
			stopper_wait(stop, wk->conn, WORKER_IDLE_MS);
	}
	worker_report(wk, true);
	err_clear(&err);
	if (wk->pending != NULL && wk->conn != NULL &&
	    PQstatus(wk->conn) == CONNECTION_OK) {
		wk->flush_failures = WORKER_FLUSH_TRIES;        /* one try */
		worker_flush(wk, &err);
	}
	if (wk->pending != NULL)
		log_error("worker %d: stopping with the outcomes of %zu messages "
		    "unwritten: they will show as unknown", wk->index,
		    sender_outcomes_count(wk->pending));
	sender_outcomes_free(wk->pending);
	worker_drop(wk);
	return NULL;
}

/* ---- the set ------------------------------------------------------------------ */

int
workers_start(const struct assent_conf *conf, struct workers **w_r,
    struct assent_err *err)
{
	struct workers *w = xcalloc(1, sizeof(*w));

	*w_r = NULL;
	if (throttle_new(conf->sending_rate, conf->sending_domain_limits,
	    &w->throttle, err) < 0) {
		free(w);
		return -1;
	}
	stopper_init(&w->stop);
	w->all = xcalloc((size_t)conf->sending_concurrency, sizeof(*w->all));
	for (int i = 0; i < conf->sending_concurrency; i++) {
		struct worker *wk = &w->all[i];

		wk->w = w;
		wk->index = i + 1;
		wk->conf = conf;
		if ((errno = pthread_create(&wk->thread, NULL, worker_main, wk)) != 0) {
			err_set(err, EX_OSERR, "starting a sender worker: %s",
			    strerror(errno));
			goto fail;
		}
		w->n++;
	}
	log_info("%d sender workers started", w->n);
	*w_r = w;
	return 0;
fail:
	workers_stop(w);
	return -1;
}

void
workers_reload(struct workers *w, const struct assent_conf *conf)
{
	struct assent_err err;

	if (w == NULL)
		return;
	err_clear(&err);
	if (throttle_configure(w->throttle, conf->sending_rate,
	    conf->sending_domain_limits, &err) < 0)
		log_error("reload: keeping the sending limits: %s", err.msg);
}

void
workers_stop(struct workers *w)
{
	if (w == NULL)
		return;
	stopper_raise(&w->stop);
	for (int i = 0; i < w->n; i++)
		pthread_join(w->all[i].thread, NULL);
	stopper_close(&w->stop);
	throttle_free(w->throttle);
	free(w->all);
	free(w);
}

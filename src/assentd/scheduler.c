/*
 * scheduler: the one thread in the cluster that starts due campaigns
 * (see assentd.h).
 *
 * Every assentd runs this thread; the one whose connection holds the
 * advisory lock (ASSENT_SESSION_NS, 0) does the work, the others try
 * again every few seconds, so that when the leader dies (its lock dies
 * with its connection) another takes over. Each tick: start what is
 * due, turn deliveries of dead senders into 'unknown', mark finished
 * campaigns done. A tick comes every second, and at once on NOTIFY
 * assent_campaigns (schedule, pause, resume, cancel from the CLI).
 */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "assent/campaign.h"
#include "assent/db.h"
#include "assent/log.h"
#include "assent/sender.h"
#include "assent/xmalloc.h"
#include "assentd.h"

#define SCHEDULER_TICK_MS        1000
#define SCHEDULER_FOLLOWER_TICKS 5
#define SCHEDULER_BACKOFF_MAX_MS 30000

struct scheduler {
	struct stopper stop;
	pthread_t thread;
	char *dsn;
	long max_age;
	PGconn *conn;
	bool leader;
	long long *overdue;             /* campaigns already warned about */
	size_t noverdue;
};

/* A scheduled campaign too far past its time is not started (see
 * campaign.h); say so once per campaign, loudly. */
static void
scheduler_overdue(struct scheduler *s)
{
	struct assent_err err;
	json_t *rows, *row;
	size_t i;

	err_clear(&err);
	if (campaign_overdue(s->conn, s->max_age, &rows, &err) < 0)
		return;
	json_array_foreach(rows, i, row) {
		long long id = json_integer_value(json_object_get(row, "id"));
		bool told = false;

		for (size_t k = 0; k < s->noverdue && !told; k++)
			told = s->overdue[k] == id;
		if (told)
			continue;
		log_warnx("scheduler: campaign %s was scheduled for %s, more than %ld s "
		    "ago: not starting it (assent campaign schedule %s --at now, or "
		    "--force, sends it)",
		    json_string_value(json_object_get(row, "name")),
		    json_string_value(json_object_get(row, "scheduled_at")),
		    s->max_age, json_string_value(json_object_get(row, "name")));
		s->overdue = xreallocarray(s->overdue, s->noverdue + 1,
		    sizeof(*s->overdue));
		s->overdue[s->noverdue++] = id;
	}
	json_decref(rows);
}

static void
scheduler_drop(struct scheduler *s)
{
	if (s->leader)
		log_info("scheduler: no longer the cluster's scheduler");
	db_close(s->conn);
	s->conn = NULL;
	s->leader = false;
}

static int
scheduler_connect(struct scheduler *s, struct assent_err *err)
{
	if (db_connect(s->dsn, &s->conn, err) < 0 ||
	    db_exec(s->conn, NULL, err, "LISTEN assent_campaigns", 0, NULL) < 0)
		return -1;
	return 0;
}

static int
scheduler_try_lead(struct scheduler *s, struct assent_err *err)
{
	char ns[16];
	const char *params[] = { ns };
	PGresult *res;

	snprintf(ns, sizeof(ns), "%d", ASSENT_SESSION_NS);
	if (db_exec(s->conn, &res, err, "SELECT pg_try_advisory_lock($1::int, 0)",
	    1, params) < 0)
		return -1;
	s->leader = PQgetvalue(res, 0, 0)[0] == 't';
	PQclear(res);
	if (s->leader)
		log_info("scheduler: this daemon schedules for the cluster");
	return 0;
}

/* Each step on its own: one that keeps failing must not stop the
 * others (a campaign that cannot start must not stop the reaping). The
 * first error is returned. */
static int
scheduler_tick(struct scheduler *s, struct assent_err *err)
{
	struct assent_err e[3];
	int started = 0, finished = 0, rc = 0;
	long orphans = 0;

	for (int i = 0; i < 3; i++)
		err_clear(&e[i]);
	if (campaign_start_due(s->conn, s->max_age, &started, &e[0]) < 0)
		rc = -1;
	if (sender_reap_orphans(s->conn, &orphans, &e[1]) < 0)
		rc = -1;
	if (campaign_finish_done(s->conn, &finished, &e[2]) < 0)
		rc = -1;
	for (int i = 0; rc < 0 && i < 3; i++)
		if (e[i].code != 0) {
			*err = e[i];
			break;
		}
	scheduler_overdue(s);
	if (started > 0)
		log_info("scheduler: started %d campaign%s", started,
		    started == 1 ? "" : "s");
	if (orphans > 0)
		log_warnx("scheduler: %ld deliver%s left by a sender that stopped "
		    "are now unknown (assent campaign resend-unknown sends them)",
		    orphans, orphans == 1 ? "y" : "ies");
	if (finished > 0)
		log_info("scheduler: %d campaign%s done", finished,
		    finished == 1 ? "" : "s");
	return rc;
}

static void *
scheduler_main(void *arg)
{
	struct scheduler *s = arg;
	int backoff_ms = 500, ticks = 0;
	struct assent_err err;

	while (!s->stop.stopped) {
		err_clear(&err);
		if (s->conn == NULL && scheduler_connect(s, &err) < 0)
			goto failed;
		if (!s->leader && ticks % SCHEDULER_FOLLOWER_TICKS == 0 &&
		    scheduler_try_lead(s, &err) < 0)
			goto failed;
		if (s->leader && scheduler_tick(s, &err) < 0)
			goto failed;
		backoff_ms = 500;
		ticks++;
		stopper_wait(&s->stop, s->conn, SCHEDULER_TICK_MS);
		continue;
failed:
		log_warnx("scheduler: %s; retrying in %d.%d s", err.msg,
		    backoff_ms / 1000, backoff_ms % 1000 / 100);
		if (PQstatus(s->conn) != CONNECTION_OK)
			scheduler_drop(s);
		stopper_wait(&s->stop, NULL, backoff_ms);
		backoff_ms = backoff_ms * 2 > SCHEDULER_BACKOFF_MAX_MS ?
		    SCHEDULER_BACKOFF_MAX_MS : backoff_ms * 2;
	}
	scheduler_drop(s);
	return NULL;
}

int
scheduler_start(const struct assent_conf *conf, struct scheduler **s_r,
    struct assent_err *err)
{
	struct scheduler *s = xcalloc(1, sizeof(*s));

	*s_r = NULL;
	s->dsn = xstrdup(conf->database_dsn);
	s->max_age = conf->sending_max_schedule_age;
	stopper_init(&s->stop);
	if ((errno = pthread_create(&s->thread, NULL, scheduler_main, s)) != 0) {
		err_set(err, EX_OSERR, "starting the scheduler: %s", strerror(errno));
		stopper_close(&s->stop);
		free(s->dsn);
		free(s);
		return -1;
	}
	*s_r = s;
	return 0;
}

void
scheduler_stop(struct scheduler *s)
{
	if (s == NULL)
		return;
	stopper_raise(&s->stop);
	pthread_join(s->thread, NULL);
	stopper_close(&s->stop);
	free(s->overdue);
	free(s->dsn);
	free(s);
}

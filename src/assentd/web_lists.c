/*
 * web_lists: the name of every list, kept in memory for the GET pages
 * of /u/ and /c/, so that showing one needs no query; see assentd.h.
 *
 * Lists are few: the table is two arrays sorted by id, loaded whole by
 * whichever pool thread finds it stale (one thread at a time, on its
 * own connection) and read under a read lock by the others.
 */
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "assent/db.h"
#include "assent/log.h"
#include "assent/xmalloc.h"
#include "assentd.h"

/* Loaded again after this many seconds, or at once (at most this
 * often) for an id not in it. */
#define WEB_LISTS_TTL        5.0
#define WEB_LISTS_MISS       0.2

/* id -> name of every list, sorted by id. */
struct web_lists {
	pthread_rwlock_t lock;
	uint64_t        *ids;
	char           (*names)[65];
	size_t           n;
	double           loaded_at;     /* 0: never */
	bool             loading;       /* a thread is loading it again */
};

struct web_lists *
web_lists_new(void)
{
	struct web_lists *l = xcalloc(1, sizeof(*l));

	pthread_rwlock_init(&l->lock, NULL);
	return l;
}

void
web_lists_free(struct web_lists *l)
{
	if (l == NULL)
		return;
	pthread_rwlock_destroy(&l->lock);
	free(l->ids);
	free(l->names);
	free(l);
}

/* Load every list's id and name on this thread's connection and put
 * them in place. -1 when the database fails. */
static int
web_lists_load(struct web *web, struct web_lists *l)
{
	struct assent_err err;
	char (*names)[65];
	PGresult *res;
	uint64_t *ids;
	PGconn *db;
	size_t n;

	if ((db = web_db(web)) == NULL)
		return -1;
	if (db_exec(db, &res, &err, "SELECT id, name FROM lists ORDER BY id",
	    0, NULL) == -1) {
		log_warnx("http: the names of the lists: %s", err.msg);
		return -1;
	}
	n = (size_t)PQntuples(res);
	ids = xcalloc(n + 1, sizeof(*ids));
	names = xcalloc(n + 1, sizeof(*names));
	for (size_t i = 0; i < n; i++) {
		ids[i] = strtoull(PQgetvalue(res, (int)i, 0), NULL, 10);
		snprintf(names[i], sizeof(names[i]), "%s",
		    PQgetvalue(res, (int)i, 1));
	}
	PQclear(res);
	pthread_rwlock_wrlock(&l->lock);
	free(l->ids);
	free(l->names);
	l->ids = ids;
	l->names = names;
	l->n = n;
	l->loaded_at = web_seconds();
	pthread_rwlock_unlock(&l->lock);
	return 0;
}

/* Look id up: 1 found (name filled), 0 not there; with load_r, whether
 * the table should be loaded again (stale, or a miss not too soon after
 * a load). Only one thread at a time is told to load it, and it must
 * call web_lists_loaded() after. */
static int
web_lists_find(struct web_lists *l, uint64_t id, char name[65], bool *load_r)
{
	size_t lo = 0, hi;
	double age;
	int found = 0;

	pthread_rwlock_rdlock(&l->lock);
	hi = l->n;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;

		if (l->ids[mid] < id)
			lo = mid + 1;
		else
			hi = mid;
	}
	if (lo < l->n && l->ids[lo] == id) {
		memcpy(name, l->names[lo], 65);
		found = 1;
	}
	age = web_seconds() - l->loaded_at;
	if (load_r == NULL) {
		pthread_rwlock_unlock(&l->lock);
		return found;
	}
	*load_r = !l->loading && (l->loaded_at == 0 || age >= WEB_LISTS_TTL ||
	    (!found && age >= WEB_LISTS_MISS));
	pthread_rwlock_unlock(&l->lock);
	if (*load_r) {
		/* Claim the load; another thread may have been faster. */
		pthread_rwlock_wrlock(&l->lock);
		*load_r = !l->loading;
		l->loading = true;
		pthread_rwlock_unlock(&l->lock);
	}
	return found;
}

int
web_list_name(struct web *web, uint64_t id, char name[65])
{
	struct web_lists *l = web_lists_of(web);
	bool load, never;
	int found, rc;

	name[0] = '\0';
	found = web_lists_find(l, id, name, &load);
	if (!load)
		return 0;
	rc = web_lists_load(web, l);
	pthread_rwlock_wrlock(&l->lock);
	l->loading = false;
	never = l->loaded_at == 0;
	pthread_rwlock_unlock(&l->lock);
	/* Only look again: a second claim here would leave the table
	 * marked as loading, and never loaded again. */
	if (rc == 0 && !found)
		web_lists_find(l, id, name, NULL);
	/* The names we had stand while the database is away. */
	return rc == -1 && !found && never ? -1 : 0;
}

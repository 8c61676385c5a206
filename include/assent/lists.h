/*
 * lists: mailing lists. A removed list keeps its row, because ledger
 * events refer to it; its name becomes free again.
 *
 * Memory: string arguments are borrowed. Functions returning json_t
 * give the caller a new reference to json_decref().
 */
#ifndef ASSENT_LISTS_H
#define ASSENT_LISTS_H

#include <stdbool.h>
#include <jansson.h>
#include <libpq-fe.h>
#include "assent/err.h"
#include "assent/ledger.h"

/* Create a list. EX_DATAERR for a bad name or description, or a name
 * already in use. */
int lists_create(PGconn *conn, const char *name, const char *description,
    bool double_optin, struct assent_err *err);

/* What "list edit" changes; NULL (or -1) leaves a setting as it is. */
struct lists_change {
	const char *description;
	int double_optin;               /* -1, 0 or 1 */
	/* the consent wording (a version, consent.h) the list's subscribe
	 * form shows; "" closes the form (signup.h) */
	const char *form_consent;
	/* the attributes the form may set: comma-separated keys (1-64 of
	 * [A-Za-z0-9_-], at most 32); "" for none */
	const char *form_attrs;
};

/* Change the live list called name. EX_DATAERR for an unknown list, a
 * bad description or attribute key, or an unknown consent version. */
int lists_edit(PGconn *conn, const char *name, const struct lists_change *c,
    struct assent_err *err);

/* The live list called name (case-insensitive): *id_r gets its id in
 * decimal (char[24]), *double_optin_r (may be NULL) its opt-in mode.
 * Call inside a transaction to have the row locked FOR SHARE.
 * EX_DATAERR "unknown list" when there is none. */
int lists_lookup(PGconn *conn, const char *name, char id_r[24],
    bool *double_optin_r, struct assent_err *err);

/* One list as an object: name, description, double_optin,
 * form_consent (null when the form is closed), form_attrs (comma-
 * separated), created_at,
 * and counts: pending, confirmed, unsubscribed, and expired (confirmed
 * but on implied consent that has lapsed: no longer sendable). */
int lists_show(PGconn *conn, const char *name, json_t **list_r, struct assent_err *err);

/* Every live list, ordered by name, each as lists_show() gives it. */
int lists_all(PGconn *conn, json_t **lists_r, struct assent_err *err);

/* Remove a list. Refused (EX_DATAERR) while it has pending or confirmed
 * subscribers unless force; with force each of those subscriptions is
 * ended with an "unsubscribe" ledger event carrying ev.
 * *ended_r (may be NULL) gets how many were ended. */
int lists_remove(PGconn *conn, const char *name, bool force,
    const struct ledger_evidence *ev, long *ended_r, struct assent_err *err);

#endif

/*
 * audit: the append-only record of what operators did with personal
 * data (export, rectify, erase, suppression removal): who, from which
 * host, when (database clock), what, about whom -- never an address.
 * The database refuses to change or delete a row (sql/0005_rights.sql).
 *
 * Memory: everything passed in is borrowed for the call.
 */
#ifndef ASSENT_AUDIT_H
#define ASSENT_AUDIT_H

#include <stddef.h>
#include <jansson.h>
#include <libpq-fe.h>
#include "assent/err.h"

/* Who acts: the operator's Unix user and the machine's host name. */
struct audit_actor {
	const char *operator_name;
	const char *host;
};

/* The actor for this process: operator_name (borrowed) and this
 * machine's host name, written to host (size bytes; "unknown" when it
 * cannot be read). */
void audit_actor_local(struct audit_actor *a, const char *operator_name,
    char *host, size_t size);

/* Append an audit row in the caller's transaction, so that the action
 * and its record commit together (or on its own when there is none).
 * action: export, rectify, erase, suppress-remove. subject: "subscriber
 * 42", "suppression 17" (the database refuses anything else). detail
 * (may be NULL): an object of facts that name no person. */
int audit_append(PGconn *conn, const struct audit_actor *who, const char *action,
    const char *subject, const json_t *detail, struct assent_err *err);

#endif

/*
 * rights: the data subject's rights, for the staff who honour them.
 *
 *   access (GDPR Art. 15, 20)   rights_export(): everything held, as one
 *                               JSON document (doc/subject-export.md)
 *   rectification (Art. 16)     rights_rectify()
 *   objection, withdrawal (21)  rights_unsubscribe()
 *   erasure (Art. 17)           rights_erase(), rights_is_erased()
 *
 * The person is found by address (addr_parse(), then the canonical
 * key); an address no subscriber has is refused with EX_DATAERR "no
 * subscriber ...". Export, rectification and erasure each write a row
 * to the audit table (audit.h) in the same transaction as what they do. An audit row never holds an
 * address: its subject is "subscriber ID" or "suppression ID".
 *
 * Memory: strings and structs passed in are borrowed for the call.
 * Functions returning json_t give the caller a new reference to
 * json_decref(). struct suppress_ctx borrows its pepper (keys_pepper()).
 */
#ifndef ASSENT_RIGHTS_H
#define ASSENT_RIGHTS_H

#include <stdbool.h>
#include <stddef.h>
#include <jansson.h>
#include <libpq-fe.h>

#include "assent/audit.h"
#include "assent/err.h"
#include "assent/ledger.h"
#include "assent/suppress.h"

#define RIGHTS_EXPORT_FORMAT "assent-subject-export/1"

/* Everything held about the subscriber with this address as one
 * document (format RIGHTS_EXPORT_FORMAT): profile, subscriptions,
 * ledger history with its evidence, the consent texts agreed to, the
 * suppression entries that concern the address (ctx: the gate's
 * pepper), messages, generated_at. Read from one snapshot; the audit
 * row is written with it. */
int rights_export(PGconn *conn, const struct suppress_ctx *ctx, const char *email,
    const struct audit_actor *who, json_t **doc_r, struct assent_err *err);

/* One attribute to set; an empty value removes the key. */
struct rights_attr {
	const char *key;
	const char *value;
};

/* What to correct. At least one of name, attrs and new_email. */
struct rights_rectify {
	const char *email;                /* the person, as typed */
	const char *name;                 /* NULL: unchanged */
	const struct rights_attr *attrs;  /* nattrs of them */
	size_t nattrs;
	const char *new_email;            /* NULL: unchanged */
	const char *reason;               /* required, one line */
};

/*
 * Correct the profile in one transaction, with "rectify" ledger events
 * whose source names the fields changed (never old or new values) and
 * the reason, and an audit row. A new address is normalised and
 * refused (EX_DATAERR) when another subscriber has it. When its key
 * changes, every subscription gets an event: a confirmed one on a
 * double-opt-in list goes back to pending until reconfirmed, the others
 * keep their status. Otherwise one all-lists event is written. Values
 * equal to what is stored are not changes; when nothing changes, nothing
 * is written. *summary_r (may be NULL) gets an object: email (as now
 * stored), changed (field names: "name", "attrs.KEY", "email"),
 * pending (lists moved back to pending).
 */
int rights_rectify(PGconn *conn, const struct rights_rectify *r,
    const struct audit_actor *who, json_t **summary_r, struct assent_err *err);

/*
 * Withdrawal: end the subscription to list (list NULL: every
 * subscription), pending or confirmed -> unsubscribed, each with an
 * "unsubscribe" ledger event on channel cli carrying ev. One already
 * ended is left alone. With list NULL the address is also added to the
 * suppression list (reason unsubscribe, source ev->source, by
 * ev->operator_name), after the commit and even when nothing was left
 * to end, so running it again completes an interrupted run.
 * EX_DATAERR: unknown address or list, no subscription to that list.
 * *summary_r (may be NULL): email, ended (lists), already (lists ended
 * before), suppression (entry id, or null).
 */
int rights_unsubscribe(PGconn *conn, const char *email, const char *list,
    const struct ledger_evidence *ev, json_t **summary_r, struct assent_err *err);

/*
 * Erasure, in one transaction: an "erase" ledger event for each
 * subscription (which ends as unsubscribed), or one all-lists event
 * when there is none; the personal fields of every ledger event blanked
 * (ledger_erase()); an active suppression entry of kind hash
 * with reason erasure (ctx's pepper makes the hash); every plain
 * suppression entry of the address turned into its hash
 * (suppress_erase_plain()); the subscriber row left as an erased shell
 * (no address, name or attributes); an audit row with the subscriber id
 * and the hash. reason is kept in the audit row, so it is refused when
 * it contains the address, its local part or the person's name.
 * *summary_r (may be NULL): subscriber (id), hash, subscriptions (closed
 * with an erase event),
 * ledger_events_blanked, suppressions_hashed, suppression (entry id).
 */
int rights_erase(PGconn *conn, const struct suppress_ctx *ctx, const char *email,
    const char *reason, const struct audit_actor *who, json_t **summary_r,
    struct assent_err *err);

/* *erased_r: whether an active, unexpired suppression entry with reason
 * erasure holds the keyed hash of addr_key (a canonical key, struct
 * addr's key). For subs_add(), which refuses such an address unless the
 * operator brings fresh evidence of consent. */
int rights_is_erased(PGconn *conn, const struct suppress_ctx *ctx,
    const char *addr_key, bool *erased_r, struct assent_err *err);

#endif

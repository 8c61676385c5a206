/*
 * testsend: "assent campaign test": a campaign sent now to addresses an
 * operator names, on the same path as every campaign message: the
 * suppression gate (in a transaction), the composer (a subscriber gets
 * their own working links; anyone else inert /u/test ones), the
 * transport. Each is recorded in test_sends, outside the campaign's
 * counts.
 *
 * Memory: everything is borrowed for the call; *results_r is a new
 * JSON array the caller json_decref()s.
 */
#ifndef ASSENT_TESTSEND_H
#define ASSENT_TESTSEND_H

#include <stddef.h>
#include <jansson.h>
#include <libpq-fe.h>

#include "assent/conf.h"
#include "assent/err.h"
#include "assent/suppress.h"
#include "assent/token.h"

/* Send campaign campaign_name now to each of the n addresses. *results_r
 * gets an array with one object per address: address, outcome ("sent",
 * "suppressed", "failed") and detail (the entry's reason and id, or the
 * relay's reply). Returns -1 before sending anything for a bad address
 * or campaign (EX_DATAERR), and when the relay could not be reached
 * (EX_UNAVAILABLE, results still filled). */
int testsend_run(PGconn *conn, const struct assent_conf *conf,
    const struct suppress_ctx *gate, struct token_signer *signer,
    const char *campaign_name, const char *const *addresses, size_t n,
    const char *sent_by, json_t **results_r, struct assent_err *err);

#endif

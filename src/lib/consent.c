/* consent: consent texts, stored once and never edited; see consent.h */
#include <stdio.h>
#include <string.h>

#include <openssl/evp.h>

#include "assent/consent.h"
#include "assent/db.h"
#include "assent/text.h"

#define CONSENT_COLUMNS \
	"version, sha256," \
	" to_char(effective_at, 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"') AS effective_at," \
	" to_char(created_at, 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"') AS created_at," \
	" created_by, EXISTS (SELECT 1 FROM ledger e" \
	"  WHERE e.consent_text_version = c.version) AS used"

static int
consent_check_version(const char *v, struct assent_err *err)
{
	size_t len = strlen(v);

	for (size_t i = 0; i < len; i++)
		if (v[i] <= ' ' || v[i] > '~')
			len = 0;
	if (len == 0 || len > 64)
		return err_set(err, EX_DATAERR, "consent text version must be 1-64 "
		    "visible ASCII characters without spaces");
	return 0;
}

/* Wording is text people read: UTF-8, tabs and line breaks allowed. */
static int
consent_check_body(const char *body, size_t len, struct assent_err *err)
{
	if (strlen(body) != len)
		return err_set(err, EX_DATAERR, "a consent text may not hold a NUL byte");
	if (len == 0 || len > CONSENT_TEXT_MAX)
		return err_set(err, EX_DATAERR, "a consent text must be 1 to %d bytes "
		    "(this one is %zu)", CONSENT_TEXT_MAX, len);
	if (!text_is_utf8(body, len))
		return err_set(err, EX_DATAERR, "a consent text must be UTF-8");
	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)body[i];

		if ((c < 0x20 && c != '\t' && c != '\n' && c != '\r') || c == 0x7f)
			return err_set(err, EX_DATAERR, "a consent text may not hold "
			    "control character 0x%02x (byte %zu)", c, i + 1);
	}
	return 0;
}

static void
consent_sha256_hex(const char *body, size_t len, char out[65])
{
	unsigned char md[EVP_MAX_MD_SIZE];
	unsigned int mdlen = 0;

	EVP_Digest(body, len, md, &mdlen, EVP_sha256(), NULL);
	for (unsigned int i = 0; i < mdlen; i++)
		snprintf(out + 2 * i, 3, "%02x", md[i]);
}

int
consent_text_add(PGconn *conn, const char *version, const char *body,
    size_t len, const char *effective_at, const char *created_by,
    char sha_r[65], struct assent_err *err)
{
	char sha[65];
	const char *params[] = { version, body, sha, effective_at, created_by };

	if (consent_check_version(version, err) == -1 ||
	    consent_check_body(body, len, err) == -1 ||
	    text_check_line(created_by, 200, false, "operator", err) == -1)
		return -1;
	consent_sha256_hex(body, len, sha);
	if (db_exec(conn, NULL, err, "INSERT INTO consent_texts (version, body,"
	    " sha256, effective_at, created_by) VALUES ($1, $2, $3,"
	    " coalesce($4::timestamptz, now()), $5)", 5, params) == -1) {
		if (strcmp(db_last_sqlstate(), "23505") == 0)
			return err_set(err, EX_DATAERR, "consent text %s exists already: "
			    "texts are never edited, add a new version", version);
		return -1;
	}
	if (sha_r != NULL)
		memcpy(sha_r, sha, sizeof(sha));
	return 0;
}

int
consent_text_all(PGconn *conn, json_t **texts_r, struct assent_err *err)
{
	PGresult *res;

	*texts_r = NULL;
	if (db_exec(conn, &res, err, "SELECT " CONSENT_COLUMNS
	    " FROM consent_texts c ORDER BY effective_at, version", 0, NULL) == -1)
		return -1;
	*texts_r = db_rows_json(res);
	PQclear(res);
	return 0;
}

int
consent_text_show(PGconn *conn, const char *version, json_t **text_r,
    struct assent_err *err)
{
	const char *params[] = { version };
	PGresult *res;
	json_t *rows;

	*text_r = NULL;
	if (db_exec(conn, &res, err, "SELECT " CONSENT_COLUMNS ", body"
	    " FROM consent_texts c WHERE version = $1", 1, params) == -1)
		return -1;
	rows = db_rows_json(res);
	PQclear(res);
	if (json_array_size(rows) == 0) {
		json_decref(rows);
		return err_set(err, EX_DATAERR, "unknown consent text \"%.64s\" "
		    "(see \"assent consent-text ls\")", version);
	}
	*text_r = json_incref(json_array_get(rows, 0));
	json_decref(rows);
	return 0;
}

int
consent_text_require(PGconn *conn, const char *version, struct assent_err *err)
{
	const char *params[] = { version };
	PGresult *res;
	int known;

	if (consent_check_version(version, err) == -1)
		return -1;
	if (db_exec(conn, &res, err, "SELECT 1 FROM consent_texts WHERE version = $1",
	    1, params) == -1)
		return -1;
	known = PQntuples(res) == 1;
	PQclear(res);
	if (!known)
		return err_set(err, EX_DATAERR, "unknown consent text \"%s\" "
		    "(add it with \"assent consent-text add\")", version);
	return 0;
}

/* suppress: the global suppression list and the gate; see suppress.h */
#include <ctype.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/core_names.h>
#include <openssl/evp.h>
#include <openssl/params.h>

#include "assent/buf.h"
#include "assent/db.h"
#include "assent/suppress.h"
#include "assent/text.h"
#include "assent/xmalloc.h"

#define SUPPRESS_PEPPER_MIN   32
#define SUPPRESS_IMPORT_BATCH 1000
#define SUPPRESS_LINE_MAX     1024
#define SUPPRESS_ISO(col) \
	"to_char(" col ", 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"')"

static const char *const suppress_reasons[] = {
	"unsubscribe", "hard-bounce", "complaint", "soft-bounce-limit",
	"manual", "erasure", "imported", NULL
};

static const char *const suppress_kinds[] = {
	[SUPPRESS_ADDRESS] = "address",
	[SUPPRESS_DOMAIN] = "domain",
	[SUPPRESS_HASH] = "hash",
};

const char *
suppress_kind_name(enum suppress_kind kind)
{
	return suppress_kinds[kind];
}

static enum suppress_kind
suppress_kind_parse(const char *name)
{
	if (strcmp(name, "domain") == 0)
		return SUPPRESS_DOMAIN;
	if (strcmp(name, "hash") == 0)
		return SUPPRESS_HASH;
	return SUPPRESS_ADDRESS;
}

int
suppress_reason_check(const char *reason, struct assent_err *err)
{
	char q[TEXT_QUOTE_SIZE];

	for (size_t i = 0; reason != NULL && suppress_reasons[i] != NULL; i++)
		if (strcmp(reason, suppress_reasons[i]) == 0)
			return 0;
	if (reason == NULL)
		return err_set(err, EX_DATAERR, "a reason is required: unsubscribe, "
		    "hard-bounce, complaint, soft-bounce-limit, manual, erasure "
		    "or imported");
	return err_set(err, EX_DATAERR, "unknown reason \"%s\": use unsubscribe, "
	    "hard-bounce, complaint, soft-bounce-limit, manual, erasure or imported",
	    text_quote(reason, strlen(reason), q, sizeof(q)));
}

/* --- keyed hashes --------------------------------------------------------- */

/* One HMAC-SHA256 context keyed once with the pepper and reused for
 * every address of a batch (re-keying per address costs five times more). */
struct suppress_mac {
	EVP_MAC *mac;
	EVP_MAC_CTX *ctx;
};

static void
suppress_die(const char *what)
{
	fprintf(stderr, "assent: suppress: %s failed\n", what);
	abort();
}

static void
suppress_mac_init(struct suppress_mac *m, const struct suppress_ctx *ctx)
{
	OSSL_PARAM params[] = {
		OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, "SHA256", 0),
		OSSL_PARAM_construct_end(),
	};

	if (ctx == NULL || ctx->pepper == NULL || ctx->pepper_len < SUPPRESS_PEPPER_MIN)
		suppress_die("hashing without a pepper of 32 bytes or more");
	if ((m->mac = EVP_MAC_fetch(NULL, "HMAC", NULL)) == NULL ||
	    (m->ctx = EVP_MAC_CTX_new(m->mac)) == NULL ||
	    !EVP_MAC_init(m->ctx, ctx->pepper, ctx->pepper_len, params))
		suppress_die("HMAC-SHA256 setup");
}

static void
suppress_mac_hex(struct suppress_mac *m, const char *key, char hex_r[SUPPRESS_HASH_HEX + 1])
{
	static const char digits[] = "0123456789abcdef";
	unsigned char out[32];
	size_t outlen = 0;

	/* A NULL key restarts the MAC with the key it already has. */
	if (!EVP_MAC_init(m->ctx, NULL, 0, NULL) ||
	    !EVP_MAC_update(m->ctx, (const unsigned char *)key, strlen(key)) ||
	    !EVP_MAC_final(m->ctx, out, &outlen, sizeof(out)) || outlen != sizeof(out))
		suppress_die("HMAC-SHA256");
	for (size_t i = 0; i < sizeof(out); i++) {
		hex_r[2 * i] = digits[out[i] >> 4];
		hex_r[2 * i + 1] = digits[out[i] & 0x0f];
	}
	hex_r[SUPPRESS_HASH_HEX] = '\0';
}

static void
suppress_mac_free(struct suppress_mac *m)
{
	EVP_MAC_CTX_free(m->ctx);
	EVP_MAC_free(m->mac);
}

void
suppress_hash(const struct suppress_ctx *ctx, const char *key,
    char hex_r[SUPPRESS_HASH_HEX + 1])
{
	struct suppress_mac m;

	suppress_mac_init(&m, ctx);
	suppress_mac_hex(&m, key, hex_r);
	suppress_mac_free(&m);
}

bool
suppress_mailbox_key(const char *key, char out[ADDR_MAX + 1])
{
	const char *at = strrchr(key, '@');
	size_t j = 0;

	out[0] = '\0';
	if (at == NULL || (strcmp(at + 1, "gmail.com") != 0 &&
	    strcmp(at + 1, "googlemail.com") != 0))
		return false;
	for (const char *p = key; p < at && *p != '+'; p++)
		if (*p != '.')
			out[j++] = (char)tolower((unsigned char)*p);
	if (j == 0)
		return false;
	memcpy(out + j, "@gmail.com", sizeof("@gmail.com"));
	return true;
}

/* --- parsing what operators type ------------------------------------------ */

static bool
suppress_is_hash(const char *s)
{
	size_t i;

	for (i = 0; s[i] != '\0'; i++)
		if (!isxdigit((unsigned char)s[i]))
			return false;
	return i == SUPPRESS_HASH_HEX;
}

int
suppress_target_parse(const struct suppress_ctx *ctx, const char *input,
    bool hash_addresses, struct suppress_target *t, struct assent_err *err)
{
	struct addr addr;

	memset(t, 0, sizeof(*t));
	if (input[0] == '@') {
		t->kind = SUPPRESS_DOMAIN;
		if (addr_parse_domain(input + 1, t->value, err) == -1)
			return -1;
		snprintf(t->shown, sizeof(t->shown), "@%s", t->value);
		return 0;
	}
	if (suppress_is_hash(input)) {
		t->kind = SUPPRESS_HASH;
		for (size_t i = 0; i <= SUPPRESS_HASH_HEX; i++)
			t->value[i] = (char)tolower((unsigned char)input[i]);
		snprintf(t->shown, sizeof(t->shown), "%s", t->value);
		return 0;
	}
	if (addr_parse(input, &addr, err) == -1)
		return -1;
	if (hash_addresses) {
		char mbox[ADDR_MAX + 1];

		t->kind = SUPPRESS_HASH;
		suppress_hash(ctx, addr.key, t->value);
		/* a gmail address keeps its mailbox key, hashed too */
		if (suppress_mailbox_key(addr.key, mbox))
			suppress_hash(ctx, mbox, t->mailbox_key);
	} else {
		t->kind = SUPPRESS_ADDRESS;
		snprintf(t->value, sizeof(t->value), "%s", addr.key);
		suppress_mailbox_key(addr.key, t->mailbox_key);
	}
	snprintf(t->shown, sizeof(t->shown), "%s", t->value);
	return 0;
}

/* Digits at s[*i], exactly n of them. */
static bool
suppress_digits(const char *s, size_t *i, size_t n)
{
	for (size_t k = 0; k < n; k++, (*i)++)
		if (!isdigit((unsigned char)s[*i]))
			return false;
	return true;
}

/* "THH:MM[:SS[.frac]](Z|+HH:MM|-HH:MM)" from s[i], to the end. */
static bool
suppress_time_part(const char *s, size_t i)
{
	if (s[i] != 'T' && s[i] != 't' && s[i] != ' ')
		return false;
	i++;
	if (!suppress_digits(s, &i, 2) || s[i++] != ':' || !suppress_digits(s, &i, 2))
		return false;
	if (s[i] == ':') {
		i++;
		if (!suppress_digits(s, &i, 2))
			return false;
		if (s[i] == '.') {
			i++;
			if (!isdigit((unsigned char)s[i]))
				return false;
			while (isdigit((unsigned char)s[i]))
				i++;
		}
	}
	if ((s[i] == 'Z' || s[i] == 'z') && s[i + 1] == '\0')
		return true;
	if (s[i] != '+' && s[i] != '-')
		return false;
	i++;
	if (!suppress_digits(s, &i, 2))
		return false;
	if (s[i] == ':')
		i++;
	return suppress_digits(s, &i, 2) && s[i] == '\0';
}

int
suppress_parse_time(const char *s, const char *what, struct assent_err *err)
{
	char q[TEXT_QUOTE_SIZE];
	size_t i = 0;

	if (suppress_digits(s, &i, 4) && s[i++] == '-' && suppress_digits(s, &i, 2) &&
	    s[i++] == '-' && suppress_digits(s, &i, 2) &&
	    (s[i] == '\0' || suppress_time_part(s, i)))
		return 0;
	return err_set(err, EX_DATAERR, "invalid %s \"%s\": use an ISO 8601 date "
	    "(2025-12-31) or a date and time with its zone (2025-12-31T18:00:00Z, "
	    "2025-12-31T19:00:00+01:00)", what, text_quote(s, strlen(s), q, sizeof(q)));
}

/* --- adding and removing -------------------------------------------------- */

static int
suppress_check_new(const struct suppress_new *n, struct assent_err *err)
{
	if (suppress_reason_check(n->reason, err) == -1 ||
	    text_check_line(n->source, SUPPRESS_SOURCE_MAX, false, "source", err) == -1 ||
	    text_check_line(n->added_by, SUPPRESS_WHO_MAX, false, "added by", err) == -1)
		return -1;
	if (n->expires != NULL && suppress_parse_time(n->expires, "--expires", err) == -1)
		return -1;
	return 0;
}

/* Inside the transaction: refuse an expiry that is not in the future. */
static int
suppress_check_expiry(PGconn *conn, const char *expires, struct assent_err *err)
{
	const char *params[] = { expires };
	char q[TEXT_QUOTE_SIZE];
	PGresult *res;
	int future;

	if (expires == NULL)
		return 0;
	if (db_exec(conn, &res, err, "SELECT $1::timestamptz > now()", 1, params) == -1)
		return err_prefix(err, "invalid --expires \"%s\"",
		    text_quote(expires, strlen(expires), q, sizeof(q)));
	future = PQgetvalue(res, 0, 0)[0] == 't';
	PQclear(res);
	if (!future)
		return err_set(err, EX_DATAERR, "--expires %s is not in the future", expires);
	return 0;
}

/* An active entry whose hold has run out gives way to a new one. */
#define SUPPRESS_SQL_RETIRE_EXPIRED \
	"UPDATE suppressions SET removed_by = $3, removed_reason = 'expired'" \
	" WHERE kind = $1 AND value = $2 AND removed_at IS NULL" \
	" AND expires_at <= now()"

static int
suppress_insert(PGconn *conn, const struct suppress_target *t,
    const struct suppress_new *n, long long *id_r, bool *added_r,
    struct assent_err *err)
{
	const char *params[] = {
		suppress_kind_name(t->kind), t->value, n->added_by,
		t->mailbox_key[0] != '\0' ? t->mailbox_key : NULL,
		n->reason, n->source, n->expires,
	};
	PGresult *res;

	if (db_exec(conn, NULL, err, SUPPRESS_SQL_RETIRE_EXPIRED, 3, params) == -1 ||
	    db_exec(conn, &res, err, "INSERT INTO suppressions (kind, value, added_by,"
	    " mailbox_key, reason, source, expires_at)"
	    " VALUES ($1, $2, $3, $4, $5, $6, $7::timestamptz)"
	    " ON CONFLICT (kind, value) WHERE removed_at IS NULL DO NOTHING"
	    " RETURNING id", 7, params) == -1)
		return -1;
	*added_r = PQntuples(res) == 1;
	if (*added_r)
		*id_r = strtoll(PQgetvalue(res, 0, 0), NULL, 10);
	PQclear(res);
	if (*added_r)
		return 0;
	/* Active already: say which entry. */
	if (db_exec(conn, &res, err, "SELECT id FROM suppressions WHERE kind = $1"
	    " AND value = $2 AND removed_at IS NULL", 2, params) == -1)
		return -1;
	if (PQntuples(res) != 1) {
		PQclear(res);
		return err_set(err, EX_TEMPFAIL, "suppression entry for %s changed "
		    "while adding it; try again", t->shown);
	}
	*id_r = strtoll(PQgetvalue(res, 0, 0), NULL, 10);
	PQclear(res);
	return 0;
}

int
suppress_add_in(PGconn *conn, const struct suppress_target *t,
    const struct suppress_new *n, long long *id_r, bool *added_r,
    struct assent_err *err)
{
	*added_r = false;
	*id_r = 0;
	if (suppress_check_new(n, err) == -1 ||
	    suppress_check_expiry(conn, n->expires, err) == -1)
		return -1;
	return suppress_insert(conn, t, n, id_r, added_r, err);
}

int
suppress_add(PGconn *conn, const struct suppress_target *t,
    const struct suppress_new *n, long long *id_r, bool *added_r,
    struct assent_err *err)
{
	*added_r = false;
	*id_r = 0;
	if (suppress_check_new(n, err) == -1 || db_begin(conn, err) == -1)
		return -1;
	if (suppress_check_expiry(conn, n->expires, err) == -1 ||
	    suppress_insert(conn, t, n, id_r, added_r, err) == -1 ||
	    db_commit(conn, err) == -1) {
		db_rollback(conn);
		return -1;
	}
	return 0;
}

/* Lock the active entry for t (or id); its id and reason. */
static int
suppress_lock_active(PGconn *conn, const struct suppress_target *t, long long id,
    char id_r[24], char reason_r[24], struct assent_err *err)
{
	char idtext[24];
	const char *params[2];
	PGresult *res;

	snprintf(idtext, sizeof(idtext), "%lld", id);
	if (t != NULL) {
		params[0] = suppress_kind_name(t->kind);
		params[1] = t->value;
		db_exec(conn, &res, err, "SELECT id, reason FROM suppressions"
		    " WHERE kind = $1 AND value = $2 AND removed_at IS NULL"
		    " FOR UPDATE", 2, params);
	} else {
		params[0] = idtext;
		db_exec(conn, &res, err, "SELECT id, reason FROM suppressions"
		    " WHERE id = $1 AND removed_at IS NULL FOR UPDATE", 1, params);
	}
	if (res == NULL)
		return -1;
	if (PQntuples(res) == 0) {
		PQclear(res);
		if (t != NULL)
			return err_set(err, EX_DATAERR, "no active suppression entry "
			    "for %s", t->shown);
		return err_set(err, EX_DATAERR, "no active suppression entry %lld", id);
	}
	snprintf(id_r, 24, "%s", PQgetvalue(res, 0, 0));
	snprintf(reason_r, 24, "%s", PQgetvalue(res, 0, 1));
	PQclear(res);
	return 0;
}

static int
suppress_mark_removed(PGconn *conn, const struct suppress_removal *r,
    const char *id, const char *reason, struct assent_err *err)
{
	const char *params[] = { id, r->removed_by, r->reason };

	if (!r->force && (strcmp(reason, "complaint") == 0 ||
	    strcmp(reason, "erasure") == 0))
		return err_set(err, EX_DATAERR, "entry %s records a%s %s: removing it "
		    "needs --force", id, reason[0] == 'e' ? "n" : "", reason);
	return db_exec(conn, NULL, err, "UPDATE suppressions SET removed_by = $2,"
	    " removed_reason = $3 WHERE id = $1", 3, params);
}

/* The removal and its audit row commit together. */
static int
suppress_audit_removal(PGconn *conn, const struct suppress_removal *r,
    const char *id, struct assent_err *err)
{
	char subject[40];

	if (r->who == NULL)
		return err_set(err, EX_SOFTWARE, "a suppression removal needs its actor "
		    "for the audit table");
	snprintf(subject, sizeof(subject), "suppression %s", id);
	return audit_append(conn, r->who, "suppress-remove", subject, NULL, err);
}

int
suppress_remove(PGconn *conn, const struct suppress_target *t, long long id,
    const struct suppress_removal *r, long long *id_r, struct assent_err *err)
{
	char found[24], reason[24];

	if (text_check_line(r->reason, 1000, false, "--reason", err) == -1 ||
	    text_check_line(r->removed_by, SUPPRESS_WHO_MAX, false, "removed by",
	    err) == -1 || db_begin(conn, err) == -1)
		return -1;
	if (suppress_lock_active(conn, t, id, found, reason, err) == -1 ||
	    suppress_mark_removed(conn, r, found, reason, err) == -1 ||
	    suppress_audit_removal(conn, r, found, err) == -1 ||
	    db_commit(conn, err) == -1) {
		db_rollback(conn);
		return -1;
	}
	if (id_r != NULL)
		*id_r = strtoll(found, NULL, 10);
	return 0;
}

/* --- text arrays for batch statements --------------------------------------- */

/* A PostgreSQL array literal being built: {"a","b",NULL}. */
struct suppress_array {
	char *buf;
	size_t len, cap;
	size_t n;
};

static void
suppress_array_put(struct suppress_array *a, const char *s, size_t len)
{
	if (a->cap - a->len < len + 2) {
		while (a->cap - a->len < len + 2)
			a->cap = a->cap == 0 ? 4096 : 2 * a->cap;
		a->buf = xreallocarray(a->buf, a->cap, 1);
	}
	memcpy(a->buf + a->len, s, len);
	a->len += len;
	a->buf[a->len] = '\0';
}

static void
suppress_array_reset(struct suppress_array *a)
{
	a->len = 0;
	a->n = 0;
	suppress_array_put(a, "{", 1);
}

/* Append s (NULL for SQL NULL), quoted, with '"' and '\' escaped. */
static void
suppress_array_add(struct suppress_array *a, const char *s)
{
	if (a->n++ > 0)
		suppress_array_put(a, ",", 1);
	if (s == NULL) {
		suppress_array_put(a, "NULL", 4);
		return;
	}
	suppress_array_put(a, "\"", 1);
	for (const char *p = s; *p != '\0'; p++) {
		if (*p == '"' || *p == '\\')
			suppress_array_put(a, "\\", 1);
		suppress_array_put(a, p, 1);
	}
	suppress_array_put(a, "\"", 1);
}

static const char *
suppress_array_end(struct suppress_array *a)
{
	suppress_array_put(a, "}", 1);
	return a->buf;
}

/*
 * The gate sends its arrays in PostgreSQL's binary format (array_recv):
 * parsing 300 quoted literals a batch cost the server more than a probe
 * of the domain index. Five 32-bit integers in network order (1
 * dimension, no NULLs, element type text, length, lower bound 1), then
 * each element as its length and bytes.
 */
#define SUPPRESS_TEXT_OID   25
#define SUPPRESS_BIN_HEADER 20

struct suppress_binarray {
	char *buf;
	size_t len, cap;
	uint32_t n;
};

static void
suppress_bin_put(struct suppress_binarray *a, const void *p, size_t len)
{
	if (a->cap - a->len < len) {
		while (a->cap - a->len < len)
			a->cap = a->cap == 0 ? 8192 : 2 * a->cap;
		a->buf = xreallocarray(a->buf, a->cap, 1);
	}
	memcpy(a->buf + a->len, p, len);
	a->len += len;
}

static void
suppress_bin_put32(struct suppress_binarray *a, size_t at, uint32_t v)
{
	unsigned char b[4] = { v >> 24, (v >> 16) & 0xff, (v >> 8) & 0xff, v & 0xff };

	if (at == a->len)
		suppress_bin_put(a, b, 4);
	else
		memcpy(a->buf + at, b, 4);
}

static void
suppress_bin_reset(struct suppress_binarray *a)
{
	a->len = 0;
	a->n = 0;
	for (size_t i = 0; i < SUPPRESS_BIN_HEADER; i += 4)
		suppress_bin_put32(a, a->len, 0);
}

static void
suppress_bin_add(struct suppress_binarray *a, const char *s)
{
	size_t len = strlen(s);

	suppress_bin_put32(a, a->len, (uint32_t)len);
	suppress_bin_put(a, s, len);
	a->n++;
}

/* Fill in the header; an empty array has no dimension at all. */
static void
suppress_bin_end(struct suppress_binarray *a)
{
	suppress_bin_put32(a, 0, a->n > 0 ? 1 : 0);
	suppress_bin_put32(a, 4, 0);
	suppress_bin_put32(a, 8, SUPPRESS_TEXT_OID);
	if (a->n == 0) {
		a->len = 12;
		return;
	}
	suppress_bin_put32(a, 12, a->n);
	suppress_bin_put32(a, 16, 1);
}

/* --- the gate --------------------------------------------------------------- */

/*
 * One lookup for the whole batch: the address keys in $1, their domains
 * in $2, their keyed hashes in $3 and (when the option is on) their
 * gmail mailbox keys in $4, each probing its own hash index (see
 * sql/0002_suppression.sql). Which recipient each of the few matching
 * entries stops is worked out here, in C.
 */
static const struct db_statement suppress_gate_stmt = {
	"assent_suppress_gate_v1",
	"SELECT id, kind, value, mailbox_key, reason, source, added_by, "
	SUPPRESS_ISO("added_at") ", coalesce(" SUPPRESS_ISO("expires_at") ", '')"
	" FROM suppressions"
	" WHERE removed_at IS NULL AND (expires_at IS NULL OR expires_at > now())"
	" AND ((kind = 'address' AND value = ANY ($1::text[]))"
	"  OR (kind = 'domain' AND value = ANY ($2::text[]))"
	"  OR (kind = 'hash' AND value = ANY ($3::text[]))"
	"  OR (mailbox_key = ANY ($4::text[]) AND mailbox_key IS NOT NULL))",
};

/* A canonical key as addr_parse() makes it: visible ASCII, no upper
 * case, one '@' with something on both sides. */
static bool
suppress_key_is_canonical(const char *key)
{
	const char *at = strchr(key, '@');
	size_t len = strlen(key);

	if (at == NULL || at == key || at[1] == '\0' || strchr(at + 1, '@') != NULL ||
	    len > ADDR_MAX)
		return false;
	for (const char *p = key; *p != '\0'; p++)
		if (*p < '!' || *p > '~' || (*p >= 'A' && *p <= 'Z'))
			return false;
	return true;
}

/* What the gate looks up for one recipient. */
struct suppress_probe {
	const char *key;
	const char *domain;                     /* into key */
	char hash[SUPPRESS_HASH_HEX + 1];
	char mbox[ADDR_MAX + 1];                /* "" when none */
	char mbox_hash[SUPPRESS_HASH_HEX + 1];  /* its keyed hash, "" when none */
};

/* The probes, and the arrays of the query: keys, domains, hashes,
 * mailbox keys. */
static int
suppress_gate_probes(const struct suppress_ctx *ctx, const char *const *keys,
    size_t n, struct suppress_probe *p, struct suppress_binarray a[4],
    struct assent_err *err)
{
	struct suppress_mac mac;

	for (size_t i = 0; i < n; i++)
		if (!suppress_key_is_canonical(keys[i]))
			return err_set(err, EX_SOFTWARE, "suppression gate: recipient "
			    "%zu is not a canonical address key", i);
	for (size_t k = 0; k < 4; k++)
		suppress_bin_reset(&a[k]);
	suppress_mac_init(&mac, ctx);
	for (size_t i = 0; i < n; i++) {
		p[i].key = keys[i];
		p[i].domain = strrchr(keys[i], '@') + 1;
		suppress_mac_hex(&mac, keys[i], p[i].hash);
		suppress_bin_add(&a[0], p[i].key);
		suppress_bin_add(&a[1], p[i].domain);
		suppress_bin_add(&a[2], p[i].hash);
		p[i].mbox[0] = p[i].mbox_hash[0] = '\0';
		if (ctx->gmail_mailbox_key && suppress_mailbox_key(keys[i], p[i].mbox)) {
			/* plain for address entries, hashed for erased ones */
			suppress_mac_hex(&mac, p[i].mbox, p[i].mbox_hash);
			suppress_bin_add(&a[3], p[i].mbox);
			suppress_bin_add(&a[3], p[i].mbox_hash);
		}
	}
	suppress_mac_free(&mac);
	for (size_t k = 0; k < 4; k++)
		suppress_bin_end(&a[k]);
	return 0;
}

/* How specific a match is: lower wins (address, hash, mailbox, domain);
 * 0 when the entry in row r does not stop recipient p. */
static int
suppress_match_rank(const PGresult *res, int r, const struct suppress_probe *p)
{
	const char *kind = PQgetvalue(res, r, 1), *value = PQgetvalue(res, r, 2);

	if (kind[0] == 'a' && strcmp(value, p->key) == 0)
		return 1;
	if (kind[0] == 'h' && strcmp(value, p->hash) == 0)
		return 2;
	if (p->mbox[0] != '\0' && !PQgetisnull(res, r, 3) &&
	    strcmp(PQgetvalue(res, r, 3), kind[0] == 'h' ? p->mbox_hash : p->mbox) == 0)
		return 3;
	if (kind[0] == 'd' && strcmp(value, p->domain) == 0)
		return 4;
	return 0;
}

static void
suppress_entry_from_row(const PGresult *res, int row, struct suppress_entry *e)
{
	e->id = strtoll(PQgetvalue(res, row, 0), NULL, 10);
	e->kind = suppress_kind_parse(PQgetvalue(res, row, 1));
	snprintf(e->value, sizeof(e->value), "%s", PQgetvalue(res, row, 2));
	snprintf(e->reason, sizeof(e->reason), "%s", PQgetvalue(res, row, 4));
	snprintf(e->source, sizeof(e->source), "%s", PQgetvalue(res, row, 5));
	snprintf(e->added_by, sizeof(e->added_by), "%s", PQgetvalue(res, row, 6));
	snprintf(e->added_at, sizeof(e->added_at), "%s", PQgetvalue(res, row, 7));
	snprintf(e->expires_at, sizeof(e->expires_at), "%s", PQgetvalue(res, row, 8));
}

/* Give each recipient the most specific entry that stops it (the
 * oldest of a rank). The rows are the few entries that matched. */
static void
suppress_gate_verdicts(const PGresult *res, const struct suppress_probe *p,
    size_t n, struct suppress_verdict *verdicts)
{
	int *best = xcalloc(n, sizeof(*best));
	long long *best_id = xcalloc(n, sizeof(*best_id));
	int *best_row = xcalloc(n, sizeof(*best_row));

	for (int r = 0; r < PQntuples(res); r++) {
		long long id = strtoll(PQgetvalue(res, r, 0), NULL, 10);

		for (size_t i = 0; i < n; i++) {
			int rank = suppress_match_rank(res, r, &p[i]);

			if (rank == 0 || (best[i] != 0 && (rank > best[i] ||
			    (rank == best[i] && id > best_id[i]))))
				continue;
			best[i] = rank;
			best_id[i] = id;
			best_row[i] = r;
		}
	}
	for (size_t i = 0; i < n; i++) {
		verdicts[i].suppressed = best[i] != 0;
		if (best[i] != 0)
			suppress_entry_from_row(res, best_row[i], &verdicts[i].entry);
	}
	free(best_row);
	free(best_id);
	free(best);
}

static int
suppress_gate_run(PGconn *conn, struct suppress_binarray a[4],
    const struct suppress_probe *p, size_t n, struct suppress_verdict *verdicts,
    struct assent_err *err)
{
	const char *params[] = { a[0].buf, a[1].buf, a[2].buf, a[3].buf };
	const int lengths[] = { (int)a[0].len, (int)a[1].len, (int)a[2].len,
	    (int)a[3].len };
	const int formats[] = { 1, 1, 1, 1 };
	char reason[ASSENT_ERR_MSG_MAX];
	PGresult *res;

	/* Any failure but a lost connection is worth another try later. */
	if (db_exec_prepared(conn, &res, err, &suppress_gate_stmt, 4, params,
	    lengths, formats) == -1) {
		snprintf(reason, sizeof(reason), "%s", err->msg +
		    (strncmp(err->msg, "database: ", 10) == 0 ? 10 : 0));
		return err_set(err, err->code == EX_UNAVAILABLE ? EX_UNAVAILABLE :
		    EX_TEMPFAIL, "database: suppression gate: %s", reason);
	}
	suppress_gate_verdicts(res, p, n, verdicts);
	PQclear(res);
	return 0;
}

int
suppress_gate(PGconn *conn, const struct suppress_ctx *ctx,
    const char *const *addr_keys, size_t n, struct suppress_verdict *verdicts,
    struct assent_err *err)
{
	struct suppress_binarray a[4];
	struct suppress_probe *p;
	int rc = -1;

	for (size_t i = 0; i < n; i++)
		verdicts[i].suppressed = false;
	if (n == 0)
		return 0;
	memset(a, 0, sizeof(a));
	p = xcalloc(n, sizeof(*p));
	if (suppress_gate_probes(ctx, addr_keys, n, p, a, err) == 0 &&
	    suppress_gate_run(conn, a, p, n, verdicts, err) == 0)
		rc = 0;
	for (size_t k = 0; k < 4; k++)
		free(a[k].buf);
	free(p);
	return rc;
}

json_t *
suppress_entry_json(const struct suppress_entry *e)
{
	json_t *o = json_object();

	json_object_set_new(o, "id", json_integer(e->id));
	json_object_set_new(o, "kind", json_string(suppress_kind_name(e->kind)));
	json_object_set_new(o, "value", json_string(e->value));
	json_object_set_new(o, "reason", json_string(e->reason));
	json_object_set_new(o, "source", json_string(e->source));
	json_object_set_new(o, "added_by", json_string(e->added_by));
	json_object_set_new(o, "added_at", json_string(e->added_at));
	json_object_set_new(o, "expires_at", e->expires_at[0] != '\0' ?
	    json_string(e->expires_at) : json_null());
	return o;
}

/* --- listing ---------------------------------------------------------------- */

int
suppress_list(PGconn *conn, const struct suppress_query *q, json_t **rows_r,
    bool *more_r, struct assent_err *err)
{
	char after[24], limit[24];
	const char *params[] = { after, q->reason, q->since,
	    q->include_removed ? "t" : "f", limit };
	PGresult *res;

	*rows_r = NULL;
	if ((q->reason != NULL && suppress_reason_check(q->reason, err) == -1) ||
	    (q->since != NULL && suppress_parse_time(q->since, "--since", err) == -1))
		return -1;
	if (q->limit < 1 || q->limit > 100000 || q->after_id < 0)
		return err_set(err, EX_USAGE, "the page size must be 1 to 100000 and "
		    "--after not negative");
	snprintf(after, sizeof(after), "%lld", q->after_id);
	snprintf(limit, sizeof(limit), "%ld", q->limit + 1);   /* one more: is there a next page? */
	if (db_exec(conn, &res, err, "SELECT id, kind, value, reason, source,"
	    " added_by, " SUPPRESS_ISO("added_at") " AS added_at, "
	    SUPPRESS_ISO("expires_at") " AS expires_at, "
	    SUPPRESS_ISO("removed_at") " AS removed_at, removed_by, removed_reason,"
	    " removed_at IS NULL AND (expires_at IS NULL OR expires_at > now())"
	    " AS active FROM suppressions WHERE id > $1"
	    " AND ($2::text IS NULL OR reason = $2)"
	    " AND ($3::timestamptz IS NULL OR added_at >= $3::timestamptz)"
	    " AND ($4::boolean OR removed_at IS NULL)"
	    " ORDER BY id LIMIT $5", 5, params) == -1)
		return -1;
	*rows_r = db_rows_json(res);
	PQclear(res);
	if (more_r != NULL)
		*more_r = json_array_size(*rows_r) > (size_t)q->limit;
	if (json_array_size(*rows_r) > (size_t)q->limit)
		json_array_remove(*rows_r, (size_t)q->limit);
	return 0;
}

/* --- import ----------------------------------------------------------------- */

/* What an import carries from one batch to the next. */
struct suppress_batch {
	struct suppress_array kind, value, mbox;
	size_t n;
};

static void
suppress_batch_reset(struct suppress_batch *b)
{
	suppress_array_reset(&b->kind);
	suppress_array_reset(&b->value);
	suppress_array_reset(&b->mbox);
	b->n = 0;
}

static int
suppress_batch_flush(PGconn *conn, struct suppress_batch *b,
    const struct suppress_new *n, struct suppress_import_counts *c,
    struct assent_err *err)
{
	const char *params[] = { suppress_array_end(&b->kind),
	    suppress_array_end(&b->value), suppress_array_end(&b->mbox),
	    n->reason, n->source, n->added_by };
	PGresult *res;
	unsigned long added;

	if (b->n == 0)
		return 0;
	if (db_exec(conn, NULL, err, "UPDATE suppressions s SET removed_by = $3,"
	    " removed_reason = 'expired'"
	    " FROM unnest($1::text[], $2::text[]) AS b(kind, value)"
	    " WHERE s.kind = b.kind AND s.value = b.value AND s.removed_at IS NULL"
	    " AND s.expires_at <= now()", 3, (const char *[]){ params[0], params[1],
	    n->added_by }) == -1 ||
	    db_exec(conn, &res, err, "INSERT INTO suppressions (kind, value,"
	    " mailbox_key, reason, source, added_by)"
	    " SELECT kind, value, mbox, $4, $5, $6"
	    " FROM unnest($1::text[], $2::text[], $3::text[]) AS b(kind, value, mbox)"
	    " ON CONFLICT (kind, value) WHERE removed_at IS NULL DO NOTHING",
	    6, params) == -1)
		return -1;
	added = strtoul(PQcmdTuples(res), NULL, 10);
	PQclear(res);
	c->added += added;
	c->present += b->n - added;
	suppress_batch_reset(b);
	return 0;
}

/* Trim blanks and a trailing CR in place; the start of the content. */
static char *
suppress_trim(char *line, size_t len)
{
	while (len > 0 && (line[len - 1] == '\n' || line[len - 1] == '\r' ||
	    line[len - 1] == ' ' || line[len - 1] == '\t'))
		line[--len] = '\0';
	while (*line == ' ' || *line == '\t')
		line++;
	return line;
}

static void
suppress_reject(const struct suppress_import *im, struct suppress_import_counts *c,
    unsigned long lineno, const char *why)
{
	c->rejected++;
	if (im->on_reject != NULL)
		im->on_reject(lineno, why, im->arg);
}

/* One line: skip, reject, or add it to the batch. */
static void
suppress_import_line(const struct suppress_import *im, struct suppress_batch *b,
    char *raw, size_t len, unsigned long lineno, struct suppress_import_counts *c)
{
	struct suppress_target t;
	struct assent_err lerr;
	char *line;

	if (strlen(raw) != len) {
		suppress_reject(im, c, lineno, "NUL byte in the line");
		return;
	}
	if (len > SUPPRESS_LINE_MAX) {
		suppress_reject(im, c, lineno, "line too long");
		return;
	}
	line = suppress_trim(raw, len);
	if (line[0] == '\0' || line[0] == '#')
		return;
	if (suppress_target_parse(im->ctx, line, im->hash_addresses, &t, &lerr) == -1) {
		suppress_reject(im, c, lineno, lerr.msg);
		return;
	}
	suppress_array_add(&b->kind, suppress_kind_name(t.kind));
	suppress_array_add(&b->value, t.value);
	suppress_array_add(&b->mbox, t.mailbox_key[0] != '\0' ? t.mailbox_key : NULL);
	b->n++;
}

static int
suppress_import_stream(PGconn *conn, FILE *in, const struct suppress_import *im,
    struct suppress_batch *b, struct suppress_import_counts *c,
    struct assent_err *err)
{
	unsigned long lineno = 0;
	size_t cap = 0;
	char *line = NULL;
	ssize_t len;
	int rc = 0;

	while (rc == 0 && (len = getline(&line, &cap, in)) != -1) {
		suppress_import_line(im, b, line, (size_t)len, ++lineno, c);
		if (b->n >= SUPPRESS_IMPORT_BATCH)
			rc = suppress_batch_flush(conn, b, im->entry, c, err);
	}
	free(line);
	if (rc == 0 && ferror(in))
		rc = err_set(err, EX_IOERR, "reading line %lu: read error", lineno + 1);
	if (rc == 0)
		rc = suppress_batch_flush(conn, b, im->entry, c, err);
	return rc;
}

int
suppress_import(PGconn *conn, FILE *in, const struct suppress_import *im,
    struct suppress_import_counts *counts_r, struct assent_err *err)
{
	struct suppress_new n = *im->entry;
	struct suppress_batch b;
	int rc = -1;

	memset(counts_r, 0, sizeof(*counts_r));
	n.expires = NULL;
	if (suppress_check_new(&n, err) == -1)
		return -1;
	memset(&b, 0, sizeof(b));
	suppress_batch_reset(&b);
	if (db_begin(conn, err) == 0) {
		if (suppress_import_stream(conn, in, im, &b, counts_r, err) == 0 &&
		    db_commit(conn, err) == 0)
			rc = 0;
		else
			db_rollback(conn);
	}
	free(b.kind.buf);
	free(b.value.buf);
	free(b.mbox.buf);
	if (rc == -1)
		counts_r->added = counts_r->present = 0;
	return rc;
}

/* --- export ----------------------------------------------------------------- */

/* One COPY row "kind\tvalue\n" written as an export line. */
static void
suppress_export_row(const char *row, int len, FILE *out, struct suppress_mac *mac)
{
	const char *tab = memchr(row, '\t', (size_t)len);
	char value[ADDR_DOMAIN_MAX + 1], hex[SUPPRESS_HASH_HEX + 1];
	int vlen;

	if (tab == NULL)
		return;
	vlen = len - (int)(tab + 1 - row);
	if (vlen > 0 && tab[vlen] == '\n')
		vlen--;
	if (vlen < 0 || (size_t)vlen >= sizeof(value))
		return;
	memcpy(value, tab + 1, (size_t)vlen);
	value[vlen] = '\0';
	if (row[0] == 'd') {
		fprintf(out, "@%s\n", value);
	} else if (row[0] == 'a' && mac != NULL) {
		suppress_mac_hex(mac, value, hex);
		fprintf(out, "%s\n", hex);
	} else {
		fprintf(out, "%s\n", value);
	}
}

static int
suppress_copy_out(PGconn *conn, FILE *out, struct suppress_mac *mac,
    unsigned long *count, struct assent_err *err)
{
	PGresult *res;
	char *row;
	int len, rc = 0;

	while ((len = PQgetCopyData(conn, &row, 0)) > 0) {
		suppress_export_row(row, len, out, mac);
		PQfreemem(row);
		(*count)++;
	}
	if (len == -2)
		rc = err_set(err, EX_UNAVAILABLE, "database: export: %.*s",
		    (int)strcspn(PQerrorMessage(conn), "\n"), PQerrorMessage(conn));
	while ((res = PQgetResult(conn)) != NULL) {
		if (rc == 0 && PQresultStatus(res) != PGRES_COMMAND_OK)
			rc = err_set(err, EX_SOFTWARE, "database: export: %.*s",
			    (int)strcspn(PQresultErrorMessage(res), "\n"),
			    PQresultErrorMessage(res));
		PQclear(res);
	}
	return rc;
}

int
suppress_export(PGconn *conn, FILE *out, const struct suppress_ctx *ctx,
    bool hash_addresses, unsigned long *count_r, struct assent_err *err)
{
	struct suppress_mac mac;
	unsigned long count = 0;
	PGresult *res;
	int rc;

	res = PQexec(conn, "COPY (SELECT kind, value FROM suppressions"
	    " WHERE removed_at IS NULL AND (expires_at IS NULL OR expires_at > now())"
	    " ORDER BY id) TO STDOUT");
	if (PQresultStatus(res) != PGRES_COPY_OUT) {
		err_set(err, PQstatus(conn) != CONNECTION_OK ? EX_UNAVAILABLE :
		    EX_SOFTWARE, "database: export: %.*s",
		    (int)strcspn(PQresultErrorMessage(res), "\n"),
		    PQresultErrorMessage(res));
		PQclear(res);
		return -1;
	}
	PQclear(res);
	if (hash_addresses)
		suppress_mac_init(&mac, ctx);
	rc = suppress_copy_out(conn, out, hash_addresses ? &mac : NULL, &count, err);
	if (hash_addresses)
		suppress_mac_free(&mac);
	if (rc == 0 && (fflush(out) == EOF || ferror(out)))
		rc = err_set(err, EX_IOERR, "export: write error");
	if (count_r != NULL)
		*count_r = count;
	return rc;
}

/* ---- hard bounces from the sender ------------------------------------------ */

/*
 * keys: the secrets file that signs tokens and peppers hashed
 * suppression entries.
 *
 * The file (tokens.keys_file, libconfig syntax, mode 0600) holds one
 * or more signing keys, each a key id and a secret of at least 32
 * random bytes, which one of them is current (new tokens are signed
 * with it; every key still verifies), and the pepper for keyed hashes
 * of addresses. It is refused when group or others may read it.
 *
 * The file looks like this (secrets and pepper in standard base64 with
 * padding; created is informative, UTC):
 *
 *	current = 2;
 *	pepper = "...";
 *	keys = (
 *	  { id = 1; secret = "..."; created = "2026-11-22T16:00:00Z"; },
 *	  { id = 2; secret = "..."; created = "2027-03-01T09:30:00Z"; }
 *	);
 *
 * Errors name FILE:LINE: SETTING: problem, like conf.c, and never show
 * a secret.
 *
 * Memory: keys_load() and keys_from_memory() return a struct the caller
 * frees with keys_free(), which wipes the secrets. Pointers returned by
 * the accessors are borrowed from it. A struct keys is read-only after
 * loading, so threads may share it.
 */
#ifndef ASSENT_KEYS_H
#define ASSENT_KEYS_H

#include <stddef.h>
#include <stdint.h>
#include "assent/err.h"

#define KEYS_SECRET_MIN 32              /* bytes */
#define KEYS_SECRET_MAX 64
#define KEYS_ID_MAX     255
#define KEYS_CREATED_SIZE 21            /* "2026-11-22T16:00:00Z" + NUL */

struct keys;

struct keys_key {
	uint8_t id;                     /* 1-255, carried in tokens */
	unsigned char secret[KEYS_SECRET_MAX];
	size_t secret_len;
	char created[KEYS_CREATED_SIZE]; /* "" when the file gave none */
};

/* Read and check path. EX_NOINPUT when it is missing (with a hint to
 * run "assent keys generate"), EX_CONFIG for a file others may read or
 * a malformed one (file:line). */
int keys_load(const char *path, struct keys **keys_r, struct assent_err *err);

void keys_free(struct keys *keys);

/* The key new tokens are signed with. */
const struct keys_key *keys_current(const struct keys *keys);

/* The key with this id, or NULL. */
const struct keys_key *keys_find(const struct keys *keys, uint8_t id);

/* The pepper for keyed hashes of addresses (at least 32 bytes). */
const unsigned char *keys_pepper(const struct keys *keys, size_t *len_r);

/* The number of keys, and the i-th of them (0 <= i < keys_count()) in
 * the order of the file, for listing. */
size_t keys_count(const struct keys *keys);
const struct keys_key *keys_at(const struct keys *keys, size_t i);

/* A key set built from memory, for tests, fuzzing and benchmarks: the
 * nkeys keys (copied) with current_id current and the given pepper.
 * Checked as keys_load() checks a file (EX_CONFIG on a problem). */
int keys_from_memory(const struct keys_key *keys, size_t nkeys,
    uint8_t current_id, const unsigned char *pepper, size_t pepper_len,
    struct keys **keys_r, struct assent_err *err);

/* Write a new keys file at path with one fresh key (id 1) and a fresh
 * pepper (32 bytes each from RAND_bytes), mode 0600, synced to disk.
 * An existing file is never overwritten: EX_CANTCREAT. */
int keys_generate(const char *path, struct assent_err *err);

/* Add a fresh key to the file at path and make it current; older keys
 * stay for verification. The new key's id is the highest id + 1
 * (EX_CONFIG when that would pass 255). The file is rewritten (comments
 * are not kept) to a temporary file in the same directory, mode 0600 and
 * the old file's owner and group, synced, and renamed over path.
 * Rotations serialise on an flock of path.lock (mode 0600, left in
 * place), so two at once both add their key. *new_id_r (may be NULL)
 * gets the new key id. */
int keys_rotate(const char *path, uint8_t *new_id_r, struct assent_err *err);

#endif

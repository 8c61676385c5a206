/* keys: the secrets file that signs tokens and peppers hashed
 * suppression entries; see include/assent/keys.h */
#include <sys/file.h>
#include <sys/stat.h>

#include <errno.h>
#include <fcntl.h>
#include <libconfig.h>
#include <limits.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <openssl/crypto.h>
#include <openssl/rand.h>

#include "assent/keys.h"
#include "assent/xmalloc.h"

#define KEYS_SETTING    "tokens.keys_file"
#define KEYS_NEW_SECRET 32              /* bytes of a fresh secret or pepper */

struct keys {
	struct keys_key key[KEYS_ID_MAX];       /* nkeys of them, file order */
	size_t nkeys;
	short index[KEYS_ID_MAX + 1];           /* id -> index into key, or -1 */
	uint8_t current_id;
	unsigned char pepper[KEYS_SECRET_MAX];
	size_t pepper_len;
};

static struct keys *
keys_alloc(void)
{
	struct keys *k = xcalloc(1, sizeof(*k));

	for (size_t i = 0; i <= KEYS_ID_MAX; i++)
		k->index[i] = -1;
	return k;
}

void
keys_free(struct keys *keys)
{
	if (keys == NULL)
		return;
	OPENSSL_cleanse(keys, sizeof(*keys));
	free(keys);
}

const struct keys_key *
keys_current(const struct keys *keys)
{
	return keys_find(keys, keys->current_id);
}

const struct keys_key *
keys_find(const struct keys *keys, uint8_t id)
{
	if (keys->index[id] < 0)
		return NULL;
	return &keys->key[keys->index[id]];
}

const unsigned char *
keys_pepper(const struct keys *keys, size_t *len_r)
{
	*len_r = keys->pepper_len;
	return keys->pepper;
}

size_t
keys_count(const struct keys *keys)
{
	return keys->nkeys;
}

const struct keys_key *
keys_at(const struct keys *keys, size_t i)
{
	return i < keys->nkeys ? &keys->key[i] : NULL;
}

/* --- base64 (standard alphabet, padded), strict ---------------------- */

static int
keys_b64_value(char c)
{
	if (c >= 'A' && c <= 'Z')
		return c - 'A';
	if (c >= 'a' && c <= 'z')
		return c - 'a' + 26;
	if (c >= '0' && c <= '9')
		return c - '0' + 52;
	if (c == '+')
		return 62;
	if (c == '/')
		return 63;
	return -1;
}

/* Decode s into out (at most max bytes). Refuses anything but the one
 * canonical encoding: whole quads, '=' only as the last one or two
 * characters, zero bits under the padding. */
static int
keys_b64_decode(const char *s, unsigned char *out, size_t max, size_t *len_r)
{
	size_t len = strlen(s), pad = 0, n = 0;
	unsigned acc = 0;
	int v;

	if (len == 0 || len % 4 != 0)
		return -1;
	if (s[len - 1] == '=')
		pad = s[len - 2] == '=' ? 2 : 1;
	if ((len / 4) * 3 - pad > max)
		return -1;
	for (size_t i = 0; i < len - pad; i++) {
		if ((v = keys_b64_value(s[i])) < 0)
			return -1;
		acc = (acc << 6) | (unsigned)v;
		if (i % 4 == 3) {
			out[n++] = acc >> 16;
			out[n++] = acc >> 8;
			out[n++] = acc;
			acc = 0;
		}
	}
	if (pad == 2) {
		if (acc & 0x0f)
			return -1;
		out[n++] = acc >> 4;
	} else if (pad == 1) {
		if (acc & 0x03)
			return -1;
		out[n++] = acc >> 10;
		out[n++] = acc >> 2;
	}
	*len_r = n;
	return 0;
}

static void
keys_b64_encode(const unsigned char *in, size_t len, char *out)
{
	static const char alphabet[] =
	    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
	size_t i, o = 0;
	unsigned acc;

	for (i = 0; i + 3 <= len; i += 3) {
		acc = (unsigned)in[i] << 16 | (unsigned)in[i + 1] << 8 | in[i + 2];
		out[o++] = alphabet[acc >> 18];
		out[o++] = alphabet[(acc >> 12) & 63];
		out[o++] = alphabet[(acc >> 6) & 63];
		out[o++] = alphabet[acc & 63];
	}
	if (len - i == 1) {
		acc = (unsigned)in[i] << 16;
		out[o++] = alphabet[acc >> 18];
		out[o++] = alphabet[(acc >> 12) & 63];
		out[o++] = '=';
		out[o++] = '=';
	} else if (len - i == 2) {
		acc = (unsigned)in[i] << 16 | (unsigned)in[i + 1] << 8;
		out[o++] = alphabet[acc >> 18];
		out[o++] = alphabet[(acc >> 12) & 63];
		out[o++] = alphabet[(acc >> 6) & 63];
		out[o++] = '=';
	}
	out[o] = '\0';
}

/* --- checking a key set ----------------------------------------------- */

/* "2026-11-22T16:00:00Z" */
static bool
keys_created_ok(const char *s)
{
	static const char shape[] = "dddd-dd-ddTdd:dd:ddZ";

	if (strlen(s) != sizeof(shape) - 1)
		return false;
	for (size_t i = 0; shape[i] != '\0'; i++)
		if (shape[i] == 'd' ? s[i] < '0' || s[i] > '9' : s[i] != shape[i])
			return false;
	return true;
}

/* Add key to k; the reason it cannot be added goes to why. */
static int
keys_add(struct keys *k, const struct keys_key *key, char *why, size_t whylen)
{
	if (key->id == 0) {
		snprintf(why, whylen, "a key id is from 1 to %d", KEYS_ID_MAX);
		return -1;
	}
	if (k->index[key->id] >= 0) {
		snprintf(why, whylen, "key id %u appears twice", key->id);
		return -1;
	}
	if (key->secret_len < KEYS_SECRET_MIN || key->secret_len > KEYS_SECRET_MAX) {
		snprintf(why, whylen, "%zu bytes long; a secret has %d to %d",
		    key->secret_len, KEYS_SECRET_MIN, KEYS_SECRET_MAX);
		return -1;
	}
	if (key->created[0] != '\0' && !keys_created_ok(key->created)) {
		snprintf(why, whylen, "not a UTC time like 2026-11-22T16:00:00Z");
		return -1;
	}
	k->index[key->id] = (short)k->nkeys;
	k->key[k->nkeys++] = *key;
	return 0;
}

int
keys_from_memory(const struct keys_key *keys, size_t nkeys, uint8_t current_id,
    const unsigned char *pepper, size_t pepper_len, struct keys **keys_r,
    struct assent_err *err)
{
	struct keys *k;
	char why[128];

	*keys_r = NULL;
	if (nkeys == 0 || nkeys > KEYS_ID_MAX)
		return err_set(err, EX_CONFIG, "keys: 1 to %d keys are needed",
		    KEYS_ID_MAX);
	if (pepper_len < KEYS_SECRET_MIN || pepper_len > KEYS_SECRET_MAX)
		return err_set(err, EX_CONFIG, "pepper: %zu bytes long; it needs "
		    "%d to %d", pepper_len, KEYS_SECRET_MIN, KEYS_SECRET_MAX);
	k = keys_alloc();
	for (size_t i = 0; i < nkeys; i++) {
		if (keys_add(k, &keys[i], why, sizeof(why)) == -1) {
			keys_free(k);
			return err_set(err, EX_CONFIG, "keys[%zu]: %s", i, why);
		}
	}
	if (k->index[current_id] < 0) {
		keys_free(k);
		return err_set(err, EX_CONFIG, "current: no key has id %u",
		    current_id);
	}
	k->current_id = current_id;
	memcpy(k->pepper, pepper, pepper_len);
	k->pepper_len = pepper_len;
	*keys_r = k;
	return 0;
}

/* --- reading the file ------------------------------------------------- */

/* Where an error is: the file and a line of it. */
struct keys_where {
	const char *path;
};

static int
keys_fail_at(const struct keys_where *w, const config_setting_t *s,
    const char *name, const char *why, struct assent_err *err)
{
	int line = s != NULL ? config_setting_source_line(s) : 0;

	if (line > 0)
		return err_set(err, EX_CONFIG, "%s:%d: %s: %s", w->path, line,
		    name, why);
	return err_set(err, EX_CONFIG, "%s: %s: %s", w->path, name, why);
}

static bool
keys_is_int(const config_setting_t *s)
{
	int type = config_setting_type(s);

	return type == CONFIG_TYPE_INT || type == CONFIG_TYPE_INT64;
}

static int
keys_read_id(const struct keys_where *w, const config_setting_t *s,
    const char *name, uint8_t *id_r, struct assent_err *err)
{
	long long v;

	if (!keys_is_int(s))
		return keys_fail_at(w, s, name, "must be an integer", err);
	v = config_setting_get_int64(s);
	if (v < 1 || v > KEYS_ID_MAX)
		return keys_fail_at(w, s, name, "a key id is from 1 to 255", err);
	*id_r = (uint8_t)v;
	return 0;
}

/* A base64 secret of KEYS_SECRET_MIN to KEYS_SECRET_MAX bytes. */
static int
keys_read_secret(const struct keys_where *w, const config_setting_t *s,
    const char *name, unsigned char *out, size_t *len_r, struct assent_err *err)
{
	unsigned char buf[KEYS_SECRET_MAX * 2];
	char why[128];
	const char *text;
	size_t len;
	int rc = 0;

	if (config_setting_type(s) != CONFIG_TYPE_STRING)
		return keys_fail_at(w, s, name, "must be a base64 string", err);
	text = config_setting_get_string(s);
	if (strlen(text) > (sizeof(buf) / 3) * 4 ||
	    keys_b64_decode(text, buf, sizeof(buf), &len) == -1)
		return keys_fail_at(w, s, name, "not valid base64 (or too long)",
		    err);
	if (len < KEYS_SECRET_MIN || len > KEYS_SECRET_MAX) {
		snprintf(why, sizeof(why), "%zu bytes long; it needs %d to %d",
		    len, KEYS_SECRET_MIN, KEYS_SECRET_MAX);
		rc = keys_fail_at(w, s, name, why, err);
	} else {
		memcpy(out, buf, len);
		*len_r = len;
	}
	OPENSSL_cleanse(buf, sizeof(buf));
	return rc;
}

/* One member of a key's group into key; *seen_r gets 1 for id, 2 for
 * secret. */
static int
keys_read_member(const struct keys_where *w, const config_setting_t *s,
    unsigned idx, struct keys_key *key, unsigned *seen_r,
    struct assent_err *err)
{
	const char *member = config_setting_name(s);
	char name[64];

	snprintf(name, sizeof(name), "keys[%u].%s", idx, member);
	if (strcmp(member, "id") == 0) {
		*seen_r |= 1;
		return keys_read_id(w, s, name, &key->id, err);
	}
	if (strcmp(member, "secret") == 0) {
		*seen_r |= 2;
		return keys_read_secret(w, s, name, key->secret, &key->secret_len,
		    err);
	}
	if (strcmp(member, "created") != 0)
		return keys_fail_at(w, s, name, "unknown setting (id, secret, "
		    "created)", err);
	if (config_setting_type(s) != CONFIG_TYPE_STRING ||
	    !keys_created_ok(config_setting_get_string(s)))
		return keys_fail_at(w, s, name, "not a UTC time like "
		    "2026-11-22T16:00:00Z", err);
	memcpy(key->created, config_setting_get_string(s), KEYS_CREATED_SIZE);
	return 0;
}

static int
keys_read_key(const struct keys_where *w, const config_setting_t *g,
    unsigned idx, struct keys *k, struct assent_err *err)
{
	const config_setting_t *s;
	struct keys_key key;
	char name[64], why[128];
	unsigned seen = 0;
	int rc = -1;

	memset(&key, 0, sizeof(key));
	snprintf(name, sizeof(name), "keys[%u]", idx);
	if (config_setting_type(g) != CONFIG_TYPE_GROUP)
		return keys_fail_at(w, g, name, "must be a group { id = N; "
		    "secret = \"...\"; }", err);
	for (unsigned i = 0; (s = config_setting_get_elem(g, i)) != NULL; i++)
		if (keys_read_member(w, s, idx, &key, &seen, err) == -1)
			goto out;
	if (seen != 3) {
		keys_fail_at(w, g, name, (seen & 1) ? "no secret" : "no id", err);
		goto out;
	}
	if (keys_add(k, &key, why, sizeof(why)) == -1) {
		snprintf(name, sizeof(name), "keys[%u].id", idx);
		keys_fail_at(w, config_setting_get_member(g, "id"), name, why, err);
		goto out;
	}
	rc = 0;
out:
	OPENSSL_cleanse(&key, sizeof(key));
	return rc;
}

static int
keys_read_list(const struct keys_where *w, const config_setting_t *list,
    struct keys *k, struct assent_err *err)
{
	const config_setting_t *g;
	unsigned i;

	if (config_setting_type(list) != CONFIG_TYPE_LIST)
		return keys_fail_at(w, list, "keys", "must be a list ( { ... }, "
		    "... )", err);
	for (i = 0; (g = config_setting_get_elem(list, i)) != NULL; i++) {
		if (i >= KEYS_ID_MAX)
			return keys_fail_at(w, g, "keys", "more than 255 keys",
			    err);
		if (keys_read_key(w, g, i, k, err) == -1)
			return -1;
	}
	if (i == 0)
		return keys_fail_at(w, list, "keys", "no key", err);
	return 0;
}

static int
keys_read_root(const struct keys_where *w, const config_t *cfg, struct keys *k,
    struct assent_err *err)
{
	const config_setting_t *root = config_root_setting(cfg), *s, *cur;
	char why[64];

	for (unsigned i = 0; (s = config_setting_get_elem(root, i)) != NULL; i++) {
		const char *name = config_setting_name(s);

		if (strcmp(name, "current") != 0 && strcmp(name, "pepper") != 0 &&
		    strcmp(name, "keys") != 0)
			return keys_fail_at(w, s, name, "unknown setting "
			    "(current, pepper, keys)", err);
	}
	if ((s = config_setting_get_member(root, "keys")) == NULL)
		return keys_fail_at(w, NULL, "keys", "missing", err);
	if (keys_read_list(w, s, k, err) == -1)
		return -1;
	if ((s = config_setting_get_member(root, "pepper")) == NULL)
		return keys_fail_at(w, NULL, "pepper", "missing", err);
	if (keys_read_secret(w, s, "pepper", k->pepper, &k->pepper_len, err) == -1)
		return -1;
	if ((cur = config_setting_get_member(root, "current")) == NULL)
		return keys_fail_at(w, NULL, "current", "missing", err);
	if (keys_read_id(w, cur, "current", &k->current_id, err) == -1)
		return -1;
	if (k->index[k->current_id] < 0) {
		snprintf(why, sizeof(why), "no key has id %u", k->current_id);
		return keys_fail_at(w, cur, "current", why, err);
	}
	return 0;
}

/* The opened file must be private: checked on the descriptor, so that
 * what is checked is what is read, whatever happens to path meanwhile.
 * The message matches conf_check_secret_file()'s. */
static int
keys_check_private(const char *path, const struct stat *st,
    struct assent_err *err)
{
	const char *how;

	if ((st->st_mode & 077) == 0)
		return 0;
	if (st->st_mode & 044)
		how = "readable";
	else if (st->st_mode & 022)
		how = "writable";
	else
		how = "accessible";
	return err_set(err, EX_CONFIG, "%s: %s is %s by group or others "
	    "(mode %04o); chmod 600 it", KEYS_SETTING, path, how,
	    (unsigned)(st->st_mode & 07777));
}

/* A missing file gets a hint; libconfig alone would say "file I/O
 * error" on line 0. */
static int
keys_open(const char *path, FILE **fp_r, struct assent_err *err)
{
	struct stat st;

	if ((*fp_r = fopen(path, "r")) == NULL) {
		if (errno == ENOENT)
			return err_set(err, EX_NOINPUT, "%s: no keys file; run "
			    "\"assent keys generate\" to make one", path);
		return err_set(err, EX_NOINPUT, "%s: %s", path, strerror(errno));
	}
	if (fstat(fileno(*fp_r), &st) < 0)
		err_set(err, EX_IOERR, "%s: %s", path, strerror(errno));
	else if (!S_ISREG(st.st_mode))
		err_set(err, EX_NOINPUT, "%s: not a regular file", path);
	else if (keys_check_private(path, &st, err) == 0)
		return 0;
	fclose(*fp_r);
	*fp_r = NULL;
	return -1;
}

int
keys_load(const char *path, struct keys **keys_r, struct assent_err *err)
{
	struct keys_where w = { path };
	struct keys *k = NULL;
	config_t cfg;
	FILE *fp;

	*keys_r = NULL;
	if (keys_open(path, &fp, err) == -1)
		return -1;
	config_init(&cfg);
	if (!config_read(&cfg, fp)) {
		err_set(err, EX_CONFIG, "%s:%d: %s", path, config_error_line(&cfg),
		    config_error_text(&cfg));
		goto fail;
	}
	k = keys_alloc();
	if (keys_read_root(&w, &cfg, k, err) == -1)
		goto fail;
	/* libconfig's copies of the secrets are freed without wiping:
	 * nothing in its API lets us reach them before that. */
	config_destroy(&cfg);
	fclose(fp);
	*keys_r = k;
	return 0;
fail:
	keys_free(k);
	config_destroy(&cfg);
	fclose(fp);
	return -1;
}

/* --- writing ----------------------------------------------------------- */

static int
keys_random(unsigned char *buf, size_t len, struct assent_err *err)
{
	if (RAND_bytes(buf, (int)len) != 1)
		return err_set(err, EX_OSERR, "cannot get random bytes from "
		    "OpenSSL");
	return 0;
}

static void
keys_now(char created[KEYS_CREATED_SIZE])
{
	time_t now = time(NULL);
	struct tm tm;

	gmtime_r(&now, &tm);
	strftime(created, KEYS_CREATED_SIZE, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

static int
keys_new_key(uint8_t id, struct keys_key *key, struct assent_err *err)
{
	memset(key, 0, sizeof(*key));
	key->id = id;
	key->secret_len = KEYS_NEW_SECRET;
	keys_now(key->created);
	return keys_random(key->secret, key->secret_len, err);
}

/* The file's text; the caller wipes and frees it. */
static char *
keys_format(const struct keys *k, size_t *len_r)
{
	size_t cap = 512 + k->nkeys * 256, len = 0;
	char *text = xmalloc(cap);
	char b64[(KEYS_SECRET_MAX + 2) / 3 * 4 + 1];

	len += snprintf(text + len, cap - len,
	    "# assent token signing keys and pepper: keep this file private\n"
	    "# (mode 0600). Made by \"assent keys generate\"; \"assent keys "
	    "rotate\"\n# adds a key and makes it current. Removing a key "
	    "invalidates every\n# token signed with it; changing the pepper "
	    "orphans hashed entries.\n\ncurrent = %u;\n", k->current_id);
	keys_b64_encode(k->pepper, k->pepper_len, b64);
	len += snprintf(text + len, cap - len, "pepper = \"%s\";\nkeys = (\n",
	    b64);
	for (size_t i = 0; i < k->nkeys; i++) {
		const struct keys_key *key = &k->key[i];

		keys_b64_encode(key->secret, key->secret_len, b64);
		len += snprintf(text + len, cap - len,
		    "  { id = %u; secret = \"%s\";%s%s%s }%s\n", key->id, b64,
		    key->created[0] != '\0' ? " created = \"" : "",
		    key->created, key->created[0] != '\0' ? "\";" : "",
		    i + 1 < k->nkeys ? "," : "");
	}
	len += snprintf(text + len, cap - len, ");\n");
	OPENSSL_cleanse(b64, sizeof(b64));
	*len_r = len;
	return text;
}

/* Write the key set to fd and flush it to disk. */
static int
keys_write_fd(int fd, const struct keys *k, const char *path,
    struct assent_err *err)
{
	size_t len, off = 0;
	char *text = keys_format(k, &len);
	ssize_t n;
	int rc = 0;

	while (off < len) {
		if ((n = write(fd, text + off, len - off)) < 0) {
			if (errno == EINTR)
				continue;
			rc = err_set(err, EX_IOERR, "%s: %s", path, strerror(errno));
			break;
		}
		off += (size_t)n;
	}
	if (rc == 0 && fsync(fd) < 0)
		rc = err_set(err, EX_IOERR, "%s: fsync: %s", path, strerror(errno));
	OPENSSL_cleanse(text, len);
	free(text);
	return rc;
}

/* Make a rename or a new name in the directory of path durable. */
static void
keys_sync_dir(const char *path)
{
	const char *slash = strrchr(path, '/');
	char *dir;
	int fd;

	if (slash == NULL)
		dir = xstrdup(".");
	else if (slash == path)
		dir = xstrdup("/");
	else
		dir = xstrndup(path, (size_t)(slash - path));
	if ((fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC)) >= 0) {
		(void)fsync(fd);
		close(fd);
	}
	free(dir);
}

int
keys_generate(const char *path, struct assent_err *err)
{
	struct keys_key key;
	unsigned char pepper[KEYS_NEW_SECRET];
	struct keys *k = NULL;
	int fd = -1, rc = -1;

	if (keys_new_key(1, &key, err) == -1 ||
	    keys_random(pepper, sizeof(pepper), err) == -1 ||
	    keys_from_memory(&key, 1, 1, pepper, sizeof(pepper), &k, err) == -1)
		goto out;
	fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
	if (fd < 0) {
		if (errno == EEXIST)
			err_set(err, EX_CANTCREAT, "%s exists already; \"assent "
			    "keys rotate\" adds a key to it", path);
		else
			err_set(err, EX_CANTCREAT, "%s: %s", path, strerror(errno));
		goto out;
	}
	/* The umask may have taken away the owner's bits. */
	if (fchmod(fd, 0600) < 0) {
		err_set(err, EX_IOERR, "%s: chmod: %s", path, strerror(errno));
		goto out_unlink;
	}
	if (keys_write_fd(fd, k, path, err) == -1)
		goto out_unlink;
	if (close(fd) < 0) {
		fd = -1;
		err_set(err, EX_IOERR, "%s: %s", path, strerror(errno));
		goto out_unlink;
	}
	fd = -1;
	keys_sync_dir(path);
	rc = 0;
	goto out;
out_unlink:
	unlink(path);
out:
	if (fd >= 0)
		close(fd);
	OPENSSL_cleanse(&key, sizeof(key));
	OPENSSL_cleanse(pepper, sizeof(pepper));
	keys_free(k);
	return rc;
}

/* Give the new file the owner and group of the one it replaces, so a
 * daemon running as another user still reads it after root rotates. */
static int
keys_copy_owner(int fd, const char *path, const char *tmp,
    struct assent_err *err)
{
	struct stat old, st;

	if (stat(path, &old) < 0)
		return err_set(err, EX_IOERR, "%s: %s", path, strerror(errno));
	if (fstat(fd, &st) < 0)
		return err_set(err, EX_IOERR, "%s: %s", tmp, strerror(errno));
	if ((st.st_uid != old.st_uid || st.st_gid != old.st_gid) &&
	    fchown(fd, old.st_uid, old.st_gid) < 0)
		return err_set(err, EX_NOPERM, "%s: cannot give it the owner "
		    "of %s: %s", tmp, path, strerror(errno));
	return 0;
}

static int
keys_replace(const char *path, const struct keys *k, struct assent_err *err)
{
	char *tmp = xasprintf("%s.new.XXXXXX", path);
	int fd, rc = -1;

	/* mkstemp makes the file 0600. */
	if ((fd = mkstemp(tmp)) < 0) {
		err_set(err, EX_CANTCREAT, "%s: %s", tmp, strerror(errno));
		free(tmp);
		return -1;
	}
	if (keys_copy_owner(fd, path, tmp, err) == -1 ||
	    keys_write_fd(fd, k, tmp, err) == -1)
		goto fail;
	if (close(fd) < 0) {
		fd = -1;
		err_set(err, EX_IOERR, "%s: %s", tmp, strerror(errno));
		goto fail;
	}
	fd = -1;
	if (rename(tmp, path) < 0) {
		err_set(err, EX_IOERR, "rename %s to %s: %s", tmp, path,
		    strerror(errno));
		goto fail;
	}
	keys_sync_dir(path);
	rc = 0;
	goto out;
fail:
	if (fd >= 0)
		close(fd);
	unlink(tmp);
out:
	free(tmp);
	return rc;
}

/* Rotations exclude each other through an flock on PATH.lock, held
 * from reading the file to renaming the new one into place: two at once
 * would both pick the same next id and one key would be lost. The lock
 * file stays (removing it would race with a rotation opening it). */
static int
keys_lock(const char *path, int *fd_r, struct assent_err *err)
{
	char *lock = xasprintf("%s.lock", path);
	int fd;

	*fd_r = -1;
	fd = open(lock, O_RDWR | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0600);
	if (fd < 0) {
		err_set(err, errno == ENOENT ? EX_NOINPUT : EX_CANTCREAT,
		    "%s: %s", lock, strerror(errno));
		free(lock);
		return -1;
	}
	while (flock(fd, LOCK_EX) < 0) {
		if (errno == EINTR)
			continue;
		err_set(err, EX_IOERR, "%s: flock: %s", lock, strerror(errno));
		close(fd);
		free(lock);
		return -1;
	}
	free(lock);
	*fd_r = fd;
	return 0;
}

static int
keys_rotate_locked(const char *path, uint8_t *new_id_r, struct assent_err *err)
{
	struct keys *k;
	struct keys_key key;
	unsigned max = 0;
	char why[128];
	int rc = -1;

	memset(&key, 0, sizeof(key));
	if (keys_load(path, &k, err) == -1)
		return -1;
	for (size_t i = 0; i < k->nkeys; i++)
		if (k->key[i].id > max)
			max = k->key[i].id;
	if (max >= KEYS_ID_MAX) {
		err_set(err, EX_CONFIG, "%s: key id %d is taken: no id is left "
		    "for a new key", path, KEYS_ID_MAX);
		goto out;
	}
	if (keys_new_key((uint8_t)(max + 1), &key, err) == -1)
		goto out;
	if (keys_add(k, &key, why, sizeof(why)) == -1) {
		err_set(err, EX_SOFTWARE, "%s: %s", path, why);
		goto out;
	}
	k->current_id = key.id;
	if (keys_replace(path, k, err) == -1)
		goto out;
	if (new_id_r != NULL)
		*new_id_r = key.id;
	rc = 0;
out:
	OPENSSL_cleanse(&key, sizeof(key));
	keys_free(k);
	return rc;
}

int
keys_rotate(const char *path, uint8_t *new_id_r, struct assent_err *err)
{
	struct stat st;
	int fd, rc;

	/* No lock file beside a keys file that isn't there. */
	if (stat(path, &st) < 0 && errno == ENOENT)
		return err_set(err, EX_NOINPUT, "%s: no keys file; run "
		    "\"assent keys generate\" to make one", path);
	if (keys_lock(path, &fd, err) == -1)
		return -1;
	rc = keys_rotate_locked(path, new_id_r, err);
	close(fd);              /* releases the lock */
	return rc;
}

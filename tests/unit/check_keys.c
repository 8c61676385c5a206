/* check_keys: the keys file (src/lib/keys.c): generate, load, rotate
 * (old tokens still verify), permissions, and malformed files reported
 * as FILE:LINE: SETTING: problem. */
#include <sys/stat.h>
#include <sys/wait.h>

#include <dirent.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <check.h>
#include "testhelp.h"

#include "assent/err.h"
#include "assent/keys.h"
#include "assent/token.h"

/* 32 bytes 0..31, 32 bytes 100..131, 16, 31, 33, 64 and 65 bytes. */
#define S32   "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8="
#define P32   "ZGVmZ2hpamtsbW5vcHFyc3R1dnd4eXp7fH1+f4CBgoM="
#define S16   "AAECAwQFBgcICQoLDA0ODw=="
#define S31   "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHg=="
#define S33   "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8g"
#define S64   "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8gISIjJCUmJygpKiss" \
              "LS4vMDEyMzQ1Njc4OTo7PD0+Pw=="
#define S65   "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8gISIjJCUmJygpKiss" \
              "LS4vMDEyMzQ1Njc4OTo7PD0+P0A="

#define NOW   1795000000LL

/* ---- stat(), lying on request ------------------------------------------- */

/* When set, stat() reports every file as mode 0600: a keys file that
 * was swapped between the check and the open would look that way to a
 * check by name. keys_load() must judge the descriptor it reads. This
 * definition takes the place of libc's for everything linked in here. */
static bool stat_lies;

int
stat(const char *restrict p, struct stat *restrict st)
{
	int rc = fstatat(AT_FDCWD, p, st, 0);

	if (rc == 0 && stat_lies)
		st->st_mode = (st->st_mode & ~(mode_t)07777) | 0600;
	return rc;
}

/* ---- a private directory per test ----------------------------------- */

static char dir[64];
static char path[128];

static void
setup(void)
{
	snprintf(dir, sizeof(dir), "%s/check_keys.XXXXXX",
	    getenv("TMPDIR") != NULL ? getenv("TMPDIR") : "/tmp");
	ck_assert_ptr_nonnull(mkdtemp(dir));
	snprintf(path, sizeof(path), "%s/keys.conf", dir);
}

static int
count_entries(void)
{
	DIR *d = opendir(dir);
	struct dirent *e;
	int n = 0;

	ck_assert_ptr_nonnull(d);
	while ((e = readdir(d)) != NULL)
		if (strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0)
			n++;
	closedir(d);
	return n;
}

static void
teardown(void)
{
	DIR *d = opendir(dir);
	struct dirent *e;
	char p[512];

	if (d == NULL)
		return;
	while ((e = readdir(d)) != NULL) {
		if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
			continue;
		snprintf(p, sizeof(p), "%s/%s", dir, e->d_name);
		if (unlink(p) < 0)
			rmdir(p);
	}
	closedir(d);
	rmdir(dir);
}

static void
write_file(const char *p, const char *text, mode_t mode)
{
	FILE *fp = fopen(p, "w");

	ck_assert_ptr_nonnull(fp);
	fputs(text, fp);
	ck_assert_int_eq(fclose(fp), 0);
	ck_assert_int_eq(chmod(p, mode), 0);
}

static char *
read_file(const char *p)
{
	static char buf[65536];
	FILE *fp = fopen(p, "r");
	size_t n;

	ck_assert_ptr_nonnull(fp);
	n = fread(buf, 1, sizeof(buf) - 1, fp);
	buf[n] = '\0';
	fclose(fp);
	return buf;
}

static mode_t
mode_of(const char *p)
{
	struct stat st;

	ck_assert_int_eq(stat(p, &st), 0);
	return st.st_mode & 07777;
}

static struct keys *
load_ok(void)
{
	struct assent_err err;
	struct keys *k;

	err_clear(&err);
	ck_assert_msg(keys_load(path, &k, &err) == 0, "keys_load: %s", err.msg);
	return k;
}

static bool
created_shape(const char *s)
{
	int y, mo, d, h, mi, sec;
	char z;

	return strlen(s) == 20 && sscanf(s, "%4d-%2d-%2dT%2d:%2d:%2d%c", &y, &mo,
	    &d, &h, &mi, &sec, &z) == 7 && z == 'Z' && y >= 2024;
}

/* ---- generate ------------------------------------------------------- */

START_TEST(test_generate)
{
	const struct keys_key *key;
	const unsigned char *pepper;
	struct assent_err err;
	struct keys *k;
	size_t plen;
	char *before;

	ck_assert_int_eq(keys_generate(path, &err), 0);
	ck_assert_uint_eq(mode_of(path), 0600);
	k = load_ok();
	ck_assert_uint_eq(keys_count(k), 1);
	key = keys_current(k);
	ck_assert_ptr_eq(key, keys_at(k, 0));
	ck_assert_ptr_eq(key, keys_find(k, 1));
	ck_assert_ptr_null(keys_find(k, 2));
	ck_assert_ptr_null(keys_at(k, 1));
	ck_assert_uint_eq(key->id, 1);
	ck_assert_uint_ge(key->secret_len, KEYS_SECRET_MIN);
	ck_assert_msg(created_shape(key->created), "created \"%s\"", key->created);
	pepper = keys_pepper(k, &plen);
	ck_assert_uint_ge(plen, KEYS_SECRET_MIN);
	ck_assert_int_ne(memcmp(pepper, key->secret, KEYS_SECRET_MIN), 0);
	keys_free(k);

	/* never overwritten */
	before = strdup(read_file(path));
	ck_assert_int_eq(keys_generate(path, &err), -1);
	ck_assert_int_eq(err.code, EX_CANTCREAT);
	ck_assert_msg(strstr(err.msg, "exists already") != NULL, "%s", err.msg);
	ck_assert_str_eq(read_file(path), before);
	free(before);
}
END_TEST

static const mode_t umasks[] = { 0, 022, 077, 0277, 0777 };

START_TEST(test_generate_umask)
{
	struct assent_err err;
	mode_t old = umask(umasks[_i]);

	ck_assert_int_eq(keys_generate(path, &err), 0);
	umask(old);
	ck_assert_uint_eq(mode_of(path), 0600);
	keys_free(load_ok());
}
END_TEST

START_TEST(test_generate_fresh)
{
	char other[192];
	struct keys *a, *b;
	struct assent_err err;
	const unsigned char *pa, *pb;
	size_t la, lb;

	snprintf(other, sizeof(other), "%s/other.conf", dir);
	ck_assert_int_eq(keys_generate(path, &err), 0);
	ck_assert_int_eq(keys_generate(other, &err), 0);
	a = load_ok();
	ck_assert_int_eq(keys_load(other, &b, &err), 0);
	ck_assert_int_ne(memcmp(keys_current(a)->secret, keys_current(b)->secret,
	    KEYS_SECRET_MIN), 0);
	pa = keys_pepper(a, &la);
	pb = keys_pepper(b, &lb);
	ck_assert_int_ne(memcmp(pa, pb, KEYS_SECRET_MIN), 0);
	keys_free(a);
	keys_free(b);
}
END_TEST

START_TEST(test_generate_no_dir)
{
	struct assent_err err;
	char p[192];

	snprintf(p, sizeof(p), "%s/missing/keys.conf", dir);
	ck_assert_int_eq(keys_generate(p, &err), -1);
	ck_assert_int_eq(err.code, EX_CANTCREAT);
	ck_assert_int_eq(count_entries(), 0);
}
END_TEST

/* ---- rotate ---------------------------------------------------------- */

static void
sign(const struct keys *k, char *text)
{
	struct token t = { TOKEN_UNSUBSCRIBE, 11, 22, 33, false, NOW, 0 };
	struct token_signer *s;
	struct assent_err err;

	ck_assert_int_eq(token_signer_new(k, &s, &err), 0);
	ck_assert_int_eq(token_make(s, &t, text, TOKEN_TEXT_SIZE, &err), 0);
	token_signer_free(s);
}

static int
verify(const struct keys *k, const char *text, uint8_t *key_id_r)
{
	struct token_signer *s;
	struct assent_err err;
	struct token out;
	int rc;

	ck_assert_int_eq(token_signer_new(k, &s, &err), 0);
	rc = token_verify(s, text, TOKEN_UNSUBSCRIBE, NOW, 3600, &out, &err);
	token_signer_free(s);
	*key_id_r = out.key_id;
	return rc;
}

START_TEST(test_rotate)
{
	char t1[TOKEN_TEXT_SIZE], t2[TOKEN_TEXT_SIZE];
	unsigned char secret1[KEYS_SECRET_MAX], pepper1[KEYS_SECRET_MAX];
	const unsigned char *p;
	struct assent_err err;
	struct keys *k1, *k2;
	char lock[160];
	uint8_t id;
	size_t plen;

	ck_assert_int_eq(keys_generate(path, &err), 0);
	k1 = load_ok();
	sign(k1, t1);
	memcpy(secret1, keys_current(k1)->secret, KEYS_SECRET_MAX);
	p = keys_pepper(k1, &plen);
	memcpy(pepper1, p, plen);

	ck_assert_msg(keys_rotate(path, &id, &err) == 0, "%s", err.msg);
	ck_assert_uint_eq(id, 2);
	ck_assert_uint_eq(mode_of(path), 0600);
	/* no temporary left; the lock file stays, private */
	ck_assert_int_eq(count_entries(), 2);
	ck_assert_msg(snprintf(lock, sizeof(lock), "%s.lock", path) <
	    (int)sizeof(lock), "lock path");
	ck_assert_uint_eq(mode_of(lock), 0600);
	k2 = load_ok();
	ck_assert_uint_eq(keys_count(k2), 2);
	ck_assert_uint_eq(keys_current(k2)->id, 2);
	ck_assert_int_eq(memcmp(keys_find(k2, 1)->secret, secret1,
	    KEYS_SECRET_MAX), 0);
	ck_assert_int_ne(memcmp(keys_find(k2, 2)->secret, secret1,
	    KEYS_SECRET_MIN), 0);
	p = keys_pepper(k2, &plen);
	ck_assert_int_eq(memcmp(p, pepper1, plen), 0);

	/* the old token still verifies; new ones carry key 2 */
	ck_assert_int_eq(verify(k2, t1, &id), 0);
	ck_assert_uint_eq(id, 1);
	sign(k2, t2);
	ck_assert_int_eq(verify(k2, t2, &id), 0);
	ck_assert_uint_eq(id, 2);
	ck_assert_int_eq(verify(k1, t2, &id), -1);
	keys_free(k1);
	keys_free(k2);

	ck_assert_int_eq(keys_rotate(path, NULL, &err), 0);
	k2 = load_ok();
	ck_assert_uint_eq(keys_count(k2), 3);
	ck_assert_uint_eq(keys_current(k2)->id, 3);
	ck_assert_int_eq(verify(k2, t1, &id), 0);
	ck_assert_int_eq(verify(k2, t2, &id), 0);
	keys_free(k2);
}
END_TEST

START_TEST(test_rotate_full)
{
	struct assent_err err;

	write_file(path, "current = 255;\npepper = \"" P32 "\";\n"
	    "keys = ( { id = 255; secret = \"" S32 "\"; } );\n", 0600);
	ck_assert_int_eq(keys_rotate(path, NULL, &err), -1);
	ck_assert_int_eq(err.code, EX_CONFIG);
	ck_assert_msg(strstr(err.msg, "no id is left") != NULL, "%s", err.msg);
	ck_assert_uint_eq(count_entries(), 2);      /* the file and its lock */
}
END_TEST

START_TEST(test_rotate_keeps_order_and_gaps)
{
	struct assent_err err;
	struct keys *k;
	uint8_t id;

	write_file(path, "current = 3;\npepper = \"" P32 "\";\n"
	    "keys = ( { id = 9; secret = \"" S32 "\"; },\n"
	    "  { id = 3; secret = \"" S64 "\"; created = \"2026-01-02T03:04:05Z\"; } );\n",
	    0600);
	ck_assert_int_eq(keys_rotate(path, &id, &err), 0);
	ck_assert_uint_eq(id, 10);
	k = load_ok();
	ck_assert_uint_eq(keys_count(k), 3);
	ck_assert_uint_eq(keys_at(k, 0)->id, 9);
	ck_assert_str_eq(keys_at(k, 0)->created, "");
	ck_assert_uint_eq(keys_at(k, 1)->id, 3);
	ck_assert_uint_eq(keys_at(k, 1)->secret_len, 64);
	ck_assert_str_eq(keys_at(k, 1)->created, "2026-01-02T03:04:05Z");
	ck_assert_uint_eq(keys_at(k, 2)->id, 10);
	ck_assert_uint_eq(keys_current(k)->id, 10);
	keys_free(k);
}
END_TEST

START_TEST(test_rotate_refuses)
{
	struct assent_err err;

	ck_assert_int_eq(keys_rotate(path, NULL, &err), -1);
	ck_assert_int_eq(err.code, EX_NOINPUT);
	write_file(path, "current = 1;\npepper = \"" P32 "\";\n"
	    "keys = ( { id = 1; secret = \"" S32 "\"; } );\n", 0644);
	ck_assert_int_eq(keys_rotate(path, NULL, &err), -1);
	ck_assert_int_eq(err.code, EX_CONFIG);
	ck_assert_uint_eq(mode_of(path), 0644);
}
END_TEST

/* Rotations at once each add their own key: none is lost. */
#define CONCURRENT_ROTATES 8

START_TEST(test_rotate_concurrent)
{
	pid_t pid[CONCURRENT_ROTATES];
	struct assent_err err;
	struct keys *k;
	int status;

	ck_assert_int_eq(keys_generate(path, &err), 0);
	for (int i = 0; i < CONCURRENT_ROTATES; i++) {
		pid[i] = fork();
		ck_assert_int_ge(pid[i], 0);
		if (pid[i] == 0)
			_exit(keys_rotate(path, NULL, &err) == 0 ? 0 : 1);
	}
	for (int i = 0; i < CONCURRENT_ROTATES; i++) {
		ck_assert_int_eq(waitpid(pid[i], &status, 0), pid[i]);
		ck_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0);
	}
	k = load_ok();          /* a repeated id would not load */
	ck_assert_uint_eq(keys_count(k), CONCURRENT_ROTATES + 1);
	for (unsigned id = 1; id <= CONCURRENT_ROTATES + 1; id++)
		ck_assert_msg(keys_find(k, (uint8_t)id) != NULL, "key %u lost", id);
	ck_assert_uint_eq(keys_current(k)->id, CONCURRENT_ROTATES + 1);
	keys_free(k);
}
END_TEST

/* As root: the rotated file keeps the owner of the one it replaces. */
START_TEST(test_rotate_owner)
{
	struct assent_err err;
	struct stat st;

	if (geteuid() != 0)
		return;
	ck_assert_int_eq(keys_generate(path, &err), 0);
	ck_assert_int_eq(chown(path, 65534, 65534), 0);
	ck_assert_int_eq(keys_rotate(path, NULL, &err), 0);
	ck_assert_int_eq(stat(path, &st), 0);
	ck_assert_uint_eq(st.st_uid, 65534);
	ck_assert_uint_eq(st.st_gid, 65534);
	ck_assert_uint_eq(st.st_mode & 07777, 0600);
}
END_TEST

/* ---- permissions ------------------------------------------------------ */

static const struct {
	mode_t mode;
	const char *how;                /* NULL: accepted */
} perm_cases[] = {
	{ 0600, NULL },
	{ 0400, NULL },
	{ 0640, "readable" },
	{ 0604, "readable" },
	{ 0644, "readable" },
	{ 0660, "readable" },
	{ 0620, "writable" },
	{ 0602, "writable" },
	{ 0610, "accessible" },
};

START_TEST(test_permissions)
{
	struct assent_err err;
	struct keys *k;
	char want[512];

	write_file(path, "current = 1;\npepper = \"" P32 "\";\n"
	    "keys = ( { id = 1; secret = \"" S32 "\"; } );\n", perm_cases[_i].mode);
	if (perm_cases[_i].how == NULL) {
		keys_free(load_ok());
		return;
	}
	ck_assert_int_eq(keys_load(path, &k, &err), -1);
	ck_assert_ptr_null(k);
	ck_assert_int_eq(err.code, EX_CONFIG);
	snprintf(want, sizeof(want), "tokens.keys_file: %s is %s by group or "
	    "others (mode %04o); chmod 600 it", path, perm_cases[_i].how,
	    (unsigned)perm_cases[_i].mode);
	ck_assert_str_eq(err.msg, want);
}
END_TEST

/* The mode is that of the file opened, not of whatever the name gives a
 * second look. */
START_TEST(test_permissions_of_opened_file)
{
	struct assent_err err;
	struct keys *k;
	int rc;

	write_file(path, "current = 1;\npepper = \"" P32 "\";\n"
	    "keys = ( { id = 1; secret = \"" S32 "\"; } );\n", 0644);
	stat_lies = true;
	rc = keys_load(path, &k, &err);
	stat_lies = false;
	ck_assert_int_eq(rc, -1);
	ck_assert_ptr_null(k);
	ck_assert_int_eq(err.code, EX_CONFIG);
	ck_assert_msg(strstr(err.msg, "(mode 0644)") != NULL, "%s", err.msg);
}
END_TEST

START_TEST(test_missing)
{
	struct assent_err err;
	struct keys *k;
	char want[512];

	ck_assert_int_eq(keys_load(path, &k, &err), -1);
	ck_assert_int_eq(err.code, EX_NOINPUT);
	snprintf(want, sizeof(want), "%s: no keys file; run \"assent keys "
	    "generate\" to make one", path);
	ck_assert_str_eq(err.msg, want);

	ck_assert_int_eq(keys_load(dir, &k, &err), -1);
	ck_assert_int_eq(err.code, EX_NOINPUT);
}
END_TEST

/* ---- malformed files --------------------------------------------------- */

#define PEP   "pepper = \"" P32 "\";\n"
#define KEY1  "keys = ( { id = 1; secret = \"" S32 "\"; } );\n"

static const struct {
	const char *text;
	const char *msg;                /* "FILE" stands for the path */
} bad_cases[] = {
	{ "current = 1;\n" PEP "keys = (\n  { id = 1; secret = \"" S16 "\"; }\n);\n",
	  "FILE:4: keys[0].secret: 16 bytes long; it needs 32 to 64" },
	{ "current = 1;\n" PEP "keys = (\n  { id = 1; secret = \"" S31 "\"; }\n);\n",
	  "FILE:4: keys[0].secret: 31 bytes long; it needs 32 to 64" },
	{ "current = 1;\n" PEP "keys = (\n  { id = 1; secret = \"" S65 "\"; }\n);\n",
	  "FILE:4: keys[0].secret: 65 bytes long; it needs 32 to 64" },
	{ "current = 1;\n" PEP "keys = (\n  { id = 1; secret = \"" S32 "\"; },\n"
	  "  { id = 1; secret = \"" S33 "\"; }\n);\n",
	  "FILE:5: keys[1].id: key id 1 appears twice" },
	{ PEP KEY1, "FILE: current: missing" },
	{ "current = 2;\n" PEP KEY1, "FILE:1: current: no key has id 2" },
	{ "current = \"1\";\n" PEP KEY1, "FILE:1: current: must be an integer" },
	{ "current = 0;\n" PEP KEY1, "FILE:1: current: a key id is from 1 to 255" },
	{ "current = 1;\n" PEP "keys = (\n  { id = 1; secret = \"AAEC*wQF\"; }\n);\n",
	  "FILE:4: keys[0].secret: not valid base64 (or too long)" },
	/* base64url is not this file's alphabet */
	{ "current = 1;\n" PEP "keys = (\n  { id = 1; secret = "
	  "\"AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8-\"; }\n);\n",
	  "FILE:4: keys[0].secret: not valid base64 (or too long)" },
	/* non-canonical: bits under the padding set */
	{ "current = 1;\n" PEP "keys = (\n  { id = 1; secret = "
	  "\"AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh9=\"; }\n);\n",
	  "FILE:4: keys[0].secret: not valid base64 (or too long)" },
	/* padding missing */
	{ "current = 1;\n" PEP "keys = (\n  { id = 1; secret = "
	  "\"AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8\"; }\n);\n",
	  "FILE:4: keys[0].secret: not valid base64 (or too long)" },
	/* padding in the middle */
	{ "current = 1;\n" PEP "keys = (\n  { id = 1; secret = "
	  "\"AA==AwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=\"; }\n);\n",
	  "FILE:4: keys[0].secret: not valid base64 (or too long)" },
	{ "current = 1;\n" PEP "keys = (\n  { id = 1; secret = \"\"; }\n);\n",
	  "FILE:4: keys[0].secret: not valid base64 (or too long)" },
	{ "current = 1;\n" PEP "keys = (\n  { id = 1; secret = 12; }\n);\n",
	  "FILE:4: keys[0].secret: must be a base64 string" },
	{ "current = 1;\n" PEP "keys = (\n  { id = 0; secret = \"" S32 "\"; }\n);\n",
	  "FILE:4: keys[0].id: a key id is from 1 to 255" },
	{ "current = 1;\n" PEP "keys = (\n  { id = 256; secret = \"" S32 "\"; }\n);\n",
	  "FILE:4: keys[0].id: a key id is from 1 to 255" },
	{ "current = 1;\n" PEP "keys = (\n  { id = 4294967297L; secret = \"" S32
	  "\"; }\n);\n",
	  "FILE:4: keys[0].id: a key id is from 1 to 255" },
	{ "current = 1;\n" PEP "keys = (\n  { id = 1.0; secret = \"" S32 "\"; }\n);\n",
	  "FILE:4: keys[0].id: must be an integer" },
	{ "current = 1;\n" PEP "keys = (\n  { secret = \"" S32 "\"; }\n);\n",
	  "FILE:4: keys[0]: no id" },
	{ "current = 1;\n" PEP "keys = (\n  { id = 1; }\n);\n",
	  "FILE:4: keys[0]: no secret" },
	{ "current = 1;\n" PEP "keys = (\n  { id = 1; secret = \"" S32 "\";\n"
	  "    colour = \"red\"; }\n);\n",
	  "FILE:5: keys[0].colour: unknown setting (id, secret, created)" },
	{ "current = 1;\n" PEP "keys = (\n  { id = 1; secret = \"" S32 "\";\n"
	  "    created = \"yesterday\"; }\n);\n",
	  "FILE:5: keys[0].created: not a UTC time like 2026-11-22T16:00:00Z" },
	{ "current = 1;\n" PEP "keys = ( 1, 2 );\n",
	  "FILE:3: keys[0]: must be a group { id = N; secret = \"...\"; }" },
	{ "current = 1;\n" PEP "keys = ();\n", "FILE:3: keys: no key" },
	{ "current = 1;\n" PEP "keys = { id = 1; };\n",
	  "FILE:3: keys: must be a list ( { ... }, ... )" },
	{ "current = 1;\n" PEP, "FILE: keys: missing" },
	{ "current = 1;\n" KEY1, "FILE: pepper: missing" },
	{ "current = 1;\npepper = \"" S16 "\";\n" KEY1,
	  "FILE:2: pepper: 16 bytes long; it needs 32 to 64" },
	{ "current = 1;\npepper = \"not base64\";\n" KEY1,
	  "FILE:2: pepper: not valid base64 (or too long)" },
	{ "current = 1;\n" PEP KEY1 "secret = \"" S32 "\";\n",
	  "FILE:4: secret: unknown setting (current, pepper, keys)" },
	{ "current = 1;\n" PEP "keys = (\n  { id = 1; secret = ; }\n);\n",
	  "FILE:4: syntax error" },
	{ "", "FILE: keys: missing" },
};

static void
expand(const char *msg, char *out, size_t outlen)
{
	const char *file = strstr(msg, "FILE");

	ck_assert_ptr_nonnull(file);
	snprintf(out, outlen, "%.*s%s%s", (int)(file - msg), msg, path, file + 4);
}

START_TEST(test_malformed)
{
	struct assent_err err;
	struct keys *k;
	char want[512];

	write_file(path, bad_cases[_i].text, 0600);
	err_clear(&err);
	ck_assert_int_eq(keys_load(path, &k, &err), -1);
	ck_assert_ptr_null(k);
	ck_assert_int_eq(err.code, EX_CONFIG);
	expand(bad_cases[_i].msg, want, sizeof(want));
	ck_assert_str_eq(err.msg, want);
	/* no secret in any message */
	ck_assert_ptr_null(strstr(err.msg, S32));
	ck_assert_ptr_null(strstr(err.msg, P32));
}
END_TEST

/* Variants that load. */
static const char *const good_cases[] = {
	"current = 1;\n" PEP KEY1,
	"keys = ( { secret = \"" S64 "\"; id = 1; created = "
	"\"2026-11-22T16:00:00Z\"; } );\n" PEP "current = 1;\n",
	"# a comment\ncurrent = 200L;\n" PEP "keys = ( { id = 255; secret = \""
	S32 "\"; }, { id = 200; secret = \"" S33 "\"; } );\n",
	"current = 0x10;\n" PEP "keys = ( { id = 16; secret = \"" S32 "\"; } );\n",
};

START_TEST(test_good)
{
	struct keys *k;

	write_file(path, good_cases[_i], 0600);
	k = load_ok();
	ck_assert_ptr_nonnull(keys_current(k));
	keys_free(k);
}
END_TEST

/* ---- keys_from_memory ---------------------------------------------------- */

START_TEST(test_from_memory)
{
	struct keys_key keys[3];
	unsigned char pepper[KEYS_SECRET_MAX + 1];
	struct assent_err err;
	struct keys *k;

	memset(keys, 0, sizeof(keys));
	memset(pepper, 7, sizeof(pepper));
	for (int i = 0; i < 3; i++) {
		keys[i].id = (uint8_t)(i + 1);
		keys[i].secret_len = KEYS_SECRET_MIN;
	}
	ck_assert_int_eq(keys_from_memory(keys, 3, 2, pepper, 32, &k, &err), 0);
	ck_assert_uint_eq(keys_current(k)->id, 2);
	ck_assert_uint_eq(keys_count(k), 3);
	keys_free(k);

	ck_assert_int_eq(keys_from_memory(keys, 3, 4, pepper, 32, &k, &err), -1);
	ck_assert_str_eq(err.msg, "current: no key has id 4");
	ck_assert_ptr_null(k);
	ck_assert_int_eq(keys_from_memory(keys, 0, 1, pepper, 32, &k, &err), -1);
	ck_assert_int_eq(keys_from_memory(keys, 3, 1, pepper, 31, &k, &err), -1);
	ck_assert_str_eq(err.msg, "pepper: 31 bytes long; it needs 32 to 64");
	ck_assert_int_eq(keys_from_memory(keys, 3, 1, pepper, 65, &k, &err), -1);
	keys[2].id = 1;
	ck_assert_int_eq(keys_from_memory(keys, 3, 1, pepper, 32, &k, &err), -1);
	ck_assert_str_eq(err.msg, "keys[2]: key id 1 appears twice");
	keys[2].id = 0;
	ck_assert_int_eq(keys_from_memory(keys, 3, 1, pepper, 32, &k, &err), -1);
	ck_assert_str_eq(err.msg, "keys[2]: a key id is from 1 to 255");
	keys[2].id = 3;
	keys[2].secret_len = 31;
	ck_assert_int_eq(keys_from_memory(keys, 3, 1, pepper, 32, &k, &err), -1);
	ck_assert_str_eq(err.msg, "keys[2]: 31 bytes long; a secret has 32 to 64");
	ck_assert_int_eq(err.code, EX_CONFIG);
}
END_TEST

static Suite *
keys_suite(void)
{
	Suite *s = suite_create("keys");
	TCase *tc = tcase_create("keys");

	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, test_generate);
	tcase_add_loop_test(tc, test_generate_umask, 0,
	    sizeof(umasks) / sizeof(umasks[0]));
	tcase_add_test(tc, test_generate_fresh);
	tcase_add_test(tc, test_generate_no_dir);
	tcase_add_test(tc, test_rotate);
	tcase_add_test(tc, test_rotate_full);
	tcase_add_test(tc, test_rotate_keeps_order_and_gaps);
	tcase_add_test(tc, test_rotate_refuses);
	tcase_add_test(tc, test_rotate_concurrent);
	tcase_add_test(tc, test_rotate_owner);
	tcase_add_loop_test(tc, test_permissions, 0,
	    sizeof(perm_cases) / sizeof(perm_cases[0]));
	tcase_add_test(tc, test_permissions_of_opened_file);
	tcase_add_test(tc, test_missing);
	tcase_add_loop_test(tc, test_malformed, 0,
	    sizeof(bad_cases) / sizeof(bad_cases[0]));
	tcase_add_loop_test(tc, test_good, 0,
	    sizeof(good_cases) / sizeof(good_cases[0]));
	tcase_add_test(tc, test_from_memory);
	suite_add_tcase(s, tc);
	return s;
}

int
main(void)
{
	return testhelp_run_suite(keys_suite());
}

/* inbound: mail back to the bounce domain (see inbound.h) */
#include <errno.h>
#include <stddef.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "assent/inbound.h"
#include "assent/xmalloc.h"

/* ---- reading the header section ------------------------------------------ */

struct inbound_reader {
	FILE *in;
	size_t total;                   /* header bytes read */
	unsigned long line;
	char *field;                    /* the header being unfolded */
	size_t len, cap;
};

static void
inbound_field_add(struct inbound_reader *rd, const char *s, size_t n)
{
	if (rd->len + n + 1 > rd->cap) {
		rd->cap = (rd->len + n + 1) * 2;
		rd->field = xreallocarray(rd->field, rd->cap, 1);
	}
	memcpy(rd->field + rd->len, s, n);
	rd->len += n;
	rd->field[rd->len] = '\0';
}

/* Keep the first of the headers we look at. */
static void
inbound_keep(struct inbound_headers *h, const char *field)
{
	static const struct {
		const char *name;
		size_t off;
	} wanted[] = {
		{ "delivered-to", offsetof(struct inbound_headers, delivered_to) },
		{ "x-original-to", offsetof(struct inbound_headers, x_original_to) },
		{ "to", offsetof(struct inbound_headers, to) },
	};
	const char *colon = strchr(field, ':');
	size_t namelen = (size_t)(colon - field);

	for (size_t i = 0; i < sizeof(wanted) / sizeof(wanted[0]); i++) {
		char *dst = (char *)h + wanted[i].off;
		const char *v = colon + 1;
		size_t n;

		if (strlen(wanted[i].name) != namelen ||
		    strncasecmp(field, wanted[i].name, namelen) != 0 || dst[0] != '\0')
			continue;
		v += strspn(v, " \t");
		n = strlen(v);
		while (n > 0 && (v[n - 1] == ' ' || v[n - 1] == '\t'))
			n--;
		if (n > INBOUND_VALUE_MAX)
			n = INBOUND_VALUE_MAX;
		memcpy(dst, v, n);
		dst[n] = '\0';
	}
}

/* One physical line (without its line end) into line/len, at most
 * INBOUND_LINE_MAX bytes (a longer one is refused before it is read
 * whole: memory stays bounded whatever comes in); 0 at end of input,
 * -1 on a problem. */
static int
inbound_line(struct inbound_reader *rd, char **line, size_t *len,
    struct assent_err *err)
{
	size_t n;

	*line = xmalloc(INBOUND_LINE_MAX + 2);
	if (fgets(*line, INBOUND_LINE_MAX + 2, rd->in) == NULL) {
		free(*line);
		*line = NULL;
		if (ferror(rd->in))
			return err_set(err, EX_IOERR, "reading the message: %s",
			    strerror(errno));
		return 0;
	}
	/* fgets() stops at a NUL too late to tell: count what it read */
	n = strlen(*line);
	rd->line++;
	if (n == INBOUND_LINE_MAX + 1 && (*line)[n - 1] != '\n')
		return err_set(err, EX_DATAERR, "message line %lu is longer than "
		    "%d bytes", rd->line, INBOUND_LINE_MAX);
	rd->total += n;
	if (rd->total > INBOUND_HEADER_MAX)
		return err_set(err, EX_DATAERR, "message header longer than %d bytes "
		    "(line %lu)", INBOUND_HEADER_MAX, rd->line);
	if ((n == 0 || (*line)[n - 1] != '\n') && !feof(rd->in))
		return err_set(err, EX_DATAERR, "message line %lu holds a NUL byte",
		    rd->line);
	if (n > 0 && (*line)[n - 1] == '\n')
		n--;
	if (n > 0 && (*line)[n - 1] == '\r')
		n--;
	if (memchr(*line, '\r', n) != NULL)
		return err_set(err, EX_DATAERR, "message line %lu holds a bare CR",
		    rd->line);
	(*line)[n] = '\0';
	*len = n;
	return 1;
}

static bool
inbound_is_field_name(const char *s, size_t n)
{
	if (n == 0)
		return false;
	for (size_t i = 0; i < n; i++)
		if ((unsigned char)s[i] <= ' ' || (unsigned char)s[i] > '~')
			return false;
	return true;
}

/* The header section, field by field. */
static int
inbound_fields(struct inbound_reader *rd, struct inbound_headers *h,
    struct assent_err *err)
{
	char *line = NULL;
	size_t len = 0;
	int rc;

	while ((rc = inbound_line(rd, &line, &len, err)) == 1) {
		if (len == 0)
			break;                  /* the end of the header section */
		if (line[0] == ' ' || line[0] == '\t') {
			if (rd->len == 0) {
				rc = err_set(err, EX_DATAERR, "message line %lu continues "
				    "no header", rd->line);
				break;
			}
			inbound_field_add(rd, line, len);
		} else {
			const char *colon = strchr(line, ':');

			if (rd->len > 0)
				inbound_keep(h, rd->field);
			if (colon == NULL || !inbound_is_field_name(line,
			    (size_t)(colon - line))) {
				/* an mbox "From " line may start a message */
				if (rd->line == 1 && strncmp(line, "From ", 5) == 0) {
					rd->len = 0;
					free(line);
					line = NULL;
					continue;
				}
				rc = err_set(err, EX_DATAERR, "message line %lu is not a "
				    "header (no \"name:\")", rd->line);
				break;
			}
			rd->len = 0;
			inbound_field_add(rd, line, len);
		}
		free(line);
		line = NULL;
	}
	if (rc >= 0 && rd->len > 0)
		inbound_keep(h, rd->field);
	free(line);
	return rc < 0 ? -1 : 0;
}

int
inbound_read_headers(FILE *in, struct inbound_headers *h,
    struct assent_err *err)
{
	struct inbound_reader rd = { .in = in };
	char drain[8192];
	int rc;

	memset(h, 0, sizeof(*h));
	rc = inbound_fields(&rd, h, err);
	h->lines = rd.line;
	free(rd.field);
	/* the rest of the message: read, so the MTA's write never fails */
	while (fread(drain, 1, sizeof(drain), in) > 0)
		;
	return rc;
}

/* output: tables for people, JSON for programs */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "assent/xmalloc.h"
#include "cli.h"

void
out_json(const json_t *value)
{
	json_dumpf(value, stdout, JSON_INDENT(2) | JSON_PRESERVE_ORDER |
	    JSON_ENCODE_ANY);
	fputc('\n', stdout);
}

/* Copy s, writing control characters as \xHH so that nothing stored can
 * move the cursor or forge lines on an operator's terminal. */
static char *
out_escape(const char *s)
{
	size_t len = strlen(s), j = 0;
	char *out = xmalloc(4 * len + 1);

	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)s[i];

		if (c < 0x20 || c == 0x7f)
			j += (size_t)sprintf(out + j, "\\x%02x", c);
		else
			out[j++] = (char)c;
	}
	out[j] = '\0';
	return out;
}

char *
out_cell(const json_t *value)
{
	char *text, *escaped;

	if (value == NULL || json_is_null(value))
		return xstrdup("-");
	if (json_is_string(value))
		return out_escape(json_string_value(value));
	if (json_is_true(value))
		return xstrdup("yes");
	if (json_is_false(value))
		return xstrdup("no");
	text = json_dumps(value, JSON_ENCODE_ANY | JSON_COMPACT);
	escaped = out_escape(text != NULL ? text : "?");
	free(text);
	return escaped;
}

/* Display width of UTF-8 text: count the code points. */
static size_t
out_width(const char *s)
{
	size_t w = 0;

	for (; *s != '\0'; s++)
		if (((unsigned char)*s & 0xc0) != 0x80)
			w++;
	return w;
}

static void
out_pad(const char *s, size_t width, bool last)
{
	fputs(s, stdout);
	if (last)
		return;
	for (size_t w = out_width(s); w < width + 2; w++)
		fputc(' ', stdout);
}

void
out_table(const json_t *rows, const struct out_col *cols)
{
	size_t ncols = 0, nrows = json_array_size(rows), *width;
	char **cells;

	while (cols[ncols].key != NULL)
		ncols++;
	if (nrows == 0) {
		printf("(none)\n");
		return;
	}
	width = xcalloc(ncols, sizeof(*width));
	cells = xcalloc(nrows * ncols, sizeof(*cells));
	for (size_t c = 0; c < ncols; c++)
		width[c] = out_width(cols[c].title);
	for (size_t r = 0; r < nrows; r++)
		for (size_t c = 0; c < ncols; c++) {
			cells[r * ncols + c] = out_cell(json_object_get(
			    json_array_get(rows, r), cols[c].key));
			if (out_width(cells[r * ncols + c]) > width[c])
				width[c] = out_width(cells[r * ncols + c]);
		}
	for (size_t c = 0; c < ncols; c++)
		out_pad(cols[c].title, width[c], c + 1 == ncols);
	fputc('\n', stdout);
	for (size_t r = 0; r < nrows; r++) {
		for (size_t c = 0; c < ncols; c++) {
			out_pad(cells[r * ncols + c], width[c], c + 1 == ncols);
			free(cells[r * ncols + c]);
		}
		fputc('\n', stdout);
	}
	free(cells);
	free(width);
}

void
out_fields(const json_t *obj, const struct out_col *cols)
{
	size_t width = 0;

	for (const struct out_col *c = cols; c->key != NULL; c++)
		if (strlen(c->title) > width)
			width = strlen(c->title);
	for (const struct out_col *c = cols; c->key != NULL; c++) {
		char *cell = out_cell(json_object_get(obj, c->key));

		printf("%s:%*s %s\n", c->title, (int)(width - strlen(c->title)), "", cell);
		free(cell);
	}
}

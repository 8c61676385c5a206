/*
 * web_form: a request body read as a form (urlencoded or multipart),
 * through libmicrohttpd's post processor; see assentd.h.
 *
 * The body is read whole before a handler runs and is capped
 * (WEB_BODY_MAX), so every field's value is too: a form is a small
 * table of copies, freed by web_form_free().
 */
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "assent/buf.h"
#include "assent/xmalloc.h"
#include "assentd.h"

/* The post processor's buffer: a field's name, or a part's headers,
 * longer than this make the body no form. */
#define WEB_FORM_BUFFER 1024

struct web_form_reader {
	struct web_form *form;
	bool             over;  /* more fields than a form holds */
};

static enum MHD_Result
web_form_field(void *cls, enum MHD_ValueKind kind, const char *key,
    const char *filename, const char *content_type,
    const char *transfer_encoding, const char *data, uint64_t off,
    size_t size)
{
	struct web_form_reader *rd = cls;
	struct web_form *f = rd->form;
	struct web_field *fd;

	(void)kind;
	(void)content_type;
	(void)transfer_encoding;
	if (key == NULL || filename != NULL)    /* an upload is no field */
		return MHD_YES;
	/* A new field starts at offset 0; later pieces of one go on the
	 * last (MHD hands a field's pieces in order, one field at a time). */
	if (off == 0 || f->n == 0 || strcmp(f->fields[f->n - 1].name, key) != 0) {
		if (f->n == WEB_FORM_FIELDS) {
			rd->over = true;
			return MHD_YES;
		}
		fd = &f->fields[f->n++];
		fd->name = xstrdup(key);
		buf_init(&fd->value);
		buf_add(&fd->value, "", 0);
	}
	fd = &f->fields[f->n - 1];
	if (data != NULL && size > 0)
		buf_add(&fd->value, data, size);
	return MHD_YES;
}

int
web_form_read(struct MHD_Connection *conn, const struct web_request *req,
    struct web_form *form)
{
	struct web_form_reader rd = { .form = form };
	struct MHD_PostProcessor *pp;
	bool ok;

	memset(form, 0, sizeof(*form));
	pp = MHD_create_post_processor(conn, WEB_FORM_BUFFER, web_form_field,
	    &rd);
	if (pp == NULL)
		return -1;
	ok = req->body_len == 0 ||
	    MHD_post_process(pp, req->body, req->body_len) == MHD_YES;
	/* The last urlencoded value may only arrive now. */
	if (MHD_destroy_post_processor(pp) != MHD_YES)
		ok = false;
	/* Every value as a string (buf_add() keeps no NUL of its own). */
	for (size_t i = 0; i < form->n; i++) {
		buf_add(&form->fields[i].value, "", 1);
		form->fields[i].value.len--;
	}
	if (!ok || rd.over) {
		web_form_free(form);
		return -1;
	}
	return 0;
}

const char *
web_form_get(const struct web_form *form, const char *name)
{
	for (size_t i = 0; i < form->n; i++)
		if (strcmp(form->fields[i].name, name) == 0)
			return form->fields[i].value.data;
	return NULL;
}

const char *
web_form_duplicate(const struct web_form *form)
{
	for (size_t i = 1; i < form->n; i++)
		for (size_t k = 0; k < i; k++)
			if (strcmp(form->fields[i].name, form->fields[k].name) == 0)
				return form->fields[i].name;
	return NULL;
}

void
web_form_free(struct web_form *form)
{
	for (size_t i = 0; i < form->n; i++) {
		free(form->fields[i].name);
		buf_free(&form->fields[i].value);
	}
	form->n = 0;
}

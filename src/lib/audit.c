/* audit: append-only records of operators' actions on personal data */
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "assent/audit.h"
#include "assent/db.h"
#include "assent/text.h"
#include "assent/xmalloc.h"

void
audit_actor_local(struct audit_actor *a, const char *operator_name,
    char *host, size_t size)
{
	if (gethostname(host, size) == -1 || host[0] == '\0')
		snprintf(host, size, "unknown");
	host[size - 1] = '\0';
	a->operator_name = operator_name;
	a->host = host;
}

int
audit_append(PGconn *conn, const struct audit_actor *who, const char *action,
    const char *subject, const json_t *detail, struct assent_err *err)
{
	char *text;
	int rc;

	if (text_check_line(who->operator_name, 200, false, "operator", err) == -1 ||
	    text_check_line(who->host, 255, false, "host", err) == -1)
		return -1;
	text = detail != NULL ? json_dumps(detail, JSON_COMPACT) : xstrdup("{}");
	if (text == NULL)
		return err_set(err, EX_SOFTWARE, "audit: detail is not JSON");
	{
		const char *params[] = { who->operator_name, who->host, action,
		    subject, text };

		rc = db_exec(conn, NULL, err, "INSERT INTO audit (operator, host,"
		    " action, subject, detail) VALUES ($1, $2, $3, $4, $5::jsonb)",
		    5, params);
	}
	free(text);
	return rc == -1 ? err_prefix(err, "audit") : 0;
}


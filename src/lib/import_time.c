/* import_time: the dates of an import's options and columns
 * (import_private.h): parsed to microseconds, written for PostgreSQL. */
#include <ctype.h>
#include <stdbool.h>
#include <stdio.h>
#include <time.h>

#include "import_private.h"

static int64_t
import_days_from_civil(int64_t y, int m, int d)
{
	int64_t era, yoe, doy, doe;

	y -= m <= 2;
	era = (y >= 0 ? y : y - 399) / 400;
	yoe = y - era * 400;
	doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
	doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
	return era * 146097 + doe - 719468;
}

static int
import_digits(const char **p, int n, int *v)
{
	*v = 0;
	for (int i = 0; i < n; i++, (*p)++) {
		if (!isdigit((unsigned char)**p))
			return -1;
		*v = *v * 10 + (**p - '0');
	}
	return 0;
}

int
import_time_parse(const char *s, int64_t *us_r)
{
	static const int mdays[] = { 31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31 };
	const char *p = s;
	int y, mo, d, h = 0, mi = 0, sec = 0, oh = 0, om = 0, sign = 1;
	int64_t frac = 0, scale = 100000, us;

	if (import_digits(&p, 4, &y) == -1 || *p++ != '-' ||
	    import_digits(&p, 2, &mo) == -1 || *p++ != '-' ||
	    import_digits(&p, 2, &d) == -1 || mo < 1 || mo > 12 || d < 1 ||
	    d > mdays[mo - 1] || (mo == 2 && d == 29 &&
	    (y % 4 != 0 || (y % 100 == 0 && y % 400 != 0))) || y < 1970)
		return -1;
	if (*p == 'T' || *p == ' ') {
		p++;
		if (import_digits(&p, 2, &h) == -1 || *p++ != ':' ||
		    import_digits(&p, 2, &mi) == -1 || h > 23 || mi > 59)
			return -1;
		bool has_sec = *p == ':';

		if (has_sec && (p++, import_digits(&p, 2, &sec) == -1 || sec > 59))
			return -1;
		/* a fraction only after seconds, and with a digit at least */
		if (*p == '.' && (!has_sec || !isdigit((unsigned char)p[1])))
			return -1;
		if (*p == '.') {
			for (p++; isdigit((unsigned char)*p); p++, scale /= 10)
				frac += scale > 0 ? (*p - '0') * scale : 0;
		}
		if (*p == '+' || *p == '-') {
			sign = *p++ == '-' ? -1 : 1;
			if (import_digits(&p, 2, &oh) == -1 || *p++ != ':' ||
			    import_digits(&p, 2, &om) == -1 || oh > 23 || om > 59)
				return -1;
		} else if (*p++ != 'Z') {
			return -1;
		}
	}
	if (*p != '\0')
		return -1;
	us = ((import_days_from_civil(y, mo, d) * 86400 + h * 3600 + mi * 60 +
	    sec - sign * (oh * 3600 + om * 60)) * 1000000) + frac;
	if (us < 0)
		return -1;      /* before 1970 UTC */
	*us_r = us;
	return 0;
}

void
import_time_text(int64_t us, char out[64])
{
	time_t t = (time_t)(us / 1000000);
	struct tm tm;

	gmtime_r(&t, &tm);
	snprintf(out, 64, "%04d-%02d-%02d %02d:%02d:%02d.%06d+00",
	    tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min,
	    tm.tm_sec, (int)(us % 1000000 + 1000000) % 1000000);
}


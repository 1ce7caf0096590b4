/* A whole CSV file (RFC 4180, libcsv) read into rows of fields. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <csv.h>

#include "firmante/protocol.h"
#include "firmante/util.h"
#include "te-csv.h"

struct reader {
	struct te_csv *csv;
	struct te_csv_row cur;
	size_t max_rows;
	int err;
};

static void row_free(struct te_csv_row *r)
{
	for (size_t i = 0; i < r->n; i++)
		free(r->f[i]);
	free(r->f);
	r->f = NULL;
	r->n = 0;
}

static void on_field(void *s, size_t len, void *data)
{
	struct reader *rd = data;
	if (rd->err)
		return;
	if (rd->cur.n >= TE_CSV_MAX_FIELDS) {
		rd->err = FIRMANTE_E_TOO_LARGE;
		return;
	}
	char **f = realloc(rd->cur.f, (rd->cur.n + 1) * sizeof(*f));
	if (!f) {
		rd->err = FIRMANTE_E_NOMEM;
		return;
	}
	rd->cur.f = f;
	char *v = malloc(len + 1);
	if (!v) {
		rd->err = FIRMANTE_E_NOMEM;
		return;
	}
	if (len)
		memcpy(v, s, len);
	v[len] = '\0';
	f[rd->cur.n++] = v;
}

static void on_row(int c, void *data)
{
	(void)c;
	struct reader *rd = data;
	if (rd->err) {
		row_free(&rd->cur);
		return;
	}
	struct te_csv *csv = rd->csv;
	if (csv->nrows >= rd->max_rows) {
		rd->err = FIRMANTE_E_TOO_LARGE;
		row_free(&rd->cur);
		return;
	}
	struct te_csv_row *rows = realloc(csv->rows, (csv->nrows + 1) * sizeof(*rows));
	if (!rows) {
		rd->err = FIRMANTE_E_NOMEM;
		row_free(&rd->cur);
		return;
	}
	csv->rows = rows;
	rows[csv->nrows++] = rd->cur;
	rd->cur.f = NULL;
	rd->cur.n = 0;
}

/* Keep blanks around unquoted fields: normalization reports them. */
static int no_space(unsigned char c)
{
	(void)c;
	return 0;
}

void te_csv_free(struct te_csv *csv)
{
	if (!csv)
		return;
	for (size_t i = 0; i < csv->nrows; i++)
		row_free(&csv->rows[i]);
	free(csv->rows);
	csv->rows = NULL;
	csv->nrows = 0;
}

int te_csv_read(const char *path, size_t max_bytes, size_t max_rows, struct te_csv *out,
		char *why, size_t why_size)
{
	int rc;
	char *buf = NULL;
	size_t len = 0;
	struct csv_parser p;
	int p_init = 0;
	struct te_csv csv = { 0 };
	struct reader rd = { .csv = &csv, .max_rows = max_rows };

	rc = fm_read_file(path, max_bytes, &buf, &len);
	if (rc) {
		snprintf(why, why_size, "%s", rc == FIRMANTE_E_TOO_LARGE ? "file too large" : "cannot read the file");
		goto out;
	}
	const char *data = buf;
	if (len >= 3 && memcmp(buf, "\xEF\xBB\xBF", 3) == 0) {
		data += 3;
		len -= 3;
	}
	if (csv_init(&p, CSV_STRICT | CSV_STRICT_FINI) != 0) {
		rc = FIRMANTE_E_NOMEM;
		goto out;
	}
	p_init = 1;
	csv_set_space_func(&p, no_space);
	if (csv_parse(&p, data, len, on_field, on_row, &rd) != len ||
	    csv_fini(&p, on_field, on_row, &rd) != 0) {
		snprintf(why, why_size, "malformed CSV: %s", csv_strerror(csv_error(&p)));
		rc = FIRMANTE_E_INVALID;
		goto out;
	}
	if (rd.err) {
		rc = rd.err;
		snprintf(why, why_size, "%s", rc == FIRMANTE_E_TOO_LARGE ? "too many rows or fields" : "out of memory");
		goto out;
	}
	*out = csv;
	memset(&csv, 0, sizeof(csv));
	rc = 0;
out:
	if (p_init)
		csv_free(&p);
	row_free(&rd.cur);
	te_csv_free(&csv);
	free(buf);
	return rc;
}

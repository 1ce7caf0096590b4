/* A whole CSV file (RFC 4180, libcsv) read into rows of fields. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <csv.h>
#include <errno.h>
#include <iconv.h>

#include "firmante/protocol.h"
#include "firmante/util.h"
#include "te-csv.h"

struct reader {
	struct te_csv *csv;
	struct te_csv_row cur;
	size_t max_rows;
	int err;
	int too_many_fields; /* err is FIRMANTE_E_TOO_LARGE for a row's fields */
};

static void row_free(struct te_csv_row *r)
{
	for (size_t i = 0; i < r->n; i++)
		free(r->f[i]);
	free(r->f);
	r->f = NULL;
	r->n = 0;
	r->nul_fields = 0;
}

static void on_field(void *s, size_t len, void *data)
{
	struct reader *rd = data;
	if (rd->err)
		return;
	if (rd->cur.n >= TE_CSV_MAX_FIELDS) {
		rd->err = FIRMANTE_E_TOO_LARGE;
		rd->too_many_fields = 1;
		return;
	}
	char **f = realloc(rd->cur.f, (rd->cur.n + 1) * sizeof(*f));
	if (!f) {
		rd->err = FIRMANTE_E_NOMEM;
		return;
	}
	rd->cur.f = f;
	if (len && memchr(s, '\0', len))
		rd->cur.nul_fields |= 1ull << rd->cur.n;
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
	rd->cur.nul_fields = 0;
}

/* Keep blanks around unquoted fields: normalization reports them. */
static int no_space(unsigned char c)
{
	(void)c;
	return 0;
}

/* Nonzero when @p[0..len) is valid UTF-8 (no overlongs, no surrogates). */
static int utf8_valid(const unsigned char *p, size_t len)
{
	size_t i = 0;
	while (i < len) {
		unsigned char b = p[i];
		size_t k;
		unsigned long cp;
		if (b < 0x80) {
			i++;
			continue;
		} else if ((b & 0xE0) == 0xC0) {
			k = 2;
			cp = b & 0x1F;
		} else if ((b & 0xF0) == 0xE0) {
			k = 3;
			cp = b & 0x0F;
		} else if ((b & 0xF8) == 0xF0) {
			k = 4;
			cp = b & 0x07;
		} else {
			return 0;
		}
		if (i + k > len)
			return 0;
		for (size_t m = 1; m < k; m++) {
			if ((p[i + m] & 0xC0) != 0x80)
				return 0;
			cp = (cp << 6) | (p[i + m] & 0x3F);
		}
		if ((k == 2 && cp < 0x80) || (k == 3 && cp < 0x800) || (k == 4 && cp < 0x10000) ||
		    cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
			return 0;
		i += k;
	}
	return 1;
}

/* Windows-1252 → UTF-8 with iconv. At most 3 output bytes per input byte.
 * Returns 0, FIRMANTE_E_BAD_DOCUMENT (a byte Windows-1252 leaves undefined),
 * FIRMANTE_E_NOMEM. */
static int from_cp1252(const char *in, size_t len, char **out, size_t *out_len, size_t *bad_at)
{
	int rc;
	iconv_t cd = iconv_open("UTF-8", "WINDOWS-1252");
	char *buf = NULL;
	if (cd == (iconv_t)-1)
		return FIRMANTE_E_INTERNAL;
	size_t cap = len * 3 + 1;
	buf = malloc(cap);
	if (!buf) {
		rc = FIRMANTE_E_NOMEM;
		goto out;
	}
	char *ip = (char *)in, *op = buf;
	size_t il = len, ol = cap - 1;
	if (iconv(cd, &ip, &il, &op, &ol) == (size_t)-1) {
		*bad_at = (size_t)(ip - in);
		rc = FIRMANTE_E_BAD_DOCUMENT;
		goto out;
	}
	*op = '\0';
	*out_len = (size_t)(op - buf);
	*out = buf;
	buf = NULL;
	rc = 0;
out:
	free(buf);
	iconv_close(cd);
	return rc;
}

/* ',' or ';': whichever occurs more often outside quotes in the first
 * record; ',' on a tie. */
static char detect_delim(const char *p, size_t len)
{
	size_t commas = 0, semis = 0;
	int q = 0;
	for (size_t i = 0; i < len; i++) {
		if (p[i] == '"')
			q = !q;
		else if (!q && (p[i] == '\n' || p[i] == '\r'))
			break;
		else if (!q && p[i] == ',')
			commas++;
		else if (!q && p[i] == ';')
			semis++;
	}
	return semis > commas ? ';' : ',';
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

/* 1-based line of byte @off of @p. */
static unsigned long line_of(const char *p, size_t off)
{
	unsigned long line = 1;
	for (size_t i = 0; i < off; i++)
		if (p[i] == '\n')
			line++;
	return line;
}

/* A file that is UTF-16 (BOM, or NUL bytes between most characters) rather
 * than text holding a stray NUL byte. */
static int looks_utf16(const char *p, size_t len)
{
	if (len >= 2 && ((unsigned char)p[0] == 0xFF && (unsigned char)p[1] == 0xFE))
		return 1;
	if (len >= 2 && ((unsigned char)p[0] == 0xFE && (unsigned char)p[1] == 0xFF))
		return 1;
	size_t n = len < 4096 ? len : 4096, nul = 0;
	for (size_t i = 0; i < n; i++)
		nul += p[i] == '\0';
	return nul * 8 > n; /* more than one byte in eight */
}

int te_csv_read(const char *path, size_t max_bytes, size_t max_rows, unsigned flags,
		struct te_csv *out, char *why, size_t why_size)
{
	return te_csv_read_at(path, max_bytes, max_rows, flags, out, why, why_size, NULL);
}

int te_csv_read_at(const char *path, size_t max_bytes, size_t max_rows, unsigned flags,
		   struct te_csv *out, char *why, size_t why_size, struct te_csv_where *where)
{
	int rc;
	char *buf = NULL, *conv = NULL;
	size_t len = 0;
	struct csv_parser p;
	int p_init = 0;
	struct te_csv csv = { 0 };
	struct reader rd = { .csv = &csv, .max_rows = max_rows };
	struct te_csv_where at = { 0, 0 };

	errno = 0;
	rc = fm_read_file(path, max_bytes, &buf, &len);
	if (rc == FIRMANTE_E_TOO_LARGE) {
		snprintf(why, why_size, "the file is larger than %zu MiB, the most one CSV file may be; "
			 "split it into several files", max_bytes >> 20);
		goto out;
	}
	if (rc == FIRMANTE_E_IO) {
		if (errno == EINVAL)
			snprintf(why, why_size, "cannot read the file: it is a directory or not a regular file");
		else
			snprintf(why, why_size, "cannot read the file: %s",
				 errno ? strerror(errno) : "read error");
		goto out;
	}
	if (rc)
		goto out;
	const char *data = buf;
	if (len >= 3 && memcmp(buf, "\xEF\xBB\xBF", 3) == 0) {
		data += 3;
		len -= 3;
	}
	if (memchr(data, '\0', len) && (!(flags & TE_CSV_DETECT) || looks_utf16(data, len))) {
		snprintf(why, why_size, "the file holds NUL bytes between its characters: it is not "
			 "a text CSV export (UTF-16 \"Unicode text\", or a spreadsheet file); save it "
			 "again as \"CSV UTF-8\"");
		rc = FIRMANTE_E_BAD_DOCUMENT;
		goto out;
	}
	if (!utf8_valid((const unsigned char *)data, len)) {
		size_t bad = 0;
		if (!(flags & TE_CSV_DETECT)) {
			snprintf(why, why_size, "the file is not UTF-8");
			rc = FIRMANTE_E_BAD_DOCUMENT;
			goto out;
		}
		rc = from_cp1252(data, len, &conv, &len, &bad);
		if (rc == FIRMANTE_E_BAD_DOCUMENT) {
			snprintf(why, why_size,
				 "the file is neither UTF-8 nor Windows-1252: line %lu holds byte "
				 "0x%02X, which neither encoding uses there (a file pasted together "
				 "from exports in different encodings?); save it again as \"CSV UTF-8\"",
				 line_of(data, bad), (unsigned)(unsigned char)data[bad]);
			goto out;
		}
		if (rc) {
			snprintf(why, why_size, "cannot convert the file from Windows-1252");
			goto out;
		}
		data = conv;
		csv.converted = 1;
	}
	csv.delim = (flags & TE_CSV_DETECT) ? detect_delim(data, len) : ',';
	if (csv_init(&p, CSV_STRICT | CSV_STRICT_FINI) != 0) {
		rc = FIRMANTE_E_NOMEM;
		goto out;
	}
	p_init = 1;
	csv_set_space_func(&p, no_space);
	csv_set_delim(&p, (unsigned char)csv.delim);
	size_t done = csv_parse(&p, data, len, on_field, on_row, &rd);
	if (!rd.err && done != len) {
		at.row = csv.nrows + 1;
		at.column = rd.cur.n + 1;
		snprintf(why, why_size,
			 "malformed CSV at row %lu, field %lu (line %lu): a quote (\") inside a "
			 "field that does not start with one, or text right after a closing "
			 "quote; put the whole field in quotes and write a quote inside it as \"\"",
			 at.row, at.column, line_of(data, done));
		rc = FIRMANTE_E_INVALID;
		goto out;
	}
	if (!rd.err && csv_fini(&p, on_field, on_row, &rd) != 0) {
		at.row = csv.nrows + 1;
		at.column = rd.cur.n + 1;
		snprintf(why, why_size,
			 "malformed CSV at row %lu, field %lu: the field opens a quote (\") that is "
			 "never closed, so the rest of the file was read as part of it",
			 at.row, at.column);
		rc = FIRMANTE_E_INVALID;
		goto out;
	}
	if (rd.err) {
		rc = rd.err;
		if (rc == FIRMANTE_E_TOO_LARGE && rd.too_many_fields) {
			at.row = csv.nrows + 1;
			at.column = TE_CSV_MAX_FIELDS + 1;
			snprintf(why, why_size, "row %lu has more than %d fields, the most a row may "
				 "have", at.row, TE_CSV_MAX_FIELDS);
		} else if (rc == FIRMANTE_E_TOO_LARGE) {
			at.row = csv.nrows + 1;
			snprintf(why, why_size, "the file has more than %zu rows (header included), the "
				 "most one CSV file may have; split it into several files", max_rows);
		} else {
			snprintf(why, why_size, "out of memory");
		}
		goto out;
	}
	*out = csv;
	memset(&csv, 0, sizeof(csv));
	rc = 0;
out:
	if (rc && where)
		*where = at;
	if (p_init)
		csv_free(&p);
	row_free(&rd.cur);
	te_csv_free(&csv);
	free(conv);
	free(buf);
	return rc;
}

/* CSV files (RFC 4180, libcsv) read in chunks, record by record. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <csv.h>
#include <errno.h>
#include <fcntl.h>
#include <iconv.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/evp.h>

#include "firmante/protocol.h"
#include "firmante/util.h"
#include "te-csv.h"

struct reader {
	struct te_csv_row cur;
	size_t max_rows;
	unsigned long records;
	te_csv_row_fn fn;
	void *ctx;
	int err;
	int too_many_fields; /* err is FIRMANTE_E_TOO_LARGE for a row's fields */
	int stopped;         /* err is the callback's */
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
	if (rd->records >= rd->max_rows) {
		rd->err = FIRMANTE_E_TOO_LARGE;
		row_free(&rd->cur);
		return;
	}
	rd->records++;
	int rc = rd->fn(rd->ctx, rd->records, &rd->cur);
	row_free(&rd->cur);
	if (rc) {
		rd->err = rc;
		rd->stopped = 1;
	}
}

/* Keep blanks around unquoted fields: normalization reports them. */
static int no_space(unsigned char c)
{
	(void)c;
	return 0;
}

/* Checks @p[0..len) as UTF-8 (no overlongs, no surrogates). Returns the
 * number of bytes of complete, valid sequences: at most 3 bytes less than
 * @len when the text ends inside a sequence that may continue in the next
 * chunk; (size_t)-1 when the bytes are not UTF-8. */
static size_t utf8_prefix(const unsigned char *p, size_t len)
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
			return (size_t)-1;
		}
		if (i + k > len) {
			for (size_t m = i + 1; m < len; m++)
				if ((p[m] & 0xC0) != 0x80)
					return (size_t)-1;
			return i;
		}
		for (size_t m = 1; m < k; m++) {
			if ((p[i + m] & 0xC0) != 0x80)
				return (size_t)-1;
			cp = (cp << 6) | (p[i + m] & 0x3F);
		}
		if ((k == 2 && cp < 0x80) || (k == 3 && cp < 0x800) || (k == 4 && cp < 0x10000) ||
		    cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
			return (size_t)-1;
		i += k;
	}
	return i;
}

/* Windows-1252 → UTF-8 with iconv (@cd), one chunk: at most 3 output bytes
 * per input byte, so @out holds 3 × @len. Windows-1252 has one byte per
 * character: a chunk never ends inside one. Returns 0 and the output length
 * in @out_len, or FIRMANTE_E_BAD_DOCUMENT with the offset of the first byte
 * Windows-1252 leaves undefined in @bad_at. */
static int from_cp1252(iconv_t cd, const char *in, size_t len, char *out, size_t *out_len,
		       size_t *bad_at)
{
	char *ip = (char *)in, *op = out;
	size_t il = len, ol = 3 * len;
	if (iconv(cd, &ip, &il, &op, &ol) == (size_t)-1) {
		*bad_at = (size_t)(ip - in);
		return FIRMANTE_E_BAD_DOCUMENT;
	}
	*out_len = (size_t)(op - out);
	return 0;
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

/* Line feeds in @p[0..off). */
static unsigned long newlines(const char *p, size_t off)
{
	unsigned long n = 0;
	for (const char *q = p, *e = p + off; (q = memchr(q, '\n', (size_t)(e - q))) != NULL; q++)
		n++;
	return n;
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

/* read(2) until @size bytes or the end of the file; bytes read, or -1. */
static ssize_t read_full(int fd, char *buf, size_t size)
{
	size_t got = 0;
	while (got < size) {
		ssize_t r = read(fd, buf + got, size - got);
		if (r < 0) {
			if (errno == EINTR)
				continue;
			return -1;
		}
		if (r == 0)
			break;
		got += (size_t)r;
	}
	return (ssize_t)got;
}

/* What the first reading learned. */
struct scan {
	size_t total;            /* bytes of the file */
	int bom;                 /* starts with a UTF-8 BOM */
	int utf8;                /* valid UTF-8 throughout */
	char delim;
	unsigned char digest[32];
};

static const char bom_bytes[] = "\xEF\xBB\xBF";

/* The first reading: size, NUL bytes, encoding, delimiter, digest. */
static int scan_file(int fd, size_t max_bytes, unsigned flags, char *buf, struct scan *sc,
		     char *why, size_t why_size)
{
	int rc = FIRMANTE_E_IO;
	EVP_MD_CTX *md = EVP_MD_CTX_new();
	char head[4096];
	size_t head_len = 0, carry = 0;
	int any_nul = 0, first = 1;
	if (!md || !EVP_DigestInit_ex(md, EVP_sha256(), NULL)) {
		rc = FIRMANTE_E_NOMEM;
		snprintf(why, why_size, "out of memory");
		goto out;
	}
	sc->utf8 = 1;
	for (;;) {
		/* buf holds @carry bytes of an unfinished UTF-8 sequence */
		ssize_t r = read_full(fd, buf + carry, TE_CSV_CHUNK);
		if (r < 0) {
			snprintf(why, why_size, "cannot read the file: %s", strerror(errno));
			goto out;
		}
		if (r == 0 && !first) {
			if (carry)
				sc->utf8 = 0; /* the file ends inside a sequence */
			break;
		}
		EVP_DigestUpdate(md, buf + carry, (size_t)r);
		sc->total += (size_t)r;
		if (sc->total > max_bytes) {
			snprintf(why, why_size, "the file is larger than %zu MiB, the most one CSV "
				 "file may be; split it into several files", max_bytes >> 20);
			rc = FIRMANTE_E_TOO_LARGE;
			goto out;
		}
		char *data = buf + carry;
		size_t len = (size_t)r;
		if (first) {
			if (len >= 3 && memcmp(data, bom_bytes, 3) == 0) {
				sc->bom = 1;
				data += 3;
				len -= 3;
			}
			sc->delim = (flags & TE_CSV_DETECT) ? detect_delim(data, len) : ',';
		}
		if (head_len < sizeof(head)) {
			size_t k = len < sizeof(head) - head_len ? len : sizeof(head) - head_len;
			memcpy(head + head_len, data, k);
			head_len += k;
		}
		if (memchr(data, '\0', len))
			any_nul = 1;
		if (sc->utf8) {
			size_t all = carry + len;
			if (first && sc->bom) {
				memmove(buf, data, len);
				all = len;
			}
			size_t ok = utf8_prefix((const unsigned char *)buf, all);
			if (ok == (size_t)-1 || (r == 0 && ok != all)) {
				sc->utf8 = 0;
				carry = 0;
			} else {
				carry = all - ok;
				memmove(buf, buf + ok, carry);
			}
		}
		first = 0;
		if (r == 0 || (size_t)r < TE_CSV_CHUNK) {
			if (sc->utf8 && carry)
				sc->utf8 = 0; /* the file ends inside a sequence */
			break;
		}
	}
	if (any_nul && (!(flags & TE_CSV_DETECT) || looks_utf16(head, head_len))) {
		snprintf(why, why_size, "the file holds NUL bytes between its characters: it is not "
			 "a text CSV export (UTF-16 \"Unicode text\", or a spreadsheet file); save it "
			 "again as \"CSV UTF-8\"");
		rc = FIRMANTE_E_BAD_DOCUMENT;
		goto out;
	}
	if (!sc->utf8 && !(flags & TE_CSV_DETECT)) {
		snprintf(why, why_size, "the file is not UTF-8");
		rc = FIRMANTE_E_BAD_DOCUMENT;
		goto out;
	}
	unsigned int dl = 0;
	if (!EVP_DigestFinal_ex(md, sc->digest, &dl)) {
		rc = FIRMANTE_E_INTERNAL;
		goto out;
	}
	rc = 0;
out:
	EVP_MD_CTX_free(md);
	return rc;
}

/* A Windows-1252 file: every byte must be one Windows-1252 defines. */
static int check_cp1252(int fd, const struct scan *sc, iconv_t cd, char *buf, char *conv,
			char *why, size_t why_size)
{
	unsigned long lines = 1;
	int first = 1;
	if (lseek(fd, 0, SEEK_SET) != 0) {
		snprintf(why, why_size, "cannot read the file: %s", strerror(errno));
		return FIRMANTE_E_IO;
	}
	for (;;) {
		ssize_t r = read_full(fd, buf, TE_CSV_CHUNK);
		if (r < 0) {
			snprintf(why, why_size, "cannot read the file: %s", strerror(errno));
			return FIRMANTE_E_IO;
		}
		char *data = buf;
		size_t len = (size_t)r, bad = 0, out = 0;
		if (first && sc->bom && len >= 3) {
			data += 3;
			len -= 3;
		}
		first = 0;
		if (from_cp1252(cd, data, len, conv, &out, &bad) != 0) {
			snprintf(why, why_size,
				 "the file is neither UTF-8 nor Windows-1252: line %lu holds byte "
				 "0x%02X, which neither encoding uses there (a file pasted together "
				 "from exports in different encodings?); save it again as \"CSV UTF-8\"",
				 lines + newlines(data, bad), (unsigned)(unsigned char)data[bad]);
			return FIRMANTE_E_BAD_DOCUMENT;
		}
		lines += newlines(data, len);
		if ((size_t)r < TE_CSV_CHUNK)
			return 0;
	}
}

int te_csv_each(const char *path, size_t max_bytes, size_t max_rows, unsigned flags,
		te_csv_row_fn fn, void *ctx, struct te_csv_info *info, char *why,
		size_t why_size, struct te_csv_where *where)
{
	int rc = FIRMANTE_E_IO;
	char *buf = NULL, *conv = NULL;
	iconv_t cd = (iconv_t)-1;
	EVP_MD_CTX *md = NULL;
	struct csv_parser p;
	int p_init = 0;
	struct reader rd = { .max_rows = max_rows, .fn = fn, .ctx = ctx };
	struct te_csv_where at = { 0, 0 };
	struct scan sc = { 0 };
	unsigned long lines = 1; /* line feeds of the chunks parsed so far, + 1 */
	size_t total = 0;

	why[0] = '\0';
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		snprintf(why, why_size, "cannot read the file: %s", strerror(errno));
		return FIRMANTE_E_IO;
	}
	struct stat st;
	if (fstat(fd, &st) != 0) {
		snprintf(why, why_size, "cannot read the file: %s", strerror(errno));
		goto out;
	}
	if (!S_ISREG(st.st_mode)) {
		snprintf(why, why_size, "cannot read the file: it is a directory or not a regular file");
		goto out;
	}
	buf = malloc(TE_CSV_CHUNK + 4);
	if (!buf) {
		rc = FIRMANTE_E_NOMEM;
		snprintf(why, why_size, "out of memory");
		goto out;
	}
	rc = scan_file(fd, max_bytes, flags, buf, &sc, why, why_size);
	if (rc)
		goto out;
	if (!sc.utf8) {
		cd = iconv_open("UTF-8", "WINDOWS-1252");
		conv = malloc(3 * (size_t)TE_CSV_CHUNK + 1);
		if (cd == (iconv_t)-1 || !conv) {
			rc = conv ? FIRMANTE_E_INTERNAL : FIRMANTE_E_NOMEM;
			snprintf(why, why_size, "cannot convert the file from Windows-1252");
			goto out;
		}
		rc = check_cp1252(fd, &sc, cd, buf, conv, why, why_size);
		if (rc)
			goto out;
	}
	if (info) {
		info->converted = !sc.utf8;
		info->delim = sc.delim;
		memcpy(info->digest, sc.digest, sizeof(sc.digest));
	}
	md = EVP_MD_CTX_new();
	if (!md || !EVP_DigestInit_ex(md, EVP_sha256(), NULL) || csv_init(&p, CSV_STRICT | CSV_STRICT_FINI) != 0) {
		rc = FIRMANTE_E_NOMEM;
		snprintf(why, why_size, "out of memory");
		goto out;
	}
	p_init = 1;
	csv_set_space_func(&p, no_space);
	csv_set_delim(&p, (unsigned char)sc.delim);
	if (lseek(fd, 0, SEEK_SET) != 0) {
		rc = FIRMANTE_E_IO;
		snprintf(why, why_size, "cannot read the file: %s", strerror(errno));
		goto out;
	}
	for (int first = 1;; first = 0) {
		ssize_t r = read_full(fd, buf, TE_CSV_CHUNK);
		if (r < 0) {
			rc = FIRMANTE_E_IO;
			snprintf(why, why_size, "cannot read the file: %s", strerror(errno));
			goto out;
		}
		EVP_DigestUpdate(md, buf, (size_t)r);
		total += (size_t)r;
		if (total > sc.total)
			break; /* grew: reported below */
		char *data = buf;
		size_t len = (size_t)r;
		if (first && sc.bom && len >= 3) {
			data += 3;
			len -= 3;
		}
		if (cd != (iconv_t)-1) {
			size_t bad = 0, out = 0;
			if (from_cp1252(cd, data, len, conv, &out, &bad) != 0)
				break; /* changed since it was checked: reported below */
			data = conv;
			len = out;
		}
		size_t done = csv_parse(&p, data, len, on_field, on_row, &rd);
		if (rd.err)
			break;
		if (done != len) {
			at.row = rd.records + 1;
			at.column = rd.cur.n + 1;
			snprintf(why, why_size,
				 "malformed CSV at row %lu, field %lu (line %lu): a quote (\") inside a "
				 "field that does not start with one, or text right after a closing "
				 "quote; put the whole field in quotes and write a quote inside it as \"\"",
				 at.row, at.column, lines + newlines(data, done));
			rc = FIRMANTE_E_INVALID;
			goto out;
		}
		lines += newlines(data, len);
		if ((size_t)r < TE_CSV_CHUNK)
			break;
	}
	if (!rd.err) {
		unsigned char d2[32];
		unsigned int dl = 0;
		if (total != sc.total || !EVP_DigestFinal_ex(md, d2, &dl) ||
		    memcmp(d2, sc.digest, sizeof(d2)) != 0) {
			snprintf(why, why_size, "the file changed while it was read; read it again "
				 "once it is saved");
			rc = FIRMANTE_E_IO;
			goto out;
		}
	}
	if (!rd.err && csv_fini(&p, on_field, on_row, &rd) != 0) {
		at.row = rd.records + 1;
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
		if (rd.stopped) {
			/* the callback's own error */
		} else if (rc == FIRMANTE_E_TOO_LARGE && rd.too_many_fields) {
			at.row = rd.records + 1;
			at.column = TE_CSV_MAX_FIELDS + 1;
			snprintf(why, why_size, "row %lu has more than %d fields, the most a row may "
				 "have", at.row, TE_CSV_MAX_FIELDS);
		} else if (rc == FIRMANTE_E_TOO_LARGE) {
			at.row = rd.records + 1;
			snprintf(why, why_size, "the file has more than %zu rows (header included), the "
				 "most one CSV file may have; split it into several files", max_rows);
		} else {
			snprintf(why, why_size, "out of memory");
		}
		goto out;
	}
	if (info)
		info->records = rd.records;
	rc = 0;
out:
	if (rc && where)
		*where = at;
	if (p_init)
		csv_free(&p);
	row_free(&rd.cur);
	if (cd != (iconv_t)-1)
		iconv_close(cd);
	EVP_MD_CTX_free(md);
	free(conv);
	free(buf);
	close(fd);
	return rc;
}

/* te_csv_read_at()'s callback: keep every record. */
static int keep_row(void *ctx, unsigned long record, struct te_csv_row *row)
{
	(void)record;
	struct te_csv *csv = ctx;
	struct te_csv_row *rows = realloc(csv->rows, (csv->nrows + 1) * sizeof(*rows));
	if (!rows)
		return FIRMANTE_E_NOMEM;
	csv->rows = rows;
	rows[csv->nrows++] = *row;
	row->f = NULL;
	row->n = 0;
	row->nul_fields = 0;
	return 0;
}

int te_csv_read(const char *path, size_t max_bytes, size_t max_rows, unsigned flags,
		struct te_csv *out, char *why, size_t why_size)
{
	return te_csv_read_at(path, max_bytes, max_rows, flags, out, why, why_size, NULL);
}

int te_csv_read_at(const char *path, size_t max_bytes, size_t max_rows, unsigned flags,
		   struct te_csv *out, char *why, size_t why_size, struct te_csv_where *where)
{
	struct te_csv csv = { 0 };
	struct te_csv_info info = { 0 };
	int rc = te_csv_each(path, max_bytes, max_rows, flags, keep_row, &csv, &info, why,
			     why_size, where);
	if (rc) {
		if (rc == FIRMANTE_E_NOMEM)
			snprintf(why, why_size, "out of memory");
		te_csv_free(&csv);
		return rc;
	}
	csv.converted = info.converted;
	csv.delim = info.delim;
	*out = csv;
	return 0;
}

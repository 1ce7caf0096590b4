/*
 * The MET result report (descargaTituloElectronico): a ZIP holding
 * ResultadoCargaTitulos<numeroLote>.xls, read with FreeXL by column name.
 * See met.h and ../shared/spec/met-web-service.md §6.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <freexl.h>
#include <zip.h>

#include "firmante/protocol.h"
#include "firmante/util.h"
#include "met.h"

#define MAX_XLS_BYTES (64u * 1024u * 1024u)

__attribute__((format(printf, 3, 4)))
static int fail(struct met_error *err, int code, const char *fmt, ...)
{
	if (err) {
		va_list ap;
		va_start(ap, fmt);
		err->code = code;
		vsnprintf(err->message, sizeof(err->message), fmt, ap);
		va_end(ap);
	}
	return code;
}

/* Cell as text ("" for empty); numbers in %g. */
static void cell_text(const FreeXL_CellValue *v, char *dst, size_t size)
{
	switch (v->type) {
	case FREEXL_CELL_INT: snprintf(dst, size, "%d", v->value.int_value); break;
	case FREEXL_CELL_DOUBLE: snprintf(dst, size, "%.15g", v->value.double_value); break;
	case FREEXL_CELL_TEXT:
	case FREEXL_CELL_SST_TEXT:
	case FREEXL_CELL_DATE:
	case FREEXL_CELL_DATETIME:
	case FREEXL_CELL_TIME:
		fm_trim_copy(dst, size, v->value.text_value ? v->value.text_value : "",
			     v->value.text_value ? strlen(v->value.text_value) : 0);
		break;
	default: dst[0] = '\0';
	}
}

/*
 * The DGP's result workbook declares in its DIMENSIONS record (BIFF8,
 * id 0x0200) a last column one lower than the cells it holds (the real
 * met-result-lote257945.xls says 3 columns and fills 4). FreeXL refuses
 * cells outside the declared area and gives no handle. This writes a
 * private copy whose DIMENSIONS last column (exclusive) is one higher,
 * as the format defines it, for FreeXL to read. Returns 0 or -1.
 */
static int widen_dimensions(const char *path, char *tmpl)
{
	char *data = NULL;
	size_t len = 0;
	int fd = -1, rc = -1, patched = 0;
	if (fm_read_file(path, MAX_XLS_BYTES, &data, &len) != 0)
		return -1;
	for (size_t i = 0; i + 18 <= len; i++) {
		unsigned char *r = (unsigned char *)data + i;
		if (r[0] != 0x00 || r[1] != 0x02 || r[2] != 0x0e || r[3] != 0x00)
			continue;
		uint32_t rw_first = r[4] | r[5] << 8 | (uint32_t)r[6] << 16 | (uint32_t)r[7] << 24;
		uint32_t rw_last = r[8] | r[9] << 8 | (uint32_t)r[10] << 16 | (uint32_t)r[11] << 24;
		unsigned col_first = r[12] | r[13] << 8, col_last = r[14] | r[15] << 8;
		unsigned reserved = r[16] | r[17] << 8;
		if (rw_first > rw_last || rw_last > 65536 || col_first > col_last || col_last >= 256 ||
		    reserved != 0)
			continue;
		col_last++;
		r[14] = (unsigned char)(col_last & 0xff);
		r[15] = (unsigned char)(col_last >> 8);
		patched = 1;
	}
	if (!patched)
		goto out;
	fd = mkstemp(tmpl);
	if (fd < 0)
		goto out;
	size_t off = 0;
	while (off < len) {
		ssize_t w = write(fd, data + off, len - off);
		if (w <= 0)
			goto out;
		off += (size_t)w;
	}
	rc = 0;
out:
	if (fd >= 0)
		close(fd);
	if (rc != 0 && fd >= 0)
		unlink(tmpl);
	free(data);
	return rc;
}

int met_result_read_xls(const char *xls_path, struct met_result_row **rows, size_t *n,
			struct met_error *err)
{
	const void *h = NULL;
	struct met_result_row *out = NULL;
	int rc;
	unsigned int sheets = 0, nrows = 0;
	unsigned short ncols = 0;
	int sheet = -1;
	char widened[] = "/tmp/titulos-resultado-XXXXXX";
	int have_widened = 0;
	if (freexl_open(xls_path, &h) != FREEXL_OK || !h) {
		if (h)
			freexl_close(h);
		h = NULL;
		if (widen_dimensions(xls_path, widened) == 0) {
			have_widened = 1;
			if (freexl_open(widened, &h) != FREEXL_OK) {
				/* FreeXL may hand back a half-built handle with
				 * an error: close it as after the first try. */
				if (h)
					freexl_close(h);
				h = NULL;
			}
		}
	}
	if (!h) {
		rc = fail(err, FIRMANTE_E_INVALID, "%s: not a legacy Excel (.xls) workbook", xls_path);
		goto out;
	}
	if (freexl_get_info(h, FREEXL_BIFF_SHEET_COUNT, &sheets) != FREEXL_OK)
		sheets = 0;
	for (unsigned int i = 0; i < sheets && i < 64; i++) {
		const char *name = NULL;
		if (freexl_get_worksheet_name(h, (unsigned short)i, &name) == FREEXL_OK && name &&
		    strcmp(name, "Resultado") == 0)
			sheet = (int)i;
	}
	if (sheet < 0) {
		rc = fail(err, FIRMANTE_E_INVALID, "%s: no sheet named Resultado", xls_path);
		goto out;
	}
	if (freexl_select_active_worksheet(h, (unsigned short)sheet) != FREEXL_OK ||
	    freexl_worksheet_dimensions(h, &nrows, &ncols) != FREEXL_OK || nrows < 1) {
		rc = fail(err, FIRMANTE_E_INVALID, "%s: the Resultado sheet is empty", xls_path);
		goto out;
	}
	if (nrows - 1 > MET_MAX_RESULT_ROWS) {
		rc = fail(err, FIRMANTE_E_TOO_LARGE, "%s: more than %u result rows", xls_path,
			  MET_MAX_RESULT_ROWS);
		goto out;
	}
	static const char *const names[4] = { "ARCHIVO", "ESTATUS", "DESCRIPCION",
					      "FOLIO CONTROL" };
	int col[4] = { -1, -1, -1, -1 };
	for (unsigned short c = 0; c < ncols && c < 256; c++) {
		FreeXL_CellValue v;
		char t[128];
		if (freexl_get_cell_value(h, 0, c, &v) != FREEXL_OK)
			continue;
		cell_text(&v, t, sizeof(t));
		for (int k = 0; k < 4; k++)
			if (strcmp(t, names[k]) == 0 && col[k] < 0)
				col[k] = c;
	}
	for (int k = 0; k < 4; k++)
		if (col[k] < 0) {
			rc = fail(err, FIRMANTE_E_INVALID, "%s: no column headed %s in row 1",
				  xls_path, names[k]);
			goto out;
		}
	out = calloc(nrows > 1 ? nrows - 1 : 1, sizeof(*out));
	if (!out) {
		rc = fail(err, FIRMANTE_E_NOMEM, "out of memory");
		goto out;
	}
	size_t k = 0;
	for (unsigned int r = 1; r < nrows; r++) {
		FreeXL_CellValue v[4];
		int empty = 1;
		for (int c = 0; c < 4; c++) {
			if (freexl_get_cell_value(h, r, (unsigned short)col[c], &v[c]) != FREEXL_OK)
				v[c].type = FREEXL_CELL_NULL;
			if (v[c].type != FREEXL_CELL_NULL)
				empty = 0;
		}
		if (empty)
			continue;
		struct met_result_row *row = &out[k];
		cell_text(&v[0], row->archivo, sizeof(row->archivo));
		cell_text(&v[2], row->descripcion, sizeof(row->descripcion));
		cell_text(&v[3], row->folio, sizeof(row->folio));
		double e = v[1].type == FREEXL_CELL_INT      ? v[1].value.int_value
			   : v[1].type == FREEXL_CELL_DOUBLE ? v[1].value.double_value
							     : -1;
		if (e != 1.0 && e != 2.0) {
			rc = fail(err, FIRMANTE_E_INVALID, "%s: row %u: ESTATUS is not the number 1 "
							   "or 2", xls_path, r + 1);
			goto out;
		}
		row->estatus = (int)e;
		k++;
	}
	*rows = out;
	*n = k;
	out = NULL;
	rc = 0;
out:
	free(out);
	if (h)
		freexl_close(h);
	if (have_widened)
		unlink(widened);
	return rc;
}

int met_result_read_zip(const uint8_t *zip, size_t len, const char *numero,
			struct met_result_row **rows, size_t *n, struct met_error *err)
{
	int rc;
	zip_error_t ze;
	zip_source_t *src = NULL;
	zip_t *z = NULL;
	zip_file_t *zf = NULL;
	char *data = NULL;
	char tmpl[] = "/tmp/titulos-resultado-XXXXXX";
	int fd = -1;
	zip_error_init(&ze);
	src = zip_source_buffer_create(zip, len, 0, &ze);
	z = src ? zip_open_from_source(src, ZIP_RDONLY | ZIP_CHECKCONS, &ze) : NULL;
	if (!z) {
		zip_source_free(src);
		rc = fail(err, FIRMANTE_E_INVALID, "the result of the lot is not a ZIP archive: %s",
			  zip_error_strerror(&ze));
		goto out;
	}
	if (zip_get_num_entries(z, 0) != 1) {
		rc = fail(err, FIRMANTE_E_INVALID, "the result ZIP holds %lld files, expected one "
						   ".xls", (long long)zip_get_num_entries(z, 0));
		goto out;
	}
	zip_stat_t zs;
	if (zip_stat_index(z, 0, 0, &zs) != 0 || !(zs.valid & ZIP_STAT_SIZE)) {
		rc = fail(err, FIRMANTE_E_INVALID, "the result ZIP cannot be listed");
		goto out;
	}
	if (numero) {
		char want[96];
		snprintf(want, sizeof(want), "ResultadoCargaTitulos%s.xls", numero);
		if (strcmp(zs.name, want) != 0) {
			rc = fail(err, FIRMANTE_E_INVALID, "the result ZIP holds %s, expected %s",
				  zs.name, want);
			goto out;
		}
	}
	if (zs.size > MAX_XLS_BYTES) {
		rc = fail(err, FIRMANTE_E_TOO_LARGE, "the result workbook is larger than %u bytes",
			  MAX_XLS_BYTES);
		goto out;
	}
	data = malloc(zs.size ? zs.size : 1);
	zf = data ? zip_fopen_index(z, 0, 0) : NULL;
	if (!zf || zip_fread(zf, data, zs.size) != (zip_int64_t)zs.size) {
		rc = fail(err, FIRMANTE_E_INVALID, "the result ZIP cannot be read (damaged or CRC "
						   "error)");
		goto out;
	}
	/* reading to the end makes libzip check the CRC */
	char extra;
	if (zip_fread(zf, &extra, 1) != 0) {
		rc = fail(err, FIRMANTE_E_INVALID, "the result ZIP entry fails its CRC check");
		goto out;
	}
	fd = mkstemp(tmpl);
	if (fd < 0) {
		rc = fail(err, FIRMANTE_E_IO, "cannot create a temporary file: %s", strerror(errno));
		goto out;
	}
	size_t off = 0;
	while (off < zs.size) {
		ssize_t w = write(fd, data + off, zs.size - off);
		if (w <= 0) {
			rc = fail(err, FIRMANTE_E_IO, "cannot write a temporary file: %s",
				  strerror(errno));
			goto out;
		}
		off += (size_t)w;
	}
	rc = met_result_read_xls(tmpl, rows, n, err);
out:
	if (fd >= 0) {
		close(fd);
		unlink(tmpl);
	}
	if (zf)
		zip_fclose(zf);
	if (z)
		zip_discard(z);
	zip_error_fini(&ze);
	free(data);
	return rc;
}

/*
 * titulos-result-reader WORKBOOK [WIDENED-COPY]
 *
 * Reads the DGP's result workbook (ResultadoCargaTitulos<N>.xls, BIFF8)
 * with FreeXL and writes the rows as JSON to standard output, in the format
 * of result-reader.h. Started by titulos (met_result_read_xls in xls.c),
 * not by people. It limits itself (address space, CPU time, file size,
 * open files, no core file) before it opens anything, so that a malformed
 * workbook that trips FreeXL costs at most this process.
 * WIDENED-COPY: the same workbook with its DIMENSIONS record widened by
 * titulos, tried when FreeXL refuses the original.
 * Its output must be a pipe: with RLIMIT_FSIZE 0, writing to a regular file
 * ends it with SIGXFSZ.
 * Exit status: 0 when an answer was written (rows or an error), 1 when not.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include <freexl.h>
#include <jansson.h>

#include "firmante/util.h"
#include "met.h"
#include "result-reader.h"

#if defined(__SANITIZE_ADDRESS__)
#define UNDER_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define UNDER_ASAN 1
#endif
#endif

static int limit(int resource, rlim_t value)
{
	struct rlimit rl = { value, value };
	return setrlimit(resource, &rl);
}

static int limit_self(void)
{
	int rc = 0;
	/* ASan reserves terabytes of address space for its shadow: an
	 * RLIMIT_AS would stop a sanitizer build before main. */
#ifndef UNDER_ASAN
	rc |= limit(RLIMIT_AS, RESULT_READER_MAX_AS);
#endif
	rc |= limit(RLIMIT_CPU, RESULT_READER_MAX_CPU);
	rc |= limit(RLIMIT_FSIZE, 0);
	rc |= limit(RLIMIT_CORE, 0);
	rc |= limit(RLIMIT_NOFILE, RESULT_READER_MAX_FILES);
	return rc;
}

static int answer(json_t *o)
{
	int rc = 1;
	if (o && json_dumpf(o, stdout, JSON_COMPACT) == 0 && fflush(stdout) == 0)
		rc = 0;
	json_decref(o);
	return rc;
}

static int answer_error(const char *code, const char *message)
{
	return answer(json_pack("{s:s, s:s}", "error", code, "message", message));
}

/* Cut @s (NUL-terminated) back to whole UTF-8 sequences after a copy
 * that may have stopped inside one. */
static void utf8_whole(char *s)
{
	size_t len = strlen(s), i = len;
	while (i > 0 && ((unsigned char)s[i - 1] & 0xc0) == 0x80)
		i--;
	if (i == 0)
		return;
	unsigned char lead = (unsigned char)s[i - 1];
	size_t need = lead >= 0xf0 ? 4 : lead >= 0xe0 ? 3 : lead >= 0xc0 ? 2 : 1;
	if (len - (i - 1) < need)
		s[i - 1] = '\0';
}

/* Cell as text ("" for empty); numbers in %.15g. */
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
		utf8_whole(dst);
		break;
	default: dst[0] = '\0';
	}
}

static const void *open_workbook(const char *path, const char *widened)
{
	const void *h = NULL;
	if (freexl_open(path, &h) == FREEXL_OK && h)
		return h;
	/* FreeXL may hand back a half-built handle with an error */
	if (h)
		freexl_close(h);
	h = NULL;
	if (!widened)
		return NULL;
	if (freexl_open(widened, &h) == FREEXL_OK && h)
		return h;
	if (h)
		freexl_close(h);
	return NULL;
}

/* Sheet "Resultado", columns by their header in row 1 (met-web-service.md §6). */
static int read_rows(const void *h, json_t *rows)
{
	unsigned int sheets = 0, nrows = 0;
	unsigned short ncols = 0;
	int sheet = -1;
	char msg[160];
	if (freexl_get_info(h, FREEXL_BIFF_SHEET_COUNT, &sheets) != FREEXL_OK)
		sheets = 0;
	for (unsigned int i = 0; i < sheets && i < 64; i++) {
		const char *name = NULL;
		if (freexl_get_worksheet_name(h, (unsigned short)i, &name) == FREEXL_OK && name &&
		    strcmp(name, "Resultado") == 0)
			sheet = (int)i;
	}
	if (sheet < 0)
		return answer_error("invalid", "no sheet named Resultado");
	if (freexl_select_active_worksheet(h, (unsigned short)sheet) != FREEXL_OK ||
	    freexl_worksheet_dimensions(h, &nrows, &ncols) != FREEXL_OK || nrows < 1)
		return answer_error("invalid", "the Resultado sheet is empty");
	if (nrows - 1 > MET_MAX_RESULT_ROWS) {
		snprintf(msg, sizeof(msg), "more than %u result rows", MET_MAX_RESULT_ROWS);
		return answer_error("too-large", msg);
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
			snprintf(msg, sizeof(msg), "no column headed %s in row 1", names[k]);
			return answer_error("invalid", msg);
		}
	struct met_result_row row;
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
		cell_text(&v[0], row.archivo, sizeof(row.archivo));
		cell_text(&v[2], row.descripcion, sizeof(row.descripcion));
		cell_text(&v[3], row.folio, sizeof(row.folio));
		double e = v[1].type == FREEXL_CELL_INT      ? v[1].value.int_value
			   : v[1].type == FREEXL_CELL_DOUBLE ? v[1].value.double_value
							     : -1;
		if (e != 1.0 && e != 2.0) {
			snprintf(msg, sizeof(msg), "row %u: ESTATUS is not the number 1 or 2", r + 1);
			return answer_error("invalid", msg);
		}
		json_t *o = json_pack("{s:s, s:i, s:s, s:s}", "archivo", row.archivo, "estatus",
				      (int)e, "descripcion", row.descripcion, "folio", row.folio);
		if (!o) {
			snprintf(msg, sizeof(msg), "row %u: a cell is not valid text", r + 1);
			return answer_error("invalid", msg);
		}
		if (json_array_append_new(rows, o) != 0)
			return answer_error("nomem", "out of memory");
	}
	return answer(json_pack("{s:O}", "rows", rows));
}

int main(int argc, char **argv)
{
	if (limit_self() != 0)
		return 1;
	if (argc < 2 || argc > 3) {
		fprintf(stderr, "usage: %s WORKBOOK [WIDENED-COPY] (started by titulos)\n",
			argv[0]);
		return 1;
	}
	const void *h = open_workbook(argv[1], argc == 3 ? argv[2] : NULL);
	if (!h)
		return answer_error("invalid", "not a legacy Excel (.xls) workbook");
	json_t *rows = json_array();
	int rc = rows ? read_rows(h, rows) : answer_error("nomem", "out of memory");
	json_decref(rows);
	freexl_close(h);
	return rc;
}

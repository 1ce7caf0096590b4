/*
 * The MET result workbook (submitter/xls.c, met_result_read_xls with
 * FreeXL) and the result ZIP around it (met_result_read_zip). The input
 * is the .xls file; it is also tried as the ZIP of descarga.
 * Properties: only documented return codes, each failure with a message;
 * rows within MET_MAX_RESULT_ROWS, every estatus 1 or 2, every text field
 * NUL-terminated.
 */
#include <string.h>
#include <unistd.h>

#include "firmante/protocol.h"
#include "fuzz.h"
#include "met.h"

#define TERMINATED(field) (memchr((field), '\0', sizeof(field)) != NULL)

static void check(int rc, const struct met_result_row *rows, size_t n,
		  const struct met_error *err, const char *what)
{
	if (rc == 0) {
		if (n > MET_MAX_RESULT_ROWS)
			fuzz_fail("%s: %zu rows", what, n);
		for (size_t i = 0; i < n; i++) {
			if (rows[i].estatus != 1 && rows[i].estatus != 2)
				fuzz_fail("%s: row %zu has estatus %d", what, i, rows[i].estatus);
			if (!TERMINATED(rows[i].archivo) || !TERMINATED(rows[i].descripcion) ||
			    !TERMINATED(rows[i].folio))
				fuzz_fail("%s: row %zu has a field not terminated", what, i);
		}
		return;
	}
	if (rc != FIRMANTE_E_INVALID && rc != FIRMANTE_E_TOO_LARGE && rc != FIRMANTE_E_NOMEM &&
	    rc != FIRMANTE_E_IO)
		fuzz_fail("%s: undocumented error %d", what, rc);
	if (!memchr(err->message, '\0', sizeof(err->message)) || !err->message[0])
		fuzz_fail("%s: error %d without a message", what, rc);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct met_result_row *rows = NULL;
	struct met_error err;
	char path[64];
	size_t n = 0;
	int fd, rc;

	fd = fuzz_memfile(data, size, path, sizeof(path));
	if (fd < 0)
		return 0;
	memset(&err, 0, sizeof(err));
	rc = met_result_read_xls(path, &rows, &n, &err);
	close(fd);
	check(rc, rows, n, &err, "xls");
	free(rows);
	rows = NULL;
	n = 0;
	memset(&err, 0, sizeof(err));
	rc = met_result_read_zip(data, size, NULL, &rows, &n, &err);
	check(rc, rows, n, &err, "zip");
	free(rows);
	return 0;
}

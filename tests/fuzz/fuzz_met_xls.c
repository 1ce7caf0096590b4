/*
 * The MET result as titulos itself handles it (submitter/xls.c): the ZIP of
 * descarga (met_result_zip_entry) and the answer of the result reader
 * program (met_result_parse_answer). FreeXL runs only in that separate
 * program (result-reader.h), so its own faults are outside this target.
 * Properties: only documented return codes, each failure with a message;
 * rows within MET_MAX_RESULT_ROWS, every estatus 1 or 2, every text field
 * NUL-terminated; an extracted entry within 64 MiB.
 */
#include <stdlib.h>
#include <string.h>

#include "firmante/protocol.h"
#include "fuzz.h"
#include "met.h"
#include "result-reader.h"

#define TERMINATED(field) (memchr((field), '\0', sizeof(field)) != NULL)

static void check_error(int rc, const struct met_error *err, const char *what)
{
	if (rc != FIRMANTE_E_INVALID && rc != FIRMANTE_E_TOO_LARGE && rc != FIRMANTE_E_NOMEM)
		fuzz_fail("%s: undocumented error %d", what, rc);
	if (!memchr(err->message, '\0', sizeof(err->message)) || !err->message[0])
		fuzz_fail("%s: error %d without a message", what, rc);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct met_result_row *rows = NULL;
	struct met_error err;
	size_t n = 0;
	int rc;

	memset(&err, 0, sizeof(err));
	rc = met_result_parse_answer((const char *)data, size, "answer", &rows, &n, &err);
	if (rc == 0) {
		if (n > MET_MAX_RESULT_ROWS)
			fuzz_fail("answer: %zu rows", n);
		for (size_t i = 0; i < n; i++) {
			if (rows[i].estatus != 1 && rows[i].estatus != 2)
				fuzz_fail("answer: row %zu has estatus %d", i, rows[i].estatus);
			if (!TERMINATED(rows[i].archivo) || !TERMINATED(rows[i].descripcion) ||
			    !TERMINATED(rows[i].folio))
				fuzz_fail("answer: row %zu has a field not terminated", i);
		}
	} else {
		check_error(rc, &err, "answer");
		if (rows)
			fuzz_fail("answer: rows written on error %d", rc);
	}
	free(rows);

	char *entry = NULL;
	size_t elen = 0;
	memset(&err, 0, sizeof(err));
	rc = met_result_zip_entry(data, size, NULL, &entry, &elen, &err);
	if (rc == 0) {
		if (elen > 64u * 1024u * 1024u)
			fuzz_fail("zip: an entry of %zu bytes", elen);
	} else {
		check_error(rc, &err, "zip");
	}
	free(entry);
	return 0;
}

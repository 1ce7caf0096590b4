/* Internal: a CSV file read whole (libcsv). Not installed. */
#ifndef FIRMANTE_TE_CSV_H
#define FIRMANTE_TE_CSV_H

#include <stddef.h>

#define TE_CSV_MAX_FIELDS 64

struct te_csv_row {
	char **f; /* NUL-terminated fields */
	size_t n;
};

struct te_csv {
	struct te_csv_row *rows; /* rows[0] is the first record (header) */
	size_t nrows;
	int converted;           /* 1: the file was Windows-1252, converted */
	char delim;              /* ',' or ';' */
};

/* te_csv_read flags */
#define TE_CSV_DETECT 0x1u /* Windows-1252 when not UTF-8; ',' or ';' from the header */

/* Read @path (a UTF-8 BOM is skipped). Row numbers are record numbers: empty
 * lines are not records. Without TE_CSV_DETECT the file must be UTF-8 with
 * ','. Returns 0, FIRMANTE_E_IO, FIRMANTE_E_TOO_LARGE, FIRMANTE_E_INVALID
 * (malformed CSV), FIRMANTE_E_BAD_DOCUMENT (encoding), FIRMANTE_E_NOMEM;
 * @why gets a sentence. */
int te_csv_read(const char *path, size_t max_bytes, size_t max_rows, unsigned flags,
		struct te_csv *out, char *why, size_t why_size);
void te_csv_free(struct te_csv *csv);

#endif

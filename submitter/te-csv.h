/* Internal: a CSV file read whole (libcsv). Not installed. */
#ifndef FIRMANTE_TE_CSV_H
#define FIRMANTE_TE_CSV_H

#include <stddef.h>

#define TE_CSV_MAX_FIELDS 64

struct te_csv_row {
	char **f; /* NUL-terminated fields */
	size_t n;
	unsigned long long nul_fields; /* bit j: field j held a NUL byte (cut there) */
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

/* Where te_csv_read_at() found the problem: record (1 = header) and field
 * (1-based); 0 when the problem is the whole file. */
struct te_csv_where {
	unsigned long row, column;
};

/* As te_csv_read(); on failure @where (may be NULL) gets the record and
 * field of a malformed quote or of a row over TE_CSV_MAX_FIELDS. With
 * TE_CSV_DETECT, a NUL byte inside a field of an otherwise text file is not
 * a failure: the row's nul_fields bit says so (a UTF-16 file, or one where
 * NUL bytes abound, is FIRMANTE_E_BAD_DOCUMENT; without TE_CSV_DETECT any
 * NUL byte is). */
int te_csv_read_at(const char *path, size_t max_bytes, size_t max_rows, unsigned flags,
		   struct te_csv *out, char *why, size_t why_size, struct te_csv_where *where);
void te_csv_free(struct te_csv *csv);

/* What te_csv_each() learned of the whole file. */
struct te_csv_info {
	int converted;           /* 1: Windows-1252, converted to UTF-8 */
	char delim;              /* ',' or ';' */
	unsigned long records;   /* records handed to the callback */
	unsigned char digest[32]; /* SHA-256 of the file's bytes as read */
};

/* Called with each record in order (@record 1 = header). The callback may
 * take the fields: it then sets row->f to NULL and row->n to 0 (and frees
 * them itself later); otherwise they are freed after it returns. A nonzero
 * return stops the reading, and te_csv_each() returns that value. */
typedef int (*te_csv_row_fn)(void *ctx, unsigned long record, struct te_csv_row *row);

/*
 * te_csv_each - te_csv_read_at() without keeping the file in memory: the
 * file is read twice in chunks of TE_CSV_CHUNK bytes (first to check its
 * encoding and NUL bytes, then to parse it), and each record is handed to
 * @fn as soon as it is complete. The checks and their messages are those of
 * te_csv_read_at(): the callback is not called at all when the file is not
 * text in a supported encoding or over @max_bytes; a malformed record, one
 * over TE_CSV_MAX_FIELDS fields or one past @max_rows stops the reading
 * after the records before it were handed over. The delimiter is detected
 * in the first chunk. A file that changes between the two readings is
 * FIRMANTE_E_IO ("changed while it was read").
 * @info: may be NULL.
 * Memory: two chunks and one record (plus the conversion buffer for a
 * Windows-1252 file, 3 bytes per byte of a chunk).
 */
#define TE_CSV_CHUNK (64u * 1024u)
int te_csv_each(const char *path, size_t max_bytes, size_t max_rows, unsigned flags,
		te_csv_row_fn fn, void *ctx, struct te_csv_info *info, char *why,
		size_t why_size, struct te_csv_where *where);


#endif

/*
 * The MET result workbook is read by a separate program,
 * titulos-result-reader (submitter/result_reader.c), because FreeXL reads a
 * file that comes from a remote service and has had memory errors of its
 * own on malformed workbooks (docs/security.md). met_result_read_xls()
 * (xls.c) starts it with posix_spawn, and reads and checks its answer; a
 * crash, a hang or a wrong answer of the reader is an error of that one
 * result file, never of titulos.
 *
 * The answer, written by the reader to its standard output (a pipe) and
 * nothing else, is one JSON object (RFC 8259, UTF-8):
 *   {"rows": [{"archivo": S, "estatus": 1|2, "descripcion": S,
 *              "folio": S}, ...]}
 * or
 *   {"error": "invalid" | "too-large" | "nomem", "message": S}
 * Each S shorter than its field of struct met_result_row (met.h), at most
 * MET_MAX_RESULT_ROWS rows, at most RESULT_READER_MAX_OUTPUT bytes.
 */
#ifndef FIRMANTE_RESULT_READER_H
#define FIRMANTE_RESULT_READER_H

#include <stddef.h>
#include <stdint.h>

#include "met.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Limits of the reader process (setrlimit(2) in the reader before it opens
 * the workbook; the wall-clock limit is kept by the parent). */
#define RESULT_READER_MAX_AS (1024ul * 1024ul * 1024ul) /* RLIMIT_AS, bytes (not under ASan) */
#define RESULT_READER_MAX_CPU 30ul                       /* RLIMIT_CPU, seconds */
#define RESULT_READER_MAX_FILES 16ul                     /* RLIMIT_NOFILE */
#define RESULT_READER_TIMEOUT_MS 60000                   /* wall clock, milliseconds */
#define RESULT_READER_MAX_OUTPUT (64u * 1024u * 1024u)   /* answer size, bytes */

/* The reader's name, and the environment variable that overrides where it
 * is (tests; an unusual installation). */
#define RESULT_READER_NAME "titulos-result-reader"
#define RESULT_READER_ENV "FIRMANTE_RESULT_READER"

/*
 * met_result_reader_path - where the reader is: $FIRMANTE_RESULT_READER
 * when set and not empty; else titulos-result-reader beside the running
 * program (/proc/self/exe: the build tree); else the installed
 * LIBEXECDIR/firmante/titulos-result-reader (set at build time).
 * @buf: receives the path, @size bytes. Returns 0, or -1 when the path does
 * not fit or no candidate is an executable file.
 */
int met_result_reader_path(char *buf, size_t size);

/*
 * met_result_read_xls_with - met_result_read_xls() with the reader program
 * @reader and a wall-clock limit of @timeout_ms milliseconds (> 0).
 * @label: how the file is named in messages ("the result file of lot N").
 * Returns as met_result_read_xls().
 */
int met_result_read_xls_with(const char *reader, int timeout_ms, const char *xls_path,
			     const char *label, struct met_result_row **rows, size_t *n,
			     struct met_error *err);

/*
 * met_result_parse_answer - check and convert the reader's answer (the
 * format above) into rows.
 * @out, @len: the bytes the reader wrote (need not be NUL-terminated).
 * @label: how the file is named in messages.
 * @rows: malloc'd array (caller frees), @n its count; written on success.
 * Returns 0; FIRMANTE_E_INVALID (the reader said the workbook is not a
 * usable result, or its answer breaks the format: err says which);
 * FIRMANTE_E_TOO_LARGE (the reader found more than MET_MAX_RESULT_ROWS
 * rows); FIRMANTE_E_NOMEM.
 */
int met_result_parse_answer(const char *out, size_t len, const char *label,
			    struct met_result_row **rows, size_t *n, struct met_error *err);

/*
 * met_result_zip_entry - the workbook inside the ZIP of descarga: exactly
 * one entry, named ResultadoCargaTitulos<@numero>.xls when @numero is not
 * NULL, at most 64 MiB, CRC checked (libzip, ZIP_CHECKCONS).
 * @zip, @len: the ZIP as received.
 * @data: malloc'd copy of the entry (caller frees), @size its bytes;
 * written on success.
 * Returns 0, FIRMANTE_E_INVALID (not a ZIP, another number of entries or
 * name, damaged), FIRMANTE_E_TOO_LARGE, FIRMANTE_E_NOMEM.
 */
int met_result_zip_entry(const uint8_t *zip, size_t len, const char *numero, char **data,
			 size_t *size, struct met_error *err);

#ifdef __cplusplus
}
#endif
#endif

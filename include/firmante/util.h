/*
 * Small shared pieces (common/, prefix fm_): Base64, SHA-256, files,
 * secure memory. Used by every room; knows nothing of tokens, HTTP or XML.
 */
#ifndef FIRMANTE_UTIL_H
#define FIRMANTE_UTIL_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/*
 * fm_base64_encode - standard alphabet with '=' padding, one line, no
 * line breaks (RFC 4648 §4).
 * @out: malloc'd NUL-terminated string, caller frees. Written on success.
 * Returns 0 or FIRMANTE_E_NOMEM.
 */
int fm_base64_encode(const uint8_t *data, size_t len, char **out);

/*
 * fm_base64_decode - strict RFC 4648 §4 decoding: no white space, correct
 * padding, length a multiple of 4.
 * @out: malloc'd bytes, caller frees; @out_len: their count. Written on success.
 * Returns 0, FIRMANTE_E_INVALID (not canonical Base64), FIRMANTE_E_NOMEM.
 */
int fm_base64_decode(const char *b64, size_t len, uint8_t **out, size_t *out_len);

/*
 * fm_sha256_hex - lower-case hex SHA-256 (FIPS 180-4) of @data into @hex
 * (65 bytes, NUL-terminated). Returns 0 or FIRMANTE_E_INTERNAL.
 */
int fm_sha256_hex(const void *data, size_t len, char hex[65]);

/*
 * fm_read_file - read a whole regular file.
 * @max: refuse files larger than this many bytes.
 * @out: malloc'd, NUL-terminated (the NUL is not counted); @len: bytes read.
 * Returns 0, FIRMANTE_E_IO (errno kept), FIRMANTE_E_TOO_LARGE, FIRMANTE_E_NOMEM.
 */
int fm_read_file(const char *path, size_t max, char **out, size_t *len);

/*
 * fm_write_file_atomic - write @len bytes to @path through a temporary file
 * in the same directory (mode @mode), fsync, then rename(2) over @path and
 * fsync the directory. Either the old or the new content is visible, never
 * a partial file; on failure the temporary file is removed.
 * Returns 0 or FIRMANTE_E_IO (errno kept).
 */
int fm_write_file_atomic(const char *path, const void *data, size_t len, unsigned mode);

/* fm_wipe - explicit_bzero that the compiler cannot drop. NULL is a no-op. */
void fm_wipe(void *p, size_t len);

/* fm_trim_copy - copy @src into @dst (size @size) without leading/trailing
 * ASCII blanks, truncating safely. Returns @dst. */
char *fm_trim_copy(char *dst, size_t size, const char *src, size_t src_len);

/*
 * fm_data_path - locate a data file of the project ("TituloElectronico.xsd",
 * "catalogos.csv"). Looks in $FIRMANTE_DATADIR, then the installed data
 * directory, then the source tree's data/ (for programs run from a build).
 * @buf, @size: receives the path of the first readable candidate.
 * Returns 0, or FIRMANTE_E_CONFIG when no candidate is readable.
 */
int fm_data_path(const char *name, char *buf, size_t size);

#ifdef __cplusplus
}
#endif
#endif

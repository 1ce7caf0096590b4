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

/*
 * A batch of new files in one directory, made durable with one sync for the
 * whole batch instead of two fsync(2) calls per file.
 *
 * fm_batch_add() writes each file to a temporary in the target directory,
 * ".NAME.PID.fmtmp" (created O_CREAT|O_EXCL, then fchmod to the batch's
 * mode); fm_batch_commit() makes every temporary durable with one syncfs(2)
 * of the directory's filesystem, renames each over its final name
 * (rename(2) within one directory is atomic: POSIX.1-2017 rename()), then
 * fsync(2)s the directory once so the renames are durable. A crash or
 * SIGKILL at any point therefore never leaves a partial file under a final
 * name: a final name holds either nothing (or its previous file) or the
 * complete new content. syncfs(2) reports write-back errors of the
 * filesystem since Linux 5.8; on older kernels a failed write-back may go
 * unreported (docs/security.md).
 *
 * Temporaries left by a process that was killed are removed by the next
 * fm_batch_open() on the same directory: a name of the form ".*.PID.fmtmp"
 * whose PID is no running process. Files of other patterns are never
 * touched.
 *
 * Limits: at most FM_BATCH_MAX_FILES files per batch; a NAME of at most
 * FM_BATCH_MAX_NAME bytes, without '/' and not starting with '.'.
 * Memory: about the length of the names (no descriptor is kept open per
 * file). One batch is used by one thread.
 */
#define FM_BATCH_MAX_FILES 1000000u
#define FM_BATCH_MAX_NAME 200u

struct fm_batch;

/*
 * fm_batch_open - start a batch of files in the existing directory @dir
 * (opened once with O_DIRECTORY; stale temporaries of killed processes are
 * removed, see above).
 * @mode: permission bits every file gets (fchmod, so the umask does not
 * narrow them), e.g. 0644.
 * @out: the batch, written on success; release with fm_batch_free().
 * Returns 0, FIRMANTE_E_IO (the directory cannot be opened or read; errno
 * kept), FIRMANTE_E_NOMEM.
 */
int fm_batch_open(const char *dir, unsigned mode, struct fm_batch **out);

/*
 * fm_batch_add - write @len bytes of @data as the future file @name of the
 * batch (to its temporary; nothing under @name yet). @data is not kept.
 * Returns 0, FIRMANTE_E_INVALID (@name empty, longer than
 * FM_BATCH_MAX_NAME, holding '/' or starting with '.'), FIRMANTE_E_TOO_LARGE
 * (FM_BATCH_MAX_FILES files already), FIRMANTE_E_NOMEM, FIRMANTE_E_IO
 * (create or write failed, e.g. ENOSPC or EFBIG; errno kept; EEXIST when
 * @name was already added to this batch). On FIRMANTE_E_IO the file's
 * temporary is already removed; the earlier files stay pending.
 */
int fm_batch_add(struct fm_batch *b, const char *name, const void *data, size_t len);

/*
 * fm_batch_commit - syncfs(2), then rename every pending file to its final
 * name (replacing a file of that name) in the order added, then fsync(2)
 * the directory.
 * @renamed: may be NULL; gets how many files are in place under their final
 * names (all of them on success; on a failed rename, the ones before it).
 * Returns 0, or FIRMANTE_E_IO (errno kept): the sync failed (nothing
 * renamed), a rename failed (the files not yet renamed are removed), or the
 * directory's fsync failed (all renamed, durability not confirmed).
 * Either way the batch holds no pending file afterwards.
 */
int fm_batch_commit(struct fm_batch *b, size_t *renamed);

/* fm_batch_pending - number of files added and not yet committed. */
size_t fm_batch_pending(const struct fm_batch *b);

/* fm_batch_free - remove every temporary still pending (an aborted batch
 * leaves nothing behind), close the directory, free. NULL is a no-op;
 * errno is preserved. */
void fm_batch_free(struct fm_batch *b);

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

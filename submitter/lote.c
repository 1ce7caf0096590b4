/*
 * ZIP lots for cargaTituloElectronico (libzip). See met.h and
 * ../shared/spec/met-web-service.md §4.
 */
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/evp.h>
#include <zip.h>
#include <zlib.h>

#include "firmante/protocol.h"
#include "firmante/util.h"
#include "met.h"

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

/* A folio usable as a file name inside the ZIP: no path parts, printable. */
static int folio_safe(const char *f)
{
	size_t n = strlen(f);
	if (n == 0 || n > 100 || f[0] == '.')
		return 0;
	for (size_t i = 0; i < n; i++)
		if ((unsigned char)f[i] <= ' ' || f[i] == '/' || f[i] == '\\' || f[i] == 0x7f)
			return 0;
	return 1;
}

static int sha256_file(const char *path, char hex[65])
{
	unsigned char buf[65536], md[32];
	unsigned int mdlen = 0;
	int rc = -1;
	FILE *f = fopen(path, "rb");
	EVP_MD_CTX *ctx = EVP_MD_CTX_new();
	if (!f || !ctx || EVP_DigestInit_ex(ctx, EVP_sha256(), NULL) != 1)
		goto out;
	size_t n;
	while ((n = fread(buf, 1, sizeof(buf), f)) > 0)
		if (EVP_DigestUpdate(ctx, buf, n) != 1)
			goto out;
	if (ferror(f) || EVP_DigestFinal_ex(ctx, md, &mdlen) != 1)
		goto out;
	for (unsigned i = 0; i < 32; i++)
		snprintf(hex + 2 * i, 3, "%02x", md[i]);
	rc = 0;
out:
	EVP_MD_CTX_free(ctx);
	if (f)
		fclose(f);
	return rc;
}

static int fsync_path(const char *path, int dir)
{
	int fd = open(path, (dir ? O_DIRECTORY : 0) | O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -1;
	int r = fsync(fd);
	close(fd);
	return r;
}

int met_lote_build(const char *zip_path, const struct met_lote_item *items, size_t n,
		   char sha256_hex[65], struct met_error *err)
{
	int rc;
	char tmp[4200], name[128];
	zip_t *z = NULL;
	uLong *crcs = NULL;
	char **datas = NULL;
	int tmp_made = 0;
	if (n == 0 || n > MET_MAX_LOT_TITLES)
		return fail(err, FIRMANTE_E_INVALID, "a lot holds 1 to %u titles, not %zu",
			    MET_MAX_LOT_TITLES, n);
	for (size_t i = 0; i < n; i++) {
		if (!folio_safe(items[i].folio))
			return fail(err, FIRMANTE_E_INVALID, "folioControl '%s' cannot name a file "
							     "in the lot", items[i].folio);
		for (size_t j = 0; j < i; j++)
			if (strcmp(items[i].folio, items[j].folio) == 0)
				return fail(err, FIRMANTE_E_INVALID,
					    "folioControl %s appears twice in one lot",
					    items[i].folio);
	}
	if (snprintf(tmp, sizeof(tmp), "%s.tmp.%ld", zip_path, (long)getpid()) >= (int)sizeof(tmp))
		return fail(err, FIRMANTE_E_INVALID, "%s: path too long", zip_path);
	crcs = calloc(n, sizeof(*crcs));
	datas = calloc(n, sizeof(*datas));
	if (!crcs || !datas) {
		rc = fail(err, FIRMANTE_E_NOMEM, "out of memory");
		goto out;
	}
	int zerr = 0;
	unlink(tmp);
	z = zip_open(tmp, ZIP_CREATE | ZIP_EXCL, &zerr);
	if (!z) {
		zip_error_t ze;
		zip_error_init_with_code(&ze, zerr);
		rc = fail(err, FIRMANTE_E_IO, "%s: cannot create the lot: %s", tmp,
			  zip_error_strerror(&ze));
		zip_error_fini(&ze);
		goto out;
	}
	tmp_made = 1;
	uint64_t total = 0;
	for (size_t i = 0; i < n; i++) {
		size_t len = 0;
		int r = fm_read_file(items[i].path, FIRMANTE_MAX_DOCUMENT, &datas[i], &len);
		if (r) {
			rc = fail(err, r == FIRMANTE_E_TOO_LARGE ? FIRMANTE_E_TOO_LARGE : FIRMANTE_E_IO,
				  "%s: cannot read the title: %s", items[i].path,
				  r == FIRMANTE_E_TOO_LARGE ? "larger than a title may be"
							    : strerror(errno));
			goto out;
		}
		total += len;
		if (total > MET_MAX_LOT_BYTES) {
			rc = fail(err, FIRMANTE_E_TOO_LARGE, "the lot would exceed %u bytes",
				  MET_MAX_LOT_BYTES);
			goto out;
		}
		crcs[i] = crc32(crc32(0L, Z_NULL, 0), (const Bytef *)datas[i], (uInt)len);
		zip_source_t *src = zip_source_buffer(z, datas[i], len, 0);
		snprintf(name, sizeof(name), "%s.xml", items[i].folio);
		zip_int64_t idx = src ? zip_file_add(z, name, src, ZIP_FL_ENC_UTF_8) : -1;
		if (idx < 0) {
			zip_source_free(src);
			rc = fail(err, FIRMANTE_E_IO, "%s: cannot add %s: %s", tmp, name,
				  zip_strerror(z));
			goto out;
		}
		zip_set_file_compression(z, (zip_uint64_t)idx, ZIP_CM_DEFLATE, 0);
	}
	if (zip_close(z) != 0) {
		rc = fail(err, FIRMANTE_E_IO, "%s: cannot write the lot: %s", tmp, zip_strerror(z));
		zip_discard(z);
		z = NULL;
		goto out;
	}
	z = NULL;
	/* Re-open and check the listing against the manifest. */
	z = zip_open(tmp, ZIP_RDONLY | ZIP_CHECKCONS, &zerr);
	if (!z || zip_get_num_entries(z, 0) != (zip_int64_t)n) {
		rc = fail(err, FIRMANTE_E_IO, "%s: the written lot does not list %zu titles", tmp, n);
		goto out;
	}
	for (size_t i = 0; i < n; i++) {
		zip_stat_t zs;
		snprintf(name, sizeof(name), "%s.xml", items[i].folio);
		if (zip_stat_index(z, i, 0, &zs) != 0 || !(zs.valid & ZIP_STAT_CRC) ||
		    strcmp(zs.name, name) != 0 || zs.crc != (zip_uint32_t)crcs[i]) {
			rc = fail(err, FIRMANTE_E_IO, "%s: entry %zu of the written lot is not %s",
				  tmp, i, name);
			goto out;
		}
	}
	zip_discard(z);
	z = NULL;
	if (fsync_path(tmp, 0) != 0 || sha256_file(tmp, sha256_hex) != 0) {
		rc = fail(err, FIRMANTE_E_IO, "%s: cannot read back the lot: %s", tmp,
			  strerror(errno));
		goto out;
	}
	if (rename(tmp, zip_path) != 0) {
		rc = fail(err, FIRMANTE_E_IO, "%s: cannot rename the lot into place: %s", zip_path,
			  strerror(errno));
		goto out;
	}
	tmp_made = 0;
	char dirbuf[4200];
	snprintf(dirbuf, sizeof(dirbuf), "%s", zip_path);
	fsync_path(dirname(dirbuf), 1);
	rc = 0;
out:
	if (z)
		zip_discard(z);
	if (tmp_made)
		unlink(tmp);
	for (size_t i = 0; datas && i < n; i++)
		free(datas[i]);
	free(datas);
	free(crcs);
	return rc;
}

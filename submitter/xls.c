/*
 * The MET result report (descargaTituloElectronico): a ZIP holding
 * ResultadoCargaTitulos<numeroLote>.xls, read by column name with FreeXL
 * in a separate, limited process (result_reader.c, result-reader.h).
 * See met.h and ../shared/spec/met-web-service.md §6.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <fcntl.h>
#include <jansson.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <time.h>
#include <zip.h>

#include "firmante/protocol.h"
#include "firmante/util.h"
#include "met.h"
#include "result-reader.h"

extern char **environ;

#ifndef FIRMANTE_RESULT_READER_PATH /* set by submitter/CMakeLists.txt */
#define FIRMANTE_RESULT_READER_PATH "/usr/libexec/firmante/" RESULT_READER_NAME
#endif

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

static int read_xls_labelled(const char *xls_path, const char *label,
			     struct met_result_row **rows, size_t *n, struct met_error *err)
{
	char reader[4096];
	if (met_result_reader_path(reader, sizeof(reader)) != 0)
		return fail(err, FIRMANTE_E_IO, "%s: the result reader program %s is not "
						"installed (looked beside titulos and in %s; "
						"$%s overrides)", label, RESULT_READER_NAME,
			    FIRMANTE_RESULT_READER_PATH, RESULT_READER_ENV);
	return met_result_read_xls_with(reader, RESULT_READER_TIMEOUT_MS, xls_path, label, rows,
					n, err);
}

int met_result_reader_path(char *buf, size_t size)
{
	const char *env = getenv(RESULT_READER_ENV);
	int n;
	if (env && *env) {
		n = snprintf(buf, size, "%s", env);
		return n < 0 || (size_t)n >= size || access(buf, X_OK) != 0 ? -1 : 0;
	}
	char self[4096];
	ssize_t len = readlink("/proc/self/exe", self, sizeof(self) - 1);
	if (len > 0) {
		self[len] = '\0';
		char *slash = strrchr(self, '/');
		if (slash) {
			*slash = '\0';
			n = snprintf(buf, size, "%s/%s", self, RESULT_READER_NAME);
			if (n > 0 && (size_t)n < size && access(buf, X_OK) == 0)
				return 0;
		}
	}
	n = snprintf(buf, size, "%s", FIRMANTE_RESULT_READER_PATH);
	return n < 0 || (size_t)n >= size || access(buf, X_OK) != 0 ? -1 : 0;
}

/* One string member of @o, shorter than @size; copied to @dst. */
static int member_text(json_t *o, const char *key, char *dst, size_t size)
{
	json_t *v = json_object_get(o, key);
	if (!json_is_string(v) || json_string_length(v) >= size ||
	    memchr(json_string_value(v), '\0', json_string_length(v)))
		return -1;
	memcpy(dst, json_string_value(v), json_string_length(v) + 1);
	return 0;
}

int met_result_parse_answer(const char *out, size_t len, const char *label,
			    struct met_result_row **rows, size_t *n, struct met_error *err)
{
	json_error_t jerr;
	struct met_result_row *res = NULL;
	int rc;
	json_t *root = json_loadb(out, len, JSON_REJECT_DUPLICATES, &jerr);
	if (!json_is_object(root)) {
		rc = fail(err, FIRMANTE_E_INVALID, "%s: the result reader gave no usable answer "
						   "(%s)", label, root ? "not an object" : jerr.text);
		goto out;
	}
	json_t *e = json_object_get(root, "error"), *arr = json_object_get(root, "rows");
	if (e) {
		char code[16], msg[200];
		if (json_object_size(root) != 2 || member_text(root, "error", code, sizeof(code)) ||
		    member_text(root, "message", msg, sizeof(msg))) {
			rc = fail(err, FIRMANTE_E_INVALID, "%s: the result reader's error answer is "
							   "malformed", label);
			goto out;
		}
		for (char *c = msg; *c; c++)
			if ((unsigned char)*c < 0x20 || *c == 0x7f)
				*c = ' ';
		rc = strcmp(code, "too-large") == 0 ? FIRMANTE_E_TOO_LARGE
		     : strcmp(code, "nomem") == 0   ? FIRMANTE_E_NOMEM
						    : FIRMANTE_E_INVALID;
		rc = fail(err, rc, "%s: %s", label, msg);
		goto out;
	}
	if (json_object_size(root) != 1 || !json_is_array(arr)) {
		rc = fail(err, FIRMANTE_E_INVALID, "%s: the result reader's answer has no rows",
			  label);
		goto out;
	}
	size_t count = json_array_size(arr);
	if (count > MET_MAX_RESULT_ROWS) {
		rc = fail(err, FIRMANTE_E_TOO_LARGE, "%s: more than %u result rows", label,
			  MET_MAX_RESULT_ROWS);
		goto out;
	}
	res = calloc(count ? count : 1, sizeof(*res));
	if (!res) {
		rc = fail(err, FIRMANTE_E_NOMEM, "out of memory");
		goto out;
	}
	for (size_t i = 0; i < count; i++) {
		json_t *o = json_array_get(arr, i), *st = json_object_get(o, "estatus");
		struct met_result_row *r = &res[i];
		if (!json_is_object(o) || json_object_size(o) != 4 || !json_is_integer(st) ||
		    (json_integer_value(st) != 1 && json_integer_value(st) != 2) ||
		    member_text(o, "archivo", r->archivo, sizeof(r->archivo)) ||
		    member_text(o, "descripcion", r->descripcion, sizeof(r->descripcion)) ||
		    member_text(o, "folio", r->folio, sizeof(r->folio))) {
			rc = fail(err, FIRMANTE_E_INVALID, "%s: the result reader's row %zu is "
							   "malformed", label, i + 1);
			goto out;
		}
		r->estatus = (int)json_integer_value(st);
	}
	*rows = res;
	*n = count;
	res = NULL;
	rc = 0;
out:
	free(res);
	json_decref(root);
	return rc;
}

static long ms_since(const struct timespec *t0)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return (long)(t.tv_sec - t0->tv_sec) * 1000 + (t.tv_nsec - t0->tv_nsec) / 1000000;
}

/* Run @reader on @xls_path (and @widened): its answer into *@out (malloc'd,
 * *@len bytes). Returns 0 when it exited 0, else an error in @err. */
static int run_reader(const char *reader, int timeout_ms, const char *xls_path,
		      const char *widened, const char *label, char **out, size_t *len,
		      struct met_error *err)
{
	int p[2], rc = 0, status = 0;
	pid_t pid = -1;
	char *buf = NULL;
	size_t used = 0, cap = 0;
	int timed_out = 0, too_big = 0;
	posix_spawn_file_actions_t fa;
	posix_spawnattr_t attr;
	sigset_t none, all;
	char *argv[4] = { (char *)reader, (char *)xls_path, (char *)widened, NULL };
	if (pipe2(p, O_CLOEXEC) != 0)
		return fail(err, FIRMANTE_E_IO, "%s: cannot make a pipe: %s", label,
			    strerror(errno));
	/* Standard input and error /dev/null, output the pipe, nothing else open. */
	posix_spawn_file_actions_init(&fa);
	posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
	posix_spawn_file_actions_adddup2(&fa, p[1], 1);
	posix_spawn_file_actions_addopen(&fa, 2, "/dev/null", O_WRONLY, 0);
	posix_spawn_file_actions_addclosefrom_np(&fa, 3);
	posix_spawnattr_init(&attr);
	sigemptyset(&none);
	sigfillset(&all);
	posix_spawnattr_setsigmask(&attr, &none);
	posix_spawnattr_setsigdefault(&attr, &all);
	posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);
	int sp = posix_spawn(&pid, reader, &fa, &attr, argv, environ);
	posix_spawn_file_actions_destroy(&fa);
	posix_spawnattr_destroy(&attr);
	close(p[1]);
	if (sp != 0) {
		close(p[0]);
		return fail(err, FIRMANTE_E_IO, "%s: cannot start the result reader %s: %s", label,
			    reader, strerror(sp));
	}
	struct timespec t0;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	for (;;) {
		long left = timeout_ms - ms_since(&t0);
		if (left <= 0) {
			timed_out = 1;
			break;
		}
		struct pollfd pfd = { p[0], POLLIN, 0 };
		int pr = poll(&pfd, 1, (int)left);
		if (pr < 0 && errno == EINTR)
			continue;
		if (pr <= 0) {
			timed_out = pr == 0;
			if (pr < 0)
				rc = fail(err, FIRMANTE_E_IO, "%s: waiting for the result reader: %s",
					  label, strerror(errno));
			break;
		}
		if (used == cap) {
			if (cap >= RESULT_READER_MAX_OUTPUT) {
				too_big = 1;
				break;
			}
			size_t ncap = cap ? cap * 2 : 65536;
			if (ncap > RESULT_READER_MAX_OUTPUT)
				ncap = RESULT_READER_MAX_OUTPUT;
			char *nb = realloc(buf, ncap);
			if (!nb) {
				rc = fail(err, FIRMANTE_E_NOMEM, "out of memory");
				break;
			}
			buf = nb;
			cap = ncap;
		}
		ssize_t r = read(p[0], buf + used, cap - used);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0) {
			rc = fail(err, FIRMANTE_E_IO, "%s: reading the result reader's answer: %s",
				  label, strerror(errno));
			break;
		}
		if (r == 0)
			break;
		used += (size_t)r;
	}
	close(p[0]);
	if (timed_out || too_big || rc)
		kill(pid, SIGKILL);
	while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
		;
	if (rc == 0 && timed_out)
		rc = fail(err, FIRMANTE_E_TIMEOUT, "%s: the result reader did not finish within "
						   "%d s (stopped)", label, timeout_ms / 1000);
	else if (rc == 0 && too_big)
		rc = fail(err, FIRMANTE_E_INVALID, "%s: the result reader's answer is over %u "
						   "bytes (stopped)", label,
			  RESULT_READER_MAX_OUTPUT);
	else if (rc == 0 && WIFSIGNALED(status))
		rc = fail(err, FIRMANTE_E_INVALID, "%s: the result reader stopped on signal %d "
						   "(%s): the workbook is malformed or too large",
			  label, WTERMSIG(status), strsignal(WTERMSIG(status)));
	else if (rc == 0 && (!WIFEXITED(status) || WEXITSTATUS(status) != 0))
		rc = fail(err, FIRMANTE_E_INVALID, "%s: the result reader failed (exit status "
						   "%d) on this workbook", label,
			  WIFEXITED(status) ? WEXITSTATUS(status) : -1);
	if (rc) {
		free(buf);
		return rc;
	}
	*out = buf;
	*len = used;
	return 0;
}

int met_result_read_xls_with(const char *reader, int timeout_ms, const char *xls_path,
			     const char *label, struct met_result_row **rows, size_t *n,
			     struct met_error *err)
{
	char widened[] = "/tmp/titulos-resultado-XXXXXX";
	char *out = NULL;
	size_t len = 0;
	int have_widened = widen_dimensions(xls_path, widened) == 0;
	int rc = run_reader(reader, timeout_ms > 0 ? timeout_ms : 1, xls_path,
			    have_widened ? widened : NULL, label, &out, &len, err);
	if (have_widened)
		unlink(widened);
	if (rc)
		return rc;
	rc = met_result_parse_answer(out, len, label, rows, n, err);
	free(out);
	return rc;
}

int met_result_read_xls(const char *xls_path, struct met_result_row **rows, size_t *n,
			struct met_error *err)
{
	return read_xls_labelled(xls_path, xls_path, rows, n, err);
}

int met_result_zip_entry(const uint8_t *zip, size_t len, const char *numero, char **data,
			 size_t *size, struct met_error *err)
{
	int rc;
	zip_error_t ze;
	zip_source_t *src = NULL;
	zip_t *z = NULL;
	zip_file_t *zf = NULL;
	char *buf = NULL;
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
	if (zip_stat_index(z, 0, 0, &zs) != 0 || !(zs.valid & ZIP_STAT_SIZE) ||
	    !(zs.valid & ZIP_STAT_NAME)) {
		rc = fail(err, FIRMANTE_E_INVALID, "the result ZIP cannot be listed");
		goto out;
	}
	if (numero) {
		char want[96];
		snprintf(want, sizeof(want), "ResultadoCargaTitulos%s.xls", numero);
		if (strcmp(zs.name, want) != 0) {
			rc = fail(err, FIRMANTE_E_INVALID, "the result ZIP holds %.200s, expected %s",
				  zs.name, want);
			goto out;
		}
	}
	if (zs.size > MAX_XLS_BYTES) {
		rc = fail(err, FIRMANTE_E_TOO_LARGE, "the result workbook is larger than %u bytes",
			  MAX_XLS_BYTES);
		goto out;
	}
	buf = malloc(zs.size ? zs.size : 1);
	zf = buf ? zip_fopen_index(z, 0, 0) : NULL;
	if (!zf || zip_fread(zf, buf, zs.size) != (zip_int64_t)zs.size) {
		rc = buf ? fail(err, FIRMANTE_E_INVALID, "the result ZIP cannot be read (damaged or "
							 "CRC error)")
			 : fail(err, FIRMANTE_E_NOMEM, "out of memory");
		goto out;
	}
	/* reading to the end makes libzip check the CRC */
	char extra;
	if (zip_fread(zf, &extra, 1) != 0) {
		rc = fail(err, FIRMANTE_E_INVALID, "the result ZIP entry fails its CRC check");
		goto out;
	}
	*data = buf;
	*size = zs.size;
	buf = NULL;
	rc = 0;
out:
	if (zf)
		zip_fclose(zf);
	if (z)
		zip_discard(z);
	zip_error_fini(&ze);
	free(buf);
	return rc;
}

int met_result_read_zip(const uint8_t *zip, size_t len, const char *numero,
			struct met_result_row **rows, size_t *n, struct met_error *err)
{
	char *data = NULL;
	size_t size = 0;
	char tmpl[] = "/tmp/titulos-resultado-XXXXXX";
	int rc = met_result_zip_entry(zip, len, numero, &data, &size, err);
	if (rc)
		return rc;
	int fd = mkstemp(tmpl);
	if (fd < 0) {
		free(data);
		return fail(err, FIRMANTE_E_IO, "cannot create a temporary file: %s",
			    strerror(errno));
	}
	size_t off = 0;
	rc = 0;
	while (off < size) {
		ssize_t w = write(fd, data + off, size - off);
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0) {
			rc = fail(err, FIRMANTE_E_IO, "cannot write a temporary file: %s",
				  w < 0 ? strerror(errno) : "nothing written");
			break;
		}
		off += (size_t)w;
	}
	close(fd);
	free(data);
	if (rc == 0)
		rc = read_xls_labelled(tmpl, "the result workbook", rows, n, err);
	unlink(tmpl);
	return rc;
}

/* Shared helpers: Base64, SHA-256, files, wiping (include/firmante/util.h). */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/evp.h>
#include <openssl/sha.h>

#include "firmante/build-config.h"
#include "firmante/protocol.h"
#include "firmante/util.h"

int fm_base64_encode(const uint8_t *data, size_t len, char **out)
{
	if (len > (size_t)INT_MAX / 2)
		return FIRMANTE_E_TOO_LARGE;
	size_t cap = 4 * ((len + 2) / 3) + 1;
	char *s = malloc(cap);
	if (!s)
		return FIRMANTE_E_NOMEM;
	int n = EVP_EncodeBlock((unsigned char *)s, data, (int)len);
	if (n < 0) {
		free(s);
		return FIRMANTE_E_INTERNAL;
	}
	s[n] = '\0';
	*out = s;
	return 0;
}

static int b64_value(unsigned char c)
{
	if (c >= 'A' && c <= 'Z')
		return c - 'A';
	if (c >= 'a' && c <= 'z')
		return c - 'a' + 26;
	if (c >= '0' && c <= '9')
		return c - '0' + 52;
	if (c == '+')
		return 62;
	if (c == '/')
		return 63;
	return -1;
}

int fm_base64_decode(const char *b64, size_t len, uint8_t **out, size_t *out_len)
{
	if (len % 4 != 0 || len > (size_t)INT_MAX)
		return FIRMANTE_E_INVALID;
	size_t pad = 0;
	if (len >= 1 && b64[len - 1] == '=')
		pad++;
	if (len >= 2 && b64[len - 2] == '=')
		pad++;
	for (size_t i = 0; i < len - pad; i++)
		if (b64_value((unsigned char)b64[i]) < 0)
			return FIRMANTE_E_INVALID;
	/* The bits dropped by padding must be zero (canonical form). */
	if (pad == 1 && (b64_value((unsigned char)b64[len - 2]) & 0x3) != 0)
		return FIRMANTE_E_INVALID;
	if (pad == 2 && (b64_value((unsigned char)b64[len - 3]) & 0xf) != 0)
		return FIRMANTE_E_INVALID;
	uint8_t *buf = malloc(len / 4 * 3 + 1);
	if (!buf)
		return FIRMANTE_E_NOMEM;
	int n = len ? EVP_DecodeBlock(buf, (const unsigned char *)b64, (int)len) : 0;
	if (n < 0) {
		free(buf);
		return FIRMANTE_E_INVALID;
	}
	*out = buf;
	*out_len = (size_t)n - pad;
	return 0;
}

int fm_sha256_hex(const void *data, size_t len, char hex[65])
{
	unsigned char md[SHA256_DIGEST_LENGTH];
	unsigned int mdlen = 0;
	if (!EVP_Digest(data, len, md, &mdlen, EVP_sha256(), NULL) || mdlen != sizeof(md))
		return FIRMANTE_E_INTERNAL;
	static const char digits[] = "0123456789abcdef";
	for (size_t i = 0; i < sizeof(md); i++) {
		hex[2 * i] = digits[md[i] >> 4];
		hex[2 * i + 1] = digits[md[i] & 0xf];
	}
	hex[64] = '\0';
	return 0;
}

int fm_read_file(const char *path, size_t max, char **out, size_t *len)
{
	int rc = FIRMANTE_E_IO;
	char *buf = NULL;
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return FIRMANTE_E_IO;
	struct stat st;
	if (fstat(fd, &st) != 0)
		goto out;
	if (!S_ISREG(st.st_mode)) {
		errno = EINVAL;
		goto out;
	}
	if ((unsigned long long)st.st_size > max) {
		rc = FIRMANTE_E_TOO_LARGE;
		goto out;
	}
	size_t cap = (size_t)st.st_size + 1, used = 0;
	buf = malloc(cap);
	if (!buf) {
		rc = FIRMANTE_E_NOMEM;
		goto out;
	}
	for (;;) {
		if (used + 1 == cap) {
			/* The file grew while we read it. */
			if (cap > max) {
				rc = FIRMANTE_E_TOO_LARGE;
				goto out;
			}
			size_t ncap = cap * 2 > max + 1 ? max + 2 : cap * 2;
			char *nb = realloc(buf, ncap);
			if (!nb) {
				rc = FIRMANTE_E_NOMEM;
				goto out;
			}
			buf = nb;
			cap = ncap;
		}
		ssize_t r = read(fd, buf + used, cap - 1 - used);
		if (r < 0) {
			if (errno == EINTR)
				continue;
			goto out;
		}
		if (r == 0)
			break;
		used += (size_t)r;
	}
	if (used > max) {
		rc = FIRMANTE_E_TOO_LARGE;
		goto out;
	}
	buf[used] = '\0';
	*out = buf;
	*len = used;
	buf = NULL;
	rc = 0;
out:
	free(buf);
	close(fd);
	return rc;
}

int fm_write_file_atomic(const char *path, const void *data, size_t len, unsigned mode)
{
	char tmp[PATH_MAX], dir[PATH_MAX];
	int n = snprintf(tmp, sizeof(tmp), "%s.tmp.XXXXXX", path);
	if (n < 0 || (size_t)n >= sizeof(tmp)) {
		errno = ENAMETOOLONG;
		return FIRMANTE_E_IO;
	}
	int fd = mkostemp(tmp, O_CLOEXEC);
	if (fd < 0)
		return FIRMANTE_E_IO;
	const char *p = data;
	size_t left = len;
	while (left > 0) {
		ssize_t w = write(fd, p, left);
		if (w < 0) {
			if (errno == EINTR)
				continue;
			goto fail;
		}
		p += w;
		left -= (size_t)w;
	}
	if (fchmod(fd, (mode_t)mode) != 0 || fsync(fd) != 0)
		goto fail;
	if (close(fd) != 0) {
		fd = -1;
		goto fail;
	}
	fd = -1;
	if (rename(tmp, path) != 0)
		goto fail;
	/* Make the rename durable. */
	snprintf(dir, sizeof(dir), "%s", path);
	char *slash = strrchr(dir, '/');
	if (slash == dir)
		slash[1] = '\0';
	else if (slash)
		*slash = '\0';
	else
		snprintf(dir, sizeof(dir), ".");
	int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (dfd >= 0) {
		(void)fsync(dfd);
		close(dfd);
	}
	return 0;
fail:;
	int saved = errno;
	if (fd >= 0)
		close(fd);
	unlink(tmp);
	errno = saved;
	return FIRMANTE_E_IO;
}

/* ---- batches of new files, one sync (include/firmante/util.h) ---------- */

struct fm_batch {
	int dirfd;
	mode_t mode;
	long pid;
	char *names;   /* final names, each NUL-terminated, packed */
	size_t used, cap;
	size_t count;  /* pending files */
};

static const char batch_suffix[] = ".fmtmp";

/* ".NAME.PID.fmtmp" into @buf (size > FM_BATCH_MAX_NAME + 32). */
static void batch_tmp_name(const struct fm_batch *b, const char *name, char *buf, size_t size)
{
	snprintf(buf, size, ".%s.%ld%s", name, b->pid, batch_suffix);
}

/* The PID of a temporary name of ours, or -1 when @n is not one. */
static long batch_tmp_pid(const char *n)
{
	size_t len = strlen(n), sl = sizeof(batch_suffix) - 1;
	if (n[0] != '.' || len <= sl + 3 || strcmp(n + len - sl, batch_suffix) != 0)
		return -1;
	size_t end = len - sl, start = end;
	while (start > 1 && n[start - 1] >= '0' && n[start - 1] <= '9')
		start--;
	if (start == end || start <= 1 || n[start - 1] != '.' || end - start > 9)
		return -1;
	long pid = 0;
	for (size_t i = start; i < end; i++)
		pid = pid * 10 + (n[i] - '0');
	return pid;
}

/* Remove temporaries whose process no longer runs. */
static int batch_clean_stale(struct fm_batch *b)
{
	int fd = openat(b->dirfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0)
		return FIRMANTE_E_IO;
	DIR *d = fdopendir(fd);
	if (!d) {
		close(fd);
		return FIRMANTE_E_IO;
	}
	struct dirent *e;
	while ((e = readdir(d)) != NULL) {
		long pid = batch_tmp_pid(e->d_name);
		if (pid <= 0 || pid == b->pid)
			continue;
		if (kill((pid_t)pid, 0) == 0 || errno != ESRCH)
			continue; /* its writer may still be running */
		(void)unlinkat(b->dirfd, e->d_name, 0);
	}
	closedir(d);
	return 0;
}

int fm_batch_open(const char *dir, unsigned mode, struct fm_batch **out)
{
	struct fm_batch *b = calloc(1, sizeof(*b));
	if (!b)
		return FIRMANTE_E_NOMEM;
	b->mode = (mode_t)mode;
	b->pid = (long)getpid();
	b->dirfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (b->dirfd < 0 || batch_clean_stale(b) != 0) {
		int saved = errno;
		if (b->dirfd >= 0)
			close(b->dirfd);
		free(b);
		errno = saved;
		return FIRMANTE_E_IO;
	}
	*out = b;
	return 0;
}

static int write_all(int fd, const void *data, size_t len)
{
	const char *p = data;
	while (len > 0) {
		ssize_t w = write(fd, p, len);
		if (w < 0) {
			if (errno == EINTR)
				continue;
			return -1;
		}
		p += w;
		len -= (size_t)w;
	}
	return 0;
}

int fm_batch_add(struct fm_batch *b, const char *name, const void *data, size_t len)
{
	size_t nl = strlen(name);
	if (nl == 0 || nl > FM_BATCH_MAX_NAME || name[0] == '.' || strchr(name, '/'))
		return FIRMANTE_E_INVALID;
	if (b->count >= FM_BATCH_MAX_FILES)
		return FIRMANTE_E_TOO_LARGE;
	if (b->cap - b->used < nl + 1) {
		size_t ncap = b->cap ? b->cap * 2 : 4096;
		while (ncap - b->used < nl + 1)
			ncap *= 2;
		char *nn = realloc(b->names, ncap);
		if (!nn)
			return FIRMANTE_E_NOMEM;
		b->names = nn;
		b->cap = ncap;
	}
	char tmp[FM_BATCH_MAX_NAME + 40];
	batch_tmp_name(b, name, tmp, sizeof(tmp));
	int fd = openat(b->dirfd, tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, b->mode);
	if (fd < 0)
		return FIRMANTE_E_IO;
	if (write_all(fd, data, len) != 0 || fchmod(fd, b->mode) != 0) {
		int saved = errno;
		close(fd);
		unlinkat(b->dirfd, tmp, 0);
		errno = saved;
		return FIRMANTE_E_IO;
	}
	if (close(fd) != 0) {
		int saved = errno;
		unlinkat(b->dirfd, tmp, 0);
		errno = saved;
		return FIRMANTE_E_IO;
	}
	memcpy(b->names + b->used, name, nl + 1);
	b->used += nl + 1;
	b->count++;
	return 0;
}

size_t fm_batch_pending(const struct fm_batch *b)
{
	return b ? b->count : 0;
}

/* Remove the temporaries of the pending names from byte @from on. */
static void batch_drop(struct fm_batch *b, size_t from)
{
	char tmp[FM_BATCH_MAX_NAME + 40];
	for (size_t o = from; o < b->used; o += strlen(b->names + o) + 1) {
		batch_tmp_name(b, b->names + o, tmp, sizeof(tmp));
		(void)unlinkat(b->dirfd, tmp, 0);
	}
	b->used = 0;
	b->count = 0;
}

int fm_batch_commit(struct fm_batch *b, size_t *renamed)
{
	size_t done = 0;
	if (renamed)
		*renamed = 0;
	if (b->count == 0)
		return 0;
	/* One write-back of the filesystem makes every temporary durable
	 * before any of them gets its final name. */
	if (syncfs(b->dirfd) != 0) {
		int saved = errno;
		batch_drop(b, 0);
		errno = saved;
		return FIRMANTE_E_IO;
	}
	char tmp[FM_BATCH_MAX_NAME + 40];
	for (size_t o = 0; o < b->used; o += strlen(b->names + o) + 1) {
		batch_tmp_name(b, b->names + o, tmp, sizeof(tmp));
		if (renameat(b->dirfd, tmp, b->dirfd, b->names + o) != 0) {
			int saved = errno;
			batch_drop(b, o);
			if (renamed)
				*renamed = done;
			(void)fsync(b->dirfd);
			errno = saved;
			return FIRMANTE_E_IO;
		}
		done++;
	}
	b->used = 0;
	b->count = 0;
	if (renamed)
		*renamed = done;
	if (fsync(b->dirfd) != 0)
		return FIRMANTE_E_IO;
	return 0;
}

void fm_batch_free(struct fm_batch *b)
{
	if (!b)
		return;
	int saved = errno;
	batch_drop(b, 0);
	close(b->dirfd);
	free(b->names);
	free(b);
	errno = saved;
}

void fm_wipe(void *p, size_t len)
{
	if (p && len)
		explicit_bzero(p, len);
}

char *fm_trim_copy(char *dst, size_t size, const char *src, size_t src_len)
{
	if (size == 0)
		return dst;
	while (src_len > 0 && (src[0] == ' ' || src[0] == '\t' || src[0] == '\0'))
		src++, src_len--;
	while (src_len > 0 && (src[src_len - 1] == ' ' || src[src_len - 1] == '\t' ||
			       src[src_len - 1] == '\0'))
		src_len--;
	if (src_len >= size)
		src_len = size - 1;
	memcpy(dst, src, src_len);
	dst[src_len] = '\0';
	return dst;
}

int fm_data_path(const char *name, char *buf, size_t size)
{
	const char *dirs[3] = { getenv("FIRMANTE_DATADIR"), FIRMANTE_DATADIR,
				FIRMANTE_SOURCE_DATADIR };
	for (size_t i = 0; i < 3; i++) {
		if (!dirs[i] || !dirs[i][0])
			continue;
		int n = snprintf(buf, size, "%s/%s", dirs[i], name);
		if (n < 0 || (size_t)n >= size)
			continue;
		if (access(buf, R_OK) == 0)
			return 0;
	}
	return FIRMANTE_E_CONFIG;
}

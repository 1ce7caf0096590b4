/* Helpers shared by the fuzz targets (see fuzz.h). */
#include <dirent.h>
#include <fcntl.h>
#include <errno.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fuzz.h"

int fuzz_memfile(const uint8_t *data, size_t size, char *path, size_t path_size)
{
	size_t done = 0;
	int fd;

	fd = memfd_create("fuzz-input", MFD_CLOEXEC);
	if (fd < 0)
		return -1;
	while (done < size) {
		ssize_t n = write(fd, data + done, size - done);

		if (n <= 0) {
			close(fd);
			return -1;
		}
		done += (size_t)n;
	}
	/* Private to us, as the loaders that check ownership want. */
	if (fchmod(fd, 0600) != 0) {
		close(fd);
		return -1;
	}
	snprintf(path, path_size, "/proc/self/fd/%d", fd);
	return fd;
}

int fuzz_write_file(const char *path, const uint8_t *data, size_t size)
{
	size_t done = 0;
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0600);

	if (fd < 0)
		return -1;
	while (done < size) {
		ssize_t n = write(fd, data + done, size - done);

		if (n <= 0) {
			close(fd);
			return -1;
		}
		done += (size_t)n;
	}
	return close(fd);
}

char *fuzz_source_path(const char *rel, char *buf, size_t size)
{
	snprintf(buf, size, "%s/%s", FIRMANTE_SOURCE_DIR, rel);
	return buf;
}

static char g_private[64];

/* Remove @dir and what it holds (@depth levels of subdirectories). */
static void remove_tree(const char *dir, int depth)
{
	struct dirent *de;
	DIR *d = opendir(dir);
	char p[4096];

	if (!d)
		return;
	while ((de = readdir(d)) != NULL) {
		if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
			continue;
		snprintf(p, sizeof(p), "%s/%s", dir, de->d_name);
		if (unlink(p) != 0 && depth > 0)
			remove_tree(p, depth - 1);
	}
	closedir(d);
	rmdir(dir);
}

static void remove_private(void)
{
	remove_tree(g_private, 2);
}

char *fuzz_private_path(const char *name, char *buf, size_t size)
{
	if (!g_private[0]) {
		snprintf(g_private, sizeof(g_private), "/tmp/firmante-fuzz.XXXXXX");
		if (!mkdtemp(g_private))
			fuzz_fail("mkdtemp: %s", strerror(errno));
		atexit(remove_private);
	}
	snprintf(buf, size, "%s/%s", g_private, name);
	return buf;
}

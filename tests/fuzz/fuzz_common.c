/* Helpers shared by the fuzz targets (see fuzz.h). */
#include <sys/mman.h>
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
	snprintf(path, path_size, "/proc/self/fd/%d", fd);
	return fd;
}

char *fuzz_source_path(const char *rel, char *buf, size_t size)
{
	snprintf(buf, size, "%s/%s", FIRMANTE_SOURCE_DIR, rel);
	return buf;
}

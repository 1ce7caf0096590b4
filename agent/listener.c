/* firmanted: the Unix-socket listener (directory 0700, socket 0600). */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "agent.h"
#include "firmante/protocol.h"

/* Check (or create) the directory holding the socket: 0700, or 0750 with
 * group @gid when a group may use the agent ((gid_t)-1: none). */
static int prepare_dir(const char *dir, gid_t gid, char *err, size_t err_size)
{
	struct stat sb;

	if (mkdir(dir, 0700) != 0 && errno != EEXIST) {
		snprintf(err, err_size, "cannot create %s: %s", dir, strerror(errno));
		return FIRMANTE_E_CONFIG;
	}
	if (lstat(dir, &sb) != 0) {
		snprintf(err, err_size, "%s: %s", dir, strerror(errno));
		return FIRMANTE_E_CONFIG;
	}
	if (!S_ISDIR(sb.st_mode)) {
		snprintf(err, err_size, "%s is not a directory (symbolic links are refused)", dir);
		return FIRMANTE_E_CONFIG;
	}
	if (sb.st_uid != geteuid()) {
		snprintf(err, err_size, "%s belongs to uid %lu, not to us (uid %lu); refusing it",
			 dir, (unsigned long)sb.st_uid, (unsigned long)geteuid());
		return FIRMANTE_E_CONFIG;
	}
	if (gid != (gid_t)-1) {
		/* Open the directory to the configured group only. */
		if ((sb.st_gid != gid && chown(dir, (uid_t)-1, gid) != 0) || chmod(dir, 0750) != 0) {
			snprintf(err, err_size, "%s: cannot give it to group %lu with mode 0750: %s",
				 dir, (unsigned long)gid, strerror(errno));
			return FIRMANTE_E_CONFIG;
		}
		return 0;
	}
	if (sb.st_mode & 077) {
		snprintf(err, err_size,
			 "%s is accessible to group or others (mode %04o); it must be 0700",
			 dir, (unsigned)(sb.st_mode & 07777));
		return FIRMANTE_E_CONFIG;
	}
	return 0;
}

/* Remove a socket left by an agent that is gone; refuse if one answers. */
static int remove_stale(const char *path, const struct sockaddr_un *sa, char *err, size_t err_size)
{
	struct stat sb;
	int fd = -1, rc = 0;

	if (lstat(path, &sb) != 0) {
		if (errno == ENOENT)
			goto out;
		snprintf(err, err_size, "%s: %s", path, strerror(errno));
		rc = FIRMANTE_E_CONFIG;
		goto out;
	}
	if (!S_ISSOCK(sb.st_mode)) {
		snprintf(err, err_size, "%s exists and is not a socket; not removing it", path);
		rc = FIRMANTE_E_CONFIG;
		goto out;
	}
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		snprintf(err, err_size, "socket: %s", strerror(errno));
		rc = FIRMANTE_E_IO;
		goto out;
	}
	if (connect(fd, (const struct sockaddr *)sa, sizeof(*sa)) == 0) {
		snprintf(err, err_size, "another agent is already listening on %s", path);
		rc = FIRMANTE_E_CONFIG;
		goto out;
	}
	if (unlink(path) != 0 && errno != ENOENT) {
		snprintf(err, err_size, "cannot remove stale socket %s: %s", path, strerror(errno));
		rc = FIRMANTE_E_CONFIG;
		goto out;
	}
out:
	if (fd >= 0)
		close(fd);
	return rc;
}

int agent_listen_unix(const char *path, int backlog, int *out_fd, char *err, size_t err_size)
{
	return agent_listen_unix_group(path, backlog, (gid_t)-1, out_fd, err, err_size);
}

int agent_listen_unix_group(const char *path, int backlog, gid_t gid, int *out_fd, char *err,
			    size_t err_size)
{
	struct sockaddr_un sa;
	char dir[AGENT_SOCKET_PATH_MAX];
	char *slash;
	mode_t old_mask;
	int fd = -1, rc = 0;

	memset(&sa, 0, sizeof(sa));
	sa.sun_family = AF_UNIX;
	if (path[0] != '/' || strlen(path) >= sizeof(sa.sun_path)) {
		snprintf(err, err_size, "socket path must be absolute and shorter than %zu bytes",
			 sizeof(sa.sun_path));
		rc = FIRMANTE_E_CONFIG;
		goto out;
	}
	memcpy(sa.sun_path, path, strlen(path) + 1);
	memcpy(dir, path, strlen(path) + 1);
	slash = strrchr(dir, '/');
	if (slash == dir || !slash[1]) {
		snprintf(err, err_size, "socket path %s needs its own directory", path);
		rc = FIRMANTE_E_CONFIG;
		goto out;
	}
	*slash = '\0';
	rc = prepare_dir(dir, gid, err, err_size);
	if (rc)
		goto out;
	rc = remove_stale(path, &sa, err, err_size);
	if (rc)
		goto out;
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		snprintf(err, err_size, "socket: %s", strerror(errno));
		rc = FIRMANTE_E_IO;
		goto out;
	}
	/* The directory already keeps others out; the umask closes the window
	 * between bind() and chmod() as well. */
	old_mask = umask(0177);
	if (bind(fd, (const struct sockaddr *)&sa, sizeof(sa)) != 0) {
		int e = errno;

		umask(old_mask);
		snprintf(err, err_size, "bind %s: %s", path, strerror(e));
		rc = FIRMANTE_E_IO;
		goto out;
	}
	umask(old_mask);
	if ((gid != (gid_t)-1 && chown(path, (uid_t)-1, gid) != 0) ||
	    chmod(path, gid != (gid_t)-1 ? 0660 : 0600) != 0) {
		snprintf(err, err_size, "chmod %s: %s", path, strerror(errno));
		rc = FIRMANTE_E_IO;
		unlink(path);
		goto out;
	}
	if (listen(fd, backlog) != 0) {
		snprintf(err, err_size, "listen %s: %s", path, strerror(errno));
		rc = FIRMANTE_E_IO;
		unlink(path);
		goto out;
	}
	*out_fd = fd;
	fd = -1;
out:
	if (fd >= 0)
		close(fd);
	return rc;
}

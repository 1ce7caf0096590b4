/* firmanted and systemd: socket activation and readiness (libsystemd). */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>

#include <systemd/sd-daemon.h>

#include "firmante/protocol.h"
#include "systemd.h"

int agent_systemd_listen_fd(int *out_fd, char *err, size_t err_size)
{
	int n, fd, flags;

	n = sd_listen_fds(1);
	if (n < 0) {
		snprintf(err, err_size, "socket activation: %s", strerror(-n));
		return FIRMANTE_E_CONFIG;
	}
	if (n == 0) {
		*out_fd = -1;
		return 0;
	}
	if (n > 1) {
		snprintf(err, err_size,
			 "socket activation: systemd passed %d sockets; firmanted.socket must "
			 "listen on exactly one", n);
		return FIRMANTE_E_CONFIG;
	}
	fd = SD_LISTEN_FDS_START;
	if (sd_is_socket_unix(fd, SOCK_STREAM, 1, NULL, 0) <= 0) {
		snprintf(err, err_size,
			 "socket activation: the socket systemd passed is not a listening Unix "
			 "stream socket (ListenStream= must be a path)");
		return FIRMANTE_E_CONFIG;
	}
	flags = fcntl(fd, F_GETFD);
	if (flags < 0 || fcntl(fd, F_SETFD, flags | FD_CLOEXEC) < 0) {
		snprintf(err, err_size, "socket activation: fcntl: %s", strerror(errno));
		return FIRMANTE_E_CONFIG;
	}
	*out_fd = fd;
	return 0;
}

void agent_systemd_ready(const char *where)
{
	if (where)
		sd_notifyf(0, "READY=1\nSTATUS=Serving on %s", where);
	else
		sd_notify(0, "READY=1");
}

void agent_systemd_stopping(void)
{
	sd_notify(0, "STOPPING=1");
}

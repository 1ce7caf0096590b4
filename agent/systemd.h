/*
 * firmanted and systemd (prefix agent_systemd_): socket activation and
 * readiness, through libsystemd (sd_listen_fds(3), sd_notify(3)).
 * Outside systemd every function here does nothing and succeeds.
 */
#ifndef FIRMANTE_AGENT_SYSTEMD_H
#define FIRMANTE_AGENT_SYSTEMD_H

#include <stddef.h>

/*
 * agent_systemd_listen_fd - the listening socket systemd passed to us
 * (firmanted.socket), if any. Consumes $LISTEN_FDS/$LISTEN_PID (sd_listen_fds
 * with unset_environment, so programs we start do not see them).
 * @out_fd: written on success: the passed socket (made close-on-exec), or
 *          -1 when the agent was not socket-activated and must listen itself.
 * Returns 0; FIRMANTE_E_CONFIG when systemd passed more than one socket or
 * one that is not a listening Unix stream socket (@err says which; the unit
 * file is wrong).
 */
int agent_systemd_listen_fd(int *out_fd, char *err, size_t err_size);

/*
 * agent_systemd_ready - tell systemd (Type=notify) that the agent serves
 * requests now; @where (the socket, for the status line) may be NULL.
 * Without $NOTIFY_SOCKET this does nothing.
 */
void agent_systemd_ready(const char *where);

/* agent_systemd_stopping - tell systemd the agent is shutting down. */
void agent_systemd_stopping(void);

#endif

/*
 * firmanted internals (prefix agent_): configuration, the Unix-socket
 * listener, the HTTP front end, holder approval through pinentry.
 *
 * Not installed; the protocol contract is docs/protocol.md and
 * include/firmante/protocol.h.
 */
#ifndef FIRMANTE_AGENT_H
#define FIRMANTE_AGENT_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>
#include <time.h>

#include "firmante/token.h"

/* Caps of the configuration. */
#define AGENT_MAX_MODULES 32
#define AGENT_MAX_PINENTRY_ARGS 32
#define AGENT_PATH_MAX 4096
/* sizeof(((struct sockaddr_un *)0)->sun_path) on Linux. */
#define AGENT_SOCKET_PATH_MAX 108
#define AGENT_MAX_CLIENTS_LIMIT 1024
#define AGENT_MAX_APPROVAL_TIMEOUT 3600

/* The agent's configuration ([agent] section of firmanted.conf). */
struct agent_config {
	char socket_path[AGENT_SOCKET_PATH_MAX];
	char *modules[AGENT_MAX_MODULES];   /* owned */
	size_t n_modules;
	bool use_p11kit_modules;            /* default true */
	char *pinentry_argv[AGENT_MAX_PINENTRY_ARGS + 1]; /* owned, NULL-terminated */
	size_t pinentry_argc;
	long approval_timeout;              /* seconds, default 120 */
	bool allow_extractable_keys;        /* default false */
	unsigned max_clients;               /* default 16 */
	char source[AGENT_PATH_MAX];        /* file read, "" when defaults only */
};

/*
 * agent_config_defaults - fill @cfg with the built-in defaults (socket under
 * $XDG_RUNTIME_DIR, pinentry "pinentry", ...). Returns 0, FIRMANTE_E_CONFIG
 * (no usable runtime directory or path too long; @err says why),
 * FIRMANTE_E_NOMEM. Free with agent_config_clear().
 */
int agent_config_defaults(struct agent_config *cfg, char *err, size_t err_size);

/*
 * agent_config_default_path - $XDG_CONFIG_HOME/firmante/firmanted.conf, or
 * $HOME/.config/firmante/firmanted.conf. Returns 0 or FIRMANTE_E_CONFIG.
 */
int agent_config_default_path(char *buf, size_t size);

/*
 * agent_config_load - read @path (INI, libinih) over the defaults in @cfg.
 * @missing_ok: a file that does not exist leaves the defaults in place.
 * @err: on failure "FILE:LINE: message" (unknown key, bad value...).
 * Returns 0, FIRMANTE_E_CONFIG, FIRMANTE_E_NOMEM.
 */
int agent_config_load(struct agent_config *cfg, const char *path, bool missing_ok,
		      char *err, size_t err_size);

/* agent_config_clear - free what @cfg owns; NULL is a no-op. */
void agent_config_clear(struct agent_config *cfg);

/*
 * agent_listen_unix - create the socket's directory (0700) if needed,
 * refuse one that is not ours or is group/other accessible, remove a
 * stale socket, bind, chmod 0600 and listen.
 * @out_fd: the listening socket (close-on-exec), written on success.
 * Returns 0, FIRMANTE_E_CONFIG (unsafe directory, another agent is
 * listening, path unusable; @err says why), FIRMANTE_E_IO.
 */
int agent_listen_unix(const char *path, int backlog, int *out_fd, char *err, size_t err_size);

/* Who is calling: from SO_PEERCRED and /proc/<pid>/exe. */
struct agent_caller {
	uid_t uid;
	pid_t pid;
	char exe[512]; /* "?" when unreadable; control characters replaced */
};

/* What the holder is shown and asked for one signature. */
struct agent_approval {
	const struct agent_caller *caller;
	const struct fp11_identity *identity;
	const char *folio_control;
	const char *graduate_name;    /* "NOMBRE PRIMERAPELLIDO SEGUNDOAPELLIDO" */
	const char *graduate_curp;
	const char *nombre_carrera;
	const char *fecha_expedicion;
	const char *nombre_institucion;
	const char *cargo;            /* the signer's cargo in the document */
};

typedef struct agent_pinentry agent_pinentry;

/*
 * agent_pinentry_open - start the configured pinentry program (posix_spawn,
 * socketpair as its stdin/stdout, no shell) and greet it through libassuan.
 * @timeout: seconds each dialog may stay open; after that the program is
 *           killed and the dialog counts as denied.
 * @out: written on success; close with agent_pinentry_close().
 * Returns 0, FIRMANTE_E_PINENTRY, FIRMANTE_E_NOMEM.
 */
int agent_pinentry_open(const struct agent_config *cfg, agent_pinentry **out,
			char *detail, size_t detail_size);

/*
 * agent_pinentry_confirm - show the CONFIRM dialog for @a.
 * Returns 0 when the holder approved; FIRMANTE_E_USER_DENIED (no, cancel,
 * or timeout; @detail says which), FIRMANTE_E_PINENTRY.
 */
int agent_pinentry_confirm(agent_pinentry *p, const struct agent_approval *a,
			   char *detail, size_t detail_size);

/*
 * agent_pinentry_getpin - GETPIN for @tok; the PIN is written into @pin
 * (NUL-terminated, at most @pin_size - 1 bytes); internal copies are wiped.
 * Returns 0, FIRMANTE_E_USER_DENIED, FIRMANTE_E_PINENTRY.
 */
int agent_pinentry_getpin(agent_pinentry *p, const struct fp11_token_info *tok,
			  bool context_specific, const char *folio_control,
			  char *pin, size_t pin_size, char *detail, size_t detail_size);

/* agent_pinentry_close - BYE, release, reap the program. NULL is a no-op. */
void agent_pinentry_close(agent_pinentry *p);

/*
 * agent_pinentry_abort_all - at shutdown: kill the dialog on screen (its
 * request fails with FIRMANTE_E_PINENTRY) and refuse to open new ones.
 */
void agent_pinentry_abort_all(void);

/* The running agent, shared by every connection thread. */
struct agent {
	const struct agent_config *cfg;
	fp11_ctx *p11;
	time_t started;
};

struct MHD_Daemon;

/*
 * agent_http_start - serve the protocol on @listen_fd (which the daemon
 * then owns) with libmicrohttpd: a thread per connection, connection limit
 * cfg->max_clients. Returns 0 or FIRMANTE_E_INTERNAL.
 */
int agent_http_start(struct agent *agent, int listen_fd, struct MHD_Daemon **out);

/* agent_http_stop - stop serving; NULL is a no-op. */
void agent_http_stop(struct MHD_Daemon *d);

/*
 * agent_log - one line on stderr: UTC time, then the formatted text.
 * Serialised between threads. Never pass a PIN or document content.
 */
void agent_log(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* agent_sanitize - replace control characters of @s (in place) by '?'. */
void agent_sanitize(char *s);

#endif

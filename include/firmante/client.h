/*
 * libfirmante-client: talk to the firmanted agent over its Unix socket.
 *
 * The protocol is HTTP/1.1 with JSON bodies (docs/protocol.md). This
 * library hides the transport; replies are handed back as JSON text so the
 * caller picks its own JSON library. Errors come back as RFC 9457 problem
 * details, decoded into struct firmante_problem.
 *
 * A firmante_client is not thread-safe; use one per thread.
 */
#ifndef FIRMANTE_CLIENT_H
#define FIRMANTE_CLIENT_H

#include <stddef.h>

#include "firmante/protocol.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct firmante_client firmante_client;

/* An error reply (or a transport failure) in readable form. */
struct firmante_problem {
	int err;            /* negative enum firmante_err */
	int http_status;    /* 0 when no HTTP answer arrived */
	char code[64];      /* stable machine code, e.g. "user-denied" */
	char title[256];
	char detail[1024];  /* the agent's sentence about this case */
};

/* The agent's answer to a title signature request. */
struct firmante_sello {
	char *sello;            /* Base64, one line (§6 of the standard) */
	char *certificado;      /* Base64 of the DER certificate (§7) */
	char no_certificado[21];/* 20 ASCII digits */
	char curp[19];          /* CURP of the certificate = FirmaResponsable/@curp */
	char cadena_sha256[65]; /* hex SHA-256 of the cadena the agent signed */
	int firmante_index;     /* 0-based FirmaResponsable the sello belongs to */
};

/*
 * firmante_default_socket_path - $FIRMANTE_SOCKET if set, else
 * $XDG_RUNTIME_DIR/firmante/agent.sock, else /run/user/<uid>/firmante/agent.sock.
 * @buf, @size: output buffer. Returns 0 or FIRMANTE_E_CONFIG (too long).
 */
int firmante_default_socket_path(char *buf, size_t size);

/*
 * firmante_client_new - prepare a client; nothing is connected yet.
 * @socket_path: the agent's socket, or NULL for the default path.
 * @out: written on success; free with firmante_client_free().
 * Returns 0, FIRMANTE_E_NOMEM, FIRMANTE_E_CONFIG.
 */
int firmante_client_new(const char *socket_path, firmante_client **out);

/* firmante_client_free - NULL is a no-op. */
void firmante_client_free(firmante_client *c);

/*
 * firmante_client_set_timeout - overall time limit of one request, in
 * seconds (default 600: a signature waits for the holder). 0 = no limit.
 */
void firmante_client_set_timeout(firmante_client *c, long seconds);

/*
 * firmante_client_request - one HTTP request to the agent.
 * @method: "GET" or "POST"; @path: e.g. "/v1/status".
 * @json_body: request body for POST (NUL-terminated JSON), or NULL.
 * @reply: on a 2xx answer, the malloc'd body (NUL-terminated); caller frees.
 * @problem: may be NULL; on failure filled from the problem+json reply or
 *           from the transport error.
 * Returns 0, FIRMANTE_E_AGENT_UNREACHABLE (no agent at the socket, or
 * refused), FIRMANTE_E_TIMEOUT, FIRMANTE_E_PROTOCOL (unreadable reply),
 * FIRMANTE_E_NOMEM, or the error decoded from the agent's problem reply.
 */
int firmante_client_request(firmante_client *c, const char *method, const char *path,
			    const char *json_body, char **reply,
			    struct firmante_problem *problem);

/*
 * firmante_client_sign_titulo - POST /v1/sign with format
 * "titulo-electronico": the agent finds the FirmaResponsable whose curp is
 * the certificate's, rebuilds its cadena original, asks the holder, and
 * signs on the token.
 * @xml, @len: the unsigned title document (UTF-8).
 * @key_uri: PKCS#11 URI (RFC 7512) of the signer's key.
 * @request_id: client-chosen id echoed by the agent, or NULL.
 * @out: written on success; release with firmante_sello_clear().
 * Returns 0 or an error as for firmante_client_request(); FIRMANTE_E_PROTOCOL
 * when the reply lacks a field.
 */
int firmante_client_sign_titulo(firmante_client *c, const char *xml, size_t len,
				const char *key_uri, const char *request_id,
				struct firmante_sello *out, struct firmante_problem *problem);

/* firmante_sello_clear - free the strings of @s and zero it. NULL is a no-op. */
void firmante_sello_clear(struct firmante_sello *s);

#ifdef __cplusplus
}
#endif
#endif

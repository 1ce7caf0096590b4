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

/* One document of a batch: the unsigned title and the caller's id for it. */
struct firmante_batch_doc {
	const char *id;   /* echoed with its result; at most 128 printable characters */
	const char *xml;  /* UTF-8, at most FIRMANTE_MAX_DOCUMENT bytes */
	size_t len;
};

/* What the holder approved: the manifest the agent showed. */
struct firmante_batch_manifest {
	size_t count;
	char first_folio[64];
	char last_folio[64];
	char manifest_sha256[65]; /* SHA-256 over each cadena's hex SHA-256 + "\n", in order */
	char batch[64];           /* the agent's batch id (audit log) */
};

/*
 * Progress callback of firmante_client_sign_batch(). Called once with
 * @index == (size_t)-1 when the batch was approved (@manifest filled,
 * @sello and @problem NULL), then once per document in order: @sello
 * (borrowed, valid during the call) on success, or @problem on failure (the
 * batch stops there). Return 0 to go on, non-zero to cancel: the connection
 * is closed and the agent signs nothing more.
 */
typedef int (*firmante_batch_cb)(void *data, const struct firmante_batch_manifest *manifest,
				 size_t index, const char *doc_id,
				 const struct firmante_sello *sello,
				 const struct firmante_problem *problem);

/*
 * Event callback of a batch stream: the lines with an "event" member
 * (docs/protocol.md "POST /v1/sign-batch"): "paused" when the signer's token
 * was removed (@reason "token-removed", @token_label the token, @timeout_s
 * the seconds the agent waits for it, from batch-pause-timeout) and
 * "resumed" when it is back. @index is the document the batch stopped at
 * (0-based) or (size_t)-1 when the line has none; @reason, @token_label
 * may be NULL and @timeout_s -1 when absent. All strings are borrowed,
 * valid during the call. Events this version does not know are passed on
 * as they are.
 */
typedef void (*firmante_batch_event_cb)(void *data, const char *event, const char *reason,
					size_t index, const char *token_label, long timeout_s);

/*
 * firmante_client_set_batch_events - call @cb (with @data) for every event
 * line of the batches @c sends from now on; @cb NULL stops it. @c NULL is
 * a no-op. Nothing is returned: it cannot fail.
 */
void firmante_client_set_batch_events(firmante_client *c, firmante_batch_event_cb cb, void *data);

/*
 * firmante_client_sign_batch - POST /v1/sign-batch: the agent checks every
 * document, asks the holder once over a manifest (count, folio range,
 * careers, SHA-256 over the cadenas), then signs them one after the other,
 * streaming each result (docs/protocol.md "POST /v1/sign-batch").
 * @docs, @n: 1 to 1000 documents. @key_uri: the signer's key (RFC 7512).
 * @request_id: echoed id, or NULL. @cb: progress, see firmante_batch_cb.
 * @signed_count: documents signed (may be NULL); written also on failure.
 * The client's timeout applies to silence (no byte for that many seconds),
 * not to the whole batch.
 * Returns 0 when every document was signed; the agent's error before any
 * signature (e.g. FIRMANTE_E_USER_DENIED, FIRMANTE_E_BAD_DOCUMENT naming
 * documents[i]); the error that stopped the batch; FIRMANTE_E_USER_DENIED
 * with code "cancelled" when @cb cancelled; FIRMANTE_E_PROTOCOL,
 * FIRMANTE_E_TIMEOUT, FIRMANTE_E_AGENT_UNREACHABLE, FIRMANTE_E_NOMEM.
 */
int firmante_client_sign_batch(firmante_client *c, const char *key_uri, const char *request_id,
			       const struct firmante_batch_doc *docs, size_t n,
			       firmante_batch_cb cb, void *cb_data, size_t *signed_count,
			       struct firmante_problem *problem);

#ifdef __cplusplus
}
#endif
#endif

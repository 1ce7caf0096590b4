/*
 * firmante agent protocol, version 1: wire constants and error codes.
 *
 * The agent speaks HTTP/1.1 with JSON bodies on a Unix socket (and, later,
 * on a loopback TCP port for browsers). Every error reply is an RFC 9457
 * "problem details" object (media type application/problem+json) whose
 * member "code" holds one of the stable machine codes below. The codes are
 * part of the contract: they never change meaning and are never reused.
 * docs/protocol.md describes every endpoint; this header is its C side.
 */
#ifndef FIRMANTE_PROTOCOL_H
#define FIRMANTE_PROTOCOL_H

#ifdef __cplusplus
extern "C" {
#endif

/* Protocol version served under /v1. */
#define FIRMANTE_PROTOCOL_VERSION 1
#define FIRMANTE_API_PREFIX "/v1"

/* Caps (bytes). A request body above FIRMANTE_MAX_BODY gets 413. */
#define FIRMANTE_MAX_BODY (8u * 1024u * 1024u)
/* One title document inside a request. */
#define FIRMANTE_MAX_DOCUMENT (1024u * 1024u)
/* Client-chosen request id, echoed in replies. */
#define FIRMANTE_MAX_REQUEST_ID 128u

/* Media types. */
#define FIRMANTE_MEDIA_JSON "application/json"
#define FIRMANTE_MEDIA_PROBLEM "application/problem+json"

/*
 * Header by which the native messaging relay (firmante-nm) passes, on the
 * Unix socket, the origin of the web page it speaks for
 * ("http(s)://host[:port]"). The agent then treats the caller as a browser
 * page: interactive approval only (docs/protocol.md, "Native messaging relay").
 */
#define FIRMANTE_HEADER_ORIGIN "X-Firmante-Origin"

/* Value of "format" in POST /v1/sign for a Título Electrónico v1.0. */
#define FIRMANTE_FORMAT_TITULO "titulo-electronico"

/*
 * Error codes. Functions across firmante return 0 on success or one of
 * these negative values. firmante_err_code() gives the stable wire string.
 */
enum firmante_err {
	FIRMANTE_OK = 0,
	FIRMANTE_E_INTERNAL = -1,           /* "internal" */
	FIRMANTE_E_NOMEM = -2,              /* "out-of-memory" */
	FIRMANTE_E_BAD_REQUEST = -3,        /* "bad-request" */
	FIRMANTE_E_NOT_FOUND = -4,          /* "not-found" */
	FIRMANTE_E_METHOD = -5,             /* "method-not-allowed" */
	FIRMANTE_E_TOO_LARGE = -6,          /* "payload-too-large" */
	FIRMANTE_E_FORBIDDEN = -7,          /* "forbidden" */
	FIRMANTE_E_KEY_NOT_FOUND = -8,      /* "key-not-found" */
	FIRMANTE_E_KEY_EXTRACTABLE = -9,    /* "key-extractable" */
	FIRMANTE_E_CERT_EXPIRED = -10,      /* "cert-expired" */
	FIRMANTE_E_CERT_NOT_YET_VALID = -11,/* "cert-not-yet-valid" */
	FIRMANTE_E_CERT_NOT_FIEL = -12,     /* "cert-not-fiel" */
	FIRMANTE_E_CERT_INVALID = -13,      /* "cert-invalid" */
	FIRMANTE_E_CERT_SERIAL = -14,       /* "cert-serial-not-sat" */
	FIRMANTE_E_BAD_DOCUMENT = -15,      /* "bad-document" */
	FIRMANTE_E_SIGNER_NOT_IN_DOCUMENT = -16, /* "signer-not-in-document" */
	FIRMANTE_E_USER_DENIED = -17,       /* "user-denied" */
	FIRMANTE_E_PIN_INCORRECT = -18,     /* "pin-incorrect" */
	FIRMANTE_E_PIN_LOCKED = -19,        /* "pin-locked" */
	FIRMANTE_E_TOKEN_REMOVED = -20,     /* "token-removed" */
	FIRMANTE_E_TOKEN = -21,             /* "token-error" */
	FIRMANTE_E_PINENTRY = -22,          /* "pinentry-failed" */
	FIRMANTE_E_TIMEOUT = -23,           /* "timeout" */
	FIRMANTE_E_UNSUPPORTED_FORMAT = -24,/* "unsupported-format" */
	FIRMANTE_E_AGENT_UNREACHABLE = -25, /* "agent-unreachable" (client side) */
	FIRMANTE_E_PROTOCOL = -26,          /* "protocol-error" (client side) */
	FIRMANTE_E_IO = -27,                /* "io-error" */
	FIRMANTE_E_MECHANISM = -28,         /* "mechanism-unsupported" */
	FIRMANTE_E_NO_CURP = -29,           /* "cert-no-curp" */
	FIRMANTE_E_CONFIG = -30,            /* "config-error" */
	FIRMANTE_E_PIN_FINAL_TRY = -31,     /* "pin-final-try" */
	FIRMANTE_E_INVALID = -32,           /* "invalid" (a value broke a rule) */
	FIRMANTE_E_TOKEN_TIMEOUT = -33,     /* "token-timeout" (a token call passed its deadline) */
	FIRMANTE_E_POLICY_LIMIT = -34,      /* "policy-limit" (an unattended caller's daily cap) */
	FIRMANTE_E_BUSY = -35,              /* "busy" (too many requests waiting for the holder) */
	FIRMANTE_E__LAST = -35
};

/*
 * firmante_err_code - stable machine code of an error.
 * @err: 0 or a negative enum firmante_err value.
 * Returns a static string ("ok" for 0, "internal" for unknown values).
 */
const char *firmante_err_code(int err);

/*
 * firmante_err_title - one English sentence describing the error class.
 * Returns a static string; never NULL.
 */
const char *firmante_err_title(int err);

/*
 * firmante_err_from_code - inverse of firmante_err_code().
 * @code: a machine code as received on the wire; may be NULL.
 * Returns the negative error value, or FIRMANTE_E_PROTOCOL for an unknown code.
 */
int firmante_err_from_code(const char *code);

/*
 * firmante_err_http_status - HTTP status the agent answers with for @err
 * (RFC 9110 §15). 0 gives 200.
 */
int firmante_err_http_status(int err);

#ifdef __cplusplus
}
#endif
#endif

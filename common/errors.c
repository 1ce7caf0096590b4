/* Stable error codes of the agent protocol (include/firmante/protocol.h). */
#include <string.h>

#include "firmante/protocol.h"

struct err_row {
	int err;
	const char *code;
	int http;
	const char *title;
};

static const struct err_row rows[] = {
	{ FIRMANTE_OK, "ok", 200, "Success" },
	{ FIRMANTE_E_INTERNAL, "internal", 500, "Internal error in the agent" },
	{ FIRMANTE_E_NOMEM, "out-of-memory", 503, "Out of memory" },
	{ FIRMANTE_E_BAD_REQUEST, "bad-request", 400, "The request is malformed" },
	{ FIRMANTE_E_NOT_FOUND, "not-found", 404, "No such endpoint" },
	{ FIRMANTE_E_METHOD, "method-not-allowed", 405, "Method not allowed on this endpoint" },
	{ FIRMANTE_E_TOO_LARGE, "payload-too-large", 413, "The request body is larger than the agent accepts" },
	{ FIRMANTE_E_FORBIDDEN, "forbidden", 403, "The caller is not allowed to use the agent" },
	{ FIRMANTE_E_KEY_NOT_FOUND, "key-not-found", 404, "No signing key matches the given reference" },
	{ FIRMANTE_E_KEY_EXTRACTABLE, "key-extractable", 409, "The key can be extracted from its token; the agent refuses to use it" },
	{ FIRMANTE_E_CERT_EXPIRED, "cert-expired", 409, "The signer's certificate has expired" },
	{ FIRMANTE_E_CERT_NOT_YET_VALID, "cert-not-yet-valid", 409, "The signer's certificate is not valid yet" },
	{ FIRMANTE_E_CERT_NOT_FIEL, "cert-not-fiel", 409, "The certificate is a CSD (sello digital), not an e.firma (FIEL)" },
	{ FIRMANTE_E_CERT_INVALID, "cert-invalid", 409, "The certificate cannot be read as an X.509 certificate" },
	{ FIRMANTE_E_CERT_SERIAL, "cert-serial-not-sat", 409, "The certificate serial is not a 20-digit SAT certificate number" },
	{ FIRMANTE_E_BAD_DOCUMENT, "bad-document", 422, "The document is not a valid Título Electrónico" },
	{ FIRMANTE_E_SIGNER_NOT_IN_DOCUMENT, "signer-not-in-document", 422, "No FirmaResponsable in the document has the certificate's CURP" },
	{ FIRMANTE_E_USER_DENIED, "user-denied", 403, "The holder denied the signature" },
	{ FIRMANTE_E_PIN_INCORRECT, "pin-incorrect", 403, "The PIN is incorrect" },
	{ FIRMANTE_E_PIN_LOCKED, "pin-locked", 423, "The token's PIN is locked" },
	{ FIRMANTE_E_TOKEN_REMOVED, "token-removed", 410, "The token was removed" },
	{ FIRMANTE_E_TOKEN, "token-error", 502, "The token reported an error" },
	{ FIRMANTE_E_PINENTRY, "pinentry-failed", 500, "The PIN and confirmation dialog could not be shown" },
	{ FIRMANTE_E_TIMEOUT, "timeout", 504, "No answer in time" },
	{ FIRMANTE_E_UNSUPPORTED_FORMAT, "unsupported-format", 415, "Unsupported document format" },
	{ FIRMANTE_E_AGENT_UNREACHABLE, "agent-unreachable", 503, "The signing agent is not running or cannot be reached" },
	{ FIRMANTE_E_PROTOCOL, "protocol-error", 502, "The agent's reply could not be understood" },
	{ FIRMANTE_E_IO, "io-error", 500, "Input/output error" },
	{ FIRMANTE_E_MECHANISM, "mechanism-unsupported", 409, "The token offers no RSA PKCS#1 v1.5 signing mechanism for this key" },
	{ FIRMANTE_E_NO_CURP, "cert-no-curp", 409, "The certificate carries no CURP" },
	{ FIRMANTE_E_CONFIG, "config-error", 500, "Configuration error" },
	{ FIRMANTE_E_PIN_FINAL_TRY, "pin-final-try", 409, "The token allows one more PIN try only; an explicit confirmation is needed" },
	{ FIRMANTE_E_INVALID, "invalid", 422, "A value breaks a rule" },
	{ FIRMANTE_E_TOKEN_TIMEOUT, "token-timeout", 504, "The token did not answer in time; the request was abandoned" },
	{ FIRMANTE_E_POLICY_LIMIT, "policy-limit", 429, "The caller reached the daily signature cap of its policy" },
	{ FIRMANTE_E_BUSY, "busy", 503, "Too many requests are waiting for the holder; try again later" },
};

static const struct err_row *find(int err)
{
	for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++)
		if (rows[i].err == err)
			return &rows[i];
	return &rows[1]; /* internal */
}

const char *firmante_err_code(int err)
{
	return find(err)->code;
}

const char *firmante_err_title(int err)
{
	return find(err)->title;
}

int firmante_err_http_status(int err)
{
	return find(err)->http;
}

int firmante_err_from_code(const char *code)
{
	if (!code)
		return FIRMANTE_E_PROTOCOL;
	for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++)
		if (strcmp(rows[i].code, code) == 0)
			return rows[i].err;
	return FIRMANTE_E_PROTOCOL;
}

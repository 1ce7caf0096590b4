/*
 * The DGP's MET web service (prefix met_): SOAP 1.1 client for the four
 * operations of the official WSDL, ZIP lots, and the result workbook.
 *
 * Source of the rules: ../shared/spec/met-web-service.md (sections below)
 * and the WSDLs beside it. Library code: never prints; every failure comes
 * back as a negative firmante error plus a struct met_error sentence.
 */
#ifndef FIRMANTE_MET_H
#define FIRMANTE_MET_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Service namespace of every body element (§2). */
#define MET_NS "http://ws.web.mec.sep.mx/schemas"
/* Endpoints (soap:address) of the DGP's environments (§1). */
#define MET_URL_QA "https://metqa.siged.sep.gob.mx:443/met-ws/services/"
#define MET_URL_PRODUCCION "https://met.sep.gob.mx/met-ws/services/"

/* Caps. */
#define MET_MAX_LOT_TITLES 2000u            /* titles per lot (§4: none published) */
#define MET_MAX_LOT_BYTES (512u * 1024u * 1024u) /* ZIP size of one lot */
#define MET_MAX_RESPONSE (128u * 1024u * 1024u)  /* SOAP response body */
#define MET_MAX_RESULT_ROWS 20000u          /* rows read from a result workbook */
#define MET_MAX_RETRIES 10
#define MET_MAX_FIELD 512                   /* usuario, password, mensaje, ... */

/* A failure in words a registrar understands. */
struct met_error {
	int code;             /* the negative value returned */
	long http_status;     /* 0 when no HTTP answer came */
	int maybe_sent;       /* 1 when the request may have reached the service */
	char message[768];
};

/* One environment: URL, account and transport settings (§1, §2, §11). */
struct met_profile {
	char name[32];                 /* "sandbox", "qa", "produccion" */
	char url[1024];                /* soap:address to POST to */
	char ca_bundle[1024];          /* PEM file of trusted CAs; "" = system store */
	char usuario[MET_MAX_FIELD];
	char password[MET_MAX_FIELD];  /* wiped by met_profile_clear() */
	char cve_institucion[16];      /* the account's institution; "" = not checked */
	long connect_timeout_s;        /* seconds, default 10 */
	long timeout_s;                /* whole request, seconds, default 300 */
	int retries;                   /* consulta/descarga attempts after the first, default 4 */
	long retry_delay_ms;           /* first backoff delay, doubled per attempt, default 2000 */
	long retry_max_delay_ms;       /* backoff cap, default 60000 */
	size_t lot_size;               /* titles per lot, default 100 */
	int cancel_success_codigo;     /* §8 project rule, default 0 */
	long poll_delay_s;             /* first consulta delay for status --wait, default 30 */
	long poll_max_delay_s;         /* consulta backoff cap, default 300 */
	long poll_deadline_s;          /* give up waiting after this long, default 3600 */
};

/*
 * met_profile_load - read a MET configuration (INI, section [met]):
 *   profile = sandbox | qa | produccion   (qa and produccion give the URL)
 *   url = https://...          (required for sandbox; must be https)
 *   ca-bundle = FILE           credentials = FILE
 *   cve-institucion, connect-timeout, timeout, retries, retry-delay-ms,
 *   retry-max-delay-ms, lot-size, cancel-success-codigo, poll-delay,
 *   poll-max-delay, poll-deadline
 * Credentials come from the file named by "credentials" (INI keys usuario
 * and password; it must be a regular file of mode 0600 or stricter, owned
 * by the caller: §11.8) or, when that key is absent, from the environment
 * variables FIRMANTE_MET_USUARIO and FIRMANTE_MET_PASSWORD.
 * @path: the configuration file; relative paths inside are relative to it.
 * @out: written on success; clear with met_profile_clear().
 * @err: filled on failure.
 * Returns 0, FIRMANTE_E_CONFIG (unreadable, unknown key or profile, plain
 * http URL, no credentials), FIRMANTE_E_FORBIDDEN (credentials file
 * readable by others), FIRMANTE_E_NOMEM.
 */
int met_profile_load(const char *path, struct met_profile *out, struct met_error *err);

/* met_profile_clear - wipe the password; NULL is a no-op. */
void met_profile_clear(struct met_profile *p);

/*
 * met_credentials_load - read usuario and password from an INI file that
 * must be mode 0600 or stricter (no group or other bits) and owned by the
 * caller; otherwise refused with the reason (§11.8).
 * @usuario, @password: buffers of MET_MAX_FIELD bytes, written on success.
 * Returns 0, FIRMANTE_E_FORBIDDEN, FIRMANTE_E_CONFIG.
 */
int met_credentials_load(const char *path, char *usuario, char *password,
			 struct met_error *err);

/*
 * met_carga - cargaTituloElectronico (§3, §4): upload one lot. The file is
 * streamed from disk and Base64-encoded once, on the fly. Never retried
 * (carga is not idempotent, §11.9).
 * @nombre: nombreArchivo, 2-100 characters, ending ".zip" or ".xml".
 * @payload_path: the ZIP (or single XML) to send.
 * @numero: receives numeroLote (decimal text, up to 31 digits).
 * @mensaje: receives the service's mensaje (may be empty); @mlen its size.
 * Returns 0 with a numeroLote; FIRMANTE_E_FORBIDDEN or FIRMANTE_E_INVALID
 * when the service answered without a lot number (err->message quotes the
 * service's mensaje; the upload was refused, nothing to reconcile); FIRMANTE_E_IO,
 * FIRMANTE_E_TIMEOUT, FIRMANTE_E_PROTOCOL on transport, HTTP, SOAP fault
 * or malformed answers (err->maybe_sent tells whether the lot may have
 * been received: then its outcome is unknown); FIRMANTE_E_TOO_LARGE;
 * FIRMANTE_E_NOMEM.
 */
int met_carga(const struct met_profile *p, const char *nombre, const char *payload_path,
	      char numero[32], char *mensaje, size_t mlen, struct met_error *err);

/*
 * met_consulta - consultaProcesoTituloElectronico (§5). Retried with
 * exponential backoff and jitter on transport, HTTP 5xx, SOAP fault and
 * malformed answers (p->retries times).
 * @estatus: receives estatusLote (1 = processed; anything else = not ready).
 * Returns 0, FIRMANTE_E_FORBIDDEN (credentials or institution refused),
 * FIRMANTE_E_IO, FIRMANTE_E_TIMEOUT, FIRMANTE_E_PROTOCOL, FIRMANTE_E_NOMEM.
 */
int met_consulta(const struct met_profile *p, const char *numero, int *estatus,
		 char *mensaje, size_t mlen, struct met_error *err);

/*
 * met_descarga - descargaTituloElectronico (§6). Retried like met_consulta.
 * @zip, @zip_len: receive the decoded titulosBase64 (malloc'd, caller
 * frees); both NULL/0 when the service sent no report yet (§6: mensaje
 * says "espera").
 * Returns as met_consulta.
 */
int met_descarga(const struct met_profile *p, const char *numero, uint8_t **zip,
		 size_t *zip_len, char *mensaje, size_t mlen, struct met_error *err);

/*
 * met_cancela - cancelaTituloElectronico (§8). Not retried.
 * @motivo: a motivoCancelacion code: R1..R5 or C1 (others refused locally).
 * @codigo, @mensaje: the service's answer, verbatim.
 * @cancelled: receives 1 when the answer means cancelled (mensaje text
 * "fue cancelado exitosamente", else codigo == p->cancel_success_codigo),
 * 2 when the folio was already cancelled ("ya se encuentra cancelado"),
 * 0 otherwise; @review: 1 when the text was not recognised (§8 rule).
 * Returns 0 when the service answered; FIRMANTE_E_INVALID (bad motive),
 * transport errors as met_carga.
 */
int met_cancela(const struct met_profile *p, const char *folio, const char *motivo,
		int *codigo, char *mensaje, size_t mlen, int *cancelled, int *review,
		struct met_error *err);

/* ---- lots (§4) -------------------------------------------------------- */

/* One title to put in a lot: entry name is <folio>.xml. */
struct met_lote_item {
	const char *folio;
	const char *path;   /* the signed XML */
};

/*
 * met_lote_build - write a fresh flat ZIP holding one entry
 * "<folioControl>.xml" per item (deflate), through a temporary file in the
 * same directory renamed over @zip_path; re-opens it and checks that the
 * listing equals the manifest (names, count, CRC).
 * @n: 1..MET_MAX_LOT_TITLES items with distinct folios.
 * @sha256_hex: receives the SHA-256 of the ZIP file (65 bytes).
 * Returns 0, FIRMANTE_E_INVALID (bad item count, duplicate or unsafe
 * folio), FIRMANTE_E_IO (a title or the ZIP could not be read or written;
 * nothing is left at @zip_path), FIRMANTE_E_TOO_LARGE, FIRMANTE_E_NOMEM.
 */
int met_lote_build(const char *zip_path, const struct met_lote_item *items, size_t n,
		   char sha256_hex[65], struct met_error *err);

/* ---- result workbook (§6) --------------------------------------------- */

struct met_result_row {
	char archivo[256];
	int estatus;              /* 1 registered, 2 not registered */
	char descripcion[1024];
	char folio[128];
};

/*
 * met_result_read_xls - read ResultadoCargaTitulos<N>.xls (BIFF8) with
 * FreeXL: sheet "Resultado", columns found by header name (ARCHIVO,
 * ESTATUS, DESCRIPCION, FOLIO CONTROL) in row 0, every following row;
 * ESTATUS read as a number. FreeXL runs in the separate, limited program
 * titulos-result-reader (result-reader.h): its crash, hang or malformed
 * answer is returned as an error, never felt by the caller.
 * @rows: malloc'd array (caller frees), @n its count; written on success.
 * Returns 0, FIRMANTE_E_INVALID (not a workbook, sheet or column missing,
 * ESTATUS not 1 or 2; the reader crashed, failed or answered malformed),
 * FIRMANTE_E_TOO_LARGE, FIRMANTE_E_TIMEOUT (the reader ran over its
 * RESULT_READER_TIMEOUT_MS and was killed), FIRMANTE_E_IO (the reader is
 * not installed or cannot be started), FIRMANTE_E_NOMEM.
 */
int met_result_read_xls(const char *xls_path, struct met_result_row **rows, size_t *n,
			struct met_error *err);

/*
 * met_result_read_zip - the ZIP of descarga: exactly one .xls entry, CRC
 * checked (met_result_zip_entry), extracted to a private temporary file and
 * read as met_result_read_xls() does.
 * @numero: when not NULL, the entry must be ResultadoCargaTitulos<numero>.xls.
 * Returns as met_result_read_xls, plus FIRMANTE_E_IO.
 */
int met_result_read_zip(const uint8_t *zip, size_t len, const char *numero,
			struct met_result_row **rows, size_t *n, struct met_error *err);

/* met_motivo_valid - 1 when @m is a motivoCancelacion code (R1-R5, C1, §8). */
int met_motivo_valid(const char *m);

#ifdef __cplusplus
}
#endif
#endif

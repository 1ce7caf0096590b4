/*
 * firmanted: the HTTP/1.1 + JSON front end (libmicrohttpd, jansson).
 * Routing, caller identification (SO_PEERCRED), body caps, problem+json
 * errors (RFC 9457) and the endpoints of docs/protocol.md.
 */
#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>
#include <microhttpd.h>
#include <openssl/evp.h>
#include <openssl/x509.h>

#include "agent.h"
#include "workers.h"
#include "firmante/build-config.h"
#include "firmante/protocol.h"
#include "firmante/satcert.h"
#include "firmante/titulo.h"
#include "firmante/token.h"
#include "firmante/util.h"

#define PROBLEM_TYPE_BASE "https://firmante.invalid/problems/"
#define DETAIL_MAX 1024
#define CONNECTION_TIMEOUT_S 60u

enum endpoint { EP_NONE, EP_STATUS, EP_TOKENS, EP_KEYS, EP_SIGN, EP_PAIR, EP_PAIRINGS,
		EP_REVOKE, EP_REQUESTS, EP_DECIDE };

/* Which listener a request came in on (the daemon's closure). */
struct listener {
	struct agent *agent;
	bool browser;
};

/* One HTTP request (MHD's per-request context). */
struct request {
	struct agent *agent;
	bool browser;    /* came in on the loopback TCP listener */
	char cors[AGENT_ORIGIN_MAX + 1]; /* Access-Control-Allow-Origin of the reply */
	enum endpoint ep;
	struct agent_caller caller;
	bool caller_known;
	bool responded;
	char method[16];
	char path[128];
	char id[FIRMANTE_MAX_REQUEST_ID + 1];
	bool has_id;
	char folio[64];  /* folioControl of a sign request, for the log */
	char *body;
	size_t len;
	size_t cap;
	bool too_large;  /* body over the cap: the rest is discarded */
	size_t discarded;
};

/* A chunked body over the cap is discarded up to its end and then answered
 * 413 (libmicrohttpd cannot answer in the middle of a body); past this
 * many discarded bytes the connection is closed instead. */
#define DISCARD_MAX (4u * FIRMANTE_MAX_BODY)

/* ------------------------------------------------------------------ */
/* replies */

static void log_request(const struct request *rq, int status, const char *code)
{
	if (rq->folio[0])
		agent_log("uid=%lu pid=%ld exe=%s %s %s -> %d %s folioControl=%s",
			  (unsigned long)rq->caller.uid, (long)rq->caller.pid, rq->caller.exe,
			  rq->method, rq->path, status, code, rq->folio);
	else
		agent_log("uid=%lu pid=%ld exe=%s %s %s -> %d %s",
			  (unsigned long)rq->caller.uid, (long)rq->caller.pid, rq->caller.exe,
			  rq->method, rq->path, status, code);
}

/* Queue @obj (reference stolen) as the reply. */
static enum MHD_Result send_json(struct MHD_Connection *c, struct request *rq, unsigned status,
				 const char *media, json_t *obj, const char *code,
				 const char *allow)
{
	struct MHD_Response *resp = NULL;
	enum MHD_Result ret = MHD_NO;
	char *text = NULL;
	size_t len;

	if (rq->has_id && obj && !json_object_get(obj, "id"))
		json_object_set_new(obj, "id", json_string(rq->id));
	text = obj ? json_dumps(obj, JSON_COMPACT | JSON_ENSURE_ASCII) : NULL;
	if (!text)
		goto out;
	len = strlen(text);
	/* A trailing newline makes replies pleasant to read with curl. */
	{
		char *grown = realloc(text, len + 2);

		if (!grown)
			goto out;
		text = grown;
		text[len++] = '\n';
		text[len] = '\0';
	}
	resp = MHD_create_response_from_buffer(len, text, MHD_RESPMEM_MUST_FREE);
	if (!resp)
		goto out;
	text = NULL;
	MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, media);
	MHD_add_response_header(resp, MHD_HTTP_HEADER_CACHE_CONTROL, "no-store");
	if (rq->cors[0]) {
		/* Only ever the one paired origin; never "*". */
		MHD_add_response_header(resp, MHD_HTTP_HEADER_ACCESS_CONTROL_ALLOW_ORIGIN, rq->cors);
		MHD_add_response_header(resp, MHD_HTTP_HEADER_VARY, "Origin");
	}
	if (allow)
		MHD_add_response_header(resp, MHD_HTTP_HEADER_ALLOW, allow);
	ret = MHD_queue_response(c, status, resp);
	rq->responded = true;
	if (ret == MHD_YES)
		log_request(rq, (int)status, code);
	else
		log_request(rq, 0, "connection-closed");
out:
	if (resp)
		MHD_destroy_response(resp);
	free(text);
	json_decref(obj);
	return ret;
}

static enum MHD_Result send_ok(struct MHD_Connection *c, struct request *rq, json_t *obj)
{
	return send_json(c, rq, MHD_HTTP_OK, FIRMANTE_MEDIA_JSON, obj, "ok", NULL);
}

/* The one method each endpoint takes. */
static const char *method_of(enum endpoint ep)
{
	switch (ep) {
	case EP_SIGN:
	case EP_PAIR:
	case EP_REVOKE:
	case EP_DECIDE:
		return "POST";
	default:
		return "GET";
	}
}

static enum MHD_Result send_problem(struct MHD_Connection *c, struct request *rq, int err,
				    const char *detail)
{
	const char *code = firmante_err_code(err);
	int status = firmante_err_http_status(err);
	char type[160];
	json_t *obj;

	snprintf(type, sizeof(type), "%s%s", PROBLEM_TYPE_BASE, code);
	obj = json_pack("{s:s, s:s, s:i, s:s, s:s}", "type", type, "title",
			firmante_err_title(err), "status", status, "detail",
			detail && detail[0] ? detail : firmante_err_title(err), "code", code);
	return send_json(c, rq, (unsigned)status, FIRMANTE_MEDIA_PROBLEM, obj, code,
			 err == FIRMANTE_E_METHOD ? method_of(rq->ep) : NULL);
}

/* ------------------------------------------------------------------ */
/* caller */

static int identify_caller(struct MHD_Connection *c, struct agent_caller *out)
{
	const union MHD_ConnectionInfo *ci;
	struct ucred cred;
	socklen_t len = sizeof(cred);
	char proc[64];
	ssize_t n;

	ci = MHD_get_connection_info(c, MHD_CONNECTION_INFO_CONNECTION_FD);
	if (!ci)
		return FIRMANTE_E_INTERNAL;
	if (getsockopt(ci->connect_fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) != 0 ||
	    len != sizeof(cred))
		return FIRMANTE_E_FORBIDDEN;
	out->uid = cred.uid;
	out->pid = cred.pid;
	snprintf(proc, sizeof(proc), "/proc/%ld/exe", (long)cred.pid);
	n = readlink(proc, out->exe, sizeof(out->exe) - 1);
	if (n <= 0) {
		snprintf(out->exe, sizeof(out->exe), "?");
	} else {
		out->exe[n] = '\0';
		agent_sanitize(out->exe);
	}
	return 0;
}

/* ------------------------------------------------------------------ */
/* certificates and keys */

static void hex_of(const uint8_t *p, size_t n, char *out, size_t size)
{
	static const char digits[] = "0123456789abcdef";
	size_t i;

	for (i = 0; i < n && 2 * i + 2 < size; i++) {
		out[2 * i] = digits[p[i] >> 4];
		out[2 * i + 1] = digits[p[i] & 15];
	}
	out[2 * i] = '\0';
}

/* Can this identity sign titles? 0 or the refusal, with a sentence. */
static int check_identity(const struct agent *a, const struct fp11_identity *id, time_t now,
			  char *detail, size_t size)
{
	char t1[32], t2[32];
	int rc;

	if (id->cert_err) {
		snprintf(detail, size, "the certificate of key \"%s\" cannot be used: %s",
			 id->key_label, firmante_err_title(id->cert_err));
		return id->cert_err;
	}
	/* A key hidden until login (key_visible false) is checked by fp11_sign()
	 * after login; its attributes are unknown here. */
	if (!a->cfg->allow_extractable_keys && id->key_visible &&
	    (id->extractable || !id->sensitive)) {
		snprintf(detail, size,
			 "the private key of certificate %s can leave its token (%s); the agent "
			 "refuses such keys unless allow-extractable-keys is set",
			 id->cert.no_certificado,
			 id->extractable ? "CKA_EXTRACTABLE is true" : "CKA_SENSITIVE is false");
		return FIRMANTE_E_KEY_EXTRACTABLE;
	}
	if (id->cert.kind != FM_SATCERT_FIEL) {
		snprintf(detail, size,
			 "certificate %s is a CSD (sello digital, OU \"%s\"); titles are signed "
			 "with the holder's e.firma (FIEL)", id->cert.no_certificado, id->cert.ou);
		return FIRMANTE_E_CERT_NOT_FIEL;
	}
	rc = fm_satcert_check_validity(&id->cert, now);
	if (rc == FIRMANTE_E_CERT_EXPIRED) {
		snprintf(detail, size, "certificate %s expired on %s (now %s)",
			 id->cert.no_certificado, fm_time_iso8601(id->cert.not_after, t1, sizeof(t1)),
			 fm_time_iso8601(now, t2, sizeof(t2)));
		return rc;
	}
	if (rc == FIRMANTE_E_CERT_NOT_YET_VALID) {
		snprintf(detail, size, "certificate %s is valid from %s only (now %s)",
			 id->cert.no_certificado,
			 fm_time_iso8601(id->cert.not_before, t1, sizeof(t1)),
			 fm_time_iso8601(now, t2, sizeof(t2)));
		return rc;
	}
	if (rc) {
		snprintf(detail, size, "certificate %s: %s", id->cert.no_certificado,
			 firmante_err_title(rc));
		return rc;
	}
	if (!id->cert.curp[0]) {
		snprintf(detail, size,
			 "certificate %s carries no CURP in its subject serialNumber (2.5.4.5)",
			 id->cert.no_certificado);
		return FIRMANTE_E_NO_CURP;
	}
	return 0;
}

static const char *reason_of(int err)
{
	switch (err) {
	case FIRMANTE_E_KEY_EXTRACTABLE: return "extractable";
	case FIRMANTE_E_CERT_NOT_FIEL: return "csd";
	case FIRMANTE_E_CERT_EXPIRED: return "expired";
	case FIRMANTE_E_CERT_NOT_YET_VALID: return "not-yet-valid";
	case FIRMANTE_E_NO_CURP: return "no-curp";
	case FIRMANTE_E_CERT_SERIAL: return "serial-not-sat";
	default: return "cert-invalid";
	}
}

static json_t *token_json(const struct fp11_token_info *t)
{
	return json_pack("{s:s, s:s, s:s, s:s, s:s, s:{s:b, s:b, s:b, s:b, s:b}}",
			 "label", t->label, "serial", t->serial, "manufacturer", t->manufacturer,
			 "model", t->model, "uri", t->uri, "flags",
			 "login_required", t->login_required,
			 "protected_auth_path", t->protected_auth_path,
			 "pin_count_low", t->user_pin_count_low,
			 "pin_final_try", t->user_pin_final_try,
			 "pin_locked", t->user_pin_locked);
}

static json_t *key_json(const struct agent *a, const struct fp11_identity *id, time_t now)
{
	char hex[2 * sizeof(id->id) + 1], nb[32], na[32], detail[DETAIL_MAX];
	const char *kind = "";
	json_t *o;
	int rc;

	hex_of(id->id, id->id_len, hex, sizeof(hex));
	rc = check_identity(a, id, now, detail, sizeof(detail));
	if (!id->cert_err)
		kind = id->cert.kind == FM_SATCERT_FIEL ? "fiel" :
		       id->cert.kind == FM_SATCERT_CSD ? "csd" : "";
	o = json_pack("{s:s, s:{s:s, s:s}, s:s, s:s, s:b}",
		      "uri", id->uri, "token", "label", id->token.label, "serial", id->token.serial,
		      "id", hex, "label", id->key_label, "usable", rc == 0);
	if (!o)
		return NULL;
	/* Unknown (null) for a key the token shows only after login. */
	json_object_set_new(o, "key_visible", json_boolean(id->key_visible));
	json_object_set_new(o, "sensitive", id->key_visible ? json_boolean(id->sensitive) : json_null());
	json_object_set_new(o, "extractable",
			    id->key_visible ? json_boolean(id->extractable) : json_null());
	if (!id->cert_err) {
		json_object_set_new(o, "subject", json_string(id->cert.subject));
		json_object_set_new(o, "curp", json_string(id->cert.curp));
		json_object_set_new(o, "rfc", json_string(id->cert.rfc));
		json_object_set_new(o, "no_certificado", json_string(id->cert.no_certificado));
		json_object_set_new(o, "not_before",
				    json_string(fm_time_iso8601(id->cert.not_before, nb, sizeof(nb))));
		json_object_set_new(o, "not_after",
				    json_string(fm_time_iso8601(id->cert.not_after, na, sizeof(na))));
		json_object_set_new(o, "kind", json_string(kind));
	}
	if (rc) {
		json_object_set_new(o, "reason", json_string(reason_of(rc)));
		json_object_set_new(o, "reason_detail", json_string(detail));
	}
	return o;
}

/* ------------------------------------------------------------------ */
/* GET endpoints */

static enum MHD_Result ep_status(struct MHD_Connection *c, struct request *rq)
{
	struct fp11_token_info *toks = NULL;
	struct fp11_identity *ids = NULL;
	size_t nt = 0, ni = 0;
	json_t *o;
	int rc;

	rc = fp11_list_tokens(rq->agent->p11, &toks, &nt);
	if (!rc)
		rc = fp11_list_identities(rq->agent->p11, &ids, &ni);
	free(toks);
	fp11_identities_free(ids, ni);
	if (rc)
		return send_problem(c, rq, rc, "listing the tokens failed");
	o = json_pack("{s:s, s:i, s:I, s:I, s:I, s:I}", "version", FIRMANTE_VERSION, "protocol",
		      FIRMANTE_PROTOCOL_VERSION, "tokens", (json_int_t)nt, "identities",
		      (json_int_t)ni, "uptime", (json_int_t)(time(NULL) - rq->agent->started),
		      "pid", (json_int_t)getpid());
	return send_ok(c, rq, o);
}

static enum MHD_Result ep_tokens(struct MHD_Connection *c, struct request *rq)
{
	struct fp11_token_info *toks = NULL;
	size_t n = 0;
	json_t *arr = NULL;
	int rc;

	rc = fp11_list_tokens(rq->agent->p11, &toks, &n);
	if (rc)
		return send_problem(c, rq, rc, "listing the tokens failed");
	arr = json_array();
	for (size_t i = 0; arr && i < n; i++)
		json_array_append_new(arr, token_json(&toks[i]));
	free(toks);
	if (!arr)
		return send_problem(c, rq, FIRMANTE_E_NOMEM, NULL);
	return send_ok(c, rq, json_pack("{s:o}", "tokens", arr));
}

static enum MHD_Result ep_keys(struct MHD_Connection *c, struct request *rq)
{
	struct fp11_identity *ids = NULL;
	size_t n = 0;
	json_t *arr = NULL;
	time_t now = time(NULL);
	int rc;

	rc = fp11_list_identities(rq->agent->p11, &ids, &n);
	if (rc)
		return send_problem(c, rq, rc, "listing the keys failed");
	arr = json_array();
	for (size_t i = 0; arr && i < n; i++)
		json_array_append_new(arr, key_json(rq->agent, &ids[i], now));
	fp11_identities_free(ids, n);
	if (!arr)
		return send_problem(c, rq, FIRMANTE_E_NOMEM, NULL);
	return send_ok(c, rq, json_pack("{s:o}", "keys", arr));
}

/* ------------------------------------------------------------------ */
/* POST /v1/sign */

static bool valid_request_id(const char *s, size_t len)
{
	if (len > FIRMANTE_MAX_REQUEST_ID)
		return false;
	for (size_t i = 0; i < len; i++)
		if ((unsigned char)s[i] < 0x20 || (unsigned char)s[i] == 0x7f)
			return false;
	return true;
}

static void copy_field(char *dst, size_t size, const char *src)
{
	snprintf(dst, size, "%s", src ? src : "");
	agent_sanitize(dst);
}

static enum MHD_Result ep_sign(struct MHD_Connection *c, struct request *rq)
{
	struct agent *a = rq->agent;
	struct fp11_identity *id = NULL;
	struct titulo_error terr;
	struct agent_approval ap;
	struct agent_sign_job *job = NULL;
	json_error_t jerr;
	json_t *req = NULL, *v, *reply = NULL;
	titulo *t = NULL;
	char detail[DETAIL_MAX], graduate[400], sha[65];
	const char *format, *document, *key, *curp;
	char *cadena = NULL, *sello = NULL, *cert_b64 = NULL;
	size_t cadena_len = 0, doc_len, n, idx = 0;
	int rc = 0;

	detail[0] = '\0';
	memset(&terr, 0, sizeof(terr));
	req = json_loadb(rq->body ? rq->body : "", rq->len, JSON_REJECT_DUPLICATES, &jerr);
	if (!req) {
		snprintf(detail, sizeof(detail), "invalid JSON at line %d, column %d: %s",
			 jerr.line, jerr.column, jerr.text);
		rc = FIRMANTE_E_BAD_REQUEST;
		goto out;
	}
	if (!json_is_object(req)) {
		snprintf(detail, sizeof(detail), "the body must be a JSON object");
		rc = FIRMANTE_E_BAD_REQUEST;
		goto out;
	}
	v = json_object_get(req, "id");
	if (v) {
		if (!json_is_string(v) || !valid_request_id(json_string_value(v), json_string_length(v))) {
			snprintf(detail, sizeof(detail),
				 "\"id\" must be a string of at most %u printable characters",
				 FIRMANTE_MAX_REQUEST_ID);
			rc = FIRMANTE_E_BAD_REQUEST;
			goto out;
		}
		snprintf(rq->id, sizeof(rq->id), "%s", json_string_value(v));
		rq->has_id = true;
	}
	v = json_object_get(req, "format");
	if (!json_is_string(v)) {
		snprintf(detail, sizeof(detail), "\"format\" is required (\"%s\")", FIRMANTE_FORMAT_TITULO);
		rc = FIRMANTE_E_BAD_REQUEST;
		goto out;
	}
	format = json_string_value(v);
	if (strcmp(format, FIRMANTE_FORMAT_TITULO) != 0) {
		snprintf(detail, sizeof(detail), "format \"%.64s\" is not supported; use \"%s\"", format,
			 FIRMANTE_FORMAT_TITULO);
		rc = FIRMANTE_E_UNSUPPORTED_FORMAT;
		goto out;
	}
	v = json_object_get(req, "document");
	if (!json_is_string(v)) {
		snprintf(detail, sizeof(detail), "\"document\" (the unsigned XML as a JSON string) is required");
		rc = FIRMANTE_E_BAD_REQUEST;
		goto out;
	}
	document = json_string_value(v);
	doc_len = json_string_length(v);
	if (doc_len > FIRMANTE_MAX_DOCUMENT) {
		snprintf(detail, sizeof(detail), "the document has %zu bytes; the limit is %u", doc_len,
			 FIRMANTE_MAX_DOCUMENT);
		rc = FIRMANTE_E_TOO_LARGE;
		goto out;
	}
	v = json_object_get(req, "key");
	if (!json_is_string(v) || strncmp(json_string_value(v), "pkcs11:", 7) != 0) {
		snprintf(detail, sizeof(detail), "\"key\" must be a PKCS#11 URI (RFC 7512) of the signer's key");
		rc = FIRMANTE_E_BAD_REQUEST;
		goto out;
	}
	key = json_string_value(v);

	rc = fp11_find_identity(a->p11, key, &id);
	if (rc) {
		if (rc == FIRMANTE_E_KEY_NOT_FOUND)
			snprintf(detail, sizeof(detail),
				 "no single key with a certificate matches the URI (none, or more than one)");
		else if (rc == FIRMANTE_E_BAD_REQUEST)
			snprintf(detail, sizeof(detail), "\"key\" is not a valid PKCS#11 URI");
		id = NULL;
		goto out;
	}
	rc = check_identity(a, id, time(NULL), detail, sizeof(detail));
	if (rc)
		goto out;

	rc = titulo_parse(document, doc_len, &t, &terr);
	if (rc) {
		if (terr.line > 0)
			snprintf(detail, sizeof(detail), "%s: %s (line %d)",
				 terr.field[0] ? terr.field : "document", terr.message, terr.line);
		else
			snprintf(detail, sizeof(detail), "%s: %s",
				 terr.field[0] ? terr.field : "document", terr.message);
		if (rc != FIRMANTE_E_TOO_LARGE && rc != FIRMANTE_E_NOMEM)
			rc = FIRMANTE_E_BAD_DOCUMENT;
		t = NULL;
		goto out;
	}
	copy_field(rq->folio, sizeof(rq->folio), titulo_attr(t, "TituloElectronico", "folioControl"));
	n = titulo_firmantes_count(t);
	for (idx = 0; idx < n; idx++) {
		curp = titulo_firmante_attr(t, idx, "curp");
		if (curp && strcmp(curp, id->cert.curp) == 0)
			break;
	}
	if (idx == n) {
		snprintf(detail, sizeof(detail),
			 "no FirmaResponsable has curp=\"%s\", the CURP of certificate %s",
			 id->cert.curp, id->cert.no_certificado);
		rc = FIRMANTE_E_SIGNER_NOT_IN_DOCUMENT;
		goto out;
	}
	if (!titulo_firmante_attr(t, idx, "idCargo") || !titulo_firmante_attr(t, idx, "cargo")) {
		snprintf(detail, sizeof(detail),
			 "FirmaResponsable[%zu]/@%s: the cargo row is missing (idCargo and cargo are required)",
			 idx + 1, titulo_firmante_attr(t, idx, "idCargo") ? "cargo" : "idCargo");
		rc = FIRMANTE_E_BAD_DOCUMENT;
		goto out;
	}
	rc = titulo_cadena(t, idx, &cadena, &cadena_len);
	if (rc) {
		snprintf(detail, sizeof(detail),
			 "the cadena original of FirmaResponsable[%zu] cannot be built: %s", idx + 1,
			 firmante_err_title(rc));
		cadena = NULL;
		goto out;
	}
	rc = fm_sha256_hex(cadena, cadena_len, sha);
	if (rc)
		goto out;

	{
		const char *nom = titulo_attr(t, "Profesionista", "nombre");
		const char *ap1 = titulo_attr(t, "Profesionista", "primerApellido");
		const char *ap2 = titulo_attr(t, "Profesionista", "segundoApellido");

		snprintf(graduate, sizeof(graduate), "%s %s%s%s", nom ? nom : "", ap1 ? ap1 : "",
			 ap2 && ap2[0] ? " " : "", ap2 ? ap2 : "");
	}
	memset(&ap, 0, sizeof(ap));
	ap.caller = &rq->caller;
	ap.identity = id;
	ap.folio_control = titulo_attr(t, "TituloElectronico", "folioControl");
	ap.graduate_name = graduate;
	ap.graduate_curp = titulo_attr(t, "Profesionista", "curp");
	ap.nombre_carrera = titulo_attr(t, "Carrera", "nombreCarrera");
	ap.fecha_expedicion = titulo_attr(t, "Expedicion", "fechaExpedicion");
	ap.nombre_institucion = titulo_attr(t, "Institucion", "nombreInstitucion");
	ap.cargo = titulo_firmante_attr(t, idx, "cargo");

	/* Decision, PIN, C_Sign, verification and audit record (agent/sign.c). */
	job = calloc(1, sizeof(*job));
	if (!job) {
		rc = FIRMANTE_E_NOMEM;
		goto out;
	}
	job->caller = &rq->caller;
	job->approval = &ap;
	job->cadena = cadena;
	job->cadena_len = cadena_len;
	job->cadena_sha256 = sha;
	{
		const union MHD_ConnectionInfo *ci =
			MHD_get_connection_info(c, MHD_CONNECTION_INFO_CONNECTION_FD);

		job->client_fd = ci ? ci->connect_fd : -1;
	}
	rc = agent_sign_one(a, job);
	if (rc) {
		snprintf(detail, sizeof(detail), "%s", job->detail);
		goto out;
	}
	rc = fm_base64_encode(job->sig, job->sig_len, &sello);
	if (rc) {
		sello = NULL;
		goto out;
	}
	rc = fm_base64_encode(id->cert_der, id->cert_len, &cert_b64);
	if (rc) {
		cert_b64 = NULL;
		goto out;
	}
	reply = json_pack("{s:s, s:s, s:s, s:s, s:I, s:s}", "sello", sello,
			  "certificadoResponsable", cert_b64, "noCertificadoResponsable",
			  id->cert.no_certificado, "curp", id->cert.curp, "firmanteIndex",
			  (json_int_t)idx, "cadenaSha256", sha);
	if (!reply)
		rc = FIRMANTE_E_NOMEM;
out:
	if (job) {
		fm_wipe(job, sizeof(*job));
		free(job);
	}
	free(sello);
	free(cert_b64);
	free(cadena);
	titulo_free(t);
	if (id)
		fp11_identities_free(id, 1);
	json_decref(req);
	if (rc) {
		json_decref(reply);
		return send_problem(c, rq, rc, detail);
	}
	return send_ok(c, rq, reply);
}

/* ------------------------------------------------------------------ */
/* pairing: POST /v1/pair (browser), GET /v1/pairings, POST /v1/pairings/revoke */

static json_t *load_object(struct request *rq, char *detail, size_t size)
{
	json_error_t jerr;
	json_t *o = json_loadb(rq->body ? rq->body : "", rq->len, JSON_REJECT_DUPLICATES, &jerr);

	if (!o) {
		snprintf(detail, size, "invalid JSON at line %d, column %d: %s", jerr.line,
			 jerr.column, jerr.text);
		return NULL;
	}
	if (!json_is_object(o)) {
		snprintf(detail, size, "the body must be a JSON object");
		json_decref(o);
		return NULL;
	}
	return o;
}

static enum MHD_Result ep_pair(struct MHD_Connection *c, struct request *rq)
{
	char detail[DETAIL_MAX], token[65];
	const char *code;
	json_t *req, *reply;
	int rc;

	req = load_object(rq, detail, sizeof(detail));
	if (!req)
		return send_problem(c, rq, FIRMANTE_E_BAD_REQUEST, detail);
	code = json_string_value(json_object_get(req, "code"));
	if (!code || strlen(code) != 6 || strspn(code, "0123456789") != 6) {
		json_decref(req);
		return send_problem(c, rq, FIRMANTE_E_BAD_REQUEST,
				    "\"code\" must be the 6 digits the page shows to the holder");
	}
	rc = agent_pair_origin(rq->agent, &rq->caller, code, token, detail, sizeof(detail));
	json_decref(req);
	if (rc)
		return send_problem(c, rq, rc, detail);
	/* Paired now: this reply, and later ones, may be read by the page. */
	snprintf(rq->cors, sizeof(rq->cors), "%.200s", rq->caller.origin);
	reply = json_pack("{s:s, s:s}", "origin", rq->caller.origin, "token", token);
	fm_wipe(token, sizeof(token));
	return send_ok(c, rq, reply);
}

static enum MHD_Result ep_pairings(struct MHD_Connection *c, struct request *rq)
{
	json_t *arr = agent_pairings_json(rq->agent->pairings);

	if (!arr)
		return send_problem(c, rq, FIRMANTE_E_NOMEM, NULL);
	return send_ok(c, rq, json_pack("{s:o, s:I}", "pairings", arr, "browser_port",
					(json_int_t)rq->agent->cfg->browser_port));
}

static enum MHD_Result ep_revoke(struct MHD_Connection *c, struct request *rq)
{
	struct agent_audit_record rec;
	char detail[DETAIL_MAX];
	const char *origin;
	json_t *req, *reply;
	int rc;

	req = load_object(rq, detail, sizeof(detail));
	if (!req)
		return send_problem(c, rq, FIRMANTE_E_BAD_REQUEST, detail);
	origin = json_string_value(json_object_get(req, "origin"));
	if (!origin) {
		json_decref(req);
		return send_problem(c, rq, FIRMANTE_E_BAD_REQUEST, "\"origin\" is required");
	}
	rc = rq->agent->pairings ? agent_pairings_revoke(rq->agent->pairings, origin)
				 : FIRMANTE_E_NOT_FOUND;
	if (rc == FIRMANTE_E_NOT_FOUND)
		snprintf(detail, sizeof(detail), "%.200s is not paired", origin);
	else
		detail[0] = '\0';
	if (rc != FIRMANTE_E_NOT_FOUND) {
		memset(&rec, 0, sizeof(rec));
		rec.event = "revoke";
		rec.caller = &rq->caller;
		rec.origin = origin;
		rec.decision = "holder";
		rec.result = rc ? firmante_err_code(rc) : "revoked";
		agent_audit_append(rq->agent->audit, &rec);
	}
	if (rc) {
		json_decref(req);
		return send_problem(c, rq, rc, detail);
	}
	reply = json_pack("{s:s, s:b}", "origin", origin, "revoked", 1);
	json_decref(req);
	return send_ok(c, rq, reply);
}

/* ------------------------------------------------------------------ */
/* approval queue: GET /v1/requests, POST /v1/requests (Unix socket only) */

static enum MHD_Result ep_requests(struct MHD_Connection *c, struct request *rq)
{
	json_t *arr = agent_queue_list();

	if (!arr)
		return send_problem(c, rq, FIRMANTE_E_NOMEM, NULL);
	return send_ok(c, rq, json_pack("{s:o, s:s}", "requests", arr, "approval",
					rq->agent->cfg->approval_queue ? "queue" : "pinentry"));
}

static enum MHD_Result ep_decide(struct MHD_Connection *c, struct request *rq)
{
	char detail[DETAIL_MAX];
	const char *decision;
	json_t *req, *jid, *reply;
	bool all, approve;
	size_t count = 0;
	int rc;

	req = load_object(rq, detail, sizeof(detail));
	if (!req)
		return send_problem(c, rq, FIRMANTE_E_BAD_REQUEST, detail);
	decision = json_string_value(json_object_get(req, "decision"));
	jid = json_object_get(req, "request");
	all = json_is_true(json_object_get(req, "all"));
	if (!decision || (strcmp(decision, "approve") != 0 && strcmp(decision, "deny") != 0) ||
	    (!all && (!json_is_integer(jid) || json_integer_value(jid) < 1))) {
		json_decref(req);
		return send_problem(c, rq, FIRMANTE_E_BAD_REQUEST,
				    "expected {\"request\": N or \"all\": true, "
				    "\"decision\": \"approve\" or \"deny\"}");
	}
	approve = !strcmp(decision, "approve");
	rc = agent_queue_decide(all ? 0 : (unsigned long)json_integer_value(jid), all, approve,
				&count);
	if (rc) {
		snprintf(detail, sizeof(detail), "no request %lld is waiting (decided, timed out, "
			 "or cancelled already)", (long long)json_integer_value(jid));
		json_decref(req);
		return send_problem(c, rq, rc, detail);
	}
	reply = json_pack("{s:s, s:I}", "decision", decision, "decided", (json_int_t)count);
	json_decref(req);
	agent_log("uid=%lu %s %zu request(s) from the approval queue",
		  (unsigned long)rq->caller.uid, approve ? "approved" : "denied", count);
	return send_ok(c, rq, reply);
}

/* ------------------------------------------------------------------ */
/* MHD glue */

static enum endpoint route(const char *url)
{
	if (!strcmp(url, "/v1/status"))
		return EP_STATUS;
	if (!strcmp(url, "/v1/tokens"))
		return EP_TOKENS;
	if (!strcmp(url, "/v1/keys"))
		return EP_KEYS;
	if (!strcmp(url, "/v1/sign"))
		return EP_SIGN;
	if (!strcmp(url, "/v1/pair"))
		return EP_PAIR;
	if (!strcmp(url, "/v1/pairings"))
		return EP_PAIRINGS;
	if (!strcmp(url, "/v1/pairings/revoke"))
		return EP_REVOKE;
	if (!strcmp(url, "/v1/requests"))
		return EP_REQUESTS;
	return EP_NONE;
}

/* First call of a request: who, where, how big. Returns MHD_YES to go on. */
static enum MHD_Result common_checks(struct MHD_Connection *c, struct request *rq,
				     const char *method);

/* A bodiless answer to a CORS preflight from a paired origin. */
static enum MHD_Result send_preflight(struct MHD_Connection *c, struct request *rq)
{
	struct MHD_Response *resp;
	const char *pna;
	enum MHD_Result ret;

	resp = MHD_create_response_from_buffer(0, (void *)"", MHD_RESPMEM_PERSISTENT);
	if (!resp)
		return MHD_NO;
	MHD_add_response_header(resp, MHD_HTTP_HEADER_ACCESS_CONTROL_ALLOW_ORIGIN, rq->cors);
	MHD_add_response_header(resp, MHD_HTTP_HEADER_VARY, "Origin");
	MHD_add_response_header(resp, "Access-Control-Allow-Methods", "GET, POST");
	MHD_add_response_header(resp, "Access-Control-Allow-Headers",
				"Content-Type, Authorization, X-Firmante, X-Request-Id");
	MHD_add_response_header(resp, "Access-Control-Max-Age", "600");
	/* Chrome's Private Network / Local Network Access preflight. */
	pna = MHD_lookup_connection_value(c, MHD_HEADER_KIND,
					  "Access-Control-Request-Private-Network");
	if (pna && !strcmp(pna, "true"))
		MHD_add_response_header(resp, "Access-Control-Allow-Private-Network", "true");
	ret = MHD_queue_response(c, MHD_HTTP_NO_CONTENT, resp);
	MHD_destroy_response(resp);
	rq->responded = true;
	log_request(rq, ret == MHD_YES ? MHD_HTTP_NO_CONTENT : 0, "preflight");
	return ret;
}

/*
 * The browser listener's gate, before anything else happens: the Host must
 * be the agent's own loopback name and port (DNS rebinding), the Origin
 * must be paired (except for a pairing request), the custom header and the
 * origin's token must be present. Nothing here touches a token.
 */
static enum MHD_Result browser_first_call(struct MHD_Connection *c, struct request *rq,
					  const char *url, const char *method)
{
	struct agent *a = rq->agent;
	const char *host, *origin, *xf, *auth, *ctype;
	char want1[64], want2[64], detail[512];

	snprintf(rq->caller.exe, sizeof(rq->caller.exe), "browser");
	rq->caller.uid = (uid_t)-1;
	rq->caller.pid = 0;
	host = MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_HOST);
	snprintf(want1, sizeof(want1), "127.0.0.1:%u", a->cfg->browser_port);
	snprintf(want2, sizeof(want2), "localhost:%u", a->cfg->browser_port);
	if (!host || (strcmp(host, want1) != 0 && strcmp(host, want2) != 0)) {
		snprintf(detail, sizeof(detail),
			 "Host \"%.80s\" is not this agent (%s); refused", host ? host : "", want1);
		agent_sanitize(detail);
		return send_problem(c, rq, FIRMANTE_E_FORBIDDEN, detail);
	}
	origin = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Origin");
	if (!origin || !agent_origin_valid(origin)) {
		snprintf(detail, sizeof(detail),
			 "requests on the browser port need the Origin of a web page (got \"%.80s\")",
			 origin ? origin : "");
		agent_sanitize(detail);
		return send_problem(c, rq, FIRMANTE_E_FORBIDDEN, detail);
	}
	snprintf(rq->caller.origin, sizeof(rq->caller.origin), "%s", origin);
	rq->ep = route(url);
	if (rq->ep == EP_PAIR && !strcmp(method, MHD_HTTP_METHOD_POST)) {
		/* A simple (non-preflighted) request: Content-Type text/plain or
		 * application/json; the reply carries CORS only once paired. */
		return MHD_YES;
	}
	if (!agent_pairings_has(a->pairings, origin)) {
		snprintf(detail, sizeof(detail),
			 "the web page %s is not paired with this agent; pair it first (POST /v1/pair)",
			 origin);
		return send_problem(c, rq, FIRMANTE_E_FORBIDDEN, detail);
	}
	if (!strcmp(method, MHD_HTTP_METHOD_OPTIONS)) {
		snprintf(rq->cors, sizeof(rq->cors), "%s", origin);
		return send_preflight(c, rq);
	}
	xf = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "X-Firmante");
	if (!xf || strcmp(xf, "1") != 0)
		return send_problem(c, rq, FIRMANTE_E_FORBIDDEN,
				    "the header X-Firmante: 1 is required on the browser port");
	auth = MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_AUTHORIZATION);
	if (!auth || strncmp(auth, "Bearer ", 7) != 0 ||
	    !agent_pairings_check(a->pairings, origin, auth + 7))
		return send_problem(c, rq, FIRMANTE_E_FORBIDDEN,
				    "the pairing token of this web page is missing or not valid "
				    "(it may have been revoked); pair the page again");
	snprintf(rq->cors, sizeof(rq->cors), "%s", origin);
	if (rq->ep == EP_NONE || rq->ep == EP_PAIRINGS || rq->ep == EP_REVOKE ||
	    rq->ep == EP_REQUESTS) {
		snprintf(detail, sizeof(detail), "no endpoint %.100s on the browser port", rq->path);
		return send_problem(c, rq, FIRMANTE_E_NOT_FOUND, detail);
	}
	if (!strcmp(method, MHD_HTTP_METHOD_POST)) {
		ctype = MHD_lookup_connection_value(c, MHD_HEADER_KIND,
						    MHD_HTTP_HEADER_CONTENT_TYPE);
		if (!ctype || strncmp(ctype, FIRMANTE_MEDIA_JSON, strlen(FIRMANTE_MEDIA_JSON)) != 0)
			return send_problem(c, rq, FIRMANTE_E_BAD_REQUEST,
					    "the body must be JSON (Content-Type: application/json)");
	}
	return common_checks(c, rq, method);
}

static enum MHD_Result first_call(struct MHD_Connection *c, struct request *rq, const char *url,
				  const char *method)
{
	char detail[256];
	int rc;

	copy_field(rq->method, sizeof(rq->method), method);
	copy_field(rq->path, sizeof(rq->path), url);
	if (rq->browser)
		return browser_first_call(c, rq, url, method);
	rc = identify_caller(c, &rq->caller);
	if (rc) {
		snprintf(rq->caller.exe, sizeof(rq->caller.exe), "?");
		rq->caller.uid = (uid_t)-1;
		rq->caller.pid = 0;
		return send_problem(c, rq, FIRMANTE_E_FORBIDDEN,
				    "the caller could not be identified (SO_PEERCRED)");
	}
	rq->caller_known = true;
	if (rq->caller.uid != geteuid()) {
		snprintf(detail, sizeof(detail), "uid %lu may not use the agent of uid %lu",
			 (unsigned long)rq->caller.uid, (unsigned long)geteuid());
		return send_problem(c, rq, FIRMANTE_E_FORBIDDEN, detail);
	}
	rq->ep = route(url);
	if (rq->ep == EP_NONE || rq->ep == EP_PAIR) {
		/* Pairing is for browser pages, on the loopback listener. */
		snprintf(detail, sizeof(detail), "no endpoint %.100s; see docs/protocol.md", rq->path);
		return send_problem(c, rq, FIRMANTE_E_NOT_FOUND, detail);
	}
	if (rq->ep == EP_REQUESTS && !strcmp(method, MHD_HTTP_METHOD_POST))
		rq->ep = EP_DECIDE; /* same path: GET lists, POST decides */
	return common_checks(c, rq, method);
}

/* Checks shared by both listeners once the endpoint is known. */
static enum MHD_Result common_checks(struct MHD_Connection *c, struct request *rq,
				     const char *method)
{
	const char *cl, *rid;
	char detail[256];

	if (strcmp(method, method_of(rq->ep)) != 0) {
		snprintf(detail, sizeof(detail), "%s %s is not allowed; use %s", rq->method, rq->path,
			 method_of(rq->ep));
		return send_problem(c, rq, FIRMANTE_E_METHOD, detail);
	}
	if (strcmp(method_of(rq->ep), "GET") == 0) {
		rid = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "X-Request-Id");
		if (rid) {
			if (!valid_request_id(rid, strlen(rid)))
				return send_problem(c, rq, FIRMANTE_E_BAD_REQUEST,
						    "X-Request-Id must have at most 128 printable characters");
			snprintf(rq->id, sizeof(rq->id), "%s", rid);
			rq->has_id = true;
		}
	}
	cl = MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_LENGTH);
	if (cl) {
		char *end = NULL;
		unsigned long long n;

		errno = 0;
		n = strtoull(cl, &end, 10);
		if (errno || end == cl || *end) {
			return send_problem(c, rq, FIRMANTE_E_BAD_REQUEST, "bad Content-Length");
		}
		if (n > FIRMANTE_MAX_BODY) {
			snprintf(detail, sizeof(detail), "the body has %llu bytes; the limit is %u",
				 n, FIRMANTE_MAX_BODY);
			return send_problem(c, rq, FIRMANTE_E_TOO_LARGE, detail);
		}
	}
	return MHD_YES;
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *c, const char *url,
				  const char *method, const char *version, const char *upload_data,
				  size_t *upload_data_size, void **con_cls)
{
	struct listener *l = cls;
	struct request *rq = *con_cls;
	char detail[128];

	if (!rq) {
		rq = calloc(1, sizeof(*rq));
		if (!rq)
			return MHD_NO;
		rq->agent = l->agent;
		rq->browser = l->browser;
		*con_cls = rq;
		return first_call(c, rq, url, method);
	}
	if (rq->responded) {
		*upload_data_size = 0; /* discard what still arrives */
		return MHD_YES;
	}
	if (rq->too_large) {
		rq->discarded += *upload_data_size;
		if (*upload_data_size && rq->discarded > DISCARD_MAX) {
			log_request(rq, 0, "payload-too-large, connection closed");
			return MHD_NO;
		}
		if (*upload_data_size) {
			*upload_data_size = 0;
			return MHD_YES;
		}
		snprintf(detail, sizeof(detail), "the body is larger than %u bytes", FIRMANTE_MAX_BODY);
		return send_problem(c, rq, FIRMANTE_E_TOO_LARGE, detail);
	}
	if (*upload_data_size) {
		size_t add = *upload_data_size;

		if (add > FIRMANTE_MAX_BODY - rq->len) {
			/* libmicrohttpd 0.9.75 accepts a reply only before the
			 * body or after it: stop storing, answer at its end. */
			free(rq->body);
			rq->body = NULL;
			rq->len = rq->cap = 0;
			rq->too_large = true;
			rq->discarded = add;
			*upload_data_size = 0;
			return MHD_YES;
		}
		if (rq->len + add + 1 > rq->cap) {
			size_t cap = rq->cap ? rq->cap : 16384;
			char *grown;

			while (cap < rq->len + add + 1)
				cap *= 2;
			if (cap > FIRMANTE_MAX_BODY + 1)
				cap = FIRMANTE_MAX_BODY + 1;
			grown = realloc(rq->body, cap);
			if (!grown)
				return MHD_NO;
			rq->body = grown;
			rq->cap = cap;
		}
		memcpy(rq->body + rq->len, upload_data, add);
		rq->len += add;
		rq->body[rq->len] = '\0';
		*upload_data_size = 0;
		return MHD_YES;
	}
	switch (rq->ep) {
	case EP_STATUS:
		return ep_status(c, rq);
	case EP_TOKENS:
		return ep_tokens(c, rq);
	case EP_KEYS:
		return ep_keys(c, rq);
	case EP_SIGN:
		return ep_sign(c, rq);
	case EP_PAIR:
		return ep_pair(c, rq);
	case EP_PAIRINGS:
		return ep_pairings(c, rq);
	case EP_REVOKE:
		return ep_revoke(c, rq);
	case EP_REQUESTS:
		return ep_requests(c, rq);
	case EP_DECIDE:
		return ep_decide(c, rq);
	default:
		return send_problem(c, rq, FIRMANTE_E_NOT_FOUND, NULL);
	}
}

static void on_completed(void *cls, struct MHD_Connection *c, void **con_cls,
			 enum MHD_RequestTerminationCode toe)
{
	struct request *rq = *con_cls;

	if (!rq)
		return;
	if (rq->body) {
		fm_wipe(rq->body, rq->cap);
		free(rq->body);
	}
	free(rq);
	*con_cls = NULL;
}

static void mhd_log(void *cls, const char *fmt, va_list ap)
{
	char msg[512];
	size_t n;

	vsnprintf(msg, sizeof(msg), fmt, ap);
	n = strlen(msg);
	while (n > 0 && (msg[n - 1] == '\n' || msg[n - 1] == '\r'))
		msg[--n] = '\0';
	agent_sanitize(msg);
	agent_log("http: %s", msg);
}

static struct listener unix_listener, browser_listener;

int agent_http_start(struct agent *agent, int listen_fd, struct MHD_Daemon **out)
{
	struct MHD_Daemon *d;

	unix_listener.agent = agent;
	unix_listener.browser = false;
	d = MHD_start_daemon(MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_THREAD_PER_CONNECTION |
				     MHD_USE_POLL | MHD_USE_ITC | MHD_USE_ERROR_LOG,
			     0, NULL, NULL, on_request, &unix_listener,
			     MHD_OPTION_EXTERNAL_LOGGER, mhd_log, NULL,
			     MHD_OPTION_LISTEN_SOCKET, listen_fd,
			     MHD_OPTION_CONNECTION_LIMIT, (unsigned int)agent->cfg->max_clients,
			     MHD_OPTION_CONNECTION_TIMEOUT, CONNECTION_TIMEOUT_S,
			     MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t)(64 * 1024),
			     MHD_OPTION_NOTIFY_COMPLETED, on_completed, NULL,
			     MHD_OPTION_END);
	if (!d)
		return FIRMANTE_E_INTERNAL;
	*out = d;
	return 0;
}

void agent_http_stop(struct MHD_Daemon *d)
{
	if (d)
		MHD_stop_daemon(d);
}

int agent_http_start_browser(struct agent *agent, struct MHD_Daemon **out, char *err,
			     size_t err_size)
{
	struct sockaddr_in sa;
	struct MHD_Daemon *d = NULL;
	int fd = -1, one = 1, rc = 0;

	fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		snprintf(err, err_size, "socket: %s", strerror(errno));
		rc = FIRMANTE_E_IO;
		goto out;
	}
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	memset(&sa, 0, sizeof(sa));
	sa.sin_family = AF_INET;
	sa.sin_port = htons((uint16_t)agent->cfg->browser_port);
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK); /* loopback only, never 0.0.0.0 */
	if (bind(fd, (const struct sockaddr *)&sa, sizeof(sa)) != 0) {
		snprintf(err, err_size, "browser listener: cannot bind 127.0.0.1:%u: %s",
			 agent->cfg->browser_port, strerror(errno));
		rc = FIRMANTE_E_CONFIG;
		goto out;
	}
	if (listen(fd, (int)agent->cfg->max_clients) != 0) {
		snprintf(err, err_size, "browser listener: listen: %s", strerror(errno));
		rc = FIRMANTE_E_IO;
		goto out;
	}
	browser_listener.agent = agent;
	browser_listener.browser = true;
	d = MHD_start_daemon(MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_THREAD_PER_CONNECTION |
				     MHD_USE_POLL | MHD_USE_ITC | MHD_USE_ERROR_LOG,
			     0, NULL, NULL, on_request, &browser_listener,
			     MHD_OPTION_EXTERNAL_LOGGER, mhd_log, NULL,
			     MHD_OPTION_LISTEN_SOCKET, fd,
			     MHD_OPTION_CONNECTION_LIMIT, (unsigned int)agent->cfg->max_clients,
			     MHD_OPTION_CONNECTION_TIMEOUT, CONNECTION_TIMEOUT_S,
			     MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t)(64 * 1024),
			     MHD_OPTION_NOTIFY_COMPLETED, on_completed, NULL,
			     MHD_OPTION_END);
	if (!d) {
		snprintf(err, err_size, "browser listener: the HTTP server did not start");
		rc = FIRMANTE_E_INTERNAL;
		goto out;
	}
	fd = -1; /* the daemon owns it */
	*out = d;
out:
	if (fd >= 0)
		close(fd);
	return rc;
}

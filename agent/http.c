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
#include <p11-kit/uri.h>

#include "agent.h"
#include "workers.h"
#include "hotplug.h"
#include "firmante/build-config.h"
#include "firmante/protocol.h"
#include "firmante/satcert.h"
#include "firmante/titulo.h"
#include "firmante/titulo-build.h"
#include "firmante/token.h"
#include "firmante/util.h"

#define PROBLEM_TYPE_BASE "https://firmante.invalid/problems/"
#define DETAIL_MAX 1024
#define CONNECTION_TIMEOUT_S 60u

enum endpoint { EP_NONE, EP_STATUS, EP_TOKENS, EP_KEYS, EP_SIGN, EP_PAIR, EP_PAIRINGS,
		EP_REVOKE, EP_REQUESTS, EP_DECIDE, EP_SIGN_BATCH, EP_EVENTS };

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
	case EP_SIGN_BATCH:
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
	out->gid = cred.gid;
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

/* Is @c a member of @gid (primary group, or in /proc/<pid>/status Groups)? */
static bool caller_in_group(const struct agent_caller *c, gid_t gid)
{
	char path[64], line[4096];
	FILE *f;
	bool in = false;

	if (gid == (gid_t)-1)
		return false;
	if (c->gid == gid)
		return true;
	snprintf(path, sizeof(path), "/proc/%ld/status", (long)c->pid);
	f = fopen(path, "re");
	if (!f)
		return false;
	while (!in && fgets(line, sizeof(line), f)) {
		char *p, *end;

		if (strncmp(line, "Groups:", 7) != 0)
			continue;
		for (p = line + 7;; p = end) {
			unsigned long g;

			errno = 0;
			g = strtoul(p, &end, 10);
			if (end == p || errno)
				break;
			if ((gid_t)g == gid)
				in = true;
		}
		break;
	}
	fclose(f);
	return in;
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
	/* ?cert=1: each certificate's DER bytes as read from the token
	 * (CKA_VALUE), Base64, for exporting the .cer (docs/protocol.md). */
	const char *want = MHD_lookup_connection_value(c, MHD_GET_ARGUMENT_KIND, "cert");
	bool with_cert = want && strcmp(want, "1") == 0;
	arr = json_array();
	for (size_t i = 0; arr && i < n; i++) {
		json_t *k = key_json(rq->agent, &ids[i], now);
		char *b64 = NULL;
		if (k && with_cert && ids[i].cert_der && ids[i].cert_len &&
		    fm_base64_encode(ids[i].cert_der, ids[i].cert_len, &b64) == 0)
			json_object_set_new(k, "certificate", json_string(b64));
		free(b64);
		json_array_append_new(arr, k);
	}
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

/* The JSON type of @v in words, for a "must be ..., not ..." detail. */
static const char *json_kind(const json_t *v)
{
	switch (json_typeof(v)) {
	case JSON_OBJECT:
		return "an object";
	case JSON_ARRAY:
		return "an array";
	case JSON_STRING:
		return "a string";
	case JSON_INTEGER:
	case JSON_REAL:
		return "a number";
	case JSON_TRUE:
	case JSON_FALSE:
		return "true or false";
	default:
		return "null";
	}
}

/* Detail for request member @name that is missing (@v NULL) or not what
 * @want says it must be ("a string", ...). */
static void member_detail(char *detail, size_t size, const char *name, const json_t *v,
			  const char *want)
{
	if (!v)
		snprintf(detail, size, "\"%s\" is missing; it must be %s", name, want);
	else
		snprintf(detail, size, "\"%s\" must be %s, not %s", name, want, json_kind(v));
}

/* Space-padded copy of @src into a CK_TOKEN_INFO field (PKCS#11 v2.40 §5.4). */
static void pad_field(unsigned char *dst, size_t size, const char *src)
{
	size_t n = strlen(src);

	memset(dst, ' ', size);
	memcpy(dst, src, n < size ? n : size);
}

/* How many identities key URI @uri matches, by the same rules as
 * fp11_find_identity() (RFC 7512: token fields, id, object, type);
 * 0 when the URI matches none or cannot be read. */
static size_t uri_match_count(fp11_ctx *p11, const char *uri)
{
	struct fp11_identity *ids = NULL;
	size_t n = 0, found = 0;
	P11KitUri *u = p11_kit_uri_new();

	if (!u)
		return 0;
	if (p11_kit_uri_parse(uri, P11_KIT_URI_FOR_OBJECT_ON_TOKEN, u) != P11_KIT_URI_OK ||
	    p11_kit_uri_any_unrecognized(u) || fp11_list_identities(p11, &ids, &n) != 0) {
		p11_kit_uri_free(u);
		return 0;
	}
	for (size_t i = 0; i < n; i++) {
		CK_TOKEN_INFO raw;
		CK_OBJECT_CLASS priv = CKO_PRIVATE_KEY;
		CK_ATTRIBUTE attrs[] = {
			{ CKA_CLASS, &priv, sizeof(priv) },
			{ CKA_ID, ids[i].id, ids[i].id_len },
			{ CKA_LABEL, ids[i].key_label, strlen(ids[i].key_label) },
		};

		memset(&raw, 0, sizeof(raw));
		pad_field(raw.label, sizeof(raw.label), ids[i].token.label);
		pad_field(raw.manufacturerID, sizeof(raw.manufacturerID), ids[i].token.manufacturer);
		pad_field(raw.model, sizeof(raw.model), ids[i].token.model);
		pad_field(raw.serialNumber, sizeof(raw.serialNumber), ids[i].token.serial);
		raw.flags = ids[i].token.flags;
		if (p11_kit_uri_match_token_info(u, &raw) && p11_kit_uri_match_attributes(u, attrs, 3))
			found++;
	}
	fp11_identities_free(ids, n);
	p11_kit_uri_free(u);
	return found;
}

/* Detail for key-not-found: whether no key or several keys match @uri,
 * and the URI itself (at most 200 characters). */
static void key_not_found_detail(fp11_ctx *p11, const char *uri, char *detail, size_t size)
{
	char shown[201];
	size_t n = uri_match_count(p11, uri);

	copy_field(shown, sizeof(shown), uri);
	if (n > 1)
		snprintf(detail, size,
			 "%zu keys match \"%s\"; the URI must name exactly one key (add its id= or "
			 "token=; \"firmante keys\" lists each key's URI)", n, shown);
	else
		snprintf(detail, size,
			 "no key with a certificate matches \"%s\" (is the token plugged in? "
			 "\"firmante keys\" lists the keys the agent sees)", shown);
}

/* Detail for a cadena original that titulo_cadena() could not build for
 * FirmaResponsable @idx (0-based; shown 1-based): the field and why. */
static void cadena_detail(const titulo *t, size_t idx, int rc, char *detail, size_t size)
{
	char field[160];
	int cr = titulo_cadena_check(t, idx, field, sizeof(field));

	if (cr == FIRMANTE_E_BAD_DOCUMENT)
		snprintf(detail, size,
			 "the cadena original of FirmaResponsable[%zu] cannot be built: %s is missing "
			 "and the cadena needs it (§5)", idx + 1, field);
	else if (cr == FIRMANTE_E_INVALID)
		snprintf(detail, size,
			 "the cadena original of FirmaResponsable[%zu] cannot be built: %s holds the "
			 "character '|', which the cadena cannot carry (§5.1)", idx + 1, field);
	else
		snprintf(detail, size, "the cadena original of FirmaResponsable[%zu] cannot be built: %s",
			 idx + 1, firmante_err_title(rc));
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
		member_detail(detail, sizeof(detail), "format", v,
			      "a string (\"" FIRMANTE_FORMAT_TITULO "\")");
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
		member_detail(detail, sizeof(detail), "document", v,
			      "a string (the unsigned XML as a JSON string)");
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
		if (json_is_string(v))
			snprintf(detail, sizeof(detail), "\"key\" must be a PKCS#11 URI (RFC 7512) of the signer's key");
		else
			member_detail(detail, sizeof(detail), "key", v,
				      "a string (the PKCS#11 URI of the signer's key, RFC 7512)");
		rc = FIRMANTE_E_BAD_REQUEST;
		goto out;
	}
	key = json_string_value(v);

	rc = fp11_find_identity(a->p11, key, &id);
	if (rc) {
		if (rc == FIRMANTE_E_KEY_NOT_FOUND)
			key_not_found_detail(a->p11, key, detail, sizeof(detail));
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
		cadena_detail(t, idx, rc, detail, sizeof(detail));
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
/* POST /v1/sign-batch: one approval over a manifest, then the signatures
 * streamed as JSON lines (application/x-ndjson) as they are made */

struct batch_item {
	char rid[FIRMANTE_MAX_REQUEST_ID + 1];
	titulo *t;
	char *cadena;
	size_t cadena_len;
	char sha[65];
	size_t idx;
	char graduate[400];
	struct agent_approval ap;
};

struct batch_stream {
	struct agent *agent;
	struct agent_caller caller;
	struct fp11_identity *id;
	struct batch_item *items;
	size_t n, next, signed_count;
	bool header_sent, finished;
	/* Token removed: the batch waits for the same token (serial + label). */
	bool paused;
	unsigned pauses;
	struct timespec pause_deadline; /* CLOCK_MONOTONIC */
	const char *stop_code;
	struct agent_batch b;
	bool approved;
	char *cert_b64;
	json_t *manifest;
	char rid[FIRMANTE_MAX_REQUEST_ID + 1];
	char *line;
	size_t line_len, line_off;
};

static void batch_free(struct batch_stream *bs)
{
	if (!bs)
		return;
	if (bs->approved)
		agent_batch_end(bs->agent, &bs->caller, &bs->b,
				!bs->finished ? "cancelled" : bs->stop_code ? bs->stop_code : "completed",
				bs->signed_count, bs->n);
	for (size_t i = 0; bs->items && i < bs->n; i++) {
		titulo_free(bs->items[i].t);
		free(bs->items[i].cadena);
	}
	free(bs->items);
	if (bs->id)
		fp11_identities_free(bs->id, 1);
	free(bs->cert_b64);
	json_decref(bs->manifest);
	if (bs->line) {
		fm_wipe(bs->line, bs->line_len);
		free(bs->line);
	}
	fm_wipe(&bs->b, sizeof(bs->b));
	free(bs);
}

/* Parse @doc, find the certificate's FirmaResponsable, build its cadena. */
static int batch_prepare(struct batch_stream *bs, struct batch_item *it, const char *doc,
			 size_t len, char *detail, size_t size)
{
	const struct fp11_identity *id = bs->id;
	struct titulo_error terr;
	size_t n;
	int rc;

	memset(&terr, 0, sizeof(terr));
	if (len > FIRMANTE_MAX_DOCUMENT) {
		snprintf(detail, size, "%zu bytes; the limit is %u", len, FIRMANTE_MAX_DOCUMENT);
		return FIRMANTE_E_TOO_LARGE;
	}
	rc = titulo_parse(doc, len, &it->t, &terr);
	if (rc) {
		it->t = NULL;
		snprintf(detail, size, "%s: %s (line %d)", terr.field[0] ? terr.field : "document",
			 terr.message, terr.line);
		return rc == FIRMANTE_E_NOMEM ? rc : FIRMANTE_E_BAD_DOCUMENT;
	}
	n = titulo_firmantes_count(it->t);
	for (it->idx = 0; it->idx < n; it->idx++) {
		const char *curp = titulo_firmante_attr(it->t, it->idx, "curp");

		if (curp && !strcmp(curp, id->cert.curp))
			break;
	}
	if (it->idx == n) {
		snprintf(detail, size, "no FirmaResponsable has curp=\"%s\", the CURP of certificate %s",
			 id->cert.curp, id->cert.no_certificado);
		return FIRMANTE_E_SIGNER_NOT_IN_DOCUMENT;
	}
	if (!titulo_firmante_attr(it->t, it->idx, "idCargo") ||
	    !titulo_firmante_attr(it->t, it->idx, "cargo")) {
		snprintf(detail, size, "FirmaResponsable[%zu]: the cargo row is missing", it->idx + 1);
		return FIRMANTE_E_BAD_DOCUMENT;
	}
	rc = titulo_cadena(it->t, it->idx, &it->cadena, &it->cadena_len);
	if (rc) {
		it->cadena = NULL;
		cadena_detail(it->t, it->idx, rc, detail, size);
		return rc;
	}
	rc = fm_sha256_hex(it->cadena, it->cadena_len, it->sha);
	if (rc)
		return rc;
	{
		const char *nom = titulo_attr(it->t, "Profesionista", "nombre");
		const char *ap1 = titulo_attr(it->t, "Profesionista", "primerApellido");
		const char *ap2 = titulo_attr(it->t, "Profesionista", "segundoApellido");

		snprintf(it->graduate, sizeof(it->graduate), "%s %s%s%s", nom ? nom : "",
			 ap1 ? ap1 : "", ap2 && ap2[0] ? " " : "", ap2 ? ap2 : "");
	}
	it->ap.caller = &bs->caller;
	it->ap.identity = id;
	it->ap.folio_control = titulo_attr(it->t, "TituloElectronico", "folioControl");
	it->ap.graduate_name = it->graduate;
	it->ap.graduate_curp = titulo_attr(it->t, "Profesionista", "curp");
	it->ap.nombre_carrera = titulo_attr(it->t, "Carrera", "nombreCarrera");
	it->ap.fecha_expedicion = titulo_attr(it->t, "Expedicion", "fechaExpedicion");
	it->ap.nombre_institucion = titulo_attr(it->t, "Institucion", "nombreInstitucion");
	it->ap.cargo = titulo_firmante_attr(it->t, it->idx, "cargo");
	return 0;
}

/* The manifest (JSON) and the dialog text of the batch. */
static int batch_manifest(struct batch_stream *bs, char *text, size_t size)
{
	const struct fp11_identity *id = bs->id;
	json_t *careers = json_object(), *list = json_array();
	EVP_MD_CTX *md = EVP_MD_CTX_new();
	unsigned char dig[32];
	char msha[65], until[32], caller[700], line[300];
	const char *key;
	json_t *v;
	size_t off = 0, shown = 0;
	int rc = FIRMANTE_E_NOMEM;

	if (!careers || !list || !md || EVP_DigestInit_ex(md, EVP_sha256(), NULL) != 1)
		goto out;
	for (size_t i = 0; i < bs->n; i++) {
		const char *car = bs->items[i].ap.nombre_carrera ? bs->items[i].ap.nombre_carrera : "";
		json_t *cnt = json_object_get(careers, car);

		json_object_set_new(careers, car,
				    json_integer(cnt ? json_integer_value(cnt) + 1 : 1));
		EVP_DigestUpdate(md, bs->items[i].sha, 64);
		EVP_DigestUpdate(md, "\n", 1);
	}
	EVP_DigestFinal_ex(md, dig, NULL);
	for (int i = 0; i < 32; i++)
		snprintf(msha + 2 * i, 3, "%02x", dig[i]);
	json_object_foreach(careers, key, v) {
		json_array_append_new(list, json_pack("{s:s, s:I}", "nombreCarrera", key, "count",
						      json_integer_value(v)));
	}
	bs->manifest = json_pack("{s:I, s:s, s:s, s:O, s:s, s:s}", "count", (json_int_t)bs->n,
				 "firstFolioControl", bs->items[0].ap.folio_control ?
				 bs->items[0].ap.folio_control : "",
				 "lastFolioControl", bs->items[bs->n - 1].ap.folio_control ?
				 bs->items[bs->n - 1].ap.folio_control : "",
				 "careers", list, "manifestSha256", msha, "batch", "");
	if (!bs->manifest)
		goto out;
	if (bs->caller.origin[0])
		snprintf(caller, sizeof(caller), "web page %.200s (browser)", bs->caller.origin);
	else
		snprintf(caller, sizeof(caller), "uid %lu, %.400s (pid %ld)",
			 (unsigned long)bs->caller.uid, bs->caller.exe, (long)bs->caller.pid);
	text[0] = '\0';
#define ADD(...) do { int w_ = snprintf(text + off, size - off, __VA_ARGS__); \
		      if (w_ > 0 && (size_t)w_ < size - off) off += (size_t)w_; } while (0)
	if (id->token.user_pin_final_try)
		ADD("WARNING: the token allows ONE more PIN try; a wrong PIN locks it.\n");
	ADD("A program asks to sign %zu T\xc3\xadtulos Electr\xc3\xb3nicos with your e.firma.\n",
	    bs->n);
	ADD("Caller: %.200s\n", caller);
	ADD("Signer: %.70s (CURP %s)\n", id->cert.subject_cn, id->cert.curp);
	ADD("Certificate: %s, valid until %s\n", id->cert.no_certificado,
	    fm_time_iso8601(id->cert.not_after, until, sizeof(until)));
	ADD("folioControl: %.40s to %.40s\n", json_string_value(json_object_get(bs->manifest,
	    "firstFolioControl")), json_string_value(json_object_get(bs->manifest, "lastFolioControl")));
	json_object_foreach(careers, key, v) {
		if (shown++ == 4) {
			ADD("... and %zu more careers\n", json_object_size(careers) - 4);
			break;
		}
		snprintf(line, sizeof(line), "Career: %.80s (%lld)\n", key,
			 (long long)json_integer_value(v));
		ADD("%s", line);
	}
	ADD("Manifest SHA-256: %s\n", msha);
	ADD("One PIN for the whole batch; each title is recorded in the audit log.");
#undef ADD
	rc = 0;
out:
	EVP_MD_CTX_free(md);
	json_decref(careers);
	json_decref(list);
	return rc;
}

static const char *rq_folio(const struct batch_item *it)
{
	return it->ap.folio_control ? it->ap.folio_control : "";
}

/* Is the batch's token (serial + label) among the tokens present now? */
static bool batch_token_present(struct batch_stream *bs)
{
	struct fp11_token_info *t = NULL;
	size_t n = 0;
	bool found = false;

	if (fp11_list_tokens(bs->agent->p11, &t, &n) != 0)
		return false;
	for (size_t i = 0; i < n && !found; i++)
		found = !strcmp(t[i].serial, bs->id->token.serial) &&
			!strcmp(t[i].label, bs->id->token.label);
	free(t);
	return found;
}

#define BATCH_PAUSE_STEP_NS 250000000L /* a paused batch looks for its token this often */

/* One audit record for a pause or a resume of the batch. */
static void batch_audit(struct batch_stream *bs, const char *event, const char *result)
{
	struct agent_audit_record rec;
	char res[128];

	snprintf(res, sizeof(res), "%s: %zu of %zu signed", result, bs->signed_count, bs->n);
	memset(&rec, 0, sizeof(rec));
	rec.event = event;
	rec.caller = &bs->caller;
	rec.key = bs->id->uri;
	rec.no_certificado = bs->id->cert.no_certificado;
	rec.batch = bs->b.id;
	rec.decision = "none";
	rec.result = res;
	agent_audit_append(bs->agent->audit, &rec);
}

/*
 * The token of a running batch left (token-removed, or its key is gone
 * with it): pause. The PIN of the batch is wiped, so the holder logs in
 * again (GETPIN) when the token is back. Returns the line to send, or
 * NULL when the batch cannot pause (no watcher, too many pauses).
 */
static json_t *batch_pause(struct batch_stream *bs)
{
	const struct agent_config *cfg = bs->agent->cfg;
	json_t *o;

	if (!bs->agent->hotplug || bs->pauses >= AGENT_BATCH_MAX_PAUSES)
		return NULL;
	bs->paused = true;
	bs->pauses++;
	clock_gettime(CLOCK_MONOTONIC, &bs->pause_deadline);
	bs->pause_deadline.tv_sec += cfg->batch_pause_timeout;
	fm_wipe(bs->b.pin, sizeof(bs->b.pin));
	bs->b.have_pin = false;
	agent_hotplug_rescan(bs->agent->hotplug);
	batch_audit(bs, "sign-batch-paused", "token-removed");
	agent_log("uid=%lu %s paused at item %zu/%zu: token \"%s\" (serial %s) removed; "
		  "waiting up to %ld s", (unsigned long)bs->caller.uid, bs->b.id, bs->next + 1,
		  bs->n, bs->id->token.label, bs->id->token.serial, cfg->batch_pause_timeout);
	o = json_pack("{s:s, s:s, s:I, s:{s:s, s:s}, s:I}", "event", "paused", "reason",
		      "token-removed", "index", (json_int_t)bs->next, "token", "label",
		      bs->id->token.label, "serial", bs->id->token.serial, "timeout",
		      (json_int_t)cfg->batch_pause_timeout);
	return o;
}

/* Paused: wait for the same token; the line to send (resumed or the end). */
static json_t *batch_wait_resume(struct batch_stream *bs)
{
	struct batch_item *it = &bs->items[bs->next];
	char detail[300];

	bs->paused = false;
	/* The token list itself, four times a second: the watcher's list may
	 * still show a token that has just left. A stopping agent ends the wait. */
	for (;;) {
		struct timespec now, step = { 0, BATCH_PAUSE_STEP_NS };

		if (batch_token_present(bs)) {
			batch_audit(bs, "sign-batch-resumed", "token-back");
			agent_log("uid=%lu %s resumed at item %zu/%zu: token \"%s\" is back",
				  (unsigned long)bs->caller.uid, bs->b.id, bs->next + 1, bs->n,
				  bs->id->token.label);
			return json_pack("{s:s, s:I}", "event", "resumed", "index",
					 (json_int_t)bs->next);
		}
		clock_gettime(CLOCK_MONOTONIC, &now);
		if (agent_hotplug_stopping(bs->agent->hotplug) ||
		    now.tv_sec > bs->pause_deadline.tv_sec ||
		    (now.tv_sec == bs->pause_deadline.tv_sec &&
		     now.tv_nsec >= bs->pause_deadline.tv_nsec))
			break;
		nanosleep(&step, NULL);
	}
	snprintf(detail, sizeof(detail), "token \"%s\" (serial %s) was removed and did not "
		 "come back within %ld s; titles from index %zu on were not signed",
		 bs->id->token.label, bs->id->token.serial, bs->agent->cfg->batch_pause_timeout,
		 bs->next);
	bs->stop_code = firmante_err_code(FIRMANTE_E_TOKEN_REMOVED);
	batch_audit(bs, "sign-batch-resumed", "token-removed");
	return json_pack("{s:I, s:s, s:{s:s, s:i, s:s}}", "index", (json_int_t)bs->next, "id",
			 it->rid, "problem", "code", bs->stop_code, "status",
			 firmante_err_http_status(FIRMANTE_E_TOKEN_REMOVED), "detail", detail);
}

/*
 * Sign the batch's next item; the line to send for it (a result, a
 * problem, or "paused"). Its audit record is written but, for a signature,
 * not yet durable: batch_next_line() syncs the log before sending.
 */
static json_t *batch_sign_next(struct batch_stream *bs)
{
	struct batch_item *it = &bs->items[bs->next];
	struct agent_sign_job *job = NULL;
	json_t *o = NULL;
	char *sello = NULL;
	int rc;

	job = calloc(1, sizeof(*job));
	if (!job) {
		bs->stop_code = "out-of-memory";
		return NULL;
	}
	job->caller = &bs->caller;
	job->approval = &it->ap;
	job->cadena = it->cadena;
	job->cadena_len = it->cadena_len;
	job->cadena_sha256 = it->sha;
	job->client_fd = -1;
	job->batch = &bs->b;
	job->defer_audit_sync = true;
	rc = agent_sign_one(bs->agent, job);
	if (!rc)
		rc = fm_base64_encode(job->sig, job->sig_len, &sello);
	/* token-removed pauses even when the token is already back (a quick
	 * re-plug or a reset): the resume asks for a new login. A missing
	 * key pauses only when its token is gone too. */
	if ((rc == FIRMANTE_E_TOKEN_REMOVED ||
	     (rc == FIRMANTE_E_KEY_NOT_FOUND && !batch_token_present(bs))) &&
	    (o = batch_pause(bs)) != NULL) {
		/* The same item is signed again once the token is back. */
		agent_log("uid=%lu %s item %zu/%zu folioControl=%s -> %s (paused)",
			  (unsigned long)bs->caller.uid, bs->b.id, bs->next + 1, bs->n,
			  rq_folio(it), firmante_err_code(rc));
		goto out;
	}
	if (rc) {
		o = json_pack("{s:I, s:s, s:{s:s, s:i, s:s}}", "index", (json_int_t)bs->next,
			      "id", it->rid, "problem", "code", firmante_err_code(rc), "status",
			      firmante_err_http_status(rc), "detail",
			      job->detail[0] ? job->detail : firmante_err_title(rc));
		bs->stop_code = firmante_err_code(rc);
	} else {
		o = json_pack("{s:I, s:s, s:s, s:s, s:s, s:s, s:I, s:s}", "index",
			      (json_int_t)bs->next, "id", it->rid, "sello", sello,
			      "certificadoResponsable", bs->cert_b64,
			      "noCertificadoResponsable", bs->id->cert.no_certificado,
			      "curp", bs->id->cert.curp, "firmanteIndex", (json_int_t)it->idx,
			      "cadenaSha256", it->sha);
		bs->signed_count++;
	}
	agent_log("uid=%lu %s item %zu/%zu folioControl=%s -> %s",
		  (unsigned long)bs->caller.uid, bs->b.id, bs->next + 1, bs->n,
		  rq_folio(it), rc ? firmante_err_code(rc) : "signed");
	bs->next++;
out:
	fm_wipe(job, sizeof(*job));
	free(job);
	free(sello);
	return o;
}

/* Append @o as one JSON line to the buffer (*@buf, *@len); false on no memory. */
static bool batch_add_line(char **buf, size_t *len, json_t *o)
{
	char *s = json_dumps(o, JSON_COMPACT | JSON_ENSURE_ASCII), *nb;
	size_t n;

	if (!s)
		return false;
	n = strlen(s);
	nb = realloc(*buf, *len + n + 1);
	if (!nb) {
		fm_wipe(s, n);
		free(s);
		return false;
	}
	memcpy(nb + *len, s, n);
	nb[*len + n] = '\n';
	*buf = nb;
	*len += n + 1;
	fm_wipe(s, n);
	free(s);
	return true;
}

/*
 * Sign up to AGENT_BATCH_GROUP items (for at most AGENT_BATCH_GROUP_MS)
 * and make their audit records durable with one fdatasync before any of their lines is sent (group commit: no
 * trace, no signature). When the sync fails, the group's signatures are
 * withheld and the batch stops. False when nothing could be produced.
 */
static bool batch_sign_group(struct batch_stream *bs)
{
	size_t first = bs->next, signed_before = bs->signed_count, len = 0;
	char *buf = NULL;
	bool ok = true;
	struct timespec t0, now;

	clock_gettime(CLOCK_MONOTONIC, &t0);
	for (size_t k = 0; k < AGENT_BATCH_GROUP && bs->next < bs->n && !bs->stop_code &&
	     !bs->paused; k++) {
		json_t *o;

		/* A slow token sends each line at once (and notices a client
		 * that left as soon as without grouping). */
		clock_gettime(CLOCK_MONOTONIC, &now);
		if (k > 0 && (now.tv_sec - t0.tv_sec) * 1000L + (now.tv_nsec - t0.tv_nsec) / 1000000L >=
			     AGENT_BATCH_GROUP_MS)
			break;
		o = batch_sign_next(bs);

		if (!o) {
			if (!bs->stop_code)
				bs->stop_code = "out-of-memory";
			break;
		}
		ok = batch_add_line(&buf, &len, o);
		json_decref(o);
		if (!ok)
			break;
	}
	if (agent_audit_sync(bs->agent->audit) != 0 || !ok) {
		json_t *o;
		char detail[300];
		int err = ok ? FIRMANTE_E_IO : FIRMANTE_E_NOMEM;

		if (buf) {
			fm_wipe(buf, len);
			free(buf);
			buf = NULL;
			len = 0;
		}
		snprintf(detail, sizeof(detail), ok ?
			 "the audit records of titles %zu to %zu could not be made durable in %s; "
			 "their signatures are withheld" :
			 "out of memory while sending titles %zu to %zu; their signatures are withheld",
			 first, bs->next ? bs->next - 1 : 0, agent_audit_path(bs->agent->audit));
		bs->signed_count = signed_before;
		bs->stop_code = firmante_err_code(err);
		bs->paused = false;
		o = json_pack("{s:I, s:s, s:{s:s, s:i, s:s}}", "index", (json_int_t)first, "id",
			      bs->items[first].rid, "problem", "code", bs->stop_code, "status",
			      firmante_err_http_status(err), "detail", detail);
		if (!o || !batch_add_line(&buf, &len, o)) {
			json_decref(o);
			bs->finished = true;
			return false;
		}
		json_decref(o);
	}
	if (!buf)
		return false;
	bs->line = buf;
	bs->line_len = len;
	bs->line_off = 0;
	return true;
}

/* Make the next line(s) of the stream; false at the end. */
static bool batch_next_line(struct batch_stream *bs)
{
	json_t *o = NULL;

	if (!bs->header_sent) {
		bs->header_sent = true;
		o = json_pack("{s:O}", "batch", bs->manifest);
		if (o && bs->rid[0])
			json_object_set_new(o, "id", json_string(bs->rid));
	} else if (bs->paused) {
		o = batch_wait_resume(bs);
	} else if (bs->next < bs->n && !bs->stop_code) {
		if (batch_sign_group(bs))
			return true;
		if (bs->finished)
			return false;
		return batch_next_line(bs);
	} else if (!bs->finished) {
		bs->finished = true;
		o = json_pack("{s:b, s:I, s:I, s:s}", "done", 1, "signed", (json_int_t)bs->signed_count,
			      "total", (json_int_t)bs->n, "result",
			      bs->stop_code ? bs->stop_code : "completed");
	} else {
		return false;
	}
	if (!o) {
		bs->finished = true;
		return false;
	}
	bs->line = json_dumps(o, JSON_COMPACT | JSON_ENSURE_ASCII);
	json_decref(o);
	if (!bs->line) {
		bs->finished = true;
		return false;
	}
	bs->line_len = strlen(bs->line);
	bs->line[bs->line_len++] = '\n'; /* the NUL becomes the line end */
	bs->line_off = 0;
	return true;
}

static ssize_t batch_reader(void *cls, uint64_t pos, char *buf, size_t max)
{
	struct batch_stream *bs = cls;
	size_t n;

	if (!bs->line || bs->line_off == bs->line_len) {
		if (bs->line) {
			fm_wipe(bs->line, bs->line_len);
			free(bs->line);
			bs->line = NULL;
		}
		if (!batch_next_line(bs))
			return MHD_CONTENT_READER_END_OF_STREAM;
	}
	n = bs->line_len - bs->line_off;
	if (n > max)
		n = max;
	memcpy(buf, bs->line + bs->line_off, n);
	bs->line_off += n;
	return (ssize_t)n;
}

static void batch_reader_free(void *cls)
{
	batch_free(cls);
}

static enum MHD_Result ep_sign_batch(struct MHD_Connection *c, struct request *rq)
{
	struct agent *a = rq->agent;
	struct batch_stream *bs = NULL;
	struct MHD_Response *resp;
	json_error_t jerr;
	json_t *req = NULL, *v, *docs;
	char detail[DETAIL_MAX], text[2048], where[200];
	enum MHD_Result ret;
	size_t i;
	int rc = 0;

	detail[0] = '\0';
	bs = calloc(1, sizeof(*bs));
	if (!bs)
		return send_problem(c, rq, FIRMANTE_E_NOMEM, NULL);
	bs->agent = a;
	bs->caller = rq->caller;
	req = json_loadb(rq->body ? rq->body : "", rq->len, JSON_REJECT_DUPLICATES, &jerr);
	if (!req || !json_is_object(req)) {
		snprintf(detail, sizeof(detail), "the body must be a JSON object%s%s",
			 req ? "" : ": ", req ? "" : jerr.text);
		rc = FIRMANTE_E_BAD_REQUEST;
		goto out;
	}
	v = json_object_get(req, "id");
	if (v) {
		if (!json_is_string(v) || !valid_request_id(json_string_value(v), json_string_length(v))) {
			snprintf(detail, sizeof(detail), "\"id\" must be a string of at most %u "
				 "printable characters", FIRMANTE_MAX_REQUEST_ID);
			rc = FIRMANTE_E_BAD_REQUEST;
			goto out;
		}
		snprintf(rq->id, sizeof(rq->id), "%s", json_string_value(v));
		snprintf(bs->rid, sizeof(bs->rid), "%s", json_string_value(v));
		rq->has_id = true;
	}
	v = json_object_get(req, "format");
	if (!json_is_string(v) || strcmp(json_string_value(v), FIRMANTE_FORMAT_TITULO) != 0) {
		if (json_is_string(v))
			snprintf(detail, sizeof(detail), "\"format\" must be \"%s\"", FIRMANTE_FORMAT_TITULO);
		else
			member_detail(detail, sizeof(detail), "format", v,
				      "a string (\"" FIRMANTE_FORMAT_TITULO "\")");
		rc = json_is_string(v) ? FIRMANTE_E_UNSUPPORTED_FORMAT : FIRMANTE_E_BAD_REQUEST;
		goto out;
	}
	v = json_object_get(req, "key");
	if (!json_is_string(v) || strncmp(json_string_value(v), "pkcs11:", 7) != 0) {
		if (json_is_string(v))
			snprintf(detail, sizeof(detail), "\"key\" must be a PKCS#11 URI (RFC 7512) of the signer's key");
		else
			member_detail(detail, sizeof(detail), "key", v,
				      "a string (the PKCS#11 URI of the signer's key, RFC 7512)");
		rc = FIRMANTE_E_BAD_REQUEST;
		goto out;
	}
	docs = json_object_get(req, "documents");
	if (!json_is_array(docs) || json_array_size(docs) == 0 ||
	    json_array_size(docs) > AGENT_MAX_BATCH) {
		snprintf(detail, sizeof(detail),
			 "\"documents\" must be an array of 1 to %d {\"id\", \"document\"} objects",
			 AGENT_MAX_BATCH);
		rc = json_is_array(docs) && json_array_size(docs) > AGENT_MAX_BATCH ?
		     FIRMANTE_E_TOO_LARGE : FIRMANTE_E_BAD_REQUEST;
		goto out;
	}
	rc = fp11_find_identity(a->p11, json_string_value(v), &bs->id);
	if (rc) {
		bs->id = NULL;
		if (rc == FIRMANTE_E_KEY_NOT_FOUND)
			key_not_found_detail(a->p11, json_string_value(v), detail, sizeof(detail));
		else if (rc == FIRMANTE_E_BAD_REQUEST)
			snprintf(detail, sizeof(detail), "\"key\" is not a valid PKCS#11 URI");
		goto out;
	}
	rc = check_identity(a, bs->id, time(NULL), detail, sizeof(detail));
	if (rc)
		goto out;
	bs->n = json_array_size(docs);
	bs->items = calloc(bs->n, sizeof(*bs->items));
	if (!bs->items) {
		rc = FIRMANTE_E_NOMEM;
		goto out;
	}
	json_array_foreach(docs, i, v) {
		json_t *d = json_object_get(v, "document"), *did = json_object_get(v, "id");
		char one[DETAIL_MAX];

		if (did && (!json_is_string(did) ||
			    !valid_request_id(json_string_value(did), json_string_length(did)))) {
			snprintf(detail, sizeof(detail), "documents[%zu].id: at most %u printable "
				 "characters", i, FIRMANTE_MAX_REQUEST_ID);
			rc = FIRMANTE_E_BAD_REQUEST;
			goto out;
		}
		snprintf(bs->items[i].rid, sizeof(bs->items[i].rid), "%s",
			 did ? json_string_value(did) : "");
		if (!json_is_string(d)) {
			if (d)
				snprintf(detail, sizeof(detail), "documents[%zu].document must be a string "
					 "(the unsigned XML as a JSON string), not %s", i, json_kind(d));
			else
				snprintf(detail, sizeof(detail), "documents[%zu].document is missing; it "
					 "must be a string (the unsigned XML as a JSON string)", i);
			rc = FIRMANTE_E_BAD_REQUEST;
			goto out;
		}
		one[0] = '\0';
		rc = batch_prepare(bs, &bs->items[i], json_string_value(d), json_string_length(d),
				   one, sizeof(one));
		if (rc) {
			snprintf(where, sizeof(where), "documents[%zu]%s%.100s%s", i,
				 bs->items[i].rid[0] ? " (" : "", bs->items[i].rid,
				 bs->items[i].rid[0] ? ")" : "");
			snprintf(detail, sizeof(detail), "%s: %.700s; nothing in the batch was signed",
				 where, one);
			goto out;
		}
	}
	rc = batch_manifest(bs, text, sizeof(text));
	if (rc)
		goto out;
	rc = fm_base64_encode(bs->id->cert_der, bs->id->cert_len, &bs->cert_b64);
	if (rc) {
		bs->cert_b64 = NULL;
		goto out;
	}
	json_decref(req);
	req = NULL;
	/* The holder's one decision over the manifest (or the caller's policy). */
	rc = agent_approve_batch(a, &bs->caller, bs->id, bs->manifest, text, &bs->b, detail,
				 sizeof(detail));
	if (rc)
		goto out;
	bs->approved = true;
	json_object_set_new(bs->manifest, "batch", json_string(bs->b.id));
	resp = MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 16 * 1024, batch_reader, bs,
						 batch_reader_free);
	if (!resp) {
		rc = FIRMANTE_E_NOMEM;
		goto out;
	}
	bs = NULL; /* the response owns it */
	MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, "application/x-ndjson");
	MHD_add_response_header(resp, MHD_HTTP_HEADER_CACHE_CONTROL, "no-store");
	if (rq->cors[0]) {
		MHD_add_response_header(resp, MHD_HTTP_HEADER_ACCESS_CONTROL_ALLOW_ORIGIN, rq->cors);
		MHD_add_response_header(resp, MHD_HTTP_HEADER_VARY, "Origin");
	}
	ret = MHD_queue_response(c, MHD_HTTP_OK, resp);
	MHD_destroy_response(resp);
	rq->responded = true;
	log_request(rq, ret == MHD_YES ? MHD_HTTP_OK : 0, "batch-approved, streaming");
	return ret;
out:
	json_decref(req);
	batch_free(bs);
	return send_problem(c, rq, rc, detail);
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
		member_detail(detail, sizeof(detail), "origin", json_object_get(req, "origin"),
			      "a string (the web page's origin)");
		json_decref(req);
		return send_problem(c, rq, FIRMANTE_E_BAD_REQUEST, detail);
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
/* GET /v1/events?since=SEQ&timeout=SECONDS: tokens arriving and leaving */

/* A decimal query value from @min to @max; absent gives @def. */
static int query_number(struct MHD_Connection *c, const char *name, unsigned long long min,
			unsigned long long max, unsigned long long def, unsigned long long *out)
{
	const char *v = MHD_lookup_connection_value(c, MHD_GET_ARGUMENT_KIND, name);
	char *end = NULL;
	unsigned long long n;

	if (!v) {
		*out = def;
		return 0;
	}
	if (v[0] < '0' || v[0] > '9')
		return FIRMANTE_E_BAD_REQUEST;
	errno = 0;
	n = strtoull(v, &end, 10);
	if (errno || !end || *end || n < min || n > max)
		return FIRMANTE_E_BAD_REQUEST;
	*out = n;
	return 0;
}

static json_t *event_token_json(const char *label, const char *serial, const char *manufacturer,
				const char *model)
{
	return json_pack("{s:s, s:s, s:s, s:s}", "label", label, "serial", serial, "manufacturer",
			 manufacturer, "model", model);
}

static enum MHD_Result ep_events(struct MHD_Connection *c, struct request *rq)
{
	struct agent *a = rq->agent;
	struct agent_token_event *ev = NULL;
	struct fp11_token_info *present = NULL;
	unsigned long long since, timeout;
	uint64_t last = 0, lost = 0;
	size_t n = 0, n_present = 0;
	json_t *list = NULL, *toks = NULL, *o;
	char detail[200], when[32];

	if (query_number(c, "since", 0, UINT64_MAX, 0, &since) ||
	    query_number(c, "timeout", 0, AGENT_HOTPLUG_MAX_WAIT, 0, &timeout)) {
		snprintf(detail, sizeof(detail), "since must be an event number (0 or more) and "
			 "timeout seconds from 0 to %d", AGENT_HOTPLUG_MAX_WAIT);
		return send_problem(c, rq, FIRMANTE_E_BAD_REQUEST, detail);
	}
	if (!a->hotplug)
		return send_problem(c, rq, FIRMANTE_E_INTERNAL, "the token watcher is not running");
	ev = calloc(AGENT_HOTPLUG_EVENTS, sizeof(*ev));
	present = calloc(AGENT_HOTPLUG_MAX_TOKENS, sizeof(*present));
	list = json_array();
	toks = json_array();
	if (!ev || !present || !list || !toks)
		goto nomem;
	agent_hotplug_events(a->hotplug, since, (long)timeout, ev, AGENT_HOTPLUG_EVENTS, &n, &last,
			     &lost);
	agent_hotplug_present(a->hotplug, present, AGENT_HOTPLUG_MAX_TOKENS, &n_present);
	for (size_t i = 0; i < n; i++) {
		o = json_pack("{s:I, s:s, s:s, s:o}", "seq", (json_int_t)ev[i].seq, "type",
			      ev[i].kind == AGENT_TOKEN_ARRIVED ? "token-arrived" : "token-removed",
			      "time", fm_time_iso8601(ev[i].when, when, sizeof(when)), "token",
			      event_token_json(ev[i].label, ev[i].serial, ev[i].manufacturer,
					       ev[i].model));
		if (!o || json_array_append_new(list, o))
			goto nomem;
	}
	for (size_t i = 0; i < n_present; i++) {
		o = event_token_json(present[i].label, present[i].serial, present[i].manufacturer,
				     present[i].model);
		if (!o || json_array_append_new(toks, o))
			goto nomem;
	}
	o = json_pack("{s:o, s:I, s:I, s:o, s:s}", "events", list, "last", (json_int_t)last,
		      "lost", (json_int_t)lost, "tokens", toks, "watch",
		      agent_hotplug_method(a->hotplug));
	list = toks = NULL;
	free(ev);
	free(present);
	if (!o)
		return send_problem(c, rq, FIRMANTE_E_NOMEM, NULL);
	return send_ok(c, rq, o);
nomem:
	json_decref(list);
	json_decref(toks);
	free(ev);
	free(present);
	return send_problem(c, rq, FIRMANTE_E_NOMEM, NULL);
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
	if (!strcmp(url, "/v1/sign-batch"))
		return EP_SIGN_BATCH;
	if (!strcmp(url, "/v1/pair"))
		return EP_PAIR;
	if (!strcmp(url, "/v1/pairings"))
		return EP_PAIRINGS;
	if (!strcmp(url, "/v1/pairings/revoke"))
		return EP_REVOKE;
	if (!strcmp(url, "/v1/requests"))
		return EP_REQUESTS;
	if (!strcmp(url, "/v1/events"))
		return EP_EVENTS;
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
	    rq->ep == EP_REQUESTS || rq->ep == EP_EVENTS) {
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
	const char *relayed;
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
	if (rq->caller.uid != geteuid() &&
	    !caller_in_group(&rq->caller, rq->agent->cfg->group_gid)) {
		snprintf(detail, sizeof(detail), "uid %lu may not use the agent of uid %lu",
			 (unsigned long)rq->caller.uid, (unsigned long)geteuid());
		return send_problem(c, rq, FIRMANTE_E_FORBIDDEN, detail);
	}
	rq->ep = route(url);
	relayed = MHD_lookup_connection_value(c, MHD_HEADER_KIND, FIRMANTE_HEADER_ORIGIN);
	if (relayed) {
		/* A web page through the native messaging relay (firmante-nm): a
		 * browser caller, as on the loopback listener (the origin shown in
		 * every dialog and audit record, never a policy, no approvals,
		 * pairings or events). The header can only take rights away. */
		if (!agent_origin_valid(relayed)) {
			snprintf(detail, sizeof(detail),
				 "%s must be a web page's origin (http(s)://host[:port]), got \"%.80s\"",
				 FIRMANTE_HEADER_ORIGIN, relayed);
			agent_sanitize(detail);
			return send_problem(c, rq, FIRMANTE_E_BAD_REQUEST, detail);
		}
		snprintf(rq->caller.origin, sizeof(rq->caller.origin), "%s", relayed);
		if (rq->ep == EP_REQUESTS || rq->ep == EP_PAIRINGS || rq->ep == EP_REVOKE ||
		    rq->ep == EP_EVENTS || rq->ep == EP_PAIR) {
			snprintf(detail, sizeof(detail), "no endpoint %.100s for web pages", rq->path);
			return send_problem(c, rq, FIRMANTE_E_NOT_FOUND, detail);
		}
	}
	if (rq->caller.uid != geteuid() &&
	    (rq->ep == EP_REQUESTS || rq->ep == EP_PAIRINGS || rq->ep == EP_REVOKE)) {
		/* Decisions belong to the holder, not to the group's members. */
		snprintf(detail, sizeof(detail),
			 "only the holder (uid %lu) may see or decide approvals and pairings",
			 (unsigned long)geteuid());
		return send_problem(c, rq, FIRMANTE_E_FORBIDDEN, detail);
	}
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
	case EP_SIGN_BATCH:
		return ep_sign_batch(c, rq);
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
	case EP_EVENTS:
		return ep_events(c, rq);
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

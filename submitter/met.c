/*
 * MET SOAP client (libcurl + libxml2) and profile loading. See met.h.
 * Rules: ../shared/spec/met-web-service.md §2-§3, §8, §11.
 */
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <curl/curl.h>
#include <ini.h>
#include <libxml/parser.h>
#include <libxml/tree.h>
#include <openssl/evp.h>

#include "firmante/protocol.h"
#include "firmante/util.h"
#include "met.h"

#define SOAP_ENV_NS "http://schemas.xmlsoap.org/soap/envelope/"

__attribute__((format(printf, 3, 4)))
static int fail(struct met_error *err, int code, const char *fmt, ...)
{
	if (err) {
		va_list ap;
		va_start(ap, fmt);
		err->code = code;
		vsnprintf(err->message, sizeof(err->message), fmt, ap);
		va_end(ap);
	}
	return code;
}

/* ---- profile ----------------------------------------------------------- */

struct cred_ctx {
	char *usuario, *password;
	char bad[64];
};

static int cred_handler(void *user, const char *section, const char *name, const char *value)
{
	struct cred_ctx *c = user;
	(void)section;
	if (strcmp(name, "usuario") == 0)
		snprintf(c->usuario, MET_MAX_FIELD, "%s", value);
	else if (strcmp(name, "password") == 0)
		snprintf(c->password, MET_MAX_FIELD, "%s", value);
	else if (!c->bad[0])
		snprintf(c->bad, sizeof(c->bad), "%s", name);
	return 1;
}

int met_credentials_load(const char *path, char *usuario, char *password,
			 struct met_error *err)
{
	char u[MET_MAX_FIELD] = "", p[MET_MAX_FIELD] = "";
	struct cred_ctx c = { u, p, "" };
	struct stat sb;
	int rc;
	int fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0)
		return fail(err, FIRMANTE_E_CONFIG, "%s: cannot open the MET credentials file: %s",
			    path, strerror(errno));
	if (fstat(fd, &sb) != 0 || !S_ISREG(sb.st_mode)) {
		close(fd);
		return fail(err, FIRMANTE_E_CONFIG, "%s: the MET credentials file is not a regular "
						    "file", path);
	}
	if (sb.st_mode & 077) {
		close(fd);
		return fail(err, FIRMANTE_E_FORBIDDEN,
			    "%s: refused: the MET credentials file has mode %04o, so other users "
			    "of this computer can read the DGP password; run 'chmod 600 %s'",
			    path, (unsigned)(sb.st_mode & 07777), path);
	}
	if (sb.st_uid != geteuid()) {
		close(fd);
		return fail(err, FIRMANTE_E_FORBIDDEN,
			    "%s: refused: the MET credentials file belongs to another user", path);
	}
	FILE *f = fdopen(fd, "r");
	if (!f) {
		close(fd);
		return fail(err, FIRMANTE_E_NOMEM, "out of memory");
	}
	int r = ini_parse_file(f, cred_handler, &c);
	fclose(f);
	if (r != 0) {
		rc = fail(err, FIRMANTE_E_CONFIG, "%s: line %d: not an INI line", path, r);
		goto out;
	}
	if (c.bad[0]) {
		rc = fail(err, FIRMANTE_E_CONFIG, "%s: unknown key '%s' (only usuario and password)",
			  path, c.bad);
		goto out;
	}
	if (!u[0] || !p[0]) {
		rc = fail(err, FIRMANTE_E_CONFIG, "%s: usuario and password are both required", path);
		goto out;
	}
	memcpy(usuario, u, sizeof(u));
	memcpy(password, p, sizeof(p));
	rc = 0;
out:
	fm_wipe(p, sizeof(p));
	return rc;
}

struct prof_ctx {
	struct met_profile *p;
	const char *dir;
	char credentials[1024];
	char profile[32];
	char url[1024];
	char bad[128];
};

static int resolve_path(char *dst, size_t size, const char *dir, const char *value)
{
	int n = value[0] == '/' ? snprintf(dst, size, "%s", value)
				: snprintf(dst, size, "%s/%s", dir, value);
	return (n < 0 || (size_t)n >= size) ? -1 : 0;
}

static int parse_long(const char *v, long min, long max, long *out)
{
	char *end;
	errno = 0;
	long x = strtol(v, &end, 10);
	if (errno || end == v || *end || x < min || x > max)
		return -1;
	*out = x;
	return 0;
}

static int prof_handler(void *user, const char *section, const char *name, const char *value)
{
	struct prof_ctx *c = user;
	struct met_profile *p = c->p;
	long x;
	if (strcmp(section, "met") != 0) {
		snprintf(c->bad, sizeof(c->bad), "section [%s] (only [met])", section);
		return 0;
	}
#define NUM(key, lo, hi, field)                                                            \
	if (strcmp(name, key) == 0) {                                                      \
		if (parse_long(value, lo, hi, &x)) {                                       \
			snprintf(c->bad, sizeof(c->bad), "%s = %s (a number %ld..%ld)", key,  \
				 value, (long)(lo), (long)(hi));                            \
			return 0;                                                          \
		}                                                                          \
		(field) = x;                                                               \
		return 1;                                                                  \
	}
	NUM("connect-timeout", 1, 600, p->connect_timeout_s)
	NUM("timeout", 1, 86400, p->timeout_s)
	NUM("retries", 0, MET_MAX_RETRIES, p->retries)
	NUM("retry-delay-ms", 1, 600000, p->retry_delay_ms)
	NUM("retry-max-delay-ms", 1, 3600000, p->retry_max_delay_ms)
	NUM("lot-size", 1, MET_MAX_LOT_TITLES, p->lot_size)
	NUM("cancel-success-codigo", -1000000, 1000000, p->cancel_success_codigo)
	NUM("poll-delay", 0, 86400, p->poll_delay_s)
	NUM("poll-max-delay", 1, 86400, p->poll_max_delay_s)
	NUM("poll-deadline", 1, 7 * 86400, p->poll_deadline_s)
#undef NUM
	if (strcmp(name, "profile") == 0) {
		snprintf(c->profile, sizeof(c->profile), "%s", value);
	} else if (strcmp(name, "url") == 0) {
		snprintf(c->url, sizeof(c->url), "%s", value);
	} else if (strcmp(name, "ca-bundle") == 0) {
		if (resolve_path(p->ca_bundle, sizeof(p->ca_bundle), c->dir, value)) {
			snprintf(c->bad, sizeof(c->bad), "ca-bundle (path too long)");
			return 0;
		}
	} else if (strcmp(name, "credentials") == 0) {
		if (resolve_path(c->credentials, sizeof(c->credentials), c->dir, value)) {
			snprintf(c->bad, sizeof(c->bad), "credentials (path too long)");
			return 0;
		}
	} else if (strcmp(name, "cve-institucion") == 0) {
		snprintf(p->cve_institucion, sizeof(p->cve_institucion), "%s", value);
	} else if (strcmp(name, "usuario") == 0 || strcmp(name, "password") == 0) {
		snprintf(c->bad, sizeof(c->bad),
			 "%s (credentials go in the file named by 'credentials', mode 0600)", name);
		return 0;
	} else {
		snprintf(c->bad, sizeof(c->bad), "unknown key '%s'", name);
		return 0;
	}
	return 1;
}

int met_profile_load(const char *path, struct met_profile *out, struct met_error *err)
{
	struct met_profile p;
	char dirbuf[1024];
	int rc;
	memset(&p, 0, sizeof(p));
	p.connect_timeout_s = 10;
	p.timeout_s = 300;
	p.retries = 4;
	p.retry_delay_ms = 2000;
	p.retry_max_delay_ms = 60000;
	p.lot_size = 100;
	p.cancel_success_codigo = 0;
	p.poll_delay_s = 30;
	p.poll_max_delay_s = 300;
	p.poll_deadline_s = 3600;
	snprintf(dirbuf, sizeof(dirbuf), "%s", path);
	struct prof_ctx c = { .p = &p, .dir = dirname(dirbuf) };
	FILE *f = fopen(path, "r");
	if (!f)
		return fail(err, FIRMANTE_E_CONFIG, "%s: cannot open the MET configuration: %s",
			    path, strerror(errno));
	int r = ini_parse_file(f, prof_handler, &c);
	fclose(f);
	if (r != 0) {
		rc = fail(err, FIRMANTE_E_CONFIG, "%s: line %d: %s", path, r,
			  c.bad[0] ? c.bad : "not an INI line");
		goto out;
	}
	if (!c.profile[0]) {
		rc = fail(err, FIRMANTE_E_CONFIG, "%s: 'profile' is required (sandbox, qa or "
						  "produccion)", path);
		goto out;
	}
	snprintf(p.name, sizeof(p.name), "%s", c.profile);
	if (strcmp(c.profile, "qa") == 0) {
		snprintf(p.url, sizeof(p.url), "%s", c.url[0] ? c.url : MET_URL_QA);
	} else if (strcmp(c.profile, "produccion") == 0) {
		snprintf(p.url, sizeof(p.url), "%s", c.url[0] ? c.url : MET_URL_PRODUCCION);
	} else if (strcmp(c.profile, "sandbox") == 0) {
		if (!c.url[0]) {
			rc = fail(err, FIRMANTE_E_CONFIG, "%s: the sandbox profile needs 'url' (the "
							  "URL scripts/sandbox prints)", path);
			goto out;
		}
		snprintf(p.url, sizeof(p.url), "%s", c.url);
	} else {
		rc = fail(err, FIRMANTE_E_CONFIG, "%s: unknown profile '%s' (sandbox, qa or "
						  "produccion)", path, c.profile);
		goto out;
	}
	if (strncmp(p.url, "https://", 8) != 0) {
		rc = fail(err, FIRMANTE_E_CONFIG, "%s: url %s: only https:// is allowed (the "
						  "password and personal data travel in the request)",
			  path, p.url);
		goto out;
	}
	if (c.credentials[0]) {
		rc = met_credentials_load(c.credentials, p.usuario, p.password, err);
		if (rc)
			goto out;
	} else {
		const char *u = getenv("FIRMANTE_MET_USUARIO"), *pw = getenv("FIRMANTE_MET_PASSWORD");
		if (!u || !*u || !pw || !*pw) {
			rc = fail(err, FIRMANTE_E_CONFIG,
				  "%s: no MET credentials: set 'credentials = FILE' (mode 0600) or "
				  "the environment variables FIRMANTE_MET_USUARIO and "
				  "FIRMANTE_MET_PASSWORD", path);
			goto out;
		}
		snprintf(p.usuario, sizeof(p.usuario), "%s", u);
		snprintf(p.password, sizeof(p.password), "%s", pw);
	}
	*out = p;
	rc = 0;
out:
	met_profile_clear(&p);
	return rc;
}

void met_profile_clear(struct met_profile *p)
{
	if (p)
		fm_wipe(p->password, sizeof(p->password));
}

int met_motivo_valid(const char *m)
{
	static const char *const codes[] = { "R1", "R2", "R3", "R4", "R5", "C1" };
	for (size_t i = 0; m && i < sizeof(codes) / sizeof(codes[0]); i++)
		if (strcmp(m, codes[i]) == 0)
			return 1;
	return 0;
}

/* ---- request text ------------------------------------------------------ */

struct buf {
	char *p;
	size_t len, cap, max;
	int too_large;
};

static int buf_add(struct buf *b, const char *s, size_t n)
{
	if (b->len + n + 1 > b->cap) {
		size_t cap = b->cap ? b->cap : 4096;
		while (cap < b->len + n + 1)
			cap *= 2;
		char *q = realloc(b->p, cap);
		if (!q)
			return -1;
		b->p = q;
		b->cap = cap;
	}
	memcpy(b->p + b->len, s, n);
	b->len += n;
	b->p[b->len] = '\0';
	return 0;
}

static int buf_str(struct buf *b, const char *s)
{
	return buf_add(b, s, strlen(s));
}

static int buf_esc(struct buf *b, const char *s)
{
	for (; *s; s++) {
		const char *r = NULL;
		switch (*s) {
		case '&': r = "&amp;"; break;
		case '<': r = "&lt;"; break;
		case '>': r = "&gt;"; break;
		case '"': r = "&quot;"; break;
		case '\'': r = "&apos;"; break;
		}
		if (r ? buf_str(b, r) : buf_add(b, s, 1))
			return -1;
	}
	return 0;
}

static void buf_wipe_free(struct buf *b)
{
	if (b->p)
		fm_wipe(b->p, b->cap);
	free(b->p);
	memset(b, 0, sizeof(*b));
}

/* "<?xml..><Envelope><Body><{op}Request xmlns=MET_NS>" */
static int env_open(struct buf *b, const char *op)
{
	return buf_str(b, "<?xml version=\"1.0\" encoding=\"UTF-8\"?>"
			  "<soapenv:Envelope xmlns:soapenv=\"" SOAP_ENV_NS "\">"
			  "<soapenv:Header/><soapenv:Body><") ||
	       buf_str(b, op) || buf_str(b, "Request xmlns=\"" MET_NS "\">");
}

static int env_field(struct buf *b, const char *name, const char *value)
{
	return buf_str(b, "<") || buf_str(b, name) || buf_str(b, ">") || buf_esc(b, value) ||
	       buf_str(b, "</") || buf_str(b, name) || buf_str(b, ">");
}

/* autenticacion is always last (§3), then close everything. */
static int env_close(struct buf *b, const struct met_profile *p, const char *op)
{
	return buf_str(b, "<autenticacion>") || env_field(b, "usuario", p->usuario) ||
	       env_field(b, "password", p->password) || buf_str(b, "</autenticacion></") ||
	       buf_str(b, op) || buf_str(b, "Request></soapenv:Body></soapenv:Envelope>");
}

/* ---- transport --------------------------------------------------------- */

/* The request body: head, then (optionally) Base64 of a file, then tail. */
struct body {
	const struct buf *head, *tail;
	FILE *file;
	size_t hpos, tpos;
	unsigned char raw[3 * 4096];
	char enc[4 * 4096 + 1];
	size_t enc_len, enc_pos;
	int file_done;
	size_t handed; /* bytes given to curl */
	int read_error;
};

static size_t body_read(char *dst, size_t size, size_t nmemb, void *user)
{
	struct body *b = user;
	size_t want = size * nmemb, n = 0;
	while (n < want) {
		if (b->hpos < b->head->len) {
			size_t k = b->head->len - b->hpos;
			if (k > want - n)
				k = want - n;
			memcpy(dst + n, b->head->p + b->hpos, k);
			b->hpos += k;
			n += k;
		} else if (b->file && !b->file_done) {
			if (b->enc_pos == b->enc_len) {
				size_t r = fread(b->raw, 1, sizeof(b->raw), b->file);
				if (r < sizeof(b->raw)) {
					if (ferror(b->file)) {
						b->read_error = 1;
						return CURL_READFUNC_ABORT;
					}
				}
				if (r == 0) {
					b->file_done = 1;
					continue;
				}
				b->enc_len = (size_t)EVP_EncodeBlock((unsigned char *)b->enc, b->raw,
								     (int)r);
				b->enc_pos = 0;
			}
			size_t k = b->enc_len - b->enc_pos;
			if (k > want - n)
				k = want - n;
			memcpy(dst + n, b->enc + b->enc_pos, k);
			b->enc_pos += k;
			n += k;
		} else if (b->tpos < b->tail->len) {
			size_t k = b->tail->len - b->tpos;
			if (k > want - n)
				k = want - n;
			memcpy(dst + n, b->tail->p + b->tpos, k);
			b->tpos += k;
			n += k;
		} else {
			break;
		}
	}
	b->handed += n;
	return n;
}

static size_t resp_write(char *data, size_t size, size_t nmemb, void *user)
{
	struct buf *b = user;
	size_t n = size * nmemb;
	if (b->len + n > b->max) {
		b->too_large = 1;
		return 0;
	}
	return buf_add(b, data, n) ? 0 : n;
}

struct http_result {
	long status;
	struct buf resp;
};

/* Phrase for a curl failure, in a registrar's words. */
static const char *curl_words(CURLcode c)
{
	switch (c) {
	case CURLE_COULDNT_RESOLVE_HOST: return "the server name could not be resolved";
	case CURLE_COULDNT_CONNECT: return "no connection to the server";
	case CURLE_OPERATION_TIMEDOUT: return "no answer in time (timeout)";
	case CURLE_PEER_FAILED_VERIFICATION:
		return "the server's certificate is not trusted (wrong CA bundle, or not the "
		       "real service); nothing was sent";
	case CURLE_SSL_CACERT_BADFILE: return "the CA bundle file cannot be read";
	case CURLE_SSL_CONNECT_ERROR: return "the secure (TLS) connection failed";
	case CURLE_GOT_NOTHING: return "the server closed the connection without answering";
	case CURLE_RECV_ERROR: return "the connection broke while waiting for the answer";
	case CURLE_SEND_ERROR: return "the connection broke while sending";
	default: return curl_easy_strerror(c);
	}
}

/*
 * One POST. Returns 0 when an HTTP answer arrived (any status), else a
 * negative error with err filled and err->maybe_sent set.
 */
static int http_post(const struct met_profile *p, const char *what, struct body *body,
		     curl_off_t body_len, struct http_result *res, struct met_error *err)
{
	int rc;
	CURL *c = curl_easy_init();
	struct curl_slist *h = NULL;
	char errbuf[CURL_ERROR_SIZE] = "";
	res->resp.max = MET_MAX_RESPONSE;
	if (!c)
		return fail(err, FIRMANTE_E_NOMEM, "out of memory");
	h = curl_slist_append(h, "Content-Type: text/xml; charset=utf-8");
	if (h)
		h = curl_slist_append(h, "SOAPAction: \"\"");
	if (h)
		h = curl_slist_append(h, "Expect:");
	if (!h) {
		rc = fail(err, FIRMANTE_E_NOMEM, "out of memory");
		goto out;
	}
	curl_easy_setopt(c, CURLOPT_URL, p->url);
	curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "https");
	curl_easy_setopt(c, CURLOPT_SSL_VERIFYPEER, 1L);
	curl_easy_setopt(c, CURLOPT_SSL_VERIFYHOST, 2L);
	if (p->ca_bundle[0])
		curl_easy_setopt(c, CURLOPT_CAINFO, p->ca_bundle);
	curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(c, CURLOPT_FOLLOWLOCATION, 0L);
	curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT, p->connect_timeout_s);
	curl_easy_setopt(c, CURLOPT_TIMEOUT, p->timeout_s);
	curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
	curl_easy_setopt(c, CURLOPT_POST, 1L);
	curl_easy_setopt(c, CURLOPT_READFUNCTION, body_read);
	curl_easy_setopt(c, CURLOPT_READDATA, body);
	curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE, body_len);
	curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, resp_write);
	curl_easy_setopt(c, CURLOPT_WRITEDATA, &res->resp);
	curl_easy_setopt(c, CURLOPT_ERRORBUFFER, errbuf);
	curl_easy_setopt(c, CURLOPT_USERAGENT, "firmante-titulos/1");
	CURLcode cc = curl_easy_perform(c);
	if (cc != CURLE_OK) {
		err->maybe_sent = body->handed > 0;
		if (body->read_error)
			rc = fail(err, FIRMANTE_E_IO, "%s: the lot file could not be read while "
						      "sending", what);
		else if (res->resp.too_large)
			rc = fail(err, FIRMANTE_E_PROTOCOL, "%s: the MET answer is larger than %u "
							    "bytes", what, MET_MAX_RESPONSE);
		else
			rc = fail(err, cc == CURLE_OPERATION_TIMEDOUT ? FIRMANTE_E_TIMEOUT
								      : FIRMANTE_E_IO,
				  "%s: %s (%s)", what, curl_words(cc), p->url);
		err->maybe_sent = body->handed > 0;
		goto out;
	}
	curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &res->status);
	rc = 0;
out:
	curl_slist_free_all(h);
	curl_easy_cleanup(c);
	return rc;
}

/* ---- response ---------------------------------------------------------- */

static xmlNodePtr first_elem(xmlNodePtr n)
{
	for (; n; n = n->next)
		if (n->type == XML_ELEMENT_NODE)
			return n;
	return NULL;
}

static int is_elem(xmlNodePtr n, const char *ns, const char *name)
{
	return n && n->type == XML_ELEMENT_NODE && n->ns && n->ns->href &&
	       strcmp((const char *)n->ns->href, ns) == 0 &&
	       strcmp((const char *)n->name, name) == 0;
}

static xmlNodePtr child(xmlNodePtr parent, const char *ns, const char *name)
{
	for (xmlNodePtr n = parent ? parent->children : NULL; n; n = n->next)
		if (is_elem(n, ns, name))
			return n;
	return NULL;
}

/* Text of a child, copied into dst (trimmed); "" when absent. Returns 1 if present. */
static int child_text(xmlNodePtr parent, const char *name, char *dst, size_t size)
{
	xmlNodePtr n = child(parent, MET_NS, name);
	dst[0] = '\0';
	if (!n)
		return 0;
	xmlChar *t = xmlNodeGetContent(n);
	if (t) {
		fm_trim_copy(dst, size, (const char *)t, strlen((const char *)t));
		xmlFree(t);
	}
	return 1;
}

/* First chars of a non-SOAP answer, printable, for the message. */
static void snippet(const struct buf *b, char *dst, size_t size)
{
	size_t j = 0;
	for (size_t i = 0; b->p && i < b->len && j + 1 < size && j < 120; i++) {
		unsigned char ch = (unsigned char)b->p[i];
		dst[j++] = (ch < 0x20 || ch > 0x7e) ? ' ' : (char)ch;
	}
	dst[j] = '\0';
}

/*
 * Check the HTTP answer and find the <op>Response element. SOAP faults (any
 * status) and HTTP errors become messages. @doc is freed by the caller.
 */
static int parse_answer(const char *what, const char *op, struct http_result *res,
			xmlDocPtr *doc, xmlNodePtr *payload, struct met_error *err)
{
	char snip[128];
	err->http_status = res->status;
	err->maybe_sent = 1;
	xmlDocPtr d = NULL;
	if (res->resp.len)
		d = xmlReadMemory(res->resp.p, (int)res->resp.len, "met-answer.xml", NULL,
				  XML_PARSE_NONET | XML_PARSE_HUGE |
					  XML_PARSE_NOERROR | XML_PARSE_NOWARNING);
	xmlNodePtr env = d ? xmlDocGetRootElement(d) : NULL;
	xmlNodePtr body = is_elem(env, SOAP_ENV_NS, "Envelope") ? child(env, SOAP_ENV_NS, "Body")
							       : NULL;
	xmlNodePtr first = body ? first_elem(body->children) : NULL;
	if (is_elem(first, SOAP_ENV_NS, "Fault")) {
		char fs[400] = "";
		xmlNodePtr f = NULL;
		for (xmlNodePtr n = first->children; n; n = n->next)
			if (n->type == XML_ELEMENT_NODE && strcmp((const char *)n->name,
								  "faultstring") == 0)
				f = n;
		if (f) {
			xmlChar *t = xmlNodeGetContent(f);
			if (t) {
				fm_trim_copy(fs, sizeof(fs), (const char *)t, strlen((const char *)t));
				xmlFree(t);
			}
		}
		xmlFreeDoc(d);
		return fail(err, FIRMANTE_E_PROTOCOL,
			    "%s: the MET service reported an error (SOAP fault, HTTP %ld): %s",
			    what, res->status, fs[0] ? fs : "no faultstring");
	}
	if (res->status != 200) {
		snippet(&res->resp, snip, sizeof(snip));
		xmlFreeDoc(d);
		return fail(err, FIRMANTE_E_IO, "%s: the MET service answered HTTP %ld%s%s", what,
			    res->status, res->status >= 500 ? " (server error)" : "",
			    res->status >= 500 ? "" : snip);
	}
	char want[96];
	snprintf(want, sizeof(want), "%sResponse", op);
	if (!is_elem(first, MET_NS, want)) {
		snippet(&res->resp, snip, sizeof(snip));
		xmlFreeDoc(d);
		return fail(err, FIRMANTE_E_PROTOCOL,
			    "%s: the MET answer is not a %s SOAP message (it begins: \"%s\")", what,
			    want, snip);
	}
	*doc = d;
	*payload = first;
	return 0;
}

/* ---- operations -------------------------------------------------------- */

/* Whole exchange with a memory body: request text -> payload element. */
static int call(const struct met_profile *p, const char *what, const char *op,
		const struct buf *req, xmlDocPtr *doc, xmlNodePtr *payload, struct met_error *err)
{
	struct buf empty = { 0 };
	struct body b = { .head = req, .tail = &empty };
	struct http_result res = { 0 };
	int rc = http_post(p, what, &b, (curl_off_t)req->len, &res, err);
	if (rc == 0)
		rc = parse_answer(what, op, &res, doc, payload, err);
	buf_wipe_free(&res.resp);
	return rc;
}

static long jitter_ms(long delay)
{
	uint32_t r = 0;
	if (getrandom(&r, sizeof(r), 0) != (ssize_t)sizeof(r))
		r = (uint32_t)time(NULL);
	long half = delay / 2;
	return half + (half > 0 ? (long)(r % (uint32_t)(half + 1)) : 0);
}

static void sleep_ms(long ms)
{
	struct timespec ts = { ms / 1000, (ms % 1000) * 1000000L };
	while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
		;
}

/* call() with retries and backoff for the read-only operations. */
static int call_retry(const struct met_profile *p, const char *what, const char *op,
		      const struct buf *req, xmlDocPtr *doc, xmlNodePtr *payload,
		      struct met_error *err)
{
	long delay = p->retry_delay_ms > 0 ? p->retry_delay_ms : 1000;
	int rc = FIRMANTE_E_INTERNAL;
	for (int attempt = 0; attempt <= p->retries && attempt <= MET_MAX_RETRIES; attempt++) {
		if (attempt > 0) {
			sleep_ms(jitter_ms(delay));
			delay = delay * 2 > p->retry_max_delay_ms ? p->retry_max_delay_ms : delay * 2;
		}
		memset(err, 0, sizeof(*err));
		rc = call(p, what, op, req, doc, payload, err);
		if (rc == 0 || rc == FIRMANTE_E_NOMEM)
			return rc;
		if (err->http_status >= 400 && err->http_status < 500)
			return rc;
	}
	if (p->retries > 0) {
		size_t l = strlen(err->message);
		snprintf(err->message + l, sizeof(err->message) - l, " (after %d attempts)",
			 p->retries + 1);
	}
	return rc;
}

static int credentials_refused(const char *mensaje)
{
	return strstr(mensaje, "contraseña") || strstr(mensaje, "Usuario o") ||
	       strstr(mensaje, "no pertenece");
}

int met_carga(const struct met_profile *p, const char *nombre, const char *payload_path,
	      char numero[32], char *mensaje, size_t mlen, struct met_error *err)
{
	struct buf head = { 0 }, tail = { 0 };
	struct http_result res = { 0 };
	xmlDocPtr doc = NULL;
	xmlNodePtr pl = NULL;
	FILE *f = NULL;
	int rc;
	char what[160];
	memset(err, 0, sizeof(*err));
	snprintf(what, sizeof(what), "upload of %s (cargaTituloElectronico)", nombre);
	size_t nl = strlen(nombre);
	if (nl < 2 || nl > 100 || (nl < 5 || (strcmp(nombre + nl - 4, ".zip") != 0 &&
					      strcmp(nombre + nl - 4, ".xml") != 0)))
		return fail(err, FIRMANTE_E_INVALID, "%s: nombreArchivo must be 2 to 100 characters "
						     "ending in .zip or .xml", nombre);
	f = fopen(payload_path, "rb");
	struct stat sb;
	if (!f || fstat(fileno(f), &sb) != 0) {
		rc = fail(err, FIRMANTE_E_IO, "%s: cannot read the lot: %s", payload_path,
			  strerror(errno));
		goto out;
	}
	if ((uint64_t)sb.st_size > MET_MAX_LOT_BYTES) {
		rc = fail(err, FIRMANTE_E_TOO_LARGE, "%s: the lot is larger than %u bytes; use a "
						     "smaller lot-size", payload_path,
			  MET_MAX_LOT_BYTES);
		goto out;
	}
	if (env_open(&head, "cargaTituloElectronico") ||
	    env_field(&head, "nombreArchivo", nombre) || buf_str(&head, "<archivoBase64>") ||
	    buf_str(&tail, "</archivoBase64>") || env_close(&tail, p, "cargaTituloElectronico")) {
		rc = fail(err, FIRMANTE_E_NOMEM, "out of memory");
		goto out;
	}
	struct body *b = calloc(1, sizeof(*b));
	if (!b) {
		rc = fail(err, FIRMANTE_E_NOMEM, "out of memory");
		goto out;
	}
	b->head = &head;
	b->tail = &tail;
	b->file = f;
	curl_off_t total = (curl_off_t)head.len + (curl_off_t)tail.len +
			   4 * (((curl_off_t)sb.st_size + 2) / 3);
	rc = http_post(p, what, b, total, &res, err);
	free(b);
	if (rc == 0)
		rc = parse_answer(what, "cargaTituloElectronico", &res, &doc, &pl, err);
	if (rc)
		goto out;
	char num[64], msg[MET_MAX_FIELD];
	child_text(pl, "numeroLote", num, sizeof(num));
	child_text(pl, "mensaje", msg, sizeof(msg));
	int digits = num[0] != '\0' && strlen(num) < 32;
	for (const char *q = num; *q; q++)
		if (!isdigit((unsigned char)*q))
			digits = 0;
	if (!digits || strspn(num, "0") == strlen(num)) {
		/* §3: a missing or zero numeroLote is a refusal */
		err->maybe_sent = 0;
		rc = fail(err, credentials_refused(msg) ? FIRMANTE_E_FORBIDDEN : FIRMANTE_E_INVALID,
			  "%s: refused by the MET service: %s", what,
			  msg[0] ? msg : "no lot number and no message");
		goto out;
	}
	memcpy(numero, num, strlen(num) + 1); /* < 32 checked above */
	snprintf(mensaje, mlen, "%s", msg);
	rc = 0;
out:
	if (f)
		fclose(f);
	xmlFreeDoc(doc);
	buf_wipe_free(&head);
	buf_wipe_free(&tail);
	buf_wipe_free(&res.resp);
	return rc;
}

static int numero_request(const struct met_profile *p, const char *op, const char *numero,
			  struct buf *req)
{
	return env_open(req, op) || env_field(req, "numeroLote", numero) || env_close(req, p, op);
}

int met_consulta(const struct met_profile *p, const char *numero, int *estatus,
		 char *mensaje, size_t mlen, struct met_error *err)
{
	struct buf req = { 0 };
	xmlDocPtr doc = NULL;
	xmlNodePtr pl = NULL;
	int rc;
	char what[96], st[32], msg[MET_MAX_FIELD];
	memset(err, 0, sizeof(*err));
	snprintf(what, sizeof(what), "status of lot %s (consultaProcesoTituloElectronico)",
		 numero);
	if (numero_request(p, "consultaProcesoTituloElectronico", numero, &req)) {
		rc = fail(err, FIRMANTE_E_NOMEM, "out of memory");
		goto out;
	}
	rc = call_retry(p, what, "consultaProcesoTituloElectronico", &req, &doc, &pl, err);
	if (rc)
		goto out;
	child_text(pl, "mensaje", msg, sizeof(msg));
	long v;
	char *end;
	if (!child_text(pl, "estatusLote", st, sizeof(st)) || !st[0] ||
	    (v = strtol(st, &end, 10), *end != '\0')) {
		if (credentials_refused(msg)) {
			rc = fail(err, FIRMANTE_E_FORBIDDEN, "%s: refused: %s", what, msg);
			goto out;
		}
		rc = fail(err, FIRMANTE_E_PROTOCOL, "%s: the answer has no estatusLote (%s)", what,
			  msg[0] ? msg : "no message");
		goto out;
	}
	if (credentials_refused(msg)) {
		rc = fail(err, FIRMANTE_E_FORBIDDEN, "%s: refused: %s", what, msg);
		goto out;
	}
	*estatus = (int)v;
	snprintf(mensaje, mlen, "%s", msg);
	rc = 0;
out:
	xmlFreeDoc(doc);
	buf_wipe_free(&req);
	return rc;
}

int met_descarga(const struct met_profile *p, const char *numero, uint8_t **zip,
		 size_t *zip_len, char *mensaje, size_t mlen, struct met_error *err)
{
	struct buf req = { 0 };
	xmlDocPtr doc = NULL;
	xmlNodePtr pl = NULL;
	int rc;
	char what[96], msg[MET_MAX_FIELD];
	uint8_t *data = NULL;
	size_t dlen = 0;
	memset(err, 0, sizeof(*err));
	snprintf(what, sizeof(what), "result of lot %s (descargaTituloElectronico)", numero);
	if (numero_request(p, "descargaTituloElectronico", numero, &req)) {
		rc = fail(err, FIRMANTE_E_NOMEM, "out of memory");
		goto out;
	}
	rc = call_retry(p, what, "descargaTituloElectronico", &req, &doc, &pl, err);
	if (rc)
		goto out;
	child_text(pl, "mensaje", msg, sizeof(msg));
	if (credentials_refused(msg)) {
		rc = fail(err, FIRMANTE_E_FORBIDDEN, "%s: refused: %s", what, msg);
		goto out;
	}
	xmlNodePtr n = child(pl, MET_NS, "titulosBase64");
	xmlChar *t = n ? xmlNodeGetContent(n) : NULL;
	if (t) {
		/* Base64 may come wrapped: drop white space, then decode strictly. */
		size_t w = 0;
		for (size_t i = 0; t[i]; i++)
			if (!isspace(t[i]))
				t[w++] = t[i];
		t[w] = '\0';
		if (w > 0 && fm_base64_decode((const char *)t, w, &data, &dlen) != 0) {
			xmlFree(t);
			rc = fail(err, FIRMANTE_E_PROTOCOL, "%s: titulosBase64 is not valid Base64",
				  what);
			goto out;
		}
		xmlFree(t);
	}
	*zip = data;
	*zip_len = dlen;
	data = NULL;
	snprintf(mensaje, mlen, "%s", msg);
	rc = 0;
out:
	free(data);
	xmlFreeDoc(doc);
	buf_wipe_free(&req);
	return rc;
}

int met_cancela(const struct met_profile *p, const char *folio, const char *motivo,
		int *codigo, char *mensaje, size_t mlen, int *cancelled, int *review,
		struct met_error *err)
{
	struct buf req = { 0 };
	struct http_result res = { 0 };
	xmlDocPtr doc = NULL;
	xmlNodePtr pl = NULL;
	int rc;
	char what[200], cod[32], msg[MET_MAX_FIELD];
	memset(err, 0, sizeof(*err));
	snprintf(what, sizeof(what), "cancellation of %s (cancelaTituloElectronico)", folio);
	if (!met_motivo_valid(motivo))
		return fail(err, FIRMANTE_E_INVALID,
			    "motivo '%s' is not a cancellation motive: use R1, R2, R3, R4, R5 or C1",
			    motivo ? motivo : "");
	if (env_open(&req, "cancelaTituloElectronico") || env_field(&req, "folioControl", folio) ||
	    env_field(&req, "motCancelacion", motivo) ||
	    env_close(&req, p, "cancelaTituloElectronico")) {
		rc = fail(err, FIRMANTE_E_NOMEM, "out of memory");
		goto out;
	}
	rc = call(p, what, "cancelaTituloElectronico", &req, &doc, &pl, err);
	if (rc)
		goto out;
	child_text(pl, "codigo", cod, sizeof(cod));
	child_text(pl, "mensaje", msg, sizeof(msg));
	char *end;
	long v = strtol(cod, &end, 10);
	if (!cod[0] || *end) {
		rc = fail(err, FIRMANTE_E_PROTOCOL, "%s: the answer has no numeric codigo (%s)", what,
			  msg);
		goto out;
	}
	int c = 0, r = 0;
	if (strstr(msg, "fue cancelado exitosamente"))
		c = 1;
	else if (strstr(msg, "ya se encuentra cancelado"))
		c = 2;
	else if (v == p->cancel_success_codigo && !credentials_refused(msg)) {
		c = 1;
		r = 1; /* §8: text not recognised, code says success: flag for a person */
	} else if (!strstr(msg, "No se encontr") && !strstr(msg, "no válido"))
		r = 1;
	*codigo = (int)v;
	*cancelled = c;
	*review = r;
	snprintf(mensaje, mlen, "%s", msg);
	rc = 0;
out:
	xmlFreeDoc(doc);
	buf_wipe_free(&req);
	buf_wipe_free(&res.resp);
	return rc;
}

/* libfirmante-client: HTTP/1.1 + JSON to firmanted over its Unix socket
 * (include/firmante/client.h, docs/protocol.md). */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <curl/curl.h>
#include <jansson.h>

#include "firmante/client.h"
#include "firmante/protocol.h"

struct firmante_client {
	CURL *curl;
	char socket_path[sizeof(((struct sockaddr_un *)0)->sun_path)];
	long timeout;
	firmante_batch_event_cb event_cb; /* "paused"/"resumed" lines of a batch */
	void *event_data;
};

/* Bounded reply buffer. */
struct reply_buf {
	char *data;
	size_t len, cap;
	int too_large;
};

int firmante_default_socket_path(char *buf, size_t size)
{
	const char *env = getenv("FIRMANTE_SOCKET");
	int n;
	if (env && env[0])
		n = snprintf(buf, size, "%s", env);
	else {
		const char *rt = getenv("XDG_RUNTIME_DIR");
		if (rt && rt[0])
			n = snprintf(buf, size, "%s/firmante/agent.sock", rt);
		else
			n = snprintf(buf, size, "/run/user/%u/firmante/agent.sock",
				     (unsigned)getuid());
	}
	if (n < 0 || (size_t)n >= size)
		return FIRMANTE_E_CONFIG;
	return 0;
}

int firmante_client_new(const char *socket_path, firmante_client **out)
{
	static int curl_ready;
	if (!curl_ready) {
		if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK)
			return FIRMANTE_E_INTERNAL;
		curl_ready = 1;
	}
	firmante_client *c = calloc(1, sizeof(*c));
	if (!c)
		return FIRMANTE_E_NOMEM;
	int rc;
	if (socket_path) {
		int n = snprintf(c->socket_path, sizeof(c->socket_path), "%s", socket_path);
		rc = (n < 0 || (size_t)n >= sizeof(c->socket_path)) ? FIRMANTE_E_CONFIG : 0;
	} else {
		rc = firmante_default_socket_path(c->socket_path, sizeof(c->socket_path));
	}
	if (rc < 0) {
		free(c);
		return rc;
	}
	c->curl = curl_easy_init();
	if (!c->curl) {
		free(c);
		return FIRMANTE_E_NOMEM;
	}
	c->timeout = 600;
	*out = c;
	return 0;
}

void firmante_client_free(firmante_client *c)
{
	if (!c)
		return;
	curl_easy_cleanup(c->curl);
	free(c);
}

void firmante_client_set_timeout(firmante_client *c, long seconds)
{
	if (c)
		c->timeout = seconds < 0 ? 0 : seconds;
}

static size_t on_data(char *ptr, size_t size, size_t nmemb, void *userdata)
{
	struct reply_buf *b = userdata;
	size_t n = size * nmemb;
	if (b->len + n + 1 > FIRMANTE_MAX_BODY) {
		b->too_large = 1;
		return 0; /* makes curl stop with CURLE_WRITE_ERROR */
	}
	if (b->len + n + 1 > b->cap) {
		size_t ncap = b->cap ? b->cap : 4096;
		while (ncap < b->len + n + 1)
			ncap *= 2;
		char *nd = realloc(b->data, ncap);
		if (!nd)
			return 0;
		b->data = nd;
		b->cap = ncap;
	}
	memcpy(b->data + b->len, ptr, n);
	b->len += n;
	b->data[b->len] = '\0';
	return n;
}

static void problem_set(struct firmante_problem *p, int err, int http, const char *detail)
{
	if (!p)
		return;
	memset(p, 0, sizeof(*p));
	p->err = err;
	p->http_status = http;
	snprintf(p->code, sizeof(p->code), "%s", firmante_err_code(err));
	snprintf(p->title, sizeof(p->title), "%s", firmante_err_title(err));
	if (detail)
		snprintf(p->detail, sizeof(p->detail), "%s", detail);
}

/* Decode an RFC 9457 problem body; returns the error it names. */
static int problem_decode(const char *body, long http, struct firmante_problem *p)
{
	json_error_t jerr;
	json_t *root = body ? json_loads(body, 0, &jerr) : NULL;
	const char *code = NULL, *title = NULL, *detail = NULL;
	if (root && json_is_object(root)) {
		code = json_string_value(json_object_get(root, "code"));
		title = json_string_value(json_object_get(root, "title"));
		detail = json_string_value(json_object_get(root, "detail"));
	}
	int err = code ? firmante_err_from_code(code) : FIRMANTE_E_PROTOCOL;
	if (!code) {
		char msg[128];
		snprintf(msg, sizeof(msg), "the agent answered HTTP %ld without a problem report",
			 http);
		problem_set(p, FIRMANTE_E_PROTOCOL, (int)http, msg);
	} else if (p) {
		memset(p, 0, sizeof(*p));
		p->err = err;
		p->http_status = (int)http;
		snprintf(p->code, sizeof(p->code), "%s", code);
		snprintf(p->title, sizeof(p->title), "%s", title ? title : firmante_err_title(err));
		if (detail)
			snprintf(p->detail, sizeof(p->detail), "%s", detail);
	}
	json_decref(root);
	return err;
}

/* Say why nothing answers on @path, in the holder's terms (curl's own text
 * speaks of "localhost port 80", which is wrong for a Unix socket). */
static void describe_unreachable(const char *path, char *msg, size_t size)
{
	struct stat st;
	if (stat(path, &st) != 0) {
		if (errno == ENOENT)
			snprintf(msg, size,
				 "no agent socket at %s: firmanted is not running, or uses another "
				 "socket (see --socket and $FIRMANTE_SOCKET)", path);
		else
			snprintf(msg, size, "cannot reach the agent socket %s: %s", path,
				 strerror(errno));
	} else if (!S_ISSOCK(st.st_mode)) {
		snprintf(msg, size, "%s is not a socket; is the path right?", path);
	} else if (access(path, W_OK) != 0) {
		snprintf(msg, size, "no permission to use the agent socket %s: %s", path,
			 strerror(errno));
	} else {
		snprintf(msg, size,
			 "nothing answers on %s: firmanted stopped and left its socket behind, "
			 "or another user's agent owns it", path);
	}
}

int firmante_client_request(firmante_client *c, const char *method, const char *path,
			    const char *json_body, char **reply,
			    struct firmante_problem *problem)
{
	int rc = FIRMANTE_E_INTERNAL;
	struct reply_buf buf = { 0 };
	struct curl_slist *hdrs = NULL;
	char url[512], errbuf[CURL_ERROR_SIZE] = "";
	if (!c || !method || !path || path[0] != '/') {
		problem_set(problem, FIRMANTE_E_BAD_REQUEST, 0, "bad arguments");
		return FIRMANTE_E_BAD_REQUEST;
	}
	int n = snprintf(url, sizeof(url), "http://localhost%s", path);
	if (n < 0 || (size_t)n >= sizeof(url)) {
		problem_set(problem, FIRMANTE_E_BAD_REQUEST, 0, "path too long");
		return FIRMANTE_E_BAD_REQUEST;
	}
	CURL *h = c->curl;
	curl_easy_reset(h);
	curl_easy_setopt(h, CURLOPT_UNIX_SOCKET_PATH, c->socket_path);
	curl_easy_setopt(h, CURLOPT_URL, url);
	curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT, 10L);
	curl_easy_setopt(h, CURLOPT_TIMEOUT, c->timeout);
	curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "http");
	curl_easy_setopt(h, CURLOPT_FOLLOWLOCATION, 0L);
	curl_easy_setopt(h, CURLOPT_ERRORBUFFER, errbuf);
	curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_data);
	curl_easy_setopt(h, CURLOPT_WRITEDATA, &buf);
	hdrs = curl_slist_append(hdrs, "Accept: application/json, application/problem+json");
	if (hdrs && json_body) {
		struct curl_slist *h2 = curl_slist_append(hdrs, "Content-Type: application/json");
		hdrs = h2 ? h2 : hdrs;
		/* no "Expect: 100-continue" round trip */
		h2 = curl_slist_append(hdrs, "Expect:");
		hdrs = h2 ? h2 : hdrs;
	}
	if (!hdrs) {
		rc = FIRMANTE_E_NOMEM;
		problem_set(problem, rc, 0, NULL);
		goto out;
	}
	curl_easy_setopt(h, CURLOPT_HTTPHEADER, hdrs);
	if (strcmp(method, "POST") == 0) {
		const char *b = json_body ? json_body : "";
		curl_easy_setopt(h, CURLOPT_POST, 1L);
		curl_easy_setopt(h, CURLOPT_POSTFIELDS, b);
		curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)strlen(b));
	} else if (strcmp(method, "GET") != 0) {
		curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, method);
	}
	CURLcode cc = curl_easy_perform(h);
	if (cc != CURLE_OK) {
		char msg[700];
		int err;
		if (cc == CURLE_OPERATION_TIMEDOUT) {
			err = FIRMANTE_E_TIMEOUT;
			snprintf(msg, sizeof(msg), "no answer from the agent at %s within %ld s",
				 c->socket_path, c->timeout);
		} else if (buf.too_large) {
			err = FIRMANTE_E_PROTOCOL;
			snprintf(msg, sizeof(msg), "the agent's reply exceeds %u bytes",
				 FIRMANTE_MAX_BODY);
		} else if (cc == CURLE_COULDNT_CONNECT) {
			err = FIRMANTE_E_AGENT_UNREACHABLE;
			describe_unreachable(c->socket_path, msg, sizeof(msg));
		} else {
			err = FIRMANTE_E_AGENT_UNREACHABLE;
			snprintf(msg, sizeof(msg), "talking to the agent at %s failed: %s",
				 c->socket_path, errbuf[0] ? errbuf : curl_easy_strerror(cc));
		}
		rc = err;
		problem_set(problem, err, 0, msg);
		goto out;
	}
	long http = 0;
	curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &http);
	if (http >= 200 && http < 300) {
		if (!buf.data) {
			problem_set(problem, FIRMANTE_E_PROTOCOL, (int)http, "empty reply");
			rc = FIRMANTE_E_PROTOCOL;
			goto out;
		}
		if (reply) {
			*reply = buf.data;
			buf.data = NULL;
		}
		rc = 0;
		goto out;
	}
	rc = problem_decode(buf.data, http, problem);
	if (rc == 0)
		rc = FIRMANTE_E_PROTOCOL;
out:
	curl_slist_free_all(hdrs);
	free(buf.data);
	return rc;
}

/* Copy a required string member of @o into a malloc'd string. */
static int take_string(json_t *o, const char *name, char **out)
{
	const char *s = json_string_value(json_object_get(o, name));
	if (!s)
		return FIRMANTE_E_PROTOCOL;
	*out = strdup(s);
	return *out ? 0 : FIRMANTE_E_NOMEM;
}

static int copy_fixed(json_t *o, const char *name, char *dst, size_t size, size_t exact)
{
	const char *s = json_string_value(json_object_get(o, name));
	if (!s || strlen(s) != exact || exact >= size)
		return FIRMANTE_E_PROTOCOL;
	memcpy(dst, s, exact + 1);
	return 0;
}

int firmante_client_sign_titulo(firmante_client *c, const char *xml, size_t len,
				const char *key_uri, const char *request_id,
				struct firmante_sello *out, struct firmante_problem *problem)
{
	int rc;
	char *body = NULL, *reply = NULL;
	json_t *req = NULL, *rep = NULL;
	struct firmante_sello s = { 0 };
	if (!xml || !key_uri || !out || len > FIRMANTE_MAX_DOCUMENT) {
		rc = len > FIRMANTE_MAX_DOCUMENT ? FIRMANTE_E_TOO_LARGE : FIRMANTE_E_BAD_REQUEST;
		problem_set(problem, rc, 0, "document missing or larger than the agent accepts");
		return rc;
	}
	req = json_object();
	if (!req ||
	    json_object_set_new(req, "format", json_string(FIRMANTE_FORMAT_TITULO)) ||
	    json_object_set_new(req, "document", json_stringn(xml, len)) ||
	    json_object_set_new(req, "key", json_string(key_uri)) ||
	    (request_id && json_object_set_new(req, "id", json_string(request_id)))) {
		/* json_stringn fails on invalid UTF-8 */
		rc = FIRMANTE_E_BAD_REQUEST;
		problem_set(problem, rc, 0, "the document is not valid UTF-8");
		goto out;
	}
	body = json_dumps(req, JSON_COMPACT);
	if (!body) {
		rc = FIRMANTE_E_NOMEM;
		problem_set(problem, rc, 0, NULL);
		goto out;
	}
	rc = firmante_client_request(c, "POST", FIRMANTE_API_PREFIX "/sign", body, &reply, problem);
	if (rc < 0)
		goto out;
	json_error_t jerr;
	rep = json_loads(reply, 0, &jerr);
	rc = FIRMANTE_E_PROTOCOL;
	if (!rep || !json_is_object(rep))
		goto bad_reply;
	if ((rc = take_string(rep, "sello", &s.sello)) < 0 ||
	    (rc = take_string(rep, "certificadoResponsable", &s.certificado)) < 0 ||
	    (rc = copy_fixed(rep, "noCertificadoResponsable", s.no_certificado,
			     sizeof(s.no_certificado), 20)) < 0 ||
	    (rc = copy_fixed(rep, "curp", s.curp, sizeof(s.curp), 18)) < 0 ||
	    (rc = copy_fixed(rep, "cadenaSha256", s.cadena_sha256, sizeof(s.cadena_sha256),
			     64)) < 0)
		goto bad_reply;
	json_t *idx = json_object_get(rep, "firmanteIndex");
	if (!json_is_integer(idx) || json_integer_value(idx) < 0 ||
	    json_integer_value(idx) > INT_MAX) {
		rc = FIRMANTE_E_PROTOCOL;
		goto bad_reply;
	}
	s.firmante_index = (int)json_integer_value(idx);
	*out = s;
	memset(&s, 0, sizeof(s));
	rc = 0;
	goto out;
bad_reply:
	problem_set(problem, rc, 200, "the agent's signature reply lacks a required field");
out:
	firmante_sello_clear(&s);
	json_decref(req);
	json_decref(rep);
	free(body);
	free(reply);
	return rc;
}

void firmante_sello_clear(struct firmante_sello *s)
{
	if (!s)
		return;
	free(s->sello);
	free(s->certificado);
	memset(s, 0, sizeof(*s));
}

/* ---- POST /v1/sign-batch: a JSON-lines stream ---------------------------- */

#define BATCH_LINE_MAX (64u * 1024u)

struct batch_rx {
	CURL *h;
	firmante_client *c;
	firmante_batch_cb cb;
	void *cb_data;
	struct firmante_batch_manifest m;
	struct reply_buf line;   /* the line being received (or a problem body) */
	size_t signed_count;
	int stop_err;            /* the error that ended the batch */
	struct firmante_problem stop_problem;
	int done;                /* the final line arrived */
	int cancelled;
	int bad;                 /* a line could not be understood */
};

static void batch_manifest_from(json_t *b, struct firmante_batch_manifest *m)
{
	const char *v;

	memset(m, 0, sizeof(*m));
	m->count = (size_t)json_integer_value(json_object_get(b, "count"));
	if ((v = json_string_value(json_object_get(b, "firstFolioControl"))))
		snprintf(m->first_folio, sizeof(m->first_folio), "%s", v);
	if ((v = json_string_value(json_object_get(b, "lastFolioControl"))))
		snprintf(m->last_folio, sizeof(m->last_folio), "%s", v);
	if ((v = json_string_value(json_object_get(b, "manifestSha256"))))
		snprintf(m->manifest_sha256, sizeof(m->manifest_sha256), "%s", v);
	if ((v = json_string_value(json_object_get(b, "batch"))))
		snprintf(m->batch, sizeof(m->batch), "%s", v);
}

/* One complete line of a 200 stream. Returns 0 to go on. */
static int batch_line(struct batch_rx *rx, const char *text)
{
	json_t *o = json_loads(text, 0, NULL), *b, *pr;
	struct firmante_sello s = { 0 };
	const char *id;
	size_t index;
	int rc = 0;

	if (!o || !json_is_object(o)) {
		rx->bad = 1;
		json_decref(o);
		return -1;
	}
	id = json_string_value(json_object_get(o, "id"));
	if ((b = json_object_get(o, "batch")) && json_is_object(b)) {
		batch_manifest_from(b, &rx->m);
		if (rx->cb && rx->cb(rx->cb_data, &rx->m, (size_t)-1, NULL, NULL, NULL))
			rx->cancelled = 1;
	} else if (json_is_true(json_object_get(o, "done"))) {
		rx->done = 1;
	} else if (json_is_string(json_object_get(o, "event"))) {
		/* "paused" (token removed) / "resumed": the batch goes on or
		 * ends with a problem line; nothing to count here, but the
		 * caller may show it. Unknown events are passed on too. */
		json_t *tok = json_object_get(o, "token");
		json_t *ix = json_object_get(o, "index"), *to = json_object_get(o, "timeout");

		if (rx->c && rx->c->event_cb)
			rx->c->event_cb(rx->c->event_data,
					json_string_value(json_object_get(o, "event")),
					json_string_value(json_object_get(o, "reason")),
					json_is_integer(ix) && json_integer_value(ix) >= 0 ?
					(size_t)json_integer_value(ix) : (size_t)-1,
					json_string_value(json_object_get(tok, "label")),
					json_is_integer(to) ? (long)json_integer_value(to) : -1L);
	} else if ((pr = json_object_get(o, "problem")) && json_is_object(pr)) {
		const char *code = json_string_value(json_object_get(pr, "code"));
		const char *detail = json_string_value(json_object_get(pr, "detail"));

		index = (size_t)json_integer_value(json_object_get(o, "index"));
		rx->stop_err = firmante_err_from_code(code);
		problem_set(&rx->stop_problem, rx->stop_err,
			    (int)json_integer_value(json_object_get(pr, "status")), detail);
		if (rx->cb)
			rx->cb(rx->cb_data, &rx->m, index, id, NULL, &rx->stop_problem);
	} else {
		json_t *idx = json_object_get(o, "firmanteIndex");

		index = (size_t)json_integer_value(json_object_get(o, "index"));
		if (take_string(o, "sello", &s.sello) < 0 ||
		    take_string(o, "certificadoResponsable", &s.certificado) < 0 ||
		    copy_fixed(o, "noCertificadoResponsable", s.no_certificado,
			       sizeof(s.no_certificado), 20) < 0 ||
		    copy_fixed(o, "curp", s.curp, sizeof(s.curp), 18) < 0 ||
		    copy_fixed(o, "cadenaSha256", s.cadena_sha256, sizeof(s.cadena_sha256), 64) < 0 ||
		    !json_is_integer(idx) || json_integer_value(idx) < 0 ||
		    json_integer_value(idx) > INT_MAX) {
			rx->bad = 1;
			rc = -1;
		} else {
			s.firmante_index = (int)json_integer_value(idx);
			rx->signed_count++;
			if (rx->cb && rx->cb(rx->cb_data, &rx->m, index, id, &s, NULL))
				rx->cancelled = 1;
		}
		firmante_sello_clear(&s);
	}
	json_decref(o);
	return rc || rx->cancelled ? -1 : 0;
}

static size_t on_batch_data(char *ptr, size_t size, size_t nmemb, void *userdata)
{
	struct batch_rx *rx = userdata;
	size_t n = size * nmemb;
	long http = 0;

	curl_easy_getinfo(rx->h, CURLINFO_RESPONSE_CODE, &http);
	if (http != 200) /* a problem body: keep it whole */
		return on_data(ptr, size, nmemb, &rx->line);
	for (size_t i = 0; i < n; i++) {
		if (ptr[i] != '\n') {
			struct reply_buf *b = &rx->line;

			if (b->len + 2 > BATCH_LINE_MAX) {
				rx->bad = 1;
				return 0;
			}
			if (!b->data || b->len + 2 > b->cap) {
				size_t ncap = b->cap ? 2 * b->cap : 4096;
				char *nd = realloc(b->data, ncap);

				if (!nd)
					return 0;
				b->data = nd;
				b->cap = ncap;
			}
			b->data[b->len++] = ptr[i];
			b->data[b->len] = '\0';
			continue;
		}
		if (rx->line.len && batch_line(rx, rx->line.data) != 0)
			return 0; /* cancelled or unreadable: close the connection */
		rx->line.len = 0;
		if (rx->line.data)
			rx->line.data[0] = '\0';
	}
	return n;
}

void firmante_client_set_batch_events(firmante_client *c, firmante_batch_event_cb cb, void *data)
{
	if (!c)
		return;
	c->event_cb = cb;
	c->event_data = data;
}

int firmante_client_sign_batch(firmante_client *c, const char *key_uri, const char *request_id,
			       const struct firmante_batch_doc *docs, size_t n,
			       firmante_batch_cb cb, void *cb_data, size_t *signed_count,
			       struct firmante_problem *problem)
{
	struct batch_rx rx;
	struct curl_slist *hdrs = NULL;
	json_t *req = NULL, *arr = NULL;
	char *body = NULL, errbuf[CURL_ERROR_SIZE] = "";
	long http = 0;
	int rc;

	memset(&rx, 0, sizeof(rx));
	if (signed_count)
		*signed_count = 0;
	if (!c || !key_uri || !docs || n == 0 || n > 1000) {
		problem_set(problem, FIRMANTE_E_BAD_REQUEST, 0, "1 to 1000 documents and a key are needed");
		return FIRMANTE_E_BAD_REQUEST;
	}
	req = json_object();
	arr = json_array();
	if (!req || !arr) {
		json_decref(arr);
		rc = FIRMANTE_E_NOMEM;
		problem_set(problem, rc, 0, NULL);
		goto out;
	}
	json_object_set_new(req, "documents", arr);
	for (size_t i = 0; i < n; i++) {
		json_t *d = json_stringn(docs[i].xml ? docs[i].xml : "", docs[i].len);

		if (!d || docs[i].len > FIRMANTE_MAX_DOCUMENT ||
		    json_array_append_new(arr, json_pack("{s:s?, s:o}", "id", docs[i].id,
							 "document", d))) {
			char msg[200];

			snprintf(msg, sizeof(msg), "document %zu%s%.100s is not valid UTF-8 or too large",
				 i + 1, docs[i].id ? " " : "", docs[i].id ? docs[i].id : "");
			rc = FIRMANTE_E_BAD_REQUEST;
			problem_set(problem, rc, 0, msg);
			goto out;
		}
	}
	if (json_object_set_new(req, "format", json_string(FIRMANTE_FORMAT_TITULO)) ||
	    json_object_set_new(req, "key", json_string(key_uri)) ||
	    (request_id && json_object_set_new(req, "id", json_string(request_id)))) {
		rc = FIRMANTE_E_BAD_REQUEST;
		problem_set(problem, rc, 0, "bad key or request id");
		goto out;
	}
	body = json_dumps(req, JSON_COMPACT);
	if (!body || strlen(body) > FIRMANTE_MAX_BODY) {
		rc = body ? FIRMANTE_E_TOO_LARGE : FIRMANTE_E_NOMEM;
		problem_set(problem, rc, 0, body ? "the batch is larger than the agent accepts "
			    "(8 MiB); send fewer titles at a time" : NULL);
		goto out;
	}
	rx.h = c->curl;
	rx.c = c;
	rx.cb = cb;
	rx.cb_data = cb_data;
	curl_easy_reset(rx.h);
	curl_easy_setopt(rx.h, CURLOPT_UNIX_SOCKET_PATH, c->socket_path);
	curl_easy_setopt(rx.h, CURLOPT_URL, "http://localhost" FIRMANTE_API_PREFIX "/sign-batch");
	curl_easy_setopt(rx.h, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(rx.h, CURLOPT_CONNECTTIMEOUT, 10L);
	/* A batch may take long; what must not last is silence. */
	curl_easy_setopt(rx.h, CURLOPT_LOW_SPEED_LIMIT, 1L);
	curl_easy_setopt(rx.h, CURLOPT_LOW_SPEED_TIME, c->timeout ? c->timeout : 600L);
	curl_easy_setopt(rx.h, CURLOPT_PROTOCOLS_STR, "http");
	curl_easy_setopt(rx.h, CURLOPT_ERRORBUFFER, errbuf);
	curl_easy_setopt(rx.h, CURLOPT_WRITEFUNCTION, on_batch_data);
	curl_easy_setopt(rx.h, CURLOPT_WRITEDATA, &rx);
	hdrs = curl_slist_append(hdrs, "Content-Type: application/json");
	if (hdrs)
		hdrs = curl_slist_append(hdrs, "Expect:");
	if (!hdrs) {
		rc = FIRMANTE_E_NOMEM;
		problem_set(problem, rc, 0, NULL);
		goto out;
	}
	curl_easy_setopt(rx.h, CURLOPT_HTTPHEADER, hdrs);
	curl_easy_setopt(rx.h, CURLOPT_POST, 1L);
	curl_easy_setopt(rx.h, CURLOPT_POSTFIELDS, body);
	curl_easy_setopt(rx.h, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)strlen(body));
	CURLcode cc = curl_easy_perform(rx.h);
	curl_easy_getinfo(rx.h, CURLINFO_RESPONSE_CODE, &http);
	if (signed_count)
		*signed_count = rx.signed_count;
	if (rx.cancelled) {
		rc = FIRMANTE_E_USER_DENIED;
		problem_set(problem, rc, (int)http, "the batch was cancelled; nothing more is signed");
		if (problem)
			snprintf(problem->code, sizeof(problem->code), "cancelled");
		goto out;
	}
	if (cc != CURLE_OK && !(rx.stop_err && cc == CURLE_WRITE_ERROR)) {
		char msg[700];

		rc = cc == CURLE_OPERATION_TIMEDOUT ? FIRMANTE_E_TIMEOUT :
		     rx.bad ? FIRMANTE_E_PROTOCOL :
		     cc == CURLE_COULDNT_CONNECT ? FIRMANTE_E_AGENT_UNREACHABLE : FIRMANTE_E_PROTOCOL;
		if (cc == CURLE_COULDNT_CONNECT)
			describe_unreachable(c->socket_path, msg, sizeof(msg));
		else
			snprintf(msg, sizeof(msg), "the batch stream from the agent at %s broke: %s",
				 c->socket_path, errbuf[0] ? errbuf : curl_easy_strerror(cc));
		problem_set(problem, rc, (int)http, msg);
		goto out;
	}
	if (http != 200) {
		rc = problem_decode(rx.line.data, http, problem);
		if (rc == 0)
			rc = FIRMANTE_E_PROTOCOL;
		goto out;
	}
	if (rx.stop_err) {
		rc = rx.stop_err;
		if (problem)
			*problem = rx.stop_problem;
		goto out;
	}
	if (!rx.done || rx.signed_count != n) {
		rc = FIRMANTE_E_PROTOCOL;
		problem_set(problem, rc, (int)http, "the batch stream ended early");
		goto out;
	}
	rc = 0;
out:
	curl_slist_free_all(hdrs);
	free(rx.line.data);
	free(body);
	json_decref(req);
	return rc;
}

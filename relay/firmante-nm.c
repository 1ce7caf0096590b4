/*
 * firmante-nm - native messaging host between a browser extension and the
 * signing agent firmanted.
 *
 * The browser starts this program for an extension that its manifest allows
 * (Chromium: argv[1] is "chrome-extension://ID/"; Firefox: argv[1] is the
 * manifest's path and argv[2] the extension's id) and talks to it over
 * stdin/stdout with native messaging framing: each message is a 32-bit
 * length in native byte order followed by that many bytes of UTF-8 JSON
 * (Chrome "Native messaging", Firefox "Native manifests" documentation).
 *
 * Each message from the extension is one request to the agent:
 *
 *   {"id": "r-1", "origin": "https://escolar.example.edu.mx",
 *    "method": "POST", "path": "/v1/sign", "body": {...}}
 *
 * and is relayed to the agent's Unix socket with the page's origin in the
 * header X-Firmante-Origin, so the agent treats the caller as a browser
 * page (every signature approved by the holder, no policy, no approvals,
 * pairings or events). Answers:
 *
 *   {"id": "r-1", "status": 200, "body": {...}}         one JSON answer
 *   {"id": "r-1", "status": 200, "line": {...}}         each line of a batch
 *   {"id": "r-1", "status": 200, "end": true}           after the last line
 *
 * A request the relay refuses, or an agent that cannot be reached, is
 * answered like the agent's own errors: "body" is a problem object with a
 * stable "code" (docs/protocol.md). When the browser closes the pipe while
 * a batch runs, the relay closes its connection, which cancels the batch.
 *
 * Caps: a message from the browser up to FIRMANTE_MAX_BODY + 64 KiB; a
 * message to the browser up to 1 MiB (the browser's own limit); one
 * request at a time.
 */
#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <curl/curl.h>
#include <jansson.h>

#include "firmante/build-config.h"
#include "firmante/client.h"
#include "firmante/protocol.h"

/* A message from the browser: a request body plus its envelope. */
#define NM_MAX_IN (FIRMANTE_MAX_BODY + 64u * 1024u)
/* A message to the browser (Chromium refuses larger ones). */
#define NM_MAX_OUT (1024u * 1024u)
/* The agent's answer to one non-streamed request. */
#define NM_MAX_REPLY (FIRMANTE_MAX_BODY)
/* The longest origin the agent accepts. */
#define NM_MAX_ORIGIN 200u

struct buf {
	char *data;
	size_t len, cap, max;
};

/* One request being relayed. */
struct relay {
	CURL *curl;
	json_t *id;          /* the message's "id" (borrowed), or NULL */
	struct buf body;     /* a whole JSON answer, or the pending batch line */
	bool stream;         /* the agent answers application/x-ndjson */
	bool decided;        /* stream decided from the Content-Type */
	bool broken;         /* a line could not be relayed: transfer stopped */
	long status;
	unsigned lines;
};

static int buf_add(struct buf *b, const char *p, size_t n)
{
	char *nd;
	size_t ncap;

	if (n > b->max - b->len)
		return FIRMANTE_E_TOO_LARGE;
	if (b->len + n + 1 > b->cap) {
		ncap = b->cap ? b->cap : 4096;
		while (ncap < b->len + n + 1)
			ncap *= 2;
		nd = realloc(b->data, ncap);
		if (!nd)
			return FIRMANTE_E_NOMEM;
		b->data = nd;
		b->cap = ncap;
	}
	memcpy(b->data + b->len, p, n);
	b->len += n;
	b->data[b->len] = '\0';
	return 0;
}

static int write_all(int fd, const void *p, size_t n)
{
	const char *c = p;

	while (n) {
		ssize_t w = write(fd, c, n);

		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			return FIRMANTE_E_IO;
		c += w;
		n -= (size_t)w;
	}
	return 0;
}

/* Read exactly @n bytes; returns 1 at a clean end of input before any byte. */
static int read_all(int fd, void *p, size_t n)
{
	char *c = p;
	size_t got = 0;

	while (got < n) {
		ssize_t r = read(fd, c + got, n - got);

		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0)
			return FIRMANTE_E_IO;
		if (r == 0)
			return got == 0 ? 1 : FIRMANTE_E_IO;
		got += (size_t)r;
	}
	return 0;
}

/* Send one message to the browser; a message over NM_MAX_OUT is refused. */
static int send_msg(json_t *msg)
{
	char *text = json_dumps(msg, JSON_COMPACT);
	uint32_t len;
	int rc;

	if (!text)
		return FIRMANTE_E_NOMEM;
	if (strlen(text) > NM_MAX_OUT) {
		free(text);
		return FIRMANTE_E_TOO_LARGE;
	}
	len = (uint32_t)strlen(text);
	rc = write_all(STDOUT_FILENO, &len, sizeof(len));
	if (!rc)
		rc = write_all(STDOUT_FILENO, text, len);
	free(text);
	return rc;
}

static json_t *problem(int err, const char *detail)
{
	char type[128];

	snprintf(type, sizeof(type), "https://firmante.invalid/problems/%s", firmante_err_code(err));
	return json_pack("{s:s, s:s, s:i, s:s, s:s}", "type", type, "title", firmante_err_title(err),
			 "status", firmante_err_http_status(err), "detail", detail, "code",
			 firmante_err_code(err));
}

/* Answer the request @id with the relay's own problem. */
static int send_problem(json_t *id, int err, const char *detail)
{
	json_t *msg = json_pack("{s:O?, s:i, s:o}", "id", id, "status",
				firmante_err_http_status(err), "body", problem(err, detail));
	int rc;

	if (!msg)
		return FIRMANTE_E_NOMEM;
	rc = send_msg(msg);
	json_decref(msg);
	return rc;
}

/* Send a member (@key: "body" or "line") holding the JSON text @text. */
static int send_json_text(struct relay *r, const char *key, const char *text, size_t len)
{
	json_error_t jerr;
	json_t *v = json_loadb(text, len, 0, &jerr), *msg;
	int rc;

	if (!v)
		return send_problem(r->id, FIRMANTE_E_PROTOCOL,
				    "the signing agent's answer is not JSON");
	msg = json_pack("{s:O?, s:i, s:o}", "id", r->id, "status", (int)r->status, key, v);
	if (!msg)
		return FIRMANTE_E_NOMEM;
	rc = send_msg(msg);
	json_decref(msg);
	if (rc == FIRMANTE_E_TOO_LARGE)
		rc = send_problem(r->id, FIRMANTE_E_TOO_LARGE,
				  "the signing agent's answer is larger than a browser message may be (1 MiB)");
	return rc;
}

/* Relay every complete line of a batch answer held in r->body. */
static int flush_lines(struct relay *r, bool final)
{
	char *start = r->body.data, *nl;
	size_t rest;
	int rc = 0;

	if (!start)
		return 0;
	while ((nl = memchr(start, '\n', r->body.len - (size_t)(start - r->body.data))) != NULL) {
		if (nl > start) {
			rc = send_json_text(r, "line", start, (size_t)(nl - start));
			if (rc)
				return rc;
			r->lines++;
		}
		start = nl + 1;
	}
	rest = r->body.len - (size_t)(start - r->body.data);
	if (final && rest) {
		rc = send_json_text(r, "line", start, rest);
		r->lines++;
		rest = 0;
		start = r->body.data + r->body.len;
	}
	memmove(r->body.data, start, rest);
	r->body.len = rest;
	r->body.data[rest] = '\0';
	return rc;
}

static size_t on_data(char *p, size_t size, size_t n, void *cls)
{
	struct relay *r = cls;
	size_t len = size * n;
	char *ctype = NULL;

	if (!r->decided) {
		curl_easy_getinfo(r->curl, CURLINFO_RESPONSE_CODE, &r->status);
		curl_easy_getinfo(r->curl, CURLINFO_CONTENT_TYPE, &ctype);
		r->stream = ctype && !strncmp(ctype, "application/x-ndjson", 20);
		r->body.max = r->stream ? NM_MAX_OUT : NM_MAX_REPLY;
		r->decided = true;
	}
	if (buf_add(&r->body, p, len)) {
		r->broken = true;
		return 0;
	}
	if (r->stream && flush_lines(r, false)) {
		r->broken = true;
		return 0;
	}
	return len;
}

/* The browser went away (closed our stdin): stop, which cancels a batch. */
static int on_progress(void *cls, curl_off_t dt, curl_off_t dn, curl_off_t ut, curl_off_t un)
{
	struct pollfd pfd = { .fd = STDIN_FILENO, .events = POLLIN };

	(void)cls;
	(void)dt;
	(void)dn;
	(void)ut;
	(void)un;
	if (poll(&pfd, 1, 0) > 0 && (pfd.revents & (POLLHUP | POLLERR | POLLNVAL)))
		return 1;
	return 0;
}

/* "http(s)://host[:port]": lower-case letters, digits, '-' and '.'. */
static bool origin_ok(const char *o)
{
	const char *h;
	size_t i;

	if (strlen(o) > NM_MAX_ORIGIN)
		return false;
	if (!strncmp(o, "https://", 8))
		h = o + 8;
	else if (!strncmp(o, "http://", 7))
		h = o + 7;
	else
		return false;
	if (!*h || *h == '.' || *h == ':')
		return false;
	for (i = 0; h[i] && h[i] != ':'; i++)
		if (!strchr("abcdefghijklmnopqrstuvwxyz0123456789-.", h[i]))
			return false;
	if (h[i] == ':') {
		size_t d = strlen(h + i + 1);

		if (d == 0 || d > 5 || strspn(h + i + 1, "0123456789") != d)
			return false;
	}
	return true;
}

/* The endpoints of a web page (docs/protocol.md, "Browser listener"). */
static bool path_ok(const char *method, const char *path)
{
	if (!strcmp(method, "GET"))
		return !strcmp(path, "/v1/status") || !strcmp(path, "/v1/tokens") ||
		       !strcmp(path, "/v1/keys");
	if (!strcmp(method, "POST"))
		return !strcmp(path, "/v1/sign") || !strcmp(path, "/v1/sign-batch");
	return false;
}

static int add_header(struct curl_slist **list, const char *h)
{
	struct curl_slist *n = curl_slist_append(*list, h);

	if (!n)
		return FIRMANTE_E_NOMEM;
	*list = n;
	return 0;
}

/* Relay one request message to the agent at @sock and answer the browser. */
static int relay_one(const char *sock, json_t *req)
{
	struct relay r = { 0 };
	struct curl_slist *hdrs = NULL;
	const char *origin, *method, *path;
	json_t *body;
	char *payload = NULL, hdr[300], url[64], err[CURL_ERROR_SIZE] = "";
	CURLcode cc;
	int rc = 0;

	r.id = json_object_get(req, "id");
	if (r.id && (!json_is_string(r.id) || json_string_length(r.id) > FIRMANTE_MAX_REQUEST_ID))
		r.id = NULL;
	origin = json_string_value(json_object_get(req, "origin"));
	method = json_string_value(json_object_get(req, "method"));
	path = json_string_value(json_object_get(req, "path"));
	body = json_object_get(req, "body");
	if (!origin || !origin_ok(origin)) {
		rc = send_problem(r.id, FIRMANTE_E_BAD_REQUEST,
				  "\"origin\" must be the web page's origin (http(s)://host[:port])");
		goto out;
	}
	if (!method || !path || !path_ok(method, path)) {
		rc = send_problem(r.id, FIRMANTE_E_NOT_FOUND,
				  "a web page may use GET /v1/status, /v1/tokens, /v1/keys and "
				  "POST /v1/sign, /v1/sign-batch");
		goto out;
	}
	if (!strcmp(method, "POST") && !json_is_object(body)) {
		rc = send_problem(r.id, FIRMANTE_E_BAD_REQUEST, "\"body\" must be a JSON object");
		goto out;
	}
	r.curl = curl_easy_init();
	if (!r.curl) {
		rc = FIRMANTE_E_NOMEM;
		goto out;
	}
	/* The origin was checked above: no control characters reach the header. */
	snprintf(hdr, sizeof(hdr), "%s: %s", FIRMANTE_HEADER_ORIGIN, origin);
	rc = add_header(&hdrs, hdr);
	if (!rc && !strcmp(method, "POST")) {
		rc = add_header(&hdrs, "Content-Type: application/json");
		if (!rc)
			rc = add_header(&hdrs, "Expect:");
		payload = json_dumps(body, JSON_COMPACT);
		if (!rc && !payload)
			rc = FIRMANTE_E_NOMEM;
	}
	if (rc)
		goto out;
	snprintf(url, sizeof(url), "http://localhost%s", path);
	curl_easy_setopt(r.curl, CURLOPT_UNIX_SOCKET_PATH, sock);
	curl_easy_setopt(r.curl, CURLOPT_URL, url);
	curl_easy_setopt(r.curl, CURLOPT_HTTPHEADER, hdrs);
	curl_easy_setopt(r.curl, CURLOPT_WRITEFUNCTION, on_data);
	curl_easy_setopt(r.curl, CURLOPT_WRITEDATA, &r);
	curl_easy_setopt(r.curl, CURLOPT_NOPROGRESS, 0L);
	curl_easy_setopt(r.curl, CURLOPT_XFERINFOFUNCTION, on_progress);
	curl_easy_setopt(r.curl, CURLOPT_ERRORBUFFER, err);
	curl_easy_setopt(r.curl, CURLOPT_CONNECTTIMEOUT, 10L);
	curl_easy_setopt(r.curl, CURLOPT_NOSIGNAL, 1L);
	if (payload)
		curl_easy_setopt(r.curl, CURLOPT_POSTFIELDS, payload);
	cc = curl_easy_perform(r.curl);
	if (cc == CURLE_ABORTED_BY_CALLBACK) {
		rc = 1; /* the browser left */
		goto out;
	}
	if (cc == CURLE_WRITE_ERROR && r.broken) {
		rc = send_problem(r.id, r.stream ? FIRMANTE_E_PROTOCOL : FIRMANTE_E_TOO_LARGE,
				  r.stream ? "a line of the signing agent's answer could not be relayed"
					   : "the signing agent's answer is larger than the relay accepts");
		goto out;
	}
	if (cc != CURLE_OK) {
		if (r.lines) {
			rc = send_problem(r.id, FIRMANTE_E_AGENT_UNREACHABLE,
					  "the signing agent stopped before the batch ended");
		} else {
			char detail[600];

			if (cc == CURLE_COULDNT_CONNECT)
				snprintf(detail, sizeof(detail),
					 "the signing agent firmanted is not running (nothing answers "
					 "at %.300s)", sock);
			else
				snprintf(detail, sizeof(detail),
					 "the signing agent firmanted cannot be reached at %.300s "
					 "(%.200s)", sock, err[0] ? err : curl_easy_strerror(cc));
			rc = send_problem(r.id, FIRMANTE_E_AGENT_UNREACHABLE, detail);
		}
		goto out;
	}
	if (!r.decided)
		curl_easy_getinfo(r.curl, CURLINFO_RESPONSE_CODE, &r.status);
	if (r.stream) {
		json_t *end;

		rc = flush_lines(&r, true);
		if (rc)
			goto out;
		end = json_pack("{s:O?, s:i, s:b}", "id", r.id, "status", (int)r.status, "end", 1);
		if (!end) {
			rc = FIRMANTE_E_NOMEM;
			goto out;
		}
		rc = send_msg(end);
		json_decref(end);
		goto out;
	}
	rc = send_json_text(&r, "body", r.body.data ? r.body.data : "", r.body.len);
out:
	curl_slist_free_all(hdrs);
	if (r.curl)
		curl_easy_cleanup(r.curl);
	free(payload);
	free(r.body.data);
	return rc;
}

static void usage(FILE *f)
{
	fputs("usage: firmante-nm chrome-extension://ID/      (started by Chromium or Chrome)\n"
	      "       firmante-nm MANIFEST EXTENSION-ID        (started by Firefox)\n"
	      "       firmante-nm --help | --version\n"
	      "\n"
	      "Native messaging host of firmante: a browser extension allowed by the host's\n"
	      "manifest (org.firmante.nm.json) sends requests of web pages as native messages\n"
	      "(32-bit length, then JSON); each is relayed to the signing agent's Unix socket\n"
	      "($FIRMANTE_SOCKET, else $XDG_RUNTIME_DIR/firmante/agent.sock) with the page's\n"
	      "origin. The agent treats it as a web page: every signature is shown to the\n"
	      "holder and needs the holder's approval. Messages:\n"
	      "  in:  {\"id\", \"origin\", \"method\": \"GET\"|\"POST\", \"path\", \"body\"}\n"
	      "  out: {\"id\", \"status\", \"body\"} or, for POST /v1/sign-batch, one\n"
	      "       {\"id\", \"status\", \"line\"} per line and {\"id\", \"status\", \"end\": true}\n"
	      "Paths: GET /v1/status, /v1/tokens, /v1/keys; POST /v1/sign, /v1/sign-batch.\n"
	      "Closing the pipe cancels a batch in progress. Exit status: 0 when the browser\n"
	      "closes the connection, 1 on a broken message, 2 on wrong arguments.\n",
	      f);
}

int main(int argc, char **argv)
{
	char sock[1024];
	int rc = 0;

	if (argc == 2 && !strcmp(argv[1], "--help")) {
		usage(stdout);
		return 0;
	}
	if (argc == 2 && !strcmp(argv[1], "--version")) {
		printf("firmante-nm %s\n", FIRMANTE_VERSION);
		return 0;
	}
	/* Only a browser starts a native messaging host, with these arguments. */
	if (!(argc >= 2 && !strncmp(argv[1], "chrome-extension://", 19)) &&
	    !(argc >= 3 && argv[1][0] == '/' && argv[2][0])) {
		usage(stderr);
		return 2;
	}
	signal(SIGPIPE, SIG_IGN);
	if (firmante_default_socket_path(sock, sizeof(sock))) {
		fputs("firmante-nm: the agent's socket path is too long\n", stderr);
		return 1;
	}
	if (curl_global_init(CURL_GLOBAL_DEFAULT)) {
		fputs("firmante-nm: libcurl could not be initialised\n", stderr);
		return 1;
	}
	for (;;) {
		uint32_t len;
		char *msg;
		json_error_t jerr;
		json_t *req;

		rc = read_all(STDIN_FILENO, &len, sizeof(len));
		if (rc == 1) {
			rc = 0; /* the browser closed the connection */
			break;
		}
		if (rc) {
			fputs("firmante-nm: a message from the browser was cut off\n", stderr);
			break;
		}
		if (len == 0 || len > NM_MAX_IN) {
			send_problem(NULL, FIRMANTE_E_TOO_LARGE,
				     "a message to the signing agent must have 1 byte to 8 MiB");
			fprintf(stderr, "firmante-nm: a message of %lu bytes is refused\n",
				(unsigned long)len);
			rc = FIRMANTE_E_TOO_LARGE;
			break;
		}
		msg = malloc(len);
		if (!msg) {
			rc = FIRMANTE_E_NOMEM;
			break;
		}
		rc = read_all(STDIN_FILENO, msg, len);
		if (rc) {
			free(msg);
			fputs("firmante-nm: a message from the browser was cut off\n", stderr);
			rc = FIRMANTE_E_IO;
			break;
		}
		req = json_loadb(msg, len, 0, &jerr);
		free(msg);
		if (!json_is_object(req)) {
			json_decref(req);
			rc = send_problem(NULL, FIRMANTE_E_BAD_REQUEST,
					  "the message is not a JSON object");
		} else {
			rc = relay_one(sock, req);
			json_decref(req);
		}
		if (rc == 1) {
			rc = 0; /* the browser left during a request */
			break;
		}
		if (rc) {
			fprintf(stderr, "firmante-nm: the browser cannot be answered (%s)\n",
				firmante_err_code(rc));
			break;
		}
	}
	curl_global_cleanup();
	return rc ? 1 : 0;
}

/*
 * The MET client's handling of the service's answers (submitter/met.c:
 * SOAP 1.1 envelope, faults, HTTP status, each operation's fields, the
 * Base64 result ZIP of descarga). A TLS server in this process (a
 * certificate for 127.0.0.1 made at start, trusted through the profile's
 * ca-bundle) answers every request with the input.
 * Input: byte 0 picks the operation (carga, consulta, descarga, cancela),
 * byte 1 the HTTP status (200, 500, 400), the rest is the answer's body.
 * Properties: only documented return codes, each failure with a message;
 * on success the documented outputs hold (numeroLote decimal digits,
 * descarga's ZIP and length agree, cancela's flags 0..2 and 0..1).
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <openssl/ec.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include "firmante/protocol.h"
#include "fuzz.h"
#include "met.h"

/* The answer the server sends; set before each call, read by the server. */
static pthread_mutex_t g_mu = PTHREAD_MUTEX_INITIALIZER;
static const uint8_t *g_body;
static size_t g_body_len;
static int g_status;

static SSL_CTX *g_ssl;
static int g_listen = -1;
static struct met_profile g_prof;
static char g_payload[4096];

static void make_certificate(const char *cert_path, EVP_PKEY **key_out, X509 **cert_out)
{
	EVP_PKEY *key = EVP_EC_gen("P-256");
	X509 *x = X509_new();
	X509_NAME *name;
	X509_EXTENSION *ext;
	X509V3_CTX v3;
	FILE *f;

	if (!key || !x)
		fuzz_fail("cannot make a test key");
	ASN1_INTEGER_set(X509_get_serialNumber(x), 1);
	X509_gmtime_adj(X509_getm_notBefore(x), -3600);
	X509_gmtime_adj(X509_getm_notAfter(x), 86400L * 365);
	X509_set_pubkey(x, key);
	name = X509_get_subject_name(x);
	X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC, (const unsigned char *)"127.0.0.1",
				   -1, -1, 0);
	X509_set_issuer_name(x, name);
	X509V3_set_ctx_nodb(&v3);
	X509V3_set_ctx(&v3, x, x, NULL, NULL, 0);
	ext = X509V3_EXT_conf_nid(NULL, &v3, NID_subject_alt_name, "IP:127.0.0.1");
	if (!ext || !X509_add_ext(x, ext, -1))
		fuzz_fail("cannot add subjectAltName");
	X509_EXTENSION_free(ext);
	ext = X509V3_EXT_conf_nid(NULL, &v3, NID_basic_constraints, "critical,CA:TRUE");
	if (!ext || !X509_add_ext(x, ext, -1))
		fuzz_fail("cannot add basicConstraints");
	X509_EXTENSION_free(ext);
	if (!X509_sign(x, key, EVP_sha256()))
		fuzz_fail("cannot sign the test certificate");
	f = fopen(cert_path, "we");
	if (!f || !PEM_write_X509(f, x) || fclose(f) != 0)
		fuzz_fail("cannot write %s", cert_path);
	*key_out = key;
	*cert_out = x;
}

/* Read the request: headers, then Content-Length bytes of body. */
static int read_request(SSL *s)
{
	char buf[8192];
	size_t have = 0, body = 0, want;
	char *end = NULL;
	const char *cl;

	while (!end) {
		int n;

		if (have == sizeof(buf) - 1)
			return -1;
		n = SSL_read(s, buf + have, (int)(sizeof(buf) - 1 - have));
		if (n <= 0)
			return -1;
		have += (size_t)n;
		buf[have] = '\0';
		end = strstr(buf, "\r\n\r\n");
	}
	cl = strcasestr(buf, "\r\nContent-Length:");
	want = cl && cl < end ? strtoul(cl + 17, NULL, 10) : 0;
	body = have - (size_t)(end + 4 - buf);
	while (body < want) {
		size_t room = want - body < sizeof(buf) ? want - body : sizeof(buf);
		int n = SSL_read(s, buf, (int)room);

		if (n <= 0)
			return -1;
		body += (size_t)n;
	}
	return 0;
}

static void *serve(void *arg)
{
	(void)arg;
	for (;;) {
		struct timeval tv = { .tv_sec = 10 };
		int one = 1;
		char head[256];
		int c = accept(g_listen, NULL, NULL);
		SSL *s;

		if (c < 0) {
			if (errno == EINTR || errno == ECONNABORTED)
				continue;
			return NULL;
		}
		setsockopt(c, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
		setsockopt(c, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
		setsockopt(c, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
		s = SSL_new(g_ssl);
		if (s && SSL_set_fd(s, c) == 1 && SSL_accept(s) == 1 && read_request(s) == 0) {
			int n;

			pthread_mutex_lock(&g_mu);
			n = snprintf(head, sizeof(head),
				     "HTTP/1.1 %d Answer\r\nContent-Type: text/xml; charset=utf-8\r\n"
				     "Content-Length: %zu\r\nConnection: close\r\n\r\n",
				     g_status, g_body_len);
			if (n > 0) {
				/* One write: no small segment waits for an ACK. */
				char *all = malloc((size_t)n + g_body_len);

				if (all) {
					memcpy(all, head, (size_t)n);
					if (g_body_len)
						memcpy(all + n, g_body, g_body_len);
					SSL_write(s, all, (int)((size_t)n + g_body_len));
					free(all);
				}
			}
			pthread_mutex_unlock(&g_mu);
			SSL_shutdown(s);
		}
		SSL_free(s);
		close(c);
	}
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	struct sockaddr_in sa;
	socklen_t len = sizeof(sa);
	pthread_t th;
	EVP_PKEY *key = NULL;
	X509 *cert = NULL;
	char cert_path[1024];

	(void)argc;
	(void)argv;
	fuzz_private_path("ca.pem", cert_path, sizeof(cert_path));
	make_certificate(cert_path, &key, &cert);
	g_ssl = SSL_CTX_new(TLS_server_method());
	if (!g_ssl || SSL_CTX_use_certificate(g_ssl, cert) != 1 ||
	    SSL_CTX_use_PrivateKey(g_ssl, key) != 1)
		fuzz_fail("cannot set up the TLS server");
	EVP_PKEY_free(key);
	X509_free(cert);
	g_listen = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	memset(&sa, 0, sizeof(sa));
	sa.sin_family = AF_INET;
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (g_listen < 0 || bind(g_listen, (struct sockaddr *)&sa, sizeof(sa)) != 0 ||
	    listen(g_listen, 16) != 0 || getsockname(g_listen, (struct sockaddr *)&sa, &len) != 0)
		fuzz_fail("cannot listen on loopback: %s", strerror(errno));
	if (pthread_create(&th, NULL, serve, NULL) != 0)
		fuzz_fail("cannot start the server thread");
	pthread_detach(th);

	memset(&g_prof, 0, sizeof(g_prof));
	snprintf(g_prof.name, sizeof(g_prof.name), "sandbox");
	snprintf(g_prof.url, sizeof(g_prof.url), "https://127.0.0.1:%u/met-ws/services/",
		 (unsigned)ntohs(sa.sin_port));
	snprintf(g_prof.ca_bundle, sizeof(g_prof.ca_bundle), "%s", cert_path);
	snprintf(g_prof.usuario, sizeof(g_prof.usuario), "usuario");
	snprintf(g_prof.password, sizeof(g_prof.password), "secreto");
	g_prof.connect_timeout_s = 10;
	g_prof.timeout_s = 20;
	g_prof.retries = 0;
	g_prof.retry_delay_ms = 1;
	g_prof.retry_max_delay_ms = 1;
	g_prof.lot_size = 100;
	g_prof.poll_delay_s = 1;
	fuzz_private_path("lote.zip", g_payload, sizeof(g_payload));
	if (fuzz_write_file(g_payload, (const uint8_t *)"PK\x05\x06\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0", 22))
		fuzz_fail("cannot write %s", g_payload);
	return 0;
}

static void check_error(int rc, const struct met_error *err, const char *op)
{
	if (rc != FIRMANTE_E_FORBIDDEN && rc != FIRMANTE_E_INVALID && rc != FIRMANTE_E_IO &&
	    rc != FIRMANTE_E_TIMEOUT && rc != FIRMANTE_E_PROTOCOL && rc != FIRMANTE_E_TOO_LARGE &&
	    rc != FIRMANTE_E_NOMEM)
		fuzz_fail("%s: undocumented error %d (%s)", op, rc, err->message);
	if (!memchr(err->message, '\0', sizeof(err->message)) || !err->message[0])
		fuzz_fail("%s: error %d without a message", op, rc);
	if (rc == FIRMANTE_E_TIMEOUT)
		fuzz_fail("%s: timed out against a server that answers at once: %s", op,
			  err->message);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const int statuses[] = { 200, 500, 400 };
	struct met_error err;
	char numero[32], mensaje[MET_MAX_FIELD];
	int rc, op;

	if (size < 2 || size > 4u * 1024u * 1024u)
		return 0;
	op = data[0] % 4;
	pthread_mutex_lock(&g_mu);
	g_status = statuses[data[1] % 3];
	g_body = data + 2;
	g_body_len = size - 2;
	pthread_mutex_unlock(&g_mu);
	memset(&err, 0, sizeof(err));
	mensaje[0] = '\0';
	if (op == 0) {
		rc = met_carga(&g_prof, "lote.zip", g_payload, numero, mensaje, sizeof(mensaje), &err);
		if (rc == 0 && (!numero[0] || strspn(numero, "0123456789") != strlen(numero)))
			fuzz_fail("carga: numeroLote \"%s\" is not a number", numero);
	} else if (op == 1) {
		int estatus = -1;

		rc = met_consulta(&g_prof, "257945", &estatus, mensaje, sizeof(mensaje), &err);
	} else if (op == 2) {
		uint8_t *zip = NULL;
		size_t zip_len = 0;

		rc = met_descarga(&g_prof, "257945", &zip, &zip_len, mensaje, sizeof(mensaje), &err);
		if (rc == 0 && (zip == NULL) != (zip_len == 0))
			fuzz_fail("descarga: ZIP %p with length %zu", (void *)zip, zip_len);
		free(zip);
	} else {
		int codigo = 0, cancelled = -1, review = -1;

		rc = met_cancela(&g_prof, "UVC-2025-0001", "R1", &codigo, mensaje, sizeof(mensaje),
				 &cancelled, &review, &err);
		if (rc == 0 && (cancelled < 0 || cancelled > 2 || review < 0 || review > 1))
			fuzz_fail("cancela: cancelled %d, review %d", cancelled, review);
	}
	if (getenv("FIRMANTE_FUZZ_VERBOSE"))
		fprintf(stderr, "fuzz_met_soap: operation %d, HTTP %d: %d %s\n", op, g_status, rc,
			rc ? err.message : mensaje);
	if (rc != 0)
		check_error(rc, &err, op == 0 ? "carga" : op == 1 ? "consulta" : op == 2 ? "descarga"
											: "cancela");
	if (!memchr(mensaje, '\0', sizeof(mensaje)))
		fuzz_fail("mensaje not terminated");
	return 0;
}

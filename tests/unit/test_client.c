/* libfirmante-client against a scripted fake agent on a Unix socket:
 * transport errors, problem+json decoding, the sign reply. */
#include <errno.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cmocka.h>

#include "firmante/client.h"

struct fake {
	int listen_fd;
	char path[108];
	char dir[64];
	int status;
	const char *content_type;
	const char *body;
	char request[1 << 16]; /* what the client sent */
	size_t request_len;
	pthread_t thread;
};

/* Serve one connection: read the request head and body, answer once. */
static void *serve_one(void *arg)
{
	struct fake *f = arg;
	int fd = accept(f->listen_fd, NULL, NULL);
	if (fd < 0)
		return NULL;
	f->request_len = 0;
	size_t need = 0;
	for (;;) {
		ssize_t r = read(fd, f->request + f->request_len,
				 sizeof(f->request) - 1 - f->request_len);
		if (r <= 0)
			break;
		f->request_len += (size_t)r;
		f->request[f->request_len] = '\0';
		char *end = strstr(f->request, "\r\n\r\n");
		if (!end)
			continue;
		if (!need) {
			const char *cl = strcasestr(f->request, "Content-Length:");
			need = (size_t)(end + 4 - f->request) +
			       (cl ? strtoul(cl + 15, NULL, 10) : 0);
		}
		if (f->request_len >= need)
			break;
	}
	char head[256];
	int n = snprintf(head, sizeof(head),
			 "HTTP/1.1 %d X\r\nContent-Type: %s\r\nContent-Length: %zu\r\n"
			 "Connection: close\r\n\r\n",
			 f->status, f->content_type, strlen(f->body));
	if (write(fd, head, (size_t)n) < 0 || write(fd, f->body, strlen(f->body)) < 0)
		perror("write");
	close(fd);
	return NULL;
}

static int setup(void **state)
{
	struct fake *f = calloc(1, sizeof(*f));
	snprintf(f->dir, sizeof(f->dir), "/tmp/fm-client-XXXXXX");
	assert_non_null(mkdtemp(f->dir));
	snprintf(f->path, sizeof(f->path), "%s/agent.sock", f->dir);
	f->listen_fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", f->path);
	assert_int_equal(bind(f->listen_fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	assert_int_equal(listen(f->listen_fd, 4), 0);
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fake *f = *state;
	close(f->listen_fd);
	unlink(f->path);
	rmdir(f->dir);
	free(f);
	return 0;
}

static void start(struct fake *f, int status, const char *ctype, const char *body)
{
	f->status = status;
	f->content_type = ctype;
	f->body = body;
	assert_int_equal(pthread_create(&f->thread, NULL, serve_one, f), 0);
}

static void test_unreachable(void **state)
{
	(void)state;
	firmante_client *c = NULL;
	struct firmante_problem p;
	char *reply = (char *)0x1;
	assert_int_equal(firmante_client_new("/nonexistent/firmante/agent.sock", &c), 0);
	int rc = firmante_client_request(c, "GET", "/v1/status", NULL, &reply, &p);
	assert_int_equal(rc, FIRMANTE_E_AGENT_UNREACHABLE);
	assert_string_equal(p.code, "agent-unreachable");
	assert_non_null(strstr(p.detail, "/nonexistent/firmante/agent.sock"));
	assert_ptr_equal(reply, (char *)0x1); /* untouched on failure */
	firmante_client_free(c);
}

static void test_ok_reply(void **state)
{
	struct fake *f = *state;
	start(f, 200, "application/json", "{\"version\":\"x\"}");
	firmante_client *c = NULL;
	char *reply = NULL;
	assert_int_equal(firmante_client_new(f->path, &c), 0);
	assert_int_equal(firmante_client_request(c, "GET", "/v1/status", NULL, &reply, NULL), 0);
	pthread_join(f->thread, NULL);
	assert_string_equal(reply, "{\"version\":\"x\"}");
	assert_non_null(strstr(f->request, "GET /v1/status HTTP/1.1\r\n"));
	free(reply);
	firmante_client_free(c);
}

static void test_problem_decoded(void **state)
{
	struct fake *f = *state;
	start(f, 403, "application/problem+json",
	      "{\"type\":\"about:blank\",\"title\":\"The holder denied the signature\","
	      "\"status\":403,\"code\":\"user-denied\",\"detail\":\"denied in pinentry\"}");
	firmante_client *c = NULL;
	struct firmante_problem p;
	char *reply = NULL;
	assert_int_equal(firmante_client_new(f->path, &c), 0);
	int rc = firmante_client_request(c, "POST", "/v1/sign", "{}", &reply, &p);
	pthread_join(f->thread, NULL);
	assert_int_equal(rc, FIRMANTE_E_USER_DENIED);
	assert_int_equal(p.err, FIRMANTE_E_USER_DENIED);
	assert_int_equal(p.http_status, 403);
	assert_string_equal(p.code, "user-denied");
	assert_string_equal(p.detail, "denied in pinentry");
	assert_null(reply);
	assert_non_null(strstr(f->request, "Content-Type: application/json"));
	firmante_client_free(c);
}

static void test_error_without_problem(void **state)
{
	struct fake *f = *state;
	start(f, 500, "text/plain", "boom");
	firmante_client *c = NULL;
	struct firmante_problem p;
	assert_int_equal(firmante_client_new(f->path, &c), 0);
	int rc = firmante_client_request(c, "GET", "/v1/keys", NULL, NULL, &p);
	pthread_join(f->thread, NULL);
	assert_int_equal(rc, FIRMANTE_E_PROTOCOL);
	assert_int_equal(p.http_status, 500);
	firmante_client_free(c);
}

#define SELLO "c2VsbG8="
static void test_sign_reply(void **state)
{
	struct fake *f = *state;
	start(f, 200, "application/json",
	      "{\"id\":\"r1\",\"sello\":\"" SELLO "\",\"certificadoResponsable\":\"Y2VydA==\","
	      "\"noCertificadoResponsable\":\"30001000000300023685\","
	      "\"curp\":\"MEOJ700515HDFNRN00\",\"firmanteIndex\":1,"
	      "\"cadenaSha256\":\"43cdf249ad3e0b74582970588973abebecdd8fda69df1eb6fbf286b30fc6406c\"}");
	firmante_client *c = NULL;
	struct firmante_sello s;
	struct firmante_problem p;
	assert_int_equal(firmante_client_new(f->path, &c), 0);
	const char *xml = "<TituloElectronico \"&quot;\"/>";
	int rc = firmante_client_sign_titulo(c, xml, strlen(xml), "pkcs11:token=t;id=%01", "r1",
					     &s, &p);
	pthread_join(f->thread, NULL);
	assert_int_equal(rc, 0);
	assert_string_equal(s.sello, SELLO);
	assert_string_equal(s.certificado, "Y2VydA==");
	assert_string_equal(s.no_certificado, "30001000000300023685");
	assert_string_equal(s.curp, "MEOJ700515HDFNRN00");
	assert_int_equal(s.firmante_index, 1);
	/* The request carries the document as a JSON string, escaped. */
	assert_non_null(strstr(f->request, "\"format\":\"titulo-electronico\""));
	assert_non_null(strstr(f->request, "\"key\":\"pkcs11:token=t;id=%01\""));
	assert_non_null(strstr(f->request, "\\\"&quot;\\\""));
	firmante_sello_clear(&s);
	assert_null(s.sello);
	firmante_client_free(c);
}

static void test_sign_reply_incomplete(void **state)
{
	struct fake *f = *state;
	/* noCertificado of 19 digits: refused as a protocol error. */
	start(f, 200, "application/json",
	      "{\"sello\":\"" SELLO "\",\"certificadoResponsable\":\"Y2VydA==\","
	      "\"noCertificadoResponsable\":\"3000100000030002368\","
	      "\"curp\":\"MEOJ700515HDFNRN00\",\"firmanteIndex\":0,"
	      "\"cadenaSha256\":\"43cdf249ad3e0b74582970588973abebecdd8fda69df1eb6fbf286b30fc6406c\"}");
	firmante_client *c = NULL;
	struct firmante_sello s = { 0 };
	struct firmante_problem p;
	assert_int_equal(firmante_client_new(f->path, &c), 0);
	int rc = firmante_client_sign_titulo(c, "<x/>", 4, "pkcs11:id=%01", NULL, &s, &p);
	pthread_join(f->thread, NULL);
	assert_int_equal(rc, FIRMANTE_E_PROTOCOL);
	assert_null(s.sello);
	firmante_client_free(c);
}

static void test_default_socket_path(void **state)
{
	(void)state;
	char buf[256];
	setenv("FIRMANTE_SOCKET", "/x/y.sock", 1);
	assert_int_equal(firmante_default_socket_path(buf, sizeof(buf)), 0);
	assert_string_equal(buf, "/x/y.sock");
	unsetenv("FIRMANTE_SOCKET");
	setenv("XDG_RUNTIME_DIR", "/run/user/1000", 1);
	assert_int_equal(firmante_default_socket_path(buf, sizeof(buf)), 0);
	assert_string_equal(buf, "/run/user/1000/firmante/agent.sock");
	assert_int_equal(firmante_default_socket_path(buf, 10), FIRMANTE_E_CONFIG);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_unreachable),
		cmocka_unit_test_setup_teardown(test_ok_reply, setup, teardown),
		cmocka_unit_test_setup_teardown(test_problem_decoded, setup, teardown),
		cmocka_unit_test_setup_teardown(test_error_without_problem, setup, teardown),
		cmocka_unit_test_setup_teardown(test_sign_reply, setup, teardown),
		cmocka_unit_test_setup_teardown(test_sign_reply_incomplete, setup, teardown),
		cmocka_unit_test(test_default_socket_path),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}

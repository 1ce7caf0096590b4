/*
 * firmanted's HTTP/1.1 + JSON front end (agent/http.c) as a client sees
 * it: the real libmicrohttpd daemon of the agent listens on a Unix socket
 * in a private directory, with no PKCS#11 module loaded; each input is
 * written as the raw bytes of one connection (request line, headers,
 * body), then the client stops writing and reads the answer.
 * Properties: the agent answers or closes within ANSWER_TIMEOUT_MS (never
 * hangs on a half-closed connection), anything it sends starts with an
 * HTTP/1.x status line, a JSON reply carries a JSON body, and it keeps
 * serving (the next connection is answered).
 */
#include <errno.h>
#include <poll.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>

#include "agent.h"
#include "firmante/protocol.h"
#include "firmante/token.h"
#include "fuzz.h"

#define ANSWER_TIMEOUT_MS 20000
#define ANSWER_MAX (256u * 1024u)
/* The agent's body cap plus headroom: larger inputs test nothing new. */
#define INPUT_MAX (FIRMANTE_MAX_BODY + 64u * 1024u)

static struct agent_config g_cfg;
static struct agent g_agent;
static struct MHD_Daemon *g_httpd;
static char g_dir[64];

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	struct fp11_config p11 = { .module_paths = NULL, .n_module_paths = 0,
				   .use_p11kit_registered = false };
	char err[512];
	int fd;

	(void)argc;
	(void)argv;
	snprintf(g_dir, sizeof(g_dir), "/tmp/fuzz-agent-http.XXXXXX");
	if (!mkdtemp(g_dir))
		fuzz_fail("mkdtemp: %s", strerror(errno));
	setenv("XDG_RUNTIME_DIR", g_dir, 1);
	err[0] = '\0';
	if (agent_config_defaults(&g_cfg, err, sizeof(err)) != 0)
		fuzz_fail("agent defaults: %s", err);
	g_cfg.use_p11kit_modules = false;
	g_cfg.max_clients = 8;
	if (fp11_open(&p11, &g_agent.p11) != 0)
		fuzz_fail("fp11_open without modules failed");
	g_agent.cfg = &g_cfg;
	g_agent.started = time(NULL);
	if (agent_listen_unix(g_cfg.socket_path, 8, &fd, err, sizeof(err)) != 0)
		fuzz_fail("listen on %s: %s", g_cfg.socket_path, err);
	if (agent_http_start(&g_agent, fd, &g_httpd) != 0)
		fuzz_fail("the HTTP daemon did not start");
	return 0;
}

static int connect_agent(void)
{
	struct sockaddr_un sa;
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);

	if (fd < 0)
		fuzz_fail("socket: %s", strerror(errno));
	memset(&sa, 0, sizeof(sa));
	sa.sun_family = AF_UNIX;
	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", g_cfg.socket_path);
	for (int tries = 0; connect(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0; tries++) {
		/* The connection limit is reached while earlier connections
		 * are torn down: wait for a slot, but not forever. */
		if ((errno != EAGAIN && errno != ECONNREFUSED) || tries > 2000)
			fuzz_fail("connect: %s", strerror(errno));
		usleep(1000);
	}
	return fd;
}

/* Write @data while draining the answer (the agent may answer early and
 * stop reading). Returns the answer's length in @ans. */
static size_t exchange(int fd, const uint8_t *data, size_t size, char *ans, size_t ans_size)
{
	size_t sent = 0, got = 0;
	bool shut = false;

	for (;;) {
		struct pollfd p = { .fd = fd, .events = POLLIN };
		int n;

		if (!shut && sent == size) {
			shutdown(fd, SHUT_WR);
			shut = true;
		}
		if (!shut)
			p.events |= POLLOUT;
		n = poll(&p, 1, ANSWER_TIMEOUT_MS);
		if (n < 0 && errno == EINTR)
			continue;
		if (n == 0)
			fuzz_fail("the agent neither answered nor closed within %d ms (%zu of %zu bytes "
				  "sent, %zu received)",
				  ANSWER_TIMEOUT_MS, sent, size, got);
		if (p.revents & POLLIN) {
			char sink[4096];
			char *dst = got < ans_size - 1 ? ans + got : sink;
			size_t room = got < ans_size - 1 ? ans_size - 1 - got : sizeof(sink);
			ssize_t r = read(fd, dst, room);

			if (r == 0)
				break;
			if (r < 0) {
				if (errno == ECONNRESET)
					break;
				if (errno != EINTR && errno != EAGAIN)
					fuzz_fail("read: %s", strerror(errno));
			} else if (dst == ans + got) {
				got += (size_t)r;
			}
		} else if (p.revents & (POLLHUP | POLLERR)) {
			if (!(p.revents & POLLOUT) || shut)
				break;
		}
		if (!shut && (p.revents & POLLOUT)) {
			ssize_t w = send(fd, data + sent, size - sent, MSG_NOSIGNAL | MSG_DONTWAIT);

			if (w < 0 && (errno == EPIPE || errno == ECONNRESET)) {
				shut = true; /* the agent closed; read what it said */
				sent = size;
			} else if (w > 0) {
				sent += (size_t)w;
			}
		}
	}
	ans[got] = '\0';
	return got;
}

static void check_answer(const char *ans, size_t len)
{
	const char *body, *ctype;

	if (len == 0)
		return;
	if (len < 12 || strncmp(ans, "HTTP/1.", 7) != 0)
		fuzz_fail("the answer does not start with a status line: %.80s", ans);
	body = strstr(ans, "\r\n\r\n");
	ctype = strstr(ans, "Content-Type: application/");
	if (!body || !ctype || ctype > body || len >= ANSWER_MAX - 1)
		return;
	body += 4;
	if (*body) {
		json_error_t jerr;
		json_t *j = json_loads(body, JSON_DISABLE_EOF_CHECK, &jerr);

		if (!j || !json_is_object(j))
			fuzz_fail("a JSON answer whose body is not a JSON object: %.200s", body);
		if (strstr(ctype, "problem+json") && !json_is_string(json_object_get(j, "code")))
			fuzz_fail("a problem without a code: %.200s", body);
		json_decref(j);
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const char status[] = "GET /v1/status HTTP/1.1\r\nHost: localhost\r\n\r\n";
	static char ans[ANSWER_MAX];
	size_t len;
	int fd;

	if (size > INPUT_MAX)
		return 0;
	fd = connect_agent();
	len = exchange(fd, data, size, ans, sizeof(ans));
	close(fd);
	check_answer(ans, len);
	/* Still serving: a well-formed request is answered 200. */
	fd = connect_agent();
	len = exchange(fd, (const uint8_t *)status, sizeof(status) - 1, ans, sizeof(ans));
	close(fd);
	if (len < 12 || strncmp(ans + 9, "200", 3) != 0)
		fuzz_fail("GET /v1/status after that input: %.80s", ans);
	return 0;
}

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
 *
 * Built with FUZZ_BROWSER=1 (target agent_browser) it drives the browser
 * listener (agent_http_start_browser) instead, over TCP on 127.0.0.1, with
 * one paired origin (https://registro.uvc.edu.mx, token "a" x 64); inputs
 * write the listener's port as "@@@@@" (Host header), and the check
 * request is the paired page's GET /v1/status.
 */
#include <errno.h>
#include <poll.h>
#include <string.h>
#include <sys/socket.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>

#include "agent.h"
#include "firmante/protocol.h"
#include "firmante/token.h"
#include "firmante/util.h"
#include "fuzz.h"

#define ANSWER_TIMEOUT_MS 20000
#define ANSWER_MAX (256u * 1024u)
/* The agent's body cap plus headroom: larger inputs test nothing new. */
#define INPUT_MAX (FIRMANTE_MAX_BODY + 64u * 1024u)

static struct agent_config g_cfg;
static struct agent g_agent;
static struct MHD_Daemon *g_httpd;

#ifdef FUZZ_BROWSER
/* The browser listener's port is chosen at start; inputs write it as
 * "@@@@@" (ports from the kernel's ephemeral range have 5 digits). */
#define PORT_MARK "@@@@@"
static char g_port[6];
/* The page paired in the pairings file, and its token. */
#define PAIRED_ORIGIN "https://registro.uvc.edu.mx"
#define PAIRED_TOKEN "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
static struct MHD_Daemon *g_browserd;

static unsigned free_port(void)
{
	struct sockaddr_in sa;
	socklen_t len = sizeof(sa);
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

	memset(&sa, 0, sizeof(sa));
	sa.sin_family = AF_INET;
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (fd < 0 || bind(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0 ||
	    getsockname(fd, (struct sockaddr *)&sa, &len) != 0)
		fuzz_fail("no free loopback port: %s", strerror(errno));
	close(fd);
	return ntohs(sa.sin_port);
}

static void start_browser(void)
{
	char path[4096], line[256], hash[65], err[512];
	unsigned port;
	int n;

	for (port = free_port(); port < 10000 || port > 65535; port = free_port())
		;
	snprintf(g_port, sizeof(g_port), "%05u", port % 100000u);
	g_cfg.browser_port = port;
	if (fm_sha256_hex(PAIRED_TOKEN, 64, hash) != 0)
		fuzz_fail("sha256");
	n = snprintf(line, sizeof(line), "%s %s %lld\n", PAIRED_ORIGIN, hash, (long long)time(NULL));
	fuzz_private_path("pairings", path, sizeof(path));
	if (n < 0 || fuzz_write_file(path, (const uint8_t *)line, (size_t)n) != 0)
		fuzz_fail("cannot write %s", path);
	if (agent_pairings_open(path, &g_agent.pairings, err, sizeof(err)) != 0)
		fuzz_fail("pairings: %s", err);
	if (agent_http_start_browser(&g_agent, &g_browserd, err, sizeof(err)) != 0)
		fuzz_fail("the browser listener did not start: %s", err);
}
#endif

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	struct fp11_config p11 = { .module_paths = NULL, .n_module_paths = 0,
				   .use_p11kit_registered = false };
	char err[512];
	int fd;

	(void)argc;
	(void)argv;
	setenv("XDG_RUNTIME_DIR", fuzz_private_path("run", err, sizeof(err)), 1);
	if (mkdir(err, 0700) != 0)
		fuzz_fail("mkdir %s: %s", err, strerror(errno));
	err[0] = '\0';
	if (agent_config_defaults(&g_cfg, err, sizeof(err)) != 0)
		fuzz_fail("agent defaults: %s", err);
	g_cfg.use_p11kit_modules = false;
	g_cfg.max_clients = 8;
	/* A holder dialog (pairing) fails at once instead of waiting. */
	for (size_t i = 0; i < g_cfg.pinentry_argc; i++)
		free(g_cfg.pinentry_argv[i]);
	g_cfg.pinentry_argv[0] = strdup("/bin/false");
	g_cfg.pinentry_argv[1] = NULL;
	g_cfg.pinentry_argc = 1;
	if (!g_cfg.pinentry_argv[0])
		fuzz_fail("out of memory");
	if (fp11_open(&p11, &g_agent.p11) != 0)
		fuzz_fail("fp11_open without modules failed");
	g_agent.cfg = &g_cfg;
	g_agent.started = time(NULL);
	if (agent_listen_unix(g_cfg.socket_path, 8, &fd, err, sizeof(err)) != 0)
		fuzz_fail("listen on %s: %s", g_cfg.socket_path, err);
	if (agent_http_start(&g_agent, fd, &g_httpd) != 0)
		fuzz_fail("the HTTP daemon did not start");
#ifdef FUZZ_BROWSER
	start_browser();
#endif
	return 0;
}

#ifdef FUZZ_BROWSER
static int connect_agent(void)
{
	struct sockaddr_in sa;
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

	if (fd < 0)
		fuzz_fail("socket: %s", strerror(errno));
	memset(&sa, 0, sizeof(sa));
	sa.sin_family = AF_INET;
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	sa.sin_port = htons((uint16_t)g_cfg.browser_port);
	for (int tries = 0; connect(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0; tries++) {
		if ((errno != EAGAIN && errno != ECONNREFUSED) || tries > 2000)
			fuzz_fail("connect: %s", strerror(errno));
		usleep(1000);
	}
	return fd;
}
#else
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
#endif

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
		/* Only the first answer's own Content-Type line counts. */
		if (!strncmp(ctype + strlen("Content-Type: application/"), "problem+json", 12) &&
		    !json_is_string(json_object_get(j, "code")))
			fuzz_fail("a problem without a code: %.200s", body);
		json_decref(j);
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
#ifdef FUZZ_BROWSER
	static char status[512];
	uint8_t *copy;
#else
	static const char status[] = "GET /v1/status HTTP/1.1\r\nHost: localhost\r\n\r\n";
#endif
	static char ans[ANSWER_MAX];
	size_t len;
	int fd;

	if (size > INPUT_MAX)
		return 0;
	fd = connect_agent();
#ifdef FUZZ_BROWSER
	copy = malloc(size ? size : 1);
	if (!copy)
		fuzz_fail("out of memory");
	memcpy(copy, data, size);
	for (size_t i = 0; i + 5 <= size; i++)
		if (!memcmp(copy + i, PORT_MARK, 5))
			memcpy(copy + i, g_port, 5);
	len = exchange(fd, copy, size, ans, sizeof(ans));
	free(copy);
	snprintf(status, sizeof(status),
		 "GET /v1/status HTTP/1.1\r\nHost: 127.0.0.1:%s\r\nOrigin: %s\r\n"
		 "X-Firmante: 1\r\nAuthorization: Bearer %s\r\n\r\n",
		 g_port, PAIRED_ORIGIN, PAIRED_TOKEN);
#else
	len = exchange(fd, data, size, ans, sizeof(ans));
#endif
	close(fd);
	check_answer(ans, len);
	/* Still serving: a well-formed request is answered 200. */
	fd = connect_agent();
	len = exchange(fd, (const uint8_t *)status, strlen(status), ans, sizeof(ans));
	close(fd);
	if (len < 12 || strncmp(ans + 9, "200", 3) != 0)
		fuzz_fail("GET /v1/status after that input: %.80s", ans);
	return 0;
}

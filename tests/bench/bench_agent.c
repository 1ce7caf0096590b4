/*
 * bench-agent: one-at-a-time requests to firmanted, timed from the client.
 * Each --body FILE gets its own thread and its own kept-alive connection;
 * every thread sends its body --count times, waiting for each answer
 * before sending the next (HTTP/1.1, Content-Length bodies only).
 *
 *   bench-agent (--unix PATH | --tcp HOST:PORT) --body FILE [--body FILE...]
 *               [--path /v1/sign] [--header "Name: value"...] [--count N]
 *               [--warmup N] [--expect STATUS]
 *
 * A --header "Host: ..." replaces the default "Host: localhost".
 * Prints one JSON object on stdout:
 *   {"threads":T,"ops":total,"seconds":wall,"rate":ops/s,
 *    "p50_us":..,"p99_us":..,"mean_us":..,"max_us":..}
 * (percentiles over every request of every thread). Exit status: 0 done,
 * 1 a connection error or an answer other than --expect (default 200;
 * the first such answer is printed on stderr), 2 usage. Test tool only.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <getopt.h>
#include <netdb.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#define MAX_THREADS 8
#define MAX_HEADERS 8
#define MAX_COUNT 1000000UL
#define MAX_BODY (8 * 1024 * 1024)
#define MAX_ANSWER (1024 * 1024)

struct target {
	const char *unix_path;
	const char *tcp_host;
	const char *tcp_port;
	const char *path;
	const char *headers[MAX_HEADERS];
	size_t nheaders;
	long expect;
};

struct job {
	const struct target *t;
	const char *body_path;
	char *request;           /* full HTTP request bytes */
	size_t request_len;
	unsigned long count, warmup;
	double *lat_us;
	int rc;
	char err[512];
};

static double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int connect_target(const struct target *t)
{
	if (t->unix_path) {
		struct sockaddr_un sa = { .sun_family = AF_UNIX };
		if (strlen(t->unix_path) >= sizeof(sa.sun_path))
			return -1;
		memcpy(sa.sun_path, t->unix_path, strlen(t->unix_path) + 1);
		int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
		if (fd < 0)
			return -1;
		if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0) {
			close(fd);
			return -1;
		}
		return fd;
	}
	struct addrinfo hints = { .ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM };
	struct addrinfo *res = NULL;
	if (getaddrinfo(t->tcp_host, t->tcp_port, &hints, &res) != 0)
		return -1;
	int fd = -1;
	for (struct addrinfo *ai = res; ai; ai = ai->ai_next) {
		fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC, ai->ai_protocol);
		if (fd < 0)
			continue;
		if (connect(fd, ai->ai_addr, ai->ai_addrlen) == 0)
			break;
		close(fd);
		fd = -1;
	}
	freeaddrinfo(res);
	if (fd >= 0) {
		int one = 1;
		setsockopt(fd, IPPROTO_TCP, 1 /* TCP_NODELAY */, &one, sizeof(one));
	}
	return fd;
}

static int write_all(int fd, const char *p, size_t n)
{
	while (n > 0) {
		ssize_t w = send(fd, p, n, MSG_NOSIGNAL);
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			return -1;
		p += w;
		n -= (size_t)w;
	}
	return 0;
}

/* Reads one answer (headers + Content-Length body); returns the status. */
static long read_answer(int fd, char *buf, size_t cap, char *err, size_t errlen)
{
	size_t have = 0;
	char *eoh = NULL;
	while (!eoh) {
		if (have + 1 >= cap) {
			snprintf(err, errlen, "answer headers too long");
			return -1;
		}
		ssize_t r = recv(fd, buf + have, cap - 1 - have, 0);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0) {
			snprintf(err, errlen, "connection closed by the agent");
			return -1;
		}
		have += (size_t)r;
		buf[have] = '\0';
		eoh = strstr(buf, "\r\n\r\n");
	}
	long status = -1;
	if (strncmp(buf, "HTTP/1.1 ", 9) == 0)
		status = strtol(buf + 9, NULL, 10);
	size_t clen = 0;
	bool have_len = false;
	for (char *h = strstr(buf, "\r\n"); h && h < eoh; h = strstr(h + 2, "\r\n")) {
		if (strncasecmp(h + 2, "Content-Length:", 15) == 0) {
			clen = strtoul(h + 17, NULL, 10);
			have_len = true;
		}
	}
	if (!have_len || clen > cap) {
		snprintf(err, errlen, "answer without a usable Content-Length");
		return -1;
	}
	size_t hdr = (size_t)(eoh + 4 - buf);
	while (have < hdr + clen) {
		if (have + 1 >= cap) {
			snprintf(err, errlen, "answer too long");
			return -1;
		}
		ssize_t r = recv(fd, buf + have, cap - 1 - have, 0);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0) {
			snprintf(err, errlen, "connection closed in the middle of an answer");
			return -1;
		}
		have += (size_t)r;
	}
	buf[have] = '\0';
	if (have != hdr + clen) {
		snprintf(err, errlen, "more bytes than one answer (pipelining is not used)");
		return -1;
	}
	return status;
}

static void *run_job(void *arg)
{
	struct job *j = arg;
	char *buf = malloc(MAX_ANSWER + 1);
	int fd = -1;
	if (!buf) {
		snprintf(j->err, sizeof(j->err), "out of memory");
		j->rc = -1;
		goto out;
	}
	fd = connect_target(j->t);
	if (fd < 0) {
		snprintf(j->err, sizeof(j->err), "cannot connect: %s", strerror(errno));
		j->rc = -1;
		goto out;
	}
	for (unsigned long i = 0; i < j->warmup + j->count; i++) {
		double t0 = now_s();
		if (write_all(fd, j->request, j->request_len)) {
			snprintf(j->err, sizeof(j->err), "send: %s", strerror(errno));
			j->rc = -1;
			goto out;
		}
		long st = read_answer(fd, buf, MAX_ANSWER + 1, j->err, sizeof(j->err));
		double dt = (now_s() - t0) * 1e6;
		if (st < 0) {
			j->rc = -1;
			goto out;
		}
		if (st != j->t->expect) {
			char *body = strstr(buf, "\r\n\r\n");
			snprintf(j->err, sizeof(j->err), "HTTP %ld (expected %ld): %.400s", st,
				 j->t->expect, body ? body + 4 : "");
			j->rc = -1;
			goto out;
		}
		if (i >= j->warmup)
			j->lat_us[i - j->warmup] = dt;
	}
out:
	if (fd >= 0)
		close(fd);
	free(buf);
	return NULL;
}

static int build_request(struct job *j)
{
	FILE *f = fopen(j->body_path, "rb");
	if (!f)
		return -1;
	char *body = malloc(MAX_BODY + 1);
	size_t n = body ? fread(body, 1, MAX_BODY + 1, f) : 0;
	fclose(f);
	if (!body || n > MAX_BODY) {
		free(body);
		return -1;
	}
	size_t extra = 0;
	for (size_t i = 0; i < j->t->nheaders; i++)
		extra += strlen(j->t->headers[i]) + 2;
	size_t cap = n + extra + strlen(j->t->path) + 256;
	char *req = malloc(cap);
	if (!req) {
		free(body);
		return -1;
	}
	bool own_host = false;
	for (size_t i = 0; i < j->t->nheaders; i++)
		if (strncasecmp(j->t->headers[i], "Host:", 5) == 0)
			own_host = true;
	int off = snprintf(req, cap, "POST %s HTTP/1.1\r\n%s"
			   "Content-Type: application/json\r\nContent-Length: %zu\r\n",
			   j->t->path, own_host ? "" : "Host: localhost\r\n", n);
	for (size_t i = 0; i < j->t->nheaders; i++)
		off += snprintf(req + off, cap - (size_t)off, "%s\r\n", j->t->headers[i]);
	off += snprintf(req + off, cap - (size_t)off, "\r\n");
	memcpy(req + off, body, n);
	free(body);
	j->request = req;
	j->request_len = (size_t)off + n;
	return 0;
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return (x > y) - (x < y);
}

static double percentile(const double *sorted, size_t n, double p)
{
	if (n == 0)
		return 0;
	size_t i = (size_t)(p * (double)(n - 1) + 0.5);
	return sorted[i < n ? i : n - 1];
}

static int parse_ulong(const char *s, unsigned long max, unsigned long *out)
{
	char *end = NULL;
	errno = 0;
	unsigned long v = strtoul(s, &end, 10);
	if (errno || !end || *end || end == s || v > max)
		return -1;
	*out = v;
	return 0;
}

static void usage(FILE *o)
{
	fprintf(o,
		"Usage: bench-agent (--unix PATH | --tcp HOST:PORT) --body FILE [--body FILE...]\n"
		"                   [--path /v1/sign] [--header 'Name: value'...] [--count N]\n"
		"                   [--warmup N] [--expect STATUS]\n"
		"One thread and one kept-alive connection per --body; each sends its body\n"
		"--count times, one at a time. Prints JSON with rate and latency percentiles.\n"
		"Test tool only.\n");
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "unix", required_argument, NULL, 'u' },
		{ "tcp", required_argument, NULL, 't' },
		{ "body", required_argument, NULL, 'b' },
		{ "path", required_argument, NULL, 'P' },
		{ "header", required_argument, NULL, 'H' },
		{ "count", required_argument, NULL, 'n' },
		{ "warmup", required_argument, NULL, 'w' },
		{ "expect", required_argument, NULL, 'e' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	static struct target t = { .path = "/v1/sign", .expect = 200 };
	static struct job jobs[MAX_THREADS];
	static char hostbuf[256];
	size_t njobs = 0;
	unsigned long count = 100, warmup = 2, ul = 0;
	int c;
	while ((c = getopt_long(argc, argv, "u:t:b:P:H:n:w:e:h", opts, NULL)) != -1) {
		switch (c) {
		case 'u': t.unix_path = optarg; break;
		case 't': {
			const char *colon = strrchr(optarg, ':');
			if (!colon || (size_t)(colon - optarg) >= sizeof(hostbuf)) {
				fprintf(stderr, "bench-agent: --tcp HOST:PORT\n");
				return 2;
			}
			memcpy(hostbuf, optarg, (size_t)(colon - optarg));
			hostbuf[colon - optarg] = '\0';
			t.tcp_host = hostbuf;
			t.tcp_port = colon + 1;
			break;
		}
		case 'b':
			if (njobs >= MAX_THREADS) {
				fprintf(stderr, "bench-agent: at most %d --body options\n", MAX_THREADS);
				return 2;
			}
			jobs[njobs++].body_path = optarg;
			break;
		case 'P': t.path = optarg; break;
		case 'H':
			if (t.nheaders >= MAX_HEADERS || strpbrk(optarg, "\r\n")) {
				fprintf(stderr, "bench-agent: at most %d single-line --header options\n",
					MAX_HEADERS);
				return 2;
			}
			t.headers[t.nheaders++] = optarg;
			break;
		case 'n':
			if (parse_ulong(optarg, MAX_COUNT, &count) || count == 0) {
				fprintf(stderr, "bench-agent: --count 1..%lu\n", MAX_COUNT);
				return 2;
			}
			break;
		case 'w':
			if (parse_ulong(optarg, MAX_COUNT, &warmup)) {
				fprintf(stderr, "bench-agent: --warmup 0..%lu\n", MAX_COUNT);
				return 2;
			}
			break;
		case 'e':
			if (parse_ulong(optarg, 599, &ul) || ul < 100) {
				fprintf(stderr, "bench-agent: --expect an HTTP status\n");
				return 2;
			}
			t.expect = (long)ul;
			break;
		case 'h': usage(stdout); return 0;
		default: usage(stderr); return 2;
		}
	}
	if (!t.unix_path == !t.tcp_host || njobs == 0) {
		usage(stderr);
		return 2;
	}
	int rc = 1;
	double *all = NULL;
	for (size_t i = 0; i < njobs; i++) {
		jobs[i].t = &t;
		jobs[i].count = count;
		jobs[i].warmup = warmup;
		jobs[i].lat_us = calloc(count, sizeof(double));
		if (!jobs[i].lat_us || build_request(&jobs[i])) {
			fprintf(stderr, "bench-agent: cannot read %s (at most %d bytes)\n",
				jobs[i].body_path, MAX_BODY);
			goto out;
		}
	}
	pthread_t th[MAX_THREADS];
	size_t started = 0;
	double start = now_s();
	for (; started < njobs; started++)
		if (pthread_create(&th[started], NULL, run_job, &jobs[started]) != 0)
			break;
	for (size_t i = 0; i < started; i++)
		pthread_join(th[i], NULL);
	double wall = now_s() - start;
	if (started < njobs) {
		fprintf(stderr, "bench-agent: cannot start a thread\n");
		goto out;
	}
	for (size_t i = 0; i < njobs; i++) {
		if (jobs[i].rc) {
			fprintf(stderr, "bench-agent: %s: %s\n", jobs[i].body_path, jobs[i].err);
			goto out;
		}
	}
	size_t total = njobs * count;
	all = malloc(total * sizeof(double));
	if (!all)
		goto out;
	double sum = 0;
	for (size_t i = 0; i < njobs; i++)
		for (unsigned long k = 0; k < count; k++) {
			all[i * count + k] = jobs[i].lat_us[k];
			sum += jobs[i].lat_us[k];
		}
	qsort(all, total, sizeof(double), cmp_double);
	/* Throughput from the measured latencies of each thread (warm-up excluded):
	 * threads run side by side, so the rate is the sum of per-thread rates. */
	double rate = 0;
	for (size_t i = 0; i < njobs; i++) {
		double s = 0;
		for (unsigned long k = 0; k < count; k++)
			s += jobs[i].lat_us[k];
		rate += (double)count / (s / 1e6);
	}
	printf("{\"threads\":%zu,\"ops\":%zu,\"seconds\":%.6f,\"rate\":%.3f,\"p50_us\":%.1f,"
	       "\"p99_us\":%.1f,\"mean_us\":%.1f,\"max_us\":%.1f}\n",
	       njobs, total, wall, rate, percentile(all, total, 0.5), percentile(all, total, 0.99),
	       sum / (double)total, all[total - 1]);
	rc = 0;
out:
	for (size_t i = 0; i < njobs; i++) {
		free(jobs[i].lat_us);
		free(jobs[i].request);
	}
	free(all);
	return rc;
}

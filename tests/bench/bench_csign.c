/*
 * bench-csign: the token's own limit. A raw PKCS#11 C_SignInit/C_Sign loop
 * (CKM_SHA256_RSA_PKCS) in this process, no agent, no p11-kit proxy: the
 * module is dlopen'ed and called through its C_GetFunctionList table
 * (PKCS#11 v2.40 §5.2). One session and one login per token for the whole
 * run, so only the signature itself is timed.
 *
 *   bench-csign --module SO --pin-file FILE --key LABEL:IDHEX [--key ...]
 *               --data FILE [--count N] [--warmup N]
 *     Signs FILE's bytes N times per key; with several --key options one
 *     thread per key signs in parallel. Prints one JSON object on stdout:
 *     {"keys":K,"ops":total,"seconds":wall,"rate":ops/s,"cpu_s":process CPU,
 *      "per_key":[{"key":..,"ops":..,"seconds":..,"rate":..,
 *                  "p50_us":..,"p99_us":..,"mean_us":..}]}
 *
 *     With --session-per-op every signature opens a session, logs in, finds
 *     the key, signs, logs out and closes the session (what a signing layer
 *     that keeps no login between requests pays per signature).
 *
 *   bench-csign --module SO --pin-file FILE --key LABEL:IDHEX --sign-lines FILE
 *     Test-fixture helper: signs each line of FILE (without its LF) and
 *     prints the Base64 signature of each on its own line.
 *
 * Exit status: 0 done, 1 a PKCS#11 or file error (message on stderr),
 * 2 usage. This is a test tool; the PIN comes from a file of the test token.
 */
#include <dlfcn.h>
#include <errno.h>
#include <getopt.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#include <openssl/evp.h>
#include <p11-kit/pkcs11.h>

#define MAX_KEYS 8
#define MAX_COUNT 1000000UL
#define MAX_DATA (1024 * 1024)
#define MAX_LINE 65536
#define SIG_MAX 1024

struct key_job {
	const char *spec;        /* LABEL:IDHEX */
	char label[33];
	unsigned char id[64];
	size_t id_len;
	CK_SLOT_ID slot;
	CK_SESSION_HANDLE session;
	CK_OBJECT_HANDLE key;
	bool session_per_op;
	const char *pin;
	unsigned long count;
	unsigned long warmup;
	const unsigned char *data;
	size_t data_len;
	double *lat_us;          /* count entries */
	double seconds;
	int rc;
	char err[200];
};

static CK_FUNCTION_LIST_PTR p11;

static double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int hexval(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

static int parse_key_spec(struct key_job *k, const char *spec)
{
	const char *colon = strrchr(spec, ':');
	if (!colon || colon == spec || (size_t)(colon - spec) >= sizeof(k->label))
		return -1;
	memcpy(k->label, spec, (size_t)(colon - spec));
	k->label[colon - spec] = '\0';
	const char *h = colon + 1;
	size_t n = strlen(h);
	if (n == 0 || n % 2 || n / 2 > sizeof(k->id))
		return -1;
	for (size_t i = 0; i < n / 2; i++) {
		int hi = hexval(h[2 * i]), lo = hexval(h[2 * i + 1]);
		if (hi < 0 || lo < 0)
			return -1;
		k->id[i] = (unsigned char)(hi * 16 + lo);
	}
	k->id_len = n / 2;
	k->spec = spec;
	return 0;
}

static int read_small_file(const char *path, size_t max, unsigned char **out, size_t *len)
{
	FILE *f = fopen(path, "rb");
	if (!f)
		return -1;
	unsigned char *buf = malloc(max + 1);
	size_t n = buf ? fread(buf, 1, max + 1, f) : 0;
	int bad = !buf || ferror(f) || n > max;
	fclose(f);
	if (bad) {
		free(buf);
		return -1;
	}
	*out = buf;
	*len = n;
	return 0;
}

/* The slot whose token has @label (blank-padded to 32 in CK_TOKEN_INFO). */
static int find_slot(const char *label, CK_SLOT_ID *out)
{
	CK_ULONG n = 0;
	if (p11->C_GetSlotList(CK_TRUE, NULL, &n) != CKR_OK || n == 0 || n > 256)
		return -1;
	CK_SLOT_ID slots[256];
	if (p11->C_GetSlotList(CK_TRUE, slots, &n) != CKR_OK)
		return -1;
	for (CK_ULONG i = 0; i < n; i++) {
		CK_TOKEN_INFO ti;
		if (p11->C_GetTokenInfo(slots[i], &ti) != CKR_OK)
			continue;
		size_t l = sizeof(ti.label);
		while (l > 0 && ti.label[l - 1] == ' ')
			l--;
		if (l == strlen(label) && memcmp(ti.label, label, l) == 0) {
			*out = slots[i];
			return 0;
		}
	}
	return -1;
}

static int open_key(struct key_job *k, const char *pin)
{
	CK_RV rv;
	if (find_slot(k->label, &k->slot) != 0) {
		snprintf(k->err, sizeof(k->err), "no token labelled %s", k->label);
		return -1;
	}
	rv = p11->C_OpenSession(k->slot, CKF_SERIAL_SESSION | CKF_RW_SESSION, NULL, NULL, &k->session);
	if (rv != CKR_OK) {
		snprintf(k->err, sizeof(k->err), "C_OpenSession: 0x%lx", (unsigned long)rv);
		return -1;
	}
	rv = p11->C_Login(k->session, CKU_USER, (CK_UTF8CHAR_PTR)pin, strlen(pin));
	if (rv != CKR_OK && rv != CKR_USER_ALREADY_LOGGED_IN) {
		snprintf(k->err, sizeof(k->err), "C_Login: 0x%lx", (unsigned long)rv);
		return -1;
	}
	CK_OBJECT_CLASS cls = CKO_PRIVATE_KEY;
	CK_ATTRIBUTE tmpl[] = {
		{ CKA_CLASS, &cls, sizeof(cls) },
		{ CKA_ID, k->id, k->id_len },
	};
	CK_ULONG found = 0;
	if (p11->C_FindObjectsInit(k->session, tmpl, 2) != CKR_OK ||
	    p11->C_FindObjects(k->session, &k->key, 1, &found) != CKR_OK) {
		snprintf(k->err, sizeof(k->err), "C_FindObjects failed");
		return -1;
	}
	p11->C_FindObjectsFinal(k->session);
	if (found != 1) {
		snprintf(k->err, sizeof(k->err), "no private key with that CKA_ID on %s", k->label);
		return -1;
	}
	return 0;
}

static int sign_once(struct key_job *k, const unsigned char *data, size_t len,
		     unsigned char *sig, CK_ULONG *sig_len)
{
	CK_MECHANISM mech = { CKM_SHA256_RSA_PKCS, NULL, 0 };
	CK_RV rv = p11->C_SignInit(k->session, &mech, k->key);
	if (rv == CKR_OK)
		rv = p11->C_Sign(k->session, (CK_BYTE_PTR)data, len, sig, sig_len);
	if (rv != CKR_OK) {
		snprintf(k->err, sizeof(k->err), "C_Sign: 0x%lx", (unsigned long)rv);
		return -1;
	}
	return 0;
}

/* Session, login, key search, signature, logout, close: all per call. */
static int sign_with_session(struct key_job *k, unsigned char *sig, CK_ULONG *sig_len)
{
	p11->C_CloseSession(k->session);
	k->session = 0;
	if (open_key(k, k->pin))
		return -1;
	int rc = sign_once(k, k->data, k->data_len, sig, sig_len);
	p11->C_Logout(k->session);
	return rc;
}

static int one_op(struct key_job *k, unsigned char *sig, CK_ULONG *sig_len)
{
	if (k->session_per_op)
		return sign_with_session(k, sig, sig_len);
	return sign_once(k, k->data, k->data_len, sig, sig_len);
}

static void *run_key(void *arg)
{
	struct key_job *k = arg;
	unsigned char sig[SIG_MAX];
	for (unsigned long i = 0; i < k->warmup; i++) {
		CK_ULONG sl = sizeof(sig);
		if (one_op(k, sig, &sl)) {
			k->rc = -1;
			return NULL;
		}
	}
	double start = now_s();
	for (unsigned long i = 0; i < k->count; i++) {
		CK_ULONG sl = sizeof(sig);
		double t0 = now_s();
		if (one_op(k, sig, &sl)) {
			k->rc = -1;
			return NULL;
		}
		k->lat_us[i] = (now_s() - t0) * 1e6;
	}
	k->seconds = now_s() - start;
	return NULL;
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return (x > y) - (x < y);
}

static double percentile(const double *sorted, unsigned long n, double p)
{
	if (n == 0)
		return 0;
	unsigned long i = (unsigned long)(p * (double)(n - 1) + 0.5);
	return sorted[i < n ? i : n - 1];
}

static int sign_lines(struct key_job *k, const char *path)
{
	FILE *f = fopen(path, "rb");
	if (!f) {
		fprintf(stderr, "bench-csign: %s: %s\n", path, strerror(errno));
		return 1;
	}
	char *line = malloc(MAX_LINE);
	unsigned char sig[SIG_MAX];
	char b64[SIG_MAX * 2];
	int rc = 0;
	if (!line) {
		rc = 1;
		goto out;
	}
	while (fgets(line, MAX_LINE, f)) {
		size_t n = strlen(line);
		if (n > 0 && line[n - 1] == '\n')
			n--;
		else if (!feof(f)) {
			fprintf(stderr, "bench-csign: %s: a line is longer than %d bytes\n", path, MAX_LINE);
			rc = 1;
			goto out;
		}
		CK_ULONG sl = sizeof(sig);
		if (sign_once(k, (unsigned char *)line, n, sig, &sl)) {
			fprintf(stderr, "bench-csign: %s\n", k->err);
			rc = 1;
			goto out;
		}
		EVP_EncodeBlock((unsigned char *)b64, sig, (int)sl);
		puts(b64);
	}
out:
	free(line);
	fclose(f);
	return rc;
}

static void usage(FILE *o)
{
	fprintf(o,
		"Usage: bench-csign --module SO --pin-file FILE --key LABEL:IDHEX [--key ...]\n"
		"                   (--data FILE [--count N] [--warmup N] [--session-per-op]\n"
		"                    | --sign-lines FILE)\n"
		"Raw C_Sign (CKM_SHA256_RSA_PKCS) loop on a PKCS#11 module, one thread per key;\n"
		"prints JSON with rate and latency percentiles. --sign-lines signs each line\n"
		"of FILE and prints Base64 signatures (test fixtures). Test tool only.\n");
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

int main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "module", required_argument, NULL, 'm' },
		{ "pin-file", required_argument, NULL, 'p' },
		{ "key", required_argument, NULL, 'k' },
		{ "data", required_argument, NULL, 'd' },
		{ "count", required_argument, NULL, 'n' },
		{ "warmup", required_argument, NULL, 'w' },
		{ "sign-lines", required_argument, NULL, 's' },
		{ "session-per-op", no_argument, NULL, 'S' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	const char *module = NULL, *pin_file = NULL, *data_file = NULL, *lines_file = NULL;
	static struct key_job keys[MAX_KEYS];
	size_t nkeys = 0;
	unsigned long count = 200, warmup = 5;
	bool session_per_op = false;
	int c;
	while ((c = getopt_long(argc, argv, "m:p:k:d:n:w:s:Sh", opts, NULL)) != -1) {
		switch (c) {
		case 'm': module = optarg; break;
		case 'p': pin_file = optarg; break;
		case 'k':
			if (nkeys >= MAX_KEYS || parse_key_spec(&keys[nkeys], optarg)) {
				fprintf(stderr, "bench-csign: --key %s: expected LABEL:IDHEX (at most %d keys)\n",
					optarg, MAX_KEYS);
				return 2;
			}
			nkeys++;
			break;
		case 'd': data_file = optarg; break;
		case 'n':
			if (parse_ulong(optarg, MAX_COUNT, &count) || count == 0) {
				fprintf(stderr, "bench-csign: --count: 1..%lu\n", MAX_COUNT);
				return 2;
			}
			break;
		case 'w':
			if (parse_ulong(optarg, MAX_COUNT, &warmup)) {
				fprintf(stderr, "bench-csign: --warmup: 0..%lu\n", MAX_COUNT);
				return 2;
			}
			break;
		case 's': lines_file = optarg; break;
		case 'S': session_per_op = true; break;
		case 'h': usage(stdout); return 0;
		default: usage(stderr); return 2;
		}
	}
	if (!module || !pin_file || nkeys == 0 || (!data_file == !lines_file) ||
	    (lines_file && nkeys != 1)) {
		usage(stderr);
		return 2;
	}

	int rc = 1;
	void *dl = NULL;
	unsigned char *pinbuf = NULL, *data = NULL;
	size_t pin_len = 0, data_len = 0;
	char pin[256];
	bool initialized = false;

	if (read_small_file(pin_file, sizeof(pin) - 1, &pinbuf, &pin_len)) {
		fprintf(stderr, "bench-csign: cannot read the PIN file %s\n", pin_file);
		goto out;
	}
	while (pin_len > 0 && (pinbuf[pin_len - 1] == '\n' || pinbuf[pin_len - 1] == '\r'))
		pin_len--;
	memcpy(pin, pinbuf, pin_len);
	pin[pin_len] = '\0';
	if (data_file && read_small_file(data_file, MAX_DATA, &data, &data_len)) {
		fprintf(stderr, "bench-csign: cannot read %s (at most %d bytes)\n", data_file, MAX_DATA);
		goto out;
	}

	dl = dlopen(module, RTLD_NOW | RTLD_LOCAL);
	if (!dl) {
		fprintf(stderr, "bench-csign: %s\n", dlerror());
		goto out;
	}
	CK_C_GetFunctionList gfl = (CK_C_GetFunctionList)dlsym(dl, "C_GetFunctionList");
	if (!gfl || gfl(&p11) != CKR_OK) {
		fprintf(stderr, "bench-csign: %s has no usable C_GetFunctionList\n", module);
		goto out;
	}
	CK_C_INITIALIZE_ARGS ia = { .flags = CKF_OS_LOCKING_OK };
	if (p11->C_Initialize(&ia) != CKR_OK) {
		fprintf(stderr, "bench-csign: C_Initialize failed\n");
		goto out;
	}
	initialized = true;
	for (size_t i = 0; i < nkeys; i++) {
		if (open_key(&keys[i], pin)) {
			fprintf(stderr, "bench-csign: %s: %s\n", keys[i].spec, keys[i].err);
			goto out;
		}
	}

	if (lines_file) {
		rc = sign_lines(&keys[0], lines_file);
		goto out;
	}

	pthread_t th[MAX_KEYS];
	for (size_t i = 0; i < nkeys; i++) {
		keys[i].count = count;
		keys[i].warmup = warmup;
		keys[i].data = data;
		keys[i].data_len = data_len;
		keys[i].session_per_op = session_per_op;
		keys[i].pin = pin;
		keys[i].lat_us = calloc(count, sizeof(double));
		if (!keys[i].lat_us) {
			fprintf(stderr, "bench-csign: out of memory\n");
			goto out;
		}
	}
	double start = now_s();
	size_t started = 0;
	for (; started < nkeys; started++)
		if (pthread_create(&th[started], NULL, run_key, &keys[started]) != 0)
			break;
	for (size_t i = 0; i < started; i++)
		pthread_join(th[i], NULL);
	double wall = now_s() - start;
	if (started < nkeys) {
		fprintf(stderr, "bench-csign: cannot start a thread\n");
		goto out;
	}
	for (size_t i = 0; i < nkeys; i++) {
		if (keys[i].rc) {
			fprintf(stderr, "bench-csign: %s: %s\n", keys[i].spec, keys[i].err);
			goto out;
		}
	}
	struct rusage ru;
	getrusage(RUSAGE_SELF, &ru);
	printf("{\"keys\":%zu,\"ops\":%lu,\"seconds\":%.6f,\"rate\":%.3f,\"cpu_s\":%.6f,"
	       "\"per_key\":[",
	       nkeys, count * nkeys, wall, (double)(count * nkeys) / wall,
	       (double)ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6 +
		       (double)ru.ru_stime.tv_sec + ru.ru_stime.tv_usec / 1e6);
	for (size_t i = 0; i < nkeys; i++) {
		double sum = 0;
		for (unsigned long j = 0; j < count; j++)
			sum += keys[i].lat_us[j];
		qsort(keys[i].lat_us, count, sizeof(double), cmp_double);
		printf("%s{\"key\":\"%s\",\"ops\":%lu,\"seconds\":%.6f,\"rate\":%.3f,"
		       "\"p50_us\":%.1f,\"p99_us\":%.1f,\"mean_us\":%.1f}",
		       i ? "," : "", keys[i].spec, count, keys[i].seconds,
		       (double)count / keys[i].seconds, percentile(keys[i].lat_us, count, 0.50),
		       percentile(keys[i].lat_us, count, 0.99), sum / (double)count);
	}
	printf("]}\n");
	rc = 0;
out:
	for (size_t i = 0; i < nkeys; i++) {
		if (keys[i].session && p11)
			p11->C_CloseSession(keys[i].session);
		free(keys[i].lat_us);
	}
	if (initialized)
		p11->C_Finalize(NULL);
	/* The module stays loaded: some modules register atexit handlers. */
	(void)dl;
	if (pinbuf)
		OPENSSL_cleanse(pinbuf, pin_len);
	OPENSSL_cleanse(pin, sizeof(pin));
	free(pinbuf);
	free(data);
	return rc;
}

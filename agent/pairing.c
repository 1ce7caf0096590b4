/*
 * firmanted: paired browser origins. A page of an origin the holder paired
 * holds a random token; the agent keeps only its SHA-256, in a 0600 file
 * (one line per origin: "ORIGIN SHA256HEX CREATED"), rewritten atomically
 * on every change.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>
#include <openssl/crypto.h>
#include <openssl/rand.h>

#include "agent.h"
#include "firmante/protocol.h"
#include "firmante/util.h"

#define PAIRINGS_FILE_MAX (64u * 1024u)

struct pairing {
	char origin[AGENT_ORIGIN_MAX + 1];
	char hash[65];
	long long created;
};

struct agent_pairings {
	pthread_mutex_t mu;
	char path[AGENT_PATH_MAX];
	struct pairing p[AGENT_MAX_PAIRINGS];
	size_t n;
};

bool agent_origin_valid(const char *o)
{
	const char *host;
	size_t len = strlen(o), i;

	if (len == 0 || len > AGENT_ORIGIN_MAX)
		return false;
	if (!strncmp(o, "https://", 8))
		host = o + 8;
	else if (!strncmp(o, "http://", 7))
		host = o + 7;
	else
		return false;
	if (!*host || *host == ':' || *host == '.')
		return false;
	for (i = 0; host[i] && host[i] != ':'; i++) {
		char c = host[i];

		if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '.'))
			return false;
	}
	if (host[i] == ':') {
		size_t digits = strlen(host + i + 1);

		if (digits == 0 || digits > 5 || strspn(host + i + 1, "0123456789") != digits)
			return false;
	}
	return true;
}

/* "ORIGIN HASH CREATED": three fields separated by single blanks. */
static int split_line(const char *line, char *origin, size_t osize, char *hash, size_t hsize,
		      long long *created)
{
	const char *sp1 = strchr(line, ' '), *sp2;
	char *end = NULL;

	if (!sp1 || (size_t)(sp1 - line) >= osize)
		return -1;
	sp2 = strchr(sp1 + 1, ' ');
	if (!sp2 || (size_t)(sp2 - sp1 - 1) >= hsize)
		return -1;
	memcpy(origin, line, (size_t)(sp1 - line));
	origin[sp1 - line] = '\0';
	memcpy(hash, sp1 + 1, (size_t)(sp2 - sp1 - 1));
	hash[sp2 - sp1 - 1] = '\0';
	errno = 0;
	*created = strtoll(sp2 + 1, &end, 10);
	if (errno || end == sp2 + 1 || *end)
		return -1;
	return 0;
}

static int save(struct agent_pairings *ps)
{
	char *buf;
	size_t cap = ps->n * (AGENT_ORIGIN_MAX + 100) + 1, len = 0;
	int rc;

	buf = malloc(cap);
	if (!buf)
		return FIRMANTE_E_NOMEM;
	buf[0] = '\0';
	for (size_t i = 0; i < ps->n; i++) {
		int w = snprintf(buf + len, cap - len, "%s %s %lld\n", ps->p[i].origin,
				 ps->p[i].hash, ps->p[i].created);

		if (w < 0 || (size_t)w >= cap - len) {
			free(buf);
			return FIRMANTE_E_INTERNAL;
		}
		len += (size_t)w;
	}
	rc = fm_write_file_atomic(ps->path, buf, len, 0600);
	free(buf);
	return rc;
}

int agent_pairings_open(const char *path, struct agent_pairings **out, char *err, size_t err_size)
{
	struct agent_pairings *ps;
	struct stat sb;
	char *text = NULL, *line, *next;
	size_t len = 0;
	int rc = 0, lineno = 0;

	ps = calloc(1, sizeof(*ps));
	if (!ps)
		return FIRMANTE_E_NOMEM;
	pthread_mutex_init(&ps->mu, NULL);
	snprintf(ps->path, sizeof(ps->path), "%s", path);
	if (lstat(path, &sb) != 0) {
		if (errno == ENOENT)
			goto done;
		snprintf(err, err_size, "%s: %s", path, strerror(errno));
		rc = FIRMANTE_E_CONFIG;
		goto out;
	}
	if (!S_ISREG(sb.st_mode) || sb.st_uid != geteuid() || (sb.st_mode & 077)) {
		snprintf(err, err_size,
			 "paired-origins file %s must be a regular file of uid %lu with mode 0600",
			 path, (unsigned long)geteuid());
		rc = FIRMANTE_E_CONFIG;
		goto out;
	}
	rc = fm_read_file(path, PAIRINGS_FILE_MAX, &text, &len);
	if (rc) {
		snprintf(err, err_size, "%s cannot be read: %s", path, firmante_err_title(rc));
		rc = FIRMANTE_E_CONFIG;
		goto out;
	}
	for (line = text; line && *line; line = next) {
		struct pairing *p;
		char origin[AGENT_ORIGIN_MAX + 2], hash[66];
		long long created;

		next = strchr(line, '\n');
		if (next)
			*next++ = '\0';
		lineno++;
		if (!line[0])
			continue;
		if (ps->n == AGENT_MAX_PAIRINGS) {
			snprintf(err, err_size, "%s: more than %d paired origins", path,
				 AGENT_MAX_PAIRINGS);
			rc = FIRMANTE_E_CONFIG;
			goto out;
		}
		if (split_line(line, origin, sizeof(origin), hash, sizeof(hash), &created) != 0 ||
		    !agent_origin_valid(origin) || strlen(hash) != 64 ||
		    strspn(hash, "0123456789abcdef") != 64) {
			snprintf(err, err_size, "%s:%d: not an \"ORIGIN SHA256 CREATED\" line", path,
				 lineno);
			rc = FIRMANTE_E_CONFIG;
			goto out;
		}
		p = &ps->p[ps->n++];
		snprintf(p->origin, sizeof(p->origin), "%.200s", origin);
		memcpy(p->hash, hash, 65);
		p->created = created;
	}
done:
	*out = ps;
	ps = NULL;
out:
	free(text);
	agent_pairings_free(ps);
	return rc;
}

void agent_pairings_free(struct agent_pairings *ps)
{
	if (!ps)
		return;
	pthread_mutex_destroy(&ps->mu);
	fm_wipe(ps->p, sizeof(ps->p));
	free(ps);
}

static struct pairing *find(struct agent_pairings *ps, const char *origin)
{
	for (size_t i = 0; i < ps->n; i++)
		if (!strcmp(ps->p[i].origin, origin))
			return &ps->p[i];
	return NULL;
}

bool agent_pairings_has(struct agent_pairings *ps, const char *origin)
{
	bool r;

	if (!ps)
		return false;
	pthread_mutex_lock(&ps->mu);
	r = find(ps, origin) != NULL;
	pthread_mutex_unlock(&ps->mu);
	return r;
}

bool agent_pairings_check(struct agent_pairings *ps, const char *origin, const char *token)
{
	struct pairing *p;
	char hash[65];
	bool r = false;

	if (!ps || !token || strlen(token) != 64)
		return false;
	if (fm_sha256_hex(token, 64, hash) != 0)
		return false;
	pthread_mutex_lock(&ps->mu);
	p = find(ps, origin);
	if (p)
		r = CRYPTO_memcmp(p->hash, hash, 64) == 0;
	pthread_mutex_unlock(&ps->mu);
	return r;
}

int agent_pairings_add(struct agent_pairings *ps, const char *origin, char token[65])
{
	struct pairing *p, old;
	unsigned char raw[32];
	static const char digits[] = "0123456789abcdef";
	char tok[65], hash[65];
	bool existed;
	int rc;

	if (!agent_origin_valid(origin))
		return FIRMANTE_E_BAD_REQUEST;
	if (RAND_bytes(raw, sizeof(raw)) != 1)
		return FIRMANTE_E_INTERNAL;
	for (size_t i = 0; i < sizeof(raw); i++) {
		tok[2 * i] = digits[raw[i] >> 4];
		tok[2 * i + 1] = digits[raw[i] & 15];
	}
	tok[64] = '\0';
	fm_wipe(raw, sizeof(raw));
	rc = fm_sha256_hex(tok, 64, hash);
	if (rc)
		goto out;
	pthread_mutex_lock(&ps->mu);
	p = find(ps, origin);
	existed = p != NULL;
	if (!p) {
		if (ps->n == AGENT_MAX_PAIRINGS) {
			pthread_mutex_unlock(&ps->mu);
			rc = FIRMANTE_E_INVALID;
			goto out;
		}
		p = &ps->p[ps->n++];
	}
	old = *p;
	snprintf(p->origin, sizeof(p->origin), "%s", origin);
	memcpy(p->hash, hash, 65);
	p->created = (long long)time(NULL);
	rc = save(ps);
	if (rc) {
		if (existed)
			*p = old;
		else
			ps->n--;
	}
	pthread_mutex_unlock(&ps->mu);
	if (!rc)
		memcpy(token, tok, 65);
out:
	fm_wipe(tok, sizeof(tok));
	return rc;
}

int agent_pairings_revoke(struct agent_pairings *ps, const char *origin)
{
	struct pairing *p, old;
	size_t idx;
	int rc;

	pthread_mutex_lock(&ps->mu);
	p = find(ps, origin);
	if (!p) {
		pthread_mutex_unlock(&ps->mu);
		return FIRMANTE_E_NOT_FOUND;
	}
	idx = (size_t)(p - ps->p);
	old = *p;
	memmove(&ps->p[idx], &ps->p[idx + 1], (ps->n - idx - 1) * sizeof(ps->p[0]));
	ps->n--;
	rc = save(ps);
	if (rc) {
		memmove(&ps->p[idx + 1], &ps->p[idx], (ps->n - idx) * sizeof(ps->p[0]));
		ps->p[idx] = old;
		ps->n++;
	}
	pthread_mutex_unlock(&ps->mu);
	return rc;
}

json_t *agent_pairings_json(struct agent_pairings *ps)
{
	json_t *arr = json_array();
	char stamp[32];

	if (!arr)
		return NULL;
	if (!ps)
		return arr;
	pthread_mutex_lock(&ps->mu);
	for (size_t i = 0; i < ps->n; i++)
		json_array_append_new(arr, json_pack("{s:s, s:s}", "origin", ps->p[i].origin,
						     "paired", fm_time_iso8601((time_t)ps->p[i].created,
									      stamp, sizeof(stamp))));
	pthread_mutex_unlock(&ps->mu);
	return arr;
}

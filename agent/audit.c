/*
 * firmanted: the audit log. Append-only JSON lines; each record holds its
 * sequence number and the SHA-256 of the previous line, so that an edited,
 * removed or reordered line breaks the chain (`firmante audit verify`).
 * Each record is written with one write(2) on an O_APPEND descriptor and
 * made durable with fdatasync(2) before the request is answered. Records
 * share an fdatasync when they can: one covers every record written
 * before it, also other threads' (group commit), and a batch appends
 * several records before one sync, still before any of their results
 * leave the agent (agent_audit_append_deferred, agent_audit_sync).
 * A small "head" file beside the log (<log>.head: last sequence number
 * and hash) lets the verifier notice lines cut off at the end; it is
 * rewritten in place without a sync of its own (docs/security.md: it is
 * advisory, checked against the log, and never ahead of a durable log).
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>

#include "agent.h"
#include "firmante/protocol.h"
#include "firmante/util.h"

/* The longest line the agent reads back (the last one, at start). */
#define AUDIT_LINE_MAX (64u * 1024u)

struct agent_audit {
	pthread_mutex_t mu;
	int fd;
	char path[AGENT_PATH_MAX];
	char head_path[AGENT_PATH_MAX + 8];
	unsigned long long seq;  /* of the last record written */
	char prev[65];           /* SHA-256 (hex) of the last line */
	int head_fd;             /* <log>.head, opened at the first record */
	off_t known_size;        /* log size after our last read or write, -1: unknown */
	/* Group commit: one fdatasync covers every record written before it,
	 * also other threads'. Guarded by sync_mu, taken before mu when both
	 * are held; head_fd belongs to it too. */
	pthread_mutex_t sync_mu;
	unsigned long long synced_seq; /* records up to this seq are durable */
};

static const char ZERO_HASH[65] =
	"0000000000000000000000000000000000000000000000000000000000000000";

/* mkdir -p of the directories above @path, mode 0700 for new ones. */
static int make_parents(const char *path, char *err, size_t err_size)
{
	char dir[AGENT_PATH_MAX];
	size_t n = strlen(path);

	if (n >= sizeof(dir))
		return FIRMANTE_E_CONFIG;
	memcpy(dir, path, n + 1);
	for (char *p = dir + 1; *p; p++) {
		if (*p != '/')
			continue;
		*p = '\0';
		if (mkdir(dir, 0700) != 0 && errno != EEXIST) {
			snprintf(err, err_size, "cannot create %s: %s", dir, strerror(errno));
			return FIRMANTE_E_CONFIG;
		}
		*p = '/';
	}
	return 0;
}

/* Read the last line of the open log: sets a->seq and a->prev. */
static int read_tail(struct agent_audit *a, char *err, size_t err_size)
{
	struct stat sb;
	char *buf = NULL, *start;
	size_t want;
	ssize_t got;
	json_t *o = NULL;
	json_error_t jerr;
	int rc = 0;

	if (fstat(a->fd, &sb) != 0) {
		snprintf(err, err_size, "%s: %s", a->path, strerror(errno));
		return FIRMANTE_E_IO;
	}
	if (!S_ISREG(sb.st_mode)) {
		snprintf(err, err_size, "audit log %s is not a regular file", a->path);
		return FIRMANTE_E_CONFIG;
	}
	if (sb.st_uid != geteuid() || (sb.st_mode & 077)) {
		snprintf(err, err_size,
			 "audit log %s must belong to uid %lu and have mode 0600 (it has uid %lu, mode %04o)",
			 a->path, (unsigned long)geteuid(), (unsigned long)sb.st_uid,
			 (unsigned)(sb.st_mode & 07777));
		return FIRMANTE_E_CONFIG;
	}
	if (sb.st_size == 0) {
		a->seq = 0;
		memcpy(a->prev, ZERO_HASH, sizeof(a->prev));
		a->known_size = 0;
		return 0;
	}
	want = (size_t)sb.st_size < AUDIT_LINE_MAX + 1 ? (size_t)sb.st_size : AUDIT_LINE_MAX + 1;
	buf = malloc(want + 1);
	if (!buf)
		return FIRMANTE_E_NOMEM;
	got = pread(a->fd, buf, want, sb.st_size - (off_t)want);
	if (got != (ssize_t)want) {
		snprintf(err, err_size, "%s: cannot read its last record", a->path);
		rc = FIRMANTE_E_IO;
		goto out;
	}
	buf[want] = '\0';
	if (buf[want - 1] != '\n') {
		snprintf(err, err_size,
			 "audit log %s ends in an unfinished line; check it with \"firmante audit "
			 "verify\" and move it aside before starting the agent", a->path);
		rc = FIRMANTE_E_CONFIG;
		goto out;
	}
	buf[want - 1] = '\0';
	start = strrchr(buf, '\n');
	if (start)
		start++;
	else if ((size_t)sb.st_size == want)
		start = buf;
	else {
		snprintf(err, err_size, "audit log %s: its last line is longer than %u bytes",
			 a->path, AUDIT_LINE_MAX);
		rc = FIRMANTE_E_CONFIG;
		goto out;
	}
	o = json_loads(start, 0, &jerr);
	if (!o || !json_is_integer(json_object_get(o, "seq")) ||
	    json_integer_value(json_object_get(o, "seq")) < 1) {
		snprintf(err, err_size,
			 "audit log %s: its last line is not an audit record; check it with "
			 "\"firmante audit verify\"", a->path);
		rc = FIRMANTE_E_CONFIG;
		goto out;
	}
	a->seq = (unsigned long long)json_integer_value(json_object_get(o, "seq"));
	rc = fm_sha256_hex(start, strlen(start), a->prev);
	if (rc == 0)
		a->known_size = sb.st_size;
out:
	json_decref(o);
	free(buf);
	return rc;
}

int agent_audit_open(const char *path, struct agent_audit **out, char *err, size_t err_size)
{
	struct agent_audit *a;
	int rc;

	if (path[0] != '/' || strlen(path) >= AGENT_PATH_MAX) {
		snprintf(err, err_size, "audit-log: must be an absolute path shorter than %d bytes",
			 AGENT_PATH_MAX);
		return FIRMANTE_E_CONFIG;
	}
	a = calloc(1, sizeof(*a));
	if (!a)
		return FIRMANTE_E_NOMEM;
	a->fd = -1;
	a->head_fd = -1;
	a->known_size = -1;
	pthread_mutex_init(&a->mu, NULL);
	pthread_mutex_init(&a->sync_mu, NULL);
	snprintf(a->path, sizeof(a->path), "%s", path);
	snprintf(a->head_path, sizeof(a->head_path), "%s.head", path);
	rc = make_parents(path, err, err_size);
	if (rc)
		goto out;
	a->fd = open(path, O_RDWR | O_APPEND | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
	if (a->fd < 0) {
		snprintf(err, err_size, "cannot open the audit log %s: %s", path, strerror(errno));
		rc = FIRMANTE_E_CONFIG;
		goto out;
	}
	rc = read_tail(a, err, err_size);
	if (rc)
		goto out;
	*out = a;
	a = NULL;
out:
	agent_audit_close(a);
	return rc;
}

void agent_audit_close(struct agent_audit *a)
{
	if (!a)
		return;
	if (a->fd >= 0)
		close(a->fd);
	if (a->head_fd >= 0)
		close(a->head_fd);
	pthread_mutex_destroy(&a->sync_mu);
	pthread_mutex_destroy(&a->mu);
	free(a);
}

const char *agent_audit_path(const struct agent_audit *a)
{
	return a ? a->path : "";
}

static void set_str(json_t *o, const char *k, const char *v)
{
	if (v && v[0])
		json_object_set_new(o, k, json_string(v));
}

/*
 * <log>.head: "SEQ HASH\n" of the last record, SEQ zero-padded to 20
 * digits so that every head has the same 86 bytes: rewritten in place with
 * one pwrite(2) at offset 0 on a descriptor kept open (one sector: a crash
 * leaves the old or the new head). No fsync: a crash may leave an older
 * head, but never one ahead of the durable log, since it is written after
 * the log's own fdatasync. Failures are logged, not fatal (the log is the
 * record; docs/security.md).
 */
#define HEAD_LEN 86
static void write_head(struct agent_audit *a, unsigned long long seq, const char *hash)
{
	char head[HEAD_LEN + 1];
	int n = snprintf(head, sizeof(head), "%020llu %s\n", seq, hash);
	bool ok = n == HEAD_LEN;

	if (ok && a->head_fd < 0) {
		a->head_fd = open(a->head_path, O_WRONLY | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
		/* A head of another length (an older agent's) is cut to ours. */
		ok = a->head_fd >= 0 && ftruncate(a->head_fd, HEAD_LEN) == 0;
	}
	if (ok)
		ok = pwrite(a->head_fd, head, HEAD_LEN, 0) == HEAD_LEN;
	if (!ok) {
		agent_log("audit log %s: the head file could not be written", a->path);
		if (a->head_fd >= 0)
			close(a->head_fd);
		a->head_fd = -1;
	}
}

/*
 * Make the records up to @upto durable: nothing when an fdatasync that
 * began after they were written has already succeeded (another thread's);
 * else one fdatasync for every record written so far, then the head file.
 * Appends go on meanwhile (a->mu is not held during the fdatasync).
 */
static int sync_upto(struct agent_audit *a, unsigned long long upto)
{
	unsigned long long target;
	char hash[65];
	int rc = 0;

	pthread_mutex_lock(&a->sync_mu);
	if (a->synced_seq >= upto)
		goto out;
	pthread_mutex_lock(&a->mu);
	target = a->seq;
	memcpy(hash, a->prev, sizeof(hash));
	pthread_mutex_unlock(&a->mu);
	if (fdatasync(a->fd) != 0) {
		agent_log("audit log %s: fdatasync failed: %s", a->path, strerror(errno));
		rc = FIRMANTE_E_IO;
		goto out;
	}
	a->synced_seq = target;
	write_head(a, target, hash);
out:
	pthread_mutex_unlock(&a->sync_mu);
	return rc;
}

int agent_audit_sync(struct agent_audit *a)
{
	unsigned long long upto;

	if (!a)
		return 0;
	pthread_mutex_lock(&a->mu);
	upto = a->seq;
	pthread_mutex_unlock(&a->mu);
	return sync_upto(a, upto);
}

static int append(struct agent_audit *a, const struct agent_audit_record *r, bool defer);

int agent_audit_append(struct agent_audit *a, const struct agent_audit_record *r)
{
	return append(a, r, false);
}

int agent_audit_append_deferred(struct agent_audit *a, const struct agent_audit_record *r)
{
	return append(a, r, true);
}

static int append(struct agent_audit *a, const struct agent_audit_record *r, bool defer)
{
	json_t *o = NULL, *caller = NULL;
	char *text = NULL, stamp[32], hash[65], err[512];
	struct tm tm;
	struct stat sb;
	time_t now = time(NULL);
	size_t len;
	ssize_t w;
	int rc = 0;
	unsigned long long mine = 0;
	bool locked = false, flocked = false;

	if (!a)
		return 0;
	gmtime_r(&now, &tm);
	strftime(stamp, sizeof(stamp), "%Y-%m-%dT%H:%M:%SZ", &tm);
	o = json_object();
	caller = json_object();
	if (!o || !caller) {
		rc = FIRMANTE_E_NOMEM;
		goto out;
	}
	if (r->caller && r->caller->origin[0]) {
		json_object_set_new(caller, "origin", json_string(r->caller->origin));
	} else if (r->caller) {
		json_object_set_new(caller, "uid", json_integer((json_int_t)r->caller->uid));
		json_object_set_new(caller, "pid", json_integer((json_int_t)r->caller->pid));
		json_object_set_new(caller, "exe", json_string(r->caller->exe));
	}
	pthread_mutex_lock(&a->mu);
	locked = true;
	/* Another agent of the same user may share the log: take the file
	 * lock and continue the chain from the line really last on disk. */
	if (flock(a->fd, LOCK_EX) != 0) {
		rc = FIRMANTE_E_IO;
		goto out;
	}
	flocked = true;
	/* Unchanged since our last record (same size): our chain state is
	 * the file's. Else re-read the last line and its owner and mode. */
	if (a->known_size < 0 || fstat(a->fd, &sb) != 0 || sb.st_size != a->known_size) {
		a->known_size = -1;
		rc = read_tail(a, err, sizeof(err));
		if (rc) {
			agent_log("%s", err);
			goto out;
		}
	}
	json_object_set_new(o, "seq", json_integer((json_int_t)(a->seq + 1)));
	json_object_set_new(o, "time", json_string(stamp));
	json_object_set_new(o, "event", json_string(r->event ? r->event : "sign"));
	json_object_set(o, "caller", caller);
	set_str(o, "policy", r->policy);
	set_str(o, "key", r->key);
	set_str(o, "noCertificado", r->no_certificado);
	set_str(o, "folioControl", r->folio_control);
	set_str(o, "cadenaSha256", r->cadena_sha256);
	set_str(o, "batch", r->batch);
	set_str(o, "origin", r->origin);
	json_object_set_new(o, "decision", json_string(r->decision ? r->decision : "none"));
	json_object_set_new(o, "result", json_string(r->result ? r->result : "none"));
	json_object_set_new(o, "prev", json_string(a->prev));
	text = json_dumps(o, JSON_COMPACT | JSON_ENSURE_ASCII | JSON_PRESERVE_ORDER);
	if (!text) {
		rc = FIRMANTE_E_NOMEM;
		goto out;
	}
	len = strlen(text);
	if (len > AUDIT_LINE_MAX - 1) {
		rc = FIRMANTE_E_INTERNAL;
		goto out;
	}
	rc = fm_sha256_hex(text, len, hash);
	if (rc)
		goto out;
	text[len] = '\n'; /* json_dumps' NUL becomes the line end */
	w = write(a->fd, text, len + 1);
	if (w != (ssize_t)(len + 1)) {
		agent_log("audit log %s: write failed: %s", a->path, strerror(errno));
		a->known_size = -1;
		rc = FIRMANTE_E_IO;
		goto out;
	}
	a->seq++;
	memcpy(a->prev, hash, sizeof(a->prev));
	a->known_size = a->known_size >= 0 ? a->known_size + (off_t)(len + 1) : -1;
	mine = a->seq;
out:
	if (flocked)
		flock(a->fd, LOCK_UN);
	if (locked)
		pthread_mutex_unlock(&a->mu);
	if (rc == 0 && mine && !defer)
		rc = sync_upto(a, mine);
	free(text);
	json_decref(caller);
	json_decref(o);
	return rc;
}

int agent_audit_default_path(char *buf, size_t size)
{
	const char *xdg = getenv("XDG_STATE_HOME");
	const char *home = getenv("HOME");
	int n;

	if (xdg && xdg[0] == '/')
		n = snprintf(buf, size, "%s/firmante/audit.log", xdg);
	else if (home && home[0] == '/')
		n = snprintf(buf, size, "%s/.local/state/firmante/audit.log", home);
	else
		return FIRMANTE_E_CONFIG;
	if (n < 0 || (size_t)n >= size)
		return FIRMANTE_E_CONFIG;
	return 0;
}

int agent_audit_count_signed_today(const char *path, const char *policy, unsigned long *out)
{
	FILE *f;
	char *line = NULL, today[16], stamp[16];
	size_t cap = 0;
	ssize_t n;
	unsigned long count = 0;
	time_t now = time(NULL);
	struct tm tm;

	gmtime_r(&now, &tm);
	strftime(today, sizeof(today), "%Y-%m-%d", &tm);
	f = fopen(path, "re");
	if (!f) {
		if (errno == ENOENT) {
			*out = 0;
			return 0;
		}
		return FIRMANTE_E_IO;
	}
	while ((n = getline(&line, &cap, f)) > 0) {
		json_t *o;
		const char *t, *p, *res;

		if ((size_t)n > AUDIT_LINE_MAX)
			continue;
		o = json_loads(line, 0, NULL);
		if (!o)
			continue;
		t = json_string_value(json_object_get(o, "time"));
		p = json_string_value(json_object_get(o, "policy"));
		res = json_string_value(json_object_get(o, "result"));
		if (t && p && res && !strcmp(p, policy) && !strcmp(res, "signed")) {
			snprintf(stamp, sizeof(stamp), "%.10s", t);
			if (!strcmp(stamp, today))
				count++;
		}
		json_decref(o);
	}
	free(line);
	fclose(f);
	*out = count;
	return 0;
}

/*
 * firmanted: the caller policy file (INI, libinih). One section per caller:
 *
 *   [caller nightly]
 *   uid = 1001
 *   exe = /usr/bin/titulos
 *   mode = unattended          ; or interactive
 *   daily-cap = 200            ; signatures per UTC day
 *   key = 30001000000300023685 ; noCertificado allowed (repeatable)
 *   pin-file = /etc/firmante/rectoria.pin   ; or:
 *   pin-credential = rectoria-pin           ; $CREDENTIALS_DIRECTORY/<name>
 *
 * A caller that matches no section, and every browser origin, is
 * interactive: each signature waits for the holder.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <ini.h>

#include "agent.h"
#include "firmante/protocol.h"
#include "firmante/util.h"

struct agent_policy_set {
	pthread_mutex_t mu;
	struct agent_policy pol[AGENT_MAX_POLICIES];
	size_t n;
	char audit_path[AGENT_PATH_MAX];
};

struct pstate {
	struct agent_policy_set *set;
	const char *path;
	int rc;
	char msg[256];
	char section[80];
};

static int pol_parse_ulong(const char *v, unsigned long max, unsigned long *out)
{
	char *end = NULL;
	unsigned long long n;

	if (!v[0] || v[0] == '-')
		return FIRMANTE_E_CONFIG;
	errno = 0;
	n = strtoull(v, &end, 10);
	if (errno || *end || n > max)
		return FIRMANTE_E_CONFIG;
	*out = (unsigned long)n;
	return 0;
}

static int pol_key(struct pstate *st, struct agent_policy *p, const char *name, const char *value)
{
	unsigned long n;

	if (!strcmp(name, "uid")) {
		if (pol_parse_ulong(value, 0xfffffffeUL, &n)) {
			snprintf(st->msg, sizeof(st->msg), "uid: expected a number");
			return FIRMANTE_E_CONFIG;
		}
		p->uid = (uid_t)n;
		p->uid_set = true;
	} else if (!strcmp(name, "exe")) {
		if (value[0] != '/' || strlen(value) >= sizeof(p->exe)) {
			snprintf(st->msg, sizeof(st->msg), "exe: expected an absolute path");
			return FIRMANTE_E_CONFIG;
		}
		snprintf(p->exe, sizeof(p->exe), "%s", value);
	} else if (!strcmp(name, "mode")) {
		if (!strcmp(value, "unattended"))
			p->unattended = true;
		else if (!strcmp(value, "interactive"))
			p->unattended = false;
		else {
			snprintf(st->msg, sizeof(st->msg), "mode: expected interactive or unattended");
			return FIRMANTE_E_CONFIG;
		}
	} else if (!strcmp(name, "daily-cap")) {
		if (pol_parse_ulong(value, AGENT_MAX_DAILY_CAP, &n) || n == 0) {
			snprintf(st->msg, sizeof(st->msg), "daily-cap: expected a number from 1 to %d",
				 AGENT_MAX_DAILY_CAP);
			return FIRMANTE_E_CONFIG;
		}
		p->daily_cap = n;
	} else if (!strcmp(name, "key")) {
		size_t len = strlen(value);

		if (p->n_keys == AGENT_MAX_POLICY_KEYS) {
			snprintf(st->msg, sizeof(st->msg), "key: more than %d keys",
				 AGENT_MAX_POLICY_KEYS);
			return FIRMANTE_E_CONFIG;
		}
		if (len != 20 || strspn(value, "0123456789") != 20) {
			snprintf(st->msg, sizeof(st->msg),
				 "key: expected the 20-digit noCertificado of the signer's certificate");
			return FIRMANTE_E_CONFIG;
		}
		memcpy(p->keys[p->n_keys++], value, 21);
	} else if (!strcmp(name, "pin-file")) {
		if (value[0] != '/' || strlen(value) >= sizeof(p->pin_file)) {
			snprintf(st->msg, sizeof(st->msg), "pin-file: expected an absolute path");
			return FIRMANTE_E_CONFIG;
		}
		snprintf(p->pin_file, sizeof(p->pin_file), "%s", value);
	} else if (!strcmp(name, "pin-credential")) {
		if (!value[0] || strchr(value, '/') || strlen(value) >= sizeof(p->pin_credential) ||
		    !strcmp(value, ".") || !strcmp(value, "..")) {
			snprintf(st->msg, sizeof(st->msg),
				 "pin-credential: expected a systemd credential name (no '/')");
			return FIRMANTE_E_CONFIG;
		}
		snprintf(p->pin_credential, sizeof(p->pin_credential), "%s", value);
	} else {
		snprintf(st->msg, sizeof(st->msg), "unknown key \"%s\"", name);
		return FIRMANTE_E_CONFIG;
	}
	return 0;
}

static int pol_cb(void *user, const char *section, const char *name, const char *value)
{
	struct pstate *st = user;
	struct agent_policy *p;

	if (st->rc)
		return 0;
	if (strncmp(section, "caller ", 7) != 0 || !section[7]) {
		snprintf(st->msg, sizeof(st->msg),
			 "unknown section [%.60s] (expected [caller NAME])", section);
		st->rc = FIRMANTE_E_CONFIG;
		return 0;
	}
	if (strcmp(section, st->section) != 0) {
		if (st->set->n == AGENT_MAX_POLICIES) {
			snprintf(st->msg, sizeof(st->msg), "more than %d callers", AGENT_MAX_POLICIES);
			st->rc = FIRMANTE_E_CONFIG;
			return 0;
		}
		for (size_t i = 0; i < st->set->n; i++) {
			if (!strcmp(st->set->pol[i].name, section + 7)) {
				snprintf(st->msg, sizeof(st->msg), "[%.60s] appears twice", section);
				st->rc = FIRMANTE_E_CONFIG;
				return 0;
			}
		}
		p = &st->set->pol[st->set->n++];
		memset(p, 0, sizeof(*p));
		snprintf(p->name, sizeof(p->name), "%s", section + 7);
		snprintf(st->section, sizeof(st->section), "%s", section);
	}
	if (!name)
		return 1;
	p = &st->set->pol[st->set->n - 1];
	st->rc = pol_key(st, p, name, value ? value : "");
	return st->rc ? 0 : 1;
}

/* A section is complete and coherent? */
static int pol_check(const struct agent_policy *p, char *msg, size_t size)
{
	if (!p->uid_set || !p->exe[0]) {
		snprintf(msg, size, "[caller %s]: uid and exe are both required", p->name);
		return FIRMANTE_E_CONFIG;
	}
	if (!p->unattended)
		return 0;
	if (!p->daily_cap) {
		snprintf(msg, size, "[caller %s]: an unattended caller needs daily-cap", p->name);
		return FIRMANTE_E_CONFIG;
	}
	if (!p->n_keys) {
		snprintf(msg, size, "[caller %s]: an unattended caller needs at least one key",
			 p->name);
		return FIRMANTE_E_CONFIG;
	}
	if (!p->pin_file[0] == !p->pin_credential[0]) {
		snprintf(msg, size,
			 "[caller %s]: an unattended caller needs exactly one of pin-file and pin-credential",
			 p->name);
		return FIRMANTE_E_CONFIG;
	}
	return 0;
}

/* The policy file must not be writable by anyone but root and us. */
static int check_owner_mode(const char *path, int fd, bool secret, char *msg, size_t size)
{
	struct stat sb;

	if (fstat(fd, &sb) != 0 || !S_ISREG(sb.st_mode)) {
		snprintf(msg, size, "%s is not a regular file", path);
		return FIRMANTE_E_CONFIG;
	}
	if (sb.st_uid != 0 && sb.st_uid != geteuid()) {
		snprintf(msg, size, "%s belongs to uid %lu; it must belong to root or to uid %lu",
			 path, (unsigned long)sb.st_uid, (unsigned long)geteuid());
		return FIRMANTE_E_CONFIG;
	}
	if (secret && (sb.st_mode & 07777) != 0600 && (sb.st_mode & 07777) != 0400) {
		snprintf(msg, size, "%s has mode %04o; a PIN file must have mode 0600 or 0400",
			 path, (unsigned)(sb.st_mode & 07777));
		return FIRMANTE_E_CONFIG;
	}
	if (!secret && (sb.st_mode & 022)) {
		snprintf(msg, size, "%s is writable by group or others (mode %04o)", path,
			 (unsigned)(sb.st_mode & 07777));
		return FIRMANTE_E_CONFIG;
	}
	return 0;
}

int agent_policy_load(const char *path, const char *audit_path, struct agent_policy_set **out,
		      char *err, size_t err_size)
{
	struct agent_policy_set *set;
	struct pstate st;
	FILE *f = NULL;
	int fd = -1, line, rc = 0;
	char msg[256];

	set = calloc(1, sizeof(*set));
	if (!set)
		return FIRMANTE_E_NOMEM;
	pthread_mutex_init(&set->mu, NULL);
	snprintf(set->audit_path, sizeof(set->audit_path), "%s", audit_path ? audit_path : "");
	if (!path || !path[0])
		goto done;
	fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
	if (fd < 0) {
		snprintf(err, err_size, "policy file %s: %s", path, strerror(errno));
		rc = FIRMANTE_E_CONFIG;
		goto out;
	}
	rc = check_owner_mode(path, fd, false, msg, sizeof(msg));
	if (rc) {
		snprintf(err, err_size, "policy file %s", msg);
		goto out;
	}
	f = fdopen(fd, "r");
	if (!f) {
		rc = FIRMANTE_E_NOMEM;
		goto out;
	}
	fd = -1;
	memset(&st, 0, sizeof(st));
	st.set = set;
	st.path = path;
	line = ini_parse_file(f, pol_cb, &st);
	if (st.rc || line != 0) {
		if (line > 0)
			snprintf(err, err_size, "%s:%d: %s", path, line,
				 st.msg[0] ? st.msg : "syntax error (expected [section] or key = value)");
		else
			snprintf(err, err_size, "%s: %s", path, st.msg[0] ? st.msg : "cannot be read");
		rc = FIRMANTE_E_CONFIG;
		goto out;
	}
	for (size_t i = 0; i < set->n; i++) {
		rc = pol_check(&set->pol[i], msg, sizeof(msg));
		if (rc) {
			snprintf(err, err_size, "%s: %s", path, msg);
			goto out;
		}
	}
done:
	*out = set;
	set = NULL;
out:
	if (f)
		fclose(f);
	if (fd >= 0)
		close(fd);
	agent_policy_free(set);
	return rc;
}

void agent_policy_free(struct agent_policy_set *set)
{
	if (!set)
		return;
	pthread_mutex_destroy(&set->mu);
	free(set);
}

size_t agent_policy_count(const struct agent_policy_set *set)
{
	return set ? set->n : 0;
}

const struct agent_policy *agent_policy_get(const struct agent_policy_set *set, size_t i)
{
	return set && i < set->n ? &set->pol[i] : NULL;
}

const struct agent_policy *agent_policy_match(const struct agent_policy_set *set,
					      const struct agent_caller *caller)
{
	if (!set || caller->origin[0])
		return NULL; /* browser pages are always interactive */
	for (size_t i = 0; i < set->n; i++) {
		const struct agent_policy *p = &set->pol[i];

		if (p->uid == caller->uid && !strcmp(p->exe, caller->exe))
			return p;
	}
	return NULL;
}

bool agent_policy_allows_key(const struct agent_policy *p, const char *no_certificado)
{
	for (size_t i = 0; i < p->n_keys; i++)
		if (!strcmp(p->keys[i], no_certificado))
			return true;
	return false;
}

int agent_policy_reserve(struct agent_policy_set *set, const struct agent_policy *cp,
			 char *detail, size_t detail_size)
{
	struct agent_policy *p = (struct agent_policy *)cp;
	char today[16];
	time_t now = time(NULL);
	struct tm tm;
	int rc = 0;

	gmtime_r(&now, &tm);
	strftime(today, sizeof(today), "%Y-%m-%d", &tm);
	pthread_mutex_lock(&set->mu);
	if (strcmp(p->day, today) != 0) {
		unsigned long seen = 0;

		/* A new day, or the first request since start: count what the
		 * audit log says was signed today under this policy. */
		if (set->audit_path[0])
			agent_audit_count_signed_today(set->audit_path, p->name, &seen);
		p->signed_today = seen;
		snprintf(p->day, sizeof(p->day), "%s", today);
	}
	if (p->signed_today >= p->daily_cap) {
		snprintf(detail, detail_size,
			 "caller \"%s\" has signed %lu titles today (UTC %s); its daily cap is %lu",
			 p->name, p->signed_today, today, p->daily_cap);
		rc = FIRMANTE_E_POLICY_LIMIT;
	} else {
		p->signed_today++;
	}
	pthread_mutex_unlock(&set->mu);
	return rc;
}

void agent_policy_release(struct agent_policy_set *set, const struct agent_policy *cp)
{
	struct agent_policy *p = (struct agent_policy *)cp;

	pthread_mutex_lock(&set->mu);
	if (p->signed_today > 0)
		p->signed_today--;
	pthread_mutex_unlock(&set->mu);
}

int agent_policy_read_pin(const struct agent_policy *p, char *pin, size_t pin_size,
			  char *detail, size_t detail_size)
{
	char path[AGENT_PATH_MAX + 300], buf[AGENT_PIN_MAX + 2];
	const char *dir;
	ssize_t n;
	size_t len;
	int fd = -1, rc = 0;

	if (p->pin_file[0]) {
		snprintf(path, sizeof(path), "%s", p->pin_file);
	} else {
		dir = getenv("CREDENTIALS_DIRECTORY");
		if (!dir || dir[0] != '/') {
			snprintf(detail, detail_size,
				 "caller \"%s\" takes its PIN from systemd credential \"%s\", but "
				 "$CREDENTIALS_DIRECTORY is not set (LoadCredential= in the unit)",
				 p->name, p->pin_credential);
			return FIRMANTE_E_CONFIG;
		}
		snprintf(path, sizeof(path), "%s/%s", dir, p->pin_credential);
	}
	fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
	if (fd < 0) {
		snprintf(detail, detail_size, "the PIN file of caller \"%s\" cannot be opened: %s",
			 p->name, strerror(errno));
		rc = FIRMANTE_E_CONFIG;
		goto out;
	}
	rc = check_owner_mode(path, fd, true, detail, detail_size);
	if (rc)
		goto out;
	n = read(fd, buf, sizeof(buf) - 1);
	if (n < 0) {
		snprintf(detail, detail_size, "the PIN file of caller \"%s\" cannot be read", p->name);
		rc = FIRMANTE_E_IO;
		goto out;
	}
	len = (size_t)n;
	while (len > 0 && (buf[len - 1] == '\n' || buf[len - 1] == '\r'))
		len--;
	if (len == 0 || len > AGENT_PIN_MAX || len >= pin_size || memchr(buf, '\0', len)) {
		snprintf(detail, detail_size,
			 "the PIN file of caller \"%s\" must hold one PIN of 1 to %d characters",
			 p->name, AGENT_PIN_MAX);
		rc = FIRMANTE_E_CONFIG;
		goto out;
	}
	memcpy(pin, buf, len);
	pin[len] = '\0';
out:
	fm_wipe(buf, sizeof(buf));
	if (fd >= 0)
		close(fd);
	return rc;
}

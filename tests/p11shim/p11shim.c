/*
 * p11shim: a forwarding PKCS#11 module with fault injection, for tests.
 * The control interface is documented in p11shim.h and README.md.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* st_mtim, st_ctim */
#endif
#include "p11shim.h"

#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <p11-kit/pkcs11.h>

#define SHIM_EXPORT __attribute__((visibility("default")))

#define MAX_SESSIONS      512
#define MAX_CONTROL_BYTES 8192
#define MAX_HANG_LEN      512
#define MAX_DELAY_MS      600000UL
#define MAX_SLOT_OFFSET   (1UL << 20)
#define MAX_MECHANISMS    4096
#define HANG_POLL_MS      50

/* ---------------------------------------------------------------------- */
/* State */

struct shim_config {
	bool removed;
	CK_SLOT_ID slot_offset;
	unsigned long session_invalid;
	bool already_logged_in;
	CK_FLAGS pin_flags;
	unsigned long sign_delay_ms;
	unsigned long reset_after;
	bool rsa_pkcs_only;
	char hang[MAX_HANG_LEN];
	char fault_token[33];       /* "" = every token */
};

enum sess_state { SESS_FREE = 0, SESS_LIVE, SESS_DEAD };

struct shim_session {
	CK_SESSION_HANDLE handle;   /* the shim's handle, 0 if never used */
	CK_SESSION_HANDLE real;     /* the real module's handle */
	CK_SLOT_ID real_slot;
	enum sess_state state;
	unsigned busy;              /* forwarded calls in progress */
	bool close_pending;         /* close the real session when busy drops to 0 */
};

/* Real sessions to close once the mutex is released. */
struct close_list {
	size_t n;
	CK_SESSION_HANDLE h[MAX_SESSIONS];
};

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static void *real_lib;                   /* never dlclose'd */
static CK_FUNCTION_LIST *real;           /* set once, under lock */

static char control_path[PATH_MAX];
static bool control_seen;                /* stat cache valid */
static struct stat control_st;
static struct shim_config cfg;
static unsigned long invalid_left;       /* session_invalid still to inject */
static unsigned long sign_count;         /* successful C_Sign since re-arm */

static struct shim_session sessions[MAX_SESSIONS];
static CK_SESSION_HANDLE next_handle = 1;

static int log_fd = -1;
static bool log_tried;

/* ---------------------------------------------------------------------- */
/* Small helpers */

static void sleep_ms(unsigned long ms)
{
	struct timespec ts = { .tv_sec = (time_t)(ms / 1000),
			       .tv_nsec = (long)(ms % 1000) * 1000000L };
	while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
		;
}

static const char *rv_name(CK_RV rv)
{
	switch (rv) {
#define N(x) case x: return #x;
	N(CKR_OK) N(CKR_CANCEL) N(CKR_HOST_MEMORY) N(CKR_SLOT_ID_INVALID)
	N(CKR_GENERAL_ERROR) N(CKR_FUNCTION_FAILED) N(CKR_ARGUMENTS_BAD)
	N(CKR_NO_EVENT) N(CKR_NEED_TO_CREATE_THREADS) N(CKR_CANT_LOCK)
	N(CKR_ATTRIBUTE_READ_ONLY) N(CKR_ATTRIBUTE_SENSITIVE)
	N(CKR_ATTRIBUTE_TYPE_INVALID) N(CKR_ATTRIBUTE_VALUE_INVALID)
	N(CKR_DATA_INVALID) N(CKR_DATA_LEN_RANGE) N(CKR_DEVICE_ERROR)
	N(CKR_DEVICE_MEMORY) N(CKR_DEVICE_REMOVED) N(CKR_ENCRYPTED_DATA_INVALID)
	N(CKR_ENCRYPTED_DATA_LEN_RANGE) N(CKR_FUNCTION_CANCELED)
	N(CKR_FUNCTION_NOT_PARALLEL) N(CKR_FUNCTION_NOT_SUPPORTED)
	N(CKR_KEY_HANDLE_INVALID) N(CKR_KEY_SIZE_RANGE)
	N(CKR_KEY_TYPE_INCONSISTENT) N(CKR_KEY_NOT_NEEDED) N(CKR_KEY_CHANGED)
	N(CKR_KEY_NEEDED) N(CKR_KEY_INDIGESTIBLE) N(CKR_KEY_FUNCTION_NOT_PERMITTED)
	N(CKR_KEY_NOT_WRAPPABLE) N(CKR_KEY_UNEXTRACTABLE) N(CKR_MECHANISM_INVALID)
	N(CKR_MECHANISM_PARAM_INVALID) N(CKR_OBJECT_HANDLE_INVALID)
	N(CKR_OPERATION_ACTIVE) N(CKR_OPERATION_NOT_INITIALIZED)
	N(CKR_PIN_INCORRECT) N(CKR_PIN_INVALID) N(CKR_PIN_LEN_RANGE)
	N(CKR_PIN_EXPIRED) N(CKR_PIN_LOCKED) N(CKR_SESSION_CLOSED)
	N(CKR_SESSION_COUNT) N(CKR_SESSION_HANDLE_INVALID)
	N(CKR_SESSION_PARALLEL_NOT_SUPPORTED) N(CKR_SESSION_READ_ONLY)
	N(CKR_SESSION_EXISTS) N(CKR_SESSION_READ_ONLY_EXISTS)
	N(CKR_SESSION_READ_WRITE_SO_EXISTS) N(CKR_SIGNATURE_INVALID)
	N(CKR_SIGNATURE_LEN_RANGE) N(CKR_TEMPLATE_INCOMPLETE)
	N(CKR_TEMPLATE_INCONSISTENT) N(CKR_TOKEN_NOT_PRESENT)
	N(CKR_TOKEN_NOT_RECOGNIZED) N(CKR_TOKEN_WRITE_PROTECTED)
	N(CKR_UNWRAPPING_KEY_HANDLE_INVALID) N(CKR_UNWRAPPING_KEY_SIZE_RANGE)
	N(CKR_UNWRAPPING_KEY_TYPE_INCONSISTENT) N(CKR_USER_ALREADY_LOGGED_IN)
	N(CKR_USER_NOT_LOGGED_IN) N(CKR_USER_PIN_NOT_INITIALIZED)
	N(CKR_USER_TYPE_INVALID) N(CKR_USER_ANOTHER_ALREADY_LOGGED_IN)
	N(CKR_USER_TOO_MANY_TYPES) N(CKR_WRAPPED_KEY_INVALID)
	N(CKR_WRAPPED_KEY_LEN_RANGE) N(CKR_WRAPPING_KEY_HANDLE_INVALID)
	N(CKR_WRAPPING_KEY_SIZE_RANGE) N(CKR_WRAPPING_KEY_TYPE_INCONSISTENT)
	N(CKR_RANDOM_SEED_NOT_SUPPORTED) N(CKR_RANDOM_NO_RNG)
	N(CKR_DOMAIN_PARAMS_INVALID) N(CKR_BUFFER_TOO_SMALL)
	N(CKR_SAVED_STATE_INVALID) N(CKR_INFORMATION_SENSITIVE)
	N(CKR_STATE_UNSAVEABLE) N(CKR_CRYPTOKI_NOT_INITIALIZED)
	N(CKR_CRYPTOKI_ALREADY_INITIALIZED) N(CKR_MUTEX_BAD)
	N(CKR_MUTEX_NOT_LOCKED) N(CKR_FUNCTION_REJECTED)
#undef N
	default:
		return NULL;
	}
}

/* Appends "<fn> <rv>\n" to the call log, if any. Returns rv. */
static CK_RV log_call(const char *fn, CK_RV rv)
{
	char line[160];
	const char *name = rv_name(rv);
	int n, fd;

	pthread_mutex_lock(&lock);
	if (!log_tried) {
		const char *path = getenv(P11SHIM_ENV_LOG);
		log_tried = true;
		if (path && *path)
			log_fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0600);
	}
	fd = log_fd;
	pthread_mutex_unlock(&lock);
	if (fd < 0)
		return rv;
	if (name)
		n = snprintf(line, sizeof line, "%s %s\n", fn, name);
	else
		n = snprintf(line, sizeof line, "%s 0x%08lx\n", fn, (unsigned long)rv);
	if (n > 0 && (size_t)n < sizeof line) {
		ssize_t w;
		do
			w = write(fd, line, (size_t)n);
		while (w < 0 && errno == EINTR);
	}
	return rv;
}

/* ---------------------------------------------------------------------- */
/* Session table (all under lock) */

static struct shim_session *sess_find_locked(CK_SESSION_HANDLE h)
{
	if (h == CK_INVALID_HANDLE)
		return NULL;
	for (size_t i = 0; i < MAX_SESSIONS; i++)
		if (sessions[i].state != SESS_FREE && sessions[i].handle == h)
			return &sessions[i];
	return NULL;
}

/* Marks a live session dead and arranges for its real session to close. */
static void sess_kill_locked(struct shim_session *s, struct close_list *cl)
{
	if (s->state != SESS_LIVE)
		return;
	s->state = SESS_DEAD;
	if (s->busy > 0)
		s->close_pending = true;
	else if (cl->n < MAX_SESSIONS)
		cl->h[cl->n++] = s->real;
}

static void sess_kill_all_locked(struct close_list *cl)
{
	for (size_t i = 0; i < MAX_SESSIONS; i++)
		sess_kill_locked(&sessions[i], cl);
}

/* A reusable entry: free, or dead and idle (oldest dead first). */
static struct shim_session *sess_alloc_locked(void)
{
	struct shim_session *dead = NULL;

	for (size_t i = 0; i < MAX_SESSIONS; i++) {
		struct shim_session *s = &sessions[i];
		if (s->busy > 0 || s->close_pending)
			continue;
		if (s->state == SESS_FREE)
			return s;
		if (s->state == SESS_DEAD && (!dead || s->handle < dead->handle))
			dead = s;
	}
	return dead;
}

static void close_real(const struct close_list *cl)
{
	for (size_t i = 0; i < cl->n; i++)
		real->C_CloseSession(cl->h[i]);
}

/* ---------------------------------------------------------------------- */
/* Control file */

static char *trim(char *s)
{
	char *e;

	while (*s == ' ' || *s == '\t' || *s == '\r')
		s++;
	e = s + strlen(s);
	while (e > s && (e[-1] == ' ' || e[-1] == '\t' || e[-1] == '\r'))
		*--e = '\0';
	return s;
}

static bool parse_ulong(const char *v, unsigned long max, unsigned long *out)
{
	char *end;
	unsigned long x;

	if (*v < '0' || *v > '9')
		return false;
	errno = 0;
	x = strtoul(v, &end, 10);
	if (errno || *end || x > max)
		return false;
	*out = x;
	return true;
}

static CK_FLAGS parse_pin_flags(const char *v)
{
	CK_FLAGS f = 0;
	const char *p = v;

	while (*p) {
		size_t n = strcspn(p, "|,");
		char word[32];

		if (n < sizeof word) {
			memcpy(word, p, n);
			word[n] = '\0';
			char *w = trim(word);
			if (!strcmp(w, "count_low"))
				f |= CKF_USER_PIN_COUNT_LOW;
			else if (!strcmp(w, "final_try"))
				f |= CKF_USER_PIN_FINAL_TRY;
			else if (!strcmp(w, "locked"))
				f |= CKF_USER_PIN_LOCKED;
		}
		p += n;
		if (*p)
			p++;
	}
	return f;
}

static void parse_line(struct shim_config *c, char *line)
{
	char *eq, *key, *val;
	unsigned long x;

	line = trim(line);
	if (!*line || *line == '#')
		return;
	eq = strchr(line, '=');
	if (!eq)
		return;
	*eq = '\0';
	key = trim(line);
	val = trim(eq + 1);

	if (!strcmp(key, "removed")) {
		if (parse_ulong(val, 1, &x))
			c->removed = x != 0;
	} else if (!strcmp(key, "slot_offset")) {
		if (parse_ulong(val, MAX_SLOT_OFFSET, &x))
			c->slot_offset = x;
	} else if (!strcmp(key, "session_invalid")) {
		if (parse_ulong(val, ULONG_MAX, &x))
			c->session_invalid = x;
	} else if (!strcmp(key, "already_logged_in")) {
		if (parse_ulong(val, 1, &x))
			c->already_logged_in = x != 0;
	} else if (!strcmp(key, "pin_flags")) {
		c->pin_flags = parse_pin_flags(val);
	} else if (!strcmp(key, "sign_delay_ms")) {
		if (parse_ulong(val, MAX_DELAY_MS, &x))
			c->sign_delay_ms = x;
	} else if (!strcmp(key, "reset_after")) {
		if (parse_ulong(val, ULONG_MAX, &x))
			c->reset_after = x;
	} else if (!strcmp(key, "hang")) {
		size_t n = strlen(val);
		if (n < sizeof c->hang)
			memcpy(c->hang, val, n + 1);
	} else if (!strcmp(key, "fault_token")) {
		size_t n = strlen(val);
		if (n < sizeof c->fault_token)
			memcpy(c->fault_token, val, n + 1);
	} else if (!strcmp(key, "mechanisms")) {
		if (!strcmp(val, "rsa_pkcs_only"))
			c->rsa_pkcs_only = true;
		else if (!strcmp(val, "all"))
			c->rsa_pkcs_only = false;
	}
}

static void read_control(struct shim_config *c)
{
	char buf[MAX_CONTROL_BYTES + 1];
	size_t len = 0;
	int fd;

	memset(c, 0, sizeof *c);
	fd = open(control_path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return;
	while (len < MAX_CONTROL_BYTES) {
		ssize_t r = read(fd, buf + len, MAX_CONTROL_BYTES - len);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			break;
		len += (size_t)r;
	}
	close(fd);
	buf[len] = '\0';

	char *p = buf;
	while (p && *p) {
		char *nl = strchr(p, '\n');
		if (nl)
			*nl++ = '\0';
		parse_line(c, p);
		p = nl;
	}
}

static bool same_stat(const struct stat *a, const struct stat *b)
{
	return a->st_dev == b->st_dev && a->st_ino == b->st_ino &&
	       a->st_size == b->st_size &&
	       a->st_mtim.tv_sec == b->st_mtim.tv_sec &&
	       a->st_mtim.tv_nsec == b->st_mtim.tv_nsec &&
	       a->st_ctim.tv_sec == b->st_ctim.tv_sec &&
	       a->st_ctim.tv_nsec == b->st_ctim.tv_nsec;
}

/* Re-reads the control file if it changed; applies removal transitions. */
static void reload_locked(struct close_list *cl)
{
	struct stat st;
	struct shim_config c;
	bool was_removed = cfg.removed;

	if (!control_path[0])
		return;
	if (stat(control_path, &st) != 0)
		memset(&st, 0, sizeof st);
	if (control_seen && same_stat(&st, &control_st))
		return;
	control_st = st;
	control_seen = true;
	if (st.st_ino == 0 && st.st_size == 0)
		memset(&c, 0, sizeof c);     /* no file: no faults */
	else
		read_control(&c);
	cfg = c;
	invalid_left = cfg.session_invalid;
	sign_count = 0;
	if (!was_removed && cfg.removed)
		sess_kill_all_locked(cl);
}

/* Does the comma-separated list hang name fn? */
static bool hang_names(const char *list, const char *fn)
{
	size_t fl = strlen(fn);
	const char *p = list;

	while (*p) {
		size_t n = strcspn(p, ", \t");
		if (n == fl && !memcmp(p, fn, n))
			return true;
		p += n;
		p += strspn(p, ", \t");
	}
	return false;
}

/*
 * Start of every call: re-read the control file, block while "hang" names
 * fn, and return a snapshot of the configuration.
 */
static struct shim_config call_begin(const char *fn)
{
	struct shim_config c;

	for (;;) {
		struct close_list cl = { 0 };
		bool hang;

		pthread_mutex_lock(&lock);
		reload_locked(&cl);
		c = cfg;
		pthread_mutex_unlock(&lock);
		if (real)
			close_real(&cl);
		hang = hang_names(c.hang, fn);
		if (!hang)
			return c;
		sleep_ms(HANG_POLL_MS);
	}
}

/*
 * Is session h on the token named by fault_token (or is fault_token empty)?
 * Compares the real token's label, blank padding trimmed.
 */
static bool sess_is_fault_token(const struct shim_config *c, CK_SESSION_HANDLE h)
{
	struct shim_session *s;
	CK_SLOT_ID rs = 0;
	CK_TOKEN_INFO ti;
	bool found = false;
	size_t n;

	if (!c->fault_token[0])
		return true;
	pthread_mutex_lock(&lock);
	s = real ? sess_find_locked(h) : NULL;
	if (s) {
		rs = s->real_slot;
		found = true;
	}
	pthread_mutex_unlock(&lock);
	if (!found || real->C_GetTokenInfo(rs, &ti) != CKR_OK)
		return false;
	n = sizeof ti.label;
	while (n > 0 && (ti.label[n - 1] == ' ' || ti.label[n - 1] == '\0'))
		n--;
	return n == strlen(c->fault_token) && !memcmp(ti.label, c->fault_token, n);
}

/*
 * call_begin() for C_Sign/C_SignFinal: "hang" and "sign_delay_ms" apply
 * only to sessions on the fault_token (every token when it is unset).
 */
static struct shim_config call_begin_sign(const char *fn, CK_SESSION_HANDLE h)
{
	struct shim_config c;

	for (;;) {
		struct close_list cl = { 0 };

		pthread_mutex_lock(&lock);
		reload_locked(&cl);
		c = cfg;
		pthread_mutex_unlock(&lock);
		if (real)
			close_real(&cl);
		if (!sess_is_fault_token(&c, h)) {
			c.sign_delay_ms = 0;
			return c;
		}
		if (!hang_names(c.hang, fn))
			return c;
		sleep_ms(HANG_POLL_MS);
	}
}

/* ---------------------------------------------------------------------- */
/* Session call frame */

struct sref {
	struct shim_session *s;
	CK_SESSION_HANDLE real;
	CK_SLOT_ID real_slot;
};

/*
 * Looks up a live session and marks it busy. Injects session_invalid.
 * Returns CKR_OK and fills *r, or the error to return.
 */
static CK_RV sess_enter(CK_SESSION_HANDLE h, struct sref *r)
{
	struct close_list cl = { 0 };
	struct shim_session *s;
	CK_RV rv = CKR_OK;

	r->s = NULL;
	pthread_mutex_lock(&lock);
	reload_locked(&cl);
	s = real ? sess_find_locked(h) : NULL;
	if (!real) {
		rv = CKR_CRYPTOKI_NOT_INITIALIZED;
	} else if (!s) {
		rv = CKR_SESSION_HANDLE_INVALID;
	} else if (s->state == SESS_DEAD) {
		rv = cfg.removed ? CKR_DEVICE_REMOVED : CKR_SESSION_HANDLE_INVALID;
	} else if (invalid_left > 0) {
		invalid_left--;
		sess_kill_locked(s, &cl);
		rv = CKR_SESSION_HANDLE_INVALID;
	} else {
		s->busy++;
		r->s = s;
		r->real = s->real;
		r->real_slot = s->real_slot;
	}
	pthread_mutex_unlock(&lock);
	close_real(&cl);
	return rv;
}

static void sess_leave(struct sref *r)
{
	struct close_list cl = { 0 };
	struct shim_session *s = r->s;

	if (!s)
		return;
	pthread_mutex_lock(&lock);
	if (--s->busy == 0 && s->close_pending) {
		s->close_pending = false;
		cl.h[cl.n++] = s->real;
	}
	pthread_mutex_unlock(&lock);
	close_real(&cl);
	r->s = NULL;
}

/* Shim slot id -> real slot id. */
static CK_RV slot_in(const struct shim_config *c, CK_SLOT_ID id, CK_SLOT_ID *out)
{
	if (id < c->slot_offset)
		return CKR_SLOT_ID_INVALID;
	*out = id - c->slot_offset;
	return CKR_OK;
}

static bool mech_hidden(const struct shim_config *c, CK_MECHANISM_TYPE m)
{
	if (!c->rsa_pkcs_only)
		return false;
	switch (m) {
	case CKM_MD5_RSA_PKCS:
	case CKM_SHA1_RSA_PKCS:
	case CKM_SHA224_RSA_PKCS:
	case CKM_SHA256_RSA_PKCS:
	case CKM_SHA384_RSA_PKCS:
	case CKM_SHA512_RSA_PKCS:
	case CKM_SHA1_RSA_PKCS_PSS:
	case CKM_SHA224_RSA_PKCS_PSS:
	case CKM_SHA256_RSA_PKCS_PSS:
	case CKM_SHA384_RSA_PKCS_PSS:
	case CKM_SHA512_RSA_PKCS_PSS:
		return true;
	default:
		return false;
	}
}

/* ---------------------------------------------------------------------- */
/* General purpose */

static CK_FUNCTION_LIST shim_list;

static CK_RV load_real(void)
{
	CK_RV (*get)(CK_FUNCTION_LIST_PTR_PTR);
	CK_FUNCTION_LIST *fl = NULL;
	const char *path;
	CK_RV rv;

	if (real)
		return CKR_OK;
	path = getenv(P11SHIM_ENV_MODULE);
	if (!path || !*path)
		path = P11SHIM_DEFAULT_MODULE;
	if (!real_lib)
		real_lib = dlopen(path, RTLD_NOW | RTLD_LOCAL);
	if (!real_lib)
		return CKR_GENERAL_ERROR;
	*(void **)&get = dlsym(real_lib, "C_GetFunctionList");
	if (!get)
		return CKR_GENERAL_ERROR;
	rv = get(&fl);
	if (rv != CKR_OK)
		return rv;
	if (!fl)
		return CKR_GENERAL_ERROR;
	real = fl;
	return CKR_OK;
}

static CK_RV shim_C_Initialize(CK_VOID_PTR args)
{
	const char *ctl;
	CK_RV rv;

	pthread_mutex_lock(&lock);
	rv = load_real();
	ctl = getenv(P11SHIM_ENV_CONTROL);
	if (ctl && strlen(ctl) < sizeof control_path)
		memcpy(control_path, ctl, strlen(ctl) + 1);
	else
		control_path[0] = '\0';
	control_seen = false;
	memset(&cfg, 0, sizeof cfg);
	invalid_left = 0;
	sign_count = 0;
	pthread_mutex_unlock(&lock);
	if (rv == CKR_OK) {
		call_begin("C_Initialize");
		rv = real->C_Initialize(args);
	}
	return log_call("C_Initialize", rv);
}

static CK_RV shim_C_Finalize(CK_VOID_PTR reserved)
{
	CK_RV rv;

	call_begin("C_Finalize");
	if (!real)
		return log_call("C_Finalize", CKR_CRYPTOKI_NOT_INITIALIZED);
	rv = real->C_Finalize(reserved);
	if (rv == CKR_OK) {
		pthread_mutex_lock(&lock);
		memset(sessions, 0, sizeof sessions);
		pthread_mutex_unlock(&lock);
	}
	log_call("C_Finalize", rv);
	pthread_mutex_lock(&lock);
	if (log_fd >= 0)
		close(log_fd);
	log_fd = -1;
	log_tried = false;
	pthread_mutex_unlock(&lock);
	return rv;
}

static CK_RV shim_C_GetInfo(CK_INFO_PTR info)
{
	call_begin("C_GetInfo");
	if (!real)
		return log_call("C_GetInfo", CKR_CRYPTOKI_NOT_INITIALIZED);
	return log_call("C_GetInfo", real->C_GetInfo(info));
}

static CK_RV shim_C_GetFunctionList(CK_FUNCTION_LIST_PTR_PTR list)
{
	if (!list)
		return CKR_ARGUMENTS_BAD;
	*list = &shim_list;
	return CKR_OK;
}

/* ---------------------------------------------------------------------- */
/* Slots and tokens */

static CK_RV shim_C_GetSlotList(CK_BBOOL present, CK_SLOT_ID_PTR list, CK_ULONG_PTR count)
{
	struct shim_config c = call_begin("C_GetSlotList");
	CK_RV rv;

	if (!real)
		return log_call("C_GetSlotList", CKR_CRYPTOKI_NOT_INITIALIZED);
	if (!count)
		return log_call("C_GetSlotList", CKR_ARGUMENTS_BAD);
	if (present && c.removed) {
		*count = 0;
		return log_call("C_GetSlotList", CKR_OK);
	}
	rv = real->C_GetSlotList(present, list, count);
	if (rv == CKR_OK && list)
		for (CK_ULONG i = 0; i < *count; i++)
			list[i] += c.slot_offset;
	return log_call("C_GetSlotList", rv);
}

static CK_RV shim_C_GetSlotInfo(CK_SLOT_ID slot, CK_SLOT_INFO_PTR info)
{
	struct shim_config c = call_begin("C_GetSlotInfo");
	CK_SLOT_ID rs;
	CK_RV rv;

	if (!real)
		return log_call("C_GetSlotInfo", CKR_CRYPTOKI_NOT_INITIALIZED);
	rv = slot_in(&c, slot, &rs);
	if (rv == CKR_OK)
		rv = real->C_GetSlotInfo(rs, info);
	if (rv == CKR_OK && c.removed)
		info->flags &= ~(CK_FLAGS)CKF_TOKEN_PRESENT;
	return log_call("C_GetSlotInfo", rv);
}

static CK_RV shim_C_GetTokenInfo(CK_SLOT_ID slot, CK_TOKEN_INFO_PTR info)
{
	struct shim_config c = call_begin("C_GetTokenInfo");
	CK_SLOT_ID rs;
	CK_RV rv;

	if (!real)
		return log_call("C_GetTokenInfo", CKR_CRYPTOKI_NOT_INITIALIZED);
	rv = slot_in(&c, slot, &rs);
	if (rv == CKR_OK && c.removed)
		rv = CKR_TOKEN_NOT_PRESENT;
	if (rv == CKR_OK)
		rv = real->C_GetTokenInfo(rs, info);
	if (rv == CKR_OK)
		info->flags |= c.pin_flags;
	return log_call("C_GetTokenInfo", rv);
}

static CK_RV shim_C_WaitForSlotEvent(CK_FLAGS flags, CK_SLOT_ID_PTR slot, CK_VOID_PTR reserved)
{
	struct shim_config c = call_begin("C_WaitForSlotEvent");
	CK_RV rv;

	if (!real)
		return log_call("C_WaitForSlotEvent", CKR_CRYPTOKI_NOT_INITIALIZED);
	rv = real->C_WaitForSlotEvent(flags, slot, reserved);
	if (rv == CKR_OK && slot)
		*slot += c.slot_offset;
	return log_call("C_WaitForSlotEvent", rv);
}

static CK_RV shim_C_GetMechanismList(CK_SLOT_ID slot, CK_MECHANISM_TYPE_PTR list, CK_ULONG_PTR count)
{
	struct shim_config c = call_begin("C_GetMechanismList");
	CK_MECHANISM_TYPE *all = NULL;
	CK_ULONG n = 0, kept = 0;
	CK_SLOT_ID rs;
	CK_RV rv;

	if (!real)
		return log_call("C_GetMechanismList", CKR_CRYPTOKI_NOT_INITIALIZED);
	rv = slot_in(&c, slot, &rs);
	if (rv == CKR_OK && c.removed)
		rv = CKR_TOKEN_NOT_PRESENT;
	if (rv != CKR_OK)
		goto out;
	if (!c.rsa_pkcs_only) {
		rv = real->C_GetMechanismList(rs, list, count);
		goto out;
	}
	if (!count) {
		rv = CKR_ARGUMENTS_BAD;
		goto out;
	}
	rv = real->C_GetMechanismList(rs, NULL, &n);
	if (rv != CKR_OK)
		goto out;
	if (n > MAX_MECHANISMS) {
		rv = CKR_GENERAL_ERROR;
		goto out;
	}
	all = calloc(n ? n : 1, sizeof *all);
	if (!all) {
		rv = CKR_HOST_MEMORY;
		goto out;
	}
	rv = real->C_GetMechanismList(rs, all, &n);
	if (rv != CKR_OK)
		goto out;
	for (CK_ULONG i = 0; i < n; i++)
		if (!mech_hidden(&c, all[i]))
			all[kept++] = all[i];
	if (list && *count < kept)
		rv = CKR_BUFFER_TOO_SMALL;
	else if (list)
		memcpy(list, all, kept * sizeof *all);
	*count = kept;
out:
	free(all);
	return log_call("C_GetMechanismList", rv);
}

static CK_RV shim_C_GetMechanismInfo(CK_SLOT_ID slot, CK_MECHANISM_TYPE type, CK_MECHANISM_INFO_PTR info)
{
	struct shim_config c = call_begin("C_GetMechanismInfo");
	CK_SLOT_ID rs;
	CK_RV rv;

	if (!real)
		return log_call("C_GetMechanismInfo", CKR_CRYPTOKI_NOT_INITIALIZED);
	rv = slot_in(&c, slot, &rs);
	if (rv == CKR_OK && c.removed)
		rv = CKR_TOKEN_NOT_PRESENT;
	if (rv == CKR_OK && mech_hidden(&c, type))
		rv = CKR_MECHANISM_INVALID;
	if (rv == CKR_OK)
		rv = real->C_GetMechanismInfo(rs, type, info);
	return log_call("C_GetMechanismInfo", rv);
}

static CK_RV shim_C_InitToken(CK_SLOT_ID slot, CK_UTF8CHAR_PTR pin, CK_ULONG pin_len, CK_UTF8CHAR_PTR label)
{
	struct shim_config c = call_begin("C_InitToken");
	CK_SLOT_ID rs;
	CK_RV rv;

	if (!real)
		return log_call("C_InitToken", CKR_CRYPTOKI_NOT_INITIALIZED);
	rv = slot_in(&c, slot, &rs);
	if (rv == CKR_OK && c.removed)
		rv = CKR_TOKEN_NOT_PRESENT;
	if (rv == CKR_OK)
		rv = real->C_InitToken(rs, pin, pin_len, label);
	return log_call("C_InitToken", rv);
}

/* ---------------------------------------------------------------------- */
/* Sessions */

static CK_RV shim_C_OpenSession(CK_SLOT_ID slot, CK_FLAGS flags, CK_VOID_PTR app,
				CK_NOTIFY notify, CK_SESSION_HANDLE_PTR out)
{
	struct shim_config c = call_begin("C_OpenSession");
	struct close_list cl = { 0 };
	CK_SESSION_HANDLE rh = CK_INVALID_HANDLE;
	CK_SLOT_ID rs;
	CK_RV rv;

	(void)notify;
	if (!real)
		return log_call("C_OpenSession", CKR_CRYPTOKI_NOT_INITIALIZED);
	if (!out)
		return log_call("C_OpenSession", CKR_ARGUMENTS_BAD);
	rv = slot_in(&c, slot, &rs);
	if (rv == CKR_OK && c.removed)
		rv = CKR_TOKEN_NOT_PRESENT;
	if (rv == CKR_OK)
		rv = real->C_OpenSession(rs, flags, app, NULL, &rh);
	if (rv != CKR_OK)
		return log_call("C_OpenSession", rv);

	pthread_mutex_lock(&lock);
	reload_locked(&cl);
	if (cfg.removed) {
		rv = CKR_TOKEN_NOT_PRESENT;
	} else {
		struct shim_session *s = sess_alloc_locked();
		if (!s) {
			rv = CKR_SESSION_COUNT;
		} else {
			s->handle = next_handle++;
			s->real = rh;
			s->real_slot = rs;
			s->state = SESS_LIVE;
			s->busy = 0;
			s->close_pending = false;
			*out = s->handle;
		}
	}
	if (rv != CKR_OK && cl.n < MAX_SESSIONS)
		cl.h[cl.n++] = rh;
	pthread_mutex_unlock(&lock);
	close_real(&cl);
	return log_call("C_OpenSession", rv);
}

static CK_RV shim_C_CloseSession(CK_SESSION_HANDLE h)
{
	struct close_list cl = { 0 };
	struct shim_session *s;
	CK_SESSION_HANDLE rh = CK_INVALID_HANDLE;
	CK_RV rv = CKR_OK;
	bool do_close = false;

	call_begin("C_CloseSession");
	pthread_mutex_lock(&lock);
	reload_locked(&cl);
	s = real ? sess_find_locked(h) : NULL;
	if (!real) {
		rv = CKR_CRYPTOKI_NOT_INITIALIZED;
	} else if (!s) {
		rv = CKR_SESSION_HANDLE_INVALID;
	} else if (s->state == SESS_DEAD) {
		rv = cfg.removed ? CKR_DEVICE_REMOVED : CKR_SESSION_HANDLE_INVALID;
		s->state = SESS_FREE;   /* close_pending, if any, still runs */
	} else if (invalid_left > 0) {
		invalid_left--;
		sess_kill_locked(s, &cl);
		rv = CKR_SESSION_HANDLE_INVALID;
	} else {
		s->state = SESS_FREE;
		if (s->busy > 0) {
			s->close_pending = true;
		} else {
			rh = s->real;
			do_close = true;
		}
	}
	pthread_mutex_unlock(&lock);
	close_real(&cl);
	if (do_close)
		rv = real->C_CloseSession(rh);
	return log_call("C_CloseSession", rv);
}

static CK_RV shim_C_CloseAllSessions(CK_SLOT_ID slot)
{
	struct shim_config c = call_begin("C_CloseAllSessions");
	struct close_list cl = { 0 };
	CK_SLOT_ID rs;
	CK_RV rv;

	if (!real)
		return log_call("C_CloseAllSessions", CKR_CRYPTOKI_NOT_INITIALIZED);
	rv = slot_in(&c, slot, &rs);
	if (rv != CKR_OK)
		return log_call("C_CloseAllSessions", rv);
	pthread_mutex_lock(&lock);
	for (size_t i = 0; i < MAX_SESSIONS; i++) {
		struct shim_session *s = &sessions[i];
		if (s->state == SESS_FREE || s->real_slot != rs)
			continue;
		sess_kill_locked(s, &cl);
		s->state = SESS_FREE;
	}
	pthread_mutex_unlock(&lock);
	close_real(&cl);
	return log_call("C_CloseAllSessions", CKR_OK);
}

static CK_RV shim_C_GetSessionInfo(CK_SESSION_HANDLE h, CK_SESSION_INFO_PTR info)
{
	struct shim_config c = call_begin("C_GetSessionInfo");
	struct sref r;
	CK_RV rv = sess_enter(h, &r);

	if (rv == CKR_OK) {
		rv = real->C_GetSessionInfo(r.real, info);
		if (rv == CKR_OK)
			info->slotID += c.slot_offset;
	}
	sess_leave(&r);
	return log_call("C_GetSessionInfo", rv);
}

static CK_RV shim_C_Login(CK_SESSION_HANDLE h, CK_USER_TYPE user, CK_UTF8CHAR_PTR pin, CK_ULONG pin_len)
{
	struct shim_config c = call_begin("C_Login");
	struct sref r;
	CK_RV rv = sess_enter(h, &r);

	if (rv == CKR_OK) {
		if ((c.pin_flags & CKF_USER_PIN_LOCKED) &&
		    (user == CKU_USER || user == CKU_CONTEXT_SPECIFIC)) {
			rv = CKR_PIN_LOCKED;
		} else {
			rv = real->C_Login(r.real, user, pin, pin_len);
			if (rv == CKR_OK && c.already_logged_in)
				rv = CKR_USER_ALREADY_LOGGED_IN;
		}
	}
	sess_leave(&r);
	return log_call("C_Login", rv);
}

static CK_RV shim_C_SignInit(CK_SESSION_HANDLE h, CK_MECHANISM_PTR mech, CK_OBJECT_HANDLE key)
{
	struct shim_config c = call_begin("C_SignInit");
	struct sref r;
	CK_RV rv = sess_enter(h, &r);

	if (rv == CKR_OK) {
		if (mech && mech_hidden(&c, mech->mechanism))
			rv = CKR_MECHANISM_INVALID;
		else
			rv = real->C_SignInit(r.real, mech, key);
	}
	sess_leave(&r);
	return log_call("C_SignInit", rv);
}

static CK_RV shim_C_VerifyInit(CK_SESSION_HANDLE h, CK_MECHANISM_PTR mech, CK_OBJECT_HANDLE key)
{
	struct shim_config c = call_begin("C_VerifyInit");
	struct sref r;
	CK_RV rv = sess_enter(h, &r);

	if (rv == CKR_OK) {
		if (mech && mech_hidden(&c, mech->mechanism))
			rv = CKR_MECHANISM_INVALID;
		else
			rv = real->C_VerifyInit(r.real, mech, key);
	}
	sess_leave(&r);
	return log_call("C_VerifyInit", rv);
}

static CK_RV shim_C_Sign(CK_SESSION_HANDLE h, CK_BYTE_PTR data, CK_ULONG data_len,
			 CK_BYTE_PTR sig, CK_ULONG_PTR sig_len)
{
	struct shim_config c = call_begin_sign("C_Sign", h);
	struct close_list cl = { 0 };
	struct sref r;
	CK_RV rv;

	if (c.sign_delay_ms)
		sleep_ms(c.sign_delay_ms);
	rv = sess_enter(h, &r);
	if (rv == CKR_OK) {
		rv = real->C_Sign(r.real, data, data_len, sig, sig_len);
		if (rv == CKR_OK && sig) {
			pthread_mutex_lock(&lock);
			if (cfg.reset_after > 0 && ++sign_count >= cfg.reset_after) {
				sign_count = 0;
				sess_kill_all_locked(&cl);
			}
			pthread_mutex_unlock(&lock);
		}
	}
	sess_leave(&r);
	close_real(&cl);
	return log_call("C_Sign", rv);
}

static CK_RV shim_C_SignFinal(CK_SESSION_HANDLE h, CK_BYTE_PTR sig, CK_ULONG_PTR sig_len)
{
	struct shim_config c = call_begin_sign("C_SignFinal", h);
	struct sref r;
	CK_RV rv;

	if (c.sign_delay_ms)
		sleep_ms(c.sign_delay_ms);
	rv = sess_enter(h, &r);
	if (rv == CKR_OK)
		rv = real->C_SignFinal(r.real, sig, sig_len);
	sess_leave(&r);
	return log_call("C_SignFinal", rv);
}

/* ---------------------------------------------------------------------- */
/* Plain forwarding of the other session functions */

#define ARGS(...) __VA_ARGS__
#define FWD(name, decl, args)                                            \
	static CK_RV shim_##name(CK_SESSION_HANDLE h, ARGS decl)         \
	{                                                                \
		struct sref r;                                           \
		CK_RV rv;                                                \
		call_begin(#name);                                       \
		rv = sess_enter(h, &r);                                  \
		if (rv == CKR_OK)                                        \
			rv = real->name(r.real, ARGS args);              \
		sess_leave(&r);                                          \
		return log_call(#name, rv);                              \
	}
#define FWD0(name)                                                       \
	static CK_RV shim_##name(CK_SESSION_HANDLE h)                    \
	{                                                                \
		struct sref r;                                           \
		CK_RV rv;                                                \
		call_begin(#name);                                       \
		rv = sess_enter(h, &r);                                  \
		if (rv == CKR_OK)                                        \
			rv = real->name(r.real);                         \
		sess_leave(&r);                                          \
		return log_call(#name, rv);                              \
	}

FWD(C_InitPIN, (CK_UTF8CHAR_PTR pin, CK_ULONG len), (pin, len))
FWD(C_SetPIN, (CK_UTF8CHAR_PTR o, CK_ULONG ol, CK_UTF8CHAR_PTR n, CK_ULONG nl), (o, ol, n, nl))
FWD(C_GetOperationState, (CK_BYTE_PTR st, CK_ULONG_PTR len), (st, len))
FWD(C_SetOperationState, (CK_BYTE_PTR st, CK_ULONG len, CK_OBJECT_HANDLE ek, CK_OBJECT_HANDLE ak),
    (st, len, ek, ak))
FWD0(C_Logout)
FWD(C_CreateObject, (CK_ATTRIBUTE_PTR t, CK_ULONG n, CK_OBJECT_HANDLE_PTR o), (t, n, o))
FWD(C_CopyObject, (CK_OBJECT_HANDLE o, CK_ATTRIBUTE_PTR t, CK_ULONG n, CK_OBJECT_HANDLE_PTR no),
    (o, t, n, no))
FWD(C_DestroyObject, (CK_OBJECT_HANDLE o), (o))
FWD(C_GetObjectSize, (CK_OBJECT_HANDLE o, CK_ULONG_PTR sz), (o, sz))
FWD(C_GetAttributeValue, (CK_OBJECT_HANDLE o, CK_ATTRIBUTE_PTR t, CK_ULONG n), (o, t, n))
FWD(C_SetAttributeValue, (CK_OBJECT_HANDLE o, CK_ATTRIBUTE_PTR t, CK_ULONG n), (o, t, n))
FWD(C_FindObjectsInit, (CK_ATTRIBUTE_PTR t, CK_ULONG n), (t, n))
FWD(C_FindObjects, (CK_OBJECT_HANDLE_PTR o, CK_ULONG max, CK_ULONG_PTR n), (o, max, n))
FWD0(C_FindObjectsFinal)
FWD(C_EncryptInit, (CK_MECHANISM_PTR m, CK_OBJECT_HANDLE k), (m, k))
FWD(C_Encrypt, (CK_BYTE_PTR d, CK_ULONG dl, CK_BYTE_PTR o, CK_ULONG_PTR ol), (d, dl, o, ol))
FWD(C_EncryptUpdate, (CK_BYTE_PTR d, CK_ULONG dl, CK_BYTE_PTR o, CK_ULONG_PTR ol), (d, dl, o, ol))
FWD(C_EncryptFinal, (CK_BYTE_PTR o, CK_ULONG_PTR ol), (o, ol))
FWD(C_DecryptInit, (CK_MECHANISM_PTR m, CK_OBJECT_HANDLE k), (m, k))
FWD(C_Decrypt, (CK_BYTE_PTR d, CK_ULONG dl, CK_BYTE_PTR o, CK_ULONG_PTR ol), (d, dl, o, ol))
FWD(C_DecryptUpdate, (CK_BYTE_PTR d, CK_ULONG dl, CK_BYTE_PTR o, CK_ULONG_PTR ol), (d, dl, o, ol))
FWD(C_DecryptFinal, (CK_BYTE_PTR o, CK_ULONG_PTR ol), (o, ol))
FWD(C_DigestInit, (CK_MECHANISM_PTR m), (m))
FWD(C_Digest, (CK_BYTE_PTR d, CK_ULONG dl, CK_BYTE_PTR o, CK_ULONG_PTR ol), (d, dl, o, ol))
FWD(C_DigestUpdate, (CK_BYTE_PTR d, CK_ULONG dl), (d, dl))
FWD(C_DigestKey, (CK_OBJECT_HANDLE k), (k))
FWD(C_DigestFinal, (CK_BYTE_PTR o, CK_ULONG_PTR ol), (o, ol))
FWD(C_SignUpdate, (CK_BYTE_PTR d, CK_ULONG dl), (d, dl))
FWD(C_SignRecoverInit, (CK_MECHANISM_PTR m, CK_OBJECT_HANDLE k), (m, k))
FWD(C_SignRecover, (CK_BYTE_PTR d, CK_ULONG dl, CK_BYTE_PTR o, CK_ULONG_PTR ol), (d, dl, o, ol))
FWD(C_Verify, (CK_BYTE_PTR d, CK_ULONG dl, CK_BYTE_PTR s, CK_ULONG sl), (d, dl, s, sl))
FWD(C_VerifyUpdate, (CK_BYTE_PTR d, CK_ULONG dl), (d, dl))
FWD(C_VerifyFinal, (CK_BYTE_PTR s, CK_ULONG sl), (s, sl))
FWD(C_VerifyRecoverInit, (CK_MECHANISM_PTR m, CK_OBJECT_HANDLE k), (m, k))
FWD(C_VerifyRecover, (CK_BYTE_PTR s, CK_ULONG sl, CK_BYTE_PTR o, CK_ULONG_PTR ol), (s, sl, o, ol))
FWD(C_DigestEncryptUpdate, (CK_BYTE_PTR d, CK_ULONG dl, CK_BYTE_PTR o, CK_ULONG_PTR ol), (d, dl, o, ol))
FWD(C_DecryptDigestUpdate, (CK_BYTE_PTR d, CK_ULONG dl, CK_BYTE_PTR o, CK_ULONG_PTR ol), (d, dl, o, ol))
FWD(C_SignEncryptUpdate, (CK_BYTE_PTR d, CK_ULONG dl, CK_BYTE_PTR o, CK_ULONG_PTR ol), (d, dl, o, ol))
FWD(C_DecryptVerifyUpdate, (CK_BYTE_PTR d, CK_ULONG dl, CK_BYTE_PTR o, CK_ULONG_PTR ol), (d, dl, o, ol))
FWD(C_GenerateKey, (CK_MECHANISM_PTR m, CK_ATTRIBUTE_PTR t, CK_ULONG n, CK_OBJECT_HANDLE_PTR k),
    (m, t, n, k))
FWD(C_GenerateKeyPair, (CK_MECHANISM_PTR m, CK_ATTRIBUTE_PTR pt, CK_ULONG pn, CK_ATTRIBUTE_PTR vt,
			CK_ULONG vn, CK_OBJECT_HANDLE_PTR pk, CK_OBJECT_HANDLE_PTR vk),
    (m, pt, pn, vt, vn, pk, vk))
FWD(C_WrapKey, (CK_MECHANISM_PTR m, CK_OBJECT_HANDLE wk, CK_OBJECT_HANDLE k, CK_BYTE_PTR o,
		CK_ULONG_PTR ol),
    (m, wk, k, o, ol))
FWD(C_UnwrapKey, (CK_MECHANISM_PTR m, CK_OBJECT_HANDLE uk, CK_BYTE_PTR w, CK_ULONG wl,
		  CK_ATTRIBUTE_PTR t, CK_ULONG n, CK_OBJECT_HANDLE_PTR k),
    (m, uk, w, wl, t, n, k))
FWD(C_DeriveKey, (CK_MECHANISM_PTR m, CK_OBJECT_HANDLE bk, CK_ATTRIBUTE_PTR t, CK_ULONG n,
		  CK_OBJECT_HANDLE_PTR k),
    (m, bk, t, n, k))
FWD(C_SeedRandom, (CK_BYTE_PTR s, CK_ULONG sl), (s, sl))
FWD(C_GenerateRandom, (CK_BYTE_PTR o, CK_ULONG ol), (o, ol))
FWD0(C_GetFunctionStatus)
FWD0(C_CancelFunction)

/* ---------------------------------------------------------------------- */

static CK_FUNCTION_LIST shim_list = {
	.version = { 2, 40 },
#define F(name) .name = shim_##name
	F(C_Initialize), F(C_Finalize), F(C_GetInfo), F(C_GetFunctionList),
	F(C_GetSlotList), F(C_GetSlotInfo), F(C_GetTokenInfo),
	F(C_GetMechanismList), F(C_GetMechanismInfo), F(C_InitToken),
	F(C_InitPIN), F(C_SetPIN), F(C_OpenSession), F(C_CloseSession),
	F(C_CloseAllSessions), F(C_GetSessionInfo), F(C_GetOperationState),
	F(C_SetOperationState), F(C_Login), F(C_Logout), F(C_CreateObject),
	F(C_CopyObject), F(C_DestroyObject), F(C_GetObjectSize),
	F(C_GetAttributeValue), F(C_SetAttributeValue), F(C_FindObjectsInit),
	F(C_FindObjects), F(C_FindObjectsFinal), F(C_EncryptInit),
	F(C_Encrypt), F(C_EncryptUpdate), F(C_EncryptFinal), F(C_DecryptInit),
	F(C_Decrypt), F(C_DecryptUpdate), F(C_DecryptFinal), F(C_DigestInit),
	F(C_Digest), F(C_DigestUpdate), F(C_DigestKey), F(C_DigestFinal),
	F(C_SignInit), F(C_Sign), F(C_SignUpdate), F(C_SignFinal),
	F(C_SignRecoverInit), F(C_SignRecover), F(C_VerifyInit), F(C_Verify),
	F(C_VerifyUpdate), F(C_VerifyFinal), F(C_VerifyRecoverInit),
	F(C_VerifyRecover), F(C_DigestEncryptUpdate), F(C_DecryptDigestUpdate),
	F(C_SignEncryptUpdate), F(C_DecryptVerifyUpdate), F(C_GenerateKey),
	F(C_GenerateKeyPair), F(C_WrapKey), F(C_UnwrapKey), F(C_DeriveKey),
	F(C_SeedRandom), F(C_GenerateRandom), F(C_GetFunctionStatus),
	F(C_CancelFunction), F(C_WaitForSlotEvent),
#undef F
};

SHIM_EXPORT CK_RV C_GetFunctionList(CK_FUNCTION_LIST_PTR_PTR list)
{
	return shim_C_GetFunctionList(list);
}

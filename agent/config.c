/* firmanted configuration: INI file read with libinih. */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include <ini.h>

#include "agent.h"
#include "workers.h"
#include "hotplug.h"
#include "firmante/protocol.h"

struct parse_state {
	struct agent_config *cfg;
	const char *path;
	FILE *f;
	int cur_line;       /* line last handed to inih */
	int line;           /* line of our first error */
	int rc;             /* first error code */
	char msg[256];      /* first error message */
};

/* fgets for inih that counts lines, so key errors name their own line. */
static char *count_reader(char *str, int num, void *stream)
{
	struct parse_state *st = stream;
	char *r = fgets(str, num, st->f);

	if (r)
		st->cur_line++;
	return r;
}

static char *dup_str(const char *s)
{
	size_t n = strlen(s);
	char *p = malloc(n + 1);

	if (p)
		memcpy(p, s, n + 1);
	return p;
}

static void free_pinentry(struct agent_config *cfg)
{
	for (size_t i = 0; i < cfg->pinentry_argc; i++) {
		free(cfg->pinentry_argv[i]);
		cfg->pinentry_argv[i] = NULL;
	}
	cfg->pinentry_argc = 0;
}

/* Split @value on blanks into cfg->pinentry_argv. No quoting, no shell. */
static int set_pinentry(struct agent_config *cfg, const char *value, char *msg, size_t msg_size)
{
	char *argv[AGENT_MAX_PINENTRY_ARGS + 1] = { NULL };
	size_t argc = 0;
	const char *p = value;
	int rc = 0;

	while (*p) {
		const char *start;
		size_t len;

		while (*p == ' ' || *p == '\t')
			p++;
		if (!*p)
			break;
		start = p;
		while (*p && *p != ' ' && *p != '\t')
			p++;
		len = (size_t)(p - start);
		if (argc == AGENT_MAX_PINENTRY_ARGS) {
			snprintf(msg, msg_size, "pinentry: more than %d words", AGENT_MAX_PINENTRY_ARGS);
			rc = FIRMANTE_E_CONFIG;
			goto out;
		}
		argv[argc] = malloc(len + 1);
		if (!argv[argc]) {
			rc = FIRMANTE_E_NOMEM;
			goto out;
		}
		memcpy(argv[argc], start, len);
		argv[argc][len] = '\0';
		argc++;
	}
	if (argc == 0) {
		snprintf(msg, msg_size, "pinentry: empty program");
		rc = FIRMANTE_E_CONFIG;
		goto out;
	}
	free_pinentry(cfg);
	for (size_t i = 0; i < argc; i++) {
		cfg->pinentry_argv[i] = argv[i];
		argv[i] = NULL;
	}
	cfg->pinentry_argv[argc] = NULL;
	cfg->pinentry_argc = argc;
out:
	for (size_t i = 0; i < argc; i++)
		free(argv[i]);
	return rc;
}

static int parse_bool(const char *v, bool *out)
{
	if (!strcasecmp(v, "true") || !strcasecmp(v, "yes") || !strcasecmp(v, "on") ||
	    !strcmp(v, "1")) {
		*out = true;
		return 0;
	}
	if (!strcasecmp(v, "false") || !strcasecmp(v, "no") || !strcasecmp(v, "off") ||
	    !strcmp(v, "0")) {
		*out = false;
		return 0;
	}
	return FIRMANTE_E_CONFIG;
}

static int parse_long(const char *v, long min, long max, long *out)
{
	char *end = NULL;
	long n;

	errno = 0;
	n = strtol(v, &end, 10);
	if (errno || end == v || *end != '\0' || n < min || n > max)
		return FIRMANTE_E_CONFIG;
	*out = n;
	return 0;
}

/* One key; returns 0 or an error with @msg set. */
static int apply_key(struct agent_config *cfg, const char *section, const char *name,
		     const char *value, char *msg, size_t msg_size)
{
	bool b;
	long n;

	if (strcmp(section, "agent") != 0) {
		snprintf(msg, msg_size, "unknown section [%s] (expected [agent])", section);
		return FIRMANTE_E_CONFIG;
	}
	if (!strcmp(name, "socket")) {
		if (value[0] != '/') {
			snprintf(msg, msg_size, "socket: must be an absolute path");
			return FIRMANTE_E_CONFIG;
		}
		if (strlen(value) >= sizeof(cfg->socket_path)) {
			snprintf(msg, msg_size, "socket: path longer than %zu bytes",
				 sizeof(cfg->socket_path) - 1);
			return FIRMANTE_E_CONFIG;
		}
		snprintf(cfg->socket_path, sizeof(cfg->socket_path), "%s", value);
		return 0;
	}
	if (!strcmp(name, "module")) {
		char *copy;

		if (value[0] != '/') {
			snprintf(msg, msg_size, "module: must be an absolute path");
			return FIRMANTE_E_CONFIG;
		}
		if (cfg->n_modules == AGENT_MAX_MODULES) {
			snprintf(msg, msg_size, "module: more than %d modules", AGENT_MAX_MODULES);
			return FIRMANTE_E_CONFIG;
		}
		copy = dup_str(value);
		if (!copy)
			return FIRMANTE_E_NOMEM;
		cfg->modules[cfg->n_modules++] = copy;
		return 0;
	}
	if (!strcmp(name, "use-p11kit-modules")) {
		if (parse_bool(value, &b)) {
			snprintf(msg, msg_size, "use-p11kit-modules: expected true or false");
			return FIRMANTE_E_CONFIG;
		}
		cfg->use_p11kit_modules = b;
		return 0;
	}
	if (!strcmp(name, "pinentry"))
		return set_pinentry(cfg, value, msg, msg_size);
	if (!strcmp(name, "approval-timeout")) {
		if (parse_long(value, 1, AGENT_MAX_APPROVAL_TIMEOUT, &n)) {
			snprintf(msg, msg_size, "approval-timeout: expected seconds from 1 to %d",
				 AGENT_MAX_APPROVAL_TIMEOUT);
			return FIRMANTE_E_CONFIG;
		}
		cfg->approval_timeout = n;
		return 0;
	}
	if (!strcmp(name, "allow-extractable-keys")) {
		if (parse_bool(value, &b)) {
			snprintf(msg, msg_size, "allow-extractable-keys: expected true or false");
			return FIRMANTE_E_CONFIG;
		}
		cfg->allow_extractable_keys = b;
		return 0;
	}
	if (!strcmp(name, "max-clients")) {
		if (parse_long(value, 1, AGENT_MAX_CLIENTS_LIMIT, &n)) {
			snprintf(msg, msg_size, "max-clients: expected a number from 1 to %d",
				 AGENT_MAX_CLIENTS_LIMIT);
			return FIRMANTE_E_CONFIG;
		}
		cfg->max_clients = (unsigned)n;
		return 0;
	}
	if (!strcmp(name, "token-poll-interval")) {
		if (parse_long(value, 1, AGENT_POLL_INTERVAL_MAX, &n)) {
			snprintf(msg, msg_size, "token-poll-interval: expected seconds from 1 to %d",
				 AGENT_POLL_INTERVAL_MAX);
			return FIRMANTE_E_CONFIG;
		}
		cfg->token_poll_interval = n;
		return 0;
	}
	if (!strcmp(name, "batch-pause-timeout")) {
		if (parse_long(value, 1, AGENT_BATCH_PAUSE_MAX, &n)) {
			snprintf(msg, msg_size, "batch-pause-timeout: expected seconds from 1 to %d",
				 AGENT_BATCH_PAUSE_MAX);
			return FIRMANTE_E_CONFIG;
		}
		cfg->batch_pause_timeout = n;
		return 0;
	}
	if (!strcmp(name, "token-timeout")) {
		/* Kept by the token workers (agent/workers.h). */
		if (parse_long(value, 1, AGENT_MAX_TOKEN_TIMEOUT, &n)) {
			snprintf(msg, msg_size, "token-timeout: expected seconds from 1 to %d",
				 AGENT_MAX_TOKEN_TIMEOUT);
			return FIRMANTE_E_CONFIG;
		}
		agent_workers_set_timeout(n);
		return 0;
	}
	if (!strcmp(name, "audit-log") || !strcmp(name, "policy") ||
	    !strcmp(name, "paired-origins")) {
		char *dst = !strcmp(name, "audit-log") ? cfg->audit_log :
			    !strcmp(name, "policy") ? cfg->policy_file : cfg->pairings_file;

		if (value[0] != '/' || strlen(value) >= AGENT_PATH_MAX) {
			snprintf(msg, msg_size, "%s: must be an absolute path", name);
			return FIRMANTE_E_CONFIG;
		}
		snprintf(dst, AGENT_PATH_MAX, "%s", value);
		return 0;
	}
	if (!strcmp(name, "approval")) {
		if (!strcmp(value, "pinentry"))
			cfg->approval_queue = false;
		else if (!strcmp(value, "queue"))
			cfg->approval_queue = true;
		else {
			snprintf(msg, msg_size, "approval: expected pinentry or queue");
			return FIRMANTE_E_CONFIG;
		}
		return 0;
	}
	if (!strcmp(name, "group")) {
		if (!value[0] || strlen(value) >= sizeof(cfg->group)) {
			snprintf(msg, msg_size, "group: expected a group name");
			return FIRMANTE_E_CONFIG;
		}
		snprintf(cfg->group, sizeof(cfg->group), "%s", value);
		return 0;
	}
	if (!strcmp(name, "pin-cache")) {
		const char *colon = strrchr(value, ':');
		size_t len = colon ? (size_t)(colon - value) : 0;

		if (cfg->n_pin_cache == AGENT_MAX_PIN_CACHE) {
			snprintf(msg, msg_size, "pin-cache: more than %d tokens", AGENT_MAX_PIN_CACHE);
			return FIRMANTE_E_CONFIG;
		}
		if (!colon || len == 0 || len > 32 ||
		    parse_long(colon + 1, 1, AGENT_MAX_PIN_CACHE_SECONDS, &n)) {
			snprintf(msg, msg_size,
				 "pin-cache: expected TOKEN:SECONDS (token label or serial, seconds "
				 "from 1 to %d)", AGENT_MAX_PIN_CACHE_SECONDS);
			return FIRMANTE_E_CONFIG;
		}
		memcpy(cfg->pin_cache[cfg->n_pin_cache].token, value, len);
		cfg->pin_cache[cfg->n_pin_cache].token[len] = '\0';
		cfg->pin_cache[cfg->n_pin_cache].seconds = n;
		cfg->n_pin_cache++;
		return 0;
	}
	if (!strcmp(name, "browser-port")) {
		if (parse_long(value, 0, 65535, &n)) {
			snprintf(msg, msg_size, "browser-port: expected a TCP port from 1 to 65535, "
				 "or 0 for no browser listener");
			return FIRMANTE_E_CONFIG;
		}
		cfg->browser_port = (unsigned)n;
		return 0;
	}
	snprintf(msg, msg_size, "unknown key \"%s\"", name);
	return FIRMANTE_E_CONFIG;
}

static int ini_cb(void *user, const char *section, const char *name, const char *value)
{
	struct parse_state *st = user;
	char msg[256];
	int rc;

	if (st->rc)
		return 1; /* keep only the first error; inih reports its line */
	if (!name) /* a section header with no key (INI_CALL_HANDLER_ON_NEW_SECTION) */
		return 1;
	msg[0] = '\0';
	rc = apply_key(st->cfg, section, name, value ? value : "", msg, sizeof(msg));
	if (rc) {
		st->rc = rc;
		st->line = st->cur_line;
		snprintf(st->msg, sizeof(st->msg), "%s", msg[0] ? msg : "out of memory");
		return 0;
	}
	return 1;
}

int agent_config_default_path(char *buf, size_t size)
{
	const char *xdg = getenv("XDG_CONFIG_HOME");
	const char *home = getenv("HOME");
	int n;

	if (xdg && xdg[0] == '/')
		n = snprintf(buf, size, "%s/firmante/firmanted.conf", xdg);
	else if (home && home[0] == '/')
		n = snprintf(buf, size, "%s/.config/firmante/firmanted.conf", home);
	else
		return FIRMANTE_E_CONFIG;
	if (n < 0 || (size_t)n >= size)
		return FIRMANTE_E_CONFIG;
	return 0;
}

int agent_config_defaults(struct agent_config *cfg, char *err, size_t err_size)
{
	const char *rt = getenv("XDG_RUNTIME_DIR");
	char msg[128];
	int n, rc;

	memset(cfg, 0, sizeof(*cfg));
	cfg->use_p11kit_modules = true;
	cfg->approval_timeout = 120;
	cfg->token_poll_interval = AGENT_POLL_INTERVAL_DEFAULT;
	cfg->batch_pause_timeout = AGENT_BATCH_PAUSE_DEFAULT;
	cfg->allow_extractable_keys = false;
	cfg->max_clients = 16;
	cfg->group_gid = (gid_t)-1;
	if (rt && rt[0] == '/')
		n = snprintf(cfg->socket_path, sizeof(cfg->socket_path), "%s/firmante/agent.sock", rt);
	else
		n = snprintf(cfg->socket_path, sizeof(cfg->socket_path),
			     "/run/user/%lu/firmante/agent.sock", (unsigned long)geteuid());
	if (n < 0 || (size_t)n >= sizeof(cfg->socket_path)) {
		snprintf(err, err_size, "the default socket path under XDG_RUNTIME_DIR is too long");
		return FIRMANTE_E_CONFIG;
	}
	/* Audit log and paired origins under $XDG_STATE_HOME (or ~/.local/state);
	 * without either, audit-log must be configured. */
	if (agent_audit_default_path(cfg->audit_log, sizeof(cfg->audit_log)) == 0) {
		size_t len = strlen(cfg->audit_log) - strlen("audit.log");

		n = snprintf(cfg->pairings_file, sizeof(cfg->pairings_file), "%.*spaired-origins",
			     (int)len, cfg->audit_log);
		if (n < 0 || (size_t)n >= sizeof(cfg->pairings_file))
			cfg->pairings_file[0] = '\0';
	}
	rc = set_pinentry(cfg, "pinentry", msg, sizeof(msg));
	if (rc)
		snprintf(err, err_size, "%s", msg);
	return rc;
}

int agent_config_load(struct agent_config *cfg, const char *path, bool missing_ok,
		      char *err, size_t err_size)
{
	struct parse_state st = { .cfg = cfg, .path = path };
	struct stat sb;
	FILE *f = NULL;
	int line, rc = 0;

	f = fopen(path, "re");
	if (!f) {
		if (errno == ENOENT && missing_ok)
			goto out;
		snprintf(err, err_size, "%s: %s", path, strerror(errno));
		rc = FIRMANTE_E_CONFIG;
		goto out;
	}
	if (fstat(fileno(f), &sb) != 0 || !S_ISREG(sb.st_mode)) {
		snprintf(err, err_size, "%s: not a regular file", path);
		rc = FIRMANTE_E_CONFIG;
		goto out;
	}
	st.f = f;
	line = ini_parse_stream(count_reader, &st, ini_cb, &st);
	if (line == -2 || st.rc == FIRMANTE_E_NOMEM) {
		snprintf(err, err_size, "%s: out of memory", path);
		rc = FIRMANTE_E_NOMEM;
		goto out;
	}
	if (line > 0) {
		if (st.rc && st.line <= line)
			snprintf(err, err_size, "%s:%d: %s", path, st.line, st.msg);
		else
			snprintf(err, err_size, "%s:%d: syntax error (expected [section] or key = value)",
				 path, line);
		rc = FIRMANTE_E_CONFIG;
		goto out;
	}
	if (line != 0) {
		snprintf(err, err_size, "%s: cannot be read", path);
		rc = FIRMANTE_E_CONFIG;
		goto out;
	}
	snprintf(cfg->source, sizeof(cfg->source), "%s", path);
out:
	if (f)
		fclose(f);
	return rc;
}

void agent_config_clear(struct agent_config *cfg)
{
	if (!cfg)
		return;
	for (size_t i = 0; i < cfg->n_modules; i++)
		free(cfg->modules[i]);
	cfg->n_modules = 0;
	free_pinentry(cfg);
}

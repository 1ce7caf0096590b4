/* firmanted --check-config: who could change what the configuration names. */
#include <dlfcn.h>
#include <errno.h>
#include <stdarg.h>
#include <stdbool.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <ini.h>

#include "checkconfig.h"
#include "firmante/protocol.h"

struct checker {
	const struct agent_config *cfg;
	void (*report)(void *ctx, const char *line);
	void *ctx;
	unsigned problems;
};

/* ---- where a key is in the configuration file ------------------------- */

struct key_search {
	FILE *f;
	int cur_line;
	const char *key;
	const char *value;  /* NULL: any value */
	int found;          /* line, 0 when not found */
};

static char *search_reader(char *str, int num, void *stream)
{
	struct key_search *ks = stream;
	char *r = fgets(str, num, ks->f);

	if (r)
		ks->cur_line++;
	return r;
}

static int search_cb(void *user, const char *section, const char *name, const char *value)
{
	struct key_search *ks = user;

	(void)section;
	if (ks->found || !name)
		return 1;
	if (strcmp(name, ks->key) == 0 && (!ks->value || strcmp(value ? value : "", ks->value) == 0))
		ks->found = ks->cur_line;
	return 1;
}

/* The line of "@key = @value" in @path, or 0 (defaults, or not found). */
static int key_line(const char *path, const char *key, const char *value)
{
	struct key_search ks = { .key = key, .value = value };

	if (!path[0])
		return 0;
	ks.f = fopen(path, "re");
	if (!ks.f)
		return 0;
	ini_parse_stream(search_reader, &ks, search_cb, &ks);
	fclose(ks.f);
	return ks.found;
}

/* ---- reporting ------------------------------------------------------------ */

static void problem(struct checker *c, int line, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static void problem(struct checker *c, int line, const char *fmt, ...)
{
	char msg[1024], out[1400];
	va_list ap;
	int n;

	c->problems++;
	if (c->problems > AGENT_CHECK_MAX_REPORTS)
		return;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	if (line > 0)
		n = snprintf(out, sizeof(out), "%s:%d: %s", c->cfg->source, line, msg);
	else if (c->cfg->source[0])
		n = snprintf(out, sizeof(out), "%s: %s", c->cfg->source, msg);
	else
		n = snprintf(out, sizeof(out), "(built-in defaults): %s", msg);
	if (n < 0)
		return;
	/* A line longer than the buffer is cut; the report stays one line. */
	c->report(c->ctx, out);
}

/* ---- the checks ------------------------------------------------------------ */

static int owner_ok(uid_t uid)
{
	return uid == 0 || uid == geteuid();
}

/*
 * Check @path and every directory above it. @what names the file for the
 * reader ("PKCS#11 module", ...); @line is where the configuration names it.
 */
static void check_chain(struct checker *c, const char *what, const char *path, int line)
{
	char cur[AGENT_PATH_MAX];
	struct stat sb;
	size_t depth = 0;

	if (snprintf(cur, sizeof(cur), "%s", path) >= (int)sizeof(cur)) {
		problem(c, line, "%s %s: path too long to check", what, path);
		return;
	}
	if (stat(cur, &sb) != 0) {
		problem(c, line, "%s %s: %s", what, path, strerror(errno));
		return;
	}
	for (;;) {
		bool is_dir = S_ISDIR(sb.st_mode);
		const char *kind = depth == 0 ? what : "directory";

		if (!owner_ok(sb.st_uid))
			problem(c, line,
				"unsafe permissions: %s %s belongs to uid %lu, not to root or to "
				"the agent's user (uid %lu); another user could replace %s",
				kind, cur, (unsigned long)sb.st_uid, (unsigned long)geteuid(),
				depth == 0 ? "it" : path);
		else if ((sb.st_mode & (S_IWGRP | S_IWOTH)) && !(is_dir && (sb.st_mode & S_ISVTX)))
			problem(c, line,
				"unsafe permissions: %s %s can be changed by %s (mode %04o); "
				"another user could replace %s (fix: chmod go-w %s)",
				kind, cur, (sb.st_mode & S_IWOTH) ? "every user" : "its group",
				(unsigned)(sb.st_mode & 07777), depth == 0 ? "it" : path, cur);
		if (strcmp(cur, "/") == 0)
			break;
		if (++depth > AGENT_CHECK_MAX_DEPTH) {
			problem(c, line, "%s %s: more than %d directories deep", what, path,
				AGENT_CHECK_MAX_DEPTH);
			break;
		}
		/* Up one directory. */
		char *slash = strrchr(cur, '/');

		if (!slash)
			break; /* relative path: stop at the working directory */
		if (slash == cur)
			slash[1] = '\0';
		else
			*slash = '\0';
		if (stat(cur, &sb) != 0) {
			problem(c, line, "directory %s: %s", cur, strerror(errno));
			break;
		}
	}
}

/* Check @path as given and, when it is a symbolic link, where it leads. */
static void check_file(struct checker *c, const char *what, const char *path, int line)
{
	char *real = realpath(path, NULL);

	check_chain(c, what, path, line);
	if (real && strcmp(real, path) != 0)
		check_chain(c, what, real, line);
	free(real);
}

/* @prog as execvp would find it, in @buf; 0 or -1 when not found. */
static int find_in_path(const char *prog, char *buf, size_t size)
{
	const char *path = getenv("PATH");
	const char *p;

	if (strchr(prog, '/')) {
		if (snprintf(buf, size, "%s", prog) >= (int)size)
			return -1;
		return 0;
	}
	if (!path || !path[0])
		path = "/usr/local/bin:/usr/bin:/bin";
	p = path;
	while (*p) {
		const char *end = strchr(p, ':');
		size_t len = end ? (size_t)(end - p) : strlen(p);

		if (len > 0 && (size_t)snprintf(buf, size, "%.*s/%s", (int)len, p, prog) < size &&
		    access(buf, X_OK) == 0)
			return 0;
		if (!end)
			break;
		p = end + 1;
	}
	return -1;
}

static void check_socket_dir(struct checker *c)
{
	char dir[AGENT_SOCKET_PATH_MAX];
	char *slash;
	struct stat sb;
	int line = key_line(c->cfg->source, "socket", NULL);

	snprintf(dir, sizeof(dir), "%s", c->cfg->socket_path);
	slash = strrchr(dir, '/');
	if (!slash || slash == dir)
		return;
	*slash = '\0';
	if (lstat(dir, &sb) != 0)
		return; /* created 0700 when the agent starts */
	if (!S_ISDIR(sb.st_mode)) {
		problem(c, line, "socket directory %s is not a directory (symbolic links are refused)",
			dir);
		return;
	}
	if (sb.st_uid != geteuid())
		problem(c, line,
			"unsafe permissions: socket directory %s belongs to uid %lu, not to the "
			"agent's user (uid %lu)",
			dir, (unsigned long)sb.st_uid, (unsigned long)geteuid());
	else if (c->cfg->group[0] && (sb.st_mode & 027))
		/* "group = NAME": the agent opens it 0750 to that group itself. */
		problem(c, line,
			"unsafe permissions: socket directory %s is writable by its group or open "
			"to others (mode %04o); with \"group\" it must be 0750 (fix: chmod 750 %s)",
			dir, (unsigned)(sb.st_mode & 07777), dir);
	else if (!c->cfg->group[0] && (sb.st_mode & 077))
		problem(c, line,
			"unsafe permissions: socket directory %s is open to group or others "
			"(mode %04o); it must be 0700 (fix: chmod 700 %s)",
			dir, (unsigned)(sb.st_mode & 07777), dir);
}

int agent_check_pinentry(const struct agent_config *cfg, char *msg, size_t size)
{
	char prog[AGENT_PATH_MAX];
	struct stat sb;

	if (cfg->pinentry_argc == 0)
		return 0;
	if (find_in_path(cfg->pinentry_argv[0], prog, sizeof(prog)) != 0) {
		snprintf(msg, size, "pinentry program \"%.200s\" is not found in PATH",
			 cfg->pinentry_argv[0]);
		return FIRMANTE_E_CONFIG;
	}
	if (stat(prog, &sb) != 0) {
		snprintf(msg, size, "pinentry program %.200s: %s", prog, strerror(errno));
		return FIRMANTE_E_CONFIG;
	}
	if (!S_ISREG(sb.st_mode) || access(prog, X_OK) != 0) {
		snprintf(msg, size, "pinentry program %.200s is not an executable file%s", prog,
			 S_ISREG(sb.st_mode) ? " (fix: chmod +x)" : "");
		return FIRMANTE_E_CONFIG;
	}
	return 0;
}

int agent_check_module(const char *path, char *msg, size_t size)
{
	void *h;
	const char *why;

	dlerror();
	h = dlopen(path, RTLD_NOW | RTLD_LOCAL);
	if (!h) {
		why = dlerror();
		snprintf(msg, size, "PKCS#11 module %.200s cannot be loaded: %.300s", path,
			 why ? why : "unknown reason");
		return FIRMANTE_E_CONFIG;
	}
	if (!dlsym(h, "C_GetFunctionList")) {
		snprintf(msg, size,
			 "%.200s is not a PKCS#11 module: it has no C_GetFunctionList function", path);
		dlclose(h);
		return FIRMANTE_E_CONFIG;
	}
	dlclose(h);
	return 0;
}

int agent_check_permissions(const struct agent_config *cfg,
			    void (*report)(void *ctx, const char *line), void *ctx)
{
	struct checker c = { .cfg = cfg, .report = report, .ctx = ctx };
	char prog[AGENT_PATH_MAX];

	if (cfg->source[0])
		check_chain(&c, "configuration file", cfg->source, 0);
	for (size_t i = 0; i < cfg->n_modules; i++) {
		int line = key_line(cfg->source, "module", cfg->modules[i]);
		unsigned before = c.problems;
		char msg[600];

		check_file(&c, "PKCS#11 module", cfg->modules[i], line);
		/* Only a module nobody else could have changed is loaded to try it. */
		if (c.problems == before && agent_check_module(cfg->modules[i], msg, sizeof(msg)))
			problem(&c, line, "%s", msg);
	}
	if (cfg->pinentry_argc > 0) {
		int line = key_line(cfg->source, "pinentry", NULL);
		char msg[600];

		if (agent_check_pinentry(cfg, msg, sizeof(msg)))
			problem(&c, line, "%s", msg);
		else if (find_in_path(cfg->pinentry_argv[0], prog, sizeof(prog)) == 0)
			check_file(&c, "pinentry program", prog, line);
	}
	check_socket_dir(&c);
	if (c.problems > AGENT_CHECK_MAX_REPORTS) {
		char more[128];

		snprintf(more, sizeof(more), "... and %u more problems",
			 c.problems - AGENT_CHECK_MAX_REPORTS);
		report(ctx, more);
	}
	return c.problems ? FIRMANTE_E_CONFIG : 0;
}

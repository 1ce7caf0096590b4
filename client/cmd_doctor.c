/*
 * firmante doctor: checks the signing setup of this workstation, one line
 * per finding:
 *
 *   OK    <what>: <detail>
 *   WARN  <what>: <detail> (hint: <what to do>)
 *   FAIL  <what>: <detail> (hint: <what to do>)
 *
 * Modules (the agent configuration's module paths and, unless it says
 * otherwise, the p11-kit registered ones), tokens, signing identities with
 * their expiry, PIN state flags, pcscd, udev rules, the agent's socket
 * directory and socket, and the agent itself (GET /v1/status). It talks to
 * the tokens directly (as the agent would) and to the agent over its socket.
 * Exit status 0 when nothing FAILed (warnings allowed), 1 otherwise.
 */
#include <errno.h>
#include <getopt.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include <ini.h>
#include <jansson.h>

#include "firmante/client.h"
#include "firmante/protocol.h"
#include "firmante/token.h"
#include "commands.h"

/*
 * A certificate expiring within this many days gets a WARN. Issue 5 asks
 * for a warning under 30 days; onboarding asks for 60 days so a holder has
 * time to renew at SAT: 60 covers both. --warn-days changes it.
 */
#define DOCTOR_CERT_WARN_DAYS 60
#define DOCTOR_WARN_DAYS_MAX 3650
#define DOCTOR_MAX_MODULES 16   /* module = lines read from the configuration */
#define DOCTOR_MAX_UDEV_DIRS 8
#define DOCTOR_MAX_CHECKS 512   /* lines printed; the rest are counted */
#define DOCTOR_PATH_MAX 1024
#define DOCTOR_AGENT_TIMEOUT 10 /* seconds for GET /v1/status */
#define DOCTOR_PCSCD_SOCKET "/run/pcscd/pcscd.comm"
#define DOCTOR_UDEV_RULES "70-firmante-tokens.rules"

enum level { LV_OK, LV_WARN, LV_FAIL };

struct doctor {
	bool json;
	json_t *checks;   /* --json: array of findings */
	size_t n_checks;
	size_t n_fail, n_warn;
};

static const char *level_word(enum level lv)
{
	return lv == LV_OK ? "OK" : lv == LV_WARN ? "WARN" : "FAIL";
}

/* Record one finding; @hint may be NULL (and is not printed for OK). */
static void report(struct doctor *d, enum level lv, const char *what, const char *hint,
		   const char *fmt, ...) __attribute__((format(printf, 5, 6)));

static void report(struct doctor *d, enum level lv, const char *what, const char *hint,
		   const char *fmt, ...)
{
	char detail[1024];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(detail, sizeof(detail), fmt, ap);
	va_end(ap);
	if (lv == LV_FAIL)
		d->n_fail++;
	else if (lv == LV_WARN)
		d->n_warn++;
	if (d->n_checks++ >= DOCTOR_MAX_CHECKS)
		return;
	if (lv == LV_OK)
		hint = NULL;
	if (d->json) {
		json_t *o = json_pack("{s:s, s:s, s:s}", "status",
				      lv == LV_OK ? "ok" : lv == LV_WARN ? "warn" : "fail", "what",
				      what, "detail", detail);
		if (o && hint)
			json_object_set_new(o, "hint", json_string(hint));
		if (o)
			json_array_append_new(d->checks, o);
		return;
	}
	printf("%-4s  %s: %s", level_word(lv), what, detail);
	if (hint)
		printf(" (hint: %s)", hint);
	putchar('\n');
}

/* ------------------------------------------------------------------ */
/* The agent's configuration: only the keys the doctor needs. */

struct agent_conf {
	char source[DOCTOR_PATH_MAX]; /* "" when built-in defaults */
	char socket[DOCTOR_PATH_MAX];
	char *modules[DOCTOR_MAX_MODULES];
	size_t n_modules;
	bool use_p11kit;
	bool too_many_modules;
	char group[64]; /* group = NAME: members may use the agent (0750/0660) */
};

static int conf_handler(void *user, const char *section, const char *name, const char *value)
{
	struct agent_conf *c = user;

	if (strcmp(section, "agent") != 0)
		return 1;
	if (!strcmp(name, "socket")) {
		snprintf(c->socket, sizeof(c->socket), "%s", value);
	} else if (!strcmp(name, "module")) {
		if (c->n_modules == DOCTOR_MAX_MODULES) {
			c->too_many_modules = true;
			return 1;
		}
		c->modules[c->n_modules] = strdup(value);
		if (!c->modules[c->n_modules])
			return 0;
		c->n_modules++;
	} else if (!strcmp(name, "group")) {
		snprintf(c->group, sizeof(c->group), "%s", value);
	} else if (!strcmp(name, "use-p11kit-modules")) {
		c->use_p11kit = !(!strcasecmp(value, "false") || !strcasecmp(value, "no") ||
				  !strcasecmp(value, "off") || !strcmp(value, "0"));
	}
	return 1;
}

static void conf_clear(struct agent_conf *c)
{
	for (size_t i = 0; i < c->n_modules; i++)
		free(c->modules[i]);
	c->n_modules = 0;
}

static int default_config_path(char *buf, size_t size)
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
	return (n < 0 || (size_t)n >= size) ? FIRMANTE_E_CONFIG : 0;
}

static void check_config(struct doctor *d, const char *path, struct agent_conf *c)
{
	char def[DOCTOR_PATH_MAX];
	bool explicit_path = path != NULL;

	c->use_p11kit = true;
	if (!path) {
		if (default_config_path(def, sizeof(def)) != 0) {
			report(d, LV_OK, "configuration", NULL,
			       "built-in defaults (no HOME or XDG_CONFIG_HOME)");
			return;
		}
		path = def;
	}
	if (access(path, F_OK) != 0 && !explicit_path) {
		report(d, LV_OK, "configuration", NULL, "built-in defaults (no file at %s)", path);
		return;
	}
	int rc = ini_parse(path, conf_handler, c);
	if (rc != 0) {
		if (rc < 0)
			report(d, LV_FAIL, "configuration", "check the path and its permissions",
			       "cannot read %s: %s", path, strerror(errno));
		else
			report(d, LV_FAIL, "configuration",
			       "firmanted --check-config shows what is wrong",
			       "%s: line %d cannot be read", path, rc);
		return;
	}
	snprintf(c->source, sizeof(c->source), "%s", path);
	report(d, LV_OK, "configuration", NULL, "%s", path);
	if (c->too_many_modules)
		report(d, LV_WARN, "configuration", "list at most 16 modules",
		       "more than %d module lines; only the first %d are checked",
		       DOCTOR_MAX_MODULES, DOCTOR_MAX_MODULES);
}

/* ------------------------------------------------------------------ */
/* Modules, tokens, identities */

static int open_modules(struct doctor *d, const struct agent_conf *c, fp11_ctx **out)
{
	const char *good[DOCTOR_MAX_MODULES];
	size_t n_good = 0, n_found = 0;
	fp11_ctx *p11 = NULL;
	struct fp11_module_info *mi = NULL;
	size_t n_mi = 0;
	char what[DOCTOR_PATH_MAX + 16];

	/* Each configured path on its own, so a bad one is named. */
	for (size_t i = 0; i < c->n_modules; i++) {
		const char *path = c->modules[i];
		struct fp11_config one = { &path, 1, false };

		snprintf(what, sizeof(what), "module %s", path);
		if (path[0] != '/') {
			report(d, LV_FAIL, what, "module = needs an absolute path",
			       "not an absolute path");
			continue;
		}
		if (access(path, R_OK) != 0) {
			report(d, LV_FAIL, what,
			       "install the token's PKCS#11 module or correct module = in "
			       "firmanted.conf",
			       "%s", strerror(errno));
			continue;
		}
		if (fp11_open(&one, &p11) != 0) {
			report(d, LV_FAIL, what,
			       "the file is not a working PKCS#11 module; reinstall the token's "
			       "software",
			       "cannot be loaded or initialised");
			continue;
		}
		if (fp11_list_modules(p11, &mi, &n_mi) == 0 && n_mi == 1)
			report(d, LV_OK, what, NULL, "loaded from the configuration (%s)",
			       mi[0].description[0] ? mi[0].description : "no description");
		else
			report(d, LV_OK, what, NULL, "loaded from the configuration");
		free(mi);
		mi = NULL;
		fp11_close(p11);
		p11 = NULL;
		good[n_good++] = path;
		n_found++;
	}
	if (c->use_p11kit) {
		struct fp11_config reg = { NULL, 0, true };

		if (fp11_open(&reg, &p11) != 0) {
			report(d, LV_FAIL, "p11-kit",
			       "p11-kit --list-modules shows which registration is broken",
			       "the registered modules cannot be loaded");
			p11 = NULL;
		} else if (fp11_list_modules(p11, &mi, &n_mi) == 0) {
			for (size_t i = 0; i < n_mi; i++) {
				snprintf(what, sizeof(what), "module %s", mi[i].name);
				report(d, LV_OK, what, NULL, "registered with p11-kit (%s)",
				       mi[i].description[0] ? mi[i].description : "no description");
			}
			n_found += n_mi;
			free(mi);
			mi = NULL;
		}
		fp11_close(p11);
		p11 = NULL;
	}
	if (n_found == 0) {
		report(d, LV_FAIL, "modules",
		       "install your token's PKCS#11 module (it registers itself with p11-kit) "
		       "or add module = PATH to firmanted.conf",
		       "no PKCS#11 module found");
		return FIRMANTE_E_CONFIG;
	}
	struct fp11_config all = { good, n_good, c->use_p11kit };
	if (fp11_open(&all, &p11) != 0) {
		report(d, LV_FAIL, "modules", "run firmante doctor again; if it persists, "
		       "remove modules one by one from firmanted.conf",
		       "the modules load one by one but not together");
		return FIRMANTE_E_CONFIG;
	}
	*out = p11;
	return 0;
}

static int cmp_tokens(const void *a, const void *b)
{
	const struct fp11_token_info *x = a, *y = b;
	int r = strcmp(x->label, y->label);
	return r ? r : strcmp(x->serial, y->serial);
}

static void check_tokens(struct doctor *d, fp11_ctx *p11)
{
	struct fp11_token_info *t = NULL;
	size_t n = 0;
	char what[128];

	if (fp11_list_tokens(p11, &t, &n) != 0) {
		report(d, LV_FAIL, "tokens", "unplug the token and plug it in again",
		       "the modules could not list their tokens");
		return;
	}
	if (n == 0) {
		report(d, LV_FAIL, "tokens",
		       "plug in your token; if it is plugged in, check pcscd and the udev "
		       "rules below",
		       "no token present");
		free(t);
		return;
	}
	qsort(t, n, sizeof(*t), cmp_tokens);
	for (size_t i = 0; i < n; i++) {
		snprintf(what, sizeof(what), "token \"%s\"", t[i].label);
		report(d, LV_OK, what, NULL, "serial %s, %s %s, module %s", t[i].serial,
		       t[i].manufacturer, t[i].model, t[i].module);
		snprintf(what, sizeof(what), "PIN of token \"%s\"", t[i].label);
		if (t[i].user_pin_locked)
			report(d, LV_FAIL, what,
			       "the PIN is blocked after too many wrong tries; unblock it with "
			       "the token's PUK or administrator PIN (the maker's tool)",
			       "locked");
		else if (t[i].user_pin_final_try)
			report(d, LV_WARN, what,
			       "one wrong PIN more locks the token; be sure of the PIN before "
			       "signing",
			       "final try left");
		else if (t[i].user_pin_count_low)
			report(d, LV_WARN, what,
			       "the next signature asks for the PIN; type it carefully",
			       "a wrong PIN was entered before");
		else if (t[i].login_required && !t[i].user_pin_initialized)
			report(d, LV_FAIL, what,
			       "set the user PIN with the token maker's tool first",
			       "no user PIN set on this token");
		else if (t[i].protected_auth_path)
			report(d, LV_OK, what, NULL, "entered on the token's PIN pad");
		else
			report(d, LV_OK, what, NULL, "ok");
	}
	free(t);
}

static int cmp_ids(const void *a, const void *b)
{
	const struct fp11_identity *x = a, *y = b;
	int r = strcmp(x->token.label, y->token.label);
	if (!r)
		r = strcmp(x->token.serial, y->token.serial);
	if (!r)
		r = strcmp(x->cert.no_certificado, y->cert.no_certificado);
	return r;
}

static void check_identities(struct doctor *d, fp11_ctx *p11, long warn_days, time_t now)
{
	struct fp11_identity *ids = NULL;
	size_t n = 0;
	char what[512], until[32];

	if (fp11_list_identities(p11, &ids, &n) != 0) {
		report(d, LV_FAIL, "signing keys", "unplug the token and plug it in again",
		       "the tokens could not be read");
		return;
	}
	if (n == 0) {
		report(d, LV_WARN, "signing keys",
		       "put your e.firma on the token with firmante import --cer FILE.cer "
		       "--key FILE.key",
		       "no key with its certificate on any token");
		goto out;
	}
	qsort(ids, n, sizeof(*ids), cmp_ids);
	for (size_t i = 0; i < n; i++) {
		const struct fp11_identity *id = &ids[i];

		if (id->cert_err) {
			snprintf(what, sizeof(what), "certificate \"%s\" on token \"%s\"",
				 id->key_label, id->token.label);
			report(d, LV_FAIL, what,
			       "the certificate on the token is not a SAT certificate; import "
			       "the e.firma again",
			       "%s", firmante_err_title(id->cert_err));
			continue;
		}
		snprintf(what, sizeof(what), "e.firma %s (noCertificado %s) on token \"%s\"",
			 id->cert.subject_cn, id->cert.no_certificado, id->token.label);
		fm_time_iso8601(id->cert.not_after, until, sizeof(until));
		until[10] = '\0'; /* the date is enough */
		if (id->cert.kind == FM_SATCERT_CSD) {
			report(d, LV_WARN, what,
			       "titles need the holder's e.firma, not a sello digital",
			       "is a CSD (sello digital), not an e.firma");
			continue;
		}
		if (id->key_visible && (id->extractable || !id->sensitive)) {
			report(d, LV_FAIL, what,
			       "the agent refuses keys the token would let out; import the "
			       "e.firma again with firmante import",
			       "the key is extractable");
			continue;
		}
		if (now < id->cert.not_before) {
			report(d, LV_FAIL, what, "check the computer's date and time",
			       "not valid yet");
			continue;
		}
		if (now > id->cert.not_after) {
			report(d, LV_FAIL, what,
			       "renew the e.firma at SAT and import the new one with firmante "
			       "import",
			       "expired on %s", until);
			continue;
		}
		long days = (long)((id->cert.not_after - now) / 86400);
		if (days < warn_days)
			report(d, LV_WARN, what,
			       "renew the e.firma at SAT before it expires, then import the new "
			       "one with firmante import",
			       "expires on %s, %ld day%s left", until, days, days == 1 ? "" : "s");
		else
			report(d, LV_OK, what, NULL, "valid until %s, %ld days left", until, days);
	}
out:
	fp11_identities_free(ids, n);
}

/* ------------------------------------------------------------------ */
/* The workstation: pcscd, udev, the agent's socket */

static void check_pcscd(struct doctor *d, const char *path)
{
	struct sockaddr_un sa;
	struct stat sb;
	int fd = -1;

	if (strlen(path) >= sizeof(sa.sun_path)) {
		report(d, LV_FAIL, "pcscd", "give a shorter --pcscd-socket path",
		       "socket path too long");
		return;
	}
	if (stat(path, &sb) != 0) {
		report(d, LV_WARN, "pcscd",
		       "smart cards and most USB tokens need it: sudo apt install pcscd; "
		       "sudo systemctl enable --now pcscd.socket",
		       "not running (no socket at %s)", path);
		return;
	}
	memset(&sa, 0, sizeof(sa));
	sa.sun_family = AF_UNIX;
	memcpy(sa.sun_path, path, strlen(path) + 1);
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0 || connect(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0) {
		int e = errno;
		report(d, LV_WARN, "pcscd", "sudo systemctl restart pcscd.socket",
		       "%s does not answer: %s", path, strerror(e));
	} else {
		report(d, LV_OK, "pcscd", NULL, "reachable at %s", path);
	}
	if (fd >= 0)
		close(fd);
}

static void check_udev(struct doctor *d, const char *const *dirs, size_t n_dirs)
{
	char path[DOCTOR_PATH_MAX];

	for (size_t i = 0; i < n_dirs; i++) {
		snprintf(path, sizeof(path), "%s/%s", dirs[i], DOCTOR_UDEV_RULES);
		if (access(path, R_OK) == 0) {
			report(d, LV_OK, "udev rules", NULL, "installed at %s", path);
			return;
		}
	}
	report(d, LV_WARN, "udev rules",
	       "copy udev/" DOCTOR_UDEV_RULES " to /etc/udev/rules.d/ and run sudo udevadm "
	       "control --reload, then plug the token in again",
	       "%s not installed; tokens without pcscd may be usable only by root",
	       DOCTOR_UDEV_RULES);
}

static void check_socket(struct doctor *d, const char *sock, const char *group)
{
	/* With group = NAME the agent makes the directory 0750 and the socket
	 * 0660 for that group; otherwise 0700 and 0600. */
	mode_t dir_forbidden = group[0] ? 027 : 077, sock_forbidden = group[0] ? 017 : 077;
	char dir[DOCTOR_PATH_MAX], what[DOCTOR_PATH_MAX + 32];
	struct stat sb;
	const char *slash = strrchr(sock, '/');

	if (!slash || slash == sock) {
		report(d, LV_FAIL, "agent socket", "socket = needs an absolute path in a directory",
		       "%s is not in a directory of its own", sock);
		return;
	}
	snprintf(dir, sizeof(dir), "%.*s", (int)(slash - sock), sock);
	snprintf(what, sizeof(what), "socket directory %s", dir);
	if (lstat(dir, &sb) != 0) {
		report(d, LV_WARN, what, "start the agent: systemctl --user start firmanted.socket",
		       "does not exist yet (the agent creates it)");
		return;
	}
	if (!S_ISDIR(sb.st_mode)) {
		report(d, LV_FAIL, what, "remove it; the agent creates the directory itself",
		       "is not a directory");
		return;
	}
	if (sb.st_uid != geteuid()) {
		report(d, LV_FAIL, what,
		       "another user owns it: remove it so the agent creates its own",
		       "belongs to uid %lu, not to you (uid %lu)", (unsigned long)sb.st_uid,
		       (unsigned long)geteuid());
		return;
	}
	if (sb.st_mode & dir_forbidden) {
		report(d, LV_FAIL, what,
		       group[0] ? "chmod 750 the directory; the agent refuses it otherwise"
				: "chmod 700 the directory; the agent refuses it otherwise",
		       "mode %04o lets other users in", (unsigned)(sb.st_mode & 07777));
		return;
	}
	report(d, LV_OK, what, NULL, "mode %04o, yours", (unsigned)(sb.st_mode & 07777));
	snprintf(what, sizeof(what), "socket %s", sock);
	if (lstat(sock, &sb) != 0) {
		report(d, LV_FAIL, what, "start the agent: systemctl --user start firmanted.socket",
		       "missing: the agent is not running");
		return;
	}
	if (!S_ISSOCK(sb.st_mode)) {
		report(d, LV_FAIL, what, "remove the file; the agent makes the socket when it starts",
		       "is not a socket");
		return;
	}
	if (sb.st_mode & sock_forbidden)
		report(d, LV_WARN, what,
		       "the directory keeps others out, but the socket should be 0600; "
		       "restart the agent",
		       "mode %04o", (unsigned)(sb.st_mode & 07777));
	else
		report(d, LV_OK, what, NULL, "mode %04o", (unsigned)(sb.st_mode & 07777));
}

static void check_agent(struct doctor *d, const char *sock)
{
	firmante_client *cl = NULL;
	struct firmante_problem prob;
	char *reply = NULL;
	json_t *st = NULL;
	const char *hint = "start it: systemctl --user start firmanted.socket (or run firmanted)";

	if (firmante_client_new(sock, &cl) != 0) {
		report(d, LV_FAIL, "agent", "give a shorter socket path", "socket path too long");
		return;
	}
	firmante_client_set_timeout(cl, DOCTOR_AGENT_TIMEOUT);
	if (firmante_client_request(cl, "GET", FIRMANTE_API_PREFIX "/status", NULL, &reply,
				    &prob) != 0) {
		if (prob.http_status)
			report(d, LV_FAIL, "agent", "see the agent's log",
			       "GET /v1/status answered %d: %s", prob.http_status,
			       prob.detail[0] ? prob.detail : prob.title);
		else
			report(d, LV_FAIL, "agent", hint, "nothing answers at %s", sock);
		goto out;
	}
	st = json_loads(reply, 0, NULL);
	if (!json_is_object(st)) {
		report(d, LV_FAIL, "agent", "see the agent's log", "unreadable answer to GET /v1/status");
		goto out;
	}
	report(d, LV_OK, "agent", NULL, "firmanted %s answers (tokens: %lld, signing keys: %lld)",
	       json_string_value(json_object_get(st, "version"))
		       ? json_string_value(json_object_get(st, "version"))
		       : "?",
	       (long long)json_integer_value(json_object_get(st, "tokens")),
	       (long long)json_integer_value(json_object_get(st, "identities")));
out:
	json_decref(st);
	free(reply);
	firmante_client_free(cl);
}

/* ------------------------------------------------------------------ */

static void doctor_usage(FILE *f)
{
	fprintf(f,
		"usage: firmante doctor [--config FILE] [--module PATH]... [--no-p11kit]\n"
		"                       [--pcscd-socket PATH] [--udev-dir DIR]... [--warn-days N]\n"
		"                       [--json]\n"
		"\n"
		"Checks this workstation's signing setup and prints one line per finding:\n"
		"  OK    <what>: <detail>\n"
		"  WARN  <what>: <detail> (hint: <what to do>)\n"
		"  FAIL  <what>: <detail> (hint: <what to do>)\n"
		"in this order: the agent configuration, PKCS#11 modules (its module = paths,\n"
		"then the p11-kit registered ones unless use-p11kit-modules = false), tokens\n"
		"and their PIN state (count low, final try, locked), signing keys with their\n"
		"certificate's expiry (WARN under %d days, with the days left), pcscd, the udev\n"
		"rules, the agent's socket directory and socket, and the agent (GET /v1/status).\n"
		"\n"
		"  --config FILE        the agent's configuration (default\n"
		"                       $XDG_CONFIG_HOME/firmante/firmanted.conf)\n"
		"  --module PATH        check this PKCS#11 module too (repeatable)\n"
		"  --no-p11kit          leave out the p11-kit registered modules\n"
		"  --pcscd-socket PATH  pcscd's socket (default " DOCTOR_PCSCD_SOCKET ")\n"
		"  --udev-dir DIR       where to look for " DOCTOR_UDEV_RULES "\n"
		"                       (repeatable; default /etc/udev/rules.d and\n"
		"                       /lib/udev/rules.d)\n"
		"  --warn-days N        warn about certificates expiring within N days\n"
		"  --json               the findings as JSON: {\"ok\": bool, \"checks\":\n"
		"                       [{\"status\", \"what\", \"detail\", \"hint\"}]}\n"
		"\n"
		"The agent socket is --socket, else the configuration's socket =, else\n"
		"$FIRMANTE_SOCKET or $XDG_RUNTIME_DIR/firmante/agent.sock.\n"
		"Exit status: 0 when nothing failed (warnings allowed), 1 when a check\n"
		"failed, 2 usage error.\n",
		DOCTOR_CERT_WARN_DAYS);
}

int cmd_doctor(const char *socket_path, int as_json, int argc, char **argv)
{
	static const struct option opts[] = {
		{ "config", required_argument, NULL, 'c' },
		{ "module", required_argument, NULL, 'm' },
		{ "no-p11kit", no_argument, NULL, 'n' },
		{ "pcscd-socket", required_argument, NULL, 'p' },
		{ "udev-dir", required_argument, NULL, 'u' },
		{ "warn-days", required_argument, NULL, 'w' },
		{ "json", no_argument, NULL, 'j' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	static const char *const default_udev[] = { "/etc/udev/rules.d", "/lib/udev/rules.d" };
	const char *config = NULL, *pcscd = DOCTOR_PCSCD_SOCKET;
	const char *udev[DOCTOR_MAX_UDEV_DIRS];
	const char *extra_modules[DOCTOR_MAX_MODULES];
	size_t n_udev = 0, n_extra = 0;
	bool no_p11kit = false;
	long warn_days = DOCTOR_CERT_WARN_DAYS;
	struct agent_conf conf;
	struct doctor d;
	fp11_ctx *p11 = NULL;
	char sock[DOCTOR_PATH_MAX];
	int c, status = 1;

	memset(&conf, 0, sizeof(conf));
	memset(&d, 0, sizeof(d));
	d.json = as_json;
	optind = 1;
	while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		switch (c) {
		case 'c': config = optarg; break;
		case 'm':
			if (n_extra == DOCTOR_MAX_MODULES) {
				fprintf(stderr, "firmante doctor: at most %d --module\n",
					DOCTOR_MAX_MODULES);
				return 2;
			}
			extra_modules[n_extra++] = optarg;
			break;
		case 'n': no_p11kit = true; break;
		case 'p': pcscd = optarg; break;
		case 'u':
			if (n_udev == DOCTOR_MAX_UDEV_DIRS) {
				fprintf(stderr, "firmante doctor: at most %d --udev-dir\n",
					DOCTOR_MAX_UDEV_DIRS);
				return 2;
			}
			udev[n_udev++] = optarg;
			break;
		case 'w': {
			char *end = NULL;
			errno = 0;
			warn_days = strtol(optarg, &end, 10);
			if (errno || !end || *end || end == optarg || warn_days < 0 ||
			    warn_days > DOCTOR_WARN_DAYS_MAX) {
				fprintf(stderr, "firmante doctor: --warn-days takes a number of days "
						"from 0 to %d\n", DOCTOR_WARN_DAYS_MAX);
				return 2;
			}
			break;
		}
		case 'j': d.json = true; break;
		case 'h': doctor_usage(stdout); return 0;
		default: doctor_usage(stderr); return 2;
		}
	}
	if (optind != argc) {
		doctor_usage(stderr);
		return 2;
	}
	if (d.json) {
		d.checks = json_array();
		if (!d.checks) {
			fprintf(stderr, "firmante doctor: out of memory\n");
			return 1;
		}
	}

	check_config(&d, config, &conf);
	for (size_t i = 0; i < n_extra && conf.n_modules < DOCTOR_MAX_MODULES; i++) {
		conf.modules[conf.n_modules] = strdup(extra_modules[i]);
		if (conf.modules[conf.n_modules])
			conf.n_modules++;
	}
	if (no_p11kit)
		conf.use_p11kit = false;
	if (open_modules(&d, &conf, &p11) == 0) {
		check_tokens(&d, p11);
		check_identities(&d, p11, warn_days, time(NULL));
		fp11_close(p11);
	}
	check_pcscd(&d, pcscd);
	if (n_udev)
		check_udev(&d, udev, n_udev);
	else
		check_udev(&d, default_udev, 2);

	if (socket_path)
		snprintf(sock, sizeof(sock), "%s", socket_path);
	else if (conf.socket[0])
		snprintf(sock, sizeof(sock), "%s", conf.socket);
	else if (firmante_default_socket_path(sock, sizeof(sock)) != 0)
		sock[0] = '\0';
	if (!sock[0]) {
		report(&d, LV_FAIL, "agent socket", "set socket = in firmanted.conf",
		       "no usable default path");
	} else {
		check_socket(&d, sock, conf.group);
		check_agent(&d, sock);
	}

	status = d.n_fail ? 1 : 0;
	if (d.json) {
		json_t *root = json_pack("{s:b, s:o}", "ok", d.n_fail == 0, "checks", d.checks);
		d.checks = NULL;
		char *s = root ? json_dumps(root, JSON_INDENT(2)) : NULL;
		if (s)
			printf("%s\n", s);
		else
			status = 1;
		free(s);
		json_decref(root);
	} else {
		if (d.n_checks > DOCTOR_MAX_CHECKS)
			printf("(%zu more findings not shown)\n", d.n_checks - DOCTOR_MAX_CHECKS);
		printf("%zu failed, %zu warning%s\n", d.n_fail, d.n_warn, d.n_warn == 1 ? "" : "s");
	}
	json_decref(d.checks);
	conf_clear(&conf);
	return status;
}

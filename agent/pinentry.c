/*
 * firmanted: holder approval and PIN through pinentry, spoken with
 * libassuan. The program is started with posix_spawn (no fork() without
 * exec, no shell) on one end of a socketpair that becomes its stdin and
 * stdout. A watchdog thread kills it when a dialog stays open longer than
 * the approval timeout.
 */
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <assuan.h>

#include "agent.h"
#include "firmante/protocol.h"
#include "firmante/util.h"

extern char **environ;

#define PIN_MAX 256
/* Room for the command word and the line end within ASSUAN_LINELENGTH. */
#define LINE_MAX_BYTES (ASSUAN_LINELENGTH - 4)

struct agent_pinentry {
	assuan_context_t ctx;
	pid_t pid;
	long timeout;

	pthread_t watchdog;
	bool watchdog_started;
	pthread_mutex_t mu;
	pthread_cond_t cv;
	struct timespec deadline; /* CLOCK_MONOTONIC */
	bool armed;
	bool stop;
	bool timed_out;

	char pin[PIN_MAX];
	size_t pin_len;
	bool pin_overflow;
	bool last_timed_out; /* the last dialog ended for lack of an answer */
};

/* The dialog on screen (one at a time), so that shutdown can close it. */
static pthread_mutex_t live_lock = PTHREAD_MUTEX_INITIALIZER;
static pid_t live_pid = -1;
static bool shutting_down;

void agent_pinentry_abort_all(void)
{
	pthread_mutex_lock(&live_lock);
	shutting_down = true;
	if (live_pid > 0)
		kill(live_pid, SIGKILL);
	pthread_mutex_unlock(&live_lock);
}

static void *watchdog_main(void *arg)
{
	struct agent_pinentry *p = arg;

	pthread_mutex_lock(&p->mu);
	while (!p->stop) {
		if (!p->armed) {
			pthread_cond_wait(&p->cv, &p->mu);
			continue;
		}
		if (pthread_cond_timedwait(&p->cv, &p->mu, &p->deadline) == ETIMEDOUT &&
		    p->armed && !p->stop) {
			p->timed_out = true;
			p->armed = false;
			if (p->pid > 0)
				kill(p->pid, SIGKILL);
		}
	}
	pthread_mutex_unlock(&p->mu);
	return NULL;
}

static void arm(struct agent_pinentry *p, long seconds)
{
	pthread_mutex_lock(&p->mu);
	clock_gettime(CLOCK_MONOTONIC, &p->deadline);
	p->deadline.tv_sec += seconds;
	p->armed = true;
	p->timed_out = false;
	pthread_cond_signal(&p->cv);
	pthread_mutex_unlock(&p->mu);
}

/* Returns true when the watchdog fired since the last arm(). */
static bool disarm(struct agent_pinentry *p)
{
	bool fired;

	pthread_mutex_lock(&p->mu);
	p->armed = false;
	fired = p->timed_out;
	pthread_cond_signal(&p->cv);
	pthread_mutex_unlock(&p->mu);
	return fired;
}

/* Percent-escape for an Assuan line (% CR LF), appended after @cmd.
 * Stops before a character that would not fit; never splits an escape. */
static void build_line(char *line, size_t size, const char *cmd, const char *text)
{
	size_t n, cap = size < LINE_MAX_BYTES ? size : LINE_MAX_BYTES;
	int w = snprintf(line, size, "%s ", cmd);

	if (w < 0 || (size_t)w >= cap) {
		line[0] = '\0';
		return;
	}
	n = (size_t)w;
	for (const char *s = text; *s; s++) {
		unsigned char c = (unsigned char)*s;

		if (c == '%' || c == '\r' || c == '\n') {
			if (n + 3 >= cap)
				break;
			snprintf(line + n, size - n, "%%%02X", c);
			n += 3;
		} else {
			if (n + 1 >= cap)
				break;
			line[n++] = (char)c;
		}
	}
	/* Do not end in the middle of a UTF-8 sequence. */
	if (n > 0 && ((unsigned char)line[n - 1] & 0x80)) {
		size_t k = n;

		while (k > 0 && ((unsigned char)line[k - 1] & 0xC0) == 0x80)
			k--;
		if (k > 0) {
			unsigned char lead = (unsigned char)line[k - 1];
			size_t need = lead >= 0xF0 ? 4 : lead >= 0xE0 ? 3 : lead >= 0xC0 ? 2 : 1;

			if (n - (k - 1) < need)
				n = k - 1;
		}
	}
	line[n] = '\0';
}

/* Append "label value\n" to @buf, the value cut at @max bytes on a UTF-8
 * boundary, control characters made blanks. */
static void desc_add(char *buf, size_t size, const char *label, const char *value, size_t max)
{
	size_t n = strlen(buf), vlen, i;
	bool cut = false;

	if (!value || !value[0])
		value = "(none)";
	vlen = strlen(value);
	if (vlen > max) {
		vlen = max;
		while (vlen > 0 && ((unsigned char)value[vlen] & 0xC0) == 0x80)
			vlen--;
		cut = true;
	}
	if (n + strlen(label) + vlen + 8 >= size)
		return;
	memcpy(buf + n, label, strlen(label));
	n += strlen(label);
	for (i = 0; i < vlen; i++) {
		unsigned char c = (unsigned char)value[i];

		buf[n++] = (c < 0x20 || c == 0x7f) ? ' ' : (char)c;
	}
	if (cut) {
		memcpy(buf + n, "\xe2\x80\xa6", 3); /* U+2026 */
		n += 3;
	}
	buf[n++] = '\n';
	buf[n] = '\0';
}

static gpg_error_t simple(struct agent_pinentry *p, const char *cmd, const char *text)
{
	char line[ASSUAN_LINELENGTH];

	if (text)
		build_line(line, sizeof(line), cmd, text);
	else
		snprintf(line, sizeof(line), "%s", cmd);
	return assuan_transact(p->ctx, line, NULL, NULL, NULL, NULL, NULL, NULL);
}

static int map_error(struct agent_pinentry *p, gpg_error_t err, bool fired,
		     const char *what, char *detail, size_t detail_size)
{
	gpg_err_code_t code = gpg_err_code(err);

	p->last_timed_out = fired || code == GPG_ERR_TIMEOUT;
	if (fired || code == GPG_ERR_TIMEOUT) {
		snprintf(detail, detail_size, "no answer in %ld s", p->timeout);
		return FIRMANTE_E_USER_DENIED;
	}
	if (code == GPG_ERR_CANCELED || code == GPG_ERR_NOT_CONFIRMED ||
	    code == GPG_ERR_FULLY_CANCELED) {
		snprintf(detail, detail_size, "the holder refused at the %s dialog", what);
		return FIRMANTE_E_USER_DENIED;
	}
	snprintf(detail, detail_size, "pinentry %s failed: %s", what, gpg_strerror(err));
	return FIRMANTE_E_PINENTRY;
}

static void send_options(struct agent_pinentry *p)
{
	char line[ASSUAN_LINELENGTH];
	const char *tty = getenv("GPG_TTY");
	const char *term = getenv("TERM");
	const char *lc = getenv("LC_ALL");

	if (!tty || !tty[0])
		tty = isatty(0) ? ttyname(0) : NULL;
	if (!lc || !lc[0])
		lc = getenv("LC_CTYPE");
	if (!lc || !lc[0])
		lc = getenv("LANG");
	/* Options a pinentry does not know are not fatal. */
	if (tty && tty[0]) {
		snprintf(line, sizeof(line), "ttyname=%s", tty);
		simple(p, "OPTION", line);
	}
	if (tty && tty[0] && term && term[0]) {
		snprintf(line, sizeof(line), "ttytype=%s", term);
		simple(p, "OPTION", line);
	}
	if (lc && lc[0]) {
		snprintf(line, sizeof(line), "lc-ctype=%s", lc);
		simple(p, "OPTION", line);
	}
	snprintf(line, sizeof(line), "SETTIMEOUT %ld", p->timeout);
	simple(p, line, NULL);
	simple(p, "SETTITLE", "firmante: signature request");
}

static void reap(struct agent_pinentry *p)
{
	int status;

	if (p->pid <= 0)
		return;
	/* Most programs exit within milliseconds of BYE: poll every 1 ms at
	 * first, doubling up to 50 ms, and kill it after about 2 s. */
	for (long waited_us = 0, step_us = 1000; waited_us < 2000000; waited_us += step_us) {
		pid_t r = waitpid(p->pid, &status, WNOHANG);

		if (r == p->pid || (r < 0 && errno != EINTR)) {
			p->pid = -1;
			return;
		}
		if (waited_us > 0 && step_us < 50000)
			step_us = step_us * 2 > 50000 ? 50000 : step_us * 2;
		usleep((useconds_t)step_us);
	}
	kill(p->pid, SIGKILL);
	while (waitpid(p->pid, &status, 0) < 0 && errno == EINTR)
		;
	p->pid = -1;
}

void agent_pinentry_close(agent_pinentry *p)
{
	if (!p)
		return;
	if (p->ctx) {
		arm(p, 5);
		assuan_transact(p->ctx, "BYE", NULL, NULL, NULL, NULL, NULL, NULL);
		disarm(p);
		assuan_release(p->ctx);
		p->ctx = NULL;
	}
	if (p->watchdog_started) {
		pthread_mutex_lock(&p->mu);
		p->stop = true;
		pthread_cond_signal(&p->cv);
		pthread_mutex_unlock(&p->mu);
		pthread_join(p->watchdog, NULL);
	}
	pthread_mutex_lock(&live_lock);
	if (live_pid == p->pid)
		live_pid = -1;
	pthread_mutex_unlock(&live_lock);
	reap(p);
	pthread_cond_destroy(&p->cv);
	pthread_mutex_destroy(&p->mu);
	fm_wipe(p->pin, sizeof(p->pin));
	free(p);
}

int agent_pinentry_open(const struct agent_config *cfg, agent_pinentry **out,
			char *detail, size_t detail_size)
{
	struct agent_pinentry *p = NULL;
	posix_spawn_file_actions_t fa;
	posix_spawnattr_t attr;
	bool fa_init = false, attr_init = false;
	pthread_condattr_t ca;
	sigset_t none, defaults;
	int sv[2] = { -1, -1 };
	gpg_error_t gerr;
	int rc = 0, e;

	p = calloc(1, sizeof(*p));
	if (!p)
		return FIRMANTE_E_NOMEM;
	p->pid = -1;
	p->timeout = cfg->approval_timeout;
	pthread_mutex_init(&p->mu, NULL);
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&p->cv, &ca);
	pthread_condattr_destroy(&ca);

	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0) {
		snprintf(detail, detail_size, "socketpair: %s", strerror(errno));
		rc = FIRMANTE_E_PINENTRY;
		goto out;
	}
	if (posix_spawn_file_actions_init(&fa) != 0) {
		rc = FIRMANTE_E_NOMEM;
		goto out;
	}
	fa_init = true;
	if (posix_spawnattr_init(&attr) != 0) {
		rc = FIRMANTE_E_NOMEM;
		goto out;
	}
	attr_init = true;
	/* Child: the socket as stdin and stdout (dup2 clears close-on-exec),
	 * stderr inherited, every other descriptor closed. */
	if (posix_spawn_file_actions_adddup2(&fa, sv[1], 0) != 0 ||
	    posix_spawn_file_actions_adddup2(&fa, sv[1], 1) != 0 ||
	    posix_spawn_file_actions_addclosefrom_np(&fa, 3) != 0) {
		rc = FIRMANTE_E_NOMEM;
		goto out;
	}
	sigemptyset(&none);
	sigemptyset(&defaults);
	sigaddset(&defaults, SIGPIPE);
	sigaddset(&defaults, SIGINT);
	sigaddset(&defaults, SIGTERM);
	sigaddset(&defaults, SIGCHLD);
	posix_spawnattr_setsigmask(&attr, &none);
	posix_spawnattr_setsigdefault(&attr, &defaults);
	posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);
	pthread_mutex_lock(&live_lock);
	if (shutting_down) {
		pthread_mutex_unlock(&live_lock);
		snprintf(detail, detail_size, "the agent is shutting down");
		rc = FIRMANTE_E_PINENTRY;
		goto out;
	}
	e = posix_spawnp(&p->pid, cfg->pinentry_argv[0], &fa, &attr, cfg->pinentry_argv, environ);
	if (e == 0)
		live_pid = p->pid;
	pthread_mutex_unlock(&live_lock);
	if (e != 0) {
		p->pid = -1;
		snprintf(detail, detail_size, "cannot start pinentry \"%s\": %s",
			 cfg->pinentry_argv[0], strerror(e));
		rc = FIRMANTE_E_PINENTRY;
		goto out;
	}
	close(sv[1]);
	sv[1] = -1;

	if (pthread_create(&p->watchdog, NULL, watchdog_main, p) != 0) {
		rc = FIRMANTE_E_NOMEM;
		goto out;
	}
	p->watchdog_started = true;

	gerr = assuan_new(&p->ctx);
	if (gerr) {
		p->ctx = NULL;
		rc = FIRMANTE_E_NOMEM;
		goto out;
	}
	arm(p, p->timeout);
	/* The context owns the descriptor from here on, also on failure. */
	gerr = assuan_socket_connect_fd(p->ctx, sv[0], 0);
	sv[0] = -1;
	if (disarm(p) || gerr) {
		snprintf(detail, detail_size, "pinentry \"%s\" did not greet: %s",
			 cfg->pinentry_argv[0], gerr ? gpg_strerror(gerr) : "timeout");
		assuan_release(p->ctx);
		p->ctx = NULL;
		rc = FIRMANTE_E_PINENTRY;
		goto out;
	}
	arm(p, p->timeout);
	send_options(p);
	if (disarm(p)) {
		snprintf(detail, detail_size, "pinentry did not answer in %ld s", p->timeout);
		rc = FIRMANTE_E_PINENTRY;
		goto out;
	}
	*out = p;
	p = NULL;
out:
	if (fa_init)
		posix_spawn_file_actions_destroy(&fa);
	if (attr_init)
		posix_spawnattr_destroy(&attr);
	if (sv[0] >= 0)
		close(sv[0]);
	if (sv[1] >= 0)
		close(sv[1]);
	agent_pinentry_close(p);
	return rc;
}

int agent_pinentry_confirm(agent_pinentry *p, const struct agent_approval *a,
			   char *detail, size_t detail_size)
{
	const struct fp11_identity *id = a->identity;
	char desc[2048], caller[700], cert_line[160], until[32];
	gpg_error_t gerr;
	bool fired;

	desc[0] = '\0';
	if (a->caller->origin[0])
		snprintf(caller, sizeof(caller), "web page %s (browser)", a->caller->origin);
	else
		snprintf(caller, sizeof(caller), "uid %lu, %s (pid %ld)",
			 (unsigned long)a->caller->uid, a->caller->exe, (long)a->caller->pid);
	fm_time_iso8601(id->cert.not_after, until, sizeof(until));
	snprintf(cert_line, sizeof(cert_line), "%s, valid until %s", id->cert.no_certificado, until);

	/* The warning comes first: an Assuan line holds 1000 bytes and
	 * build_line() cuts the end of a long description. */
	if (id->token.user_pin_final_try)
		desc_add(desc, sizeof(desc), "",
			 "WARNING: the token allows ONE more PIN try; a wrong PIN locks it.", 80);
	else if (id->token.user_pin_count_low)
		desc_add(desc, sizeof(desc), "",
			 "WARNING: a wrong PIN was entered before; few tries are left.", 80);
	desc_add(desc, sizeof(desc), "", "A program asks to sign a T\xc3\xadtulo Electr\xc3\xb3nico with your e.firma.", 80);
	desc_add(desc, sizeof(desc), "Caller: ", caller, 110);
	desc_add(desc, sizeof(desc), "Signer: ", id->cert.subject_cn, 70);
	desc_add(desc, sizeof(desc), "Signer CURP: ", id->cert.curp, 18);
	desc_add(desc, sizeof(desc), "Certificate: ", cert_line, 70);
	desc_add(desc, sizeof(desc), "Cargo: ", a->cargo, 50);
	desc_add(desc, sizeof(desc), "folioControl: ", a->folio_control, 40);
	desc_add(desc, sizeof(desc), "Graduate: ", a->graduate_name, 90);
	desc_add(desc, sizeof(desc), "Graduate CURP: ", a->graduate_curp, 18);
	desc_add(desc, sizeof(desc), "Career: ", a->nombre_carrera, 90);
	desc_add(desc, sizeof(desc), "Date of issue: ", a->fecha_expedicion, 20);
	desc_add(desc, sizeof(desc), "Institution: ", a->nombre_institucion, 70);
	if (id->token.protected_auth_path)
		desc_add(desc, sizeof(desc), "",
			 "Then enter the PIN on the token's own PIN pad.", 80);

	p->last_timed_out = false;
	arm(p, p->timeout);
	gerr = simple(p, "SETDESC", desc);
	if (!gerr)
		gerr = simple(p, "SETPROMPT", "Sign?");
	if (!gerr)
		gerr = simple(p, "SETOK", "Sign");
	if (!gerr)
		gerr = simple(p, "SETCANCEL", "Refuse");
	if (!gerr)
		gerr = simple(p, "CONFIRM", NULL);
	fired = disarm(p);
	if (gerr || fired)
		return map_error(p, gerr, fired, "confirmation", detail, detail_size);
	return 0;
}

static gpg_error_t pin_data(void *arg, const void *buf, size_t len)
{
	struct agent_pinentry *p = arg;

	if (len >= sizeof(p->pin) - p->pin_len) {
		p->pin_overflow = true;
		return gpg_error(GPG_ERR_TOO_LARGE);
	}
	memcpy(p->pin + p->pin_len, buf, len);
	p->pin_len += len;
	p->pin[p->pin_len] = '\0';
	return 0;
}

int agent_pinentry_getpin(agent_pinentry *p, const struct fp11_token_info *tok,
			  bool context_specific, const char *folio_control,
			  char *pin, size_t pin_size, char *detail, size_t detail_size)
{
	char desc[1024], line[300];
	gpg_error_t gerr;
	bool fired;
	int rc = 0;

	desc[0] = '\0';
	snprintf(line, sizeof(line), "\"%s\" (serial %s)", tok->label, tok->serial);
	desc_add(desc, sizeof(desc), "Enter the PIN of token ", line, 100);
	desc_add(desc, sizeof(desc), "to sign the title with folioControl ", folio_control, 40);
	if (context_specific)
		desc_add(desc, sizeof(desc), "", "This key asks for its PIN again for each signature.", 80);
	if (tok->user_pin_final_try)
		desc_add(desc, sizeof(desc), "",
			 "WARNING: LAST try: a wrong PIN locks the token.", 80);
	else if (tok->user_pin_count_low)
		desc_add(desc, sizeof(desc), "",
			 "WARNING: a wrong PIN was entered before; few tries are left.", 80);

	p->pin_len = 0;
	p->pin_overflow = false;
	arm(p, p->timeout);
	gerr = simple(p, "SETDESC", desc);
	if (!gerr)
		gerr = simple(p, "SETPROMPT", "PIN:");
	if (!gerr)
		gerr = simple(p, "SETOK", "OK");
	if (!gerr)
		gerr = simple(p, "SETCANCEL", "Cancel");
	if (!gerr) {
		assuan_begin_confidential(p->ctx);
		gerr = assuan_transact(p->ctx, "GETPIN", pin_data, p, NULL, NULL, NULL, NULL);
		assuan_end_confidential(p->ctx);
	}
	fired = disarm(p);
	if (p->pin_overflow) {
		snprintf(detail, detail_size, "the PIN is longer than %d bytes", PIN_MAX - 1);
		rc = FIRMANTE_E_PINENTRY;
		goto out;
	}
	if (gerr || fired) {
		rc = map_error(p, gerr, fired, "PIN", detail, detail_size);
		goto out;
	}
	if (p->pin_len >= pin_size) {
		snprintf(detail, detail_size, "the PIN is longer than the token accepts");
		rc = FIRMANTE_E_PINENTRY;
		goto out;
	}
	memcpy(pin, p->pin, p->pin_len);
	pin[p->pin_len] = '\0';
out:
	fm_wipe(p->pin, sizeof(p->pin));
	p->pin_len = 0;
	return rc;
}

bool agent_pinentry_timed_out(const agent_pinentry *p)
{
	return p && p->last_timed_out;
}

int agent_pinentry_ask(agent_pinentry *p, const char *text, const char *ok, const char *cancel,
		       char *detail, size_t detail_size)
{
	char desc[2048];
	const char *line = text;
	gpg_error_t gerr;
	bool fired;

	/* One desc_add() per line: control characters become blanks. */
	desc[0] = '\0';
	while (line && *line) {
		const char *nl = strchr(line, '\n');
		size_t n = nl ? (size_t)(nl - line) : strlen(line);
		char one[300];

		snprintf(one, sizeof(one), "%.*s", (int)(n < sizeof(one) - 1 ? n : sizeof(one) - 1),
			 line);
		desc_add(desc, sizeof(desc), "", one, 200);
		line = nl ? nl + 1 : NULL;
	}
	p->last_timed_out = false;
	arm(p, p->timeout);
	gerr = simple(p, "SETDESC", desc);
	if (!gerr)
		gerr = simple(p, "SETPROMPT", "Allow?");
	if (!gerr)
		gerr = simple(p, "SETOK", ok);
	if (!gerr)
		gerr = simple(p, "SETCANCEL", cancel);
	if (!gerr)
		gerr = simple(p, "CONFIRM", NULL);
	fired = disarm(p);
	if (gerr || fired)
		return map_error(p, gerr, fired, "confirmation", detail, detail_size);
	return 0;
}

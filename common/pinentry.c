/*
 * A pinentry client spoken with libassuan (see firmante/pinentry.h).
 * Moved here from agent/pinentry.c so firmanted and firmante import share
 * one implementation; the agent keeps its own dialog texts.
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

#include "firmante/pinentry.h"
#include "firmante/protocol.h"
#include "firmante/util.h"

extern char **environ;

/* Room for the command word and the line end within ASSUAN_LINELENGTH. */
#define LINE_MAX_BYTES (ASSUAN_LINELENGTH - 4)
#define BYE_TIMEOUT 5 /* seconds to wait for the answer to BYE */

struct fm_pinentry {
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

	char pin[FM_PINENTRY_SECRET_MAX + 1];
	size_t pin_len;
	bool pin_overflow;
	bool last_timed_out; /* the last dialog ended for lack of an answer */
};

/* The dialog on screen (one at a time), so that shutdown can close it. */
static pthread_mutex_t live_lock = PTHREAD_MUTEX_INITIALIZER;
static pid_t live_pid = -1;
static bool shutting_down;

void fm_pinentry_abort_all(void)
{
	pthread_mutex_lock(&live_lock);
	shutting_down = true;
	if (live_pid > 0)
		kill(live_pid, SIGKILL);
	pthread_mutex_unlock(&live_lock);
}

static void *watchdog_main(void *arg)
{
	struct fm_pinentry *p = arg;

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

static void arm(struct fm_pinentry *p, long seconds)
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
static bool disarm(struct fm_pinentry *p)
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

void fm_pinentry_desc_add(char *buf, size_t size, const char *label, const char *value,
			  size_t max)
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

static gpg_error_t simple(struct fm_pinentry *p, const char *cmd, const char *text)
{
	char line[ASSUAN_LINELENGTH];

	if (text)
		build_line(line, sizeof(line), cmd, text);
	else
		snprintf(line, sizeof(line), "%s", cmd);
	return assuan_transact(p->ctx, line, NULL, NULL, NULL, NULL, NULL, NULL);
}

static int map_error(struct fm_pinentry *p, gpg_error_t err, bool fired, const char *what,
		     char *detail, size_t detail_size)
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

static void send_options(struct fm_pinentry *p, const char *title)
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
	if (title)
		simple(p, "SETTITLE", title);
}

static void reap(struct fm_pinentry *p)
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

void fm_pinentry_close(fm_pinentry *p)
{
	if (!p)
		return;
	if (p->ctx) {
		arm(p, BYE_TIMEOUT);
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

int fm_pinentry_open(char *const argv[], long timeout, const char *title, fm_pinentry **out,
		     char *detail, size_t detail_size)
{
	struct fm_pinentry *p = NULL;
	posix_spawn_file_actions_t fa;
	posix_spawnattr_t attr;
	bool fa_init = false, attr_init = false;
	pthread_condattr_t ca;
	sigset_t none, defaults;
	int sv[2] = { -1, -1 };
	gpg_error_t gerr;
	int rc = 0, e;

	if (!argv || !argv[0] || !argv[0][0] || timeout <= 0 || !out)
		return FIRMANTE_E_INTERNAL;
	p = calloc(1, sizeof(*p));
	if (!p)
		return FIRMANTE_E_NOMEM;
	p->pid = -1;
	p->timeout = timeout;
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
		snprintf(detail, detail_size, "the program is shutting down");
		rc = FIRMANTE_E_PINENTRY;
		goto out;
	}
	e = posix_spawnp(&p->pid, argv[0], &fa, &attr, argv, environ);
	if (e == 0)
		live_pid = p->pid;
	pthread_mutex_unlock(&live_lock);
	if (e != 0) {
		p->pid = -1;
		snprintf(detail, detail_size, "cannot start pinentry \"%s\": %s", argv[0],
			 strerror(e));
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
		snprintf(detail, detail_size, "pinentry \"%s\" did not greet: %s", argv[0],
			 gerr ? gpg_strerror(gerr) : "timeout");
		assuan_release(p->ctx);
		p->ctx = NULL;
		rc = FIRMANTE_E_PINENTRY;
		goto out;
	}
	arm(p, p->timeout);
	send_options(p, title);
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
	fm_pinentry_close(p);
	return rc;
}

int fm_pinentry_confirm(fm_pinentry *p, const char *desc, const char *prompt, const char *ok,
			const char *cancel, const char *what, char *detail, size_t detail_size)
{
	gpg_error_t gerr;
	bool fired;

	p->last_timed_out = false;
	arm(p, p->timeout);
	gerr = simple(p, "SETDESC", desc);
	if (!gerr)
		gerr = simple(p, "SETPROMPT", prompt);
	if (!gerr)
		gerr = simple(p, "SETOK", ok);
	if (!gerr)
		gerr = simple(p, "SETCANCEL", cancel);
	if (!gerr)
		gerr = simple(p, "CONFIRM", NULL);
	fired = disarm(p);
	if (gerr || fired)
		return map_error(p, gerr, fired, what, detail, detail_size);
	return 0;
}

static gpg_error_t pin_data(void *arg, const void *buf, size_t len)
{
	struct fm_pinentry *p = arg;

	if (len >= sizeof(p->pin) - p->pin_len) {
		p->pin_overflow = true;
		return gpg_error(GPG_ERR_TOO_LARGE);
	}
	memcpy(p->pin + p->pin_len, buf, len);
	p->pin_len += len;
	p->pin[p->pin_len] = '\0';
	return 0;
}

int fm_pinentry_getpin(fm_pinentry *p, const char *desc, const char *prompt, const char *error,
		       char *pin, size_t pin_size, char *detail, size_t detail_size)
{
	gpg_error_t gerr;
	bool fired;
	int rc = 0;

	p->pin_len = 0;
	p->pin_overflow = false;
	p->last_timed_out = false;
	arm(p, p->timeout);
	gerr = simple(p, "SETDESC", desc);
	if (!gerr)
		gerr = simple(p, "SETPROMPT", prompt);
	if (!gerr)
		gerr = simple(p, "SETOK", "OK");
	if (!gerr)
		gerr = simple(p, "SETCANCEL", "Cancel");
	if (!gerr && error)
		gerr = simple(p, "SETERROR", error);
	if (!gerr) {
		assuan_begin_confidential(p->ctx);
		gerr = assuan_transact(p->ctx, "GETPIN", pin_data, p, NULL, NULL, NULL, NULL);
		assuan_end_confidential(p->ctx);
	}
	fired = disarm(p);
	if (p->pin_overflow) {
		snprintf(detail, detail_size, "the PIN is longer than %d bytes",
			 FM_PINENTRY_SECRET_MAX);
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

bool fm_pinentry_timed_out(const fm_pinentry *p)
{
	return p && p->last_timed_out;
}

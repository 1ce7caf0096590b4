/*
 * A pinentry client (common/pinentry.c, prefix fm_pinentry_): starts a
 * pinentry program and speaks the Assuan protocol with it through
 * libassuan (pinentry's commands: SETDESC, SETPROMPT, SETOK, SETCANCEL,
 * SETTITLE, SETTIMEOUT, OPTION, CONFIRM, GETPIN, BYE; GnuPG's "pinentry"
 * documentation). Used by firmanted for approvals and token PINs and by
 * firmante import for the .key password and the token PIN.
 *
 * The program is started with posix_spawn (no fork() without exec, no
 * shell) on one end of a socketpair that becomes its stdin and stdout;
 * stderr is inherited, every other descriptor closed. A watchdog thread
 * kills the program when a dialog stays open longer than the timeout.
 * Secrets read with GETPIN pass through a fixed buffer that is wiped.
 *
 * One fm_pinentry is used by one thread at a time. The process should
 * ignore SIGPIPE (signal(SIGPIPE, SIG_IGN)): a pinentry program that exits
 * before the last write (its answer to BYE, a crash) would otherwise kill
 * the caller; with it ignored the write fails and is reported.
 */
#ifndef FIRMANTE_PINENTRY_H
#define FIRMANTE_PINENTRY_H

#include <stdbool.h>
#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Longest secret GETPIN hands back, in bytes (without the NUL). */
#define FM_PINENTRY_SECRET_MAX 255

typedef struct fm_pinentry fm_pinentry;

/*
 * fm_pinentry_open - start @argv[0] (searched in PATH) with @argv and greet it.
 * @argv: NULL-terminated program and arguments; not retained.
 * @timeout: seconds each dialog may stay open (also sent as SETTIMEOUT);
 *           after that the program is killed and the dialog counts as
 *           refused (fm_pinentry_timed_out() tells). Must be > 0.
 * @title: window title (SETTITLE), or NULL.
 * The terminal (GPG_TTY, else stdin's tty; TERM) and locale (LC_ALL,
 * LC_CTYPE, LANG) are passed as OPTIONs; unknown options are not fatal.
 * @out: written on success; close with fm_pinentry_close().
 * @detail: a sentence on failure (which program, what went wrong).
 * Returns 0, FIRMANTE_E_PINENTRY (cannot start, no greeting, no answer,
 * shutting down after fm_pinentry_abort_all()), FIRMANTE_E_NOMEM,
 * FIRMANTE_E_INTERNAL (bad arguments).
 */
int fm_pinentry_open(char *const argv[], long timeout, const char *title, fm_pinentry **out,
		     char *detail, size_t detail_size);

/* fm_pinentry_close - BYE, release, reap the program. NULL is a no-op. */
void fm_pinentry_close(fm_pinentry *p);

/*
 * fm_pinentry_abort_all - for a process shutting down: kill the dialog on
 * screen (its caller gets FIRMANTE_E_PINENTRY) and refuse new ones.
 */
void fm_pinentry_abort_all(void);

/*
 * fm_pinentry_confirm - a CONFIRM dialog: text @desc (already built, e.g.
 * with fm_pinentry_desc_add()), prompt @prompt, buttons @ok and @cancel.
 * @what names the dialog in @detail ("the holder refused at the @what
 * dialog").
 * Returns 0 (yes), FIRMANTE_E_USER_DENIED (no, cancel, timeout; @detail
 * says which), FIRMANTE_E_PINENTRY.
 */
int fm_pinentry_confirm(fm_pinentry *p, const char *desc, const char *prompt, const char *ok,
			const char *cancel, const char *what, char *detail, size_t detail_size);

/*
 * fm_pinentry_getpin - a GETPIN dialog with text @desc and prompt @prompt.
 * @error: text shown as the error of an earlier try (SETERROR), or NULL.
 * @pin: receives the secret, NUL-terminated, at most @pin_size - 1 (and
 *       FM_PINENTRY_SECRET_MAX) bytes, UTF-8 as typed. Written on success
 *       only; the internal copy is wiped.
 * Returns 0, FIRMANTE_E_USER_DENIED (cancel, timeout),
 * FIRMANTE_E_PINENTRY (program failure, secret too long).
 */
int fm_pinentry_getpin(fm_pinentry *p, const char *desc, const char *prompt, const char *error,
		       char *pin, size_t pin_size, char *detail, size_t detail_size);

/*
 * fm_pinentry_timed_out - whether the last dialog of @p ended because
 * nobody answered within the timeout. NULL gives false.
 */
bool fm_pinentry_timed_out(const fm_pinentry *p);

/*
 * fm_pinentry_desc_add - append "@label@value\n" to the NUL-terminated
 * text in @buf (@size bytes): @value ("(none)" when NULL or empty) cut at
 * @max bytes on a UTF-8 boundary with "…" added, control characters shown
 * as blanks. A line that does not fit is left out whole.
 */
void fm_pinentry_desc_add(char *buf, size_t size, const char *label, const char *value,
			  size_t max);

#ifdef __cplusplus
}
#endif
#endif

/*
 * Per-token workers of firmanted (prefix agent_): every call that talks to
 * a token runs on that token's own worker thread, with a deadline.
 *
 * A token is known by manufacturer, model, serial and label (never by slot
 * id, which changes when it is plugged into another port). Calls for one
 * token run one after the other, in arrival order; calls for different
 * tokens run in parallel. When a call passes its deadline the caller gets
 * FIRMANTE_E_TOKEN_TIMEOUT at once: the worker is abandoned (it keeps
 * waiting for the token in the background, and frees the call's argument
 * when the token finally answers), calls queued behind it fail with
 * FIRMANTE_E_TOKEN_TIMEOUT too, and the next call for that token gets a
 * fresh worker. Time the holder spends in a PIN dialog does not count
 * against the deadline (agent_worker_dialog_begin/end).
 */
#ifndef FIRMANTE_AGENT_WORKERS_H
#define FIRMANTE_AGENT_WORKERS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "firmante/token.h"

/* Caps. */
#define AGENT_MAX_WORKERS 32         /* tokens with a live worker */
#define AGENT_MAX_ABANDONED 16       /* hung workers kept waiting at once */
#define AGENT_MAX_QUEUED 256         /* calls waiting for one token */
#define AGENT_MAX_TOKEN_TIMEOUT 3600 /* seconds */
#define AGENT_DEFAULT_TOKEN_TIMEOUT 30

/*
 * agent_workers_set_timeout - deadline of every later token call, in
 * seconds (1..AGENT_MAX_TOKEN_TIMEOUT; other values are clamped). Default
 * AGENT_DEFAULT_TOKEN_TIMEOUT.
 */
void agent_workers_set_timeout(long seconds);

/* A function run on a token's worker; returns 0 or a negative firmante error. */
typedef int (*agent_token_fn)(void *arg);

/*
 * agent_token_call - run @fn(@arg) on the worker of token @tok (identified
 * by manufacturer, model, serial and label) and wait for it, at most the
 * configured deadline from the moment it starts (dialog time excluded).
 * @free_arg: frees @arg. On FIRMANTE_E_TOKEN_TIMEOUT the caller no longer
 *            owns @arg: it is freed with @free_arg, at once or, when the
 *            call was abandoned while running, by the worker after @fn
 *            finally returns. On any other result the caller keeps @arg.
 *            @arg must therefore be heap memory the caller does not touch
 *            after FIRMANTE_E_TOKEN_TIMEOUT.
 * Returns @fn's result, or FIRMANTE_E_TOKEN_TIMEOUT (deadline passed; or
 * a call ahead of it on the same token was abandoned; or too many hung
 * workers), FIRMANTE_E_TOKEN (AGENT_MAX_WORKERS tokens or
 * AGENT_MAX_QUEUED calls already), FIRMANTE_E_NOMEM, FIRMANTE_E_INTERNAL
 * (no thread), FIRMANTE_E_BAD_REQUEST (NULL argument).
 */
int agent_token_call(const struct fp11_token_info *tok, agent_token_fn fn, void *arg,
		     void (*free_arg)(void *));

/*
 * agent_worker_dialog_begin - from inside a worker call: the holder is
 * about to be asked (PIN dialog); the deadline stops. Returns 0, or
 * FIRMANTE_E_TOKEN_TIMEOUT when the call was already abandoned (then do
 * not open the dialog, and do not call agent_worker_dialog_end()).
 * Outside a worker call it returns 0 and does nothing.
 */
int agent_worker_dialog_begin(void);

/* agent_worker_dialog_end - the dialog closed; the deadline restarts in full. */
void agent_worker_dialog_end(void);

/*
 * agent_token_sign - fp11_sign() run on the token's worker with the
 * deadline. Same arguments, ownership and errors as fp11_sign(), plus
 * FIRMANTE_E_TOKEN_TIMEOUT. @pin_cb is called from the worker thread, and
 * never after the call was abandoned. @id and @data are copied; @sig and
 * @sig_len are written only on success.
 */
int agent_token_sign(fp11_ctx *ctx, const struct fp11_identity *id, fp11_pin_cb pin_cb,
		     void *pin_cb_data, bool allow_final_try, const uint8_t *data, size_t len,
		     uint8_t *sig, size_t *sig_len);

/*
 * agent_token_sign_as - fp11_sign_as() on the token's worker: as
 * agent_token_sign(), and the token's login is kept for @login_owner
 * (NULL: logged out before return; see fp11_sign_as() in
 * include/firmante/token.h for the rule). @login_owner is copied.
 * Errors as agent_token_sign(); FIRMANTE_E_BAD_REQUEST also for an empty
 * or too long (FP11_OWNER_MAX) @login_owner.
 */
int agent_token_sign_as(fp11_ctx *ctx, const struct fp11_identity *id, const char *login_owner,
			fp11_pin_cb pin_cb, void *pin_cb_data, bool allow_final_try,
			const uint8_t *data, size_t len, uint8_t *sig, size_t *sig_len);

/* Workers abandoned so far, and those of them still waiting for their token. */
void agent_workers_stats(unsigned long *abandoned_total, unsigned *hung_now);

#endif
